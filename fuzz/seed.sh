#!/usr/bin/env bash
# Builds the seed corpora of the fuzz targets in fuzz/corpus/<target>/ from testdata/ and the
# shared corpora (../shared/corpora, or $MUGAIKA_CORPORA). Nothing here is committed: some
# corpora are GPL-3.0 and must not be copied into the repository, so the seeds are generated
# where the fuzzer runs (CI, or a developer's machine) and fuzz/corpus is in .gitignore.
#
# Each target reads a few leading choice bytes before its data (see fuzz/src/lib.rs `Choices`
# and each target's `fuzz_target!`); the seeds carry neutral choices (zeros: default limits,
# whole-input splits, the first policy) in front of real data, so that libFuzzer starts from
# real mail and mutates from there. Seeds are capped in size (large inputs only slow the
# fuzzer down) and deduplicated by content.
#
# Usage: fuzz/seed.sh [TARGET...]   (default: every target)
set -euo pipefail
cd "$(dirname "$0")/.."
corpora=${MUGAIKA_CORPORA:-$PWD/../shared/corpora}
if [ ! -d "$corpora" ]; then
  echo "seed: SKIP shared corpora ($corpora not found); seeds from testdata/ only" >&2
  corpora=""
fi
targets=${*:-mime_chunks sanitize header smtp_command smtp_data html cdr}
exec python3 - "$PWD" "$corpora" $targets <<'PY'
import email, email.policy, hashlib, os, re, sys

root, corpora, targets = sys.argv[1], sys.argv[2], sys.argv[3:]
MAIL_MAX = 128 * 1024
ATTACH_MAX = 512 * 1024

def files(base, exts=None, names=None):
    if not base or not os.path.isdir(base):
        return
    for d, _, fs in sorted(os.walk(base)):
        for f in sorted(fs):
            p = os.path.join(d, f)
            ext = f.rsplit(".", 1)[-1].lower() if "." in f else ""
            if exts is not None and ext not in exts and not (names and names(p)):
                continue
            yield p

def read(p, cap):
    try:
        if os.path.getsize(p) > cap:
            return None
        with open(p, "rb") as fh:
            return fh.read()
    except OSError:
        return None

MAIL_EXTS = {"eml", "msg", "raw", "txt", "mbox"}
def is_mail_like(p):
    # Corpora whose files carry no extension (noxxi, php-mime-mail-parser).
    return "noxxi-mime-is-broken" in p or "/tests/mails/" in p

def mails():
    sources = [os.path.join(root, "testdata")]
    if corpora:
        sources.append(corpora)
    for s in sources:
        for p in files(s, MAIL_EXTS, is_mail_like):
            if any(x in p for x in ("SOURCE.txt", "LICENSE", "README", "/smtp-smuggling-cases/")):
                continue
            data = read(p, MAIL_MAX)
            if data and b":" in data[:2000]:
                yield data

class Out:
    def __init__(self, target):
        self.dir = os.path.join(root, "fuzz", "corpus", target)
        os.makedirs(self.dir, exist_ok=True)
        self.n = 0
    def add(self, data):
        name = hashlib.sha1(data).hexdigest()
        path = os.path.join(self.dir, name)
        if not os.path.exists(path):
            with open(path, "wb") as fh:
                fh.write(data)
            self.n += 1

def parsed(raw):
    try:
        return email.message_from_bytes(raw, policy=email.policy.compat32)
    except Exception:
        return None

def header_values(raw):
    head = re.split(rb"\r?\n\r?\n", raw, maxsplit=1)[0]
    for m in re.finditer(rb"^([!-9;-~]+):[ \t]*((?:.*)(?:\r?\n[ \t].*)*)", head, re.M):
        yield m.group(1).lower(), re.sub(rb"\r?\n([ \t])", rb"\1", m.group(2)).rstrip(b"\r")

HEADER_EXTRA = [
    b"=?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?= =?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?=",
    b"=?utf-8?q?=E3=81=82=0D=0ABcc:_evil@example.com?=",
    b"\"=?shift_jis?B?k/qWe4zq?=\" <taro..x.@docomo.ne.jp>, group: a@b, <c@d>;",
    b"attachment; filename*0*=iso-2022-jp''%1B%24B; filename*1*=%24%22%1B%28B.txt",
    b"multipart/mixed; boundary=\"=_b\"; boundary=other; charset=utf-8 (comment)",
    b"<a@b> <c@d> <a@b> junk <e@f>",
    b"\x82\xa0\x82\xa2 raw Shift_JIS <sjis@example.jp>",
]

def header_seeds(out):
    for raw in mails():
        for name, value in header_values(raw):
            out.add(value)
    for v in HEADER_EXTRA:
        out.add(v)

def html_parts(raw):
    m = parsed(raw)
    if m is None:
        return
    for part in m.walk():
        try:
            if part.get_content_type() == "text/html":
                body = part.get_payload(decode=True)
                if body:
                    yield body[:64 * 1024]
        except Exception:
            continue

def attachments(raw):
    m = parsed(raw)
    if m is None:
        return
    for part in m.walk():
        try:
            main = part.get_content_maintype()
            if main in ("image", "application") and not part.is_multipart():
                body = part.get_payload(decode=True)
                if body and len(body) <= ATTACH_MAX:
                    yield body
        except Exception:
            continue

def smuggling_cases():
    base = os.path.join(corpora, "smtp-smuggling-cases") if corpora else None
    for p in files(base, {"smtp"}):
        data = read(p, MAIL_MAX)
        if data:
            yield data

def command_lines():
    yield from [b"EHLO client.example", b"HELO [192.0.2.1]", b"MAIL FROM:<>",
                b"MAIL FROM:<a@b.example> SIZE=1000 BODY=8BITMIME SMTPUTF8",
                b"MAIL FROM:<\"a b>c\"@b.example>", b"MAIL FROM:<@relay.example:a@b.example>",
                b"RCPT TO:<user@city.example.lg.jp>", b"RCPT TO:<taro..x.@docomo.ne.jp>",
                b"RCPT TO:<a@[IPv6:2001:db8::1]>", b"BDAT 100 LAST", b"DATA", b"RSET",
                b"NOOP", b"QUIT", b"VRFY postmaster", b"STARTTLS", b"GET / HTTP/1.1",
                "MAIL FROM:<太郎@例え.jp> SMTPUTF8".encode()]
    if corpora:
        for p in files(os.path.join(corpora, "chasquid-smtp-dialogs"), {"cmy"}):
            for line in (read(p, MAIL_MAX) or b"").splitlines():
                if line.startswith(b"c -> "):
                    yield line[5:]
    for case in smuggling_cases():
        head = case.split(b"DATA", 1)[0]
        for line in re.split(rb"\r?\n", head):
            if line:
                yield line

def run(target):
    out = Out(target)
    if target == "mime_chunks":
        for raw in mails():
            out.add(b"\x01\x00\x00\x00" + raw)
    elif target == "sanitize":
        for raw in mails():
            out.add(b"\x00" + raw)
    elif target == "header":
        header_seeds(out)
    elif target == "smtp_command":
        # max = 512 (0x0200), seed 0.
        prefix = b"\x00\x02\x00\x00\x00"
        lines = list(command_lines())
        for line in lines:
            out.add(prefix + line + b"\r\n")
        out.add(prefix + b"\r\n".join(lines) + b"\r\n")
    elif target == "smtp_data":
        prefix = b"\x00\x00\x00\x00"  # no size limit, seed 0
        for case in smuggling_cases():
            parts = re.split(rb"DATA\r?\n", case, maxsplit=1)
            if len(parts) == 2:
                out.add(prefix + parts[1])
        for raw in list(mails())[:300]:
            lines = re.split(rb"\r\n|\n", raw)
            stuffed = b"\r\n".join(b"." + l if l.startswith(b".") else l for l in lines)
            out.add(prefix + stuffed + b"\r\n.\r\nQUIT\r\n")
    elif target == "html":
        prefix = b"\x01\x00\x00\x00"  # policy Show, seed 0
        for raw in mails():
            for body in html_parts(raw):
                out.add(prefix + body)
    elif target == "cdr":
        prefix = bytes(14)  # first choice everywhere: image reencode, pdf/office disarm, ...
        if corpora:
            for sub in ("oletools-testdata", "pdfjs-active-content", "go-enmime", "ruby-mail-gem"):
                for p in files(os.path.join(corpora, sub)):
                    if os.path.basename(p) in ("SOURCE.txt", "LICENSE", "LICENSE.md") or \
                            p.endswith((".eml", ".txt", ".golden", ".raw", ".md")):
                        continue
                    data = read(p, ATTACH_MAX)
                    if data:
                        out.add(prefix + data)
        for raw in mails():
            for body in attachments(raw):
                out.add(prefix + body)
    else:
        sys.exit(f"seed: unknown target {target}")
    total = len(os.listdir(out.dir))
    print(f"seed: {target}: {out.n} new, {total} in fuzz/corpus/{target}")

for t in targets:
    run(t)
PY
