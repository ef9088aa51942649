#!/usr/bin/env python3
"""Golden inputs for legacy Office documents (issue 4, legacy_office), cases 120-121, written
next to this script with the helpers of make_inputs.py:

  120 legacy_office = "text": a Word 97 .doc (Japanese UTF-16 text, a cp1252 piece with a
      HYPERLINK field, a VBA storage and an embedded object), an Excel .xls (BIFF8 shared strings
      in Japanese, numbers) and an encrypted .doc (fEncrypted: held by encrypted_archive)
  121 the same message under the default policy (legacy_office = "remove")

The compound files are written by a minimal CFB (v3) writer below: every stream is padded to at
least 4096 octets so it lives in regular sectors (no mini stream), the directory is a chain of
right siblings in CFB name order.

Usage: python3 make_c3_inputs.py [OUTDIR]
"""
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_inputs as mi  # noqa: E402

SECTOR = 512
FREE, END, FATSECT, NOSTREAM = 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD, 0xFFFFFFFF


def cfb(streams):
    """A compound file from (path, bytes) pairs; paths use '/' for storages (one level)."""
    streams = [(p, d + b"\0" * max(0, 4096 - len(d))) for p, d in streams]
    # Directory entries: root, storages, streams. Each: name, type, children list, data.
    entries = [{"name": "Root Entry", "type": 5, "kids": [], "data": None}]
    index = {"": 0}
    for path, data in streams:
        parts = path.split("/")
        parent = 0
        for i, name in enumerate(parts):
            key = "/".join(parts[:i + 1])
            last = i == len(parts) - 1
            if key not in index:
                index[key] = len(entries)
                entries.append({"name": name, "type": 2 if last else 1, "kids": [],
                                "data": data if last else None})
                entries[parent]["kids"].append(index[key])
            parent = index[key]
    # Sector layout: stream data first, then directory, then FAT.
    sectors = []
    fat = []
    for e in entries:
        if e["data"] is None:
            e["start"], e["size"] = (END if e["type"] == 5 else 0), 0
            continue
        n = (len(e["data"]) + SECTOR - 1) // SECTOR
        e["start"], e["size"] = len(sectors), len(e["data"])
        for i in range(n):
            chunk = e["data"][i * SECTOR:(i + 1) * SECTOR]
            sectors.append(chunk + b"\0" * (SECTOR - len(chunk)))
            fat.append(len(sectors) if i < n - 1 else END)
    # Siblings: sorted by (length, upper-case name), chained through the right pointer.
    left = {i: NOSTREAM for i in range(len(entries))}
    right = dict(left)
    child = dict(left)
    for i, e in enumerate(entries):
        kids = sorted(e["kids"], key=lambda k: (len(entries[k]["name"]), entries[k]["name"].upper()))
        if kids:
            child[i] = kids[0]
            for a, b in zip(kids, kids[1:]):
                right[a] = b
    dir_bytes = b""
    for i, e in enumerate(entries):
        name = e["name"].encode("utf-16-le") + b"\0\0"
        dir_bytes += (name + b"\0" * (64 - len(name)) +
                      struct.pack("<HBB3I", len(name), e["type"], 1, left[i], right[i], child[i]) +
                      b"\0" * 16 + b"\0" * 4 + b"\0" * 16 +
                      struct.pack("<IQ", e["start"], e["size"]))
    while len(dir_bytes) % SECTOR:
        dir_bytes += (b"\0" * 64 + struct.pack("<HBB3I", 0, 0, 0, NOSTREAM, NOSTREAM, NOSTREAM) +
                      b"\0" * 36 + struct.pack("<IQ", 0, 0))
    dir_start = len(sectors)
    nd = len(dir_bytes) // SECTOR
    for i in range(nd):
        sectors.append(dir_bytes[i * SECTOR:(i + 1) * SECTOR])
        fat.append(len(sectors) if i < nd - 1 else END)
    # FAT sectors describe themselves too.
    nfat = 1
    while (len(sectors) + nfat) > nfat * (SECTOR // 4):
        nfat += 1
    fat_start = len(sectors)
    fat += [FATSECT] * nfat
    fat += [FREE] * (nfat * (SECTOR // 4) - len(fat))
    fat_bytes = struct.pack("<%dI" % len(fat), *fat)
    for i in range(nfat):
        sectors.append(fat_bytes[i * SECTOR:(i + 1) * SECTOR])
    difat = list(range(fat_start, fat_start + nfat)) + [FREE] * (109 - nfat)
    header = (bytes.fromhex("D0CF11E0A1B11AE1") + b"\0" * 16 +
              struct.pack("<HHHHH", 0x3E, 3, 0xFFFE, 9, 6) + b"\0" * 6 +
              struct.pack("<IIIIIIIII", 0, nfat, dir_start, 0, 4096, END, 0, END, 0) +
              struct.pack("<109I", *difat))
    return header + b"".join(sectors)


def word97(piece_compressed, piece_utf16, encrypted=False, macros=False):
    """A Word 97 document: a compressed (cp1252) piece then a UTF-16 piece."""
    p1 = piece_compressed.encode("cp1252")
    p2 = piece_utf16.encode("utf-16-le")
    n1, n2 = len(piece_compressed), len(p2) // 2
    wd = bytearray(struct.pack("<HHHHHH", 0xA5EC, 0xC1, 0, 0x0411, 0, 0x0200 | (0x0100 if encrypted else 0)))
    wd += b"\0" * (32 - len(wd))
    wd += struct.pack("<H", 14) + b"\0" * 28
    lw = len(wd) + 2
    wd += struct.pack("<H", 22) + b"\0" * 88
    wd[lw + 12:lw + 16] = struct.pack("<I", n1 + n2)
    rg = len(wd) + 2
    wd += struct.pack("<H", 93) + b"\0" * (93 * 8)
    wd += b"\0" * (0x800 - len(wd))
    fc1 = len(wd)
    wd += p1
    fc2 = len(wd)
    wd += p2
    plc = struct.pack("<III", 0, n1, n1 + n2)
    plc += struct.pack("<HIH", 0, (fc1 * 2) | 0x40000000, 0) + struct.pack("<HIH", 0, fc2, 0)
    table = bytearray(16)
    fc_clx = len(table)
    table += b"\x02" + struct.pack("<I", len(plc)) + plc
    wd[rg + 33 * 8:rg + 33 * 8 + 8] = struct.pack("<II", fc_clx, len(table) - fc_clx)
    streams = [("WordDocument", bytes(wd)), ("1Table", bytes(table))]
    if macros:
        streams.append(("Macros/VBA", b'Attribute VB_Name = "ThisDocument"\r\n'
                                      b'Sub AutoOpen()\r\nShell "calc.exe"\r\nEnd Sub\r\n'))
        streams.append(("ObjectPool/Ole10Native", b"MZ\x90\x00 not delivered"))
    return cfb(streams)


def record(typ, body):
    return struct.pack("<HH", typ, len(body)) + body


def xls():
    """A BIFF8 workbook: one sheet, Japanese shared strings, numbers."""
    bof = lambda dt: struct.pack("<HH", 0x0600, dt) + b"\0" * 12  # noqa: E731
    name = "集計".encode("utf-16-le")
    strings = ["区分", "件数", "窓口", "電子申請"]
    sst = struct.pack("<II", len(strings), len(strings))
    for s in strings:
        sst += struct.pack("<HB", len(s), 1) + s.encode("utf-16-le")
    globals_ = [record(0x0809, bof(5)), record(0x0042, struct.pack("<H", 1200)), None,
                record(0x00FC, sst), record(0x000A, b"")]
    bs_len = 4 + 8 + len(name)
    sheet_at = sum(len(r) for r in globals_ if r) + bs_len
    globals_[2] = record(0x0085, struct.pack("<IBBBB", sheet_at, 0, 0, 2, 1) + name)
    labelsst = lambda r, c, k: record(0x00FD, struct.pack("<HHHI", r, c, 15, k))  # noqa: E731
    number = lambda r, c, v: record(0x0203, struct.pack("<HHHd", r, c, 15, v))  # noqa: E731
    sheet = [record(0x0809, bof(0x10)), labelsst(0, 0, 0), labelsst(0, 1, 1),
             labelsst(1, 0, 2), number(1, 1, 128), labelsst(2, 0, 3), number(2, 1, 342.5),
             record(0x000A, b"")]
    return cfb([("Workbook", b"".join(globals_) + b"".join(sheet))])


def build():
    doc = word97("Meeting notes \x13 HYPERLINK \"http://evil.example/\" \x14(link)\x15 v2\r",
                 "令和7年度 第3回 地域防災会議 議事録\r出席者\x07山田、佐藤\x07\x07\r", macros=True)
    secret = word97("secret\r", "秘密の文書\r", encrypted=True)
    body = lambda n: mi.multipart("legacy%d" % n, [  # noqa: E731
        mi.part("text/plain; charset=ISO-2022-JP", mi.iso2022jp("議事録と集計表を添付します。\n"), "7bit"),
        mi.attachment("application/msword", "gijiroku.doc", doc),
        mi.attachment("application/vnd.ms-excel", "shukei.xls", xls()),
        mi.attachment("application/msword", "himitsu.doc", secret),
    ])
    for n, name, toml in [(120, "120-legacy-office-text", '[sanitize.attachments]\nlegacy_office = "text"\n'),
                          (121, "121-legacy-office-default", None)]:
        mi.case(name, mi.message(
            mi.headers(mi.ew("会議の議事録 (旧形式)"), n=n), body(n),
            ['Content-Type: multipart/mixed; boundary="legacy%d"' % n]), toml)


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    build()
    for name, data, toml in mi.CASES:
        with open(os.path.join(outdir, name + ".eml"), "wb") as f:
            f.write(data)
        if toml is not None:
            with open(os.path.join(outdir, name + ".toml"), "w", encoding="utf-8") as f:
                f.write(toml)
    print("%d cases written to %s" % (len(mi.CASES), outdir))


if __name__ == "__main__":
    main()
