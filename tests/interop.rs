//! Interop with real peers, through the real `mugaika serve` process on a temporary config:
//!
//! 1. Postfix's `smtp-source` (8 parallel sessions, 200 Japanese HTML newsletters from
//!    `genmail.py`, plus a run of generated payloads) → mugaika → `smtp-sink`: everything
//!    arrives once, clean, and the spool queue empties.
//! 2. `swaks` plain, pipelined and over STARTTLS (a generated certificate), a recipient outside
//!    `relay_domains` (550 5.7.1), and a mixed recipient list: only the allowed recipient gets
//!    the clean message.
//! 3. Postfix itself on both sides: swaks → Postfix (relayhost = mugaika, TLS required) →
//!    mugaika → Postfix (opportunistic TLS) → smtp-sink: the message arrives sanitised, once.
//! 4. The SMTP smuggling cases replayed raw over a socket: the sink never receives a second
//!    message, nor one from the smuggled sender, nor one with the smuggled Subject.
//!
//! A missing peer program is a loud SKIP, or a failure under `MUGAIKA_REQUIRE_CORPORA=1` (CI).
//! Every process belongs to a guard that kills it on drop; every wait is bounded.

mod common;

use std::fs;
use std::io::Write;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;

const RELAY_DOMAIN: &str = "city.example.lg.jp";

/// A phrase of genmail's Japanese text, present in both alternatives of its HTML mail.
const GENMAIL_PHRASE: &str = "お世話になっております。市民課の山田です。";

/// Asserts that a clean message still holds the original text `phrase`. A well-formed mail
/// must be sanitised, never reduced to a notice.
fn assert_text_kept(clean: &Clean, phrase: &str, what: &str) {
    assert_ne!(
        clean.status, "notice-only",
        "{what}: a well-formed mail was not sanitised (notice-only):\n{}",
        clean.text
    );
    // Line breaks may fall anywhere in converted text: compare without white space.
    let squeeze = |t: &str| t.split_whitespace().collect::<String>();
    assert!(
        squeeze(&clean.text).contains(&squeeze(phrase)),
        "{what}: the original text {phrase:?} is missing:\n{}",
        clean.text
    );
}

/// Our `Received:` field of a sink message (the one `by mugaika.test`), unfolded.
fn our_received(data: &[u8]) -> String {
    received_fields(data)
        .into_iter()
        .find(|r| r.contains("by mugaika.test"))
        .unwrap_or_else(|| panic!("no Received by mugaika.test:\n{}", head(data)))
}

/// Every top-level `Received:` field, unfolded, in order.
fn received_fields(data: &[u8]) -> Vec<String> {
    let text = head(data);
    let mut fields: Vec<String> = Vec::new();
    let mut in_received = false;
    for line in text.split("\r\n") {
        if line.starts_with(' ') || line.starts_with('\t') {
            if in_received {
                if let Some(last) = fields.last_mut() {
                    last.push(' ');
                    last.push_str(line.trim());
                }
            }
        } else {
            in_received = line.to_ascii_lowercase().starts_with("received:");
            if in_received {
                fields.push(line["received:".len()..].trim().to_string());
            }
        }
    }
    fields
}

/// The top-level header block as text.
fn head(data: &[u8]) -> String {
    let end = memchr::memmem::find(data, b"\r\n\r\n").unwrap_or(data.len());
    String::from_utf8_lossy(&data[..end]).into_owned()
}

// ---------------------------------------------------------------------------------------------
// 1. smtp-source → mugaika → smtp-sink

#[test]
fn smtp_source_through_mugaika_to_smtp_sink() {
    let Some(source) = peer("smtp-source") else {
        return;
    };
    let Some(python) = peer("python3") else {
        return;
    };
    let genmail = tools().join("genmail.py");
    if !genmail.is_file() {
        skip(&format!("{} not found", genmail.display()));
        return;
    }
    let tmp = shared_tempdir();
    let Some(sink) = SmtpSink::start(tmp.path()) else {
        return;
    };

    // A real Japanese HTML newsletter (multipart/alternative, inline image, script, links).
    // smtp-source appends CRLF to every line it reads but keeps a CR it finds, so it gets the
    // file with LF ends (a CRLF file would arrive with bare CRs and be refused, rightly).
    let gen = tmp.path().join("gen");
    let mut cmd = Command::new(&python);
    cmd.arg(&genmail)
        .arg(&gen)
        .args(["--count", "10", "--kind", "html"]);
    let run = run_bounded("genmail", &mut cmd, tmp.path(), Duration::from_secs(60));
    assert!(run.status.success(), "genmail.py: {}", run.text());
    let mut generated: Vec<PathBuf> = fs::read_dir(&gen)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    generated.sort();
    assert_eq!(generated.len(), 10, "genmail.py wrote {generated:?}");
    // The largest of the ten: the most table rows for the HTML converter.
    let newsletter = generated
        .iter()
        .max_by_key(|p| fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .unwrap();
    let lf: Vec<u8> = fs::read(newsletter)
        .unwrap()
        .into_iter()
        .filter(|&b| b != b'\r')
        .collect();
    let lf_file = tmp.path().join("newsletter-lf.eml");
    fs::write(&lf_file, &lf).unwrap();

    let mut mugaika = Mugaika::start(
        &tmp.path().join("mugaika"),
        &ServeConfig::new(sink.addr, &[RELAY_DOMAIN]),
    );
    let target = mugaika.addr.to_string();
    let sender = "sender0@partner.example.co.jp";
    let rcpt = format!("shimin@{RELAY_DOMAIN}");
    const HTML_N: usize = 200;
    const PLAIN_N: usize = 20;

    // Both runs at once: 8 + 2 sessions in parallel.
    let html_run = {
        let (source, dir, target, rcpt) = (
            source.clone(),
            tmp.path().to_path_buf(),
            target.clone(),
            rcpt.clone(),
        );
        let lf_file = lf_file.clone();
        std::thread::spawn(move || {
            let mut cmd = Command::new(source);
            cmd.args(["-s", "8", "-m", &HTML_N.to_string(), "-M", "source.test"])
                .args(["-f", sender, "-t", &rcpt, "-F"])
                .arg(&lf_file)
                .arg(&target);
            run_bounded("smtp-source-html", &mut cmd, &dir, Duration::from_secs(150))
        })
    };
    let mut cmd = Command::new(&source);
    cmd.args(["-s", "2", "-m", &PLAIN_N.to_string(), "-M", "source.test"])
        .args(["-f", "bulk@internet.example", "-t", &rcpt])
        .args(["-l", "3000", "-S", "generated payload"])
        .arg(&target);
    let plain = run_bounded(
        "smtp-source-plain",
        &mut cmd,
        tmp.path(),
        Duration::from_secs(150),
    );
    let html = html_run.join().unwrap();
    assert!(
        html.status.success(),
        "smtp-source -F: {}\n--- mugaika log\n{}",
        html.text(),
        mugaika.log()
    );
    assert!(plain.status.success(), "smtp-source -l: {}", plain.text());

    let n = HTML_N + PLAIN_N;
    mugaika.expect_queue_empty(Duration::from_secs(120));
    sink.expect_count(n, Duration::from_secs(30), Duration::from_millis(500));

    let messages = sink.messages();
    let mut quarantine_ids = std::collections::HashSet::new();
    let (mut html_seen, mut plain_seen) = (0, 0);
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    for m in &messages {
        let what = m.file.display().to_string();
        assert_eq!(m.helo, "mugaika.test", "{what}");
        assert_eq!(m.rcpts, [rcpt.as_str()], "{what}");
        let clean = check_clean(&m.data, &what);
        *statuses.entry(clean.status.clone()).or_default() += 1;
        let received = our_received(&m.data);
        assert!(
            received.starts_with("from source.test ([127.0.0.1]) by mugaika.test"),
            "{what}: {received}"
        );
        assert_eq!(
            received_fields(&m.data).len(),
            1,
            "{what}: foreign Received"
        );
        let qid = String::from_utf8_lossy(&m.data)
            .lines()
            .find_map(|l| l.strip_prefix("X-Mugaika-Quarantine-Id: "))
            .map(|s| s.trim().to_string())
            .unwrap();
        assert!(
            quarantine_ids.insert(qid),
            "{what}: a message delivered twice"
        );
        match m.mail_from.as_str() {
            "sender0@partner.example.co.jp" => {
                html_seen += 1;
                assert!(
                    clean.subject.starts_with("メールマガジン 第"),
                    "{what}: {}",
                    clean.subject
                );
                assert_text_kept(&clean, GENMAIL_PHRASE, &what);
                // Nothing of the HTML's script survives (checked in check_clean).
            }
            "bulk@internet.example" => {
                plain_seen += 1;
                assert_eq!(clean.subject, "generated payload", "{what}");
            }
            other => panic!("{what}: unexpected sender {other}"),
        }
    }
    assert_eq!((html_seen, plain_seen), (HTML_N, PLAIN_N));
    eprintln!("smtp-source → mugaika → smtp-sink: {n} messages, X-Mugaika-Status {statuses:?}");

    // Python's own parser agrees that every delivered message keeps the invariants.
    let files = write_messages(&messages, &tmp.path().join("delivered"));
    checkmail(&files, tmp.path());

    // SIGTERM drains and exits cleanly with an empty queue.
    let status = mugaika.stop(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "mugaika serve after SIGTERM: {status:?}\n{}",
        mugaika.log()
    );
}

// ---------------------------------------------------------------------------------------------
// 2. swaks

/// Runs swaks against `server` with the given extra arguments.
fn swaks(bin: &PathBuf, server: &str, args: &[&str], dir: &std::path::Path, name: &str) -> Run {
    let mut cmd = Command::new(bin);
    cmd.args([
        "--server",
        server,
        "--helo",
        "swaks.test",
        "--timeout",
        "20",
    ])
    .args(args);
    run_bounded(name, &mut cmd, dir, Duration::from_secs(60))
}

/// Whether `swaks --support` reports TLS.
fn swaks_has_tls(bin: &PathBuf, dir: &std::path::Path) -> bool {
    let mut cmd = Command::new(bin);
    cmd.arg("--support");
    let run = run_bounded("swaks-support", &mut cmd, dir, Duration::from_secs(30));
    format!("{}{}", run.stdout, run.stderr).contains("=== TLS supported")
}

#[test]
fn swaks_plain_pipelined_starttls_and_refused_recipients() {
    let Some(bin) = peer("swaks") else {
        return;
    };
    let tmp = shared_tempdir();
    let Some(sink) = SmtpSink::start(tmp.path()) else {
        return;
    };
    let (cert, key) = tls_files(tmp.path());
    let mut cfg = ServeConfig::new(sink.addr, &[RELAY_DOMAIN]);
    cfg.tls = Some((cert, key));
    cfg.sanitize.push("links = \"defang\"".into());
    let mugaika = Mugaika::start(&tmp.path().join("mugaika"), &cfg);
    let server = mugaika.addr.to_string();
    let from = "alice@internet.example";

    // Plain, pipelined and STARTTLS: each one HTML mail to its own recipient.
    let mut modes: Vec<(&str, &[&str])> = vec![("plain", &[]), ("pipeline", &["--pipeline"])];
    // swaks speaks TLS only with Net::SSLeay, a Recommends of the Debian package.
    if swaks_has_tls(&bin, tmp.path()) {
        modes.push(("tls", &["--tls"]));
    } else {
        skip("swaks has no TLS support (install libnet-ssleay-perl): STARTTLS not tested");
    }
    let mut expected: Vec<&str> = modes.iter().map(|m| m.0).chain(["mixed"]).collect();
    expected.sort();
    for &(mode, extra) in &modes {
        let to = format!("{mode}@{RELAY_DOMAIN}");
        let file = tmp.path().join(format!("{mode}.eml"));
        fs::write(&file, html_mail(from, &to, mode)).unwrap();
        let data = format!("@{}", file.display());
        let mut args = vec!["--from", from, "--to", &to, "--data", &data];
        args.extend_from_slice(extra);
        let run = swaks(&bin, &server, &args, tmp.path(), &format!("swaks-{mode}"));
        assert!(
            run.status.success(),
            "swaks {mode}: {}\n{}",
            run.text(),
            mugaika.log()
        );
        assert!(
            run.stdout.contains("<-  250 2.0.0 Ok: queued as ")
                || run.stdout.contains("<~  250 2.0.0 Ok: queued as "),
            "swaks {mode}: no 250 after DATA\n{}",
            run.stdout
        );
        if mode == "tls" {
            assert!(
                run.stdout.contains("<-  220 2.0.0") && run.stdout.contains("TLS started"),
                "swaks --tls did not start TLS:\n{}",
                run.stdout
            );
        }
    }

    // A recipient outside relay_domains: 550 5.7.1 at RCPT, nothing sent.
    let file = tmp.path().join("outside.eml");
    fs::write(&file, html_mail(from, "x@elsewhere.example", "outside")).unwrap();
    let data = format!("@{}", file.display());
    let run = swaks(
        &bin,
        &server,
        &[
            "--from",
            from,
            "--to",
            "x@elsewhere.example",
            "--data",
            &data,
        ],
        tmp.path(),
        "swaks-outside",
    );
    assert!(
        !run.status.success(),
        "relaying to elsewhere.example: {}",
        run.text()
    );
    assert!(
        run.stdout.contains("<** 550 5.7.1"),
        "expected 550 5.7.1 for x@elsewhere.example:\n{}",
        run.stdout
    );
    assert!(!run.stdout.contains(" -> DATA"), "{}", run.stdout);

    // Mixed: the outside recipient refused, the message delivered to the other one only.
    let to = format!("mixed@{RELAY_DOMAIN},y@elsewhere.example");
    let file = tmp.path().join("mixed.eml");
    fs::write(
        &file,
        html_mail(from, &format!("mixed@{RELAY_DOMAIN}"), "mixed"),
    )
    .unwrap();
    let data = format!("@{}", file.display());
    let run = swaks(
        &bin,
        &server,
        &["--from", from, "--to", &to, "--data", &data],
        tmp.path(),
        "swaks-mixed",
    );
    assert!(
        run.stdout.contains("<** 550 5.7.1") && run.stdout.contains("250 2.0.0 Ok: queued as "),
        "mixed recipients:\n{}",
        run.stdout
    );

    mugaika.expect_queue_empty(Duration::from_secs(60));
    sink.expect_count(
        expected.len(),
        Duration::from_secs(20),
        Duration::from_millis(500),
    );
    let mut seen = Vec::new();
    for m in sink.messages() {
        let what = format!("{} ({:?})", m.file.display(), m.rcpts);
        assert_eq!(m.mail_from, from, "{what}");
        assert_eq!(m.rcpts.len(), 1, "{what}: refused recipient delivered");
        let rcpt = m.rcpts[0].clone();
        let mode = rcpt.split('@').next().unwrap().to_string();
        assert!(
            rcpt.ends_with(&format!("@{RELAY_DOMAIN}")),
            "{what}: delivered outside relay_domains"
        );
        let clean = check_clean(&m.data, &what);
        assert!(
            !clean.headers.iter().any(|h| h == "x-mailer"),
            "{what}: X-Mailer passed"
        );
        assert_eq!(clean.subject, format!("お知らせ {mode}"), "{what}");
        let received = our_received(&m.data);
        assert!(
            received.starts_with("from swaks.test ([127.0.0.1]) by mugaika.test"),
            "{what}: {received}"
        );
        let proto = if mode == "tls" {
            "with ESMTPS"
        } else {
            "with ESMTP "
        };
        assert!(received.contains(proto), "{what}: {received}");
        assert_text_kept(&clean, PHRASE, &what);
        // links = "defang": the target is shown but cannot be clicked.
        assert!(
            clean.text.contains("hxxp://phish[.]example/login"),
            "{what}: link not defanged:\n{}",
            clean.text
        );
        assert!(!clean.text.contains("http://phish.example"), "{what}");
        assert!(!clean.text.contains("tracker.example/p.gif"), "{what}");
        seen.push(mode);
    }
    seen.sort();
    assert_eq!(seen, expected);
    let files = write_messages(&sink.messages(), &tmp.path().join("delivered"));
    checkmail(&files, tmp.path());
}

// ---------------------------------------------------------------------------------------------
// 3. Postfix → mugaika → Postfix

#[test]
fn postfix_upstream_and_downstream() {
    let Some(swaks_bin) = peer("swaks") else {
        return;
    };
    let tmp = shared_tempdir();
    let Some(sink) = SmtpSink::start(tmp.path()) else {
        return;
    };
    let (cert, key) = tls_files(tmp.path());

    // The LGWAN side: Postfix relaying everything to the sink, offering STARTTLS.
    let downstream_extra = vec![
        format!("relay_domains = {RELAY_DOMAIN}"),
        format!("smtpd_tls_cert_file = {}", cert.display()),
        format!("smtpd_tls_key_file = {}", key.display()),
        "smtpd_tls_security_level = may".to_string(),
        "smtpd_tls_received_header = yes".to_string(),
    ];
    let Some(downstream) = Postfix::start(
        &tmp.path().join("postfix-down"),
        "downstream",
        &format!("[127.0.0.1]:{}", sink.addr.port()),
        &downstream_extra,
    ) else {
        return;
    };

    let mut cfg = ServeConfig::new(downstream.addr, &[RELAY_DOMAIN]);
    cfg.tls = Some((cert.clone(), key.clone()));
    cfg.delivery.push("tls = \"opportunistic\"".into());
    let mugaika = Mugaika::start(&tmp.path().join("mugaika"), &cfg);

    // The Internet side: Postfix relaying to mugaika, TLS required (as a relayhost would be
    // configured across a network boundary).
    let upstream_extra = vec![
        format!("relay_domains = {RELAY_DOMAIN}"),
        "smtp_tls_security_level = encrypt".to_string(),
    ];
    let Some(upstream) = Postfix::start(
        &tmp.path().join("postfix-up"),
        "upstream",
        &format!("[127.0.0.1]:{}", mugaika.addr.port()),
        &upstream_extra,
    ) else {
        return;
    };

    let from = "alice@internet.example";
    let to = format!("shimin@{RELAY_DOMAIN}");
    let file = tmp.path().join("postfix.eml");
    fs::write(&file, html_mail(from, &to, "postfix")).unwrap();
    let data = format!("@{}", file.display());
    let run = swaks(
        &swaks_bin,
        &upstream.addr.to_string(),
        &["--from", from, "--to", &to, "--data", &data],
        tmp.path(),
        "swaks-postfix",
    );
    assert!(
        run.status.success(),
        "swaks → upstream Postfix: {}\n{}",
        run.text(),
        upstream.log()
    );

    let diagnose = || {
        format!(
            "--- upstream\n{}\n--- mugaika\n{}\n--- downstream\n{}",
            upstream.log(),
            mugaika.log(),
            downstream.log()
        )
    };
    let arrived = wait_until(Duration::from_secs(60), || sink.count() >= 1);
    assert!(arrived, "nothing reached the sink\n{}", diagnose());
    // Every queue empty, and still one message a moment later: delivered once.
    let drained = wait_until(Duration::from_secs(30), || {
        upstream.queued() == 0 && downstream.queued() == 0 && mugaika.queue_len() == 0
    });
    assert!(drained, "queues not empty\n{}", diagnose());
    std::thread::sleep(Duration::from_secs(2));
    let messages = sink.messages();
    assert_eq!(messages.len(), 1, "delivered once\n{}", diagnose());
    let m = &messages[0];
    assert_eq!(m.helo, "downstream.test");
    assert_eq!(m.mail_from, from);
    assert_eq!(m.rcpts, [to.as_str()]);

    // Downstream's Received on top, then ours; the upstream's own was not passed through.
    let received = received_fields(&m.data);
    assert_eq!(received.len(), 2, "{received:#?}");
    assert!(
        received[0].contains("by downstream.test") && received[0].contains("(using TLS"),
        "mugaika → downstream Postfix without TLS: {}",
        received[0]
    );
    assert!(
        received[1].starts_with("from upstream.test ([127.0.0.1]) by mugaika.test")
            && received[1].contains("with ESMTPS"),
        "upstream Postfix → mugaika without TLS: {}",
        received[1]
    );
    // Postfix adds nothing of its own that the clean-message check would refuse.
    let clean = check_clean(&m.data, "postfix chain");
    assert_eq!(clean.subject, "お知らせ postfix");
    assert!(!clean.headers.iter().any(|h| h == "x-mailer"));
    assert_text_kept(&clean, PHRASE, "postfix chain");
    eprintln!(
        "swaks → Postfix → mugaika → Postfix → smtp-sink: 1 message, X-Mugaika-Status {}",
        clean.status
    );
    let files = write_messages(&messages, &tmp.path().join("delivered"));
    checkmail(&files, tmp.path());
}

// ---------------------------------------------------------------------------------------------
// 4. SMTP smuggling through the real server to a real next hop

#[test]
fn smuggling_cases_never_reach_the_next_hop_as_a_second_message() {
    let Some(dir) = corpus("smtp-smuggling-cases") else {
        return;
    };
    let tmp = shared_tempdir();
    let Some(sink) = SmtpSink::start(tmp.path()) else {
        return;
    };
    let mugaika = Mugaika::start(
        &tmp.path().join("mugaika"),
        &ServeConfig::new(sink.addr, &["relay.example"]),
    );
    let cases: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("cases.json")).unwrap()).unwrap();
    let cases = cases.as_array().expect("cases.json is a list");
    assert!(cases.len() >= 13, "cases.json shrank: {}", cases.len());

    let mut expected_total = 0;
    for case in cases {
        let file = case["file"].as_str().expect("case file");
        let stream = fs::read(dir.join(file)).unwrap();
        let fake = case["fake_end_of_data"].as_str().map(str::as_bytes);
        // A NUL beside the dot is not an end of data: the whole stream is one message.
        let one_message = fake.is_none_or(|f| f.contains(&0));
        for piece in [stream.len().max(1), 1] {
            let at = format!("{file} in pieces of {piece}");
            let before = sink.count();
            let mut tcp = TcpStream::connect(mugaika.addr).unwrap();
            tcp.set_nodelay(true).unwrap();
            for chunk in stream.chunks(piece) {
                tcp.write_all(chunk).unwrap();
            }
            let replies = read_all(&mut tcp, Duration::from_secs(30));
            let replies = String::from_utf8_lossy(&replies).into_owned();
            let codes: Vec<&str> = replies
                .split("\r\n")
                .filter(|l| l.len() >= 4 && l.as_bytes()[3] == b' ')
                .map(|l| &l[..3])
                .collect();
            assert_eq!(
                codes.iter().filter(|&&c| c == "354").count(),
                1,
                "{at}: {replies}"
            );
            assert_eq!(codes.last(), Some(&"221"), "{at}: {replies}");
            mugaika.expect_queue_empty(Duration::from_secs(30));
            // The queue is empty only once the sink said 250: what it has now is final.
            let new = sink.count() - before;
            let want = usize::from(one_message);
            assert_eq!(
                new, want,
                "{at}: messages at the next hop; replies {codes:?}"
            );
            expected_total += want;
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let messages = sink.messages();
    assert_eq!(messages.len(), expected_total);
    for m in &messages {
        let what = m.file.display().to_string();
        assert_eq!(
            m.mail_from, "sender@client.example",
            "{what}: smuggled sender"
        );
        assert_eq!(m.rcpts, ["victim@relay.example"], "{what}");
        let clean = check_clean(&m.data, &what);
        assert_ne!(clean.subject, "SMUGGLED", "{what}");
        assert!(
            ["control", "first message"].contains(&clean.subject.as_str()),
            "{what}: Subject {:?}",
            clean.subject
        );
        // The top-level From is the first message's; admin@relay.example may only appear as
        // text of the one message (the NUL cases), never as a header.
        assert!(
            !head(&m.data).contains("admin@relay.example"),
            "{what}: smuggled header"
        );
    }
    eprintln!(
        "smuggling: {} cases x 2 feeds, {expected_total} messages at the sink, none smuggled",
        cases.len()
    );
}

// ---------------------------------------------------------------------------------------------
// The checks themselves must be able to fail.

#[test]
fn the_checks_refuse_what_they_must() {
    let refused = |data: Vec<u8>| {
        std::panic::catch_unwind(|| {
            check_clean(&data, "self-test");
        })
        .is_err()
    };
    // The raw HTML mail: text/html, X-Mailer, no status.
    assert!(refused(html_mail("a@b.example", "c@d.example", "raw")));
    let clean = |extra: &str, ctype: &str, body: &str| {
        format!(
            "Received: from x ([127.0.0.1]) by mugaika.test (mugaika) with ESMTP id 1\r\n\
             From: a@b.example\r\nSubject: s\r\n{extra}MIME-Version: 1.0\r\n\
             Content-Type: {ctype}\r\nX-Mugaika-Status: sanitized\r\n\
             X-Mugaika-Quarantine-Id: 1\r\n\r\n{body}\r\n"
        )
        .into_bytes()
    };
    let ok = check_clean(&clean("", "text/plain; charset=UTF-8", "本文"), "self-test");
    assert_eq!((ok.status.as_str(), ok.text.trim()), ("sanitized", "本文"));
    assert!(refused(clean("X-Mailer: m\r\n", "text/plain", "x")));
    assert!(refused(clean("", "text/html", "<p>x</p>")));
    assert!(refused(clean("", "text/plain", "<script>x</script>")));
    assert!(refused(clean("Subject: =?x?\u{e9}\r\n", "text/plain", "x")));
    let multi = "multipart/alternative; boundary=b";
    let body = "--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b\r\nContent-Type: text/html\r\n\r\n\
                <b>x</b>\r\n--b--";
    assert!(refused(clean("", multi, body)));

    // A dump as smtp-sink writes it: its records, its three-line Received, the message (LF),
    // one empty line.
    let dump = "X-Client-Addr: 127.0.0.1\nX-Client-Proto: ESMTP\nX-Helo-Args: mugaika.test\n\
                X-Mail-Args: <a@b.example> BODY=8BITMIME\nX-Rcpt-Args: <u@c.example>\n\
                X-Rcpt-Args: <v@c.example> NOTIFY=NEVER\nReceived: from mugaika.test ([127.0.0.1])\n\
                \tby sink.test (smtp-sink) with ESMTP id 1;\n\tSun, 22 Nov 2026 00:05:57 +0000 (UTC)\n\
                Subject: t\n\nline\n.dot\n\n";
    let m = SinkMessage::parse("dump".into(), dump.as_bytes());
    assert_eq!(m.helo, "mugaika.test");
    assert_eq!(m.mail_from, "a@b.example");
    assert_eq!(m.rcpts, ["u@c.example", "v@c.example"]);
    assert_eq!(m.data, b"Subject: t\r\n\r\nline\r\n.dot\r\n");
}
