//! The process-wide metrics registry and its Prometheus text rendering (format 0.0.4).
//!
//! A handful of atomics in one `static`, so that instrumenting the SMTP session or the queue
//! manager is a single call with no handle to thread through, and no metrics crate (with its
//! own registry, macros and allocation on every increment) is needed. Counters are exact:
//! every increment is one `fetch_add`, and the load test compares them with what it sent.
//! Labelled counters (`refused_total{reason}`, `actions_total{kind}`) have small fixed label
//! sets and live behind a mutex taken once per message, which is cheap next to an fsync.
//!
//! What is counted where:
//! - `mugaika_messages_accepted_total`: messages answered 250 after sanitising (delivered
//!   sanitised, or as a notice only under `on_error = "quarantine"`).
//! - `mugaika_messages_refused_total{reason}`: messages that reached their end of data and
//!   were refused (`bare-line-ending`, `too-big`, `policy`, `sanitize-error`, `local-error`,
//!   `protocol`), and recipients refused for relaying (`relay-denied`).
//! - `mugaika_messages_{delivered,deferred,bounced}_total`: per recipient and attempt result
//!   at the next hop (DSNs included), as in the delivery audit records.
//! - `mugaika_actions_total{kind}`: sanitiser actions of accepted messages, by kind.
//! - `mugaika_sanitize_seconds`: wall time of the sanitiser call for one message;
//!   `mugaika_delivery_seconds`: time from receipt to acceptance by the next hop, per
//!   delivered recipient.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::pipeline::Report;

/// A monotonically increasing count.
#[derive(Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    pub const fn new() -> Counter {
        Counter(AtomicU64::new(0))
    }

    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Default for Counter {
    fn default() -> Self {
        Counter::new()
    }
}

/// Counters keyed by one label value.
#[derive(Debug)]
pub struct LabelledCounter {
    values: Mutex<BTreeMap<String, u64>>,
}

/// Distinct label values kept per labelled counter; more are folded into `other` so that a
/// bug feeding unbounded values cannot grow the registry without limit.
const MAX_LABELS: usize = 64;

impl LabelledCounter {
    pub const fn new() -> LabelledCounter {
        LabelledCounter {
            values: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn add(&self, label: &str, n: u64) {
        let mut map = self.values.lock().unwrap_or_else(|e| e.into_inner());
        let key = if map.contains_key(label) || map.len() < MAX_LABELS {
            label
        } else {
            "other"
        };
        *map.entry(key.to_string()).or_insert(0) += n;
    }

    pub fn inc(&self, label: &str) {
        self.add(label, 1);
    }

    pub fn get(&self, label: &str) -> u64 {
        let map = self.values.lock().unwrap_or_else(|e| e.into_inner());
        map.get(label).copied().unwrap_or(0)
    }

    fn snapshot(&self) -> Vec<(String, u64)> {
        let map = self.values.lock().unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

impl Default for LabelledCounter {
    fn default() -> Self {
        LabelledCounter::new()
    }
}

/// Upper bounds of the latency buckets, in seconds (`+Inf` is implicit).
pub const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

/// A latency histogram over [`BUCKETS`]. Each observation lands in exactly one bucket; the
/// cumulative counts Prometheus wants are summed at render time.
#[derive(Debug)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    /// Observations above the last bound.
    overflow: AtomicU64,
    count: AtomicU64,
    /// Sum of observations in microseconds (an integer, so that it can be atomic).
    sum_micros: AtomicU64,
}

impl Histogram {
    pub const fn new() -> Histogram {
        Histogram {
            buckets: [const { AtomicU64::new(0) }; BUCKETS.len()],
            overflow: AtomicU64::new(0),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let slot = BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .and_then(|i| self.buckets.get(i));
        match slot {
            Some(b) => b.fetch_add(1, Ordering::Relaxed),
            None => self.overflow.fetch_add(1, Ordering::Relaxed),
        };
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0u64;
        for (bound, n) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.overflow.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}");
        // The count written is the +Inf bucket, so that the two always agree even while
        // another thread is between its bucket and its count increment.
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

/// Every metric of the process.
#[derive(Debug)]
pub struct Metrics {
    pub accepted: Counter,
    pub refused: LabelledCounter,
    pub delivered: Counter,
    pub deferred: Counter,
    pub bounced: Counter,
    pub actions: LabelledCounter,
    pub sanitize_seconds: Histogram,
    pub delivery_seconds: Histogram,
}

impl Metrics {
    pub const fn new() -> Metrics {
        Metrics {
            accepted: Counter::new(),
            refused: LabelledCounter::new(),
            delivered: Counter::new(),
            deferred: Counter::new(),
            bounced: Counter::new(),
            actions: LabelledCounter::new(),
            sanitize_seconds: Histogram::new(),
            delivery_seconds: Histogram::new(),
        }
    }

    /// The Prometheus text exposition (version 0.0.4); `queue_depth` is measured by the caller
    /// at scrape time.
    pub fn render(&self, queue_depth: Option<u64>) -> String {
        let mut out = String::with_capacity(4096);
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {v}");
        };
        let labelled =
            |out: &mut String, name: &str, help: &str, label: &str, c: &LabelledCounter| {
                let _ = writeln!(out, "# HELP {name} {help}");
                let _ = writeln!(out, "# TYPE {name} counter");
                for (k, v) in c.snapshot() {
                    let _ = writeln!(out, "{name}{{{label}=\"{}\"}} {v}", escape_label(&k));
                }
            };
        counter(
            &mut out,
            "mugaika_messages_accepted_total",
            "Messages accepted (250) after sanitising.",
            self.accepted.get(),
        );
        labelled(
            &mut out,
            "mugaika_messages_refused_total",
            "Messages refused at end of data, and recipients refused for relaying, by reason.",
            "reason",
            &self.refused,
        );
        counter(
            &mut out,
            "mugaika_messages_delivered_total",
            "Recipients accepted by the next hop.",
            self.delivered.get(),
        );
        counter(
            &mut out,
            "mugaika_messages_deferred_total",
            "Delivery attempts that left a recipient queued for a retry.",
            self.deferred.get(),
        );
        counter(
            &mut out,
            "mugaika_messages_bounced_total",
            "Recipients that failed permanently or expired.",
            self.bounced.get(),
        );
        labelled(
            &mut out,
            "mugaika_actions_total",
            "Sanitiser actions on accepted messages, by kind.",
            "kind",
            &self.actions,
        );
        if let Some(depth) = queue_depth {
            let _ = writeln!(
                out,
                "# HELP mugaika_queue_depth Entries in the spool queue."
            );
            let _ = writeln!(out, "# TYPE mugaika_queue_depth gauge");
            let _ = writeln!(out, "mugaika_queue_depth {depth}");
        }
        self.sanitize_seconds.render(
            &mut out,
            "mugaika_sanitize_seconds",
            "Time to sanitise one message.",
        );
        self.delivery_seconds.render(
            &mut out,
            "mugaika_delivery_seconds",
            "Time from receipt to acceptance by the next hop, per recipient.",
        );
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The registry of this process.
pub static METRICS: Metrics = Metrics::new();

/// A label value escaped for the text format (backslash, quote, newline).
fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// The end of one SMTP transaction, as the session's audit record sees it: `outcome` is the
/// audit outcome (`queued`, `quarantined`, `refused`, `rejected`, `rejected-on-error`,
/// `failed`) and `code` the reply sent.
pub fn message(outcome: &str, code: u16, report: Option<&Report>) {
    let m = &METRICS;
    match outcome {
        "queued" | "quarantined" if (200..300).contains(&code) => {
            m.accepted.inc();
            for a in report.map(|r| r.actions.as_slice()).unwrap_or_default() {
                // The kebab-case name the report and the notice use.
                match serde_json::to_value(a.kind) {
                    Ok(serde_json::Value::String(kind)) => m.actions.inc(&kind),
                    _ => m.actions.inc("unknown"),
                }
            }
        }
        "rejected" => m.refused.inc("policy"),
        "rejected-on-error" => m.refused.inc("sanitize-error"),
        "refused" => m.refused.inc(match code {
            550 => "bare-line-ending",
            552 => "too-big",
            400..=499 => "local-error",
            _ => "protocol",
        }),
        _ => m.refused.inc("local-error"),
    }
}

/// A recipient refused at RCPT because its domain is not relayed.
pub fn relay_denied() {
    METRICS.refused.inc("relay-denied");
}

/// One recipient's attempt result, as the delivery audit record sees it (`delivered`,
/// `bounced`, `deferred`); `received_at_ms` is the message's receipt (Unix milliseconds).
pub fn delivery(result: &str, received_at_ms: u64) {
    let m = &METRICS;
    match result {
        "delivered" => {
            m.delivered.inc();
            let now = crate::spool::now_ms();
            m.delivery_seconds
                .observe(Duration::from_millis(now.saturating_sub(received_at_ms)));
        }
        "bounced" => m.bounced.inc(),
        _ => m.deferred.inc(),
    }
}

/// Wall time of one sanitiser call.
pub fn sanitized(took: Duration) {
    METRICS.sanitize_seconds.observe(took);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_agree_with_the_count() {
        let h = Histogram::new();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(30));
        h.observe(Duration::from_secs(100));
        let mut out = String::new();
        h.render(&mut out, "x", "help");
        assert!(out.contains("x_bucket{le=\"0.001\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.025\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.05\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"60\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count 3\n"), "{out}");
        assert!(out.contains("x_sum 100.0305\n"), "{out}");
    }

    #[test]
    fn labelled_counters_render_escaped_and_bounded() {
        let c = LabelledCounter::new();
        c.inc("a\"b");
        for i in 0..200 {
            c.inc(&format!("l{i}"));
        }
        assert_eq!(c.snapshot().len(), MAX_LABELS + 1);
        assert_eq!(c.get("other"), 200 + 1 - MAX_LABELS as u64);
        let m = Metrics::new();
        m.refused.add("x\\y\n", 2);
        let text = m.render(Some(7));
        assert!(text.contains("mugaika_messages_refused_total{reason=\"x\\\\y\\n\"} 2\n"));
        assert!(text.contains("mugaika_queue_depth 7\n"));
        assert!(text.contains("# TYPE mugaika_queue_depth gauge\n"));
    }

    #[test]
    fn outcomes_are_classified() {
        let before = METRICS.refused.get("too-big");
        message("refused", 552, None);
        assert_eq!(METRICS.refused.get("too-big"), before + 1);
    }
}
