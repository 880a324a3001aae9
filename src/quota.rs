//! Per-user quotas (README, "Configuration"): how many active tasks a user may have, and how often a
//! user's active schedules may fire together (a paused task counts as active and fires
//! nothing). A create, a patch that changes a schedule, or a resume that would go past either
//! is refused with 429 `quota_exceeded`, naming the figure.
//!
//! Counting a user's tasks in the database on every create would cost in proportion to what
//! the user already has (a million-task user would pay a scan of a million index entries per
//! create). Instead each user's usage is counted once and then carried forward: a create adds
//! its task and its rate, a patch its change of rate. Tasks end on their own (completed,
//! failed) without this module hearing of it, so the carried figure is an upper bound; when it
//! would cross a limit, the user's usage is counted again before anything is refused.
//!
//! Races: an admitted change reserves its share of the user's usage at once, under a short
//! lock of that user's, and the reservation becomes usage when the write has committed (or is
//! given back when it fails), so two concurrent creates never both take the last slot, and a
//! user's creates never wait for each other's database commits. In cluster mode another
//! node's creates are not seen here, so the carried figure is counted again after
//! [`CLUSTER_RECOUNT`]; concurrent creates on different nodes can then overshoot by what those
//! nodes admit within that time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::LimitSettings;
use crate::domain::{Schedule, TaskSpec, TaskType};
use crate::store::{ScheduleRow, Store, StoreError};

/// How long a user's counted usage is trusted in cluster mode, where other nodes create too.
pub const CLUSTER_RECOUNT: Duration = Duration::from_secs(1);
/// How many minutes with fires are looked at to find a cron schedule's busiest (see
/// [`greatest_fires_in_a_minute`]).
const MINUTES_SCANNED: usize = 3;
const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;
/// Past this many users the locks nobody holds are dropped.
const MAX_IDLE_USERS: usize = 100_000;
/// Past this many distinct cron schedules the memo of their rates starts over.
const MAX_MEMO: usize = 10_000;

/// Why a quota refused a change; `Display` is the message the client gets.
#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    #[error("{0}")]
    Exceeded(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Default)]
struct Usage {
    /// When the usage was last counted in the database; `None` before the first count.
    counted_at: Option<Instant>,
    /// Active tasks (an upper bound between counts).
    active: u64,
    /// The sum of the active tasks' fires per minute (an upper bound between counts).
    fires_per_minute: f64,
    /// Admitted changes whose writes have not committed yet (not in any count).
    reserved_active: u64,
    reserved_rate: f64,
}

impl Usage {
    fn give_back(&mut self, active: u64, rate: f64) {
        self.reserved_active = self.reserved_active.saturating_sub(active);
        self.reserved_rate -= rate;
    }
}

/// The quota state of a node.
pub struct Quotas {
    max_active: u64,
    max_fires_per_minute: u64,
    recount_after: Option<Duration>,
    users: Mutex<HashMap<i64, Arc<Mutex<Usage>>>>,
    /// Fires per minute of each cron schedule seen, by (expression, time zone).
    cron_rates: Mutex<HashMap<(String, String), u32>>,
}

fn locked(usage: &Mutex<Usage>) -> std::sync::MutexGuard<'_, Usage> {
    usage.lock().unwrap_or_else(|p| p.into_inner())
}

/// A change the quotas admitted, with its share of the user's usage reserved: committed when
/// the write was made (the usage carries it forward), given back when dropped uncommitted.
pub struct Permit {
    reserved: Option<Arc<Mutex<Usage>>>,
    add_active: u64,
    add_rate: f64,
}

impl Permit {
    /// The change was written.
    pub fn commit(mut self) {
        if let Some(usage) = self.reserved.take() {
            let mut usage = locked(&usage);
            usage.give_back(self.add_active, self.add_rate);
            usage.active += self.add_active;
            usage.fires_per_minute = (usage.fires_per_minute + self.add_rate).max(0.0);
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(usage) = self.reserved.take() {
            locked(&usage).give_back(self.add_active, self.add_rate);
        }
    }
}

impl Quotas {
    /// `cluster`: other nodes create tasks too, so counts are trusted for [`CLUSTER_RECOUNT`].
    pub fn new(limits: &LimitSettings, cluster: bool) -> Self {
        Self {
            max_active: limits.max_active_tasks_per_user,
            max_fires_per_minute: limits.max_fires_per_minute_per_user,
            recount_after: cluster.then_some(CLUSTER_RECOUNT),
            users: Mutex::new(HashMap::new()),
            cron_rates: Mutex::new(HashMap::new()),
        }
    }

    fn enabled(&self) -> bool {
        self.max_active > 0 || self.max_fires_per_minute > 0
    }

    /// Admits a new task of `spec.user_id`, or refuses it naming the quota it would exceed.
    pub async fn admit_create(
        &self,
        store: &Store,
        spec: &TaskSpec,
        schedule: &Schedule,
        now_ms: i64,
    ) -> Result<Permit, QuotaError> {
        let rate = self.rate_of(spec.task_type, cron_of(spec), schedule, now_ms);
        self.admit(store, spec.user_id, 1, rate, None, now_ms).await
    }

    /// Admits the resumption of a paused task of `spec.user_id`. The task is already counted
    /// among the user's active tasks (a paused task keeps its place); its schedule's rate is
    /// added back, as a create adds it.
    pub async fn admit_resume(
        &self,
        store: &Store,
        spec: &TaskSpec,
        schedule: &Schedule,
        now_ms: i64,
    ) -> Result<Permit, QuotaError> {
        let rate = self.rate_of(spec.task_type, cron_of(spec), schedule, now_ms);
        self.admit(store, spec.user_id, 0, rate, None, now_ms).await
    }

    /// Admits a schedule change of a task from `old` (its schedule as stored) to
    /// `spec`/`schedule`.
    pub async fn admit_reschedule(
        &self,
        store: &Store,
        old: &ScheduleRow,
        spec: &TaskSpec,
        schedule: &Schedule,
        now_ms: i64,
    ) -> Result<Permit, QuotaError> {
        let new_rate = self.rate_of(spec.task_type, cron_of(spec), schedule, now_ms);
        let old_rate = self.row_rate(old, now_ms);
        self.admit(
            store,
            spec.user_id,
            0,
            new_rate - old_rate,
            Some(old_rate),
            now_ms,
        )
        .await
    }

    async fn admit(
        &self,
        store: &Store,
        user_id: i64,
        add_active: u64,
        add_rate: f64,
        replaces_rate: Option<f64>,
        now_ms: i64,
    ) -> Result<Permit, QuotaError> {
        if !self.enabled() {
            return Ok(Permit {
                reserved: None,
                add_active,
                add_rate,
            });
        }
        let usage = self.user(user_id);
        let over = |u: &Usage| {
            (self.max_active > 0 && u.active + u.reserved_active + add_active > self.max_active)
                || (self.max_fires_per_minute > 0
                    && add_rate > 0.0
                    && u.fires_per_minute + u.reserved_rate.max(0.0) + add_rate
                        > self.max_fires_per_minute as f64 + 1e-9)
        };
        let needs_count = |u: &Usage| {
            let stale = match (u.counted_at, self.recount_after) {
                (None, _) => true,
                (Some(at), Some(ttl)) => at.elapsed() >= ttl,
                (Some(_), None) => false,
            };
            stale || over(u)
        };
        // Counted outside the lock (no lock is held across an await); reservations are kept
        // apart from the count, so admissions made meanwhile still hold.
        if needs_count(&locked(&usage)) {
            let (active, fires_per_minute) = self.count(store, user_id, now_ms).await?;
            let mut u = locked(&usage);
            u.active = active;
            u.fires_per_minute = fires_per_minute;
            u.counted_at = Some(Instant::now());
        }
        let mut u = locked(&usage);
        if self.max_active > 0 && u.active + u.reserved_active + add_active > self.max_active {
            return Err(QuotaError::Exceeded(format!(
                "max_active_tasks_per_user: user {user_id} has {} active tasks, the limit is {}",
                u.active + u.reserved_active,
                self.max_active
            )));
        }
        if over(&u) {
            let adds = match replaces_rate {
                None => format!("this task would add {}", figure(add_rate)),
                Some(old) => format!(
                    "this change would take this task from {} to {}",
                    figure(old),
                    figure(old + add_rate)
                ),
            };
            return Err(QuotaError::Exceeded(format!(
                "max_fires_per_minute_per_user: user {user_id}'s active tasks fire {} times a \
                 minute and {adds}; the limit is {}",
                figure(u.fires_per_minute + u.reserved_rate.max(0.0)),
                self.max_fires_per_minute
            )));
        }
        u.reserved_active += add_active;
        u.reserved_rate += add_rate;
        drop(u);
        Ok(Permit {
            reserved: Some(usage),
            add_active,
            add_rate,
        })
    }

    /// Counts the user's usage in the database: (active tasks, fires per minute).
    async fn count(
        &self,
        store: &Store,
        user_id: i64,
        now_ms: i64,
    ) -> Result<(u64, f64), StoreError> {
        let active = store.count_active(user_id).await?;
        let mut fires_per_minute = 0.0;
        if self.max_fires_per_minute > 0 {
            for row in store.active_schedules(user_id).await? {
                fires_per_minute += self.row_rate(&row, now_ms);
            }
        }
        Ok((active, fires_per_minute))
    }

    fn user(&self, user_id: i64) -> Arc<Mutex<Usage>> {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        if users.len() > MAX_IDLE_USERS {
            users.retain(|_, lock| Arc::strong_count(lock) > 1);
        }
        users.entry(user_id).or_default().clone()
    }

    /// The fires per minute of a stored task (0 for one whose schedule cannot be read: it is
    /// not scheduled either).
    fn row_rate(&self, row: &ScheduleRow, now_ms: i64) -> f64 {
        let Some(kind) = TaskType::parse(&row.task_type) else {
            return 0.0;
        };
        let schedule = Schedule::build(
            kind,
            row.interval_seconds.and_then(|s| u64::try_from(s).ok()),
            row.cron_expression.as_deref(),
            row.timezone.as_deref(),
            row.anchor_ms,
        );
        let cron = row.cron_expression.as_deref().zip(row.timezone.as_deref());
        schedule.map_or(0.0, |s| self.rate_of(kind, cron, &s, now_ms))
    }

    /// How many times a minute a task fires, as the README's "Configuration" counts it.
    fn rate_of(
        &self,
        kind: TaskType,
        cron: Option<(&str, &str)>,
        schedule: &Schedule,
        now_ms: i64,
    ) -> f64 {
        if self.max_fires_per_minute == 0 {
            return 0.0;
        }
        match (kind, cron) {
            (TaskType::Cron, Some((expression, zone))) => {
                let key = (expression.to_owned(), zone.to_owned());
                let memo = |m: &Mutex<HashMap<_, u32>>| {
                    m.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get(&key)
                        .copied()
                };
                if let Some(n) = memo(&self.cron_rates) {
                    return f64::from(n);
                }
                let n = greatest_fires_in_a_minute(schedule, now_ms);
                let mut rates = self.cron_rates.lock().unwrap_or_else(|p| p.into_inner());
                if rates.len() >= MAX_MEMO {
                    rates.clear();
                }
                rates.insert(key, n);
                f64::from(n)
            }
            _ => fires_per_minute(schedule, now_ms),
        }
    }
}

fn cron_of(spec: &TaskSpec) -> Option<(&str, &str)> {
    spec.cron_expression
        .as_deref()
        .zip(spec.timezone.as_deref())
}

/// A task's contribution to `max_fires_per_minute_per_user`: 60 / `interval_seconds` for an
/// interval task, the greatest number of fires in any minute of the next 24 hours for a cron
/// task, nothing for a once task (it fires once).
pub fn fires_per_minute(schedule: &Schedule, now_ms: i64) -> f64 {
    match schedule {
        Schedule::Interval { every_ms, .. } => MINUTE_MS as f64 / *every_ms as f64,
        Schedule::Once { .. } => 0.0,
        Schedule::Cron { .. } => f64::from(greatest_fires_in_a_minute(schedule, now_ms)),
    }
}

/// The greatest number of fires in one minute (UTC) of the 24 hours that start at the
/// schedule's next fire, found with the schedule itself.
///
/// Bounded in cost: in a cron expression the seconds field is independent of the others, so
/// every minute that fires at all fires the same set of seconds (a daylight-saving change only
/// removes fires). The scan therefore stops after [`MINUTES_SCANNED`] whole minutes with fires
/// — at most 180 steps — or at 60, the most a minute can hold, or after 24 hours.
pub fn greatest_fires_in_a_minute(schedule: &Schedule, now_ms: i64) -> u32 {
    // From the start of the current minute, so that the first minute counted is whole.
    let from = now_ms.div_euclid(MINUTE_MS) * MINUTE_MS - 1;
    let Some(mut at) = schedule.next_after(from) else {
        return 0;
    };
    let end = at.saturating_add(DAY_MS);
    let (mut minute, mut in_minute, mut best, mut minutes) = (at.div_euclid(MINUTE_MS), 0, 0, 0);
    loop {
        if at.div_euclid(MINUTE_MS) != minute {
            best = best.max(in_minute);
            minutes += 1;
            if minutes >= MINUTES_SCANNED || best >= 60 {
                return best;
            }
            minute = at.div_euclid(MINUTE_MS);
            in_minute = 0;
        }
        in_minute += 1;
        match schedule.next_after(at) {
            Some(next) if next < end => at = next,
            _ => return best.max(in_minute),
        }
    }
}

/// A rate for a message: whole numbers as such, others to two decimals.
fn figure(rate: f64) -> String {
    if (rate - rate.round()).abs() < 1e-9 {
        format!("{}", rate.round() as i64)
    } else {
        format!("{rate:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::CronSchedule;

    const NOON_2026: i64 = 1_767_268_800_000; // 2026-01-01T12:00:00Z

    fn cron(expr: &str, zone: &str) -> Schedule {
        Schedule::Cron {
            cron: Box::new(CronSchedule::parse(expr, zone).expect("valid cron")),
            not_before_ms: i64::MIN,
        }
    }

    #[test]
    fn an_interval_task_contributes_sixty_over_its_interval() {
        let every = |s: i64| Schedule::Interval {
            anchor_ms: 0,
            every_ms: s * 1000,
        };
        assert_eq!(fires_per_minute(&every(1), NOON_2026), 60.0);
        assert_eq!(fires_per_minute(&every(120), NOON_2026), 0.5);
        assert_eq!(
            fires_per_minute(&Schedule::Once { at_ms: 0 }, NOON_2026),
            0.0
        );
    }

    #[test]
    fn a_cron_task_contributes_its_busiest_minute() {
        assert_eq!(
            fires_per_minute(&cron("* * * * * ?", "UTC"), NOON_2026),
            60.0
        );
        assert_eq!(
            fires_per_minute(&cron("*/10 * * * * ?", "UTC"), NOON_2026),
            6.0
        );
        assert_eq!(
            fires_per_minute(&cron("0-4 0 3 * * ?", "UTC"), NOON_2026),
            5.0
        );
        assert_eq!(
            fires_per_minute(&cron("0 0 12 * * ?", "UTC"), NOON_2026),
            1.0
        );
        assert_eq!(
            fires_per_minute(&cron("*/5 * * * *", "UTC"), NOON_2026),
            1.0
        );
        assert_eq!(
            fires_per_minute(&cron("0,30 * 2 * * ?", "Europe/Berlin"), NOON_2026),
            2.0
        );
    }

    #[test]
    fn a_cron_that_fires_now_counts_its_whole_minute() {
        // 20 s into the minute: the fires at 0 and 10 s are counted all the same.
        assert_eq!(
            greatest_fires_in_a_minute(&cron("0,10,40 * * * * ?", "UTC"), NOON_2026 + 20_000),
            3
        );
    }

    #[test]
    fn a_busy_cron_is_measured_in_a_bounded_number_of_steps() {
        let started = std::time::Instant::now();
        assert_eq!(
            greatest_fires_in_a_minute(&cron("0-58 * * * * ?", "UTC"), NOON_2026),
            59
        );
        assert!(started.elapsed() < Duration::from_millis(500));
    }

    #[test]
    fn rates_read_as_figures() {
        assert_eq!(figure(60.0), "60");
        assert_eq!(figure(60.0 / 7.0), "8.57");
    }
}
