//! End to end through `pipeline`: small messages (Japanese ISO-2022-JP, HTML, an attachment, a
//! forwarded message) parsed, sanitised, rebuilt and verified; every clean message is also
//! judged by `../shared/tools/checkmail.py structural` (Python's mail parser, independent of
//! ours). Then the failure paths: refusals, the deadline, the panic boundary, and the
//! notice-only message for `on_error = "quarantine"`.
//!
//! When python3 or checkmail.py is missing the Python check is skipped with a loud message;
//! with `MUGAIKA_REQUIRE_CORPORA=1` that is a failure instead.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mail_parser::{MessageParser, MimeHeaders};
use mugaika::config::{Config, OutputCharset};
use mugaika::pipeline::{notice_only, sanitize_reader, Context, Report, SanitizeError};
use mugaika::sanitise::ActionKind;

fn require() -> bool {
    std::env::var("MUGAIKA_REQUIRE_CORPORA").is_ok_and(|v| v == "1")
}

fn checkmail_script() -> PathBuf {
    let corpora = std::env::var("MUGAIKA_CORPORA")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpora"))
        });
    corpora.join("../tools/checkmail.py")
}

/// Runs checkmail.py structural on `files`; panics with its output on failure.
fn checkmail(files: &[&Path]) {
    let script = checkmail_script();
    let have_python = Command::new("python3").arg("--version").output().is_ok();
    if !have_python || !script.exists() {
        let msg = format!(
            "SKIP checkmail.py structural: python3 present = {have_python}, {} present = {}",
            script.display(),
            script.exists()
        );
        if require() {
            panic!("{msg} (MUGAIKA_REQUIRE_CORPORA=1)");
        }
        eprintln!("\n!!!!!!!!!! {msg} !!!!!!!!!!\n");
        return;
    }
    let out = Command::new("python3")
        .arg(&script)
        .arg("structural")
        .args(files)
        .output()
        .expect("run checkmail.py");
    assert!(
        out.status.success(),
        "checkmail.py structural failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn cfg() -> Config {
    let mut c = Config::default();
    c.server.hostname = "mugaika.test".into();
    c
}

fn ctx() -> Context {
    Context {
        received: Some(
            "from mx.example.net (mx.example.net [192.0.2.1]) by mugaika.test with ESMTP id abc; Tue, 1 Apr 2025 09:30:00 +0900".into(),
        ),
        quarantine_id: Some("Q20250401-0001".into()),
        temp_dir: None,
        ..Context::default()
    }
}

struct Out {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Out {
    fn new() -> Out {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clean.eml");
        Out { _dir: dir, path }
    }
    fn bytes(&self) -> Vec<u8> {
        std::fs::read(&self.path).unwrap()
    }
}

fn run(msg: &[u8], cfg: &Config) -> (Result<Report, SanitizeError>, Out) {
    let out = Out::new();
    let r = sanitize_reader(msg, cfg, &ctx(), &out.path);
    (r, out)
}

/// Sanitises, checks success and the Python judge, returns the report and the clean bytes.
fn clean(msg: &[u8], cfg: &Config) -> (Report, Vec<u8>) {
    let (r, out) = run(msg, cfg);
    let report = r.unwrap_or_else(|e| panic!("{e}"));
    checkmail(&[&out.path]);
    (report, out.bytes())
}

fn body_text(raw: &[u8]) -> String {
    let m = MessageParser::default().parse(raw).expect("parses");
    m.body_text(0).expect("a text body").into_owned()
}

fn header_block(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    s.split("\r\n\r\n").next().unwrap_or_default().to_string()
}

fn iso2022jp(s: &str) -> Vec<u8> {
    encoding_rs::ISO_2022_JP.encode(s).0.into_owned()
}

fn jis_message() -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(
        b"From: =?ISO-2022-JP?B?GyRCOzNFRBsoQg==?= <yamada@example.jp>\r\n\
To: soumu@city.example.lg.jp\r\n\
Subject: =?ISO-2022-JP?B?GyRCMnE1RCROJCpDTiRpJDsbKEI=?=\r\n\
Date: Tue, 1 Apr 2025 09:30:00 +0900\r\n\
Message-ID: <jis.1@example.jp>\r\n\
X-Mailer: SomeMailer 1.0\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=ISO-2022-JP\r\n\
Content-Transfer-Encoding: 7bit\r\n\r\n",
    );
    m.extend_from_slice(&iso2022jp(
        "総務課 各位\r\n\r\n来週の会議は第二会議室で行います。\r\n",
    ));
    m
}

#[test]
fn japanese_iso_2022_jp_message_in_both_output_charsets() {
    let msg = jis_message();
    let (report, raw) = clean(&msg, &cfg());
    assert_eq!(report.output_charset, "utf-8");
    let hb = header_block(&raw);
    assert!(
        !hb.contains("X-Mailer"),
        "only our header fields pass:\n{hb}"
    );
    assert!(hb.starts_with("Received: from mx.example.net"), "{hb}");
    assert!(hb.contains("X-Mugaika-Quarantine-Id: Q20250401-0001"));
    let m = MessageParser::default().parse(&raw).unwrap();
    assert_eq!(m.subject(), Some("会議のお知らせ"));
    assert_eq!(m.message_id(), Some("jis.1@example.jp"));
    let body = body_text(&raw);
    assert!(
        body.contains("来週の会議は第二会議室で行います。"),
        "{body}"
    );
    assert!(
        body.contains("Q20250401-0001"),
        "the notice names the quarantine id"
    );

    let mut c = cfg();
    c.sanitize.output_charset = OutputCharset::Iso2022Jp;
    let (report, raw) = clean(&msg, &c);
    assert_eq!(report.output_charset, "iso-2022-jp");
    assert!(header_block(&raw).contains("charset=ISO-2022-JP"));
    assert!(body_text(&raw).contains("来週の会議は第二会議室で行います。"));
}

#[test]
fn extension_characters_fall_back_to_utf8_and_say_so() {
    let mut msg = Vec::new();
    msg.extend_from_slice(
        "From: a@example.jp\r\nSubject: test\r\nMIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
            .as_bytes(),
    );
    msg.extend_from_slice("①会議 ㈱山田商事 髙橋様\r\n".as_bytes());
    let mut c = cfg();
    c.sanitize.output_charset = OutputCharset::Iso2022Jp;
    let (report, raw) = clean(&msg, &c);
    assert_eq!(report.output_charset, "utf-8");
    assert!(report
        .actions
        .iter()
        .any(|a| a.kind == ActionKind::CharsetFallback));
    let body = body_text(&raw);
    assert!(body.contains("①会議 ㈱山田商事 髙橋様"), "{body}");
}

#[test]
fn html_is_converted_to_text() {
    let msg = b"From: news@example.com\r\nTo: a@city.example.lg.jp\r\nSubject: News\r\n\
MIME-Version: 1.0\r\nContent-Type: text/html; charset=UTF-8\r\n\r\n\
<html><head><style>p{color:red}</style><script>alert(1)</script></head>\
<body><p>Hello <b>staff</b>, see <a href=\"https://example.com/x\">the page</a>.</p></body></html>\r\n";
    let (report, raw) = clean(msg, &cfg());
    assert_eq!(report.status, "sanitized");
    assert!(report
        .actions
        .iter()
        .any(|a| a.kind == ActionKind::HtmlConverted));
    let hb = header_block(&raw);
    assert!(hb.contains("text/plain"), "{hb}");
    assert!(!String::from_utf8_lossy(&raw)
        .to_lowercase()
        .contains("text/html"));
    let body = body_text(&raw);
    assert!(body.contains("Hello") && body.contains("staff"), "{body}");
    assert!(
        !body.contains("alert(1)") && !body.contains("color:red"),
        "{body}"
    );
}

#[test]
fn attachment_is_removed_and_named_in_the_notice() {
    let msg = b"From: a@example.com\r\nTo: b@city.example.lg.jp\r\nSubject: invoice\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n\
--XX\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nPlease see the attached invoice.\r\n\
--XX\r\nContent-Type: application/octet-stream; name=\"invoice.exe\"\r\n\
Content-Disposition: attachment; filename=\"invoice.exe\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n--XX--\r\n";
    let (report, raw) = clean(msg, &cfg());
    assert_eq!(report.status, "sanitized");
    assert!(report
        .actions
        .iter()
        .any(|a| a.kind == ActionKind::AttachmentRemoved));
    assert_eq!(report.attachments, 0);
    let m = MessageParser::default().parse(&raw).unwrap();
    assert_eq!(m.attachment_count(), 0);
    let body = body_text(&raw);
    assert!(body.contains("invoice.exe"), "the notice names it:\n{body}");
    assert!(body.contains("Please see the attached invoice."));
    assert!(header_block(&raw).contains("X-Mugaika-Status: sanitized; actions="));
}

#[test]
fn forwarded_message_text_is_kept() {
    let mut msg = Vec::new();
    msg.extend_from_slice(
        b"From: a@example.com\r\nTo: b@city.example.lg.jp\r\nSubject: Fwd: report\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"OUT\"\r\n\r\n\
--OUT\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\nForwarding this.\r\n\
--OUT\r\nContent-Type: message/rfc822\r\n\r\n\
From: =?UTF-8?B?5L2Q6Jek?= <sato@example.org>\r\nSubject: =?UTF-8?B?5aCx5ZGK5pu4?=\r\n\
Date: Mon, 31 Mar 2025 10:00:00 +0900\r\nMIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: base64\r\n\r\n",
    );
    let inner = "内部の本文です。転送されました。\r\n";
    let mut b64 = String::new();
    base64::Engine::encode_string(
        &base64::engine::general_purpose::STANDARD,
        inner.as_bytes(),
        &mut b64,
    );
    msg.extend_from_slice(b64.as_bytes());
    msg.extend_from_slice(b"\r\n--OUT--\r\n");
    let (report, raw) = clean(&msg, &cfg());
    assert!(report
        .actions
        .iter()
        .any(|a| a.kind == ActionKind::ForwardedMessage));
    let body = body_text(&raw);
    assert!(body.contains("Forwarding this."), "{body}");
    assert!(body.contains("内部の本文です。転送されました。"), "{body}");
    assert!(
        body.contains("報告書"),
        "the inner subject is shown:\n{body}"
    );
}

#[test]
fn refusals_are_rare_and_leave_no_output() {
    for (input, what) in [
        (&b""[..], "empty"),
        (b"\r\n \r\n\t\r\n", "empty"),
        (
            b"This is a simple message not having headers.\r\n",
            "no header block",
        ),
    ] {
        let (r, out) = run(input, &cfg());
        match r {
            Err(SanitizeError::Rejected(reason)) => assert!(reason.contains(what), "{reason}"),
            other => panic!("{input:?}: {other:?}"),
        }
        assert!(!out.path.exists());
    }
    // Accepted: an mbox From line, a BOM, CR-only line ends, a header with obsolete spacing,
    // a first field indented by mistake.
    for input in [
        &b"From someone@example.com Thu Apr 30 14:27:51 1998\nSubject: x\n\nbody\n"[..],
        b"\xEF\xBB\xBFSubject: x\r\n\r\nbody\r\n",
        b"From x  Sun Sep  7 21:40:07 2008\rSubject: cr only\r\rbody\r",
        b"Subject : spaced\r\n\r\nbody\r\n",
        b" From: indented@example.jp\r\nSubject: x\r\n\r\nbody\r\n",
    ] {
        let (r, out) = run(input, &cfg());
        r.unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(input)));
        checkmail(&[&out.path]);
    }
}

/// A reader that takes its time: the deadline must stop the run between chunks.
struct Slow {
    data: Vec<u8>,
    pos: usize,
}

impl Read for Slow {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        std::thread::sleep(Duration::from_millis(30));
        let n = buf.len().min(self.data.len() - self.pos).min(70 << 10);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[test]
fn deadline_stops_a_slow_message() {
    let mut data = b"Subject: slow\r\n\r\n".to_vec();
    data.extend(std::iter::repeat_n(b"line of text\r\n".as_slice(), 60_000).flatten());
    let mut c = cfg();
    c.sanitize.timeout = mugaika::config::Dur(Duration::from_millis(100));
    let out = Out::new();
    std::fs::write(&out.path, b"stale").unwrap();
    let r = sanitize_reader(Slow { data, pos: 0 }, &c, &ctx(), &out.path);
    assert!(matches!(r, Err(SanitizeError::Timeout(_))), "{r:?}");
    assert!(!out.path.exists(), "output removed on error");
}

struct Panicking;

impl Read for Panicking {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        panic!("converter bug");
    }
}

#[test]
fn a_panic_becomes_an_internal_error() {
    let out = Out::new();
    std::fs::write(&out.path, b"stale").unwrap();
    let r = sanitize_reader(Panicking, &cfg(), &ctx(), &out.path);
    match r {
        Err(SanitizeError::Internal(m)) => assert!(m.contains("converter bug"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(!out.path.exists());
}

#[test]
fn notice_only_message_keeps_readable_headers() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("orig.eml");
    std::fs::write(&input, jis_message()).unwrap();
    for (lang, cs) in [
        (mugaika::config::Language::Ja, OutputCharset::Iso2022Jp),
        (mugaika::config::Language::En, OutputCharset::Utf8),
    ] {
        let mut c = cfg();
        c.sanitize.notice_language = lang;
        c.sanitize.output_charset = cs;
        c.sanitize.subject_tag = "[要確認]".into();
        let out = Out::new();
        let report = notice_only(
            &input,
            &c,
            &ctx(),
            "timed out after 60s\r\nBcc: x",
            &out.path,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(report.status, "notice-only");
        checkmail(&[&out.path]);
        let raw = out.bytes();
        let hb = header_block(&raw);
        assert!(hb.contains("X-Mugaika-Status: notice-only"), "{hb}");
        let m = MessageParser::default().parse(&raw).unwrap();
        assert_eq!(m.subject(), Some("[要確認] 会議のお知らせ"));
        let body = body_text(&raw);
        assert!(body.contains("Q20250401-0001"), "{body}");
        assert!(body.contains("timed out after 60s Bcc: x"), "{body}");
        assert!(
            !body.contains("来週の会議"),
            "no original text in a notice-only message"
        );
    }
    // Even a missing or unreadable input gives a notice.
    let out = Out::new();
    let report = notice_only(
        &dir.path().join("gone.eml"),
        &cfg(),
        &ctx(),
        "lost",
        &out.path,
    )
    .unwrap();
    assert_eq!(report.status, "notice-only");
    checkmail(&[&out.path]);
    let raw = out.bytes();
    let m = MessageParser::default().parse(&raw).unwrap();
    assert!(m.subject().is_none());
}

#[test]
fn jis_table_agrees_with_python() {
    let have_python = Command::new("python3").arg("--version").output().is_ok();
    if !have_python {
        assert!(!require(), "python3 missing (MUGAIKA_REQUIRE_CORPORA=1)");
        eprintln!("\n!!!!!!!!!! SKIP jis_table_agrees_with_python: no python3 !!!!!!!!!!\n");
        return;
    }
    // Every character rebuild writes in ISO-2022-JP, as Python's strict iso2022_jp decodes it.
    let mut lines = String::new();
    let mut n = 0;
    for c in (0x80u32..0x10000).filter_map(char::from_u32) {
        if let Some([a, b]) = mugaika::rebuild::jis_cell(c) {
            lines.push_str(&format!("{:X} {a:02X}{b:02X}\n", c as u32));
            n += 1;
        }
    }
    assert!(n > 6800);
    let script = r#"
import sys
bad = 0
for line in sys.stdin:
    cp, cell = line.split()
    raw = b"\x1b$B" + bytes.fromhex(cell) + b"\x1b(B"
    try:
        got = raw.decode("iso2022_jp")
    except Exception:
        print("undecodable", cp, cell); bad += 1; continue
    want = chr(int(cp, 16))
    # Python maps a few cells to other code points (WAVE DASH and friends); rebuild writes both.
    if got != want and got not in "\u301c\u2016\u2212\u00a2\u00a3\u00ac\uff5e\u2225\uff0d\uffe0\uffe1\uffe2":
        print("differs", cp, cell, hex(ord(got))); bad += 1
sys.exit(1 if bad else 0)
"#;
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn notice_text_is_iso_2022_jp_safe() {
    for lang in [mugaika::config::Language::Ja, mugaika::config::Language::En] {
        let t = mugaika::pipeline::notice_only_text(lang, Some("Q1"), "reason");
        for c in t.chars() {
            assert!(
                (c.is_ascii() && (!c.is_ascii_control() || c == '\n'))
                    || mugaika::rebuild::jis_cell(c).is_some(),
                "{c:?} in {t}"
            );
        }
    }
}

#[test]
fn a_plain_message_is_a_single_text_part() {
    // Parsed by mail-parser: the structure of the clean message is plain.
    let (_, raw) = clean(&jis_message(), &cfg());
    let m = MessageParser::default().parse(&raw).unwrap();
    assert_eq!(m.parts.len(), 1);
    assert_eq!(
        m.parts[0].content_type().map(|c| c.ctype().to_string()),
        Some("text".into())
    );
}

#[test]
fn a_large_message_is_verified_by_the_streaming_pass() {
    // About 14 MB of Japanese text: the clean message (base64) passes 16 MiB, so the verifier
    // checks it without a whole-message parse.
    let mut msg = b"From: a@example.jp\r\nSubject: large\r\nMIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        .to_vec();
    let line = "大きな本文の行です。Large body line 0123456789.\r\n";
    while msg.len() < 14_000_000 {
        msg.extend_from_slice(line.as_bytes());
    }
    msg.extend_from_slice("最後の行\r\n".as_bytes());
    let (r, out) = run(&msg, &cfg());
    let report = r.unwrap_or_else(|e| panic!("{e}"));
    assert!(report.output_bytes > 16 << 20, "{}", report.output_bytes);
    let raw = out.bytes();
    assert_eq!(raw.len() as u64, report.output_bytes);
    // The streaming pass alone still catches damage at the very end.
    let expect = mugaika::verify::Expectation {
        text_prefix: line.replace("\r\n", "\n"),
        ..Default::default()
    };
    mugaika::verify::verify_file(&out.path, &expect).unwrap();
    let mut bad = raw.clone();
    let at = bad.len() - 10;
    bad.insert(at, b'\n');
    std::fs::write(&out.path, &bad).unwrap();
    assert!(matches!(
        mugaika::verify::verify_file(&out.path, &expect),
        Err(mugaika::verify::Violation::BareLineEnd { .. })
    ));
    let mut bad = raw;
    let at = bad.len() - 10;
    bad[at] = b'!';
    std::fs::write(&out.path, &bad).unwrap();
    assert!(matches!(
        mugaika::verify::verify_file(&out.path, &expect),
        Err(mugaika::verify::Violation::TransferEncoding { .. })
    ));
}
