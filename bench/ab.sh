#!/bin/bash
# Paired A/B of vdflat builds on the same images: one lever at a time.
#
#   AB_BINS="/tmp/vd-old /tmp/vd-new" AB_IMAGES="/x/disk.raw /x/disk.qcow2" bench/ab.sh
#
# Every build is mounted at once, every image attached to each. Each
# round reads each image through every build in turn (order reversed every
# other round): `dd bs=1M` with the page cache dropped, then (AB_RANDOM=1)
# fio random 4 KiB O_DIRECT reads, 1 job, fio and the daemon pinned to one
# CPU. AB_RA_KB="1024 4096 ..." sets each build's mount readahead
# (read_ahead_kb of its bdi) after mounting. The summary gives, per image and measure, the median over rounds of
# each build's ratio to the first build within the round: runs on a shared
# machine vary by 10-40 %, paired ratios much less. As root.
set -eu
ROUNDS=${AB_ROUNDS:-5}
RANDOM_RUNS=${AB_RANDOM:-1}
SECS=${AB_FIO_SECS:-2}
CPU=${AB_CPU:-$(($(nproc) - 1))}
DIR=$(mktemp -d /tmp/vdflat-ab.XXXXXX)
OUT=${AB_OUT:-$DIR/data.tsv}
read -r -a BINS <<<"${AB_BINS:?set AB_BINS}"
read -r -a IMAGES <<<"${AB_IMAGES:?set AB_IMAGES}"
read -r -a RA_KB <<<"${AB_RA_KB:-}"
PIDS=()

cleanup() {
	for i in "${!BINS[@]}"; do fusermount3 -u "$DIR/m$i" 2>/dev/null || fusermount3 -u -z "$DIR/m$i" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

for img in "${IMAGES[@]}"; do cat "$img" >/dev/null; done # into the page cache
for i in "${!BINS[@]}"; do
	mkdir "$DIR/m$i"
	"${BINS[$i]}" -f "$DIR/m$i" >"$DIR/log$i" 2>&1 &
	PIDS+=($!)
	for _ in $(seq 100); do mountpoint -q "$DIR/m$i" && break; sleep 0.05; done
	sleep 0.2 # the daemon sets its own readahead right after mounting
	if [ -n "${RA_KB[$i]:-}" ]; then
		echo "${RA_KB[$i]}" >"/sys/class/bdi/$(mountpoint -d "$DIR/m$i")/read_ahead_kb"
	fi
	for img in "${IMAGES[@]}"; do
		n=$(basename "$img"); n=${n//./_}
		ln -s "$img" "$DIR/m$i/FlattenedImages/$n"
	done
done
sleep 0.5

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }

: >"$OUT"
for r in $(seq "$ROUNDS"); do
	order=("${!BINS[@]}")
	if ((r % 2 == 0)); then order=($(printf '%s\n' "${order[@]}" | tac)); fi
	for img in "${IMAGES[@]}"; do
		n=$(basename "$img"); n=${n//./_}
		for i in "${order[@]}"; do
			f="$DIR/m$i/FlattenedImages/$n"
			echo 1 >/proc/sys/vm/drop_caches
			c0=$(cpu "${PIDS[$i]}")
			t0=$(date +%s.%N)
			dd if="$f" of=/dev/null bs=1M 2>/dev/null
			t1=$(date +%s.%N)
			c1=$(cpu "${PIDS[$i]}")
			sz=$(stat -c %s "$f")
			printf '%s\t%s\tseq_MBps\t%s\t%.0f\n' "$r" "$n" "$i" "$(echo "$sz / ($t1 - $t0) / 1000000" | bc -l)" >>"$OUT"
			printf '%s\t%s\tseq_cpu_s\t%s\t%.2f\n' "$r" "$n" "$i" "$(echo "($c1 - $c0) / $(getconf CLK_TCK)" | bc -l)" >>"$OUT"
			if [ "$RANDOM_RUNS" = 1 ]; then
				taskset -a -p -c "$CPU" "${PIDS[$i]}" >/dev/null
				iops=$(taskset -c "$CPU" fio --name=r --filename="$f" --rw=randread --bs=4k --direct=1 \
					--ioengine=psync --iodepth=1 --invalidate=0 --norandommap --runtime="$SECS" \
					--time_based --minimal | cut -d';' -f8)
				taskset -a -p -c "0-$(($(nproc) - 1))" "${PIDS[$i]}" >/dev/null
				printf '%s\t%s\trand4k_pinned_IOPS\t%s\t%s\n' "$r" "$n" "$i" "$iops" >>"$OUT"
			fi
		done
	done
done

python3 - "$OUT" "${BINS[@]}" <<'EOF'
import collections, statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().split("\n") if l]
bins = sys.argv[2:]
v = collections.defaultdict(dict)
for r, img, m, i, x in rows:
    v[(img, m, r)][int(i)] = float(x)
keys = sorted({(img, m) for img, m, _ in v})
print("| image | measure | " + " | ".join("%s median" % b.split("/")[-1] for b in bins) + " | " +
      " | ".join("%s / %s per round (median)" % (b.split("/")[-1], bins[0].split("/")[-1]) for b in bins[1:]) + " |")
print("|" + "---|" * (2 + 2 * len(bins) - 1))
for img, m in keys:
    rounds = [v[(img, m, r)] for (i2, m2, r) in sorted(v) if (i2, m2) == (img, m)]
    med = [statistics.median(x[i] for x in rounds) for i in range(len(bins))]
    cells = []
    for i in range(1, len(bins)):
        rs = [x[i] / x[0] for x in rounds if x[0]]
        cells.append("%s (%.2fx)" % (", ".join("%.2f" % q for q in rs), statistics.median(rs)))
    print("| %s | %s | %s | %s |" % (img, m, " | ".join("%g" % q for q in med), " | ".join(cells)))
EOF
echo "data: $OUT; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
