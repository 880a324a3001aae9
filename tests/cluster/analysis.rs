//! What the sink saw, per task, over a window of slots: delivered slots, duplicates (one
//! `webhook-id` more than once), missed slots (points of the task's 1 s grid, anchored at its
//! first slot, that never arrived) and off-grid slots; plus how late the first arrival of each
//! slot was. And the same window in `task_logs`.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use sea_orm::DatabaseConnection;
use uuid::Uuid;

use crate::cluster::{TaskInfo, INTERVAL_MS};
use crate::db::{log_counts, log_rows, ok_rows_per_slot};
use crate::procs::{pause, sleep_until_ms};
use crate::sink::Delivery;

/// A (task, scheduled time) pair: one execution's identity.
pub type Slot = (Uuid, i64);

/// How long after a slot's time its delivery is waited for before the slot counts as missed.
pub const GRACE_MS: i64 = 2500;

#[derive(Debug, Default)]
pub struct Report {
    pub label: String,
    pub from: i64,
    pub to: i64,
    pub tasks: usize,
    /// Grid points in the window.
    pub expected: usize,
    /// Distinct slots in the window that arrived.
    pub delivered: usize,
    /// Arrivals with a slot in the window (duplicates included).
    pub arrivals: usize,
    /// Slots that arrived more than once: (task, slot, the sending node of each arrival).
    pub duplicates: Vec<(Uuid, i64, Vec<String>)>,
    /// (task, slot) grid points that never arrived (and were not logged as skipped).
    pub missed: Vec<(Uuid, i64)>,
    /// (task, slot) grid points that never arrived but have a `task_logs` row saying the fire
    /// was skipped because the previous execution was still in flight (as it is when a call
    /// takes longer than the interval, or a fire is more than an interval late).
    pub skipped: Vec<(Uuid, i64)>,
    /// (task, slot) arrivals that are not on the task's grid.
    pub off_grid: Vec<(Uuid, i64)>,
    /// First arrival minus slot time, over the delivered slots: p50, p99, max (ms).
    pub lateness: (i64, i64, i64),
}

/// Analyses the slots in `[from, to]` of `tasks` (by slot time, inclusive). Slots before a
/// task's first slot are not expected. `skips` are the slots `task_logs` records as skipped.
pub fn analyse(
    label: &str,
    deliveries: &[Delivery],
    tasks: &[&TaskInfo],
    (from, to): (i64, i64),
    skips: &HashSet<Slot>,
) -> Report {
    let wanted: HashMap<Uuid, &TaskInfo> = tasks.iter().map(|t| (t.id, *t)).collect();
    let mut seen: HashMap<(Uuid, i64), (Vec<String>, i64)> = HashMap::new();
    let mut r = Report {
        label: label.to_string(),
        from,
        to,
        tasks: tasks.len(),
        ..Report::default()
    };
    for d in deliveries {
        let Some(t) = wanted.get(&d.task) else {
            continue;
        };
        if d.slot < from || d.slot > to {
            continue;
        }
        r.arrivals += 1;
        if d.slot < t.first_slot || (d.slot - t.first_slot) % INTERVAL_MS != 0 {
            r.off_grid.push((d.task, d.slot));
        }
        let e = seen.entry((d.task, d.slot)).or_insert((Vec::new(), d.at));
        e.0.push(d.node.as_deref().unwrap_or("?").to_string());
        e.1 = e.1.min(d.at);
    }
    let mut late = Vec::new();
    for ((task, slot), (senders, first_at)) in &seen {
        if senders.len() > 1 {
            r.duplicates.push((*task, *slot, senders.clone()));
        }
        late.push(first_at - slot);
    }
    r.delivered = seen.len();
    for t in tasks {
        let mut g = first_grid_point_at_or_after(t.first_slot, from);
        while g <= to {
            r.expected += 1;
            if !seen.contains_key(&(t.id, g)) {
                r.missed.push((t.id, g));
            }
            g += INTERVAL_MS;
        }
    }
    late.sort_unstable();
    if !late.is_empty() {
        let at = |q: f64| late[((late.len() - 1) as f64 * q).round() as usize];
        r.lateness = (at(0.5), at(0.99), *late.last().unwrap());
    }
    r.duplicates.sort_by_key(|d| (d.1, d.0));
    let (skipped, missed) = r.missed.into_iter().partition(|m| skips.contains(m));
    r.skipped = skipped;
    r.missed = missed;
    r.missed.sort_by_key(|m| (m.1, m.0));
    r.off_grid.sort_by_key(|m| (m.1, m.0));
    r
}

fn first_grid_point_at_or_after(first_slot: i64, from: i64) -> i64 {
    if from <= first_slot {
        return first_slot;
    }
    let k = (from - first_slot + INTERVAL_MS - 1) / INTERVAL_MS;
    first_slot + k * INTERVAL_MS
}

impl Report {
    pub fn print(&self) {
        eprintln!("{}", self.summary());
    }

    pub fn summary(&self) -> String {
        let mut s = format!(
            "[{}] slots {}..{} ({:.1} s), {} tasks: expected {}, delivered {}, arrivals {}, \
             duplicates {}, missed {}, skipped as overlapping {}, off-grid {}; lateness p50 {} \
             ms, p99 {} ms, max {} ms",
            self.label,
            self.from,
            self.to,
            (self.to - self.from) as f64 / 1000.0,
            self.tasks,
            self.expected,
            self.delivered,
            self.arrivals,
            self.duplicates.len(),
            self.missed.len(),
            self.skipped.len(),
            self.off_grid.len(),
            self.lateness.0,
            self.lateness.1,
            self.lateness.2,
        );
        let show = |s: &mut String, what: &str, items: Vec<String>| {
            if !items.is_empty() {
                let _ = write!(s, "\n  {what} (first {}):", items.len().min(10));
                for i in items.iter().take(10) {
                    let _ = write!(s, "\n    {i}");
                }
            }
        };
        show(
            &mut s,
            "duplicates",
            self.duplicates
                .iter()
                .map(|(t, slot, by)| {
                    format!(
                        "{t}:{slot} ×{} by {by:?} (slot at {:+} ms)",
                        by.len(),
                        slot - self.from
                    )
                })
                .collect(),
        );
        show(
            &mut s,
            "missed",
            self.missed
                .iter()
                .map(|(t, slot)| format!("{t}:{slot} (slot at {:+} ms)", slot - self.from))
                .collect(),
        );
        show(
            &mut s,
            "skipped as overlapping",
            self.skipped
                .iter()
                .map(|(t, slot)| format!("{t}:{slot} (slot at {:+} ms)", slot - self.from))
                .collect(),
        );
        show(
            &mut s,
            "off-grid",
            self.off_grid
                .iter()
                .map(|(t, slot)| format!("{t}:{slot}"))
                .collect(),
        );
        s
    }

    /// The number of tasks with at least one missed or skipped slot.
    pub fn tasks_with_missed(&self) -> usize {
        self.missed
            .iter()
            .chain(&self.skipped)
            .map(|m| m.0)
            .collect::<HashSet<_>>()
            .len()
    }

    pub fn assert_no_duplicates(&self) {
        assert!(
            self.duplicates.is_empty(),
            "duplicate deliveries: {}",
            self.summary()
        );
    }

    /// Nothing missed: neither without a trace nor skipped because the previous execution of
    /// the task was taken to be still in flight (the sink answers at once: a skip means a fire
    /// over a second late, or a wrong in-flight mark).
    pub fn assert_no_missed(&self) {
        assert!(
            self.missed.is_empty(),
            "missed slots (no delivery, no log row): {}",
            self.summary()
        );
        assert!(
            self.skipped.is_empty(),
            "slots not delivered, logged as skipped because the node took the previous execution \
             of the task to be still in flight: {}",
            self.summary()
        );
    }

    pub fn assert_on_grid(&self) {
        assert!(
            self.off_grid.is_empty(),
            "off-grid slots: {}",
            self.summary()
        );
    }

    /// No missed, no duplicate and no off-grid slot, and something was expected at all.
    pub fn assert_clean(&self) {
        assert!(self.expected > 0, "nothing expected: {}", self.summary());
        self.assert_no_duplicates();
        self.assert_no_missed();
        self.assert_on_grid();
    }
}

/// Waits until the slots up to `to` had their grace period.
pub async fn settle(to: i64) {
    sleep_until_ms(to + GRACE_MS).await;
}

/// `task_logs` against the sink for the slots in `[from, to]`.
#[derive(Debug)]
pub struct LogCheck {
    pub rows: i64,
    pub distinct: i64,
    /// Slots delivered to the sink (distinct webhook-ids) in the window.
    pub delivered: usize,
    /// Slots in the window with a 200 row.
    pub logged_ok: usize,
    /// (task, slot, rows) with more than one 200 row.
    pub ok_twice: Vec<(Uuid, i64, usize)>,
    /// Delivered slots without a 200 row (after waiting for the batched writes).
    pub unlogged: Vec<(Uuid, i64)>,
    /// Delivered slots without a 200 row that the scenario allows (in flight at a kill).
    pub unlogged_allowed: Vec<(Uuid, i64)>,
    /// 200 rows whose slot never reached the sink.
    pub phantom: Vec<(Uuid, i64)>,
    pub retries: usize,
}

/// Compares the 200 rows in `task_logs` with the sink's deliveries for the slots in
/// `[from, to]`, waiting up to `timeout` for rows of delivered slots (the writes are batched).
pub async fn check_logs(
    db: &DatabaseConnection,
    deliveries: &[Delivery],
    tasks: &[TaskInfo],
    from: i64,
    to: i64,
    timeout: Duration,
    may_be_unlogged: impl Fn(&(Uuid, i64)) -> bool,
) -> LogCheck {
    let ours: HashSet<Uuid> = tasks.iter().map(|t| t.id).collect();
    let delivered: HashSet<(Uuid, i64)> = deliveries
        .iter()
        .filter(|d| ours.contains(&d.task) && d.slot >= from && d.slot <= to)
        .map(|d| (d.task, d.slot))
        .collect();
    let start = Instant::now();
    loop {
        let rows = log_rows(db, from, to).await;
        let rows: Vec<_> = rows
            .into_iter()
            .filter(|r| ours.contains(&r.task))
            .collect();
        let ok = ok_rows_per_slot(&rows);
        let (mut allowed, mut unlogged): (Vec<Slot>, Vec<Slot>) = delivered
            .iter()
            .filter(|k| !ok.contains_key(k))
            .copied()
            .partition(|k| may_be_unlogged(k));
        if !unlogged.is_empty() && start.elapsed() < timeout {
            pause(250).await;
            continue;
        }
        unlogged.sort_by_key(|k| (k.1, k.0));
        allowed.sort_by_key(|k| (k.1, k.0));
        let mut phantom: Vec<(Uuid, i64)> = ok
            .keys()
            .filter(|k| !delivered.contains(k))
            .copied()
            .collect();
        phantom.sort_by_key(|k| (k.1, k.0));
        let mut ok_twice: Vec<(Uuid, i64, usize)> = ok
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(k, n)| (k.0, k.1, *n))
            .collect();
        ok_twice.sort_by_key(|k| (k.1, k.0));
        let counts = log_counts(db).await;
        return LogCheck {
            rows: counts.rows,
            distinct: counts.distinct,
            delivered: delivered.len(),
            logged_ok: ok.len(),
            ok_twice,
            unlogged,
            unlogged_allowed: allowed,
            phantom,
            retries: rows.iter().filter(|r| r.attempt > 1).count(),
        };
    }
}

impl LogCheck {
    pub fn summary(&self, label: &str) -> String {
        format!(
            "[{label} task_logs] rows {} (distinct (task, slot, attempt) {}), window: delivered \
             slots {}, slots with a 200 row {}, slots with two 200 rows {} {:?}, delivered but \
             not logged {} {:?} (and {} allowed), logged 200 but never delivered {} {:?}, rows with attempt > 1 {}",
            self.rows,
            self.distinct,
            self.delivered,
            self.logged_ok,
            self.ok_twice.len(),
            &self.ok_twice[..self.ok_twice.len().min(5)],
            self.unlogged.len(),
            &self.unlogged[..self.unlogged.len().min(5)],
            self.unlogged_allowed.len(),
            self.phantom.len(),
            &self.phantom[..self.phantom.len().min(5)],
            self.retries,
        )
    }

    /// No duplicate rows, no slot recorded as executed twice, no 200 row without a delivery,
    /// and every delivered slot logged except those the scenario allowed.
    pub fn assert_consistent(&self, label: &str) {
        let summary = self.summary(label);
        eprintln!("{summary}");
        assert_eq!(self.rows, self.distinct, "duplicate log rows: {summary}");
        assert!(
            self.ok_twice.is_empty(),
            "a slot logged as executed twice: {summary}"
        );
        assert!(
            self.phantom.is_empty(),
            "200 rows without a delivery: {summary}"
        );
        assert!(
            self.unlogged.is_empty(),
            "delivered slots without a 200 log row: {summary}"
        );
    }
}
