//! Splitting the command stream into lines, sans I/O and with bounded memory.
//!
//! A command line ends in CRLF and nothing else: a bare LF ending a line, or a CR anywhere inside
//! one, makes the line an error (Postfix's `smtpd_forbid_bare_newline`), because lenient line
//! splitting is what lets a client hide commands from one parser and show them to another.
//! A line longer than the limit is not buffered: the splitter drops its bytes as they arrive and
//! reports it once, when its real end (LF) is seen, so that the reply arrives in pipelining order
//! and the tail of the long line is never read as a command.

/// What the splitter found at the front of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum LineEvent<'a> {
    /// A complete line, without its CRLF; `consumed` bytes (line + CRLF) may be dropped.
    Line { line: &'a [u8], consumed: usize },
    /// A line that must be refused; `consumed` bytes may be dropped.
    Error { error: LineError, consumed: usize },
    /// No complete line yet; `consumed` bytes (of an over-long line) may be dropped.
    NeedMore { consumed: usize },
}

/// Why a command line was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineError {
    /// Longer than the limit (the limit excludes the CRLF).
    TooLong,
    /// Ended in LF without CR, or contained a CR not followed by LF.
    BareLineEnding,
}

/// Finds command lines in a byte buffer. Keeps only one bit of state: whether the bytes at
/// the front of the buffer belong to an over-long line already being skipped.
#[derive(Debug, Clone)]
pub struct LineSplitter {
    max: usize,
    skipping: bool,
}

impl LineSplitter {
    /// `max` is the longest line accepted, excluding CRLF (RFC 5321 minimum: 510 + CRLF).
    pub fn new(max: usize) -> LineSplitter {
        LineSplitter {
            max,
            skipping: false,
        }
    }

    /// True while the splitter is dropping an over-long line.
    pub fn is_skipping(&self) -> bool {
        self.skipping
    }

    /// Looks at the front of `buf`. The caller removes `consumed` bytes and calls again while it
    /// gets `Line` or `Error`; `NeedMore` means read more bytes first.
    pub fn next<'a>(&mut self, buf: &'a [u8]) -> LineEvent<'a> {
        match memchr::memchr(b'\n', buf) {
            Some(lf) => {
                let consumed = lf + 1;
                if self.skipping {
                    self.skipping = false;
                    return LineEvent::Error {
                        error: LineError::TooLong,
                        consumed,
                    };
                }
                let Some(body) = buf[..lf].strip_suffix(b"\r") else {
                    return LineEvent::Error {
                        error: LineError::BareLineEnding,
                        consumed,
                    };
                };
                if body.len() > self.max {
                    return LineEvent::Error {
                        error: LineError::TooLong,
                        consumed,
                    };
                }
                if memchr::memchr(b'\r', body).is_some() {
                    return LineEvent::Error {
                        error: LineError::BareLineEnding,
                        consumed,
                    };
                }
                LineEvent::Line {
                    line: body,
                    consumed,
                }
            }
            None if self.skipping => LineEvent::NeedMore {
                consumed: buf.len(),
            },
            // The line cannot fit any more (+2 for the CRLF still to come): skip it. A trailing
            // CR is kept back so that a CRLF split across reads is still recognised.
            None if buf.len() > self.max + 1 => {
                self.skipping = true;
                LineEvent::NeedMore {
                    consumed: buf.len(),
                }
            }
            None => LineEvent::NeedMore { consumed: 0 },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(s: &mut LineSplitter, input: &[u8], chunk: usize) -> Vec<Result<Vec<u8>, LineError>> {
        let mut out = Vec::new();
        let mut buf = Vec::new();
        for piece in input.chunks(chunk.max(1)) {
            buf.extend_from_slice(piece);
            loop {
                match s.next(&buf) {
                    LineEvent::Line { line, consumed } => {
                        out.push(Ok(line.to_vec()));
                        buf.drain(..consumed);
                    }
                    LineEvent::Error { error, consumed } => {
                        out.push(Err(error));
                        buf.drain(..consumed);
                    }
                    LineEvent::NeedMore { consumed } => {
                        buf.drain(..consumed);
                        break;
                    }
                }
            }
            assert!(buf.len() <= 12, "buffer grew to {}", buf.len());
        }
        out
    }

    #[test]
    fn lines_errors_and_every_split() {
        let input = b"HELO a\r\nLF only\nX\rY\r\n0123456789abc\r\nok\r\n\r\n";
        for chunk in 1..input.len() {
            let mut s = LineSplitter::new(10);
            let got = all(&mut s, input, chunk);
            assert_eq!(
                got,
                vec![
                    Ok(b"HELO a".to_vec()),
                    Err(LineError::BareLineEnding),
                    Err(LineError::BareLineEnding),
                    Err(LineError::TooLong),
                    Ok(b"ok".to_vec()),
                    Ok(b"".to_vec()),
                ],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn exactly_the_limit_is_accepted() {
        let mut s = LineSplitter::new(4);
        assert_eq!(
            all(&mut s, b"abcd\r\nabcde\r\n", 1),
            vec![Ok(b"abcd".to_vec()), Err(LineError::TooLong)]
        );
    }
}
