//! PPAP unlock: a password-protected zip held in the quarantine is opened with the password
//! its recipient (or an administrator) supplies, every member is disarmed by the usual policy,
//! and a new clean message carrying the disarmed files is queued for the recipient. The
//! original is never passed on: what is delivered went through the same pipeline as any mail.
//!
//! Steps of [`unlock`]:
//! 1. The attempt throttle ([`Throttle`]): at most `max_failures` wrong passwords per
//!    quarantine id within `window`, counted in an append-only file
//!    `<quarantine dir>/unlock/ID.attempts` (one line per attempt, fsync'd, locked while an
//!    attempt runs), so the limit holds across the CLI, the admin API and several relays
//!    sharing one quarantine. While locked out nothing is decrypted at all.
//! 2. The original is read from the quarantine and its MIME tree walked with the house parser
//!    ([`crate::mime`]); leaf parts whose content is a zip with encrypted members, or a plain
//!    zip holding such a zip (typed by content, as the sanitiser does), are the candidates.
//!    None: [`UnlockError::NothingToUnlock`].
//! 3. Each candidate is decrypted (ZipCrypto and AES, by the zip crate) under the limits of
//!    archive inspection from `[sanitize]`: entries, uncompressed octets of the whole tree,
//!    compression ratio per member, nesting depth, the sanitising timeout; unsafe or duplicate
//!    member names refuse the archive. Encrypted zips inside are opened with the same password
//!    down to `max_archive_depth`. The members are re-packed as a plain zip. A password that
//!    opens none of them is a failed attempt ([`UnlockError::WrongPassword`]).
//! 4. A new message is written: the original's From, To, Cc, Subject and Date, a short text
//!    saying who opened the archive at whose request and the quarantine id, and the re-packed
//!    zips as `application/zip` attachments under their names. It carries a Message-ID of its
//!    own (the original's is in In-Reply-To and References): a mail store that drops a second
//!    message with a Message-ID it already holds must not swallow the unlocked files.
//! 5. That message goes through [`pipeline::sanitize_file`] under the rule of each recipient
//!    ([`crate::policy::Policies`], recipients grouped as the SMTP session groups them), so
//!    the zips are inspected and every member disarmed (`archive = "inspect"`) or removed as
//!    the policy says. The first-contact rule is not applied: the unlock is a deliberate
//!    request by someone who knows the sender, and a rule that holds every attachment would
//!    make it pointless; every other rule applies as it did on receipt.
//! 6. One spool entry with a clean message per group is committed for delivery, after the
//!    audit row (the release audit trail: by `NAME (unlocked)`, recipients, queue id) as in
//!    [`super::release`]. The spool entry's original file is emptied before the commit: the
//!    decrypted, not yet disarmed files must not rest unencrypted in the spool.
//!
//! The password is only ever held in memory for the attempt: never stored, logged or audited.

use std::fs::{File, OpenOptions};
use std::io::{Cursor, Read, Seek, SeekFrom, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

use super::{valid_id, Quarantine, QuarantineError, Release, Status};
use crate::config::{Config, Language};
use crate::mime::{Header, Limits as MimeLimits, Parser, Part, PartEnd, Sink};
use crate::pipeline::{self, Context, Report, SanitizeError};
use crate::sanitise::sniff::{self, Category};
use crate::spool::{group_file, Envelope, Spool};

/// Longest name written for who unlocked.
const MAX_BY: usize = 100;
/// Read granularity while decompressing: limits and the deadline are checked between chunks.
const CHUNK: usize = 64 << 10;
/// Below this many octets a member is never judged by its compression ratio (as in
/// archive inspection: small repetitive members legitimately exceed any ratio).
const RATIO_FLOOR: u64 = 1 << 20;
/// The tail of an attempts file that is read (the lines of the window are at its end).
const ATTEMPTS_TAIL: u64 = 64 << 10;

/// The attempt limit: at most `max_failures` wrong passwords per quarantine id within
/// `window`; after that every attempt is refused until the oldest failure in the window ages
/// out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttle {
    pub max_failures: u32,
    pub window: Duration,
}

impl Default for Throttle {
    /// 5 failures per 15 minutes.
    fn default() -> Throttle {
        Throttle {
            max_failures: 5,
            window: Duration::from_secs(15 * 60),
        }
    }
}

/// What an unlock did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UnlockOutcome {
    /// The quarantine id of the original.
    pub id: String,
    /// The spool id of the new clean message(s).
    pub queued_as: String,
    /// The recipients it was queued for.
    pub to: Vec<String>,
    /// The archives opened (their attachment names).
    pub opened: Vec<String>,
    /// Encrypted archives this password did not open (left in the quarantine).
    pub not_opened: Vec<String>,
    /// Files found in the opened archives, before disarming.
    pub members: usize,
    /// The sanitiser's report for each recipient group (rule, actions).
    pub reports: Vec<Report>,
}

/// Why an unlock did not deliver anything.
#[derive(Debug, thiserror::Error)]
pub enum UnlockError {
    /// The password opened none of the encrypted archives. The attempt was counted.
    #[error(
        "wrong password for {id} (failed attempt {failures} of {max} allowed within the window)"
    )]
    WrongPassword { id: String, failures: u32, max: u32 },
    /// Too many wrong passwords recently: nothing is tried until `retry_after` has passed.
    #[error("{id}: too many wrong passwords; locked out, try again in {} s", retry_after.as_secs().max(1))]
    LockedOut { id: String, retry_after: Duration },
    /// The original holds no password-protected zip.
    #[error("nothing to unlock: {0}")]
    NothingToUnlock(String),
    /// An archive breaks a limit (size, entries, ratio, names): it is not delivered.
    #[error("the archive cannot be unlocked safely: {0}")]
    Refused(String),
    /// A bad request: an empty password, an address that is not one, no recipient.
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Quarantine(#[from] QuarantineError),
    /// Sanitising the new message failed (nothing was queued).
    #[error("sanitising the unlocked message: {0}")]
    Sanitize(#[from] SanitizeError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl UnlockError {
    /// The CLI exit code (sysexits): 65 for what retrying will not change (wrong password,
    /// nothing to unlock, refused, no such entry), 75 for a lock-out and our own errors, 78
    /// for a wrong quarantine key.
    pub fn exit_code(&self) -> u8 {
        match self {
            UnlockError::WrongPassword { .. }
            | UnlockError::NothingToUnlock(_)
            | UnlockError::Refused(_)
            | UnlockError::BadRequest(_) => 65,
            UnlockError::Quarantine(
                QuarantineError::NotFound(_)
                | QuarantineError::Purged(_)
                | QuarantineError::BadId(_)
                | QuarantineError::Release(_),
            ) => 65,
            UnlockError::Quarantine(QuarantineError::WrongKey(_)) => 78,
            UnlockError::Sanitize(SanitizeError::Rejected(_)) => 65,
            _ => 75,
        }
    }

    /// The HTTP status for the admin API and page: 400 bad request or id, 404 unknown, 409
    /// nothing to unlock, 410 purged, 422 wrong password or refused archive, 429 locked out
    /// (with `Retry-After` from [`UnlockError::retry_after`]), 500 our errors.
    pub fn http_status(&self) -> u16 {
        match self {
            UnlockError::BadRequest(_) => 400,
            UnlockError::WrongPassword { .. } | UnlockError::Refused(_) => 422,
            UnlockError::LockedOut { .. } => 429,
            UnlockError::NothingToUnlock(_) => 409,
            UnlockError::Quarantine(QuarantineError::NotFound(_)) => 404,
            UnlockError::Quarantine(QuarantineError::BadId(_)) => 400,
            UnlockError::Quarantine(QuarantineError::Purged(_)) => 410,
            UnlockError::Quarantine(QuarantineError::Release(_)) => 409,
            UnlockError::Sanitize(SanitizeError::Rejected(_)) => 422,
            _ => 500,
        }
    }

    /// Seconds until a locked-out entry may be tried again.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            UnlockError::LockedOut { retry_after, .. } => Some(retry_after.as_secs().max(1)),
            _ => None,
        }
    }
}

/// Unlocks the encrypted zips of quarantine entry `id` with `password` and queues a clean
/// message with their disarmed members in the spool at `spool_dir` for `to` (None: the
/// original recipients), audited as released by `by`. Throttled by [`Throttle::default`].
pub fn unlock(
    q: &Quarantine,
    id: &str,
    password: &[u8],
    spool_dir: &Path,
    cfg: &Config,
    to: Option<&[String]>,
    by: &str,
) -> Result<UnlockOutcome, UnlockError> {
    unlock_with(
        q,
        id,
        password,
        spool_dir,
        cfg,
        to,
        by,
        &Throttle::default(),
    )
}

/// [`unlock`] with an explicit throttle (tests use a short window).
#[allow(clippy::too_many_arguments)]
pub fn unlock_with(
    q: &Quarantine,
    id: &str,
    password: &[u8],
    spool_dir: &Path,
    cfg: &Config,
    to: Option<&[String]>,
    by: &str,
    throttle: &Throttle,
) -> Result<UnlockOutcome, UnlockError> {
    if !valid_id(id) {
        return Err(QuarantineError::BadId(id.to_string()).into());
    }
    let by = clean_by(by);
    let rec = q
        .get(id)?
        .ok_or_else(|| QuarantineError::NotFound(id.to_string()))?;
    if rec.status == Status::Purged {
        return Err(QuarantineError::Purged(id.to_string()).into());
    }
    if password.is_empty() {
        return Err(UnlockError::BadRequest("the password is empty".into()));
    }
    let mut recipients: Vec<String> = match to {
        Some(t) if !t.is_empty() => t.iter().map(|a| a.trim().to_string()).collect(),
        _ => rec.recipients.clone(),
    };
    // One copy per mailbox, however often it was given (domains compare case-insensitively).
    let mut seen = std::collections::HashSet::new();
    recipients.retain(|a| {
        let key = match a.rsplit_once('@') {
            Some((l, d)) => format!("{l}@{}", d.to_lowercase()),
            None => a.clone(),
        };
        seen.insert(key)
    });
    if recipients.is_empty() {
        return Err(UnlockError::BadRequest(format!(
            "{id} has no recipient to deliver to"
        )));
    }
    if let Some(bad) = recipients.iter().find(|a| !plausible_address(a)) {
        return Err(UnlockError::BadRequest(format!(
            "{bad:?} is not a mail address"
        )));
    }

    // The throttle: locked for the whole attempt, so that concurrent attempts (other
    // processes too) are counted one after the other.
    let mut attempts = Attempts::open(q.dir(), id)?;
    let now = SystemTime::now();
    if let Some(retry_after) = attempts.locked_out(throttle, now)? {
        audit(id, &by, "locked-out", &recipients, None);
        return Err(UnlockError::LockedOut {
            id: id.to_string(),
            retry_after,
        });
    }

    let original = q.original(id)?;
    let found = find_encrypted_zips(&original, cfg);
    let header_block = found.header_block;
    if found.zips.is_empty() {
        audit(id, &by, "nothing-to-unlock", &recipients, None);
        let why = if found.too_large.is_empty() {
            format!("{id} holds no password-protected zip attachment")
        } else {
            format!(
                "{id}: the zip attachment(s) {:?} exceed max_attachment_size",
                found.too_large
            )
        };
        return Err(UnlockError::NothingToUnlock(why));
    }

    let limits = DecryptLimits::from_config(cfg);
    let mut opened = Vec::new();
    let mut not_opened = Vec::new();
    let mut members = 0usize;
    for z in &found.zips {
        let mut budget = Budget::new(&limits);
        match decrypt_zip(&z.data, password, &limits, &mut budget, 0) {
            Ok(plain) => {
                members += plain.files;
                opened.push(Opened {
                    name: z.name.clone(),
                    data: plain.zip,
                });
            }
            Err(Fail::WrongPassword) => not_opened.push(z.name.clone()),
            Err(Fail::Refused(why)) => {
                audit(id, &by, "refused", &recipients, None);
                return Err(UnlockError::Refused(format!("{}: {why}", z.name)));
            }
        }
    }
    drop(original);
    if opened.is_empty() {
        let failures = attempts.record(Outcome::Fail, SystemTime::now(), throttle)?;
        audit(id, &by, "wrong-password", &recipients, None);
        return Err(UnlockError::WrongPassword {
            id: id.to_string(),
            failures,
            max: throttle.max_failures,
        });
    }
    attempts.record(Outcome::Ok, SystemTime::now(), throttle)?;
    drop(attempts);

    let message = build_message(
        &header_block,
        &opened,
        &not_opened,
        id,
        &by,
        cfg.sanitize.notice_language,
        &cfg.server.hostname,
    );
    let opened_names: Vec<String> = opened.iter().map(|o| o.name.clone()).collect();
    drop(opened);
    let result = queue(
        q,
        &rec,
        &message,
        &header_block,
        spool_dir,
        cfg,
        &recipients,
        &by,
    );
    drop(message);
    match result {
        Ok((queued_as, reports)) => {
            audit(id, &by, "unlocked", &recipients, Some(&queued_as));
            Ok(UnlockOutcome {
                id: id.to_string(),
                queued_as,
                to: recipients,
                opened: opened_names,
                not_opened,
                members,
                reports,
            })
        }
        Err(e) => {
            audit(id, &by, "failed", &recipients, None);
            Err(e)
        }
    }
}

/// One audit record: who, for whom, what happened. Never the password.
fn audit(id: &str, by: &str, outcome: &str, to: &[String], queued_as: Option<&str>) {
    tracing::info!(
        target: "audit",
        id,
        by,
        outcome,
        to = ?to,
        queued_as = queued_as.unwrap_or(""),
        "quarantine: unlock"
    );
}

// ---------------------------------------------------------------------------------------
// The attempts file.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    Fail,
}

/// `<quarantine dir>/unlock/ID.attempts`, locked exclusively while open: lines of
/// `UNIX_MS fail` / `UNIX_MS ok`, appended and fsync'd.
struct Attempts {
    file: File,
}

impl Attempts {
    fn open(quarantine_dir: &Path, id: &str) -> std::io::Result<Attempts> {
        let dir = quarantine_dir.join("unlock");
        let new_dir = !dir.is_dir();
        // Private like the rest of the quarantine: the files say which entries are attacked.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        if new_dir {
            sync_dir(quarantine_dir)?;
        }
        let path = dir.join(format!("{id}.attempts"));
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)?;
        if !existed {
            sync_dir(&dir)?;
        }
        file.lock()?;
        Ok(Attempts { file })
    }

    /// The failures recorded at or after `since` (from the file's tail).
    fn failures_since(&mut self, since: SystemTime) -> std::io::Result<Vec<u64>> {
        let since = ms(since);
        let len = self.file.metadata()?.len();
        let start = len.saturating_sub(ATTEMPTS_TAIL);
        self.file.seek(SeekFrom::Start(start))?;
        let mut text = Vec::new();
        (&mut self.file)
            .take(ATTEMPTS_TAIL)
            .read_to_end(&mut text)?;
        let mut lines = text.split(|&b| b == b'\n');
        if start > 0 {
            lines.next(); // cut in the middle
        }
        Ok(lines
            .filter_map(|l| {
                let l = std::str::from_utf8(l).ok()?;
                let (t, what) = l.trim().split_once(' ')?;
                let t: u64 = t.parse().ok()?;
                (what == "fail" && t >= since).then_some(t)
            })
            .collect())
    }

    /// How long until an attempt is allowed, when locked out.
    fn locked_out(
        &mut self,
        throttle: &Throttle,
        now: SystemTime,
    ) -> std::io::Result<Option<Duration>> {
        let since = now.checked_sub(throttle.window).unwrap_or(UNIX_EPOCH);
        let mut fails = self.failures_since(since)?;
        let max = throttle.max_failures as usize;
        if fails.len() < max.max(1) {
            return Ok(None);
        }
        fails.sort_unstable();
        // Allowed again when fewer than `max` failures remain in the window.
        let key = fails[fails.len() - max.max(1)];
        let until =
            key.saturating_add(u64::try_from(throttle.window.as_millis()).unwrap_or(u64::MAX));
        let wait = until.saturating_sub(ms(now));
        Ok(Some(Duration::from_millis(wait.max(1))))
    }

    /// Appends one attempt (fsync'd); returns the failures now in the window.
    fn record(
        &mut self,
        what: Outcome,
        now: SystemTime,
        throttle: &Throttle,
    ) -> std::io::Result<u32> {
        let word = match what {
            Outcome::Ok => "ok",
            Outcome::Fail => "fail",
        };
        self.file
            .write_all(format!("{} {word}\n", ms(now)).as_bytes())?;
        self.file.sync_all()?;
        let since = now.checked_sub(throttle.window).unwrap_or(UNIX_EPOCH);
        Ok(u32::try_from(self.failures_since(since)?.len()).unwrap_or(u32::MAX))
    }
}

impl Drop for Attempts {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

// ---------------------------------------------------------------------------------------
// Finding the encrypted zips.

/// A password-protected zip attachment of the original.
struct Candidate {
    name: String,
    data: Vec<u8>,
}

struct Found {
    /// The top-level header fields of the original.
    header_block: Vec<Header>,
    zips: Vec<Candidate>,
    /// Zip attachments too large to look at.
    too_large: Vec<String>,
}

/// The leaf part being read.
struct Leaf {
    index: usize,
    name: Option<String>,
    data: Vec<u8>,
    /// None until the first octets are in; then whether it starts like a zip.
    zip: Option<bool>,
    over: bool,
}

/// Parser sink keeping the bodies of leaf parts that start like a zip (up to `limit` each).
struct Finder {
    limit: usize,
    limits: DecryptLimits,
    headers: Vec<Header>,
    leaf: Option<Leaf>,
    zips: Vec<Candidate>,
    too_large: Vec<String>,
    count: usize,
}

impl Sink for Finder {
    fn part_start(&mut self, part: &Part) {
        if part.index == 0 {
            self.headers = part.headers.clone();
        }
        if part.content_type.is_multipart() || part.content_type.is_message() {
            return;
        }
        self.leaf = Some(Leaf {
            index: part.index,
            name: part.filename.clone(),
            data: Vec::new(),
            zip: None,
            over: false,
        });
    }

    fn body(&mut self, data: &[u8]) {
        let Some(leaf) = self.leaf.as_mut() else {
            return;
        };
        if leaf.zip == Some(false) || leaf.over {
            return;
        }
        if leaf.data.len() + data.len() > self.limit {
            leaf.over = true;
            leaf.data = Vec::new();
            return;
        }
        leaf.data.extend_from_slice(data);
        if leaf.zip.is_none() && leaf.data.len() >= 4 {
            let zip = leaf.data.starts_with(b"PK\x03\x04");
            leaf.zip = Some(zip);
            if !zip {
                leaf.data = Vec::new();
            }
        }
    }

    fn part_end(&mut self, end: &PartEnd) {
        let Some(leaf) = self.leaf.take_if(|l| l.index == end.index) else {
            return;
        };
        self.count += 1;
        let name = leaf
            .name
            .as_deref()
            .map(safe_attachment_name)
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| format!("archive-{}.zip", self.count));
        if leaf.over {
            // Too large to have been inspected: only worth a mention if it is a zip, which we
            // no longer know; name it so the error is understandable.
            self.too_large.push(name);
            return;
        }
        let limits = self.limits;
        let depth_left = limits.max_depth.saturating_sub(1);
        if leaf.zip == Some(true)
            && encrypted_inside(&leaf.data, depth_left, &limits, &mut Budget::new(&limits))
        {
            self.zips.push(Candidate {
                name,
                data: leaf.data,
            });
        }
    }
}

fn find_encrypted_zips(original: &[u8], cfg: &Config) -> Found {
    let mut finder = Finder {
        limit: cfg.sanitize.max_attachment_size.as_usize(),
        limits: DecryptLimits::from_config(cfg),
        headers: Vec::new(),
        leaf: None,
        zips: Vec::new(),
        too_large: Vec::new(),
        count: 0,
    };
    let mut parser = Parser::new(MimeLimits::from(&cfg.mime));
    for chunk in original.chunks(pipeline::CHUNK) {
        parser.feed(chunk, &mut finder);
    }
    parser.finish(&mut finder);
    Found {
        header_block: finder.headers,
        zips: finder.zips,
        too_large: finder.too_large,
    }
}

/// Typed by content as the sanitiser types it: the sniffer's encrypted zip (first member
/// encrypted), or a zip with any encrypted member in its central directory (which archive
/// inspection refuses as password-protected).
fn has_encrypted_member(data: &[u8]) -> bool {
    let head = &data[..data.len().min(sniff::SNIFF_LEN)];
    if sniff::sniff(head).is_some_and(|d| d.category == Category::EncryptedArchive) {
        return true;
    }
    let Ok(zip) = ZipArchive::new(Cursor::new(data)) else {
        return false;
    };
    (0..zip.len()).any(|i| zip.by_index_data(i).is_ok_and(|e| e.encrypted()))
}

/// Whether `data` is a zip with a password-protected member, itself or in a plain zip inside
/// it down to `depth_left` levels (archive inspection holds the whole outer zip then). The
/// members looked into are read under the limits, from `budget`.
fn encrypted_inside(
    data: &[u8],
    depth_left: usize,
    limits: &DecryptLimits,
    budget: &mut Budget,
) -> bool {
    if has_encrypted_member(data) {
        return true;
    }
    if depth_left == 0 || declared_entries(data).is_some_and(|n| n > limits.max_entries as u64) {
        return false;
    }
    let Ok(mut zip) = ZipArchive::new(Cursor::new(data)) else {
        return false;
    };
    for i in 0..zip.len().min(limits.max_entries) {
        let Ok(compressed) = zip.by_index_data(i).map(|e| e.compressed_size()) else {
            continue;
        };
        let mut head = Vec::with_capacity(4);
        let is_zip = zip
            .by_index(i)
            .is_ok_and(|f| f.take(4).read_to_end(&mut head).is_ok() && head == b"PK\x03\x04");
        if !is_zip {
            continue;
        }
        let Ok(mut f) = zip.by_index(i) else {
            continue;
        };
        let cap = compressed.max(1).saturating_mul(limits.max_ratio);
        let Ok(inner) = read_bounded(&mut f, "", cap, limits, budget) else {
            return false;
        };
        drop(f);
        if encrypted_inside(&inner, depth_left - 1, limits, budget) {
            return true;
        }
    }
    false
}

/// A file name for the attachment: the last path component, controls removed.
fn safe_attachment_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let s: String = base.chars().filter(|c| !c.is_control()).take(200).collect();
    s.trim().to_string()
}

// ---------------------------------------------------------------------------------------
// Decryption under limits.

#[derive(Debug, Clone, Copy)]
struct DecryptLimits {
    max_entries: usize,
    max_uncompressed: u64,
    max_ratio: u64,
    max_depth: usize,
    deadline: Instant,
}

impl DecryptLimits {
    fn from_config(cfg: &Config) -> DecryptLimits {
        let s = &cfg.sanitize;
        DecryptLimits {
            max_entries: s.max_archive_entries,
            max_uncompressed: s.max_archive_size.0,
            max_ratio: s.max_archive_ratio,
            max_depth: s.max_archive_depth,
            deadline: Instant::now() + s.timeout.0,
        }
    }
}

/// The octets and entries one attachment and everything nested in it may use (as the shared
/// tree budget of archive inspection).
struct Budget {
    octets: u64,
    entries: u64,
}

impl Budget {
    fn new(l: &DecryptLimits) -> Budget {
        let levels = (l.max_depth as u64).clamp(1, 4);
        Budget {
            octets: l.max_uncompressed,
            entries: (l.max_entries as u64).saturating_mul(levels),
        }
    }
}

#[derive(Debug)]
enum Fail {
    WrongPassword,
    Refused(String),
}

struct Plain {
    zip: Vec<u8>,
    files: usize,
    /// Encrypted members opened, in this zip and the zips inside it.
    decrypted: usize,
}

/// The entry count of the end-of-central-directory record, read before the zip crate builds
/// its table (so that a huge directory is refused unread). Zip64 counts are not looked at
/// here; the table's length is checked after opening.
fn declared_entries(data: &[u8]) -> Option<u64> {
    let tail_start = data.len().saturating_sub(22 + 65_535);
    let tail = data.get(tail_start..)?;
    let pos = memchr::memmem::rfind(tail, b"PK\x05\x06")?;
    let eocd = tail.get(pos..pos + 22)?;
    Some(u64::from(u16::from_le_bytes([
        *eocd.get(10)?,
        *eocd.get(11)?,
    ])))
}

/// A member name as written: UTF-8 when valid, else Shift_JIS (Japanese Windows), else
/// lossy.
fn decode_name(raw: &[u8]) -> String {
    if let Ok(s) = std::str::from_utf8(raw) {
        return s.to_string();
    }
    if let Some(s) = encoding_rs::SHIFT_JIS.decode_without_bom_handling_and_without_replacement(raw)
    {
        return s.into_owned();
    }
    String::from_utf8_lossy(raw).into_owned()
}

/// Decrypts `data` with `password` and re-packs its members as a plain zip.
fn decrypt_zip(
    data: &[u8],
    password: &[u8],
    limits: &DecryptLimits,
    budget: &mut Budget,
    depth: usize,
) -> Result<Plain, Fail> {
    let refuse = |s: String| Fail::Refused(s);
    if let Some(n) = declared_entries(data) {
        if n > limits.max_entries as u64 {
            return Err(refuse(format!(
                "too many entries ({n}, limit {})",
                limits.max_entries
            )));
        }
    }
    let mut zip = ZipArchive::new(Cursor::new(data))
        .map_err(|e| refuse(format!("not a readable zip ({e})")))?;
    let n = zip.len();
    if n > limits.max_entries {
        return Err(refuse(format!(
            "too many entries ({n}, limit {})",
            limits.max_entries
        )));
    }
    if budget.entries < n as u64 {
        return Err(refuse(
            "too many entries in nested archives together".into(),
        ));
    }
    budget.entries -= n as u64;
    zip.validate_header_consistency()
        .map_err(|e| refuse(format!("inconsistent zip headers ({e})")))?;

    let mut out = ZipWriter::new(Cursor::new(Vec::new()));
    let mut seen = std::collections::HashSet::new();
    let mut files = 0usize;
    let mut decrypted = 0usize;
    let mut nested_wrong = false;
    for i in 0..n {
        if Instant::now() >= limits.deadline {
            return Err(refuse("sanitising deadline reached".into()));
        }
        let (raw_name, encrypted, is_dir, symlink, compressed, method, modified) = {
            let e = zip
                .by_index_data(i)
                .map_err(|e| refuse(format!("entry {i}: {e}")))?;
            (
                decode_name(e.name_raw()),
                e.encrypted(),
                e.is_dir(),
                e.is_symlink(),
                e.compressed_size(),
                e.compression(),
                e.last_modified(),
            )
        };
        let name =
            crate::cdr::archive::safe_member_name(&raw_name).map_err(|e| refuse(e.to_string()))?;
        if !seen.insert(name.trim_end_matches('/').to_lowercase()) {
            return Err(refuse(format!("member name {name:?} occurs twice")));
        }
        let mut opts = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .compression_level(Some(1));
        if let Some(t) = modified {
            opts = opts.last_modified_time(t);
        }
        if is_dir {
            out.add_directory(name.trim_end_matches('/'), opts)
                .map_err(|e| refuse(format!("re-packing: {e}")))?;
            continue;
        }
        if symlink {
            // Symbolic links are never delivered (archive inspection drops them too).
            continue;
        }
        if !matches!(
            method,
            CompressionMethod::Stored | CompressionMethod::Deflated
        ) {
            return Err(refuse(format!(
                "member {name:?} uses a compression method that cannot be inspected ({method:?})"
            )));
        }
        decrypted += usize::from(encrypted);
        let ratio_cap = compressed.max(1).saturating_mul(limits.max_ratio);
        let bytes = if encrypted {
            let mut f = match zip.by_index_decrypt(i, password) {
                Ok(f) => f,
                Err(zip::result::ZipError::InvalidPassword) => return Err(Fail::WrongPassword),
                Err(e) => return Err(refuse(format!("member {name:?}: {e}"))),
            };
            match read_bounded(&mut f, &name, ratio_cap, limits, budget) {
                Ok(b) => b,
                // ZipCrypto checks one octet of the key: a wrong password passes that check
                // once in 256 tries and then decrypts into garbage that fails to inflate or
                // its CRC. We cannot tell that from a damaged member, and neither opens.
                Err(ReadFail::Data) => return Err(Fail::WrongPassword),
                Err(ReadFail::Limit(why)) => return Err(refuse(why)),
            }
        } else {
            let mut f = zip
                .by_index(i)
                .map_err(|e| refuse(format!("member {name:?}: {e}")))?;
            match read_bounded(&mut f, &name, ratio_cap, limits, budget) {
                Ok(b) => b,
                Err(ReadFail::Data) => return Err(refuse(format!("member {name:?} is damaged"))),
                Err(ReadFail::Limit(why)) => return Err(refuse(why)),
            }
        };
        // A password-protected zip inside (or a plain one holding one), opened with the same
        // password while the depth allows; what stays encrypted the sanitiser will hold.
        let bytes = if depth + 1 < limits.max_depth.max(1)
            && bytes.starts_with(b"PK\x03\x04")
            && encrypted_inside(
                &bytes,
                limits.max_depth.saturating_sub(depth + 2),
                limits,
                budget,
            ) {
            match decrypt_zip(&bytes, password, limits, budget, depth + 1) {
                Ok(inner) => {
                    files += inner.files;
                    decrypted += inner.decrypted;
                    inner.zip
                }
                Err(Fail::WrongPassword) => {
                    files += 1;
                    nested_wrong = true;
                    bytes
                }
                Err(e) => return Err(e),
            }
        } else {
            files += 1;
            bytes
        };
        out.start_file(name.as_str(), opts)
            .and_then(|()| out.write_all(&bytes).map_err(Into::into))
            .map_err(|e| refuse(format!("re-packing: {e}")))?;
    }
    if decrypted == 0 {
        // Nothing opened: the password fits none of the encrypted zips inside (or, at the
        // top, there was nothing encrypted to open at all).
        return Err(if depth > 0 || nested_wrong {
            Fail::WrongPassword
        } else {
            refuse("no member is password-protected".into())
        });
    }
    let zip = out
        .finish()
        .map_err(|e| refuse(format!("re-packing: {e}")))?
        .into_inner();
    Ok(Plain {
        zip,
        files,
        decrypted,
    })
}

enum ReadFail {
    /// The data does not decompress or check (wrong key or damage).
    Data,
    /// A limit was reached.
    Limit(String),
}

/// Reads a member to its end under the ratio cap (past [`RATIO_FLOOR`]), the budget and the
/// deadline.
fn read_bounded(
    r: &mut dyn Read,
    name: &str,
    ratio_cap: u64,
    limits: &DecryptLimits,
    budget: &mut Budget,
) -> Result<Vec<u8>, ReadFail> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        if Instant::now() >= limits.deadline {
            return Err(ReadFail::Limit("sanitising deadline reached".into()));
        }
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(ReadFail::Data),
        };
        let total = out.len() as u64 + n as u64;
        if total > RATIO_FLOOR && total > ratio_cap {
            return Err(ReadFail::Limit(format!(
                "member {name:?} expands beyond the compression ratio limit {}:1 \
                 (decompression bomb)",
                limits.max_ratio
            )));
        }
        if budget.octets < n as u64 {
            return Err(ReadFail::Limit(format!(
                "uncompressed contents exceed the archive size limit ({} octets)",
                limits.max_uncompressed
            )));
        }
        budget.octets -= n as u64;
        out.extend_from_slice(buf.get(..n).unwrap_or_default());
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// The new message.

struct Opened {
    name: String,
    data: Vec<u8>,
}

/// The message handed to the sanitiser: the original's address and date fields, a fresh
/// Message-ID pointing back at the original, the explanation and the re-packed zips.
fn build_message(
    headers: &[Header],
    opened: &[Opened],
    not_opened: &[String],
    id: &str,
    by: &str,
    lang: Language,
    hostname: &str,
) -> Vec<u8> {
    let mut m = Vec::new();
    let mut original_msgid = None;
    for h in headers {
        let keep = ["From", "Sender", "Reply-To", "To", "Cc", "Subject", "Date"]
            .iter()
            .any(|n| h.is(n));
        if keep {
            m.extend_from_slice(h.name.as_bytes());
            m.extend_from_slice(b": ");
            m.extend_from_slice(&h.value);
            m.extend_from_slice(b"\r\n");
        } else if h.is("Message-ID") && original_msgid.is_none() {
            original_msgid = crate::mime::header::parse_msg_ids(&h.value)
                .into_iter()
                .next();
        }
    }
    let stamp = ms(SystemTime::now());
    let host = if hostname.is_empty() || !hostname.is_ascii() {
        "mugaika.invalid"
    } else {
        hostname
    };
    m.extend_from_slice(format!("Message-ID: <unlock.{id}.{stamp}@{host}>\r\n").as_bytes());
    if let Some(orig) = original_msgid {
        let orig = orig.trim_start_matches('<').trim_end_matches('>');
        m.extend_from_slice(
            format!("In-Reply-To: <{orig}>\r\nReferences: <{orig}>\r\n").as_bytes(),
        );
    }
    let boundary = format!("=_mugaika_unlock_{id}_{stamp}");
    m.extend_from_slice(b"MIME-Version: 1.0\r\n");
    m.extend_from_slice(
        format!("Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n").as_bytes(),
    );
    let text = explanation(lang, id, by, opened, not_opened);
    m.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
    m.extend_from_slice(
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n",
    );
    base64_lines(&mut m, text.as_bytes());
    for (i, z) in opened.iter().enumerate() {
        let name = zip_name(&z.name, i);
        let enc = rfc2231(&name);
        m.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        m.extend_from_slice(
            format!(
                "Content-Type: application/zip; name*={enc}\r\n\
                 Content-Disposition: attachment; filename*={enc}\r\n\
                 Content-Transfer-Encoding: base64\r\n\r\n"
            )
            .as_bytes(),
        );
        base64_lines(&mut m, &z.data);
    }
    m.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    m
}

/// The attachment's name, ending in `.zip`.
fn zip_name(name: &str, i: usize) -> String {
    if name.is_empty() {
        format!("archive-{}.zip", i + 1)
    } else if name.to_ascii_lowercase().ends_with(".zip") {
        name.to_string()
    } else {
        format!("{name}.zip")
    }
}

/// `utf-8''percent-encoded` (RFC 2231).
fn rfc2231(s: &str) -> String {
    let mut out = String::from("utf-8''");
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn base64_lines(m: &mut Vec<u8>, data: &[u8]) {
    let b64 = base64::engine::general_purpose::STANDARD.encode(data);
    for line in b64.as_bytes().chunks(76) {
        m.extend_from_slice(line);
        m.extend_from_slice(b"\r\n");
    }
}

/// The text of the unlocked message (JIS X 0208 and ASCII only, so that it survives an
/// ISO-2022-JP output charset).
fn explanation(
    lang: Language,
    id: &str,
    by: &str,
    opened: &[Opened],
    not_opened: &[String],
) -> String {
    let names = |v: &mut dyn Iterator<Item = &str>| v.collect::<Vec<_>>().join(", ");
    let opened_names = names(&mut opened.iter().map(|o| o.name.as_str()));
    let mut s = String::new();
    match lang {
        Language::Ja => {
            s.push_str("【mugaika パスワード付きZIPファイルの開封のお知らせ】\n");
            s.push_str(&format!(
                "隔離していたメール（隔離ID: {id}）のパスワード付きZIPファイルを、受信者または管理者の依頼により {by} が開封しました。\n"
            ));
            s.push_str(
                "中のファイルは通常のポリシーで無害化しています。原本のパスワード付きファイルは配信していません。\n",
            );
            s.push_str(&format!("開封したファイル: {opened_names}\n"));
            if !not_opened.is_empty() {
                s.push_str(&format!(
                    "このパスワードでは開けなかったファイル（隔離したままです）: {}\n",
                    not_opened.join(", ")
                ));
            }
        }
        Language::En => {
            s.push_str("[mugaika: password-protected zip opened]\n");
            s.push_str(&format!(
                "The password-protected zip attachment of the message held in quarantine (quarantine id: {id}) was opened by {by} at the recipient's or administrator's request.\n"
            ));
            s.push_str(
                "Its files were sanitised by the usual policy; the password-protected original was not delivered.\n",
            );
            s.push_str(&format!("Opened: {opened_names}\n"));
            if !not_opened.is_empty() {
                s.push_str(&format!(
                    "Not opened by this password (still held): {}\n",
                    not_opened.join(", ")
                ));
            }
        }
    }
    s
}

// ---------------------------------------------------------------------------------------
// Sanitising and queueing.

/// Sanitises `message` for each recipient group into one spool entry, records the audit row
/// and commits the entry. Returns the queue id and the reports.
#[allow(clippy::too_many_arguments)]
fn queue(
    q: &Quarantine,
    rec: &super::Record,
    message: &[u8],
    headers: &[Header],
    spool_dir: &Path,
    cfg: &Config,
    recipients: &[String],
    by: &str,
) -> Result<(String, Vec<Report>), UnlockError> {
    let policies = crate::policy::Policies::new(cfg)
        .map_err(|e| SanitizeError::Internal(format!("policies: {e}")))?;
    let auth = if policies.trusted_authserv_ids().is_empty() {
        Vec::new()
    } else {
        let mut block = Vec::new();
        for h in headers {
            block.extend_from_slice(h.name.as_bytes());
            block.extend_from_slice(b": ");
            block.extend_from_slice(&h.value);
            block.extend_from_slice(b"\r\n");
        }
        crate::policy::auth_results(&block, policies.trusted_authserv_ids())
    };
    let client: Option<IpAddr> = rec.client.trim().parse().ok();
    let facts = crate::policy::Facts {
        sender: &rec.sender,
        recipient: "",
        client,
        size: rec.size,
        auth: &auth,
        first_contact: false,
    };
    let groups = policies.group(&facts, recipients);

    let spool = Spool::attach(spool_dir)?;
    let mut inc = spool.create()?;
    {
        let f = inc.original_file();
        f.write_all(message)?;
        f.flush()?;
    }
    let input: PathBuf = inc.original_path().to_path_buf();
    let now = SystemTime::now();
    let received = format!(
        "by {} (mugaika quarantine unlock) id {}; {}",
        if cfg.server.hostname.is_ascii() && !cfg.server.hostname.is_empty() {
            cfg.server.hostname.as_str()
        } else {
            "mugaika.invalid"
        },
        inc.id,
        crate::smtp::server::received::rfc5322_date(now)
    );
    let mut reports = Vec::with_capacity(groups.len());
    let mut env = Envelope::new(rec.sender.clone(), recipients.iter().cloned());
    for (g, (resolved, rcpts)) in groups.iter().enumerate() {
        let ctx = Context {
            received: Some(received.clone()),
            quarantine_id: Some(rec.id.clone()),
            temp_dir: None,
            sanitize: resolved.rule.is_some().then(|| resolved.sanitize.clone()),
            policy: resolved.rule.clone(),
            first_contact: false,
        };
        let report = pipeline::sanitize_file(&input, cfg, &ctx, &inc.group_clean_path(g))?;
        reports.push(report);
        if g > 0 {
            for r in env
                .recipients
                .iter_mut()
                .filter(|r| rcpts.contains(&r.addr))
            {
                r.clean = Some(group_file(g));
            }
        }
    }
    // The decrypted files are not kept at rest outside the encrypted quarantine.
    {
        let f = inc.original_file();
        f.set_len(0)?;
        f.seek(SeekFrom::Start(0))?;
    }
    let queued_as = inc.id.clone();
    let seq = q.index().add_release(
        &rec.id,
        &Release {
            at: now,
            by: format!("{by} (unlocked)"),
            to: recipients.to_vec(),
            queued_as: queued_as.clone(),
        },
    )?;
    env.smtputf8 = !rec.sender.is_ascii() || recipients.iter().any(|r| !r.is_ascii());
    env.quarantine_id = Some(rec.id.clone());
    if let Err(e) = inc.commit(env) {
        if let Err(undo) = q.index().undo_release(&rec.id, seq) {
            tracing::error!(id = rec.id, error = %undo, "quarantine: cannot undo the audit row of a failed unlock");
        }
        return Err(e.into());
    }
    Ok((queued_as, reports))
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

/// A password read from a file: the file's contents without one trailing line break
/// (`\n` or `\r\n`), at most 4 KiB.
pub fn read_password_file(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut pw = Vec::new();
    File::open(path)?.take(4097).read_to_end(&mut pw)?;
    if pw.len() > 4096 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the password file is longer than 4 KiB",
        ));
    }
    if pw.ends_with(b"\n") {
        pw.pop();
        if pw.ends_with(b"\r") {
            pw.pop();
        }
    }
    Ok(pw)
}

/// `mugaika quarantine unlock ID --password-file F [--to ADDR]... [--by NAME]`: the body of
/// the subcommand (`cli.rs` declares it). Prints the outcome; returns the exit code.
pub fn run_cli(
    q: &Quarantine,
    cfg: &Config,
    id: &str,
    password_file: &Path,
    to: &[String],
    by: &str,
    out: &mut dyn Write,
) -> u8 {
    let password = match read_password_file(password_file) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("mugaika: password file {}: {e}", password_file.display());
            return 66; // EX_NOINPUT
        }
    };
    let to = (!to.is_empty()).then_some(to);
    match unlock(q, id, &password, &cfg.spool.dir, cfg, to, by) {
        Ok(o) => {
            let _ = writeln!(
                out,
                "unlocked {} by {by}: {} file(s) from {} queued as {} for {}",
                o.id,
                o.members,
                o.opened.join(", "),
                o.queued_as,
                o.to.join(", ")
            );
            if !o.not_opened.is_empty() {
                let _ = writeln!(
                    out,
                    "not opened by this password (still held): {}",
                    o.not_opened.join(", ")
                );
            }
            0
        }
        Err(e) => {
            eprintln!("mugaika: {e}");
            e.exit_code()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encrypted_zip(pw: &str, aes: bool) -> Vec<u8> {
        let mut w = ZipWriter::new(Cursor::new(Vec::new()));
        let opts = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
        let opts = if aes {
            opts.with_aes_encryption(zip::AesMode::Aes256, pw)
        } else {
            use zip::unstable::write::FileOptionsExt;
            opts.with_deprecated_encryption(pw.as_bytes()).unwrap()
        };
        w.start_file("a/memo.txt", opts).unwrap();
        w.write_all("請求書の件\n".as_bytes()).unwrap();
        w.finish().unwrap().into_inner()
    }

    fn limits() -> DecryptLimits {
        DecryptLimits {
            max_entries: 100,
            max_uncompressed: 1 << 20,
            max_ratio: 100,
            max_depth: 3,
            deadline: Instant::now() + Duration::from_secs(30),
        }
    }

    #[test]
    fn decrypts_zipcrypto_and_aes() {
        for aes in [false, true] {
            let z = encrypted_zip("secret", aes);
            assert!(has_encrypted_member(&z));
            let l = limits();
            let plain = decrypt_zip(&z, b"secret", &l, &mut Budget::new(&l), 0)
                .unwrap_or_else(|e| panic!("aes={aes}: {e:?}"));
            assert_eq!(plain.files, 1);
            assert!(!has_encrypted_member(&plain.zip));
            let mut a = ZipArchive::new(Cursor::new(plain.zip)).unwrap();
            let mut s = String::new();
            a.by_name("a/memo.txt")
                .unwrap()
                .read_to_string(&mut s)
                .unwrap();
            assert_eq!(s, "請求書の件\n");
            let wrong = decrypt_zip(&z, b"nope", &l, &mut Budget::new(&l), 0);
            assert!(matches!(wrong, Err(Fail::WrongPassword)), "aes={aes}");
        }
    }

    /// As archivers write it: a directory entry first (never encrypted), a plain member, then
    /// the encrypted ones. The sniffer sees an ordinary zip; the central directory tells.
    #[test]
    fn directory_first_and_mixed_members() {
        let mut w = ZipWriter::new(Cursor::new(Vec::new()));
        let plain = SimpleFileOptions::default();
        w.add_directory("見積書", plain).unwrap();
        w.start_file("見積書/readme.txt", plain).unwrap();
        w.write_all(b"readme").unwrap();
        let enc = plain.with_aes_encryption(zip::AesMode::Aes128, "pw");
        w.start_file("見積書/data.csv", enc).unwrap();
        w.write_all(b"a,b\r\n1,2\r\n").unwrap();
        let z = w.finish().unwrap().into_inner();
        assert!(!sniff::sniff(&z).is_some_and(|d| d.category == Category::EncryptedArchive));
        assert!(has_encrypted_member(&z));
        let l = limits();
        let plain = decrypt_zip(&z, b"pw", &l, &mut Budget::new(&l), 0).unwrap();
        assert_eq!(plain.files, 2);
        let mut a = ZipArchive::new(Cursor::new(plain.zip)).unwrap();
        let names: Vec<String> = a
            .file_names()
            .filter_map(Result::ok)
            .map(|n| n.to_string())
            .collect();
        assert!(names.contains(&"見積書/data.csv".to_string()), "{names:?}");
        let mut s = String::new();
        a.by_name("見積書/data.csv")
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "a,b\r\n1,2\r\n");
        assert!(matches!(
            decrypt_zip(&z, b"x", &l, &mut Budget::new(&l), 0),
            Err(Fail::WrongPassword)
        ));
        // A zip with nothing encrypted is not for unlocking.
        let mut w = ZipWriter::new(Cursor::new(Vec::new()));
        w.start_file("a.txt", SimpleFileOptions::default()).unwrap();
        w.write_all(b"a").unwrap();
        let z = w.finish().unwrap().into_inner();
        assert!(!has_encrypted_member(&z));
    }

    /// A plain zip around the encrypted one (archive inspection holds the whole outer zip).
    #[test]
    fn encrypted_zip_inside_a_plain_one() {
        let inner = encrypted_zip("secret", true);
        let mut w = ZipWriter::new(Cursor::new(Vec::new()));
        let opts = SimpleFileOptions::default();
        w.start_file("readme.txt", opts).unwrap();
        w.write_all(b"see inner.zip").unwrap();
        w.start_file("inner.zip", opts).unwrap();
        w.write_all(&inner).unwrap();
        let outer = w.finish().unwrap().into_inner();
        let l = limits();
        assert!(!has_encrypted_member(&outer));
        assert!(encrypted_inside(&outer, 1, &l, &mut Budget::new(&l)));
        assert!(!encrypted_inside(&outer, 0, &l, &mut Budget::new(&l)));
        let plain = decrypt_zip(&outer, b"secret", &l, &mut Budget::new(&l), 0).unwrap();
        assert_eq!((plain.files, plain.decrypted), (2, 1));
        let mut a = ZipArchive::new(Cursor::new(plain.zip)).unwrap();
        let mut inner_plain = Vec::new();
        a.by_name("inner.zip")
            .unwrap()
            .read_to_end(&mut inner_plain)
            .unwrap();
        assert!(!encrypted_inside(&inner_plain, 3, &l, &mut Budget::new(&l)));
        assert!(matches!(
            decrypt_zip(&outer, b"wrong", &l, &mut Budget::new(&l), 0),
            Err(Fail::WrongPassword)
        ));
    }

    /// Names that climb out of the archive refuse it (before any password is tried).
    #[test]
    fn unsafe_names_refused() {
        let mut w = ZipWriter::new(Cursor::new(Vec::new()));
        let enc = SimpleFileOptions::default().with_aes_encryption(zip::AesMode::Aes256, "pw");
        w.start_file("../../etc/cron.d/x", enc).unwrap();
        w.write_all(b"x").unwrap();
        let z = w.finish().unwrap().into_inner();
        let l = limits();
        match decrypt_zip(&z, b"pw", &l, &mut Budget::new(&l), 0) {
            Err(Fail::Refused(why)) => assert!(why.contains("climbs out"), "{why}"),
            other => panic!("{:?}", other.map(|p| p.files)),
        }
    }

    #[test]
    fn budget_is_enforced() {
        let mut w = ZipWriter::new(Cursor::new(Vec::new()));
        let opts = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .with_aes_encryption(zip::AesMode::Aes256, "pw");
        w.start_file("zeros.bin", opts).unwrap();
        w.write_all(&vec![0u8; 4 << 20]).unwrap();
        let z = w.finish().unwrap().into_inner();
        let l = limits();
        match decrypt_zip(&z, b"pw", &l, &mut Budget::new(&l), 0) {
            Err(Fail::Refused(why)) => {
                assert!(why.contains("ratio") || why.contains("limit"), "{why}")
            }
            Err(e) => panic!("{e:?}"),
            Ok(_) => panic!("a 4 MiB bomb member passed a 1 MiB budget"),
        }
    }

    #[test]
    fn attempts_window() {
        let dir = tempfile::tempdir().unwrap();
        let t = Throttle {
            max_failures: 2,
            window: Duration::from_secs(60),
        };
        let now = SystemTime::now();
        let mut a = Attempts::open(dir.path(), "ABC").unwrap();
        assert_eq!(a.locked_out(&t, now).unwrap(), None);
        assert_eq!(a.record(Outcome::Fail, now, &t).unwrap(), 1);
        assert_eq!(a.record(Outcome::Ok, now, &t).unwrap(), 1);
        assert_eq!(a.locked_out(&t, now).unwrap(), None);
        assert_eq!(a.record(Outcome::Fail, now, &t).unwrap(), 2);
        let wait = a.locked_out(&t, now).unwrap().expect("locked out");
        assert!(wait <= Duration::from_secs(60) && wait >= Duration::from_secs(59));
        assert_eq!(
            a.locked_out(&t, now + Duration::from_secs(61)).unwrap(),
            None
        );
    }

    #[test]
    fn names() {
        assert_eq!(
            rfc2231("請求書.zip"),
            "utf-8''%E8%AB%8B%E6%B1%82%E6%9B%B8.zip"
        );
        assert_eq!(zip_name("a", 0), "a.zip");
        assert_eq!(zip_name("", 1), "archive-2.zip");
        assert_eq!(safe_attachment_name("..\\x/y.zip"), "y.zip");
    }
}
