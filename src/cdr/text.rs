//! Plain-text attachments (`text = "text"`): `.txt`, `.csv`, `.tsv`, `.log`, `.json`, `.xml`
//! and whatever else turns out to be text by content, delivered as UTF-8 `text/plain`.
//!
//! A text file is harmless only as long as nothing interprets it as something else, so the
//! whole file is checked, not just the sample the type sniffer saw: no NUL, few control
//! characters, and it decodes as UTF-8 (ASCII included) or as a Japanese charset found by
//! detection (Shift_JIS/CP932, EUC-JP, ISO-2022-JP; [`crate::mime::charset`]). What fails
//! is not text after all and follows `other` (removed by default). What passes is written
//! anew: UTF-8 without a byte order mark, CRLF line ends, control characters other than tab
//! and the line ends removed, bidirectional controls (which make text read differently from
//! how it is stored) removed.
//!
//! Names: `.txt`, `.text`, `.csv`, `.tsv`, `.log`, `.json` and (inert) `.xml` keep their
//! extension; any other name gets `.txt`, since Windows chooses the program by the extension
//! (`run.js`, `setup.bat`, `page.hta` are text that Windows would execute; Markdown viewers
//! render HTML). The cleaned text is typed again: a control character or byte order mark in
//! front of `#!`, `MZ`, `%PDF-` or `<svg` does not make it text.
//!
//! Markup: HTML and SVG are typed by the sniffer and never reach this module (they stay
//! removed). XML is common in municipal work (e-Gov and e-Tax forms, data exports) and is
//! delivered as text when it is inert: a file whose first character is `<` (whatever its
//! name) is refused when it holds a script element, a `javascript:`/`vbscript:` URL, a
//! stylesheet instruction (XSLT can carry script and fetch from the network), a DOCTYPE or
//! entity declaration (external entities, entity bombs), XInclude/XLink, or the XHTML, SVG or
//! XSL namespaces (a browser opening the file would render it as a page). Refused markup
//! follows `other`.
//!
//! The EICAR anti-virus test file (a DOS program in printable characters) is refused.
//!
//! Spreadsheets: a `.csv`/`.tsv` cell that Excel would evaluate as a formula reaching outside
//! the sheet (DDE `=cmd|' /C calc'!A0`, `HYPERLINK`, `WEBSERVICE`, `CALL`, ...) is neutralised
//! by a leading `'`, so that Excel shows it as text (CSV injection).

use super::filename;
use super::{Disarmed, Policy, Verdict};
use crate::sanitise::sniff::{self, Category};

/// The marker of the EICAR anti-virus test file.
const EICAR: &[u8] = b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE";

/// Extensions a text file keeps; any other becomes `.txt`.
const KEEP_EXT: &[&str] = &["txt", "text", "csv", "tsv", "log", "json", "xml"];

/// Markers that make markup active or able to reach outside the file (lower case).
const ACTIVE_MARKUP: &[&str] = &[
    "<script",
    ":script",
    "javascript:",
    "vbscript:",
    "<?xml-stylesheet",
    "<!doctype",
    "<!entity",
    "xinclude",
    "xlink",
    "www.w3.org/1999/xhtml",
    "www.w3.org/2000/svg",
    "www.w3.org/1999/xsl",
    "urn:schemas-microsoft-com:xslt",
];

/// Functions that reach outside the sheet or run code, in a formula cell (lower case).
const FORMULA_DANGER: &[&str] = &[
    "|",
    "hyperlink(",
    "webservice(",
    "filterxml(",
    "importxml(",
    "importdata(",
    "importhtml(",
    "importfeed(",
    "importrange(",
    "image(",
    "call(",
    "register(",
    "register.id(",
    "exec(",
    "dde(",
];

/// Why content is not delivered as text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotText {
    #[error("NUL octets: binary content")]
    Nul,
    #[error("{0} control characters: binary content")]
    Controls(usize),
    #[error("charset {0} is not UTF-8 or a Japanese charset")]
    Charset(&'static str),
    #[error("{0} octets could not be decoded")]
    Undecodable(usize),
    #[error("markup that a browser could run or that reaches outside the file ({0})")]
    ActiveMarkup(&'static str),
    #[error("once cleaned it reads as {0}")]
    Disguised(&'static str),
    #[error("it carries an encoded object ({0}): text that decodes back into a file")]
    EncodedObject(String),
}

/// Disarms a text attachment: `name` is the detected type (`text`, `xml`), `filename` the
/// sanitised file name. Not text after all: the `other` policy.
pub fn disarm(data: &[u8], name: &str, filename: &str, policy: &Policy) -> Verdict {
    if memchr::memmem::find(data, EICAR).is_some() {
        // The anti-virus test file is a DOS program written in printable characters: text
        // by every measure here, but a relay that passes it fails every scanner behind it.
        return Verdict::Remove {
            reason: format!("{name}: the EICAR anti-virus test file is never delivered"),
        };
    }
    match convert(data, filename) {
        Ok(d) => Verdict::Keep(d),
        Err(e) => super::not_handled(name, &e.to_string(), policy),
    }
}

/// Checks and re-encodes a text file (see the module documentation).
pub fn convert(data: &[u8], filename: &str) -> Result<Disarmed, NotText> {
    if memchr::memchr(0, data).is_some() {
        return Err(NotText::Nul);
    }
    let controls = data.iter().filter(|&&b| is_binary_control(b)).count();
    if controls >= 4 && controls * 100 > data.len() {
        return Err(NotText::Controls(controls));
    }
    let decoded = crate::mime::charset::decode(None, data);
    if !sniff::is_text_charset(decoded.charset) {
        return Err(NotText::Charset(decoded.charset));
    }
    let replaced = if decoded.had_errors {
        decoded.text.chars().filter(|&c| c == '\u{FFFD}').count()
    } else {
        0
    };
    // A damaged character in a long text is damage; many of them mean a wrong guess.
    if replaced > 0 && replaced * 1000 > decoded.text.chars().count() {
        return Err(NotText::Undecodable(replaced));
    }
    let text = decoded
        .text
        .strip_prefix('\u{FEFF}')
        .unwrap_or(&decoded.text);

    let ext = filename::last_extension(filename);
    let keep_ext = ext.as_deref().is_some_and(|e| KEEP_EXT.contains(&e));
    let mut changes = Vec::new();
    if !matches!(decoded.charset, "UTF-8" | "us-ascii") {
        changes.push(format!("re-encoded from {} to UTF-8", decoded.charset));
    }
    if replaced > 0 {
        changes.push(format!(
            "{replaced} undecodable characters replaced by U+FFFD"
        ));
    }
    let (mut out, removed) = clean(text);
    changes.extend(removed.changes());
    // Judged as cleaned: a control character or byte order mark in front of `<svg` or `MZ`
    // must not hide what the delivered text is.
    if let Some(marker) = active_markup(&out) {
        return Err(NotText::ActiveMarkup(marker));
    }
    if let Some(d) = sniff::sniff(out.as_bytes()).filter(|d| d.category != Category::Text) {
        return Err(NotText::Disguised(d.name));
    }
    if let Some(what) = encoded_object(&out) {
        return Err(NotText::EncodedObject(what));
    }
    if keep_ext && matches!(ext.as_deref(), Some("csv" | "tsv")) {
        let (neutral, n) = neutralise_formulas(&out);
        if n > 0 {
            out = neutral;
            changes.push(format!(
                "{n} spreadsheet formulas that could run a program or reach the network made text"
            ));
        }
    }
    Ok(Disarmed {
        data: out.into_bytes(),
        content_type: "text/plain; charset=utf-8".into(),
        extension: (!keep_ext).then(|| "txt".to_string()),
        changes,
        extra: Vec::new(),
    })
}

/// The first encoded object (uuencode, yEnc, BinHex, base64 runs, binary quoted-printable,
/// PGP blocks) the body-text normaliser would remove from this text, if any. A text
/// attachment is delivered whole or not at all, so one that carries such an object (a zip
/// written as base64 in a .txt, the noxxi hide-content trick) is not text: a reader could
/// decode it back into the file the policy removes.
fn encoded_object(text: &str) -> Option<String> {
    use crate::config::{Language, LinkPolicy};
    use crate::sanitise::text::Normaliser;
    use crate::sanitise::TextBuffer;
    let mut probe = Normaliser::new(LinkPolicy::Keep, Language::En);
    // Never spills: the text is bounded by max_attachment_size and is already in memory.
    let mut sink = TextBuffer::new(text.len().saturating_add(64 << 10), None);
    let stats = probe
        .push(text, &mut sink)
        .and_then(|()| probe.finish(&mut sink))
        .ok()?;
    if let Some(b) = stats.blocks.first() {
        return Some(match b.detected {
            Some(d) => format!("{} block holding {d}", b.kind.as_str()),
            None => format!("{} block", b.kind.as_str()),
        });
    }
    (stats.pgp_encrypted > 0).then(|| "PGP encrypted message".to_string())
}

/// Control octets that text does not carry (tab, LF, CR, FF and the ISO-2022-JP ESC, SO, SI
/// excepted).
fn is_binary_control(b: u8) -> bool {
    matches!(b, 0x01..=0x08 | 0x0B | 0x10..=0x1A | 0x1C..=0x1F | 0x7F)
}

/// The first active-markup marker in a text that starts (after white space) with `<`.
fn active_markup(text: &str) -> Option<&'static str> {
    if !text.trim_start().starts_with('<') {
        return None;
    }
    let lower = text.to_lowercase();
    ACTIVE_MARKUP
        .iter()
        .find(|m| lower.contains(*m))
        .map(|m| m.trim_start_matches(['<', ':', '?', '!']))
}

/// What [`clean`] removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Removed {
    pub controls: usize,
    pub bidi: usize,
}

impl Removed {
    /// The change lines for what was removed.
    pub(crate) fn changes(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.controls > 0 {
            out.push(format!("{} control characters removed", self.controls));
        }
        if self.bidi > 0 {
            out.push(format!(
                "{} bidirectional control characters removed",
                self.bidi
            ));
        }
        out
    }
}

/// CRLF line ends (CR, LF and CRLF each become one CRLF), control characters other than tab
/// removed (C0, DEL, C1, and the Unicode line and paragraph separators), bidi controls removed.
pub(crate) fn clean(text: &str) -> (String, Removed) {
    let mut out = String::with_capacity(text.len() + text.len() / 32);
    let mut removed = Removed::default();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push_str("\r\n");
            }
            '\n' => out.push_str("\r\n"),
            '\t' => out.push('\t'),
            c if filename::is_bidi_control(c) => removed.bidi += 1,
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{FEFF}') => {
                removed.controls += 1
            }
            c => out.push(c),
        }
    }
    (out, removed)
}

/// Prefixes with `'` every CSV/TSV field that Excel would take for a formula reaching outside
/// the sheet: the field (after an opening quote and spaces) starts with `=`, `+`, `-` or `@`
/// and holds a DDE bar or a [`FORMULA_DANGER`] function. Fields are split on `,`, `;`, tab
/// and line ends outside double quotes. Returns the text and the number of fields changed.
fn neutralise_formulas(text: &str) -> (String, usize) {
    let mut out = String::with_capacity(text.len());
    let mut count = 0usize;
    let mut field_start = 0usize;
    let mut in_quotes = false;
    let emit = |out: &mut String, field: &str| {
        let lead = field.len() - field.trim_start_matches([' ', '"']).len();
        let (head, body) = field.split_at(lead);
        let lower = body.to_lowercase();
        if body.starts_with(['=', '+', '-', '@'])
            && FORMULA_DANGER.iter().any(|f| lower.contains(f))
        {
            out.push_str(head);
            out.push('\'');
            out.push_str(body);
            true
        } else {
            out.push_str(field);
            false
        }
    };
    for (i, c) in text.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            ',' | ';' | '\t' | '\r' | '\n' if !in_quotes => {
                if emit(&mut out, &text[field_start..i]) {
                    count += 1;
                }
                out.push(c);
                field_start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    if emit(&mut out, &text[field_start..]) {
        count += 1;
    }
    (out, count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AttachmentAction, AttachmentPolicy, SanitizeConfig};

    fn policy(a: &AttachmentPolicy) -> Policy<'_> {
        Policy {
            attachments: a,
            links: crate::config::LinkPolicy::Show,
            limits: super::super::Limits::from_config(&SanitizeConfig::default()),
            depth: 0,
        }
    }

    fn keep(data: &[u8], filename: &str) -> Disarmed {
        match convert(data, filename) {
            Ok(d) => d,
            Err(e) => panic!("{filename}: refused: {e}"),
        }
    }

    #[test]
    fn japanese_charsets_become_utf8_with_crlf() {
        let text = "件名,金額\n東京都,１２３\n";
        let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode(text);
        let d = keep(&sjis, "list.csv");
        assert_eq!(
            String::from_utf8(d.data).unwrap(),
            "件名,金額\r\n東京都,１２３\r\n"
        );
        assert_eq!(d.content_type, "text/plain; charset=utf-8");
        assert_eq!(d.extension, None);
        assert_eq!(d.changes, vec!["re-encoded from Shift_JIS to UTF-8"]);

        let (euc, _, _) = encoding_rs::EUC_JP.encode("議事録です\r\n");
        let d = keep(&euc, "memo.txt");
        assert_eq!(d.data, "議事録です\r\n".as_bytes());
        let jis = b"\x1b$B$3$s$K$A$O\x1b(B\r\n";
        let d = keep(jis, "memo.txt");
        assert_eq!(d.data, "こんにちは\r\n".as_bytes());
        let d = keep("UTF-8 本文\rCR only\n".as_bytes(), "a.log");
        assert_eq!(d.data, "UTF-8 本文\r\nCR only\r\n".as_bytes());
        assert!(d.changes.is_empty(), "{:?}", d.changes);
    }

    #[test]
    fn controls_and_bidi_controls_are_removed() {
        let d = keep(
            "a\u{7}b\u{1b}c\td\u{202E}txt.exe\u{200F}\u{85}\u{FEFF}\r\n".as_bytes(),
            "x.txt",
        );
        assert_eq!(d.data, "abc\tdtxt.exe\r\n".as_bytes());
        assert!(d
            .changes
            .contains(&"4 control characters removed".to_string()));
        assert!(d
            .changes
            .contains(&"2 bidirectional control characters removed".to_string()));
        // A byte order mark at the start is dropped without a word.
        let d = keep(b"\xEF\xBB\xBFhello\n", "x.txt");
        assert_eq!(d.data, b"hello\r\n");
    }

    #[test]
    fn names_other_than_text_ones_become_txt() {
        assert_eq!(keep(b"x\n", "data.json").extension, None);
        for name in [
            "README.md",
            "run.js",
            "setup.bat",
            "a.vbs",
            "page.hta",
            "x.ps1",
            "noext",
            "a.ics",
        ] {
            assert_eq!(
                keep(b"x\n", name).extension.as_deref(),
                Some("txt"),
                "{name}"
            );
        }
    }

    #[test]
    fn binary_and_foreign_charsets_are_not_text() {
        assert_eq!(convert(b"abc\0def", "a.txt").unwrap_err(), NotText::Nul);
        let mut ctl = b"text".repeat(10);
        ctl.extend_from_slice(&[1, 2, 3, 4, 5]);
        assert!(matches!(convert(&ctl, "a.txt"), Err(NotText::Controls(5))));
        // Latin-1 prose: a charset we do not deliver as text.
        let latin = b"Caf\xe9 cr\xe8me br\xfbl\xe9e, na\xefve fa\xe7ade, \xe0 la carte\n".repeat(5);
        assert!(matches!(convert(&latin, "a.txt"), Err(NotText::Charset(_))));
    }

    #[test]
    fn xml_is_text_only_when_inert() {
        let plain = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<form><name>\xe5\xb1\xb1\xe7\x94\xb0</name></form>\n";
        let d = keep(plain, "shinsei.xml");
        assert_eq!(d.extension, None);
        assert!(String::from_utf8(d.data).unwrap().contains("山田"));
        for bad in [
            &b"<?xml version=\"1.0\"?><?xml-stylesheet href=\"x.xsl\"?><a/>"[..],
            b"<?xml version=\"1.0\"?><!DOCTYPE a [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><a>&e;</a>",
            b"<root xmlns:h=\"http://www.w3.org/1999/xhtml\"><h:script>alert(1)</h:script></root>",
            b"<a href=\"javascript:alert(1)\"/>",
            b"<x xmlns:xi=\"http://www.w3.org/2001/XInclude\"><xi:include href=\"http://e/\"/></x>",
        ] {
            assert!(
                matches!(convert(bad, "a.xml"), Err(NotText::ActiveMarkup(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // Found once controls and the byte order mark are gone.
        let bad = b"\xEF\xBB\xBF\x07<?xml version=\"1.0\"?><!DOCTYPE a><a/>";
        assert!(matches!(
            convert(bad, "a.xml"),
            Err(NotText::ActiveMarkup(_))
        ));
        for (bad, what) in [
            (&b"\xEF\xBB\xBF#!/bin/sh\nrm -rf /\n"[..], "script"),
            (b"\x07MZ this is not a program\n", "pe-executable"),
            (b"note\n%PDF-1.7 polyglot\n", "pdf"),
            (b"\x01<svg onload=alert(1)>", "svg"),
        ] {
            assert_eq!(convert(bad, "a.txt").unwrap_err(), NotText::Disguised(what));
        }
        // The same words in prose are not markup.
        assert!(convert(b"see <!DOCTYPE> in the manual\n", "a.txt").is_ok());
        assert!(convert(b"Do not click javascript: links\n", "a.txt").is_ok());
    }

    #[test]
    fn csv_formulas_that_reach_out_are_made_text() {
        let csv = "name,value\r\n\"=cmd|' /C calc'!A0\",1\r\nx,=HYPERLINK(\"http://e/\",\"a\")\r\nsum,=SUM(A1:A2)\r\nneg,-5\r\n";
        let d = keep(csv.as_bytes(), "a.csv");
        let out = String::from_utf8(d.data).unwrap();
        assert_eq!(
            out,
            "name,value\r\n\"'=cmd|' /C calc'!A0\",1\r\nx,'=HYPERLINK(\"http://e/\",\"a\")\r\nsum,=SUM(A1:A2)\r\nneg,-5\r\n"
        );
        assert!(d
            .changes
            .iter()
            .any(|c| c.starts_with("2 spreadsheet formulas")));
        // Not in a .txt: a text file is not evaluated.
        let d = keep(csv.as_bytes(), "a.txt");
        assert!(String::from_utf8(d.data).unwrap().contains("\"=cmd|"));
        let tsv = "a\t@SUM(1)|x\tb\n";
        let d = keep(tsv.as_bytes(), "a.tsv");
        assert_eq!(d.data, "a\t'@SUM(1)|x\tb\r\n".as_bytes());
    }

    #[test]
    fn verdicts_follow_text_and_other() {
        let a = AttachmentPolicy::default();
        let v = disarm(b"hello\n", "text", "a.txt", &policy(&a));
        assert!(matches!(v, Verdict::Keep(_)), "{v:?}");
        let v = disarm(b"he\0llo\n", "text", "a.txt", &policy(&a));
        assert_eq!(
            v,
            Verdict::Remove {
                reason: "text (NUL octets: binary content): other = remove".into()
            }
        );
        let q = AttachmentPolicy {
            other: AttachmentAction::Quarantine,
            ..AttachmentPolicy::default()
        };
        let v = disarm(b"he\0llo\n", "text", "a.txt", &policy(&q));
        assert!(matches!(v, Verdict::Quarantine { .. }), "{v:?}");
        let eicar = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
        let v = disarm(eicar, "text", "eicar.txt", &policy(&q));
        assert!(matches!(v, Verdict::Remove { .. }), "{v:?}");
    }

    /// Throughput of the text converter on a Shift_JIS CSV, in MB/s of input.
    /// `cargo test --release --lib cdr::text -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn bench_text_convert() {
        let line = "12345,山田太郎,東京都千代田区霞が関1-2-3,=SUM(A1:A2),備考です\n";
        let text = line.repeat(10 << 20 >> 6);
        let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode(&text);
        let t = std::time::Instant::now();
        let d = keep(&sjis, "a.csv");
        let secs = t.elapsed().as_secs_f64();
        assert!(d.data.len() > sjis.len());
        eprintln!(
            "text convert: {} octets Shift_JIS CSV: {:.1} MB/s",
            sjis.len(),
            sjis.len() as f64 / secs / 1e6
        );
    }
}
