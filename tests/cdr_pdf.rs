//! PDF disarm over pdf.js's active-content test files and over hostile PDFs built here.
//!
//! Every corpus file goes through `cdr::disarm` with the default policy, as a mail attachment
//! would. Whatever is kept is checked independently of the disarm code: the bytes of the file
//! and every stream lopdf can inflate are searched for `/JavaScript`, `/JS`, `/Launch`,
//! `/EmbeddedFile`, `/OpenAction` and `/AA`, and `pdftotext` (poppler) must show the same
//! text as for the original. Hostile inputs (flate bombs, deep nesting, huge object counts,
//! forged cross-reference tables, stream lengths that make lopdf re-parse or copy the file
//! again and again) must be refused or disarmed within seconds, in a child process whose peak
//! memory is measured.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use mugaika::cdr::{self, Limits, Policy, Verdict};
use mugaika::config::{AttachmentAction, AttachmentPolicy, LinkPolicy, SanitizeConfig};

fn corpora() -> PathBuf {
    std::env::var_os("MUGAIKA_CORPORA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpora")))
}

fn pdfjs() -> Option<Vec<PathBuf>> {
    let dir = corpora().join("pdfjs-active-content/test/pdfs");
    if let Ok(entries) = std::fs::read_dir(&dir) {
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "pdf"))
            .collect();
        files.sort();
        if !files.is_empty() {
            return Some(files);
        }
    }
    if std::env::var("MUGAIKA_REQUIRE_CORPORA").as_deref() == Ok("1") {
        panic!(
            "corpus {} is missing (MUGAIKA_REQUIRE_CORPORA=1)",
            dir.display()
        );
    }
    eprintln!(
        "\n*** SKIP: corpus {} not found; PDF corpus tests not run ***\n",
        dir.display()
    );
    None
}

fn limits() -> Limits {
    Limits::from_config(&SanitizeConfig::default())
}

fn run_with(data: &[u8], attachments: &AttachmentPolicy, links: LinkPolicy) -> Verdict {
    let policy = Policy {
        attachments,
        links,
        limits: limits(),
        depth: 0,
    };
    cdr::disarm(data, "attachment.pdf", None, &policy)
}

fn run(data: &[u8]) -> Verdict {
    run_with(data, &AttachmentPolicy::default(), LinkPolicy::Show)
}

/// Names that must not appear in a delivered PDF, in any decoding.
const ACTIVE: &[&[u8]] = &[
    b"/JavaScript",
    b"/JS",
    b"/Launch",
    b"/EmbeddedFile",
    b"/OpenAction",
    b"/AA",
];

/// The first active name in `bytes`, as a complete name token (`/JS` but not `/JSON`).
fn active_name(bytes: &[u8]) -> Option<String> {
    for name in ACTIVE {
        let mut from = 0;
        while let Some(at) = memchr::memmem::find(&bytes[from..], name) {
            let end = from + at + name.len();
            let next = bytes.get(end).copied();
            let ends_token = next.is_none_or(|c| b" \t\r\n\0\x0c()<>[]{}/%".contains(&c))
                // `/EmbeddedFiles` is as bad as `/EmbeddedFile`.
                || (name == b"/EmbeddedFile" && next == Some(b's'));
            if ends_token {
                return Some(String::from_utf8_lossy(name).into_owned());
            }
            from = end;
        }
    }
    None
}

/// Action types and annotation subtypes that must not survive.
const DANGEROUS_VALUES: &[&str] = &[
    "JavaScript",
    "Launch",
    "SubmitForm",
    "ImportData",
    "GoToR",
    "GoToE",
    "EmbeddedFile",
    "FileAttachment",
    "RichMedia",
    "Screen",
    "Movie",
    "Sound",
];

/// Searches the file and every stream lopdf can inflate; also the parsed names (which
/// decode `#xx` escapes).
fn assert_inert(label: &str, pdf: &[u8]) {
    // Raw bytes: only text-like surroundings (compressed data may hold `/JS` by chance).
    let doc = lopdf::Document::load_mem(pdf)
        .unwrap_or_else(|e| panic!("{label}: the disarmed PDF does not load: {e}"));
    assert!(!doc.is_encrypted(), "{label}: still encrypted");
    for (id, object) in &doc.objects {
        let mut stack = vec![object];
        while let Some(o) = stack.pop() {
            let dict = match o {
                lopdf::Object::Dictionary(d) => d,
                lopdf::Object::Array(a) => {
                    stack.extend(a.iter());
                    continue;
                }
                lopdf::Object::Stream(s) => {
                    let image = s
                        .dict
                        .get(b"Subtype")
                        .and_then(|t| t.as_name())
                        .is_ok_and(|t| t == b"Image");
                    let font = s.dict.has(b"Length1") || s.dict.has(b"Length2");
                    if let Ok(plain) = s.decompressed_content_with_limit(256 << 20) {
                        if !image && !font {
                            if let Some(name) = active_name(&plain) {
                                // Text shown on the page may mention the name: only fail on
                                // it outside parentheses (a name token in the syntax).
                                let text = String::from_utf8_lossy(&plain);
                                assert!(
                                    text.contains(&format!("({name}")),
                                    "{label}: {name} in the inflated stream {id:?}"
                                );
                            }
                        }
                    }
                    &s.dict
                }
                _ => continue,
            };
            for (k, v) in dict.iter() {
                let key = format!("/{}", String::from_utf8_lossy(k));
                assert!(
                    active_name(key.as_bytes()).is_none(),
                    "{label}: key {key} in object {id:?}"
                );
                if let lopdf::Object::Name(n) = v {
                    let value = String::from_utf8_lossy(n);
                    assert!(
                        !DANGEROUS_VALUES.contains(&value.as_ref()),
                        "{label}: value /{value} in object {id:?}"
                    );
                }
                stack.push(v);
            }
        }
    }
    // lopdf's `Dictionary` iteration above covers the object syntax; the raw bytes outside
    // streams are what other readers see when they repair a file.
    let mut outside = Vec::new();
    let mut rest = pdf;
    while let Some(at) = memchr::memmem::find(rest, b"stream\n")
        .or_else(|| memchr::memmem::find(rest, b"stream\r\n"))
    {
        outside.extend_from_slice(&rest[..at]);
        let after = &rest[at..];
        match memchr::memmem::find(after, b"endstream") {
            Some(end) => rest = &after[end + 9..],
            None => {
                rest = &[];
                break;
            }
        }
    }
    outside.extend_from_slice(rest);
    if let Some(name) = active_name(&outside) {
        panic!("{label}: {name} in the bytes of the file");
    }
}

fn pdftotext(pdf: &[u8]) -> Option<String> {
    let dir = tempfile::tempdir().ok()?;
    let input = dir.path().join("in.pdf");
    std::fs::write(&input, pdf).ok()?;
    let out = Command::new("pdftotext")
        .arg("-q")
        .arg(&input)
        .arg("-")
        .output()
        .ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    })
}

fn have_pdftotext() -> bool {
    Command::new("pdftotext").arg("-v").output().is_ok()
}

#[test]
fn pdfjs_corpus_disarmed() {
    let Some(files) = pdfjs() else { return };
    let check_text = have_pdftotext();
    if !check_text {
        eprintln!("\n*** SKIP: pdftotext not installed; visible-text comparison not run ***\n");
    }
    let mut kept = 0;
    let mut report = Vec::new();
    for path in &files {
        let label = path.file_name().unwrap().to_string_lossy().into_owned();
        let data = std::fs::read(path).unwrap();
        let started = Instant::now();
        let verdict = run(&data);
        let took = started.elapsed();
        assert!(took < Duration::from_secs(5), "{label}: {took:?}");
        match verdict {
            Verdict::Keep(d) => {
                kept += 1;
                assert_eq!(d.content_type, "application/pdf");
                assert_inert(&label, &d.data);
                if check_text {
                    // A file poppler cannot read (no page tree) is not compared.
                    if let Some(before) = pdftotext(&data) {
                        let after = pdftotext(&d.data)
                            .unwrap_or_else(|| panic!("{label}: pdftotext fails on the output"));
                        assert_eq!(before, after, "{label}: visible text changed");
                    }
                }
                report.push(format!("{label}: kept, {}", d.changes.join("; ")));
            }
            Verdict::Remove { reason } | Verdict::Quarantine { reason } => {
                // Only what no reader can show either may be removed.
                assert!(reason.contains("unreadable"), "{label}: {reason}");
                if check_text {
                    let before = pdftotext(&data).unwrap_or_default();
                    assert!(before.is_empty(), "{label}: removed but shows {before:?}");
                }
                report.push(format!("{label}: REMOVED, {reason}"));
            }
        }
    }
    eprintln!("{}", report.join("\n"));
    assert!(kept + 2 >= files.len(), "{kept} of {} kept", files.len());
}

/// pdfinfo's and pdfdetach's view of a disarmed file: no JavaScript, no embedded file.
fn assert_poppler_sees_nothing_active(label: &str, pdf: &[u8]) {
    let Ok(dir) = tempfile::tempdir() else { return };
    let path = dir.path().join("out.pdf");
    std::fs::write(&path, pdf).unwrap();
    if let Ok(info) = Command::new("pdfinfo").arg(&path).output() {
        let info = String::from_utf8_lossy(&info.stdout);
        if let Some(line) = info.lines().find(|l| l.starts_with("JavaScript:")) {
            assert!(line.ends_with("no"), "{label}: pdfinfo says {line}");
        }
    }
    if let Ok(detach) = Command::new("pdfdetach").arg("-list").arg(&path).output() {
        let list = String::from_utf8_lossy(&detach.stdout);
        if let Some(first) = list.lines().next() {
            assert!(first.starts_with("0 "), "{label}: pdfdetach lists {first}");
        }
    }
}

#[test]
fn pdfjs_corpus_seen_by_poppler() {
    let Some(files) = pdfjs() else { return };
    for path in &files {
        let label = path.file_name().unwrap().to_string_lossy().into_owned();
        if let Verdict::Keep(d) = run(&std::fs::read(path).unwrap()) {
            assert_poppler_sees_nothing_active(&label, &d.data);
        }
    }
}

#[test]
fn pdfjs_corpus_as_text() {
    let Some(files) = pdfjs() else { return };
    let text_policy = AttachmentPolicy {
        pdf: AttachmentAction::Text,
        ..AttachmentPolicy::default()
    };
    let path = files.iter().find(|p| p.ends_with("opt_demo.pdf"));
    let Some(path) = path else { return };
    let data = std::fs::read(path).unwrap();
    match run_with(&data, &text_policy, LinkPolicy::Show) {
        Verdict::Keep(d) => {
            assert_eq!(d.content_type, "text/plain; charset=utf-8");
            assert_eq!(d.extension.as_deref(), Some("txt"));
            let text = String::from_utf8(d.data).expect("UTF-8");
            if let Some(reference) = pdftotext(&data) {
                // Most words poppler sees are in lopdf's text too.
                let words: Vec<&str> = reference.split(' ').filter(|w| w.len() > 3).collect();
                let found = words.iter().filter(|w| text.contains(**w)).count();
                assert!(
                    found * 10 >= words.len() * 7,
                    "{found} of {} words: {text:?}",
                    words.len()
                );
            }
        }
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Hand-made inputs
// ---------------------------------------------------------------------------------------------

/// A PDF with these objects (numbered from 1) and a correct cross-reference table.
fn pdf(objects: &[Vec<u8>]) -> Vec<u8> {
    let mut out = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::new();
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for o in offsets {
        out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R /ID [<00112233445566778899aabbccddeeff> \
             <00112233445566778899aabbccddeeff>] >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

fn stream(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut v = format!("<< {dict} /Length {} >>\nstream\n", data.len()).into_bytes();
    v.extend_from_slice(data);
    v.extend_from_slice(b"\nendstream");
    v
}

/// Catalog (1), pages (2), page (3), content (4), font (5), then `extra` from 6 on.
fn document(text: &str, catalog: &str, page: &str, extra: Vec<Vec<u8>>) -> Vec<u8> {
    let content = format!("BT /F1 24 Tf 72 700 Td ({text}) Tj ET");
    let mut objects = vec![
        format!("<< /Type /Catalog /Pages 2 0 R {catalog} >>").into_bytes(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R \
             /Resources << /Font << /F1 5 0 R >> >> {page} >>"
        )
        .into_bytes(),
        stream("", content.as_bytes()),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_vec(),
    ];
    objects.extend(extra);
    pdf(&objects)
}

/// zlib data inflating to `size` zero octets, built without holding them.
fn zlib_zeros(size: usize) -> Vec<u8> {
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(zeros.len());
        std::io::Write::write_all(&mut enc, &zeros[..n]).unwrap();
        left -= n;
    }
    enc.finish().unwrap()
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut enc, data).unwrap();
    enc.finish().unwrap()
}

/// The outcome of one hostile case, judged after a time limit.
fn hostile(label: &str, data: &[u8], expect_removed: bool) {
    let started = Instant::now();
    let verdict = run(data);
    let took = started.elapsed();
    eprintln!(
        "{label}: {took:?}, {} octets in, {}",
        data.len(),
        match &verdict {
            Verdict::Keep(d) => format!("kept ({} octets): {}", d.data.len(), d.changes.join("; ")),
            Verdict::Remove { reason } | Verdict::Quarantine { reason } =>
                format!("removed: {reason}"),
        }
    );
    assert!(took < Duration::from_secs(8), "{label}: took {took:?}");
    match verdict {
        Verdict::Keep(d) => {
            assert!(!expect_removed, "{label}: kept");
            assert_inert(label, &d.data);
        }
        Verdict::Remove { reason } | Verdict::Quarantine { reason } => {
            assert!(reason.starts_with("pdf: "), "{label}: {reason}");
        }
    }
}

/// Peak resident memory of this process, from /proc (Linux).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Every hostile case, run in a child process (this test binary, filtered to
/// `hostile_cases_child`) so that its peak memory is its own.
#[test]
fn hostile_inputs_bounded_in_time_and_memory() {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args([
            "--exact",
            "hostile_cases_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("MUGAIKA_PDF_HOSTILE_CHILD", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(out.status.success(), "child failed: {stderr}");
    assert!(stderr.contains("peak memory"), "the child ran no cases");
}

#[test]
fn hostile_cases_child() {
    if std::env::var_os("MUGAIKA_PDF_HOSTILE_CHILD").is_none() {
        return;
    }
    let before = peak_rss_kib().unwrap_or(0);

    // A page content stream inflating to 1 GiB, and the same behind two Flate layers.
    let bomb = zlib_zeros(1 << 30);
    let doc = document(
        "x",
        "",
        "/Thumb 6 0 R",
        vec![stream("/Filter /FlateDecode", &bomb)],
    );
    hostile("flate bomb stream", &doc, true);
    let double = zlib(&zlib_zeros(256 << 20));
    let doc = document(
        "x",
        "",
        "/Thumb 6 0 R",
        vec![stream("/Filter [/FlateDecode /FlateDecode]", &double)],
    );
    hostile("double flate bomb stream", &doc, true);

    // An object stream inflating to 1 GiB: never expanded.
    let doc = document(
        "x",
        "/OpenAction 7 0 R",
        "",
        vec![stream(
            "/Type /ObjStm /N 1 /First 4 /Filter /FlateDecode",
            &bomb,
        )],
    );
    hostile("flate bomb object stream", &doc, false);

    // 100,000 nested arrays, and 100,000 nested dictionaries.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    hostile(
        "deep arrays",
        &document("x", &format!("/X {deep}"), "", vec![]),
        false,
    );
    let deep = format!("{}{}", "<< /A ".repeat(100_000), ">>".repeat(100_000));
    hostile(
        "deep dictionaries",
        &document("x", "", &format!("/X {deep}"), vec![]),
        false,
    );
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    hostile(
        "deep arrays as an object",
        &document("x", "", "/X 6 0 R", vec![deep.into_bytes()]),
        false,
    );

    // 500,000 objects.
    let many: Vec<Vec<u8>> = (0..500_000).map(|_| b"null".to_vec()).collect();
    let mut objects = vec![b"<< /Type /Catalog /Pages 2 0 R >>".to_vec()];
    objects.push(b"<< /Type /Pages /Kids [] /Count 0 >>".to_vec());
    objects.extend(many);
    hostile("500,000 objects", &pdf(&objects), true);
    // 600,000 members of one object stream (the index alone, compressed).
    let mut index = String::new();
    for i in 0..600_000u32 {
        index.push_str(&format!("{} 0 ", i + 10));
    }
    let first = index.len();
    index.push_str("null");
    let doc = document(
        "x",
        "",
        "",
        vec![stream(
            &format!("/Type /ObjStm /N 600000 /First {first} /Filter /FlateDecode"),
            &zlib(index.as_bytes()),
        )],
    );
    hostile("600,000 object-stream members", &doc, true);

    // A million tokens in one array.
    let tokens = format!("[{}]", "0 ".repeat(2_000_000));
    hostile(
        "2,000,000-token array",
        &document("x", "", &format!("/X {tokens}"), vec![]),
        true,
    );

    // Broken cross-reference table: offsets all wrong, JavaScript behind it.
    let mut doc = document(
        "Broken",
        "/OpenAction 6 0 R",
        "",
        vec![b"<< /S /JavaScript /JS (app.alert\\(1\\)) >>".to_vec()],
    );
    let xref = memchr::memmem::rfind(&doc, b"xref\n").unwrap();
    for b in &mut doc[xref + 5..] {
        if b.is_ascii_digit() {
            *b = b'7';
        }
    }
    hostile("broken xref", &doc, false);
    // No cross-reference table or trailer at all.
    let cut = memchr::memmem::rfind(&doc, b"xref\n").unwrap();
    hostile("missing xref", &doc[..cut], false);

    // A forged table: 200,000 entries all pointing at one 300,000-token object.
    let big = format!("[{}]", "1 ".repeat(300_000));
    let mut doc = document("x", "", "", vec![big.into_bytes()]);
    let at = memchr::memmem::find(&doc, b"6 0 obj").unwrap();
    let xref = doc.len();
    doc.extend_from_slice(b"xref\n0 200001\n0000000000 65535 f \n");
    for _ in 0..200_000 {
        doc.extend_from_slice(format!("{at:010} 00000 n \n").as_bytes());
    }
    doc.extend_from_slice(
        format!("trailer\n<< /Size 200001 /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n").as_bytes(),
    );
    hostile("200,000 xref entries at one big object", &doc, false);

    // 20,000 streams whose /Length is an object of 400,000 numbers.
    let mut extra = vec![format!("[{}]", "1 ".repeat(400_000)).into_bytes()];
    for _ in 0..20_000 {
        extra.push(b"<< /Length 6 0 R >>\nstream\nxx\nendstream".to_vec());
    }
    hostile(
        "20,000 indirect lengths",
        &document("x", "", "", extra),
        false,
    );

    // 1,000 streams whose direct /Length runs to one shared far endstream over 8 MiB of data,
    // so that each would copy the rest of the file.
    let mut data = b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n".to_vec();
    data.extend_from_slice(b"2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\n");
    let filler = vec![b'x'; 8 << 20];
    let n = 1000;
    // Headers of a fixed length; the data of stream k starts after its `stream` line and
    // runs to the `endstream` after the filler (the `endstream` right after the keyword keeps
    // the object scan going).
    let header = |k: usize, length: usize| {
        format!(
            "{:05} 0 obj\n<< /Length {length:>10} >>\nstream\nendstream\n",
            k + 3
        )
    };
    let header_len = header(n, 0).len();
    let data_offset = header(n, 0).find("stream\n").unwrap() + 7;
    let start = data.len();
    let end_of_data = start + n * header_len + filler.len();
    for k in 0..n {
        let data_start = start + k * header_len + data_offset;
        let h = header(k, end_of_data - data_start);
        assert_eq!(h.len(), header_len);
        data.extend_from_slice(h.as_bytes());
    }
    data.extend_from_slice(&filler);
    data.extend_from_slice(b"\nendstream\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n");
    hostile("1,000 overlapping long streams", &data, true);

    // Text mode with a ToUnicode map covering 2^32 codes, and a page tree loop.
    let text_policy = AttachmentPolicy {
        pdf: AttachmentAction::Text,
        ..AttachmentPolicy::default()
    };
    // (Laid out as producers write them: lopdf expands this range code by code, and takes 6 s
    // for 2^24 codes.)
    let cmap = b"/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n\
        /CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n1 begincodespacerange\n\
        <00> <FF>\nendcodespacerange\n1 beginbfrange\n<00000000> <FFFFFFFF> <0041>\n\
        endbfrange\nendcmap\nCMapName currentdict /CMap defineresource pop\nend\nend";
    let mut doc = document("Bomb", "", "", vec![stream("", cmap)]);
    let font = memchr::memmem::find(&doc, b"/BaseFont /Helvetica").unwrap();
    doc.splice(font..font, b"/ToUnicode 6 0 R ".iter().copied());
    let started = Instant::now();
    let v = run_with(&doc, &text_policy, LinkPolicy::Show);
    eprintln!("ToUnicode bomb, text mode: {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(8));
    match v {
        Verdict::Keep(d) => assert!(String::from_utf8_lossy(&d.data).contains("Bomb"), "{d:?}"),
        other => panic!("{other:?}"),
    }
    let doc = document("Loop", "", "", vec![]);
    let looped =
        String::from_utf8_lossy(&doc).replace("/Kids [3 0 R]", "/Kids [3 0 R 2 0 R 1 0 R]");
    let started = Instant::now();
    let _ = run_with(looped.as_bytes(), &text_policy, LinkPolicy::Show);
    assert!(started.elapsed() < Duration::from_secs(8));

    let after = peak_rss_kib().unwrap_or(0);
    eprintln!(
        "peak memory: {} MiB (before the cases: {} MiB)",
        after >> 10,
        before >> 10
    );
    assert!(after < 900 << 10, "peak memory {} MiB", after >> 10);
}

fn encrypted(user_password: &str) -> Vec<u8> {
    let data = document(
        "Secret text",
        "/OpenAction 6 0 R",
        "",
        vec![b"<< /S /JavaScript /JS (app.alert\\(1\\)) >>".to_vec()],
    );
    let mut doc = lopdf::Document::load_mem(&data).unwrap();
    let version = lopdf::EncryptionVersion::V2 {
        document: &doc,
        owner_password: "owner",
        user_password,
        key_length: 128,
        permissions: lopdf::Permissions::PRINTABLE,
    };
    let state = lopdf::EncryptionState::try_from(version).unwrap();
    doc.encrypt(&state).unwrap();
    let mut out = Vec::new();
    doc.save_to(&mut out).unwrap();
    assert!(
        memchr::memmem::find(&out, b"app.alert").is_none(),
        "strings are encrypted"
    );
    out
}

#[test]
fn encrypted_with_empty_user_password_is_decrypted_and_disarmed() {
    let data = encrypted("");
    match run(&data) {
        Verdict::Keep(d) => {
            assert_inert("encrypted, empty password", &d.data);
            assert!(
                d.changes.iter().any(|c| c.contains("encryption removed")),
                "{:?}",
                d.changes
            );
            assert!(
                d.changes.iter().any(|c| c.contains("JavaScript")),
                "{:?}",
                d.changes
            );
            if have_pdftotext() {
                assert_eq!(pdftotext(&d.data).as_deref(), Some("Secret text"));
            }
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn encrypted_with_a_user_password_is_removed() {
    match run(&encrypted("hunter2")) {
        Verdict::Remove { reason } => assert!(reason.contains("encrypted PDF"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn links_follow_the_link_policy() {
    let data = document(
        "Click",
        "",
        "/Annots [6 0 R]",
        vec![b"<< /Type /Annot /Subtype /Link /Rect [72 690 200 720] \
               /A << /S /URI /URI (https://www.city.example.lg.jp/) >> >>"
            .to_vec()],
    );
    for (links, kept) in [
        (LinkPolicy::Keep, true),
        (LinkPolicy::Show, true),
        (LinkPolicy::Defang, false),
        (LinkPolicy::Remove, false),
    ] {
        match run_with(&data, &AttachmentPolicy::default(), links) {
            Verdict::Keep(d) => {
                let has = memchr::memmem::find(&d.data, b"www.city.example.lg.jp").is_some();
                assert_eq!(has, kept, "{links:?}");
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn rasterize_without_a_worker_falls_back_to_disarm() {
    let data = document(
        "Hello",
        "/OpenAction 6 0 R",
        "",
        vec![b"<< /S /JavaScript /JS (1) >>".to_vec()],
    );
    let d = cdr::pdf::rasterize(
        &data,
        LinkPolicy::Show,
        &limits(),
        Err(cdr::raster::RasterError::NoWorker),
    )
    .unwrap();
    assert_inert("rasterize", &d.data);
    assert!(
        d.changes[0].starts_with("not rasterised (rasterising is not available"),
        "{:?}",
        d.changes
    );
}

#[test]
fn pdf_remove_policy_removes() {
    let policy = AttachmentPolicy {
        pdf: AttachmentAction::Remove,
        ..AttachmentPolicy::default()
    };
    let data = document("x", "", "", vec![]);
    assert!(matches!(
        run_with(&data, &policy, LinkPolicy::Show),
        Verdict::Remove { .. }
    ));
}

/// Disarm throughput: `cargo test --release --test cdr_pdf -- --ignored --nocapture`.
#[test]
#[ignore]
fn bench_disarm_throughput() {
    let mut inputs: Vec<(String, Vec<u8>)> = Vec::new();
    if let Some(files) = pdfjs() {
        for p in files {
            inputs.push((
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            ));
        }
    }
    // A real manual when the machine has it (Debian's libtasn1-doc).
    let manual = std::path::Path::new("/usr/share/doc/libtasn1-doc/libtasn1.pdf");
    if let Ok(data) = std::fs::read(manual) {
        if let Verdict::Keep(d) = run(&data) {
            if let (Some(a), Some(b)) = (pdftotext(&data), pdftotext(&d.data)) {
                assert_eq!(a, b, "libtasn1.pdf: visible text changed");
            }
        }
        inputs.push(("libtasn1.pdf".into(), data));
    }
    // A generated 200-page text document showing one 1 MiB Flate image every 20 pages.
    let mut objects: Vec<Vec<u8>> = vec![
        b"<< /Type /Catalog /Pages 2 0 R /OpenAction 3 0 R >>".to_vec(),
        Vec::new(),
        b"<< /S /JavaScript /JS (app.alert\\(1\\)) >>".to_vec(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_vec(),
    ];
    // Photo-like data: incompressible noise (xorshift), 1 MiB.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..(1u32 << 20))
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    objects.push(stream(
        "/Type /XObject /Subtype /Image /Width 1024 /Height 1024 /ColorSpace /DeviceGray \
         /BitsPerComponent 8 /Filter /FlateDecode",
        &zlib(&noise),
    ));
    let mut kids = Vec::new();
    for p in 0..200 {
        let mut content = String::new();
        for line in 0..50 {
            content.push_str(&format!(
                "BT /F1 10 Tf 50 {} Td (Page {p} line {line}: municipal notice text) Tj ET\n",
                750 - line * 14
            ));
        }
        if p % 20 == 0 {
            content.push_str("q 200 0 0 200 300 300 cm /Im1 Do Q\n");
        }
        objects.push(stream("/Filter /FlateDecode", &zlib(content.as_bytes())));
        let contents = objects.len();
        objects.push(
            format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents {contents} 0 R \
             /Resources << /Font << /F1 4 0 R >> /XObject << /Im1 5 0 R >> >> >>"
            )
            .into_bytes(),
        );
        kids.push(format!("{} 0 R", objects.len()));
    }
    objects[1] = format!("<< /Type /Pages /Kids [{}] /Count 200 >>", kids.join(" ")).into_bytes();
    inputs.push(("generated-200-pages".into(), pdf(&objects)));

    let mut total_bytes = 0usize;
    let mut total_time = Duration::ZERO;
    for (name, data) in &inputs {
        let rounds = (4 << 20) / data.len().max(1) + 1;
        let started = Instant::now();
        for _ in 0..rounds {
            let _ = run(data);
        }
        let took = started.elapsed();
        total_bytes += data.len() * rounds;
        total_time += took;
        eprintln!(
            "{name}: {} octets, {:.1} MB/s",
            data.len(),
            (data.len() * rounds) as f64 / took.as_secs_f64() / 1e6
        );
    }
    eprintln!(
        "PDF disarm overall: {:.1} MB/s ({} MB in {:?})",
        total_bytes as f64 / total_time.as_secs_f64() / 1e6,
        total_bytes / 1_000_000,
        total_time
    );
}

// ---------------------------------------------------------------------------------------------
// pdf = "rasterize"
// ---------------------------------------------------------------------------------------------

fn rasterize_policy() -> AttachmentPolicy {
    AttachmentPolicy {
        pdf: AttachmentAction::Rasterize,
        ..AttachmentPolicy::default()
    }
}

/// Rasterising through `cdr::disarm`, with this test binary's mugaika as the worker.
fn rasterize_run(data: &[u8]) -> Verdict {
    cdr::raster::set_worker(PathBuf::from(env!("CARGO_BIN_EXE_mugaika")));
    run_with(data, &rasterize_policy(), LinkPolicy::Show)
}

/// `pages` pages of `w` x `h` points, each showing a line of large text; JavaScript to open,
/// on page open (/AA) and in a link annotation.
fn text_pages(pages: usize, w: u32, h: u32, text: &str) -> Vec<u8> {
    let mut objects: Vec<Vec<u8>> = vec![
        b"<< /Type /Catalog /Pages 2 0 R /OpenAction 3 0 R \
          /Names << /JavaScript << /Names [(x) 3 0 R] >> >> >>"
            .to_vec(),
        Vec::new(),
        b"<< /S /JavaScript /JS (app.alert\\('rasterise me'\\)) >>".to_vec(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold >>".to_vec(),
        b"<< /Type /Annot /Subtype /Link /Rect [0 0 100 100] /A 3 0 R >>".to_vec(),
    ];
    let mut kids = Vec::new();
    for p in 0..pages {
        let content = format!("BT /F1 48 Tf 40 {} Td ({text} {p}) Tj ET", h / 2);
        objects.push(stream("", content.as_bytes()));
        let contents = objects.len();
        objects.push(
            format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {w} {h}] /Contents {contents} 0 R \
                 /Resources << /Font << /F1 4 0 R >> >> /Annots [5 0 R] /AA << /O 3 0 R >> >>"
            )
            .into_bytes(),
        );
        kids.push(format!("{} 0 R", objects.len()));
    }
    objects[1] = format!(
        "<< /Type /Pages /Kids [{}] /Count {pages} >>",
        kids.join(" ")
    )
    .into_bytes();
    pdf(&objects)
}

/// Checks that `pdf` is made of pages showing one DCT image each and nothing else; returns
/// the decoded page images.
fn assert_images_only(label: &str, pdf: &[u8]) -> Vec<image::RgbImage> {
    assert_inert(label, pdf);
    let doc = lopdf::Document::load_mem(pdf).unwrap();
    let mut images = Vec::new();
    for (id, object) in &doc.objects {
        match object {
            lopdf::Object::Stream(s) => {
                let subtype = s.dict.get(b"Subtype").and_then(|t| t.as_name()).ok();
                let xref = s.dict.get(b"Type").and_then(|t| t.as_name()).ok() == Some(b"XRef");
                if xref {
                    continue;
                }
                if subtype == Some(b"Image".as_slice()) {
                    let filter = s.dict.get(b"Filter").and_then(|t| t.as_name()).unwrap();
                    assert_eq!(filter, b"DCTDecode", "{label}: {id:?}");
                    let img =
                        image::load_from_memory_with_format(&s.content, image::ImageFormat::Jpeg)
                            .unwrap_or_else(|e| {
                                panic!("{label}: image {id:?} does not decode: {e}")
                            });
                    images.push(img.to_rgb8());
                } else {
                    // Page contents: only "draw the image over the page".
                    let text = String::from_utf8_lossy(&s.content);
                    let ops: Vec<&str> = text.split_whitespace().collect();
                    assert_eq!(ops.len(), 11, "{label}: content {text:?}");
                    assert_eq!(&ops[8..], ["/Im0", "Do", "Q"], "{label}: content {text:?}");
                }
            }
            lopdf::Object::Dictionary(d) => {
                for key in [
                    &b"Font"[..],
                    b"Annots",
                    b"AcroForm",
                    b"Names",
                    b"Outlines",
                    b"A",
                ] {
                    assert!(
                        !d.has(key),
                        "{label}: /{} in {id:?}",
                        String::from_utf8_lossy(key)
                    );
                }
            }
            _ => {}
        }
    }
    images
}

/// Per page of a rasterised PDF: its size in points and its image's size in pixels.
fn page_images(pdf: &[u8]) -> Vec<(f32, f32, i64, i64)> {
    let doc = lopdf::Document::load_mem(pdf).unwrap();
    let mut out = Vec::new();
    for (_, page) in doc.get_pages() {
        let dict = doc.get_dictionary(page).unwrap();
        let mb: Vec<f32> = dict
            .get(b"MediaBox")
            .and_then(|m| m.as_array())
            .unwrap()
            .iter()
            .map(|o| o.as_float().unwrap())
            .collect();
        let image = dict
            .get(b"Resources")
            .and_then(|r| r.as_dict())
            .and_then(|r| r.get(b"XObject"))
            .and_then(|x| x.as_dict())
            .and_then(|x| x.get(b"Im0"))
            .and_then(|i| i.as_reference())
            .and_then(|id| doc.get_object(id))
            .and_then(|o| o.as_stream())
            .unwrap();
        let w = image.dict.get(b"Width").and_then(|v| v.as_i64()).unwrap();
        let h = image.dict.get(b"Height").and_then(|v| v.as_i64()).unwrap();
        out.push((mb[2] - mb[0], mb[3] - mb[1], w, h));
    }
    out
}

fn pdfinfo_pages(pdf: &[u8]) -> Option<usize> {
    let dir = tempfile::tempdir().ok()?;
    let input = dir.path().join("in.pdf");
    std::fs::write(&input, pdf).ok()?;
    let out = Command::new("pdfinfo").arg(&input).output().ok()?;
    assert!(out.status.success(), "pdfinfo refuses the output");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Pages:"))
        .and_then(|n| n.trim().parse().ok())
}

/// Renders page 1 with poppler at 20 dpi: the reader must accept the file.
fn pdftoppm_ok(pdf: &[u8]) -> Option<bool> {
    let dir = tempfile::tempdir().ok()?;
    let input = dir.path().join("in.pdf");
    std::fs::write(&input, pdf).ok()?;
    let out = Command::new("pdftoppm")
        .args(["-r", "20", "-f", "1", "-l", "1", "-png"])
        .arg(&input)
        .arg(dir.path().join("page"))
        .output()
        .ok()?;
    Some(out.status.success() && out.stderr.is_empty())
}

/// Share of dark pixels: the text must have been drawn, not a blank page.
fn dark_share(img: &image::RgbImage) -> f64 {
    let dark = img
        .pixels()
        .filter(|p| p.0.iter().all(|&c| c < 100))
        .count();
    dark as f64 / (img.width() as f64 * img.height() as f64)
}

#[test]
fn rasterized_pdf_shows_the_pages_as_images_only() {
    let data = text_pages(3, 595, 842, "VISIBLE TEXT");
    assert!(pdftotext(&data).is_none_or(|t| t.contains("VISIBLE TEXT 2")));
    let started = Instant::now();
    let d = match rasterize_run(&data) {
        Verdict::Keep(d) => d,
        other => panic!("{other:?}"),
    };
    eprintln!("3 A4 pages rasterised in {:?}", started.elapsed());
    assert_eq!(
        d.changes[0],
        "rasterised: 3 pages redrawn as images; text, links, forms and scripts removed"
    );
    assert_eq!(d.content_type, "application/pdf");
    let images = assert_images_only("text pages", &d.data);
    assert_eq!(images.len(), 3);
    for img in &images {
        // A4 at the default 100 dpi.
        assert_eq!((img.width(), img.height()), (826, 1169));
        let share = dark_share(img);
        assert!(share > 0.002 && share < 0.2, "text not drawn: {share}");
    }
    let doc = lopdf::Document::load_mem(&d.data).unwrap();
    for (_, page) in doc.get_pages() {
        let dict = doc.get_dictionary(page).unwrap();
        let mb: Vec<f32> = dict
            .get(b"MediaBox")
            .and_then(|m| m.as_array())
            .unwrap()
            .iter()
            .map(|o| o.as_float().unwrap())
            .collect();
        assert_eq!(mb, [0.0, 0.0, 595.0, 842.0]);
    }
    if have_pdftotext() {
        assert_eq!(pdfinfo_pages(&d.data), Some(3));
        assert_eq!(
            pdftotext(&d.data).as_deref(),
            Some(""),
            "text left in the output"
        );
        assert_eq!(
            pdftoppm_ok(&d.data),
            Some(true),
            "pdftoppm cannot render the output"
        );
        assert_poppler_sees_nothing_active("rasterised", &d.data);
    }
}

#[test]
fn rasterize_caps_the_pixels_of_a_huge_page() {
    // 200 x 200 inches: 400 M pixels at 100 dpi, rendered within max_image_pixels instead.
    let data = text_pages(1, 14_400, 14_400, "BIG");
    let started = Instant::now();
    let d = match rasterize_run(&data) {
        Verdict::Keep(d) => d,
        other => panic!("{other:?}"),
    };
    let took = started.elapsed();
    eprintln!("200x200 inch page rasterised in {took:?}");
    // About 4 s of CPU (debug build); the bound is the default sanitize.timeout, because the
    // two cores of a test machine are shared with other test binaries.
    assert!(took < Duration::from_secs(60), "{took:?}");
    assert!(
        d.changes[0].starts_with("rasterised: 1 page "),
        "{:?}",
        d.changes
    );
    assert!(
        d.changes.iter().any(|c| c.contains("lower resolution")),
        "{:?}",
        d.changes
    );
    let images = assert_images_only("huge page", &d.data);
    let px = u64::from(images[0].width()) * u64::from(images[0].height());
    assert!(
        px <= limits().max_pixels && px > limits().max_pixels / 2,
        "{px}"
    );
    assert!(d.data.len() < 25 << 20);
    if have_pdftotext() {
        assert_eq!(pdfinfo_pages(&d.data), Some(1));
    }
}

#[test]
fn rasterize_page_cap_disarms_long_pdfs() {
    let data = text_pages(10_000, 200, 200, "p");
    let started = Instant::now();
    let d = match rasterize_run(&data) {
        Verdict::Keep(d) => d,
        other => panic!("{other:?}"),
    };
    let took = started.elapsed();
    eprintln!("10,000-page PDF refused by the page cap and disarmed in {took:?}");
    assert!(took < Duration::from_secs(30), "{took:?}");
    assert_eq!(
        d.changes[0],
        "not rasterised (10000 pages, more than max_rasterize_pages (50)); disarmed instead"
    );
    assert_inert("page cap", &d.data);
    // Disarmed, not rasterised: the text is still there.
    assert!(memchr::memmem::find(&d.data, b"/Font").is_some());
}

fn raster_options(test_hang: bool, deadline: Duration) -> cdr::raster::Options {
    cdr::raster::Options {
        worker: PathBuf::from(env!("CARGO_BIN_EXE_mugaika")),
        dpi: 50,
        max_pages: 50,
        max_pixels: limits().max_pixels,
        jpeg_quality: 80,
        max_output: 25 << 20,
        deadline: Instant::now() + deadline,
        test_hang,
    }
}

/// Zombie children of this process (a worker killed but not reaped).
fn zombie_children() -> Vec<String> {
    let mut found = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return found;
    };
    for t in tasks.flatten() {
        let children = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        for pid in children.split_whitespace() {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // "pid (comm) state ...": the state follows the last ')'.
            if stat
                .rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
            {
                found.push(stat);
            }
        }
    }
    found
}

#[test]
fn rasterize_hanging_worker_is_killed_and_the_pdf_disarmed() {
    let data = text_pages(2, 595, 842, "hang");
    let started = Instant::now();
    let d = cdr::pdf::rasterize(
        &data,
        LinkPolicy::Show,
        &limits(),
        Ok(raster_options(true, Duration::from_secs(2))),
    )
    .unwrap();
    let took = started.elapsed();
    eprintln!("hanging worker: fell back after {took:?}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert!(
        d.changes[0].starts_with("not rasterised (the renderer did not finish within ")
            && d.changes[0].ends_with(" ms); disarmed instead"),
        "{:?}",
        d.changes
    );
    assert_inert("hang", &d.data);
    // The killed worker was reaped (zombies of other tests' workers last milliseconds).
    assert!(
        (0..50).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            zombie_children().is_empty()
        }),
        "zombie workers: {:?}",
        zombie_children()
    );
    // A large input to a worker that never reads: the write fails at the kill, no deadlock.
    let big = text_pages(6000, 595, 842, "a long line of text to make the file big");
    assert!(big.len() > 1 << 20);
    let started = Instant::now();
    let r = cdr::raster::rasterize(&big, &raster_options(true, Duration::from_secs(1)));
    assert!(
        matches!(r, Err(cdr::raster::RasterError::Timeout(ms)) if ms <= 1000),
        "{r:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[test]
fn rasterize_worker_garbage_or_crash_falls_back() {
    let data = text_pages(1, 595, 842, "garbage");
    // A "worker" that prints its arguments, one that prints nothing, one that is missing.
    // Whether a worker that ignores its input ends before or after the write is a race: either
    // reason is right.
    for (worker, expect) in [
        ("/bin/echo", &["malformed", "input not accepted"][..]),
        ("/bin/true", &["malformed", "input not accepted"]),
        ("/bin/false", &["worker exited with status 1"]),
        ("/nonexistent/mugaika", &["could not be started"]),
    ] {
        let mut opts = raster_options(false, Duration::from_secs(10));
        opts.worker = PathBuf::from(worker);
        let d = cdr::pdf::rasterize(&data, LinkPolicy::Show, &limits(), Ok(opts)).unwrap();
        assert!(
            d.changes[0].starts_with("not rasterised (")
                && expect.iter().any(|e| d.changes[0].contains(e)),
            "{worker}: {:?}",
            d.changes
        );
        assert_inert(worker, &d.data);
    }
    // Not a PDF the renderer can open: its error frame is the reason.
    let opts = raster_options(false, Duration::from_secs(10));
    let r = cdr::raster::rasterize(b"%PDF-1.4\n garbage", &opts);
    assert!(
        matches!(&r, Err(cdr::raster::RasterError::Worker(m)) if m.starts_with("unreadable PDF")),
        "{r:?}"
    );
}

#[test]
fn rasterize_draws_japanese_text_in_a_font_the_pdf_does_not_embed() {
    // MS-Mincho named, not embedded (Adobe-Japan1, UniJIS-UCS2-H): drawn with a system CJK
    // font when the machine has one (fonts-ipafont-mincho and the like).
    let fonts = [
        "/usr/share/fonts/opentype/ipaexfont-mincho/ipaexm.ttf",
        "/usr/share/fonts/opentype/ipafont-mincho/ipam.ttf",
        "/usr/share/fonts/truetype/fonts-japanese-mincho.ttf",
        "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    ];
    if !fonts.iter().any(|f| std::path::Path::new(f).exists()) {
        eprintln!("\n*** SKIP: no system CJK font (apt-get install fonts-ipafont-mincho) ***\n");
        return;
    }
    // 日本語の文書 in UCS-2.
    let content = "BT /F1 96 Tf 40 400 Td <65E5672C8A9E306E658766F8> Tj ET";
    let data = pdf(&[
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R \
          /Resources << /Font << /F1 5 0 R >> >> >>"
            .to_vec(),
        stream("", content.as_bytes()),
        b"<< /Type /Font /Subtype /Type0 /BaseFont /MS-Mincho /Encoding /UniJIS-UCS2-H \
          /DescendantFonts [6 0 R] >>"
            .to_vec(),
        b"<< /Type /Font /Subtype /CIDFontType0 /BaseFont /MS-Mincho \
          /CIDSystemInfo << /Registry (Adobe) /Ordering (Japan1) /Supplement 2 >> \
          /FontDescriptor 7 0 R /DW 1000 >>"
            .to_vec(),
        b"<< /Type /FontDescriptor /FontName /MS-Mincho /Flags 6 \
          /FontBBox [0 -141 1000 859] /ItalicAngle 0 /Ascent 859 /Descent -141 \
          /CapHeight 700 /StemV 80 >>"
            .to_vec(),
    ]);
    if have_pdftotext() {
        assert_eq!(pdftotext(&data).as_deref(), Some("日本語の文書"));
    }
    let d = match rasterize_run(&data) {
        Verdict::Keep(d) => d,
        other => panic!("{other:?}"),
    };
    let images = assert_images_only("japanese", &d.data);
    let share = dark_share(&images[0]);
    assert!(share > 0.01, "Japanese text not drawn: {share}");
}

#[test]
fn rasterize_worker_is_held_to_its_memory_limit() {
    // The worker run by hand on a page needing a 100 MB canvas: with 64 MB of address space it
    // dies on the allocation (fail closed), with its normal share it renders the page.
    let data = text_pages(1, 14_400, 14_400, "BIG");
    let worker = |memory: u64| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mugaika"))
            .args(["rasterize-worker", "--dpi", "100", "--max-pages", "5"])
            .args(["--max-pixels", "25000000", "--cpu-seconds", "30"])
            .args(["--memory-limit", &memory.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        std::io::Write::write_all(&mut stdin, &data).unwrap();
        drop(stdin);
        child.wait_with_output().unwrap()
    };
    let starved = worker(64 << 20);
    assert!(!starved.status.success(), "{:?}", starved.status);
    assert!(starved.stdout.len() < 1 << 20);
    let fed = worker(1 << 30);
    assert!(fed.status.success(), "{:?}", fed.status);
    assert_eq!(fed.stdout.len(), 8 + 4 + 1 + 16 + 25_000_000 * 3 + 1);
    assert!(fed.stdout.starts_with(cdr::raster::MAGIC) && fed.stdout.ends_with(b"Z"));
}

/// Minimal message with one PDF attachment.
fn mail_with_pdf(name: &str, pdf: &[u8]) -> Vec<u8> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(pdf);
    let mut body = String::new();
    for chunk in b64.as_bytes().chunks(76) {
        body.push_str(std::str::from_utf8(chunk).unwrap());
        body.push_str("\r\n");
    }
    format!(
        "From: a@example.jp\r\nTo: b@example.lg.jp\r\nSubject: pdf\r\n\
         Message-ID: <r@example.jp>\r\nDate: Sun, 22 Nov 2026 03:00:00 +0900\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nsee attachment\r\n\
         --b\r\nContent-Type: application/pdf; name=\"{name}\"\r\n\
         Content-Disposition: attachment; filename=\"{name}\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{body}--b--\r\n"
    )
    .into_bytes()
}

#[test]
fn pdfjs_corpus_rasterized_through_the_cli() {
    let Some(files) = pdfjs() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (inp, out) = (tmp.path().join("in"), tmp.path().join("out"));
    std::fs::create_dir_all(&inp).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    for (i, p) in files.iter().enumerate() {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let msg = mail_with_pdf(&name, &std::fs::read(p).unwrap());
        std::fs::write(inp.join(format!("{i:03}.eml")), msg).unwrap();
    }
    let config = tmp.path().join("mugaika.toml");
    std::fs::write(
        &config,
        "[sanitize]\nrasterize_dpi = 72\n\n[sanitize.attachments]\npdf = \"rasterize\"\n",
    )
    .unwrap();
    let report = tmp.path().join("report.json");
    let started = Instant::now();
    let run = Command::new(env!("CARGO_BIN_EXE_mugaika"))
        .arg("sanitize")
        .arg("--config")
        .arg(&config)
        .arg(&inp)
        .arg("-o")
        .arg(&out)
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    eprintln!(
        "{} corpus PDFs through the CLI in {:?}",
        files.len(),
        started.elapsed()
    );
    assert!(
        run.status.success(),
        "mugaika sanitize: {:?}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let outcomes = report.as_array().expect("one outcome per input");
    let (mut rasterised, mut disarmed, mut removed) = (0, 0, 0);
    for (i, p) in files.iter().enumerate() {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let raw = std::fs::read(out.join(format!("{i:03}.eml"))).unwrap();
        let msg = mail_parser::MessageParser::default()
            .parse(&raw[..])
            .unwrap();
        let pdfs: Vec<Vec<u8>> = msg
            .attachments()
            .map(|a| a.contents().to_vec())
            .filter(|c| c.starts_with(b"%PDF"))
            .collect();
        let reason = outcomes
            .iter()
            .find(|o| {
                o["input"]
                    .as_str()
                    .is_some_and(|s| s.ends_with(&format!("{i:03}.eml")))
            })
            .and_then(|o| o["report"]["actions"].as_array())
            .and_then(|a| a.iter().find(|a| a["name"].as_str() == Some(name.as_str())))
            .and_then(|a| a["reason"].as_str())
            .unwrap_or_else(|| panic!("{name}: no attachment action in the report"))
            .to_string();
        eprintln!("{name}: {reason}");
        match pdfs.as_slice() {
            [] => removed += 1,
            [pdf] => {
                assert_inert(&name, pdf);
                if reason.starts_with("rasterised: ") {
                    let images = assert_images_only(&name, pdf);
                    assert!(!images.is_empty(), "{name}: no page image");
                    // rasterize_dpi = 72 from the configuration: a pixel per point.
                    for (w_pt, h_pt, w, h) in page_images(pdf) {
                        assert!(
                            (w - w_pt.floor() as i64).abs() <= 1
                                && (h - h_pt.floor() as i64).abs() <= 1,
                            "{name}: {w}x{h} pixels for {w_pt}x{h_pt} points at 72 dpi"
                        );
                    }
                    rasterised += 1;
                } else {
                    assert!(reason.starts_with("not rasterised"), "{name}: {reason}");
                    disarmed += 1;
                }
                if have_pdftotext() {
                    assert_poppler_sees_nothing_active(&name, pdf);
                    assert_eq!(
                        pdftoppm_ok(pdf),
                        Some(true),
                        "{name}: poppler cannot render it"
                    );
                }
            }
            more => panic!("{name}: {} PDFs", more.len()),
        }
    }
    eprintln!("rasterised {rasterised}, disarmed instead {disarmed}, removed {removed}");
    assert!(
        rasterised >= files.len() / 2,
        "only {rasterised} of {} rasterised",
        files.len()
    );
}

/// Rasterising speed: `cargo test --release --test cdr_pdf -- --ignored --nocapture bench_r`.
#[test]
#[ignore]
fn bench_rasterize_pages_per_second() {
    let mut inputs = vec![(
        "generated A4 text".to_string(),
        20usize,
        text_pages(20, 595, 842, "municipal notice text"),
    )];
    // A real manual when the machine has it (Debian's libtasn1-doc, 36 letter pages).
    let manual = std::path::Path::new("/usr/share/doc/libtasn1-doc/libtasn1.pdf");
    if let (Ok(data), Some(pages)) = (
        std::fs::read(manual),
        std::fs::read(manual).ok().and_then(|d| pdfinfo_pages(&d)),
    ) {
        inputs.push(("libtasn1.pdf".into(), pages, data));
    }
    for (label, pages, data) in &inputs {
        let started = Instant::now();
        let d = match rasterize_run(data) {
            Verdict::Keep(d) => d,
            other => panic!("{other:?}"),
        };
        let took = started.elapsed();
        assert!(d.changes[0].starts_with("rasterised"), "{:?}", d.changes);
        eprintln!(
            "rasterize {label}: {pages} pages at 100 dpi in {took:?}: {:.1} pages/s, \
             {} -> {} octets",
            *pages as f64 / took.as_secs_f64(),
            data.len(),
            d.data.len()
        );
    }
}
