//! Cluster mode: several nodes share one MySQL/MariaDB database, one Redis and one ZooKeeper
//! ensemble.
//!
//! - [`membership`]: the Membership actor — a ZooKeeper session with an ephemeral sequential
//!   znode per node, a watch on the member list, the partition map computed from it, and the
//!   node's fencing lease.
//! - [`redis`]: the fire guard (`SET NX PX` per task and scheduled time) and the change notices
//!   that carry create/patch/cancel/delete to a task's owner.
//! - Partition claims live in the database (`cluster_partitions`): see
//!   [`crate::store::Write::Claim`] and the fence in the persistence actor.
//!
//! Why no (task, scheduled time) is delivered twice while the cluster is healthy: a task
//! fires only on the node running its actor; a node runs the actors of the partitions it
//! owns by the map every node computes alike from the same member list. A partition changes
//! hands in order: the old owner (when alive) stops its tasks, lets their calls on the wire
//! finish, commits what they wrote and releases the partition in `cluster_partitions`; the new
//! owner claims it only then (or once the old owner is no longer a live member) and loads the
//! tasks as they were left. A node that cannot reach ZooKeeper stops firing after two thirds
//! of the session timeout ([`Lease`]), before its partitions can be given to others, and its
//! schedule writes for a partition another node claimed are dropped (fencing), so it cannot
//! overwrite its successor's state. The Redis guard (`SET NX PX` per task and scheduled time)
//! lets exactly one node send a slot should two ever reach it, and the database's unique
//! `(task_id, scheduled_time, attempt)` keeps one log row per attempt whatever happens.
//!
//! Around a hand-over: after a crash (or a freeze past the session timeout) the new owner
//! loads what the old one last committed (at most a second behind, see the persistence
//! actor), so a slot whose advance was lost is reached again; the guard stops it from being
//! sent twice, except a call that was on the wire when its sender died, which the guard
//! (taken before sending) also covers — it is repeated only if the guard was lost with Redis.
//! A retry waiting out its backoff on a node that hands the partition over is not continued.

pub mod membership;
pub mod redis;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use uuid::Uuid;

use crate::actors::fence::{ClusterFence, FenceError, Queued};
use crate::domain::partition::partition_of;

/// What task actors and the registry use in cluster mode (as a [`ClusterFence`]): every fire
/// goes through the node's lease, then the Redis guard; every next run goes to the
/// partition's pending queue.
pub struct TaskCluster {
    lease: Arc<Lease>,
    redis: redis::ClusterRedis,
    /// Hands a queue change on (the caller batches them on their way to the queue writer).
    queue: Box<dyn Fn(redis::QueueOp) + Send + Sync>,
    partitions: u32,
}

impl TaskCluster {
    pub fn new(
        lease: Arc<Lease>,
        redis: redis::ClusterRedis,
        partitions: u32,
        queue: impl Fn(redis::QueueOp) + Send + Sync + 'static,
    ) -> Self {
        Self {
            lease,
            redis,
            queue: Box::new(queue),
            partitions,
        }
    }
}

impl ClusterFence for TaskCluster {
    fn session(&self) -> u64 {
        self.lease.session()
    }

    fn valid_for(&self, session: u64) -> bool {
        self.lease.valid_for(session)
    }

    fn take_guard(
        self: Arc<Self>,
        task_id: Uuid,
        slot_ms: i64,
    ) -> BoxFuture<'static, Result<bool, FenceError>> {
        Box::pin(async move {
            self.redis
                .take_guard(task_id, slot_ms)
                .await
                .map_err(FenceError::new)
        })
    }

    fn queue_next(&self, task_id: Uuid, at_ms: i64) {
        (self.queue)(redis::QueueOp::Set {
            partition: partition_of(task_id, self.partitions),
            task_id,
            at_ms,
        });
    }

    fn dequeue(&self, task_id: Uuid) {
        (self.queue)(redis::QueueOp::Remove {
            partition: partition_of(task_id, self.partitions),
            task_id,
        });
    }

    fn mark_complete(&self, partition: u32) {
        (self.queue)(redis::QueueOp::Complete { partition });
    }

    fn queued(
        self: Arc<Self>,
        partitions: Vec<u32>,
    ) -> BoxFuture<'static, Result<Queued, FenceError>> {
        Box::pin(async move {
            let (complete, task_ids) = self
                .redis
                .queued(&partitions)
                .await
                .map_err(FenceError::new)?;
            Ok(Queued { complete, task_ids })
        })
    }
}

/// The node's right to fire: valid until two thirds of a session timeout after the last
/// request ZooKeeper answered was sent (the server cannot expire the session before one full
/// timeout after it heard from us). A node that is cut off, or frozen (SIGSTOP), therefore
/// stops firing before its partitions can be given to anyone else.
#[derive(Debug)]
pub struct Lease {
    base: Instant,
    /// Milliseconds after `base` until which firing is allowed; 0: not allowed.
    until_ms: AtomicU64,
    /// Bumped when a session is lost: what was started under an earlier session never fires
    /// again, even once the node has joined anew and its lease is valid.
    session: AtomicU64,
}

impl Default for Lease {
    fn default() -> Self {
        Self::new()
    }
}

impl Lease {
    /// A lease that allows nothing until extended.
    pub fn new() -> Self {
        Self {
            base: Instant::now(),
            until_ms: AtomicU64::new(0),
            session: AtomicU64::new(0),
        }
    }

    /// Always valid: single-node mode.
    pub fn unlimited() -> Self {
        Self {
            base: Instant::now(),
            until_ms: AtomicU64::new(u64::MAX),
            session: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.base.elapsed().as_millis() as u64
    }

    /// ZooKeeper answered a request sent at `sent`: firing is allowed until `sent + validity`.
    /// Answers arrive in any order; each extends the lease as far as its own send time allows.
    /// When this answer brings a lapsed lease back, returns how long it had lapsed.
    pub fn extend(&self, sent: Instant, validity: Duration) -> Option<Duration> {
        let until = (sent.saturating_duration_since(self.base) + validity).as_millis() as u64;
        let now = self.now_ms();
        let before = self.until_ms.fetch_max(until, Ordering::AcqRel);
        // `before == 0`: never valid yet, or revoked (a join is not a renewal).
        (before != 0 && before != u64::MAX && before <= now && until > now)
            .then(|| Duration::from_millis(now - before))
    }

    /// How long ago the lease lapsed, if it has (not when it was never valid or revoked).
    pub fn lapsed_for(&self) -> Option<Duration> {
        let until = self.until_ms.load(Ordering::Acquire);
        let now = self.now_ms();
        (until != 0 && until != u64::MAX && until <= now)
            .then(|| Duration::from_millis(now - until))
    }

    /// The session was lost: nothing may fire until the node joined again, and nothing
    /// started before ever fires again.
    pub fn revoke(&self) {
        self.session.fetch_add(1, Ordering::AcqRel);
        self.until_ms.store(0, Ordering::Release);
    }

    /// The current session's number, for [`Lease::valid_for`].
    pub fn session(&self) -> u64 {
        self.session.load(Ordering::Acquire)
    }

    pub fn valid(&self) -> bool {
        let until = self.until_ms.load(Ordering::Acquire);
        until == u64::MAX || self.now_ms() < until
    }

    /// Valid, and still the session `session` was taken in.
    pub fn valid_for(&self, session: u64) -> bool {
        self.session() == session && self.valid()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_lapses_and_can_be_revoked() {
        let lease = Lease::new();
        assert!(!lease.valid());
        lease.extend(Instant::now(), Duration::from_secs(60));
        assert!(lease.valid());
        lease.revoke();
        assert!(!lease.valid());
        // An answer to a request sent longer ago than the validity extends nothing.
        std::thread::sleep(Duration::from_millis(30));
        lease.extend(lease.base, Duration::from_millis(10));
        assert!(!lease.valid());
        assert!(Lease::unlimited().valid());
    }

    #[test]
    fn a_lapsed_lease_is_renewed_by_any_later_answer_in_any_order() {
        let lease = Lease::new();
        let validity = Duration::from_millis(40);
        let first = Instant::now();
        assert_eq!(
            lease.extend(first, validity),
            None,
            "a join is not a renewal"
        );
        std::thread::sleep(Duration::from_millis(60));
        assert!(!lease.valid());
        assert!(lease
            .lapsed_for()
            .is_some_and(|d| d >= Duration::from_millis(15)));
        // The answer to a request sent before the lapse arrives late: it renews nothing.
        let sent_before = first + Duration::from_millis(5);
        let fresh = Instant::now();
        assert_eq!(lease.extend(sent_before, validity), None);
        assert!(!lease.valid());
        // The next answer, to a request sent after the lapse, renews it and says for how long
        // it had lapsed; a slower answer to an older request arriving after it changes nothing.
        let lapsed = lease.extend(fresh, validity).expect("renewed");
        assert!(lapsed >= Duration::from_millis(15), "{lapsed:?}");
        assert!(lease.valid());
        assert_eq!(lease.extend(sent_before, validity), None);
        assert!(lease.valid());
        assert_eq!(lease.lapsed_for(), None);
    }

    #[test]
    fn what_started_under_a_lost_session_never_fires_again() {
        let lease = Lease::new();
        lease.extend(Instant::now(), Duration::from_secs(60));
        let first = lease.session();
        assert!(lease.valid_for(first));
        lease.revoke();
        // Joined again: valid for what starts now, not for what started before.
        lease.extend(Instant::now(), Duration::from_secs(60));
        assert!(lease.valid_for(lease.session()));
        assert!(!lease.valid_for(first));
    }
}
