// Command vdflat mounts a FUSE tree in which symlinking a virtual disk
// image into FlattenedImages makes a regular file holding the image's
// flattened raw disk.
package main

import (
	"errors"
	"fmt"
	"log"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"vdflat/formats"
)

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
