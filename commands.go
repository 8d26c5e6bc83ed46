package main

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/urfave/cli/v2"

	"vdflat/formats"
)

// The commands that work without FUSE: info, flatten, verify.

func commands() []*cli.Command {
	imgFlags := []cli.Flag{
		&cli.StringSliceFlag{Name: "search-path", Usage: "extra `DIR` to look in for parent images found by identity (VDI snapshots)"},
		&cli.BoolFlag{Name: "strict", Usage: "refuse soft inconsistencies (such as a VMDK parent CID mismatch)"},
	}
	return []*cli.Command{
		{
			Name:      "info",
			Usage:     "describe images: format, size, allocation, chain, features, partitions",
			ArgsUsage: "IMAGE...",
			Flags:     append([]cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON (stable field names, for scripts)"}}, imgFlags...),
			Action:    infoCommand,
		},
		{
			Name:      "flatten",
			Usage:     "write the flattened raw disk of IMAGE to OUTPUT (- for stdout), without FUSE",
			ArgsUsage: "IMAGE OUTPUT",
			Flags: append([]cli.Flag{
				&cli.BoolFlag{Name: "force", Usage: "overwrite OUTPUT if it exists"},
				&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress bar"},
				&cli.StringFlag{Name: "hash", Usage: "print the `ALGO` (md5, sha1, sha256) hash of the flattened disk"},
			}, imgFlags...),
			Action: flattenCommand,
		},
		{
			Name:      "verify",
			Usage:     "read all of IMAGE, check what its format can check, print MD5, SHA-1 and SHA-256 (exit 1 on any finding)",
			ArgsUsage: "IMAGE",
			Flags:     append([]cli.Flag{&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress bar"}}, imgFlags...),
			Action:    verifyCommand,
		},
	}
}

func imageOptions(c *cli.Context) formats.Options {
	return formats.Options{ReadOnly: true, SearchPath: c.StringSlice("search-path"), Strict: c.Bool("strict")}
}

// imageReport is what info prints, and its JSON form.
type imageReport struct {
	Path       string              `json:"path"`
	Format     string              `json:"format"`
	Variant    string              `json:"variant,omitempty"`
	Size       int64               `json:"virtual_size"`
	FileBytes  int64               `json:"file_bytes"`      // sum of the sizes of the top image's files
	DiskBytes  int64               `json:"disk_bytes"`      // what they occupy on disk
	Allocated  int64               `json:"allocated_bytes"` // virtual bytes stored in the top image, -1 unknown
	Writable   bool                `json:"writable"`
	Info       formats.Info        `json:"chain"`
	Partitions []formats.Partition `json:"partitions"`
	PartError  string              `json:"partition_error,omitempty"`
}

func describe(path string, opts formats.Options) (*imageReport, error) {
	d, err := formats.Open(path, opts)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	info := d.Info()
	r := &imageReport{Path: path, Format: info.Format, Variant: info.Variant, Size: d.Size(), Allocated: info.Allocated, Info: info, Partitions: []formats.Partition{}}
	for _, f := range info.Files {
		if st, err := os.Stat(f); err == nil {
			r.FileBytes += st.Size()
			r.DiskBytes += diskUsage(st)
		}
	}
	r.Writable = formats.CanWrite(d) && filesWritable(info.Files)
	parts, err := formats.Partitions(d)
	if err != nil {
		r.PartError = err.Error()
	}
	if parts != nil {
		r.Partitions = parts
	}
	return r, nil
}

func infoCommand(c *cli.Context) error {
	if c.NArg() == 0 {
		return cli.Exit("info: missing IMAGE", 2)
	}
	var reports []*imageReport
	failed := false
	for _, p := range c.Args().Slice() {
		r, err := describe(p, imageOptions(c))
		if err != nil {
			fmt.Fprintf(os.Stderr, "vdflat: %s: %v\n", p, err)
			failed = true
			continue
		}
		reports = append(reports, r)
	}
	if c.Bool("json") {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(reports); err != nil {
			return err
		}
	} else {
		for i, r := range reports {
			if i > 0 {
				fmt.Println()
			}
			printReport(os.Stdout, r)
		}
	}
	if failed {
		return cli.Exit("", 1)
	}
	return nil
}

func sizeString(n int64) string {
	return fmt.Sprintf("%s (%d bytes)", humanize.IBytes(uint64(max(n, 0))), n)
}

func printReport(w io.Writer, r *imageReport) {
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	line := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	line("image", r.Path)
	format := r.Format
	if r.Variant != "" {
		format += " (" + r.Variant + ")"
	}
	line("format", format)
	line("virtual size", sizeString(r.Size))
	line("files", fmt.Sprintf("%d, %s, %s on disk", len(r.Info.Files), sizeString(r.FileBytes), humanize.IBytes(uint64(r.DiskBytes))))
	if r.Allocated >= 0 {
		line("allocated", sizeString(r.Allocated))
	}
	if r.Info.ClusterSize > 0 {
		line("cluster size", humanize.IBytes(uint64(r.Info.ClusterSize)))
	}
	if r.Writable {
		line("writable", "yes")
	} else {
		reason := r.Info.ReadOnlyReason
		if reason == "" || reason == "opened read-only" {
			reason = "the image files are not writable"
		}
		line("writable", "no: "+reason)
	}
	if len(r.Info.Features) > 0 {
		line("features", strings.Join(r.Info.Features, ", "))
	}
	keys := make([]string, 0, len(r.Info.Metadata))
	for k := range r.Info.Metadata {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		line("  "+k, r.Info.Metadata[k])
	}
	for _, warn := range r.Info.Warnings {
		line("warning", warn)
	}
	for i, p := 1, r.Info.Parent; p != nil; i, p = i+1, p.Parent {
		v := p.Format
		if p.Variant != "" {
			v += " (" + p.Variant + ")"
		}
		line(fmt.Sprintf("parent %d", i), fmt.Sprintf("%s, %s, %s", p.Path, v, sizeString(p.Size)))
	}
	tw.Flush()
	if r.PartError != "" {
		fmt.Fprintf(w, "partitions: %s\n", r.PartError)
	}
	if len(r.Partitions) > 0 {
		fmt.Fprintf(w, "partitions (%s):\n", r.Partitions[0].Scheme)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  #\tTYPE\tSTART\tSIZE\tNAME")
		for _, p := range r.Partitions {
			typ := p.Type
			if p.TypeName != "" {
				typ += " " + p.TypeName
			}
			fmt.Fprintf(tw, "  %d\t%s\t%d\t%s\t%s\n", p.Number, typ, p.Start, humanize.IBytes(uint64(p.Size)), p.Name)
		}
		tw.Flush()
	}
}

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
	d, err := formats.Open(src, imageOptions(c))
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
	}
	prog := newProgress(d.Size(), c.Bool("quiet"))
	err = flatten(d, out, tmp != "", h, prog)
	prog.done()
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
		fmt.Fprintf(os.Stderr, "%s  %s\n", hex.EncodeToString(h.Sum(nil)), dst)
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
		if _, err := d.ReadAt(buf[:aligned], off); err != nil {
			return err
		}
		chunk := buf[:n]
		if h != nil {
			h.Write(chunk)
		}
		if !sparse || !isZero(chunk) {
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

func isZero(b []byte) bool {
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

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
	d, err := formats.Open(path, imageOptions(c))
	if err != nil {
		return cli.Exit(fmt.Sprintf("%s: %v", path, err), 1)
	}
	defer d.Close()
	prog := newProgress(d.Size(), c.Bool("quiet"))
	sums, findings := verifyDisk(d, prog)
	prog.done()
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
	for k, v := range info.Metadata {
		k = strings.ToLower(strings.ReplaceAll(k, "-", ""))
		if k == algo || k == "stored "+algo || k == "stored_"+algo || k == algo+"_hash" {
			return v
		}
	}
	return ""
}

// verifyDisk reads all of d, hashing it; a range that fails to read is a
// finding (and hashes as zeros), and reading goes on after it.
func verifyDisk(d formats.Disk, prog *progress) (map[string]string, []finding) {
	hs := map[string]hash.Hash{"md5": md5.New(), "sha1": sha1.New(), "sha256": sha256.New()}
	w := io.MultiWriter(hs["md5"], hs["sha1"], hs["sha256"])
	var findings []finding
	size := d.Size()
	buf := make([]byte, copyChunk)
	for off := int64(0); off < size; {
		n := min(int64(len(buf)), size-off)
		aligned := (n + sector - 1) / sector * sector
		if _, err := d.ReadAt(buf[:aligned], off); err != nil {
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

// progress draws a one-line progress bar on stderr when it is a terminal.
type progress struct {
	total, done_ int64
	start, last  time.Time
	on           bool
}

func newProgress(total int64, quiet bool) *progress {
	p := &progress{total: total, start: time.Now()}
	if st, err := os.Stderr.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 && !quiet {
		p.on = true
	}
	return p
}

func (p *progress) add(n int64) {
	p.done_ += n
	if !p.on || time.Since(p.last) < 200*time.Millisecond {
		return
	}
	p.last = time.Now()
	p.draw()
}

func (p *progress) draw() {
	el := time.Since(p.start).Seconds()
	rate := float64(p.done_) / max(el, 1e-3)
	eta := "?"
	if rate > 0 && p.total > p.done_ {
		eta = (time.Duration(float64(p.total-p.done_)/rate) * time.Second).Round(time.Second).String()
	}
	pct := 100.0
	if p.total > 0 {
		pct = 100 * float64(p.done_) / float64(p.total)
	}
	const width = 30
	fill := int(pct / 100 * width)
	fmt.Fprintf(os.Stderr, "\r[%s%s] %5.1f%% %s / %s  %s/s  ETA %s   ",
		strings.Repeat("#", fill), strings.Repeat(".", width-fill), pct,
		humanize.IBytes(uint64(p.done_)), humanize.IBytes(uint64(p.total)), humanize.IBytes(uint64(rate)), eta)
}

func (p *progress) done() {
	if p.on {
		p.draw()
		fmt.Fprintln(os.Stderr)
	}
}
