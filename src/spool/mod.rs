//! The durable spool of accepted messages, after Postfix: an entry is written under `tmp/`,
//! fsync'd, renamed into `queue/` and the directory fsync'd; only then may the SMTP server
//! answer 250. A crash at any instant therefore leaves each entry either wholly in `queue/`
//! (it will be delivered) or under `tmp/` (it was never acknowledged, and is removed at start).
//!
//! Layout under the spool directory:
//!
//! ```text
//! lock                   held (flock) by the one server process using this spool
//! flush                  marker: "deliver everything now" (written by `mugaika queue flush`)
//! tmp/ID/                an entry being received (original, clean, envelope.json)
//! queue/ID/original      the message as received (kept until delivery ends)
//! queue/ID/clean         the sanitised message that is delivered
//! queue/ID/envelope.json sender, recipients and their delivery state (see [`Envelope`])
//! corrupt/ID/            an entry whose envelope could not be read: kept for an
//!                        administrator, never deleted silently
//! ```
//!
//! Ids are 18 upper-case hex digits: microseconds since 1970 then 16 random bits, so they sort
//! by arrival and are unique even across restarts.

mod envelope;

pub use envelope::{now_ms, EntryKind, Envelope, RcptState, Recipient};

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Envelope files larger than this are refused as corrupt (bounded memory on hostile disks).
const MAX_ENVELOPE_SIZE: u64 = 16 << 20;
/// Longest id accepted from outside (CLI); ours are 18 characters.
const MAX_ID_LEN: usize = 64;

const TMP: &str = "tmp";
const QUEUE: &str = "queue";
const CORRUPT: &str = "corrupt";
const ORIGINAL: &str = "original";
const CLEAN: &str = "clean";
const ENVELOPE: &str = "envelope.json";
const ENVELOPE_TMP: &str = "envelope.json.tmp";
const FLUSH: &str = "flush";
const LOCK: &str = "lock";

/// The spool directory. Cheap to share (`Arc<Spool>`); every method takes `&self`.
#[derive(Debug)]
pub struct Spool {
    root: PathBuf,
    tmp: PathBuf,
    queue: PathBuf,
    corrupt: PathBuf,
    /// The exclusive lock of a serving process (None for [`Spool::attach`]).
    _lock: Option<File>,
    /// What the start-up recovery found.
    recovered: Recovery,
    /// Where originals are kept at commit, when the server runs with a quarantine.
    quarantine: Option<crate::quarantine::Quarantine>,
}

/// What [`Spool::open`] found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Complete entries in `queue/`, sorted (oldest first).
    pub queued: Vec<String>,
    /// Partial entries removed from `tmp/` (never acknowledged to a client).
    pub removed_partial: usize,
    /// Entries moved to `corrupt/` because their envelope could not be read.
    pub corrupt: Vec<String>,
}

fn ctx(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// fsync a directory so that the names created or renamed in it are durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ctx(e, "cannot fsync directory", dir))
}

fn create_dir_if_missing(dir: &Path) -> io::Result<()> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(ctx(e, "cannot create", dir)),
    }
}

/// Checks an id given from outside: only ASCII letters and digits, so it can never name a path
/// outside the spool.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn check_id(id: &str) -> io::Result<()> {
    if valid_id(id) {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{id:?} is not a spool id"),
        ))
    }
}

/// A new id, strictly increasing within this process.
fn new_id() -> String {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let mut prev = LAST.load(Ordering::Relaxed);
    let t = loop {
        let next = now.max(prev.saturating_add(1));
        match LAST.compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => break next,
            Err(p) => prev = p,
        }
    };
    let r: u16 = rand::random();
    format!("{t:014X}{r:04X}")
}

/// Writes `bytes` to `path` (created or truncated) and fsyncs it.
fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = File::create(path).map_err(|e| ctx(e, "cannot create", path))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| ctx(e, "cannot write", path))
}

fn read_envelope(path: &Path) -> io::Result<Envelope> {
    let f = File::open(path).map_err(|e| ctx(e, "cannot open", path))?;
    let mut buf = Vec::new();
    f.take(MAX_ENVELOPE_SIZE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| ctx(e, "cannot read", path))?;
    if buf.len() as u64 > MAX_ENVELOPE_SIZE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: envelope larger than {MAX_ENVELOPE_SIZE} octets",
                path.display()
            ),
        ));
    }
    serde_json::from_slice(&buf).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: unreadable envelope: {e}", path.display()),
        )
    })
}

impl Spool {
    /// Opens (creating if needed) the spool of a serving process: takes the exclusive lock
    /// (a second server on the same spool is refused) and recovers what a crash left: partial
    /// entries in `tmp/` are removed, complete ones in `queue/` listed (see
    /// [`Spool::recovered`]), unreadable ones moved to `corrupt/` and logged.
    pub fn open(dir: &Path) -> io::Result<Spool> {
        create_dir_if_missing(dir)?;
        let lock_path = dir.join(LOCK);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| ctx(e, "cannot open", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!("spool {} is in use by another process", dir.display()),
                ))
            }
            Err(fs::TryLockError::Error(e)) => return Err(ctx(e, "cannot lock", &lock_path)),
        }
        // The lock file names the serving process, for `mugaika reload` (SIGHUP).
        {
            use std::io::Write as _;
            let mut f = &lock;
            f.set_len(0)
                .and_then(|()| writeln!(f, "{}", std::process::id()))
                .map_err(|e| ctx(e, "cannot write", &lock_path))?;
        }
        let mut spool = Spool::layout(dir, Some(lock))?;
        spool.recovered = spool.recover()?;
        Ok(spool)
    }

    /// The process id of the server holding the spool at `dir`, or `None` when no server
    /// holds it (the lock is free).
    pub fn server_pid(dir: &Path) -> io::Result<Option<u32>> {
        let lock_path = dir.join(LOCK);
        let lock = match File::open(&lock_path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ctx(e, "cannot open", &lock_path)),
        };
        match lock.try_lock_shared() {
            // Nobody holds it exclusively: no server.
            Ok(()) => return Ok(None),
            Err(fs::TryLockError::WouldBlock) => {}
            Err(fs::TryLockError::Error(e)) => return Err(ctx(e, "cannot lock", &lock_path)),
        }
        let text = fs::read_to_string(&lock_path).map_err(|e| ctx(e, "cannot read", &lock_path))?;
        Ok(text.trim().parse().ok())
    }

    /// Opens an existing spool without locking or recovery, for the `mugaika queue` commands
    /// that run beside a server (recovery would delete the server's entries in progress).
    pub fn attach(dir: &Path) -> io::Result<Spool> {
        let q = dir.join(QUEUE);
        if !q.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} is not a mugaika spool (no queue/)", dir.display()),
            ));
        }
        Spool::layout(dir, None)
    }

    fn layout(dir: &Path, lock: Option<File>) -> io::Result<Spool> {
        let spool = Spool {
            root: dir.to_path_buf(),
            tmp: dir.join(TMP),
            queue: dir.join(QUEUE),
            corrupt: dir.join(CORRUPT),
            _lock: lock,
            recovered: Recovery::default(),
            quarantine: None,
        };
        for d in [&spool.tmp, &spool.queue, &spool.corrupt] {
            create_dir_if_missing(d)?;
        }
        Ok(spool)
    }

    fn recover(&self) -> io::Result<Recovery> {
        let mut rec = Recovery::default();
        for entry in fs::read_dir(&self.tmp).map_err(|e| ctx(e, "cannot list", &self.tmp))? {
            let path = entry.map_err(|e| ctx(e, "cannot list", &self.tmp))?.path();
            let res = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            res.map_err(|e| ctx(e, "cannot remove partial entry", &path))?;
            rec.removed_partial += 1;
        }
        if rec.removed_partial > 0 {
            sync_dir(&self.tmp)?;
            tracing::warn!(
                count = rec.removed_partial,
                "spool: removed partial entries left by a crash (never acknowledged)"
            );
        }
        for id in self.list()? {
            let dir = self.queue.join(&id);
            // An interrupted `update` leaves its temporary file; the old envelope is intact.
            let stale = dir.join(ENVELOPE_TMP);
            if stale.exists() {
                fs::remove_file(&stale).map_err(|e| ctx(e, "cannot remove", &stale))?;
            }
            let problem = match self.load(&id) {
                // Torn or missing envelope (commit writes it before the rename, so only damage
                // or tampering gets here).
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::InvalidData | io::ErrorKind::NotFound
                    ) =>
                {
                    Some(e.to_string())
                }
                Err(e) => {
                    // Not the entry's fault (permissions, out of descriptors): leave it where
                    // it is for the queue manager's next scan.
                    tracing::error!(id, error = %e, "spool: cannot read an entry at start-up");
                    continue;
                }
                Ok(_) if !dir.join(CLEAN).is_file() => Some("clean message missing".into()),
                Ok(_) => None,
            };
            match problem {
                Some(reason) => {
                    self.mark_corrupt(&id, &reason)?;
                    rec.corrupt.push(id);
                }
                None => rec.queued.push(id),
            }
        }
        Ok(rec)
    }

    /// What the start-up recovery of [`Spool::open`] found (empty for [`Spool::attach`]).
    pub fn recovered(&self) -> &Recovery {
        &self.recovered
    }

    /// The spool directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Starts a new entry under `tmp/`. Write the original through
    /// [`Incoming::original_file`], have the pipeline write [`Incoming::clean_path`], then
    /// [`Incoming::commit`]. Dropping it uncommitted removes everything it wrote.
    pub fn create(&self) -> io::Result<Incoming> {
        let mut tries = 0;
        let (id, dir) = loop {
            let id = new_id();
            let dir = self.tmp.join(&id);
            match fs::create_dir(&dir) {
                Ok(()) => break (id, dir),
                // Same microsecond and random suffix as another process: try again.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && tries < 8 => tries += 1,
                Err(e) => return Err(ctx(e, "cannot create", &dir)),
            }
        };
        let original = dir.join(ORIGINAL);
        let clean = dir.join(CLEAN);
        let file = File::create(&original).map_err(|e| {
            let _ = fs::remove_dir_all(&dir);
            ctx(e, "cannot create", &original)
        })?;
        Ok(Incoming {
            id,
            dir,
            original,
            clean,
            file,
            queue: self.queue.clone(),
            quarantine: self.quarantine.clone(),
            done: false,
        })
    }

    /// The quarantine originals are kept in, if any.
    pub fn quarantine(&self) -> Option<&crate::quarantine::Quarantine> {
        self.quarantine.as_ref()
    }

    /// Keeps the original of every entry committed with [`Incoming::commit_kept`] in
    /// `quarantine`, durably, before the commit returns (and so before the 250).
    pub fn with_quarantine(mut self, quarantine: crate::quarantine::Quarantine) -> Spool {
        self.quarantine = Some(quarantine);
        self
    }

    /// Ids of the entries in `queue/`, oldest first.
    pub fn list(&self) -> io::Result<Vec<String>> {
        let mut ids = Vec::new();
        for entry in fs::read_dir(&self.queue).map_err(|e| ctx(e, "cannot list", &self.queue))? {
            let entry = entry.map_err(|e| ctx(e, "cannot list", &self.queue))?;
            if let Some(name) = entry.file_name().to_str() {
                // file_type() comes from the directory entry itself: no stat per entry.
                if valid_id(name) && entry.file_type().is_ok_and(|t| t.is_dir()) {
                    ids.push(name.to_string());
                }
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Reads the envelope of a queued entry.
    pub fn load(&self, id: &str) -> io::Result<Envelope> {
        check_id(id)?;
        read_envelope(&self.queue.join(id).join(ENVELOPE))
    }

    /// Atomically replaces the envelope of a queued entry: a temporary file, fsync, rename over
    /// the old one, fsync of the entry's directory. A crash leaves the old or the new envelope.
    pub fn update(&self, env: &Envelope) -> io::Result<()> {
        check_id(&env.id)?;
        let dir = self.queue.join(&env.id);
        if !dir.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("spool entry {} does not exist", env.id),
            ));
        }
        let tmp = dir.join(ENVELOPE_TMP);
        let json = serde_json::to_vec_pretty(env).map_err(io::Error::other)?;
        write_synced(&tmp, &json)?;
        let target = dir.join(ENVELOPE);
        fs::rename(&tmp, &target).map_err(|e| ctx(e, "cannot rename onto", &target))?;
        sync_dir(&dir)
    }

    /// Removes a queued entry (delivered, bounced, or removed by an administrator). The entry is
    /// first renamed out of `queue/` (atomic), then deleted.
    pub fn remove(&self, id: &str) -> io::Result<()> {
        check_id(id)?;
        let dir = self.queue.join(id);
        let grave = self.tmp.join(format!("{id}x{:04X}", rand::random::<u16>()));
        fs::rename(&dir, &grave).map_err(|e| ctx(e, "cannot remove", &dir))?;
        sync_dir(&self.queue)?;
        fs::remove_dir_all(&grave).map_err(|e| ctx(e, "cannot remove", &grave))
    }

    /// Moves a queued entry whose envelope or files are unusable to `corrupt/` and logs it.
    /// Nothing is deleted: an administrator decides.
    pub fn mark_corrupt(&self, id: &str, reason: &str) -> io::Result<()> {
        check_id(id)?;
        let from = self.queue.join(id);
        let mut to = self.corrupt.join(id);
        if to.exists() {
            to = self
                .corrupt
                .join(format!("{id}x{:04X}", rand::random::<u16>()));
        }
        fs::rename(&from, &to).map_err(|e| ctx(e, "cannot move to corrupt/", &from))?;
        sync_dir(&self.queue)?;
        sync_dir(&self.corrupt)?;
        tracing::error!(
            id,
            reason,
            moved_to = %to.display(),
            "spool: unreadable entry moved to corrupt/ (not delivered; inspect it)"
        );
        Ok(())
    }

    /// The sanitised message of a queued entry.
    pub fn clean_path(&self, id: &str) -> PathBuf {
        self.queue.join(id).join(CLEAN)
    }

    /// Another clean message of a queued entry (`Recipient::clean`, e.g. `clean.1`). A name
    /// that is not one of ours (the envelope is data on disk) gives the entry's `clean`.
    pub fn entry_file(&self, id: &str, name: &str) -> PathBuf {
        if group_of(name).is_some() {
            self.queue.join(id).join(name)
        } else {
            self.clean_path(id)
        }
    }

    /// The original message of a queued entry.
    pub fn original_path(&self, id: &str) -> PathBuf {
        self.queue.join(id).join(ORIGINAL)
    }

    /// Asks the delivering process to try every entry now (`mugaika queue flush`). The marker
    /// survives until a queue manager takes it, so a flush with no server running applies at
    /// its next start.
    pub fn request_flush(&self) -> io::Result<()> {
        let p = self.root.join(FLUSH);
        File::create(&p)
            .map(drop)
            .map_err(|e| ctx(e, "cannot create", &p))
    }

    /// Takes (removes) the flush marker; true if it was there.
    pub fn take_flush_request(&self) -> bool {
        fs::remove_file(self.root.join(FLUSH)).is_ok()
    }

    /// Commits a locally generated message (a DSN): `message` becomes the clean message, the
    /// original is empty. Returns the new id.
    pub fn enqueue_local(&self, message: &[u8], envelope: Envelope) -> io::Result<String> {
        let inc = self.create()?;
        write_synced(inc.clean_path(), message)?;
        let id = inc.id.clone();
        inc.commit(envelope)?;
        Ok(id)
    }
}

/// An entry being received, under `tmp/ID/`. Dropping it without [`Incoming::commit`] removes
/// its files: a message is in the queue only if it was committed.
#[derive(Debug)]
pub struct Incoming {
    /// The spool id (also the `queued as` id of the 250 reply).
    pub id: String,
    dir: PathBuf,
    original: PathBuf,
    clean: PathBuf,
    file: File,
    queue: PathBuf,
    quarantine: Option<crate::quarantine::Quarantine>,
    done: bool,
}

impl Incoming {
    /// Where the original message is written (by [`Incoming::original_file`]).
    pub fn original_path(&self) -> &Path {
        &self.original
    }

    /// Where the pipeline writes the clean message.
    pub fn clean_path(&self) -> &Path {
        &self.clean
    }

    /// Where the pipeline writes the clean message of recipient group `group` (0 is
    /// [`Incoming::clean_path`]); recipients get theirs through `Recipient::clean`.
    pub fn group_clean_path(&self, group: usize) -> PathBuf {
        match group {
            0 => self.clean.clone(),
            n => self.dir.join(group_file(n)),
        }
    }

    /// The open original file, for streaming the received data into it.
    pub fn original_file(&mut self) -> &mut File {
        &mut self.file
    }

    /// Makes the entry durable and queues it: fsync original, clean message and envelope,
    /// fsync the entry directory, rename `tmp/ID` to `queue/ID`, fsync `queue/`. Only after this
    /// returns `Ok` may the server answer 250. `envelope.id`, `queued_at` and `size` are set
    /// here. On error nothing is queued and the temporary files are removed.
    pub fn commit(self, envelope: Envelope) -> io::Result<()> {
        self.commit_kept(envelope, None)
    }

    /// [`Incoming::commit`], keeping the original first in the spool's quarantine (see
    /// [`Spool::with_quarantine`]) under `keep`'s id, with its metadata: the original is
    /// encrypted, fsync'd and indexed before the entry is queued, so a 250 always has its
    /// original kept. Without a quarantine `keep` is ignored.
    pub fn commit_kept(
        mut self,
        mut envelope: Envelope,
        keep: Option<&crate::quarantine::NewEntry>,
    ) -> io::Result<()> {
        self.file
            .sync_all()
            .map_err(|e| ctx(e, "cannot fsync", &self.original))?;
        let clean = File::open(&self.clean).map_err(|e| ctx(e, "cannot open", &self.clean))?;
        clean
            .sync_all()
            .map_err(|e| ctx(e, "cannot fsync", &self.clean))?;
        envelope.size = clean
            .metadata()
            .map_err(|e| ctx(e, "cannot stat", &self.clean))?
            .len();
        drop(clean);
        // The other groups' clean messages (recipients under other policy rules).
        let mut synced = std::collections::BTreeSet::new();
        for name in envelope
            .recipients
            .iter()
            .filter_map(|r| r.clean.as_deref())
        {
            if group_of(name).is_none() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("bad clean message name {name:?}"),
                ));
            }
            if synced.insert(name) {
                let path = self.dir.join(name);
                File::open(&path)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| ctx(e, "cannot fsync", &path))?;
            }
        }
        if let (Some(q), Some(entry)) = (&self.quarantine, keep) {
            q.keep(entry, &self.original).map_err(|e| match e {
                crate::quarantine::QuarantineError::Io(e) => e,
                e => io::Error::other(format!("quarantine: {e}")),
            })?;
        }
        envelope.id = self.id.clone();
        envelope.queued_at = now_ms();
        let json = serde_json::to_vec_pretty(&envelope).map_err(io::Error::other)?;
        write_synced(&self.dir.join(ENVELOPE), &json)?;
        sync_dir(&self.dir)?;
        let target = self.queue.join(&self.id);
        fs::rename(&self.dir, &target).map_err(|e| ctx(e, "cannot rename into", &target))?;
        if let Err(e) = sync_dir(&self.queue) {
            // Not durable, and the client will be told so (4xx) and retry: move it back so that
            // it is not delivered twice (best effort; Drop removes it).
            if fs::rename(&target, &self.dir).is_err() {
                self.done = true;
            }
            return Err(e);
        }
        self.done = true;
        Ok(())
    }
}

/// The file name of recipient group `n`'s clean message (n ≥ 1).
pub fn group_file(n: usize) -> String {
    format!("{CLEAN}.{n}")
}

/// The group number of a clean message name of ours, `clean.N` with N ≥ 1.
fn group_of(name: &str) -> Option<usize> {
    let n = name.strip_prefix(CLEAN)?.strip_prefix('.')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) || n.len() > 6 {
        return None;
    }
    n.parse().ok().filter(|&n| n >= 1)
}

impl Drop for Incoming {
    fn drop(&mut self) {
        if !self.done {
            if let Err(e) = fs::remove_dir_all(&self.dir) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(id = %self.id, error = %e, "spool: cannot remove aborted entry");
                }
            }
        }
    }
}
