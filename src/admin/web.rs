//! The administrators' web page: search the quarantine, see what was removed from a message
//! and why, release it. Server-rendered HTML in Japanese (the default) or English, inline
//! CSS, no script and no external asset, so that it works on an isolated LGWAN terminal and a
//! strict Content-Security-Policy (`default-src 'none'`) can forbid everything else.
//!
//! Login takes the admin token once and sets a session cookie (`HttpOnly`,
//! `SameSite=Strict`, `Path=/`) whose value is a random 256-bit session id kept in memory with
//! an absolute expiry — never the token itself, so a leaked cookie dies with the process or
//! after [`SESSION_TTL`]. Every POST (login, logout, release) checks `Origin` (or `Referer`)
//! against `Host` when the browser sends one, and the session's own CSRF token (a second random
//! value, compared in constant time) except at login. Every value shown is HTML-escaped:
//! subjects, names and addresses come from the Internet.
//!
//! Language: `?lang=ja|en` wins, else the first of `ja`/`en` in `Accept-Language` by quality,
//! else Japanese. Every page links to the other language.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use rand::RngCore;
use serde::Deserialize;

use super::api::{self, ApiError, Detail, SearchParams};
use super::{ct_eq, Shared};
use crate::quarantine::{Record, Status};

/// How long a login lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// Sessions kept at most; the oldest is dropped beyond this.
const MAX_SESSIONS: usize = 256;
const COOKIE: &str = "mugaika_session";

/// Logged-in sessions, in memory (a restart logs everyone out).
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

#[derive(Debug, Clone)]
struct Session {
    csrf: String,
    expires: Instant,
}

fn random_hex() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b.iter().fold(String::with_capacity(64), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

impl Sessions {
    /// A new session: (id, CSRF token).
    fn create(&self) -> (String, String) {
        let id = random_hex();
        let csrf = random_hex();
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, s| s.expires > now);
        while map.len() >= MAX_SESSIONS {
            let oldest = map
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => map.remove(&k),
                None => break,
            };
        }
        map.insert(
            id.clone(),
            Session {
                csrf: csrf.clone(),
                expires: now + SESSION_TTL,
            },
        );
        (id, csrf)
    }

    /// The CSRF token of a live session.
    fn csrf(&self, id: &str) -> Option<String> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(id)
            .filter(|s| s.expires > Instant::now())
            .map(|s| s.csrf.clone())
    }

    fn remove(&self, id: &str) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(id);
    }
}

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/", get(index))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/message/{id}", get(message))
        .route("/message/{id}/release", post(release))
        .route("/message/{id}/unlock", post(unlock))
}

// ---------------------------------------------------------------------------------------------
// Language.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Ja,
    En,
}

impl Lang {
    fn code(self) -> &'static str {
        match self {
            Lang::Ja => "ja",
            Lang::En => "en",
        }
    }

    fn other(self) -> Lang {
        match self {
            Lang::Ja => Lang::En,
            Lang::En => Lang::Ja,
        }
    }

    /// The Japanese or the English text.
    fn t(self, ja: &'static str, en: &'static str) -> &'static str {
        match self {
            Lang::Ja => ja,
            Lang::En => en,
        }
    }

    /// `?lang=` if valid, else `Accept-Language`, else Japanese.
    pub fn choose(param: Option<&str>, headers: &HeaderMap) -> Lang {
        match param.map(str::trim) {
            Some("en") => return Lang::En,
            Some("ja") => return Lang::Ja,
            _ => {}
        }
        let accept = headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mut best: Option<(f32, Lang)> = None;
        for item in accept.split(',').take(32) {
            let mut fields = item.split(';');
            let tag = fields.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = fields
                .find_map(|f| f.trim().strip_prefix("q=").map(str::to_string))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            let primary = tag.split('-').next().unwrap_or("");
            let lang = match primary {
                "ja" => Lang::Ja,
                "en" => Lang::En,
                _ => continue,
            };
            if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, lang));
            }
        }
        best.map_or(Lang::Ja, |(_, l)| l)
    }
}

// ---------------------------------------------------------------------------------------------
// HTML helpers.

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\t' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a query value.
fn url(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A time for people: JST for Japanese (the administrators' zone), UTC for English.
fn when(t: SystemTime, lang: Lang) -> String {
    match lang {
        Lang::Ja => {
            let s = crate::quarantine::rfc3339(t + Duration::from_secs(9 * 3600));
            format!("{} JST", s.trim_end_matches('Z').replacen('T', " ", 1))
        }
        Lang::En => {
            let s = crate::quarantine::rfc3339(t);
            format!("{} UTC", s.trim_end_matches('Z').replacen('T', " ", 1))
        }
    }
}

const STYLE: &str = "body{font-family:\"Noto Sans CJK JP\",\"IPAexGothic\",\"Yu Gothic\",Meiryo,sans-serif;margin:0;background:#f5f6f8;color:#222}\
header{background:#1d3b5a;color:#fff;padding:.6em 1em;display:flex;align-items:center;gap:1em}\
header h1{font-size:1.1em;margin:0;flex:1}header a{color:#fff}\
main{padding:1em}table{border-collapse:collapse;background:#fff;width:100%;margin:.5em 0 1.2em}\
th,td{border:1px solid #ccd;padding:.3em .5em;text-align:left;vertical-align:top;\
overflow-wrap:anywhere}th{background:#e8ecf2}\
form.search{display:flex;flex-wrap:wrap;gap:.5em;align-items:end;background:#fff;padding:.7em;\
border:1px solid #ccd}form.search label{display:flex;flex-direction:column;font-size:.85em}\
input,select,button{font-size:1em;padding:.25em}button{cursor:pointer}\
.err{background:#fde8e8;border:1px solid #d99;padding:.6em;margin:.5em 0}\
.ok{background:#e6f6e6;border:1px solid #8c8;padding:.6em;margin:.5em 0}\
.status-held{color:#a60}.status-released{color:#070}.status-purged{color:#777}\
.login{max-width:26em;margin:3em auto;background:#fff;padding:1.5em;border:1px solid #ccd}\
.login input{width:100%;box-sizing:border-box;margin:.5em 0}";

/// Everything a page needs around its body.
struct Page<'a> {
    lang: Lang,
    title: &'a str,
    /// The path of this page, for the language switch.
    path: &'a str,
    /// Present when logged in: shows the logout button.
    csrf: Option<&'a str>,
}

impl Page<'_> {
    fn render(&self, status: StatusCode, body: &str) -> Response {
        let l = self.lang;
        let mut h = String::with_capacity(body.len() + 4096);
        let _ = write!(
            h,
            "<!DOCTYPE html><html lang=\"{}\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width\">\
             <title>{} — mugaika</title><style>{STYLE}</style></head><body><header>\
             <h1><a href=\"/?lang={}\">mugaika</a> {}</h1>",
            l.code(),
            esc(self.title),
            l.code(),
            esc(l.t("隔離メール管理", "quarantine administration")),
        );
        let sep = if self.path.contains('?') { '&' } else { '?' };
        let _ = write!(
            h,
            "<a id=\"lang-switch\" href=\"{}{}lang={}\">{}</a>",
            esc(self.path),
            sep,
            l.other().code(),
            l.t("English", "日本語"),
        );
        if let Some(csrf) = self.csrf {
            let _ = write!(
                h,
                "<form method=\"post\" action=\"/logout\" style=\"margin:0\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
                 <input type=\"hidden\" name=\"lang\" value=\"{}\">\
                 <button id=\"logout\" type=\"submit\">{}</button></form>",
                esc(csrf),
                l.code(),
                l.t("ログアウト", "Log out"),
            );
        }
        let _ = write!(h, "</header><main>{body}</main></body></html>");
        let mut r = (status, h).into_response();
        let hs = r.headers_mut();
        hs.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        security_headers(hs);
        r
    }
}

fn security_headers(hs: &mut HeaderMap) {
    hs.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    hs.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    hs.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    hs.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    hs.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn redirect(to: &str, cookie: Option<String>) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    security_headers(r.headers_mut());
    r
}

// ---------------------------------------------------------------------------------------------
// Sessions and request checks.

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k.trim() == name).then(|| v.trim())
        })
}

/// The session id and CSRF token of a logged-in request.
fn session(st: &Shared, headers: &HeaderMap) -> Option<(String, String)> {
    let id = cookie_value(headers, COOKIE)?;
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let csrf = st.sessions.csrf(id)?;
    Some((id.to_string(), csrf))
}

/// Whether a POST comes from our own pages: `Origin` (or, without it, `Referer`) must name
/// the host the request was sent to. Requests with neither pass (older clients, curl); the
/// CSRF token is the main defence, this is the second.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(|h| h.trim().to_ascii_lowercase());
    let authority = |u: &str| -> Option<String> {
        let rest = u
            .strip_prefix("http://")
            .or_else(|| u.strip_prefix("https://"))?;
        Some(rest.split('/').next().unwrap_or("").to_ascii_lowercase())
    };
    let claimed = if let Some(o) = headers.get(header::ORIGIN) {
        Some(o.to_str().ok().and_then(authority))
    } else {
        headers
            .get(header::REFERER)
            .map(|r| r.to_str().ok().and_then(authority))
    };
    match claimed {
        None => true,
        Some(Some(a)) => host.is_some_and(|h| h == a),
        Some(None) => false, // "null", unparsable, or not UTF-8
    }
}

fn login_page(st: &Shared, lang: Lang, status: StatusCode, error: Option<&str>) -> Response {
    let l = lang;
    let mut b = String::new();
    b.push_str("<div class=\"login\">");
    if !st.token.is_set() {
        let _ = write!(
            b,
            "<p class=\"err\" id=\"error\">{}</p></div>",
            esc(l.t(
                "管理トークンが設定されていません（admin.token）。この画面は使えません。",
                "No admin token is configured (admin.token): this page is disabled.",
            ))
        );
        return Page {
            lang,
            title: l.t("ログイン", "Log in"),
            path: "/",
            csrf: None,
        }
        .render(StatusCode::FORBIDDEN, &b);
    }
    let _ = write!(b, "<h2>{}</h2>", l.t("ログイン", "Log in"));
    if let Some(e) = error {
        let _ = write!(b, "<p class=\"err\" id=\"error\">{}</p>", esc(e));
    }
    let _ = write!(
        b,
        "<form method=\"post\" action=\"/login\">\
         <label for=\"token\">{}</label>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" \
         required autofocus>\
         <input type=\"hidden\" name=\"lang\" value=\"{}\">\
         <button id=\"login\" type=\"submit\">{}</button></form></div>",
        l.t("管理トークン", "Admin token"),
        l.code(),
        l.t("ログイン", "Log in"),
    );
    Page {
        lang,
        title: l.t("ログイン", "Log in"),
        path: "/",
        csrf: None,
    }
    .render(status, &b)
}

fn error_page(lang: Lang, csrf: Option<&str>, status: StatusCode, msg: &str) -> Response {
    let body = format!(
        "<p class=\"err\" id=\"error\">{}</p><p><a href=\"/?lang={}\">{}</a></p>",
        esc(msg),
        lang.code(),
        lang.t("検索に戻る", "Back to search")
    );
    Page {
        lang,
        title: lang.t("エラー", "Error"),
        path: "/",
        csrf,
    }
    .render(status, &body)
}

fn api_error_page(lang: Lang, csrf: &str, e: ApiError) -> Response {
    let msg = match e.status {
        StatusCode::NOT_FOUND => lang.t("該当するメールはありません。", "No such message."),
        StatusCode::GONE => lang.t(
            "保存期間を過ぎて原本は削除されています。",
            "The original was purged (retention).",
        ),
        StatusCode::SERVICE_UNAVAILABLE => lang.t(
            "このサーバーは隔離なしで動作しています。",
            "This server runs without a quarantine.",
        ),
        _ => "",
    };
    let text = if msg.is_empty() {
        e.message
    } else {
        format!("{msg} ({})", e.message)
    };
    error_page(lang, Some(csrf), e.status, &text)
}

// ---------------------------------------------------------------------------------------------
// Pages.

#[derive(Debug, Default)]
struct IndexQuery {
    lang: Option<String>,
    search: SearchParams,
}

async fn index(
    State(st): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let q = IndexQuery {
        lang: q.get("lang").cloned(),
        search: SearchParams {
            since: q.get("since").cloned(),
            sender: q.get("sender").cloned(),
            rcpt: q.get("rcpt").cloned(),
            subject: q.get("subject").cloned(),
            status: q.get("status").cloned(),
            limit: q.get("limit").cloned(),
        },
    };
    let lang = Lang::choose(q.lang.as_deref(), &headers);
    let Some((_, csrf)) = session(&st, &headers) else {
        return login_page(&st, lang, StatusCode::OK, None);
    };
    let l = lang;
    let p = &q.search;
    let mut b = String::new();
    let field = |b: &mut String, name: &str, label: &str, value: &Option<String>, hint: &str| {
        let _ = write!(
            b,
            "<label>{}<input id=\"q-{name}\" name=\"{name}\" value=\"{}\" placeholder=\"{}\"></label>",
            esc(label),
            esc(value.as_deref().unwrap_or("")),
            esc(hint),
        );
    };
    b.push_str("<form class=\"search\" method=\"get\" action=\"/\">");
    field(
        &mut b,
        "since",
        l.t("受信日以降", "Since"),
        &p.since,
        "7d / 2026-11-01",
    );
    field(&mut b, "sender", l.t("差出人", "Sender"), &p.sender, "");
    field(&mut b, "rcpt", l.t("宛先", "Recipient"), &p.rcpt, "");
    field(&mut b, "subject", l.t("件名", "Subject"), &p.subject, "");
    let _ = write!(
        b,
        "<label>{}<select id=\"q-status\" name=\"status\">",
        l.t("状態", "Status")
    );
    let current = p.status.as_deref().unwrap_or("");
    for (v, ja, en) in [
        ("", "すべて", "any"),
        ("held", "保留", "held"),
        ("released", "解放済み", "released"),
        ("purged", "削除済み", "purged"),
    ] {
        let _ = write!(
            b,
            "<option value=\"{v}\"{}>{}</option>",
            if v == current { " selected" } else { "" },
            l.t(ja, en)
        );
    }
    let _ = write!(
        b,
        "</select></label><input type=\"hidden\" name=\"lang\" value=\"{}\">\
         <button id=\"search\" type=\"submit\">{}</button></form>",
        l.code(),
        l.t("検索", "Search")
    );

    let search = match p.to_search(SystemTime::now()) {
        Ok(s) => s,
        Err(e) => {
            let _ = write!(b, "<p class=\"err\" id=\"error\">{}</p>", esc(&e));
            return Page {
                lang,
                title: l.t("検索", "Search"),
                path: "/",
                csrf: Some(&csrf),
            }
            .render(StatusCode::BAD_REQUEST, &b);
        }
    };
    let records = match &st.quarantine {
        Some(quarantine) => {
            let quarantine = quarantine.clone();
            api::blocking(move || quarantine.search(&search)).await
        }
        None => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no quarantine",
        )),
    };
    let records = match records {
        Ok(r) => r,
        Err(e) => return api_error_page(lang, &csrf, e),
    };
    results_table(&mut b, &records, lang);
    Page {
        lang,
        title: l.t("検索", "Search"),
        path: "/",
        csrf: Some(&csrf),
    }
    .render(StatusCode::OK, &b)
}

fn status_text(s: Status, l: Lang) -> &'static str {
    match s {
        Status::Held => l.t("保留", "held"),
        Status::Released => l.t("解放済み", "released"),
        Status::Purged => l.t("削除済み", "purged"),
    }
}

fn results_table(b: &mut String, records: &[Record], l: Lang) {
    let _ = write!(
        b,
        "<p id=\"count\">{} {}</p>",
        records.len(),
        l.t("件", "message(s)")
    );
    if records.is_empty() {
        return;
    }
    let _ = write!(
        b,
        "<table id=\"results\"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th>\
         <th>{}</th><th>{}</th></tr></thead><tbody>",
        l.t("受信日時", "Received"),
        l.t("差出人", "Sender"),
        l.t("宛先", "Recipients"),
        l.t("件名", "Subject"),
        l.t("理由", "Reason"),
        l.t("状態", "Status"),
    );
    for r in records {
        let subject = r.subject.as_deref().unwrap_or("");
        let subject = if subject.is_empty() {
            l.t("（件名なし）", "(no subject)")
        } else {
            subject
        };
        let sender = if r.sender.is_empty() { "<>" } else { &r.sender };
        let _ = write!(
            b,
            "<tr data-id=\"{id}\"><td>{}</td><td>{}</td><td>{}</td>\
             <td><a class=\"open\" href=\"/message/{id}?lang={}\">{}</a></td><td>{}</td>\
             <td class=\"status-{}\">{}</td></tr>",
            esc(&when(r.received_at, l)),
            esc(sender),
            esc(&r.recipients.join(", ")),
            l.code(),
            esc(subject),
            esc(&kept_text(&r.reason, l)),
            r.status.as_str(),
            status_text(r.status, l),
            id = url(&r.id),
        );
    }
    b.push_str("</tbody></table>");
}

/// The notice's wording for an action kind, shortened.
fn kind_text(kind: &str, l: Lang) -> String {
    let ja = match kind {
        "html-converted" => "HTML をテキストに変換",
        "links-rewritten" => "リンクを書き換え",
        "alternative-reduced" => "代替表示を一つに",
        "signature-removed" => "署名を削除",
        "encrypted-removed" => "暗号化部分を削除",
        "attachment-removed" => "添付ファイルを削除",
        "attachment-kept" => "添付ファイルをそのまま通過",
        "attachment-disarmed" => "添付ファイルを無害化",
        "encoded-block-removed" => "本文中の符号化ブロックを削除",
        "control-characters-removed" => "制御文字を削除",
        "charset-detected" => "文字コードを推定",
        "decode-errors" => "復号できない文字あり",
        "forwarded-message" => "転送メールを無害化",
        "structure-repaired" => "壊れた構造を修復",
        "charset-fallback" => "UTF-8 で出力",
        "part-removed" => "パートを削除",
        "first-contact" => "初回送信者ポリシーを適用",
        _ => "",
    };
    match l {
        Lang::Ja if !ja.is_empty() => format!("{ja} ({kind})"),
        _ => kind.to_string(),
    }
}

/// Why an original is kept (`sanitized`, `clean`, `on-error: ...`, `encrypted archive`).
fn kept_text(reason: &str, l: Lang) -> String {
    if l == Lang::En {
        return reason.to_string();
    }
    match reason {
        "sanitized" => "無害化した (sanitized)".into(),
        "clean" => "変更なし・再構成のみ (clean)".into(),
        "encrypted archive" => "暗号化アーカイブを保留 (encrypted archive)".into(),
        r => match r.strip_prefix("on-error: ") {
            Some(why) => format!(
                "無害化できず通知のみ配送 (on-error): {}",
                crate::sanitise::notice::translate_reason(why)
            ),
            None => r.to_string(),
        },
    }
}

/// The action's reason, in Japanese by the notice's own translations (English pieces that
/// have none stay as they are).
fn reason_text(reason: &str, l: Lang) -> String {
    match l {
        Lang::Ja => crate::sanitise::notice::translate_reason(reason),
        Lang::En => reason.to_string(),
    }
}

fn json_text(v: Option<&serde_json::Value>) -> String {
    match v {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn detail_body(b: &mut String, d: &Detail, l: Lang, csrf: &str) {
    let r = &d.record;
    let _ = write!(
        b,
        "<h2 id=\"subject\">{}</h2><table id=\"record\">",
        esc(r
            .subject
            .as_deref()
            .unwrap_or(l.t("（件名なし）", "(no subject)")))
    );
    let size = r.size.to_string();
    let stored = r.stored_size.to_string();
    let kept = kept_text(&r.reason, l);
    let rows: [(&str, &str, &str); 12] = [
        ("ID", "ID", &r.id),
        ("受信日時", "Received", &when(r.received_at, l)),
        ("送信元", "Client", &r.client),
        (
            "差出人",
            "Sender",
            if r.sender.is_empty() { "<>" } else { &r.sender },
        ),
        ("宛先", "Recipients", &r.recipients.join(", ")),
        (
            "Message-ID",
            "Message-ID",
            r.message_id.as_deref().unwrap_or(""),
        ),
        ("サイズ", "Size", &size),
        ("保存サイズ", "Stored size", &stored),
        ("SHA-256", "SHA-256", &r.sha256),
        ("保存理由", "Reason kept", &kept),
        ("状態", "Status", status_text(r.status, l)),
        ("", "", ""),
    ];
    for (ja, en, v) in rows.iter().filter(|(ja, _, _)| !ja.is_empty()) {
        let _ = write!(b, "<tr><th>{}</th><td>{}</td></tr>", l.t(ja, en), esc(v));
    }
    b.push_str("</table>");

    let _ = write!(
        b,
        "<h3>{}</h3>",
        l.t("無害化で行った処理", "What was done, and why")
    );
    let actions = r.actions.as_array().map(Vec::as_slice).unwrap_or_default();
    if actions.is_empty() {
        let _ = write!(b, "<p>{}</p>", l.t("記録なし", "None recorded"));
    } else {
        let _ = write!(
            b,
            "<table id=\"actions\"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th>\
             <th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>",
            l.t("パート", "Part"),
            l.t("処理", "Action"),
            l.t("ファイル名", "Name"),
            l.t("宣言された型", "Declared type"),
            l.t("検出された型", "Detected type"),
            l.t("理由", "Reason"),
            l.t("サイズ（前→後）", "Bytes (before → after)"),
        );
        for a in actions {
            let kind = json_text(a.get("kind"));
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td>{} → {}</td></tr>",
                esc(&json_text(a.get("part"))),
                esc(&kind_text(&kind, l)),
                esc(&json_text(a.get("name"))),
                esc(&json_text(a.get("declared_type"))),
                esc(&json_text(a.get("detected_type"))),
                esc(&reason_text(&json_text(a.get("reason")), l)),
                esc(&json_text(a.get("bytes_before"))),
                esc(&json_text(a.get("bytes_after"))),
            );
        }
        b.push_str("</tbody></table>");
    }

    let _ = write!(b, "<h3>{}</h3>", l.t("原本の構造", "Parts of the original"));
    if let Some(e) = &d.original_error {
        let _ = write!(b, "<p class=\"err\">{}</p>", esc(e));
    } else {
        let _ = write!(
            b,
            "<table id=\"parts\"><thead><tr><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>",
            l.t("型", "Type"),
            l.t("ファイル名", "Name"),
            l.t("サイズ", "Size"),
        );
        for p in &d.parts {
            let indent = "\u{3000}".repeat(p.depth.min(20));
            let _ = write!(
                b,
                "<tr><td>{indent}{}</td><td>{}</td><td>{}</td></tr>",
                esc(&p.content_type),
                esc(p.name.as_deref().unwrap_or("")),
                p.size,
            );
        }
        b.push_str("</tbody></table>");
    }

    let _ = write!(b, "<h3>{}</h3>", l.t("解放の記録", "Releases"));
    if d.releases.is_empty() {
        let _ = write!(b, "<p id=\"no-releases\">{}</p>", l.t("なし", "None"));
    } else {
        let _ = write!(
            b,
            "<table id=\"releases\"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th>\
             </tr></thead><tbody>",
            l.t("日時", "When"),
            l.t("実行者", "By"),
            l.t("宛先", "To"),
            l.t("キューID", "Queued as"),
        );
        for rel in &d.releases {
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&when(rel.at, l)),
                esc(&rel.by),
                esc(&rel.to.join(", ")),
                esc(&rel.queued_as),
            );
        }
        b.push_str("</tbody></table>");
    }

    if r.status != Status::Purged {
        let _ = write!(
            b,
            "<h3>{}</h3><form class=\"search\" method=\"post\" action=\"/message/{}/release\">\
             <label>{}<input id=\"release-to\" name=\"to\" size=\"50\" placeholder=\"{}\"></label>\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <input type=\"hidden\" name=\"lang\" value=\"{}\">\
             <button id=\"release\" type=\"submit\">{}</button></form>",
            l.t("原本を解放", "Release the original"),
            url(&r.id),
            l.t(
                "宛先（空欄なら元の宛先、複数はカンマ区切り）",
                "To (empty: the original recipients; several separated by commas)",
            ),
            esc(&r.recipients.join(", ")),
            esc(csrf),
            l.code(),
            l.t("原本を配送する", "Deliver the original"),
        );
    }
    // PPAP: the password form, for an original held because of an encrypted archive.
    if r.status != Status::Purged && r.reason == "encrypted archive" {
        let _ = write!(
            b,
            "<h3>{}</h3><form class=\"search\" method=\"post\" action=\"/message/{}/unlock\">\
             <label>{}<input id=\"unlock-password\" name=\"password\" type=\"password\" \
             autocomplete=\"off\" required></label>\
             <label>{}<input id=\"unlock-to\" name=\"to\" size=\"50\" placeholder=\"{}\"></label>\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <input type=\"hidden\" name=\"lang\" value=\"{}\">\
             <button id=\"unlock\" type=\"submit\">{}</button></form>",
            l.t(
                "パスワード付きZIPを開封（中のファイルを無害化して配送）",
                "Open the password-protected zip (its files are sanitised and delivered)",
            ),
            url(&r.id),
            l.t("パスワード", "Password"),
            l.t(
                "宛先（空欄なら元の宛先）",
                "To (empty: the original recipients)"
            ),
            esc(&r.recipients.join(", ")),
            esc(csrf),
            l.code(),
            l.t("開封する", "Open"),
        );
    }
}

#[derive(Debug, Default, Deserialize)]
struct LangQuery {
    lang: Option<String>,
}

async fn message(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<LangQuery>,
) -> Response {
    let lang = Lang::choose(q.lang.as_deref(), &headers);
    let Some((_, csrf)) = session(&st, &headers) else {
        return login_page(&st, lang, StatusCode::UNAUTHORIZED, None);
    };
    show_message(&st, lang, &csrf, &id, None).await
}

async fn show_message(
    st: &Shared,
    lang: Lang,
    csrf: &str,
    id: &str,
    done: Option<&str>,
) -> Response {
    let detail = match &st.quarantine {
        Some(q) => {
            let (q, id) = (q.clone(), id.to_string());
            api::blocking(move || api::detail(&q, &id)).await
        }
        None => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no quarantine",
        )),
    };
    let d = match detail {
        Ok(d) => d,
        Err(e) => return api_error_page(lang, csrf, e),
    };
    let mut b = String::new();
    if let Some(msg) = done {
        let _ = write!(b, "<p class=\"ok\" id=\"released\">{}</p>", esc(msg));
    }
    let _ = write!(
        b,
        "<p><a href=\"/?lang={}\">{}</a></p>",
        lang.code(),
        lang.t("← 検索に戻る", "← Back to search")
    );
    detail_body(&mut b, &d, lang, csrf);
    let path = format!("/message/{}", url(id));
    Page {
        lang,
        title: d.record.subject.as_deref().unwrap_or("-"),
        path: &path,
        csrf: Some(csrf),
    }
    .render(StatusCode::OK, &b)
}

#[derive(Debug, Default, Deserialize)]
struct LoginForm {
    token: Option<String>,
    lang: Option<String>,
}

async fn login(State(st): State<Shared>, headers: HeaderMap, Form(f): Form<LoginForm>) -> Response {
    let lang = Lang::choose(f.lang.as_deref(), &headers);
    if !st.token.is_set() {
        return login_page(&st, lang, StatusCode::FORBIDDEN, None);
    }
    if !same_origin(&headers) {
        return login_page(
            &st,
            lang,
            StatusCode::FORBIDDEN,
            Some(lang.t(
                "別のサイトからの送信は受け付けません。",
                "Cross-site request refused.",
            )),
        );
    }
    if !st.token.matches(f.token.as_deref().unwrap_or("").trim()) {
        tracing::warn!(target: "audit", event = "admin-login-failed", "admin: wrong token at login");
        // A pause per failure: guessing stays slow even from a script.
        tokio::time::sleep(Duration::from_millis(300)).await;
        return login_page(
            &st,
            lang,
            StatusCode::UNAUTHORIZED,
            Some(lang.t("トークンが違います。", "Wrong token.")),
        );
    }
    let (id, _) = st.sessions.create();
    tracing::info!(target: "audit", event = "admin-login", "admin: web login");
    let cookie = format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_TTL.as_secs()
    );
    redirect(&format!("/?lang={}", lang.code()), Some(cookie))
}

#[derive(Debug, Default, Deserialize)]
struct CsrfForm {
    csrf: Option<String>,
    lang: Option<String>,
    to: Option<String>,
}

/// The session of a POST whose CSRF token and origin check out.
fn checked_post(
    st: &Shared,
    headers: &HeaderMap,
    form: &CsrfForm,
    lang: Lang,
) -> Result<(String, String), Box<Response>> {
    let Some((id, csrf)) = session(st, headers) else {
        return Err(Box::new(login_page(
            st,
            lang,
            StatusCode::UNAUTHORIZED,
            None,
        )));
    };
    let given = form.csrf.as_deref().unwrap_or("");
    if !same_origin(headers) || !ct_eq(given.as_bytes(), csrf.as_bytes()) {
        tracing::warn!(target: "audit", event = "admin-csrf-refused", "admin: CSRF check failed");
        return Err(Box::new(error_page(
            lang,
            Some(&csrf),
            StatusCode::FORBIDDEN,
            lang.t(
                "フォームの確認に失敗しました。画面を開き直してください。",
                "The form check failed; reload the page and try again.",
            ),
        )));
    }
    Ok((id, csrf))
}

async fn logout(State(st): State<Shared>, headers: HeaderMap, Form(f): Form<CsrfForm>) -> Response {
    let lang = Lang::choose(f.lang.as_deref(), &headers);
    let (id, _) = match checked_post(&st, &headers, &f, lang) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    st.sessions.remove(&id);
    let cookie = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    redirect(&format!("/?lang={}", lang.code()), Some(cookie))
}

async fn release(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let lang = Lang::choose(f.lang.as_deref(), &headers);
    let (_, csrf) = match checked_post(&st, &headers, &f, lang) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let to = match form_recipients(f.to.as_deref(), lang, &csrf) {
        Ok(to) => to,
        Err(r) => return *r,
    };
    let Some(q) = st.quarantine.clone() else {
        return api_error_page(
            lang,
            &csrf,
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no quarantine"),
        );
    };
    let spool_dir = st.cfg.spool.dir.clone();
    let rid = id.clone();
    let queued = api::blocking(move || {
        let to = (!to.is_empty()).then_some(to);
        q.release(&rid, &spool_dir, to.as_deref(), "web")
    })
    .await;
    match queued {
        Ok(queued) => {
            tracing::info!(target: "audit", event = "release", id, by = "web", queued_as = %queued, "admin: released");
            let msg = format!(
                "{} {queued}",
                lang.t(
                    "原本を配送キューに入れました。キューID:",
                    "The original was queued as"
                )
            );
            show_message(&st, lang, &csrf, &id, Some(&msg)).await
        }
        Err(e) => api_error_page(lang, &csrf, e),
    }
}

/// The optional recipients of a release or unlock form (separated by commas, blanks or `、`,
/// at most 100), each checked like the API's; a bad one is an error page.
fn form_recipients(to: Option<&str>, lang: Lang, csrf: &str) -> Result<Vec<String>, Box<Response>> {
    let to: Vec<String> = to
        .unwrap_or("")
        .split([',', ' ', '\n', '\r', '\t', '、'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .take(100)
        .collect();
    if let Some(bad) = to.iter().find(|a| !api::valid_address(a)) {
        let msg = format!(
            "{}: {bad}",
            lang.t("宛先の形式が正しくありません", "Bad address")
        );
        return Err(Box::new(error_page(
            lang,
            Some(csrf),
            StatusCode::BAD_REQUEST,
            &msg,
        )));
    }
    Ok(to)
}

#[derive(Default, Deserialize)]
struct UnlockForm {
    csrf: Option<String>,
    lang: Option<String>,
    to: Option<String>,
    password: Option<String>,
}

/// The password form of the message page: PPAP unlock by the recipient or an administrator
/// ([`crate::quarantine::unlock`]). The password is used for this request only.
async fn unlock(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<UnlockForm>,
) -> Response {
    let lang = Lang::choose(f.lang.as_deref(), &headers);
    let check = CsrfForm {
        csrf: f.csrf.clone(),
        lang: f.lang.clone(),
        to: None,
    };
    let (_, csrf) = match checked_post(&st, &headers, &check, lang) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let to = match form_recipients(f.to.as_deref(), lang, &csrf) {
        Ok(to) => to,
        Err(r) => return *r,
    };
    let Some(q) = st.quarantine.clone() else {
        return api_error_page(
            lang,
            &csrf,
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no quarantine"),
        );
    };
    let password = f.password.unwrap_or_default();
    let cfg = st.cfg.clone();
    let rid = id.clone();
    let done = tokio::task::spawn_blocking(move || {
        let to = (!to.is_empty()).then_some(to);
        crate::quarantine::unlock::unlock(
            &q,
            &rid,
            password.as_bytes(),
            &cfg.spool.dir,
            &cfg,
            to.as_deref(),
            "web",
        )
    })
    .await;
    use crate::quarantine::unlock::UnlockError;
    match done {
        Ok(Ok(o)) => {
            let msg = format!(
                "{} {}",
                lang.t(
                    "パスワード付きZIPを開封し、無害化したファイルを配送キューに入れました。キューID:",
                    "The zip was opened; its sanitised files were queued as"
                ),
                o.queued_as
            );
            show_message(&st, lang, &csrf, &id, Some(&msg)).await
        }
        Ok(Err(e)) => {
            let status =
                StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let msg = match &e {
                UnlockError::WrongPassword { failures, max, .. } => format!(
                    "{} ({failures}/{max})",
                    lang.t("パスワードが違います。", "Wrong password.")
                ),
                UnlockError::LockedOut { .. } => format!(
                    "{} ({e})",
                    lang.t(
                        "パスワードの誤りが続いたため、しばらく開封できません。",
                        "Too many wrong passwords: try again later.",
                    )
                ),
                UnlockError::NothingToUnlock(_) => lang
                    .t(
                        "このメールにはパスワード付きZIPがありません。",
                        "This message holds no password-protected zip.",
                    )
                    .to_string(),
                _ => e.to_string(),
            };
            error_page(lang, Some(&csrf), status, &msg)
        }
        Err(e) => {
            tracing::error!(error = %e, "admin: unlock task failed");
            error_page(
                lang,
                Some(&csrf),
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn language_choice() {
        let none = HeaderMap::new();
        assert_eq!(Lang::choose(None, &none), Lang::Ja);
        assert_eq!(Lang::choose(Some("en"), &none), Lang::En);
        let en = headers(&[("accept-language", "en-US,en;q=0.9,ja;q=0.5")]);
        assert_eq!(Lang::choose(None, &en), Lang::En);
        assert_eq!(Lang::choose(Some("ja"), &en), Lang::Ja);
        let ja = headers(&[("accept-language", "fr;q=1, en;q=0.3, ja-JP;q=0.8")]);
        assert_eq!(Lang::choose(None, &ja), Lang::Ja);
        let other = headers(&[("accept-language", "de, fr")]);
        assert_eq!(Lang::choose(Some("xx"), &other), Lang::Ja);
    }

    #[test]
    fn escaping() {
        assert_eq!(
            esc("<script>alert('x')</script>&\"\u{0}"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;\u{FFFD}"
        );
        assert_eq!(url("a b/é"), "a%20b%2F%C3%A9");
    }

    #[test]
    fn origin_checks() {
        assert!(same_origin(&headers(&[("host", "127.0.0.1:8025")])));
        assert!(same_origin(&headers(&[
            ("host", "127.0.0.1:8025"),
            ("origin", "http://127.0.0.1:8025")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "127.0.0.1:8025"),
            ("origin", "http://evil.example")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "127.0.0.1:8025"),
            ("origin", "null")
        ])));
        assert!(same_origin(&headers(&[
            ("host", "127.0.0.1:8025"),
            ("referer", "http://127.0.0.1:8025/message/A1")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "127.0.0.1:8025"),
            ("referer", "http://127.0.0.1:80250/")
        ])));
    }

    #[test]
    fn sessions_expire_and_are_bounded() {
        let s = Sessions::default();
        let (id, csrf) = s.create();
        assert_eq!(s.csrf(&id).as_deref(), Some(csrf.as_str()));
        assert_ne!(id, csrf);
        assert_eq!(id.len(), 64);
        s.remove(&id);
        assert_eq!(s.csrf(&id), None);
        for _ in 0..MAX_SESSIONS + 10 {
            s.create();
        }
        assert!(s.map.lock().map(|m| m.len()).unwrap_or(0) <= MAX_SESSIONS);
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; mugaika_session=xyz ; c=d"),
        );
        assert_eq!(cookie_value(&h, COOKIE), Some("xyz"));
    }
}
