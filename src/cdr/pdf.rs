//! PDF disarm. (In progress.)
use super::{Policy, Verdict};

/// Disarms (or rasterises, or extracts the text of) a PDF per `sanitize.attachments.pdf`.
pub fn disarm(data: &[u8], policy: &Policy) -> Verdict {
    let _ = (data, policy);
    Verdict::Remove {
        reason: "pdf: disarm is not available yet, removed".into(),
    }
}
