//! TaskRegistry: owns `task_id → Addr<TaskActor>` for every task this node runs. It loads the
//! active tasks from storage at start-up (recovery), starts a supervised actor for each new
//! task, hands redefinitions to the right actor and lets actors go when their task ends.
//!
//! The task space is cut into `cluster.partitions` partitions by a stable hash of the task
//! id ([`crate::cluster::partition_of`]), and the registry runs the tasks of the partitions it
//! owns. A single node owns all of them. In cluster mode the Membership actor tells it which
//! it owns ([`Owned`]): it claims the partitions it gains in the database and then loads their
//! tasks; it hands the ones it loses over (their actors run until the new owner's claim is
//! seen); it applies the change notices other nodes publish ([`Changed`]), and every
//! [`RECONCILE_EVERY`] it compares its actors with the database, so that a lost notice is a
//! delay and never a loss.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use sea_orm::DbErr;
use uuid::Uuid;

use super::persistence::{Commit, Flush, PersistenceActor};
use super::task::{Drain, Finished, Redefine, Release, Requeue, Stop, TaskActor, TaskDeps};
use crate::cluster::redis::{ChangeKind, Changed, Resubscribed};
use crate::cluster::{partition_of, TaskCluster};
use crate::domain::TaskStatus;
use crate::metrics::{self, ActorKind};
use crate::store::{ActiveTask, StoreError, Write};

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

/// Cluster mode: the partitions this node owns now, and the owner tokens of the live
/// members. The actors of the partitions it loses are released at once (a call on the wire
/// finishes), what they wrote is committed and the partitions are released in the database;
/// a partition it gains is claimed once its previous holder released it (or is no longer a
/// live member, or after [`HAND_OVER_MAX`]), then its tasks are loaded. Without
/// `hand_over` (the session was lost) the same happens, but nobody waits for this node.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Owned {
    pub partitions: Vec<u32>,
    pub live_owners: Vec<String>,
    pub hand_over: bool,
}

/// Resolves once every partition this node lost is released in the database (and the
/// calls of their tasks are finished), or after `timeout`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AwaitHandOver {
    pub timeout: Duration,
}

/// How long a gained partition waits for a live previous holder to release it at most.
const HAND_OVER_MAX: Duration = Duration::from_secs(10);
/// How long released tasks may finish their calls before their partition is released anyway
/// (their last advance is then fenced off; the slot is not sent again by the guard).
const RELEASE_DRAIN_MAX: Duration = Duration::from_secs(2);
/// How often a gained partition's holder is looked up while it is being released.
const RELEASE_POLL: Duration = Duration::from_millis(25);
/// How often the registry compares its actors with the database in cluster mode.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(5);
/// A task that finished here is not brought back by a reconciliation for this long (its
/// final state may still be on its way to the database).
const FINISHED_MEMORY: Duration = Duration::from_secs(10);

/// What the registry needs in cluster mode.
pub struct RegistryCluster {
    /// This node's owner token (`node_id/incarnation`), as claims record it.
    pub owner: String,
    pub persistence: Addr<PersistenceActor>,
}

/// The parts of [`TaskDeps`] the registry is given; it adds itself.
pub struct RegistryDeps {
    pub wheel: Arc<super::outbox::Outbox<super::wheel::WheelOp>>,
    pub dispatcher: Arc<super::dispatch::Dispatcher>,
    pub persistence: Arc<super::outbox::Outbox<crate::store::Write>>,
    pub store: crate::store::Store,
    pub default_max_retries: u32,
    pub default_backoff_ms: u64,
    /// `cluster.partitions`.
    pub partitions: u32,
    /// Cluster mode: the lease, the Redis guard and the pending queue of task actors.
    pub task_cluster: Option<Arc<TaskCluster>>,
    pub cluster: Option<RegistryCluster>,
}

struct ClusterState {
    owner: String,
    persistence: Addr<PersistenceActor>,
    /// Releases under way (actors draining, writes committing, rows released).
    releases: usize,
    hand_over_waiters: Vec<tokio::sync::oneshot::Sender<()>>,
    /// Claims and loads under way; the first finished one makes the node ready.
    loads: usize,
    loaded: bool,
    load_waiters: Vec<tokio::sync::oneshot::Sender<usize>>,
    reconciling: bool,
    recently_finished: HashMap<Uuid, Instant>,
    /// Cancelled or deleted through another node: not started again by a reload that read
    /// the row just before.
    recently_stopped: HashMap<Uuid, Instant>,
    /// Partitions being released or claimed by this node: a claim waits for this node's own
    /// release of the partition, and a release for its claim, so neither lands out of order.
    releasing: Arc<Mutex<HashSet<u32>>>,
    claiming: Arc<Mutex<HashSet<u32>>>,
}

/// A flag per partition, readable by the claim-and-load tasks off the registry.
type OwnedMap = Arc<Vec<AtomicBool>>;

fn flag(map: &OwnedMap, p: u32) -> bool {
    map.get(p as usize)
        .is_some_and(|o| o.load(Ordering::Acquire))
}

fn set_flag(map: &OwnedMap, p: u32, v: bool) {
    if let Some(o) = map.get(p as usize) {
        o.store(v, Ordering::Release);
    }
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub struct TaskRegistry {
    partitions: u32,
    /// `owned[p]`: whether this node runs partition `p` (in a cluster: assigned to it and
    /// claimed in the database — no task of it is started before the claim).
    owned: OwnedMap,
    /// Cluster mode: `assigned[p]`: the membership gives partition `p` to this node.
    assigned: OwnedMap,
    /// Shutting down: no task is started any more.
    draining: bool,
    /// The row version each running task was last read at (cluster reconciliation finds a
    /// redefinition whose notice was lost by it).
    versions: HashMap<Uuid, i64>,
    base: Option<RegistryDeps>,
    deps: Option<Arc<TaskDeps>>,
    tasks: HashMap<Uuid, Addr<TaskActor>>,
    cluster: Option<ClusterState>,
}

impl TaskRegistry {
    pub fn new(mut deps: RegistryDeps) -> Self {
        let partitions = deps.partitions.max(1);
        let cluster = deps.cluster.take().map(|c| ClusterState {
            owner: c.owner,
            persistence: c.persistence,
            releases: 0,
            hand_over_waiters: Vec::new(),
            loads: 0,
            loaded: false,
            load_waiters: Vec::new(),
            reconciling: false,
            recently_finished: HashMap::new(),
            recently_stopped: HashMap::new(),
            releasing: Arc::default(),
            claiming: Arc::default(),
        });
        // A single node owns everything; a cluster member nothing until told.
        let all = cluster.is_none();
        let owned = Arc::new((0..partitions).map(|_| AtomicBool::new(all)).collect());
        let assigned = Arc::new((0..partitions).map(|_| AtomicBool::new(all)).collect());
        Self {
            partitions,
            owned,
            assigned,
            draining: false,
            versions: HashMap::new(),
            base: Some(deps),
            deps: None,
            tasks: HashMap::new(),
            cluster,
        }
    }

    fn partition(&self, task_id: Uuid) -> u32 {
        partition_of(task_id, self.partitions)
    }

    fn owns_partition(&self, p: u32) -> bool {
        flag(&self.owned, p)
    }

    /// Whether this node runs `task_id`.
    fn owns(&self, task_id: Uuid) -> bool {
        self.owns_partition(self.partition(task_id))
    }

    /// Takes the actors of tasks this node no longer owns out of the registry and asks each
    /// to release its task (fire nothing more, let a call on the wire finish, stop).
    fn release_unowned(&mut self) -> Vec<Request<TaskActor, Release>> {
        let gone: Vec<Uuid> = self
            .tasks
            .keys()
            .filter(|id| !self.owns(**id))
            .copied()
            .collect();
        let mut waits = Vec::with_capacity(gone.len());
        for id in &gone {
            self.versions.remove(id);
            if let Some(addr) = self.tasks.remove(id) {
                metrics::sent(ActorKind::Task);
                waits.push(addr.send(Release));
            }
        }
        if !gone.is_empty() {
            tracing::info!(
                tasks = gone.len(),
                "released the tasks of partitions handed over"
            );
        }
        metrics::live(ActorKind::Task, self.tasks.len());
        waits
    }

    fn loaded(&mut self, n: usize) {
        if let Some(c) = &mut self.cluster {
            c.loaded = true;
            for w in c.load_waiters.drain(..) {
                let _ = w.send(n);
            }
        }
    }

    /// Starts `task`'s actor; `taken_over_at`: its partition was taken over from another node
    /// then (epoch ms), see [`TaskActor::taken_over_at`].
    fn spawn(&mut self, task: ActiveTask, replace: bool, taken_over_at: Option<i64>) {
        let Some(deps) = self.deps.clone() else {
            return;
        };
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
        if let Some(b) = self.base.take() {
            self.deps = Some(Arc::new(TaskDeps {
                wheel: b.wheel,
                dispatcher: b.dispatcher,
                persistence: b.persistence,
                registry: ctx.address().recipient(),
                store: b.store,
                default_max_retries: b.default_max_retries,
                default_backoff_ms: b.default_backoff_ms,
                cluster: b.task_cluster,
                pacer: super::task::CatchUpPacer::default(),
            }));
        }
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
        let addr = self.tasks.remove(&msg.0);
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
        self.versions.remove(&msg.task_id);
        if let Some(addr) = self.tasks.remove(&msg.task_id) {
            metrics::sent(ActorKind::Task);
            addr.do_send(Stop);
        }
        metrics::live(ActorKind::Task, self.tasks.len());
    }
}

/// Rows read per recovery page.
const RECOVERY_PAGE: u64 = 10_000;

/// One page of recovered tasks, to start; `taken_over_at`: loaded because their partitions
/// were taken over from another node then (epoch ms).
#[derive(Message)]
#[rtype(result = "()")]
struct Recovered {
    tasks: Vec<ActiveTask>,
    taken_over_at: Option<i64>,
}

impl Handler<Recover> for TaskRegistry {
    type Result = ResponseFuture<Result<usize, StoreError>>;

    /// Single node: loads every active task. Cluster mode: resolves once the tasks of the
    /// first partitions assigned to this node are loaded.
    fn handle(&mut self, _: Recover, ctx: &mut Self::Context) -> Self::Result {
        let _m = metrics::handling(ActorKind::Registry, "Recover");
        if let Some(c) = &mut self.cluster {
            let (tx, rx) = tokio::sync::oneshot::channel();
            if c.loaded {
                let _ = tx.send(self.tasks.len());
            } else {
                c.load_waiters.push(tx);
            }
            return Box::pin(async move {
                rx.await
                    .map_err(|_| StoreError::Db(DbErr::Custom("the registry stopped".into())))
            });
        }
        let Some(deps) = self.deps.clone() else {
            return Box::pin(async { Ok(0) });
        };
        Box::pin(load_tasks(
            deps.store.clone(),
            ctx.address(),
            self.partitions,
            None,
            None,
        ))
    }
}

/// Reads the active tasks a page at a time (decrypting and checking each row off the
/// registry's mailbox; with `only`, just the rows of those partitions) and has the registry
/// start each page's actors: peak memory stays at one page of rows, and the registry keeps
/// answering meanwhile.
async fn load_tasks(
    store: crate::store::Store,
    me: Addr<TaskRegistry>,
    partitions: u32,
    only: Option<Arc<HashSet<u32>>>,
    taken_over_at: Option<i64>,
) -> Result<usize, StoreError> {
    // A pipeline: the next page is read while this one is checked (on a blocking thread)
    // and the one before is started (in the registry). Pages walk the pending tasks, then
    // the running ones: in that order, since a task only ever goes from pending to running,
    // one that changes status during the walk is read in the second walk if not the first.
    let fetch = |status: usize, after: Option<String>| {
        let store = store.clone();
        let page = actix_rt::spawn(async move {
            store
                .tasks_page(TaskStatus::ACTIVE[status], after.as_deref(), RECOVERY_PAGE)
                .await
        });
        (status, page)
    };
    let joined = |e: tokio::task::JoinError| StoreError::Db(DbErr::Custom(e.to_string()));
    let mut next = Some(fetch(0, None));
    let mut n = 0;
    while let Some((status, pending)) = next.take() {
        let rows = pending.await.map_err(joined)??;
        next = match rows.last() {
            Some(last) if rows.len() as u64 == RECOVERY_PAGE => {
                Some(fetch(status, Some(last.task_id.clone())))
            }
            _ if status + 1 < TaskStatus::ACTIVE.len() => Some(fetch(status + 1, None)),
            _ => None,
        };
        let store = store.clone();
        let only = only.clone();
        let page = tokio::task::spawn_blocking(move || {
            rows.iter()
                .filter(|m| {
                    only.as_ref().is_none_or(|o| {
                        Uuid::parse_str(&m.task_id)
                            .is_ok_and(|id| o.contains(&partition_of(id, partitions)))
                    })
                })
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
        let page = Recovered {
            tasks: page,
            taken_over_at,
        };
        if me.send(page).await.is_err() {
            // The registry stopped: the node is shutting down.
            break;
        }
    }
    Ok(n)
}

impl Handler<Recovered> for TaskRegistry {
    type Result = ();

    fn handle(&mut self, msg: Recovered, _: &mut Self::Context) {
        let _m = metrics::handling(ActorKind::Registry, "Recovered");
        for t in msg.tasks {
            self.spawn(t, false, msg.taken_over_at);
        }
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
            .map(|a| {
                metrics::sent(ActorKind::Task);
                a.send(Drain)
            })
            .collect();
        // Tasks handed over to another node may still have a call on the wire too.
        let released = match &mut self.cluster {
            Some(c) if c.releases > 0 => {
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

// ---- cluster mode ----

impl Handler<Owned> for TaskRegistry {
    type Result = ();

    fn handle(&mut self, msg: Owned, ctx: &mut Self::Context) {
        let _m = metrics::handling(ActorKind::Registry, "Owned");
        let n = self.partitions;
        let mut now_owned = vec![false; n as usize];
        for p in &msg.partitions {
            if let Some(o) = now_owned.get_mut(*p as usize) {
                *o = true;
            }
        }
        let gained: Vec<u32> = (0..n)
            .filter(|p| now_owned[*p as usize] && !flag(&self.assigned, *p))
            .collect();
        let lost: Vec<u32> = (0..n)
            .filter(|p| !now_owned[*p as usize] && flag(&self.assigned, *p))
            .collect();
        // Assigned now; owned (tasks started) only once claimed, by `acquire`. A lost
        // partition starts nothing more at once.
        for (p, o) in now_owned.iter().enumerate() {
            set_flag(&self.assigned, p as u32, *o);
            if !*o {
                set_flag(&self.owned, p as u32, false);
            }
        }
        tracing::info!(
            gained = gained.len(),
            lost = lost.len(),
            hand_over = msg.hand_over,
            "partition ownership changed"
        );
        let Some(deps) = self.deps.clone() else {
            return;
        };
        if !lost.is_empty() {
            self.release(lost, &deps, ctx);
        }
        let Some(c) = &mut self.cluster else { return };
        if gained.is_empty() {
            if c.loads == 0 {
                self.loaded(0);
            }
            return;
        }
        c.loads += 1;
        let persistence = c.persistence.clone();
        let owner = c.owner.clone();
        let me = ctx.address();
        let maps = Maps {
            owned: self.owned.clone(),
            assigned: self.assigned.clone(),
            releasing: c.releasing.clone(),
            claiming: c.claiming.clone(),
        };
        let live: HashSet<String> = msg.live_owners.into_iter().collect();
        actix_rt::spawn(async move {
            let result = acquire(
                &deps,
                &persistence,
                &owner,
                &live,
                &maps,
                me.clone(),
                Gained {
                    partitions: gained,
                    at_ms: crate::time::now_ms(),
                },
            )
            .await;
            metrics::sent(ActorKind::Registry);
            me.do_send(LoadDone(result));
        });
    }
}

impl TaskRegistry {
    /// Releases `lost`: their actors stop firing and finish their calls on the wire (for at
    /// most [`RELEASE_DRAIN_MAX`]), everything they wrote is committed while this node still
    /// holds the partitions, then the partitions are released in the database, so the new
    /// owner loads their tasks exactly as they were left.
    fn release(&mut self, lost: Vec<u32>, deps: &Arc<TaskDeps>, ctx: &mut Context<Self>) {
        let waits = self.release_unowned();
        let Some(c) = &mut self.cluster else { return };
        c.releases += 1;
        locked(&c.releasing).extend(lost.iter().copied());
        let (releasing, claiming) = (c.releasing.clone(), c.claiming.clone());
        let persistence = c.persistence.clone();
        let owner = c.owner.clone();
        let outbox = deps.persistence.clone();
        ctx.spawn(
            async move {
                let started = Instant::now();
                let _ = tokio::time::timeout(
                    RELEASE_DRAIN_MAX,
                    futures_util::future::join_all(waits),
                )
                .await;
                outbox.flush();
                metrics::sent(ActorKind::Persistence);
                let _ = persistence.send(Flush).await;
                // A claim of one of these partitions by this node still in flight (it was
                // regained and lost again meanwhile) is committed first: this release then
                // gives the partition up for the node that owns it now.
                while lost.iter().any(|p| locked(&claiming).contains(p)) {
                    tokio::time::sleep(RELEASE_POLL).await;
                }
                for attempt in 0..5u32 {
                    metrics::sent(ActorKind::Persistence);
                    match persistence
                        .send(Commit(Write::Release {
                            partitions: lost.clone(),
                            owner: owner.clone(),
                            now: crate::time::now_ms(),
                        }))
                        .await
                    {
                        Ok(Ok(_)) => break,
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, attempt, "releasing partitions failed; retrying");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        Err(_) => break,
                    }
                }
                {
                    let mut r = locked(&releasing);
                    for p in &lost {
                        r.remove(p);
                    }
                }
                tracing::info!(
                    partitions = lost.len(),
                    ms = started.elapsed().as_millis() as u64,
                    "partitions released"
                );
            }
            .into_actor(self)
            .map(|_, act, _| {
                if let Some(c) = &mut act.cluster {
                    c.releases -= 1;
                    if c.releases == 0 {
                        for w in c.hand_over_waiters.drain(..) {
                            let _ = w.send(());
                        }
                    }
                }
            }),
        );
    }
}

/// The per-partition flags a claim-and-load works with, off the registry.
struct Maps {
    owned: OwnedMap,
    assigned: OwnedMap,
    releasing: Arc<Mutex<HashSet<u32>>>,
    claiming: Arc<Mutex<HashSet<u32>>>,
}

/// Partitions the membership just gave this node, and when (epoch ms).
struct Gained {
    partitions: Vec<u32>,
    at_ms: i64,
}

/// Claims each gained partition once its previous holder released it (or is not a live
/// member any more, or after [`HAND_OVER_MAX`]) and this node's own release of it (if it
/// just lost and regained it) is done; marks it owned and loads its tasks. A partition that
/// stops being assigned here meanwhile is left alone. Answers the partitions claimed and
/// loaded, and how many tasks were started.
async fn acquire(
    deps: &TaskDeps,
    persistence: &Addr<PersistenceActor>,
    owner: &str,
    live: &HashSet<String>,
    maps: &Maps,
    me: Addr<TaskRegistry>,
    gained: Gained,
) -> Result<(usize, Vec<u32>), String> {
    let deadline = Instant::now() + HAND_OVER_MAX;
    let gained_at = gained.at_ms;
    let mut pending = gained.partitions;
    let mut loaded = 0;
    let mut claimed = Vec::new();
    let mut failed = 0;
    loop {
        pending.retain(|p| flag(&maps.assigned, *p));
        if pending.is_empty() {
            if failed > 0 {
                return Err(format!(
                    "{failed} partitions claimed but not loaded; the next reconciliation loads them"
                ));
            }
            return Ok((loaded, claimed));
        }
        let held: HashSet<u32> = match deps.store.partition_owners(&pending).await {
            Ok(rows) => rows
                .into_iter()
                .filter(|(_, o)| !o.is_empty() && o != owner && live.contains(o))
                .map(|(p, _)| p)
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "reading partition holders failed; retrying");
                pending.iter().copied().collect()
            }
        };
        let late = Instant::now() >= deadline;
        if late && !held.is_empty() {
            tracing::warn!(
                partitions = held.len(),
                "previous holders did not release in time; claiming anyway"
            );
        }
        let ready: Vec<u32> = {
            let releasing = locked(&maps.releasing);
            pending
                .iter()
                .copied()
                .filter(|p| (late || !held.contains(p)) && !releasing.contains(p))
                // Still this node's after the read above.
                .filter(|p| flag(&maps.assigned, *p))
                .collect()
        };
        if ready.is_empty() {
            tokio::time::sleep(RELEASE_POLL).await;
            continue;
        }
        locked(&maps.claiming).extend(ready.iter().copied());
        metrics::sent(ActorKind::Persistence);
        let claim = persistence
            .send(Commit(Write::Claim {
                partitions: ready.clone(),
                owner: owner.to_string(),
                now: crate::time::now_ms(),
            }))
            .await;
        let ok = match claim {
            Ok(Ok(_)) => {
                metrics::partitions_claimed(ready.len());
                // Claimed: its tasks may start here from now on (the load below, a notice,
                // this node's API), unless it was taken away meanwhile.
                for p in &ready {
                    if flag(&maps.assigned, *p) {
                        set_flag(&maps.owned, *p, true);
                    }
                }
                let loaded_now =
                    take_over(deps, me.clone(), maps.owned.len() as u32, &ready, gained_at);
                match loaded_now.await {
                    Ok(n) => {
                        loaded += n;
                        claimed.extend(ready.iter().copied());
                    }
                    Err(e) => {
                        tracing::error!(error = %e, partitions = ready.len(), "loading claimed partitions failed; the next reconciliation loads their tasks");
                        failed += ready.len();
                    }
                }
                true
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "claiming partitions failed; retrying");
                false
            }
            Err(_) => {
                let mut c = locked(&maps.claiming);
                for p in &ready {
                    c.remove(p);
                }
                return Err("the persistence actor stopped".into());
            }
        };
        {
            let mut c = locked(&maps.claiming);
            for p in &ready {
                c.remove(p);
            }
        }
        if ok {
            pending.retain(|p| !ready.contains(p));
        } else {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Loads the tasks of partitions this node just claimed: from their pending queues in Redis
/// where those are complete, else by scanning the active tasks in the database.
async fn take_over(
    deps: &TaskDeps,
    me: Addr<TaskRegistry>,
    partitions: u32,
    gained: &[u32],
    gained_at: i64,
) -> Result<usize, StoreError> {
    let mut scan: HashSet<u32> = gained.iter().copied().collect();
    let mut n = 0;
    if let Some(c) = &deps.cluster {
        match c.redis.queued(gained).await {
            Ok((complete, ids)) => {
                n += load_ids(deps, me.clone(), ids, gained_at).await?;
                metrics::partition_loads("queue", complete.len());
                for p in complete {
                    scan.remove(&p);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "pending queues unavailable; scanning the database");
            }
        }
    }
    if !scan.is_empty() {
        metrics::partition_loads("scan", scan.len());
        let scan = Some(Arc::new(scan));
        n += load_tasks(deps.store.clone(), me, partitions, scan, Some(gained_at)).await?;
    }
    Ok(n)
}

/// Loads the given tasks and has the registry start the active ones; ids of tasks that are
/// gone or no longer active leave their queue.
async fn load_ids(
    deps: &TaskDeps,
    me: Addr<TaskRegistry>,
    ids: Vec<String>,
    gained_at: i64,
) -> Result<usize, StoreError> {
    let mut n = 0;
    for chunk in ids.chunks(RECOVERY_PAGE as usize) {
        let rows = deps.store.tasks_by_ids(chunk).await?;
        let store = deps.store.clone();
        let page = tokio::task::spawn_blocking(move || {
            rows.iter()
                .filter_map(|m| store.active_task(m).ok())
                .filter(|t| t.status.is_active())
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| StoreError::Db(DbErr::Custom(e.to_string())))?;
        if let Some(c) = &deps.cluster {
            let live: HashSet<String> = page.iter().map(|t| t.task_id.to_string()).collect();
            for stale in chunk.iter().filter(|id| !live.contains(*id)) {
                if let Ok(id) = Uuid::parse_str(stale) {
                    c.dequeue(id);
                }
            }
        }
        n += page.len();
        metrics::sent(ActorKind::Registry);
        let page = Recovered {
            tasks: page,
            taken_over_at: Some(gained_at),
        };
        if me.send(page).await.is_err() {
            break;
        }
    }
    Ok(n)
}

/// A claim-and-load of gained partitions finished.
#[derive(Message)]
#[rtype(result = "()")]
struct LoadDone(Result<(usize, Vec<u32>), String>);

impl Handler<LoadDone> for TaskRegistry {
    type Result = ();

    fn handle(&mut self, msg: LoadDone, _: &mut Self::Context) {
        let _m = metrics::handling(ActorKind::Registry, "LoadDone");
        let Some(c) = &mut self.cluster else { return };
        c.loads = c.loads.saturating_sub(1);
        match msg.0 {
            Ok((n, claimed)) => {
                tracing::info!(
                    tasks = n,
                    partitions = claimed.len(),
                    "tasks of gained partitions loaded"
                );
                // Every task of these partitions is running here and has queued its next run
                // (the actors registered as they started): their queues are complete.
                self.mark_complete(claimed);
            }
            // The next reconciliation loads what is missing; the queues stay unmarked, so
            // the next owner scans.
            Err(e) => tracing::error!(error = %e, "loading the tasks of gained partitions failed"),
        }
        let n = self.tasks.len();
        self.loaded(n);
    }
}

impl TaskRegistry {
    /// Marks the queues of the partitions still owned among `partitions` complete.
    fn mark_complete(&self, partitions: Vec<u32>) {
        let Some(c) = self.deps.as_ref().and_then(|d| d.cluster.clone()) else {
            return;
        };
        for partition in partitions {
            if self.owns_partition(partition) {
                c.queue
                    .push(crate::cluster::redis::QueueOp::Complete { partition });
            }
        }
    }
}

impl Handler<AwaitHandOver> for TaskRegistry {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: AwaitHandOver, _: &mut Self::Context) -> Self::Result {
        let _m = metrics::handling(ActorKind::Registry, "AwaitHandOver");
        let (tx, rx) = tokio::sync::oneshot::channel();
        match &mut self.cluster {
            Some(c) if c.releases > 0 => c.hand_over_waiters.push(tx),
            _ => {
                let _ = tx.send(());
            }
        }
        Box::pin(async move {
            let _ = tokio::time::timeout(msg.timeout, rx).await;
        })
    }
}

impl TaskRegistry {
    fn reconcile(&mut self, ctx: &mut Context<Self>) {
        let Some(deps) = self.deps.clone() else {
            return;
        };
        let Some(c) = &mut self.cluster else { return };
        let now = Instant::now();
        c.recently_finished
            .retain(|_, at| now.duration_since(*at) < FINISHED_MEMORY);
        c.recently_stopped
            .retain(|_, at| now.duration_since(*at) < FINISHED_MEMORY);
        if !c.loaded || c.loads > 0 || c.reconciling {
            return;
        }
        c.reconciling = true;
        let me = ctx.address();
        actix_rt::spawn(async move {
            let ids = deps
                .store
                .active_task_versions()
                .await
                .map_err(|e| e.to_string());
            metrics::sent(ActorKind::Registry);
            me.do_send(ActiveIds(ids));
        });
    }

    /// Reloads the given tasks from the database and applies what it says: start, redefine
    /// (with `redefine`), or stop.
    fn reload(
        &mut self,
        ids: Vec<Uuid>,
        redefine: bool,
        reschedule: bool,
        ctx: &mut Context<Self>,
    ) {
        let Some(deps) = self.deps.clone() else {
            return;
        };
        if ids.is_empty() {
            return;
        }
        let me = ctx.address();
        actix_rt::spawn(async move {
            let keys: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
            let rows = match deps.store.tasks_by_ids(&keys).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "reloading changed tasks failed; the next reconciliation retries");
                    return;
                }
            };
            let store = deps.store.clone();
            let found = tokio::task::spawn_blocking(move || {
                rows.iter()
                    .filter_map(|m| match store.active_task(m) {
                        Ok(t) => Some(t),
                        Err(e) => {
                            tracing::error!(task_id = %m.task_id, error = %e, "cannot load task");
                            None
                        }
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
            metrics::sent(ActorKind::Registry);
            me.do_send(Reloaded {
                ids,
                found,
                redefine,
                reschedule,
            });
        });
    }
}

/// The ids of every active task, for a reconciliation.
#[derive(Message)]
#[rtype(result = "()")]
struct ActiveIds(Result<Vec<(String, i64)>, String>);

impl Handler<ActiveIds> for TaskRegistry {
    type Result = ();

    fn handle(&mut self, msg: ActiveIds, ctx: &mut Self::Context) {
        let _m = metrics::handling(ActorKind::Registry, "ActiveIds");
        let Some(c) = &mut self.cluster else { return };
        c.reconciling = false;
        let ids = match msg.0 {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(error = %e, "reconciliation could not read the active tasks");
                return;
            }
        };
        let active: HashMap<Uuid, i64> = ids
            .iter()
            .filter_map(|(s, v)| Uuid::parse_str(s).ok().map(|id| (id, *v)))
            .collect();
        let recently: HashSet<Uuid> = c
            .recently_finished
            .keys()
            .chain(c.recently_stopped.keys())
            .copied()
            .collect();
        let missing: Vec<Uuid> = active
            .keys()
            .filter(|id| self.owns(**id) && !self.tasks.contains_key(id) && !recently.contains(id))
            .copied()
            .collect();
        // Running here at another version than the row's: redefined through another node
        // whose notice was lost (or this task's own status change, which a reload leaves as
        // it is).
        let changed: Vec<Uuid> = active
            .iter()
            .filter(|(id, v)| {
                self.tasks.contains_key(id)
                    && self.versions.get(id).is_some_and(|known| known != *v)
            })
            .map(|(id, _)| *id)
            .collect();
        // Running here but no longer active in the database: a lost cancel or delete.
        // Checked again row by row before stopping (it may have been created just now).
        let extra: Vec<Uuid> = self
            .tasks
            .keys()
            .filter(|id| !active.contains_key(id))
            .copied()
            .collect();
        if !missing.is_empty() || !extra.is_empty() {
            tracing::info!(
                missing = missing.len(),
                extra = extra.len(),
                "reconciliation found differences"
            );
        }
        let mut check = missing;
        check.extend(extra);
        self.reload(check, false, false, ctx);
        // Redefined: the definition is replaced, the runtime state (next slot) kept.
        self.reload(changed, true, false, ctx);
    }
}

/// Tasks read again after a notice or a reconciliation.
#[derive(Message)]
#[rtype(result = "()")]
struct Reloaded {
    ids: Vec<Uuid>,
    found: Vec<ActiveTask>,
    redefine: bool,
    reschedule: bool,
}

impl Handler<Reloaded> for TaskRegistry {
    type Result = ();

    fn handle(&mut self, msg: Reloaded, _: &mut Self::Context) {
        let _m = metrics::handling(ActorKind::Registry, "Reloaded");
        let mut active = HashSet::new();
        for t in msg.found {
            if !t.status.is_active() {
                continue;
            }
            active.insert(t.task_id);
            let (finished, stopped) = self.cluster.as_ref().map_or((false, false), |c| {
                (
                    c.recently_finished.contains_key(&t.task_id),
                    c.recently_stopped.contains_key(&t.task_id),
                )
            });
            if stopped {
                // Cancelled or deleted after this read.
                continue;
            }
            match self.tasks.get(&t.task_id) {
                // An older read than what the actor already has (two quick patches).
                Some(_)
                    if self
                        .versions
                        .get(&t.task_id)
                        .is_some_and(|v| *v > t.version) => {}
                Some(addr) if msg.redefine => {
                    metrics::sent(ActorKind::Task);
                    self.versions.insert(t.task_id, t.version);
                    addr.do_send(Redefine {
                        task: Box::new(t),
                        reschedule: msg.reschedule,
                    });
                }
                Some(_) => {}
                None => {
                    if !finished || msg.redefine {
                        self.spawn(t, false, None);
                    }
                }
            }
        }
        for id in msg.ids {
            if !active.contains(&id) {
                self.versions.remove(&id);
                if let Some(addr) = self.tasks.remove(&id) {
                    metrics::sent(ActorKind::Task);
                    addr.do_send(Stop);
                }
            }
        }
        metrics::live(ActorKind::Task, self.tasks.len());
    }
}

impl Handler<Changed> for TaskRegistry {
    type Result = ();

    fn handle(&mut self, msg: Changed, ctx: &mut Self::Context) {
        let _m = metrics::handling(ActorKind::Registry, "Changed");
        match msg.kind {
            ChangeKind::Stop => {
                if let Some(c) = &mut self.cluster {
                    c.recently_stopped.insert(msg.task_id, Instant::now());
                }
                self.versions.remove(&msg.task_id);
                if let Some(addr) = self.tasks.remove(&msg.task_id) {
                    metrics::sent(ActorKind::Task);
                    addr.do_send(Stop);
                    metrics::live(ActorKind::Task, self.tasks.len());
                }
            }
            ChangeKind::Upsert => {
                if self.owns(msg.task_id) || self.tasks.contains_key(&msg.task_id) {
                    self.reload(vec![msg.task_id], true, msg.reschedule, ctx);
                }
            }
        }
    }
}

impl Handler<Resubscribed> for TaskRegistry {
    type Result = ();

    fn handle(&mut self, _: Resubscribed, ctx: &mut Self::Context) {
        let _m = metrics::handling(ActorKind::Registry, "Resubscribed");
        // Notices may have been missed while the subscription was down.
        self.reconcile(ctx);
        // And Redis may have come back empty: every actor queues its next run again, and a
        // moment later (once they have) the owned partitions' queues are marked complete.
        for addr in self.tasks.values() {
            metrics::sent(ActorKind::Task);
            addr.do_send(Requeue);
        }
        ctx.run_later(Duration::from_secs(1), |act, _| {
            let owned: Vec<u32> = (0..act.partitions)
                .filter(|p| act.owns_partition(*p))
                .collect();
            act.mark_complete(owned);
        });
    }
}
