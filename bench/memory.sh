#!/usr/bin/env bash
# Memory benchmark for the sanitising core: peak RSS of `mugaika sanitize` on
#   1. a message with a 100 MB attachment (base64, ~137 MB on the wire), and
#   2. a message with a 60 MB text body (quoted-printable UTF-8 Japanese),
# against the 64 MB target of the issue. Prints one line per case and the ratio to the target.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin mugaika
work=${MUGAIKA_BENCH_TMP:-target/bench-memory}
mkdir -p "$work"
python3 - "$work" <<'PY'
import base64, os, sys
d = sys.argv[1]
def write_once(name, gen):
    p = os.path.join(d, name)
    if not os.path.exists(p):
        with open(p + ".tmp", "wb") as f:
            gen(f)
        os.rename(p + ".tmp", p)
def attachment(f):
    f.write(b"From: sender@example.jp\r\nTo: user@city.example.lg.jp\r\nSubject: big attachment\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
            b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nsee attached\r\n"
            b"--b\r\nContent-Type: application/octet-stream; name=\"big.bin\"\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n")
    block = os.urandom(57 * 1024)
    line = base64.b64encode(block)
    total = 0
    while total < 100 * 1000 * 1000:
        enc = base64.encodebytes(block).replace(b"\n", b"\r\n")
        f.write(enc)
        total += len(block)
    f.write(b"--b--\r\n")
def text(f):
    f.write(b"From: sender@example.jp\r\nTo: user@city.example.lg.jp\r\nSubject: big text\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: 8bit\r\n\r\n")
    line = ("お世話になっております。市民課の山田です。資料を送付いたします。 line %d\r\n")
    total, i = 0, 0
    while total < 60 * 1000 * 1000:
        b = (line % i).encode("utf-8")
        f.write(b)
        total += len(b)
        i += 1
write_once("attachment-100MB.eml", attachment)
write_once("text-60MB.eml", text)
PY
status=0
for case in attachment-100MB text-60MB; do
  in="$work/$case.eml"
  out="$work/$case.clean.eml"
  /usr/bin/time -v -o "$work/$case.time" target/release/mugaika sanitize "$in" -o "$out" \
    || { echo "memory: $case: sanitize failed (exit $?)"; status=1; continue; }
  rss_kb=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$work/$case.time")
  secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$work/$case.time")
  size=$(stat -c %s "$in")
  awk -v c="$case" -v r="$rss_kb" -v s="$size" -v t="$secs" 'BEGIN {
    printf "memory: %-18s input %6.1f MB  peak RSS %6.1f MB  (target 64 MB, ratio %.2f)  wall %s\n",
      c, s / 1e6, r / 1024, (r / 1024) / 64, t }'
  rm -f "$out"
done
exit $status
