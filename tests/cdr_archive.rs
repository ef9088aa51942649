//! Archives and TNEF through `cdr::disarm`, on inputs built here: members disarmed and
//! renamed, hostile names refused, password-protected members following `encrypted_archive`,
//! and bombs (ratio, nesting, 42.zip fan-out, 10,000 entries) refused within seconds.

use std::io::{Cursor, Read, Write};
use std::time::{Duration, Instant};

use mugaika::cdr::{self, Limits, Policy, Verdict};
use mugaika::config::{AttachmentAction, AttachmentPolicy, LinkPolicy, SanitizeConfig};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

fn default_limits() -> Limits {
    Limits::from_config(&SanitizeConfig::default())
}

fn run_full(
    data: &[u8],
    filename: &str,
    attachments: &AttachmentPolicy,
    limits: Limits,
) -> Verdict {
    let policy = Policy {
        attachments,
        links: LinkPolicy::Show,
        limits,
        depth: 0,
    };
    cdr::disarm(data, filename, None, &policy)
}

fn run(data: &[u8], filename: &str) -> Verdict {
    run_full(
        data,
        filename,
        &AttachmentPolicy::default(),
        default_limits(),
    )
}

/// Runs and checks the time bound every hostile input must meet.
fn run_timed(data: &[u8], filename: &str, limits: Limits) -> Verdict {
    let t = Instant::now();
    let v = run_full(data, filename, &AttachmentPolicy::default(), limits);
    let took = t.elapsed();
    eprintln!("{filename}: {took:?}");
    assert!(took < Duration::from_secs(5), "{filename} took {took:?}");
    v
}

fn removed(v: Verdict) -> String {
    match v {
        Verdict::Remove { reason } => reason,
        v => panic!("expected removal, got {v:?}"),
    }
}

fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = ZipWriter::new(Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
    for (name, data) in entries {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn unzip(data: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut z = zip::ZipArchive::new(Cursor::new(data)).unwrap();
    (0..z.len())
        .map(|i| {
            let mut f = z.by_index(i).unwrap();
            let mut b = Vec::new();
            f.read_to_end(&mut b).unwrap();
            (f.name().unwrap().to_string(), b)
        })
        .collect()
}

/// A minimal Word document; with `macros`, a macro-enabled one with a VBA project.
fn word(text: &str, macros: bool) -> Vec<u8> {
    let main = if macros {
        "application/vnd.ms-word.document.macroEnabled.main+xml"
    } else {
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"
    };
    let ct = format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Default Extension="bin" ContentType="application/vnd.ms-office.vbaProject"/><Override PartName="/word/document.xml" ContentType="{main}"/></Types>"#
    );
    let rels = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>"#;
    let doc = format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>{text}</w:t></w:r></w:p></w:body></w:document>"#
    );
    let doc_rels = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId9" Type="http://schemas.microsoft.com/office/2006/relationships/vbaProject" Target="vbaProject.bin"/></Relationships>"#;
    let mut entries: Vec<(&str, &[u8])> = vec![
        ("[Content_Types].xml", ct.as_bytes()),
        ("_rels/.rels", rels.as_bytes()),
        ("word/document.xml", doc.as_bytes()),
    ];
    let vba = b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1 fake VBA storage".to_vec();
    if macros {
        entries.push(("word/_rels/document.xml.rels", doc_rels.as_bytes()));
        entries.push(("word/vbaProject.bin", &vba));
    }
    zip_of(&entries)
}

const EXE: &[u8] = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xFF\xFF\x00\x00 not really";

#[test]
fn members_are_disarmed_renamed_or_removed() {
    let docm = word("予算案の説明", true);
    let docx = word("議事録", false);
    let z = zip_of(&[
        ("資料/予算.docm", &docm),
        ("資料/議事録.docx", &docx),
        ("setup.exe", EXE),
        ("dir/", b""),
    ]);
    let d = match run(&z, "資料.zip") {
        Verdict::Keep(d) => d,
        v => panic!("{v:?}"),
    };
    assert_eq!(d.content_type, "application/zip");
    let members = unzip(&d.data);
    let names: Vec<&str> = members.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"資料/予算.docx"), "{names:?}");
    assert!(names.contains(&"資料/議事録.docx"), "{names:?}");
    assert!(
        !names
            .iter()
            .any(|n| n.contains("exe") || n.ends_with(".docm")),
        "{names:?}"
    );
    let (_, converted) = members.iter().find(|(n, _)| n == "資料/予算.docx").unwrap();
    let inner: Vec<String> = unzip(converted).into_iter().map(|(n, _)| n).collect();
    assert!(!inner.iter().any(|n| n.contains("vbaProject")), "{inner:?}");
    let main = unzip(converted)
        .into_iter()
        .find(|(n, _)| n == "word/document.xml")
        .unwrap()
        .1;
    assert!(String::from_utf8(main).unwrap().contains("予算案の説明"));
    assert!(
        d.changes
            .iter()
            .any(|c| c.starts_with("setup.exe: removed")),
        "{:?}",
        d.changes
    );
    assert!(
        d.changes
            .iter()
            .any(|c| c.starts_with("資料/予算.docm → 資料/予算.docx")),
        "{:?}",
        d.changes
    );
}

#[test]
fn an_archive_with_no_survivor_is_removed() {
    let z = zip_of(&[("a.exe", EXE), ("b.exe", EXE)]);
    let reason = removed(run(&z, "x.zip"));
    assert!(reason.contains("no member could be delivered"), "{reason}");
    assert!(reason.contains("a.exe"), "{reason}");
}

#[test]
fn zip_slip_and_absolute_names_are_refused() {
    let doc = word("x", false);
    for bad in [
        "../evil.docx",
        "/etc/evil.docx",
        "C:\\Windows\\evil.docx",
        "a/../../evil.docx",
    ] {
        let z = zip_of(&[("ok.docx", &doc), (bad, &doc)]);
        let reason = removed(run(&z, "x.zip"));
        assert!(reason.contains("climbs out"), "{bad}: {reason}");
    }
    // Case-insensitive duplicates: extracted on Windows, one would overwrite the other.
    let z = zip_of(&[("Report.docx", &doc), ("report.DOCX", &doc)]);
    assert!(removed(run(&z, "x.zip")).contains("collide"));
}

/// Sets the "encrypted" flag of every entry, in local and central headers.
fn mark_encrypted(mut z: Vec<u8>) -> Vec<u8> {
    for sig in [&b"PK\x03\x04"[..], b"PK\x01\x02"] {
        let off = if sig == b"PK\x03\x04" { 6 } else { 8 };
        let positions: Vec<usize> = z
            .windows(4)
            .enumerate()
            .filter(|(_, w)| *w == sig)
            .map(|(i, _)| i)
            .collect();
        for p in positions {
            z[p + off] |= 1;
        }
    }
    z
}

#[test]
fn password_protected_members_follow_encrypted_archive() {
    let doc = word("x", false);
    let enc = mark_encrypted(zip_of(&[("secret.docx", &doc)]));
    match run(&enc, "ppap.zip") {
        Verdict::Quarantine { reason } => assert!(reason.contains("password"), "{reason}"),
        v => panic!("{v:?}"),
    }
    let remove = AttachmentPolicy {
        encrypted_archive: AttachmentAction::Remove,
        ..AttachmentPolicy::default()
    };
    assert!(matches!(
        run_full(&enc, "ppap.zip", &remove, default_limits()),
        Verdict::Remove { .. }
    ));
    // Hidden one level down, after a harmless member: the whole archive is held back.
    let outer = zip_of(&[("readme.docx", &doc), ("inner.zip", &enc)]);
    match run(&outer, "outer.zip") {
        Verdict::Quarantine { reason } => assert!(reason.contains("inner.zip"), "{reason}"),
        v => panic!("{v:?}"),
    }
}

#[test]
fn ten_thousand_entries_are_refused_quickly() {
    let mut w = ZipWriter::new(Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
    for i in 0..10_000 {
        w.start_file(format!("f{i}.txt"), opts).unwrap();
        w.write_all(b"x").unwrap();
    }
    let z = w.finish().unwrap().into_inner();
    let reason = removed(run_timed(&z, "many.zip", default_limits()));
    assert!(reason.contains("too many entries"), "{reason}");
}

fn zeros_member(size: usize) -> Vec<u8> {
    vec![0u8; size]
}

#[test]
fn ratio_bomb_is_refused_quickly() {
    let z = zip_of(&[("zeros.docx", &zeros_member(64 << 20))]);
    assert!(z.len() < 1 << 20);
    let reason = removed(run_timed(&z, "bomb.zip", default_limits()));
    assert!(reason.contains("ratio"), "{reason}");
}

#[test]
fn nested_42_style_bomb_is_refused_quickly() {
    // Innermost: 16 members of 16 MiB of zeros; then three levels of 16 copies each.
    let big = zeros_member(16 << 20);
    let names: Vec<String> = (0..16).map(|i| format!("{i}.bin")).collect();
    let mut level = {
        let entries: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &big[..])).collect();
        zip_of(&entries)
    };
    for depth in 0..3 {
        let names: Vec<String> = (0..16).map(|i| format!("lib{depth}_{i}.zip")).collect();
        let entries: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &level[..])).collect();
        level = zip_of(&entries);
    }
    eprintln!(
        "42-style bomb: {} octets, 16^4 x 16 MiB = 1 TiB declared",
        level.len()
    );
    let reason = removed(run_timed(&level, "42.zip", default_limits()));
    assert!(
        reason.contains("ratio") || reason.contains("size limit") || reason.contains("no member"),
        "{reason}"
    );
}

#[test]
fn the_whole_tree_shares_one_budget() {
    // Members below the ratio floor, 8 per level, 3 levels: 512 x 900 KiB declared; a budget of
    // 8 MiB must stop it, wherever in the tree it runs out.
    let member = zeros_member(900 << 10);
    let names: Vec<String> = (0..8).map(|i| format!("{i}.docx")).collect();
    let mut level = {
        let entries: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &member[..])).collect();
        zip_of(&entries)
    };
    for depth in 0..2 {
        let names: Vec<String> = (0..8).map(|i| format!("l{depth}_{i}.zip")).collect();
        let entries: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &level[..])).collect();
        level = zip_of(&entries);
    }
    let limits = Limits {
        max_uncompressed: 8 << 20,
        ..default_limits()
    };
    let reason = removed(run_timed(&level, "tree.zip", limits));
    assert!(reason.contains("size limit"), "{reason}");
}

#[test]
fn nesting_deeper_than_the_limit_is_removed() {
    let mut level = word("deep", false);
    let mut name = "doc.docx".to_string();
    for i in 0..6 {
        level = zip_of(&[(name.as_str(), &level)]);
        name = format!("level{i}.zip");
    }
    let reason = removed(run_timed(&level, &name, default_limits()));
    assert!(reason.contains("max_archive_depth"), "{reason}");
    // Within the limit it is kept, one docx at the bottom.
    let mut level = word("shallow", false);
    let mut name = "doc.docx".to_string();
    for i in 0..3 {
        level = zip_of(&[(name.as_str(), &level)]);
        name = format!("level{i}.zip");
    }
    assert!(matches!(run(&level, &name), Verdict::Keep(_)));
}

/// A gzip stream is delivered as the file it holds, disarmed (the clean message carries no
/// gzip): `memo.docm.gz` arrives as `memo.docx`, without its VBA project.
#[test]
fn gzip_is_unpacked_and_its_contents_disarmed() {
    let docm = word("gz", true);
    let mut enc = flate2::GzBuilder::new()
        .filename("memo.docm")
        .write(Vec::new(), flate2::Compression::default());
    enc.write_all(&docm).unwrap();
    let mut gz = enc.finish().unwrap();
    gz.extend_from_slice(b"trailing junk");
    let d = match run(&gz, "memo.docm.gz") {
        Verdict::Keep(d) => d,
        v => panic!("{v:?}"),
    };
    assert!(d.data.is_empty(), "the container itself is not delivered");
    assert_eq!(d.extra.len(), 1);
    let (name, inner) = &d.extra[0];
    assert_eq!(name, "memo.docx");
    assert_eq!(inner.extension, None);
    assert!(inner.content_type.contains("wordprocessingml"));
    assert!(!unzip(&inner.data)
        .iter()
        .any(|(n, _)| n.contains("vbaProject")));
    assert!(
        inner
            .changes
            .iter()
            .any(|c| c.contains("data after the compressed stream")),
        "{:?}",
        inner.changes
    );
    // Inside a zip, the unpacked file takes the gzip's place.
    let z = zip_of(&[("dir/memo.docm.gz", &gz)]);
    let d = match run(&z, "a.zip") {
        Verdict::Keep(d) => d,
        v => panic!("{v:?}"),
    };
    let names: Vec<String> = unzip(&d.data).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["dir/memo.docx"]);
    // Nothing deliverable inside: removed with the reason.
    let mut enc = flate2::GzBuilder::new()
        .filename("setup.exe")
        .write(Vec::new(), flate2::Compression::default());
    enc.write_all(EXE).unwrap();
    let r = removed(run(&enc.finish().unwrap(), "setup.exe.gz"));
    assert!(r.starts_with("gzip: setup.exe: removed"), "{r}");
    // A gzip bomb.
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&zeros_member(64 << 20)).unwrap();
    let bomb = enc.finish().unwrap();
    assert!(removed(run_timed(&bomb, "bomb.gz", default_limits())).contains("ratio"));
}

/// A ustar archive built by hand: (name, typeflag, data).
fn tar_of(entries: &[(&str, u8, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, flag, data) in entries {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..108].copy_from_slice(b"0000644\0");
        h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
        h[136..148].copy_from_slice(b"00000000000\0");
        h[156] = *flag;
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

#[test]
fn tar_members_are_disarmed_and_links_dropped() {
    let docm = word("tar", true);
    let t = tar_of(&[
        ("docs/a.docm", b'0', &docm),
        ("docs/run.exe", b'0', EXE),
        ("docs/link", b'2', b""),
    ]);
    let d = match run(&t, "docs.tar") {
        Verdict::Keep(d) => d,
        v => panic!("{v:?}"),
    };
    // Rebuilt as a zip holding just the converted document, its time kept.
    assert_eq!(d.content_type, "application/zip");
    assert_eq!(d.extension.as_deref(), Some("zip"));
    let names: Vec<String> = unzip(&d.data).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["docs/a.docx"]);
    assert_eq!(d.changes[0], "tar archive rebuilt as a zip archive");
    assert!(
        d.changes.iter().any(|c| c.contains("link removed")),
        "{:?}",
        d.changes
    );
    assert!(
        d.changes
            .iter()
            .any(|c| c.starts_with("docs/run.exe: removed")),
        "{:?}",
        d.changes
    );
    let slip = tar_of(&[("../../etc/cron.d/x", b'0', b"x")]);
    assert!(removed(run(&slip, "x.tar")).contains("climbs out"));
}

#[test]
fn uninspectable_archive_formats_are_removed() {
    for (data, name) in [
        (&b"7z\xBC\xAF\x27\x1C\x00\x04 rest"[..], "a.7z"),
        (b"Rar!\x1A\x07\x01\x00 rest", "a.rar"),
        (b"MSCF\0\0\0\0 rest", "a.cab"),
    ] {
        let reason = removed(run(data, name));
        assert!(reason.contains("cannot be inspected"), "{name}: {reason}");
    }
}

/// One TNEF attribute: level, id, data, checksum.
fn tnef_attr(out: &mut Vec<u8>, level: u8, id: u32, data: &[u8]) {
    out.push(level);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
    let sum: u32 = data.iter().map(|&b| u32::from(b)).sum();
    out.extend_from_slice(&(sum as u16).to_le_bytes());
}

/// MAPI properties: one PT_UNICODE long file name.
fn mapi_long_name(name: &str) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&1u32.to_le_bytes());
    v.extend_from_slice(&0x001Fu16.to_le_bytes());
    v.extend_from_slice(&0x3707u16.to_le_bytes());
    v.extend_from_slice(&1u32.to_le_bytes());
    let mut s: Vec<u8> = name.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
    s.extend_from_slice(&[0, 0]);
    v.extend_from_slice(&(s.len() as u32).to_le_bytes());
    let pad = (4 - s.len() % 4) % 4;
    v.extend_from_slice(&s);
    v.extend(std::iter::repeat_n(0u8, pad));
    v
}

fn tnef(body: &str, attachments: &[(&str, &[u8])]) -> Vec<u8> {
    let mut t = b"\x78\x9F\x3E\x22\x01\x00".to_vec();
    tnef_attr(&mut t, 1, 0x0002_800C, body.as_bytes());
    for (name, data) in attachments {
        tnef_attr(&mut t, 2, 0x0006_9002, &[0u8; 14]);
        tnef_attr(&mut t, 2, 0x0001_8010, b"SHORT~1.DOC\0");
        tnef_attr(&mut t, 2, 0x0006_800F, data);
        tnef_attr(&mut t, 2, 0x0006_9005, &mapi_long_name(name));
    }
    t
}

#[test]
fn tnef_attachments_are_extracted_and_disarmed() {
    let docm = word("winmail", true);
    let t = tnef(
        "Body of the message",
        &[("会議資料.docm", &docm), ("tool.exe", EXE)],
    );
    let d = match run(&t, "winmail.dat") {
        Verdict::Keep(d) => d,
        v => panic!("{v:?}"),
    };
    assert_eq!(d.data, b"Body of the message");
    assert_eq!(d.content_type, "text/plain; charset=utf-8");
    assert_eq!(d.extra.len(), 1, "{:?}", d.changes);
    let (name, doc) = &d.extra[0];
    assert_eq!(name, "会議資料.docm");
    assert_eq!(doc.extension.as_deref(), Some("docx"));
    assert!(!unzip(&doc.data)
        .iter()
        .any(|(n, _)| n.contains("vbaProject")));
    assert!(
        d.changes.iter().any(|c| c.starts_with("tool.exe: removed")),
        "{:?}",
        d.changes
    );
    // Nothing deliverable: removed.
    let only_exe = tnef("", &[("tool.exe", EXE)]);
    assert!(removed(run(&only_exe, "winmail.dat")).contains("nothing deliverable"));
    // Truncated: removed, not a panic.
    for cut in [3, 10, 40, t.len() - 5] {
        assert!(
            matches!(run(&t[..cut], "winmail.dat"), Verdict::Remove { .. }),
            "cut {cut}"
        );
    }
}

/// Archive throughput, in MB/s of input: a zip of 40 Word documents.
/// `cargo test --release --test cdr_archive -- --ignored --nocapture`
#[test]
#[ignore]
fn bench_archive_disarm() {
    let docs: Vec<(String, Vec<u8>)> = (0..40)
        .map(|i| {
            (
                format!("doc{i}.docm"),
                word(&"本文のテキスト。".repeat(2000), true),
            )
        })
        .collect();
    let entries: Vec<(&str, &[u8])> = docs.iter().map(|(n, d)| (n.as_str(), &d[..])).collect();
    let z = zip_of(&entries);
    let rounds = 20;
    let t = Instant::now();
    for _ in 0..rounds {
        assert!(matches!(run(&z, "docs.zip"), Verdict::Keep(_)));
    }
    let secs = t.elapsed().as_secs_f64();
    eprintln!(
        "archive disarm: {} octets zip of 40 docm: {:.1} MB/s compressed input, {:.1} ms per archive",
        z.len(),
        (z.len() * rounds) as f64 / secs / 1e6,
        secs * 1000.0 / rounds as f64
    );
    eprintln!(
        "  ({:.1} MB/s of uncompressed members)",
        (docs
            .iter()
            .map(|(_, d)| unzip(d).iter().map(|(_, b)| b.len()).sum::<usize>())
            .sum::<usize>()
            * rounds) as f64
            / secs
            / 1e6
    );
    // One large document: 8 MB of varied text (repetitive text would be refused by the
    // ratio limit, as it should).
    let pool: Vec<char> = "市町村役場住民票課税証明書申請手続窓口電子交付予算議会報告事業計画"
        .chars()
        .collect();
    let mut seed = 88172645463325252u64;
    let text: String = (0..2_800_000)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            pool[(seed % pool.len() as u64) as usize]
        })
        .collect();
    let big = word(&text, true);
    let t = Instant::now();
    assert!(matches!(run(&big, "big.docm"), Verdict::Keep(_)));
    let secs = t.elapsed().as_secs_f64();
    let raw: usize = unzip(&big).iter().map(|(_, b)| b.len()).sum();
    eprintln!(
        "office disarm of one {raw}-octet document ({} compressed): {:.1} MB/s uncompressed, {:.0} ms",
        big.len(),
        raw as f64 / secs / 1e6,
        secs * 1000.0
    );
    let bomb = zip_of(&[("z.bin", &zeros_member(256 << 20))]);
    let t = Instant::now();
    let _ = run(&bomb, "bomb.zip");
    eprintln!("ratio bomb (256 MiB declared) refused in {:?}", t.elapsed());
}

/// Truncated and corrupted containers go straight to the converters (no panic boundary).
#[test]
fn corrupted_containers_never_panic_the_converters() {
    let attachments = AttachmentPolicy::default();
    let policy = Policy {
        attachments: &attachments,
        links: LinkPolicy::Show,
        limits: default_limits(),
        depth: 0,
    };
    let docm = word("x", true);
    let z = zip_of(&[("a.docm", &docm), ("b.exe", EXE)]);
    let t = tnef("body", &[("a.docm", &docm)]);
    let tar = tar_of(&[("a.docm", b'0', &docm)]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&docm).unwrap();
    let gz = gz.finish().unwrap();
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for (name, data) in [("zip", &z), ("tnef", &t), ("tar", &tar), ("gzip", &gz)] {
        for i in 0..400 {
            let mut d = data.clone();
            let at = (rnd() as usize) % d.len();
            match i % 3 {
                0 => d.truncate(at),
                1 => d[at] = rnd() as u8,
                _ => d[at] ^= 0x80,
            }
            let _ = if name == "tnef" {
                cdr::tnef::disarm(&d, &policy)
            } else {
                cdr::archive::disarm(&d, name, &policy)
            };
        }
    }
}

#[test]
fn unreferenced_parts_of_a_document_are_not_delivered() {
    let doc = word("hidden payload", false);
    let mut members = unzip(&doc);
    members.push(("word/media/payload.exe".into(), EXE.to_vec()));
    let entries: Vec<(&str, &[u8])> = members.iter().map(|(n, d)| (n.as_str(), &d[..])).collect();
    let d = match run(&zip_of(&entries), "a.docx") {
        Verdict::Keep(d) => d,
        v => panic!("{v:?}"),
    };
    assert!(
        d.changes
            .contains(&"1 unreferenced part(s) removed".to_string()),
        "{:?}",
        d.changes
    );
    assert!(!unzip(&d.data).iter().any(|(n, _)| n.contains("payload")));
}

/// Text members (archive and TNEF): kept as UTF-8 text with CRLF lines, controls gone, names
/// that Windows would run renamed `.txt`; text that is not text, or active XML, removed; with
/// `text = "remove"` every text member goes.
#[test]
fn text_members_are_reencoded_or_removed_by_the_text_key() {
    let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode("氏名,金額\n山田,=cmd|' /C calc'!A0\n");
    let z = zip_of(&[
        ("名簿.csv", &sjis),
        ("memo.txt", "議事録\u{202E}gpj.exe\u{7}\n".as_bytes()),
        ("run.js", b"WScript.CreateObject(\"WScript.Shell\").Run(\"calc\")\n"),
        ("form.xml", "<?xml version=\"1.0\"?>\n<申請><氏名>山田</氏名></申請>\n".as_bytes()),
        ("style.xml", b"<?xml version=\"1.0\"?><?xml-stylesheet type=\"text/xsl\" href=\"http://e/x.xsl\"?><a/>"),
        ("data.txt", b"\x00\x01\x02binary\x00\xff\xfe"),
    ]);
    let d = match run(&z, "資料.zip") {
        Verdict::Keep(d) => d,
        v => panic!("{v:?}"),
    };
    let members: std::collections::HashMap<String, Vec<u8>> = unzip(&d.data).into_iter().collect();
    let mut names: Vec<&String> = members.keys().collect();
    names.sort();
    assert_eq!(
        names,
        ["form.xml", "memo.txt", "run.txt", "名簿.csv"],
        "{:?}",
        d.changes
    );
    assert_eq!(
        String::from_utf8(members["名簿.csv"].clone()).unwrap(),
        "氏名,金額\r\n山田,'=cmd|' /C calc'!A0\r\n"
    );
    assert_eq!(members["memo.txt"], "議事録gpj.exe\r\n".as_bytes());
    assert!(String::from_utf8(members["form.xml"].clone())
        .unwrap()
        .contains("<氏名>山田</氏名>"));
    for (member, why) in [
        ("style.xml", "markup that a browser could run"),
        ("data.txt", "other = remove"),
    ] {
        assert!(
            d.changes
                .iter()
                .any(|c| c.starts_with(&format!("{member}: removed")) && c.contains(why)),
            "{member}: {:?}",
            d.changes
        );
    }
    assert!(
        d.changes
            .iter()
            .any(|c| c.contains("re-encoded from Shift_JIS to UTF-8")),
        "{:?}",
        d.changes
    );

    let no_text = AttachmentPolicy {
        text: AttachmentAction::Remove,
        ..AttachmentPolicy::default()
    };
    let only_text = zip_of(&[("memo.txt", b"hello\n"), ("a.csv", b"a,b\n")]);
    let r = removed(run_full(&only_text, "t.zip", &no_text, default_limits()));
    assert!(r.contains("text = remove"), "{r}");

    // TNEF: a text attachment comes out as text; its body is cleaned the same way.
    // (attBody is in the TNEF's code page, cp1252 here: an ASCII body with a BEL.)
    let t = tnef("Body\u{7} text\n", &[("手順.bat", b"del /q C:\\*\r\n")]);
    let d = match run(&t, "winmail.dat") {
        Verdict::Keep(d) => d,
        v => panic!("{v:?}"),
    };
    assert_eq!(d.data, b"Body text\r\n");
    assert!(d
        .changes
        .iter()
        .any(|c| c == "body text: 1 control characters removed"));
    assert_eq!(d.extra.len(), 1, "{:?}", d.changes);
    let (name, member) = &d.extra[0];
    assert_eq!(name, "手順.bat");
    assert_eq!(member.extension.as_deref(), Some("txt"));
    assert_eq!(member.content_type, "text/plain; charset=utf-8");
}
