//! Crash test of the real `mugaika serve` binary: 600 messages stream in over 8 concurrent SMTP
//! sessions while the server is killed with SIGKILL twice (and restarted each time on the same
//! spool). The next hop is an SMTP sink inside this test that records the unique id carried in
//! every message's Subject. At the end every message that got a `250` must have reached the
//! next hop: `accepted N, lost L (must be 0), duplicates D` is printed and `L == 0` asserted.
//!
//! This is DESIGN's first reliability rule ("no 250 before the data is durable; a crash at any
//! instant loses no accepted message") shown on the real process, not on an in-process model:
//! a SIGKILL gives the server no chance to flush, drain or clean up, exactly like a power cut
//! of the process (the kernel's page cache survives, so it does not test the fsyncs themselves;
//! the spool's own tests cover their order). Duplicates are allowed (delivery is at-least-once:
//! a kill between the next hop's `250` and the envelope update re-delivers on restart) but are
//! printed. A client whose transaction was cut retries the message as a real MTA would, so a
//! message committed just before a kill, whose `250` never arrived, may also arrive twice.
//!
//! Everything runs on 127.0.0.1 with bounded waits; the server process is killed when the test
//! ends, whatever happens.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const MESSAGES: u32 = 600;
const CLIENTS: u32 = 8;
/// The server is killed when this many messages have been accepted (of [`MESSAGES`]).
const KILL_AT: [usize; 2] = [170, 390];
/// The token before each message's number, searched for in what the next hop receives.
const TOKEN: &[u8] = b"mugaika-crash-";
/// The whole test, clients included, must finish well within this.
const CLIENT_DEADLINE: Duration = Duration::from_secs(240);
const DRAIN_DEADLINE: Duration = Duration::from_secs(120);
/// One SMTP reply must come within this.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// The next hop: a small SMTP sink that records the id of every message it accepts.

#[derive(Default)]
struct SinkState {
    /// Message number → how many times it was received.
    ids: HashMap<u32, usize>,
    /// Messages received (with or without a recognisable id).
    messages: usize,
    /// Messages without an id (must stay 0).
    unmarked: usize,
    /// `X-Mugaika-Status` value → messages (`none` without the field). Only clean messages
    /// leave mugaika, and these well-formed ones must all be sanitised, never notice-only.
    statuses: HashMap<String, usize>,
}

struct Sink {
    addr: SocketAddr,
    state: Arc<Mutex<SinkState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Sink {
    async fn start() -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the sink");
        let addr = listener.local_addr().expect("sink address");
        let state = Arc::new(Mutex::new(SinkState::default()));
        let st = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(sink_session(sock, st.clone()));
            }
        });
        Sink { addr, state, task }
    }

    fn snapshot(&self) -> (HashMap<u32, usize>, usize, usize, HashMap<String, usize>) {
        let s = self.state.lock().expect("sink state");
        (s.ids.clone(), s.messages, s.unmarked, s.statuses.clone())
    }
}

/// The number after [`TOKEN`] in `data` (the Subject carries it; the body too).
fn find_id(data: &[u8]) -> Option<u32> {
    let at = data.windows(TOKEN.len()).position(|w| w == TOKEN)? + TOKEN.len();
    let digits: Vec<u8> = data[at..]
        .iter()
        .copied()
        .take_while(u8::is_ascii_digit)
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

/// The value of the `X-Mugaika-Status:` field (up to its first `;`), or `None` without one.
fn status_of(data: &[u8]) -> Option<String> {
    const NAME: &[u8] = b"X-Mugaika-Status:";
    let at = data.windows(NAME.len()).position(|w| w == NAME)? + NAME.len();
    let value: Vec<u8> = data[at..]
        .iter()
        .copied()
        .take_while(|&b| b != b'\r' && b != b'\n' && b != b';')
        .collect();
    Some(String::from_utf8_lossy(&value).trim().to_string())
}

/// One session of the sink: answers 250 to everything, 354 to DATA, and records the message at
/// the terminating dot before its 250 goes out (a connection cut mid-DATA records nothing).
async fn sink_session(sock: TcpStream, st: Arc<Mutex<SinkState>>) {
    let mut r = BufReader::new(sock);
    if r.get_mut().write_all(b"220 sink ESMTP\r\n").await.is_err() {
        return;
    }
    let mut line = Vec::new();
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let upper = line.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with(b"EHLO") {
            b"250-sink\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
        } else if upper.starts_with(b"QUIT") {
            let _ = r.get_mut().write_all(b"221 bye\r\n").await;
            return;
        } else if upper.starts_with(b"DATA") {
            if r.get_mut().write_all(b"354 go ahead\r\n").await.is_err() {
                return;
            }
            let mut data = Vec::new();
            loop {
                line.clear();
                if r.read_until(b'\n', &mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                if line == b".\r\n" {
                    break;
                }
                // Bounded: a runaway message is not kept beyond 4 MiB.
                if data.len() < 4 << 20 {
                    data.extend_from_slice(&line);
                }
            }
            {
                let mut s = st.lock().expect("sink state");
                s.messages += 1;
                match find_id(&data) {
                    Some(id) => *s.ids.entry(id).or_default() += 1,
                    None => s.unmarked += 1,
                }
                let status = status_of(&data).unwrap_or_else(|| "none".into());
                *s.statuses.entry(status).or_default() += 1;
            }
            b"250 2.0.0 ok\r\n"
        } else {
            b"250 ok\r\n"
        };
        if r.get_mut().write_all(reply).await.is_err() {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The real server process.

/// A loopback port with nothing listening on it right now.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a probe port");
    l.local_addr().expect("probe address").port()
}

fn write_config(dir: &Path, listen: SocketAddr, hop: SocketAddr) -> PathBuf {
    let path = dir.join("mugaika.toml");
    let text = format!(
        r#"[server]
listen = ["{listen}"]
hostname = "mugaika.crash.test"
allowed_clients = ["127.0.0.0/8"]
relay_domains = ["city.example.lg.jp"]
shutdown_timeout = "2s"

[delivery]
next_hop = "{hop}"
tls = "none"
retry = ["1s"]
connect_timeout = "2s"
command_timeout = "20s"
concurrency = 8

[admin]
enabled = false

[spool]
dir = "{spool}"

[quarantine]
dir = "{quarantine}"

[log]
level = "info"
"#,
        spool = dir.join("spool").display(),
        quarantine = dir.join("quarantine").display(),
    );
    fs::write(&path, text).expect("write the configuration");
    path
}

/// A running `mugaika serve`, killed (SIGKILL) and reaped when dropped.
struct Relay {
    child: Child,
}

impl Relay {
    fn start(config: &Path, log: &Path) -> Relay {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open the server log");
        let child = Command::new(env!("CARGO_BIN_EXE_mugaika"))
            .arg("serve")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn mugaika serve");
        Relay { child }
    }

    /// `kill -9` and reap.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.kill();
    }
}

fn log_tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Waits until the server answers with a 220 greeting (bounded).
async fn wait_ready(relay: &mut Relay, addr: SocketAddr, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = relay.exited() {
            panic!(
                "mugaika serve exited ({status}) at start:\n{}",
                log_tail(log)
            );
        }
        if let Ok(Ok(mut c)) = tokio::time::timeout(Duration::from_secs(5), Smtp::open(addr)).await
        {
            let _ = c.quit().await;
            return;
        }
        assert!(
            Instant::now() < deadline,
            "mugaika serve did not start listening on {addr}:\n{}",
            log_tail(log)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn dir_entries(dir: &Path) -> usize {
    fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// A minimal SMTP client (no pipelining): what a sending MTA does, and nothing more.

struct Smtp {
    r: BufReader<TcpStream>,
    line: Vec<u8>,
}

fn broken(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, what.to_string())
}

impl Smtp {
    /// Connects, reads the greeting and says EHLO.
    async fn open(addr: SocketAddr) -> io::Result<Smtp> {
        let tcp = TcpStream::connect(addr).await?;
        let mut c = Smtp {
            r: BufReader::new(tcp),
            line: Vec::new(),
        };
        if c.reply().await? != 220 {
            return Err(broken("no 220 greeting"));
        }
        if c.cmd("EHLO client.crash.test").await? != 250 {
            return Err(broken("EHLO refused"));
        }
        Ok(c)
    }

    /// Reads one (possibly multi-line) reply; its code.
    async fn reply(&mut self) -> io::Result<u16> {
        loop {
            self.line.clear();
            let n = tokio::time::timeout(REPLY_TIMEOUT, self.r.read_until(b'\n', &mut self.line))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "reply timeout"))??;
            if n == 0 {
                return Err(broken("connection closed"));
            }
            let code = std::str::from_utf8(self.line.get(..3).unwrap_or_default())
                .ok()
                .and_then(|c| c.parse::<u16>().ok())
                .ok_or_else(|| broken("malformed reply"))?;
            if self.line.get(3) != Some(&b'-') {
                return Ok(code);
            }
        }
    }

    async fn cmd(&mut self, line: &str) -> io::Result<u16> {
        self.r
            .get_mut()
            .write_all(format!("{line}\r\n").as_bytes())
            .await?;
        self.reply().await
    }

    /// One transaction; the code of the reply to the final dot (or to the first refusal).
    async fn send(&mut self, data: &[u8]) -> io::Result<u16> {
        let code = self.cmd("MAIL FROM:<newsletter@internet.example>").await?;
        if code != 250 {
            return Ok(code);
        }
        let code = self.cmd("RCPT TO:<user@city.example.lg.jp>").await?;
        if code != 250 {
            let _ = self.cmd("RSET").await?;
            return Ok(code);
        }
        let code = self.cmd("DATA").await?;
        if code != 354 {
            return Ok(code);
        }
        self.r.get_mut().write_all(data).await?;
        self.r.get_mut().write_all(b".\r\n").await?;
        self.reply().await
    }

    async fn quit(&mut self) -> io::Result<()> {
        self.cmd("QUIT").await.map(|_| ())
    }
}

/// Message `n`: its id in the Subject and in the text, some Japanese text so that it takes a
/// moment to transfer (a kill then often lands mid-DATA), CRLF throughout, no line starting
/// with a dot.
fn message(n: u32) -> Vec<u8> {
    let id = format!("{}{n:05}", String::from_utf8_lossy(TOKEN));
    let mut m = format!(
        "From: Newsletter <newsletter@internet.example>\r\n\
         To: user@city.example.lg.jp\r\n\
         Subject: crash test {id}\r\n\
         Message-ID: <{id}@internet.example>\r\n\
         Date: Mon, 01 Jul 2024 09:00:00 +0900\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\
         \r\n\
         {id}\r\n"
    );
    for i in 0..60 {
        m.push_str(&format!(
            "{i:02} 市民課よりお知らせです。来週の窓口受付時間の変更について、ご確認ください。\r\n"
        ));
    }
    m.into_bytes()
}

/// What the clients saw.
#[derive(Default)]
struct Sent {
    /// Message numbers that got a 250 (a number appears once even when retried).
    accepted: HashSet<u32>,
    /// Transactions that ended without a final reply (cut by a kill) or with a 4xx/5xx.
    failed_attempts: usize,
    /// Messages given up on (never accepted).
    given_up: Vec<u32>,
}

/// One client: sends its messages in order over one connection, reconnecting (and retrying the
/// message, like a sending MTA) whenever the transaction fails.
async fn client(
    addr: SocketAddr,
    numbers: Vec<u32>,
    sent: Arc<Mutex<Sent>>,
    accepted: Arc<AtomicUsize>,
    deadline: Instant,
) {
    let mut conn: Option<Smtp> = None;
    for n in numbers {
        let data = message(n);
        let mut ok = false;
        while Instant::now() < deadline {
            let c = match conn.as_mut() {
                Some(c) => c,
                None => match Smtp::open(addr).await {
                    Ok(c) => conn.insert(c),
                    Err(_) => {
                        // The server is down (killed) or not up yet: try again shortly.
                        tokio::time::sleep(Duration::from_millis(25)).await;
                        continue;
                    }
                },
            };
            match c.send(&data).await {
                Ok(250) => {
                    ok = true;
                    break;
                }
                Ok(_) | Err(_) => {
                    // Cut or refused (451 while a restart recovers, 421 at shutdown): a fresh
                    // connection and the same message again.
                    sent.lock().expect("sent").failed_attempts += 1;
                    conn = None;
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            }
        }
        let mut s = sent.lock().expect("sent");
        if ok {
            if s.accepted.insert(n) {
                accepted.fetch_add(1, Ordering::SeqCst);
            }
        } else {
            s.given_up.push(n);
        }
    }
    if let Some(mut c) = conn {
        let _ = c.quit().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_twice_while_600_messages_stream_in_loses_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sink = Sink::start().await;
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port())
        .parse()
        .expect("listen address");
    let config = write_config(dir.path(), listen, sink.addr);
    let log = dir.path().join("server.log");
    let spool = dir.path().join("spool");

    let mut relay = Relay::start(&config, &log);
    wait_ready(&mut relay, listen, &log).await;

    let sent = Arc::new(Mutex::new(Sent::default()));
    let accepted = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + CLIENT_DEADLINE;
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let numbers: Vec<u32> = (0..MESSAGES).filter(|n| n % CLIENTS == c).collect();
        clients.spawn(client(
            listen,
            numbers,
            sent.clone(),
            accepted.clone(),
            deadline,
        ));
    }

    // The kills: each one while the clients are still streaming, then a restart on the same
    // spool straight away.
    let mut kills = Vec::new();
    for &at in &KILL_AT {
        while accepted.load(Ordering::SeqCst) < at {
            assert!(
                !clients.is_empty() && Instant::now() < deadline,
                "the clients stopped before {at} messages were accepted:\n{}",
                log_tail(&log)
            );
            if let Some(status) = relay.exited() {
                panic!(
                    "mugaika serve exited by itself ({status}):\n{}",
                    log_tail(&log)
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let at_kill = accepted.load(Ordering::SeqCst);
        relay.kill();
        kills.push(at_kill);
        relay = Relay::start(&config, &log);
        // No wait for readiness: the clients keep retrying while it starts.
    }
    while let Some(r) = clients.join_next().await {
        r.expect("client task");
    }
    let (accepted_set, failed_attempts, given_up) = {
        let s = sent.lock().expect("sent");
        (s.accepted.clone(), s.failed_attempts, s.given_up.clone())
    };
    assert!(
        given_up.is_empty(),
        "messages never accepted within the deadline: {given_up:?}\n{}",
        log_tail(&log)
    );
    for &k in &kills {
        assert!((k as u32) < MESSAGES, "a kill came after the stream ended");
    }

    // Bounded wait for the queue to empty: every accepted message delivered.
    let drain_deadline = Instant::now() + DRAIN_DEADLINE;
    loop {
        let (ids, ..) = sink.snapshot();
        let all_there = accepted_set.iter().all(|n| ids.contains_key(n));
        if all_there && dir_entries(&spool.join("queue")) == 0 {
            break;
        }
        if let Some(status) = relay.exited() {
            panic!(
                "mugaika serve exited by itself ({status}):\n{}",
                log_tail(&log)
            );
        }
        if Instant::now() > drain_deadline {
            break; // reported (and failed) below with the numbers
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let queued_left = dir_entries(&spool.join("queue"));
    let corrupt = dir_entries(&spool.join("corrupt"));
    let (ids, messages, unmarked, statuses) = sink.snapshot();
    let lost: Vec<u32> = {
        let mut l: Vec<u32> = accepted_set
            .iter()
            .copied()
            .filter(|n| !ids.contains_key(n))
            .collect();
        l.sort_unstable();
        l
    };
    let duplicates: usize = ids.values().map(|&c| c.saturating_sub(1)).sum();
    let log_text = fs::read_to_string(&log).unwrap_or_default();
    let partial_removed = log_text.matches("removed partial entries").count();

    println!(
        "crash test: {MESSAGES} messages over {CLIENTS} sessions, kill -9 after {kills:?} \
         accepted, {failed_attempts} transactions cut or refused and retried"
    );
    println!(
        "crash test: accepted {}, lost {} (must be 0), duplicates {duplicates}",
        accepted_set.len(),
        lost.len()
    );
    println!(
        "crash test: next hop received {messages} messages ({} distinct, X-Mugaika-Status \
         {statuses:?}); restarts that removed partial entries: {partial_removed}; left in \
         queue {queued_left}, corrupt {corrupt}",
        ids.len()
    );

    assert_eq!(kills.len(), 2, "two kills");
    assert_eq!(
        accepted_set.len(),
        MESSAGES as usize,
        "every message accepted in the end"
    );
    assert!(
        lost.is_empty(),
        "lost {} accepted messages: {lost:?}\n{}",
        lost.len(),
        log_tail(&log)
    );
    assert_eq!(unmarked, 0, "messages at the next hop without an id");
    assert!(
        statuses.keys().all(|s| s == "clean" || s == "sanitized"),
        "every message at the next hop sanitised (not notice-only): {statuses:?}"
    );
    assert_eq!(corrupt, 0, "a kill -9 left a corrupt spool entry");
    assert_eq!(
        queued_left,
        0,
        "the queue did not empty:\n{}",
        log_tail(&log)
    );
    // Both restarts must have served: the relay is still running after the stream.
    assert!(
        relay.exited().is_none(),
        "mugaika serve died:\n{}",
        log_tail(&log)
    );
}

#[test]
fn find_id_reads_the_number_after_the_token() {
    assert_eq!(
        find_id(b"Subject: crash test mugaika-crash-00042\r\n"),
        Some(42)
    );
    assert_eq!(find_id(&message(599)), Some(599));
    assert_eq!(find_id(b"Subject: nothing here\r\n"), None);
    assert_eq!(find_id(b"mugaika-crash-"), None);
    let clean = b"Subject: x\r\nX-Mugaika-Status: sanitized; actions=2\r\n\r\nbody\r\n";
    assert_eq!(status_of(clean).as_deref(), Some("sanitized"));
    assert_eq!(
        status_of(b"X-Mugaika-Status: clean\r\n").as_deref(),
        Some("clean")
    );
    assert_eq!(status_of(b"Subject: x\r\n\r\n"), None);
}
