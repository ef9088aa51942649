//! The per-part decision: what becomes of each part of a message.
//!
//! This is the extension point for attachment disarm. [`plan_part`] looks at a part's headers
//! and its position (body or not) when it starts and returns a [`PartPlan`]; for attachments
//! the decision is completed by [`attachment_plan`] once the content has been sniffed (type by
//! content, never by name or declared type), giving an [`AttachmentPlan`]: removed outright
//! ([`AttachmentPlan::Remove`], with a reason naming the policy key of `[sanitize.attachments]`
//! that applied, "pdf = remove", or the rule: executables, scripts and encrypted content are
//! never delivered), or handed to attachment disarm ([`AttachmentPlan::Disarm`]: the sanitiser
//! calls [`crate::cdr::disarm`], which picks the converter by content and may still refuse).
//! Either way a declared type that disagrees with the content is reported.
//!
//! Body text: text/plain and text/html in body position (the top level, a multipart/mixed
//! or alternative in body position, the root of multipart/related, the signed content of
//! multipart/signed, a forwarded message's body), unless they are marked as attachments
//! (`Content-Disposition: attachment`, or a file name without `inline`). Everything else is an
//! attachment, including text/plain with a file name, text/calendar and text/csv.
//!
//! Attachments are typed with [`super::sniff::sniff_attachment`]: content with no signature
//! that reads as text (UTF-8 or a Japanese charset) is `text` and follows the `text` key,
//! XML included; legacy Office (OLE2, RTF, OneNote, ODF) follows `legacy_office`. For `other`
//! and `legacy_office` the disarm dispatch has the last word (TNEF is unpacked, an encrypted
//! OLE2 document follows `encrypted_archive`); `quarantine` for any key is answered there
//! (`Verdict::Quarantine`: not delivered, the original held).

use crate::config::{AttachmentAction, AttachmentPolicy};
use crate::mime::{Encoding, Part};

use super::sniff::{Category, Detected};
use super::ActionKind;

/// The kind of body text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    Plain,
    Html,
}

/// The kind of container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerKind {
    /// multipart/mixed and every multipart subtype without a meaning of its own.
    Mixed,
    Alternative,
    Related,
    Signed,
    Encrypted,
    /// message/rfc822 or message/global: a forwarded message.
    Message,
}

/// What to do with a part, decided when it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartPlan {
    BodyText(TextKind),
    Container(ContainerKind),
    /// A detached signature: dropped, reported as `SignatureRemoved`.
    Signature,
    /// Encrypted content: dropped, reported as `EncryptedRemoved`.
    Encrypted,
    /// An attachment: sniffed, then [`attachment_plan`].
    Attachment,
    /// Removed with a reason (`PartRemoved`).
    Remove(String),
}

/// What to do with an attachment once its type is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachmentPlan {
    /// Remove it; `kind` is the action to report, `reason` names the policy.
    Remove { kind: ActionKind, reason: String },
    /// Hand it to [`crate::cdr::disarm`]; `mismatch` is the declared-versus-found note
    /// ("declared application/pdf but content is zip"), to add to whatever is reported.
    Disarm { mismatch: Option<String> },
}

impl AttachmentPlan {
    /// The plan as a removal: a `Disarm` plan for a part that cannot be disarmed (its bytes
    /// were not kept) is removed with `why`.
    pub fn into_removal(self, why: &str) -> (ActionKind, String) {
        match self {
            AttachmentPlan::Remove { kind, reason } => (kind, reason),
            AttachmentPlan::Disarm { mismatch } => (
                ActionKind::AttachmentRemoved,
                match mismatch {
                    Some(m) => format!("{why}; {m}"),
                    None => why.to_string(),
                },
            ),
        }
    }
}

/// Decides a part from its headers. `body_position` says whether text here would be body
/// text (see the module documentation).
pub fn plan_part(part: &Part, body_position: bool) -> PartPlan {
    let ct = &part.content_type;
    let t = ct.mime_type.as_str();
    if ct.is_multipart() {
        return PartPlan::Container(match ct.sub_type() {
            "alternative" => ContainerKind::Alternative,
            "related" => ContainerKind::Related,
            "signed" => ContainerKind::Signed,
            "encrypted" => ContainerKind::Encrypted,
            _ => ContainerKind::Mixed,
        });
    }
    if ct.is_message() {
        return PartPlan::Container(ContainerKind::Message);
    }
    match t {
        "application/pkcs7-signature"
        | "application/x-pkcs7-signature"
        | "application/pgp-signature" => return PartPlan::Signature,
        "application/pkcs7-mime" | "application/x-pkcs7-mime" => {
            let st = ct.param("smime-type").unwrap_or("").to_ascii_lowercase();
            return match st.as_str() {
                "signed-data" => PartPlan::Remove("S/MIME signed-data cannot be inspected".into()),
                "certs-only" => PartPlan::Signature,
                _ => PartPlan::Encrypted,
            };
        }
        "application/pgp-encrypted" => return PartPlan::Encrypted,
        _ => {}
    }
    let text = match t {
        "text/plain" => Some(TextKind::Plain),
        "text/html" => Some(TextKind::Html),
        _ => None,
    };
    if let (Some(kind), true) = (text, body_position) {
        let disp = part.disposition.as_deref();
        let inline = disp == Some("inline");
        let attachment = disp == Some("attachment") || (part.filename.is_some() && !inline);
        if !attachment {
            if part.encoding == Encoding::Unknown {
                return PartPlan::Remove("unknown transfer encoding".into());
            }
            return PartPlan::BodyText(kind);
        }
    }
    PartPlan::Attachment
}

/// The policy key of `[sanitize.attachments]` for a category (`None`: no key, always removed).
/// Legacy Office formats are `Office` by category but have their own key: see
/// [`policy_key_of`].
pub fn policy_key(c: Category) -> Option<&'static str> {
    match c {
        Category::Image => Some("image"),
        Category::Pdf => Some("pdf"),
        Category::Office => Some("office"),
        Category::Archive => Some("archive"),
        Category::EncryptedArchive => Some("encrypted_archive"),
        Category::Text => Some("text"),
        Category::Html | Category::Other => Some("other"),
        Category::Executable | Category::Script | Category::Encrypted => None,
    }
}

/// Whether a detected type name is a legacy Office format (`legacy_office`, not `office`).
pub fn is_legacy_office(name: &str) -> bool {
    matches!(name, "ole2" | "rtf" | "onenote" | "odf")
}

/// The policy key for a detected type: [`policy_key`], with `legacy_office` for the legacy
/// formats (OLE2, RTF, OneNote, ODF).
pub fn policy_key_of(d: Detected) -> Option<&'static str> {
    if d.category == Category::Office && is_legacy_office(d.name) {
        return Some("legacy_office");
    }
    policy_key(d.category)
}

/// The action configured for a policy key (`other` for an unknown key).
pub fn action_of(cfg: &AttachmentPolicy, key: &str) -> AttachmentAction {
    match key {
        "image" => cfg.image,
        "pdf" => cfg.pdf,
        "office" => cfg.office,
        "legacy_office" => cfg.legacy_office,
        "text" => cfg.text,
        "archive" => cfg.archive,
        "encrypted_archive" => cfg.encrypted_archive,
        _ => cfg.other,
    }
}

/// The category a declared media type promises, for reporting mismatches.
fn declared_category(declared: &str) -> Option<Category> {
    let d = declared.to_ascii_lowercase();
    if d.starts_with("image/") && d != "image/svg+xml" {
        return Some(Category::Image);
    }
    match d.as_str() {
        "application/pdf" => Some(Category::Pdf),
        "application/zip"
        | "application/x-zip-compressed"
        | "application/gzip"
        | "application/x-gzip"
        | "application/x-7z-compressed"
        | "application/vnd.rar"
        | "application/x-rar-compressed"
        | "application/x-lzh-compressed" => Some(Category::Archive),
        "text/html" => Some(Category::Html),
        "application/msword"
        | "application/vnd.ms-excel"
        | "application/vnd.ms-powerpoint"
        | "application/rtf" => Some(Category::Office),
        _ if d.starts_with("application/vnd.openxmlformats-officedocument.")
            || d.starts_with("application/vnd.ms-") =>
        {
            Some(Category::Office)
        }
        _ if d.starts_with("text/") => None,
        _ => None,
    }
}

/// "declared X but content is Y" when the declared media type promises another category
/// than the content found (a PDF that is a zip, an image that is an executable).
pub fn mismatch(declared: &str, detected: Option<Detected>) -> Option<String> {
    let expected = declared_category(declared);
    let differs = match (expected, detected) {
        (Some(Category::Archive), Some(d)) => {
            !matches!(d.category, Category::Archive | Category::EncryptedArchive)
        }
        (Some(e), Some(d)) => e != d.category,
        (Some(_), None) => true,
        _ => false,
    };
    differs.then(|| {
        let found = detected.map_or("unrecognised", |d| d.name);
        format!("declared {declared} but content is {found}")
    })
}

/// Completes the decision for an attachment from its sniffed type.
pub fn attachment_plan(
    cfg: &AttachmentPolicy,
    detected: Option<Detected>,
    declared: &str,
) -> AttachmentPlan {
    let category = detected.map_or(Category::Other, |d| d.category);
    let mismatch = mismatch(declared, detected);
    let key = match detected {
        Some(d) => policy_key_of(d),
        None => policy_key(Category::Other),
    };
    let mut reason = match key {
        None if category == Category::Encrypted => {
            return AttachmentPlan::Remove {
                kind: ActionKind::EncryptedRemoved,
                reason: "encrypted content cannot be inspected".into(),
            };
        }
        None => "executable or script: always removed".to_string(),
        Some(key) => {
            let action = action_of(cfg, key);
            // The disarm dispatch decides, whatever the action, for: `other` (TNEF is
            // recognised by content and unpacked; the rest is removed with the same
            // "other = remove" reason) and legacy Office (an encrypted OLE2 document follows
            // `encrypted_archive`, not `legacy_office`). `quarantine` is answered by the
            // dispatch too (Verdict::Quarantine, with the original held).
            let dispatch_decides = key == "other" || key == "legacy_office";
            if action == AttachmentAction::Remove && !dispatch_decides {
                format!("{key} = remove")
            } else {
                return AttachmentPlan::Disarm { mismatch };
            }
        }
    };
    if let Some(m) = mismatch {
        reason.push_str("; ");
        reason.push_str(&m);
    }
    AttachmentPlan::Remove {
        kind: ActionKind::AttachmentRemoved,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mime::{ContentType, Flags};
    use crate::sanitise::sniff::{self, sniff};

    fn part(t: &str, disp: Option<&str>, filename: Option<&str>) -> Part {
        Part {
            index: 1,
            parent: Some(0),
            depth: 1,
            headers: Vec::new(),
            content_type: ContentType {
                mime_type: t.into(),
                params: Vec::new(),
            },
            encoding: Encoding::SevenBit,
            disposition: disp.map(String::from),
            filename: filename.map(String::from),
            content_id: None,
            flags: Flags::empty(),
        }
    }

    #[test]
    fn body_text_versus_attachment() {
        use PartPlan::*;
        assert_eq!(
            plan_part(&part("text/plain", None, None), true),
            BodyText(TextKind::Plain)
        );
        assert_eq!(
            plan_part(&part("text/html", None, None), true),
            BodyText(TextKind::Html)
        );
        assert_eq!(
            plan_part(&part("text/plain", Some("inline"), Some("a.txt")), true),
            BodyText(TextKind::Plain)
        );
        assert_eq!(
            plan_part(&part("text/plain", None, Some("a.txt")), true),
            Attachment
        );
        assert_eq!(
            plan_part(&part("text/plain", Some("attachment"), None), true),
            Attachment
        );
        assert_eq!(
            plan_part(&part("text/plain", None, None), false),
            Attachment
        );
        assert_eq!(
            plan_part(&part("text/calendar", None, None), true),
            Attachment
        );
        assert_eq!(
            plan_part(&part("image/png", Some("inline"), None), true),
            Attachment
        );
        let mut unknown = part("text/plain", None, None);
        unknown.encoding = Encoding::Unknown;
        assert!(matches!(plan_part(&unknown, true), Remove(_)));
    }

    #[test]
    fn containers_signatures_and_encryption() {
        use PartPlan::*;
        let k = |t: &str| plan_part(&part(t, None, None), true);
        assert_eq!(
            k("multipart/alternative"),
            Container(ContainerKind::Alternative)
        );
        assert_eq!(k("multipart/related"), Container(ContainerKind::Related));
        assert_eq!(k("multipart/signed"), Container(ContainerKind::Signed));
        assert_eq!(
            k("multipart/encrypted"),
            Container(ContainerKind::Encrypted)
        );
        assert_eq!(k("multipart/report"), Container(ContainerKind::Mixed));
        assert_eq!(k("message/rfc822"), Container(ContainerKind::Message));
        assert_eq!(k("message/global"), Container(ContainerKind::Message));
        assert_eq!(k("application/pkcs7-signature"), Signature);
        assert_eq!(k("application/pgp-signature"), Signature);
        assert_eq!(k("application/pkcs7-mime"), Encrypted);
        assert_eq!(k("application/pgp-encrypted"), Encrypted);
        let mut sd = part("application/pkcs7-mime", None, None);
        sd.content_type
            .params
            .push(("smime-type".into(), "signed-data".into()));
        assert!(matches!(plan_part(&sd, true), Remove(_)));
    }

    fn reason(cfg: &AttachmentPolicy, data: &[u8], declared: &str) -> (ActionKind, String) {
        match attachment_plan(cfg, sniff(data), declared) {
            AttachmentPlan::Remove { kind, reason } => (kind, reason),
            AttachmentPlan::Disarm { mismatch } => (
                ActionKind::AttachmentDisarmed,
                format!(
                    "disarm{}",
                    mismatch.map(|m| format!("; {m}")).unwrap_or_default()
                ),
            ),
        }
    }

    #[test]
    fn reasons_name_the_policy_key() {
        let cfg = AttachmentPolicy::default();
        assert_eq!(reason(&cfg, b"%PDF-1.7", "application/pdf").1, "disarm");
        assert_eq!(reason(&cfg, b"\x89PNG\r\n\x1a\n", "image/png").1, "disarm");
        assert_eq!(
            reason(&cfg, b"PK\x03\x04\x14\x00\x00\x00", "application/zip").1,
            "disarm"
        );
        // Encrypted archives go to the dispatch too (it answers Quarantine by policy).
        assert_eq!(
            reason(&cfg, b"PK\x03\x04\x14\x00\x01\x00", "application/zip").1,
            "disarm"
        );
        // Unrecognised content: the dispatch decides (TNEF) or removes as `other`.
        assert_eq!(reason(&cfg, b"hello", "text/csv").1, "disarm");
        assert_eq!(
            reason(&cfg, b"MZ\x90\x00", "application/pdf").1,
            "executable or script: always removed; declared application/pdf but content is pe-executable"
        );
        assert_eq!(
            reason(&cfg, b"PK\x03\x04\x14\x00\x00\x00", "text/plain").1,
            "disarm"
        );
        assert_eq!(
            reason(&cfg, b"not a pdf", "application/pdf").1,
            "disarm; declared application/pdf but content is unrecognised"
        );
        assert_eq!(
            reason(&cfg, b"%PDF-1.7", "image/jpeg").1,
            "disarm; declared image/jpeg but content is pdf"
        );
        let (kind, _) = reason(
            &cfg,
            b"-----BEGIN PGP MESSAGE-----",
            "application/octet-stream",
        );
        assert_eq!(kind, ActionKind::EncryptedRemoved);
        // Text has its own key; legacy Office and `other` are decided by the dispatch.
        let t = |cfg: &AttachmentPolicy, data: &[u8]| match attachment_plan(
            cfg,
            sniff::sniff_attachment(data),
            "text/plain",
        ) {
            AttachmentPlan::Remove { reason, .. } => reason,
            AttachmentPlan::Disarm { .. } => "disarm".into(),
        };
        assert_eq!(t(&cfg, b"a,b\r\n1,2\r\n"), "disarm");
        let no_text = AttachmentPolicy {
            text: AttachmentAction::Remove,
            office: AttachmentAction::Remove,
            ..AttachmentPolicy::default()
        };
        assert_eq!(t(&no_text, b"a,b\r\n1,2\r\n"), "text = remove");
        assert_eq!(t(&no_text, b"<?xml version=\"1.0\"?><a/>"), "text = remove");
        assert_eq!(t(&cfg, b"{\\rtf1 hello}"), "disarm");
        assert_eq!(t(&no_text, b"{\\rtf1 hello}"), "disarm");
        let d = sniff::sniff(b"{\\rtf1").unwrap();
        assert_eq!(policy_key_of(d), Some("legacy_office"));
        assert_eq!(action_of(&cfg, "legacy_office"), AttachmentAction::Remove);
        assert_eq!(action_of(&cfg, "text"), AttachmentAction::Text);
        let strict = AttachmentPolicy {
            pdf: AttachmentAction::Remove,
            ..AttachmentPolicy::default()
        };
        assert_eq!(
            reason(&strict, b"%PDF-1.7", "application/pdf").1,
            "pdf = remove"
        );
        assert_eq!(
            reason(&strict, b"%PDF-1.7", "application/zip").1,
            "pdf = remove; declared application/zip but content is pdf"
        );
    }
}
