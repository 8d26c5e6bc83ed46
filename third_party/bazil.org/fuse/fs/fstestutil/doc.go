package fstestutil // import "bazil.org/fuse/fs/fstestutil"
