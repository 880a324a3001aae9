//! TaskActor: one per pending or running task. It owns the task's runtime state — the next
//! slot, the execution in flight, its attempt and counters — registers each next slot with the
//! wheel, runs each execution through its HTTP worker (retrying with backoff), applies the stop
//! conditions and sends every change to the persistence actor.
//!
//! Supervised: if it stops while the registry still holds it, it is restarted and reloads its
//! task from storage.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_web::web::Bytes;
use entities::task_logs;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::dispatch::{Dispatcher, ExecError, Execute, OutboundRequest, Outcome, Prepared};
use super::outbox::Outbox;
use super::wheel::{Deregister, Fire, Register, WheelOp};
use crate::domain::{backoff_delay_ms, TaskStatus, TaskType};
use crate::metrics::{self, ActorKind};
use crate::store::{ActiveTask, Store, Write};
use crate::time::now_ms;
use ratelimit::TryWaitError;

static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

/// The longest a 429/503 `Retry-After` makes a retry wait (one hour). A server may ask for
/// more; the retry then comes after this (the execution in flight blocks the task's next fires
/// meanwhile, so an unbounded wait would stall the task for good).
pub const MAX_RETRY_AFTER_MS: u64 = 60 * 60 * 1000;

/// Tells the registry that a task reached a final state and its actor can go.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Finished {
    pub task_id: Uuid,
}

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

/// Spreads catch-up fires — the fires a task owes after a take-over, a restart or a lapse of
/// the cluster lease — over time instead of sending them in one burst, so that the on-time
/// fires of the node's other tasks are not queued behind them: one every [`CATCH_UP_SPACING`],
/// none held back longer than [`CATCH_UP_MAX_DELAY`] (beyond that they go as they come).
#[derive(Debug, Default)]
pub struct CatchUpPacer {
    /// Epoch microseconds of the next free turn.
    next_us: AtomicI64,
}

/// The distance between two paced catch-up fires.
pub const CATCH_UP_SPACING: Duration = Duration::from_micros(1000);
/// How long a catch-up fire waits for its turn at most.
pub const CATCH_UP_MAX_DELAY: Duration = Duration::from_millis(500);

impl CatchUpPacer {
    /// Takes the next turn: how long to wait for it.
    pub fn turn(&self) -> Duration {
        let now = now_ms().saturating_mul(1000);
        let spacing = CATCH_UP_SPACING.as_micros() as i64;
        let max = CATCH_UP_MAX_DELAY.as_micros() as i64;
        let mut current = self.next_us.load(Ordering::Relaxed);
        loop {
            let at = current.max(now);
            if at - now >= max {
                // Over the limit: no turn is taken; it goes at the latest allowed moment.
                return Duration::from_micros(max as u64);
            }
            match self.next_us.compare_exchange_weak(
                current,
                at + spacing,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Duration::from_micros((at - now) as u64),
                Err(seen) => current = seen,
            }
        }
    }
}

/// How many slots may wait behind a catch-up fire in flight before further ones are skipped.
const MAX_DEFERRED: usize = 16;

struct InFlight {
    slot: i64,
    attempt: u32,
    cancel: CancellationToken,
    /// A request is on the wire (rather than waiting out a retry backoff or for a token).
    sending: bool,
    /// This attempt was held back by its destination's token bucket (counted once).
    throttled: bool,
    /// Fired late on purpose (a catch-up, or held back by a lapsed cluster lease): a slot
    /// that comes due meanwhile waits for it (in `deferred`) rather than being skipped.
    catch_up: bool,
}

/// Shutdown: stop firing, and answer once no request of this task is on the wire. An
/// execution waiting for a retry is not continued; its slot was not advanced, so it runs
/// again after the restart.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drain;

pub struct TaskActor {
    deps: Arc<TaskDeps>,
    /// Cluster mode: the ZooKeeper session this actor was started under; it fires only
    /// while that session lasts.
    session: u64,
    task: ActiveTask,
    request: Arc<OutboundRequest>,
    generation: u64,
    in_flight: Option<InFlight>,
    /// Slots that came due while a catch-up fire was in flight, oldest first: each is sent
    /// once the execution before it ended.
    deferred: VecDeque<i64>,
    /// Slots at or before this (epoch ms) were missed while this task could not fire here: the
    /// ones fired for them are catch-ups.
    late_until: i64,
    /// Taken over from another node at this moment (epoch ms): every slot due from then on is
    /// sent; the ones before it, missed while no node ran the task, are coalesced into one
    /// fire (the misfire rule).
    catch_up_from: Option<i64>,
    ended: bool,
    reload: bool,
    draining: bool,
    drained: Vec<tokio::sync::oneshot::Sender<()>>,
}

/// Builds what is sent for `task`, moving the headers and body out of its spec: the actor
/// keeps them only in their ready-to-send form (the API reads definitions from storage), so
/// an idle task holds one copy.
fn outbound(task: &mut ActiveTask, dispatcher: &Dispatcher) -> Arc<OutboundRequest> {
    let task_id = task.task_id;
    let spec = &mut task.spec;
    let headers = std::mem::take(&mut spec.headers);
    let body = spec.body.take();
    Arc::new(OutboundRequest {
        task_id,
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

impl TaskActor {
    pub fn new(deps: Arc<TaskDeps>, mut task: ActiveTask) -> Self {
        let request = outbound(&mut task, &deps.dispatcher);
        let session = deps.cluster.as_ref().map_or(0, |c| c.session());
        Self {
            deps,
            session,
            task,
            request,
            generation: 0,
            in_flight: None,
            deferred: VecDeque::new(),
            late_until: i64::MIN,
            catch_up_from: None,
            ended: false,
            reload: false,
            draining: false,
            drained: Vec::new(),
        }
    }

    /// A task taken over from another node at `at_ms` (see `catch_up_from`).
    pub fn taken_over_at(mut self, at_ms: Option<i64>) -> Self {
        self.catch_up_from = at_ms;
        self
    }

    fn max_retries(&self) -> u32 {
        self.task
            .spec
            .retry
            .max_retries
            .unwrap_or(self.deps.default_max_retries)
    }

    fn backoff_ms(&self) -> u64 {
        self.task
            .spec
            .retry
            .backoff_ms
            .unwrap_or(self.deps.default_backoff_ms)
    }

    fn end_ms(&self) -> Option<i64> {
        self.task
            .spec
            .stop_condition
            .end_time
            .map(|t| t.timestamp_millis())
    }

    /// The slot after `slot`, unless it falls after `end_time`.
    fn following(&self, slot: i64) -> Option<i64> {
        let next = self.task.schedule.next_after(slot)?;
        match self.end_ms() {
            Some(end) if next > end => None,
            _ => Some(next),
        }
    }

    fn register(&mut self, at_ms: i64, ctx: &mut Context<Self>) {
        // Unique across actors, so an old actor of the same task can never cancel a newer
        // one's timer.
        self.generation = NEXT_GENERATION.fetch_add(1, Ordering::Relaxed);
        let recipient = ctx.address().downgrade();
        if let Some(c) = &self.deps.cluster {
            c.queue_next(self.task.task_id, at_ms);
        }
        self.deps.wheel.push(WheelOp::Register(Register {
            task_id: self.task.task_id,
            at_ms,
            generation: self.generation,
            recipient,
        }));
    }

    /// Puts the task's next slot on the wheel: its due slot, or if that is overdue a paced
    /// catch-up fire for the latest slot missed (the misfire rule) — after a take-over, the
    /// latest missed before the take-over, then every slot due since, one after the other.
    fn schedule_from_state(&mut self, ctx: &mut Context<Self>) {
        let now = now_ms();
        let due = match self.task.next_run_time {
            Some(t) => t,
            None => match self.task.schedule.first_run(now) {
                Some(t) => t,
                None => return self.finish(TaskStatus::Completed, ctx),
            },
        };
        if let Some(end) = self.end_ms() {
            if due > end {
                return self.finish(TaskStatus::Completed, ctx);
            }
        }
        if due >= now {
            self.task.next_run_time = Some(due);
            self.register(due, ctx);
            return;
        }
        let coalesce_until = self.catch_up_from.map_or(now, |from| from.min(now));
        let slot = self.task.schedule.latest_due(due, coalesce_until);
        self.task.next_run_time = Some(slot);
        self.late_until = now;
        let turn = self.deps.pacer.turn();
        self.fire_later(slot, turn, ctx);
    }

    /// Fires `slot` (overdue) after `wait`, unless the task is registered anew meanwhile.
    fn fire_later(&mut self, slot: i64, wait: Duration, ctx: &mut Context<Self>) {
        self.generation = NEXT_GENERATION.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = &self.deps.cluster {
            c.queue_next(self.task.task_id, slot);
        }
        let generation = self.generation;
        ctx.run_later(wait, move |act, ctx| {
            if act.ended || act.draining || act.generation != generation {
                return;
            }
            act.fire(slot, ctx);
        });
    }

    fn send_attempt(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight.is_some() && !self.may_fire() {
            // The lease lapsed after the fire (its guard may be this node's): held until the
            // lease is back, not dropped; a drain or release ends the wait (not on the wire).
            if let Some(f) = &mut self.in_flight {
                f.sending = false;
                f.catch_up = true;
            }
            self.settle();
            let lost = self
                .deps
                .cluster
                .as_ref()
                .is_some_and(|c| c.session() != self.session);
            if lost {
                // The session is gone: another node runs the task now.
                self.in_flight = None;
                return;
            }
            ctx.run_later(FENCED_RECHECK, |act, ctx| {
                if !act.ended && !act.draining {
                    act.send_attempt(ctx);
                }
            });
            return;
        }
        let Some(f) = &mut self.in_flight else { return };
        if let Some(limiter) = &self.request.limiter {
            if let Err(TryWaitError::Insufficient(wait)) = limiter.try_wait() {
                // Over the destination's rate: wait for a token, never drop the call. Not on
                // the wire yet, so a shutdown does not wait for it (the slot runs again after
                // the restart).
                if !f.throttled {
                    f.throttled = true;
                    metrics::fire("rate_limited_delay");
                }
                f.sending = false;
                if self.draining {
                    // Stopping: not waited for (the slot re-runs after a restart; after a
                    // hand-over it is lost if this node held its guard).
                    self.in_flight = None;
                    self.settle();
                    return;
                }
                ctx.run_later(wait, |act, ctx| {
                    if !act.ended && !act.draining {
                        act.send_attempt(ctx);
                    }
                });
                return;
            }
        }
        f.sending = true;
        f.throttled = false;
        let (slot, attempt) = (f.slot, f.attempt);
        let exec = Execute {
            request: self.request.clone(),
            scheduled_ms: slot,
            attempt,
            cancel: f.cancel.clone(),
        };
        tracing::debug!(task_id = %self.task.task_id, scheduled_ms = slot, attempt, "executing");
        let Some(worker) = self.deps.dispatcher.worker(self.task.task_id) else {
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

    fn log(&self, slot: i64, attempt: u32, outcome: &Outcome) {
        let (http_status, error, body) = match &outcome.result {
            Ok(r) => (Some(i32::from(r.status)), None, Some(r.body.clone())),
            Err(e) => (None, Some(e.to_string()), None),
        };
        self.push_log(task_logs::Model {
            http_status,
            error,
            duration_ms: outcome.duration_ms,
            response_body: body,
            created_at: outcome.sent_at_ms,
            ..self.log_row(slot, attempt)
        });
    }

    /// A log row of this task for `slot`'s attempt `attempt` (0: not sent), with nothing
    /// recorded yet.
    fn log_row(&self, slot: i64, attempt: u32) -> task_logs::Model {
        task_logs::Model {
            log_id: Uuid::now_v7().to_string(),
            user_id: self.task.spec.user_id,
            task_id: self.task.task_id.to_string(),
            scheduled_time: slot,
            attempt: attempt as i32,
            http_status: None,
            error: None,
            duration_ms: 0,
            response_body: None,
            created_at: now_ms(),
        }
    }

    fn push_log(&self, row: task_logs::Model) {
        self.deps.persistence.push(Write::Log(Box::new(row)));
    }

    fn on_outcome(&mut self, slot: i64, attempt: u32, outcome: Outcome, ctx: &mut Context<Self>) {
        self.handle_outcome(slot, attempt, outcome, ctx);
        self.settle();
        self.next_deferred(ctx);
    }

    /// The execution before ended: sends the oldest slot that waited for it.
    fn next_deferred(&mut self, ctx: &mut Context<Self>) {
        if self.ended || self.draining || self.in_flight.is_some() {
            return;
        }
        if let Some(slot) = self.deferred.pop_front() {
            self.execute(slot, true, ctx);
        }
    }

    /// Draining: answers the waiters once nothing of this task is on its way.
    fn settle(&mut self) {
        if self.draining && self.in_flight.as_ref().is_none_or(|f| !f.sending) {
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
        if let Some(f) = &mut self.in_flight {
            if f.slot == slot && f.attempt == attempt {
                f.sending = false;
            }
        }
        if self.ended {
            return;
        }
        match &self.in_flight {
            Some(f) if f.slot == slot && f.attempt == attempt => {}
            _ => return,
        }
        if matches!(outcome.result, Err(ExecError::Cancelled)) {
            return;
        }
        self.log(slot, attempt, &outcome);
        let task_id = self.task.task_id;
        let success = matches!(&outcome.result, Ok(r) if (200..300).contains(&r.status));
        if success {
            self.in_flight = None;
            self.task.execution_count += 1;
            self.task.consecutive_failures = 0;
            // Evaluated by the worker, off this arbiter.
            let matched = matches!(&outcome.result, Ok(r) if r.stop_matched);
            let stop = &self.task.spec.stop_condition;
            let done = matched
                || stop
                    .max_cnt
                    .is_some_and(|m| self.task.execution_count >= m as i64)
                || self.task.spec.task_type == TaskType::Once
                || self.task.next_run_time.is_none();
            if done {
                return self.finish(TaskStatus::Completed, ctx);
            }
            return self.advance();
        }

        match &outcome.result {
            Ok(r) => {
                tracing::warn!(%task_id, scheduled_ms = slot, attempt, status = r.status, "execution attempt failed")
            }
            Err(e) => {
                tracing::warn!(%task_id, scheduled_ms = slot, attempt, error = %e, "execution attempt failed")
            }
        }
        if attempt <= self.max_retries() {
            if self.draining {
                // Shutting down: the retry happens after the restart (the slot re-runs).
                self.in_flight = None;
                return;
            }
            let mut delay = backoff_delay_ms(self.backoff_ms(), attempt, rand::random::<f64>());
            if let Ok(r) = &outcome.result {
                if matches!(r.status, 429 | 503) {
                    if let Some(asked) = r.retry_after_ms {
                        if asked > MAX_RETRY_AFTER_MS {
                            tracing::warn!(%task_id, scheduled_ms = slot, attempt, retry_after_ms = asked, waiting_ms = MAX_RETRY_AFTER_MS, "Retry-After capped");
                        }
                        delay = delay.max(asked.min(MAX_RETRY_AFTER_MS));
                    }
                }
            }
            if let Some(f) = &mut self.in_flight {
                f.attempt += 1;
            }
            metrics::retry_scheduled();
            ctx.run_later(Duration::from_millis(delay), |act, ctx| {
                if !act.ended {
                    act.send_attempt(ctx);
                }
            });
            return;
        }
        // The execution failed after its last retry.
        self.in_flight = None;
        self.task.execution_count += 1;
        self.task.consecutive_failures += 1;
        let stop = &self.task.spec.stop_condition;
        if self.task.spec.task_type == TaskType::Once
            || stop
                .max_failures
                .is_some_and(|m| self.task.consecutive_failures >= i64::from(m))
        {
            return self.finish(TaskStatus::Failed, ctx);
        }
        if stop
            .max_cnt
            .is_some_and(|m| self.task.execution_count >= m as i64)
            || self.task.next_run_time.is_none()
        {
            return self.finish(TaskStatus::Completed, ctx);
        }
        self.advance();
    }

    fn advance(&self) {
        self.deps.persistence.push(Write::Advance {
            task_id: self.task.task_id.to_string(),
            next_run_time: self.task.next_run_time,
            execution_count: self.task.execution_count,
            consecutive_failures: self.task.consecutive_failures,
        });
    }

    fn finish(&mut self, status: TaskStatus, ctx: &mut Context<Self>) {
        if self.ended {
            return;
        }
        self.ended = true;
        if let Some(f) = self.in_flight.take() {
            f.cancel.cancel();
        }
        self.task.next_run_time = None;
        self.advance();
        self.deps.persistence.push(Write::SetStatus {
            task_id: self.task.task_id.to_string(),
            from: vec![TaskStatus::Pending, TaskStatus::Running],
            to: status,
            expected_version: None,
            now: now_ms(),
        });
        self.task.status = status;
        tracing::info!(task_id = %self.task.task_id, status = status.as_str(), executions = self.task.execution_count, "task finished");
        self.deps.wheel.push(WheelOp::Deregister(Deregister {
            task_id: self.task.task_id,
            generation: self.generation,
        }));
        if let Some(c) = &self.deps.cluster {
            c.dequeue(self.task.task_id);
        }
        metrics::sent(ActorKind::Registry);
        self.deps.registry.do_send(Finished {
            task_id: self.task.task_id,
        });
        let _ = ctx;
    }

    fn reload(&mut self, ctx: &mut Context<Self>) {
        let store = self.deps.store.clone();
        let task_id = self.task.task_id;
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
                    act.task = t;
                    act.schedule_from_state(ctx);
                }
                Ok(_) => {
                    act.ended = true;
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
        if self.ended {
            return;
        }
        if self.reload {
            self.reload = false;
            self.reload(ctx);
        } else {
            self.schedule_from_state(ctx);
        }
    }
}

impl Supervised for TaskActor {
    fn restarting(&mut self, _: &mut Self::Context) {
        if self.ended {
            // Stopped on purpose (finished or withdrawn) while an address was still held
            // elsewhere: not a failure; it stays inert until the last address goes.
            return;
        }
        metrics::restarted(ActorKind::Task);
        if let Some(f) = self.in_flight.take() {
            f.cancel.cancel();
        }
        if !self.ended {
            tracing::warn!(task_id = %self.task.task_id, "task actor restarting from storage");
            self.reload = true;
        }
    }
}

impl Handler<Fire> for TaskActor {
    type Result = ();

    fn handle(&mut self, msg: Fire, ctx: &mut Self::Context) {
        let _m = metrics::handling(ActorKind::Task, "Fire");
        if self.draining || self.ended || msg.generation != self.generation {
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
            if act.ended || act.draining || act.generation != generation {
                return;
            }
            if act.may_fire() {
                // Every slot held back is sent, this one first; the ones due since follow
                // it one after the other (they wait for it in `deferred`).
                act.late_until = now_ms();
                let turn = act.deps.pacer.turn();
                act.fire_later(slot, turn, ctx);
            } else {
                act.hold_fenced(slot, ctx);
            }
        });
    }

    fn fire(&mut self, slot: i64, ctx: &mut Context<Self>) {
        if !self.may_fire() {
            tracing::debug!(task_id = %self.task.task_id, scheduled_ms = slot, "not fired yet: this node's cluster lease lapsed");
            metrics::fire("fenced");
            return self.hold_fenced(slot, ctx);
        }
        let next = self.following(slot);
        self.task.next_run_time = next;
        if let Some(f) = &self.in_flight {
            if f.catch_up && self.deferred.len() < MAX_DEFERRED {
                // Behind a catch-up (late on purpose, not slow): sent once it ends.
                tracing::debug!(task_id = %self.task.task_id, scheduled_ms = slot, in_flight = f.slot, "fire waits for the catch-up in flight");
                self.deferred.push_back(slot);
            } else {
                tracing::warn!(task_id = %self.task.task_id, scheduled_ms = slot, in_flight = f.slot, "fire skipped: previous execution still in flight");
                metrics::fire("skipped_overlap");
                self.push_log(task_logs::Model {
                    error: Some("skipped: previous execution still in flight".into()),
                    ..self.log_row(slot, 0)
                });
            }
            if let Some(n) = next {
                self.register(n, ctx);
            }
            return;
        }
        let catch_up = slot <= self.late_until;
        self.execute(slot, catch_up, ctx);
        if let Some(n) = next {
            self.register(n, ctx);
        }
    }

    /// Starts the execution of `slot` (nothing else is in flight).
    fn execute(&mut self, slot: i64, catch_up: bool, ctx: &mut Context<Self>) {
        if self.task.status == TaskStatus::Pending {
            self.task.status = TaskStatus::Running;
            self.deps.persistence.push(Write::SetStatus {
                task_id: self.task.task_id.to_string(),
                from: vec![TaskStatus::Pending],
                to: TaskStatus::Running,
                expected_version: None,
                now: now_ms(),
            });
        }
        self.in_flight = Some(InFlight {
            slot,
            attempt: 1,
            cancel: CancellationToken::new(),
            sending: false,
            throttled: false,
            catch_up,
        });
        match self.deps.cluster.clone() {
            None => self.send_attempt(ctx),
            // Cluster mode: only the node that takes the slot's guard sends it.
            Some(guard) => {
                let task_id = self.task.task_id;
                // On its way: a drain or a hand-over waits for it rather than drop a slot
                // whose guard this node may already hold.
                if let Some(f) = &mut self.in_flight {
                    f.sending = true;
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
        match &self.in_flight {
            Some(f) if f.slot == slot && f.attempt == 1 && !self.ended => {}
            _ => return,
        }
        match taken {
            Ok(true) => self.send_attempt(ctx),
            Ok(false) => {
                // Sent already, by another node during a hand-over or by an earlier run.
                tracing::debug!(task_id = %self.task.task_id, scheduled_ms = slot, "slot already sent elsewhere; not sent again");
                metrics::fire("guard_taken");
                self.in_flight = None;
                self.settle();
                self.next_deferred(ctx);
            }
            Err(e) => {
                // Redis is a second line of defence: the slot is not missed for its sake.
                tracing::warn!(task_id = %self.task.task_id, scheduled_ms = slot, error = %e, "fire guard unavailable; sending anyway");
                metrics::fire("guard_unavailable");
                self.send_attempt(ctx);
            }
        }
    }
}

impl Handler<Redefine> for TaskActor {
    type Result = ();

    fn handle(&mut self, msg: Redefine, ctx: &mut Self::Context) {
        let _m = metrics::handling(ActorKind::Task, "Redefine");
        if self.ended {
            return;
        }
        let mut new = *msg.task;
        self.request = outbound(&mut new, &self.deps.dispatcher);
        self.task.spec = new.spec;
        self.task.schedule = new.schedule;
        if msg.reschedule {
            self.deferred.clear();
            self.task.next_run_time = new.next_run_time;
            match new.next_run_time {
                Some(at) => self.register(at, ctx),
                None => {
                    self.deps.wheel.push(WheelOp::Deregister(Deregister {
                        task_id: self.task.task_id,
                        generation: self.generation,
                    }));
                    if self.in_flight.is_none() {
                        self.finish(TaskStatus::Completed, ctx);
                    }
                }
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
        if let (false, Some(c), Some(at)) =
            (self.ended, &self.deps.cluster, self.task.next_run_time)
        {
            c.queue_next(self.task.task_id, at);
        }
    }
}

impl Handler<Stop> for TaskActor {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Self::Context) {
        let _m = metrics::handling(ActorKind::Task, "Stop");
        self.ended = true;
        if let Some(f) = self.in_flight.take() {
            f.cancel.cancel();
        }
        self.deps.wheel.push(WheelOp::Deregister(Deregister {
            task_id: self.task.task_id,
            generation: self.generation,
        }));
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
        self.deps.wheel.push(WheelOp::Deregister(Deregister {
            task_id: self.task.task_id,
            generation: self.generation,
        }));
        match &self.in_flight {
            Some(f) if f.sending => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                self.drained.push(tx);
                Box::pin(async move {
                    let _ = rx.await;
                })
            }
            Some(f) => {
                // Waiting out a backoff: do not start the next attempt.
                f.cancel.cancel();
                self.in_flight = None;
                Box::pin(async {})
            }
            None => Box::pin(async {}),
        }
    }
}

fn unavailable(why: String) -> Outcome {
    Outcome {
        sent_at_ms: now_ms(),
        duration_ms: 0,
        result: Err(ExecError::Unavailable(why)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_catch_ups_is_spread_out_and_none_waits_longer_than_the_limit() {
        let pacer = CatchUpPacer::default();
        let start = std::time::Instant::now();
        let waits: Vec<Duration> = (0..1000).map(|_| pacer.turn()).collect();
        let took = start.elapsed();
        // One turn per spacing from now on (less the time the calls took)...
        assert!(waits[0] < Duration::from_millis(5), "{:?}", waits[0]);
        assert!(
            waits[100] + took >= CATCH_UP_SPACING * 99,
            "{:?}",
            waits[100]
        );
        // ...and past the limit they go at the latest allowed moment.
        assert!(waits.iter().all(|w| *w <= CATCH_UP_MAX_DELAY));
        assert_eq!(waits[999], CATCH_UP_MAX_DELAY);
    }
}
