//! Streaming transfer decoders: base64 and quoted-printable.
//!
//! Both are fed bytes in pieces of any size and keep O(1) state between calls, so that the
//! parser can decode a body line by line (or a fuzzer byte by byte) and get the same output
//! however the input is split; every unit test below checks every split point. Both are
//! lenient in what they decode (real mail is sloppy) but record every deviation from RFC 2045
//! as a flag, because a deviation is also how parser-differential attacks hide content:
//! the sanitiser is strict with flagged parts.
//!
//! Base64: the alphabet is decoded, whitespace is ignored, any other octet is skipped and
//! flagged [`Flags::BAD_BASE64`]. Decoding stops at the first `=` (padding): anything but `=`
//! and whitespace after it is ignored and flagged, so a second payload appended after the
//! padding never reaches the sanitiser. Missing padding at the end is tolerated.
//!
//! Quoted-printable: `=XX` in either case, soft line breaks (`=` at the end of a line, even
//! with trailing whitespace after it), trailing whitespace on a line removed (RFC 2045 6.7
//! rule 3), an invalid `=` sequence passed through literally and flagged
//! [`Flags::BAD_QUOTED_PRINTABLE`]. Line breaks (CRLF, LF or a bare CR) come out as `\n`.

use super::Flags;

/// Marks in [`B64`] for octets that are not base64 digits.
const B64_WS: u8 = 0x40;
const B64_PAD: u8 = 0x41;
const B64_JUNK: u8 = 0xff;

/// Octet → sextet value, or one of the marks above.
static B64: [u8; 256] = {
    let mut t = [B64_JUNK; 256];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut i = 0;
    while i < 64 {
        t[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    t[b' ' as usize] = B64_WS;
    t[b'\t' as usize] = B64_WS;
    t[b'\r' as usize] = B64_WS;
    t[b'\n' as usize] = B64_WS;
    t[0x0b] = B64_WS;
    t[0x0c] = B64_WS;
    t[b'=' as usize] = B64_PAD;
    t
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum B64State {
    /// Decoding data.
    Data,
    /// Saw `=`: only more `=` and whitespace are expected.
    Padding,
    /// Saw data after the padding: everything else is ignored.
    Done,
}

/// A streaming base64 decoder.
#[derive(Debug, Clone)]
pub struct Base64Decoder {
    /// Sextets of the current quantum, most significant first.
    acc: u32,
    /// How many sextets `acc` holds (0..=3).
    n: u8,
    state: B64State,
    flags: Flags,
}

impl Default for Base64Decoder {
    fn default() -> Self {
        Base64Decoder::new()
    }
}

impl Base64Decoder {
    pub fn new() -> Base64Decoder {
        Base64Decoder {
            acc: 0,
            n: 0,
            state: B64State::Data,
            flags: Flags::empty(),
        }
    }

    /// Damage seen so far.
    pub fn flags(&self) -> Flags {
        self.flags
    }

    /// Decodes the next piece of input, appending the octets to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        if self.state != B64State::Data {
            self.feed_after_padding(input);
            return;
        }
        out.reserve(input.len() / 4 * 3 + 3);
        let mut i = 0;
        while i < input.len() {
            // Fast path: whole quanta of clean alphabet at a quantum boundary, written into
            // room made once (no capacity check per quantum).
            if self.n == 0 {
                let rest = input.get(i..).unwrap_or_default();
                let start = out.len();
                out.resize(start + rest.len() / 4 * 3, 0);
                let mut done = 0;
                for (q, dst) in rest
                    .chunks_exact(4)
                    .zip(out.get_mut(start..).unwrap_or_default().chunks_exact_mut(3))
                {
                    let (a, b, c, d) = (
                        B64[usize::from(q[0])],
                        B64[usize::from(q[1])],
                        B64[usize::from(q[2])],
                        B64[usize::from(q[3])],
                    );
                    if (a | b | c | d) >= 64 {
                        break;
                    }
                    let v = (u32::from(a) << 18)
                        | (u32::from(b) << 12)
                        | (u32::from(c) << 6)
                        | u32::from(d);
                    dst.copy_from_slice(&[(v >> 16) as u8, (v >> 8) as u8, v as u8]);
                    done += 1;
                }
                out.truncate(start + done * 3);
                i += done * 4;
            }
            let Some(&byte) = input.get(i) else { break };
            i += 1;
            match B64[byte as usize] {
                B64_WS => {}
                B64_JUNK => self.flags.insert(Flags::BAD_BASE64),
                B64_PAD => {
                    self.flush_partial(out, true);
                    self.state = B64State::Padding;
                    if let Some(rest) = input.get(i..) {
                        self.feed_after_padding(rest);
                    }
                    return;
                }
                v => {
                    self.acc = (self.acc << 6) | u32::from(v);
                    self.n += 1;
                    if self.n == 4 {
                        let v = self.acc;
                        out.extend_from_slice(&[(v >> 16) as u8, (v >> 8) as u8, v as u8]);
                        self.acc = 0;
                        self.n = 0;
                    }
                }
            }
        }
    }

    fn feed_after_padding(&mut self, input: &[u8]) {
        if self.state == B64State::Done {
            return;
        }
        for &byte in input {
            match B64[byte as usize] {
                B64_WS | B64_PAD => {}
                _ => {
                    // Data (or junk) after the padding: a second payload, or a broken encoder.
                    // Either way it is not decoded.
                    self.flags.insert(Flags::BAD_BASE64);
                    self.state = B64State::Done;
                    return;
                }
            }
        }
    }

    /// Emits the octets of an incomplete quantum (missing or early padding).
    fn flush_partial(&mut self, out: &mut Vec<u8>, at_padding: bool) {
        let v = self.acc;
        match self.n {
            0 => {
                if at_padding {
                    // `=` where no padding is needed.
                    self.flags.insert(Flags::BAD_BASE64);
                }
            }
            1 => self.flags.insert(Flags::BAD_BASE64), // 6 bits make no octet
            2 => out.push((v >> 4) as u8),
            _ => out.extend_from_slice(&[(v >> 10) as u8, (v >> 2) as u8]),
        }
        self.acc = 0;
        self.n = 0;
    }

    /// Ends the input: emits what an unpadded final quantum holds. Returns the flags.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Flags {
        if self.state == B64State::Data {
            self.flush_partial(out, false);
        }
        self.state = B64State::Done;
        self.flags
    }
}

/// Longest run of trailing whitespace held back by [`QpDecoder`]; a longer run is not
/// trailing-whitespace padding, and its excess is passed on (deterministically, so the output
/// still does not depend on how the input is split).
const QP_MAX_WS: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QpState {
    Text,
    /// Saw `=`.
    Eq,
    /// Saw `=` and one hex digit (its value and the digit as written).
    EqHex(u8, u8),
    /// Saw `=` followed by whitespace (held in `ws`): a soft break if a line break follows.
    EqWs,
}

/// A streaming quoted-printable decoder. Line breaks come out as `\n`.
#[derive(Debug, Clone)]
pub struct QpDecoder {
    state: QpState,
    /// Whitespace seen but not yet written: dropped if the line ends, written otherwise.
    ws: Vec<u8>,
    /// The previous octet was a CR (a following LF belongs to the same line break).
    after_cr: bool,
    flags: Flags,
}

impl Default for QpDecoder {
    fn default() -> Self {
        QpDecoder::new()
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

impl QpDecoder {
    pub fn new() -> QpDecoder {
        QpDecoder {
            state: QpState::Text,
            ws: Vec::new(),
            after_cr: false,
            flags: Flags::empty(),
        }
    }

    /// Damage seen so far.
    pub fn flags(&self) -> Flags {
        self.flags
    }

    /// Decodes the next piece of input (which may hold CRLF, LF or CR line breaks).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len());
        let mut i = 0;
        while let Some(&b) = input.get(i) {
            if self.state == QpState::Text {
                if b == b'=' {
                    // Fast path: a complete `=XX` escape (most of Japanese text).
                    let high = input.get(i + 1).and_then(|&h| hex_value(h));
                    let low = input.get(i + 2).and_then(|&l| hex_value(l));
                    if let (Some(h), Some(l)) = (high, low) {
                        if !self.ws.is_empty() {
                            out.extend_from_slice(&self.ws);
                            self.ws.clear();
                        }
                        out.push((h << 4) | l);
                        self.after_cr = false;
                        i += 3;
                        continue;
                    }
                } else if b != b'\r' && b != b'\n' {
                    // Fast path: a run of ordinary octets.
                    let rest = input.get(i..).unwrap_or_default();
                    let end = memchr::memchr3(b'=', b'\r', b'\n', rest).unwrap_or(rest.len());
                    self.after_cr = false;
                    if let Some(run) = rest.get(..end) {
                        self.text_run(run, out);
                    }
                    i += end;
                    continue;
                }
            }
            i += 1;
            self.byte(b, out);
        }
    }

    /// A line break, as if `\n` had been fed.
    pub fn line_break(&mut self, out: &mut Vec<u8>) {
        self.byte(b'\n', out);
    }

    /// A run of octets with no `=`, CR or LF, in state `Text`.
    fn text_run(&mut self, run: &[u8], out: &mut Vec<u8>) {
        match run.iter().rposition(|&b| b != b' ' && b != b'\t') {
            Some(last) => {
                out.extend_from_slice(&self.ws);
                self.ws.clear();
                let (body, tail) = run.split_at(last + 1);
                out.extend_from_slice(body);
                self.hold_ws(tail, out);
            }
            None => self.hold_ws(run, out),
        }
    }

    /// Holds whitespace back, writing the excess beyond [`QP_MAX_WS`].
    fn hold_ws(&mut self, ws: &[u8], out: &mut Vec<u8>) {
        self.ws.extend_from_slice(ws);
        if self.ws.len() > QP_MAX_WS {
            let excess = self.ws.len() - QP_MAX_WS;
            out.extend(self.ws.drain(..excess));
        }
    }

    fn line_end(&mut self, out: &mut Vec<u8>) {
        match self.state {
            QpState::Text => {
                // Trailing whitespace is transport padding (RFC 2045 6.7 (3)).
                self.ws.clear();
                out.push(b'\n');
            }
            QpState::Eq | QpState::EqWs => {
                // Soft line break.
                self.ws.clear();
            }
            QpState::EqHex(_, d) => {
                self.flags.insert(Flags::BAD_QUOTED_PRINTABLE);
                out.push(b'=');
                out.push(d);
                out.push(b'\n');
            }
        }
        self.state = QpState::Text;
    }

    fn byte(&mut self, b: u8, out: &mut Vec<u8>) {
        if b == b'\n' && self.after_cr {
            // The LF of a CRLF whose CR already ended the line.
            self.after_cr = false;
            return;
        }
        self.after_cr = b == b'\r';
        if b == b'\r' || b == b'\n' {
            self.line_end(out);
            return;
        }
        match self.state {
            QpState::Text => match b {
                b'=' => {
                    out.extend_from_slice(&self.ws);
                    self.ws.clear();
                    self.state = QpState::Eq;
                }
                b' ' | b'\t' => self.hold_ws(&[b], out),
                _ => {
                    out.extend_from_slice(&self.ws);
                    self.ws.clear();
                    out.push(b);
                }
            },
            QpState::Eq => match (b, hex_value(b)) {
                (_, Some(h)) => self.state = QpState::EqHex(h, b),
                (b' ' | b'\t', _) => {
                    self.state = QpState::EqWs;
                    self.hold_ws(&[b], out);
                }
                _ => {
                    // `=` not followed by hex or a line break: keep it literally.
                    self.flags.insert(Flags::BAD_QUOTED_PRINTABLE);
                    out.push(b'=');
                    self.state = QpState::Text;
                    self.byte(b, out);
                }
            },
            QpState::EqHex(h, d) => match hex_value(b) {
                Some(l) => {
                    out.push((h << 4) | l);
                    self.state = QpState::Text;
                }
                None => {
                    self.flags.insert(Flags::BAD_QUOTED_PRINTABLE);
                    out.push(b'=');
                    out.push(d);
                    self.state = QpState::Text;
                    self.byte(b, out);
                }
            },
            QpState::EqWs => match b {
                b' ' | b'\t' => self.hold_ws(&[b], out),
                _ => {
                    // `= x`: not a soft break after all.
                    self.flags.insert(Flags::BAD_QUOTED_PRINTABLE);
                    out.push(b'=');
                    out.extend_from_slice(&self.ws);
                    self.ws.clear();
                    self.state = QpState::Text;
                    self.byte(b, out);
                }
            },
        }
    }

    /// Ends the input. A final `=` is a soft break (encoders end a body that has no final
    /// line break that way); trailing whitespace is dropped. Returns the flags.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Flags {
        match self.state {
            QpState::Text | QpState::Eq | QpState::EqWs => {}
            QpState::EqHex(_, d) => {
                self.flags.insert(Flags::BAD_QUOTED_PRINTABLE);
                out.push(b'=');
                out.push(d);
            }
        }
        self.ws.clear();
        self.state = QpState::Text;
        self.after_cr = false;
        self.flags
    }
}

/// Decodes a whole base64 string (a convenience for tests and small values).
pub fn base64(input: &[u8]) -> (Vec<u8>, Flags) {
    let mut d = Base64Decoder::new();
    let mut out = Vec::new();
    d.feed(input, &mut out);
    let f = d.finish(&mut out);
    (out, f)
}

/// Decodes a whole quoted-printable string (a convenience for tests and small values).
pub fn quoted_printable(input: &[u8]) -> (Vec<u8>, Flags) {
    let mut d = QpDecoder::new();
    let mut out = Vec::new();
    d.feed(input, &mut out);
    let f = d.finish(&mut out);
    (out, f)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` whole, then split at every point (two pieces), then byte by byte, and
    /// checks that all give the same output and flags.
    fn every_split<D: Clone>(
        input: &[u8],
        new: impl Fn() -> D,
        feed: impl Fn(&mut D, &[u8], &mut Vec<u8>),
        finish: impl Fn(&mut D, &mut Vec<u8>) -> Flags,
    ) -> (Vec<u8>, Flags) {
        let mut d = new();
        let mut whole = Vec::new();
        feed(&mut d, input, &mut whole);
        let flags = finish(&mut d, &mut whole);
        for cut in 0..=input.len() {
            let (a, b) = input.split_at(cut);
            let mut d = new();
            let mut out = Vec::new();
            feed(&mut d, a, &mut out);
            feed(&mut d, b, &mut out);
            let f = finish(&mut d, &mut out);
            assert_eq!(
                out,
                whole,
                "split at {cut} of {:?}",
                String::from_utf8_lossy(input)
            );
            assert_eq!(f, flags, "flags, split at {cut}");
        }
        let mut d = new();
        let mut out = Vec::new();
        for b in input {
            feed(&mut d, std::slice::from_ref(b), &mut out);
        }
        let f = finish(&mut d, &mut out);
        assert_eq!(out, whole, "byte by byte");
        assert_eq!(f, flags);
        (whole, flags)
    }

    fn b64(input: &[u8]) -> (Vec<u8>, Flags) {
        every_split(
            input,
            Base64Decoder::new,
            |d, i, o| d.feed(i, o),
            |d, o| d.finish(o),
        )
    }

    fn qp(input: &[u8]) -> (Vec<u8>, Flags) {
        every_split(
            input,
            QpDecoder::new,
            |d, i, o| d.feed(i, o),
            |d, o| d.finish(o),
        )
    }

    #[test]
    fn base64_plain() {
        assert_eq!(
            b64(b"SGVsbG8sIHdvcmxkIQ=="),
            (b"Hello, world!".to_vec(), Flags::empty())
        );
        assert_eq!(
            b64(b"SGVsbG8sIHdvcmxk"),
            (b"Hello, world".to_vec(), Flags::empty())
        );
        assert_eq!(b64(b""), (Vec::new(), Flags::empty()));
        // All 256 octet values round-trip (with line breaks every 76 characters).
        let all: Vec<u8> = (0..=255u8).collect();
        let enc = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(&all)
        };
        let wrapped: Vec<u8> = enc
            .as_bytes()
            .chunks(76)
            .flat_map(|l| l.iter().copied().chain(*b"\r\n"))
            .collect();
        assert_eq!(b64(&wrapped), (all, Flags::empty()));
    }

    #[test]
    fn base64_whitespace_and_missing_padding() {
        assert_eq!(
            b64(b" SGVs\r\nbG8 \t\n"),
            (b"Hello".to_vec(), Flags::empty())
        );
        assert_eq!(b64(b"SGVsbG8"), (b"Hello".to_vec(), Flags::empty()));
        assert_eq!(b64(b"SGVsbA"), (b"Hell".to_vec(), Flags::empty()));
        assert_eq!(b64(b"SGVs\x0bbA\x0c"), (b"Hell".to_vec(), Flags::empty()));
    }

    #[test]
    fn base64_junk_is_skipped_and_flagged() {
        assert_eq!(b64(b"SG-Vs#bG8."), (b"Hello".to_vec(), Flags::BAD_BASE64));
        // A lone sextet at the end makes no octet.
        assert_eq!(b64(b"SGVsbG8sI"), (b"Hello,".to_vec(), Flags::BAD_BASE64));
    }

    #[test]
    fn base64_stops_at_padding() {
        // A second payload after the padding is not decoded.
        assert_eq!(
            b64(b"SGk=\r\nSGVsbG8="),
            (b"Hi".to_vec(), Flags::BAD_BASE64)
        );
        // Extra `=` and whitespace after the padding are harmless.
        assert_eq!(b64(b"SGk===\r\n \n="), (b"Hi".to_vec(), Flags::empty()));
        // `=` in the middle of a quantum-aligned stream.
        assert_eq!(b64(b"SGVs=bG8="), (b"Hel".to_vec(), Flags::BAD_BASE64));
        assert_eq!(b64(b"S=GVs"), (Vec::new(), Flags::BAD_BASE64));
    }

    #[test]
    fn qp_plain() {
        assert_eq!(
            qp(b"caf=C3=A9"),
            ("café".as_bytes().to_vec(), Flags::empty())
        );
        assert_eq!(
            qp(b"caf=c3=a9"),
            ("café".as_bytes().to_vec(), Flags::empty())
        );
        assert_eq!(
            qp(b"a=3Db\r\nc\nd\re"),
            (b"a=b\nc\nd\ne".to_vec(), Flags::empty())
        );
        assert_eq!(qp(b"a\r\n\r\nb"), (b"a\n\nb".to_vec(), Flags::empty()));
        assert_eq!(qp(b"a\n\rb"), (b"a\n\nb".to_vec(), Flags::empty()));
    }

    #[test]
    fn qp_soft_breaks() {
        assert_eq!(
            qp(b"long=\r\nline=\nend=\rx"),
            (b"longlineendx".to_vec(), Flags::empty())
        );
        // Whitespace between `=` and the line break is still a soft break.
        assert_eq!(
            qp(b"soft= \t\r\nbreak"),
            (b"softbreak".to_vec(), Flags::empty())
        );
        // A final `=` is a soft break.
        assert_eq!(qp(b"no newline="), (b"no newline".to_vec(), Flags::empty()));
    }

    #[test]
    fn qp_trailing_whitespace_removed() {
        assert_eq!(
            qp(b"a  \t\r\nb \n c "),
            (b"a\nb\n c".to_vec(), Flags::empty())
        );
        assert_eq!(qp(b"a =20\r\n"), (b"a  \n".to_vec(), Flags::empty()));
        // Inner whitespace kept.
        assert_eq!(qp(b"a \t b"), (b"a \t b".to_vec(), Flags::empty()));
    }

    #[test]
    fn qp_invalid_sequences_are_literal() {
        let f = Flags::BAD_QUOTED_PRINTABLE;
        assert_eq!(qp(b"a=XYb"), (b"a=XYb".to_vec(), f));
        assert_eq!(qp(b"a=4Xb"), (b"a=4Xb".to_vec(), f));
        assert_eq!(qp(b"a=4"), (b"a=4".to_vec(), f));
        assert_eq!(qp(b"a=4\nb"), (b"a=4\nb".to_vec(), f));
        assert_eq!(qp(b"a= b"), (b"a= b".to_vec(), f));
        assert_eq!(qp(b"a==41"), (b"a=A".to_vec(), f));
        assert_eq!(qp(b"100% = 1"), (b"100% = 1".to_vec(), f));
    }

    #[test]
    fn qp_long_whitespace_run_is_bounded() {
        let mut input = b"x".to_vec();
        input.extend(std::iter::repeat_n(b' ', 1000));
        input.extend_from_slice(b"\ny");
        let (out, f) = qp(&input);
        assert!(f.is_empty());
        // The excess over the held-back window is written; the window itself is dropped.
        assert_eq!(out.len(), 1 + (1000 - QP_MAX_WS) + 2);
        let mut input = b"x".to_vec();
        input.extend(std::iter::repeat_n(b' ', 1000));
        input.push(b'y');
        assert_eq!(qp(&input).0.len(), 1002);
    }

    #[test]
    fn qp_line_break_method_equals_lf() {
        let mut a = QpDecoder::new();
        let mut out_a = Vec::new();
        a.feed(b"abc=", &mut out_a);
        a.line_break(&mut out_a);
        a.feed(b"def  ", &mut out_a);
        a.line_break(&mut out_a);
        a.finish(&mut out_a);
        assert_eq!(out_a, b"abcdef\n");
        assert_eq!(quoted_printable(b"abc=\ndef  \n").0, out_a);
    }

    #[test]
    fn qp_japanese_utf8() {
        let (out, f) = qp(b"=E3=81=93=E3=82=93=E3=81=AB=E3=81=A1=E3=81=AF");
        assert!(f.is_empty());
        assert_eq!(String::from_utf8(out).unwrap(), "こんにちは");
    }
}
