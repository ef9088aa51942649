//! The parser state machine: one pass over lines, in the manner of Postfix's `mime_state.c`.
//!
//! **Lines.** Input is cut into lines at CRLF, LF or a bare CR (a run of CRs before an LF is
//! one line end), so that CRLF, LF-only and CR-only mail all parse; a message that mixes them
//! is flagged [`Flags::BARE_LF`] / [`Flags::BARE_CR`]. Splitting at a bare CR is deliberate:
//! a CR inside a header line (`X-Foo: bar<CR>Content-Type: multipart/mixed...`) is the kind of
//! trick that hides structure from one reader and shows it to another, and the reading that
//! finds more structure is the safe one for a sanitiser (every part found is checked; what is
//! hidden inside text would be passed as text). Lines longer than `max_line_length` are
//! processed in pieces of exactly that size (flag [`Flags::LINE_TOO_LONG`]) and never
//! buffered past it; only the first piece of a line can be a delimiter (its other pieces are
//! then dropped) or start a header field.
//!
//! **Headers.** Each part's header block is unfolded into [`Header`]s up to `max_header_size`
//! (past it: flag, the block ends and the rest is body). A line that is not a field is
//! skipped and flagged ([`Flags::BAD_HEADER_LINE`]) rather than taken as the start of the body:
//! junk there is more often an attempt to smuggle attachment data into text than a missing
//! blank line. A folded line that looks like a MIME field of its own (`Content-...:`), or one
//! that follows a skipped line, starts a new field (flagged) for the same reason.
//!
//! **Structure.** Open multiparts form a stack of boundaries. A line that starts with
//! `--boundary` of an open multipart is its delimiter (`--boundary--` its close delimiter);
//! as RFC 2046 5.1.1 says, the rest of the line is ignored (flagged
//! [`Flags::BOUNDARY_LIKE_LINE`] unless it is whitespace). When several open boundaries
//! match, an exact match beats a prefix one, then the longest boundary, then the innermost
//! multipart, so boundaries that prefix each other (`--b` and `--bb`) are told apart. A
//! delimiter closes every part opened inside its multipart (flag
//! [`Flags::MISSING_FINAL_BOUNDARY`]); this holds in header blocks, preambles and bodies alike.
//! A boundary in the middle of a body line is not a delimiter, but is flagged (some readers
//! cut there). Every boundary a multipart declares (duplicated parameters, several
//! Content-Type fields; with and without trailing whitespace) delimits it. Preamble and
//! epilogue are dropped, flagged [`Flags::CONTENT_OUTSIDE_PARTS`] when what is dropped looks
//! like content rather than a note (a whole MIME tree hidden after the close delimiter, a
//! multipart whose boundary never appears), so that the recipient can be told. message/rfc822 and message/global are parsed recursively: their
//! header block starts a child part; when they carry a base64 or quoted-printable encoding
//! (not allowed, but written), their decoded body is fed to a nested parser, so the hidden
//! message is still parsed and checked. multipart/digest children default to
//! message/rfc822. Limits (`max_depth`, `max_parts`, `max_boundary_length`) turn the excess
//! into an opaque `application/octet-stream` leaf or skip it, flagged.
//!
//! **Conflicts** are resolved deterministically and conservatively, always flagged: of several
//! Content-Type fields a multipart one wins (so parts hidden behind a `text/plain` declaration
//! are found and each checked), else the first valid one; of several Content-Transfer-Encoding
//! fields the first; an encoding on a multipart is ignored for structure
//! ([`Flags::ENCODING_ON_CONTAINER`]); a multipart without a usable boundary becomes
//! text/plain ([`Flags::MISSING_BOUNDARY`]). Text bodies that look like MIME structure (a
//! `--x` line followed by a `Content-...:` line, or a body starting with one) are flagged
//! [`Flags::EMBEDDED_MIME`] so the sanitiser can refuse to pass them as text.
//!
//! **Bodies** reach [`Sink::body`] transfer-decoded. Line breaks in 7bit, 8bit and
//! quoted-printable bodies come out as `\n` (whatever the input used); binary and unknown
//! encodings pass the octets as they are. The line break before a boundary belongs to the
//! boundary and is not part of the body; at the end of input the last line break is kept.
//!
//! Memory is bounded by the limits: one line buffer, one header block, a boundary stack no
//! deeper than `max_depth`, a fixed-size output buffer; never by the message size. The events
//! do not depend on how the input is split (only where body chunks are cut).

use super::decode::{Base64Decoder, QpDecoder};
use super::params::{self, Field};
use super::{ContentType, Encoding, Flags, Header, Limits, Part, PartEnd, Sink, Summary};

/// Decoded body octets are handed to the sink in chunks of about this size (and at the end
/// of every `feed`).
const FLUSH_AT: usize = 32 << 10;
/// Most distinct boundaries one multipart accepts as its delimiter.
const MAX_BOUNDARIES: usize = 8;
/// What one header field costs against `max_header_size` beyond its octets (the `Header`
/// itself), so that a block of many tiny fields is bounded too.
const FIELD_OVERHEAD: usize = 32;

/// How a line ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Eol {
    /// A piece of an over-long line: the line goes on.
    Piece,
    /// End of input without a line break.
    End,
    Lf,
    CrLf,
    Cr,
}

impl Eol {
    fn bytes(self) -> &'static [u8] {
        match self {
            Eol::Piece | Eol::End => b"",
            Eol::Lf => b"\n",
            Eol::CrLf => b"\r\n",
            Eol::Cr => b"\r",
        }
    }
    fn bit(self) -> u8 {
        match self {
            Eol::Lf => 1,
            Eol::CrLf => 2,
            Eol::Cr => 4,
            Eol::Piece | Eol::End => 0,
        }
    }
}

/// An open container.
#[derive(Debug)]
struct Frame {
    index: usize,
    depth: usize,
    flags: Flags,
    /// Input offset where its body starts, for `raw_len`.
    body_start: u64,
    kind: FrameKind,
}

#[derive(Debug)]
enum FrameKind {
    Multipart {
        boundaries: Vec<Vec<u8>>,
        /// Searchers for `--boundary` anywhere in a line (see `boundary_inside`).
        finders: Vec<memchr::memmem::Finder<'static>>,
        /// Delimiters seen (children started or skipped).
        delimiters: usize,
        digest: bool,
    },
    Message,
}

/// A header block being collected.
#[derive(Debug)]
struct Block {
    index: usize,
    parent: Option<usize>,
    depth: usize,
    /// Inside multipart/digest: the default type is message/rfc822.
    digest: bool,
    /// The header block of a whole message (top level or inside message/rfc822), where an
    /// mbox `From ` line may come first.
    message_top: bool,
    headers: Vec<Header>,
    /// The field being unfolded: name and value so far.
    cur: Option<(String, Vec<u8>)>,
    /// Octets counted against `max_header_size`.
    size: usize,
    /// Lines seen.
    lines: usize,
    /// The previous line was skipped as junk (its folded lines are examined on their own).
    prev_bad: bool,
    flags: Flags,
}

/// How a leaf's body is decoded.
#[derive(Debug)]
enum Decoder {
    /// 7bit / 8bit: as is, line breaks as `\n`.
    Text,
    /// binary / unknown: as is, line breaks as written.
    Raw,
    Base64(Base64Decoder),
    Qp(QpDecoder),
}

/// A leaf whose body is being read.
struct Leaf {
    index: usize,
    decoder: Decoder,
    /// For a base64/QP message/rfc822: the parser of the decoded message.
    child: Option<Box<Parser>>,
    /// The line break after the last body line, written only if another line follows.
    pending: Eol,
    /// The next line is examined for a `Content-...:` field (start of body, or after `--x`).
    probe: bool,
    /// A text/* part: its decoded output is checked for NUL (binary data posing as text).
    text: bool,
    flags: Flags,
    raw_len: u64,
    decoded_len: u64,
}

enum Mode {
    Headers(Box<Block>),
    Body(Box<Leaf>),
    /// Preamble, epilogue, or content past a limit: lines are dropped (boundaries still end it).
    Skip,
}

/// A push-model MIME parser. Create one per message, [`feed`](Parser::feed) it chunks, then
/// [`finish`](Parser::finish) it.
pub struct Parser {
    limits: Limits,
    summary: Summary,
    // Line assembly.
    buf: Vec<u8>,
    /// CRs seen at the end of the input so far, not yet known to end a line alone or with LF.
    cr_run: u64,
    /// The next line piece continues a line already partly processed.
    cont: bool,
    /// The line being continued was a delimiter: drop its remaining pieces.
    discard_line: bool,
    /// Line break kinds seen (bits of [`Eol::bit`]).
    eol_kinds: u8,
    /// Input octets processed as lines.
    offset: u64,
    // Structure.
    mode: Mode,
    stack: Vec<Frame>,
    next_index: usize,
    /// First index of this parser (non-zero for a nested parser of an encoded message).
    base_index: usize,
    /// Parts this parser may create.
    parts_budget: usize,
    /// Decoded body octets not yet given to the sink.
    out: Vec<u8>,
    /// The text skipped in the current preamble or epilogue (see [`SkipText`]).
    skipped: SkipText,
}

/// What a preamble or epilogue being skipped holds, to tell a note ("This is a multi-part
/// message in MIME format.") from dropped content ([`Flags::CONTENT_OUTSIDE_PARTS`]).
#[derive(Debug, Default, Clone, Copy)]
struct SkipText {
    /// A preamble or epilogue is being skipped (not content past a limit, flagged already).
    active: bool,
    epilogue: bool,
    /// Octets of its lines that are not white space.
    nonblank: u64,
    /// A line starting like a delimiter or a MIME field.
    structure: bool,
}

/// More than this much text in a preamble is content, not a note.
const PREAMBLE_NOTE: u64 = 1024;

impl Parser {
    pub fn new(limits: Limits) -> Parser {
        Parser::nested(limits, 0, None, 0, limits.max_parts.max(1))
    }

    /// A parser whose top-level part has index `base_index`, parent `parent` and depth
    /// `depth`, allowed `parts_budget` parts: for the decoded body of an encoded
    /// message/rfc822.
    fn nested(
        limits: Limits,
        base_index: usize,
        parent: Option<usize>,
        depth: usize,
        parts_budget: usize,
    ) -> Parser {
        let mut block = Block::new(base_index, parent, depth, false);
        block.message_top = true;
        Parser {
            limits,
            summary: Summary::default(),
            buf: Vec::new(),
            cr_run: 0,
            cont: false,
            discard_line: false,
            eol_kinds: 0,
            offset: 0,
            mode: Mode::Headers(Box::new(block)),
            skipped: SkipText::default(),
            stack: Vec::new(),
            next_index: base_index + 1,
            base_index,
            parts_budget,
            out: Vec::new(),
        }
    }

    fn cap(&self) -> usize {
        self.limits.max_line_length.max(1)
    }

    /// Feeds the next chunk of the message (any size, even empty).
    pub fn feed<S: Sink>(&mut self, chunk: &[u8], sink: &mut S) {
        self.summary.bytes += chunk.len() as u64;
        let mut rest = chunk;
        if self.cr_run > 0 {
            // A run of CRs ended the previous chunk: this chunk decides what it was.
            let more = rest.iter().take_while(|&&b| b == b'\r').count();
            self.cr_run += more as u64;
            rest = rest.get(more..).unwrap_or_default();
            match rest.first() {
                None => return,
                Some(&b'\n') => {
                    rest = rest.get(1..).unwrap_or_default();
                    self.buffered_line_end(Eol::CrLf, self.cr_run > 1, sink);
                }
                Some(_) => self.cr_lines(sink),
            }
            self.cr_run = 0;
        }
        while !rest.is_empty() {
            let Some(i) = memchr::memchr2(b'\n', b'\r', rest) else {
                self.push_content(rest, sink);
                break;
            };
            let (content, tail) = rest.split_at(i);
            if tail.first() == Some(&b'\n') {
                self.line_from(content, Eol::Lf, false, sink);
                rest = tail.get(1..).unwrap_or_default();
                continue;
            }
            // One or more CRs.
            let run = tail.iter().take_while(|&&b| b == b'\r').count();
            let after = tail.get(run..).unwrap_or_default();
            match after.first() {
                None => {
                    // The chunk ends in CRs: wait for the next byte.
                    self.push_content(content, sink);
                    self.cr_run = run as u64;
                    break;
                }
                Some(&b'\n') => {
                    self.line_from(content, Eol::CrLf, run > 1, sink);
                    rest = after.get(1..).unwrap_or_default();
                }
                Some(_) => {
                    self.line_from(content, Eol::Cr, false, sink);
                    for _ in 1..run {
                        self.line(b"", Eol::Cr, sink);
                    }
                    rest = after;
                }
            }
        }
        self.flush(sink);
    }

    /// The buffered line ends at the first of `cr_run` bare CRs; the others end empty lines.
    fn cr_lines<S: Sink>(&mut self, sink: &mut S) {
        self.buffered_line_end(Eol::Cr, false, sink);
        for _ in 1..self.cr_run {
            self.line(b"", Eol::Cr, sink);
        }
    }

    /// A line whose content is `content` (plus whatever is buffered) ends with `eol`.
    fn line_from<S: Sink>(&mut self, content: &[u8], eol: Eol, stray_cr: bool, sink: &mut S) {
        if self.buf.is_empty() && content.len() <= self.cap() {
            if stray_cr {
                self.note(Flags::BARE_CR);
            }
            self.line(content, eol, sink);
        } else {
            self.push_content(content, sink);
            self.buffered_line_end(eol, stray_cr, sink);
        }
    }

    fn buffered_line_end<S: Sink>(&mut self, eol: Eol, stray_cr: bool, sink: &mut S) {
        if stray_cr {
            self.note(Flags::BARE_CR);
        }
        let line = std::mem::take(&mut self.buf);
        self.line(&line, eol, sink);
        self.buf = line;
        self.buf.clear();
    }

    /// Appends line content to the buffer, processing full pieces of `max_line_length`.
    fn push_content<S: Sink>(&mut self, mut data: &[u8], sink: &mut S) {
        let cap = self.cap();
        while self.buf.len() + data.len() > cap {
            if self.buf.is_empty() {
                let (piece, rest) = data.split_at(cap.min(data.len()));
                self.line(piece, Eol::Piece, sink);
                data = rest;
            } else {
                let take = cap.saturating_sub(self.buf.len()).min(data.len());
                let (head, rest) = data.split_at(take);
                self.buf.extend_from_slice(head);
                data = rest;
                let line = std::mem::take(&mut self.buf);
                self.line(&line, Eol::Piece, sink);
                self.buf = line;
                self.buf.clear();
            }
        }
        self.buf.extend_from_slice(data);
    }

    /// Ends the message: flushes buffered data, closes every open part.
    pub fn finish<S: Sink>(mut self, sink: &mut S) -> Summary {
        self.finish_inner(sink);
        self.summary
    }

    fn finish_inner<S: Sink>(&mut self, sink: &mut S) {
        if self.cr_run > 0 {
            self.cr_lines(sink);
            self.cr_run = 0;
        } else if !self.buf.is_empty() {
            let line = std::mem::take(&mut self.buf);
            self.line(&line, Eol::End, sink);
        }
        self.cont = false;
        let whole = self.top_without_delimiters();
        self.end_skipped(whole);
        loop {
            match std::mem::replace(&mut self.mode, Mode::Skip) {
                Mode::Headers(mut block) => {
                    // The input ended inside a header block.
                    block.flags.insert(Flags::UNTERMINATED_HEADER);
                    self.end_headers(block, sink);
                }
                Mode::Body(leaf) => {
                    self.end_leaf(leaf, true, sink);
                    break;
                }
                Mode::Skip => break,
            }
        }
        while let Some(frame) = self.stack.pop() {
            let missing = matches!(frame.kind, FrameKind::Multipart { .. });
            self.end_frame(frame, missing, sink);
        }
        self.flush(sink);
        self.summary.parts = self.next_index - self.base_index;
    }

    /// Records a flag on whatever is being read now.
    fn note(&mut self, f: Flags) {
        match &mut self.mode {
            Mode::Headers(b) => b.flags.insert(f),
            Mode::Body(l) => l.flags.insert(f),
            Mode::Skip => match self.stack.last_mut() {
                Some(fr) => fr.flags.insert(f),
                None => self.summary.flags.insert(f),
            },
        }
    }

    /// One line (or piece of a line) of input.
    fn line<S: Sink>(&mut self, line: &[u8], eol: Eol, sink: &mut S) {
        let at_start = !self.cont;
        self.cont = eol == Eol::Piece;
        self.offset += (line.len() + eol.bytes().len()) as u64;
        let bit = eol.bit();
        if bit != 0 && self.eol_kinds & bit == 0 {
            if self.eol_kinds != 0 {
                let all = self.eol_kinds | bit;
                if all & Eol::Lf.bit() != 0 {
                    self.note(Flags::BARE_LF);
                }
                if all & Eol::Cr.bit() != 0 {
                    self.note(Flags::BARE_CR);
                }
            }
            self.eol_kinds |= bit;
        }
        if eol == Eol::Piece && at_start {
            self.note(Flags::LINE_TOO_LONG);
        }
        if !at_start && self.discard_line {
            // The rest of an over-long delimiter line: ignored like the rest of any delimiter.
            self.discard_line = eol == Eol::Piece;
            return;
        }
        if at_start && line.starts_with(b"--") && !self.stack.is_empty() {
            if let Some((k, close, exact)) = self.match_boundary(line) {
                if !exact {
                    // `--b junk`: a delimiter by RFC 2046, but not to a reader that wants the
                    // line to be exactly the boundary.
                    self.note(Flags::BOUNDARY_LIKE_LINE);
                }
                self.discard_line = eol == Eol::Piece;
                self.boundary(k, close, sink);
                return;
            }
        }
        match self.mode {
            Mode::Headers(_) => self.header_line(line, eol, at_start, sink),
            Mode::Body(_) => self.body_line(line, eol, at_start, sink),
            Mode::Skip => self.skip_line(line, at_start),
        }
    }

    /// A line of a preamble or epilogue: measured, then dropped.
    fn skip_line(&mut self, line: &[u8], at_start: bool) {
        if !self.skipped.active {
            return;
        }
        let t = trim_end(line);
        let t = &t[t.iter().take_while(|b| b.is_ascii_whitespace()).count()..];
        // The note MUAs write for readers without MIME is not content.
        let note = |p: &[u8]| t.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p));
        if t.is_empty()
            || note(b"this is a multi-part message")
            || note(b"this is a multipart message")
        {
            return;
        }
        self.skipped.nonblank = self.skipped.nonblank.saturating_add(t.len() as u64);
        if at_start && ((line.starts_with(b"--") && t.len() > 2) || looks_like_mime_field(line)) {
            self.skipped.structure = true;
        }
    }

    /// Starts measuring a preamble or epilogue.
    fn start_skipped(&mut self, epilogue: bool) {
        self.skipped = SkipText {
            active: true,
            epilogue,
            ..SkipText::default()
        };
    }

    /// The preamble or epilogue being skipped ends (`whole`: it was the whole body of a
    /// multipart without delimiters); flags it if it looked like content. Called while the
    /// mode is still `Skip`, so that the flag goes to the container it belongs to.
    fn end_skipped(&mut self, whole: bool) {
        let s = std::mem::take(&mut self.skipped);
        if !s.active || !matches!(self.mode, Mode::Skip) || s.nonblank == 0 {
            return;
        }
        if whole || s.structure || s.epilogue || s.nonblank > PREAMBLE_NOTE {
            self.note(Flags::CONTENT_OUTSIDE_PARTS);
        }
    }

    /// Whether the innermost open container is a multipart that has seen no delimiter.
    fn top_without_delimiters(&self) -> bool {
        matches!(
            self.stack.last().map(|f| &f.kind),
            Some(FrameKind::Multipart { delimiters: 0, .. })
        )
    }

    /// Which open multipart's delimiter `line` is: its stack position, whether it is the close
    /// delimiter, and whether the line is exactly that (trailing whitespace aside).
    ///
    /// RFC 2046 5.1.1 matches by prefix ("it is sufficient that the boundary appear in its
    /// entirety following the CRLF"; the rest of the line is ignored). When several open
    /// boundaries match, an exact match wins over a prefix one, then the longest boundary,
    /// then the innermost multipart: so `--bb` is the delimiter of `bb`, never of `b`,
    /// whichever of the two is nested in the other.
    fn match_boundary(&self, line: &[u8]) -> Option<(usize, bool, bool)> {
        let rest = line.get(2..)?;
        let mut best: Option<((bool, usize, usize), bool)> = None;
        for (k, frame) in self.stack.iter().enumerate() {
            let FrameKind::Multipart { boundaries, .. } = &frame.kind else {
                continue;
            };
            for b in boundaries {
                let Some(tail) = rest.strip_prefix(b.as_slice()) else {
                    continue;
                };
                let (close, after) = match tail.strip_prefix(b"--") {
                    Some(after) => (true, after),
                    None => (false, tail),
                };
                let exact = trim_end(after).is_empty();
                let rank = (exact, b.len(), k);
                if best.is_none_or(|(r, _)| rank > r) {
                    best = Some((rank, close));
                }
            }
        }
        best.map(|((exact, _, k), close)| (k, close, exact))
    }

    /// Whether a body line holds `--boundary` of an open multipart other than at its start:
    /// a reader that matches boundaries anywhere in a line (some do) would cut the part there.
    fn boundary_inside(&self, line: &[u8]) -> bool {
        // Linear in the line for each open boundary, whatever the line holds (a line of
        // dashes must not cost a comparison per position).
        let Some(rest) = line.get(1..) else {
            return false;
        };
        if memchr::memchr(b'-', rest).is_none() {
            return false;
        }
        self.stack.iter().any(|f| match &f.kind {
            FrameKind::Multipart { finders, .. } => finders.iter().any(|f| f.find(rest).is_some()),
            FrameKind::Message => false,
        })
    }

    /// A delimiter (or close delimiter) of the multipart at stack position `k`.
    fn boundary<S: Sink>(&mut self, k: usize, close: bool, sink: &mut S) {
        // A preamble or epilogue ends here; it was a whole body if the innermost multipart
        // ends without a delimiter of its own.
        let whole = self.top_without_delimiters() && (close || k + 1 < self.stack.len());
        self.end_skipped(whole);
        // Does the boundary cut through a multipart still open inside k? (Closing a
        // message/rfc822 this way is normal.)
        let implicit = self.stack.get(k + 1..).is_some_and(|inner| {
            inner
                .iter()
                .any(|f| matches!(f.kind, FrameKind::Multipart { .. }))
        });
        // End what is being read.
        loop {
            match std::mem::replace(&mut self.mode, Mode::Skip) {
                Mode::Headers(mut block) => {
                    // A header block cut short by a boundary: the part has no body.
                    block.flags.insert(Flags::UNTERMINATED_HEADER);
                    self.end_headers(block, sink);
                    // The part may have opened a container; it closes below.
                }
                Mode::Body(mut leaf) => {
                    if implicit && matches!(leaf.decoder, Decoder::Base64(_) | Decoder::Qp(_)) {
                        leaf.flags.insert(Flags::BOUNDARY_IN_ENCODED);
                    }
                    self.end_leaf(leaf, false, sink);
                    break;
                }
                Mode::Skip => break,
            }
        }
        // Close everything opened inside multipart k.
        while self.stack.len() > k + 1 {
            if let Some(frame) = self.stack.pop() {
                let missing = matches!(frame.kind, FrameKind::Multipart { .. });
                self.end_frame(frame, missing, sink);
            }
        }
        if close {
            if let Some(frame) = self.stack.pop() {
                self.end_frame(frame, false, sink);
            }
            // Epilogue (or junk after a nested multipart): dropped.
            self.mode = Mode::Skip;
            self.start_skipped(true);
            return;
        }
        let Some(frame) = self.stack.last_mut() else {
            return;
        };
        let (parent, depth) = (frame.index, frame.depth + 1);
        let digest = match &mut frame.kind {
            FrameKind::Multipart {
                delimiters, digest, ..
            } => {
                *delimiters += 1;
                *digest
            }
            FrameKind::Message => false,
        };
        self.start_block(parent, depth, digest);
    }

    /// Starts the header block of a new part, unless the part limit is reached.
    fn start_block(&mut self, parent: usize, depth: usize, digest: bool) {
        if self.next_index - self.base_index >= self.parts_budget {
            self.mode = Mode::Skip;
            self.note(Flags::PARTS_EXCEEDED);
            return;
        }
        let index = self.next_index;
        self.next_index += 1;
        self.mode = Mode::Headers(Box::new(Block::new(index, Some(parent), depth, digest)));
    }

    fn end_frame<S: Sink>(&mut self, mut frame: Frame, missing_close: bool, sink: &mut S) {
        if let FrameKind::Multipart { delimiters, .. } = frame.kind {
            if missing_close {
                frame.flags.insert(Flags::MISSING_FINAL_BOUNDARY);
            }
            if delimiters == 0 {
                frame.flags.insert(Flags::EMPTY_MULTIPART);
            }
        }
        let end = PartEnd {
            index: frame.index,
            flags: frame.flags,
            raw_len: self.offset.saturating_sub(frame.body_start),
            decoded_len: 0,
        };
        self.summary.flags |= end.flags;
        sink.part_end(&end);
    }

    /// Hands the decoded output to the sink (or to the nested parser).
    fn flush<S: Sink>(&mut self, sink: &mut S) {
        if self.out.is_empty() {
            return;
        }
        if let Mode::Body(leaf) = &mut self.mode {
            leaf.decoded_len += self.out.len() as u64;
            if leaf.text && memchr::memchr(0, &self.out).is_some() {
                leaf.flags.insert(Flags::NUL);
            }
            match &mut leaf.child {
                Some(child) => child.feed(&self.out, sink),
                None => sink.body(&self.out),
            }
        }
        self.out.clear();
    }

    fn end_leaf<S: Sink>(&mut self, mut leaf: Box<Leaf>, at_eof: bool, sink: &mut S) {
        // Output still buffered belongs to this leaf: put it back in place to flush it.
        if at_eof {
            // No boundary follows: the last line break is part of the body.
            let eol = leaf.pending;
            write_break(&mut leaf, eol, &mut self.out);
        }
        let f = match &mut leaf.decoder {
            Decoder::Base64(d) => d.finish(&mut self.out),
            Decoder::Qp(d) => d.finish(&mut self.out),
            Decoder::Text | Decoder::Raw => Flags::empty(),
        };
        leaf.flags |= f;
        self.mode = Mode::Body(leaf);
        self.flush(sink);
        let Mode::Body(mut leaf) = std::mem::replace(&mut self.mode, Mode::Skip) else {
            return;
        };
        if let Some(child) = leaf.child.take() {
            let s = (*child).finish(sink);
            self.next_index += s.parts;
            self.summary.flags |= s.flags;
        }
        let end = PartEnd {
            index: leaf.index,
            flags: leaf.flags,
            raw_len: leaf.raw_len,
            decoded_len: leaf.decoded_len,
        };
        self.summary.flags |= end.flags;
        sink.part_end(&end);
    }

    fn header_line<S: Sink>(&mut self, line: &[u8], eol: Eol, at_start: bool, sink: &mut S) {
        let max = self.limits.max_header_size;
        let Mode::Headers(block) = &mut self.mode else {
            return;
        };
        if !at_start {
            // More of an over-long line.
            block.size += line.len();
            if block.size > max {
                self.header_overflow(line, eol, sink);
                return;
            }
            if let (Some((_, value)), false) = (&mut block.cur, block.prev_bad) {
                value.extend_from_slice(line);
            }
            return;
        }
        if line.is_empty() && eol != Eol::Piece {
            let Mode::Headers(block) = std::mem::replace(&mut self.mode, Mode::Skip) else {
                return;
            };
            self.end_headers(block, sink);
            return;
        }
        block.size += line.len() + FIELD_OVERHEAD;
        if block.size > max {
            self.header_overflow(line, eol, sink);
            return;
        }
        block.lines += 1;
        if line.iter().any(|&b| b >= 0x80) {
            block.flags.insert(Flags::EIGHT_BIT_HEADER);
        }
        if memchr::memchr(0, line).is_some() {
            block.flags.insert(Flags::NUL);
        }
        if matches!(line.first(), Some(b' ' | b'\t')) {
            let trimmed = trim_start(line);
            if trimmed.is_empty() {
                // A whitespace-only line: not a blank line, so not the end of the block.
                if block.cur.is_none() || block.prev_bad {
                    block.flags.insert(Flags::BAD_HEADER_LINE);
                }
                return;
            }
            let own_field = match &block.cur {
                Some(_) if !block.prev_bad => looks_like_mime_field(trimmed),
                _ => true,
            };
            if !own_field {
                if let Some((_, value)) = &mut block.cur {
                    value.extend_from_slice(line);
                }
                return;
            }
            // A folded line that is a field of its own, or follows junk: read it as a field.
            block.flags.insert(Flags::BAD_HEADER_LINE);
            match split_field(trimmed) {
                Some((name, value)) => block.start_field(name, value),
                None => {
                    block.finish_field();
                    block.prev_bad = true;
                }
            }
            return;
        }
        match split_field(line) {
            Some((name, value)) => block.start_field(name, value),
            None => {
                block.finish_field();
                if !(block.lines == 1 && block.message_top && line.starts_with(b"From ")) {
                    // (An mbox "From " line before the first field is skipped silently.)
                    block.flags.insert(Flags::BAD_HEADER_LINE);
                }
                block.prev_bad = true;
            }
        }
    }

    /// The header block passed `max_header_size`: it ends here; this line is body.
    fn header_overflow<S: Sink>(&mut self, line: &[u8], eol: Eol, sink: &mut S) {
        let Mode::Headers(mut block) = std::mem::replace(&mut self.mode, Mode::Skip) else {
            return;
        };
        block.flags.insert(Flags::HEADER_TOO_LARGE);
        self.end_headers(block, sink);
        match self.mode {
            Mode::Body(_) => self.body_line(line, eol, true, sink),
            // A container's preamble, or the child header block of a message: dropped (the
            // child block would only overflow again).
            Mode::Headers(_) | Mode::Skip => {}
        }
    }

    fn body_line<S: Sink>(&mut self, line: &[u8], eol: Eol, at_start: bool, sink: &mut S) {
        let Mode::Body(leaf) = &mut self.mode else {
            return;
        };
        if at_start && !matches!(leaf.decoder, Decoder::Base64(_)) {
            if leaf.probe && looks_like_mime_field(line) {
                leaf.flags.insert(Flags::EMBEDDED_MIME);
            }
            leaf.probe = line.starts_with(b"--");
        }
        if !leaf.flags.contains(Flags::BOUNDARY_LIKE_LINE)
            && line.len() > 3
            && !self.stack.is_empty()
            && self.boundary_inside(line)
        {
            if let Mode::Body(leaf) = &mut self.mode {
                leaf.flags.insert(Flags::BOUNDARY_LIKE_LINE);
            }
        }
        let Mode::Body(leaf) = &mut self.mode else {
            return;
        };
        let pending = leaf.pending;
        write_break(leaf, pending, &mut self.out);
        leaf.pending = match eol {
            Eol::Piece | Eol::End => Eol::End,
            e => e,
        };
        leaf.raw_len += line.len() as u64;
        match &mut leaf.decoder {
            Decoder::Text => self.out.extend_from_slice(line),
            Decoder::Raw => self.out.extend_from_slice(line),
            Decoder::Base64(d) => d.feed(line, &mut self.out),
            Decoder::Qp(d) => d.feed(line, &mut self.out),
        }
        if self.out.len() >= FLUSH_AT {
            self.flush(sink);
        }
    }

    /// A header block is complete: resolve it into a [`Part`], announce it, and set up what
    /// its body is read as.
    fn end_headers<S: Sink>(&mut self, mut block: Box<Block>, sink: &mut S) {
        block.finish_field();
        let r = self.resolve(&mut block);
        let depth = block.depth;
        let index = block.index;
        let mut part = Part {
            index,
            parent: block.parent,
            depth,
            headers: std::mem::take(&mut block.headers),
            content_type: r.content_type,
            encoding: r.encoding,
            disposition: r.disposition,
            filename: r.filename,
            content_id: r.content_id,
            flags: block.flags,
        };
        let room_for_children = depth < self.limits.max_depth;
        match r.kind {
            Kind::Multipart(boundaries) if room_for_children => {
                self.summary.flags |= part.flags;
                sink.part_start(&part);
                self.stack.push(Frame {
                    index,
                    depth,
                    flags: Flags::empty(),
                    body_start: self.offset,
                    kind: FrameKind::Multipart {
                        finders: boundaries
                            .iter()
                            .map(|b| {
                                let mut needle = b"--".to_vec();
                                needle.extend_from_slice(b);
                                memchr::memmem::Finder::new(&needle).into_owned()
                            })
                            .collect(),
                        boundaries,
                        delimiters: 0,
                        digest: part.content_type.mime_type == "multipart/digest",
                    },
                });
                self.mode = Mode::Skip; // the preamble
                self.start_skipped(false);
            }
            Kind::Message if room_for_children => match part.encoding {
                Encoding::SevenBit | Encoding::EightBit | Encoding::Binary => {
                    self.summary.flags |= part.flags;
                    sink.part_start(&part);
                    self.stack.push(Frame {
                        index,
                        depth,
                        flags: Flags::empty(),
                        body_start: self.offset,
                        kind: FrameKind::Message,
                    });
                    self.start_block(index, depth + 1, false);
                    if let Mode::Headers(b) = &mut self.mode {
                        b.message_top = true;
                    }
                }
                Encoding::Base64 | Encoding::QuotedPrintable
                    if self.next_index - self.base_index < self.parts_budget =>
                {
                    // Not allowed by RFC 2046, but written: decode, then parse the result.
                    part.flags.insert(Flags::ENCODING_ON_CONTAINER);
                    let budget = self.parts_budget - (self.next_index - self.base_index);
                    let child = Parser::nested(
                        self.limits,
                        self.next_index,
                        Some(index),
                        depth + 1,
                        budget,
                    );
                    self.start_leaf(part, Some(Box::new(child)), sink);
                }
                _ => {
                    part.flags.insert(Flags::ENCODING_ON_CONTAINER);
                    if part.encoding != Encoding::Unknown {
                        part.flags.insert(Flags::PARTS_EXCEEDED);
                    }
                    part.content_type = opaque();
                    self.start_leaf(part, None, sink);
                }
            },
            Kind::Multipart(_) | Kind::Message => {
                part.flags.insert(Flags::DEPTH_EXCEEDED);
                part.content_type = opaque();
                if matches!(part.encoding, Encoding::SevenBit | Encoding::EightBit) {
                    part.encoding = Encoding::Binary;
                }
                self.start_leaf(part, None, sink);
            }
            Kind::Opaque => {
                part.content_type = opaque();
                self.start_leaf(part, None, sink);
            }
            Kind::Leaf => self.start_leaf(part, None, sink),
        }
    }

    fn start_leaf<S: Sink>(&mut self, part: Part, child: Option<Box<Parser>>, sink: &mut S) {
        self.summary.flags |= part.flags;
        sink.part_start(&part);
        let decoder = match part.encoding {
            Encoding::SevenBit | Encoding::EightBit => Decoder::Text,
            Encoding::Binary | Encoding::Unknown => Decoder::Raw,
            Encoding::Base64 => Decoder::Base64(Base64Decoder::new()),
            Encoding::QuotedPrintable => Decoder::Qp(QpDecoder::new()),
        };
        self.mode = Mode::Body(Box::new(Leaf {
            index: part.index,
            decoder,
            child,
            pending: Eol::End,
            probe: true,
            text: part.content_type.main_type() == "text",
            flags: Flags::empty(),
            raw_len: 0,
            decoded_len: 0,
        }));
    }

    /// Works out the effective content type, encoding and names of a header block.
    fn resolve(&self, block: &mut Block) -> Resolved {
        let mut flags = Flags::empty();

        // Content-Type: a multipart declaration wins over others; else the first valid one.
        let mut fields: Vec<(Option<String>, Field)> = Vec::new();
        for h in block.headers.iter().filter(|h| h.is("content-type")) {
            let f = params::parse_field(&h.value);
            let t = params::media_type(&f.value);
            if t.is_none() || f.damaged {
                flags.insert(if t.is_none() {
                    Flags::BAD_CONTENT_TYPE
                } else {
                    Flags::BAD_PARAMETER
                });
            }
            fields.push((t, f));
        }
        if fields.len() > 1 {
            flags.insert(Flags::DUPLICATE_CONTENT_TYPE);
        }
        let chosen = fields
            .iter()
            .position(|(t, _)| t.as_deref().is_some_and(|t| t.starts_with("multipart/")))
            .or_else(|| fields.iter().position(|(t, _)| t.is_some()));
        let content_type = match chosen.and_then(|i| fields.get(i)) {
            Some((Some(t), f)) => ContentType {
                mime_type: t.clone(),
                params: f.params.clone(),
            },
            _ if fields.is_empty() && block.digest => ContentType::message_rfc822(),
            _ => ContentType::text_plain(),
        };

        // Content-Transfer-Encoding: the first; disagreement flagged.
        let mut encodings = block
            .headers
            .iter()
            .filter(|h| h.is("content-transfer-encoding"))
            .map(|h| parse_encoding(&h.value));
        let mut encoding = Encoding::SevenBit;
        if let Some(first) = encodings.next() {
            encoding = first;
            if encodings.any(|e| e != first) {
                flags.insert(Flags::DUPLICATE_ENCODING);
            }
        }
        if encoding == Encoding::Unknown {
            flags.insert(Flags::UNKNOWN_ENCODING);
        }

        let mut kind = Kind::Leaf;
        let mut content_type = content_type;
        if content_type.is_multipart() {
            // Every boundary any multipart Content-Type field declares.
            let mut boundaries: Vec<Vec<u8>> = Vec::new();
            let mut declared: Vec<&[u8]> = Vec::new();
            let mut too_long = false;
            for (_, f) in fields
                .iter()
                .filter(|(t, _)| t.as_deref().is_some_and(|t| t.starts_with("multipart/")))
            {
                for b in f.all_values("boundary") {
                    let raw = b.as_bytes();
                    let trimmed = trim_end(raw);
                    if trimmed.is_empty() {
                        continue;
                    }
                    if raw.len() > self.limits.max_boundary_length {
                        too_long = true;
                        continue;
                    }
                    if !declared.contains(&trimmed) {
                        declared.push(trimmed);
                    }
                    // A boundary may not end in whitespace (RFC 2046 bcharsnospace), and
                    // transport padding after a delimiter cannot be told from it: both the
                    // boundary as declared and without its trailing whitespace delimit.
                    for cand in [raw, trimmed] {
                        if !boundaries.iter().any(|x| x == cand)
                            && boundaries.len() < MAX_BOUNDARIES
                        {
                            boundaries.push(cand.to_vec());
                        }
                    }
                }
            }
            if declared.len() > 1 {
                flags.insert(Flags::DUPLICATE_BOUNDARY);
            }
            if self.stack.iter().any(|fr| match &fr.kind {
                FrameKind::Multipart {
                    boundaries: outer, ..
                } => outer.iter().any(|o| boundaries.contains(o)),
                FrameKind::Message => false,
            }) {
                // The same boundary as an enclosing multipart: only the inner one sees it.
                flags.insert(Flags::DUPLICATE_BOUNDARY);
            }
            if !boundaries.is_empty() {
                if !matches!(
                    encoding,
                    Encoding::SevenBit | Encoding::EightBit | Encoding::Binary
                ) {
                    flags.insert(Flags::ENCODING_ON_CONTAINER);
                    encoding = Encoding::SevenBit;
                }
                kind = Kind::Multipart(boundaries);
            } else if too_long {
                flags.insert(Flags::BOUNDARY_TOO_LONG);
                kind = Kind::Opaque;
                if matches!(encoding, Encoding::SevenBit | Encoding::EightBit) {
                    encoding = Encoding::Binary;
                }
            } else {
                flags.insert(Flags::MISSING_BOUNDARY);
                content_type = ContentType::text_plain();
            }
        } else if content_type.is_message() {
            kind = Kind::Message;
        }

        // Disposition and names.
        let mut disposition = None;
        let mut filename = None;
        if let Some(h) = block.headers.iter().find(|h| h.is("content-disposition")) {
            let f = params::parse_field(&h.value);
            if f.damaged {
                flags.insert(Flags::BAD_PARAMETER);
            }
            let d = f.value.to_ascii_lowercase();
            if !d.is_empty() {
                disposition = Some(d);
            }
            filename = f.param("filename").map(str::to_string);
        }
        if filename.as_deref().is_none_or(str::is_empty) {
            filename = chosen
                .and_then(|i| fields.get(i))
                .and_then(|(_, f)| f.param("name"))
                .map(str::to_string);
        }
        let filename = filename.filter(|n| !n.trim().is_empty());
        let content_id = block
            .headers
            .iter()
            .find(|h| h.is("content-id"))
            .map(|h| {
                let v = String::from_utf8_lossy(&h.value);
                let v = v.trim();
                let v = v.strip_prefix('<').unwrap_or(v);
                let v = v.strip_suffix('>').unwrap_or(v);
                v.chars().filter(|c| !c.is_control()).collect::<String>()
            })
            .filter(|v| !v.is_empty());

        block.flags |= flags;
        Resolved {
            content_type,
            encoding,
            disposition,
            filename,
            content_id,
            kind,
        }
    }
}

/// What a resolved header block is read as.
enum Kind {
    Leaf,
    /// A multipart with these boundaries.
    Multipart(Vec<Vec<u8>>),
    Message,
    /// A part made opaque by a limit.
    Opaque,
}

struct Resolved {
    content_type: ContentType,
    encoding: Encoding,
    disposition: Option<String>,
    filename: Option<String>,
    content_id: Option<String>,
    kind: Kind,
}

impl Block {
    fn new(index: usize, parent: Option<usize>, depth: usize, digest: bool) -> Block {
        Block {
            index,
            parent,
            depth,
            digest,
            message_top: false,
            headers: Vec::new(),
            cur: None,
            size: 0,
            lines: 0,
            prev_bad: false,
            flags: Flags::empty(),
        }
    }

    fn start_field(&mut self, name: &[u8], value: &[u8]) {
        self.finish_field();
        self.cur = Some((
            String::from_utf8_lossy(name).into_owned(),
            trim_start(value).to_vec(),
        ));
        self.prev_bad = false;
    }

    fn finish_field(&mut self) {
        if let Some((name, mut value)) = self.cur.take() {
            let len = trim_end(&value).len();
            value.truncate(len);
            self.headers.push(Header { name, value });
        }
    }
}

/// Writes the line break `eol` of the previous body line in the form the decoder wants.
fn write_break(leaf: &mut Leaf, eol: Eol, out: &mut Vec<u8>) {
    match eol {
        Eol::Piece | Eol::End => {}
        _ => {
            leaf.raw_len += eol.bytes().len() as u64;
            match &mut leaf.decoder {
                Decoder::Text => out.push(b'\n'),
                Decoder::Raw => out.extend_from_slice(eol.bytes()),
                Decoder::Base64(_) => {}
                Decoder::Qp(d) => d.line_break(out),
            }
        }
    }
    leaf.pending = Eol::End;
}

/// `application/octet-stream`: what a part made opaque by a limit is announced as.
fn opaque() -> ContentType {
    ContentType {
        mime_type: "application/octet-stream".into(),
        params: Vec::new(),
    }
}

/// `Name: value` → (name, value) when the name is a valid field name (printable ASCII but
/// `:`; whitespace before the colon is the obsolete syntax and allowed).
fn split_field(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = memchr::memchr(b':', line)?;
    let (name, value) = line.split_at(colon);
    let name = trim_end(name);
    if name.is_empty() || !name.iter().all(|&b| (33..=126).contains(&b)) {
        return None;
    }
    Some((name, value.get(1..).unwrap_or_default()))
}

/// A line that starts a MIME field (`Content-Type:`, `content-transfer-encoding :`).
fn looks_like_mime_field(line: &[u8]) -> bool {
    line.len() > 8
        && line
            .get(..8)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"content-"))
        && split_field(line).is_some()
}

/// A Content-Transfer-Encoding value. Comments are removed (`bas(...)e64` is base64, as a
/// lenient reader would see it), case, spaces, `-` and `_` ignored, so that the typos real
/// mailers write (`7-bit`, `8bits`, `quoted printable`, `x-base64`) decode as meant rather
/// than hide the body as opaque data; anything else is [`Encoding::Unknown`].
fn parse_encoding(raw: &[u8]) -> Encoding {
    let (value, _) = params::parse_params(raw);
    let v: String = value
        .chars()
        .filter(|c| !matches!(c, ' ' | '\t' | '-' | '_'))
        .map(|c| c.to_ascii_lowercase())
        .collect();
    match v.as_str() {
        "7bit" | "7bits" | "" | "plain" | "none" | "us-ascii" => Encoding::SevenBit,
        "8bit" | "8bits" => Encoding::EightBit,
        "binary" => Encoding::Binary,
        "base64" | "xbase64" => Encoding::Base64,
        "quotedprintable" | "xquotedprintable" => Encoding::QuotedPrintable,
        _ => Encoding::Unknown,
    }
}

fn trim_end(s: &[u8]) -> &[u8] {
    let n = s
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(0, |p| p + 1);
    s.get(..n).unwrap_or_default()
}

fn trim_start(s: &[u8]) -> &[u8] {
    let n = s
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(s.len());
    s.get(n..).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records events as text; adjacent body chunks are merged.
    #[derive(Default, Debug)]
    struct Rec {
        events: Vec<String>,
        body: Vec<u8>,
        parts: Vec<Part>,
        ends: Vec<PartEnd>,
    }

    impl Rec {
        fn flush(&mut self) {
            if !self.body.is_empty() {
                let b = std::mem::take(&mut self.body);
                self.events
                    .push(format!("body {:?}", String::from_utf8_lossy(&b)));
            }
        }
        /// The decoded body of part `index`.
        fn body_of(&self, index: usize) -> Option<String> {
            let start = self
                .events
                .iter()
                .position(|e| e.starts_with(&format!("start {index} ")))?;
            match self.events.get(start + 1) {
                Some(e) if e.starts_with("body ") => Some(e.clone()),
                _ => Some("body \"\"".to_string()),
            }
        }
        fn part(&self, index: usize) -> &Part {
            self.parts
                .iter()
                .find(|p| p.index == index)
                .expect("no such part")
        }
        fn end(&self, index: usize) -> &PartEnd {
            self.ends
                .iter()
                .find(|p| p.index == index)
                .expect("no such part end")
        }
        fn types(&self) -> Vec<String> {
            self.parts
                .iter()
                .map(|p| format!("{}{}", "  ".repeat(p.depth), p.content_type.mime_type))
                .collect()
        }
    }

    impl Sink for Rec {
        fn part_start(&mut self, p: &Part) {
            self.flush();
            self.events.push(format!(
                "start {} {:?} {} {} {:?} {:?} {:?}",
                p.index,
                p.parent,
                p.depth,
                p.content_type.mime_type,
                p.encoding,
                p.filename,
                p.flags.names()
            ));
            self.parts.push(p.clone());
        }
        fn body(&mut self, d: &[u8]) {
            self.body.extend_from_slice(d);
        }
        fn part_end(&mut self, e: &PartEnd) {
            self.flush();
            self.events.push(format!(
                "end {} {:?} {} {}",
                e.index,
                e.flags.names(),
                e.raw_len,
                e.decoded_len
            ));
            self.ends.push(*e);
        }
    }

    fn run(input: &[u8], limits: Limits, chunk: usize) -> (Rec, Summary) {
        let mut rec = Rec::default();
        let mut p = Parser::new(limits);
        for c in input.chunks(chunk.max(1)) {
            p.feed(c, &mut rec);
        }
        let s = p.finish(&mut rec);
        rec.flush();
        (rec, s)
    }

    /// Parses whole, byte by byte and in 3- and 7-byte chunks; all must agree.
    fn parse_with(input: &[u8], limits: Limits) -> (Rec, Summary) {
        let (whole, s) = run(input, limits, usize::MAX);
        for chunk in [1, 2, 3, 7] {
            let (r, s2) = run(input, limits, chunk);
            assert_eq!(r.events, whole.events, "chunks of {chunk}");
            assert_eq!(s2, s, "summary, chunks of {chunk}");
        }
        let mut parts = whole.parts.iter().map(|p| p.index).collect::<Vec<_>>();
        parts.sort_unstable();
        assert_eq!(
            parts,
            (0..s.parts).collect::<Vec<_>>(),
            "indices are 0..parts"
        );
        (whole, s)
    }

    fn parse(input: &str) -> (Rec, Summary) {
        parse_with(input.as_bytes(), Limits::default())
    }

    #[test]
    fn simple_message_any_line_ending() {
        let crlf = "Subject: hi\r\nFrom: a@example.jp\r\n\r\nHello\r\nWorld\r\n";
        let (r, s) = parse(crlf);
        assert_eq!(r.types(), vec!["text/plain"]);
        assert_eq!(r.body_of(0).unwrap(), "body \"Hello\\nWorld\\n\"");
        assert_eq!(r.part(0).headers.len(), 2);
        assert_eq!(r.part(0).header("subject").unwrap().value, b"hi");
        assert!(s.flags.is_empty(), "{:?}", s.flags.names());
        assert_eq!(s.parts, 1);
        assert_eq!(s.bytes, crlf.len() as u64);
        let (lf, _) = parse(&crlf.replace("\r\n", "\n"));
        let (cr, s_cr) = parse(&crlf.replace("\r\n", "\r"));
        assert_eq!(lf.body_of(0), r.body_of(0));
        assert_eq!(cr.body_of(0), r.body_of(0));
        assert!(s_cr.flags.is_empty());
        // Mixed: flagged.
        let (_, s) = parse("Subject: hi\r\n\r\nHello\nWorld\r\n");
        assert!(s.flags.contains(Flags::BARE_LF));
        let (_, s) = parse("Subject: hi\r\n\r\nHello\rWorld\r\n");
        assert!(s.flags.contains(Flags::BARE_CR));
        // A run of CRs before LF is one line end (and flagged).
        let (r, s) = parse("Subject: hi\r\r\nTo: x@y\r\n\r\nbody\r\r\n");
        assert_eq!(r.part(0).headers.len(), 2);
        assert_eq!(r.body_of(0).unwrap(), "body \"body\\n\"");
        assert!(s.flags.contains(Flags::BARE_CR));
    }

    #[test]
    fn folding_and_bad_lines() {
        let (r, s) = parse(
            "From ab@example.com Mon Jan 1 00:00:00 2024\nSubject: a\n very\n\tlong\nX-Bad line\n\
             X-Obs : v\nTo: x\n\nbody",
        );
        let p = r.part(0);
        assert_eq!(p.header("subject").unwrap().value, b"a very\tlong");
        assert_eq!(p.header("x-obs").unwrap().value, b"v");
        assert_eq!(p.header("to").unwrap().value, b"x");
        assert!(s.flags.contains(Flags::BAD_HEADER_LINE));
        // The mbox From_ line alone is not damage.
        let (_, s) = parse("From ab@example.com Mon\nSubject: a\n\nbody");
        assert!(s.flags.is_empty(), "{:?}", s.flags.names());
    }

    #[test]
    fn hidden_headers_are_found() {
        let body = "\n--b\nContent-Type: text/plain\n\ntext\n--b\nContent-Type: application/zip\n\
                    Content-Transfer-Encoding: base64\n\nUEsDBA==\n--b--\n";
        for head in [
            "X-Foo:bar\rContent-Type: multipart/mixed; boundary=b\n",
            "X-Foo-bar\n Content-Type: multipart/mixed; boundary=b\n",
            "X-Foo Bar:bar\n Content-Type: multipart/mixed; boundary=b\n",
            "X-Foo :bar\n Content-Type: multipart/mixed; boundary=b\n",
            "Content-type : multipart/mixed; boundary=b\n",
            "Content-Type:\n multipart/mixed; boundary=b\n",
            "Content-Type: multipart/mixed; boundary\n =b\n",
            "Content-Type: text/plain\nContent-Type: multipart/mixed; boundary=b\n",
            "Content-Type: multipart/mixed; boundary=b\nContent-Type: text/plain\n",
        ] {
            let (r, s) = parse(&format!("{head}{body}"));
            assert_eq!(
                r.types(),
                vec!["multipart/mixed", "  text/plain", "  application/zip"],
                "{head:?}"
            );
            assert_eq!(r.body_of(2).unwrap(), "body \"PK\\u{3}\\u{4}\"");
            let _ = s;
        }
    }

    #[test]
    fn multipart_basic() {
        let (r, s) = parse(
            "Content-Type: multipart/mixed; boundary=\"=_b\"\n\npreamble\n--=_b\n\
             Content-Type: text/plain; charset=utf-8\n\nfirst\n\n--=_b  \n\
             Content-Type: application/pdf; name=\"a.pdf\"\nContent-Transfer-Encoding: base64\n\n\
             JVBERi0=\n--=_b--\nepilogue\n",
        );
        assert_eq!(
            r.types(),
            vec!["multipart/mixed", "  text/plain", "  application/pdf"]
        );
        assert_eq!(r.body_of(1).unwrap(), "body \"first\\n\"");
        assert_eq!(r.body_of(2).unwrap(), "body \"%PDF-\"");
        assert_eq!(r.part(2).filename.as_deref(), Some("a.pdf"));
        assert_eq!(r.part(2).parent, Some(0));
        // The preamble is a short note; the epilogue's text is dropped, and said so.
        assert_eq!(
            s.flags,
            Flags::CONTENT_OUTSIDE_PARTS,
            "{:?}",
            s.flags.names()
        );
        assert_eq!(r.end(2).decoded_len, 5);
        assert!(!r
            .events
            .iter()
            .any(|e| e.contains("preamble") || e.contains("epilogue")));
    }

    #[test]
    fn prefix_boundaries_match_exactly() {
        let msg = "Content-Type: multipart/mixed; boundary=b\n\n--b\n\
                   Content-Type: multipart/alternative; boundary=bb\n\n--bb\n\nalt1\n--bb\n\nalt2\n\
                   --bb--\n--b\n\nsecond\n--b--\n";
        let (r, s) = parse(msg);
        assert_eq!(
            r.types(),
            vec![
                "multipart/mixed",
                "  multipart/alternative",
                "    text/plain",
                "    text/plain",
                "  text/plain"
            ]
        );
        assert_eq!(r.body_of(3).unwrap(), "body \"alt2\"");
        assert_eq!(r.body_of(4).unwrap(), "body \"second\"");
        assert!(s.flags.is_empty(), "{:?}", s.flags.names());
        // The other way round: inner "b", outer "bb".
        let msg = msg
            .replace("boundary=b\n", "boundary=X\n")
            .replace("--b\n", "--X\n");
        let msg = msg.replace("--b--", "--X--").replace("bb", "b");
        let msg = msg
            .replace("boundary=X", "boundary=bb")
            .replace("--X", "--bb");
        let (r2, _) = parse(&msg);
        assert_eq!(r2.types(), r.types());
    }

    #[test]
    fn outer_boundary_closes_inner() {
        let (r, s) = parse(
            "Content-Type: multipart/mixed; boundary=o\n\n--o\n\
             Content-Type: multipart/alternative; boundary=i\n\n--i\n\
             Content-Transfer-Encoding: base64\n\nQUJD\n--o\n\nafter\n--o--\n",
        );
        assert_eq!(
            r.types(),
            vec![
                "multipart/mixed",
                "  multipart/alternative",
                "    text/plain",
                "  text/plain"
            ]
        );
        assert!(r.end(1).flags.contains(Flags::MISSING_FINAL_BOUNDARY));
        assert!(r.end(2).flags.contains(Flags::BOUNDARY_IN_ENCODED));
        assert!(!r.end(0).flags.contains(Flags::MISSING_FINAL_BOUNDARY));
        assert_eq!(r.body_of(2).unwrap(), "body \"ABC\"");
        assert_eq!(r.body_of(3).unwrap(), "body \"after\"");
        assert!(s.flags.contains(Flags::MISSING_FINAL_BOUNDARY));
    }

    #[test]
    fn missing_final_boundary_and_eof() {
        let (r, s) = parse("Content-Type: multipart/mixed; boundary=b\n\n--b\n\ntext\n");
        assert_eq!(r.types(), vec!["multipart/mixed", "  text/plain"]);
        assert_eq!(r.body_of(1).unwrap(), "body \"text\\n\"");
        assert!(r.end(0).flags.contains(Flags::MISSING_FINAL_BOUNDARY));
        assert!(s.flags.contains(Flags::MISSING_FINAL_BOUNDARY));
        // No delimiter at all: an empty multipart (the body was all preamble).
        let (r, s) = parse("Content-Type: multipart/mixed; boundary=b\n\n--c\n\ntext\n");
        assert_eq!(r.types(), vec!["multipart/mixed"]);
        assert!(s.flags.contains(Flags::EMPTY_MULTIPART));
        assert!(!s.flags.contains(Flags::BOUNDARY_LIKE_LINE));
        // Header block cut by end of input.
        let (r, s) = parse("Subject: x");
        assert_eq!(r.part(0).header("subject").unwrap().value, b"x");
        assert!(s.flags.contains(Flags::UNTERMINATED_HEADER));
        let (r, s) = parse("");
        assert_eq!(r.types(), vec!["text/plain"]);
        assert_eq!(s.parts, 1);
    }

    #[test]
    fn content_outside_parts_is_flagged() {
        let f = |input: &str| parse(input).1.flags.contains(Flags::CONTENT_OUTSIDE_PARTS);
        // The usual note in the preamble, blank epilogues: nothing to say.
        assert!(!f("Content-Type: multipart/mixed; boundary=b\n\nThis is a multi-part message in MIME format.\n\n--b\n\nx\n--b--\n\n\n"));
        assert!(!f(
            "Content-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n--b--\n"
        ));
        // A whole MIME tree after the close delimiter (noxxi "outer is inner with dummy
        // first"), at the top level and nested.
        let hidden = "Content-Type: multipart/mixed; boundary=b\n\n--b\n\ndummy\n--b--\n\n--b\nContent-Type: multipart/mixed; boundary=b\n\n--b\n\nsecret\n--b--\n--b--\n";
        assert!(f(hidden));
        assert!(f("Content-Type: multipart/mixed; boundary=o\n\n--o\nContent-Type: multipart/mixed; boundary=i\n\n--i\n\nx\n--i--\nsome text after\n--o--\n"));
        // Any text in an epilogue; MIME structure or a long text in a preamble.
        assert!(f(
            "Content-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n--b--\nfooter\n"
        ));
        assert!(f("Content-Type: multipart/mixed; boundary=b\n\nContent-Type: text/plain\n\n--b\n\nx\n--b--\n"));
        let long = format!(
            "Content-Type: multipart/mixed; boundary=b\n\n{}--b\n\nx\n--b--\n",
            "preamble text \n".repeat(100)
        );
        assert!(f(&long));
        // ... nor is the MIME note alone, even as the whole body of a cut multipart.
        assert!(!f("Content-Type: multipart/mixed; boundary=o\n\n--o\nContent-Type: multipart/alternative; boundary=i\n\nThis is a multi-part message in MIME format...\n\n--o--\n"));
        // A multipart whose boundary never appears: its whole body is lost.
        assert!(f(
            "Content-Type: multipart/mixed; boundary=b\n\n--c\n\ntext\n"
        ));
        assert!(f(
            "Content-Type: multipart/mixed; boundary=b\n\nplain words\n"
        ));
        assert!(f("Content-Type: multipart/mixed; boundary=o\n\n--o\nContent-Type: multipart/mixed; boundary=i\n\nlost words\n--o--\n"));
        assert!(!f("Content-Type: multipart/mixed; boundary=b\n\n\n"));
        // The flag is on the container the text belongs to.
        let (r, _) = parse(&long);
        assert!(r.end(0).flags.contains(Flags::CONTENT_OUTSIDE_PARTS));
    }

    #[test]
    fn delimiters_match_by_prefix() {
        // RFC 2046 5.1.1: the rest of a delimiter line is ignored (and flagged here).
        let (r, s) = parse(
            "Content-Type: multipart/mixed; boundary=b\n\n--b junk\n\nfirst\n--b-\n\nsecond\n\
             --bx\n\nthird\n--b-- trailing\nepilogue\n",
        );
        assert_eq!(
            r.types(),
            vec![
                "multipart/mixed",
                "  text/plain",
                "  text/plain",
                "  text/plain"
            ]
        );
        assert_eq!(r.body_of(3).unwrap(), "body \"third\"");
        assert!(s.flags.contains(Flags::BOUNDARY_LIKE_LINE));
        assert!(!r.end(0).flags.contains(Flags::MISSING_FINAL_BOUNDARY));
        // Exact beats prefix, then the longest boundary: `--bbX` belongs to `bb` even when
        // `b` is the inner one.
        let (r, _) = parse(
            "Content-Type: multipart/mixed; boundary=bb\n\n--bb\n\
             Content-Type: multipart/mixed; boundary=b\n\n--b\n\ninner\n--bbX\n\nouter\n--bb--\n",
        );
        assert_eq!(
            r.types(),
            vec![
                "multipart/mixed",
                "  multipart/mixed",
                "    text/plain",
                "  text/plain"
            ]
        );
        assert_eq!(r.body_of(3).unwrap(), "body \"outer\"");
        // Not at the start of a line: not a delimiter, but flagged (some readers cut there).
        let (r, s) =
            parse("Content-Type: multipart/mixed; boundary=b\n\n--b\n\ntext --b\n --b\n--b--\n");
        assert_eq!(r.body_of(1).unwrap(), "body \"text --b\\n --b\"");
        assert!(s.flags.contains(Flags::BOUNDARY_LIKE_LINE));
        let (_, s) =
            parse("Content-Type: multipart/mixed; boundary=b\n\n--b\n\nplain -- text\n--b--\n");
        assert!(s.flags.is_empty(), "{:?}", s.flags.names());
        // An over-long delimiter line: its remaining pieces are dropped with it.
        let limits = Limits {
            max_line_length: 1000,
            ..Limits::default()
        };
        let mut msg = b"Content-Type: multipart/mixed; boundary=b\n\n--b".to_vec();
        msg.extend(std::iter::repeat_n(b'x', 5000));
        msg.extend_from_slice(b"\nContent-Type: text/html\n\n<p>\n--b--\n");
        let (r, _) = parse_with(&msg, limits);
        assert_eq!(r.types(), vec!["multipart/mixed", "  text/html"]);
        assert_eq!(r.body_of(1).unwrap(), "body \"<p>\"");
    }

    #[test]
    fn boundary_inside_header_block() {
        let (r, s) = parse(
            "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n--b\n\
             \nsecond\n--b--\n",
        );
        assert_eq!(
            r.types(),
            vec!["multipart/mixed", "  text/plain", "  text/plain"]
        );
        assert!(r.part(1).flags.contains(Flags::UNTERMINATED_HEADER));
        assert_eq!(r.body_of(2).unwrap(), "body \"second\"");
        let _ = s;
    }

    #[test]
    fn multipart_without_boundary_is_text() {
        let (r, s) =
            parse("Content-Type: multipart/mixed\n\n--x\nContent-Type: text/plain\n\nhi\n");
        assert_eq!(r.types(), vec!["text/plain"]);
        assert!(s.flags.contains(Flags::MISSING_BOUNDARY));
        assert!(s.flags.contains(Flags::EMBEDDED_MIME));
        // A text body that starts with MIME fields is flagged too.
        let (_, s) = parse("Subject: x\n\nContent-Transfer-Encoding: base64\n\nQUJD\n");
        assert!(s.flags.contains(Flags::EMBEDDED_MIME));
        let (_, s) = parse("Subject: x\n\n--\nContent is fine here\n");
        assert!(!s.flags.contains(Flags::EMBEDDED_MIME));
    }

    #[test]
    fn all_declared_boundaries_delimit() {
        for ct in [
            "multipart/mixed; boundary=wrong; boundary=good",
            "multipart/mixed; boundary*=''good; boundary=wrong",
        ] {
            let (r, s) = parse(&format!(
                "Content-Type: {ct}\n\n--good\n\nA\n--good\n\nB\n--good--\n"
            ));
            assert_eq!(
                r.types(),
                vec!["multipart/mixed", "  text/plain", "  text/plain"],
                "{ct}"
            );
            assert!(s.flags.contains(Flags::DUPLICATE_BOUNDARY));
        }
        let (r, s) = parse(
            "Content-Type: multipart/mixed; boundary=wrong\nContent-Type: multipart/mixed; \
             boundary=good\n\n--good\n\nA\n--good--\n",
        );
        assert_eq!(r.types(), vec!["multipart/mixed", "  text/plain"]);
        assert!(s.flags.contains(Flags::DUPLICATE_CONTENT_TYPE));
        assert!(s.flags.contains(Flags::DUPLICATE_BOUNDARY));
    }

    #[test]
    fn encodings() {
        let (r, s) = parse(
            "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Transfer-Encoding: \
             quoted-printable\n\ncaf=C3=A9 =\nsoft  \nnext\n--b\nContent-Transfer-Encoding: BASE64\n\
             \n44GT44KT\r\n44Gr44Gh44Gv\n--b\nContent-Transfer-Encoding: binary\n\
             Content-Type: application/octet-stream\n\na\r\nb\rc\n--b\n\
             Content-Transfer-Encoding: x-uuencode\n\nbegin 644 x\n--b--\n",
        );
        assert_eq!(r.body_of(1).unwrap(), "body \"café soft\\nnext\"");
        assert_eq!(r.body_of(2).unwrap(), "body \"こんにちは\"");
        assert_eq!(r.body_of(3).unwrap(), "body \"a\\r\\nb\\rc\"");
        assert_eq!(r.part(4).encoding, Encoding::Unknown);
        assert!(s.flags.contains(Flags::UNKNOWN_ENCODING));
        assert!(s.flags.contains(Flags::BARE_CR));
        // Conflicting encodings: the first, flagged.
        let (r, s) =
            parse("Content-Transfer-Encoding: base64\nContent-Transfer-Encoding: 7bit\n\nQUJD\n");
        assert_eq!(r.part(0).encoding, Encoding::Base64);
        assert!(s.flags.contains(Flags::DUPLICATE_ENCODING));
        // Comments inside the value are removed; common typos are understood.
        let (r, _) = parse("Content-Transfer-Encoding: bas(\n )e64\n\nQUJD\n");
        assert_eq!(r.body_of(0).unwrap(), "body \"ABC\"");
        for (cte, e) in [
            ("7-bit", Encoding::SevenBit),
            ("8bits", Encoding::EightBit),
            ("Quoted Printable", Encoding::QuotedPrintable),
            ("x-base64", Encoding::Base64),
            ("6bit", Encoding::Unknown),
            ("base64,quoted-printable", Encoding::Unknown),
        ] {
            let (r, _) = parse(&format!("Content-Transfer-Encoding: {cte}\n\nx"));
            assert_eq!(r.part(0).encoding, e, "{cte}");
        }
    }

    #[test]
    fn encoding_on_multipart_is_ignored() {
        let (r, s) = parse(
            "Content-Type: multipart/mixed; boundary=b\nContent-Transfer-Encoding: base64\n\n\
             --b\n\nplain\n--b--\n",
        );
        assert_eq!(r.types(), vec!["multipart/mixed", "  text/plain"]);
        assert_eq!(r.body_of(1).unwrap(), "body \"plain\"");
        assert!(s.flags.contains(Flags::ENCODING_ON_CONTAINER));
    }

    #[test]
    fn message_rfc822_and_digest() {
        let (r, s) = parse(
            "Content-Type: multipart/mixed; boundary=b\n\n--b\n\nouter\n--b\n\
             Content-Type: message/rfc822\n\nSubject: inner\n\
             Content-Type: multipart/alternative; boundary=c\n\n--c\n\ninner text\n--c\n\
             Content-Type: text/html\n\n<p>x</p>\n--c--\n--b\n\
             Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: in digest\n\ndigest body\n\
             --d--\n--b--\n",
        );
        assert_eq!(
            r.types(),
            vec![
                "multipart/mixed",
                "  text/plain",
                "  message/rfc822",
                "    multipart/alternative",
                "      text/plain",
                "      text/html",
                "  multipart/digest",
                "    message/rfc822",
                "      text/plain",
            ]
        );
        assert_eq!(r.part(3).header("subject").unwrap().value, b"inner");
        assert_eq!(r.part(3).parent, Some(2));
        assert_eq!(r.body_of(8).unwrap(), "body \"digest body\"");
        assert!(s.flags.is_empty(), "{:?}", s.flags.names());
    }

    #[test]
    fn encoded_message_rfc822_is_parsed() {
        use base64::Engine;
        let inner = "Subject: hidden\nContent-Type: multipart/mixed; boundary=z\n\n--z\n\ntext\n--z\n\
                     Content-Type: application/zip\nContent-Transfer-Encoding: base64\n\nUEsDBA==\n--z--\n";
        let enc = base64::engine::general_purpose::STANDARD.encode(inner);
        let lines: Vec<&str> = enc
            .as_bytes()
            .chunks(8)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        let (r, s) = parse(&format!(
            "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: message/rfc822\n\
             Content-Transfer-Encoding: base64\n\n{}\n--b\n\nlast\n--b--\n",
            lines.join("\n")
        ));
        assert_eq!(
            r.types(),
            vec![
                "multipart/mixed",
                "  message/rfc822",
                "    multipart/mixed",
                "      text/plain",
                "      application/zip",
                "  text/plain"
            ]
        );
        assert_eq!(r.part(2).parent, Some(1));
        assert_eq!(r.part(4).parent, Some(2));
        assert_eq!(r.body_of(4).unwrap(), "body \"PK\\u{3}\\u{4}\"");
        assert_eq!(r.part(5).index, 5);
        assert!(r.part(1).flags.contains(Flags::ENCODING_ON_CONTAINER));
        assert_eq!(s.parts, 6);
    }

    #[test]
    fn limits() {
        // Depth: a container at the deepest level becomes opaque.
        let limits = Limits {
            max_depth: 1,
            ..Limits::default()
        };
        let (r, s) = parse_with(
            b"Content-Type: multipart/mixed; boundary=a\n\n--a\n\
              Content-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n--b--\n--a--\n",
            limits,
        );
        assert_eq!(
            r.types(),
            vec!["multipart/mixed", "  application/octet-stream"]
        );
        assert!(s.flags.contains(Flags::DEPTH_EXCEEDED));
        assert_eq!(r.body_of(1).unwrap(), "body \"--b\\n\\nx\\n--b--\"");
        // Parts.
        let limits = Limits {
            max_parts: 3,
            ..Limits::default()
        };
        let (r, s) = parse_with(
            b"Content-Type: multipart/mixed; boundary=a\n\n--a\n\n1\n--a\n\n2\n--a\n\n3\n--a\n\n4\n--a--\n",
            limits,
        );
        assert_eq!(
            r.types(),
            vec!["multipart/mixed", "  text/plain", "  text/plain"]
        );
        assert!(s.flags.contains(Flags::PARTS_EXCEEDED));
        assert_eq!(s.parts, 3);
        // Boundary length.
        let limits = Limits {
            max_boundary_length: 5,
            ..Limits::default()
        };
        let (r, s) = parse_with(
            b"Content-Type: multipart/mixed; boundary=abcdefg\n\n--abcdefg\n\nx\n--abcdefg--\n",
            limits,
        );
        assert_eq!(r.types(), vec!["application/octet-stream"]);
        assert!(s.flags.contains(Flags::BOUNDARY_TOO_LONG));
        // Header size: the block ends, the rest is body.
        let limits = Limits {
            max_header_size: 100,
            ..Limits::default()
        };
        let (r, s) = parse_with(b"A: 1\nB: 2\nC: 3\nD: 4\n\nbody\n", limits);
        assert_eq!(r.part(0).headers.len(), 2);
        assert_eq!(r.body_of(0).unwrap(), "body \"C: 3\\nD: 4\\n\\nbody\\n\"");
        assert!(s.flags.contains(Flags::HEADER_TOO_LARGE));
    }

    #[test]
    fn long_lines_in_pieces() {
        // (A field name must fit in one piece: real limits are at least 1000 octets.)
        let limits = Limits {
            max_line_length: 30,
            ..Limits::default()
        };
        let msg = b"Subject: 0123456789abcdefghijklmnopqrstuvwxyz\nContent-Type: multipart/mixed; boundary=b\n\n\
                    --b\nContent-Transfer-Encoding: base64\n\nQUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=\n\
                    --b\n\nit is --b not a boundary at all\n0123456789\n--b--\n";
        let (r, s) = parse_with(msg, limits);
        assert_eq!(
            r.part(0).header("subject").unwrap().value,
            b"0123456789abcdefghijklmnopqrstuvwxyz"
        );
        assert_eq!(
            r.types(),
            vec!["multipart/mixed", "  text/plain", "  text/plain"]
        );
        assert_eq!(r.body_of(1).unwrap(), "body \"ABCDEFGHIJKLMNOPQRSTUVWXYZ\"");
        assert_eq!(
            r.body_of(2).unwrap(),
            "body \"it is --b not a boundary at all\\n0123456789\""
        );
        assert!(s.flags.contains(Flags::LINE_TOO_LONG));
    }

    #[test]
    fn names_and_ids() {
        let (r, _) = parse(
            "Content-Type: application/octet-stream; name=\"=?ISO-2022-JP?B?GyRCO3FOQRsoQg==?=.xls\"\n\
             Content-Disposition: ATTACHMENT\nContent-ID: <abc@x>\n\ndata",
        );
        let p = r.part(0);
        assert_eq!(p.filename.as_deref(), Some("資料.xls"));
        assert_eq!(p.disposition.as_deref(), Some("attachment"));
        assert_eq!(p.content_id.as_deref(), Some("abc@x"));
    }

    #[test]
    fn bad_content_type_defaults_to_text() {
        let (r, s) = parse("Content-Type: /\n\nx");
        assert_eq!(r.types(), vec!["text/plain"]);
        assert!(s.flags.contains(Flags::BAD_CONTENT_TYPE));
    }

    #[test]
    fn hostile_input_is_bounded() {
        let t = std::time::Instant::now();
        // Many nested multiparts.
        let mut msg = Vec::new();
        for i in 0..5000 {
            msg.extend_from_slice(
                format!("Content-Type: multipart/mixed; boundary=q{i}q\n\n--q{i}q\n").as_bytes(),
            );
        }
        let (r, s) = run(&msg, Limits::default(), usize::MAX);
        assert!(s.flags.contains(Flags::DEPTH_EXCEEDED));
        assert!(r.parts.len() <= Limits::default().max_depth + 1);
        // Boundaries that prefix each other, nested deep: still bounded.
        let mut msg = Vec::new();
        for i in 0..5000 {
            msg.extend_from_slice(
                format!("Content-Type: multipart/mixed; boundary=b{i}\n\n--b{i}\n").as_bytes(),
            );
        }
        let (_, s) = run(&msg, Limits::default(), usize::MAX);
        assert!(s.parts <= Limits::default().max_parts);
        // Many parts.
        let mut msg = b"Content-Type: multipart/mixed; boundary=b\n\n".to_vec();
        for _ in 0..100_000 {
            msg.extend_from_slice(b"--b\n\n");
        }
        let (_, s) = run(&msg, Limits::default(), usize::MAX);
        assert_eq!(s.parts, Limits::default().max_parts);
        // A huge header and one huge line.
        let mut msg = Vec::new();
        for _ in 0..100_000 {
            msg.extend_from_slice(b"X: y\n");
        }
        msg.extend(std::iter::repeat_n(b'a', 1 << 20));
        let (_, s) = run(&msg, Limits::default(), 4096);
        assert!(s.flags.contains(Flags::HEADER_TOO_LARGE));
        assert!(s.flags.contains(Flags::LINE_TOO_LONG));
        // Lines of dashes in a body under many open boundaries: linear, not per position.
        let mut msg = Vec::new();
        for i in 0..20 {
            msg.extend_from_slice(
                format!(
                    "Content-Type: multipart/mixed; boundary=\"-{i}-\"; boundary=x{i}\n\n---{i}-\n"
                )
                .as_bytes(),
            );
        }
        msg.extend_from_slice(b"\n");
        for _ in 0..64 {
            msg.extend(std::iter::repeat_n(b'-', 65000));
            msg.push(b'\n');
        }
        let t1 = std::time::Instant::now();
        let (_, s) = run(&msg, Limits::default(), 8192);
        assert!(!s.flags.contains(Flags::BOUNDARY_LIKE_LINE));
        assert!(
            t1.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            t1.elapsed()
        );
        // A million bare CRs.
        let (_, _) = run(&vec![b'\r'; 1 << 20], Limits::default(), 1000);
        assert!(t.elapsed() < std::time::Duration::from_secs(30));
    }
}
