//! Request bodies to validated task definitions.
//!
//! `parse_create` turns a create body into a [`TaskSpec`]; `parse_patch` and `apply_patch` turn a
//! patch body into a [`TaskPatch`] and merge it into an existing definition, validated as create
//! does. Every failure is a [`FieldError`] naming the field and saying what was wrong in words a
//! user can act on.
//!
//! Outbound address checks (private or loopback destinations) need DNS and configuration and
//! are done by the caller; this module only checks the URL's form.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

pub use entities::limits::InputLimits;
use entities::limits::{MAX_SEALED_HEADERS_BYTES, MAX_STORED_BODY_BYTES, SEAL_OVERHEAD_BYTES};

use super::schedule::{shorten, CronSchedule, ScheduleError};
use super::stop::StopCondition;
use super::task::{Method, RetryOverride, TaskSpec, TaskType};

/// An invalid field in a request body. `Display` is `"<field>: <message>"`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<ScheduleError> for FieldError {
    fn from(e: ScheduleError) -> Self {
        FieldError::new(e.field(), e.message())
    }
}

/// The longest interval: ten years of 365 days.
pub const MAX_INTERVAL_SECONDS: u64 = 10 * 365 * 24 * 60 * 60;
pub const MAX_RETRIES: u64 = 20;
pub const MAX_BACKOFF_MS: u64 = 3_600_000;
// The bounds on lengths (URL, headers, cron expression, stop condition, body) are
// `InputLimits` (`entities::limits`), where the column sizes that hold them are set too.

/// Headers a task may not set: framing and hop-by-hop headers the HTTP client owns, and the
/// ones tickwheel adds to every request (API.md, "Outbound safety").
const RESERVED_HEADERS: [&str; 13] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
    "user-agent",
    "x-tickwheel-task-id",
    "webhook-id",
    "webhook-timestamp",
];

/// The fields PATCH may change.
const PATCHABLE: [&str; 10] = [
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
];

/// Task fields that exist but PATCH may not change.
const NOT_PATCHABLE: [&str; 13] = [
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
    let stop_condition = parse_stop_condition(field("stop_condition"), limits)?;
    let retry = parse_retry(field("retry"))?;

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
    })
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
/// empty); the others cannot be `null`. Within the default [`InputLimits`].
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

// ---------------------------------------------------------------------------------------------
// Field parsers, shared by create and patch
// ---------------------------------------------------------------------------------------------

fn body_object(v: &Value) -> Result<&Map<String, Value>, FieldError> {
    v.as_object()
        .ok_or_else(|| FieldError::new("body", "must be a JSON object"))
}

fn required<'a>(object: &'a Map<String, Value>, name: &str) -> Result<&'a Value, FieldError> {
    match object.get(name) {
        None | Some(Value::Null) => Err(FieldError::new(name, "is required")),
        Some(v) => Ok(v),
    }
}

/// A JSON integer in `min..=max`; floats and numeric strings are refused.
fn whole_number(field: &str, v: &Value, min: u64, max: u64) -> Result<u64, FieldError> {
    let n = match v {
        Value::Number(n) => n,
        Value::String(_) => {
            return Err(FieldError::new(
                field,
                "must be a whole number, not a string",
            ))
        }
        _ => return Err(FieldError::new(field, "must be a whole number")),
    };
    match n.as_u64() {
        Some(n) if n < min => Err(FieldError::new(field, format!("must be at least {min}"))),
        Some(n) if n > max => Err(FieldError::new(field, format!("must be at most {max}"))),
        Some(n) => Ok(n),
        None if n.as_i64().is_some() => {
            Err(FieldError::new(field, format!("must be at least {min}")))
        }
        None => Err(FieldError::new(field, "must be a whole number")),
    }
}

fn parse_user_id(v: &Value) -> Result<i64, FieldError> {
    if v.is_null() {
        return Err(FieldError::new("user_id", "is required"));
    }
    let id = whole_number("user_id", v, 0, i64::MAX as u64)?;
    i64::try_from(id).map_err(|_| FieldError::new("user_id", "is too large"))
}

fn parse_type(v: &Value) -> Result<TaskType, FieldError> {
    let allowed = "must be one of interval, once, cron";
    match v {
        Value::Null => Err(FieldError::new(
            "type",
            "is required (one of interval, once, cron)",
        )),
        Value::String(s) => TaskType::parse(s)
            .ok_or_else(|| FieldError::new("type", format!("{allowed} (got '{}')", shorten(s)))),
        _ => Err(FieldError::new("type", allowed)),
    }
}

fn parse_endpoint(v: &Value, limits: &InputLimits) -> Result<url::Url, FieldError> {
    let field = "http_endpoint";
    let Value::String(s) = v else {
        return Err(FieldError::new(field, "must be a URL string"));
    };
    let max = limits.max_url_bytes;
    let too_long = || FieldError::new(field, format!("must be at most {max} bytes long"));
    if s.len() > max {
        return Err(too_long());
    }
    let url = url::Url::parse(s)
        .map_err(|e| FieldError::new(field, format!("is not a valid URL ({e})")))?;
    // What is stored and sent is the normalised URL, which percent-encoding can lengthen.
    if url.as_str().len() > max {
        return Err(too_long());
    }
    let authority = written_authority(s).ok_or_else(|| {
        FieldError::new(
            field,
            "must name its host after the scheme, as in https://host/path",
        )
    })?;
    // Credentials in a URL would be stored and shown in clear text; headers are encrypted.
    if authority.contains('@') || !url.username().is_empty() || url.password().is_some() {
        return Err(FieldError::new(
            field,
            "must not carry credentials (user:password@); send them in headers, which are stored encrypted",
        ));
    }
    if !matches!(url.scheme(), "http" | "https") {
        return Err(FieldError::new(
            field,
            format!("must use http or https, not '{}'", url.scheme()),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(FieldError::new(field, "must name a host"));
    }
    Ok(url)
}

/// The authority exactly as written between `scheme://` and the path, query or fragment;
/// `None` when the URL does not spell `//` followed by a non-empty authority. The URL parser
/// is forgiving here (`http:///path` reads `path` as the host, `http:host` and `http:\\host`
/// are taken as `http://host`), so what the user wrote is checked as written.
fn written_authority(s: &str) -> Option<&str> {
    let s = s.trim_matches(|c: char| c <= ' ');
    let (_, rest) = s.split_once(':')?;
    let rest = rest.strip_prefix("//")?;
    let end = rest.find(['/', '?', '#', '\\']).unwrap_or(rest.len());
    let authority = &rest[..end];
    (!authority.is_empty()).then_some(authority)
}

fn parse_method(v: &Value) -> Result<Method, FieldError> {
    let allowed = "must be one of GET, POST, PUT, PATCH, DELETE";
    match v {
        Value::Null => Ok(Method::Post),
        Value::String(s) => Method::parse(s)
            .ok_or_else(|| FieldError::new("method", format!("{allowed} (got '{}')", shorten(s)))),
        _ => Err(FieldError::new("method", allowed)),
    }
}

/// RFC 9110 `tchar`: the characters a header name may contain.
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

fn parse_headers(v: &Value, limits: &InputLimits) -> Result<Vec<(String, String)>, FieldError> {
    let object = match v {
        Value::Null => return Ok(Vec::new()),
        Value::Object(object) => object,
        _ => {
            return Err(FieldError::new(
                "headers",
                "must be a JSON object of header names to string values",
            ))
        }
    };
    if object.len() > limits.max_headers {
        return Err(FieldError::new(
            "headers",
            format!("at most {} headers are allowed", limits.max_headers),
        ));
    }
    let mut headers = Vec::with_capacity(object.len());
    for (name, value) in object {
        if name.len() > limits.max_header_name_bytes {
            return Err(FieldError::new(
                "headers",
                format!(
                    "'{}' is longer than {} bytes, the most a header name may be",
                    shorten(name),
                    limits.max_header_name_bytes
                ),
            ));
        }
        if name.is_empty() || !name.chars().all(is_token_char) {
            return Err(FieldError::new(
                "headers",
                format!("'{}' is not a valid header name", shorten(name)),
            ));
        }
        let field = || format!("headers.{name}");
        if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(FieldError::new(
                field(),
                "is set by tickwheel or the HTTP client and cannot be given",
            ));
        }
        let Value::String(value) = value else {
            return Err(FieldError::new(field(), "must be a string"));
        };
        if value.len() > limits.max_header_value_bytes {
            return Err(FieldError::new(
                field(),
                format!("must be at most {} bytes", limits.max_header_value_bytes),
            ));
        }
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(FieldError::new(
                field(),
                "must not contain line breaks or other control characters",
            ));
        }
        headers.push((name.clone(), value.clone()));
    }
    // Stored encrypted as the JSON of this list; the bounds above keep it within the column
    // whenever the configuration passed its start-up check, and this holds it to it anyway.
    let sealed = SEAL_OVERHEAD_BYTES + json_len(&headers);
    if sealed > MAX_SEALED_HEADERS_BYTES {
        return Err(FieldError::new(
            "headers",
            format!("take {sealed} bytes once stored; at most {MAX_SEALED_HEADERS_BYTES} fit"),
        ));
    }
    Ok(headers)
}

/// The body as stored (compact JSON), which number formatting can make longer than it was
/// sent (`1e15` is stored as `1000000000000000.0`).
fn parse_body(v: &Value) -> Result<Option<Value>, FieldError> {
    if v.is_null() {
        return Ok(None);
    }
    let stored = json_len(v);
    if stored > MAX_STORED_BODY_BYTES {
        return Err(FieldError::new(
            "body",
            format!("takes {stored} bytes as stored JSON; at most {MAX_STORED_BODY_BYTES} fit"),
        ));
    }
    Ok(Some(v.clone()))
}

/// A stop condition, bounded by its stored form (the compact JSON of its normalised object).
fn parse_stop_condition(v: &Value, limits: &InputLimits) -> Result<StopCondition, FieldError> {
    let condition = StopCondition::parse(v)?;
    let stored = json_len(&condition.to_json());
    if stored > limits.max_stop_condition_bytes {
        return Err(FieldError::new(
            "stop_condition",
            format!(
                "takes {stored} bytes as JSON; at most {} are allowed",
                limits.max_stop_condition_bytes
            ),
        ));
    }
    Ok(condition)
}

/// The length of `v` as compact JSON, without building the string.
fn json_len(v: &impl serde::Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Serialising a `Value` or a list of string pairs cannot fail; were it to, the length
    // counted so far is no larger than what is stored.
    let _ = serde_json::to_writer(&mut count, v);
    count.0
}

fn parse_interval(v: &Value) -> Result<u64, FieldError> {
    let seconds = whole_number("interval_seconds", v, 1, MAX_INTERVAL_SECONDS)?;
    check_interval(seconds)?;
    Ok(seconds)
}

fn check_interval(seconds: u64) -> Result<(), FieldError> {
    if (1..=MAX_INTERVAL_SECONDS).contains(&seconds) {
        Ok(())
    } else {
        Err(FieldError::new(
            "interval_seconds",
            format!("must be between 1 and {MAX_INTERVAL_SECONDS} (10 years)"),
        ))
    }
}

fn parse_cron_text(v: &Value, limits: &InputLimits) -> Result<String, FieldError> {
    match v {
        Value::String(s) if s.trim().len() > limits.max_cron_expression_bytes => {
            Err(FieldError::new(
                "cron_expression",
                format!(
                    "must be at most {} bytes long",
                    limits.max_cron_expression_bytes
                ),
            ))
        }
        Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        Value::String(_) => Err(FieldError::new("cron_expression", "must not be empty")),
        _ => Err(FieldError::new(
            "cron_expression",
            "must be a string such as \"0 0 12 * * ?\"",
        )),
    }
}

/// An IANA zone name, returned in its canonical spelling; `null` is UTC.
fn parse_timezone(v: &Value) -> Result<String, FieldError> {
    match v {
        Value::Null => Ok("UTC".to_owned()),
        Value::String(s) => s
            .trim()
            .parse::<chrono_tz::Tz>()
            .map(|tz| tz.name().to_owned())
            .map_err(|_| ScheduleError::UnknownTimezone(shorten(s)).into()),
        _ => Err(FieldError::new(
            "timezone",
            "must be an IANA time zone name such as \"Europe/Berlin\"",
        )),
    }
}

/// Parses the expression in its zone and makes sure it fires at all (`0 0 0 30 2 ?` never does).
fn validate_cron(expression: &str, zone: &str) -> Result<(), FieldError> {
    let cron = CronSchedule::parse(expression, zone)?;
    if cron.next_after(i64::MIN).is_none() {
        return Err(FieldError::new(
            "cron_expression",
            format!("'{expression}' never fires"),
        ));
    }
    Ok(())
}

fn parse_start_time(v: &Value) -> Result<DateTime<Utc>, FieldError> {
    let invalid = || {
        FieldError::new(
            "start_time",
            "must be an RFC 3339 time such as \"2025-04-22T10:00:00Z\"",
        )
    };
    let Value::String(s) = v else {
        return Err(invalid());
    };
    let t = DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| invalid())?;
    check_time_range("start_time", t)
}

/// The earliest time a task may name: the Unix epoch.
pub const MIN_TIME_MS: i64 = 0;
/// The latest time a task may name: the end of 2199, the last year a cron expression can
/// fire in (Quartz's year field stops there); interval and once tasks keep the same bound.
pub const MAX_TIME_MS: i64 = 7_258_118_399_999;

/// Refuses a time outside what schedules support, naming the field.
pub fn check_time_range(field: &str, t: DateTime<Utc>) -> Result<DateTime<Utc>, FieldError> {
    if (MIN_TIME_MS..=MAX_TIME_MS).contains(&t.timestamp_millis()) {
        Ok(t)
    } else {
        Err(FieldError::new(
            field,
            "must be between 1970-01-01T00:00:00Z and 2199-12-31T23:59:59.999Z",
        ))
    }
}

fn parse_retry(v: &Value) -> Result<RetryOverride, FieldError> {
    let object = match v {
        Value::Null => return Ok(RetryOverride::default()),
        Value::Object(object) => object,
        _ => {
            return Err(FieldError::new(
                "retry",
                "must be an object such as {\"max_retries\": 3, \"backoff_ms\": 1000}",
            ))
        }
    };
    if let Some(key) = object
        .keys()
        .find(|k| !matches!(k.as_str(), "max_retries" | "backoff_ms"))
    {
        return Err(FieldError::new(
            format!("retry.{}", shorten(key)),
            "is not a retry setting (use max_retries and backoff_ms)",
        ));
    }
    let mut retry = RetryOverride::default();
    if let Some(v) = object.get("max_retries").filter(|v| !v.is_null()) {
        let n = whole_number("retry.max_retries", v, 0, MAX_RETRIES)?;
        retry.max_retries = u32::try_from(n).ok();
    }
    if let Some(v) = object.get("backoff_ms").filter(|v| !v.is_null()) {
        retry.backoff_ms = Some(whole_number("retry.backoff_ms", v, 1, MAX_BACKOFF_MS)?);
    }
    Ok(retry)
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
        let column = entities::limits::TIMEZONE_CHARS as usize;
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
        assert!(floats.to_string().len() > entities::limits::MAX_STORED_BODY_BYTES);
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
