//! 2, 3, 5. One node of three leaves: killed (kill -9), terminated (SIGTERM, a hand-over), or
//! frozen (SIGSTOP past the session timeout, then SIGCONT). A take-over costs the dead node's
//! tasks only the slots that fell inside its session timeout, and the survivors' own tasks
//! keep their lateness while the taken-over ones catch up.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::analysis::{check_logs, settle, Slot};
use crate::cluster::{Cluster, Config, Ownership, TaskInfo};
use crate::procs::{now_ms, pause, sleep_until_ms, stamp};
use crate::sink::Delivery;

const VICTIM: &str = "n2";

/// For each of `tasks`, the first arrival after `since` sent by a node other than `victim`.
fn taken_over(
    d: &[Delivery],
    tasks: &[TaskInfo],
    victim: &str,
    since: i64,
) -> HashMap<Uuid, Option<i64>> {
    let mut m: HashMap<Uuid, Option<i64>> = tasks.iter().map(|t| (t.id, None)).collect();
    for x in d {
        if x.at <= since || x.node.as_deref() == Some(victim) {
            continue;
        }
        if let Some(first) = m.get_mut(&x.task) {
            *first = Some(first.map_or(x.at, |f| f.min(x.at)));
        }
    }
    m
}

/// Waits until every one of `tasks` was delivered by another node than `victim` after
/// `since`, for at most `timeout`; returns the per-task delays (ms after `since`), sorted.
async fn wait_taken_over(
    c: &Cluster,
    tasks: &[TaskInfo],
    victim: &str,
    since: i64,
    timeout: Duration,
) -> Vec<i64> {
    let start = Instant::now();
    loop {
        let m = taken_over(&c.deliveries(), tasks, victim, since);
        let waiting = m.values().filter(|v| v.is_none()).count();
        if waiting == 0 {
            let mut delays: Vec<i64> = m.values().map(|v| v.unwrap() - since).collect();
            delays.sort_unstable();
            return delays;
        }
        assert!(
            start.elapsed() < timeout,
            "{waiting} of {} of {victim}'s tasks were not taken over by another node within \
             {timeout:?}",
            tasks.len()
        );
        pause(50).await;
    }
}

fn describe_delays(d: &[i64]) -> String {
    let q = |p: f64| d[((d.len() - 1) as f64 * p).round() as usize];
    format!(
        "min {} ms, p50 {} ms, max {} ms over {} tasks",
        d[0],
        q(0.5),
        d[d.len() - 1],
        d.len()
    )
}

fn split(own: &Ownership, tasks: &[TaskInfo], victim: &str) -> (Vec<TaskInfo>, Vec<TaskInfo>) {
    tasks
        .iter()
        .cloned()
        .partition(|t| own.owner_of(t.id) == victim)
}

fn assert_only_victims_partitions_moved(before: &Ownership, after: &Ownership, victim: &str) {
    let moves = before.moves_to(after);
    let wrong: Vec<_> = moves.iter().filter(|m| m.1 != victim).collect();
    eprintln!(
        "[{victim} left] {} partitions moved (it owned {})",
        moves.len(),
        before.partitions_of(victim).len()
    );
    assert!(
        wrong.is_empty(),
        "partitions of surviving members moved when {victim} left (as few as possible should \
         move): {wrong:?}"
    );
}

#[actix_web::test]
async fn kill_9_the_dead_nodes_tasks_resume_on_the_others() {
    let (mut c, before) = Cluster::loaded(Config::default()).await;
    let session = c.cfg.session_timeout_ms;
    let (victim_tasks, other_tasks) = split(&before, &c.tasks, VICTIM);
    eprintln!("[kill9] {VICTIM} owns {} tasks", victim_tasks.len());
    assert!(!victim_tasks.is_empty());

    let kill_at = c.node_mut(VICTIM).kill9();
    eprintln!("[kill9] {VICTIM} killed at {}", stamp(kill_at));
    let delays = wait_taken_over(
        &c,
        &victim_tasks,
        VICTIM,
        kill_at,
        Duration::from_millis((session + 20_000) as u64),
    )
    .await;
    let resumed_at = kill_at + delays[delays.len() - 1];
    eprintln!(
        "[kill9] the dead node's tasks resumed on the others after the kill: {} (session \
         timeout {session} ms)",
        describe_delays(&delays)
    );
    assert!(
        delays[delays.len() - 1] <= session + 2000,
        "the dead node's tasks took {} ms to resume, more than the session timeout + 2 s",
        delays[delays.len() - 1]
    );

    let survivors: Vec<String> = c.live_names();
    let after = c.wait_settled(&survivors, Duration::from_secs(20)).await;
    assert_only_victims_partitions_moved(&before, &after, VICTIM);

    let from = kill_at - 3000;
    let steady_from = resumed_at + 1000;
    let to = steady_from.max(now_ms()) + 3000;
    settle(to).await;
    let d = c.observe();

    // The survivors' own tasks never noticed.
    let others: Vec<&TaskInfo> = other_tasks.iter().collect();
    let r = c
        .analyse("kill9: survivors' tasks", &d, &others, from, to)
        .await;
    r.assert_clean();

    // The dead node's tasks: slots between the kill and the take-over are coalesced (missed),
    // a slot possibly in flight at the kill may come twice, nothing else.
    let victims: Vec<&TaskInfo> = victim_tasks.iter().collect();
    let r = c
        .analyse("kill9: dead node's tasks", &d, &victims, from, to)
        .await;
    eprintln!(
        "[kill9] dead node's tasks: {} slots missed over the take-over ({} tasks)",
        r.missed.len() + r.skipped.len(),
        r.tasks_with_missed()
    );
    let in_flight = |slot: i64| slot >= kill_at - 1500 && slot <= kill_at;
    let bad: Vec<_> = r.duplicates.iter().filter(|x| !in_flight(x.1)).collect();
    assert!(
        bad.is_empty(),
        "duplicates of slots that cannot have been in flight at the kill ({kill_at}): {bad:?}"
    );
    let bad: Vec<_> = r
        .missed
        .iter()
        .chain(&r.skipped)
        .filter(|m| m.1 < kill_at - 1500)
        .collect();
    assert!(bad.is_empty(), "slots before the kill missed: {bad:?}");
    r.assert_on_grid();
    let r = c
        .analyse(
            "kill9: dead node's tasks after take-over",
            &d,
            &victims,
            steady_from,
            to,
        )
        .await;
    r.assert_clean();
    let wrong = Cluster::misattributed(&after, &d, steady_from, i64::MAX);
    assert!(
        wrong.is_empty(),
        "deliveries by a non-owner after the take-over: {:?}",
        &wrong[..wrong.len().min(5)]
    );

    // task_logs: no duplicate row; the dead node may not have written its last few.
    let victim_ids: std::collections::HashSet<Uuid> = victim_tasks.iter().map(|t| t.id).collect();
    let db = c.db.connect().await;
    check_logs(
        &db,
        &d,
        &c.tasks,
        from,
        to,
        Duration::from_secs(15),
        |(t, slot)| victim_ids.contains(t) && *slot >= kill_at - 2000 && *slot <= kill_at,
    )
    .await
    .assert_consistent("kill9");
}

/// Slots of the dead node's tasks due up to this long (ms) after its session timeout may be
/// lost: the server expires a session on its next tick (500 ms in the test's ZooKeeper).
const EXPIRY_TICK_MS: i64 = 500;

#[actix_web::test]
async fn kill_9_costs_only_the_slots_inside_the_session_timeout_and_not_the_survivors_p99() {
    let (mut c, before) = Cluster::loaded(Config::default()).await;
    let session = c.cfg.session_timeout_ms;
    let (victim_tasks, other_tasks) = split(&before, &c.tasks, VICTIM);
    eprintln!("[take-over] {VICTIM} owns {} tasks", victim_tasks.len());
    // A baseline of the survivors' own lateness, in this run, before anything happens.
    let base_from = now_ms() + 500;
    let base_to = base_from + 5000;
    sleep_until_ms(base_to + 100).await;

    let kill_at = c.node_mut(VICTIM).kill9();
    eprintln!("[take-over] {VICTIM} killed at {}", stamp(kill_at));
    let delays = wait_taken_over(
        &c,
        &victim_tasks,
        VICTIM,
        kill_at,
        Duration::from_millis((session + 20_000) as u64),
    )
    .await;
    let (first, last) = (kill_at + delays[0], kill_at + delays[delays.len() - 1]);
    eprintln!(
        "[take-over] the dead node's tasks resumed on the others: {}",
        describe_delays(&delays)
    );
    let survivors = c.live_names();
    let after = c.wait_settled(&survivors, Duration::from_secs(20)).await;
    assert_only_victims_partitions_moved(&before, &after, VICTIM);

    let to = last.max(now_ms()) + 5000;
    settle(to).await;
    let d = c.observe();

    // The dead node's tasks: nothing lost but slots inside the session timeout (and a slot
    // in flight at the kill), nothing sent twice but a slot in flight at the kill.
    let victims: Vec<&TaskInfo> = victim_tasks.iter().collect();
    let r = c
        .analyse(
            "take-over: dead node's tasks",
            &d,
            &victims,
            kill_at - 3000,
            to,
        )
        .await;
    let lost_until = kill_at + session + EXPIRY_TICK_MS;
    let (inside, beyond): (Vec<&Slot>, Vec<&Slot>) = r
        .missed
        .iter()
        .chain(&r.skipped)
        .partition(|m| m.1 >= kill_at - 1500 && m.1 <= lost_until);
    eprintln!(
        "[take-over] dead node's tasks: {} slots lost inside the session timeout, {} after it \
         ({} of them skipped behind a catch-up)",
        inside.len(),
        beyond.len(),
        r.skipped.iter().filter(|m| m.1 > lost_until).count()
    );
    assert!(
        beyond.is_empty(),
        "slots of taken-over tasks lost outside the session timeout (kill at {kill_at}, lost \
         allowed up to {lost_until}), e.g. {:?}: {}",
        &beyond[..beyond.len().min(5)],
        r.summary()
    );
    let in_flight = |slot: i64| slot >= kill_at - 1500 && slot <= kill_at;
    let bad: Vec<_> = r.duplicates.iter().filter(|x| !in_flight(x.1)).collect();
    assert!(
        bad.is_empty(),
        "duplicates of slots not in flight at the kill: {bad:?}"
    );
    r.assert_on_grid();

    // The survivors' own tasks: nothing lost, and their lateness while the taken-over tasks
    // catch up stays near what it was before the kill.
    let others: Vec<&TaskInfo> = other_tasks.iter().collect();
    let base = c
        .analyse(
            "take-over: survivors' tasks before",
            &d,
            &others,
            base_from,
            base_to,
        )
        .await;
    base.assert_clean();
    let during = c
        .analyse(
            "take-over: survivors' tasks during the catch-up",
            &d,
            &others,
            first - 500,
            last + 1500,
        )
        .await;
    during.assert_clean();
    let allowed = (base.lateness.1 * 3).max(base.lateness.1 + CATCH_UP_P99_SLACK_MS);
    eprintln!(
        "[take-over] survivors' lateness p99: {} ms before, {} ms during the catch-up (allowed \
         {allowed} ms)",
        base.lateness.1, during.lateness.1
    );
    assert!(
        during.lateness.1 <= allowed,
        "the catch-up of the taken-over tasks made the survivors' own fires late: p99 {} ms \
         during it, {} ms before the kill",
        during.lateness.1,
        base.lateness.1
    );
}

/// How much the survivors' lateness p99 may grow during a catch-up, at least (ms).
const CATCH_UP_P99_SLACK_MS: i64 = 50;

#[actix_web::test]
async fn sigterm_hands_over_without_a_missed_or_duplicate_slot() {
    let (mut c, before) = Cluster::loaded(Config::default()).await;
    let (victim_tasks, _) = split(&before, &c.tasks, VICTIM);
    eprintln!("[sigterm] {VICTIM} owns {} tasks", victim_tasks.len());

    let (term_at, exit_at, code) = c.node_mut(VICTIM).sigterm(Duration::from_secs(30)).await;
    eprintln!(
        "[sigterm] SIGTERM to {VICTIM} at {}; it exited {} ms later with {code:?}",
        stamp(term_at),
        exit_at - term_at
    );
    let log = c.node(VICTIM).stderr();
    assert_eq!(
        code,
        Some(0),
        "SIGTERM must end the node with 0; stderr:\n{}",
        crate::procs::excerpt(&log, 40)
    );

    let survivors = c.live_names();
    let after = c.wait_settled(&survivors, Duration::from_secs(20)).await;
    assert_only_victims_partitions_moved(&before, &after, VICTIM);

    let from = term_at - 3000;
    let to = exit_at.max(now_ms()) + 4000;
    settle(to).await;
    let d = c.observe();
    let all: Vec<&TaskInfo> = c.tasks.iter().collect();
    let r = c.analyse("sigterm", &d, &all, from, to).await;
    let victims: Vec<&TaskInfo> = victim_tasks.iter().collect();
    c.analyse("sigterm: leaving node's tasks", &d, &victims, from, to)
        .await;

    // The hand-over gap: per task, last delivery by the leaving node to the first by another.
    let mut gaps = Vec::new();
    for t in &victim_tasks {
        let last_own = d
            .iter()
            .filter(|x| x.task == t.id && x.node.as_deref() == Some(VICTIM))
            .map(|x| x.slot)
            .max();
        let first_other = d
            .iter()
            .filter(|x| x.task == t.id && x.at >= term_at && x.node.as_deref() != Some(VICTIM))
            .map(|x| x.slot)
            .min();
        if let (Some(a), Some(b)) = (last_own, first_other) {
            gaps.push(b - a);
        }
    }
    gaps.sort_unstable();
    if !gaps.is_empty() {
        eprintln!(
            "[sigterm] slot distance from the leaving node's last delivery to the next owner's \
             first, per task: {} (1000 = seamless)",
            describe_delays(&gaps)
        );
    }
    r.assert_clean();

    let db = c.db.connect().await;
    check_logs(&db, &d, &c.tasks, from, to, Duration::from_secs(15), |_| {
        false
    })
    .await
    .assert_consistent("sigterm");
}

#[actix_web::test]
async fn sigstop_past_the_session_timeout_then_sigcont_never_fires_twice() {
    let (mut c, before) = Cluster::loaded(Config::default()).await;
    let session = c.cfg.session_timeout_ms;
    let (victim_tasks, other_tasks) = split(&before, &c.tasks, VICTIM);
    eprintln!("[sigstop] {VICTIM} owns {} tasks", victim_tasks.len());

    let stop_at = c.node_mut(VICTIM).sigstop();
    eprintln!("[sigstop] {VICTIM} stopped at {}", stamp(stop_at));
    let delays = wait_taken_over(
        &c,
        &victim_tasks,
        VICTIM,
        stop_at,
        Duration::from_millis((session + 20_000) as u64),
    )
    .await;
    let resumed_at = stop_at + delays[delays.len() - 1];
    eprintln!(
        "[sigstop] the frozen node's tasks resumed on the others: {}",
        describe_delays(&delays)
    );
    assert!(
        delays[delays.len() - 1] <= session + 2000,
        "the frozen node's tasks took {} ms to resume, more than the session timeout + 2 s",
        delays[delays.len() - 1]
    );
    let survivors = c.live_names();
    let during = c.wait_settled(&survivors, Duration::from_secs(20)).await;
    assert_only_victims_partitions_moved(&before, &during, VICTIM);

    // Frozen for the session timeout + 3 s at least, then woken.
    sleep_until_ms(stop_at + session + 3000).await;
    let cont_at = c.node_mut(VICTIM).sigcont();
    eprintln!(
        "[sigstop] SIGCONT at {}, {} ms after SIGSTOP",
        stamp(cont_at),
        cont_at - stop_at
    );
    let names = c.names();
    let rejoined = c.wait_settled(&names, Duration::from_secs(30)).await;
    let rejoined_at = now_ms();
    eprintln!(
        "[sigstop] {VICTIM} back in the membership {} ms after SIGCONT: {}",
        rejoined_at - cont_at,
        rejoined.summary()
    );
    assert!(
        c.node_mut(VICTIM).is_running(),
        "the woken node must stay up and rejoin"
    );

    let from = stop_at - 3000;
    let steady_from = rejoined_at + 1500;
    let to = steady_from + 3000;
    settle(to).await;
    let d = c.observe();

    // After SIGCONT the woken node sends no slot that fell due while it was frozen (it must
    // know its lease lapsed). A call it had begun right before the freeze may still go out on
    // waking; those are counted, and may not duplicate anything (checked below).
    let woken: Vec<&Delivery> = d
        .iter()
        .filter(|x| x.node.as_deref() == Some(VICTIM) && x.at >= cont_at)
        .collect();
    let stale: Vec<&&Delivery> = woken
        .iter()
        .filter(|x| x.slot > stop_at && x.slot < cont_at)
        .collect();
    let in_flight = woken.iter().filter(|x| x.slot <= stop_at).count();
    let first_woken = woken.iter().map(|x| x.at).min();
    eprintln!(
        "[sigstop] after SIGCONT {VICTIM} sent {} deliveries, the first {:?} ms after SIGCONT; \
         {} for slots due while it was frozen, {in_flight} begun before the freeze",
        woken.len(),
        first_woken.map(|a| a - cont_at),
        stale.len(),
    );
    assert!(
        stale.is_empty(),
        "the woken node fired slots that fell due while it was frozen (not fenced), e.g. {:?}",
        &stale[..stale.len().min(5)]
    );
    // What it sends after waking is only for partitions the assignment gave it back.
    let not_its: Vec<&&Delivery> = woken
        .iter()
        .filter(|x| x.slot > stop_at && rejoined.owner_of(x.task) != VICTIM)
        .collect();
    assert!(
        not_its.is_empty(),
        "after SIGCONT the woken node delivered tasks of partitions it does not own, e.g. {:?}",
        &not_its[..not_its.len().min(5)]
    );

    let all: Vec<&TaskInfo> = c.tasks.iter().collect();
    let r = c.analyse("sigstop: whole run", &d, &all, from, to).await;
    r.assert_no_duplicates();
    r.assert_on_grid();
    let others: Vec<&TaskInfo> = other_tasks.iter().collect();
    let r = c
        .analyse("sigstop: other nodes' tasks", &d, &others, from, to)
        .await;
    r.assert_clean();
    let victims: Vec<&TaskInfo> = victim_tasks.iter().collect();
    let r = c
        .analyse(
            "sigstop: frozen node's tasks from the take-over on",
            &d,
            &victims,
            resumed_at + 1000,
            to,
        )
        .await;
    r.assert_clean();
    let r = c
        .analyse("sigstop: after the rejoin", &d, &all, steady_from, to)
        .await;
    r.assert_clean();

    let victim_ids: std::collections::HashSet<Uuid> = victim_tasks.iter().map(|t| t.id).collect();
    let db = c.db.connect().await;
    // A slot delivered just before the freeze may have lost its row with the partition.
    check_logs(
        &db,
        &d,
        &c.tasks,
        from,
        to,
        Duration::from_secs(15),
        |(t, slot)| victim_ids.contains(t) && *slot >= stop_at - 2000 && *slot <= stop_at,
    )
    .await
    .assert_consistent("sigstop");
}
