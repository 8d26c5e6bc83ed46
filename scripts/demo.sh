#!/bin/sh
# vdflat's demo, from a plain clone: makes a small disk at run time (an MBR
# with an ext4 and a FAT partition holding a few files), turns it into
# qcow2 (compressed, and a snapshot on top of it), VMDK, VHDX and E01 with
# qemu-img, qemu-io and ewfacquire, mounts vdflat, attaches every image,
# shows the flattened disks and their partitions through fdisk, blkid, fls,
# mtools and a read-only loop mount, checks every flattened disk against
# qemu-img convert or ewfexport, runs the commands that need no FUSE,
# detaches and unmounts. Sample images in SAMPLES (the argument, default
# ../shared/samples) are attached and checked too when that folder exists.
# Any mismatch or failing tool stops the demo with an error.
set -eu
bin=${VDFLAT:-$(pwd)/vdflat}
samples=${1:-../shared/samples}
[ -d "$samples" ] && samples=$(cd "$samples" && pwd)
work=$(mktemp -d /tmp/vdflat-demo.XXXXXX)
mnt=$work/mnt
loop=$work/loop
mkdir "$mnt" "$loop"
cleanup() {
	status=$?
	if mountpoint -q "$loop"; then umount "$loop" || true; fi
	fusermount3 -u "$mnt" 2>/dev/null || true
	rm -rf "$work"
	[ "$status" = 0 ] || echo "DEMO FAILED (exit status $status): see the last command above" >&2
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '\n$ %s\n' "$*"; }
run() { say "$*"; "$@"; }
fail() {
	echo "error: $*" >&2
	exit 1
}
md5() { md5sum <"$1" | cut -d' ' -f1; }
checked=0
check() { # NAME GOT WANT SOURCE
	[ "$2" = "$3" ] || fail "$1: flattened md5 $2, but $4 gives $3"
	echo "$1: md5 $2, the same as $4"
	checked=$((checked + 1))
}

cd "$work"
echo "== A 16 MiB disk: MBR, p1 ext4 and p2 FAT16, a few files on each"
mkdir -p files/docs
echo "hello from the vdflat demo" >files/hello.txt
seq 1 5000 >files/docs/numbers.txt
truncate -s 16M disk.raw
printf 'label: dos\nlabel-id: 0x7664666c\nstart=2048, size=16384, type=83\nstart=18432, type=6\n' | sfdisk -q disk.raw
mkfs.ext4 -q -F -L demo-ext4 -E offset=$((2048 * 512)) -d files disk.raw 8M
fat=disk.raw@@$((18432 * 512))
mkfs.vfat -F 16 -s 1 -n DEMO-FAT --offset 18432 disk.raw $(((32768 - 18432) / 2)) >/dev/null
mcopy -i "$fat" files/hello.txt ::HELLO.TXT
mmd -i "$fat" ::DOCS
mcopy -i "$fat" files/docs/numbers.txt ::DOCS/NUMBERS.TXT

echo "== The same disk as images made by other software"
run qemu-img convert -c -f raw -O qcow2 disk.raw disk.qcow2
run qemu-img create -q -f qcow2 -b disk.qcow2 -F qcow2 snap.qcow2
say qemu-io -f qcow2 -c "'write -P 0x5a 15M 64k'" snap.qcow2
qemu-io -f qcow2 -c 'write -q -P 0x5a 15M 64k' snap.qcow2
run qemu-img convert -f raw -O vmdk disk.raw disk.vmdk
run qemu-img convert -f raw -O vhdx disk.raw disk.vhdx
quietly() { # the EWF tools print banners; show them only when they fail
	"$@" >tool.log 2>&1 || { cat tool.log; fail "$*"; }
}
say ewfacquire -u -t disk -C demo-case -E 1 -e examiner -D "'vdflat demo disk'" -N "'made by make demo'" -c deflate:fast -d sha1 disk.raw
quietly ewfacquire -u -q -t disk -C demo-case -E 1 -e examiner -D "vdflat demo disk" -N "made by make demo" -c deflate:fast -d sha1 disk.raw
ls -l disk.qcow2 snap.qcow2 disk.vmdk disk.vhdx disk.E01

# What each image should flatten to, by the format's own tools.
for img in disk.qcow2 snap.qcow2 disk.vmdk disk.vhdx; do
	qemu-img convert -O raw "$img" "$img.raw"
done
quietly ewfexport -u -q -t disk.E01 -f raw disk.E01

echo
echo "== Mounting vdflat and attaching the images"
run "$bin" "$mnt"
flat=$mnt/FlattenedImages
for img in disk.qcow2 snap.qcow2 disk.vmdk disk.vhdx disk.E01; do
	name=$(echo "$img" | tr . -)
	run ln -s "$work/$img" "$flat/$name"
done
run ls -l "$flat"
run cat "$mnt/status"

echo
echo "== Real tools on the flattened disks"
run fdisk -l "$flat/disk-vmdk"
run blkid "$mnt/Partitions/disk-vhdx/p1" "$mnt/Partitions/disk-vhdx/p2"
run fls -r -o 2048 "$flat/disk-E01"
run mdir -/ -i "$mnt/Partitions/snap-qcow2/p2" ::
run mount -o loop,ro "$mnt/Partitions/disk-qcow2/p1" "$loop"
run ls -lR "$loop"
run cat "$loop/hello.txt"
grep -q "hello from the vdflat demo" "$loop/hello.txt" || fail "hello.txt read through the loop mount is wrong"
run umount "$loop"

echo
echo "== Every flattened disk against the format's own tools"
for img in disk.qcow2 snap.qcow2 disk.vmdk disk.vhdx; do
	check "$img" "$(md5 "$flat/$(echo "$img" | tr . -)")" "$(md5 "$img.raw")" "qemu-img convert"
done
check disk.E01 "$(md5 "$flat/disk-E01")" "$(md5 disk.E01.raw)" "ewfexport"
[ "$(md5 disk.raw)" = "$(md5 disk.E01.raw)" ] || fail "ewfexport does not give the acquired disk back"

if [ -f "$samples/expected.tsv" ]; then
	echo
	echo "== Sample images made by other software, from $samples"
	# name  sample (relative to the samples folder)
	set -- \
		ext2-vmdk dfvfs/ext2.vmdk \
		ext2-qcow2 dfvfs/ext2.qcow2 \
		ext2-e01 dfvfs/ext2.E01 \
		mbr-dmg udif/compression-zlib.dmg
	while [ $# -gt 0 ]; do
		name=$1 rel=$2
		shift 2
		run ln -s "$samples/$rel" "$flat/$name"
		run file -s "$flat/$name"
		want=$(awk -F'\t' -v p="$rel" '$1 == p { print $4 }' "$samples/expected.tsv")
		[ -n "$want" ] || fail "$rel is not in $samples/expected.tsv"
		check "$rel" "$(md5 "$flat/$name")" "$want" "expected.tsv"
	done
	run fls -r "$flat/ext2-qcow2"
else
	echo
	echo "(no sample images at $samples: only the images made above are shown)"
fi

echo
echo "== Detaching and unmounting"
run rm "$flat/disk-vmdk"
run ls "$flat"
run fusermount3 -u "$mnt"

echo
echo "== The commands that need no FUSE"
run "$bin" info disk.E01
run "$bin" verify -q disk.E01
run "$bin" flatten snap.qcow2 snap.raw --hash md5 -q
check "flatten snap.qcow2" "$(md5 snap.raw)" "$(md5 snap.qcow2.raw)" "qemu-img convert"

echo
echo "demo OK: $checked flattened disks match what the formats' own tools give"
