module bazil.org/fuse

go 1.13

require (
	github.com/dvyukov/go-fuzz v0.0.0-20200318091601-be3528f3a813
	github.com/elazarl/go-bindata-assetfs v1.0.0 // indirect
	github.com/stephens2424/writerset v1.0.2 // indirect
	github.com/tv42/httpunix v0.0.0-20191220191345-2ba4b9c3382c
	golang.org/x/sys v0.0.0-20191210023423-ac6580df4449
	golang.org/x/tools v0.0.0-20200423201157-2723c5de0d66 // indirect
)
