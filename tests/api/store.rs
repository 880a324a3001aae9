//! The storage edge's batched writes, against the real databases.

use entities::tasks;
use sea_orm::EntityTrait;
use tickwheel::store::{advance_many, AdvanceRow};

use crate::helpers::{interval_task, spawn_app, Backend};
use crate::on_both_backends;

on_both_backends!(batched_advances_update_active_tasks_and_never_touch_ended_ones);

/// Also: an execution that ends after its task was paused (through another node, before
/// this node's writes reached the database) still counts, but moves no next run.
async fn batched_advances_update_active_tasks_and_never_touch_ended_ones(backend: Backend) {
    let app = spawn_app(backend).await;
    // Idle tasks (an hour apart), so nothing but this test writes their counters.
    let active = app.create_task(interval_task(&app, "/a", 3600)).await;
    let ended = app.create_task(interval_task(&app, "/b", 3600)).await;
    let paused = app.create_task(interval_task(&app, "/c", 3600)).await;
    let (status, _) = app.cancel(&ended).await;
    assert_eq!(status, 200);
    let r = app
        .client
        .put(app.url(&format!("/api/v1/tasks/{paused}/pause")))
        .bearer_auth(crate::helpers::token(1001))
        .send()
        .await
        .expect("pause");
    assert_eq!(r.status(), 200);
    let db = sea_orm::Database::connect(&app.db.url)
        .await
        .expect("connect to the test database");
    let before = row(&db, &ended).await;
    let paused_before = row(&db, &paused).await;

    advance_many(
        &db,
        &[
            AdvanceRow {
                task_id: &active,
                next_run_time: Some(4_102_444_800_000),
                execution_count: 7,
                consecutive_failures: 2,
            },
            AdvanceRow {
                task_id: &ended,
                next_run_time: Some(4_102_444_800_000),
                execution_count: 9,
                consecutive_failures: 3,
            },
            AdvanceRow {
                task_id: &paused,
                next_run_time: Some(4_102_444_800_000),
                execution_count: 4,
                consecutive_failures: 1,
            },
        ],
    )
    .await
    .expect("advance_many");

    let a = row(&db, &active).await;
    assert_eq!(a.next_run_time, Some(4_102_444_800_000));
    assert_eq!(a.execution_count, 7);
    assert_eq!(a.consecutive_failures, 2);
    assert_eq!(a.status, "pending");

    let b = row(&db, &ended).await;
    assert_eq!(b.status, "stopped");
    assert_eq!(b.next_run_time, before.next_run_time);
    assert_eq!(b.execution_count, before.execution_count);
    assert_eq!(b.consecutive_failures, before.consecutive_failures);

    let c = row(&db, &paused).await;
    assert_eq!(c.status, "paused");
    assert_eq!(c.next_run_time, paused_before.next_run_time);
    assert_eq!(c.execution_count, 4);
    assert_eq!(c.consecutive_failures, 1);
}

async fn row(db: &sea_orm::DatabaseConnection, id: &str) -> tasks::Model {
    tasks::Entity::find_by_id(id.to_string())
        .one(db)
        .await
        .expect("read the task row")
        .unwrap_or_else(|| panic!("no row for task {id}"))
}

on_both_backends!(a_nodes_schedule_writes_apply_only_to_partitions_it_holds);

/// Cluster fencing at the writer: with a fence, the persistence actor applies a node's
/// schedule advances only for tasks whose partition that node holds in `cluster_partitions`;
/// a claim by another node cuts it off, and the API's writes are never fenced.
async fn a_nodes_schedule_writes_apply_only_to_partitions_it_holds(backend: Backend) {
    use actix::Actor;
    use tickwheel::actors::persistence::{Commit, Fence, Flush, Persist, PersistenceActor};
    use tickwheel::domain::partition::partition_of;
    use tickwheel::domain::TaskStatus;
    use tickwheel::store::Write;

    const PARTITIONS: u32 = 64;
    let app = spawn_app(backend).await;
    // Idle tasks in two different partitions.
    let mine = app.create_task(interval_task(&app, "/mine", 3600)).await;
    let part = |id: &str| partition_of(id.parse().expect("a uuid"), PARTITIONS);
    let theirs = loop {
        let t = app.create_task(interval_task(&app, "/theirs", 3600)).await;
        if part(&t) != part(&mine) {
            break t;
        }
    };
    let db = sea_orm::Database::connect(&app.db.url)
        .await
        .expect("connect to the test database");
    let writer = PersistenceActor::new(db.clone())
        .with_fence(Fence {
            owner: "n2/one".into(),
            partitions: PARTITIONS,
        })
        .start();
    let claim = |partitions: Vec<u32>, owner: &str| {
        writer.send(Commit(Write::Claim {
            partitions,
            owner: owner.into(),
            now: 1,
        }))
    };
    claim(vec![part(&mine)], "n2/one")
        .await
        .expect("sent")
        .expect("claimed");
    claim(vec![part(&theirs)], "n1/other")
        .await
        .expect("sent")
        .expect("claimed");
    let advance = |id: &str, count: i64| Write::Advance {
        task_id: id.to_string(),
        next_run_time: Some(4_102_444_800_000),
        execution_count: count,
        consecutive_failures: 0,
    };

    writer.do_send(Persist(vec![advance(&mine, 5), advance(&theirs, 5)]));
    writer.send(Flush).await.expect("flushed");
    assert_eq!(
        row(&db, &mine).await.execution_count,
        5,
        "its own partition"
    );
    assert_eq!(
        row(&db, &theirs).await.execution_count,
        0,
        "a partition another node holds is fenced off"
    );

    // Another node claims this node's partition: from then on its writes there are dropped.
    claim(vec![part(&mine)], "n3/new")
        .await
        .expect("sent")
        .expect("claimed");
    writer.do_send(Persist(vec![advance(&mine, 6)]));
    writer.send(Flush).await.expect("flushed");
    assert_eq!(
        row(&db, &mine).await.execution_count,
        5,
        "fenced after the claim"
    );

    // A claim counts epochs; and a client's change (with its expected version) is not fenced.
    let epoch: i64 = {
        use entities::cluster_partitions;
        cluster_partitions::Entity::find_by_id(part(&mine) as i32)
            .one(&db)
            .await
            .expect("read")
            .expect("a claim row")
            .epoch
    };
    assert_eq!(epoch, 2);
    let version = row(&db, &theirs).await.version;
    let changed = writer
        .send(Commit(Write::SetStatus {
            task_id: theirs.clone(),
            from: vec![TaskStatus::Pending, TaskStatus::Running],
            to: TaskStatus::Stopped,
            expected_version: Some(version),
            now: 2,
        }))
        .await
        .expect("sent")
        .expect("committed");
    assert_eq!(changed, 1);
    assert_eq!(row(&db, &theirs).await.status, "stopped");
}
