//! The independent check of every clean message, before anything is reported as written.
//!
//! Rebuild is trusted to write the canonical form, but a bug there (or in whatever fed it) must
//! never become a dirty message in a staff mailbox: [`verify_file`] re-reads the file as it is
//! on disk and checks the invariants of DESIGN ("The clean message"). A violation is an error
//! for the caller (fail closed: exit 75 / SMTP 451 / `on_error`), never a warning.
//!
//! Two passes:
//! 1. A **streaming pass** over the file, always: CRLF only, no line over 998 octets, 7-bit
//!    octets only (header and body), only our header fields, our canonical structure (one
//!    text/plain part, or multipart/mixed with the text first and attachments after, no
//!    preamble, no epilogue, no line that merely starts like a delimiter), strict
//!    base64 / quoted-printable / 7bit decoding, strict charset decoding of the text part
//!    (encoding_rs, no replacement; ISO-2022-JP lines must return to ASCII), no part whose
//!    content starts with executable or OLE magic, only allowed media types, and the beginning
//!    of the original body text present in the decoded text. Every attachment is also
//!    re-checked by its content, independently of the converters that made it
//!    ([`check_attachment`]: zip/OOXML members, encrypted members, external relationships, DDE
//!    fields, active PDF names raw and in every inflated stream, image metadata and trailing
//!    data, executables, gzip and tar members), which holds one attachment at a time in memory
//!    (at most [`Expectation::max_attachment_bytes`]); otherwise memory is bounded by a line
//!    and a short head of the text, so a 100 MB message is checked within a few MB.
//! 2. An **independent parse** with mail-parser 0.11 (`MessageParser::default()`), for messages
//!    up to [`Expectation::whole_parse_limit`] (16 MiB): it must find the same leaves, none with
//!    an encoding problem, no HTML, allowed types, the same attachment bytes (SHA-256), and the
//!    body text. Larger messages rely on the streaming pass alone (the memory target of a 100 MB
//!    message in 64 MB RSS leaves no room for a whole-message parse), and concurrent whole
//!    parses share a process-wide budget ([`WHOLE_PARSE_BUDGET`]) so that a relay verifying
//!    many messages at once stays bounded too.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use mail_parser::{MessageParser, MimeHeaders, PartType};
use sha2::{Digest, Sha256};

/// Longest line, CRLF excluded.
const MAX_LINE: usize = 998;
/// Bound on one header block (ours are far smaller; References can be long).
const MAX_HEADER: usize = 4 << 20;
/// How much of the decoded text part is kept for the prefix check, beyond the prefix itself
/// (the notice comes first: at most a few hundred short lines).
const HEAD_SLACK: usize = 256 << 10;

/// Header fields the top level of a clean message may carry (lower case).
const TOP_FIELDS: &[&str] = &[
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
/// Header fields of a part inside our multipart/mixed.
const PART_FIELDS: &[&str] = &[
    "content-type",
    "content-transfer-encoding",
    "content-disposition",
];

/// What the caller knows the clean message must hold.
#[derive(Debug, Clone)]
pub struct Expectation {
    /// The beginning of the model's body text (`TextBuffer::prefix`); it must be found in the
    /// decoded text part (after the notice).
    pub text_prefix: String,
    /// How many attachments rebuild wrote.
    pub attachments: usize,
    /// Messages larger than this get the streaming pass only.
    pub whole_parse_limit: u64,
    /// Largest attachment whose content is re-checked ([`check_attachment`]); a larger one is
    /// a violation (the sanitiser keeps at most twice `max_attachment_size` in all).
    pub max_attachment_bytes: u64,
}

impl Default for Expectation {
    fn default() -> Self {
        Expectation {
            text_prefix: String::new(),
            attachments: 0,
            whole_parse_limit: 16 << 20,
            max_attachment_bytes: 64 << 20,
        }
    }
}

/// An invariant the clean message breaks.
#[derive(Debug, thiserror::Error)]
pub enum Violation {
    #[error("cannot read the clean message: {0}")]
    Io(#[from] io::Error),
    #[error("line {line}: bare CR or LF")]
    BareLineEnd { line: u64 },
    #[error("line {line}: not terminated by CRLF")]
    Unterminated { line: u64 },
    #[error("line {line}: {len} octets, more than 998")]
    LongLine { line: u64, len: usize },
    #[error("line {line}: 8-bit octet in the header")]
    EightBitHeader { line: u64 },
    #[error("line {line}: 8-bit octet in the body")]
    EightBitBody { line: u64 },
    #[error("header field {0:?} is not one of ours")]
    HeaderNotAllowed(String),
    #[error("structure: {0}")]
    Structure(String),
    #[error("part type {0:?} is not allowed")]
    TypeNotAllowed(String),
    #[error("text/html part")]
    Html,
    #[error("part {part}: content starts with {kind} magic")]
    Executable { part: usize, kind: &'static str },
    #[error("part {part}: {reason}")]
    TransferEncoding { part: usize, reason: String },
    #[error("part {part}: text does not decode as {charset}")]
    Charset { part: usize, charset: String },
    #[error("attachment {part}: {reason}")]
    Content { part: usize, reason: String },
    #[error("the original body text is missing from the text part")]
    TextMissing,
    #[error("mail-parser: {0}")]
    Parser(String),
}

/// Checks the clean message at `path`.
pub fn verify_file(path: &Path, expect: &Expectation) -> Result<(), Violation> {
    let size = std::fs::metadata(path)?.len();
    let found = stream_check(File::open(path)?, expect)?;
    if size <= expect.whole_parse_limit {
        let _budget = WholeParseBudget::acquire(size);
        let raw = std::fs::read(path)?;
        parse_check(&raw, expect, &found)?;
    }
    Ok(())
}

/// Octets of clean messages being parsed whole at the same time, process-wide. A whole parse
/// costs about 2.5 times the message (the file, and mail-parser's decoded parts); the relay
/// may verify dozens of messages at once (50 sessions of 10 MB must stay within 512 MB), so
/// whole parses wait for each other past this budget. The streaming pass needs no budget.
pub const WHOLE_PARSE_BUDGET: u64 = 48 << 20;

static BUDGET_USED: std::sync::Mutex<u64> = std::sync::Mutex::new(0);
static BUDGET_FREED: std::sync::Condvar = std::sync::Condvar::new();

/// A share of [`WHOLE_PARSE_BUDGET`], given back when dropped (also on a panic).
struct WholeParseBudget(u64);

impl WholeParseBudget {
    fn acquire(n: u64) -> WholeParseBudget {
        let mut used = BUDGET_USED.lock().unwrap_or_else(|e| e.into_inner());
        // A message larger than the whole budget still runs, alone.
        while *used > 0 && used.saturating_add(n) > WHOLE_PARSE_BUDGET {
            used = BUDGET_FREED.wait(used).unwrap_or_else(|e| e.into_inner());
        }
        *used += n;
        WholeParseBudget(n)
    }
}

impl Drop for WholeParseBudget {
    fn drop(&mut self) {
        let mut used = BUDGET_USED.lock().unwrap_or_else(|e| e.into_inner());
        *used = used.saturating_sub(self.0);
        BUDGET_FREED.notify_all();
    }
}

/// Checks a clean message held in memory (tests, small messages).
pub fn verify_bytes(raw: &[u8], expect: &Expectation) -> Result<(), Violation> {
    let found = stream_check(raw, expect)?;
    if raw.len() as u64 <= expect.whole_parse_limit {
        parse_check(raw, expect, &found)?;
    }
    Ok(())
}

/// Normalises a text for comparison: line ends to LF, half-width katakana to full width and
/// the characters ISO-2022-JP converters disagree on to one form. Applied to both sides.
pub fn normalise_text(s: &str) -> String {
    let s = s.replace("\r\n", "\n").replace('\r', "\n");
    crate::rebuild::fold_kana(&s)
        .into_iter()
        .map(crate::rebuild::jis_fold_char)
        .collect()
}

fn prefix_found(head: &str, expect: &Expectation) -> bool {
    let want = normalise_text(&expect.text_prefix);
    // The prefix may end in the middle of something rebuild combines (CR LF, a katakana and its
    // voiced mark): its last character is not compared.
    let mut want: Vec<char> = want.chars().collect();
    want.pop();
    let want: String = want.into_iter().collect();
    let want = want.trim_end();
    want.is_empty() || normalise_text(head).contains(want)
}

// ---------------------------------------------------------------------------------------------
// The streaming pass

/// What the streaming pass learnt, for the comparison with mail-parser.
#[derive(Debug, Default)]
struct Found {
    top_type: String,
    leaves: Vec<LeafInfo>,
}

#[derive(Debug)]
struct LeafInfo {
    content_type: String,
    sha256: [u8; 32],
}

/// Reads CRLF lines, enforcing the line invariants.
struct Lines<R: Read> {
    r: BufReader<R>,
    buf: Vec<u8>,
    no: u64,
}

impl<R: Read> Lines<R> {
    fn new(r: R) -> Self {
        Lines {
            r: BufReader::with_capacity(64 << 10, r),
            buf: Vec::with_capacity(1024),
            no: 0,
        }
    }

    /// The next line without its CRLF, or `None` at the end.
    fn next(&mut self) -> Result<Option<&[u8]>, Violation> {
        Ok(if self.advance()? {
            Some(self.line())
        } else {
            None
        })
    }

    /// The current line, without its CRLF.
    fn line(&self) -> &[u8] {
        &self.buf[..self.buf.len().saturating_sub(2)]
    }

    /// Moves to the next line; `false` at the end.
    fn advance(&mut self) -> Result<bool, Violation> {
        self.buf.clear();
        loop {
            let avail = self.r.fill_buf()?;
            if avail.is_empty() {
                if self.buf.is_empty() {
                    return Ok(false);
                }
                return Err(Violation::Unterminated { line: self.no + 1 });
            }
            match memchr::memchr(b'\n', avail) {
                Some(i) => {
                    self.buf.extend_from_slice(&avail[..=i]);
                    self.r.consume(i + 1);
                    break;
                }
                None => {
                    let n = avail.len();
                    self.buf.extend_from_slice(avail);
                    self.r.consume(n);
                }
            }
            if self.buf.len() > MAX_LINE + 2 {
                return Err(Violation::LongLine {
                    line: self.no + 1,
                    len: self.buf.len(),
                });
            }
        }
        self.no += 1;
        let len = self.buf.len();
        if len < 2
            || self.buf[len - 2] != b'\r'
            || memchr::memchr(b'\r', &self.buf[..len - 2]).is_some()
        {
            return Err(Violation::BareLineEnd { line: self.no });
        }
        if len - 2 > MAX_LINE {
            return Err(Violation::LongLine {
                line: self.no,
                len: len - 2,
            });
        }
        Ok(true)
    }
}

/// Reads a header block (up to the empty line): fields with lower-case names and unfolded
/// values. Every octet must be 7-bit; every name one of `allowed`, at most once.
fn read_header<R: Read>(
    lines: &mut Lines<R>,
    allowed: &[&str],
) -> Result<Vec<(String, String)>, Violation> {
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut total = 0usize;
    loop {
        if !lines.advance()? {
            return Err(Violation::Structure("header block not ended".into()));
        }
        let line = lines.line();
        let no = lines.no;
        if line.is_empty() {
            break;
        }
        total += line.len();
        if total > MAX_HEADER {
            return Err(Violation::Structure("header block too large".into()));
        }
        if !line.is_ascii() {
            return Err(Violation::EightBitHeader { line: no });
        }
        // Safe: ASCII.
        let text = String::from_utf8_lossy(line);
        if text.starts_with([' ', '\t']) {
            match fields.last_mut() {
                Some((_, v)) => {
                    if text.trim().is_empty() {
                        return Err(Violation::Structure(format!(
                            "line {no}: whitespace-only continuation line"
                        )));
                    }
                    v.push_str(&text);
                }
                None => {
                    return Err(Violation::Structure(format!(
                        "line {no}: continuation without a field"
                    )))
                }
            }
            continue;
        }
        let Some((name, value)) = text.split_once(':') else {
            return Err(Violation::Structure(format!(
                "line {no}: not a header field"
            )));
        };
        let lname = name.to_ascii_lowercase();
        if !allowed.contains(&lname.as_str()) {
            return Err(Violation::HeaderNotAllowed(name.to_string()));
        }
        if fields.iter().any(|(n, _)| *n == lname) {
            return Err(Violation::Structure(format!("duplicate {name} field")));
        }
        fields.push((lname, value.trim().to_string()));
    }
    Ok(fields)
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// A Content-Type or Content-Disposition value: the lower-cased value and its parameters
/// (names lower-cased, quotes removed). Strict enough for what rebuild writes.
fn parse_params(v: &str) -> Option<(String, Vec<(String, String)>)> {
    let mut it = v.splitn(2, ';');
    let main = it.next()?.trim().to_ascii_lowercase();
    let mut rest = it.next().unwrap_or("").trim_start();
    let mut params = Vec::new();
    while !rest.is_empty() {
        let (name, after) = rest.split_once('=')?;
        let name = name.trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, tail) = if let Some(q) = after.strip_prefix('"') {
            let mut val = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => val.push(chars.next()?.1),
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => val.push(c),
                }
            }
            (val, &q[end?..])
        } else {
            let end = after.find(';').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.push((name, value));
        let tail = tail.trim_start();
        rest = match tail.strip_prefix(';') {
            Some(t) => t.trim_start(),
            None if tail.is_empty() => "",
            None => return None,
        };
    }
    Some((main, params))
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn attachment_type_allowed(t: &str) -> bool {
    matches!(
        t,
        "image/png"
            | "image/jpeg"
            | "image/gif"
            | "application/pdf"
            | "application/zip"
            | "application/gzip"
            | "application/x-tar"
            | "text/plain"
            | "text/csv"
    ) || t
        .strip_prefix("application/vnd.openxmlformats-officedocument.")
        .is_some_and(|s| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.')
        })
}

fn magic(data: &[u8]) -> Option<&'static str> {
    if data.starts_with(b"MZ") {
        Some("MZ (PE executable)")
    } else if data.starts_with(b"\x7fELF") {
        Some("ELF")
    } else if data.starts_with(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]) {
        Some("OLE2")
    } else {
        None
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Cte {
    SevenBit,
    QuotedPrintable,
    Base64,
}

/// One leaf being checked: transfer-decoded octets in, checks and (for the text) a head out.
struct Leaf {
    index: usize,
    content_type: String,
    cte: Cte,
    charset_name: String,
    decoder: Option<encoding_rs::Decoder>,
    /// ISO-2022-JP: whether the decoded octets are in a JIS X 0208 (two-byte) state.
    jis: Option<JisState>,
    head: String,
    head_cap: usize,
    first: Vec<u8>,
    hasher: Sha256,
    scratch: String,
    /// Reused buffer for one decoded line.
    tmp: Vec<u8>,
    /// An attachment's decoded content, kept for [`check_attachment`] up to `keep_max`.
    keep: Option<Vec<u8>>,
    keep_max: u64,
    /// Transfer decoding state: pending CRLF (7bit, QP) and base64 quad.
    pending_crlf: bool,
    quad: [u8; 4],
    quad_len: usize,
    b64_done: bool,
}

#[derive(Default)]
struct JisState {
    esc: Vec<u8>,
    two_byte: bool,
}

impl Leaf {
    fn new(
        index: usize,
        content_type: &str,
        cte: Cte,
        charset: Option<&str>,
        head_cap: usize,
    ) -> Result<Leaf, Violation> {
        let (decoder, jis, charset_name) = match charset {
            None => (None, None, String::new()),
            Some(label) => {
                let l = label.to_ascii_lowercase();
                let enc = match l.as_str() {
                    "utf-8" => encoding_rs::UTF_8,
                    "iso-2022-jp" => encoding_rs::ISO_2022_JP,
                    _ => {
                        return Err(Violation::Charset {
                            part: index,
                            charset: label.to_string(),
                        })
                    }
                };
                let jis = (enc == encoding_rs::ISO_2022_JP).then(JisState::default);
                (Some(enc.new_decoder_without_bom_handling()), jis, l)
            }
        };
        Ok(Leaf {
            index,
            content_type: content_type.to_string(),
            cte,
            charset_name,
            decoder,
            jis,
            head: String::new(),
            head_cap,
            first: Vec::with_capacity(8),
            hasher: Sha256::new(),
            scratch: String::new(),
            tmp: Vec::with_capacity(128),
            keep: None,
            keep_max: 0,
            pending_crlf: false,
            quad: [0; 4],
            quad_len: 0,
            b64_done: false,
        })
    }

    fn te_error(&self, reason: impl Into<String>) -> Violation {
        Violation::TransferEncoding {
            part: self.index,
            reason: reason.into(),
        }
    }

    /// One body line (CRLF removed), still transfer-encoded.
    fn line(&mut self, line: &[u8]) -> Result<(), Violation> {
        match self.cte {
            Cte::SevenBit => {
                if line.contains(&0) {
                    return Err(self.te_error("NUL in a 7bit body"));
                }
                if std::mem::replace(&mut self.pending_crlf, true) {
                    self.decoded(b"\r\n")?;
                }
                self.decoded(line)
            }
            Cte::QuotedPrintable => {
                if line.len() > 76 {
                    return Err(self.te_error("quoted-printable line longer than 76"));
                }
                if std::mem::take(&mut self.pending_crlf) {
                    self.decoded(b"\r\n")?;
                }
                let (body, soft) = match line.strip_suffix(b"=") {
                    Some(b) => (b, true),
                    None => (line, false),
                };
                if !soft && matches!(line.last(), Some(b' ' | b'\t')) {
                    return Err(self.te_error("unencoded whitespace at a line end"));
                }
                let mut out = std::mem::take(&mut self.tmp);
                out.clear();
                let mut i = 0;
                while i < body.len() {
                    let b = body[i];
                    if b == b'=' {
                        let h = body.get(i + 1..i + 3).and_then(|h| {
                            let s = std::str::from_utf8(h).ok()?;
                            u8::from_str_radix(s, 16).ok()
                        });
                        match h {
                            Some(v) => out.push(v),
                            None => return Err(self.te_error("bad =XX sequence")),
                        }
                        i += 3;
                    } else if b == b' ' || b == b'\t' || (33..=126).contains(&b) {
                        out.push(b);
                        i += 1;
                    } else {
                        return Err(self.te_error("octet that quoted-printable must encode"));
                    }
                }
                self.pending_crlf = !soft;
                let r = self.decoded(&out);
                self.tmp = out;
                r
            }
            Cte::Base64 => {
                if line.len() > 76 {
                    return Err(self.te_error("base64 line longer than 76"));
                }
                let mut out = std::mem::take(&mut self.tmp);
                out.clear();
                for &c in line {
                    if self.b64_done {
                        return Err(self.te_error("base64 data after the padding"));
                    }
                    let v = B64_VALUE[usize::from(c)];
                    if v == 0xFF {
                        return Err(self.te_error("character outside the base64 alphabet"));
                    }
                    self.quad[self.quad_len] = v;
                    self.quad_len += 1;
                    if self.quad_len == 4 {
                        self.quad_len = 0;
                        let q = self.quad;
                        let pad = q.iter().filter(|&&x| x == 64).count();
                        let pad_ok = match pad {
                            0 => true,
                            1 => q[3] == 64,
                            2 => q[2] == 64 && q[3] == 64,
                            _ => false,
                        };
                        if !pad_ok {
                            return Err(self.te_error("misplaced base64 padding"));
                        }
                        let n = (u32::from(q[0]) << 18)
                            | (u32::from(q[1]) << 12)
                            | (u32::from(q[2] & 63) << 6)
                            | u32::from(q[3] & 63);
                        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
                        out.extend_from_slice(&bytes[..3 - pad]);
                        if pad > 0 {
                            self.b64_done = true;
                        }
                    }
                }
                let r = self.decoded(&out);
                self.tmp = out;
                r
            }
        }
    }

    /// Transfer-decoded octets.
    fn decoded(&mut self, data: &[u8]) -> Result<(), Violation> {
        if data.is_empty() {
            return Ok(());
        }
        if self.first.len() < 8 {
            let n = (8 - self.first.len()).min(data.len());
            self.first.extend_from_slice(&data[..n]);
        }
        self.hasher.update(data);
        if let Some(k) = self.keep.as_mut() {
            if (k.len() + data.len()) as u64 > self.keep_max {
                return Err(Violation::Content {
                    part: self.index,
                    reason: format!("larger than {} octets, cannot be re-checked", self.keep_max),
                });
            }
            k.extend_from_slice(data);
        }
        if let Some(j) = self.jis.as_mut() {
            for &b in data {
                if !j.esc.is_empty() || b == 0x1B {
                    j.esc.push(b);
                    if j.esc.len() == 3 {
                        match &j.esc[..] {
                            b"\x1b$B" => j.two_byte = true,
                            b"\x1b(B" => j.two_byte = false,
                            _ => {
                                return Err(Violation::Charset {
                                    part: self.index,
                                    charset: "ISO-2022-JP (escape other than ESC $ B / ESC ( B)"
                                        .into(),
                                })
                            }
                        }
                        j.esc.clear();
                    }
                } else if b == b'\n' && j.two_byte {
                    return Err(Violation::Charset {
                        part: self.index,
                        charset: "ISO-2022-JP (line ends outside ASCII)".into(),
                    });
                } else if b >= 0x80 {
                    return Err(Violation::Charset {
                        part: self.index,
                        charset: "ISO-2022-JP (8-bit octet)".into(),
                    });
                }
            }
        }
        self.decode_charset(data, false)
    }

    fn decode_charset(&mut self, data: &[u8], last: bool) -> Result<(), Violation> {
        let Some(dec) = self.decoder.as_mut() else {
            return Ok(());
        };
        let mut src = data;
        loop {
            self.scratch.clear();
            let want = dec
                .max_utf8_buffer_length_without_replacement(src.len())
                .unwrap_or(src.len() * 3 + 16)
                .clamp(64, 256 << 10);
            self.scratch.reserve(want);
            let (res, read) =
                dec.decode_to_string_without_replacement(src, &mut self.scratch, last);
            if self.head.len() < self.head_cap {
                let room = self.head_cap - self.head.len();
                let cut = floor_boundary(&self.scratch, room.min(self.scratch.len()));
                self.head.push_str(&self.scratch[..cut]);
            }
            src = src.get(read..).unwrap_or(&[]);
            match res {
                encoding_rs::DecoderResult::InputEmpty => return Ok(()),
                encoding_rs::DecoderResult::OutputFull => continue,
                encoding_rs::DecoderResult::Malformed(_, _) => {
                    return Err(Violation::Charset {
                        part: self.index,
                        charset: self.charset_name.clone(),
                    })
                }
            }
        }
    }

    /// The part ended (`at_delimiter`: a boundary follows, which owns the last CRLF).
    fn finish(mut self, at_delimiter: bool) -> Result<(LeafInfo, String, Vec<u8>), Violation> {
        let index = self.index;
        let keep = self.keep.take();
        let r = self.finish_leaf(at_delimiter)?;
        if let Some(k) = keep {
            check_attachment(&k).map_err(|reason| Violation::Content {
                part: index,
                reason,
            })?;
        }
        Ok(r)
    }

    fn finish_leaf(mut self, at_delimiter: bool) -> Result<(LeafInfo, String, Vec<u8>), Violation> {
        if self.pending_crlf && !at_delimiter {
            self.decoded(b"\r\n")?;
        }
        if self.cte == Cte::Base64 && self.quad_len != 0 {
            return Err(self.te_error("base64 data ends inside a quantum"));
        }
        if let Some(j) = &self.jis {
            if j.two_byte || !j.esc.is_empty() {
                return Err(Violation::Charset {
                    part: self.index,
                    charset: "ISO-2022-JP (text ends outside ASCII)".into(),
                });
            }
        }
        self.decode_charset(&[], true)?;
        if let Some(kind) = magic(&self.first) {
            return Err(Violation::Executable {
                part: self.index,
                kind,
            });
        }
        Ok((
            LeafInfo {
                content_type: self.content_type,
                sha256: self.hasher.finalize().into(),
            },
            self.head,
            self.first,
        ))
    }
}

/// Base64 values (64 for the padding `=`, 0xFF outside the alphabet).
const B64_VALUE: [u8; 256] = {
    let mut t = [0xFFu8; 256];
    let mut i = 0;
    while i < 26 {
        t[b'A' as usize + i] = i as u8;
        t[b'a' as usize + i] = 26 + i as u8;
        i += 1;
    }
    let mut d = 0;
    while d < 10 {
        t[b'0' as usize + d] = 52 + d as u8;
        d += 1;
    }
    t[b'+' as usize] = 62;
    t[b'/' as usize] = 63;
    t[b'=' as usize] = 64;
    t
};

fn floor_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn cte_of(fields: &[(String, String)], part: usize) -> Result<Cte, Violation> {
    match field(fields, "content-transfer-encoding").map(|v| v.to_ascii_lowercase()) {
        Some(v) if v == "7bit" => Ok(Cte::SevenBit),
        Some(v) if v == "quoted-printable" => Ok(Cte::QuotedPrintable),
        Some(v) if v == "base64" => Ok(Cte::Base64),
        Some(v) => Err(Violation::TransferEncoding {
            part,
            reason: format!("transfer encoding {v:?} is not one rebuild writes"),
        }),
        None => Err(Violation::Structure(format!(
            "part {part} has no Content-Transfer-Encoding"
        ))),
    }
}

fn stream_check<R: Read>(r: R, expect: &Expectation) -> Result<Found, Violation> {
    let mut lines = Lines::new(r);
    let top = read_header(&mut lines, TOP_FIELDS)?;
    for required in [
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "x-mugaika-status",
    ] {
        if field(&top, required).is_none() {
            return Err(Violation::Structure(format!("no {required} field")));
        }
    }
    if field(&top, "mime-version") != Some("1.0") {
        return Err(Violation::Structure("MIME-Version is not 1.0".into()));
    }
    let ct_raw = field(&top, "content-type").unwrap_or("");
    let (top_type, top_params) = parse_params(ct_raw)
        .ok_or_else(|| Violation::Structure(format!("bad Content-Type {ct_raw:?}")))?;
    let head_cap = expect.text_prefix.len() + HEAD_SLACK;
    let mut found = Found {
        top_type: top_type.clone(),
        leaves: Vec::new(),
    };
    let mut text_head = String::new();

    match top_type.as_str() {
        "text/plain" => {
            let cte = cte_of(&top, 0)?;
            let mut leaf = Leaf::new(
                0,
                "text/plain",
                cte,
                param(&top_params, "charset"),
                head_cap,
            )?;
            if param(&top_params, "charset").is_none() {
                return Err(Violation::Structure("text part without a charset".into()));
            }
            while lines.advance()? {
                let line = lines.line();
                if !line.is_ascii() {
                    return Err(Violation::EightBitBody { line: lines.no });
                }
                leaf.line(line)?;
            }
            let (info, head, _) = leaf.finish(false)?;
            found.leaves.push(info);
            text_head = head;
        }
        "multipart/mixed" => {
            if field(&top, "content-transfer-encoding").is_some() {
                return Err(Violation::Structure(
                    "Content-Transfer-Encoding on the multipart".into(),
                ));
            }
            let boundary = param(&top_params, "boundary")
                .filter(|b| !b.is_empty() && b.len() <= 70 && b.contains("=_") && b.is_ascii())
                .ok_or_else(|| Violation::Structure("missing or unusable boundary".into()))?
                .to_string();
            let delim = format!("--{boundary}").into_bytes();
            let close = format!("--{boundary}--").into_bytes();
            match lines.next()? {
                Some(l) if l == &delim[..] => {}
                _ => {
                    return Err(Violation::Structure(
                        "preamble before the first boundary".into(),
                    ))
                }
            }
            let mut index = 0usize;
            'parts: loop {
                index += 1;
                let fields = read_header(&mut lines, PART_FIELDS)?;
                let ct = field(&fields, "content-type").ok_or_else(|| {
                    Violation::Structure(format!("part {index} has no Content-Type"))
                })?;
                let (ptype, pparams) = parse_params(ct)
                    .ok_or_else(|| Violation::Structure(format!("bad Content-Type {ct:?}")))?;
                let cte = cte_of(&fields, index)?;
                let mut leaf = if index == 1 {
                    if ptype != "text/plain" {
                        return Err(if ptype == "text/html" {
                            Violation::Html
                        } else {
                            Violation::Structure(format!("first part is {ptype}, not the text"))
                        });
                    }
                    if field(&fields, "content-disposition").is_some() {
                        return Err(Violation::Structure("text part with a disposition".into()));
                    }
                    let cs = param(&pparams, "charset").ok_or_else(|| {
                        Violation::Structure("text part without a charset".into())
                    })?;
                    Leaf::new(index, &ptype, cte, Some(cs), head_cap)?
                } else {
                    if ptype == "text/html" {
                        return Err(Violation::Html);
                    }
                    if !attachment_type_allowed(&ptype) {
                        return Err(Violation::TypeNotAllowed(ptype));
                    }
                    if cte != Cte::Base64 {
                        return Err(Violation::TransferEncoding {
                            part: index,
                            reason: "attachment not in base64".into(),
                        });
                    }
                    match field(&fields, "content-disposition").and_then(parse_params) {
                        Some((d, _)) if d == "attachment" => {}
                        _ => {
                            return Err(Violation::Structure(format!(
                                "part {index} is not an attachment"
                            )))
                        }
                    }
                    // Text extracted from a document is UTF-8 and must decode as such.
                    let cs = param(&pparams, "charset");
                    if ptype.starts_with("text/") && cs != Some("utf-8") {
                        return Err(Violation::Structure(format!(
                            "text attachment {index} without charset=utf-8"
                        )));
                    }
                    let mut leaf = Leaf::new(index, &ptype, cte, cs, 0)?;
                    leaf.keep = Some(Vec::new());
                    leaf.keep_max = expect.max_attachment_bytes;
                    leaf
                };
                loop {
                    if !lines.advance()? {
                        return Err(Violation::Structure("multipart not closed".into()));
                    }
                    let line = lines.line();
                    if line.starts_with(&delim) {
                        let is_next = line == &delim[..];
                        let is_close = line == &close[..];
                        if !is_next && !is_close {
                            return Err(Violation::Structure(format!(
                                "line {}: looks like a delimiter but is not one",
                                lines.no
                            )));
                        }
                        let (info, head, _) = leaf.finish(true)?;
                        if index == 1 {
                            text_head = head;
                        }
                        found.leaves.push(info);
                        if is_close {
                            break 'parts;
                        }
                        continue 'parts;
                    }
                    if !line.is_ascii() {
                        return Err(Violation::EightBitBody { line: lines.no });
                    }
                    leaf.line(line)?;
                }
            }
            if lines.next()?.is_some() {
                return Err(Violation::Structure(
                    "epilogue after the closing boundary".into(),
                ));
            }
        }
        "text/html" => return Err(Violation::Html),
        other => return Err(Violation::TypeNotAllowed(other.to_string())),
    }
    let attachments = found.leaves.len().saturating_sub(1);
    if attachments != expect.attachments {
        return Err(Violation::Structure(format!(
            "{attachments} attachments written, {} expected",
            expect.attachments
        )));
    }
    if !prefix_found(&text_head, expect) {
        return Err(Violation::TextMissing);
    }
    Ok(found)
}

// ---------------------------------------------------------------------------------------------
// The independent parse

fn parse_check(raw: &[u8], expect: &Expectation, found: &Found) -> Result<(), Violation> {
    let msg = MessageParser::default()
        .parse(raw)
        .ok_or_else(|| Violation::Parser("does not parse".into()))?;
    let mut leaves = Vec::new();
    for (i, part) in msg.parts.iter().enumerate() {
        if part.is_encoding_problem {
            return Err(Violation::Parser(format!("part {i}: encoding problem")));
        }
        let ct = part
            .content_type()
            .map(|c| {
                format!("{}/{}", c.ctype(), c.subtype().unwrap_or_default()).to_ascii_lowercase()
            })
            .unwrap_or_else(|| "text/plain".into());
        match &part.body {
            PartType::Html(_) => return Err(Violation::Html),
            PartType::Message(_) => {
                return Err(Violation::Parser(format!("part {i}: a nested message")))
            }
            PartType::Multipart(_) => {
                if i != 0 || ct != "multipart/mixed" {
                    return Err(Violation::Parser(format!("part {i}: unexpected {ct}")));
                }
            }
            PartType::Text(_) | PartType::Binary(_) | PartType::InlineBinary(_) => {
                if ct == "text/html" {
                    return Err(Violation::Html);
                }
                if ct != "text/plain" && !attachment_type_allowed(&ct) {
                    return Err(Violation::TypeNotAllowed(ct));
                }
                leaves.push((ct, part));
            }
        }
    }
    let root = msg
        .parts
        .first()
        .ok_or_else(|| Violation::Parser("no parts".into()))?;
    let root_type = root
        .content_type()
        .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or_default()).to_ascii_lowercase())
        .unwrap_or_default();
    if root_type != found.top_type {
        return Err(Violation::Parser(format!(
            "top type {root_type}, streaming pass found {}",
            found.top_type
        )));
    }
    if leaves.len() != found.leaves.len() {
        return Err(Violation::Parser(format!(
            "{} leaves, streaming pass found {}",
            leaves.len(),
            found.leaves.len()
        )));
    }
    for (i, ((ct, part), mine)) in leaves.iter().zip(&found.leaves).enumerate() {
        if *ct != mine.content_type {
            return Err(Violation::Parser(format!(
                "leaf {i} is {ct}, streaming pass found {}",
                mine.content_type
            )));
        }
        match &part.body {
            PartType::Text(text) if i == 0 => {
                if !prefix_found(text, expect) {
                    return Err(Violation::TextMissing);
                }
            }
            PartType::Binary(b) | PartType::InlineBinary(b) => {
                if let Some(kind) = magic(b) {
                    return Err(Violation::Executable { part: i, kind });
                }
                let h: [u8; 32] = Sha256::digest(b.as_ref()).into();
                if h != mine.sha256 {
                    return Err(Violation::Parser(format!(
                        "leaf {i}: decoded content differs from the streaming pass"
                    )));
                }
            }
            PartType::Text(_) => {}
            _ => return Err(Violation::Parser(format!("leaf {i}: not text or binary"))),
        }
        if i == 0 && !matches!(part.body, PartType::Text(_)) {
            return Err(Violation::Parser("the first leaf is not text".into()));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Attachment content, re-checked independently of the converters

/// Most octets inflated or unpacked while checking one attachment (all nested objects).
const CONTENT_BUDGET: u64 = 256 << 20;
/// Deepest nesting of containers followed (zip in zip, gzip in tar...).
const CONTENT_DEPTH: usize = 6;
/// Most members of one archive looked at.
const CONTENT_ENTRIES: usize = 20_000;

/// PNG chunks a clean image may carry: the critical ones, transparency, colour space and
/// pixel size. Text, EXIF, ICC profiles and private chunks are metadata: refused.
const PNG_CHUNKS: &[&[u8; 4]] = &[
    b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"sBIT", b"bKGD",
    b"pHYs",
];

/// PDF names that mean active or hidden content.
const PDF_NAMES: &[&[u8]] = &[
    b"JavaScript",
    b"JS",
    b"Launch",
    b"EmbeddedFile",
    b"EmbeddedFiles",
    b"OpenAction",
    b"AA",
    b"RichMedia",
    b"XFA",
];

struct Budget(u64);

impl Budget {
    fn take(&mut self, n: u64) -> Result<(), String> {
        if n > self.0 {
            return Err("too much content to check (decompression limit)".into());
        }
        self.0 -= n;
        Ok(())
    }
}

/// Checks one delivered attachment by its content (never by its declared type): no executable
/// or OLE object, no macro, ActiveX, embedded object, external relationship or DDE field in a
/// zip/OOXML package, no encrypted zip member, no active PDF name in the file or in any
/// inflated stream, no image metadata or trailing data; containers are checked member by
/// member. `Err` names what was found.
pub fn check_attachment(data: &[u8]) -> Result<(), String> {
    let mut budget = Budget(CONTENT_BUDGET);
    check_content(data, 0, false, &mut budget)
}

fn check_content(
    data: &[u8],
    depth: usize,
    in_package: bool,
    budget: &mut Budget,
) -> Result<(), String> {
    if depth > CONTENT_DEPTH {
        return Err("containers nested too deep to check".into());
    }
    if let Some(kind) = exec_magic(data) {
        return Err(format!("{kind} content"));
    }
    if data.starts_with(b"PK\x03\x04") || data.starts_with(b"PK\x05\x06") {
        return check_zip(data, depth, budget);
    }
    if data.starts_with(b"\x1f\x8b") {
        let inner = inflate(flate2::read::MultiGzDecoder::new(data), budget)?;
        return check_content(&inner, depth + 1, false, budget);
    }
    if data.get(257..262) == Some(b"ustar") {
        return check_tar(data, depth, budget);
    }
    if memchr::memmem::find(&data[..data.len().min(1024)], b"%PDF-").is_some() {
        return check_pdf(data, budget);
    }
    if data.starts_with(b"\x89PNG\r\n\x1a\n") && !in_package {
        return check_png(data);
    }
    if data.starts_with(b"\xFF\xD8\xFF") && !in_package {
        return check_jpeg(data);
    }
    Ok(())
}

/// Executables, OLE2 containers, shortcuts and scripts by their first octets.
fn exec_magic(data: &[u8]) -> Option<&'static str> {
    const MAGIC: &[(&[u8], &str)] = &[
        (b"MZ", "PE executable"),
        (b"\x7fELF", "ELF executable"),
        (b"\xCA\xFE\xBA\xBE", "Mach-O executable"),
        (b"\xFE\xED\xFA\xCE", "Mach-O executable"),
        (b"\xFE\xED\xFA\xCF", "Mach-O executable"),
        (b"\xCE\xFA\xED\xFE", "Mach-O executable"),
        (b"\xCF\xFA\xED\xFE", "Mach-O executable"),
        (b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1", "OLE2"),
        (b"\x4C\x00\x00\x00\x01\x14\x02\x00", "Windows shortcut"),
        (b"#!", "script"),
    ];
    MAGIC
        .iter()
        .find(|(m, _)| data.starts_with(m))
        .map(|(_, k)| *k)
}

/// Reads a decoder to its end within the budget.
fn inflate<R: Read>(r: R, budget: &mut Budget) -> Result<Vec<u8>, String> {
    let limit = budget.0.saturating_add(1);
    let mut out = Vec::new();
    r.take(limit)
        .read_to_end(&mut out)
        .map_err(|e| format!("compressed data does not decode: {e}"))?;
    budget.take(out.len() as u64)?;
    Ok(out)
}

fn le16(d: &[u8], at: usize) -> Option<usize> {
    d.get(at..at + 2)
        .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
}

fn check_zip(data: &[u8], depth: usize, budget: &mut Budget) -> Result<(), String> {
    let mut zip = zip::ZipArchive::new(io::Cursor::new(data))
        .map_err(|e| format!("zip does not open: {e}"))?;
    if zip.len() > CONTENT_ENTRIES {
        return Err("zip has too many members to check".into());
    }
    let package = zip.index_for_name("[Content_Types].xml").is_some();
    for i in 0..zip.len() {
        let (name, encrypted, start) = {
            let f = zip
                .by_index_raw(i)
                .map_err(|e| format!("zip member {i}: {e}"))?;
            (
                String::from_utf8_lossy(f.name_raw()).into_owned(),
                f.encrypted(),
                f.header_start(),
            )
        };
        // The local header too: readers that walk local headers see its flags and name.
        let at = usize::try_from(start).unwrap_or(usize::MAX);
        let local_flags = le16(data, at.saturating_add(6));
        let local_name = match (le16(data, at.saturating_add(26)), data.get(at..at + 4)) {
            (Some(n), Some(b"PK\x03\x04")) => data
                .get(at + 30..at + 30 + n)
                .map(|b| String::from_utf8_lossy(b).into_owned()),
            _ => None,
        };
        if encrypted || local_flags.is_some_and(|f| f & 1 != 0) {
            return Err(format!("encrypted zip member {name:?}"));
        }
        for n in [Some(&name), local_name.as_ref()].into_iter().flatten() {
            forbidden_member(n)?;
        }
        let mut f = zip
            .by_index(i)
            .map_err(|e| format!("zip member {name:?}: {e}"))?;
        if f.is_dir() {
            continue;
        }
        let content = inflate(&mut f, budget)?;
        drop(f);
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".rels") {
            let text = String::from_utf8_lossy(&content).to_ascii_lowercase();
            let squeezed: String = text.chars().filter(|c| !c.is_whitespace()).collect();
            if squeezed.contains("targetmode=\"external\"")
                || squeezed.contains("targetmode='external'")
            {
                return Err(format!("external relationship in {name:?}"));
            }
        }
        if lower.ends_with(".xml") || lower.ends_with(".rels") {
            dde_check(&content, &name)?;
        }
        check_content(&content, depth + 1, package, budget).map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}

/// Member names that carry macros or embedded objects.
fn forbidden_member(name: &str) -> Result<(), String> {
    let lower = name.to_ascii_lowercase().replace('\\', "/");
    let base = lower.rsplit('/').next().unwrap_or(&lower);
    let bad = ["vbaproject", "vbadata", "activex", "oleobject"]
        .iter()
        .any(|p| base.starts_with(p))
        || lower.contains("embeddings/")
        || lower
            .split('/')
            .any(|c| c == "activex" || c == "embeddings");
    if bad {
        Err(format!("zip member {name:?} (macro or embedded object)"))
    } else {
        Ok(())
    }
}

/// DDE field instructions (`DDE`, `DDEAUTO` in Word fields) and `ddeService` links (Excel).
fn dde_check(xml: &[u8], name: &str) -> Result<(), String> {
    let text = String::from_utf8_lossy(xml);
    let lower = text.to_ascii_lowercase();
    if lower.contains("ddeservice") {
        return Err(format!("DDE link in {name:?}"));
    }
    // Field instructions: the text of <w:instrText> elements (joined, a field may be split
    // over several runs) and the instr attribute of <w:fldSimple>.
    let mut instr = String::new();
    let mut rest = lower.as_str();
    while let Some(i) = rest.find(":instrtext") {
        rest = &rest[i..];
        let Some(gt) = rest.find('>') else { break };
        let body = &rest[gt + 1..];
        let end = body.find('<').unwrap_or(body.len());
        instr.push_str(&body[..end]);
        instr.push(' ');
        rest = &body[end..];
    }
    let mut rest = lower.as_str();
    while let Some(i) = rest.find("instr=") {
        let v = &rest[i + 6..];
        let q = v.chars().next().unwrap_or('"');
        let v = &v[q.len_utf8().min(v.len())..];
        let end = v.find(q).unwrap_or(v.len());
        instr.push_str(&v[..end]);
        instr.push(' ');
        rest = &v[end..];
    }
    let words = instr.split(|c: char| !c.is_ascii_alphanumeric());
    for w in words {
        if w == "dde" || w == "ddeauto" {
            return Err(format!("DDE field instruction in {name:?}"));
        }
    }
    Ok(())
}

fn check_tar(data: &[u8], depth: usize, budget: &mut Budget) -> Result<(), String> {
    let mut at = 0usize;
    let mut n = 0usize;
    while let Some(h) = data.get(at..at + 512) {
        if h.iter().all(|&b| b == 0) {
            break;
        }
        n += 1;
        if n > CONTENT_ENTRIES {
            return Err("tar has too many members to check".into());
        }
        let size_field = String::from_utf8_lossy(&h[124..136]);
        let size = u64::from_str_radix(size_field.trim_matches(|c: char| c == '\0' || c == ' '), 8)
            .map_err(|_| "tar header with an unreadable size".to_string())?;
        let size = usize::try_from(size).map_err(|_| "tar member too large".to_string())?;
        let start = at + 512;
        let body = data
            .get(start..start.saturating_add(size))
            .ok_or_else(|| "tar member cut short".to_string())?;
        let name = String::from_utf8_lossy(h.get(..100).unwrap_or(&[]))
            .trim_end_matches('\0')
            .to_string();
        forbidden_member(&name)?;
        if matches!(h[156], 0 | b'0') {
            check_content(body, depth + 1, false, budget).map_err(|e| format!("{name}: {e}"))?;
        }
        at = start.saturating_add(size.div_ceil(512) * 512);
    }
    Ok(())
}

fn check_pdf(data: &[u8], budget: &mut Budget) -> Result<(), String> {
    pdf_names(data)?;
    // Every stream, inflated when it inflates (object streams hide dictionaries there).
    let mut pos = 0;
    let finder = memchr::memmem::Finder::new(b"stream");
    while let Some(i) = finder.find(&data[pos..]) {
        let s = pos + i;
        pos = s + 6;
        if s >= 3 && &data[s - 3..s] == b"end" {
            continue;
        }
        let mut body = s + 6;
        if data.get(body) == Some(&b'\r') {
            body += 1;
        }
        if data.get(body) == Some(&b'\n') {
            body += 1;
        }
        let Some(end) = memchr::memmem::find(&data[body..], b"endstream") else {
            break;
        };
        let raw = &data[body..body + end];
        pos = body + end + 9;
        if raw.len() < 2 {
            continue;
        }
        let mut z = flate2::read::ZlibDecoder::new(raw);
        let mut out = Vec::new();
        let limit = budget.0.saturating_add(1);
        // A stream that does not inflate (an image, another filter) was scanned raw above;
        // what inflates is scanned in full.
        let _ = (&mut z).take(limit).read_to_end(&mut out);
        budget.take(out.len() as u64)?;
        if !out.is_empty() {
            pdf_names(&out)?;
        }
    }
    Ok(())
}

/// PDF name tokens (`/Name`, `#xx` escapes decoded) that mean active content.
fn pdf_names(data: &[u8]) -> Result<(), String> {
    let delim = |b: u8| b.is_ascii_whitespace() || b"()<>[]{}/%".contains(&b) || b == 0;
    let mut i = 0;
    let mut name = Vec::with_capacity(32);
    while let Some(off) = memchr::memchr(b'/', &data[i..]) {
        let mut j = i + off + 1;
        name.clear();
        while let Some(&b) = data.get(j) {
            if delim(b) {
                break;
            }
            if b == b'#' {
                let hex = data
                    .get(j + 1..j + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(v) = hex {
                    name.push(v);
                    j += 3;
                    continue;
                }
            }
            name.push(b);
            j += 1;
            if name.len() > 64 {
                break;
            }
        }
        if PDF_NAMES.contains(&name.as_slice()) {
            return Err(format!("PDF name /{}", String::from_utf8_lossy(&name)));
        }
        i = j.max(i + off + 1);
    }
    Ok(())
}

fn check_png(data: &[u8]) -> Result<(), String> {
    let mut at = 8usize;
    loop {
        let head = data
            .get(at..at + 8)
            .ok_or_else(|| "PNG ends without IEND".to_string())?;
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let kind = &head[4..8];
        if !PNG_CHUNKS.iter().any(|k| &k[..] == kind) {
            return Err(format!(
                "PNG chunk {} (metadata)",
                String::from_utf8_lossy(kind)
            ));
        }
        at = at.saturating_add(12).saturating_add(len);
        if kind == b"IEND" {
            return if at < data.len() {
                Err(format!("{} octets after the PNG end", data.len() - at))
            } else {
                Ok(())
            };
        }
    }
}

fn check_jpeg(data: &[u8]) -> Result<(), String> {
    let mut at = 2usize;
    loop {
        // Markers may be preceded by fill octets 0xFF.
        while data.get(at) == Some(&0xFF) && data.get(at + 1) == Some(&0xFF) {
            at += 1;
        }
        let m = match data.get(at..at + 2) {
            Some([0xFF, m]) => *m,
            _ => return Err("JPEG structure damaged".into()),
        };
        at += 2;
        match m {
            0xD9 => {
                return if at < data.len() {
                    Err(format!("{} octets after the JPEG end", data.len() - at))
                } else {
                    Ok(())
                };
            }
            0xD0..=0xD7 | 0x01 => continue,
            _ => {}
        }
        let len = le16_be(data, at).ok_or_else(|| "JPEG segment cut short".to_string())?;
        if m == 0xE1 {
            return Err("JPEG APP1 segment (EXIF/XMP metadata)".into());
        }
        if m == 0xED || m == 0xFE {
            return Err("JPEG metadata segment (IPTC or comment)".into());
        }
        at = at.saturating_add(len);
        if m == 0xDA {
            // Entropy-coded data up to the next marker that is not a stuffed 0xFF or RSTn.
            loop {
                let Some(off) = data.get(at..).and_then(|d| memchr::memchr(0xFF, d)) else {
                    return Err("JPEG ends inside the image data".into());
                };
                at += off;
                match data.get(at + 1) {
                    Some(0x00 | 0xD0..=0xD7 | 0xFF) => at += 1,
                    Some(_) => break,
                    None => return Err("JPEG ends inside the image data".into()),
                }
            }
        }
    }
}

fn le16_be(d: &[u8], at: usize) -> Option<usize> {
    d.get(at..at + 2)
        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        .filter(|&n| n >= 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OutputCharset;
    use crate::mime::header::Address;
    use crate::rebuild::{write_message, NoticeSource, RebuildOptions};
    use crate::sanitise::{KeptAttachment, TopHeaders};

    const TEXT: &str = "本文の最初の行です。\nSecond line.\n";

    fn good(cs: OutputCharset, atts: &[KeptAttachment]) -> Vec<u8> {
        let h = TopHeaders {
            from: vec![Address {
                name: Some("差出人".into()),
                addr: "a@example.jp".into(),
            }],
            subject: Some("件名".into()),
            ..TopHeaders::default()
        };
        let o = RebuildOptions {
            charset: cs,
            notice: NoticeSource::Text("お知らせ\n".into()),
            ..RebuildOptions::default()
        };
        let mut out = Vec::new();
        let mut src = TEXT;
        write_message(&h, &mut src, atts, &mut Vec::new(), &o, &mut out).unwrap();
        out
    }

    fn exp(n: usize) -> Expectation {
        Expectation {
            text_prefix: TEXT.to_string(),
            attachments: n,
            ..Expectation::default()
        }
    }

    fn pdf() -> Vec<KeptAttachment> {
        vec![KeptAttachment {
            filename: "a.pdf".into(),
            content_type: "application/pdf".into(),
            data: b"%PDF-1.4\n...".to_vec(),
        }]
    }

    fn replace(raw: &[u8], from: &str, to: &str) -> Vec<u8> {
        let s = String::from_utf8(raw.to_vec()).unwrap();
        assert!(s.contains(from), "{from:?} not in\n{s}");
        s.replacen(from, to, 1).into_bytes()
    }

    #[test]
    fn good_messages_pass_both_passes() {
        for cs in [OutputCharset::Utf8, OutputCharset::Iso2022Jp] {
            verify_bytes(&good(cs, &[]), &exp(0)).unwrap();
            verify_bytes(&good(cs, &pdf()), &exp(1)).unwrap();
            // Streaming pass alone, as for a large message.
            let e = Expectation {
                whole_parse_limit: 0,
                ..exp(1)
            };
            verify_bytes(&good(cs, &pdf()), &e).unwrap();
        }
    }

    #[test]
    fn line_ending_violations() {
        let g = good(OutputCharset::Utf8, &[]);
        let bare_lf = replace(&g, "MIME-Version: 1.0\r\n", "MIME-Version: 1.0\n");
        assert!(matches!(
            verify_bytes(&bare_lf, &exp(0)),
            Err(Violation::BareLineEnd { .. })
        ));
        let bare_cr = replace(&g, "MIME-Version: 1.0\r\n", "MIME-Version: 1.0\r\r\n");
        assert!(matches!(
            verify_bytes(&bare_cr, &exp(0)),
            Err(Violation::BareLineEnd { .. })
        ));
        let mut unterminated = g.clone();
        unterminated.truncate(g.len() - 2);
        assert!(matches!(
            verify_bytes(&unterminated, &exp(0)),
            Err(Violation::Unterminated { .. })
        ));
    }

    #[test]
    fn long_line_is_caught() {
        let g = good(OutputCharset::Utf8, &pdf());
        let long = format!("Content-Type: application/pdf; x={}\r\n", "a".repeat(1000));
        let bad = replace(&g, "Content-Type: application/pdf;", &long);
        assert!(matches!(
            verify_bytes(&bad, &exp(1)),
            Err(Violation::LongLine { .. })
        ));
        let stream = Expectation {
            whole_parse_limit: 0,
            ..exp(1)
        };
        assert!(matches!(
            verify_bytes(&bad, &stream),
            Err(Violation::LongLine { .. })
        ));
    }

    #[test]
    fn eight_bit_header_and_body_are_caught() {
        let g = good(OutputCharset::Utf8, &[]);
        let bad = replace(
            &g,
            "MIME-Version: 1.0",
            "Subject: 件名\r\nMIME-Version: 1.0",
        );
        assert!(matches!(
            verify_bytes(&bad, &exp(0)),
            Err(Violation::EightBitHeader { .. })
        ));
        let mut bad = g.clone();
        bad.extend_from_slice("本文\r\n".as_bytes());
        assert!(matches!(
            verify_bytes(&bad, &exp(0)),
            Err(Violation::EightBitBody { .. })
        ));
    }

    #[test]
    fn foreign_header_fields_are_caught() {
        let g = good(OutputCharset::Utf8, &[]);
        let bad = replace(
            &g,
            "MIME-Version: 1.0",
            "X-Original: 1\r\nMIME-Version: 1.0",
        );
        assert!(matches!(
            verify_bytes(&bad, &exp(0)),
            Err(Violation::HeaderNotAllowed(_))
        ));
        let dup = replace(&g, "MIME-Version: 1.0", "Subject: a\r\nMIME-Version: 1.0");
        assert!(matches!(
            verify_bytes(&dup, &exp(0)),
            Err(Violation::Structure(_))
        ));
    }

    #[test]
    fn html_parts_are_caught() {
        let g = good(OutputCharset::Utf8, &pdf());
        let bad = replace(
            &g,
            "Content-Type: application/pdf",
            "Content-Type: text/html",
        );
        assert!(matches!(verify_bytes(&bad, &exp(1)), Err(Violation::Html)));
        let g = good(OutputCharset::Utf8, &[]);
        let bad = replace(&g, "text/plain", "text/html");
        assert!(matches!(verify_bytes(&bad, &exp(0)), Err(Violation::Html)));
        let bad = replace(
            &good(OutputCharset::Utf8, &pdf()),
            "application/pdf",
            "application/x-msdownload",
        );
        assert!(matches!(
            verify_bytes(&bad, &exp(1)),
            Err(Violation::TypeNotAllowed(_))
        ));
    }

    #[test]
    fn executable_magic_is_caught() {
        for (magic, what) in [
            (&b"MZ\x90\x00\x03"[..], "MZ"),
            (b"\x7fELF\x02\x01", "ELF"),
            (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\x00", "OLE"),
        ] {
            let atts = vec![KeptAttachment {
                filename: "a.pdf".into(),
                content_type: "application/pdf".into(),
                data: magic.to_vec(),
            }];
            let g = good(OutputCharset::Utf8, &atts);
            for e in [
                exp(1),
                Expectation {
                    whole_parse_limit: 0,
                    ..exp(1)
                },
            ] {
                match verify_bytes(&g, &e) {
                    Err(Violation::Executable { kind, .. }) => assert!(kind.contains(what)),
                    other => panic!("{what}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn bad_charset_is_caught() {
        // UTF-8 declared, Shift_JIS octets inside base64.
        let sjis = encoding_rs::SHIFT_JIS.encode("日本語の本文").0.into_owned();
        let mut b64 = String::new();
        base64::Engine::encode_string(&base64::engine::general_purpose::STANDARD, &sjis, &mut b64);
        let msg = format!(
            "Date: Tue, 1 Apr 2025 09:30:00 +0900\r\nMessage-ID: <a@b>\r\nMIME-Version: 1.0\r\n\
             Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: base64\r\n\
             X-Mugaika-Status: clean\r\n\r\n{b64}\r\n"
        );
        assert!(matches!(
            verify_bytes(msg.as_bytes(), &Expectation::default()),
            Err(Violation::Charset { .. })
        ));
        // A charset we never write.
        let msg2 = msg.replace("UTF-8", "Shift_JIS");
        assert!(matches!(
            verify_bytes(msg2.as_bytes(), &Expectation::default()),
            Err(Violation::Charset { .. })
        ));
        // ISO-2022-JP that ends a line in JIS X 0208.
        let g = good(OutputCharset::Iso2022Jp, &[]);
        let s = String::from_utf8(g).unwrap();
        let bad = s.replacen("\x1b(B\r\n", "\r\n", 1);
        assert!(matches!(
            verify_bytes(bad.as_bytes(), &exp(0)),
            Err(Violation::Charset { .. })
        ));
    }

    #[test]
    fn transfer_encoding_damage_is_caught() {
        let g = good(OutputCharset::Utf8, &pdf());
        let s = String::from_utf8(g.clone()).unwrap();
        let b64_line = s.lines().rev().nth(1).unwrap().to_string();
        let bad = s.replacen(&b64_line, &format!("{b64_line}!"), 1);
        assert!(matches!(
            verify_bytes(bad.as_bytes(), &exp(1)),
            Err(Violation::TransferEncoding { .. })
        ));
        let bad = replace(
            &g,
            "Content-Transfer-Encoding: base64",
            "Content-Transfer-Encoding: 8bit",
        );
        assert!(matches!(
            verify_bytes(&bad, &exp(1)),
            Err(Violation::TransferEncoding { .. })
        ));
    }

    #[test]
    fn structure_tricks_are_caught() {
        let g = good(OutputCharset::Utf8, &pdf());
        let s = String::from_utf8(g.clone()).unwrap();
        let b = s
            .split("boundary=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_string();
        // A line that starts like a delimiter (lenient parsers would split there).
        let bad = s.replacen(
            &format!("--{b}\r\nContent-Type: application/pdf"),
            &format!("--{b}  \r\nContent-Type: application/pdf"),
            1,
        );
        assert!(matches!(
            verify_bytes(bad.as_bytes(), &exp(1)),
            Err(Violation::Structure(_))
        ));
        // An epilogue, a preamble, a missing close.
        let bad = format!("{s}hidden\r\n");
        assert!(matches!(
            verify_bytes(bad.as_bytes(), &exp(1)),
            Err(Violation::Structure(_))
        ));
        let bad = s.replacen("\r\n\r\n--", "\r\n\r\npreamble\r\n--", 1);
        assert!(matches!(
            verify_bytes(bad.as_bytes(), &exp(1)),
            Err(Violation::Structure(_))
        ));
        let bad = s.replacen(&format!("--{b}--\r\n"), "", 1);
        assert!(matches!(
            verify_bytes(bad.as_bytes(), &exp(1)),
            Err(Violation::Structure(_))
        ));
        // The wrong number of attachments.
        assert!(matches!(
            verify_bytes(&g, &exp(0)),
            Err(Violation::Structure(_))
        ));
    }

    #[test]
    fn missing_text_is_caught() {
        let g = good(OutputCharset::Utf8, &[]);
        let e = Expectation {
            text_prefix: "この文は本文にありません".into(),
            ..exp(0)
        };
        assert!(matches!(verify_bytes(&g, &e), Err(Violation::TextMissing)));
        let e = Expectation {
            whole_parse_limit: 0,
            ..e
        };
        assert!(matches!(verify_bytes(&g, &e), Err(Violation::TextMissing)));
    }

    #[test]
    fn verify_file_reads_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.eml");
        std::fs::write(&p, good(OutputCharset::Iso2022Jp, &pdf())).unwrap();
        verify_file(&p, &exp(1)).unwrap();
        std::fs::write(&p, b"Subject: x\n\nbody\n").unwrap();
        assert!(verify_file(&p, &exp(0)).is_err());
    }

    #[test]
    fn whole_parse_budget_bounds_concurrent_parses() {
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::sync::Arc;
        let peak = Arc::new(AtomicU64::new(0));
        let now = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (peak, now) = (peak.clone(), now.clone());
                std::thread::spawn(move || {
                    let n = WHOLE_PARSE_BUDGET / 3;
                    let _g = WholeParseBudget::acquire(n);
                    let cur = now.fetch_add(n, Ordering::SeqCst) + n;
                    peak.fetch_max(cur, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    now.fetch_sub(n, Ordering::SeqCst);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let p = peak.load(Ordering::SeqCst);
        assert!(p <= WHOLE_PARSE_BUDGET, "{p}");
        assert!(p >= WHOLE_PARSE_BUDGET / 3);
        // A message larger than the budget still gets its turn.
        drop(WholeParseBudget::acquire(WHOLE_PARSE_BUDGET * 2));
    }

    // -- attachment content ------------------------------------------------------------------

    fn zip_of(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opt = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in members {
            w.start_file(*name, opt).unwrap();
            std::io::Write::write_all(&mut w, data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    const CT: (&str, &[u8]) = ("[Content_Types].xml", b"<Types/>");

    #[test]
    fn office_packages_are_rechecked() {
        let doc: (&str, &[u8]) = (
            "word/document.xml",
            b"<w:document><w:body><w:p><w:r><w:t>hello</w:t></w:r></w:p></w:body></w:document>",
        );
        assert_eq!(check_attachment(&zip_of(&[CT, doc])), Ok(()));
        for bad in [
            "word/vbaProject.bin",
            "xl/activeX/activeX1.xml",
            "word/embeddings/oleObject1.bin",
            "ppt/embeddings/Microsoft_Excel_Worksheet.xlsx",
            "word\\vbaData.xml",
        ] {
            let z = zip_of(&[CT, doc, (bad, b"x")]);
            assert!(check_attachment(&z).is_err(), "{bad}");
        }
        let ext = zip_of(&[
            CT,
            doc,
            (
                "word/_rels/settings.xml.rels",
                b"<Relationships><Relationship Id=\"r1\" Target=\"http://evil.example/t.dotm\" TargetMode = \"External\"/></Relationships>",
            ),
        ]);
        assert!(check_attachment(&ext)
            .unwrap_err()
            .contains("external relationship"));
        for field in [
            &b"<w:r><w:instrText xml:space=\"preserve\"> DDEAUTO c:\\\\windows\\\\system32\\\\cmd.exe \"/k calc\"</w:instrText></w:r>"[..],
            b"<w:fldSimple w:instr=\" DDE excel &quot;x&quot;\"/>",
            b"<externalLink><ddeLink ddeService=\"cmd\" ddeTopic=\"/c calc\"/></externalLink>",
        ] {
            let z = zip_of(&[CT, ("word/document.xml", field)]);
            assert!(check_attachment(&z).unwrap_err().contains("DDE"));
        }
        // A hyperlink field or the word "dde" in the text is not a DDE field.
        let ok = zip_of(&[
            CT,
            (
                "word/document.xml",
                b"<w:instrText> HYPERLINK \"https://x.example/\" </w:instrText><w:t>dde</w:t>",
            ),
        ]);
        assert_eq!(check_attachment(&ok), Ok(()));
        // A macro hidden one zip deeper.
        let inner = zip_of(&[CT, ("xl/vbaProject.bin", b"x")]);
        let outer = zip_of(&[("report.xlsx", &inner)]);
        assert!(check_attachment(&outer).is_err());
    }

    #[test]
    fn encrypted_zip_members_are_caught() {
        let mut z = zip_of(&[("a.txt", b"hello hello hello")]);
        assert_eq!(check_attachment(&z), Ok(()));
        // General purpose flag bit 0 in the local header only (readers walking local headers
        // would ask for a password), then in both headers.
        z[6] |= 1;
        assert!(check_attachment(&z).unwrap_err().contains("encrypted"));
        let cd = memchr::memmem::find(&z, b"PK\x01\x02").unwrap();
        z[cd + 8] |= 1;
        assert!(check_attachment(&z).is_err());
    }

    fn flate(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut e, data).unwrap();
        e.finish().unwrap()
    }

    fn pdf_with(extra: &[u8]) -> Vec<u8> {
        let mut p = b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R ".to_vec();
        p.extend_from_slice(extra);
        p.extend_from_slice(b" >>\nendobj\n2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n");
        p
    }

    #[test]
    fn pdf_active_names_are_caught_raw_and_inflated() {
        assert_eq!(check_attachment(&pdf_with(b"")), Ok(()));
        assert_eq!(check_attachment(&pdf_with(b"/JSON (x) /AAA 1")), Ok(()));
        for name in [
            "JavaScript",
            "JS",
            "Launch",
            "EmbeddedFile",
            "EmbeddedFiles",
            "OpenAction",
            "AA",
            "RichMedia",
            "XFA",
        ] {
            let raw = pdf_with(format!("/{name} 3 0 R").as_bytes());
            assert!(check_attachment(&raw).is_err(), "{name}");
            // Escaped: /J#61vaScript is /JavaScript.
            let escaped: String =
                format!("/{}#{:02X}{}", &name[..1], name.as_bytes()[1], &name[2..]);
            assert!(
                check_attachment(&pdf_with(escaped.as_bytes())).is_err(),
                "{escaped}"
            );
            // Inside a compressed object stream.
            let body = flate(format!("<< /S /{name} /JS (app.alert(1)) >>").as_bytes());
            let mut obj = format!("/ObjStm 5 0 R >>\nendobj\n5 0 obj\n<< /Type /ObjStm /Filter /FlateDecode /Length {} >>\nstream\n", body.len()).into_bytes();
            obj.extend_from_slice(&body);
            obj.extend_from_slice(b"\nendstream\nendobj\n<< /X 1");
            let p = pdf_with(&obj);
            assert!(check_attachment(&p).is_err(), "{name} in a stream");
        }
        let body = flate(b"BT /F1 12 Tf (hello) Tj ET");
        let mut obj = format!(
            "/C 5 0 R >>\nendobj\n5 0 obj\n<< /Length {} >>\nstream\n",
            body.len()
        )
        .into_bytes();
        obj.extend_from_slice(&body);
        obj.extend_from_slice(b"\nendstream\nendobj\n<< /X 1");
        assert_eq!(check_attachment(&pdf_with(&obj)), Ok(()));
    }

    fn png_plain() -> Vec<u8> {
        let img = image::RgbImage::from_fn(3, 2, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let mut v = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut v), image::ImageFormat::Png)
            .unwrap();
        v
    }

    fn png_chunk(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut c = (body.len() as u32).to_be_bytes().to_vec();
        c.extend_from_slice(kind);
        c.extend_from_slice(body);
        c.extend_from_slice(&[0; 4]);
        c
    }

    #[test]
    fn image_metadata_and_trailing_data_are_caught() {
        let png = png_plain();
        assert_eq!(check_attachment(&png), Ok(()));
        for kind in [b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"iCCP", b"prVt"] {
            let mut p = png[..33].to_vec();
            p.extend_from_slice(&png_chunk(kind, b"Comment\0GPS 35.6N"));
            p.extend_from_slice(&png[33..]);
            assert!(check_attachment(&p).unwrap_err().contains("PNG chunk"));
        }
        let mut p = png.clone();
        p.extend_from_slice(b"PK\x03\x04 hidden");
        assert!(check_attachment(&p)
            .unwrap_err()
            .contains("after the PNG end"));

        let img =
            image::RgbImage::from_fn(16, 16, |x, y| image::Rgb([x as u8 * 9, y as u8 * 9, 50]));
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 80)
            .encode_image(&img)
            .unwrap();
        assert_eq!(check_attachment(&jpeg), Ok(()));
        let mut exif = jpeg[..2].to_vec();
        exif.extend_from_slice(b"\xFF\xE1\x00\x10Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08");
        exif.extend_from_slice(&jpeg[2..]);
        assert!(check_attachment(&exif).unwrap_err().contains("APP1"));
        let mut trailing = jpeg.clone();
        trailing.extend_from_slice(b"<?php system($_GET['c']); ?>");
        assert!(check_attachment(&trailing)
            .unwrap_err()
            .contains("after the JPEG end"));
    }

    #[test]
    fn executables_are_caught_also_inside_containers() {
        for magic in [
            &b"MZ\x90\x00"[..],
            b"\x7fELF\x02",
            b"\xCF\xFA\xED\xFE",
            b"#!/bin/sh\n",
        ] {
            assert!(check_attachment(magic).is_err());
            let z = zip_of(&[("tool.dat", magic)]);
            assert!(check_attachment(&z).is_err());
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, b"MZ\x90\x00 payload").unwrap();
        let gz = gz.finish().unwrap();
        assert!(check_attachment(&gz).is_err());
        // A tar holding a PE.
        let mut tar = vec![0u8; 512];
        tar[..7].copy_from_slice(b"run.exe");
        tar[124..135].copy_from_slice(b"00000000004");
        tar[156] = b'0';
        tar[257..262].copy_from_slice(b"ustar");
        let mut body = b"MZ\x90\x00".to_vec();
        body.resize(512, 0);
        tar.extend_from_slice(&body);
        tar.extend_from_slice(&[0u8; 1024]);
        assert!(check_attachment(&tar).is_err());
        tar[512] = b'X';
        assert_eq!(check_attachment(&tar), Ok(()));
    }

    #[test]
    fn a_message_with_an_active_attachment_fails_verification() {
        let mk = |data: Vec<u8>| {
            good(
                OutputCharset::Utf8,
                &[KeptAttachment {
                    filename: "a.pdf".into(),
                    content_type: "application/pdf".into(),
                    data,
                }],
            )
        };
        assert!(verify_bytes(&mk(pdf_with(b"")), &exp(1)).is_ok());
        let e = verify_bytes(&mk(pdf_with(b"/OpenAction 3 0 R")), &exp(1)).unwrap_err();
        assert!(matches!(e, Violation::Content { part: 2, .. }), "{e}");
    }
}
