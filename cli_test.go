package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"strings"
	"testing"
)

// Flags after positional arguments move in front of them, with their
// values, for the mount and every command; "--" ends the flags.
func TestReorderArgs(t *testing.T) {
	app := newApp()
	for _, tc := range []struct{ in, want string }{
		{"flatten disk.qcow2 out.raw --force", "flatten --force disk.qcow2 out.raw"},
		{"flatten disk.qcow2 --hash md5 out.raw -q", "flatten --hash md5 -q disk.qcow2 out.raw"},
		{"flatten disk.qcow2 --hash=md5 - --search-path /p", "flatten --hash=md5 --search-path /p disk.qcow2 -"},
		{"flatten a -- --force", "flatten -- a --force"},
		{"flatten --force -- -a b", "flatten --force -- -a b"},
		{"info a.vmdk --json b.vdi --strict", "info --json --strict a.vmdk b.vdi"},
		{"verify img -q", "verify -q img"},
		{"/mnt/vd -f a.vmdk -o ro --log /tmp/l -r", "-f -o ro --log /tmp/l -r /mnt/vd a.vmdk"},
		{"/mnt/vd --max-readers -1", "--max-readers -1 /mnt/vd"},
		// Program flags before a command stay before it.
		{"-d info x --json", "-d info --json x"},
		// A flag's value is not taken for the command.
		{"--log info /mnt/vd -f", "--log info -f /mnt/vd"},
		{"-- info", "-- info"},
		{"completion bash", "completion bash"},
		{"verify --help", "verify --help"},
		{"", ""},
	} {
		in := append([]string{"vdflat"}, strings.Fields(tc.in)...)
		want := append([]string{"vdflat"}, strings.Fields(tc.want)...)
		if got := reorderArgs(app, in); !reflect.DeepEqual(got, want) {
			t.Errorf("reorderArgs(%q) = %q, want %q", tc.in, got, want)
		}
	}
}

// The binary takes flags after its arguments.
func TestFlagsAfterArguments(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.qcow2")
	runTool(t, "", "qemu-img", "create", "-f", "qcow2", img, "4M")
	runTool(t, "", "qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 1M 64k", img)
	want := filepath.Join(dir, "want.raw")
	runTool(t, "", "qemu-img", "convert", "-O", "raw", img, want)
	out := filepath.Join(dir, "out.raw")
	if err := os.WriteFile(out, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	text, err := vdflatCmd(t, "flatten", img, out, "--force", "--hash", "sha256", "-q")
	if err != nil {
		t.Fatalf("flatten IMAGE OUTPUT --force: %v\n%s", err, text)
	}
	runTool(t, "", "cmp", want, out)
	if !strings.Contains(text, sha256File(t, want)) {
		t.Fatalf("flatten --hash after the arguments printed %q", text)
	}
	if text, err := vdflatCmd(t, "info", img, "--json"); err != nil || !strings.HasPrefix(text, "[") {
		t.Fatalf("info IMAGE --json: %v\n%s", err, text)
	}
	// After "--" a flag is an argument: here a missing image.
	if text, err := vdflatCmd(t, "info", "--", "--json"); err == nil || !strings.Contains(text, "--json:") {
		t.Fatalf("info -- --json: %v\n%s", err, text)
	}
}

// --help of the program and of every command ends with an example.
func TestHelpEndsWithExample(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"info", "--help"}, {"flatten", "--help"}, {"verify", "--help"}, {"completion", "--help"}} {
		text, err := vdflatCmd(t, args...)
		if err != nil {
			t.Fatalf("%q: %v\n%s", args, err, text)
		}
		_, example, ok := strings.Cut(text, "\nEXAMPLE:\n")
		if !ok || strings.Contains(example, ":\n") || !strings.Contains(example, "vdflat ") {
			t.Errorf("%q does not end with an example:\n%s", args, text)
		}
	}
}

// --version names the commit the build information records.
func TestVersion(t *testing.T) {
	text, err := vdflatCmd(t, "--version")
	if err != nil || !strings.HasPrefix(text, "vdflat version "+release+" (") || !strings.Contains(text, " go1.") {
		t.Fatalf("--version: %v %q", err, text)
	}
	settings := []debug.BuildSetting{{Key: "vcs.revision", Value: "0123abc"}, {Key: "vcs.modified", Value: "true"}}
	if got, want := vcsCommit(settings), "commit 0123abc, modified"; got != want {
		t.Errorf("vcsCommit = %q, want %q", got, want)
	}
	if got, want := vcsCommit(settings[:1]), "commit 0123abc"; got != want {
		t.Errorf("vcsCommit = %q, want %q", got, want)
	}
	if got, want := vcsCommit(nil), "unknown commit"; got != want {
		t.Errorf("vcsCommit = %q, want %q", got, want)
	}
}

// The man page renders without a warning from groff and holds the
// commands, the behaviour table and the examples.
func TestManPage(t *testing.T) {
	page, err := vdflatCmd(t, "man")
	if err != nil {
		t.Fatalf("man: %v\n%s", err, page)
	}
	path := filepath.Join(t.TempDir(), "vdflat.1")
	if err := os.WriteFile(path, []byte(page), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("groff", "-man", "-Tutf8", "-ww", "-z", path)
	if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
		t.Fatalf("groff: %v\n%s", err, out)
	}
	text := runTool(t, "", "man", "-l", path)
	for _, want := range []string{"flatten", "--max-readers", "ETXTBSY", "EXAMPLES", "FlattenedImages/disk", "ln -s TARGET NAME"} {
		if !strings.Contains(text, want) {
			t.Errorf("man page lacks %q", want)
		}
	}
	if rows := markdownTable(readme, "## Behaviour of the mounted tree"); len(rows) < 10 {
		t.Errorf("the README's behaviour table gave %d rows", len(rows))
	}
}

// Each completion script parses in its shell; bash's completes flags,
// flag values and commands, fish's a flag value.
func TestCompletion(t *testing.T) {
	dir := t.TempDir()
	for _, shell := range []string{"bash", "zsh", "fish"} {
		text, err := vdflatCmd(t, "completion", shell)
		if err != nil || !strings.Contains(text, "flatten") {
			t.Fatalf("completion %s: %v\n%s", shell, err, text)
		}
		if err := os.WriteFile(filepath.Join(dir, shell), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	runTool(t, "", "bash", "-n", filepath.Join(dir, "bash"))
	for _, tc := range []struct{ words, want string }{
		{"vdflat flatten disk.qcow2 --h", "--help --hash"},
		{"vdflat flatten --hash ''", "md5 sha1 sha256"},
		{"vdflat ver", "verify"},
		{"vdflat completion ''", "bash zsh fish"},
		{"vdflat /mnt/vd --max", "--max-readers"},
	} {
		script := `source "$1"; COMP_WORDS=(` + tc.words + `); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _vdflat; echo "${COMPREPLY[*]}"`
		got := strings.TrimSpace(runTool(t, dir, "bash", "-c", script, "bash", filepath.Join(dir, "bash")))
		if got != tc.want {
			t.Errorf("bash completion of %q: %q, want %q", tc.words, got, tc.want)
		}
	}
	// zsh and fish: the scripts parse, and fish completes a value.
	runTool(t, "", "zsh", "-n", filepath.Join(dir, "zsh"))
	fish := "source " + filepath.Join(dir, "fish") + "; complete -C 'vdflat flatten x --hash '"
	if got := runTool(t, "", "fish", "-c", fish); !strings.HasPrefix(got, "md5\t") || !strings.Contains(got, "\nsha256\t") {
		t.Errorf("fish completion of --hash: %q", got)
	}
	if text, err := vdflatCmd(t, "completion", "tcsh"); err == nil {
		t.Errorf("completion tcsh succeeded:\n%s", text)
	}
}
