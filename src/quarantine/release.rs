//! Release of a kept original through the delivery spool (work in progress).

use std::path::Path;

use super::{Quarantine, QuarantineError};

pub(crate) fn release(
    q: &Quarantine,
    id: &str,
    spool_dir: &Path,
    to: Option<&[String]>,
    by: &str,
) -> Result<String, QuarantineError> {
    let _ = (q, id, spool_dir, to, by);
    Err(QuarantineError::Release("not yet implemented".into()))
}
