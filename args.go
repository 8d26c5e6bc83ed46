package main

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// reorderArgs moves the flags that follow positional arguments in front
// of them, for the mount and for each command, so that
// "vdflat flatten disk.qcow2 out.raw --force" works as GNU tools do;
// urfave/cli stops at the first positional argument. "--" ends the flags
// as usual. Which flags take a value comes from the flag definitions.
func reorderArgs(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	out := []string{args[0]}
	rest := args[1:]
	appFlags := flagValues(app.Flags)
	// A command is the first positional argument, when it names one;
	// the flags before it are the program's.
	if i := firstPositional(rest, appFlags); i >= 0 {
		if cmd := findCommand(app, rest[i]); cmd != nil {
			out = append(out, reorder(rest[:i], appFlags)...)
			out = append(out, rest[i])
			return append(out, reorder(rest[i+1:], flagValues(cmd.Flags))...)
		}
	}
	return append(out, reorder(rest, appFlags)...)
}

// flagValues maps every name of every flag to whether it takes a value.
func flagValues(flags []cli.Flag) map[string]bool {
	m := map[string]bool{}
	for _, f := range flags {
		for _, n := range f.Names() {
			m[n] = takesValue(f)
		}
	}
	return m
}

// takesValue tells whether flag f takes a value (a string, a number).
func takesValue(f cli.Flag) bool {
	d, ok := f.(cli.DocGenerationFlag)
	return ok && d.TakesValue()
}

func findCommand(app *cli.App, name string) *cli.Command {
	for _, c := range app.Commands {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// isFlag tells whether a is a flag: "-" alone is an argument (stdout).
func isFlag(a string) bool { return len(a) > 1 && a[0] == '-' }

// flagTakesNext tells whether flag a consumes the argument after it.
func flagTakesNext(a string, values map[string]bool) bool {
	name := strings.TrimLeft(a, "-")
	return !strings.Contains(name, "=") && values[name]
}

// firstPositional returns the index of the first positional argument, or
// -1 when "--" or the end comes first.
func firstPositional(args []string, values map[string]bool) int {
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "--":
			return -1
		case isFlag(a):
			if flagTakesNext(a, values) {
				i++
			}
		default:
			return i
		}
	}
	return -1
}

// reorder puts the flags of one command line (with their values) first
// and the positional arguments after them, each in its order. After a
// "--" nothing is a flag; "--" goes before every positional argument so
// that none of them is read as a flag either.
func reorder(args []string, values map[string]bool) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "--":
			flags = append(flags, "--")
			return append(append(flags, pos...), args[i+1:]...)
		case isFlag(a):
			flags = append(flags, a)
			if flagTakesNext(a, values) && i+1 < len(args) {
				i++
				flags = append(flags, args[i])
			}
		default:
			pos = append(pos, a)
		}
	}
	return append(flags, pos...)
}
