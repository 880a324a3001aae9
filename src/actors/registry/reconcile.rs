//! Cluster mode: keeping the actors in line with the database. Other nodes' API changes
//! arrive as change notices ([`Changed`]); every [`RECONCILE_EVERY`] the registry compares its
//! actors with the active tasks in the database, so that a lost notice is a delay and never a
//! loss; after the notice subscription was down ([`Resubscribed`]) it reconciles at once and
//! rebuilds the pending queues.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::TaskRegistry;
use crate::actors::task::{Redefine, Requeue};
use crate::metrics::{self, ActorKind};
use crate::store::ActiveTask;

/// How often the registry compares its actors with the database in cluster mode.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(5);
/// A task that finished here is not brought back by a reconciliation for this long (its
/// final state may still be on its way to the database).
const FINISHED_MEMORY: Duration = Duration::from_secs(10);

/// What a change notice says happened to a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Created or redefined: the owner (re)loads it from the database.
    Upsert,
    /// Cancelled or deleted: the owner stops its actor (aborting a call on the wire).
    Stop,
    /// Paused: the owner lets its actor go as in a hand-over (a call on the wire finishes and
    /// is logged).
    Pause,
    /// Resumed from `paused`: the owner forgets that it saw the task stop and loads it again.
    Resume,
}

/// A change made through one node's API, for the task's owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Message)]
#[rtype(result = "()")]
pub struct Changed {
    /// The sending node's owner token; a node ignores its own notices.
    pub origin: String,
    pub task_id: Uuid,
    pub kind: ChangeKind,
    /// With `Upsert`: the task's next run was recomputed (take it from the row).
    pub reschedule: bool,
}

/// The notice subscription was (re)established: notices may have been lost meanwhile.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Resubscribed;

impl TaskRegistry {
    pub(super) fn reconcile(&mut self, ctx: &mut Context<Self>) {
        let Some(c) = &mut self.cluster else { return };
        let now = Instant::now();
        c.recently_finished
            .retain(|_, at| now.duration_since(*at) < FINISHED_MEMORY);
        c.recently_stopped
            .retain(|_, at| now.duration_since(*at) < FINISHED_MEMORY);
        if !c.loaded || c.rounds > 0 || c.reconciling {
            return;
        }
        c.reconciling = true;
        let store = self.deps.store.clone();
        let me = ctx.address();
        actix_rt::spawn(async move {
            let ids = store
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
        if ids.is_empty() {
            return;
        }
        let store = self.deps.store.clone();
        let me = ctx.address();
        actix_rt::spawn(async move {
            let keys: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
            let rows = match store.tasks_by_ids(&keys).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "reloading changed tasks failed; the next reconciliation retries");
                    return;
                }
            };
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
                self.stop_task(id);
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
            ChangeKind::Stop | ChangeKind::Pause => {
                if let Some(c) = &mut self.cluster {
                    c.recently_stopped.insert(msg.task_id, Instant::now());
                }
                self.versions.remove(&msg.task_id);
                if let Some(addr) = self.tasks.remove(&msg.task_id) {
                    metrics::sent(ActorKind::Task);
                    if msg.kind == ChangeKind::Pause {
                        addr.do_send(crate::actors::task::Release);
                    } else {
                        addr.do_send(crate::actors::task::Stop);
                    }
                    metrics::live(ActorKind::Task, self.tasks.len());
                }
            }
            ChangeKind::Upsert => {
                if self.owns(msg.task_id) || self.tasks.contains_key(&msg.task_id) {
                    self.reload(vec![msg.task_id], true, msg.reschedule, ctx);
                }
            }
            ChangeKind::Resume => {
                // The pause's stop notice must not keep the resumed task down; the row read
                // next is the resumed one (the notice is sent after the commit).
                if let Some(c) = &mut self.cluster {
                    c.recently_stopped.remove(&msg.task_id);
                }
                if self.owns(msg.task_id) || self.tasks.contains_key(&msg.task_id) {
                    self.reload(vec![msg.task_id], true, true, ctx);
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
            act.mark_complete(act.partitions.running());
        });
    }
}
