//! Release of a kept original: the original, with one header prepended,
//!
//! ```text
//! X-Mugaika-Released: by NAME at DATE; quarantine id ID
//! ```
//!
//! becomes the "clean" message of a new spool entry (the original as received, not
//! sanitised: that is the point of a release), addressed to the original recipients or to
//! those given. The running server's queue manager finds it at its next rescan of the spool
//! and delivers it like any other message.
//!
//! Order: the spool entry is written under `tmp/` first, then the release is recorded in the
//! index (status released, audit row naming the queue id), then the entry is committed into
//! `queue/`. A crash between the last two leaves an audit row for a copy that was never
//! queued; the other order could deliver an original with no trace of who released it, which
//! an audit trail must not allow. If the commit fails, the audit row is removed again.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use base64::Engine as _;

use super::{check_id, Quarantine, QuarantineError, Release, Status};
use crate::spool::{Envelope, Spool};

/// Longest administrator name written in the header.
const MAX_BY: usize = 100;

pub(crate) fn release(
    q: &Quarantine,
    id: &str,
    spool_dir: &Path,
    to: Option<&[String]>,
    by: &str,
) -> Result<String, QuarantineError> {
    check_id(id)?;
    let rec = q
        .get(id)?
        .ok_or_else(|| QuarantineError::NotFound(id.to_string()))?;
    if rec.status == Status::Purged {
        return Err(QuarantineError::Purged(id.to_string()));
    }
    let recipients: Vec<String> = match to {
        Some(t) if !t.is_empty() => t.iter().map(|a| a.trim().to_string()).collect(),
        _ => rec.recipients.clone(),
    };
    if recipients.is_empty() {
        return Err(QuarantineError::Release(format!(
            "{id} has no recipient to release to"
        )));
    }
    if let Some(bad) = recipients.iter().find(|a| !plausible_address(a)) {
        return Err(QuarantineError::Release(format!(
            "{bad:?} is not a mail address"
        )));
    }
    let original = q.original(id)?;

    let spool = Spool::attach(spool_dir)?;
    let inc = spool.create()?;
    let now = SystemTime::now();
    let header = released_header(by, now, id);
    {
        let path = inc.clean_path();
        let mut f = File::create(path)?;
        f.write_all(header.as_bytes())?;
        f.write_all(&original)?;
        // The commit fsyncs the clean file too; this makes a write error show here.
        f.flush()?;
    }
    drop(original);
    let queued_as = inc.id.clone();
    let by_name = clean_by(by);
    let seq = q.index().add_release(
        id,
        &Release {
            at: now,
            by: by_name,
            to: recipients.clone(),
            queued_as: queued_as.clone(),
        },
    )?;
    let mut env = Envelope::new(rec.sender.clone(), recipients.iter().cloned());
    env.smtputf8 = !rec.sender.is_ascii() || recipients.iter().any(|r| !r.is_ascii());
    env.quarantine_id = Some(id.to_string());
    if let Err(e) = inc.commit(env) {
        if let Err(undo) = q.index().undo_release(id, seq) {
            tracing::error!(id, error = %undo, "quarantine: cannot undo the audit row of a failed release");
        }
        return Err(e.into());
    }
    tracing::info!(target: "audit", id, queued_as, by, to = ?recipients, "quarantine: original released");
    Ok(queued_as)
}

/// The header line (with CRLF) prepended to a released original.
pub fn released_header(by: &str, at: SystemTime, id: &str) -> String {
    format!(
        "X-Mugaika-Released: by {} at {}; quarantine id {id}\r\n",
        encode_by(&clean_by(by)),
        crate::smtp::server::received::rfc5322_date(at)
    )
}

/// The name without control characters or line breaks, at most [`MAX_BY`] characters;
/// `unknown` if nothing is left.
fn clean_by(by: &str) -> String {
    let s: String = by
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let s: String = s.chars().take(MAX_BY).collect();
    if s.is_empty() {
        "unknown".into()
    } else {
        s
    }
}

/// ASCII names as they are (without `;`, which ends the name in the header), others as an
/// RFC 2047 encoded word.
fn encode_by(by: &str) -> String {
    if by.is_ascii() && !by.contains(';') && !by.contains("=?") {
        by.to_string()
    } else {
        format!(
            "=?UTF-8?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(by.as_bytes())
        )
    }
}

/// Something with one `@`, a local part and a domain, no spaces, controls or angle brackets.
fn plausible_address(a: &str) -> bool {
    let ok_chars = a
        .chars()
        .all(|c| !c.is_whitespace() && !c.is_control() && !matches!(c, '<' | '>' | ','));
    match a.rsplit_once('@') {
        Some((local, domain)) => {
            ok_chars && !local.is_empty() && !domain.is_empty() && a.len() <= 320
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn header() {
        let t = UNIX_EPOCH + Duration::from_secs(1_751_339_045);
        assert_eq!(
            released_header("admin", t, "ABC123"),
            "X-Mugaika-Released: by admin at Tue, 01 Jul 2025 03:04:05 +0000; \
             quarantine id ABC123\r\n"
        );
        let h = released_header("x\r\nBcc: evil@example.com", t, "A");
        assert_eq!(h.matches("\r\n").count(), 1, "{h}");
        assert!(released_header("山田", t, "A").contains("=?UTF-8?B?5bGx55Sw?="));
        assert!(released_header("", t, "A").contains("by unknown at"));
    }

    #[test]
    fn addresses() {
        assert!(plausible_address("a@b.example"));
        for bad in ["", "a", "a b@c", "<a@b>", "a@", "@b", "a@b\r\nRCPT"] {
            assert!(!plausible_address(bad), "{bad:?}");
        }
    }
}
