//! The link policy (`sanitize.links`): what becomes of HTML links and of URLs in text.
//!
//! Links are the main way a sanitised mail still reaches an attacker's site, so the
//! administrator chooses: `keep` (link text and `<url>`), `show` (link text and `[url]`, the
//! default: the reader sees where a link really goes), `defang` (`hxxps://example[.]com/path`:
//! readable but not clickable in any client) or `remove` (link text only; bare URLs in text
//! replaced by a marker). Whatever the policy, only `http`, `https`, `ftp` and `mailto` targets
//! are ever shown: `javascript:`, `data:` (which can carry a whole file in base64), `file:`,
//! `cid:` and relative targets are dropped, leaving the link text.

use crate::config::{Language, LinkPolicy};

/// Longest URL shown; longer ones are cut (they are shown for reading, not for use).
pub const MAX_URL_CHARS: usize = 1000;

/// The policy's name as written in the configuration.
pub fn policy_name(p: LinkPolicy) -> &'static str {
    match p {
        LinkPolicy::Keep => "keep",
        LinkPolicy::Show => "show",
        LinkPolicy::Defang => "defang",
        LinkPolicy::Remove => "remove",
    }
}

/// The reason recorded in a `LinksRewritten` action; the notice reads the count and the
/// policy back from it.
pub fn links_reason(count: u64, p: LinkPolicy) -> String {
    format!("{count} link(s) rewritten (links = {})", policy_name(p))
}

/// What replaces a removed URL in text.
pub fn removed_marker(lang: Language) -> &'static str {
    match lang {
        Language::Ja => "[URL削除]",
        Language::En => "[URL removed]",
    }
}

/// The target of an HTML link, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// http, https, ftp: may be shown.
    Web(String),
    /// mailto: may be shown.
    Mail(String),
    /// Anything else (javascript:, data:, file:, cid:, relative, fragment): never shown.
    Hidden,
}

fn classify(url: &str) -> Target {
    let url: String = url
        .trim()
        .chars()
        .filter(|c| !c.is_control() && !c.is_whitespace())
        .collect();
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") || lower.starts_with("ftp://")
    {
        Target::Web(cap(&url))
    } else if lower.starts_with("mailto:") {
        Target::Mail(cap(&url))
    } else {
        Target::Hidden
    }
}

fn cap(url: &str) -> String {
    match url.char_indices().nth(MAX_URL_CHARS) {
        Some((i, _)) => format!("{}...", &url[..i]),
        None => url.to_string(),
    }
}

/// Renders an HTML link (its text already rendered) under the policy. Returns the text and
/// whether the link counts as rewritten. A link whose text is its own web address is left as
/// text: the text-level URL rule (defang / remove) then applies to it.
pub fn render_link(text: &str, href: &str, policy: LinkPolicy) -> (String, bool) {
    let (suffix, counted) = link_suffix(text, href, policy);
    (format!("{text}{suffix}"), counted)
}

/// What to write after a link's text (`" [url]"`, `" <url>"`, ... or nothing) and whether the
/// link counts as rewritten. See [`render_link`].
pub fn link_suffix(text: &str, href: &str, policy: LinkPolicy) -> (String, bool) {
    let target = classify(href);
    let text_t = text.trim();
    let shown = match &target {
        Target::Web(u) | Target::Mail(u) => u.as_str(),
        Target::Hidden => "",
    };
    if !shown.is_empty() && same_address(text_t, shown) {
        return (String::new(), false);
    }
    let suffix = match (&target, policy) {
        (Target::Hidden, _) | (_, LinkPolicy::Remove) => None,
        (Target::Web(u) | Target::Mail(u), LinkPolicy::Keep) => Some(format!("<{u}>")),
        (Target::Web(u) | Target::Mail(u), LinkPolicy::Show) => Some(format!("[{u}]")),
        (Target::Web(u), LinkPolicy::Defang) => Some(format!("[{}]", defang(u))),
        (Target::Mail(u), LinkPolicy::Defang) => Some(format!("[{}]", defang_mail(u))),
    };
    match suffix {
        Some(s) if text_t.is_empty() => (s, true),
        Some(s) => (format!(" {s}"), true),
        None => (String::new(), true),
    }
}

fn same_address(text: &str, url: &str) -> bool {
    let strip = |s: &str| -> String {
        let l = s.to_ascii_lowercase();
        let l = l.trim_end_matches('/');
        ["mailto:", "https://", "http://", "ftp://"]
            .iter()
            .find_map(|p| l.strip_prefix(p))
            .unwrap_or(l)
            .to_string()
    };
    strip(text) == strip(url)
}

/// `https://www.example.com/a.b` → `hxxps://www[.]example[.]com/a.b`.
pub fn defang(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => (&url[..i], &url[i + 3..]),
        None => ("", url),
    };
    let scheme_out = match scheme.to_ascii_lowercase().as_str() {
        "http" => "hxxp".to_string(),
        "https" => "hxxps".to_string(),
        "ftp" => "fxp".to_string(),
        "" => String::new(),
        other => other.replace('t', "x"),
    };
    let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (host, path) = rest.split_at(host_end);
    let host = host.replace('.', "[.]").replace(':', "[:]");
    if scheme_out.is_empty() {
        format!("{host}{path}")
    } else {
        format!("{scheme_out}://{host}{path}")
    }
}

fn defang_mail(url: &str) -> String {
    let addr = url.get(7..).unwrap_or("");
    format!("mailto[:]{}", addr.replace('.', "[.]").replace('@', "[@]"))
}

/// Finds web addresses in one line of text and rewrites them by the policy (`keep` and `show`
/// leave text alone). Appends the result to `out` and returns how many were rewritten.
pub fn rewrite_text_urls(line: &str, policy: LinkPolicy, lang: Language, out: &mut String) -> u64 {
    if matches!(policy, LinkPolicy::Keep | LinkPolicy::Show) || !might_have_url(line) {
        out.push_str(line);
        return 0;
    }
    let mut count = 0;
    let mut rest = line;
    while let Some((start, end)) = find_url(rest) {
        out.push_str(&rest[..start]);
        let url = &rest[start..end];
        match policy {
            LinkPolicy::Defang => out.push_str(&defang(url)),
            _ => out.push_str(removed_marker(lang)),
        }
        count += 1;
        rest = &rest[end..];
    }
    out.push_str(rest);
    count
}

/// Cheap pre-check so that most lines skip the URL scan.
pub fn might_have_url(line: &str) -> bool {
    line.contains("://") || line.contains("www.") || line.contains("WWW.")
}

/// The byte range of the first URL in `s`: `http://`, `https://`, `ftp://` (any case) or a
/// bare `www.` host. It ends at whitespace, at a non-ASCII character (Japanese text often runs
/// straight on after a URL), at `<>"'` and similar, and trailing punctuation is left out.
fn find_url(s: &str) -> Option<(usize, usize)> {
    let bytes = s.as_bytes();
    let lower = s.to_ascii_lowercase();
    let mut best: Option<usize> = None;
    for pat in ["http://", "https://", "ftp://", "www."] {
        let mut from = 0;
        while let Some(i) = lower[from..].find(pat).map(|i| i + from) {
            // `www.` only at a word start, and not inside a URL found by scheme.
            let ok = pat != "www."
                || i == 0
                || !(bytes[i - 1].is_ascii_alphanumeric() || b"/.@-_".contains(&bytes[i - 1]));
            if ok {
                if best.is_none_or(|b| i < b) {
                    best = Some(i);
                }
                break;
            }
            from = i + pat.len();
        }
    }
    let start = best?;
    let mut end = start;
    for (i, c) in s[start..].char_indices() {
        if !c.is_ascii()
            || c.is_ascii_whitespace()
            || c.is_ascii_control()
            || "<>\"'`{}|\\^".contains(c)
        {
            break;
        }
        end = start + i + c.len_utf8();
    }
    // Trailing punctuation belongs to the sentence; a closing bracket only if unbalanced.
    while end > start {
        let c = bytes[end - 1];
        let url = &s[start..end];
        let unbalanced = |o: char, cl: char| url.matches(cl).count() > url.matches(o).count();
        let trim = match c {
            b'.' | b',' | b';' | b':' | b'!' | b'?' => true,
            b')' => unbalanced('(', ')'),
            b']' => unbalanced('[', ']'),
            _ => false,
        };
        if !trim {
            break;
        }
        end -= 1;
    }
    // A bare scheme with nothing after it is not a URL.
    let url = &lower[start..end];
    if url.ends_with("://") || url == "www." {
        return None;
    }
    Some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_links_by_policy() {
        let u = "https://phish.example.com/login?a=1";
        assert_eq!(
            render_link("ログイン", u, LinkPolicy::Keep).0,
            format!("ログイン <{u}>")
        );
        assert_eq!(
            render_link("ログイン", u, LinkPolicy::Show).0,
            format!("ログイン [{u}]")
        );
        assert_eq!(
            render_link("ログイン", u, LinkPolicy::Defang).0,
            "ログイン [hxxps://phish[.]example[.]com/login?a=1]"
        );
        assert_eq!(
            render_link("ログイン", u, LinkPolicy::Remove),
            ("ログイン".into(), true)
        );
        // The link text is the address: left for the text rule.
        assert_eq!(
            render_link("https://a.example/", "https://a.example", LinkPolicy::Show),
            ("https://a.example/".into(), false)
        );
        // Text that shows one address while the link goes elsewhere: both are visible.
        assert_eq!(
            render_link(
                "https://bank.example",
                "https://evil.example",
                LinkPolicy::Show
            )
            .0,
            "https://bank.example [https://evil.example]"
        );
        // An image-only link.
        assert_eq!(render_link("", u, LinkPolicy::Show).0, format!("[{u}]"));
    }

    #[test]
    fn dangerous_targets_are_never_shown() {
        for href in [
            "javascript:alert(1)",
            " JaVaScRiPt:alert(1)",
            "data:application/zip;base64,UEsDBBQAAAAIAA==",
            "file:///C:/x.exe",
            "cid:logo@x",
            "#top",
            "/relative/path",
            "vbscript:msgbox",
        ] {
            for p in [
                LinkPolicy::Keep,
                LinkPolicy::Show,
                LinkPolicy::Defang,
                LinkPolicy::Remove,
            ] {
                let (t, rewritten) = render_link("click", href, p);
                assert_eq!(t, "click", "{href} {p:?}");
                assert!(rewritten);
            }
        }
    }

    #[test]
    fn mail_links() {
        assert_eq!(
            render_link("係", "mailto:info@city.example.lg.jp", LinkPolicy::Show).0,
            "係 [mailto:info@city.example.lg.jp]"
        );
        assert_eq!(
            render_link("係", "mailto:info@city.example.lg.jp", LinkPolicy::Defang).0,
            "係 [mailto[:]info[@]city[.]example[.]lg[.]jp]"
        );
    }

    #[test]
    fn defang_forms() {
        assert_eq!(defang("http://example.com"), "hxxp://example[.]com");
        assert_eq!(
            defang("HTTPS://a.b.c:8080/x.html?q=1.2"),
            "hxxps://a[.]b[.]c[:]8080/x.html?q=1.2"
        );
        assert_eq!(defang("ftp://files.example/p"), "fxp://files[.]example/p");
        assert_eq!(defang("www.example.com/a"), "www[.]example[.]com/a");
    }

    fn rw(line: &str, p: LinkPolicy) -> (String, u64) {
        let mut out = String::new();
        let n = rewrite_text_urls(line, p, Language::Ja, &mut out);
        (out, n)
    }

    #[test]
    fn urls_in_text() {
        let line = "詳細はhttps://www.city.example.lg.jp/info.htmlをご覧ください。";
        assert_eq!(rw(line, LinkPolicy::Show), (line.to_string(), 0));
        assert_eq!(rw(line, LinkPolicy::Keep), (line.to_string(), 0));
        assert_eq!(
            rw(line, LinkPolicy::Defang),
            (
                "詳細はhxxps://www[.]city[.]example[.]lg[.]jp/info.htmlをご覧ください。".into(),
                1
            )
        );
        assert_eq!(
            rw(line, LinkPolicy::Remove),
            ("詳細は[URL削除]をご覧ください。".into(), 1)
        );
        assert_eq!(
            rw(
                "see (http://a.example/x). and www.b.example, ok",
                LinkPolicy::Remove
            ),
            ("see ([URL削除]). and [URL削除], ok".into(), 2)
        );
        assert_eq!(
            rw("wiki http://x.example/A_(b) end", LinkPolicy::Defang),
            ("wiki hxxp://x[.]example/A_(b) end".into(), 1)
        );
        assert_eq!(rw("no url: http:// alone", LinkPolicy::Remove).1, 0);
        assert_eq!(
            rw("email me at user@www.example.com", LinkPolicy::Remove).1,
            0
        );
        let mut out = String::new();
        rewrite_text_urls(
            "go to http://x.example",
            LinkPolicy::Remove,
            Language::En,
            &mut out,
        );
        assert_eq!(out, "go to [URL removed]");
        // Already defanged text is not defanged again.
        assert_eq!(rw("hxxps://a[.]example", LinkPolicy::Defang).1, 0);
    }

    #[test]
    fn long_urls_are_capped() {
        let u = format!("https://x.example/{}", "a".repeat(5000));
        let (t, _) = render_link("x", &u, LinkPolicy::Show);
        assert!(t.len() < MAX_URL_CHARS + 20);
        assert!(t.ends_with("...]"));
    }
}
