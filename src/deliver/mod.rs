//! Delivery to the next hop: the queue manager, the retry schedule, DSNs, and the operations
//! behind `mugaika queue list|flush|remove`.
//!
//! The [`QueueManager`] is one tokio task. It learns of new spool entries from the SMTP server
//! (an unbounded channel of ids) and by scanning the spool at start and every few seconds (so
//! entries that arrive any other way, a `flush` request, or an administrator's `remove` are
//! noticed). It keeps only ids and due times in memory; each delivery task loads the envelope
//! from disk, makes one attempt with per-recipient outcomes ([`client`]), and persists the
//! envelope before anything else happens, so a crash never re-delivers a recipient marked
//! delivered (at-least-once for the others). Bounced recipients get an RFC 3464 DSN ([`dsn`])
//! committed as a new spool entry before they are marked as reported; an entry leaves the spool
//! only when no recipient is pending and every DSN is queued.
//!
//! Every per-recipient result is logged as an audit record (`tracing` target `audit`).

pub mod client;
pub mod dsn;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::config::Config;
use crate::spool::{now_ms, EntryKind, Envelope, RcptState, Spool};

use client::{Client, RcptOutcome, Transaction};

/// How often the manager rescans the spool (flush marker, entries it was not told about,
/// entries removed by an administrator).
pub const DEFAULT_RESCAN: Duration = Duration::from_secs(2);

/// Why the queue manager could not run.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error("delivery configuration: {0}")]
    Config(String),
    #[error("spool: {0}")]
    Spool(#[from] io::Error),
}

/// The delay before attempt `attempts + 1`, after `attempts` (≥ 1) failed attempts: the
/// `delivery.retry` list, its last interval repeating, with ±10% jitter so that a queue that
/// piled up while the next hop was down does not return as one burst.
pub fn retry_delay(retry: &[Duration], attempts: u32) -> Duration {
    let idx = usize::try_from(attempts.saturating_sub(1)).unwrap_or(usize::MAX);
    let base = retry
        .get(idx)
        .or(retry.last())
        .copied()
        .unwrap_or(Duration::from_secs(60));
    let factor: f64 = rand::Rng::gen_range(&mut rand::thread_rng(), 0.9..=1.1);
    base.mul_f64(factor)
}

fn dur_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `mugaika queue list`: every readable envelope, oldest first (unreadable ones are skipped
/// with a warning; the server's recovery moves them to `corrupt/`).
pub fn queue_list(spool: &Spool) -> io::Result<Vec<Envelope>> {
    let mut out = Vec::new();
    for id in spool.list()? {
        match spool.load(&id) {
            Ok(e) => out.push(e),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {} // delivered meanwhile
            Err(e) => tracing::warn!(id, error = %e, "queue list: unreadable entry"),
        }
    }
    Ok(out)
}

/// `mugaika queue flush`: every entry becomes due now. A running server notices within
/// [`DEFAULT_RESCAN`]; without one, the request applies at the next start.
pub fn flush(spool: &Spool) -> io::Result<()> {
    spool.request_flush()
}

/// `mugaika queue remove ID`: deletes the entry without delivering it (no DSN). A running
/// server's attempt in flight finds it gone and drops it.
pub fn remove(spool: &Spool, id: &str) -> io::Result<()> {
    spool.remove(id)?;
    tracing::info!(target: "audit", event = "queue-remove", id, "removed by an administrator");
    Ok(())
}

/// Runs the queue manager with the default rescan interval until `shutdown` completes. See
/// [`QueueManager::run`].
pub async fn run(
    cfg: Arc<Config>,
    spool: Arc<Spool>,
    new_ids: mpsc::UnboundedReceiver<String>,
    shutdown: impl Future<Output = ()>,
    reloads: watch::Receiver<Arc<Config>>,
) -> Result<(), DeliverError> {
    QueueManager::new(cfg, spool)?
        .reloads(reloads)
        .run(new_ids, shutdown)
        .await
}

/// State shared by the manager and its delivery tasks.
struct Shared {
    cfg: Arc<Config>,
    spool: Arc<Spool>,
    client: Client,
}

/// What one delivery task reports back.
struct Outcome {
    id: String,
    /// When to try again (Unix ms), or `None` when the entry is gone.
    next: Option<u64>,
    /// Entries it created (DSNs), due now.
    created: Vec<String>,
}

/// The queue manager: schedule, bounded concurrency, retries. See the module documentation.
pub struct QueueManager {
    shared: Arc<Shared>,
    rescan: Duration,
    reloads: Option<watch::Receiver<Arc<Config>>>,
}

impl QueueManager {
    /// Builds the manager (and the SMTP client: reads the AUTH password file, TLS roots).
    pub fn new(cfg: Arc<Config>, spool: Arc<Spool>) -> Result<QueueManager, DeliverError> {
        let client = Client::new(&cfg).map_err(DeliverError::Config)?;
        Ok(QueueManager {
            shared: Arc::new(Shared { cfg, spool, client }),
            rescan: DEFAULT_RESCAN,
            reloads: None,
        })
    }

    /// Takes each configuration published on `reloads` (already validated) for the attempts
    /// started afterwards: next hop, TLS, retry schedule, concurrency. Attempts in flight
    /// finish under the configuration they started with.
    pub fn reloads(mut self, reloads: watch::Receiver<Arc<Config>>) -> QueueManager {
        self.reloads = Some(reloads);
        self
    }

    /// Sets how often the spool is rescanned (tests use a short interval).
    pub fn rescan_interval(mut self, d: Duration) -> QueueManager {
        self.rescan = d.max(Duration::from_millis(10));
        self
    }

    /// Delivers until `shutdown` completes: new ids arrive on `new_ids` (due at once); the spool
    /// is scanned at start and every rescan interval. At shutdown no new attempt starts; those
    /// in flight get `server.shutdown_timeout` to finish, then are abandoned (their recipients
    /// stay pending: at-least-once).
    pub async fn run(
        self,
        mut new_ids: mpsc::UnboundedReceiver<String>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), DeliverError> {
        let mut sh = self.shared;
        let mut reloads = self.reloads;
        let mut concurrency = sh.cfg.delivery.concurrency.max(1);
        let mut sched = Schedule::default();
        let mut tasks: JoinSet<Outcome> = JoinSet::new();
        let mut in_flight: HashSet<String> = HashSet::new();
        let mut task_ids: HashMap<tokio::task::Id, String> = HashMap::new();
        let mut channel_open = true;

        // Start: everything in the queue, at its own due time (now if a flush was requested).
        let flush_now = sh.spool.take_flush_request();
        for (id, due) in scan(&sh.spool, HashSet::new()).await?.new {
            sched.insert(id, if flush_now { 0 } else { due });
        }
        tracing::info!(queued = sched.len(), "delivery: queue manager started");

        tokio::pin!(shutdown);
        let mut rescan = tokio::time::interval(self.rescan);
        rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        rescan.tick().await;

        loop {
            // Start every due attempt the concurrency allows.
            let now = now_ms();
            while tasks.len() < concurrency {
                let Some(id) = sched.pop_due(now) else { break };
                in_flight.insert(id.clone());
                let sh = sh.clone();
                let tid = id.clone();
                let handle = tasks.spawn(async move { deliver_entry(sh, tid).await });
                task_ids.insert(handle.id(), id);
            }
            let wake = match sched.next_due() {
                Some(due) if tasks.len() < concurrency => {
                    Duration::from_millis(due.saturating_sub(now_ms()).min(3_600_000))
                }
                _ => Duration::from_secs(3600),
            };
            tokio::select! {
                () = &mut shutdown => break,
                id = new_ids.recv(), if channel_open => match id {
                    Some(id) if !in_flight.contains(&id) => sched.insert(id, 0),
                    Some(_) => {}
                    None => channel_open = false,
                },
                Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => match done {
                    Ok((tid, o)) => {
                        task_ids.remove(&tid);
                        in_flight.remove(&o.id);
                        if let Some(next) = o.next {
                            sched.insert(o.id, next);
                        }
                        for id in o.created {
                            sched.insert(id, 0);
                        }
                    }
                    Err(e) => {
                        // A panic in a delivery task: the envelope on disk is the truth; the
                        // entry is forgotten here and found again by the next rescan.
                        tracing::error!(error = %e, "delivery task failed");
                        if let Some(id) = task_ids.remove(&e.id()) {
                            in_flight.remove(&id);
                        }
                    }
                },
                _ = rescan.tick() => {
                    let flush = sh.spool.take_flush_request();
                    if flush {
                        tracing::info!("delivery: flush requested, every entry is due now");
                        sched.make_all_due();
                    }
                    match scan(&sh.spool, sched.known_or(&in_flight)).await {
                        Ok(found) => {
                            // Entries removed behind our back (`mugaika queue remove`) are
                            // forgotten. Nothing was inserted since the listing: this arm runs
                            // alone, and every id sent to us was committed before it was sent.
                            sched.retain(|id| found.all.contains(id));
                            for (id, due) in found.new {
                                if !in_flight.contains(&id) {
                                    sched.insert(id, if flush { 0 } else { due });
                                }
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "delivery: cannot scan the spool"),
                    }
                }
                changed = async {
                    match reloads.as_mut() {
                        Some(r) => r.changed().await,
                        None => std::future::pending().await,
                    }
                } => match changed {
                    Ok(()) => {
                        let cfg = reloads
                            .as_mut()
                            .map(|r| r.borrow_and_update().clone())
                            .unwrap_or_else(|| sh.cfg.clone());
                        match Client::new(&cfg) {
                            Ok(client) => {
                                concurrency = cfg.delivery.concurrency.max(1);
                                sh = Arc::new(Shared { cfg, spool: sh.spool.clone(), client });
                                tracing::info!("delivery: configuration reloaded");
                            }
                            Err(e) => tracing::error!(
                                error = %e,
                                "delivery: reload refused, old configuration kept"
                            ),
                        }
                    }
                    Err(_) => reloads = None,
                },
                () = tokio::time::sleep(wake) => {}
            }
        }

        // Drain: let attempts in flight finish, bounded.
        let limit = sh.cfg.server.shutdown_timeout.0;
        let drained =
            tokio::time::timeout(limit, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(
                abandoned = tasks.len(),
                "delivery: shutdown timeout, abandoning attempts in flight (they will be retried)"
            );
            tasks.shutdown().await;
        }
        sh.client.close_all().await;
        tracing::info!("delivery: queue manager stopped");
        Ok(())
    }
}

/// Ids and due times in memory.
#[derive(Default)]
struct Schedule {
    by_time: BTreeSet<(u64, String)>,
    due: HashMap<String, u64>,
}

impl Schedule {
    fn len(&self) -> usize {
        self.due.len()
    }

    /// Schedules `id` at `at`, or earlier if it is already scheduled later.
    fn insert(&mut self, id: String, at: u64) {
        if let Some(&old) = self.due.get(&id) {
            if old <= at {
                return;
            }
            self.by_time.remove(&(old, id.clone()));
        }
        self.due.insert(id.clone(), at);
        self.by_time.insert((at, id));
    }

    fn next_due(&self) -> Option<u64> {
        self.by_time.first().map(|(t, _)| *t)
    }

    fn pop_due(&mut self, now: u64) -> Option<String> {
        let (t, _) = self.by_time.first()?;
        if *t > now {
            return None;
        }
        let (_, id) = self.by_time.pop_first()?;
        self.due.remove(&id);
        Some(id)
    }

    fn make_all_due(&mut self) {
        let ids: Vec<String> = self.due.keys().cloned().collect();
        self.by_time.clear();
        self.due.clear();
        for id in ids {
            self.insert(id, 0);
        }
    }

    fn retain(&mut self, keep: impl Fn(&String) -> bool) {
        let gone: Vec<String> = self.due.keys().filter(|id| !keep(id)).cloned().collect();
        for id in gone {
            if let Some(t) = self.due.remove(&id) {
                self.by_time.remove(&(t, id));
            }
        }
    }

    /// Ids already known (scheduled or in flight): the rescan need not load them.
    fn known_or(&self, in_flight: &HashSet<String>) -> HashSet<String> {
        self.due.keys().chain(in_flight.iter()).cloned().collect()
    }
}

/// What a scan of the queue found.
struct Scan {
    /// Every id in `queue/`.
    all: HashSet<String>,
    /// Ids that were not known, with their due time.
    new: Vec<(String, u64)>,
}

/// Lists the queue and loads the envelopes of ids not in `known`. An envelope that cannot be
/// parsed moves the entry to `corrupt/`; other errors (e.g. out of file descriptors) leave it
/// for the next scan.
async fn scan(spool: &Arc<Spool>, known: HashSet<String>) -> io::Result<Scan> {
    let spool = spool.clone();
    tokio::task::spawn_blocking(move || {
        let all: HashSet<String> = spool.list()?.into_iter().collect();
        let mut new = Vec::new();
        for id in &all {
            if known.contains(id) {
                continue;
            }
            match spool.load(id) {
                Ok(env) => new.push((id.clone(), env.next_attempt)),
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    let _ = spool.mark_corrupt(id, &e.to_string());
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(id, error = %e, "delivery: cannot load an entry"),
            }
        }
        new.sort();
        Ok(Scan { all, new })
    })
    .await
    .map_err(io::Error::other)?
}

/// Runs a spool operation off the async threads (they fsync).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)?
}

/// The hop for an entry: DSNs may take their own route.
fn route(cfg: &Config, env: &Envelope) -> String {
    match env.kind {
        EntryKind::Dsn => cfg
            .delivery
            .bounce_next_hop
            .clone()
            .unwrap_or_else(|| cfg.delivery.next_hop.clone()),
        EntryKind::Message => cfg.delivery.next_hop.clone(),
    }
}

fn audit(env: &Envelope, idx: usize, hop: &str) {
    let Some(r) = env.recipients.get(idx) else {
        return;
    };
    let result = match r.state {
        RcptState::Delivered => "delivered",
        RcptState::Bounced => "bounced",
        RcptState::Pending => "deferred",
    };
    crate::admin::metrics::delivery(result, env.received_at);
    tracing::info!(
        target: "audit",
        event = "delivery",
        id = %env.id,
        kind = ?env.kind,
        sender = %env.sender,
        recipient = %r.addr,
        result,
        reply = r.last_reply.as_deref().unwrap_or(""),
        hop,
        attempt = r.attempts,
        "delivery result"
    );
}

/// One attempt for one entry. Never panics on bad data; every failure ends in a schedule.
async fn deliver_entry(sh: Arc<Shared>, id: String) -> Outcome {
    let gone = |id: String| Outcome {
        id,
        next: None,
        created: Vec::new(),
    };
    let cfg = &sh.cfg;
    let spool = sh.spool.clone();
    let load_id = id.clone();
    let mut env = match blocking(move || spool.load(&load_id)).await {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return gone(id),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            let spool = sh.spool.clone();
            let (cid, reason) = (id.clone(), e.to_string());
            let _ = blocking(move || spool.mark_corrupt(&cid, &reason)).await;
            return gone(id);
        }
        Err(e) => {
            // Not the entry's fault (e.g. out of file descriptors): try again later.
            tracing::error!(id, error = %e, "delivery: cannot load the envelope");
            let retry = cfg.delivery.retry.first().map_or(60_000, |d| dur_ms(d.0));
            return Outcome {
                id,
                next: Some(now_ms().saturating_add(retry)),
                created: Vec::new(),
            };
        }
    };
    let max_age = dur_ms(cfg.delivery.max_queue_time.0);
    let deadline = env.queued_at.max(env.received_at).saturating_add(max_age);
    let hop = route(cfg, &env);
    let mut changed: Vec<usize> = Vec::new();

    let pending_idx: Vec<usize> = env
        .recipients
        .iter()
        .enumerate()
        .filter(|(_, r)| r.state == RcptState::Pending)
        .map(|(i, _)| i)
        .collect();
    if !pending_idx.is_empty() {
        // One transaction per clean message: recipients under different policy rules get
        // different clean messages of the same original (`Recipient::clean`).
        let mut groups: Vec<(Option<String>, Vec<usize>)> = Vec::new();
        for &i in &pending_idx {
            let name = env.recipients.get(i).and_then(|r| r.clean.clone());
            match groups.iter_mut().find(|(n, _)| *n == name) {
                Some((_, list)) => list.push(i),
                None => groups.push((name, vec![i])),
            }
        }
        let mut results = Vec::with_capacity(groups.len());
        for (name, idx) in &groups {
            let clean = match name {
                Some(n) => sh.spool.entry_file(&env.id, n),
                None => sh.spool.clean_path(&env.id),
            };
            let tx = Transaction {
                sender: &env.sender,
                recipients: idx
                    .iter()
                    .filter_map(|&i| env.recipients.get(i).map(|r| r.addr.as_str()))
                    .collect(),
                clean: &clean,
            };
            results.push(sh.client.send(&hop, &tx).await);
        }
        let now = now_ms();
        let host = client::hop_host(&hop).to_string();
        env.attempts = env.attempts.saturating_add(1);
        let per_rcpt = groups.iter().zip(&results).flat_map(|((_, idx), result)| {
            idx.iter()
                .enumerate()
                .map(move |(k, &i)| (i, result.as_ref().map(|o| o.get(k))))
        });
        let per_rcpt: Vec<_> = per_rcpt.collect();
        for (i, result) in per_rcpt {
            let Some(r) = env.recipients.get_mut(i) else {
                continue;
            };
            r.attempts = r.attempts.saturating_add(1);
            r.updated_at = now;
            match &result {
                Ok(outcome) => {
                    let (state, reply) = match outcome {
                        Some(RcptOutcome::Delivered(x)) => (RcptState::Delivered, x.to_string()),
                        Some(RcptOutcome::Bounced(x)) => (RcptState::Bounced, x.to_string()),
                        Some(RcptOutcome::Deferred(x)) => (RcptState::Pending, x.to_string()),
                        None => (RcptState::Pending, "451 4.3.0 no outcome".to_string()),
                    };
                    r.state = state;
                    r.last_reply = Some(reply);
                    r.remote_mta = Some(host.clone());
                }
                Err(e) => {
                    r.last_reply = Some(e.0.clone());
                }
            }
            changed.push(i);
        }
        if env.pending().next().is_some() {
            if now >= deadline {
                // Queue lifetime over: the remaining recipients bounce (4.4.7 in the DSN,
                // with their last error as the diagnostic).
                for r in env.recipients.iter_mut() {
                    if r.state == RcptState::Pending {
                        r.state = RcptState::Bounced;
                        r.updated_at = now;
                        if r.last_reply.is_none() {
                            r.last_reply = Some("4.4.7 delivery time expired".into());
                        }
                    }
                }
            } else {
                let delay = retry_delay(
                    &cfg.delivery.retry.iter().map(|d| d.0).collect::<Vec<_>>(),
                    env.attempts,
                );
                // The last attempt happens at the deadline, not one interval after it.
                env.next_attempt = now.saturating_add(dur_ms(delay)).min(deadline);
            }
        }
        // An entry that is finished with no DSN due is removed below without rewriting its
        // envelope first: the removal (a rename out of `queue/`, fsync'd) is itself the
        // durable record, and the crash window is the same. Two fsyncs saved per message.
        let skip_update = env.is_finished() && !env.dsn_due();
        let spool = sh.spool.clone();
        let snapshot = env.clone();
        let persisted = if skip_update {
            Ok(())
        } else {
            blocking(move || spool.update(&snapshot)).await
        };
        if let Err(e) = persisted {
            if e.kind() == io::ErrorKind::NotFound {
                tracing::warn!(id = %env.id, "delivery: entry removed during the attempt");
                return gone(id);
            }
            // The result could not be recorded: recipients marked delivered may be delivered
            // again (at-least-once). Try again later.
            tracing::error!(id = %env.id, error = %e, "delivery: cannot persist the envelope");
            for &i in &changed {
                audit(&env, i, &hop);
            }
            let retry = cfg.delivery.retry.first().map_or(60_000, |d| dur_ms(d.0));
            return Outcome {
                id,
                next: Some(now_ms().saturating_add(retry)),
                created: Vec::new(),
            };
        }
        for &i in &changed {
            audit(&env, i, &hop);
        }
    }

    let mut created = Vec::new();
    if env.dsn_due() {
        match send_dsn(&sh, &mut env).await {
            Ok(dsn_id) => created.push(dsn_id),
            Err(e) => {
                tracing::error!(id = %env.id, error = %e, "delivery: cannot queue the DSN");
                let retry = cfg.delivery.retry.first().map_or(60_000, |d| dur_ms(d.0));
                return Outcome {
                    id,
                    next: Some(now_ms().saturating_add(retry)),
                    created,
                };
            }
        }
    }
    if env.is_finished() {
        let spool = sh.spool.clone();
        let rid = id.clone();
        match blocking(move || spool.remove(&rid)).await {
            Ok(()) => {
                let delivered = env
                    .recipients
                    .iter()
                    .filter(|r| r.state == RcptState::Delivered)
                    .count();
                tracing::info!(
                    target: "audit",
                    event = "delivery-finished",
                    id = %env.id,
                    kind = ?env.kind,
                    delivered,
                    bounced = env.recipients.len() - delivered,
                    attempts = env.attempts,
                    "entry left the spool"
                );
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                // Record the outcome at least, so that the rescan finds a finished entry to
                // remove rather than pending recipients to deliver again.
                tracing::error!(id = %env.id, error = %e, "delivery: cannot remove");
                let spool = sh.spool.clone();
                let snapshot = env.clone();
                if let Err(e) = blocking(move || spool.update(&snapshot)).await {
                    tracing::error!(id = %env.id, error = %e, "delivery: cannot persist");
                }
            }
        }
        return Outcome {
            id,
            next: None,
            created,
        };
    }
    Outcome {
        id,
        next: Some(env.next_attempt),
        created,
    }
}

/// Queues a DSN for the bounced, unreported recipients of `env`, then records them as reported.
async fn send_dsn(sh: &Arc<Shared>, env: &mut Envelope) -> io::Result<String> {
    let clean = sh.spool.clean_path(&env.id);
    let headers = blocking(move || dsn::read_headers(&clean))
        .await
        .unwrap_or_default();
    let message = {
        let recipients = env
            .recipients
            .iter()
            .filter(|r| r.state == RcptState::Bounced && !r.dsn_done)
            .collect();
        dsn::build(&dsn::DsnInput {
            hostname: &sh.cfg.server.hostname,
            envelope: env,
            recipients,
            headers: &headers,
            now_ms: now_ms(),
        })
    };
    let mut dsn_env = Envelope::new("", [env.sender.clone()]);
    dsn_env.kind = EntryKind::Dsn;
    dsn_env.smtputf8 = !env.sender.is_ascii();
    let spool = sh.spool.clone();
    let dsn_id = blocking(move || spool.enqueue_local(&message, dsn_env)).await?;
    tracing::info!(
        target: "audit",
        event = "dsn-queued",
        id = %env.id,
        dsn_id,
        to = %env.sender,
        "delivery status notification queued"
    );
    for r in env.recipients.iter_mut() {
        if r.state == RcptState::Bounced {
            r.dsn_done = true;
        }
    }
    let spool = sh.spool.clone();
    let snapshot = env.clone();
    // If this fails the DSN may be sent twice after a restart (never zero times).
    blocking(move || spool.update(&snapshot)).await?;
    Ok(dsn_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_schedule_repeats_the_last_interval_with_jitter() {
        let r = [Duration::from_secs(60), Duration::from_secs(300)];
        for _ in 0..100 {
            let d1 = retry_delay(&r, 1).as_secs_f64();
            assert!((54.0..=66.0).contains(&d1), "{d1}");
            let d2 = retry_delay(&r, 2).as_secs_f64();
            assert!((270.0..=330.0).contains(&d2), "{d2}");
            let d9 = retry_delay(&r, 9).as_secs_f64();
            assert!((270.0..=330.0).contains(&d9), "{d9}");
        }
        let spread: HashSet<u128> = (0..50).map(|_| retry_delay(&r, 1).as_millis()).collect();
        assert!(spread.len() > 10, "jitter must vary the delay");
    }

    #[test]
    fn schedule_orders_and_dedups() {
        let mut s = Schedule::default();
        s.insert("B".into(), 20);
        s.insert("A".into(), 10);
        s.insert("B".into(), 30); // later: ignored
        assert_eq!(s.len(), 2);
        assert_eq!(s.next_due(), Some(10));
        assert_eq!(s.pop_due(5), None);
        assert_eq!(s.pop_due(15).as_deref(), Some("A"));
        assert_eq!(s.pop_due(15), None);
        s.insert("B".into(), 0); // earlier: moved
        assert_eq!(s.pop_due(1).as_deref(), Some("B"));
        s.insert("C".into(), 99);
        s.make_all_due();
        assert_eq!(s.pop_due(0).as_deref(), Some("C"));
        s.insert("D".into(), 5);
        s.retain(|id| id != "D");
        assert_eq!(s.len(), 0);
        assert_eq!(s.next_due(), None);
    }
}
