//! The run rules, one by one, with time passed in: no clock, no actor.

use serde_json::json;

use super::*;

const SEC: i64 = 1_000;
/// A jitter draw that leaves the backoff at its nominal value.
const NO_JITTER: f64 = 0.5;

/// Every ten seconds from 0.
fn every_ten_seconds() -> Schedule {
    Schedule::Interval {
        anchor_ms: 0,
        every_ms: 10 * SEC,
    }
}

fn rules(schedule: Schedule) -> RunRules {
    RunRules {
        schedule,
        task_type: TaskType::Interval,
        end_ms: None,
        max_cnt: None,
        max_failures: None,
        max_retries: 3,
        backoff_ms: 1_000,
        misfire_policy: MisfirePolicy::FireOnce,
    }
}

fn interval_run(next_run_time: i64) -> TaskRun {
    TaskRun::new(rules(every_ten_seconds()), at(next_run_time))
}

fn at(next_run_time: i64) -> Progress {
    Progress {
        next_run_time: Some(next_run_time),
        ..Progress::default()
    }
}

fn once_run(at_ms: i64) -> TaskRun {
    let rules = RunRules {
        task_type: TaskType::Once,
        ..rules(Schedule::Once { at_ms })
    };
    TaskRun::new(rules, at(at_ms))
}

fn replied(status: u16) -> AttemptOutcome {
    AttemptOutcome::Replied {
        status,
        retry_after_ms: None,
        stop_matched: false,
    }
}

fn ok() -> AttemptOutcome {
    replied(200)
}

fn asking(status: u16, retry_after_ms: u64) -> AttemptOutcome {
    AttemptOutcome::Replied {
        status,
        retry_after_ms: Some(retry_after_ms),
        stop_matched: false,
    }
}

/// Fires `slot` (nothing in flight) and returns what was decided.
fn fire(run: &mut TaskRun, slot: i64) -> FireDecision {
    run.on_fire(slot)
}

/// Runs `slot`'s execution to its end: every attempt fails with `outcome` until the last.
fn fail_every_attempt(run: &mut TaskRun, slot: i64, outcome: AttemptOutcome) -> Verdict {
    let mut attempt = 1;
    loop {
        match run.on_outcome(slot, attempt, outcome, || NO_JITTER) {
            Verdict::Retry { .. } => attempt += 1,
            verdict => return verdict,
        }
    }
}

fn retry_delay(verdict: Verdict) -> u64 {
    match verdict {
        Verdict::Retry { after_ms, .. } => after_ms,
        other => panic!("expected a retry, got {other:?}"),
    }
}

// ---- retries ----

#[test]
fn the_first_attempt_of_a_fired_slot_is_numbered_one() {
    let mut run = interval_run(10 * SEC);
    let d = fire(&mut run, 10 * SEC);
    assert_eq!(d.action, FireAction::Execute { catch_up: false });
    assert_eq!(
        run.in_flight(),
        Some(Attempt {
            slot: 10 * SEC,
            attempt: 1,
            catch_up: false,
            manual: false,
        })
    );
}

#[test]
fn a_failed_attempt_is_retried_while_its_number_is_at_most_max_retries() {
    let mut run = interval_run(10 * SEC);
    fire(&mut run, 10 * SEC);
    for attempt in 1..=3 {
        let v = run.on_outcome(10 * SEC, attempt, replied(500), || NO_JITTER);
        assert!(
            matches!(v, Verdict::Retry { .. }),
            "attempt {attempt}: {v:?}"
        );
        assert_eq!(run.in_flight().map(|f| f.attempt), Some(attempt + 1));
    }
    // The fourth attempt is the last: the execution failed, the task goes on.
    assert_eq!(
        run.on_outcome(10 * SEC, 4, replied(500), || NO_JITTER),
        Verdict::Advance
    );
    assert_eq!(run.in_flight(), None);
    assert_eq!(run.progress().execution_count, 1);
    assert_eq!(run.progress().consecutive_failures, 1);
}

#[test]
fn with_no_retries_a_failed_attempt_ends_the_execution() {
    let mut run = TaskRun::new(
        RunRules {
            max_retries: 0,
            ..rules(every_ten_seconds())
        },
        at(10 * SEC),
    );
    fire(&mut run, 10 * SEC);
    assert_eq!(
        run.on_outcome(10 * SEC, 1, AttemptOutcome::Failed, || NO_JITTER),
        Verdict::Advance
    );
}

#[test]
fn retries_wait_the_backoff_doubling_from_the_first_retry() {
    let mut run = interval_run(10 * SEC);
    fire(&mut run, 10 * SEC);
    let delays: Vec<u64> = (1..=3)
        .map(|n| retry_delay(run.on_outcome(10 * SEC, n, AttemptOutcome::Failed, || NO_JITTER)))
        .collect();
    assert_eq!(delays, [1_000, 2_000, 4_000]);
}

#[test]
fn the_backoff_is_jittered_by_the_draw_passed_in() {
    let mut low = interval_run(10 * SEC);
    fire(&mut low, 10 * SEC);
    let mut high = low.clone();
    assert_eq!(
        retry_delay(low.on_outcome(10 * SEC, 1, AttemptOutcome::Failed, || 0.0)),
        800
    );
    assert_eq!(
        retry_delay(high.on_outcome(10 * SEC, 1, AttemptOutcome::Failed, || 0.999)),
        1_200
    );
}

#[test]
fn a_429_or_503_waits_for_a_retry_after_longer_than_the_backoff() {
    for status in [429, 503] {
        let mut run = interval_run(10 * SEC);
        fire(&mut run, 10 * SEC);
        let v = run.on_outcome(10 * SEC, 1, asking(status, 5_000), || NO_JITTER);
        assert_eq!(
            v,
            Verdict::Retry {
                after_ms: 5_000,
                capped_from: None
            }
        );
    }
}

#[test]
fn a_retry_after_shorter_than_the_backoff_does_not_shorten_it() {
    let mut run = interval_run(10 * SEC);
    fire(&mut run, 10 * SEC);
    let v = run.on_outcome(10 * SEC, 1, asking(429, 200), || NO_JITTER);
    assert_eq!(retry_delay(v), 1_000);
}

#[test]
fn a_retry_waits_for_retry_after_capped_at_an_hour() {
    let mut run = interval_run(10 * SEC);
    fire(&mut run, 10 * SEC);
    let two_hours = 2 * MAX_RETRY_AFTER_MS;
    let v = run.on_outcome(10 * SEC, 1, asking(503, two_hours), || NO_JITTER);
    assert_eq!(
        v,
        Verdict::Retry {
            after_ms: MAX_RETRY_AFTER_MS,
            capped_from: Some(two_hours)
        }
    );
}

#[test]
fn retry_after_is_ignored_on_other_statuses() {
    for status in [500, 502, 404, 302] {
        let mut run = interval_run(10 * SEC);
        fire(&mut run, 10 * SEC);
        let v = run.on_outcome(10 * SEC, 1, asking(status, 60_000), || NO_JITTER);
        assert_eq!(retry_delay(v), 1_000, "status {status}");
    }
}

#[test]
fn an_outcome_of_another_slot_or_attempt_is_ignored() {
    let mut run = interval_run(10 * SEC);
    fire(&mut run, 10 * SEC);
    assert_eq!(run.on_outcome(0, 1, ok(), || NO_JITTER), Verdict::Ignore);
    assert_eq!(
        run.on_outcome(10 * SEC, 2, ok(), || NO_JITTER),
        Verdict::Ignore
    );
    assert_eq!(run.in_flight().map(|f| f.attempt), Some(1));
    assert_eq!(run.progress().execution_count, 0);
}

#[test]
fn a_cancelled_attempt_decides_nothing() {
    let mut run = interval_run(10 * SEC);
    fire(&mut run, 10 * SEC);
    assert_eq!(
        run.on_outcome(10 * SEC, 1, AttemptOutcome::Cancelled, || NO_JITTER),
        Verdict::Ignore
    );
    assert!(run.is_current(10 * SEC, 1));
}

#[test]
fn once_the_task_ended_no_outcome_counts() {
    let mut run = interval_run(10 * SEC);
    fire(&mut run, 10 * SEC);
    run.stop();
    assert_eq!(
        run.on_outcome(10 * SEC, 1, ok(), || NO_JITTER),
        Verdict::Ignore
    );
    assert_eq!(run.progress().execution_count, 0);
}

// ---- success and completion ----

#[test]
fn a_success_counts_an_execution_and_clears_the_failure_streak() {
    let mut run = TaskRun::new(
        rules(every_ten_seconds()),
        Progress {
            next_run_time: Some(10 * SEC),
            execution_count: 4,
            consecutive_failures: 2,
            missed_slots: 0,
        },
    );
    let d = fire(&mut run, 10 * SEC);
    assert_eq!(d.next, Some(20 * SEC));
    assert_eq!(
        run.on_outcome(10 * SEC, 1, ok(), || NO_JITTER),
        Verdict::Advance
    );
    assert_eq!(
        run.progress(),
        Progress {
            next_run_time: Some(20 * SEC),
            execution_count: 5,
            consecutive_failures: 0,
            missed_slots: 0,
        }
    );
}

#[test]
fn any_2xx_is_a_success_and_anything_else_a_failure() {
    for (status, success) in [
        (200, true),
        (204, true),
        (299, true),
        (300, false),
        (199, false),
    ] {
        assert_eq!(replied(status).is_success(), success, "{status}");
    }
    assert!(!AttemptOutcome::Failed.is_success());
}

#[test]
fn max_cnt_completes_the_task_at_that_many_executions() {
    let mut run = TaskRun::new(
        RunRules {
            max_cnt: Some(2),
            ..rules(every_ten_seconds())
        },
        at(10 * SEC),
    );
    fire(&mut run, 10 * SEC);
    assert_eq!(
        run.on_outcome(10 * SEC, 1, ok(), || NO_JITTER),
        Verdict::Advance
    );
    fire(&mut run, 20 * SEC);
    assert_eq!(
        run.on_outcome(20 * SEC, 1, ok(), || NO_JITTER),
        Verdict::Complete
    );
    assert_eq!(run.progress().execution_count, 2);
}

#[test]
fn a_failed_execution_counts_toward_max_cnt() {
    let mut run = TaskRun::new(
        RunRules {
            max_cnt: Some(1),
            ..rules(every_ten_seconds())
        },
        at(10 * SEC),
    );
    fire(&mut run, 10 * SEC);
    assert_eq!(
        fail_every_attempt(&mut run, 10 * SEC, replied(500)),
        Verdict::Complete
    );
}

#[test]
fn a_matching_response_completes_the_task() {
    let mut run = interval_run(10 * SEC);
    fire(&mut run, 10 * SEC);
    let matched = AttemptOutcome::Replied {
        status: 200,
        retry_after_ms: None,
        stop_matched: true,
    };
    assert_eq!(
        run.on_outcome(10 * SEC, 1, matched, || NO_JITTER),
        Verdict::Complete
    );
}

#[test]
fn a_once_task_completes_after_its_successful_execution() {
    let mut run = once_run(10 * SEC);
    let d = fire(&mut run, 10 * SEC);
    assert_eq!(d.next, None);
    assert_eq!(
        run.on_outcome(10 * SEC, 1, ok(), || NO_JITTER),
        Verdict::Complete
    );
}

#[test]
fn a_once_task_that_always_fails_ends_failed_after_its_last_retry() {
    let mut run = once_run(10 * SEC);
    fire(&mut run, 10 * SEC);
    let mut attempts = 0;
    let verdict = loop {
        attempts += 1;
        match run.on_outcome(10 * SEC, attempts, AttemptOutcome::Failed, || NO_JITTER) {
            Verdict::Retry { .. } => continue,
            v => break v,
        }
    };
    assert_eq!((verdict, attempts), (Verdict::Fail, 4));
}

#[test]
fn max_failures_fails_the_task_after_that_many_consecutive_failed_executions() {
    let mut run = TaskRun::new(
        RunRules {
            max_failures: Some(2),
            max_retries: 0,
            ..rules(every_ten_seconds())
        },
        at(10 * SEC),
    );
    fire(&mut run, 10 * SEC);
    assert_eq!(
        fail_every_attempt(&mut run, 10 * SEC, replied(500)),
        Verdict::Advance
    );
    fire(&mut run, 20 * SEC);
    assert_eq!(
        fail_every_attempt(&mut run, 20 * SEC, AttemptOutcome::Failed),
        Verdict::Fail
    );
}

#[test]
fn a_success_between_failures_restarts_the_max_failures_count() {
    let mut run = TaskRun::new(
        RunRules {
            max_failures: Some(2),
            max_retries: 0,
            ..rules(every_ten_seconds())
        },
        at(10 * SEC),
    );
    let outcomes = [replied(500), ok(), replied(500), ok()];
    for (i, outcome) in outcomes.into_iter().enumerate() {
        let slot = (i as i64 + 1) * 10 * SEC;
        fire(&mut run, slot);
        assert_eq!(
            run.on_outcome(slot, 1, outcome, || NO_JITTER),
            Verdict::Advance
        );
    }
    assert_eq!(run.progress().execution_count, 4);
}

#[test]
fn max_failures_wins_over_max_cnt_on_the_same_execution() {
    let mut run = TaskRun::new(
        RunRules {
            max_failures: Some(1),
            max_cnt: Some(1),
            max_retries: 0,
            ..rules(every_ten_seconds())
        },
        at(10 * SEC),
    );
    fire(&mut run, 10 * SEC);
    assert_eq!(
        run.on_outcome(10 * SEC, 1, AttemptOutcome::Failed, || NO_JITTER),
        Verdict::Fail
    );
}

// ---- end_time and the end of the schedule ----

#[test]
fn no_slot_after_end_time_is_registered_and_the_last_execution_completes_the_task() {
    let mut run = TaskRun::new(
        RunRules {
            end_ms: Some(25 * SEC),
            ..rules(every_ten_seconds())
        },
        at(10 * SEC),
    );
    assert_eq!(fire(&mut run, 10 * SEC).next, Some(20 * SEC));
    assert_eq!(
        run.on_outcome(10 * SEC, 1, ok(), || NO_JITTER),
        Verdict::Advance
    );
    assert_eq!(fire(&mut run, 20 * SEC).next, None);
    assert_eq!(run.progress().next_run_time, None);
    assert_eq!(
        run.on_outcome(20 * SEC, 1, ok(), || NO_JITTER),
        Verdict::Complete
    );
}

#[test]
fn a_slot_exactly_at_end_time_still_runs() {
    let run = TaskRun::new(
        RunRules {
            end_ms: Some(20 * SEC),
            ..rules(every_ten_seconds())
        },
        at(10 * SEC),
    );
    assert_eq!(run.following(10 * SEC), Some(20 * SEC));
    assert_eq!(run.following(20 * SEC), None);
}

#[test]
fn a_failed_last_execution_completes_rather_than_fails_the_task() {
    let mut run = TaskRun::new(
        RunRules {
            end_ms: Some(15 * SEC),
            max_retries: 0,
            ..rules(every_ten_seconds())
        },
        at(10 * SEC),
    );
    fire(&mut run, 10 * SEC);
    assert_eq!(
        run.on_outcome(10 * SEC, 1, replied(500), || NO_JITTER),
        Verdict::Complete
    );
}

#[test]
fn a_task_whose_next_run_is_after_end_time_completes_at_start() {
    let mut run = TaskRun::new(
        RunRules {
            end_ms: Some(5 * SEC),
            ..rules(every_ten_seconds())
        },
        at(10 * SEC),
    );
    assert_eq!(run.on_start(0), StartDecision::Complete);
}

#[test]
fn a_schedule_with_no_run_left_completes_at_start() {
    let never = Schedule::Interval {
        anchor_ms: 0,
        every_ms: 0,
    };
    let mut run = TaskRun::new(rules(never), Progress::default());
    assert_eq!(run.on_start(0), StartDecision::Complete);
}

#[test]
fn finishing_clears_the_next_run_and_ends_the_run() {
    let mut run = interval_run(10 * SEC);
    fire(&mut run, 10 * SEC);
    assert_eq!(run.finish().map(|f| f.slot), Some(10 * SEC));
    assert!(run.is_ended());
    assert_eq!(run.progress().next_run_time, None);
    assert_eq!(run.next_deferred(), None);
}

// ---- start and misfire coalescing ----

#[test]
fn a_due_slot_still_ahead_is_registered() {
    let mut run = interval_run(30 * SEC);
    assert_eq!(run.on_start(25 * SEC), StartDecision::Register(30 * SEC));
    // A slot due right now is not late.
    let mut run = interval_run(30 * SEC);
    assert_eq!(run.on_start(30 * SEC), StartDecision::Register(30 * SEC));
}

#[test]
fn a_task_never_run_registers_its_first_run() {
    let mut run = TaskRun::new(rules(every_ten_seconds()), Progress::default());
    assert_eq!(run.on_start(12 * SEC), StartDecision::Register(20 * SEC));
    assert_eq!(run.progress().next_run_time, Some(20 * SEC));
}

#[test]
fn an_overdue_task_fires_once_for_the_latest_missed_slot() {
    let mut run = interval_run(10 * SEC);
    assert_eq!(run.on_start(55 * SEC), StartDecision::CatchUp(50 * SEC));
    assert_eq!(run.progress().next_run_time, Some(50 * SEC));
    // That fire is a catch-up, and the schedule goes on from the slot after it.
    let d = fire(&mut run, 50 * SEC);
    assert_eq!(d.action, FireAction::Execute { catch_up: true });
    assert_eq!(d.next, Some(60 * SEC));
}

#[test]
fn an_overdue_once_task_fires_at_once() {
    let mut run = once_run(10 * SEC);
    assert_eq!(run.on_start(99 * SEC), StartDecision::CatchUp(10 * SEC));
}

#[test]
fn after_a_take_over_the_slots_missed_before_it_coalesce_and_the_ones_since_are_each_sent() {
    // Nobody ran the task from 10 s until the take-over at 32 s; it starts here at 55 s.
    let mut run = interval_run(10 * SEC).taken_over_at(Some(32 * SEC));
    assert_eq!(run.on_start(55 * SEC), StartDecision::CatchUp(30 * SEC));
    let d = fire(&mut run, 30 * SEC);
    assert_eq!(d.action, FireAction::Execute { catch_up: true });
    assert_eq!(d.next, Some(40 * SEC));
    // 40 s and 50 s were due after the take-over: both wait behind the catch-up.
    assert_eq!(
        fire(&mut run, 40 * SEC).action,
        FireAction::Defer { behind: 30 * SEC }
    );
    assert_eq!(
        fire(&mut run, 50 * SEC).action,
        FireAction::Defer { behind: 30 * SEC }
    );
    assert_eq!(
        run.on_outcome(30 * SEC, 1, ok(), || NO_JITTER),
        Verdict::Advance
    );
    assert_eq!(run.next_deferred(), Some(40 * SEC));
    assert_eq!(
        run.on_outcome(40 * SEC, 1, ok(), || NO_JITTER),
        Verdict::Advance
    );
    assert_eq!(run.next_deferred(), Some(50 * SEC));
    assert_eq!(
        run.on_outcome(50 * SEC, 1, ok(), || NO_JITTER),
        Verdict::Advance
    );
    assert_eq!(run.next_deferred(), None);
    assert_eq!(run.progress().execution_count, 3);
}

#[test]
fn a_take_over_later_than_now_coalesces_up_to_now() {
    let mut run = interval_run(10 * SEC).taken_over_at(Some(90 * SEC));
    assert_eq!(run.on_start(55 * SEC), StartDecision::CatchUp(50 * SEC));
}

fn skipping_run(next_run_time: i64) -> TaskRun {
    let rules = RunRules {
        misfire_policy: MisfirePolicy::Skip,
        ..rules(every_ten_seconds())
    };
    TaskRun::new(rules, at(next_run_time))
}

#[test]
fn fire_once_counts_the_missed_slots_its_catch_up_stands_in_for() {
    // 10, 20, 30, 40 and 50 s were missed: one fire, for 50 s, stands in for the other four.
    let mut run = interval_run(10 * SEC);
    assert_eq!(run.on_start(55 * SEC), StartDecision::CatchUp(50 * SEC));
    assert_eq!(run.progress().missed_slots, 4);
    // One slot overdue is fired late, not missed.
    let mut run = interval_run(50 * SEC);
    assert_eq!(run.on_start(55 * SEC), StartDecision::CatchUp(50 * SEC));
    assert_eq!(run.progress().missed_slots, 0);
}

#[test]
fn skip_fires_none_of_the_missed_slots_and_goes_on_at_the_next_one() {
    let mut run = skipping_run(10 * SEC);
    assert_eq!(
        run.on_start(55 * SEC),
        StartDecision::SkipMissed {
            latest: 50 * SEC,
            skipped: 5,
            next: Some(60 * SEC)
        }
    );
    assert_eq!(run.progress().missed_slots, 5);
    assert_eq!(run.progress().next_run_time, Some(60 * SEC));
    assert!(run.in_flight().is_none());
    // Its next slot is an ordinary one, not a catch-up.
    assert_eq!(
        fire(&mut run, 60 * SEC).action,
        FireAction::Execute { catch_up: false }
    );
}

#[test]
fn missed_slots_add_up_across_restarts() {
    let mut run = TaskRun::new(
        RunRules {
            misfire_policy: MisfirePolicy::Skip,
            ..rules(every_ten_seconds())
        },
        Progress {
            next_run_time: Some(10 * SEC),
            missed_slots: 7,
            ..Progress::default()
        },
    );
    run.on_start(35 * SEC);
    assert_eq!(run.progress().missed_slots, 10);
}

#[test]
fn skip_completes_a_task_whose_end_time_passed_during_the_outage() {
    let rules = RunRules {
        misfire_policy: MisfirePolicy::Skip,
        end_ms: Some(45 * SEC),
        ..rules(every_ten_seconds())
    };
    let mut run = TaskRun::new(rules, at(10 * SEC));
    assert_eq!(
        run.on_start(55 * SEC),
        StartDecision::SkipMissed {
            latest: 40 * SEC,
            skipped: 4,
            next: None
        }
    );
}

#[test]
fn a_once_task_fires_when_missed_whatever_its_misfire_policy() {
    let rules = RunRules {
        task_type: TaskType::Once,
        misfire_policy: MisfirePolicy::Skip,
        ..rules(Schedule::Once { at_ms: 10 * SEC })
    };
    let mut run = TaskRun::new(rules, at(10 * SEC));
    assert_eq!(run.on_start(99 * SEC), StartDecision::CatchUp(10 * SEC));
    assert_eq!(run.progress().missed_slots, 0);
}

#[test]
fn after_a_take_over_skip_drops_only_the_slots_missed_before_it() {
    // Nobody ran the task from 10 s until the take-over at 32 s; it starts here at 55 s.
    let mut run = skipping_run(10 * SEC).taken_over_at(Some(32 * SEC));
    assert_eq!(
        run.on_start(55 * SEC),
        StartDecision::SkipMissed {
            latest: 30 * SEC,
            skipped: 3,
            next: Some(40 * SEC)
        }
    );
    // 40 s and 50 s were due after the take-over: each is sent, late.
    assert_eq!(
        fire(&mut run, 40 * SEC).action,
        FireAction::Execute { catch_up: true }
    );
    // A slot due after the take-over is not a misfire at all.
    let mut run = skipping_run(40 * SEC).taken_over_at(Some(32 * SEC));
    assert_eq!(run.on_start(55 * SEC), StartDecision::CatchUp(40 * SEC));
    assert_eq!(run.progress().missed_slots, 0);
}

#[test]
fn a_catch_up_is_never_for_a_slot_after_end_time() {
    let rules = RunRules {
        end_ms: Some(45 * SEC),
        ..rules(every_ten_seconds())
    };
    let mut run = TaskRun::new(rules, at(10 * SEC));
    assert_eq!(run.on_start(55 * SEC), StartDecision::CatchUp(40 * SEC));
    assert_eq!(run.progress().missed_slots, 3);
}

// ---- overlap and deferral ----

#[test]
fn a_slot_due_while_an_execution_is_in_flight_is_skipped() {
    let mut run = interval_run(10 * SEC);
    fire(&mut run, 10 * SEC);
    let d = fire(&mut run, 20 * SEC);
    assert_eq!(
        d,
        FireDecision {
            action: FireAction::Skip {
                in_flight: 10 * SEC
            },
            next: Some(30 * SEC),
        }
    );
    // The skipped slot is gone for good: the schedule moved past it.
    assert_eq!(run.progress().next_run_time, Some(30 * SEC));
    assert_eq!(
        run.on_outcome(10 * SEC, 1, ok(), || NO_JITTER),
        Verdict::Advance
    );
    assert_eq!(run.next_deferred(), None);
}

#[test]
fn a_slot_due_while_a_retry_waits_is_skipped_too() {
    let mut run = interval_run(10 * SEC);
    fire(&mut run, 10 * SEC);
    run.on_outcome(10 * SEC, 1, replied(500), || NO_JITTER);
    assert_eq!(
        fire(&mut run, 20 * SEC).action,
        FireAction::Skip {
            in_flight: 10 * SEC
        }
    );
    assert!(run.is_current(10 * SEC, 2));
}

#[test]
fn at_most_sixteen_slots_wait_behind_a_catch_up_and_later_ones_are_skipped() {
    let mut run = interval_run(10 * SEC);
    assert_eq!(run.on_start(15 * SEC), StartDecision::CatchUp(10 * SEC));
    fire(&mut run, 10 * SEC);
    for k in 0..MAX_DEFERRED as i64 {
        let slot = (k + 2) * 10 * SEC;
        assert_eq!(
            fire(&mut run, slot).action,
            FireAction::Defer { behind: 10 * SEC },
            "slot {k}"
        );
    }
    let seventeenth = (MAX_DEFERRED as i64 + 2) * 10 * SEC;
    assert_eq!(
        fire(&mut run, seventeenth).action,
        FireAction::Skip {
            in_flight: 10 * SEC
        }
    );
}

#[test]
fn slots_deferred_behind_a_catch_up_run_oldest_first_as_catch_ups() {
    let mut run = interval_run(10 * SEC);
    run.on_start(15 * SEC);
    fire(&mut run, 10 * SEC);
    fire(&mut run, 20 * SEC);
    fire(&mut run, 30 * SEC);
    // Nothing is started while the catch-up is still in flight.
    assert_eq!(run.next_deferred(), None);
    run.on_outcome(10 * SEC, 1, ok(), || NO_JITTER);
    assert_eq!(run.next_deferred(), Some(20 * SEC));
    assert_eq!(
        run.in_flight(),
        Some(Attempt {
            slot: 20 * SEC,
            attempt: 1,
            catch_up: true,
            manual: false,
        })
    );
    // A slot due meanwhile waits behind it in turn.
    assert_eq!(
        fire(&mut run, 40 * SEC).action,
        FireAction::Defer { behind: 20 * SEC }
    );
}

#[test]
fn a_fire_held_back_by_a_lapsed_lease_is_a_catch_up_and_slots_due_since_wait_for_it() {
    let mut run = interval_run(10 * SEC);
    run.on_start(5 * SEC);
    // 10 s came due while the lease was lapsed; it is back at 23 s.
    run.missed_until(23 * SEC);
    assert_eq!(
        fire(&mut run, 10 * SEC).action,
        FireAction::Execute { catch_up: true }
    );
    assert_eq!(
        fire(&mut run, 20 * SEC).action,
        FireAction::Defer { behind: 10 * SEC }
    );
}

#[test]
fn an_execution_held_in_flight_by_a_lapsed_lease_lets_later_slots_wait() {
    let mut run = interval_run(10 * SEC);
    fire(&mut run, 10 * SEC);
    run.hold_in_flight();
    assert_eq!(
        fire(&mut run, 20 * SEC).action,
        FireAction::Defer { behind: 10 * SEC }
    );
}

#[test]
fn an_abandoned_execution_leaves_the_task_free_to_send_the_next_slot() {
    let mut run = interval_run(10 * SEC);
    fire(&mut run, 10 * SEC);
    assert_eq!(run.abandon().map(|f| f.slot), Some(10 * SEC));
    assert_eq!(
        run.on_outcome(10 * SEC, 1, ok(), || NO_JITTER),
        Verdict::Ignore
    );
    assert_eq!(
        fire(&mut run, 20 * SEC).action,
        FireAction::Execute { catch_up: false }
    );
}

// ---- redefinition ----

#[test]
fn a_reschedule_drops_the_deferred_slots_and_registers_the_new_next_run() {
    let mut run = interval_run(10 * SEC);
    run.on_start(15 * SEC);
    fire(&mut run, 10 * SEC);
    fire(&mut run, 20 * SEC);
    assert_eq!(
        run.reschedule(Some(100 * SEC)),
        Rescheduled::Register(100 * SEC)
    );
    run.on_outcome(10 * SEC, 1, ok(), || NO_JITTER);
    assert_eq!(run.next_deferred(), None);
    assert_eq!(run.progress().next_run_time, Some(100 * SEC));
}

#[test]
fn a_reschedule_to_no_run_completes_the_task_unless_an_execution_is_in_flight() {
    let mut idle = interval_run(10 * SEC);
    assert_eq!(
        idle.reschedule(None),
        Rescheduled::Withdraw { complete: true }
    );
    let mut busy = interval_run(10 * SEC);
    fire(&mut busy, 10 * SEC);
    assert_eq!(
        busy.reschedule(None),
        Rescheduled::Withdraw { complete: false }
    );
    // Its outcome then completes it: no next run is left.
    assert_eq!(
        busy.on_outcome(10 * SEC, 1, ok(), || NO_JITTER),
        Verdict::Complete
    );
}

#[test]
fn the_retry_defaults_apply_unless_the_task_sets_its_own() {
    let defaults = RetryDefaults {
        max_retries: 5,
        backoff_ms: 250,
    };
    let body = json!({
        "user_id": 1,
        "type": "interval",
        "http_endpoint": "https://api.example.com/execute",
        "interval_seconds": 10,
        "stop_condition": {"max_cnt": 3, "max_failures": 2, "end_time": "2030-01-01T00:00:00Z"}
    });
    let spec = crate::domain::parse_create(&body).expect("a valid body");
    let r = RunRules::of(&spec, every_ten_seconds(), defaults);
    assert_eq!((r.max_retries, r.backoff_ms), (5, 250));
    assert_eq!((r.max_cnt, r.max_failures), (Some(3), Some(2)));
    assert_eq!(r.end_ms, Some(1_893_456_000_000));

    let mut own = body;
    own["retry"] = json!({"max_retries": 1, "backoff_ms": 10});
    let spec = crate::domain::parse_create(&own).expect("a valid body");
    let r = RunRules::of(&spec, every_ten_seconds(), defaults);
    assert_eq!((r.max_retries, r.backoff_ms), (1, 10));
}

#[test]
fn a_skipped_slot_is_recorded_as_attempt_zero_with_the_reason() {
    let id = Uuid::nil();
    let r = ExecutionRecord::skipped_overlap(id, 7, 20 * SEC, 21 * SEC);
    assert_eq!((r.attempt, r.http_status), (0, None));
    assert_eq!(r.error.as_deref(), Some(SKIPPED_OVERLAP));
    assert_eq!((r.scheduled_ms, r.created_at_ms), (20 * SEC, 21 * SEC));
}

// Run now: one extra execution outside the schedule.

#[test]
fn a_manual_run_is_in_flight_as_attempt_one_of_the_request_moment_and_moves_no_slot() {
    let mut run = interval_run(10 * SEC);
    let a = run.on_manual(3 * SEC).expect("started");
    assert_eq!((a.slot, a.attempt, a.manual), (3 * SEC, 1, true));
    assert_eq!(a.trigger(), Trigger::Manual);
    assert_eq!(run.in_flight(), Some(a));
    assert_eq!(
        run.on_outcome(3 * SEC, 1, ok(), || NO_JITTER),
        Verdict::Advance
    );
    let p = run.progress();
    assert_eq!(p.execution_count, 1);
    assert_eq!(p.next_run_time, Some(10 * SEC), "the schedule is not moved");
    assert_eq!(run.in_flight(), None);
}

#[test]
fn a_manual_run_is_refused_while_an_execution_is_in_flight_and_after_the_end() {
    let mut run = interval_run(10 * SEC);
    fire(&mut run, 10 * SEC);
    assert_eq!(
        run.on_manual(11 * SEC),
        Err(ManualRefusal::InFlight { slot: 10 * SEC })
    );
    run.on_outcome(10 * SEC, 1, ok(), || NO_JITTER);
    run.on_manual(12 * SEC).expect("started");
    assert_eq!(
        run.on_manual(13 * SEC),
        Err(ManualRefusal::InFlight { slot: 12 * SEC })
    );
    run.finish();
    assert_eq!(run.on_manual(14 * SEC), Err(ManualRefusal::Ended));
}

#[test]
fn a_slot_due_during_a_manual_run_is_skipped_as_an_overlap() {
    let mut run = interval_run(10 * SEC);
    run.on_manual(9 * SEC).expect("started");
    let d = fire(&mut run, 10 * SEC);
    assert_eq!(d.action, FireAction::Skip { in_flight: 9 * SEC });
    assert_eq!(d.next, Some(20 * SEC));
}

#[test]
fn a_manual_run_is_retried_and_its_failure_counts_toward_max_failures() {
    let mut run = TaskRun::new(
        RunRules {
            max_retries: 1,
            max_failures: Some(1),
            ..rules(every_ten_seconds())
        },
        at(10 * SEC),
    );
    run.on_manual(SEC).expect("started");
    assert!(matches!(
        run.on_outcome(SEC, 1, replied(500), || NO_JITTER),
        Verdict::Retry { .. }
    ));
    assert_eq!(
        run.in_flight().map(|f| (f.attempt, f.manual)),
        Some((2, true))
    );
    assert_eq!(
        run.on_outcome(SEC, 2, replied(500), || NO_JITTER),
        Verdict::Fail
    );
    assert_eq!(run.progress().execution_count, 1);
}

#[test]
fn max_cnt_reached_by_a_manual_run_completes_the_task() {
    let mut run = TaskRun::new(
        RunRules {
            max_cnt: Some(1),
            ..rules(every_ten_seconds())
        },
        at(10 * SEC),
    );
    run.on_manual(SEC).expect("started");
    assert_eq!(
        run.on_outcome(SEC, 1, ok(), || NO_JITTER),
        Verdict::Complete
    );
}

#[test]
fn a_response_match_on_a_manual_run_completes_the_task() {
    let mut run = interval_run(10 * SEC);
    run.on_manual(SEC).expect("started");
    let matched = AttemptOutcome::Replied {
        status: 200,
        retry_after_ms: None,
        stop_matched: true,
    };
    assert_eq!(
        run.on_outcome(SEC, 1, matched, || NO_JITTER),
        Verdict::Complete
    );
}

#[test]
fn a_manual_run_of_a_once_task_leaves_its_scheduled_run_to_come() {
    let mut run = once_run(60 * SEC);
    run.on_manual(SEC).expect("started");
    assert_eq!(run.on_outcome(SEC, 1, ok(), || NO_JITTER), Verdict::Advance);
    run.on_manual(2 * SEC).expect("started");
    assert_eq!(
        fail_every_attempt(&mut run, 2 * SEC, replied(500)),
        Verdict::Advance,
        "a failed manual run does not fail a once task"
    );
    assert_eq!(run.progress().next_run_time, Some(60 * SEC));
    fire(&mut run, 60 * SEC);
    assert_eq!(
        run.on_outcome(60 * SEC, 1, ok(), || NO_JITTER),
        Verdict::Complete
    );
    assert_eq!(run.progress().execution_count, 3);
}

#[test]
fn a_manual_run_of_a_task_without_a_next_slot_does_not_complete_it() {
    // A paused task has no next slot; a manual run leaves it as it is.
    let mut run = TaskRun::new(rules(every_ten_seconds()), Progress::default());
    run.on_manual(SEC).expect("started");
    assert_eq!(run.on_outcome(SEC, 1, ok(), || NO_JITTER), Verdict::Advance);
    assert_eq!(run.progress().next_run_time, None);
}
