//! Address patterns of `[[policy]]` `sender` / `recipient` lists, and the containment test
//! behind the shadowed-rule report.
//!
//! The forms, all compared case-insensitively (local parts too: in practice no mail system
//! distinguishes `Keiri@` from `keiri@`, and an envelope sender is whatever the client says, so
//! a case-sensitive match would not make a rule any harder to meet, only easier to get wrong):
//!
//! - `"billing@supplier.co.jp"`: that address;
//! - `"@vendor.example"` or `"vendor.example"`: every address at that domain, exactly (not its
//!   subdomains);
//! - `"*.partner.example"`: a domain wildcard, here every subdomain (not `partner.example`
//!   itself; list both for both);
//! - `"*@*.go.jp"`, `"info-*@example.com"`: an address wildcard over `local@domain`;
//! - `"<>"`: the null sender (bounces); no other pattern matches it, not even `"*"`.
//!
//! `*` matches any run of characters, dots and `@` included; there is no other special
//! character.

use std::fmt;

/// One compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddrPattern {
    /// `<>`: the null sender.
    Null,
    /// A domain (lower case), possibly with `*`.
    Domain(String),
    /// `local@domain` (lower case), possibly with `*`.
    Address(String),
}

/// Longest pattern accepted (addresses are at most 256 octets in SMTP).
const MAX_PATTERN: usize = 320;

impl AddrPattern {
    /// Compiles one written pattern; `null_ok` is false for recipients (they are never `<>`).
    pub fn parse(written: &str, null_ok: bool) -> Result<AddrPattern, String> {
        let p = written.trim();
        if p == "<>" {
            return if null_ok {
                Ok(AddrPattern::Null)
            } else {
                Err(format!("{written:?}: a recipient is never the null sender"))
            };
        }
        if p.is_empty() || p.len() > MAX_PATTERN {
            return Err(format!("{written:?} is not an address pattern"));
        }
        if p.chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
        {
            return Err(format!(
                "{written:?}: no spaces, control characters or angle brackets in a pattern"
            ));
        }
        let p = p.to_lowercase();
        match p.rsplit_once('@') {
            None => Ok(AddrPattern::Domain(p.trim_end_matches('.').to_string())),
            Some(("", domain)) if !domain.is_empty() && !domain.contains('*') => Ok(
                AddrPattern::Domain(domain.trim_end_matches('.').to_string()),
            ),
            Some(("", _)) => Err(format!(
                "{written:?}: write a domain wildcard without the @ (\"*.example.jp\")"
            )),
            Some((local, domain)) if !local.is_empty() && !domain.is_empty() => Ok(
                AddrPattern::Address(format!("{local}@{}", domain.trim_end_matches('.'))),
            ),
            Some(_) => Err(format!("{written:?} is not an address pattern")),
        }
    }

    /// Whether the address (as normalised by [`normalise`]) matches; `""` is the null sender.
    pub fn matches(&self, addr: &str) -> bool {
        match self {
            AddrPattern::Null => addr.is_empty(),
            _ if addr.is_empty() => false,
            AddrPattern::Domain(g) => glob(g, domain_of(addr)),
            AddrPattern::Address(g) => glob(g, addr),
        }
    }

    /// Whether every address this pattern matches is matched by `other` too. Sound but not
    /// complete (a "no" may be wrong for exotic wildcard pairs): it only feeds warnings.
    pub fn within(&self, other: &AddrPattern) -> bool {
        match (self, other) {
            (AddrPattern::Null, AddrPattern::Null) => true,
            (AddrPattern::Null, _) | (_, AddrPattern::Null) => false,
            (AddrPattern::Domain(d), AddrPattern::Domain(g)) => glob_within(d, g),
            (AddrPattern::Address(a), AddrPattern::Domain(g)) => {
                a.rsplit_once('@').is_some_and(|(_, d)| glob_within(d, g))
            }
            (AddrPattern::Domain(d), AddrPattern::Address(g)) => glob_within(&format!("*@{d}"), g),
            (AddrPattern::Address(a), AddrPattern::Address(g)) => glob_within(a, g),
        }
    }
}

impl fmt::Display for AddrPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddrPattern::Null => f.write_str("<>"),
            AddrPattern::Domain(d) if d.contains('*') => f.write_str(d),
            AddrPattern::Domain(d) => write!(f, "@{d}"),
            AddrPattern::Address(a) => f.write_str(a),
        }
    }
}

/// An envelope or header address as patterns see it: angle brackets, a source route
/// (`@a,@b:`) and a trailing dot of the domain removed, lower case; `""` for the null sender.
pub fn normalise(addr: &str) -> String {
    let a = addr.trim();
    let a = a
        .strip_prefix('<')
        .and_then(|a| a.strip_suffix('>'))
        .unwrap_or(a)
        .trim();
    let a = match a.split_once(':') {
        Some((route, rest)) if route.starts_with('@') => rest,
        _ => a,
    };
    a.trim_end_matches('.').to_lowercase()
}

/// The domain of a normalised address (after the last `@`; empty when there is none).
pub fn domain_of(addr: &str) -> &str {
    addr.rsplit_once('@').map_or("", |(_, d)| d)
}

/// Wildcard match of `text` against `pat` (`*` = any run of characters). Linear backtracking
/// over the last star: O(len(pat) x len(text)) at worst, and both are short.
pub fn glob(pat: &str, text: &str) -> bool {
    glob_chars(pat, text, false)
}

/// Whether every string matched by glob `inner` is matched by glob `outer`: `inner`'s text is
/// matched against `outer`, its stars being literal characters only `outer`'s stars can absorb.
fn glob_within(inner: &str, outer: &str) -> bool {
    glob_chars(outer, inner, true)
}

fn glob_chars(pat: &str, text: &str, text_stars_literal: bool) -> bool {
    let p: Vec<char> = pat.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        let pc = p.get(pi).copied();
        let tc = t.get(ti).copied();
        if pc == Some('*') {
            star = Some((pi, ti));
            pi += 1;
        } else if pc.is_some() && pc == tc && !(text_stars_literal && tc == Some('*')) {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|&c| c == '*'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("*.go.jp", "soumu.go.jp"));
        assert!(!glob("*.go.jp", "go.jp"));
        assert!(glob("*@*.go.jp", "a@b.go.jp"));
        assert!(!glob("*@*.go.jp", "a@go.jp"));
        assert!(glob("a*b*c", "aXbYbZc"));
        assert!(!glob("a*b*c", "aXbYbZ"));
        assert!(glob("*", ""));
        assert!(glob_within("*.sub.example", "*.example"));
        assert!(!glob_within("*.example", "*.sub.example"));
        assert!(!glob_within("*", "a*"));
        assert!(glob_within("a@b", "*@b"));
    }

    #[test]
    fn normalising() {
        assert_eq!(
            normalise("<Billing@Supplier.CO.JP>"),
            "billing@supplier.co.jp"
        );
        assert_eq!(normalise("<>"), "");
        assert_eq!(normalise("<@relay.example:a@b.example.>"), "a@b.example");
    }
}
