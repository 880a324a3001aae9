//! The console over plain HTTP, no browser: its budgets (the first page with 10,000 tasks,
//! the weight of its assets), its cookie's attributes, and its refusals of requests that do
//! not come from its own pages.

use std::time::{Duration, Instant};

use entities::tasks;
use sea_orm::EntityTrait;
use sea_orm::Set;

use crate::helpers::*;

const COOKIE: &str = "tickwheel_session";

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// `n` finished tasks of user 1001, written straight to the database (finished, so no actor
/// is started for them).
async fn seed_tasks(app: &TestApp, n: usize) {
    let db = sea_orm::Database::connect(&app.db.url)
        .await
        .expect("connect to the test database");
    let now = now_ms();
    let rows: Vec<tasks::ActiveModel> = (0..n)
        .map(|i| tasks::ActiveModel {
            task_id: Set(uuid::Uuid::now_v7().to_string()),
            user_id: Set(1001),
            task_type: Set("interval".into()),
            http_endpoint: Set(format!("https://api.example.com/hook/{i}")),
            method: Set("POST".into()),
            headers: Set(None),
            body: Set(None),
            interval_seconds: Set(Some(60)),
            cron_expression: Set(None),
            timezone: Set(None),
            start_time: Set(Some(now)),
            stop_condition: Set(None),
            retry: Set(None),
            status: Set(if i % 2 == 0 { "completed" } else { "stopped" }.into()),
            next_run_time: Set(None),
            execution_count: Set(1),
            consecutive_failures: Set(0),
            version: Set(1),
            created_at: Set(now - i as i64),
            updated_at: Set(now),
            misfire_policy: Set(None),
            missed_slots: Set(0),
            retention: Set(None),
            notify: Set(None),
        })
        .collect();
    for chunk in rows.chunks(500) {
        tasks::Entity::insert_many(chunk.to_vec())
            .exec(&db)
            .await
            .expect("insert tasks");
    }
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

#[actix_web::test]
async fn the_first_page_with_10000_tasks_answers_within_300_ms() {
    let app = spawn_app(Backend::Sqlite).await;
    seed_tasks(&app, 10_000).await;
    let client = no_redirects();
    let cookie = format!("{COOKIE}={}", token(1001));
    let mut times = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let r = client
            .get(app.url("/"))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("answered");
        assert_eq!(r.status(), 200);
        let html = r.text().await.expect("a page");
        times.push(start.elapsed());
        assert!(html.contains("1–50 of 10000"), "{html}");
        assert!(
            html.contains("completed <b>5000</b>"),
            "the counts per status"
        );
    }
    times.sort();
    eprintln!("first page with 10,000 tasks: {times:?}");
    assert!(
        times[2] < Duration::from_millis(300),
        "the median first page took {:?}",
        times[2]
    );
}

#[actix_web::test]
async fn the_assets_weigh_under_200_kb_and_come_from_the_binary() {
    let app = spawn_app(Backend::Sqlite).await;
    let client = no_redirects();
    let signin = client
        .get(app.url("/signin"))
        .send()
        .await
        .expect("answered")
        .text()
        .await
        .expect("a page");
    // The page names only assets of its own origin: no CDN, no external font.
    assert!(
        !signin.contains("http://") && !signin.contains("https://"),
        "{signin}"
    );
    let mut total = signin.len();
    for asset in ["/console/console.css", "/console/console.js"] {
        assert!(signin.contains(asset), "{asset} is linked");
        let r = client.get(app.url(asset)).send().await.expect("answered");
        assert_eq!(r.status(), 200, "{asset}");
        total += r.bytes().await.expect("bytes").len();
    }
    eprintln!("sign-in page and assets: {total} bytes");
    assert!(total < 200 * 1024, "{total} bytes");
}

#[actix_web::test]
async fn signing_in_sets_an_http_only_strict_cookie_and_forms_need_the_csrf_token() {
    let app = spawn_app(Backend::Sqlite).await;
    let id = app.create_task(interval_task(&app, "/kept", 3600)).await;
    let client = no_redirects();
    let token = token(1001);

    let r = client
        .post(app.url("/signin"))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .expect("answered");
    assert_eq!(r.status(), 303);
    let set = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("a cookie")
        .to_owned();
    assert!(set.starts_with(&format!("{COOKIE}={token}")), "{set}");
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(set.contains("SameSite=Strict"), "{set}");
    assert!(set.contains("Path=/"), "{set}");
    assert!(!set.contains("Secure"), "plain http: {set}");

    // A bad token is refused on the sign-in page, and sets no cookie.
    let r = client
        .post(app.url("/signin"))
        .form(&[("token", "not-a-token")])
        .send()
        .await
        .expect("answered");
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("set-cookie").is_none());

    // With the cookie but without the form's token, or with another session's: 403.
    let cookie = format!("{COOKIE}={token}");
    let other = tickwheel::console::session::csrf_for(SECRET, &crate::helpers::token(1002));
    for form in [vec![], vec![("csrf", other.as_str())]] {
        let r = client
            .post(app.url(&format!("/tasks/{id}/pause")))
            .header("cookie", &cookie)
            .form(&form)
            .send()
            .await
            .expect("answered");
        assert_eq!(r.status(), 403);
    }
    // With the right token but from another origin: 403.
    let csrf = tickwheel::console::session::csrf_for(SECRET, &token);
    let r = client
        .post(app.url(&format!("/tasks/{id}/pause")))
        .header("cookie", &cookie)
        .header("origin", "http://evil.example")
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .expect("answered");
    assert_eq!(r.status(), 403);
    assert_eq!(app.task(&id).await["status"], "pending");

    // The right token from the console's origin: done.
    let r = client
        .post(app.url(&format!("/tasks/{id}/pause")))
        .header("cookie", &cookie)
        .header("origin", app.address.as_str())
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .expect("answered");
    assert_eq!(r.status(), 303);
    assert_eq!(app.task(&id).await["status"], "paused");

    // The API is unchanged beside the console: an unknown /api path is still JSON.
    let r = client
        .get(app.url("/api/v1/no-such-route"))
        .send()
        .await
        .expect("answered");
    assert_eq!(r.status(), 404);
    let v: serde_json::Value = r.json().await.expect("JSON");
    assert_eq!(v["code"], "route_not_found");
}
