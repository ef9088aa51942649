//! One message through the core: parse → sanitise → rebuild → verify, written to a file.
//!
//! Both the CLI and the SMTP server call [`sanitize_file`] / [`sanitize_reader`]. The clean
//! message is written to `output` (created or truncated), verified by re-parsing, and only then
//! reported as a success; on any error the output file is removed, so a caller can never pick
//! up a half-written or unverified message. The caller decides durability (fsync, rename).
//!
//! The input is read in 64 KiB chunks and pushed through the streaming parser into the
//! sanitiser; nothing holds the whole message. The run has a wall-clock budget
//! (`sanitize.timeout`), checked between chunks and before rebuild, and sits inside a panic
//! boundary: a bug in any converter becomes [`SanitizeError::Internal`], never a crashed relay.
//!
//! What is refused ([`SanitizeError::Rejected`]) is deliberately little, because a refused
//! message is a lost message for the recipient: an empty input, and an input whose beginning
//! is not a header block at all (after an optional mbox `From ` line, a BOM and blank lines,
//! the first line must look like `Name: value`, indentation tolerated). Everything else that parses badly is
//! sanitised conservatively instead.
//!
//! [`notice_only`] is the fallback for `on_error = "quarantine"`: a clean message with the
//! header fields that can still be read and only a notice saying the message could not be
//! sanitised and where its original is kept.

use std::fs::File;
use std::io::{self, Read};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{Config, Language};
use crate::mime::{Limits, Parser};
use crate::rebuild::{self, NoticeSource, RebuildOptions};
use crate::sanitise::{Action, ActionKind, CleanModel, Sanitiser, TextBuffer, TopHeaders};
use crate::verify::{self, Expectation};

/// Size of the chunks fed to the parser.
pub const CHUNK: usize = 64 << 10;
/// Characters of the model text the verifier looks for in the clean message.
const PREFIX_CHARS: usize = 2048;

/// Per-message context supplied by the caller.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// A complete `Received:` field value of ours (without the name), prepended by rebuild.
    pub received: Option<String>,
    /// The quarantine id, when the original is kept (header and notice).
    pub quarantine_id: Option<String>,
    /// Where to spill large text (defaults to `sanitize.temp_dir`, then the system temp dir).
    pub temp_dir: Option<PathBuf>,
    /// The `[sanitize]` settings of the `[[policy]]` rule that applies, used instead of the
    /// configuration's own (see [`crate::policy`]).
    pub sanitize: Option<crate::config::SanitizeConfig>,
    /// The name of that rule (report and audit record); `None` for the global settings.
    pub policy: Option<String>,
    /// The sender is a first contact and the first-contact rule applies (the notice says so).
    pub first_contact: bool,
}

impl Context {
    /// `cfg`, or `cfg` with the rule's `[sanitize]` settings when one applies.
    fn config<'a>(&self, cfg: &'a Config) -> std::borrow::Cow<'a, Config> {
        match &self.sanitize {
            Some(s) => std::borrow::Cow::Owned(cfg.with_sanitize(s.clone())),
            None => std::borrow::Cow::Borrowed(cfg),
        }
    }
}

/// What was done, for the JSON report and the audit record.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// `sanitized` (something changed), `clean` (only re-encoded) or `notice-only`.
    pub status: String,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    pub input_bytes: u64,
    pub output_bytes: u64,
    pub parse_flags: Vec<&'static str>,
    pub actions: Vec<Action>,
    /// Charset of the text part as written (`utf-8` or `iso-2022-jp`).
    pub output_charset: String,
    /// Number of attachments delivered.
    pub attachments: usize,
    /// The `[[policy]]` rule applied, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The first-contact rule applied.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub first_contact: bool,
}

/// Why no clean message was written.
#[derive(Debug, thiserror::Error)]
pub enum SanitizeError {
    /// Policy refuses the message (CLI exit 65, SMTP 554 5.6.0).
    #[error("rejected: {0}")]
    Rejected(String),
    /// Something went wrong on our side, including a verifier violation (exit 75, SMTP 451).
    #[error("internal error: {0}")]
    Internal(String),
    /// The sanitising deadline (`sanitize.timeout`) passed (exit 75, SMTP 451).
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
}

/// Sanitises the message in `input` into `output`.
pub fn sanitize_file(
    input: &Path,
    cfg: &Config,
    ctx: &Context,
    output: &Path,
) -> Result<Report, SanitizeError> {
    let f = std::fs::File::open(input)
        .map_err(|e| SanitizeError::Internal(format!("cannot open {}: {e}", input.display())))?;
    sanitize_reader(f, cfg, ctx, output)
}

/// Sanitises the message read from `input` into `output`.
pub fn sanitize_reader<R: Read>(
    input: R,
    cfg: &Config,
    ctx: &Context,
    output: &Path,
) -> Result<Report, SanitizeError> {
    let cfg = &*ctx.config(cfg);
    let deadline = Deadline::new(cfg.sanitize.timeout.0);
    guarded(output, || run(input, cfg, ctx, output, &deadline))
}

/// Runs `f` inside the panic boundary; removes `output` unless it succeeded.
fn guarded(
    output: &Path,
    f: impl FnOnce() -> Result<Report, SanitizeError>,
) -> Result<Report, SanitizeError> {
    let result = match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => Err(SanitizeError::Internal(format!(
            "panic while sanitising: {}",
            panic_message(payload.as_ref())
        ))),
    };
    if result.is_err() {
        // Never leave a half-written or unverified message behind.
        let _ = std::fs::remove_file(output);
    }
    result
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// The wall-clock budget of one message.
struct Deadline {
    start: Instant,
    limit: Duration,
}

impl Deadline {
    fn new(limit: Duration) -> Deadline {
        Deadline {
            start: Instant::now(),
            limit,
        }
    }
    fn check(&self) -> Result<(), SanitizeError> {
        if self.start.elapsed() > self.limit {
            Err(SanitizeError::Timeout(self.limit))
        } else {
            Ok(())
        }
    }
}

/// Reads until `buf` is full or the input ends; returns the number of octets read.
fn read_chunk<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn run<R: Read>(
    mut input: R,
    cfg: &Config,
    ctx: &Context,
    output: &Path,
    deadline: &Deadline,
) -> Result<Report, SanitizeError> {
    let mut buf = vec![0u8; CHUNK];
    let n = read_chunk(&mut input, &mut buf)
        .map_err(|e| SanitizeError::Internal(format!("reading the message: {e}")))?;
    refuse_if_not_mail(&buf[..n])?;
    let temp_dir = ctx
        .temp_dir
        .clone()
        .or_else(|| cfg.sanitize.temp_dir.clone());
    let mut model = sanitise_stream(&mut buf, n, input, cfg, temp_dir, deadline)?;
    deadline.check()?;
    write_and_verify(&mut model, cfg, ctx, output, None)
}

/// Parser → sanitiser over the whole input: `buf[..n]` is the first chunk, the rest is read
/// from `input` into `buf`.
fn sanitise_stream<R: Read>(
    buf: &mut [u8],
    n: usize,
    mut input: R,
    cfg: &Config,
    temp_dir: Option<PathBuf>,
    deadline: &Deadline,
) -> Result<CleanModel, SanitizeError> {
    let mut parser = Parser::new(Limits::from(&cfg.mime));
    let mut sanitiser = Sanitiser::new(&cfg.sanitize, temp_dir);
    // Attachment disarm shares the message's budget: a converter still running at the
    // deadline gives up, and its attachment is removed with that reason.
    if let Some(at) = deadline.start.checked_add(deadline.limit) {
        sanitiser.set_deadline(at);
    }
    let mut n = n;
    while n > 0 {
        parser.feed(&buf[..n], &mut sanitiser);
        deadline.check()?;
        n = read_chunk(&mut input, buf)
            .map_err(|e| SanitizeError::Internal(format!("reading the message: {e}")))?;
    }
    let summary = parser.finish(&mut sanitiser);
    sanitiser
        .finish(summary)
        .map_err(|e| SanitizeError::Internal(format!("sanitise: {e}")))
}

/// The policy refusals: an empty input, or one that does not begin with a header block.
fn refuse_if_not_mail(head: &[u8]) -> Result<(), SanitizeError> {
    if head.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(SanitizeError::Rejected("empty message".into()));
    }
    let mut rest = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let mut first = true;
    loop {
        let (line, next) = split_line(rest);
        if first && line.starts_with(b"From ") {
            first = false;
            rest = next;
            continue;
        }
        first = false;
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            if next.is_empty() {
                return Err(SanitizeError::Rejected("empty message".into()));
            }
            rest = next;
            continue;
        }
        // A first field indented by mistake (" From: ...") is still a header block.
        let line = &line[line.iter().take_while(|b| b.is_ascii_whitespace()).count()..];
        return if is_field_line(line) {
            Ok(())
        } else {
            Err(SanitizeError::Rejected(
                "no header block: the message does not begin with header fields".into(),
            ))
        };
    }
}

/// The first line of `s` (without its end: CRLF, LF or CR) and what follows it.
fn split_line(s: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr2(b'\r', b'\n', s) {
        None => (s, &[]),
        Some(i) => {
            let skip = if s[i] == b'\r' && s.get(i + 1) == Some(&b'\n') {
                2
            } else {
                1
            };
            (&s[..i], &s[i + skip..])
        }
    }
}

/// `Name:` (RFC 5322 field name: printable ASCII but the colon, whitespace allowed before the
/// colon as in the obsolete syntax).
fn is_field_line(line: &[u8]) -> bool {
    let name_len = line
        .iter()
        .take_while(|&&b| (33..=126).contains(&b) && b != b':')
        .count();
    if name_len == 0 {
        return false;
    }
    let rest = &line[name_len..];
    let rest = &rest[rest
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count()..];
    rest.first() == Some(&b':')
}

/// Rebuilds `model` into `output` and verifies the file; the report on success.
fn write_and_verify(
    model: &mut CleanModel,
    cfg: &Config,
    ctx: &Context,
    output: &Path,
    notice: Option<String>,
) -> Result<Report, SanitizeError> {
    let notice_only = notice.is_some();
    if ctx.first_contact && !notice_only {
        // First in the notice: it explains the stricter handling of everything below.
        model.actions.insert(
            0,
            Action {
                part: 0,
                kind: ActionKind::FirstContact,
                name: None,
                declared_type: String::new(),
                detected_type: None,
                reason: format!(
                    "first contact: policy rule {:?} applied",
                    ctx.policy.as_deref().unwrap_or("")
                ),
                bytes_before: 0,
                bytes_after: 0,
            },
        );
    }
    let opts = RebuildOptions {
        charset: cfg.sanitize.output_charset,
        subject_tag: cfg.sanitize.subject_tag.clone(),
        notice: match notice {
            Some(text) => NoticeSource::Text(text),
            None => NoticeSource::Render {
                render: crate::sanitise::notice::render,
                lang: cfg.sanitize.notice_language,
            },
        },
        received: ctx.received.clone(),
        quarantine_id: ctx.quarantine_id.clone(),
        hostname: cfg.server.hostname.clone(),
        status: notice_only.then(|| "notice-only".to_string()),
        now: None,
    };
    let prefix = model.text.prefix(PREFIX_CHARS).to_string();
    let file = File::create(output)
        .map_err(|e| SanitizeError::Internal(format!("cannot create {}: {e}", output.display())))?;
    let info = rebuild::write_clean(model, &opts, &file)
        .map_err(|e| SanitizeError::Internal(format!("rebuild: {e}")))?;
    drop(file);
    // The text (up to `sanitize.memory_buffer` in memory, or a spill file) is not needed any
    // more: free it before the verifier reads the message back.
    model.text = TextBuffer::new(0, None);
    // The same for the attachments' octets: the verifier re-reads them from the file.
    for a in &mut model.attachments {
        a.data = Vec::new();
    }
    let expect = Expectation {
        text_prefix: prefix,
        attachments: model.attachments.len(),
        max_attachment_bytes: cfg
            .sanitize
            .max_attachment_size
            .0
            .saturating_mul(2)
            .max(1 << 20),
        ..Expectation::default()
    };
    verify::verify_file(output, &expect)
        .map_err(|v| SanitizeError::Internal(format!("clean message failed verification: {v}")))?;
    let status = if notice_only {
        "notice-only"
    } else if model.actions.is_empty() {
        "clean"
    } else {
        "sanitized"
    };
    Ok(Report {
        status: status.to_string(),
        subject: model.headers.subject.clone(),
        message_id: Some(info.message_id),
        input_bytes: model.parse.bytes,
        output_bytes: info.bytes_written,
        parse_flags: model.parse.flags.names(),
        actions: model.actions.clone(),
        output_charset: match info.charset {
            crate::config::OutputCharset::Utf8 => "utf-8".into(),
            crate::config::OutputCharset::Iso2022Jp => "iso-2022-jp".into(),
        },
        attachments: model.attachments.len(),
        policy: ctx.policy.clone(),
        first_contact: ctx.first_contact,
    })
}

/// For `on_error = "quarantine"`: writes a clean message carrying the header fields that can
/// still be read (best effort: none if even that fails) and only a notice that the message
/// could not be sanitised and that its original is held under the quarantine id.
pub fn notice_only(
    input: &Path,
    cfg: &Config,
    ctx: &Context,
    reason: &str,
    output: &Path,
) -> Result<Report, SanitizeError> {
    let cfg = &*ctx.config(cfg);
    guarded(output, || {
        let (headers, input_bytes) =
            panic::catch_unwind(AssertUnwindSafe(|| read_headers_best_effort(input, cfg)))
                .unwrap_or_default();
        let reason = safe_reason(reason);
        let notice = notice_only_text(
            cfg.sanitize.notice_language,
            ctx.quarantine_id.as_deref(),
            &reason,
        );
        let mut model = CleanModel {
            headers,
            text: TextBuffer::new(1 << 20, None),
            attachments: Vec::new(),
            actions: Vec::new(),
            parse: crate::mime::Summary {
                bytes: input_bytes,
                ..Default::default()
            },
        };
        let mut report = write_and_verify(&mut model, cfg, ctx, output, Some(notice))?;
        report.actions.push(Action {
            part: 0,
            kind: ActionKind::PartRemoved,
            name: None,
            declared_type: String::new(),
            detected_type: None,
            reason: format!("message could not be sanitised ({reason}); notice only"),
            bytes_before: input_bytes,
            bytes_after: 0,
        });
        Ok(report)
    })
}

/// The reason as shown to the recipient: printable ASCII only, at most 200 characters.
fn safe_reason(reason: &str) -> String {
    let s: String = reason
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { ' ' })
        .collect();
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    s.chars().take(200).collect()
}

/// The notice of a notice-only message (plain JIS X 0208 and ASCII, so it survives
/// ISO-2022-JP output).
pub fn notice_only_text(lang: Language, quarantine_id: Option<&str>, reason: &str) -> String {
    let mut s = String::new();
    match lang {
        Language::Ja => {
            s.push_str("【mugaika 無害化処理のお知らせ】\n");
            s.push_str(
                "このメールは無害化処理を完了できなかったため、本文と添付ファイルは配信されていません。\n",
            );
            if let Some(q) = quarantine_id {
                s.push_str(&format!(
                    "原本は隔離して保管しています（隔離ID: {q}）。必要な場合はシステム管理者にお問い合わせください。\n"
                ));
            }
            if !reason.is_empty() {
                s.push_str(&format!("理由: {reason}\n"));
            }
        }
        Language::En => {
            s.push_str("[mugaika sanitisation notice]\n");
            s.push_str(
                "This message could not be sanitised, so its text and attachments were not delivered.\n",
            );
            if let Some(q) = quarantine_id {
                s.push_str(&format!(
                    "The original is held in quarantine (quarantine id: {q}). Ask your mail administrator if you need it.\n"
                ));
            }
            if !reason.is_empty() {
                s.push_str(&format!("Reason: {reason}\n"));
            }
        }
    }
    s
}

/// The top-level header fields of `input`, from the header block alone (bounded by
/// `mime.max_header_size`), decoded with the header functions directly rather than through the
/// parser and sanitiser (one of which may be what failed); empty when nothing can be read.
fn read_headers_best_effort(input: &Path, cfg: &Config) -> (TopHeaders, u64) {
    let size = std::fs::metadata(input).map(|m| m.len()).unwrap_or(0);
    let Ok(f) = File::open(input) else {
        return (TopHeaders::default(), size);
    };
    let limit = cfg.mime.max_header_size.0.saturating_add(2);
    let mut head = Vec::new();
    if f.take(limit).read_to_end(&mut head).is_err() {
        return (TopHeaders::default(), size);
    }
    (top_headers_from_block(&head), size)
}

/// The fields of a header block (up to its empty line; CRLF, LF or CR line ends; folding
/// undone), first occurrence of each field winning, decoded into [`TopHeaders`].
fn top_headers_from_block(block: &[u8]) -> TopHeaders {
    use crate::mime::header::{decode_text, parse_addresses, parse_msg_ids};
    let mut fields: Vec<(String, Vec<u8>)> = Vec::new();
    let mut rest = block.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(block);
    let mut first = true;
    while !rest.is_empty() {
        let (line, next) = split_line(rest);
        rest = next;
        if first && line.starts_with(b"From ") {
            first = false;
            continue;
        }
        first = false;
        if line.is_empty() {
            break;
        }
        if line.starts_with(b" ") || line.starts_with(b"\t") {
            if let Some((_, v)) = fields.last_mut() {
                v.extend_from_slice(line);
            }
            continue;
        }
        if let Some(i) = memchr::memchr(b':', line) {
            let name = String::from_utf8_lossy(&line[..i])
                .trim()
                .to_ascii_lowercase();
            fields.push((name, line[i + 1..].to_vec()));
        }
    }
    let get = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    };
    let addrs = |name: &str| get(name).map(parse_addresses).unwrap_or_default();
    let ids = |name: &str| get(name).map(parse_msg_ids).unwrap_or_default();
    TopHeaders {
        from: addrs("from"),
        sender: addrs("sender"),
        reply_to: addrs("reply-to"),
        to: addrs("to"),
        cc: addrs("cc"),
        subject: get("subject").map(decode_text),
        date: get("date")
            .and_then(|d| std::str::from_utf8(d).ok())
            .map(str::trim)
            .filter(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_graphic() || c == ' '))
            .map(str::to_string),
        message_id: ids("message-id").into_iter().next(),
        in_reply_to: ids("in-reply-to"),
        references: ids("references"),
    }
}
