#!/usr/bin/env python3
"""Small measurements for run.sh.

util.py check FLAT RAW      "ok FORMAT" if FLAT has RAW's size and 32
                            sampled MiB equal RAW's, else "fail ..."
util.py attach DIR IMAGE N  median milliseconds of ln -s IMAGE DIR/x plus
                            the first stat of DIR/x, over N attaches
"""
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


def main():
    if sys.argv[1] == "check":
        print(check(sys.argv[2], sys.argv[3]))
    elif sys.argv[1] == "attach":
        print(attach(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
