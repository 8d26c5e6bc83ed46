#!/bin/sh
# Reproducible static release binaries.
#   dist.sh build DIR OS/ARCH...   builds DIR/vdflat-OS-ARCH and DIR/SHA256SUMS
#   dist.sh check DIR OS/ARCH...   builds again with an empty build cache and
#                                  fails unless every binary is byte-identical
# The same commit built by the same Go release gives the same bytes:
# -trimpath drops local paths, -buildid= the build ID, and the build
# information records only the commit (vcs.revision, vcs.modified).
set -eu
mode=$1 dir=$2
shift 2
GO=${GO:-go}

build() { # OS/ARCH OUTPUT
	CGO_ENABLED=0 GOOS=${1%/*} GOARCH=${1#*/} \
		$GO build -trimpath -buildvcs=auto -ldflags=-buildid= -o "$2" .
}

mkdir -p "$dir"
case $mode in
build)
	names=""
	for p in "$@"; do
		name=vdflat-${p%/*}-${p#*/}
		build "$p" "$dir/$name"
		names="$names $name"
	done
	# shellcheck disable=SC2086
	(cd "$dir" && sha256sum $names >SHA256SUMS)
	cat "$dir/SHA256SUMS"
	;;
check)
	tmp=$(mktemp -d)
	trap 'chmod -R u+w "$tmp"; rm -rf "$tmp"' EXIT
	for p in "$@"; do
		name=vdflat-${p%/*}-${p#*/}
		GOCACHE=$tmp/cache build "$p" "$tmp/$name"
		want=$(awk -v n="$name" '$2 == n { print $1 }' "$dir/SHA256SUMS")
		got=$(sha256sum <"$tmp/$name" | cut -d' ' -f1)
		if [ "$got" != "$want" ]; then
			echo "NOT REPRODUCIBLE: $name built again is $got, $dir/SHA256SUMS says ${want:-nothing}" >&2
			exit 1
		fi
		echo "$name reproduced: $got"
	done
	;;
*)
	echo "usage: dist.sh build|check DIR OS/ARCH..." >&2
	exit 2
	;;
esac
