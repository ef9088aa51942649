//! The SMTP command side on arbitrary bytes: the line splitter and the command parser.
//!
//! Line splitter: the same command lines come out however the stream is split (a refused line
//! may be refused for a different reason, too long or bare LF, depending on how much of it was
//! buffered, but it is refused either way and ends at the same place), no accepted line holds a
//! CR or LF or exceeds the limit, and the buffer a session must keep stays bounded.
//! Parser: every accepted command carries values the session can use as they are (addresses
//! that pass the mailbox check, a HELO name without spaces or controls), and every refusal's
//! reply is well-formed SMTP with no client byte able to break its line.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mugaika::smtp::proto::command::check_mailbox;
use mugaika::smtp::proto::{parse, Command, LineEvent, LineSplitter, Reply};
use mugaika_fuzz::{pieces, Choices};

#[derive(Debug, PartialEq)]
enum Ev {
    Line(Vec<u8>),
    Refused,
}

/// Runs the splitter over `input` fed in `chunks`, the way the session does.
fn split(max: usize, chunks: &[&[u8]]) -> (Vec<Ev>, Vec<u8>) {
    let mut s = LineSplitter::new(max);
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    for c in chunks {
        buf.extend_from_slice(c);
        loop {
            match s.next(&buf) {
                LineEvent::Line { line, consumed } => {
                    assert!(consumed > 0);
                    assert!(line.len() <= max, "line of {} > {max}", line.len());
                    assert!(!line.contains(&b'\r') && !line.contains(&b'\n'));
                    assert_eq!(&buf[..consumed], [line, b"\r\n"].concat().as_slice());
                    out.push(Ev::Line(line.to_vec()));
                    buf.drain(..consumed);
                }
                LineEvent::Error { consumed, .. } => {
                    assert!(consumed > 0 && buf[consumed - 1] == b'\n');
                    out.push(Ev::Refused);
                    buf.drain(..consumed);
                }
                LineEvent::NeedMore { consumed } => {
                    buf.drain(..consumed);
                    break;
                }
            }
        }
        assert!(buf.len() <= max + 1, "splitter kept {} octets", buf.len());
    }
    (out, buf)
}

fn check_reply(r: &Reply) {
    let wire = r.to_bytes();
    assert!(wire.ends_with(b"\r\n"));
    let lines: Vec<&[u8]> = wire[..wire.len() - 2].split(|&b| b == b'\n').collect();
    for (i, l) in lines.iter().enumerate() {
        let l = if i + 1 < lines.len() {
            l.strip_suffix(b"\r").expect("CRLF between reply lines")
        } else {
            l
        };
        assert!(
            l.len() >= 4 && l[..3].iter().all(u8::is_ascii_digit),
            "{l:?}"
        );
        assert_eq!(l[3], if i + 1 == lines.len() { b' ' } else { b'-' });
        assert!(
            l.iter().all(|&b| (b' '..=b'~').contains(&b)),
            "reply byte: {l:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let mut c = Choices::new(data);
    let max = 1 + c.below(600);
    let seed = [c.byte(), c.byte(), c.byte()];
    let stream = c.rest();

    let (whole, rest_whole) = split(max, &[stream]);
    let (chunked, rest_chunked) = split(max, &pieces(&seed, stream));
    assert_eq!(whole, chunked, "the split changed the command lines");
    // What is left is an incomplete line: the same unless part of it was skipped (too long).
    assert!(rest_whole.ends_with(&rest_chunked) || rest_chunked.ends_with(&rest_whole));

    // Each line through the parser, and the raw input as one line too.
    let lines = whole.iter().filter_map(|e| match e {
        Ev::Line(l) => Some(l.as_slice()),
        Ev::Refused => None,
    });
    for line in lines.chain(std::iter::once(stream)) {
        match parse(line) {
            Ok(Command::Mail { from, .. }) => {
                assert!(
                    from.is_empty() || check_mailbox(&from).is_ok(),
                    "MAIL {from:?}"
                );
                assert!(!from.chars().any(char::is_control));
            }
            Ok(Command::Rcpt { to }) => {
                assert!(check_mailbox(&to).is_ok(), "RCPT {to:?}");
                assert!(!to.chars().any(char::is_control));
            }
            Ok(Command::Ehlo(name) | Command::Helo(name)) => {
                assert!(!name.is_empty());
                assert!(
                    !name.chars().any(|c| c == ' ' || c.is_control()),
                    "{name:?}"
                );
            }
            Ok(_) => {}
            Err(e) => check_reply(&e.reply()),
        }
    }
});
