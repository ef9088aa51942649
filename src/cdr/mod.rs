//! Attachment disarm (CDR, content disarm and reconstruction): turn one attachment into a
//! harmless object of the same kind, or refuse it with a reason.
//!
//! Every converter is a pure function over bytes, bounded by [`Limits`] (sizes, pixels, entry
//! counts, ratios, depth, a deadline) and never trusted to be panic-free: [`disarm`] runs each
//! under `catch_unwind`, so a converter crash fails closed (removal), never open. The type is
//! decided by content ([`crate::sanitise::sniff`]); the declared type and the name are hints
//! whose disagreement is reported. The policy (`[sanitize.attachments]`) chooses per category:
//! images are re-encoded from pixels (`image`), PDFs disarmed (`pdf`), OOXML rebuilt without
//! active parts (`office`), legacy Office reduced to text or removed (`legacy_office`),
//! archives inspected member by member through this same function (`archive`), TNEF unpacked
//! (`tnef`), plain text re-encoded as UTF-8 text (`text`, [`text`]). Whatever the policy does
//! not name is `other` (removed by default). `quarantine` is an action for every key: the
//! attachment is not delivered ([`Verdict::Quarantine`], the reason naming the key, `office =
//! quarantine`) and the original message, which holds it, is kept in the quarantine; inside an
//! archive or a TNEF container a member under `quarantine` holds the whole container.

pub mod archive;
pub mod filename;
pub mod image;
pub mod legacy;
pub mod office;
pub mod pdf;
pub mod raster;
pub mod text;
pub mod tnef;

use std::time::Instant;

use crate::config::{AttachmentPolicy, LinkPolicy, SanitizeConfig};

/// Bounds for one attachment (and everything inside it).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest attachment handed to a converter; larger ones are removed.
    pub max_size: usize,
    /// Largest image, in pixels (width × height), decoded.
    pub max_pixels: u64,
    /// Most entries in one archive or OOXML package.
    pub max_entries: usize,
    /// Most uncompressed octets in one archive, all members together.
    pub max_uncompressed: u64,
    /// Largest compression ratio (uncompressed / compressed) of one member.
    pub max_ratio: u64,
    /// Deepest nesting of archives inside archives.
    pub max_depth: usize,
    /// JPEG quality when a JPEG is re-encoded as JPEG.
    pub jpeg_quality: u8,
    /// `pdf = "rasterize"`: page resolution and page cap (per rule, like every limit here).
    pub rasterize_dpi: u32,
    pub max_rasterize_pages: usize,
    /// When the whole message's sanitising must be over.
    pub deadline: Option<Instant>,
}

impl Limits {
    pub fn from_config(c: &SanitizeConfig) -> Limits {
        Limits {
            max_size: c.max_attachment_size.as_usize(),
            max_pixels: c.max_image_pixels,
            max_entries: c.max_archive_entries,
            max_uncompressed: c.max_archive_size.0,
            max_ratio: c.max_archive_ratio,
            max_depth: c.max_archive_depth,
            jpeg_quality: c.jpeg_quality,
            rasterize_dpi: c.rasterize_dpi,
            max_rasterize_pages: c.max_rasterize_pages,
            deadline: None,
        }
    }

    /// True when the deadline has passed.
    pub fn expired(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

/// What the policy and the converters need to know besides the bytes.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    pub attachments: &'a AttachmentPolicy,
    pub links: LinkPolicy,
    pub limits: Limits,
    /// Nesting depth (0 for a mail attachment, +1 inside each archive).
    pub depth: usize,
}

/// The outcome for one attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver these bytes (rebuilt or re-encoded; never the input unchanged unless the type
    /// carries no active content at all).
    Keep(Disarmed),
    /// Do not deliver; say why in the notice.
    Remove { reason: String },
    /// Do not deliver; the original is kept in the quarantine for release (encrypted archives
    /// under `encrypted_archive = "quarantine"`).
    Quarantine { reason: String },
}

/// A disarmed attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disarmed {
    pub data: Vec<u8>,
    /// The media type to declare (e.g. `image/png`, `application/pdf`).
    pub content_type: String,
    /// The file extension the output must carry when it differs from the input's (`xlsx` for
    /// a disarmed `xlsm`, `png` for a re-encoded BMP), without the dot.
    pub extension: Option<String>,
    /// What was removed or changed, one short English phrase each ("VBA project removed",
    /// "EXIF metadata removed", "2 JavaScript actions removed").
    pub changes: Vec<String>,
    /// Extra attachments produced (e.g. members of a TNEF container), each already disarmed.
    pub extra: Vec<(String, Disarmed)>,
}

/// Disarms one attachment: `data` with its (sanitised) `filename` and detected type name
/// (from [`crate::sanitise::sniff::sniff`]). Runs the converter under a panic boundary.
pub fn disarm(data: &[u8], filename: &str, detected: Option<&str>, policy: &Policy) -> Verdict {
    if data.len() > policy.limits.max_size {
        return Verdict::Remove {
            reason: format!(
                "larger than the disarm limit ({} > {} octets)",
                data.len(),
                policy.limits.max_size
            ),
        };
    }
    if policy.limits.expired() {
        return Verdict::Remove {
            reason: "sanitising deadline reached".into(),
        };
    }
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        dispatch(data, filename, detected, policy)
    }));
    run.unwrap_or_else(|_| Verdict::Remove {
        reason: "the converter failed on this file (removed to be safe)".into(),
    })
}

/// Chooses the converter by the type found by content and the policy for its category.
fn dispatch(data: &[u8], filename: &str, detected: Option<&str>, policy: &Policy) -> Verdict {
    use crate::config::AttachmentAction as A;
    use crate::sanitise::policy::{action_of, policy_key_of};
    use crate::sanitise::sniff::{sniff_attachment, Category};
    let found = sniff_attachment(data);
    let name = detected.or(found.map(|d| d.name)).unwrap_or("unknown");
    let category = found.map(|d| d.category);
    let a = policy.attachments;
    let removed_by = |key: &str| Verdict::Remove {
        reason: format!("{name}: {key} = remove"),
    };
    // `quarantine` for a type's key: not delivered, the original (kept with the message)
    // can be released. Encrypted archives say why in their own arm; `other` is decided after
    // the TNEF check (a TNEF container is unpacked, its members follow their own keys);
    // legacy Office in its arm (an encrypted OLE2 document follows `encrypted_archive`).
    let key = found.and_then(policy_key_of);
    if let Some(key) =
        key.filter(|k| !matches!(*k, "encrypted_archive" | "other" | "legacy_office"))
    {
        if action_of(a, key) == A::Quarantine {
            return quarantined_by(name, key);
        }
    }
    match category {
        Some(Category::Image) => match a.image {
            A::Remove => removed_by("image"),
            _ => image::disarm(data, name, policy),
        },
        Some(Category::Pdf) => match a.pdf {
            A::Remove => removed_by("pdf"),
            _ => pdf::disarm(data, policy),
        },
        // Legacy formats follow `legacy_office` (and `encrypted_archive` when encrypted).
        Some(Category::Office) if crate::sanitise::policy::is_legacy_office(name) => {
            legacy::legacy(data, name, policy)
        }
        Some(Category::Office) => match a.office {
            A::Remove => removed_by("office"),
            _ => office::disarm(data, name, filename, policy),
        },
        Some(Category::Archive) => match a.archive {
            A::Remove => removed_by("archive"),
            _ => archive::disarm(data, name, policy),
        },
        Some(Category::EncryptedArchive) => match a.encrypted_archive {
            A::Quarantine => Verdict::Quarantine {
                reason: format!("{name}: password-protected, cannot be inspected (encrypted_archive = quarantine)"),
            },
            _ => removed_by("encrypted_archive"),
        },
        Some(Category::Executable) => Verdict::Remove {
            reason: format!("{name}: executable content is never delivered"),
        },
        Some(Category::Script) => Verdict::Remove {
            reason: format!("{name}: scripts are never delivered"),
        },
        Some(Category::Html) => Verdict::Remove {
            reason: format!("{name}: HTML attachments are never delivered"),
        },
        Some(Category::Encrypted) => Verdict::Remove {
            reason: format!("{name}: encrypted content cannot be inspected"),
        },
        Some(Category::Other) | None if name == "tnef" || tnef::is_tnef(data) => {
            tnef::disarm(data, policy)
        }
        Some(Category::Text) => match a.text {
            A::Remove => removed_by("text"),
            _ => text::disarm(data, name, filename, policy),
        },
        Some(Category::Other) | None => not_handled(name, "", policy),
    }
}

/// The verdict for a type's key under `quarantine`: held with the original.
fn quarantined_by(name: &str, key: &str) -> Verdict {
    Verdict::Quarantine {
        reason: format!("{name}: {key} = quarantine"),
    }
}

/// The verdict for content no converter handles, by the `other` key: removed, or held under
/// `other = "quarantine"`. `why` (may be empty) says what was found, for the reason.
pub(crate) fn not_handled(name: &str, why: &str, policy: &Policy) -> Verdict {
    let what = if why.is_empty() {
        name.to_string()
    } else {
        format!("{name} ({why})")
    };
    match policy.attachments.other {
        crate::config::AttachmentAction::Quarantine => quarantined_by(&what, "other"),
        _ => Verdict::Remove {
            reason: format!("{what}: other = remove"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AttachmentAction as A;
    use std::io::Write;

    fn zip_of(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (n, d) in members {
            w.start_file(*n, zip::write::SimpleFileOptions::default())
                .unwrap();
            w.write_all(d).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    fn png() -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        ::image::DynamicImage::ImageRgb8(::image::RgbImage::new(2, 2))
            .write_to(&mut out, ::image::ImageFormat::Png)
            .unwrap();
        out.into_inner()
    }

    fn run(data: &[u8], filename: &str, a: &AttachmentPolicy) -> Verdict {
        let policy = Policy {
            attachments: a,
            links: LinkPolicy::Show,
            limits: Limits::from_config(&SanitizeConfig::default()),
            depth: 0,
        };
        disarm(data, filename, None, &policy)
    }

    /// One sample per key, with the policy that quarantines only that key.
    fn samples() -> Vec<(&'static str, Vec<u8>, &'static str, AttachmentPolicy)> {
        let q = |f: fn(&mut AttachmentPolicy)| {
            let mut a = AttachmentPolicy::default();
            f(&mut a);
            a
        };
        let docx = zip_of(&[
            ("[Content_Types].xml", b"<Types/>"),
            ("word/document.xml", b"<w/>"),
        ]);
        let mut enc = zip_of(&[("a.txt", b"secret")]);
        enc[6] |= 1; // the encryption flag of the first local header
        vec![
            ("image", png(), "a.png", q(|a| a.image = A::Quarantine)),
            (
                "pdf",
                b"%PDF-1.7\n%%EOF\n".to_vec(),
                "a.pdf",
                q(|a| a.pdf = A::Quarantine),
            ),
            ("office", docx, "a.docx", q(|a| a.office = A::Quarantine)),
            (
                "legacy_office",
                b"{\\rtf1\\ansi hello}".to_vec(),
                "a.rtf",
                q(|a| a.legacy_office = A::Quarantine),
            ),
            (
                "text",
                "お知らせ\r\n".as_bytes().to_vec(),
                "a.txt",
                q(|a| a.text = A::Quarantine),
            ),
            (
                "archive",
                zip_of(&[("a.txt", b"hello")]),
                "a.zip",
                q(|a| a.archive = A::Quarantine),
            ),
            (
                "encrypted_archive",
                enc,
                "a.zip",
                q(|a| a.encrypted_archive = A::Quarantine),
            ),
            (
                "other",
                b"ID3\x04\0\0\0\0\0\0".to_vec(),
                "a.mp3",
                q(|a| a.other = A::Quarantine),
            ),
        ]
    }

    #[test]
    fn quarantine_is_an_action_for_every_key() {
        for (key, data, name, policy) in samples() {
            match run(&data, name, &policy) {
                Verdict::Quarantine { reason } => {
                    assert!(
                        reason.contains(&format!("{key} = quarantine")),
                        "{key}: {reason}"
                    )
                }
                v => panic!("{key}: {v:?}"),
            }
            // Only that key: under the defaults the same file is not held (except encrypted
            // archives, whose default is quarantine).
            let v = run(&data, name, &AttachmentPolicy::default());
            assert_eq!(
                matches!(v, Verdict::Quarantine { .. }),
                key == "encrypted_archive",
                "{key}: {v:?}"
            );
        }
    }

    #[test]
    fn a_member_under_quarantine_holds_the_whole_archive() {
        let zip = zip_of(&[("photo.png", &png()), ("memo.txt", "議事録\r\n".as_bytes())]);
        for (key, a) in [
            (
                "text",
                AttachmentPolicy {
                    text: A::Quarantine,
                    ..AttachmentPolicy::default()
                },
            ),
            (
                "image",
                AttachmentPolicy {
                    image: A::Quarantine,
                    ..AttachmentPolicy::default()
                },
            ),
        ] {
            match run(&zip, "a.zip", &a) {
                Verdict::Quarantine { reason } => {
                    assert!(reason.contains(&format!("{key} = quarantine")), "{reason}")
                }
                v => panic!("{key}: {v:?}"),
            }
        }
        assert!(matches!(
            run(&zip, "a.zip", &AttachmentPolicy::default()),
            Verdict::Keep(_)
        ));
    }

    #[test]
    fn text_is_removed_by_text_remove_and_other_content_by_other() {
        let no_text = AttachmentPolicy {
            text: A::Remove,
            ..AttachmentPolicy::default()
        };
        assert_eq!(
            run(b"hello\r\n", "a.txt", &no_text),
            Verdict::Remove {
                reason: "text: text = remove".into()
            }
        );
        assert_eq!(
            run(
                b"ID3\x04\0\0\0\0\0\0",
                "a.mp3",
                &AttachmentPolicy::default()
            ),
            Verdict::Remove {
                reason: "audio: other = remove".into()
            }
        );
        match run("東京都\n".as_bytes(), "a.csv", &AttachmentPolicy::default()) {
            Verdict::Keep(d) => {
                assert_eq!(d.content_type, "text/plain; charset=utf-8");
                assert_eq!(d.data, "東京都\r\n".as_bytes());
            }
            v => panic!("{v:?}"),
        }
    }
}
