//! The streaming MIME parser: the throughput-critical core of mugaika.
//!
//! Push model, in the manner of Postfix's `mime_state.c`: the caller feeds bytes in chunks of
//! any size ([`Parser::feed`]) and the parser calls a [`Sink`] with events — a part starts (its
//! headers parsed), a chunk of its body (already transfer-decoded), the part ends. It never
//! needs the whole message in memory, has no I/O and no tokio, and produces the same events
//! however the input is split (body chunks may be cut at different places; their concatenation
//! is identical). Every limit is a named config key ([`Limits`]); damage is recorded as
//! [`Flags`], never a panic.
//!
//! Body chunks are transfer-decoded; the line breaks of 7bit, 8bit and quoted-printable bodies
//! come out as `\n` whatever the input used (CRLF, LF or CR), binary and unknown encodings
//! keep their octets. The line break before a delimiter belongs to the delimiter. See
//! [`parser`] for how damaged and hostile structure is read, and [`Flags::SUSPICIOUS_TEXT`]
//! for the flags under which text must not be trusted to be text.
//!
//! Layout: `parser` (line assembly, header/body state machine, boundaries, nesting),
//! `decode` (base64 / quoted-printable streaming decoders), `params` (Content-Type and
//! Content-Disposition parameters with RFC 2231 and RFC 2047), `header` (unstructured fields,
//! RFC 2047 encoded words, addresses, message ids), `charset` (bytes in a declared or detected
//! charset to UTF-8).

pub mod charset;
pub mod decode;
pub mod header;
pub mod params;
pub mod parser;
#[cfg(test)]
pub(crate) mod testutil;

pub use parser::Parser;

use crate::config::MimeConfig;

/// Parser limits, from `[mime]` in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest header block of one part (all fields together), in octets.
    pub max_header_size: usize,
    /// Deepest nesting of multiparts and message/rfc822 (the top level is depth 0).
    pub max_depth: usize,
    /// Most parts in one message, containers included.
    pub max_parts: usize,
    /// Longest boundary parameter accepted (RFC 2046 says 70).
    pub max_boundary_length: usize,
    /// Longest physical line the parser buffers; longer lines are processed in pieces.
    pub max_line_length: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits::from(&MimeConfig::default())
    }
}

impl From<&MimeConfig> for Limits {
    fn from(c: &MimeConfig) -> Self {
        Limits {
            max_header_size: c.max_header_size.as_usize(),
            max_depth: c.max_depth,
            max_parts: c.max_parts,
            max_boundary_length: c.max_boundary_length,
            max_line_length: c.max_line_length.as_usize(),
        }
    }
}

/// Damage and oddities found while parsing, as data. A set of bits so that it is cheap to
/// carry on every part and to merge into a message-wide summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Flags(pub u32);

macro_rules! flags {
    ($($(#[$doc:meta])* $name:ident = $bit:expr, $text:expr;)*) => {
        impl Flags {
            $($(#[$doc])* pub const $name: Flags = Flags(1 << $bit);)*
            /// Every flag with its name, for reports.
            pub const ALL: &'static [(Flags, &'static str)] = &[$((Flags::$name, $text),)*];
        }
    };
}

// Where a flag is reported: "part" flags come with `part_start` ([`Part::flags`], found in the
// header block), "end" flags with `part_end` ([`PartEnd::flags`], found in the body; for a
// container, anywhere inside it that belongs to no child, e.g. its preamble).
flags! {
    /// part: the header block passed `max_header_size`; it ends there and the rest is body.
    HEADER_TOO_LARGE = 0, "header-too-large";
    /// part: a container deeper than `max_depth` is an opaque application/octet-stream leaf.
    DEPTH_EXCEEDED = 1, "depth-exceeded";
    /// end (of the enclosing container): parts past `max_parts` were skipped.
    PARTS_EXCEEDED = 2, "parts-exceeded";
    /// part: the only boundaries were longer than `max_boundary_length`; the multipart is an
    /// opaque leaf.
    BOUNDARY_TOO_LONG = 3, "boundary-too-long";
    /// part or end: a line longer than `max_line_length` was processed in pieces.
    LINE_TOO_LONG = 4, "line-too-long";
    /// end: a multipart ended (at an enclosing delimiter or at the end of input) without its
    /// close delimiter.
    MISSING_FINAL_BOUNDARY = 5, "missing-final-boundary";
    /// part: a multipart without a usable boundary, read as text/plain.
    MISSING_BOUNDARY = 6, "multipart-without-boundary";
    /// part: several Content-Type fields (a multipart one wins, else the first valid).
    DUPLICATE_CONTENT_TYPE = 7, "duplicate-content-type";
    /// part: several Content-Transfer-Encoding fields that disagree (the first wins).
    DUPLICATE_ENCODING = 8, "duplicate-transfer-encoding";
    /// part: several different boundaries declared (each one delimits), or the same boundary
    /// as an enclosing multipart.
    DUPLICATE_BOUNDARY = 9, "duplicate-boundary";
    /// part: a Content-Transfer-Encoding we do not know; the body is passed as it is.
    UNKNOWN_ENCODING = 10, "unknown-transfer-encoding";
    /// part: a transfer encoding on a multipart (ignored) or a message (decoded, then parsed).
    ENCODING_ON_CONTAINER = 11, "transfer-encoding-on-container";
    /// end: junk in base64 (skipped), data after the padding (ignored), a lone sextet.
    BAD_BASE64 = 12, "bad-base64";
    /// end: an `=` not followed by two hex digits or a line break (kept literally).
    BAD_QUOTED_PRINTABLE = 13, "bad-quoted-printable";
    /// part or end: LF-only line ends in a message that also has CRLF or CR ones.
    BARE_LF = 14, "bare-lf";
    /// part or end: CR-only line ends mixed with others, or stray CRs before a line end.
    BARE_CR = 15, "bare-cr";
    /// part: a NUL in the header block; end: a NUL in the decoded body of a text part.
    NUL = 16, "nul-octet";
    /// part: 8-bit octets in the header block.
    EIGHT_BIT_HEADER = 17, "8bit-header";
    /// part: a line in the header block that is not a field (skipped), or a folded line
    /// read as a field of its own.
    BAD_HEADER_LINE = 18, "bad-header-line";
    /// part: a Content-Type that is not `type/subtype`; the default type applies.
    BAD_CONTENT_TYPE = 19, "bad-content-type";
    /// end: an encoded (base64 / quoted-printable) leaf was cut by the delimiter of an
    /// enclosing multipart while an inner multipart was still open.
    BOUNDARY_IN_ENCODED = 20, "boundary-inside-encoded-body";
    /// end: a multipart with no delimiter at all (its body was all preamble).
    EMPTY_MULTIPART = 21, "empty-multipart";
    /// Not set by the parser: for callers that cut a message short (e.g. a size limit).
    TRUNCATED = 22, "truncated";
    /// part: the header block was ended by a delimiter or the end of input, not a blank line.
    UNTERMINATED_HEADER = 23, "unterminated-header";
    /// end: a non-base64 body holding MIME structure: a `Content-...:` field as its first
    /// line or right after a `--x` line.
    EMBEDDED_MIME = 24, "embedded-mime-structure";
    /// end (or the container's end, in a preamble): a delimiter line with junk after the
    /// boundary (a delimiter by RFC 2046, not to every reader), or an open boundary inside a
    /// body line.
    BOUNDARY_LIKE_LINE = 25, "boundary-like-line";
    /// part: broken Content-Type or Content-Disposition parameters (repaired or ignored).
    BAD_PARAMETER = 26, "bad-parameter";
    /// end (of the container whose preamble or epilogue it is; the message summary for the
    /// top-level epilogue): text outside every part was dropped although it looked like
    /// content: MIME structure (a `--x` or `Content-...:` line) in a preamble or epilogue,
    /// any text in an epilogue or more than 1 KiB in a preamble, or any text in a multipart
    /// whose boundary never appears (its whole body).
    CONTENT_OUTSIDE_PARTS = 27, "content-outside-parts";
}

impl Flags {
    /// Flags under which a part that is declared (or defaulted to) text may be something else
    /// to another reader: a multipart whose boundary we could not use, conflicting or broken
    /// declarations, MIME structure or binary data inside the text. Parser-differential
    /// attacks hide attachments this way; the sanitiser must not pass such text unchecked.
    /// (Collect them from the part's [`Part::flags`], its [`PartEnd::flags`] and those of
    /// its ancestors.)
    pub const SUSPICIOUS_TEXT: Flags = Flags(
        Flags::MISSING_BOUNDARY.0
            | Flags::BOUNDARY_TOO_LONG.0
            | Flags::DUPLICATE_CONTENT_TYPE.0
            | Flags::DUPLICATE_ENCODING.0
            | Flags::DUPLICATE_BOUNDARY.0
            | Flags::UNKNOWN_ENCODING.0
            | Flags::BAD_CONTENT_TYPE.0
            | Flags::BOUNDARY_IN_ENCODED.0
            | Flags::EMBEDDED_MIME.0
            | Flags::BOUNDARY_LIKE_LINE.0
            | Flags::NUL.0,
    );

    pub const fn empty() -> Flags {
        Flags(0)
    }
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
    pub fn insert(&mut self, other: Flags) {
        self.0 |= other.0;
    }
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// The names of the flags that are set.
    pub fn names(self) -> Vec<&'static str> {
        Flags::ALL
            .iter()
            .filter(|(f, _)| self.contains(*f))
            .map(|(_, n)| *n)
            .collect()
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for Flags {
    fn bitor_assign(&mut self, rhs: Flags) {
        self.0 |= rhs.0;
    }
}

/// One header field: the name as written (ASCII, case kept; whitespace before the colon
/// dropped) and the raw value with folding removed (CRLF/LF/CR followed by whitespace unfolded
/// to the whitespace), whitespace at both ends trimmed. The value is bytes: it may hold 8-bit
/// text; decode it with [`header`] or [`params`]. It never holds CR or LF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: Vec<u8>,
}

impl Header {
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }
}

/// A parsed media type: `type/subtype` lower-cased, with parameters (names lower-cased,
/// values decoded: quotes removed, RFC 2231 continuations joined and charset-decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentType {
    pub mime_type: String,
    pub params: Vec<(String, String)>,
}

impl ContentType {
    /// `text/plain; charset=us-ascii`, the RFC 2045 default.
    pub fn text_plain() -> ContentType {
        ContentType {
            mime_type: "text/plain".into(),
            params: vec![("charset".into(), "us-ascii".into())],
        }
    }
    /// `message/rfc822`, the default inside multipart/digest.
    pub fn message_rfc822() -> ContentType {
        ContentType {
            mime_type: "message/rfc822".into(),
            params: Vec::new(),
        }
    }
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn main_type(&self) -> &str {
        self.mime_type.split('/').next().unwrap_or("")
    }
    pub fn sub_type(&self) -> &str {
        self.mime_type.split_once('/').map(|(_, s)| s).unwrap_or("")
    }
    pub fn is_multipart(&self) -> bool {
        self.main_type() == "multipart"
    }
    pub fn is_message(&self) -> bool {
        self.mime_type == "message/rfc822" || self.mime_type == "message/global"
    }
}

/// Content-Transfer-Encoding of a leaf part, after conflicts are resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Encoding {
    SevenBit,
    EightBit,
    Binary,
    Base64,
    QuotedPrintable,
    /// An encoding we do not know: the body is passed as is and flagged; the sanitiser
    /// treats such a part as opaque (never as text to be shown).
    Unknown,
}

/// What the parser knows of a part when its header block is complete.
#[derive(Debug, Clone)]
pub struct Part {
    /// Sequence number in the message, 0 for the top-level entity; increases in document order.
    pub index: usize,
    /// The index of the enclosing multipart or message/rfc822 part.
    pub parent: Option<usize>,
    /// 0 for the top level, +1 per enclosing multipart or message/rfc822.
    pub depth: usize,
    /// Every header field of the part, in order.
    pub headers: Vec<Header>,
    /// The effective content type (defaults applied: text/plain, or message/rfc822 in a
    /// digest; multipart without a usable boundary becomes text/plain with a flag).
    pub content_type: ContentType,
    /// The effective transfer encoding.
    pub encoding: Encoding,
    /// `inline` or `attachment` (lower-cased) when a Content-Disposition is present.
    pub disposition: Option<String>,
    /// The file name: Content-Disposition `filename`, else Content-Type `name`; decoded.
    pub filename: Option<String>,
    /// Content-ID without the angle brackets.
    pub content_id: Option<String>,
    /// Damage found in the header block.
    pub flags: Flags,
}

impl Part {
    /// The first header of that name.
    pub fn header(&self, name: &str) -> Option<&Header> {
        self.headers.iter().find(|h| h.is(name))
    }
}

/// What the parser learnt while reading a part's body, reported when it ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartEnd {
    pub index: usize,
    /// Damage found in the body (bad base64, missing final boundary, ...).
    pub flags: Flags,
    /// Octets of the raw (still encoded) body.
    pub raw_len: u64,
    /// Octets of decoded body passed to [`Sink::body`].
    pub decoded_len: u64,
}

/// Receives parser events. Containers (multipart, message/rfc822) get `part_start` and
/// `part_end` but no `body` (their preamble and epilogue are dropped); leaves get `body` calls
/// with decoded data in between. Events are strictly nested.
pub trait Sink {
    fn part_start(&mut self, part: &Part);
    fn body(&mut self, data: &[u8]);
    fn part_end(&mut self, end: &PartEnd);
}

/// The outcome of a whole parse.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Union of the flags of every part and of the message structure.
    pub flags: Flags,
    pub parts: usize,
    pub bytes: u64,
}
