//! The canonical clean-message writer: turns a [`CleanModel`] into the message that is delivered.
//!
//! Nothing of the original MIME structure or header is copied through: every field is written
//! afresh from decoded values, in a fixed order, with our own boundaries and transfer encodings.
//! A parser-differential trick in the input therefore has nothing to survive in. The output is
//! CRLF only, every line is at most 998 octets (header lines are folded at 78 where possible),
//! and every octet is 7-bit: non-ASCII header text becomes RFC 2047 encoded words, file names
//! RFC 2231 parameters, the text part quoted-printable, base64 or (ISO-2022-JP) 7bit.
//!
//! The message is written as a stream: the text is read from the [`TextSource`] twice (a
//! pre-scan that decides charset and transfer encoding, then the write), never held whole.
//!
//! Decisions worth knowing:
//! - **ISO-2022-JP** output is strict JIS X 0208 (rows 1-8 and 16-84) plus ASCII; half-width
//!   katakana are converted to full width (with their voiced marks combined). NEC and IBM
//!   extension characters (①, ㈱, 髙), emoji and the like cannot be held: when the text has any,
//!   the whole text part is written in UTF-8 instead and a `CharsetFallback` action is added
//!   (so the notice says so). A header field that cannot be held is written with UTF-8 encoded
//!   words. Every ISO-2022-JP line and encoded word returns to ASCII before it ends.
//! - **Addresses** are written from the parsed list. An addr-spec that is not plain ASCII (an
//!   internationalised address) or not syntactically an address cannot go into a 7-bit header;
//!   it is kept as an empty *group* whose display name is the name and the address, e.g.
//!   `=?UTF-8?B?...?=:;`, so the reader still sees who it was but no mail is sent to it by a
//!   reply. In Sender (a single mailbox) such an address is dropped. No From is invented when
//!   the original had none.
//! - **Boundaries** contain `=_` (impossible in quoted-printable and base64 output) and are
//!   derived from a SHA-256 over the text, the notice, the headers and the attachments, so they
//!   are deterministic for golden tests yet cannot be predicted by a sender who would like to
//!   place one inside their text. The same digest names a generated Message-ID.

use std::io::{self, Read, Write};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::config::{Language, OutputCharset};
use crate::mime::header::Address;
use crate::sanitise::{Action, ActionKind, CleanModel, KeptAttachment, TextBuffer, TopHeaders};

/// Soft limit for header lines (RFC 5322 "SHOULD").
const FOLD_AT: usize = 78;
/// Longest encoded word (RFC 2047).
const MAX_WORD: usize = 75;
/// Hard limit for any line, CRLF excluded (RFC 5322 "MUST").
pub const MAX_LINE: usize = 998;
/// The line between the notice and the text.
pub const SEPARATOR: &str = "----------------------------------------";
/// Longest base64 line of an attachment or text part.
const B64_LINE: usize = 76;

/// How the notice text is obtained.
#[derive(Clone)]
pub enum NoticeSource {
    /// Rendered from the model's actions once rebuild has added its own (a charset fallback),
    /// typically with `sanitise::notice::render`.
    Render {
        render: fn(&[Action], Language, Option<&str>) -> String,
        lang: Language,
    },
    /// A fixed text (notice-only messages, tests).
    Text(String),
}

impl std::fmt::Debug for NoticeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoticeSource::Render { lang, .. } => write!(f, "Render({lang:?})"),
            NoticeSource::Text(t) => write!(f, "Text({} bytes)", t.len()),
        }
    }
}

/// What rebuild needs besides the model.
#[derive(Debug, Clone)]
pub struct RebuildOptions {
    /// `sanitize.output_charset`.
    pub charset: OutputCharset,
    /// `sanitize.subject_tag`: prepended verbatim, with a space, to the Subject when not
    /// empty (the administrator writes the brackets: `"[無害化]"`, `"【外部メール】"`).
    pub subject_tag: String,
    /// The notice at the top of the text part.
    pub notice: NoticeSource,
    /// Our `Received:` value (without the field name), written first.
    pub received: Option<String>,
    /// The quarantine id: `X-Mugaika-Quarantine-Id` and the notice.
    pub quarantine_id: Option<String>,
    /// Right-hand side of a generated Message-ID.
    pub hostname: String,
    /// `X-Mugaika-Status` value; `None` derives it from the actions
    /// (`sanitized; actions=N`, or `clean` when there are none).
    pub status: Option<String>,
    /// The Date written when the original has no usable one; `None` means now.
    pub now: Option<SystemTime>,
}

impl Default for RebuildOptions {
    fn default() -> Self {
        RebuildOptions {
            charset: OutputCharset::Utf8,
            subject_tag: String::new(),
            notice: NoticeSource::Text(String::new()),
            received: None,
            quarantine_id: None,
            hostname: "localhost".into(),
            status: None,
            now: None,
        }
    }
}

/// The transfer encoding chosen for the text part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum TextEncoding {
    SevenBit,
    QuotedPrintable,
    Base64,
}

impl TextEncoding {
    pub fn as_str(self) -> &'static str {
        match self {
            TextEncoding::SevenBit => "7bit",
            TextEncoding::QuotedPrintable => "quoted-printable",
            TextEncoding::Base64 => "base64",
        }
    }
}

/// What rebuild wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuildInfo {
    pub bytes_written: u64,
    /// The charset of the text part.
    pub charset: OutputCharset,
    /// ISO-2022-JP was asked for but the text part is UTF-8 (a CharsetFallback action was added).
    pub fallback: bool,
    /// Some header field was written in UTF-8 although ISO-2022-JP was asked for.
    pub header_fallback: bool,
    pub encoding: TextEncoding,
    /// The Message-ID written (without angle brackets).
    pub message_id: String,
    /// The multipart boundary, when there are attachments.
    pub boundary: Option<String>,
    /// The notice as written (so that the caller can report it).
    pub notice: String,
}

/// Why rebuild could not write the message.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("writing the clean message: {0}")]
    Io(#[from] io::Error),
    #[error("attachment {index}: {reason}")]
    Attachment { index: usize, reason: String },
    #[error("internal: {0}")]
    Internal(String),
}

/// The clean text, readable from the start as often as rebuild needs.
pub trait TextSource {
    type Reader<'a>: Read
    where
        Self: 'a;
    fn open(&mut self) -> io::Result<Self::Reader<'_>>;
}

impl TextSource for TextBuffer {
    type Reader<'a> = crate::sanitise::buffer::BufferReader<'a>;
    fn open(&mut self) -> io::Result<Self::Reader<'_>> {
        self.reader()
    }
}

/// A text held in memory (tests, notice-only messages).
impl TextSource for &str {
    type Reader<'a>
        = &'a [u8]
    where
        Self: 'a;
    fn open(&mut self) -> io::Result<&[u8]> {
        Ok(self.as_bytes())
    }
}

/// Writes the clean message for `model` to `out`. May add a `CharsetFallback` action to
/// `model.actions` (before the notice is rendered).
pub fn write_clean<W: Write>(
    model: &mut CleanModel,
    opts: &RebuildOptions,
    out: W,
) -> Result<RebuildInfo, RebuildError> {
    write_message(
        &model.headers,
        &mut model.text,
        &model.attachments,
        &mut model.actions,
        opts,
        out,
    )
}

/// [`write_clean`] over the model's pieces, for any [`TextSource`].
pub fn write_message<T: TextSource, W: Write>(
    headers: &TopHeaders,
    text: &mut T,
    attachments: &[KeptAttachment],
    actions: &mut Vec<Action>,
    opts: &RebuildOptions,
    out: W,
) -> Result<RebuildInfo, RebuildError> {
    // Pass 1: what the text needs.
    let iso = opts.charset == OutputCharset::Iso2022Jp;
    let text_scan = scan(text.open()?, iso)?;
    // ISO-2022-JP only if both the text and the notice (which may quote file names) fit.
    let mut fallback = iso && !text_scan.jis_ok;
    if iso && !fallback {
        fallback = !scan(render_notice(opts, actions).as_bytes(), true)?.jis_ok;
    }
    if fallback {
        // Added before the final rendering, so that the notice mentions it.
        actions.push(fallback_action());
    }
    let notice = render_notice(opts, actions);
    let notice_scan = scan(notice.as_bytes(), iso)?;
    let has_text = text_scan.chars > 0;
    let has_notice = !notice.is_empty();
    let sep_scan = scan(SEPARATOR.as_bytes(), iso)?;
    let mut total = notice_scan.clone();
    if has_notice && has_text {
        total.merge(&sep_scan);
    }
    total.merge(&text_scan);

    let charset = if fallback {
        OutputCharset::Utf8
    } else {
        opts.charset
    };
    let encoding = match charset {
        OutputCharset::Iso2022Jp => {
            if total.jis_max_line <= MAX_LINE as u64 {
                TextEncoding::SevenBit
            } else {
                TextEncoding::Base64
            }
        }
        OutputCharset::Utf8 => {
            // Quoted-printable costs 3 octets per escaped octet, base64 4 per 3: choose QP
            // (readable in a raw view) while fewer than a sixth of the octets need escaping.
            if total.qp_escapes.saturating_mul(6) < total.utf8_bytes.max(1) {
                TextEncoding::QuotedPrintable
            } else {
                TextEncoding::Base64
            }
        }
    };

    // The digest names the boundary and a generated Message-ID.
    let mut h = Sha256::new();
    h.update(b"mugaika-rebuild-1\0");
    h.update(text_scan.digest);
    h.update(notice.as_bytes());
    h.update(format!("{headers:?}").as_bytes());
    for a in attachments {
        h.update(a.filename.as_bytes());
        h.update([0]);
        h.update(a.content_type.as_bytes());
        h.update([0]);
        h.update(Sha256::digest(&a.data));
    }
    let digest = hex(&h.finalize()[..16]);

    let mut w = CountingWriter {
        inner: io::BufWriter::with_capacity(64 << 10, out),
        count: 0,
    };
    let mut hf = HeaderCtx {
        charset: opts.charset,
        fallback: false,
    };
    let message_id = write_top_headers(&mut w, headers, opts, &digest, &mut hf)?;

    let text_ct = match charset {
        OutputCharset::Utf8 => "text/plain; charset=UTF-8",
        OutputCharset::Iso2022Jp => "text/plain; charset=ISO-2022-JP",
    };
    let boundary = if attachments.is_empty() {
        w.write_all(format!("Content-Type: {text_ct}\r\n").as_bytes())?;
        w.write_all(format!("Content-Transfer-Encoding: {}\r\n", encoding.as_str()).as_bytes())?;
        write_status_headers(&mut w, opts, actions)?;
        w.write_all(b"\r\n")?;
        None
    } else {
        let b = format!("=_mugaika_{digest}");
        w.write_all(format!("Content-Type: multipart/mixed;\r\n boundary=\"{b}\"\r\n").as_bytes())?;
        write_status_headers(&mut w, opts, actions)?;
        w.write_all(b"\r\n")?;
        w.write_all(format!("--{b}\r\n").as_bytes())?;
        w.write_all(format!("Content-Type: {text_ct}\r\n").as_bytes())?;
        w.write_all(
            format!("Content-Transfer-Encoding: {}\r\n\r\n", encoding.as_str()).as_bytes(),
        )?;
        Some(b)
    };

    // Pass 2: the text part.
    {
        let mut body = BodyWriter::new(&mut w, charset, encoding);
        if has_notice {
            body.feed(notice.as_bytes())?;
            body.end_line_if_open()?;
            if has_text {
                body.feed(SEPARATOR.as_bytes())?;
                body.feed(b"\n")?;
            }
        }
        let mut r = text.open()?;
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            body.feed(&buf[..n])?;
        }
        body.finish()?;
    }

    if let Some(b) = &boundary {
        for (i, a) in attachments.iter().enumerate() {
            w.write_all(format!("--{b}\r\n").as_bytes())?;
            write_attachment(&mut w, i, a, &mut hf)?;
        }
        w.write_all(format!("--{b}--\r\n").as_bytes())?;
    }
    w.inner.flush()?;
    Ok(RebuildInfo {
        bytes_written: w.count,
        charset,
        fallback,
        header_fallback: hf.fallback,
        encoding,
        message_id,
        boundary,
        notice,
    })
}

fn fallback_action() -> Action {
    Action {
        part: 0,
        kind: ActionKind::CharsetFallback,
        name: None,
        declared_type: "text/plain".into(),
        detected_type: None,
        reason: "text the output charset ISO-2022-JP cannot hold; written in UTF-8".into(),
        bytes_before: 0,
        bytes_after: 0,
    }
}

fn render_notice(opts: &RebuildOptions, actions: &[Action]) -> String {
    match &opts.notice {
        NoticeSource::Text(t) => t.clone(),
        NoticeSource::Render { render, lang } => {
            render(actions, *lang, opts.quarantine_id.as_deref())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Headers

struct HeaderCtx {
    charset: OutputCharset,
    /// Set when a field had to be written in UTF-8 although ISO-2022-JP was asked for.
    fallback: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum WordCharset {
    Utf8,
    Jis,
}

impl HeaderCtx {
    /// The charset for encoded words of `text`: ISO-2022-JP when asked for and possible.
    fn word_charset(&mut self, text: &str) -> WordCharset {
        if self.charset == OutputCharset::Iso2022Jp {
            if jis_encodable(text) {
                return WordCharset::Jis;
            }
            self.fallback = true;
        }
        WordCharset::Utf8
    }
}

/// One header field being folded.
struct Field {
    s: String,
    line_len: usize,
    /// Whether the current line holds a token (we never fold right after the colon).
    has_token: bool,
}

impl Field {
    fn new(name: &str) -> Field {
        let s = format!("{name}:");
        let line_len = s.len();
        Field {
            s,
            line_len,
            has_token: false,
        }
    }

    /// Room for a first token on the name line (after `Name: `).
    fn first_room(&self) -> usize {
        FOLD_AT.saturating_sub(self.line_len + 1)
    }

    /// Appends a token preceded by whitespace, folding before it when the line would pass 78.
    fn token(&mut self, tok: &str) {
        // Tokens are built short; a longer one (a long Received word) is cut so that no line
        // can ever pass the hard limit.
        if tok.len() > MAX_LINE - 2 {
            let mut rest = tok;
            while !rest.is_empty() {
                let cut = floor_char_boundary(rest, 900.min(rest.len()));
                let cut = if cut == 0 { rest.len() } else { cut };
                self.token(&rest[..cut]);
                rest = &rest[cut..];
            }
            return;
        }
        if self.has_token && self.line_len + 1 + tok.len() > FOLD_AT {
            self.s.push_str("\r\n ");
            self.line_len = 1;
        } else {
            self.s.push(' ');
            self.line_len += 1;
        }
        self.s.push_str(tok);
        self.line_len += tok.len();
        self.has_token = true;
    }

    /// Appends text directly after the previous token (a comma, `:;`).
    fn glue(&mut self, t: &str) {
        if self.line_len + t.len() > MAX_LINE {
            self.s.push_str("\r\n ");
            self.line_len = 1;
        }
        self.s.push_str(t);
        self.line_len += t.len();
    }

    fn finish(mut self) -> String {
        self.s.push_str("\r\n");
        self.s
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Writes the header up to (not including) the MIME fields; returns the Message-ID used.
fn write_top_headers<W: Write>(
    w: &mut W,
    h: &TopHeaders,
    opts: &RebuildOptions,
    digest: &str,
    hf: &mut HeaderCtx,
) -> io::Result<String> {
    let mut out = String::new();
    if let Some(r) = &opts.received {
        let clean: String = r
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() {
                    c
                } else if c.is_whitespace() || c.is_control() {
                    ' '
                } else {
                    '?'
                }
            })
            .collect();
        let mut f = Field::new("Received");
        for t in clean.split(' ').filter(|t| !t.is_empty()) {
            f.token(t);
        }
        out.push_str(&f.finish());
    }
    for (name, list, single) in [
        ("From", &h.from, false),
        ("Sender", &h.sender, true),
        ("Reply-To", &h.reply_to, false),
        ("To", &h.to, false),
        ("Cc", &h.cc, false),
    ] {
        if let Some(f) = address_field(name, list, single, hf) {
            out.push_str(&f);
        }
    }
    let tag = clean_text(&opts.subject_tag);
    let tag = tag.trim();
    let subject = match (h.subject.as_deref().map(clean_text), tag.is_empty()) {
        (Some(s), true) => Some(s),
        (Some(s), false) => {
            // A reply to a tagged message already carries the tag: do not stack them.
            if s.trim_start().starts_with(tag) {
                Some(s)
            } else {
                Some(format!("{tag} {s}"))
            }
        }
        (None, false) => Some(tag.to_string()),
        (None, true) => None,
    };
    if let Some(s) = subject {
        out.push_str(&unstructured_field("Subject", &s, hf));
    }
    let date = h
        .date
        .as_deref()
        .and_then(canonical_date)
        .unwrap_or_else(|| format_date(opts.now.unwrap_or_else(SystemTime::now)));
    out.push_str(&format!("Date: {date}\r\n"));
    let host = if is_msgid_part(&opts.hostname) && !opts.hostname.contains('@') {
        opts.hostname.as_str()
    } else {
        "localhost"
    };
    let message_id = match h.message_id.as_deref().map(strip_brackets) {
        Some(id) if is_msg_id(id) => id.to_string(),
        _ => format!("mugaika.{digest}@{host}"),
    };
    let mut f = Field::new("Message-ID");
    f.token(&format!("<{message_id}>"));
    out.push_str(&f.finish());
    for (name, ids) in [
        ("In-Reply-To", &h.in_reply_to),
        ("References", &h.references),
    ] {
        let good: Vec<&str> = ids
            .iter()
            .map(|s| strip_brackets(s))
            .filter(|s| is_msg_id(s))
            .collect();
        if !good.is_empty() {
            let mut f = Field::new(name);
            for id in good {
                f.token(&format!("<{id}>"));
            }
            out.push_str(&f.finish());
        }
    }
    out.push_str("MIME-Version: 1.0\r\n");
    w.write_all(out.as_bytes())?;
    Ok(message_id)
}

fn write_status_headers<W: Write>(
    w: &mut W,
    opts: &RebuildOptions,
    actions: &[Action],
) -> io::Result<()> {
    let status = match &opts.status {
        Some(s) => s
            .chars()
            .filter(|c| c.is_ascii_graphic() || *c == ' ')
            .take(200)
            .collect::<String>(),
        None if actions.is_empty() => "clean".to_string(),
        None => format!("sanitized; actions={}", actions.len()),
    };
    let mut f = Field::new("X-Mugaika-Status");
    for t in status.split(' ').filter(|t| !t.is_empty()) {
        f.token(t);
    }
    w.write_all(f.finish().as_bytes())?;
    if let Some(q) = &opts.quarantine_id {
        let q: String = q
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            .take(200)
            .collect();
        if !q.is_empty() {
            w.write_all(format!("X-Mugaika-Quarantine-Id: {q}\r\n").as_bytes())?;
        }
    }
    Ok(())
}

/// A date re-written canonically (RFC 5322), or `None` when it cannot be understood.
///
/// Accepts the RFC 5322 form and its obsolete variants (no day name, two-digit years, no
/// seconds, named zones including the JST that Japanese mailers write); comments are ignored.
/// An unknown zone name becomes `-0000` ("local time, offset unknown", RFC 5322 3.3).
pub fn canonical_date(raw: &str) -> Option<String> {
    if raw.len() > 200 {
        return None;
    }
    // Remove comments (not nested deeper than needed for dates).
    let mut text = String::with_capacity(raw.len());
    let mut depth = 0u32;
    for c in raw.chars() {
        match c {
            '(' => depth += 1,
            ')' if depth > 0 => depth -= 1,
            _ if depth > 0 => {}
            c => text.push(c),
        }
    }
    let text = text.replace(',', " ");
    let mut toks = text.split_whitespace().peekable();
    const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    if let Some(t) = toks.peek() {
        let l = t.to_ascii_lowercase();
        if DAYS.iter().any(|d| l.starts_with(d)) {
            toks.next();
        }
    }
    let num = |t: &str, max_len: usize| -> Option<u32> {
        if t.is_empty() || t.len() > max_len || !t.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    };
    let day = num(toks.next()?, 2)?;
    let mon_tok = toks.next()?.to_ascii_lowercase();
    let month = MONTHS.iter().position(|m| mon_tok.starts_with(m))? as u32 + 1;
    let year_tok = toks.next()?;
    let mut year = num(year_tok, 4)?;
    year = match year_tok.len() {
        2 if year < 50 => year + 2000,
        2 | 3 => year + 1900,
        _ => year,
    };
    let mut hms = toks.next()?.split(':');
    let hour = num(hms.next()?, 2)?;
    let minute = num(hms.next()?, 2)?;
    let second = match hms.next() {
        Some(s) => num(s, 2)?,
        None => 0,
    };
    if hms.next().is_some() {
        return None;
    }
    let zone = match toks.next() {
        None => "-0000".to_string(),
        Some(z) => {
            let zl = z.to_ascii_uppercase();
            if let Some(sign @ ('+' | '-')) = z.chars().next() {
                let hhmm = num(&z[1..], 4).filter(|_| z.len() == 5)?;
                if hhmm / 100 > 23 || hhmm % 100 > 59 {
                    return None;
                }
                format!("{sign}{hhmm:04}")
            } else {
                match zl.as_str() {
                    "UT" | "UTC" | "GMT" | "Z" => "+0000",
                    "JST" => "+0900",
                    "KST" => "+0900",
                    "EDT" => "-0400",
                    "EST" | "CDT" => "-0500",
                    "CST" | "MDT" => "-0600",
                    "MST" | "PDT" => "-0700",
                    "PST" => "-0800",
                    _ => "-0000",
                }
                .to_string()
            }
        }
    };
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let mdays = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1900..=9999).contains(&year)
        || day == 0
        || day > mdays[(month - 1) as usize]
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    // Day of the week from the civil date (Howard Hinnant's days_from_civil).
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(month) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    let dow = (days + 4).rem_euclid(7) as usize;
    const DOW: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    Some(format!(
        "{}, {} {} {:04} {:02}:{:02}:{:02} {}",
        DOW[dow],
        day,
        MON[(month - 1) as usize],
        year,
        hour,
        minute,
        second,
        zone
    ))
}

fn format_date(t: SystemTime) -> String {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(0),
        Err(_) => 0,
    };
    mail_parser::DateTime::from_timestamp(secs).to_rfc822()
}

fn strip_brackets(s: &str) -> &str {
    let s = s.trim();
    let s = s.strip_prefix('<').unwrap_or(s);
    s.strip_suffix('>').unwrap_or(s)
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c)
}

fn is_msgid_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 250
        && s.chars()
            .all(|c| is_atext(c) || matches!(c, '.' | '@' | '[' | ']'))
}

/// A msg-id (without brackets) that can be written as `<id>` safely.
fn is_msg_id(s: &str) -> bool {
    is_msgid_part(s) && s.contains('@') && !s.starts_with('@') && !s.ends_with('@')
}

/// Text for a header: control characters (CR and LF included) become spaces, runs of
/// whitespace collapse, the ends are trimmed.
fn clean_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for c in s.chars() {
        let c = if c.is_control() || c.is_whitespace() || is_bidi_control(c) {
            ' '
        } else {
            c
        };
        if c == ' ' {
            space = true;
            continue;
        }
        if space && !out.is_empty() {
            out.push(' ');
        }
        space = false;
        out.push(c);
    }
    out
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Subject: raw when plain short ASCII words, else encoded words.
fn unstructured_field(name: &str, text: &str, hf: &mut HeaderCtx) -> String {
    let mut f = Field::new(name);
    let plain = text.chars().all(|c| c.is_ascii_graphic() || c == ' ')
        && !text.contains("=?")
        && text.split(' ').all(|w| w.len() <= 70);
    if plain {
        for w in text.split(' ') {
            f.token(w);
        }
    } else {
        let cs = hf.word_charset(text);
        let first = f.first_room();
        for w in encode_words(text, cs, first) {
            f.token(&w);
        }
    }
    f.finish()
}

/// Tokens of a display name (or group name): atoms, one quoted string, or encoded words.
fn phrase_tokens(text: &str, hf: &mut HeaderCtx, first_room: usize) -> Vec<String> {
    let text = clean_text(text);
    if text.is_empty() {
        return Vec::new();
    }
    if text.chars().all(|c| is_atext(c) || c == ' ')
        && !text.contains("=?")
        && text.split(' ').all(|w| w.len() <= 70)
    {
        return text.split(' ').map(str::to_string).collect();
    }
    if text.chars().all(|c| c.is_ascii_graphic() || c == ' ') && text.len() <= 60 {
        let mut q = String::from("\"");
        for c in text.chars() {
            if c == '"' || c == '\\' {
                q.push('\\');
            }
            q.push(c);
        }
        q.push('"');
        return vec![q];
    }
    let cs = hf.word_charset(&text);
    encode_words(&text, cs, first_room)
}

/// An addr-spec that can be written as is in a 7-bit header, normalised (local part quoted
/// when it is not a dot-atom).
fn ascii_addr_spec(addr: &str) -> Option<String> {
    let addr = addr.trim();
    if addr.is_empty() || addr.len() > 254 || !addr.is_ascii() {
        return None;
    }
    let (local, domain) = addr.rsplit_once('@')?;
    let dot_atom = |s: &str| {
        !s.is_empty()
            && s.split('.')
                .all(|p| !p.is_empty() && p.chars().all(is_atext))
    };
    let domain_ok = dot_atom(domain)
        || (domain.starts_with('[')
            && domain.ends_with(']')
            && domain.len() > 2
            && domain[1..domain.len() - 1]
                .chars()
                .all(|c| c.is_ascii_graphic() && !matches!(c, '[' | ']' | '\\')));
    if !domain_ok {
        return None;
    }
    let local = if dot_atom(local) {
        local.to_string()
    } else {
        // A local part given already quoted keeps its content.
        let inner = local
            .strip_prefix('"')
            .and_then(|l| l.strip_suffix('"'))
            .unwrap_or(local);
        if inner.is_empty() || !inner.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
            return None;
        }
        let mut q = String::from("\"");
        for c in inner.chars() {
            if c == '"' || c == '\\' {
                q.push('\\');
            }
            q.push(c);
        }
        q.push('"');
        q
    };
    Some(format!("{local}@{domain}"))
}

fn address_field(name: &str, list: &[Address], single: bool, hf: &mut HeaderCtx) -> Option<String> {
    let mut f = Field::new(name);
    let mut items = 0usize;
    for a in list {
        let spec = ascii_addr_spec(&a.addr);
        if single && (spec.is_none() || items > 0) {
            continue;
        }
        if items > 0 {
            f.glue(",");
        }
        let display = a.name.as_deref().map(clean_text).unwrap_or_default();
        match spec {
            Some(spec) => {
                let room = if f.has_token {
                    MAX_WORD
                } else {
                    f.first_room()
                };
                for t in phrase_tokens(&display, hf, room) {
                    f.token(&t);
                }
                if display.is_empty() {
                    f.token(&spec);
                } else {
                    f.token(&format!("<{spec}>"));
                }
            }
            None => {
                // Not writable as an address: an empty group naming it.
                let addr = clean_text(&a.addr);
                let shown = match (display.is_empty(), addr.is_empty()) {
                    (true, true) => continue,
                    (false, true) => display,
                    (true, false) => addr,
                    (false, false) => format!("{display} <{addr}>"),
                };
                let shown: String = shown.chars().take(200).collect();
                let room = if f.has_token {
                    MAX_WORD
                } else {
                    f.first_room()
                };
                let toks = phrase_tokens(&shown, hf, room);
                if toks.is_empty() {
                    continue;
                }
                for t in &toks {
                    f.token(t);
                }
                f.glue(":;");
            }
        }
        items += 1;
    }
    (items > 0).then(|| f.finish())
}

/// RFC 2047 B-encoded words for `text`, each at most 75 characters (the first at most
/// `first_room` when that leaves room for some text), never splitting a character.
fn encode_words(text: &str, cs: WordCharset, first_room: usize) -> Vec<String> {
    let (prefix, overhead) = match cs {
        WordCharset::Utf8 => ("=?UTF-8?B?", 12),
        WordCharset::Jis => ("=?ISO-2022-JP?B?", 18),
    };
    let budget = |max: usize| (max.saturating_sub(overhead) / 4) * 3;
    let first_max = if budget(first_room) >= 8 {
        first_room.min(MAX_WORD)
    } else {
        MAX_WORD
    };
    let mut words = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    let mut limit = budget(first_max);
    let push_word = |cur: &mut Vec<u8>, words: &mut Vec<String>| {
        let mut w = String::from(prefix);
        w.push_str(&B64.encode(&cur[..]));
        w.push_str("?=");
        words.push(w);
        cur.clear();
    };
    match cs {
        WordCharset::Utf8 => {
            let mut b = [0u8; 4];
            for c in text.chars() {
                let e = c.encode_utf8(&mut b).as_bytes();
                if !cur.is_empty() && cur.len() + e.len() > limit {
                    push_word(&mut cur, &mut words);
                    limit = budget(MAX_WORD);
                }
                cur.extend_from_slice(e);
            }
        }
        WordCharset::Jis => {
            let mut jis = false;
            for c in fold_kana(text) {
                let (bytes, to_jis): (Vec<u8>, bool) = if c.is_ascii() {
                    (vec![c as u8], false)
                } else {
                    match jis_cell(c) {
                        Some(p) => (p.to_vec(), true),
                        None => (b"?".to_vec(), false),
                    }
                };
                let switch = if to_jis != jis { 3 } else { 0 };
                let close = if to_jis { 3 } else { 0 };
                if !cur.is_empty() && cur.len() + switch + bytes.len() + close > limit {
                    if jis {
                        cur.extend_from_slice(ESC_ASCII);
                    }
                    push_word(&mut cur, &mut words);
                    jis = false;
                    limit = budget(MAX_WORD);
                }
                if to_jis != jis {
                    cur.extend_from_slice(if to_jis { ESC_JIS } else { ESC_ASCII });
                    jis = to_jis;
                }
                cur.extend_from_slice(&bytes);
            }
            if jis {
                cur.extend_from_slice(ESC_ASCII);
            }
        }
    }
    if !cur.is_empty() {
        push_word(&mut cur, &mut words);
    }
    words
}

// ---------------------------------------------------------------------------------------------
// Attachments

fn write_attachment<W: Write>(
    w: &mut W,
    index: usize,
    a: &KeptAttachment,
    hf: &mut HeaderCtx,
) -> Result<(), RebuildError> {
    // A media type with at most one parameter: `charset=utf-8` on text (the text extracted
    // from a document or a TNEF body). Anything else is refused, not copied.
    let full = a.content_type.trim().to_ascii_lowercase();
    let (ct, charset) = match full.split_once(';') {
        None => (full.clone(), None),
        Some((t, p)) => {
            let p: String = p.chars().filter(|c| !c.is_whitespace()).collect();
            let t = t.trim().to_string();
            if t.starts_with("text/") && (p == "charset=utf-8" || p == "charset=\"utf-8\"") {
                (t, Some("utf-8"))
            } else {
                return Err(RebuildError::Attachment {
                    index,
                    reason: format!("unusable content type {:?}", a.content_type),
                });
            }
        }
    };
    let token = |s: &str| {
        !s.is_empty()
            && s.len() <= 100
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-' | '_'))
    };
    match ct.split_once('/') {
        Some((t, s)) if token(t) && token(s) => {}
        _ => {
            return Err(RebuildError::Attachment {
                index,
                reason: format!("unusable content type {:?}", a.content_type),
            })
        }
    }
    let name = safe_filename(&a.filename);
    let mut out = String::new();
    let mut f = Field::new("Content-Type");
    let ct = match charset {
        Some(cs) => format!("{ct}; charset={cs}"),
        None => ct,
    };
    if name.is_empty() {
        f.token(&ct);
    } else {
        f.token(&format!("{ct};"));
        let quoted_ok = name.chars().all(|c| c.is_ascii_graphic() || c == ' ')
            && !name.contains("=?")
            && name.len() <= 60;
        if quoted_ok {
            f.token(&format!("name={}", quote_param(&name)));
        } else {
            // RFC 2047 words inside the quoted name, for MUAs that ignore RFC 2231.
            let cs = hf.word_charset(&name);
            let words = encode_words(&name, cs, MAX_WORD - 7);
            let n = words.len();
            for (i, wd) in words.into_iter().enumerate() {
                let mut t = wd;
                if i == 0 {
                    t = format!("name=\"{t}");
                }
                if i + 1 == n {
                    t.push('"');
                }
                f.token(&t);
            }
        }
    }
    out.push_str(&f.finish());
    let mut f = Field::new("Content-Disposition");
    if name.is_empty() {
        f.token("attachment");
    } else {
        f.token("attachment;");
        let quoted_ok = name.chars().all(|c| c.is_ascii_graphic() || c == ' ')
            && !name.contains("=?")
            && name.len() <= 60;
        if quoted_ok {
            f.token(&format!("filename={}", quote_param(&name)));
        } else {
            let pieces = rfc2231_pieces(&name, 50);
            let n = pieces.len();
            for (i, p) in pieces.iter().enumerate() {
                let sep = if i + 1 < n { ";" } else { "" };
                let t = if n == 1 {
                    format!("filename*=UTF-8''{p}{sep}")
                } else if i == 0 {
                    format!("filename*0*=UTF-8''{p}{sep}")
                } else {
                    format!("filename*{i}*={p}{sep}")
                };
                f.token(&t);
            }
        }
    }
    out.push_str(&f.finish());
    out.push_str("Content-Transfer-Encoding: base64\r\n\r\n");
    w.write_all(out.as_bytes())?;
    let mut line = String::with_capacity(B64_LINE + 2);
    for chunk in a.data.chunks(B64_LINE / 4 * 3) {
        line.clear();
        B64.encode_string(chunk, &mut line);
        line.push_str("\r\n");
        w.write_all(line.as_bytes())?;
    }
    Ok(())
}

/// A file name safe to put in a parameter: no control, bidi or path characters, at most 200
/// characters.
fn safe_filename(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| match c {
            '/' | '\\' => '_',
            c if c.is_control() || is_bidi_control(c) => ' ',
            c => c,
        })
        .collect();
    clean_text(&cleaned).chars().take(200).collect()
}

fn quote_param(v: &str) -> String {
    let mut q = String::from("\"");
    for c in v.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// RFC 2231 percent-encoded UTF-8, cut into pieces of at most `max` characters at character
/// boundaries.
fn rfc2231_pieces(name: &str, max: usize) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut cur = String::new();
    let mut b = [0u8; 4];
    for c in name.chars() {
        let mut enc = String::new();
        for &byte in c.encode_utf8(&mut b).as_bytes() {
            if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
                enc.push(byte as char);
            } else {
                enc.push_str(&format!("%{byte:02X}"));
            }
        }
        if !cur.is_empty() && cur.len() + enc.len() > max {
            pieces.push(std::mem::take(&mut cur));
        }
        cur.push_str(&enc);
    }
    if !cur.is_empty() {
        pieces.push(cur);
    }
    pieces
}

// ---------------------------------------------------------------------------------------------
// ISO-2022-JP

const ESC_JIS: &[u8] = b"\x1b$B";
const ESC_ASCII: &[u8] = b"\x1b(B";

/// The JIS X 0208 cell (two 7-bit octets) of a character, restricted to what every
/// ISO-2022-JP decoder knows: rows 1-8 and 16-84. encoding_rs's tables also hold the NEC row 13
/// and the IBM rows 89-92 (①, ㈱, 髙), which Python's and many MUAs' decoders refuse.
pub fn jis_cell(c: char) -> Option<[u8; 2]> {
    // A flat table over the BMP (128 KiB, built once): the lookup is on the per-character
    // path of the text writer.
    static TABLE: OnceLock<Vec<u16>> = OnceLock::new();
    let t = TABLE.get_or_init(|| {
        let mut m = vec![0u16; 0x10000];
        for row in (1u8..=8).chain(16..=84) {
            for col in 1u8..=94 {
                let euc = [0xA0 + row, 0xA0 + col];
                if let Some(s) =
                    encoding_rs::EUC_JP.decode_without_bom_handling_and_without_replacement(&euc)
                {
                    let mut it = s.chars();
                    if let (Some(ch), None) = (it.next(), it.next()) {
                        if let Some(slot) = m.get_mut(ch as usize) {
                            if *slot == 0 {
                                *slot = u16::from_be_bytes([0x20 + row, 0x20 + col]);
                            }
                        }
                    }
                }
            }
        }
        // The same cells under the mappings of other converters (JIS0208.TXT, Python, Macs):
        // 〜 ‖ − ¢ £ ¬ are written as the cells encoding_rs calls ～ ∥ － ￠ ￡ ￢.
        for (alias, canonical) in JIS_ALIASES {
            let cell = m.get(*canonical as usize).copied().unwrap_or(0);
            if let Some(slot) = m.get_mut(*alias as usize) {
                if *slot == 0 {
                    *slot = cell;
                }
            }
        }
        m
    });
    match t.get(c as usize).copied() {
        Some(v) if v != 0 => Some(v.to_be_bytes()),
        _ => None,
    }
}

/// Characters that different converters map to the same JIS X 0208 cell, with the form
/// encoding_rs decodes that cell to.
const JIS_ALIASES: &[(char, char)] = &[
    ('\u{301C}', '\u{FF5E}'),
    ('\u{2016}', '\u{2225}'),
    ('\u{2212}', '\u{FF0D}'),
    ('\u{00A2}', '\u{FFE0}'),
    ('\u{00A3}', '\u{FFE1}'),
    ('\u{00AC}', '\u{FFE2}'),
];

/// Folds a character to the form an ISO-2022-JP round trip through encoding_rs gives, for
/// comparing texts (the verifier uses it on both sides).
pub fn jis_fold_char(c: char) -> char {
    JIS_ALIASES
        .iter()
        .find(|(a, _)| *a == c)
        .map(|(_, b)| *b)
        .unwrap_or(c)
}

/// Full-width katakana for a half-width one (U+FF61..U+FF9F), voiced marks separate.
fn kana_full(c: char) -> Option<char> {
    const T: &str = "。「」、・ヲァィゥェォャュョッーアイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワン゛゜";
    let i = (c as u32).checked_sub(0xFF61)? as usize;
    T.chars().nth(i)
}

/// The voiced (dakuten) or semi-voiced (handakuten) form of a full-width katakana.
fn kana_voiced(base: char, mark: char) -> Option<char> {
    let b = base as u32;
    let ka_row = matches!(b, 0x30AB..=0x30C2) && b % 2 == 1; // カキクケコサシスセソタチ
    let tte = matches!(b, 0x30C4 | 0x30C6 | 0x30C8); // ツテト
    let ha = matches!(b, 0x30CF | 0x30D2 | 0x30D5 | 0x30D8 | 0x30DB);
    match mark {
        '゛' if b == 0x30A6 => Some('\u{30F4}'),
        '゛' if ka_row || tte || ha => char::from_u32(b + 1),
        '゜' if ha => char::from_u32(b + 2),
        _ => None,
    }
}

/// Streaming half-width → full-width katakana conversion with voiced marks combined.
#[derive(Default)]
struct KanaFolder {
    pending: Option<char>,
}

impl KanaFolder {
    /// Feeds one character; calls `out` with zero, one or two characters.
    fn push(&mut self, c: char, out: &mut impl FnMut(char)) {
        let full = kana_full(c);
        if let Some(p) = self.pending.take() {
            if let Some(m @ ('゛' | '゜')) = full {
                if let Some(v) = kana_voiced(p, m) {
                    out(v);
                    return;
                }
            }
            out(p);
        }
        match full {
            Some(f) if !matches!(f, '゛' | '゜') && kana_voiced(f, '゛').is_some() => {
                self.pending = Some(f)
            }
            Some(f) => out(f),
            None => out(c),
        }
    }
    fn finish(&mut self, out: &mut impl FnMut(char)) {
        if let Some(p) = self.pending.take() {
            out(p);
        }
    }
}

/// `text` with half-width katakana made full width.
pub fn fold_kana(text: &str) -> Vec<char> {
    let mut v = Vec::with_capacity(text.len());
    let mut k = KanaFolder::default();
    for c in text.chars() {
        k.push(c, &mut |x| v.push(x));
    }
    k.finish(&mut |x| v.push(x));
    v
}

/// Whether every character of a header text can be written in ISO-2022-JP.
fn jis_encodable(text: &str) -> bool {
    fold_kana(text)
        .into_iter()
        .all(|c| (c.is_ascii() && !c.is_ascii_control()) || jis_cell(c).is_some())
}

// ---------------------------------------------------------------------------------------------
// The text part

/// What a pass over (a piece of) the text found.
#[derive(Debug, Clone, Default)]
pub struct TextScan {
    pub chars: u64,
    /// Octets of the text as UTF-8 with CRLF line ends.
    pub utf8_bytes: u64,
    /// Octets quoted-printable would have to escape.
    pub qp_escapes: u64,
    /// Every character can be written in ISO-2022-JP.
    pub jis_ok: bool,
    /// Longest ISO-2022-JP line in octets (escape sequences included, CRLF excluded).
    pub jis_max_line: u64,
    jis_line: u64,
    /// The last line has no line end yet.
    open_line: bool,
    pub digest: [u8; 32],
}

impl TextScan {
    fn merge(&mut self, o: &TextScan) {
        self.chars += o.chars;
        self.utf8_bytes += o.utf8_bytes;
        self.qp_escapes += o.qp_escapes;
        self.jis_ok &= o.jis_ok;
        self.jis_max_line = self.jis_max_line.max(o.jis_max_line);
    }
}

/// One logical piece of the text after line-end normalisation.
#[derive(Clone, Copy)]
enum Ev {
    Char(char),
    Newline,
}

/// UTF-8 decoding (U+FFFD for invalid input) and CR / CRLF / LF → newline, streaming.
struct Decoder {
    carry: Vec<u8>,
    pending_cr: bool,
}

impl Decoder {
    fn new() -> Decoder {
        Decoder {
            carry: Vec::new(),
            pending_cr: false,
        }
    }

    fn feed(&mut self, data: &[u8], f: &mut impl FnMut(Ev) -> io::Result<()>) -> io::Result<()> {
        let mut data = data;
        // Complete a character cut at the previous chunk's end, one octet at a time.
        while !self.carry.is_empty() {
            let Some((&b, rest)) = data.split_first() else {
                return Ok(());
            };
            self.carry.push(b);
            data = rest;
            match std::str::from_utf8(&self.carry) {
                Ok(_) => {
                    let mut tmp = [0u8; 8];
                    let n = self.carry.len().min(8);
                    tmp[..n].copy_from_slice(&self.carry[..n]);
                    self.carry.clear();
                    self.chars(std::str::from_utf8(&tmp[..n]).unwrap_or("\u{FFFD}"), f)?;
                }
                Err(e) if e.error_len().is_some() => {
                    let bad = std::mem::take(&mut self.carry);
                    self.feed_slice(&bad, f)?;
                }
                Err(_) => {}
            }
        }
        self.feed_slice(data, f)
    }

    fn feed_slice(
        &mut self,
        mut input: &[u8],
        f: &mut impl FnMut(Ev) -> io::Result<()>,
    ) -> io::Result<()> {
        loop {
            match std::str::from_utf8(input) {
                Ok(s) => {
                    self.chars(s, f)?;
                    return Ok(());
                }
                Err(e) => {
                    let (good, rest) = input.split_at(e.valid_up_to());
                    // Safe: from_utf8 said this much is valid.
                    self.chars(std::str::from_utf8(good).unwrap_or(""), f)?;
                    match e.error_len() {
                        Some(n) => {
                            self.chars("\u{FFFD}", f)?;
                            input = rest.get(n..).unwrap_or(&[]);
                        }
                        None => {
                            self.carry.extend_from_slice(rest);
                            return Ok(());
                        }
                    }
                }
            }
        }
    }

    fn chars(&mut self, s: &str, f: &mut impl FnMut(Ev) -> io::Result<()>) -> io::Result<()> {
        for c in s.chars() {
            match c {
                '\r' => {
                    if self.pending_cr {
                        f(Ev::Newline)?;
                    }
                    self.pending_cr = true;
                }
                '\n' => {
                    self.pending_cr = false;
                    f(Ev::Newline)?;
                }
                c => {
                    if self.pending_cr {
                        self.pending_cr = false;
                        f(Ev::Newline)?;
                    }
                    f(Ev::Char(c))?;
                }
            }
        }
        Ok(())
    }

    fn finish(&mut self, f: &mut impl FnMut(Ev) -> io::Result<()>) -> io::Result<()> {
        if !self.carry.is_empty() {
            self.carry.clear();
            self.chars("\u{FFFD}", f)?;
        }
        if self.pending_cr {
            self.pending_cr = false;
            f(Ev::Newline)?;
        }
        Ok(())
    }
}

fn qp_literal(b: u8) -> bool {
    (33..=126).contains(&b) && b != b'='
}

/// Pass 1: reads the whole text and measures it: UTF-8 always, ISO-2022-JP when `jis` is set
/// (else `jis_ok` and `jis_max_line` are not measured).
pub fn scan<R: Read>(mut r: R, jis_wanted: bool) -> io::Result<TextScan> {
    let mut s = TextScan {
        jis_ok: true,
        ..TextScan::default()
    };
    let mut hasher = Sha256::new();
    let mut dec = Decoder::new();
    let mut kana = KanaFolder::default();
    let mut jis = false;
    let mut buf = vec![0u8; 64 << 10];
    let on_jis_char = |s: &mut TextScan, jis: &mut bool, c: char| {
        if c.is_ascii() {
            if c.is_ascii_control() && c != '\t' {
                s.jis_ok = false;
            }
            if *jis {
                s.jis_line += 3;
                *jis = false;
            }
            s.jis_line += 1;
        } else if jis_cell(c).is_some() {
            if !*jis {
                s.jis_line += 3;
                *jis = true;
            }
            s.jis_line += 2;
        } else {
            s.jis_ok = false;
            s.jis_line += 2;
        }
    };
    let ev = |s: &mut TextScan, jis: &mut bool, kana: &mut KanaFolder, e: Ev| match e {
        Ev::Char(c) => {
            s.chars += 1;
            s.open_line = true;
            let len = c.len_utf8() as u64;
            s.utf8_bytes += len;
            // Every octet of a non-ASCII character is escaped in quoted-printable.
            if !c.is_ascii() || !(qp_literal(c as u8) || c == ' ') {
                s.qp_escapes += len;
            }
            if !jis_wanted {
                return;
            }
            let mut chars = [None, None];
            let mut n = 0;
            kana.push(c, &mut |x| {
                if let Some(slot) = chars.get_mut(n) {
                    *slot = Some(x);
                }
                n += 1;
            });
            for x in chars.into_iter().flatten() {
                on_jis_char(s, jis, x);
            }
        }
        Ev::Newline => {
            s.chars += 1;
            s.utf8_bytes += 2;
            s.open_line = false;
            if !jis_wanted {
                return;
            }
            let mut last = None;
            kana.finish(&mut |x| last = Some(x));
            if let Some(x) = last {
                on_jis_char(s, jis, x);
            }
            if *jis {
                s.jis_line += 3;
                *jis = false;
            }
            s.jis_max_line = s.jis_max_line.max(s.jis_line);
            s.jis_line = 0;
        }
    };
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        dec.feed(&buf[..n], &mut |e| {
            ev(&mut s, &mut jis, &mut kana, e);
            Ok(())
        })?;
    }
    dec.finish(&mut |e| {
        ev(&mut s, &mut jis, &mut kana, e);
        Ok(())
    })?;
    let mut last = None;
    kana.finish(&mut |x| last = Some(x));
    if let Some(x) = last {
        on_jis_char(&mut s, &mut jis, x);
    }
    if jis {
        s.jis_line += 3;
    }
    if s.open_line {
        // The writer ends an unterminated last line with CRLF.
        s.jis_max_line = s.jis_max_line.max(s.jis_line);
        s.utf8_bytes += 2;
    }
    s.digest = hasher.finalize().into();
    Ok(s)
}

/// Pass 2: text in, encoded body lines out.
struct BodyWriter<'w, W: Write> {
    out: &'w mut W,
    charset: OutputCharset,
    enc: TextEncoding,
    dec: Decoder,
    kana: KanaFolder,
    jis: bool,
    /// The current output line (7bit and QP) or pending octets (base64).
    line: Vec<u8>,
    /// Whether the current logical line has content (so that `finish` can end it).
    open: bool,
}

impl<'w, W: Write> BodyWriter<'w, W> {
    fn new(out: &'w mut W, charset: OutputCharset, enc: TextEncoding) -> Self {
        BodyWriter {
            out,
            charset,
            enc,
            dec: Decoder::new(),
            kana: KanaFolder::default(),
            jis: false,
            line: Vec::with_capacity(1024),
            open: false,
        }
    }

    fn feed(&mut self, data: &[u8]) -> io::Result<()> {
        let mut dec = std::mem::replace(&mut self.dec, Decoder::new());
        let r = dec.feed(data, &mut |e| self.event(e));
        self.dec = dec;
        r
    }

    /// Ends the current line if something is on it (after the notice).
    fn end_line_if_open(&mut self) -> io::Result<()> {
        let mut dec = std::mem::replace(&mut self.dec, Decoder::new());
        let r = dec.finish(&mut |e| self.event(e));
        self.dec = dec;
        r?;
        if self.open {
            self.event(Ev::Newline)?;
        }
        Ok(())
    }

    fn event(&mut self, e: Ev) -> io::Result<()> {
        match self.charset {
            OutputCharset::Utf8 => match e {
                Ev::Char(c) => {
                    self.open = true;
                    let mut b = [0u8; 4];
                    let n = c.encode_utf8(&mut b).len();
                    self.group(&b[..n])
                }
                Ev::Newline => {
                    self.open = false;
                    self.eol()
                }
            },
            OutputCharset::Iso2022Jp => match e {
                Ev::Char(c) => {
                    self.open = true;
                    let mut chars = [None, None];
                    let mut n = 0;
                    self.kana.push(c, &mut |x| {
                        if let Some(slot) = chars.get_mut(n) {
                            *slot = Some(x);
                        }
                        n += 1;
                    });
                    for x in chars.into_iter().flatten() {
                        self.jis_char(x)?;
                    }
                    Ok(())
                }
                Ev::Newline => {
                    let mut last = None;
                    self.kana.finish(&mut |x| last = Some(x));
                    if let Some(x) = last {
                        self.jis_char(x)?;
                    }
                    if self.jis {
                        self.jis = false;
                        self.group(ESC_ASCII)?;
                    }
                    self.open = false;
                    self.eol()
                }
            },
        }
    }

    fn jis_char(&mut self, c: char) -> io::Result<()> {
        if c.is_ascii() && (!c.is_ascii_control() || c == '\t') {
            if self.jis {
                self.jis = false;
                self.group(ESC_ASCII)?;
            }
            return self.group(&[c as u8]);
        }
        let Some(cell) = jis_cell(c) else {
            // The pre-scan guarantees this cannot happen; refuse rather than write a wrong text.
            return Err(io::Error::other(format!(
                "character U+{:04X} cannot be written in ISO-2022-JP",
                c as u32
            )));
        };
        if !self.jis {
            self.jis = true;
            self.group(ESC_JIS)?;
        }
        self.group(&cell)
    }

    /// Octets that belong together (one character, one escape sequence).
    fn group(&mut self, g: &[u8]) -> io::Result<()> {
        match self.enc {
            TextEncoding::SevenBit => {
                if self.line.len() + g.len() > MAX_LINE {
                    return Err(io::Error::other("text line longer than 998 octets in 7bit"));
                }
                self.line.extend_from_slice(g);
                Ok(())
            }
            TextEncoding::Base64 => {
                self.line.extend_from_slice(g);
                self.flush_b64(false)
            }
            TextEncoding::QuotedPrintable => {
                let literal = |b: u8| qp_literal(b) || b == b' ' || b == b'\t';
                let n: usize = g.iter().map(|&b| if literal(b) { 1 } else { 3 }).sum();
                // A group (one character) is never split by a soft line break.
                if !self.line.is_empty() && self.line.len() + n > 75 {
                    self.line.extend_from_slice(b"=\r\n");
                    self.out.write_all(&self.line)?;
                    self.line.clear();
                }
                for &b in g {
                    if literal(b) {
                        self.line.push(b);
                    } else {
                        self.line.extend_from_slice(&[
                            b'=',
                            HEX[usize::from(b >> 4)],
                            HEX[usize::from(b & 15)],
                        ]);
                    }
                }
                Ok(())
            }
        }
    }

    fn eol(&mut self) -> io::Result<()> {
        match self.enc {
            TextEncoding::SevenBit => {
                self.line.extend_from_slice(b"\r\n");
                self.out.write_all(&self.line)?;
                self.line.clear();
                Ok(())
            }
            TextEncoding::Base64 => {
                self.line.extend_from_slice(b"\r\n");
                self.flush_b64(false)
            }
            TextEncoding::QuotedPrintable => {
                // Whitespace before a line end must be encoded (transports strip it).
                if let Some(&last) = self.line.last() {
                    if last == b' ' || last == b'\t' {
                        self.line.pop();
                        let enc = [b'=', HEX[(last >> 4) as usize], HEX[(last & 15) as usize]];
                        if self.line.len() + 3 > 76 {
                            self.line.extend_from_slice(b"=\r\n");
                            self.out.write_all(&self.line)?;
                            self.line.clear();
                        }
                        self.line.extend_from_slice(&enc);
                    }
                }
                self.line.extend_from_slice(b"\r\n");
                self.out.write_all(&self.line)?;
                self.line.clear();
                Ok(())
            }
        }
    }

    fn flush_b64(&mut self, all: bool) -> io::Result<()> {
        const IN: usize = B64_LINE / 4 * 3;
        if self.line.len() < 64 * IN && !all {
            return Ok(());
        }
        let mut out = String::with_capacity(self.line.len() / 3 * 4 + self.line.len() / 28 + 8);
        let mut done = 0;
        for chunk in self.line.chunks(IN) {
            if chunk.len() < IN && !all {
                break;
            }
            B64.encode_string(chunk, &mut out);
            out.push_str("\r\n");
            done += chunk.len();
        }
        self.out.write_all(out.as_bytes())?;
        self.line.drain(..done);
        Ok(())
    }

    fn finish(mut self) -> io::Result<()> {
        self.end_line_if_open()?;
        match self.enc {
            TextEncoding::Base64 => self.flush_b64(true),
            _ => {
                if !self.line.is_empty() {
                    // Only reachable when the text ended inside a line: end it.
                    self.eol()?;
                }
                Ok(())
            }
        }
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(HEX[(x >> 4) as usize] as char);
        s.push(HEX[(x & 15) as usize] as char);
    }
    s.to_ascii_lowercase()
}

/// Counts the octets written through it.
struct CountingWriter<W: Write> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::{verify_bytes, Expectation};
    use mail_parser::{MessageParser, MimeHeaders};

    fn addr(name: Option<&str>, a: &str) -> Address {
        Address {
            name: name.map(str::to_string),
            addr: a.to_string(),
        }
    }

    fn headers() -> TopHeaders {
        TopHeaders {
            from: vec![addr(Some("山田 太郎"), "taro@example.jp")],
            to: vec![
                addr(Some("Suzuki, Hanako"), "hanako@city.example.lg.jp"),
                addr(None, "soumu@city.example.lg.jp"),
            ],
            subject: Some("会議のお知らせ（第3回）".into()),
            date: Some("Tue, 1 Apr 2025 09:30:00 +0900".into()),
            message_id: Some("abc.123@example.jp".into()),
            ..TopHeaders::default()
        }
    }

    fn opts(cs: OutputCharset) -> RebuildOptions {
        RebuildOptions {
            charset: cs,
            notice: NoticeSource::Text("この メールは無害化されました。\n".into()),
            hostname: "mugaika.example.lg.jp".into(),
            now: Some(UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000)),
            ..RebuildOptions::default()
        }
    }

    fn build(
        h: &TopHeaders,
        text: &str,
        atts: &[KeptAttachment],
        o: &RebuildOptions,
    ) -> (Vec<u8>, RebuildInfo, Vec<Action>) {
        let mut actions = Vec::new();
        let mut out = Vec::new();
        let mut src = text;
        let info = write_message(h, &mut src, atts, &mut actions, o, &mut out).unwrap();
        assert_eq!(info.bytes_written, out.len() as u64);
        let prefix: String = text.chars().take(500).collect();
        verify_bytes(
            &out,
            &Expectation {
                text_prefix: prefix,
                attachments: atts.len(),
                ..Expectation::default()
            },
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(&out)));
        (out, info, actions)
    }

    fn header_block(out: &[u8]) -> String {
        let s = String::from_utf8(out.to_vec()).unwrap();
        s.split("\r\n\r\n").next().unwrap().to_string()
    }

    #[test]
    fn utf8_message_round_trips_through_mail_parser() {
        let text = "各位\n\n第3回の会議は4月10日です。\r\n場所: 本庁舎 5F\n";
        let (out, info, actions) = build(&headers(), text, &[], &opts(OutputCharset::Utf8));
        assert!(actions.is_empty());
        assert_eq!(info.charset, OutputCharset::Utf8);
        assert_eq!(
            info.encoding,
            TextEncoding::Base64,
            "mostly Japanese: base64"
        );
        let m = MessageParser::default().parse(&out).unwrap();
        assert_eq!(m.subject(), Some("会議のお知らせ（第3回）"));
        let from = m.from().unwrap().first().unwrap();
        assert_eq!(from.name.as_deref(), Some("山田 太郎"));
        assert_eq!(from.address.as_deref(), Some("taro@example.jp"));
        let to: Vec<_> = m.to().unwrap().iter().collect();
        assert_eq!(to[0].name.as_deref(), Some("Suzuki, Hanako"));
        assert_eq!(to[1].address.as_deref(), Some("soumu@city.example.lg.jp"));
        assert_eq!(m.message_id(), Some("abc.123@example.jp"));
        let body = m.body_text(0).unwrap();
        assert!(
            body.starts_with("この メールは無害化されました。\r\n"),
            "{body}"
        );
        assert!(
            body.contains(&format!("{SEPARATOR}\r\n各位\r\n\r\n第3回")),
            "{body}"
        );
        let hb = header_block(&out);
        assert!(hb.contains("Date: Tue, 1 Apr 2025 09:30:00 +0900"), "{hb}");
        assert!(hb.contains("X-Mugaika-Status: clean"));
        // Field order as DESIGN fixes it.
        let order: Vec<&str> = hb
            .lines()
            .filter(|l| !l.starts_with(' '))
            .map(|l| l.split(':').next().unwrap())
            .collect();
        assert_eq!(
            order,
            [
                "From",
                "To",
                "Subject",
                "Date",
                "Message-ID",
                "MIME-Version",
                "Content-Type",
                "Content-Transfer-Encoding",
                "X-Mugaika-Status"
            ]
        );
    }

    #[test]
    fn ascii_text_uses_quoted_printable_with_soft_breaks() {
        let long = "word ".repeat(400) + "end =sign   \n";
        let o = RebuildOptions {
            notice: NoticeSource::Text("Sanitised by mugaika.\n".into()),
            ..opts(OutputCharset::Utf8)
        };
        let (out, info, _) = build(&TopHeaders::default(), &long, &[], &o);
        assert_eq!(info.encoding, TextEncoding::QuotedPrintable);
        let s = String::from_utf8(out.clone()).unwrap();
        assert!(s
            .lines()
            .all(|l| l.len() <= 76 || l.starts_with("Received")));
        assert!(s.contains("=3Dsign"));
        assert!(s.contains("=20\r\n"), "trailing space encoded");
        let m = MessageParser::default().parse(&out).unwrap();
        let body = m.body_text(0).unwrap();
        assert!(body.contains(&format!("{}end =sign   \r\n", "word ".repeat(400))));
    }

    #[test]
    fn iso_2022_jp_text_is_7bit_and_decodes() {
        let text = "お世話になっております。\nｶﾞｲﾄﾞﾌﾞｯｸ ﾊﾟﾝﾌ 〜 ABC\n";
        let (out, info, actions) = build(&headers(), text, &[], &opts(OutputCharset::Iso2022Jp));
        assert!(actions.is_empty(), "{actions:?}");
        assert!(!info.fallback && !info.header_fallback);
        assert_eq!(info.encoding, TextEncoding::SevenBit);
        let hb = header_block(&out);
        assert!(hb.contains("charset=ISO-2022-JP"), "{hb}");
        assert!(hb.contains("=?ISO-2022-JP?B?"), "{hb}");
        let body = &out[hb.len() + 4..];
        let (dec, had_errors) = encoding_rs::ISO_2022_JP.decode_without_bom_handling(body);
        assert!(!had_errors);
        assert!(
            dec.contains("お世話になっております。\r\nガイドブック パンフ ～ ABC\r\n"),
            "{dec}"
        );
        // Every line returns to ASCII.
        for line in body.split(|&b| b == b'\n') {
            let esc_jis = line.windows(3).rposition(|w| w == ESC_JIS);
            let esc_ascii = line.windows(3).rposition(|w| w == ESC_ASCII);
            assert!(esc_jis.is_none() || esc_ascii > esc_jis);
        }
        let m = MessageParser::default().parse(&out).unwrap();
        assert_eq!(m.subject(), Some("会議のお知らせ（第3回）"));
        assert_eq!(
            m.from().unwrap().first().unwrap().name.as_deref(),
            Some("山田 太郎")
        );
    }

    #[test]
    fn iso_2022_jp_falls_back_to_utf8_for_extension_characters() {
        for odd in ["①", "㈱", "髙", "😀", "\u{1b}"] {
            let text = format!("株式会社{odd}からのお知らせ\n");
            let o = RebuildOptions {
                notice: NoticeSource::Render {
                    render: |actions, _, _| {
                        let kinds: Vec<String> =
                            actions.iter().map(|a| format!("{:?}", a.kind)).collect();
                        format!("notice: {}\n", kinds.join(","))
                    },
                    lang: Language::Ja,
                },
                ..opts(OutputCharset::Iso2022Jp)
            };
            let (out, info, actions) = build(&headers(), &text, &[], &o);
            assert!(info.fallback, "{odd}");
            assert_eq!(info.charset, OutputCharset::Utf8);
            assert_eq!(actions.len(), 1);
            assert_eq!(actions[0].kind, ActionKind::CharsetFallback);
            assert!(info.notice.contains("CharsetFallback"));
            let hb = header_block(&out);
            assert!(hb.contains("charset=UTF-8"));
            assert!(hb.contains("X-Mugaika-Status: sanitized; actions=1"));
            let m = MessageParser::default().parse(&out).unwrap();
            assert!(m
                .body_text(0)
                .unwrap()
                .contains(&text.replace('\n', "\r\n")));
        }
    }

    #[test]
    fn header_falls_back_per_field() {
        let mut h = headers();
        h.subject = Some("① 重要".into());
        let (out, info, actions) = build(&h, "本文\n", &[], &opts(OutputCharset::Iso2022Jp));
        assert!(!info.fallback && info.header_fallback);
        assert!(actions.is_empty());
        let hb = header_block(&out);
        assert!(hb.contains("Subject: =?UTF-8?B?"), "{hb}");
        assert!(hb.contains("From: =?ISO-2022-JP?B?"), "{hb}");
        let m = MessageParser::default().parse(&out).unwrap();
        assert_eq!(m.subject(), Some("① 重要"));
    }

    #[test]
    fn long_jis_lines_go_base64() {
        let text = "あ".repeat(600) + "\n";
        let (out, info, _) = build(&headers(), &text, &[], &opts(OutputCharset::Iso2022Jp));
        assert_eq!(info.encoding, TextEncoding::Base64);
        let m = MessageParser::default().parse(&out).unwrap();
        assert!(m.body_text(0).unwrap().contains(&"あ".repeat(600)));
    }

    #[test]
    fn long_utf8_line_is_kept_under_998() {
        let text = "x".repeat(5000) + "\n" + &"日本".repeat(3000);
        let (out, _, _) = build(&headers(), &text, &[], &opts(OutputCharset::Utf8));
        assert!(out.split(|&b| b == b'\n').all(|l| l.len() <= 1000));
        let m = MessageParser::default().parse(&out).unwrap();
        let body = m.body_text(0).unwrap();
        assert!(body.contains(&"x".repeat(5000)));
        assert!(body.ends_with(&format!("{}\r\n", "日本".repeat(3000))));
    }

    #[test]
    fn long_subject_folds_into_short_words() {
        let mut h = headers();
        let subj = "長い件名のテスト、".repeat(40);
        h.subject = Some(subj.clone());
        for cs in [OutputCharset::Utf8, OutputCharset::Iso2022Jp] {
            let (out, _, _) = build(&h, "x\n", &[], &opts(cs));
            let hb = header_block(&out);
            for l in hb.split("\r\n") {
                assert!(l.len() <= 78, "{l}");
            }
            for w in hb.split_whitespace().filter(|w| w.starts_with("=?")) {
                assert!(w.len() <= 75, "{w}");
            }
            let m = MessageParser::default().parse(&out).unwrap();
            assert_eq!(m.subject(), Some(subj.as_str()));
        }
        // A long ASCII word cannot be folded: it is encoded instead.
        let long = "A".repeat(2000);
        h.subject = Some(long.clone());
        let (out, _, _) = build(&h, "x\n", &[], &opts(OutputCharset::Utf8));
        assert!(header_block(&out).split("\r\n").all(|l| l.len() <= 78));
        let m = MessageParser::default().parse(&out).unwrap();
        assert_eq!(m.subject(), Some(long.as_str()));
    }

    #[test]
    fn subject_tag_and_literal_encoded_word_text() {
        let mut h = headers();
        h.subject = Some("=?UTF-8?B?5pel?= is literal".into());
        let o = RebuildOptions {
            subject_tag: "[外部]".into(),
            ..opts(OutputCharset::Utf8)
        };
        let (out, _, _) = build(&h, "x\n", &[], &o);
        let m = MessageParser::default().parse(&out).unwrap();
        assert_eq!(m.subject(), Some("[外部] =?UTF-8?B?5pel?= is literal"));
        h.subject = Some("[外部] Re: 既に付いている".into());
        let (out, _, _) = build(&h, "x\n", &[], &o);
        let m = MessageParser::default().parse(&out).unwrap();
        assert_eq!(m.subject(), Some("[外部] Re: 既に付いている"));
        let o = RebuildOptions {
            subject_tag: "【外部メール】".into(),
            ..opts(OutputCharset::Utf8)
        };
        h.subject = Some("請求書".into());
        let (out, _, _) = build(&h, "x\n", &[], &o);
        let m = MessageParser::default().parse(&out).unwrap();
        assert_eq!(m.subject(), Some("【外部メール】 請求書"));
    }

    #[test]
    fn control_characters_never_make_a_header() {
        let mut h = headers();
        h.subject = Some("hello\r\nBcc: victim@example.com\u{0}".into());
        h.from = vec![addr(Some("evil\r\nX-Injected: 1"), "a@b.example")];
        let (out, _, _) = build(&h, "x\n", &[], &opts(OutputCharset::Utf8));
        let hb = header_block(&out);
        assert!(
            !hb.contains("\r\nBcc:") && !hb.contains("\r\nX-Injected"),
            "{hb}"
        );
        let m = MessageParser::default().parse(&out).unwrap();
        assert_eq!(m.subject(), Some("hello Bcc: victim@example.com"));
    }

    #[test]
    fn addresses_that_cannot_be_written_become_groups_or_are_dropped() {
        let h = TopHeaders {
            from: vec![addr(Some("国際"), "用户@例子.广告")],
            sender: vec![addr(None, "ユーザー@example.jp")],
            to: vec![
                addr(Some("ok"), "ok@example.jp"),
                addr(None, "not an address"),
                addr(Some("q"), "\"john doe\"@example.jp"),
                addr(Some("a.b (c)"), "x.y@example.jp"),
            ],
            ..TopHeaders::default()
        };
        let (out, _, _) = build(&h, "x\n", &[], &opts(OutputCharset::Utf8));
        let hb = header_block(&out);
        assert!(!hb.contains("Sender:"), "{hb}");
        let m = MessageParser::default().parse(&out).unwrap();
        match m.from().unwrap() {
            mail_parser::Address::Group(g) => {
                assert_eq!(g[0].name.as_deref(), Some("国際 <用户@例子.广告>"));
                assert!(g[0].addresses.is_empty());
            }
            other => panic!("{other:?}"),
        }
        assert!(hb.contains("\"john doe\"@example.jp"), "{hb}");
        assert!(
            hb.replace("\r\n ", " ")
                .contains("\"a.b (c)\" <x.y@example.jp>"),
            "{hb}"
        );
    }

    #[test]
    fn date_and_message_id_are_canonical_or_generated() {
        let mut h = headers();
        h.date = Some("1 Apr 2025 09:30 JST".into());
        h.message_id = Some("<bad id with spaces>".into());
        h.in_reply_to = vec!["<a@b>".into(), "junk".into()];
        h.references = (0..40)
            .map(|i| format!("<ref{i}.long.identifier@example.jp>"))
            .collect();
        let (out, info, _) = build(&h, "x\n", &[], &opts(OutputCharset::Utf8));
        let hb = header_block(&out);
        assert!(hb.contains("Date: Tue, 1 Apr 2025 09:30:00 +0900"), "{hb}");
        assert!(
            info.message_id.starts_with("mugaika.")
                && info.message_id.ends_with("@mugaika.example.lg.jp")
        );
        assert!(hb.contains("In-Reply-To: <a@b>\r\n"), "{hb}");
        assert!(hb.split("\r\n").all(|l| l.len() <= 78));
        // Deterministic.
        let (out2, _, _) = build(&h, "x\n", &[], &opts(OutputCharset::Utf8));
        assert_eq!(out, out2);
        for (raw, want) in [
            (
                "Mon, 31 Mar 2025 23:59:60 -0000",
                Some("Mon, 31 Mar 2025 23:59:60 -0000"),
            ),
            (
                "(comment) 29 Feb 2024 00:00:00 GMT",
                Some("Thu, 29 Feb 2024 00:00:00 +0000"),
            ),
            ("1 Jan 99 12:00 EST", Some("Fri, 1 Jan 1999 12:00:00 -0500")),
            (
                "Wed, 5 Jun 2024 10:00:00 XYZ",
                Some("Wed, 5 Jun 2024 10:00:00 -0000"),
            ),
            ("29 Feb 2023 00:00:00 +0900", None),
            ("1 Apr 2025 25:00:00 +0900", None),
            ("1 Apr 2025 10:00:00 +09000", None),
            ("2025-04-01T10:00:00Z", None),
            ("", None),
        ] {
            assert_eq!(canonical_date(raw).as_deref(), want, "{raw}");
        }
        h.date = Some("yesterday-ish".into());
        let (out, _, _) = build(&h, "x\n", &[], &opts(OutputCharset::Utf8));
        assert!(header_block(&out).contains("Date: Tue, 14 Nov 2023 22:13:20 +0000"));
    }

    #[test]
    fn attachments_are_base64_with_both_name_forms() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        let atts = vec![
            KeptAttachment {
                filename: "令和7年度 予算書（最終版）とても長いファイル名のテストです.pdf".into(),
                content_type: "application/pdf".into(),
                data: data.clone(),
            },
            KeptAttachment {
                filename: "photo.png".into(),
                content_type: "image/PNG".into(),
                // Signature, IHDR, IEND: the verifier walks the chunks.
                data: b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR\0\0\0\x01\0\0\0\x01\x08\x02\0\0\0\0\0\0\0\0\0\0\0IEND\xaeB`\x82".to_vec(),
            },
            KeptAttachment {
                filename: "抽出テキスト.txt".into(),
                content_type: "text/plain; charset=utf-8".into(),
                data: "文書から取り出した本文\n".as_bytes().to_vec(),
            },
        ];
        for cs in [OutputCharset::Utf8, OutputCharset::Iso2022Jp] {
            let (out, info, _) = build(&headers(), "本文です。\n", &atts, &opts(cs));
            let b = info.boundary.clone().unwrap();
            assert!(b.contains("=_"));
            let s = String::from_utf8(out.clone()).unwrap();
            assert!(s.contains("filename*0*=UTF-8''"), "{s}");
            assert!(s.contains("filename=\"photo.png\""));
            for l in s.split("\r\n") {
                assert!(l.len() <= 78, "{l}");
            }
            let m = MessageParser::default().parse(&out).unwrap();
            assert_eq!(m.attachment_count(), 3);
            assert!(
                s.contains("Content-Type: text/plain; charset=utf-8;"),
                "{s}"
            );
            let a0 = m.attachment(0).unwrap();
            assert_eq!(a0.attachment_name(), Some(atts[0].filename.as_str()));
            assert_eq!(a0.contents(), &data[..]);
            let a1 = m.attachment(1).unwrap();
            assert_eq!(a1.content_type().unwrap().subtype(), Some("png"));
            assert!(m.body_text(0).unwrap().contains("本文です。"));
        }
    }

    #[test]
    fn bad_attachment_type_is_refused() {
        let atts = vec![KeptAttachment {
            filename: "x".into(),
            content_type: "text/html; charset=\"x\r\nBcc: y\"".into(),
            data: vec![1, 2, 3],
        }];
        let mut actions = Vec::new();
        let mut src = "x";
        let r = write_message(
            &headers(),
            &mut src,
            &atts,
            &mut actions,
            &opts(OutputCharset::Utf8),
            Vec::new(),
        );
        assert!(matches!(r, Err(RebuildError::Attachment { .. })));
    }

    #[test]
    fn empty_text_and_empty_notice() {
        let o = RebuildOptions {
            notice: NoticeSource::Text(String::new()),
            ..opts(OutputCharset::Utf8)
        };
        let (out, _, _) = build(&TopHeaders::default(), "", &[], &o);
        let s = String::from_utf8(out).unwrap();
        assert!(s.ends_with("\r\n\r\n"), "{s:?}");
        let (out, _, _) = build(
            &TopHeaders::default(),
            "",
            &[],
            &opts(OutputCharset::Iso2022Jp),
        );
        let m = MessageParser::default().parse(&out).unwrap();
        assert!(!m.body_text(0).unwrap().contains(SEPARATOR));
    }

    #[test]
    fn decoder_is_chunk_invariant() {
        let text = "aé日本😀\r\nb\rc\n\r\r\n\u{FF76}\u{FF9E}".as_bytes();
        let collect = |chunks: &[&[u8]]| {
            let mut d = Decoder::new();
            let mut v = Vec::new();
            for c in chunks {
                d.feed(c, &mut |e| {
                    v.push(match e {
                        Ev::Char(c) => c,
                        Ev::Newline => '|',
                    });
                    Ok(())
                })
                .unwrap();
            }
            d.finish(&mut |e| {
                v.push(match e {
                    Ev::Char(c) => c,
                    Ev::Newline => '|',
                });
                Ok(())
            })
            .unwrap();
            v
        };
        let whole = collect(&[text]);
        assert_eq!(
            whole.iter().collect::<String>(),
            "aé日本😀|b|c|||\u{FF76}\u{FF9E}"
        );
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(collect(&bytes), whole);
        let bad = collect(&[b"a\xff", b"\xe6\x97", b"b"]);
        assert_eq!(bad.iter().collect::<String>(), "a\u{FFFD}\u{FFFD}b");
    }

    #[test]
    fn kana_folding() {
        let s: String = fold_kana("ｶﾞｷﾞｸﾞﾊﾟﾋﾟｳﾞｱﾞﾝ｡").into_iter().collect();
        assert_eq!(s, "ガギグパピヴア゛ン。");
        let s: String = fold_kana("ﾃｽﾄ").into_iter().collect();
        assert_eq!(s, "テスト");
    }

    #[test]
    fn jis_table_is_strict_jis_x_0208() {
        assert!(jis_cell('①').is_none());
        assert!(jis_cell('㈱').is_none());
        assert!(jis_cell('髙').is_none());
        assert!(jis_cell('😀').is_none());
        assert_eq!(jis_cell('あ'), Some([0x24, 0x22]));
        assert_eq!(jis_cell('〜'), jis_cell('～'));
        assert_eq!(jis_cell('熙'), Some([0x74, 0x26]));
        let n = (0x80u32..0x10000)
            .filter_map(char::from_u32)
            .filter(|&c| jis_cell(c).is_some())
            .count();
        // JIS X 0208 has 6879 characters; six more are aliases of some of them.
        assert_eq!(n, 6879 + JIS_ALIASES.len());
    }
}
