//! The quarantine JSON API under `/api/`, behind `Authorization: Bearer TOKEN`.
//!
//! - `GET /api/quarantine?since=&sender=&rcpt=&subject=&status=&limit=`: records, newest
//!   first. `since` is a date (`2026-11-01`), a UTC time (`2026-11-01T09:00:00Z`), Unix
//!   seconds, or an age (`7d`, `12h`, `30m`); `limit` defaults to 100 and is capped at 1,000.
//! - `GET /api/quarantine/ID`: `{"record", "releases", "parts"}`, the parts being the MIME tree
//!   of the original (depth, type, name, size), read with mail-parser (an independent parser:
//!   this is the original, hostile bytes and all, and must be shown as another reader sees it).
//! - `POST /api/quarantine/ID/release`, optional JSON `{"to": ["addr", ...], "by": "name"}`:
//!   queues the original through the spool; answers `{"queued_as": ID}`.
//! - `POST /api/quarantine/ID/unlock`, JSON `{"password": "...", "to": [...], "by": "name"}`
//!   (`to` and `by` optional): PPAP unlock ([`crate::quarantine::unlock`]); answers
//!   `{"queued_as", "to", "opened", "members"}`, or 422 for a wrong password (counted), 429
//!   with `Retry-After` when locked out, 409 when there is nothing to unlock.
//!
//! Every quarantine call runs in `spawn_blocking`: the index may be PostgreSQL, whose
//! synchronous client panics on a tokio worker thread, and every call does file I/O.
//! Errors answer JSON `{"error": "..."}`: 401 (with `WWW-Authenticate: Bearer`) for a missing
//! or wrong token, 403 when no token is configured, 400 for bad parameters, 404 for an
//! unknown id, 410 for a purged original, 503 without a quarantine.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::Shared;
use crate::quarantine::{Quarantine, QuarantineError, Record, Release, Search, Status};

/// Results of one search when `limit` is not given, and the most ever returned.
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;
/// Parts listed for one message at most (a hostile message may have thousands).
pub const MAX_PARTS: usize = 500;

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/quarantine", get(list))
        .route("/api/quarantine/{id}", get(show))
        .route("/api/quarantine/{id}/release", post(release))
        .route("/api/quarantine/{id}/unlock", post(unlock))
}

/// An API error: a status and a message, answered as JSON.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl From<QuarantineError> for ApiError {
    fn from(e: QuarantineError) -> ApiError {
        let status = match &e {
            QuarantineError::NotFound(_) => StatusCode::NOT_FOUND,
            QuarantineError::BadId(_) => StatusCode::BAD_REQUEST,
            QuarantineError::Purged(_) => StatusCode::GONE,
            QuarantineError::Release(_) => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %e, "admin: quarantine operation failed");
        }
        ApiError::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": self.message }));
        if self.status == StatusCode::UNAUTHORIZED {
            (
                self.status,
                [(header::WWW_AUTHENTICATE, "Bearer realm=\"mugaika\"")],
                body,
            )
                .into_response()
        } else {
            (self.status, body).into_response()
        }
    }
}

/// Checks the bearer token of a request.
fn authorize(st: &Shared, headers: &HeaderMap) -> Result<(), ApiError> {
    if !st.token.is_set() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "no admin token is configured: the API is disabled",
        ));
    }
    let given = headers
        .get(header::AUTHORIZATION)
        // UTF-8, not only visible ASCII: the token may be any text the configuration holds.
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
    match given {
        Some(t) if st.token.matches(t) => Ok(()),
        Some(_) => Err(ApiError::new(StatusCode::UNAUTHORIZED, "wrong token")),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Authorization: Bearer TOKEN required",
        )),
    }
}

fn quarantine(st: &Shared) -> Result<Quarantine, ApiError> {
    st.quarantine.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "this server runs without a quarantine",
        )
    })
}

/// Runs a quarantine call on the blocking pool.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, QuarantineError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(e) => {
            tracing::error!(error = %e, "admin: quarantine task failed");
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error",
            ))
        }
    }
}

/// The search parameters as they arrive (query string or form).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct SearchParams {
    pub since: Option<String>,
    pub sender: Option<String>,
    pub rcpt: Option<String>,
    pub subject: Option<String>,
    pub status: Option<String>,
    pub limit: Option<String>,
}

fn nonempty(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.chars().take(256).collect())
}

impl SearchParams {
    /// The search, or a message saying which parameter is wrong.
    pub fn to_search(&self, now: SystemTime) -> Result<Search, String> {
        let since = match nonempty(&self.since) {
            Some(s) => Some(parse_since(&s, now).ok_or_else(|| format!("bad since: {s:?}"))?),
            None => None,
        };
        let status = match nonempty(&self.status) {
            Some(s) => Some(Status::parse(&s).ok_or_else(|| format!("bad status: {s:?}"))?),
            None => None,
        };
        let limit = match nonempty(&self.limit) {
            Some(s) => s
                .parse::<usize>()
                .map_err(|_| format!("bad limit: {s:?}"))?
                .clamp(1, MAX_LIMIT),
            None => DEFAULT_LIMIT,
        };
        Ok(Search {
            since,
            sender: nonempty(&self.sender),
            rcpt: nonempty(&self.rcpt),
            subject: nonempty(&self.subject),
            status,
            limit,
        })
    }
}

/// `2026-11-01`, `2026-11-01T09:00:00Z` (or with a space, seconds optional), Unix seconds,
/// or an age before `now`: `7d`, `12h`, `30m`.
pub fn parse_since(s: &str, now: SystemTime) -> Option<SystemTime> {
    let s = s.trim();
    if let Some(unit) = s.chars().last().filter(|c| "dhmw".contains(*c)) {
        let n: u64 = s.get(..s.len() - 1)?.parse().ok()?;
        let secs = match unit {
            'w' => n.checked_mul(7 * 86_400)?,
            'd' => n.checked_mul(86_400)?,
            'h' => n.checked_mul(3600)?,
            _ => n.checked_mul(60)?,
        };
        return Some(
            now.checked_sub(Duration::from_secs(secs))
                .unwrap_or(UNIX_EPOCH),
        );
    }
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && s.len() > 8 {
        return Some(UNIX_EPOCH + Duration::from_secs(s.parse().ok()?));
    }
    let (date, time) = match s.split_once(['T', ' ']) {
        Some((d, t)) => (d, Some(t.trim_end_matches('Z'))),
        None => (s, None),
    };
    let mut ymd = date.splitn(3, '-').map(|p| p.parse::<u64>().ok());
    let (y, m, d) = (ymd.next()??, ymd.next()??, ymd.next()??);
    let days = days_from_civil(y, m, d)?;
    let mut secs = days * 86_400;
    if let Some(t) = time {
        let mut hms = t.splitn(3, ':').map(|p| p.parse::<u64>().ok());
        let h = hms.next()??;
        let mi = hms.next().flatten().unwrap_or(0);
        let se = hms.next().flatten().unwrap_or(0);
        if h > 23 || mi > 59 || se > 60 {
            return None;
        }
        secs += h * 3600 + mi * 60 + se;
    }
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (None for an impossible one).
fn days_from_civil(y: u64, m: u64, d: u64) -> Option<u64> {
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || d == 0 {
        return None;
    }
    let leap = is_leap(y);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if d > *month_days.get(usize::try_from(m - 1).ok()?)? {
        return None;
    }
    let years = (1970..y)
        .map(|yy| if is_leap(yy) { 366 } else { 365 })
        .sum::<u64>();
    let months: u64 = month_days.iter().take((m - 1) as usize).sum();
    Some(years + months + d - 1)
}

fn is_leap(y: u64) -> bool {
    y.is_multiple_of(4) && (!y.is_multiple_of(100) || y.is_multiple_of(400))
}

/// One MIME part of an original.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartInfo {
    /// Nesting depth (0 = the message itself).
    pub depth: usize,
    pub content_type: String,
    pub name: Option<String>,
    /// Decoded octets (0 for a multipart).
    pub size: usize,
}

/// The MIME tree of `raw`, depth first, at most [`MAX_PARTS`] entries.
pub fn part_tree(raw: &[u8]) -> Vec<PartInfo> {
    let mut out = Vec::new();
    if let Some(msg) = mail_parser::MessageParser::default().parse(raw) {
        walk(&msg, 0, 0, &mut out);
    }
    out
}

fn walk(msg: &mail_parser::Message<'_>, part: usize, depth: usize, out: &mut Vec<PartInfo>) {
    use mail_parser::{MimeHeaders, PartType};
    if out.len() >= MAX_PARTS || depth > 64 {
        return;
    }
    let Some(p) = msg.parts.get(part) else {
        return;
    };
    let content_type = p
        .content_type()
        .map(|ct| match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub),
            None => ct.ctype().to_string(),
        })
        .unwrap_or_else(|| "text/plain".into())
        .to_ascii_lowercase();
    out.push(PartInfo {
        depth,
        content_type,
        name: p.attachment_name().map(str::to_string),
        size: p.len(),
    });
    match &p.body {
        PartType::Multipart(children) => {
            for &c in children {
                // Children of a multipart are always later parts; anything else is damage.
                let c = c as usize;
                if c > part {
                    walk(msg, c, depth + 1, out);
                }
            }
        }
        PartType::Message(inner) => walk(inner, 0, depth + 1, out),
        _ => {}
    }
}

/// `GET /api/quarantine/ID`.
#[derive(Debug, Serialize)]
pub struct Detail {
    pub record: Record,
    pub releases: Vec<Release>,
    pub parts: Vec<PartInfo>,
    /// Why the parts are not listed (purged, unreadable), if they are not.
    pub original_error: Option<String>,
}

/// The record, releases and part tree of `id` (blocking; call in `spawn_blocking`).
pub fn detail(q: &Quarantine, id: &str) -> Result<Detail, QuarantineError> {
    let record = q
        .get(id)?
        .ok_or_else(|| QuarantineError::NotFound(id.to_string()))?;
    let releases = q.releases(id)?;
    let (parts, original_error) = if record.status == Status::Purged {
        (Vec::new(), Some("purged".to_string()))
    } else {
        match q.original(id) {
            Ok(raw) => (part_tree(&raw), None),
            Err(e) => (Vec::new(), Some(e.to_string())),
        }
    };
    Ok(Detail {
        record,
        releases,
        parts,
        original_error,
    })
}

/// A name for the audit trail: short, printable, no header-breaking characters.
pub fn valid_by(by: &str) -> bool {
    !by.is_empty()
        && by.chars().count() <= 64
        && by
            .chars()
            .all(|c| c.is_alphanumeric() || " .-_@+".contains(c))
}

/// A recipient address for a release: `local@domain`, printable ASCII or UTF-8, no spaces,
/// angle brackets or controls.
pub fn valid_address(a: &str) -> bool {
    a.len() <= 254
        && a.split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && !d.contains('@'))
        && !a
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>,;\"\\()[]".contains(c))
}

async fn list(State(st): State<Shared>, headers: HeaderMap, uri: Uri) -> Response {
    let r = async {
        authorize(&st, &headers)?;
        let q = quarantine(&st)?;
        let params = axum::extract::Query::<SearchParams>::try_from_uri(&uri)
            .map_err(|e| ApiError::bad_request(e.body_text()))?
            .0;
        let search = params
            .to_search(SystemTime::now())
            .map_err(ApiError::bad_request)?;
        blocking(move || q.search(&search)).await
    }
    .await;
    match r {
        Ok(records) => Json(records).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn show(State(st): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let r = async {
        authorize(&st, &headers)?;
        let q = quarantine(&st)?;
        blocking(move || detail(&q, &id)).await
    }
    .await;
    match r {
        Ok(d) => Json(d).into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseBody {
    to: Option<Vec<String>>,
    by: Option<String>,
}

async fn release(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let r = async {
        authorize(&st, &headers)?;
        let q = quarantine(&st)?;
        let req: ReleaseBody = if body.iter().all(u8::is_ascii_whitespace) {
            ReleaseBody::default()
        } else {
            serde_json::from_slice(&body)
                .map_err(|e| ApiError::bad_request(format!("bad JSON body: {e}")))?
        };
        let (by, to) = checked_by_to(req.by, req.to)?;
        let spool_dir = st.cfg.spool.dir.clone();
        let queued = blocking({
            let id = id.clone();
            let by = by.clone();
            move || q.release(&id, &spool_dir, to.as_deref(), &by)
        })
        .await?;
        tracing::info!(target: "audit", event = "release", id, by, queued_as = %queued, "admin: released");
        Ok::<_, ApiError>(queued)
    }
    .await;
    match r {
        Ok(queued) => Json(serde_json::json!({ "queued_as": queued })).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The `by` (default `api`) and `to` of a release or unlock request, checked so that neither
/// can inject header fields or SMTP commands; an empty `to` means the original recipients.
fn checked_by_to(
    by: Option<String>,
    to: Option<Vec<String>>,
) -> Result<(String, Option<Vec<String>>), ApiError> {
    let by = by.unwrap_or_else(|| "api".into());
    if !valid_by(&by) {
        return Err(ApiError::bad_request(
            "bad by: letters, digits, .-_@+ and spaces",
        ));
    }
    let to = to.filter(|t| !t.is_empty());
    if let Some(bad) = to.iter().flatten().find(|a| !valid_address(a)) {
        return Err(ApiError::bad_request(format!("bad address: {bad:?}")));
    }
    Ok((by, to))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnlockBody {
    password: String,
    to: Option<Vec<String>>,
    by: Option<String>,
}

/// An unlock error as JSON, with `Retry-After` when locked out.
pub fn unlock_error_response(e: &crate::quarantine::unlock::UnlockError) -> Response {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = Json(serde_json::json!({ "error": e.to_string() }));
    match e.retry_after() {
        Some(s) => (status, [(header::RETRY_AFTER, s.to_string())], body).into_response(),
        None => (status, body).into_response(),
    }
}

async fn unlock(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let r = async {
        authorize(&st, &headers)?;
        let q = quarantine(&st)?;
        // The parser's message could quote the password: a fixed text instead.
        let req: UnlockBody = serde_json::from_slice(&body).map_err(|_| {
            ApiError::bad_request(
                "bad JSON body: {\"password\": \"...\", \"to\": [...], \"by\": \"name\"}",
            )
        })?;
        let (by, to) = checked_by_to(req.by, req.to)?;
        Ok::<_, ApiError>((q, req.password, to, by))
    }
    .await;
    let (q, password, to, by) = match r {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let cfg = st.cfg.clone();
    let done = tokio::task::spawn_blocking(move || {
        crate::quarantine::unlock::unlock(
            &q,
            &id,
            password.as_bytes(),
            &cfg.spool.dir,
            &cfg,
            to.as_deref(),
            &by,
        )
    })
    .await;
    match done {
        Ok(Ok(o)) => Json(serde_json::json!({
            "queued_as": o.queued_as,
            "to": o.to,
            "opened": o.opened,
            "not_opened": o.not_opened,
            "members": o.members,
        }))
        .into_response(),
        Ok(Err(e)) => unlock_error_response(&e),
        Err(e) => {
            tracing::error!(error = %e, "admin: unlock task failed");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_forms() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).ok();
        assert_eq!(
            secs(parse_since("7d", now).unwrap_or(now)),
            Some(1_800_000_000 - 604_800)
        );
        assert_eq!(
            secs(parse_since("2h", now).unwrap_or(now)),
            Some(1_800_000_000 - 7200)
        );
        assert_eq!(
            parse_since("2026-11-01", now).and_then(secs),
            Some(1_793_491_200)
        );
        assert_eq!(
            parse_since("2026-11-01T09:30:00Z", now).and_then(secs),
            Some(1_793_491_200 + 9 * 3600 + 1800)
        );
        assert_eq!(
            parse_since("2024-02-29", now).and_then(secs),
            Some(1_709_164_800)
        );
        assert_eq!(
            parse_since("1793491200", now).and_then(secs),
            Some(1_793_491_200)
        );
        for bad in [
            "",
            "x",
            "2026-02-30",
            "2026-13-01",
            "99999999999999999999d",
            "d",
            "7x",
        ] {
            assert_eq!(parse_since(bad, now), None, "{bad}");
        }
    }

    #[test]
    fn search_params_are_checked() {
        let now = SystemTime::now();
        let p = SearchParams {
            status: Some("held".into()),
            subject: Some("  請求書 ".into()),
            limit: Some("5000".into()),
            sender: Some("".into()),
            ..Default::default()
        };
        let s = p.to_search(now).expect("valid");
        assert_eq!(s.status, Some(Status::Held));
        assert_eq!(s.subject.as_deref(), Some("請求書"));
        assert_eq!(s.sender, None);
        assert_eq!(s.limit, MAX_LIMIT);
        let bad = SearchParams {
            status: Some("gone".into()),
            ..Default::default()
        };
        assert!(bad.to_search(now).is_err());
    }

    #[test]
    fn part_tree_lists_nested_parts() {
        let raw = b"From: a@example.com\r\nSubject: x\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n\
--b\r\nContent-Type: application/octet-stream; name=\"a.docm\"\r\n\
Content-Disposition: attachment; filename=\"a.docm\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
AAECAw==\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner body\r\n--b--\r\n";
        let t = part_tree(raw);
        let kinds: Vec<(usize, &str)> = t
            .iter()
            .map(|p| (p.depth, p.content_type.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                (0, "multipart/mixed"),
                (1, "text/plain"),
                (1, "application/octet-stream"),
                (1, "message/rfc822"),
                (2, "text/plain"),
            ]
        );
        assert_eq!(t[2].name.as_deref(), Some("a.docm"));
        assert_eq!(t[2].size, 4);
        assert!(part_tree(b"").len() <= 1);
    }

    #[test]
    fn release_inputs_are_checked() {
        assert!(valid_by("api"));
        assert!(valid_by("山田 太郎"));
        assert!(!valid_by("x\r\nBcc: evil@example.com"));
        assert!(!valid_by(""));
        assert!(valid_address("taro@city.example.lg.jp"));
        assert!(!valid_address("taro@city.example.lg.jp>\r\nRCPT TO:<x@y"));
        assert!(!valid_address("no-at-sign"));
        assert!(!valid_address("a@b@c"));
    }
}
