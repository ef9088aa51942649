//! `mugaika quarantine list|show|export|release|unlock|purge`: the administrator's commands, run
//! beside a serving relay (the SQLite index is shared through its busy timeout, a PostgreSQL
//! one through the database). `main.rs` only declares the subcommand; the work is here.
//!
//! Exit codes as for the rest of the CLI (sysexits): 0 success, 65 no such entry or purged,
//! 75 an error on our side, 78 a bad configuration or a wrong key; `unlock` also exits 65 for a
//! wrong password or nothing to unlock, 66 for an unreadable password file, 75 when locked out.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{days_from_civil, rfc3339, Quarantine, QuarantineError, Record, Search, Status};
use crate::config::Config;

const EX_USAGE: u8 = 64;
const EX_DATAERR: u8 = 65;
const EX_TEMPFAIL: u8 = 75;
const EX_CONFIG: u8 = 78;

/// The `quarantine` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List kept originals, newest first.
    List {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Received since a date (2026-11-01, UTC) or for a time back (7d, 12h, 30m).
        #[arg(long)]
        since: Option<String>,
        /// Envelope sender contains this (case-insensitive).
        #[arg(long)]
        sender: Option<String>,
        /// One envelope recipient contains this (case-insensitive).
        #[arg(long)]
        rcpt: Option<String>,
        /// Subject contains this (case-insensitive).
        #[arg(long)]
        subject: Option<String>,
        /// held, released or purged.
        #[arg(long)]
        status: Option<String>,
        /// At most this many (0: all).
        #[arg(long, default_value_t = 200)]
        limit: usize,
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one entry: metadata, what the sanitiser did and why, releases, MIME part tree.
    Show {
        id: String,
        #[arg(long)]
        config: Option<PathBuf>,
        /// JSON (record and releases) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write the original message (.eml) to -o FILE or standard output.
    Export {
        id: String,
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Deliver the original through the delivery queue (to its recipients, or --to).
    Release {
        id: String,
        /// Deliver to these addresses instead of the original recipients (repeatable).
        #[arg(long = "to")]
        to: Vec<String>,
        /// Who releases it, for the header and the audit trail (default $SUDO_USER or $USER).
        #[arg(long)]
        by: Option<String>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Open a password-protected zip held here (PPAP): decrypt it, disarm every member by the
    /// usual policy and deliver a new clean message (to the original recipients, or --to).
    /// At most 5 wrong passwords per entry in 15 minutes.
    Unlock {
        id: String,
        /// A file holding the password (one trailing line break is ignored).
        #[arg(long)]
        password_file: PathBuf,
        /// Deliver to these addresses instead of the original recipients (repeatable).
        #[arg(long = "to")]
        to: Vec<String>,
        /// Who unlocks it, for the message and the audit trail (default $SUDO_USER or $USER).
        #[arg(long)]
        by: Option<String>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Delete originals older than quarantine.retention (index rows are kept, status purged).
    Purge {
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// Runs one subcommand; returns the exit code.
pub fn run(cmd: Command) -> u8 {
    let config = match &cmd {
        Command::List { config, .. }
        | Command::Show { config, .. }
        | Command::Export { config, .. }
        | Command::Release { config, .. }
        | Command::Unlock { config, .. }
        | Command::Purge { config } => config.clone(),
    };
    let cfg = match Config::load_or_default(config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mugaika: {e}");
            return EX_CONFIG;
        }
    };
    let q = match Quarantine::open(&cfg.quarantine) {
        Ok(q) => q,
        Err(e) => {
            eprintln!("mugaika: quarantine {}: {e}", cfg.quarantine.dir.display());
            return code(&e);
        }
    };
    let out = std::io::stdout();
    let mut out = out.lock();
    let result = match cmd {
        Command::List {
            since,
            sender,
            rcpt,
            subject,
            status,
            limit,
            json,
            ..
        } => {
            let since = match since.as_deref().map(|s| parse_since(s, SystemTime::now())) {
                None => None,
                Some(Some(t)) => Some(t),
                Some(None) => {
                    eprintln!("mugaika: --since wants a date (2026-11-01) or an age (7d, 12h)");
                    return EX_USAGE;
                }
            };
            let status = match status.as_deref().map(Status::parse) {
                None => None,
                Some(Some(s)) => Some(s),
                Some(None) => {
                    eprintln!("mugaika: --status is held, released or purged");
                    return EX_USAGE;
                }
            };
            let search = Search {
                since,
                sender,
                rcpt,
                subject,
                status,
                limit,
            };
            q.search(&search)
                .and_then(|recs| write_list(&mut out, &recs, json).map_err(Into::into))
        }
        Command::Show { id, json, .. } => show(&q, &id, json, &mut out),
        Command::Export { id, output, .. } => export(&q, &id, output.as_deref(), &mut out),
        Command::Release { id, to, by, .. } => {
            let by = by.unwrap_or_else(default_by);
            let to = (!to.is_empty()).then_some(to.as_slice());
            q.release(&id, &cfg.spool.dir, to, &by).and_then(|queued| {
                writeln!(out, "released {id} by {by}: queued as {queued}")?;
                Ok(())
            })
        }
        Command::Unlock {
            id,
            password_file,
            to,
            by,
            ..
        } => {
            let by = by.unwrap_or_else(default_by);
            return super::unlock::run_cli(&q, &cfg, &id, &password_file, &to, &by, &mut out);
        }
        Command::Purge { .. } => q.purge(SystemTime::now()).and_then(|n| {
            writeln!(out, "purged {n} originals older than the retention")?;
            Ok(())
        }),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("mugaika: {e}");
            code(&e)
        }
    }
}

fn code(e: &QuarantineError) -> u8 {
    match e {
        QuarantineError::NotFound(_) | QuarantineError::Purged(_) | QuarantineError::BadId(_) => {
            EX_DATAERR
        }
        QuarantineError::WrongKey(_) => EX_CONFIG,
        QuarantineError::Release(_) => EX_DATAERR,
        _ => EX_TEMPFAIL,
    }
}

/// `$SUDO_USER` (the administrator behind sudo), else `$USER`, else `unknown`.
pub fn default_by() -> String {
    ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// `2026-11-01` (midnight UTC) or an age back from `now`: `7d`, `12h`, `30m`, `2w`.
pub fn parse_since(s: &str, now: SystemTime) -> Option<SystemTime> {
    let s = s.trim();
    if let [y, m, d] = s.split('-').collect::<Vec<_>>().as_slice() {
        let days = days_from_civil(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)?;
        return Some(UNIX_EPOCH + Duration::from_secs(days.checked_mul(86_400)?));
    }
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return None,
    };
    now.checked_sub(Duration::from_secs(n.checked_mul(secs)?))
}

/// Printable on a terminal: control characters (escape sequences from a hostile subject)
/// shown as `?`.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn truncate(s: &str, n: usize) -> String {
    let s = printable(s);
    if s.chars().count() <= n {
        s
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn write_list(out: &mut dyn Write, recs: &[Record], json: bool) -> std::io::Result<()> {
    if json {
        let text = serde_json::to_string_pretty(recs).map_err(std::io::Error::other)?;
        return writeln!(out, "{text}");
    }
    writeln!(
        out,
        "{:<18}  {:<20}  {:<8}  {:>9}  {:<30}  {:<30}  SUBJECT",
        "ID", "RECEIVED", "STATUS", "SIZE", "SENDER", "RECIPIENTS"
    )?;
    for r in recs {
        let sender = if r.sender.is_empty() { "<>" } else { &r.sender };
        writeln!(
            out,
            "{:<18}  {:<20}  {:<8}  {:>9}  {:<30}  {:<30}  {}",
            r.id,
            rfc3339(r.received_at),
            r.status.as_str(),
            r.size,
            truncate(sender, 30),
            truncate(&r.recipients.join(","), 30),
            truncate(r.subject.as_deref().unwrap_or(""), 60),
        )?;
    }
    writeln!(out, "{} entries", recs.len())
}

fn show(q: &Quarantine, id: &str, json: bool, out: &mut dyn Write) -> Result<(), QuarantineError> {
    let rec = q
        .get(id)?
        .ok_or_else(|| QuarantineError::NotFound(id.to_string()))?;
    let releases = q.releases(id)?;
    if json {
        let v = serde_json::json!({ "record": rec, "releases": releases });
        let text = serde_json::to_string_pretty(&v).map_err(std::io::Error::other)?;
        writeln!(out, "{text}")?;
        return Ok(());
    }
    let w = |out: &mut dyn Write, k: &str, v: &str| writeln!(out, "{k:<12} {}", printable(v));
    w(out, "id", &rec.id)?;
    w(out, "received", &rfc3339(rec.received_at))?;
    w(out, "client", &rec.client)?;
    w(
        out,
        "sender",
        if rec.sender.is_empty() {
            "<>"
        } else {
            &rec.sender
        },
    )?;
    w(out, "recipients", &rec.recipients.join(", "))?;
    w(out, "subject", rec.subject.as_deref().unwrap_or(""))?;
    w(out, "message-id", rec.message_id.as_deref().unwrap_or(""))?;
    w(
        out,
        "size",
        &format!("{} octets ({} stored)", rec.size, rec.stored_size),
    )?;
    w(out, "sha256", &rec.sha256)?;
    w(out, "reason", &rec.reason)?;
    w(out, "status", rec.status.as_str())?;
    writeln!(out, "actions:")?;
    match rec.actions.as_array() {
        Some(list) if !list.is_empty() => {
            for a in list {
                let s = |k: &str| a.get(k).and_then(|v| v.as_str()).unwrap_or("");
                let name = s("name");
                let name = if name.is_empty() {
                    String::new()
                } else {
                    format!(" {name:?}")
                };
                writeln!(
                    out,
                    "  - {}{} ({}): {}",
                    printable(s("kind")),
                    printable(&name),
                    printable(s("declared_type")),
                    printable(s("reason"))
                )?;
            }
        }
        _ => writeln!(out, "  (none)")?,
    }
    writeln!(out, "releases:")?;
    if releases.is_empty() {
        writeln!(out, "  (none)")?;
    }
    for r in &releases {
        writeln!(
            out,
            "  - {} by {} to {} (queued as {})",
            rfc3339(r.at),
            printable(&r.by),
            printable(&r.to.join(", ")),
            r.queued_as
        )?;
    }
    if rec.status != Status::Purged {
        writeln!(out, "parts:")?;
        match q.original(id) {
            Ok(original) => part_tree(&original, out)?,
            Err(e) => writeln!(out, "  (original unreadable: {e})")?,
        }
    }
    Ok(())
}

/// The MIME tree of `original`, one line per part: type, file name, decoded size.
fn part_tree(original: &[u8], out: &mut dyn Write) -> std::io::Result<()> {
    let Some(msg) = mail_parser::MessageParser::default().parse(original) else {
        return writeln!(out, "  (not parseable as a message)");
    };
    walk(&msg, 0, 1, out)
}

fn walk(
    msg: &mail_parser::Message<'_>,
    part: u32,
    depth: usize,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    use mail_parser::MimeHeaders;
    if depth > 32 {
        return writeln!(out, "{}…", "  ".repeat(depth));
    }
    let Some(p) = msg.part(part) else {
        return Ok(());
    };
    let ctype = p
        .content_type()
        .map(|c| match &c.c_subtype {
            Some(sub) => format!("{}/{}", c.c_type, sub),
            None => c.c_type.to_string(),
        })
        .unwrap_or_else(|| "text/plain".into());
    let name = p
        .attachment_name()
        .map(|n| format!(" {:?}", printable(n)))
        .unwrap_or_default();
    let size = if p.sub_parts().is_some() {
        String::new()
    } else {
        format!(" {} octets", p.len())
    };
    writeln!(
        out,
        "{}{}{}{}",
        "  ".repeat(depth),
        printable(&ctype),
        name,
        size
    )?;
    if let Some(children) = p.sub_parts() {
        for &c in children {
            // A part listing itself (hostile input) must not loop.
            if c != part {
                walk(msg, c, depth + 1, out)?;
            }
        }
    } else if let Some(inner) = p.message() {
        walk(inner, 0, depth + 1, out)?;
    }
    Ok(())
}

fn export(
    q: &Quarantine,
    id: &str,
    output: Option<&Path>,
    out: &mut dyn Write,
) -> Result<(), QuarantineError> {
    let original = q.original(id)?;
    match output {
        Some(p) if p != Path::new("-") => {
            let mut f = std::fs::File::create(p)?;
            f.write_all(&original)?;
            f.sync_all()?;
        }
        _ => {
            out.write_all(&original)?;
            out.flush()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(
            parse_since("2026-11-01", now),
            Some(UNIX_EPOCH + Duration::from_secs(1_793_491_200))
        );
        assert_eq!(
            parse_since("7d", now),
            Some(now - Duration::from_secs(7 * 86_400))
        );
        assert_eq!(
            parse_since("12h", now),
            Some(now - Duration::from_secs(12 * 3600))
        );
        for bad in [
            "",
            "7",
            "d",
            "7y",
            "2026-02-30",
            "2026-13-01",
            "x-y-z",
            "99999999999999999999d",
        ] {
            assert_eq!(parse_since(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn hostile_text_is_printable() {
        assert_eq!(printable("a\x1b[2Jb\r\n"), "a?[2Jb??");
        assert_eq!(truncate("日本語のテキスト", 4), "日本語…");
    }
}
