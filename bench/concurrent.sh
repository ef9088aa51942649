#!/usr/bin/env bash
# Memory under concurrency (issue 3): 50 concurrent SMTP sessions each sending one 10 MB
# message to a release `mugaika serve` that relays to smtp-sink. Prints the server's peak RSS
# (VmHWM from /proc/PID/status; VmRSS is also sampled every 100 ms) against the 512 MB target.
#
# One fresh server per case, so each peak is that case's alone:
#   text        a 10 MB UTF-8 Japanese text/plain body (converted text is buffered up to
#               sanitize.memory_buffer per message, then spilled to the spool directory)
#   attachment  a short text and a 10 MB base64 attachment (streamed and removed)
#   html        a 10 MB UTF-8 Japanese text/html body (over sanitize.max_html_size: the
#               streaming tag stripper)
#   html-small  a text/html body just under sanitize.max_html_size (8 MiB, the full HTML
#               converter on each of the 50 at once: the worst case for memory)
#
# Environment: MUGAIKA_BENCH_CASES (default "text attachment html html-small"),
# MUGAIKA_BENCH_SESSIONS (default 50), MUGAIKA_BENCH_KEEP=1 keeps the work directory.
# Needs smtp-source and smtp-sink (Debian package postfix), root for smtp-sink -u nobody, and
# python3; without them it prints SKIP and exits 0, or fails when MUGAIKA_REQUIRE_CORPORA=1.
# Exits 1 if a case loses a message or goes over the target.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

CASES=${MUGAIKA_BENCH_CASES:-text attachment html html-small}
SESSIONS=${MUGAIKA_BENCH_SESSIONS:-50}
TARGET_MB=512
WAIT_LIMIT=900

skip() {
  echo "concurrent: SKIP: $*" >&2
  if [ "${MUGAIKA_REQUIRE_CORPORA:-}" = 1 ]; then exit 1; fi
  exit 0
}
for tool in /usr/sbin/smtp-source /usr/sbin/smtp-sink; do
  [ -x "$tool" ] || skip "$tool not installed (Debian package postfix)"
done
command -v python3 >/dev/null || skip "python3 not installed"
[ "$(id -u)" = 0 ] || skip "needs root (smtp-sink -u nobody)"

cargo build --release --quiet --bin mugaika
mugaika=$repo/target/release/mugaika

work=$(mktemp -d "${TMPDIR:-/tmp}/mugaika-bench-concurrent.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "${MUGAIKA_BENCH_KEEP:-}" = 1 ]; then
    echo "concurrent: work directory kept: $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
now() { date +%s.%N; }
wait_listen() { # port what
  local i
  for i in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "concurrent: $2 is not listening on 127.0.0.1:$1" >&2
  return 1
}

# The messages, with LF line ends (smtp-source -F sends each line with CRLF).
python3 - "$work" <<'PY'
import base64, os, random, sys
d = sys.argv[1]
SIZE = 10 * 1000 * 1000
HEAD = ("From: =?utf-8?b?5biC5rCR6Kqy?= <sender@partner.example.co.jp>\n"
        "To: shimin@city.example.lg.jp\nSubject: 10 MB {kind}\n"
        "Date: Mon, 01 Jul 2024 09:00:00 +0900\nMessage-ID: <{kind}@partner.example.co.jp>\n"
        "MIME-Version: 1.0\n")
JA = "お世話になっております。市民課の山田です。先日ご依頼いただいた資料を送付いたします。"
def text(f):
    f.write((HEAD.format(kind="text") + "Content-Type: text/plain; charset=utf-8\n"
             "Content-Transfer-Encoding: 8bit\n\n").encode())
    n, i = 0, 0
    while n < SIZE:
        b = ("%06d %s\n" % (i, JA)).encode()
        f.write(b); n += len(b); i += 1
def attachment(f):
    f.write((HEAD.format(kind="attachment") + 'Content-Type: multipart/mixed; boundary="b1"\n\n'
             "--b1\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
             + JA + "\n--b1\nContent-Type: application/octet-stream; name=\"data.bin\"\n"
             "Content-Disposition: attachment; filename=\"data.bin\"\n"
             "Content-Transfer-Encoding: base64\n\n").encode())
    rnd = random.Random(7)
    raw = bytes(rnd.getrandbits(8) for _ in range(57 * 1024))
    block = base64.encodebytes(raw)
    n = 0
    while n < SIZE - 200:
        f.write(block); n += len(block)
    f.write(b"--b1--\n")
def html(size, kind):
    def gen(f):
        f.write((HEAD.format(kind=kind) + "Content-Type: text/html; charset=utf-8\n"
                 "Content-Transfer-Encoding: 8bit\n\n<html><head><style>td{font-size:12px}</style>"
                 "</head><body><h1>メールマガジン</h1><table>\n").encode())
        n, i = 0, 0
        while n < size - 100:
            b = ('<tr><td>%06d</td><td><a href="https://www.city.example.lg.jp/news/%d">%s</a>'
                 "</td></tr>\n" % (i, i, JA)).encode()
            f.write(b); n += len(b); i += 1
        f.write(b"</table></body></html>\n")
    return gen
for name, gen in [("text", text), ("attachment", attachment), ("html", html(SIZE, "html")),
                  ("html-small", html(8 * 1024 * 1024 - 64 * 1024, "html-small"))]:
    with open(os.path.join(d, name + ".txt"), "wb") as f:
        gen(f)
PY

sink_count() {
  local n
  n=$(tr '\r' '\n' <"$1" | sed -n 's/.*mesg=\([0-9]*\).*/\1/p' | tail -n 1)
  echo "${n:-0}"
}
status_kb() { # pid field
  awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0
}

echo "concurrent: $SESSIONS sessions at once, one message each, $(nproc) cores, target $TARGET_MB MB peak RSS"
failed=0
for case in $CASES; do
  msg=$work/$case.txt
  [ -f "$msg" ] || { echo "concurrent: unknown case $case" >&2; exit 64; }
  dir=$work/$case
  mkdir -p "$dir"
  sink_port=$(free_port)
  /usr/sbin/smtp-sink -u nobody -c "127.0.0.1:$sink_port" 256 >"$dir/sink.out" 2>&1 &
  sink_pid=$!
  pids+=("$sink_pid")
  wait_listen "$sink_port" smtp-sink
  port=$(free_port)
  cat >"$dir/mugaika.toml" <<EOF
[server]
listen = ["127.0.0.1:$port"]
hostname = "mugaika.bench.test"
allowed_clients = ["127.0.0.0/8"]
relay_domains = ["city.example.lg.jp"]
# All the sessions come from one address (the default per-client cap is 50).
max_connections_per_client = $((SESSIONS + 10))
[delivery]
next_hop = "127.0.0.1:$sink_port"
tls = "none"
[admin]
enabled = false

[spool]
dir = "$dir/spool"
[quarantine]
dir = "$dir/quarantine"
EOF
  "$mugaika" serve --config "$dir/mugaika.toml" 2>"$dir/mugaika.log" &
  m_pid=$!
  pids+=("$m_pid")
  wait_listen "$port" "mugaika serve" || { tail -20 "$dir/mugaika.log" >&2; exit 1; }
  idle_kb=$(status_kb "$m_pid" VmRSS)

  # Sample VmRSS while the case runs (VmHWM at the end is the true peak).
  (
    max=0
    while kill -0 "$m_pid" 2>/dev/null; do
      r=$(status_kb "$m_pid" VmRSS)
      [ "${r:-0}" -gt "$max" ] && max=$r && echo "$max" >"$dir/rss-max"
      sleep 0.1
    done
  ) &
  sampler=$!
  pids+=("$sampler")

  t0=$(now)
  if ! /usr/sbin/smtp-source -s "$SESSIONS" -m "$SESSIONS" -F "$msg" \
    -f sender@partner.example.co.jp -t shimin@city.example.lg.jp \
    "127.0.0.1:$port" >"$dir/source.out" 2>&1; then
    echo "concurrent: $case: smtp-source failed:" >&2
    tail -5 "$dir/source.out" >&2
    tail -20 "$dir/mugaika.log" >&2
    exit 1
  fi
  t_acc=$(now)
  while :; do
    n=$(sink_count "$dir/sink.out")
    [ "$n" -ge "$SESSIONS" ] && break
    if [ "$(echo "$(now) - $t0 > $WAIT_LIMIT" | bc)" = 1 ]; then
      echo "concurrent: $case: the sink has $n of $SESSIONS after ${WAIT_LIMIT}s" >&2
      exit 1
    fi
    sleep 0.1
  done
  t_end=$(now)
  hwm_kb=$(status_kb "$m_pid" VmHWM)
  kill "$m_pid" 2>/dev/null || true
  wait "$m_pid" 2>/dev/null || true
  wait "$sampler" 2>/dev/null || true
  kill "$sink_pid" 2>/dev/null || true
  wait "$sink_pid" 2>/dev/null || true
  sampled_kb=$(cat "$dir/rss-max" 2>/dev/null || echo 0)
  statuses=$(grep -o 'status=[a-z-]*' "$dir/mugaika.log" | sort | uniq -c | awk '{printf "%s %s, ", $2, $1}')
  size=$(stat -c %s "$msg")
  awk -v c="$case" -v s="$size" -v n="$SESSIONS" -v h="$hwm_kb" -v r="$sampled_kb" -v i="$idle_kb" \
    -v ta="$(echo "$t_acc - $t0" | bc)" -v te="$(echo "$t_end - $t0" | bc)" -v t="$TARGET_MB" 'BEGIN {
    printf "concurrent: %-10s %d x %4.1f MB: peak RSS %6.1f MB (target %d MB, ratio %.2f; sampled %.1f MB, idle %.1f MB); accepted in %.1f s, delivered in %.1f s\n",
      c, n, s / 1e6, h / 1024, t, (h / 1024) / t, r / 1024, i / 1024, ta, te }'
  echo "concurrent: $case: mugaika audit: ${statuses%, }"
  if [ "$hwm_kb" -gt $((TARGET_MB * 1024)) ]; then
    echo "concurrent: $case: over the $TARGET_MB MB target" >&2
    failed=1
  fi
done
exit $failed
