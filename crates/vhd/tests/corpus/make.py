#!/usr/bin/env python3
"""Builds the corpus of malformed VHD images in this folder, from scratch (no vine code).

Each image breaks one rule; EXPECTED maps its file name to text the error must contain (the
field and, where there is one, its offset). Run: python3 make.py (the outputs are committed).
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
SECTOR = 512


def checksum(buf, skip):
    s = sum(b for i, b in enumerate(buf) if not (skip <= i < skip + 4))
    return (~s) & 0xFFFFFFFF


def footer(size, disk_type, data_offset, cyl=1, heads=4, spt=17):
    b = bytearray(512)
    b[0:8] = b"conectix"
    struct.pack_into(">IIQI", b, 8, 2, 0x00010000, data_offset, 0)
    b[28:32] = b"test"
    struct.pack_into(">I", b, 32, 0x00010000)
    b[36:40] = b"Wi2k"
    struct.pack_into(">QQHBBI", b, 40, size, size, cyl, heads, spt, disk_type)
    b[68:84] = bytes(range(16))
    struct.pack_into(">I", b, 64, checksum(b, 64))
    return b


def header(entries, block_size=0x200000, table_offset=1536, locators=()):
    b = bytearray(1024)
    b[0:8] = b"cxsparse"
    struct.pack_into(">QQIII", b, 8, 0xFFFFFFFFFFFFFFFF, table_offset, 0x00010000, entries, block_size)
    for i, (code, space, length, off) in enumerate(locators):
        struct.pack_into(">IIIIQ", b, 576 + 24 * i, code, space, length, 0, off)
    struct.pack_into(">I", b, 36, checksum(b, 36))
    return b


def refresh(b, skip):
    struct.pack_into(">I", b, skip, checksum(b, skip))
    return b


def dynamic(size=4 << 20, bs=0x200000, bat=None, hdr=None, extra=b""):
    entries = -(-size // bs)
    ft = footer(size, 3, 512)
    h = hdr if hdr is not None else header(entries, bs)
    bat_bytes = bytearray(b"\xff" * (-(-entries * 4 // SECTOR) * SECTOR))
    for i, e in (bat or {}).items():
        struct.pack_into(">I", bat_bytes, 4 * i, e)
    return bytes(ft + h + bat_bytes + extra + ft)


CASES = {}


def case(name, data, expected):
    CASES[name] = expected
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)


good = dynamic()
# Footer faults (at the end of a fixed disk and of a dynamic one).
fx = footer(64 * 1024, 2, 0xFFFFFFFFFFFFFFFF)
case("fixed-bad-cookie.vhd", bytes(64 * 1024) + b"XXnectix" + bytes(fx[8:]), "footer cookie at offset 0x10000")
bad = bytearray(fx)
bad[100] ^= 1
case("fixed-bad-checksum.vhd", bytes(64 * 1024) + bytes(bad), "footer checksum mismatch at offset 0x10040")
case("fixed-disk-type-7.vhd", bytes(64 * 1024) + bytes(refresh(bytearray(fx[:60]) + struct.pack(">I", 7) + fx[64:], 64)),
     "field Disk Type at offset 0x1003c is 0x7")
unaligned = bytearray(fx)
struct.pack_into(">Q", unaligned, 48, 1000)
case("fixed-unaligned-size.vhd", bytes(64 * 1024) + bytes(refresh(unaligned, 64)), "field Current Size at offset 0x10030 is 0x3e8")
case("fixed-length-mismatch.vhd", bytes(32 * 1024) + bytes(fx), "fixed disk of this size must be a 66048-byte file")
huge = bytearray(fx)
struct.pack_into(">Q", huge, 48, 2041 << 30)
case("fixed-over-2040g.vhd", bytes(64 * 1024) + bytes(refresh(huge, 64)), "larger than the 2040 GiB limit")
case("too-short.vhd", b"conectix", "too short for the footer")
# Dynamic header faults.
h = header(2)
h[0:8] = b"cxspXXXX"
case("dyn-bad-header-cookie.vhd", dynamic(hdr=refresh(h, 36)), "dynamic header cookie at offset 0x200")
h = header(2)
h[600] ^= 0xFF
case("dyn-bad-header-checksum.vhd", dynamic(hdr=h), "dynamic header checksum mismatch at offset 0x224")
case("dyn-block-size-3m.vhd", dynamic(hdr=header(2, 3 << 20)), "field Block Size at offset 0x220 is 0x300000")
case("dyn-table-unaligned.vhd", dynamic(hdr=header(2, table_offset=1537)), "field Table Offset at offset 0x210 is 0x601")
case("dyn-table-too-small.vhd", dynamic(hdr=header(1)), "field Max Table Entries at offset 0x21c is 0x1")
case("dyn-table-past-eof.vhd", dynamic(hdr=header(2, table_offset=1 << 20)), "block allocation table at offset 0x100000")
case("dyn-header-past-eof.vhd", bytes(footer(4 << 20, 3, 1 << 30)) + bytes(1024) + bytes(footer(4 << 20, 3, 1 << 30)),
     "dynamic header at offset 0x40000000")
# BAT faults.
case("dyn-bat-entry-past-eof.vhd", dynamic(bat={1: 0x1000}), "block allocation table field entry at offset 0x604 is 0x1000")
case("dyn-bat-entry-into-header.vhd", dynamic(size=64 * 1024, bs=4096, bat={0: 1}, extra=bytes(4096)),
     "block allocation table field entry at offset 0x600 is 0x1: block 0 at 0x200")
# Locator faults (differencing disks).
def diff(locators, extra=b""):
    entries = 2
    ft = footer(4 << 20, 4, 512)
    h = header(entries, locators=locators)
    struct.pack_into(">I", h, 40, 0xAABBCCDD)
    h = refresh(h, 36)
    return bytes(ft + h + b"\xff" * 512 + extra + ft)
case("diff-locator-past-eof.vhd", diff([(0x57327275, 512, 20, 1 << 20)]), "Parent Locator Data Offset at offset 0x450 is 0x100000")
case("diff-locator-bad-space.vhd", diff([(0x57327275, 1000, 20, 2048)], bytes(1024)), "Parent Locator Data Space at offset 0x444 is 0x3e8")

with open(os.path.join(HERE, "EXPECTED"), "w") as f:
    for name in sorted(CASES):
        f.write(f"{name}\t{CASES[name]}\n")
print(f"wrote {len(CASES)} images")
