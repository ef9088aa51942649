//! `mugaika explain`: which rule applies to a message for each recipient, why, and every
//! action it would take, delivering nothing.
//!
//! The message file is read twice: its header block for the default sender (`Return-Path:`,
//! else the first `From:` address) and the trusted `Authentication-Results` verdicts, and then
//! once per recipient group by the real pipeline ([`crate::pipeline::sanitize_file`] with the
//! group's settings) into a temporary directory that is removed afterwards. The report's
//! actions are printed attachment by attachment. Nothing is spooled, quarantined or sent.
//!
//! The output is for people (and golden tests): only the message's file name is printed, not
//! its path, and nothing depends on the clock or the machine.

use std::io::{Read, Write};
use std::net::IpAddr;
use std::path::Path;

use crate::config::Config;
use crate::mime::header::parse_addresses;
use crate::pipeline::{self, Context, SanitizeError};

use super::auth::fields;
use super::{auth_results, Facts, Policies};

/// What `explain` is asked about.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub message: &'a Path,
    pub recipients: &'a [String],
    /// The envelope sender; `None`: from the message (`Return-Path:`, else `From:`).
    pub sender: Option<&'a str>,
    pub client: Option<IpAddr>,
    pub first_contact: bool,
}

/// Why `explain` could not run (a message that cannot be sanitised is not one: it is
/// explained).
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("at least one --rcpt is required")]
    NoRecipients,
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("writing the explanation: {0}")]
    Write(#[from] std::io::Error),
}

/// Explains `req` under `cfg` onto `out`.
pub fn explain(cfg: &Config, req: &Request, out: &mut dyn Write) -> Result<(), ExplainError> {
    if req.recipients.is_empty() {
        return Err(ExplainError::NoRecipients);
    }
    let policies = Policies::new(cfg)?;
    let read_err = |source| ExplainError::Read {
        path: req.message.display().to_string(),
        source,
    };
    let size = std::fs::metadata(req.message).map_err(read_err)?.len();
    let mut head = Vec::new();
    std::fs::File::open(req.message)
        .map_err(read_err)?
        .take(cfg.mime.max_header_size.0.saturating_add(2))
        .read_to_end(&mut head)
        .map_err(read_err)?;
    let (sender, sender_from) = match req.sender {
        Some(s) => (s.to_string(), "--sender"),
        None => sender_of(&head),
    };
    let auth = auth_results(&head, policies.trusted_authserv_ids());
    let name = req
        .message
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    writeln!(out, "message: {name} ({size} octets)")?;
    let shown = super::pattern::normalise(&sender);
    writeln!(
        out,
        "sender: {} ({sender_from})",
        if shown.is_empty() { "<>" } else { &shown }
    )?;
    match req.client {
        Some(c) => writeln!(out, "client: {c}")?,
        None => writeln!(out, "client: unknown (client conditions do not hold)")?,
    }
    writeln!(
        out,
        "first contact: {}",
        match (req.first_contact, policies.first_contact_enabled()) {
            (false, _) => "no",
            (true, true) => "yes",
            (true, false) => "yes, but first contact is not configured",
        }
    )?;
    if policies.trusted_authserv_ids().is_empty() {
        writeln!(
            out,
            "authentication: none believed (policies.trusted_authserv_ids is empty)"
        )?;
    } else if auth.is_empty() {
        writeln!(out, "authentication: no trusted Authentication-Results")?;
    } else {
        writeln!(out, "authentication:")?;
        for a in &auth {
            writeln!(out, "  - {a}")?;
        }
    }
    if size > cfg.server.max_message_size.0 {
        writeln!(
            out,
            "note: larger than server.max_message_size ({}): the SMTP server refuses it at \
             DATA (552 5.3.4); explained anyway",
            cfg.server.max_message_size
        )?;
    }
    let facts = Facts {
        sender: &sender,
        recipient: "",
        client: req.client,
        size,
        auth: &auth,
        first_contact: req.first_contact,
    };
    let groups = policies.group(&facts, req.recipients);
    let tmp = tempfile::Builder::new()
        .prefix(".mugaika-explain-")
        .tempdir()
        .map_err(read_err)?;
    for (i, (resolved, rcpts)) in groups.iter().enumerate() {
        writeln!(out)?;
        writeln!(out, "group {}: {}", i + 1, rcpts.join(", "))?;
        match &resolved.rule {
            Some(r) if resolved.first_contact => writeln!(out, "rule: {r} (first contact)")?,
            Some(r) => writeln!(out, "rule: {r}")?,
            None => writeln!(out, "rule: default ([sanitize])")?,
        }
        writeln!(out, "why:")?;
        for w in &resolved.why {
            writeln!(out, "  - {w}")?;
        }
        if !resolved.overrides.is_empty() {
            writeln!(out, "overrides:")?;
            for o in &resolved.overrides {
                writeln!(out, "  - {o}")?;
            }
        }
        let a = &resolved.sanitize.attachments;
        writeln!(
            out,
            "attachments: image={} pdf={} office={} legacy_office={} text={} archive={} \
             encrypted_archive={} other={}",
            a.image.as_str(),
            a.pdf.as_str(),
            a.office.as_str(),
            a.legacy_office.as_str(),
            a.text.as_str(),
            a.archive.as_str(),
            a.encrypted_archive.as_str(),
            a.other.as_str()
        )?;
        let clean = tmp.path().join(format!("group-{}.eml", i + 1));
        // The same context the SMTP session builds for a group, so the run is the real one.
        let ctx = Context {
            temp_dir: Some(tmp.path().to_path_buf()),
            sanitize: Some(resolved.sanitize.clone()),
            policy: resolved.rule.clone(),
            first_contact: resolved.first_contact,
            ..Context::default()
        };
        match pipeline::sanitize_file(req.message, cfg, &ctx, &clean) {
            Ok(report) => {
                writeln!(
                    out,
                    "result: {}; {} attachment(s) delivered; text in {}{}",
                    report.status,
                    report.attachments,
                    report.output_charset,
                    if resolved.sanitize.subject_tag.is_empty() {
                        String::new()
                    } else {
                        format!("; subject tagged {:?}", resolved.sanitize.subject_tag)
                    }
                )?;
                if !report.parse_flags.is_empty() {
                    writeln!(out, "parse flags: {}", report.parse_flags.join(", "))?;
                }
                writeln!(out, "actions:")?;
                if report.actions.is_empty() {
                    writeln!(out, "  (none: the message was only re-encoded)")?;
                }
                for act in &report.actions {
                    let kind = serde_json::to_value(act.kind)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default();
                    let mut what = format!("part {}", act.part);
                    if let Some(n) = &act.name {
                        what.push_str(&format!(" {n:?}"));
                    }
                    if !act.declared_type.is_empty() {
                        what.push_str(&format!(" ({}", act.declared_type));
                        if let Some(d) = &act.detected_type {
                            what.push_str(&format!(", found {d}"));
                        }
                        what.push(')');
                    }
                    let size = match act.bytes_before {
                        0 => String::new(),
                        n => format!(" [{n} octets]"),
                    };
                    writeln!(out, "  - {what}: {kind}: {}{size}", act.reason)?;
                }
            }
            Err(SanitizeError::Rejected(why)) => {
                writeln!(out, "result: refused ({why}): SMTP 554 5.6.0")?;
            }
            Err(e) => {
                let then = match resolved.sanitize.on_error {
                    crate::config::OnError::Quarantine => {
                        "the original would be quarantined and a notice-only message delivered"
                    }
                    crate::config::OnError::Reject => "the message would be refused",
                };
                writeln!(out, "result: could not be sanitised ({e}); {then}")?;
            }
        }
    }
    writeln!(out)?;
    writeln!(out, "nothing was delivered.")?;
    Ok(())
}

/// The default envelope sender: `Return-Path:` (`<>` is the null sender), else the first
/// `From:` address, else the null sender.
fn sender_of(head: &[u8]) -> (String, &'static str) {
    let fields = fields(head);
    let get = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    };
    if let Some(rp) = get("return-path") {
        let v = String::from_utf8_lossy(rp);
        let v = v.trim();
        if v.starts_with('<') {
            if let Some(end) = v.find('>') {
                return (v[..=end].to_string(), "Return-Path");
            }
        }
    }
    if let Some(from) = get("from") {
        if let Some(a) = parse_addresses(from).into_iter().next() {
            return (a.addr, "From");
        }
    }
    (String::new(), "none in the message")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_sender_comes_from_return_path_then_from() {
        let s = |h: &str| sender_of(h.as_bytes());
        assert_eq!(
            s("Return-Path: <a@b.example>\r\nFrom: c@d.example\r\n\r\n"),
            ("<a@b.example>".into(), "Return-Path")
        );
        assert_eq!(
            s("Return-Path: <>\nFrom: c@d.example\n\n"),
            ("<>".into(), "Return-Path")
        );
        assert_eq!(
            s("From: =?UTF-8?B?5bGx55Sw?= <C@D.example>\n\n"),
            ("C@D.example".into(), "From")
        );
        assert_eq!(
            s("Subject: x\n\nFrom: e@f\n"),
            (String::new(), "none in the message")
        );
        assert_eq!(s("Return-Path: junk\n\n").1, "none in the message");
    }
}
