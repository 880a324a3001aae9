//! The field parsers shared by create and patch: one function per field of a task, each
//! refusing what it cannot store or send with a [`FieldError`] that names the field.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::domain::bounds::check_time_range;
use crate::domain::cron::CronSchedule;
use crate::domain::error::{shorten, FieldError, ScheduleError};
use crate::domain::limits::{
    InputLimits, MAX_SEALED_HEADERS_BYTES, MAX_STORED_BODY_BYTES, SEAL_OVERHEAD_BYTES,
};
use crate::domain::stop::StopCondition;
use crate::domain::task::{Method, MisfirePolicy, RetryOverride, TaskType};

/// The longest interval: ten years of 365 days.
pub const MAX_INTERVAL_SECONDS: u64 = 10 * 365 * 24 * 60 * 60;
pub const MAX_RETRIES: u64 = 20;
pub const MAX_BACKOFF_MS: u64 = 3_600_000;
// The bounds on lengths (URL, headers, cron expression, stop condition, body) are
// `InputLimits` ([`crate::domain::limits`]), set where the column sizes that hold them are.

/// Headers a task may not set: framing and hop-by-hop headers the HTTP client owns, and the
/// ones tickwheel adds to every request (README, "The API", Execution).
const RESERVED_HEADERS: [&str; 14] = [
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
    "webhook-signature",
];

pub(super) fn body_object(v: &Value) -> Result<&Map<String, Value>, FieldError> {
    v.as_object()
        .ok_or_else(|| FieldError::new("body", "must be a JSON object"))
}

pub(super) fn required<'a>(
    object: &'a Map<String, Value>,
    name: &str,
) -> Result<&'a Value, FieldError> {
    match object.get(name) {
        None | Some(Value::Null) => Err(FieldError::new(name, "is required")),
        Some(v) => Ok(v),
    }
}

/// A JSON integer in `min..=max`; floats and numeric strings are refused.
pub(super) fn whole_number(field: &str, v: &Value, min: u64, max: u64) -> Result<u64, FieldError> {
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

pub(super) fn parse_user_id(v: &Value) -> Result<i64, FieldError> {
    if v.is_null() {
        return Err(FieldError::new("user_id", "is required"));
    }
    let id = whole_number("user_id", v, 0, i64::MAX as u64)?;
    i64::try_from(id).map_err(|_| FieldError::new("user_id", "is too large"))
}

pub(super) fn parse_type(v: &Value) -> Result<TaskType, FieldError> {
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

pub(super) fn parse_endpoint(v: &Value, limits: &InputLimits) -> Result<url::Url, FieldError> {
    parse_url("http_endpoint", v, limits)
}

/// An outbound URL (`http_endpoint`, `notify.url`): http or https, a host, no credentials, at
/// most `limits.max_url_bytes` once normalised. Errors name `field`.
pub(super) fn parse_url(
    field: &str,
    v: &Value,
    limits: &InputLimits,
) -> Result<url::Url, FieldError> {
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

pub(super) fn parse_method(v: &Value) -> Result<Method, FieldError> {
    let allowed = "must be one of GET, POST, PUT, PATCH, DELETE";
    match v {
        Value::Null => Ok(Method::Post),
        Value::String(s) => Method::parse(s)
            .ok_or_else(|| FieldError::new("method", format!("{allowed} (got '{}')", shorten(s)))),
        _ => Err(FieldError::new("method", allowed)),
    }
}

/// `misfire_policy`: `fire_once` (also for `null`) or `skip`.
pub(super) fn parse_misfire_policy(v: &Value) -> Result<MisfirePolicy, FieldError> {
    let allowed = "must be fire_once or skip";
    match v {
        Value::Null => Ok(MisfirePolicy::default()),
        Value::String(s) => MisfirePolicy::parse(s).ok_or_else(|| {
            FieldError::new(
                "misfire_policy",
                format!("{allowed} (got '{}')", shorten(s)),
            )
        }),
        _ => Err(FieldError::new("misfire_policy", allowed)),
    }
}

/// RFC 9110 `tchar`: the characters a header name may contain.
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

pub(super) fn parse_headers(
    v: &Value,
    limits: &InputLimits,
) -> Result<Vec<(String, String)>, FieldError> {
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
pub(super) fn parse_body(v: &Value) -> Result<Option<Value>, FieldError> {
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
pub(super) fn parse_stop_condition(
    v: &Value,
    limits: &InputLimits,
) -> Result<StopCondition, FieldError> {
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

pub(super) fn parse_interval(v: &Value) -> Result<u64, FieldError> {
    let seconds = whole_number("interval_seconds", v, 1, MAX_INTERVAL_SECONDS)?;
    check_interval(seconds)?;
    Ok(seconds)
}

pub(super) fn check_interval(seconds: u64) -> Result<(), FieldError> {
    if (1..=MAX_INTERVAL_SECONDS).contains(&seconds) {
        Ok(())
    } else {
        Err(FieldError::new(
            "interval_seconds",
            format!("must be between 1 and {MAX_INTERVAL_SECONDS} (10 years)"),
        ))
    }
}

pub(super) fn parse_cron_text(v: &Value, limits: &InputLimits) -> Result<String, FieldError> {
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
pub(super) fn parse_timezone(v: &Value) -> Result<String, FieldError> {
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
pub(super) fn validate_cron(expression: &str, zone: &str) -> Result<(), FieldError> {
    let cron = CronSchedule::parse(expression, zone)?;
    if cron.next_after(i64::MIN).is_none() {
        return Err(FieldError::new(
            "cron_expression",
            format!("'{expression}' never fires"),
        ));
    }
    Ok(())
}

pub(super) fn parse_start_time(v: &Value) -> Result<DateTime<Utc>, FieldError> {
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

pub(super) fn parse_retry(v: &Value) -> Result<RetryOverride, FieldError> {
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
