//! Next hop down, with the real `mugaika serve` binary: messages are accepted while the next hop
//! (the LGWAN-side server, here an SMTP sink inside this test) is unreachable, then while it
//! answers every connection with `421`, and all of them arrive, exactly once each, after it
//! comes back. Retry intervals are one second, so the whole test takes a few seconds; every wait
//! is bounded and the server process is killed when the test ends.
//!
//! This is DESIGN's rule "next hop down: messages wait and retry on the schedule" seen from
//! outside: a client gets its `250` regardless of the next hop (the spool holds the message),
//! `mugaika queue list` shows the messages waiting with the failure that deferred them, and the
//! queue empties once the next hop is back, with no message lost or sent twice.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The token before each message's number, searched for in what the next hop receives.
const TOKEN: &[u8] = b"mugaika-hopdown-";
/// Messages sent while nothing listens at the next hop, while it answers 421, and after.
const WHILE_DOWN: u32 = 20;
const WHILE_421: u32 = 10;
const AFTER: u32 = 5;
/// How long each bad phase lasts at least: several retry intervals of one second.
const DOWN_FOR: Duration = Duration::from_secs(3);
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// The next hop.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// "421 4.3.2" at connect, then close: up, but not taking mail.
    Refuse,
    /// Takes every message.
    Accept,
}

struct SinkState {
    mode: Mode,
    /// Message number → how many times it was received.
    ids: HashMap<u32, usize>,
    /// Messages without an id (must stay 0).
    unmarked: usize,
    /// Connections turned away with 421.
    refused: usize,
    /// Messages whose `X-Mugaika-Status` is not `clean` or `sanitized` (must stay 0: these
    /// well-formed messages are sanitised, never notice-only).
    not_sanitised: Vec<Option<String>>,
}

struct Sink {
    state: Arc<Mutex<SinkState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Sink {
    /// Listens on `addr` (retrying briefly: the port was probed free a moment ago).
    async fn start(addr: SocketAddr, mode: Mode) -> Sink {
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(addr).await {
                Ok(l) => break l,
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "cannot bind the sink on {addr}: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        let state = Arc::new(Mutex::new(SinkState {
            mode,
            ids: HashMap::new(),
            unmarked: 0,
            refused: 0,
            not_sanitised: Vec::new(),
        }));
        let st = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(sink_session(sock, st.clone()));
            }
        });
        Sink { state, task }
    }

    fn set_mode(&self, mode: Mode) {
        self.state.lock().expect("sink state").mode = mode;
    }

    fn ids(&self) -> HashMap<u32, usize> {
        self.state.lock().expect("sink state").ids.clone()
    }

    fn unmarked(&self) -> usize {
        self.state.lock().expect("sink state").unmarked
    }

    fn refused(&self) -> usize {
        self.state.lock().expect("sink state").refused
    }

    fn not_sanitised(&self) -> Vec<Option<String>> {
        self.state.lock().expect("sink state").not_sanitised.clone()
    }
}

/// The number after [`TOKEN`] in `data`.
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

async fn sink_session(sock: TcpStream, st: Arc<Mutex<SinkState>>) {
    let mut r = BufReader::new(sock);
    let refuse = {
        let mut s = st.lock().expect("sink state");
        let refuse = s.mode == Mode::Refuse;
        if refuse {
            s.refused += 1;
        }
        refuse
    };
    if refuse {
        let _ = r
            .get_mut()
            .write_all(b"421 4.3.2 sink busy, try again later\r\n")
            .await;
        return;
    }
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
                if data.len() < 4 << 20 {
                    data.extend_from_slice(&line);
                }
            }
            let mut s = st.lock().expect("sink state");
            match find_id(&data) {
                Some(id) => *s.ids.entry(id).or_default() += 1,
                None => s.unmarked += 1,
            }
            let status = status_of(&data);
            if !matches!(status.as_deref(), Some("clean" | "sanitized")) {
                s.not_sanitised.push(status);
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

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a probe port");
    l.local_addr().expect("probe address")
}

fn write_config(dir: &Path, listen: SocketAddr, hop: SocketAddr) -> PathBuf {
    let path = dir.join("mugaika.toml");
    let text = format!(
        r#"[server]
listen = ["{listen}"]
hostname = "mugaika.hopdown.test"
allowed_clients = ["127.0.0.0/8"]
relay_domains = ["city.example.lg.jp"]
shutdown_timeout = "2s"

[delivery]
next_hop = "{hop}"
tls = "none"
retry = ["1s"]
connect_timeout = "1s"
command_timeout = "10s"

[admin]
enabled = false

[spool]
dir = "{spool}"

[quarantine]
dir = "{quarantine}"
"#,
        spool = dir.join("spool").display(),
        quarantine = dir.join("quarantine").display(),
    );
    fs::write(&path, text).expect("write the configuration");
    path
}

/// A running `mugaika serve`, killed and reaped when dropped.
struct Relay {
    child: Child,
}

impl Relay {
    fn start(config: &Path, log: &Path) -> Relay {
        let log = fs::File::create(log).expect("create the server log");
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

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn log_tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

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
            let _ = c.cmd("QUIT").await;
            return;
        }
        assert!(
            Instant::now() < deadline,
            "mugaika serve did not start on {addr}:\n{}",
            log_tail(log)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `mugaika queue list` on the running server's spool: (messages queued, the listing).
fn queue_list(config: &Path) -> (usize, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mugaika"))
        .args(["queue", "list", "--config"])
        .arg(config)
        .output()
        .expect("run mugaika queue list");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "queue list failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let n = text
        .lines()
        .find_map(|l| l.strip_suffix(" message(s) queued"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count in the queue listing:\n{text}"));
    (n, text)
}

/// The first entry of a listing and its count, for the test output.
fn head(listing: &str) -> String {
    let mut lines: Vec<&str> = listing.lines().take(2).collect();
    lines.push(listing.lines().last().unwrap_or_default());
    lines.join("\n")
}

// ---------------------------------------------------------------------------------------------
// A minimal SMTP client.

struct Smtp {
    r: BufReader<TcpStream>,
    line: Vec<u8>,
}

fn broken(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, what.to_string())
}

impl Smtp {
    async fn open(addr: SocketAddr) -> io::Result<Smtp> {
        let tcp = TcpStream::connect(addr).await?;
        let mut c = Smtp {
            r: BufReader::new(tcp),
            line: Vec::new(),
        };
        if c.reply().await? != 220 {
            return Err(broken("no 220 greeting"));
        }
        if c.cmd("EHLO client.hopdown.test").await? != 250 {
            return Err(broken("EHLO refused"));
        }
        Ok(c)
    }

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

    /// Sends message `n`; the reply code to the final dot.
    async fn send(&mut self, n: u32) -> io::Result<u16> {
        assert_eq!(self.cmd("MAIL FROM:<sender@internet.example>").await?, 250);
        assert_eq!(self.cmd("RCPT TO:<user@city.example.lg.jp>").await?, 250);
        assert_eq!(self.cmd("DATA").await?, 354);
        let id = format!("{}{n:04}", String::from_utf8_lossy(TOKEN));
        let data = format!(
            "From: sender@internet.example\r\nTo: user@city.example.lg.jp\r\n\
             Subject: next hop down {id}\r\nMessage-ID: <{id}@internet.example>\r\n\
             MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: 8bit\r\n\r\n{id}\r\n\
             次の中継先が停止している間に受け付けたメールです。\r\n.\r\n"
        );
        self.r.get_mut().write_all(data.as_bytes()).await?;
        self.reply().await
    }
}

async fn send_all(addr: SocketAddr, numbers: std::ops::Range<u32>) {
    let mut c = Smtp::open(addr).await.expect("connect to mugaika");
    for n in numbers {
        let code = c.send(n).await.expect("SMTP transaction");
        assert_eq!(code, 250, "message {n} not accepted");
    }
    let _ = c.cmd("QUIT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_accepted_while_the_next_hop_is_down_arrive_once_it_returns() {
    let dir = tempfile::tempdir().expect("temp dir");
    let hop = free_addr();
    let listen = free_addr();
    let config = write_config(dir.path(), listen, hop);
    let log = dir.path().join("server.log");
    let mut relay = Relay::start(&config, &log);
    wait_ready(&mut relay, listen, &log).await;

    // Phase 1: nothing listens at the next hop (connection refused). Every message still gets
    // its 250, and waits.
    let t0 = Instant::now();
    send_all(listen, 0..WHILE_DOWN).await;
    tokio::time::sleep(DOWN_FOR.saturating_sub(t0.elapsed())).await;
    let (queued, listing) = queue_list(&config);
    println!("next hop down for {:?}: {}", t0.elapsed(), head(&listing));
    assert_eq!(queued, WHILE_DOWN as usize, "{listing}");
    assert!(
        listing.contains("pending") && !listing.contains("attempts 0"),
        "every message tried and deferred:\n{listing}"
    );

    // Phase 2: the next hop is up but turns every connection away with 421.
    let sink = Sink::start(hop, Mode::Refuse).await;
    let t1 = Instant::now();
    send_all(listen, WHILE_DOWN..WHILE_DOWN + WHILE_421).await;
    tokio::time::sleep(DOWN_FOR.saturating_sub(t1.elapsed())).await;
    assert!(
        sink.refused() > 0,
        "no retry reached the next hop while it answered 421"
    );
    assert!(
        sink.ids().is_empty(),
        "delivered while the next hop refused"
    );
    let (queued, listing) = queue_list(&config);
    println!(
        "next hop answering 421 for {:?}: {}",
        t1.elapsed(),
        head(&listing)
    );
    assert_eq!(queued, (WHILE_DOWN + WHILE_421) as usize, "{listing}");
    assert!(listing.contains("421"), "the 421 is recorded:\n{listing}");

    // Phase 3: the next hop takes mail again; a few more messages come in meanwhile.
    sink.set_mode(Mode::Accept);
    let t2 = Instant::now();
    let total = WHILE_DOWN + WHILE_421 + AFTER;
    send_all(listen, WHILE_DOWN + WHILE_421..total).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ids = sink.ids();
        if (0..total).all(|n| ids.contains_key(&n)) && queue_list(&config).0 == 0 {
            break;
        }
        if let Some(status) = relay.exited() {
            panic!("mugaika serve exited ({status}):\n{}", log_tail(&log));
        }
        assert!(
            Instant::now() < deadline,
            "not everything arrived after the next hop returned: got {:?}, queue:\n{}\n{}",
            ids,
            queue_list(&config).1,
            log_tail(&log)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drained = t2.elapsed();
    // Longer than one more retry interval: nothing arrives a second time.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let ids = sink.ids();
    let duplicates: Vec<(u32, usize)> = ids
        .iter()
        .filter(|(_, &c)| c != 1)
        .map(|(&n, &c)| (n, c))
        .collect();
    println!(
        "next hop back: {total} messages delivered in {drained:?}, {} connections refused \
         with 421 before, duplicates {duplicates:?}",
        sink.refused()
    );
    assert_eq!(ids.len(), total as usize, "{ids:?}");
    assert!(
        duplicates.is_empty(),
        "delivered more than once: {duplicates:?}"
    );
    assert_eq!(sink.unmarked(), 0, "messages without an id");
    assert_eq!(
        sink.not_sanitised(),
        Vec::<Option<String>>::new(),
        "X-Mugaika-Status"
    );
    assert_eq!(queue_list(&config).0, 0);
    assert!(
        relay.exited().is_none(),
        "mugaika serve died:\n{}",
        log_tail(&log)
    );
}
