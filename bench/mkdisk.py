#!/usr/bin/env python3
"""Write the benchmark's raw disk: an MBR, then runs of 1-16 MiB of random
data (50%), text (20%) and zeros (30%), shuffled, deterministic for a seed.

usage: mkdisk.py SIZE_BYTES OUT [SEED]

Zero runs are left as holes (the file is sparse), so converters see them as
unallocated, as they would see a freshly formatted disk's free space.
"""
import random
import struct
import sys

MiB = 1 << 20


def text_pool(rng, size):
    words = ("the of and to in is for on that with as by this from at be are "
             "disk image block sector cluster table header footer parent "
             "offset length read write flush mount file error warning info "
             "kernel user root system service started stopped failed ok "
             "2026-11-24 10:15:31 /var/log/syslog /usr/lib /home/alice "
             "GET POST HTTP/1.1 200 404 500 index.html image.png").split()
    out = []
    n = 0
    while n < size:
        line = " ".join(rng.choice(words) for _ in range(rng.randint(4, 16)))
        line = "%08d %s\n" % (rng.randint(0, 99999999), line)
        out.append(line)
        n += len(line)
    return "".join(out).encode()[:size]


def mbr(size):
    sectors = size // 512
    start = 2048 if sectors > 4096 else 1
    count = min(sectors - start, 0xFFFFFFFF)
    b = bytearray(512)
    b[440:444] = b"VDFB"  # disk signature
    # one Linux partition, CHS fields saturated (LBA is what counts)
    b[446:462] = struct.pack("<B3sB3sII", 0, b"\xfe\xff\xff", 0x83,
                             b"\xfe\xff\xff", start, count)
    b[510:512] = b"\x55\xaa"
    return bytes(b)


def main():
    size = int(sys.argv[1])
    out = sys.argv[2]
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    if size % 512 or size < MiB:
        sys.exit("mkdisk: size must be a multiple of 512 and at least 1 MiB")
    rng = random.Random(seed)
    pool = text_pool(rng, 4 * MiB)
    body = size - MiB  # the first MiB: MBR + text, like a real disk's start
    budget = {"rand": body * 50 // 100, "text": body * 20 // 100}
    budget["zero"] = body - budget["rand"] - budget["text"]
    with open(out, "wb") as f:
        f.truncate(0)
        head = bytearray(pool[:MiB])
        head[:512] = mbr(size)
        f.write(head)
        pos = MiB
        while pos < size:
            left = [k for k in ("rand", "text", "zero") if budget[k] > 0]
            kind = rng.choices(left, [budget[k] for k in left])[0]
            n = min(rng.randint(1, 16) * MiB, budget[kind])
            budget[kind] -= n
            if kind == "zero":
                f.seek(n, 1)
            elif kind == "rand":
                for i in range(0, n, 4 * MiB):
                    f.write(rng.randbytes(min(4 * MiB, n - i)))
            else:
                for i in range(0, n, MiB):
                    k = min(MiB, n - i)
                    o = rng.randrange(0, len(pool) - k + 1)
                    f.write(pool[o:o + k])
            pos += n
        f.truncate(size)


if __name__ == "__main__":
    main()
