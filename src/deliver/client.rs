//! The SMTP client towards the next hop, on lettre 0.11's low-level `AsyncSmtpConnection`.
//!
//! lettre's high-level transport aborts the transaction at the first refused RCPT, which would
//! make one bad recipient fail (or, on retry, duplicate) all the others; so the transaction is
//! driven here command by command: MAIL, one RCPT per pending recipient with each reply kept,
//! DATA only when at least one RCPT was accepted, and the final reply applied to the accepted
//! recipients only.
//!
//! The TCP stream handed to lettre is wrapped in [`Guarded`], which gives every read and write an
//! inactivity limit (`delivery.command_timeout`: lettre has none of its own) and can be
//! *poisoned*: if the clean message cannot be read half-way through DATA, every further write
//! fails, so the terminating `CRLF.CRLF` is never sent and the next hop discards the truncated
//! message instead of delivering it.
//!
//! Connections are pooled per hop and reused (RSET first) for the next message; any error
//! drops the connection.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::future::Future;
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, AsyncTokioStream, Certificate, CertificateStore, TlsParameters,
};
use lettre::transport::smtp::extension::{ClientId, Extension};
use lettre::transport::smtp::response::Response;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

use crate::config::{Config, DeliveryTls};

/// Idle pooled connections older than this are not reused (servers time idle clients out).
const POOL_IDLE_MAX: Duration = Duration::from_secs(30);
/// How long a QUIT may take when a connection is closed.
const QUIT_WAIT: Duration = Duration::from_secs(2);
/// Chunk size when streaming the clean message.
const CHUNK: usize = 64 << 10;
/// Longest reply text kept in the envelope and the DSN.
const MAX_REPLY_TEXT: usize = 900;

/// One SMTP reply, as kept in the envelope (`last_reply`) and the DSN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// The text lines joined by a space, printable ASCII only, bounded.
    pub text: String,
}

impl Reply {
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }
    fn from_response(r: &Response) -> Reply {
        let code = r.code().to_string().parse().unwrap_or(0);
        let text = r.message().collect::<Vec<_>>().join(" ");
        Reply {
            code,
            text: printable(&text),
        }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.text.is_empty() {
            write!(f, "{}", self.code)
        } else {
            write!(f, "{} {}", self.code, self.text)
        }
    }
}

/// Text from the network made safe for logs, JSON and DSN header fields: printable ASCII,
/// whitespace collapsed, bounded length.
pub(crate) fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_REPLY_TEXT));
    let mut space = false;
    for c in s.chars() {
        if out.len() >= MAX_REPLY_TEXT {
            out.push_str("...");
            break;
        }
        if c.is_whitespace() {
            space = !out.is_empty();
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        out.push(if c.is_ascii_graphic() { c } else { '?' });
    }
    out
}

/// What happened to one recipient in one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptOutcome {
    /// The final reply after DATA was 2xx.
    Delivered(Reply),
    /// A 4xx at MAIL, RCPT, DATA or after the data: try again later.
    Deferred(Reply),
    /// A 5xx at MAIL, RCPT, DATA or after the data: never again.
    Bounced(Reply),
}

impl RcptOutcome {
    fn from_reply(r: Reply) -> RcptOutcome {
        if r.is_positive() {
            RcptOutcome::Delivered(r)
        } else if r.is_permanent() {
            RcptOutcome::Bounced(r)
        } else {
            RcptOutcome::Deferred(r)
        }
    }
}

/// The attempt failed before any per-recipient answer could be trusted (connect, greeting,
/// EHLO, TLS, AUTH, I/O error, timeout): temporary for every pending recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TempFailure(pub String);

/// The error of one command: a negative reply (the connection is still usable) or a broken
/// connection.
enum CmdError {
    Reply(Reply),
    Broken(String),
}

fn classify(e: lettre::transport::smtp::Error) -> CmdError {
    match e.status() {
        Some(code) => {
            let text = std::error::Error::source(&e)
                .map(|s| s.to_string())
                .unwrap_or_default();
            CmdError::Reply(Reply {
                code: code.to_string().parse().unwrap_or(0),
                text: printable(&text),
            })
        }
        None => CmdError::Broken(printable(&e.to_string())),
    }
}

/// A TCP stream with an inactivity limit on every read and write, and a poison switch that
/// makes every write fail (see the module documentation).
pub(crate) struct Guarded {
    inner: TcpStream,
    idle: Duration,
    read_timer: Option<Pin<Box<Sleep>>>,
    write_timer: Option<Pin<Box<Sleep>>>,
    poison: Arc<AtomicBool>,
}

impl fmt::Debug for Guarded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guarded")
            .field("inner", &self.inner)
            .field("idle", &self.idle)
            .finish()
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "next hop timed out")
}

/// Polls `timer` (arming it on first use); Ready when the inactivity limit passed.
fn poll_timer(timer: &mut Option<Pin<Box<Sleep>>>, idle: Duration, cx: &mut Context<'_>) -> bool {
    let t = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
    if t.as_mut().poll(cx).is_ready() {
        *timer = None;
        true
    } else {
        false
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.read_timer = None;
                Poll::Ready(r)
            }
            Poll::Pending if poll_timer(&mut this.read_timer, this.idle, cx) => {
                Poll::Ready(Err(timed_out()))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.poison.load(Ordering::SeqCst) {
            return Poll::Ready(Err(io::Error::other(
                "transaction aborted: the message could not be read",
            )));
        }
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(r) => {
                this.write_timer = None;
                Poll::Ready(r)
            }
            Poll::Pending if poll_timer(&mut this.write_timer, this.idle, cx) => {
                Poll::Ready(Err(timed_out()))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.poison.load(Ordering::SeqCst) {
            return Poll::Ready(Err(io::Error::other("transaction aborted")));
        }
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Ready(r) => {
                this.write_timer = None;
                Poll::Ready(r)
            }
            Poll::Pending if poll_timer(&mut this.write_timer, this.idle, cx) => {
                Poll::Ready(Err(timed_out()))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for Guarded {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }
}

/// The clean message as DATA chunks for lettre (which dot-stuffs them): line endings made
/// CRLF (lettre stuffs a dot only after CRLF, so a bare LF followed by a dot would otherwise go
/// out unstuffed), and the final CRLF held back because lettre appends `CRLF.CRLF` itself.
/// A read error poisons the stream (see [`Guarded`]) and ends the iteration.
pub(crate) struct BodyChunks<R> {
    src: R,
    buf: Vec<u8>,
    /// The previous input byte was a CR whose line ending is not yet written.
    cr: bool,
    /// A CRLF was held back at the end of the previous chunk.
    held: bool,
    eof: bool,
    poison: Arc<AtomicBool>,
    /// Bare CR or LF were rewritten (the verifier should have made this impossible).
    pub(crate) repaired: bool,
    pub(crate) error: Option<io::Error>,
}

impl<R: Read> BodyChunks<R> {
    pub(crate) fn new(src: R, poison: Arc<AtomicBool>) -> Self {
        BodyChunks {
            src,
            buf: vec![0; CHUNK],
            cr: false,
            held: false,
            eof: false,
            poison,
            repaired: false,
            error: None,
        }
    }

    fn normalise(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        if self.held {
            out.extend_from_slice(b"\r\n");
            self.held = false;
        }
        for &b in self.buf.get(..n).unwrap_or_default() {
            if self.cr {
                self.cr = false;
                out.extend_from_slice(b"\r\n");
                if b == b'\n' {
                    continue;
                }
                self.repaired = true;
            }
            match b {
                b'\r' => self.cr = true,
                b'\n' => {
                    self.repaired = true;
                    out.extend_from_slice(b"\r\n");
                }
                _ => out.push(b),
            }
        }
        if n == 0 && self.cr {
            // A bare CR at the very end.
            self.cr = false;
            self.repaired = true;
            out.extend_from_slice(b"\r\n");
        }
        if out.ends_with(b"\r\n") {
            out.truncate(out.len() - 2);
            self.held = true;
        }
        out
    }
}

impl<R: Read> Iterator for BodyChunks<R> {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        while !self.eof {
            let n = match self.src.read(&mut self.buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.poison.store(true, Ordering::SeqCst);
                    self.error = Some(e);
                    self.eof = true;
                    return None;
                }
            };
            if n == 0 {
                self.eof = true;
            }
            let out = self.normalise(n);
            if !out.is_empty() {
                return Some(out);
            }
        }
        None
    }
}

/// The message of one attempt, as the client needs it.
pub struct Transaction<'a> {
    pub sender: &'a str,
    pub recipients: Vec<&'a str>,
    pub clean: &'a Path,
}

/// A lettre connection and the poison switch of its stream.
struct Conn {
    smtp: AsyncSmtpConnection,
    poison: Arc<AtomicBool>,
}

/// A connection in the pool.
struct Pooled {
    conn: Conn,
    since: Instant,
}

/// SMTP client with per-hop connection pools. Shared by every delivery task.
pub struct Client {
    helo: ClientId,
    tls: DeliveryTls,
    tls_opportunistic: Option<TlsParameters>,
    tls_required: Option<TlsParameters>,
    credentials: Option<Credentials>,
    connect_timeout: Duration,
    command_timeout: Duration,
    max_idle: usize,
    pool: Mutex<HashMap<String, Vec<Pooled>>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("helo", &self.helo)
            .field("tls", &self.tls)
            .finish()
    }
}

/// The host part of `host:port` (without IPv6 brackets).
pub(crate) fn hop_host(hop: &str) -> &str {
    let host = hop.rsplit_once(':').map_or(hop, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

impl Client {
    /// Builds the client from `[delivery]`. Reads the AUTH password file; fails if it is
    /// unreadable, or if TLS parameters cannot be built.
    pub fn new(cfg: &Config) -> Result<Client, String> {
        let d = &cfg.delivery;
        let name = d
            .helo_name
            .clone()
            .unwrap_or_else(|| cfg.server.hostname.clone());
        let helo = match name.parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) => ClientId::Ipv4(a),
            Ok(IpAddr::V6(a)) => ClientId::Ipv6(a),
            Err(_) => ClientId::Domain(name),
        };
        let credentials = match (&d.auth_user, &d.auth_password_file) {
            (Some(user), Some(file)) => {
                let pw = std::fs::read_to_string(file)
                    .map_err(|e| format!("delivery.auth_password_file {}: {e}", file.display()))?;
                let pw = pw.trim_end_matches(['\r', '\n']).to_string();
                Some(Credentials::new(user.clone(), pw))
            }
            _ => None,
        };
        let mut client = Client {
            helo,
            tls: d.tls,
            tls_opportunistic: None,
            tls_required: None,
            credentials,
            connect_timeout: d.connect_timeout.0,
            command_timeout: d.command_timeout.0,
            max_idle: d.concurrency.max(1),
            pool: Mutex::new(HashMap::new()),
        };
        // Parameters are per host name; both hops usually share one, so build lazily per
        // attempt would be wasteful: build for next_hop now, others on demand.
        match d.tls {
            DeliveryTls::None => {}
            DeliveryTls::Opportunistic => {
                client.tls_opportunistic = Some(opportunistic_params(hop_host(&d.next_hop))?);
            }
            DeliveryTls::Required => {
                client.tls_required = Some(required_params(hop_host(&d.next_hop))?);
            }
        }
        Ok(client)
    }

    fn tls_params(&self, host: &str) -> Result<Option<TlsParameters>, String> {
        let cached = match self.tls {
            DeliveryTls::None => return Ok(None),
            DeliveryTls::Opportunistic => &self.tls_opportunistic,
            DeliveryTls::Required => &self.tls_required,
        };
        if let Some(p) = cached.as_ref().filter(|p| p.domain() == host) {
            return Ok(Some(p.clone()));
        }
        match self.tls {
            DeliveryTls::Required => required_params(host).map(Some),
            _ => opportunistic_params(host).map(Some),
        }
    }

    /// Opens a connection to `hop`: TCP connect (bounded by `connect_timeout`), greeting, EHLO,
    /// STARTTLS per `delivery.tls`, AUTH if configured.
    async fn connect(&self, hop: &str, try_tls: bool) -> Result<Conn, TempFailure> {
        let fail = |what: &str, e: &dyn fmt::Display| {
            TempFailure(printable(&format!("{what} {hop}: {e}")))
        };
        let addrs: Vec<SocketAddr> =
            match tokio::time::timeout(self.connect_timeout, tokio::net::lookup_host(hop)).await {
                Ok(Ok(a)) => a.collect(),
                Ok(Err(e)) => return Err(fail("cannot resolve", &e)),
                Err(_) => return Err(fail("cannot resolve", &"timed out")),
            };
        let mut last: Option<io::Error> = None;
        let mut tcp = None;
        for addr in addrs {
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => {
                    tcp = Some(s);
                    break;
                }
                Ok(Err(e)) => last = Some(e),
                Err(_) => last = Some(timed_out()),
            }
        }
        let Some(tcp) = tcp else {
            let e = last.unwrap_or_else(|| io::Error::other("no address"));
            return Err(fail("cannot connect to", &e));
        };
        let _ = tcp.set_nodelay(true);
        let poison = Arc::new(AtomicBool::new(false));
        let stream = Guarded {
            inner: tcp,
            idle: self.command_timeout,
            read_timer: None,
            write_timer: None,
            poison: poison.clone(),
        };
        let mut conn = AsyncSmtpConnection::connect_with_transport(Box::new(stream), &self.helo)
            .await
            .map_err(|e| fail("greeting/EHLO from", &e))?;
        let host = hop_host(hop);
        match self.tls {
            DeliveryTls::None => {}
            DeliveryTls::Opportunistic if !try_tls || !conn.can_starttls() => {}
            DeliveryTls::Opportunistic | DeliveryTls::Required => {
                if !conn.can_starttls() {
                    quit(&mut conn).await;
                    return Err(fail("STARTTLS required but not offered by", &"no STARTTLS"));
                }
                let params = self
                    .tls_params(host)
                    .map_err(|e| fail("TLS parameters for", &e))?
                    .ok_or_else(|| fail("TLS parameters for", &"none"))?;
                conn.starttls(params, &self.helo)
                    .await
                    .map_err(|e| fail("STARTTLS with", &e))?;
            }
        }
        if let Some(creds) = &self.credentials {
            if !conn.is_encrypted() && self.tls != DeliveryTls::None {
                quit(&mut conn).await;
                return Err(fail(
                    "refusing AUTH over an unencrypted connection to",
                    &"no TLS",
                ));
            }
            if let Err(e) = conn
                .auth(&[Mechanism::Plain, Mechanism::Login], creds)
                .await
            {
                quit(&mut conn).await;
                return Err(fail("AUTH at", &e));
            }
        }
        Ok(Conn { smtp: conn, poison })
    }

    /// A ready connection: a pooled one that answers RSET, or a new one. In opportunistic mode
    /// a failed TLS handshake is retried once in plaintext (like Postfix `may`).
    async fn checkout(&self, hop: &str) -> Result<(Conn, bool), TempFailure> {
        loop {
            let pooled = {
                let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
                pool.get_mut(hop).and_then(|v| v.pop())
            };
            let Some(mut p) = pooled else { break };
            if p.since.elapsed() > POOL_IDLE_MAX {
                quit(&mut p.conn.smtp).await;
                continue;
            }
            if p.conn.smtp.command("RSET\r\n").await.is_ok() {
                return Ok((p.conn, true));
            }
            quit(&mut p.conn.smtp).await;
        }
        match self.connect(hop, true).await {
            Ok(c) => Ok((c, false)),
            Err(e) if self.tls == DeliveryTls::Opportunistic && e.0.contains("STARTTLS with") => {
                tracing::warn!(hop, error = %e.0, "delivery: TLS handshake failed, retrying in plaintext");
                self.connect(hop, false).await.map(|c| (c, false))
            }
            Err(e) => Err(e),
        }
    }

    fn checkin(&self, hop: &str, conn: Conn) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        let v = pool.entry(hop.to_string()).or_default();
        if v.len() < self.max_idle {
            v.push(Pooled {
                conn,
                since: Instant::now(),
            });
        }
    }

    /// Closes every pooled connection (QUIT), at shutdown.
    pub async fn close_all(&self) {
        let all: Vec<Pooled> = {
            let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
            pool.drain().flat_map(|(_, v)| v).collect()
        };
        for mut p in all {
            let _ = tokio::time::timeout(Duration::from_secs(2), p.conn.smtp.quit()).await;
        }
    }

    /// One delivery attempt of `tx` to `hop`. `Ok` holds one outcome per recipient (same
    /// order); `Err` means the attempt failed as a whole and is temporary for everyone.
    pub async fn send(
        &self,
        hop: &str,
        tx: &Transaction<'_>,
    ) -> Result<Vec<RcptOutcome>, TempFailure> {
        let (mut conn, reused) = self.checkout(hop).await?;
        match self.transaction(&mut conn.smtp, &conn.poison, tx).await {
            Ok((outcomes, reusable)) => {
                if reusable {
                    self.checkin(hop, conn);
                } else {
                    quit(&mut conn.smtp).await;
                }
                Ok(outcomes)
            }
            Err(e) => {
                quit(&mut conn.smtp).await;
                let note = if reused { " (pooled connection)" } else { "" };
                Err(TempFailure(format!("{}{note}", e.0)))
            }
        }
    }

    async fn transaction(
        &self,
        conn: &mut AsyncSmtpConnection,
        poison: &Arc<AtomicBool>,
        tx: &Transaction<'_>,
    ) -> Result<(Vec<RcptOutcome>, bool), TempFailure> {
        let n = tx.recipients.len();
        let broken = |what: &str, e: String| TempFailure(format!("{what}: {e}"));
        // Addresses come from our own server, but they are written into command lines: refuse
        // anything that could break the line or the angle brackets.
        let bad = |a: &str| a.chars().any(|c| c.is_control() || c == '<' || c == '>');
        if bad(tx.sender) {
            let r = Reply {
                code: 553,
                text: "5.1.7 invalid sender address in the spool".into(),
            };
            return Ok((vec![RcptOutcome::Bounced(r); n], true));
        }
        let mut params = String::new();
        if !tx.sender.is_ascii() || tx.recipients.iter().any(|r| !r.is_ascii()) {
            if !conn.server_info().supports_feature(Extension::SmtpUtfEight) {
                let r = Reply {
                    code: 553,
                    text: "5.6.7 non-ASCII address and the next hop has no SMTPUTF8".into(),
                };
                return Ok((vec![RcptOutcome::Bounced(r); n], true));
            }
            params.push_str(" SMTPUTF8");
        }
        if conn.server_info().supports_feature(Extension::EightBitMime) {
            let path = tx.clean.to_path_buf();
            let eight = tokio::task::spawn_blocking(move || has_8bit(&path))
                .await
                .map_err(|e| TempFailure(e.to_string()))?
                .map_err(|e| TempFailure(format!("cannot read the clean message: {e}")))?;
            if eight {
                params.push_str(" BODY=8BITMIME");
            }
        }
        let mut reusable = true;
        let mut note = |r: &Reply| {
            if r.code == 421 {
                reusable = false;
            }
        };
        match conn
            .command(format!("MAIL FROM:<{}>{params}\r\n", tx.sender))
            .await
        {
            Ok(_) => {}
            Err(e) => match classify(e) {
                CmdError::Reply(r) => {
                    note(&r);
                    let o = RcptOutcome::from_reply(r);
                    return Ok((vec![o; n], reusable));
                }
                CmdError::Broken(e) => return Err(broken("MAIL FROM", e)),
            },
        }
        let mut outcomes: Vec<Option<RcptOutcome>> = vec![None; n];
        let mut accepted = Vec::new();
        for (i, rcpt) in tx.recipients.iter().enumerate() {
            if bad(rcpt) {
                let r = Reply {
                    code: 553,
                    text: "5.1.3 invalid recipient address in the spool".into(),
                };
                if let Some(o) = outcomes.get_mut(i) {
                    *o = Some(RcptOutcome::Bounced(r));
                }
                continue;
            }
            match conn.command(format!("RCPT TO:<{rcpt}>\r\n")).await {
                Ok(_) => accepted.push(i),
                Err(e) => match classify(e) {
                    CmdError::Reply(r) => {
                        note(&r);
                        if let Some(o) = outcomes.get_mut(i) {
                            *o = Some(RcptOutcome::from_reply(r));
                        }
                    }
                    CmdError::Broken(e) => return Err(broken("RCPT TO", e)),
                },
            }
        }
        let set_accepted = |outcomes: &mut Vec<Option<RcptOutcome>>, o: RcptOutcome| {
            for &i in &accepted {
                if let Some(slot) = outcomes.get_mut(i) {
                    *slot = Some(o.clone());
                }
            }
        };
        if !accepted.is_empty() {
            match conn.command("DATA\r\n").await {
                Ok(_) => {
                    let file = File::open(tx.clean)
                        .map_err(|e| broken("cannot open the clean message", e.to_string()));
                    let file = match file {
                        Ok(f) => f,
                        Err(e) => return Err(e),
                    };
                    let mut chunks = BodyChunks::new(file, poison.clone());
                    let res = conn.message_iter(&mut chunks).await;
                    if let Some(e) = chunks.error.take() {
                        return Err(broken("cannot read the clean message", e.to_string()));
                    }
                    if chunks.repaired {
                        tracing::warn!("delivery: bare CR/LF in a clean message rewritten as CRLF");
                    }
                    match res {
                        Ok(resp) => set_accepted(
                            &mut outcomes,
                            RcptOutcome::Delivered(Reply::from_response(&resp)),
                        ),
                        Err(e) => match classify(e) {
                            CmdError::Reply(r) => {
                                note(&r);
                                set_accepted(&mut outcomes, RcptOutcome::from_reply(r));
                            }
                            CmdError::Broken(e) => return Err(broken("end of DATA", e)),
                        },
                    }
                }
                Err(e) => match classify(e) {
                    CmdError::Reply(r) => {
                        note(&r);
                        set_accepted(&mut outcomes, RcptOutcome::from_reply(r));
                    }
                    CmdError::Broken(e) => return Err(broken("DATA", e)),
                },
            }
        }
        let out = outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| {
                    RcptOutcome::Deferred(Reply {
                        code: 451,
                        text: "4.3.0 no reply recorded".into(),
                    })
                })
            })
            .collect();
        Ok((out, reusable))
    }
}

/// Closes a connection politely (QUIT) but never waits long for it: lettre's `abort` waits for
/// the QUIT reply under the full command timeout, which a hung next hop would spend in vain.
async fn quit(conn: &mut AsyncSmtpConnection) {
    let _ = tokio::time::timeout(QUIT_WAIT, conn.abort()).await;
}

fn has_8bit(path: &Path) -> io::Result<bool> {
    let mut f = File::open(path)?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(false);
        }
        if buf.get(..n).unwrap_or_default().iter().any(|&b| b >= 0x80) {
            return Ok(true);
        }
    }
}

fn opportunistic_params(host: &str) -> Result<TlsParameters, String> {
    TlsParameters::builder(host.to_string())
        .dangerous_accept_invalid_certs(true)
        .dangerous_accept_invalid_hostnames(true)
        .build_rustls()
        .map_err(|e| e.to_string())
}

/// Verified TLS: the Mozilla roots plus the system bundle (where an LGWAN operator installs a
/// private CA).
fn required_params(host: &str) -> Result<TlsParameters, String> {
    let mut b =
        TlsParameters::builder(host.to_string()).certificate_store(CertificateStore::Default);
    for bundle in [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
    ] {
        if let Ok(pem) = std::fs::read(bundle) {
            if let Ok(c) = Certificate::from_pem(&pem) {
                b = b.add_root_certificate(c);
            }
            break;
        }
    }
    b.build_rustls().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that returns at most `n` bytes per read, to exercise every chunk boundary.
    struct Dribble<'a>(&'a [u8], usize);

    impl Read for Dribble<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(self.1).min(buf.len());
            let (head, tail) = self.0.split_at(n);
            buf[..n].copy_from_slice(head);
            self.0 = tail;
            Ok(n)
        }
    }

    fn chunks(input: &[u8], step: usize) -> (Vec<u8>, bool) {
        let mut c = BodyChunks::new(Dribble(input, step), Arc::new(AtomicBool::new(false)));
        let out: Vec<u8> = c.by_ref().flatten().collect();
        (out, c.repaired)
    }

    #[test]
    fn body_is_crlf_and_its_final_crlf_is_held_back() {
        let cases: [(&[u8], &[u8], bool); 7] = [
            (b"a\r\nb\r\n", b"a\r\nb", false),
            (b"a\r\nb", b"a\r\nb", false),
            (b"a\nb\n", b"a\r\nb", true),
            (b"a\rb\r", b"a\r\nb", true),
            (b"a\r\n\r\n", b"a\r\n", false),
            (b"\r\n", b"", false),
            (b"", b"", false),
        ];
        for (input, expected, repaired) in cases {
            for step in [1, 2, 3, 7, 1000] {
                let (out, rep) = chunks(input, step);
                assert_eq!(out, expected, "input {input:?} step {step}");
                assert_eq!(rep, repaired, "input {input:?} step {step}");
            }
        }
    }

    struct Failing(usize);

    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::other("disk on fire"));
            }
            self.0 -= 1;
            buf[0] = b'x';
            Ok(1)
        }
    }

    #[test]
    fn a_read_error_poisons_the_stream() {
        let poison = Arc::new(AtomicBool::new(false));
        let mut c = BodyChunks::new(Failing(3), poison.clone());
        let n: usize = c.by_ref().map(|v| v.len()).sum();
        assert_eq!(n, 3);
        assert!(c.error.is_some());
        assert!(poison.load(Ordering::SeqCst));
    }

    #[test]
    fn printable_bounds_and_cleans() {
        assert_eq!(
            printable("550 5.1.1\r\n  no\tsuch \u{1b}[31muser "),
            "550 5.1.1 no such ?[31muser"
        );
        assert!(printable(&"x".repeat(5000)).len() <= MAX_REPLY_TEXT + 3);
        assert_eq!(hop_host("127.0.0.1:25"), "127.0.0.1");
        assert_eq!(hop_host("[::1]:25"), "::1");
        assert_eq!(hop_host("mx.example:25"), "mx.example");
    }
}
