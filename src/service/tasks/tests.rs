//! The task service without HTTP: a SQLite store in a temporary directory, the real
//! persistence actor, and a stand-in registry that records what it was sent.

use std::sync::Arc;

use crate::domain::limits::InputLimits;
use actix::prelude::*;
use serde_json::json;

use super::*;
use crate::actors::task::TaskActor;
use crate::config::LimitSettings;
use crate::crypto::Cipher;
use crate::domain::validate::{parse_create_within, parse_patch_within};

/// What the stand-in registry was sent, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Activate { task_id: Uuid, version: i64 },
    Replace { version: i64, reschedule: bool },
    Deactivate(Uuid),
    RunNow { task_id: Uuid, paused: bool },
}

#[derive(Default)]
struct FakeRegistry {
    seen: Vec<Seen>,
}

impl Actor for FakeRegistry {
    type Context = Context<Self>;
}

impl Handler<Activate> for FakeRegistry {
    type Result = ();
    fn handle(&mut self, msg: Activate, _: &mut Self::Context) {
        self.seen.push(Seen::Activate {
            task_id: msg.0.task_id,
            version: msg.0.version,
        });
    }
}

impl Handler<Replace> for FakeRegistry {
    type Result = ();
    fn handle(&mut self, msg: Replace, _: &mut Self::Context) {
        self.seen.push(Seen::Replace {
            version: msg.task.version,
            reschedule: msg.reschedule,
        });
    }
}

impl Handler<Deactivate> for FakeRegistry {
    type Result = Option<Addr<TaskActor>>;
    fn handle(&mut self, msg: Deactivate, _: &mut Self::Context) -> Self::Result {
        self.seen.push(Seen::Deactivate(msg.0));
        None
    }
}

impl Handler<crate::actors::registry::RunNow> for FakeRegistry {
    type Result = MessageResult<crate::actors::registry::RunNow>;
    fn handle(
        &mut self,
        msg: crate::actors::registry::RunNow,
        _: &mut Self::Context,
    ) -> Self::Result {
        self.seen.push(Seen::RunNow {
            task_id: msg.task_id,
            paused: msg.paused.is_some(),
        });
        MessageResult(RunNowReply::Started(msg.now))
    }
}

impl Handler<TakeOneOff> for FakeRegistry {
    type Result = Option<Addr<TaskActor>>;
    fn handle(&mut self, _: TakeOneOff, _: &mut Self::Context) -> Self::Result {
        None
    }
}

/// Everything the registry was sent so far (the mailbox is in order, so this comes after).
#[derive(Message)]
#[rtype(result = "Vec<Seen>")]
struct Take;

impl Handler<Take> for FakeRegistry {
    type Result = MessageResult<Take>;
    fn handle(&mut self, _: Take, _: &mut Self::Context) -> Self::Result {
        MessageResult(std::mem::take(&mut self.seen))
    }
}

struct Harness {
    _dir: tempfile::TempDir,
    store: Store,
    quotas: Quotas,
    persistence: Addr<PersistenceActor>,
    registry: Addr<FakeRegistry>,
}

impl Harness {
    async fn new(limits: LimitSettings) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = format!("sqlite://{}/tasks.db?mode=rwc", dir.path().display());
        let db = crate::store::connect(&url, 1).await.expect("SQLite opens");
        crate::store::migrate(&db)
            .await
            .expect("the schema migrates");
        Self {
            _dir: dir,
            store: Store::new(db.clone(), Arc::new(Cipher::from_key([7; 32]))),
            quotas: Quotas::new(&limits, false),
            persistence: PersistenceActor::new(db).start(),
            registry: FakeRegistry::default().start(),
        }
    }

    fn service(&self) -> TaskService<'_> {
        TaskService {
            store: &self.store,
            quotas: &self.quotas,
            persistence: self.persistence.clone().recipient(),
            registry: RegistryPort {
                activate: self.registry.clone().recipient(),
                replace: self.registry.clone().recipient(),
                deactivate: self.registry.clone().recipient(),
                run_now: self.registry.clone().recipient(),
                take_one_off: self.registry.clone().recipient(),
            },
            notices: None,
        }
    }

    async fn seen(&self) -> Vec<Seen> {
        self.registry
            .send(Take)
            .await
            .expect("the registry answers")
    }

    async fn row(&self, task_id: Uuid) -> tasks::Model {
        self.store
            .get_task(task_id)
            .await
            .expect("the store answers")
            .expect("the task is stored")
    }
}

const USER: Principal = Principal {
    user_id: 1001,
    admin: false,
};

fn every_minute() -> TaskSpec {
    parse_create_within(
        &json!({
            "user_id": 1001,
            "type": "interval",
            "http_endpoint": "https://example.com/hook",
            "interval_seconds": 60,
        }),
        &InputLimits::DEFAULT,
    )
    .expect("a valid definition")
}

fn patch(v: serde_json::Value) -> TaskPatch {
    parse_patch_within(&v, &InputLimits::DEFAULT).expect("a valid patch")
}

#[actix_rt::test]
async fn a_created_task_is_committed_before_its_actor_is_started() {
    let h = Harness::new(LimitSettings::default()).await;
    let before = now_ms();
    let created = h.service().create(every_minute()).await.expect("created");

    let row = h.row(created.task_id).await;
    assert_eq!(row.status, "pending");
    assert_eq!(row.version, 1);
    assert_eq!(row.next_run_time, created.next_run_time);
    let next = created.next_run_time.expect("a first run");
    assert!(next >= before + 60_000, "the first run is an interval away");
    assert_eq!(
        h.seen().await,
        vec![Seen::Activate {
            task_id: created.task_id,
            version: 1
        }]
    );
}

#[actix_rt::test]
async fn a_create_past_the_active_task_quota_is_refused_and_nothing_is_written() {
    let h = Harness::new(LimitSettings {
        max_active_tasks_per_user: 1,
        ..LimitSettings::default()
    })
    .await;
    h.service()
        .create(every_minute())
        .await
        .expect("the first fits");
    h.seen().await;

    let refused = h.service().create(every_minute()).await;
    assert!(
        matches!(refused, Err(TaskError::QuotaExceeded(_))),
        "{refused:?}"
    );
    let (_, total) = h
        .store
        .list_user_tasks(1001, &crate::store::TaskSearch::default(), 10, 0)
        .await
        .expect("the store answers");
    assert_eq!(total, 1);
    assert_eq!(h.seen().await, vec![]);
}

#[actix_rt::test]
async fn a_patch_commits_the_next_version_and_hands_it_to_the_actor() {
    let h = Harness::new(LimitSettings::default()).await;
    let tasks = h.service();
    let id = tasks.create(every_minute()).await.expect("created").task_id;
    h.seen().await;

    let m = tasks.owned(&USER, id).await.expect("visible to its user");
    let changed = tasks
        .patch(
            &USER,
            id,
            m,
            Some(1),
            patch(json!({"interval_seconds": 120})),
        )
        .await
        .expect("changed");

    assert_eq!(changed.version, 2);
    assert_eq!(changed.interval_seconds, Some(120));
    assert_eq!(
        h.seen().await,
        vec![Seen::Replace {
            version: 2,
            reschedule: true
        }]
    );
}

#[actix_rt::test]
async fn a_patch_that_leaves_the_schedule_keeps_the_next_run() {
    let h = Harness::new(LimitSettings::default()).await;
    let tasks = h.service();
    let created = tasks.create(every_minute()).await.expect("created");
    h.seen().await;

    let m = tasks.owned(&USER, created.task_id).await.expect("visible");
    let changed = tasks
        .patch(
            &USER,
            created.task_id,
            m,
            None,
            patch(json!({"body": {"a": 1}})),
        )
        .await
        .expect("changed");

    assert_eq!(changed.next_run_time, created.next_run_time);
    assert_eq!(
        h.seen().await,
        vec![Seen::Replace {
            version: 2,
            reschedule: false
        }]
    );
}

#[actix_rt::test]
async fn a_stale_if_match_is_refused_and_nothing_is_written() {
    let h = Harness::new(LimitSettings::default()).await;
    let tasks = h.service();
    let id = tasks.create(every_minute()).await.expect("created").task_id;
    h.seen().await;

    let m = tasks.owned(&USER, id).await.expect("visible");
    let refused = tasks
        .patch(
            &USER,
            id,
            m,
            Some(7),
            patch(json!({"interval_seconds": 120})),
        )
        .await;

    match refused {
        Err(TaskError::VersionMismatch(message)) => assert_eq!(
            message,
            "If-Match: version 7 is stale; the task is at version 1"
        ),
        other => panic!("expected a version mismatch, got {other:?}"),
    }
    assert_eq!(h.row(id).await.version, 1);
    assert_eq!(h.seen().await, vec![]);
}

#[actix_rt::test]
async fn a_patch_that_lost_the_race_is_applied_again_to_the_fresh_row() {
    let h = Harness::new(LimitSettings::default()).await;
    let tasks = h.service();
    let id = tasks.create(every_minute()).await.expect("created").task_id;
    let stale = tasks.owned(&USER, id).await.expect("visible");
    let first = tasks.owned(&USER, id).await.expect("visible");
    tasks
        .patch(&USER, id, first, None, patch(json!({"body": {"a": 1}})))
        .await
        .expect("the concurrent change");
    h.seen().await;

    // Based on version 1, the row is at 2: the write misses and is retried on version 2.
    let changed = tasks
        .patch(
            &USER,
            id,
            stale,
            None,
            patch(json!({"interval_seconds": 120})),
        )
        .await
        .expect("changed on the second try");

    assert_eq!(changed.version, 3);
    assert_eq!(changed.interval_seconds, Some(120));
    assert_eq!(changed.body.as_deref(), Some(r#"{"a":1}"#));
    assert_eq!(
        h.seen().await,
        vec![Seen::Replace {
            version: 3,
            reschedule: true
        }]
    );
}

#[actix_rt::test]
async fn cancel_stops_the_actor_first_and_a_second_cancel_is_refused() {
    let h = Harness::new(LimitSettings::default()).await;
    let tasks = h.service();
    let id = tasks.create(every_minute()).await.expect("created").task_id;
    h.seen().await;

    let m = tasks.owned(&USER, id).await.expect("visible");
    tasks.cancel(&USER, id, m).await.expect("cancelled");
    assert_eq!(h.row(id).await.status, "stopped");
    assert_eq!(h.seen().await, vec![Seen::Deactivate(id)]);

    let m = tasks.owned(&USER, id).await.expect("still visible");
    match tasks.cancel(&USER, id, m).await {
        Err(TaskError::InvalidState(message)) => {
            assert_eq!(message, "status: the task is already stopped")
        }
        other => panic!("expected an invalid state, got {other:?}"),
    }
}

#[actix_rt::test]
async fn a_stopped_task_cannot_be_patched() {
    let h = Harness::new(LimitSettings::default()).await;
    let tasks = h.service();
    let id = tasks.create(every_minute()).await.expect("created").task_id;
    let m = tasks.owned(&USER, id).await.expect("visible");
    tasks.cancel(&USER, id, m).await.expect("cancelled");

    let m = tasks.owned(&USER, id).await.expect("visible");
    let refused = tasks
        .patch(&USER, id, m, None, patch(json!({"interval_seconds": 120})))
        .await;
    assert!(
        matches!(refused, Err(TaskError::InvalidState(_))),
        "{refused:?}"
    );
}

#[actix_rt::test]
async fn delete_stops_the_actor_and_removes_the_task() {
    let h = Harness::new(LimitSettings::default()).await;
    let tasks = h.service();
    let id = tasks.create(every_minute()).await.expect("created").task_id;
    h.seen().await;

    tasks.delete(id).await.expect("deleted");
    assert_eq!(h.seen().await, vec![Seen::Deactivate(id)]);
    assert!(matches!(
        tasks.owned(&USER, id).await,
        Err(TaskError::NotFound)
    ));
}

#[actix_rt::test]
async fn another_users_task_is_not_found_but_an_admin_sees_it() {
    let h = Harness::new(LimitSettings::default()).await;
    let tasks = h.service();
    let id = tasks.create(every_minute()).await.expect("created").task_id;

    let stranger = Principal {
        user_id: 7,
        admin: false,
    };
    assert!(matches!(
        tasks.owned(&stranger, id).await,
        Err(TaskError::NotFound)
    ));
    let admin = Principal {
        user_id: 7,
        admin: true,
    };
    assert!(tasks.owned(&admin, id).await.is_ok());
}

#[actix_rt::test]
async fn a_pause_releases_the_actor_then_commits_paused_with_the_counters_kept() {
    let h = Harness::new(LimitSettings::default()).await;
    let tasks = h.service();
    let id = tasks.create(every_minute()).await.expect("created").task_id;
    h.seen().await;

    let m = tasks.owned(&USER, id).await.expect("visible");
    let paused = tasks.pause(&USER, id, m, Some(1)).await.expect("paused");
    assert_eq!(paused.status, "paused");
    assert_eq!(paused.version, 2);
    assert_eq!(paused.next_run_time, None, "a paused task has no next run");
    assert_eq!(paused.execution_count, 0);
    assert_eq!(h.seen().await, vec![Seen::Deactivate(id)]);

    let m = tasks.owned(&USER, id).await.expect("visible");
    match tasks.pause(&USER, id, m, None).await {
        Err(TaskError::InvalidState(message)) => assert_eq!(
            message,
            "status: the task is paused; only pending or running tasks can be paused"
        ),
        other => panic!("expected an invalid state, got {other:?}"),
    }
    assert_eq!(h.seen().await, vec![]);
}

#[actix_rt::test]
async fn a_stale_pause_leaves_the_task_running_and_its_actor_in_place() {
    let h = Harness::new(LimitSettings::default()).await;
    let tasks = h.service();
    let id = tasks.create(every_minute()).await.expect("created").task_id;
    h.seen().await;

    let m = tasks.owned(&USER, id).await.expect("visible");
    let refused = tasks.pause(&USER, id, m, Some(5)).await;
    assert!(
        matches!(refused, Err(TaskError::VersionMismatch(_))),
        "{refused:?}"
    );
    let row = h.row(id).await;
    assert_eq!((row.status.as_str(), row.version), ("pending", 1));
    assert_eq!(h.seen().await, vec![], "the actor was never touched");
}

#[actix_rt::test]
async fn a_resume_takes_the_first_slot_after_now_and_restarts_the_actor() {
    let h = Harness::new(LimitSettings::default()).await;
    let tasks = h.service();
    let id = tasks.create(every_minute()).await.expect("created").task_id;
    let anchor = h.row(id).await.start_time.expect("an anchor");
    let m = tasks.owned(&USER, id).await.expect("visible");
    tasks.pause(&USER, id, m, None).await.expect("paused");
    h.seen().await;

    let m = tasks.owned(&USER, id).await.expect("visible");
    let refused = tasks.resume(&USER, id, m, Some(1)).await;
    assert!(
        matches!(refused, Err(TaskError::VersionMismatch(_))),
        "{refused:?}"
    );
    let before = now_ms();
    let m = tasks.owned(&USER, id).await.expect("visible");
    let resumed = tasks.resume(&USER, id, m, Some(2)).await.expect("resumed");
    assert_eq!(resumed.status, "pending", "it had not executed yet");
    assert_eq!(resumed.version, 3);
    let next = resumed.next_run_time.expect("a next run");
    assert!(next > before, "strictly after now");
    assert_eq!((next - anchor).rem_euclid(60_000), 0, "on its grid");
    assert_eq!(
        h.seen().await,
        vec![Seen::Activate {
            task_id: id,
            version: 3
        }]
    );

    let m = tasks.owned(&USER, id).await.expect("visible");
    match tasks.resume(&USER, id, m, None).await {
        Err(TaskError::InvalidState(message)) => assert_eq!(
            message,
            "status: the task is pending; only a paused task can be resumed"
        ),
        other => panic!("expected an invalid state, got {other:?}"),
    }
}

#[actix_rt::test]
async fn a_paused_task_holds_its_active_place_and_can_be_cancelled() {
    let h = Harness::new(LimitSettings {
        max_active_tasks_per_user: 1,
        ..LimitSettings::default()
    })
    .await;
    let tasks = h.service();
    let id = tasks.create(every_minute()).await.expect("created").task_id;
    let m = tasks.owned(&USER, id).await.expect("visible");
    tasks.pause(&USER, id, m, None).await.expect("paused");
    assert_eq!(h.store.count_active(1001).await.expect("counted"), 1);
    let refused = tasks.create(every_minute()).await;
    assert!(
        matches!(refused, Err(TaskError::QuotaExceeded(_))),
        "{refused:?}"
    );

    let m = tasks.owned(&USER, id).await.expect("visible");
    tasks.cancel(&USER, id, m).await.expect("cancelled");
    assert_eq!(h.row(id).await.status, "stopped");
    tasks
        .create(every_minute())
        .await
        .expect("a cancelled task frees its place");
}

#[actix_rt::test]
async fn a_once_task_whose_time_passed_while_paused_runs_at_its_resume() {
    let h = Harness::new(LimitSettings::default()).await;
    let tasks = h.service();
    let at = now_ms() + 200;
    let spec = parse_create_within(
        &json!({
            "user_id": 1001,
            "type": "once",
            "http_endpoint": "https://example.com/hook",
            "start_time": crate::time::to_rfc3339(at),
        }),
        &InputLimits::DEFAULT,
    )
    .expect("a valid definition");
    let id = tasks.create(spec).await.expect("created").task_id;
    let m = tasks.owned(&USER, id).await.expect("visible");
    tasks.pause(&USER, id, m, None).await.expect("paused");
    while now_ms() <= at + 50 {
        actix_rt::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    let before = now_ms();
    let m = tasks.owned(&USER, id).await.expect("visible");
    let resumed = tasks.resume(&USER, id, m, None).await.expect("resumed");
    let next = resumed.next_run_time.expect("a run");
    assert!(
        next >= before && next <= now_ms(),
        "runs at the resume, not at its passed time {at}: {next}"
    );
}

#[actix_rt::test]
async fn run_now_goes_to_the_registry_with_a_paused_task_and_refuses_a_finished_one() {
    let h = Harness::new(LimitSettings::default()).await;
    let tasks = h.service();
    let id = tasks.create(every_minute()).await.expect("created").task_id;
    h.seen().await;

    let before = now_ms();
    let m = tasks.owned(&USER, id).await.expect("visible");
    match tasks.run_now(&USER, id, m).await {
        Ok(RunNowOutcome::Started(slot)) => assert!(slot >= before, "the request's moment"),
        other => panic!("expected a start, got {other:?}"),
    }
    let m = tasks.owned(&USER, id).await.expect("visible");
    tasks.pause(&USER, id, m, None).await.expect("paused");
    let m = tasks.owned(&USER, id).await.expect("visible");
    tasks
        .run_now(&USER, id, m)
        .await
        .expect("a paused task runs");
    assert_eq!(
        h.seen().await,
        vec![
            Seen::RunNow {
                task_id: id,
                paused: false
            },
            Seen::Deactivate(id),
            Seen::RunNow {
                task_id: id,
                paused: true
            },
        ]
    );

    let m = tasks.owned(&USER, id).await.expect("visible");
    tasks.cancel(&USER, id, m).await.expect("cancelled");
    h.seen().await;
    let m = tasks.owned(&USER, id).await.expect("visible");
    match tasks.run_now(&USER, id, m).await {
        Err(TaskError::InvalidState(message)) => assert_eq!(
            message,
            "status: the task is stopped; only pending, running or paused tasks can run"
        ),
        other => panic!("expected an invalid state, got {other:?}"),
    }
    assert_eq!(h.seen().await, vec![], "the registry is not asked");
}
