//! TaskRegistry: owns `task_id → Addr<TaskActor>` for every task this node runs. It loads the
//! active tasks from storage at start-up (recovery), starts a supervised actor for each new
//! task, hands redefinitions to the right actor and lets actors go when their task ends. A
//! manual run ([`RunNow`]) goes to the task's actor, or for a paused task to a one-off actor.
//!
//! The task space is cut into `cluster.partitions` partitions by a stable hash of the task
//! id ([`crate::domain::partition::partition_of`]), and the registry runs the tasks of the
//! partitions it owns. A single node owns all of them. In cluster mode the Membership actor
//! tells it which it owns ([`Owned`]): it claims the partitions it gains in the database and
//! then loads their tasks; it hands the ones it loses over (their actors run until the new
//! owner's claim is seen); it applies the change notices other nodes publish ([`Changed`]),
//! and every [`RECONCILE_EVERY`] it compares its actors with the database, so that a lost
//! notice is a delay and never a loss.
//!
//! - [`recovery`]: the start-up load (every active task on a single node).
//! - [`handover`]: claiming gained partitions and releasing lost ones.
//! - [`reconcile`]: change notices and the periodic comparison with the database.
//! - [`ownership`]: the state of each partition and its transitions, as plain data; the
//!   background work of the hand-over reports back by message and only the registry changes
//!   the state.

mod handover;
mod ownership;
mod reconcile;
mod recovery;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use uuid::Uuid;

use super::persistence::PersistenceActor;
use super::task::{Drain, Finished, Redefine, RunManual, RunNowReply, Stop, TaskActor, TaskDeps};
use crate::domain::partition::partition_of;
use crate::metrics::{self, ActorKind};
use crate::store::ActiveTask;
pub use handover::{AwaitHandOver, Owned};
use ownership::Partitions;
pub use reconcile::{ChangeKind, Changed, Resubscribed, RECONCILE_EVERY};
pub use recovery::Recover;

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

/// Run now: one extra execution of a task this node runs. A paused task (no actor) comes
/// with its stored definition, for a one-off actor.
#[derive(Message)]
#[rtype(result = "RunNowReply")]
pub struct RunNow {
    pub task_id: Uuid,
    /// The moment of the request (epoch ms): the execution's slot.
    pub now: i64,
    pub paused: Option<Box<ActiveTask>>,
}

/// Takes the one-off actor of a paused task's manual run out of the registry, if one is
/// under way (a resume lets it finish first).
#[derive(Message)]
#[rtype(result = "Option<Addr<TaskActor>>")]
pub struct TakeOneOff(pub Uuid);

/// Shutdown: every task stops firing; resolves once no request is on the wire, or after
/// `timeout`. Answers how many tasks were drained in time (all of them, or fewer).
#[derive(Message)]
#[rtype(result = "bool")]
pub struct DrainAll {
    pub timeout: std::time::Duration,
}

/// What the registry needs in cluster mode.
pub struct RegistryCluster {
    /// This node's owner token (`node_id/incarnation`), as claims record it.
    pub owner: String,
    pub persistence: Addr<PersistenceActor>,
}

struct ClusterState {
    owner: String,
    persistence: Addr<PersistenceActor>,
    /// Waiting for every release under way to be committed.
    hand_over_waiters: Vec<tokio::sync::oneshot::Sender<()>>,
    /// Claim rounds (claims and loads) under way; the first finished one makes the node ready.
    rounds: usize,
    loaded: bool,
    load_waiters: Vec<tokio::sync::oneshot::Sender<usize>>,
    reconciling: bool,
    recently_finished: HashMap<Uuid, Instant>,
    /// Cancelled or deleted through another node: not started again by a reload that read
    /// the row just before.
    recently_stopped: HashMap<Uuid, Instant>,
}

pub struct TaskRegistry {
    /// Per partition, where it stands on this node; its tasks run here only once it is
    /// claimed (always, on a single node).
    partitions: Partitions,
    /// Shutting down: no task is started any more.
    draining: bool,
    /// The row version each running task was last read at (cluster reconciliation finds a
    /// redefinition whose notice was lost by it).
    versions: HashMap<Uuid, i64>,
    deps: Arc<TaskDeps>,
    tasks: HashMap<Uuid, Addr<TaskActor>>,
    /// Paused tasks' manual runs under way (each actor stops once its run is over).
    one_offs: HashMap<Uuid, Addr<TaskActor>>,
    cluster: Option<ClusterState>,
}

impl TaskRegistry {
    /// A registry whose task actors share `deps` (whose `registry` is this registry's
    /// address: build it in [`Actor::create`]); `partitions`: `cluster.partitions`.
    pub fn new(deps: Arc<TaskDeps>, partitions: u32, cluster: Option<RegistryCluster>) -> Self {
        let partitions = partitions.max(1);
        let cluster = cluster.map(|c| ClusterState {
            owner: c.owner,
            persistence: c.persistence,
            hand_over_waiters: Vec::new(),
            rounds: 0,
            loaded: false,
            load_waiters: Vec::new(),
            reconciling: false,
            recently_finished: HashMap::new(),
            recently_stopped: HashMap::new(),
        });
        // A single node owns everything; a cluster member nothing until told.
        let partitions = match cluster {
            None => Partitions::all_owned(partitions),
            Some(_) => Partitions::none_owned(partitions),
        };
        Self {
            partitions,
            draining: false,
            versions: HashMap::new(),
            deps,
            tasks: HashMap::new(),
            one_offs: HashMap::new(),
            cluster,
        }
    }

    fn partition(&self, task_id: Uuid) -> u32 {
        partition_of(task_id, self.partitions.count())
    }

    fn owns_partition(&self, p: u32) -> bool {
        self.partitions.runs_tasks(p)
    }

    /// Whether this node runs `task_id`.
    fn owns(&self, task_id: Uuid) -> bool {
        self.owns_partition(self.partition(task_id))
    }

    fn loaded(&mut self, n: usize) {
        if let Some(c) = &mut self.cluster {
            c.loaded = true;
            for w in c.load_waiters.drain(..) {
                let _ = w.send(n);
            }
        }
    }

    /// Stops a task's actor and forgets it.
    fn stop_task(&mut self, task_id: Uuid) {
        self.versions.remove(&task_id);
        if let Some(addr) = self.tasks.remove(&task_id) {
            metrics::sent(ActorKind::Task);
            addr.do_send(Stop);
        }
    }

    /// Starts `task`'s actor; `taken_over_at`: its partition was taken over from another node
    /// then (epoch ms), see [`TaskActor::taken_over_at`].
    fn spawn(&mut self, task: ActiveTask, replace: bool, taken_over_at: Option<i64>) {
        if self.draining || !task.status.is_active() || !self.owns(task.task_id) {
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
        self.versions.insert(id, task.version);
        let deps = self.deps.clone();
        let addr =
            Supervisor::start(move |_| TaskActor::new(deps, task).taken_over_at(taken_over_at));
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
        if self.cluster.is_some() {
            ctx.run_interval(RECONCILE_EVERY, |act, ctx| act.reconcile(ctx));
        }
    }
}

impl Handler<Activate> for TaskRegistry {
    type Result = ();

    fn handle(&mut self, msg: Activate, _: &mut Self::Context) {
        let _m = metrics::handling(ActorKind::Registry, "Activate");
        self.spawn(*msg.0, true, None);
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
            None => self.spawn(*msg.task, true, None),
        }
    }
}

impl Handler<Deactivate> for TaskRegistry {
    type Result = Option<Addr<TaskActor>>;

    fn handle(&mut self, msg: Deactivate, _: &mut Self::Context) -> Self::Result {
        let _m = metrics::handling(ActorKind::Registry, "Deactivate");
        self.versions.remove(&msg.0);
        let addr = self.tasks.remove(&msg.0).or_else(|| {
            // A paused task's manual run under way: stopped or released by the change.
            self.one_offs.remove(&msg.0).filter(|a| a.connected())
        });
        metrics::live(ActorKind::Task, self.tasks.len());
        addr
    }
}

impl Handler<Finished> for TaskRegistry {
    type Result = ();

    fn handle(&mut self, msg: Finished, _: &mut Self::Context) {
        let _m = metrics::handling(ActorKind::Registry, "Finished");
        if let Some(c) = &mut self.cluster {
            c.recently_finished.insert(msg.task_id, Instant::now());
        }
        self.stop_task(msg.task_id);
        metrics::live(ActorKind::Task, self.tasks.len());
    }
}

impl Handler<DrainAll> for TaskRegistry {
    type Result = ResponseFuture<bool>;

    fn handle(&mut self, msg: DrainAll, _: &mut Self::Context) -> Self::Result {
        let _m = metrics::handling(ActorKind::Registry, "DrainAll");
        self.draining = true;
        let waits: Vec<_> = self
            .tasks
            .values()
            .chain(self.one_offs.values())
            .map(|a| {
                metrics::sent(ActorKind::Task);
                a.send(Drain)
            })
            .collect();
        // Tasks handed over to another node may still have a call on the wire too.
        let releasing = self.partitions.releasing();
        let released = match &mut self.cluster {
            Some(c) if releasing => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                c.hand_over_waiters.push(tx);
                Some(rx)
            }
            _ => None,
        };
        Box::pin(async move {
            let all = async {
                futures_util::future::join_all(waits).await;
                if let Some(rx) = released {
                    let _ = rx.await;
                }
            };
            tokio::time::timeout(msg.timeout, all).await.is_ok()
        })
    }
}

impl Handler<RunNow> for TaskRegistry {
    type Result = ResponseFuture<RunNowReply>;

    fn handle(&mut self, msg: RunNow, _: &mut Self::Context) -> Self::Result {
        let _m = metrics::handling(ActorKind::Registry, "RunNow");
        let reply = |r| -> ResponseFuture<RunNowReply> { Box::pin(async move { r }) };
        let id = msg.task_id;
        if self.draining {
            return reply(RunNowReply::Unavailable);
        }
        if !self.owns(id) {
            return reply(RunNowReply::NotOwner);
        }
        self.one_offs.retain(|_, a| a.connected());
        let addr = match (self.tasks.get(&id), msg.paused) {
            (Some(addr), _) => addr.clone(),
            (None, Some(task)) => match self.one_offs.get(&id) {
                Some(addr) => addr.clone(),
                None => {
                    let addr = TaskActor::new(self.deps.clone(), *task).one_off().start();
                    self.one_offs.insert(id, addr.clone());
                    addr
                }
            },
            (None, None) => return reply(RunNowReply::NoActor),
        };
        metrics::sent(ActorKind::Task);
        let run = addr.send(RunManual { now: msg.now });
        Box::pin(async move { run.await.unwrap_or(RunNowReply::Unavailable) })
    }
}

impl Handler<TakeOneOff> for TaskRegistry {
    type Result = Option<Addr<TaskActor>>;

    fn handle(&mut self, msg: TakeOneOff, _: &mut Self::Context) -> Self::Result {
        let _m = metrics::handling(ActorKind::Registry, "TakeOneOff");
        self.one_offs.remove(&msg.0).filter(|a| a.connected())
    }
}
