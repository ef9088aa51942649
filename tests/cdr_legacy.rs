//! Legacy Office documents (OLE2 doc/xls/ppt, RTF, ODF) under `legacy_office`: removed by
//! default, held under `quarantine`, reduced to their UTF-8 text under `text` (Japanese
//! surviving in UTF-16 pieces, BIFF8 strings split over CONTINUE records and Word 6 cp932
//! text), encrypted ones following `encrypted_archive`, macros never leaving. Fixtures are
//! compound files built here with the `cfb` crate; the oletools corpus supplies real
//! documents with VBA, Excel 4 macros, OLE objects and DDE.

use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mugaika::cdr::{self, legacy, Disarmed, Limits, Policy, Verdict};
use mugaika::config::{AttachmentAction, AttachmentPolicy, LinkPolicy, SanitizeConfig};

fn corpus() -> Option<PathBuf> {
    let base = std::env::var_os("MUGAIKA_CORPORA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpora"))
        });
    let dir = base.join("oletools-testdata/tests/test-data");
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
        "\n*** SKIP: corpus {} not found; legacy Office corpus tests not run ***\n",
        dir.display()
    );
    None
}

fn attachments(legacy_office: AttachmentAction) -> AttachmentPolicy {
    AttachmentPolicy {
        legacy_office,
        ..AttachmentPolicy::default()
    }
}

fn limits() -> Limits {
    Limits::from_config(&SanitizeConfig::default())
}

/// Through the public entry point (sniffing, dispatch, panic boundary).
fn run(data: &[u8], filename: &str, a: &AttachmentPolicy) -> Verdict {
    let policy = Policy {
        attachments: a,
        links: LinkPolicy::Defang,
        limits: limits(),
        depth: 0,
    };
    cdr::disarm(data, filename, None, &policy)
}

/// The legacy converter itself, without the panic boundary: a panic fails the test.
fn run_legacy(data: &[u8], name: &str, a: &AttachmentPolicy) -> Verdict {
    let policy = Policy {
        attachments: a,
        links: LinkPolicy::Defang,
        limits: limits(),
        depth: 0,
    };
    legacy::legacy(data, name, &policy)
}

fn text_of(v: Verdict) -> (String, Disarmed) {
    match v {
        Verdict::Keep(d) => {
            assert_eq!(d.content_type, "text/plain; charset=utf-8");
            assert_eq!(d.extension.as_deref(), Some("txt"));
            (String::from_utf8(d.data.clone()).expect("UTF-8 text"), d)
        }
        other => panic!("expected the text, got {other:?}"),
    }
}

// -----------------------------------------------------------------------------------------
// Fixtures: compound files written with the cfb crate.

fn cfb_file(streams: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut cf = cfb::CompoundFile::create(Cursor::new(Vec::new())).unwrap();
    for (path, data) in streams {
        let parts: Vec<&str> = path.split('/').collect();
        for i in 1..parts.len() {
            let storage = parts[..i].join("/");
            if !cf.exists(&storage) {
                cf.create_storage(&storage).unwrap();
            }
        }
        let mut s = cf.create_stream(path).unwrap();
        s.write_all(data).unwrap();
    }
    cf.flush().unwrap();
    cf.into_inner().into_inner()
}

fn le16(v: &mut Vec<u8>, x: u16) {
    v.extend_from_slice(&x.to_le_bytes());
}

fn le32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_le_bytes());
}

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
}

/// A Word 97 document: a compressed (cp1252) piece with a hyperlink field, then a UTF-16
/// piece with Japanese text and a table row; `flags` go into the FIB (0x0100 = encrypted).
fn word97(flags: u16, macros: bool) -> Vec<u8> {
    let piece1 = "Caf\u{e9} \u{13} HYPERLINK \"http://evil.example/\" \u{14}link\u{15} ok\r";
    let piece2 = "日本語の本文です。\rセルA\u{7}セルB\u{7}\u{7}";
    word97_with(piece1, piece2, flags, macros)
}

fn word97_with(piece1: &str, piece2: &str, flags: u16, macros: bool) -> Vec<u8> {
    let p1: Vec<u8> = encoding_rs::WINDOWS_1252.encode(piece1).0.into_owned();
    let p2 = utf16(piece2);
    let n1 = piece1.chars().count() as u32;
    let n2 = piece2.encode_utf16().count() as u32;
    // FIB: base (32), csw=14 + 28, cslw=22 + 88, cbRgFcLcb=93 + 744.
    let mut wd = Vec::new();
    le16(&mut wd, 0xA5EC);
    le16(&mut wd, 0x00C1);
    le16(&mut wd, 0);
    le16(&mut wd, 0x0411);
    le16(&mut wd, 0);
    le16(&mut wd, 0x0200 | flags);
    wd.resize(32, 0);
    le16(&mut wd, 14);
    wd.resize(wd.len() + 28, 0);
    le16(&mut wd, 22);
    let lw = wd.len();
    wd.resize(wd.len() + 88, 0);
    wd[lw + 12..lw + 16].copy_from_slice(&(n1 + n2).to_le_bytes());
    le16(&mut wd, 93);
    let rg = wd.len();
    wd.resize(wd.len() + 93 * 8, 0);
    wd.resize(0x800, 0);
    let fc1 = wd.len() as u32;
    wd.extend_from_slice(&p1);
    let fc2 = wd.len() as u32;
    wd.extend_from_slice(&p2);
    // Table stream: one Prc, then the Pcdt.
    let mut table = vec![0u8; 16];
    let fc_clx = table.len() as u32;
    table.extend_from_slice(&[0x01, 0x02, 0x00, 0xAA, 0xBB]);
    let mut plc = Vec::new();
    le32(&mut plc, 0);
    le32(&mut plc, n1);
    le32(&mut plc, n1 + n2);
    for (fc, compressed) in [(fc1, true), (fc2, false)] {
        le16(&mut plc, 0);
        le32(
            &mut plc,
            if compressed {
                (fc * 2) | 0x4000_0000
            } else {
                fc
            },
        );
        le16(&mut plc, 0);
    }
    table.push(0x02);
    le32(&mut table, plc.len() as u32);
    table.extend_from_slice(&plc);
    let lcb_clx = table.len() as u32 - fc_clx;
    wd[rg + 33 * 8..rg + 33 * 8 + 4].copy_from_slice(&fc_clx.to_le_bytes());
    wd[rg + 33 * 8 + 4..rg + 33 * 8 + 8].copy_from_slice(&lcb_clx.to_le_bytes());
    let mut streams = vec![("WordDocument", wd), ("1Table", table)];
    if macros {
        streams.push((
            "Macros/VBA/ThisDocument",
            b"Attribute VB_Name = \"ThisDocument\"\r\nSub AutoOpen()\r\nShell \"calc.exe\"\r\nEnd Sub"
                .to_vec(),
        ));
        streams.push(("ObjectPool/_1234/\u{1}Ole10Native", b"MZ payload".to_vec()));
    }
    cfb_file(&streams)
}

fn record(out: &mut Vec<u8>, typ: u16, body: &[u8]) {
    le16(out, typ);
    le16(out, body.len() as u16);
    out.extend_from_slice(body);
}

/// A BIFF8 workbook: one sheet named in Japanese, an SST whose third string starts 8-bit in
/// the SST record and continues 16-bit in a CONTINUE record, and numeric cells.
fn workbook(filepass: bool) -> Vec<u8> {
    let mut wb = Vec::new();
    let bof = |dt: u16| {
        let mut b = Vec::new();
        le16(&mut b, 0x0600);
        le16(&mut b, dt);
        b.resize(16, 0);
        b
    };
    record(&mut wb, 0x0809, &bof(0x0005));
    if filepass {
        record(&mut wb, 0x002F, &[1, 0, 1, 0, 2, 0]);
    }
    record(&mut wb, 0x0042, &1200u16.to_le_bytes());
    // BOUNDSHEET with a placeholder offset, patched below.
    let bs_at = wb.len() + 4;
    let mut bs = vec![0, 0, 0, 0, 0, 0];
    let name = utf16("売上");
    bs.push(2);
    bs.push(1);
    bs.extend_from_slice(&name);
    record(&mut wb, 0x0085, &bs);
    // SST: "見積", "total", then "abc" + "日本" split across a CONTINUE.
    let mut sst = Vec::new();
    le32(&mut sst, 3);
    le32(&mut sst, 3);
    le16(&mut sst, 2);
    sst.push(1);
    sst.extend_from_slice(&utf16("見積"));
    le16(&mut sst, 5);
    sst.push(0);
    sst.extend_from_slice(b"total");
    le16(&mut sst, 5);
    sst.push(0);
    sst.extend_from_slice(b"abc");
    record(&mut wb, 0x00FC, &sst);
    let mut cont = vec![1u8];
    cont.extend_from_slice(&utf16("日本"));
    record(&mut wb, 0x003C, &cont);
    record(&mut wb, 0x000A, &[]);
    let sheet_at = wb.len() as u32;
    wb[bs_at..bs_at + 4].copy_from_slice(&sheet_at.to_le_bytes());
    record(&mut wb, 0x0809, &bof(0x0010));
    let labelsst = |r: u16, c: u16, k: u32| {
        let mut b = Vec::new();
        le16(&mut b, r);
        le16(&mut b, c);
        le16(&mut b, 15);
        le32(&mut b, k);
        b
    };
    record(&mut wb, 0x00FD, &labelsst(0, 0, 0));
    record(&mut wb, 0x00FD, &labelsst(0, 1, 1));
    let mut num = Vec::new();
    le16(&mut num, 1);
    le16(&mut num, 0);
    le16(&mut num, 15);
    num.extend_from_slice(&1234.5f64.to_le_bytes());
    record(&mut wb, 0x0203, &num);
    let mut rk = Vec::new();
    le16(&mut rk, 1);
    le16(&mut rk, 2);
    le16(&mut rk, 15);
    le32(&mut rk, (42 << 2) | 2);
    record(&mut wb, 0x027E, &rk);
    record(&mut wb, 0x00FD, &labelsst(2, 0, 2));
    record(&mut wb, 0x000A, &[]);
    cfb_file(&[("Workbook", wb)])
}

fn ppt_record(out: &mut Vec<u8>, container: bool, typ: u16, body: &[u8]) {
    le16(out, if container { 0x000F } else { 0 });
    le16(out, typ);
    le32(out, body.len() as u32);
    out.extend_from_slice(body);
}

/// A PowerPoint stream: slide text (UTF-16 and 8-bit atoms) in the document's
/// SlideListWithText, master text that is not content, a VBA info atom.
fn presentation() -> Vec<u8> {
    let mut slides = Vec::new();
    ppt_record(&mut slides, false, 0x0F9F, &[0, 0, 0, 0]);
    ppt_record(&mut slides, false, 0x0FA0, &utf16("会議資料\r二行目"));
    ppt_record(&mut slides, false, 0x0FA8, b"Agenda");
    let mut list = Vec::new();
    ppt_record(&mut list, true, 0x0FF0, &slides);
    ppt_record(&mut list, false, 0x0401, &[0; 12]);
    let mut doc = Vec::new();
    ppt_record(&mut doc, true, 0x03E8, &list);
    let mut master_text = Vec::new();
    ppt_record(
        &mut master_text,
        false,
        0x0FA0,
        &utf16("Click to edit Master title style"),
    );
    ppt_record(&mut doc, true, 0x03F8, &master_text);
    cfb_file(&[("PowerPoint Document", doc), ("Current User", vec![0; 20])])
}

// -----------------------------------------------------------------------------------------

#[test]
fn word_text_with_japanese_and_fields() {
    let doc = word97(0, true);
    let (text, d) = text_of(run(
        &doc,
        "報告書.doc",
        &attachments(AttachmentAction::Text),
    ));
    assert_eq!(
        text,
        "Caf\u{e9} link ok\n日本語の本文です。\nセルA\tセルB\t\t"
    );
    assert!(d
        .changes
        .contains(&"only the text of the .doc document was kept".to_string()));
    assert!(
        d.changes.contains(&"VBA macro project removed".to_string()),
        "{:?}",
        d.changes
    );
    assert!(d
        .changes
        .contains(&"embedded OLE object removed".to_string()));
    // Field codes and macros never reach the text.
    assert!(!text.contains("evil") && !text.contains("calc") && !text.contains("MZ"));
}

#[test]
fn word6_text_in_the_language_code_page() {
    // Word 6/95 (nFib 101), lid 0x0411: cp932 text between fcMin and fcMac.
    let body = encoding_rs::SHIFT_JIS
        .encode("旧形式の文書\r二行目")
        .0
        .into_owned();
    let mut wd = Vec::new();
    le16(&mut wd, 0xA5DC);
    le16(&mut wd, 101);
    le16(&mut wd, 0);
    le16(&mut wd, 0x0411);
    wd.resize(0x18, 0);
    le32(&mut wd, 0x300);
    le32(&mut wd, 0x300 + body.len() as u32);
    wd.resize(0x300, 0);
    wd.extend_from_slice(&body);
    let doc = cfb_file(&[("WordDocument", wd)]);
    let (text, _) = text_of(run_legacy(
        &doc,
        "ole2",
        &attachments(AttachmentAction::Text),
    ));
    assert_eq!(text, "旧形式の文書\n二行目");
}

#[test]
fn excel_shared_strings_and_cells() {
    let xls = workbook(false);
    let (text, d) = text_of(run(&xls, "見積.xls", &attachments(AttachmentAction::Text)));
    assert_eq!(text, "[売上]\n見積\ttotal\n1234.5\t\t42\nabc日本");
    assert_eq!(
        d.changes,
        vec!["only the text of the .xls document was kept".to_string()]
    );
}

#[test]
fn large_documents_are_read_whole() {
    let a = attachments(AttachmentAction::Text);
    let (text, _) = text_of(run(&big_xls(), "big.xls", &a));
    assert_eq!(text.lines().count(), 20_000);
    assert!(
        text.ends_with("項目19999\t29998.5"),
        "{}",
        &text[text.len() - 40..]
    );
    let (text, _) = text_of(run(&big_ppt(), "big.ppt", &a));
    assert!(text.contains("スライド 1999\n説明の本文です。"));
    let (text, _) = text_of(run(&big_doc(), "big.doc", &a));
    assert_eq!(text.matches("令和7年度").count(), 30_000);
}

#[test]
fn powerpoint_slide_text_without_masters() {
    let ppt = presentation();
    let (text, d) = text_of(run(&ppt, "資料.ppt", &attachments(AttachmentAction::Text)));
    assert_eq!(text, "会議資料\n二行目\nAgenda\n");
    assert!(d.changes.contains(&"VBA macro project removed".to_string()));
}

#[test]
fn policy_remove_quarantine_and_encrypted() {
    let doc = word97(0, false);
    match run(&doc, "a.doc", &AttachmentPolicy::default()) {
        Verdict::Remove { reason } => {
            assert!(reason.contains("legacy_office = remove"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    match run(&doc, "a.doc", &attachments(AttachmentAction::Quarantine)) {
        Verdict::Quarantine { reason } => {
            assert_eq!(reason, "ole2: legacy_office = quarantine")
        }
        other => panic!("{other:?}"),
    }
    // `office = remove` no longer decides for legacy files.
    let mut a = attachments(AttachmentAction::Text);
    a.office = AttachmentAction::Remove;
    assert!(matches!(run(&doc, "a.doc", &a), Verdict::Keep(_)));
    // Encrypted documents follow encrypted_archive, whatever legacy_office says.
    for enc in [word97(0x0100, false), workbook(true)] {
        for lo in [
            AttachmentAction::Remove,
            AttachmentAction::Text,
            AttachmentAction::Quarantine,
        ] {
            match run(&enc, "secret.doc", &attachments(lo)) {
                Verdict::Quarantine { reason } => {
                    assert!(
                        reason.contains("encrypted_archive = quarantine"),
                        "{reason}"
                    )
                }
                other => panic!("{lo:?}: {other:?}"),
            }
        }
        let mut a = attachments(AttachmentAction::Text);
        a.encrypted_archive = AttachmentAction::Remove;
        match run(&enc, "secret.doc", &a) {
            Verdict::Remove { reason } => {
                assert!(reason.contains("encrypted_archive = remove"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn rtf_and_unknown_ole2() {
    let rtf =
        b"{\\rtf1\\ansi\\ansicpg932 \\'93\\'fa\\'96\\'7b\\par{\\object{\\objdata 01050000}}x}";
    let (text, d) = text_of(run(rtf, "a.rtf", &attachments(AttachmentAction::Text)));
    assert_eq!(text, "日本\nx");
    assert_eq!(
        d.changes,
        vec!["only the text of the rtf document was kept".to_string()]
    );
    // An OLE2 file that is no Office document: nothing to read, removed.
    let other = cfb_file(&[("Something", b"data".to_vec())]);
    match run_legacy(&other, "ole2", &attachments(AttachmentAction::Text)) {
        Verdict::Remove { reason } => {
            assert!(reason.contains("its text cannot be extracted"), "{reason}")
        }
        v => panic!("{v:?}"),
    }
}

/// Simple deterministic mutations of the fixtures: no panic, no hang, the text stays bounded.
#[test]
fn damaged_documents_never_panic() {
    let a = attachments(AttachmentAction::Text);
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let started = Instant::now();
    for base in [word97(0, true), workbook(false), presentation()] {
        for _ in 0..300 {
            let mut d = base.clone();
            let edits = 1 + next() % 8;
            for _ in 0..edits {
                let i = (next() as usize) % d.len();
                d[i] = next() as u8;
            }
            if next() % 5 == 0 {
                let cut = (next() as usize) % d.len();
                d.truncate(cut);
            }
            if let Verdict::Keep(k) = run_legacy(&d, "ole2", &a) {
                assert!(k.data.len() <= limits().max_size);
                assert!(std::str::from_utf8(&k.data).is_ok());
            }
        }
    }
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn hostile_lengths_are_bounded() {
    // A Word piece table claiming 4 GiB of text at the end of the stream, an SST claiming
    // 2^32 strings, a PowerPoint atom claiming 4 GiB: each ends quickly.
    let a = attachments(AttachmentAction::Text);
    let mut wb = Vec::new();
    let mut bof = Vec::new();
    le16(&mut bof, 0x0600);
    le16(&mut bof, 5);
    bof.resize(16, 0);
    record(&mut wb, 0x0809, &bof);
    let mut sst = Vec::new();
    le32(&mut sst, u32::MAX);
    le32(&mut sst, u32::MAX);
    for _ in 0..2000 {
        sst.extend_from_slice(&[0, 0, 0]);
    }
    record(&mut wb, 0x00FC, &sst);
    let xls = cfb_file(&[("Workbook", wb)]);
    let mut ppt = Vec::new();
    ppt_record(&mut ppt, false, 0x0FA0, &utf16("x"));
    ppt[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    let ppt = cfb_file(&[("PowerPoint Document", ppt)]);
    let mut deep = Vec::new();
    for _ in 0..100_000 {
        ppt_record(&mut deep, true, 0x03E8, &[]);
        let l = deep.len();
        deep[l - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
    }
    let deep = cfb_file(&[("PowerPoint Document", deep)]);
    // Sector chains that loop: every FAT entry of the first FAT sector that continues a chain
    // points to itself instead.
    let mut looped = big_doc();
    let sector = 1usize << u16::from_le_bytes([looped[30], looped[31]]);
    let fat_sector = u32::from_le_bytes(looped[76..80].try_into().unwrap()) as usize;
    let at = sector * (fat_sector + 1);
    let mut changed = 0;
    for i in 0..sector / 4 {
        let e = at + 4 * i;
        let v = u32::from_le_bytes(looped[e..e + 4].try_into().unwrap());
        if v < 0xFFFF_FFF0 && i != fat_sector {
            looped[e..e + 4].copy_from_slice(&(i as u32).to_le_bytes());
            changed += 1;
        }
    }
    assert!(changed > 100);
    match run_legacy(&looped, "ole2", &a) {
        Verdict::Remove { reason } => assert!(reason.contains("compound file"), "{reason}"),
        Verdict::Keep(d) => panic!("a looping sector chain was read: {:?}", d.changes),
        Verdict::Quarantine { reason } => panic!("held: {reason}"),
    }
    for data in [xls, ppt, deep, looped] {
        let t = Instant::now();
        let _ = run_legacy(&data, "ole2", &a);
        assert!(t.elapsed() < Duration::from_secs(5));
    }
}

// -----------------------------------------------------------------------------------------
// The oletools corpus.

fn corpus_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for rel in [
        "olevba/sample_with_vba.ppt",
        "excel4-macros/excel4_sample_macro.xls",
        "msodde/harmless-clean.doc",
        "oleobj/sample_with_lnk_file.doc",
        "oleobj/sample_with_calc_embedded.doc",
        "oleobj/embedded-simple-2007.doc",
        "encrypted/encrypted.docx",
        "encrypted/encrypted.xlsm",
        "rtfobj/issue_251.rtf",
        "oleobj/embedded-simple-2007.odt",
    ] {
        let p = dir.join(rel);
        out.push((
            rel.to_string(),
            std::fs::read(&p).unwrap_or_else(|e| panic!("{p:?}: {e}")),
        ));
    }
    let z = std::fs::read(dir.join("msodde/dde-test-from-office2016.doc.zip")).unwrap();
    let mut z = zip::ZipArchive::new(Cursor::new(z)).unwrap();
    for i in 0..z.len() {
        let mut f = z.by_index_decrypt(i, b"infected-test").unwrap();
        let name = f.name().unwrap().to_string();
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).unwrap();
        out.push((name, buf));
    }
    out
}

#[test]
fn corpus_documents_leave_only_text() {
    let Some(dir) = corpus() else { return };
    let a = attachments(AttachmentAction::Text);
    for (name, data) in corpus_files(&dir) {
        let v = run(&data, &name, &a);
        eprintln!(
            "{name}: {}",
            match &v {
                Verdict::Keep(d) => format!(
                    "kept {} octets, {:?}: {:?}",
                    d.data.len(),
                    d.changes,
                    String::from_utf8_lossy(&d.data[..d.data.len().min(300)])
                ),
                Verdict::Remove { reason } => format!("removed: {reason}"),
                Verdict::Quarantine { reason } => format!("held: {reason}"),
            }
        );
        if name.starts_with("encrypted/") {
            assert!(matches!(v, Verdict::Quarantine { .. }), "{name}: {v:?}");
            continue;
        }
        let (text, d) = text_of(v);
        for bad in [
            "Attribute VB_",
            "VBA_PROJECT",
            "\u{0}",
            "calc.exe",
            "cmd.exe",
            "DDEAUTO",
        ] {
            assert!(!text.contains(bad), "{name}: {bad:?} in the text");
        }
        assert!(d.changes[0].starts_with("only the text of the "), "{name}");
        // Default policy: removed.
        assert!(
            matches!(
                run(&data, &name, &AttachmentPolicy::default()),
                Verdict::Remove { .. }
            ),
            "{name}"
        );
        match name.as_str() {
            "olevba/sample_with_vba.ppt" => {
                assert_eq!(text, "PPT VBA TEST\n");
                assert!(d.changes.contains(&"VBA macro project removed".to_string()))
            }
            "dde-test-from-office2016.doc" => {
                // The DDE field codes are gone, their displayed results stay.
                assert!(text.contains("This is a dde test file.") && !text.contains("DDE "))
            }
            "excel4-macros/excel4_sample_macro.xls" => {
                assert!(
                    text.contains("[Sheet1]") && !text.contains("Macro1"),
                    "{text:?}"
                );
                assert!(d
                    .changes
                    .contains(&"Excel 4 macro sheet removed".to_string()));
            }
            "msodde/harmless-clean.doc" => {
                assert!(
                    text.contains("This is a harmless test document."),
                    "{text:?}"
                )
            }
            _ => {}
        }
    }
}

fn big_doc() -> Vec<u8> {
    let body = "令和7年度の予算について説明します。\u{7}資料\u{7}\u{7}\r".repeat(30_000);
    word97_with("Budget\r", &body, 0, false)
}

fn big_xls() -> Vec<u8> {
    let mut wb = Vec::new();
    let mut bof = Vec::new();
    le16(&mut bof, 0x0600);
    le16(&mut bof, 5);
    bof.resize(16, 0);
    record(&mut wb, 0x0809, &bof);
    // SST records of at most 8224 octets, split between strings.
    let n = 20_000u32;
    let mut chunks: Vec<Vec<u8>> = vec![Vec::new()];
    le32(&mut chunks[0], n);
    le32(&mut chunks[0], n);
    for i in 0..n {
        let mut one = Vec::new();
        let s = format!("項目{i}");
        le16(&mut one, s.encode_utf16().count() as u16);
        one.push(1);
        one.extend_from_slice(&utf16(&s));
        if chunks.last().unwrap().len() + one.len() > 8224 {
            chunks.push(Vec::new());
        }
        chunks.last_mut().unwrap().extend_from_slice(&one);
    }
    for (i, c) in chunks.iter().enumerate() {
        record(&mut wb, if i == 0 { 0x00FC } else { 0x003C }, c);
    }
    record(&mut wb, 0x000A, &[]);
    record(&mut wb, 0x0809, &bof);
    for i in 0..n {
        let mut b = Vec::new();
        le16(&mut b, i as u16);
        le16(&mut b, 0);
        le16(&mut b, 15);
        le32(&mut b, i);
        record(&mut wb, 0x00FD, &b);
        let mut num = Vec::new();
        le16(&mut num, i as u16);
        le16(&mut num, 1);
        le16(&mut num, 15);
        num.extend_from_slice(&(i as f64 * 1.5).to_le_bytes());
        record(&mut wb, 0x0203, &num);
    }
    record(&mut wb, 0x000A, &[]);
    cfb_file(&[("Workbook", wb)])
}

fn big_ppt() -> Vec<u8> {
    let mut slides = Vec::new();
    for i in 0..2000 {
        ppt_record(&mut slides, false, 0x0F9F, &[0, 0, 0, 0]);
        ppt_record(
            &mut slides,
            false,
            0x0FA0,
            &utf16(&format!("スライド {i}\r説明の本文です。")),
        );
    }
    let mut list = Vec::new();
    ppt_record(&mut list, true, 0x0FF0, &slides);
    let mut doc = Vec::new();
    ppt_record(&mut doc, true, 0x03E8, &list);
    cfb_file(&[("PowerPoint Document", doc)])
}

/// Throughput of Word/Excel/PowerPoint text extraction (run with --release --ignored).
#[test]
#[ignore]
fn bench_legacy_text() {
    let a = attachments(AttachmentAction::Text);
    for (what, data) in [
        ("doc", word97(0, false)),
        ("xls", workbook(false)),
        ("ppt", presentation()),
        ("doc 1 MB", big_doc()),
        ("xls 20,000 rows", big_xls()),
        ("ppt 2,000 slides", big_ppt()),
    ] {
        let t = Instant::now();
        let mut bytes = 0usize;
        while t.elapsed() < Duration::from_secs(2) {
            let _ = run(&data, "x", &a);
            bytes += data.len();
        }
        let mbs = bytes as f64 / t.elapsed().as_secs_f64() / 1e6;
        println!(
            "legacy {what}: {mbs:.1} MB/s ({} octet fixture)",
            data.len()
        );
    }
}
