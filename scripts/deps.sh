#!/bin/sh
# Installs the tools vdflat's tests and demo use, when any is missing.
# Debian/Ubuntu only; elsewhere it lists what to install.
set -e
need=""
for t in fusermount3:fuse3 qemu-img:qemu-utils mmls:sleuthkit fls:sleuthkit \
	ewfacquire:ewf-tools ewfexport:ewf-tools dmg2img:dmg2img affconvert:afflib-tools \
	sfdisk:fdisk fdisk:fdisk blkid:util-linux setpriv:util-linux file:file cmp:diffutils \
	mkfs.ext4:e2fsprogs bzip2:bzip2 xz:xz-utils qemu-io:qemu-utils mountpoint:util-linux \
	mkfs.vfat:dosfstools mcopy:mtools groff:groff-base man:man-db zsh:zsh fish:fish \
	vhdimount:libvhdi-utils; do
	command -v "${t%%:*}" >/dev/null 2>&1 || need="$need ${t#*:}"
done
[ -z "$need" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
	echo "missing tools; install these packages:$need" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $(echo $need | tr ' ' '\n' | sort -u) >/dev/null
