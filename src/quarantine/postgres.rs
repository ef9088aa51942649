//! The PostgreSQL index, for several relays sharing one quarantine: each relay points
//! `quarantine.database` at the same database and `quarantine.dir` at the same (shared)
//! directory, where the blobs and the key are. The tables are those of [`super::index`].
//!
//! The `postgres` crate is synchronous: it runs its own small tokio runtime inside, and
//! panics when called on a tokio worker thread. Every method of [`PostgresIndex`] (and so of a
//! [`super::Quarantine`] with this index) must be called from a plain thread or from
//! `tokio::task::spawn_blocking`. Dropping the last handle inside a runtime is handled here
//! (the connection is closed on a plain thread).
//!
//! Schema creation takes a transaction-scoped advisory lock, because two processes running
//! `CREATE TABLE IF NOT EXISTS` at once can fail on PostgreSQL's catalogue unique index.
//!
//! A connection found closed (the server restarted) is reopened at the next call; a call that
//! fails mid-way returns its error (it is not retried: a release must not be recorded twice).
//! Connections are made without TLS: keep the database on loopback or a private network.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use postgres::types::ToSql;
use postgres::{Client, NoTls};

use super::index::{json, parse_to, rcpts_lc, search_sql, Index, Param, RawRow, COLUMNS};
use super::{from_ms, to_ms, QuarantineError, Record, Release, Search, Status};

/// Arbitrary constant: the advisory lock taken while creating the schema.
const SCHEMA_LOCK: i64 = 0x6d75_6761_696b_6151;

const PG_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    received_at BIGINT NOT NULL,
    client TEXT NOT NULL,
    sender TEXT NOT NULL,
    sender_lc TEXT NOT NULL,
    recipients TEXT NOT NULL,
    subject TEXT,
    subject_lc TEXT,
    message_id TEXT,
    size BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    actions TEXT NOT NULL,
    reason TEXT NOT NULL,
    status TEXT NOT NULL,
    stored_size BIGINT NOT NULL
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
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL,
    at BIGINT NOT NULL,
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

/// The PostgreSQL index. Blocking: never call it on a tokio worker thread (see the module
/// documentation).
pub struct PostgresIndex {
    url: String,
    config: postgres::Config,
    client: Mutex<Option<Client>>,
}

/// Connection attempts give up after this unless the URL says otherwise (`connect_timeout`):
/// an unreachable database must turn into a temporary SMTP failure, not a session that hangs.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// TCP user timeout: unacknowledged data (a database host that vanished) fails the call.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

fn pg(e: postgres::Error) -> QuarantineError {
    // The error's own text is often just "db error": the server's message is its source.
    match std::error::Error::source(&e) {
        Some(src) => QuarantineError::Index(format!("postgres: {e}: {src}")),
        None => QuarantineError::Index(format!("postgres: {e}")),
    }
}

/// The URL without its password, for logs.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(connection string)".into();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}@{host}")
        }
        None => format!("{scheme}://{rest}"),
    }
}

fn pg_row(r: &postgres::Row) -> Result<RawRow, postgres::Error> {
    Ok(RawRow {
        id: r.try_get(0)?,
        received_at: r.try_get(1)?,
        client: r.try_get(2)?,
        sender: r.try_get(3)?,
        recipients: r.try_get(4)?,
        subject: r.try_get(5)?,
        message_id: r.try_get(6)?,
        size: r.try_get(7)?,
        sha256: r.try_get(8)?,
        actions: r.try_get(9)?,
        reason: r.try_get(10)?,
        status: r.try_get(11)?,
        stored_size: r.try_get(12)?,
    })
}

impl PostgresIndex {
    /// Connects to `url` (`postgres://user:password@host/db`, options such as
    /// `?options=-csearch_path%3Dmyschema` allowed) and creates the schema if absent.
    pub fn connect(url: &str) -> Result<PostgresIndex, QuarantineError> {
        let mut config: postgres::Config = url
            .parse()
            .map_err(|e| QuarantineError::Index(format!("postgres {}: {e}", redact(url))))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(TCP_USER_TIMEOUT);
        }
        config.keepalives(true);
        let idx = PostgresIndex {
            url: url.to_string(),
            config,
            client: Mutex::new(None),
        };
        idx.with(|c| {
            let mut tx = c.transaction()?;
            tx.query("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])?;
            tx.batch_execute(PG_SCHEMA)?;
            tx.commit()
        })?;
        Ok(idx)
    }

    /// Runs `f` on the connection, (re)connecting first when there is none or it was closed.
    /// Not retried: for statements that must not run twice (a release's audit row).
    fn with<T>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, QuarantineError> {
        self.attempt(f).map_err(|(e, _)| e)
    }

    /// [`PostgresIndex::with`] for idempotent work (reads, `ON CONFLICT DO NOTHING` inserts,
    /// status updates): when the connection turns out dead (the server restarted, a
    /// failover), tried once more on a new one, so that a keep, and the 250 waiting for it,
    /// survives the first call after a database restart.
    fn with_retry<T>(
        &self,
        f: impl Fn(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, QuarantineError> {
        match self.attempt(&f) {
            Err((e, true)) => {
                tracing::warn!(error = %e, "quarantine: PostgreSQL connection lost, reconnecting");
                self.attempt(&f).map_err(|(e, _)| e)
            }
            r => r.map_err(|(e, _)| e),
        }
    }

    /// One try; the error says whether the connection was dropped (worth a retry).
    fn attempt<T>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, (QuarantineError, bool)> {
        let mut guard = self.client.lock().unwrap_or_else(|e| e.into_inner());
        if guard.as_ref().is_none_or(|c| c.is_closed()) {
            let c = self.config.connect(NoTls).map_err(|e| {
                let why = match pg(e) {
                    QuarantineError::Index(s) => s,
                    other => other.to_string(),
                };
                (
                    QuarantineError::Index(format!("{why} ({})", redact(&self.url))),
                    false,
                )
            })?;
            *guard = Some(c);
        }
        let Some(client) = guard.as_mut() else {
            return Err((
                QuarantineError::Index("postgres: no connection".into()),
                false,
            ));
        };
        let r = f(client);
        let mut dropped = false;
        if let Err(e) = &r {
            // Anything but an ordinary statement error (a FATAL from the server ending the
            // session, an I/O or protocol error) leaves a connection not worth keeping: the
            // next call opens a new one.
            let statement_error = e
                .as_db_error()
                .is_some_and(|d| !matches!(d.severity(), "FATAL" | "PANIC"));
            if client.is_closed() || e.is_closed() || !statement_error {
                *guard = None;
                dropped = true;
            }
        }
        r.map_err(|e| (pg(e), dropped))
    }
}

impl Drop for PostgresIndex {
    fn drop(&mut self) {
        let client = self
            .client
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(client) = client {
            // Closing blocks on the crate's own runtime, which panics inside another runtime.
            if tokio::runtime::Handle::try_current().is_ok() {
                let _ = std::thread::Builder::new()
                    .name("mugaika-pg-close".into())
                    .spawn(move || drop(client));
            } else {
                drop(client);
            }
        }
    }
}

fn to_pg(p: &Param) -> Box<dyn ToSql + Sync> {
    match p {
        Param::Int(i) => Box::new(*i),
        Param::Text(s) => Box::new(s.clone()),
    }
}

impl Index for PostgresIndex {
    fn describe(&self) -> String {
        format!("postgres {}", redact(&self.url))
    }

    fn stored_key_check(&self) -> Result<Option<String>, QuarantineError> {
        self.with_retry(|c| {
            c.query_opt("SELECT value FROM meta WHERE key = 'keycheck'", &[])?
                .map(|r| r.try_get(0))
                .transpose()
        })
    }

    fn key_check(&self, candidate: &str) -> Result<String, QuarantineError> {
        self.with_retry(|c| {
            c.execute(
                "INSERT INTO meta (key, value) VALUES ('keycheck', $1) ON CONFLICT (key) \
                 DO NOTHING",
                &[&candidate],
            )?;
            c.query_one("SELECT value FROM meta WHERE key = 'keycheck'", &[])?
                .try_get(0)
        })
    }

    fn insert(&self, rec: &Record) -> Result<(), QuarantineError> {
        let received = to_ms(rec.received_at);
        let sender_lc = rec.sender.to_lowercase();
        let recipients = json(&rec.recipients);
        let subject_lc = rec.subject.as_ref().map(|s| s.to_lowercase());
        let size = i64::try_from(rec.size).unwrap_or(i64::MAX);
        let actions = json(&rec.actions);
        let stored = i64::try_from(rec.stored_size).unwrap_or(i64::MAX);
        let rcpts = rcpts_lc(rec);
        self.with_retry(|c| {
            let mut tx = c.transaction()?;
            let added = tx.execute(
                "INSERT INTO messages (id, received_at, client, sender, sender_lc, recipients, \
                 subject, subject_lc, message_id, size, sha256, actions, reason, status, \
                 stored_size) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, \
                 $14, $15) ON CONFLICT (id) DO NOTHING",
                &[
                    &rec.id,
                    &received,
                    &rec.client,
                    &rec.sender,
                    &sender_lc,
                    &recipients,
                    &rec.subject,
                    &subject_lc,
                    &rec.message_id,
                    &size,
                    &rec.sha256,
                    &actions,
                    &rec.reason,
                    &rec.status.as_str(),
                    &stored,
                ],
            )?;
            if added > 0 {
                for r in &rcpts {
                    tx.execute(
                        "INSERT INTO rcpts (id, rcpt_lc) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                        &[&rec.id, r],
                    )?;
                }
            }
            tx.commit()
        })
    }

    fn get(&self, id: &str) -> Result<Option<Record>, QuarantineError> {
        let raw = self.with_retry(|c| {
            c.query_opt(
                &format!("SELECT {COLUMNS} FROM messages WHERE id = $1"),
                &[&id],
            )?
            .map(|r| pg_row(&r))
            .transpose()
        })?;
        raw.map(RawRow::into_record).transpose()
    }

    fn missing(&self, ids: &[String]) -> Result<Vec<String>, QuarantineError> {
        // One round trip per thousand ids instead of one per id: at start-up `serve` looks at
        // every blob.
        let mut out = Vec::new();
        for chunk in ids.chunks(1000) {
            let chunk: Vec<String> = chunk.to_vec();
            let found: std::collections::HashSet<String> = self.with_retry(|c| {
                c.query("SELECT id FROM messages WHERE id = ANY($1)", &[&chunk])?
                    .iter()
                    .map(|r| r.try_get(0))
                    .collect()
            })?;
            out.extend(chunk.into_iter().filter(|id| !found.contains(id)));
        }
        Ok(out)
    }

    fn search(&self, q: &Search) -> Result<Vec<Record>, QuarantineError> {
        let (sql, ps) = search_sql(
            q,
            |n| format!("${n}"),
            |col, p| format!("strpos({col}, {p}) > 0"),
        );
        let boxed: Vec<Box<dyn ToSql + Sync>> = ps.iter().map(to_pg).collect();
        let refs: Vec<&(dyn ToSql + Sync)> = boxed.iter().map(|b| b.as_ref()).collect();
        let raws = self.with_retry(|c| {
            c.query(&sql, &refs)?
                .iter()
                .map(pg_row)
                .collect::<Result<Vec<_>, _>>()
        })?;
        raws.into_iter().map(RawRow::into_record).collect()
    }

    fn set_status(&self, id: &str, status: Status) -> Result<(), QuarantineError> {
        self.with_retry(|c| {
            c.execute(
                "UPDATE messages SET status = $2 WHERE id = $1",
                &[&id, &status.as_str()],
            )
        })?;
        Ok(())
    }

    fn add_release(&self, id: &str, r: &Release) -> Result<i64, QuarantineError> {
        let at = to_ms(r.at);
        let to = json(&r.to);
        let outcome = self.with(|c| {
            let mut tx = c.transaction()?;
            // Row lock: a concurrent purge of this entry waits, or we see it purged.
            let status: Option<String> = tx
                .query_opt(
                    "SELECT status FROM messages WHERE id = $1 FOR UPDATE",
                    &[&id],
                )?
                .map(|row| row.try_get(0))
                .transpose()?;
            match status.as_deref().and_then(Status::parse) {
                None => return Ok(Err(QuarantineError::NotFound(id.into()))),
                Some(Status::Purged) => return Ok(Err(QuarantineError::Purged(id.into()))),
                Some(_) => {}
            }
            let seq: i64 = tx
                .query_one(
                    "INSERT INTO releases (id, at, \"by\", \"to\", queued_as) VALUES ($1, $2, \
                     $3, $4, $5) RETURNING seq",
                    &[&id, &at, &r.by, &to, &r.queued_as],
                )?
                .try_get(0)?;
            tx.execute(
                "UPDATE messages SET status = 'released' WHERE id = $1",
                &[&id],
            )?;
            tx.commit()?;
            Ok(Ok(seq))
        })?;
        outcome
    }

    fn undo_release(&self, id: &str, seq: i64) -> Result<(), QuarantineError> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            tx.execute(
                "DELETE FROM releases WHERE seq = $1 AND id = $2",
                &[&seq, &id],
            )?;
            tx.execute(
                "UPDATE messages SET status = 'held' WHERE id = $1 AND status = 'released' \
                 AND NOT EXISTS (SELECT 1 FROM releases WHERE id = $1)",
                &[&id],
            )?;
            tx.commit()
        })
    }

    fn releases(&self, id: &str) -> Result<Vec<Release>, QuarantineError> {
        self.with_retry(|c| {
            c.query(
                "SELECT at, \"by\", \"to\", queued_as FROM releases WHERE id = $1 ORDER BY seq",
                &[&id],
            )?
            .iter()
            .map(|r| {
                Ok(Release {
                    at: from_ms(r.try_get(0)?),
                    by: r.try_get(1)?,
                    to: parse_to(r.try_get(2)?),
                    queued_as: r.try_get(3)?,
                })
            })
            .collect()
        })
    }

    fn expired(&self, before: SystemTime) -> Result<Vec<String>, QuarantineError> {
        let before = to_ms(before);
        self.with_retry(|c| {
            c.query(
                "SELECT id FROM messages WHERE received_at < $1 AND status <> 'purged' \
                 ORDER BY received_at",
                &[&before],
            )?
            .iter()
            .map(|r| r.try_get(0))
            .collect()
        })
    }

    fn sender_seen_since(&self, sender: &str, since: SystemTime) -> Result<bool, QuarantineError> {
        let sender = sender.to_lowercase();
        let since = to_ms(since);
        self.with_retry(|c| {
            Ok(c.query_opt(
                "SELECT 1 FROM messages WHERE sender_lc = $1 AND received_at >= $2 LIMIT 1",
                &[&sender, &since],
            )?
            .is_some())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_not_logged() {
        assert_eq!(
            redact("postgres://mugaika:secret@127.0.0.1/mugaika"),
            "postgres://mugaika@127.0.0.1/mugaika"
        );
        assert_eq!(redact("host=x password=y"), "(connection string)");
    }
}
