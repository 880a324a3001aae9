//! The signing keys screen, as a person uses it: create a key and copy its secret (shown this
//! once), see that calls are signed with it (verified by the Standard Webhooks reference
//! library with the secret read off the page), see it listed by prefix only, reach the limit
//! of two, and revoke one behind a confirmation.

use std::time::Duration;

use crate::browser::Browser;
use crate::helpers::*;

fn verifies(secret: &str, a: &crate::sink::Arrival) -> bool {
    let wh = standardwebhooks::Webhook::new(secret).expect("the reference library takes it");
    let mut headers = http::HeaderMap::new();
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        if let Some(v) = a.header(name) {
            headers.insert(
                http::HeaderName::from_static(name),
                http::HeaderValue::from_str(v).expect("a header value"),
            );
        }
    }
    wh.verify(a.body.as_bytes(), &headers).is_ok()
}

#[actix_web::test]
async fn a_key_is_created_copied_used_listed_and_revoked_through_the_console() {
    let app = spawn_app(Backend::Sqlite).await;
    let b = Browser::start(&app.address).await;
    b.sign_in(&token(1001)).await;

    b.click("nav a[href='/keys']").await;
    b.wait_text("h1", "the keys page", |t| t == "Signing keys")
        .await;
    assert!(b.page_text().await.contains("No keys"));

    b.click("#create-key").await;
    let secret = b
        .find("#secret")
        .await
        .prop("value")
        .await
        .expect("the secret field")
        .unwrap_or_default();
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert!(b.page_text().await.contains("shown this once"));
    assert_eq!(b.text("button[data-copy='secret']").await, "Copy");
    b.click("button[data-copy='secret']").await;
    b.wait_text(
        "button[data-copy='secret']",
        "the copy button's answer",
        |t| t == "Copied",
    )
    .await;
    b.screenshot("keys-created").await;

    // The secret on the page is the one that signs the user's calls.
    app.create_task(interval_task(&app, "/signed", 1)).await;
    let call = app
        .sink
        .wait_for("/signed", 1, Duration::from_secs(15))
        .await
        .pop()
        .expect("a call");
    assert!(verifies(&secret, &call), "{:?}", call.headers);

    // Listed by prefix; the secret is not shown again.
    b.goto("/keys").await;
    assert_eq!(b.count("#secret").await, 0, "the secret is shown twice");
    let page = b.page_text().await;
    assert!(!page.contains(&secret));
    assert!(page.contains(&secret[..10]), "the prefix is listed: {page}");

    // A second key; then the limit.
    b.click("#create-key").await;
    b.find("#secret").await;
    b.goto("/keys").await;
    assert_eq!(b.count("#create-key").await, 0, "a third key offered");
    assert!(b.page_text().await.contains("revoke one to create another"));
    b.screenshot("keys").await;

    // Revoke the first, after confirming.
    let first = "a[href^='/keys/'][href*='/revoke']";
    b.click(first).await;
    b.wait_text("h1", "the confirmation", |t| t == "Revoke key?")
        .await;
    b.click("#confirm").await;
    b.wait_text("p.notice", "the revoked notice", |t| t.contains("revoked"))
        .await;
    assert_eq!(b.count("a[href*='/revoke']").await, 1);
    let (_, v) = app.get_json("/api/v1/users/1001/signing-keys", 1001).await;
    assert_eq!(v["keys"].as_array().map(Vec::len), Some(1), "{v}");
    b.close().await;
}

#[actix_web::test]
async fn another_users_keys_are_refused_and_a_forged_create_changes_nothing() {
    let app = spawn_app(Backend::Sqlite).await;
    let b = Browser::start(&app.address).await;
    b.sign_in(&token(1001)).await;
    b.goto("/keys?user=1002").await;
    assert_eq!(b.text("h1").await, "Not allowed");
    b.close().await;

    // A post without the session's CSRF token creates nothing.
    let r = app
        .client
        .post(app.url("/keys"))
        .header("cookie", format!("tickwheel_session={}", token(1001)))
        .form(&[("user", "1001")])
        .send()
        .await
        .expect("answered");
    assert_eq!(r.status().as_u16(), 403);
    let (_, v) = app.get_json("/api/v1/users/1001/signing-keys", 1001).await;
    assert_eq!(v["keys"], serde_json::json!([]), "{v}");
}
