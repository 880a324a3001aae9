//! The actors of tickwheel and how they talk. Every arrow is a typed actix message.
//!
//! - [`registry::TaskRegistry`] owns `task_id → Addr<TaskActor>` for the tasks this node runs.
//!   The REST API tells it about new, redefined and withdrawn tasks; at start-up it loads every
//!   pending/running task from storage (recovery).
//! - [`task::TaskActor`] — one per active task, supervised — holds the task's runtime state. It
//!   registers its next slot with the wheel, receives `Fire` when the slot is due, takes a
//!   token from its destination's bucket and sends `Execute` to its HTTP worker (chosen by a
//!   hash of the task id), handles the `Outcome`
//!   (retry with backoff, stop conditions, state transitions) and sends each change to
//!   persistence. Registrations and writes go through an [`outbox::Outbox`]: the wheel gets
//!   one `WheelOps` and persistence one `Persist` per batch, not one message each.
//! - [`wheel::TimingWheel`] runs on its own arbiter and drives the hierarchical wheel of
//!   `crate::wheel`: it sleeps until the earliest deadline and sends `Fire` to each due task.
//!   It holds only weak references to task actors, so a stopped task is never kept alive by a
//!   timer.
//! - [`dispatch::HttpWorker`]s, each on its own arbiter with its own `awc::Client`, send the
//!   calls. [`dispatch::Dispatcher`] is the routing they share, not an actor: which worker a
//!   task calls through, and the token bucket of each destination `host:port`. (A dispatcher
//!   actor between task actors and workers cost a mailbox hop per call; see BENCHMARKS.md.)
//! - [`persistence::PersistenceActor`] is the only writer: it group-commits execution logs,
//!   schedule advances and state changes, and answers the API's writes once committed.

pub mod dispatch;
pub mod fence;
pub mod outbox;
pub mod persistence;
pub mod registry;
pub mod task;
pub mod wheel;

/// Mailbox size for the long-lived actors. `do_send` (the fire path) is never held back by it;
/// `send` waits only when this many messages are already queued.
pub const MAILBOX_CAPACITY: usize = 1 << 16;
