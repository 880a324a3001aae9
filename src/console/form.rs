//! The create and edit form — one form for all three task types — with its live check (field
//! errors and the next fire times, as the schedule is typed) and its dry run.
//!
//! The form's fields are the API's own (`interval_seconds`, `retry.max_retries`, …): a post is
//! turned into the JSON body `POST /api/v1/tasks` or `PATCH /api/v1/tasks/{id}` takes and
//! handed to the same operation, so the validation and its messages are the API's; a message
//! is shown next to the field it names.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde_json::{json, Map, Value};

use super::session::Session;
use super::view::{self, FireRow};
use super::{field, form_pairs, page_response, see_other, ConsoleError, Layout};
use crate::api::tasks::parse_task_id;
use crate::api::views::{DryRunResponse, TaskView};
use crate::api::{self, ApiError, AppState};
use crate::domain::validate::parse_create_within;

/// The form's fields that hold whole numbers.
const NUMBERS: [&str; 7] = [
    "user_id",
    "notify.late_ms",
    "interval_seconds",
    "retry.max_retries",
    "retry.backoff_ms",
    "retention.max_age_days",
    "retention.max_logs",
];
/// The form's fields that hold JSON.
const JSONS: [&str; 2] = ["body", "stop_condition"];
/// Every field an error message may name, longest first where one is a prefix of another.
const FIELDS: [&str; 22] = [
    "notify.url",
    "notify.events",
    "notify.late_ms",
    "notify",
    "misfire_policy",
    "retry.max_retries",
    "retry.backoff_ms",
    "retention.max_age_days",
    "retention.max_logs",
    "retry",
    "retention",
    "user_id",
    "type",
    "http_endpoint",
    "method",
    "headers",
    "body",
    "interval_seconds",
    "cron_expression",
    "timezone",
    "start_time",
    "stop_condition",
];
/// The notification fields: `notify.events` repeats, one per box ticked.
const NOTIFY: [&str; 3] = ["notify.url", "notify.events", "notify.late_ms"];
/// The events a task may be notified of, in the order the form shows them.
pub const EVENTS: [&str; 5] = ["failing", "recovered", "completed", "failed", "late"];
/// The schedule's fields, which the live preview reads.
const SCHEDULE: [&str; 5] = [
    "type",
    "interval_seconds",
    "cron_expression",
    "timezone",
    "start_time",
];

/// Field errors: the field a message names (or `""` for the form as a whole) → the message.
type Errors = HashMap<String, String>;

/// The field an API message names (`interval_seconds: must be …` → `interval_seconds`,
/// `headers.X-Key: …` → `headers`), or `""`.
fn field_of(message: &str) -> &'static str {
    let head = message.split(": ").next().unwrap_or("");
    FIELDS
        .iter()
        .find(|f| {
            head == **f
                || head
                    .strip_prefix(**f)
                    .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
        })
        .copied()
        .unwrap_or("")
}

fn error_at(message: String) -> Errors {
    let mut e = Errors::new();
    e.insert(field_of(&message).to_owned(), message);
    e
}

/// The JSON body a form post describes. Empty fields are left out (the API's defaults apply);
/// numbers that do not parse are passed on as text, for the API to name.
fn to_json(pairs: &[(String, String)]) -> Result<Map<String, Value>, Errors> {
    let mut out = Map::new();
    let mut errors = Errors::new();
    for (k, v) in pairs {
        let v = v.trim();
        if v.is_empty() || k == "csrf" || k == "version" || out.contains_key(k.as_str()) {
            continue;
        }
        if k == "notify.events" {
            // Every box ticked, as one list (a repeated key).
            let events: Vec<Value> = pairs
                .iter()
                .filter(|(k, v)| k == "notify.events" && !v.trim().is_empty())
                .map(|(_, v)| Value::from(v.trim()))
                .collect();
            let entry = out
                .entry("notify".to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(o) = entry.as_object_mut() {
                o.insert("events".to_owned(), Value::Array(events));
            }
            continue;
        }
        let value = if NUMBERS.contains(&k.as_str()) {
            v.parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::from(v))
        } else if JSONS.contains(&k.as_str()) {
            match serde_json::from_str::<Value>(v) {
                Ok(j) => j,
                Err(e) => {
                    errors.insert(k.clone(), format!("{k}: not valid JSON: {e}"));
                    continue;
                }
            }
        } else if k == "headers" {
            let mut h = Map::new();
            for (i, line) in v.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                match line.split_once(':') {
                    Some((name, value)) => {
                        h.insert(name.trim().to_owned(), Value::from(value.trim()));
                    }
                    None => {
                        errors.insert(
                            "headers".into(),
                            format!("headers: line {}: expected `Name: value`", i + 1),
                        );
                    }
                }
            }
            Value::Object(h)
        } else if FIELDS.contains(&k.as_str()) {
            Value::from(v)
        } else {
            continue;
        };
        match k.split_once('.') {
            Some((parent, child)) => {
                let entry = out
                    .entry(parent.to_owned())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Some(o) = entry.as_object_mut() {
                    o.insert(child.to_owned(), value);
                }
            }
            None => {
                out.insert(k.clone(), value);
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// The create/edit form.
#[derive(Template)]
#[template(path = "console/form.html")]
struct FormPage {
    layout: Layout,
    /// `None` for create, the task's id for edit.
    task_id: Option<String>,
    version: String,
    values: HashMap<String, String>,
    errors: Errors,
    fires: Vec<FireRow>,
    zone: String,
}

impl FormPage {
    fn val(&self, name: &str) -> &str {
        self.values.get(name).map(String::as_str).unwrap_or("")
    }

    fn err(&self, name: &str) -> &str {
        self.errors.get(name).map(String::as_str).unwrap_or("")
    }

    fn is(&self, name: &str, value: &str) -> bool {
        self.val(name) == value
    }

    /// Whether the box of `event` is ticked.
    fn notifies(&self, event: &&str) -> bool {
        self.val("notify.events").split(',').any(|e| e == *event)
    }

    fn events(&self) -> &'static [&'static str] {
        &EVENTS
    }

    fn action(&self) -> String {
        match &self.task_id {
            Some(id) => format!("/tasks/{id}/edit"),
            None => "/tasks/new".to_owned(),
        }
    }
}

/// A post's values; the ticked events as one comma-separated value.
fn values_of(pairs: &[(String, String)]) -> HashMap<String, String> {
    let mut v = HashMap::new();
    for (k, val) in pairs {
        v.entry(k.clone()).or_insert_with(|| val.clone());
    }
    v.insert("notify.events".to_owned(), events_of(pairs));
    v
}

/// The ticked events, comma-separated in the form's order.
fn events_of(pairs: &[(String, String)]) -> String {
    EVENTS
        .iter()
        .filter(|e| pairs.iter().any(|(k, v)| k == "notify.events" && v == *e))
        .copied()
        .collect::<Vec<_>>()
        .join(",")
}

fn form_response(status: StatusCode, f: FormPage) -> HttpResponse {
    page_response(status, f)
}

/// The empty create form (`POST /api/v1/tasks` as a page).
pub async fn new_page(s: Session) -> Result<HttpResponse, ConsoleError> {
    let mut values = HashMap::new();
    values.insert("user_id".to_owned(), s.who.user_id.to_string());
    values.insert("type".to_owned(), "interval".to_owned());
    values.insert("method".to_owned(), "POST".to_owned());
    Ok(form_response(
        StatusCode::OK,
        FormPage {
            layout: Layout::of(&s),
            task_id: None,
            version: String::new(),
            values,
            errors: Errors::new(),
            fires: Vec::new(),
            zone: String::new(),
        },
    ))
}

/// Creates the task the form describes, or shows the form again with the API's field errors.
pub async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    s: Session,
    body: web::Bytes,
) -> Result<HttpResponse, ConsoleError> {
    let pairs = form_pairs(&body);
    s.check(&req, &pairs)?;
    let refused = |errors: Errors, status: StatusCode| {
        Ok(form_response(
            status,
            FormPage {
                layout: Layout::of(&s),
                task_id: None,
                version: String::new(),
                values: values_of(&pairs),
                errors,
                fires: Vec::new(),
                zone: String::new(),
            },
        ))
    };
    let v = match to_json(&pairs) {
        Ok(v) => Value::Object(v),
        Err(errors) => return refused(errors, StatusCode::BAD_REQUEST),
    };
    match api::tasks::create_of(&state, &s.who, &v).await {
        Ok(created) => Ok(see_other(&format!(
            "/tasks/{}?done=created",
            created.task_id
        ))),
        Err(e) => match shown_in_form(e) {
            Ok((errors, status)) => refused(errors, status),
            Err(e) => Err(e),
        },
    }
}

/// The API refusals a form shows next to its fields (bad input, a user the token may not act
/// for, a quota); the others are pages of their own.
fn shown_in_form(e: ApiError) -> Result<(Errors, StatusCode), ConsoleError> {
    let status = actix_web::ResponseError::status_code(&e);
    match e {
        ApiError::InvalidInput(m)
        | ApiError::InvalidJson(m)
        | ApiError::Forbidden(m)
        | ApiError::QuotaExceeded(m)
        | ApiError::VersionMismatch(m)
        | ApiError::InvalidState(m) => Ok((error_at(m), status)),
        other => Err(other.into()),
    }
}

/// The form's values for a stored task.
fn values_of_task(t: &TaskView) -> HashMap<String, String> {
    let mut v = HashMap::new();
    let mut put = |k: &str, val: String| {
        v.insert(k.to_owned(), val);
    };
    put("user_id", t.user_id.to_string());
    put("type", t.task_type.clone());
    put("http_endpoint", t.http_endpoint.clone());
    put("method", t.method.clone());
    if let Some(b) = &t.body {
        put("body", b.to_string());
    }
    if let Some(i) = t.interval_seconds {
        put("interval_seconds", i.to_string());
    }
    put(
        "cron_expression",
        t.cron_expression.clone().unwrap_or_default(),
    );
    put("timezone", t.timezone.clone().unwrap_or_default());
    put("start_time", t.start_time.clone().unwrap_or_default());
    if t.stop_condition.as_object().is_some_and(|o| !o.is_empty()) {
        put("stop_condition", t.stop_condition.to_string());
    }
    for (parent, o) in [("retry", &t.retry), ("retention", &t.retention)] {
        if let Some(Value::Object(o)) = o {
            for (k, val) in o {
                if !val.is_null() {
                    put(&format!("{parent}.{k}"), val.to_string());
                }
            }
        }
    }
    put("misfire_policy", t.misfire_policy.clone());
    if let Some(n) = &t.notify {
        put(
            "notify.url",
            n["url"].as_str().unwrap_or_default().to_owned(),
        );
        if let Some(ms) = n["late_ms"].as_u64() {
            put("notify.late_ms", ms.to_string());
        }
        let events: Vec<(String, String)> = n["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e.as_str())
            .map(|e| ("notify.events".to_owned(), e.to_owned()))
            .collect();
        put("notify.events", events_of(&events));
    }
    v
}

/// The edit form of a task, filled in (header values are never shown: an empty headers field
/// keeps them).
pub async fn edit_page(
    path: web::Path<String>,
    state: web::Data<AppState>,
    s: Session,
) -> Result<HttpResponse, ConsoleError> {
    let task_id = parse_task_id(&path)?;
    let t = api::tasks::view_of(&state, &s.who, task_id).await?;
    let preview = api::schedules::task_preview_of(&state, &s.who, task_id, 10).await?;
    let (fires, zone) = view::fires(&preview);
    Ok(form_response(
        StatusCode::OK,
        FormPage {
            layout: Layout::of(&s),
            task_id: Some(t.task_id.clone()),
            version: t.version.to_string(),
            values: values_of_task(&t),
            errors: Errors::new(),
            fires,
            zone,
        },
    ))
}

/// Changes a task as the edit form says: only the fields that differ from the stored task
/// are sent, with the version the form was filled from (a change made meanwhile is a 409).
pub async fn edit(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    s: Session,
    body: web::Bytes,
) -> Result<HttpResponse, ConsoleError> {
    let pairs = form_pairs(&body);
    s.check(&req, &pairs)?;
    let task_id = parse_task_id(&path)?;
    let m = state
        .tasks()
        .owned(&s.who, task_id)
        .await
        .map_err(ApiError::from)?;
    let expected = field(&pairs, "version").parse::<i64>().ok();
    let current = values_of_task(&api::tasks::view_of(&state, &s.who, task_id).await?);
    let refused = |errors: Errors, status: StatusCode| {
        Ok(form_response(
            status,
            FormPage {
                layout: Layout::of(&s),
                task_id: Some(task_id.to_string()),
                version: field(&pairs, "version").to_owned(),
                values: values_of(&pairs),
                errors,
                fires: Vec::new(),
                zone: String::new(),
            },
        ))
    };
    // Only what changed: an unchanged interval must not be re-anchored. `notify` is one
    // object: when any of its fields changed, all of them go (none at all removes it).
    let posted = values_of(&pairs);
    let is_notify = |k: &str| NOTIFY.contains(&k);
    let notify_changed = NOTIFY.iter().any(|k| {
        current.get(*k).map(String::as_str).unwrap_or("")
            != posted.get(*k).map(|v| v.trim()).unwrap_or("")
    });
    let changed: Vec<(String, String)> = pairs
        .iter()
        .filter(|(k, v)| {
            !matches!(k.as_str(), "user_id" | "type")
                && if is_notify(k) {
                    notify_changed
                } else {
                    current.get(k).map(String::as_str).unwrap_or("") != v.trim()
                }
        })
        .cloned()
        .collect();
    let mut v = match to_json(&changed) {
        Ok(v) => v,
        Err(errors) => return refused(errors, StatusCode::BAD_REQUEST),
    };
    if notify_changed && !v.contains_key("notify") {
        v.insert("notify".to_owned(), Value::Null);
    }
    let v = Value::Object(v);
    match api::tasks::patch_of(&state, &s.who, task_id, m, expected, &v).await {
        Ok(_) => Ok(see_other(&format!("/tasks/{task_id}?done=edited"))),
        Err(e) => match shown_in_form(e) {
            Ok((errors, status)) => refused(errors, status),
            Err(e) => Err(e),
        },
    }
}

#[derive(Template)]
#[template(path = "console/preview.html")]
struct PreviewFragment {
    fires: Vec<FireRow>,
    zone: String,
}

/// The live check, as the form is typed: the field errors the create validation finds and
/// the next fire times of the schedule, as JSON `{"errors": {field: message}, "preview":
/// "<html>"}` for the page's script.
pub async fn check(
    req: HttpRequest,
    state: web::Data<AppState>,
    s: Session,
    body: web::Bytes,
) -> Result<HttpResponse, ConsoleError> {
    let pairs = form_pairs(&body);
    s.check(&req, &pairs)?;
    let editing = !field(&pairs, "version").is_empty();
    let mut errors = Errors::new();
    let mut preview = String::new();
    match to_json(&pairs) {
        Err(e) => errors = e,
        Ok(v) => {
            let v = Value::Object(v);
            if !editing {
                if let Err(e) = parse_create_within(&v, &state.input_limits) {
                    errors = error_at(ApiError::from(e).to_string());
                }
            }
            let schedule: Map<String, Value> = SCHEDULE
                .iter()
                .filter_map(|k| v.get(*k).map(|x| ((*k).to_owned(), x.clone())))
                .collect();
            match api::schedules::preview_of(&state, &Value::Object(schedule)) {
                Ok(p) => {
                    let (fires, zone) = view::fires(&p);
                    preview = PreviewFragment { fires, zone }.render()?;
                }
                Err(e) => {
                    let m = e.to_string();
                    errors.entry(field_of(&m).to_owned()).or_insert(m);
                }
            }
        }
    }
    Ok(HttpResponse::Ok().json(json!({"errors": errors, "preview": preview})))
}

#[derive(Template)]
#[template(path = "console/dry_run.html")]
struct DryRunFragment {
    d: DryRunResponse,
    headers: Vec<(String, String)>,
    body: String,
    times: Vec<String>,
}

/// The dry run: every check of a create (destination and quota included), and the request
/// the task would send; nothing is stored or sent. JSON `{"errors": …, "html": "<html>"}`.
pub async fn dry_run(
    req: HttpRequest,
    state: web::Data<AppState>,
    s: Session,
    body: web::Bytes,
) -> Result<HttpResponse, ConsoleError> {
    let pairs = form_pairs(&body);
    s.check(&req, &pairs)?;
    let v = match to_json(&pairs) {
        Ok(v) => Value::Object(v),
        Err(errors) => return Ok(HttpResponse::Ok().json(json!({"errors": errors, "html": ""}))),
    };
    match api::tasks::dry_run_of(&state, &s.who, &v).await {
        Ok(d) => {
            let html = DryRunFragment {
                headers: d
                    .request
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                body: d
                    .request
                    .body
                    .as_ref()
                    .map(|b| serde_json::to_string_pretty(b).unwrap_or_default())
                    .unwrap_or_default(),
                times: d
                    .next_run_times
                    .iter()
                    .map(|t| view::short_time(t))
                    .collect(),
                d,
            }
            .render()?;
            Ok(HttpResponse::Ok().json(json!({"errors": {}, "html": html})))
        }
        Err(e) => {
            let (errors, _) = shown_in_form(e)?;
            Ok(HttpResponse::Ok().json(json!({"errors": errors, "html": ""})))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_form_post_becomes_the_api_body() {
        let v = to_json(&pairs(&[
            ("csrf", "x"),
            ("user_id", "1001"),
            ("type", "interval"),
            ("http_endpoint", "http://127.0.0.1:9/x"),
            ("interval_seconds", "20"),
            ("cron_expression", ""),
            ("headers", "Authorization: Bearer a:b\n\nX-Two: 2"),
            ("body", r#"{"a": 1}"#),
            ("retry.max_retries", "2"),
            ("retention.max_logs", "ten"),
        ]))
        .unwrap();
        assert_eq!(
            Value::Object(v),
            json!({"user_id": 1001, "type": "interval", "http_endpoint": "http://127.0.0.1:9/x",
                   "interval_seconds": 20,
                   "headers": {"Authorization": "Bearer a:b", "X-Two": "2"},
                   "body": {"a": 1}, "retry": {"max_retries": 2},
                   "retention": {"max_logs": "ten"}})
        );
    }

    #[test]
    fn bad_json_and_header_lines_are_named_by_field() {
        let e = to_json(&pairs(&[("body", "{"), ("headers", "no colon")])).unwrap_err();
        assert!(e["body"].starts_with("body: not valid JSON"));
        assert!(e["headers"].contains("line 1"));
    }

    #[test]
    fn an_api_message_is_shown_at_the_field_it_names() {
        assert_eq!(
            field_of("interval_seconds: must be at least 1"),
            "interval_seconds"
        );
        assert_eq!(
            field_of("retry.max_retries: at most 10"),
            "retry.max_retries"
        );
        assert_eq!(field_of("headers.X-Key: too long"), "headers");
        assert_eq!(
            field_of("stop_condition.max_cnt: must be ≥ 1"),
            "stop_condition"
        );
        assert_eq!(field_of("the user's active tasks would exceed 5"), "");
    }
}
