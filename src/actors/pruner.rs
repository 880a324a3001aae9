//! Pruner actor: history retention (README, "History retention"). On its own arbiter it
//! deletes execution log rows past their age or beyond their task's count, and finished tasks
//! past `finished_task_days` with their logs — one bounded statement at a time with a pause
//! after each, so a table of tens of millions of rows is worked off without holding the
//! database (on SQLite, its single write lock) for more than one short batch. The fire path
//! never waits for it: it has no message that anything else sends.
//!
//! It goes round three phases, keeping only a cursor in memory (a restart starts the round
//! again, and every delete is by id, so nothing is deleted twice or skipped for good):
//!
//! 1. **age** — rows older than the global `max_age_days`, oldest first, by the `created_at`
//!    index, until a batch comes back short;
//! 2. **tasks** — a walk over the tasks in id order, `tasks_per_pass` at a time: rows older
//!    than a task's own stricter `max_age_days`, then rows beyond its newest `max_logs`
//!    (read through the `(task_id, created_at)` index, at most `max_logs + batch_size`
//!    entries a task), and its notifications beyond the newest
//!    [`MAX_NOTIFICATIONS_PER_TASK`];
//! 3. **finished** — when `finished_task_days` is set, completed, failed and stopped tasks last
//!    updated before it: their logs in batches, then the task row with its notifications.
//!
//! A round that deleted nothing is followed by a longer pause. In a cluster every node
//! prunes: the statements are bounded per node and a row deleted by another node is simply
//! not found again.

use std::time::Duration;

use actix::prelude::*;

use crate::config::RetentionSettings;
use crate::domain::notify::MAX_NOTIFICATIONS_PER_TASK;
use crate::domain::retention::{age_cutoff_ms, finished_cutoff_ms};
use crate::metrics;
use crate::store::{Store, StoreError};
use crate::time::now_ms;

/// The longest pause after a round that found nothing to delete.
const IDLE_PAUSE_MAX: Duration = Duration::from_secs(60);
/// A round that found nothing waits this many `interval_ms` before the next.
const IDLE_PAUSE_INTERVALS: u32 = 25;

/// Where the pruner is in its round.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
enum Phase {
    #[default]
    Age,
    Tasks {
        after: Option<String>,
    },
    Finished {
        after: Option<String>,
    },
}

/// Why rows were deleted (the `reason` label of `tickwheel_retention_pruned_rows_total`).
#[derive(Clone, Copy, Debug)]
pub enum Reason {
    Age,
    Count,
    FinishedTask,
}

impl Reason {
    pub const ALL: [Reason; 3] = [Reason::Age, Reason::Count, Reason::FinishedTask];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Age => "age",
            Reason::Count => "count",
            Reason::FinishedTask => "finished_task",
        }
    }
}

/// The result of one step: the next phase, and whether it deleted anything.
struct Step {
    next: Phase,
    deleted: bool,
}

pub struct Pruner {
    store: Store,
    settings: RetentionSettings,
    phase: Phase,
    /// Something was deleted since the round began.
    busy_round: bool,
}

impl Pruner {
    pub fn new(store: Store, settings: RetentionSettings) -> Self {
        Self {
            store,
            settings,
            phase: Phase::Age,
            busy_round: false,
        }
    }

    fn interval(&self) -> Duration {
        Duration::from_millis(self.settings.interval_ms)
    }

    fn schedule(&mut self, ctx: &mut Context<Self>, after: Duration) {
        ctx.run_later(after, |act, ctx| act.step(ctx));
    }

    fn step(&mut self, ctx: &mut Context<Self>) {
        let store = self.store.clone();
        let settings = self.settings.clone();
        let phase = self.phase.clone();
        let work = async move { step(&store, &settings, phase).await };
        ctx.spawn(work.into_actor(self).map(|result, act, ctx| {
            let pause = match result {
                Ok(step) => {
                    act.busy_round |= step.deleted;
                    let round_over = step.next == Phase::Age && act.phase != Phase::Age;
                    act.phase = step.next;
                    if round_over && !std::mem::take(&mut act.busy_round) {
                        (act.interval() * IDLE_PAUSE_INTERVALS).min(IDLE_PAUSE_MAX)
                    } else {
                        act.interval()
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "history retention: a prune step failed; retrying");
                    act.interval().max(Duration::from_secs(1))
                }
            };
            act.schedule(ctx, pause);
        }));
    }
}

impl Actor for Pruner {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let first = self.interval();
        self.schedule(ctx, first);
    }
}

/// One step: at most one delete statement (and the reads that find its rows).
async fn step(
    store: &Store,
    settings: &RetentionSettings,
    phase: Phase,
) -> Result<Step, StoreError> {
    let now = now_ms();
    let global = settings.limits();
    let batch = settings.batch_size;
    match phase {
        Phase::Age => {
            let cutoff = age_cutoff_ms(now, global.max_age_days);
            let ids = store.log_ids_before(None, cutoff, batch).await?;
            let full = ids.len() as u64 >= batch;
            let n = store.delete_logs(ids).await?;
            metrics::retention_pruned(Reason::Age.as_str(), n);
            if let Some(oldest) = store.oldest_log_ms().await? {
                metrics::retention_oldest_log(oldest);
            }
            let next = if full {
                Phase::Age
            } else {
                Phase::Tasks { after: None }
            };
            Ok(Step {
                next,
                deleted: n > 0,
            })
        }
        Phase::Tasks { after } => {
            let page = store
                .tasks_to_prune(after.as_deref(), settings.tasks_per_pass)
                .await?;
            let mut cursor = after;
            for task in &page {
                let limits = task.retention.effective(global);
                if limits.max_age_days < global.max_age_days {
                    let cutoff = age_cutoff_ms(now, limits.max_age_days);
                    let ids = store
                        .log_ids_before(Some(&task.task_id), cutoff, batch)
                        .await?;
                    if !ids.is_empty() {
                        let n = store.delete_logs(ids).await?;
                        metrics::retention_pruned(Reason::Age.as_str(), n);
                        // Back to this task next step: it may have more.
                        return Ok(Step {
                            next: Phase::Tasks { after: cursor },
                            deleted: true,
                        });
                    }
                }
                let ids = store
                    .log_ids_beyond(&task.task_id, limits.max_logs_per_task, batch)
                    .await?;
                if !ids.is_empty() {
                    let n = store.delete_logs(ids).await?;
                    metrics::retention_pruned(Reason::Count.as_str(), n);
                    return Ok(Step {
                        next: Phase::Tasks { after: cursor },
                        deleted: true,
                    });
                }
                let ids = store
                    .notification_ids_beyond(&task.task_id, MAX_NOTIFICATIONS_PER_TASK, batch)
                    .await?;
                if !ids.is_empty() {
                    store.delete_notifications(ids).await?;
                    return Ok(Step {
                        next: Phase::Tasks { after: cursor },
                        deleted: true,
                    });
                }
                cursor = Some(task.task_id.clone());
            }
            let next = if (page.len() as u64) < settings.tasks_per_pass {
                if settings.finished_task_days > 0 {
                    Phase::Finished { after: None }
                } else {
                    Phase::Age
                }
            } else {
                Phase::Tasks { after: cursor }
            };
            Ok(Step {
                next,
                deleted: false,
            })
        }
        Phase::Finished { after } => {
            let Some(cutoff) = finished_cutoff_ms(now, settings.finished_task_days) else {
                return Ok(Step {
                    next: Phase::Age,
                    deleted: false,
                });
            };
            let page = store
                .finished_tasks(after.as_deref(), settings.tasks_per_pass)
                .await?;
            let mut cursor = after;
            for task in page.iter().filter(|t| t.updated_at < cutoff) {
                let ids = store.log_ids_of(&task.task_id, batch).await?;
                if !ids.is_empty() {
                    let n = store.delete_logs(ids).await?;
                    metrics::retention_pruned(Reason::FinishedTask.as_str(), n);
                    return Ok(Step {
                        next: Phase::Finished { after: cursor },
                        deleted: true,
                    });
                }
                let n = store.delete_finished_task(&task.task_id, cutoff).await?;
                metrics::retention_finished_tasks_deleted(n);
                if n > 0 {
                    tracing::debug!(task_id = %task.task_id, "history retention: finished task deleted");
                }
                cursor = Some(task.task_id.clone());
                if n > 0 {
                    return Ok(Step {
                        next: Phase::Finished { after: cursor },
                        deleted: true,
                    });
                }
            }
            let next = if (page.len() as u64) < settings.tasks_per_pass {
                Phase::Age
            } else {
                Phase::Finished {
                    after: page.last().map(|t| t.task_id.clone()),
                }
            };
            Ok(Step {
                next,
                deleted: false,
            })
        }
    }
}
