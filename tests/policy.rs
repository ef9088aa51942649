//! Policy rules: table-driven tests of matching (sender forms, domains, wildcards, the null
//! sender, recipient lists, client networks, trusted and untrusted authentication verdicts,
//! sizes, first contact), of overrides (merged onto the global `[sanitize]`, validated, errors
//! naming the rule; no action passes an attachment uninspected), of grouping and of the
//! shadowed-rule warnings.

use std::net::IpAddr;

use mugaika::config::{AttachmentAction, Config, LinkPolicy, OutputCharset};
use mugaika::policy::{auth_results, AuthResult, Facts, Policies};

const RULES: &str = r#"
[server]
hostname = "mugaika.test"
[sanitize]
links = "show"
subject_tag = "[global]"
[sanitize.attachments]
office = "remove"

[policies]
trusted_authserv_ids = ["mx.city.example.lg.jp"]
first_contact_policy = "first"

[[policy]]
name = "first"
[policy.sanitize.attachments]
office = "quarantine"
pdf = "quarantine"

[[policy]]
name = "bounces"
sender = ["<>"]
[policy.sanitize]
subject_tag = "[bounce]"

[[policy]]
name = "exact"
sender = ["Billing@Supplier.co.jp"]
[policy.sanitize]
links = "keep"

[[policy]]
name = "domain"
sender = ["@vendor.example", "other.example"]
recipient = ["keiri@city.example.lg.jp", "@kaikei.city.example.lg.jp"]
[policy.sanitize]
output_charset = "iso-2022-jp"

[[policy]]
name = "wild"
sender = ["*.partner.example", "*@*.go.jp"]
[policy.sanitize.attachments]
office = "disarm"

[[policy]]
name = "net"
client = ["203.0.113.0/24", "2001:db8::/32"]
[policy.sanitize]
links = "defang"

[[policy]]
name = "dmarc"
authenticated = ["dmarc=pass", "dkim=pass header.d=signed.example"]
[policy.sanitize]
links = "remove"

[[policy]]
name = "big"
min_size = "1MiB"
max_size = "10MiB"
[policy.sanitize]
subject_tag = "[big]"
"#;

fn policies() -> Policies {
    let cfg = Config::parse(RULES).unwrap_or_else(|e| panic!("{e}"));
    Policies::new(&cfg).unwrap()
}

struct Case {
    sender: &'static str,
    recipient: &'static str,
    client: Option<&'static str>,
    size: u64,
    auth: &'static str,
    first: bool,
    expect: Option<&'static str>,
}

const fn case(sender: &'static str, recipient: &'static str, expect: Option<&'static str>) -> Case {
    Case {
        sender,
        recipient,
        client: None,
        size: 1000,
        auth: "",
        first: false,
        expect,
    }
}

const TRUSTED_AR: &str = "Received: from mx by relay\r\n\
Authentication-Results: mx.city.example.lg.jp; spf=pass smtp.mailfrom=a@signed.example;\r\n \
dkim=pass (good) header.d=Signed.Example; dmarc=pass header.from=signed.example\r\n\
Received: from outside by mx\r\n\r\n";

const DMARC_ONLY_AR: &str =
    "Authentication-Results: mx.city.example.lg.jp; dmarc=pass header.from=x.example\r\n\r\n";

const UNTRUSTED_AR: &str =
    "Authentication-Results: evil.example; dkim=pass header.d=signed.example; \
dmarc=pass\r\n\r\n";

/// A trusted id, but below the upstream's boundary: forged by the sender.
const FORGED_AR: &str = "Received: by relay\r\n\
Authentication-Results: mx.city.example.lg.jp; spf=fail\r\n\
Received: from outside by mx\r\n\
Authentication-Results: mx.city.example.lg.jp; dkim=pass header.d=signed.example; dmarc=pass\r\n\r\n";

#[test]
fn matching_table() {
    let p = policies();
    let table = [
        // Exact address, case-insensitive both sides, angle brackets tolerated.
        case(
            "billing@supplier.co.jp",
            "a@city.example.lg.jp",
            Some("exact"),
        ),
        case(
            "<BILLING@supplier.CO.JP>",
            "a@city.example.lg.jp",
            Some("exact"),
        ),
        case("billing2@supplier.co.jp", "a@city.example.lg.jp", None),
        case("billing@sub.supplier.co.jp", "a@city.example.lg.jp", None),
        // Domain: "@vendor.example" and bare "other.example", exact domain, and a recipient list.
        case(
            "x@vendor.example",
            "keiri@city.example.lg.jp",
            Some("domain"),
        ),
        case(
            "x@other.example",
            "KEIRI@city.example.lg.jp",
            Some("domain"),
        ),
        case(
            "x@vendor.example",
            "y@kaikei.city.example.lg.jp",
            Some("domain"),
        ),
        case("x@vendor.example", "soumu@city.example.lg.jp", None),
        case("x@vendor.example", "y@sub.kaikei.city.example.lg.jp", None),
        case("x@sub.vendor.example", "keiri@city.example.lg.jp", None),
        // Wildcards.
        case("x@a.partner.example", "z@c.example", Some("wild")),
        case("x@a.b.partner.example", "z@c.example", Some("wild")),
        case("x@partner.example", "z@c.example", None),
        case("x@soumu.go.jp", "z@c.example", Some("wild")),
        case("x@go.jp", "z@c.example", None),
        // The null sender: only "<>" matches it.
        case("", "z@c.example", Some("bounces")),
        case("<>", "z@c.example", Some("bounces")),
        case("postmaster@c.example", "z@c.example", None),
        // Clients.
        Case {
            client: Some("203.0.113.9"),
            ..case("a@b.example", "z@c.example", Some("net"))
        },
        Case {
            client: Some("::ffff:203.0.113.9"),
            ..case("a@b.example", "z@c.example", Some("net"))
        },
        Case {
            client: Some("2001:db8::25"),
            ..case("a@b.example", "z@c.example", Some("net"))
        },
        Case {
            client: Some("198.51.100.1"),
            ..case("a@b.example", "z@c.example", None)
        },
        // Authentication: trusted verdicts with the required property; untrusted, partial and
        // forged ones do not count.
        Case {
            auth: TRUSTED_AR,
            ..case("a@b.example", "z@c.example", Some("dmarc"))
        },
        Case {
            auth: DMARC_ONLY_AR,
            ..case("a@b.example", "z@c.example", None)
        },
        Case {
            auth: UNTRUSTED_AR,
            ..case("a@b.example", "z@c.example", None)
        },
        Case {
            auth: FORGED_AR,
            ..case("a@b.example", "z@c.example", None)
        },
        // Sizes, inclusive.
        Case {
            size: 1 << 20,
            ..case("a@b.example", "z@c.example", Some("big"))
        },
        Case {
            size: 10 << 20,
            ..case("a@b.example", "z@c.example", Some("big"))
        },
        Case {
            size: (10 << 20) + 1,
            ..case("a@b.example", "z@c.example", None)
        },
        Case {
            size: (1 << 20) - 1,
            ..case("a@b.example", "z@c.example", None)
        },
        // First match wins: an exact sender from a listed network is "exact", not "net".
        Case {
            client: Some("203.0.113.9"),
            ..case("billing@supplier.co.jp", "z@c.example", Some("exact"))
        },
        // First contact: the named rule before every other, and never otherwise.
        Case {
            first: true,
            ..case("billing@supplier.co.jp", "z@c.example", Some("first"))
        },
    ];
    for (i, c) in table.iter().enumerate() {
        let auth = auth_results(c.auth.as_bytes(), p.trusted_authserv_ids());
        let client: Option<IpAddr> = c.client.map(|s| s.parse().unwrap());
        let f = Facts {
            sender: c.sender,
            recipient: c.recipient,
            client,
            size: c.size,
            auth: &auth,
            first_contact: c.first,
        };
        let r = p.resolve(&f);
        assert_eq!(
            r.rule.as_deref(),
            c.expect,
            "case {i}: sender {:?} recipient {:?} client {:?}: why {:?}",
            c.sender,
            c.recipient,
            c.client,
            r.why
        );
        assert_eq!(r.first_contact, c.first, "case {i}");
        assert!(!r.why.is_empty(), "case {i}: a reason is always given");
    }
}

#[test]
fn authentication_results_are_taken_from_trusted_ids_above_the_boundary() {
    let trusted = vec!["mx.city.example.lg.jp".to_string()];
    let r = auth_results(TRUSTED_AR.as_bytes(), &trusted);
    let methods: Vec<&str> = r.iter().map(|a| a.method.as_str()).collect();
    assert_eq!(methods, ["spf", "dkim", "dmarc"]);
    assert_eq!(r[1].props, [("header.d".into(), "signed.example".into())]);
    // Only the field above the boundary: spf=fail, not the forged pass below.
    let r = auth_results(FORGED_AR.as_bytes(), &trusted);
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].method.as_str(), r[0].result.as_str()),
        ("spf", "fail")
    );
    assert!(auth_results(UNTRUSTED_AR.as_bytes(), &trusted).is_empty());
    // No trusted ids: nothing is believed.
    assert!(auth_results(TRUSTED_AR.as_bytes(), &[]).is_empty());
    // The body is never read: a field after the empty line does not count.
    let body = "Subject: x\r\n\r\nAuthentication-Results: mx.city.example.lg.jp; dmarc=pass\r\n";
    assert!(auth_results(body.as_bytes(), &trusted).is_empty());
    // Case of the authserv-id and LF line ends do not matter; hostile bytes do not panic.
    let lf = "authentication-results: MX.City.Example.LG.JP; dmarc=pass\n\n";
    assert_eq!(auth_results(lf.as_bytes(), &trusted).len(), 1);
    for junk in [
        &b"Authentication-Results: ((((\xff;;==;"[..],
        b"\xff\xfe:",
        b":",
        b"",
    ] {
        let _: Vec<AuthResult> = auth_results(junk, &trusted);
    }
}

#[test]
fn overrides_are_merged_onto_the_global_settings() {
    let p = policies();
    let get = |sender: &str, rcpt: &str| {
        p.resolve(&Facts {
            sender,
            recipient: rcpt,
            client: None,
            size: 10,
            auth: &[],
            first_contact: false,
        })
    };
    let exact = get("billing@supplier.co.jp", "z@c.example");
    assert_eq!(exact.sanitize.links, LinkPolicy::Keep);
    // Not overridden: the global values, including the global office = "remove".
    assert_eq!(exact.sanitize.subject_tag, "[global]");
    assert_eq!(exact.sanitize.attachments.office, AttachmentAction::Remove);
    assert_eq!(exact.overrides, ["links = \"keep\""]);
    let domain = get("a@vendor.example", "keiri@city.example.lg.jp");
    assert_eq!(domain.sanitize.output_charset, OutputCharset::Iso2022Jp);
    assert_eq!(domain.sanitize.links, LinkPolicy::Show);
    let wild = get("a@x.partner.example", "z@c.example");
    assert_eq!(wild.sanitize.attachments.office, AttachmentAction::Disarm);
    // Other attachment keys keep their global values (deep merge).
    assert_eq!(wild.sanitize.attachments.pdf, AttachmentAction::Disarm);
    assert_eq!(wild.sanitize.attachments.other, AttachmentAction::Remove);
    assert_eq!(wild.overrides, ["attachments.office = \"disarm\""]);
    let bounce = get("<>", "z@c.example");
    assert_eq!(bounce.sanitize.subject_tag, "[bounce]");
    let default = get("a@nowhere.example", "z@c.example");
    assert_eq!(default.rule, None);
    assert_eq!(default.sanitize.subject_tag, "[global]");
    assert!(default.overrides.is_empty());
    // Why the default: each rule's first failing condition, then the conclusion.
    assert_eq!(default.why.len(), 8, "{:?}", default.why);
    assert!(default.why[0].starts_with("rule \"bounces\": sender a@nowhere.example"));
    assert_eq!(default.why.last().unwrap(), "no rule matched");
    let none = Policies::new(&Config::default()).unwrap();
    let r = none.resolve(&Facts {
        sender: "a@b",
        recipient: "c@d",
        client: None,
        size: 1,
        auth: &[],
        first_contact: true,
    });
    assert_eq!((r.rule, r.first_contact), (None, false));
    assert_eq!(r.why, ["there are no [[policy]] rules"]);
    // with_sanitize gives the pipeline its &Config.
    let cfg = Config::parse(RULES).unwrap();
    let c2 = cfg.with_sanitize(exact.sanitize.clone());
    assert_eq!(c2.sanitize.links, LinkPolicy::Keep);
    assert_eq!(c2.server.hostname, "mugaika.test");
}

fn rule_error(rule_body: &str) -> String {
    let text = format!("[[policy]]\nname = \"bad-rule\"\n{rule_body}\n");
    match Config::parse(&text) {
        Ok(_) => panic!("accepted: {rule_body}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn invalid_rules_are_config_errors_naming_the_rule() {
    let table = [
        ("[policy.sanitize]\nlinks = \"maybe\"", "links"),
        ("[policy.sanitize]\nlink = \"keep\"", "link"),
        (
            "[policy.sanitize]\nsubject_tag = \"a\\u0007b\"",
            "subject_tag",
        ),
        ("[policy.sanitize]\njpeg_quality = 0", "jpeg_quality"),
        (
            "[policy.sanitize]\noutput_charset = \"shift_jis\"",
            "shift_jis",
        ),
        ("[policy.sanitize]\ntemp_dir = \"/tmp\"", "temp_dir"),
        (
            "[policy.sanitize]\nmemory_buffer = \"1GiB\"",
            "memory_buffer",
        ),
        ("[policy.sanitize.attachments]\npdf = \"inspect\"", "pdf"),
        ("[policy.sanitize.attachments]\nexe = \"remove\"", "exe"),
        ("[policy.sanitize]\nattachments = \"remove\"", "attachments"),
        ("sender = [\"a b@c\"]", "sender"),
        ("sender = [\"@\"]", "sender"),
        ("sender = [\"@*.example\"]", "sender"),
        ("recipient = [\"<>\"]", "recipient"),
        ("authenticated = [\"dmarc\"]", "authenticated"),
        ("authenticated = [\"dkim=pass d=x\"]", "authenticated"),
        ("min_size = \"2MiB\"\nmax_size = \"1MiB\"", "min_size"),
        ("client = [\"10.0.0.0/33\"]", ""),
        ("sendr = [\"a@b\"]", "sendr"),
    ];
    for (body, needle) in table {
        let e = rule_error(body);
        assert!(e.contains(needle), "{body:?}: {e}");
        // serde errors about the rule's own keys come from the TOML parser with a line
        // number; everything checked by the policy module names the rule.
        if !body.starts_with("client") && !body.starts_with("sendr") {
            assert!(
                e.contains("bad-rule"),
                "{body:?}: the error names the rule: {e}"
            );
        }
    }
    // Names: required, unique; first_contact_policy must name a rule.
    assert!(Config::parse("[[policy]]\nsender = [\"a@b\"]\n").is_err());
    let dup = "[[policy]]\nname = \"x\"\n[[policy]]\nname = \"x\"\n";
    assert!(Config::parse(dup)
        .unwrap_err()
        .to_string()
        .contains("\"x\""));
    let e = Config::parse("[policies]\nfirst_contact_policy = \"nobody\"\n").unwrap_err();
    assert!(e.to_string().contains("nobody"), "{e}");
}

#[test]
fn no_override_passes_an_attachment_uninspected() {
    let keys = [
        "image",
        "pdf",
        "office",
        "legacy_office",
        "text",
        "archive",
        "encrypted_archive",
        "other",
    ];
    for key in keys {
        for value in [
            "keep", "pass", "original", "none", "allow", "as-is", "inspect", "disarm",
        ] {
            let body = format!("[policy.sanitize.attachments]\n{key} = \"{value}\"");
            let text = format!("[[policy]]\nname = \"trusted\"\n{body}\n");
            if let Ok(cfg) = Config::parse(&text) {
                // Accepted only when it is one of the inspecting actions for that type.
                let p = Policies::new(&cfg).unwrap();
                let r = p.resolve(&Facts {
                    sender: "a@b",
                    recipient: "c@d",
                    client: None,
                    size: 1,
                    auth: &[],
                    first_contact: false,
                });
                assert_eq!(r.rule.as_deref(), Some("trusted"));
                let allowed = match key {
                    "archive" => ["inspect"].as_slice(),
                    "pdf" | "office" => ["disarm"].as_slice(),
                    _ => [].as_slice(),
                };
                assert!(allowed.contains(&value), "{key} = {value:?} was accepted");
            }
        }
    }
}

#[test]
fn recipients_are_grouped_by_rule() {
    let p = policies();
    let f = Facts {
        sender: "x@vendor.example",
        recipient: "",
        client: None,
        size: 100,
        auth: &[],
        first_contact: false,
    };
    let rcpts = [
        "keiri@city.example.lg.jp",
        "soumu@city.example.lg.jp",
        "a@kaikei.city.example.lg.jp",
        "jinji@city.example.lg.jp",
    ];
    let groups = p.group(&f, &rcpts);
    let shape: Vec<(Option<&str>, Vec<&str>)> = groups
        .iter()
        .map(|(r, l)| (r.rule.as_deref(), l.iter().map(String::as_str).collect()))
        .collect();
    assert_eq!(
        shape,
        [
            (
                Some("domain"),
                vec!["keiri@city.example.lg.jp", "a@kaikei.city.example.lg.jp"]
            ),
            (
                None,
                vec!["soumu@city.example.lg.jp", "jinji@city.example.lg.jp"]
            ),
        ]
    );
    // First contact: everyone under the first-contact rule, one group.
    let groups = p.group(
        &Facts {
            first_contact: true,
            ..f
        },
        &rcpts,
    );
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].0.rule.as_deref(), Some("first"));
    assert!(groups[0].0.first_contact);
    assert_eq!(groups[0].1.len(), 4);
}

fn warnings(text: &str) -> Vec<String> {
    let cfg = Config::parse(text).unwrap_or_else(|e| panic!("{e}"));
    Policies::new(&cfg).unwrap().shadowed()
}

#[test]
fn shadowed_and_unreachable_rules_are_reported() {
    // The test file itself: all reachable, first contact set up.
    assert_eq!(warnings(RULES), Vec::<String>::new());
    let base = "[policies]\nfirst_contact_days = 0\n";
    let table: [(&str, &[&str]); 9] = [
        // After a catch-all.
        (
            "[[policy]]\nname = \"all\"\n[[policy]]\nname = \"late\"\nsender = [\"a@b\"]\n",
            &["\"late\" is unreachable", "\"all\""],
        ),
        // Address within an earlier domain.
        (
            "[[policy]]\nname = \"dom\"\nsender = [\"@b.example\"]\n\
             [[policy]]\nname = \"addr\"\nsender = [\"x@B.example\"]\n",
            &["\"addr\" is shadowed by the earlier \"dom\""],
        ),
        // Subdomain wildcard within a broader wildcard.
        (
            "[[policy]]\nname = \"wide\"\nsender = [\"*.example\"]\n\
             [[policy]]\nname = \"narrow\"\nsender = [\"*.sub.example\", \"a@x.example\"]\n",
            &["\"narrow\" is shadowed"],
        ),
        // Narrower network, same sender condition.
        (
            "[[policy]]\nname = \"n8\"\nclient = [\"10.0.0.0/8\"]\n\
             [[policy]]\nname = \"n24\"\nclient = [\"10.1.2.0/24\"]\nsender = [\"a@b\"]\n",
            &["\"n24\" is shadowed by the earlier \"n8\""],
        ),
        // Sizes within.
        (
            "[[policy]]\nname = \"s\"\nmax_size = \"10MiB\"\n\
             [[policy]]\nname = \"t\"\nmin_size = \"1MiB\"\nmax_size = \"2MiB\"\n",
            &["\"t\" is shadowed"],
        ),
        // More auth conditions than the earlier rule: shadowed.
        (
            "[[policy]]\nname = \"d\"\nauthenticated = [\"dmarc=pass\"]\n\
             [[policy]]\nname = \"dd\"\nauthenticated = [\"dmarc=pass\", \"spf=pass\"]\n\
             [policies]\ntrusted_authserv_ids = [\"mx\"]\nfirst_contact_days = 0\n",
            &["\"dd\" is shadowed"],
        ),
        // Authenticated conditions without trusted ids.
        (
            "[[policy]]\nname = \"auth\"\nauthenticated = [\"dmarc=pass\"]\n",
            &["\"auth\" never matches", "trusted_authserv_ids"],
        ),
        // First contact named but disabled.
        (
            "[[policy]]\nname = \"fc\"\n[policies]\nfirst_contact_policy = \"fc\"\nfirst_contact_days = 0\n",
            &["first_contact_days = 0"],
        ),
        // First contact days without a first-contact rule, once rules are in use (the
        // built-in defaults, with no rules, check clean).
        (
            "[[policy]]\nname = \"x\"\nsender = [\"@a.example\"]\n[policies]\nfirst_contact_days = 30\n",
            &["first_contact_policy names no rule"],
        ),
    ];
    for (text, needles) in table {
        let text = if text.contains("[policies]") {
            text.to_string()
        } else {
            format!("{base}{text}")
        };
        let w = warnings(&text);
        assert_eq!(w.len(), 1, "{text}: {w:?}");
        for n in needles {
            assert!(w[0].contains(n), "{text}: {w:?} lacks {n}");
        }
    }
    // Not shadowed: different senders, a broader later rule, disjoint networks, a later rule
    // with fewer conditions, and the first-contact rule (outside the ordinary order).
    let fine = [
        "[[policy]]\nname = \"a\"\nsender = [\"a@b\"]\n[[policy]]\nname = \"b\"\nsender = [\"c@b\"]\n",
        "[[policy]]\nname = \"a\"\nsender = [\"a@b\"]\n[[policy]]\nname = \"b\"\nsender = [\"@b\"]\n",
        "[[policy]]\nname = \"a\"\nclient = [\"10.1.0.0/16\"]\n[[policy]]\nname = \"b\"\nclient = [\"10.0.0.0/8\"]\n",
        "[[policy]]\nname = \"a\"\nsender = [\"a@b\"]\nmax_size = \"1MiB\"\n[[policy]]\nname = \"b\"\nsender = [\"a@b\"]\n",
        "[[policy]]\nname = \"a\"\nsender = [\"*.example\"]\n[[policy]]\nname = \"b\"\nsender = [\"a@example\"]\n",
        "[policies]\nfirst_contact_policy = \"fc\"\n[[policy]]\nname = \"fc\"\n[[policy]]\nname = \"b\"\n",
    ];
    for text in fine {
        let text = if text.contains("[policies]") {
            text.to_string()
        } else {
            format!("{base}{text}")
        };
        assert_eq!(warnings(&text), Vec::<String>::new(), "{text}");
    }
}

/// `testdata/explain/NNN-name.{eml,toml,args}` → `NNN-name.out`: the text of
/// `mugaika explain` (the library function behind it). `BLESS=1` rewrites the expectations; a
/// mismatch writes `NNN-name.out.failed` next to them (see tests/golden.rs).
#[test]
fn explain_golden() {
    use std::path::PathBuf;
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/explain"));
    let bless = std::env::var("BLESS").is_ok_and(|v| v == "1");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("testdata/explain exists")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 4, "the explain cases are missing");
    let mut failed = Vec::new();
    for eml in &cases {
        let toml = std::fs::read_to_string(eml.with_extension("toml")).expect("case .toml");
        let mut cfg = Config::parse(&toml).unwrap_or_else(|e| panic!("{}: {e}", eml.display()));
        cfg.server.hostname = "mugaika.explain.test".into();
        let args = std::fs::read_to_string(eml.with_extension("args")).expect("case .args");
        let mut words = args.split_whitespace();
        let (mut rcpts, mut sender, mut client, mut first) = (Vec::new(), None, None, false);
        while let Some(w) = words.next() {
            match w {
                "--rcpt" => rcpts.push(words.next().expect("--rcpt ADDR").to_string()),
                "--sender" => sender = words.next().map(str::to_string),
                "--client" => client = words.next().map(|c| c.parse().expect("--client IP")),
                "--first-contact" => first = true,
                other => panic!("{}: unknown argument {other}", eml.display()),
            }
        }
        let req = mugaika::policy::explain::Request {
            message: eml,
            recipients: &rcpts,
            sender: sender.as_deref(),
            client,
            first_contact: first,
        };
        let mut out = Vec::new();
        mugaika::policy::explain::explain(&cfg, &req, &mut out).expect("explain runs");
        let expected_path = eml.with_extension("out");
        let failed_path = eml.with_extension("out.failed");
        if bless {
            std::fs::write(&expected_path, &out).expect("write expectation");
            let _ = std::fs::remove_file(&failed_path);
            continue;
        }
        let expected = std::fs::read(&expected_path).unwrap_or_default();
        if expected == out {
            let _ = std::fs::remove_file(&failed_path);
        } else {
            std::fs::write(&failed_path, &out).expect("write .failed");
            failed.push(format!(
                "{} (diff -u {} {})",
                eml.display(),
                expected_path.display(),
                failed_path.display()
            ));
        }
    }
    assert!(failed.is_empty(), "explain output differs: {failed:#?}");
}

/// `mugaika check-config`: warnings about rules that can never apply exit 0, errors 78;
/// `mugaika explain` runs from the command line and needs a recipient.
#[test]
fn check_config_and_explain_commands() {
    use std::process::Command;
    let exe = env!("CARGO_BIN_EXE_mugaika");
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let shadowed = write(
        "shadowed.toml",
        "[policies]\nfirst_contact_days = 0\n[[policy]]\nname = \"everyone\"\n\
         [[policy]]\nname = \"suppliers\"\nsender = [\"@supplier.co.jp\"]\n",
    );
    let out = Command::new(exe)
        .args(["check-config"])
        .arg(&shadowed)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("warning: policy \"suppliers\" is unreachable")
            && stdout.contains("OK with 1 warning(s)"),
        "{stdout}"
    );
    let bad = write(
        "bad.toml",
        "[[policy]]\nname = \"suppliers\"\n[policy.sanitize.attachments]\noffice = \"keep\"\n",
    );
    let out = Command::new(exe)
        .args(["check-config"])
        .arg(&bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("suppliers") && stderr.contains("keep"),
        "{stderr}"
    );
    let eml = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/explain/004-null-sender.eml"
    );
    let cfg = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/explain/004-null-sender.toml"
    );
    let out = Command::new(exe)
        .args(["explain", "--config", cfg, eml])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "--rcpt is required");
    let out = Command::new(exe)
        .args(["explain", "--config", cfg, eml, "--rcpt", "a@b.example"])
        .args(["--sender", "<>", "--client", "192.0.2.1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("rule: bounces") && stdout.contains("nothing was delivered"),
        "{stdout}"
    );
}

/// The first-contact rule's own conditions: when they do not hold, the ordinary rules apply.
#[test]
fn first_contact_rule_with_conditions() {
    let cfg = Config::parse(
        "[policies]\nfirst_contact_policy = \"fc\"\n\
         [[policy]]\nname = \"fc\"\nrecipient = [\"@city.example.lg.jp\"]\n\
         [policy.sanitize.attachments]\noffice = \"quarantine\"\n\
         [[policy]]\nname = \"all\"\n",
    )
    .unwrap();
    let p = Policies::new(&cfg).unwrap();
    assert!(p.first_contact_enabled());
    let f = |rcpt, first| {
        let r = p.resolve(&Facts {
            sender: "a@b.example",
            recipient: rcpt,
            client: None,
            size: 1,
            auth: &[],
            first_contact: first,
        });
        (r.rule, r.first_contact, r.sanitize.attachments.office)
    };
    let fc = (Some("fc".to_string()), true, AttachmentAction::Quarantine);
    let all = (Some("all".to_string()), false, AttachmentAction::Disarm);
    assert_eq!(f("x@city.example.lg.jp", true), fc);
    assert_eq!(f("x@city.example.lg.jp", false), all);
    assert_eq!(f("x@elsewhere.example", true), all);
    // first_contact_days = 0: the fact is ignored.
    let cfg = Config::parse(
        "[policies]\nfirst_contact_policy = \"fc\"\nfirst_contact_days = 0\n[[policy]]\nname = \"fc\"\n",
    )
    .unwrap();
    let p = Policies::new(&cfg).unwrap();
    assert!(!p.first_contact_enabled());
    let r = p.resolve(&Facts {
        sender: "a@b.example",
        recipient: "c@d",
        client: None,
        size: 1,
        auth: &[],
        first_contact: true,
    });
    assert_eq!((r.rule, r.first_contact), (None, false));
}

/// Hostile input never panics: random header blocks built from the characters that matter to
/// the Authentication-Results parser, and random addresses against every pattern form.
#[test]
fn hostile_inputs_do_not_panic() {
    let p = policies();
    let trusted = vec!["mx.city.example.lg.jp".to_string()];
    let alphabet: &[&[u8]] = &[
        b"Authentication-Results: ",
        b"mx.city.example.lg.jp",
        b"Received: ",
        b";",
        b"=",
        b"(",
        b")",
        b"\"",
        b"\\",
        b" ",
        b"\r\n",
        b"\n",
        b"\r\n\t",
        b"dmarc",
        b"pass",
        b"header.d",
        b"@",
        b"*",
        b"<>",
        b"\xff\xfe",
        "日本".as_bytes(),
        b":",
    ];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..3000 {
        let mut block = Vec::new();
        for _ in 0..(next() % 40) {
            block.extend_from_slice(alphabet[(next() % alphabet.len() as u64) as usize]);
        }
        let auth = auth_results(&block, &trusted);
        let text = String::from_utf8_lossy(&block);
        let addr: String = text.chars().take(300).collect();
        let r = p.resolve(&Facts {
            sender: &addr,
            recipient: &addr,
            client: None,
            size: next(),
            auth: &auth,
            first_contact: next() % 2 == 0,
        });
        assert!(!r.why.is_empty());
    }
    // A long address against the wildcards stays fast (quadratic at worst, small inputs).
    let long = format!("{}@{}.go.jp", "a".repeat(4000), "b.".repeat(2000));
    let started = std::time::Instant::now();
    let r = p.resolve(&Facts {
        sender: &long,
        recipient: &long,
        client: None,
        size: 1,
        auth: &[],
        first_contact: false,
    });
    assert_eq!(r.rule.as_deref(), Some("wild"));
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}

/// A configuration with rules survives serialisation (what a reload or a config dump does).
#[test]
fn rules_round_trip_through_toml() {
    let cfg = Config::parse(RULES).unwrap();
    let text = toml::to_string(&cfg).unwrap();
    let again = Config::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(toml::to_string(&again).unwrap(), text);
    assert_eq!(again.policy.len(), cfg.policy.len());
    assert_eq!(
        again.policies.first_contact_policy.as_deref(),
        Some("first")
    );
}
