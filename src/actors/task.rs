//! TaskActor: one per pending or running task. It carries out what the task's run rules
//! ([`crate::domain::run`]) decide: it registers each next slot with the wheel, sends each
//! execution through its HTTP worker (waiting out retries, rate limits and the catch-up pacer),
//! and sends every change to the persistence actor. The rules themselves — retries,
//! `Retry-After`, completion, failure, misfire and overlap — are decided by its [`TaskRun`].
//!
//! Supervised: if it stops while the registry still holds it, it is restarted and reloads its
//! task from storage.

mod control;
mod manual;
mod notify;
mod pacer;
mod start;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use self::control::{attempt_outcome, outbound, run_parts, unavailable};
pub use self::control::{Drain, Redefine, Release, Stop};
pub use self::manual::{RunManual, RunNowReply};
use self::notify::EventInfo;
pub use self::pacer::{CatchUpPacer, CATCH_UP_MAX_DELAY, CATCH_UP_SPACING};
use super::dispatch::{Dispatcher, Execute, OutboundRequest, Outcome};
use super::outbox::Outbox;
use super::wheel::{Deregister, Fire, Register, WheelOp};
use crate::domain::notify::{Finished as Final, Notify};
use crate::domain::run::{AttemptOutcome, FireAction, Trigger, Verdict, MAX_RETRY_AFTER_MS};
use crate::domain::{ExecutionRecord, TaskRun, TaskStatus};
use crate::metrics::{self, ActorKind};
use crate::store::{ActiveTask, Store, Write};
use crate::time::now_ms;
use ratelimit::TryWaitError;

static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

/// Tells the registry that a task reached a final state and its actor can go.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Finished {
    pub task_id: Uuid,
}

/// What every task actor shares.
pub struct TaskDeps {
    /// To the timing wheel: registrations and withdrawals.
    pub wheel: Arc<Outbox<WheelOp>>,
    pub dispatcher: Arc<Dispatcher>,
    /// To the persistence actor: execution logs, advances, state changes.
    pub persistence: Arc<Outbox<Write>>,
    pub registry: Recipient<Finished>,
    pub store: Store,
    pub default_max_retries: u32,
    pub default_backoff_ms: u64,
    /// Cluster mode: the lease and the Redis guard every fire goes through.
    pub cluster: Option<Arc<dyn super::fence::ClusterFence>>,
    /// Spreads the node's catch-up fires out (see [`CatchUpPacer`]).
    pub pacer: CatchUpPacer,
}

/// How the execution in flight stands on the wire (its slot and attempt are the run's).
struct Wire {
    cancel: CancellationToken,
    /// A request is on the wire (rather than waiting out a retry backoff or for a token).
    sending: bool,
    /// This attempt was held back by its destination's token bucket (counted once).
    throttled: bool,
    /// Start of the first attempt minus the slot, once the first attempt has ended.
    lateness_ms: Option<i64>,
}

pub struct TaskActor {
    deps: Arc<TaskDeps>,
    /// Cluster mode: the ZooKeeper session this actor was started under; it fires only
    /// while that session lasts.
    session: u64,
    task_id: Uuid,
    user_id: i64,
    status: TaskStatus,
    /// The run state and its rules: what to do at each start, fire and outcome.
    run: TaskRun,
    request: Arc<OutboundRequest>,
    generation: u64,
    /// Present while the run has an execution in flight.
    wire: Option<Wire>,
    reload: bool,
    draining: bool,
    drained: Vec<tokio::sync::oneshot::Sender<()>>,
    /// A paused task's manual run: no timer, no state change, gone once it has run.
    one_off: bool,
    /// The task's `notify`, if any; when its last `late` was raised; the execution that
    /// ended last (what a final state's event tells).
    notify: Option<Arc<Notify>>,
    last_late_ms: Option<i64>,
    last_end: Option<EventInfo>,
}

impl TaskActor {
    pub fn new(deps: Arc<TaskDeps>, mut task: ActiveTask) -> Self {
        let request = outbound(&mut task, &deps.dispatcher);
        let notify = task.spec.notify.take().map(Arc::new);
        let session = deps.cluster.as_ref().map_or(0, |c| c.session());
        let (task_id, user_id, status) = (task.task_id, task.spec.user_id, task.status);
        let (rules, progress) = run_parts(task, &deps);
        Self {
            deps,
            session,
            task_id,
            user_id,
            status,
            run: TaskRun::new(rules, progress),
            request,
            generation: 0,
            wire: None,
            reload: false,
            draining: false,
            drained: Vec::new(),
            one_off: false,
            notify,
            last_late_ms: None,
            last_end: None,
        }
    }

    /// A task taken over from another node at `at_ms`: the slots it missed before then are
    /// coalesced into one fire, the ones due since are all sent.
    pub fn taken_over_at(mut self, at_ms: Option<i64>) -> Self {
        self.run = self.run.taken_over_at(at_ms);
        self
    }

    fn register(&mut self, at_ms: i64, ctx: &mut Context<Self>) {
        // Unique across actors, so an old actor of the same task can never cancel a newer
        // one's timer.
        self.generation = NEXT_GENERATION.fetch_add(1, Ordering::Relaxed);
        let recipient = ctx.address().downgrade();
        if let Some(c) = &self.deps.cluster {
            c.queue_next(self.task_id, at_ms);
        }
        self.deps.wheel.push(WheelOp::Register(Register {
            task_id: self.task_id,
            at_ms,
            generation: self.generation,
            recipient,
        }));
    }

    fn deregister(&self) {
        self.deps.wheel.push(WheelOp::Deregister(Deregister {
            task_id: self.task_id,
            generation: self.generation,
        }));
    }

    /// Drops the execution in flight without an outcome; with `abort`, its request is
    /// cancelled too.
    fn drop_in_flight(&mut self, abort: bool) {
        let dropped = self.run.abandon();
        self.release_wire(dropped.is_some() && abort);
    }

    /// The run has nothing in flight any more: forgets its wire state (cancelling it first
    /// with `abort`).
    fn release_wire(&mut self, abort: bool) {
        if let Some(w) = self.wire.take() {
            if abort {
                w.cancel.cancel();
            }
        }
    }

    /// Whether a request of this task is on its way.
    fn on_wire(&self) -> bool {
        self.run.in_flight().is_some() && self.wire.as_ref().is_some_and(|w| w.sending)
    }

    fn send_attempt(&mut self, ctx: &mut Context<Self>) {
        if self.run.in_flight().is_some() && !self.may_fire() {
            // The lease lapsed after the fire (its guard may be this node's): held until the
            // lease is back, not dropped; a drain or release ends the wait (not on the wire).
            if let Some(w) = &mut self.wire {
                w.sending = false;
            }
            self.run.hold_in_flight();
            self.settle();
            let lost = self
                .deps
                .cluster
                .as_ref()
                .is_some_and(|c| c.session() != self.session);
            if lost {
                // The session is gone: another node runs the task now.
                self.drop_in_flight(false);
                return;
            }
            ctx.run_later(FENCED_RECHECK, |act, ctx| {
                if !act.run.is_ended() && !act.draining {
                    act.send_attempt(ctx);
                }
            });
            return;
        }
        let (Some(current), Some(wire)) = (self.run.in_flight(), &mut self.wire) else {
            return;
        };
        if let Some(limiter) = &self.request.limiter {
            if let Err(TryWaitError::Insufficient(wait)) = limiter.try_wait() {
                // Over the destination's rate: wait for a token, never drop the call. Not on
                // the wire yet, so a shutdown does not wait for it (the slot runs again after
                // the restart).
                if !wire.throttled {
                    wire.throttled = true;
                    metrics::fire("rate_limited_delay");
                }
                wire.sending = false;
                if self.draining {
                    // Stopping: not waited for (the slot re-runs after a restart; after a
                    // hand-over it is lost if this node held its guard).
                    self.drop_in_flight(false);
                    self.settle();
                    return;
                }
                ctx.run_later(wait, |act, ctx| {
                    if !act.run.is_ended() && !act.draining {
                        act.send_attempt(ctx);
                    }
                });
                return;
            }
        }
        wire.sending = true;
        wire.throttled = false;
        let (slot, attempt) = (current.slot, current.attempt);
        let exec = Execute {
            request: self.request.clone(),
            scheduled_ms: slot,
            attempt,
            cancel: wire.cancel.clone(),
            webhook_id: None,
        };
        tracing::debug!(task_id = %self.task_id, scheduled_ms = slot, attempt, "executing");
        let Some(worker) = self.deps.dispatcher.worker(self.task_id) else {
            let outcome = unavailable("no HTTP workers".into());
            return self.on_outcome(slot, attempt, outcome, ctx);
        };
        metrics::sent(ActorKind::Worker);
        ctx.spawn(
            worker
                .send(exec)
                .into_actor(self)
                .map(move |res, act, ctx| {
                    let outcome = res.unwrap_or_else(|e| unavailable(e.to_string()));
                    act.on_outcome(slot, attempt, outcome, ctx);
                }),
        );
    }

    /// The execution record of attempt `attempt` of `slot`, started by `trigger`.
    fn record(
        &self,
        slot: i64,
        attempt: u32,
        trigger: Trigger,
        outcome: Outcome,
    ) -> ExecutionRecord {
        let lateness_ms = self.wire.as_ref().and_then(|w| w.lateness_ms);
        let (http_status, error, response_body) = match outcome.result {
            Ok(r) => (Some(r.status), None, Some(r.body)),
            Err(e) => (None, Some(e.to_string()), None),
        };
        ExecutionRecord {
            task_id: self.task_id,
            user_id: self.user_id,
            scheduled_ms: slot,
            attempt,
            http_status,
            error,
            duration_ms: outcome.duration_ms,
            response_body,
            created_at_ms: outcome.sent_at_ms,
            trigger,
            lateness_ms,
        }
    }

    fn push_log(&self, record: ExecutionRecord) {
        self.deps.persistence.push(Write::Log(Box::new(record)));
    }

    fn on_outcome(&mut self, slot: i64, attempt: u32, outcome: Outcome, ctx: &mut Context<Self>) {
        self.handle_outcome(slot, attempt, outcome, ctx);
        self.settle();
        self.next_deferred(ctx);
    }

    /// The execution before ended: sends the oldest slot that waited for it.
    fn next_deferred(&mut self, ctx: &mut Context<Self>) {
        if self.one_off {
            return self.one_off_over(ctx);
        }
        if self.draining {
            return;
        }
        if self.run.next_deferred().is_some() {
            self.start_execution(ctx);
        }
    }

    /// Draining: answers the waiters once nothing of this task is on its way.
    fn settle(&mut self) {
        if self.draining && !self.on_wire() {
            for w in self.drained.drain(..) {
                let _ = w.send(());
            }
        }
    }

    fn handle_outcome(
        &mut self,
        slot: i64,
        attempt: u32,
        outcome: Outcome,
        ctx: &mut Context<Self>,
    ) {
        if self.run.is_current(slot, attempt) {
            if let Some(w) = &mut self.wire {
                w.sending = false;
            }
        }
        let summary = attempt_outcome(&outcome);
        let trigger = match self.run.in_flight() {
            Some(f) if f.slot == slot && f.attempt == attempt => f.trigger(),
            _ => Trigger::Schedule,
        };
        let info = EventInfo::of(slot, attempt, &outcome);
        if attempt == 1 && self.run.is_current(slot, attempt) {
            if let Some(w) = &mut self.wire {
                w.lateness_ms = Some(outcome.sent_at_ms - slot);
            }
            if summary != AttemptOutcome::Cancelled {
                self.notify_lateness(outcome.sent_at_ms - slot, info.clone());
            }
        }
        let failures_before = self.run.progress().consecutive_failures;
        let verdict = self
            .run
            .on_outcome(slot, attempt, summary, rand::random::<f64>);
        if verdict == Verdict::Ignore {
            return;
        }
        if !matches!(verdict, Verdict::Retry { .. }) {
            self.notify_end(summary.is_success(), failures_before, info);
        }
        let task_id = self.task_id;
        match &outcome.result {
            Ok(r) if !summary.is_success() => {
                tracing::warn!(%task_id, scheduled_ms = slot, attempt, status = r.status, "execution attempt failed")
            }
            Err(e) => {
                tracing::warn!(%task_id, scheduled_ms = slot, attempt, error = %e, "execution attempt failed")
            }
            Ok(_) => {}
        }
        let record = self.record(slot, attempt, trigger, outcome);
        self.push_log(record);
        match verdict {
            Verdict::Ignore => {}
            Verdict::Retry {
                after_ms,
                capped_from,
            } => {
                if self.draining {
                    // Shutting down: the retry happens after the restart (the slot re-runs).
                    self.drop_in_flight(false);
                    return;
                }
                if let Some(asked) = capped_from {
                    tracing::warn!(%task_id, scheduled_ms = slot, attempt, retry_after_ms = asked, waiting_ms = MAX_RETRY_AFTER_MS, "Retry-After capped");
                }
                metrics::retry_scheduled();
                ctx.run_later(Duration::from_millis(after_ms), |act, ctx| {
                    if !act.run.is_ended() {
                        act.send_attempt(ctx);
                    }
                });
            }
            Verdict::Advance => {
                self.release_wire(false);
                self.advance();
            }
            Verdict::Complete => self.finish(TaskStatus::Completed, ctx),
            Verdict::Fail => self.finish(TaskStatus::Failed, ctx),
        }
    }

    fn advance(&self) {
        let p = self.run.progress();
        let task_id = self.task_id.to_string();
        self.deps.persistence.push(match self.one_off {
            // Paused: only the counters (its next run is its resume's to set).
            true => Write::Counted {
                task_id,
                execution_count: p.execution_count,
                consecutive_failures: p.consecutive_failures,
            },
            false => Write::Advance {
                task_id,
                next_run_time: p.next_run_time,
                execution_count: p.execution_count,
                consecutive_failures: p.consecutive_failures,
            },
        });
    }

    fn finish(&mut self, status: TaskStatus, ctx: &mut Context<Self>) {
        if self.run.is_ended() {
            return;
        }
        let dropped = self.run.finish();
        self.release_wire(dropped.is_some());
        self.advance();
        self.deps.persistence.push(Write::SetStatus {
            task_id: self.task_id.to_string(),
            from: match self.one_off {
                true => vec![TaskStatus::Paused],
                false => vec![TaskStatus::Pending, TaskStatus::Running],
            },
            to: status,
            expected_version: None,
            now: now_ms(),
        });
        self.status = status;
        match status {
            TaskStatus::Completed => self.notify_finished(Final::Completed),
            TaskStatus::Failed => self.notify_finished(Final::Failed),
            _ => {}
        }
        tracing::info!(task_id = %self.task_id, status = status.as_str(), executions = self.run.progress().execution_count, "task finished");
        self.deregister();
        if let Some(c) = &self.deps.cluster {
            c.dequeue(self.task_id);
        }
        if self.one_off {
            // Not in the registry's table of running tasks: it just stops.
            return ctx.stop();
        }
        metrics::sent(ActorKind::Registry);
        self.deps.registry.do_send(Finished {
            task_id: self.task_id,
        });
    }

    fn reload(&mut self, ctx: &mut Context<Self>) {
        let store = self.deps.store.clone();
        let task_id = self.task_id;
        ctx.wait(
            async move {
                match store.get_task(task_id).await {
                    Ok(Some(m)) => store.active_task(&m).map(Some).map_err(|e| e.to_string()),
                    Ok(None) => Ok(None),
                    Err(e) => Err(e.to_string()),
                }
            }
            .into_actor(self)
            .map(move |res, act, ctx| match res {
                Ok(Some(mut t)) if t.status.is_active() => {
                    act.request = outbound(&mut t, &act.deps.dispatcher);
                    act.notify = t.spec.notify.take().map(Arc::new);
                    act.user_id = t.spec.user_id;
                    act.status = t.status;
                    let (rules, progress) = run_parts(t, &act.deps);
                    act.run.reload(rules, progress);
                    act.start(ctx);
                }
                Ok(_) => {
                    act.run.stop();
                    metrics::sent(ActorKind::Registry);
                    act.deps.registry.do_send(Finished { task_id });
                }
                Err(e) => {
                    tracing::error!(%task_id, error = %e, "reloading task failed; retrying");
                    ctx.run_later(Duration::from_secs(1), |act, ctx| act.reload(ctx));
                }
            }),
        );
    }
}

impl Actor for TaskActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if self.run.is_ended() || self.one_off {
            return;
        }
        if self.reload {
            self.reload = false;
            self.reload(ctx);
        } else {
            self.start(ctx);
        }
    }
}

impl Supervised for TaskActor {
    fn restarting(&mut self, _: &mut Self::Context) {
        if self.run.is_ended() {
            // Stopped on purpose (finished or withdrawn) while an address was still held
            // elsewhere: not a failure; it stays inert until the last address goes.
            return;
        }
        metrics::restarted(ActorKind::Task);
        self.drop_in_flight(true);
        tracing::warn!(task_id = %self.task_id, "task actor restarting from storage");
        self.reload = true;
    }
}

impl Handler<Fire> for TaskActor {
    type Result = ();

    fn handle(&mut self, msg: Fire, ctx: &mut Self::Context) {
        let _m = metrics::handling(ActorKind::Task, "Fire");
        if self.draining || self.run.is_ended() || msg.generation != self.generation {
            return;
        }
        self.fire(msg.scheduled_ms, ctx);
    }
}

/// How often a fire held back by a lapsed lease looks at the lease again.
const FENCED_RECHECK: Duration = Duration::from_millis(50);

impl TaskActor {
    /// Cluster mode, cut off from ZooKeeper for too long: this node may no longer own the
    /// task, so `slot` is not sent now. If the lease comes back (ZooKeeper answered within
    /// the session), `slot` and every slot due since are sent, each once (a blip shorter than
    /// the session timeout loses nothing); if the session was lost, the actor is released
    /// first and its new owner runs it.
    fn hold_fenced(&mut self, slot: i64, ctx: &mut Context<Self>) {
        let generation = self.generation;
        ctx.run_later(FENCED_RECHECK, move |act, ctx| {
            if act.run.is_ended() || act.draining || act.generation != generation {
                return;
            }
            if act.may_fire() {
                // Every slot held back is sent, this one first; the ones due since follow
                // it one after the other (they wait for it).
                act.run.missed_until(now_ms());
                let turn = act.deps.pacer.turn();
                act.fire_later(slot, turn, ctx);
            } else {
                act.hold_fenced(slot, ctx);
            }
        });
    }

    fn fire(&mut self, slot: i64, ctx: &mut Context<Self>) {
        if !self.may_fire() {
            tracing::debug!(task_id = %self.task_id, scheduled_ms = slot, "not fired yet: this node's cluster lease lapsed");
            metrics::fire("fenced");
            return self.hold_fenced(slot, ctx);
        }
        let decision = self.run.on_fire(slot);
        match decision.action {
            FireAction::Execute { .. } => self.start_execution(ctx),
            FireAction::Defer { behind } => {
                // Behind a catch-up (late on purpose, not slow): sent once it ends.
                tracing::debug!(task_id = %self.task_id, scheduled_ms = slot, in_flight = behind, "fire waits for the catch-up in flight");
            }
            FireAction::Skip { in_flight } => {
                tracing::warn!(task_id = %self.task_id, scheduled_ms = slot, in_flight, "fire skipped: previous execution still in flight");
                metrics::fire("skipped_overlap");
                self.push_log(ExecutionRecord::skipped_overlap(
                    self.task_id,
                    self.user_id,
                    slot,
                    now_ms(),
                ));
            }
        }
        if let Some(n) = decision.next {
            self.register(n, ctx);
        }
    }

    /// Starts the execution the run just put in flight (nothing else was).
    fn start_execution(&mut self, ctx: &mut Context<Self>) {
        let Some(current) = self.run.in_flight() else {
            return;
        };
        if self.status == TaskStatus::Pending {
            self.status = TaskStatus::Running;
            self.deps.persistence.push(Write::SetStatus {
                task_id: self.task_id.to_string(),
                from: vec![TaskStatus::Pending],
                to: TaskStatus::Running,
                expected_version: None,
                now: now_ms(),
            });
        }
        self.wire = Some(Wire {
            cancel: CancellationToken::new(),
            sending: false,
            throttled: false,
            lateness_ms: None,
        });
        match self.deps.cluster.clone() {
            None => self.send_attempt(ctx),
            // Cluster mode: only the node that takes the slot's guard sends it.
            Some(guard) => {
                let task_id = self.task_id;
                let slot = current.slot;
                // On its way: a drain or a hand-over waits for it rather than drop a slot
                // whose guard this node may already hold.
                if let Some(w) = &mut self.wire {
                    w.sending = true;
                }
                ctx.spawn(
                    async move { guard.take_guard(task_id, slot).await }
                        .into_actor(self)
                        .map(move |taken, act, ctx| act.guarded(slot, taken, ctx)),
                );
            }
        }
    }
}

impl TaskActor {
    /// Whether this node may fire now (always, outside cluster mode).
    fn may_fire(&self) -> bool {
        self.deps
            .cluster
            .as_ref()
            .is_none_or(|g| g.valid_for(self.session))
    }

    /// The guard of `slot` was asked for: send it if taken (or if Redis could not say).
    fn guarded(
        &mut self,
        slot: i64,
        taken: Result<bool, super::fence::FenceError>,
        ctx: &mut Context<Self>,
    ) {
        if self.run.is_ended() || !self.run.is_current(slot, 1) {
            return;
        }
        match taken {
            Ok(true) => self.send_attempt(ctx),
            Ok(false) => {
                // Sent already, by another node during a hand-over or by an earlier run.
                tracing::debug!(task_id = %self.task_id, scheduled_ms = slot, "slot already sent elsewhere; not sent again");
                metrics::fire("guard_taken");
                self.drop_in_flight(false);
                self.settle();
                self.next_deferred(ctx);
            }
            Err(e) => {
                // Redis is a second line of defence: the slot is not missed for its sake.
                tracing::warn!(task_id = %self.task_id, scheduled_ms = slot, error = %e, "fire guard unavailable; sending anyway");
                metrics::fire("guard_unavailable");
                self.send_attempt(ctx);
            }
        }
    }
}

/// Cluster mode: puts the task's next run in its partition's queue again (the queue is being
/// rebuilt after Redis lost it).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Requeue;

impl Handler<Requeue> for TaskActor {
    type Result = ();

    fn handle(&mut self, _: Requeue, _: &mut Self::Context) {
        let _m = metrics::handling(ActorKind::Task, "Requeue");
        if let (false, Some(c), Some(at)) = (
            self.run.is_ended(),
            &self.deps.cluster,
            self.run.progress().next_run_time,
        ) {
            c.queue_next(self.task_id, at);
        }
    }
}
