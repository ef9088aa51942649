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
//! Layout: `parser` (line assembly, header/body state machine, boundaries, nesting),
//! `decode` (base64 / quoted-printable streaming decoders), `header` (field parsing:
//! Content-Type, parameters with RFC 2231, RFC 2047 encoded words, addresses), `charset`
//! (bytes in a declared or detected charset to UTF-8).

pub mod charset;
pub mod decode;
pub mod header;
pub mod params;
pub mod parser;

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
    ($($name:ident = $bit:expr, $text:expr;)*) => {
        impl Flags {
            $(pub const $name: Flags = Flags(1 << $bit);)*
            /// Every flag with its name, for reports.
            pub const ALL: &'static [(Flags, &'static str)] = &[$((Flags::$name, $text),)*];
        }
    };
}

flags! {
    HEADER_TOO_LARGE = 0, "header-too-large";
    DEPTH_EXCEEDED = 1, "depth-exceeded";
    PARTS_EXCEEDED = 2, "parts-exceeded";
    BOUNDARY_TOO_LONG = 3, "boundary-too-long";
    LINE_TOO_LONG = 4, "line-too-long";
    MISSING_FINAL_BOUNDARY = 5, "missing-final-boundary";
    MISSING_BOUNDARY = 6, "multipart-without-boundary";
    DUPLICATE_CONTENT_TYPE = 7, "duplicate-content-type";
    DUPLICATE_ENCODING = 8, "duplicate-transfer-encoding";
    DUPLICATE_BOUNDARY = 9, "duplicate-boundary";
    UNKNOWN_ENCODING = 10, "unknown-transfer-encoding";
    ENCODING_ON_CONTAINER = 11, "transfer-encoding-on-container";
    BAD_BASE64 = 12, "bad-base64";
    BAD_QUOTED_PRINTABLE = 13, "bad-quoted-printable";
    BARE_LF = 14, "bare-lf";
    BARE_CR = 15, "bare-cr";
    NUL = 16, "nul-octet";
    EIGHT_BIT_HEADER = 17, "8bit-header";
    BAD_HEADER_LINE = 18, "bad-header-line";
    BAD_CONTENT_TYPE = 19, "bad-content-type";
    BOUNDARY_IN_ENCODED = 20, "boundary-inside-encoded-body";
    EMPTY_MULTIPART = 21, "empty-multipart";
    TRUNCATED = 22, "truncated";
    UNTERMINATED_HEADER = 23, "unterminated-header";
    EMBEDDED_MIME = 24, "embedded-mime-structure";
    BOUNDARY_LIKE_LINE = 25, "boundary-like-line";
    BAD_PARAMETER = 26, "bad-parameter";
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

/// One header field: the name as written (ASCII, case kept) and the raw value with folding
/// removed (CRLF/LF/CR followed by whitespace unfolded to the whitespace) and the line ending
/// trimmed. The value is bytes: it may hold 8-bit text; decode it with [`header`].
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
