//! SMTP command parsing (RFC 5321 section 4.1, with the extensions we offer), sans I/O.
//!
//! One complete command line (without CRLF) in, one [`Command`] or a [`CommandError`] that
//! maps to the reply RFC 5321 prescribes out. Written by hand rather than with smtp-proto's
//! parser so that every refusal has the right code (500 unknown command, 501 bad arguments,
//! 555 unsupported parameter, 502 not implemented) and so that address syntax is ours to decide.
//!
//! Address syntax is RFC 5321 with the leniencies real mail needs: a space after `FROM:` /
//! `TO:`, a path without angle brackets, source routes (ignored), and dots anywhere in the local
//! part — the Japanese mobile carriers issued addresses like `taro..x.@docomo.ne.jp` for years,
//! and a municipality must still receive their mail. Domains are strict LDH labels or address
//! literals. Non-ASCII addresses parse here; whether they are allowed (SMTPUTF8) is the
//! session's decision.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::reply::{Enhanced, Reply};

/// The longest local part (RFC 5321 4.5.3.1.1).
pub const MAX_LOCAL_PART: usize = 64;
/// The longest domain (RFC 5321 4.5.3.1.2).
pub const MAX_DOMAIN: usize = 255;
/// The longest mailbox: a path is at most 256 octets including the angle brackets.
pub const MAX_MAILBOX: usize = 254;

/// The `BODY=` parameter of MAIL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyType {
    SevenBit,
    EightBitMime,
}

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ehlo(String),
    Helo(String),
    Mail {
        /// The reverse path without brackets; empty for the null sender `<>`.
        from: String,
        /// `SIZE=`: the client's estimate.
        size: Option<u64>,
        body: Option<BodyType>,
        smtputf8: bool,
    },
    Rcpt {
        /// The forward path without brackets (a mailbox; never empty).
        to: String,
    },
    Data,
    Bdat {
        size: u64,
        last: bool,
    },
    Rset,
    Noop,
    Quit,
    Vrfy,
    Help,
    StartTls,
}

/// Why a line is not a command we carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    /// Not an SMTP command (500 5.5.1).
    Unknown,
    /// An HTTP request or similar on the SMTP port: refused, and the connection is closed.
    NonSmtp,
    /// A command we know but do not offer (502 5.5.1).
    NotImplemented(&'static str),
    /// Bad arguments (501 5.5.4).
    Syntax(&'static str),
    /// A bad address in MAIL (501 5.1.7) or RCPT (501 5.1.3).
    BadAddress { rcpt: bool, why: &'static str },
    /// A MAIL or RCPT parameter we do not support (555 5.5.4).
    UnsupportedParameter(String),
    /// Bytes that are not UTF-8 (500 5.5.2).
    Encoding,
    /// `BDAT` whose size cannot be read: the chunk cannot be skipped, so the session ends.
    BdatSyntax,
}

impl CommandError {
    /// The reply to send.
    pub fn reply(&self) -> Reply {
        match self {
            CommandError::Unknown => Reply::new(500, Enhanced(5, 5, 1), "command unrecognized"),
            CommandError::NonSmtp => Reply::new(
                502,
                Enhanced(5, 7, 0),
                "this is an SMTP server, closing connection",
            ),
            CommandError::NotImplemented(what) => {
                Reply::new(502, Enhanced(5, 5, 1), format!("{what} not implemented"))
            }
            CommandError::Syntax(why) => Reply::new(501, Enhanced(5, 5, 4), *why),
            CommandError::BadAddress { rcpt: false, why } => {
                Reply::new(501, Enhanced(5, 1, 7), format!("bad sender address: {why}"))
            }
            CommandError::BadAddress { rcpt: true, why } => Reply::new(
                501,
                Enhanced(5, 1, 3),
                format!("bad recipient address: {why}"),
            ),
            CommandError::UnsupportedParameter(p) => Reply::new(
                555,
                Enhanced(5, 5, 4),
                format!("unsupported parameter {}", super::reply::clean_text(p)),
            ),
            CommandError::Encoding => {
                Reply::new(500, Enhanced(5, 5, 2), "command line is not valid UTF-8")
            }
            CommandError::BdatSyntax => Reply::new(
                501,
                Enhanced(5, 5, 4),
                "syntax: BDAT chunk-size [LAST]; closing connection",
            ),
        }
    }

    /// True when the connection must be closed after the reply.
    pub fn closes(&self) -> bool {
        matches!(self, CommandError::NonSmtp | CommandError::BdatSyntax)
    }
}

/// Parses one command line (without its CRLF).
pub fn parse(line: &[u8]) -> Result<Command, CommandError> {
    let line = std::str::from_utf8(line).map_err(|_| CommandError::Encoding)?;
    let line = line.trim_end_matches([' ', '\t']);
    let (verb, args) = match line.find(' ') {
        Some(i) => (&line[..i], line[i + 1..].trim_start_matches(' ')),
        None => (line, ""),
    };
    if verb.len() > 16 {
        return Err(CommandError::Unknown);
    }
    let no_args = |c: Command| {
        if args.is_empty() {
            Ok(c)
        } else {
            Err(CommandError::Syntax("no arguments allowed"))
        }
    };
    match verb.to_ascii_uppercase().as_str() {
        "EHLO" => helo_arg(args).map(Command::Ehlo),
        "HELO" => helo_arg(args).map(Command::Helo),
        "MAIL" => parse_mail(args),
        "RCPT" => parse_rcpt(args),
        "DATA" => no_args(Command::Data),
        "BDAT" => parse_bdat(args),
        "RSET" => no_args(Command::Rset),
        "NOOP" => Ok(Command::Noop),
        "QUIT" => Ok(Command::Quit),
        "VRFY" if args.is_empty() => Err(CommandError::Syntax("syntax: VRFY string")),
        "VRFY" => Ok(Command::Vrfy),
        "HELP" => Ok(Command::Help),
        "STARTTLS" => no_args(Command::StartTls),
        "EXPN" => Err(CommandError::NotImplemented("EXPN")),
        "AUTH" => Err(CommandError::NotImplemented("AUTH")),
        "ETRN" | "TURN" | "ATRN" | "BURL" | "LHLO" | "SEND" | "SOML" | "SAML" | "XCLIENT"
        | "XFORWARD" => Err(CommandError::NotImplemented("command")),
        "GET" | "POST" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" | "CONNECT" | "TRACE" | "PATCH" => {
            Err(CommandError::NonSmtp)
        }
        _ => Err(CommandError::Unknown),
    }
}

/// The EHLO/HELO argument: the first word, which must be there and be printable.
fn helo_arg(args: &str) -> Result<String, CommandError> {
    let word = args.split(' ').next().unwrap_or("");
    if word.is_empty() {
        return Err(CommandError::Syntax("syntax: EHLO domain"));
    }
    if word.len() > MAX_DOMAIN + 2 || word.chars().any(char::is_control) {
        return Err(CommandError::Syntax("invalid domain"));
    }
    Ok(word.to_string())
}

/// Strips a case-insensitive ASCII prefix.
fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn parse_mail(args: &str) -> Result<Command, CommandError> {
    let rest = strip_prefix_ci(args, "FROM:")
        .ok_or(CommandError::Syntax("syntax: MAIL FROM:<address>"))?;
    let (from, params) = parse_path(rest.trim_start_matches(' '), false)?;
    let mut size = None;
    let mut body = None;
    let mut smtputf8 = false;
    for p in params.split(' ').filter(|p| !p.is_empty()) {
        let (key, value) = match p.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (p, None),
        };
        match (key.to_ascii_uppercase().as_str(), value) {
            ("SIZE", Some(v)) if size.is_none() => {
                if v.is_empty() || v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(CommandError::Syntax("syntax: SIZE=number"));
                }
                size = Some(v.parse::<u64>().unwrap_or(u64::MAX));
            }
            ("BODY", Some(v)) if body.is_none() => {
                body = Some(match v.to_ascii_uppercase().as_str() {
                    "7BIT" => BodyType::SevenBit,
                    "8BITMIME" => BodyType::EightBitMime,
                    _ => return Err(CommandError::UnsupportedParameter(p.to_string())),
                });
            }
            ("SMTPUTF8", None) if !smtputf8 => smtputf8 = true,
            ("SIZE" | "BODY" | "SMTPUTF8", _) => {
                return Err(CommandError::Syntax("duplicate or malformed parameter"))
            }
            _ => return Err(CommandError::UnsupportedParameter(p.to_string())),
        }
    }
    Ok(Command::Mail {
        from,
        size,
        body,
        smtputf8,
    })
}

fn parse_rcpt(args: &str) -> Result<Command, CommandError> {
    let rest =
        strip_prefix_ci(args, "TO:").ok_or(CommandError::Syntax("syntax: RCPT TO:<address>"))?;
    let (to, params) = parse_path(rest.trim_start_matches(' '), true)?;
    if let Some(p) = params.split(' ').find(|p| !p.is_empty()) {
        return Err(CommandError::UnsupportedParameter(p.to_string()));
    }
    Ok(Command::Rcpt { to })
}

fn parse_bdat(args: &str) -> Result<Command, CommandError> {
    let mut words = args.split(' ').filter(|w| !w.is_empty());
    let size = words.next().ok_or(CommandError::BdatSyntax)?;
    if size.is_empty() || size.len() > 19 || !size.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CommandError::BdatSyntax);
    }
    let size = size.parse::<u64>().map_err(|_| CommandError::BdatSyntax)?;
    let last = match words.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return Err(CommandError::BdatSyntax),
    };
    if words.next().is_some() {
        return Err(CommandError::BdatSyntax);
    }
    Ok(Command::Bdat { size, last })
}

/// Parses a reverse- or forward-path at the start of `s`; returns the mailbox (empty for `<>`,
/// only allowed when `rcpt` is false) and the text after the path (the parameters).
fn parse_path(s: &str, rcpt: bool) -> Result<(String, &str), CommandError> {
    let bad = |why| CommandError::BadAddress { rcpt, why };
    let (inner, rest) = if let Some(after) = s.strip_prefix('<') {
        let end = closing_bracket(after).ok_or(bad("missing '>'"))?;
        (&after[..end], &after[end + 1..])
    } else {
        // Without brackets (not RFC 5321, but common): the address runs to the first space.
        let end = s.find(' ').unwrap_or(s.len());
        (&s[..end], &s[end..])
    };
    if !rest.is_empty() && !rest.starts_with(' ') {
        return Err(bad("text after the address"));
    }
    // A source route (`@a,@b:user@c`) is obsolete and ignored (RFC 5321 appendix C).
    let mailbox = if inner.starts_with('@') {
        let colon = inner.find(':').ok_or(bad("bad source route"))?;
        &inner[colon + 1..]
    } else {
        inner
    };
    if mailbox.is_empty() {
        if rcpt {
            return Err(bad("empty address"));
        }
        if s.starts_with('<') {
            return Ok((String::new(), rest));
        }
        return Err(bad("missing address"));
    }
    check_mailbox(mailbox).map_err(bad)?;
    Ok((mailbox.to_string(), rest))
}

/// The index of the `>` closing a path, skipping quoted strings.
fn closing_bracket(s: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '>' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

/// Checks `local@domain` syntax (see the module comment for the leniencies).
pub fn check_mailbox(mailbox: &str) -> Result<(), &'static str> {
    if mailbox.len() > MAX_MAILBOX {
        return Err("address too long");
    }
    let at = mailbox.rfind('@').ok_or("no domain")?;
    let (local, domain) = (&mailbox[..at], &mailbox[at + 1..]);
    if local.is_empty() {
        return Err("empty local part");
    }
    if local.len() > MAX_LOCAL_PART {
        return Err("local part too long");
    }
    if let Some(q) = local.strip_prefix('"') {
        let q = q.strip_suffix('"').ok_or("bad quoted local part")?;
        let mut escaped = false;
        for c in q.chars() {
            if escaped {
                if c.is_control() {
                    return Err("bad quoted local part");
                }
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' || c.is_control() {
                return Err("bad quoted local part");
            }
        }
        if escaped {
            return Err("bad quoted local part");
        }
    } else if !local.chars().all(|c| c == '.' || is_atext(c)) {
        return Err("bad local part");
    }
    check_domain(domain)
}

/// RFC 5322 atext, plus any non-ASCII character (RFC 6531; allowed only with SMTPUTF8).
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || "!#$%&'*+-/=?^_`{|}~".contains(c)
        || (!c.is_ascii() && !c.is_control())
}

/// A domain of LDH labels (non-ASCII letters allowed for SMTPUTF8), or an address literal.
pub fn check_domain(domain: &str) -> Result<(), &'static str> {
    if domain.is_empty() {
        return Err("empty domain");
    }
    if domain.len() > MAX_DOMAIN {
        return Err("domain too long");
    }
    if let Some(lit) = domain.strip_prefix('[') {
        let lit = lit.strip_suffix(']').ok_or("bad address literal")?;
        let ok = match strip_prefix_ci(lit, "IPv6:") {
            Some(v6) => v6.parse::<Ipv6Addr>().is_ok(),
            None => lit.parse::<Ipv4Addr>().is_ok(),
        };
        return if ok {
            Ok(())
        } else {
            Err("bad address literal")
        };
    }
    for label in domain.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("bad domain");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("bad domain");
        }
        if !label.chars().all(|c| {
            c.is_ascii_alphanumeric() || c == '-' || (!c.is_ascii() && c.is_alphanumeric())
        }) {
            return Err("bad domain");
        }
    }
    Ok(())
}

/// The domain of a mailbox, lower-cased (ASCII); empty if there is none.
pub fn domain_of(mailbox: &str) -> String {
    mailbox
        .rfind('@')
        .map(|at| mailbox[at + 1..].to_ascii_lowercase())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Command, CommandError> {
        parse(s.as_bytes())
    }

    #[test]
    fn verbs() {
        assert_eq!(
            p("EHLO client.example").unwrap(),
            Command::Ehlo("client.example".into())
        );
        assert_eq!(
            p("helo [192.0.2.1]").unwrap(),
            Command::Helo("[192.0.2.1]".into())
        );
        assert_eq!(p("EHLO"), Err(CommandError::Syntax("syntax: EHLO domain")));
        assert_eq!(p("data").unwrap(), Command::Data);
        assert!(matches!(p("DATA x"), Err(CommandError::Syntax(_))));
        assert_eq!(p("RSET ").unwrap(), Command::Rset);
        assert_eq!(p("NOOP hello").unwrap(), Command::Noop);
        assert_eq!(p("QUIT").unwrap(), Command::Quit);
        assert_eq!(p("VRFY postmaster").unwrap(), Command::Vrfy);
        assert!(p("VRFY").is_err());
        assert_eq!(p("HELP").unwrap(), Command::Help);
        assert_eq!(p("StartTLS").unwrap(), Command::StartTls);
        assert_eq!(p("WHATISTHIS"), Err(CommandError::Unknown));
        assert_eq!(p(""), Err(CommandError::Unknown));
        assert_eq!(p("GET / HTTP/1.1"), Err(CommandError::NonSmtp));
        assert!(matches!(p("EXPN x"), Err(CommandError::NotImplemented(_))));
        assert!(matches!(
            p("AUTH PLAIN"),
            Err(CommandError::NotImplemented(_))
        ));
        assert_eq!(parse(b"HELO \xff"), Err(CommandError::Encoding));
        assert!(matches!(p("HELO a\tb"), Err(CommandError::Syntax(_))));
    }

    #[test]
    fn mail_from() {
        assert_eq!(
            p("MAIL FROM:<a@b.example> SIZE=1000 BODY=8BITMIME SMTPUTF8").unwrap(),
            Command::Mail {
                from: "a@b.example".into(),
                size: Some(1000),
                body: Some(BodyType::EightBitMime),
                smtputf8: true
            }
        );
        let m = |s: &str| match p(s) {
            Ok(Command::Mail { from, .. }) => Ok(from),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e),
        };
        assert_eq!(m("MAIL FROM:<>").unwrap(), "");
        assert_eq!(m("mail from: <>").unwrap(), "");
        assert_eq!(m("MAIL FROM: a@b.example").unwrap(), "a@b.example");
        assert_eq!(
            m("MAIL FROM:<@relay.example:a@b.example>").unwrap(),
            "a@b.example"
        );
        assert_eq!(
            m("MAIL FROM:<\"a b>c\"@b.example>").unwrap(),
            "\"a b>c\"@b.example"
        );
        assert_eq!(
            m("MAIL FROM:<taro..x.@docomo.ne.jp>").unwrap(),
            "taro..x.@docomo.ne.jp"
        );
        assert_eq!(m("MAIL FROM:<a@[192.0.2.1]>").unwrap(), "a@[192.0.2.1]");
        assert_eq!(
            m("MAIL FROM:<a@[IPv6:2001:db8::1]>").unwrap(),
            "a@[IPv6:2001:db8::1]"
        );
        assert_eq!(m("MAIL FROM:<太郎@例え.jp>").unwrap(), "太郎@例え.jp");
        for bad in [
            "MAIL FROM:",
            "MAIL FROM:<pepe>",
            "MAIL FROM:<a@xn--->",
            "MAIL FROM:<a@b..c>",
            "MAIL FROM:<a@b.example",
            "MAIL FROM:<a@b.example>x",
            "MAIL FROM:<a b@c>",
            "MAIL FROM:<a@[300.1.1.1]>",
            "MAIL FROM:<a@b_c.example>",
        ] {
            assert!(
                matches!(m(bad), Err(CommandError::BadAddress { rcpt: false, .. })),
                "{bad}"
            );
        }
        let long = format!("MAIL FROM:<{}@{}>", "a".repeat(60), "b".repeat(200));
        assert!(matches!(m(&long), Err(CommandError::BadAddress { .. })));
        assert!(matches!(m("MAIL LALA: <>"), Err(CommandError::Syntax(_))));
        assert!(matches!(
            m("MAIL FROM:<> SIZE=x"),
            Err(CommandError::Syntax(_))
        ));
        assert!(matches!(
            m("MAIL FROM:<> SIZE=1 SIZE=2"),
            Err(CommandError::Syntax(_))
        ));
        assert!(matches!(
            m("MAIL FROM:<> BODY=BINARYMIME"),
            Err(CommandError::UnsupportedParameter(_))
        ));
        assert!(matches!(
            m("MAIL FROM:<> RET=FULL"),
            Err(CommandError::UnsupportedParameter(_))
        ));
        assert!(matches!(
            m("MAIL FROM:<> SMTPUTF8=yes"),
            Err(CommandError::Syntax(_))
        ));
        assert_eq!(
            p("MAIL FROM:<> SIZE=99999999999999999999").unwrap(),
            Command::Mail {
                from: String::new(),
                size: Some(u64::MAX),
                body: None,
                smtputf8: false
            }
        );
    }

    #[test]
    fn rcpt_to() {
        assert_eq!(
            p("RCPT TO:<user@city.example.lg.jp>").unwrap(),
            Command::Rcpt {
                to: "user@city.example.lg.jp".into()
            }
        );
        assert_eq!(
            p("RCPT TO: user@testserver").unwrap(),
            Command::Rcpt {
                to: "user@testserver".into()
            }
        );
        assert!(matches!(
            p("RCPT TO:<>"),
            Err(CommandError::BadAddress { rcpt: true, .. })
        ));
        assert!(matches!(
            p("RCPT TO:"),
            Err(CommandError::BadAddress { rcpt: true, .. })
        ));
        assert!(matches!(
            p("RCPT TO:<pepe>"),
            Err(CommandError::BadAddress { rcpt: true, .. })
        ));
        assert!(matches!(p("RCPT LALA: <>"), Err(CommandError::Syntax(_))));
        assert!(matches!(
            p("RCPT TO:<a@b> NOTIFY=NEVER"),
            Err(CommandError::UnsupportedParameter(_))
        ));
        assert_eq!(domain_of("A@City.Example"), "city.example");
    }

    #[test]
    fn bdat() {
        assert_eq!(
            p("BDAT 100").unwrap(),
            Command::Bdat {
                size: 100,
                last: false
            }
        );
        assert_eq!(
            p("BDAT 0 last").unwrap(),
            Command::Bdat {
                size: 0,
                last: true
            }
        );
        for bad in [
            "BDAT",
            "BDAT x",
            "BDAT 1 FIRST",
            "BDAT 1 LAST x",
            "BDAT 99999999999999999999",
        ] {
            assert_eq!(p(bad), Err(CommandError::BdatSyntax), "{bad}");
        }
        assert!(CommandError::BdatSyntax.closes());
    }

    #[test]
    fn replies_have_the_right_codes() {
        assert_eq!(CommandError::Unknown.reply().code, 500);
        assert_eq!(CommandError::Syntax("x").reply().code, 501);
        assert_eq!(
            CommandError::BadAddress {
                rcpt: true,
                why: "x"
            }
            .reply()
            .summary(),
            "501 5.1.3 bad recipient address: x"
        );
        assert_eq!(
            CommandError::UnsupportedParameter("X=1".into())
                .reply()
                .code,
            555
        );
        assert_eq!(CommandError::NotImplemented("EXPN").reply().code, 502);
        assert_eq!(CommandError::NonSmtp.reply().code, 502);
    }
}
