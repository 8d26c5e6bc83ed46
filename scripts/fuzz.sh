#!/bin/sh
# Runs every Fuzz target of every package for a short time each. New
# inputs are not minimized (-fuzzminimizetime 1x): minimizing one near the
# deadline makes a short run fail with "context deadline exceeded".
set -e
t=${1:-8s}
for pkg in $(go list ./...); do
	for f in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
		echo "fuzz $pkg $f ($t)"
		go test -run '^$' -fuzz "^$f\$" -fuzztime "$t" -fuzzminimizetime 1x "$pkg" >/tmp/vdflat-fuzz.log 2>&1 || {
			cat /tmp/vdflat-fuzz.log
			exit 1
		}
	done
done
