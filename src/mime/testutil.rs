//! Helpers shared by the unit tests of the `mime` modules that read the shared corpora: where
//! the corpora are (a loud SKIP when absent, a failure with `MUGAIKA_REQUIRE_CORPORA=1`) and
//! the `.eml` files under a folder.

use std::path::{Path, PathBuf};

/// The corpora directory `sub`, or `None` (with a loud SKIP, or a failure when
/// `MUGAIKA_REQUIRE_CORPORA=1`).
pub(crate) fn corpora(sub: &str) -> Option<PathBuf> {
    let base = std::env::var_os("MUGAIKA_CORPORA")
        .map(PathBuf::from)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpora").into());
    let dir = base.join(sub);
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("MUGAIKA_REQUIRE_CORPORA").as_deref() == Ok("1") {
        panic!(
            "corpus {} is missing and MUGAIKA_REQUIRE_CORPORA=1",
            dir.display()
        );
    }
    eprintln!(
        "SKIP: corpus {} not found; set MUGAIKA_CORPORA",
        dir.display()
    );
    None
}

pub(crate) fn eml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            eml_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "eml") {
            out.push(p);
        }
    }
}
