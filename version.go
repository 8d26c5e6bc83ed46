package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// release is the version of this source; the build adds the rest.
const release = "0.1.0"

// version is what --version and the status file show: the release, the
// commit it was built from (with "modified" when the work tree had
// changes) and the Go release that built it.
var version = buildVersion()

func buildVersion() string {
	commit := "unknown commit"
	if bi, ok := debug.ReadBuildInfo(); ok {
		commit = vcsCommit(bi.Settings)
	}
	return fmt.Sprintf("%s (%s, %s %s/%s)", release, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// vcsCommit describes the commit recorded by go build's -buildvcs.
func vcsCommit(settings []debug.BuildSetting) string {
	var rev, modified string
	for _, s := range settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = ", modified"
			}
		}
	}
	if rev == "" {
		return "unknown commit"
	}
	return "commit " + rev + modified
}
