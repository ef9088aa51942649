//! The message data receivers, sans I/O: DATA (dot-unstuffing, end of data only at CRLF.CRLF)
//! and the line-ending check for BDAT chunks.
//!
//! SMTP smuggling (SEC Consult, 2023) works because servers disagree on where a message ends:
//! one accepts `LF.LF` or `CR.CR` as the end of data, another reads past it, and whatever
//! follows the fake end becomes a second transaction on the first server. This receiver
//! recognises exactly one end of data, `CRLF "." CRLF` (where the first CRLF may be the one that
//! ended the DATA command), and treats every other byte — bare LF, bare CR, NUL, dots after
//! them — as message content. A bare LF or CR anywhere is remembered, and the server refuses
//! such a message only after the real end, so the bytes after a fake terminator are swallowed
//! as (refused) content and can never become commands.
//!
//! "Need more data" is a state: the receiver is fed chunks of any size, returns how much it
//! consumed, and gives the same result however the input is split. Output is appended to the
//! caller's buffer and never exceeds the input consumed, so memory stays bounded; past the size
//! limit nothing more is appended, but counting and scanning go on to the real end.

/// Where the DATA receiver stands between two bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line (after CRLF, or right after the DATA command).
    LineStart,
    /// A `.` at the start of a line, not yet output (stuffing, or the end of data).
    Dot,
    /// `.` CR at the start of a line: one LF more and the data ends.
    DotCr,
    /// Inside a line.
    Text,
    /// A CR inside a line, not yet output: CRLF or a bare CR.
    Cr,
    /// The end of data was seen.
    Done,
}

/// What a completed DATA (or BDAT) transfer looked like.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DataOutcome {
    /// Message octets after unstuffing (also counted past the limit).
    pub size: u64,
    /// A bare LF or a bare CR was seen: the message must be refused.
    pub bare_line_ending: bool,
    /// `size` exceeded the limit: the message must be refused (and the output is truncated).
    pub too_big: bool,
    /// NUL octets in the data (kept as content; the sanitiser removes them from text).
    pub nul_bytes: u64,
}

/// The DATA receiver: dot-unstuffing and the one true end of data.
#[derive(Debug, Clone)]
pub struct DataReceiver {
    state: State,
    max_size: u64,
    outcome: DataOutcome,
}

impl DataReceiver {
    /// A receiver for a message of at most `max_size` octets (after unstuffing).
    pub fn new(max_size: u64) -> DataReceiver {
        DataReceiver {
            state: State::LineStart,
            max_size,
            outcome: DataOutcome::default(),
        }
    }

    /// True once the end of data was consumed.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The result so far (final once [`DataReceiver::is_done`]).
    pub fn outcome(&self) -> DataOutcome {
        self.outcome
    }

    fn emit(&mut self, out: &mut Vec<u8>, bytes: &[u8]) {
        let before = self.outcome.size;
        self.outcome.size = before.saturating_add(bytes.len() as u64);
        if self.outcome.size > self.max_size {
            self.outcome.too_big = true;
        }
        // Exactly the first `max_size` octets are output, however the input was split.
        let room = usize::try_from(self.max_size.saturating_sub(before)).unwrap_or(usize::MAX);
        out.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// Consumes bytes of `input` up to and including the end of data, appending the unstuffed
    /// message octets to `out`. Returns the number of bytes consumed: all of `input` unless the
    /// end of data was found, in which case the rest belongs to the command stream.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> usize {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Done => return i,
                State::Text => {
                    let rest = &input[i..];
                    let n = memchr::memchr3(b'\r', b'\n', 0, rest).unwrap_or(rest.len());
                    self.emit(out, &rest[..n]);
                    i += n;
                    let Some(&b) = input.get(i) else { break };
                    i += 1;
                    match b {
                        b'\r' => self.state = State::Cr,
                        b'\n' => {
                            // Bare LF: content, never a line start (so no `.` after it ends).
                            self.outcome.bare_line_ending = true;
                            self.emit(out, b"\n");
                        }
                        _ => {
                            self.outcome.nul_bytes += 1;
                            self.emit(out, &[0]);
                        }
                    }
                }
                State::Cr => {
                    if input[i] == b'\n' {
                        i += 1;
                        self.emit(out, b"\r\n");
                        self.state = State::LineStart;
                    } else {
                        // Bare CR; the next byte is looked at again as text.
                        self.outcome.bare_line_ending = true;
                        self.emit(out, b"\r");
                        self.state = State::Text;
                    }
                }
                State::LineStart => {
                    if input[i] == b'.' {
                        i += 1;
                        self.state = State::Dot;
                    } else {
                        self.state = State::Text;
                    }
                }
                State::Dot => {
                    if input[i] == b'\r' {
                        i += 1;
                        self.state = State::DotCr;
                    } else {
                        // A stuffed (or merely leading) dot: dropped, as RFC 5321 4.5.2 says.
                        self.state = State::Text;
                    }
                }
                State::DotCr => {
                    if input[i] == b'\n' {
                        self.state = State::Done;
                        return i + 1;
                    }
                    // `.` CR x: the CR is bare; the dot was stuffing.
                    self.outcome.bare_line_ending = true;
                    self.emit(out, b"\r");
                    self.state = State::Text;
                }
            }
        }
        i
    }
}

/// Checks BDAT chunks for bare CR and LF. BDAT has no terminator to confuse, but the message
/// goes on to the next hop in DATA, where a bare line ending is exactly the smuggling vector;
/// one policy for both paths. A CRLF may be split between two chunks.
#[derive(Debug, Clone, Default)]
pub struct LineEndingCheck {
    pending_cr: bool,
    bare: bool,
    nul: u64,
}

impl LineEndingCheck {
    pub fn new() -> LineEndingCheck {
        LineEndingCheck::default()
    }

    /// Looks at the next bytes of the message.
    pub fn feed(&mut self, chunk: &[u8]) {
        let mut prev_cr = self.pending_cr;
        let mut i = 0;
        while let Some(n) = memchr::memchr3(b'\r', b'\n', 0, &chunk[i..]) {
            let j = i + n;
            if prev_cr && (n > 0 || chunk[j] != b'\n') {
                self.bare = true;
            }
            match chunk[j] {
                b'\n' => {
                    if !(prev_cr && n == 0) {
                        self.bare = true;
                    }
                    prev_cr = false;
                }
                b'\r' => prev_cr = true,
                _ => {
                    self.nul += 1;
                    prev_cr = false;
                }
            }
            i = j + 1;
        }
        if i < chunk.len() {
            if prev_cr {
                self.bare = true;
            }
            prev_cr = false;
        }
        self.pending_cr = prev_cr;
    }

    /// True when a bare CR or LF has been seen so far (a CR at the very end of the data so
    /// far is still undecided).
    pub fn has_bare(&self) -> bool {
        self.bare
    }

    /// True when a bare CR or LF was seen (call after the last chunk).
    pub fn finish(&self) -> bool {
        self.bare || self.pending_cr
    }

    /// NUL octets seen.
    pub fn nul_bytes(&self) -> u64 {
        self.nul
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8], chunk: usize, max: u64) -> (Vec<u8>, usize, DataOutcome, bool) {
        let mut r = DataReceiver::new(max);
        let mut out = Vec::new();
        let mut consumed = 0;
        for piece in input.chunks(chunk.max(1)) {
            let n = r.feed(piece, &mut out);
            assert!(n <= piece.len());
            consumed += n;
            if r.is_done() {
                break;
            }
            assert_eq!(
                n,
                piece.len(),
                "a receiver that is not done consumes everything"
            );
        }
        (out, consumed, r.outcome(), r.is_done())
    }

    /// Every two-piece split, and every chunk size from 1 to 9, give the same result.
    fn every_split(input: &[u8], max: u64) -> (Vec<u8>, usize, DataOutcome, bool) {
        let whole = run(input, input.len().max(1), max);
        for chunk in 1..10 {
            assert!(run(input, chunk, max) == whole, "chunk size {chunk}");
        }
        for split in 0..=input.len() {
            let mut r = DataReceiver::new(max);
            let mut out = Vec::new();
            let mut consumed = r.feed(&input[..split], &mut out);
            if !r.is_done() {
                consumed += r.feed(&input[split..], &mut out);
            }
            assert!(
                (out, consumed, r.outcome(), r.is_done()) == whole,
                "split at {split}"
            );
        }
        whole
    }

    #[test]
    fn unstuffing_and_end() {
        let (out, n, o, done) = every_split(b"a\r\n..b\r\n.c\r\n.\r\nQUIT\r\n", 1000);
        assert!(done);
        assert_eq!(out, b"a\r\n.b\r\nc\r\n");
        assert_eq!(n, 15);
        assert!(!o.bare_line_ending && !o.too_big);
        assert_eq!(o.size, 10);
        // An empty message: the CRLF of the DATA command starts the first line.
        let (out, n, _, done) = every_split(b".\r\nRSET\r\n", 1000);
        assert!(done && out.is_empty() && n == 3);
        // A message ending without CRLF cannot end: the dot is not at a line start.
        let (_, _, _, done) = every_split(b"abc.\r\n", 1000);
        assert!(!done);
    }

    #[test]
    fn fake_terminators_never_end_data() {
        for fake in [
            &b"\n.\n"[..],
            b"\r.\r",
            b"\r.\n",
            b"\n.\r",
            b"\n.\r\n",
            b"\r\n.\n",
            b"\r.\r\n",
            b"\r\n.\r",
            b"\r\n.\r\r\n",
            b"\r\r\n.\r\r\n",
        ] {
            let mut input = b"Subject: x\r\n\r\nbody".to_vec();
            input.extend_from_slice(fake);
            input.extend_from_slice(b"MAIL FROM:<a@b>\r\n\r\n.\r\nQUIT\r\n");
            let (out, n, o, done) = every_split(&input, 1000);
            assert!(done, "{fake:?}");
            assert_eq!(&input[n..], b"QUIT\r\n", "{fake:?}");
            assert!(o.bare_line_ending, "{fake:?}");
            assert!(out.windows(9).any(|w| w == b"MAIL FROM"));
        }
        // NUL around the dot: a normal line, not an end.
        for fake in [&b"\r\n\0.\r\n"[..], b"\r\n.\0\r\n"] {
            let mut input = b"body".to_vec();
            input.extend_from_slice(fake);
            input.extend_from_slice(b"MAIL FROM:<a@b>\r\n.\r\nQUIT\r\n");
            let (_, n, o, done) = every_split(&input, 1000);
            assert!(done && &input[n..] == b"QUIT\r\n");
            assert!(!o.bare_line_ending);
            assert_eq!(o.nul_bytes, 1);
        }
    }

    #[test]
    fn size_limit_truncates_output_but_reads_to_the_end() {
        let (out, n, o, done) = every_split(b"0123456789\r\n0123\r\n.\r\nNOOP\r\n", 12);
        assert!(done && o.too_big && !o.bare_line_ending);
        assert_eq!(o.size, 18);
        assert_eq!(out, b"0123456789\r\n");
        assert_eq!(n, 21);
    }

    #[test]
    fn bdat_line_endings() {
        let check = |chunks: &[&[u8]]| {
            let mut c = LineEndingCheck::new();
            for ch in chunks {
                c.feed(ch);
            }
            c.finish()
        };
        assert!(!check(&[b"a\r\nb\r\n"]));
        assert!(!check(&[b"a\r", b"\nb\r\n", b""]));
        assert!(!check(&[b"a\r", b"", b"\n"]));
        assert!(!check(&[b"\r\n\r\n", b"x"]));
        assert!(check(&[b"a\nb\r\n"]));
        assert!(check(&[b"a\r", b"b\r\n"]));
        assert!(check(&[b"a\rb"]));
        assert!(check(&[b"a\r\r\n"]));
        assert!(check(&[b"a\r"]));
        assert!(check(&[b"\n"]));
        assert!(check(&[b"x\r", b"\r\n"]));
        let mut c = LineEndingCheck::new();
        c.feed(b"a\0b\r\n");
        assert!(!c.finish());
        assert_eq!(c.nul_bytes(), 1);
    }

    /// The shared corpora, or None (with a loud SKIP) when absent.
    fn corpora() -> Option<std::path::PathBuf> {
        let dir = std::env::var_os("MUGAIKA_CORPORA")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpora").into());
        if dir.is_dir() {
            return Some(dir);
        }
        if std::env::var("MUGAIKA_REQUIRE_CORPORA").as_deref() == Ok("1") {
            panic!("corpora required but missing at {}", dir.display());
        }
        eprintln!(
            "SKIP: corpora not found at {} (set MUGAIKA_CORPORA)",
            dir.display()
        );
        None
    }

    /// The bytes after the first `DATA` command of a client stream.
    fn after_data(stream: &[u8]) -> &[u8] {
        let at = stream
            .windows(6)
            .position(|w| w == b"DATA\r\n")
            .expect("stream has a DATA command");
        &stream[at + 6..]
    }

    #[test]
    fn smuggling_cases_every_split() {
        let Some(dir) = corpora() else { return };
        let dir = dir.join("smtp-smuggling-cases");
        let cases: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("cases.json")).unwrap()).unwrap();
        let cases = cases.as_array().unwrap();
        assert_eq!(cases.len(), 13);
        for case in cases {
            let file = case["file"].as_str().unwrap();
            let stream = std::fs::read(dir.join(file)).unwrap();
            let data = after_data(&stream);
            let (out, n, o, done) = every_split(data, 1 << 20);
            assert!(done, "{file}: the real end of data was not found");
            assert_eq!(&data[n..], b"QUIT\r\n", "{file}: bytes after the real end");
            match case["fake_end_of_data"].as_str() {
                None => {
                    assert!(!o.bare_line_ending, "{file}");
                    assert_eq!(out, b"Subject: control\r\n\r\n.leading dot (stuffed)\r\n");
                }
                Some(fake) => {
                    let fake = fake.as_bytes();
                    assert!(stream.windows(fake.len()).any(|w| w == fake), "{file}");
                    // The smuggled commands are content of the one message, never commands.
                    assert!(out.windows(8).any(|w| w == b"SMUGGLED"), "{file}");
                    if fake.contains(&0) {
                        assert!(!o.bare_line_ending, "{file}");
                        assert_eq!(o.nul_bytes, 1, "{file}");
                    } else {
                        assert!(o.bare_line_ending, "{file}: must be refused");
                    }
                }
            }
        }
    }

    /// Evaluates the Python-ish byte expressions of chamuyero's `c ~>` lines:
    /// `'text'`, `'a' * 3`, `('a' + '\r\n') * 2`, `x + y`.
    fn cmy_expr(s: &str) -> Vec<u8> {
        fn expr(s: &mut &str) -> Vec<u8> {
            let mut v = term(s);
            loop {
                *s = s.trim_start();
                match s.strip_prefix('+') {
                    Some(rest) => {
                        *s = rest;
                        v.extend(term(s));
                    }
                    None => return v,
                }
            }
        }
        fn term(s: &mut &str) -> Vec<u8> {
            *s = s.trim_start();
            let v = if let Some(rest) = s.strip_prefix('(') {
                *s = rest;
                let v = expr(s);
                *s = s.trim_start().strip_prefix(')').expect("closing paren");
                v
            } else {
                let rest = s.strip_prefix('\'').expect("string literal");
                let mut v = Vec::new();
                let mut chars = rest.char_indices();
                loop {
                    let (i, c) = chars.next().expect("unterminated literal");
                    match c {
                        '\'' => {
                            *s = &rest[i + 1..];
                            break;
                        }
                        '\\' => match chars.next().expect("escape").1 {
                            'n' => v.push(b'\n'),
                            'r' => v.push(b'\r'),
                            other => panic!("escape {other}"),
                        },
                        c => v.extend_from_slice(c.to_string().as_bytes()),
                    }
                }
                v
            };
            *s = s.trim_start();
            if let Some(rest) = s.strip_prefix('*') {
                let rest = rest.trim_start();
                let end = rest
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(rest.len());
                let n: usize = rest[..end].parse().expect("repeat count");
                *s = &rest[end..];
                return v.repeat(n);
            }
            v
        }
        let mut s = s;
        expr(&mut s)
    }

    /// Everything the client sends in a chamuyero script.
    fn cmy_client_stream(script: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for line in script.lines() {
            if let Some(text) = line.strip_prefix("c ->") {
                out.extend_from_slice(text.strip_prefix(' ').unwrap_or(text).as_bytes());
                out.extend_from_slice(b"\r\n");
            } else if let Some(e) = line.strip_prefix("c ~>") {
                out.extend(cmy_expr(e));
            }
        }
        out
    }

    #[test]
    fn chasquid_dialogue_data() {
        let Some(dir) = corpora() else { return };
        let dir = dir.join("chasquid-smtp-dialogs/test");
        // (script, chasquid's limit, expected: bare line ending, too big, rest after the end)
        let cases: [(&str, u64, bool, bool, &[u8]); 7] = [
            (
                "t-12-minor_dialogs/bad_data_dot.cmy",
                1 << 20,
                true,
                false,
                b"",
            ),
            (
                "t-12-minor_dialogs/bad_data_dot_2.cmy",
                1 << 20,
                true,
                false,
                b"",
            ),
            (
                "t-12-minor_dialogs/bad_data_dot_on_message_too_big.cmy",
                1 << 20,
                true,
                true,
                b"",
            ),
            (
                "t-12-minor_dialogs/message_too_big.cmy",
                1 << 20,
                false,
                true,
                b"QUIT\r\n",
            ),
            (
                "t-12-minor_dialogs/data_dot_stuffing.cmy",
                1 << 20,
                false,
                false,
                b"QUIT\r\n",
            ),
            (
                "t-12-minor_dialogs/sendmail.cmy",
                1 << 20,
                false,
                false,
                b"QUIT\r\n",
            ),
            (
                "t-05-null_address/sendmail.cmy",
                1 << 20,
                false,
                false,
                b"QUIT\r\n",
            ),
        ];
        for (name, max, bare, big, rest) in cases {
            let script = std::fs::read_to_string(dir.join(name)).unwrap();
            let stream = cmy_client_stream(&script);
            let data = after_data(&stream);
            // Big inputs: every chunk size and a sample of split points.
            let whole = run(data, data.len(), max);
            for chunk in [1, 2, 3, 7, 64, 1000, 4096] {
                assert!(run(data, chunk, max) == whole, "{name} chunk {chunk}");
            }
            if data.len() < 2000 {
                every_split(data, max);
            }
            let (out, n, o, done) = whole;
            assert!(done, "{name}");
            assert_eq!(&data[n..], rest, "{name}");
            assert_eq!((o.bare_line_ending, o.too_big), (bare, big), "{name}");
            if let Ok(verify) = std::fs::read_to_string(dir.join(format!("{name}.verify"))) {
                assert_eq!(
                    String::from_utf8_lossy(&out),
                    verify.replace('\n', "\r\n"),
                    "{name}"
                );
            }
        }
    }
}
