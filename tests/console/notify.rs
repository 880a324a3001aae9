//! A task's notifications in the console: set in the form (the API's field error shown next
//! to the field first), shown in the task's definition, changed and removed by editing; and
//! the misfire policy chosen in the form reaches the task.

use crate::browser::Browser;
use crate::helpers::*;

#[actix_web::test]
async fn notifications_are_set_changed_and_removed_through_the_form() {
    let app = spawn_app(Backend::Sqlite).await;
    let b = Browser::start(&app.address).await;
    b.sign_in(&token(1001)).await;

    b.goto("/tasks/new").await;
    b.fill("#http_endpoint", &app.sink.url("/notified")).await;
    b.fill("#interval_seconds", "3600").await;
    b.click("select#misfire_policy option[value=skip]").await;
    // Events ticked without a URL: the API's error, next to the URL field.
    b.click("input[name='notify.events'][value=failing]").await;
    b.click("input[name='notify.events'][value=recovered]")
        .await;
    b.click("#submit").await;
    let err = b
        .wait_text("[id='err-notify.url']", "the notify.url error", |t| {
            t.contains("notify.url")
        })
        .await;
    assert!(!err.is_empty());
    assert_eq!(
        b.count("input[name='notify.events']:checked").await,
        2,
        "the ticked boxes stay ticked"
    );

    b.fill("[id='notify.url']", &app.sink.url("/hook")).await;
    b.fill("[id='notify.late_ms']", "500").await;
    b.click("#submit").await;
    b.wait_text("#done", "the created task", |t| t.contains("created"))
        .await;
    let task_id = b.path().await.trim_start_matches("/tasks/").to_owned();
    let v = app.task(&task_id).await;
    assert_eq!(v["misfire_policy"], "skip", "{v}");
    assert_eq!(
        v["notify"],
        serde_json::json!({"url": app.sink.url("/hook"), "events": ["failing", "recovered"], "late_ms": 500}),
        "{v}"
    );
    assert!(
        b.page_text().await.contains("recovered"),
        "shown on the task's page"
    );

    // Untick one event.
    b.goto(&format!("/tasks/{task_id}/edit")).await;
    assert_eq!(b.count("input[name='notify.events']:checked").await, 2);
    b.click("input[name='notify.events'][value=failing]").await;
    b.click("#submit").await;
    b.wait_text("#done", "the changed task", |t| t.contains("changed"))
        .await;
    let v = app.task(&task_id).await;
    assert_eq!(
        v["notify"]["events"],
        serde_json::json!(["recovered"]),
        "{v}"
    );
    assert_eq!(v["interval_seconds"], 3600, "{v}");

    // Empty the notification fields: the task has none.
    b.goto(&format!("/tasks/{task_id}/edit")).await;
    b.click("input[name='notify.events'][value=recovered]")
        .await;
    b.fill("[id='notify.url']", "").await;
    b.fill("[id='notify.late_ms']", "").await;
    b.click("#submit").await;
    b.wait_text("#done", "the changed task", |t| t.contains("changed"))
        .await;
    let v = app.task(&task_id).await;
    assert!(v["notify"].is_null(), "{v}");
    b.close().await;
}
