//! SMTP replies (RFC 5321 section 4.2) with RFC 3463 enhanced status codes, and their wire form.
//!
//! A reply is a three-digit code, an optional enhanced code (`class.subject.detail`) and one or
//! more text lines. Every reply of ours carries an enhanced code except the ones RFC 2034 exempts
//! (the greeting, the EHLO/HELO answer and 354), so that clients that asked for
//! ENHANCEDSTATUSCODES always get one and the others can ignore it. Text is forced to printable
//! ASCII here, once, so that no client-supplied byte (a HELO name, an address) can ever inject a
//! line break into our output.

use std::fmt;

/// An RFC 3463 enhanced status code, e.g. `5.7.1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enhanced(pub u8, pub u16, pub u16);

impl fmt::Display for Enhanced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// One SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub enhanced: Option<Enhanced>,
    pub lines: Vec<String>,
}

impl Reply {
    /// A one-line reply with an enhanced code.
    pub fn new(code: u16, enhanced: Enhanced, text: impl Into<String>) -> Reply {
        Reply {
            code,
            enhanced: Some(enhanced),
            lines: vec![text.into()],
        }
    }

    /// A one-line reply without an enhanced code (greeting, 354).
    pub fn plain(code: u16, text: impl Into<String>) -> Reply {
        Reply {
            code,
            enhanced: None,
            lines: vec![text.into()],
        }
    }

    /// A multi-line reply without an enhanced code (the EHLO answer).
    pub fn multi(code: u16, lines: Vec<String>) -> Reply {
        Reply {
            code,
            enhanced: None,
            lines,
        }
    }

    /// 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 4xx.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx.
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }

    /// The first line as it appears on the wire, without CRLF (for logs and audit records).
    pub fn summary(&self) -> String {
        let text = self.lines.first().map(String::as_str).unwrap_or("");
        match self.enhanced {
            Some(e) => format!("{} {} {}", self.code, e, clean_text(text)),
            None => format!("{} {}", self.code, clean_text(text)),
        }
    }

    /// Appends the wire form (`CODE-text` lines, then `CODE text`, each ending in CRLF).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let n = self.lines.len().max(1);
        for i in 0..n {
            let text = self.lines.get(i).map(String::as_str).unwrap_or("");
            let sep = if i + 1 == n { ' ' } else { '-' };
            out.extend_from_slice(format!("{:03}{sep}", self.code.min(999)).as_bytes());
            if let Some(e) = self.enhanced {
                out.extend_from_slice(format!("{e} ").as_bytes());
            }
            out.extend_from_slice(clean_text(text).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }

    /// The wire form as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_to(&mut v);
        v
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary())
    }
}

/// Printable ASCII only, at most 500 characters: RFC 5321 reply text is `%d32-126`, and a
/// client-controlled string must never smuggle a CR or LF into a reply.
pub fn clean_text(s: &str) -> String {
    s.chars()
        .take(500)
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .collect()
}

/// Replies used in several places.
pub mod std_replies {
    use super::{Enhanced, Reply};

    pub fn ok() -> Reply {
        Reply::new(250, Enhanced(2, 0, 0), "Ok")
    }
    pub fn bad_sequence(text: &str) -> Reply {
        Reply::new(503, Enhanced(5, 5, 1), text)
    }
    pub fn syntax(text: &str) -> Reply {
        Reply::new(501, Enhanced(5, 5, 4), text)
    }
    pub fn line_too_long() -> Reply {
        Reply::new(500, Enhanced(5, 5, 2), "line too long")
    }
    pub fn too_big() -> Reply {
        Reply::new(
            552,
            Enhanced(5, 3, 4),
            "message size exceeds fixed maximum message size",
        )
    }
    pub fn bare_line_ending() -> Reply {
        Reply::new(
            550,
            Enhanced(5, 6, 0),
            "bare LF or CR in message data not allowed; lines must end in CRLF",
        )
    }
    pub fn local_error() -> Reply {
        Reply::new(
            451,
            Enhanced(4, 3, 0),
            "local error, please try again later",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_multi_line() {
        let r = Reply::new(250, Enhanced(2, 1, 0), "Ok");
        assert_eq!(r.to_bytes(), b"250 2.1.0 Ok\r\n");
        let r = Reply::multi(
            250,
            vec!["mx.example".into(), "PIPELINING".into(), "SIZE 10".into()],
        );
        assert_eq!(
            r.to_bytes(),
            b"250-mx.example\r\n250-PIPELINING\r\n250 SIZE 10\r\n".to_vec()
        );
        let r = Reply::multi(250, vec![]);
        assert_eq!(r.to_bytes(), b"250 \r\n");
    }

    #[test]
    fn text_cannot_inject_lines() {
        let r = Reply::new(250, Enhanced(2, 0, 0), "hello\r\n250 fake\u{3042}");
        assert_eq!(r.to_bytes(), b"250 2.0.0 hello??250 fake?\r\n");
        assert_eq!(r.summary(), "250 2.0.0 hello??250 fake?");
    }
}
