//! PersistenceActor: the only writer to storage. It gathers writes for a few milliseconds
//! (or until a batch is full) and applies them in one transaction — group commit — so that
//! thousands of execution logs per second cost a handful of commits.
//!
//! Writes a client is waiting for ([`Commit`]) are answered once their transaction has
//! committed; writes from the fire path ([`Persist`]) ride the next batch.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use actix::prelude::*;
use sea_orm::{DatabaseConnection, DbErr, TransactionTrait};
use tokio::sync::oneshot;

use crate::metrics::{self, ActorKind};
use crate::store::{apply_write, insert_logs, Write};

/// How long the first write of a batch waits for company.
const GATHER: Duration = Duration::from_millis(2);
/// A batch this large is flushed at once.
const MAX_BATCH: usize = 512;

/// A write that a client waits for; answered with the rows it changed once committed.
#[derive(Message)]
#[rtype(result = "Result<u64, DbErr>")]
pub struct Commit(pub Write);

/// A write from the fire path; applied with the next batch.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Persist(pub Write);

/// Resolves once everything received before it has been applied (shutdown, tests).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Flush;

type Reply = oneshot::Sender<Result<u64, DbErr>>;

enum Item {
    Write(Write, Option<Reply>),
    Barrier(oneshot::Sender<()>),
}

pub struct PersistenceActor {
    db: DatabaseConnection,
    queue: VecDeque<Item>,
    flushing: bool,
    timer: Option<SpawnHandle>,
}

impl PersistenceActor {
    pub fn new(db: DatabaseConnection) -> Self {
        Self {
            db,
            queue: VecDeque::new(),
            flushing: false,
            timer: None,
        }
    }

    fn enqueue(&mut self, item: Item, ctx: &mut Context<Self>) {
        self.queue.push_back(item);
        if self.flushing {
            return;
        }
        if self.queue.len() >= MAX_BATCH {
            if let Some(t) = self.timer.take() {
                ctx.cancel_future(t);
            }
            self.flush(ctx);
        } else if self.timer.is_none() {
            self.timer = Some(ctx.run_later(GATHER, |act, ctx| {
                act.timer = None;
                act.flush(ctx);
            }));
        }
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.flushing || self.queue.is_empty() {
            return;
        }
        self.flushing = true;
        let n = self.queue.len().min(MAX_BATCH);
        let batch: Vec<Item> = self.queue.drain(..n).collect();
        let db = self.db.clone();
        ctx.spawn(
            async move { apply_batch(&db, batch).await }
                .into_actor(self)
                .map(|_, act, ctx| {
                    act.flushing = false;
                    if !act.queue.is_empty() {
                        act.flush(ctx);
                    }
                }),
        );
    }
}

impl Actor for PersistenceActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // The fire path must never wait on a full mailbox.
        ctx.set_mailbox_capacity(super::MAILBOX_CAPACITY);
        metrics::live_add(ActorKind::Persistence, 1.0);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        metrics::live_add(ActorKind::Persistence, -1.0);
    }
}

impl Handler<Commit> for PersistenceActor {
    type Result = ResponseFuture<Result<u64, DbErr>>;

    fn handle(&mut self, msg: Commit, ctx: &mut Self::Context) -> Self::Result {
        let _m = metrics::handling(ActorKind::Persistence, "Commit");
        let (tx, rx) = oneshot::channel();
        self.enqueue(Item::Write(msg.0, Some(tx)), ctx);
        Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| Err(DbErr::Custom("persistence actor stopped".into())))
        })
    }
}

impl Handler<Persist> for PersistenceActor {
    type Result = ();

    fn handle(&mut self, msg: Persist, ctx: &mut Self::Context) {
        let _m = metrics::handling(ActorKind::Persistence, "Persist");
        self.enqueue(Item::Write(msg.0, None), ctx);
    }
}

impl Handler<Flush> for PersistenceActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Flush, ctx: &mut Self::Context) -> Self::Result {
        let _m = metrics::handling(ActorKind::Persistence, "Flush");
        let (tx, rx) = oneshot::channel();
        self.enqueue(Item::Barrier(tx), ctx);
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

/// Applies a batch in one transaction. Log rows go in one multi-row insert; of several
/// schedule advances for one task only the last is written. If the transaction fails, each
/// write is retried alone so one bad write cannot take the others down with it.
async fn apply_batch(db: &DatabaseConnection, batch: Vec<Item>) {
    let started = std::time::Instant::now();
    let size = batch.len();
    let mut writes = Vec::with_capacity(batch.len());
    let mut barriers = Vec::new();
    for item in batch {
        match item {
            Item::Write(w, r) => writes.push((w, r)),
            Item::Barrier(b) => barriers.push(b),
        }
    }
    let mut last_advance: HashMap<String, usize> = HashMap::new();
    for (i, (w, _)) in writes.iter().enumerate() {
        if let Write::Advance { task_id, .. } = w {
            last_advance.insert(task_id.clone(), i);
        }
    }
    let superseded = |i: usize, w: &Write| match w {
        Write::Advance { task_id, .. } => last_advance.get(task_id) != Some(&i),
        _ => false,
    };

    let result: Result<Vec<u64>, DbErr> = async {
        let txn = db.begin().await?;
        // Task inserts first (a log may belong to a task created in this batch), then all
        // log rows at once, then the rest in arrival order.
        let mut counts = vec![0u64; writes.len()];
        for (i, (w, _)) in writes.iter().enumerate() {
            if matches!(w, Write::InsertTask(_)) {
                counts[i] = apply_write(&txn, w).await?;
            }
        }
        let logs: Vec<_> = writes
            .iter()
            .filter_map(|(w, _)| match w {
                Write::Log(m) => Some((**m).clone()),
                _ => None,
            })
            .collect();
        for chunk in logs.chunks(200) {
            insert_logs(&txn, chunk).await?;
        }
        for (i, (w, _)) in writes.iter().enumerate() {
            match w {
                Write::InsertTask(_) => {}
                Write::Log(_) => counts[i] = 1,
                w if superseded(i, w) => {}
                w => counts[i] = apply_write(&txn, w).await?,
            }
        }
        txn.commit().await?;
        Ok(counts)
    }
    .await;

    match result {
        Ok(counts) => {
            for ((_, reply), n) in writes.into_iter().zip(counts) {
                if let Some(r) = reply {
                    let _ = r.send(Ok(n));
                }
            }
        }
        Err(batch_err) => {
            tracing::warn!(error = %batch_err, size = writes.len(), "batch commit failed; applying writes one by one");
            for (i, (w, reply)) in writes.into_iter().enumerate() {
                if superseded(i, &w) {
                    if let Some(r) = reply {
                        let _ = r.send(Ok(0));
                    }
                    continue;
                }
                let res = apply_alone(db, &w).await;
                if let Err(e) = &res {
                    tracing::error!(error = %e, write = write_kind(&w), "write failed");
                }
                if let Some(r) = reply {
                    let _ = r.send(res);
                }
            }
        }
    }
    metrics::persistence_batch(size, started.elapsed().as_secs_f64());
    for b in barriers {
        let _ = b.send(());
    }
}

async fn apply_alone(db: &DatabaseConnection, w: &Write) -> Result<u64, DbErr> {
    let txn = db.begin().await?;
    let n = apply_write(&txn, w).await?;
    txn.commit().await?;
    Ok(n)
}

fn write_kind(w: &Write) -> &'static str {
    match w {
        Write::InsertTask(_) => "insert_task",
        Write::Redefine { .. } => "redefine",
        Write::SetStatus { .. } => "set_status",
        Write::Advance { .. } => "advance",
        Write::Log(_) => "log",
        Write::DeleteTask { .. } => "delete_task",
    }
}
