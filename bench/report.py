#!/usr/bin/env python3
"""Turn run.sh's data.tsv and meta.tsv into bench/RESULTS.md.

usage: report.py DATA META OUT

Anything in OUT after the NOTES marker line is kept (hand-written findings).
"""
import collections
import statistics
import sys

NOTES = "<!-- notes below this line are kept when run.sh rewrites this file -->"

# format: (anchor path, target ratio, what the target says)
TARGETS = {
    "raw": ("xmount", 0.9, "≥0.9x xmount raw (FUSE floor)"),
    "qcow2": ("qsd", 1.5, "≥1.5x qemu-storage-daemon"),
    "qcow2z": ("qsd", 1.5, "≥1.5x qemu-storage-daemon"),
    "vdi": ("qsd", 1.5, "≥1.5x qemu-storage-daemon"),
    "vmdk": ("qsd", 1.5, "≥1.5x qemu-storage-daemon"),
    "vhd": ("qsd", 1.5, "≥1.5x qemu-storage-daemon"),
    "vhdx": ("qsd", 1.5, "≥1.5x qemu-storage-daemon"),
    "e01": ("ewfmount", 2.0, "≥2x ewfmount"),
    "dmg": ("dmg2img", 1.5, "≥1.5x dmg2img conversion"),
}
LABEL = {
    "raw": "raw", "qcow2": "qcow2", "qcow2z": "qcow2 (zlib)", "vdi": "vdi",
    "vmdk": "vmdk (monolithicSparse)", "vhd": "vhd (dynamic)",
    "vhdx": "vhdx (dynamic)", "e01": "E01 (deflate fast)", "dmg": "dmg (UDZO zlib)",
}
PATHS = {
    "vdflat": "vdflat",
    "pagecache": "raw file from page cache, no FUSE",
    "xmount": "xmount",
    "qsd": "qemu-storage-daemon FUSE export",
    "ewfmount": "ewfmount",
    "dmg2img": "dmg2img conversion to /dev/null",
}


def med(xs):
    return statistics.median(xs) if xs else None


def fnum(x, nd=0):
    if x is None:
        return "–"
    return ("{:,.%df}" % nd).format(x)


def main():
    data, meta_path, out = sys.argv[1:4]
    meta = dict(l.rstrip("\n").split("\t", 1) for l in open(meta_path) if "\t" in l)
    support = {}
    seq = collections.defaultdict(dict)     # (fmt, path) -> round -> mbps
    cpu = collections.defaultdict(list)     # fmt -> cpu seconds
    hwm = collections.defaultdict(list)     # fmt -> KiB
    rand1 = collections.defaultdict(dict)   # (fmt, path) -> round -> iops
    rand4 = collections.defaultdict(dict)
    attach = {}
    conc = None
    trace = collections.defaultdict(dict)  # fmt -> seq/rand -> text
    perf = collections.defaultdict(dict)
    order = []
    for line in open(data):
        kind, r, fmt, path, a, b, c = (line.rstrip("\n").split("\t") + ["-"] * 7)[:7]
        r = int(r)
        if fmt not in order and kind in ("support", "seq"):
            order.append(fmt)
        if kind == "support":
            support[fmt] = (a == "1", b)
        elif kind == "seq":
            seq[(fmt, path)][r] = float(a)
            if path == "vdflat":
                cpu[fmt].append(float(b))
                hwm[fmt].append(int(c))
        elif kind == "rand":
            rand1[(fmt, path)][r] = float(a)
            rand4[(fmt, path)][r] = float(b)
        elif kind == "attach":
            attach[fmt] = (a, b, c)
        elif kind == "trace":
            trace[fmt][path] = a
        elif kind == "perf":
            perf[fmt][path] = a
        elif kind == "conc":
            conc = (fmt.rstrip(","), int(a), b, c)

    def paths_of(fmt, table):
        ps = [p for (f, p) in table if f == fmt]
        return sorted(ps, key=lambda p: list(PATHS).index(p) if p in PATHS else 99)

    def ratios(table, fmt, anchor):
        v, a = table.get((fmt, "vdflat"), {}), table.get((fmt, anchor), {})
        return [v[r] / a[r] for r in sorted(v) if r in a and a[r] > 0]

    L = []
    w = L.append
    w("# vdflat benchmark results")
    w("")
    w("Written by `make bench` (bench/run.sh) on %s; how it measures: bench/README.md." % meta.get("date"))
    w("")
    w("| | |")
    w("|---|---|")
    for k, name in (("vdflat", "vdflat"), ("size", "disk size"), ("rounds", "interleaved rounds"),
                    ("fio_secs", "seconds per fio run"), ("pin", "CPU for pinned runs"),
                    ("machine", "machine"), ("load", "load average"), ("duration", "measuring time"),
                    ("versions", "versions"), ("images", "image files")):
        w("| %s | %s |" % (name, meta.get(k, "–")))
    w("")
    w("## Targets, sequential read")
    w("")
    w("`dd bs=1M` of the whole flattened file, page cache dropped before each read, backing images mlocked.")
    w("Ratio: vdflat / anchor within each round (paired), then the median.")
    w("")
    w("| format | vdflat MB/s | anchor | anchor MB/s | ratio per round | median ratio | target | met |")
    w("|---|---|---|---|---|---|---|---|")
    for fmt in order:
        anchor, want, text = TARGETS.get(fmt, (None, None, ""))
        ok, vf = support.get(fmt, (False, "?"))
        am = med(list(seq.get((fmt, anchor), {}).values()))
        if not ok:
            w("| %s | main cannot read it yet (%s) | %s | %s | – | – | %s | – |"
              % (LABEL.get(fmt, fmt), vf, anchor, fnum(am), text))
            continue
        vm = med(list(seq.get((fmt, "vdflat"), {}).values()))
        rs = ratios(seq, fmt, anchor)
        mr = med(rs)
        met = "–" if mr is None else ("yes" if mr >= want else "**no**")
        w("| %s | %s | %s | %s | %s | %.2fx | %s | %s |"
          % (LABEL.get(fmt, fmt), fnum(vm), anchor, fnum(am),
             ", ".join("%.2f" % x for x in rs), mr or 0, text, met))
    w("")
    w("## Every path, sequential MB/s")
    w("")
    w("| format | path | median MB/s | per round | vdflat CPU s per read (median) | vdflat peak RSS MiB (max) |")
    w("|---|---|---|---|---|---|")
    for fmt in order:
        for p in paths_of(fmt, seq):
            vals = seq[(fmt, p)]
            extra = "| |"
            if p == "vdflat":
                extra = "| %.2f | %.0f |" % (med(cpu[fmt]), max(hwm[fmt]) / 1024)
            w("| %s | %s | %s | %s %s" % (LABEL.get(fmt, fmt), PATHS.get(p, p), fnum(med(list(vals.values()))),
                                          ", ".join(fnum(vals[r]) for r in sorted(vals)), extra))
    w("")
    w("## Random 4 KiB reads (fio psync, O_DIRECT, iodepth 1)")
    w("")
    w("1 job: fio and the serving daemon (all its threads) pinned to the same one CPU. "
      "4 jobs: unpinned. IOPS medians over rounds; ratio: vdflat / anchor per round, median. "
      "Target: qcow2 ≥1.2x qemu-storage-daemon, 1 job pinned.")
    w("")
    w("| format | path | IOPS 1 job pinned | per round | IOPS 4 jobs unpinned | ratio 1 job pinned | ratio 4 jobs |")
    w("|---|---|---|---|---|---|---|")
    for fmt in order:
        anchor = TARGETS.get(fmt, ("",))[0]
        if anchor == "dmg2img":
            anchor = "qsd"
        for p in paths_of(fmt, rand1):
            v1, v4 = rand1[(fmt, p)], rand4[(fmt, p)]
            r1 = r4 = ""
            if p == "vdflat":
                x1, x4 = med(ratios(rand1, fmt, anchor)), med(ratios(rand4, fmt, anchor))
                r1 = "%.2fx vs %s" % (x1, anchor) if x1 else "–"
                r4 = "%.2fx" % x4 if x4 else "–"
            w("| %s | %s | %s | %s | %s | %s | %s |"
              % (LABEL.get(fmt, fmt), PATHS.get(p, p), fnum(med(list(v1.values()))),
                 ", ".join(fnum(v1[r]) for r in sorted(v1)), fnum(med(list(v4.values()))), r1, r4))
    w("")
    w("## Attach time (ln -s plus the first stat, median of 9, backing file cached)")
    w("")
    w("Target: under 20 ms, and the big image no slower than the 2 MiB one "
      "(met here when big ≤ 1.25 x small + 0.5 ms, to allow for timer noise).")
    w("")
    w("| format | 2 MiB ms | big image | big ms | met |")
    w("|---|---|---|---|---|")
    for fmt in order:
        if fmt not in attach:
            if fmt in support and not support[fmt][0]:
                w("| %s | main cannot read it yet | | | – |" % LABEL.get(fmt, fmt))
            continue
        s, b, name = attach[fmt]
        try:
            met = "yes" if float(b) < 20 and float(b) <= 1.25 * float(s) + 0.5 else "**no**"
        except ValueError:
            met = "**no** (attach failed)"
        w("| %s | %s | %s sparse | %s | %s |" % (LABEL.get(fmt, fmt), s, name, b, met))
    w("")
    if conc:
        fmts, kib, mbps, c = conc
        w("## Peak RSS, %s images attached and read at once" % meta.get("conc", "?"))
        w("")
        w("Formats cycled over: %s; each read whole with `dd bs=1M iflag=direct`, all at once. "
          "Target: peak RSS (VmHWM) under 100 MiB." % fmts)
        w("")
        w("| peak RSS MiB | aggregate MB/s | vdflat CPU s | met |")
        w("|---|---|---|---|")
        w("| %.1f | %s | %s | %s |" % (kib / 1024, mbps, c, "yes" if kib < 100 * 1024 else "**no**"))
        w("")
    if trace or perf:
        w("## What vdflat sees (`vdflat -d --log`) and where its CPU goes (perf, cpu-clock)")
        w("")
        w("Requests: `dd bs=1M` of the first 256 MiB (page cache dropped) and one 1-job fio random 4 KiB run on a "
          "second mount with `-d --log`. Profile: the measuring mount, same reads; top symbols by self time.")
        w("")
        w("| format | sequential: FUSE requests | random: FUSE requests | perf sequential | perf random |")
        w("|---|---|---|---|---|")
        for fmt in order:
            if fmt in trace or fmt in perf:
                w("| %s | %s | %s | %s | %s |" % (LABEL.get(fmt, fmt), trace[fmt].get("seq", "–"),
                                                   trace[fmt].get("rand", "–"), perf[fmt].get("seq", "–"),
                                                   perf[fmt].get("rand", "–")))
        w("")
    w("## Reference figures from the issue (another machine of this kind)")
    w("")
    w("Page cache no FUSE 7,308 MB/s; xmount raw 1,782; qemu-storage-daemon qcow2 / zlib qcow2 / vdi / vmdk / "
      "vhd / vhdx 992 / 745 / 1,038 / 1,014 / 955 / 930; ewfmount E01 449, xmount E01 526. Random 4 KiB pinned: "
      "qemu-storage-daemon qcow2 103k IOPS, xmount raw 94k.")
    w("")
    w(NOTES)
    notes = ""
    try:
        old = open(out).read()
        if NOTES in old:
            notes = old.split(NOTES, 1)[1].lstrip("\n")
    except OSError:
        pass
    with open(out, "w") as f:
        f.write("\n".join(L) + "\n")
        if notes:
            f.write("\n" + notes)


if __name__ == "__main__":
    main()
