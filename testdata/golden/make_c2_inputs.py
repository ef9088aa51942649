#!/usr/bin/env python3
"""Golden inputs for the attachment-disarm gaps (issue 4), cases 110-113, written next to this
script with the helpers of make_inputs.py and make_cdr_inputs.py:

  110 text attachments (default policy: text = "text"): a Shift_JIS CSV and an XML at the top
      level, a zip of text files (UTF-8 with bidi controls, Shift_JIS CSV with a DDE formula, a
      .js, inert and active XML, a binary .txt)
  111 the same message under text = "remove"
  112 quarantine for every kind: image, pdf, office, archive = "quarantine"
  113 a docx with a photo carrying EXIF GPS and an external hyperlink (image re-encoded in the
      package, hyperlink removed with its text kept)

Usage: python3 make_c2_inputs.py [OUTDIR]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_cdr_inputs as mc  # noqa: E402
import make_inputs as mi  # noqa: E402


def text(s):
    return mi.part("text/plain; charset=ISO-2022-JP", mi.iso2022jp(s), "7bit")


def text_message(n, subject):
    csv = "氏名,金額\r\n山田,=cmd|' /C calc'!A0\r\n".encode("cp932")
    return mi.message(
        mi.headers(mi.ew(subject), n=n),
        mi.multipart("txt%d" % n, [
            text("名簿とデータを添付します。\n"),
            mi.attachment("text/csv", "meibo.csv", "氏名,住所\r\n山田,東京都\r\n".encode("cp932")),
            mi.attachment("application/xml", "shinsei.xml",
                          '<?xml version="1.0" encoding="UTF-8"?>\n<申請><氏名>山田</氏名>'
                          '</申請>\n'.encode("utf-8")),
            mi.attachment("application/zip", "data.zip", mi.make_zip([
                ("memo.txt", "議事録\u202egpj.exe\u0007\n".encode("utf-8")),
                ("list.csv", csv),
                ("run.js", b'WScript.CreateObject("WScript.Shell").Run("calc")\n'),
                ("form.xml", '<?xml version="1.0"?>\n<form><name>山田</name></form>\n'
                 .encode("utf-8")),
                ("style.xml", b'<?xml version="1.0"?><?xml-stylesheet type="text/xsl" '
                 b'href="http://evil.example/x.xsl"?><a/>'),
                ("data.txt", b"\x00\x01\x02binary\x00\xff\xfe"),
            ])),
        ]),
        ['Content-Type: multipart/mixed; boundary="txt%d"' % n])


def make_docx_media():
    """A docx with a JPEG carrying EXIF GPS and an external hyperlink around some text."""
    return mi.make_zip([
        ("[Content_Types].xml", mi.CT_XML % '<Default Extension="jpeg" ContentType="image/jpeg"/>'
         '<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-'
         'officedocument.wordprocessingml.document.main+xml"/>'),
        ("_rels/.rels", '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://'
         'schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type='
         '"http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" '
         'Target="word/document.xml"/></Relationships>'),
        ("word/document.xml", '<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="http:'
         '//schemas.openxmlformats.org/wordprocessingml/2006/main" xmlns:r="http://schemas.'
         'openxmlformats.org/officeDocument/2006/relationships"><w:body><w:p><w:r><w:t>現場写真の'
         '報告書</w:t></w:r></w:p><w:p><w:hyperlink r:id="rId2"><w:r><w:t>地図はこちら</w:t>'
         '</w:r></w:hyperlink></w:p><w:p><w:r><w:drawing><a:blip xmlns:a="http://schemas.'
         'openxmlformats.org/drawingml/2006/main" r:embed="rId3"/></w:drawing></w:r></w:p>'
         '</w:body></w:document>'),
        ("word/_rels/document.xml.rels", '<?xml version="1.0" encoding="UTF-8"?><Relationships '
         'xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship '
         'Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
         'hyperlink" Target="https://maps.evil.example/track" TargetMode="External"/>'
         '<Relationship Id="rId3" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
         'relationships/image" Target="media/image1.jpeg"/></Relationships>'),
        ("word/media/image1.jpeg", mc.make_jpeg_gps()),
    ])


def build():
    mi.case("110-cdr-text-attachments", text_message(110, "名簿とデータ（テキスト）"))
    mi.case("111-cdr-text-remove", text_message(111, "名簿とデータ（テキスト削除）"),
            '[sanitize.attachments]\ntext = "remove"\n')
    mi.case("112-cdr-quarantine-every-kind", mi.message(
        mi.headers(mi.ew("資料一式（保留）"), n=112),
        mi.multipart("q112", [
            text("資料一式をお送りします。\n"),
            mi.attachment("image/png", "chizu.png", mi.make_png(6, 4)),
            mi.attachment("application/pdf", "seikyusho.pdf", mi.make_pdf("Invoice 112")),
            mi.attachment("application/vnd.openxmlformats-officedocument.wordprocessingml."
                          "document", "gijiroku.docx", mi.make_docx("議事録 112")),
            mi.attachment("application/zip", "shiryou.zip",
                          mi.make_zip([("readme.txt", b"hello\n")])),
        ]),
        ['Content-Type: multipart/mixed; boundary="q112"']),
        '[sanitize.attachments]\nimage = "quarantine"\npdf = "quarantine"\n'
        'office = "quarantine"\narchive = "quarantine"\n')
    mi.case("113-cdr-docx-photo-hyperlink", mi.message(
        mi.headers(mi.ew("現場写真の報告書"), n=113),
        mi.multipart("docx113", [
            text("報告書を添付します。\n"),
            mi.attachment("application/vnd.openxmlformats-officedocument.wordprocessingml."
                          "document", "houkoku.docx", make_docx_media()),
        ]),
        ['Content-Type: multipart/mixed; boundary="docx113"']))


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
