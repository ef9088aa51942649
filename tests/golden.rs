//! Golden tests: every `testdata/golden/NNN-name.eml` goes through the whole pipeline
//! (parse → sanitise → rebuild → verify) and the clean message must equal `NNN-name.out`, the
//! summary of the report `NNN-name.actions`. A per-case `NNN-name.toml` (parsed with
//! `Config::parse`) sets the policy, else the defaults apply.
//!
//! Why golden files: the clean message is what a municipal mail administrator and the staff
//! behind the relay actually see. A change in any module (parser, charsets, sanitiser, rebuild)
//! that alters a delivered message shows up here as a readable diff, and the expectations were
//! read by a person before they were committed (`KNOWN-ISSUES.md` lists the ones that are known
//! to be wrong and by whom they are to be fixed).
//!
//! - On a mismatch `NNN-name.out.failed` / `NNN-name.actions.failed` are written next to the
//!   input (ignored by git) and the test fails naming the case with the first differing lines;
//!   `diff -u NNN-name.out NNN-name.out.failed` shows the rest.
//! - `BLESS=1 cargo test --test golden` rewrites the expectations; a missing expectation is a
//!   failure otherwise. `GOLDEN_ONLY=substring` runs only the matching cases.
//! - Only what cannot be deterministic is normalised: a Date the input did not have (it is
//!   generated from the clock). The hostname for generated Message-IDs is fixed here.
//! - Every clean message is also checked by `../shared/tools/checkmail.py structural` (Python's
//!   own mail parser, an independent judge of the invariants); when python3 or the script is
//!   missing this is skipped loudly, and fails when `MUGAIKA_REQUIRE_CORPORA=1`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use mugaika::config::Config;
use mugaika::pipeline::{sanitize_file, Context, Report};
use mugaika::sanitise::ActionKind;

/// The hostname used for anything generated (Message-ID), so outputs do not depend on the
/// machine that runs the test.
const HOSTNAME: &str = "mugaika.golden.test";

fn golden_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/golden"))
}

fn env_is(name: &str, value: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == value)
}

/// Every `.eml` under the golden directory, sorted, as (case name, path).
fn cases() -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(golden_dir()).expect("testdata/golden must exist");
    for e in entries {
        let path = e.expect("readable directory entry").path();
        if path.extension().is_some_and(|x| x == "eml") {
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("case names are UTF-8")
                .to_string();
            out.push((name, path));
        }
    }
    out.sort();
    out
}

/// The configuration of one case: its `.toml` if present, else the defaults.
fn config_for(eml: &Path) -> Config {
    let toml = eml.with_extension("toml");
    let mut cfg = if toml.exists() {
        let text = std::fs::read_to_string(&toml).expect("readable case config");
        Config::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", toml.display()))
    } else {
        Config::default()
    };
    cfg.server.hostname = HOSTNAME.to_string();
    cfg
}

/// The top-level header block of a message (up to the first empty line, any line ending).
fn header_block(raw: &[u8]) -> Vec<u8> {
    let text = raw.to_vec();
    let mut end = text.len();
    for pat in [&b"\r\n\r\n"[..], b"\n\n", b"\r\r"] {
        if let Some(i) = text.windows(pat.len()).position(|w| w == pat) {
            end = end.min(i);
        }
    }
    text[..end].to_vec()
}

/// Whether a header block has a field of this name (case-insensitive, at a line start).
fn has_field(block: &[u8], name: &str) -> bool {
    block.split(|&b| b == b'\n' || b == b'\r').any(|line| {
        line.len() > name.len()
            && line[..name.len()].eq_ignore_ascii_case(name.as_bytes())
            && line[name.len()..].trim_ascii_start().first() == Some(&b':')
    })
}

/// Replaces the value of the top-level field `name` (with its continuation lines) in a clean
/// message (CRLF) by a placeholder.
fn mask_field(out: &[u8], name: &str, placeholder: &str) -> Vec<u8> {
    let head_end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(out.len(), |i| i + 2);
    let (head, body) = out.split_at(head_end);
    let mut result = Vec::with_capacity(out.len());
    let mut skipping = false;
    for line in head.split_inclusive(|&b| b == b'\n') {
        if skipping && matches!(line.first(), Some(b' ' | b'\t')) {
            continue;
        }
        skipping = false;
        let prefix = format!("{name}:");
        if line.len() >= prefix.len()
            && line[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
        {
            result.extend_from_slice(prefix.as_bytes());
            result.extend_from_slice(b" ");
            result.extend_from_slice(placeholder.as_bytes());
            result.extend_from_slice(b"\r\n");
            skipping = true;
            continue;
        }
        result.extend_from_slice(line);
    }
    result.extend_from_slice(body);
    result
}

/// The clean message with what cannot be deterministic masked.
fn normalise(out: &[u8], input: &[u8]) -> Vec<u8> {
    let head = header_block(input);
    let mut out = out.to_vec();
    if !has_field(&head, "Date") {
        out = mask_field(&out, "Date", "<generated from the clock>");
    }
    out
}

/// One line per fact of the report: status, parser flags, then each action.
fn summarise(report: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "status: {}", report.status);
    if !report.parse_flags.is_empty() {
        let _ = writeln!(s, "flags: {}", report.parse_flags.join(" "));
    }
    for a in &report.actions {
        let _ = write!(s, "{}", kind_name(a.kind));
        if let Some(name) = &a.name {
            let _ = write!(s, " {name:?}");
        }
        if !a.declared_type.is_empty() {
            let _ = write!(s, " {}", a.declared_type);
        }
        if let Some(d) = &a.detected_type {
            if *d != a.declared_type {
                let _ = write!(s, " (detected {d})");
            }
        }
        s.push('\n');
    }
    s
}

/// The kebab-case name of an action kind, as in the JSON report.
fn kind_name(kind: ActionKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{kind:?}"))
}

/// A short diff-like excerpt: the first differing line with a little context.
fn first_difference(expected: &[u8], actual: &[u8]) -> String {
    let e = String::from_utf8_lossy(expected);
    let a = String::from_utf8_lossy(actual);
    let el: Vec<&str> = e.lines().collect();
    let al: Vec<&str> = a.lines().collect();
    let i = el
        .iter()
        .zip(al.iter())
        .position(|(x, y)| x != y)
        .unwrap_or(el.len().min(al.len()));
    let from = i.saturating_sub(2);
    let mut s = format!("  first difference at line {}:\n", i + 1);
    for (k, line) in el.iter().enumerate().skip(from).take(6) {
        let _ = writeln!(s, "  -{:>4} {}", k + 1, clip(line));
    }
    for (k, line) in al.iter().enumerate().skip(from).take(6) {
        let _ = writeln!(s, "  +{:>4} {}", k + 1, clip(line));
    }
    if el.len() != al.len() {
        let _ = writeln!(s, "  ({} lines expected, {} found)", el.len(), al.len());
    }
    s
}

fn clip(line: &str) -> String {
    let mut t: String = line.chars().take(160).collect();
    if t.len() < line.len() {
        t.push('…');
    }
    t
}

/// Compares `actual` with the expectation file `expected_path`; returns a failure message.
/// With `bless`, writes the expectation instead. Stale `.failed` files are removed on success.
fn check(case: &str, expected_path: &Path, actual: Option<&[u8]>, bless: bool) -> Option<String> {
    let failed = PathBuf::from(format!("{}.failed", expected_path.display()));
    let expected = std::fs::read(expected_path).ok();
    if bless {
        let _ = std::fs::remove_file(&failed);
        match actual {
            Some(a) if expected.as_deref() != Some(a) => {
                std::fs::write(expected_path, a).expect("writable expectation");
            }
            Some(_) => {}
            None => {
                let _ = std::fs::remove_file(expected_path);
            }
        }
        return None;
    }
    let file = expected_path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    match (expected.as_deref(), actual) {
        (Some(e), Some(a)) if e == a => {
            let _ = std::fs::remove_file(&failed);
            None
        }
        (None, None) => None,
        (Some(e), Some(a)) => {
            let _ = std::fs::write(&failed, a);
            Some(format!(
                "{case}: {file} differs (see {file}.failed)\n{}",
                first_difference(e, a)
            ))
        }
        (None, Some(a)) => {
            let _ = std::fs::write(&failed, a);
            let first = String::from_utf8_lossy(a.split(|&b| b == b'\n').next().unwrap_or(b""))
                .into_owned();
            Some(format!(
                "{case}: no expectation {file} (run with BLESS=1, then read it); got: {}",
                clip(&first)
            ))
        }
        (Some(_), None) => Some(format!(
            "{case}: {file} is expected but no clean message was written"
        )),
    }
}

/// Runs `checkmail.py structural` over the clean messages; returns failure lines.
fn checkmail(outputs: &[(String, PathBuf)]) -> Vec<String> {
    let require = env_is("MUGAIKA_REQUIRE_CORPORA", "1");
    let script = std::env::var_os("MUGAIKA_CHECKMAIL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../shared/tools/checkmail.py"
            ))
        });
    let skip = |why: String| {
        if require {
            vec![format!("checkmail.py: {why} (MUGAIKA_REQUIRE_CORPORA=1)")]
        } else {
            eprintln!("\n*** SKIP checkmail.py structural: {why} ***\n");
            Vec::new()
        }
    };
    if !script.exists() {
        return skip(format!("{} not found", script.display()));
    }
    if outputs.is_empty() {
        return Vec::new();
    }
    let run = Command::new("python3")
        .arg(&script)
        .arg("structural")
        .args(outputs.iter().map(|(_, p)| p))
        .output();
    let run = match run {
        Ok(r) => r,
        Err(e) => return skip(format!("cannot run python3: {e}")),
    };
    let stdout = String::from_utf8_lossy(&run.stdout);
    let mut fails: Vec<String> = stdout
        .lines()
        .filter(|l| !l.ends_with(" pass"))
        .map(|l| format!("checkmail.py structural: {l}"))
        .collect();
    if !run.status.success() && fails.is_empty() {
        fails.push(format!(
            "checkmail.py structural exited with {}: {}",
            run.status,
            String::from_utf8_lossy(&run.stderr)
        ));
    }
    let expected = format!("{0}/{0} pass", outputs.len());
    if fails.is_empty() && !stdout.lines().any(|l| l == expected) {
        fails.push(format!(
            "checkmail.py structural: unexpected output {stdout:?}"
        ));
    }
    fails
}

#[test]
fn golden() {
    let bless = env_is("BLESS", "1");
    let only = std::env::var("GOLDEN_ONLY").ok();
    let all = cases();
    assert!(
        all.len() >= 48,
        "expected at least 48 golden cases, found {}",
        all.len()
    );

    // Every expectation or config belongs to an input: a renamed case must not leave an
    // expectation behind that is silently no longer checked.
    let mut failures = Vec::new();
    for e in std::fs::read_dir(golden_dir()).expect("testdata/golden") {
        let path = e.expect("entry").path();
        let Some(ext) = path.extension().and_then(|x| x.to_str()) else {
            continue;
        };
        if matches!(ext, "out" | "actions" | "toml") && !path.with_extension("eml").exists() {
            failures.push(format!("{}: no matching .eml", path.display()));
        }
    }

    let tmp = tempfile::tempdir().expect("temporary directory");
    let mut outputs = Vec::new();
    let mut ran = 0;
    for (name, eml) in &all {
        if only.as_deref().is_some_and(|o| !name.contains(o)) {
            continue;
        }
        ran += 1;
        let cfg = config_for(eml);
        let input = std::fs::read(eml).expect("readable input");
        let out_path = tmp.path().join(format!("{name}.eml"));
        let result = sanitize_file(eml, &cfg, &Context::default(), &out_path);
        let (clean, summary) = match result {
            Ok(report) => {
                let raw = std::fs::read(&out_path).expect("the pipeline wrote its output");
                outputs.push((name.clone(), out_path.clone()));
                (Some(normalise(&raw, &input)), summarise(&report))
            }
            Err(e) => {
                if out_path.exists() {
                    failures.push(format!("{name}: output left behind after an error: {e}"));
                }
                (None, format!("error: {e}\n"))
            }
        };
        let out_file = eml.with_extension("out");
        let actions_file = eml.with_extension("actions");
        failures.extend(check(name, &out_file, clean.as_deref(), bless));
        failures.extend(check(name, &actions_file, Some(summary.as_bytes()), bless));
    }
    assert!(ran > 0, "GOLDEN_ONLY={only:?} matches no case");
    failures.extend(checkmail(&outputs));

    if bless {
        eprintln!("BLESS=1: {ran} golden expectations written; read them before committing");
    }
    assert!(
        failures.is_empty(),
        "{} golden failure(s) of {ran} cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn normalisation_masks_only_a_generated_date() {
    let input = b"From: a@example.jp\r\nSubject: x\r\n\r\nbody\r\n";
    let out = b"From: a@example.jp\r\nDate: Tue, 18 Nov 2025\r\n 10:15:00 +0900\r\nX: y\r\n\r\nDate: body\r\n";
    let n = normalise(out, input);
    assert_eq!(
        n,
        b"From: a@example.jp\r\nDate: <generated from the clock>\r\nX: y\r\n\r\nDate: body\r\n"
    );
    let input_with_date = b"From: a@example.jp\nDATE : Mon, 1 Jan 2024 00:00:00 +0000\n\nbody\n";
    assert_eq!(normalise(out, input_with_date), out);
    assert!(has_field(b"Subject: x\r\ndate: y", "Date"));
    assert!(!has_field(b"Subject: x\r\nDated: y", "Date"));
}

#[test]
fn summary_lists_status_flags_and_kinds() {
    let report = Report {
        status: "sanitized".into(),
        parse_flags: vec!["missing-final-boundary"],
        ..Report::default()
    };
    assert_eq!(
        summarise(&report),
        "status: sanitized\nflags: missing-final-boundary\n"
    );
    assert_eq!(
        kind_name(ActionKind::AttachmentRemoved),
        "attachment-removed"
    );
}
