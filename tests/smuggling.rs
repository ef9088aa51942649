//! SMTP smuggling: every client byte stream in the shared corpus `smtp-smuggling-cases` is
//! replayed over a real 127.0.0.1 socket to the real server (real spool, TCP listener), sent at
//! once, in small pieces and one byte at a time. Whatever the fake end-of-data sequence, the
//! server must never run a second transaction: at most one message is spooled, never one from
//! the smuggled sender, and the server answers exactly one DATA.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mugaika::config::{Config, Dur};
use mugaika::pipeline::{Context, Report, SanitizeError};
use mugaika::smtp::server::{Sanitize, Server};
use mugaika::spool::Spool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Copies the original as the "clean" message, so the test sees exactly what was accepted.
struct Copy;

impl Sanitize for Copy {
    fn sanitize(&self, original: &Path, _: &Context, out: &Path) -> Result<Report, SanitizeError> {
        fs::copy(original, out).map_err(|e| SanitizeError::Internal(e.to_string()))?;
        Ok(Report::default())
    }
    fn notice_only(
        &self,
        _: &Path,
        _: &Context,
        _: &str,
        _: &Path,
    ) -> Result<Report, SanitizeError> {
        Err(SanitizeError::Internal("not used".into()))
    }
}

fn corpus() -> Option<PathBuf> {
    let dir = std::env::var_os("MUGAIKA_CORPORA")
        .map(PathBuf::from)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpora").into())
        .join("smtp-smuggling-cases");
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("MUGAIKA_REQUIRE_CORPORA").as_deref() == Ok("1") {
        panic!("corpus required but missing at {}", dir.display());
    }
    eprintln!(
        "SKIP: smtp-smuggling-cases not found at {} (set MUGAIKA_CORPORA)",
        dir.display()
    );
    None
}

#[derive(Clone, Copy, Debug)]
enum Feed {
    AtOnce,
    Pieces(usize),
}

/// Replays `stream` to a fresh server; returns the reply codes and the spooled messages
/// (sender, original).
async fn replay(stream: &[u8], how: Feed) -> (Vec<u16>, Vec<(String, Vec<u8>)>) {
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(Spool::open(dir.path()).unwrap());
    let mut cfg = Config::default();
    cfg.server.listen = vec!["127.0.0.1:0".parse().unwrap()];
    cfg.server.hostname = "mx.test.example".into();
    cfg.server.relay_domains = vec!["relay.example".into()];
    cfg.server.command_timeout = Dur(Duration::from_secs(10));
    cfg.server.data_timeout = Dur(Duration::from_secs(10));
    let server = Server::new(Arc::new(cfg), spool.clone(), Arc::new(Copy), None).unwrap();
    let listeners = server.bind().await.unwrap();
    let addr = listeners[0].local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn({
        let server = server.clone();
        async move {
            server
                .serve(listeners, async {
                    let _ = stopped.await;
                })
                .await
        }
    });

    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = tcp.into_split();
    let reader = tokio::spawn(async move {
        let mut all = Vec::new();
        let _ = rd.read_to_end(&mut all).await;
        all
    });
    match how {
        Feed::AtOnce => wr.write_all(stream).await.unwrap(),
        Feed::Pieces(n) => {
            for piece in stream.chunks(n) {
                wr.write_all(piece).await.unwrap();
                wr.flush().await.unwrap();
                tokio::task::yield_now().await;
            }
        }
    }
    let replies = tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .expect("the server did not close the session after QUIT")
        .unwrap();
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(20), serving)
        .await
        .unwrap()
        .unwrap();

    let text = String::from_utf8(replies).unwrap();
    let codes = text
        .split("\r\n")
        .filter(|l| l.len() >= 4 && l.as_bytes()[3] == b' ')
        .map(|l| l[..3].parse().unwrap())
        .collect();
    let messages = spool
        .list()
        .unwrap()
        .into_iter()
        .map(|id| {
            let env = spool.load(&id).unwrap();
            (env.sender, fs::read(spool.original_path(&id)).unwrap())
        })
        .collect();
    (codes, messages)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_cases_never_make_a_second_message() {
    let Some(dir) = corpus() else { return };
    let cases: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("cases.json")).unwrap()).unwrap();
    let cases = cases.as_array().unwrap();
    assert_eq!(cases.len(), 13, "cases.json changed");
    let mut replayed = 0;
    for case in cases {
        let file = case["file"].as_str().unwrap();
        let stream = fs::read(dir.join(file)).unwrap();
        let fake = case["fake_end_of_data"].as_str().map(str::as_bytes);
        for how in [Feed::AtOnce, Feed::Pieces(7), Feed::Pieces(1)] {
            let (codes, messages) = replay(&stream, how).await;
            let at = format!("{file} sent {how:?}: replies {codes:?}");
            // One DATA answered, never a second transaction; QUIT still works afterwards.
            assert_eq!(codes.iter().filter(|&&c| c == 354).count(), 1, "{at}");
            assert_eq!(codes.last(), Some(&221), "{at}");
            assert!(messages.len() <= 1, "{at}: {} messages", messages.len());
            assert!(
                messages
                    .iter()
                    .all(|(sender, _)| sender == "sender@client.example"),
                "{at}: a message from the smuggled sender"
            );
            match fake {
                None => {
                    assert_eq!(codes, [220, 250, 250, 250, 354, 250, 221], "{at}");
                    assert_eq!(
                        messages[0].1,
                        b"Subject: control\r\n\r\n.leading dot (stuffed)\r\n"
                    );
                }
                // NUL next to the dot: not an end of data, so the "smuggled" commands are just
                // text of the one message.
                Some(f) if f.contains(&0) => {
                    assert_eq!(codes, [220, 250, 250, 250, 354, 250, 221], "{at}");
                    let body = String::from_utf8_lossy(&messages[0].1).into_owned();
                    assert!(body.contains("MAIL FROM:<admin@relay.example>"), "{at}");
                    assert!(body.ends_with("is vulnerable.\r\n\r\n"), "{at}");
                }
                // A bare CR or LF: the message is refused (5xx) and nothing is spooled.
                Some(_) => {
                    assert_eq!(codes, [220, 250, 250, 250, 354, 550, 221], "{at}");
                    assert!(messages.is_empty(), "{at}");
                }
            }
            replayed += 1;
        }
    }
    assert_eq!(replayed, 39);
}
