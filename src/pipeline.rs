//! One message through the core: parse → sanitise → rebuild → verify, written to a file.
//! (Interface fixed; implementation in progress.)
//!
//! Both the CLI and the SMTP server call [`sanitize_file`] / [`sanitize_reader`]. The clean
//! message is written to `output` (created or truncated), verified by re-parsing, and only then
//! reported as a success; on any error the output file is removed, so a caller can never pick
//! up a half-written or unverified message. The caller decides durability (fsync, rename).

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::Config;
use crate::sanitise::Action;

/// Per-message context supplied by the caller.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// A complete `Received:` field value of ours (without the name), prepended by rebuild.
    pub received: Option<String>,
    /// The quarantine id, when the original is kept (header and notice).
    pub quarantine_id: Option<String>,
    /// Where to spill large text (defaults to `sanitize.temp_dir`, then the system temp dir).
    pub temp_dir: Option<PathBuf>,
}

/// What was done, for the JSON report and the audit record.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// `sanitized` (something changed), `clean` (only re-encoded) or `notice-only`.
    pub status: String,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    pub input_bytes: u64,
    pub output_bytes: u64,
    pub parse_flags: Vec<&'static str>,
    pub actions: Vec<Action>,
}

/// Why no clean message was written.
#[derive(Debug, thiserror::Error)]
pub enum SanitizeError {
    /// Policy refuses the message (CLI exit 65, SMTP 554 5.6.0).
    #[error("rejected: {0}")]
    Rejected(String),
    /// Something went wrong on our side, including a verifier violation (exit 75, SMTP 451).
    #[error("internal error: {0}")]
    Internal(String),
    /// The sanitising deadline (`sanitize.timeout`) passed (exit 75, SMTP 451).
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
}

/// Sanitises the message in `input` into `output`.
pub fn sanitize_file(
    input: &Path,
    cfg: &Config,
    ctx: &Context,
    output: &Path,
) -> Result<Report, SanitizeError> {
    let f = std::fs::File::open(input)
        .map_err(|e| SanitizeError::Internal(format!("cannot open {}: {e}", input.display())))?;
    sanitize_reader(f, cfg, ctx, output)
}

/// Sanitises the message read from `input` into `output`.
pub fn sanitize_reader<R: Read>(
    input: R,
    cfg: &Config,
    ctx: &Context,
    output: &Path,
) -> Result<Report, SanitizeError> {
    let _ = (input, cfg, ctx, output);
    Err(SanitizeError::Internal("pipeline not implemented yet".into()))
}
