package main

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"vdflat/formats"
)

func newHash(name string) (hash.Hash, error) {
	switch strings.ToLower(name) {
	case "md5":
		return md5.New(), nil
	case "sha1", "sha-1":
		return sha1.New(), nil
	case "sha256", "sha-256":
		return sha256.New(), nil
	}
	return nil, fmt.Errorf("unknown hash %q (md5, sha1, sha256)", name)
}

func flattenCommand(c *cli.Context) error {
	if c.NArg() != 2 {
		return cli.Exit("flatten: want IMAGE OUTPUT (OUTPUT - for stdout)", 2)
	}
	src, dst := c.Args().Get(0), c.Args().Get(1)
	var h hash.Hash
	if name := c.String("hash"); name != "" {
		var err error
		if h, err = newHash(name); err != nil {
			return cli.Exit(err.Error(), 2)
		}
	}
	d, err := openImageArg(c, src)
	if err != nil {
		return cli.Exit(fmt.Sprintf("%s: %v", src, err), 1)
	}
	defer d.Close()

	var out *os.File
	var tmp string
	if dst == "-" {
		out = os.Stdout
	} else {
		if _, err := os.Lstat(dst); err == nil && !c.Bool("force") {
			return cli.Exit(fmt.Sprintf("%s exists (use --force to overwrite)", dst), 1)
		}
		// Write beside the output and rename at the end, so an
		// interrupted run never leaves a file that looks complete.
		f, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".partial-*")
		if err != nil {
			return cli.Exit(err.Error(), 1)
		}
		out, tmp = f, f.Name()
		defer os.Remove(tmp) // no-op after the rename
		f.Chmod(0o644)       // CreateTemp makes 0600; an output is an ordinary file
	}
	prog := newProgress(d.Size(), c.Bool("quiet"))
	err = flatten(d, out, tmp != "", h, prog)
	prog.finish()
	if err == nil && tmp != "" {
		err = out.Sync()
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp, dst)
		}
	}
	if err != nil {
		return cli.Exit(fmt.Sprintf("flatten %s: %v", src, err), 1)
	}
	if h != nil {
		// Like sha256sum; on stderr when stdout carries the disk.
		w := os.Stdout
		if dst == "-" {
			w = os.Stderr
		}
		fmt.Fprintf(w, "%s  %s\n", hex.EncodeToString(h.Sum(nil)), dst)
	}
	return nil
}

const copyChunk = 1 << 20

// flatten copies d to out. With sparse set (a regular output file),
// unallocated and all-zero ranges are left as holes.
func flatten(d formats.Disk, out *os.File, sparse bool, h hash.Hash, prog *progress) error {
	size := d.Size()
	buf := make([]byte, copyChunk)
	mapper, _ := d.(formats.Mapper)
	src := formats.Readahead(d) // decompresses ahead on other CPUs
	defer src.Close()
	var zeros []byte
	for off := int64(0); off < size; {
		n := min(int64(len(buf)), size-off)
		aligned := (n + sector - 1) / sector * sector
		if sparse && mapper != nil {
			alloc, run, err := mapper.Map(off, aligned)
			if err != nil {
				return err
			}
			if !alloc {
				run = min(run, size-off)
				if h != nil {
					if zeros == nil {
						zeros = make([]byte, copyChunk)
					}
					for left := run; left > 0; left -= min(left, copyChunk) {
						h.Write(zeros[:min(left, copyChunk)])
					}
				}
				off += run
				prog.add(run)
				continue
			}
			n = min(n, run)
			aligned = (n + sector - 1) / sector * sector
		}
		if _, err := src.ReadAt(buf[:aligned], off); err != nil {
			return err
		}
		chunk := buf[:n]
		if h != nil {
			h.Write(chunk)
		}
		switch {
		case !sparse: // a pipe or terminal: write everything, in order
			if _, err := out.Write(chunk); err != nil {
				return err
			}
		case !formats.IsZero(chunk):
			if _, err := out.WriteAt(chunk, off); err != nil {
				return err
			}
		}
		off += n
		prog.add(n)
	}
	if sparse {
		return out.Truncate(size)
	}
	return nil
}
