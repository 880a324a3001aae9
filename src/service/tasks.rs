//! Changes to a task: create, redefine (patch), pause, resume, cancel, delete — and run now,
//! which commits nothing itself (the task's actor starts one execution). Each change commits
//! to storage first (a client told "done" finds the change in the database), then hands the
//! task to its actor through the registry, then — in cluster mode — tells the task's owner
//! and updates the pending queue. A redefinition or cancellation is an optimistic-locked
//! write on the task's `version`: when a concurrent change wins the race, it is tried again
//! on the fresh row, a few times. A change that raises the user's usage holds a quota
//! reservation until its write has committed.

use actix::{Addr, MailboxError, Recipient};
use entities::tasks;
use sea_orm::DbErr;
use uuid::Uuid;

use crate::actors::persistence::{Commit, PersistenceActor};
use crate::actors::registry::{
    Activate, ChangeKind, Changed, Deactivate, Replace, RunNow, TakeOneOff, TaskRegistry,
};
use crate::actors::task::{Release, RunNowReply, Stop};
use crate::auth::Principal;
use crate::cluster::redis::{ClusterRedis, QueueOp, QueueWriter};
use crate::domain::validate::TaskPatch;
use crate::domain::{
    anchor_for, apply_patch, schedule_of, FieldError, Schedule, TaskSpec, TaskStatus,
};
use crate::quota::{QuotaError, Quotas};
use crate::store::{ActiveTask, RowState, ScheduleRow, Store, StoreError, Write};
use crate::time::now_ms;

/// How many times a state change is retried when a concurrent change bumped the version.
const CONFLICT_RETRIES: usize = 5;

/// Why a change was refused or failed; `Display` is the message the client gets (except for
/// the server faults, which are logged, never sent).
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// No such task, or one the caller may not see (never "forbidden": its existence is not
    /// disclosed).
    #[error("task not found")]
    NotFound,
    /// The change is invalid; the message names the field.
    #[error("{0}")]
    Invalid(String),
    /// The task's state does not allow the change.
    #[error("{0}")]
    InvalidState(String),
    /// `If-Match` is stale, or concurrent changes kept winning the race.
    #[error("{0}")]
    VersionMismatch(String),
    /// A per-user quota would be exceeded; the message names the figure.
    #[error("{0}")]
    QuotaExceeded(String),
    /// Run now: an execution of the task is still in flight.
    #[error("{0}")]
    InFlight(String),
    /// The node cannot do it now (starting, shutting down, handing the task over).
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Db(#[from] DbErr),
    #[error("actor mailbox: {0}")]
    Mailbox(#[from] MailboxError),
}

impl TaskError {
    /// Concurrent changes won the race on the task's version every one of the
    /// [`CONFLICT_RETRIES`] times.
    fn kept_losing_the_race() -> Self {
        TaskError::VersionMismatch("the task is being changed concurrently; try again".into())
    }
}

impl From<FieldError> for TaskError {
    fn from(e: FieldError) -> Self {
        TaskError::Invalid(e.to_string())
    }
}

impl From<QuotaError> for TaskError {
    fn from(e: QuotaError) -> Self {
        match e {
            QuotaError::Exceeded(message) => TaskError::QuotaExceeded(message),
            QuotaError::Store(e) => TaskError::Store(e),
        }
    }
}

/// The registry, as the messages this service sends it.
#[derive(Clone)]
pub struct RegistryPort {
    pub activate: Recipient<Activate>,
    pub replace: Recipient<Replace>,
    pub deactivate: Recipient<Deactivate>,
    pub run_now: Recipient<RunNow>,
    pub take_one_off: Recipient<TakeOneOff>,
}

impl From<&Addr<TaskRegistry>> for RegistryPort {
    fn from(registry: &Addr<TaskRegistry>) -> Self {
        Self {
            activate: registry.clone().recipient(),
            replace: registry.clone().recipient(),
            deactivate: registry.clone().recipient(),
            run_now: registry.clone().recipient(),
            take_one_off: registry.clone().recipient(),
        }
    }
}

/// Cluster mode: where change notices go and how task ids map to partitions.
pub struct Notices<'a> {
    pub redis: &'a ClusterRedis,
    pub queue: &'a QueueWriter,
    pub partitions: u32,
}

/// A committed creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Created {
    pub task_id: Uuid,
    pub next_run_time: Option<i64>,
}

/// How a run-now request went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunNowOutcome {
    /// Started here; its slot (the moment of the request, epoch ms).
    Started(i64),
    /// Cluster mode: another node runs the task (the request goes to it).
    Elsewhere,
}

/// The task use cases over one node's store, quotas and actors.
pub struct TaskService<'a> {
    pub store: &'a Store,
    pub quotas: &'a Quotas,
    pub persistence: Recipient<Commit>,
    pub registry: RegistryPort,
    /// `None` on a single node.
    pub notices: Option<Notices<'a>>,
}

impl<'a> TaskService<'a> {
    pub fn new(
        store: &'a Store,
        quotas: &'a Quotas,
        persistence: &Addr<PersistenceActor>,
        registry: &Addr<TaskRegistry>,
        notices: Option<Notices<'a>>,
    ) -> Self {
        Self {
            store,
            quotas,
            persistence: persistence.clone().recipient(),
            registry: RegistryPort::from(registry),
            notices,
        }
    }

    /// Loads a task `who` may see; another user's task is [`TaskError::NotFound`].
    pub async fn owned(&self, who: &Principal, task_id: Uuid) -> Result<tasks::Model, TaskError> {
        match self.store.get_task(task_id).await? {
            Some(m) if who.may_act_for(m.user_id) => Ok(m),
            _ => Err(TaskError::NotFound),
        }
    }

    /// Creates a task from a validated (and authorised) definition: reserves its quota share,
    /// commits it, starts its actor and announces it.
    pub async fn create(&self, spec: TaskSpec) -> Result<Created, TaskError> {
        let now = now_ms();
        let task_id = Uuid::now_v7();
        let anchor = anchor_for(&spec, now);
        let schedule = schedule_of(&spec, anchor).map_err(FieldError::from)?;
        let next = Some(first_run(&schedule, now)?);
        let model = self
            .store
            .model_for(task_id, &spec, anchor, &RowState::created(next, now))?;
        // Reserves the task's share of the user's quota; given back if the insert fails.
        let permit = self
            .quotas
            .admit_create(self.store, &spec, &schedule, now)
            .await?;
        self.commit(Write::InsertTask(Box::new(model))).await?;
        permit.commit();
        crate::metrics::sent(crate::metrics::ActorKind::Registry);
        self.registry
            .activate
            .do_send(Activate(Box::new(ActiveTask {
                task_id,
                spec,
                schedule,
                status: TaskStatus::Pending,
                next_run_time: next,
                execution_count: 0,
                consecutive_failures: 0,
                missed_slots: 0,
                version: 1,
            })));
        self.notify(task_id, ChangeKind::Upsert, true, next).await;
        tracing::info!(%task_id, next_run_ms = next, "task created");
        Ok(Created {
            task_id,
            next_run_time: next,
        })
    }

    /// Redefines task `task_id`, loaded for `who` as `m`, with `patch`, at version `expected`
    /// when given. Returns the task as stored afterwards.
    pub async fn patch(
        &self,
        who: &Principal,
        task_id: Uuid,
        mut m: tasks::Model,
        expected: Option<i64>,
        patch: TaskPatch,
    ) -> Result<tasks::Model, TaskError> {
        let reschedule = patch.changes_schedule();
        for _ in 0..CONFLICT_RETRIES {
            let status = status_of(&m);
            if !status.is_active() {
                return Err(TaskError::InvalidState(format!(
                    "status: the task is {}; only pending or running tasks can be changed",
                    status.as_str()
                )));
            }
            stale(expected, &m)?;
            let spec = apply_patch(&self.store.spec_of(&m)?, patch.clone())?;
            let now = now_ms();
            let anchor = if reschedule {
                anchor_for(&spec, now)
            } else {
                m.start_time.unwrap_or(m.created_at)
            };
            let schedule = schedule_of(&spec, anchor).map_err(FieldError::from)?;
            let next = if reschedule {
                Some(first_run(&schedule, now)?)
            } else {
                m.next_run_time
            };
            let row = RowState {
                status,
                next_run_time: next,
                execution_count: m.execution_count,
                consecutive_failures: m.consecutive_failures,
                missed_slots: m.missed_slots,
                version: m.version + 1,
                created_at: m.created_at,
                updated_at: now,
            };
            let model = self.store.model_for(task_id, &spec, anchor, &row)?;
            let permit = if reschedule {
                let old = ScheduleRow::of(&m);
                Some(
                    self.quotas
                        .admit_reschedule(self.store, &old, &spec, &schedule, now)
                        .await?,
                )
            } else {
                None
            };
            let changed = self
                .commit(Write::Redefine {
                    model: Box::new(model),
                    expected_version: m.version,
                })
                .await?;
            if changed == 1 {
                if let Some(permit) = permit {
                    permit.commit();
                }
                crate::metrics::sent(crate::metrics::ActorKind::Registry);
                self.registry.replace.do_send(Replace {
                    task: Box::new(ActiveTask {
                        task_id,
                        spec,
                        schedule,
                        status,
                        next_run_time: next,
                        execution_count: m.execution_count,
                        consecutive_failures: m.consecutive_failures,
                        missed_slots: m.missed_slots,
                        version: m.version + 1,
                    }),
                    reschedule,
                });
                self.notify(task_id, ChangeKind::Upsert, reschedule, next)
                    .await;
                return self.owned(who, task_id).await;
            }
            // Someone else changed it first: look again.
            m = self.owned(who, task_id).await?;
        }
        Err(TaskError::kept_losing_the_race())
    }

    /// Stops task `task_id`, loaded for `who` as `m`: its actor first (aborting an execution
    /// in flight), then its row, kept with its logs.
    pub async fn cancel(
        &self,
        who: &Principal,
        task_id: Uuid,
        mut m: tasks::Model,
    ) -> Result<(), TaskError> {
        let mut stopped_actor = false;
        for _ in 0..CONFLICT_RETRIES {
            let status = status_of(&m);
            if !status.is_live() {
                return Err(TaskError::InvalidState(format!(
                    "status: the task is already {}",
                    status.as_str()
                )));
            }
            if !stopped_actor {
                self.stop_actor(task_id).await?;
                stopped_actor = true;
            }
            let changed = self
                .commit(Write::SetStatus {
                    task_id: task_id.to_string(),
                    from: TaskStatus::LIVE.to_vec(),
                    to: TaskStatus::Stopped,
                    expected_version: Some(m.version),
                    now: now_ms(),
                })
                .await?;
            if changed == 1 {
                self.notify(task_id, ChangeKind::Stop, false, None).await;
                tracing::info!(%task_id, "task cancelled");
                return Ok(());
            }
            m = self.owned(who, task_id).await?;
        }
        // Still active after every retry: put its actor back rather than leave it unscheduled.
        self.reactivate(&m);
        Err(TaskError::kept_losing_the_race())
    }

    /// Pauses task `task_id`, loaded for `who` as `m`, at version `expected` when given: its
    /// actor is released first (nothing more is fired; a call on the wire finishes and is
    /// logged), then the row becomes `paused`, keeping its counters. Returns the task as
    /// stored afterwards.
    pub async fn pause(
        &self,
        who: &Principal,
        task_id: Uuid,
        mut m: tasks::Model,
        expected: Option<i64>,
    ) -> Result<tasks::Model, TaskError> {
        let mut released = false;
        for _ in 0..CONFLICT_RETRIES {
            let status = status_of(&m);
            let refused = if !status.is_active() {
                Some(TaskError::InvalidState(format!(
                    "status: the task is {}; only pending or running tasks can be paused",
                    status.as_str()
                )))
            } else {
                stale(expected, &m).err()
            };
            if let Some(e) = refused {
                if released {
                    self.reactivate(&m);
                }
                return Err(e);
            }
            if !released {
                self.release_actor(task_id).await?;
                released = true;
            }
            let changed = self
                .commit(Write::SetStatus {
                    task_id: task_id.to_string(),
                    from: TaskStatus::ACTIVE.to_vec(),
                    to: TaskStatus::Paused,
                    expected_version: Some(m.version),
                    now: now_ms(),
                })
                .await?;
            if changed == 1 {
                self.notify(task_id, ChangeKind::Pause, false, None).await;
                tracing::info!(%task_id, "task paused");
                return self.owned(who, task_id).await;
            }
            m = self.owned(who, task_id).await?;
        }
        self.reactivate(&m);
        Err(TaskError::kept_losing_the_race())
    }

    /// Resumes paused task `task_id`, loaded for `who` as `m`, at version `expected` when
    /// given: back to the state it was paused from (`running` once it has executed, else
    /// `pending`), its next run the first slot strictly after now on its schedule (a `once`
    /// task whose time passed meanwhile runs now). Admitted by the quotas as a create is.
    /// Returns the task as stored afterwards.
    pub async fn resume(
        &self,
        who: &Principal,
        task_id: Uuid,
        mut m: tasks::Model,
        expected: Option<i64>,
    ) -> Result<tasks::Model, TaskError> {
        // A manual run of the paused task under way ends first (a call on the wire finishes
        // and its counters are queued before the resume), so the actor started below reads
        // them.
        crate::metrics::sent(crate::metrics::ActorKind::Registry);
        if let Some(addr) = self.registry.take_one_off.send(TakeOneOff(task_id)).await? {
            crate::metrics::sent(crate::metrics::ActorKind::Task);
            let _ = addr.send(Release).await;
        }
        for _ in 0..CONFLICT_RETRIES {
            let status = status_of(&m);
            if status != TaskStatus::Paused {
                return Err(TaskError::InvalidState(format!(
                    "status: the task is {}; only a paused task can be resumed",
                    status.as_str()
                )));
            }
            stale(expected, &m)?;
            let spec = self.store.spec_of(&m)?;
            let schedule = schedule_of(&spec, m.start_time.unwrap_or(m.created_at))
                .map_err(FieldError::from)?;
            let now = now_ms();
            let next = schedule.first_run(now).ok_or_else(|| {
                TaskError::InvalidState(
                    "cron_expression: the schedule fires no time after now".into(),
                )
            })?;
            let to = if m.execution_count > 0 {
                TaskStatus::Running
            } else {
                TaskStatus::Pending
            };
            let permit = self
                .quotas
                .admit_resume(self.store, &spec, &schedule, now)
                .await?;
            let changed = self
                .commit(Write::Resume {
                    task_id: task_id.to_string(),
                    to,
                    next_run_time: Some(next),
                    expected_version: m.version,
                    now,
                })
                .await?;
            if changed == 1 {
                permit.commit();
                // Read after the commit: the counters of a manual run made while paused.
                let fresh = self.owned(who, task_id).await?;
                crate::metrics::sent(crate::metrics::ActorKind::Registry);
                self.registry
                    .activate
                    .do_send(Activate(Box::new(ActiveTask {
                        task_id,
                        spec,
                        schedule,
                        status: to,
                        next_run_time: Some(next),
                        execution_count: fresh.execution_count,
                        consecutive_failures: fresh.consecutive_failures,
                        missed_slots: fresh.missed_slots,
                        version: m.version + 1,
                    })));
                self.notify(task_id, ChangeKind::Resume, true, Some(next))
                    .await;
                tracing::info!(%task_id, next_run_ms = next, "task resumed");
                return Ok(fresh);
            }
            m = self.owned(who, task_id).await?;
        }
        Err(TaskError::kept_losing_the_race())
    }

    /// Runs task `task_id`, loaded for `who` as `m`, once now, outside its schedule (its next
    /// run is not moved). A pending, running or paused task (which stays paused); refused
    /// while an execution of the task is in flight.
    pub async fn run_now(
        &self,
        who: &Principal,
        task_id: Uuid,
        m: tasks::Model,
    ) -> Result<RunNowOutcome, TaskError> {
        let status = status_of(&m);
        if !status.is_live() {
            return Err(finished_state(status));
        }
        let paused = match status {
            TaskStatus::Paused => Some(Box::new(self.store.active_task(&m)?)),
            _ => None,
        };
        crate::metrics::sent(crate::metrics::ActorKind::Registry);
        let reply = self
            .registry
            .run_now
            .send(RunNow {
                task_id,
                now: now_ms(),
                paused,
            })
            .await?;
        match reply {
            RunNowReply::Started(slot) => Ok(RunNowOutcome::Started(slot)),
            RunNowReply::NotOwner => Ok(RunNowOutcome::Elsewhere),
            RunNowReply::InFlight(slot) => Err(TaskError::InFlight(format!(
                "task_id: an execution of the task (scheduled for {}) is still in flight",
                crate::time::to_rfc3339(slot)
            ))),
            RunNowReply::Ended | RunNowReply::NoActor => {
                // Finished meanwhile, or not loaded yet on this node.
                let status = status_of(&self.owned(who, task_id).await?);
                if !status.is_live() {
                    return Err(finished_state(status));
                }
                Err(TaskError::Unavailable(
                    "the task is not loaded on this node yet; try again".into(),
                ))
            }
            RunNowReply::Unavailable => Err(TaskError::Unavailable(
                "the node is shutting down or handing the task over; try again".into(),
            )),
        }
    }

    /// Stops task `task_id` as cancel does and removes it and its logs.
    pub async fn delete(&self, task_id: Uuid) -> Result<(), TaskError> {
        self.stop_actor(task_id).await?;
        self.commit(Write::DeleteTask {
            task_id: task_id.to_string(),
        })
        .await?;
        self.notify(task_id, ChangeKind::Stop, false, None).await;
        tracing::info!(%task_id, "task deleted");
        Ok(())
    }

    /// A write the caller waits for; the rows it changed.
    async fn commit(&self, write: Write) -> Result<u64, TaskError> {
        crate::metrics::sent(crate::metrics::ActorKind::Persistence);
        Ok(self.persistence.send(Commit(write)).await??)
    }

    /// Stops the task's actor (aborting an execution in flight) and waits until it has
    /// stopped, so nothing it sends afterwards can race the change that follows.
    async fn stop_actor(&self, task_id: Uuid) -> Result<(), TaskError> {
        crate::metrics::sent(crate::metrics::ActorKind::Registry);
        if let Some(addr) = self.registry.deactivate.send(Deactivate(task_id)).await? {
            crate::metrics::sent(crate::metrics::ActorKind::Task);
            let _ = addr.send(Stop).await;
        }
        Ok(())
    }

    /// Takes the task's actor out of the registry and lets it go as a hand-over does: nothing
    /// more is fired, a call on the wire finishes and is logged (its writes are queued before
    /// whatever this service commits next); waits until it has stopped.
    async fn release_actor(&self, task_id: Uuid) -> Result<(), TaskError> {
        crate::metrics::sent(crate::metrics::ActorKind::Registry);
        if let Some(addr) = self.registry.deactivate.send(Deactivate(task_id)).await? {
            crate::metrics::sent(crate::metrics::ActorKind::Task);
            let _ = addr.send(Release).await;
        }
        Ok(())
    }

    /// Puts back the actor of a task left active by a change that did not happen, rather than
    /// leave it unscheduled.
    fn reactivate(&self, m: &tasks::Model) {
        if !status_of(m).is_active() {
            return;
        }
        if let Ok(t) = self.store.active_task(m) {
            crate::metrics::sent(crate::metrics::ActorKind::Registry);
            self.registry.activate.do_send(Activate(Box::new(t)));
        }
    }

    /// Cluster mode: tells the task's owner about a committed change.
    async fn notify(&self, task_id: Uuid, kind: ChangeKind, reschedule: bool, next: Option<i64>) {
        if let Some(notices) = &self.notices {
            publish_change(notices, task_id, kind, reschedule, next).await;
        }
    }
}

/// Tells the task's owner (whichever node it is) about a committed change. Awaited (briefly)
/// so the owner hears of it before the client does; a notice that cannot be sent is a delay —
/// the owner's reconciliation finds the change — never a loss.
///
/// The pending queue is updated from here too (a new next run, or the task's removal), so it
/// stays complete while the task's partition changes hands.
async fn publish_change(
    notices: &Notices<'_>,
    task_id: Uuid,
    kind: ChangeKind,
    reschedule: bool,
    next: Option<i64>,
) {
    let partition = crate::domain::partition::partition_of(task_id, notices.partitions);
    match (kind, next) {
        (ChangeKind::Stop | ChangeKind::Pause, _) => notices
            .queue
            .push(vec![QueueOp::Remove { partition, task_id }]),
        (ChangeKind::Upsert | ChangeKind::Resume, Some(at_ms)) if reschedule => {
            notices.queue.push(vec![QueueOp::Set {
                partition,
                task_id,
                at_ms,
            }])
        }
        _ => {}
    }
    let change = Changed {
        origin: notices.redis.owner().to_string(),
        task_id,
        kind,
        reschedule,
    };
    match notices.redis.publish(&change).await {
        Ok(()) => crate::metrics::cluster_notice("published"),
        Err(e) => {
            crate::metrics::cluster_notice("publish_failed");
            tracing::warn!(%task_id, error = %e, "change notice not sent; the owner's reconciliation will pick the change up");
        }
    }
}

/// `If-Match`: the change applies only to the version the client saw.
fn stale(expected: Option<i64>, m: &tasks::Model) -> Result<(), TaskError> {
    match expected {
        Some(v) if v != m.version => Err(TaskError::VersionMismatch(format!(
            "If-Match: version {v} is stale; the task is at version {}",
            m.version
        ))),
        _ => Ok(()),
    }
}

/// Run now of a task in a final state.
fn finished_state(status: TaskStatus) -> TaskError {
    TaskError::InvalidState(format!(
        "status: the task is {}; only pending, running or paused tasks can run",
        status.as_str()
    ))
}

fn status_of(m: &tasks::Model) -> TaskStatus {
    TaskStatus::parse(&m.status).unwrap_or(TaskStatus::Stopped)
}

/// The first run of a new or rescheduled task. A cron expression whose fires all lie before
/// the task's start (or before now) would be created only to complete at once: refused.
pub(super) fn first_run(schedule: &Schedule, now: i64) -> Result<i64, TaskError> {
    schedule.first_run(now).ok_or_else(|| {
        TaskError::Invalid(
            "cron_expression: fires no time after the task's start_time and now".into(),
        )
    })
}

#[cfg(test)]
mod tests;
