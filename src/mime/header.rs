//! Header field decoding: unstructured text (RFC 2047), address lists (RFC 5322) and
//! message identifiers, as real mailers write them.
//!
//! Everything here turns untrusted header bytes into values the rebuild re-encodes from
//! scratch, so two properties matter more than strictness: the result can never smuggle a
//! line break (a decoded CR or LF would otherwise become a new header in the clean message;
//! every control character in decoded text becomes a space and addresses/ids with one are
//! dropped), and work and output are bounded whatever the input. Japanese mail is the
//! reference: ISO-2022-JP words split mid-character across encoded words, raw Shift_JIS or
//! EUC-JP bytes in headers, encoded words inside quoted display names, mobile-carrier local
//! parts such as `taro..@docomo.ne.jp`.
//!
//! Content-Type and Content-Disposition parameters (RFC 2231) live in `mime::params`.

use super::charset;

/// Longest decoded text returned by [`decode_text`], in octets of UTF-8.
pub const MAX_TEXT_LEN: usize = 16 * 1024;
/// Raw input looked at by [`decode_text`]; the rest is ignored.
const MAX_TEXT_INPUT: usize = 64 * 1024;
/// Most addresses returned by [`parse_addresses`].
pub const MAX_ADDRESSES: usize = 1000;
/// Longest address kept (RFC 5321 allows 254 in a path; be generous, but bounded).
const MAX_ADDR_LEN: usize = 512;
/// Most identifiers returned by [`parse_msg_ids`].
pub const MAX_MSG_IDS: usize = 50;
/// Longest message identifier kept.
const MAX_MSG_ID_LEN: usize = 250;

/// A mailbox: display name (decoded) and addr-spec.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Address {
    pub name: Option<String>,
    pub addr: String,
}

// ---------------------------------------------------------------------------------------------
// Unstructured text
// ---------------------------------------------------------------------------------------------

/// One piece of an unstructured field.
enum Seg<'a> {
    /// Text outside encoded words.
    Raw(&'a [u8]),
    /// An encoded word: its label (language suffix removed), decoded octets and raw text.
    Word {
        label: &'a str,
        bytes: Vec<u8>,
        raw: &'a [u8],
    },
}

/// Decode an unstructured field value (Subject, a display name, Comments): RFC 2047 encoded
/// words (B and Q, any charset [`charset`] knows) anywhere in the value — also inside quotes
/// and without surrounding white space, as MUAs tolerate. Adjacent encoded words separated only
/// by white space are joined as bytes per charset before decoding, so a character split across
/// words survives. Raw 8-bit text is UTF-8 if valid, else detected (CP932, EUC-JP, ...).
/// Words with an unknown charset or bad base64 are kept as written. Every run of control
/// characters (CR, LF, TAB, ...) in the result becomes one space; bidi overrides are removed;
/// the result is trimmed and at most [`MAX_TEXT_LEN`] octets.
pub fn decode_text(raw: &[u8]) -> String {
    let raw = raw.get(..MAX_TEXT_INPUT).unwrap_or(raw);
    let segs = split_words(raw);

    // Raw 8-bit text in a header has no label: decide once for all raw pieces together, so
    // that short pieces between encoded words do not each get a different guess.
    let raw_label = raw_charset(&segs);

    let pieces = join_runs(segs);
    let mut text = String::with_capacity(raw.len().min(MAX_TEXT_LEN));
    for (k, piece) in pieces.iter().enumerate() {
        match piece {
            Piece::Raw(r) => {
                // White space between two decoded encoded words is not text (RFC 2047 6.2).
                let between_words = k > 0
                    && matches!(pieces.get(k - 1), Some(Piece::Text { decoded: true, .. }))
                    && matches!(pieces.get(k + 1), Some(Piece::Text { decoded: true, .. }));
                if !(between_words && is_lwsp(r)) {
                    push_raw(r, raw_label, &mut text);
                }
            }
            Piece::Text { text: t, .. } => text.push_str(t),
        }
        if text.len() > MAX_TEXT_LEN * 2 {
            break;
        }
    }
    clean_text(&text)
}

/// A piece of a value after encoded words are joined and decoded.
enum Piece<'a> {
    Raw(&'a [u8]),
    /// A run of encoded words; `decoded` is false when they were kept as written.
    Text {
        text: String,
        decoded: bool,
    },
}

/// Join runs of encoded words of the same charset separated only by white space (the white
/// space dropped) and decode each run as one byte string, so that a character split across
/// words survives. A word with an unknown charset is decoded as UTF-8 when its octets are
/// valid UTF-8 (mailers write `UNKNOWN` or `x-unknown` on UTF-8), else kept as written.
fn join_runs(segs: Vec<Seg<'_>>) -> Vec<Piece<'_>> {
    // The key that decides whether two words can be joined: the canonical charset name, or
    // the lower-cased label for charsets we do not know.
    fn key(label: &str) -> (Option<&'static str>, String) {
        match charset::canonical_name(label) {
            Some(n) => (Some(n), String::new()),
            None => (None, label.to_ascii_lowercase()),
        }
    }
    let mut pieces = Vec::with_capacity(segs.len());
    let mut i = 0;
    while let Some(seg) = segs.get(i) {
        let (label, first) = match seg {
            Seg::Raw(r) => {
                pieces.push(Piece::Raw(r));
                i += 1;
                continue;
            }
            Seg::Word { label, .. } => (*label, key(label)),
        };
        let mut bytes = Vec::new();
        let mut raws: Vec<&[u8]> = Vec::new();
        let mut j = i;
        loop {
            match segs.get(j) {
                Some(Seg::Word {
                    label: l,
                    bytes: b,
                    raw: r,
                }) if j == i || key(l) == first => {
                    bytes.extend_from_slice(b);
                    raws.push(r);
                    j += 1;
                }
                Some(Seg::Raw(r))
                    if is_lwsp(r)
                        && matches!(segs.get(j + 1), Some(Seg::Word { label: l, .. })
                            if key(l) == first) =>
                {
                    j += 1;
                }
                _ => break,
            }
        }
        let piece = if first.0.is_some() {
            Piece::Text {
                text: charset::decode(Some(label), &bytes).text,
                decoded: true,
            }
        } else if let Ok(s) = String::from_utf8(bytes) {
            Piece::Text {
                text: s,
                decoded: true,
            }
        } else {
            Piece::Text {
                text: raws
                    .iter()
                    .map(|r| String::from_utf8_lossy(r))
                    .collect::<Vec<_>>()
                    .join(" "),
                decoded: false,
            }
        };
        pieces.push(piece);
        i = j;
    }
    pieces
}

/// Only spaces, tabs and line breaks (possibly none).
fn is_lwsp(s: &[u8]) -> bool {
    s.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

/// Split a value into raw text and well-formed encoded words. Spaces and tabs inside a word's
/// text are tolerated (some mailers write them); line breaks and other controls are not.
/// Linear: a word's text stops at the first `?`, so scans never overlap by more than a
/// charset name.
fn split_words(raw: &[u8]) -> Vec<Seg<'_>> {
    let mut segs = Vec::new();
    let mut raw_start = 0;
    let mut from = 0;
    while let Some(off) = raw.get(from..).and_then(|s| memchr::memmem::find(s, b"=?")) {
        let p = from + off;
        match parse_word(raw, p) {
            Some((end, label, bytes)) => {
                if p > raw_start {
                    segs.push(Seg::Raw(raw.get(raw_start..p).unwrap_or(&[])));
                }
                segs.push(Seg::Word {
                    label,
                    bytes,
                    raw: raw.get(p..end).unwrap_or(&[]),
                });
                raw_start = end;
                from = end;
            }
            None => from = p + 1,
        }
    }
    if raw_start < raw.len() {
        segs.push(Seg::Raw(raw.get(raw_start..).unwrap_or(&[])));
    }
    segs
}

/// Parse `=?charset[*lang]?B|Q?text?=` at `p`: (end offset, charset label, decoded octets).
fn parse_word(raw: &[u8], p: usize) -> Option<(usize, &str, Vec<u8>)> {
    let rest = raw.get(p + 2..)?;
    let q1 = rest.iter().take(76).position(|&b| b == b'?')?;
    let cs = rest.get(..q1)?;
    if cs.is_empty() || !cs.iter().all(|&b| b.is_ascii_graphic() && b != b'=') {
        return None;
    }
    let cs = std::str::from_utf8(cs).ok()?;
    let label = cs.split('*').next().unwrap_or(cs);
    let enc = *rest.get(q1 + 1)?;
    if *rest.get(q1 + 2)? != b'?' {
        return None;
    }
    let text_start = q1 + 3;
    let text_len = rest
        .get(text_start..)?
        .iter()
        .position(|&b| b == b'?' || (b.is_ascii_control() && b != b'\t'))?;
    let text = rest.get(text_start..text_start + text_len)?;
    if rest.get(text_start + text_len..text_start + text_len + 2)? != b"?=" {
        return None;
    }
    let bytes = match enc {
        b'B' | b'b' => decode_b(text)?,
        b'Q' | b'q' => decode_q(text),
        _ => return None,
    };
    let end = p + 2 + text_start + text_len + 2;
    Some((end, label, bytes))
}

/// Lenient base64 for encoded words: missing padding tolerated, padding in the middle (words
/// glued together by broken encoders) restarts a quantum; any other character is an error.
fn decode_b(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4 + 3);
    let mut acc: u32 = 0;
    let mut n = 0u32;
    for &b in text {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                acc = 0;
                n = 0;
                continue;
            }
            b' ' | b'\t' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((acc >> n) as u8);
            acc &= (1 << n) - 1;
        }
    }
    Some(out)
}

/// Q encoding: `_` is a space, `=XX` an octet; a stray `=` is kept literally.
fn decode_q(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while let Some(&b) = text.get(i) {
        match b {
            b'_' => out.push(b' '),
            b'=' => {
                let h = text.get(i + 1).and_then(|&c| hex(c));
                let l = text.get(i + 2).and_then(|&c| hex(c));
                if let (Some(h), Some(l)) = (h, l) {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                out.push(b'=');
            }
            _ => out.push(b),
        }
        i += 1;
    }
    out
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The charset for the raw (not encoded-word) pieces of a value, if they need one: `None`
/// when they are all ASCII without escapes or valid UTF-8.
fn raw_charset(segs: &[Seg<'_>]) -> Option<&'static str> {
    let mut all = Vec::new();
    for s in segs {
        if let Seg::Raw(r) = s {
            let needs = match std::str::from_utf8(r) {
                Ok(t) => t.contains('\u{1b}'),
                Err(_) => true,
            };
            if needs {
                all.extend_from_slice(r);
                all.push(b' ');
            }
        }
    }
    (!all.is_empty()).then(|| charset::decode(None, &all).charset)
}

fn push_raw(r: &[u8], label: Option<&str>, out: &mut String) {
    match std::str::from_utf8(r) {
        // ASCII or UTF-8 stays what it is, whatever the other pieces needed; escapes mean
        // 7-bit ISO-2022-JP and go through the decoder.
        Ok(s) if !s.contains('\u{1b}') => out.push_str(s),
        _ => out.push_str(&charset::decode(label, r).text),
    }
}

/// Characters that end a line or are otherwise not text: they become one space.
fn is_break_or_control(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

/// Invisible characters that reorder or hide text (bidi embeddings, overrides, isolates,
/// the BOM): removed, as they serve to disguise names and subjects.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// Control runs to one space, invisible characters removed, trimmed, bounded.
fn clean_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_TEXT_LEN));
    let mut after_control = false;
    for c in s.chars() {
        if is_break_or_control(c) {
            if !out.ends_with(' ') {
                out.push(' ');
            }
            after_control = true;
            continue;
        }
        if is_invisible(c) {
            continue;
        }
        if c == ' ' && after_control {
            continue;
        }
        after_control = false;
        if out.len() + c.len_utf8() > MAX_TEXT_LEN {
            break;
        }
        out.push(c);
    }
    let t = out.trim_matches(' ');
    if t.len() == out.len() {
        out
    } else {
        t.to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// Addresses
// ---------------------------------------------------------------------------------------------

/// Parse an address list (From, To, Cc, Reply-To, Sender, ...) as it really is: display names
/// quoted or encoded (decoded with [`decode_text`]), comments (used as the name when there is
/// no phrase), groups (members flattened; empty groups give nothing), bare addresses, `<addr>`
/// alone, obsolete routes (`<@relay:user@host>`), garbage (skipped). Every `addr` is a plain
/// addr-spec without white space, control characters, `<` or `>`; at most [`MAX_ADDRESSES`].
pub fn parse_addresses(raw: &[u8]) -> Vec<Address> {
    let mut out = Vec::new();
    let mut cur = Mailbox::default();
    let mut i = 0;
    let mut last_space = false;
    while let Some(&b) = raw.get(i) {
        if out.len() >= MAX_ADDRESSES {
            break;
        }
        match b {
            b' ' | b'\t' | b'\r' | b'\n' => {
                last_space = true;
                i += 1;
                continue;
            }
            b'(' => {
                let (end, content) = comment(raw, i);
                if cur.comment.is_none() {
                    cur.comment = Some(content);
                }
                i = end;
                // A comment separates words like white space does.
                last_space = true;
                continue;
            }
            b'"' => {
                let end = quoted_end(raw, i);
                let q = raw.get(i..end).unwrap_or(&[]);
                cur.word(&unquote(q), last_space);
                cur.spec.extend_from_slice(q);
                i = end;
            }
            b'<' => {
                let end = raw
                    .get(i + 1..)
                    .and_then(|s| angle_end(s))
                    .map_or(raw.len(), |e| i + 1 + e);
                if cur.angle.is_none() {
                    cur.angle = Some(raw.get(i + 1..end).unwrap_or(&[]).to_vec());
                }
                i = (end + 1).min(raw.len());
            }
            b'[' => {
                let end = raw
                    .get(i..)
                    .and_then(|s| memchr::memchr(b']', s))
                    .map_or(raw.len(), |e| i + e + 1);
                let lit = raw.get(i..end).unwrap_or(&[]);
                cur.word(lit, last_space);
                cur.spec.extend_from_slice(lit);
                i = end;
            }
            b',' => {
                cur.finish(&mut out);
                i += 1;
            }
            b';' => {
                cur.finish(&mut out);
                i += 1;
            }
            b':' => {
                // A group name ends here: what was collected named the group, not a mailbox.
                cur = Mailbox::default();
                i += 1;
            }
            b'>' | b')' | b']' | b'\\' => {
                // Stray closing characters: garbage that must not join an address.
                cur.spec.push(b' ');
                i += 1;
            }
            b'.' | b'@' => {
                cur.phrase.push(b);
                cur.spec.push(b);
                i += 1;
                last_space = false;
                continue;
            }
            _ => {
                let end = raw
                    .get(i..)
                    .and_then(|s| s.iter().position(|&c| is_special_or_space(c)))
                    .map_or(raw.len(), |e| i + e.max(1));
                let atom = raw.get(i..end).unwrap_or(&[]);
                cur.word(atom, last_space);
                cur.spec.extend_from_slice(atom);
                i = end;
            }
        }
        last_space = false;
    }
    if out.len() < MAX_ADDRESSES {
        cur.finish(&mut out);
    }
    out
}

fn is_special_or_space(c: u8) -> bool {
    matches!(
        c,
        b'(' | b')' | b'<' | b'>' | b'[' | b']' | b':' | b';' | b'@' | b'\\' | b',' | b'.' | b'"'
    ) || c.is_ascii_whitespace()
}

/// What has been collected of one mailbox.
#[derive(Default)]
struct Mailbox {
    /// The display phrase: words with single spaces where the input had white space.
    phrase: Vec<u8>,
    /// The same tokens without white space, quoted strings kept quoted: a bare addr-spec.
    spec: Vec<u8>,
    /// The content of the first `<...>`.
    angle: Option<Vec<u8>>,
    /// The first comment, unescaped.
    comment: Option<Vec<u8>>,
}

impl Mailbox {
    fn word(&mut self, w: &[u8], space_before: bool) {
        if space_before && !self.phrase.is_empty() {
            self.phrase.push(b' ');
            // White space inside a bare addr-spec is only allowed around `.` and `@`
            // (obsolete syntax); elsewhere it means this is a phrase, not an address.
            if !matches!(self.spec.last(), Some(b'.' | b'@')) {
                self.spec.push(b' ');
            }
        }
        self.phrase.extend_from_slice(w);
    }

    fn finish(&mut self, out: &mut Vec<Address>) {
        let m = std::mem::take(self);
        let (addr, name) = match &m.angle {
            Some(a) => {
                let name = if m.phrase.is_empty() {
                    m.comment.as_deref()
                } else {
                    Some(m.phrase.as_slice())
                };
                (clean_addr(a), name)
            }
            None => {
                let spec = trim_spec_spaces(&m.spec);
                (clean_addr(&spec), m.comment.as_deref())
            }
        };
        let Some(addr) = addr else {
            return;
        };
        let name = name.map(decode_text).filter(|n| !n.is_empty());
        if out.len() < MAX_ADDRESSES {
            out.push(Address { name, addr });
        }
    }
}

/// Remove white space adjacent to `.` and `@` in a bare spec (`john . doe @ example.com`).
fn trim_spec_spaces(spec: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::with_capacity(spec.len());
    for &b in spec {
        if b == b' ' && matches!(out.last(), None | Some(b'.' | b'@')) {
            continue;
        }
        if matches!(b, b'.' | b'@') && out.last() == Some(&b' ') {
            out.pop();
        }
        out.push(b);
    }
    while out.last() == Some(&b' ') {
        out.pop();
    }
    out
}

/// The end (exclusive) of the comment starting at `start` (nested, with quoted pairs) and its
/// unescaped content. Unterminated: to the end.
fn comment(raw: &[u8], start: usize) -> (usize, Vec<u8>) {
    let mut depth = 0usize;
    let mut content = Vec::new();
    let mut i = start;
    while let Some(&b) = raw.get(i) {
        match b {
            b'\\' => {
                if let Some(&n) = raw.get(i + 1) {
                    content.push(n);
                }
                i += 2;
                continue;
            }
            b'(' => {
                if depth > 0 {
                    content.push(b);
                }
                depth += 1;
            }
            b')' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return (i + 1, content);
                }
                content.push(b);
            }
            _ => content.push(b),
        }
        i += 1;
    }
    (raw.len(), content)
}

/// The end (exclusive) of the quoted string starting at `start`. Unterminated: to the end.
fn quoted_end(raw: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while let Some(&b) = raw.get(i) {
        match b {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    raw.len()
}

/// The content of a quoted string (with its quotes), quoted pairs resolved.
fn unquote(q: &[u8]) -> Vec<u8> {
    let inner = q.strip_prefix(b"\"").unwrap_or(q);
    let inner = inner.strip_suffix(b"\"").unwrap_or(inner);
    let mut out = Vec::with_capacity(inner.len());
    let mut esc = false;
    for &b in inner {
        if !esc && b == b'\\' {
            esc = true;
            continue;
        }
        esc = false;
        out.push(b);
    }
    out
}

/// The offset of the `>` closing an angle address (quoted strings skipped).
fn angle_end(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        match b {
            b'"' => i = quoted_end(s, i),
            b'>' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// Turn the content of `<...>` or a bare spec into a plain addr-spec, or `None`: comments and
/// white space outside quotes removed, an obsolete source route dropped, then validated.
fn clean_addr(raw: &[u8]) -> Option<String> {
    let mut spec = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        match b {
            b'(' => {
                i = comment(raw, i).0;
                continue;
            }
            b'"' => {
                let end = quoted_end(raw, i);
                spec.extend_from_slice(raw.get(i..end).unwrap_or(&[]));
                i = end;
                continue;
            }
            b' ' | b'\t' | b'\r' | b'\n' => {}
            _ => spec.push(b),
        }
        i += 1;
    }
    // Obsolete route: @a,@b:user@host.
    if spec.first() == Some(&b'@') {
        let colon = memchr::memchr(b':', &spec)?;
        spec.drain(..=colon);
    }
    // `mailto:` in angle brackets (some web forms).
    if spec.len() > 7
        && spec
            .get(..7)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"mailto:"))
    {
        spec.drain(..7);
    }
    if spec.is_empty() || spec.len() > MAX_ADDR_LEN {
        return None;
    }
    let s = String::from_utf8(spec).ok()?;
    valid_addr_spec(&s).then_some(s)
}

/// `local@domain`: a dot-atom-ish local part (consecutive and trailing dots allowed: Japanese
/// mobile carriers issued such addresses) or a quoted string without spaces; a domain of
/// labels or a literal. Non-ASCII (SMTPUTF8) allowed; controls, white space, `<` `>` never.
fn valid_addr_spec(s: &str) -> bool {
    if s.chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '<' || c == '>')
    {
        return false;
    }
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    if local.is_empty() || domain.is_empty() {
        return false;
    }
    let local_ok = if local.starts_with('"') {
        local.len() >= 2 && local.ends_with('"')
    } else {
        local.chars().all(|c| {
            !c.is_ascii() || c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c)
        })
    };
    let domain_ok = if domain.starts_with('[') {
        domain.ends_with(']')
            && domain
                .get(1..domain.len() - 1)
                .is_some_and(|l| !l.contains(['[', ']', '\\']))
    } else {
        !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && domain.chars().all(|c| {
                !c.is_ascii() || c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_'
            })
    };
    local_ok && domain_ok
}

// ---------------------------------------------------------------------------------------------
// Message identifiers
// ---------------------------------------------------------------------------------------------

/// The `<id>` tokens of Message-ID, In-Reply-To or References, without the brackets: printable
/// ASCII without spaces only (others are skipped), each at most 250 octets, at most
/// [`MAX_MSG_IDS`] (the first ones; for References the thread root comes first). A value with
/// no brackets at all but one `local@domain` token is accepted as that token.
pub fn parse_msg_ids(raw: &[u8]) -> Vec<String> {
    let valid = |id: &[u8]| {
        !id.is_empty()
            && id.len() <= MAX_MSG_ID_LEN
            && id
                .iter()
                .all(|&b| b.is_ascii_graphic() && b != b'<' && b != b'>')
    };
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    let mut saw_bracket = false;
    while out.len() < MAX_MSG_IDS {
        let Some(open) = raw.get(i..).and_then(|s| memchr::memchr(b'<', s)) else {
            break;
        };
        saw_bracket = true;
        let start = i + open + 1;
        let Some(close) = raw
            .get(start..)
            .and_then(|s| memchr::memchr2(b'>', b'<', s))
        else {
            break;
        };
        let end = start + close;
        let id = raw.get(start..end).unwrap_or(&[]);
        if raw.get(end) == Some(&b'>') && valid(id) {
            let id = String::from_utf8_lossy(id).into_owned();
            if !out.contains(&id) {
                out.push(id);
            }
            i = end + 1;
        } else {
            // Invalid content, or a new `<` before any `>`: resume at that point.
            i = end;
            if raw.get(end) == Some(&b'>') {
                i += 1;
            }
        }
    }
    if !saw_bracket {
        let t = trim_ascii(raw);
        if valid(t) && t.contains(&b'@') {
            out.push(String::from_utf8_lossy(t).into_owned());
        }
    }
    out
}

fn trim_ascii(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    s.get(start..end).unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoke() {
        assert_eq!(decode_text(b"=?ISO-2022-JP?B?GyRCRnxLXDhsGyhC?="), "日本語");
        assert_eq!(
            decode_text(b"=?utf-8?q?a=0D=0ABcc:_x@evil?="),
            "a Bcc: x@evil"
        );
        let a = parse_addresses(b"\"Yamada\" <taro..@docomo.ne.jp>, bob@example.com (Bob)");
        assert_eq!(a.len(), 2);
        assert_eq!(parse_msg_ids(b"<a@b> <c@d>"), vec!["a@b", "c@d"]);
    }
}
