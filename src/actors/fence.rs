//! What the task actors and the registry need of the cluster, said on this side: the node's
//! lease (may it fire now?), the fire guard of one (task, scheduled time), and the pending
//! queue of each partition. `crate::cluster` implements [`ClusterFence`]; the actors hold it
//! as a trait object, so they depend on what they ask for and never on ZooKeeper or Redis.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use uuid::Uuid;

/// The cluster could not answer (Redis unreachable, too slow, …). Shown as its cause.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct FenceError(Box<dyn std::error::Error + Send + Sync>);

impl FenceError {
    pub fn new(cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Box::new(cause))
    }
}

/// What a take-over finds in the pending queues.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Queued {
    /// The partitions asked about whose queue is complete.
    pub complete: Vec<u32>,
    /// The task ids queued in those.
    pub task_ids: Vec<String>,
}

/// Cluster mode, as task actors and the registry use it: every fire goes through the node's
/// lease, then the fire guard; every next run goes to its partition's pending queue.
pub trait ClusterFence: Send + Sync {
    /// The number of the node's current session: what starts now fires only while it lasts.
    fn session(&self) -> u64;

    /// Whether the node may fire now, for what started in `session`.
    fn valid_for(&self, session: u64) -> bool;

    /// Takes the guard of one (task, scheduled time): `Ok(true)` if this node may send it,
    /// `Ok(false)` if another node (or an earlier run of this one) already took it.
    fn take_guard(
        self: Arc<Self>,
        task_id: Uuid,
        slot_ms: i64,
    ) -> BoxFuture<'static, Result<bool, FenceError>>;

    /// Records the task's next run in its partition's queue.
    fn queue_next(&self, task_id: Uuid, at_ms: i64);

    /// Takes a task that ended out of its partition's queue.
    fn dequeue(&self, task_id: Uuid);

    /// Every pending task of `partition` is in its queue: a new owner may take it over from
    /// the queue alone.
    fn mark_complete(&self, partition: u32);

    /// For a take-over: which of `partitions` have a complete queue, and the task ids queued
    /// in those.
    fn queued(
        self: Arc<Self>,
        partitions: Vec<u32>,
    ) -> BoxFuture<'static, Result<Queued, FenceError>>;
}
