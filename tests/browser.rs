//! The administrators' web page in a real browser: Debian's headless Chromium, driven over
//! the DevTools protocol, logs in with the token, searches the quarantine, opens a message,
//! releases it, and the original reaches the next-hop sink; a screenshot of the final page is
//! saved to `target/browser-screenshot.png`.
//!
//! The DevTools WebSocket is spoken by a small client below (RFC 6455 text frames, masked,
//! fragmented replies reassembled): the protocol needs nothing more, and it keeps the test
//! free of a WebSocket crate. Chromium runs in its own process group with a fresh profile and
//! every network feature that would stall on this offline machine turned off; the group is
//! killed when the test ends, pass or fail. Every wait is bounded. Without Chromium the test
//! prints a loud SKIP, and fails when `MUGAIKA_REQUIRE_TOOLS=1`.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use common::*;

const TOKEN: &str = "browser-test-token-42";
const DOMAIN: &str = "city.example.lg.jp";

// ---------------------------------------------------------------------------------------------
// Chromium.

/// Headless Chromium in its own process group, killed with the whole group on drop.
struct Chromium {
    child: Child,
    /// The browser's DevTools WebSocket path and port.
    port: u16,
    ws_path: String,
    log: PathBuf,
}

fn chromium_binary() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|n| ["/usr/bin", "/usr/local/bin"].map(|d| Path::new(d).join(n)))
        .find(|p| p.is_file())
}

impl Chromium {
    fn start(bin: &Path, dir: &Path) -> Chromium {
        let profile = dir.join("profile");
        std::fs::create_dir_all(&profile).expect("profile dir");
        let log = dir.join("chromium.log");
        let child = Command::new(bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--window-size=1280,1000",
                "--remote-debugging-port=0",
                "--remote-allow-origins=*",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("chromium log"))
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut c = Chromium {
            child,
            port: 0,
            ws_path: String::new(),
            log,
        };
        // Chromium writes the port it chose, then the browser target's path.
        let active = profile.join("DevToolsActivePort");
        let mut found = None;
        let up = wait_until(Duration::from_secs(30), || {
            if let Ok(text) = std::fs::read_to_string(&active) {
                let mut lines = text.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    if let Ok(port) = port.trim().parse::<u16>() {
                        found = Some((port, path.trim().to_string()));
                        return true;
                    }
                }
            }
            c.child.try_wait().ok().flatten().is_some()
        });
        match found {
            Some((port, path)) if up => {
                c.port = port;
                c.ws_path = path;
                c
            }
            _ => panic!(
                "Chromium did not open its DevTools port within 30 s:\n{}",
                tail(&c.log, 30)
            ),
        }
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        // The browser and its zygote, GPU and renderer children share the process group.
        let group = format!("-{}", self.child.id());
        for sig in ["-TERM", "-KILL"] {
            let _ = Command::new("kill")
                .args([sig, "--", &group])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if wait_until(Duration::from_secs(3), || {
                self.child.try_wait().ok().flatten().is_some()
            }) {
                break;
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// A minimal WebSocket client (RFC 6455) for the DevTools protocol.

struct WebSocket {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl WebSocket {
    fn connect(port: u16, path: &str) -> WebSocket {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut stream =
            TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("DevTools connect");
        stream.set_nodelay(true).ok();
        let mut key = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut key);
        let key = base64::engine::general_purpose::STANDARD.encode(key);
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(req.as_bytes()).expect("handshake write");
        stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            let n = stream.read(&mut chunk).expect("handshake read");
            assert!(n > 0, "DevTools closed during the handshake");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        assert!(
            head.starts_with("HTTP/1.1 101"),
            "handshake refused: {head}"
        );
        buf.drain(..end);
        WebSocket { stream, buf }
    }

    fn send_text(&mut self, text: &str) {
        let payload = text.as_bytes();
        let mut frame = vec![0x81u8]; // FIN, text
        let len = payload.len();
        if len < 126 {
            frame.push(0x80 | len as u8);
        } else if len <= 0xFFFF {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
        let mut mask = [0u8; 4];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut mask);
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame).expect("websocket write");
    }

    /// Reads until `n` buffered octets are available, or `deadline` passes (None).
    fn fill(&mut self, n: usize, deadline: Instant) -> Option<()> {
        let mut chunk = vec![0u8; 64 << 10];
        while self.buf.len() < n {
            let left = deadline.checked_duration_since(Instant::now())?;
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .ok();
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("DevTools connection closed"),
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None
                }
                Err(e) => panic!("websocket read: {e}"),
            }
        }
        Some(())
    }

    /// The next complete text message, or None at `deadline`.
    fn recv_text(&mut self, deadline: Instant) -> Option<String> {
        let mut message = Vec::new();
        loop {
            self.fill(2, deadline)?;
            let (b0, b1) = (self.buf[0], self.buf[1]);
            let fin = b0 & 0x80 != 0;
            let opcode = b0 & 0x0F;
            let masked = b1 & 0x80 != 0;
            let (len, mut off) = match b1 & 0x7F {
                126 => {
                    self.fill(4, deadline)?;
                    (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                }
                127 => {
                    self.fill(10, deadline)?;
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&self.buf[2..10]);
                    (u64::from_be_bytes(b) as usize, 10)
                }
                n => (n as usize, 2),
            };
            let mask = if masked {
                self.fill(off + 4, deadline)?;
                let m = [
                    self.buf[off],
                    self.buf[off + 1],
                    self.buf[off + 2],
                    self.buf[off + 3],
                ];
                off += 4;
                Some(m)
            } else {
                None
            };
            self.fill(off + len, deadline)?;
            let mut payload: Vec<u8> = self.buf.drain(..off + len).skip(off).collect();
            if let Some(m) = mask {
                for (i, b) in payload.iter_mut().enumerate() {
                    *b ^= m[i % 4];
                }
            }
            match opcode {
                0x9 => continue, // ping: Chromium does not need the pong for the test's span
                0xA => continue,
                0x8 => panic!("DevTools closed the WebSocket"),
                _ => message.extend_from_slice(&payload),
            }
            if fin {
                return Some(String::from_utf8(message).expect("UTF-8 DevTools message"));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// DevTools: one page session over the browser connection (flat mode).

struct DevTools {
    ws: WebSocket,
    next_id: u64,
    session: Option<String>,
    /// Events read while waiting for something else.
    events: Vec<Value>,
}

impl DevTools {
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = &self.session {
            msg["sessionId"] = json!(s);
        }
        self.ws.send_text(&msg.to_string());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = self
                .ws
                .recv_text(deadline)
                .unwrap_or_else(|| panic!("no answer to {method} within 30 s"));
            let v: Value = serde_json::from_str(&text).expect("DevTools JSON");
            if v["id"] == json!(id) {
                if let Some(e) = v.get("error") {
                    panic!("{method}: {e}");
                }
                return v["result"].clone();
            }
            if v.get("method").is_some() {
                self.events.push(v);
            }
        }
    }

    /// Waits for the event `method` (of our session), bounded.
    fn wait_event(&mut self, method: &str, limit: Duration) -> Value {
        if let Some(i) = self.events.iter().position(|e| e["method"] == method) {
            return self.events.remove(i);
        }
        let deadline = Instant::now() + limit;
        loop {
            let Some(text) = self.ws.recv_text(deadline) else {
                panic!("no {method} within {limit:?}");
            };
            let v: Value = serde_json::from_str(&text).expect("DevTools JSON");
            if v["method"] == method {
                return v;
            }
        }
    }

    fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expr, "returnByValue": true }),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{expr}: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Runs `action` (which navigates), then waits for the new page to finish loading.
    fn navigate_by(&mut self, action: &str) {
        self.events.clear();
        self.eval(action);
        self.wait_event("Page.loadEventFired", Duration::from_secs(30));
    }

    fn text(&mut self, selector: &str) -> String {
        let expr = format!(
            "(() => {{ const e = document.querySelector({}); return e ? e.innerText : null; }})()",
            json!(selector)
        );
        self.eval(&expr).as_str().unwrap_or("").to_string()
    }
}

// ---------------------------------------------------------------------------------------------

fn mail_with_attachment(to: &str, payload: &[u8]) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(payload);
    let mut m = format!(
        "From: 差出人 <sender@internet.example>\r\nTo: <{to}>\r\n\
         Subject: =?UTF-8?B?{}?=\r\nDate: Mon, 17 Nov 2025 10:00:00 +0900\r\n\
         Message-ID: <browser-test@internet.example>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\n\
         Content-Type: text/html; charset=utf-8\r\n\r\n\
         <p>請求書を送付します。<a href=\"http://phish.example/\">こちら</a></p>\r\n--b1\r\n\
         Content-Type: application/octet-stream; name=\"seikyu.exe\"\r\n\
         Content-Disposition: attachment; filename=\"seikyu.exe\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n",
        base64::engine::general_purpose::STANDARD.encode("ブラウザ試験 <請求書>")
    );
    for chunk in b64.as_bytes().chunks(76) {
        m.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        m.push_str("\r\n");
    }
    m.push_str("--b1--\r\n");
    m.into_bytes()
}

#[test]
fn browser_login_search_release_screenshot() {
    let Some(bin) = chromium_binary() else {
        skip("chromium is not installed (Debian package chromium)");
        return;
    };
    let tmp = shared_tempdir();
    let Some(sink) = SmtpSink::start(tmp.path()) else {
        return;
    };
    let admin: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut cfg = ServeConfig::new(sink.addr, &[DOMAIN]);
    cfg.admin = vec![
        "enabled = true".into(),
        format!("listen = \"{admin}\""),
        format!("token = \"{TOKEN}\""),
    ];
    let mugaika = Mugaika::start(&tmp.path().join("mugaika"), &cfg);
    assert!(
        wait_until(Duration::from_secs(10), || accepting(admin)),
        "admin listener not up:\n{}",
        mugaika.log()
    );

    // The mail: an executable attachment the sanitiser removes.
    let mut payload = b"MZ\x90\x00".to_vec();
    payload.extend((0..2000u32).map(|i| (i * 7 % 251) as u8));
    let to = format!("taro@{DOMAIN}");
    let sent = mail_with_attachment(&to, &payload);
    assert_eq!(
        smtp_send(
            mugaika.addr,
            "sender@internet.example",
            &[&to],
            &sent,
            Duration::from_secs(60)
        ),
        Ok(250)
    );
    sink.expect_count(1, Duration::from_secs(60), Duration::from_millis(100));

    let chromium = Chromium::start(&bin, tmp.path());
    let ws = WebSocket::connect(chromium.port, &chromium.ws_path);
    let mut dt = DevTools {
        ws,
        next_id: 0,
        session: None,
        events: Vec::new(),
    };
    let target = dt.call("Target.createTarget", json!({ "url": "about:blank" }));
    let target_id = target["targetId"].as_str().expect("targetId").to_string();
    let attached = dt.call(
        "Target.attachToTarget",
        json!({ "targetId": target_id, "flatten": true }),
    );
    dt.session = Some(
        attached["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_string(),
    );
    dt.call("Page.enable", json!({}));
    dt.call("Runtime.enable", json!({}));
    // A Japanese administrator's browser (headless Chromium says en-US by itself).
    dt.call("Network.enable", json!({}));
    dt.call(
        "Network.setExtraHTTPHeaders",
        json!({ "headers": { "Accept-Language": "ja-JP,ja;q=0.9,en;q=0.5" } }),
    );

    // The login page, in Japanese by default, with a link to English.
    dt.events.clear();
    dt.call(
        "Page.navigate",
        json!({ "url": format!("http://{admin}/") }),
    );
    dt.wait_event("Page.loadEventFired", Duration::from_secs(30));
    assert_eq!(dt.eval("document.documentElement.lang"), json!("ja"));
    assert!(dt.text("#lang-switch").contains("English"));
    dt.navigate_by("document.getElementById('lang-switch').click()");
    assert_eq!(dt.eval("document.documentElement.lang"), json!("en"));
    assert!(dt.text("#login").contains("Log in"));
    // And back: the rest runs in Japanese, as the administrators use it.
    dt.navigate_by("document.getElementById('lang-switch').click()");
    assert_eq!(dt.eval("document.documentElement.lang"), json!("ja"));

    // A wrong token first, then the right one.
    dt.navigate_by(
        "document.getElementById('token').value = 'wrong'; \
         document.getElementById('login').click()",
    );
    assert!(
        dt.text("#error").contains("トークンが違います"),
        "{}",
        dt.text("body")
    );
    dt.navigate_by(&format!(
        "document.getElementById('token').value = {}; document.getElementById('login').click()",
        json!(TOKEN)
    ));
    assert_eq!(
        dt.eval("document.cookie"),
        json!(""),
        "the session cookie must be HttpOnly"
    );
    assert!(
        dt.eval("!!document.getElementById('search')") == json!(true),
        "{}",
        dt.text("body")
    );

    // Search by subject, open the message.
    dt.navigate_by(
        "document.getElementById('q-subject').value = '請求書'; \
         document.getElementById('search').click()",
    );
    let results = dt.text("#results");
    assert!(results.contains("ブラウザ試験 <請求書>"), "{results}");
    assert!(results.contains("sender@internet.example"), "{results}");
    assert!(dt.text("#count").starts_with('1'), "{}", dt.text("#count"));
    dt.navigate_by("document.querySelector('#results a.open').click()");
    let actions = dt.text("#actions");
    assert!(actions.contains("attachment-removed"), "{actions}");
    assert!(actions.contains("seikyu.exe"), "{actions}");
    let parts = dt.text("#parts");
    assert!(
        parts.contains("multipart/mixed") && parts.contains("seikyu.exe"),
        "{parts}"
    );
    assert!(!dt.text("#no-releases").is_empty());

    // Release to the original recipient.
    dt.navigate_by("document.getElementById('release').click()");
    let done = dt.text("#released");
    assert!(done.contains("キューID"), "{}", dt.text("body"));
    assert_eq!(dt.eval("document.documentElement.lang"), json!("ja"));
    assert!(dt.text("#releases").contains("web"), "{}", dt.text("body"));

    // The screenshot of the page after the release.
    let shot = dt.call("Page.captureScreenshot", json!({ "format": "png" }));
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().expect("screenshot data"))
        .expect("screenshot base64");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{} octets",
        png.len()
    );
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    std::fs::create_dir_all(&target_dir).expect("target dir");
    let out = target_dir.join("browser-screenshot.png");
    std::fs::write(&out, &png).expect("write screenshot");
    println!("screenshot: {}", out.display());
    eprintln!("screenshot: {}", out.display());

    // The original reached the next hop, attachment byte-identical, marked as released.
    sink.expect_count(2, Duration::from_secs(60), Duration::from_millis(200));
    let released = sink
        .messages()
        .into_iter()
        .find(|m| String::from_utf8_lossy(&m.data).contains("X-Mugaika-Released: by web"))
        .expect("the released original at the sink");
    assert_eq!(released.rcpts, std::slice::from_ref(&to));
    let parsed = mail_parser::MessageParser::default()
        .parse(&released.data)
        .expect("released message parses");
    let att = parsed
        .attachments()
        .next()
        .expect("the original attachment");
    assert_eq!(
        att.contents(),
        &payload[..],
        "attachment not byte-identical"
    );

    drop(dt);
    drop(chromium);
    let mut mugaika = mugaika;
    mugaika.stop(Duration::from_secs(30));
}
