//! Helpers shared by the fuzz targets in `fuzz_targets/`: how the fuzzer's bytes become chunk
//! splits and option choices, and the panic policy of the targets that run third-party
//! converters.
//!
//! Panic policy. libfuzzer-sys installs a hook that aborts on every panic, caught or not, which
//! is right for our own code: the parser, the header decoders and the SMTP protocol must never
//! panic. But DESIGN says the third-party converters (html2text, lopdf, image, zip) may panic
//! on hostile input and that mugaika catches those panics and fails closed. A target that runs
//! them calls [`contain_third_party_panics`]: a panic raised inside a crate from the cargo
//! registry then unwinds to mugaika's `catch_unwind` boundary as it would in production (and
//! the target checks the fail-closed outcome), while a panic anywhere in mugaika's own code
//! still aborts and is reported as a crash. A third-party panic that escapes every boundary
//! reaches libfuzzer-sys's own `catch_unwind`, which aborts too.

use std::sync::atomic::{AtomicU64, Ordering};

/// Third-party panics contained so far (reported at exit by the targets that care).
pub static CONTAINED_PANICS: AtomicU64 = AtomicU64::new(0);

/// True when a panic at `file` comes from a crate of the cargo registry (not from mugaika,
/// not from the standard library).
pub fn is_third_party(file: &str) -> bool {
    file.contains("/registry/src/")
}

/// Installs the panic policy described in the module documentation. Call from `init:`.
pub fn contain_third_party_panics() {
    let strict = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let file = info.location().map(|l| l.file()).unwrap_or("");
        if is_third_party(file) {
            // Contained: mugaika's boundary turns it into a removal or a fallback.
            if CONTAINED_PANICS.fetch_add(1, Ordering::Relaxed) < 5 {
                eprintln!("fuzz: third-party panic contained: {info}");
            }
            return;
        }
        strict(info);
        std::process::abort();
    }));
}

/// The fuzzer's bytes as a source of small decisions, then of data.
pub struct Choices<'a> {
    bytes: &'a [u8],
}

impl<'a> Choices<'a> {
    pub fn new(bytes: &'a [u8]) -> Choices<'a> {
        Choices { bytes }
    }

    /// One byte (0 when the input is exhausted).
    pub fn byte(&mut self) -> u8 {
        match self.bytes.split_first() {
            Some((&b, rest)) => {
                self.bytes = rest;
                b
            }
            None => 0,
        }
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        usize::from(u16::from_le_bytes([self.byte(), self.byte()])) % n.max(1)
    }

    /// Everything not taken yet.
    pub fn rest(self) -> &'a [u8] {
        self.bytes
    }
}

/// Chunk lengths for splitting an input of `len` octets, derived from `seed`: a mix of tiny
/// and large pieces (a fixed step would miss splits between two specific bytes).
pub fn splits(seed: &[u8], len: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut state: u64 = seed.iter().fold(0x9e37_79b9_7f4a_7c15, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let mut left = len;
    while left > 0 {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let r = state.wrapping_mul(0x2545_f491_4f6c_dd1d);
        let max = match r % 4 {
            0 => 1,
            1 => 8,
            2 => 100,
            _ => 5000,
        };
        let n = (1 + (r >> 8) as usize % max).min(left);
        out.push(n);
        left -= n;
    }
    out
}

/// Splits `data` into the pieces given by [`splits`].
pub fn pieces<'a>(seed: &[u8], data: &'a [u8]) -> Vec<&'a [u8]> {
    let mut rest = data;
    splits(seed, data.len())
        .into_iter()
        .map(|n| {
            let (a, b) = rest.split_at(n);
            rest = b;
            a
        })
        .collect()
}

/// Splits `s` into pieces at character boundaries (for APIs that take `&str`).
pub fn str_pieces<'a>(seed: &[u8], s: &'a str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut at = 0;
    for n in splits(seed, s.len()) {
        at += n;
        if s.is_char_boundary(at) && at > start {
            out.push(&s[start..at]);
            start = at;
        }
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

/// True when `c` could end or break a header line, or reorder text, in a mail client.
pub fn is_line_break_or_control(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_cover_the_input() {
        for len in [0, 1, 7, 1000, 70_000] {
            let s = splits(b"seed", len);
            assert_eq!(s.iter().sum::<usize>(), len);
            assert!(s.iter().all(|&n| n > 0));
        }
        let text = "あいう abc えお";
        assert_eq!(str_pieces(b"x", text).concat(), text);
    }
}
