//! Request bodies to validated task definitions.
//!
//! `parse_create` turns a create body into a [`TaskSpec`]; `parse_patch` and `apply_patch` turn a
//! patch body into a [`TaskPatch`] and merge it into an existing definition, validated as create
//! does. Every failure is a [`FieldError`] naming the field and saying what was wrong in words a
//! user can act on.
//!
//! Outbound address checks (private or loopback destinations) need DNS and configuration and
//! are done by the caller; this module only checks the URL's form.

mod fields;
mod notify;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::cron::CronSchedule;
use super::error::shorten;
pub use super::error::FieldError;
pub use super::limits::InputLimits;
use super::notify::Notify;
use super::retention::{parse_retention, Retention};
use super::stop::StopCondition;
use super::task::{Method, MisfirePolicy, RetryOverride, TaskSpec, TaskType};
use fields::{
    body_object, check_interval, parse_body, parse_cron_text, parse_endpoint, parse_headers,
    parse_interval, parse_method, parse_misfire_policy, parse_retry, parse_start_time,
    parse_stop_condition, parse_timezone, parse_type, parse_user_id, required, validate_cron,
};
pub use fields::{MAX_BACKOFF_MS, MAX_INTERVAL_SECONDS, MAX_RETRIES};
use notify::parse_notify;

/// The fields PATCH may change.
const PATCHABLE: [&str; 13] = [
    "http_endpoint",
    "method",
    "headers",
    "body",
    "interval_seconds",
    "cron_expression",
    "timezone",
    "start_time",
    "stop_condition",
    "retry",
    "misfire_policy",
    "retention",
    "notify",
];

/// Task fields that exist but PATCH may not change.
const NOT_PATCHABLE: [&str; 14] = [
    "task_id",
    "user_id",
    "type",
    "status",
    "next_run_time",
    "execution_count",
    "consecutive_failures",
    "version",
    "created_at",
    "updated_at",
    "last_execution",
    "header_names",
    "last_updated",
    "missed_slots",
];

/// Validates a create body within the default [`InputLimits`]. Fields that do not belong to the
/// task's type are ignored, as are unknown keys.
pub fn parse_create(v: &Value) -> Result<TaskSpec, FieldError> {
    parse_create_within(v, &InputLimits::DEFAULT)
}

/// Validates a create body within `limits` (the configuration's `[limits]`).
pub fn parse_create_within(v: &Value, limits: &InputLimits) -> Result<TaskSpec, FieldError> {
    let object = body_object(v)?;
    let field = |name: &str| object.get(name).unwrap_or(&Value::Null);

    let user_id = parse_user_id(field("user_id"))?;
    let task_type = parse_type(field("type"))?;
    let http_endpoint =
        required(object, "http_endpoint").and_then(|v| parse_endpoint(v, limits))?;
    let method = parse_method(field("method"))?;
    let headers = parse_headers(field("headers"), limits)?;
    let body = parse_body(field("body"))?;

    let ScheduleSpec {
        interval_seconds,
        cron_expression,
        timezone,
        start_time,
        ..
    } = schedule_fields(object, task_type, limits)?;
    let stop_condition = parse_stop_condition(field("stop_condition"), limits)?;
    let retry = parse_retry(field("retry"))?;
    let misfire_policy = parse_misfire_policy(field("misfire_policy"))?;
    let retention = parse_retention(field("retention"), limits.retention)?;
    let notify = parse_notify(field("notify"), limits)?;

    Ok(TaskSpec {
        user_id,
        task_type,
        http_endpoint,
        method,
        headers,
        body,
        interval_seconds,
        cron_expression,
        timezone,
        start_time,
        stop_condition,
        retry,
        misfire_policy,
        retention,
        notify,
    })
}

/// The schedule fields of a task (`type`, `interval_seconds`, `cron_expression`, `timezone`,
/// `start_time`), validated as create validates them.
#[derive(Debug, Clone)]
pub struct ScheduleSpec {
    pub task_type: TaskType,
    pub interval_seconds: Option<u64>,
    pub cron_expression: Option<String>,
    /// Cron only: the canonical IANA name (`UTC` when not given).
    pub timezone: Option<String>,
    pub start_time: Option<DateTime<Utc>>,
}

/// Validates the schedule fields of a body as create does (fields that do not belong to the
/// type are ignored), within `limits`.
pub fn parse_schedule_within(v: &Value, limits: &InputLimits) -> Result<ScheduleSpec, FieldError> {
    let object = body_object(v)?;
    let task_type = parse_type(object.get("type").unwrap_or(&Value::Null))?;
    schedule_fields(object, task_type, limits)
}

fn schedule_fields(
    object: &serde_json::Map<String, Value>,
    task_type: TaskType,
    limits: &InputLimits,
) -> Result<ScheduleSpec, FieldError> {
    let field = |name: &str| object.get(name).unwrap_or(&Value::Null);
    let (mut interval_seconds, mut cron_expression, mut timezone) = (None, None, None);
    match task_type {
        TaskType::Interval => {
            interval_seconds = Some(required(object, "interval_seconds").and_then(parse_interval)?);
        }
        TaskType::Cron => {
            let expression =
                required(object, "cron_expression").and_then(|v| parse_cron_text(v, limits))?;
            let zone = parse_timezone(field("timezone"))?;
            validate_cron(&expression, &zone)?;
            cron_expression = Some(expression);
            timezone = Some(zone);
        }
        TaskType::Once => {}
    }
    let start_time = match field("start_time") {
        Value::Null => None,
        v => Some(parse_start_time(v)?),
    };
    Ok(ScheduleSpec {
        task_type,
        interval_seconds,
        cron_expression,
        timezone,
        start_time,
    })
}

/// A validated time zone name (`timezone`), canonical; `None` when not given.
pub fn parse_display_timezone(v: Option<&Value>) -> Result<Option<String>, FieldError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => parse_timezone(v).map(Some),
    }
}

/// A validated PATCH body: `Some` for each field to change.
#[derive(Debug, Default, Clone)]
pub struct TaskPatch {
    pub http_endpoint: Option<url::Url>,
    pub method: Option<Method>,
    /// `Some(vec![])` removes every header.
    pub headers: Option<Vec<(String, String)>>,
    /// `Some(None)` removes the body.
    pub body: Option<Option<Value>>,
    pub interval_seconds: Option<u64>,
    pub cron_expression: Option<String>,
    pub timezone: Option<String>,
    pub start_time: Option<DateTime<Utc>>,
    pub stop_condition: Option<StopCondition>,
    pub retry: Option<RetryOverride>,
    pub misfire_policy: Option<MisfirePolicy>,
    /// `Some(Retention::default())` (from `null`) goes back to the global limits.
    pub retention: Option<Retention>,
    /// `Some(None)` (from `null`) removes the task's notifications.
    pub notify: Option<Option<Notify>>,
}

impl TaskPatch {
    /// True when the patch changes when the task runs, so its next run must be recomputed.
    pub fn changes_schedule(&self) -> bool {
        self.interval_seconds.is_some()
            || self.cron_expression.is_some()
            || self.timezone.is_some()
            || self.start_time.is_some()
    }
}

/// Validates a PATCH body. Unknown keys and fields that cannot be changed are refused, naming
/// the key; an empty object is refused too. `null` resets the optional fields (`method` to
/// POST, `headers` to none, `body` to none, `timezone` to UTC, `stop_condition` and `retry` to
/// empty, `misfire_policy` to `fire_once`); the others cannot be `null`. Within the default [`InputLimits`].
pub fn parse_patch(v: &Value) -> Result<TaskPatch, FieldError> {
    parse_patch_within(v, &InputLimits::DEFAULT)
}

/// Validates a PATCH body within `limits` (the configuration's `[limits]`).
pub fn parse_patch_within(v: &Value, limits: &InputLimits) -> Result<TaskPatch, FieldError> {
    let object = body_object(v)?;
    if object.is_empty() {
        return Err(FieldError::new("body", "nothing to change"));
    }
    if let Some(key) = object.keys().find(|k| !PATCHABLE.contains(&k.as_str())) {
        let why = if NOT_PATCHABLE.contains(&key.as_str()) {
            "cannot be changed"
        } else {
            "is not a task field"
        };
        return Err(FieldError::new(shorten(key), why));
    }
    let mut patch = TaskPatch::default();
    if let Some(v) = object.get("http_endpoint") {
        patch.http_endpoint = Some(parse_endpoint(v, limits)?);
    }
    if let Some(v) = object.get("method") {
        patch.method = Some(parse_method(v)?);
    }
    if let Some(v) = object.get("headers") {
        patch.headers = Some(parse_headers(v, limits)?);
    }
    if let Some(v) = object.get("body") {
        patch.body = Some(parse_body(v)?);
    }
    if let Some(v) = object.get("interval_seconds") {
        patch.interval_seconds = Some(parse_interval(v)?);
    }
    if let Some(v) = object.get("cron_expression") {
        let expression = parse_cron_text(v, limits)?;
        // The syntax does not depend on the zone; apply_patch checks it with the task's zone.
        if let Err(e) = CronSchedule::parse(&expression, "UTC") {
            return Err(e.into());
        }
        patch.cron_expression = Some(expression);
    }
    if let Some(v) = object.get("timezone") {
        patch.timezone = Some(parse_timezone(v)?);
    }
    if let Some(v) = object.get("start_time") {
        patch.start_time = Some(parse_start_time(v)?);
    }
    if let Some(v) = object.get("stop_condition") {
        patch.stop_condition = Some(parse_stop_condition(v, limits)?);
    }
    if let Some(v) = object.get("retry") {
        patch.retry = Some(parse_retry(v)?);
    }
    if let Some(v) = object.get("misfire_policy") {
        patch.misfire_policy = Some(parse_misfire_policy(v)?);
    }
    if let Some(v) = object.get("retention") {
        patch.retention = Some(parse_retention(v, limits.retention)?);
    }
    if let Some(v) = object.get("notify") {
        patch.notify = Some(parse_notify(v, limits)?);
    }
    Ok(patch)
}

/// Merges `patch` into `spec` and validates the result as create does. Schedule fields of
/// another task type are refused rather than ignored: a PATCH that asks to change them would
/// otherwise succeed without changing anything.
pub fn apply_patch(spec: &TaskSpec, patch: TaskPatch) -> Result<TaskSpec, FieldError> {
    let kind = spec.task_type;
    let wrong_type = |field: &str, belongs: TaskType| {
        FieldError::new(
            field,
            format!(
                "only applies to {} tasks; this is a {} task",
                belongs.as_str(),
                kind.as_str()
            ),
        )
    };
    if patch.interval_seconds.is_some() && kind != TaskType::Interval {
        return Err(wrong_type("interval_seconds", TaskType::Interval));
    }
    if patch.cron_expression.is_some() && kind != TaskType::Cron {
        return Err(wrong_type("cron_expression", TaskType::Cron));
    }
    if patch.timezone.is_some() && kind != TaskType::Cron {
        return Err(wrong_type("timezone", TaskType::Cron));
    }

    let mut next = spec.clone();
    if let Some(url) = patch.http_endpoint {
        next.http_endpoint = url;
    }
    if let Some(method) = patch.method {
        next.method = method;
    }
    if let Some(headers) = patch.headers {
        next.headers = headers;
    }
    if let Some(body) = patch.body {
        next.body = body;
    }
    if let Some(seconds) = patch.interval_seconds {
        next.interval_seconds = Some(seconds);
    }
    if let Some(expression) = patch.cron_expression {
        next.cron_expression = Some(expression);
    }
    if let Some(zone) = patch.timezone {
        next.timezone = Some(zone);
    }
    if let Some(start) = patch.start_time {
        next.start_time = Some(start);
    }
    if let Some(condition) = patch.stop_condition {
        next.stop_condition = condition;
    }
    if let Some(retry) = patch.retry {
        next.retry = retry;
    }
    if let Some(policy) = patch.misfire_policy {
        next.misfire_policy = policy;
    }
    if let Some(retention) = patch.retention {
        next.retention = retention;
    }
    if let Some(notify) = patch.notify {
        next.notify = notify;
    }

    match kind {
        TaskType::Interval => {
            let seconds = next
                .interval_seconds
                .ok_or_else(|| FieldError::new("interval_seconds", "is required"))?;
            check_interval(seconds)?;
            next.cron_expression = None;
            next.timezone = None;
        }
        TaskType::Cron => {
            let expression = next
                .cron_expression
                .clone()
                .ok_or_else(|| FieldError::new("cron_expression", "is required"))?;
            let zone = next.timezone.clone().unwrap_or_else(|| "UTC".to_owned());
            validate_cron(&expression, &zone)?;
            next.timezone = Some(zone);
            next.interval_seconds = None;
        }
        TaskType::Once => {
            next.interval_seconds = None;
            next.cron_expression = None;
            next.timezone = None;
        }
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn interval_task() -> Value {
        json!({
            "user_id": 1001,
            "type": "interval",
            "http_endpoint": "https://api.example.com/execute",
            "interval_seconds": 20
        })
    }

    fn cron_task() -> Value {
        json!({
            "user_id": 7,
            "type": "cron",
            "http_endpoint": "http://hooks.example.com:8080/run?x=1",
            "cron_expression": "0 30 2 * * ?",
            "timezone": "Europe/Berlin"
        })
    }

    fn with(mut base: Value, key: &str, value: Value) -> Value {
        base[key] = value;
        base
    }

    fn without(mut base: Value, key: &str) -> Value {
        base.as_object_mut().unwrap().remove(key);
        base
    }

    fn field_of(v: Value) -> String {
        parse_create(&v).unwrap_err().field
    }

    #[test]
    fn the_api_documents_create_example_is_accepted_as_is() {
        let body: Value = serde_json::from_str(
            r#"{
              "user_id": 1001,
              "type": "interval",
              "http_endpoint": "https://api.example.com/execute",
              "method": "POST",
              "headers": {"Authorization": "Bearer {service_token}"},
              "body": {"data": "example"},
              "interval_seconds": 20,
              "cron_expression": "0 0 12 * * ?",
              "start_time": "2025-04-22T10:00:00Z",
              "stop_condition": {"max_cnt": 300, "finsh": true}
            }"#,
        )
        .unwrap();
        let spec = parse_create(&body).unwrap();
        assert_eq!(spec.user_id, 1001);
        assert_eq!(spec.task_type, TaskType::Interval);
        assert_eq!(
            spec.http_endpoint.as_str(),
            "https://api.example.com/execute"
        );
        assert_eq!(spec.method, Method::Post);
        assert_eq!(
            spec.headers,
            vec![(
                "Authorization".to_owned(),
                "Bearer {service_token}".to_owned()
            )]
        );
        assert_eq!(spec.body, Some(json!({"data": "example"})));
        assert_eq!(spec.interval_seconds, Some(20));
        assert_eq!(spec.cron_expression, None, "ignored: not an interval field");
        assert_eq!(spec.timezone, None);
        assert_eq!(
            spec.start_time.unwrap().to_rfc3339(),
            "2025-04-22T10:00:00+00:00"
        );
        assert_eq!(spec.stop_condition.max_cnt, Some(300));
        assert_eq!(
            spec.stop_condition.to_json(),
            json!({"max_cnt": 300, "finsh": true})
        );
        assert!(spec.retry.is_empty());
    }

    #[test]
    fn a_minimal_interval_task_gets_the_defaults() {
        let spec = parse_create(&interval_task()).unwrap();
        assert_eq!(spec.method, Method::Post);
        assert!(spec.headers.is_empty());
        assert_eq!(spec.body, None);
        assert_eq!(spec.start_time, None);
        assert!(spec.stop_condition.is_empty());
    }

    #[test]
    fn a_body_that_is_not_an_object_is_rejected() {
        for v in [json!([]), json!("task"), json!(null), json!(1)] {
            assert_eq!(parse_create(&v).unwrap_err().field, "body");
        }
    }

    #[test]
    fn a_missing_user_id_is_rejected() {
        let e = parse_create(&without(interval_task(), "user_id")).unwrap_err();
        assert_eq!(e.to_string(), "user_id: is required");
    }

    #[test]
    fn a_user_id_must_be_a_non_negative_integer() {
        for bad in [
            json!(-1),
            json!(1.5),
            json!("1001"),
            json!(u64::MAX),
            json!(true),
        ] {
            assert_eq!(field_of(with(interval_task(), "user_id", bad)), "user_id");
        }
        let spec = parse_create(&with(interval_task(), "user_id", json!(0))).unwrap();
        assert_eq!(spec.user_id, 0);
    }

    #[test]
    fn an_unknown_type_is_rejected_listing_the_allowed_ones() {
        let e = parse_create(&with(interval_task(), "type", json!("weekly"))).unwrap_err();
        assert_eq!(e.field, "type");
        assert!(e.message.contains("interval, once, cron"), "{e}");
        assert!(e.message.contains("weekly"), "{e}");
        assert_eq!(field_of(without(interval_task(), "type")), "type");
        assert_eq!(field_of(with(interval_task(), "type", json!(1))), "type");
    }

    #[test]
    fn the_endpoint_must_be_an_http_or_https_url_with_a_host() {
        for bad in [
            json!("ftp://example.com/file"),
            json!("file:///etc/passwd"),
            json!("not a url"),
            json!("/relative/path"),
            json!("http://"),
            json!("javascript:alert(1)"),
            json!(42),
            json!(null),
        ] {
            assert_eq!(
                field_of(with(interval_task(), "http_endpoint", bad.clone())),
                "http_endpoint",
                "{bad}"
            );
        }
        let long = format!(
            "https://example.com/{}",
            "a".repeat(InputLimits::DEFAULT.max_url_bytes)
        );
        assert_eq!(
            field_of(with(interval_task(), "http_endpoint", json!(long))),
            "http_endpoint"
        );
        assert_eq!(
            field_of(without(interval_task(), "http_endpoint")),
            "http_endpoint"
        );
        let ok = with(
            interval_task(),
            "http_endpoint",
            json!("http://10.0.0.1:9000/x"),
        );
        assert!(parse_create(&ok).is_ok());
    }

    #[test]
    fn a_method_must_be_one_of_the_five() {
        let spec = parse_create(&with(interval_task(), "method", json!("get"))).unwrap();
        assert_eq!(spec.method, Method::Get);
        let e = parse_create(&with(interval_task(), "method", json!("HEAD"))).unwrap_err();
        assert_eq!(e.field, "method");
        assert!(e.message.contains("GET, POST, PUT, PATCH, DELETE"));
        assert_eq!(
            field_of(with(interval_task(), "method", json!(1))),
            "method"
        );
    }

    #[test]
    fn header_values_must_be_strings_named_by_their_header() {
        let e = parse_create(&with(interval_task(), "headers", json!({"X-Count": 3}))).unwrap_err();
        assert_eq!(e.field, "headers.X-Count");
        assert_eq!(
            field_of(with(interval_task(), "headers", json!(["a"]))),
            "headers"
        );
    }

    #[test]
    fn header_names_must_be_http_tokens() {
        for bad in ["Bad Name", "", "X:Y", "Caf\u{e9}", "X\nY"] {
            let e =
                parse_create(&with(interval_task(), "headers", json!({ bad: "v" }))).unwrap_err();
            assert_eq!(e.field, "headers", "{bad:?}");
        }
    }

    #[test]
    fn header_values_cannot_smuggle_line_breaks() {
        for bad in ["a\r\nX-Evil: 1", "a\nb", "a\rb", "nul\0"] {
            let e =
                parse_create(&with(interval_task(), "headers", json!({ "X-A": bad }))).unwrap_err();
            assert_eq!(e.field, "headers.X-A");
        }
        let tab = with(interval_task(), "headers", json!({"X-A": "a\tb"}));
        assert!(parse_create(&tab).is_ok());
    }

    #[test]
    fn headers_tickwheel_or_the_client_sets_are_refused() {
        for name in [
            "Host",
            "content-length",
            "Transfer-Encoding",
            "webhook-id",
            "User-Agent",
        ] {
            let e =
                parse_create(&with(interval_task(), "headers", json!({ name: "x" }))).unwrap_err();
            assert_eq!(e.field, format!("headers.{name}"));
        }
    }

    #[test]
    fn any_json_is_a_body_and_null_is_none() {
        let spec = parse_create(&with(interval_task(), "body", json!([1, "two"]))).unwrap();
        assert_eq!(spec.body, Some(json!([1, "two"])));
        let spec = parse_create(&with(interval_task(), "body", json!(null))).unwrap();
        assert_eq!(spec.body, None);
    }

    #[test]
    fn a_zero_interval_is_rejected() {
        let e = parse_create(&with(interval_task(), "interval_seconds", json!(0))).unwrap_err();
        assert_eq!(e.to_string(), "interval_seconds: must be at least 1");
    }

    #[test]
    fn an_interval_must_be_a_whole_number_of_seconds_up_to_ten_years() {
        for bad in [
            json!(-5),
            json!(1.5),
            json!(20.0),
            json!("20"),
            json!(MAX_INTERVAL_SECONDS + 1),
        ] {
            assert_eq!(
                field_of(with(interval_task(), "interval_seconds", bad.clone())),
                "interval_seconds",
                "{bad}"
            );
        }
        let e = parse_create(&without(interval_task(), "interval_seconds")).unwrap_err();
        assert_eq!(e.to_string(), "interval_seconds: is required");
        let max = with(
            interval_task(),
            "interval_seconds",
            json!(MAX_INTERVAL_SECONDS),
        );
        assert!(parse_create(&max).is_ok());
    }

    #[test]
    fn a_cron_task_keeps_its_expression_and_zone() {
        let spec = parse_create(&cron_task()).unwrap();
        assert_eq!(spec.cron_expression.as_deref(), Some("0 30 2 * * ?"));
        assert_eq!(spec.timezone.as_deref(), Some("Europe/Berlin"));
        assert_eq!(spec.interval_seconds, None);
    }

    #[test]
    fn a_cron_task_defaults_to_utc() {
        let spec = parse_create(&without(cron_task(), "timezone")).unwrap();
        assert_eq!(spec.timezone.as_deref(), Some("UTC"));
    }

    #[test]
    fn a_cron_task_ignores_an_interval() {
        let spec = parse_create(&with(cron_task(), "interval_seconds", json!(-3))).unwrap();
        assert_eq!(spec.interval_seconds, None);
    }

    #[test]
    fn a_cron_task_needs_a_valid_expression() {
        assert_eq!(
            field_of(without(cron_task(), "cron_expression")),
            "cron_expression"
        );
        for bad in [
            json!("nonsense"),
            json!(""),
            json!(5),
            json!("0 0 12 1 * MON"),
        ] {
            assert_eq!(
                field_of(with(cron_task(), "cron_expression", bad.clone())),
                "cron_expression",
                "{bad}"
            );
        }
        // Quartz refuses `L` in a list; the refusal names it.
        let e = parse_create(&with(
            cron_task(),
            "cron_expression",
            json!("0 0 12 L,15 * ?"),
        ))
        .unwrap_err();
        assert_eq!(e.field, "cron_expression");
        assert!(e.message.contains("'L'"), "{e}");
    }

    #[test]
    fn a_cron_expression_that_never_fires_is_rejected() {
        let e =
            parse_create(&with(cron_task(), "cron_expression", json!("0 0 0 30 2 ?"))).unwrap_err();
        assert_eq!(e.field, "cron_expression");
        assert!(e.message.contains("never fires"));
    }

    #[test]
    fn every_time_zone_name_fits_its_column() {
        let column = crate::domain::limits::TIMEZONE_CHARS as usize;
        for tz in chrono_tz::TZ_VARIANTS {
            assert!(tz.name().len() <= column, "{}", tz.name());
        }
    }

    #[test]
    fn a_stored_field_longer_than_its_limit_is_refused_naming_it() {
        let limits = InputLimits {
            max_stop_condition_bytes: 20,
            max_cron_expression_bytes: 12,
            ..InputLimits::DEFAULT
        };
        let parse = |v: Value| parse_create_within(&v, &limits).unwrap_err().field;
        let condition = json!({"max_cnt": 1, "done": "yes"});
        assert_eq!(condition.to_string().len(), 26);
        assert_eq!(
            parse(with(cron_task(), "stop_condition", condition)),
            "stop_condition"
        );
        assert_eq!(
            parse(with(
                cron_task(),
                "cron_expression",
                json!("0 30 2 * * ? *")
            )),
            "cron_expression"
        );
        // A number is stored as serde_json writes it, which can be longer than it was sent.
        let floats = Value::Array(vec![json!(1e15); 500_000]);
        assert!(floats.to_string().len() > crate::domain::limits::MAX_STORED_BODY_BYTES);
        assert_eq!(
            parse_create(&with(interval_task(), "body", floats))
                .unwrap_err()
                .field,
            "body"
        );
    }

    #[test]
    fn an_unknown_time_zone_is_rejected_naming_timezone() {
        assert_eq!(
            field_of(with(cron_task(), "timezone", json!("Europe/Atlantis"))),
            "timezone"
        );
        assert_eq!(
            field_of(with(cron_task(), "timezone", json!(1))),
            "timezone"
        );
    }

    #[test]
    fn a_timezone_on_a_non_cron_task_is_ignored() {
        let spec = parse_create(&with(interval_task(), "timezone", json!("Nowhere/Else"))).unwrap();
        assert_eq!(spec.timezone, None);
    }

    #[test]
    fn a_once_task_needs_no_schedule_fields() {
        let once = json!({
            "user_id": 1, "type": "once", "http_endpoint": "https://example.com/",
            "start_time": "2025-04-22T12:00:00.250+02:00", "interval_seconds": 0
        });
        let spec = parse_create(&once).unwrap();
        assert_eq!(spec.interval_seconds, None);
        assert_eq!(spec.start_time.unwrap().timestamp_millis() % 1000, 250);
        assert_eq!(
            spec.start_time.unwrap().to_rfc3339(),
            "2025-04-22T10:00:00.250+00:00"
        );
    }

    #[test]
    fn an_invalid_start_time_is_rejected() {
        for bad in [
            json!("yesterday"),
            json!("2025-04-22 10:00"),
            json!(1745316000),
        ] {
            assert_eq!(
                field_of(with(interval_task(), "start_time", bad)),
                "start_time"
            );
        }
    }

    #[test]
    fn a_bad_stop_condition_is_named_by_its_key() {
        let e = parse_create(&with(
            interval_task(),
            "stop_condition",
            json!({"max_cnt": 0}),
        ))
        .unwrap_err();
        assert_eq!(e.field, "stop_condition.max_cnt");
    }

    #[test]
    fn a_misfire_policy_is_fire_once_or_skip_and_can_be_patched() {
        assert_eq!(
            parse_create(&interval_task()).unwrap().misfire_policy,
            MisfirePolicy::FireOnce
        );
        let skip = parse_create(&with(interval_task(), "misfire_policy", json!("skip"))).unwrap();
        assert_eq!(skip.misfire_policy, MisfirePolicy::Skip);
        for bad in [json!("fire_all"), json!(1), json!("SKIP"), json!({})] {
            assert_eq!(
                field_of(with(interval_task(), "misfire_policy", bad)),
                "misfire_policy"
            );
        }
        let patch = parse_patch(&json!({"misfire_policy": "skip"})).unwrap();
        let spec = parse_create(&interval_task()).unwrap();
        assert_eq!(
            apply_patch(&spec, patch).unwrap().misfire_policy,
            MisfirePolicy::Skip
        );
        let reset = parse_patch(&json!({"misfire_policy": null})).unwrap();
        assert_eq!(
            apply_patch(&skip, reset).unwrap().misfire_policy,
            MisfirePolicy::FireOnce
        );
        assert!(parse_patch(&json!({"missed_slots": 0})).is_err());
    }

    #[test]
    fn a_retry_override_is_bounded() {
        let spec = parse_create(&with(
            interval_task(),
            "retry",
            json!({"max_retries": 0, "backoff_ms": 250}),
        ))
        .unwrap();
        assert_eq!(
            spec.retry,
            RetryOverride {
                max_retries: Some(0),
                backoff_ms: Some(250)
            }
        );
        for (bad, field) in [
            (json!({"max_retries": 21}), "retry.max_retries"),
            (json!({"max_retries": -1}), "retry.max_retries"),
            (json!({"backoff_ms": 0}), "retry.backoff_ms"),
            (json!({"backoff_ms": 3_600_001}), "retry.backoff_ms"),
            (json!({"backoff_ms": 1.5}), "retry.backoff_ms"),
            (json!({"retries": 3}), "retry.retries"),
            (json!(3), "retry"),
        ] {
            assert_eq!(
                field_of(with(interval_task(), "retry", bad.clone())),
                field,
                "{bad}"
            );
        }
    }

    #[test]
    fn unknown_top_level_keys_are_ignored() {
        assert!(parse_create(&with(interval_task(), "colour", json!("blue"))).is_ok());
    }

    // --- patch --------------------------------------------------------------------------------

    #[test]
    fn an_empty_patch_is_rejected() {
        let e = parse_patch(&json!({})).unwrap_err();
        assert_eq!(e.to_string(), "body: nothing to change");
        assert_eq!(parse_patch(&json!([])).unwrap_err().field, "body");
    }

    #[test]
    fn a_patch_cannot_change_owner_type_or_status() {
        for key in ["user_id", "type", "status", "task_id", "version"] {
            let e = parse_patch(&json!({ key: 1 })).unwrap_err();
            assert_eq!(e.field, key);
            assert_eq!(e.message, "cannot be changed");
        }
        let e = parse_patch(&json!({"colour": "blue"})).unwrap_err();
        assert_eq!(e.field, "colour");
    }

    #[test]
    fn a_patch_validates_each_field_as_create_does() {
        assert_eq!(
            parse_patch(&json!({"interval_seconds": 0}))
                .unwrap_err()
                .field,
            "interval_seconds"
        );
        assert_eq!(
            parse_patch(&json!({"http_endpoint": "ftp://x"}))
                .unwrap_err()
                .field,
            "http_endpoint"
        );
        assert_eq!(
            parse_patch(&json!({"http_endpoint": null}))
                .unwrap_err()
                .field,
            "http_endpoint"
        );
        assert_eq!(
            parse_patch(&json!({"cron_expression": "0 0 12 ? * 2#6"}))
                .unwrap_err()
                .field,
            "cron_expression"
        );
        assert_eq!(
            parse_patch(&json!({"timezone": "Nowhere"}))
                .unwrap_err()
                .field,
            "timezone"
        );
        assert_eq!(
            parse_patch(&json!({"start_time": null})).unwrap_err().field,
            "start_time"
        );
        assert_eq!(
            parse_patch(&json!({"headers": {"X": 1}}))
                .unwrap_err()
                .field,
            "headers.X"
        );
    }

    #[test]
    fn a_patch_with_null_resets_optional_fields() {
        let p = parse_patch(
            &json!({"body": null, "headers": null, "stop_condition": null, "method": null}),
        )
        .unwrap();
        assert_eq!(p.body, Some(None));
        assert_eq!(p.headers, Some(vec![]));
        assert_eq!(p.stop_condition, Some(StopCondition::default()));
        assert_eq!(p.method, Some(Method::Post));
        assert!(!p.changes_schedule());
    }

    #[test]
    fn applying_a_patch_changes_only_what_it_names() {
        let spec = parse_create(&with(interval_task(), "headers", json!({"X-A": "1"}))).unwrap();
        let patch = parse_patch(&json!({"interval_seconds": 60, "method": "PUT"})).unwrap();
        assert!(patch.changes_schedule());
        let next = apply_patch(&spec, patch).unwrap();
        assert_eq!(next.interval_seconds, Some(60));
        assert_eq!(next.method, Method::Put);
        assert_eq!(next.headers, spec.headers);
        assert_eq!(next.http_endpoint, spec.http_endpoint);
        assert_eq!(next.user_id, spec.user_id);
    }

    #[test]
    fn a_patched_time_zone_is_validated_with_the_tasks_expression() {
        let spec = parse_create(&cron_task()).unwrap();
        let next = apply_patch(
            &spec,
            parse_patch(&json!({"timezone": "America/New_York"})).unwrap(),
        )
        .unwrap();
        assert_eq!(next.timezone.as_deref(), Some("America/New_York"));
        assert_eq!(next.cron_expression, spec.cron_expression);
        let next = apply_patch(
            &spec,
            parse_patch(&json!({"cron_expression": "30 9 * * 1-5"})).unwrap(),
        )
        .unwrap();
        assert_eq!(next.cron_expression.as_deref(), Some("30 9 * * 1-5"));
        assert_eq!(next.timezone.as_deref(), Some("Europe/Berlin"));
    }

    #[test]
    fn patching_a_schedule_field_of_another_task_type_is_rejected() {
        let interval = parse_create(&interval_task()).unwrap();
        let e = apply_patch(
            &interval,
            parse_patch(&json!({"cron_expression": "@daily"})).unwrap(),
        )
        .unwrap_err();
        assert_eq!(e.field, "cron_expression");
        assert!(e.message.contains("interval task"), "{e}");
        let e =
            apply_patch(&interval, parse_patch(&json!({"timezone": "UTC"})).unwrap()).unwrap_err();
        assert_eq!(e.field, "timezone");
        let cron = parse_create(&cron_task()).unwrap();
        let e =
            apply_patch(&cron, parse_patch(&json!({"interval_seconds": 5})).unwrap()).unwrap_err();
        assert_eq!(e.field, "interval_seconds");
    }

    #[test]
    fn a_patch_can_clear_the_body_and_stop_condition() {
        let spec = parse_create(&with(
            with(interval_task(), "body", json!({"a": 1})),
            "stop_condition",
            json!({"max_cnt": 2}),
        ))
        .unwrap();
        let next = apply_patch(
            &spec,
            parse_patch(&json!({"body": null, "stop_condition": {}})).unwrap(),
        )
        .unwrap();
        assert_eq!(next.body, None);
        assert!(next.stop_condition.is_empty());
    }
}
