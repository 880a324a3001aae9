//! The actors of tickwheel and how they talk. Every arrow is a typed actix message.
//!
//! - [`registry::TaskRegistry`] owns `task_id → Addr<TaskActor>` for the tasks this node runs.
//!   The REST API tells it about new, redefined and withdrawn tasks; at start-up it loads every
//!   pending/running task from storage (recovery).
//! - [`task::TaskActor`] — one per active task, supervised — holds the task's runtime state. It
//!   registers its next slot with the wheel (`Register`), receives `Fire` when the slot is due,
//!   sends `Execute` to the dispatcher, handles the `Outcome` (retry with backoff, stop
//!   conditions, state transitions) and sends each change to persistence (`Persist`).
//! - [`wheel::TimingWheel`] runs on its own arbiter and drives the hierarchical wheel of
//!   `crate::wheel`: it sleeps until the earliest deadline and sends `Fire` to each due task.
//!   It holds only weak references to task actors, so a stopped task is never kept alive by a
//!   timer.
//! - [`dispatch::Dispatcher`] applies the per-host token bucket and spreads calls over the
//!   [`dispatch::HttpWorker`]s, each on its own arbiter with its own `awc::Client`.
//! - [`persistence::PersistenceActor`] is the only writer: it group-commits execution logs,
//!   schedule advances and state changes, and answers the API's writes once committed.

pub mod dispatch;
pub mod persistence;
pub mod registry;
pub mod task;
pub mod wheel;

/// Mailbox size for the long-lived actors. `do_send` (the fire path) is never held back by it;
/// `send` waits only when this many messages are already queued.
pub const MAILBOX_CAPACITY: usize = 1 << 16;
