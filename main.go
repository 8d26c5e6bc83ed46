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
	app := newApp()
	if err := app.Run(reorderArgs(app, os.Args)); err != nil {
		fmt.Fprintf(os.Stderr, "vdflat: %v\n", err)
		var ec cli.ExitCoder
		if errors.As(err, &ec) {
			os.Exit(ec.ExitCode())
		}
		os.Exit(1)
	}
}

// examples end the help of the program (key "") and of each command, and
// make the man page's EXAMPLES section.
var examples = map[string]string{
	"": `vdflat /mnt/vd                                          # mount; returns once ready
ln -s /evidence/disk.vmdk /mnt/vd/FlattenedImages/disk  # attach: "disk" is the raw disk
fdisk -l /mnt/vd/FlattenedImages/disk                   # use it like any disk image
cat /mnt/vd/status                                      # what is attached, recent errors
rm /mnt/vd/FlattenedImages/disk                         # detach
fusermount3 -u /mnt/vd                                  # unmount: every image flushed and closed`,
	"info":       "vdflat info disk.vmdk\nvdflat info --json disk.qcow2 base.vdi",
	"flatten":    "vdflat flatten disk.E01 disk.raw --hash md5\nvdflat flatten -q disk.qcow2 - | gzip > disk.raw.gz",
	"verify":     "vdflat verify case.E01",
	"completion": "vdflat completion bash > /etc/bash_completion.d/vdflat\nsource <(vdflat completion zsh)",
	"man":        "vdflat man | man -l -",
}

// withExample ends a help template with an example.
func withExample(template, example string) string {
	return template + "\nEXAMPLE:\n   " + strings.ReplaceAll(example, "\n", "\n   ") + "\n"
}

func newApp() *cli.App {
	app := &cli.App{
		Name:    "vdflat",
		Version: version,
		Usage:   "see virtual machine disk images as flat raw disks",
		UsageText: `vdflat [options] MOUNTPOINT [IMAGE...]
vdflat COMMAND [options] ARGUMENTS...`,
		Description: `vdflat MOUNTPOINT mounts a tree in which a symlink to an image made in
FlattenedImages becomes a regular file holding the image's flattened raw disk,
and returns to the shell once the mount is ready. IMAGE arguments are
attached at start as FlattenedImages/NAME, NAME being the file name
without its extension. Options may come before or after the arguments;
"--" ends them.

Images are opened read-only; the first open of a flattened file for writing
reopens the image read-write, and the last writer's close returns it to
read-only. Formats are recognised by content:
` + strings.Join(formats.Formats(), ", ") + `.`,
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
	app.CustomAppHelpTemplate = withExample(cli.AppHelpTemplate, examples[""])
	for _, c := range app.Commands {
		c.CustomHelpTemplate = withExample(cli.CommandHelpTemplate, examples[c.Name])
	}
	return app
}

// The commands: info, flatten and verify work without FUSE; completion
// and man print what make install installs.

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
				snapshotFlag,
			}, imgFlags...),
			Action: flattenCommand,
		},
		{
			Name:      "verify",
			Usage:     "read all of IMAGE, check what its format can check, print MD5, SHA-1 and SHA-256 (exit 1 on any finding)",
			ArgsUsage: "IMAGE",
			Flags:     append([]cli.Flag{&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress bar"}, snapshotFlag}, imgFlags...),
			Action:    verifyCommand,
		},
		{
			Name:      "completion",
			Usage:     "print the completion script for SHELL (bash, zsh or fish)",
			ArgsUsage: "SHELL",
			Action:    completionCommand,
		},
		{
			Name:   "man",
			Usage:  "print the man page",
			Hidden: true,
			Action: manCommand,
		},
	}
}

func imageOptions(c *cli.Context) formats.Options {
	return formats.Options{ReadOnly: true, SearchPath: c.StringSlice("search-path"), Strict: c.Bool("strict")}
}
