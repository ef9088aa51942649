//! Delivery end to end against a small SMTP sink on 127.0.0.1: per-recipient outcomes (a
//! refused recipient never fails or duplicates the others), DSNs (to the sender through the
//! bounce hop, never for a null sender), retries after the next hop comes back, the queue
//! lifetime, flush, connection reuse, and the queue operations. Retry intervals are in
//! milliseconds and every wait is bounded.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mugaika::config::{Config, DeliveryTls, Dur};
use mugaika::deliver::{self, QueueManager};
use mugaika::spool::{EntryKind, Envelope, RcptState, Spool};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

const CLEAN: &[u8] = b"From: alice@example.com\r\nTo: bob@city.example.lg.jp\r\n\
Subject: quarterly report\r\nMessage-ID: <m1@example.com>\r\nMIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\r\nHello.\r\n.leading dot\r\n..two dots\r\n\
.\r\nlast line\r\n";

/// One message the sink accepted.
#[derive(Debug, Clone)]
struct Got {
    sender: String,
    rcpts: Vec<String>,
    data: Vec<u8>,
    /// Received after STARTTLS.
    tls: bool,
    /// The AUTH user, if the client authenticated.
    user: Option<String>,
}

/// How the sink answers.
#[derive(Default)]
struct Rules {
    /// Recipient → (reply, how many more times; None = always).
    rcpt: HashMap<String, (String, Option<usize>)>,
    /// Reply to every RCPT not in `rcpt`, if set.
    all_rcpt: Option<String>,
    /// Reply to DATA instead of 354, if set.
    data: Option<String>,
    /// Offer STARTTLS with this acceptor.
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// Offer AUTH PLAIN for this user and password.
    auth: Option<(String, String)>,
    /// Do not advertise 8BITMIME.
    no_8bitmime: bool,
}

#[derive(Default)]
struct SinkState {
    rules: Rules,
    got: Vec<Got>,
    connections: usize,
    /// DATA commands answered with 354.
    data_started: usize,
}

struct Sink {
    addr: SocketAddr,
    state: Arc<Mutex<SinkState>>,
}

impl Sink {
    async fn start(addr: &str, rules: Rules) -> Sink {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(SinkState {
            rules,
            ..Default::default()
        }));
        let st = state.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                st.lock().unwrap().connections += 1;
                tokio::spawn(session(sock, st.clone()));
            }
        });
        Sink { addr, state }
    }

    fn got(&self) -> Vec<Got> {
        self.state.lock().unwrap().got.clone()
    }

    fn connections(&self) -> usize {
        self.state.lock().unwrap().connections
    }
}

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

async fn session(sock: tokio::net::TcpStream, st: Arc<Mutex<SinkState>>) {
    let mut r: BufReader<Box<dyn Stream>> = BufReader::new(Box::new(sock));
    let mut line = String::new();
    let _ = r.get_mut().write_all(b"220 sink ESMTP\r\n").await;
    let mut sender = String::new();
    let mut rcpts: Vec<String> = Vec::new();
    let mut tls = false;
    let mut user: Option<String> = None;
    let (acceptor, auth, no_8bit) = {
        let s = st.lock().unwrap();
        (
            s.rules.tls.clone(),
            s.rules.auth.clone(),
            s.rules.no_8bitmime,
        )
    };
    loop {
        line.clear();
        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let cmd = line.trim_end().to_string();
        let upper = cmd.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") {
            let mut ext = String::from("250-sink\r\n250-PIPELINING\r\n");
            if acceptor.is_some() && !tls {
                ext.push_str("250-STARTTLS\r\n");
            }
            if auth.is_some() {
                ext.push_str("250-AUTH PLAIN\r\n");
            }
            ext.push_str(if no_8bit { "250 HELP" } else { "250 8BITMIME" });
            ext
        } else if upper == "STARTTLS" && acceptor.is_some() && !tls {
            let _ = r.get_mut().write_all(b"220 2.0.0 ready\r\n").await;
            let Some(acc) = acceptor.clone() else { return };
            let Ok(t) = acc.accept(r.into_inner()).await else {
                return;
            };
            r = BufReader::new(Box::new(t));
            tls = true;
            continue;
        } else if let Some(b64) = cmd.strip_prefix("AUTH PLAIN ") {
            use base64::Engine;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .unwrap_or_default();
            let parts: Vec<String> = raw
                .split(|&b| b == 0)
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect();
            match (&auth, parts.as_slice()) {
                (Some((u, p)), [_, cu, cp]) if cu == u && cp == p => {
                    user = Some(u.clone());
                    "235 2.7.0 authenticated".into()
                }
                _ => "535 5.7.8 bad credentials".into(),
            }
        } else if upper == "RSET" {
            sender.clear();
            rcpts.clear();
            "250 ok".into()
        } else if upper == "QUIT" {
            let _ = r.get_mut().write_all(b"221 bye\r\n").await;
            return;
        } else if let Some(rest) = upper.strip_prefix("MAIL FROM:<") {
            let n = rest.find('>').unwrap_or(0);
            sender = cmd["MAIL FROM:<".len().."MAIL FROM:<".len() + n].to_string();
            rcpts.clear();
            "250 ok".into()
        } else if let Some(rest) = upper.strip_prefix("RCPT TO:<") {
            let n = rest.find('>').unwrap_or(0);
            let addr = cmd["RCPT TO:<".len().."RCPT TO:<".len() + n].to_string();
            let mut s = st.lock().unwrap();
            let rules = &mut s.rules;
            let refusal = match rules.rcpt.get_mut(&addr) {
                Some((reply, None)) => Some(reply.clone()),
                Some((reply, Some(n))) if *n > 0 => {
                    *n -= 1;
                    Some(reply.clone())
                }
                Some(_) => None,
                None => rules.all_rcpt.clone(),
            };
            match refusal {
                Some(r) => r,
                None => {
                    rcpts.push(addr);
                    "250 ok".into()
                }
            }
        } else if upper == "DATA" {
            let refusal = st.lock().unwrap().rules.data.clone();
            if let Some(r) = refusal {
                r
            } else if rcpts.is_empty() {
                "554 no valid recipients".into()
            } else {
                let _ = r.get_mut().write_all(b"354 go ahead\r\n").await;
                st.lock().unwrap().data_started += 1;
                let mut data = Vec::new();
                let mut l = Vec::new();
                loop {
                    l.clear();
                    if r.read_until(b'\n', &mut l).await.unwrap_or(0) == 0 {
                        return; // connection dropped mid-DATA: nothing delivered
                    }
                    if l == b".\r\n" {
                        break;
                    }
                    let body = if l.starts_with(b".") { &l[1..] } else { &l[..] };
                    data.extend_from_slice(body);
                }
                st.lock().unwrap().got.push(Got {
                    sender: sender.clone(),
                    rcpts: std::mem::take(&mut rcpts),
                    data,
                    tls,
                    user: user.clone(),
                });
                "250 2.0.0 ok queued".into()
            }
        } else {
            "500 unknown command".into()
        };
        if r.get_mut()
            .write_all(format!("{reply}\r\n").as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}

fn config(hop: SocketAddr) -> Config {
    let mut c = Config::default();
    c.server.hostname = "mugaika.test".into();
    c.server.shutdown_timeout = Dur(Duration::from_secs(3));
    c.delivery.next_hop = hop.to_string();
    c.delivery.tls = DeliveryTls::None;
    c.delivery.retry = vec![Dur(Duration::from_millis(150))];
    c.delivery.max_queue_time = Dur(Duration::from_secs(60));
    c.delivery.connect_timeout = Dur(Duration::from_secs(2));
    c.delivery.command_timeout = Dur(Duration::from_secs(5));
    c.delivery.concurrency = 4;
    c
}

/// A loopback port with nothing listening on it (for a next hop that is down).
fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn enqueue(spool: &Spool, sender: &str, rcpts: &[&str], clean: &[u8]) -> String {
    let mut inc = spool.create().unwrap();
    inc.original_file().write_all(b"the original").unwrap();
    fs::write(inc.clean_path(), clean).unwrap();
    let id = inc.id.clone();
    let mut env = Envelope::new(sender, rcpts.iter().copied());
    env.client = "192.0.2.7".into();
    inc.commit(env).unwrap();
    id
}

struct Running {
    tx: mpsc::UnboundedSender<String>,
    stop: Option<oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<Result<(), deliver::DeliverError>>,
}

impl Running {
    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), self.handle)
            .await
            .expect("manager stops in bounded time")
            .unwrap()
            .unwrap();
    }
}

fn start(cfg: Config, spool: Arc<Spool>) -> Running {
    let (tx, rx) = mpsc::unbounded_channel();
    let (stop, stop_rx) = oneshot::channel::<()>();
    let m = QueueManager::new(Arc::new(cfg), spool)
        .unwrap()
        .rescan_interval(Duration::from_millis(100));
    let handle = tokio::spawn(m.run(rx, async move {
        let _ = stop_rx.await;
    }));
    Running {
        tx,
        stop: Some(stop),
        handle,
    }
}

async fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn queue_is_empty(dir: &Path) -> bool {
    fs::read_dir(dir.join("queue")).unwrap().next().is_none()
}

fn count_rcpt(got: &[Got], rcpt: &str) -> usize {
    got.iter()
        .filter(|g| !g.sender.is_empty())
        .flat_map(|g| g.rcpts.iter())
        .filter(|r| *r == rcpt)
        .count()
}

fn dsns(got: &[Got]) -> Vec<Got> {
    got.iter()
        .filter(|g| g.sender.is_empty())
        .cloned()
        .collect()
}

#[tokio::test]
async fn per_recipient_outcomes_one_dsn_and_no_duplicates() {
    let mut rules = Rules::default();
    rules.rcpt.insert(
        "bad@city.example.lg.jp".into(),
        ("550 5.1.1 no such user".into(), None),
    );
    rules.rcpt.insert(
        "later@city.example.lg.jp".into(),
        ("450 4.2.1 mailbox busy".into(), Some(1)),
    );
    let sink = Sink::start("127.0.0.1:0", rules).await;
    let d = tempfile::tempdir().unwrap();
    let spool = Arc::new(Spool::open(d.path()).unwrap());
    let m = start(config(sink.addr), spool.clone());
    let id = enqueue(
        &spool,
        "alice@example.com",
        &[
            "good@city.example.lg.jp",
            "bad@city.example.lg.jp",
            "later@city.example.lg.jp",
        ],
        CLEAN,
    );
    m.tx.send(id.clone()).unwrap();
    wait_for("queue empty", 10, || queue_is_empty(d.path())).await;
    // Give a wrong duplicate a chance to show up.
    tokio::time::sleep(Duration::from_millis(400)).await;
    m.stop().await;

    let got = sink.got();
    assert_eq!(count_rcpt(&got, "good@city.example.lg.jp"), 1, "{got:#?}");
    assert_eq!(count_rcpt(&got, "later@city.example.lg.jp"), 1, "{got:#?}");
    assert_eq!(count_rcpt(&got, "bad@city.example.lg.jp"), 0);
    for g in got.iter().filter(|g| !g.sender.is_empty()) {
        assert_eq!(g.sender, "alice@example.com");
        assert_eq!(g.data, CLEAN, "the clean message arrives byte for byte");
    }
    let dsn = dsns(&got);
    assert_eq!(dsn.len(), 1, "exactly one DSN: {got:#?}");
    assert_eq!(dsn[0].rcpts, vec!["alice@example.com"]);
    let text = String::from_utf8_lossy(&dsn[0].data).into_owned();
    assert!(
        text.contains("Final-Recipient: rfc822; bad@city.example.lg.jp\r\n"),
        "{text}"
    );
    assert!(text.contains("Status: 5.1.1\r\n"));
    assert!(text.contains("Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n"));
    assert!(text.contains("Remote-MTA: dns; 127.0.0.1\r\n"));
    assert!(!text.contains("Final-Recipient: rfc822; later@"));
    assert!(!text.contains("Final-Recipient: rfc822; good@"));
    assert!(text.contains("From: Mail Delivery System <MAILER-DAEMON@mugaika.test>\r\n"));

    // The DSN is a well-formed RFC 3464 report with the clean message's headers.
    use mail_parser::MimeHeaders;
    let parsed = mail_parser::MessageParser::default()
        .parse(&dsn[0].data)
        .unwrap();
    let ct = parsed.content_type().unwrap();
    assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("report")));
    assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
    let types: Vec<String> = parsed
        .parts
        .iter()
        .filter_map(|p| p.content_type())
        .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or("")))
        .collect();
    assert_eq!(
        types,
        [
            "multipart/report",
            "text/plain",
            "message/delivery-status",
            "text/rfc822-headers"
        ]
    );
    let human = parsed.body_text(0).unwrap();
    assert!(human.contains("could not be delivered"));
    assert!(human.contains("配信できませんでした"));
    assert!(text.contains("Subject: quarterly report\r\n"));
    assert!(!text.contains("Hello."), "the DSN must not carry the body");
}

#[tokio::test]
async fn a_null_sender_never_gets_a_dsn() {
    let rules = Rules {
        all_rcpt: Some("550 5.1.1 nobody here".into()),
        ..Default::default()
    };
    let sink = Sink::start("127.0.0.1:0", rules).await;
    let d = tempfile::tempdir().unwrap();
    let spool = Arc::new(Spool::open(d.path()).unwrap());
    let m = start(config(sink.addr), spool.clone());
    let id = enqueue(&spool, "", &["x@city.example.lg.jp"], CLEAN);
    m.tx.send(id).unwrap();
    wait_for("queue empty", 10, || queue_is_empty(d.path())).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    m.stop().await;
    assert!(sink.got().is_empty(), "{:#?}", sink.got());
    assert!(queue_is_empty(d.path()));
}

#[tokio::test]
async fn refused_data_bounces_every_accepted_recipient() {
    let rules = Rules {
        data: Some("554 5.6.0 content refused".into()),
        ..Default::default()
    };
    let sink = Sink::start("127.0.0.1:0", rules).await;
    let bounce = Sink::start("127.0.0.1:0", Rules::default()).await;
    let d = tempfile::tempdir().unwrap();
    let spool = Arc::new(Spool::open(d.path()).unwrap());
    let mut cfg = config(sink.addr);
    cfg.delivery.bounce_next_hop = Some(bounce.addr.to_string());
    let m = start(cfg, spool.clone());
    let id = enqueue(
        &spool,
        "alice@example.com",
        &["a@city.example.lg.jp", "b@city.example.lg.jp"],
        CLEAN,
    );
    m.tx.send(id).unwrap();
    wait_for("queue empty", 10, || queue_is_empty(d.path())).await;
    m.stop().await;
    assert!(sink.got().is_empty());
    let got = bounce.got();
    assert_eq!(got.len(), 1, "one DSN through the bounce hop: {got:#?}");
    assert_eq!(got[0].sender, "");
    let text = String::from_utf8_lossy(&got[0].data).into_owned();
    assert!(text.contains("Final-Recipient: rfc822; a@city.example.lg.jp\r\n"));
    assert!(text.contains("Final-Recipient: rfc822; b@city.example.lg.jp\r\n"));
    assert!(text.contains("Status: 5.6.0\r\n"));
}

#[tokio::test]
async fn messages_wait_while_the_next_hop_is_down_and_arrive_once_it_returns() {
    let hop = free_port();
    let d = tempfile::tempdir().unwrap();
    let spool = Arc::new(Spool::open(d.path()).unwrap());
    let m = start(config(hop), spool.clone());
    let mut ids = Vec::new();
    for i in 0..5 {
        let id = enqueue(
            &spool,
            "alice@example.com",
            &[&format!("u{i}@city.example.lg.jp")],
            CLEAN,
        );
        m.tx.send(id.clone()).unwrap();
        ids.push(id);
    }
    wait_for("a few failed attempts", 10, || {
        ids.iter()
            .all(|id| spool.load(id).map(|e| e.attempts >= 2).unwrap_or(false))
    })
    .await;
    let env = spool.load(&ids[0]).unwrap();
    assert_eq!(env.recipients[0].state, RcptState::Pending);
    let reply = env.recipients[0].last_reply.clone().unwrap();
    assert!(reply.contains("connect"), "{reply}");
    assert!(env.next_attempt > 0);

    let sink = Sink::start(&hop.to_string(), Rules::default()).await;
    wait_for("queue empty", 10, || queue_is_empty(d.path())).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    m.stop().await;
    let got = sink.got();
    assert_eq!(got.len(), 5, "{got:#?}");
    for i in 0..5 {
        assert_eq!(count_rcpt(&got, &format!("u{i}@city.example.lg.jp")), 1);
    }
    assert!(dsns(&got).is_empty());
}

#[tokio::test]
async fn max_queue_time_bounces_the_rest_through_the_bounce_hop() {
    let rules = Rules {
        all_rcpt: Some("451 4.3.0 try later".into()),
        ..Default::default()
    };
    let sink = Sink::start("127.0.0.1:0", rules).await;
    let bounce = Sink::start("127.0.0.1:0", Rules::default()).await;
    let d = tempfile::tempdir().unwrap();
    let spool = Arc::new(Spool::open(d.path()).unwrap());
    let mut cfg = config(sink.addr);
    cfg.delivery.max_queue_time = Dur(Duration::from_millis(700));
    cfg.delivery.retry = vec![Dur(Duration::from_millis(100))];
    cfg.delivery.bounce_next_hop = Some(bounce.addr.to_string());
    let m = start(cfg, spool.clone());
    let started = Instant::now();
    let id = enqueue(
        &spool,
        "alice@example.com",
        &["slow@city.example.lg.jp"],
        CLEAN,
    );
    m.tx.send(id).unwrap();
    wait_for("queue empty", 10, || queue_is_empty(d.path())).await;
    let took = started.elapsed();
    m.stop().await;
    assert!(
        took >= Duration::from_millis(650),
        "bounced too early: {took:?}"
    );
    assert!(sink.got().is_empty());
    let got = bounce.got();
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0].rcpts, vec!["alice@example.com"]);
    let text = String::from_utf8_lossy(&got[0].data).into_owned();
    assert!(text.contains("Action: failed\r\n"));
    assert!(text.contains("Status: 4.3.0\r\n"), "{text}");
    assert!(text.contains("Diagnostic-Code: smtp; 451 4.3.0 try later\r\n"));
}

#[tokio::test]
async fn flush_makes_a_deferred_entry_due_now() {
    let hop = free_port();
    let d = tempfile::tempdir().unwrap();
    let spool = Arc::new(Spool::open(d.path()).unwrap());
    let mut cfg = config(hop);
    cfg.delivery.retry = vec![Dur(Duration::from_secs(3600))];
    let m = start(cfg, spool.clone());
    let id = enqueue(
        &spool,
        "alice@example.com",
        &["u@city.example.lg.jp"],
        CLEAN,
    );
    m.tx.send(id.clone()).unwrap();
    wait_for("first attempt", 10, || {
        spool.load(&id).map(|e| e.attempts == 1).unwrap_or(false)
    })
    .await;
    let sink = Sink::start(&hop.to_string(), Rules::default()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(sink.got().is_empty(), "next attempt is an hour away");
    // As `mugaika queue flush` does it, from another process's view of the spool.
    deliver::flush(&Spool::attach(d.path()).unwrap()).unwrap();
    wait_for("delivery after flush", 5, || queue_is_empty(d.path())).await;
    m.stop().await;
    assert_eq!(count_rcpt(&sink.got(), "u@city.example.lg.jp"), 1);
}

#[tokio::test]
async fn recipients_marked_delivered_are_never_sent_again() {
    let sink = Sink::start("127.0.0.1:0", Rules::default()).await;
    let d = tempfile::tempdir().unwrap();
    let spool = Arc::new(Spool::open(d.path()).unwrap());
    let id = enqueue(
        &spool,
        "alice@example.com",
        &["done@city.example.lg.jp", "todo@city.example.lg.jp"],
        CLEAN,
    );
    // As left by a crash after the first recipient's result was persisted.
    let mut env = spool.load(&id).unwrap();
    env.recipients[0].state = RcptState::Delivered;
    env.attempts = 1;
    spool.update(&env).unwrap();
    // Not announced on the channel: found by the start-up scan.
    let m = start(config(sink.addr), spool.clone());
    wait_for("queue empty", 10, || queue_is_empty(d.path())).await;
    m.stop().await;
    let got = sink.got();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpts, vec!["todo@city.example.lg.jp"]);
}

#[tokio::test]
async fn connections_are_reused_across_messages() {
    let sink = Sink::start("127.0.0.1:0", Rules::default()).await;
    let d = tempfile::tempdir().unwrap();
    let spool = Arc::new(Spool::open(d.path()).unwrap());
    let mut cfg = config(sink.addr);
    cfg.delivery.concurrency = 1;
    let m = start(cfg, spool.clone());
    for i in 0..6 {
        let id = enqueue(
            &spool,
            "alice@example.com",
            &[&format!("r{i}@x.lg.jp")],
            CLEAN,
        );
        m.tx.send(id).unwrap();
        // One at a time, so that each message finds the previous connection idle.
        wait_for("delivered", 10, || sink.got().len() == i + 1).await;
    }
    wait_for("queue empty", 10, || queue_is_empty(d.path())).await;
    m.stop().await;
    assert_eq!(sink.got().len(), 6);
    assert_eq!(
        sink.connections(),
        1,
        "one pooled connection for six messages"
    );
}

#[tokio::test]
async fn queue_operations_list_and_remove() {
    let hop = free_port();
    let d = tempfile::tempdir().unwrap();
    let spool = Spool::open(d.path()).unwrap();
    let a = enqueue(
        &spool,
        "alice@example.com",
        &["x@city.example.lg.jp"],
        CLEAN,
    );
    let b = enqueue(&spool, "", &["y@city.example.lg.jp"], CLEAN);
    let cli = Spool::attach(d.path()).unwrap();
    let list = deliver::queue_list(&cli).unwrap();
    assert_eq!(
        list.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
        vec![a.clone(), b.clone()]
    );
    assert_eq!(list[0].sender, "alice@example.com");
    assert_eq!(list[1].kind, EntryKind::Message);
    deliver::remove(&cli, &a).unwrap();
    assert!(deliver::remove(&cli, &a).is_err());
    assert!(deliver::remove(&cli, "../etc").is_err());
    let list = deliver::queue_list(&cli).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].id, b);
    let _ = hop;
}

#[tokio::test]
async fn a_running_manager_drops_entries_removed_by_an_administrator() {
    let hop = free_port();
    let d = tempfile::tempdir().unwrap();
    let spool = Arc::new(Spool::open(d.path()).unwrap());
    let mut cfg = config(hop);
    cfg.delivery.retry = vec![Dur(Duration::from_millis(300))];
    let m = start(cfg, spool.clone());
    let id = enqueue(
        &spool,
        "alice@example.com",
        &["u@city.example.lg.jp"],
        CLEAN,
    );
    m.tx.send(id.clone()).unwrap();
    wait_for("first attempt", 10, || {
        spool.load(&id).map(|e| e.attempts >= 1).unwrap_or(false)
    })
    .await;
    deliver::remove(&Spool::attach(d.path()).unwrap(), &id).unwrap();
    let sink = Sink::start(&hop.to_string(), Rules::default()).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    m.stop().await;
    assert!(sink.got().is_empty(), "a removed entry is not delivered");
    assert!(queue_is_empty(d.path()));
}

fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    use tokio_rustls::rustls;
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::try_from(ck.key_pair.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

#[tokio::test]
async fn opportunistic_tls_is_used_when_offered_without_verification() {
    let rules = Rules {
        tls: Some(tls_acceptor()),
        ..Default::default()
    };
    let sink = Sink::start("127.0.0.1:0", rules).await;
    let d = tempfile::tempdir().unwrap();
    let spool = Arc::new(Spool::open(d.path()).unwrap());
    let mut cfg = config(sink.addr);
    cfg.delivery.tls = DeliveryTls::Opportunistic;
    let m = start(cfg, spool.clone());
    let id = enqueue(
        &spool,
        "alice@example.com",
        &["u@city.example.lg.jp"],
        CLEAN,
    );
    m.tx.send(id).unwrap();
    wait_for("queue empty", 10, || queue_is_empty(d.path())).await;
    m.stop().await;
    let got = sink.got();
    assert_eq!(got.len(), 1);
    assert!(
        got[0].tls,
        "a self-signed certificate is accepted in opportunistic mode"
    );
    assert_eq!(got[0].data, CLEAN);
}

#[tokio::test]
async fn required_tls_never_sends_in_clear_or_to_an_unverified_server() {
    // One hop offers no STARTTLS, the other a self-signed certificate: both must defer.
    let plain = Sink::start("127.0.0.1:0", Rules::default()).await;
    let selfsigned = Sink::start(
        "127.0.0.1:0",
        Rules {
            tls: Some(tls_acceptor()),
            ..Default::default()
        },
    )
    .await;
    for (sink, expect) in [
        (&plain, "STARTTLS required"),
        (&selfsigned, "STARTTLS with"),
    ] {
        let d = tempfile::tempdir().unwrap();
        let spool = Arc::new(Spool::open(d.path()).unwrap());
        let mut cfg = config(sink.addr);
        cfg.delivery.tls = DeliveryTls::Required;
        let m = start(cfg, spool.clone());
        let id = enqueue(
            &spool,
            "alice@example.com",
            &["u@city.example.lg.jp"],
            CLEAN,
        );
        m.tx.send(id.clone()).unwrap();
        wait_for("two attempts", 10, || {
            spool.load(&id).map(|e| e.attempts >= 2).unwrap_or(false)
        })
        .await;
        m.stop().await;
        let env = spool.load(&id).unwrap();
        assert_eq!(env.recipients[0].state, RcptState::Pending);
        let reply = env.recipients[0].last_reply.clone().unwrap();
        assert!(reply.contains(expect), "{reply}");
        assert!(sink.got().is_empty());
    }
}

#[tokio::test]
async fn auth_plain_with_the_password_file() {
    let rules = Rules {
        auth: Some(("relay".into(), "s3cret".into())),
        ..Default::default()
    };
    let sink = Sink::start("127.0.0.1:0", rules).await;
    let d = tempfile::tempdir().unwrap();
    let pw = d.path().join("password");
    fs::write(&pw, "s3cret\n").unwrap();
    let spool_dir = d.path().join("spool");
    let spool = Arc::new(Spool::open(&spool_dir).unwrap());
    let mut cfg = config(sink.addr);
    cfg.delivery.auth_user = Some("relay".into());
    cfg.delivery.auth_password_file = Some(pw);
    let m = start(cfg.clone(), spool.clone());
    let id = enqueue(
        &spool,
        "alice@example.com",
        &["u@city.example.lg.jp"],
        CLEAN,
    );
    m.tx.send(id).unwrap();
    wait_for("queue empty", 10, || queue_is_empty(&spool_dir)).await;
    m.stop().await;
    let got = sink.got();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].user.as_deref(), Some("relay"));

    // With TLS expected but not offered, the password is never sent in clear.
    cfg.delivery.tls = DeliveryTls::Opportunistic;
    let m = start(cfg, spool.clone());
    let id = enqueue(
        &spool,
        "alice@example.com",
        &["v@city.example.lg.jp"],
        CLEAN,
    );
    m.tx.send(id.clone()).unwrap();
    wait_for("an attempt", 10, || {
        spool.load(&id).map(|e| e.attempts >= 1).unwrap_or(false)
    })
    .await;
    m.stop().await;
    let reply = spool.load(&id).unwrap().recipients[0]
        .last_reply
        .clone()
        .unwrap();
    assert!(reply.contains("refusing AUTH"), "{reply}");
    assert_eq!(sink.got().len(), 1);
}

/// A next hop that accepts the connection and then says nothing.
async fn silent_hop() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let h = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    (addr, h)
}

#[tokio::test]
async fn a_silent_next_hop_times_out_and_the_message_stays_queued() {
    let (addr, h) = silent_hop().await;
    let d = tempfile::tempdir().unwrap();
    let spool = Arc::new(Spool::open(d.path()).unwrap());
    let mut cfg = config(addr);
    cfg.delivery.command_timeout = Dur(Duration::from_millis(300));
    let m = start(cfg, spool.clone());
    let id = enqueue(
        &spool,
        "alice@example.com",
        &["u@city.example.lg.jp"],
        CLEAN,
    );
    m.tx.send(id.clone()).unwrap();
    wait_for("a timed-out attempt", 10, || {
        spool.load(&id).map(|e| e.attempts >= 1).unwrap_or(false)
    })
    .await;
    m.stop().await;
    let env = spool.load(&id).unwrap();
    assert_eq!(env.recipients[0].state, RcptState::Pending);
    let reply = env.recipients[0].last_reply.clone().unwrap();
    assert!(reply.contains("timed out"), "{reply}");
    h.abort();
}

#[tokio::test]
async fn shutdown_is_bounded_even_with_an_attempt_stuck_in_flight() {
    let (addr, h) = silent_hop().await;
    let d = tempfile::tempdir().unwrap();
    let spool = Arc::new(Spool::open(d.path()).unwrap());
    let mut cfg = config(addr);
    cfg.delivery.command_timeout = Dur(Duration::from_secs(60));
    cfg.server.shutdown_timeout = Dur(Duration::from_millis(300));
    let m = start(cfg, spool.clone());
    let id = enqueue(
        &spool,
        "alice@example.com",
        &["u@city.example.lg.jp"],
        CLEAN,
    );
    m.tx.send(id.clone()).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    m.stop().await;
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    // The abandoned attempt left the entry as it was: pending, to be retried.
    let env = spool.load(&id).unwrap();
    assert_eq!(env.recipients[0].state, RcptState::Pending);
    h.abort();
}

#[tokio::test]
async fn an_unreadable_clean_message_never_ends_the_data() {
    let rules = Rules {
        no_8bitmime: true,
        ..Default::default()
    };
    let sink = Sink::start("127.0.0.1:0", rules).await;
    let d = tempfile::tempdir().unwrap();
    let spool = Arc::new(Spool::open(d.path()).unwrap());
    let id = enqueue(
        &spool,
        "alice@example.com",
        &["u@city.example.lg.jp"],
        CLEAN,
    );
    // A directory opens but every read fails (EISDIR): the failure hits in the middle of DATA.
    let clean = spool.clean_path(&id);
    fs::remove_file(&clean).unwrap();
    fs::create_dir(&clean).unwrap();
    let m = start(config(sink.addr), spool.clone());
    wait_for("an attempt", 10, || {
        spool.load(&id).map(|e| e.attempts >= 1).unwrap_or(false)
    })
    .await;
    m.stop().await;
    assert!(
        sink.state.lock().unwrap().data_started >= 1,
        "the failure must come after 354"
    );
    assert!(
        sink.got().is_empty(),
        "no terminating dot: nothing delivered"
    );
    let env = spool.load(&id).unwrap();
    assert_eq!(env.recipients[0].state, RcptState::Pending);
    let reply = env.recipients[0].last_reply.clone().unwrap();
    assert!(reply.contains("cannot read the clean message"), "{reply}");
}

/// Delivery throughput from the spool to Postfix's `smtp-sink` (a real peer), e.g.
/// `cargo test --release --test deliver -- --ignored --nocapture delivery_throughput`.
/// MUGAIKA_BENCH_N (default 2000) messages of 26 KB, `delivery.concurrency` 8.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn delivery_throughput_to_postfix_smtp_sink() {
    let Some(bin) = ["/usr/sbin/smtp-sink", "/usr/bin/smtp-sink"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        eprintln!("SKIP: Postfix smtp-sink not installed");
        return;
    };
    let n: usize = std::env::var("MUGAIKA_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let hop = free_port();
    let mut sink = std::process::Command::new(bin)
        .args(["-c", "-u", "nobody", &hop.to_string(), "256"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let d = tempfile::tempdir().unwrap();
    let spool = Arc::new(Spool::open(d.path()).unwrap());
    let mut body = CLEAN.to_vec();
    while body.len() < 26 * 1024 {
        body.extend_from_slice(b"0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTU\r\n");
    }
    for i in 0..n {
        enqueue(
            &spool,
            "alice@example.com",
            &[&format!("u{i}@city.example.lg.jp")],
            &body,
        );
    }
    let mut cfg = config(hop);
    cfg.delivery.concurrency = 8;
    let t = Instant::now();
    let m = start(cfg, spool.clone());
    wait_for("queue empty", 600, || queue_is_empty(d.path())).await;
    let wall = t.elapsed();
    m.stop().await;
    let _ = sink.kill();
    let _ = sink.wait();
    println!(
        "delivered {n} messages of {} bytes in {wall:?}: {:.0} msgs/s",
        body.len(),
        n as f64 / wall.as_secs_f64()
    );
}
