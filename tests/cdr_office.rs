//! Office disarm over the oletools test documents (VBA and Excel 4 macros, DDE fields, OLE
//! embeddings, external relationships, encrypted documents, harmless controls).
//!
//! Every sample goes through `cdr::disarm` with the default policy, as a mail attachment would
//! (zipped samples, encrypted with the password `infected-test`, are unpacked first). Whatever
//! is kept is then searched in every decoding (zip members unpacked, nested zips too) for
//! anything active: a VBA project, an OLE2 object, ActiveX, an external relationship, a DDE
//! field or link, a macro sheet, a macro-enabled content type. The harmless documents must be
//! kept with their text.

use std::io::{Cursor, Read};
use std::path::PathBuf;
use std::time::Instant;

use mugaika::cdr::{self, Limits, Policy, Verdict};
use mugaika::config::{AttachmentAction, AttachmentPolicy, LinkPolicy, SanitizeConfig};

fn corpora() -> PathBuf {
    std::env::var_os("MUGAIKA_CORPORA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpora")))
}

fn oletools() -> Option<PathBuf> {
    let dir = corpora().join("oletools-testdata/tests/test-data");
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("MUGAIKA_REQUIRE_CORPORA").as_deref() == Ok("1") {
        panic!(
            "corpus {} is missing (MUGAIKA_REQUIRE_CORPORA=1)",
            dir.display()
        );
    }
    eprintln!(
        "\n*** SKIP: corpus {} not found; office corpus tests not run ***\n",
        dir.display()
    );
    None
}

fn limits() -> Limits {
    Limits::from_config(&SanitizeConfig::default())
}

fn run_with(data: &[u8], filename: &str, attachments: &AttachmentPolicy) -> Verdict {
    let policy = Policy {
        attachments,
        links: LinkPolicy::Show,
        limits: limits(),
        depth: 0,
    };
    cdr::disarm(data, filename, None, &policy)
}

fn run(data: &[u8], filename: &str) -> Verdict {
    run_with(data, filename, &AttachmentPolicy::default())
}

/// Every file under `dir`, sorted.
fn files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The members of a zip (decrypted with the oletools password when needed).
fn unzip(data: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut z = zip::ZipArchive::new(Cursor::new(data)).expect("a readable zip");
    let mut out = Vec::new();
    for i in 0..z.len() {
        let encrypted = z.by_index_raw(i).unwrap().encrypted();
        let mut f = if encrypted {
            z.by_index_decrypt(i, b"infected-test").unwrap()
        } else {
            z.by_index(i).unwrap()
        };
        if f.is_dir() {
            continue;
        }
        let name = f.name().unwrap().to_string();
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).unwrap();
        out.push((name, buf));
    }
    out
}

/// The text of `<…instrText…>` elements (Word field codes), entities decoded.
fn field_codes(xml: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find("instrText") {
        rest = &rest[i..];
        let Some(gt) = rest.find('>') else { break };
        if rest[..gt].ends_with('/') {
            rest = &rest[gt..];
            continue;
        }
        let body = &rest[gt + 1..];
        let end = body.find('<').unwrap_or(body.len());
        out.push(body[..end].replace("&#68;", "D").replace("&#x44;", "D"));
        rest = &body[end..];
    }
    for (i, _) in xml.match_indices("instr=\"") {
        let v = &xml[i + 7..];
        out.push(v[..v.find('"').unwrap_or(v.len())].to_string());
    }
    out
}

/// Everything active found in `data` and, when it is a zip, in its members (recursively).
fn active_content(name: &str, data: &[u8], depth: usize) -> Vec<String> {
    let mut found = Vec::new();
    if data.starts_with(b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1") {
        found.push(format!("{name}: OLE2 object"));
    }
    if data.starts_with(b"MZ") {
        found.push(format!("{name}: executable"));
    }
    if data.starts_with(b"PK\x03\x04") && depth < 4 {
        for (member, bytes) in unzip(data) {
            let path = format!("{name}/{member}");
            let lower = member.to_lowercase();
            for bad in [
                "vbaproject",
                "vbadata",
                "activex",
                "embeddings/",
                "oleobject",
                "customui",
                "macrosheets",
                "externallinks",
                "attachedtoolbars",
            ] {
                if lower.contains(bad) {
                    found.push(format!("{path}: part named {bad}"));
                }
            }
            found.extend(active_content(&path, &bytes, depth + 1));
        }
        return found;
    }
    let text = String::from_utf8_lossy(data);
    let lower = text.to_lowercase();
    for bad in [
        "targetmode=\"external\"",
        "vbaproject",
        "macroenabled",
        "ddelink",
        "ddeservice",
        "oleobject",
        "activex",
        "attachedtemplate",
        "relationships/control\"",
        "xlmacrosheet",
    ] {
        if lower.contains(bad) {
            found.push(format!("{name}: contains {bad}"));
        }
    }
    for code in field_codes(&text) {
        let word = code.trim_start().to_uppercase();
        if word.starts_with("DDE") || word.starts_with("INCLUDE") || word.starts_with("LINK") {
            found.push(format!("{name}: field {code:?}"));
        }
    }
    found
}

/// The visible text of a Word document (w:t elements) or spreadsheet strings.
fn visible_text(docx: &[u8]) -> String {
    let mut out = String::new();
    for (name, bytes) in unzip(docx) {
        if !(name.ends_with("document.xml")
            || name.ends_with("sharedStrings.xml")
            || name.contains("slides/slide"))
        {
            continue;
        }
        let xml = String::from_utf8_lossy(&bytes);
        let mut rest = &xml[..];
        while let Some(i) = rest.find(":t>").or_else(|| rest.find("<t>")) {
            let body = &rest[i + 3..];
            let end = body.find('<').unwrap_or(body.len());
            out.push_str(&body[..end]);
            out.push(' ');
            rest = &body[end..];
        }
    }
    out
}

fn kept(v: &Verdict) -> Option<&cdr::Disarmed> {
    match v {
        Verdict::Keep(d) => Some(d),
        _ => None,
    }
}

#[test]
fn no_active_content_survives_in_any_oletools_sample() {
    let Some(dir) = oletools() else { return };
    let mut report = Vec::new();
    let mut samples = 0;
    for path in files(&dir) {
        let data = std::fs::read(&path).unwrap();
        let rel = path.strip_prefix(&dir).unwrap().display().to_string();
        let fname = path.file_name().unwrap().to_string_lossy().to_string();
        let mut inputs = vec![(rel.clone(), fname.clone(), data.clone())];
        if fname.ends_with(".zip") {
            for (member, bytes) in unzip(&data) {
                inputs.push((format!("{rel}!{member}"), member.clone(), bytes));
            }
        }
        for (label, name, bytes) in inputs {
            samples += 1;
            let t = Instant::now();
            let v = run(&bytes, &name);
            assert!(
                t.elapsed().as_secs() < 10,
                "{label}: took {:?}",
                t.elapsed()
            );
            let line = match &v {
                Verdict::Keep(d) => {
                    let bad = active_content(&label, &d.data, 0);
                    assert!(bad.is_empty(), "{label}: active content survived: {bad:#?}");
                    for (n, x) in &d.extra {
                        let bad = active_content(n, &x.data, 0);
                        assert!(bad.is_empty(), "{label}: {bad:#?}");
                    }
                    if let Some(dump) = std::env::var_os("MUGAIKA_CDR_DUMP") {
                        let out = PathBuf::from(dump).join(label.replace(['/', '!'], "__"));
                        let out = match &d.extension {
                            Some(e) => out.with_extension(e),
                            None => out,
                        };
                        std::fs::write(out, &d.data).unwrap();
                    }
                    format!(
                        "KEEP {label} ({} -> {} octets) {:?} ext={:?}",
                        bytes.len(),
                        d.data.len(),
                        d.changes,
                        d.extension
                    )
                }
                Verdict::Remove { reason } => format!("REMOVE {label}: {reason}"),
                Verdict::Quarantine { reason } => format!("QUARANTINE {label}: {reason}"),
            };
            report.push(line);
        }
    }
    eprintln!("{}", report.join("\n"));
    assert!(samples >= 30, "only {samples} samples");
}

#[test]
fn documents_with_active_content_are_disarmed_not_dropped() {
    let Some(dir) = oletools() else { return };
    // (path, extension the output must carry, a change that must be reported)
    let cases = [
        ("msodde/dde-test.docx", None, "DDEAUTO field removed"),
        (
            "msodde/dde-test.docm",
            Some("docx"),
            "DDEAUTO field removed",
        ),
        (
            "msodde/dde-test.xlsx",
            None,
            "external workbook link removed",
        ),
        (
            "msodde/dde-test.xlsm",
            Some("xlsx"),
            "external workbook link removed",
        ),
        (
            "oleobj/embedded-simple-2007.docx",
            None,
            "embedded OLE object removed",
        ),
        (
            "oleobj/embedded-simple-2007.xlsx",
            None,
            "embedded OLE object removed",
        ),
        (
            "oleobj/embedded-simple-2007.pptx",
            None,
            "embedded OLE object removed",
        ),
        (
            "oleobj/external_link/sample_with_external_link_to_doc.docx",
            None,
            "link to an outside resource removed (oleObject)",
        ),
        (
            "oleobj/external_link/sample_with_external_link_to_doc.docm",
            Some("docx"),
            "link to an outside resource removed (oleObject)",
        ),
        (
            "oleobj/external_link/sample_with_external_link_to_doc.xlsx",
            None,
            "external workbook link removed",
        ),
        (
            "oleobj/external_link/sample_with_external_link_to_doc.pptx",
            None,
            "link to an outside resource removed (oleObject)",
        ),
        (
            "excel4-macros/excel4_sample_macro.xlsm",
            Some("xlsx"),
            "Excel 4 macro sheet removed",
        ),
    ];
    for (path, ext, change) in cases {
        let data = std::fs::read(dir.join(path)).unwrap();
        let name = path.rsplit('/').next().unwrap();
        let v = run(&data, name);
        let d = kept(&v).unwrap_or_else(|| panic!("{path}: not kept: {v:?}"));
        assert_eq!(d.extension.as_deref(), ext, "{path}");
        assert!(
            d.changes.iter().any(|c| c == change),
            "{path}: {change:?} not in {:?}",
            d.changes
        );
        assert!(
            d.content_type
                .starts_with("application/vnd.openxmlformats-officedocument."),
            "{}",
            d.content_type
        );
        // The text is intact: every visible word of the original is still there.
        let before = visible_text(&data);
        let after = visible_text(&d.data);
        assert_eq!(before, after, "{path}: visible text changed");
        // The rebuilt package is consistent: every internal relationship target exists and
        // every content-type override names a part that exists.
        check_package(path, &d.data);
    }
}

/// Relationship targets and content-type overrides of a rebuilt package all exist.
fn check_package(label: &str, data: &[u8]) {
    let members = unzip(data);
    assert_eq!(
        members[0].0, "[Content_Types].xml",
        "{label}: content types first"
    );
    let names: std::collections::HashSet<String> =
        members.iter().map(|(n, _)| n.to_lowercase()).collect();
    for (name, bytes) in &members {
        let xml = String::from_utf8_lossy(bytes);
        if name == "[Content_Types].xml" {
            for (i, _) in xml.match_indices("PartName=\"") {
                let v = &xml[i + 10..];
                let part = v[..v.find('"').unwrap()]
                    .trim_start_matches('/')
                    .to_lowercase();
                assert!(
                    names.contains(&part),
                    "{label}: override for missing part {part}"
                );
            }
            continue;
        }
        if !name.ends_with(".rels") {
            continue;
        }
        let dir = name.rsplit_once("_rels/").map(|(d, _)| d).unwrap_or("");
        for (i, _) in xml.match_indices("Target=\"") {
            let v = &xml[i + 8..];
            let target = &v[..v.find('"').unwrap()];
            let mut parts: Vec<&str> = Vec::new();
            let full = if let Some(abs) = target.strip_prefix('/') {
                abs.to_string()
            } else {
                format!("{dir}{target}")
            };
            for c in full.split('/') {
                match c {
                    ".." => {
                        parts.pop();
                    }
                    "" | "." => {}
                    c => parts.push(c),
                }
            }
            let resolved = parts.join("/").to_lowercase();
            assert!(
                names.contains(&resolved),
                "{label}: {name} points at missing {resolved}"
            );
        }
    }
}

#[test]
fn harmless_documents_are_kept_with_their_text() {
    let Some(dir) = oletools() else { return };
    for (path, ext) in [
        ("msodde/harmless-clean.docx", None),
        ("msodde/harmless-clean.docm", Some("docx")),
    ] {
        let data = std::fs::read(dir.join(path)).unwrap();
        let v = run(&data, path.rsplit('/').next().unwrap());
        let d = kept(&v).unwrap_or_else(|| panic!("{path}: {v:?}"));
        assert_eq!(d.extension.as_deref(), ext);
        let text = visible_text(&d.data);
        assert!(!text.trim().is_empty());
        assert_eq!(text, visible_text(&data), "{path}");
        check_package(path, &d.data);
    }
    // The legacy binary control is removed by policy (office = "disarm" cannot disarm OLE2).
    let doc = std::fs::read(dir.join("msodde/harmless-clean.doc")).unwrap();
    match run(&doc, "harmless-clean.doc") {
        Verdict::Remove { reason } => assert!(reason.contains("legacy"), "{reason}"),
        v => panic!("{v:?}"),
    }
}

#[test]
fn encrypted_office_documents_follow_encrypted_archive() {
    let Some(dir) = oletools() else { return };
    for path in [
        "encrypted/encrypted.docx",
        "encrypted/encrypted.docm",
        "encrypted/encrypted.xlsm",
        "basic/encrypted.docx",
    ] {
        let data = std::fs::read(dir.join(path)).unwrap();
        match run(&data, "x.docx") {
            Verdict::Quarantine { reason } => assert!(reason.contains("password"), "{reason}"),
            v => panic!("{path}: {v:?}"),
        }
        let remove = AttachmentPolicy {
            encrypted_archive: AttachmentAction::Remove,
            ..AttachmentPolicy::default()
        };
        assert!(
            matches!(run_with(&data, "x.docx", &remove), Verdict::Remove { .. }),
            "{path}"
        );
    }
}

#[test]
fn binary_workbooks_and_legacy_formats_are_removed_with_a_reason() {
    let Some(dir) = oletools() else { return };
    for path in [
        "excel4-macros/excel4_sample_macro.xlsb",
        "excel4-macros/excel4_sample_macro.xls",
        "olevba/sample_with_vba.ppt",
        "oleobj/sample_with_calc_embedded.doc",
        "rtfobj/issue_251.rtf",
        "oleobj/embedded-simple-2007.odt",
    ] {
        let data = std::fs::read(dir.join(path)).unwrap();
        match run(&data, path.rsplit('/').next().unwrap()) {
            Verdict::Remove { reason } => assert!(!reason.is_empty()),
            v => panic!("{path}: {v:?}"),
        }
    }
}

#[test]
fn office_text_policy_extracts_text() {
    let Some(dir) = oletools() else { return };
    let text_policy = AttachmentPolicy {
        office: AttachmentAction::Text,
        legacy_office: AttachmentAction::Text,
        ..AttachmentPolicy::default()
    };
    let data = std::fs::read(dir.join("msodde/harmless-clean.docx")).unwrap();
    let d = match run_with(&data, "harmless-clean.docx", &text_policy) {
        Verdict::Keep(d) => d,
        v => panic!("{v:?}"),
    };
    assert_eq!(d.extension.as_deref(), Some("txt"));
    let text = String::from_utf8(d.data).unwrap();
    let original = visible_text(&data);
    let words: Vec<&str> = original
        .split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>();
    assert!(!words.is_empty());
    for w in words {
        assert!(text.contains(w), "{w:?} missing from {text:?}");
    }
    let rtf = std::fs::read(dir.join("rtfobj/issue_251.rtf")).unwrap();
    match run_with(&rtf, "issue_251.rtf", &text_policy) {
        Verdict::Keep(d) => {
            let t = String::from_utf8(d.data).unwrap();
            assert!(!t.contains('\\') && !t.contains('{'), "{t}");
        }
        v => panic!("{v:?}"),
    }
}

/// Throughput of the OOXML rebuild, in MB/s of input.
/// `cargo test --release --test cdr_office -- --ignored --nocapture`
#[test]
#[ignore]
fn bench_office_disarm() {
    let Some(dir) = oletools() else { return };
    let mut docs = Vec::new();
    for p in [
        "msodde/harmless-clean.docx",
        "msodde/dde-test.xlsm",
        "oleobj/embedded-simple-2007.pptx",
        "oleobj/external_link/sample_with_external_link_to_doc.xlsx",
    ] {
        docs.push((p, std::fs::read(dir.join(p)).unwrap()));
    }
    for (p, data) in &docs {
        let rounds = 200;
        let t = Instant::now();
        for _ in 0..rounds {
            assert!(matches!(run(data, p), Verdict::Keep(_)));
        }
        let secs = t.elapsed().as_secs_f64();
        eprintln!(
            "office disarm {p}: {:.1} MB/s, {:.2} ms per document",
            (data.len() * rounds) as f64 / secs / 1e6,
            secs * 1000.0 / rounds as f64
        );
    }
}

/// Deterministic xorshift, for mutations.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn rezip(members: &[(String, Vec<u8>)]) -> Vec<u8> {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default();
    for (n, d) in members {
        w.start_file(n.as_str(), opts).unwrap();
        w.write_all(d).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// Mutated XML parts and mutated zip bytes go straight to the converter (no panic boundary):
/// it must answer, never panic.
#[test]
fn mutated_documents_never_panic_the_converter() {
    let Some(dir) = oletools() else { return };
    let attachments = AttachmentPolicy::default();
    let policy = Policy {
        attachments: &attachments,
        links: LinkPolicy::Show,
        limits: limits(),
        depth: 0,
    };
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut outcomes = [0usize; 2];
    for path in [
        "msodde/dde-test.docx",
        "oleobj/embedded-simple-2007.xlsx",
        "oleobj/external_link/sample_with_external_link_to_doc.pptx",
        "excel4-macros/excel4_sample_macro.xlsm",
    ] {
        let data = std::fs::read(dir.join(path)).unwrap();
        let members = unzip(&data);
        for _ in 0..150 {
            let mut m = members.clone();
            let i = rng.below(m.len());
            let part = &mut m[i].1;
            for _ in 0..1 + rng.below(4) {
                if part.is_empty() {
                    break;
                }
                let at = rng.below(part.len());
                match rng.below(4) {
                    0 => part[at] = b"<>\"'/&;:="[rng.below(9)],
                    1 => part.truncate(at),
                    2 => {
                        let len = rng.below(64).min(part.len() - at);
                        let chunk = part[at..at + len].to_vec();
                        part.splice(at..at, chunk);
                    }
                    _ => part[at] = rng.next() as u8,
                }
            }
            let v = cdr::office::disarm(&rezip(&m), "docx", "x.docx", &policy);
            outcomes[usize::from(matches!(v, Verdict::Keep(_)))] += 1;
            if let Verdict::Keep(d) = &v {
                let bad = active_content(path, &d.data, 0);
                assert!(bad.is_empty(), "{path}: {bad:?}");
            }
        }
        for _ in 0..150 {
            let mut d = data.clone();
            let at = rng.below(d.len());
            if rng.below(2) == 0 {
                d.truncate(at);
            } else {
                d[at] = rng.next() as u8;
            }
            let _ = cdr::office::disarm(&d, "docx", "x.docx", &policy);
        }
    }
    eprintln!(
        "mutated parts: {} removed, {} kept",
        outcomes[0], outcomes[1]
    );
    assert!(outcomes[0] > 0 && outcomes[1] > 0);
}

// -----------------------------------------------------------------------------------------
// Hand-made packages: images inside OOXML, hyperlinks.

fn zip_of(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
    rezip(
        &members
            .iter()
            .map(|(n, d)| (n.to_string(), d.clone()))
            .collect::<Vec<_>>(),
    )
}

fn jpeg_segment(marker: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![0xFF, marker];
    v.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// A 24×16 JPEG carrying EXIF with a GPS directory (latitude 35° N) and a camera name.
fn photo_with_gps() -> Vec<u8> {
    let img = image::RgbImage::from_fn(24, 16, |x, y| image::Rgb([x as u8 * 9, y as u8 * 13, 80]));
    let mut jpg = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut Cursor::new(&mut jpg), image::ImageFormat::Jpeg)
        .unwrap();
    let mut t = b"Exif\0\0MM\0*\0\0\0\x08".to_vec();
    // IFD0: Make (ASCII[8] at 38) and the GPS IFD pointer (at 46).
    t.extend_from_slice(&[0, 2]);
    t.extend_from_slice(&[0x01, 0x0F, 0, 2, 0, 0, 0, 8, 0, 0, 0, 38]);
    t.extend_from_slice(&[0x88, 0x25, 0, 4, 0, 0, 0, 1, 0, 0, 0, 46]);
    t.extend_from_slice(&[0, 0, 0, 0]);
    t.extend_from_slice(b"GPSCam1\0");
    t.extend_from_slice(&[0, 1]);
    t.extend_from_slice(&[0, 1, 0, 2, 0, 0, 0, 2, b'N', 0, 0, 0]); // GPSLatitudeRef
    t.extend_from_slice(&[0, 0, 0, 0]);
    let mut out = jpg[..2].to_vec();
    out.extend_from_slice(&jpeg_segment(0xE1, &t));
    out.extend_from_slice(&jpg[2..]);
    out.extend_from_slice(b"TRAILING-PAYLOAD");
    out
}

const DOC_NS: &str = "xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\" \
     xmlns:r=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships\"";

/// A docx with a photo (EXIF GPS), a damaged PNG, an external hyperlink, a HYPERLINK field to
/// an outside address and a table-of-contents link to a bookmark.
fn docx_with_media_and_links() -> Vec<u8> {
    let ct = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Default Extension="jpeg" ContentType="image/jpeg"/><Default Extension="png" ContentType="image/png"/><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>"#;
    let rels = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>"#;
    let doc_rels = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/hyperlink" Target="https://evil.example/phish" TargetMode="External"/><Relationship Id="rId3" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/image" Target="media/image1.jpeg"/><Relationship Id="rId4" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/image" Target="media/image2.png"/></Relationships>"#;
    let doc = format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:document {DOC_NS}><w:body><w:p><w:r><w:t>市役所からのお知らせ</w:t></w:r></w:p><w:p><w:hyperlink r:id="rId2" w:history="1"><w:r><w:t>申込はこちら</w:t></w:r></w:hyperlink></w:p><w:p><w:r><w:fldChar w:fldCharType="begin"/></w:r><w:r><w:instrText xml:space="preserve"> HYPERLINK "https://evil.example/field" </w:instrText></w:r><w:r><w:fldChar w:fldCharType="separate"/></w:r><w:r><w:t>外部サイト</w:t></w:r><w:r><w:fldChar w:fldCharType="end"/></w:r></w:p><w:p><w:r><w:fldChar w:fldCharType="begin"/></w:r><w:r><w:instrText xml:space="preserve"> HYPERLINK \l "_Toc1" </w:instrText></w:r><w:r><w:fldChar w:fldCharType="separate"/></w:r><w:r><w:t>目次の見出し</w:t></w:r><w:r><w:fldChar w:fldCharType="end"/></w:r></w:p><w:p><w:r><w:drawing><a:blip xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main" r:embed="rId3"/><a:blip xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main" r:embed="rId4"/></w:drawing></w:r></w:p></w:body></w:document>"#
    );
    zip_of(&[
        ("[Content_Types].xml", ct.as_bytes().to_vec()),
        ("_rels/.rels", rels.as_bytes().to_vec()),
        ("word/document.xml", doc.into_bytes()),
        ("word/_rels/document.xml.rels", doc_rels.as_bytes().to_vec()),
        ("word/media/image1.jpeg", photo_with_gps()),
        (
            "word/media/image2.png",
            b"\x89PNG\r\n\x1a\nnot really a picture".to_vec(),
        ),
    ])
}

/// Start and end tags balance (a crude well-formedness check of the edited XML).
fn balanced(xml: &str) -> bool {
    let mut stack: Vec<&str> = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find('<') {
        let Some(j) = rest[i..].find('>') else {
            return false;
        };
        let tag = &rest[i + 1..i + j];
        rest = &rest[i + j + 1..];
        if tag.starts_with('?') || tag.starts_with('!') || tag.ends_with('/') {
            continue;
        }
        let name = tag.split_whitespace().next().unwrap_or("");
        if let Some(end) = name.strip_prefix('/') {
            if stack.pop() != Some(end) {
                return false;
            }
        } else {
            stack.push(name);
        }
    }
    stack.is_empty()
}

#[test]
fn images_inside_ooxml_are_reencoded_and_hyperlinks_removed_with_their_text_kept() {
    let input = docx_with_media_and_links();
    let v = run(&input, "oshirase.docx");
    let d = kept(&v).unwrap_or_else(|| panic!("removed: {v:?}"));
    for line in [
        "1 hyperlinks to outside addresses removed (their text is kept)",
        "hyperlink field to an outside address removed (its text is kept)",
        "1 embedded images re-encoded from pixels (metadata removed)",
        "1 embedded images that could not be decoded replaced by a blank image",
    ] {
        assert!(
            d.changes.iter().any(|c| c == line),
            "{line:?} not in {:?}",
            d.changes
        );
    }
    assert_eq!(d.extension, None);
    check_package("media docx", &d.data);
    let members: std::collections::HashMap<String, Vec<u8>> = unzip(&d.data).into_iter().collect();
    // The photo: still a JPEG of the same size, without EXIF, GPS or the trailing payload.
    let photo = &members["word/media/image1.jpeg"];
    assert!(photo.starts_with(b"\xFF\xD8\xFF"));
    for gone in [&b"Exif"[..], b"GPSCam1", b"TRAILING-PAYLOAD"] {
        assert!(
            memchr::memmem::find(photo, gone).is_none(),
            "{} survived",
            String::from_utf8_lossy(gone)
        );
    }
    let img = image::load_from_memory_with_format(photo, image::ImageFormat::Jpeg).unwrap();
    assert_eq!((img.width(), img.height()), (24, 16));
    // The damaged PNG: a valid blank PNG under the same name.
    let blank = &members["word/media/image2.png"];
    let img = image::load_from_memory_with_format(blank, image::ImageFormat::Png).unwrap();
    assert_eq!((img.width(), img.height()), (1, 1));
    // Relationships to both images stay; the hyperlink's is gone.
    let rels = String::from_utf8_lossy(&members["word/_rels/document.xml.rels"]).into_owned();
    assert!(rels.contains("media/image1.jpeg") && rels.contains("media/image2.png"));
    assert!(
        !rels.contains("evil.example") && !rels.contains("TargetMode"),
        "{rels}"
    );
    // The document keeps every text, the bookmark link, and no outside address.
    let doc = String::from_utf8_lossy(&members["word/document.xml"]).into_owned();
    assert!(balanced(&doc), "{doc}");
    assert!(!doc.contains("evil.example"), "{doc}");
    assert!(!doc.contains("r:id=\"rId2\""), "{doc}");
    assert!(
        doc.contains("<w:hyperlink"),
        "the hyperlink element stays (its text inside)"
    );
    assert!(doc.contains(r#"HYPERLINK \l "_Toc1""#), "{doc}");
    let text = visible_text(&d.data);
    for t in [
        "市役所からのお知らせ",
        "申込はこちら",
        "外部サイト",
        "目次の見出し",
    ] {
        assert!(text.contains(t), "{t} lost: {text}");
    }
    assert!(active_content("media docx", &d.data, 0).is_empty());
}

/// Every image format inside a package stays its own format (names and content types valid).
#[test]
fn images_inside_ooxml_keep_their_format() {
    let src = image::DynamicImage::ImageRgba8(image::RgbaImage::from_fn(5, 4, |x, y| {
        image::Rgba([x as u8 * 50, y as u8 * 60, 7, 200])
    }));
    let formats = [
        ("gif", image::ImageFormat::Gif),
        ("bmp", image::ImageFormat::Bmp),
        ("tiff", image::ImageFormat::Tiff),
        ("webp", image::ImageFormat::WebP),
        ("png", image::ImageFormat::Png),
    ];
    let mut members = vec![
        (
            "[Content_Types].xml",
            r#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="gif" ContentType="image/gif"/><Default Extension="bmp" ContentType="image/bmp"/><Default Extension="tiff" ContentType="image/tiff"/><Default Extension="webp" ContentType="image/webp"/><Default Extension="png" ContentType="image/png"/><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>"#
                .as_bytes()
                .to_vec(),
        ),
        (
            "_rels/.rels",
            r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>"#
                .as_bytes()
                .to_vec(),
        ),
        (
            "word/document.xml",
            format!(r#"<?xml version="1.0" encoding="UTF-8"?><w:document {DOC_NS}><w:body><w:p><w:r><w:t>画像</w:t></w:r></w:p></w:body></w:document>"#).into_bytes(),
        ),
    ];
    let mut rels = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">"#,
    );
    let names: Vec<String> = formats
        .iter()
        .map(|(e, _)| format!("word/media/p.{e}"))
        .collect();
    for (i, ((ext, fmt), name)) in formats.iter().zip(&names).enumerate() {
        let mut buf = Cursor::new(Vec::new());
        src.write_to(&mut buf, *fmt).unwrap();
        let mut bytes = buf.into_inner();
        bytes.extend_from_slice(b"appended-zip PK\x03\x04");
        members.push((name.as_str(), bytes));
        rels.push_str(&format!(
            r#"<Relationship Id="rId{i}" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/image" Target="media/p.{ext}"/>"#
        ));
    }
    rels.push_str("</Relationships>");
    members.push(("word/_rels/document.xml.rels", rels.into_bytes()));
    let v = run(&zip_of(&members), "pictures.docx");
    let d = kept(&v).unwrap_or_else(|| panic!("removed: {v:?}"));
    assert!(
        d.changes
            .iter()
            .any(|c| c == "5 embedded images re-encoded from pixels (metadata removed)"),
        "{:?}",
        d.changes
    );
    let out: std::collections::HashMap<String, Vec<u8>> = unzip(&d.data).into_iter().collect();
    for ((ext, fmt), name) in formats.iter().zip(&names) {
        let bytes = &out[name];
        assert!(
            memchr::memmem::find(bytes, b"appended-zip").is_none(),
            "{ext}"
        );
        let img = image::load_from_memory_with_format(bytes, *fmt)
            .unwrap_or_else(|e| panic!("{ext}: {e}"));
        assert_eq!((img.width(), img.height()), (5, 4), "{ext}");
    }
}
