//! The admin HTTP listener (axum): health, readiness, Prometheus metrics, the quarantine JSON
//! API and the administrators' web page, all on one address (`admin.listen`, loopback by
//! default).
//!
//! - `/healthz` answers 200 `ok` while the process serves HTTP at all; `/readyz` answers 200
//!   only while the SMTP listener is bound, the spool is open and no shutdown is under way
//!   (503 otherwise), so a load balancer stops sending mail before the drain.
//! - `/metrics` renders [`metrics::METRICS`] plus the queue depth, counted at scrape time.
//! - `/api/...` ([`api`]) takes `Authorization: Bearer TOKEN`; `/` and the pages under it
//!   ([`web`]) take a session cookie obtained by logging in with the same token. The token is
//!   compared in constant time (SHA-256 digests compared with an xor fold). With no token
//!   configured every API and page request is refused: an open quarantine would hand out
//!   exactly the originals that were judged dangerous.
//!
//! Health and metrics stay open without a token: they reveal counts, not mail.

pub mod api;
pub mod metrics;
pub mod web;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::quarantine::Quarantine;
use crate::spool::Spool;

/// Why the admin listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot read the admin token file {path}: {source}")]
    TokenFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("admin server: {0}")]
    Serve(std::io::Error),
}

/// What `/readyz` looks at; set by `serve` as the relay comes up and goes down.
#[derive(Debug, Default)]
pub struct Readiness {
    smtp_bound: AtomicBool,
    spool_open: AtomicBool,
    stopping: AtomicBool,
}

impl Readiness {
    pub fn set_smtp_bound(&self, v: bool) {
        self.smtp_bound.store(v, Ordering::SeqCst);
    }

    pub fn set_spool_open(&self, v: bool) {
        self.spool_open.store(v, Ordering::SeqCst);
    }

    /// Shutdown began: not ready any more, whatever else holds.
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Why the relay is not ready, or None when it is.
    pub fn not_ready(&self) -> Option<&'static str> {
        if self.stopping.load(Ordering::SeqCst) {
            Some("shutting down")
        } else if !self.spool_open.load(Ordering::SeqCst) {
            Some("spool not open")
        } else if !self.smtp_bound.load(Ordering::SeqCst) {
            Some("SMTP listener not bound")
        } else {
            None
        }
    }
}

/// The configured admin token, kept only as its SHA-256 digest.
#[derive(Clone)]
pub struct Token(Option<[u8; 32]>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Token(set)"
        } else {
            "Token(none)"
        })
    }
}

impl Token {
    /// `admin.token`, or the first line of `admin.token_file`; empty means none.
    pub fn from_config(cfg: &crate::config::AdminConfig) -> Result<Token, AdminError> {
        let token = match &cfg.token_file {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|source| AdminError::TokenFile {
                    path: path.clone(),
                    source,
                })?
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string(),
            None => cfg.token.trim().to_string(),
        };
        Ok(Token::new(&token))
    }

    pub fn new(token: &str) -> Token {
        if token.is_empty() {
            Token(None)
        } else {
            Token(Some(Sha256::digest(token.as_bytes()).into()))
        }
    }

    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }

    /// Whether `candidate` is the token. Digests of equal length are compared with an xor
    /// fold, so the time taken does not depend on where the first difference is.
    pub fn matches(&self, candidate: &str) -> bool {
        let Some(expected) = &self.0 else {
            return false;
        };
        let got: [u8; 32] = Sha256::digest(candidate.as_bytes()).into();
        ct_eq(expected, &got)
    }
}

/// Constant-time equality of two equal-length byte strings (false for different lengths).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Everything the handlers share.
pub struct AdminState {
    pub cfg: Arc<Config>,
    pub spool: Arc<Spool>,
    /// None when the server runs without a quarantine index (the API answers 503).
    pub quarantine: Option<Quarantine>,
    pub token: Token,
    pub readiness: Arc<Readiness>,
    pub sessions: web::Sessions,
}

/// The admin server, built from the configuration; see the module documentation.
#[derive(Clone)]
pub struct Admin {
    state: Arc<AdminState>,
}

impl Admin {
    pub fn new(
        cfg: Arc<Config>,
        spool: Arc<Spool>,
        quarantine: Option<Quarantine>,
        readiness: Arc<Readiness>,
    ) -> Result<Admin, AdminError> {
        let token = Token::from_config(&cfg.admin)?;
        if !token.is_set() {
            tracing::warn!("admin: no token configured; the quarantine API and page refuse all");
        }
        Ok(Admin {
            state: Arc::new(AdminState {
                cfg,
                spool,
                quarantine,
                token,
                readiness,
                sessions: web::Sessions::default(),
            }),
        })
    }

    /// Every route of the listener.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics_page))
            .merge(api::routes())
            .merge(web::routes())
            .with_state(self.state.clone())
    }

    /// Binds `admin.listen`.
    pub async fn bind(&self) -> Result<tokio::net::TcpListener, AdminError> {
        let addr = self.state.cfg.admin.listen;
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| AdminError::Bind { addr, source })
    }

    /// Serves on `listener` until `shutdown` completes (connections in progress finish).
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), AdminError> {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "admin: listening");
        }
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(AdminError::Serve)
    }
}

type Shared = Arc<AdminState>;

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(st): State<Shared>) -> Response {
    match st.readiness.not_ready() {
        None => (StatusCode::OK, "ready").into_response(),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
    }
}

async fn metrics_page(State(st): State<Shared>) -> Response {
    let spool = st.spool.clone();
    // A directory listing: cheap, but still file system work, so off the async threads.
    let depth = tokio::task::spawn_blocking(move || spool.list().map(|l| l.len() as u64))
        .await
        .ok()
        .and_then(Result::ok);
    let body = metrics::METRICS.render(depth);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        let t = Token::new("s3cret");
        assert!(t.matches("s3cret"));
        assert!(!t.matches("s3cre"));
        assert!(!t.matches("s3cret "));
        assert!(!t.matches(""));
        let none = Token::new("");
        assert!(!none.is_set());
        assert!(!none.matches(""));
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }

    #[test]
    fn readiness_needs_spool_and_listener_and_no_shutdown() {
        let r = Readiness::default();
        assert!(r.not_ready().is_some());
        r.set_spool_open(true);
        assert_eq!(r.not_ready(), Some("SMTP listener not bound"));
        r.set_smtp_bound(true);
        assert_eq!(r.not_ready(), None);
        r.set_stopping();
        assert_eq!(r.not_ready(), Some("shutting down"));
    }
}
