#!/usr/bin/env python3
"""Write a UDIF (.dmg) image of a raw disk with zlib chunks, as hdiutil's
UDZO does. No Debian package writes UDIF (libdmg-hfsplus is not packaged).

usage: mkdmg.py RAW OUT [--chunk SECTORS] [--level N] [--zero-max SECTORS]
       mkdmg.py --empty SIZE_BYTES OUT      (an all-zero disk, no data read)

Layout (big-endian): the data fork at offset 0 (chunks back to back), an
XML plist with one 'blkx' table ("mish": 204-byte header, 40-byte chunk
entries), then the 512-byte koly trailer. All-zero chunks become zero-fill
entries (type 0) merged up to --zero-max sectors (0: unlimited; the
default, 131072 = 64 MiB, is the largest chunk qemu's dmg driver accepts).
dmg2img and qemu-img -f dmg read the result (run.sh checks that).
"""
import argparse
import base64
import os
import struct
import uuid
import zlib

ZERO, ZLIB, COMMENT, END = 0x00000000, 0x80000005, 0x7FFFFFFE, 0xFFFFFFFF


def build(out, sectors, chunks, zero_max):
    """chunks yields (data or None for zeros, nsectors)."""
    ents = [struct.pack(">IIQQQQ", COMMENT, 0, 0, 0, 0, 0)]
    crc = 0  # of the disk data (mish checksum)
    fcrc = 0  # of the data fork (koly checksum)
    sec = 0
    zrun = 0  # pending zero sectors
    with open(out, "wb") as f:
        def flush_zero():
            nonlocal zrun, sec
            while zrun:
                n = zrun if zero_max == 0 else min(zrun, zero_max)
                ents.append(struct.pack(">IIQQQQ", ZERO, 0, sec, n, f.tell(), 0))
                sec += n
                zrun -= n
        for data, n, raw in chunks:
            if raw is not None:
                crc = zlib.crc32(raw, crc)
            if data is None:
                zrun += n
                continue
            flush_zero()
            ents.append(struct.pack(">IIQQQQ", ZLIB, 0, sec, n, f.tell(), len(data)))
            f.write(data)
            fcrc = zlib.crc32(data, fcrc)
            sec += n
        flush_zero()
        fork_len = f.tell()
        ents.append(struct.pack(">IIQQQQ", END, 0, sec, 0, fork_len, 0))
        mish = bytearray(204)
        mish[0:4] = b"mish"
        struct.pack_into(">IQQQII", mish, 4, 1, 0, sectors, 0, 0x208, 0)
        struct.pack_into(">II", mish, 64, 2, 32)
        struct.pack_into(">I", mish, 72, crc)
        struct.pack_into(">I", mish, 200, len(ents))
        table = bytes(mish) + b"".join(ents)
        enc = base64.b64encode(table).decode()
        lines = "\n".join("\t\t\t\t" + enc[i:i + 52] for i in range(0, len(enc), 52))
        name = "whole disk (Apple_HFS : 0)"
        xml = ("""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
\t<key>resource-fork</key>
\t<dict>
\t\t<key>blkx</key>
\t\t<array>
\t\t\t<dict>
\t\t\t\t<key>Attributes</key>
\t\t\t\t<string>0x0050</string>
\t\t\t\t<key>CFName</key>
\t\t\t\t<string>%s</string>
\t\t\t\t<key>Data</key>
\t\t\t\t<data>
%s
\t\t\t\t</data>
\t\t\t\t<key>ID</key>
\t\t\t\t<string>-1</string>
\t\t\t\t<key>Name</key>
\t\t\t\t<string>%s</string>
\t\t\t</dict>
\t\t</array>
\t</dict>
</dict>
</plist>
""" % (name, lines, name)).encode()
        xml_off = f.tell()
        f.write(xml)
        koly = bytearray(512)
        koly[0:4] = b"koly"
        struct.pack_into(">III", koly, 4, 4, 512, 1)
        struct.pack_into(">QQ", koly, 24, 0, fork_len)
        struct.pack_into(">II", koly, 56, 1, 1)
        koly[64:80] = uuid.uuid4().bytes
        struct.pack_into(">III", koly, 80, 2, 32, fcrc)
        struct.pack_into(">QQ", koly, 216, xml_off, len(xml))
        struct.pack_into(">IQ", koly, 488, 1, sectors)
        f.write(koly)


def raw_chunks(path, chunk, level):
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk * 512)
            if not b:
                return
            if len(b) % 512:
                b += bytes(512 - len(b) % 512)
            n = len(b) // 512
            if b.count(0) == len(b):
                yield None, n, b
            else:
                yield zlib.compress(b, level), n, b


def main():
    p = argparse.ArgumentParser()
    p.add_argument("src")
    p.add_argument("out")
    p.add_argument("--chunk", type=int, default=2048)
    p.add_argument("--level", type=int, default=1)  # hdiutil's UDZO default
    p.add_argument("--zero-max", type=int, default=131072)
    p.add_argument("--empty", action="store_true")
    a = p.parse_args()
    if a.empty:
        size = int(a.src)
        sectors = size // 512
        build(a.out, sectors, [(None, sectors, None)], a.zero_max)
        return
    sectors = (os.path.getsize(a.src) + 511) // 512
    build(a.out, sectors, raw_chunks(a.src, a.chunk, a.level), a.zero_max)


if __name__ == "__main__":
    main()
