//! The OpenAPI document and the interactive docs (README, "The API"): the document is
//! public OpenAPI 3.1, it and the server agree on every route, every `/api/v1` operation asks
//! for the bearer token and documents its errors with the error body, the documented schemas
//! have the fields the server really sends, and the Swagger UI is served from the binary.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;

/// What the API serves: (method, path template), as README's endpoint table lists it, plus the
/// document itself.
const SERVED: [(&str, &str); 21] = [
    ("POST", "/api/v1/tasks"),
    ("GET", "/api/v1/tasks/{task_id}"),
    ("PATCH", "/api/v1/tasks/{task_id}"),
    ("DELETE", "/api/v1/tasks/{task_id}"),
    ("PUT", "/api/v1/tasks/{task_id}/cancel"),
    ("PUT", "/api/v1/tasks/{task_id}/pause"),
    ("PUT", "/api/v1/tasks/{task_id}/resume"),
    ("POST", "/api/v1/tasks/{task_id}/run"),
    ("GET", "/api/v1/tasks/{task_id}/logs"),
    ("GET", "/api/v1/tasks/{task_id}/notifications"),
    ("GET", "/api/v1/tasks/{task_id}/preview"),
    ("POST", "/api/v1/schedules/preview"),
    ("GET", "/api/v1/users/{user_id}/tasks"),
    ("GET", "/api/v1/users/{user_id}/tasks/running-count"),
    ("POST", "/api/v1/users/{user_id}/signing-keys"),
    ("GET", "/api/v1/users/{user_id}/signing-keys"),
    ("DELETE", "/api/v1/users/{user_id}/signing-keys/{key_id}"),
    ("GET", "/api/v1/cluster"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/api/v1/openapi.json"),
];

const DOCUMENT: &str = "/api/v1/openapi.json";
const ERROR_BODY_REF: &str = "#/components/schemas/ErrorBody";
/// The message of the server's answer to a path it does not serve at all.
const NO_SUCH_ENDPOINT: &str = "no such endpoint";

/// GET the document without a token; panics unless it is a 200 JSON answer.
async fn fetch_document(app: &TestApp) -> Value {
    let response = app
        .client
        .get(app.url(DOCUMENT))
        .send()
        .await
        .expect("the document is answered");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = response.text().await.expect("a body");
    assert_eq!(status, 200, "GET {DOCUMENT} without a token: {text}");
    assert!(
        content_type.starts_with("application/json"),
        "the document must be served as JSON, got Content-Type {content_type:?}"
    );
    serde_json::from_str(&text).expect("the document is JSON")
}

/// Every operation in the document: (METHOD, path template, operation object).
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    let paths = doc["paths"].as_object().expect("`paths` is an object");
    let mut out = Vec::new();
    for (path, item) in paths {
        let item = item.as_object().expect("a path item is an object");
        for (key, operation) in item {
            if METHODS.contains(&key.as_str()) {
                out.push((key.to_uppercase(), path.clone(), operation.clone()));
            }
        }
    }
    out
}

/// The names of the HTTP bearer security schemes in the document.
fn bearer_schemes(doc: &Value) -> Vec<String> {
    doc["components"]["securitySchemes"]
        .as_object()
        .map(|schemes| {
            schemes
                .iter()
                .filter(|(_, s)| {
                    s["type"] == "http"
                        && s["scheme"]
                            .as_str()
                            .is_some_and(|v| v.eq_ignore_ascii_case("bearer"))
                })
                .map(|(name, _)| name.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// The path with its parameters filled: a random task id and key id, user 1001.
fn fill_template(template: &str) -> String {
    let filled = template
        .replace("{task_id}", &uuid::Uuid::new_v4().to_string())
        .replace("{key_id}", &uuid::Uuid::new_v4().to_string())
        .replace("{user_id}", "1001");
    assert!(
        !filled.contains('{'),
        "{template}: a path parameter this test does not know how to fill"
    );
    filled
}

/// The `$ref` of an operation response's JSON body, if it has one.
fn response_ref(response: &Value) -> Option<&str> {
    response["content"]["application/json"]["schema"]["$ref"].as_str()
}

/// The property names of a schema in `components.schemas`, and its required ones.
fn schema_fields(doc: &Value, name: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let schema = &doc["components"]["schemas"][name];
    let properties = schema["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("schema {name} has no properties: {schema}"))
        .keys()
        .cloned()
        .collect();
    let required = schema["required"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|v| v.as_str().expect("a name").to_string())
                .collect()
        })
        .unwrap_or_default();
    (properties, required)
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("expected a JSON object, got {v}"))
        .keys()
        .cloned()
        .collect()
}

/// The object `value` has exactly the properties of schema `name`, and every required one.
fn assert_matches_schema(doc: &Value, name: &str, value: &Value) {
    let (properties, required) = schema_fields(doc, name);
    let got = keys(value);
    assert_eq!(
        got, properties,
        "the server's {name} ({value}) and the documented schema disagree on the fields"
    );
    assert!(
        required.is_subset(&got),
        "{name}: the schema requires {required:?} but the server sent {got:?}"
    );
}

/// Every `$ref` anywhere in `v`.
fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(object) => {
            for (k, v) in object {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

// ---- tests --------------------------------------------------------------------------------

#[actix_web::test]
async fn the_openapi_document_is_public_openapi_3_1_with_the_bearer_scheme() {
    let app = spawn_app(Backend::Sqlite).await;
    let doc = fetch_document(&app).await;

    let version = doc["openapi"].as_str().unwrap_or("");
    assert!(
        version.starts_with("3.1"),
        "the document must be OpenAPI 3.1, got openapi = {:?}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["title"], "tickwheel");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));

    let schemes = bearer_schemes(&doc);
    assert_eq!(
        schemes.len(),
        1,
        "one HTTP bearer security scheme, got {}",
        doc["components"]["securitySchemes"]
    );
    let scheme = &doc["components"]["securitySchemes"][&schemes[0]];
    assert_eq!(scheme["bearerFormat"], "JWT", "the bearer scheme: {scheme}");

    // Every reference in the document resolves.
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty(), "the document uses component schemas");
    for r in refs {
        let pointer = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{r}: only local references are expected"));
        assert!(
            doc.pointer(pointer).is_some(),
            "{r} does not resolve in the document"
        );
    }
}

#[actix_web::test]
async fn the_document_lists_every_served_route_and_the_server_serves_every_documented_one() {
    let app = spawn_app(Backend::Sqlite).await;
    let doc = fetch_document(&app).await;
    let operations = operations(&doc);

    // The document lists exactly what the API serves.
    let documented: BTreeSet<(String, String)> = operations
        .iter()
        .map(|(method, path, _)| (method.clone(), path.clone()))
        .collect();
    let served: BTreeSet<(String, String)> = SERVED
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        documented,
        served,
        "documented but not in the list: {:?}; in the list but not documented: {:?}",
        documented.difference(&served).collect::<Vec<_>>(),
        served.difference(&documented).collect::<Vec<_>>()
    );

    // The detector below is sound: a path nobody serves gets the generic 404.
    let (status, body) = {
        let r = app
            .client
            .get(app.url("/api/v1/no-such-route"))
            .bearer_auth(token(1001))
            .send()
            .await
            .expect("answered");
        (
            r.status().as_u16(),
            r.json::<Value>().await.unwrap_or(Value::Null),
        )
    };
    assert_eq!(
        (status, body["message"].as_str()),
        (404, Some(NO_SUCH_ENDPOINT))
    );

    // And independently of the list: the server serves every documented operation.
    for (method, template, operation) in &operations {
        let path = fill_template(template);
        let mut request = app
            .client
            .request(
                Method::from_bytes(method.as_bytes()).expect("a method"),
                app.url(&path),
            )
            .bearer_auth(token(1001));
        if operation.get("requestBody").is_some() {
            request = request.json(&json!({}));
        }
        let response = request.send().await.expect("answered");
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_ne!(
            status, 405,
            "{method} {template} is documented but the server refuses the method: {body}"
        );
        assert!(
            !(status == 404 && body["message"] == NO_SUCH_ENDPOINT),
            "{method} {template} is documented but the server has no such endpoint ({path})"
        );
    }
}

#[actix_web::test]
async fn every_api_operation_requires_the_bearer_token_and_documents_its_errors() {
    let app = spawn_app(Backend::Sqlite).await;
    let doc = fetch_document(&app).await;
    let schemes = bearer_schemes(&doc);
    assert!(!schemes.is_empty(), "no bearer scheme in the document");

    let error_body = &doc["components"]["schemas"]["ErrorBody"];
    let (fields, required) = schema_fields(&doc, "ErrorBody");
    let all: BTreeSet<String> = ["status", "code", "message"].map(String::from).into();
    assert_eq!(fields, all, "ErrorBody: {error_body}");
    assert_eq!(required, all, "ErrorBody: {error_body}");

    // No document-wide requirement: the public operations must stay public.
    assert!(
        doc.get("security")
            .is_none_or(|s| s.as_array().is_some_and(Vec::is_empty)),
        "a document-wide security requirement would cover the public paths: {}",
        doc["security"]
    );

    for (method, path, operation) in operations(&doc) {
        let requirements = operation["security"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let needs_bearer = requirements.iter().any(|r| {
            schemes
                .iter()
                .any(|name| r.get(name).is_some_and(Value::is_array))
        });
        let responses = operation["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path}: no responses"));
        let errors: Vec<(&String, &Value)> = responses
            .iter()
            .filter(|(status, _)| status.starts_with('4') || status.starts_with('5'))
            .collect();

        // Every error response an operation declares carries the error body.
        for (status, response) in &errors {
            assert_eq!(
                response_ref(response),
                Some(ERROR_BODY_REF),
                "{method} {path}: the {status} response must refer to ErrorBody: {response}"
            );
        }

        if path.starts_with("/api/v1/") && path != DOCUMENT {
            assert!(
                needs_bearer,
                "{method} {path} must declare the bearer security requirement, got {requirements:?}"
            );
            assert!(
                errors.iter().any(|(s, _)| s.starts_with('4')),
                "{method} {path} must document at least one 4xx response with ErrorBody"
            );
            assert!(
                responses.contains_key("401"),
                "{method} {path} must document the 401 of a missing or bad token"
            );
        } else {
            assert!(
                !needs_bearer,
                "{method} {path} is public but the document asks for a token"
            );
        }
    }

    // The probes: /readyz documents its 503 with the error body.
    let readyz = &doc["paths"]["/readyz"]["get"]["responses"]["503"];
    assert_eq!(
        response_ref(readyz),
        Some(ERROR_BODY_REF),
        "/readyz 503: {readyz}"
    );

    // And the server agrees that the document needs no token while the operations do.
    let r = app
        .client
        .get(app.url("/api/v1/users/1001/tasks"))
        .send()
        .await
        .expect("answered");
    assert_eq!(r.status().as_u16(), 401);
}

#[actix_web::test]
async fn the_documented_schemas_have_the_fields_the_server_sends() {
    let app = spawn_app(Backend::Sqlite).await;
    let doc = fetch_document(&app).await;

    // Create, with every optional field, and a once task so there is an execution to log.
    let mut body = once_task(&app, "/documented", None);
    body["method"] = json!("PUT");
    body["headers"] = json!({"X-Api-Key": "k"});
    body["body"] = json!({"data": "example"});
    body["stop_condition"] = json!({"max_cnt": 1, "finsh": true});
    body["retry"] = json!({"max_retries": 1, "backoff_ms": 100});
    let (create_fields, _) = schema_fields(&doc, "CreateTaskRequest");
    assert_eq!(
        keys(&body).difference(&create_fields).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "CreateTaskRequest lacks fields a create accepts"
    );
    let (status, created) = app.create_as(1001, &body).await;
    assert_eq!(status, 201, "{created}");
    assert_matches_schema(&doc, "CreateTaskResponse", &created);
    let id = created["task_id"].as_str().expect("task_id").to_string();

    let logs = app.wait_logs(&id, 1, Duration::from_secs(10)).await;
    assert_matches_schema(&doc, "LogEntry", &logs[0]);
    assert_matches_schema(&doc, "LogsResponse", &app.logs(&id).await);

    let view = app
        .wait_task(&id, Duration::from_secs(10), |v| {
            !v["last_execution"].is_null()
        })
        .await;
    assert_matches_schema(&doc, "TaskView", &view);
    assert_matches_schema(&doc, "LastExecution", &view["last_execution"]);

    let (status, list) = app.get_json("/api/v1/users/1001/tasks", 1001).await;
    assert_eq!(status, 200, "{list}");
    assert_matches_schema(&doc, "TaskList", &list);
    assert_matches_schema(&doc, "TaskSummary", &list["tasks"][0]);

    let (status, count) = app
        .get_json("/api/v1/users/1001/tasks/running-count", 1001)
        .await;
    assert_eq!(status, 200, "{count}");
    assert_matches_schema(&doc, "RunningCount", &count);

    let (status, error) = app.get_json("/api/v1/users/1002/tasks", 1001).await;
    assert_eq!(status, 403, "{error}");
    assert_matches_schema(&doc, "ErrorBody", &error);

    let other = app.create_task(interval_task(&app, "/other", 3600)).await;
    let (status, cancelled) = app.cancel(&other).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_matches_schema(&doc, "MessageResponse", &cancelled);
}

#[actix_web::test]
async fn the_docs_ui_is_served_from_the_binary_at_docs() {
    let app = spawn_app(Backend::Sqlite).await;

    // A browser asking for /docs is sent to /docs/.
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let r = no_redirects
        .get(app.url("/docs"))
        .send()
        .await
        .expect("answered");
    assert!(
        r.status().is_redirection(),
        "GET /docs should redirect, got {}",
        r.status()
    );
    assert_eq!(
        r.headers().get("location").and_then(|v| v.to_str().ok()),
        Some("/docs/")
    );

    // Following it gives the Swagger UI page, without a token.
    let r = app
        .client
        .get(app.url("/docs"))
        .send()
        .await
        .expect("answered");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.url().path(), "/docs/");
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let page = r.text().await.expect("a page");
    assert!(
        page.contains("swagger-ui"),
        "not the Swagger UI page: {page}"
    );

    // Every script and stylesheet the page references is served from the binary.
    let assets: Vec<String> = page
        .split(['"', '\''])
        .filter(|s| s.ends_with(".js") || s.ends_with(".css"))
        .map(String::from)
        .collect();
    assert!(
        assets.iter().any(|a| a.contains("swagger-ui")),
        "the page references no Swagger UI assets: {page}"
    );
    for asset in &assets {
        assert!(
            !asset.starts_with("http://")
                && !asset.starts_with("https://")
                && !asset.starts_with("//"),
            "the page loads {asset} from elsewhere; it must come from the binary"
        );
        let path = match asset.strip_prefix("./") {
            Some(rest) => format!("/docs/{rest}"),
            None if asset.starts_with('/') => asset.clone(),
            None => format!("/docs/{asset}"),
        };
        let r = app
            .client
            .get(app.url(&path))
            .send()
            .await
            .expect("answered");
        assert_eq!(r.status().as_u16(), 200, "{path} (referenced as {asset})");
        let bytes = r.bytes().await.expect("a body");
        assert!(!bytes.is_empty(), "{path} is empty");
        if path.ends_with("swagger-initializer.js") {
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                text.contains(DOCUMENT),
                "the UI must load {DOCUMENT}: {text}"
            );
        }
    }
}
