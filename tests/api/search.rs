//! Searching a user's task list (README, "The API": `GET /api/v1/users/{user_id}/tasks`):
//! `q` matches a substring of the endpoint URL or the task id with `%`, `_` and `!` taken
//! literally, `type` and a repeated `status` filter, `total` counts the matches, `counts` gives
//! every status of the user's tasks whatever the filters; bad values are 400 naming the
//! parameter; another user's list is 403 unless the token is an admin's. Every test runs on
//! SQLite and MariaDB.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(
    the_list_is_searched_by_text_type_and_several_states_and_counts_every_state,
    bad_search_parameters_are_refused_naming_the_parameter,
    another_users_list_is_forbidden_unless_the_token_is_an_admins,
);

/// A task of `user` for `url` that first runs in an hour (nothing fires during the test).
fn idle(user: i64, kind: &str, url: &str) -> Value {
    let mut v = json!({
        "user_id": user,
        "type": kind,
        "http_endpoint": url,
        "start_time": rfc3339_in(3_600_000),
    });
    match kind {
        "interval" => v["interval_seconds"] = json!(60),
        "cron" => v["cron_expression"] = json!("0 0 0 1 1 ?"),
        _ => {}
    }
    v
}

async fn create(app: &TestApp, user: i64, kind: &str, url: &str) -> String {
    let (status, v) = app.create_as(user, &idle(user, kind, url)).await;
    assert_eq!(status, 201, "create {kind} {url}: {v}");
    v["task_id"].as_str().expect("task_id").to_string()
}

async fn put(app: &TestApp, id: &str, action: &str) {
    let r = app
        .client
        .put(app.url(&format!("/api/v1/tasks/{id}/{action}")))
        .bearer_auth(token(1001))
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status().as_u16(), 200, "{action} {id}");
}

/// The ids of a list answer, and the answer.
async fn search(app: &TestApp, query: &str) -> (BTreeSet<String>, Value) {
    let (status, v) = app
        .get_json(
            &format!("/api/v1/users/1001/tasks?limit=1000&{query}"),
            1001,
        )
        .await;
    assert_eq!(status, 200, "?{query}: {v}");
    let ids: BTreeSet<String> = v["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["task_id"].as_str().expect("task_id").to_string())
        .collect();
    assert_eq!(
        v["total"].as_u64(),
        Some(ids.len() as u64),
        "?{query}: total counts the matches: {v}"
    );
    (ids, v)
}

fn set(ids: &[&String]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

async fn the_list_is_searched_by_text_type_and_several_states_and_counts_every_state(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let base = "http://127.0.0.1:9";
    let fox = create(&app, 1001, "interval", &format!("{base}/search/red_fox")).await;
    let look_alike = create(&app, 1001, "interval", &format!("{base}/search/redXfox")).await;
    let percent = create(&app, 1001, "once", &format!("{base}/search/sale?off=50%25")).await;
    let bang = create(&app, 1001, "cron", &format!("{base}/search/wow!")).await;
    let plain = create(&app, 1001, "cron", &format!("{base}/other/plain")).await;
    // Another user's tasks match the same texts and are neither listed nor counted.
    create(&app, 2002, "interval", &format!("{base}/search/red_fox")).await;
    create(&app, 2002, "cron", &format!("{base}/search/wow!")).await;
    put(&app, &bang, "pause").await;
    put(&app, &plain, "cancel").await;
    let all = set(&[&fox, &look_alike, &percent, &bang, &plain]);

    let (ids, v) = search(&app, "").await;
    assert_eq!(ids, all, "{v}");
    let every_state = json!({"pending": 3, "running": 0, "paused": 1, "completed": 0,
        "failed": 0, "stopped": 1});
    assert_eq!(v["counts"], every_state, "{v}");

    // `_`, `%` and `!` (the escape character) match only themselves.
    let (ids, v) = search(&app, "q=red_fox").await;
    assert_eq!(ids, set(&[&fox]), "{v}");
    assert_eq!(v["counts"], every_state, "counts ignore the filters: {v}");
    let (ids, v) = search(&app, "q=%25").await;
    assert_eq!(ids, set(&[&percent]), "{v}");
    let (ids, v) = search(&app, "q=!").await;
    assert_eq!(ids, set(&[&bang]), "{v}");
    let (ids, v) = search(&app, "q=%5C").await;
    assert!(ids.is_empty(), "a backslash matches nothing here: {v}");
    let (ids, v) = search(&app, "q=RED").await;
    assert_eq!(ids, set(&[&fox, &look_alike]), "ASCII case is ignored: {v}");
    let (ids, v) = search(&app, "q=%2Fsearch%2F").await;
    assert_eq!(ids, set(&[&fox, &look_alike, &percent, &bang]), "{v}");
    // A piece of the task id.
    let (ids, v) = search(&app, &format!("q={}", &plain[9..23])).await;
    assert_eq!(ids, set(&[&plain]), "{v}");
    let (ids, v) = search(&app, "q=").await;
    assert_eq!(ids, all, "an empty q matches everything: {v}");
    let (ids, v) = search(&app, &format!("q={}", "x".repeat(256))).await;
    assert!(ids.is_empty(), "256 characters are allowed: {v}");

    let (ids, v) = search(&app, "type=cron").await;
    assert_eq!(ids, set(&[&bang, &plain]), "{v}");
    let (ids, v) = search(&app, "type=once").await;
    assert_eq!(ids, set(&[&percent]), "{v}");

    let (ids, v) = search(&app, "status=paused&status=stopped").await;
    assert_eq!(ids, set(&[&bang, &plain]), "{v}");
    let (ids, v) = search(&app, "status=pending").await;
    assert_eq!(ids, set(&[&fox, &look_alike, &percent]), "{v}");
    let (ids, v) = search(&app, "status=running").await;
    assert!(ids.is_empty(), "{v}");
    assert_eq!(v["counts"], every_state, "{v}");

    let (ids, v) = search(&app, "q=search&type=cron&status=paused&status=pending").await;
    assert_eq!(ids, set(&[&bang]), "{v}");
    let (ids, v) = search(&app, "q=fox&type=interval&status=stopped").await;
    assert!(ids.is_empty(), "{v}");

    // `total` counts every match, not the page; pages are newest first.
    let (status, v) = app
        .get_json("/api/v1/users/1001/tasks?q=search&limit=2&offset=1", 1001)
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["total"], 4, "{v}");
    let page: Vec<&str> = v["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["task_id"].as_str().expect("task_id"))
        .collect();
    assert_eq!(page, vec![percent.as_str(), look_alike.as_str()], "{v}");

    // A user with no tasks still gets every state, at zero.
    let (status, v) = app.get_json("/api/v1/users/3003/tasks", 3003).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["counts"],
        json!({"pending": 0, "running": 0, "paused": 0, "completed": 0, "failed": 0,
            "stopped": 0}),
        "{v}"
    );
    assert_eq!(v["total"], 0, "{v}");
}

async fn bad_search_parameters_are_refused_naming_the_parameter(backend: Backend) {
    let app = spawn_app(backend).await;
    let long = "x".repeat(257);
    for (query, field) in [
        ("type=daily", "type"),
        ("type=", "type"),
        ("type=Cron", "type"),
        ("status=running&status=done", "status"),
        ("status=", "status"),
        (&format!("q={long}") as &str, "q"),
        ("limit=0", "limit"),
        ("offset=-1", "offset"),
    ] {
        let (status, v) = app
            .get_json(&format!("/api/v1/users/1001/tasks?{query}"), 1001)
            .await;
        assert_eq!(status, 400, "?{query}: {v}");
        assert_eq!(v["code"], "invalid_input", "?{query}: {v}");
        let message = v["message"].as_str().expect("message");
        assert!(
            message.starts_with(&format!("{field}:")),
            "?{query}: the message names {field}: {v}"
        );
    }
}

async fn another_users_list_is_forbidden_unless_the_token_is_an_admins(backend: Backend) {
    let app = spawn_app(backend).await;
    let theirs = create(&app, 2002, "interval", "http://127.0.0.1:9/search/theirs").await;
    create(&app, 1001, "interval", "http://127.0.0.1:9/search/mine").await;

    let (status, v) = app
        .get_json("/api/v1/users/2002/tasks?q=search&status=pending", 1001)
        .await;
    assert_eq!(status, 403, "{v}");
    assert_eq!(v["code"], "forbidden", "{v}");

    let r = app
        .client
        .get(app.url("/api/v1/users/2002/tasks?q=search&status=pending"))
        .bearer_auth(admin_token())
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["total"], 1, "{v}");
    assert_eq!(v["tasks"][0]["task_id"], theirs.as_str(), "{v}");
    assert_eq!(v["counts"]["pending"], 1, "only user 2002's tasks: {v}");
}
