#!/bin/sh
# Mounts vdflat, attaches sample images made by other software, shows the
# flattened disks through real tools, checks them against the expected
# hashes, detaches and unmounts.
set -eu
samples=$(cd "${1:-../shared/samples}" && pwd)
bin=$(pwd)/vdflat
work=$(mktemp -d /tmp/vdflat-demo.XXXXXX)
mnt=$work/mnt
mkdir "$mnt"
cleanup() {
	fusermount3 -u "$mnt" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

say() { printf '\n$ %s\n' "$*"; }
run() { say "$*"; "$@"; }

run "$bin" "$mnt"
run ls -l "$mnt" "$mnt/FlattenedImages"

# name  sample (relative to the samples folder)
set -- \
	ext2-vmdk dfvfs/ext2.vmdk \
	ext2-qcow2 dfvfs/ext2.qcow2 \
	ext2-e01 dfvfs/ext2.E01 \
	mbr-dmg udif/compression-zlib.dmg
fail=0
while [ $# -gt 0 ]; do
	name=$1 rel=$2
	shift 2
	run ln -s "$samples/$rel" "$mnt/FlattenedImages/$name"
	run ls -l "$mnt/FlattenedImages/$name"
	run file -s "$mnt/FlattenedImages/$name"
	run blkid "$mnt/FlattenedImages/$name" || true
	want=$(awk -F'\t' -v p="$rel" '$1 == p { print $4 }' "$samples/expected.tsv")
	got=$(md5sum <"$mnt/FlattenedImages/$name" | cut -d' ' -f1)
	if [ "$got" = "$want" ]; then
		echo "md5 $got = expected (from expected.tsv)"
	else
		echo "md5 $got != expected $want"
		fail=1
	fi
done
run fls -r "$mnt/FlattenedImages/ext2-qcow2"
run cat "$mnt/status"
run rm "$mnt/FlattenedImages/ext2-vmdk"
run fusermount3 -u "$mnt"
exit $fail
