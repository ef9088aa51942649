//! The blobs of the quarantine and their key.
//!
//! A blob is `dir/blobs/ID.mgq`:
//!
//! ```text
//! "MGKQ"  version (1 octet, 1)  nonce (12 octets)  AES-256-GCM ciphertext and tag
//! ```
//!
//! AES-256-GCM is `ring`'s (standard: 12-octet nonce, 16-octet tag). The associated data is the 17-octet header followed by the id, so a blob renamed to
//! another id (or with its header edited) does not open. The plaintext is one zstd frame of
//! `original || metadata JSON || metadata length (u32, big-endian)`: the metadata (the
//! [`NewEntry`] and the SHA-256) lets an orphan blob, whose index row a crash prevented, be
//! indexed again from the blob alone. The original is streamed from its file into the
//! compressor, so writing holds only the compressed form in memory; reading decompresses the
//! whole original into memory (bounded by [`MAX_ORIGINAL`]), which the callers need anyway.
//!
//! The key is 32 random octets in `key_file` (default `dir/key`), created with mode 0600 if
//! absent: written to a temporary file, then hard-linked to its name, which fails if another
//! process linked its own first (then that key is used). A key file of another length is an
//! error, never replaced.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use super::{from_ms, to_ms, NewEntry, QuarantineError, Record, Status};

const MAGIC: &[u8; 4] = b"MGKQ";
const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const HEADER_LEN: usize = 4 + 1 + NONCE_LEN;
const KEY_LEN: usize = 32;
const EXT: &str = "mgq";
const KEYCHECK_PLAIN: &[u8] = b"mugaika quarantine key check v1";
const KEYCHECK_AAD: &[u8] = b"mugaika keycheck";
/// Largest original read back (decompressed). Originals are at most `max_message_size`.
pub const MAX_ORIGINAL: u64 = 1 << 30;
/// Largest blob read (a compressed original cannot be much larger than the original).
const MAX_BLOB: u64 = MAX_ORIGINAL + (64 << 20);
/// How an authentication failure is worded (and recognised).
const NO_AUTH: &str = "does not authenticate";
/// Largest metadata record inside a blob.
const MAX_META: usize = 16 << 20;

/// The blob directory and the cipher.
pub struct BlobStore {
    dir: PathBuf,
    blobs: PathBuf,
    cipher: Cipher,
    level: i32,
}

/// AES-256-GCM (12-octet nonce, 16-octet tag appended), by `ring`: its assembly runs at
/// about 1 GB/s even in a debug build, where generic Rust AES code runs at a few MB/s.
struct Cipher(ring::aead::LessSafeKey);

impl Cipher {
    fn new(key: &[u8; KEY_LEN]) -> Option<Cipher> {
        let k = ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, key).ok()?;
        Some(Cipher(ring::aead::LessSafeKey::new(k)))
    }

    /// Encrypts `buf` in place and appends the tag.
    fn seal(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], buf: &mut Vec<u8>) -> Option<()> {
        let nonce = ring::aead::Nonce::assume_unique_for_key(*nonce);
        self.0
            .seal_in_place_append_tag(nonce, ring::aead::Aad::from(aad), buf)
            .ok()
    }

    /// Checks the tag and decrypts `buf` in place, leaving only the plaintext.
    fn open(&self, nonce: &[u8], aad: &[u8], buf: &mut Vec<u8>) -> Option<()> {
        let nonce = ring::aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
        let n = self
            .0
            .open_in_place(nonce, ring::aead::Aad::from(aad), buf)
            .ok()?
            .len();
        buf.truncate(n);
        Some(())
    }
}

/// What [`BlobStore::put`] stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub sha256: String,
    pub stored_size: u64,
}

impl Stored {
    /// The index row of `entry` stored as `self`, status held.
    pub fn record(&self, entry: &NewEntry) -> Record {
        Record {
            id: entry.id.clone(),
            received_at: entry.received_at,
            client: entry.client.clone(),
            sender: entry.sender.clone(),
            recipients: entry.recipients.clone(),
            subject: entry.subject.clone(),
            message_id: entry.message_id.clone(),
            size: entry.size,
            reason: entry.reason.clone(),
            actions: entry.actions.clone(),
            sha256: self.sha256.clone(),
            status: Status::Held,
            stored_size: self.stored_size,
        }
    }
}

/// A blob opened by [`BlobStore::get`].
#[derive(Debug)]
pub struct Opened {
    pub entry: NewEntry,
    pub original: Vec<u8>,
    /// SHA-256 of `original` as computed now (compare with the index's).
    pub sha256: String,
    pub stored: Stored,
}

/// The metadata inside a blob.
#[derive(serde::Serialize, serde::Deserialize)]
struct Meta {
    id: String,
    received_at_ms: i64,
    client: String,
    sender: String,
    recipients: Vec<String>,
    subject: Option<String>,
    message_id: Option<String>,
    size: u64,
    reason: String,
    actions: serde_json::Value,
    sha256: String,
}

fn ctx(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ctx(e, "cannot fsync directory", dir))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|p| u8::from_str_radix(p, 16).ok()))
        .collect()
}

impl BlobStore {
    /// Opens (creating) `dir` and `dir/blobs`, and reads or creates the key.
    pub fn open(
        dir: &Path,
        key_file: Option<&Path>,
        level: i32,
    ) -> Result<BlobStore, QuarantineError> {
        // Private: the index holds subjects and addresses in clear. Existing directories keep
        // the mode the administrator gave them.
        let private = || {
            let mut b = fs::DirBuilder::new();
            b.recursive(true).mode(0o700);
            b
        };
        private()
            .create(dir)
            .map_err(|e| ctx(e, "cannot create", dir))?;
        let blobs = dir.join("blobs");
        private()
            .create(&blobs)
            .map_err(|e| ctx(e, "cannot create", &blobs))?;
        let key_path = key_file
            .map(Path::to_path_buf)
            .unwrap_or_else(|| dir.join("key"));
        let key = load_or_create_key(&key_path)?;
        let cipher = Cipher::new(&key).ok_or_else(|| {
            QuarantineError::WrongKey(format!("{}: unusable key", key_path.display()))
        })?;
        Ok(BlobStore {
            dir: dir.to_path_buf(),
            blobs,
            cipher,
            level: level.clamp(1, 19),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, id: &str) -> PathBuf {
        self.blobs.join(format!("{id}.{EXT}"))
    }

    /// A fresh key check value: hex of nonce and the encrypted known text.
    pub fn key_check_value(&self) -> Result<String, QuarantineError> {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let mut buf = KEYCHECK_PLAIN.to_vec();
        self.cipher
            .seal(&nonce, KEYCHECK_AAD, &mut buf)
            .ok_or_else(|| QuarantineError::WrongKey("cannot encrypt the key check".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(hex(&out))
    }

    /// Checks that our key opens the stored key check `value`.
    pub fn verify_key_check(&self, value: &str) -> Result<(), QuarantineError> {
        let wrong = || {
            QuarantineError::WrongKey(
                "the key does not open the index's key check (another key made this \
                 quarantine; restore its key file)"
                    .into(),
            )
        };
        let raw = unhex(value).ok_or_else(wrong)?;
        if raw.len() < NONCE_LEN {
            return Err(wrong());
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let mut buf = ct.to_vec();
        self.cipher
            .open(nonce, KEYCHECK_AAD, &mut buf)
            .ok_or_else(wrong)?;
        if buf != KEYCHECK_PLAIN {
            return Err(wrong());
        }
        Ok(())
    }

    /// Checks our key against up to three existing blobs: WrongKey when none opens and at
    /// least one fails authentication (a damaged blob alone proves nothing either way).
    pub fn check_key_against_blobs(&self) -> Result<(), QuarantineError> {
        let mut refused = Vec::new();
        for id in self.some_blob_ids(3)? {
            match self.get(&id) {
                Ok(_) => return Ok(()),
                Err(QuarantineError::Corrupt { why, .. }) if why.contains(NO_AUTH) => {
                    refused.push(id)
                }
                Err(e) => tracing::warn!(id, error = %e, "quarantine: blob unreadable"),
            }
        }
        if refused.is_empty() {
            return Ok(());
        }
        Err(QuarantineError::WrongKey(format!(
            "the key does not open the existing blobs {} (another key made this quarantine; \
             restore its key file)",
            refused.join(", ")
        )))
    }

    /// Stores `original` as blob `entry.id`: temporary file, fsync, link to its name (an
    /// existing blob of that id is kept: a retried commit), fsync of the directory.
    pub fn put(&self, entry: &NewEntry, original: &Path) -> Result<Stored, QuarantineError> {
        let src = File::open(original).map_err(|e| ctx(e, "cannot open", original))?;
        let mut src = BufReader::with_capacity(64 << 10, src);
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), self.level)
            .map_err(|e| ctx(e, "zstd", original))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 << 10];
        let mut size = 0u64;
        loop {
            let n = match src.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ctx(e, "cannot read", original).into()),
            };
            let chunk = buf.get(..n).unwrap_or_default();
            hasher.update(chunk);
            enc.write_all(chunk).map_err(|e| ctx(e, "zstd", original))?;
            size += n as u64;
        }
        let sha256 = hex(&hasher.finalize());
        let meta = Meta {
            id: entry.id.clone(),
            received_at_ms: to_ms(entry.received_at),
            client: entry.client.clone(),
            sender: entry.sender.clone(),
            recipients: entry.recipients.clone(),
            subject: entry.subject.clone(),
            message_id: entry.message_id.clone(),
            // The octets actually stored, whatever the caller believed.
            size,
            reason: entry.reason.clone(),
            actions: entry.actions.clone(),
            sha256: sha256.clone(),
        };
        let meta = serde_json::to_vec(&meta).map_err(|e| QuarantineError::Index(e.to_string()))?;
        let meta_len = u32::try_from(meta.len())
            .ok()
            .filter(|&n| (n as usize) <= MAX_META)
            .ok_or_else(|| QuarantineError::Index("metadata too large".into()))?;
        enc.write_all(&meta)
            .and_then(|()| enc.write_all(&meta_len.to_be_bytes()))
            .map_err(|e| ctx(e, "zstd", original))?;
        let mut body = enc.finish().map_err(|e| ctx(e, "zstd", original))?;

        let nonce: [u8; NONCE_LEN] = rand::random();
        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(MAGIC);
        header.push(VERSION);
        header.extend_from_slice(&nonce);
        let aad = aad(&header, &entry.id);
        self.cipher
            .seal(&nonce, &aad, &mut body)
            .ok_or_else(|| QuarantineError::Index("encryption failed".into()))?;

        let tmp = self
            .blobs
            .join(format!(".{}.{:08x}.tmp", entry.id, rand::random::<u32>()));
        let target = self.path(&entry.id);
        let written = (|| -> io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|e| ctx(e, "cannot create", &tmp))?;
            f.write_all(&header)
                .and_then(|()| f.write_all(&body))
                .and_then(|()| f.sync_all())
                .map_err(|e| ctx(e, "cannot write", &tmp))
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e.into());
        }
        let stored_size = (HEADER_LEN + body.len()) as u64;
        drop(body);
        // A link, unlike a rename, never replaces an existing blob of the same id.
        let mut linked = fs::hard_link(&tmp, &target);
        if let Err(e) = &linked {
            if e.kind() != io::ErrorKind::AlreadyExists && !target.exists() {
                // No hard links on this file system (some network ones): rename instead.
                linked = fs::rename(&tmp, &target);
            }
        }
        let _ = fs::remove_file(&tmp);
        let result = match linked {
            Ok(()) => Stored {
                sha256,
                stored_size,
            },
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // Kept before (a commit retried after a crash or an index error): the blob
                // there is the one the index row describes, or will. Another message under
                // the same id (two relays' ids collided) must fail, never be dropped.
                let existing = self.get(&entry.id)?;
                if existing.sha256 != sha256 {
                    return Err(QuarantineError::Io(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("quarantine id {} already holds another original", entry.id),
                    )));
                }
                existing.stored
            }
            Err(e) => {
                return Err(QuarantineError::Io(ctx(e, "cannot link blob to", &target)));
            }
        };
        sync_dir(&self.blobs)?;
        Ok(result)
    }

    /// Opens blob `id`: decrypts, decompresses, splits off the metadata, hashes the original.
    pub fn get(&self, id: &str) -> Result<Opened, QuarantineError> {
        let path = self.path(id);
        let corrupt = |why: String| QuarantineError::Corrupt {
            id: id.to_string(),
            why,
        };
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(corrupt(format!("blob {} is missing", path.display())))
            }
            Err(e) => return Err(ctx(e, "cannot open", &path).into()),
        };
        let mut raw = Vec::new();
        f.take(MAX_BLOB + 1)
            .read_to_end(&mut raw)
            .map_err(|e| ctx(e, "cannot read", &path))?;
        if raw.len() as u64 > MAX_BLOB {
            return Err(corrupt("blob too large".into()));
        }
        let stored_size = raw.len() as u64;
        if raw.len() < HEADER_LEN || raw.get(..4) != Some(MAGIC.as_slice()) {
            return Err(corrupt("not a quarantine blob (bad magic)".into()));
        }
        if raw.get(4) != Some(&VERSION) {
            return Err(corrupt(format!("unknown blob version {:?}", raw.get(4))));
        }
        let mut body = raw.split_off(HEADER_LEN);
        let header = raw;
        let nonce = header.get(5..HEADER_LEN).unwrap_or_default();
        if nonce.len() != NONCE_LEN {
            return Err(corrupt("short header".into()));
        }
        self.cipher
            .open(nonce, &aad(&header, id), &mut body)
            .ok_or_else(|| corrupt(format!("{NO_AUTH} (wrong key, wrong id, or damaged)")))?;
        let mut plain = Vec::new();
        zstd::stream::read::Decoder::new(body.as_slice())
            .map_err(|e| corrupt(format!("zstd: {e}")))?
            .take(MAX_ORIGINAL + MAX_META as u64 + 5)
            .read_to_end(&mut plain)
            .map_err(|e| corrupt(format!("zstd: {e}")))?;
        drop(body);
        let n = plain.len();
        let meta_len = plain
            .get(n.saturating_sub(4)..)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(|b| u32::from_be_bytes(b) as usize)
            .filter(|&m| m <= MAX_META && m + 4 <= n)
            .ok_or_else(|| corrupt("bad metadata length".into()))?;
        let meta_start = n - 4 - meta_len;
        let meta: Meta = serde_json::from_slice(plain.get(meta_start..n - 4).unwrap_or_default())
            .map_err(|e| corrupt(format!("bad metadata: {e}")))?;
        if meta.id != id {
            return Err(corrupt(format!("blob holds id {}", meta.id)));
        }
        plain.truncate(meta_start);
        let sha256 = hex(&Sha256::digest(&plain));
        if sha256 != meta.sha256 {
            return Err(corrupt("SHA-256 does not match the blob's metadata".into()));
        }
        let entry = NewEntry {
            id: meta.id,
            received_at: from_ms(meta.received_at_ms),
            client: meta.client,
            sender: meta.sender,
            recipients: meta.recipients,
            subject: meta.subject,
            message_id: meta.message_id,
            size: meta.size,
            reason: meta.reason,
            actions: meta.actions,
        };
        Ok(Opened {
            entry,
            original: plain,
            sha256: sha256.clone(),
            stored: Stored {
                sha256,
                stored_size,
            },
        })
    }

    /// Deletes blob `id` (absent is fine). Call [`BlobStore::sync`] after a batch.
    pub fn remove(&self, id: &str) -> Result<(), QuarantineError> {
        let p = self.path(id);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ctx(e, "cannot remove", &p).into()),
        }
    }

    /// fsync of the blob directory.
    pub fn sync(&self) -> Result<(), QuarantineError> {
        Ok(sync_dir(&self.blobs)?)
    }

    /// Ids of every blob.
    pub fn ids(&self) -> Result<Vec<String>, QuarantineError> {
        let mut ids = Vec::new();
        for e in fs::read_dir(&self.blobs).map_err(|e| ctx(e, "cannot list", &self.blobs))? {
            let e = e.map_err(|e| ctx(e, "cannot list", &self.blobs))?;
            if let Some(id) = blob_id(&e.file_name()) {
                ids.push(id);
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Ids of the blobs last modified between `since` (None: any time) and `before`.
    pub fn ids_modified(
        &self,
        since: Option<SystemTime>,
        before: SystemTime,
    ) -> Result<Vec<String>, QuarantineError> {
        let mut ids = Vec::new();
        for e in fs::read_dir(&self.blobs).map_err(|e| ctx(e, "cannot list", &self.blobs))? {
            let e = e.map_err(|e| ctx(e, "cannot list", &self.blobs))?;
            let Some(id) = blob_id(&e.file_name()) else {
                continue;
            };
            let Ok(mtime) = e.metadata().and_then(|m| m.modified()) else {
                continue;
            };
            if mtime <= before && since.is_none_or(|s| mtime >= s) {
                ids.push(id);
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// The ids of at most `n` blobs (the first the directory lists).
    pub fn some_blob_ids(&self, n: usize) -> Result<Vec<String>, QuarantineError> {
        let mut ids = Vec::new();
        for e in fs::read_dir(&self.blobs).map_err(|e| ctx(e, "cannot list", &self.blobs))? {
            if ids.len() >= n {
                break;
            }
            let e = e.map_err(|e| ctx(e, "cannot list", &self.blobs))?;
            if let Some(id) = blob_id(&e.file_name()) {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    /// Removes temporary blobs (a crash mid-write) older than `age`; younger ones may be
    /// another process's write in progress.
    pub fn remove_stale_temporaries(&self, age: Duration) -> Result<usize, QuarantineError> {
        let now = SystemTime::now();
        let mut n = 0;
        for e in fs::read_dir(&self.blobs).map_err(|e| ctx(e, "cannot list", &self.blobs))? {
            let Ok(e) = e else { continue };
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            if !(name.starts_with('.') && name.ends_with(".tmp")) {
                continue;
            }
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|d| d >= age);
            if old && fs::remove_file(e.path()).is_ok() {
                n += 1;
            }
        }
        Ok(n)
    }
}

fn blob_id(name: &std::ffi::OsStr) -> Option<String> {
    let id = name.to_str()?.strip_suffix(".mgq")?;
    super::valid_id(id).then(|| id.to_string())
}

fn aad(header: &[u8], id: &str) -> Vec<u8> {
    let mut a = header.to_vec();
    a.extend_from_slice(id.as_bytes());
    a
}

/// Reads the key, or creates it (0600) if absent. Never replaces a key file.
fn load_or_create_key(path: &Path) -> Result<[u8; KEY_LEN], QuarantineError> {
    match read_key(path) {
        Ok(k) => return Ok(k),
        Err(QuarantineError::Io(e)) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(|e| ctx(e, "cannot create", parent))?;
    let key: [u8; KEY_LEN] = rand::random();
    let tmp = parent.join(format!(".mugaika-key.{:08x}.tmp", rand::random::<u32>()));
    let written = (|| -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| ctx(e, "cannot create", &tmp))?;
        f.write_all(&key)
            .and_then(|()| f.sync_all())
            .map_err(|e| ctx(e, "cannot write", &tmp))
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e.into());
    }
    // A link fails when the name exists: of two processes racing, one key wins, complete.
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            sync_dir(parent)?;
            tracing::warn!(
                key = %path.display(),
                "quarantine: created a new key; back it up, the originals cannot be read without it"
            );
            Ok(key)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read_key(path),
        Err(e) => Err(ctx(e, "cannot create", path).into()),
    }
}

fn read_key(path: &Path) -> Result<[u8; KEY_LEN], QuarantineError> {
    let f = File::open(path).map_err(|e| ctx(e, "cannot open key", path))?;
    if let Ok(m) = f.metadata() {
        if m.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                key = %path.display(),
                "quarantine: the key file is readable by group or others (chmod 600)"
            );
        }
    }
    let mut buf = Vec::new();
    f.take(KEY_LEN as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| ctx(e, "cannot read key", path))?;
    <[u8; KEY_LEN]>::try_from(buf.as_slice()).map_err(|_| {
        QuarantineError::WrongKey(format!(
            "{}: {} octets, a key is exactly {KEY_LEN} (not replaced: restore the right file)",
            path.display(),
            buf.len()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str) -> NewEntry {
        NewEntry {
            id: id.into(),
            received_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            client: "192.0.2.1".into(),
            sender: "a@example.jp".into(),
            recipients: vec!["b@example.lg.jp".into()],
            subject: Some("件名".into()),
            message_id: Some("<x@y>".into()),
            size: 0,
            reason: "sanitized".into(),
            actions: serde_json::json!([]),
        }
    }

    #[test]
    fn round_trip_and_tamper() {
        let d = tempfile::tempdir().unwrap();
        let s = BlobStore::open(d.path(), None, 3).unwrap();
        let src = d.path().join("o.eml");
        let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        fs::write(&src, &body).unwrap();
        let st = s.put(&entry("A1"), &src).unwrap();
        let o = s.get("A1").unwrap();
        assert_eq!(o.original, body);
        assert_eq!(o.sha256, st.sha256);
        assert_eq!(o.entry.size, body.len() as u64);
        assert_eq!(o.entry.subject.as_deref(), Some("件名"));
        // Renamed to another id: does not open.
        fs::copy(s.path("A1"), s.path("B2")).unwrap();
        assert!(matches!(s.get("B2"), Err(QuarantineError::Corrupt { .. })));
        // One flipped bit: does not open.
        let mut raw = fs::read(s.path("A1")).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        fs::write(s.path("A1"), &raw).unwrap();
        assert!(matches!(s.get("A1"), Err(QuarantineError::Corrupt { .. })));
        // The file is not readable by others.
        let mode = fs::metadata(d.path().join("key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn key_check_and_wrong_key() {
        let d = tempfile::tempdir().unwrap();
        let s = BlobStore::open(d.path(), None, 3).unwrap();
        let v = s.key_check_value().unwrap();
        s.verify_key_check(&v).unwrap();
        let other = BlobStore::open(d.path(), Some(&d.path().join("k2")), 3).unwrap();
        assert!(matches!(
            other.verify_key_check(&v),
            Err(QuarantineError::WrongKey(_))
        ));
        assert!(other.verify_key_check("zz").is_err());
        fs::write(d.path().join("short"), b"0123").unwrap();
        assert!(matches!(
            BlobStore::open(d.path(), Some(&d.path().join("short")), 3),
            Err(QuarantineError::WrongKey(_))
        ));
    }

    #[test]
    fn racing_key_creation_makes_one_key() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("key");
        let keys: Vec<[u8; KEY_LEN]> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| s.spawn(|| load_or_create_key(&path).unwrap()))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.iter().all(|k| *k == keys[0]));
    }
}
