#!/usr/bin/env bash
# vdflat speed benchmark: vdflat against the FUSE tools people use today,
# same images, same machine, interleaved rounds. See bench/README.md.
#
# Environment:
#   VDFLAT          vdflat binary (default: build ./vdflat from this repo)
#   VDFLAT_REV      text naming that binary's source in the report (default: git describe)
#   BENCH_SIZE      disk size (default 2G; numfmt --from=iec syntax, e.g. 256M)
#   BENCH_ROUNDS    interleaved rounds (default 3)
#   BENCH_FIO_SECS  seconds per fio run (default 2)
#   BENCH_FORMATS   subset of: raw qcow2 qcow2z vdi vmdk vhd vhdx e01 dmg
#   BENCH_DIR       images and mount points (default /var/tmp/vdflat-bench)
#   BENCH_OUT       report file (default bench/RESULTS.md)
#   BENCH_CPU       CPU that "pinned" runs use (default: the last one)
#   BENCH_CONCURRENT images attached and read at once for the RSS test (default 10)
#   BENCH_TRACE     1 (default): also log vdflat's FUSE requests and profile it with perf
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
SIZE_ARG=${BENCH_SIZE:-2G}
ROUNDS=${BENCH_ROUNDS:-3}
FIO_SECS=${BENCH_FIO_SECS:-2}
FORMATS=${BENCH_FORMATS:-"raw qcow2 qcow2z vdi vmdk vhd vhdx e01 dmg"}
DIR=${BENCH_DIR:-/var/tmp/vdflat-bench}
OUT=${BENCH_OUT:-$HERE/RESULTS.md}
NCPU=$(nproc)
PIN=${BENCH_CPU:-$((NCPU - 1))}
CONC=${BENCH_CONCURRENT:-10}

say() { printf '[bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (drop_caches, mlock, apt-get)"
SIZE=$(numfmt --from=iec "$SIZE_ARG") || die "bad BENCH_SIZE $SIZE_ARG"
[ $((SIZE % 1048576)) = 0 ] || die "BENCH_SIZE must be whole MiB"

# ---------------------------------------------------------------- tools
need=()
have() { command -v "$1" >/dev/null 2>&1; }
for pair in qemu-img:qemu-utils qemu-storage-daemon:qemu-system-common \
	xmount:xmount ewfacquire:ewf-tools ewfmount:ewf-tools fio:fio \
	vmtouch:vmtouch dmg2img:dmg2img fusermount3:fuse3 python3:python3 \
	taskset:util-linux numfmt:coreutils; do
	have "${pair%%:*}" || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
	say "installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -q "${need[@]}" >/dev/null 2>&1 ||
		{ apt-get update -q >/dev/null && apt-get install -y -q "${need[@]}" >/dev/null; } ||
		die "apt-get install ${need[*]} failed"
fi

if [ -z "${VDFLAT:-}" ]; then
	say "building vdflat from $REPO"
	(cd "$REPO" && CGO_ENABLED=0 go build -o vdflat .) || die "go build failed"
	VDFLAT=$REPO/vdflat
	VDFLAT_REV=${VDFLAT_REV:-$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)}
fi
VDFLAT=$(readlink -f "$VDFLAT")
[ -x "$VDFLAT" ] || die "VDFLAT=$VDFLAT is not executable"
VDFLAT_REV=${VDFLAT_REV:-"sha256 $(sha256sum "$VDFLAT" | cut -c1-12)"}

# ---------------------------------------------------------------- images
IMG=$DIR/img-$SIZE
GEN=2 # bump when the generators change, so cached images are rebuilt
mkdir -p "$IMG" "$DIR/attach"
if [ "$(cat "$IMG/.done" 2>/dev/null)" != "$GEN" ]; then
	rm -f "$IMG"/*
	say "building $SIZE_ARG images in $IMG (once; cached for later runs)"
	t0=$(date +%s)
	python3 "$HERE/mkdisk.py" "$SIZE" "$IMG/disk.raw" || die mkdisk
	q() { qemu-img convert -f raw "$@" || die "qemu-img convert $*"; }
	q -O qcow2 "$IMG/disk.raw" "$IMG/disk.qcow2" &
	q -O qcow2 -c -o compression_type=zlib "$IMG/disk.raw" "$IMG/diskz.qcow2" &
	wait
	q -O vdi "$IMG/disk.raw" "$IMG/disk.vdi" &
	q -O vmdk "$IMG/disk.raw" "$IMG/disk.vmdk" &
	wait
	q -O vpc -o subformat=dynamic,force_size=on "$IMG/disk.raw" "$IMG/disk.vhd" &
	q -O vhdx "$IMG/disk.raw" "$IMG/disk.vhdx" &
	wait
	ewfacquire -u -q -c deflate:fast -S 4G -t "$IMG/disk" "$IMG/disk.raw" >"$IMG/ewfacquire.log" 2>&1 &
	python3 "$HERE/mkdmg.py" "$IMG/disk.raw" "$IMG/disk.dmg" || die mkdmg
	wait
	[ -s "$IMG/disk.E01" ] || die "ewfacquire failed: $(tail -3 "$IMG/ewfacquire.log")"
	echo $GEN >"$IMG/.done"
	say "images built in $(($(date +%s) - t0)) s"
fi
A=$DIR/attach
if [ "$(cat "$A/.done" 2>/dev/null)" != "$GEN" ]; then
	say "building 2 MiB and 2 TiB sparse images for the attach test"
	rm -f "$A"/*
	for s in 2M 2T; do
		truncate -s $s "$A/$s.raw"
		for f in qcow2 vdi vmdk vhdx; do qemu-img create -q -f $f "$A/$s.$f" $s || die "qemu-img create $f"; done
		# VHD cannot describe 2 TiB: 2040 GiB is its largest size
		vs=$s; [ $s = 2T ] && vs=2040G
		qemu-img create -q -f vpc -o subformat=dynamic,force_size=on "$A/$s.vhd" $vs || die "qemu-img create vpc"
		python3 "$HERE/mkdmg.py" --empty --zero-max 0 "$(numfmt --from=iec $s)" "$A/$s.dmg" || die mkdmg
	done
	cp "$A/2M.raw" "$A/2Mz.raw"
	ewfacquire -u -q -c deflate:fast -t "$A/2M" "$A/2Mz.raw" >/dev/null 2>&1 || die "ewfacquire 2M"
	echo $GEN >"$A/.done"
fi

declare -A FILE=([raw]=disk.raw [qcow2]=disk.qcow2 [qcow2z]=diskz.qcow2 [vdi]=disk.vdi
	[vmdk]=disk.vmdk [vhd]=disk.vhd [vhdx]=disk.vhdx [e01]=disk.E01 [dmg]=disk.dmg)
declare -A QDRV=([qcow2]=qcow2 [qcow2z]=qcow2 [vdi]=vdi [vmdk]=vmdk [vhd]=vpc [vhdx]=vhdx [dmg]=dmg)

# ---------------------------------------------------------------- mounts
RUN=$DIR/run
PIDS=()
MOUNTS=()
cleanup() {
	set +e
	for m in "${MOUNTS[@]}"; do
		grep -qF " $m " /proc/mounts && { fusermount3 -u "$m" 2>/dev/null || fusermount3 -uz "$m" 2>/dev/null; }
	done
	# vmtouch writes its pid file only after locking everything
	[ -s "$RUN/vmtouch.pid" ] && PIDS+=("$(cat "$RUN/vmtouch.pid")")
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	local i
	for i in $(seq 50); do
		alive=0
		for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
		[ $alive = 0 ] && break
		sleep 0.1
	done
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
	wait 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# leftovers of an interrupted run
for m in "$RUN"/vd "$RUN"/xraw "$RUN"/xewf "$RUN"/ewfm "$RUN"/qsd/*; do
	[ -e "$m" ] && grep -qF " $m " /proc/mounts && fusermount3 -uz "$m"
done
rm -rf "$RUN"
mkdir -p "$RUN"/{vd,xraw,xewf,ewfm,qsd}
DATA=$RUN/data.tsv
: >"$DATA"

# pid of the program $1 (its argv[0] basename) whose command line holds the
# argument $2 exactly (argv[0] matters: the grep below has $2 as argument too)
pid_by_arg() {
	local p args
	for p in /proc/[0-9]*; do
		mapfile -t args < <({ tr '\0' '\n' <"$p/cmdline"; } 2>/dev/null)
		[ ${#args[@]} -gt 0 ] && [ "${args[0]##*/}" = "$1" ] || continue
		printf '%s\n' "${args[@]:1}" | grep -qxF -- "$2" && { echo "${p#/proc/}"; return 0; }
	done
	return 1
}
wait_for() { # command... : retry for WAIT seconds (default 10)
	local i
	for i in $(seq $((${WAIT:-10} * 10))); do "$@" && return 0; sleep 0.1; done
	return 1
}

# Lock every backing image in memory: the VM evicts idle page cache after
# about a minute, which would turn some runs into disk reads.
say "locking images in memory (vmtouch -l)"
vmtouch -q -d -l -m 1000G -P "$RUN/vmtouch.pid" "$IMG" "$A" || die "vmtouch"
vtpid=$(pid_by_arg vmtouch "$RUN/vmtouch.pid") && PIDS+=("$vtpid")
# (its daemon writes the pid file once everything is locked)
WAIT=600 wait_for test -s "$RUN/vmtouch.pid" || die "vmtouch did not lock the images"
vmtouch -m 1000G "$IMG" | grep -q 'Resident Pages.* 100%' || say "warning: images not fully resident"

say "mounting vdflat ($VDFLAT_REV)"
"$VDFLAT" -f "$RUN/vd" 2>"$RUN/vdflat.log" &
VDPID=$!
PIDS+=("$VDPID")
MOUNTS+=("$RUN/vd")
wait_for test -d "$RUN/vd/FlattenedImages" || die "vdflat did not mount: $(tail -3 "$RUN/vdflat.log")"
VD=$RUN/vd/FlattenedImages

# Which formats does this vdflat read? Attach each, compare size and 32
# sampled MiB with the raw disk.
declare -A OK VFMT
for f in $FORMATS; do
	ln -s "$IMG/${FILE[$f]}" "$VD/$f" 2>/dev/null
	r=$(python3 "$HERE/util.py" check "$VD/$f" "$IMG/disk.raw" 2>&1)
	VFMT[$f]=${r#* }
	if [ "${r%% *}" = ok ]; then OK[$f]=1; else OK[$f]=0; rm -f "$VD/$f"; fi
	say "vdflat $f: $r"
	printf 'support\t0\t%s\tvdflat\t%s\t%s\n' "$f" "${OK[$f]}" "${VFMT[$f]}" >>"$DATA"
done

QSD_ARGS=()
for f in $FORMATS; do
	[ -n "${QDRV[$f]:-}" ] || continue
	touch "$RUN/qsd/$f"
	QSD_ARGS+=(--blockdev "driver=file,node-name=f$f,filename=$IMG/${FILE[$f]},read-only=on"
		--blockdev "driver=${QDRV[$f]},node-name=n$f,file=f$f,read-only=on"
		--export "type=fuse,id=e$f,node-name=n$f,mountpoint=$RUN/qsd/$f,writable=off")
	MOUNTS+=("$RUN/qsd/$f")
done
if [ ${#QSD_ARGS[@]} -gt 0 ]; then
	say "mounting qemu-storage-daemon"
	qemu-storage-daemon "${QSD_ARGS[@]}" >"$RUN/qsd.log" 2>&1 &
	QSDPID=$!
	PIDS+=("$QSDPID")
	for f in $FORMATS; do
		[ -n "${QDRV[$f]:-}" ] || continue
		wait_for sh -c "[ \$(stat -c %s '$RUN/qsd/$f') = $SIZE ]" || die "qemu-storage-daemon $f: $(tail -3 "$RUN/qsd.log")"
	done
fi
declare -A APID
if [[ " $FORMATS " == *" raw "* ]]; then
	xmount --in raw "$IMG/disk.raw" --out raw "$RUN/xraw" >"$RUN/xmount-raw.log" 2>&1 || die "xmount raw"
	MOUNTS+=("$RUN/xraw")
	APID[xraw]=$(pid_by_arg xmount "$RUN/xraw")
	PIDS+=("${APID[xraw]}")
fi
if [[ " $FORMATS " == *" e01 "* ]]; then
	xmount --in ewf "$IMG/disk.E01" --out raw "$RUN/xewf" >"$RUN/xmount-ewf.log" 2>&1 || die "xmount ewf"
	MOUNTS+=("$RUN/xewf")
	APID[xewf]=$(pid_by_arg xmount "$RUN/xewf")
	ewfmount "$IMG/disk.E01" "$RUN/ewfm" >"$RUN/ewfmount.log" 2>&1 || die "ewfmount"
	MOUNTS+=("$RUN/ewfm")
	APID[ewfm]=$(pid_by_arg ewfmount "$RUN/ewfm")
	PIDS+=("${APID[xewf]}" "${APID[ewfm]}")
fi

# The paths measured for a format: name=file=pid (pid: daemon to pin, - none)
paths() {
	local f=$1
	[ "${OK[$f]}" = 1 ] && echo "vdflat=$VD/$f=$VDPID"
	case $f in
	raw) echo "pagecache=$IMG/disk.raw=-" "xmount=$RUN/xraw/disk.dd=${APID[xraw]}" ;;
	e01) echo "ewfmount=$RUN/ewfm/ewf1=${APID[ewfm]}" "xmount=$RUN/xewf/disk.dd=${APID[xewf]}" ;;
	dmg) echo "dmg2img=$IMG/disk.dmg=-" "qsd=$RUN/qsd/$f=$QSDPID" ;;
	*) echo "qsd=$RUN/qsd/$f=$QSDPID" ;;
	esac
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }

# Sequential: drop the page cache (the backing images stay: they are
# mlocked), then dd bs=1M the whole flattened file.
seq_read() { # round format name file
	local r=$1 f=$2 n=$3 file=$4 mbps c0 c1 hwm=-
	sync
	echo 1 >/proc/sys/vm/drop_caches
	if [ "$n" = dmg2img ]; then
		local t0 t1
		t0=$(date +%s%N)
		dmg2img -s -i "$file" -o /dev/null >/dev/null 2>&1 || { say "dmg2img failed"; return; }
		t1=$(date +%s%N)
		mbps=$(awk -v b="$SIZE" -v ns=$((t1 - t0)) 'BEGIN {printf "%.0f", b / ns * 1000}')
		printf 'seq\t%s\t%s\t%s\t%s\t-\t-\n' "$r" "$f" "$n" "$mbps" >>"$DATA"
		return
	fi
	[ "$n" = vdflat ] && { c0=$(cpu_ticks $VDPID); echo 5 >"/proc/$VDPID/clear_refs"; }
	mbps=$(LC_ALL=C dd if="$file" of=/dev/null bs=1M 2>&1 |
		awk '/bytes/ && /copied/ {printf "%.0f", $1 / $(NF-3) / 1e6}')
	local cpu=-
	if [ "$n" = vdflat ]; then
		c1=$(cpu_ticks $VDPID)
		cpu=$(awk -v t=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", t / hz}')
		hwm=$(hwm_kib $VDPID)
	fi
	printf 'seq\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$f" "$n" "${mbps:-0}" "$cpu" "$hwm" >>"$DATA"
}

fio_iops() { # file jobs [taskset cpu]
	local pre=()
	[ -n "${3:-}" ] && pre=(taskset -c "$3")
	"${pre[@]}" fio --name=r --filename="$1" --rw=randread --bs=4k --direct=1 \
		--ioengine=psync --iodepth=1 --numjobs="$2" --group_reporting \
		--runtime="$FIO_SECS" --time_based --invalidate=0 --norandommap \
		--output-format=json 2>/dev/null |
		python3 -c 'import json,sys; print("%.0f" % sum(j["read"]["iops"] for j in json.load(sys.stdin)["jobs"]))' 2>/dev/null ||
		echo 0
}

rand_read() { # round format name file pid
	local r=$1 f=$2 n=$3 file=$4 pid=$5 one four
	[ "$n" = pagecache ] || [ "$n" = dmg2img ] && return
	taskset -a -p -c "$PIN" "$pid" >/dev/null
	one=$(fio_iops "$file" 1 "$PIN")
	taskset -a -p -c "0-$((NCPU - 1))" "$pid" >/dev/null
	four=$(fio_iops "$file" 4)
	printf 'rand\t%s\t%s\t%s\t%s\t%s\t-\n' "$r" "$f" "$n" "$one" "$four" >>"$DATA"
}

say "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
T0=$(date +%s)
for r in $(seq "$ROUNDS"); do
	for f in $FORMATS; do
		mapfile -t P < <(paths "$f" | tr ' ' '\n')
		# alternate which path goes first, round by round
		[ $((r % 2)) = 0 ] && mapfile -t P < <(printf '%s\n' "${P[@]}" | tac)
		for p in "${P[@]}"; do
			IFS== read -r n file pid <<<"$p"
			seq_read "$r" "$f" "$n" "$file"
		done
		for p in "${P[@]}"; do
			IFS== read -r n file pid <<<"$p"
			rand_read "$r" "$f" "$n" "$file" "$pid"
		done
	done
	say "round $r/$ROUNDS done ($(($(date +%s) - T0)) s): $(awk -F'\t' -v r="$r" '$2 == r && $1 == "seq" {printf "%s/%s %s  ", $3, $4, $5}' "$DATA")"
done

# What vdflat sees and where its CPU goes: a second mount with -d --log
# logs every FUSE request (sizes, requests in flight); perf samples the
# measuring mount during one sequential and one random read.
if [ "${BENCH_TRACE:-1}" = 1 ]; then
	say "tracing vdflat's FUSE requests (-d --log) and profiling it (perf)"
	mkdir -p "$RUN/tr"
	"$VDFLAT" -f -d --log "$RUN/trace.log" "$RUN/tr" 2>/dev/null &
	PIDS+=("$!")
	MOUNTS+=("$RUN/tr")
	wait_for test -d "$RUN/tr/FlattenedImages" || die "tracing vdflat did not mount"
	for f in $FORMATS; do
		[ "${OK[$f]}" = 1 ] || continue
		t=$RUN/tr/FlattenedImages/$f
		ln -s "$IMG/${FILE[$f]}" "$t"
		wait_for test -f "$t"
		n0=$(wc -l <"$RUN/trace.log")
		sync
		echo 1 >/proc/sys/vm/drop_caches
		dd if="$t" of=/dev/null bs=1M count=256 status=none
		printf 'trace\t0\t%s\tseq\t%s\n' "$f" "$(python3 "$HERE/util.py" trace "$RUN/trace.log" "$n0")" >>"$DATA"
		n0=$(wc -l <"$RUN/trace.log")
		fio_iops "$t" 1 >/dev/null
		printf 'trace\t0\t%s\trand\t%s\n' "$f" "$(python3 "$HERE/util.py" trace "$RUN/trace.log" "$n0")" >>"$DATA"
		rm -f "$t"
	done
	fusermount3 -u "$RUN/tr"
	if have perf; then
		top() {
			perf report -i "$1" --stdio --no-children --sort dso,sym -q 2>/dev/null |
				awk 'NF && $1 ~ /%$/ {$2 = ""; sub(/^ +/, ""); print}' | head -8 | paste -sd';' | sed 's/|/\\|/g'
		}
		for f in $FORMATS; do
			[ "${OK[$f]}" = 1 ] || continue
			sync
			echo 1 >/proc/sys/vm/drop_caches
			perf record -q -e cpu-clock -F 999 -p "$VDPID" -o "$RUN/perf-$f-seq.data" -- \
				dd if="$VD/$f" of=/dev/null bs=1M count=768 status=none >/dev/null 2>&1
			printf 'perf\t0\t%s\tseq\t%s\n' "$f" "$(top "$RUN/perf-$f-seq.data")" >>"$DATA"
			perf record -q -e cpu-clock -F 999 -p "$VDPID" -o "$RUN/perf-$f-rand.data" -- \
				fio --name=r --filename="$VD/$f" --rw=randread --bs=4k --direct=1 --ioengine=psync \
				--runtime="$FIO_SECS" --time_based --invalidate=0 --norandommap >/dev/null 2>&1
			printf 'perf\t0\t%s\trand\t%s\n' "$f" "$(top "$RUN/perf-$f-rand.data")" >>"$DATA"
		done
	fi
fi

# Attach time: ln -s plus the first stat, 2 MiB vs 2 TiB, median of 9.
say "attach times"
declare -A AEXT=([raw]=raw [qcow2]=qcow2 [vdi]=vdi [vmdk]=vmdk [vhd]=vhd [vhdx]=vhdx [dmg]=dmg)
for f in $FORMATS; do
	[ "${OK[$f]}" = 1 ] || continue
	if [ "$f" = e01 ]; then
		small=$A/2M.E01 big=$IMG/disk.E01 bigname=$SIZE_ARG
	elif [ -n "${AEXT[$f]:-}" ]; then
		small=$A/2M.${AEXT[$f]} big=$A/2T.${AEXT[$f]} bigname=2T
		[ "$f" = vhd ] && bigname=2040G
	else
		continue
	fi
	s=$(python3 "$HERE/util.py" attach "$VD" "$small" 9)
	b=$(python3 "$HERE/util.py" attach "$VD" "$big" 9)
	printf 'attach\t0\t%s\tvdflat\t%s\t%s\t%s\n' "$f" "$s" "$b" "$bigname" >>"$DATA"
	say "attach $f: 2M $s ms, $bigname $b ms"
done

# Peak RSS with CONC images attached and read at once (O_DIRECT, so the
# kernel page cache does not grow by CONC x SIZE).
sup=()
for f in $FORMATS; do [ "${OK[$f]}" = 1 ] && sup+=("$f"); done
if [ ${#sup[@]} -gt 0 ]; then
	say "peak RSS: $CONC images read concurrently"
	for i in $(seq "$CONC"); do
		f=${sup[$(((i - 1) % ${#sup[@]}))]}
		ln -s "$IMG/${FILE[$f]}" "$VD/c$i-$f"
	done
	wait_for test -f "$VD/c$CONC-${sup[$(((CONC - 1) % ${#sup[@]}))]}"
	echo 5 >"/proc/$VDPID/clear_refs"
	c0=$(cpu_ticks $VDPID)
	t0=$(date +%s%N)
	ddp=()
	for i in $(seq "$CONC"); do
		f=${sup[$(((i - 1) % ${#sup[@]}))]}
		dd if="$VD/c$i-$f" of=/dev/null bs=1M iflag=direct status=none &
		ddp+=($!)
	done
	wait "${ddp[@]}"
	t1=$(date +%s%N)
	c1=$(cpu_ticks $VDPID)
	hwm=$(hwm_kib $VDPID)
	mbps=$(awk -v b=$((SIZE * CONC)) -v ns=$((t1 - t0)) 'BEGIN {printf "%.0f", b / ns * 1000}')
	cpu=$(awk -v t=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", t / hz}')
	printf 'conc\t0\t%s\tvdflat\t%s\t%s\t%s\n' "$(printf '%s,' "${sup[@]}")" "$hwm" "$mbps" "$cpu" >>"$DATA"
	say "peak RSS $((hwm / 1024)) MiB, $mbps MB/s aggregate"
fi
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

{
	echo "date	$(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "vdflat	$VDFLAT_REV"
	echo "size	$SIZE_ARG"
	echo "rounds	$ROUNDS"
	echo "fio_secs	$FIO_SECS"
	echo "pin	$PIN"
	echo "conc	$CONC"
	echo "load	$LOAD0 before, $LOAD1 after"
	echo "duration	$(($(date +%s) - T0)) s of measuring"
	echo "machine	$(lscpu | sed -n 's/^Model name: *//p'), $NCPU CPUs, $(free -g | awk '/^Mem/ {print $2}') GiB, kernel $(uname -r), $(. /etc/os-release && echo "$PRETTY_NAME")"
	echo "versions	$(qemu-storage-daemon --version | head -1); xmount $(dpkg-query -W -f '${Version}' xmount); ewf-tools $(dpkg-query -W -f '${Version}' ewf-tools); dmg2img $(dpkg-query -W -f '${Version}' dmg2img); $(fio --version); vmtouch $(dpkg-query -W -f '${Version}' vmtouch); go $(go env GOVERSION 2>/dev/null || echo -)"
	echo "images	$(cd "$IMG" && ls -l --block-size=1 disk.* | awk '{printf "%s %.0f MiB; ", $NF, $5 / 1048576}')"
} >"$RUN/meta.tsv"
python3 "$HERE/report.py" "$DATA" "$RUN/meta.tsv" "$OUT" || die "report failed"
mkdir -p "$(dirname "$OUT")/results" && cp "$DATA" "$RUN/meta.tsv" "$(dirname "$OUT")/results/" 
say "report written to $OUT"
cat "$OUT"
