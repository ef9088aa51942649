//! The quarantine of originals: every accepted original is kept here, compressed and encrypted,
//! durably, before the server answers 250, under the id that the clean message carries in
//! `X-Mugaika-Quarantine-Id` and in its notice. An administrator can search it, read an
//! original, and release it to its recipients through the normal delivery queue; originals
//! older than `quarantine.retention` are purged (the index row stays, status `purged`, for the
//! audit trail).
//!
//! Pieces:
//! - [`store`]: the blobs, `dir/blobs/ID.mgq`, zstd then AES-256-GCM in 1 MiB chunks with the
//!   id as associated data, and the key file. Streaming: a keep holds one chunk in memory
//!   whatever the message size; a read returns the original whole (at most
//!   `server.max_message_size`), so it holds that plus one chunk.
//! - [`index`]: the [`Index`] trait and its SQLite implementation (`dir/index.sqlite`);
//!   [`postgres`]: the PostgreSQL one, for several relays sharing one quarantine (they must
//!   share `dir` too, where the blobs are).
//! - [`release`]: queueing an original for delivery with an `X-Mugaika-Released` header.
//! - [`unlock`]: PPAP, a held password-protected zip opened with its password, its members
//!   disarmed and delivered in a new clean message (never the original).
//! - [`cli`]: `mugaika quarantine list|show|export|release|unlock|purge`.
//!
//! Durability: [`Quarantine::keep`] writes the blob to a temporary name, fsyncs it, links it
//! to its name (a link, unlike a rename, never replaces a blob of the same id), fsyncs the
//! directory, and only then writes the index row (SQLite WAL with `synchronous=FULL`, or a
//! PostgreSQL commit). A crash between blob and row leaves an orphan blob (its message was
//! never acknowledged: the client retries under a new id). The blob carries its own metadata
//! (encrypted with the original), so [`Quarantine::recover_orphans`] (run by every
//! [`Quarantine::purge`], hence at `serve`'s start and every `purge_interval`) puts it back in
//! the index as `held`: every blob is indexed, and an administrator may find such a message
//! twice, never not at all. Temporary files of a crashed write are removed after an hour.
//!
//! With a PostgreSQL index every method blocks on the network: call them from a blocking
//! thread (`tokio::task::spawn_blocking`), never on a tokio worker thread, where the `postgres`
//! crate panics.

pub mod cli;
pub mod index;
pub mod postgres;
pub mod release;
pub mod store;
pub mod unlock;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};

pub use index::{Index, SqliteIndex};
pub use postgres::PostgresIndex;

use crate::config::QuarantineConfig;

/// Why a quarantine operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QuarantineError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The key file has the wrong length, or the key does not open the index's key check or
    /// an existing blob. Never answered by making a new key.
    #[error("wrong quarantine key: {0}")]
    WrongKey(String),
    /// A blob that does not decrypt, decompress or match its SHA-256.
    #[error("corrupt quarantine entry {id}: {why}")]
    Corrupt { id: String, why: String },
    #[error("no quarantine entry {0}")]
    NotFound(String),
    /// The original was deleted by the retention purge.
    #[error("quarantine entry {0} was purged (retention); its original is gone")]
    Purged(String),
    #[error("invalid quarantine id {0:?}")]
    BadId(String),
    #[error("quarantine index: {0}")]
    Index(String),
    #[error("release: {0}")]
    Release(String),
}

/// The state of a kept original.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Kept, never released.
    Held,
    /// Released at least once (see [`Quarantine::releases`]); still kept until purged.
    Released,
    /// Deleted by the retention purge; only the index row remains.
    Purged,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Held => "held",
            Status::Released => "released",
            Status::Purged => "purged",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        match s.trim().to_ascii_lowercase().as_str() {
            "held" => Some(Status::Held),
            "released" => Some(Status::Released),
            "purged" => Some(Status::Purged),
            _ => None,
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is known of an original when it is kept.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewEntry {
    /// The quarantine id (the spool id): ASCII letters and digits.
    pub id: String,
    #[serde(serialize_with = "ser_time")]
    pub received_at: SystemTime,
    /// The client's IP address.
    pub client: String,
    /// `""` for the null sender.
    pub sender: String,
    pub recipients: Vec<String>,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    /// Octets of the original.
    pub size: u64,
    /// Why it is kept: `sanitized`, `clean`, `on-error: ...`, `encrypted archive`.
    pub reason: String,
    /// The sanitiser's actions (the report's `actions`, a JSON array).
    pub actions: serde_json::Value,
}

/// An index row: the entry, its SHA-256, status and stored (compressed, encrypted) size.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    pub id: String,
    #[serde(serialize_with = "ser_time")]
    pub received_at: SystemTime,
    pub client: String,
    pub sender: String,
    pub recipients: Vec<String>,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    pub size: u64,
    pub reason: String,
    pub actions: serde_json::Value,
    /// SHA-256 of the original, lower-case hex.
    pub sha256: String,
    pub status: Status,
    /// Octets of the blob on disk.
    pub stored_size: u64,
}

impl Record {
    /// The entry part of the record.
    pub fn entry(&self) -> NewEntry {
        NewEntry {
            id: self.id.clone(),
            received_at: self.received_at,
            client: self.client.clone(),
            sender: self.sender.clone(),
            recipients: self.recipients.clone(),
            subject: self.subject.clone(),
            message_id: self.message_id.clone(),
            size: self.size,
            reason: self.reason.clone(),
            actions: self.actions.clone(),
        }
    }
}

/// One release of an original (the audit trail).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Release {
    #[serde(serialize_with = "ser_time")]
    pub at: SystemTime,
    /// Who released it (an administrator's name).
    pub by: String,
    /// The recipients it was queued for.
    pub to: Vec<String>,
    /// The spool id of the queued copy.
    pub queued_as: String,
}

/// A search of the index. Every criterion given must match; results newest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Search {
    /// Received at or after.
    pub since: Option<SystemTime>,
    /// Substring of the envelope sender, case-insensitive.
    pub sender: Option<String>,
    /// Substring of one envelope recipient, case-insensitive.
    pub rcpt: Option<String>,
    /// Substring of the subject, case-insensitive.
    pub subject: Option<String>,
    pub status: Option<Status>,
    /// At most this many results; 0 means no limit.
    pub limit: usize,
}

/// The quarantine: blob store plus index. Cheap to clone (an `Arc` inside); `Send + Sync`.
#[derive(Clone)]
pub struct Quarantine {
    inner: Arc<Inner>,
}

struct Inner {
    store: store::BlobStore,
    index: Box<dyn Index>,
    retention: Duration,
    /// When [`Quarantine::recover_orphans`] last looked (it then looks only at newer blobs).
    last_recovery: std::sync::Mutex<Option<SystemTime>>,
}

/// Blobs younger than this may have their index row being written right now: orphan
/// recovery leaves them to its next run.
const ORPHAN_GRACE: Duration = Duration::from_secs(60);

impl std::fmt::Debug for Quarantine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quarantine")
            .field("dir", &self.inner.store.dir())
            .field("index", &self.inner.index.describe())
            .finish()
    }
}

impl Quarantine {
    /// Opens the quarantine of `cfg`: creates the directory, the key (if absent) and the index
    /// schema (if absent), and checks the key against the index's key check (or, for a new
    /// index, against an existing blob). A wrong key is [`QuarantineError::WrongKey`].
    ///
    /// With `database = "postgres://..."` this connects: call it outside a tokio runtime or
    /// from `spawn_blocking`.
    pub fn open(cfg: &QuarantineConfig) -> Result<Quarantine, QuarantineError> {
        let store =
            store::BlobStore::open(&cfg.dir, cfg.key_file.as_deref(), cfg.compression_level)?;
        let index: Box<dyn Index> = if cfg.database.trim().is_empty() {
            Box::new(SqliteIndex::open(&cfg.dir.join("index.sqlite"))?)
        } else {
            Box::new(PostgresIndex::connect(cfg.database.trim())?)
        };
        let q = Quarantine::with_index(store, index, cfg.retention.0)?;
        tracing::info!(
            dir = %cfg.dir.display(),
            index = %q.inner.index.describe(),
            "quarantine open"
        );
        Ok(q)
    }

    fn with_index(
        store: store::BlobStore,
        index: Box<dyn Index>,
        retention: Duration,
    ) -> Result<Quarantine, QuarantineError> {
        match index.stored_key_check()? {
            Some(value) => store.verify_key_check(&value)?,
            None => {
                // A new index, perhaps beside existing blobs (the index was lost or moved):
                // the key must open what is there before its check value is stored, or a
                // wrong key would make itself the right one.
                store.check_key_against_blobs()?;
                let check = store.key_check_value()?;
                let stored = index.key_check(&check)?;
                if stored != check {
                    // Another process stored its check value first.
                    store.verify_key_check(&stored)?;
                }
            }
        }
        Ok(Quarantine {
            inner: Arc::new(Inner {
                store,
                index,
                retention,
                last_recovery: std::sync::Mutex::new(None),
            }),
        })
    }

    /// The quarantine directory.
    pub fn dir(&self) -> &Path {
        self.inner.store.dir()
    }

    /// Stores `original` (zstd, then AES-256-GCM) durably and indexes it. Returns after fsync
    /// and the index commit. Keeping an id again (a retried commit) replaces nothing and is not
    /// an error.
    pub fn keep(&self, entry: &NewEntry, original: &Path) -> Result<(), QuarantineError> {
        check_id(&entry.id)?;
        let stored = self.inner.store.put(entry, original)?;
        self.inner.index.insert(&stored.record(entry))
    }

    /// Searches the index, newest first.
    pub fn search(&self, q: &Search) -> Result<Vec<Record>, QuarantineError> {
        self.inner.index.search(q)
    }

    /// The index row of `id`.
    pub fn get(&self, id: &str) -> Result<Option<Record>, QuarantineError> {
        check_id(id)?;
        self.inner.index.get(id)
    }

    /// The original, decrypted and decompressed, SHA-256 checked.
    pub fn original(&self, id: &str) -> Result<Vec<u8>, QuarantineError> {
        let rec = self
            .get(id)?
            .ok_or_else(|| QuarantineError::NotFound(id.to_string()))?;
        if rec.status == Status::Purged {
            return Err(QuarantineError::Purged(id.to_string()));
        }
        let opened = self.inner.store.get(id)?;
        if opened.sha256 != rec.sha256 {
            return Err(QuarantineError::Corrupt {
                id: id.to_string(),
                why: format!(
                    "SHA-256 {} does not match the index's {}",
                    opened.sha256, rec.sha256
                ),
            });
        }
        Ok(opened.original)
    }

    /// The audit trail of `id`, oldest first.
    pub fn releases(&self, id: &str) -> Result<Vec<Release>, QuarantineError> {
        check_id(id)?;
        self.inner.index.releases(id)
    }

    /// Queues the original for delivery through the spool at `spool_dir` (the running
    /// server's queue manager picks it up at its next rescan) to `to` (None: the original
    /// recipients), with `X-Mugaika-Released: by BY at DATE; quarantine id ID` prepended,
    /// records the release in the audit trail and sets status released. Returns the new queue
    /// id. Refuses purged entries.
    pub fn release(
        &self,
        id: &str,
        spool_dir: &Path,
        to: Option<&[String]>,
        by: &str,
    ) -> Result<String, QuarantineError> {
        release::release(self, id, spool_dir, to, by)
    }

    /// PPAP: opens the password-protected zips of `id` with `password`, disarms their members
    /// by the recipients' policy and queues a new clean message (see [`unlock::unlock`]).
    pub fn unlock(
        &self,
        id: &str,
        password: &[u8],
        spool_dir: &Path,
        cfg: &crate::config::Config,
        to: Option<&[String]>,
        by: &str,
    ) -> Result<unlock::UnlockOutcome, unlock::UnlockError> {
        unlock::unlock(self, id, password, spool_dir, cfg, to, by)
    }

    /// Retention: blobs of entries received before `now - retention` are deleted and their
    /// rows set to purged (rows are kept for the audit trail). Also re-indexes orphan blobs and
    /// removes temporary files left by a crash. Returns the number of entries purged.
    pub fn purge(&self, now: SystemTime) -> Result<usize, QuarantineError> {
        if let Err(e) = self.recover_orphans() {
            tracing::warn!(error = %e, "quarantine: orphan recovery failed");
        }
        let cutoff = now.checked_sub(self.inner.retention).unwrap_or(UNIX_EPOCH);
        let expired = self.inner.index.expired(cutoff)?;
        let mut purged = 0;
        for id in &expired {
            self.inner.store.remove(id)?;
            self.inner.index.set_status(id, Status::Purged)?;
            purged += 1;
        }
        if purged > 0 {
            self.inner.store.sync()?;
            tracing::info!(purged, "quarantine: retention purge");
        }
        Ok(purged)
    }

    /// Puts blobs that have no index row (a crash between the blob's rename and the row's
    /// commit) back in the index from the metadata inside them, as `held`, and removes
    /// temporary blobs older than an hour. The first call in a process looks at every blob,
    /// later ones only at blobs written since the previous call (less a margin); blobs younger
    /// than a minute are left for the next call (their row may be being written). Returns how
    /// many were re-indexed.
    pub fn recover_orphans(&self) -> Result<usize, QuarantineError> {
        self.recover_orphans_with_grace(ORPHAN_GRACE)
    }

    /// [`Quarantine::recover_orphans`] with blobs younger than `grace` left alone (tests use
    /// zero after killing a writer; a live relay must keep the default).
    pub fn recover_orphans_with_grace(&self, grace: Duration) -> Result<usize, QuarantineError> {
        self.inner
            .store
            .remove_stale_temporaries(Duration::from_secs(3600))?;
        let started = SystemTime::now();
        let since = self
            .inner
            .last_recovery
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .and_then(|t| t.checked_sub(Duration::from_secs(3600)));
        let before = started.checked_sub(grace).unwrap_or(UNIX_EPOCH);
        let mut n = 0;
        let candidates = self.inner.store.ids_modified(since, before)?;
        for id in self.inner.index.missing(&candidates)? {
            match self.inner.store.get(&id) {
                Ok(opened) => {
                    let rec = opened.stored.record(&opened.entry);
                    self.inner.index.insert(&rec)?;
                    tracing::warn!(
                        id,
                        "quarantine: orphan blob re-indexed (a crash came before its index row)"
                    );
                    n += 1;
                }
                Err(e) => {
                    tracing::error!(id, error = %e, "quarantine: unreadable orphan blob left")
                }
            }
        }
        *self
            .inner
            .last_recovery
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(before);
        Ok(n)
    }

    /// Issue 7 (first contact): whether mail from `sender` (case-insensitive, exact) was
    /// received since `since`.
    pub fn sender_seen_since(
        &self,
        sender: &str,
        since: SystemTime,
    ) -> Result<bool, QuarantineError> {
        self.inner.index.sender_seen_since(sender, since)
    }

    pub(crate) fn index(&self) -> &dyn Index {
        self.inner.index.as_ref()
    }
}

/// Ids are the spool's: ASCII letters and digits only, so an id from a command line or a URL
/// can never name a path outside the quarantine.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn check_id(id: &str) -> Result<(), QuarantineError> {
    if valid_id(id) {
        Ok(())
    } else {
        Err(QuarantineError::BadId(id.to_string()))
    }
}

/// Milliseconds since 1970 (0 before it), as stored in the index.
pub(crate) fn to_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(crate) fn from_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// `2026-11-22T03:04:05Z` (UTC, seconds).
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (y, m, d) = civil_from_days(secs / 86_400);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn ser_time<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*t))
}

/// Days since 1970-01-01 to (year, month, day): Howard Hinnant's algorithm.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// (year, month, day) to days since 1970-01-01, None before 1970 or for an impossible date.
pub(crate) fn days_from_civil(y: u64, m: u64, d: u64) -> Option<u64> {
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || !(1970..=9999).contains(&y) {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    // Reject 2026-02-31 and the like: the round trip must give the same date back.
    let (y2, m2, d2) = civil_from_days(days);
    let y_orig = if m <= 2 { y + 1 } else { y };
    (y2 == y_orig && m2 == m && d2 == d).then_some(days)
}

/// Why an accepted message's original is kept, from its sanitising report: `on-error: WHY`
/// for a notice-only message, `encrypted archive` when an attachment was held by
/// `encrypted_archive = "quarantine"`, else the report's status (`sanitized`, `clean`).
pub fn kept_reason(report: &crate::pipeline::Report) -> String {
    reason_of(
        &report.status,
        report.actions.iter().map(|a| a.reason.as_str()),
    )
}

fn reason_of<'a>(status: &str, reasons: impl Iterator<Item = &'a str> + Clone) -> String {
    if status == "notice-only" {
        let why = reasons
            .clone()
            .filter(|r| r.contains("could not be sanitised"))
            .last()
            .unwrap_or("could not be sanitised");
        return format!("on-error: {why}");
    }
    let held = reasons.clone().any(|r| {
        r.contains("encrypted_archive = quarantine") || r.contains("held in the quarantine")
    });
    if held {
        "encrypted archive".into()
    } else {
        status.to_string()
    }
}

/// `serve`'s retention task: [`Quarantine::purge`] at once, then every `interval`, each run on
/// a blocking thread (the index may be PostgreSQL). Runs until aborted.
pub async fn purge_every(q: Quarantine, interval: Duration) {
    let mut tick = tokio::time::interval(interval.max(Duration::from_secs(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let q2 = q.clone();
        match tokio::task::spawn_blocking(move || q2.purge(SystemTime::now())).await {
            Ok(Ok(n)) => tracing::debug!(purged = n, "quarantine: purge run"),
            Ok(Err(e)) => tracing::error!(error = %e, "quarantine: purge failed"),
            Err(e) => tracing::error!(error = %e, "quarantine: purge task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons() {
        let r = |status: &str, reasons: &[&str]| reason_of(status, reasons.iter().copied());
        assert_eq!(r("sanitized", &["macros removed"]), "sanitized");
        assert_eq!(r("clean", &[]), "clean");
        assert_eq!(
            r("sanitized", &["a.zip: password-protected, cannot be inspected (encrypted_archive = quarantine); the original is held in the quarantine (ask the administrator)"]),
            "encrypted archive"
        );
        assert_eq!(
            r(
                "notice-only",
                &["message could not be sanitised (timed out after 60s); notice only"]
            ),
            "on-error: message could not be sanitised (timed out after 60s); notice only"
        );
    }

    #[test]
    fn dates() {
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_751_339_045)),
            "2025-07-01T03:04:05Z"
        );
        assert_eq!(days_from_civil(2025, 7, 1), Some(1_751_339_045 / 86_400));
        assert_eq!(days_from_civil(2024, 2, 29), Some(19_782));
        assert_eq!(days_from_civil(2025, 2, 29), None);
        assert_eq!(days_from_civil(1969, 12, 31), None);
        assert_eq!(
            from_ms(to_ms(UNIX_EPOCH + Duration::from_millis(1234))),
            UNIX_EPOCH + Duration::from_millis(1234)
        );
    }
}
