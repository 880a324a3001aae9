//! What the console refuses: another user's task (the API's 404, shown as a page that says
//! so), a forged form post (CSRF), and an expired session.

use crate::browser::Browser;
use crate::helpers::*;

#[actix_web::test]
async fn a_user_cannot_see_another_users_task_in_the_console() {
    let app = spawn_app(Backend::Sqlite).await;
    let (status, v) = app
        .create_as(1002, &{
            let mut t = interval_task(&app, "/theirs", 3600);
            t["user_id"] = 1002.into();
            t
        })
        .await;
    assert_eq!(status, 201, "{v}");
    let theirs = v["task_id"].as_str().expect("an id").to_owned();
    let mine = app.create_task(interval_task(&app, "/mine", 3600)).await;

    let b = Browser::start(&app.address).await;
    b.sign_in(&token(1001)).await;
    assert_eq!(b.count(&format!("a[href='/tasks/{mine}']")).await, 1);
    assert_eq!(
        b.count(&format!("a[href='/tasks/{theirs}']")).await,
        0,
        "another user's task is listed"
    );
    assert!(!b.page_text().await.contains("/theirs"));

    for path in [
        format!("/tasks/{theirs}"),
        format!("/tasks/{theirs}/edit"),
        format!("/tasks/{theirs}/confirm/delete"),
    ] {
        b.goto(&path).await;
        let h1 = b.text("h1").await;
        assert_eq!(h1, "Task not found", "{path}");
        let page = b.page_text().await;
        assert!(page.contains("no such task, or it is not yours"), "{page}");
        assert!(
            !page.contains("/theirs"),
            "the page shows the other task: {page}"
        );
    }
    b.screenshot("not-found").await;

    // Another user's list is the API's 403.
    b.goto("/?user=1002").await;
    assert_eq!(b.text("h1").await, "Not allowed");
    b.close().await;

    // Still there for its owner.
    let (status, _) = app.get_json(&format!("/api/v1/tasks/{theirs}"), 1002).await;
    assert_eq!(status, 200);
}

#[actix_web::test]
async fn the_console_refuses_a_forged_form_post() {
    let app = spawn_app(Backend::Sqlite).await;
    let id = app.create_task(interval_task(&app, "/victim", 3600)).await;
    // A page on another origin that posts the console's delete form at once.
    let forged = format!(
        r#"<!doctype html><form id=f method=post action="{}/tasks/{id}/delete">
<input name=csrf value=guessed></form><script>document.getElementById('f').submit()</script>"#,
        app.address
    );
    app.sink.default_reply(
        "/evil",
        Reply::status(200)
            .header("content-type", "text/html")
            .body(forged),
    );

    let b = Browser::start(&app.address).await;
    b.sign_in(&token(1001)).await;

    // From another origin: refused (its Origin is not the console's), nothing deleted.
    b.client
        .goto(&app.sink.url("/evil"))
        .await
        .expect("navigates");
    b.wait_text("h1", "the refusal", |t| t == "Request refused")
        .await;
    b.screenshot("csrf-refused").await;
    assert_eq!(app.task(&id).await["status"], "pending");

    // From the console's own origin without the session's token: refused too.
    b.goto(&format!("/tasks/{id}")).await;
    b.client
        .execute(
            &format!(
                "var f = document.createElement('form'); f.method = 'post';
                 f.action = '/tasks/{id}/delete';
                 var i = document.createElement('input'); i.name = 'csrf'; i.value = 'forged';
                 f.appendChild(i); document.body.appendChild(f); f.submit();"
            ),
            vec![],
        )
        .await
        .expect("script runs");
    b.wait_text("h1", "the refusal", |t| t == "Request refused")
        .await;
    assert_eq!(app.task(&id).await["status"], "pending");

    // The page's own form, with the token, works.
    b.goto(&format!("/tasks/{id}/confirm/delete")).await;
    b.click("#confirm").await;
    b.wait_text(".notice", "the deletion", |t| t.contains("deleted"))
        .await;
    let (status, _) = app.get_json(&format!("/api/v1/tasks/{id}"), 1001).await;
    assert_eq!(status, 404);
    b.close().await;
}

#[actix_web::test]
async fn an_expired_session_returns_to_sign_in_with_a_message() {
    let app = spawn_app(Backend::Sqlite).await;
    // A token that expired beyond the API's 60 s leeway, in the session cookie.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs();
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &tickwheel::auth::Claims {
            sub: "1001".into(),
            exp: now - tickwheel::auth::LEEWAY_SECS - 60,
            role: None,
        },
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("a token");
    let b = Browser::start(&app.address).await;
    b.goto("/signin").await;
    // The page's script may set a cookie of that name (not an HttpOnly one): the server reads
    // it all the same.
    b.client
        .execute(
            &format!("document.cookie = 'tickwheel_session={expired}; path=/; SameSite=Strict'"),
            vec![],
        )
        .await
        .expect("cookie set");
    b.goto("/").await;
    assert_eq!(b.path().await, "/signin");
    let m = b.text("#signin-message").await;
    assert!(m.contains("expired"), "{m}");
    // The dead cookie is dropped: the next visit is a plain sign-in.
    b.goto("/").await;
    assert_eq!(b.path().await, "/signin");
    assert_eq!(b.count("#signin-message").await, 0);
    b.close().await;
}
