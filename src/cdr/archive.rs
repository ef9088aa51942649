//! Archives: zip, gzip and tar opened member by member, every member disarmed through
//! [`super::disarm`] under the same policy, and the archive rebuilt from the survivors.
//!
//! Archives are how active content is smuggled past a filter that only looks at the outer
//! type, and how decompression bombs reach a server. So every archive is opened under limits
//! ([`super::Limits`]): entries, uncompressed octets, the compression ratio of each member,
//! nesting depth and the deadline. One budget of uncompressed octets and entries is shared by
//! the whole tree of nested archives (and the OOXML packages inside them), kept in a
//! thread-local [`TreeScope`] for the duration of the outermost call: a 42.zip-style bomb
//! exhausts it whatever its fan-out. Member names that are absolute or climb out of the
//! archive (zip-slip), duplicate names (even by case), and zips whose local and central
//! headers disagree (parser-differential tricks) make the whole archive refused. A
//! password-protected member makes the archive follow `encrypted_archive` (PPAP is never
//! passed on). The rebuilt archive holds only what came back from [`super::disarm`] as
//! [`Verdict::Keep`], renamed when the converter changed the type (`a.xlsm` → `a.xlsx`); it is
//! removed when nothing survives. gzip (one member) and tar (ustar, GNU and pax names) are
//! handled because they are cheap, and delivered in forms every mail reader opens (the clean
//! message carries zip, not gzip or tar): a gzip stream as the file it holds, disarmed, under
//! its own name (`Disarmed::extra`, as TNEF members), a tar as a zip of its disarmed members
//! (names, directories and times kept); 7z, rar, xz, bzip2, zstd, cab, lzh and disk images cannot
//! be inspected here and are removed. TNEF, which the type sniffer also counts as an archive,
//! is handed to `tnef.rs`.
//!
//! The zip reading half ([`ZipIn`]) is shared with the OOXML converter (`office.rs`).

use std::cell::Cell;
use std::collections::HashSet;
use std::io::{Cursor, Read, Write};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

use super::{Disarmed, Limits, Policy, Verdict};
use crate::config::AttachmentAction;

/// Below this many uncompressed octets a member is never judged by its ratio: small, highly
/// repetitive members (OOXML style sheets, padding) legitimately exceed any sane ratio, and
/// the shared octet budget bounds them anyway.
const RATIO_FLOOR: u64 = 1 << 20;

/// Read granularity: limits and the deadline are checked between chunks.
const CHUNK: usize = 64 << 10;

/// Longest member name accepted (the zip format allows 64 KiB; nothing legitimate needs it).
const MAX_NAME: usize = 1024;

// ---------------------------------------------------------------------------------------
// The shared budget of one tree of nested containers.

#[derive(Debug, Clone, Copy)]
struct Tree {
    octets: u64,
    entries: u64,
}

thread_local! {
    static TREE: Cell<Option<Tree>> = const { Cell::new(None) };
}

/// The budget of uncompressed octets and entries shared by one attachment and everything
/// nested in it. The outermost container opens it (from its [`Limits`]); nested ones, reached
/// through [`super::disarm`] on the same thread, draw from the same budget. Dropping the
/// outermost scope (also while unwinding from a converter panic) closes it.
pub(crate) struct TreeScope {
    owner: bool,
}

impl TreeScope {
    pub(crate) fn enter(limits: &Limits) -> TreeScope {
        TREE.with(|t| {
            if t.get().is_some() {
                return TreeScope { owner: false };
            }
            // Entries: each level may hold max_entries, the whole tree a few levels' worth.
            let levels = (limits.max_depth as u64).clamp(1, 4);
            t.set(Some(Tree {
                octets: limits.max_uncompressed,
                entries: (limits.max_entries as u64).saturating_mul(levels),
            }));
            TreeScope { owner: true }
        })
    }
}

impl Drop for TreeScope {
    fn drop(&mut self) {
        if self.owner {
            TREE.with(|t| t.set(None));
        }
    }
}

/// Takes `n` octets from the tree budget; false when it is exhausted.
fn take_octets(n: u64) -> bool {
    TREE.with(|t| match t.get() {
        Some(mut tree) if tree.octets >= n => {
            tree.octets -= n;
            t.set(Some(tree));
            true
        }
        Some(_) => false,
        None => true,
    })
}

/// Takes `n` entries from the tree budget; false when it is exhausted.
fn take_entries(n: u64) -> bool {
    TREE.with(|t| match t.get() {
        Some(mut tree) if tree.entries >= n => {
            tree.entries -= n;
            t.set(Some(tree));
            true
        }
        Some(_) => false,
        None => true,
    })
}

// ---------------------------------------------------------------------------------------
// Errors and shared verdict helpers.

/// Why an archive (or one member) could not be read safely.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ArchiveError {
    #[error("not a readable archive ({0})")]
    Invalid(String),
    #[error("too many entries ({0}, limit {1})")]
    TooManyEntries(u64, usize),
    #[error("too many entries in nested archives together")]
    TreeEntries,
    #[error("member {0:?} is password-protected")]
    Encrypted(String),
    #[error("member name {0:?} is absolute, climbs out of the archive or is malformed")]
    UnsafeName(String),
    #[error("member names {0:?} and {1:?} collide")]
    Duplicate(String, String),
    #[error("member {0:?} expands beyond the compression ratio limit {1}:1 (decompression bomb)")]
    Ratio(String, u64),
    #[error("uncompressed contents exceed the archive size limit ({0} octets)")]
    Total(u64),
    #[error("member {0:?} uses a compression method that cannot be inspected ({1})")]
    Method(String, String),
    #[error("sanitising deadline reached")]
    Deadline,
}

/// The verdict for password-protected content, by `encrypted_archive`.
pub(crate) fn encrypted_verdict(policy: &Policy, what: &str) -> Verdict {
    match policy.attachments.encrypted_archive {
        AttachmentAction::Quarantine => Verdict::Quarantine {
            reason: format!(
                "{what}: password-protected, cannot be inspected (encrypted_archive = quarantine)"
            ),
        },
        _ => Verdict::Remove {
            reason: format!(
                "{what}: password-protected, cannot be inspected (encrypted_archive = remove)"
            ),
        },
    }
}

/// The last path component of a member name.
pub(crate) fn base_name(name: &str) -> &str {
    name.rsplit(['/', '\\']).next().unwrap_or(name)
}

/// `name` with its extension replaced by `ext` (or `ext` appended when it has none).
pub(crate) fn with_extension(name: &str, ext: &str) -> String {
    let base_start = name.len() - base_name(name).len();
    match name[base_start..].rfind('.') {
        Some(dot) if dot > 0 => format!("{}.{ext}", &name[..base_start + dot]),
        _ => format!("{name}.{ext}"),
    }
}

/// Checks a member name: relative, no `..` component, no drive letter, no control characters.
/// Returns the name with `\` turned into `/`.
pub(crate) fn safe_member_name(name: &str) -> Result<String, ArchiveError> {
    let bad = || ArchiveError::UnsafeName(name.chars().take(200).collect());
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(bad());
    }
    if name.chars().any(|c| c.is_control()) {
        return Err(bad());
    }
    let norm = name.replace('\\', "/");
    if norm.starts_with('/') || norm.contains(':') {
        return Err(bad());
    }
    if norm.split('/').any(|c| c == "..") {
        return Err(bad());
    }
    Ok(norm)
}

/// Decodes a raw member name: UTF-8 when flagged or valid, else Shift_JIS (what Japanese
/// Windows writes without saying so), else CP437 as the zip specification says.
fn decode_name(raw: &[u8], utf8_flag: bool) -> String {
    if let Ok(s) = std::str::from_utf8(raw) {
        return s.to_string();
    }
    if !utf8_flag {
        if let Some(s) =
            encoding_rs::SHIFT_JIS.decode_without_bom_handling_and_without_replacement(raw)
        {
            return s.into_owned();
        }
    }
    raw.iter().map(|&b| cp437(b)).collect()
}

fn cp437(b: u8) -> char {
    const HIGH: &str = "ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u{a0}";
    if b < 0x80 {
        b as char
    } else {
        HIGH.chars().nth(usize::from(b - 0x80)).unwrap_or('?')
    }
}

// ---------------------------------------------------------------------------------------
// Bounded decompression.

/// Reads `r` to the end under the limits: at most `ratio_cap` octets (when past
/// [`RATIO_FLOOR`]), drawing from the tree budget, checking the deadline.
fn read_bounded(
    r: &mut dyn Read,
    name: &str,
    ratio_cap: u64,
    limits: &Limits,
    capacity_hint: u64,
) -> Result<Vec<u8>, ArchiveError> {
    let mut out = Vec::with_capacity(capacity_hint.min(1 << 20) as usize);
    let mut buf = vec![0u8; CHUNK];
    loop {
        if limits.expired() {
            return Err(ArchiveError::Deadline);
        }
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ArchiveError::Invalid(format!("member {name:?}: {e}"))),
        };
        let total = out.len() as u64 + n as u64;
        if total > RATIO_FLOOR && total > ratio_cap {
            return Err(ArchiveError::Ratio(name.to_string(), limits.max_ratio));
        }
        if !take_octets(n as u64) {
            return Err(ArchiveError::Total(limits.max_uncompressed));
        }
        out.extend_from_slice(&buf[..n]);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Zip reading (shared with office.rs).

/// One zip entry as listed by the central directory.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// Decoded name, `\` turned into `/`, checked by [`safe_member_name`].
    pub name: String,
    pub is_dir: bool,
    pub symlink: bool,
    pub compressed: u64,
    pub size: u64,
    pub method: CompressionMethod,
    pub modified: Option<zip::DateTime>,
}

/// A zip archive opened under limits: names checked, entries counted, headers consistent,
/// nothing encrypted. Members are decompressed one at a time by [`ZipIn::read`].
pub(crate) struct ZipIn<'a> {
    zip: ZipArchive<Cursor<&'a [u8]>>,
    entries: Vec<Entry>,
    limits: Limits,
}

/// The entry count declared by the end-of-central-directory record (zip64 included), read
/// before the zip crate builds its table, so that a huge directory is refused unread.
fn declared_entries(data: &[u8]) -> Option<u64> {
    let tail_start = data.len().saturating_sub(22 + 65_535);
    let tail = &data[tail_start..];
    let pos = memchr::memmem::rfind(tail, b"PK\x05\x06")?;
    let eocd = tail.get(pos..pos + 22)?;
    let count = u64::from(u16::from_le_bytes([eocd[10], eocd[11]]));
    if count != 0xFFFF {
        return Some(count);
    }
    // Zip64: the locator sits just before the EOCD and points at the zip64 record.
    let loc_start = (tail_start + pos).checked_sub(20)?;
    let loc = data.get(loc_start..loc_start + 20)?;
    if &loc[0..4] != b"PK\x06\x07" {
        return Some(count);
    }
    let off = u64::from_le_bytes(loc[8..16].try_into().ok()?);
    let rec = data.get(usize::try_from(off).ok()?..)?.get(..56)?;
    if &rec[0..4] != b"PK\x06\x06" {
        return Some(count);
    }
    Some(u64::from_le_bytes(rec[32..40].try_into().ok()?))
}

impl<'a> ZipIn<'a> {
    pub(crate) fn open(data: &'a [u8], limits: &Limits) -> Result<ZipIn<'a>, ArchiveError> {
        if let Some(n) = declared_entries(data) {
            if n > limits.max_entries as u64 {
                return Err(ArchiveError::TooManyEntries(n, limits.max_entries));
            }
        }
        let mut zip =
            ZipArchive::new(Cursor::new(data)).map_err(|e| ArchiveError::Invalid(e.to_string()))?;
        if zip.len() > limits.max_entries {
            return Err(ArchiveError::TooManyEntries(
                zip.len() as u64,
                limits.max_entries,
            ));
        }
        if !take_entries(zip.len() as u64) {
            return Err(ArchiveError::TreeEntries);
        }
        let mut entries = Vec::with_capacity(zip.len());
        let mut seen: HashSet<String> = HashSet::with_capacity(zip.len());
        let mut seen_as: Vec<(String, String)> = Vec::new();
        for i in 0..zip.len() {
            let e = zip
                .by_index_data(i)
                .map_err(|e| ArchiveError::Invalid(e.to_string()))?;
            let utf8 = e.flags().as_u16() & 0x0800 != 0;
            let raw_name = decode_name(e.name_raw(), utf8);
            if e.encrypted() {
                return Err(ArchiveError::Encrypted(raw_name));
            }
            let name = safe_member_name(&raw_name)?;
            let key = name.trim_end_matches('/').to_lowercase();
            if !seen.insert(key.clone()) {
                let first = seen_as
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, n)| n.clone())
                    .unwrap_or_default();
                return Err(ArchiveError::Duplicate(first, name));
            }
            seen_as.push((key, name.clone()));
            entries.push(Entry {
                is_dir: e.is_dir(),
                symlink: e.is_symlink(),
                compressed: e.compressed_size(),
                size: e.size(),
                method: e.compression(),
                modified: e.last_modified(),
                name,
            });
        }
        // Local headers that disagree with the central directory (names, sizes, encryption,
        // method), overlapping entries or unlisted local headers: readers would disagree on
        // what the archive holds.
        zip.validate_header_consistency()
            .map_err(|e| ArchiveError::Invalid(e.to_string()))?;
        Ok(ZipIn {
            zip,
            entries,
            limits: *limits,
        })
    }

    pub(crate) fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The first `n` octets of entry `i` (for type sniffing), outside the budget.
    pub(crate) fn peek(&mut self, i: usize, n: usize) -> Result<Vec<u8>, ArchiveError> {
        let method = self.entries.get(i).map(|e| e.method);
        if !matches!(
            method,
            Some(CompressionMethod::Stored | CompressionMethod::Deflated)
        ) {
            return Ok(Vec::new());
        }
        let file = self
            .zip
            .by_index(i)
            .map_err(|e| ArchiveError::Invalid(e.to_string()))?;
        let mut head = Vec::with_capacity(n);
        file.take(n as u64)
            .read_to_end(&mut head)
            .map_err(|e| ArchiveError::Invalid(e.to_string()))?;
        Ok(head)
    }

    /// Decompresses entry `i` under the ratio, budget and deadline limits.
    pub(crate) fn read(&mut self, i: usize) -> Result<Vec<u8>, ArchiveError> {
        let Some(entry) = self.entries.get(i) else {
            return Err(ArchiveError::Invalid(format!("no entry {i}")));
        };
        if !matches!(
            entry.method,
            CompressionMethod::Stored | CompressionMethod::Deflated
        ) {
            return Err(ArchiveError::Method(
                entry.name.clone(),
                format!("{:?}", entry.method),
            ));
        }
        let name = entry.name.clone();
        let ratio_cap = entry
            .compressed
            .max(1)
            .saturating_mul(self.limits.max_ratio);
        let hint = entry.size;
        let limits = self.limits;
        let mut file = self
            .zip
            .by_index(i)
            .map_err(|e| ArchiveError::Invalid(format!("member {name:?}: {e}")))?;
        read_bounded(&mut file, &name, ratio_cap, &limits, hint)
    }
}

// ---------------------------------------------------------------------------------------
// The converter.

/// Inspects an archive member by member and rebuilds it from the survivors.
///
/// `name` is the detected type (`zip`, `gzip`, `tar`, `7z`, ...); the content decides, the
/// name only words the reasons.
pub fn disarm(data: &[u8], name: &str, policy: &Policy) -> Verdict {
    let limits = &policy.limits;
    // sniff types TNEF as an archive (it is a container of attachments).
    if super::tnef::is_tnef(data) {
        return super::tnef::disarm(data, policy);
    }
    if policy.depth > limits.max_depth {
        return Verdict::Remove {
            reason: format!(
                "{name}: archive nested deeper than max_archive_depth ({})",
                limits.max_depth
            ),
        };
    }
    let _scope = TreeScope::enter(limits);
    if data.starts_with(b"PK\x03\x04") || data.starts_with(b"PK\x05\x06") {
        return zip(data, policy);
    }
    if data.starts_with(b"\x1F\x8B") {
        return gzip(data, policy);
    }
    if data.get(257..262) == Some(b"ustar") {
        return tar(data, policy);
    }
    Verdict::Remove {
        reason: format!("{name}: this archive format cannot be inspected"),
    }
}

/// What happened to one member, for `changes`.
fn describe_kept(member: &str, out_name: &str, d: &Disarmed) -> String {
    let what = if d.changes.is_empty() {
        "kept".to_string()
    } else {
        d.changes.join("; ")
    };
    if member == out_name {
        format!("{member}: {what}")
    } else {
        format!("{member} → {out_name}: {what}")
    }
}

/// Keeps the list of reasons in a verdict readable.
fn summarise(changes: &[String]) -> String {
    const MAX: usize = 5;
    let mut s = changes
        .iter()
        .take(MAX)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if changes.len() > MAX {
        s.push_str(&format!("; and {} more", changes.len() - MAX));
    }
    s
}

/// Makes `name` unique among the names already written (case-insensitively).
fn unique(name: String, used: &mut HashSet<String>) -> String {
    if used.insert(name.to_lowercase()) {
        return name;
    }
    for n in 1u32.. {
        let stem_end = name.len() - base_name(&name).len()
            + base_name(&name)
                .rfind('.')
                .unwrap_or(base_name(&name).len());
        let candidate = format!("{} ({n}){}", &name[..stem_end], &name[stem_end..]);
        if used.insert(candidate.to_lowercase()) {
            return candidate;
        }
    }
    name
}

/// The output of one member through [`super::disarm`]: files to write, or a verdict that
/// ends the whole archive (quarantine).
enum Member {
    Keep(Vec<(String, Vec<u8>)>),
    Removed,
    Quarantine(String),
}

/// Runs one member through [`super::disarm`] and records its fate in `changes`.
fn disarm_member(
    path: &str,
    bytes: &[u8],
    child: &Policy,
    used: &mut HashSet<String>,
    changes: &mut Vec<String>,
) -> Member {
    let base = base_name(path);
    match super::disarm(bytes, base, None, child) {
        Verdict::Keep(d) => {
            let out_name = match &d.extension {
                Some(ext) => with_extension(path, ext),
                None => path.to_string(),
            };
            let out_name = unique(out_name, used);
            changes.push(describe_kept(path, &out_name, &d));
            // A container delivered as its contents (TNEF, gzip) has no file of its own.
            let mut files = if d.data.is_empty() && !d.extra.is_empty() {
                Vec::new()
            } else {
                vec![(out_name.clone(), d.data)]
            };
            let dir = &out_name[..out_name.len() - base_name(&out_name).len()];
            for (extra_name, extra) in d.extra {
                let mut n = format!("{dir}{}", base_name(&extra_name));
                if let Some(ext) = &extra.extension {
                    n = with_extension(&n, ext);
                }
                let n = unique(n, used);
                changes.push(describe_kept(&format!("{path} → {extra_name}"), &n, &extra));
                files.push((n, extra.data));
            }
            Member::Keep(files)
        }
        Verdict::Remove { reason } => {
            changes.push(format!("{path}: removed ({reason})"));
            Member::Removed
        }
        Verdict::Quarantine { reason } => Member::Quarantine(format!("{path}: {reason}")),
    }
}

fn child_policy<'a>(policy: &Policy<'a>) -> Policy<'a> {
    Policy {
        depth: policy.depth + 1,
        ..*policy
    }
}

fn zip(data: &[u8], policy: &Policy) -> Verdict {
    let mut zin = match ZipIn::open(data, &policy.limits) {
        Ok(z) => z,
        Err(ArchiveError::Encrypted(member)) => {
            return encrypted_verdict(policy, &format!("zip (member {member:?})"))
        }
        Err(e) => {
            return Verdict::Remove {
                reason: format!("zip: {e}"),
            }
        }
    };
    let child = child_policy(policy);
    let mut out = ZipWriter::new(Cursor::new(Vec::new()));
    let mut changes = Vec::new();
    let mut used = HashSet::new();
    let mut kept = 0usize;
    let entries = zin.entries().to_vec();
    for (i, e) in entries.iter().enumerate() {
        if policy.limits.expired() {
            return Verdict::Remove {
                reason: "zip: sanitising deadline reached".into(),
            };
        }
        let mut opts = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .compression_level(Some(1));
        if let Some(t) = e.modified {
            opts = opts.last_modified_time(t);
        }
        if e.is_dir {
            let dir = e.name.trim_end_matches('/').to_string();
            if !dir.is_empty() && used.insert(format!("{}/", dir.to_lowercase())) {
                if let Err(err) = out.add_directory(dir, opts) {
                    return write_failed(&err);
                }
            }
            continue;
        }
        if e.symlink {
            changes.push(format!("{}: symbolic link removed", e.name));
            continue;
        }
        let bytes = match zin.read(i) {
            Ok(b) => b,
            Err(err @ ArchiveError::Method(..)) => {
                changes.push(format!("{}: removed ({err})", e.name));
                continue;
            }
            Err(err) => {
                return Verdict::Remove {
                    reason: format!("zip: {err}"),
                }
            }
        };
        match disarm_member(&e.name, &bytes, &child, &mut used, &mut changes) {
            Member::Keep(files) => {
                for (name, content) in files {
                    if let Err(err) = out
                        .start_file(name, opts)
                        .and_then(|()| out.write_all(&content).map_err(Into::into))
                    {
                        return write_failed(&err);
                    }
                }
                kept += 1;
            }
            Member::Removed => {}
            Member::Quarantine(reason) => {
                return Verdict::Quarantine {
                    reason: format!("zip: member {reason}"),
                }
            }
        }
    }
    if kept == 0 {
        return Verdict::Remove {
            reason: if changes.is_empty() {
                "zip: empty archive".into()
            } else {
                format!(
                    "zip: no member could be delivered ({})",
                    summarise(&changes)
                )
            },
        };
    }
    match out.finish() {
        Ok(cursor) => Verdict::Keep(Disarmed {
            data: cursor.into_inner(),
            content_type: "application/zip".into(),
            extension: None,
            changes,
            extra: Vec::new(),
        }),
        Err(err) => write_failed(&err),
    }
}

fn write_failed(err: &zip::result::ZipError) -> Verdict {
    Verdict::Remove {
        reason: format!("zip: the archive could not be rebuilt ({err})"),
    }
}

// ---------------------------------------------------------------------------------------
// gzip

fn gzip(data: &[u8], policy: &Policy) -> Verdict {
    let limits = &policy.limits;
    let mut dec = flate2::bufread::GzDecoder::new(data);
    let ratio_cap = (data.len() as u64).max(1).saturating_mul(limits.max_ratio);
    let inner = match read_bounded(&mut dec, "gzip contents", ratio_cap, limits, 0) {
        Ok(b) => b,
        Err(e) => {
            return Verdict::Remove {
                reason: format!("gzip: {e}"),
            }
        }
    };
    let inner_name = dec
        .header()
        .and_then(|h| h.filename())
        .map(|raw| decode_name(raw, false))
        .map(|n| base_name(&n).to_string())
        .filter(|n| safe_member_name(n).is_ok() && !n.is_empty())
        .unwrap_or_else(|| "data".to_string());
    let trailing = dec.into_inner().iter().any(|&b| b != 0);
    let mut changes = Vec::new();
    if trailing {
        changes.push("data after the compressed stream removed".to_string());
    }
    if !take_entries(1) {
        return Verdict::Remove {
            reason: format!("gzip: {}", ArchiveError::TreeEntries),
        };
    }
    // A gzip stream is one compressed file: what is delivered is that file, disarmed, under
    // its own name (`extra`, the container itself empty, as for TNEF), not a new gzip (the
    // clean message carries no gzip, and Windows cannot open one).
    let child = child_policy(policy);
    match super::disarm(&inner, &inner_name, None, &child) {
        Verdict::Keep(mut d) => {
            let name = match &d.extension {
                Some(ext) => with_extension(&inner_name, ext),
                None => inner_name.clone(),
            };
            // What was dropped from the gzip stream itself is said with the file delivered
            // (the sink shows no line for a container delivered as its contents).
            d.changes.splice(0..0, changes.iter().cloned());
            changes.insert(0, format!("gzip unpacked: {name} delivered"));
            let mut extra = std::mem::take(&mut d.extra);
            d.extension = None;
            extra.insert(0, (name, d));
            Verdict::Keep(Disarmed {
                data: Vec::new(),
                content_type: "application/octet-stream".into(),
                extension: None,
                changes,
                extra,
            })
        }
        Verdict::Remove { reason } => Verdict::Remove {
            reason: format!("gzip: {inner_name}: removed ({reason})"),
        },
        Verdict::Quarantine { reason } => Verdict::Quarantine {
            reason: format!("gzip: {inner_name}: {reason}"),
        },
    }
}

// ---------------------------------------------------------------------------------------
// tar (ustar with GNU long names and pax paths)

/// A parsed octal (or GNU base-256) numeric tar field.
fn tar_number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        // Base-256: big-endian, the top bit of the first octet is the marker.
        let mut v: u64 = u64::from(field[0] & 0x7F);
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    let s: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|b| *b == b' ')
        .take_while(|b| (b'0'..=b'7').contains(b))
        .collect();
    if s.is_empty() {
        return Some(0);
    }
    let mut v: u64 = 0;
    for b in s {
        v = v.checked_mul(8)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

fn c_string(field: &[u8]) -> &[u8] {
    let end = memchr::memchr(0, field).unwrap_or(field.len());
    &field[..end]
}

/// The value of the `path` record of a pax extended header.
fn pax_path(data: &[u8]) -> Option<String> {
    let mut rest = data;
    while !rest.is_empty() {
        let sp = memchr::memchr(b' ', rest)?;
        let len: usize = std::str::from_utf8(&rest[..sp]).ok()?.parse().ok()?;
        let rec = rest.get(sp + 1..len)?;
        if let Some(v) = rec.strip_prefix(b"path=") {
            let v = v.strip_suffix(b"\n").unwrap_or(v);
            return Some(String::from_utf8_lossy(v).into_owned());
        }
        rest = rest.get(len..)?;
    }
    None
}

struct TarMember {
    name: String,
    dir: bool,
    mtime: u64,
    data: std::ops::Range<usize>,
}

fn tar_members(
    data: &[u8],
    limits: &Limits,
    changes: &mut Vec<String>,
) -> Result<Vec<TarMember>, ArchiveError> {
    let mut members = Vec::new();
    let mut pos = 0usize;
    let mut long_name: Option<String> = None;
    let mut count = 0usize;
    while let Some(h) = data.get(pos..pos + 512) {
        if limits.expired() {
            return Err(ArchiveError::Deadline);
        }
        if h.iter().all(|&b| b == 0) {
            break;
        }
        let stored = tar_number(&h[148..156])
            .ok_or_else(|| ArchiveError::Invalid("bad tar checksum field".into()))?;
        let sum: u64 = h
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u64::from(b)
                }
            })
            .sum();
        if sum != stored {
            return Err(ArchiveError::Invalid("tar header checksum mismatch".into()));
        }
        let size = tar_number(&h[124..136])
            .ok_or_else(|| ArchiveError::Invalid("bad tar size field".into()))?;
        let start = pos + 512;
        let end = usize::try_from(size)
            .ok()
            .and_then(|s| start.checked_add(s))
            .filter(|&e| e <= data.len())
            .ok_or_else(|| ArchiveError::Invalid("tar member runs past the end".into()))?;
        let next = end.div_ceil(512) * 512;
        let typeflag = h[156];
        count += 1;
        if count > limits.max_entries {
            return Err(ArchiveError::TooManyEntries(
                count as u64,
                limits.max_entries,
            ));
        }
        if !take_entries(1) {
            return Err(ArchiveError::TreeEntries);
        }
        let body = &data[start..end];
        match typeflag {
            b'L' => {
                long_name = Some(decode_name(c_string(body), false));
            }
            b'x' => {
                if let Some(p) = pax_path(body) {
                    long_name = Some(p);
                }
            }
            b'g' => {}
            _ => {
                let name = match long_name.take() {
                    Some(n) => n,
                    None => {
                        let base = c_string(&h[0..100]);
                        let prefix = if &h[257..262] == b"ustar" {
                            c_string(&h[345..500])
                        } else {
                            &[]
                        };
                        let mut full = prefix.to_vec();
                        if !full.is_empty() {
                            full.push(b'/');
                        }
                        full.extend_from_slice(base);
                        decode_name(&full, false)
                    }
                };
                let name = safe_member_name(&name)?;
                let mtime = tar_number(&h[136..148]).unwrap_or(0);
                match typeflag {
                    b'0' | 0 | b'7' => {
                        if name.ends_with('/') {
                            members.push(TarMember {
                                name,
                                dir: true,
                                mtime,
                                data: 0..0,
                            });
                        } else {
                            members.push(TarMember {
                                name,
                                dir: false,
                                mtime,
                                data: start..end,
                            });
                        }
                    }
                    b'5' => members.push(TarMember {
                        name,
                        dir: true,
                        mtime,
                        data: 0..0,
                    }),
                    b'1' | b'2' => changes.push(format!("{name}: link removed")),
                    _ => changes.push(format!("{name}: special file removed")),
                }
            }
        }
        pos = next;
    }
    Ok(members)
}

fn tar(data: &[u8], policy: &Policy) -> Verdict {
    let mut changes = Vec::new();
    let members = match tar_members(data, &policy.limits, &mut changes) {
        Ok(m) => m,
        Err(e) => {
            return Verdict::Remove {
                reason: format!("tar: {e}"),
            }
        }
    };
    let mut seen = HashSet::new();
    for m in &members {
        if !seen.insert(m.name.trim_end_matches('/').to_lowercase()) && !m.dir {
            return Verdict::Remove {
                reason: format!(
                    "tar: {}",
                    ArchiveError::Duplicate(m.name.clone(), m.name.clone())
                ),
            };
        }
    }
    let child = child_policy(policy);
    // Rebuilt as a zip: the clean message carries zip, not tar (which older Windows cannot
    // open either); the member names, directories and times are kept.
    let mut out = ZipWriter::new(Cursor::new(Vec::new()));
    let mut used = HashSet::new();
    let mut kept = 0usize;
    for m in &members {
        if policy.limits.expired() {
            return Verdict::Remove {
                reason: "tar: sanitising deadline reached".into(),
            };
        }
        let opts = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .compression_level(Some(1))
            .last_modified_time(zip_time(m.mtime));
        if m.dir {
            let dir = m.name.trim_end_matches('/').to_string();
            if !dir.is_empty() && used.insert(format!("{}/", dir.to_lowercase())) {
                if let Err(err) = out.add_directory(dir, opts) {
                    return write_failed(&err);
                }
            }
            continue;
        }
        let Some(bytes) = data.get(m.data.clone()) else {
            continue;
        };
        if !take_octets(bytes.len() as u64) {
            return Verdict::Remove {
                reason: format!(
                    "tar: {}",
                    ArchiveError::Total(policy.limits.max_uncompressed)
                ),
            };
        }
        match disarm_member(&m.name, bytes, &child, &mut used, &mut changes) {
            Member::Keep(files) => {
                for (name, content) in files {
                    if let Err(err) = out
                        .start_file(name, opts)
                        .and_then(|()| out.write_all(&content).map_err(Into::into))
                    {
                        return write_failed(&err);
                    }
                }
                kept += 1;
            }
            Member::Removed => {}
            Member::Quarantine(reason) => {
                return Verdict::Quarantine {
                    reason: format!("tar: member {reason}"),
                }
            }
        }
    }
    if kept == 0 {
        return Verdict::Remove {
            reason: if changes.is_empty() {
                "tar: empty archive".into()
            } else {
                format!(
                    "tar: no member could be delivered ({})",
                    summarise(&changes)
                )
            },
        };
    }
    changes.insert(0, "tar archive rebuilt as a zip archive".into());
    match out.finish() {
        Ok(cursor) => Verdict::Keep(Disarmed {
            data: cursor.into_inner(),
            content_type: "application/zip".into(),
            extension: Some("zip".into()),
            changes,
            extra: Vec::new(),
        }),
        Err(err) => write_failed(&err),
    }
}

/// A Unix time as a zip (MS-DOS, local = UTC here) time; 1980-01-01 when out of its range.
fn zip_time(unix: u64) -> zip::DateTime {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (Ok(year), Ok(month), Ok(day)) =
        (u16::try_from(year), u8::try_from(month), u8::try_from(day))
    else {
        return zip::DateTime::DEFAULT;
    };
    zip::DateTime::from_date_and_time(
        year,
        month,
        day,
        (secs / 3600) as u8,
        (secs / 60 % 60) as u8,
        (secs % 60) as u8,
    )
    .unwrap_or(zip::DateTime::DEFAULT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_times_become_zip_times() {
        let t = zip_time(1_763_371_805);
        assert_eq!(
            (
                t.year(),
                t.month(),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            ),
            (2025, 11, 17, 9, 30, 4)
        );
        let t = zip_time(951_868_798);
        assert_eq!((t.year(), t.month(), t.day()), (2000, 2, 29));
        assert_eq!(zip_time(0), zip::DateTime::DEFAULT);
        assert_eq!(zip_time(u64::MAX), zip::DateTime::DEFAULT);
    }

    #[test]
    fn member_names() {
        assert_eq!(safe_member_name("a\\b.txt").unwrap(), "a/b.txt");
        for bad in [
            "../x",
            "/x",
            "\\x",
            "c:x",
            "a/../../x",
            "",
            "a\u{0}b",
            "a\nb",
        ] {
            assert!(safe_member_name(bad).is_err(), "{bad:?}");
        }
        assert!(safe_member_name("a/./b/../c").is_err());
        assert_eq!(
            with_extension("dir.v2/report.xlsm", "xlsx"),
            "dir.v2/report.xlsx"
        );
        assert_eq!(with_extension("dir.v2/README", "txt"), "dir.v2/README.txt");
        assert_eq!(with_extension(".hidden", "txt"), ".hidden.txt");
        assert_eq!(base_name("a/b\\c.doc"), "c.doc");
    }

    #[test]
    fn names_in_shift_jis_cp437_and_utf8() {
        let sjis = encoding_rs::SHIFT_JIS.encode("請求書.pdf").0;
        assert_eq!(decode_name(&sjis, false), "請求書.pdf");
        assert_eq!(decode_name("請求書.pdf".as_bytes(), true), "請求書.pdf");
        assert_eq!(decode_name(b"caf\x82", false).chars().count(), 4);
        assert_eq!(cp437(0x82), 'é');
        assert_eq!(cp437(0xFF), '\u{a0}');
    }

    #[test]
    fn tar_numbers_and_unique_names() {
        assert_eq!(tar_number(b"0000644\0"), Some(0o644));
        assert_eq!(tar_number(b"   12 \0"), Some(0o12));
        assert_eq!(tar_number(b"\x80\0\0\0\0\0\0\x01\0\0\0\0"), Some(1 << 32));
        assert_eq!(
            tar_number(b"\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF"),
            None
        );
        let mut used = HashSet::new();
        assert_eq!(unique("a/b.docx".into(), &mut used), "a/b.docx");
        assert_eq!(unique("a/B.docx".into(), &mut used), "a/B (1).docx");
        assert_eq!(unique("a/b.docx".into(), &mut used), "a/b (2).docx");
    }

    #[test]
    fn declared_entry_counts() {
        let mut eocd = b"junkPK\x05\x06\0\0\0\0".to_vec();
        eocd.extend_from_slice(&7u16.to_le_bytes());
        eocd.extend_from_slice(&7u16.to_le_bytes());
        eocd.extend_from_slice(&[0; 10]);
        assert_eq!(declared_entries(&eocd), Some(7));
        assert_eq!(declared_entries(b"PK\x05\x06"), None);
    }

    #[test]
    fn tree_budget_is_shared_and_released() {
        let limits = Limits {
            max_size: 1 << 20,
            max_pixels: 1,
            max_entries: 10,
            max_uncompressed: 100,
            max_ratio: 10,
            max_depth: 2,
            jpeg_quality: 80,
            rasterize_dpi: 100,
            max_rasterize_pages: 50,
            deadline: None,
        };
        {
            let _outer = TreeScope::enter(&limits);
            {
                let _inner = TreeScope::enter(&limits);
                assert!(take_octets(60));
            }
            assert!(
                !take_octets(60),
                "the inner scope drew from the outer budget"
            );
            assert!(take_entries(20));
            assert!(!take_entries(1));
        }
        let _again = TreeScope::enter(&limits);
        assert!(take_octets(100), "a new tree starts with a full budget");
    }
}
