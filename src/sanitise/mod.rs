//! Sanitising: decide and apply an action for every part, as a [`mime::Sink`](crate::mime::Sink).
//!
//! The [`Sanitiser`] receives the parser's events and builds a [`CleanModel`]: the top-level
//! header fields worth keeping (decoded), the body text (text/plain normalised, text/html
//! converted, forwarded messages under a small header block) in a [`TextBuffer`] that spills to
//! a temporary file past a memory budget, the attachments that survive attachment disarm
//! ([`crate::cdr::disarm`], called by the sanitiser at each attachment's end when `policy`
//! allows it; bounded by `max_attachment_size` each and twice that for the whole message), and
//! an [`Action`] for everything that was changed, kept or removed. Pure functions over bytes;
//! no network, and the only file I/O is the spill file.
//!
//! Layout: `sink` (the [`Sanitiser`] itself: the parser's sink, one frame per open part),
//! `policy` (what to do with a part: the extension point for attachment disarm), `sniff`
//! (type by content), `text` (text normalisation, encoded-block removal), `html` (HTML to
//! text, bounded in size and time), `links` (link policy), `notice` (the notice text in
//! Japanese or English), `buffer` (the spillable text buffer).

pub mod buffer;
pub mod html;
pub mod links;
pub mod notice;
pub mod policy;
mod sink;
pub mod sniff;
pub mod text;

pub use buffer::TextBuffer;
pub use sink::{SanitiseError, Sanitiser};

use serde::Serialize;

use crate::mime::header::Address;
use crate::mime::Summary;

/// What happened to (a piece of) the message, for the notice and the JSON report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Action {
    /// Index of the part in parse order (0 = the message itself).
    pub part: usize,
    pub kind: ActionKind,
    /// The file name, decoded and made safe to show, if the part had one.
    pub name: Option<String>,
    /// The declared media type.
    pub declared_type: String,
    /// The type found by content (magic bytes), when known.
    pub detected_type: Option<String>,
    /// Why, in a short English phrase (the notice translates by `kind`).
    pub reason: String,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// The kinds of action; the notice has a sentence for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionKind {
    /// text/html turned into plain text.
    HtmlConverted,
    /// Links rewritten or removed by the link policy.
    LinksRewritten,
    /// multipart/alternative reduced to one text.
    AlternativeReduced,
    /// The signature of multipart/signed removed.
    SignatureRemoved,
    /// An encrypted (S/MIME, PGP) part removed.
    EncryptedRemoved,
    /// An attachment removed.
    AttachmentRemoved,
    /// An attachment kept as it is (only types that carry no active content).
    AttachmentKept,
    /// An attachment disarmed (CDR).
    AttachmentDisarmed,
    /// A uuencode, BinHex or base64 block inside text removed.
    EncodedBlockRemoved,
    /// Control characters or NULs removed from text.
    ControlCharactersRemoved,
    /// Text whose charset was missing or wrong, decoded by detection.
    CharsetDetected,
    /// Text with bytes that could not be decoded in its charset (each shown as U+FFFD).
    DecodeErrors,
    /// A forwarded message (message/rfc822) sanitised and its text kept.
    ForwardedMessage,
    /// A part whose structure was damaged (parser flags), handled conservatively.
    StructureRepaired,
    /// Text that the output charset cannot hold, written in UTF-8 instead.
    CharsetFallback,
    /// A part dropped for another reason (oversize, limit, unknown encoding).
    PartRemoved,
    /// The sender is a first contact: the first-contact policy rule was applied (issue 7).
    FirstContact,
}

/// The top-level header fields that pass, decoded. Everything else is dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TopHeaders {
    pub from: Vec<Address>,
    pub sender: Vec<Address>,
    pub reply_to: Vec<Address>,
    pub to: Vec<Address>,
    pub cc: Vec<Address>,
    pub subject: Option<String>,
    /// The Date field as written, if it is plain printable ASCII (re-checked by rebuild).
    pub date: Option<String>,
    /// Message-ID without angle brackets.
    pub message_id: Option<String>,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
}

/// A surviving attachment, disarmed, ready for rebuild. `content_type` is a bare media type,
/// or `text/plain; charset=utf-8` for text extracted from a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptAttachment {
    pub filename: String,
    pub content_type: String,
    pub data: Vec<u8>,
}

/// Everything rebuild needs to write the clean message.
#[derive(Debug)]
pub struct CleanModel {
    pub headers: TopHeaders,
    /// The body text, UTF-8, LF line ends (rebuild writes CRLF). The notice is not in it.
    pub text: TextBuffer,
    pub attachments: Vec<KeptAttachment>,
    pub actions: Vec<Action>,
    pub parse: Summary,
}
