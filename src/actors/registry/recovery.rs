//! Recovery: the active tasks loaded from storage at start-up. A single node loads every one
//! of them; a cluster member answers once the tasks of the first partitions given to it are
//! loaded (see [`super::handover`]). Both load through [`load_tasks`], a page at a time.

use std::collections::HashSet;
use std::sync::Arc;

use actix::prelude::*;
use sea_orm::DbErr;
use uuid::Uuid;

use super::TaskRegistry;
use crate::domain::partition::partition_of;
use crate::domain::TaskStatus;
use crate::metrics::{self, ActorKind};
use crate::store::{ActiveTask, StoreError};

/// Loads every pending/running task from storage and starts its actor.
#[derive(Message)]
#[rtype(result = "Result<usize, StoreError>")]
pub struct Recover;

/// Rows read per recovery page.
pub(super) const RECOVERY_PAGE: u64 = 10_000;

/// One page of recovered tasks, to start; `taken_over_at`: loaded because their partitions
/// were taken over from another node then (epoch ms).
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Recovered {
    pub(super) tasks: Vec<ActiveTask>,
    pub(super) taken_over_at: Option<i64>,
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
        Box::pin(load_tasks(
            self.deps.store.clone(),
            ctx.address(),
            self.partitions.count(),
            None,
            None,
        ))
    }
}

/// Reads the active tasks a page at a time (decrypting and checking each row off the
/// registry's mailbox; with `only`, just the rows of those partitions) and has the registry
/// start each page's actors: peak memory stays at one page of rows, and the registry keeps
/// answering meanwhile.
pub(super) async fn load_tasks(
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
