//! A change whose notice never reached the owner (Redis lost it, or the owner was
//! resubscribing) is a delay, not a loss: the owner's reconciliation compares its tasks with
//! the database every 5 s. Simulated by changing two rows behind every node's back — the
//! same rows a patch and a cancel through another node write, without the notice.

use sea_orm::ConnectionTrait;
use uuid::Uuid;

use crate::cluster::{Cluster, Config};
use crate::procs::{now_ms, sleep_until_ms};

/// The reconciliation period (5 s) plus room for a loaded machine.
const WITHIN_MS: i64 = 8_000;

#[actix_web::test]
async fn a_redefinition_or_cancel_without_its_notice_still_reaches_the_owner() {
    let (mut c, _) = Cluster::loaded(Config {
        tasks: 30,
        ..Config::default()
    })
    .await;
    let (probes, _) = c.create_tasks(2, "/lost-notice", None).await;
    let (patched, cancelled) = (probes[0].id, probes[1].id);
    let slots = |c: &Cluster, id: Uuid| -> Vec<i64> {
        let mut s: Vec<i64> = c
            .deliveries()
            .iter()
            .filter(|d| d.task == id)
            .map(|d| d.slot)
            .collect();
        s.sort_unstable();
        s
    };
    sleep_until_ms(now_ms() + 2_500).await;
    assert!(slots(&c, patched).len() >= 2 && slots(&c, cancelled).len() >= 2);

    // What a patch (every 3 s instead of every 1 s) and a cancel write, minus the notice.
    let db = c.db.connect().await;
    let changed_at = now_ms();
    for sql in [
        format!(
            "UPDATE tasks SET interval_seconds = 3, version = version + 1 WHERE task_id = '{patched}'"
        ),
        format!(
            "UPDATE tasks SET status = 'stopped', next_run_time = NULL, version = version + 1 \
             WHERE task_id = '{cancelled}'"
        ),
    ] {
        let r = db.execute_unprepared(&sql).await.expect("update the row");
        assert_eq!(r.rows_affected(), 1, "{sql}");
    }

    let settled = changed_at + WITHIN_MS;
    sleep_until_ms(settled + 7_000).await;
    let late_cancelled: Vec<i64> = slots(&c, cancelled)
        .into_iter()
        .filter(|s| *s > settled)
        .collect();
    assert!(
        late_cancelled.is_empty(),
        "the task cancelled without a notice still fired {} times more than {WITHIN_MS} ms \
         after the change: {late_cancelled:?}",
        late_cancelled.len()
    );
    let after: Vec<i64> = slots(&c, patched)
        .into_iter()
        .filter(|s| *s > settled)
        .collect();
    let gaps: Vec<i64> = after.windows(2).map(|w| w[1] - w[0]).collect();
    eprintln!(
        "[reconcile] patched task: slots after the change settled {after:?} (gaps {gaps:?}); \
         cancelled task: last slot {:?} ms after the change",
        slots(&c, cancelled).last().map(|s| s - changed_at)
    );
    assert!(
        after.len() >= 2 && gaps.iter().all(|g| *g == 3_000),
        "the task redefined without a notice does not run every 3 s {WITHIN_MS} ms after the \
         change: slots {after:?}"
    );
}
