//! Metrics: actor-level figures (mailbox depth, messages handled, handling time, restarts,
//! live actors, per actor kind) and scheduler figures (fires by outcome, fire lateness,
//! downstream request time, tasks by state, timers on the wheel, persistence batches), in
//! Prometheus text format at `/metrics`.
//!
//! Recording goes through the `metrics` facade: with no recorder installed (metrics
//! disabled) every call is a no-op. Mailbox depth is counted by the senders ([`sent`]) and
//! the handlers ([`handling`]), since actix does not expose a mailbox's length.

use std::cell::RefCell;
use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use metrics::{counter, gauge, histogram, Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// The kinds of actor, as the `actor` label names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActorKind {
    Registry,
    Task,
    Wheel,
    Worker,
    Persistence,
    /// Cluster mode only.
    Membership,
}

impl ActorKind {
    pub const ALL: [ActorKind; 6] = [
        ActorKind::Registry,
        ActorKind::Task,
        ActorKind::Wheel,
        ActorKind::Worker,
        ActorKind::Persistence,
        ActorKind::Membership,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::Registry => "registry",
            ActorKind::Task => "task",
            ActorKind::Wheel => "wheel",
            ActorKind::Worker => "worker",
            ActorKind::Persistence => "persistence",
            ActorKind::Membership => "membership",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Messages sent and not yet handled, per actor kind.
static DEPTH: [AtomicI64; ActorKind::ALL.len()] =
    [const { AtomicI64::new(0) }; ActorKind::ALL.len()];

/// Fire lateness buckets, 0.5 ms to 10 s (seconds).
const LATENESS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Buckets for durations (handling, downstream requests, commits), seconds.
const DURATION_BUCKETS: &[f64] = &[
    0.00001, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0,
];
/// Buckets for batch sizes.
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 512.0, 1024.0, 2048.0,
];
/// The exporter keeps every histogram sample until upkeep folds them into buckets; without a
/// scrape that would grow without bound, so upkeep also runs on this period.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// First attempts sent (what the lateness histogram counts), beside the recorder: the
/// console's fire rate reads it without rendering every series.
static FIRES_SENT: AtomicU64 = AtomicU64::new(0);
/// `FIRES_SENT` sampled at every upkeep, the last [`RATE_WINDOW`] of them.
static SAMPLES: Mutex<VecDeque<(Instant, u64)>> = Mutex::new(VecDeque::new());
/// The window this node's fire rate is averaged over.
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// Installs the process-wide recorder once and returns its handle (`None` if another
/// recorder was installed first).
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let built = PrometheusBuilder::new()
                .set_buckets(DURATION_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("tickwheel_fire_lateness_seconds".into()),
                        LATENESS_BUCKETS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("tickwheel_persistence_batch_size".into()),
                        BATCH_BUCKETS,
                    )
                })
                .and_then(|b| b.install_recorder());
            match built {
                Ok(h) => {
                    let upkeep = h.clone();
                    let spawned = std::thread::Builder::new()
                        .name("metrics-upkeep".into())
                        .spawn(move || loop {
                            sample_fires(Instant::now());
                            std::thread::sleep(UPKEEP_EVERY);
                            upkeep.run_upkeep();
                        });
                    if let Err(e) = spawned {
                        tracing::warn!(error = %e, "metrics upkeep thread not started");
                    }
                    // Series that should read 0 before anything happens.
                    for kind in ActorKind::ALL {
                        counter!("tickwheel_actor_restarts_total", "actor" => kind.as_str())
                            .increment(0);
                    }
                    counter!("tickwheel_retries_scheduled_total").increment(0);
                    counter!("tickwheel_manual_runs_total").increment(0);
                    for reason in ["age", "count", "finished_task"] {
                        counter!("tickwheel_retention_pruned_rows_total", "reason" => reason)
                            .increment(0);
                    }
                    counter!("tickwheel_retention_finished_tasks_deleted_total").increment(0);
                    Some(h)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    None
                }
            }
        })
        .clone()
}

/// Renders the current figures. Gauges that are read on demand are set first.
pub fn render(handle: &PrometheusHandle) -> String {
    for kind in ActorKind::ALL {
        gauge!("tickwheel_actor_mailbox_depth", "actor" => kind.as_str())
            .set(DEPTH[kind.index()].load(Ordering::Relaxed) as f64);
    }
    handle.run_upkeep();
    handle.render()
}

/// A message was sent to an actor of `kind`.
#[inline]
pub fn sent(kind: ActorKind) {
    DEPTH[kind.index()].fetch_add(1, Ordering::Relaxed);
}

/// Times one message's handling; created at the top of a handler.
pub struct Handling {
    histogram: Histogram,
    start: Instant,
}

thread_local! {
    // Handles resolved once per thread: looking a series up by name and labels costs more
    // than recording into it, and this runs for every message of the fire path.
    static MESSAGES: RefCell<HashMap<(usize, usize), Counter>> = RefCell::new(HashMap::new());
    static HANDLING: RefCell<Vec<Option<Histogram>>> = const { RefCell::new(Vec::new()) };
}

/// An actor of `kind` takes `message` from its mailbox.
#[inline]
pub fn handling(kind: ActorKind, message: &'static str) -> Handling {
    DEPTH[kind.index()].fetch_sub(1, Ordering::Relaxed);
    MESSAGES.with(|m| {
        m.borrow_mut()
            .entry((kind.index(), message.as_ptr() as usize))
            .or_insert_with(|| {
                counter!("tickwheel_actor_messages_total", "actor" => kind.as_str(), "message" => message)
            })
            .increment(1)
    });
    let histogram = HANDLING.with(|h| {
        let mut h = h.borrow_mut();
        if h.len() < ActorKind::ALL.len() {
            h.resize(ActorKind::ALL.len(), None);
        }
        h[kind.index()]
            .get_or_insert_with(
                || histogram!("tickwheel_actor_handling_seconds", "actor" => kind.as_str()),
            )
            .clone()
    });
    Handling {
        histogram,
        start: Instant::now(),
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        self.histogram.record(self.start.elapsed().as_secs_f64());
    }
}

pub fn restarted(kind: ActorKind) {
    counter!("tickwheel_actor_restarts_total", "actor" => kind.as_str()).increment(1);
}

/// Sets the number of live actors of `kind`.
pub fn live(kind: ActorKind, n: usize) {
    gauge!("tickwheel_actor_live", "actor" => kind.as_str()).set(n as f64);
}

/// Adds to the number of live actors of `kind`.
pub fn live_add(kind: ActorKind, delta: f64) {
    gauge!("tickwheel_actor_live", "actor" => kind.as_str()).increment(delta);
}

/// One fire or attempt, by outcome: `success`, `http_error`, `timeout`, `connect_error`,
/// `request_error`, `skipped_overlap`, `rate_limited_delay`, `cancelled`; in cluster mode
/// also `fenced` (not fired: the node's lease lapsed), `guard_taken` (another node, or an
/// earlier run, sent this slot), `guard_unavailable` (fired without the guard: Redis did not
/// answer).
pub fn fire(outcome: &'static str) {
    thread_local! {
        static FIRES: RefCell<HashMap<usize, Counter>> = RefCell::new(HashMap::new());
    }
    FIRES.with(|f| {
        f.borrow_mut()
            .entry(outcome.as_ptr() as usize)
            .or_insert_with(|| counter!("tickwheel_fires_total", "outcome" => outcome))
            .increment(1)
    });
}

/// One outbound call and how many signatures it carries (`webhook-signature` entries: one
/// per active key of its user; 0 when the user has none), as
/// `tickwheel_outbound_calls_total{signatures}`.
pub fn signatures(header: Option<&str>) {
    thread_local! {
        static CALLS: [Counter; 3] = [
            counter!("tickwheel_outbound_calls_total", "signatures" => "0"),
            counter!("tickwheel_outbound_calls_total", "signatures" => "1"),
            counter!("tickwheel_outbound_calls_total", "signatures" => "2"),
        ];
    }
    let n = header.map_or(0, |h| h.split(' ').count()).min(2);
    CALLS.with(|c| c[n].increment(1));
}

/// How late a first attempt left, in seconds after its scheduled time.
pub fn lateness(seconds: f64) {
    thread_local! {
        static H: Histogram = histogram!("tickwheel_fire_lateness_seconds");
    }
    FIRES_SENT.fetch_add(1, Ordering::Relaxed);
    H.with(|h| h.record(seconds.max(0.0)));
}

fn sample_fires(now: Instant) {
    let mut samples = SAMPLES.lock().unwrap_or_else(PoisonError::into_inner);
    samples.push_back((now, FIRES_SENT.load(Ordering::Relaxed)));
    while samples
        .front()
        .is_some_and(|(at, _)| now.duration_since(*at) > RATE_WINDOW)
    {
        samples.pop_front();
    }
}

/// This node's fires per second over the last minute (first attempts sent), from the
/// samples the metrics upkeep takes; `None` until two samples exist (metrics enabled).
pub fn fire_rate() -> Option<f64> {
    let samples = SAMPLES.lock().unwrap_or_else(PoisonError::into_inner);
    let (first, last) = (samples.front()?, samples.back()?);
    let seconds = last.0.duration_since(first.0).as_secs_f64();
    (seconds > 0.0).then(|| last.1.saturating_sub(first.1) as f64 / seconds)
}

/// The p99 of fire lateness since start, in seconds, read off the histogram in `rendered`
/// (the Prometheus text of [`render`]): the upper bound of the first bucket that holds 99 %
/// of the fires. `None` before any fire.
pub fn lateness_p99(rendered: &str) -> Option<f64> {
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    let mut count = None;
    for line in rendered.lines() {
        if let Some(rest) = line.strip_prefix("tickwheel_fire_lateness_seconds_bucket{le=\"") {
            let Some((le, n)) = rest.split_once("\"} ") else {
                continue;
            };
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            buckets.push((le, n.trim().parse().ok()?));
        } else if let Some(n) = line.strip_prefix("tickwheel_fire_lateness_seconds_count ") {
            count = n.trim().parse::<f64>().ok();
        }
    }
    let count = count.filter(|c| *c > 0.0)?;
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
        .into_iter()
        .find(|(_, n)| *n >= count * 0.99)
        .map(|(le, _)| le)
}

pub fn downstream(seconds: f64) {
    thread_local! {
        static H: Histogram = histogram!("tickwheel_downstream_request_seconds");
    }
    H.with(|h| h.record(seconds));
}

/// A manual execution (run now) was started.
pub fn manual_run() {
    counter!("tickwheel_manual_runs_total").increment(1);
}

/// A task notification: `outcome` is `raised` (written to the outbox), `delivered`, `retry`
/// (an attempt failed, another follows) or `failed` (retries exhausted).
pub fn notification(event: &'static str, outcome: &'static str) {
    counter!("tickwheel_notifications_total", "event" => event, "outcome" => outcome).increment(1);
}

pub fn retry_scheduled() {
    counter!("tickwheel_retries_scheduled_total").increment(1);
}

pub fn tasks_in_state(state: &'static str, n: u64) {
    gauge!("tickwheel_tasks", "state" => state).set(n as f64);
}

pub fn wheel_timers(level: &'static str, n: usize) {
    gauge!("tickwheel_wheel_timers", "level" => level).set(n as f64);
}

pub fn persistence_batch(size: usize, commit_seconds: f64) {
    histogram!("tickwheel_persistence_batch_size").record(size as f64);
    histogram!("tickwheel_persistence_commit_seconds").record(commit_seconds);
}

/// Live members of the cluster, as this node sees them.
pub fn cluster_members(n: usize) {
    gauge!("tickwheel_cluster_members").set(n as f64);
}

/// Partitions this node owns.
pub fn partitions_owned(n: usize) {
    gauge!("tickwheel_partitions_owned").set(n as f64);
}

/// Change notices, by `published`, `publish_failed`, `received`.
pub fn cluster_notice(what: &'static str) {
    counter!("tickwheel_cluster_notices_total", "event" => what).increment(1);
}

/// Schedule writes dropped because this node no longer holds the task's partition.
pub fn fenced_writes(n: usize) {
    counter!("tickwheel_fenced_writes_total").increment(n as u64);
}

/// Partitions claimed by this node (each hand-over to it counts one).
pub fn partitions_claimed(n: usize) {
    counter!("tickwheel_partitions_claimed_total").increment(n as u64);
}

/// Partitions this node took over, by where their tasks were found: `queue` (the pending
/// queue in Redis) or `scan` (the database).
pub fn partition_loads(source: &'static str, n: usize) {
    counter!("tickwheel_partition_loads_total", "source" => source).increment(n as u64);
}

/// Execution log rows the history-retention pruner deleted, by reason (`age`, `count`,
/// `finished_task`).
pub fn retention_pruned(reason: &'static str, rows: u64) {
    if rows > 0 {
        counter!("tickwheel_retention_pruned_rows_total", "reason" => reason).increment(rows);
    }
}

/// How long one of the pruner's delete statements took (the time it may hold SQLite's write
/// lock).
pub fn retention_delete(seconds: f64) {
    histogram!("tickwheel_retention_delete_seconds").record(seconds);
}

/// Finished tasks the pruner deleted (after their logs).
pub fn retention_finished_tasks_deleted(n: u64) {
    if n > 0 {
        counter!("tickwheel_retention_finished_tasks_deleted_total").increment(n);
    }
}

/// When the oldest execution log row kept was created, in seconds since the epoch.
pub fn retention_oldest_log(created_at_ms: i64) {
    gauge!("tickwheel_retention_oldest_log_timestamp_seconds").set(created_at_ms as f64 / 1000.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lateness_p99_is_the_first_bucket_that_holds_99_percent_of_the_fires() {
        let h = "tickwheel_fire_lateness_seconds";
        let text = format!(
            "{h}_bucket{{le=\"0.001\"}} 50\n{h}_bucket{{le=\"0.005\"}} 98\n\
             {h}_bucket{{le=\"0.01\"}} 100\n{h}_bucket{{le=\"+Inf\"}} 100\n\
             {h}_sum 0.3\n{h}_count 100\n"
        );
        assert_eq!(lateness_p99(&text), Some(0.01));
        let late = text.replace("_bucket{le=\"0.01\"} 100", "_bucket{le=\"0.01\"} 98");
        assert_eq!(lateness_p99(&late), Some(f64::INFINITY));
        assert_eq!(lateness_p99(&format!("{h}_count 0\n")), None);
        assert_eq!(lateness_p99(""), None);
    }

    #[test]
    fn the_fire_rate_is_the_fires_between_the_oldest_and_newest_samples() {
        let start = Instant::now();
        sample_fires(start);
        FIRES_SENT.fetch_add(500, Ordering::Relaxed);
        sample_fires(start + Duration::from_secs(5));
        let rate = fire_rate().expect("two samples");
        assert!((rate - 100.0).abs() < 1e-9, "{rate}");
    }
}
