//! The DATA receiver (and the BDAT line-ending check) on arbitrary bytes, split anywhere,
//! against a small reference model written from RFC 5321 rather than from the receiver.
//!
//! The property that matters is SMTP smuggling: the data ends at the first `CRLF . CRLF` (the
//! first CRLF may be the one that ended the DATA command) and nowhere else, so the receiver
//! must consume exactly up to there and never output a byte past it, whatever fake terminators
//! (`LF . LF`, `CR . CR`, `LF . CRLF`, ...) come before. The model also fixes the rest: a
//! leading dot is dropped at each line start (after CRLF only), every bare CR or LF is
//! reported, NULs are counted, output stops at the size limit while the size is still counted.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mugaika::smtp::proto::{DataOutcome, DataReceiver, LineEndingCheck};
use mugaika_fuzz::{pieces, Choices};

/// The reference: where the data ends (octets consumed) and the unstuffed content before it.
struct Model {
    end: Option<usize>,
    content: Vec<u8>,
    bare: bool,
    nul: u64,
}

fn model(input: &[u8]) -> Model {
    let mut prefixed = b"\r\n".to_vec();
    prefixed.extend_from_slice(input);
    // `p` indexes the CRLF before the dot in `prefixed`: the content is input[..p] (it ends
    // with that CRLF, which is the content's), the `.` CRLF follows.
    let end = prefixed.windows(5).position(|w| w == b"\r\n.\r\n");
    let raw = match end {
        Some(p) => &input[..p],
        None => input,
    };
    let mut content = Vec::with_capacity(raw.len());
    let mut bare = false;
    for (i, &b) in raw.iter().enumerate() {
        let line_start = i == 0 || (i >= 2 && &raw[i - 2..i] == b"\r\n");
        if b == b'.' && line_start {
            continue;
        }
        if b == b'\n' && (i == 0 || raw[i - 1] != b'\r') {
            bare = true;
        }
        if b == b'\r' && raw.get(i + 1) != Some(&b'\n') {
            bare = true;
        }
        content.push(b);
    }
    Model {
        end: end.map(|p| p + 3),
        nul: raw.iter().filter(|&&b| b == 0).count() as u64,
        content,
        bare,
    }
}

fn receive(max: u64, chunks: &[&[u8]]) -> (Vec<u8>, usize, DataOutcome, bool) {
    let mut r = DataReceiver::new(max);
    let mut out = Vec::new();
    let mut consumed = 0;
    for c in chunks {
        let n = r.feed(c, &mut out);
        assert!(n <= c.len());
        consumed += n;
        assert!(out.len() as u64 <= max, "output past the size limit");
        assert!(out.len() <= consumed, "more output than input");
        if r.is_done() {
            break;
        }
        assert_eq!(n, c.len(), "a receiver that is not done takes everything");
    }
    (out, consumed, r.outcome(), r.is_done())
}

fuzz_target!(|data: &[u8]| {
    let mut c = Choices::new(data);
    let max = match c.byte() % 4 {
        0 => u64::MAX,
        _ => c.below(300) as u64,
    };
    let seed = [c.byte(), c.byte(), c.byte()];
    let input = c.rest();

    let whole = receive(max, &[input]);
    let chunked = receive(max, &pieces(&seed, input));
    assert_eq!(whole, chunked, "the split changed the result");

    let m = model(input);
    let (out, consumed, outcome, done) = whole;
    match m.end {
        Some(end) => {
            assert!(done, "the real end of data was missed");
            assert_eq!(consumed, end, "the data ended at the wrong place");
            let size = m.content.len() as u64;
            assert_eq!(outcome.size, size);
            assert_eq!(outcome.too_big, size > max);
            assert_eq!(outcome.bare_line_ending, m.bare, "bare line ending");
            assert_eq!(outcome.nul_bytes, m.nul);
            let keep = usize::try_from(max)
                .unwrap_or(usize::MAX)
                .min(m.content.len());
            assert_eq!(out, &m.content[..keep], "content differs from the model");
        }
        None => {
            assert!(!done, "an end of data where there is none");
            assert_eq!(consumed, input.len());
            // The output is the model's content up to the limit, less at most one held-back
            // octet (a CR whose LF may still come).
            let keep = usize::try_from(max)
                .unwrap_or(usize::MAX)
                .min(m.content.len());
            assert!(
                m.content[..keep].starts_with(&out),
                "content differs from the model"
            );
            assert!(keep - out.len() <= 1, "more than one octet held back");
        }
    }

    // BDAT: the line-ending check, split anywhere, agrees with the model on the whole input.
    let mut whole_check = LineEndingCheck::new();
    whole_check.feed(input);
    let mut split_check = LineEndingCheck::new();
    for p in pieces(&seed, input) {
        split_check.feed(p);
    }
    let bare = {
        let mut bare = false;
        for (i, &b) in input.iter().enumerate() {
            bare |= b == b'\n' && (i == 0 || input[i - 1] != b'\r');
            bare |= b == b'\r' && input.get(i + 1) != Some(&b'\n');
        }
        bare
    };
    assert_eq!(whole_check.finish(), bare, "BDAT bare line ending");
    assert_eq!(split_check.finish(), bare, "BDAT bare line ending (split)");
    let nul = input.iter().filter(|&&b| b == 0).count() as u64;
    assert_eq!(
        (whole_check.nul_bytes(), split_check.nul_bytes()),
        (nul, nul)
    );
});
