//! Office documents: OOXML packages (docx, xlsx, pptx and their macro-enabled and template
//! forms) rebuilt without active parts; legacy formats (OLE2 doc/xls/ppt, RTF, OneNote, ODF)
//! are in `legacy.rs`.
//!
//! An OOXML file is a zip of XML parts tied together by relationship files (`_rels/*.rels`)
//! and typed by `[Content_Types].xml`. Macros (`vbaProject.bin`, `vbaData.xml`, Excel 4
//! macro sheets), ActiveX controls, OLE embeddings, ribbon callbacks (`customUI`), web add-ins,
//! data connections and every relationship that points outside the package
//! (`TargetMode="External"`: template injection, remote OLE links, remote images, external
//! workbook links) are what makes a document act when opened. The package is rebuilt from
//! what the relationship graph reaches from the package root, without those parts and
//! relationships; parts whose bytes turn out to be executables, OLE2 or archives are dropped
//! too. XML parts are edited as text with a small tokenizer (no DTDs: OOXML forbids them)
//! in two streaming passes: the first decides which elements and attributes go, the second
//! copies every other byte unchanged, so what survives is exactly what the sender wrote.
//! The edits keep the document valid: references to removed relationships are removed with
//! the element that needs them (OLE objects, ActiveX controls, macro sheets, external
//! references, attached templates) or as an optional attribute (hyperlinks, linked pictures
//! stay as broken-but-valid references); dangerous Word fields (DDE, DDEAUTO, INCLUDETEXT,
//! INCLUDEPICTURE, LINK, ...) lose their field code and keep their displayed result; mail
//! merge SQL queries, `Auto_Open` names and formulas into removed external workbooks go.
//! A macro-enabled document becomes its macro-free type (content type and extension:
//! `xlsm` → `xlsx`). Binary workbooks (`xlsb`) and add-ins cannot be rebuilt and are removed.
//!
//! Hyperlinks: DESIGN's invariant is that a clean message holds no external relationship, so
//! hyperlinks to outside addresses are removed from documents too (the relationship, and
//! Word's `HYPERLINK "url"` field code; links to bookmarks inside the document stay). Their
//! text stays where it was (`w:hyperlink`, `a:hlinkClick` and Excel's `hyperlink` lose only
//! their optional `r:id`), and one change line counts them, so the reader knows why the text
//! no longer clicks. Unlike the mail body (whose link policy can show the URL), a document
//! has no place to show a removed URL without altering its layout; a URL typed as text or
//! an Excel `HYPERLINK()` formula stays, as any text does.
//!
//! Images: every image part (`media/`, the thumbnail) is re-encoded from its pixels in its
//! own format by [`super::image`] (EXIF with GPS positions, comments and appended data go;
//! name, content type and relationships stay valid); one that cannot be decoded becomes a
//! blank 1×1 image of the same format, so the document still opens. Vector pictures (EMF,
//! WMF) are not decoded here and are kept as they are.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{Cursor, Write};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use super::archive::{self, ArchiveError, TreeScope, ZipIn};
use super::image;
use super::{Disarmed, Limits, Policy, Verdict};
use crate::config::AttachmentAction;
use crate::sanitise::sniff::{self, Category};

// =========================================================================================
// A minimal XML tokenizer over bytes.

pub(super) mod xml {
    /// What a token is.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Kind {
        Start,
        End,
        Empty,
        Text,
        CData,
        /// Comments, processing instructions, the XML declaration.
        Other,
    }

    #[derive(Debug, Clone, Copy)]
    pub struct Tok {
        pub kind: Kind,
        pub start: usize,
        pub end: usize,
    }

    /// Splits XML text into tokens that together cover every byte of the input.
    pub struct Tokenizer<'a> {
        src: &'a [u8],
        pos: usize,
    }

    impl<'a> Tokenizer<'a> {
        pub fn new(src: &'a [u8]) -> Tokenizer<'a> {
            Tokenizer { src, pos: 0 }
        }
    }

    fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
        memchr::memmem::find(hay.get(from..)?, needle).map(|i| i + from)
    }

    impl Iterator for Tokenizer<'_> {
        type Item = Result<Tok, String>;

        fn next(&mut self) -> Option<Self::Item> {
            let src = self.src;
            let start = self.pos;
            if start >= src.len() {
                return None;
            }
            let tok = |kind, end| Tok { kind, start, end };
            let r = if src[start] != b'<' {
                let end = memchr::memchr(b'<', &src[start..]).map_or(src.len(), |i| i + start);
                Ok(tok(Kind::Text, end))
            } else if src[start..].starts_with(b"<!--") {
                find(src, start + 4, b"-->")
                    .map(|i| tok(Kind::Other, i + 3))
                    .ok_or_else(|| "unterminated comment".to_string())
            } else if src[start..].starts_with(b"<![CDATA[") {
                find(src, start + 9, b"]]>")
                    .map(|i| tok(Kind::CData, i + 3))
                    .ok_or_else(|| "unterminated CDATA section".to_string())
            } else if src[start..].starts_with(b"<!") {
                Err("document type declarations are not allowed".to_string())
            } else if src[start..].starts_with(b"<?") {
                find(src, start + 2, b"?>")
                    .map(|i| tok(Kind::Other, i + 2))
                    .ok_or_else(|| "unterminated processing instruction".to_string())
            } else if src[start..].starts_with(b"</") {
                memchr::memchr(b'>', &src[start..])
                    .map(|i| tok(Kind::End, start + i + 1))
                    .ok_or_else(|| "unterminated end tag".to_string())
            } else {
                // A start tag: '>' inside a quoted attribute value does not end it.
                let mut i = start + 1;
                let mut quote = 0u8;
                let mut end = None;
                while i < src.len() {
                    let c = src[i];
                    if quote != 0 {
                        if c == quote {
                            quote = 0;
                        }
                    } else if c == b'"' || c == b'\'' {
                        quote = c;
                    } else if c == b'>' {
                        end = Some(i + 1);
                        break;
                    } else if c == b'<' {
                        break;
                    }
                    i += 1;
                }
                match end {
                    Some(e) if src[e - 2] == b'/' => Ok(tok(Kind::Empty, e)),
                    Some(e) => Ok(tok(Kind::Start, e)),
                    None => Err("unterminated start tag".to_string()),
                }
            };
            match r {
                Ok(t) => {
                    self.pos = t.end;
                    Some(Ok(t))
                }
                Err(e) => {
                    self.pos = src.len();
                    Some(Err(e))
                }
            }
        }
    }

    fn is_space(c: u8) -> bool {
        matches!(c, b' ' | b'\t' | b'\r' | b'\n')
    }

    /// The qualified name of a start, empty or end tag.
    pub fn tag_name(tag: &[u8]) -> &[u8] {
        let body = tag
            .strip_prefix(b"</")
            .or_else(|| tag.strip_prefix(b"<"))
            .unwrap_or(tag);
        let end = body
            .iter()
            .position(|&c| is_space(c) || c == b'/' || c == b'>')
            .unwrap_or(body.len());
        &body[..end]
    }

    /// The part of a qualified name after its prefix.
    pub fn local(qname: &[u8]) -> &[u8] {
        match memchr::memrchr(b':', qname) {
            Some(i) => &qname[i + 1..],
            None => qname,
        }
    }

    /// One attribute of a tag, as offsets into the tag.
    #[derive(Debug, Clone)]
    pub struct Attr {
        /// From the whitespace before the name to the closing quote.
        pub whole: std::ops::Range<usize>,
        pub name: std::ops::Range<usize>,
        /// Inside the quotes.
        pub value: std::ops::Range<usize>,
    }

    /// The attributes of a start or empty tag (a malformed remainder ends the list).
    pub fn attrs(tag: &[u8]) -> Vec<Attr> {
        let mut out = Vec::new();
        let mut i = 1 + tag_name(tag).len();
        loop {
            let ws = i;
            while i < tag.len() && is_space(tag[i]) {
                i += 1;
            }
            let ns = i;
            while i < tag.len() && !is_space(tag[i]) && !matches!(tag[i], b'=' | b'/' | b'>') {
                i += 1;
            }
            if i == ns {
                break;
            }
            let ne = i;
            while i < tag.len() && is_space(tag[i]) {
                i += 1;
            }
            if tag.get(i) != Some(&b'=') {
                break;
            }
            i += 1;
            while i < tag.len() && is_space(tag[i]) {
                i += 1;
            }
            let Some(&q) = tag.get(i) else { break };
            if q != b'"' && q != b'\'' {
                break;
            }
            let vs = i + 1;
            let Some(ve) = tag[vs..].iter().position(|&c| c == q).map(|p| p + vs) else {
                break;
            };
            out.push(Attr {
                whole: ws..ve + 1,
                name: ns..ne,
                value: vs..ve,
            });
            i = ve + 1;
        }
        out
    }

    /// The decoded value of the attribute whose local name is `name`.
    pub fn attr(tag: &[u8], name: &[u8]) -> Option<String> {
        attrs(tag)
            .into_iter()
            .find(|a| local(&tag[a.name.clone()]) == name)
            .map(|a| unescape(&tag[a.value]))
    }

    /// Decodes the five predefined entities and character references; anything else is kept.
    pub fn unescape(s: &[u8]) -> String {
        let text = String::from_utf8_lossy(s);
        if !text.contains('&') {
            return text.into_owned();
        }
        let mut out = String::with_capacity(text.len());
        let mut rest = &text[..];
        while let Some(amp) = rest.find('&') {
            out.push_str(&rest[..amp]);
            rest = &rest[amp..];
            // Byte search: a fixed-length str slice could split a character.
            let window = &rest.as_bytes()[..rest.len().min(12)];
            let Some(semi) = window.iter().position(|&b| b == b';') else {
                out.push('&');
                rest = &rest[1..];
                continue;
            };
            let ent = &rest[1..semi];
            let ch = match ent {
                "lt" => Some('<'),
                "gt" => Some('>'),
                "amp" => Some('&'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => ent
                    .strip_prefix("#x")
                    .or_else(|| ent.strip_prefix("#X"))
                    .map(|h| u32::from_str_radix(h, 16))
                    .or_else(|| ent.strip_prefix('#').map(|d| d.parse::<u32>()))
                    .and_then(|r| r.ok())
                    .and_then(char::from_u32),
            };
            match ch {
                Some(c) => {
                    out.push(c);
                    rest = &rest[semi + 1..];
                }
                None => {
                    out.push('&');
                    rest = &rest[1..];
                }
            }
        }
        out.push_str(rest);
        out
    }

    /// Escapes text for an attribute value.
    pub fn escape(s: &str) -> String {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    }
}

use xml::{Kind, Tokenizer};

// =========================================================================================
// Streaming XML edits: pass 1 decides, pass 2 copies.

/// Deepest element nesting accepted in a part (Office writes a few dozen levels; a hostile
/// part nested millions deep would otherwise cost memory per level).
const MAX_XML_DEPTH: usize = 2048;

/// The edits decided for one XML part, by token ordinal.
#[derive(Debug, Default)]
struct Edits {
    /// Elements removed with everything inside them.
    remove: HashSet<u32>,
    /// Elements whose start and end tags are removed, their content kept.
    unwrap: HashSet<u32>,
    /// Attributes (by qualified name) removed from a tag.
    drop_attrs: HashMap<u32, Vec<Vec<u8>>>,
    /// Attribute values replaced in a tag (qualified name, new value, already escaped).
    set_attrs: HashMap<u32, Vec<(Vec<u8>, String)>>,
    /// Short descriptions of what was changed, deduplicated by the caller.
    notes: Vec<String>,
}

impl Edits {
    fn is_empty(&self) -> bool {
        self.remove.is_empty()
            && self.unwrap.is_empty()
            && self.drop_attrs.is_empty()
            && self.set_attrs.is_empty()
    }
}

/// Rewrites one tag without the dropped attributes and with the replaced values.
fn rewrite_tag(tag: &[u8], drop: &[Vec<u8>], set: &[(Vec<u8>, String)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(tag.len());
    let mut pos = 0;
    for a in xml::attrs(tag) {
        let name = &tag[a.name.clone()];
        if drop.iter().any(|d| d.as_slice() == name) {
            out.extend_from_slice(&tag[pos..a.whole.start]);
            pos = a.whole.end;
        } else if let Some((_, v)) = set.iter().find(|(n, _)| n.as_slice() == name) {
            out.extend_from_slice(&tag[pos..a.value.start]);
            out.extend_from_slice(v.as_bytes());
            pos = a.value.end;
        }
    }
    out.extend_from_slice(&tag[pos..]);
    out
}

/// Pass 2: copies `src`, applying `edits`. `lenient` parts (VML) only get attribute edits.
fn apply(src: &[u8], edits: &Edits) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(src.len());
    let mut skip_depth = 0usize;
    let mut open: Vec<bool> = Vec::new();
    for (ord, tok) in Tokenizer::new(src).enumerate() {
        let tok = tok?;
        let ord = ord as u32;
        let bytes = &src[tok.start..tok.end];
        if skip_depth > 0 {
            match tok.kind {
                Kind::Start => skip_depth += 1,
                Kind::End => skip_depth -= 1,
                _ => {}
            }
            continue;
        }
        match tok.kind {
            Kind::Start | Kind::Empty => {
                if edits.remove.contains(&ord) {
                    if tok.kind == Kind::Start {
                        skip_depth = 1;
                    }
                    continue;
                }
                let unwrapped = edits.unwrap.contains(&ord);
                if tok.kind == Kind::Start {
                    if open.len() >= MAX_XML_DEPTH {
                        return Err(format!("elements nested deeper than {MAX_XML_DEPTH}"));
                    }
                    open.push(unwrapped);
                }
                if unwrapped {
                    continue;
                }
                let drop = edits.drop_attrs.get(&ord);
                let set = edits.set_attrs.get(&ord);
                if drop.is_some() || set.is_some() {
                    out.extend_from_slice(&rewrite_tag(
                        bytes,
                        drop.map_or(&[][..], |v| v.as_slice()),
                        set.map_or(&[][..], |v| v.as_slice()),
                    ));
                } else {
                    out.extend_from_slice(bytes);
                }
            }
            Kind::End => {
                if open.pop() != Some(true) {
                    out.extend_from_slice(bytes);
                }
            }
            _ => out.extend_from_slice(bytes),
        }
    }
    Ok(out)
}

/// One open element during pass 1.
struct Frame {
    ord: u32,
    name: Vec<u8>,
    children: u32,
    removed_children: u32,
    removed: bool,
}

/// A Word field being read (between its `begin` and `end` field characters).
struct Field {
    /// Ordinals of its field characters and instruction elements.
    parts: Vec<u32>,
    instr: String,
    /// A nested field came before any instruction text: the field name is computed.
    computed: bool,
    in_result: bool,
}

/// Word fields that fetch, run or link something outside the document.
fn dangerous_field(instr: &str, computed: bool) -> bool {
    if computed {
        return true;
    }
    let word: String = instr
        .trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric())
        .collect::<String>()
        .to_uppercase();
    if word == "HYPERLINK" {
        // A link to an outside address (`HYPERLINK "https://..."`), not one to a bookmark
        // of the document (`HYPERLINK \l "_Toc1"`, tables of contents): removed like the
        // hyperlink relationships, its text kept.
        let rest = instr
            .trim_start()
            .get(word.len()..)
            .unwrap_or("")
            .trim_start();
        return !rest.starts_with("\\l");
    }
    matches!(
        word.as_str(),
        "DDE"
            | "DDEAUTO"
            | "INCLUDETEXT"
            | "INCLUDE"
            | "INCLUDEPICTURE"
            | "IMPORT"
            | "LINK"
            | "EMBED"
            | "MACROBUTTON"
            | "DATABASE"
            | "RD"
    )
}

/// What a part is edited for.
struct PartRules<'a> {
    /// Relationship ids of this part that were removed.
    dead: &'a HashSet<String>,
    /// External workbook links were removed from the package: formulas into them go.
    ext_links_removed: bool,
    /// VML (often not well-formed): attribute edits only.
    lenient: bool,
}

/// Elements removed outright wherever they appear: they only exist to carry active content.
const ALWAYS_REMOVE: &[&[u8]] = &[
    b"OLEObject",
    b"oleObjects",
    b"controls",
    b"objectEmbed",
    b"objectLink",
    b"attachedTemplate",
    b"mailMerge",
    b"webExtensionRef",
];

/// Elements removed when they reference a removed relationship (their reference is required).
const REMOVE_WHEN_DEAD: &[&[u8]] = &[
    b"sheet",
    b"externalReference",
    b"subDoc",
    b"control",
    b"oleObject",
    b"taskpane",
    b"webextension",
];

/// Containers removed when everything inside them was removed.
const REMOVE_WHEN_EMPTIED: &[&[u8]] = &[
    b"AlternateContent",
    b"Choice",
    b"Fallback",
    b"externalReferences",
    b"definedNames",
    b"object",
];

fn is_auto_macro_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    let n = n.strip_prefix("_xlnm.").unwrap_or(&n);
    [
        "auto_open",
        "auto_close",
        "auto_activate",
        "auto_deactivate",
    ]
    .iter()
    .any(|p| n.starts_with(p))
}

/// A formula that reaches into an external workbook (`[1]Sheet!A1`, `[2]!name`).
fn refers_external(formula: &str) -> bool {
    let b = formula.as_bytes();
    b.windows(2)
        .enumerate()
        .any(|(i, w)| w[0] == b'[' && w[1].is_ascii_digit() && b[i + 1..].contains(&b']'))
}

/// A formula or name that mentions one of the removed sheets (`Macro1!A1`, `'Macro 1'!A1`).
fn refers_sheet(formula: &str, sheets: &[String]) -> bool {
    let f = formula.to_lowercase();
    sheets.iter().any(|s| {
        let s = s.to_lowercase();
        f.contains(&format!("{s}!")) || f.contains(&format!("'{}'!", s.replace('\'', "''")))
    })
}

/// Pass 1 over one XML part of an OOXML package.
fn plan_part(src: &[u8], rules: &PartRules) -> Result<Edits, String> {
    let mut e = Edits::default();
    let mut stack: Vec<Frame> = Vec::new();
    let mut fields: Vec<Field> = Vec::new();
    let mut instr_open = false;
    // A definedName or f element whose text decides its fate: (ordinal, local name, text,
    // shared-formula group).
    let mut judged: Option<(u32, Vec<u8>, String, Option<String>)> = None;
    let mut removed_sheets: Vec<String> = Vec::new();
    let mut removed_shared: HashSet<String> = HashSet::new();

    /// Removes the element at `ord`, counted against its parent, which is the open element
    /// below stack height `height` (the element's own position on the stack, or where it
    /// would be).
    fn mark_removed(e: &mut Edits, stack: &mut [Frame], ord: u32, height: usize) {
        if e.remove.insert(ord) && height > 0 {
            if let Some(p) = stack.get_mut(height - 1) {
                p.removed_children += 1;
            }
        }
    }

    for (ord, tok) in Tokenizer::new(src).enumerate() {
        let tok = tok?;
        let ord = ord as u32;
        let bytes = &src[tok.start..tok.end];
        match tok.kind {
            Kind::Start | Kind::Empty => {
                let qname = xml::tag_name(bytes).to_vec();
                let local = xml::local(&qname).to_vec();
                if let Some(parent) = stack.last_mut() {
                    parent.children += 1;
                }
                let depth = stack.len();
                let mut remove = false;
                let attrs = xml::attrs(bytes);
                // References to removed relationships.
                let dead_attrs: Vec<Vec<u8>> = attrs
                    .iter()
                    .filter(|_| !rules.dead.is_empty())
                    .filter(|a| {
                        let n = &bytes[a.name.clone()];
                        n.contains(&b':')
                            && !n.starts_with(b"xmlns")
                            && rules.dead.contains(&xml::unescape(&bytes[a.value.clone()]))
                    })
                    .map(|a| bytes[a.name.clone()].to_vec())
                    .collect();
                if !rules.lenient {
                    if ALWAYS_REMOVE.contains(&local.as_slice()) {
                        remove = true;
                        e.notes.push(element_note(&local).into());
                    } else if local == b"oleObj" {
                        // PowerPoint: the whole graphic frame holding the object goes.
                        if let Some(i) = stack
                            .iter()
                            .rposition(|f| xml::local(&f.name) == b"graphicFrame")
                        {
                            let ford = stack[i].ord;
                            stack[i].removed = true;
                            mark_removed(&mut e, &mut stack, ford, i);
                        } else {
                            remove = true;
                        }
                        e.notes.push(element_note(b"oleObj").into());
                    } else if local == b"svgBlip" && !dead_attrs.is_empty() {
                        if let Some(i) = stack.iter().rposition(|f| xml::local(&f.name) == b"ext") {
                            let ford = stack[i].ord;
                            stack[i].removed = true;
                            mark_removed(&mut e, &mut stack, ford, i);
                        } else {
                            remove = true;
                        }
                    } else if !dead_attrs.is_empty() && REMOVE_WHEN_DEAD.contains(&local.as_slice())
                    {
                        remove = true;
                        if local == b"sheet" {
                            if let Some(n) = xml::attr(bytes, b"name") {
                                removed_sheets.push(n);
                            }
                        }
                    } else if local == b"fldSimple" {
                        let instr = xml::attr(bytes, b"instr").unwrap_or_default();
                        if dangerous_field(&instr, false) {
                            if tok.kind == Kind::Empty {
                                remove = true;
                            } else {
                                e.unwrap.insert(ord);
                            }
                            e.notes.push(field_note(&instr));
                        }
                    } else if local == b"fldChar" {
                        match xml::attr(bytes, b"fldCharType").as_deref() {
                            Some("begin") => {
                                if let Some(outer) = fields.last_mut() {
                                    if !outer.in_result && outer.instr.trim().is_empty() {
                                        outer.computed = true;
                                    }
                                }
                                fields.push(Field {
                                    parts: vec![ord],
                                    instr: String::new(),
                                    computed: false,
                                    in_result: false,
                                });
                            }
                            Some("separate") => {
                                if let Some(f) = fields.last_mut() {
                                    f.parts.push(ord);
                                    f.in_result = true;
                                }
                            }
                            Some("end") => {
                                if let Some(mut f) = fields.pop() {
                                    f.parts.push(ord);
                                    if dangerous_field(&f.instr, f.computed) {
                                        e.notes.push(field_note(&f.instr));
                                        for p in f.parts {
                                            e.remove.insert(p);
                                        }
                                    }
                                }
                            }
                            _ => {}
                        }
                    } else if matches!(local.as_slice(), b"instrText" | b"delInstrText") {
                        if let Some(f) = fields.last_mut() {
                            if !f.in_result {
                                f.parts.push(ord);
                                instr_open = tok.kind == Kind::Start;
                            }
                        }
                    } else if local == b"definedName" {
                        let flag =
                            |n: &[u8]| xml::attr(bytes, n).is_some_and(|v| v == "1" || v == "true");
                        let name = xml::attr(bytes, b"name").unwrap_or_default();
                        if is_auto_macro_name(&name)
                            || flag(b"xlm")
                            || flag(b"vbProcedure")
                            || flag(b"function")
                        {
                            remove = true;
                            e.notes.push(format!("macro name {name:?} removed"));
                        } else if tok.kind == Kind::Start {
                            judged = Some((ord, local.clone(), String::new(), None));
                        }
                    } else if local == b"f" && rules.ext_links_removed {
                        let shared = xml::attr(bytes, b"t").as_deref() == Some("shared");
                        let si = xml::attr(bytes, b"si");
                        if shared && si.as_ref().is_some_and(|s| removed_shared.contains(s)) {
                            remove = true;
                        } else if tok.kind == Kind::Start {
                            judged =
                                Some((ord, local.clone(), String::new(), si.filter(|_| shared)));
                        }
                    } else if matches!(local.as_slice(), b"hlinkClick" | b"hlinkHover") {
                        if let Some(a) = xml::attr(bytes, b"action") {
                            let a = a.to_ascii_lowercase();
                            if ["ppaction://program", "ppaction://macro", "ppaction://ole"]
                                .iter()
                                .any(|p| a.starts_with(p))
                            {
                                let qn = attrs
                                    .iter()
                                    .find(|x| xml::local(&bytes[x.name.clone()]) == b"action")
                                    .map(|x| bytes[x.name.clone()].to_vec());
                                if let Some(qn) = qn {
                                    e.drop_attrs.entry(ord).or_default().push(qn);
                                    e.notes.push("program or macro action removed".into());
                                }
                            }
                        }
                    } else if local == b"workbookView" && !rules.dead.is_empty() {
                        for a in &attrs {
                            let n = &bytes[a.name.clone()];
                            if matches!(n, b"activeTab" | b"firstSheet") {
                                e.drop_attrs.entry(ord).or_default().push(n.to_vec());
                            }
                        }
                    }
                }
                if remove {
                    mark_removed(&mut e, &mut stack, ord, depth);
                } else if !dead_attrs.is_empty() {
                    e.drop_attrs.entry(ord).or_default().extend(dead_attrs);
                }
                if tok.kind == Kind::Start {
                    if stack.len() >= MAX_XML_DEPTH {
                        return Err(format!("elements nested deeper than {MAX_XML_DEPTH}"));
                    }
                    stack.push(Frame {
                        ord,
                        name: qname,
                        children: 0,
                        removed_children: 0,
                        removed: remove,
                    });
                }
            }
            Kind::End => {
                let qname = xml::tag_name(bytes);
                let frame = if rules.lenient {
                    match stack.iter().rposition(|f| f.name == qname) {
                        Some(i) => {
                            let f = stack.drain(i..).next();
                            f
                        }
                        None => None,
                    }
                } else {
                    match stack.pop() {
                        Some(f) if f.name == qname => Some(f),
                        Some(f) => {
                            return Err(format!(
                                "mismatched end tag </{}> for <{}>",
                                String::from_utf8_lossy(qname),
                                String::from_utf8_lossy(&f.name)
                            ))
                        }
                        None => {
                            return Err(format!(
                                "end tag </{}> without a start",
                                String::from_utf8_lossy(qname)
                            ))
                        }
                    }
                };
                let Some(frame) = frame else { continue };
                let local = xml::local(&frame.name);
                if matches!(local, b"instrText" | b"delInstrText") {
                    instr_open = false;
                }
                if let Some((jord, jlocal, text, si)) = judged.take() {
                    if jord == frame.ord {
                        let drop = if jlocal == b"definedName" {
                            refers_sheet(&text, &removed_sheets)
                                || (rules.ext_links_removed && refers_external(&text))
                        } else {
                            refers_external(&text)
                        };
                        if drop {
                            if jlocal == b"f" {
                                // Cells sharing a removed master formula lose theirs too.
                                if let Some(si) = si {
                                    removed_shared.insert(si);
                                }
                                e.notes.push(
                                    "formula into a removed external workbook removed".into(),
                                );
                            } else {
                                e.notes
                                    .push("name referring to removed content removed".into());
                            }
                            let depth = stack.len();
                            mark_removed(&mut e, &mut stack, jord, depth);
                        }
                    } else {
                        judged = Some((jord, jlocal, text, si));
                    }
                }
                if !frame.removed && frame.children > 0 && frame.children == frame.removed_children
                {
                    if local == b"sheets" {
                        return Err("no worksheet is left once macro sheets are removed".into());
                    }
                    if REMOVE_WHEN_EMPTIED.contains(&local) {
                        let depth = stack.len();
                        mark_removed(&mut e, &mut stack, frame.ord, depth);
                    }
                }
            }
            Kind::Text | Kind::CData if instr_open || judged.is_some() => {
                let text = if tok.kind == Kind::CData {
                    String::from_utf8_lossy(&bytes[9..bytes.len() - 3]).into_owned()
                } else {
                    xml::unescape(bytes)
                };
                if instr_open {
                    if let Some(f) = fields.last_mut() {
                        if f.instr.len() < 4096 {
                            f.instr.push_str(&text);
                        }
                    }
                }
                if let Some((_, _, t, _)) = judged.as_mut() {
                    if t.len() < 8192 {
                        t.push_str(&text);
                    }
                }
            }
            Kind::Text | Kind::CData | Kind::Other => {}
        }
    }
    // Fields never closed: judge them as they are.
    for f in fields {
        if dangerous_field(&f.instr, f.computed) {
            e.notes.push(field_note(&f.instr));
            for p in f.parts {
                e.remove.insert(p);
            }
        }
    }
    if !rules.lenient && !stack.is_empty() {
        return Err("unclosed elements".into());
    }
    if rules.lenient {
        e.remove.clear();
        e.unwrap.clear();
    }
    Ok(e)
}

/// What the removal of an element means to the reader of the notice.
fn element_note(local: &[u8]) -> &'static str {
    match local {
        b"OLEObject" | b"oleObjects" | b"objectEmbed" | b"objectLink" | b"oleObj" => {
            "embedded OLE object removed"
        }
        b"controls" => "ActiveX control removed",
        b"attachedTemplate" => "attached template removed",
        b"mailMerge" => "mail merge data source and query removed",
        b"webExtensionRef" => "web add-in removed",
        _ => "active element removed",
    }
}

fn field_note(instr: &str) -> String {
    let word: String = instr
        .trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric())
        .take(20)
        .collect::<String>()
        .to_uppercase();
    if word == "HYPERLINK" {
        "hyperlink field to an outside address removed (its text is kept)".into()
    } else if word.is_empty() {
        "field with a computed name removed".into()
    } else {
        format!("{word} field removed")
    }
}

// =========================================================================================
// Package structure: content types and relationships.

struct Rel {
    id: String,
    typ: String,
    target: String,
    external: bool,
}

fn parse_rels(src: &[u8]) -> Result<Vec<Rel>, String> {
    let mut out = Vec::new();
    for tok in Tokenizer::new(src) {
        let tok = tok?;
        if !matches!(tok.kind, Kind::Start | Kind::Empty) {
            continue;
        }
        let tag = &src[tok.start..tok.end];
        if xml::local(xml::tag_name(tag)) != b"Relationship" {
            continue;
        }
        out.push(Rel {
            id: xml::attr(tag, b"Id").unwrap_or_default(),
            typ: xml::attr(tag, b"Type").unwrap_or_default(),
            target: xml::attr(tag, b"Target").unwrap_or_default(),
            external: xml::attr(tag, b"TargetMode")
                .is_some_and(|m| m.eq_ignore_ascii_case("External")),
        });
    }
    Ok(out)
}

#[derive(Default)]
struct ContentTypes {
    defaults: HashMap<String, String>,
    overrides: HashMap<String, String>,
}

impl ContentTypes {
    fn parse(src: &[u8]) -> Result<ContentTypes, String> {
        let mut ct = ContentTypes::default();
        for tok in Tokenizer::new(src) {
            let tok = tok?;
            if !matches!(tok.kind, Kind::Start | Kind::Empty) {
                continue;
            }
            let tag = &src[tok.start..tok.end];
            let ctype = xml::attr(tag, b"ContentType").unwrap_or_default();
            match xml::local(xml::tag_name(tag)) {
                b"Default" => {
                    if let Some(ext) = xml::attr(tag, b"Extension") {
                        ct.defaults.insert(ext.to_lowercase(), ctype);
                    }
                }
                b"Override" => {
                    if let Some(p) = xml::attr(tag, b"PartName") {
                        ct.overrides.insert(part_key(&p), ctype);
                    }
                }
                _ => {}
            }
        }
        Ok(ct)
    }

    fn of(&self, part: &str) -> String {
        if let Some(t) = self.overrides.get(&part_key(part)) {
            return t.clone();
        }
        let ext = part.rsplit('.').next().unwrap_or("").to_lowercase();
        self.defaults.get(&ext).cloned().unwrap_or_default()
    }
}

/// The comparison key of a part name: no leading '/', percent-decoded, lower case.
fn part_key(name: &str) -> String {
    percent_decode(name.trim_start_matches('/')).to_lowercase()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let Some(v) = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The part a relationship target names, relative to the part that holds the relationship.
fn resolve(source_part: &str, target: &str) -> Option<String> {
    let target = target.split('#').next().unwrap_or("");
    if target.is_empty() {
        return None;
    }
    let joined = if let Some(abs) = target.strip_prefix('/') {
        abs.to_string()
    } else {
        let dir = match source_part.rfind('/') {
            Some(i) => &source_part[..i + 1],
            None => "",
        };
        format!("{dir}{target}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for c in joined.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

/// The relationships part of `part` (`word/document.xml` → `word/_rels/document.xml.rels`).
fn rels_of(part: &str) -> String {
    match part.rfind('/') {
        Some(i) => format!("{}_rels/{}.rels", &part[..i + 1], &part[i + 1..]),
        None => format!("_rels/{part}.rels"),
    }
}

/// The last segment of a relationship type URI, lower case.
fn rel_kind(typ: &str) -> String {
    typ.rsplit('/').next().unwrap_or("").to_ascii_lowercase()
}

/// Why a relationship (and its target) is removed, if it is.
fn bad_rel(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "vbaproject" | "wordvbadata" => "VBA macro project removed",
        "vbaprojectsignature" | "vbaprojectsignatureagile" | "vbaprojectsignaturev3" => {
            "VBA project signature removed"
        }
        "oleobject" | "package" => "embedded OLE object removed",
        "control" | "activexcontrolbinary" => "ActiveX control removed",
        "extensibility" => "ribbon customisation (customUI) removed",
        "attachedtemplate" => "attached template removed",
        "externallink" | "externallinkpath" => "external workbook link removed",
        "xlmacrosheet" | "xlintlmacrosheet" => "Excel 4 macro sheet removed",
        "keymapcustomizations" | "attachedtoolbars" => {
            "macro key and toolbar customisation removed"
        }
        "connections" | "querytable" => "external data connection removed",
        "webextension" | "webextensiontaskpanes" => "web add-in removed",
        _ => return None,
    })
}

/// Why a part is removed by its name, if it is.
fn bad_name(key: &str) -> Option<&'static str> {
    let base = key.rsplit('/').next().unwrap_or(key);
    if base == "vbaproject.bin" || base == "vbadata.xml" {
        return Some("VBA macro project removed");
    }
    if base.starts_with("vbaprojectsignature") {
        return Some("VBA project signature removed");
    }
    let has = |d: &str| key.starts_with(d) || key.contains(&format!("/{d}"));
    if has("activex/") {
        return Some("ActiveX control removed");
    }
    if has("embeddings/") {
        return Some("embedded OLE object removed");
    }
    if has("customui/") || base == "customui14.xml" || base == "customui.xml" {
        return Some("ribbon customisation (customUI) removed");
    }
    if has("macrosheets/") || has("intlmacrosheets/") {
        return Some("Excel 4 macro sheet removed");
    }
    if has("externallinks/") {
        return Some("external workbook link removed");
    }
    if base == "attachedtoolbars.bin" || (key.starts_with("word/") && base == "customizations.xml")
    {
        return Some("macro key and toolbar customisation removed");
    }
    if has("webextensions/") {
        return Some("web add-in removed");
    }
    if has("querytables/") || base == "connections.xml" {
        return Some("external data connection removed");
    }
    None
}

/// Why a part is removed by its content type, if it is.
fn bad_type(ctype: &str) -> Option<&'static str> {
    let t = ctype.to_ascii_lowercase();
    let has = |s: &str| t.contains(s);
    if has("vbaproject") || has("vbadata") {
        return Some("VBA macro project removed");
    }
    if has("activex") {
        return Some("ActiveX control removed");
    }
    if has("oleobject") {
        return Some("embedded OLE object removed");
    }
    if has("macrosheet") {
        return Some("Excel 4 macro sheet removed");
    }
    if has("externallink") {
        return Some("external workbook link removed");
    }
    if has("webextension") {
        return Some("web add-in removed");
    }
    if has("spreadsheetml.connections") || has("querytable") {
        return Some("external data connection removed");
    }
    if t == "image/svg+xml" {
        return Some("SVG image removed (may carry script)");
    }
    None
}

/// The kind of document a package is, by its main part's content type.
struct DocKind {
    /// The macro-free main content type.
    main: &'static str,
    mime: &'static str,
    ext: &'static str,
    macro_enabled: bool,
}

fn doc_kind(main_type: &str) -> Result<DocKind, String> {
    let t = main_type.to_ascii_lowercase();
    let k = |main, mime, ext, macro_enabled| {
        Ok(DocKind {
            main,
            mime,
            ext,
            macro_enabled,
        })
    };
    match t.as_str() {
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml" => k(
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "docx",
            false,
        ),
        "application/vnd.ms-word.document.macroenabled.main+xml" => k(
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "docx",
            true,
        ),
        "application/vnd.openxmlformats-officedocument.wordprocessingml.template.main+xml" => k(
            "application/vnd.openxmlformats-officedocument.wordprocessingml.template.main+xml",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.template",
            "dotx",
            false,
        ),
        "application/vnd.ms-word.template.macroenabledtemplate.main+xml" => k(
            "application/vnd.openxmlformats-officedocument.wordprocessingml.template.main+xml",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.template",
            "dotx",
            true,
        ),
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml" => k(
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "xlsx",
            false,
        ),
        "application/vnd.ms-excel.sheet.macroenabled.main+xml" => k(
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "xlsx",
            true,
        ),
        "application/vnd.openxmlformats-officedocument.spreadsheetml.template.main+xml" => k(
            "application/vnd.openxmlformats-officedocument.spreadsheetml.template.main+xml",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.template",
            "xltx",
            false,
        ),
        "application/vnd.ms-excel.template.macroenabled.main+xml" => k(
            "application/vnd.openxmlformats-officedocument.spreadsheetml.template.main+xml",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.template",
            "xltx",
            true,
        ),
        "application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml" => k(
            "application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml",
            "application/vnd.openxmlformats-officedocument.presentationml.presentation",
            "pptx",
            false,
        ),
        "application/vnd.ms-powerpoint.presentation.macroenabled.main+xml" => k(
            "application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml",
            "application/vnd.openxmlformats-officedocument.presentationml.presentation",
            "pptx",
            true,
        ),
        "application/vnd.openxmlformats-officedocument.presentationml.slideshow.main+xml" => k(
            "application/vnd.openxmlformats-officedocument.presentationml.slideshow.main+xml",
            "application/vnd.openxmlformats-officedocument.presentationml.slideshow",
            "ppsx",
            false,
        ),
        "application/vnd.ms-powerpoint.slideshow.macroenabled.main+xml" => k(
            "application/vnd.openxmlformats-officedocument.presentationml.slideshow.main+xml",
            "application/vnd.openxmlformats-officedocument.presentationml.slideshow",
            "ppsx",
            true,
        ),
        "application/vnd.openxmlformats-officedocument.presentationml.template.main+xml" => k(
            "application/vnd.openxmlformats-officedocument.presentationml.template.main+xml",
            "application/vnd.openxmlformats-officedocument.presentationml.template",
            "potx",
            false,
        ),
        "application/vnd.ms-powerpoint.template.macroenabled.main+xml" => k(
            "application/vnd.openxmlformats-officedocument.presentationml.template.main+xml",
            "application/vnd.openxmlformats-officedocument.presentationml.template",
            "potx",
            true,
        ),
        _ if t.contains("sheet.binary") => Err("binary workbook (xlsb) cannot be disarmed".into()),
        _ if t.contains("addin") => Err("Office add-ins are macro containers".into()),
        "" => Err("the main document part has no content type".into()),
        _ => Err(format!("unknown main document type {t:?}")),
    }
}

fn is_xml_part(key: &str, ctype: &str) -> bool {
    let t = ctype.to_ascii_lowercase();
    t.ends_with("+xml")
        || t.ends_with("/xml")
        || key.ends_with(".xml")
        || key.ends_with(".rels")
        || key.ends_with(".vml")
        || t.contains("vmldrawing")
}

/// Categories that never belong inside a document package as a binary part.
fn bad_binary(head: &[u8]) -> Option<&'static str> {
    let d = sniff::sniff(head)?;
    match d.category {
        Category::Image | Category::Other => None,
        _ => Some(d.name),
    }
}

// =========================================================================================
// The OOXML converter.

/// Why a package could not be disarmed.
#[derive(Debug, thiserror::Error)]
enum OfficeError {
    #[error("{0}")]
    Archive(#[from] ArchiveError),
    #[error("{0}")]
    Package(String),
    #[error("part {0}: {1}")]
    Xml(String, String),
}

/// Rebuilds an OOXML package (docx/xlsx/pptx and macro-enabled forms) without active parts.
pub fn disarm(data: &[u8], name: &str, filename: &str, policy: &Policy) -> Verdict {
    let _scope = TreeScope::enter(&policy.limits);
    let text_only = policy.attachments.office == AttachmentAction::Text;
    match rebuild(data, filename, &policy.limits, text_only) {
        Ok(d) => Verdict::Keep(d),
        Err(OfficeError::Archive(ArchiveError::Encrypted(m))) => {
            archive::encrypted_verdict(policy, &format!("{name} (part {m:?})"))
        }
        Err(e) => Verdict::Remove {
            reason: format!("{name}: {e}"),
        },
    }
}

fn rebuild(
    data: &[u8],
    filename: &str,
    limits: &Limits,
    text_only: bool,
) -> Result<Disarmed, OfficeError> {
    let mut zin = ZipIn::open(data, limits)?;
    let entries = zin.entries().to_vec();
    let index: HashMap<String, usize> = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| !e.is_dir)
        .map(|(i, e)| (part_key(&e.name), i))
        .collect();
    let read = |zin: &mut ZipIn, key: &str| -> Result<Option<Vec<u8>>, OfficeError> {
        match index.get(key) {
            Some(&i) => Ok(Some(zin.read(i)?)),
            None => Ok(None),
        }
    };
    let ct_src = read(&mut zin, "[content_types].xml")?.ok_or_else(|| {
        OfficeError::Package("no [Content_Types].xml: not an OOXML package".into())
    })?;
    check_utf8_xml("[Content_Types].xml", &ct_src)?;
    let ctypes = ContentTypes::parse(&ct_src)
        .map_err(|e| OfficeError::Xml("[Content_Types].xml".into(), e))?;

    // Walk the relationship graph from the package root.
    let mut changes: Vec<String> = Vec::new();
    let mut kept: HashSet<String> = HashSet::new(); // part keys
    let mut dead: HashMap<String, HashSet<String>> = HashMap::new(); // source key → rel ids
    let mut rels_src: HashMap<String, Vec<u8>> = HashMap::new(); // rels key → bytes
    let mut main: Option<String> = None;
    let mut ext_links_removed = false;
    let mut external_hyperlinks = 0usize;
    // For each kept part, the relationships (source part, id) that reach it.
    let mut incoming: HashMap<String, Vec<(String, String)>> = HashMap::new();
    let mut queue: VecDeque<String> = VecDeque::new();
    queue.push_back(String::new()); // the package root
    let mut visited: HashSet<String> = HashSet::new();
    // Parts removed through their relationship (reported by why, not as unreferenced).
    let mut removed_targets: HashSet<String> = HashSet::new();
    while let Some(source) = queue.pop_front() {
        if limits.expired() {
            return Err(ArchiveError::Deadline.into());
        }
        if !visited.insert(source.clone()) {
            continue;
        }
        let rels_key = if source.is_empty() {
            "_rels/.rels".to_string()
        } else {
            part_key(&rels_of(&source))
        };
        let Some(src) = read(&mut zin, &rels_key)? else {
            continue;
        };
        check_utf8_xml(&rels_key, &src)?;
        let rels = parse_rels(&src).map_err(|e| OfficeError::Xml(rels_key.clone(), e))?;
        rels_src.insert(rels_key, src);
        let mut dead_here = HashSet::new();
        for rel in rels {
            let kind = rel_kind(&rel.typ);
            if rel.external && kind == "hyperlink" {
                // Counted: one line for all of them (their text stays in the document).
                external_hyperlinks += 1;
                dead_here.insert(rel.id);
                continue;
            }
            if rel.external {
                // The type's own spelling (oleObject, attachedTemplate, frame, image).
                let shown: String = rel
                    .typ
                    .rsplit('/')
                    .next()
                    .unwrap_or("")
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric())
                    .take(40)
                    .collect();
                note(
                    &mut changes,
                    format!("link to an outside resource removed ({shown})"),
                );
                if kind.starts_with("externallink") {
                    ext_links_removed = true;
                }
                dead_here.insert(rel.id);
                continue;
            }
            let Some(target) = resolve(&source, &rel.target) else {
                dead_here.insert(rel.id);
                continue;
            };
            let key = part_key(&target);
            let why = bad_rel(&kind)
                .or_else(|| bad_name(&key))
                .or_else(|| bad_type(&ctypes.of(&key)));
            if let Some(why) = why {
                note(&mut changes, why.to_string());
                removed_targets.insert(key.clone());
                if why.starts_with("external workbook") {
                    ext_links_removed = true;
                }
                dead_here.insert(rel.id);
                continue;
            }
            let Some(&i) = index.get(&key) else {
                continue; // a dangling reference is harmless; nothing to keep
            };
            if !is_xml_part(&key, &ctypes.of(&key)) {
                let head = zin.peek(i, sniff::SNIFF_LEN)?;
                if let Some(what) = bad_binary(&head) {
                    note(&mut changes, format!("embedded {what} content removed"));
                    removed_targets.insert(key.clone());
                    dead_here.insert(rel.id);
                    continue;
                }
            }
            if source.is_empty() && kind == "officedocument" && main.is_none() {
                main = Some(key.clone());
            }
            kept.insert(key.clone());
            incoming
                .entry(key.clone())
                .or_default()
                .push((source.clone(), rel.id));
            queue.push_back(key);
        }
        dead.insert(source, dead_here);
    }
    if external_hyperlinks > 0 {
        note(
            &mut changes,
            format!("{external_hyperlinks} hyperlinks to outside addresses removed (their text is kept)"),
        );
    }
    let main = main.ok_or_else(|| OfficeError::Package("no main document part".into()))?;
    let kind = doc_kind(&ctypes.of(&main)).map_err(OfficeError::Package)?;
    if kind.macro_enabled {
        note(
            &mut changes,
            format!("converted to a macro-free .{} document", kind.ext),
        );
    }
    if ext_links_removed {
        // Formulas into removed workbooks go, so the calculation chain (a cache of formula
        // cells) would be stale: drop it with its relationships; Excel rebuilds it.
        let chains: Vec<String> = kept
            .iter()
            .filter(|k| {
                ctypes.of(k).to_ascii_lowercase().contains("calcchain")
                    || k.ends_with("/calcchain.xml")
            })
            .cloned()
            .collect();
        for k in chains {
            kept.remove(&k);
            removed_targets.insert(k.clone());
            for (source, id) in incoming.remove(&k).unwrap_or_default() {
                dead.entry(source).or_default().insert(id);
            }
            note(
                &mut changes,
                "calculation chain dropped (rebuilt by the application)".into(),
            );
        }
    }
    // Parts present but unreachable are not delivered.
    let unreachable = index
        .keys()
        .filter(|k| {
            !kept.contains(*k)
                && !k.ends_with(".rels")
                && !rels_src.contains_key(*k)
                && !removed_targets.contains(*k)
                && *k != "[content_types].xml"
        })
        .count();
    if unreachable > 0 {
        note(
            &mut changes,
            format!("{unreachable} unreferenced part(s) removed"),
        );
    }
    if text_only {
        return extract_text(&mut zin, &index, &kept, &ctypes, &kind, limits, filename);
    }

    // Write the new package: content types first, then the kept parts in their order.
    let mut out = ZipWriter::new(Cursor::new(Vec::new()));
    // Fast deflate: the rebuilt package is mailed (base64) and opened once; CPU matters more
    // than the last percent of size.
    let opts = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .compression_level(Some(1));
    let new_ct = rewrite_content_types(&ct_src, &kept, &rels_src, &main, kind.main)
        .map_err(|e| OfficeError::Xml("[Content_Types].xml".into(), e))?;
    put(&mut out, "[Content_Types].xml", &new_ct, opts)?;
    let empty = HashSet::new();
    // Images re-encoded, images replaced by a placeholder.
    let mut images = (0usize, 0usize);
    for e in &entries {
        if e.is_dir {
            continue;
        }
        if limits.expired() {
            return Err(ArchiveError::Deadline.into());
        }
        let key = part_key(&e.name);
        if key == "[content_types].xml" {
            continue;
        }
        if let Some(src) = rels_src.get(&key) {
            let source = source_of_rels(&key);
            if !source.is_empty() && !kept.contains(&source) {
                continue;
            }
            let d = dead.get(&source).unwrap_or(&empty);
            let edited = edit_rels(src, d).map_err(|x| OfficeError::Xml(e.name.clone(), x))?;
            put(&mut out, &e.name, &edited, opts)?;
            continue;
        }
        if !kept.contains(&key) {
            continue;
        }
        let Some(&i) = index.get(&key) else { continue };
        let bytes = zin.read(i)?;
        let ctype = ctypes.of(&key);
        if !is_xml_part(&key, &ctype) {
            if let Some(what) = bad_binary(&bytes) {
                return Err(OfficeError::Package(format!(
                    "part {} changed type while read ({what})",
                    e.name
                )));
            }
            let bytes = match media(&key, &ctype, bytes, limits)? {
                Media::Reencoded(b) => {
                    images.0 += 1;
                    b
                }
                Media::Placeholder(b) => {
                    images.1 += 1;
                    b
                }
                Media::AsIs(b) => b,
            };
            put(&mut out, &e.name, &bytes, opts)?;
            continue;
        }
        check_utf8_xml(&e.name, &bytes)?;
        if !looks_like_xml(&bytes) {
            return Err(OfficeError::Xml(
                e.name.clone(),
                "declared as XML but is not XML".into(),
            ));
        }
        let rules = PartRules {
            dead: dead.get(&key).unwrap_or(&empty),
            ext_links_removed,
            lenient: key.ends_with(".vml") || ctype.to_ascii_lowercase().contains("vmldrawing"),
        };
        let edits = plan_part(&bytes, &rules).map_err(|x| OfficeError::Xml(e.name.clone(), x))?;
        for n in &edits.notes {
            note(&mut changes, n.clone());
        }
        if edits.is_empty() {
            put(&mut out, &e.name, &bytes, opts)?;
        } else {
            let edited = apply(&bytes, &edits).map_err(|x| OfficeError::Xml(e.name.clone(), x))?;
            put(&mut out, &e.name, &edited, opts)?;
        }
    }
    if images.0 > 0 {
        note(
            &mut changes,
            format!(
                "{} embedded images re-encoded from pixels (metadata removed)",
                images.0
            ),
        );
    }
    if images.1 > 0 {
        note(
            &mut changes,
            format!(
                "{} embedded images that could not be decoded replaced by a blank image",
                images.1
            ),
        );
    }
    let data = out
        .finish()
        .map_err(|e| OfficeError::Package(format!("could not be rebuilt ({e})")))?
        .into_inner();
    Ok(Disarmed {
        data,
        content_type: kind.mime.to_string(),
        extension: extension_if_changed(filename, kind.ext),
        changes,
        extra: Vec::new(),
    })
}

/// What an image part of a package becomes.
enum Media {
    /// Re-encoded from its pixels in the same format.
    Reencoded(Vec<u8>),
    /// Undecodable: a blank 1×1 image of the declared (or found) format.
    Placeholder(Vec<u8>),
    /// Not an image, or a picture format not decoded here (EMF, WMF, JPEG XR): unchanged.
    AsIs(Vec<u8>),
}

/// The raster format a part claims by its content type or extension.
fn declared_image(key: &str, ctype: &str) -> Option<image::Kind> {
    use image::Kind as K;
    let t = ctype.to_ascii_lowercase();
    let ext = key.rsplit_once('.').map_or("", |(_, e)| e);
    Some(match (t.as_str(), ext) {
        ("image/png", _) | (_, "png") => K::Png,
        ("image/jpeg" | "image/jpg" | "image/pjpeg", _) | (_, "jpg" | "jpeg" | "jpe" | "jfif") => {
            K::Jpeg
        }
        ("image/gif", _) | (_, "gif") => K::Gif,
        ("image/bmp" | "image/x-bmp", _) | (_, "bmp" | "dib") => K::Bmp,
        ("image/tiff", _) | (_, "tif" | "tiff") => K::Tiff,
        ("image/webp", _) | (_, "webp") => K::WebP,
        _ => return None,
    })
}

/// Image parts (`word/media/*`, `xl/media/*`, `ppt/media/*`, the thumbnail) are re-encoded
/// through [`super::image`] in their own format, so that the name, the content type and every
/// relationship stay valid while EXIF (GPS positions), comments and trailing data go; an image
/// that cannot be decoded (damaged, too large, a polyglot) becomes a blank 1×1 image of its
/// format rather than breaking the document. A part counts as an image when its content type
/// or extension says so; other binary parts are returned unchanged.
fn media(key: &str, ctype: &str, bytes: Vec<u8>, limits: &Limits) -> Result<Media, OfficeError> {
    let is_image = ctype.to_ascii_lowercase().starts_with("image/");
    let declared = declared_image(key, ctype);
    if !is_image && declared.is_none() {
        return Ok(Media::AsIs(bytes));
    }
    let found = image::Kind::detect(&bytes);
    let Some(kind) = found.or(declared) else {
        return Ok(Media::AsIs(bytes));
    };
    if found.is_some() {
        match image::reencode_same_format(&bytes, limits) {
            Ok((out, _)) => return Ok(Media::Reencoded(out)),
            Err(image::Refusal::Deadline) => return Err(ArchiveError::Deadline.into()),
            Err(_) => {}
        }
    }
    let blank = image::placeholder(kind).map_err(|e| {
        OfficeError::Package(format!(
            "part {key}: no placeholder image could be made ({e})"
        ))
    })?;
    Ok(Media::Placeholder(blank))
}

/// Records a change once.
fn note(changes: &mut Vec<String>, s: String) {
    if !changes.contains(&s) {
        changes.push(s);
    }
}

fn extension_if_changed(filename: &str, ext: &str) -> Option<String> {
    let current = filename
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase());
    (current.as_deref() != Some(ext)).then(|| ext.to_string())
}

fn put(
    out: &mut ZipWriter<Cursor<Vec<u8>>>,
    name: &str,
    data: &[u8],
    opts: SimpleFileOptions,
) -> Result<(), OfficeError> {
    out.start_file(name, opts)
        .and_then(|()| out.write_all(data).map_err(Into::into))
        .map_err(|e| OfficeError::Package(format!("could not be rebuilt ({e})")))
}

/// UTF-16 parts are legal OPC but never written by Office; the tokenizer reads bytes as an
/// ASCII-compatible encoding, so they are refused rather than misread.
fn check_utf8_xml(name: &str, data: &[u8]) -> Result<(), OfficeError> {
    if data.starts_with(b"\xFF\xFE") || data.starts_with(b"\xFE\xFF") {
        return Err(OfficeError::Xml(
            name.to_string(),
            "UTF-16 XML cannot be disarmed".into(),
        ));
    }
    Ok(())
}

/// XML starts with markup (after an optional BOM and white space); a part declared as XML
/// that does not could smuggle any binary past the binary-part checks.
fn looks_like_xml(data: &[u8]) -> bool {
    let d = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
    d.iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_none_or(|&b| b == b'<')
}

/// The part whose relationships a `.rels` part holds ("" for the package root).
fn source_of_rels(rels_key: &str) -> String {
    if rels_key == "_rels/.rels" {
        return String::new();
    }
    let (dir, file) = match rels_key.rfind('/') {
        Some(i) => (&rels_key[..i + 1], &rels_key[i + 1..]),
        None => ("", rels_key),
    };
    let dir = dir.strip_suffix("_rels/").unwrap_or(dir);
    format!("{dir}{}", file.strip_suffix(".rels").unwrap_or(file))
}

/// A relationships part without the removed relationships.
fn edit_rels(src: &[u8], dead: &HashSet<String>) -> Result<Vec<u8>, String> {
    let mut e = Edits::default();
    for (ord, tok) in Tokenizer::new(src).enumerate() {
        let tok = tok?;
        if !matches!(tok.kind, Kind::Start | Kind::Empty) {
            continue;
        }
        let tag = &src[tok.start..tok.end];
        if xml::local(xml::tag_name(tag)) == b"Relationship"
            && xml::attr(tag, b"Id").is_some_and(|id| dead.contains(&id))
        {
            e.remove.insert(ord as u32);
        }
    }
    if e.is_empty() {
        return Ok(src.to_vec());
    }
    apply(src, &e)
}

/// `[Content_Types].xml` without the overrides of parts not delivered, without defaults for
/// active content, and with the macro-free main type.
fn rewrite_content_types(
    src: &[u8],
    kept: &HashSet<String>,
    rels: &HashMap<String, Vec<u8>>,
    main: &str,
    main_type: &str,
) -> Result<Vec<u8>, String> {
    let mut e = Edits::default();
    for (ord, tok) in Tokenizer::new(src).enumerate() {
        let tok = tok?;
        if !matches!(tok.kind, Kind::Start | Kind::Empty) {
            continue;
        }
        let ord = ord as u32;
        let tag = &src[tok.start..tok.end];
        let ctype = xml::attr(tag, b"ContentType").unwrap_or_default();
        match xml::local(xml::tag_name(tag)) {
            b"Override" => {
                let part = part_key(&xml::attr(tag, b"PartName").unwrap_or_default());
                if part == main {
                    let qn = xml::attrs(tag)
                        .into_iter()
                        .find(|a| xml::local(&tag[a.name.clone()]) == b"ContentType")
                        .map(|a| tag[a.name].to_vec());
                    if let Some(qn) = qn {
                        e.set_attrs
                            .entry(ord)
                            .or_default()
                            .push((qn, xml::escape(main_type)));
                    }
                } else if !kept.contains(&part) && !rels.contains_key(&part) {
                    e.remove.insert(ord);
                }
            }
            b"Default" => {
                let t = ctype.to_ascii_lowercase();
                if bad_type(&t).is_some() || t.contains("macroenabled") || t.contains("oleobject") {
                    e.remove.insert(ord);
                }
            }
            _ => {}
        }
    }
    apply(src, &e)
}

// =========================================================================================
// Text extraction (office = "text").

/// The text of XML: the content of `t` elements (w:t, a:t, spreadsheet t), a line break after
/// paragraphs, rows and shared strings, a tab for tabs and cells.
fn xml_text(src: &[u8], out: &mut String, max: usize) -> Result<(), String> {
    let mut in_t = 0usize;
    for tok in Tokenizer::new(src) {
        let tok = tok?;
        let bytes = &src[tok.start..tok.end];
        match tok.kind {
            Kind::Start if xml::local(xml::tag_name(bytes)) == b"t" => in_t += 1,
            Kind::Empty => match xml::local(xml::tag_name(bytes)) {
                b"tab" => out.push('\t'),
                b"br" | b"cr" => out.push('\n'),
                _ => {}
            },
            Kind::End => match xml::local(xml::tag_name(bytes)) {
                b"t" => in_t = in_t.saturating_sub(1),
                b"p" | b"si" | b"row" => out.push('\n'),
                b"c" | b"tc" => out.push('\t'),
                _ => {}
            },
            Kind::Text if in_t > 0 => out.push_str(&xml::unescape(bytes)),
            Kind::CData if in_t > 0 => {
                out.push_str(&String::from_utf8_lossy(&bytes[9..bytes.len() - 3]))
            }
            _ => {}
        }
        if out.len() > max {
            break;
        }
    }
    Ok(())
}

fn extract_text(
    zin: &mut ZipIn,
    index: &HashMap<String, usize>,
    kept: &HashSet<String>,
    ctypes: &ContentTypes,
    kind: &DocKind,
    limits: &Limits,
    _filename: &str,
) -> Result<Disarmed, OfficeError> {
    let max = limits.max_size;
    let mut parts: Vec<&String> = kept
        .iter()
        .filter(|k| {
            let t = ctypes.of(k).to_ascii_lowercase();
            t.contains(".main+xml")
                || t.contains("sharedstrings")
                || t.contains("worksheet+xml")
                || t.contains("slide+xml")
                || t.contains("header+xml")
                || t.contains("footer+xml")
                || t.contains("footnotes+xml")
                || t.contains("endnotes+xml")
        })
        .collect();
    // Slides and sheets in their natural order (slide2 before slide10).
    parts.sort_by_key(|k| {
        let digits: String = k.chars().filter(|c| c.is_ascii_digit()).collect();
        (
            k.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.' || c.is_alphabetic())
                .to_string(),
            digits.parse::<u64>().unwrap_or(0),
            k.to_string(),
        )
    });
    let mut text = String::new();
    for key in parts {
        let Some(&i) = index.get(key) else { continue };
        let bytes = zin.read(i)?;
        xml_text(&bytes, &mut text, max).map_err(|e| OfficeError::Xml(key.clone(), e))?;
        text.push('\n');
        if text.len() > max {
            break;
        }
    }
    Ok(Disarmed {
        data: text.into_bytes(),
        content_type: "text/plain; charset=utf-8".into(),
        extension: Some("txt".into()),
        changes: vec![format!(
            "only the text of the .{} document was kept",
            kind.ext
        )],
        extra: Vec::new(),
    })
}

// =========================================================================================
// Legacy formats moved to `super::legacy`; re-exported for callers of the old path.

#[cfg(test)]
mod tests {
    use super::*;

    fn edit(src: &str, dead: &[&str]) -> String {
        let dead: HashSet<String> = dead.iter().map(|s| s.to_string()).collect();
        let rules = PartRules {
            dead: &dead,
            ext_links_removed: false,
            lenient: false,
        };
        let e = plan_part(src.as_bytes(), &rules).unwrap();
        String::from_utf8(apply(src.as_bytes(), &e).unwrap()).unwrap()
    }

    const W: &str = r#"xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships""#;

    #[test]
    fn untouched_xml_is_copied_byte_for_byte() {
        let src = format!(
            "<?xml version=\"1.0\"?>\r\n<w:document {W}><!-- c --><w:body><w:p a='>'><w:r><w:t xml:space=\"preserve\"> a &amp; b <![CDATA[<x>]]></w:t></w:r></w:p></w:body></w:document>"
        );
        assert_eq!(edit(&src, &[]), src);
        let total: usize = Tokenizer::new(src.as_bytes())
            .map(|t| t.unwrap())
            .map(|t| t.end - t.start)
            .sum();
        assert_eq!(total, src.len());
    }

    #[test]
    fn dtds_and_broken_nesting_are_refused() {
        let rules = PartRules {
            dead: &HashSet::new(),
            ext_links_removed: false,
            lenient: false,
        };
        for bad in [
            "<!DOCTYPE x [<!ENTITY a \"b\">]><x>&a;</x>",
            "<a><b></a></b>",
            "<a><b>",
            "<a x=\"1>",
        ] {
            assert!(plan_part(bad.as_bytes(), &rules).is_err(), "{bad}");
        }
        let deep = "<a>".repeat(100_000);
        let err = plan_part(deep.as_bytes(), &rules).unwrap_err();
        assert!(err.contains("nested deeper"), "{err}");
    }

    #[test]
    fn dde_fields_lose_their_code_and_keep_their_result() {
        // The field name split over two instruction runs, one written as a character reference.
        let src = format!(
            "<w:document {W}><w:body><w:p><w:r><w:fldChar w:fldCharType=\"begin\"/></w:r><w:r><w:instrText> &#68;D</w:instrText></w:r><w:r><w:instrText xml:space=\"preserve\">EAUTO c:\\\\windows\\\\calc.exe </w:instrText></w:r><w:r><w:fldChar w:fldCharType=\"separate\"/></w:r><w:r><w:t>shown</w:t></w:r><w:r><w:fldChar w:fldCharType=\"end\"/></w:r></w:p></w:body></w:document>"
        );
        let out = edit(&src, &[]);
        assert!(
            !out.contains("instrText") && !out.contains("fldChar"),
            "{out}"
        );
        assert!(out.contains("<w:t>shown</w:t>"));
        // A field whose name is produced by a nested field.
        let src = format!(
            "<w:document {W}><w:body><w:p><w:r><w:fldChar w:fldCharType=\"begin\"/></w:r><w:r><w:fldChar w:fldCharType=\"begin\"/></w:r><w:r><w:instrText>QUOTE 68 68 69</w:instrText></w:r><w:r><w:fldChar w:fldCharType=\"end\"/></w:r><w:r><w:instrText> calc</w:instrText></w:r><w:r><w:fldChar w:fldCharType=\"end\"/></w:r></w:p></w:body></w:document>"
        );
        let out = edit(&src, &[]);
        assert!(!out.contains(" calc"), "{out}");
        // Simple fields: unwrapped, their displayed run kept.
        let src = format!(
            "<w:document {W}><w:body><w:p><w:fldSimple w:instr=\" DDEAUTO cmd &quot;/c calc&quot; \"><w:r><w:t>res</w:t></w:r></w:fldSimple><w:fldSimple w:instr=\" PAGE \"><w:r><w:t>1</w:t></w:r></w:fldSimple></w:p></w:body></w:document>"
        );
        let out = edit(&src, &[]);
        assert!(
            !out.contains("DDEAUTO") && out.contains("<w:r><w:t>res</w:t></w:r>"),
            "{out}"
        );
        assert!(
            out.contains("w:instr=\" PAGE \""),
            "harmless fields stay: {out}"
        );
    }

    #[test]
    fn references_to_removed_relationships_go_with_what_needs_them() {
        let src = format!(
            "<w:document {W}><w:body><w:p><w:hyperlink r:id=\"rId5\" w:history=\"1\"><w:r><w:t>link</w:t></w:r></w:hyperlink><w:r><w:object><v:shape xmlns:v=\"urn:schemas-microsoft-com:vml\"/><o:OLEObject xmlns:o=\"urn:schemas-microsoft-com:office:office\" Type=\"Link\" r:id=\"rId6\"/></w:object></w:r></w:p></w:body></w:document>"
        );
        let out = edit(&src, &["rId5", "rId6"]);
        assert!(out.contains("<w:hyperlink w:history=\"1\">"), "{out}");
        assert!(!out.contains("OLEObject") && !out.contains("rId"), "{out}");
        assert!(out.contains("<w:t>link</w:t>"));
        // Excel: a macro sheet's entry, its Auto_Open name, emptied containers.
        let wb = "<workbook xmlns:r=\"r\"><bookViews><workbookView activeTab=\"1\"/></bookViews><sheets><sheet name=\"Data\" r:id=\"rId1\"/><sheet name=\"Macro1\" r:id=\"rId2\"/></sheets><definedNames><definedName name=\"_xlnm.Auto_Open\">Macro1!$A$1</definedName><definedName name=\"x\">Macro1!$B$2</definedName></definedNames></workbook>";
        let out = edit(wb, &["rId2"]);
        assert_eq!(
            out,
            "<workbook xmlns:r=\"r\"><bookViews><workbookView/></bookViews><sheets><sheet name=\"Data\" r:id=\"rId1\"/></sheets></workbook>"
        );
        let only_macros =
            "<workbook xmlns:r=\"r\"><sheets><sheet name=\"M\" r:id=\"rId2\"/></sheets></workbook>";
        let rules = PartRules {
            dead: &["rId2".to_string()].into_iter().collect(),
            ext_links_removed: false,
            lenient: false,
        };
        assert!(plan_part(only_macros.as_bytes(), &rules).is_err());
    }

    #[test]
    fn part_names_resolve_like_opc() {
        assert_eq!(
            resolve("word/document.xml", "media/a.png").as_deref(),
            Some("word/media/a.png")
        );
        assert_eq!(
            resolve("ppt/slides/slide1.xml", "../media/a%20b.png").as_deref(),
            Some("ppt/media/a%20b.png")
        );
        assert_eq!(part_key("/ppt/media/a%20b.png"), "ppt/media/a b.png");
        assert_eq!(
            resolve("", "/word/document.xml").as_deref(),
            Some("word/document.xml")
        );
        assert_eq!(resolve("word/document.xml", "../../../x"), None);
        assert_eq!(rels_of("word/document.xml"), "word/_rels/document.xml.rels");
        assert_eq!(
            source_of_rels("word/_rels/document.xml.rels"),
            "word/document.xml"
        );
        assert_eq!(source_of_rels("_rels/.rels"), "");
        assert_eq!(extension_if_changed("a.XLSX", "xlsx"), None);
        assert_eq!(
            extension_if_changed("a.xlsm", "xlsx").as_deref(),
            Some("xlsx")
        );
    }

    #[test]
    fn xml_unescape_keeps_unknown_entities() {
        assert_eq!(xml::unescape("&ああああ;&#x41;".as_bytes()), "&ああああ;A");
    }
}
