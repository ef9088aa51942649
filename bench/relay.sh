#!/usr/bin/env bash
# End-to-end relay benchmark (issue 3): the same load through two relays on this machine, in
# the same run:
#
#   smtp-source ──▶ mugaika serve (release build)         ──▶ smtp-sink
#   smtp-source ──▶ Postfix (a private instance, plain relay) ──▶ smtp-sink
#
# The load is MESSAGES (default 2000) copies of the ~26 KB Japanese HTML newsletter made by
# `genmail.py --kind html --count 1 --seed 16` (26,129 octets; multipart/alternative with an
# inline image), sent over SESSIONS (default 16) parallel SMTP sessions. Each chain is timed
# from the first connect until its sink has received every message. Prints msgs/s for both and
# the ratio mugaika/Postfix (target ≥ 1.0). Both relays write their queue to the same disk and
# fsync it (mugaika: original, clean message and envelope before the 250; Postfix: its queue
# file), both log every message to a file, and both run with their default delivery settings.
#
# Environment: MUGAIKA_BENCH_MESSAGES, MUGAIKA_BENCH_SESSIONS, MUGAIKA_BENCH_ROUNDS (default 1:
# each chain once; more rounds alternate the order and print every round),
# MUGAIKA_BENCH_KEEP=1 keeps the work directory (logs, spool, Postfix queue).
# Needs root (Postfix's master and smtp-sink -u nobody), python3 and Debian's postfix package;
# without them it prints SKIP and exits 0, or fails when MUGAIKA_REQUIRE_CORPORA=1.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

MESSAGES=${MUGAIKA_BENCH_MESSAGES:-2000}
SESSIONS=${MUGAIKA_BENCH_SESSIONS:-16}
ROUNDS=${MUGAIKA_BENCH_ROUNDS:-1}
WAIT_LIMIT=600 # seconds one chain may take before the run is declared failed

skip() {
  echo "relay: SKIP: $*" >&2
  if [ "${MUGAIKA_REQUIRE_CORPORA:-}" = 1 ]; then exit 1; fi
  exit 0
}
for tool in /usr/sbin/smtp-source /usr/sbin/smtp-sink /usr/sbin/postfix; do
  [ -x "$tool" ] || skip "$tool not installed (Debian package postfix)"
done
command -v python3 >/dev/null || skip "python3 not installed"
[ "$(id -u)" = 0 ] || skip "needs root (a private Postfix instance and smtp-sink -u nobody)"
genmail=${MUGAIKA_GENMAIL:-$repo/../shared/tools/genmail.py}
[ -f "$genmail" ] || skip "$genmail not found"

cargo build --release --quiet --bin mugaika
mugaika=$repo/target/release/mugaika

work=$(mktemp -d "${TMPDIR:-/tmp}/mugaika-bench-relay.XXXXXX")
chmod 755 "$work" # Postfix's daemons run as postfix and must reach their queue
pids=()
pf_dir=$work/postfix
cleanup() {
  if [ -f "$pf_dir/main.cf" ]; then
    postfix -c "$pf_dir" stop >/dev/null 2>&1 || postfix -c "$pf_dir" abort >/dev/null 2>&1 || true
  fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "${MUGAIKA_BENCH_KEEP:-}" = 1 ]; then
    echo "relay: work directory kept: $work" >&2
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
  echo "relay: $2 is not listening on 127.0.0.1:$1" >&2
  return 1
}

# The message: smtp-source -F appends CRLF to each line it reads, so a CRLF file would be sent
# with a bare CR before every CRLF (which mugaika refuses as SMTP smuggling): give it LF lines.
python3 "$genmail" "$work/gen" --kind html --count 1 --seed 16 >/dev/null
msg=$work/message.txt
sed 's/\r$//' "$work"/gen/*.eml >"$msg"
msg_size=$(stat -c %s "$work"/gen/*.eml)

# --- the next hops: one smtp-sink per chain, counting messages (-c writes "mesg=N") ---------
sink_port_m=$(free_port)
sink_port_p=$(free_port)
/usr/sbin/smtp-sink -u nobody -c "127.0.0.1:$sink_port_m" 256 >"$work/sink-mugaika.out" 2>&1 &
pids+=($!)
/usr/sbin/smtp-sink -u nobody -c "127.0.0.1:$sink_port_p" 256 >"$work/sink-postfix.out" 2>&1 &
pids+=($!)
wait_listen "$sink_port_m" smtp-sink
wait_listen "$sink_port_p" smtp-sink
sink_count() {
  local n
  n=$(tr '\r' '\n' <"$1" | sed -n 's/.*mesg=\([0-9]*\).*/\1/p' | tail -n 1)
  echo "${n:-0}"
}

# --- mugaika --------------------------------------------------------------------------------
m_port=$(free_port)
mkdir -p "$work/mugaika"
cat >"$work/mugaika/mugaika.toml" <<EOF
[server]
listen = ["127.0.0.1:$m_port"]
hostname = "mugaika.bench.test"
allowed_clients = ["127.0.0.0/8"]
relay_domains = ["city.example.lg.jp"]
[delivery]
next_hop = "127.0.0.1:$sink_port_m"
tls = "none"
[admin]
enabled = false

[spool]
dir = "$work/mugaika/spool"
[quarantine]
dir = "$work/mugaika/quarantine"
EOF
"$mugaika" serve --config "$work/mugaika/mugaika.toml" 2>"$work/mugaika/mugaika.log" &
m_pid=$!
pids+=("$m_pid")
wait_listen "$m_port" "mugaika serve" || { tail -20 "$work/mugaika/mugaika.log" >&2; exit 1; }

# --- Postfix: a private instance, a plain relay to its smtp-sink ----------------------------
p_port=$(free_port)
mkdir -p "$pf_dir/queue" "$pf_dir/data"
chown postfix "$pf_dir/data"
cat >"$pf_dir/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $pf_dir/queue
data_directory = $pf_dir/data
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.bench.test
mydomain = bench.test
myorigin = \$myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains =
relayhost = [127.0.0.1]:$sink_port_p
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = permit_mynetworks, reject
smtp_tls_security_level = none
smtpd_tls_security_level = none
alias_maps =
alias_database =
local_recipient_maps =
biff = no
maillog_file = $pf_dir/maillog
maillog_file_prefixes = $work
EOF
# Debian's master.cf without chroot (the private queue has no chroot files) and with the SMTP
# listener on our port.
cat >"$pf_dir/master.cf" <<EOF
127.0.0.1:$p_port inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
if ! postfix -c "$pf_dir" start >"$work/postfix-start.out" 2>&1; then
  echo "relay: Postfix did not start:" >&2
  tail -20 "$pf_dir/maillog" "$work/postfix-start.out" >&2 || true
  exit 1
fi
wait_listen "$p_port" Postfix || { tail -20 "$pf_dir/maillog" >&2; exit 1; }

# --- one timed run of one chain -------------------------------------------------------------
# run NAME PORT SINK_OUT: sets R_SECS (first connect until the sink has every message) and
# R_ACCEPT (until smtp-source finished, i.e. every message was accepted), in seconds.
declare -A done_before=([mugaika]=0 [postfix]=0)
run() {
  local name=$1 port=$2 sink_out=$3 target t0 t_src t_end n
  target=$((done_before[$name] + MESSAGES))
  t0=$(now)
  if ! /usr/sbin/smtp-source -s "$SESSIONS" -m "$MESSAGES" -F "$msg" \
    -f newsletter@internet.example -t shimin@city.example.lg.jp \
    "127.0.0.1:$port" >"$work/source-$name.out" 2>&1; then
    echo "relay: smtp-source -> $name failed:" >&2
    tail -5 "$work/source-$name.out" >&2
    return 1
  fi
  t_src=$(now)
  while :; do
    n=$(sink_count "$sink_out")
    [ "$n" -ge "$target" ] && break
    if [ "$(echo "$(now) - $t0 > $WAIT_LIMIT" | bc)" = 1 ]; then
      echo "relay: $name: the sink has $((n - done_before[$name])) of $MESSAGES after ${WAIT_LIMIT}s" >&2
      return 1
    fi
    sleep 0.02
  done
  t_end=$(now)
  done_before[$name]=$target
  R_SECS=$(echo "$t_end - $t0" | bc)
  R_ACCEPT=$(echo "$t_src - $t0" | bc)
}

echo "relay: $MESSAGES messages of $msg_size octets (genmail html newsletter), $SESSIONS sessions, $(nproc) cores"
m_rates=()
p_rates=()
for round in $(seq 1 "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then order="postfix mugaika"; else order="mugaika postfix"; fi
  for chain in $order; do
    if [ "$chain" = mugaika ]; then
      run mugaika "$m_port" "$work/sink-mugaika.out" || exit 1
    else
      run postfix "$p_port" "$work/sink-postfix.out" || exit 1
    fi
    secs=$R_SECS
    accept=$R_ACCEPT
    rate=$(echo "scale=1; $MESSAGES / $secs" | bc)
    arate=$(echo "scale=1; $MESSAGES / $accept" | bc)
    printf 'relay: round %d  %-8s %8.1f msgs/s end to end (%.2f s; all accepted after %.2f s = %.1f msgs/s)\n' \
      "$round" "$chain" "$rate" "$secs" "$accept" "$arate"
    if [ "$chain" = mugaika ]; then m_rates+=("$rate"); else p_rates+=("$rate"); fi
  done
done

# What mugaika did to the messages (its audit records): sanitised, or the notice-only fallback.
statuses=$(grep -o 'status=[a-z-]*' "$work/mugaika/mugaika.log" | sort | uniq -c | awk '{printf "%s %s, ", $2, $1}')
echo "relay: mugaika audit: ${statuses%, }"
if kill -0 "$m_pid" 2>/dev/null; then :; else
  echo "relay: mugaika serve died:" >&2
  tail -20 "$work/mugaika/mugaika.log" >&2
  exit 1
fi

m_sum=$(printf '%s\n' "${m_rates[@]}" | paste -sd+ | bc)
p_sum=$(printf '%s\n' "${p_rates[@]}" | paste -sd+ | bc)
m_avg=$(echo "scale=1; $m_sum / $ROUNDS" | bc)
p_avg=$(echo "scale=1; $p_sum / $ROUNDS" | bc)
ratio=$(echo "scale=2; $m_avg / $p_avg" | bc)
echo "relay: mugaika $m_avg msgs/s, Postfix $p_avg msgs/s, ratio mugaika/Postfix $ratio (target >= 1.0)"
