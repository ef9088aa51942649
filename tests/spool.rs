//! The durable spool: commit, crash recovery (partial entries, truncated envelopes, an
//! interrupted envelope update), atomic updates, removal and id handling.

use std::fs;
use std::io::Write;
use std::path::Path;

use mugaika::spool::{valid_id, EntryKind, Envelope, RcptState, Spool};

fn envelope() -> Envelope {
    let mut e = Envelope::new(
        "alice@example.com",
        ["bob@city.example.lg.jp", "carol@city.example.lg.jp"],
    );
    e.client = "192.0.2.1".into();
    e.helo = "mx.example.com".into();
    e
}

/// Creates a committed entry with the given contents; returns its id.
fn commit_one(spool: &Spool, original: &[u8], clean: &[u8]) -> String {
    let mut inc = spool.create().unwrap();
    inc.original_file().write_all(original).unwrap();
    fs::write(inc.clean_path(), clean).unwrap();
    let id = inc.id.clone();
    inc.commit(envelope()).unwrap();
    id
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn commit_puts_a_complete_entry_in_the_queue() {
    let d = tempfile::tempdir().unwrap();
    let spool = Spool::open(d.path()).unwrap();
    let id = commit_one(&spool, b"original bytes\r\n", b"clean bytes\r\n");
    assert!(valid_id(&id));
    assert_eq!(spool.list().unwrap(), vec![id.clone()]);
    assert!(
        entries(&d.path().join("tmp")).is_empty(),
        "tmp/ must be empty after commit"
    );
    assert_eq!(
        fs::read(spool.original_path(&id)).unwrap(),
        b"original bytes\r\n"
    );
    assert_eq!(fs::read(spool.clean_path(&id)).unwrap(), b"clean bytes\r\n");
    let env = spool.load(&id).unwrap();
    assert_eq!(env.id, id);
    assert_eq!(env.sender, "alice@example.com");
    assert_eq!(env.recipients.len(), 2);
    assert!(env.recipients.iter().all(|r| r.state == RcptState::Pending));
    assert_eq!(env.size, 13);
    assert!(env.queued_at >= env.received_at);
    assert_eq!(env.kind, EntryKind::Message);
}

#[test]
fn ids_are_unique_and_sorted_by_creation() {
    let d = tempfile::tempdir().unwrap();
    let spool = Spool::open(d.path()).unwrap();
    let ids: Vec<String> = (0..50).map(|_| commit_one(&spool, b"o", b"c")).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, ids, "ids must be unique and increase with creation");
    assert_eq!(spool.list().unwrap(), ids);
}

#[test]
fn dropping_an_uncommitted_entry_removes_it() {
    let d = tempfile::tempdir().unwrap();
    let spool = Spool::open(d.path()).unwrap();
    {
        let mut inc = spool.create().unwrap();
        inc.original_file().write_all(b"half a message").unwrap();
        fs::write(inc.clean_path(), b"x").unwrap();
        assert_eq!(entries(&d.path().join("tmp")).len(), 1);
    }
    assert!(entries(&d.path().join("tmp")).is_empty());
    assert!(spool.list().unwrap().is_empty());
}

#[test]
fn commit_without_a_clean_message_fails_and_queues_nothing() {
    let d = tempfile::tempdir().unwrap();
    let spool = Spool::open(d.path()).unwrap();
    let mut inc = spool.create().unwrap();
    inc.original_file().write_all(b"original").unwrap();
    assert!(inc.commit(envelope()).is_err());
    assert!(spool.list().unwrap().is_empty());
    assert!(entries(&d.path().join("tmp")).is_empty());
}

#[test]
fn a_second_server_on_the_same_spool_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let _a = Spool::open(d.path()).unwrap();
    let err = Spool::open(d.path()).unwrap_err();
    assert!(err.to_string().contains("in use"), "{err}");
    // The CLI may attach beside a server.
    let c = Spool::attach(d.path()).unwrap();
    assert!(c.list().unwrap().is_empty());
}

#[test]
fn recovery_after_a_crash() {
    let d = tempfile::tempdir().unwrap();
    let good;
    let truncated;
    let no_clean;
    let interrupted_update;
    let no_envelope;
    {
        let spool = Spool::open(d.path()).unwrap();
        good = commit_one(&spool, b"o1", b"c1");
        truncated = commit_one(&spool, b"o2", b"c2");
        no_clean = commit_one(&spool, b"o3", b"c3");
        interrupted_update = commit_one(&spool, b"o4", b"c4");
        no_envelope = commit_one(&spool, b"o5", b"c5");
        // Crash while receiving: an entry left in tmp/ (as if the process died: no Drop).
        let mut inc = spool.create().unwrap();
        inc.original_file().write_all(b"partial").unwrap();
        std::mem::forget(inc);
        // And a stray file.
        fs::write(d.path().join("tmp/garbage"), b"x").unwrap();
    }
    let q = d.path().join("queue");
    // A torn envelope (e.g. a disk that lied about fsync) and a missing clean message.
    let env_path = q.join(&truncated).join("envelope.json");
    let json = fs::read(&env_path).unwrap();
    fs::write(&env_path, &json[..json.len() / 2]).unwrap();
    fs::remove_file(q.join(&no_clean).join("clean")).unwrap();
    fs::remove_file(q.join(&no_envelope).join("envelope.json")).unwrap();
    // A crash in the middle of update(): the temporary envelope exists beside the old one.
    fs::write(
        q.join(&interrupted_update).join("envelope.json.tmp"),
        b"{\"id\":",
    )
    .unwrap();

    let spool = Spool::open(d.path()).unwrap();
    let rec = spool.recovered();
    assert_eq!(rec.removed_partial, 2);
    assert!(entries(&d.path().join("tmp")).is_empty());
    assert_eq!(rec.queued, vec![good.clone(), interrupted_update.clone()]);
    let mut corrupt = rec.corrupt.clone();
    corrupt.sort();
    let mut expected = vec![truncated.clone(), no_clean.clone(), no_envelope.clone()];
    expected.sort();
    assert_eq!(corrupt, expected);
    // Corrupt entries are kept (never silently deleted), outside the queue.
    assert_eq!(entries(&d.path().join("corrupt")), expected);
    assert_eq!(
        fs::read(d.path().join("corrupt").join(&truncated).join("original")).unwrap(),
        b"o2"
    );
    assert_eq!(
        spool.list().unwrap(),
        vec![good.clone(), interrupted_update.clone()]
    );
    // The interrupted update left the old envelope, which still loads.
    assert_eq!(
        spool.load(&interrupted_update).unwrap().id,
        interrupted_update
    );
    assert!(!q
        .join(&interrupted_update)
        .join("envelope.json.tmp")
        .exists());
}

#[test]
fn update_rewrites_the_envelope_atomically() {
    let d = tempfile::tempdir().unwrap();
    let spool = Spool::open(d.path()).unwrap();
    let id = commit_one(&spool, b"o", b"c");
    let mut env = spool.load(&id).unwrap();
    env.recipients[0].state = RcptState::Delivered;
    env.recipients[0].last_reply = Some("250 2.0.0 ok".into());
    env.attempts = 1;
    env.next_attempt = 12345;
    spool.update(&env).unwrap();
    assert_eq!(spool.load(&id).unwrap(), env);
    // No temporary file is left behind.
    assert_eq!(
        entries(&d.path().join("queue").join(&id)),
        vec!["clean", "envelope.json", "original"]
    );
    // Updating an entry that is gone is an error, and does not recreate it.
    spool.remove(&id).unwrap();
    assert!(spool.update(&env).is_err());
    assert!(spool.list().unwrap().is_empty());
    assert!(!d.path().join("queue").join(&id).exists());
}

#[test]
fn remove_and_hostile_ids() {
    let d = tempfile::tempdir().unwrap();
    let spool = Spool::open(d.path()).unwrap();
    let a = commit_one(&spool, b"o", b"c");
    let b = commit_one(&spool, b"o", b"c");
    spool.remove(&a).unwrap();
    assert_eq!(spool.list().unwrap(), vec![b.clone()]);
    assert!(entries(&d.path().join("tmp")).is_empty());
    assert!(spool.remove(&a).is_err(), "removing twice is an error");
    for bad in ["", "../queue", "a/b", "..", "x y", &"A".repeat(65)] {
        assert!(!valid_id(bad));
        assert!(spool.load(bad).is_err());
        assert!(spool.remove(bad).is_err());
    }
    assert_eq!(spool.list().unwrap(), vec![b]);
}

#[test]
fn local_entries_and_the_flush_marker() {
    let d = tempfile::tempdir().unwrap();
    let spool = Spool::open(d.path()).unwrap();
    let mut env = Envelope::new("", ["alice@example.com"]);
    env.kind = EntryKind::Dsn;
    let id = spool.enqueue_local(b"DSN text\r\n", env).unwrap();
    let loaded = spool.load(&id).unwrap();
    assert_eq!(loaded.kind, EntryKind::Dsn);
    assert!(loaded.is_null_sender());
    assert!(!loaded.dsn_due());
    assert_eq!(fs::read(spool.clean_path(&id)).unwrap(), b"DSN text\r\n");

    assert!(!spool.take_flush_request());
    Spool::attach(d.path()).unwrap().request_flush().unwrap();
    assert!(spool.take_flush_request());
    assert!(!spool.take_flush_request());
}

/// Commit cost, for the group-commit decision: `cargo test --release --test spool -- --ignored
/// --nocapture commit_throughput`. Prints commits/s sequentially and from 16 threads, and the
/// share of time spent in `commit` (the fsyncs and renames).
#[test]
#[ignore]
fn commit_throughput() {
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    let base = std::env::var_os("MUGAIKA_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let d = tempfile::tempdir_in(base).unwrap();
    let spool = Arc::new(Spool::open(d.path()).unwrap());
    let body = vec![b'x'; 26 * 1024];
    let one = |spool: &Spool| -> Duration {
        let mut inc = spool.create().unwrap();
        inc.original_file().write_all(&body).unwrap();
        fs::write(inc.clean_path(), &body).unwrap();
        let t = Instant::now();
        inc.commit(envelope()).unwrap();
        t.elapsed()
    };
    for threads in [1usize, 16] {
        let per = 400 / threads;
        let t0 = Instant::now();
        let in_commit: Duration = std::thread::scope(|s| {
            let hs: Vec<_> = (0..threads)
                .map(|_| {
                    let spool = spool.clone();
                    let one = &one;
                    s.spawn(move || (0..per).map(|_| one(&spool)).sum::<Duration>())
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        let wall = t0.elapsed();
        let n = per * threads;
        println!(
            "threads={threads} commits={n} wall={wall:?} commits/s={:.0} mean commit={:?} \
             commit share={:.0}%",
            n as f64 / wall.as_secs_f64(),
            in_commit / n as u32,
            100.0 * in_commit.as_secs_f64() / (wall.as_secs_f64() * threads as f64)
        );
    }
}
