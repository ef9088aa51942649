//! The [`Sanitiser`]: the parser's [`Sink`], turning part events into a [`CleanModel`].
//!
//! It keeps a stack of frames, one per open part. When a part starts, its position (body or
//! not, inside an alternative, the root of a related, the signed content, the entity of a
//! forwarded message...) and its headers give a [`PartPlan`]; body chunks go to the frame's
//! handler (text normaliser, HTML buffer or stream, attachment sniffer, or nothing); when the
//! part ends, the frame hands its text and its actions to the parent. Every text part writes
//! into its own [`TextBuffer`], so a part found to be binary at its end (a zip hiding behind
//! `text/plain`) is discarded whole, and the candidates of a multipart/alternative are kept
//! apart until the alternative ends and one of them is chosen.
//!
//! Text whose MIME framing is in doubt is not passed unchecked. A part whose own header flags
//! or an ancestor's intersect [`Flags::SUSPICIOUS_TEXT`] (a boundary we could not use,
//! conflicting declarations, an unknown encoding...) may be an attachment to another reader,
//! so its text is normalised in strict mode: any well-formed base64 run is removed, not only
//! one that decodes to a binary object. The same flags found in the body (end flags: MIME
//! structure or a boundary-like line inside the text, NULs, a boundary cutting an encoded
//! body) arrive only after the text has streamed through; for them the checks every text
//! gets are the guard, and they are enough for binary payloads: the decoded bytes are checked
//! for binary content and for strong signatures anywhere (a zip, an executable...), and
//! encoded blocks inside the text are removed by their shape or because they decode to a
//! binary object (tests/sanitise.rs holds this over the 372 noxxi `hide-content` tricks).
//!
//! Nothing here panics on input and every buffer is bounded (text spills to a file; HTML is
//! buffered up to `sanitize.max_html_size`, then stripped as a stream; a sniffing sample is a
//! few KiB). The only error is I/O on the spill file, reported by [`Sanitiser::finish`].

use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::cdr::{self, filename, Disarmed, Verdict};
use crate::config::{AttachmentPolicy, Language, LinkPolicy, SanitizeConfig};
use crate::mime::charset::{self, DecodeInfo, TextDecoder};
use crate::mime::header::{self, Address, Neutralised};
use crate::mime::{Flags, Part, PartEnd, Sink, Summary};

use super::html::{self, Method, Stripper};
use super::policy::{self, AttachmentPlan, ContainerKind, PartPlan, TextKind};
use super::sniff::{self, MagicScanner};
use super::text::{Normaliser, TextStats};
use super::{
    links, notice, Action, ActionKind, CleanModel, KeptAttachment, TextBuffer, TopHeaders,
};

/// Octets of a text part looked at to decide whether it is text at all.
const TEXT_SAMPLE: usize = 4096;
/// Smallest in-memory budget of a nested part's buffer.
const MIN_MEM: usize = 64 * 1024;
/// Parser flags that are not worth a line in the notice (common and harmless, or reported
/// by another action).
const BENIGN: Flags = Flags(
    Flags::BARE_LF.0
        | Flags::BARE_CR.0
        | Flags::EIGHT_BIT_HEADER.0
        | Flags::NUL.0
        | Flags::LINE_TOO_LONG.0,
);

/// The reason of the action for content the parser dropped outside every part.
pub(crate) const CONTENT_OUTSIDE: &str =
    "content outside the MIME parts (a preamble, an epilogue or a multipart whose boundary never appears) could not be read safely and was removed";

/// Why sanitising failed.
#[derive(Debug, thiserror::Error)]
pub enum SanitiseError {
    /// Reading or writing the spill file of a text buffer failed.
    #[error("I/O error on the text spill file: {0}")]
    Io(#[from] io::Error),
}

#[derive(Debug, Clone)]
struct Settings {
    links: LinkPolicy,
    lang: Language,
    max_html: usize,
    html_timeout: Duration,
    mem_limit: usize,
    temp_dir: Option<PathBuf>,
    attachments: AttachmentPolicy,
    /// Bounds of attachment disarm (the deadline is set by [`Sanitiser::set_deadline`]).
    limits: cdr::Limits,
    /// Largest attachment buffered for disarm (`sanitize.max_attachment_size`).
    max_attachment: usize,
    /// Most octets of disarmed attachments kept from one message (2 × max_attachment).
    kept_budget: u64,
}

impl Settings {
    /// Nested parts get smaller in-memory budgets so that the total stays near `mem_limit`
    /// however deep the nesting.
    fn buffer(&self, depth: usize) -> TextBuffer {
        let limit = (self.mem_limit >> depth.min(8)).max(MIN_MEM.min(self.mem_limit));
        TextBuffer::new(limit, self.temp_dir.clone())
    }
}

/// The parser sink that sanitises. Create one per message.
#[derive(Debug)]
pub struct Sanitiser {
    set: Settings,
    headers: TopHeaders,
    /// Actions about the top-level header fields; first in the report.
    header_actions: Vec<Action>,
    stack: Vec<Frame>,
    root: Option<Produced>,
    error: Option<io::Error>,
    /// Attachments that survived disarm, in message order.
    kept: Vec<KeptAttachment>,
    /// Their total size, against `Settings::kept_budget`.
    kept_bytes: u64,
}

/// Text written by a part.
#[derive(Debug)]
struct TextOut {
    buf: TextBuffer,
    nonblank: bool,
    html: bool,
}

/// What a finished part hands to its parent.
#[derive(Debug)]
struct Produced {
    declared: String,
    text: Option<TextOut>,
    actions: Vec<Action>,
}

#[derive(Debug)]
struct Frame {
    index: usize,
    depth: usize,
    declared: String,
    name: Option<String>,
    /// The file name as declared (decoded, not yet made safe), for a kept attachment.
    filename: Option<String>,
    /// The Content-ID, naming an inline image that has no file name.
    content_id: Option<String>,
    /// A later alternative dropped unread because a plain text one was already found.
    discard: bool,
    /// The part's MIME framing is in doubt: its own header flags or an ancestor's intersect
    /// [`Flags::SUSPICIOUS_TEXT`]. Its text is normalised in strict mode.
    suspicious: bool,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Container(Box<Container>),
    Text(Box<TextLeaf>),
    Html(Box<HtmlLeaf>),
    Attachment(AttachLeaf),
    Skip(Option<Action>),
}

#[derive(Debug)]
struct Container {
    kind: ContainerKind,
    /// Children are dropped without a word (inside encrypted content).
    silent: bool,
    /// Inside an alternative that is not used: text is dropped unread, attachments are
    /// still reported as removed.
    discarding: bool,
    /// Whether text children are body text.
    body: bool,
    out: TextOut,
    need_sep: bool,
    actions: Vec<Action>,
    children: usize,
    /// multipart/alternative: every child, in order.
    candidates: Vec<Produced>,
    /// multipart/alternative: types dropped unread.
    discarded: Vec<String>,
    /// multipart/related: the `start` parameter (root Content-ID).
    start: Option<String>,
    /// message/rfc822: the forwarded message's subject.
    subject: Option<String>,
}

/// Decides whether a part declared as text really is text.
#[derive(Debug, Default)]
struct BinaryCheck {
    sample: Vec<u8>,
    decided: bool,
    binary: bool,
    scanner: MagicScanner,
    utf16: bool,
    /// A part found binary by its sample (a JPEG declared as text/plain) is kept whole, up to
    /// `keep_max` octets, so that it can go through attachment disarm like any attachment.
    keep: Vec<u8>,
    keep_max: usize,
    /// Octets of the part lost for disarm (past `keep_max`, or before the binary content was
    /// found by a signature scan).
    keep_lost: bool,
}

impl BinaryCheck {
    fn new(label: Option<&str>, keep_max: usize) -> BinaryCheck {
        BinaryCheck {
            utf16: label.is_some_and(|l| l.to_ascii_lowercase().starts_with("utf-16")),
            keep_max,
            ..BinaryCheck::default()
        }
    }

    fn feed(&mut self, data: &[u8]) {
        self.scanner.feed(data);
        let mut rest = data;
        if !self.decided {
            let take = data.len().min(TEXT_SAMPLE - self.sample.len());
            self.sample.extend_from_slice(&data[..take]);
            rest = &data[take..];
            if self.sample.len() >= TEXT_SAMPLE {
                self.decide();
            }
            if !self.binary {
                return;
            }
        } else if !self.binary {
            // Found later by a signature: what streamed through as text is gone.
            self.keep_lost = true;
            return;
        }
        self.keep_more(rest);
    }

    fn keep_more(&mut self, data: &[u8]) {
        if self.keep_lost || data.is_empty() {
            return;
        }
        if self.keep.len().saturating_add(data.len()) > self.keep_max {
            self.keep_lost = true;
            self.keep = Vec::new();
        } else {
            self.keep.extend_from_slice(data);
        }
    }

    fn decide(&mut self) {
        if !self.decided {
            self.decided = true;
            self.binary = sniff::looks_binary(&self.sample, self.utf16);
            if self.binary {
                let sample = std::mem::take(&mut self.sample);
                self.keep_more(&sample);
                self.sample = sample;
            }
        }
    }

    /// The whole part, when it was kept for disarm.
    fn kept(&mut self) -> Option<Vec<u8>> {
        (self.binary && !self.keep_lost).then(|| std::mem::take(&mut self.keep))
    }

    fn is_binary(&self) -> bool {
        self.binary || self.scanner.found().is_some()
    }

    /// The type found: by the magic at the start, else the signature found inside.
    fn detected(&self) -> Option<sniff::Detected> {
        sniff::sniff(&self.sample).or_else(|| {
            self.scanner.found().map(|name| sniff::Detected {
                name,
                category: sniff::Category::Other,
            })
        })
    }
}

#[derive(Debug)]
struct TextLeaf {
    check: BinaryCheck,
    decoder: TextDecoder,
    norm: Normaliser,
    buf: TextBuffer,
    piece: String,
    label: Option<String>,
}

#[derive(Debug)]
struct HtmlLeaf {
    check: BinaryCheck,
    raw: Vec<u8>,
    label: Option<String>,
    stream: Option<HtmlStream>,
}

/// An HTML body too large for the converter, stripped as it arrives.
#[derive(Debug)]
struct HtmlStream {
    decoder: TextDecoder,
    stripper: Stripper,
    norm: Normaliser,
    buf: TextBuffer,
    piece: String,
    text: String,
}

#[derive(Debug, Default)]
struct AttachLeaf {
    sample: Vec<u8>,
    /// Macro-enabled OOXML marks anywhere in the part (past the sample, too).
    macros: sniff::MacroScanner,
    /// The decoded body for disarm, up to `sanitize.max_attachment_size`; dropped past it.
    data: Vec<u8>,
    too_large: bool,
}

impl Sanitiser {
    /// A sanitiser for one message. `temp_dir` is where large text spills (default: the
    /// system temporary directory).
    pub fn new(cfg: &SanitizeConfig, temp_dir: Option<PathBuf>) -> Sanitiser {
        Sanitiser {
            set: Settings {
                links: cfg.links,
                lang: cfg.notice_language,
                max_html: cfg.max_html_size.as_usize(),
                html_timeout: cfg.html_timeout.0,
                mem_limit: cfg.memory_buffer.as_usize().max(1024),
                temp_dir: temp_dir.or_else(|| cfg.temp_dir.clone()),
                attachments: cfg.attachments.clone(),
                limits: cdr::Limits::from_config(cfg),
                max_attachment: cfg.max_attachment_size.as_usize(),
                kept_budget: cfg.max_attachment_size.0.saturating_mul(2),
            },
            headers: TopHeaders::default(),
            header_actions: Vec::new(),
            stack: Vec::new(),
            root: None,
            error: None,
            kept: Vec::new(),
            kept_bytes: 0,
        }
    }

    /// When the whole message's sanitising must be over; attachment disarm stops there (the
    /// attachment being converted is removed with that reason).
    pub fn set_deadline(&mut self, deadline: Instant) {
        self.set.limits.deadline = Some(deadline);
    }

    /// Ends the message and returns the model for rebuild.
    pub fn finish(mut self, summary: Summary) -> Result<CleanModel, SanitiseError> {
        // The parser closes every part; be safe if it did not.
        while let Some(top) = self.stack.last() {
            let index = top.index;
            self.part_end(&PartEnd {
                index,
                ..PartEnd::default()
            });
        }
        if let Some(e) = self.error.take() {
            return Err(SanitiseError::Io(e));
        }
        let root = self.root.take();
        let mut actions = std::mem::take(&mut self.header_actions);
        let text = match root {
            Some(p) => {
                actions.extend(p.actions);
                p.text.map(|t| t.buf)
            }
            None => None,
        };
        if summary.flags.contains(Flags::CONTENT_OUTSIDE_PARTS) {
            // The parser dropped text outside every part that looked like content (a MIME
            // tree after the close delimiter, a multipart whose boundary never appears): the
            // recipient must know that something was not delivered.
            actions.push(Action {
                part: 0,
                kind: ActionKind::PartRemoved,
                name: None,
                declared_type: "multipart".into(),
                detected_type: None,
                reason: CONTENT_OUTSIDE.into(),
                bytes_before: 0,
                bytes_after: 0,
            });
        }
        let shown = Flags(summary.flags.0 & !BENIGN.0 & !Flags::CONTENT_OUTSIDE_PARTS.0);
        if !shown.is_empty() {
            actions.push(Action {
                part: 0,
                kind: ActionKind::StructureRepaired,
                name: None,
                declared_type: String::new(),
                detected_type: None,
                reason: shown.names().join(", "),
                bytes_before: 0,
                bytes_after: 0,
            });
        }
        Ok(CleanModel {
            headers: self.headers,
            text: text.unwrap_or_else(|| self.set.buffer(0)),
            attachments: std::mem::take(&mut self.kept),
            actions,
            parse: summary,
        })
    }

    /// A normaliser for body text; strict for text whose MIME framing is in doubt.
    fn normaliser(&self, suspicious: bool) -> Normaliser {
        let mut n = Normaliser::new(self.set.links, self.set.lang);
        n.set_strict(suspicious);
        n
    }

    fn io<T>(&mut self, r: io::Result<T>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                if self.error.is_none() {
                    self.error = Some(e);
                }
                None
            }
        }
    }

    /// How the parent treats a new child.
    fn child_mode(&self, part: &Part) -> Mode {
        let Some(parent) = self.stack.last() else {
            return Mode::Normal { body: true };
        };
        let Kind::Container(c) = &parent.kind else {
            return Mode::Silent;
        };
        if c.silent {
            return Mode::Silent;
        }
        if c.discarding {
            return Mode::DiscardInner;
        }
        match c.kind {
            ContainerKind::Mixed | ContainerKind::Message => Mode::Normal { body: c.body },
            ContainerKind::Alternative => {
                let have_plain = c
                    .candidates
                    .iter()
                    .any(|p| p.text.as_ref().is_some_and(|t| t.nonblank && !t.html));
                if have_plain {
                    Mode::Discard
                } else {
                    Mode::Normal { body: c.body }
                }
            }
            ContainerKind::Related => {
                let root = match (&c.start, &part.content_id) {
                    (Some(s), Some(id)) => s == id,
                    (Some(_), None) => false,
                    (None, _) => c.children == 0,
                };
                Mode::Normal {
                    body: c.body && root,
                }
            }
            ContainerKind::Signed => Mode::Normal {
                body: c.body && c.children == 0,
            },
            ContainerKind::Encrypted => Mode::Silent,
        }
    }

    fn new_container(
        &self,
        kind: ContainerKind,
        part: &Part,
        silent: bool,
        body: bool,
    ) -> Container {
        let start = part.content_type.param("start").map(|s| {
            s.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        });
        Container {
            kind,
            silent,
            discarding: false,
            body,
            out: TextOut {
                buf: self.set.buffer(part.depth),
                nonblank: false,
                html: false,
            },
            need_sep: false,
            actions: Vec::new(),
            children: 0,
            candidates: Vec::new(),
            discarded: Vec::new(),
            start,
            subject: None,
        }
    }

    /// The header block of a forwarded message, written into its message/rfc822 frame.
    fn forwarded_header(&mut self, part: &Part) {
        let get = |name: &str| part.header(name).map(|h| h.value.as_slice());
        let subject = get("Subject").map(header::decode_text);
        let mut block =
            String::from("---------- 転送されたメッセージ / Forwarded message ----------\n");
        let fields: [(&str, Option<String>); 5] = [
            (
                "From",
                get("From").map(|v| fmt_addrs(&header::parse_addresses(v))),
            ),
            ("Date", get("Date").map(header::decode_text)),
            ("Subject", subject.clone()),
            (
                "To",
                get("To").map(|v| fmt_addrs(&header::parse_addresses(v))),
            ),
            (
                "Cc",
                get("Cc").map(|v| fmt_addrs(&header::parse_addresses(v))),
            ),
        ];
        for (name, value) in fields {
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                block.push_str(name);
                block.push_str(": ");
                block.push_str(&notice::safe_name_len(&v, 500));
                block.push('\n');
            }
        }
        let (links, lang) = (self.set.links, self.set.lang);
        let Some(parent) = self.stack.last_mut() else {
            return;
        };
        let Kind::Container(c) = &mut parent.kind else {
            return;
        };
        c.subject = subject;
        let mut norm = Normaliser::new(links, lang);
        let r = (|| {
            if c.need_sep {
                c.out.buf.push_str("\n")?;
            }
            norm.push(&block, &mut c.out.buf)?;
            norm.finish(&mut c.out.buf)
        })();
        // The message's own text follows after a blank line.
        c.need_sep = true;
        if let Err(e) = r {
            self.io::<()>(Err(e));
        }
    }

    fn action(&self, frame: &Frame, kind: ActionKind, reason: String) -> Action {
        Action {
            part: frame.index,
            kind,
            name: frame.name.clone(),
            declared_type: frame.declared.clone(),
            detected_type: None,
            reason,
            bytes_before: 0,
            bytes_after: 0,
        }
    }

    /// Hands a finished part to its parent (or makes it the root).
    fn deliver(&mut self, p: Produced, discard: bool) {
        let Some(parent) = self.stack.last_mut() else {
            // A second top-level part cannot come from the parser; keep its text anyway.
            match self.root.as_mut() {
                None => self.root = Some(p),
                Some(root) => {
                    root.actions.extend(p.actions);
                    if let Some(t) = p.text.filter(|t| t.nonblank) {
                        let r = match root.text.as_mut() {
                            Some(rt) => rt
                                .buf
                                .push_str("\n")
                                .and_then(|_| rt.buf.append(t.buf))
                                .map(|_| rt.nonblank = true),
                            None => {
                                root.text = Some(t);
                                Ok(())
                            }
                        };
                        self.io(r);
                    }
                }
            }
            return;
        };
        let Kind::Container(c) = &mut parent.kind else {
            return;
        };
        if discard {
            // An unused multipart/related is the HTML version with its inline images.
            let label = if p.declared == "multipart/related" {
                "text/html".to_string()
            } else {
                p.declared
            };
            c.discarded.push(label);
            c.actions.extend(p.actions);
            return;
        }
        if c.kind == ContainerKind::Alternative && !c.silent {
            c.candidates.push(p);
            return;
        }
        c.actions.extend(p.actions);
        if let Some(t) = p.text {
            let r = append_text(c, t);
            self.io(r);
        }
    }

    fn end_container(&mut self, frame: &Frame, mut c: Container, end: &PartEnd) -> Produced {
        let mut p = Produced {
            declared: frame.declared.clone(),
            text: None,
            actions: std::mem::take(&mut c.actions),
        };
        if c.silent {
            return p;
        }
        match c.kind {
            ContainerKind::Alternative => {
                let cands = std::mem::take(&mut c.candidates);
                let has_text = |x: &Produced| x.text.as_ref().is_some_and(|t| t.nonblank);
                let chosen = cands
                    .iter()
                    .position(|x| has_text(x) && x.text.as_ref().is_some_and(|t| !t.html))
                    .or_else(|| {
                        cands
                            .iter()
                            .rposition(|x| has_text(x) && x.text.as_ref().is_some_and(|t| t.html))
                    })
                    .or_else(|| cands.iter().position(has_text));
                let label = |x: &Produced| {
                    if x.text.as_ref().is_some_and(|t| t.html) {
                        "text/html".to_string()
                    } else if x.declared.starts_with("multipart/")
                        || x.declared.starts_with("message/")
                    {
                        x.declared.clone()
                    } else {
                        "text/plain".to_string()
                    }
                };
                let text_cands = cands.iter().filter(|x| x.text.is_some()).count();
                let mut reason = None;
                if let Some(i) = chosen {
                    if text_cands + c.discarded.len() >= 2 {
                        let kept = label(&cands[i]);
                        let mut dropped: Vec<String> = cands
                            .iter()
                            .enumerate()
                            .filter(|(j, x)| *j != i && x.text.is_some())
                            .map(|(_, x)| label(x))
                            .collect();
                        dropped.extend(c.discarded.iter().cloned());
                        let plain_empty = kept == "text/html"
                            && cands
                                .iter()
                                .any(|x| x.text.as_ref().is_some_and(|t| !t.html && !t.nonblank));
                        reason = Some(if plain_empty {
                            "kept text/html, text/plain was empty".to_string()
                        } else {
                            format!("kept {kept}, dropped {}", dropped.join(", "))
                        });
                    }
                }
                for (j, x) in cands.into_iter().enumerate() {
                    if Some(j) == chosen {
                        p.actions.extend(x.actions);
                        p.text = x.text;
                    } else {
                        p.actions
                            .extend(x.actions.into_iter().filter(|a| !is_text_action(a.kind)));
                    }
                }
                if let Some(r) = reason {
                    p.actions
                        .push(self.action(frame, ActionKind::AlternativeReduced, r));
                }
            }
            ContainerKind::Encrypted => {
                let mut a = self.action(
                    frame,
                    ActionKind::EncryptedRemoved,
                    "encrypted content cannot be inspected".into(),
                );
                a.bytes_before = end.raw_len;
                p.actions.push(a);
            }
            ContainerKind::Message => {
                let mut a = self.action(
                    frame,
                    ActionKind::ForwardedMessage,
                    "forwarded message sanitised, its text kept".into(),
                );
                a.name = c.subject.as_deref().map(notice::safe_name).or(a.name);
                a.bytes_before = end.raw_len;
                a.bytes_after = c.out.buf.len();
                p.actions.insert(0, a);
                p.text = Some(c.out);
            }
            ContainerKind::Mixed | ContainerKind::Related | ContainerKind::Signed => {
                p.text = Some(c.out);
            }
        }
        p
    }

    /// Text that turned out to be binary: an attachment after all. Kept whole (found binary
    /// by its beginning), it goes through disarm; otherwise it is removed.
    fn binary_text(&mut self, frame: &Frame, check: &mut BinaryCheck, bytes: u64) -> Produced {
        let detected = check.detected();
        let found = detected.map_or("binary", |d| d.name);
        let note = format!("declared {} but content is {found}", frame.declared);
        let plan =
            policy::attachment_plan(&self.set.attachments, detected, "application/octet-stream");
        if let (AttachmentPlan::Disarm { .. }, Some(data)) = (&plan, check.kept()) {
            return self.disarm_attachment(frame, data, detected, Some(note), bytes);
        }
        let (kind, reason) = plan
            .into_removal("binary content inside a text part, not kept whole for disarm, removed");
        let mut a = self.action(frame, kind, format!("{reason}; {note}"));
        a.detected_type = Some(found.to_string());
        a.bytes_before = bytes;
        Produced {
            declared: frame.declared.clone(),
            text: None,
            actions: vec![a],
        }
    }

    /// The end of an attachment part: the policy, then disarm.
    fn end_attachment(&mut self, frame: &Frame, a: AttachLeaf, end: &PartEnd) -> Produced {
        let detected =
            sniff::sniff_attachment(&a.sample).map(|d| sniff::with_macros(d, a.macros.found()));
        let plan = policy::attachment_plan(&self.set.attachments, detected, &frame.declared);
        let removed = |this: &Self, kind, reason| {
            let mut act = this.action(frame, kind, reason);
            act.detected_type = detected.map(|d| d.name.to_string());
            act.bytes_before = end.decoded_len;
            Produced {
                declared: frame.declared.clone(),
                text: None,
                actions: vec![act],
            }
        };
        let mismatch = match plan {
            AttachmentPlan::Remove { kind, reason } => return removed(self, kind, reason),
            AttachmentPlan::Disarm { mismatch } => mismatch,
        };
        // Content no converter handles (`other`): only TNEF is read (by its signature); the
        // rest is removed here, by the policy key, without buffering it for nothing.
        let other = detected.is_none_or(|d| d.category == sniff::Category::Other);
        if other
            && self.set.attachments.other == crate::config::AttachmentAction::Remove
            && !cdr::tnef::is_tnef(&a.sample)
        {
            let reason = match mismatch {
                Some(m) => format!("other = remove; {m}"),
                None => "other = remove".to_string(),
            };
            return removed(self, ActionKind::AttachmentRemoved, reason);
        }
        if a.too_large {
            let mut reason = format!(
                "larger than max_attachment_size ({} > {} octets)",
                end.decoded_len, self.set.max_attachment
            );
            if let Some(m) = mismatch {
                reason = format!("{reason}; {m}");
            }
            return removed(self, ActionKind::AttachmentRemoved, reason);
        }
        self.disarm_attachment(frame, a.data, detected, mismatch, end.decoded_len)
    }

    /// Runs [`cdr::disarm`] on a whole attachment and keeps what it returns (within the
    /// message's budget of kept octets), with one action per delivered or removed file.
    fn disarm_attachment(
        &mut self,
        frame: &Frame,
        data: Vec<u8>,
        detected: Option<sniff::Detected>,
        note: Option<String>,
        bytes_before: u64,
    ) -> Produced {
        let detected_name = detected.map(|d| d.name.to_string());
        let ext = detected.and_then(|d| filename::extension_for(d.name));
        let given = frame.filename.clone().or_else(|| {
            // An inline image without a name: its Content-ID's local part.
            frame
                .content_id
                .as_deref()
                .and_then(|id| id.split('@').next())
                .map(str::to_string)
        });
        let fname = filename::sanitize_report(given.as_deref().unwrap_or(""), ext);
        let policy = cdr::Policy {
            attachments: &self.set.attachments,
            links: self.set.links,
            limits: self.set.limits,
            depth: 0,
        };
        let verdict = cdr::disarm(&data, &fname.name, detected.map(|d| d.name), &policy);
        drop(data);
        let mut p = Produced {
            declared: frame.declared.clone(),
            text: None,
            actions: Vec::new(),
        };
        let with_note = |reason: String| match &note {
            Some(n) => format!("{reason}; {n}"),
            None => reason,
        };
        let removed = |this: &Self, reason: String| {
            let mut act = this.action(frame, ActionKind::AttachmentRemoved, reason);
            act.detected_type = detected_name.clone();
            act.bytes_before = bytes_before;
            act
        };
        match verdict {
            Verdict::Remove { reason } => p.actions.push(removed(self, with_note(reason))),
            Verdict::Quarantine { reason } => p.actions.push(removed(
                self,
                with_note(format!(
                    "{reason}; the original is held in the quarantine (ask the administrator)"
                )),
            )),
            Verdict::Keep(mut d) => {
                let extra = std::mem::take(&mut d.extra);
                // A container whose own text is empty (a TNEF with attachments only) is
                // delivered as its members alone.
                let main_empty = d.data.is_empty() && !extra.is_empty();
                if !main_empty {
                    let mut notes = fname.changes.clone();
                    notes.extend(note.clone());
                    let shown = frame.filename.clone().unwrap_or_default();
                    let mut act = self.keep(frame, &shown, &fname.name, d, notes, bytes_before);
                    act.detected_type = detected_name.clone();
                    p.actions.push(act);
                }
                let container = frame.name.clone().unwrap_or_else(|| fname.name.clone());
                for (name, e) in extra {
                    let ext = sniff::sniff(&e.data).and_then(|x| filename::extension_for(x.name));
                    let member = filename::sanitize_report(&name, ext);
                    let mut notes = vec![format!("extracted from {container}")];
                    notes.extend(member.changes.iter().cloned());
                    let size = e.data.len() as u64;
                    let found = sniff::sniff(&e.data).map(|x| x.name.to_string());
                    let mut act = self.keep(frame, &name, &member.name, e, notes, size);
                    act.name = Some(notice::safe_name(&name));
                    act.detected_type = found;
                    p.actions.push(act);
                }
            }
        }
        p
    }

    /// Keeps one disarmed file as `name` (with the converter's extension), or removes it when
    /// the message's budget of kept octets is spent. `shown` is the name the action shows
    /// (a new name is reported when it differs); `notes` follow the converter's changes in the
    /// reason.
    fn keep(
        &mut self,
        frame: &Frame,
        shown: &str,
        name: &str,
        d: Disarmed,
        notes: Vec<String>,
        bytes_before: u64,
    ) -> Action {
        let size = d.data.len() as u64;
        if self.kept_bytes.saturating_add(size) > self.set.kept_budget {
            let mut act = self.action(
                frame,
                ActionKind::AttachmentRemoved,
                format!(
                    "the attachments kept from this message would exceed {} octets (twice max_attachment_size)",
                    self.set.kept_budget
                ),
            );
            act.bytes_before = bytes_before;
            return act;
        }
        let filename = match d.extension.as_deref() {
            Some(e) => filename::with_extension(name, e),
            None => name.to_string(),
        };
        // The new name first: the reason is cut for the notice when the changes are many.
        let mut changes = Vec::new();
        if notice::safe_name(&filename) != notice::safe_name(shown) {
            changes.push(format!("delivered as {}", notice::safe_name(&filename)));
        }
        changes.extend(d.changes);
        changes.extend(notes);
        let (kind, reason) = if changes.is_empty() {
            (
                ActionKind::AttachmentKept,
                "no active content found".to_string(),
            )
        } else {
            (ActionKind::AttachmentDisarmed, changes.join("; "))
        };
        let mut act = self.action(frame, kind, reason);
        act.bytes_before = bytes_before;
        act.bytes_after = size;
        self.kept_bytes += size;
        self.kept.push(KeptAttachment {
            filename,
            content_type: d.content_type,
            data: d.data,
        });
        act
    }

    /// The actions for a normalised text.
    fn text_actions(
        &self,
        frame: &Frame,
        stats: &TextStats,
        info: Option<DecodeInfo>,
        label: Option<&str>,
        extra_links: u64,
    ) -> Vec<Action> {
        let mut v = Vec::new();
        if let Some(info) = info.filter(|i| i.detected) {
            let mut a = self.action(
                frame,
                ActionKind::CharsetDetected,
                format!(
                    "declared {}, decoded as {}",
                    label.unwrap_or("no charset"),
                    info.charset
                ),
            );
            a.detected_type = Some(info.charset.to_string());
            v.push(a);
        }
        if let Some(info) = info.filter(|i| i.had_errors) {
            let what = match stats.replacement_chars {
                0 => "some characters".to_string(),
                n => format!("{n} character(s)"),
            };
            let mut a = self.action(
                frame,
                ActionKind::DecodeErrors,
                format!("{what} could not be decoded as {}", info.charset),
            );
            a.detected_type = Some(info.charset.to_string());
            v.push(a);
        }
        if stats.control_removed > 0 {
            let mut r = format!("{} control character(s) removed", stats.control_removed);
            if stats.bidi_removed > 0 {
                r.push_str(&format!(", {} of them bidi controls", stats.bidi_removed));
            }
            v.push(self.action(frame, ActionKind::ControlCharactersRemoved, r));
        }
        for b in &stats.blocks {
            let mut a = self.action(
                frame,
                ActionKind::EncodedBlockRemoved,
                format!("{} block removed from the text", b.kind.as_str()),
            );
            a.name = b.name.as_deref().map(notice::safe_name);
            a.declared_type = b.kind.as_str().to_string();
            a.detected_type = b.detected.map(String::from);
            a.bytes_before = b.bytes;
            v.push(a);
        }
        for _ in 0..stats.pgp_encrypted.min(20) {
            let mut a = self.action(
                frame,
                ActionKind::EncryptedRemoved,
                "inline PGP message removed from the text".into(),
            );
            a.name = None;
            v.push(a);
        }
        if stats.pgp_signatures > 0 {
            let mut a = self.action(
                frame,
                ActionKind::SignatureRemoved,
                "inline PGP signature removed from the text".into(),
            );
            a.name = None;
            v.push(a);
        }
        let n = stats.links_rewritten + extra_links;
        if n > 0 {
            let mut a = self.action(
                frame,
                ActionKind::LinksRewritten,
                links::links_reason(n, self.set.links),
            );
            a.name = None;
            v.push(a);
        }
        v
    }

    fn end_text(&mut self, frame: &Frame, leaf: TextLeaf, end: &PartEnd) -> Produced {
        let TextLeaf {
            mut check,
            mut decoder,
            mut norm,
            mut buf,
            mut piece,
            label,
        } = leaf;
        check.decide();
        if check.is_binary() {
            return self.binary_text(frame, &mut check, end.decoded_len);
        }
        let info = decoder.finish(&mut piece);
        let r = norm
            .push(&piece, &mut buf)
            .and_then(|_| norm.finish(&mut buf));
        let Some(stats) = self.io(r) else {
            return empty(frame);
        };
        if garbage(&stats) {
            return self.binary_text(frame, &mut check, end.decoded_len);
        }
        let actions = self.text_actions(frame, &stats, Some(info), label.as_deref(), 0);
        Produced {
            declared: frame.declared.clone(),
            text: Some(TextOut {
                nonblank: stats.nonblank,
                buf,
                html: false,
            }),
            actions,
        }
    }

    fn end_html(&mut self, frame: &Frame, leaf: HtmlLeaf, end: &PartEnd) -> Produced {
        let HtmlLeaf {
            mut check,
            raw,
            label,
            stream,
        } = leaf;
        check.decide();
        if check.is_binary() {
            return self.binary_text(frame, &mut check, end.decoded_len);
        }
        let (stats, buf, info, links_html, how) = match stream {
            Some(mut s) => {
                let info = s.decoder.finish(&mut s.piece);
                s.stripper.push(&s.piece, &mut s.text);
                s.stripper.finish(&mut s.text);
                let r = s
                    .norm
                    .push(&s.text, &mut s.buf)
                    .and_then(|_| s.norm.finish(&mut s.buf));
                let Some(stats) = self.io(r) else {
                    return empty(frame);
                };
                let how = format!(
                    "too large for the converter ({} octets > max_html_size): tags stripped",
                    end.decoded_len
                );
                (stats, s.buf, info, s.stripper.links_rewritten(), how)
            }
            None => {
                let label = label.or_else(|| html::meta_charset(&raw));
                let d = charset::decode(label.as_deref(), &raw);
                drop(raw);
                let info = DecodeInfo {
                    charset: d.charset,
                    detected: d.detected,
                    had_errors: d.had_errors,
                };
                let conv = html::convert(d.text, self.set.links, self.set.html_timeout);
                let mut buf = self.set.buffer(frame.depth);
                let mut norm = self.normaliser(frame.suspicious);
                let r = norm
                    .push(&conv.text, &mut buf)
                    .and_then(|_| norm.finish(&mut buf));
                let Some(stats) = self.io(r) else {
                    return empty(frame);
                };
                let how = match conv.method {
                    Method::Converter => "converted to plain text".to_string(),
                    Method::Stripper(why) => format!("{why}: tags stripped"),
                };
                (stats, buf, info, conv.links_rewritten, how)
            }
        };
        if garbage(&stats) {
            return self.binary_text(frame, &mut check, end.decoded_len);
        }
        let mut a = self.action(frame, ActionKind::HtmlConverted, how);
        a.bytes_before = end.decoded_len;
        a.bytes_after = buf.len();
        let mut actions = vec![a];
        actions.extend(self.text_actions(frame, &stats, Some(info), None, links_html));
        Produced {
            declared: frame.declared.clone(),
            text: Some(TextOut {
                nonblank: stats.nonblank,
                buf,
                html: true,
            }),
            actions,
        }
    }
}

/// How a parent treats a child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Normal {
        body: bool,
    },
    /// Dropped without a word (inside encrypted content).
    Silent,
    /// A later alternative, not needed: its text is dropped unread (named in the
    /// AlternativeReduced action), its attachments still reported.
    Discard,
    /// Inside such an alternative.
    DiscardInner,
}

fn empty(frame: &Frame) -> Produced {
    Produced {
        declared: frame.declared.clone(),
        text: None,
        actions: Vec::new(),
    }
}

/// Decoded "text" that is mostly control characters or undecodable: binary.
fn garbage(s: &TextStats) -> bool {
    let bad = (s.control_removed - s.bidi_removed.min(s.control_removed)) + s.replacement_chars;
    bad >= 16 && bad * 5 >= s.bytes_in / 2
}

/// Actions that only describe text; dropped with an alternative that was not chosen.
fn is_text_action(k: ActionKind) -> bool {
    matches!(
        k,
        ActionKind::HtmlConverted
            | ActionKind::LinksRewritten
            | ActionKind::ControlCharactersRemoved
            | ActionKind::CharsetDetected
            | ActionKind::DecodeErrors
            | ActionKind::EncodedBlockRemoved
    )
}

fn append_text(c: &mut Container, t: TextOut) -> io::Result<()> {
    if t.buf.is_empty() || !t.nonblank {
        return Ok(());
    }
    if c.need_sep {
        if c.out.buf.last_char() != Some('\n') {
            c.out.buf.push_str("\n")?;
        }
        c.out.buf.push_str("\n")?;
    }
    c.out.buf.append(t.buf)?;
    c.out.nonblank = true;
    c.out.html |= t.html;
    c.need_sep = true;
    Ok(())
}

fn fmt_addrs(list: &[Address]) -> String {
    let mut s = String::new();
    for a in list {
        if s.len() > 1000 {
            s.push_str(", ...");
            break;
        }
        if !s.is_empty() {
            s.push_str(", ");
        }
        match a.name.as_deref().filter(|n| !n.is_empty()) {
            Some(n) => s.push_str(&format!("{n} <{}>", a.addr)),
            None => s.push_str(&a.addr),
        }
    }
    s
}

/// The top-level header fields that pass, decoded, and the names of those in which line
/// breaks or control characters had to be neutralised (with the total found).
fn top_headers(part: &Part) -> (TopHeaders, Vec<&'static str>, Neutralised) {
    let get = |name: &str| part.header(name).map(|h| h.value.as_slice());
    let damaged = std::cell::RefCell::new((Vec::new(), Neutralised::default()));
    let note = |name: &'static str, n: Neutralised| {
        if !n.is_empty() {
            let mut d = damaged.borrow_mut();
            if !d.0.contains(&name) {
                d.0.push(name);
            }
            d.1.line_breaks += n.line_breaks;
            d.1.controls += n.controls;
        }
    };
    let addrs = |name: &'static str| {
        let (list, n) = get(name)
            .map(header::parse_addresses_checked)
            .unwrap_or_default();
        note(name, n);
        list
    };
    let ids = |name: &str| get(name).map(header::parse_msg_ids).unwrap_or_default();
    let date = get("Date").and_then(|v| {
        let s = std::str::from_utf8(v).ok()?.trim();
        let ok = !s.is_empty() && s.len() <= 200 && s.bytes().all(|b| (0x20..0x7F).contains(&b));
        ok.then(|| s.to_string())
    });
    let headers = TopHeaders {
        from: addrs("From"),
        sender: addrs("Sender"),
        reply_to: addrs("Reply-To"),
        to: addrs("To"),
        cc: addrs("Cc"),
        // Decoded after the address fields, so that the report names them in order.
        subject: get("Subject").map(|v| {
            let (text, n) = header::decode_text_checked(v);
            note("Subject", n);
            text
        }),
        date,
        message_id: ids("Message-ID").into_iter().next(),
        in_reply_to: ids("In-Reply-To"),
        references: ids("References"),
    };
    let (names, n) = damaged.into_inner();
    (headers, names, n)
}

/// The reason of the action for header fields whose line breaks or control characters were
/// neutralised (the notice translates it by its start).
fn header_reason(names: &[&str], n: Neutralised) -> String {
    let what = match (n.line_breaks > 0, n.controls > 0) {
        (true, true) => "line breaks and control characters",
        (true, false) => "line breaks",
        _ => "control characters",
    };
    format!("{what} in header fields neutralised ({})", names.join(", "))
}

impl Sink for Sanitiser {
    fn part_start(&mut self, part: &Part) {
        let mode = self.child_mode(part);
        let parent_is_message = matches!(
            self.stack.last().map(|f| &f.kind),
            Some(Kind::Container(c)) if c.kind == ContainerKind::Message && !c.silent
        );
        if let Some(Kind::Container(c)) = self.stack.last_mut().map(|f| &mut f.kind) {
            c.children += 1;
        }
        if self.stack.is_empty() && self.root.is_none() {
            let (headers, damaged, n) = top_headers(part);
            self.headers = headers;
            if !damaged.is_empty() {
                self.header_actions.push(Action {
                    part: 0,
                    kind: ActionKind::StructureRepaired,
                    name: None,
                    declared_type: String::new(),
                    detected_type: None,
                    reason: header_reason(&damaged, n),
                    bytes_before: 0,
                    bytes_after: 0,
                });
            }
        } else if parent_is_message && matches!(mode, Mode::Normal { .. }) {
            self.forwarded_header(part);
        }
        let label = part.content_type.param("charset").map(str::to_string);
        let suspicious = part.flags.0 & Flags::SUSPICIOUS_TEXT.0 != 0
            || self.stack.last().is_some_and(|f| f.suspicious);
        let mut frame = Frame {
            index: part.index,
            depth: part.depth,
            declared: part.content_type.mime_type.clone(),
            name: part.filename.as_deref().map(notice::safe_name),
            filename: part.filename.clone(),
            content_id: part.content_id.clone(),
            discard: mode == Mode::Discard,
            suspicious,
            kind: Kind::Skip(None),
        };
        let is_container = part.content_type.is_multipart() || part.content_type.is_message();
        let (plan, body) = match mode {
            Mode::Normal { body } => (policy::plan_part(part, body), body),
            Mode::Silent => {
                if is_container {
                    let kind = ContainerKind::Mixed;
                    frame.kind =
                        Kind::Container(Box::new(self.new_container(kind, part, true, false)));
                }
                self.stack.push(frame);
                return;
            }
            Mode::Discard | Mode::DiscardInner => {
                if is_container {
                    let mut c = self.new_container(ContainerKind::Mixed, part, false, false);
                    c.discarding = true;
                    frame.kind = Kind::Container(Box::new(c));
                    self.stack.push(frame);
                    return;
                }
                if part.content_type.main_type() == "text" {
                    self.stack.push(frame);
                    return;
                }
                (policy::plan_part(part, false), false)
            }
        };
        frame.kind = match plan {
            PartPlan::Container(kind) => {
                Kind::Container(Box::new(self.new_container(kind, part, false, body)))
            }
            PartPlan::BodyText(TextKind::Plain) => Kind::Text(Box::new(TextLeaf {
                check: BinaryCheck::new(label.as_deref(), self.set.max_attachment),
                decoder: TextDecoder::new(label.as_deref()),
                norm: self.normaliser(suspicious),
                buf: self.set.buffer(part.depth),
                piece: String::new(),
                label,
            })),
            PartPlan::BodyText(TextKind::Html) => Kind::Html(Box::new(HtmlLeaf {
                check: BinaryCheck::new(label.as_deref(), self.set.max_attachment),
                raw: Vec::new(),
                label,
                stream: None,
            })),
            PartPlan::Attachment => Kind::Attachment(AttachLeaf::default()),
            PartPlan::Signature => Kind::Skip(Some(self.action(
                &frame,
                ActionKind::SignatureRemoved,
                "detached signature removed (not verified)".into(),
            ))),
            PartPlan::Encrypted => Kind::Skip(Some(self.action(
                &frame,
                ActionKind::EncryptedRemoved,
                "encrypted content cannot be inspected".into(),
            ))),
            PartPlan::Remove(reason) => {
                Kind::Skip(Some(self.action(&frame, ActionKind::PartRemoved, reason)))
            }
        };
        self.stack.push(frame);
    }

    fn body(&mut self, data: &[u8]) {
        let set = &self.set;
        let Some(frame) = self.stack.last_mut() else {
            return;
        };
        let depth = frame.depth;
        let suspicious = frame.suspicious;
        let r: io::Result<()> = match &mut frame.kind {
            Kind::Text(t) => {
                t.check.feed(data);
                if t.check.is_binary() {
                    Ok(())
                } else {
                    t.decoder.feed(data, &mut t.piece);
                    let r = t.norm.push(&t.piece, &mut t.buf);
                    t.piece.clear();
                    r
                }
            }
            Kind::Html(h) => {
                h.check.feed(data);
                if h.check.is_binary() {
                    h.raw = Vec::new();
                    h.stream = None;
                    Ok(())
                } else {
                    if h.stream.is_none() && h.raw.len().saturating_add(data.len()) > set.max_html {
                        let label = h.label.clone().or_else(|| html::meta_charset(&h.raw));
                        let mut norm = Normaliser::new(set.links, set.lang);
                        norm.set_strict(suspicious);
                        let mut s = HtmlStream {
                            decoder: TextDecoder::new(label.as_deref()),
                            stripper: Stripper::new(set.links),
                            norm,
                            buf: set.buffer(depth),
                            piece: String::new(),
                            text: String::new(),
                        };
                        let raw = std::mem::take(&mut h.raw);
                        s.decoder.feed(&raw, &mut s.piece);
                        h.stream = Some(s);
                    }
                    match h.stream.as_mut() {
                        Some(s) => {
                            s.decoder.feed(data, &mut s.piece);
                            s.stripper.push(&s.piece, &mut s.text);
                            s.piece.clear();
                            let r = s.norm.push(&s.text, &mut s.buf);
                            s.text.clear();
                            r
                        }
                        None => {
                            h.raw.extend_from_slice(data);
                            Ok(())
                        }
                    }
                }
            }
            Kind::Attachment(a) => {
                let take = data
                    .len()
                    .min(sniff::SNIFF_LEN.saturating_sub(a.sample.len()));
                a.sample.extend_from_slice(&data[..take]);
                if a.sample.starts_with(b"PK") {
                    a.macros.feed(data);
                }
                if !a.too_large {
                    if a.data.len().saturating_add(data.len()) > set.max_attachment {
                        a.too_large = true;
                        a.data = Vec::new();
                    } else {
                        a.data.extend_from_slice(data);
                    }
                }
                Ok(())
            }
            Kind::Container(_) | Kind::Skip(_) => Ok(()),
        };
        self.io(r);
    }

    fn part_end(&mut self, end: &PartEnd) {
        // Events are strictly nested; if not, close inner frames first.
        if !self.stack.iter().any(|f| f.index == end.index) {
            return;
        }
        let Some(frame) = self.stack.pop() else {
            return;
        };
        if frame.index != end.index {
            let inner_end = PartEnd {
                index: frame.index,
                ..PartEnd::default()
            };
            self.stack.push(frame);
            self.part_end(&inner_end);
            self.part_end(end);
            return;
        }
        let mut frame = frame;
        let kind = std::mem::replace(&mut frame.kind, Kind::Skip(None));
        let produced = match kind {
            Kind::Container(c) => self.end_container(&frame, *c, end),
            Kind::Text(t) => self.end_text(&frame, *t, end),
            Kind::Html(h) => self.end_html(&frame, *h, end),
            Kind::Attachment(a) => self.end_attachment(&frame, a, end),
            Kind::Skip(action) => {
                let mut p = empty(&frame);
                if let Some(mut a) = action {
                    a.bytes_before = end.decoded_len;
                    p.actions.push(a);
                }
                p
            }
        };
        self.deliver(produced, frame.discard);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SanitizeConfig;
    use crate::mime::{Limits, Parser};

    fn run_cfg(msg: &[u8], cfg: &SanitizeConfig) -> (CleanModel, String) {
        let mut s = Sanitiser::new(cfg, None);
        let mut p = Parser::new(Limits::default());
        p.feed(msg, &mut s);
        let summary = p.finish(&mut s);
        let mut m = s.finish(summary).unwrap();
        let t = m.text.to_string_lossy().unwrap();
        (m, t)
    }

    fn run(msg: &str) -> (CleanModel, String) {
        run_cfg(msg.as_bytes(), &SanitizeConfig::default())
    }

    fn kinds(m: &CleanModel) -> Vec<ActionKind> {
        m.actions.iter().map(|a| a.kind).collect()
    }

    fn b64(data: &[u8]) -> String {
        use base64::Engine;
        let e = base64::engine::general_purpose::STANDARD.encode(data);
        e.as_bytes()
            .chunks(76)
            .map(|c| format!("{}\n", std::str::from_utf8(c).unwrap()))
            .collect()
    }

    fn zip_bytes() -> Vec<u8> {
        let mut z = b"PK\x03\x04\x14\x00\x02\x00\x08\x00\x11J\x8eI<\xcfQhF\x00\x00\x00D\x00\x00\x00\t\x00\x00\x00eicar.com".to_vec();
        z.extend((0..200u32).map(|i| (i * 13 + 7) as u8));
        z
    }

    fn action(m: &CleanModel, k: ActionKind) -> &Action {
        m.actions
            .iter()
            .find(|a| a.kind == k)
            .unwrap_or_else(|| panic!("no {k:?} in {:#?}", m.actions))
    }

    #[test]
    fn iso_2022_jp_text_and_headers() {
        let (body, _, _) =
            encoding_rs::ISO_2022_JP.encode("お世話になっております。\n市民課です。\n");
        let mut msg = b"From: =?ISO-2022-JP?B?GyRCOzNFRBsoQg==?= <yamada@example.jp>\nTo: a@city.example.lg.jp, b@city.example.lg.jp\nSubject: =?ISO-2022-JP?B?GyRCJDMkcyRLJEEkTxsoQg==?=\nDate: Mon, 1 Jan 2024 09:00:00 +0900\nMessage-ID: <abc@example.jp>\nReferences: <r1@x> <r2@x>\nContent-Type: text/plain; charset=ISO-2022-JP\nContent-Transfer-Encoding: 7bit\n\n".to_vec();
        msg.extend_from_slice(&body);
        let (m, t) = run_cfg(&msg, &SanitizeConfig::default());
        assert_eq!(t, "お世話になっております。\n市民課です。\n");
        assert!(m.actions.is_empty(), "{:#?}", m.actions);
        let h = &m.headers;
        assert_eq!(h.subject.as_deref(), Some("こんにちは"));
        assert_eq!(h.from[0].name.as_deref(), Some("山田"));
        assert_eq!(h.from[0].addr, "yamada@example.jp");
        assert_eq!(h.to.len(), 2);
        assert_eq!(h.date.as_deref(), Some("Mon, 1 Jan 2024 09:00:00 +0900"));
        assert_eq!(h.message_id.as_deref(), Some("abc@example.jp"));
        assert_eq!(h.references, vec!["r1@x", "r2@x"]);
    }

    #[test]
    fn html_only_message_is_converted_with_links_shown() {
        let (m, t) = run("Content-Type: text/html; charset=utf-8\n\n<html><head><script>evil()</script></head><body><p>本文 <a href=\"https://example.jp/x\">リンク</a></p></body></html>\n");
        assert_eq!(t, "本文 リンク [https://example.jp/x]\n");
        assert_eq!(
            kinds(&m),
            vec![ActionKind::HtmlConverted, ActionKind::LinksRewritten]
        );
        assert_eq!(
            action(&m, ActionKind::LinksRewritten).reason,
            "1 link(s) rewritten (links = show)"
        );
        // Defang applies to links and to addresses written as text.
        let cfg = SanitizeConfig {
            links: LinkPolicy::Defang,
            ..SanitizeConfig::default()
        };
        let (_, t) = run_cfg(
            b"Content-Type: text/html\n\n<p><a href='http://a.example/'>x</a> http://b.example/</p>",
            &cfg,
        );
        assert_eq!(t, "x [hxxp://a[.]example/] hxxp://b[.]example/\n");
    }

    #[test]
    fn alternative_with_empty_plain_uses_the_html() {
        let (m, t) = run("Content-Type: multipart/alternative; boundary=b\n\n--b\nContent-Type: text/plain\n\n  \n--b\nContent-Type: text/html\n\n<p>from html</p>\n--b--\n");
        assert_eq!(t, "from html\n");
        assert_eq!(
            action(&m, ActionKind::AlternativeReduced).reason,
            "kept text/html, text/plain was empty"
        );
        assert!(m
            .actions
            .iter()
            .any(|a| a.kind == ActionKind::HtmlConverted));
    }

    #[test]
    fn attachments_are_removed_by_content_type() {
        let msg = format!(
            "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain; charset=utf-8\n\n本文\n--b\nContent-Type: application/pdf; name=\"見積.pdf\"\nContent-Disposition: attachment; filename=\"見積.pdf\"\nContent-Transfer-Encoding: base64\n\n{}--b\nContent-Type: application/pdf\nContent-Disposition: attachment; filename=\"invoice.pdf\"\nContent-Transfer-Encoding: base64\n\n{}--b--\n",
            b64(b"%PDF-1.7\n1 0 obj\n"),
            b64(b"MZ\x90\x00\x03\x00\x00\x00\x04\x00")
        );
        let (m, t) = run(&msg);
        assert_eq!(t, "本文\n");
        let removed: Vec<&Action> = m
            .actions
            .iter()
            .filter(|a| a.kind == ActionKind::AttachmentRemoved)
            .collect();
        assert_eq!(removed.len(), 2, "{:#?}", m.actions);
        assert_eq!(removed[0].name.as_deref(), Some("見積.pdf"));
        assert_eq!(removed[0].detected_type.as_deref(), Some("pdf"));
        // A PDF that does not load is removed by the converter, with its reason.
        assert!(
            removed[0].reason.starts_with("pdf"),
            "{}",
            removed[0].reason
        );
        assert_eq!(removed[0].bytes_before, 17);
        assert!(m.attachments.is_empty());
        assert_eq!(removed[1].detected_type.as_deref(), Some("pe-executable"));
        assert_eq!(
            removed[1].reason,
            "executable or script: always removed; declared application/pdf but content is pe-executable"
        );
    }

    #[test]
    fn macro_enabled_workbook_is_typed_as_such() {
        // The VBA project named only in the central directory, far past the sniffing sample.
        let mut z =
            b"PK\x03\x04\x14\x00\x06\x00\x08\x00[Content_Types].xml xl/workbook.xml".to_vec();
        z.extend((0..100_000u32).map(|i| (i * 7 + 3) as u8));
        z.extend_from_slice(b"PK\x01\x02 xl/vbaProject.bin PK\x05\x06");
        let msg = format!(
            "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nsee attached\n--b\nContent-Type: application/vnd.openxmlformats-officedocument.spreadsheetml.sheet; name=budget.xlsx\nContent-Transfer-Encoding: base64\n\n{}--b--\n",
            b64(&z)
        );
        let (m, _) = run(&msg);
        let a = action(&m, ActionKind::AttachmentRemoved);
        assert_eq!(a.detected_type.as_deref(), Some("xlsm"));
    }

    #[test]
    fn text_that_is_a_zip_is_removed() {
        let msg = format!(
            "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nhello\n--b\nContent-Type: text/plain\nContent-Transfer-Encoding: base64\n\n{}--b--\n",
            b64(&zip_bytes())
        );
        let (m, t) = run(&msg);
        assert_eq!(t, "hello\n");
        let a = action(&m, ActionKind::AttachmentRemoved);
        assert_eq!(a.detected_type.as_deref(), Some("zip"));
        // Kept whole (binary from its first octets), it went through disarm: a zip without
        // its central directory is not readable, so it is removed.
        assert!(
            a.reason.starts_with("zip: ")
                && a.reason
                    .ends_with("; declared text/plain but content is zip"),
            "{}",
            a.reason
        );
        // A zip appended after real text is found too.
        let mut body = b"Dear customer, the document follows.\n".repeat(300);
        body.extend_from_slice(&zip_bytes());
        let msg = format!(
            "Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\n{}",
            b64(&body)
        );
        let (m, t) = run(&msg);
        assert_eq!(t, "");
        assert!(action(&m, ActionKind::AttachmentRemoved)
            .reason
            .ends_with("content is zip"));
    }

    #[test]
    fn content_outside_parts_is_reported() {
        let (m, t) = run("Content-Type: multipart/mixed; boundary=b\n\n--b\n\ndummy\n--b--\n\n--b\nContent-Type: multipart/mixed; boundary=b\n\n--b\n\nsecret\n--b--\n");
        assert_eq!(t, "dummy\n");
        let a = action(&m, ActionKind::PartRemoved);
        assert_eq!(a.reason, CONTENT_OUTSIDE);
        // Not also as a repaired structure.
        assert!(!m
            .actions
            .iter()
            .any(|a| a.kind == ActionKind::StructureRepaired));
        let (m, _) = run("Content-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n--b--\n");
        assert!(m.actions.is_empty(), "{:?}", m.actions);
    }

    #[test]
    fn signed_keeps_content_and_drops_signature() {
        let (m, t) = run("Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=s\n\n--s\nContent-Type: text/plain\n\nsigned text\n--s\nContent-Type: application/pkcs7-signature; name=smime.p7s\nContent-Transfer-Encoding: base64\n\nMIAGCSqGSIb3DQEHAqCAMIACAQExDzANBglghkgBZQMEAgEFADCABgkqhkiG9w0BBwEAAKCAMIIE\n--s--\n");
        assert_eq!(t, "signed text\n");
        assert_eq!(kinds(&m), vec![ActionKind::SignatureRemoved]);
        assert_eq!(m.actions[0].name.as_deref(), Some("smime.p7s"));
    }

    #[test]
    fn encrypted_content_is_removed() {
        let (m, t) = run("Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=e\n\n--e\nContent-Type: application/pgp-encrypted\n\nVersion: 1\n--e\nContent-Type: application/octet-stream\n\n-----BEGIN PGP MESSAGE-----\nhQEMA\n-----END PGP MESSAGE-----\n--e--\n");
        assert_eq!(t, "");
        assert_eq!(kinds(&m), vec![ActionKind::EncryptedRemoved]);
        let (m, t) = run("Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\nContent-Transfer-Encoding: base64\n\nMIAGCSqGSIb3DQEHA6CAMIACAQAxggFA\n");
        assert_eq!(t, "");
        assert_eq!(kinds(&m), vec![ActionKind::EncryptedRemoved]);
        // Inline PGP in text.
        let (m, t) = run("Content-Type: text/plain\n\nhi\n-----BEGIN PGP MESSAGE-----\n\nhQEMA1234\n-----END PGP MESSAGE-----\nbye\n");
        assert_eq!(
            t,
            "hi\n[mugaika: 暗号化された PGP メッセージを削除しました]\nbye\n"
        );
        assert_eq!(kinds(&m), vec![ActionKind::EncryptedRemoved]);
    }

    #[test]
    fn forwarded_messages_are_sanitised_recursively() {
        let msg = format!(
            "From: outer@example.jp\nSubject: Fwd\nContent-Type: multipart/mixed; boundary=o\n\n--o\nContent-Type: text/plain; charset=utf-8\n\n転送します。\n--o\nContent-Type: message/rfc822\n\nFrom: =?UTF-8?B?5bGx55Sw?= <inner@example.jp>\nTo: someone@example.jp\nDate: Tue, 2 Jan 2024 10:00:00 +0900\nSubject: =?UTF-8?B?5Lya6K2w44Gu5Lu2?=\nContent-Type: multipart/mixed; boundary=i\n\n--i\nContent-Type: text/html; charset=utf-8\n\n<p>内側の本文</p><script>x()</script>\n--i\nContent-Type: application/zip; name=a.zip\nContent-Transfer-Encoding: base64\n\n{}--i--\n--o--\n",
            b64(&zip_bytes())
        );
        let (m, t) = run(&msg);
        assert_eq!(
            t,
            "転送します。\n\n---------- 転送されたメッセージ / Forwarded message ----------\nFrom: 山田 <inner@example.jp>\nDate: Tue, 2 Jan 2024 10:00:00 +0900\nSubject: 会議の件\nTo: someone@example.jp\n\n内側の本文\n"
        );
        let f = action(&m, ActionKind::ForwardedMessage);
        assert_eq!(f.name.as_deref(), Some("会議の件"));
        let a = action(&m, ActionKind::AttachmentRemoved);
        assert_eq!(a.name.as_deref(), Some("a.zip"));
        assert_eq!(a.detected_type.as_deref(), Some("zip"));
        assert!(m
            .actions
            .iter()
            .any(|a| a.kind == ActionKind::HtmlConverted));
        assert_eq!(m.headers.subject.as_deref(), Some("Fwd"));
        assert_eq!(m.headers.from[0].addr, "outer@example.jp");
    }

    /// A real 4x3 PNG with a tEXt chunk (metadata the re-encoding must drop).
    fn png_with_text() -> Vec<u8> {
        let img =
            image::RgbImage::from_fn(4, 3, |x, y| image::Rgb([x as u8 * 60, y as u8 * 80, 9]));
        let mut png = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        // tEXt inserted after IHDR (8 + 25 octets).
        let mut chunk = Vec::new();
        let body = b"Comment\0secret";
        chunk.extend_from_slice(&(body.len() as u32).to_be_bytes());
        chunk.extend_from_slice(b"tEXt");
        chunk.extend_from_slice(body);
        chunk.extend_from_slice(&[0, 0, 0, 0]);
        let mut out = png[..33].to_vec();
        out.extend_from_slice(&chunk);
        out.extend_from_slice(&png[33..]);
        out
    }

    #[test]
    fn related_html_is_the_body_and_images_are_reencoded() {
        let msg = format!(
            "Content-Type: multipart/related; boundary=r\n\n--r\nContent-Type: text/html\n\n<p>news <img src=\"cid:logo@x\" alt=\"ロゴ\"></p>\n--r\nContent-Type: image/png\nContent-ID: <logo@x>\nContent-Transfer-Encoding: base64\n\n{}--r--\n",
            b64(&png_with_text())
        );
        let (m, t) = run(&msg);
        assert_eq!(t, "news ロゴ\n");
        let a = action(&m, ActionKind::AttachmentDisarmed);
        assert_eq!(a.detected_type.as_deref(), Some("png"));
        assert!(a.reason.contains("re-encoded"), "{}", a.reason);
        assert_eq!(m.attachments.len(), 1);
        let k = &m.attachments[0];
        assert_eq!(k.filename, "logo.png");
        assert_eq!(k.content_type, "image/png");
        assert!(k.data.starts_with(b"\x89PNG"));
        assert!(memchr::memmem::find(&k.data, b"secret").is_none());
        assert!(crate::verify::check_attachment(&k.data).is_ok());
        assert!(crate::verify::check_attachment(&png_with_text()).is_err());
        assert_eq!(a.bytes_after, k.data.len() as u64);
    }

    #[test]
    fn attachment_limits_and_budget() {
        let png = png_with_text();
        let part = |name: &str| {
            format!(
                "--b\nContent-Type: image/png\nContent-Disposition: attachment; filename={name}\nContent-Transfer-Encoding: base64\n\n{}",
                b64(&png)
            )
        };
        let msg = format!(
            "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nbody\n{}{}{}--b--\n",
            part("a.png"),
            part("b.png"),
            part("c.png")
        );
        // Too large to buffer: removed with the reason, nothing kept.
        let cfg = SanitizeConfig {
            max_attachment_size: crate::config::ByteSize(png.len() as u64 - 1),
            ..SanitizeConfig::default()
        };
        let (m, _) = run_cfg(msg.as_bytes(), &cfg);
        assert!(m.attachments.is_empty());
        assert_eq!(
            kinds(&m),
            vec![ActionKind::AttachmentRemoved; 3],
            "{:?}",
            m.actions
        );
        assert!(m.actions[0]
            .reason
            .starts_with("larger than max_attachment_size"));
        // Room for two re-encoded images in twice the limit, not three.
        let (m0, _) = run(&msg);
        let one = m0.attachments[0].data.len() as u64;
        assert!(one <= png.len() as u64, "{one}");
        let cfg = SanitizeConfig {
            max_attachment_size: crate::config::ByteSize(png.len() as u64),
            ..SanitizeConfig::default()
        };
        let (m, _) = run_cfg(msg.as_bytes(), &cfg);
        let n = (2 * png.len() as u64 / one).min(3) as usize;
        assert_eq!(m.attachments.len(), n, "{:?}", m.actions);
        if n < 3 {
            assert!(m.actions[n]
                .reason
                .starts_with("the attachments kept from this message would exceed"));
        }
        // A deadline already passed: the converter is not run.
        let mut s = Sanitiser::new(&SanitizeConfig::default(), None);
        s.set_deadline(Instant::now());
        let mut p = Parser::new(Limits::default());
        p.feed(msg.as_bytes(), &mut s);
        let summary = p.finish(&mut s);
        let m = s.finish(summary).unwrap();
        assert!(m.attachments.is_empty());
        assert_eq!(m.actions[0].reason, "sanitising deadline reached");
    }

    #[test]
    fn encoded_blocks_and_controls_in_text() {
        let (m, t) = run("Content-Type: text/plain\n\nsee\nbegin 644 eicar.com\nM6#5/(5`E0$%06S1<4%I8-30H4%XI-T-#*3=])$5)0T%2+5-404Y$05)$+4%.\n`\nend\nbye\u{202E}txt.exe\n");
        assert_eq!(
            t,
            "see\n[mugaika: uuencode 形式のファイル「eicar.com」を削除しました]\nbyetxt.exe\n"
        );
        let b = action(&m, ActionKind::EncodedBlockRemoved);
        assert_eq!(b.name.as_deref(), Some("eicar.com"));
        assert_eq!(b.declared_type, "uuencode");
        assert_eq!(
            action(&m, ActionKind::ControlCharactersRemoved).reason,
            "1 control character(s) removed, 1 of them bidi controls"
        );
    }

    #[test]
    fn charset_detection_is_reported() {
        let (sjis, _, _) = encoding_rs::SHIFT_JIS
            .encode("文字コードの指定がないメールです。日本語の文章が続きます。");
        let mut msg = b"Subject: x\n\n".to_vec();
        msg.extend_from_slice(&sjis);
        let (m, t) = run_cfg(&msg, &SanitizeConfig::default());
        assert!(t.starts_with("文字コードの指定がない"), "{t}");
        let a = action(&m, ActionKind::CharsetDetected);
        assert_eq!(a.detected_type.as_deref(), Some("Shift_JIS"));
    }

    #[test]
    fn undecodable_text_is_reported() {
        // GB 2312 (ISO-2022-JP-2) cannot be decoded: the rest is kept, the damage reported.
        let (m, t) = run_cfg(
            b"Content-Type: text/plain; charset=iso-2022-jp\n\n\x1b$BF|\x1b(B \x1b$A\x30\x21\x1b(B x\n",
            &SanitizeConfig::default(),
        );
        assert!(t.starts_with("日 ") && t.ends_with(" x\n"), "{t:?}");
        let a = action(&m, ActionKind::DecodeErrors);
        assert_eq!(a.detected_type.as_deref(), Some("ISO-2022-JP"));
        assert!(
            a.reason.starts_with("1 character(s) could not be decoded"),
            "{}",
            a.reason
        );
        // The same in HTML: one broken byte in a long UTF-8 text is damage, not a wrong label.
        let mut html =
            "Content-Type: text/html; charset=utf-8\n\n<p>日本語の文章です。日本語の文章です。"
                .as_bytes()
                .to_vec();
        html.extend_from_slice(b"\xff end</p>\n");
        let (m, _) = run_cfg(&html, &SanitizeConfig::default());
        assert!(m.actions.iter().any(|a| a.kind == ActionKind::DecodeErrors));
        // A line break in JIS X 0208 mode is not damage (it returns to ASCII).
        let (m, t) = run_cfg(
            b"Content-Type: text/plain; charset=iso-2022-jp\n\n\x1b$BF|\n\x1b$BK\\\x1b(B\n",
            &SanitizeConfig::default(),
        );
        assert_eq!(t, "日\n本\n");
        assert!(m.actions.is_empty(), "{:?}", m.actions);
    }

    #[test]
    fn header_injection_is_neutralised_and_reported() {
        let (m, t) = run("From: =?UTF-8?B?5bqD5aCx6KqyDQpSZXBseS1UbzogYXR0YWNrZXJAZXZpbC5leGFtcGxl?= <koho@example.com>\nTo: a@city.example.lg.jp\nSubject: =?UTF-8?B?44GK55+l44KJ44GbDQpCY2M6IHZpY3RpbUBleGFtcGxlLmNvbQ==?=\n\nbody\n");
        assert_eq!(t, "body\n");
        assert_eq!(
            m.headers.subject.as_deref(),
            Some("お知らせ Bcc: victim@example.com")
        );
        let a = action(&m, ActionKind::StructureRepaired);
        assert_eq!(
            a.reason,
            "line breaks in header fields neutralised (From, Subject)"
        );
        assert_eq!(m.actions.len(), 1, "{:?}", m.actions);
        // Ordinary folded headers are not reported.
        let (m, _) = run("Subject: =?UTF-8?B?5L2P5rCR56Wo?=\n =?UTF-8?B?5L2P5rCR56Wo?=\nFrom: \"Yamada,\n\tTaro\" <t@x.example>\n\nbody\n");
        assert!(m.actions.is_empty(), "{:?}", m.actions);
    }

    #[test]
    fn suspicious_text_is_checked_strictly() {
        // Base64 of a script in a text part: kept in a well-formed message (it is text, and
        // too short to be taken for encoded data), removed where the MIME framing is in doubt
        // (the part's own flags or an ancestor's: here duplicate Content-Types).
        let script = "PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==";
        let (m, t) = run(&format!("Content-Type: text/plain\n\nhi\n{script}\n"));
        assert_eq!(t, format!("hi\n{script}\n"));
        assert!(m.actions.is_empty(), "{:?}", m.actions);
        let (m, t) = run(&format!(
            "Content-Type: text/plain\nContent-Type: text/html\n\nhi\n{script}\n"
        ));
        assert!(!t.contains(script), "{t}");
        assert!(m
            .actions
            .iter()
            .any(|a| a.kind == ActionKind::EncodedBlockRemoved));
        let (_, t) = run(&format!(
            "Content-Type: multipart/mixed; boundary=b\nContent-Type: multipart/mixed; boundary=c\n\n--b\nContent-Type: text/plain\n\nhi\n{script}\n--b--\n"
        ));
        assert!(t.starts_with("hi\n") && !t.contains(script), "{t}");
    }

    #[test]
    fn unknown_transfer_encoding_on_text_is_removed() {
        let (m, t) = run("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\nContent-Transfer-Encoding: x-weird\n\nsecret\n--b--\n");
        assert_eq!(t, "");
        assert_eq!(
            action(&m, ActionKind::PartRemoved).reason,
            "unknown transfer encoding"
        );
    }

    #[test]
    fn large_text_spills_and_large_html_streams() {
        let cfg = SanitizeConfig {
            memory_buffer: crate::config::ByteSize(1024),
            max_html_size: crate::config::ByteSize(1024),
            ..SanitizeConfig::default()
        };
        let line = "日本語のテキスト行です。0123456789\n";
        let body = line.repeat(50_000);
        let msg = format!("Content-Type: text/plain; charset=utf-8\n\n{body}");
        let (m, t) = run_cfg(msg.as_bytes(), &cfg);
        assert!(m.text.is_spilled());
        assert_eq!(t, body);
        assert_eq!(m.text.prefix(3), "日本語");

        let html = format!(
            "<html><head><style>p{{}}</style></head><body>{}<script>bad()</script><p>end <a href='https://x.example/'>x</a></p></body></html>",
            "<p>段落です。</p>\n".repeat(500)
        );
        let msg = format!("Content-Type: text/html; charset=utf-8\n\n{html}");
        let (m, t) = run_cfg(msg.as_bytes(), &cfg);
        assert!(
            t.starts_with("段落です。\n\n段落です。"),
            "{:?}",
            t.chars().take(60).collect::<String>()
        );
        assert!(
            t.ends_with("end x [https://x.example/]\n"),
            "{:?}",
            t.chars().rev().take(60).collect::<String>()
        );
        assert!(!t.contains("bad()"));
        let a = action(&m, ActionKind::HtmlConverted);
        assert!(
            a.reason.contains("too large for the converter"),
            "{}",
            a.reason
        );
        assert_eq!(
            action(&m, ActionKind::LinksRewritten).reason,
            "1 link(s) rewritten (links = show)"
        );
    }

    #[test]
    fn output_does_not_depend_on_chunking() {
        let msg = format!(
            "Subject: =?UTF-8?B?5Lya6K2w?=\nContent-Type: multipart/mixed; boundary=o\n\n--o\nContent-Type: multipart/alternative; boundary=a\n\n--a\nContent-Type: text/plain; charset=iso-2022-jp\n\n\x1b$B$3$s$K$A$O\x1b(B\n--a\nContent-Type: text/html\n\n<p>x</p>\n--a--\n--o\nContent-Type: message/rfc822\n\nSubject: inner\n\ninner body https://example.jp/\n--o\nContent-Type: application/zip\nContent-Transfer-Encoding: base64\n\n{}--o--\n",
            b64(&zip_bytes())
        );
        let whole = run(&msg);
        for size in [1, 2, 7, 64] {
            let mut s = Sanitiser::new(&SanitizeConfig::default(), None);
            let mut p = Parser::new(Limits::default());
            for c in msg.as_bytes().chunks(size) {
                p.feed(c, &mut s);
            }
            let summary = p.finish(&mut s);
            let mut m = s.finish(summary).unwrap();
            assert_eq!(m.text.to_string_lossy().unwrap(), whole.1, "chunk {size}");
            assert_eq!(m.actions, whole.0.actions, "chunk {size}");
        }
        assert!(
            whole.1.starts_with("こんにちは\n\n----------"),
            "{}",
            whole.1
        );
    }

    fn hand_part(index: usize, parent: Option<usize>, t: &str) -> Part {
        Part {
            index,
            parent,
            depth: parent.map_or(0, |_| 1),
            headers: Vec::new(),
            content_type: crate::mime::ContentType {
                mime_type: t.into(),
                params: Vec::new(),
            },
            encoding: crate::mime::Encoding::SevenBit,
            disposition: None,
            filename: None,
            content_id: None,
            flags: Flags::empty(),
        }
    }

    #[test]
    fn odd_event_orders_do_not_panic() {
        let cfg = SanitizeConfig::default();
        let mut s = Sanitiser::new(&cfg, None);
        s.body(b"before any part");
        s.part_end(&PartEnd {
            index: 7,
            ..PartEnd::default()
        });
        s.part_start(&hand_part(0, None, "multipart/mixed"));
        s.body(b"container body is ignored");
        s.part_start(&hand_part(1, Some(0), "text/plain"));
        s.body(b"one\n");
        s.part_start(&hand_part(2, Some(1), "text/plain"));
        s.body(b"two\n");
        // Closing the outer part first closes the inner ones.
        s.part_end(&PartEnd {
            index: 0,
            ..PartEnd::default()
        });
        s.part_end(&PartEnd {
            index: 1,
            ..PartEnd::default()
        });
        s.part_start(&hand_part(3, None, "text/plain"));
        s.body(b"after the root\n");
        let mut m = s.finish(Summary::default()).unwrap();
        let t = m.text.to_string_lossy().unwrap();
        assert!(t.contains("one"), "{t:?} {:?}", m.actions);
        // Never closed at all: finish closes it.
        let mut s = Sanitiser::new(&cfg, None);
        s.part_start(&hand_part(0, None, "multipart/alternative"));
        s.part_start(&hand_part(1, Some(0), "text/plain"));
        s.body(b"open\n");
        let mut m = s.finish(Summary::default()).unwrap();
        assert_eq!(m.text.to_string_lossy().unwrap(), "open\n");
    }

    #[test]
    fn alternative_keeps_plain_text() {
        let (m, t) = run("From: a@b\nSubject: hi\nContent-Type: multipart/alternative; boundary=b\n\n--b\nContent-Type: text/plain\n\nplain\n--b\nContent-Type: text/html\n\n<p>html</p>\n--b--\n");
        assert_eq!(t, "plain\n");
        assert_eq!(kinds(&m), vec![ActionKind::AlternativeReduced]);
        assert_eq!(m.actions[0].reason, "kept text/plain, dropped text/html");
        assert_eq!(m.headers.subject.as_deref(), Some("hi"));
    }
}
