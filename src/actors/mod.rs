//! The actors of tickwheel and how they talk. Every arrow is a typed actix message; the
//! rules they carry out live in the domain (`crate::domain::run` for a task's run,
//! `crate::wheel` for the timing wheel), so the actors hold state and move messages.
//!
//! Eight actors, one of them outside this module:
//!
//! - [`registry::TaskRegistry`] owns `task_id → Addr<TaskActor>` for the tasks this node runs.
//!   The task service (`crate::service`) tells it of created, redefined and withdrawn tasks; at
//!   start-up it loads every pending/running task from storage (`registry/recovery.rs`). In
//!   cluster mode it also owns the state of every partition (`Unassigned → Claiming → Owned →
//!   Releasing`, `registry/ownership.rs`): it claims and loads the partitions it gains, releases
//!   the ones it loses (`registry/handover.rs`), applies other nodes' change notices and
//!   compares its actors with the database every few seconds (`registry/reconcile.rs`).
//! - [`task::TaskActor`] — one per active task, supervised — holds the task's run state (a
//!   `domain::run::TaskRun`) and carries out its decisions: it registers the next slot with the
//!   wheel, takes a token from its destination's bucket, sends `Execute` to its HTTP worker,
//!   waits out retries, and pushes every execution record and state change to persistence.
//!   Registrations and writes go through an [`outbox::Outbox`]: the wheel gets one `WheelOps`
//!   and persistence one `Persist` per batch, not one message each.
//! - [`wheel::TimingWheel`] runs on its own arbiter and drives the hierarchical wheel of
//!   `crate::wheel`: it sleeps until the earliest deadline and sends `Fire` to each due task.
//!   It holds only weak references to task actors, so a stopped task is never kept alive by a
//!   timer.
//! - [`dispatch::HttpWorker`]s, each on its own arbiter with its own `awc::Client`, send the
//!   calls. [`dispatch::Dispatcher`] is not an actor: it is the routing the task actors share —
//!   which worker a task calls through, and the token bucket of each destination `host:port`.
//!   (A dispatcher actor between task actors and workers cost a mailbox hop per call; see
//!   BENCHMARKS.md.)
//! - [`persistence::PersistenceActor`] is the only writer: it group-commits execution logs,
//!   schedule advances and state changes, and answers the API's writes once committed. In
//!   cluster mode it drops the writes of partitions another node has claimed (fencing).
//! - [`pruner::Pruner`], on its own arbiter, enforces history retention: it deletes expired
//!   execution logs and finished tasks straight through the pool, one bounded statement at a
//!   time with a pause after each. No other actor sends it anything, and the rows it deletes
//!   are ones no other writer touches (old logs, long-finished tasks).
//! - [`notifier::Notifier`], on its own arbiter, delivers task notifications from the
//!   `notifications` outbox: task actors write events with their execution logs, persistence
//!   tells it ([`notifier::Wake`]) once a batch with events is committed, and it claims due
//!   rows with a lease and sends them through the HTTP workers — never on a task actor's path.
//! - The **Membership** actor (`crate::cluster::membership`, cluster mode only) holds the
//!   ZooKeeper session and the member list, and tells the registry which partitions the node
//!   owns by sending it [`registry::Owned`] through a `Recipient`.
//!
//! This module does not depend on the cluster: what the actors need of it (the lease, the
//! fire guard, the pending queues) is the [`fence::ClusterFence`] trait, which
//! `crate::cluster` implements, and the notices of other nodes' changes arrive as
//! [`registry::Changed`] messages.

pub mod dispatch;
pub mod fence;
pub mod notifier;
pub mod outbox;
pub mod persistence;
pub mod pruner;
pub mod registry;
pub mod task;
pub mod wheel;

/// Mailbox size for the long-lived actors. `do_send` (the fire path) is never held back by it;
/// `send` waits only when this many messages are already queued.
pub const MAILBOX_CAPACITY: usize = 1 << 16;
