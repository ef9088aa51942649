//! The quarantine of originals: every accepted original is kept here, durably, before the
//! server answers 250, under the id that the clean message carries in
//! `X-Mugaika-Quarantine-Id` and in its notice. An administrator can hand the original out when
//! a recipient asks about something that was removed.
//!
//! This is the storage layer only: one file per original, `originals/ID.eml`, made a hard link
//! of the spool's original when both are on one file system (no copy, and the spool removing
//! its entry after delivery does not touch it), else a copy; fsync'd file and directory.
//! Encryption at rest, the index, release and retention purge build on it (quarantine issue).

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

const ORIGINALS: &str = "originals";

/// A quarantine directory.
#[derive(Debug, Clone)]
pub struct Quarantine {
    originals: PathBuf,
}

impl Quarantine {
    /// Opens (creating if needed) the quarantine under `dir`.
    pub fn open(dir: &Path) -> io::Result<Quarantine> {
        let originals = dir.join(ORIGINALS);
        fs::create_dir_all(&originals).map_err(|e| annotate(e, "cannot create", &originals))?;
        Ok(Quarantine { originals })
    }

    /// Where the original of `id` is (or would be) kept.
    pub fn path(&self, id: &str) -> Option<PathBuf> {
        valid_id(id).then(|| self.originals.join(format!("{id}.eml")))
    }

    /// Keeps `original` under `id`, durably. The caller has fsync'd `original` already when it
    /// is a hard link candidate; a copy is fsync'd here.
    pub fn keep(&self, id: &str, original: &Path) -> io::Result<PathBuf> {
        let target = self.path(id).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad quarantine id {id:?}"),
            )
        })?;
        match fs::hard_link(original, &target) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(_) => {
                // Another file system (or links not allowed): copy through a temporary name so
                // that a crash never leaves a truncated original under the real one.
                let tmp = self.originals.join(format!(".{id}.tmp"));
                fs::copy(original, &tmp).map_err(|e| annotate(e, "cannot copy to", &tmp))?;
                File::open(&tmp)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| annotate(e, "cannot fsync", &tmp))?;
                fs::rename(&tmp, &target).map_err(|e| annotate(e, "cannot rename", &target))?;
            }
        }
        File::open(&self.originals)
            .and_then(|d| d.sync_all())
            .map_err(|e| annotate(e, "cannot fsync", &self.originals))?;
        Ok(target)
    }

    /// Ids of the originals kept, oldest first (ids sort by arrival).
    pub fn list(&self) -> io::Result<Vec<String>> {
        let mut ids: Vec<String> = fs::read_dir(&self.originals)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let id = name.strip_suffix(".eml")?;
                valid_id(id).then(|| id.to_string())
            })
            .collect();
        ids.sort();
        Ok(ids)
    }
}

/// Ids are the spool's: letters and digits only, so an id from a command line can never name a
/// path outside the quarantine.
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn annotate(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_an_original_that_outlives_its_source() {
        let d = tempfile::tempdir().unwrap();
        let q = Quarantine::open(&d.path().join("q")).unwrap();
        let src = d.path().join("original.eml");
        fs::write(&src, b"Subject: x\r\n\r\nbody\r\n").unwrap();
        let kept = q.keep("0123abcd", &src).unwrap();
        fs::remove_file(&src).unwrap();
        assert_eq!(fs::read(&kept).unwrap(), b"Subject: x\r\n\r\nbody\r\n");
        assert_eq!(q.list().unwrap(), vec!["0123abcd".to_string()]);
        // Keeping twice (a retried commit) is not an error.
        fs::write(&src, b"again").unwrap();
        q.keep("0123abcd", &src).unwrap();
    }

    #[test]
    fn hostile_ids_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let q = Quarantine::open(d.path()).unwrap();
        let src = d.path().join("o");
        fs::write(&src, b"x").unwrap();
        for id in ["", "../x", "a/b", "a.b", "x y"] {
            assert!(q.keep(id, &src).is_err(), "{id:?}");
        }
    }
}
