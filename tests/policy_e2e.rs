//! Policies through the real SMTP path (issue 7): one message to two recipients under
//! different `[[policy]]` rules becomes two clean messages, each delivered once to its own
//! recipient; a first-contact sender gets the first-contact rule once, and the ordinary rules
//! afterwards (the quarantine index remembers the sender).

mod common;

use std::time::Duration;

use common::{Mugaika, ServeConfig, SmtpSink};

const FINANCE: &str = "keiri@city.example.lg.jp";
const STAFF: &str = "staff@city.example.lg.jp";

fn html_with_link(from: &str, subject: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {FINANCE}, {STAFF}\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}@example.com>\r\nDate: Sun, 22 Nov 2026 03:00:00 +0900\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
         <p>Invoice ready: <a href=\"https://billing.example.com/inv/42\">open the invoice</a></p>\r\n"
    )
    .into_bytes()
}

fn header<'a>(data: &'a str, name: &str) -> Option<&'a str> {
    data.split("\r\n\r\n")
        .next()?
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
}

#[test]
fn two_recipients_under_two_rules_get_two_clean_messages_once_each() {
    let tmp = common::shared_tempdir();
    let Some(sink) = SmtpSink::start(tmp.path()) else {
        return;
    };
    let mut cfg = ServeConfig::new(sink.addr, &["city.example.lg.jp"]);
    cfg.sanitize.push("links = \"remove\"".into());
    cfg.extra = format!(
        "\n[[policy]]\nname = \"finance\"\nrecipient = [\"{FINANCE}\"]\n\
         [policy.sanitize]\nlinks = \"show\"\nsubject_tag = \"[finance]\"\n"
    );
    let relay = Mugaika::start(&tmp.path().join("relay"), &cfg);
    let code = common::smtp_send(
        relay.addr,
        "billing@supplier.example",
        &[FINANCE, STAFF],
        &html_with_link("billing@supplier.example", "invoice-42"),
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("transaction failed: {e}\n{}", relay.log()));
    assert_eq!(code, 250);
    sink.expect_count(2, Duration::from_secs(30), Duration::from_millis(800));
    let msgs = sink.messages();
    let finance: Vec<_> = msgs.iter().filter(|m| m.rcpts == [FINANCE]).collect();
    let staff: Vec<_> = msgs.iter().filter(|m| m.rcpts == [STAFF]).collect();
    assert_eq!(
        (finance.len(), staff.len()),
        (1, 1),
        "one message per recipient: {:?}",
        msgs.iter().map(|m| &m.rcpts).collect::<Vec<_>>()
    );
    let f = String::from_utf8_lossy(&finance[0].data).into_owned();
    let s = String::from_utf8_lossy(&staff[0].data).into_owned();
    assert_eq!(header(&f, "Subject"), Some("[finance] invoice-42"));
    assert_eq!(header(&s, "Subject"), Some("invoice-42"));
    // Both are clean messages of the same original, under different link policies.
    let cf = common::check_clean(&finance[0].data, "finance copy");
    let cs = common::check_clean(&staff[0].data, "staff copy");
    assert!(
        cf.text.contains("https://billing.example.com/inv/42"),
        "links = show keeps the URL visible:\n{}",
        cf.text
    );
    assert!(cf.text.contains("open the invoice"));
    assert!(
        !cs.text.contains("billing.example.com"),
        "links = remove drops the URL:\n{}",
        cs.text
    );
    assert!(cs.text.contains("open the invoice"));
    assert_eq!(
        header(&f, "X-Mugaika-Quarantine-Id"),
        header(&s, "X-Mugaika-Quarantine-Id"),
        "one original, one quarantine id"
    );
    let log = std::fs::read_to_string(relay.dir.join("mugaika.log")).unwrap_or_default();
    assert!(
        log.contains(&format!("finance:{FINANCE};default:{STAFF}")),
        "the audit record names the rule per recipient:\n{log}"
    );
}

#[test]
fn a_first_contact_gets_the_first_contact_rule_once() {
    let tmp = common::shared_tempdir();
    let Some(sink) = SmtpSink::start(tmp.path()) else {
        return;
    };
    let mut cfg = ServeConfig::new(sink.addr, &["city.example.lg.jp"]);
    cfg.extra = "\n[policies]\nfirst_contact_days = 90\nfirst_contact_policy = \"first\"\n\
         \n[[policy]]\nname = \"first\"\n[policy.sanitize]\nsubject_tag = \"[first-contact]\"\n\
         [policy.sanitize.attachments]\nimage = \"quarantine\"\npdf = \"quarantine\"\n\
         office = \"quarantine\"\narchive = \"quarantine\"\ntext = \"quarantine\"\n"
        .to_string();
    let relay = Mugaika::start(&tmp.path().join("relay"), &cfg);
    let send = |from: &str, subject: &str| {
        let code = common::smtp_send(
            relay.addr,
            from,
            &[STAFF],
            &html_with_link(from, subject),
            Duration::from_secs(30),
        )
        .unwrap_or_else(|e| panic!("transaction failed: {e}\n{}", relay.log()));
        assert_eq!(code, 250);
    };
    send("new@partner.example", "one");
    sink.expect_count(1, Duration::from_secs(30), Duration::from_millis(300));
    send("new@partner.example", "two");
    sink.expect_count(2, Duration::from_secs(30), Duration::from_millis(300));
    send("other@partner.example", "three");
    sink.expect_count(3, Duration::from_secs(30), Duration::from_millis(500));
    for m in sink.messages() {
        let d = String::from_utf8_lossy(&m.data).into_owned();
        let first = header(&d, "Subject").is_some_and(|s| s.starts_with("[first-contact]"));
        let text = common::check_clean(&m.data, "first-contact copy").text;
        assert_eq!(
            text.contains("初回送信者向けの厳格な無害化ポリシーを適用しました"),
            first,
            "the notice says when the first-contact rule applied:\n{text}"
        );
    }
    let subjects: Vec<String> = sink
        .messages()
        .iter()
        .map(|m| {
            let d = String::from_utf8_lossy(&m.data).into_owned();
            header(&d, "Subject").unwrap_or("").to_string()
        })
        .collect();
    let mut sorted = subjects.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["[first-contact] one", "[first-contact] three", "two"],
        "first mail of each sender under the first-contact rule, the second not"
    );
}
