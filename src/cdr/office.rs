//! Office documents. (In progress.)
use super::{Policy, Verdict};

/// Rebuilds an OOXML package (docx/xlsx/pptx and macro-enabled forms) without active parts.
pub fn disarm(data: &[u8], name: &str, filename: &str, policy: &Policy) -> Verdict {
    let _ = (data, filename, policy);
    Verdict::Remove {
        reason: format!("{name}: office disarm is not available yet, removed"),
    }
}

/// Legacy OLE2 Office, RTF, OneNote, ODF: removed, or their text extracted (`office = "text"`).
pub fn legacy(data: &[u8], name: &str, policy: &Policy) -> Verdict {
    let _ = (data, policy);
    Verdict::Remove {
        reason: format!("{name}: legacy office formats are removed"),
    }
}
