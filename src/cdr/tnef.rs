//! TNEF (winmail.dat). (In progress.)
use super::{Policy, Verdict};

/// TNEF signature (little-endian 0x223E9F78).
pub fn is_tnef(data: &[u8]) -> bool {
    data.starts_with(b"\x78\x9F\x3E\x22")
}

/// Unpacks a TNEF container: its attachments (disarmed) and body.
pub fn disarm(data: &[u8], policy: &Policy) -> Verdict {
    let _ = (data, policy);
    Verdict::Remove {
        reason: "tnef: unpacking is not available yet, removed".into(),
    }
}
