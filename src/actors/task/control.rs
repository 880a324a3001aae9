//! The messages that steer a task actor from outside — a new definition, a stop, a drain
//! at shutdown, a release at a cluster hand-over — and how the actor turns a stored task into
//! what it sends and what its run rules read.

use std::sync::Arc;

use actix::prelude::*;
use actix_web::web::Bytes;

use super::{TaskActor, TaskDeps};
use crate::actors::dispatch::{Dispatcher, ExecError, OutboundRequest, Outcome, Prepared};
use crate::domain::run::{AttemptOutcome, Progress, Rescheduled, RetryDefaults, RunRules};
use crate::domain::TaskStatus;
use crate::metrics::{self, ActorKind};
use crate::store::ActiveTask;
use crate::time::now_ms;

/// Replaces the task's definition (after a patch); the runtime counters are kept. With
/// `reschedule`, the task's next run is the one given.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Redefine {
    pub task: Box<ActiveTask>,
    pub reschedule: bool,
}

/// Stops the task: aborts the execution in flight and takes it off the wheel.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

/// Shutdown: stop firing, and answer once no request of this task is on the wire. An
/// execution waiting for a retry is not continued; its slot was not advanced, so it runs
/// again after the restart.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drain;

/// Builds what is sent for `task`, moving the headers and body out of its spec: the actor
/// keeps them only in their ready-to-send form (the API reads definitions from storage), so
/// an idle task holds one copy.
pub(super) fn outbound(task: &mut ActiveTask, dispatcher: &Dispatcher) -> Arc<OutboundRequest> {
    let task_id = task.task_id;
    let spec = &mut task.spec;
    let headers = std::mem::take(&mut spec.headers);
    let body = spec.body.take();
    Arc::new(OutboundRequest {
        task_id,
        user_id: spec.user_id,
        body: body
            .filter(|_| spec.method.allows_body())
            .map(|b| Bytes::from(b.to_string())),
        limiter: dispatcher.limiter(&spec.http_endpoint),
        prepared: Prepared::new(&spec.http_endpoint, spec.method, &headers),
        // Checked by the worker, off this arbiter: its cost is the user's to choose.
        response_match: (!spec.stop_condition.matches.is_empty())
            .then(|| Arc::new(spec.stop_condition.clone())),
    })
}

/// The run rules and stored progress of `task`.
pub(super) fn run_parts(task: ActiveTask, deps: &TaskDeps) -> (RunRules, Progress) {
    let defaults = RetryDefaults {
        max_retries: deps.default_max_retries,
        backoff_ms: deps.default_backoff_ms,
    };
    let progress = Progress {
        next_run_time: task.next_run_time,
        execution_count: task.execution_count,
        consecutive_failures: task.consecutive_failures,
        missed_slots: task.missed_slots,
    };
    (RunRules::of(&task.spec, task.schedule, defaults), progress)
}

impl Handler<Redefine> for TaskActor {
    type Result = ();

    fn handle(&mut self, msg: Redefine, ctx: &mut Self::Context) {
        let _m = metrics::handling(ActorKind::Task, "Redefine");
        if self.run.is_ended() {
            return;
        }
        let mut new = *msg.task;
        self.request = outbound(&mut new, &self.deps.dispatcher);
        self.notify = new.spec.notify.take().map(Arc::new);
        self.user_id = new.spec.user_id;
        let next = new.next_run_time;
        let (rules, _) = run_parts(new, &self.deps);
        self.run.redefine(rules);
        if msg.reschedule {
            match self.run.reschedule(next) {
                Rescheduled::Register(at) => self.register(at, ctx),
                Rescheduled::Withdraw { complete } => {
                    self.deregister();
                    if complete {
                        self.finish(TaskStatus::Completed, ctx);
                    }
                }
            }
        }
    }
}

impl Handler<Stop> for TaskActor {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Self::Context) {
        let _m = metrics::handling(ActorKind::Task, "Stop");
        let dropped = self.run.stop();
        self.release_wire(dropped.is_some());
        self.deregister();
        ctx.stop();
    }
}

impl Handler<Drain> for TaskActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Drain, _: &mut Self::Context) -> Self::Result {
        let _m = metrics::handling(ActorKind::Task, "Drain");
        self.drain()
    }
}

/// Cluster hand-over: the task now belongs to another node. Nothing more is fired; a call on
/// the wire finishes and is logged (its slot's guard keeps the new owner from sending it
/// again, so aborting it could lose it); then the actor stops. Answers once it has.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Release;

impl Handler<Release> for TaskActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Release, ctx: &mut Self::Context) -> Self::Result {
        let _m = metrics::handling(ActorKind::Task, "Release");
        let drained = self.drain();
        let me = ctx.address();
        Box::pin(async move {
            drained.await;
            metrics::sent(ActorKind::Task);
            let _ = me.send(Stop).await;
        })
    }
}

impl TaskActor {
    /// Stops firing; resolves once no request of this task is on the wire.
    fn drain(&mut self) -> ResponseFuture<()> {
        self.draining = true;
        self.deregister();
        if self.on_wire() {
            let (tx, rx) = tokio::sync::oneshot::channel();
            self.drained.push(tx);
            return Box::pin(async move {
                let _ = rx.await;
            });
        }
        // Waiting out a backoff (or nothing in flight): the next attempt is not started.
        self.drop_in_flight(true);
        Box::pin(async {})
    }
}

/// What the run rules need to know of an attempt's outcome.
pub(super) fn attempt_outcome(outcome: &Outcome) -> AttemptOutcome {
    match &outcome.result {
        Ok(r) => AttemptOutcome::Replied {
            status: r.status,
            retry_after_ms: r.retry_after_ms,
            stop_matched: r.stop_matched,
        },
        Err(ExecError::Cancelled) => AttemptOutcome::Cancelled,
        Err(_) => AttemptOutcome::Failed,
    }
}

pub(super) fn unavailable(why: String) -> Outcome {
    Outcome {
        sent_at_ms: now_ms(),
        duration_ms: 0,
        result: Err(ExecError::Unavailable(why)),
    }
}
