//! Misfire policy (README, "The API": misfires): after a `kill -9` and downtime, a recurring
//! task with `fire_once` fires once for the latest missed slot (logged as a `catch_up`), one
//! with `skip` fires none of them and logs one row saying how many it skipped; both go on on
//! their grid, and the task view counts `missed_slots`. The field is validated, patchable and
//! shown. Every test runs on SQLite and MariaDB.

use serde_json::{json, Value};

use crate::helpers::*;
use crate::on_both_backends;
use crate::recovery::{
    interval_body, now_ms, pause, slot_of, wait_arrivals_since, Server, Setup, INTERVAL_MS,
};
use crate::sink::Sink;

on_both_backends!(
    after_downtime_fire_once_catches_up_once_and_skip_fires_none_and_both_count_the_misses,
    the_misfire_policy_is_validated_shown_and_patchable,
);

/// The task's log rows, newest first.
async fn logs_of(server: &Server, id: &str) -> Vec<Value> {
    let (status, v) = server
        .get_with(&format!("/api/v1/tasks/{id}/logs?limit=1000"), &token(1001))
        .await;
    assert_eq!(status, 200, "{v}");
    v["logs"].as_array().expect("logs").clone()
}

async fn after_downtime_fire_once_catches_up_once_and_skip_fires_none_and_both_count_the_misses(
    backend: Backend,
) {
    const ONCE: &str = "/misfire/fire_once";
    const SKIP: &str = "/misfire/skip";
    let sink = Sink::start();
    let setup = Setup::new(backend).await;
    let mut first = setup.serve().await;

    let fire_once = first.create_id(&interval_body(&sink, ONCE)).await;
    let mut skip_body = interval_body(&sink, SKIP);
    skip_body["misfire_policy"] = json!("skip");
    let skip = first.create_id(&skip_body).await;
    let v = first.task(&skip).await;
    assert_eq!(v["misfire_policy"], "skip", "{v}");
    assert_eq!(v["missed_slots"], 0, "{v}");
    sink.wait_for(ONCE, 1, crate::recovery::EVENT_WAIT).await;
    sink.wait_for(SKIP, 1, crate::recovery::EVENT_WAIT).await;

    first.kill9();
    // Downtime has to pass for slots to be missed: about three one-second slots.
    pause(3500).await;
    let restart_ms = now_ms();
    let second = setup.serve().await;
    let ready_ms = now_ms();

    // fire_once: the first fire after the restart is for a slot missed while down, and the
    // task goes on on its grid.
    let after = wait_arrivals_since(&sink, ONCE, restart_ms, 2).await;
    let catch_up = slot_of(&after[0], &fire_once);
    assert!(
        catch_up <= ready_ms + 100,
        "fire_once must fire for the latest slot missed while down (ready at {ready_ms}), got \
         {catch_up}"
    );
    assert_eq!(slot_of(&after[1], &fire_once), catch_up + INTERVAL_MS);

    // skip: none of the slots missed while down is fired.
    let after = wait_arrivals_since(&sink, SKIP, restart_ms, 2).await;
    let slots: Vec<i64> = after.iter().map(|a| slot_of(a, &skip)).collect();

    // The skip row: attempt 0, how many were skipped, for the latest missed slot.
    let skip_view = second
        .wait_task(&skip, |v| v["execution_count"].as_i64() >= Some(2))
        .await;
    let missed = skip_view["missed_slots"].as_i64().expect("missed_slots");
    assert!(
        missed >= 2,
        "about three slots fell in the downtime: {skip_view}"
    );
    let rows = logs_of(&second, &skip).await;
    let skipped: Vec<&Value> = rows.iter().filter(|r| r["attempt"] == 0).collect();
    assert_eq!(skipped.len(), 1, "one row for all skipped slots: {rows:?}");
    assert_eq!(
        skipped[0]["error"],
        format!("missed: {missed} slots skipped"),
        "{:?}",
        skipped[0]
    );
    assert_eq!(skipped[0]["trigger"], "catch_up");
    assert_eq!(skipped[0]["lateness_ms"], Value::Null);
    let latest_missed = parse_time(&skipped[0]["scheduled_time"]);
    assert!(
        latest_missed > restart_ms - 3500 && latest_missed <= ready_ms + 100,
        "the skip row names the latest slot missed while down: {latest_missed}, restart at \
         {restart_ms}, ready at {ready_ms}"
    );
    assert_eq!(
        slots[0],
        latest_missed + INTERVAL_MS,
        "skip goes on at the slot after the ones it skipped: {slots:?}"
    );
    assert!(
        rows.iter()
            .filter(|r| r["attempt"] != 0)
            .all(|r| parse_time(&r["scheduled_time"]) < restart_ms - 3500
                || parse_time(&r["scheduled_time"]) > latest_missed),
        "a skipped slot was sent: {rows:?}"
    );

    // fire_once: the catch-up row says so, and the slots it stood in for are counted.
    let once_view = second
        .wait_task(&fire_once, |v| v["execution_count"].as_i64() >= Some(2))
        .await;
    assert_eq!(once_view["misfire_policy"], "fire_once");
    let once_missed = once_view["missed_slots"].as_i64().expect("missed_slots");
    assert!(
        once_missed >= 1,
        "the catch-up stood in for at least one other slot: {once_view}"
    );
    let rows = logs_of(&second, &fire_once).await;
    let row = rows
        .iter()
        .find(|r| parse_time(&r["scheduled_time"]) == catch_up)
        .unwrap_or_else(|| panic!("no row for the catch-up slot {catch_up}: {rows:?}"));
    assert_eq!(row["trigger"], "catch_up", "{row}");
    assert!(
        row["lateness_ms"].as_i64() >= Some(0),
        "a catch-up is late on purpose: {row}"
    );
    let later = rows
        .iter()
        .find(|r| parse_time(&r["scheduled_time"]) == catch_up + INTERVAL_MS)
        .expect("a row for the slot after the catch-up");
    assert_eq!(later["trigger"], "schedule", "{later}");
    assert!(rows.iter().all(|r| r["attempt"] != 0), "{rows:?}");
}

async fn the_misfire_policy_is_validated_shown_and_patchable(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut body = interval_task(&app, "/misfire/idle", 3600);
    for bad in [json!("fire_all"), json!(3), json!("SKIP")] {
        body["misfire_policy"] = bad.clone();
        let (status, v) = app.create_as(1001, &body).await;
        assert_eq!(status, 400, "{bad}: {v}");
        assert_eq!(v["code"], "invalid_input", "{v}");
        assert!(
            v["message"]
                .as_str()
                .is_some_and(|m| m.contains("misfire_policy")),
            "the message names the field: {v}"
        );
    }
    body.as_object_mut().expect("body").remove("misfire_policy");
    let id = app.create_task(body).await;
    let v = app.task(&id).await;
    assert_eq!(v["misfire_policy"], "fire_once", "{v}");
    assert_eq!(v["missed_slots"], 0, "{v}");

    let patch = |b: Value| {
        app.client
            .patch(app.url(&format!("/api/v1/tasks/{id}")))
            .bearer_auth(token(1001))
            .json(&b)
            .send()
    };
    let r = patch(json!({"misfire_policy": "skip"}))
        .await
        .expect("patch");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("view");
    assert_eq!(v["misfire_policy"], "skip", "{v}");
    assert_eq!(app.task(&id).await["misfire_policy"], "skip");

    let r = patch(json!({"misfire_policy": "never"}))
        .await
        .expect("patch");
    assert_eq!(r.status(), 400);
    let r = patch(json!({"missed_slots": 0})).await.expect("patch");
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.expect("error");
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("missed_slots")),
        "{v}"
    );

    let r = patch(json!({"misfire_policy": null})).await.expect("patch");
    assert_eq!(r.status(), 200);
    assert_eq!(app.task(&id).await["misfire_policy"], "fire_once");

    // Another user's task is not found, whatever the body.
    let r = app
        .client
        .patch(app.url(&format!("/api/v1/tasks/{id}")))
        .bearer_auth(token(2002))
        .json(&json!({"misfire_policy": "skip"}))
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), 404);
}
