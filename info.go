package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/dustin/go-humanize"
	"github.com/urfave/cli/v2"

	"vdflat/formats"
)

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
	Snapshots  []snapshotReport    `json:"snapshots"` // points in time (snapshots.go)
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
	r.Info.Warnings = append(r.Info.Warnings, atimeWarnings(&info, uint32(os.Geteuid()))...)
	r.Snapshots = snapshotReports(d, opts)
	parts, err := formats.Partitions(d)
	if err != nil {
		r.PartError = err.Error()
	}
	if parts != nil {
		r.Partitions = parts
	}
	r.Info.Warnings = append(r.Info.Warnings, formats.PartitionWarnings(parts, d.Size())...)
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
			fmt.Fprintf(os.Stderr, "vdflat: %s\n", escapeText(p+": "+err.Error()))
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
	line := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", escapeText(k), escapeText(v)) }
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
	printSnapshots(tw, r.Snapshots)
	tw.Flush()
	if r.PartError != "" {
		fmt.Fprintf(w, "partitions: %s\n", escapeText(r.PartError))
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
			fmt.Fprintf(tw, "  %d\t%s\t%d\t%s\t%s\n", p.Number, typ, p.Start, humanize.IBytes(uint64(p.Size)), escapeText(p.Name))
		}
		tw.Flush()
	}
}
