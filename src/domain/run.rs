//! One task's run: the rules that decide what happens when the task starts, when one of its
//! slots comes due and when an attempt ends — retry and its delay (`Retry-After` included),
//! completion, failure, `end_time`, misfire coalescing and overlap.
//!
//! These rules are the product, so they live here as plain data and pure methods, with time
//! and the jitter passed in: every rule is unit-tested without a clock or an actor. The task
//! actor owns a [`TaskRun`] and only carries out what it decides (registering with the wheel,
//! sending, persisting, waiting).

use std::collections::VecDeque;

use uuid::Uuid;

use super::{backoff_delay_ms, MisfirePolicy, Schedule, TaskSpec, TaskType};

/// The longest a 429/503 `Retry-After` makes a retry wait (one hour). A server may ask for
/// more; the retry then comes after this (the execution in flight blocks the task's next fires
/// meanwhile, so an unbounded wait would stall the task for good).
pub const MAX_RETRY_AFTER_MS: u64 = 60 * 60 * 1000;

/// How many slots may wait behind a catch-up fire in flight before further ones are skipped.
pub const MAX_DEFERRED: usize = 16;

/// What the log says of a slot that was not sent because the one before was still running.
pub const SKIPPED_OVERLAP: &str = "skipped: previous execution still in flight";

/// How many missed cron slots one restart counts at most (they are walked one by one; an
/// interval's are counted exactly, whatever their number). A per-second cron down for more
/// than a few hours counts this many.
pub const MAX_COUNTED_MISSES: u64 = 10_000;

/// The node's retry settings, for tasks that do not set their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryDefaults {
    pub max_retries: u32,
    pub backoff_ms: u64,
}

/// What the rules read of a task's definition, with the retry defaults resolved.
#[derive(Clone, Debug)]
pub struct RunRules {
    pub schedule: Schedule,
    pub task_type: TaskType,
    /// `stop_condition.end_time` (epoch ms): no slot after it runs.
    pub end_ms: Option<i64>,
    pub max_cnt: Option<u64>,
    pub max_failures: Option<u32>,
    pub max_retries: u32,
    pub backoff_ms: u64,
    pub misfire_policy: MisfirePolicy,
}

impl RunRules {
    pub fn of(spec: &TaskSpec, schedule: Schedule, defaults: RetryDefaults) -> Self {
        let stop = &spec.stop_condition;
        Self {
            schedule,
            task_type: spec.task_type,
            end_ms: stop.end_time.map(|t| t.timestamp_millis()),
            max_cnt: stop.max_cnt,
            max_failures: stop.max_failures,
            max_retries: spec.retry.max_retries.unwrap_or(defaults.max_retries),
            backoff_ms: spec.retry.backoff_ms.unwrap_or(defaults.backoff_ms),
            misfire_policy: spec.misfire_policy,
        }
    }

    /// Whether `execution_count` executions reach `max_cnt`.
    fn count_reached(&self, execution_count: i64) -> bool {
        self.max_cnt.is_some_and(|m| execution_count >= m as i64)
    }
}

/// The stored part of a task's run state: what survives a restart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub next_run_time: Option<i64>,
    pub execution_count: i64,
    pub consecutive_failures: i64,
    /// Slots missed while the task could not fire, in all: with `fire_once`, the ones its
    /// catch-up fire stood in for (all but the one it was fired for); with `skip`, all.
    pub missed_slots: i64,
}

/// The execution in flight: a slot and its current attempt (numbered from 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub slot: i64,
    pub attempt: u32,
    /// Fired late on purpose (a catch-up, or held back by a lapsed cluster lease): a slot
    /// that comes due meanwhile waits for it rather than being skipped.
    pub catch_up: bool,
    /// Asked for by a user (run now), outside the schedule: `slot` is the moment of the
    /// request, and the execution moves no scheduled slot.
    pub manual: bool,
}

impl Attempt {
    /// What started this execution, as its log rows say.
    pub fn trigger(&self) -> Trigger {
        if self.manual {
            Trigger::Manual
        } else if self.catch_up {
            Trigger::CatchUp
        } else {
            Trigger::Schedule
        }
    }
}

/// What started an execution (README, "The API": each log row's `trigger`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Its slot came due.
    Schedule,
    /// A user asked for it (run now).
    Manual,
    /// Fired late on purpose: for slots missed while the task could not fire, or held back
    /// behind such a fire.
    CatchUp,
}

impl Trigger {
    pub const ALL: [Trigger; 3] = [Trigger::Schedule, Trigger::Manual, Trigger::CatchUp];

    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
            Trigger::CatchUp => "catch_up",
        }
    }

    /// The wire name, exactly as `as_str` writes it.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// What to do when the task (re)starts on this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartDecision {
    /// Wait for the due slot (epoch ms).
    Register(i64),
    /// The due slot is overdue: fire once, now, for this slot (the latest one missed).
    CatchUp(i64),
    /// The due slot is overdue and the task's misfire policy is `skip`: none of the `skipped`
    /// slots up to `latest` is fired (one log row says so); the task goes on at `next`, or
    /// completes if none is left before `end_time`.
    SkipMissed {
        latest: i64,
        skipped: u64,
        next: Option<i64>,
    },
    /// Nothing left to run (no next slot, or the next one is after `end_time`).
    Complete,
}

/// Why a manual run (run now) was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManualRefusal {
    /// An execution of the task (of slot `slot`, scheduled or manual) is still in flight.
    InFlight { slot: i64 },
    /// The task has ended: nothing more runs.
    Ended,
}

/// What to do when a slot comes due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FireDecision {
    pub action: FireAction,
    /// The slot to register next, if any is left before `end_time`.
    pub next: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FireAction {
    /// Send it: it is now the execution in flight, attempt 1.
    Execute { catch_up: bool },
    /// It waits behind the catch-up fire of slot `behind`, still in flight.
    Defer { behind: i64 },
    /// Not sent: the execution of slot `in_flight` is still running (logged as skipped).
    Skip { in_flight: i64 },
}

/// How an attempt ended, as far as the rules care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The server answered.
    Replied {
        status: u16,
        /// A `Retry-After` as the server asked (uncapped).
        retry_after_ms: Option<u64>,
        /// A 2xx reply whose body met every response match of the stop condition.
        stop_matched: bool,
    },
    /// No answer (timeout, connection or request error, no worker).
    Failed,
    /// Aborted on purpose: nothing to decide.
    Cancelled,
}

impl AttemptOutcome {
    pub fn is_success(&self) -> bool {
        matches!(self, AttemptOutcome::Replied { status, .. } if (200..300).contains(status))
    }
}

/// What follows an attempt's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not about the execution in flight (or cancelled, or the task ended): nothing to do.
    Ignore,
    /// Failed with retries left: send attempt + 1 after `after_ms`.
    Retry {
        after_ms: u64,
        /// The server asked for this longer `Retry-After`, cut to [`MAX_RETRY_AFTER_MS`].
        capped_from: Option<u64>,
    },
    /// The execution is over and the task goes on: persist the new progress.
    Advance,
    /// The task is done.
    Complete,
    /// The task failed (`max_failures`, or a once task failing after its last retry).
    Fail,
}

/// What a reschedule (a patch that moves the next run) leaves to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rescheduled {
    Register(i64),
    /// No run left: withdraw from the wheel; complete the task unless an execution is in
    /// flight (its outcome decides).
    Withdraw {
        complete: bool,
    },
}

/// One task's run state and its rules.
#[derive(Clone, Debug)]
pub struct TaskRun {
    rules: RunRules,
    progress: Progress,
    in_flight: Option<Attempt>,
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
}

impl TaskRun {
    pub fn new(rules: RunRules, progress: Progress) -> Self {
        Self {
            rules,
            progress,
            in_flight: None,
            deferred: VecDeque::new(),
            late_until: i64::MIN,
            catch_up_from: None,
            ended: false,
        }
    }

    /// A task taken over from another node at `at_ms` (see `catch_up_from`).
    pub fn taken_over_at(mut self, at_ms: Option<i64>) -> Self {
        self.catch_up_from = at_ms;
        self
    }

    pub fn rules(&self) -> &RunRules {
        &self.rules
    }

    pub fn progress(&self) -> Progress {
        self.progress
    }

    pub fn in_flight(&self) -> Option<Attempt> {
        self.in_flight
    }

    /// Whether `attempt` of `slot` is the one in flight.
    pub fn is_current(&self, slot: i64, attempt: u32) -> bool {
        self.in_flight
            .is_some_and(|f| f.slot == slot && f.attempt == attempt)
    }

    /// Finished, stopped or withdrawn: nothing more is decided.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// The slot after `slot`, unless it falls after `end_time`.
    pub fn following(&self, slot: i64) -> Option<i64> {
        let next = self.rules.schedule.next_after(slot)?;
        match self.rules.end_ms {
            Some(end) if next > end => None,
            _ => Some(next),
        }
    }

    /// The task (re)starts at `now`: its due slot is registered, or if that is overdue one
    /// catch-up fire is made for the latest slot missed (the misfire rule) — after a take-over,
    /// the latest missed before the take-over (the ones due since are sent one after the other).
    pub fn on_start(&mut self, now: i64) -> StartDecision {
        let due = match self.progress.next_run_time {
            Some(t) => t,
            None => match self.rules.schedule.first_run(now) {
                Some(t) => t,
                None => return StartDecision::Complete,
            },
        };
        if self.rules.end_ms.is_some_and(|end| due > end) {
            return StartDecision::Complete;
        }
        if due >= now {
            self.progress.next_run_time = Some(due);
            return StartDecision::Register(due);
        }
        let coalesce_until = self.catch_up_from.map_or(now, |from| from.min(now));
        self.late_until = now;
        if self.rules.task_type == TaskType::Once || due > coalesce_until {
            // A once task fires as soon as it can; a slot due since a take-over was not
            // missed (the new owner sends it).
            self.progress.next_run_time = Some(due);
            return StartDecision::CatchUp(due);
        }
        // No slot after `end_time` runs, nor is counted as missed.
        let until = self
            .rules
            .end_ms
            .map_or(coalesce_until, |end| end.min(coalesce_until));
        let slot = self.rules.schedule.latest_due(due, until);
        let slots = self
            .rules
            .schedule
            .slots_through(due, slot, MAX_COUNTED_MISSES);
        let counted = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        match self.rules.misfire_policy {
            MisfirePolicy::FireOnce => {
                self.progress.missed_slots = self
                    .progress
                    .missed_slots
                    .saturating_add(counted(slots.saturating_sub(1)));
                self.progress.next_run_time = Some(slot);
                StartDecision::CatchUp(slot)
            }
            MisfirePolicy::Skip => {
                self.progress.missed_slots =
                    self.progress.missed_slots.saturating_add(counted(slots));
                let next = self.following(slot);
                self.progress.next_run_time = next;
                StartDecision::SkipMissed {
                    latest: slot,
                    skipped: slots,
                    next,
                }
            }
        }
    }

    /// Slots at or before `now` were held back (a lapsed cluster lease): the ones fired for
    /// them are catch-ups, and slots due meanwhile wait for them.
    pub fn missed_until(&mut self, now: i64) {
        self.late_until = now;
    }

    /// `slot` came due (and this node may fire it): execute it, or if an execution is still
    /// in flight, defer it behind a catch-up (up to [`MAX_DEFERRED`]) or skip it.
    pub fn on_fire(&mut self, slot: i64) -> FireDecision {
        let next = self.following(slot);
        self.progress.next_run_time = next;
        let action = match self.in_flight {
            Some(f) if f.catch_up && self.deferred.len() < MAX_DEFERRED => {
                self.deferred.push_back(slot);
                FireAction::Defer { behind: f.slot }
            }
            Some(f) => FireAction::Skip { in_flight: f.slot },
            None => {
                let catch_up = slot <= self.late_until;
                self.in_flight = Some(Attempt {
                    slot,
                    attempt: 1,
                    catch_up,
                    manual: false,
                });
                FireAction::Execute { catch_up }
            }
        };
        FireDecision { action, next }
    }

    /// The execution before ended: the oldest slot that waited for it, now in flight.
    pub fn next_deferred(&mut self) -> Option<i64> {
        if self.ended || self.in_flight.is_some() {
            return None;
        }
        let slot = self.deferred.pop_front()?;
        self.in_flight = Some(Attempt {
            slot,
            attempt: 1,
            catch_up: true,
            manual: false,
        });
        Some(slot)
    }

    /// A user asks for one extra execution now (run now), outside the schedule: it is put in
    /// flight as attempt 1 of slot `now` (its `webhook-id`), unless an execution is already in
    /// flight or the task has ended. The next scheduled slot is not moved; one that comes due
    /// while it runs is skipped as an overlap, as behind any execution in flight.
    pub fn on_manual(&mut self, now: i64) -> Result<Attempt, ManualRefusal> {
        if self.ended {
            return Err(ManualRefusal::Ended);
        }
        if let Some(f) = self.in_flight {
            return Err(ManualRefusal::InFlight { slot: f.slot });
        }
        let attempt = Attempt {
            slot: now,
            attempt: 1,
            catch_up: false,
            manual: true,
        };
        self.in_flight = Some(attempt);
        Ok(attempt)
    }

    /// The execution in flight is held back (a lapsed lease after its fire): from now on it
    /// counts as a catch-up, so the slots due meanwhile wait for it.
    pub fn hold_in_flight(&mut self) {
        if let Some(f) = &mut self.in_flight {
            f.catch_up = true;
        }
    }

    /// Drops the execution in flight without an outcome (not sent, or no longer this node's).
    pub fn abandon(&mut self) -> Option<Attempt> {
        self.in_flight.take()
    }

    /// Attempt `attempt` of `slot` ended with `outcome`. `jitter` draws a random number in
    /// `[0, 1)` for the backoff; it is called only when a retry is due, so a success draws
    /// nothing.
    ///
    /// A 2xx reply counts an execution and clears the failure streak; the task completes on a
    /// response match, at `max_cnt`, for a once task, or with no next slot. A failure is
    /// retried while `attempt <= max_retries`, after the backoff (or a longer 429/503
    /// `Retry-After`, capped at [`MAX_RETRY_AFTER_MS`]); after the last retry it counts an
    /// execution and a failure, and the task fails at `max_failures` (a once task at once).
    ///
    /// A manual execution (run now) counts the same way, but only the stop conditions end the
    /// task after it: a once task still has its scheduled run to come, and a paused task (no
    /// next slot while paused) stays paused.
    pub fn on_outcome(
        &mut self,
        slot: i64,
        attempt: u32,
        outcome: AttemptOutcome,
        jitter: impl FnOnce() -> f64,
    ) -> Verdict {
        if self.ended || !self.is_current(slot, attempt) || outcome == AttemptOutcome::Cancelled {
            return Verdict::Ignore;
        }
        let rules = &self.rules;
        let manual = self.in_flight.is_some_and(|f| f.manual);
        // The schedule's own end, which a manual execution leaves to the schedule.
        let schedule_done =
            |next: Option<i64>| !manual && (rules.task_type == TaskType::Once || next.is_none());
        if outcome.is_success() {
            self.in_flight = None;
            self.progress.execution_count += 1;
            self.progress.consecutive_failures = 0;
            let matched = matches!(
                outcome,
                AttemptOutcome::Replied {
                    stop_matched: true,
                    ..
                }
            );
            let done = matched
                || rules.count_reached(self.progress.execution_count)
                || schedule_done(self.progress.next_run_time);
            return if done {
                Verdict::Complete
            } else {
                Verdict::Advance
            };
        }
        if attempt <= rules.max_retries {
            let backoff = backoff_delay_ms(rules.backoff_ms, attempt, jitter());
            let (after_ms, capped_from) = match outcome {
                AttemptOutcome::Replied {
                    status: 429 | 503,
                    retry_after_ms: Some(asked),
                    ..
                } => (
                    backoff.max(asked.min(MAX_RETRY_AFTER_MS)),
                    (asked > MAX_RETRY_AFTER_MS).then_some(asked),
                ),
                _ => (backoff, None),
            };
            if let Some(f) = &mut self.in_flight {
                f.attempt += 1;
            }
            return Verdict::Retry {
                after_ms,
                capped_from,
            };
        }
        // The execution failed after its last retry.
        self.in_flight = None;
        self.progress.execution_count += 1;
        self.progress.consecutive_failures += 1;
        if (!manual && rules.task_type == TaskType::Once)
            || rules
                .max_failures
                .is_some_and(|m| self.progress.consecutive_failures >= i64::from(m))
        {
            return Verdict::Fail;
        }
        if rules.count_reached(self.progress.execution_count)
            || (!manual && self.progress.next_run_time.is_none())
        {
            return Verdict::Complete;
        }
        Verdict::Advance
    }

    /// The task reaches a final state: no next run, nothing in flight. Returns the execution
    /// that was in flight, if any (to be aborted).
    pub fn finish(&mut self) -> Option<Attempt> {
        self.ended = true;
        self.progress.next_run_time = None;
        self.in_flight.take()
    }

    /// The task is stopped or withdrawn from this node (its state is left as it is). Returns
    /// the execution that was in flight, if any (to be aborted).
    pub fn stop(&mut self) -> Option<Attempt> {
        self.ended = true;
        self.in_flight.take()
    }

    /// A new definition (a patch); the progress is kept.
    pub fn redefine(&mut self, rules: RunRules) {
        self.rules = rules;
    }

    /// The definition and progress read again from storage (after a restart of the actor).
    pub fn reload(&mut self, rules: RunRules, progress: Progress) {
        self.rules = rules;
        self.progress = progress;
    }

    /// A patch moved the next run to `next`: the slots waiting behind a catch-up are dropped.
    pub fn reschedule(&mut self, next: Option<i64>) -> Rescheduled {
        self.deferred.clear();
        self.progress.next_run_time = next;
        match next {
            Some(at) => Rescheduled::Register(at),
            None => Rescheduled::Withdraw {
                complete: self.in_flight.is_none(),
            },
        }
    }
}

/// One execution attempt (or a skipped slot, attempt 0) as the task log records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecutionRecord {
    pub task_id: Uuid,
    pub user_id: i64,
    pub scheduled_ms: i64,
    /// From 1; 0 for a slot that was not sent.
    pub attempt: u32,
    pub http_status: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: i64,
    pub response_body: Option<String>,
    /// When the attempt was sent (epoch ms).
    pub created_at_ms: i64,
    pub trigger: Trigger,
    /// Start of the execution's first attempt minus its slot; `None` for a slot not sent.
    pub lateness_ms: Option<i64>,
}

impl ExecutionRecord {
    /// The slots up to `latest` were missed and, by the task's misfire policy, not fired.
    pub fn skipped_missed(
        task_id: Uuid,
        user_id: i64,
        latest: i64,
        skipped: u64,
        now: i64,
    ) -> Self {
        Self {
            task_id,
            user_id,
            scheduled_ms: latest,
            attempt: 0,
            http_status: None,
            error: Some(format!("missed: {skipped} slots skipped")),
            duration_ms: 0,
            response_body: None,
            created_at_ms: now,
            trigger: Trigger::CatchUp,
            lateness_ms: None,
        }
    }

    /// `slot` was skipped at `now` because the execution before it was still in flight.
    pub fn skipped_overlap(task_id: Uuid, user_id: i64, slot: i64, now: i64) -> Self {
        Self {
            task_id,
            user_id,
            scheduled_ms: slot,
            attempt: 0,
            http_status: None,
            error: Some(SKIPPED_OVERLAP.into()),
            duration_ms: 0,
            response_body: None,
            created_at_ms: now,
            trigger: Trigger::Schedule,
            lateness_ms: None,
        }
    }
}

#[cfg(test)]
mod tests;
