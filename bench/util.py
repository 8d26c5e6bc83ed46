#!/usr/bin/env python3
"""Small measurements for run.sh.

util.py check FLAT RAW      "ok FORMAT" if FLAT has RAW's size and 32
                            sampled MiB equal RAW's, else "fail ..."
util.py attach DIR IMAGE N  median milliseconds of ln -s IMAGE DIR/x plus
                            the first stat of DIR/x, over N attaches
util.py trace LOG FROM      summary of the FUSE Read requests in a
                            `vdflat -d --log LOG` log after line FROM:
                            count, sizes, most requests in flight at once
"""
import collections
import re
import os
import random
import stat
import statistics
import sys
import time

MiB = 1 << 20


def check(flat, raw):
    try:
        st = os.stat(flat)
    except OSError as e:
        return "fail attach: %s" % e.strerror
    try:
        fmt = os.getxattr(flat, "user.vdflat.format").decode()
    except OSError:
        fmt = "?"
    if not stat.S_ISREG(st.st_mode):
        return "fail %s: not a regular file" % fmt
    size = os.path.getsize(raw)
    if st.st_size != size:
        return "fail %s: size %d, want %d" % (fmt, st.st_size, size)
    rng = random.Random(7)
    offs = [0, size - MiB] + [rng.randrange(0, size // MiB) * MiB for _ in range(30)]
    try:
        with open(flat, "rb") as a, open(raw, "rb") as b:
            for o in offs:
                if os.pread(a.fileno(), MiB, o) != os.pread(b.fileno(), MiB, o):
                    return "fail %s: data differ at offset %d" % (fmt, o)
    except OSError as e:
        return "fail %s: read: %s" % (fmt, e.strerror)
    return "ok " + fmt


def attach(d, image, n):
    times = []
    for i in range(n):
        name = os.path.join(d, "attach-%d-%d" % (os.getpid(), i))
        t0 = time.perf_counter_ns()
        os.symlink(image, name)
        st = os.stat(name)
        t1 = time.perf_counter_ns()
        os.unlink(name)
        if not stat.S_ISREG(st.st_mode):
            return "fail"
        times.append((t1 - t0) / 1e6)
    return "%.2f" % statistics.median(times)


def trace(log, start):
    req = re.compile(r"<- Read \[ID=(0x[0-9a-f]+) .*?\] 0x[0-9a-f]+ (\d+) @0x")
    done = re.compile(r"-> \[ID=(0x[0-9a-f]+)\] Read")
    sizes = collections.Counter()
    inflight = set()
    peak = 0
    with open(log, errors="replace") as f:
        for i, line in enumerate(f):
            if i < start:
                continue
            m = req.search(line)
            if m:
                sizes[int(m.group(2))] += 1
                inflight.add(m.group(1))
                peak = max(peak, len(inflight))
                continue
            m = done.search(line)
            if m:
                inflight.discard(m.group(1))
    n = sum(sizes.values())
    if not n:
        return "no Read requests logged"
    top = ", ".join("%d KiB x%d" % (s // 1024, c) if s >= 1024 else "%d B x%d" % (s, c)
                    for s, c in sizes.most_common(3))
    return "%d Read requests (%s); up to %d in flight" % (n, top, peak)


def main():
    if sys.argv[1] == "check":
        print(check(sys.argv[2], sys.argv[3]))
    elif sys.argv[1] == "attach":
        print(attach(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    elif sys.argv[1] == "trace":
        print(trace(sys.argv[2], int(sys.argv[3])))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
