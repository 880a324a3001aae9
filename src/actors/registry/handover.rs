//! Cluster mode: the hand-over of partitions. The Membership actor says which partitions this
//! node owns ([`Owned`]); the registry claims the ones it gains in the database and loads
//! their tasks, and releases the ones it loses once their actors finished their calls and
//! what they wrote is committed. The background work (a claim round, a drain, a release
//! commit) reports back by message; the state of each partition changes only here, in the
//! registry, through [`super::ownership`].

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use sea_orm::DbErr;
use uuid::Uuid;

use super::ownership::{Action, Event, Round};
use super::recovery::{load_tasks, Recovered, RECOVERY_PAGE};
use super::TaskRegistry;
use crate::actors::persistence::{Commit, Flush, PersistenceActor};
use crate::actors::task::{Release, TaskActor, TaskDeps};
use crate::metrics::{self, ActorKind};
use crate::store::{StoreError, Write};

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
/// How often a claim round looks at the partitions it waits for.
const RELEASE_POLL: Duration = Duration::from_millis(25);

/// The partitions that an event sent to each answered with an action, per action.
#[derive(Default)]
struct Actions {
    claim: Vec<u32>,
    drain: Vec<u32>,
    load: Vec<u32>,
    commit_release: Vec<u32>,
}

impl TaskRegistry {
    /// Applies `event` to every partition of `partitions`.
    fn apply(&mut self, partitions: impl IntoIterator<Item = u32>, event: Event) -> Actions {
        let mut actions = Actions::default();
        for p in partitions {
            match self.partitions.apply(p, event) {
                Ok(None) => {}
                Ok(Some(Action::Claim)) => actions.claim.push(p),
                Ok(Some(Action::Drain)) => actions.drain.push(p),
                Ok(Some(Action::Load)) => actions.load.push(p),
                Ok(Some(Action::CommitRelease)) => actions.commit_release.push(p),
                Err(e) => tracing::error!(partition = p, error = %e, "partition event ignored"),
            }
        }
        actions
    }

    /// Starts the releases `actions` ask for (claims and loads are the claim rounds').
    fn release(&mut self, actions: &Actions, ctx: &mut Context<Self>) {
        if !actions.drain.is_empty() {
            self.drain(actions.drain.clone(), ctx);
        }
        if !actions.commit_release.is_empty() {
            self.commit_release(actions.commit_release.clone(), Instant::now(), ctx);
        }
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

    /// The first step of releasing `lost`: their actors stop firing and finish their calls on
    /// the wire (for at most [`RELEASE_DRAIN_MAX`]), and everything they wrote is committed
    /// while this node still holds the partitions; then [`Drained`].
    fn drain(&mut self, lost: Vec<u32>, ctx: &mut Context<Self>) {
        let waits = self.release_unowned();
        let Some(c) = &self.cluster else { return };
        let persistence = c.persistence.clone();
        let outbox = self.deps.persistence.clone();
        let me = ctx.address();
        actix_rt::spawn(async move {
            let started = Instant::now();
            let _ = tokio::time::timeout(RELEASE_DRAIN_MAX, futures_util::future::join_all(waits))
                .await;
            outbox.flush();
            metrics::sent(ActorKind::Persistence);
            let _ = persistence.send(Flush).await;
            metrics::sent(ActorKind::Registry);
            me.do_send(Drained {
                partitions: lost,
                started,
            });
        });
    }

    /// The last step of a release: the partitions are released in the database, so the new
    /// owner loads their tasks exactly as they were left; then [`Released`].
    fn commit_release(&mut self, partitions: Vec<u32>, since: Instant, ctx: &mut Context<Self>) {
        let Some(c) = &self.cluster else { return };
        let persistence = c.persistence.clone();
        let owner = c.owner.clone();
        let me = ctx.address();
        actix_rt::spawn(async move {
            for attempt in 0..5u32 {
                metrics::sent(ActorKind::Persistence);
                match persistence
                    .send(Commit(Write::Release {
                        partitions: partitions.clone(),
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
            tracing::info!(
                partitions = partitions.len(),
                ms = since.elapsed().as_millis() as u64,
                "partitions released"
            );
            metrics::sent(ActorKind::Registry);
            me.do_send(Released { partitions });
        });
    }

    /// Answers the hand-over's waiters once no release is under way.
    fn hand_over_progressed(&mut self) {
        if self.partitions.releasing() {
            return;
        }
        if let Some(c) = &mut self.cluster {
            for w in c.hand_over_waiters.drain(..) {
                let _ = w.send(());
            }
        }
    }

    /// Marks the queues of the partitions still owned among `partitions` complete.
    pub(super) fn mark_complete(&self, partitions: Vec<u32>) {
        let Some(c) = &self.deps.cluster else {
            return;
        };
        for partition in partitions {
            if self.owns_partition(partition) {
                c.mark_complete(partition);
            }
        }
    }
}

impl Handler<Owned> for TaskRegistry {
    type Result = ();

    fn handle(&mut self, msg: Owned, ctx: &mut Self::Context) {
        let _m = metrics::handling(ActorKind::Registry, "Owned");
        let n = self.partitions.count();
        let mut mine = vec![false; n as usize];
        for p in &msg.partitions {
            if let Some(o) = mine.get_mut(*p as usize) {
                *o = true;
            }
        }
        // A lost partition starts nothing more at once; a gained one only once claimed.
        let (mine, others): (Vec<u32>, Vec<u32>) = (0..n).partition(|p| mine[*p as usize]);
        let mut actions = self.apply(others, Event::Assigned(false));
        actions.claim = self.apply(mine, Event::Assigned(true)).claim;
        tracing::info!(
            gained = actions.claim.len(),
            lost = actions.drain.len(),
            hand_over = msg.hand_over,
            "partition ownership changed"
        );
        self.release(&actions, ctx);
        let Some(c) = &mut self.cluster else { return };
        if actions.claim.is_empty() {
            if c.rounds == 0 {
                self.loaded(0);
            }
            return;
        }
        c.rounds += 1;
        let round = ClaimRound {
            deps: self.deps.clone(),
            persistence: c.persistence.clone(),
            owner: c.owner.clone(),
            live: msg.live_owners.into_iter().collect(),
            me: ctx.address(),
            partitions: n,
            gained_at: crate::time::now_ms(),
        };
        let gained = actions.claim;
        let me = ctx.address();
        actix_rt::spawn(async move {
            let result = round.run(gained).await;
            metrics::sent(ActorKind::Registry);
            me.do_send(RoundDone(result));
        });
    }
}

impl Handler<AwaitHandOver> for TaskRegistry {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: AwaitHandOver, _: &mut Self::Context) -> Self::Result {
        let _m = metrics::handling(ActorKind::Registry, "AwaitHandOver");
        let (tx, rx) = tokio::sync::oneshot::channel();
        let releasing = self.partitions.releasing();
        match &mut self.cluster {
            Some(c) if releasing => c.hand_over_waiters.push(tx),
            _ => {
                let _ = tx.send(());
            }
        }
        Box::pin(async move {
            let _ = tokio::time::timeout(msg.timeout, rx).await;
        })
    }
}

/// The actors of lost partitions finished (or ran out of time) and what they wrote is
/// committed; `started`: when their release began.
#[derive(Message)]
#[rtype(result = "()")]
struct Drained {
    partitions: Vec<u32>,
    started: Instant,
}

impl Handler<Drained> for TaskRegistry {
    type Result = ();

    fn handle(&mut self, msg: Drained, ctx: &mut Self::Context) {
        let _m = metrics::handling(ActorKind::Registry, "Drained");
        let actions = self.apply(msg.partitions, Event::Drained);
        // Those whose own claim is still under way are released once it ends.
        if !actions.commit_release.is_empty() {
            self.commit_release(actions.commit_release, msg.started, ctx);
        }
    }
}

/// The release of these partitions was committed (or given up on).
#[derive(Message)]
#[rtype(result = "()")]
struct Released {
    partitions: Vec<u32>,
}

impl Handler<Released> for TaskRegistry {
    type Result = ();

    fn handle(&mut self, msg: Released, _: &mut Self::Context) {
        let _m = metrics::handling(ActorKind::Registry, "Released");
        // A partition regained meanwhile now waits for its claim round.
        self.apply(msg.partitions, Event::Released);
        self.hand_over_progressed();
    }
}

/// A claim round's step: which of its partitions to claim now (marked as being claimed),
/// given which a live previous holder still has and whether the round is past its deadline.
#[derive(Message)]
#[rtype(result = "ClaimStep")]
struct TryClaim {
    partitions: Vec<u32>,
    held: HashSet<u32>,
    late: bool,
}

#[derive(Default)]
struct ClaimStep {
    claim: Vec<u32>,
    waiting: Vec<u32>,
}

impl Handler<TryClaim> for TaskRegistry {
    type Result = MessageResult<TryClaim>;

    fn handle(&mut self, msg: TryClaim, _: &mut Self::Context) -> Self::Result {
        let _m = metrics::handling(ActorKind::Registry, "TryClaim");
        let mut step = ClaimStep::default();
        for p in msg.partitions {
            match self.partitions.round(p, msg.held.contains(&p), msg.late) {
                Round::Claim => step.claim.push(p),
                Round::Wait => step.waiting.push(p),
                Round::Drop => {}
            }
        }
        MessageResult(step)
    }
}

/// A claim was committed (`claimed`) or failed. Answers the partitions whose tasks to load:
/// those still this node's.
#[derive(Message)]
#[rtype(result = "Vec<u32>")]
struct ClaimEnded {
    partitions: Vec<u32>,
    claimed: bool,
}

impl Handler<ClaimEnded> for TaskRegistry {
    type Result = MessageResult<ClaimEnded>;

    fn handle(&mut self, msg: ClaimEnded, ctx: &mut Self::Context) -> Self::Result {
        let _m = metrics::handling(ActorKind::Registry, "ClaimEnded");
        let event = if msg.claimed {
            Event::Claimed
        } else {
            Event::ClaimFailed
        };
        // Claimed: its tasks may start here from now on (the load, a notice, this node's
        // API), unless it was taken away meanwhile (it is released now).
        let actions = self.apply(msg.partitions, event);
        self.release(&actions, ctx);
        MessageResult(actions.load)
    }
}

/// The load of these claimed partitions' tasks ended.
#[derive(Message)]
#[rtype(result = "()")]
struct Loaded {
    partitions: Vec<u32>,
}

impl Handler<Loaded> for TaskRegistry {
    type Result = ();

    fn handle(&mut self, msg: Loaded, ctx: &mut Self::Context) {
        let _m = metrics::handling(ActorKind::Registry, "Loaded");
        let actions = self.apply(msg.partitions, Event::Loaded);
        self.release(&actions, ctx);
    }
}

/// A claim round finished: how many tasks it started and the partitions it claimed and
/// loaded.
#[derive(Message)]
#[rtype(result = "()")]
struct RoundDone(Result<(usize, Vec<u32>), String>);

impl Handler<RoundDone> for TaskRegistry {
    type Result = ();

    fn handle(&mut self, msg: RoundDone, _: &mut Self::Context) {
        let _m = metrics::handling(ActorKind::Registry, "RoundDone");
        let Some(c) = &mut self.cluster else { return };
        c.rounds = c.rounds.saturating_sub(1);
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

/// Claims partitions the membership just gave this node, off the registry.
struct ClaimRound {
    deps: Arc<TaskDeps>,
    persistence: Addr<PersistenceActor>,
    owner: String,
    /// The owner tokens of the live members.
    live: HashSet<String>,
    me: Addr<TaskRegistry>,
    /// `cluster.partitions`.
    partitions: u32,
    /// When the partitions were gained (epoch ms).
    gained_at: i64,
}

impl ClaimRound {
    /// Claims each of `gained` once its previous holder released it (or is not a live member
    /// any more, or after [`HAND_OVER_MAX`]) and this node's own release of it (if it just
    /// lost and regained it) is committed, then loads its tasks. A partition that stops being
    /// this node's meanwhile is left alone. Answers how many tasks were started and the
    /// partitions claimed and loaded.
    async fn run(self, gained: Vec<u32>) -> Result<(usize, Vec<u32>), String> {
        let stopped = |_| "the registry stopped".to_string();
        let deadline = Instant::now() + HAND_OVER_MAX;
        let mut pending = gained;
        let mut loaded = 0;
        let mut claimed = Vec::new();
        let mut failed = 0;
        loop {
            if pending.is_empty() {
                if failed > 0 {
                    return Err(format!(
                        "{failed} partitions claimed but not loaded; the next reconciliation loads them"
                    ));
                }
                return Ok((loaded, claimed));
            }
            let held: HashSet<u32> = match self.deps.store.partition_owners(&pending).await {
                Ok(rows) => rows
                    .into_iter()
                    .filter(|(_, o)| !o.is_empty() && *o != self.owner && self.live.contains(o))
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
            metrics::sent(ActorKind::Registry);
            let step = self
                .me
                .send(TryClaim {
                    partitions: pending,
                    held,
                    late,
                })
                .await
                .map_err(stopped)?;
            pending = step.waiting;
            let ready = step.claim;
            if ready.is_empty() {
                if !pending.is_empty() {
                    tokio::time::sleep(RELEASE_POLL).await;
                }
                continue;
            }
            metrics::sent(ActorKind::Persistence);
            let claim = self
                .persistence
                .send(Commit(Write::Claim {
                    partitions: ready.clone(),
                    owner: self.owner.clone(),
                    now: crate::time::now_ms(),
                }))
                .await;
            let ok = matches!(claim, Ok(Ok(_)));
            match &claim {
                Ok(Ok(_)) => metrics::partitions_claimed(ready.len()),
                Ok(Err(e)) => tracing::error!(error = %e, "claiming partitions failed; retrying"),
                Err(_) => {}
            }
            metrics::sent(ActorKind::Registry);
            let load = self
                .me
                .send(ClaimEnded {
                    partitions: ready.clone(),
                    claimed: ok,
                })
                .await
                .map_err(stopped)?;
            if claim.is_err() {
                return Err("the persistence actor stopped".into());
            }
            if !ok {
                pending.extend(ready);
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            if load.is_empty() {
                continue;
            }
            let loaded_now = self.take_over(&load).await;
            metrics::sent(ActorKind::Registry);
            self.me
                .send(Loaded {
                    partitions: load.clone(),
                })
                .await
                .map_err(stopped)?;
            match loaded_now {
                Ok(n) => {
                    loaded += n;
                    claimed.extend(load);
                }
                Err(e) => {
                    tracing::error!(error = %e, partitions = load.len(), "loading claimed partitions failed; the next reconciliation loads their tasks");
                    failed += load.len();
                }
            }
        }
    }

    /// Loads the tasks of partitions this node just claimed: from their pending queues in
    /// Redis where those are complete, else by scanning the active tasks in the database.
    async fn take_over(&self, gained: &[u32]) -> Result<usize, StoreError> {
        let mut scan: HashSet<u32> = gained.iter().copied().collect();
        let mut n = 0;
        if let Some(c) = &self.deps.cluster {
            match c.clone().queued(gained.to_vec()).await {
                Ok(queued) => {
                    n += self.load_ids(queued.task_ids).await?;
                    metrics::partition_loads("queue", queued.complete.len());
                    for p in queued.complete {
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
            n += load_tasks(
                self.deps.store.clone(),
                self.me.clone(),
                self.partitions,
                scan,
                Some(self.gained_at),
            )
            .await?;
        }
        Ok(n)
    }

    /// Loads the given tasks and has the registry start the active ones; ids of tasks that
    /// are gone or no longer active leave their queue.
    async fn load_ids(&self, ids: Vec<String>) -> Result<usize, StoreError> {
        let deps = &self.deps;
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
                taken_over_at: Some(self.gained_at),
            };
            if self.me.send(page).await.is_err() {
                break;
            }
        }
        Ok(n)
    }
}
