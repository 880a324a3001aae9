//! PersistenceActor: the only writer to storage. It gathers writes for a few milliseconds
//! (or until a batch is full) and applies them in one transaction — group commit — so that
//! thousands of execution logs per second cost a handful of commits.
//!
//! Writes a client is waiting for ([`Commit`]) are answered once their transaction has
//! committed, within a couple of milliseconds. Writes from the fire path ([`Persist`]) wait
//! for the fire path to go quiet (no new write for [`QUIET`]), for at most [`MAX_DELAY`] or
//! until [`HIGH_WATER`] of them are queued: a burst of thousands of calls at the top of a
//! minute then does not share the CPU with its own bookkeeping, which follows right after.
//! What this risks is bounded: a crash loses at most the last second's logs and advances,
//! and a slot whose advance was lost fires again after the restart (at least once, the
//! same `webhook-id`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use sea_orm::{DatabaseConnection, DbErr, TransactionTrait};
use tokio::sync::oneshot;

use super::notifier::Wake;
use crate::metrics::{self, ActorKind};
use crate::store::{
    advance_many, apply_write, held_partitions, insert_logs, insert_notifications, log_row,
    AdvanceRow, Write,
};

/// How long the first write a client waits for gathers company.
const GATHER: Duration = Duration::from_millis(2);
/// Fire-path writes are flushed once none has arrived for this long…
const QUIET: Duration = Duration::from_millis(20);
/// …or once the oldest has waited this long…
const MAX_DELAY: Duration = Duration::from_millis(1000);
/// …or once this many are queued.
const HIGH_WATER: usize = 50_000;
/// Writes per transaction.
const MAX_BATCH: usize = 2048;
/// Advances per `UPDATE` statement.
const ADVANCE_CHUNK: usize = 200;

/// A write that a client waits for; answered with the rows it changed once committed.
#[derive(Message)]
#[rtype(result = "Result<u64, DbErr>")]
pub struct Commit(pub Write);

/// Writes from the fire path, in the order they were made; applied with the next batch. They
/// arrive through an [`Outbox`](super::outbox::Outbox): one message per turn of the task
/// actors' arbiter rather than one per write.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Persist(pub Vec<Write>);

/// Resolves once everything received before it has been applied (shutdown, tests).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Flush;

type Reply = oneshot::Sender<Result<u64, DbErr>>;

enum Item {
    Write(Write, Option<Reply>),
    Barrier(oneshot::Sender<()>),
}

/// Cluster mode: schedule writes for a task apply only while `owner` holds its partition
/// (see [`Write::fenced_task`]).
#[derive(Debug, Clone)]
pub struct Fence {
    pub owner: String,
    pub partitions: u32,
}

impl Fence {
    /// For a fenced write, the partition of its task (`None` inside: an unreadable id, which
    /// no claim covers).
    fn partition_of(&self, w: &Write) -> Option<Option<u32>> {
        w.fenced_task().map(|id| {
            uuid::Uuid::parse_str(id)
                .ok()
                .map(|u| crate::domain::partition::partition_of(u, self.partitions))
        })
    }
}

pub struct PersistenceActor {
    db: DatabaseConnection,
    fence: Option<Arc<Fence>>,
    /// Told once a batch with notifications has been written, so it delivers them at once.
    notifier: Option<Recipient<Wake>>,
    queue: VecDeque<Item>,
    flushing: bool,
    timer: Option<(SpawnHandle, Instant)>,
    /// Queued items someone waits for (commits, barriers).
    urgent: usize,
    /// When the oldest queued item arrived, and the newest.
    oldest: Option<Instant>,
    newest: Option<Instant>,
}

impl PersistenceActor {
    pub fn new(db: DatabaseConnection) -> Self {
        Self {
            db,
            fence: None,
            notifier: None,
            queue: VecDeque::new(),
            flushing: false,
            timer: None,
            urgent: 0,
            oldest: None,
            newest: None,
        }
    }

    /// Cluster mode: fences this node's schedule writes by its partition claims.
    pub fn with_fence(mut self, fence: Fence) -> Self {
        self.fence = Some(Arc::new(fence));
        self
    }

    /// Tells `notifier` of every batch that carried notifications, once it is written.
    pub fn with_notifier(mut self, notifier: Recipient<Wake>) -> Self {
        self.notifier = Some(notifier);
        self
    }

    fn enqueue(&mut self, item: Item, ctx: &mut Context<Self>) {
        self.queue_write(item, Instant::now(), true, ctx);
    }

    /// Queues `item`; with `decide`, also applies the commit policy (once per message).
    fn queue_write(&mut self, item: Item, now: Instant, decide: bool, ctx: &mut Context<Self>) {
        if !matches!(item, Item::Write(_, None)) {
            self.urgent += 1;
        }
        self.queue.push_back(item);
        self.oldest.get_or_insert(now);
        self.newest = Some(now);
        if decide && !self.flushing {
            self.schedule(now, ctx);
        }
    }

    /// When the queue is due to be written, by the policy in the module documentation.
    fn due_at(&self, now: Instant) -> Instant {
        if self.urgent > 0 {
            return self.oldest.map_or(now, |o| o + GATHER);
        }
        if self.queue.len() >= HIGH_WATER {
            return now;
        }
        let quiet = self.newest.map_or(now, |n| n + QUIET);
        let oldest = self.oldest.map_or(now, |o| o + MAX_DELAY);
        quiet.min(oldest)
    }

    /// Flushes now if due, else sets (or moves) the timer for when it will be.
    fn schedule(&mut self, now: Instant, ctx: &mut Context<Self>) {
        if self.queue.is_empty() {
            return;
        }
        let due = self.due_at(now);
        if due <= now {
            if let Some((t, _)) = self.timer.take() {
                ctx.cancel_future(t);
            }
            return self.flush(ctx);
        }
        match &self.timer {
            // A timer that fires no later than needed re-checks then.
            Some((_, at)) if *at <= due => {}
            _ => {
                if let Some((t, _)) = self.timer.take() {
                    ctx.cancel_future(t);
                }
                let handle = ctx.run_later(due - now, |act, ctx| {
                    act.timer = None;
                    act.schedule(Instant::now(), ctx);
                });
                self.timer = Some((handle, due));
            }
        }
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.flushing || self.queue.is_empty() {
            return;
        }
        self.flushing = true;
        let n = self.queue.len().min(MAX_BATCH);
        let batch: Vec<Item> = self.queue.drain(..n).collect();
        self.urgent -= batch
            .iter()
            .filter(|i| !matches!(i, Item::Write(_, None)))
            .count();
        if self.queue.is_empty() {
            self.oldest = None;
            self.newest = None;
        }
        let db = self.db.clone();
        let fence = self.fence.clone();
        let events = batch
            .iter()
            .any(|i| matches!(i, Item::Write(Write::Notify(_), _)));
        ctx.spawn(
            async move { apply_batch(&db, batch, fence.as_deref()).await }
                .into_actor(self)
                .map(move |_, act, ctx| {
                    act.flushing = false;
                    if let (true, Some(n)) = (events, &act.notifier) {
                        n.do_send(Wake);
                    }
                    // What queued up meanwhile follows at once: the flush was due and the
                    // queue is its continuation.
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
        let Some(last) = msg.0.len().checked_sub(1) else {
            return;
        };
        let now = Instant::now();
        for (i, w) in msg.0.into_iter().enumerate() {
            self.queue_write(Item::Write(w, None), now, i == last, ctx);
        }
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
///
/// With a `fence`, the node's schedule writes for tasks of partitions it no longer holds in
/// `cluster_partitions` are dropped, checked inside the same transaction.
async fn apply_batch(db: &DatabaseConnection, batch: Vec<Item>, fence: Option<&Fence>) {
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
    let fenced_writes = fence.filter(|_| writes.iter().any(|(w, _)| w.fenced_task().is_some()));

    let run = || async {
        let txn = db.begin().await?;
        // Which of this node's schedule writes still apply: read (and, on MySQL, share-lock)
        // its claims first, so a claim by another node is ordered after this transaction.
        let mut fenced = vec![false; writes.len()];
        let mut fenced_count = 0;
        if let Some(f) = fenced_writes {
            let wanted: std::collections::BTreeSet<u32> = writes
                .iter()
                .filter_map(|(w, _)| f.partition_of(w).flatten())
                .collect();
            let held = held_partitions(&txn, &f.owner, &wanted).await?;
            let mut dropped = 0;
            for (i, (w, _)) in writes.iter().enumerate() {
                if let Some(p) = f.partition_of(w) {
                    if !p.is_some_and(|p| held.contains(&p)) {
                        fenced[i] = true;
                        dropped += 1;
                    }
                }
            }
            fenced_count = dropped;
        }
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
                Write::Log(r) => Some(log_row(r)),
                _ => None,
            })
            .collect();
        for chunk in logs.chunks(200) {
            insert_logs(&txn, chunk).await?;
        }
        let events: Vec<_> = writes
            .iter()
            .filter_map(|(w, _)| match w {
                Write::Notify(r) => Some((**r).clone()),
                _ => None,
            })
            .collect();
        for chunk in events.chunks(200) {
            insert_notifications(&txn, chunk).await?;
        }
        // The rest in arrival order, each run of consecutive advances as one statement per
        // chunk (only fire-path writes are advances: nobody waits for their row count).
        let mut advances: Vec<AdvanceRow<'_>> = Vec::new();
        for (i, (w, _)) in writes.iter().enumerate() {
            match w {
                Write::InsertTask(_) => {}
                Write::Log(_) | Write::Notify(_) => counts[i] = 1,
                w if superseded(i, w) || fenced[i] => {}
                Write::Advance { .. } => {
                    advances.extend(w.advance_row());
                    counts[i] = 1;
                }
                w => {
                    for chunk in advances.chunks(ADVANCE_CHUNK) {
                        advance_many(&txn, chunk).await?;
                    }
                    advances.clear();
                    counts[i] = apply_write(&txn, w).await?;
                }
            }
        }
        for chunk in advances.chunks(ADVANCE_CHUNK) {
            advance_many(&txn, chunk).await?;
        }
        txn.commit().await?;
        Ok::<_, DbErr>((counts, fenced_count))
    };
    let mut result = run().await;
    if let Err(e) = &result {
        // Most failures are the connection's (a server that ended it, a deadlock with
        // another node's claim): the batch as a whole is tried once more before each write
        // is tried alone, which for a batch of thousands would hold up everything behind it.
        tracing::warn!(error = %e, size = writes.len(), "batch commit failed; trying it again");
        result = run().await;
    }

    match result {
        Ok((counts, dropped)) => {
            if dropped > 0 {
                tracing::debug!(
                    dropped,
                    "schedule writes for partitions this node no longer holds dropped"
                );
                metrics::fenced_writes(dropped);
            }
            for ((_, reply), n) in writes.into_iter().zip(counts) {
                if let Some(r) = reply {
                    let _ = r.send(Ok(n));
                }
            }
        }
        Err(batch_err) => {
            tracing::warn!(error = %batch_err, size = writes.len(), "batch commit failed twice; applying writes one by one");
            for (i, (w, reply)) in writes.into_iter().enumerate() {
                if superseded(i, &w) {
                    if let Some(r) = reply {
                        let _ = r.send(Ok(0));
                    }
                    continue;
                }
                let res = apply_alone(db, &w, fence).await;
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

async fn apply_alone(
    db: &DatabaseConnection,
    w: &Write,
    fence: Option<&Fence>,
) -> Result<u64, DbErr> {
    let txn = db.begin().await?;
    if let Some((f, p)) = fence.and_then(|f| f.partition_of(w).map(|p| (f, p))) {
        let wanted = p.into_iter().collect();
        let held = held_partitions(&txn, &f.owner, &wanted).await?;
        if !p.is_some_and(|p| held.contains(&p)) {
            metrics::fenced_writes(1);
            return Ok(0);
        }
    }
    let n = apply_write(&txn, w).await?;
    txn.commit().await?;
    Ok(n)
}

fn write_kind(w: &Write) -> &'static str {
    match w {
        Write::InsertTask(_) => "insert_task",
        Write::Redefine { .. } => "redefine",
        Write::SetStatus { .. } => "set_status",
        Write::Resume { .. } => "resume",
        Write::Advance { .. } => "advance",
        Write::Missed { .. } => "missed",
        Write::Counted { .. } => "counted",
        Write::Log(_) => "log",
        Write::Notify(_) => "notify",
        Write::DeleteTask { .. } => "delete_task",
        Write::Claim { .. } => "claim",
        Write::Release { .. } => "release",
    }
}
