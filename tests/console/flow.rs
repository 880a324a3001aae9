//! A task's whole life through the console: sign in, create an interval task to the local
//! sink through the form (a field error first, then the preview), watch its log rows appear,
//! pause, resume, run now, edit the interval, cancel, delete, sign out.

use std::time::{Duration, Instant};

use crate::browser::{Browser, PATIENCE};
use crate::helpers::*;

/// Reloads the task page until its log shows a row that `cond` accepts.
async fn wait_for_log(b: &Browser, task_path: &str, what: &str, cond: impl Fn(&str) -> bool) {
    let start = Instant::now();
    loop {
        b.goto(task_path).await;
        if b.count("#log-rows tr").await > 0 && cond(&b.text("#log-rows").await) {
            return;
        }
        assert!(start.elapsed() < PATIENCE, "waited in vain for {what}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Clicks an action of the task page and waits for the page that follows.
async fn act(b: &Browser, id: &str) {
    b.click(&format!("#action-{id}")).await;
}

#[actix_web::test]
async fn a_task_is_created_watched_changed_and_deleted_through_the_console() {
    let app = spawn_app(Backend::Sqlite).await;
    app.sink
        .default_reply("/hook", Reply::json(serde_json::json!({"ok": true})));
    let b = Browser::start(&app.address).await;

    // Signed out, the console sends the browser to sign in.
    b.goto("/").await;
    assert_eq!(b.path().await, "/signin");
    b.screenshot("signin").await;
    b.sign_in(&token(1001)).await;

    // The form: an interval of 0 is refused next to its field by the live check.
    b.click("a[href='/tasks/new']").await;
    b.wait_text("h1", "the create form", |t| t == "New task")
        .await;
    b.fill("#http_endpoint", &app.sink.url("/hook")).await;
    b.fill("#interval_seconds", "0").await;
    let error = b
        .wait_text(
            "#err-interval_seconds",
            "the zero interval's field error",
            |t| {
                // Not the error of the empty field, checked while the URL was typed.
                t.contains("interval_seconds") && !t.contains("required")
            },
        )
        .await;
    assert!(error.starts_with("interval_seconds:"), "{error}");
    b.screenshot("form-error").await;

    // Submitted anyway, the server shows the API's error at the field too.
    b.click("#submit").await;
    b.wait_text(
        "#err-interval_seconds",
        "the refused create's field error",
        |t| t.contains("interval_seconds"),
    )
    .await;

    // Fixed, the error goes and the preview shows the next ten fire times.
    b.fill("#interval_seconds", "1").await;
    b.fill("#stop_condition", "{\"max_cnt\": 1000}").await;
    b.wait_text("#preview", "the live preview", |t| {
        !t.contains("Type a schedule")
    })
    .await;
    let start = Instant::now();
    while b.count("#preview li").await != 10 {
        assert!(
            start.elapsed() < PATIENCE,
            "the preview never listed 10 times"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(b.text("#err-interval_seconds").await, "");

    // The dry run shows the request it would send; nothing is created.
    b.click("#dry-run-button").await;
    let dry = b
        .wait_text("#dry-run", "the dry run", |t| t.contains("would send"))
        .await;
    assert!(dry.contains(&app.sink.url("/hook")), "{dry}");
    assert!(dry.contains("webhook-id"), "{dry}");
    b.screenshot("form").await;

    b.click("#submit").await;
    b.wait_text("#done", "the created task's page", |t| {
        t.contains("created")
    })
    .await;
    let task_path = b.path().await;
    let task_id = task_path.trim_start_matches("/tasks/").to_owned();
    assert_eq!(app.task(&task_id).await["interval_seconds"], 1);

    // Its executions appear in the log, and in the chart.
    wait_for_log(&b, &task_path, "the first log rows", |t| t.contains("200")).await;
    wait_for_log(&b, &task_path, "a few log rows", |t| {
        t.matches("200").count() >= 4
    })
    .await;
    assert!(b.count("svg.chart").await == 1, "the chart is drawn");
    b.client.set_window_size(1280, 1500).await.expect("resized");
    b.goto(&task_path).await;
    b.screenshot("task").await;
    // Readable at 400 px: nothing wider than the window but the tables, which scroll.
    b.client.set_window_size(400, 900).await.expect("resized");
    b.goto(&task_path).await;
    let overflow = b
        .client
        .execute("return document.documentElement.scrollWidth", vec![])
        .await
        .expect("script runs");
    assert!(overflow.as_u64().unwrap_or(9999) <= 400, "{overflow}");
    b.screenshot("task-400px").await;
    b.client.set_window_size(1280, 900).await.expect("resized");

    // Pause and resume.
    act(&b, "pause").await;
    b.wait_text("#task-status", "paused", |t| t == "paused")
        .await;
    assert_eq!(app.task(&task_id).await["status"], "paused");
    act(&b, "resume").await;
    b.wait_text("#task-status", "running again", |t| t == "running")
        .await;

    // Run now: a manual row appears (an execution in flight refuses it for a moment).
    let start = Instant::now();
    loop {
        b.goto(&task_path).await;
        act(&b, "run").await;
        let text = b
            .wait_text("body", "run now's answer", |t| {
                t.contains("Run started") || t.contains("Not possible now")
            })
            .await;
        if text.contains("Run started") {
            break;
        }
        assert!(
            text.contains("in flight") && start.elapsed() < PATIENCE,
            "run now refused: {text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_for_log(&b, &task_path, "the manual run's row", |t| {
        t.contains("manual")
    })
    .await;

    // Edit the interval.
    act(&b, "edit").await;
    b.wait_text("h1", "the edit form", |t| t.starts_with("Edit task"))
        .await;
    b.fill("#interval_seconds", "2").await;
    b.click("#submit").await;
    b.wait_text("#done", "the changed task", |t| t.contains("changed"))
        .await;
    assert!(b.page_text().await.contains("every 2 s"));
    assert_eq!(app.task(&task_id).await["interval_seconds"], 2);

    // Cancel, confirmed.
    act(&b, "cancel").await;
    b.wait_text("h1", "the confirmation", |t| t.contains("Cancel the task"))
        .await;
    b.click("#confirm").await;
    b.wait_text("#task-status", "stopped", |t| t == "stopped")
        .await;

    // Delete, confirmed.
    act(&b, "delete").await;
    b.wait_text("h1", "the confirmation", |t| {
        t.contains("Delete permanently")
    })
    .await;
    b.click("#confirm").await;
    b.wait_text(".notice", "the list after deleting", |t| {
        t.contains("deleted")
    })
    .await;
    let (status, _) = app
        .get_json(&format!("/api/v1/tasks/{task_id}"), 1001)
        .await;
    assert_eq!(status, 404);

    // Sign out: the cookie is gone and the console asks to sign in again.
    b.click("form.signout button").await;
    b.wait_text("#signin-message", "the signed-out page", |t| {
        t.contains("signed out")
    })
    .await;
    b.goto("/").await;
    assert_eq!(b.path().await, "/signin");
    b.close().await;
}

#[actix_web::test]
async fn the_task_list_shows_counts_filters_and_pages() {
    let app = spawn_app(Backend::Sqlite).await;
    for i in 0..55 {
        let mut body = interval_task(&app, &format!("/list-{i}"), 3600);
        if i % 5 == 0 {
            body["http_endpoint"] = app.sink.url(&format!("/special-{i}")).into();
        }
        app.create_task(body).await;
    }
    let b = Browser::start(&app.address).await;
    b.sign_in(&token(1001)).await;
    assert!(b.text("#showing").await.contains("1–50 of 55"));
    assert_eq!(b.count("table.tasks tbody tr").await, 50);
    assert!(b.page_text().await.contains("every 1 h"));
    b.screenshot("tasks").await;

    b.click("a[rel=next]").await;
    b.wait_text("#showing", "the second page", |t| t.contains("51–55 of 55"))
        .await;

    b.goto("/").await;
    b.fill("input[name=q]", "special").await;
    b.click("form.filters button").await;
    b.wait_text("#showing", "the search", |t| t.contains("of 11"))
        .await;

    b.goto("/?status=paused").await;
    b.wait_text("#showing", "no paused task", |t| t.contains("no tasks"))
        .await;
    b.close().await;
}
