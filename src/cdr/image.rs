//! Images: decode with limits, re-encode from pixels. (In progress.)
use super::{Policy, Verdict};

/// Re-encodes an image (`name` is the detected type: png, jpeg, gif, webp, bmp, tiff, ...).
pub fn disarm(data: &[u8], name: &str, policy: &Policy) -> Verdict {
    let _ = (data, policy);
    Verdict::Remove {
        reason: format!("{name}: image re-encoding is not available yet, removed"),
    }
}
