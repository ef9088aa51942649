//! `Authentication-Results` (RFC 8601): the SPF / DKIM / DMARC verdicts of a trusted upstream,
//! for the `authenticated` conditions of `[[policy]]` rules.
//!
//! Anyone can write an `Authentication-Results` field into a message, so a field is believed
//! only when its authserv-id is listed in `policies.trusted_authserv_ids`, and only when it is
//! where the trusted upstream puts it: at the top of the header block. mugaika is the hop after
//! the upstream (its own `Received:` is added when the clean message is built, so it is not in
//! the original): the fields are read from the top down, and reading stops at the first
//! `Received:` field that comes after a trusted `Authentication-Results` field, i.e. at the
//! upstream's own boundary. Postfix writes its `Received:` above the fields its milters add,
//! which is why a `Received:` before the first trusted field does not stop the scan. The
//! upstream must remove incoming fields that carry its own authserv-id (RFC 8601 section 5;
//! OpenDKIM, OpenDMARC and rspamd do): a forged field from the Internet then never sits above
//! the upstream's boundary.
//!
//! Parsing is small and bounded: comments removed, `;`-separated results, each
//! `method[/version]=result` followed by `reason=` and `ptype.property=value` pairs.

use std::fmt;

/// One verdict from a trusted `Authentication-Results` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthResult {
    /// The authserv-id of the field, lower case.
    pub authserv_id: String,
    /// `spf`, `dkim`, `dmarc`, ... (lower case, version removed).
    pub method: String,
    /// `pass`, `fail`, `none`, ... (lower case).
    pub result: String,
    /// `header.d=example.jp`, `smtp.mailfrom=a@example.jp`, ...: (key lower case, value).
    pub props: Vec<(String, String)>,
}

impl fmt::Display for AuthResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.method, self.result)?;
        for (k, v) in &self.props {
            write!(f, " {k}={v}")?;
        }
        write!(f, " (by {})", self.authserv_id)
    }
}

/// An `authenticated` condition of a rule: `"dmarc=pass"`, `"dkim=pass header.d=example.jp"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthCond {
    pub method: String,
    pub result: String,
    pub props: Vec<(String, String)>,
}

impl AuthCond {
    pub fn parse(written: &str) -> Result<AuthCond, String> {
        let bad = || {
            format!(
                "{written:?} is not \"method=result\" optionally followed by property=value \
                 pairs (e.g. \"dkim=pass header.d=example.jp\")"
            )
        };
        let token_ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        let mut words = written.split_whitespace();
        let (method, result) = words
            .next()
            .and_then(|w| w.split_once('='))
            .ok_or_else(bad)?;
        if !token_ok(method) || method.contains('.') || !token_ok(result) {
            return Err(bad());
        }
        let mut props = Vec::new();
        for w in words {
            let (k, v) = w.split_once('=').ok_or_else(bad)?;
            if !token_ok(k) || !k.contains('.') || v.is_empty() || v.chars().any(char::is_control) {
                return Err(bad());
            }
            props.push((k.to_ascii_lowercase(), v.to_lowercase()));
        }
        Ok(AuthCond {
            method: method.to_ascii_lowercase(),
            result: result.to_ascii_lowercase(),
            props,
        })
    }

    /// Whether one of `results` says so (method, result and every property equal; values
    /// compared case-insensitively).
    pub fn holds(&self, results: &[AuthResult]) -> bool {
        results.iter().any(|r| {
            r.method == self.method
                && r.result == self.result
                && self.props.iter().all(|(k, v)| {
                    r.props
                        .iter()
                        .any(|(rk, rv)| rk == k && rv.to_lowercase() == *v)
                })
        })
    }
}

impl fmt::Display for AuthCond {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.method, self.result)?;
        for (k, v) in &self.props {
            write!(f, " {k}={v}")?;
        }
        Ok(())
    }
}

/// Most of the header block looked at, and most verdicts kept: hostile messages are bounded.
const MAX_BLOCK: usize = 256 << 10;
const MAX_RESULTS: usize = 64;

/// The verdicts of the trusted `Authentication-Results` fields at the top of `header_block`
/// (the start of a message; reading stops at the empty line ending the header block). An
/// empty `trusted` list believes nothing.
pub fn auth_results(header_block: &[u8], trusted: &[String]) -> Vec<AuthResult> {
    let mut out = Vec::new();
    if trusted.is_empty() {
        return out;
    }
    let trusted: Vec<String> = trusted
        .iter()
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    let block = header_block.get(..MAX_BLOCK).unwrap_or(header_block);
    let mut seen_trusted = false;
    for (name, value) in fields(block) {
        if name.eq_ignore_ascii_case(b"received") {
            if seen_trusted {
                break;
            }
        } else if name.eq_ignore_ascii_case(b"authentication-results") {
            let value = String::from_utf8_lossy(&value);
            let Some((id, results)) = parse_value(&value) else {
                continue;
            };
            if !trusted.contains(&id) {
                continue;
            }
            seen_trusted = true;
            for (method, result, props) in results {
                if out.len() >= MAX_RESULTS {
                    break;
                }
                out.push(AuthResult {
                    authserv_id: id.clone(),
                    method,
                    result,
                    props,
                });
            }
        }
    }
    out
}

/// The header fields of a block, unfolded: (name, value), up to the empty line.
pub(crate) fn fields(block: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let block = block.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(block);
    let mut first = true;
    for line in block.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if first && line.starts_with(b"From ") {
            first = false;
            continue;
        }
        first = false;
        if line.is_empty() {
            break;
        }
        if matches!(line.first(), Some(b' ' | b'\t')) {
            if let Some((_, v)) = out.last_mut() {
                v.push(b' ');
                v.extend_from_slice(line.trim_ascii());
            }
            continue;
        }
        if let Some(i) = memchr::memchr(b':', line) {
            let (name, rest) = line.split_at(i);
            out.push((name.trim_ascii().to_vec(), rest[1..].trim_ascii().to_vec()));
        }
    }
    out
}

#[derive(Debug, PartialEq)]
enum Tok {
    Word(String),
    Eq,
    Semi,
}

/// Tokens of a field value: comments dropped, quoted strings unquoted into words.
fn tokens(value: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut chars = value.chars();
    let flush = |word: &mut String, out: &mut Vec<Tok>| {
        if !word.is_empty() {
            out.push(Tok::Word(std::mem::take(word)));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '(' => {
                flush(&mut word, &mut out);
                let mut depth = 1usize;
                while depth > 0 {
                    match chars.next() {
                        None => break,
                        Some('\\') => {
                            chars.next();
                        }
                        Some('(') => depth += 1,
                        Some(')') => depth -= 1,
                        Some(_) => {}
                    }
                }
            }
            '"' => loop {
                match chars.next() {
                    None | Some('"') => break,
                    Some('\\') => {
                        if let Some(n) = chars.next() {
                            word.push(n);
                        }
                    }
                    Some(n) => word.push(n),
                }
            },
            '=' => {
                flush(&mut word, &mut out);
                out.push(Tok::Eq);
            }
            ';' => {
                flush(&mut word, &mut out);
                out.push(Tok::Semi);
            }
            c if c.is_whitespace() => flush(&mut word, &mut out),
            c => word.push(c),
        }
    }
    flush(&mut word, &mut out);
    out
}

type Verdict = (String, String, Vec<(String, String)>);

/// (authserv-id, verdicts) of one field value; `None` when it has no authserv-id.
fn parse_value(value: &str) -> Option<(String, Vec<Verdict>)> {
    let toks = tokens(value);
    let mut parts = toks.split(|t| *t == Tok::Semi);
    let id = match parts.next()?.first()? {
        Tok::Word(w) => w.to_ascii_lowercase(),
        _ => return None,
    };
    let mut verdicts = Vec::new();
    for part in parts {
        let mut pairs = Vec::new();
        let mut i = 0;
        while i < part.len() {
            match (part.get(i), part.get(i + 1), part.get(i + 2)) {
                (Some(Tok::Word(k)), Some(Tok::Eq), Some(Tok::Word(v))) => {
                    pairs.push((k.to_ascii_lowercase(), v.clone()));
                    i += 3;
                }
                _ => i += 1,
            }
        }
        let mut pairs = pairs.into_iter();
        let Some((method, result)) = pairs.next() else {
            continue;
        };
        let method = method.split('/').next().unwrap_or("").to_string();
        if method.is_empty() || method.contains('.') {
            continue;
        }
        let props = pairs
            .filter(|(k, _)| k.contains('.'))
            .map(|(k, v)| (k, v.to_lowercase()))
            .collect();
        verdicts.push((method, result.to_ascii_lowercase(), props));
    }
    Some((id, verdicts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_typical_field() {
        let (id, v) = parse_value(
            "mx.city.example.lg.jp; dkim=pass (2048-bit key) header.d=Supplier.co.jp \
             header.i=@supplier.co.jp; spf=pass (sender IP is 192.0.2.1) \
             smtp.mailfrom=\"billing@supplier.co.jp\"; dmarc = pass (p=reject) header.from=supplier.co.jp",
        )
        .unwrap();
        assert_eq!(id, "mx.city.example.lg.jp");
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].0, "dkim");
        assert_eq!(
            v[0].2[0],
            ("header.d".to_string(), "supplier.co.jp".to_string())
        );
        assert_eq!(v[1].2[0].1, "billing@supplier.co.jp");
        assert_eq!((v[2].0.as_str(), v[2].1.as_str()), ("dmarc", "pass"));
        let (_, none) = parse_value("example.org 1; none").unwrap();
        assert!(none.is_empty());
        assert!(parse_value("").is_none());
        assert!(parse_value("(((((").is_none());
    }
}
