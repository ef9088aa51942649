//! Live reload under load (issue 7): while clients keep sending, the configuration changes
//! twice (once by `mugaika reload`, once by a plain SIGHUP) and an invalid file is offered in
//! between (refused by `mugaika reload` before any signal, and by the server when signalled
//! directly). No transaction may fail, every message arrives exactly once, and each carries the
//! subject tag of the configuration its session started under, in order: generations never go
//! backwards for one client.

mod common;

use std::collections::HashMap;
use std::fs;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{Mugaika, ServeConfig, SmtpSink, MUGAIKA};

const CLIENTS: usize = 4;
/// Bounds the load whatever happens: at most this many messages per client.
const MAX_PER_CLIENT: usize = 150;

fn message(client: usize, n: usize) -> Vec<u8> {
    format!(
        "From: sender@example.com\r\nTo: staff@city.example.lg.jp\r\n\
         Subject: reload {client}-{n}\r\nMessage-ID: <r{client}-{n}@example.com>\r\n\
         Date: Sun, 22 Nov 2026 03:00:00 +0900\r\n\r\nbody {client} {n}\r\n"
    )
    .into_bytes()
}

fn set_tag(config: &std::path::Path, from: &str, to: &str) {
    let text = fs::read_to_string(config).expect("config");
    assert!(text.contains(from), "config has no {from}");
    fs::write(config, text.replace(from, to)).expect("write config");
}

fn reload_cmd(config: &std::path::Path) -> std::process::Output {
    Command::new(MUGAIKA)
        .args(["reload", "--config"])
        .arg(config)
        .output()
        .expect("mugaika reload")
}

/// The generation number in a clean message's subject tag `[genN]`.
fn generation(data: &[u8]) -> Option<(usize, usize, usize)> {
    let text = String::from_utf8_lossy(data);
    let subject = text
        .lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.strip_prefix("Subject: "))?;
    let g = subject.strip_prefix("[gen")?;
    let (g, rest) = g.split_once("] reload ")?;
    let (c, n) = rest.trim().split_once('-')?;
    Some((g.parse().ok()?, c.parse().ok()?, n.parse().ok()?))
}

#[test]
fn reload_twice_under_load_fails_no_session_and_loses_nothing() {
    let tmp = common::shared_tempdir();
    let Some(sink) = SmtpSink::start(tmp.path()) else {
        return;
    };
    let mut cfg = ServeConfig::new(sink.addr, &["city.example.lg.jp"]);
    cfg.sanitize.push("subject_tag = \"[gen0]\"".into());
    let mut relay = Mugaika::start(&tmp.path().join("relay"), &cfg);
    let addr = relay.addr;

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut sent = 0;
                let mut failures = Vec::new();
                while !stop.load(Ordering::Relaxed) && sent < MAX_PER_CLIENT {
                    let r = common::smtp_send(
                        addr,
                        "sender@example.com",
                        &["staff@city.example.lg.jp"],
                        &message(c, sent),
                        Duration::from_secs(30),
                    );
                    if let Err(e) = r {
                        failures.push(format!("client {c} message {sent}: {e}"));
                    }
                    sent += 1;
                    thread::sleep(Duration::from_millis(20));
                }
                (sent, failures)
            })
        })
        .collect();

    // The whole log: under load the audit records push these lines out of any tail.
    let full_log =
        |relay: &Mugaika| fs::read_to_string(relay.dir.join("mugaika.log")).unwrap_or_default();
    let log_has = |relay: &Mugaika, what: &str| full_log(relay).contains(what);
    thread::sleep(Duration::from_millis(800));

    // 1. `mugaika reload` with a valid change.
    set_tag(&relay.config, "[gen0]", "[gen1]");
    let out = reload_cmd(&relay.config);
    assert!(
        out.status.success(),
        "mugaika reload: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(common::wait_until(Duration::from_secs(10), || log_has(
        &relay,
        "configuration reloaded"
    )));
    thread::sleep(Duration::from_millis(800));

    // 2. An invalid file: `mugaika reload` refuses it without signalling (exit 78), and a
    //    direct SIGHUP is refused by the server, which keeps generation 1.
    let good = fs::read_to_string(&relay.config).expect("config");
    fs::write(&relay.config, format!("{good}\n[sanitize.bogus]\n")).expect("bad config");
    let out = reload_cmd(&relay.config);
    assert_eq!(out.status.code(), Some(78), "reload of an invalid file");
    relay.signal("HUP");
    assert!(
        common::wait_until(Duration::from_secs(10), || log_has(
            &relay,
            "invalid configuration refused"
        )),
        "no refusal in the log:\n{}",
        full_log(&relay)
    );
    thread::sleep(Duration::from_millis(500));

    // 3. A plain SIGHUP with a valid change.
    fs::write(&relay.config, good.replace("[gen1]", "[gen2]")).expect("config");
    relay.signal("HUP");
    assert!(common::wait_until(Duration::from_secs(10), || full_log(
        &relay
    )
    .matches("smtp: configuration reloaded")
    .count()
        >= 2));
    thread::sleep(Duration::from_millis(800));
    stop.store(true, Ordering::Relaxed);

    let mut total = 0;
    let mut failures = Vec::new();
    for c in clients {
        let (sent, f) = c.join().expect("client thread");
        total += sent;
        failures.extend(f);
    }
    assert!(failures.is_empty(), "failed transactions: {failures:#?}");
    sink.expect_count(total, Duration::from_secs(60), Duration::from_millis(500));

    // Exactly once each, generations in order per client, all three seen.
    let mut seen: HashMap<(usize, usize), usize> = HashMap::new();
    let mut last_gen: HashMap<usize, (usize, usize)> = HashMap::new();
    let mut by_client: Vec<Vec<(usize, usize)>> = vec![Vec::new(); CLIENTS];
    for m in sink.messages() {
        let (g, c, n) = generation(&m.data).unwrap_or_else(|| {
            panic!(
                "no generation tag in {}:\n{}",
                m.file.display(),
                String::from_utf8_lossy(&m.data)
            )
        });
        *seen.entry((c, n)).or_default() += 1;
        by_client[c].push((n, g));
    }
    assert_eq!(seen.len(), total, "distinct messages delivered");
    assert!(seen.values().all(|&k| k == 1), "a message arrived twice");
    let mut gens = [0usize; 3];
    for (c, mut list) in by_client.into_iter().enumerate() {
        list.sort();
        for w in list.windows(2) {
            assert!(
                w[0].1 <= w[1].1,
                "client {c}: message {} has generation {} after {} had {}",
                w[1].0,
                w[1].1,
                w[0].0,
                w[0].1
            );
        }
        for (_, g) in &list {
            gens[*g] += 1;
        }
        last_gen.insert(c, list.last().copied().unwrap_or_default());
    }
    assert!(
        gens.iter().all(|&k| k > 0),
        "every generation must be seen: {gens:?}"
    );
    let start = Instant::now();
    relay.stop(Duration::from_secs(20));
    assert!(start.elapsed() < Duration::from_secs(20));
    eprintln!("reload under load: {total} messages, per generation {gens:?}");
}
