package main

import (
	"bufio"
	"errors"
	"fmt"
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
	"strconv"
	"strings"
	"syscall"
	"time"

	"bazil.org/fuse"
	fusefs "bazil.org/fuse/fs"
	"github.com/urfave/cli/v2"

	"vdflat/formats"
)

// notifyEnv names the descriptor on which a daemonized child reports
// whether the mount is ready.
const notifyEnv = "_VDFLAT_NOTIFY_FD"

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
	log.SetOutput(escapeLines(log.Writer()))
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
	t.version = version
	fsys := newFilesys(t, cfg.attachOpts, cfg.readOnly, cfg.overlayDir, uint32(os.Getuid()))
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
	if err := fsys.guardMount(cfg.mountpoint); err != nil {
		return err
	}
	// Files that images name (extents, segments, parents found by search)
	// are looked up deep inside formats: guard those lookups too.
	formats.SetPathGuard(fsys.guard.check)
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
