//! The admin listener of the real `mugaika serve`: health and readiness, the bearer token of
//! the quarantine API (none, wrong, right), search, show and release through the API (the
//! release reaches the next hop with its `X-Mugaika-Released` header), the web page's login,
//! CSRF and escaping without a browser (tests/browser.rs drives Chromium), and `/metrics`
//! scraped during a load test: the counters must equal what the test sent, exactly.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;

const TOKEN: &str = "test-token-\u{3042}-0123456789";
const DOMAIN: &str = "city.example.lg.jp";

// ---------------------------------------------------------------------------------------------
// A minimal HTTP/1.1 client (Connection: close), enough for the admin listener.

#[derive(Debug)]
struct HttpResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl HttpResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect admin");
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req += &format!("{k}: {v}\r\n");
    }
    req += &format!("Content-Length: {}\r\n\r\n", body.len());
    s.write_all(req.as_bytes()).expect("write request");
    s.write_all(body).expect("write body");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end: {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        while let Some(p) = rest.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..p]).trim(), 16)
                .expect("chunk size");
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[p + 2..p + 2 + size]);
            rest = &rest[p + 2 + size + 2..];
        }
        body = out;
    }
    HttpResponse {
        status,
        headers,
        body: String::from_utf8(body).expect("UTF-8 body"),
    }
}

fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
    http(addr, "GET", path, headers, b"")
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

/// `name{labels} value` lines of a Prometheus text page.
fn metric(page: &str, name: &str) -> Option<f64> {
    page.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (k, v) = l.rsplit_once(' ')?;
        (k == name).then(|| v.parse().ok()).flatten()
    })
}

fn metric_or_zero(page: &str, name: &str) -> f64 {
    metric(page, name).unwrap_or(0.0)
}

struct Setup {
    _tmp: tempfile::TempDir,
    sink: SmtpSink,
    mugaika: Mugaika,
    admin: SocketAddr,
}

/// smtp-sink, then `mugaika serve` with the admin listener on a free port and `token`.
fn setup(token: &str) -> Option<Setup> {
    let tmp = shared_tempdir();
    let sink = SmtpSink::start(tmp.path())?;
    for _ in 0..5 {
        let admin: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let mut cfg = ServeConfig::new(sink.addr, &[DOMAIN]);
        cfg.admin = vec![
            "enabled = true".into(),
            format!("listen = \"{admin}\""),
            format!("token = {token:?}"),
        ];
        let mugaika = Mugaika::start(&tmp.path().join("mugaika"), &cfg);
        if wait_until(Duration::from_secs(10), || accepting(admin)) {
            return Some(Setup {
                _tmp: tmp,
                sink,
                mugaika,
                admin,
            });
        }
        // The admin port was taken between free_port and bind: the relay runs on without it.
        eprintln!("admin listener did not come up on {admin}:\n{}", {
            let mut m = mugaika;
            m.stop(Duration::from_secs(10));
            m.log()
        });
    }
    panic!("the admin listener would not start");
}

fn bare_lf_mail(n: usize) -> Vec<u8> {
    format!(
        "From: <bad{n}@internet.example>\r\nTo: <taro@{DOMAIN}>\r\nSubject: bad {n}\r\n\r\n\
         bare\nline feed\r\n"
    )
    .into_bytes()
}

#[test]
fn api_token_release_and_metrics_under_load() {
    let Some(s) = setup(TOKEN) else { return };
    let admin = s.admin;

    // Health is open; readiness follows the SMTP listener.
    let h = get(admin, "/healthz", &[]);
    assert_eq!((h.status, h.body.as_str()), (200, "ok"));
    assert!(
        wait_until(Duration::from_secs(10), || get(admin, "/readyz", &[])
            .status
            == 200),
        "/readyz never became ready: {:?}",
        get(admin, "/readyz", &[])
    );

    // The API without a token, with a wrong one, with the right one.
    let r = get(admin, "/api/quarantine", &[]);
    assert_eq!(r.status, 401, "{r:?}");
    assert!(
        r.header("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer")),
        "{r:?}"
    );
    for wrong in [
        "Bearer wrong",
        "Bearer ",
        "Basic dGVzdA==",
        "Bearer test-token-",
    ] {
        let r = get(admin, "/api/quarantine", &[("Authorization", wrong)]);
        assert_eq!(r.status, 401, "{wrong}: {r:?}");
    }
    let r = get(
        admin,
        "/api/quarantine/AAAA",
        &[("Authorization", "Bearer nope")],
    );
    assert_eq!(r.status, 401);
    let r = http(admin, "POST", "/api/quarantine/AAAA/release", &[], b"");
    assert_eq!(r.status, 401);
    let r = get(admin, "/api/quarantine", &[("Authorization", &bearer())]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json(), serde_json::json!([]));

    // Load: 200 good messages from 4 threads, 5 with bare LF, 3 recipients outside the relay
    // domains; /metrics scraped all along.
    const GOOD: usize = 200;
    const BAD: usize = 5;
    const DENIED: usize = 3;
    let smtp = s.mugaika.addr;
    let started = Instant::now();
    let scrapes = std::thread::scope(|scope| {
        let senders: Vec<_> = (0..4)
            .map(|t| {
                scope.spawn(move || {
                    for i in 0..GOOD / 4 {
                        let n = t * 1000 + i;
                        let to = format!("user{n}@{DOMAIN}");
                        let mail = html_mail("sender@internet.example", &to, &format!("load{n}"));
                        let code = smtp_send(
                            smtp,
                            "sender@internet.example",
                            &[&to],
                            &mail,
                            Duration::from_secs(60),
                        )
                        .unwrap_or_else(|e| panic!("message {n}: {e}"));
                        assert_eq!(code, 250);
                    }
                })
            })
            .collect();
        let mut scrapes = Vec::new();
        while senders.iter().any(|h| !h.is_finished()) {
            let m = get(admin, "/metrics", &[]);
            assert_eq!(m.status, 200);
            assert!(
                m.header("content-type")
                    .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")),
                "{:?}",
                m.headers
            );
            scrapes.push(metric_or_zero(&m.body, "mugaika_messages_accepted_total"));
            std::thread::sleep(Duration::from_millis(100));
        }
        for h in senders {
            h.join().expect("sender thread");
        }
        scrapes
    });
    for n in 0..BAD {
        let e = smtp_send(
            smtp,
            "bad@internet.example",
            &[&format!("taro@{DOMAIN}")],
            &bare_lf_mail(n),
            Duration::from_secs(30),
        )
        .expect_err("bare LF must be refused");
        assert!(e.contains("550"), "{e}");
    }
    for n in 0..DENIED {
        let e = smtp_send(
            smtp,
            "x@internet.example",
            &[&format!("u{n}@elsewhere.example")],
            b"Subject: x\r\n\r\nx\r\n",
            Duration::from_secs(30),
        )
        .expect_err("relaying must be denied");
        assert!(e.contains("550"), "{e}");
    }
    eprintln!(
        "load: {GOOD} messages in {:?}, {} scrapes",
        started.elapsed(),
        scrapes.len()
    );
    assert!(
        scrapes.windows(2).all(|w| w[0] <= w[1]),
        "counter went backwards: {scrapes:?}"
    );
    s.sink
        .expect_count(GOOD, Duration::from_secs(120), Duration::from_millis(500));
    s.mugaika.expect_queue_empty(Duration::from_secs(30));

    let page = get(admin, "/metrics", &[]).body;
    let m = |name: &str| metric_or_zero(&page, name);
    assert_eq!(m("mugaika_messages_accepted_total"), GOOD as f64, "{page}");
    assert_eq!(m("mugaika_messages_delivered_total"), GOOD as f64, "{page}");
    assert_eq!(m("mugaika_messages_bounced_total"), 0.0, "{page}");
    assert_eq!(m("mugaika_messages_deferred_total"), 0.0, "{page}");
    assert_eq!(
        m("mugaika_messages_refused_total{reason=\"bare-line-ending\"}"),
        BAD as f64,
        "{page}"
    );
    assert_eq!(
        m("mugaika_messages_refused_total{reason=\"relay-denied\"}"),
        DENIED as f64,
        "{page}"
    );
    assert_eq!(
        m("mugaika_actions_total{kind=\"html-converted\"}"),
        GOOD as f64,
        "{page}"
    );
    assert_eq!(m("mugaika_queue_depth"), 0.0, "{page}");
    assert_eq!(m("mugaika_sanitize_seconds_count"), GOOD as f64, "{page}");
    assert_eq!(
        m("mugaika_sanitize_seconds_bucket{le=\"+Inf\"}"),
        GOOD as f64,
        "{page}"
    );
    assert!(m("mugaika_sanitize_seconds_sum") > 0.0, "{page}");
    assert_eq!(m("mugaika_delivery_seconds_count"), GOOD as f64, "{page}");
    for name in ["mugaika_sanitize_seconds", "mugaika_delivery_seconds"] {
        assert!(
            page.contains(&format!("# TYPE {name} histogram\n")),
            "{page}"
        );
    }

    // Search: every accepted original is in the quarantine.
    let all = get(
        admin,
        "/api/quarantine?limit=1000",
        &[("Authorization", &bearer())],
    )
    .json();
    let all = all.as_array().expect("array");
    assert_eq!(all.len(), GOOD, "quarantine records");
    let r = get(
        admin,
        "/api/quarantine?subject=load1017",
        &[("Authorization", &bearer())],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let found = r.json();
    let found = found.as_array().expect("array");
    assert_eq!(found.len(), 1, "{found:?}");
    let rec = &found[0];
    assert_eq!(
        rec["recipients"],
        serde_json::json!([format!("user1017@{DOMAIN}")])
    );
    assert_eq!(rec["status"], "held");
    let id = rec["id"].as_str().expect("id").to_string();
    for bad in ["status=nonsense", "since=yesterday", "limit=x"] {
        let r = get(
            admin,
            &format!("/api/quarantine?{bad}"),
            &[("Authorization", &bearer())],
        );
        assert_eq!(r.status, 400, "{bad}: {r:?}");
    }
    let r = get(
        admin,
        "/api/quarantine?since=1d&rcpt=USER1017&limit=5",
        &[("Authorization", &bearer())],
    );
    assert_eq!(r.json().as_array().map(Vec::len), Some(1), "{r:?}");

    // Show: record, no releases yet, the part tree of the original.
    let d = get(
        admin,
        &format!("/api/quarantine/{id}"),
        &[("Authorization", &bearer())],
    )
    .json();
    assert_eq!(d["record"]["id"], id.as_str());
    assert_eq!(d["releases"], serde_json::json!([]));
    assert_eq!(d["parts"][0]["content_type"], "text/html", "{d}");
    assert!(
        d["record"]["actions"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{d}"
    );
    let r = get(
        admin,
        "/api/quarantine/NOSUCHID",
        &[("Authorization", &bearer())],
    );
    assert_eq!(r.status, 404, "{r:?}");
    let r = get(
        admin,
        "/api/quarantine/..%2Fetc",
        &[("Authorization", &bearer())],
    );
    assert!(r.status == 400 || r.status == 404, "{r:?}");

    // Release to another address, by a named administrator.
    let r = http(
        admin,
        "POST",
        &format!("/api/quarantine/{id}/release"),
        &[
            ("Authorization", &bearer()),
            ("Content-Type", "application/json"),
        ],
        format!(r#"{{"to": ["hanako@{DOMAIN}"], "by": "yamada"}}"#).as_bytes(),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let queued = r.json()["queued_as"]
        .as_str()
        .expect("queued_as")
        .to_string();
    let r = http(
        admin,
        "POST",
        &format!("/api/quarantine/{id}/release"),
        &[("Authorization", &bearer())],
        br#"{"to": ["x@y>\r\nRCPT TO:<evil@example.com"]}"#,
    );
    assert_eq!(r.status, 400, "{r:?}");
    s.sink.expect_count(
        GOOD + 1,
        Duration::from_secs(60),
        Duration::from_millis(300),
    );
    let released: Vec<_> = s
        .sink
        .messages()
        .into_iter()
        .filter(|m| m.rcpts == [format!("hanako@{DOMAIN}")])
        .collect();
    assert_eq!(released.len(), 1);
    let text = String::from_utf8_lossy(&released[0].data);
    assert!(text.contains("X-Mugaika-Released: by yamada"), "{text}");
    assert!(text.contains(&format!("quarantine id {id}")), "{text}");
    let d = get(
        admin,
        &format!("/api/quarantine/{id}"),
        &[("Authorization", &bearer())],
    )
    .json();
    assert_eq!(d["record"]["status"], "released");
    assert_eq!(d["releases"][0]["by"], "yamada");
    assert_eq!(d["releases"][0]["queued_as"], queued.as_str());
    let page = get(admin, "/metrics", &[]).body;
    assert_eq!(
        metric_or_zero(&page, "mugaika_messages_delivered_total"),
        (GOOD + 1) as f64
    );
    // A release is not a newly accepted message.
    assert_eq!(
        metric_or_zero(&page, "mugaika_messages_accepted_total"),
        GOOD as f64
    );

    // Shutdown: not ready while draining, and the admin listener goes away with the relay.
    let mut mugaika = s.mugaika;
    let status = mugaika.stop(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "serve exit: {status:?}\n{}",
        mugaika.log()
    );
    assert!(!accepting(admin), "the admin listener outlived the relay");
}

#[test]
fn web_login_csrf_and_escaping() {
    let Some(s) = setup(TOKEN) else { return };
    let admin = s.admin;
    let hostile = "<script>alert(1)</script>\"'&";
    let to = format!("taro@{DOMAIN}");
    let mail = format!(
        "From: <x@internet.example>\r\nTo: <{to}>\r\nSubject: {hostile}\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/html\r\n\r\n<p>hello</p>\r\n"
    );
    assert_eq!(
        smtp_send(
            s.mugaika.addr,
            "x@internet.example",
            &[&to],
            mail.as_bytes(),
            Duration::from_secs(60)
        ),
        Ok(250)
    );
    s.sink
        .expect_count(1, Duration::from_secs(60), Duration::from_millis(100));

    // Not logged in: the login form, in Japanese by default, English on request.
    let r = get(admin, "/", &[]);
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains("name=\"token\"") && r.body.contains("lang=\"ja\""),
        "{}",
        r.body
    );
    assert!(r
        .header("content-security-policy")
        .is_some_and(|c| c.contains("default-src 'none'")));
    let r = get(admin, "/", &[("Accept-Language", "en-US,en;q=0.9")]);
    assert!(
        r.body.contains("lang=\"en\"") && r.body.contains("Log in"),
        "{}",
        r.body
    );
    let r = get(admin, "/?lang=en", &[]);
    assert!(r.body.contains("lang=\"en\""));
    let r = get(admin, "/message/AAAA", &[]);
    assert_eq!(r.status, 401);

    // Wrong token, cross-site login, then the right token.
    let form = |t: &str| format!("token={}&lang=en", urlencode(t));
    let ct = ("Content-Type", "application/x-www-form-urlencoded");
    let r = http(admin, "POST", "/login", &[ct], form("wrong").as_bytes());
    assert_eq!(r.status, 401);
    assert!(r.header("set-cookie").is_none());
    let r = http(
        admin,
        "POST",
        "/login",
        &[ct, ("Origin", "http://evil.example")],
        form(TOKEN).as_bytes(),
    );
    assert_eq!(r.status, 403);
    assert!(r.header("set-cookie").is_none());
    let r = http(
        admin,
        "POST",
        "/login",
        &[ct, ("Origin", &format!("http://{admin}"))],
        form(TOKEN).as_bytes(),
    );
    assert_eq!(r.status, 303, "{r:?}");
    let cookie = r.header("set-cookie").expect("session cookie").to_string();
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("Path=/"),
        "{cookie}"
    );
    assert!(!cookie.contains(TOKEN) && !cookie.contains(&urlencode(TOKEN)));
    let session = cookie.split(';').next().expect("cookie pair").to_string();

    // The search lists the message, escaped.
    let r = get(admin, "/?lang=en&subject=script", &[("Cookie", &session)]);
    assert_eq!(r.status, 200);
    assert!(
        r.body
            .contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;"),
        "{}",
        r.body
    );
    assert!(!r.body.contains(hostile));
    let id = r
        .body
        .split("data-id=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a result row")
        .to_string();
    let csrf = r
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("csrf token on the page")
        .to_string();
    let detail = get(
        admin,
        &format!("/message/{id}?lang=en"),
        &[("Cookie", &session)],
    );
    assert_eq!(detail.status, 200);
    assert!(detail.body.contains("html-converted"), "{}", detail.body);
    assert!(detail.body.contains("id=\"parts\""));
    assert!(!detail.body.contains(hostile));

    // Release without the CSRF token, with a wrong one, cross-site: refused, nothing queued.
    let path = format!("/message/{id}/release");
    let cookie_h = ("Cookie", session.as_str());
    for (body, origin) in [
        (String::from("lang=en"), None),
        (String::from("csrf=00&lang=en"), None),
        (format!("csrf={csrf}&lang=en"), Some("http://evil.example")),
    ] {
        let mut h = vec![ct, cookie_h];
        if let Some(o) = origin {
            h.push(("Origin", o));
        }
        let r = http(admin, "POST", &path, &h, body.as_bytes());
        assert_eq!(r.status, 403, "{body} {origin:?}: {}", r.body);
    }
    let r = http(
        admin,
        "POST",
        &path,
        &[ct],
        format!("csrf={csrf}").as_bytes(),
    );
    assert_eq!(r.status, 401, "no session");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(s.sink.count(), 1, "a refused release delivered something");

    // The real release.
    let r = http(
        admin,
        "POST",
        &path,
        &[ct, cookie_h, ("Origin", &format!("http://{admin}"))],
        format!("csrf={csrf}&lang=en&to=").as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("id=\"released\""), "{}", r.body);
    s.sink
        .expect_count(2, Duration::from_secs(60), Duration::from_millis(100));
    let d = get(
        admin,
        &format!("/api/quarantine/{id}"),
        &[("Authorization", &bearer())],
    )
    .json();
    assert_eq!(d["releases"][0]["by"], "web");
    assert_eq!(d["releases"][0]["to"], serde_json::json!([to]));

    // Logout ends the session.
    let r = http(
        admin,
        "POST",
        "/logout",
        &[ct, cookie_h],
        format!("csrf={csrf}").as_bytes(),
    );
    assert_eq!(r.status, 303);
    let r = get(admin, &format!("/message/{id}"), &[cookie_h]);
    assert_eq!(r.status, 401);
}

#[test]
fn no_token_refuses_api_and_page() {
    let Some(s) = setup("") else { return };
    let admin = s.admin;
    assert_eq!(get(admin, "/healthz", &[]).status, 200);
    assert_eq!(get(admin, "/metrics", &[]).status, 200);
    for auth in ["", "Bearer ", "Bearer x"] {
        let h: Vec<(&str, &str)> = if auth.is_empty() {
            vec![]
        } else {
            vec![("Authorization", auth)]
        };
        let r = get(admin, "/api/quarantine", &h);
        assert_eq!(r.status, 403, "{auth:?}: {r:?}");
    }
    let r = get(admin, "/", &[]);
    assert_eq!(r.status, 403);
    assert!(!r.body.contains("name=\"token\""));
    let r = http(
        admin,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"token=",
    );
    assert_eq!(r.status, 403);
    assert!(r.header("set-cookie").is_none());
}

/// The admin server in process: `/readyz` follows the readiness flags (spool, SMTP listener,
/// shutdown), a server without a quarantine answers the API with 503, and the graceful
/// shutdown ends the listener.
#[test]
fn readiness_in_process() {
    use mugaika::admin::{Admin, Readiness};
    use std::sync::Arc;
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cfg = mugaika::config::Config::default();
    cfg.spool.dir = tmp.path().join("spool");
    cfg.admin.listen = ([127, 0, 0, 1], 0).into();
    cfg.admin.token = TOKEN.into();
    let spool = Arc::new(mugaika::spool::Spool::open(&cfg.spool.dir).expect("spool"));
    let readiness = Arc::new(Readiness::default());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let admin = Admin::new(Arc::new(cfg), spool, None, readiness.clone()).expect("admin");
    let listener = rt.block_on(admin.bind()).expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let served = rt.spawn(admin.serve(listener, async {
        let _ = stop_rx.await;
    }));

    let ready = || get(addr, "/readyz", &[]);
    let r = ready();
    assert_eq!((r.status, r.body.as_str()), (503, "spool not open"));
    readiness.set_spool_open(true);
    let r = ready();
    assert_eq!(
        (r.status, r.body.as_str()),
        (503, "SMTP listener not bound")
    );
    readiness.set_smtp_bound(true);
    assert_eq!(ready().status, 200);
    let r = get(addr, "/api/quarantine", &[("Authorization", &bearer())]);
    assert_eq!(r.status, 503, "{r:?}");
    let m = get(addr, "/metrics", &[]);
    assert!(m.body.contains("mugaika_queue_depth 0\n"), "{}", m.body);
    readiness.set_stopping();
    let r = ready();
    assert_eq!((r.status, r.body.as_str()), (503, "shutting down"));
    assert_eq!(get(addr, "/healthz", &[]).status, 200);

    let _ = stop_tx.send(());
    let ended = rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), served).await });
    assert!(matches!(ended, Ok(Ok(Ok(())))), "{ended:?}");
    assert!(!accepting(addr));
}
