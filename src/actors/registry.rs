//! TaskRegistry: owns `task_id → Addr<TaskActor>` for every task this node runs. It loads the
//! active tasks from storage at start-up (recovery), starts a supervised actor for each new
//! task, hands redefinitions to the right actor and lets actors go when their task ends.
//!
//! The task space is cut into [`PARTITIONS`] partitions by a stable hash of the task id, and
//! the registry runs the tasks of the partitions it owns. A single node owns all of them;
//! cluster membership will narrow that set (`owns`).

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use sea_orm::DbErr;
use uuid::Uuid;

use super::task::{Drain, Finished, Redefine, Stop, TaskActor, TaskDeps};
use crate::metrics::{self, ActorKind};
use crate::store::{ActiveTask, StoreError};

/// Starts an actor for a newly created (and committed) task.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Activate(pub Box<ActiveTask>);

/// Hands a redefined task to its actor; `reschedule` when its next run was recomputed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Replace {
    pub task: Box<ActiveTask>,
    pub reschedule: bool,
}

/// Removes a task's actor from the registry and returns it, so the caller can stop it and
/// wait for it to be stopped.
#[derive(Message)]
#[rtype(result = "Option<Addr<TaskActor>>")]
pub struct Deactivate(pub Uuid);

/// Loads every pending/running task from storage and starts its actor.
#[derive(Message)]
#[rtype(result = "Result<usize, StoreError>")]
pub struct Recover;

/// Shutdown: every task stops firing; resolves once no request is on the wire, or after
/// `timeout`. Answers how many tasks were drained in time (all of them, or fewer).
#[derive(Message)]
#[rtype(result = "bool")]
pub struct DrainAll {
    pub timeout: std::time::Duration,
}

/// The parts of [`TaskDeps`] the registry is given; it adds itself.
pub struct RegistryDeps {
    pub wheel: Arc<super::outbox::Outbox<super::wheel::WheelOp>>,
    pub dispatcher: Arc<super::dispatch::Dispatcher>,
    pub persistence: Arc<super::outbox::Outbox<crate::store::Write>>,
    pub store: crate::store::Store,
    pub default_max_retries: u32,
    pub default_backoff_ms: u64,
}

/// How many partitions the task space is cut into.
pub const PARTITIONS: u32 = 256;

/// The partition of a task: FNV-1a over the id's bytes, so every node and every version
/// computes the same value.
pub fn partition_of(task_id: Uuid) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in task_id.as_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % PARTITIONS
}

pub struct TaskRegistry {
    /// `owned[p]`: whether this node runs partition `p`.
    owned: Vec<bool>,
    base: Option<RegistryDeps>,
    deps: Option<Arc<TaskDeps>>,
    tasks: HashMap<Uuid, Addr<TaskActor>>,
}

impl TaskRegistry {
    pub fn new(deps: RegistryDeps) -> Self {
        Self {
            owned: vec![true; PARTITIONS as usize],
            base: Some(deps),
            deps: None,
            tasks: HashMap::new(),
        }
    }

    /// Whether this node runs `task_id`.
    fn owns(&self, task_id: Uuid) -> bool {
        self.owned
            .get(partition_of(task_id) as usize)
            .copied()
            .unwrap_or(false)
    }

    fn spawn(&mut self, task: ActiveTask, replace: bool) {
        let Some(deps) = self.deps.clone() else {
            return;
        };
        if !task.status.is_active() || !self.owns(task.task_id) {
            return;
        }
        let id = task.task_id;
        if !replace && self.tasks.contains_key(&id) {
            // Created while recovery was loading: the live actor is newer than the row read.
            return;
        }
        if let Some(old) = self.tasks.remove(&id) {
            metrics::sent(ActorKind::Task);
            old.do_send(Stop);
        }
        // On the registry's arbiter. (Placing task actors on their HTTP worker's arbiter was
        // measured — no gain in the bench — and let a `Stop` race the registry's last address
        // on another thread, so that the supervisor restarted a stopped actor; see
        // BENCHMARKS.md, change 15.)
        let addr = Supervisor::start(move |_| TaskActor::new(deps, task));
        self.tasks.insert(id, addr);
        metrics::live(ActorKind::Task, self.tasks.len());
    }
}

impl Actor for TaskRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(super::MAILBOX_CAPACITY);
        metrics::live_add(ActorKind::Registry, 1.0);
        metrics::live(ActorKind::Task, 0);
        if let Some(b) = self.base.take() {
            self.deps = Some(Arc::new(TaskDeps {
                wheel: b.wheel,
                dispatcher: b.dispatcher,
                persistence: b.persistence,
                registry: ctx.address().recipient(),
                store: b.store,
                default_max_retries: b.default_max_retries,
                default_backoff_ms: b.default_backoff_ms,
            }));
        }
    }
}

impl Handler<Activate> for TaskRegistry {
    type Result = ();

    fn handle(&mut self, msg: Activate, _: &mut Self::Context) {
        let _m = metrics::handling(ActorKind::Registry, "Activate");
        self.spawn(*msg.0, true);
    }
}

impl Handler<Replace> for TaskRegistry {
    type Result = ();

    fn handle(&mut self, msg: Replace, _: &mut Self::Context) {
        let _m = metrics::handling(ActorKind::Registry, "Replace");
        match self.tasks.get(&msg.task.task_id) {
            Some(addr) => {
                metrics::sent(ActorKind::Task);
                addr.do_send(Redefine {
                    task: msg.task,
                    reschedule: msg.reschedule,
                })
            }
            None => self.spawn(*msg.task, true),
        }
    }
}

impl Handler<Deactivate> for TaskRegistry {
    type Result = Option<Addr<TaskActor>>;

    fn handle(&mut self, msg: Deactivate, _: &mut Self::Context) -> Self::Result {
        let _m = metrics::handling(ActorKind::Registry, "Deactivate");
        let addr = self.tasks.remove(&msg.0);
        metrics::live(ActorKind::Task, self.tasks.len());
        addr
    }
}

impl Handler<Finished> for TaskRegistry {
    type Result = ();

    fn handle(&mut self, msg: Finished, _: &mut Self::Context) {
        let _m = metrics::handling(ActorKind::Registry, "Finished");
        if let Some(addr) = self.tasks.remove(&msg.task_id) {
            metrics::sent(ActorKind::Task);
            addr.do_send(Stop);
        }
        metrics::live(ActorKind::Task, self.tasks.len());
    }
}

/// Rows read per recovery page.
const RECOVERY_PAGE: u64 = 10_000;

/// One page of recovered tasks, to start.
#[derive(Message)]
#[rtype(result = "()")]
struct Recovered(Vec<ActiveTask>);

impl Handler<Recover> for TaskRegistry {
    type Result = ResponseFuture<Result<usize, StoreError>>;

    /// Reads the active tasks a page at a time (decrypting and checking each row off the
    /// registry's mailbox) and starts each page's actors: peak memory stays at one page of
    /// rows, and the registry keeps answering meanwhile.
    fn handle(&mut self, _: Recover, ctx: &mut Self::Context) -> Self::Result {
        let _m = metrics::handling(ActorKind::Registry, "Recover");
        let Some(deps) = self.deps.clone() else {
            return Box::pin(async { Ok(0) });
        };
        let store = deps.store.clone();
        let me = ctx.address();
        Box::pin(async move {
            // A pipeline: the next page is read while this one is checked (on a blocking
            // thread) and the one before is started (in the registry).
            let fetch = |after: Option<String>| {
                let store = store.clone();
                actix_rt::spawn(async move {
                    store
                        .active_tasks_page(after.as_deref(), RECOVERY_PAGE)
                        .await
                })
            };
            let joined = |e: tokio::task::JoinError| StoreError::Db(DbErr::Custom(e.to_string()));
            let mut next = Some(fetch(None));
            let mut n = 0;
            while let Some(pending) = next.take() {
                let rows = pending.await.map_err(joined)??;
                if rows.len() as u64 == RECOVERY_PAGE {
                    next = rows.last().map(|m| fetch(Some(m.task_id.clone())));
                }
                let store = store.clone();
                let page = tokio::task::spawn_blocking(move || {
                    rows.iter()
                        .filter_map(|m| match store.active_task(m) {
                            Ok(t) => Some(t),
                            Err(e) => {
                                tracing::error!(task_id = %m.task_id, error = %e, "cannot recover task; left as it is");
                                None
                            }
                        })
                        .collect::<Vec<_>>()
                })
                .await
                .map_err(joined)?;
                n += page.len();
                metrics::sent(ActorKind::Registry);
                if me.send(Recovered(page)).await.is_err() {
                    // The registry stopped: the node is shutting down.
                    break;
                }
            }
            Ok(n)
        })
    }
}

impl Handler<Recovered> for TaskRegistry {
    type Result = ();

    fn handle(&mut self, msg: Recovered, _: &mut Self::Context) {
        let _m = metrics::handling(ActorKind::Registry, "Recovered");
        for t in msg.0 {
            self.spawn(t, false);
        }
    }
}

impl Handler<DrainAll> for TaskRegistry {
    type Result = ResponseFuture<bool>;

    fn handle(&mut self, msg: DrainAll, _: &mut Self::Context) -> Self::Result {
        let _m = metrics::handling(ActorKind::Registry, "DrainAll");
        let waits: Vec<_> = self
            .tasks
            .values()
            .map(|a| {
                metrics::sent(ActorKind::Task);
                a.send(Drain)
            })
            .collect();
        Box::pin(async move {
            tokio::time::timeout(msg.timeout, futures_util::future::join_all(waits))
                .await
                .is_ok()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_always_maps_to_the_same_partition_in_range() {
        let id = Uuid::parse_str("550e8400-e29b-41d4-a716-446655440000").unwrap();
        assert_eq!(partition_of(id), partition_of(id));
        assert!(partition_of(id) < PARTITIONS);
    }

    #[test]
    fn task_ids_spread_over_the_partitions() {
        let mut seen = vec![0u32; PARTITIONS as usize];
        for _ in 0..(PARTITIONS * 64) {
            seen[partition_of(Uuid::new_v4()) as usize] += 1;
        }
        // 64 expected per partition; none empty, none wildly over.
        assert!(seen.iter().all(|n| *n > 16 && *n < 160), "{seen:?}");
    }
}
