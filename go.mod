module vdflat

go 1.24
