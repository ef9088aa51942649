//! The quarantine index: the [`Index`] trait and its SQLite implementation.
//!
//! Tables (the same in PostgreSQL, see [`super::postgres`]):
//!
//! ```text
//! messages  id (key), received_at (Unix ms), client, sender, sender_lc, recipients (JSON),
//!           subject, subject_lc, message_id, size, sha256, actions (JSON), reason, status,
//!           stored_size
//! rcpts     id, rcpt_lc            one row per recipient, for the recipient search
//! releases  seq, id, at (Unix ms), by, to (JSON), queued_as      the audit trail
//! meta      key, value             "keycheck": the key check value (see store.rs)
//! ```
//!
//! Searches are case-insensitive by comparing lower-cased copies made in Rust (`*_lc`), so
//! both databases agree on non-ASCII text, and by `instr`/`strpos` rather than `LIKE`, so an
//! administrator's `%` or `_` is a plain character.
//!
//! SQLite: `dir/index.sqlite` in WAL mode with `synchronous=FULL` (a committed row survives a
//! power cut) and a busy timeout, so `mugaika quarantine` and `serve` share it.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use rusqlite::{params, Connection, OptionalExtension};

use super::{from_ms, to_ms, QuarantineError, Record, Release, Search, Status};

/// The index of a quarantine. Implementations are `Send + Sync`; every method may block.
pub trait Index: Send + Sync {
    /// For logs: which database.
    fn describe(&self) -> String;
    /// The stored key check value, if any.
    fn stored_key_check(&self) -> Result<Option<String>, QuarantineError>;
    /// Stores `candidate` as the key check if there is none; returns the stored one (equal to
    /// `candidate` when it was just stored).
    fn key_check(&self, candidate: &str) -> Result<String, QuarantineError>;
    /// Adds a row (and its recipients); an existing id is left as it is.
    fn insert(&self, rec: &Record) -> Result<(), QuarantineError>;
    fn get(&self, id: &str) -> Result<Option<Record>, QuarantineError>;
    /// Those of `ids` that have no row (orphan recovery).
    fn missing(&self, ids: &[String]) -> Result<Vec<String>, QuarantineError> {
        let mut out = Vec::new();
        for id in ids {
            if self.get(id)?.is_none() {
                out.push(id.clone());
            }
        }
        Ok(out)
    }
    fn search(&self, q: &Search) -> Result<Vec<Record>, QuarantineError>;
    fn set_status(&self, id: &str, status: Status) -> Result<(), QuarantineError>;
    /// Records a release and sets status released, in one transaction; refuses a purged or
    /// unknown entry. Returns the release's sequence number (for [`Index::undo_release`]).
    fn add_release(&self, id: &str, r: &Release) -> Result<i64, QuarantineError>;
    /// Removes release `seq` of `id` (its queueing failed); the status goes back to held if no
    /// other release remains.
    fn undo_release(&self, id: &str, seq: i64) -> Result<(), QuarantineError>;
    /// The releases of `id`, oldest first.
    fn releases(&self, id: &str) -> Result<Vec<Release>, QuarantineError>;
    /// Ids not yet purged received before `before`.
    fn expired(&self, before: SystemTime) -> Result<Vec<String>, QuarantineError>;
    /// Whether a message from `sender` (case-insensitive) was received at or after `since`.
    fn sender_seen_since(&self, sender: &str, since: SystemTime) -> Result<bool, QuarantineError>;
}

/// A query parameter, for the SQL shared by both backends.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Param {
    Int(i64),
    Text(String),
}

/// The columns of `messages`, in the order [`Record`]s are read.
pub(crate) const COLUMNS: &str = "id, received_at, client, sender, recipients, subject, \
     message_id, size, sha256, actions, reason, status, stored_size";

/// `SELECT ... WHERE ... ORDER BY ... LIMIT` for `q`; `ph(n)` writes placeholder n (1-based),
/// `contains(column, placeholder)` a substring test.
pub(crate) fn search_sql(
    q: &Search,
    ph: fn(usize) -> String,
    contains: fn(&str, &str) -> String,
) -> (String, Vec<Param>) {
    let mut sql = format!("SELECT {COLUMNS} FROM messages m WHERE 1=1");
    let mut params = Vec::new();
    let next = |p: Param, params: &mut Vec<Param>| {
        params.push(p);
        ph(params.len())
    };
    if let Some(t) = q.since {
        let p = next(Param::Int(to_ms(t)), &mut params);
        sql += &format!(" AND received_at >= {p}");
    }
    if let Some(s) = q.sender.as_deref().filter(|s| !s.is_empty()) {
        let p = next(Param::Text(s.to_lowercase()), &mut params);
        sql += &format!(" AND {}", contains("sender_lc", &p));
    }
    if let Some(s) = q.rcpt.as_deref().filter(|s| !s.is_empty()) {
        let p = next(Param::Text(s.to_lowercase()), &mut params);
        sql += &format!(
            " AND EXISTS (SELECT 1 FROM rcpts r WHERE r.id = m.id AND {})",
            contains("r.rcpt_lc", &p)
        );
    }
    if let Some(s) = q.subject.as_deref().filter(|s| !s.is_empty()) {
        let p = next(Param::Text(s.to_lowercase()), &mut params);
        sql += &format!(" AND {}", contains("subject_lc", &p));
    }
    if let Some(s) = q.status {
        let p = next(Param::Text(s.as_str().into()), &mut params);
        sql += &format!(" AND status = {p}");
    }
    sql += " ORDER BY received_at DESC, id DESC";
    if q.limit > 0 {
        let p = next(
            Param::Int(i64::try_from(q.limit).unwrap_or(i64::MAX)),
            &mut params,
        );
        sql += &format!(" LIMIT {p}");
    }
    (sql, params)
}

/// A row's raw values, as both backends read them.
pub(crate) struct RawRow {
    pub id: String,
    pub received_at: i64,
    pub client: String,
    pub sender: String,
    pub recipients: String,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    pub size: i64,
    pub sha256: String,
    pub actions: String,
    pub reason: String,
    pub status: String,
    pub stored_size: i64,
}

impl RawRow {
    pub(crate) fn into_record(self) -> Result<Record, QuarantineError> {
        let bad = |what: &str| QuarantineError::Index(format!("row {}: bad {what}", self.id));
        let recipients: Vec<String> =
            serde_json::from_str(&self.recipients).map_err(|_| bad("recipients"))?;
        let actions: serde_json::Value =
            serde_json::from_str(&self.actions).map_err(|_| bad("actions"))?;
        let status = Status::parse(&self.status).ok_or_else(|| bad("status"))?;
        Ok(Record {
            received_at: from_ms(self.received_at),
            client: self.client,
            sender: self.sender,
            recipients,
            subject: self.subject,
            message_id: self.message_id,
            size: u64::try_from(self.size).unwrap_or(0),
            reason: self.reason,
            actions,
            sha256: self.sha256,
            status,
            stored_size: u64::try_from(self.stored_size).unwrap_or(0),
            id: self.id,
        })
    }
}

pub(crate) fn json(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

pub(crate) fn parse_to(s: &str) -> Vec<String> {
    serde_json::from_str(s).unwrap_or_default()
}

/// Lower-cased recipients, without duplicates.
pub(crate) fn rcpts_lc(rec: &Record) -> Vec<String> {
    let mut v: Vec<String> = rec.recipients.iter().map(|r| r.to_lowercase()).collect();
    v.sort();
    v.dedup();
    v
}

/// The SQLite index.
pub struct SqliteIndex {
    path: String,
    conn: Mutex<Connection>,
}

const SQLITE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    received_at INTEGER NOT NULL,
    client TEXT NOT NULL,
    sender TEXT NOT NULL,
    sender_lc TEXT NOT NULL,
    recipients TEXT NOT NULL,
    subject TEXT,
    subject_lc TEXT,
    message_id TEXT,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    actions TEXT NOT NULL,
    reason TEXT NOT NULL,
    status TEXT NOT NULL,
    stored_size INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_received ON messages (received_at);
CREATE INDEX IF NOT EXISTS messages_sender ON messages (sender_lc, received_at);
CREATE TABLE IF NOT EXISTS rcpts (
    id TEXT NOT NULL,
    rcpt_lc TEXT NOT NULL,
    PRIMARY KEY (id, rcpt_lc)
);
CREATE INDEX IF NOT EXISTS rcpts_rcpt ON rcpts (rcpt_lc);
CREATE TABLE IF NOT EXISTS releases (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    at INTEGER NOT NULL,
    \"by\" TEXT NOT NULL,
    \"to\" TEXT NOT NULL,
    queued_as TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS releases_id ON releases (id);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

fn sq(e: rusqlite::Error) -> QuarantineError {
    QuarantineError::Index(format!("sqlite: {e}"))
}

fn sqlite_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
    Ok(RawRow {
        id: r.get(0)?,
        received_at: r.get(1)?,
        client: r.get(2)?,
        sender: r.get(3)?,
        recipients: r.get(4)?,
        subject: r.get(5)?,
        message_id: r.get(6)?,
        size: r.get(7)?,
        sha256: r.get(8)?,
        actions: r.get(9)?,
        reason: r.get(10)?,
        status: r.get(11)?,
        stored_size: r.get(12)?,
    })
}

impl SqliteIndex {
    /// Opens (creating) the database at `path`, in WAL mode with `synchronous=FULL`.
    pub fn open(path: &Path) -> Result<SqliteIndex, QuarantineError> {
        let conn = Connection::open(path).map_err(sq)?;
        conn.busy_timeout(Duration::from_secs(30)).map_err(sq)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(sq)?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(mode, "quarantine: SQLite index not in WAL mode");
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sq)?;
        conn.execute_batch(SQLITE_SCHEMA).map_err(sq)?;
        Ok(SqliteIndex {
            path: path.display().to_string(),
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a transaction half-applied (rusqlite
        // rolls back on drop), so the connection is still good.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn to_sql(p: &Param) -> rusqlite::types::Value {
    match p {
        Param::Int(i) => rusqlite::types::Value::Integer(*i),
        Param::Text(s) => rusqlite::types::Value::Text(s.clone()),
    }
}

impl Index for SqliteIndex {
    fn describe(&self) -> String {
        format!("sqlite {}", self.path)
    }

    fn stored_key_check(&self) -> Result<Option<String>, QuarantineError> {
        self.conn()
            .query_row("SELECT value FROM meta WHERE key = 'keycheck'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(sq)
    }

    fn key_check(&self, candidate: &str) -> Result<String, QuarantineError> {
        let c = self.conn();
        c.execute(
            "INSERT INTO meta (key, value) VALUES ('keycheck', ?1) ON CONFLICT(key) DO NOTHING",
            params![candidate],
        )
        .map_err(sq)?;
        c.query_row("SELECT value FROM meta WHERE key = 'keycheck'", [], |r| {
            r.get(0)
        })
        .map_err(sq)
    }

    fn insert(&self, rec: &Record) -> Result<(), QuarantineError> {
        let mut c = self.conn();
        let tx = c.transaction().map_err(sq)?;
        let added = tx
            .execute(
                "INSERT INTO messages (id, received_at, client, sender, sender_lc, recipients, \
                 subject, subject_lc, message_id, size, sha256, actions, reason, status, \
                 stored_size) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, \
                 ?14, ?15) ON CONFLICT(id) DO NOTHING",
                params![
                    rec.id,
                    to_ms(rec.received_at),
                    rec.client,
                    rec.sender,
                    rec.sender.to_lowercase(),
                    json(&rec.recipients),
                    rec.subject,
                    rec.subject.as_ref().map(|s| s.to_lowercase()),
                    rec.message_id,
                    i64::try_from(rec.size).unwrap_or(i64::MAX),
                    rec.sha256,
                    json(&rec.actions),
                    rec.reason,
                    rec.status.as_str(),
                    i64::try_from(rec.stored_size).unwrap_or(i64::MAX),
                ],
            )
            .map_err(sq)?;
        if added > 0 {
            for r in rcpts_lc(rec) {
                tx.execute(
                    "INSERT INTO rcpts (id, rcpt_lc) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                    params![rec.id, r],
                )
                .map_err(sq)?;
            }
        }
        tx.commit().map_err(sq)
    }

    fn get(&self, id: &str) -> Result<Option<Record>, QuarantineError> {
        let c = self.conn();
        let raw = c
            .query_row(
                &format!("SELECT {COLUMNS} FROM messages WHERE id = ?1"),
                params![id],
                sqlite_row,
            )
            .optional()
            .map_err(sq)?;
        raw.map(RawRow::into_record).transpose()
    }

    fn search(&self, q: &Search) -> Result<Vec<Record>, QuarantineError> {
        let (sql, ps) = search_sql(
            q,
            |n| format!("?{n}"),
            |col, p| format!("instr({col}, {p}) > 0"),
        );
        let c = self.conn();
        let mut st = c.prepare(&sql).map_err(sq)?;
        let rows = st
            .query_map(
                rusqlite::params_from_iter(ps.iter().map(to_sql)),
                sqlite_row,
            )
            .map_err(sq)?;
        let mut out = Vec::new();
        for r in rows {
            out.push(r.map_err(sq)?.into_record()?);
        }
        Ok(out)
    }

    fn set_status(&self, id: &str, status: Status) -> Result<(), QuarantineError> {
        self.conn()
            .execute(
                "UPDATE messages SET status = ?2 WHERE id = ?1",
                params![id, status.as_str()],
            )
            .map_err(sq)?;
        Ok(())
    }

    fn add_release(&self, id: &str, r: &Release) -> Result<i64, QuarantineError> {
        let mut c = self.conn();
        // IMMEDIATE: the status read and the writes are one step against a concurrent purge.
        let tx = c
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sq)?;
        let status: Option<String> = tx
            .query_row(
                "SELECT status FROM messages WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()
            .map_err(sq)?;
        match status.as_deref().and_then(Status::parse) {
            None => return Err(QuarantineError::NotFound(id.into())),
            Some(Status::Purged) => return Err(QuarantineError::Purged(id.into())),
            Some(_) => {}
        }
        tx.execute(
            "INSERT INTO releases (id, at, \"by\", \"to\", queued_as) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, to_ms(r.at), r.by, json(&r.to), r.queued_as],
        )
        .map_err(sq)?;
        let seq = tx.last_insert_rowid();
        tx.execute(
            "UPDATE messages SET status = 'released' WHERE id = ?1",
            params![id],
        )
        .map_err(sq)?;
        tx.commit().map_err(sq)?;
        Ok(seq)
    }

    fn undo_release(&self, id: &str, seq: i64) -> Result<(), QuarantineError> {
        let mut c = self.conn();
        let tx = c.transaction().map_err(sq)?;
        tx.execute(
            "DELETE FROM releases WHERE seq = ?1 AND id = ?2",
            params![seq, id],
        )
        .map_err(sq)?;
        tx.execute(
            "UPDATE messages SET status = 'held' WHERE id = ?1 AND status = 'released' \
             AND NOT EXISTS (SELECT 1 FROM releases WHERE id = ?1)",
            params![id],
        )
        .map_err(sq)?;
        tx.commit().map_err(sq)
    }

    fn releases(&self, id: &str) -> Result<Vec<Release>, QuarantineError> {
        let c = self.conn();
        let mut st = c
            .prepare(
                "SELECT at, \"by\", \"to\", queued_as FROM releases WHERE id = ?1 ORDER BY seq",
            )
            .map_err(sq)?;
        let rows = st
            .query_map(params![id], |r| {
                Ok(Release {
                    at: from_ms(r.get(0)?),
                    by: r.get(1)?,
                    to: parse_to(&r.get::<_, String>(2)?),
                    queued_as: r.get(3)?,
                })
            })
            .map_err(sq)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(sq)
    }

    fn expired(&self, before: SystemTime) -> Result<Vec<String>, QuarantineError> {
        let c = self.conn();
        let mut st = c
            .prepare(
                "SELECT id FROM messages WHERE received_at < ?1 AND status <> 'purged' \
                 ORDER BY received_at",
            )
            .map_err(sq)?;
        let rows = st
            .query_map(params![to_ms(before)], |r| r.get(0))
            .map_err(sq)?;
        rows.collect::<Result<Vec<String>, _>>().map_err(sq)
    }

    fn sender_seen_since(&self, sender: &str, since: SystemTime) -> Result<bool, QuarantineError> {
        let c = self.conn();
        let found: Option<i64> = c
            .query_row(
                "SELECT 1 FROM messages WHERE sender_lc = ?1 AND received_at >= ?2 LIMIT 1",
                params![sender.to_lowercase(), to_ms(since)],
                |r| r.get(0),
            )
            .optional()
            .map_err(sq)?;
        Ok(found.is_some())
    }
}
