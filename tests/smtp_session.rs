//! In-process SMTP session tests: a real `smtp::server::Server` driven over `tokio::io::duplex`
//! (the peer address is chosen by the test, so access control can be exercised without real
//! networks), with a store and a sanitiser whose failures the tests control. Every command,
//! extension and refusal of the server, STARTTLS with a generated certificate, limits,
//! timeouts, shutdown, and chasquid's dialogues from the shared corpora.

use std::fs::{self, File};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mugaika::config::{ByteSize, Config, Dur, OnError};
use mugaika::pipeline::{Context, Report, SanitizeError};
use mugaika::smtp::server::{Accepted, Entry, Sanitize, Server, Store};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

const T: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// A store on a temporary directory whose failures the test controls.

struct Msg {
    acc: Accepted,
    original: Vec<u8>,
    clean: Vec<u8>,
}

#[derive(Default)]
struct Shared {
    committed: Mutex<Vec<Msg>>,
    fail_create: AtomicBool,
    fail_commit: AtomicBool,
}

struct MemStore {
    dir: tempfile::TempDir,
    next: AtomicU64,
    shared: Arc<Shared>,
}

impl MemStore {
    fn new() -> MemStore {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("tmp")).unwrap();
        MemStore {
            dir,
            next: AtomicU64::new(1),
            shared: Arc::default(),
        }
    }

    fn count(&self) -> usize {
        self.shared.committed.lock().unwrap().len()
    }

    fn with<R>(&self, i: usize, f: impl FnOnce(&Msg) -> R) -> R {
        f(&self.shared.committed.lock().unwrap()[i])
    }

    /// Files left in tmp/ (aborted entries and scratch files must all be gone).
    fn leftovers(&self) -> Vec<String> {
        fs::read_dir(self.dir.path().join("tmp"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }
}

struct MemEntry {
    id: String,
    dir: PathBuf,
    original: PathBuf,
    clean: PathBuf,
    file: File,
    shared: Arc<Shared>,
    done: bool,
}

impl Store for MemStore {
    type Entry = MemEntry;
    fn create(&self) -> std::io::Result<MemEntry> {
        if self.shared.fail_create.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("disk on fire"));
        }
        let id = format!("ID{:04}", self.next.fetch_add(1, Ordering::SeqCst));
        let dir = self.dir.path().join("tmp").join(&id);
        fs::create_dir(&dir)?;
        let original = dir.join("original");
        Ok(MemEntry {
            file: File::create(&original)?,
            clean: dir.join("clean"),
            original,
            dir,
            id,
            shared: self.shared.clone(),
            done: false,
        })
    }
}

impl Entry for MemEntry {
    fn id(&self) -> &str {
        &self.id
    }
    fn original_path(&self) -> &Path {
        &self.original
    }
    fn clean_path(&self) -> &Path {
        &self.clean
    }
    fn group_clean_path(&self, group: usize) -> PathBuf {
        match group {
            0 => self.clean.clone(),
            n => self.dir.join(format!("clean.{n}")),
        }
    }
    fn scratch_path(&self, suffix: &str) -> PathBuf {
        self.dir
            .parent()
            .unwrap()
            .join(format!("{}.{suffix}", self.id))
    }
    fn write_original(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.file.write_all(data)
    }
    fn commit(mut self, acc: &Accepted) -> std::io::Result<()> {
        if self.shared.fail_commit.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("fsync failed"));
        }
        let msg = Msg {
            acc: acc.clone(),
            original: fs::read(&self.original)?,
            clean: fs::read(&self.clean)?,
        };
        self.shared.committed.lock().unwrap().push(msg);
        fs::remove_dir_all(&self.dir)?;
        self.done = true;
        Ok(())
    }
}

impl Drop for MemEntry {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A sanitiser that copies, refuses, panics or hangs on demand.

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    Copy,
    Reject,
    Panic,
    Fail,
    Hang,
}

struct TestSanitizer {
    mode: Mutex<Mode>,
    notice_fails: AtomicBool,
}

impl TestSanitizer {
    fn new() -> Arc<TestSanitizer> {
        Arc::new(TestSanitizer {
            mode: Mutex::new(Mode::Copy),
            notice_fails: AtomicBool::new(false),
        })
    }
    fn set(&self, m: Mode) {
        *self.mode.lock().unwrap() = m;
    }
}

impl Sanitize for TestSanitizer {
    fn sanitize(
        &self,
        original: &Path,
        ctx: &Context,
        out: &Path,
    ) -> Result<Report, SanitizeError> {
        let mode = *self.mode.lock().unwrap();
        match mode {
            Mode::Copy => {}
            Mode::Reject => return Err(SanitizeError::Rejected("no header block".into())),
            Mode::Panic => panic!("converter exploded"),
            Mode::Fail => return Err(SanitizeError::Internal("verifier violation".into())),
            Mode::Hang => {
                // Writes something, then overruns the deadline, then finishes "successfully":
                // none of it may reach the entry.
                fs::write(out, b"LATE").unwrap();
                std::thread::sleep(Duration::from_millis(1500));
                return Ok(Report::default());
            }
        }
        let mut data =
            format!("Received: {}\r\n", ctx.received.as_deref().unwrap_or("")).into_bytes();
        data.extend(fs::read(original).unwrap());
        fs::write(out, data).unwrap();
        Ok(Report {
            status: "clean".into(),
            ..Report::default()
        })
    }

    fn notice_only(
        &self,
        _original: &Path,
        ctx: &Context,
        reason: &str,
        out: &Path,
    ) -> Result<Report, SanitizeError> {
        if self.notice_fails.load(Ordering::SeqCst) {
            return Err(SanitizeError::Internal("cannot even write a notice".into()));
        }
        let id = ctx.quarantine_id.as_deref().unwrap_or("");
        fs::write(out, format!("NOTICE {id}: {reason}\r\n")).unwrap();
        Ok(Report {
            status: "notice-only".into(),
            ..Report::default()
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Harness.

fn cfg() -> Config {
    let mut c = Config::default();
    c.server.hostname = "mx.test.example".into();
    c.server.relay_domains = vec!["city.example.lg.jp".into(), ".sub.example.jp".into()];
    c.server.max_message_size = ByteSize(64 << 10);
    c.server.command_timeout = Dur(Duration::from_secs(30));
    c.server.data_timeout = Dur(Duration::from_secs(30));
    c.server.shutdown_timeout = Dur(Duration::from_secs(5));
    c.sanitize.timeout = Dur(Duration::from_millis(700));
    c
}

struct H {
    server: Server<MemStore>,
    store: Arc<MemStore>,
    sanitizer: Arc<TestSanitizer>,
    queued: mpsc::UnboundedReceiver<String>,
}

fn harness(c: Config) -> H {
    let store = Arc::new(MemStore::new());
    let sanitizer = TestSanitizer::new();
    let (tx, rx) = mpsc::unbounded_channel();
    let server = Server::new(Arc::new(c), store.clone(), sanitizer.clone(), Some(tx)).unwrap();
    H {
        server,
        store,
        sanitizer,
        queued: rx,
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<X: AsyncRead + AsyncWrite + Unpin + Send> Io for X {}

struct Client {
    io: Box<dyn Io>,
    buf: Vec<u8>,
}

#[derive(Debug)]
struct R {
    code: u16,
    lines: Vec<String>,
}

impl R {
    fn text(&self) -> String {
        self.lines.join("\n")
    }
}

impl H {
    fn connect_from(&self, peer: &str) -> (Client, tokio::task::JoinHandle<()>) {
        let (a, b) = tokio::io::duplex(64 << 10);
        let server = self.server.clone();
        let peer: SocketAddr = peer.parse().unwrap();
        let task = tokio::spawn(async move { server.handle_connection(b, peer).await });
        (
            Client {
                io: Box::new(a),
                buf: Vec::new(),
            },
            task,
        )
    }

    /// Connected, greeted with 220.
    async fn connect(&self) -> Client {
        let (mut c, _) = self.connect_from("127.0.0.1:40000");
        let r = c.reply().await;
        assert_eq!(r.code, 220, "{r:?}");
        c
    }

    async fn ehlo(&self) -> Client {
        let mut c = self.connect().await;
        c.ok("EHLO client.example", 250).await;
        c
    }
}

impl Client {
    /// Sends without failing the test when the server has already closed the connection.
    async fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match tokio::time::timeout(T, async {
            self.io.write_all(bytes).await?;
            self.io.flush().await
        })
        .await
        {
            Ok(r) => r,
            Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
        }
    }

    async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        tokio::time::timeout(T, async {
            self.io.write_all(bytes.as_ref()).await?;
            self.io.flush().await
        })
        .await
        .expect("send timed out")
        .expect("send failed");
    }

    /// One line without CRLF; None at EOF.
    async fn line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return Some(line);
            }
            let mut tmp = [0u8; 4096];
            let n = tokio::time::timeout(T, self.io.read(&mut tmp))
                .await
                .expect("no reply within 10 s")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&tmp[..n]);
        }
    }

    async fn try_reply(&mut self) -> Option<R> {
        let mut lines = Vec::new();
        loop {
            let l = self.line().await?;
            assert!(l.len() >= 4, "short reply line {l:?}");
            let code: u16 = l[..3].parse().expect("reply code");
            let last = l.as_bytes()[3] == b' ';
            lines.push(l[4..].to_string());
            if last {
                return Some(R { code, lines });
            }
        }
    }

    async fn reply(&mut self) -> R {
        self.try_reply()
            .await
            .expect("connection closed instead of a reply")
    }

    async fn cmd(&mut self, line: &str) -> R {
        self.send(format!("{line}\r\n")).await;
        self.reply().await
    }

    /// Sends `line` and asserts the reply code; returns the text.
    async fn ok(&mut self, line: &str, code: u16) -> String {
        let r = self.cmd(line).await;
        assert_eq!(r.code, code, "{line:?} -> {r:?}");
        r.text()
    }

    /// The server closes the connection (after any remaining replies are read).
    async fn closed(&mut self) {
        assert!(
            self.try_reply().await.is_none(),
            "expected the connection to close"
        );
    }

    async fn mail(&mut self, rcpt: &str) {
        self.ok("MAIL FROM:<sender@internet.example>", 250).await;
        self.ok(&format!("RCPT TO:<{rcpt}>"), 250).await;
    }
}

const MSG: &str = "From: a@internet.example\r\nSubject: hello\r\n\r\nbody\r\n";

async fn wait_until(mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("condition not reached in 4 s");
}

// ---------------------------------------------------------------------------------------------
// Greeting, EHLO, HELO, simple commands.

#[tokio::test]
async fn greeting_and_ehlo_keywords() {
    let h = harness(cfg());
    let (mut c, _) = h.connect_from("127.0.0.1:1");
    let r = c.reply().await;
    assert_eq!(r.code, 220);
    assert!(r.text().starts_with("mx.test.example ESMTP"), "{r:?}");
    let r = c.cmd("EHLO client.example").await;
    assert_eq!(r.code, 250);
    assert!(r.lines[0].starts_with("mx.test.example"));
    for kw in [
        "PIPELINING",
        "SIZE 65536",
        "8BITMIME",
        "ENHANCEDSTATUSCODES",
        "SMTPUTF8",
        "CHUNKING",
    ] {
        assert!(r.lines.iter().any(|l| l == kw), "{kw} missing from {r:?}");
    }
    assert!(
        !r.lines.iter().any(|l| l == "STARTTLS"),
        "STARTTLS offered without a certificate"
    );
    assert_eq!(c.ok("STARTTLS", 502).await, "5.5.1 STARTTLS not available");
    c.ok("EHLO", 501).await;
    c.ok("HELO", 501).await;
    let t = c.ok("HELO other.example", 250).await;
    assert!(t.contains("other.example"), "{t}");
    // After HELO, ESMTP parameters are refused.
    c.ok("MAIL FROM:<a@internet.example> SIZE=10", 555).await;
    c.ok("MAIL FROM:<a@internet.example>", 250).await;
}

#[tokio::test]
async fn noop_vrfy_help_rset_quit_unknown() {
    let h = harness(cfg());
    let mut c = h.ehlo().await;
    assert!(c.ok("NOOP", 250).await.starts_with("2.0.0"));
    assert!(c.ok("VRFY postmaster", 252).await.starts_with("2.5.0"));
    c.ok("VRFY", 501).await;
    let help = c.cmd("HELP").await;
    assert_eq!(help.code, 214);
    assert!(help.text().contains("STARTTLS"));
    c.ok("EXPN staff", 502).await;
    c.ok("AUTH PLAIN", 502).await;
    assert!(c.ok("WHATISTHIS", 500).await.starts_with("5.5.1"));
    c.ok("DATA please", 501).await;
    // RSET ends the transaction.
    c.ok("MAIL FROM:<a@internet.example>", 250).await;
    c.ok("RSET", 250).await;
    c.ok("RCPT TO:<user@city.example.lg.jp>", 503).await;
    assert!(c.ok("QUIT", 221).await.starts_with("2.0.0"));
    c.closed().await;
}

#[tokio::test]
async fn http_on_the_smtp_port_is_refused_and_closed() {
    let h = harness(cfg());
    let mut c = h.connect().await;
    c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let r = c.reply().await;
    assert_eq!(r.code, 502);
    c.closed().await;
}

// ---------------------------------------------------------------------------------------------
// MAIL / RCPT syntax and sequence.

#[tokio::test]
async fn mail_and_rcpt_syntax_errors_are_501() {
    let h = harness(cfg());
    let mut c = h.ehlo().await;
    assert!(c.ok("MAIL FROM:<pepe>", 501).await.starts_with("5.1.7"));
    c.ok("MAIL FROM:", 501).await;
    c.ok("MAIL FROM:<a@xn--->", 501).await;
    c.ok("MAIL TO:<a@b.example>", 501).await;
    c.ok("MAIL FROM:<a@b.example> SIZE=big", 501).await;
    c.ok("MAIL FROM:<a@b.example> RET=HDRS", 555).await;
    c.ok("MAIL FROM:<a@b.example> BODY=BINARYMIME", 555).await;
    c.ok("MAIL FROM:<> BODY=8BITMIME", 250).await;
    assert!(c.ok("RCPT TO:<pepe>", 501).await.starts_with("5.1.3"));
    c.ok("RCPT TO:<>", 501).await;
    c.ok("RCPT TO:<user@city.example.lg.jp> NOTIFY=NEVER", 555)
        .await;
    c.ok("RCPT TO: user@city.example.lg.jp", 250).await;
}

#[tokio::test]
async fn bad_sequences_are_503() {
    let h = harness(cfg());
    let mut c = h.connect().await;
    assert!(c
        .ok("MAIL FROM:<a@b.example>", 503)
        .await
        .starts_with("5.5.1"));
    c.ok("DATA", 503).await;
    c.ok("HELO client.example", 250).await;
    c.ok("RCPT TO:<user@city.example.lg.jp>", 503).await;
    c.ok("DATA", 503).await;
    c.ok("MAIL FROM:<a@b.example>", 250).await;
    c.ok("MAIL FROM:<a@b.example>", 503).await;
    // MAIL accepted but no recipient: no valid recipients.
    assert!(c.ok("DATA", 554).await.starts_with("5.5.1"));
    // EHLO resets the transaction.
    c.ok("EHLO client.example", 250).await;
    c.ok("RCPT TO:<user@city.example.lg.jp>", 503).await;
}

#[tokio::test]
async fn relay_domains_are_enforced() {
    let h = harness(cfg());
    let mut c = h.ehlo().await;
    c.ok("MAIL FROM:<a@internet.example>", 250).await;
    assert_eq!(
        c.ok("RCPT TO:<victim@elsewhere.example>", 550).await,
        "5.7.1 relaying denied"
    );
    c.ok("RCPT TO:<x@city.example.lg.jp.evil.example>", 550)
        .await;
    c.ok("RCPT TO:<x@evilcity.example.lg.jp>", 550).await;
    c.ok("RCPT TO:<x@[127.0.0.1]>", 550).await;
    c.ok("RCPT TO:<x@City.Example.LG.JP>", 250).await;
    // ".sub.example.jp" admits its subdomains, not itself.
    c.ok("RCPT TO:<x@a.sub.example.jp>", 250).await;
    c.ok("RCPT TO:<x@sub.example.jp>", 550).await;
    c.ok("RCPT TO:<x@asub.example.jp>", 550).await;
    // Without MAIL, nothing.
    c.ok("RSET", 250).await;
    c.ok("RCPT TO:<x@city.example.lg.jp>", 503).await;
}

#[tokio::test]
async fn too_many_recipients_is_452() {
    let mut conf = cfg();
    conf.server.max_recipients = 2;
    let h = harness(conf);
    let mut c = h.ehlo().await;
    c.ok("MAIL FROM:<a@internet.example>", 250).await;
    c.ok("RCPT TO:<a@city.example.lg.jp>", 250).await;
    c.ok("RCPT TO:<b@city.example.lg.jp>", 250).await;
    // A duplicate is accepted but not counted twice.
    c.ok("RCPT TO:<a@CITY.example.lg.jp>", 250).await;
    assert_eq!(
        c.ok("RCPT TO:<c@city.example.lg.jp>", 452).await,
        "4.5.3 too many recipients"
    );
    c.ok("DATA", 354).await;
    c.send(format!("{MSG}.\r\n")).await;
    assert_eq!(c.reply().await.code, 250);
    h.store.with(0, |m| {
        assert_eq!(
            m.acc.recipients,
            ["a@city.example.lg.jp", "b@city.example.lg.jp"]
        )
    });
}

#[tokio::test]
async fn smtputf8_addresses() {
    let h = harness(cfg());
    let mut c = h.ehlo().await;
    assert!(c
        .ok("MAIL FROM:<太郎@例え.jp>", 553)
        .await
        .starts_with("5.6.7"));
    c.ok("MAIL FROM:<太郎@例え.jp> SMTPUTF8", 250).await;
    c.ok("RCPT TO:<花子@city.example.lg.jp>", 250).await;
    c.ok("RSET", 250).await;
    c.ok("MAIL FROM:<a@internet.example>", 250).await;
    c.ok("RCPT TO:<花子@city.example.lg.jp>", 553).await;
    // Japanese mobile addresses with RFC-violating dots still get through.
    c.ok("RCPT TO:<taro..x.@city.example.lg.jp>", 250).await;
}

// ---------------------------------------------------------------------------------------------
// DATA.

#[tokio::test]
async fn data_is_unstuffed_sanitised_committed_and_queued() {
    let mut h = harness(cfg());
    let mut c = h.ehlo().await;
    c.mail("user@city.example.lg.jp").await;
    assert!(c.ok("DATA", 354).await.contains("<CR><LF>.<CR><LF>"));
    c.send("Subject: t\r\n\r\n..leading dot\r\n.\r\n").await;
    let r = c.reply().await;
    assert_eq!(r.code, 250, "{r:?}");
    let id = r.text().rsplit(' ').next().unwrap().to_string();
    assert!(r.text().starts_with("2.0.0 Ok: queued as ID"), "{r:?}");
    assert_eq!(h.queued.recv().await.unwrap(), id);
    h.store.with(0, |m| {
        assert_eq!(m.original, b"Subject: t\r\n\r\n.leading dot\r\n");
        assert_eq!(m.acc.id, id);
        assert_eq!(m.acc.sender, "sender@internet.example");
        assert_eq!(m.acc.recipients, ["user@city.example.lg.jp"]);
        assert_eq!(m.acc.client.to_string(), "127.0.0.1");
        assert_eq!(m.acc.helo, "client.example");
        assert_eq!(m.acc.size, 28);
        assert!(!m.acc.tls);
        let clean = String::from_utf8_lossy(&m.clean);
        let received = clean.lines().next().unwrap();
        assert!(received.starts_with("Received: from client.example ([127.0.0.1]) by mx.test.example (mugaika) with ESMTP id "), "{received}");
        assert!(received.contains(&format!("id {id} for <user@city.example.lg.jp>; ")), "{received}");
    });
    // A second transaction in the same session; null sender, two recipients.
    c.ok("MAIL FROM:<>", 250).await;
    c.ok("RCPT TO:<a@city.example.lg.jp>", 250).await;
    c.ok("RCPT TO:<b@city.example.lg.jp>", 250).await;
    c.ok("DATA", 354).await;
    c.send(format!("{MSG}.\r\n")).await;
    assert_eq!(c.reply().await.code, 250);
    assert_eq!(h.store.count(), 2);
    h.store.with(1, |m| {
        assert_eq!(m.acc.sender, "");
        let clean = String::from_utf8_lossy(&m.clean);
        assert!(!clean.lines().next().unwrap().contains(" for <"));
    });
    c.ok("QUIT", 221).await;
    wait_until(|| h.store.leftovers().is_empty()).await;
}

#[tokio::test]
async fn data_with_bare_lf_is_refused_and_nothing_is_smuggled() {
    let h = harness(cfg());
    let mut c = h.ehlo().await;
    c.mail("user@city.example.lg.jp").await;
    c.ok("DATA", 354).await;
    c.send("Subject: x\r\n\r\nbody\n.\nMAIL FROM:<admin@city.example.lg.jp>\r\nRCPT TO:<user@city.example.lg.jp>\r\nDATA\r\n").await;
    c.send("smuggled\r\n.\r\n").await;
    let r = c.reply().await;
    assert_eq!(r.code, 550, "{r:?}");
    assert!(r.text().starts_with("5.6.0"));
    // The session goes on, in a clean state: no transaction is open.
    c.ok("RCPT TO:<user@city.example.lg.jp>", 503).await;
    c.ok("NOOP", 250).await;
    // Bare CR too.
    c.mail("user@city.example.lg.jp").await;
    c.ok("DATA", 354).await;
    c.send("a\rb\r\n.\r\n").await;
    assert_eq!(c.reply().await.code, 550);
    assert_eq!(h.store.count(), 0);
    wait_until(|| h.store.leftovers().is_empty()).await;
}

#[tokio::test]
async fn size_limit_mail_param_and_counted_data() {
    let h = harness(cfg());
    let mut c = h.ehlo().await;
    assert_eq!(
        c.ok("MAIL FROM:<a@internet.example> SIZE=65537", 552).await,
        "5.3.4 message size exceeds fixed maximum message size"
    );
    c.ok("MAIL FROM:<a@internet.example> SIZE=65536", 250).await;
    c.ok("RCPT TO:<u@city.example.lg.jp>", 250).await;
    c.ok("DATA", 354).await;
    let line = format!("{}\r\n", "x".repeat(998));
    for _ in 0..70 {
        c.send(&line).await;
    }
    // Commands inside the oversized message are content, not commands.
    c.send("QUIT\r\n.\r\n").await;
    let r = c.reply().await;
    assert_eq!(r.code, 552, "{r:?}");
    c.ok("NOOP", 250).await;
    // Exactly at the limit is fine.
    c.mail("u@city.example.lg.jp").await;
    c.ok("DATA", 354).await;
    let body = "y".repeat(65536 - 2 - 33) + "\r\n";
    let head = "Subject: exactly at the limit\r\n\r\n";
    assert_eq!(head.len(), 33);
    c.send(format!("{head}{body}.\r\n")).await;
    assert_eq!(c.reply().await.code, 250);
    h.store.with(0, |m| assert_eq!(m.original.len(), 65536));
}

#[tokio::test]
async fn pipelined_commands_are_answered_in_order() {
    let h = harness(cfg());
    let mut c = h.connect().await;
    c.send(format!(
        "EHLO client.example\r\nMAIL FROM:<a@internet.example>\r\nRCPT TO:<x@elsewhere.example>\r\n\
         RCPT TO:<u@city.example.lg.jp>\r\nDATA\r\n{MSG}.\r\nNOOP\r\nQUIT\r\n"
    ))
    .await;
    let codes: Vec<u16> = {
        let mut v = Vec::new();
        while let Some(r) = c.try_reply().await {
            v.push(r.code);
        }
        v
    };
    assert_eq!(codes, [250, 250, 550, 250, 354, 250, 250, 221]);
    assert_eq!(h.store.count(), 1);
}

#[tokio::test]
async fn long_and_bare_lf_command_lines() {
    let h = harness(cfg());
    let mut c = h.ehlo().await;
    let long = format!("NOOP {}", "a".repeat(5000));
    assert_eq!(c.ok(&long, 500).await, "5.5.2 line too long");
    // One reply for the long line, and the next line is a command again.
    c.send(format!("NOOP {}\r\nNOOP\r\n", "b".repeat(70_000)))
        .await;
    assert_eq!(c.reply().await.code, 500);
    assert_eq!(c.reply().await.code, 250);
    c.send("NOOP\n").await;
    assert_eq!(c.reply().await.code, 500);
    c.send("NOOP\rQUIT\r\n").await;
    assert_eq!(c.reply().await.code, 500);
    c.ok("NOOP", 250).await;
}

#[tokio::test]
async fn too_many_errors_closes() {
    let h = harness(cfg());
    let mut c = h.ehlo().await;
    for _ in 0..19 {
        c.ok("BOGUS", 500).await;
    }
    c.send("BOGUS\r\n").await;
    assert_eq!(c.reply().await.code, 500);
    assert_eq!(c.reply().await.code, 421);
    c.closed().await;
}

// ---------------------------------------------------------------------------------------------
// BDAT.

#[tokio::test]
async fn bdat_chunks() {
    let h = harness(cfg());
    let mut c = h.ehlo().await;
    // Without a transaction the chunk is read and refused; its bytes are not commands.
    c.send("BDAT 6\r\nQUIT\r\n").await;
    assert_eq!(c.reply().await.code, 503);
    c.ok("NOOP", 250).await;
    c.mail("u@city.example.lg.jp").await;
    let part1 = "Subject: chunked\r\n\r\nfirst ";
    c.send(format!("BDAT {}\r\n{part1}", part1.len())).await;
    let r = c.reply().await;
    assert_eq!(
        (r.code, r.text()),
        (250, format!("2.0.0 {} octets received", part1.len()))
    );
    c.ok("DATA", 503).await;
    c.ok("RCPT TO:<v@city.example.lg.jp>", 503).await;
    // A CRLF split between chunks is fine; ".\r\n" means nothing in BDAT.
    c.send("BDAT 7\r\nsecond\r").await;
    assert_eq!(c.reply().await.code, 250);
    c.send("BDAT 4 LAST\r\n\n.\r\n").await;
    let r = c.reply().await;
    assert_eq!(r.code, 250, "{r:?}");
    assert!(r.text().contains("queued as"));
    h.store.with(0, |m| {
        assert_eq!(m.original, b"Subject: chunked\r\n\r\nfirst second\r\n.\r\n")
    });
    // BDAT 0 LAST on its own is an empty message, refused by nothing here.
    c.mail("u@city.example.lg.jp").await;
    c.ok("BDAT 0 LAST", 250).await;
    // Bare LF in a chunk: refused at once, and the transaction ends at LAST.
    c.mail("u@city.example.lg.jp").await;
    c.send("BDAT 3\r\na\nb").await;
    assert_eq!(c.reply().await.code, 550);
    c.send("BDAT 2 LAST\r\n\r\n").await;
    assert_eq!(c.reply().await.code, 550);
    c.ok("RCPT TO:<u@city.example.lg.jp>", 503).await;
    // Over the size limit.
    c.mail("u@city.example.lg.jp").await;
    let big = "z".repeat(40_000);
    c.send(format!("BDAT 40000\r\n{big}")).await;
    assert_eq!(c.reply().await.code, 250);
    c.send(format!("BDAT 40000 LAST\r\n{big}")).await;
    assert_eq!(c.reply().await.code, 552);
    assert_eq!(h.store.count(), 2);
    // An unreadable size ends the session (the chunk cannot be skipped).
    c.send("BDAT lots\r\n").await;
    assert_eq!(c.reply().await.code, 501);
    c.closed().await;
    wait_until(|| h.store.leftovers().is_empty()).await;
}

#[tokio::test]
async fn bdat_requires_ehlo() {
    let h = harness(cfg());
    let mut c = h.connect().await;
    c.ok("HELO client.example", 250).await;
    c.mail("u@city.example.lg.jp").await;
    c.send("BDAT 4 LAST\r\nQUIT").await;
    assert_eq!(c.reply().await.code, 503);
    c.ok("NOOP", 250).await;
}

// ---------------------------------------------------------------------------------------------
// Sanitiser outcomes, store failures.

async fn one_message(h: &H) -> R {
    let mut c = h.ehlo().await;
    c.mail("u@city.example.lg.jp").await;
    c.ok("DATA", 354).await;
    c.send(format!("{MSG}.\r\n")).await;
    let r = c.reply().await;
    c.ok("NOOP", 250).await;
    r
}

#[tokio::test]
async fn sanitiser_rejection_is_554() {
    let h = harness(cfg());
    h.sanitizer.set(Mode::Reject);
    let r = one_message(&h).await;
    assert_eq!(
        (r.code, r.text().as_str()),
        (554, "5.6.0 message refused: no header block")
    );
    assert_eq!(h.store.count(), 0);
    wait_until(|| h.store.leftovers().is_empty()).await;
}

#[tokio::test]
async fn on_error_reject() {
    let mut conf = cfg();
    conf.sanitize.on_error = OnError::Reject;
    let h = harness(conf);
    for mode in [Mode::Panic, Mode::Fail, Mode::Hang] {
        h.sanitizer.set(mode);
        let r = one_message(&h).await;
        assert_eq!(r.code, 554, "{mode:?}: {r:?}");
        assert!(r.text().starts_with("5.6.0"));
    }
    assert_eq!(h.store.count(), 0);
    // The abandoned (hung) sanitiser cleans up its scratch file when it finally ends.
    wait_until(|| h.store.leftovers().is_empty()).await;
}

#[tokio::test]
async fn on_error_quarantine_delivers_a_notice() {
    let h = harness(cfg());
    for (i, mode) in [Mode::Panic, Mode::Fail, Mode::Hang]
        .into_iter()
        .enumerate()
    {
        h.sanitizer.set(mode);
        let r = one_message(&h).await;
        assert_eq!(r.code, 250, "{mode:?}: {r:?}");
        h.store.with(i, |m| {
            let clean = String::from_utf8_lossy(&m.clean);
            assert!(
                clean.starts_with(&format!("NOTICE {}: ", m.acc.id)),
                "{mode:?}: {clean}"
            );
            assert_eq!(m.original, MSG.as_bytes());
            assert_eq!(m.acc.quarantine_id.as_deref(), Some(m.acc.id.as_str()));
        });
    }
    h.store.with(0, |m| {
        assert!(String::from_utf8_lossy(&m.clean).contains("panicked: converter exploded"))
    });
    h.store.with(2, |m| {
        assert!(String::from_utf8_lossy(&m.clean).contains("timed out"))
    });
    // The late writer of the hung sanitiser never touched the committed message.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    h.store.with(2, |m| {
        assert!(!String::from_utf8_lossy(&m.clean).contains("LATE"))
    });
    wait_until(|| h.store.leftovers().is_empty()).await;
    // When even the notice fails, nothing is kept and the client retries later.
    h.sanitizer.notice_fails.store(true, Ordering::SeqCst);
    h.sanitizer.set(Mode::Fail);
    let r = one_message(&h).await;
    assert_eq!(
        (r.code, r.text().as_str()),
        (451, "4.3.0 local error, please try again later")
    );
    assert_eq!(h.store.count(), 3);
}

#[tokio::test]
async fn spool_failures_are_451() {
    let h = harness(cfg());
    h.store.shared.fail_create.store(true, Ordering::SeqCst);
    let mut c = h.ehlo().await;
    c.mail("u@city.example.lg.jp").await;
    assert!(c.ok("DATA", 451).await.starts_with("4.3.0"));
    // The transaction is still open; the client may retry DATA.
    h.store.shared.fail_create.store(false, Ordering::SeqCst);
    h.store.shared.fail_commit.store(true, Ordering::SeqCst);
    c.ok("DATA", 354).await;
    c.send(format!("{MSG}.\r\n")).await;
    assert_eq!(c.reply().await.code, 451);
    assert_eq!(h.store.count(), 0);
    wait_until(|| h.store.leftovers().is_empty()).await;
}

#[tokio::test]
async fn the_real_spool_commits_envelope_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(mugaika::spool::Spool::open(dir.path()).unwrap());
    let sanitizer = TestSanitizer::new();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let server = Server::new(Arc::new(cfg()), spool.clone(), sanitizer, Some(tx)).unwrap();
    let (a, b) = tokio::io::duplex(1 << 16);
    let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
    tokio::spawn(async move { server.handle_connection(b, peer).await });
    let mut c = Client {
        io: Box::new(a),
        buf: Vec::new(),
    };
    assert_eq!(c.reply().await.code, 220);
    c.ok("EHLO client.example", 250).await;
    c.mail("u@city.example.lg.jp").await;
    c.ok("DATA", 354).await;
    c.send(format!("{MSG}.\r\n")).await;
    let r = c.reply().await;
    assert_eq!(r.code, 250, "{r:?}");
    let id = rx.recv().await.unwrap();
    assert!(r.text().ends_with(&id));
    assert_eq!(spool.list().unwrap(), vec![id.to_string()]);
    let env = spool.load(&id).unwrap();
    assert_eq!(env.sender, "sender@internet.example");
    assert_eq!(env.recipients.len(), 1);
    assert_eq!(env.recipients[0].addr, "u@city.example.lg.jp");
    assert_eq!(env.client, "127.0.0.1");
    assert_eq!(env.helo, "client.example");
    assert_eq!(fs::read(spool.original_path(&id)).unwrap(), MSG.as_bytes());
    assert!(fs::read_to_string(spool.clean_path(&id))
        .unwrap()
        .starts_with("Received: from client.example"));
    // Nothing left behind in tmp/.
    assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
}

// ---------------------------------------------------------------------------------------------
// Access control, limits, timeouts, shutdown.

#[tokio::test]
async fn clients_outside_allowed_clients_get_554_at_connect() {
    let h = harness(cfg());
    let (mut c, task) = h.connect_from("192.0.2.1:2525");
    let r = c.reply().await;
    assert_eq!(r.code, 554);
    assert!(r.text().starts_with("5.7.1"), "{r:?}");
    c.closed().await;
    task.await.unwrap();
    // IPv4-mapped IPv6 loopback (a dual-stack listener) is loopback.
    let (mut c, _) = h.connect_from("[::ffff:127.0.0.1]:1");
    assert_eq!(c.reply().await.code, 220);
    let (mut c, _) = h.connect_from("[::1]:1");
    assert_eq!(c.reply().await.code, 220);
}

#[tokio::test]
async fn connection_limits_give_421() {
    let mut conf = cfg();
    conf.server.max_connections = 2;
    conf.server.max_connections_per_client = 1;
    conf.server.allowed_clients = vec!["127.0.0.0/8".parse().unwrap()];
    let h = harness(conf);
    let (mut a, _) = h.connect_from("127.0.0.1:1");
    assert_eq!(a.reply().await.code, 220);
    // Same client again: per-client limit.
    let (mut b, _) = h.connect_from("127.0.0.1:2");
    let r = b.reply().await;
    assert_eq!(r.code, 421, "{r:?}");
    assert!(r.text().starts_with("4.7.0"));
    b.closed().await;
    let (mut c, _) = h.connect_from("127.0.0.2:1");
    assert_eq!(c.reply().await.code, 220);
    // Global limit.
    let (mut d, _) = h.connect_from("127.0.0.3:1");
    let r = d.reply().await;
    assert_eq!(
        (r.code, r.text().starts_with("4.7.0")),
        (421, true),
        "{r:?}"
    );
    d.closed().await;
    // A slot frees when a session ends.
    a.ok("QUIT", 221).await;
    a.closed().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (mut e, _) = h.connect_from("127.0.0.1:3");
    assert_eq!(e.reply().await.code, 220);
}

#[tokio::test]
async fn command_and_data_timeouts_give_421() {
    let mut conf = cfg();
    conf.server.command_timeout = Dur(Duration::from_millis(300));
    conf.server.data_timeout = Dur(Duration::from_millis(300));
    let h = harness(conf);
    let mut c = h.ehlo().await;
    let t0 = std::time::Instant::now();
    let r = c.reply().await;
    assert_eq!(r.code, 421);
    assert!(r.text().starts_with("4.4.2"), "{r:?}");
    assert!(t0.elapsed() >= Duration::from_millis(250));
    c.closed().await;
    let mut c = h.ehlo().await;
    c.mail("u@city.example.lg.jp").await;
    c.ok("DATA", 354).await;
    c.send("Subject: slow\r\n").await;
    let r = c.reply().await;
    assert_eq!(r.code, 421, "{r:?}");
    c.closed().await;
    assert_eq!(h.store.count(), 0);
    wait_until(|| h.store.leftovers().is_empty()).await;
}

/// Slowloris: a client that keeps sending one byte at a time, always faster than the
/// timeout, is still cut off when the whole command line (or the whole DATA) takes longer.
#[tokio::test]
async fn trickling_clients_are_cut_off_by_deadlines_not_per_read() {
    let mut conf = cfg();
    conf.server.command_timeout = Dur(Duration::from_millis(600));
    conf.server.data_timeout = Dur(Duration::from_millis(600));
    let h = harness(conf);
    let mut c = h.ehlo().await;
    let t0 = std::time::Instant::now();
    for b in "NOOP-and-more-bytes-than-the-clock-allows".bytes() {
        if c.try_send(&[b]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if t0.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    let r = c.reply().await;
    assert_eq!(r.code, 421, "{r:?}");
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    let mut c = h.ehlo().await;
    c.mail("u@city.example.lg.jp").await;
    c.ok("DATA", 354).await;
    let t0 = std::time::Instant::now();
    for b in "Subject: slow and steady\r\n\r\nbody that never ends".bytes() {
        if c.try_send(&[b]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if t0.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    let r = c.reply().await;
    assert_eq!(r.code, 421, "{r:?}");
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert_eq!(h.store.count(), 0);
}

#[tokio::test]
async fn shutdown_lets_transactions_finish_and_closes_idle_sessions() {
    let h = harness(cfg());
    let mut idle = h.ehlo().await;
    let mut busy = h.ehlo().await;
    busy.mail("u@city.example.lg.jp").await;
    h.server.begin_shutdown();
    let r = idle.reply().await;
    assert_eq!(r.code, 421);
    assert!(r.text().starts_with("4.3.2"), "{r:?}");
    idle.closed().await;
    // The session in a transaction finishes it, then is closed.
    busy.ok("DATA", 354).await;
    busy.send(format!("{MSG}.\r\n")).await;
    assert_eq!(busy.reply().await.code, 250);
    assert_eq!(busy.reply().await.code, 421);
    busy.closed().await;
    assert_eq!(h.store.count(), 1);
    // New connections are turned away.
    let (mut c, _) = h.connect_from("127.0.0.1:9");
    assert_eq!(c.reply().await.code, 421);
}

#[tokio::test]
async fn serve_drains_within_shutdown_timeout() {
    let mut conf = cfg();
    conf.server.listen = vec!["127.0.0.1:0".parse().unwrap()];
    conf.server.shutdown_timeout = Dur(Duration::from_millis(500));
    let h = harness(conf);
    let listeners = h.server.bind().await.unwrap();
    let addr = listeners[0].local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = h.server.clone();
    let serving = tokio::spawn(async move {
        server
            .serve(listeners, async {
                let _ = stop_rx.await;
            })
            .await
    });
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut c = Client {
        io: Box::new(tcp),
        buf: Vec::new(),
    };
    assert_eq!(c.reply().await.code, 220);
    c.ok("EHLO client.example", 250).await;
    // A client stuck in DATA holds the drain until shutdown_timeout, then is cut off.
    c.mail("u@city.example.lg.jp").await;
    c.ok("DATA", 354).await;
    c.send("Subject: never ends\r\n").await;
    let t0 = std::time::Instant::now();
    stop_tx.send(()).unwrap();
    tokio::time::timeout(T, serving).await.unwrap().unwrap();
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert!(c.try_reply().await.is_none());
    assert_eq!(h.store.count(), 0);
    wait_until(|| h.store.leftovers().is_empty()).await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still listening"
    );
}

// ---------------------------------------------------------------------------------------------
// STARTTLS.

fn tls_setup(conf: &mut Config, dir: &Path) -> tokio_rustls::TlsConnector {
    use tokio_rustls::rustls;
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    fs::write(&cert, ck.cert.pem()).unwrap();
    fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    conf.server.tls_cert = Some(cert);
    conf.server.tls_key = Some(key);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(client))
}

async fn upgrade(c: Client, connector: &tokio_rustls::TlsConnector) -> Client {
    assert!(c.buf.is_empty());
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio::time::timeout(T, connector.connect(name, c.io))
        .await
        .unwrap()
        .unwrap();
    Client {
        io: Box::new(tls),
        buf: Vec::new(),
    }
}

#[tokio::test]
async fn starttls_upgrades_and_resets_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let mut conf = cfg();
    let connector = tls_setup(&mut conf, dir.path());
    let h = harness(conf);
    let mut c = h.connect().await;
    let r = c.cmd("EHLO client.example").await;
    assert!(r.lines.iter().any(|l| l == "STARTTLS"), "{r:?}");
    c.ok("MAIL FROM:<a@internet.example>", 250).await;
    c.ok("STARTTLS", 503).await;
    c.ok("RSET", 250).await;
    assert_eq!(c.cmd("STARTTLS now").await.code, 501);
    assert_eq!(c.ok("STARTTLS", 220).await, "2.0.0 Ready to start TLS");
    let mut c = upgrade(c, &connector).await;
    // Everything from before the handshake is forgotten: HELO again.
    c.ok("MAIL FROM:<a@internet.example>", 503).await;
    let r = c.cmd("EHLO client.example").await;
    assert_eq!(r.code, 250);
    assert!(
        !r.lines.iter().any(|l| l == "STARTTLS"),
        "STARTTLS offered twice: {r:?}"
    );
    c.ok("STARTTLS", 503).await;
    c.mail("u@city.example.lg.jp").await;
    c.ok("DATA", 354).await;
    c.send(format!("{MSG}.\r\n")).await;
    assert_eq!(c.reply().await.code, 250);
    h.store.with(0, |m| {
        assert!(m.acc.tls);
        let clean = String::from_utf8_lossy(&m.clean);
        assert!(
            clean
                .lines()
                .next()
                .unwrap()
                .contains("with ESMTPS (using TLSv1.3 with cipher TLS13_"),
            "{clean}"
        );
    });
    c.ok("QUIT", 221).await;
}

#[tokio::test]
async fn commands_pipelined_after_starttls_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut conf = cfg();
    tls_setup(&mut conf, dir.path());
    let h = harness(conf);
    let mut c = h.ehlo().await;
    c.send("STARTTLS\r\nMAIL FROM:<attacker@internet.example>\r\n")
        .await;
    let r = c.reply().await;
    assert_eq!(r.code, 554, "{r:?}");
    c.closed().await;
    // Plaintext sent after the 220 goes to the TLS handshake, which fails: no command runs.
    let mut c = h.ehlo().await;
    c.ok("STARTTLS", 220).await;
    c.send("MAIL FROM:<attacker@internet.example>\r\n").await;
    assert!(c.try_reply().await.is_none());
    assert_eq!(h.store.count(), 0);
}

#[tokio::test]
async fn tls_configuration_errors_are_reported() {
    let mut conf = cfg();
    conf.server.tls_cert = Some("/nonexistent/cert.pem".into());
    conf.server.tls_key = Some("/nonexistent/key.pem".into());
    let store = Arc::new(MemStore::new());
    let err = Server::new(Arc::new(conf), store, TestSanitizer::new(), None)
        .err()
        .unwrap();
    assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// chasquid's dialogues (shared corpora), replayed against our server.

fn corpora() -> Option<PathBuf> {
    let dir = std::env::var_os("MUGAIKA_CORPORA")
        .map(PathBuf::from)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpora").into());
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("MUGAIKA_REQUIRE_CORPORA").as_deref() == Ok("1") {
        panic!("corpora required but missing at {}", dir.display());
    }
    eprintln!(
        "SKIP: corpora not found at {} (set MUGAIKA_CORPORA)",
        dir.display()
    );
    None
}

/// chamuyero's `c ~>` expressions: `'text'`, `'a' * 3`, `('a' + '\r\n') * 2`.
fn cmy_expr(s: &str) -> Vec<u8> {
    fn expr(s: &mut &str) -> Vec<u8> {
        let mut v = term(s);
        while let Some(rest) = s.trim_start().strip_prefix('+') {
            *s = rest;
            v.extend(term(s));
        }
        v
    }
    fn term(s: &mut &str) -> Vec<u8> {
        *s = s.trim_start();
        let v = if let Some(rest) = s.strip_prefix('(') {
            *s = rest;
            let v = expr(s);
            *s = s.trim_start().strip_prefix(')').expect("closing paren");
            v
        } else {
            let rest = s.strip_prefix('\'').expect("string literal");
            let mut v = Vec::new();
            let mut it = rest.char_indices();
            loop {
                let (i, c) = it.next().expect("unterminated");
                match c {
                    '\'' => {
                        *s = &rest[i + 1..];
                        break;
                    }
                    '\\' => match it.next().unwrap().1 {
                        'n' => v.push(b'\n'),
                        'r' => v.push(b'\r'),
                        o => panic!("escape {o}"),
                    },
                    c => v.extend_from_slice(c.to_string().as_bytes()),
                }
            }
            v
        };
        let t = s.trim_start();
        if let Some(rest) = t.strip_prefix('*') {
            let rest = rest.trim_start();
            let end = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            *s = &rest[end..];
            return v.repeat(rest[..end].parse().unwrap());
        }
        v
    }
    let mut s = s;
    expr(&mut s)
}

/// Runs one chamuyero script. Expected replies are compared by class (2xx, 3xx, 4xx, 5xx):
/// chasquid's texts and exact codes are its own (e.g. it closes with 521 on a bare LF where we
/// answer 550 and keep the session), the class is what a client acts on.
async fn run_cmy(h: &H, name: &str, script: &str) {
    let mut c: Option<Client> = None;
    for (n, line) in script.lines().enumerate() {
        let at = format!("{name}:{}: {line}", n + 1);
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with("c tcp_connect") {
            c = Some(h.connect_from("127.0.0.1:40000").0);
        } else if line == "c close" {
            c = None;
        } else if let Some(text) = line.strip_prefix("c ->") {
            let text = text.strip_prefix(' ').unwrap_or(text);
            c.as_mut().unwrap().send(format!("{text}\r\n")).await;
        } else if let Some(e) = line.strip_prefix("c ~>") {
            c.as_mut().unwrap().send(cmy_expr(e)).await;
        } else if let Some(want) = line
            .strip_prefix("c <~ ")
            .or_else(|| line.strip_prefix("c <- "))
            .or_else(|| line.strip_prefix("c <... "))
        {
            let r = c.as_mut().unwrap().try_reply().await;
            let r = r.unwrap_or_else(|| panic!("{at}: connection closed"));
            let class = want.as_bytes()[0];
            assert_eq!(r.code / 100, u16::from(class - b'0'), "{at}: got {r:?}");
        } else {
            panic!("{at}: unknown chamuyero line");
        }
    }
}

#[tokio::test]
async fn chasquid_dialogues() {
    let Some(dir) = corpora() else { return };
    let dir = dir.join("chasquid-smtp-dialogs/test");
    let mut conf = cfg();
    conf.server.relay_domains = vec!["testserver".into()];
    conf.server.max_message_size = ByteSize(1 << 20);
    conf.server.max_line_length = ByteSize(1000);
    let h = harness(conf);
    let mut ran = 0;
    let mut verified = 0;
    let mut names: Vec<PathBuf> = ["t-05-null_address", "t-12-minor_dialogs"]
        .iter()
        .flat_map(|d| {
            fs::read_dir(dir.join(d))
                .unwrap()
                .map(|e| e.unwrap().path())
        })
        .filter(|p| p.extension().is_some_and(|e| e == "cmy"))
        .collect();
    names.sort();
    for path in names {
        let name = path.strip_prefix(&dir).unwrap().display().to_string();
        let script = fs::read_to_string(&path).unwrap();
        // AUTH and implicit TLS (port 1465) are not part of this server.
        if script.contains("tls_connect") || script.contains("AUTH") {
            eprintln!("chasquid: {name}: skipped (AUTH / implicit TLS not offered)");
            continue;
        }
        // chasquid refuses this message when parsing it; here the sanitiser decides.
        let mode = if name.ends_with("/bad_data.cmy") {
            Mode::Reject
        } else {
            Mode::Copy
        };
        h.sanitizer.set(mode);
        run_cmy(&h, &name, &script).await;
        ran += 1;
        // What chasquid delivers (its .verify files, LF line ends) is what we spooled.
        if let Ok(verify) = fs::read_to_string(dir.join(format!("{name}.verify"))) {
            let want = verify.replace('\n', "\r\n").into_bytes();
            let found = (0..h.store.count()).any(|i| h.store.with(i, |m| m.original == want));
            assert!(
                found,
                "{name}: the delivered message differs from its .verify file"
            );
            verified += 1;
        }
    }
    assert!(ran >= 13, "only {ran} dialogues ran");
    assert_eq!(verified, 2);
    // sendmail (twice) and dot stuffing; everything else was refused.
    assert_eq!(h.store.count(), 3, "messages accepted");
    wait_until(|| h.store.leftovers().is_empty()).await;
}

/// chasquid's fuzz seeds (LF-terminated command streams): no panic, every line refused, and
/// never a message.
#[tokio::test]
async fn chasquid_fuzz_seeds_with_bare_lf_never_make_a_message() {
    let Some(dir) = corpora() else { return };
    let dir = dir.join("chasquid-smtp-dialogs/internal/smtpsrv/testdata/fuzz/FuzzConnection");
    let h = harness(cfg());
    let mut n = 0;
    for entry in fs::read_dir(dir).unwrap() {
        let text = fs::read_to_string(entry.unwrap().path()).unwrap();
        let Some(lit) = text.lines().find_map(|l| l.strip_prefix("[]byte(\"")) else {
            continue;
        };
        let lit = lit.strip_suffix("\")").unwrap();
        let mut bytes = Vec::new();
        let mut chars = lit.chars();
        while let Some(ch) = chars.next() {
            match ch {
                '\\' => match chars.next().unwrap() {
                    'n' => bytes.push(b'\n'),
                    'r' => bytes.push(b'\r'),
                    '"' => bytes.push(b'"'),
                    '\\' => bytes.push(b'\\'),
                    o => panic!("escape {o}"),
                },
                c => bytes.extend_from_slice(c.to_string().as_bytes()),
            }
        }
        let mut c = h.connect().await;
        c.send(&bytes).await;
        c.send("QUIT\r\n").await;
        let mut codes = Vec::new();
        while let Some(r) = c.try_reply().await {
            codes.push(r.code);
        }
        assert_eq!(codes.last(), Some(&221));
        assert!(
            codes[..codes.len() - 1].iter().all(|&c| c >= 500),
            "{codes:?}"
        );
        n += 1;
    }
    assert!(n >= 10);
    assert_eq!(h.store.count(), 0);
}

#[tokio::test]
async fn the_real_pipeline_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(mugaika::spool::Spool::open(dir.path()).unwrap());
    let mut conf = cfg();
    conf.sanitize.timeout = Dur(Duration::from_secs(30));
    let conf = Arc::new(conf);
    let sanitizer = Arc::new(mugaika::smtp::server::Pipeline::new(conf.clone()));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let server = Server::new(conf, spool.clone(), sanitizer, Some(tx)).unwrap();
    let (a, b) = tokio::io::duplex(1 << 16);
    let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
    tokio::spawn(async move { server.handle_connection(b, peer).await });
    let mut c = Client {
        io: Box::new(a),
        buf: Vec::new(),
    };
    assert_eq!(c.reply().await.code, 220);
    c.ok("EHLO client.example", 250).await;
    c.mail("u@city.example.lg.jp").await;
    c.ok("DATA", 354).await;
    c.send(
        "From: Sender <a@internet.example>\r\nTo: u@city.example.lg.jp\r\n\
         Subject: test\r\nDate: Tue, 1 Jul 2025 12:00:00 +0900\r\nMessage-ID: <1@internet.example>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
         <p>Hello <a href=\"https://example.com/\">link</a></p>\r\n.\r\n",
    )
    .await;
    let r = c.reply().await;
    assert_eq!(r.code, 250, "{r:?}");
    let id = rx.recv().await.unwrap();
    let clean = fs::read_to_string(spool.clean_path(&id)).unwrap();
    assert!(
        clean.starts_with("Received: from client.example ([127.0.0.1])"),
        "{clean}"
    );
    assert!(clean.contains(&format!(" id {id} ")), "{clean}");
    assert!(clean.contains("X-Mugaika-"), "{clean}");
    assert!(!clean.contains("<a href"), "{clean}");
    assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
}

#[tokio::test]
async fn a_client_that_never_reads_is_cut_off() {
    let mut conf = cfg();
    conf.server.command_timeout = Dur(Duration::from_millis(300));
    let h = harness(conf);
    let (c, task) = h.connect_from("127.0.0.1:7");
    let mut io = c.io;
    // HELP answers 6 octets with ~120: pipelined without ever reading the replies.
    let writer = tokio::spawn(async move {
        let burst = "HELP\r\n".repeat(10_000);
        for _ in 0..200 {
            if io.write_all(burst.as_bytes()).await.is_err() {
                return true;
            }
        }
        false
    });
    tokio::time::timeout(T, task)
        .await
        .expect("session still running")
        .unwrap();
    assert!(
        tokio::time::timeout(T, writer).await.unwrap().unwrap(),
        "the server kept reading"
    );
}

// ---------------------------------------------------------------------------------------------
// Real peers over 127.0.0.1 (Debian's swaks and Postfix's smtp-source), skipped loudly when the
// tools are not installed.

fn tool(name: &str) -> Option<PathBuf> {
    for dir in ["/usr/bin", "/usr/sbin", "/usr/local/bin"] {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return Some(p);
        }
    }
    if std::env::var("MUGAIKA_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("{name} required but not installed");
    }
    eprintln!("SKIP: {name} not installed (Debian package swaks / postfix)");
    None
}

/// A server on a real 127.0.0.1 port over the real spool; returns the address and the spool.
async fn tcp_server(
    conf: Config,
    sanitizer: Arc<dyn Sanitize>,
    dir: &Path,
) -> (
    SocketAddr,
    Arc<mugaika::spool::Spool>,
    tokio::sync::oneshot::Sender<()>,
) {
    let mut conf = conf;
    conf.server.listen = vec!["127.0.0.1:0".parse().unwrap()];
    let spool = Arc::new(mugaika::spool::Spool::open(dir).unwrap());
    let server = Server::new(Arc::new(conf), spool.clone(), sanitizer, None).unwrap();
    let listeners = server.bind().await.unwrap();
    let addr = listeners[0].local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        server
            .serve(listeners, async {
                let _ = stopped.await;
            })
            .await
    });
    (addr, spool, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_plain_pipelined_and_starttls() {
    let Some(swaks) = tool("swaks") else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut conf = cfg();
    tls_setup(&mut conf, dir.path());
    let spool_dir = dir.path().join("spool");
    let (addr, spool, _stop) = tcp_server(conf, TestSanitizer::new(), &spool_dir).await;
    let runs: [&[&str]; 3] = [&[], &["--pipeline"], &["--tls"]];
    for extra in runs {
        let out = tokio::process::Command::new(&swaks)
            .args([
                "--server",
                &addr.to_string(),
                "--from",
                "a@internet.example",
            ])
            .args(["--to", "u@city.example.lg.jp", "--helo", "swaks.example"])
            .args(["--timeout", "10"])
            .args(extra)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(30), out)
            .await
            .unwrap()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "swaks {extra:?} failed:\n{log}");
        assert!(
            log.contains("  250 2.0.0 Ok: queued as "),
            "{extra:?}:\n{log}"
        );
    }
    let ids = spool.list().unwrap();
    assert_eq!(ids.len(), 3);
    let tls: Vec<bool> = ids.iter().map(|id| spool.load(id).unwrap().tls).collect();
    assert_eq!(tls, [false, false, true]);
    for id in &ids {
        let clean = fs::read_to_string(spool.clean_path(id)).unwrap();
        assert!(
            clean.starts_with("Received: from swaks.example ([127.0.0.1])"),
            "{clean}"
        );
    }
}

/// Throughput with Postfix's smtp-source: `cargo test --release --test smtp_session --
/// --ignored --nocapture smtp_source`. Prints messages per second (a measurement, not a
/// timed assertion); every message must be accepted.
#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn smtp_source_throughput() {
    let Some(source) = tool("smtp-source") else {
        return;
    };
    let messages: usize = std::env::var("MUGAIKA_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    for (label, real) in [("copying sanitiser", false), ("real pipeline", true)] {
        let dir = tempfile::tempdir().unwrap();
        let mut conf = cfg();
        conf.server.max_message_size = ByteSize(10 << 20);
        conf.sanitize.timeout = Dur(Duration::from_secs(60));
        let sanitizer: Arc<dyn Sanitize> = if real {
            Arc::new(mugaika::smtp::server::Pipeline::new(Arc::new(conf.clone())))
        } else {
            TestSanitizer::new()
        };
        let (addr, spool, _stop) = tcp_server(conf, sanitizer, dir.path()).await;
        let t0 = std::time::Instant::now();
        let out = tokio::process::Command::new(&source)
            .args(["-s", "16", "-l", "26000", "-m", &messages.to_string()])
            .args(["-f", "a@internet.example", "-t", "u@city.example.lg.jp"])
            .arg(addr.to_string())
            .output()
            .await
            .unwrap();
        let secs = t0.elapsed().as_secs_f64();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let n = spool.list().unwrap().len();
        assert_eq!(n, messages, "{label}: accepted");
        println!("smtp-source -s 16 -l 26000 -m {messages} -> mugaika ({label}, spool fsync): {:.0} msgs/s", messages as f64 / secs);
    }
}

fn peak_rss_kib() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Memory: 50 concurrent sessions each sending a 10 MB message through the real pipeline stay
/// within 512 MB peak RSS (of this whole test process, clients included). A measurement run:
/// `cargo test --release --test smtp_session -- --ignored --nocapture fifty`.
#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn fifty_sessions_of_ten_megabytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut conf = cfg();
    conf.server.max_message_size = ByteSize(20 << 20);
    conf.server.max_connections_per_client = 100;
    conf.sanitize.timeout = Dur(Duration::from_secs(120));
    let sanitizer = Arc::new(mugaika::smtp::server::Pipeline::new(Arc::new(conf.clone())));
    let (addr, spool, _stop) = tcp_server(conf, sanitizer, dir.path()).await;
    let before = peak_rss_kib();
    let t0 = std::time::Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for i in 0..50 {
        clients.spawn(async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut c = Client { io: Box::new(tcp), buf: Vec::new() };
            assert_eq!(c.reply().await.code, 220);
            c.ok("EHLO client.example", 250).await;
            c.mail("u@city.example.lg.jp").await;
            c.ok("DATA", 354).await;
            c.send(format!("From: a@internet.example\r\nSubject: big {i}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")).await;
            let line = "日本語のテキスト、これは十メガバイトのメッセージです。abcdefghijklmnopqrstuvwxyz\r\n";
            let block = line.repeat(64 * 1024 / line.len());
            let mut sent = 0;
            while sent < 10 << 20 {
                c.send(&block).await;
                sent += block.len();
            }
            c.send(".\r\n").await;
            let r = tokio::time::timeout(Duration::from_secs(300), c.reply()).await.unwrap();
            assert_eq!(r.code, 250, "{r:?}");
        });
    }
    while let Some(r) = clients.join_next().await {
        r.unwrap();
    }
    let peak = peak_rss_kib();
    println!(
        "50 x 10 MB through the real pipeline: {:.1} s, peak RSS {} MiB (before: {} MiB)",
        t0.elapsed().as_secs_f64(),
        peak / 1024,
        before / 1024
    );
    assert_eq!(spool.list().unwrap().len(), 50);
    assert!(peak < 512 * 1024, "peak RSS {peak} KiB");
}
