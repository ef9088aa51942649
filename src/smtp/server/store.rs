//! What the session needs from the rest of the relay, as two small traits: a [`Store`] of
//! incoming entries (the spool) and a [`Sanitize`]r (the pipeline).
//!
//! The session is written against these traits rather than against `spool::Spool` and
//! `pipeline` directly so that the tests can put a failing disk or a sanitiser that panics,
//! hangs or refuses behind a real session, and check that every one of those ends in the reply
//! DESIGN promises (451, 554, or a notice-only message) and never in a lost or half-written
//! message. The production implementations are [`Spool`] and [`Pipeline`].

use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::pipeline::{self, Context, Report, SanitizeError};
use crate::spool::{Envelope, Incoming, Spool};

/// Durable storage for accepted messages.
pub trait Store: Send + Sync + 'static {
    type Entry: Entry;
    /// Starts a new, uncommitted entry.
    fn create(&self) -> io::Result<Self::Entry>;
    /// Whether mail from `sender` was accepted since `since` (first contact, issue 7), from
    /// the quarantine index; `None` when the store keeps no history. Blocking.
    fn seen_since(&self, _sender: &str, _since: SystemTime) -> io::Result<Option<bool>> {
        Ok(None)
    }
}

/// One message being received. Dropping it uncommitted must remove everything it wrote.
pub trait Entry: Send + 'static {
    /// The id quoted in `250 ... queued as ID`.
    fn id(&self) -> &str;
    /// Where the original is written.
    fn original_path(&self) -> &Path;
    /// Where the clean message must be when [`Entry::commit`] is called.
    fn clean_path(&self) -> &Path;
    /// Where the clean message of recipient group `group` goes (0 is [`Entry::clean_path`]):
    /// recipients under different policy rules get different clean messages
    /// ([`Accepted::groups`]).
    fn group_clean_path(&self, group: usize) -> PathBuf;
    /// A path on the same file system as [`Entry::clean_path`], outside the entry, that the
    /// store's crash recovery removes: a sanitiser that overran its deadline may still be
    /// writing there after the entry was committed or dropped.
    fn scratch_path(&self, suffix: &str) -> PathBuf;
    /// Appends received octets to the original.
    fn write_original(&mut self, data: &[u8]) -> io::Result<()>;
    /// Makes original, clean message and envelope durable and queues the entry. The server
    /// answers 250 only after this returns `Ok`.
    fn commit(self, message: &Accepted) -> io::Result<()>;
}

/// The envelope of an accepted message, as the session knows it.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub id: String,
    /// `""` for the null sender.
    pub sender: String,
    pub recipients: Vec<String>,
    pub client: IpAddr,
    pub helo: String,
    pub received_at: SystemTime,
    pub tls: bool,
    pub smtputf8: bool,
    /// Octets of the original as received (after dot-unstuffing).
    pub size: u64,
    /// The id the original is kept under in the quarantine (the spool id), if kept.
    pub quarantine_id: Option<String>,
    /// The original's subject and Message-ID, for the quarantine index.
    pub subject: Option<String>,
    pub message_id: Option<String>,
    /// The sanitiser's actions (JSON array), for the quarantine index.
    pub actions: serde_json::Value,
    /// Why the original is kept ([`crate::quarantine::kept_reason`]): `sanitized`, `clean`,
    /// `on-error: ...`, `encrypted archive`.
    pub reason: String,
    /// The clean message group of each recipient (same order as `recipients`; empty or all 0
    /// when one clean message serves everyone).
    pub groups: Vec<usize>,
}

impl Accepted {
    /// The quarantine entry of this message, when its original is kept.
    pub fn quarantine_entry(&self) -> Option<crate::quarantine::NewEntry> {
        let id = self.quarantine_id.clone()?;
        Some(crate::quarantine::NewEntry {
            id,
            received_at: self.received_at,
            client: self.client.to_string(),
            sender: self.sender.clone(),
            recipients: self.recipients.clone(),
            subject: self.subject.clone(),
            message_id: self.message_id.clone(),
            size: self.size,
            reason: self.reason.clone(),
            actions: self.actions.clone(),
        })
    }
}

/// Turns an original into a clean message.
pub trait Sanitize: Send + Sync + 'static {
    /// Sanitises `original` into `output` (see [`pipeline::sanitize_file`]).
    fn sanitize(
        &self,
        original: &Path,
        ctx: &Context,
        output: &Path,
    ) -> Result<Report, SanitizeError>;
    /// Writes a notice-only message for an original that could not be sanitised
    /// (`sanitize.on_error = "quarantine"`).
    fn notice_only(
        &self,
        original: &Path,
        ctx: &Context,
        reason: &str,
        output: &Path,
    ) -> Result<Report, SanitizeError>;
}

/// The real sanitiser: [`crate::pipeline`] under the server's configuration.
#[derive(Debug, Clone)]
pub struct Pipeline {
    cfg: Arc<Config>,
}

impl Pipeline {
    pub fn new(cfg: Arc<Config>) -> Pipeline {
        Pipeline { cfg }
    }
}

impl Sanitize for Pipeline {
    fn sanitize(
        &self,
        original: &Path,
        ctx: &Context,
        output: &Path,
    ) -> Result<Report, SanitizeError> {
        pipeline::sanitize_file(original, &self.cfg, ctx, output)
    }

    fn notice_only(
        &self,
        original: &Path,
        ctx: &Context,
        reason: &str,
        output: &Path,
    ) -> Result<Report, SanitizeError> {
        pipeline::notice_only(original, &self.cfg, ctx, reason, output)
    }
}

impl Store for Spool {
    type Entry = Incoming;
    fn create(&self) -> io::Result<Incoming> {
        Spool::create(self)
    }

    fn seen_since(&self, sender: &str, since: SystemTime) -> io::Result<Option<bool>> {
        match self.quarantine() {
            Some(q) => q
                .sender_seen_since(sender, since)
                .map(Some)
                .map_err(|e| io::Error::other(format!("quarantine: {e}"))),
            None => Ok(None),
        }
    }
}

impl Entry for Incoming {
    fn id(&self) -> &str {
        &self.id
    }

    fn original_path(&self) -> &Path {
        Incoming::original_path(self)
    }

    fn clean_path(&self) -> &Path {
        Incoming::clean_path(self)
    }

    fn group_clean_path(&self, group: usize) -> PathBuf {
        Incoming::group_clean_path(self, group)
    }

    fn scratch_path(&self, suffix: &str) -> PathBuf {
        // The entry is `tmp/ID/`; `tmp/ID.suffix` is beside it, so a rename into the entry is
        // atomic, and the spool's start-up recovery empties `tmp/`.
        let entry_dir = Incoming::original_path(self)
            .parent()
            .unwrap_or_else(|| Path::new("."));
        let tmp = entry_dir.parent().unwrap_or(entry_dir);
        tmp.join(format!("{}.{suffix}", self.id))
    }

    fn write_original(&mut self, data: &[u8]) -> io::Result<()> {
        self.original_file().write_all(data)
    }

    fn commit(self, m: &Accepted) -> io::Result<()> {
        let mut env = Envelope::new(m.sender.clone(), m.recipients.iter().cloned());
        env.client = m.client.to_string();
        env.helo = m.helo.clone();
        env.received_at = m
            .received_at
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        env.tls = m.tls;
        env.smtputf8 = m.smtputf8;
        env.quarantine_id = m.quarantine_id.clone();
        for (r, &g) in env.recipients.iter_mut().zip(&m.groups) {
            if g > 0 {
                r.clean = Some(crate::spool::group_file(g));
            }
        }
        Incoming::commit_kept(self, env, m.quarantine_entry().as_ref())
    }
}
