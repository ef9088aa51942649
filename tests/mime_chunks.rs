//! Chunk invariance of the streaming MIME parser over every mail in `../shared/corpora`, and
//! the parser regression inputs in `testdata/mime/`.
//!
//! The parser is fed the same message whole, one byte at a time (files under 256 KiB), in
//! 7-byte chunks and in seeded random chunks, with the default limits and with tight ones (so
//! that long-line pieces, header and part limits are exercised too); the event streams
//! (adjacent body chunks merged, bodies compared by SHA-256) must be identical, no parse may
//! panic, and each must finish quickly. "Mail" is read inclusively: every file whose first
//! line looks like a header field or an mbox `From ` line, and every `.eml`, `.msg` or mbox
//! file whatever it starts with.
//!
//! `testdata/mime/NAME.eml` are inputs that once broke the parser (or pin a decision); their
//! event dumps are kept in `NAME.events` and compared exactly (`BLESS=1` rewrites them).
//!
//! Corpora: `MUGAIKA_CORPORA`, else `../shared/corpora`. When absent the corpus test prints a
//! loud SKIP, or fails if `MUGAIKA_REQUIRE_CORPORA=1`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mugaika::mime::{Flags, Limits, Parser, Part, PartEnd, Sink, Summary};
use sha2::{Digest, Sha256};

/// Files at most this large are also fed one byte at a time.
const BYTEWISE_MAX: usize = 256 << 10;
/// A single parse of one file (any chunking, debug build) must take less than this.
const PARSE_TIME_LIMIT: Duration = Duration::from_secs(20);

/// The event stream as text; bodies merged and hashed.
#[derive(Default)]
struct Events {
    lines: Vec<String>,
    body: Option<(Sha256, u64)>,
    /// The first octets of the current body, for readable regression dumps.
    shown: Option<Vec<u8>>,
    show: bool,
}

/// How much of each body a regression dump shows.
const SHOW_MAX: usize = 300;

impl Events {
    fn flush(&mut self) {
        if let Some((h, n)) = self.body.take() {
            self.lines.push(format!("  body {n} {:x}", h.finalize()));
            if let Some(b) = self.shown.take() {
                self.lines.push(format!(
                    "  | {}",
                    String::from_utf8_lossy(&b).escape_debug()
                ));
            }
        }
    }
}

impl Sink for Events {
    fn part_start(&mut self, p: &Part) {
        self.flush();
        let mut s = format!(
            "start {} parent={:?} depth={} {} {:?} disp={:?} name={:?} cid={:?} flags={:?} params={:?}",
            p.index,
            p.parent,
            p.depth,
            p.content_type.mime_type,
            p.encoding,
            p.disposition,
            p.filename,
            p.content_id,
            p.flags.names(),
            p.content_type.params,
        );
        for h in &p.headers {
            s.push_str(&format!(
                "\n  {}: {:?}",
                h.name,
                String::from_utf8_lossy(&h.value)
            ));
        }
        self.lines.push(s);
    }
    fn body(&mut self, d: &[u8]) {
        let (h, n) = self.body.get_or_insert_with(|| (Sha256::new(), 0));
        h.update(d);
        *n += d.len() as u64;
        if self.show {
            let b = self.shown.get_or_insert_with(Vec::new);
            let room = SHOW_MAX.saturating_sub(b.len());
            b.extend_from_slice(&d[..room.min(d.len())]);
        }
    }
    fn part_end(&mut self, e: &PartEnd) {
        self.flush();
        self.lines.push(format!(
            "end {} flags={:?} raw={} decoded={}",
            e.index,
            e.flags.names(),
            e.raw_len,
            e.decoded_len
        ));
    }
}

/// A small deterministic generator for chunk sizes.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[derive(Clone, Copy, Debug)]
enum Split {
    Whole,
    Fixed(usize),
    Random(u64),
}

fn parse(data: &[u8], limits: Limits, split: Split) -> (Vec<String>, Summary, Duration) {
    parse_shown(data, limits, split, false)
}

fn parse_shown(
    data: &[u8],
    limits: Limits,
    split: Split,
    show: bool,
) -> (Vec<String>, Summary, Duration) {
    let t = Instant::now();
    let mut ev = Events {
        show,
        ..Events::default()
    };
    let mut p = Parser::new(limits);
    match split {
        Split::Whole => p.feed(data, &mut ev),
        Split::Fixed(n) => {
            for c in data.chunks(n) {
                p.feed(c, &mut ev);
            }
        }
        Split::Random(seed) => {
            let mut rng = XorShift(seed | 1);
            // Mostly small chunks, some large, some empty.
            let max = if data.len() > BYTEWISE_MAX {
                65536
            } else {
                300
            };
            let mut rest = data;
            while !rest.is_empty() {
                let n = (rng.next() % max as u64) as usize;
                let (a, b) = rest.split_at(n.min(rest.len()));
                p.feed(a, &mut ev);
                rest = b;
            }
        }
    }
    let s = p.finish(&mut ev);
    ev.flush();
    let lines = ev.lines;
    (lines, s, t.elapsed())
}

fn corpora_dir() -> PathBuf {
    std::env::var_os("MUGAIKA_CORPORA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpora")))
}

fn require_corpora() -> bool {
    std::env::var("MUGAIKA_REQUIRE_CORPORA").is_ok_and(|v| v == "1")
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out);
        } else if p.is_file() {
            out.push(p);
        }
    }
}

/// Does this file look like a mail message?
fn looks_like_mail(path: &Path, data: &[u8]) -> bool {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if matches!(ext.as_str(), "eml" | "msg" | "mbox") || name.contains("mbox") {
        return true;
    }
    let first = data.split(|&b| b == b'\n').next().unwrap_or_default();
    if first.starts_with(b"From ") {
        return true;
    }
    match first.iter().position(|&b| b == b':') {
        Some(colon) if colon > 0 => first[..colon]
            .iter()
            .all(|&b| (33..=126).contains(&b) && b != b':'),
        _ => false,
    }
}

fn tight_limits() -> Limits {
    Limits {
        max_header_size: 2048,
        max_depth: 3,
        max_parts: 12,
        max_boundary_length: 70,
        max_line_length: 1000,
    }
}

/// Checks one input in every way; returns a description of what went wrong.
fn check(name: &str, data: &[u8], seed: u64) -> Result<(usize, Flags), String> {
    let mut runs = 0;
    let mut flags = Flags::empty();
    for (lname, limits) in [("default", Limits::default()), ("tight", tight_limits())] {
        let (whole, ws, t) = parse(data, limits, Split::Whole);
        runs += 1;
        if t > PARSE_TIME_LIMIT {
            return Err(format!("{name}: whole parse took {t:?}"));
        }
        let mut splits = vec![Split::Fixed(7), Split::Random(seed)];
        if data.len() <= BYTEWISE_MAX && lname == "default" {
            splits.push(Split::Fixed(1));
        }
        if lname == "default" {
            splits.push(Split::Random(seed.wrapping_mul(31).wrapping_add(7)));
        }
        for split in splits {
            let (ev, s, t) = parse(data, limits, split);
            runs += 1;
            if t > PARSE_TIME_LIMIT {
                return Err(format!("{name}: {split:?} parse took {t:?}"));
            }
            if ev != whole || s != ws {
                let at = ev
                    .iter()
                    .zip(whole.iter())
                    .position(|(a, b)| a != b)
                    .unwrap_or(ev.len().min(whole.len()));
                return Err(format!(
                    "{name}: {lname} limits, {split:?} differs from whole at event {at}:\n  \
                     whole: {:?}\n  split: {:?}\n  summaries: {ws:?} / {s:?}",
                    whole.get(at),
                    ev.get(at)
                ));
            }
        }
        if ws.parts == 0 || ws.bytes != data.len() as u64 {
            return Err(format!("{name}: bad summary {ws:?}"));
        }
        if lname == "default" {
            flags = ws.flags;
        }
    }
    Ok((runs, flags))
}

#[test]
fn corpus_chunk_invariance() {
    let dir = corpora_dir();
    if !dir.is_dir() {
        assert!(
            !require_corpora(),
            "MUGAIKA_REQUIRE_CORPORA=1 but the corpora are missing at {}",
            dir.display()
        );
        eprintln!(
            "\n*** SKIP corpus_chunk_invariance: no corpora at {} (set MUGAIKA_CORPORA) ***\n",
            dir.display()
        );
        return;
    }
    let mut files = Vec::new();
    walk(&dir, &mut files);
    let mut checked = 0;
    let mut bytes = 0;
    let mut runs = 0;
    let mut failures = Vec::new();
    let mut flag_counts = vec![0usize; Flags::ALL.len()];
    let t = Instant::now();
    for (i, path) in files.iter().enumerate() {
        let Ok(data) = std::fs::read(path) else {
            continue;
        };
        if !looks_like_mail(path, &data) {
            continue;
        }
        let name = path
            .strip_prefix(&dir)
            .unwrap_or(path)
            .display()
            .to_string();
        let seed = 0x9e37_79b9_7f4a_7c15u64 ^ (i as u64).wrapping_mul(0x1000_0001);
        match std::panic::catch_unwind(|| check(&name, &data, seed)) {
            Ok(Ok((n, flags))) => {
                runs += n;
                for (count, (f, _)) in flag_counts.iter_mut().zip(Flags::ALL) {
                    if flags.contains(*f) {
                        *count += 1;
                    }
                }
            }
            Ok(Err(e)) => failures.push(e),
            Err(_) => failures.push(format!("{name}: PANIC")),
        }
        checked += 1;
        bytes += data.len();
    }
    println!(
        "mime_chunks: {checked} corpus files ({:.1} MB) checked, {runs} parses, in {:.1?}",
        bytes as f64 / 1e6,
        t.elapsed()
    );
    let stats: Vec<String> = Flags::ALL
        .iter()
        .zip(&flag_counts)
        .filter(|(_, &n)| n > 0)
        .map(|((_, name), n)| format!("{name}={n}"))
        .collect();
    println!(
        "mime_chunks: files per flag (default limits): {}",
        stats.join(" ")
    );
    assert!(
        checked > 1000,
        "only {checked} mail files found under {}",
        dir.display()
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The regression inputs: chunk invariance, and the exact event dump.
#[test]
fn regressions() {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/mime"));
    let bless = std::env::var("BLESS").is_ok_and(|v| v == "1");
    let mut inputs = Vec::new();
    walk(dir, &mut inputs);
    inputs.retain(|p| p.extension().is_some_and(|e| e == "eml"));
    let mut failures = Vec::new();
    for path in &inputs {
        let data = std::fs::read(path).expect("read input");
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        if let Err(e) = check(&name, &data, 42) {
            failures.push(e);
            continue;
        }
        let (ev, s, _) = parse_shown(&data, Limits::default(), Split::Whole, true);
        let dump = format!(
            "{}\nsummary {:?} parts={}\n",
            ev.join("\n"),
            s.flags.names(),
            s.parts
        );
        let expected = path.with_extension("events");
        match std::fs::read_to_string(&expected) {
            Ok(e) if e == dump => {}
            _ if bless => std::fs::write(&expected, &dump).expect("write expectation"),
            Ok(_) => {
                let failed = path.with_extension("events.failed");
                let _ = std::fs::write(&failed, &dump);
                failures.push(format!("{name}: events differ (see {})", failed.display()));
            }
            Err(_) => failures.push(format!(
                "{name}: no {} (run with BLESS=1)",
                expected.display()
            )),
        }
    }
    println!("mime regressions: {} inputs", inputs.len());
    assert!(!inputs.is_empty(), "no inputs in {}", dir.display());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Diagnostic, not a check: lists the corpus files whose parse carries the flag named by
/// `MUGAIKA_SHOW_FLAG` (e.g. `embedded-mime-structure`), with every flag they carry.
/// `MUGAIKA_SHOW_FLAG=bad-base64 cargo test --test mime_chunks flag_report -- --ignored --nocapture`
#[test]
#[ignore]
fn flag_report() {
    let want = std::env::var("MUGAIKA_SHOW_FLAG").unwrap_or_default();
    let dir = corpora_dir();
    let mut files = Vec::new();
    walk(&dir, &mut files);
    for path in files {
        let Ok(data) = std::fs::read(&path) else {
            continue;
        };
        if !looks_like_mail(&path, &data) {
            continue;
        }
        let (_, s, _) = parse(&data, Limits::default(), Split::Whole);
        if want.is_empty() || s.flags.names().contains(&want.as_str()) {
            let name = path
                .strip_prefix(&dir)
                .unwrap_or(&path)
                .display()
                .to_string();
            println!("{name}: {:?}", s.flags.names());
        }
    }
}

/// Diagnostic: prints the event dump of the file named by `MUGAIKA_DUMP`.
#[test]
#[ignore]
fn dump() {
    let Some(path) = std::env::var_os("MUGAIKA_DUMP") else {
        return;
    };
    let data = std::fs::read(path).expect("read MUGAIKA_DUMP");
    let (ev, s, _) = parse_shown(&data, Limits::default(), Split::Whole, true);
    println!(
        "{}\nsummary {:?} parts={}",
        ev.join("\n"),
        s.flags.names(),
        s.parts
    );
}

/// The noxxi `hide-content.d` mails hide `eicar.zip` behind MIME tricks. Wherever the
/// parser's reading puts the zip (decoded, or still base64) inside a part declared as text,
/// that part must carry a [`Flags::SUSPICIOUS_TEXT`] flag (its own, at its end, or an
/// ancestor's), so that the sanitiser never passes it as text. Zip data in non-text parts is
/// fine (attachments are removed or disarmed by type), and so is zip data not found at all
/// (dropped as preamble or epilogue).
#[test]
fn noxxi_hidden_content_in_text_is_flagged() {
    #[derive(Default)]
    struct Check {
        stack: Vec<(String, Flags)>,
        body: Vec<u8>,
        text_parts: usize,
        unflagged: Vec<String>,
        in_text: usize,
    }
    impl Sink for Check {
        fn part_start(&mut self, p: &Part) {
            self.stack.push((p.content_type.mime_type.clone(), p.flags));
            self.body.clear();
        }
        fn body(&mut self, d: &[u8]) {
            self.body.extend_from_slice(d);
        }
        fn part_end(&mut self, e: &PartEnd) {
            let inherited = self.stack.iter().fold(Flags::empty(), |a, (_, f)| a | *f);
            let Some((t, _)) = self.stack.pop() else {
                return;
            };
            if t.starts_with("text/") {
                self.text_parts += 1;
                let b = &self.body;
                let zip = b.windows(4).any(|w| w == b"PK\x03\x04")
                    || b.windows(5).any(|w| w == b"UEsDB")
                    || b.windows(6).any(|w| w == b"\nUEsD\n" || w == b"\nUEsD\r");
                if zip {
                    self.in_text += 1;
                    let all = inherited | e.flags;
                    if (all.0 & Flags::SUSPICIOUS_TEXT.0) == 0 {
                        self.unflagged.push(format!("{t} flags={:?}", all.names()));
                    }
                }
            }
            self.body.clear();
        }
    }
    let dir = corpora_dir().join("noxxi-mime-is-broken/hide-content.d");
    if !dir.is_dir() {
        assert!(
            !require_corpora(),
            "MUGAIKA_REQUIRE_CORPORA=1 but {} is missing",
            dir.display()
        );
        eprintln!(
            "\n*** SKIP noxxi_hidden_content_in_text_is_flagged: no {} ***\n",
            dir.display()
        );
        return;
    }
    let mut files = Vec::new();
    walk(&dir, &mut files);
    let mut failures = Vec::new();
    let (mut mails, mut in_text) = (0, 0);
    for path in files {
        let data = std::fs::read(&path).expect("read");
        let id = data
            .split(|&b| b == b'\n')
            .find(|l| l.starts_with(b"X-Payload-Id:"))
            .and_then(|l| {
                String::from_utf8_lossy(l)
                    .split_whitespace()
                    .nth(1)
                    .map(String::from)
            })
            .unwrap_or_else(|| path.display().to_string());
        let mut c = Check::default();
        let mut p = Parser::new(Limits::default());
        p.feed(&data, &mut c);
        p.finish(&mut c);
        mails += 1;
        in_text += c.in_text;
        failures.extend(c.unflagged.into_iter().map(|u| format!("{id}: {u}")));
    }
    println!("noxxi: {mails} mails, zip data inside {in_text} text parts, all flagged suspicious");
    assert!(mails >= 370, "only {mails} noxxi mails");
    assert!(
        failures.is_empty(),
        "unflagged text parts holding the zip:\n{}",
        failures.join("\n")
    );
}

/// Benchmark, not a check (run in release): parser throughput on a directory of mail
/// (`MUGAIKA_PERF_DIR`, e.g. the output of `genmail.py --count 400`), whole and in 4 KiB
/// chunks, against mail-parser's parse of the same bytes.
/// `MUGAIKA_PERF_DIR=/tmp/gm cargo test --release --test mime_chunks parser_throughput -- --ignored --nocapture`
#[test]
#[ignore]
fn parser_throughput() {
    struct Count(u64);
    impl Sink for Count {
        fn part_start(&mut self, _: &Part) {}
        fn body(&mut self, d: &[u8]) {
            self.0 += d.len() as u64;
        }
        fn part_end(&mut self, _: &PartEnd) {}
    }
    let Some(dir) = std::env::var_os("MUGAIKA_PERF_DIR") else {
        eprintln!("set MUGAIKA_PERF_DIR");
        return;
    };
    let mut files = Vec::new();
    walk(Path::new(&dir), &mut files);
    let msgs: Vec<Vec<u8>> = files.iter().filter_map(|p| std::fs::read(p).ok()).collect();
    let total: usize = msgs.iter().map(Vec::len).sum();
    let rounds = 5;
    let mb = |d: Duration| (total * rounds) as f64 / 1e6 / d.as_secs_f64();
    let t = Instant::now();
    let mut sink = Count(0);
    for _ in 0..rounds {
        for m in &msgs {
            let mut p = Parser::new(Limits::default());
            p.feed(m, &mut sink);
            p.finish(&mut sink);
        }
    }
    let ours_whole = t.elapsed();
    let t = Instant::now();
    for _ in 0..rounds {
        for m in &msgs {
            let mut p = Parser::new(Limits::default());
            for c in m.chunks(4096) {
                p.feed(c, &mut sink);
            }
            p.finish(&mut sink);
        }
    }
    let ours_chunked = t.elapsed();
    let t = Instant::now();
    let mut n = 0;
    for _ in 0..rounds {
        for m in &msgs {
            if let Some(msg) = mail_parser::MessageParser::default().parse(m.as_slice()) {
                n += msg.parts.len();
            }
        }
    }
    let theirs = t.elapsed();
    println!(
        "{} messages, {:.1} MB: ours {:.0} MB/s whole, {:.0} MB/s in 4 KiB chunks; \
         mail-parser {:.0} MB/s ({n} parts); ratio {:.2}",
        msgs.len(),
        total as f64 / 1e6,
        mb(ours_whole),
        mb(ours_chunked),
        mb(theirs),
        theirs.as_secs_f64() / ours_chunked.as_secs_f64()
    );
    assert!(sink.0 > 0);
}

/// Randomised mutations of the regression inputs (splices of MIME-significant fragments, CRs,
/// deletions, duplications), parsed with default and with tiny limits (pieces of 40 octets,
/// 3 levels, 6 parts): never a panic, and the same events however the input is split.
#[test]
fn mutations_keep_chunk_invariance() {
    const FRAGMENTS: &[&[u8]] = &[
        b"\r",
        b"\n",
        b"\r\n",
        b"\r\r\n",
        b"--",
        b"--b",
        b"--b--",
        b"=",
        b"=\r\n",
        b"=4",
        b"==",
        b" ",
        b"\t",
        b":",
        b";",
        b"\"",
        b"(",
        b")",
        b"\\",
        b"\0",
        b"\xff",
        b"*0*=",
        b"%",
        b"Content-Type: multipart/mixed; boundary=b\n",
        b"Content-Type: message/rfc822\n",
        b"Content-Transfer-Encoding: base64\n",
        b"Content-Transfer-Encoding: quoted-printable\n",
        b"\n\n",
        b"--:foo",
        b"--o",
        b"--z",
        b"--=_b",
    ];
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/mime"));
    let mut inputs = Vec::new();
    walk(dir, &mut inputs);
    let seeds: Vec<Vec<u8>> = inputs
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .filter_map(|p| std::fs::read(p).ok())
        .collect();
    assert!(!seeds.is_empty());
    let tiny = Limits {
        max_header_size: 300,
        max_depth: 3,
        max_parts: 6,
        max_boundary_length: 20,
        max_line_length: 40,
    };
    let mut rng = XorShift(0x5eed_1234_abcd_ef01);
    let mut failures = Vec::new();
    for round in 0..5000 {
        let base = &seeds[(rng.next() % seeds.len() as u64) as usize];
        let mut m = base.clone();
        for _ in 0..1 + rng.next() % 6 {
            let at = (rng.next() % (m.len() as u64 + 1)) as usize;
            match rng.next() % 4 {
                0 | 1 => {
                    let f = FRAGMENTS[(rng.next() % FRAGMENTS.len() as u64) as usize];
                    m.splice(at..at, f.iter().copied());
                }
                2 => {
                    let n = (rng.next() % 8) as usize;
                    m.drain(at..(at + n).min(m.len()));
                }
                _ => {
                    let n = (rng.next() % 64) as usize;
                    let piece: Vec<u8> = m[at..(at + n).min(m.len())].to_vec();
                    m.splice(at..at, piece);
                }
            }
        }
        for limits in [Limits::default(), tiny] {
            let r = std::panic::catch_unwind(|| {
                let (whole, s, _) = parse(&m, limits, Split::Whole);
                for split in [Split::Fixed(1), Split::Fixed(3), Split::Random(round)] {
                    let (ev, s2, _) = parse(&m, limits, split);
                    if ev != whole || s2 != s {
                        return Err(format!("{split:?}"));
                    }
                }
                Ok(())
            });
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failures.push(format!(
                    "round {round}: {e}: {:?}",
                    String::from_utf8_lossy(&m)
                )),
                Err(_) => failures.push(format!(
                    "round {round}: PANIC: {:?}",
                    String::from_utf8_lossy(&m)
                )),
            }
        }
        if failures.len() > 3 {
            break;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
