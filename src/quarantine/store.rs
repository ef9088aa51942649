//! The blobs of the quarantine and their key.
//!
//! A blob is `dir/blobs/ID.mgq`:
//!
//! ```text
//! "MGKQ"  version (1 octet, 1)  nonce (12 octets)
//! chunk 0, chunk 1, ...   each: up to 1 MiB of ciphertext + 16-octet AES-256-GCM tag
//! ```
//!
//! The sealed plaintext is one zstd frame of `original || metadata JSON || metadata length
//! (u32, big-endian)`, cut into 1 MiB chunks; every chunk is sealed on its own (AES-256-GCM,
//! by `ring`) with the nonce XOR its index and, as associated data, the 17-octet header, the
//! id and a last-chunk flag. So a blob renamed to another id, with its header edited, its
//! chunks reordered, or cut short at a chunk boundary, does not open. The metadata (the
//! [`NewEntry`] and the SHA-256) lets an orphan blob, whose index row a crash prevented, be
//! indexed again from the blob alone.
//!
//! Memory: writing streams the original file through the hasher, the compressor and the
//! sealer, holding one chunk (1 MiB) whatever the size of the message. Reading streams the
//! chunks into the decompressor; the original itself is returned whole (the callers need it
//! whole), bounded by [`MAX_ORIGINAL`].
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
        let nonce: [u8; NONCE_LEN] = rand::random();
        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(MAGIC);
        header.push(VERSION);
        header.extend_from_slice(&nonce);
        let tmp = self
            .blobs
            .join(format!(".{}.{:08x}.tmp", entry.id, rand::random::<u32>()));
        let target = self.path(&entry.id);
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| ctx(e, "cannot create", &tmp))?;
        // Removes the temporary file on every early return.
        struct Tmp<'a>(&'a Path);
        impl Drop for Tmp<'_> {
            fn drop(&mut self) {
                let _ = fs::remove_file(self.0);
            }
        }
        let _tmp_guard = Tmp(&tmp);
        out.write_all(&header)
            .map_err(|e| ctx(e, "cannot write", &tmp))?;
        let sealer = SealWriter::new(&self.cipher, nonce, aad(&header, &entry.id), out);
        let mut enc = zstd::stream::write::Encoder::new(sealer, self.level)
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
            enc.write_all(chunk)
                .map_err(|e| ctx(e, "cannot write", &tmp))?;
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
            .map_err(|e| ctx(e, "cannot write", &tmp))?;
        let sealer = enc.finish().map_err(|e| ctx(e, "cannot write", &tmp))?;
        let (out, sealed) = sealer.finish().map_err(|e| ctx(e, "cannot write", &tmp))?;
        out.sync_all().map_err(|e| ctx(e, "cannot fsync", &tmp))?;
        drop(out);
        let stored_size = HEADER_LEN as u64 + sealed;
        // A link, unlike a rename, never replaces an existing blob of the same id.
        let mut linked = fs::hard_link(&tmp, &target);
        if let Err(e) = &linked {
            if e.kind() != io::ErrorKind::AlreadyExists && !target.exists() {
                // No hard links on this file system (some network ones): rename instead.
                linked = fs::rename(&tmp, &target);
            }
        }
        drop(_tmp_guard);
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
        let stored_size = f
            .metadata()
            .map_err(|e| ctx(e, "cannot stat", &path))?
            .len();
        let mut src = BufReader::with_capacity(64 << 10, f);
        let mut header = [0u8; HEADER_LEN];
        if src.read_exact(&mut header).is_err() || header.get(..4) != Some(MAGIC.as_slice()) {
            return Err(corrupt("not a quarantine blob (bad magic)".into()));
        }
        if header.get(4) != Some(&VERSION) {
            return Err(corrupt(format!("unknown blob version {:?}", header.get(4))));
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(header.get(5..HEADER_LEN).unwrap_or(&[0u8; NONCE_LEN]));
        let opener = OpenReader::new(&self.cipher, nonce, aad(&header, id), src);
        let mut dec = zstd::stream::read::Decoder::with_buffer(BufReader::new(opener))
            .map_err(|e| corrupt(format!("zstd: {e}")))?;
        let mut plain = Vec::new();
        let read = (&mut dec)
            .take(MAX_ORIGINAL + MAX_META as u64 + 5)
            .read_to_end(&mut plain);
        if let Err(e) = read {
            let opener = dec.get_ref().get_ref();
            return Err(if opener.refused {
                corrupt(format!("{NO_AUTH} (wrong key, wrong id, or damaged)"))
            } else if opener.io_failed {
                QuarantineError::Io(ctx(e, "cannot read", &path))
            } else {
                corrupt(format!("zstd: {e}"))
            });
        }
        drop(dec);
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

/// Octets of compressed data sealed per chunk: the memory a keep or a read needs beyond the
/// original itself.
const CHUNK: usize = 1 << 20;
const TAG_LEN: usize = 16;

/// The nonce of chunk `counter`: the blob's random nonce with the counter XORed into its last
/// four octets (so chunks cannot be reordered or swapped between blobs).
fn chunk_nonce(base: &[u8; NONCE_LEN], counter: u32) -> [u8; NONCE_LEN] {
    let mut n = *base;
    for (b, c) in n.iter_mut().skip(NONCE_LEN - 4).zip(counter.to_be_bytes()) {
        *b ^= c;
    }
    n
}

/// The associated data of a chunk: the blob's (header and id) and whether it is the last
/// chunk, so a blob cut at a chunk boundary does not open.
fn chunk_aad(base: &[u8], last: bool) -> Vec<u8> {
    let mut a = base.to_vec();
    a.push(u8::from(last));
    a
}

/// Seals what is written into chunks of [`CHUNK`] octets (each with its tag) into `out`.
struct SealWriter<'a> {
    cipher: &'a Cipher,
    nonce: [u8; NONCE_LEN],
    aad: Vec<u8>,
    buf: Vec<u8>,
    counter: u32,
    out: File,
    written: u64,
}

impl<'a> SealWriter<'a> {
    fn new(cipher: &'a Cipher, nonce: [u8; NONCE_LEN], aad: Vec<u8>, out: File) -> Self {
        SealWriter {
            cipher,
            nonce,
            aad,
            buf: Vec::with_capacity(CHUNK + TAG_LEN),
            counter: 0,
            out,
            written: 0,
        }
    }

    fn seal(&mut self, last: bool) -> io::Result<()> {
        let nonce = chunk_nonce(&self.nonce, self.counter);
        self.cipher
            .seal(&nonce, &chunk_aad(&self.aad, last), &mut self.buf)
            .ok_or_else(|| io::Error::other("encryption failed"))?;
        self.out.write_all(&self.buf)?;
        self.written += self.buf.len() as u64;
        self.buf.clear();
        self.counter = self
            .counter
            .checked_add(1)
            .ok_or_else(|| io::Error::other("original too large"))?;
        Ok(())
    }

    /// Seals the last chunk (possibly empty); returns the file and the octets written.
    fn finish(mut self) -> io::Result<(File, u64)> {
        self.seal(true)?;
        Ok((self.out, self.written))
    }
}

impl Write for SealWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = (CHUNK - self.buf.len()).min(data.len());
        self.buf
            .extend_from_slice(data.get(..n).unwrap_or_default());
        if self.buf.len() >= CHUNK {
            self.seal(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Opens the chunks of a blob one at a time, as a plain reader of the compressed stream.
struct OpenReader<'a, R> {
    cipher: &'a Cipher,
    nonce: [u8; NONCE_LEN],
    aad: Vec<u8>,
    src: R,
    counter: u32,
    /// The current chunk, decrypted, and how much of it was read.
    plain: Vec<u8>,
    pos: usize,
    /// The chunk after the current one, read ahead to know whether the current is the last.
    ahead: Option<Vec<u8>>,
    done: bool,
    /// A chunk did not authenticate.
    refused: bool,
    /// Reading the file failed.
    io_failed: bool,
}

impl<'a, R: Read> OpenReader<'a, R> {
    fn new(cipher: &'a Cipher, nonce: [u8; NONCE_LEN], aad: Vec<u8>, src: R) -> Self {
        OpenReader {
            cipher,
            nonce,
            aad,
            src,
            counter: 0,
            plain: Vec::new(),
            pos: 0,
            ahead: None,
            done: false,
            refused: false,
            io_failed: false,
        }
    }

    /// Up to one sealed chunk from the file (shorter only at its end).
    fn raw_chunk(&mut self) -> io::Result<Vec<u8>> {
        let mut buf = Vec::with_capacity(CHUNK + TAG_LEN);
        (&mut self.src)
            .take((CHUNK + TAG_LEN) as u64)
            .read_to_end(&mut buf)
            .inspect_err(|_| self.io_failed = true)?;
        Ok(buf)
    }

    fn next_chunk(&mut self) -> io::Result<()> {
        let mut cur = match self.ahead.take() {
            Some(c) => c,
            None => self.raw_chunk()?,
        };
        let refuse = |this: &mut Self| {
            this.refused = true;
            io::Error::new(io::ErrorKind::InvalidData, NO_AUTH)
        };
        if cur.len() < TAG_LEN {
            // Cut off before its last chunk.
            return Err(refuse(self));
        }
        let next = if cur.len() < CHUNK + TAG_LEN {
            Vec::new()
        } else {
            self.raw_chunk()?
        };
        let last = next.is_empty();
        let nonce = chunk_nonce(&self.nonce, self.counter);
        if self
            .cipher
            .open(&nonce, &chunk_aad(&self.aad, last), &mut cur)
            .is_none()
        {
            return Err(refuse(self));
        }
        self.counter = self.counter.checked_add(1).ok_or_else(|| refuse(self))?;
        self.plain = cur;
        self.pos = 0;
        if last {
            self.done = true;
        } else {
            self.ahead = Some(next);
        }
        Ok(())
    }
}

impl<R: Read> Read for OpenReader<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.plain.len() {
            if self.done {
                return Ok(0);
            }
            self.next_chunk()?;
        }
        let avail = self.plain.get(self.pos..).unwrap_or_default();
        let n = avail.len().min(out.len());
        if let (Some(dst), Some(src)) = (out.get_mut(..n), avail.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.pos += n;
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
    fn large_blobs_stream_and_cut_blobs_do_not_open() {
        let d = tempfile::tempdir().unwrap();
        let s = BlobStore::open(d.path(), None, 3).unwrap();
        let src = d.path().join("big.eml");
        // Incompressible, so that the blob has several chunks.
        let body: Vec<u8> = (0..3 * CHUNK + 12345)
            .map(|_| rand::random::<u8>())
            .collect();
        fs::write(&src, &body).unwrap();
        let st = s.put(&entry("BIG"), &src).unwrap();
        assert!(st.stored_size > (3 * CHUNK) as u64);
        assert_eq!(s.get("BIG").unwrap().original, body);
        let raw = fs::read(s.path("BIG")).unwrap();
        // Cut after whole chunks: the last one left was not sealed as last.
        for chunks in 1..=3 {
            fs::write(
                s.path("BIG"),
                &raw[..HEADER_LEN + chunks * (CHUNK + TAG_LEN)],
            )
            .unwrap();
            match s.get("BIG") {
                Err(QuarantineError::Corrupt { why, .. }) => {
                    assert!(why.contains(NO_AUTH), "{why}")
                }
                other => panic!("cut after {chunks} chunks: {other:?}"),
            }
        }
        // Two chunks swapped.
        let mut swapped = raw.clone();
        let (a, b) = (HEADER_LEN, HEADER_LEN + CHUNK + TAG_LEN);
        let first = raw[a..b].to_vec();
        swapped[a..b].copy_from_slice(&raw[b..b + CHUNK + TAG_LEN]);
        swapped[b..b + CHUNK + TAG_LEN].copy_from_slice(&first);
        fs::write(s.path("BIG"), &swapped).unwrap();
        assert!(matches!(s.get("BIG"), Err(QuarantineError::Corrupt { .. })));
        // Header only, or nothing at all.
        fs::write(s.path("BIG"), &raw[..HEADER_LEN]).unwrap();
        assert!(matches!(s.get("BIG"), Err(QuarantineError::Corrupt { .. })));
        fs::write(s.path("BIG"), b"").unwrap();
        assert!(matches!(s.get("BIG"), Err(QuarantineError::Corrupt { .. })));
        // Intact again: opens.
        fs::write(s.path("BIG"), &raw).unwrap();
        assert_eq!(s.get("BIG").unwrap().original, body);
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
