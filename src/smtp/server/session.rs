//! One SMTP session: the state machine between the socket and the sans-I/O protocol types.
//!
//! The loop is the one RFC 2920 asks for: take every complete command already buffered, answer
//! each in order into an output buffer, flush that buffer, and only then block on a read. DATA
//! and BDAT stream the message through [`DataReceiver`] / [`LineEndingCheck`] into the spool
//! entry as it arrives; at the end the message is sanitised in a blocking task under
//! `sanitize.timeout` and a panic boundary, committed, and only then answered with 250.
//!
//! Security-relevant choices, each deliberate:
//! - a refused DATA is still read to its one real end, so no byte of it becomes a command;
//! - a BDAT chunk is read whole even when refused, for the same reason; a BDAT whose size
//!   cannot be parsed ends the session;
//! - bytes pipelined after STARTTLS end the session (the STARTTLS command injection of
//!   CVE-2011-0411); after the handshake everything learnt in plaintext is forgotten;
//! - every wait is bounded (`command_timeout`, `data_timeout`), every buffer has a fixed size.

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::io::{Conn, InBuf};
use super::received::{received_value, TraceInfo};
use super::store::{Accepted, Entry, Store};
use super::Shared;
use crate::config::OnError;
use crate::pipeline::{Context, Report, SanitizeError};
use crate::smtp::proto::command::domain_of;
use crate::smtp::proto::reply::std_replies;
use crate::smtp::proto::{
    BodyType, Command, CommandError, DataReceiver, Enhanced, LineEndingCheck, LineError, LineEvent,
    LineSplitter, Reply,
};

/// Octets collected before one write to the original file.
const WRITE_CHUNK: usize = 64 << 10;
/// Replies buffered before they are written even though more commands are waiting.
const OUT_FLUSH: usize = 16 << 10;
/// Protocol errors tolerated in one session before it is closed.
const MAX_ERRORS: u32 = 20;

/// What the client said in EHLO/HELO.
#[derive(Debug, Clone)]
struct Helo {
    name: String,
    esmtp: bool,
}

/// A mail transaction: MAIL accepted, recipients being collected.
#[derive(Debug)]
struct Transaction {
    sender: String,
    recipients: Vec<String>,
    /// [`mailbox_key`] of every recipient, to accept duplicates without listing them twice.
    seen: HashSet<String>,
    smtputf8: bool,
    body: Option<BodyType>,
}

/// A BDAT transfer in progress.
struct Chunks<E> {
    /// `None` once the transfer failed (the entry and its files are dropped).
    entry: Option<E>,
    check: LineEndingCheck,
    size: u64,
    /// The reply for every further chunk once something went wrong.
    failed: Option<Reply>,
    pending: Vec<u8>,
}

impl<E: Entry> Chunks<E> {
    fn take(&mut self, bytes: &[u8], max: u64) {
        if self.failed.is_some() {
            return;
        }
        self.size = self.size.saturating_add(bytes.len() as u64);
        if self.size > max {
            self.fail(std_replies::too_big());
            return;
        }
        self.check.feed(bytes);
        self.pending.extend_from_slice(bytes);
        if self.pending.len() >= WRITE_CHUNK {
            self.write_pending();
        }
    }

    fn write_pending(&mut self) {
        if let Some(e) = self.entry.as_mut() {
            if let Err(err) = e.write_original(&self.pending) {
                tracing::warn!(id = %e.id(), error = %err, "smtp: cannot write to the spool");
                self.fail(std_replies::local_error());
            }
        }
        self.pending.clear();
    }

    fn fail(&mut self, reply: Reply) {
        self.failed = Some(reply);
        self.entry = None;
        self.pending = Vec::new();
    }
}

/// Where the session is.
enum State<E> {
    /// No mail transaction (before or after HELO: see `Session::helo`).
    Idle,
    /// MAIL accepted.
    Mail(Box<Transaction>),
    /// BDAT chunks arriving.
    Chunking(Box<Transaction>, Box<Chunks<E>>),
}

/// What the command loop does next.
enum Flow {
    Continue,
    Close,
}

/// The outcome of waiting for input.
enum Got {
    Bytes,
    Eof,
    Timeout,
    Shutdown,
}

pub(super) struct Session<IO, S: Store> {
    shared: Arc<Shared<S>>,
    peer: SocketAddr,
    conn: Conn<IO>,
    inbuf: InBuf,
    out: Vec<u8>,
    splitter: LineSplitter,
    helo: Option<Helo>,
    state: State<S::Entry>,
    /// Protocol and cipher, once STARTTLS succeeded.
    tls: Option<String>,
    errors: u32,
    shutdown: watch::Receiver<bool>,
    /// Shutdown was requested: finish the transaction in progress, start no new one.
    draining: bool,
    /// When the command line being received must be complete (`command_timeout`).
    line_deadline: Option<Instant>,
}

impl<IO, S> Session<IO, S>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Store,
{
    pub(super) fn new(shared: Arc<Shared<S>>, io: IO, peer: SocketAddr) -> Self {
        let max_line = shared.cfg.server.max_line_length.as_usize();
        let shutdown = shared.shutdown.subscribe();
        let draining = *shutdown.borrow();
        Session {
            inbuf: InBuf::new((64 << 10).max(max_line.saturating_add(64))),
            splitter: LineSplitter::new(max_line),
            shared,
            peer,
            conn: Conn::Plain(io),
            out: Vec::with_capacity(1024),
            helo: None,
            state: State::Idle,
            tls: None,
            errors: 0,
            shutdown,
            draining,
            line_deadline: None,
        }
    }

    fn client(&self) -> IpAddr {
        self.peer.ip().to_canonical()
    }

    fn hostname(&self) -> &str {
        &self.shared.cfg.server.hostname
    }

    /// Runs the session to its end; never fails (errors end the connection, logged).
    pub(super) async fn run(mut self) {
        let greeting = Reply::plain(220, format!("{} ESMTP mugaika", self.hostname()));
        self.reply(greeting);
        match self.serve().await {
            Ok(()) => {}
            Err(e) => tracing::debug!(client = %self.peer, error = %e, "smtp: session ended"),
        }
        let _ = self.flush().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.conn.shutdown()).await;
    }

    async fn serve(&mut self) -> io::Result<()> {
        loop {
            // Every complete command already received, answered in order (PIPELINING).
            loop {
                let parsed = match self.splitter.next(self.inbuf.data()) {
                    LineEvent::Line { line, consumed } => {
                        let parsed = crate::smtp::proto::parse(line);
                        self.inbuf.consume(consumed);
                        self.line_deadline = None;
                        Ok(parsed)
                    }
                    LineEvent::Error { error, consumed } => {
                        self.inbuf.consume(consumed);
                        self.line_deadline = None;
                        Err(error)
                    }
                    LineEvent::NeedMore { consumed } => {
                        self.inbuf.consume(consumed);
                        break;
                    }
                };
                let flow = match parsed {
                    Ok(cmd) => self.handle(cmd).await?,
                    Err(LineError::TooLong) => {
                        self.reply(std_replies::line_too_long());
                        Flow::Continue
                    }
                    Err(LineError::BareLineEnding) => {
                        self.reply(Reply::new(
                            500,
                            Enhanced(5, 5, 2),
                            "command lines must end in CRLF; bare CR or LF not allowed",
                        ));
                        Flow::Continue
                    }
                };
                if let Flow::Close = flow {
                    return Ok(());
                }
                if self.out.len() >= OUT_FLUSH {
                    // A client that pipelines without reading must not make us buffer its
                    // replies without bound; the write times out if it never reads.
                    self.flush().await?;
                }
                if self.errors >= MAX_ERRORS {
                    self.reply(Reply::new(
                        421,
                        Enhanced(4, 7, 0),
                        "too many errors, closing",
                    ));
                    return Ok(());
                }
            }
            self.flush().await?;
            if self.draining && matches!(self.state, State::Idle) {
                self.reply(shutting_down(self.hostname()));
                return Ok(());
            }
            // command_timeout bounds the wait for one whole command line, not each read: the
            // clock starts when we wait for a new command and is reset only when a complete
            // line has been taken, so a client trickling bytes cannot hold the slot forever.
            let limit = self.shared.cfg.server.command_timeout.0;
            let deadline = *self
                .line_deadline
                .get_or_insert_with(|| Instant::now() + limit);
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return self.timed_out();
            }
            match self.read_more(left, true).await? {
                Got::Bytes => {}
                Got::Shutdown => {}
                Got::Eof => return Err(io::ErrorKind::UnexpectedEof.into()),
                Got::Timeout => return self.timed_out(),
            }
        }
    }

    /// Queues a reply, counting protocol errors.
    fn reply(&mut self, r: Reply) {
        if matches!(r.code, 500..=503 | 555)
            || (r.code == 550 && r.enhanced == Some(Enhanced(5, 7, 1)))
        {
            self.errors += 1;
        }
        r.write_to(&mut self.out);
    }

    async fn flush(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let limit = self.shared.cfg.server.command_timeout.0;
        let res = tokio::time::timeout(limit, async {
            self.conn.write_all(&self.out).await?;
            self.conn.flush().await
        })
        .await;
        self.out.clear();
        match res {
            Ok(r) => r,
            Err(_) => Err(io::ErrorKind::TimedOut.into()),
        }
    }

    fn timed_out(&mut self) -> io::Result<()> {
        let text = format!("{} timeout exceeded, closing connection", self.hostname());
        self.reply(Reply::new(421, Enhanced(4, 4, 2), text));
        Err(io::ErrorKind::TimedOut.into())
    }

    /// Waits for more input (at most `limit`), and for shutdown when `watch_shutdown`.
    async fn read_more(&mut self, limit: Duration, watch_shutdown: bool) -> io::Result<Got> {
        enum Raw {
            Read(io::Result<usize>),
            Timeout,
            Shutdown,
        }
        let watching = watch_shutdown && !self.draining;
        let spare = self.inbuf.spare();
        if spare.is_empty() {
            // Cannot happen: lines are bounded below the capacity and data is consumed.
            return Err(io::Error::other("input buffer full"));
        }
        let conn = &mut self.conn;
        let shutdown = &mut self.shutdown;
        let raw = tokio::select! {
            r = tokio::time::timeout(limit, conn.read(spare)) => match r {
                Ok(r) => Raw::Read(r),
                Err(_) => Raw::Timeout,
            },
            _ = shutdown.changed(), if watching => Raw::Shutdown,
        };
        match raw {
            Raw::Read(Ok(0)) => Ok(Got::Eof),
            Raw::Read(Ok(n)) => {
                self.inbuf.filled(n);
                Ok(Got::Bytes)
            }
            Raw::Read(Err(e)) => Err(e),
            Raw::Timeout => Ok(Got::Timeout),
            Raw::Shutdown => {
                self.draining = true;
                Ok(Got::Shutdown)
            }
        }
    }

    /// Reads and drops `n` octets of a refused BDAT chunk.
    async fn skip_bytes(&mut self, mut n: u64) -> io::Result<()> {
        let deadline = Instant::now() + self.shared.cfg.server.data_timeout.0;
        loop {
            let take = usize::try_from(n)
                .unwrap_or(usize::MAX)
                .min(self.inbuf.data().len());
            self.inbuf.consume(take);
            n -= take as u64;
            if n == 0 {
                return Ok(());
            }
            self.need_data(deadline).await?;
        }
    }

    /// Reads more message data; EOF and the deadline end the session. The deadline is for
    /// the whole transfer, not per read: a client trickling one byte at a time must not hold
    /// a connection slot forever (slowloris).
    async fn need_data(&mut self, deadline: Instant) -> io::Result<()> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return self.timed_out();
        }
        match self.read_more(left, false).await? {
            Got::Bytes | Got::Shutdown => Ok(()),
            Got::Eof => Err(io::ErrorKind::UnexpectedEof.into()),
            Got::Timeout => self.timed_out(),
        }
    }

    async fn handle(&mut self, parsed: Result<Command, CommandError>) -> io::Result<Flow> {
        let cmd = match parsed {
            Ok(cmd) => cmd,
            Err(e) => {
                self.reply(e.reply());
                return Ok(if e.closes() {
                    Flow::Close
                } else {
                    Flow::Continue
                });
            }
        };
        match cmd {
            Command::Ehlo(name) => {
                self.state = State::Idle;
                let mut lines = vec![
                    format!("{} greets {}", self.hostname(), clean_word(&name)),
                    "PIPELINING".to_string(),
                    format!("SIZE {}", self.shared.cfg.server.max_message_size.0),
                    "8BITMIME".to_string(),
                    "ENHANCEDSTATUSCODES".to_string(),
                    "SMTPUTF8".to_string(),
                    "CHUNKING".to_string(),
                ];
                if self.shared.tls.is_some() && self.tls.is_none() {
                    lines.push("STARTTLS".to_string());
                }
                self.helo = Some(Helo { name, esmtp: true });
                self.reply(Reply::multi(250, lines));
            }
            Command::Helo(name) => {
                self.state = State::Idle;
                let text = format!("{} greets {}", self.hostname(), clean_word(&name));
                self.helo = Some(Helo { name, esmtp: false });
                self.reply(Reply::plain(250, text));
            }
            Command::Mail {
                from,
                size,
                body,
                smtputf8,
            } => {
                if self.draining {
                    self.reply(shutting_down(self.hostname()));
                    return Ok(Flow::Close);
                }
                let r = self.mail(from, size, body, smtputf8);
                self.reply(r);
            }
            Command::Rcpt { to } => {
                let r = self.rcpt(to);
                self.reply(r);
            }
            Command::Data => return self.data().await,
            Command::Bdat { size, last } => return self.bdat(size, last).await,
            Command::Rset => {
                self.state = State::Idle;
                self.reply(std_replies::ok());
            }
            Command::Noop => self.reply(std_replies::ok()),
            Command::Quit => {
                let text = format!("{} closing connection", self.hostname());
                self.reply(Reply::new(221, Enhanced(2, 0, 0), text));
                return Ok(Flow::Close);
            }
            Command::Vrfy => self.reply(Reply::new(
                252,
                Enhanced(2, 5, 0),
                "cannot VRFY user, but will accept message and attempt delivery",
            )),
            Command::Help => self.reply(Reply {
                code: 214,
                enhanced: Some(Enhanced(2, 0, 0)),
                lines: vec![
                    "mugaika, a mail sanitisation relay".into(),
                    "commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS"
                        .into(),
                ],
            }),
            Command::StartTls => return self.starttls().await,
        }
        Ok(Flow::Continue)
    }

    fn mail(
        &mut self,
        from: String,
        size: Option<u64>,
        body: Option<BodyType>,
        smtputf8: bool,
    ) -> Reply {
        let Some(helo) = &self.helo else {
            return std_replies::bad_sequence("send HELO/EHLO first");
        };
        if !matches!(self.state, State::Idle) {
            return std_replies::bad_sequence("nested MAIL command");
        }
        if !helo.esmtp && (size.is_some() || body.is_some() || smtputf8) {
            return Reply::new(555, Enhanced(5, 5, 4), "MAIL parameters require EHLO");
        }
        if size.is_some_and(|s| s > self.shared.cfg.server.max_message_size.0) {
            return std_replies::too_big();
        }
        if !from.is_ascii() && !smtputf8 {
            return non_ascii();
        }
        self.state = State::Mail(Box::new(Transaction {
            sender: from,
            recipients: Vec::new(),
            seen: HashSet::new(),
            smtputf8,
            body,
        }));
        Reply::new(250, Enhanced(2, 1, 0), "Ok")
    }

    fn rcpt(&mut self, to: String) -> Reply {
        let max = self.shared.cfg.server.max_recipients;
        let allowed = self.shared.relay_allowed(&domain_of(&to));
        let State::Mail(tx) = &mut self.state else {
            return std_replies::bad_sequence("need MAIL command");
        };
        if !to.is_ascii() && !tx.smtputf8 {
            return non_ascii();
        }
        if !allowed {
            crate::admin::metrics::relay_denied();
            return Reply::new(550, Enhanced(5, 7, 1), "relaying denied");
        }
        if tx.seen.contains(&mailbox_key(&to)) {
            return Reply::new(250, Enhanced(2, 1, 5), "Ok (duplicate recipient)");
        }
        if tx.recipients.len() >= max {
            return Reply::new(452, Enhanced(4, 5, 3), "too many recipients");
        }
        tx.seen.insert(mailbox_key(&to));
        tx.recipients.push(to);
        Reply::new(250, Enhanced(2, 1, 5), "Ok")
    }

    async fn data(&mut self) -> io::Result<Flow> {
        match &self.state {
            State::Idle => {
                self.reply(std_replies::bad_sequence("need MAIL command"));
                return Ok(Flow::Continue);
            }
            State::Chunking(..) => {
                self.reply(std_replies::bad_sequence("DATA not allowed after BDAT"));
                return Ok(Flow::Continue);
            }
            State::Mail(tx) if tx.recipients.is_empty() => {
                self.reply(no_recipients());
                return Ok(Flow::Continue);
            }
            State::Mail(_) => {}
        }
        let State::Mail(tx) = std::mem::replace(&mut self.state, State::Idle) else {
            return Ok(Flow::Continue);
        };
        let mut entry = match self.shared.store.create() {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "smtp: cannot create a spool entry");
                self.state = State::Mail(tx);
                self.reply(std_replies::local_error());
                return Ok(Flow::Continue);
            }
        };
        self.reply(Reply::plain(354, "End data with <CR><LF>.<CR><LF>"));
        self.flush().await?;

        let max = self.shared.cfg.server.max_message_size.0;
        let deadline = Instant::now() + self.shared.cfg.server.data_timeout.0;
        let mut rx = DataReceiver::new(max);
        let mut pending = Vec::with_capacity(WRITE_CHUNK + self.inbuf.data().len());
        let mut write_error = None;
        loop {
            let n = rx.feed(self.inbuf.data(), &mut pending);
            self.inbuf.consume(n);
            let o = rx.outcome();
            let refused = o.bare_line_ending || o.too_big || write_error.is_some();
            if refused {
                // Refused already: read on to the real end, but write nothing more.
                pending.clear();
            } else if pending.len() >= WRITE_CHUNK || (rx.is_done() && !pending.is_empty()) {
                if let Err(e) = entry.write_original(&pending) {
                    tracing::warn!(id = %entry.id(), error = %e, "smtp: cannot write to the spool");
                    write_error = Some(e);
                }
                pending.clear();
            }
            if rx.is_done() {
                break;
            }
            self.need_data(deadline).await?;
        }
        let o = rx.outcome();
        let reply = if o.bare_line_ending {
            std_replies::bare_line_ending()
        } else if o.too_big {
            std_replies::too_big()
        } else if write_error.is_some() {
            std_replies::local_error()
        } else {
            if o.nul_bytes > 0 {
                tracing::info!(id = %entry.id(), nul = o.nul_bytes, "smtp: NUL octets in message data");
            }
            return self.finish_message(*tx, entry, o.size).await;
        };
        self.audit(&tx, entry.id(), o.size, None, "refused", &reply);
        drop(entry);
        self.reply(reply);
        Ok(Flow::Continue)
    }

    async fn bdat(&mut self, size: u64, last: bool) -> io::Result<Flow> {
        // The chunk is read in every case: refused octets must never be taken for commands.
        let refusal = match &self.state {
            _ if !self.helo.as_ref().is_some_and(|h| h.esmtp) => {
                Some(std_replies::bad_sequence("BDAT requires EHLO"))
            }
            State::Idle => Some(std_replies::bad_sequence("need MAIL command")),
            State::Mail(tx) if tx.recipients.is_empty() => Some(no_recipients()),
            State::Mail(_) | State::Chunking(..) => None,
        };
        if let Some(r) = refusal {
            self.skip_bytes(size).await?;
            self.reply(r);
            return Ok(Flow::Continue);
        }
        let (tx, mut chunks) = match std::mem::replace(&mut self.state, State::Idle) {
            State::Chunking(tx, chunks) => (tx, chunks),
            State::Mail(tx) => {
                let mut chunks = Box::new(Chunks {
                    entry: None,
                    check: LineEndingCheck::new(),
                    size: 0,
                    failed: None,
                    pending: Vec::new(),
                });
                match self.shared.store.create() {
                    Ok(e) => chunks.entry = Some(e),
                    Err(e) => {
                        tracing::warn!(error = %e, "smtp: cannot create a spool entry");
                        chunks.fail(std_replies::local_error());
                    }
                }
                (tx, chunks)
            }
            State::Idle => return Ok(Flow::Continue),
        };
        let max = self.shared.cfg.server.max_message_size.0;
        let deadline = Instant::now() + self.shared.cfg.server.data_timeout.0;
        let mut left = size;
        loop {
            let avail = self.inbuf.data();
            let take = usize::try_from(left).unwrap_or(usize::MAX).min(avail.len());
            chunks.take(&avail[..take], max);
            self.inbuf.consume(take);
            left -= take as u64;
            if left == 0 {
                break;
            }
            // On EOF or timeout the chunks (and the entry's files) are dropped here.
            self.need_data(deadline).await?;
        }
        if chunks.failed.is_none() && chunks.check.has_bare() {
            chunks.fail(std_replies::bare_line_ending());
        }
        if !last {
            let r = match &chunks.failed {
                Some(r) => r.clone(),
                None => Reply::new(250, Enhanced(2, 0, 0), format!("{size} octets received")),
            };
            self.state = State::Chunking(tx, chunks);
            self.reply(r);
            return Ok(Flow::Continue);
        }
        if chunks.failed.is_none() {
            chunks.write_pending();
        }
        if chunks.failed.is_none() && chunks.check.finish() {
            chunks.fail(std_replies::bare_line_ending());
        }
        if let Some(r) = chunks.failed.take() {
            self.audit(&tx, "-", chunks.size, None, "refused", &r);
            self.reply(r);
            return Ok(Flow::Continue);
        }
        let Some(entry) = chunks.entry.take() else {
            self.reply(std_replies::local_error());
            return Ok(Flow::Continue);
        };
        self.finish_message(*tx, entry, chunks.size).await
    }

    async fn starttls(&mut self) -> io::Result<Flow> {
        let Some(acceptor) = self.shared.tls.clone() else {
            self.reply(Reply::new(502, Enhanced(5, 5, 1), "STARTTLS not available"));
            return Ok(Flow::Continue);
        };
        if self.tls.is_some() {
            self.reply(std_replies::bad_sequence("TLS already active"));
            return Ok(Flow::Continue);
        }
        if !matches!(self.state, State::Idle) {
            self.reply(std_replies::bad_sequence(
                "STARTTLS not allowed in a mail transaction",
            ));
            return Ok(Flow::Continue);
        }
        if !self.inbuf.is_empty() {
            // Plaintext sent after STARTTLS would otherwise be read as if it came through TLS.
            tracing::warn!(client = %self.peer, "smtp: command pipelined after STARTTLS");
            self.reply(Reply::new(
                554,
                Enhanced(5, 5, 1),
                "commands pipelined after STARTTLS are refused; closing connection",
            ));
            return Ok(Flow::Close);
        }
        self.reply(Reply::new(220, Enhanced(2, 0, 0), "Ready to start TLS"));
        self.flush().await?;
        let Conn::Plain(io) = std::mem::replace(&mut self.conn, Conn::Gone) else {
            return Ok(Flow::Close);
        };
        let limit = self.shared.cfg.server.command_timeout.0;
        match tokio::time::timeout(limit, acceptor.accept(io)).await {
            Ok(Ok(stream)) => {
                let (_, session) = stream.get_ref();
                let proto = session
                    .protocol_version()
                    .map(|v| format!("{v:?}").replace('_', "."))
                    .unwrap_or_else(|| "TLS".into());
                let suite = session
                    .negotiated_cipher_suite()
                    .map(|s| format!(" with cipher {:?}", s.suite()))
                    .unwrap_or_default();
                self.tls = Some(format!("using {proto}{suite}"));
                self.conn = Conn::Tls(Box::new(stream));
                // RFC 3207 4.2: forget everything learnt before the handshake.
                self.helo = None;
                self.state = State::Idle;
                self.inbuf.clear();
                self.splitter =
                    LineSplitter::new(self.shared.cfg.server.max_line_length.as_usize());
                Ok(Flow::Continue)
            }
            Ok(Err(e)) => {
                tracing::info!(client = %self.peer, error = %e, "smtp: TLS handshake failed");
                Ok(Flow::Close)
            }
            Err(_) => {
                tracing::info!(client = %self.peer, "smtp: TLS handshake timed out");
                Ok(Flow::Close)
            }
        }
    }

    /// Sanitises, commits and answers a complete message; the transaction is over after this.
    async fn finish_message(
        &mut self,
        tx: Transaction,
        entry: S::Entry,
        size: u64,
    ) -> io::Result<Flow> {
        let id = entry.id().to_string();
        let received_at = SystemTime::now();
        let helo = self.helo.clone().unwrap_or(Helo {
            name: String::new(),
            esmtp: false,
        });
        // Which `[[policy]]` rule applies to whom: one clean message per group of recipients
        // under the same rule (issue 7), each sanitised under its own settings.
        let original = entry.original_path().to_path_buf();
        let groups = policy_groups(
            self.shared.clone(),
            self.client(),
            tx.sender.clone(),
            tx.recipients.clone(),
            original,
            size,
        )
        .await;
        let mut done: Vec<(Report, &'static str)> = Vec::with_capacity(groups.len());
        // Recorded however this ends (refusals included): the histogram is every sanitising.
        let _timer = SanitizeTimer(Instant::now());
        for (g, (resolved, rcpts)) in groups.iter().enumerate() {
            let received = received_value(&TraceInfo {
                helo: &helo.name,
                client: self.client(),
                hostname: self.hostname(),
                id: &id,
                esmtp: helo.esmtp,
                tls: self.tls.as_deref(),
                for_rcpt: match rcpts.as_slice() {
                    [one] => Some(one.as_str()),
                    _ => None,
                },
                when: received_at,
            });
            let ctx = Context {
                received: Some(received),
                quarantine_id: Some(id.clone()),
                temp_dir: entry.scratch_path("spill").parent().map(Path::to_path_buf),
                sanitize: resolved.rule.is_some().then(|| resolved.sanitize.clone()),
                policy: resolved.rule.clone(),
                first_contact: resolved.first_contact,
            };
            let (original, clean) = (
                entry.original_path().to_path_buf(),
                entry.group_clean_path(g),
            );
            let scratch = [
                entry.scratch_path(&format!("sanitizing{g}")),
                entry.scratch_path(&format!("notice{g}")),
            ];
            let paths = |suffix: &str| EntryPaths {
                original: original.clone(),
                clean: clean.clone(),
                scratch: scratch[usize::from(suffix == "notice")].clone(),
            };
            let limit = resolved.sanitize.timeout.0;
            let sanitizer = self.shared.sanitizer.clone();
            let result = bounded(paths("sanitizing"), limit, ctx.clone(), move |o, c, out| {
                sanitizer.sanitize(o, c, out)
            })
            .await;
            match result {
                Ok(report) => done.push((report, "queued")),
                Err(SanitizeError::Rejected(why)) => {
                    let r = Reply::new(554, Enhanced(5, 6, 0), format!("message refused: {why}"));
                    self.audit(&tx, &id, size, None, "rejected", &r);
                    self.reply(r);
                    return Ok(Flow::Continue);
                }
                Err(err) => {
                    tracing::warn!(id = %id, error = %err, "smtp: sanitising failed");
                    if resolved.sanitize.on_error == OnError::Reject {
                        let r = Reply::new(
                            554,
                            Enhanced(5, 6, 0),
                            "message could not be sanitised and is refused",
                        );
                        self.audit(&tx, &id, size, None, "rejected-on-error", &r);
                        self.reply(r);
                        return Ok(Flow::Continue);
                    }
                    let sanitizer = self.shared.sanitizer.clone();
                    let reason = err.to_string();
                    let notice = bounded(paths("notice"), limit, ctx, move |o, c, out| {
                        sanitizer.notice_only(o, c, &reason, out)
                    })
                    .await;
                    match notice {
                        Ok(report) => done.push((report, "quarantined")),
                        Err(e) => {
                            tracing::warn!(id = %id, error = %e, "smtp: notice-only message failed");
                            let r = std_replies::local_error();
                            self.audit(&tx, &id, size, None, "failed", &r);
                            self.reply(r);
                            return Ok(Flow::Continue);
                        }
                    }
                }
            }
        }
        drop(_timer);
        let Some((report, outcome)) = done.first().cloned() else {
            // No recipients cannot happen after RCPT; refuse rather than queue nothing.
            let r = std_replies::local_error();
            self.audit(&tx, &id, size, None, "failed", &r);
            self.reply(r);
            return Ok(Flow::Continue);
        };
        let outcome = if done.iter().any(|(_, o)| *o == "quarantined") {
            "quarantined"
        } else {
            outcome
        };
        // The quarantine index keeps every group's actions; the reason is the strongest.
        let actions: Vec<&crate::sanitise::Action> =
            done.iter().flat_map(|(r, _)| r.actions.iter()).collect();
        let reason = done
            .iter()
            .map(|(r, _)| crate::quarantine::kept_reason(r))
            .max_by_key(|r| match r.as_str() {
                r if r.starts_with("on-error") => 3,
                "encrypted archive" => 2,
                "sanitized" => 1,
                _ => 0,
            })
            .unwrap_or_else(|| crate::quarantine::kept_reason(&report));
        let mut group_of = vec![0usize; tx.recipients.len()];
        for (g, (_, rcpts)) in groups.iter().enumerate() {
            for r in rcpts {
                if let Some(i) = tx.recipients.iter().position(|x| x == r) {
                    group_of[i] = g;
                }
            }
        }
        let policies = groups_summary(&groups);
        let accepted = Accepted {
            id: id.clone(),
            sender: tx.sender.clone(),
            recipients: tx.recipients.clone(),
            client: self.client(),
            helo: helo.name.clone(),
            received_at,
            tls: self.tls.is_some(),
            smtputf8: tx.smtputf8,
            size,
            quarantine_id: Some(id.clone()),
            subject: report.subject.clone(),
            message_id: report.message_id.clone(),
            actions: serde_json::to_value(&actions).unwrap_or_default(),
            reason,
            groups: group_of,
        };
        let queued = self.shared.queued.clone();
        // The commit and the queue notification happen together in the blocking task, so a
        // session aborted while waiting still leaves a committed entry the queue knows about.
        let committed = tokio::task::spawn_blocking(move || {
            let r = entry.commit(&accepted);
            if r.is_ok() {
                if let Some(q) = queued {
                    let _ = q.send(accepted.id.clone());
                }
            }
            r
        })
        .await;
        let reply = match committed {
            Ok(Ok(())) => Reply::new(250, Enhanced(2, 0, 0), format!("Ok: queued as {id}")),
            Ok(Err(e)) => {
                tracing::warn!(id = %id, error = %e, "smtp: spool commit failed");
                std_replies::local_error()
            }
            Err(e) => {
                tracing::warn!(id = %id, error = %e, "smtp: spool commit task failed");
                std_replies::local_error()
            }
        };
        let outcome = if reply.is_positive() {
            outcome
        } else {
            "failed"
        };
        self.audit_with(&tx, &id, size, Some(&report), outcome, &reply, &policies);
        self.reply(reply);
        Ok(Flow::Continue)
    }

    /// The one audit record of a message that reached its end of data.
    fn audit(
        &self,
        tx: &Transaction,
        id: &str,
        size: u64,
        report: Option<&Report>,
        outcome: &str,
        reply: &Reply,
    ) {
        self.audit_with(tx, id, size, report, outcome, reply, "")
    }

    /// [`Session::audit`] with the policy rules applied (`rule:rcpt,rcpt;...`).
    #[allow(clippy::too_many_arguments)]
    fn audit_with(
        &self,
        tx: &Transaction,
        id: &str,
        size: u64,
        report: Option<&Report>,
        outcome: &str,
        reply: &Reply,
        policies: &str,
    ) {
        let actions = report
            .map(|r| serde_json::to_string(&r.actions).unwrap_or_default())
            .unwrap_or_else(|| "[]".into());
        let status = report.map(|r| r.status.as_str()).unwrap_or("");
        let helo = self.helo.as_ref().map(|h| h.name.as_str()).unwrap_or("");
        crate::admin::metrics::message(outcome, reply.code, report);
        tracing::info!(
            target: "audit",
            id = %id,
            client = %self.client(),
            helo = %helo,
            tls = self.tls.is_some(),
            sender = %tx.sender,
            recipients = %tx.recipients.join(","),
            size,
            body = ?tx.body,
            status = %status,
            actions = %actions,
            outcome = %outcome,
            policies = %policies,
            reply = %reply.summary(),
            "message"
        );
    }
}

/// Runs one sanitiser call in a blocking task under `limit` and a panic boundary. The output
/// is written to a scratch file outside the entry and renamed onto the entry's clean path only
/// if the deadline has not passed; a call that overruns keeps running (threads cannot be
/// killed) but can no longer touch the entry, and removes its own scratch file when it ends.
async fn bounded<F>(
    paths: EntryPaths,
    limit: Duration,
    ctx: Context,
    f: F,
) -> Result<Report, SanitizeError>
where
    F: FnOnce(&Path, &Context, &Path) -> Result<Report, SanitizeError> + Send + 'static,
{
    #[derive(PartialEq)]
    enum Phase {
        Running,
        Finished,
        Abandoned,
    }
    let EntryPaths {
        original,
        clean,
        scratch,
    } = paths;
    // At most a few sanitisers run at once, whatever the number of sessions: the work is
    // CPU-bound, and each may hold a bounded but not small amount of memory (an HTML body in
    // the converter, the verifier's parse), so 50 sessions finishing DATA together must queue
    // here rather than multiply the peak RSS. The permit is held by this future, not by the
    // blocking thread, so a sanitiser abandoned at its deadline frees its slot.
    let _permit = sanitizer_slots().acquire().await.ok();
    let phase = Arc::new(Mutex::new(Phase::Running));
    let phase2 = phase.clone();
    let task = tokio::task::spawn_blocking(move || {
        let r = std::panic::catch_unwind(AssertUnwindSafe(|| f(&original, &ctx, &scratch)))
            .unwrap_or_else(|p| Err(SanitizeError::Internal(panic_text(p.as_ref()))));
        let mut phase = phase2.lock().unwrap_or_else(|e| e.into_inner());
        if *phase == Phase::Abandoned {
            let _ = std::fs::remove_file(&scratch);
            return Err(SanitizeError::Timeout(limit));
        }
        *phase = Phase::Finished;
        match r {
            Ok(report) => std::fs::rename(&scratch, &clean)
                .map(|()| report)
                .map_err(|e| {
                    let _ = std::fs::remove_file(&scratch);
                    SanitizeError::Internal(format!(
                        "cannot move the clean message into place: {e}"
                    ))
                }),
            Err(e) => {
                let _ = std::fs::remove_file(&scratch);
                Err(e)
            }
        }
    });
    match tokio::time::timeout(limit, task).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(SanitizeError::Internal(format!(
            "sanitiser task failed: {e}"
        ))),
        Err(_) => {
            let mut p = phase.lock().unwrap_or_else(|e| e.into_inner());
            if *p == Phase::Running {
                *p = Phase::Abandoned;
            }
            Err(SanitizeError::Timeout(limit))
        }
    }
}

/// The process-wide limit on sanitisers running at once: twice the available cores.
fn sanitizer_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::sync::Semaphore::new((cores * 2).max(2))
    })
}

/// The files one sanitiser call works on.
struct EntryPaths {
    original: PathBuf,
    clean: PathBuf,
    /// Outside the entry: see [`Entry::scratch_path`].
    scratch: PathBuf,
}

/// Groups the recipients by the `[[policy]]` rule that applies to each (one group under
/// the global settings when there are no rules). First contact is looked up in the
/// quarantine index only when a first-contact rule is configured; a failed lookup counts
/// as a first contact (the stricter handling).
async fn policy_groups<S: Store>(
    shared: Arc<Shared<S>>,
    client: IpAddr,
    sender: String,
    recipients: Vec<String>,
    original: PathBuf,
    size: u64,
) -> Vec<(crate::policy::Resolved, Vec<String>)> {
    let policies = shared.policies.clone();
    let cfg = &shared.cfg;
    let first_contact = if policies.first_contact_enabled() && !sender.is_empty() {
        let store = shared.store.clone();
        let sender = sender.clone();
        let days = u64::from(cfg.policies.first_contact_days);
        let since = SystemTime::now()
            .checked_sub(Duration::from_secs(days.saturating_mul(86_400)))
            .unwrap_or(SystemTime::UNIX_EPOCH);
        match tokio::task::spawn_blocking(move || store.seen_since(&sender, since)).await {
            Ok(Ok(Some(seen))) => !seen,
            Ok(Ok(None)) => false,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "smtp: first-contact lookup failed; treated as a first contact");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "smtp: first-contact lookup task failed; treated as a first contact");
                true
            }
        }
    } else {
        false
    };
    // Authentication-Results of a trusted upstream, from the original's header block.
    let auth = if policies.trusted_authserv_ids().is_empty() {
        Vec::new()
    } else {
        let path = original.clone();
        let trusted = policies.trusted_authserv_ids().to_vec();
        tokio::task::spawn_blocking(move || {
            let head = read_header_block(&path, 256 << 10).unwrap_or_default();
            crate::policy::auth_results(&head, &trusted)
        })
        .await
        .unwrap_or_default()
    };
    let facts = crate::policy::Facts {
        sender: &sender,
        recipient: "",
        client: Some(client),
        size,
        auth: &auth,
        first_contact,
    };
    policies.group(&facts, &recipients)
}

/// Records the sanitising time of a message when dropped.
struct SanitizeTimer(Instant);

impl Drop for SanitizeTimer {
    fn drop(&mut self) {
        crate::admin::metrics::sanitized(self.0.elapsed());
    }
}

/// Which rule applied to which recipients, for the audit record: `rule:a@x,b@x;default:c@x`
/// (empty when everyone is under the global settings).
fn groups_summary(groups: &[(crate::policy::Resolved, Vec<String>)]) -> String {
    if groups.len() == 1 && groups[0].0.rule.is_none() {
        return String::new();
    }
    groups
        .iter()
        .map(|(r, rcpts)| {
            let name = r.rule.as_deref().unwrap_or("default");
            let fc = if r.first_contact {
                "(first-contact)"
            } else {
                ""
            };
            format!("{name}{fc}:{}", rcpts.join(","))
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// The header block of the message at `path` (up to the first empty line, at most `max`
/// octets): what the policy's Authentication-Results check reads.
fn read_header_block(path: &Path, max: usize) -> io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut buf = Vec::new();
    std::fs::File::open(path)?
        .take(max as u64)
        .read_to_end(&mut buf)?;
    let end = memchr::memmem::find(&buf, b"\r\n\r\n")
        .map(|i| i + 2)
        .or_else(|| memchr::memmem::find(&buf, b"\n\n").map(|i| i + 1))
        .unwrap_or(buf.len());
    buf.truncate(end);
    Ok(buf)
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    let msg = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown".into());
    format!("sanitiser panicked: {msg}")
}

/// Identifies a mailbox: local part exact, domain case-insensitive.
fn mailbox_key(addr: &str) -> String {
    match addr.rsplit_once('@') {
        Some((local, domain)) => format!("{local}@{}", domain.to_lowercase()),
        None => addr.to_string(),
    }
}

/// A client-supplied word, safe to echo.
fn clean_word(s: &str) -> String {
    s.chars()
        .take(255)
        .filter(|c| c.is_ascii_graphic())
        .collect()
}

fn non_ascii() -> Reply {
    Reply::new(
        553,
        Enhanced(5, 6, 7),
        "non-ASCII address requires SMTPUTF8",
    )
}

fn no_recipients() -> Reply {
    Reply::new(554, Enhanced(5, 5, 1), "no valid recipients")
}

fn shutting_down(hostname: &str) -> Reply {
    Reply::new(
        421,
        Enhanced(4, 3, 2),
        format!("{hostname} shutting down, try again later"),
    )
}
