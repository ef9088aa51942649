//! Core throughput benchmark: `mugaika`'s whole sanitising pipeline (parse, sanitise, rebuild,
//! verify, write) against the anchor the issue names — mail-parser's parse plus html2text on
//! the HTML bodies — over the same genmail mix, in the same process and run.
//!
//! `cargo bench --bench core` (env: MUGAIKA_BENCH_COUNT, default 400; MUGAIKA_BENCH_ROUNDS,
//! default 3). Prints MB/s for both and the ratio ours / anchor (target ≥ 1.0).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mugaika::config::Config;
use mugaika::pipeline::{self, Context};

fn corpus(count: usize) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join(format!("bench-genmail-{count}"));
    if !dir.join(format!("{:04}-done", count)).exists() {
        let genmail = std::env::var("MUGAIKA_GENMAIL").unwrap_or_else(|_| {
            concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/tools/genmail.py").to_string()
        });
        let _ = std::fs::remove_dir_all(&dir);
        let status = Command::new("python3")
            .arg(&genmail)
            .arg(&dir)
            .args(["--count", &count.to_string()])
            .status()
            .expect("python3 is needed to run genmail.py");
        assert!(status.success(), "genmail.py failed");
        std::fs::write(dir.join(format!("{:04}-done", count)), b"").unwrap();
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect()
}

/// The anchor: parse with mail-parser, convert every HTML body with html2text.
fn anchor(msgs: &[(PathBuf, Vec<u8>)]) -> usize {
    let parser = mail_parser::MessageParser::default();
    let mut out = 0;
    for (_, raw) in msgs {
        if let Some(m) = parser.parse(raw.as_slice()) {
            for i in 0..m.html_body_count() {
                if let Some(html) = m.body_html(i) {
                    let text = html2text::from_read(html.as_bytes(), 80).unwrap_or_default();
                    out += text.len();
                }
            }
            for i in 0..m.text_body_count() {
                out += m.body_text(i).map(|t| t.len()).unwrap_or(0);
            }
        }
    }
    out
}

/// Ours: the whole pipeline, output written to a file as the CLI does.
fn ours(msgs: &[(PathBuf, Vec<u8>)], cfg: &Config, out: &Path) -> (usize, usize) {
    let ctx = Context::default();
    let (mut ok, mut failed) = (0, 0);
    for (_, raw) in msgs {
        match pipeline::sanitize_reader(raw.as_slice(), cfg, &ctx, out) {
            Ok(_) => ok += 1,
            Err(_) => failed += 1,
        }
    }
    (ok, failed)
}

fn best_of<F: FnMut()>(rounds: usize, mut f: F) -> Duration {
    (0..rounds)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn main() {
    let count: usize = std::env::var("MUGAIKA_BENCH_COUNT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(400);
    let rounds: usize = std::env::var("MUGAIKA_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let msgs = corpus(count);
    let bytes: usize = msgs.iter().map(|(_, b)| b.len()).sum();
    let mb = bytes as f64 / 1e6;
    // The core comparison: the anchor parses and converts HTML; it does not disarm
    // attachments. So the like-for-like run removes every attachment (the sanitising core's
    // own work: parse, decode, text and HTML conversion, rebuild, verify, write), and a second
    // run below shows the default policy with attachment disarm, per kind of message.
    let mut cfg = Config::default();
    {
        use mugaika::config::AttachmentAction as A;
        let a = &mut cfg.sanitize.attachments;
        a.image = A::Remove;
        a.pdf = A::Remove;
        a.office = A::Remove;
        a.archive = A::Remove;
        a.encrypted_archive = A::Remove;
    }
    // Output on tmpfs when there is one: the anchor writes nothing, and rewriting one file on
    // ext4 makes every truncation wait for writeback (auto_da_alloc), which measures the disk.
    let shm = std::path::Path::new("/dev/shm");
    let tmp = if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let out = tmp.path().join("clean.eml");

    // Warm up both (page cache, lazy statics), and count failures once.
    let _ = anchor(&msgs);
    let (ok, failed) = ours(&msgs, &cfg, &out);

    let t_anchor = best_of(rounds, || {
        std::hint::black_box(anchor(&msgs));
    });
    let t_ours = best_of(rounds, || {
        std::hint::black_box(ours(&msgs, &cfg, &out));
    });
    let rate = |d: Duration| mb / d.as_secs_f64();
    println!(
        "core: {} messages, {:.1} MB (genmail mix), best of {rounds}",
        msgs.len(),
        mb
    );
    println!(
        "  anchor  mail-parser parse + html2text: {:>8.1} MB/s ({:.3} s)",
        rate(t_anchor),
        t_anchor.as_secs_f64()
    );
    println!(
        "  mugaika sanitize pipeline:            {:>8.1} MB/s ({:.3} s)  [{ok} clean, {failed} failed]",
        rate(t_ours),
        t_ours.as_secs_f64()
    );
    println!(
        "  ratio mugaika / anchor: {:.2} (target >= 1.0)",
        t_anchor.as_secs_f64() / t_ours.as_secs_f64()
    );

    // The default policy: attachments disarmed (images re-encoded, PDFs and Office documents
    // rebuilt, archives inspected). Time per kind of genmail message, one round.
    let full = Config::default();
    let mut kinds: std::collections::BTreeMap<String, (usize, usize, Duration)> =
        Default::default();
    let ctx = Context::default();
    for (path, raw) in &msgs {
        let kind = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.split_once('-'))
            .map(|(_, k)| k.to_string())
            .unwrap_or_default();
        let t = Instant::now();
        let _ = pipeline::sanitize_reader(raw.as_slice(), &full, &ctx, &out);
        let e = kinds.entry(kind).or_default();
        e.0 += 1;
        e.1 += raw.len();
        e.2 += t.elapsed();
    }
    let total: Duration = kinds.values().map(|k| k.2).sum();
    println!(
        "  with attachment disarm (default policy): {:>8.1} MB/s ({:.3} s)",
        rate(total),
        total.as_secs_f64()
    );
    for (kind, (n, b, d)) in &kinds {
        println!(
            "    {kind:<8} {n:>4} msgs {:>7.1} MB {:>8.1} MB/s {:>7.2} ms/msg",
            *b as f64 / 1e6,
            *b as f64 / 1e6 / d.as_secs_f64(),
            d.as_secs_f64() * 1e3 / *n as f64
        );
    }
}
