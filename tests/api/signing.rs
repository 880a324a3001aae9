//! Signing keys and signed calls. Every signature is checked by the Standard Webhooks
//! reference library (`standardwebhooks`), not by tickwheel's own code: through a rotation
//! (one key, both, the new one alone), with a tampered body, id or timestamp (refused), for
//! calls without a body, and after a restart.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{admin_token, spawn_app, token, Backend, TestApp};
use crate::on_both_backends;
use crate::recovery::{Setup, EVENT_WAIT};
use crate::sink::{Arrival, Sink};

/// Whether the reference library accepts `arrival` under `secret`, with `body` as the payload.
fn verifies_with(secret: &str, arrival: &Arrival, body: &[u8]) -> bool {
    let wh =
        standardwebhooks::Webhook::new(secret).expect("the reference library takes the secret");
    let mut headers = http::HeaderMap::new();
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        if let Some(v) = arrival.header(name) {
            headers.insert(
                http::HeaderName::from_static(name),
                http::HeaderValue::from_str(v).expect("a header value"),
            );
        }
    }
    wh.verify(body, &headers).is_ok()
}

pub(crate) fn verifies(secret: &str, arrival: &Arrival) -> bool {
    verifies_with(secret, arrival, arrival.body.as_bytes())
}

fn signatures(arrival: &Arrival) -> usize {
    arrival
        .header("webhook-signature")
        .map_or(0, |h| h.split(' ').count())
}

async fn keys_request(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    bearer: &str,
) -> (u16, Value) {
    let r = app
        .client
        .request(method, app.url(path))
        .bearer_auth(bearer)
        .send()
        .await
        .expect("signing-keys request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

pub(crate) async fn create_key(app: &TestApp, user: i64) -> (String, String) {
    let (status, v) = keys_request(
        app,
        reqwest::Method::POST,
        &format!("/api/v1/users/{user}/signing-keys"),
        &token(user),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let secret = v["secret"].as_str().expect("secret").to_string();
    assert!(secret.starts_with("whsec_"), "{v}");
    (v["key_id"].as_str().expect("key_id").to_string(), secret)
}

async fn revoke_key(app: &TestApp, user: i64, key_id: &str) -> (u16, Value) {
    keys_request(
        app,
        reqwest::Method::DELETE,
        &format!("/api/v1/users/{user}/signing-keys/{key_id}"),
        &token(user),
    )
    .await
}

/// The first call to `path` that started after now: a call already on its way when a key
/// changed may carry the keys of before.
async fn next_call(sink: &Sink, path: &str) -> Arrival {
    let seen = sink.count(path);
    sink.wait_for(path, seen + 2, EVENT_WAIT)
        .await
        .pop()
        .expect("an arrival")
}

async fn calls_verify_with_the_reference_library_through_a_rotation(backend: Backend) {
    let app = spawn_app(backend).await;
    let post = "/signed/post";
    let get = "/signed/get";
    let mut task = crate::helpers::interval_task(&app, post, 1);
    task["body"] = json!({"greeting": "grüß dich", "n": [1, 2, 3]});
    app.create_task(task).await;
    let mut task = crate::helpers::interval_task(&app, get, 1);
    task["method"] = json!("GET");
    app.create_task(task).await;

    // No key: unsigned, but with the id and timestamp a receiver would sign over.
    let unsigned = next_call(&app.sink, post).await;
    assert_eq!(unsigned.header("webhook-signature"), None);
    assert!(unsigned.header("webhook-id").is_some());

    let (old_id, old) = create_key(&app, 1001).await;
    let call = next_call(&app.sink, post).await;
    assert_eq!(signatures(&call), 1, "{:?}", call.headers);
    assert!(verifies(&old, &call), "one key: {:?}", call.headers);
    // Tampering with the body, the id or the timestamp is caught.
    let mut tampered = call.body.clone().into_bytes();
    tampered[2] ^= 1;
    assert!(
        !verifies_with(&old, &call, &tampered),
        "a tampered body verified"
    );
    let mut forged = call.clone();
    forged.headers.insert(
        "webhook-id".into(),
        format!("{}x", call.header("webhook-id").unwrap_or("")),
    );
    assert!(!verifies(&old, &forged), "a changed webhook-id verified");
    let mut forged = call.clone();
    let ts: i64 = call
        .header("webhook-timestamp")
        .and_then(|t| t.parse().ok())
        .expect("a timestamp");
    forged
        .headers
        .insert("webhook-timestamp".into(), (ts - 1).to_string());
    assert!(!verifies(&old, &forged), "a changed timestamp verified");
    // A call without a body is signed over the empty body.
    let call = next_call(&app.sink, get).await;
    assert!(call.body.is_empty());
    assert!(verifies(&old, &call), "GET: {:?}", call.headers);

    // Rotation: both keys sign, so a receiver on either accepts.
    let (_, new) = create_key(&app, 1001).await;
    let call = next_call(&app.sink, post).await;
    assert_eq!(signatures(&call), 2, "{:?}", call.headers);
    assert!(verifies(&old, &call), "both keys, old: {:?}", call.headers);
    assert!(verifies(&new, &call), "both keys, new: {:?}", call.headers);
    assert!(
        !verifies_with(&new, &call, b"{}"),
        "a tampered body verified"
    );

    // A dry run shows that calls will carry two signatures.
    let r = app
        .client
        .post(app.url("/api/v1/tasks?dry_run=true"))
        .bearer_auth(token(1001))
        .json(&crate::helpers::interval_task(&app, post, 1))
        .send()
        .await
        .expect("dry run");
    let v: Value = r.json().await.expect("dry run json");
    let shown = v["request"]["headers"]["webhook-signature"]
        .as_str()
        .unwrap_or_else(|| panic!("no webhook-signature in the dry run: {v}"));
    assert_eq!(shown.matches("v1,").count(), 2, "{v}");
    assert!(!shown.contains(&old) && !shown.contains(&new), "{v}");

    // A third key is refused; the two stay.
    let (status, v) = keys_request(
        &app,
        reqwest::Method::POST,
        "/api/v1/users/1001/signing-keys",
        &token(1001),
    )
    .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (409, Some("key_limit_reached")),
        "{v}"
    );

    // The old key revoked: only the new one signs.
    let (status, v) = revoke_key(&app, 1001, &old_id).await;
    assert_eq!(status, 204, "{v}");
    let call = next_call(&app.sink, post).await;
    assert_eq!(signatures(&call), 1, "{:?}", call.headers);
    assert!(verifies(&new, &call), "new key alone: {:?}", call.headers);
    assert!(!verifies(&old, &call), "a revoked key still signs");
    let call = next_call(&app.sink, get).await;
    assert!(verifies(&new, &call) && !verifies(&old, &call));

    // Another user's calls are not signed with these keys.
    let other = "/signed/other";
    let mut task = crate::helpers::interval_task(&app, other, 1);
    task["user_id"] = json!(1002);
    let (status, v) = app.create_as(1002, &task).await;
    assert_eq!(status, 201, "{v}");
    let call = next_call(&app.sink, other).await;
    assert_eq!(call.header("webhook-signature"), None);

    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    for n in ["0", "1", "2"] {
        let line = metrics
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "tickwheel_outbound_calls_total{{signatures=\"{n}\"}}"
                ))
            })
            .unwrap_or_else(|| panic!("no outbound call count for {n} signatures:\n{metrics}"));
        let count: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0.0);
        assert!(count >= 1.0, "{line}");
    }
}

async fn keys_are_listed_by_prefix_sealed_at_rest_and_each_users_own(backend: Backend) {
    let app = spawn_app(backend).await;
    let (first_id, first) = create_key(&app, 1001).await;
    let (second_id, second) = create_key(&app, 1001).await;

    let (status, v) = app.get_json("/api/v1/users/1001/signing-keys", 1001).await;
    assert_eq!(status, 200, "{v}");
    let keys = v["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 2, "{v}");
    let text = v.to_string();
    for (id, secret) in [(&first_id, &first), (&second_id, &second)] {
        let k = keys
            .iter()
            .find(|k| k["key_id"] == json!(id))
            .unwrap_or_else(|| panic!("key {id} not listed: {v}"));
        let prefix = k["prefix"].as_str().expect("prefix");
        assert!(prefix.ends_with('…') && prefix.starts_with("whsec_"), "{k}");
        assert!(secret.starts_with(prefix.trim_end_matches('…')), "{k}");
        assert!(
            prefix.chars().count() <= 12,
            "the prefix shows too much: {k}"
        );
        assert!(!text.contains(secret.as_str()), "a list shows a secret");
        assert!(k["created_at"].as_str().is_some(), "{k}");
    }

    // Another user: 403 on the list and on a create; 404 for a key that is not theirs.
    let (status, v) = app.get_json("/api/v1/users/1001/signing-keys", 1002).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (403, Some("forbidden")),
        "{v}"
    );
    let (status, v) = keys_request(
        &app,
        reqwest::Method::POST,
        "/api/v1/users/1001/signing-keys",
        &token(1002),
    )
    .await;
    assert_eq!(status, 403, "{v}");
    let (status, v) = revoke_key(&app, 1002, &first_id).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (404, Some("key_not_found")),
        "{v}"
    );
    let (status, v) = revoke_key(&app, 1001, "not-a-key").await;
    assert_eq!(
        (status, v["code"].as_str()),
        (404, Some("key_not_found")),
        "{v}"
    );
    let (status, v) = keys_request(
        &app,
        reqwest::Method::GET,
        "/api/v1/users/abc/signing-keys",
        &token(1001),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["message"].as_str().unwrap_or("").contains("user_id"),
        "{v}"
    );
    // An admin may act for any user.
    let (status, v) = keys_request(
        &app,
        reqwest::Method::GET,
        "/api/v1/users/1001/signing-keys",
        &admin_token(),
    )
    .await;
    assert_eq!(
        (status, v["keys"].as_array().map(Vec::len)),
        (200, Some(2)),
        "{v}"
    );

    // At rest: neither the secret's text nor its bytes are in the database.
    use base64::Engine as _;
    use sea_orm::{ConnectionTrait, Statement};
    let db = sea_orm::Database::connect(&app.db.url)
        .await
        .expect("connect to the test database");
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT key_id, secret, prefix FROM signing_keys",
        ))
        .await
        .expect("read signing_keys");
    assert_eq!(rows.len(), 2);
    for row in rows {
        let blob: Vec<u8> = row.try_get("", "secret").expect("secret column");
        for secret in [&first, &second] {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(secret.trim_start_matches("whsec_"))
                .expect("base64");
            assert!(
                !blob.windows(raw.len()).any(|w| w == raw.as_slice()),
                "a secret stored in clear"
            );
            assert!(
                !blob.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "a secret's text stored"
            );
        }
    }

    // What another node reads: the secrets open under the key file, and the fingerprint it
    // polls moves with every create and revoke.
    let cipher = std::sync::Arc::new(
        tickwheel::crypto::Cipher::load(&app.settings.crypto.key_file, &[]).expect("the key file"),
    );
    let store = tickwheel::store::Store::new(db.clone(), cipher);
    let mut opened: Vec<String> = store
        .signing_secrets(None)
        .await
        .expect("the secrets open")
        .iter()
        .map(|k| {
            format!(
                "whsec_{}",
                base64::engine::general_purpose::STANDARD.encode(&k.secret[..])
            )
        })
        .collect();
    opened.sort();
    let mut given = vec![first.clone(), second.clone()];
    given.sort();
    assert_eq!(opened, given);
    let mut prints = vec![store.signing_keys_fingerprint().await.expect("fingerprint")];

    // Revoking both leaves the user with none; new ones can be made again.
    for id in [&first_id, &second_id] {
        let (status, v) = revoke_key(&app, 1001, id).await;
        assert_eq!(status, 204, "{v}");
        prints.push(store.signing_keys_fingerprint().await.expect("fingerprint"));
    }
    let (status, v) = revoke_key(&app, 1001, &first_id).await;
    assert_eq!(status, 404, "revoked twice: {v}");
    let (_, v) = app.get_json("/api/v1/users/1001/signing-keys", 1001).await;
    assert_eq!(v["keys"], json!([]), "{v}");
    create_key(&app, 1001).await;
    prints.push(store.signing_keys_fingerprint().await.expect("fingerprint"));
    create_key(&app, 1001).await;
    prints.push(store.signing_keys_fingerprint().await.expect("fingerprint"));
    for (i, a) in prints.iter().enumerate() {
        for b in &prints[i + 1..] {
            assert_ne!(
                a, b,
                "two states of the keys share a fingerprint: {prints:?}"
            );
        }
    }
    assert_eq!(prints[2].0, 0, "no keys left: {prints:?}");
}

/// Keys live in the database: after a `kill -9` and a restart the calls are signed with the
/// same keys, and the key file check counts them as secrets the key must open.
async fn calls_stay_signed_after_a_restart(backend: Backend) {
    const PATH: &str = "/signed/restart";
    let sink = Sink::start();
    let setup = Setup::new(backend).await;
    let client = reqwest::Client::new();
    let mut first = setup.serve().await;
    let r = client
        .post(first.url("/api/v1/users/1001/signing-keys"))
        .bearer_auth(token(1001))
        .send()
        .await
        .expect("create key");
    assert_eq!(r.status().as_u16(), 201);
    let v: Value = r.json().await.expect("json");
    let secret = v["secret"].as_str().expect("secret").to_string();
    first
        .create_id(&json!({
            "user_id": 1001, "type": "interval", "interval_seconds": 1,
            "http_endpoint": sink.url(PATH), "body": {"k": "v"},
        }))
        .await;
    let before = sink.wait_for(PATH, 1, EVENT_WAIT).await;
    assert!(verifies(&secret, &before[0]));
    first.kill9();

    let restarted_at = crate::recovery::now_ms();
    let _second = setup.serve().await;
    let start = Instant::now();
    let after = loop {
        if let Some(a) = sink
            .arrivals(PATH)
            .into_iter()
            .find(|a| a.at_ms >= restarted_at)
        {
            break a;
        }
        assert!(start.elapsed() < EVENT_WAIT, "no call after the restart");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        verifies(&secret, &after),
        "after the restart: {:?}",
        after.headers
    );
}

on_both_backends!(
    calls_verify_with_the_reference_library_through_a_rotation,
    keys_are_listed_by_prefix_sealed_at_rest_and_each_users_own,
    calls_stay_signed_after_a_restart,
);
