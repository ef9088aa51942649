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
    decode_text_checked(raw).0
}

/// What decoding had to neutralise in a header value: characters that would have ended the
/// header line (or otherwise have no place in a header) and became spaces. The result is safe
/// either way; a count above zero is an attack indicator worth reporting (header injection
/// through an encoded word).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Neutralised {
    /// CR, LF, NEL, VT, FF, U+2028 and U+2029.
    pub line_breaks: usize,
    /// Other control characters (TAB, ordinary folding white space, is not counted).
    pub controls: usize,
}

impl Neutralised {
    pub fn is_empty(self) -> bool {
        self.line_breaks == 0 && self.controls == 0
    }

    fn add(&mut self, other: Neutralised) {
        self.line_breaks += other.line_breaks;
        self.controls += other.controls;
    }
}

/// [`decode_text`], also saying what had to be neutralised.
pub fn decode_text_checked(raw: &[u8]) -> (String, Neutralised) {
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
    let mut n = Neutralised::default();
    let t = clean_text(&text, &mut n);
    (t, n)
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

/// Control runs to one space, invisible characters removed, trimmed, bounded. What was turned
/// into a space is counted in `n`.
fn clean_text(s: &str, n: &mut Neutralised) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_TEXT_LEN));
    let mut after_control = false;
    for c in s.chars() {
        if is_break_or_control(c) {
            match c {
                '\t' => {}
                '\r' | '\n' | '\u{85}' | '\u{0B}' | '\u{0C}' | '\u{2028}' | '\u{2029}' => {
                    n.line_breaks += 1
                }
                _ => n.controls += 1,
            }
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
/// alone, `Name addr@host` without brackets, obsolete routes (`<@relay:user@host>`), `;` as a
/// separator (Outlook), garbage (skipped). Every `addr` is a plain addr-spec without white
/// space, control characters, `<` or `>`; at most [`MAX_ADDRESSES`] are returned.
pub fn parse_addresses(raw: &[u8]) -> Vec<Address> {
    parse_addresses_checked(raw).0
}

/// [`parse_addresses`], also saying what had to be neutralised in the display names.
pub fn parse_addresses_checked(raw: &[u8]) -> (Vec<Address>, Neutralised) {
    // Raw legacy text (Shift_JIS, EUC-JP, ISO-2022-JP) must become UTF-8 before tokenising:
    // its multi-byte characters contain `@`, `\\`, `[`, `]` (Shift_JIS trail bytes) or any
    // ASCII at all (ISO-2022-JP), which would split names and forge addresses. UTF-8 never
    // has ASCII bytes inside a character.
    // An address is only kept as written: non-ASCII addresses out of such text would be a
    // guess, so they are dropped.
    let transcoded;
    let legacy = raw.contains(&0x1B) || (!raw.is_ascii() && std::str::from_utf8(raw).is_err());
    let raw = if legacy {
        transcoded = charset::decode(None, raw).text;
        transcoded.as_bytes()
    } else {
        raw
    };
    let mut out = Vec::new();
    let mut neutralised = Neutralised::default();
    let mut cur = Mailbox::default();
    let mut i = 0;
    let mut space = false;
    while let Some(&b) = raw.get(i) {
        if out.len() >= MAX_ADDRESSES {
            break;
        }
        match b {
            b' ' | b'\t' | b'\r' | b'\n' => {
                space = true;
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
                space = true;
                continue;
            }
            b'"' => {
                let end = quoted_end(raw, i);
                let q = raw.get(i..end).unwrap_or(&[]);
                cur.token(&unquote(q), q, space);
                i = end;
            }
            b'<' => {
                let end = raw
                    .get(i + 1..)
                    .and_then(angle_end)
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
                cur.token(lit, lit, space);
                i = end;
            }
            b',' | b';' => {
                cur.finish(&mut out, &mut neutralised);
                i += 1;
            }
            b':' => {
                // A group name ends here: what was collected named the group, not a mailbox.
                cur = Mailbox::default();
                i += 1;
            }
            b'>' | b')' | b']' | b'\\' => {
                // Stray closing characters: garbage that poisons the spec (never an address).
                cur.token(&[], &[b], space);
                i += 1;
            }
            b'.' | b'@' => {
                cur.token(&[b], &[b], space);
                i += 1;
            }
            _ => {
                let len = raw
                    .get(i..)
                    .and_then(|s| s.iter().position(|&c| is_special_or_space(c)))
                    .unwrap_or(raw.len() - i)
                    .max(1);
                let atom = raw.get(i..i + len).unwrap_or(&[]);
                cur.token(atom, atom, space);
                i += len;
            }
        }
        space = false;
    }
    cur.finish(&mut out, &mut neutralised);
    out.truncate(MAX_ADDRESSES);
    if legacy {
        out.retain(|a| a.addr.is_ascii());
    }
    (out, neutralised)
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
    /// The display phrase: words unquoted, one space where the input had white space.
    phrase: Vec<u8>,
    /// The same tokens as written (quoted strings kept quoted), one space where the input had
    /// white space or a comment: a bare addr-spec once [`clean_addr`] has judged the spaces.
    spec: Vec<u8>,
    /// The content of the first `<...>`.
    angle: Option<Vec<u8>>,
    /// The first comment, unescaped.
    comment: Option<Vec<u8>>,
}

impl Mailbox {
    fn token(&mut self, phrase: &[u8], spec: &[u8], space_before: bool) {
        if space_before {
            if !self.phrase.is_empty() {
                self.phrase.push(b' ');
            }
            if !self.spec.is_empty() {
                self.spec.push(b' ');
            }
        }
        self.phrase.extend_from_slice(phrase);
        self.spec.extend_from_slice(spec);
    }

    fn finish(&mut self, out: &mut Vec<Address>, neutralised: &mut Neutralised) {
        let m = std::mem::take(self);
        let phrase = (!m.phrase.is_empty()).then_some(m.phrase.as_slice());
        let (addr, name) = match &m.angle {
            Some(a) => (clean_addr(a), phrase.or(m.comment.as_deref())),
            None => match clean_addr(&m.spec) {
                Some(a) => (Some(a), m.comment.as_deref()),
                None => {
                    // `Name addr@host` without angle brackets: the last word is the address.
                    match (
                        m.spec.iter().rposition(|&b| b == b' '),
                        m.phrase.iter().rposition(|&b| b == b' '),
                    ) {
                        (Some(s), Some(p)) => (
                            m.spec.get(s + 1..).and_then(clean_addr),
                            m.phrase.get(..p).or(m.comment.as_deref()),
                        ),
                        _ => (None, None),
                    }
                }
            },
        };
        let Some(addr) = addr else {
            return;
        };
        let name = name
            .map(|n| {
                let (text, found) = decode_text_checked(n);
                neutralised.add(found);
                text
            })
            .filter(|n| !n.is_empty());
        out.push(Address { name, addr });
    }
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

/// Turn the content of `<...>` or a bare spec into a plain addr-spec, or `None`. Comments are
/// removed; white space (outside quotes) is allowed only at the ends and next to `.`, `@`,
/// `:` and `,` (obsolete CFWS, source routes), anywhere else it means this is not one address.
/// An obsolete source route is dropped, then the result is validated.
fn clean_addr(raw: &[u8]) -> Option<String> {
    // Pass 1: comments out, white space runs to one space; quoted strings as written.
    let mut tmp = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        match b {
            b'(' => {
                i = comment(raw, i).0;
                if tmp.last() != Some(&b' ') {
                    tmp.push(b' ');
                }
                continue;
            }
            b'"' => {
                let end = quoted_end(raw, i);
                tmp.extend_from_slice(raw.get(i..end).unwrap_or(&[]));
                i = end;
                continue;
            }
            b' ' | b'\t' | b'\r' | b'\n' => {
                if tmp.last() != Some(&b' ') {
                    tmp.push(b' ');
                }
            }
            _ => tmp.push(b),
        }
        i += 1;
    }
    // Pass 2: drop the spaces CFWS allows; any other space outside quotes is fatal.
    let mut spec: Vec<u8> = Vec::with_capacity(tmp.len());
    let mut in_quote = false;
    let mut escaped = false;
    let mut k = 0;
    while let Some(&b) = tmp.get(k) {
        k += 1;
        if in_quote {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_quote = false;
            }
            spec.push(b);
            continue;
        }
        match b {
            b'"' => {
                in_quote = true;
                spec.push(b);
            }
            b' ' => {
                let prev_ok = matches!(spec.last(), None | Some(b'.' | b'@' | b':' | b','));
                let next_ok = matches!(tmp.get(k), None | Some(b'.' | b'@' | b':' | b','));
                if !prev_ok && !next_ok {
                    return None;
                }
            }
            _ => spec.push(b),
        }
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
/// labels or a literal. Non-ASCII (SMTPUTF8) allowed; controls, white space, `<` `>` and the
/// replacement character (an undecodable byte) never.
fn valid_addr_spec(s: &str) -> bool {
    if s.chars().any(|c| {
        c.is_control() || c.is_whitespace() || matches!(c, '<' | '>' | '\u{FFFD}' | '\u{FEFF}')
    }) {
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
/// ASCII without spaces only (others are skipped), each at most 250 octets, duplicates
/// dropped, at most [`MAX_MSG_IDS`]: when there are more, the first (the thread root in
/// References) and the last ones (the nearest parents), as RFC 5322 3.6.4 suggests for
/// trimming References. A value with no brackets at all but one `local@domain` token is
/// accepted as that token.
pub fn parse_msg_ids(raw: &[u8]) -> Vec<String> {
    let valid = |id: &[u8]| {
        !id.is_empty()
            && id.len() <= MAX_MSG_ID_LEN
            && id
                .iter()
                .all(|&b| b.is_ascii_graphic() && b != b'<' && b != b'>')
    };
    let mut first: Option<String> = None;
    let mut tail: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    let mut i = 0;
    let mut saw_bracket = false;
    while let Some(open) = raw.get(i..).and_then(|s| memchr::memchr(b'<', s)) {
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
            if first.as_ref() != Some(&id) && !tail.contains(&id) {
                if first.is_none() {
                    first = Some(id);
                } else {
                    if tail.len() + 1 >= MAX_MSG_IDS {
                        tail.pop_front();
                    }
                    tail.push_back(id);
                }
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
    let mut out: Vec<String> = first.into_iter().chain(tail).collect();
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
    use base64::Engine;

    fn b64(b: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(b)
    }

    fn enc(e: &'static encoding_rs::Encoding, s: &str) -> Vec<u8> {
        e.encode(s).0.into_owned()
    }

    fn q(b: &[u8]) -> String {
        b.iter().map(|c| format!("={c:02X}")).collect()
    }

    fn d(s: &str) -> String {
        decode_text(s.as_bytes())
    }

    #[test]
    fn japanese_encoded_words() {
        assert_eq!(d("=?ISO-2022-JP?B?GyRCRnxLXDhsGyhC?="), "日本語");
        assert_eq!(d("=?iso-2022-jp?q?=1B$BF|K\\8l=1B(B?="), "日本語");
        let sjis = enc(encoding_rs::SHIFT_JIS, "住民票の写し①");
        assert_eq!(
            d(&format!("=?Shift_JIS?B?{}?=", b64(&sjis))),
            "住民票の写し①"
        );
        assert_eq!(d(&format!("=?cp932?Q?{}?=", q(&sjis))), "住民票の写し①");
        let euc = enc(encoding_rs::EUC_JP, "住民票の写し");
        assert_eq!(d(&format!("=?EUC-JP?B?{}?=", b64(&euc))), "住民票の写し");
        assert_eq!(d("=?UTF-8?B?5L2P5rCR56Wo?="), "住民票");
        assert_eq!(
            d("=?utf-8?q?=E4=BD=8F=E6=B0=91=E7=A5=A8_abc?="),
            "住民票 abc"
        );
        // Lower-case encodings, RFC 2231 language suffix, empty text.
        assert_eq!(d("=?utf-8*ja?b?5L2P5rCR56Wo?="), "住民票");
        assert_eq!(d("a=?utf-8?q??=b"), "ab");
        // Joruri: UTF-7 with a space inside the Q text.
        assert_eq!(
            d("=?UNICODE-1-1-UTF-7?Q?+MKgw8zCzMPwwyTDGMLkwyA- UNICODE-1-1-UTF-7?="),
            "エンコードテスト UNICODE-1-1-UTF-7"
        );
    }

    #[test]
    fn split_characters_survive() {
        // ISO-2022-JP: 本 (0x4B5C) split between two words, the escape only in the first.
        let jis = b"\x1b$BF|K\\8l\x1b(B";
        let (a, b) = jis.split_at(5);
        assert_eq!(
            d(&format!(
                "=?ISO-2022-JP?B?{}?= =?ISO-2022-JP?B?{}?=",
                b64(a),
                b64(b)
            )),
            "日本語"
        );
        // Each word complete (escapes in both): joined, the back-to-back escapes are no error.
        let w1 = b64(b"\x1b$BF|K\\\x1b(B");
        let w2 = b64(b"\x1b$B8l\x1b(B");
        assert_eq!(
            d(&format!(
                "=?ISO-2022-JP?B?{w1}?=\r\n =?ISO-2022-JP?B?{w2}?="
            )),
            "日本語"
        );
        // UTF-8 split inside a character, B and Q, folded.
        let u = "日本語".as_bytes();
        for cut in 1..u.len() {
            let (x, y) = u.split_at(cut);
            assert_eq!(
                d(&format!("=?UTF-8?B?{}?=\t=?utf-8?B?{}?=", b64(x), b64(y))),
                "日本語"
            );
            assert_eq!(
                d(&format!("=?UTF-8?Q?{}?=  =?UTF-8?Q?{}?=", q(x), q(y))),
                "日本語"
            );
        }
        // Shift_JIS split after a lead byte.
        let s = enc(encoding_rs::SHIFT_JIS, "表示");
        let (x, y) = s.split_at(1);
        assert_eq!(
            d(&format!("=?SJIS?B?{}?= =?shift_jis?B?{}?=", b64(x), b64(y))),
            "表示"
        );
    }

    #[test]
    fn white_space_rules() {
        // Between encoded words: dropped, even across charsets.
        assert_eq!(
            d("=?UTF-8?B?44Ko44Oz44Kz44O844OJ44OG44K544OIIEVVQy1LUg==?= =?EUC-KR?B?xde9usau?="),
            "エンコードテスト EUC-KR테스트"
        );
        // Between a word and text: kept.
        assert_eq!(
            d("Re: =?UTF-8?B?5L2P5rCR56Wo?= [city] =?UTF-8?B?5L2P5rCR56Wo?= x"),
            "Re: 住民票 [city] 住民票 x"
        );
        // Encoded words inside quotes and glued to text, as MUAs tolerate.
        assert_eq!(d("\"=?UTF-8?B?5L2P5rCR56Wo?=\" <x@y>"), "\"住民票\" <x@y>");
        assert_eq!(d("abc=?utf-8?q?=E6=97=A5?=def"), "abc日def");
    }

    #[test]
    fn malformed_words_are_kept() {
        assert_eq!(d("=?utf-8?B?@@@@?="), "=?utf-8?B?@@@@?=");
        assert_eq!(d("=?x-klingon?B?/w==?="), "=?x-klingon?B?/w==?=");
        assert_eq!(d("=?utf-8?X?abc?="), "=?utf-8?X?abc?=");
        assert_eq!(d("=?utf-8?q?abc"), "=?utf-8?q?abc");
        assert_eq!(d("=??q?abc?="), "=??q?abc?=");
        assert_eq!(d("price =? 100"), "price =? 100");
        // Unknown charset on UTF-8 octets (Joruri's `UNKNOWN`): read as UTF-8.
        assert_eq!(d("=?UNKNOWN?B?44K344K544OG44Og?="), "システム");
        // Missing padding, padding in the middle, stray '=' in Q.
        assert_eq!(d("=?utf-8?b?YWI?="), "ab");
        assert_eq!(d("=?utf-8?b?YQ==Yg==?="), "ab");
        assert_eq!(d("=?utf-8?q?a=ZZb=?="), "a=ZZb=");
        // A word whose charset decoder fails is detected like raw text.
        let sjis = enc(encoding_rs::SHIFT_JIS, "住民票の写しを送付します");
        assert_eq!(
            d(&format!("=?iso-2022-jp?B?{}?=", b64(&sjis))),
            "住民票の写しを送付します"
        );
    }

    #[test]
    fn raw_8bit_headers() {
        assert_eq!(
            decode_text("住民票 のお知らせ".as_bytes()),
            "住民票 のお知らせ"
        );
        let t = "住民票の写しを送付します";
        assert_eq!(decode_text(&enc(encoding_rs::SHIFT_JIS, t)), t);
        assert_eq!(decode_text(&enc(encoding_rs::EUC_JP, t)), t);
        assert_eq!(decode_text(&enc(encoding_rs::ISO_2022_JP, t)), t);
        // Raw pieces around encoded words share one detection.
        let mut v = enc(encoding_rs::SHIFT_JIS, "件名：");
        v.extend_from_slice(b" =?UTF-8?B?5L2P5rCR56Wo?= ");
        v.extend_from_slice(&enc(encoding_rs::SHIFT_JIS, "送付"));
        assert_eq!(decode_text(&v), "件名： 住民票 送付");
    }

    #[test]
    fn no_line_breaks_or_controls_survive() {
        for (input, want) in [
            ("=?utf-8?q?a=0D=0ABcc:_x@evil?=", "a Bcc: x@evil"),
            ("=?utf-8?b?YQ0KQmNjOiB4QGV2aWw=?=", "a Bcc: x@evil"),
            ("a\r\nBcc: x@evil", "a Bcc: x@evil"),
            ("a\rb\nc", "a b c"),
            ("a\t\t  b", "a b"),
            ("=?utf-8?q?a=00b=07c=1Bd=7Fe?=", "a b c d e"),
            ("=?utf-8?q?a=C2=85b=E2=80=A8c=E2=80=A9d?=", "a b c d"),
            ("=?utf-8?q?=0D=0A=0D=0A?=", ""),
            ("=?utf-8?q?=E2=80=AEfdp.exe?=", "fdp.exe"),
            ("  padded  ", "padded"),
        ] {
            let got = d(input);
            assert_eq!(got, want, "{input:?}");
            assert!(!got.chars().any(|c| c.is_control()), "{input:?}");
        }
        // The same through an ISO-2022-JP word (CR LF in ASCII mode).
        let got = d(&format!("=?iso-2022-jp?B?{}?=", b64(b"x\r\nBcc: y")));
        assert_eq!(got, "x Bcc: y");
    }

    #[test]
    fn neutralised_breaks_and_controls_are_counted() {
        let n = |input: &str| decode_text_checked(input.as_bytes()).1;
        // Decoded line breaks: an injection attempt.
        let got = decode_text_checked(b"=?utf-8?b?YQ0KQmNjOiB4QGV2aWw=?=");
        assert_eq!(got.0, "a Bcc: x@evil");
        assert_eq!(
            got.1,
            Neutralised {
                line_breaks: 2,
                controls: 0
            }
        );
        assert_eq!(
            n("=?utf-8?q?a=C2=85b=E2=80=A8c=0Bd?="),
            Neutralised {
                line_breaks: 3,
                controls: 0
            }
        );
        assert_eq!(
            n("=?utf-8?q?a=00b=07c=7Fe?="),
            Neutralised {
                line_breaks: 0,
                controls: 3
            }
        );
        // Folding white space and tabs are not damage; neither are plain or encoded words.
        for clean in [
            "a\t\t  b",
            "=?UTF-8?B?5L2P5rCR56Wo?= x",
            "=?ISO-2022-JP?B?GyRCRnxLXDhsGyhC?=",
        ] {
            assert!(n(clean).is_empty(), "{clean:?}");
        }
        // Display names in address lists.
        let (list, n) = parse_addresses_checked(
            "=?UTF-8?B?5bqD5aCx6KqyDQpSZXBseS1UbzogYXR0YWNrZXJAZXZpbC5leGFtcGxl?= <koho@example.com>, b@x.example"
                .as_bytes(),
        );
        assert_eq!(list.len(), 2);
        assert_eq!(
            list[0].name.as_deref(),
            Some("広報課 Reply-To: attacker@evil.example")
        );
        assert_eq!(
            n,
            Neutralised {
                line_breaks: 2,
                controls: 0
            }
        );
        assert!(parse_addresses_checked(b"\"Yamada, Taro\" <t@x.example>")
            .1
            .is_empty());
    }

    #[test]
    fn long_and_hostile_headers_are_bounded() {
        let word = "=?UTF-8?B?5L2P5rCR56Wo?= ";
        let long = word.repeat(20_000);
        let got = d(&long);
        assert!(got.len() <= MAX_TEXT_LEN);
        assert!(got.starts_with("住民票住民票"));
        // Many openers without closers, and quadratic bait: must finish quickly.
        for bait in [
            "=?".repeat(100_000),
            "=?a?q?".repeat(50_000),
            "=?a?b?=?=".repeat(30_000),
        ] {
            let t = std::time::Instant::now();
            let got = d(&bait);
            assert!(got.len() <= MAX_TEXT_LEN);
            assert!(
                t.elapsed() < std::time::Duration::from_secs(2),
                "slow on bait"
            );
        }
        let bytes: Vec<u8> = (0..=255u8).cycle().take(200_000).collect();
        let got = decode_text(&bytes);
        assert!(got.len() <= MAX_TEXT_LEN);
        assert!(!got.chars().any(|c| c.is_control()));
    }

    fn addr(name: Option<&str>, a: &str) -> Address {
        Address {
            name: name.map(str::to_string),
            addr: a.to_string(),
        }
    }

    fn pa(s: &str) -> Vec<Address> {
        parse_addresses(s.as_bytes())
    }

    #[test]
    fn addresses() {
        assert_eq!(
            pa("\"山田 太郎\" <taro@example.jp>"),
            vec![addr(Some("山田 太郎"), "taro@example.jp")]
        );
        let jis = b64(&enc(encoding_rs::ISO_2022_JP, "山田太郎"));
        assert_eq!(
            pa(&format!(
                "=?ISO-2022-JP?B?{jis}?= <yamada@city.example.lg.jp>"
            )),
            vec![addr(Some("山田太郎"), "yamada@city.example.lg.jp")]
        );
        assert_eq!(
            pa(&format!("\"=?ISO-2022-JP?B?{jis}?=\" <y@x.jp>")),
            vec![addr(Some("山田太郎"), "y@x.jp")]
        );
        assert_eq!(
            pa("John Doe <john@x.example>, jane@y.example, <bare@z.example>"),
            vec![
                addr(Some("John Doe"), "john@x.example"),
                addr(None, "jane@y.example"),
                addr(None, "bare@z.example")
            ]
        );
        assert_eq!(
            pa("a@b.example (Comment Name)"),
            vec![addr(Some("Comment Name"), "a@b.example")]
        );
        assert_eq!(
            pa("Real (ignored) <r@b.example>"),
            vec![addr(Some("Real"), "r@b.example")]
        );
        assert_eq!(
            pa("\"Doe, John\" <j@x.example>; k@x.example"),
            vec![
                addr(Some("Doe, John"), "j@x.example"),
                addr(None, "k@x.example")
            ]
        );
        assert_eq!(
            pa("\"a \\\"q\\\" b\" <q@x.example>")[0].name.as_deref(),
            Some("a \"q\" b")
        );
        // Obsolete syntax: route, spaces around dots and at.
        assert_eq!(
            pa("<@relay.example,@r2.example:user@host.example>"),
            vec![addr(None, "user@host.example")]
        );
        assert_eq!(
            pa("john . doe @ example . com"),
            vec![addr(None, "john.doe@example.com")]
        );
        assert_eq!(pa("< j@x.example >"), vec![addr(None, "j@x.example")]);
        // Name without brackets.
        assert_eq!(
            pa("Yamada Taro taro@example.jp"),
            vec![addr(Some("Yamada Taro"), "taro@example.jp")]
        );
        // Mobile-carrier local parts, SMTPUTF8, quoted local parts, literals.
        assert_eq!(
            pa("taro..@docomo.ne.jp"),
            vec![addr(None, "taro..@docomo.ne.jp")]
        );
        assert_eq!(
            pa("<.a..b.@ezweb.ne.jp>"),
            vec![addr(None, ".a..b.@ezweb.ne.jp")]
        );
        assert_eq!(
            pa("山田 <山田@例え.jp>"),
            vec![addr(Some("山田"), "山田@例え.jp")]
        );
        assert_eq!(
            pa("\"j.d\"@x.example"),
            vec![addr(None, "\"j.d\"@x.example")]
        );
        assert_eq!(pa("u@[192.0.2.1]"), vec![addr(None, "u@[192.0.2.1]")]);
        assert_eq!(pa("<mailto:m@x.example>"), vec![addr(None, "m@x.example")]);
    }

    #[test]
    fn raw_legacy_display_names() {
        // 表 is 95 5C and ソ is 83 5C in Shift_JIS; 能 is 94 5C; @ (40) is a trail byte too.
        for name in ["表示ソフト能力", "山田＠役所"] {
            let mut v = enc(encoding_rs::SHIFT_JIS, name);
            v.extend_from_slice(b" <a@x.example>");
            assert_eq!(
                parse_addresses(&v),
                vec![addr(Some(name), "a@x.example")],
                "{name}"
            );
            let mut v = b"\"".to_vec();
            v.extend_from_slice(&enc(encoding_rs::EUC_JP, name));
            v.extend_from_slice(b"\" <a@x.example>");
            assert_eq!(
                parse_addresses(&v),
                vec![addr(Some(name), "a@x.example")],
                "{name}"
            );
        }
        // ISO-2022-JP raw: its bytes are ASCII, `<` and `,` included (市 is 3B 54, 、 is 21 22).
        let mut v = enc(encoding_rs::ISO_2022_JP, "市役所、総務課");
        v.extend_from_slice(b" <soumu@city.example.lg.jp>");
        assert_eq!(
            parse_addresses(&v),
            vec![addr(Some("市役所、総務課"), "soumu@city.example.lg.jp")]
        );
    }

    #[test]
    fn groups() {
        assert_eq!(pa("undisclosed-recipients:;"), vec![]);
        assert_eq!(pa("Team: ;"), vec![]);
        assert_eq!(
            pa("Team: a@x.example, B <b@y.example>;, c@z.example"),
            vec![
                addr(None, "a@x.example"),
                addr(Some("B"), "b@y.example"),
                addr(None, "c@z.example")
            ]
        );
        assert_eq!(
            pa("=?utf-8?q?=E8=AA=B2?=: a@x.example;"),
            vec![addr(None, "a@x.example")]
        );
    }

    #[test]
    fn bad_addresses_are_dropped() {
        for bad in [
            "",
            ",,,",
            "<<<>>>",
            "foo",
            "@",
            "a@",
            "@b",
            "\"unterminated",
            "(unterminated comment",
            "<a b@x.example>",
            "<a\x00b@x.example>",
            "<a\x1b@x.example>",
            "\"john doe\"@x.example",
            "a@b@c",
            "a@x..example",
            "a)@x.example",
            "<a@x.example\r\nBcc: evil@y.example>",
        ] {
            let got = pa(bad);
            assert!(got.is_empty(), "{bad:?} gave {got:?}");
        }
        let got = parse_addresses(b"<a@x.example> <b@y.example>, \xff\xfe <\xff@x>");
        assert_eq!(got, vec![addr(None, "a@x.example")]);
    }

    #[test]
    fn names_cannot_carry_line_breaks() {
        let got = pa("\"=?utf-8?q?x=0D=0ABcc:_y@evil?=\" <a@b.example>");
        assert_eq!(got, vec![addr(Some("x Bcc: y@evil"), "a@b.example")]);
        let got = pa("\"x\r\nBcc: y\" <a@b.example>");
        assert_eq!(got, vec![addr(Some("x Bcc: y"), "a@b.example")]);
        for a in got {
            assert!(!a.addr.contains(['\r', '\n', ' ', '<', '>']));
        }
    }

    #[test]
    fn many_addresses_are_bounded() {
        let list = "a@x.example, ".repeat(5000);
        assert_eq!(pa(&list).len(), MAX_ADDRESSES);
        let t = std::time::Instant::now();
        let _ = parse_addresses(&b"(((((".repeat(50_000));
        let _ = parse_addresses(&b"\"".repeat(100_000));
        let _ = parse_addresses(&b"<".repeat(100_000));
        let _ = parse_addresses(&b"a ".repeat(100_000));
        assert!(t.elapsed() < std::time::Duration::from_secs(2));
    }

    /// Mutated realistic headers and random bytes: no panic, and the output invariants hold.
    #[test]
    fn random_input_keeps_invariants() {
        let seeds: [&[u8]; 8] = [
            b"=?ISO-2022-JP?B?GyRCRnxLXDhsGyhC?= =?utf-8?q?a=0D=0Ab?=",
            b"\"=?UTF-8?B?5L2P5rCR56Wo?=\" <a@b.example>, c@d (x), g: h@i;",
            b"<@r:u@h> \"q\\\"\" <x@[1.2.3.4]> (a(b)c) <<>> ,;: \x1b$B",
            b"<id1@x> <id2@y> (c) <bad id>",
            b"\x82\xa0\x82\xa2 <sjis@x.example>",
            b"\xa4\xa2\xa4\xa4 =?x?b?=?= =?utf-7?q?+ZeVnLIqe-?=",
            b"=?utf-8?b?4oCu?= \r\n\t \xe2\x80\xa8 \xc2\x85",
            b"\"unterminated (comment <angle",
        ];
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..20_000 {
            let seed = seeds[round % seeds.len()];
            let mut v = seed.to_vec();
            let edits = (next() % 8) as usize;
            for _ in 0..edits {
                let r = next();
                let pos = if v.is_empty() {
                    0
                } else {
                    (r as usize >> 8) % (v.len() + 1)
                };
                let byte = (r >> 40) as u8;
                match r % 4 {
                    0 if pos < v.len() => v[pos] = byte,
                    1 => v.insert(pos, byte),
                    2 if pos < v.len() => {
                        v.remove(pos);
                    }
                    _ => {
                        let tok: &[u8] =
                            [&b"=?"[..], b"?=", b"\"", b"<", b">", b"(", b"\x1b$B", b"@"]
                                [(byte % 8) as usize];
                        v.splice(pos..pos, tok.iter().copied());
                    }
                }
            }
            let t = decode_text(&v);
            assert!(!t.chars().any(|c| c.is_control()), "{v:?} -> {t:?}");
            assert!(t.len() <= MAX_TEXT_LEN);
            for a in parse_addresses(&v) {
                assert!(valid_addr_spec(&a.addr), "{v:?} -> {a:?}");
                if let Some(n) = &a.name {
                    assert!(!n.chars().any(|c| c.is_control()), "{v:?} -> {a:?}");
                }
            }
            for id in parse_msg_ids(&v) {
                assert!(id
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>'));
            }
        }
    }

    #[test]
    fn msg_ids() {
        let p = |s: &str| parse_msg_ids(s.as_bytes());
        assert_eq!(p("<a@b>"), vec!["a@b"]);
        assert_eq!(p("  <a@b>\r\n\t<c.d@e> <a@b>"), vec!["a@b", "c.d@e"]);
        assert_eq!(p("(comment) <x@y> (more)"), vec!["x@y"]);
        assert_eq!(p("<<a@b>>"), vec!["a@b"]);
        assert_eq!(p("a@b"), vec!["a@b"]);
        assert_eq!(p(" bare-no-at "), Vec::<String>::new());
        for bad in ["<>", "<a b@c>", "<a@b", "<é@x>", "<a\r\n@b>", "<a\x00@b>"] {
            assert_eq!(p(bad), Vec::<String>::new(), "{bad:?}");
        }
        assert_eq!(p("<bad id> <good@x>"), vec!["good@x"]);
        let many: String = (0..200).map(|i| format!("<{i}@x> ")).collect();
        let got = p(&many);
        assert_eq!(got.len(), MAX_MSG_IDS);
        // The root and the nearest parents.
        assert_eq!(got[0], "0@x");
        assert_eq!(got[1], "151@x");
        assert_eq!(got[MAX_MSG_IDS - 1], "199@x");
        let t = std::time::Instant::now();
        let _ = parse_msg_ids(&b"<a@b> ".repeat(50_000));
        let _ = parse_msg_ids(&b"<".repeat(300_000));
        assert!(t.elapsed() < std::time::Duration::from_secs(2));
        assert_eq!(p(&format!("<{}@x>", "a".repeat(300))), Vec::<String>::new());
    }
}

#[cfg(test)]
mod corpus_tests {
    use super::*;

    use crate::mime::testutil::{corpora, eml_files};

    /// The unfolded top-level header fields of a message (enough for these tests).
    fn top_headers(msg: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut fields: Vec<(String, Vec<u8>)> = Vec::new();
        for line in msg.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                break;
            }
            if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
                if let Some(f) = fields.last_mut() {
                    f.1.extend_from_slice(line);
                }
                continue;
            }
            if let Some(colon) = memchr::memchr(b':', line) {
                let name = String::from_utf8_lossy(&line[..colon]).trim().to_string();
                let value = line[colon + 1..]
                    .strip_prefix(b" ")
                    .unwrap_or(&line[colon + 1..]);
                fields.push((name, value.to_vec()));
            }
        }
        fields
    }

    fn field<'a>(h: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
        h.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    #[test]
    fn joruri_japanese_headers() {
        let Some(dir) = corpora("joruri-mail-jp/test/fixtures/emails/charset") else {
            return;
        };
        let expect = [
            (
                "iso-2022-jp.eml",
                "システム",
                "エンコードテスト ISO-2022-JP",
            ),
            (
                "iso-2022-jp-2.eml",
                "システム",
                "エンコードテスト ISO-2022-JP-2",
            ),
            (
                "iso-2022-jp_7bit.eml",
                "システム",
                "エンコードテスト ISO-2022-JP",
            ),
            ("shift_jis.eml", "システム", "エンコードテスト Shift_JIS"),
            ("shift-jis.eml", "システム", "エンコードテスト Shift-JIS"),
            ("euc-jp.eml", "システム", "エンコードテスト EUC-JP"),
            ("utf-8.eml", "システム", "エンコードテスト UTF-8"),
            ("unknown.eml", "システム", "エンコードテスト UNKNOWN"),
            (
                "unicode-1-1-utf-7.eml",
                "システム",
                "エンコードテスト UNICODE-1-1-UTF-7",
            ),
            ("euc-kr.eml", "테스트", "エンコードテスト EUC-KR테스트"),
            (
                "gb2312.eml",
                "字符串转GB2312",
                "エンコードテスト GB2312字符串转GB2312",
            ),
            ("koi8-r.eml", "система", "エンコードテスト KOI8-RЭто тест"),
        ];
        for (file, from, subject) in expect {
            let msg = std::fs::read(dir.join(file)).expect("read corpus file");
            let h = top_headers(&msg);
            let s = decode_text(field(&h, "Subject").expect("Subject"));
            assert_eq!(s, subject, "{file}");
            let f = parse_addresses(field(&h, "From").expect("From"));
            assert_eq!(
                f,
                vec![Address {
                    name: Some(from.into()),
                    addr: "admin@localhost".into()
                }],
                "{file}"
            );
        }
    }

    #[test]
    fn ruby_mail_gem_headers() {
        let Some(dir) = corpora("ruby-mail-gem/spec/fixtures/emails") else {
            return;
        };
        let expect = [
            ("multi_charset/japanese.eml", "まみむめも"),
            ("multi_charset/japanese_iso_2022.eml", "まみむめも"),
            (
                "plain_emails/raw_email_with_partially_quoted_subject.eml",
                "Re: Test: \"漢字\" mid \"漢字\" tail",
            ),
            ("rfc2822/example14.eml", "Re: TEST テストテスト"),
            (
                "error_emails/invalid_subject_characters.eml",
                "Formação FrenetikPolis: Mega Campanha Final Verão | Cursos de Setembro",
            ),
        ];
        for (file, subject) in expect {
            let msg = std::fs::read(dir.join(file)).expect("read corpus file");
            let h = top_headers(&msg);
            assert_eq!(
                decode_text(field(&h, "Subject").expect("Subject")),
                subject,
                "{file}"
            );
        }
        let msg = std::fs::read(dir.join("multi_charset/japanese.eml")).expect("read");
        let to = parse_addresses(field(&top_headers(&msg), "To").expect("To"));
        let want = Address {
            name: Some("みける".into()),
            addr: "raasdnil@gmail.com".into(),
        };
        assert_eq!(to, vec![want]);
    }

    #[test]
    fn corpus_headers_decode_cleanly() {
        let mut files = Vec::new();
        for sub in [
            "joruri-mail-jp",
            "ruby-mail-gem",
            "sisimai-set-of-emails",
            "mimekit-testdata",
        ] {
            if let Some(d) = corpora(sub) {
                eml_files(&d, &mut files);
            }
        }
        let mut replaced = Vec::new();
        for path in &files {
            let Ok(msg) = std::fs::read(path) else {
                continue;
            };
            for (name, value) in top_headers(&msg) {
                let lname = name.to_ascii_lowercase();
                let texts: Vec<String> = match lname.as_str() {
                    "subject" | "comments" => vec![decode_text(&value)],
                    "from" | "to" | "cc" | "reply-to" | "sender" => parse_addresses(&value)
                        .into_iter()
                        .map(|a| {
                            assert!(valid_addr_spec(&a.addr), "{}: {:?}", path.display(), a.addr);
                            a.name.unwrap_or_default()
                        })
                        .collect(),
                    "message-id" | "references" | "in-reply-to" => parse_msg_ids(&value),
                    _ => continue,
                };
                for t in texts {
                    assert!(
                        !t.chars().any(|c| c.is_control()),
                        "{}: {t:?}",
                        path.display()
                    );
                    assert!(t.len() <= MAX_TEXT_LEN);
                    if t.contains('\u{FFFD}') {
                        replaced.push(format!("{}: {name}: {t}", path.display()));
                        // Only where the input itself holds U+FFFD.
                        assert!(
                            memchr::memmem::find(&value, "\u{FFFD}".as_bytes()).is_some(),
                            "{}: {name}: {t}",
                            path.display()
                        );
                    }
                }
            }
        }
        for r in &replaced {
            eprintln!("replacement character: {r}");
        }
        eprintln!(
            "{} files, {} header values with U+FFFD",
            files.len(),
            replaced.len()
        );
        // MUGAIKA_PRINT_HEADERS=1 shows every non-ASCII or encoded subject, for eyeballing.
        if std::env::var_os("MUGAIKA_PRINT_HEADERS").is_some() {
            for path in &files {
                let Ok(msg) = std::fs::read(path) else {
                    continue;
                };
                let h = top_headers(&msg);
                if let Some(v) = field(&h, "Subject") {
                    if !v.is_ascii() || v.windows(2).any(|w| w == b"=?") {
                        eprintln!("SUBJ {}: {}", path.display(), decode_text(v));
                    }
                }
            }
        }
    }
}
