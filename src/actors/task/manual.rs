//! Run now: one extra execution of the task at once, outside its schedule, through the same
//! path as a scheduled one (rate limit, guard, retries, logging, stop conditions). The run
//! rules decide whether it may start ([`TaskRun::on_manual`](crate::domain::TaskRun)); the
//! scheduled slot is not moved.
//!
//! A paused task has no actor: its manual run gets a one-off actor that registers no timer,
//! sends that one execution, records it (the counters only: the task stays paused) and stops.

use actix::prelude::*;

use super::TaskActor;
use crate::domain::run::ManualRefusal;
use crate::metrics::{self, ActorKind};

/// Asks the task's actor for one execution now; `now` (epoch ms) is its slot and
/// `webhook-id`.
#[derive(Message)]
#[rtype(result = "RunNowReply")]
pub struct RunManual {
    pub now: i64,
}

/// How a request to run a task now went on this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunNowReply {
    /// Started; its slot (the moment of the request, epoch ms).
    Started(i64),
    /// An execution of the task (of this slot) is still in flight.
    InFlight(i64),
    /// The task has ended (or its actor just stopped).
    Ended,
    /// Cluster mode: another node runs the task.
    NotOwner,
    /// The task is active but has no actor here (not loaded yet, or finishing).
    NoActor,
    /// This node is shutting down or handing the task over.
    Unavailable,
}

impl TaskActor {
    /// The one-off actor of a paused task's manual run: no timer, no state change; it stops
    /// once its execution is over.
    pub fn one_off(mut self) -> Self {
        self.one_off = true;
        self
    }

    /// A one-off actor whose execution is over stops (its counters are recorded already).
    pub(super) fn one_off_over(&mut self, ctx: &mut Context<Self>) {
        if self.run.in_flight().is_none() {
            self.run.stop();
            ctx.stop();
        }
    }
}

impl Handler<RunManual> for TaskActor {
    type Result = MessageResult<RunManual>;

    fn handle(&mut self, msg: RunManual, ctx: &mut Self::Context) -> Self::Result {
        let _m = metrics::handling(ActorKind::Task, "RunManual");
        if self.draining {
            return MessageResult(RunNowReply::Unavailable);
        }
        MessageResult(match self.run.on_manual(msg.now) {
            Ok(_) => {
                tracing::info!(task_id = %self.task_id, scheduled_ms = msg.now, "manual run");
                metrics::manual_run();
                self.start_execution(ctx);
                RunNowReply::Started(msg.now)
            }
            Err(ManualRefusal::InFlight { slot }) => RunNowReply::InFlight(slot),
            Err(ManualRefusal::Ended) => RunNowReply::Ended,
        })
    }
}
