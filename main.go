// Command vdflat mounts a FUSE tree in which symlinking a virtual disk
// image into FlattenedImages makes a regular file holding the image's
// flattened raw disk.
package main

import (
	"bufio"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log"
	"log/syslog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"bazil.org/fuse"
	fusefs "bazil.org/fuse/fs"
	"github.com/dustin/go-humanize"
	"github.com/urfave/cli/v2"

	"vdflat/formats"
)

const version = "0.1.0"

// notifyEnv names the descriptor on which a daemonized child reports
// whether the mount is ready.
const notifyEnv = "_VDFLAT_NOTIFY_FD"

func main() {
	log.SetFlags(log.LstdFlags)
	log.SetPrefix("vdflat: ")
	if err := newApp().Run(os.Args); err != nil {
		fmt.Fprintf(os.Stderr, "vdflat: %v\n", err)
		var ec cli.ExitCoder
		if errors.As(err, &ec) {
			os.Exit(ec.ExitCode())
		}
		os.Exit(1)
	}
}

func newApp() *cli.App {
	return &cli.App{
		Name:    "vdflat",
		Version: version,
		Usage:   "see virtual machine disk images as flat raw disks",
		UsageText: `vdflat [options] MOUNTPOINT [IMAGE...]
   vdflat command [options] IMAGE...

   Mounting: vdflat /mnt/vd returns to the shell once the mount is ready. Then
     ln -s /path/disk.vmdk /mnt/vd/FlattenedImages/disk   attach: "disk" is the flattened raw disk
     fdisk -l /mnt/vd/FlattenedImages/disk                 use it like any disk image
     cat /mnt/vd/status                                    what is attached, recent attach errors
     rm /mnt/vd/FlattenedImages/disk                       detach
     fusermount3 -u /mnt/vd                                unmount; every image is flushed and closed
   IMAGE arguments are attached at start as FlattenedImages/<name without extension>.

   Images are opened read-only; the first open of a flattened file for writing
   reopens the image read-write, and the last writer's close returns it to
   read-only. Formats are recognised by content: ` + strings.Join(formats.Formats(), ", ") + `.`,
		HideHelpCommand: true,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "foreground", Aliases: []string{"f"}, Usage: "stay in the foreground and log to stderr"},
			&cli.BoolFlag{Name: "debug", Aliases: []string{"d"}, Usage: "log every FUSE operation (implies --foreground unless --log is given)"},
			&cli.StringSliceFlag{Name: "o", Usage: "mount options: ro (no attaching; only IMAGE arguments), allow_other (other users may read; permissions enforced), uid=N, gid=N (owner shown)"},
			&cli.BoolFlag{Name: "read-only", Aliases: []string{"r"}, Usage: "never write an image: opening a flattened file for writing fails with EROFS"},
			&cli.StringFlag{Name: "log", Usage: "log to `FILE` (default: stderr in the foreground, syslog in the background)"},
			&cli.StringSliceFlag{Name: "search-path", Usage: "extra `DIR` to look in for parent images found by identity (VDI snapshots)"},
			&cli.BoolFlag{Name: "strict", Usage: "refuse images with soft inconsistencies (such as a VMDK parent CID mismatch) instead of warning"},
			&cli.StringFlag{Name: "overlay", Usage: "never write images: writes go to `DIR`/NAME.qcow2 (made at the first write-open, backed by the image, resumed when NAME is attached again)"},
			&cli.IntFlag{Name: "max-readers", Value: 4096, Usage: "open read handles allowed per flattened file (more: EMLINK)"},
		},
		Commands: commands(),
		Action:   mountCommand,
	}
}

// mountConfig is what the mount command was asked to do.
type mountConfig struct {
	mountpoint string
	images     []string
	foreground bool
	debug      bool
	readOnly   bool
	roMount    bool
	allowOther bool
	uid, gid   uint32
	logFile    string
	overlayDir string
	maxReaders int
	attachOpts formats.Options
}

func parseMountConfig(c *cli.Context) (*mountConfig, error) {
	if c.NArg() < 1 {
		return nil, cli.Exit("missing MOUNTPOINT (see vdflat --help)", 2)
	}
	cfg := &mountConfig{
		mountpoint: c.Args().First(),
		images:     c.Args().Tail(),
		foreground: c.Bool("foreground"),
		debug:      c.Bool("debug"),
		readOnly:   c.Bool("read-only"),
		logFile:    c.String("log"),
		overlayDir: c.String("overlay"),
		maxReaders: c.Int("max-readers"),
		uid:        uint32(os.Getuid()),
		gid:        uint32(os.Getgid()),
		attachOpts: formats.Options{SearchPath: c.StringSlice("search-path"), Strict: c.Bool("strict")},
	}
	if cfg.debug && cfg.logFile == "" {
		cfg.foreground = true
	}
	if cfg.maxReaders < 1 {
		return nil, cli.Exit("--max-readers must be at least 1", 2)
	}
	for _, list := range c.StringSlice("o") {
		for _, o := range strings.Split(list, ",") {
			key, val, _ := strings.Cut(o, "=")
			switch key {
			case "ro":
				cfg.roMount = true
				cfg.readOnly = true
			case "rw", "":
			case "allow_other":
				cfg.allowOther = true
			case "uid", "gid":
				n, err := strconv.ParseUint(val, 10, 32)
				if err != nil {
					return nil, cli.Exit(fmt.Sprintf("-o %s: want a number, got %q", o, val), 2)
				}
				if key == "uid" {
					cfg.uid = uint32(n)
				} else {
					cfg.gid = uint32(n)
				}
			default:
				return nil, cli.Exit(fmt.Sprintf("-o %s: unknown mount option (known: ro, allow_other, uid=N, gid=N)", o), 2)
			}
		}
	}
	abs, err := filepath.Abs(cfg.mountpoint)
	if err != nil {
		return nil, err
	}
	cfg.mountpoint = abs
	if cfg.overlayDir != "" {
		if cfg.overlayDir, err = filepath.Abs(cfg.overlayDir); err != nil {
			return nil, err
		}
		if st, err := os.Stat(cfg.overlayDir); err != nil || !st.IsDir() {
			return nil, cli.Exit(fmt.Sprintf("--overlay %s: not a directory", cfg.overlayDir), 2)
		}
	}
	return cfg, nil
}

func mountCommand(c *cli.Context) error {
	cfg, err := parseMountConfig(c)
	if err != nil {
		return err
	}
	if err := preflight(cfg.mountpoint); err != nil {
		return cli.Exit(err.Error(), 1)
	}
	fdStr := os.Getenv(notifyEnv)
	if !cfg.foreground && fdStr == "" {
		return daemonize()
	}
	var notify *os.File
	if fdStr != "" {
		fd, _ := strconv.Atoi(fdStr)
		notify = os.NewFile(uintptr(fd), "notify")
		os.Unsetenv(notifyEnv)
	}
	err = serve(cfg, notify)
	if err != nil && notify != nil {
		fmt.Fprintf(notify, "%v\n", err)
		notify.Close()
	}
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	return nil
}

// preflight explains the usual reasons a mount cannot work before trying.
func preflight(mountpoint string) error {
	st, err := os.Stat(mountpoint)
	switch {
	case errors.Is(err, syscall.ENOTCONN):
		return fmt.Errorf("%s is a stale FUSE mount (transport endpoint is not connected); clear it with: %s -u %s", mountpoint, fusermountName(), mountpoint)
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("mount point %s does not exist (create it with: mkdir -p %s)", mountpoint, mountpoint)
	case err != nil:
		return fmt.Errorf("mount point: %w", err)
	case !st.IsDir():
		return fmt.Errorf("mount point %s is not a directory", mountpoint)
	}
	return preflightPlatform()
}

// daemonize runs this program again in the background and waits until
// the child reports that the mount is ready (or why it is not), like
// fuse_main does.
func daemonize() error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Env = append(os.Environ(), notifyEnv+"=3")
	cmd.ExtraFiles = []*os.File{w}
	// Standard streams stay unset: the child gets /dev/null, and reports
	// errors through the pipe.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting the background process: %w", err)
	}
	w.Close()
	msg, _ := io.ReadAll(bufio.NewReader(r))
	r.Close()
	s := strings.TrimSpace(string(msg))
	if s == "ok" {
		cmd.Process.Release()
		return nil
	}
	werr := cmd.Wait()
	if s == "" {
		s = fmt.Sprintf("the background process exited before the mount was ready (%v); run with -f to see why", werr)
	}
	return cli.Exit(s, 1)
}

func setupLogging(cfg *mountConfig, background bool) error {
	switch {
	case cfg.logFile != "":
		f, err := os.OpenFile(cfg.logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("--log: %w", err)
		}
		log.SetOutput(f)
	case background:
		w, err := syslog.New(syslog.LOG_DAEMON|syslog.LOG_INFO, "vdflat")
		if err != nil {
			// No syslog daemon (containers): keep quiet rather than fail;
			// attach errors still show in the status file.
			log.SetOutput(io.Discard)
			return nil
		}
		log.SetFlags(0)
		log.SetPrefix("")
		log.SetOutput(w)
	}
	return nil
}

const (
	heapFloor    = 64 << 20 // the collector waits for this much heap ...
	heapHeadroom = 32 << 20 // ... or this much garbage on top of the live heap
)

// paceCollector runs the collector when the heap reaches heapFloor or the
// live heap plus heapHeadroom, whichever is more. bazil allocates two
// 128 KiB buffers per read request, so how often the collector runs sets
// a large share of the read path's CPU: collecting at a fixed size rather
// than in proportion to a small live heap (GOGC=400 with a 64 MiB limit)
// reads about 1.15x faster at the same peak RSS, and following the live
// heap keeps big table caches from making it collect without end. It
// re-reads the live heap every second.
func paceCollector() {
	debug.SetGCPercent(-1)
	live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	for {
		metrics.Read(live)
		debug.SetMemoryLimit(max(heapFloor, int64(live[0].Value.Uint64())+heapHeadroom))
		time.Sleep(time.Second)
	}
}

// serve mounts, reports readiness on notify (when daemonized) and serves
// until unmounted. Every path out of it closes every image.
func serve(cfg *mountConfig, notify *os.File) error {
	if err := setupLogging(cfg, notify != nil); err != nil {
		return err
	}
	if os.Getenv("GOGC") == "" && os.Getenv("GOMEMLIMIT") == "" {
		go paceCollector()
	}
	// bazil's serve loop blocks in read(2) on /dev/fuse while holding its
	// P and starts a goroutine per request. With a single P (one CPU, or
	// pinned with taskset) that goroutine waits for sysmon to take the P
	// back, tens of µs per request; a second P lets it run at once (3-4x
	// the random 4 KiB IOPS when pinned, bench/RESULTS.md). Setting it
	// also stops the runtime from lowering it to 1 when the daemon is
	// pinned later (taskset -p).
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(max(2, runtime.GOMAXPROCS(0)))
	}
	t := newTree(cfg.uid, cfg.gid, cfg.maxReaders)
	admin := uint32(os.Getuid())
	fsys := newFilesys(t, cfg.attachOpts, cfg.readOnly, admin)
	fsys.overlayDir = cfg.overlayDir
	defer closeAll(t)

	flat := t.flattened()
	for _, img := range cfg.images {
		abs, err := filepath.Abs(img)
		if err != nil {
			return err
		}
		name := strings.TrimSuffix(filepath.Base(abs), filepath.Ext(abs))
		if _, err := fsys.attach(flat, name, abs); err != nil {
			return fmt.Errorf("attaching %s: %w", img, err)
		}
	}

	// Catch signals from here on, so one sent the moment the mount is
	// ready still unmounts cleanly.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	signal.Ignore(syscall.SIGHUP)

	cleanup, err := ensureFusermount()
	if err != nil {
		return err
	}
	defer cleanup()

	opts := []fuse.MountOption{
		fuse.FSName("vdflat"),
		fuse.Subtype("vdflat"),
		fuse.MaxReadahead(readaheadSize), // the default gives 4 KiB requests
		fuse.MaxIOSize(maxIOSize),
		fuse.AsyncRead(),
	}
	if cfg.allowOther {
		opts = append(opts, fuse.AllowOther(), fuse.DefaultPermissions())
	}
	if cfg.roMount {
		opts = append(opts, fuse.ReadOnly())
	}
	conn, err := fuse.Mount(cfg.mountpoint, opts...)
	if err != nil {
		return fmt.Errorf("mounting %s: %w", cfg.mountpoint, err)
	}
	defer conn.Close()
	if err := raiseReadahead(cfg.mountpoint, readaheadSize>>10); err != nil {
		log.Printf("readahead stays at the kernel's default: %v", err)
	}

	config := fusefs.Config{ServeInline: serveInline, Readers: serveReaders}
	if cfg.debug {
		config.Debug = func(msg any) { log.Print(msg) }
		logNegotiated(conn, cfg.mountpoint)
	}
	fsys.server = fusefs.New(conn, &config)
	log.Printf("mounted %s", cfg.mountpoint)
	if notify != nil {
		fmt.Fprintln(notify, "ok")
		notify.Close()
	}
	go handleSignals(cfg.mountpoint, sigs)
	if err := fsys.server.Serve(fsys); err != nil {
		return fmt.Errorf("serving %s: %w", cfg.mountpoint, err)
	}
	log.Printf("unmounted %s", cfg.mountpoint)
	return nil
}

// closeAll flushes and closes every attached image.
func closeAll(t *tree) {
	for _, img := range t.detachAll() {
		if err := img.Close(); err != nil {
			log.Printf("closing %s: %v", img.path, err)
		}
	}
}

// handleSignals unmounts on SIGINT/SIGTERM; while the mount is busy it
// says so, and a second signal unmounts lazily.
func handleSignals(mountpoint string, ch <-chan os.Signal) {
	busy := false
	for sig := range ch {
		if busy {
			log.Printf("%v: unmounting %s lazily", sig, mountpoint)
			if err := lazyUnmount(mountpoint); err != nil {
				log.Printf("lazy unmount: %v", err)
			}
			continue
		}
		log.Printf("%v: unmounting %s", sig, mountpoint)
		if err := fuse.Unmount(mountpoint); err != nil {
			busy = true
			log.Printf("cannot unmount %s (%v): close the files in use, or signal again to unmount lazily", mountpoint, err)
		}
	}
}

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
		f.Chmod(0o644)       // CreateTemp makes 0600; an output is an ordinary file
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
		case !isZero(chunk):
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
