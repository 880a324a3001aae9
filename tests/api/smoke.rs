use std::time::Duration;

use serde_json::json;

use crate::helpers::*;
use crate::on_both_backends;

async fn a_once_task_fires_and_completes(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut body = once_task(&app, "/once", None);
    body["body"] = json!({"data": "example"});
    body["headers"] = json!({"Authorization": "Bearer s3cret"});
    let id = app.create_task(body).await;
    let got = app.sink.wait_for("/once", 1, Duration::from_secs(10)).await;
    assert_eq!(got[0].body, r#"{"data":"example"}"#);
    assert_eq!(got[0].header("authorization"), Some("Bearer s3cret"));
    let v = app
        .wait_task(&id, Duration::from_secs(10), |v| v["status"] == "completed")
        .await;
    assert_eq!(v["execution_count"], 1);
    assert_eq!(v["header_names"], json!(["Authorization"]));
    assert!(!v.to_string().contains("s3cret"));
}

on_both_backends!(a_once_task_fires_and_completes);

async fn header_names_keep_the_order_the_user_wrote(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut body = once_task(&app, "/order", Some(rfc3339_in(3_600_000)));
    body["headers"] = json!({"X-Zeta": "1", "X-Alpha": "2", "X-Mid": "3"});
    let id = app.create_task(body).await;
    let v = app.task(&id).await;
    assert_eq!(
        v["header_names"],
        json!(["X-Zeta", "X-Alpha", "X-Mid"]),
        "{v}"
    );
}

on_both_backends!(header_names_keep_the_order_the_user_wrote);
