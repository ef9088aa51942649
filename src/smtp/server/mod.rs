//! The tokio SMTP server: listeners, access control, connection limits, graceful shutdown.
//!
//! Each accepted connection passes the gate in [`Server::handle_connection`] — `allowed_clients`
//! (554 5.7.1 at connect), shutdown in progress (421 4.3.2), `max_connections` (a semaphore;
//! 421 4.7.0) and `max_connections_per_client` (421 4.7.0) — and then runs a
//! [`session::Session`]. Shutdown follows tokio's mini-redis: a watch channel tells every
//! session to finish the transaction it is in and close (idle ones at once, with 421 4.3.2),
//! the listeners stop accepting, and the server waits for its `JoinSet` of sessions to empty,
//! at most `server.shutdown_timeout`, after which the stragglers are aborted (an aborted
//! session never answered 250, and its uncommitted spool entry is removed when dropped).
//!
//! The session is generic over [`Store`] and [`Sanitize`] (see [`store`]); [`run`] is the
//! production entry point over the real spool and pipeline.
//!
//! Live reload ([`Server::reload`], SIGHUP): everything a session reads from the
//! configuration lives in one [`Shared`] generation. A reload builds a new generation from the
//! new configuration (TLS certificate, relay domains, sanitiser, policies) that shares the
//! connection limits, the per-client counts and the shutdown channel with the old one, and
//! swaps it in: connections accepted afterwards use it, while every session already running
//! keeps the `Arc` of the generation it started with, so it finishes under the configuration
//! it began with. Listen addresses and `max_connections` need a restart (a warning is logged).

mod io;
pub mod received;
mod session;
pub mod store;
mod tls;

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::smtp::proto::{Enhanced, Reply};
use crate::spool::Spool;

pub use store::{Accepted, Entry, Pipeline, Sanitize, Store};

/// Why the server could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("configuration: {0}")]
    Config(String),
}

/// Runs the SMTP server over the real spool and pipeline until `shutdown` completes, then
/// drains (see the module documentation). The id of every committed message is sent on
/// `queued`. Each configuration published on `reloads` (already validated) is served from
/// then on ([`Server::reload`]).
pub async fn run(
    cfg: Arc<Config>,
    spool: Arc<Spool>,
    queued: mpsc::UnboundedSender<String>,
    shutdown: impl Future<Output = ()> + Send,
    mut reloads: watch::Receiver<Arc<Config>>,
) -> Result<(), ServerError> {
    let sanitizer: Arc<dyn Sanitize> = Arc::new(Pipeline::new(cfg.clone()));
    let server = Server::new(cfg, spool, sanitizer, Some(queued))?;
    let listeners = server.bind().await?;
    let reloader = {
        let server = server.clone();
        tokio::spawn(async move {
            while reloads.changed().await.is_ok() {
                let cfg = reloads.borrow_and_update().clone();
                match server.reload(cfg, None) {
                    Ok(()) => tracing::info!("smtp: configuration reloaded"),
                    Err(e) => {
                        tracing::error!(error = %e, "smtp: reload refused, old configuration kept")
                    }
                }
            }
        })
    };
    server.serve(listeners, shutdown).await;
    reloader.abort();
    Ok(())
}

/// What every session shares.
pub(crate) struct Shared<S: Store> {
    cfg: Arc<Config>,
    store: Arc<S>,
    sanitizer: Arc<dyn Sanitize>,
    /// The `[[policy]]` rules of `cfg`, compiled once per generation.
    policies: Arc<crate::policy::Policies>,
    queued: Option<mpsc::UnboundedSender<String>>,
    tls: Option<TlsAcceptor>,
    /// `relay_domains`, lower-cased, without a trailing dot.
    relay_domains: Vec<String>,
    // Shared by every configuration generation (see the module documentation).
    connections: Arc<Semaphore>,
    per_client: Arc<Mutex<HashMap<IpAddr, usize>>>,
    shutdown: Arc<watch::Sender<bool>>,
}

impl<S: Store> Shared<S> {
    /// One configuration generation over the state every generation shares.
    fn generation(
        cfg: Arc<Config>,
        store: Arc<S>,
        sanitizer: Arc<dyn Sanitize>,
        queued: Option<mpsc::UnboundedSender<String>>,
        connections: Arc<Semaphore>,
        per_client: Arc<Mutex<HashMap<IpAddr, usize>>>,
        shutdown: Arc<watch::Sender<bool>>,
    ) -> Result<Shared<S>, ServerError> {
        let tls = match (&cfg.server.tls_cert, &cfg.server.tls_key) {
            (Some(cert), Some(key)) => Some(tls::load_acceptor(cert, key)?),
            _ => None,
        };
        let relay_domains = cfg
            .server
            .relay_domains
            .iter()
            .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
            .collect();
        let policies =
            crate::policy::Policies::new(&cfg).map_err(|e| ServerError::Config(e.to_string()))?;
        Ok(Shared {
            policies: Arc::new(policies),
            cfg,
            store,
            sanitizer,
            queued,
            tls,
            relay_domains,
            connections,
            per_client,
            shutdown,
        })
    }

    /// Whether mail for `domain` (lower-case) may be relayed. An empty list means any domain
    /// (config validation allows that only for loopback-only `allowed_clients`); an entry
    /// starting with a dot matches the subdomains of what follows it.
    fn relay_allowed(&self, domain: &str) -> bool {
        if self.relay_domains.is_empty() {
            return true;
        }
        let domain = domain.strip_suffix('.').unwrap_or(domain);
        self.relay_domains
            .iter()
            .any(|d| match d.strip_prefix('.') {
                Some(parent) => domain
                    .strip_suffix(parent)
                    .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
                None => domain == d,
            })
    }
}

/// The SMTP server. Cheap to clone; all clones share connections, limits, shutdown and the
/// current configuration generation.
pub struct Server<S: Store> {
    current: Arc<RwLock<Arc<Shared<S>>>>,
}

impl<S: Store> Clone for Server<S> {
    fn clone(&self) -> Self {
        Server {
            current: self.current.clone(),
        }
    }
}

/// Holds one place of `max_connections_per_client` for the session's lifetime.
struct ClientSlot<'a, S: Store> {
    shared: &'a Shared<S>,
    ip: IpAddr,
}

impl<S: Store> Drop for ClientSlot<'_, S> {
    fn drop(&mut self) {
        let mut map = self
            .shared
            .per_client
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

impl<S: Store> Server<S> {
    /// A server over `store` and `sanitizer`; loads the TLS certificate if configured.
    pub fn new(
        cfg: Arc<Config>,
        store: Arc<S>,
        sanitizer: Arc<dyn Sanitize>,
        queued: Option<mpsc::UnboundedSender<String>>,
    ) -> Result<Server<S>, ServerError> {
        let (shutdown, _) = watch::channel(false);
        let shared = Shared::generation(
            cfg.clone(),
            store,
            sanitizer,
            queued,
            Arc::new(Semaphore::new(cfg.server.max_connections)),
            Arc::new(Mutex::new(HashMap::new())),
            Arc::new(shutdown),
        )?;
        Ok(Server {
            current: Arc::new(RwLock::new(Arc::new(shared))),
        })
    }

    /// The current configuration generation.
    fn shared(&self) -> Arc<Shared<S>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The configuration new connections are served under.
    pub fn config(&self) -> Arc<Config> {
        self.shared().cfg.clone()
    }

    /// Serves connections accepted from now on under `cfg` (with `sanitizer`, or the real
    /// pipeline over `cfg` when `None`); sessions in flight finish under the configuration they
    /// started with. On error (e.g. an unreadable TLS certificate) nothing changes.
    pub fn reload(
        &self,
        cfg: Arc<Config>,
        sanitizer: Option<Arc<dyn Sanitize>>,
    ) -> Result<(), ServerError> {
        let old = self.shared();
        if cfg.server.listen != old.cfg.server.listen {
            tracing::warn!("reload: server.listen changed; the new addresses need a restart");
        }
        if cfg.server.max_connections != old.cfg.server.max_connections {
            tracing::warn!("reload: server.max_connections changed; it needs a restart");
        }
        let sanitizer =
            sanitizer.unwrap_or_else(|| Arc::new(Pipeline::new(cfg.clone())) as Arc<dyn Sanitize>);
        let next = Shared::generation(
            cfg,
            old.store.clone(),
            sanitizer,
            old.queued.clone(),
            old.connections.clone(),
            old.per_client.clone(),
            old.shutdown.clone(),
        )?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
        Ok(())
    }

    /// Binds every `server.listen` address.
    pub async fn bind(&self) -> Result<Vec<TcpListener>, ServerError> {
        let mut out = Vec::new();
        for &addr in &self.shared().cfg.server.listen {
            let l = TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Bind { addr, source })?;
            out.push(l);
        }
        Ok(out)
    }

    /// Tells every session to finish its transaction and close; new connections get 421.
    pub fn begin_shutdown(&self) {
        self.shared().shutdown.send_replace(true);
    }

    /// Accepts on `listeners` until `shutdown` completes, then drains the sessions (bounded by
    /// `server.shutdown_timeout`).
    pub async fn serve(&self, listeners: Vec<TcpListener>, shutdown: impl Future<Output = ()>) {
        let (tx, mut rx) = mpsc::channel::<(TcpStream, SocketAddr)>(64);
        let mut acceptors = JoinSet::new();
        for l in listeners {
            let tx = tx.clone();
            acceptors.spawn(accept_loop(l, tx));
        }
        drop(tx);
        let mut sessions = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = rx.recv() => match accepted {
                    Some((stream, peer)) => {
                        let server = self.clone();
                        sessions.spawn(async move { server.handle_connection(stream, peer).await });
                    }
                    None => break,
                },
                Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            }
        }
        tracing::info!(sessions = sessions.len(), "smtp: shutting down");
        self.begin_shutdown();
        acceptors.shutdown().await;
        drop(rx);
        let limit = self.shared().cfg.server.shutdown_timeout.0;
        let drained = tokio::time::timeout(limit, async {
            while sessions.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                sessions = sessions.len(),
                "smtp: shutdown_timeout passed, aborting the remaining sessions"
            );
            sessions.shutdown().await;
        }
    }

    /// Runs one connection: the gate (access list, shutdown, limits), then the session.
    pub async fn handle_connection<IO>(&self, io: IO, peer: SocketAddr)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let shared = &self.shared();
        let ip = peer.ip().to_canonical();
        let host = &shared.cfg.server.hostname;
        if !shared
            .cfg
            .server
            .allowed_clients
            .iter()
            .any(|n| n.contains(&ip))
        {
            tracing::info!(client = %peer, "smtp: client not in allowed_clients");
            let r = Reply::new(554, Enhanced(5, 7, 1), format!("{host} access denied"));
            return refuse(io, r).await;
        }
        if *shared.shutdown.borrow() {
            let r = Reply::new(421, Enhanced(4, 3, 2), format!("{host} shutting down"));
            return refuse(io, r).await;
        }
        let Ok(_permit) = shared.connections.clone().try_acquire_owned() else {
            tracing::warn!(client = %peer, "smtp: max_connections reached");
            let r = Reply::new(
                421,
                Enhanced(4, 7, 0),
                format!("{host} too many connections"),
            );
            return refuse(io, r).await;
        };
        let over_client_limit = {
            let mut map = shared.per_client.lock().unwrap_or_else(|e| e.into_inner());
            let n = map.entry(ip).or_insert(0);
            if *n >= shared.cfg.server.max_connections_per_client {
                true
            } else {
                *n += 1;
                false
            }
        };
        if over_client_limit {
            tracing::warn!(client = %peer, "smtp: max_connections_per_client reached");
            let r = Reply::new(
                421,
                Enhanced(4, 7, 0),
                format!("{host} too many connections from your address"),
            );
            return refuse(io, r).await;
        }
        let _slot = ClientSlot { shared, ip };
        tracing::debug!(client = %peer, "smtp: session start");
        session::Session::new(shared.clone(), io, peer).run().await;
    }
}

/// Sends one reply and closes, bounded in time.
async fn refuse<IO: AsyncWrite + Unpin>(mut io: IO, r: Reply) {
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        io.write_all(&r.to_bytes()).await?;
        io.shutdown().await
    })
    .await;
}

async fn accept_loop(listener: TcpListener, tx: mpsc::Sender<(TcpStream, SocketAddr)>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                // Replies are already batched per pipelined group; Nagle would only add delay.
                let _ = stream.set_nodelay(true);
                if tx.send((stream, peer)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "smtp: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
