//! Text normalisation: every piece of text that reaches the clean message passes through here,
//! whether it was text/plain, converted HTML or a forwarded message's body.
//!
//! It works on UTF-8 pieces of any size (the charset decoder's output), line by line, and
//! keeps only a bounded window of lines it has not yet decided about, so a 60 MB body streams
//! through in constant memory. For each line:
//!
//! - line ends become `\n` (CRLF, LF and a lone CR all end a line); a line longer than
//!   [`MAX_LINE`] is cut into pieces; blank lines at the start and the end are dropped (and
//!   lines of only white space become empty);
//! - NUL and other control characters (except TAB) are removed and counted, terminal escape
//!   sequences (`ESC [ 31 m`, OSC titles and hyperlinks, ...) whole, and so are the
//!   invisible characters that make text lie about itself: bidi embeddings, overrides and
//!   isolates (U+202A–U+202E, U+2066–U+2069, the LRM/RLM/ALM marks), zero-width no-break space
//!   and line/paragraph separators;
//! - encoded objects hiding in the text are removed: uuencode blocks (`begin 644 name` …
//!   `end`, also `begin-base64`), yEnc blocks (`=ybegin` … `=yend`), BinHex 4.0 blocks,
//!   quoted-printable encoded binary (lines of `=00`-style escapes of control octets), runs of base64-looking lines, long base64
//!   runs inside a line, armored PGP messages (encrypted), PGP signatures (the signed text is
//!   kept, de-dash-escaped) and PGP key blocks. A receiving client or a curious user must not be
//!   able to turn the clean text back into the attachment that was removed;
//! - URLs follow the link policy (`defang` / `remove` rewrite them; `keep` / `show` leave them).
//!
//! The base64 rules (see `Run`) are deliberately strict: a short run of single tokens with
//! digits or mixed case is removed too. Natural text, Japanese or English, almost never has
//! three lines in a row that are each a single token from the base64 alphabet; encoded data
//! always does. On top of the shape rules, whatever might still be encoded data is decoded
//! and sniffed: a run of base64-looking lines too short for the rules, a base64 token inside a
//! line (at each of the four alignments), a line of uuencode characters, a run of
//! quoted-printable-looking lines; if it turns out to be a binary object (a zip, an OLE2
//! document, an executable...), it is removed as well. Every removal leaves a marker line
//! (`[mugaika: ... を削除しました]`) and is reported; the original is in quarantine.

use std::borrow::Cow;
use std::io;

use memchr::memchr2;

use super::buffer::TextBuffer;
use super::{links, sniff};
use crate::config::{Language, LinkPolicy};

/// Longest line processed as one; longer lines are cut (bounded memory, bounded work).
pub const MAX_LINE: usize = 16 * 1024;
/// A run of base64-looking lines longer than this is removed without further evidence.
const MAX_HELD_LINES: usize = 256;
const MAX_HELD_BYTES: usize = 64 * 1024;
/// A base64 run inside a line at least this long (with mixed case and digits) is removed.
pub const INLINE_RUN: usize = 100;
const PGP_MESSAGE_END: &str = "-----END PGP MESSAGE";
/// Shortest base64 token checked for a binary object when decoded.
const MIN_TOKEN: usize = 16;
/// Encoded blocks listed one by one; more are merged into the last entry.
const MAX_BLOCKS: usize = 100;

/// What kind of encoded object was removed from text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    Uuencode,
    YEnc,
    BinHex,
    /// Quoted-printable encoded binary (control octets written as `=00`, `=1F`, ...).
    QuotedPrintable,
    Base64,
    PgpKey,
    /// A long base64 run inside a line of text.
    Inline,
}

impl BlockKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BlockKind::Uuencode => "uuencode",
            BlockKind::YEnc => "yenc",
            BlockKind::QuotedPrintable => "quoted-printable",
            BlockKind::BinHex => "binhex",
            BlockKind::Base64 => "base64",
            BlockKind::PgpKey => "pgp-key-block",
            BlockKind::Inline => "base64-in-line",
        }
    }
}

/// An encoded object removed from text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub kind: BlockKind,
    /// The file name a uuencode / begin-base64 header gave.
    pub name: Option<String>,
    /// What the decoded start of the block is, when recognisable (`zip`, `pdf`, ...).
    pub detected: Option<&'static str>,
    /// Octets of text removed.
    pub bytes: u64,
}

/// What normalisation did, for the actions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextStats {
    /// Octets of text received.
    pub bytes_in: u64,
    /// Control and invisible characters removed (bidi ones included).
    pub control_removed: u64,
    /// Of which bidi controls.
    pub bidi_removed: u64,
    /// U+FFFD seen (undecodable input).
    pub replacement_chars: u64,
    pub blocks: Vec<Block>,
    pub pgp_encrypted: u32,
    pub pgp_signatures: u32,
    pub links_rewritten: u64,
    /// Some non-whitespace text was written.
    pub nonblank: bool,
}

impl TextStats {
    fn add_block(&mut self, b: Block) {
        if self.blocks.len() >= MAX_BLOCKS {
            if let Some(last) = self.blocks.last_mut() {
                last.bytes += b.bytes;
                last.name = None;
                return;
            }
        }
        self.blocks.push(b);
    }
}

/// Streaming, line-based normaliser writing into a [`TextBuffer`].
#[derive(Debug)]
pub struct Normaliser {
    links: LinkPolicy,
    lang: Language,
    line: String,
    after_cr: bool,
    state: State,
    /// Inside the text of a PGP signed message: lines are dash-escaped.
    signed: bool,
    /// Text whose MIME framing is in doubt: any well-formed base64 is removed.
    strict: bool,
    stats: TextStats,
    scratch: String,
    /// Blank lines not yet written: written before the next non-blank line, dropped at the
    /// start and at the end of the text.
    blanks: u64,
}

#[derive(Debug)]
enum State {
    Normal,
    /// Base64-looking lines held back until they are known to be (or not to be) encoded data.
    Run(Run),
    /// Quoted-printable-looking lines held back likewise.
    QpRun(QpRun),
    /// `begin 644 name` seen; the next line tells whether a uuencode block follows.
    UuBegin {
        line: String,
        name: String,
        base64: bool,
    },
    /// Dropping a confirmed block until it ends.
    Drop(Dropping),
    /// The `Hash:` lines after `-----BEGIN PGP SIGNED MESSAGE-----`.
    PgpHeader,
}

#[derive(Debug)]
struct Dropping {
    kind: DropKind,
    block: Option<Block>,
    /// Blank lines inside a base64 block: written back if the block ends.
    blanks: usize,
}

#[derive(Debug, PartialEq, Eq)]
enum DropKind {
    Base64,
    Uu,
    UuBase64,
    BinHex { started: bool },
    QpBinary,
    Armor { end: &'static str },
}

/// Undecided base64-looking lines. The run is encoded data when one line is very long
/// (≥ 76 characters, the MIME line length), or at least 40 characters mixing upper case, lower
/// case and digits or `+/`, or when three or more lines (≥ 24 characters together) show a digit,
/// `+`, `/`, `=` or a lower-to-upper case change somewhere; or when it grows past the window.
#[derive(Debug, Default)]
struct Run {
    held: Vec<String>,
    lines: usize,
    chars: usize,
    bytes: usize,
    long: bool,
    digit_sym: bool,
    internal_case: bool,
}

/// Lines that look quoted-printable encoded (a soft line break, or two `=XX` escapes). They
/// are encoded binary when three escapes of control octets appear, or when the run, decoded,
/// is a binary object; otherwise they are text and written as they are.
#[derive(Debug, Default)]
struct QpRun {
    held: Vec<String>,
    bytes: usize,
    ctrl: usize,
}

impl QpRun {
    fn add(&mut self, raw: &str) {
        self.ctrl += qp_binary_escapes(raw);
        self.bytes += raw.len() + 1;
        self.held.push(raw.to_string());
    }
    fn binary(&self) -> bool {
        self.ctrl >= QP_BINARY_ESCAPES
    }
    fn full(&self) -> bool {
        self.held.len() >= MAX_HELD_LINES || self.bytes >= MAX_HELD_BYTES
    }
}

#[derive(Debug, Clone, Copy)]
struct B64Line {
    len: usize,
    upper: bool,
    lower: bool,
    digit_sym: bool,
    internal_case: bool,
}

impl Run {
    fn add(&mut self, raw: &str, m: B64Line) {
        self.held.push(raw.to_string());
        self.bytes += raw.len() + 1;
        self.lines += 1;
        self.chars += m.len;
        self.digit_sym |= m.digit_sym;
        self.internal_case |= m.internal_case;
        if m.len >= 76 || (m.len >= 40 && m.upper && m.lower && m.digit_sym) {
            self.long = true;
        }
    }
    fn hold_blank(&mut self, raw: &str) {
        self.held.push(raw.to_string());
        self.bytes += raw.len() + 1;
    }
    fn confirmed(&self) -> bool {
        self.long
            || (self.lines >= 3 && self.chars >= 24 && (self.digit_sym || self.internal_case))
            || self.held.len() >= MAX_HELD_LINES
            || self.bytes >= MAX_HELD_BYTES
    }
}

impl Normaliser {
    pub fn new(links: LinkPolicy, lang: Language) -> Normaliser {
        Normaliser {
            links,
            lang,
            line: String::new(),
            after_cr: false,
            state: State::Normal,
            signed: false,
            strict: false,
            stats: TextStats::default(),
            scratch: String::new(),
            blanks: 0,
        }
    }

    /// Strict mode, for text from a part whose MIME framing is in doubt (see
    /// [`Flags::SUSPICIOUS_TEXT`](crate::mime::Flags::SUSPICIOUS_TEXT)): a run of
    /// base64-looking lines too short for the shape rules is removed when it is well-formed
    /// base64, whatever it decodes to, not only when it decodes to a binary object.
    pub fn set_strict(&mut self, strict: bool) {
        self.strict = strict;
    }

    /// What was done so far.
    pub fn stats(&self) -> &TextStats {
        &self.stats
    }

    /// Feeds UTF-8 text of any size; complete lines are written to `out`.
    pub fn push(&mut self, s: &str, out: &mut TextBuffer) -> io::Result<()> {
        self.stats.bytes_in += s.len() as u64;
        let mut rest = s;
        while !rest.is_empty() {
            if self.after_cr {
                self.after_cr = false;
                if let Some(r) = rest.strip_prefix('\n') {
                    rest = r;
                    continue;
                }
            }
            match memchr2(b'\n', b'\r', rest.as_bytes()) {
                Some(i) => {
                    self.line.push_str(&rest[..i]);
                    self.end_line(out)?;
                    self.after_cr = rest.as_bytes()[i] == b'\r';
                    rest = &rest[i + 1..];
                }
                None => {
                    self.line.push_str(rest);
                    rest = "";
                }
            }
            while self.line.len() > MAX_LINE {
                let mut cut = MAX_LINE;
                while !self.line.is_char_boundary(cut) {
                    cut -= 1;
                }
                let tail = self.line.split_off(cut);
                self.end_line(out)?;
                self.line = tail;
            }
        }
        Ok(())
    }

    /// Ends the text: flushes the last line and whatever is held, returns the statistics.
    pub fn finish(mut self, out: &mut TextBuffer) -> io::Result<TextStats> {
        if !self.line.is_empty() {
            self.end_line(out)?;
        }
        match std::mem::replace(&mut self.state, State::Normal) {
            State::Normal | State::PgpHeader => {}
            State::Run(run) => {
                if run.confirmed() {
                    let d = self.confirm(run);
                    self.finish_drop(d, out)?;
                } else {
                    self.flush_run(run, out)?;
                }
            }
            State::QpRun(run) => self.end_qp_run(run, out)?,
            State::UuBegin { line, .. } => self.emit(&line, out)?,
            State::Drop(d) => self.finish_drop(d, &mut *out)?,
        }
        Ok(self.stats)
    }

    fn end_line(&mut self, out: &mut TextBuffer) -> io::Result<()> {
        let raw = std::mem::take(&mut self.line);
        let cleaned = clean_line(&raw, &mut self.stats);
        let r = self.process(&cleaned, out);
        drop(cleaned);
        // Keep the allocation for the next line.
        self.line = raw;
        self.line.clear();
        r
    }

    fn process(&mut self, l: &str, out: &mut TextBuffer) -> io::Result<()> {
        match std::mem::replace(&mut self.state, State::Normal) {
            State::Normal => self.normal(l, out),
            State::Run(mut run) => {
                let t = trim_quote(l);
                if t.is_empty() {
                    run.hold_blank(l);
                } else if let Some(m) = b64_cont(t) {
                    run.add(l, m);
                } else {
                    if run.confirmed() {
                        let d = self.confirm(run);
                        self.finish_drop(d, out)?;
                    } else {
                        self.flush_run(run, out)?;
                    }
                    return self.normal(l, out);
                }
                if run.confirmed() {
                    let d = self.confirm(run);
                    self.state = State::Drop(d);
                } else {
                    self.state = State::Run(run);
                }
                Ok(())
            }
            State::QpRun(mut run) => {
                let t = trim_quote(l);
                if t.is_empty() || is_qp_looking(t) {
                    run.add(l);
                    if run.binary() {
                        let d = qp_drop(run.bytes);
                        self.state = State::Drop(d);
                    } else if run.full() {
                        for h in &run.held {
                            self.emit(h, out)?;
                        }
                    } else {
                        self.state = State::QpRun(run);
                    }
                    return Ok(());
                }
                self.end_qp_run(run, out)?;
                self.normal(l, out)
            }
            State::UuBegin { line, name, base64 } => {
                let t = trim_quote(l);
                let block = |bytes: usize| Block {
                    kind: BlockKind::Uuencode,
                    name: Some(name.clone()).filter(|n| !n.is_empty()),
                    detected: None,
                    bytes: bytes as u64,
                };
                if base64 {
                    if t == "====" {
                        self.record_block(block(line.len() + l.len()), out)?;
                        return Ok(());
                    }
                    if b64_line(t).is_some() {
                        self.state = State::Drop(Dropping {
                            kind: DropKind::UuBase64,
                            block: Some(block(line.len() + l.len())),
                            blanks: 0,
                        });
                        return Ok(());
                    }
                } else {
                    if t == "end" {
                        self.record_block(block(line.len() + l.len()), out)?;
                        return Ok(());
                    }
                    if is_uu_chars(l) {
                        self.state = State::Drop(Dropping {
                            kind: DropKind::Uu,
                            block: Some(block(line.len() + l.len())),
                            blanks: 0,
                        });
                        return Ok(());
                    }
                }
                self.emit(&line, out)?;
                self.normal(l, out)
            }
            State::Drop(mut d) => {
                let t = trim_quote(l);
                let n = l.len() as u64 + 1;
                let add = |d: &mut Dropping| {
                    if let Some(b) = d.block.as_mut() {
                        b.bytes += n;
                    }
                };
                match d.kind {
                    DropKind::Base64 => {
                        let tq = trim_quote(l);
                        if tq.is_empty() {
                            d.blanks += 1;
                        } else if b64_line(tq).is_some_and(|m| {
                            // After a blank line, a plain word is text again.
                            d.blanks == 0 || m.len >= 16 || m.digit_sym || m.internal_case
                        }) {
                            d.blanks = 0;
                            add(&mut d);
                        } else {
                            let blanks = d.blanks;
                            self.finish_drop(d, out)?;
                            for _ in 0..blanks {
                                self.emit("", out)?;
                            }
                            return self.normal(l, out);
                        }
                    }
                    DropKind::Uu => {
                        if t == "end" {
                            add(&mut d);
                            self.finish_drop(d, out)?;
                            return Ok(());
                        }
                        if t.is_empty() || t == "`" || is_uu_chars(l) {
                            add(&mut d);
                        } else {
                            self.finish_drop(d, out)?;
                            return self.normal(l, out);
                        }
                    }
                    DropKind::UuBase64 => {
                        if t == "====" {
                            add(&mut d);
                            self.finish_drop(d, out)?;
                            return Ok(());
                        }
                        if t.is_empty() || b64_line(t).is_some() {
                            add(&mut d);
                        } else {
                            self.finish_drop(d, out)?;
                            return self.normal(l, out);
                        }
                    }
                    DropKind::BinHex { started } => {
                        if !started {
                            if t.is_empty() {
                                add(&mut d);
                            } else if t.starts_with(':') && is_binhex_line(t) {
                                add(&mut d);
                                if t.len() > 1 && t.ends_with(':') {
                                    self.finish_drop(d, out)?;
                                    return Ok(());
                                }
                                d.kind = DropKind::BinHex { started: true };
                            } else {
                                self.finish_drop(d, out)?;
                                return self.normal(l, out);
                            }
                        } else if is_binhex_line(t) && !t.is_empty() {
                            add(&mut d);
                            if t.ends_with(':') {
                                self.finish_drop(d, out)?;
                                return Ok(());
                            }
                        } else {
                            self.finish_drop(d, out)?;
                            return self.normal(l, out);
                        }
                    }
                    DropKind::QpBinary => {
                        if t.is_empty() || is_qp_looking(t) {
                            add(&mut d);
                        } else {
                            self.finish_drop(d, out)?;
                            return self.normal(l, out);
                        }
                    }
                    DropKind::Armor { end } => {
                        add(&mut d);
                        if t.starts_with(end) {
                            self.finish_drop(d, out)?;
                            return Ok(());
                        }
                    }
                }
                self.state = State::Drop(d);
                Ok(())
            }
            State::PgpHeader => {
                let t = trim_quote(l);
                if t.is_empty() {
                    return Ok(());
                }
                if is_armor_header(t) {
                    self.state = State::PgpHeader;
                    return Ok(());
                }
                self.normal(l, out)
            }
        }
    }

    fn normal(&mut self, l: &str, out: &mut TextBuffer) -> io::Result<()> {
        let t = trim_quote(l);
        if let Some(rest) = t.strip_prefix("-----BEGIN PGP ") {
            let armor = |end: &'static str, block: Option<Block>| {
                State::Drop(Dropping {
                    kind: DropKind::Armor { end },
                    block,
                    blanks: 0,
                })
            };
            if rest.starts_with("SIGNED MESSAGE") {
                self.signed = true;
                self.state = State::PgpHeader;
            } else if rest.starts_with("MESSAGE") {
                self.stats.pgp_encrypted += 1;
                self.state = armor(PGP_MESSAGE_END, None);
            } else if rest.starts_with("SIGNATURE") {
                self.stats.pgp_signatures += 1;
                self.signed = false;
                self.state = armor("-----END PGP SIGNATURE", None);
            } else {
                let block = Block {
                    kind: BlockKind::PgpKey,
                    name: None,
                    detected: None,
                    bytes: l.len() as u64 + 1,
                };
                self.state = armor("-----END PGP ", Some(block));
            }
            return Ok(());
        }
        if let Some((name, base64)) = uu_begin(t) {
            self.state = State::UuBegin {
                line: l.to_string(),
                name,
                base64,
            };
            return Ok(());
        }
        if is_strong_uu_line(l) || is_strong_uu_line(t) {
            self.state = State::Drop(Dropping {
                kind: DropKind::Uu,
                block: Some(Block {
                    kind: BlockKind::Uuencode,
                    name: None,
                    detected: None,
                    bytes: l.len() as u64 + 1,
                }),
                blanks: 0,
            });
            return Ok(());
        }
        if let Some(rest) = t
            .strip_prefix("=ybegin")
            .filter(|r| r.is_empty() || r.starts_with(' '))
        {
            let name = rest
                .split_once("name=")
                .map(|(_, n)| n.trim().to_string())
                .filter(|n| !n.is_empty());
            self.state = State::Drop(Dropping {
                kind: DropKind::Armor { end: "=yend" },
                block: Some(Block {
                    kind: BlockKind::YEnc,
                    name,
                    detected: None,
                    bytes: l.len() as u64 + 1,
                }),
                blanks: 0,
            });
            return Ok(());
        }
        if t.starts_with("(This file must be converted with BinHex") {
            self.state = State::Drop(Dropping {
                kind: DropKind::BinHex { started: false },
                block: Some(Block {
                    kind: BlockKind::BinHex,
                    name: None,
                    detected: None,
                    bytes: l.len() as u64 + 1,
                }),
                blanks: 0,
            });
            return Ok(());
        }
        if is_qp_looking(t) {
            let mut run = QpRun::default();
            run.add(l);
            self.state = if run.binary() {
                State::Drop(qp_drop(run.bytes))
            } else {
                State::QpRun(run)
            };
            return Ok(());
        }
        if let Some(m) = b64_line(trim_quote(l)) {
            let mut run = Run::default();
            run.add(l, m);
            if run.confirmed() {
                let d = self.confirm(run);
                self.state = State::Drop(d);
            } else {
                self.state = State::Run(run);
            }
            return Ok(());
        }
        self.emit(l, out)
    }

    /// A run turned out to be encoded data: it becomes a block being dropped.
    fn confirm(&mut self, run: Run) -> Dropping {
        let mut sample = String::new();
        for h in &run.held {
            if sample.len() >= 1024 {
                break;
            }
            sample.push_str(trim_quote(h));
        }
        let decoded = decode_base64_lenient(sample.as_bytes());
        Dropping {
            kind: DropKind::Base64,
            block: Some(Block {
                kind: BlockKind::Base64,
                name: None,
                detected: sniff::sniff(&decoded).map(|d| d.name),
                bytes: run.bytes as u64,
            }),
            blanks: 0,
        }
    }

    /// A block ends: recorded, and a marker line written where it was.
    fn finish_drop(&mut self, d: Dropping, out: &mut TextBuffer) -> io::Result<()> {
        match d.block {
            Some(b) => self.record_block(b, out),
            None if d.kind
                == (DropKind::Armor {
                    end: PGP_MESSAGE_END,
                }) =>
            {
                let m = match self.lang {
                    Language::Ja => "[mugaika: 暗号化された PGP メッセージを削除しました]",
                    Language::En => "[mugaika: encrypted PGP message removed]",
                };
                self.emit(m, out)
            }
            None => Ok(()),
        }
    }

    fn record_block(&mut self, b: Block, out: &mut TextBuffer) -> io::Result<()> {
        let marker = marker(&b, self.lang);
        self.stats.add_block(b);
        self.emit(&marker, out)
    }

    /// A quoted-printable-looking run ends: text unless it decodes to a binary object.
    fn end_qp_run(&mut self, run: QpRun, out: &mut TextBuffer) -> io::Result<()> {
        let joined = run.held.join("\n");
        if let Some(found) = sniff::binary_magic(&decode_qp_lenient(joined.as_bytes())) {
            let mut d = qp_drop(run.bytes);
            if let Some(b) = d.block.as_mut() {
                b.detected = Some(found);
            }
            return self.finish_drop(d, out);
        }
        for h in &run.held {
            self.emit(h, out)?;
        }
        Ok(())
    }

    /// An undecided run ends. It is text unless its lines, joined, decode to a binary object,
    /// or (strict mode) its first lines are well-formed base64 (see [`strict_base64_lines`]).
    fn flush_run(&mut self, run: Run, out: &mut TextBuffer) -> io::Result<()> {
        let joined: String = run.held.iter().map(|h| trim_quote(h)).collect();
        if b64_decodes_to_binary(joined.as_bytes()).is_some() {
            let d = self.confirm(run);
            return self.finish_drop(d, out);
        }
        let strict = if self.strict {
            strict_base64_lines(&run.held)
        } else {
            0
        };
        let mut held = run.held.into_iter();
        if strict > 0 {
            let mut encoded = Run::default();
            for h in held.by_ref().take(strict) {
                match b64_cont(trim_quote(&h)) {
                    Some(m) => encoded.add(&h, m),
                    None => encoded.hold_blank(&h),
                }
            }
            let d = self.confirm(encoded);
            self.finish_drop(d, out)?;
        }
        for h in held {
            self.emit(&h, out)?;
        }
        Ok(())
    }

    /// Writes a line of kept text: dash-unescaping, inline encoded runs, the URL policy.
    fn emit(&mut self, l: &str, out: &mut TextBuffer) -> io::Result<()> {
        let mut l = l;
        if self.signed {
            if let Some(r) = l.strip_prefix("- ") {
                l = r;
            }
        }
        if l.chars().all(char::is_whitespace) {
            if self.stats.nonblank {
                self.blanks += 1;
            }
            return Ok(());
        }
        self.stats.nonblank = true;
        for _ in 0..std::mem::take(&mut self.blanks) {
            out.push_str("\n")?;
        }
        if let Some(found) = uu_line_binary(l) {
            let b = Block {
                kind: BlockKind::Uuencode,
                name: None,
                detected: Some(found),
                bytes: l.len() as u64 + 1,
            };
            let m = marker(&b, self.lang);
            self.stats.add_block(b);
            out.push_str(&m)?;
            return out.push_str("\n");
        }
        let l: Cow<str> = if l.len() >= MIN_TOKEN {
            remove_inline_runs(l, self.lang, &mut self.stats)
        } else {
            Cow::Borrowed(l)
        };
        if matches!(self.links, LinkPolicy::Defang | LinkPolicy::Remove)
            && links::might_have_url(&l)
        {
            self.scratch.clear();
            self.stats.links_rewritten +=
                links::rewrite_text_urls(&l, self.links, self.lang, &mut self.scratch);
            out.push_str(&self.scratch)?;
        } else {
            out.push_str(&l)?;
        }
        out.push_str("\n")
    }
}

/// The line written where a block was removed.
fn marker(b: &Block, lang: Language) -> String {
    let name = b
        .name
        .as_deref()
        .map(super::notice::safe_name)
        .filter(|n| !n.is_empty());
    let found = b.detected.map(|d| format!(" ({d})")).unwrap_or_default();
    match lang {
        Language::Ja => {
            let what = match b.kind {
                BlockKind::Uuencode => "uuencode 形式のファイル",
                BlockKind::YEnc => "yEnc 形式のファイル",
                BlockKind::BinHex => "BinHex 形式のファイル",
                BlockKind::Base64 | BlockKind::Inline => "base64 で符号化されたデータ",
                BlockKind::QuotedPrintable => "quoted-printable で符号化されたバイナリ",
                BlockKind::PgpKey => "PGP 鍵ブロック",
            };
            let name = name.map(|n| format!("「{n}」")).unwrap_or_default();
            let sep = if found.is_empty() { "" } else { " " };
            format!("[mugaika: {what}{name}{found}{sep}を削除しました]")
        }
        Language::En => {
            let what = match b.kind {
                BlockKind::Uuencode => "uuencoded file",
                BlockKind::YEnc => "yEnc file",
                BlockKind::BinHex => "BinHex file",
                BlockKind::Base64 | BlockKind::Inline => "base64 data",
                BlockKind::QuotedPrintable => "quoted-printable binary",
                BlockKind::PgpKey => "PGP key block",
            };
            let name = name.map(|n| format!(" \"{n}\"")).unwrap_or_default();
            format!("[mugaika: {what}{name}{found} removed]")
        }
    }
}

/// Removes control and invisible characters, counting them. Terminal escape sequences
/// (ECMA-48: `ESC [ 31 m`, window titles, hyperlinks...) go whole, not just their ESC, and
/// count as one. Allocates only when something is removed (clean ASCII is checked bytewise
/// first).
fn clean_line<'a>(raw: &'a str, stats: &mut TextStats) -> Cow<'a, str> {
    if raw.bytes().all(|b| (0x20..0x7F).contains(&b) || b == b'\t') {
        return Cow::Borrowed(raw);
    }
    let mut out: Option<String> = None;
    let mut i = 0;
    while let Some(c) = raw.get(i..).and_then(|r| r.chars().next()) {
        if c == '\u{FFFD}' {
            stats.replacement_chars += 1;
        }
        let bidi = matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
            | '\u{200E}' | '\u{200F}' | '\u{061C}');
        let remove = c != '\t'
            && (bidi || c.is_control() || matches!(c, '\u{FEFF}' | '\u{2028}' | '\u{2029}'));
        let len = if remove {
            escape_len(raw.get(i..).unwrap_or_default())
        } else {
            c.len_utf8()
        };
        if remove {
            if bidi {
                stats.bidi_removed += 1;
            }
            stats.control_removed += 1;
            out.get_or_insert_with(|| {
                let mut s = String::with_capacity(raw.len());
                s.push_str(raw.get(..i).unwrap_or_default());
                s
            });
        } else if let Some(o) = out.as_mut() {
            o.push(c);
        }
        i += len.max(1);
    }
    match out {
        Some(o) => Cow::Owned(o),
        None => Cow::Borrowed(raw),
    }
}

/// The length in bytes of what goes with the control character at the start of `s`: for an
/// ESC or a C1 introducer, the whole terminal escape sequence (ECMA-48) it starts. CSI
/// (`ESC [` or U+009B): parameter bytes, intermediate bytes, a final byte. OSC, DCS, SOS, PM
/// and APC (`ESC ] P X ^ _` or their C1 forms): a string up to BEL or ST (`ESC \` or U+009C)
/// when the terminator is on the line, else only the introducer. Any other `ESC`:
/// intermediate bytes and a final byte. A sequence cut short loses what was read of it, and
/// the character that cut it stays. For any other control character, its own length.
fn escape_len(s: &str) -> usize {
    let b = s.as_bytes();
    let Some(c) = s.chars().next() else {
        return 0;
    };
    enum Seq {
        Csi,
        Str,
        Esc,
    }
    let (seq, start) = match c {
        '\u{1b}' => match b.get(1) {
            Some(b'[') => (Seq::Csi, 2),
            Some(b']' | b'P' | b'X' | b'^' | b'_') => (Seq::Str, 2),
            Some(0x20..=0x2F) => (Seq::Esc, 1),
            Some(0x30..=0x7E) => return 2,
            _ => return 1,
        },
        '\u{9b}' => (Seq::Csi, c.len_utf8()),
        '\u{90}' | '\u{98}' | '\u{9d}' | '\u{9e}' | '\u{9f}' => (Seq::Str, c.len_utf8()),
        _ => return c.len_utf8(),
    };
    let mut j = start;
    let skip = |j: &mut usize, range: std::ops::RangeInclusive<u8>| {
        while b.get(*j).is_some_and(|x| range.contains(x)) {
            *j += 1;
        }
    };
    match seq {
        Seq::Csi => {
            skip(&mut j, 0x30..=0x3F);
            skip(&mut j, 0x20..=0x2F);
            if b.get(j).is_some_and(|x| (0x40..=0x7E).contains(x)) {
                j += 1;
            }
            j
        }
        Seq::Esc => {
            skip(&mut j, 0x20..=0x2F);
            if b.get(j).is_some_and(|x| (0x30..=0x7E).contains(x)) {
                j += 1;
            }
            j
        }
        Seq::Str => {
            let rest = b.get(start..).unwrap_or_default();
            let end = rest.iter().enumerate().find_map(|(k, &x)| match x {
                0x07 => Some(k + 1),
                0x1B if rest.get(k + 1) == Some(&b'\\') => Some(k + 2),
                0xC2 if rest.get(k + 1) == Some(&0x9C) => Some(k + 2),
                _ => None,
            });
            end.map_or(start, |e| start + e)
        }
    }
}

/// A line with leading whitespace and `>` quote markers removed, and trailing whitespace.
fn trim_quote(l: &str) -> &str {
    l.trim_start_matches(|c: char| c == '>' || c.is_whitespace())
        .trim_end()
}

/// Whether `t` is a single token of the base64 alphabet (padding only at its end), at least
/// four characters, not only digits.
fn b64_line(t: &str) -> Option<B64Line> {
    b64_token(t, false)
}

/// A line that may continue a base64 run already started: any length, digits allowed alone.
fn b64_cont(t: &str) -> Option<B64Line> {
    b64_token(t, true)
}

fn b64_token(t: &str, continuation: bool) -> Option<B64Line> {
    if t.len() < 4 && !continuation {
        return None;
    }
    let body = t.trim_end_matches('=');
    if body.is_empty() {
        return None;
    }
    let mut m = B64Line {
        len: t.len(),
        upper: false,
        lower: false,
        digit_sym: t.len() != body.len(),
        internal_case: false,
    };
    let mut digits_only = true;
    let mut seen_lower = false;
    for b in body.bytes() {
        match b {
            b'A'..=b'Z' => {
                m.upper = true;
                digits_only = false;
                if seen_lower {
                    m.internal_case = true;
                }
            }
            b'a'..=b'z' => {
                m.lower = true;
                seen_lower = true;
                digits_only = false;
            }
            b'0'..=b'9' => m.digit_sym = true,
            b'+' | b'/' => {
                m.digit_sym = true;
                digits_only = false;
            }
            _ => return None,
        }
    }
    if digits_only && !continuation {
        return None;
    }
    Some(m)
}

/// `begin 644 name` (uuencode) or `begin-base64 644 name` (uuencode -m); the name may be
/// missing.
fn uu_begin(t: &str) -> Option<(String, bool)> {
    let (rest, base64) = if let Some(r) = t.strip_prefix("begin-base64 ") {
        (r, true)
    } else if let Some(r) = t.strip_prefix("begin ") {
        (r, false)
    } else {
        return None;
    };
    let (mode, name) = rest.split_once(' ').unwrap_or((rest, ""));
    if !(3..=4).contains(&mode.len()) || !mode.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    Some((name.trim().to_string(), base64))
}

/// A line made only of the characters uuencode writes (`' '` to `` ` ``): after a `begin`
/// line, such lines are taken as data whatever their length (a damaged block is still a
/// block).
fn is_uu_chars(l: &str) -> bool {
    let b = l.trim_end().as_bytes();
    !b.is_empty() && b.iter().all(|c| (0x20..=0x60).contains(c))
}

fn qp_drop(bytes: usize) -> Dropping {
    Dropping {
        kind: DropKind::QpBinary,
        block: Some(Block {
            kind: BlockKind::QuotedPrintable,
            name: None,
            detected: None,
            bytes: bytes as u64,
        }),
        blanks: 0,
    }
}

/// A line that looks quoted-printable encoded: it ends in a soft line break after an escape,
/// or holds two `=XX` escapes (upper-case hex, as RFC 2045 writes them).
fn is_qp_looking(t: &str) -> bool {
    let b = t.as_bytes();
    let hex = |c: u8| c.is_ascii_digit() || (b'A'..=b'F').contains(&c);
    let escapes = memchr::memchr_iter(b'=', b)
        .filter(|&i| b.get(i + 1).is_some_and(|&c| hex(c)) && b.get(i + 2).is_some_and(|&c| hex(c)))
        .take(2)
        .count();
    escapes >= 2 || (escapes == 1 && t.ends_with('='))
}

/// Decodes quoted-printable leniently (soft breaks joined, bad escapes kept); for sniffing.
fn decode_qp_lenient(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'=' {
            if s.get(i + 1) == Some(&b'\n') {
                i += 2;
                continue;
            }
            let hex = |c: Option<&u8>| c.and_then(|&c| (c as char).to_digit(16));
            if let (Some(h), Some(l)) = (hex(s.get(i + 1)), hex(s.get(i + 2))) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

/// A line with this many quoted-printable escapes of control octets is encoded binary.
const QP_BINARY_ESCAPES: usize = 3;

/// Counts `=XX` escapes of control octets (other than TAB, CR, LF) in a line: text encoded as
/// quoted-printable has none, binary has them everywhere.
fn qp_binary_escapes(t: &str) -> usize {
    let b = t.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16);
    let mut n = 0;
    for i in memchr::memchr_iter(b'=', b) {
        if let (Some(h), Some(l)) = (
            b.get(i + 1).and_then(|&c| hex(c)),
            b.get(i + 2).and_then(|&c| hex(c)),
        ) {
            let v = h * 16 + l;
            if (v < 0x20 && !matches!(v, 0x09 | 0x0A | 0x0D)) || v == 0x7F {
                n += 1;
            }
        }
    }
    n
}

fn is_binhex_line(t: &str) -> bool {
    const ALPHABET: &[u8] = b"!\"#$%&'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr:";
    t.bytes().all(|b| ALPHABET.contains(&b))
}

fn is_armor_header(t: &str) -> bool {
    match t.split_once(": ") {
        Some((k, _)) => !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
        None => false,
    }
}

/// Replaces base64 runs inside a line with a marker: runs of [`INLINE_RUN`] or more characters
/// (with upper case, lower case and digits: not a separator line or a word), and runs of
/// [`MIN_TOKEN`] or more that decode to a binary object.
fn remove_inline_runs<'a>(l: &'a str, lang: Language, stats: &mut TextStats) -> Cow<'a, str> {
    let is_b64 = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_');
    let bytes = l.as_bytes();
    let mut out: Option<String> = None;
    let mut last = 0;
    let mut i = 0;
    while i < bytes.len() {
        if !is_b64(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && is_b64(bytes[i]) {
            i += 1;
        }
        while i < bytes.len() && bytes[i] == b'=' {
            i += 1;
        }
        let run = &bytes[start..i];
        let long = run.len() >= INLINE_RUN
            && run.iter().any(u8::is_ascii_uppercase)
            && run.iter().any(u8::is_ascii_lowercase)
            && run.iter().any(u8::is_ascii_digit);
        if long || (run.len() >= MIN_TOKEN && b64_decodes_to_binary(run).is_some()) {
            let o = out.get_or_insert_with(String::new);
            o.push_str(&l[last..start]);
            o.push_str(match lang {
                Language::Ja => "[符号化データ削除]",
                Language::En => "[encoded data removed]",
            });
            last = i;
            let decoded = decode_base64_lenient(&run[..run.len().min(1024)]);
            stats.add_block(Block {
                kind: BlockKind::Inline,
                name: None,
                detected: sniff::sniff(&decoded).map(|d| d.name),
                bytes: run.len() as u64,
            });
        }
    }
    match out {
        Some(mut o) => {
            o.push_str(&l[last..]);
            Cow::Owned(o)
        }
        None => Cow::Borrowed(l),
    }
}

/// Whether base64 text (anything else in it skipped) decodes, from any of the four
/// alignments, to a binary object; what it is.
fn b64_decodes_to_binary(s: &[u8]) -> Option<&'static str> {
    let clean: Vec<u8> = s
        .iter()
        .copied()
        .filter(|c| c.is_ascii_alphanumeric() || b"+/-_".contains(c))
        .collect();
    (0..4.min(clean.len()))
        .find_map(|off| sniff::binary_magic(&decode_base64_lenient(&clean[off..])))
}

/// Strict mode: how many of the first `lines` (a run of base64-looking lines) are, joined,
/// well-formed base64 of at least 20 characters: the standard alphabet, `=` padding only at
/// the very end, a length that is a multiple of four, and a digit, `+`, `/`, padding or a
/// lower-to-upper case change somewhere (so that a long word is not taken for data). 0 if
/// none. Natural words practically never pass all of that; in text whose MIME framing is in
/// doubt, what does pass is taken for an encoded body another reader would decode.
fn strict_base64_lines(lines: &[String]) -> usize {
    let mut best = 0;
    let (mut len, mut signal, mut seen_lower) = (0usize, false, false);
    for (k, l) in lines.iter().enumerate() {
        let t = trim_quote(l);
        if t.is_empty() {
            continue;
        }
        let body = t.trim_end_matches('=');
        let pad = t.len() - body.len();
        if pad > 2
            || !body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
        {
            break;
        }
        for b in body.bytes() {
            match b {
                b'a'..=b'z' => seen_lower = true,
                b'A'..=b'Z' if seen_lower => signal = true,
                b'0'..=b'9' | b'+' | b'/' => signal = true,
                _ => {}
            }
        }
        len += t.len();
        signal |= pad > 0;
        if len >= 20 && len % 4 == 0 && signal {
            best = k + 1;
        }
        if pad > 0 {
            // Padding ends the data.
            break;
        }
    }
    best
}

/// A line made only of uuencode characters that decodes to a binary object.
fn uu_line_binary(l: &str) -> Option<&'static str> {
    let t = l.trim_end();
    let b = t.as_bytes();
    if b.len() < 8 || !b.iter().all(|c| (0x20..=0x60).contains(c)) {
        return None;
    }
    let mut out = Vec::with_capacity(b.len());
    for q in b[1..].chunks(4) {
        let v = |i: usize| u32::from(q.get(i).map_or(0, |c| c.wrapping_sub(0x20) & 0x3F));
        let w = (v(0) << 18) | (v(1) << 12) | (v(2) << 6) | v(3);
        out.extend_from_slice(&[(w >> 16) as u8, (w >> 8) as u8, w as u8]);
    }
    sniff::binary_magic(&out)
}

/// A full-length uuencoded line (`M` and 60 characters from `' '` to `` ` ``, few spaces):
/// encoded data even without a `begin` line.
fn is_strong_uu_line(l: &str) -> bool {
    let b = l.trim_end().as_bytes();
    b.first() == Some(&b'M')
        && (50..=62).contains(&b.len())
        && b.iter().all(|c| (0x20..=0x60).contains(c))
        && b.iter().filter(|&&c| c == b' ').count() <= 3
}

/// Decodes base64 (standard or URL alphabet), skipping anything else; for sniffing only.
pub fn decode_base64_lenient(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &c in s {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn norm_with(input: &str, links: LinkPolicy) -> (String, TextStats) {
        let mut out = TextBuffer::new(1 << 20, None);
        let mut n = Normaliser::new(links, Language::Ja);
        n.push(input, &mut out).unwrap();
        let stats = n.finish(&mut out).unwrap();
        (out.to_string_lossy().unwrap(), stats)
    }

    fn norm(input: &str) -> (String, TextStats) {
        norm_with(input, LinkPolicy::Show)
    }

    /// Same output however the input is split (at char boundaries).
    fn norm_split(input: &str) {
        let (whole, ws) = norm(input);
        let idx: Vec<usize> = input.char_indices().map(|(i, _)| i).collect();
        for &i in &idx {
            let mut out = TextBuffer::new(1 << 20, None);
            let mut n = Normaliser::new(LinkPolicy::Show, Language::Ja);
            n.push(&input[..i], &mut out).unwrap();
            n.push(&input[i..], &mut out).unwrap();
            let s = n.finish(&mut out).unwrap();
            assert_eq!(out.to_string_lossy().unwrap(), whole, "split at {i}");
            assert_eq!(s, ws);
        }
    }

    #[test]
    fn line_ends_and_controls() {
        let (t, s) = norm("a\r\nb\rc\nd\u{0}e\u{7}f\u{202E}gh\u{2066}i\u{2069}\u{1b}[31mred\tok");
        assert_eq!(t, "a\nb\nc\ndefghired\tok\n");
        assert_eq!(s.control_removed, 6);
        assert_eq!(s.bidi_removed, 3);
        assert!(s.nonblank);
        let (t, s) = norm("\r\n\r\n  \r\n");
        assert_eq!(t, "");
        assert!(!s.nonblank);
        let (t, _) = norm("\n\na\n  \n\nb\n\n\n");
        assert_eq!(t, "a\n\n\nb\n");
        norm_split("a\r\nb\rc\n\rd\u{0}e\r\n日本語\r");
    }

    #[test]
    fn terminal_escape_sequences_are_removed_whole() {
        for (input, want, n) in [
            ("エスケープ\u{1b}[31m赤字\u{1b}[0m、", "エスケープ赤字、", 2),
            (
                "a\u{1b}[1;31;40mb\u{1b}[?25lc\u{1b}[2Jd\u{1b}[ qe",
                "abcde",
                4,
            ),
            // OSC (window title, hyperlink) up to BEL or ST.
            ("\u{1b}]0;title\u{7}text", "text", 1),
            (
                "\u{1b}]8;;https://evil.example/\u{1b}\\link\u{1b}]8;;\u{1b}\\ end",
                "link end",
                2,
            ),
            ("\u{1b}P1$r0m\u{1b}\\x", "x", 1),
            // Other sequences: intermediates and a final byte.
            ("\u{1b}(Bx\u{1b}$By\u{1b}Mz\u{1b}7w", "xyzw", 4),
            // C1 introducers.
            ("\u{9b}31mred\u{9b}0m", "red", 2),
            ("\u{9d}0;t\u{9c}x", "x", 1),
            ("C1\u{85}\u{9b}も", "C1も", 2),
            // Cut short: only what belongs to the sequence goes.
            ("\u{1b}]0;no terminator", "0;no terminator", 1),
            ("\u{1b}[31あ", "あ", 1),
            ("x\u{1b}", "x", 1),
            ("\u{1b}\u{1b}[0mx", "x", 2),
            ("\u{1b}あ", "あ", 1),
        ] {
            let (t, s) = norm(input);
            assert_eq!(t, format!("{want}\n"), "{input:?}");
            assert_eq!(s.control_removed, n, "{input:?}");
        }
    }

    #[test]
    fn strict_mode_removes_any_valid_base64() {
        // Base64 of a script: one line, too short for the shape rules, and not a binary
        // object. Ordinary text keeps it; text whose MIME framing is in doubt does not.
        let input = "see below\nPHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==\nend\n";
        let (t, s) = norm(input);
        assert_eq!(t, input);
        assert!(s.blocks.is_empty());
        let mut out = TextBuffer::new(1 << 20, None);
        let mut n = Normaliser::new(LinkPolicy::Show, Language::Ja);
        n.set_strict(true);
        n.push(input, &mut out).unwrap();
        let s = n.finish(&mut out).unwrap();
        let t = out.to_string_lossy().unwrap();
        assert_eq!(
            t,
            "see below\n[mugaika: base64 で符号化されたデータ (html) を削除しました]\nend\n"
        );
        assert_eq!(s.blocks.len(), 1);
        // Words that merely look like base64 stay, even in strict mode.
        for keep in [
            "Regards\n",
            "Configuration\n",
            "ThankYouVeryMuchForAll\n",
            "abcdefghijklmnopqrstuvwx\n",
        ] {
            let mut out = TextBuffer::new(1 << 20, None);
            let mut n = Normaliser::new(LinkPolicy::Show, Language::Ja);
            n.set_strict(true);
            n.push(keep, &mut out).unwrap();
            n.finish(&mut out).unwrap();
            assert_eq!(out.to_string_lossy().unwrap(), keep);
        }
    }

    #[test]
    fn japanese_text_passes_untouched() {
        let input = "お世話になっております。\n市民課の山田です。\n\n  ・資料を送付します。\n";
        let (t, s) = norm(input);
        assert_eq!(t, input);
        assert_eq!(s.control_removed, 0);
        assert!(s.blocks.is_empty());
    }

    fn b64_lines(data: &[u8], width: usize) -> String {
        let enc = base64::engine::general_purpose::STANDARD.encode(data);
        let mut s = String::new();
        for c in enc.as_bytes().chunks(width) {
            s.push_str(std::str::from_utf8(c).unwrap());
            s.push('\n');
        }
        s
    }

    fn zipish() -> Vec<u8> {
        let mut z = b"PK\x03\x04\x14\x00\x02\x00\x08\x00".to_vec();
        z.extend((0..300u32).map(|i| (i * 7 + 3) as u8));
        z
    }

    #[test]
    fn base64_blocks_are_removed() {
        for width in [4, 8, 16, 60, 76] {
            let input = format!("本文です。\n\n{}\nおわり\n", b64_lines(&zipish(), width));
            let (t, s) = norm(&input);
            assert_eq!(
                t,
                "本文です。\n\n[mugaika: base64 で符号化されたデータ (zip) を削除しました]\n\nおわり\n",
                "width {width}"
            );
            assert_eq!(s.blocks.len(), 1, "width {width}");
            assert_eq!(s.blocks[0].kind, BlockKind::Base64);
            assert_eq!(s.blocks[0].detected, Some("zip"), "width {width}");
            norm_split(&input);
        }
        // A single long line on its own.
        let one = base64::engine::general_purpose::STANDARD.encode(zipish());
        let (t, s) = norm(&format!("x\n{one}\ny\n"));
        assert_eq!(
            t,
            "x\n[mugaika: base64 で符号化されたデータ (zip) を削除しました]\ny\n"
        );
        assert_eq!(s.blocks.len(), 1);
        // Quoted (reply) base64 is still base64.
        let quoted: String = b64_lines(&zipish(), 76)
            .lines()
            .map(|l| format!("> {l}\n"))
            .collect();
        let (t, _) = norm(&format!("> hi\n{quoted}"));
        assert_eq!(
            t,
            "> hi\n[mugaika: base64 で符号化されたデータ (zip) を削除しました]\n"
        );
        // Blank lines between pieces do not save them.
        let spaced: String = b64_lines(&zipish(), 8)
            .lines()
            .map(|l| format!("{l}\n\n"))
            .collect();
        let (t, _) = norm(&format!("start\n{spaced}end\n"));
        assert!(!t.contains("UEsD"), "{t}");
        // A word after the block and a blank line is text.
        let (t, _) = norm(&format!("{}\nThanks\n", b64_lines(&zipish(), 76)));
        assert!(t.ends_with("\nThanks\n"), "{t}");
    }

    #[test]
    fn natural_text_is_not_base64() {
        let input = "Tanaka\nSuzuki\nSato\nYamamoto\n\nThanks\nRegards\n--------------------------------------------------\n==================================================\n1234567890\n0312345678\n0398765432\n0311112222\nhttps://www.example.com/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n";
        let (t, s) = norm(input);
        assert_eq!(t, input);
        assert!(s.blocks.is_empty());
    }

    #[test]
    fn uuencode_blocks_are_removed() {
        let input = "see attached\nbegin 644 eicar.com\nM6#5/(5`E0$%06S1<4%I8-30H4%XI-T-#*3=])$5)0T%2+5-404Y$05)$+4%.\n16TE625-5\n`\nend\nthanks\n";
        let (t, s) = norm(input);
        assert_eq!(
            t,
            "see attached\n[mugaika: uuencode 形式のファイル「eicar.com」を削除しました]\nthanks\n"
        );
        assert_eq!(s.blocks.len(), 1);
        assert_eq!(s.blocks[0].kind, BlockKind::Uuencode);
        assert_eq!(s.blocks[0].name.as_deref(), Some("eicar.com"));
        norm_split(input);
        // "begin" followed by prose is prose.
        let (t, s) = norm(
            "begin 644 \nM1TE&.#EA%``6`,(``/___\\S__YF9F3,S,P```````````````\"'^3E1H:7,@\nend\n",
        );
        assert_eq!(t, "[mugaika: uuencode 形式のファイルを削除しました]\n");
        assert_eq!(s.blocks[0].name, None);
        let prose = "begin 644 tomorrow\nwe meet at noon\n";
        assert_eq!(norm(prose).0, prose);
        let b64 = "begin-base64 644 a.zip\nUEsDBBQAAgAIABFKjkk8z1FoRgAAAEQAAAAJAAAA\n====\nok\n";
        let (t, s) = norm(b64);
        assert_eq!(
            t,
            "[mugaika: uuencode 形式のファイル「a.zip」を削除しました]\nok\n"
        );
        assert_eq!(s.blocks[0].name.as_deref(), Some("a.zip"));
    }

    #[test]
    fn yenc_blocks_are_removed() {
        let input = "text\n=ybegin line=128 size=186 name=eicar.zip\nzu-.>*,*2*;t\u{b8}s\n=yend size=186\nafter\n";
        let (t, s) = norm(input);
        assert_eq!(
            t,
            "text\n[mugaika: yEnc 形式のファイル「eicar.zip」を削除しました]\nafter\n"
        );
        assert_eq!(s.blocks[0].kind, BlockKind::YEnc);
        assert_eq!(s.blocks[0].name.as_deref(), Some("eicar.zip"));
        norm_split(input);
    }

    #[test]
    fn quoted_printable_binary_is_removed() {
        let input = "text\nPK=03=04=14=00=02=00=08=00=11J=8EI<=CFQhF=00=00=00D=00=00=00=\n=09=00=00=00eicar.com=8B0=F5W\nnext\nafter =E3=81=82 stays\n";
        let (t, s) = norm(input);
        assert_eq!(
            t,
            "text\n[mugaika: quoted-printable で符号化されたバイナリを削除しました]\nnext\nafter =E3=81=82 stays\n"
        );
        assert_eq!(s.blocks[0].kind, BlockKind::QuotedPrintable);
    }

    #[test]
    fn binhex_blocks_are_removed() {
        let input = "hello\n(This file must be converted with BinHex 4.0)\n\n:$f*TEQKPH#jdCA0d,R0TG!\"6594%8dP8)3#3\"!%!N!3$!!!!!!!\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n!!!!!!!!!!!!!!!!:\nbye\n";
        let (t, s) = norm(input);
        assert_eq!(
            t,
            "hello\n[mugaika: BinHex 形式のファイルを削除しました]\nbye\n"
        );
        assert_eq!(s.blocks.len(), 1);
        assert_eq!(s.blocks[0].kind, BlockKind::BinHex);
    }

    #[test]
    fn pgp_armor() {
        let enc = "before\n-----BEGIN PGP MESSAGE-----\nVersion: x\n\nhQEMA1234567890abcdef\n=abcd\n-----END PGP MESSAGE-----\nafter\n";
        let (t, s) = norm(enc);
        assert_eq!(
            t,
            "before\n[mugaika: 暗号化された PGP メッセージを削除しました]\nafter\n"
        );
        assert_eq!(s.pgp_encrypted, 1);
        let signed = "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nHello\n- -----not a boundary\n-----BEGIN PGP SIGNATURE-----\n\niQEzBAEBCAAdFiEE\n=xyz1\n-----END PGP SIGNATURE-----\n- tail stays\n";
        let (t, s) = norm(signed);
        assert_eq!(t, "Hello\n-----not a boundary\n- tail stays\n");
        assert_eq!(s.pgp_signatures, 1);
        assert_eq!(s.pgp_encrypted, 0);
        let key = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQENBF\n-----END PGP PUBLIC KEY BLOCK-----\nk\n";
        let (t, s) = norm(key);
        assert_eq!(t, "[mugaika: PGP 鍵ブロックを削除しました]\nk\n");
        assert_eq!(s.blocks[0].kind, BlockKind::PgpKey);
        norm_split(signed);
    }

    #[test]
    fn inline_runs_are_removed() {
        let one = base64::engine::general_purpose::STANDARD.encode(zipish());
        let (t, s) = norm(&format!("data:application/zip;base64,{one} end\n"));
        assert_eq!(t, "data:application/zip;base64,[符号化データ削除] end\n");
        assert_eq!(s.blocks[0].kind, BlockKind::Inline);
        assert_eq!(s.blocks[0].detected, Some("zip"));
        let sep = format!("{}\n", "-".repeat(200));
        assert_eq!(norm(&sep).0, sep);
    }

    #[test]
    fn urls_follow_the_policy() {
        let input = "詳しくは https://www.example.jp/a をご覧ください\n";
        assert_eq!(norm_with(input, LinkPolicy::Show).0, input);
        let (t, s) = norm_with(input, LinkPolicy::Defang);
        assert_eq!(t, "詳しくは hxxps://www[.]example[.]jp/a をご覧ください\n");
        assert_eq!(s.links_rewritten, 1);
        let (t, _) = norm_with(input, LinkPolicy::Remove);
        assert_eq!(t, "詳しくは [URL削除] をご覧ください\n");
    }

    #[test]
    fn long_lines_are_cut_and_memory_stays_bounded() {
        let long = "あ".repeat(100_000);
        let (t, _) = norm(&long);
        assert!(t.lines().all(|l| l.len() <= MAX_LINE));
        assert_eq!(t.replace('\n', ""), long);
        // A never-ending base64 run is decided within the window.
        let mut n = Normaliser::new(LinkPolicy::Show, Language::Ja);
        let mut out = TextBuffer::new(1 << 20, None);
        for _ in 0..10_000 {
            n.push("Abcd\n", &mut out).unwrap();
            match &n.state {
                State::Run(r) => assert!(r.held.len() <= MAX_HELD_LINES),
                State::Drop(_) => {}
                other => panic!("unexpected state {other:?}"),
            }
        }
        n.finish(&mut out).unwrap();
    }

    #[test]
    fn damaged_encodings_are_still_found() {
        use base64::Engine;
        let enc = base64::engine::general_purpose::STANDARD.encode(zipish());
        // Two short lines: too little for the run rules, but they decode to a zip.
        let (t, s) = norm(&format!("a\n{}\n{}\nb\n", &enc[..4], &enc[4..8]));
        assert!(!t.contains(&enc[..4]), "{t}");
        assert_eq!(s.blocks[0].detected, Some("zip"));
        // A token inside prose, at any alignment.
        for pre in ["", "x", "xy", "xyz"] {
            let (t, _) = norm(&format!("see {pre}{} here\n", &enc[..24]));
            assert!(!t.contains(&enc[..24]), "{pre}: {t}");
        }
        // uuencode lines without their begin line, or broken in the middle.
        let uu = "M4$L#!!0``@`(`!%*CDD\\SU%H1@```$0````)````96EC87(N8V]MBS#U5PQ0\n";
        let (t, _) = norm(&format!("x\n{uu}y\n"));
        assert_eq!(
            t,
            "x\n[mugaika: uuencode 形式のファイルを削除しました]\ny\n"
        );
        let short = "04$L#!!0``@`(`!%*\n";
        let (t, _) = norm(&format!("x\n{short}y\n"));
        assert!(!t.contains("04$L"), "{t}");
        // A begin line followed by damaged data lines, and quoted headers.
        let (t, _) = norm(
            "begin 644 x.zip\n!0``@`(`!%*CDD\\SU%H1@```$0````)````96EC87(N8V]MBS#U5PQ0\nend\nok\n",
        );
        assert_eq!(
            t,
            "[mugaika: uuencode 形式のファイル「x.zip」を削除しました]\nok\n"
        );
        let (t, _) = norm("> (This file must be converted with BinHex 4.0)\n> :!!3r2cmr2cmr2`!!!!!!&3!!!!!U`8&58N&C+$\"i069K0M3bC$KN0$%i+3!!:\nok\n");
        assert_eq!(t, "[mugaika: BinHex 形式のファイルを削除しました]\nok\n");
        // Short pieces continuing a run count too.
        let (t, _) = norm(&format!(
            "a\n{}\n{}\n{}\nb\n",
            &enc[..4],
            &enc[4..7],
            &enc[7..9]
        ));
        assert!(!t.contains(&enc[..4]), "{t}");
        // Words and upper-case prose are not touched.
        let prose = "MEETING AGENDA FOR THE BUDGET COMMITTEE, ROOM 3, AT 10:00.\nTanakaSuzukiSatoYamamoto\n";
        assert_eq!(norm(prose).0, prose);
    }

    #[test]
    fn quoted_printable_one_escape_per_line() {
        let qp: String = zipish()[..40]
            .iter()
            .map(|b| format!("={b:02X}=\n"))
            .collect();
        let (t, s) = norm(&format!("before\n{qp}\nafter\n"));
        assert!(!t.contains("=50="), "{t}");
        assert!(t.starts_with("before\n[mugaika: quoted-printable"), "{t}");
        assert!(t.ends_with("after\n"), "{t}");
        assert_eq!(s.blocks[0].kind, BlockKind::QuotedPrintable);
        // Japanese text that stayed quoted-printable is text.
        let jp =
            "=E3=81=8A=E4=B8=96=E8=A9=B1=E3=81=AB=\n=E3=81=AA=E3=81=A3=E3=81=A6\nok a=10, b=20\n";
        assert_eq!(norm(jp).0, jp);
        norm_split(&format!("x\n{qp}y\n"));
    }

    #[test]
    fn markers_are_strict_iso_2022_jp() {
        use crate::sanitise::notice::iso2022jp::strict_iso2022jp;
        let kinds = [
            BlockKind::Uuencode,
            BlockKind::YEnc,
            BlockKind::BinHex,
            BlockKind::Base64,
            BlockKind::QuotedPrintable,
            BlockKind::PgpKey,
            BlockKind::Inline,
        ];
        for lang in [Language::Ja, Language::En] {
            for kind in kinds {
                for name in [None, Some("a.zip".to_string())] {
                    let b = Block {
                        kind,
                        name,
                        detected: Some("zip"),
                        bytes: 1,
                    };
                    strict_iso2022jp(&marker(&b, lang)).unwrap();
                }
            }
        }
        for fixed in [
            "[mugaika: 暗号化された PGP メッセージを削除しました]",
            "[mugaika: encrypted PGP message removed]",
            "[符号化データ削除]",
            "[encoded data removed]",
            links::removed_marker(Language::Ja),
            links::removed_marker(Language::En),
            "---------- 転送されたメッセージ / Forwarded message ----------",
        ] {
            strict_iso2022jp(fixed).unwrap();
        }
    }

    #[test]
    fn lenient_decoder() {
        assert_eq!(decode_base64_lenient(b"UEsD\nBBQA"), b"PK\x03\x04\x14\x00");
        assert_eq!(decode_base64_lenient(b"aGk="), b"hi");
    }
}
