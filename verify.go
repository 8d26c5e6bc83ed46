package main

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"strings"

	"github.com/urfave/cli/v2"

	"vdflat/formats"
)

// finding is one problem verify found.
type finding struct {
	Off int64
	Msg string
}

func verifyCommand(c *cli.Context) error {
	if c.NArg() != 1 {
		return cli.Exit("verify: want IMAGE", 2)
	}
	path := c.Args().First()
	d, err := openImageArg(c, path)
	if err != nil {
		return cli.Exit(fmt.Sprintf("%s: %v", path, err), 1)
	}
	defer d.Close()
	prog := newProgress(d.Size(), c.Bool("quiet"))
	sums, findings := verifyDisk(d, prog)
	prog.finish()
	info := d.Info()
	for _, algo := range []string{"md5", "sha1"} {
		if stored := storedHash(info, algo); stored != "" && !strings.EqualFold(stored, sums[algo]) {
			findings = append(findings, finding{-1, fmt.Sprintf("stored %s %s differs from the content's %s", algo, stored, sums[algo])})
		} else if stored != "" {
			fmt.Printf("stored %s matches\n", algo)
		}
	}
	for _, w := range info.Warnings {
		findings = append(findings, finding{-1, w})
	}
	findings = append(findings, trustFindings(d)...)
	if ck, ok := d.(formats.Checker); ok {
		found, err := ck.Check()
		for _, f := range found {
			findings = append(findings, finding{-1, f})
		}
		if err != nil {
			findings = append(findings, finding{-1, "metadata check: " + err.Error()})
		}
	}
	fmt.Printf("md5     %s\nsha1    %s\nsha256  %s\n", sums["md5"], sums["sha1"], sums["sha256"])
	if len(findings) == 0 {
		fmt.Printf("%s: consistent\n", path)
		return nil
	}
	for _, f := range findings {
		if f.Off >= 0 {
			fmt.Printf("finding: at byte %d: %s\n", f.Off, f.Msg)
		} else {
			fmt.Printf("finding: %s\n", f.Msg)
		}
	}
	return cli.Exit(fmt.Sprintf("%s: %d finding(s)", path, len(findings)), 1)
}

// storedHash finds a hash the image itself records (EWF, AFF).
func storedHash(info formats.Info, algo string) string {
	return info.Hashes[algo]
}

// verifyDisk reads all of d, hashing it; a range that fails to read is a
// finding (and hashes as zeros), and reading goes on after it.
func verifyDisk(d formats.Disk, prog *progress) (map[string]string, []finding) {
	hs := map[string]hash.Hash{"md5": md5.New(), "sha1": sha1.New(), "sha256": sha256.New()}
	w := io.MultiWriter(hs["md5"], hs["sha1"], hs["sha256"])
	var findings []finding
	size := d.Size()
	buf := make([]byte, copyChunk)
	src := formats.Readahead(d) // decompresses ahead on other CPUs
	defer src.Close()
	for off := int64(0); off < size; {
		n := min(int64(len(buf)), size-off)
		aligned := (n + sector - 1) / sector * sector
		if _, err := src.ReadAt(buf[:aligned], off); err != nil {
			// Narrow the failure down to sectors.
			for s := int64(0); s < aligned; s += sector {
				if _, err := d.ReadAt(buf[s:s+sector], off+s); err != nil {
					clear(buf[s : s+sector])
					if len(findings) < 1000 {
						findings = append(findings, finding{off + s, err.Error()})
					}
				}
			}
		}
		w.Write(buf[:n])
		off += n
		prog.add(n)
	}
	sums := map[string]string{}
	for k, h := range hs {
		sums[k] = hex.EncodeToString(h.Sum(nil))
	}
	return sums, findings
}
