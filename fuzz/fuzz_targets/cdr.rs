//! Attachment disarm (`cdr::disarm`) on arbitrary bytes: every converter behind it (image
//! re-encoding, PDF, OOXML and legacy Office, archives, TNEF) as each lands, with the policy,
//! the file name and the declared type chosen by the fuzzer.
//!
//! The converters sit on third-party parsers (image, lopdf, zip) that DESIGN expects to panic
//! on hostile input; `cdr::disarm` contains such panics and removes the attachment, and this
//! target lets them unwind to that boundary (see the fuzz crate's panic policy) while any panic
//! in mugaika's own code is a crash. What is delivered (`Verdict::Keep`, and every extra
//! attachment) must be something the clean message may carry: not an executable, script, HTML
//! or encrypted object by its magic bytes, with a well-formed media type, and within the size
//! limit.
#![no_main]
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use mugaika::cdr::{disarm, Disarmed, Limits, Policy, Verdict};
use mugaika::config::{AttachmentAction as A, AttachmentPolicy, LinkPolicy, SanitizeConfig};
use mugaika::sanitise::sniff::{sniff, Category};
use mugaika_fuzz::{contain_third_party_panics, Choices};

const NAMES: &[&str] = &[
    "file.bin",
    "photo.jpg",
    "image.png",
    "scan.pdf",
    "report.docx",
    "book.xlsm",
    "slides.pptx",
    "old.doc",
    "archive.zip",
    "winmail.dat",
    "note.txt",
    "",
];
const DETECTED: &[Option<&str>] = &[None, Some("zip"), Some("pdf"), Some("png"), Some("tnef")];

/// The media types the verifier lets through as attachments (`attachment_type_allowed` in
/// src/verify.rs): what a converter keeps must be one of them, or the whole message would fail
/// verification and be replaced by a notice.
fn verifier_allows(t: &str) -> bool {
    matches!(
        t,
        "image/png"
            | "image/jpeg"
            | "image/gif"
            | "application/pdf"
            | "application/zip"
            | "application/gzip"
            | "application/x-tar"
            | "text/plain"
            | "text/csv"
    ) || t
        .strip_prefix("application/vnd.openxmlformats-officedocument.")
        .is_some_and(|s| !s.is_empty())
}

fn check(d: &Disarmed, max: usize, what: &str) {
    assert!(
        d.data.len() <= max.saturating_mul(4),
        "{what}: output of {} octets",
        d.data.len()
    );
    assert!(
        d.content_type.bytes().all(|b| (b' '..=b'~').contains(&b)),
        "{what}: media type {:?}",
        d.content_type
    );
    let media = d.content_type.split(';').next().unwrap_or("").trim();
    assert!(
        verifier_allows(&media.to_ascii_lowercase()),
        "{what}: kept as {:?}, which the verifier refuses",
        d.content_type
    );
    for m in [&b"MZ"[..], b"\x7fELF", b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1"] {
        assert!(!d.data.starts_with(m), "{what}: delivers {m:?} magic");
    }
    if let Some(found) = sniff(&d.data) {
        assert!(
            !matches!(
                found.category,
                Category::Executable
                    | Category::Script
                    | Category::Html
                    | Category::Encrypted
                    | Category::EncryptedArchive
            ),
            "{what}: delivers {} ({:?})",
            found.name,
            found.category
        );
    }
    for (name, extra) in &d.extra {
        check(extra, max, name);
    }
}

fuzz_target!(init: contain_third_party_panics(), |data: &[u8]| {
    let mut c = Choices::new(data);
    let pick = |c: &mut Choices, from: &[A]| from[c.below(from.len())];
    let attachments = AttachmentPolicy {
        image: pick(&mut c, &[A::Reencode, A::Remove]),
        pdf: pick(&mut c, &[A::Disarm, A::Rasterize, A::Text, A::Remove]),
        office: pick(&mut c, &[A::Disarm, A::Text, A::Remove]),
        legacy_office: pick(&mut c, &[A::Remove, A::Text, A::Quarantine]),
        text: pick(&mut c, &[A::Text, A::Remove]),
        archive: pick(&mut c, &[A::Inspect, A::Remove]),
        encrypted_archive: pick(&mut c, &[A::Quarantine, A::Remove]),
        other: A::Remove,
    };
    let name = NAMES[c.below(NAMES.len())];
    let detected = DETECTED[c.below(DETECTED.len())];
    let input = c.rest();

    let mut limits = Limits::from_config(&SanitizeConfig::default());
    // Small enough that a bomb is caught quickly, large enough for real documents.
    limits.max_size = 1 << 20;
    limits.max_pixels = 4_000_000;
    limits.max_uncompressed = 8 << 20;
    limits.deadline = Some(Instant::now() + Duration::from_secs(5));
    let policy = Policy {
        attachments: &attachments,
        links: LinkPolicy::Show,
        limits,
        depth: 0,
    };
    match disarm(input, name, detected, &policy) {
        Verdict::Keep(d) => check(&d, limits.max_size.max(limits.max_uncompressed as usize), name),
        Verdict::Remove { reason } | Verdict::Quarantine { reason } => {
            assert!(!reason.is_empty());
            assert!(!reason.contains(['\r', '\n']), "reason with a line break: {reason:?}");
        }
    }
});
