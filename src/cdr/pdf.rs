//! PDF disarm: load a PDF with bounded work, strip every active feature (JavaScript, automatic
//! and open actions, launch/submit/import/remote actions, multimedia, embedded files, XFA,
//! links by policy), write it again, and accept the result only when a fresh load of the
//! written file finds nothing active, in its objects or in any decoded stream.
//!
//! lopdf parses the PDF, but it is not trusted with hostile input: a few kilobytes can make it
//! hold gigabytes (an array of a million `0 ` tokens costs ~240 MB of `Object`s; a stream
//! whose `/Length` points into the rest of the file is copied once per object that does so;
//! an object stream is inflated and parsed whole). So the load is fenced:
//!
//! - a linear pre-scan counts the tokens that could become objects and refuses files with too
//!   many before lopdf sees them;
//! - the cross-reference table is rebuilt by scanning (`force_reconstruct`), so each object
//!   header is parsed once, whatever a forged table claims;
//! - indirect `/Length` values and `/Encrypt` are renamed in a private copy of the bytes, so
//!   lopdf neither re-parses the length objects once per stream nor takes its unfenced
//!   encrypted-file path; both are restored after the load, stream data is then copied only
//!   when an `endstream` stands where the length says, and decryption (empty user password
//!   only) is done here;
//! - every object lopdf loads passes a filter that charges its size to a budget and renames
//!   object streams so that lopdf does not expand them: they are expanded here, member by
//!   member from disjoint slices, after their size has been charged. Past the budget, the
//!   object count or the deadline, the filter ends the load by unwinding with the reason
//!   (`resume_unwind`, caught in this module; the panic hook is not run).
//!
//! Nesting depth is bounded by lopdf's parser (100 levels); every walk here is iterative anyway.
//! The writer emits no object streams, so the re-check sees every object in the clear.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::time::Instant;

use lopdf::{Dictionary, Document, LoadOptions, Object, ObjectId, ObjectStream, Stream};

use super::raster::{self, RasterError};
use super::{Disarmed, Limits, Policy, Verdict};
use crate::config::{AttachmentAction, LinkPolicy};

/// Tokens (numbers, names, strings, arrays, dictionaries) a file may hold before lopdf parses
/// it. Each costs an `Object` (120 octets) or more once parsed, so this bounds the memory of
/// the largest single object lopdf can build before the budget filter sees it (~250 MB for a
/// single array of small numbers, the worst case). Compressed binary data (images, fonts)
/// yields about one false token per 60 octets, so a 25 MiB scan-heavy PDF stays well below.
const MAX_TOKENS: u64 = 1_000_000;
/// Objects one document may hold (all revisions and object-stream members together).
const MAX_OBJECTS: usize = 500_000;
/// Ceiling of the memory charged for the loaded objects, whatever the file size.
const MAX_BUDGET: u64 = 256 << 20;
/// Largest cross-reference or object stream inflated while loading.
const MAX_STRUCTURE_INFLATE: usize = 8 << 20;
/// A stream may always inflate this much; beyond it the ratio limit applies.
const STREAM_INFLATE_FLOOR: u64 = 64 << 20;
/// And never more than this.
const STREAM_INFLATE_CEILING: u64 = 256 << 20;
/// Largest page content decoded for text extraction.
const MAX_PAGE_CONTENT: usize = 16 << 20;
/// Largest ToUnicode map (source codes) handed to lopdf's text extraction, which expands
/// every range code by code.
const MAX_TOUNICODE_CODES: u64 = 1 << 18;
/// Largest extracted text.
const MAX_TEXT: usize = 16 << 20;
/// Content tokens parsed for text extraction, all pages together (a few seconds of work).
const MAX_TEXT_TOKENS: u64 = 20_000_000;
/// Memory charged per parsed object node.
const NODE: u64 = std::mem::size_of::<Object>() as u64;

/// Renamed keys and types; same length as the original tokens or padded with `_`.
const HELD_LENGTH: &[u8] = b"MgkLen";
const HELD_ENCRYPT: &[u8] = b"MgkEncr";
const HELD_OBJSTM: &[u8] = b"MugaikaHeldObjStm";

/// Names that must not survive anywhere in the output, also searched for in the bytes of the
/// written file and of every decoded content stream.
const FORBIDDEN_NAMES: &[&[u8]] = &[
    b"JavaScript",
    b"JS",
    b"Launch",
    b"EmbeddedFile",
    b"EmbeddedFiles",
    b"OpenAction",
];

/// Every action type of ISO 32000-2 (and ECMAScript, an alias some producers use). A dictionary
/// whose `/S` is one of these is taken for an action wherever it stands.
const ACTION_TYPES: &[&[u8]] = &[
    b"GoTo",
    b"GoToR",
    b"GoToE",
    b"GoToDp",
    b"Launch",
    b"Thread",
    b"URI",
    b"Sound",
    b"Movie",
    b"Hide",
    b"Named",
    b"SubmitForm",
    b"ResetForm",
    b"ImportData",
    b"JavaScript",
    b"ECMAScript",
    b"SetOCGState",
    b"Rendition",
    b"Trans",
    b"GoTo3DView",
    b"RichMediaExecute",
];

/// Named actions that only turn pages; any other (Print, SaveAs, menu items) is removed.
const SAFE_NAMED: &[&[u8]] = &[b"NextPage", b"PrevPage", b"FirstPage", b"LastPage"];

/// Annotation subtypes removed whole.
const FORBIDDEN_ANNOTATIONS: &[&[u8]] = &[
    b"FileAttachment",
    b"Sound",
    b"Movie",
    b"Screen",
    b"RichMedia",
    b"3D",
];

/// Why a PDF was not delivered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PdfError {
    #[error("encrypted PDF (it needs a password to open, so it cannot be inspected)")]
    Encrypted,
    #[error("PDF too complex to disarm safely: {0}")]
    TooComplex(String),
    #[error("unreadable PDF: {0}")]
    Unreadable(String),
    #[error("active content still present after disarm: {0}")]
    Survivor(String),
    #[error("sanitising deadline reached")]
    Deadline,
}

/// Disarms, rasterises or extracts the text of a PDF per `sanitize.attachments.pdf`.
///
/// `rasterize` renders in a worker process ([`super::raster`]); when that is not possible
/// (no worker, too many pages, renderer failure or timeout) the PDF is disarmed instead and
/// the first change line says why.
pub fn disarm(data: &[u8], policy: &Policy) -> Verdict {
    let outcome = match policy.attachments.pdf {
        AttachmentAction::Text => to_text(data, &policy.limits),
        AttachmentAction::Rasterize => rasterize(
            data,
            policy.links,
            &policy.limits,
            raster::Options::from_limits(&policy.limits),
        ),
        _ => disarm_pdf(data, policy.links, &policy.limits),
    };
    match outcome {
        Ok(d) => Verdict::Keep(d),
        Err(e) => Verdict::Remove {
            reason: format!("pdf: {e}"),
        },
    }
}

/// Rasterises with `opts` (see [`super::raster`]): the PDF is disarmed first and the renderer
/// is given the disarmed file, so that it never parses what the fenced loader refused nor sees
/// a script, and encryption with an empty password is already undone. When rasterising is not
/// possible the disarmed PDF is delivered, with the reason as its first change line; when the
/// disarm itself fails, the PDF is removed as under `pdf = "disarm"`. The image-only output
/// passes [`check_clean`] like any disarmed PDF (fail closed: never the input as it came).
pub fn rasterize(
    data: &[u8],
    links: LinkPolicy,
    limits: &Limits,
    opts: Result<raster::Options, RasterError>,
) -> Result<Disarmed, PdfError> {
    let mut disarmed = disarm_pdf(data, links, limits)?;
    let instead = |mut d: Disarmed, why: String| {
        d.changes.insert(0, why);
        Ok(d)
    };
    let done = match opts.and_then(|o| raster::rasterize(&disarmed.data, &o)) {
        Ok(r) => r,
        Err(RasterError::Deadline) => return Err(PdfError::Deadline),
        Err(RasterError::TooManyPages { pages, max }) => {
            return instead(
                disarmed,
                format!(
                    "not rasterised ({pages} pages, more than max_rasterize_pages ({max})); \
                 disarmed instead"
                ),
            )
        }
        Err(e) => return instead(disarmed, format!("not rasterised ({e}); disarmed instead")),
    };
    if let Err(e) = check_clean(&done.data, links, limits) {
        return match e {
            PdfError::Deadline => Err(e),
            e => instead(
                disarmed,
                format!("rasterised output refused ({e}); disarmed instead"),
            ),
        };
    }
    let mut changes = vec![format!(
        "rasterised: {} page{} redrawn as images; text, links, forms and scripts removed",
        done.pages,
        if done.pages == 1 { "" } else { "s" }
    )];
    if done.reduced > 0 {
        changes.push(format!(
            "{} oversized page(s) rendered at a lower resolution",
            done.reduced
        ));
    }
    // What the disarm found (scripts, embedded files...) is worth telling too.
    changes.append(&mut disarmed.changes);
    Ok(Disarmed {
        data: done.data,
        content_type: "application/pdf".into(),
        extension: None,
        changes,
        extra: Vec::new(),
    })
}

/// Removes every active feature and returns the rewritten PDF, checked by [`check_clean`].
pub fn disarm_pdf(data: &[u8], links: LinkPolicy, limits: &Limits) -> Result<Disarmed, PdfError> {
    let Loaded { mut doc, decrypted } = load(data, limits, Source::Input)?;
    let mut cleaner = Cleaner::new(links, limits);
    cleaner.run(&mut doc)?;
    // A file without a page tree shows nothing in any reader: not worth delivering broken.
    let pages = doc
        .catalog()
        .and_then(|c| c.get_deref(b"Pages", &doc))
        .and_then(Object::as_dict);
    if pages.is_err() {
        return Err(PdfError::Unreadable(
            "no document catalog with pages".into(),
        ));
    }
    let mut changes = Vec::new();
    if decrypted {
        changes.push("encryption removed (it opened without a password)".to_string());
    }
    changes.extend(cleaner.tally.phrases());
    let mut out = Vec::with_capacity(data.len());
    doc.save_to(&mut out)
        .map_err(|e| PdfError::Unreadable(format!("could not be written again: {e}")))?;
    drop(doc);
    check_clean(&out, links, limits)?;
    Ok(Disarmed {
        data: out,
        content_type: "application/pdf".into(),
        extension: None,
        changes,
        extra: Vec::new(),
    })
}

/// Loads `data` and reports the first active feature found, in the objects, in the bytes of
/// the file, or in a decoded stream, or a stream that inflates beyond the limits. Used on
/// disarm output; usable by the verifier on any PDF about to be delivered.
pub fn check_clean(data: &[u8], links: LinkPolicy, limits: &Limits) -> Result<(), PdfError> {
    if let Some(found) = find_in_file_bytes(data) {
        return Err(PdfError::Survivor(found));
    }
    let Loaded { doc, decrypted } = load(data, limits, Source::Output)?;
    if decrypted || doc.trailer.has(b"Encrypt") {
        return Err(PdfError::Survivor("an encryption dictionary".into()));
    }
    let mut inflated: u64 = 0;
    let mut violation = scan_object(None, &Object::Dictionary(doc.trailer.clone()), links);
    for (id, object) in &doc.objects {
        if violation.is_some() {
            break;
        }
        if limits.expired() {
            return Err(PdfError::Deadline);
        }
        violation = scan_object(Some(*id), object, links);
        if violation.is_none() {
            if let Object::Stream(stream) = object {
                violation = check_stream(*id, stream, limits, &mut inflated)?;
            }
        }
    }
    match violation {
        Some(v) => Err(PdfError::Survivor(v)),
        None => Ok(()),
    }
}

/// Extracts the text of every page into a UTF-8 text attachment.
pub fn to_text(data: &[u8], limits: &Limits) -> Result<Disarmed, PdfError> {
    let Loaded { mut doc, .. } = load(data, limits, Source::Input)?;
    tame_tounicode_maps(&mut doc, limits)?;
    let pages = doc.get_pages();
    let mut text = String::new();
    let mut skipped = 0usize;
    let mut work = 0u64;
    for (number, page) in &pages {
        if limits.expired() {
            return Err(PdfError::Deadline);
        }
        // lopdf parses the whole content of a page into operations (an object per token, and
        // more): measure it first; the memory is given back after each page.
        let mut size = 0usize;
        let mut tokens = 0u64;
        for id in doc.get_page_contents(*page) {
            if let Ok(Object::Stream(s)) = doc.get_object(id) {
                match s.get_plain_content_with_limit(MAX_PAGE_CONTENT.saturating_sub(size)) {
                    Ok(c) => {
                        size += c.len();
                        tokens += count_tokens(&c);
                    }
                    Err(_) => size = MAX_PAGE_CONTENT,
                }
            }
        }
        work += tokens;
        if work > MAX_TEXT_TOKENS {
            skipped += pages.len() + 1 - (*number as usize).min(pages.len());
            break;
        }
        if size >= MAX_PAGE_CONTENT || tokens * NODE * 2 > MAX_BUDGET {
            skipped += 1;
            continue;
        }
        match doc.extract_text_with_limit(&[*number], MAX_PAGE_CONTENT) {
            Ok(t) => {
                if text.len() + t.len() > MAX_TEXT {
                    skipped += pages.len() + 1 - (*number as usize).min(pages.len());
                    break;
                }
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(&t);
            }
            Err(_) => skipped += 1,
        }
    }
    let text = plain_text(&text);
    let mut changes = vec![format!(
        "converted to plain text ({} page{}); layout, images and active content dropped",
        pages.len(),
        if pages.len() == 1 { "" } else { "s" }
    )];
    if skipped > 0 {
        changes.push(format!("text of {skipped} page(s) could not be extracted"));
    }
    Ok(Disarmed {
        data: text.into_bytes(),
        content_type: "text/plain; charset=utf-8".into(),
        extension: Some("txt".into()),
        changes,
        extra: Vec::new(),
    })
}

/// Keeps text, line breaks and tabs; drops other control characters; CRLF and CR become LF.
fn plain_text(text: &str) -> String {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut out: String = text
        .chars()
        .filter(|&c| c == '\n' || c == '\t' || !c.is_control())
        .collect();
    if !out.ends_with('\n') && !out.is_empty() {
        out.push('\n');
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Bounded loading
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    /// Untrusted input: token limit, cross-reference table rebuilt by scanning.
    Input,
    /// Our own output: its cross-reference table is exact, and is what readers will use.
    Output,
}

struct Loaded {
    doc: Document,
    decrypted: bool,
}

/// Memory charged for the objects of one load, with the object count and the deadline.
struct Meter {
    used: u64,
    max: u64,
    objects: usize,
    deadline: Option<Instant>,
}

impl Meter {
    fn new(limits: &Limits, size: usize) -> Meter {
        Meter {
            used: 0,
            max: (64 << 20).max(size as u64 * 4).min(MAX_BUDGET),
            objects: 0,
            deadline: limits.deadline,
        }
    }

    fn charge(&mut self, weight: u64, objects: usize) -> Result<(), PdfError> {
        self.used = self.used.saturating_add(weight);
        self.objects = self.objects.saturating_add(objects);
        if self.used > self.max {
            return Err(PdfError::TooComplex(format!(
                "its objects need more than {} MiB",
                self.max >> 20
            )));
        }
        if self.objects > MAX_OBJECTS {
            return Err(PdfError::TooComplex(format!(
                "more than {MAX_OBJECTS} objects"
            )));
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(PdfError::Deadline);
        }
        Ok(())
    }
}

thread_local! {
    /// The meter of the load running on this thread, for [`charge_filter`] (lopdf takes a
    /// plain `fn` as filter, so the state cannot be captured).
    static METER: RefCell<Option<Meter>> = const { RefCell::new(None) };
}

/// Installs a meter for the duration of one load and takes it back, even on unwind.
struct MeterGuard;

impl MeterGuard {
    fn install(meter: Meter) -> MeterGuard {
        METER.with(|m| *m.borrow_mut() = Some(meter));
        MeterGuard
    }

    fn take(self) -> Option<Meter> {
        METER.with(|m| m.borrow_mut().take())
    }
}

impl Drop for MeterGuard {
    fn drop(&mut self) {
        METER.with(|m| *m.borrow_mut() = None);
    }
}

/// lopdf's load filter: charges each object, keeps object streams packed for [`expand`], and
/// ends the load by unwinding with a [`PdfError`] once a limit is passed.
fn charge_filter(id: ObjectId, object: &mut Object) -> Option<(ObjectId, Object)> {
    if let Object::Stream(s) = object {
        if s.dict.has_type(b"ObjStm") {
            s.dict.set("Type", Object::Name(HELD_OBJSTM.to_vec()));
        }
    }
    let w = weight(object);
    let charged = METER.with(|m| match m.borrow_mut().as_mut() {
        Some(meter) => meter.charge(w, 1),
        // Not on the loading thread (lopdf built with rayon): refuse rather than go unmetered.
        None => Err(PdfError::TooComplex("unmetered load".into())),
    });
    if let Err(e) = charged {
        resume_unwind(Box::new(e));
    }
    // lopdf keeps the object it passed in (mutated); the returned one is ignored.
    Some((id, Object::Null))
}

fn load(data: &[u8], limits: &Limits, source: Source) -> Result<Loaded, PdfError> {
    if limits.expired() {
        return Err(PdfError::Deadline);
    }
    let scan = prescan(data);
    if source == Source::Input && scan.tokens > MAX_TOKENS {
        return Err(PdfError::TooComplex(format!(
            "more than {MAX_TOKENS} syntax tokens"
        )));
    }
    let bytes: Cow<[u8]> = if scan.patches.is_empty() {
        Cow::Borrowed(data)
    } else {
        let mut copy = data.to_vec();
        for &(start, end, name) in &scan.patches {
            if let Some(target) = copy.get_mut(start + 1..end) {
                for (i, b) in target.iter_mut().enumerate() {
                    *b = name.get(i).copied().unwrap_or(b'_');
                }
            }
        }
        Cow::Owned(copy)
    };
    let options = LoadOptions {
        filter: Some(charge_filter),
        strict: false,
        max_decompressed_size: Some(MAX_STRUCTURE_INFLATE),
        force_reconstruct: source == Source::Input,
        ..LoadOptions::default()
    };
    let guard = MeterGuard::install(Meter::new(limits, data.len()));
    let loaded = catch_unwind(AssertUnwindSafe(|| {
        Document::load_mem_with_options(&bytes, options)
    }));
    let meter = guard.take();
    let mut doc = match loaded {
        Ok(Ok(doc)) => doc,
        Ok(Err(e)) => return Err(PdfError::Unreadable(e.to_string())),
        Err(payload) => {
            return Err(match payload.downcast::<PdfError>() {
                Ok(e) => *e,
                Err(_) => PdfError::Unreadable("the PDF parser failed on it".into()),
            })
        }
    };
    let mut meter = meter.ok_or_else(|| PdfError::TooComplex("unmetered load".into()))?;
    restore_held_keys(&mut doc, &bytes, &mut meter)?;
    let decrypted = decrypt(&mut doc)?;
    expand_object_streams(&mut doc, &mut meter)?;
    if let Some(&(max, _)) = doc.objects.keys().next_back() {
        doc.max_id = doc.max_id.max(max);
    }
    Ok(Loaded { doc, decrypted })
}

/// Approximate memory of an object: one node per object plus its bytes.
fn weight(object: &Object) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![object];
    while let Some(o) = stack.pop() {
        total += NODE;
        match o {
            Object::Name(n) => total += n.len() as u64,
            Object::String(s, _) => total += s.len() as u64,
            Object::Array(a) => stack.extend(a.iter()),
            Object::Dictionary(d) => {
                for (k, v) in d.iter() {
                    total += k.len() as u64 + NODE;
                    stack.push(v);
                }
            }
            Object::Stream(s) => {
                total += s.content.len() as u64;
                for (k, v) in s.dict.iter() {
                    total += k.len() as u64 + NODE;
                    stack.push(v);
                }
            }
            _ => {}
        }
    }
    total
}

/// Puts back the keys renamed by the pre-scan: `/Length` everywhere (stream data held back by
/// the rename is copied now, when an `endstream` follows it), `/Encrypt` in the trailer only.
fn restore_held_keys(doc: &mut Document, bytes: &[u8], meter: &mut Meter) -> Result<(), PdfError> {
    // Resolve the lengths first: the objects they point to are already loaded.
    let mut deferred: Vec<(ObjectId, usize, Option<usize>)> = Vec::new();
    for (id, object) in &doc.objects {
        if let Object::Stream(s) = object {
            if let Some(value) = held_value(&s.dict, HELD_LENGTH) {
                if let Some(start) = s.start_position {
                    let length = match value {
                        Object::Reference(r) => doc.objects.get(r).and_then(as_length),
                        other => as_length(other),
                    };
                    deferred.push((*id, start, length));
                }
            }
        }
    }
    for object in doc.objects.values_mut() {
        rename_held(object);
    }
    for (id, start, length) in deferred {
        let Some(content) = stream_data(bytes, start, length) else {
            continue;
        };
        meter.charge(content.len() as u64, 0)?;
        if let Some(Object::Stream(s)) = doc.objects.get_mut(&id) {
            s.set_content(content.to_vec());
        }
    }
    let trailer_keys: Vec<Vec<u8>> = doc
        .trailer
        .iter()
        .map(|(k, _)| k.clone())
        .filter(|k| k.starts_with(HELD_ENCRYPT) || k.starts_with(HELD_LENGTH))
        .collect();
    for key in trailer_keys {
        if let Some(v) = doc.trailer.remove(&key) {
            if key.starts_with(HELD_ENCRYPT) {
                doc.trailer.set("Encrypt", v);
            }
        }
    }
    Ok(())
}

fn held_value<'a>(dict: &'a Dictionary, prefix: &[u8]) -> Option<&'a Object> {
    dict.iter()
        .find(|(k, _)| k.starts_with(prefix))
        .map(|(_, v)| v)
}

fn as_length(object: &Object) -> Option<usize> {
    match object {
        Object::Integer(i) => usize::try_from(*i).ok(),
        Object::Real(r) if r.fract() == 0.0 && *r >= 0.0 && *r < 4.0e9 => Some(*r as usize),
        _ => None,
    }
}

/// The data of a stream starting at `start`: `length` octets when `endstream` follows them
/// (after an optional end of line), else up to the first end-of-line + `endstream`.
fn stream_data(bytes: &[u8], start: usize, length: Option<usize>) -> Option<&[u8]> {
    let rest = bytes.get(start..)?;
    if let Some(len) = length {
        if let Some(after) = rest.get(len..) {
            let after = after
                .strip_prefix(b"\r\n")
                .or_else(|| after.strip_prefix(b"\n"))
                .or_else(|| after.strip_prefix(b"\r"))
                .unwrap_or(after);
            if after.starts_with(b"endstream") {
                return rest.get(..len);
            }
        }
    }
    let at = memchr::memmem::find(rest, b"endstream")?;
    let mut end = at;
    if end > 0 && rest[end - 1] == b'\n' {
        end -= 1;
    }
    if end > 0 && rest[end - 1] == b'\r' {
        end -= 1;
    }
    rest.get(..end)
}

/// Renames held `/Length` keys back everywhere and drops held `/Encrypt` keys outside the
/// trailer (where they mean nothing).
fn rename_held(object: &mut Object) {
    let mut stack = vec![object];
    while let Some(o) = stack.pop() {
        let dict = match o {
            Object::Dictionary(d) => d,
            Object::Stream(s) => &mut s.dict,
            Object::Array(a) => {
                stack.extend(a.iter_mut());
                continue;
            }
            _ => continue,
        };
        let held: Vec<Vec<u8>> = dict
            .iter()
            .map(|(k, _)| k)
            .filter(|k| k.starts_with(HELD_LENGTH) || k.starts_with(HELD_ENCRYPT))
            .cloned()
            .collect();
        for key in held {
            if let Some(v) = dict.remove(&key) {
                if key.starts_with(HELD_LENGTH) {
                    dict.set("Length", v);
                }
            }
        }
        for (_, v) in dict.iter_mut() {
            stack.push(v);
        }
    }
}

/// Decrypts a document that opens with the empty user password. A document whose strings and
/// streams are not encrypted at all (crypt filters `/Identity`: only its embedded files are,
/// under `/EFF`) is accepted as it is; its embedded files are removed anyway. Any other
/// encrypted document is refused.
fn decrypt(doc: &mut Document) -> Result<bool, PdfError> {
    let Ok(reference) = doc.trailer.get(b"Encrypt").cloned() else {
        return Ok(false);
    };
    let encrypt_id = reference.as_reference().ok();
    if doc.authenticate_password("").is_err() {
        if !identity_only(doc) {
            return Err(PdfError::Encrypted);
        }
        if let Some(id) = encrypt_id {
            doc.objects.remove(&id);
        }
        doc.trailer.remove(b"Encrypt");
        return Ok(false);
    }
    let state = lopdf::EncryptionState::decode(&*doc, "").map_err(|_| PdfError::Encrypted)?;
    for (id, object) in doc.objects.iter_mut() {
        if Some(*id) == encrypt_id {
            continue;
        }
        // A part that does not decrypt stays garbage, which is harmless.
        let _ = lopdf::encryption::decrypt_object(&state, *id, object);
    }
    if let Some(id) = encrypt_id {
        doc.objects.remove(&id);
    }
    doc.trailer.remove(b"Encrypt");
    Ok(true)
}

/// True when the security handler leaves strings and streams in the clear (V 4 or 5 with the
/// `/Identity` crypt filter, or none, as default for both).
fn identity_only(doc: &Document) -> bool {
    let Ok(e) = doc.get_encrypted() else {
        return false;
    };
    let v = e.get(b"V").and_then(Object::as_i64).unwrap_or(0);
    let identity = |key: &[u8]| name_of(e, key).is_none_or(|n| n == b"Identity");
    v >= 4 && identity(b"StmF") && identity(b"StrF")
}

/// Expands the object streams held back during the load: inflated with a limit, charged by
/// their token count, each member parsed from its own slice (so members cannot overlap), and
/// added unless an object of that number was loaded already. Newer streams (higher numbers)
/// are read first, so an incremental update wins over the revision it replaces.
fn expand_object_streams(doc: &mut Document, meter: &mut Meter) -> Result<(), PdfError> {
    let held: Vec<ObjectId> = doc
        .objects
        .iter()
        .filter(|(_, o)| matches!(o, Object::Stream(s) if s.dict.has_type(HELD_OBJSTM)))
        .map(|(id, _)| *id)
        .collect();
    for id in held.into_iter().rev() {
        let Some(Object::Stream(stream)) = doc.objects.remove(&id) else {
            continue;
        };
        let Ok(content) = stream.get_plain_content_with_limit(MAX_STRUCTURE_INFLATE) else {
            continue;
        };
        meter.charge(count_tokens(&content) * NODE + content.len() as u64, 0)?;
        let Some(first) = stream
            .dict
            .get(b"First")
            .ok()
            .and_then(|f| f.as_i64().ok())
            .and_then(|f| usize::try_from(f).ok())
        else {
            continue;
        };
        let Some(index) = content.get(..first) else {
            continue;
        };
        let numbers: Vec<u64> = index
            .split(|c| is_ws(*c))
            .filter(|t| !t.is_empty())
            .map_while(|t| std::str::from_utf8(t).ok()?.parse().ok())
            .collect();
        let pairs: Vec<(u32, usize)> = numbers
            .chunks_exact(2)
            .filter_map(|p| Some((u32::try_from(p[0]).ok()?, usize::try_from(p[1]).ok()?)))
            .collect();
        meter.charge(0, pairs.len())?;
        for (i, &(number, offset)) in pairs.iter().enumerate() {
            let start = first.saturating_add(offset);
            let end = pairs
                .get(i + 1)
                .map_or(content.len(), |&(_, next)| first.saturating_add(next))
                .min(content.len());
            let Some(slice) = content.get(start..end) else {
                continue;
            };
            if number == 0 || doc.objects.contains_key(&(number, 0)) {
                continue;
            }
            if let Some(object) = parse_member(number, slice) {
                doc.objects.insert((number, 0), object);
            }
        }
    }
    Ok(())
}

/// Parses one object-stream member through lopdf's object-stream reader, given only its own
/// bytes.
fn parse_member(number: u32, slice: &[u8]) -> Option<Object> {
    let header = format!("{number} 0\n");
    let mut content = header.clone().into_bytes();
    content.extend_from_slice(slice);
    let mut dict = Dictionary::new();
    dict.set("Type", Object::Name(b"ObjStm".to_vec()));
    dict.set("N", 1);
    dict.set("First", header.len() as i64);
    let stream = Stream::new(dict, content);
    let mut parsed = ObjectStream::new_with_limit(&stream, Some(slice.len() + header.len() + 1))
        .ok()?
        .objects;
    parsed.remove(&(number, 0))
}

// ---------------------------------------------------------------------------------------------
// Lexical scanning
// ---------------------------------------------------------------------------------------------

fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0 | 0x0c)
}

fn is_delim(c: u8) -> bool {
    matches!(
        c,
        b'(' | b')' | b'<' | b'>' | b'[' | b']' | b'{' | b'}' | b'/' | b'%'
    )
}

fn is_regular(c: u8) -> bool {
    !is_ws(c) && !is_delim(c)
}

fn hex_value(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|v| v as u8)
}

/// A name token as lopdf reads it (`#xx` escapes decoded; another `#` ends the name).
struct NameToken {
    /// End of the raw token.
    end: usize,
    /// Decoded bytes (the first 24; `len` is the full decoded length).
    buf: [u8; 24],
    len: usize,
}

impl NameToken {
    fn is(&self, name: &[u8]) -> bool {
        self.len == name.len() && self.buf.get(..self.len) == Some(name)
    }
}

/// Reads the name whose `/` is at `slash`.
fn read_name(data: &[u8], slash: usize) -> NameToken {
    let mut token = NameToken {
        end: slash + 1,
        buf: [0; 24],
        len: 0,
    };
    let mut i = slash + 1;
    while let Some(&c) = data.get(i) {
        let byte = if c == b'#' {
            match (
                data.get(i + 1).copied().and_then(hex_value),
                data.get(i + 2).copied().and_then(hex_value),
            ) {
                (Some(h), Some(l)) => {
                    i += 3;
                    h << 4 | l
                }
                _ => break,
            }
        } else if is_regular(c) {
            i += 1;
            c
        } else {
            break;
        };
        if let Some(slot) = token.buf.get_mut(token.len) {
            *slot = byte;
        }
        token.len += 1;
    }
    token.end = i;
    token
}

/// Skips white space and comments (as lopdf's parser does between tokens).
fn skip_space(data: &[u8], mut i: usize) -> usize {
    loop {
        while data.get(i).is_some_and(|&c| is_ws(c)) {
            i += 1;
        }
        if data.get(i) == Some(&b'%') {
            while data.get(i).is_some_and(|&c| c != b'\n' && c != b'\r') {
                i += 1;
            }
            if data.get(i).is_none() {
                return i;
            }
        } else {
            return i;
        }
    }
}

fn digits(data: &[u8], i: usize) -> usize {
    data.get(i..)
        .map_or(0, |r| r.iter().take_while(|c| c.is_ascii_digit()).count())
}

/// True when an indirect reference (`12 0 R`) starts at `i` (after white space).
fn reference_at(data: &[u8], i: usize) -> bool {
    let i = skip_space(data, i);
    let n = digits(data, i);
    if n == 0 {
        return false;
    }
    let i = skip_space(data, i + n);
    let g = digits(data, i);
    if g == 0 {
        return false;
    }
    let i = skip_space(data, i + g);
    data.get(i) == Some(&b'R') && data.get(i + 1).is_none_or(|&c| !is_regular(c))
}

struct Prescan {
    /// Tokens that may each become an object.
    tokens: u64,
    /// Name tokens to rename: (position of `/`, end, new name).
    patches: Vec<(usize, usize, &'static [u8])>,
}

/// One linear pass over the raw file. It does not skip strings, comments or stream data, so
/// that no region lopdf might parse as objects (wherever a forged header points) escapes the
/// count; the names to hold back are renamed wherever they occur, for the same reason.
fn prescan(data: &[u8]) -> Prescan {
    let mut scan = Prescan {
        tokens: 0,
        patches: Vec::new(),
    };
    let mut i = 0;
    while let Some(&c) = data.get(i) {
        match c {
            b'/' => {
                let name = read_name(data, i);
                scan.tokens += 1;
                if name.is(b"Encrypt") {
                    scan.patches.push((i, name.end, HELD_ENCRYPT));
                } else if name.is(b"Length") && reference_at(data, name.end) {
                    scan.patches.push((i, name.end, HELD_LENGTH));
                }
                i = name.end;
            }
            b'[' | b'(' => {
                scan.tokens += 1;
                i += 1;
            }
            b'<' => {
                scan.tokens += 1;
                i += if data.get(i + 1) == Some(&b'<') { 2 } else { 1 };
            }
            c if is_regular(c) => {
                let run = data[i..].iter().take_while(|&&c| is_regular(c)).count();
                let token = &data[i..i + run];
                if looks_like_number(token) || matches!(token, b"true" | b"false" | b"null") {
                    scan.tokens += 1;
                }
                i += run;
            }
            _ => i += 1,
        }
    }
    scan
}

fn looks_like_number(token: &[u8]) -> bool {
    token.iter().any(u8::is_ascii_digit)
        && token
            .iter()
            .all(|c| c.is_ascii_digit() || matches!(c, b'+' | b'-' | b'.'))
}

/// Tokens in decoded content (for charging before lopdf parses it).
fn count_tokens(data: &[u8]) -> u64 {
    let mut tokens = 0;
    let mut i = 0;
    while let Some(&c) = data.get(i) {
        if is_regular(c) {
            let run = data[i..].iter().take_while(|&&c| is_regular(c)).count();
            tokens += 1;
            i += run;
        } else {
            if matches!(c, b'/' | b'[' | b'(' | b'<') {
                tokens += 1;
            }
            i += 1;
        }
    }
    tokens
}

/// Searches the written file for a forbidden name in a textual context (the 16 octets before
/// it printable), wherever it stands, stream data included: a reader that delimits streams
/// differently must not find an action there either. Binary data is excluded by the context
/// rule, so compressed streams do not fail the file by chance.
fn find_in_file_bytes(data: &[u8]) -> Option<String> {
    let mut from = 0;
    while let Some(at) = memchr::memchr(b'/', data.get(from..)?) {
        let slash = from + at;
        let name = read_name(data, slash);
        from = name.end.max(slash + 1);
        if !FORBIDDEN_NAMES.iter().any(|f| name.is(f)) {
            continue;
        }
        let context = &data[slash.saturating_sub(16)..slash];
        if context.iter().all(|&c| c.is_ascii_graphic() || is_ws(c)) {
            return Some(format!(
                "/{} in the bytes of the file",
                String::from_utf8_lossy(&name.buf[..name.len.min(24)])
            ));
        }
    }
    None
}

/// Searches decoded content-stream syntax for a forbidden name (strings, hex strings and
/// comments skipped, as a content parser does).
fn find_in_syntax(data: &[u8]) -> Option<&'static [u8]> {
    let mut i = 0;
    while let Some(&c) = data.get(i) {
        match c {
            b'/' => {
                let name = read_name(data, i);
                if let Some(f) = FORBIDDEN_NAMES.iter().find(|f| name.is(f)) {
                    return Some(f);
                }
                i = name.end.max(i + 1);
            }
            b'(' => {
                let mut depth = 0usize;
                while let Some(&c) = data.get(i) {
                    match c {
                        b'\\' => i += 1,
                        b'(' => depth += 1,
                        b')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                i += 1;
            }
            b'<' if data.get(i + 1) != Some(&b'<') => {
                i += data[i..]
                    .iter()
                    .position(|&c| c == b'>')
                    .unwrap_or(data.len() - i)
                    + 1;
            }
            b'%' => {
                i += data[i..]
                    .iter()
                    .position(|&c| c == b'\n' || c == b'\r')
                    .unwrap_or(data.len() - i);
            }
            _ => i += 1,
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Disarm
// ---------------------------------------------------------------------------------------------

/// What was removed, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    JavaScript,
    OpenAction,
    AutoAction,
    Launch,
    FormAction,
    RemoteGoTo,
    Multimedia,
    EmbeddedFile,
    FileAttachment,
    Xfa,
    Link,
    UnsafeLink,
    OtherAction,
    PostScript,
    /// Removed as a consequence of another removal; not reported.
    Silent,
}

#[derive(Default)]
struct Tally(BTreeMap<Kind, usize>);

impl Tally {
    fn add(&mut self, kind: Kind, n: usize) {
        *self.0.entry(kind).or_default() += n;
    }

    fn phrases(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (&kind, &n) in &self.0 {
            let (one, many) = match kind {
                Kind::JavaScript => ("JavaScript", "JavaScript scripts"),
                Kind::OpenAction => ("document open action", "document open actions"),
                Kind::AutoAction => (
                    "automatic action trigger set (AA)",
                    "automatic action trigger sets (AA)",
                ),
                Kind::Launch => ("Launch action", "Launch actions"),
                Kind::FormAction => ("form submit/import action", "form submit/import actions"),
                Kind::RemoteGoTo => (
                    "link to another document (GoToR/GoToE)",
                    "links to other documents (GoToR/GoToE)",
                ),
                Kind::Multimedia => ("multimedia element", "multimedia elements"),
                Kind::EmbeddedFile => ("embedded file", "embedded files"),
                Kind::FileAttachment => {
                    ("file attachment annotation", "file attachment annotations")
                }
                Kind::Xfa => ("XFA form", "XFA forms"),
                Kind::Link => ("link (link policy)", "links (link policy)"),
                Kind::UnsafeLink => ("non-web link", "non-web links"),
                Kind::OtherAction => ("other action", "other actions"),
                Kind::PostScript => ("PostScript fragment", "PostScript fragments"),
                Kind::Silent => continue,
            };
            out.push(if n == 1 {
                format!("1 {one} removed")
            } else {
                format!("{n} {many} removed")
            });
        }
        out
    }
}

/// Keys removed from every dictionary, with the kind they are reported as.
const REMOVED_KEYS: &[(&[u8], Kind)] = &[
    (b"JS", Kind::JavaScript),
    (b"JavaScript", Kind::JavaScript),
    (b"OpenAction", Kind::OpenAction),
    (b"AA", Kind::AutoAction),
    (b"EmbeddedFiles", Kind::EmbeddedFile),
    (b"EF", Kind::EmbeddedFile),
    (b"RF", Kind::Silent),
    (b"AF", Kind::Silent),
    (b"Collection", Kind::Silent),
    (b"XFA", Kind::Xfa),
    (b"NeedsRendering", Kind::Silent),
    (b"RichMediaContent", Kind::Multimedia),
    (b"RichMediaSettings", Kind::Silent),
    (b"3DD", Kind::Multimedia),
];

/// Keys whose value is an action (or, for `/Next`, an array of actions).
const ACTION_SLOTS: &[&[u8]] = &[b"A", b"Next", b"PA"];

fn name_of<'a>(d: &'a Dictionary, key: &[u8]) -> Option<&'a [u8]> {
    match d.get(key) {
        Ok(Object::Name(n)) => Some(n),
        _ => None,
    }
}

/// The `/S` of an action dictionary: any dictionary typed `/Action`, or whose `/S` is an
/// action type.
fn action_type(d: &Dictionary) -> Option<&[u8]> {
    let s = name_of(d, b"S")?;
    (d.has_type(b"Action") || ACTION_TYPES.contains(&s)).then_some(s)
}

/// `Err(kind)` when the action must go.
fn judge_action(d: &Dictionary, s: &[u8], links: LinkPolicy) -> Result<(), Kind> {
    match s {
        b"GoTo" | b"GoToDp" | b"SetOCGState" | b"Trans" => Ok(()),
        b"Thread" if !d.has(b"F") => Ok(()),
        b"Named" => match name_of(d, b"N") {
            Some(n) if SAFE_NAMED.contains(&n) => Ok(()),
            _ => Err(Kind::OtherAction),
        },
        b"URI" => match links {
            LinkPolicy::Defang | LinkPolicy::Remove => Err(Kind::Link),
            LinkPolicy::Keep | LinkPolicy::Show if web_uri(d) => Ok(()),
            _ => Err(Kind::UnsafeLink),
        },
        b"JavaScript" | b"ECMAScript" => Err(Kind::JavaScript),
        b"Launch" => Err(Kind::Launch),
        b"SubmitForm" | b"ImportData" => Err(Kind::FormAction),
        b"GoToR" | b"GoToE" => Err(Kind::RemoteGoTo),
        b"Sound" | b"Movie" | b"Rendition" | b"RichMediaExecute" | b"GoTo3DView" => {
            Err(Kind::Multimedia)
        }
        _ => Err(Kind::OtherAction),
    }
}

/// An absolute http, https or mailto URI: anything else (file:, javascript:, relative names
/// resolved against a base) may open local files or run code.
fn web_uri(d: &Dictionary) -> bool {
    let Ok(Object::String(uri, _)) = d.get(b"URI") else {
        return false;
    };
    let start = uri.iter().position(|&c| c > b' ').unwrap_or(uri.len());
    let head: Vec<u8> = uri[start..]
        .iter()
        .take(8)
        .map(u8::to_ascii_lowercase)
        .collect();
    head.starts_with(b"http://") || head.starts_with(b"https://") || head.starts_with(b"mailto:")
}

/// A removed annotation subtype, for an annotation dictionary.
fn forbidden_annotation(d: &Dictionary) -> Option<Kind> {
    let subtype = name_of(d, b"Subtype")?;
    if !(d.has_type(b"Annot") || d.has(b"Rect")) || !FORBIDDEN_ANNOTATIONS.contains(&subtype) {
        return None;
    }
    Some(if subtype == b"FileAttachment" {
        Kind::FileAttachment
    } else {
        Kind::Multimedia
    })
}

fn is_empty_dict(o: &Object) -> bool {
    matches!(o, Object::Dictionary(d) if d.is_empty())
}

struct Cleaner<'a> {
    links: LinkPolicy,
    limits: &'a Limits,
    tally: Tally,
    /// Objects emptied (actions, annotations, embedded files): references to them are dropped.
    cleared: BTreeSet<ObjectId>,
    /// Objects referenced from an action slot, checked once all objects were walked.
    action_refs: BTreeSet<ObjectId>,
}

impl<'a> Cleaner<'a> {
    fn new(links: LinkPolicy, limits: &'a Limits) -> Cleaner<'a> {
        Cleaner {
            links,
            limits,
            tally: Tally::default(),
            cleared: BTreeSet::new(),
            action_refs: BTreeSet::new(),
        }
    }

    fn run(&mut self, doc: &mut Document) -> Result<(), PdfError> {
        // Structure of the old file; the writer makes its own.
        doc.objects.retain(|_, o| {
            !matches!(o, Object::Stream(s) if s.dict.has_type(b"XRef") || s.dict.has_type(b"ObjStm"))
        });
        let mut trailer = Dictionary::new();
        for key in [&b"Root"[..], b"Info", b"ID"] {
            if let Ok(v) = doc.trailer.get(key) {
                trailer.set(key, v.clone());
            }
        }
        doc.trailer = trailer;

        for (id, object) in doc.objects.iter_mut() {
            if self.limits.expired() {
                return Err(PdfError::Deadline);
            }
            self.clean_object(Some(*id), object);
        }
        // Actions reached through a reference from an action slot: any `/S` not allowed goes,
        // including types this module does not know.
        for id in std::mem::take(&mut self.action_refs) {
            if let Some(Object::Dictionary(d)) = doc.objects.get_mut(&id) {
                if let Some(s) = name_of(d, b"S") {
                    if let Err(kind) = judge_action(d, s, self.links) {
                        self.tally.add(kind, 1);
                        *d = Dictionary::new();
                        self.cleared.insert(id);
                    }
                }
            }
        }
        // Drop references to what was emptied, then the emptied and unreachable objects.
        for object in doc.objects.values_mut() {
            drop_references(object, &self.cleared);
        }
        for id in &self.cleared {
            doc.objects.remove(id);
        }
        doc.prune_objects();
        Ok(())
    }

    fn clean_object(&mut self, id: Option<ObjectId>, object: &mut Object) {
        let mut stack: Vec<(&mut Object, bool)> = vec![(object, true)];
        while let Some((o, root)) = stack.pop() {
            let dict = match o {
                Object::Dictionary(d) => d,
                Object::Stream(s) => {
                    let postscript = name_of(&s.dict, b"Subtype") == Some(b"PS");
                    if postscript {
                        // Passed to PostScript printers as code.
                        self.tally.add(Kind::PostScript, 1);
                    }
                    if postscript || s.dict.has_type(b"EmbeddedFile") {
                        *s = Stream::new(Dictionary::new(), Vec::new());
                        if let (true, Some(id)) = (root, id) {
                            self.cleared.insert(id);
                        }
                        continue;
                    }
                    &mut s.dict
                }
                Object::Array(a) => {
                    stack.extend(a.iter_mut().map(|v| (v, false)));
                    continue;
                }
                _ => continue,
            };
            if self.clean_dict(dict) {
                if let (true, Some(id)) = (root, id) {
                    self.cleared.insert(id);
                }
                continue;
            }
            stack.extend(dict.iter_mut().map(|(_, v)| (v, false)));
        }
    }

    /// Cleans one dictionary; true when it was emptied (an action or annotation removed).
    fn clean_dict(&mut self, d: &mut Dictionary) -> bool {
        let verdict = action_type(d)
            .map(|s| judge_action(d, s, self.links))
            .or_else(|| forbidden_annotation(d).map(Err));
        if let Some(Err(kind)) = verdict {
            self.tally.add(kind, 1);
            *d = Dictionary::new();
            return true;
        }
        for &slot in ACTION_SLOTS {
            match d.get_mut(slot) {
                Ok(Object::Dictionary(a)) => {
                    if let Some(kind) = self.unknown_action(a) {
                        self.tally.add(kind, 1);
                        d.remove(slot);
                    }
                }
                Ok(Object::Reference(r)) => {
                    self.action_refs.insert(*r);
                }
                Ok(Object::Array(items)) => {
                    let mut removed = 0;
                    items.retain(|item| match item {
                        Object::Dictionary(a) if self.unknown_action(a).is_some() => {
                            removed += 1;
                            false
                        }
                        Object::Reference(r) => {
                            self.action_refs.insert(*r);
                            true
                        }
                        _ => true,
                    });
                    self.tally.add(Kind::OtherAction, removed);
                }
                _ => {}
            }
        }
        for &(key, kind) in REMOVED_KEYS {
            if let Some(v) = d.remove(key) {
                let n = match (&v, kind) {
                    (Object::Dictionary(aa), Kind::AutoAction) => aa.len().max(1),
                    _ => 1,
                };
                self.tally.add(kind, n);
            }
        }
        if d.has_type(b"Catalog") {
            // Usage-rights signatures no longer match the rewritten file.
            d.remove(b"Perms");
        }
        false
    }

    /// For a direct dictionary in an action slot: the kind to report when it is an action of
    /// an unknown type (known types are judged when the dictionary itself is walked).
    fn unknown_action(&self, a: &Dictionary) -> Option<Kind> {
        let s = name_of(a, b"S")?;
        (!ACTION_TYPES.contains(&s)).then_some(Kind::OtherAction)
    }
}

/// Removes, inside `object`, dictionary entries and array items that reference a cleared
/// object, and action slots left holding an empty dictionary.
fn drop_references(object: &mut Object, cleared: &BTreeSet<ObjectId>) {
    let gone = |o: &Object| matches!(o, Object::Reference(r) if cleared.contains(r));
    let mut stack = vec![object];
    while let Some(o) = stack.pop() {
        match o {
            Object::Array(a) => {
                a.retain(|v| !gone(v) && !is_empty_dict(v));
                stack.extend(a.iter_mut());
            }
            Object::Dictionary(_) | Object::Stream(_) => {
                let d = match o {
                    Object::Dictionary(d) => d,
                    Object::Stream(s) => &mut s.dict,
                    _ => continue,
                };
                let doomed: Vec<Vec<u8>> = d
                    .iter()
                    .filter(|(k, v)| {
                        gone(v) || (ACTION_SLOTS.contains(&k.as_slice()) && is_empty_dict(v))
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in doomed {
                    d.remove(&k);
                }
                stack.extend(d.iter_mut().map(|(_, v)| v));
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Re-check
// ---------------------------------------------------------------------------------------------

/// The first active feature in one object (nested objects included).
fn scan_object(id: Option<ObjectId>, object: &Object, links: LinkPolicy) -> Option<String> {
    let at = |what: String| match id {
        Some((n, g)) => format!("{what} in object {n} {g}"),
        None => format!("{what} in the trailer"),
    };
    let mut stack = vec![object];
    while let Some(o) = stack.pop() {
        let d = match o {
            Object::Dictionary(d) => d,
            Object::Stream(s) => {
                if s.dict.has_type(b"EmbeddedFile") {
                    return Some(at("an embedded file".into()));
                }
                if s.dict.has_type(b"ObjStm") || s.dict.has_type(HELD_OBJSTM) {
                    return Some(at("an object stream".into()));
                }
                &s.dict
            }
            Object::Array(a) => {
                stack.extend(a.iter());
                continue;
            }
            _ => continue,
        };
        for &(key, kind) in REMOVED_KEYS {
            if kind != Kind::Silent && d.has(key) {
                return Some(at(format!("/{}", String::from_utf8_lossy(key))));
            }
        }
        if let Some(s) = action_type(d) {
            if judge_action(d, s, links).is_err() {
                return Some(at(format!("a /{} action", String::from_utf8_lossy(s))));
            }
        }
        for &slot in ACTION_SLOTS {
            if let Ok(Object::Dictionary(a)) = d.get(slot) {
                if let Some(s) = name_of(a, b"S") {
                    if judge_action(a, s, links).is_err() {
                        return Some(at(format!("a /{} action", String::from_utf8_lossy(s))));
                    }
                }
            }
        }
        if forbidden_annotation(d).is_some() {
            return Some(at("a file attachment or multimedia annotation".into()));
        }
        stack.extend(d.iter().map(|(_, v)| v));
    }
    None
}

/// Checks one stream of the written file: its decoding must stay within the inflate limits,
/// and a stream of PDF syntax must not name an active feature.
fn check_stream(
    id: ObjectId,
    stream: &Stream,
    limits: &Limits,
    inflated: &mut u64,
) -> Result<Option<String>, PdfError> {
    let filtered = stream.dict.get(b"Filter").is_ok();
    let total = limits.max_uncompressed.max(STREAM_INFLATE_FLOOR);
    let allowance = (stream.content.len() as u64)
        .saturating_mul(limits.max_ratio.max(1))
        .clamp(STREAM_INFLATE_FLOOR, STREAM_INFLATE_CEILING)
        .min(total.saturating_sub(*inflated));
    let decoded = if filtered {
        match stream.decompressed_content_with_limit(allowance as usize) {
            Ok(d) => Some(d),
            Err(lopdf::Error::Decompress(lopdf::DecompressError::MemoryLimitExceeded {
                ..
            })) => {
                return Err(PdfError::TooComplex(format!(
                    "stream {} {} inflates beyond {} MiB (decompression bomb)",
                    id.0,
                    id.1,
                    allowance >> 20
                )))
            }
            // Image codecs (DCT, JPX, JBIG2, CCITT) and broken data: kept as they are.
            Err(_) => None,
        }
    } else {
        None
    };
    let plain: &[u8] = decoded.as_deref().unwrap_or(&stream.content);
    *inflated += plain.len() as u64;
    let d = &stream.dict;
    let not_syntax = d.has_type(b"Metadata")
        || name_of(d, b"Subtype").is_some_and(|s| {
            matches!(
                s,
                b"Image" | b"Type1C" | b"CIDFontType0C" | b"OpenType" | b"XML"
            )
        })
        || d.has(b"Length1")
        || d.has(b"Length2")
        || d.has(b"Length3")
        || (filtered && decoded.is_none());
    if not_syntax {
        return Ok(None);
    }
    Ok(find_in_syntax(plain).map(|name| {
        format!(
            "/{} in the decoded stream {} {}",
            String::from_utf8_lossy(name),
            id.0,
            id.1
        )
    }))
}

// ---------------------------------------------------------------------------------------------
// Text extraction support
// ---------------------------------------------------------------------------------------------

/// Drops ToUnicode maps that lopdf would expand into more than [`MAX_TOUNICODE_CODES`]
/// entries (it builds a reverse map code by code); their font's text falls back to its
/// encoding.
fn tame_tounicode_maps(doc: &mut Document, limits: &Limits) -> Result<(), PdfError> {
    let mut oversized = BTreeSet::new();
    for (id, object) in &doc.objects {
        if limits.expired() {
            return Err(PdfError::Deadline);
        }
        let Object::Dictionary(d) = object else {
            continue;
        };
        let Ok(Object::Reference(map)) = d.get(b"ToUnicode") else {
            continue;
        };
        let codes = match doc.objects.get(map) {
            Some(Object::Stream(s)) => s
                .get_plain_content_with_limit(MAX_PAGE_CONTENT)
                .ok()
                .map(|c| cmap_range_codes(&c)),
            _ => Some(0),
        };
        if codes.is_none_or(|n| n > MAX_TOUNICODE_CODES) {
            oversized.insert(*id);
        }
    }
    for id in oversized {
        if let Some(Object::Dictionary(d)) = doc.objects.get_mut(&id) {
            d.remove(b"ToUnicode");
        }
    }
    Ok(())
}

/// Source codes covered by the `bfrange` sections of a CMap (saturating).
fn cmap_range_codes(cmap: &[u8]) -> u64 {
    let mut total = 0u64;
    let mut rest = cmap;
    while let Some(start) = memchr::memmem::find(rest, b"beginbfrange") {
        rest = &rest[start + 12..];
        let end = memchr::memmem::find(rest, b"endbfrange").unwrap_or(rest.len());
        let section = &rest[..end];
        // Entries are <lo> <hi> then <dst> or [ ... ]; collect the hex strings outside arrays.
        let mut values = Vec::new();
        let mut i = 0;
        while let Some(&c) = section.get(i) {
            match c {
                b'[' => {
                    let close = section[i..].iter().position(|&c| c == b']');
                    values.push(None);
                    i += close.unwrap_or(section.len() - i) + 1;
                }
                b'<' => {
                    let close = section[i..]
                        .iter()
                        .position(|&c| c == b'>')
                        .unwrap_or(section.len() - i);
                    let v = section[i + 1..i + close]
                        .iter()
                        .filter_map(|&c| hex_value(c))
                        .take(16)
                        .fold(0u64, |acc, h| acc << 4 | u64::from(h));
                    values.push(Some(v));
                    i += close + 1;
                }
                _ => i += 1,
            }
        }
        for entry in values.chunks(3) {
            if let [Some(lo), Some(hi), ..] = entry {
                total = total.saturating_add(hi.saturating_sub(*lo).saturating_add(1));
            }
        }
        rest = &rest[end..];
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AttachmentPolicy;

    fn limits() -> Limits {
        Limits::from_config(&crate::config::SanitizeConfig::default())
    }

    /// A PDF with the given objects (numbered from 1; object 1 is the catalog) and a correct
    /// cross-reference table.
    fn pdf(objects: &[&str]) -> Vec<u8> {
        let mut out = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n".to_vec();
        let mut offsets = Vec::new();
        for (i, body) in objects.iter().enumerate() {
            offsets.push(out.len());
            out.extend_from_slice(format!("{} 0 obj\n{body}\nendobj\n", i + 1).as_bytes());
        }
        let xref = out.len();
        out.extend_from_slice(
            format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
        );
        for o in offsets {
            out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
        }
        out.extend_from_slice(
            format!(
                "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
                objects.len() + 1
            )
            .as_bytes(),
        );
        out
    }

    fn page_with(text: &str, extra_page: &str, extra_catalog: &str) -> Vec<String> {
        let content = format!("BT /F1 24 Tf 72 700 Td ({text}) Tj ET");
        vec![
            format!("<< /Type /Catalog /Pages 2 0 R {extra_catalog} >>"),
            "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".into(),
            format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R \
                 /Resources << /Font << /F1 5 0 R >> >> {extra_page} >>"
            ),
            format!(
                "<< /Length {} >>\nstream\n{content}\nendstream",
                content.len()
            ),
            "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".into(),
        ]
    }

    fn build(objs: &[String]) -> Vec<u8> {
        let refs: Vec<&str> = objs.iter().map(String::as_str).collect();
        pdf(&refs)
    }

    fn run(data: &[u8], links: LinkPolicy) -> Result<Disarmed, PdfError> {
        disarm_pdf(data, links, &limits())
    }

    #[test]
    fn openaction_javascript_and_names_tree_removed() {
        let mut objs = page_with(
            "Hello",
            "/AA << /O 6 0 R >>",
            "/OpenAction 6 0 R /Names << /JavaScript << /Names [(x) 6 0 R] >> >>",
        );
        objs.push("<< /Type /Action /S /JavaScript /JS (app.alert\\(1\\)) >>".into());
        let out = run(&build(&objs), LinkPolicy::Show).expect("disarmed");
        let text = String::from_utf8_lossy(&out.data);
        assert!(
            !text.contains("/JavaScript") && !text.contains("/JS") && !text.contains("app.alert")
        );
        assert!(!text.contains("/OpenAction") && !text.contains("/AA"));
        assert!(text.contains("(Hello) Tj"), "content kept");
        let changes = out.changes.join("; ");
        assert!(changes.contains("document open action"), "{changes}");
        assert!(changes.contains("JavaScript"), "{changes}");
    }

    #[test]
    fn link_policy_decides_uri_actions() {
        let mut objs = page_with("Link", "/Annots [6 0 R 8 0 R]", "");
        objs.push("<< /Type /Annot /Subtype /Link /Rect [0 0 10 10] /A 7 0 R >>".into());
        objs.push("<< /S /URI /URI (https://example.jp/) >>".into());
        objs.push("<< /Type /Annot /Subtype /Link /Rect [0 0 5 5] /A << /S /URI /URI (file:///c:/x.exe) >> >>".into());
        let data = build(&objs);
        let kept = run(&data, LinkPolicy::Show).unwrap();
        let text = String::from_utf8_lossy(&kept.data);
        assert!(text.contains("https://example.jp/"));
        assert!(!text.contains("file:///"), "non-web links always go");
        assert!(kept.changes.iter().any(|c| c.contains("non-web link")));
        let dropped = run(&data, LinkPolicy::Defang).unwrap();
        let text = String::from_utf8_lossy(&dropped.data);
        assert!(!text.contains("https://example.jp/") && !text.contains("/URI"));
        assert!(
            dropped.changes.iter().any(|c| c.contains("link policy")),
            "{:?}",
            dropped.changes
        );
    }

    #[test]
    fn launch_submit_and_unknown_actions_removed() {
        let mut objs = page_with("x", "/Annots [6 0 R]", "");
        objs.push(
            "<< /Type /Annot /Subtype /Widget /Rect [0 0 1 1] /A << /S /Launch /F (cmd.exe) \
             /Next [<< /S /SubmitForm /F (http://evil/) >> << /S /Frobnicate >>] >> >>"
                .into(),
        );
        let out = run(&build(&objs), LinkPolicy::Keep).unwrap();
        let text = String::from_utf8_lossy(&out.data);
        for bad in ["Launch", "cmd.exe", "SubmitForm", "Frobnicate"] {
            assert!(!text.contains(bad), "{bad} survived");
        }
        assert!(text.contains("/Widget"), "the widget itself is kept");
    }

    #[test]
    fn embedded_files_and_attachment_annotations_removed() {
        let mut objs = page_with(
            "x",
            "/Annots [6 0 R]",
            "/Names << /EmbeddedFiles << /Names [(a.exe) 7 0 R] >> >>",
        );
        objs.push("<< /Type /Annot /Subtype /FileAttachment /Rect [0 0 1 1] /FS 7 0 R >>".into());
        objs.push("<< /Type /Filespec /F (a.exe) /EF << /F 8 0 R >> >>".into());
        objs.push("<< /Type /EmbeddedFile /Length 5 >>\nstream\nMZ\x00\x00\x00\nendstream".into());
        let out = run(&build(&objs), LinkPolicy::Show).unwrap();
        let text = String::from_utf8_lossy(&out.data);
        assert!(
            !text.contains("EmbeddedFile")
                && !text.contains("FileAttachment")
                && !text.contains("a.exe")
        );
        let changes = out.changes.join("; ");
        assert!(
            changes.contains("embedded file") && changes.contains("file attachment"),
            "{changes}"
        );
    }

    #[test]
    fn javascript_hidden_in_an_object_stream_removed() {
        // Object 6 lives in object stream 7, compressed.
        let member = b"<< /Type /Action /S /JavaScript /JS (this.print\\(\\)) >>";
        let header = b"6 0 ";
        let mut body = header.to_vec();
        body.extend_from_slice(member);
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut enc, &body).unwrap();
        let z = enc.finish().unwrap();
        let mut objs = page_with("x", "", "/OpenAction 6 0 R");
        objs.push("null".into()); // 6 is in the object stream; this top-level copy is free
        let stream = format!(
            "<< /Type /ObjStm /N 1 /First {} /Filter /FlateDecode /Length {} >>\nstream\n",
            header.len(),
            z.len()
        );
        let mut data = build(&objs);
        // Append object 7 (the object stream) after the table; reconstruction finds it.
        let mut tail = format!("7 0 obj\n{stream}").into_bytes();
        tail.extend_from_slice(&z);
        tail.extend_from_slice(b"\nendstream\nendobj\n");
        data.extend_from_slice(&tail);
        // Remove the decoy object 6 so the member is the one loaded.
        let decoy = memchr::memmem::find(&data, b"6 0 obj\nnull\nendobj\n").unwrap();
        data[decoy..decoy + 19].fill(b' ');
        let loaded = load(&data, &limits(), Source::Input).unwrap();
        assert!(
            matches!(loaded.doc.objects.get(&(6, 0)), Some(Object::Dictionary(d)) if d.has(b"JS")),
            "the member was expanded"
        );
        let out = run(&data, LinkPolicy::Show).unwrap();
        assert!(!String::from_utf8_lossy(&out.data).contains("print"));
    }

    #[test]
    fn indirect_stream_lengths_keep_their_data() {
        let mut objs = page_with("Indirect", "", "");
        let content = "BT /F1 24 Tf 72 700 Td (Indirect) Tj ET";
        objs[3] = format!("<< /Length 6 0 R >>\nstream\n{content}\nendstream");
        objs.push(format!("{}", content.len()));
        let out = run(&build(&objs), LinkPolicy::Show).unwrap();
        let doc = Document::load_mem(&out.data).unwrap();
        let page = *doc.get_pages().get(&1).unwrap();
        let text = doc.extract_text(&[1]).unwrap();
        assert!(text.contains("Indirect"), "{text:?} {page:?}");
    }

    #[test]
    fn postscript_xobjects_removed() {
        let mut objs = page_with("x", "", "");
        objs[2] = objs[2].replace(
            "/Font << /F1 5 0 R >>",
            "/Font << /F1 5 0 R >> /XObject << /P 6 0 R >>",
        );
        objs.push(
            "<< /Type /XObject /Subtype /PS /Length 9 >>\nstream\nshowpage\n\nendstream".into(),
        );
        let out = run(&build(&objs), LinkPolicy::Show).unwrap();
        assert!(memchr::memmem::find(&out.data, b"showpage").is_none());
        assert!(
            out.changes.iter().any(|c| c.contains("PostScript")),
            "{:?}",
            out.changes
        );
    }

    #[test]
    fn prescan_counts_and_renames() {
        let scan = prescan(b"<< /Length 5 0 R /Encr#79pt 3 0 R /Length 7 >> [1 2 (x) /N]");
        assert_eq!(scan.patches.len(), 2);
        assert_eq!(scan.patches[0].2, HELD_LENGTH);
        assert_eq!(scan.patches[1].2, HELD_ENCRYPT);
        assert!(scan.tokens >= 12, "{}", scan.tokens);
    }

    #[test]
    fn too_many_tokens_refused_before_parsing() {
        let mut big = "[".to_string();
        big.push_str(&"0 ".repeat(1_100_000));
        big.push(']');
        let objs = page_with("x", &format!("/X {big}"), "");
        let started = Instant::now();
        match run(&build(&objs), LinkPolicy::Show) {
            Err(PdfError::TooComplex(r)) => assert!(r.contains("tokens"), "{r}"),
            other => panic!("{other:?}"),
        }
        assert!(started.elapsed().as_secs() < 5);
    }

    #[test]
    fn stream_lengths_pointing_at_a_big_object_are_not_reparsed() {
        // 20,000 streams whose /Length is object 6, an array of 400,000 numbers: lopdf alone
        // parses that array once per stream (~60 ms each, 20 minutes in all).
        let mut objs = page_with("x", "/Thumb 7 0 R", "");
        objs.push(format!("[{}]", "1 ".repeat(400_000)));
        for _ in 0..20_000 {
            objs.push("<< /Length 6 0 R >>\nstream\nxx\nendstream".into());
        }
        let started = Instant::now();
        let out = run(&build(&objs), LinkPolicy::Show).expect("disarmed");
        assert!(started.elapsed().as_secs() < 10, "{:?}", started.elapsed());
        // The length is no number: the data runs to `endstream`.
        assert!(memchr::memmem::find(&out.data, b"stream\nxx\nendstream").is_some());
    }

    #[test]
    fn unreadable_input_is_removed_with_a_reason() {
        let v = disarm(
            b"%PDF-1.4\ngarbage",
            &Policy {
                attachments: &AttachmentPolicy::default(),
                links: LinkPolicy::Show,
                limits: limits(),
                depth: 0,
            },
        );
        match v {
            Verdict::Remove { reason } => assert!(reason.starts_with("pdf: "), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn text_mode_extracts_page_text() {
        let objs = page_with(
            "Invoice 2024",
            "",
            "/OpenAction << /S /JavaScript /JS (x) >>",
        );
        let out = to_text(&build(&objs), &limits()).unwrap();
        assert_eq!(out.content_type, "text/plain; charset=utf-8");
        assert_eq!(out.extension.as_deref(), Some("txt"));
        let text = String::from_utf8(out.data).unwrap();
        assert!(text.contains("Invoice 2024"), "{text:?}");
    }

    #[test]
    fn cmap_ranges_are_counted() {
        let cmap =
            b"1 beginbfrange\n<0000> <00FF> <0041>\n<1000> <1001> [<0041> <0042>]\nendbfrange";
        assert_eq!(cmap_range_codes(cmap), 258);
        let bomb = b"1 beginbfrange\n<00000000> <FFFFFFFF> <0041>\nendbfrange";
        assert!(cmap_range_codes(bomb) > MAX_TOUNICODE_CODES);
    }

    #[test]
    fn syntax_search_skips_strings_and_comments() {
        assert_eq!(find_in_syntax(b"(/JS) Tj % /JavaScript\n<2F4A53>"), None);
        assert_eq!(find_in_syntax(b"/JS 3 0 R"), Some(&b"JS"[..]));
        assert_eq!(find_in_syntax(b"/J#53 x"), Some(&b"JS"[..]));
        assert_eq!(find_in_syntax(b"/JSON x"), None);
        assert!(find_in_file_bytes(b"1 0 obj << /S /JavaScript >>").is_some());
        assert!(find_in_file_bytes(
            b"\x80\x91\xff\x00\x13\x99\xfe\xfa\xf0\x81\x82\x83\x84\x85\x86\x87/JS "
        )
        .is_none());
    }
}
