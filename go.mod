module vdflat

go 1.25

require (
	bazil.org/fuse v0.0.0-20200424023519-3c101025617f
	github.com/cpuguy83/go-md2man/v2 v2.0.7
	github.com/dustin/go-humanize v1.0.1
	github.com/klauspost/compress v1.20.4
	github.com/pierrec/lz4/v4 v4.1.34
	github.com/ulikunitz/xz v0.5.17
	github.com/urfave/cli/v2 v2.27.7
	golang.org/x/crypto v0.45.0
)

require (
	github.com/russross/blackfriday/v2 v2.1.0 // indirect
	github.com/xrash/smetrics v0.0.0-20240521201337-686a1a2994c1 // indirect
	golang.org/x/sys v0.38.0 // indirect
)

replace bazil.org/fuse => ./third_party/bazil.org/fuse
