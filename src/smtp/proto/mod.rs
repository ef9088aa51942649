//! The SMTP protocol without I/O: command lines in, commands out ([`command`]), replies out
//! ([`reply`]), the command-line splitter ([`line`]) and the message data receivers ([`data`]).
//!
//! Nothing here touches a socket, a clock or a file, so every piece is tested by feeding bytes
//! split in every possible way, and the fuzz targets can drive it directly. The tokio server in
//! [`super::server`] only moves bytes between the socket and these types.

pub mod command;
pub mod data;
pub mod line;
pub mod reply;

pub use command::{parse, BodyType, Command, CommandError};
pub use data::{DataOutcome, DataReceiver, LineEndingCheck};
pub use line::{LineError, LineEvent, LineSplitter};
pub use reply::{Enhanced, Reply};

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Bytes that matter to SMTP syntax, so random inputs hit the interesting paths.
    const ALPHABET: &[u8] = b"\r\n.\0 <>@:\"\\=-[]AMILFROTDSZEHBa1\xe3\x81\x82\xff";

    fn random_bytes(rng: &mut impl Rng, max: usize) -> Vec<u8> {
        let n = rng.gen_range(0..max);
        (0..n)
            .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())])
            .collect()
    }

    /// A small fuzz pass: no panic on any input, and the DATA receiver and the line splitter
    /// give the same answer however the input is cut.
    #[test]
    fn random_input_never_panics_and_is_split_invariant() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        for _ in 0..3000 {
            let input = random_bytes(&mut rng, 200);
            let _ = parse(&input);
            for prefix in ["MAIL FROM:", "RCPT TO:", "EHLO ", "BDAT "] {
                let mut line = prefix.as_bytes().to_vec();
                line.extend_from_slice(&input);
                let _ = parse(&line);
            }
            let whole = {
                let mut r = DataReceiver::new(100);
                let mut out = Vec::new();
                let n = r.feed(&input, &mut out);
                (out, n, r.outcome(), r.is_done())
            };
            let mut r = DataReceiver::new(100);
            let mut out = Vec::new();
            let mut consumed = 0;
            let mut rest = &input[..];
            while !rest.is_empty() && !r.is_done() {
                let k = rng.gen_range(1..=rest.len());
                let n = r.feed(&rest[..k], &mut out);
                consumed += n;
                rest = &rest[n..];
            }
            assert_eq!(
                (out, consumed, r.outcome(), r.is_done()),
                whole,
                "{input:?}"
            );
            let mut s = LineSplitter::new(16);
            let mut buf = input.clone();
            let mut guard = 0;
            loop {
                guard += 1;
                assert!(guard < 1000);
                match s.next(&buf) {
                    LineEvent::Line { consumed, .. } | LineEvent::Error { consumed, .. } => {
                        assert!(consumed > 0);
                        buf.drain(..consumed);
                    }
                    LineEvent::NeedMore { consumed } => {
                        buf.drain(..consumed);
                        assert!(buf.len() <= 17);
                        break;
                    }
                }
            }
        }
    }
}
