#!/usr/bin/env python3
"""Golden inputs for attachment disarm (CDR), cases 074-079, written next to this script.

Built with the helpers of make_inputs.py (same headers, payload makers and fixed timestamps),
kept apart so that the two generators can be run and reviewed separately:

  074 docm -> docx without its VBA project        077 zip with an exe and a pdf -> the pdf only
  075 PDF with JavaScript -> disarmed PDF         078 PPAP zip -> removed, original quarantined
  076 JPEG with EXIF GPS -> re-encoded            079 winmail.dat -> its attachments

and two parser findings (tests/corpora.rs, task K): content the parser drops must be reported:

  080 a whole MIME tree after the close delimiter (noxxi "outer is inner with dummy first")
  081 a multipart whose boundary never appears (its whole body is preamble)

Usage: python3 make_cdr_inputs.py [OUTDIR]
"""
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_inputs as mi  # noqa: E402


def make_docm(paragraph):
    """A macro-enabled Word document: the text, a VBA project and its relationship."""
    return mi.make_zip([
        ("[Content_Types].xml", mi.CT_XML % '<Default Extension="bin" ContentType="application/'
         'vnd.ms-office.vbaProject"/><Override PartName="/word/document.xml" ContentType="'
         'application/vnd.ms-word.document.macroEnabled.main+xml"/>'),
        ("_rels/.rels", '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://'
         'schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type='
         '"http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" '
         'Target="word/document.xml"/></Relationships>'),
        ("word/document.xml", '<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="http:'
         '//schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>%s'
         '</w:t></w:r></w:p></w:body></w:document>' % paragraph),
        ("word/_rels/document.xml.rels", '<?xml version="1.0" encoding="UTF-8"?><Relationships '
         'xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship '
         'Id="rId9" Type="http://schemas.microsoft.com/office/2006/relationships/vbaProject" '
         'Target="vbaProject.bin"/></Relationships>'),
        ("word/vbaProject.bin", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(range(256)) * 8),
    ])


def make_jpeg_gps():
    """make_inputs.make_jpeg with a GPS IFD (35.6895N 139.6917E) in its Exif APP1."""
    base = mi.make_jpeg()
    # TIFF: IFD0 with Make and a GPS IFD pointer; GPS IFD with latitude and longitude.
    make = b"GoldenCam\x00"
    ifd0_off = 8
    ifd0 = struct.pack(">H", 2)
    gps_off = ifd0_off + 2 + 2 * 12 + 4
    make_off = gps_off + 2 + 4 * 12 + 4
    rat_off = make_off + len(make)
    ifd0 += struct.pack(">HHII", 0x010F, 2, len(make), make_off)
    ifd0 += struct.pack(">HHII", 0x8825, 4, 1, gps_off) + b"\x00\x00\x00\x00"
    gps = struct.pack(">H", 4)
    gps += struct.pack(">HHI", 0x0001, 2, 2) + b"N\x00\x00\x00"
    gps += struct.pack(">HHII", 0x0002, 5, 3, rat_off)
    gps += struct.pack(">HHI", 0x0003, 2, 2) + b"E\x00\x00\x00"
    gps += struct.pack(">HHII", 0x0004, 5, 3, rat_off + 24) + b"\x00\x00\x00\x00"
    rats = struct.pack(">IIIIII", 35, 1, 41, 1, 2220, 100)
    rats += struct.pack(">IIIIII", 139, 1, 41, 1, 3012, 100)
    tiff = b"MM\x00\x2a" + struct.pack(">I", ifd0_off) + ifd0 + gps + make + rats
    app1 = b"Exif\x00\x00" + tiff
    seg = b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1
    # Replace the original APP1 (after SOI and APP0).
    app0_end = 2 + 2 + struct.unpack(">H", base[4:6])[0]
    old_len = struct.unpack(">H", base[app0_end + 2:app0_end + 4])[0]
    return base[:app0_end] + seg + base[app0_end + 2 + old_len:]


def tnef_attr(level, ident, data):
    return (bytes([level]) + struct.pack("<II", ident, len(data)) + data
            + struct.pack("<H", sum(data) & 0xFFFF))


def mapi_long_name(name):
    s = name.encode("utf-16-le") + b"\x00\x00"
    pad = (4 - len(s) % 4) % 4
    return (struct.pack("<IHHI", 1, 0x001F, 0x3707, 1) + struct.pack("<I", len(s)) + s
            + b"\x00" * pad)


def make_tnef(body, attachments):
    """A TNEF stream (winmail.dat): the plain text body and attachments with long names."""
    t = b"\x78\x9f\x3e\x22\x01\x00" + tnef_attr(1, 0x0002800C, body.encode("utf-8"))
    for name, data in attachments:
        t += tnef_attr(2, 0x00069002, bytes(14))
        t += tnef_attr(2, 0x00018010, b"ATTACH~1.DAT\x00")
        t += tnef_attr(2, 0x0006800F, data)
        t += tnef_attr(2, 0x00069005, mapi_long_name(name))
    return t


def text(s):
    return mi.part("text/plain; charset=ISO-2022-JP", mi.iso2022jp(s), "7bit")


def build():
    mi.case("074-cdr-docm-to-docx", mi.message(
        mi.headers(mi.ew("議事録（マクロ付き）の送付"), n=74),
        mi.multipart("docm074", [
            text("議事録を添付します。\n"),
            mi.attachment("application/vnd.ms-word.document.macroEnabled.12", "gijiroku.docm",
                          make_docm("第3回委員会 議事録 本文はここにあります")),
        ]),
        ['Content-Type: multipart/mixed; boundary="docm074"']))

    mi.case("075-cdr-pdf-javascript", mi.message(
        mi.headers(mi.ew("請求書の送付"), n=75),
        mi.multipart("pdfjs075", [
            text("請求書を PDF でお送りします。\n"),
            mi.attachment("application/pdf", "seikyusho.pdf",
                          mi.make_pdf("Invoice 2025-11 total 1234000 JPY", javascript=True)),
        ]),
        ['Content-Type: multipart/mixed; boundary="pdfjs075"']))

    mi.case("076-cdr-jpeg-exif-gps", mi.message(
        mi.headers(mi.ew("現場写真（位置情報付き）"), n=76),
        mi.multipart("gps076", [
            text("現場の写真です。\n"),
            mi.attachment("image/jpeg", "IMG_0001.JPG", make_jpeg_gps()),
        ]),
        ['Content-Type: multipart/mixed; boundary="gps076"']))

    mi.case("077-cdr-zip-exe-pdf", mi.message(
        mi.headers(mi.ew("資料一式（圧縮ファイル）"), n=77),
        mi.multipart("zip077", [
            text("資料一式を zip でお送りします。\n"),
            mi.attachment("application/zip", "shiryou.zip", mi.make_zip([
                ("setup.exe", mi.make_exe()),
                ("shiryou.pdf", mi.make_pdf("Shiryou page 1", javascript=True)),
            ])),
        ]),
        ['Content-Type: multipart/mixed; boundary="zip077"']))

    mi.case("078-cdr-ppap-quarantine", mi.message(
        mi.headers(mi.ew("【パスワード別送】契約書"), n=78),
        mi.multipart("ppap078", [
            text("契約書を送付します。パスワードは別メールでお送りします。\n"),
            mi.attachment("application/zip", "keiyaku.zip",
                          mi.make_zip([("keiyaku.pdf", mi.make_pdf("Contract"))], encrypted=True)),
        ]),
        ['Content-Type: multipart/mixed; boundary="ppap078"']))

    mi.case("079-cdr-tnef-winmail", mi.message(
        mi.headers(mi.ew("Outlook からの送付"), n=79),
        mi.multipart("tnef079", [
            text("Outlook から資料をお送りします。\n"),
            mi.attachment("application/ms-tnef", "winmail.dat", make_tnef(
                "Body of the rich text message: meeting on 5 December.\n",
                [("見積書.pdf", mi.make_pdf("Estimate 2025", javascript=True)),
                 ("地図.png", mi.make_png(6, 4)),
                 ("tool.exe", mi.make_exe())])),
        ]),
        ['Content-Type: multipart/mixed; boundary="tnef079"']))


def build_outside():
    hidden = mi.multipart("b080", [
        text("ダミーの本文です。\n"),
    ])
    hidden += (b"\r\n--b080\r\nContent-Type: multipart/mixed; boundary=b080\r\n\r\n"
               + mi.multipart("b080", [
                   text("隠された本文です。\n"),
                   mi.attachment("application/zip", "hidden.zip",
                                 mi.make_zip([("readme.txt", b"hidden payload")])),
               ]))
    mi.case("080-epilogue-hidden-tree", mi.message(
        mi.headers(mi.ew("後置きに隠された MIME"), n=80), hidden,
        ['Content-Type: multipart/mixed; boundary="b080"']))

    mi.case("081-boundary-never-appears", mi.message(
        mi.headers(mi.ew("区切りの現れないマルチパート"), n=81),
        mi.iso2022jp("区切り行がないため、この本文は読まれません。\n"),
        ['Content-Type: multipart/mixed; boundary="never081"']))


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    build()
    build_outside()
    for name, data, toml in mi.CASES:
        with open(os.path.join(outdir, name + ".eml"), "wb") as f:
            f.write(data)
        assert toml is None
    print("%d cases written to %s" % (len(mi.CASES), outdir))


if __name__ == "__main__":
    main()
