//! Content-Type and Content-Disposition values: `type/subtype; name=value; ...`.
//!
//! RFC 2045 tokens and quoted strings, RFC 822 comments, RFC 2231 extended parameters
//! (`name*=charset'lang'%xx`, continuations `name*0*`, `name*1`, in any order, with pieces
//! missing), and the sloppy input real mail carries: missing quotes, spaces around `=`,
//! duplicated parameters (the first wins; later ones are kept in [`Field::duplicates`] so that
//! the parser can treat every declared boundary as a delimiter), junk between semicolons,
//! a missing `;` or a `,` in its place, unterminated quotes and comments, and RFC 2047
//! encoded words inside `name` / `filename` (Japanese mailers write
//! `name="=?ISO-2022-JP?B?...?="`). Any deviation sets [`Field::damaged`]. A broken
//! `boundary` also yields the other readings other readers take of it (RFC 2231 sections
//! percent-decoded or in the order written, quotes and backslashes read differently), so that
//! the parser delimits at each of them (see `sections_readings`).
//!
//! Comments are removed wherever they appear outside quoted strings (`multipar()t` is
//! `multipart`): that is the RFC 822 reading, and it is also the reading under which tricks
//! such as `boun()dary=` reveal the structure they try to hide from a scanner.
//!
//! The work is linear in the input and the number of parameters kept is capped, so a header of
//! a megabyte of `;;;;` or `a*0=;` costs no more than reading it.

use super::{charset, header, ContentType};

/// Most parameters (RFC 2231 sections included) kept from one field; the rest is ignored.
const MAX_PARAMS: usize = 128;
/// Highest RFC 2231 section number accepted.
const MAX_SECTION: u32 = 999;

/// A parsed Content-Type or Content-Disposition field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Field {
    /// The leading value (`type/subtype` or the disposition type) as written, comments and
    /// whitespace removed, quotes removed; not yet lower-cased.
    pub value: String,
    /// Parameters in order of first appearance: names lower-cased (RFC 2231 `*` suffixes
    /// removed), values unquoted, continuations joined, charset- and RFC 2047-decoded, control
    /// characters replaced by spaces. The first occurrence of a name wins.
    pub params: Vec<(String, String)>,
    /// Later, different values of parameters already in `params`, in order.
    pub duplicates: Vec<(String, String)>,
    /// Some syntax was broken and repaired (or ignored).
    pub damaged: bool,
}

impl Field {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value given for `name`: the winning one first, then the duplicates.
    pub fn all_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.params
            .iter()
            .chain(self.duplicates.iter())
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a Content-Type value. `None` when there is no usable `type/subtype` (the caller
/// then applies the RFC 2045 default and records the damage). A bare `text` is read as
/// `text/plain`. The media type is lower-cased.
pub fn parse_content_type(raw: &[u8]) -> Option<ContentType> {
    let f = parse_field(raw);
    let mime_type = media_type(&f.value)?;
    Some(ContentType {
        mime_type,
        params: f.params,
    })
}

/// Checks and lower-cases `type/subtype`.
pub(crate) fn media_type(value: &str) -> Option<String> {
    let v = value.to_ascii_lowercase();
    let (t, s) = match v.split_once('/') {
        Some((t, s)) => (t, s),
        None if v == "text" => ("text", "plain"),
        None => return None,
    };
    if is_token(t) && is_token(s) {
        Some(format!("{t}/{s}"))
    } else {
        None
    }
}

/// RFC 2045 token: printable ASCII except tspecials.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&b))
}

/// Parses a Content-Disposition value: the disposition type lower-cased and the parameters.
/// `None` when there is no disposition type.
pub fn parse_disposition(raw: &[u8]) -> Option<(String, Vec<(String, String)>)> {
    let f = parse_field(raw);
    let v = f.value.to_ascii_lowercase();
    if !is_token(&v) {
        return None;
    }
    Some((v, f.params))
}

/// Parses any `value; name=value; ...` field: the leading value as written and the parameters.
pub fn parse_params(raw: &[u8]) -> (String, Vec<(String, String)>) {
    let f = parse_field(raw);
    (f.value, f.params)
}

/// One lexical item of a parameterised field.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// A run of octets that are not whitespace or `;`, `=`, `"`, `(`.
    Word(Vec<u8>),
    /// The content of a quoted string, escapes resolved.
    Quoted(Vec<u8>),
    Ws,
    Semi,
    Eq,
}

/// Splits the field into tokens, dropping comments. Returns the tokens and whether anything
/// was unterminated.
fn lex(raw: &[u8]) -> (Vec<Tok>, bool) {
    let mut toks = Vec::new();
    let mut damaged = false;
    let mut i = 0;
    // Words may be interrupted by comments (`multipar()t`): joined to the word before.
    let mut word_open = false;
    while let Some(&b) = raw.get(i) {
        match b {
            b' ' | b'\t' | b'\r' | b'\n' => {
                if toks.last() != Some(&Tok::Ws) {
                    toks.push(Tok::Ws);
                }
                word_open = false;
                i += 1;
            }
            b';' => {
                toks.push(Tok::Semi);
                word_open = false;
                i += 1;
            }
            b'=' => {
                toks.push(Tok::Eq);
                word_open = false;
                i += 1;
            }
            b'"' => {
                let mut s = Vec::new();
                i += 1;
                let mut closed = false;
                while let Some(&c) = raw.get(i) {
                    i += 1;
                    match c {
                        b'"' => {
                            closed = true;
                            break;
                        }
                        b'\\' => {
                            if let Some(&e) = raw.get(i) {
                                s.push(e);
                                i += 1;
                            }
                        }
                        _ => s.push(c),
                    }
                }
                damaged |= !closed;
                toks.push(Tok::Quoted(s));
                word_open = false;
            }
            b'(' => {
                // A comment, nested, with quoted-pairs; removed without a trace.
                let mut depth = 0usize;
                while let Some(&c) = raw.get(i) {
                    i += 1;
                    match c {
                        b'(' => depth += 1,
                        b')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        b'\\' => i += 1,
                        _ => {}
                    }
                }
                damaged |= depth != 0;
            }
            _ => {
                let start = i;
                while let Some(&c) = raw.get(i) {
                    if matches!(c, b' ' | b'\t' | b'\r' | b'\n' | b';' | b'=' | b'"' | b'(') {
                        break;
                    }
                    i += 1;
                }
                let w = raw.get(start..i).unwrap_or_default();
                match toks.last_mut() {
                    Some(Tok::Word(prev)) if word_open => prev.extend_from_slice(w),
                    _ => toks.push(Tok::Word(w.to_vec())),
                }
                word_open = true;
                continue;
            }
        }
    }
    (toks, damaged)
}

/// The raw text of tokens, for sloppy unquoted values (`filename=my file.pdf`).
fn raw_text(toks: &[Tok]) -> Vec<u8> {
    let mut v = Vec::new();
    for t in toks {
        match t {
            Tok::Word(w) => v.extend_from_slice(w),
            Tok::Quoted(q) => v.extend_from_slice(q),
            Tok::Ws => v.push(b' '),
            Tok::Eq => v.push(b'='),
            Tok::Semi => v.push(b';'),
        }
    }
    v
}

/// A parameter as written, before RFC 2231 assembly.
struct RawParam {
    name: String,
    section: Option<u32>,
    /// `name*` / `name*N*`: percent-encoded (and for section 0 or no section, with charset).
    extended: bool,
    value: Vec<u8>,
}

/// Parses a parameterised field.
pub fn parse_field(raw: &[u8]) -> Field {
    let (toks, mut damaged) = lex(raw);
    let mut field = Field::default();

    // The leading value: everything before the first `;`, unless a `name=` appears first
    // (a missing `;`).
    let first_semi = toks
        .iter()
        .position(|t| *t == Tok::Semi)
        .unwrap_or(toks.len());
    let mut lead_end = first_semi;
    if let Some(eq) = toks
        .get(..first_semi)
        .and_then(|l| l.iter().position(|t| *t == Tok::Eq))
    {
        // The value ends before the word that precedes `=`.
        let name_start = toks
            .get(..eq)
            .and_then(|l| l.iter().rposition(|t| matches!(t, Tok::Word(_))))
            .unwrap_or(eq);
        lead_end = name_start;
        damaged = true;
    }
    let mut lead = Vec::new();
    for t in toks.get(..lead_end).unwrap_or_default() {
        match t {
            Tok::Word(w) => lead.extend_from_slice(w),
            Tok::Quoted(q) => {
                lead.extend_from_slice(q);
                damaged = true;
            }
            _ => {}
        }
    }
    // `multipart/mixed, boundary=...`
    if lead.last() == Some(&b',') {
        while lead.last() == Some(&b',') {
            lead.pop();
        }
        damaged = true;
    }
    field.value = control_to_space(String::from_utf8_lossy(&lead).into_owned());

    // Parameters: segments between semicolons.
    let mut raw_params: Vec<RawParam> = Vec::new();
    let rest = toks.get(lead_end..).unwrap_or_default();
    for seg in rest.split(|t| *t == Tok::Semi) {
        let seg = trim_ws(seg);
        if seg.is_empty() {
            continue;
        }
        let Some(eq) = seg.iter().position(|t| *t == Tok::Eq) else {
            damaged = true; // junk without `=`
            continue;
        };
        let name_toks = trim_ws(seg.get(..eq).unwrap_or_default());
        let name = match name_toks {
            [Tok::Word(w)] => String::from_utf8_lossy(w).to_ascii_lowercase(),
            _ => {
                damaged = true;
                continue;
            }
        };
        let value_toks = trim_ws(seg.get(eq + 1..).unwrap_or_default());
        let value = match value_toks {
            [] => Vec::new(),
            [Tok::Quoted(q)] => q.clone(),
            [Tok::Quoted(q), ..] => {
                // `"abc"def`: the quoted string is the value, the rest junk.
                damaged = true;
                q.clone()
            }
            // `=` is a tspecial, but unquoted `boundary=----=_Part` and `name==?utf-8?B?...?=`
            // are everywhere: not worth a flag.
            v if v.iter().all(|t| matches!(t, Tok::Word(_) | Tok::Eq)) => raw_text(value_toks),
            _ => {
                // Spaces, `=` or quotes inside an unquoted value: kept as written.
                damaged = true;
                raw_text(value_toks)
            }
        };
        if raw_params.len() >= MAX_PARAMS {
            damaged = true;
            continue;
        }
        let (name, section, extended, ok) = split_2231_name(&name);
        damaged |= !ok;
        raw_params.push(RawParam {
            name,
            section,
            extended,
            value,
        });
    }

    assemble(raw_params, &mut field, &mut damaged);
    field.damaged = damaged;
    field
}

fn trim_ws(mut t: &[Tok]) -> &[Tok] {
    while let [Tok::Ws, rest @ ..] = t {
        t = rest;
    }
    while let [rest @ .., Tok::Ws] = t {
        t = rest;
    }
    t
}

/// `name`, `name*`, `name*3`, `name*3*` → (name, section, extended, well-formed).
fn split_2231_name(name: &str) -> (String, Option<u32>, bool, bool) {
    let Some((base, rest)) = name.split_once('*') else {
        return (name.to_string(), None, false, true);
    };
    if rest.is_empty() {
        return (base.to_string(), None, true, true);
    }
    let (digits, extended) = match rest.strip_suffix('*') {
        Some(d) => (d, true),
        None => (rest, false),
    };
    if !digits.is_empty() && digits.len() <= 4 && digits.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(n) = digits.parse::<u32>() {
            if n <= MAX_SECTION {
                return (base.to_string(), Some(n), extended, true);
            }
        }
    }
    (name.to_string(), None, false, false)
}

/// Joins RFC 2231 pieces and decodes every parameter into `field`.
fn assemble(raw: Vec<RawParam>, field: &mut Field, damaged: &mut bool) {
    // Names in order of first appearance.
    let mut names: Vec<String> = Vec::new();
    for p in &raw {
        if !names.contains(&p.name) {
            names.push(p.name.clone());
        }
    }
    for name in names {
        let mut values: Vec<String> = Vec::new();
        let mut plain: Vec<&RawParam> = Vec::new();
        let mut ext: Vec<&RawParam> = Vec::new();
        let mut sections: Vec<&RawParam> = Vec::new();
        for p in raw.iter().filter(|p| p.name == name) {
            match (p.section, p.extended) {
                (None, false) => plain.push(p),
                (None, true) => ext.push(p),
                (Some(_), _) => sections.push(p),
            }
        }
        // RFC 2231 forms first: they are the precise ones; a plain `name=` next to them is
        // the fallback for old readers.
        for p in &ext {
            values.push(decode_extended(&p.value, true, damaged).finish(&name));
        }
        // Before `join_sections`, which sorts the sections: the order written is a reading.
        let mut extra = if name == "boundary" {
            sections_readings(&sections)
        } else {
            Vec::new()
        };
        if !sections.is_empty() {
            values.push(join_sections(&name, &mut sections, damaged));
        }
        for p in &plain {
            values.push(decode_plain(&name, &p.value));
        }
        if name == "boundary" {
            // Other readings of a broken boundary, after the RFC ones (see `sections_readings`).
            for v in &values {
                extra.extend(value_readings(v));
            }
            for v in extra {
                if !v.trim().is_empty() && !values.contains(&v) {
                    values.push(v);
                }
            }
        }
        let mut it = values.into_iter();
        if let Some(first) = it.next() {
            for v in it {
                if v != first && !field.duplicates.iter().any(|(n, d)| *n == name && *d == v) {
                    field.duplicates.push((name.clone(), v));
                }
                if name == "boundary" || name == "charset" {
                    // A second boundary or charset is a conflict worth reporting even when
                    // equal; for others (e.g. name and name*) duplicates are normal.
                    *damaged = true;
                }
            }
            field.params.push((name, first));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Other readings of a broken boundary
// ---------------------------------------------------------------------------------------------
//
// A multipart whose boundary parameter is broken is read differently by different readers:
// one percent-decodes sections RFC 2231 says are literal, another joins them in the order they
// were written, a third strips quotes or backslashes the RFC reading keeps. Parser-differential
// attacks live in that gap (noxxi's "MIME is broken" corpus is full of them). The parser
// treats every boundary a multipart declares as a delimiter, so each other reading is added
// as one more declared value (in `Field::duplicates`): a body written for any of these readers
// is split into its parts and each part is judged on its own, instead of the whole body
// vanishing as an unused preamble (and the text with it). Extra readings come only from
// broken declarations (the field is then `damaged`); a well-formed boundary has exactly one.

/// Readings of RFC 2231 boundary sections other than the RFC one: sections in the order
/// written as well as by number, the first or the last of duplicated numbers, and every
/// section percent-decoded with a `charset'lang'` prefix stripped wherever it appears.
fn sections_readings(sections: &[&RawParam]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if sections.is_empty() {
        return out;
    }
    let written: Vec<&RawParam> = sections.to_vec();
    let mut sorted = written.clone();
    sorted.sort_by_key(|p| p.section); // stable
    for order in [&sorted, &written] {
        for last_wins in [false, true] {
            let mut pieces: Vec<&RawParam> = Vec::new();
            for p in order.iter() {
                match pieces.iter().position(|q| q.section == p.section) {
                    Some(i) if last_wins => {
                        if let Some(slot) = pieces.get_mut(i) {
                            *slot = p;
                        }
                    }
                    Some(_) => {}
                    None => pieces.push(p),
                }
            }
            let mut bytes = Vec::new();
            for p in &pieces {
                let v = strip_charset_prefix(&p.value).unwrap_or(&p.value);
                let mut ignore = false;
                bytes.extend_from_slice(&decode_extended(v, false, &mut ignore).bytes);
            }
            let v = control_to_space(decode_unlabelled(&bytes));
            if !out.contains(&v) {
                out.push(v);
            }
        }
    }
    out
}

/// The value after an RFC 2231 `charset'lang'` prefix, if it has one.
fn strip_charset_prefix(v: &[u8]) -> Option<&[u8]> {
    let mut it = v.splitn(3, |&b| b == b'\'');
    let (cs, lang, rest) = (it.next()?, it.next()?, it.next()?);
    let ok = cs.len() <= 40
        && lang.len() <= 20
        && cs
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        && lang.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-');
    ok.then_some(rest)
}

/// Readings of a boundary value other than the RFC one: without surrounding single quotes
/// (`'a b'`), without backslashes (quoted pairs outside quotes), cut at the first quote or
/// backslash, with RFC 2047 encoded words decoded.
fn value_readings(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(inner) = v
        .strip_prefix('\'')
        .and_then(|r| r.strip_suffix('\''))
        .filter(|r| !r.is_empty())
    {
        out.push(inner.to_string());
    }
    if v.contains('\\') {
        out.push(v.replace('\\', ""));
    }
    if let Some(i) = v.find(['"', '\\']) {
        out.push(v.get(..i).unwrap_or_default().trim().to_string());
    }
    if v.contains("=?") {
        out.push(decode_words(v.as_bytes()));
    }
    out.retain(|r| !r.is_empty() && r != v);
    out
}

/// Bytes of an RFC 2231 value with the charset that applies to them.
struct Extended {
    charset: Option<String>,
    bytes: Vec<u8>,
}

impl Extended {
    fn finish(self, name: &str) -> String {
        let text = match self.charset.as_deref() {
            Some(cs) if !cs.is_empty() => decode_charset(cs, &self.bytes),
            _ => decode_unlabelled(&self.bytes),
        };
        if is_display_name(name) && text.contains("=?") {
            // Some mailers put RFC 2047 words inside RFC 2231 values.
            return control_to_space(decode_words(text.as_bytes()));
        }
        control_to_space(text)
    }
}

/// `charset'lang'%xx%yy` (when `with_charset`) or `%xx%yy`.
fn decode_extended(value: &[u8], with_charset: bool, damaged: &mut bool) -> Extended {
    let mut charset = None;
    let mut data = value;
    if with_charset {
        let mut it = value.splitn(3, |&b| b == b'\'');
        match (it.next(), it.next(), it.next()) {
            (Some(cs), Some(_lang), Some(rest)) => {
                charset = Some(String::from_utf8_lossy(cs).trim().to_string());
                data = rest;
            }
            _ => *damaged = true, // no charset'lang' prefix: take the value as it is
        }
    }
    let mut bytes = Vec::with_capacity(data.len());
    let mut i = 0;
    while let Some(&b) = data.get(i) {
        if b == b'%' {
            let hex = data.get(i + 1..i + 3).and_then(|h| {
                std::str::from_utf8(h)
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            });
            if let Some(v) = hex {
                bytes.push(v);
                i += 3;
                continue;
            }
            *damaged = true;
        }
        bytes.push(b);
        i += 1;
    }
    Extended { charset, bytes }
}

/// Joins `name*0`, `name*1*`, ... in section order (first occurrence of a number wins; gaps
/// are closed up) and decodes them with the charset of section 0.
fn join_sections(name: &str, sections: &mut Vec<&RawParam>, damaged: &mut bool) -> String {
    sections.sort_by_key(|p| p.section); // stable: the first of equal numbers stays first
    let mut joined = Extended {
        charset: None,
        bytes: Vec::new(),
    };
    let mut expect = 0u32;
    let mut last: Option<u32> = None;
    for p in sections.iter() {
        let n = p.section.unwrap_or(0);
        if last == Some(n) {
            *damaged = true; // duplicate section
            continue;
        }
        if n != expect {
            *damaged = true; // missing section(s)
        }
        last = Some(n);
        expect = n + 1;
        if p.extended {
            let e = decode_extended(&p.value, n == 0, damaged);
            if n == 0 {
                joined.charset = e.charset;
            }
            joined.bytes.extend_from_slice(&e.bytes);
        } else {
            joined.bytes.extend_from_slice(&p.value);
        }
    }
    if joined.charset.is_none() && is_display_name(name) {
        // Unencoded continuations of a file name: may hold encoded words or raw 8-bit text.
        return control_to_space(decode_words(&joined.bytes));
    }
    joined.finish(name)
}

/// A plain (non-RFC 2231) value: file names may hold RFC 2047 words or raw 8-bit text;
/// other parameters are machine values, read as UTF-8.
fn decode_plain(name: &str, value: &[u8]) -> String {
    if is_display_name(name) {
        control_to_space(decode_words(value))
    } else {
        control_to_space(String::from_utf8_lossy(value).into_owned())
    }
}

/// Parameters that name a file for people, and so get RFC 2047 decoding.
fn is_display_name(name: &str) -> bool {
    matches!(name, "name" | "filename")
}

fn control_to_space(s: String) -> String {
    if s.chars().any(char::is_control) {
        s.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    } else {
        s
    }
}

/// RFC 2047 words and raw 8-bit header text to a string.
fn decode_words(raw: &[u8]) -> String {
    header::decode_text(raw)
}

/// Bytes in a declared charset. `UTF-16` without a byte order mark is big-endian by RFC 2781
/// (the WHATWG label means little-endian), but Windows writes it little-endian: the side on
/// which ASCII characters have their zero byte decides, big-endian when neither does.
fn decode_charset(label: &str, bytes: &[u8]) -> String {
    let l = label.trim();
    let utf16 = l.eq_ignore_ascii_case("utf-16") || l.eq_ignore_ascii_case("utf16");
    let bom = bytes.starts_with(b"\xFF\xFE") || bytes.starts_with(b"\xFE\xFF");
    let label = if utf16 && !bom {
        let zeros = |from: usize| {
            bytes
                .iter()
                .skip(from)
                .step_by(2)
                .filter(|&&b| b == 0)
                .count()
        };
        if zeros(1) > zeros(0) {
            "utf-16le"
        } else {
            "utf-16be"
        }
    } else {
        label
    };
    charset::decode(Some(label), bytes).text
}

/// Bytes with no charset (`''` in RFC 2231): UTF-8 if valid, else detected.
fn decode_unlabelled(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => charset::decode(None, bytes).text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(raw: &str) -> Field {
        parse_field(raw.as_bytes())
    }

    fn ct(raw: &str) -> Option<ContentType> {
        parse_content_type(raw.as_bytes())
    }

    #[test]
    fn simple_content_type() {
        let c = ct("Text/HTML; Charset=\"UTF-8\"").unwrap();
        assert_eq!(c.mime_type, "text/html");
        assert_eq!(c.param("charset"), Some("UTF-8"));
        let f = p("multipart/mixed; boundary=\"----=_Part_0_123.456\"");
        assert_eq!(f.param("boundary"), Some("----=_Part_0_123.456"));
        assert!(!f.damaged);
        let f = p("multipart/alternative;\r\n\tboundary=\"b1\"; type=text/plain");
        assert_eq!(f.param("boundary"), Some("b1"));
        assert_eq!(f.param("type"), Some("text/plain"));
    }

    #[test]
    fn bad_media_types() {
        assert_eq!(ct(""), None);
        assert_eq!(ct("multipart"), None);
        assert_eq!(ct("/plain"), None);
        assert_eq!(ct("text/"), None);
        assert_eq!(ct("ultipart/mixed").unwrap().mime_type, "ultipart/mixed");
        assert_eq!(ct("text").unwrap().mime_type, "text/plain");
        assert_eq!(ct("text / plain").unwrap().mime_type, "text/plain");
        assert_eq!(ct("multi\\part/mixed"), None);
    }

    #[test]
    fn quoted_strings_and_escapes() {
        let f = p(r#"attachment; filename="a \"quoted\" name.txt""#);
        assert_eq!(f.param("filename"), Some("a \"quoted\" name.txt"));
        let f = p(r#"a/b; x="semi;colon"; y=2"#);
        assert_eq!(f.param("x"), Some("semi;colon"));
        assert_eq!(f.param("y"), Some("2"));
        // Unterminated quote: the rest of the field.
        let f = p(r#"a/b; boundary="abc; x=1"#);
        assert_eq!(f.param("boundary"), Some("abc; x=1"));
        assert!(f.damaged);
        // Junk after a quoted string.
        let f = p(r#"a/b; boundary="b_1"e60"#);
        assert_eq!(f.param("boundary"), Some("b_1"));
        assert!(f.damaged);
    }

    #[test]
    fn comments_removed() {
        assert_eq!(
            p("multipart/mixed (a comment); boundary=x").value,
            "multipart/mixed"
        );
        assert_eq!(p("() multipart/mixed; boundary=x").value, "multipart/mixed");
        assert_eq!(p("multipar()t/mixed").value, "multipart/mixed");
        let f = p("multipart/mixed; boun()dary=b1 (comment)");
        assert_eq!(f.param("boundary"), Some("b1"));
        let f = p("multipart/mixed; boundary=(c (nested) \\) x)b2");
        assert_eq!(f.param("boundary"), Some("b2"));
        // Comment hiding a parameter: hidden, as RFC 822 says.
        let f = p("multipart/mixed; ( boundary=b3 )");
        assert_eq!(f.param("boundary"), None);
        // Parentheses inside quotes are not comments.
        let f = p("a/b; name=\"report (1).pdf\"");
        assert_eq!(f.param("name"), Some("report (1).pdf"));
        // Unterminated comment.
        assert!(p("a/b; x=1 (oops").damaged);
    }

    #[test]
    fn sloppy_input() {
        let f = p("text/plain ; charset = iso-2022-jp ;");
        assert_eq!(f.value, "text/plain");
        assert_eq!(f.param("charset"), Some("iso-2022-jp"));
        // Spaces inside an unquoted value are kept.
        let f = p("attachment; filename=my file.pdf");
        assert_eq!(f.param("filename"), Some("my file.pdf"));
        // Missing `;` and `,` instead of `;`.
        let f = p("multipart/mixed boundary=b1");
        assert_eq!(
            (f.value.as_str(), f.param("boundary")),
            ("multipart/mixed", Some("b1"))
        );
        assert!(f.damaged);
        let f = p("multipart/mixed, boundary=b1");
        assert_eq!(
            (f.value.as_str(), f.param("boundary")),
            ("multipart/mixed", Some("b1"))
        );
        // Junk segments and empty ones.
        let f = p("a/b;;; junk ; =x; x=1;;");
        assert_eq!(f.params, vec![("x".to_string(), "1".to_string())]);
        assert!(f.damaged);
        // Quoted type.
        assert_eq!(
            p("\"multipart/mixed\"; boundary=x").value,
            "multipart/mixed"
        );
        // Empty value.
        assert_eq!(p("a/b; x=").param("x"), Some(""));
        // Line breaks left in a value become spaces, never line breaks.
        let f = p("a/b; name=\"x\r\ny\"; other*=''a%0D%0Ab");
        let name = f.param("name").unwrap();
        assert!(name.starts_with('x') && name.ends_with('y') && !name.contains(['\r', '\n']));
        assert_eq!(f.param("other"), Some("a  b"));
    }

    #[test]
    fn duplicates_first_wins() {
        let f = p("multipart/mixed; boundary=b1; boundary=b2; Boundary=\"b1\"");
        assert_eq!(f.param("boundary"), Some("b1"));
        assert_eq!(
            f.duplicates,
            vec![("boundary".to_string(), "b2".to_string())]
        );
        assert_eq!(
            f.all_values("boundary").collect::<Vec<_>>(),
            vec!["b1", "b2"]
        );
        assert!(f.damaged);
    }

    #[test]
    fn rfc2231_plain_and_encoded() {
        let f = p("application/pdf; name*=utf-8''%E6%97%A5%E6%9C%AC%E8%AA%9E.pdf");
        assert_eq!(f.param("name"), Some("日本語.pdf"));
        let f = p("attachment; filename*=UTF-8'ja'%E8%B3%87%E6%96%99.xlsx");
        assert_eq!(f.param("filename"), Some("資料.xlsx"));
        let f = p("attachment; filename*=iso-2022-jp''%1B%24B%3BqNA%1B%28B.doc");
        assert_eq!(f.param("filename"), Some("資料.doc"));
        let f = p("attachment; filename*=Shift_JIS''%8E%91%97%BF.txt");
        assert_eq!(f.param("filename"), Some("資料.txt"));
        // Both forms: the RFC 2231 one wins, the other is a duplicate.
        let f = p("attachment; filename=\"fallback.pdf\"; filename*=utf-8''%E8%A1%A8.pdf");
        assert_eq!(f.param("filename"), Some("表.pdf"));
        assert_eq!(f.duplicates.len(), 1);
        // No charset'lang' prefix.
        let f = p("a/b; boundary*=boundary%5F4b");
        assert_eq!(f.param("boundary"), Some("boundary_4b"));
        assert!(f.damaged);
        // Bad percent escapes kept literally.
        assert_eq!(p("a/b; x*=''100%zz").param("x"), Some("100%zz"));
    }

    #[test]
    fn rfc2231_continuations() {
        let f = p("a/b; name*0=\"long \"; name*1=name; name*2=\".txt\"");
        assert_eq!(f.param("name"), Some("long name.txt"));
        assert!(!f.damaged);
        let f = p("a/b; filename*0*=utf-8''%E6%97%A5; filename*1*=%E6%9C%AC; filename*2=.txt");
        assert_eq!(f.param("filename"), Some("日本.txt"));
        // Out of order.
        let f = p("a/b; boundary*1=4baba0f5; boundary*0=boundary_");
        assert_eq!(f.param("boundary"), Some("boundary_4baba0f5"));
        // Missing piece: what is there, joined, and flagged.
        let f = p("a/b; x*0=a; x*2=c");
        assert_eq!(f.param("x"), Some("ac"));
        assert!(f.damaged);
        // Duplicate section: the first wins.
        let f = p("a/b; x*0=a; x*0=z; x*1=b");
        assert_eq!(f.param("x"), Some("ab"));
        assert!(f.damaged);
        // Huge or malformed section numbers are not sections.
        let f = p("a/b; x*99999=a; y*1a=b");
        assert_eq!(f.param("x*99999"), Some("a"));
        assert!(f.damaged);
    }

    #[test]
    fn encoded_words_in_names() {
        // ISO-2022-JP "テスト.txt" as an RFC 2047 word in a quoted name.
        let f = p("application/octet-stream; name=\"=?ISO-2022-JP?B?GyRCJUYlOSVIGyhCLnR4dA==?=\"");
        assert_eq!(f.param("name"), Some("テスト.txt"));
        // Split across RFC 2231 continuations, as some Japanese mailers write it.
        let f = p("attachment; filename*0=\"=?ISO-2022-JP?B?GyRCJUYlOSVIGyhC\"; filename*1=\"LnR4dA==?=\"");
        assert_eq!(f.param("filename"), Some("テスト.txt"));
        // UTF-8 Q-encoding, unquoted.
        let f = p("attachment; filename==?UTF-8?Q?=E8=A1=A8.xls?=");
        assert_eq!(f.param("filename"), Some("表.xls"));
        assert!(!f.damaged);
        // Not decoded in machine parameters.
        let f = p("multipart/mixed; boundary=\"=?us-ascii?B?Ym91bmRhcnk=?=\"");
        assert_eq!(f.param("boundary"), Some("=?us-ascii?B?Ym91bmRhcnk=?="));
    }

    #[test]
    fn raw_8bit_names() {
        let f = parse_field("attachment; filename=\"日本語.pdf\"".as_bytes());
        assert_eq!(f.param("filename"), Some("日本語.pdf"));
        // Shift_JIS bytes for 資料.txt, unlabelled.
        let mut raw = b"attachment; filename=\"".to_vec();
        raw.extend_from_slice(b"\x8e\x91\x97\xbf\x81\x40\x83\x65\x83\x58\x83\x67.txt\"");
        let f = parse_field(&raw);
        assert!(f.param("filename").unwrap().ends_with(".txt"));
    }

    #[test]
    fn disposition() {
        assert_eq!(
            parse_disposition(b"Attachment; filename=a.txt"),
            Some((
                "attachment".to_string(),
                vec![("filename".into(), "a.txt".into())]
            ))
        );
        assert_eq!(
            parse_disposition(b"inline").map(|d| d.0),
            Some("inline".into())
        );
        assert_eq!(parse_disposition(b"; filename=a.txt"), None);
        assert_eq!(parse_disposition(b""), None);
    }

    #[test]
    fn bounded_on_hostile_input() {
        let t = std::time::Instant::now();
        let mut raw = b"multipart/mixed".to_vec();
        raw.extend(std::iter::repeat_n(b';', 1 << 20));
        let f = parse_field(&raw);
        assert!(f.params.is_empty());
        let mut raw = b"a/b".to_vec();
        for i in 0..50_000 {
            raw.extend_from_slice(format!("; x*{}*=%41", i % 1000).as_bytes());
        }
        let f = parse_field(&raw);
        assert!(f.damaged);
        assert!(f.param("x").unwrap().len() <= MAX_PARAMS);
        let mut raw = b"a/b; x=".to_vec();
        raw.extend(std::iter::repeat_n(b'(', 1 << 20));
        assert!(parse_field(&raw).damaged);
        let mut raw = b"a/b; x=".to_vec();
        raw.extend(std::iter::repeat_n(b'"', 1 << 20));
        let _ = parse_field(&raw);
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
    }

    fn boundaries(raw: &str) -> Vec<String> {
        p(raw).all_values("boundary").map(String::from).collect()
    }

    #[test]
    fn other_readings_of_broken_boundaries() {
        // Each broken declaration (from the noxxi "MIME is broken" tricks) also yields the
        // boundary its body really uses, so that the text survives: every reading delimits.
        for (raw, want) in [
            // RFC 2231 sections: percent-encoded without `*`, out of order, duplicated, with a
            // charset prefix on a later section.
            ("a/b; boundary*0=boundary%5F4baba0f5", "boundary_4baba0f5"),
            (
                "a/b; boundary*0=boundary%5F; boundary*1=4baba0f5",
                "boundary_4baba0f5",
            ),
            (
                "a/b; boundary*1=4baba0f5; boundary*0=boundary%5F;",
                "boundary_4baba0f5",
            ),
            (
                "a/b; boundary*0=foo; boundary*0=boundary%5F; boundary*1=4baba0f5",
                "boundary_4baba0f5",
            ),
            (
                "a/b; boundary*0=boundary%5F; boundary*0=foo; boundary*1=4baba0f5",
                "boundary_4baba0f5",
            ),
            (
                "a/b; boundary*0*=''foo; boundary*0*=''boundary%5F; boundary*1*=4baba0f5",
                "boundary_4baba0f5",
            ),
            (
                "a/b; boundary*1=''boundary%5F; boundary*0=4baba0f5",
                "boundary_4baba0f5",
            ),
            (
                "a/b; boundary*1*=''boundary_; boundary*0*=4baba0f5",
                "boundary_4baba0f5",
            ),
            (
                "a/b; boundary*1=''boundary_; boundary*0=4baba0f5",
                "boundary_4baba0f5",
            ),
            // Single quotes, backslashes, quotes inside a token, encoded words.
            ("a/b; boundary='boundary 3ff163c'", "boundary 3ff163c"),
            ("a/b; boundary=' boundary_6ee27c21'", " boundary_6ee27c21"),
            ("a/b; boundary=\\boundary_b644e58", "boundary_b644e58"),
            ("a/b; boundary=boundary\\_b5991ea9", "boundary_b5991ea9"),
            ("a/b; boundary=b_8f515c6d\\;d88b8990", "b_8f515c6d"),
            ("a/b; boundary=b_51c210a7\\\"b35375cc\\\"", "b_51c210a7"),
            (
                "a/b; boundary=\"=?us-ascii?B?Ym91bmRhcnlfOWY1OTllMTI=?=\"",
                "boundary_9f599e12",
            ),
        ] {
            let all = boundaries(raw);
            assert!(all.iter().any(|b| b == want), "{raw}: {all:?}");
            assert!(p(raw).damaged, "{raw}");
        }
        // The RFC reading stays the one that wins.
        assert_eq!(
            p("a/b; boundary*1=4baba0f5; boundary*0=boundary%5F").param("boundary"),
            Some("boundary%5F4baba0f5")
        );
        // Well-formed declarations get no other reading (an Outlook boundary with `=` in it
        // must not also delimit at `--` + its first half).
        for raw in [
            "multipart/alternative; boundary=\"----=_NextPart_000_0071_01DC58D3.5F1E2A30\"",
            "multipart/mixed; boundary=----=_Part_1_2.3",
            "multipart/mixed; boundary*=''abc",
            "multipart/mixed; boundary*0=ab; boundary*1=cd",
            "multipart/mixed; boundary*0*=us-ascii''ab; boundary*1*=c%64",
        ] {
            assert_eq!(boundaries(raw).len(), 1, "{raw}: {:?}", boundaries(raw));
        }
    }

    #[test]
    fn utf_16_without_bom_by_its_zero_bytes() {
        // RFC 2781: UTF-16 without a byte order mark is big-endian, unless its zero bytes say
        // otherwise.
        let f = p("a/b; boundary*=UTF-16''%00b%00o%00u%00n%00d%00a%00r%00y%00_%004%00b");
        assert_eq!(f.param("boundary"), Some("boundary_4b"));
        let f = p("a/b; filename*=utf-16''%FF%FE%E5%65%2C%67.%00t%00x%00t%00");
        assert_eq!(f.param("filename"), Some("日本.txt"));
        let f = p("a/b; filename*=utf-16le''%E5%65%2C%67");
        assert_eq!(f.param("filename"), Some("日本"));
        // Little-endian without a mark, as Windows writes it: the zero bytes tell.
        let f = p("a/b; boundary*=UTF-16''b%00o%00u%00n%00d%00a%00r%00y%00_%004%00b%00");
        assert_eq!(f.param("boundary"), Some("boundary_4b"));
    }
}
