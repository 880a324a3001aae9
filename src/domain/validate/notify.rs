//! `notify`: `{"url": "https://…", "events": ["failing", …], "late_ms": 1000}` or `null` for
//! none. The URL is checked as `http_endpoint` is (form and length here; the outbound address
//! check is the caller's, at create and patch and again when connecting).

use serde_json::Value;

use super::fields::{parse_url, whole_number};
use crate::domain::error::{shorten, FieldError};
use crate::domain::limits::InputLimits;
use crate::domain::notify::{Notify, NotifyEvent, DEFAULT_LATE_MS, MAX_LATE_MS};

const KEYS: [&str; 3] = ["url", "events", "late_ms"];

/// Parses a task's `notify`; `null` is none. Errors name `notify`, `notify.url`,
/// `notify.events` or `notify.late_ms`.
pub(super) fn parse_notify(v: &Value, limits: &InputLimits) -> Result<Option<Notify>, FieldError> {
    let object = match v {
        Value::Null => return Ok(None),
        Value::Object(object) => object,
        _ => {
            return Err(FieldError::new(
                "notify",
                "must be an object such as {\"url\": \"https://…\", \"events\": [\"failing\", \"recovered\"]}",
            ))
        }
    };
    if let Some(key) = object.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(FieldError::new(
            format!("notify.{}", shorten(key)),
            "is not a notify setting (use url, events and late_ms)",
        ));
    }
    let url = match object.get("url") {
        None | Some(Value::Null) => return Err(FieldError::new("notify.url", "is required")),
        Some(v) => parse_url("notify.url", v, limits)?,
    };
    let allowed = || {
        NotifyEvent::ALL
            .iter()
            .map(|e| e.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let events = match object.get("events") {
        None | Some(Value::Null) => {
            return Err(FieldError::new(
                "notify.events",
                format!("is required (some of {})", allowed()),
            ))
        }
        Some(Value::Array(items)) => {
            if items.is_empty() {
                return Err(FieldError::new(
                    "notify.events",
                    format!("must name at least one of {}", allowed()),
                ));
            }
            let mut events = Vec::with_capacity(items.len());
            for item in items {
                let event = item.as_str().and_then(NotifyEvent::parse).ok_or_else(|| {
                    FieldError::new(
                        "notify.events",
                        format!(
                            "must be some of {} (got {})",
                            allowed(),
                            shorten(&item.to_string())
                        ),
                    )
                })?;
                if events.contains(&event) {
                    return Err(FieldError::new(
                        "notify.events",
                        format!("names {} twice", event.as_str()),
                    ));
                }
                events.push(event);
            }
            events
        }
        Some(_) => {
            return Err(FieldError::new(
                "notify.events",
                format!("must be an array of event names ({})", allowed()),
            ))
        }
    };
    let late_ms = match object.get("late_ms") {
        None | Some(Value::Null) => DEFAULT_LATE_MS,
        Some(v) => whole_number("notify.late_ms", v, 0, MAX_LATE_MS)?,
    };
    Ok(Some(Notify {
        url,
        events,
        late_ms,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Option<Notify>, FieldError> {
        parse_notify(&v, &InputLimits::DEFAULT)
    }

    fn field_of(v: Value) -> String {
        parse(v).unwrap_err().field
    }

    #[test]
    fn a_full_notify_is_kept_as_given_and_null_is_none() {
        let n = parse(json!({"url": "https://hooks.example.com/n", "events": ["late", "failing"], "late_ms": 250}))
            .unwrap()
            .unwrap();
        assert_eq!(n.url.as_str(), "https://hooks.example.com/n");
        assert_eq!(n.events, vec![NotifyEvent::Late, NotifyEvent::Failing]);
        assert_eq!(n.late_ms, 250);
        assert_eq!(parse(n.to_json()).unwrap(), Some(n));
        assert_eq!(parse(Value::Null).unwrap(), None);
    }

    #[test]
    fn late_ms_defaults_to_a_second() {
        let n = parse(json!({"url": "http://h.example/", "events": ["late"]}))
            .unwrap()
            .unwrap();
        assert_eq!(n.late_ms, DEFAULT_LATE_MS);
    }

    #[test]
    fn each_bad_part_is_named() {
        let url = "https://h.example/";
        for (bad, field) in [
            (json!(3), "notify"),
            (json!({"events": ["failing"]}), "notify.url"),
            (
                json!({"url": "ftp://h.example/", "events": ["failing"]}),
                "notify.url",
            ),
            (
                json!({"url": "https://u:p@h.example/", "events": ["failing"]}),
                "notify.url",
            ),
            (json!({"url": url}), "notify.events"),
            (json!({"url": url, "events": []}), "notify.events"),
            (
                json!({"url": url, "events": ["sometimes"]}),
                "notify.events",
            ),
            (
                json!({"url": url, "events": ["failing", "failing"]}),
                "notify.events",
            ),
            (json!({"url": url, "events": "failing"}), "notify.events"),
            (json!({"url": url, "events": [1]}), "notify.events"),
            (
                json!({"url": url, "events": ["late"], "late_ms": -1}),
                "notify.late_ms",
            ),
            (
                json!({"url": url, "events": ["late"], "late_ms": MAX_LATE_MS + 1}),
                "notify.late_ms",
            ),
            (
                json!({"url": url, "events": ["late"], "late_ms": 1.5}),
                "notify.late_ms",
            ),
            (
                json!({"url": url, "events": ["late"], "colour": 1}),
                "notify.colour",
            ),
        ] {
            assert_eq!(field_of(bad.clone()), field, "{bad}");
        }
        let long = format!(
            "https://h.example/{}",
            "a".repeat(InputLimits::DEFAULT.max_url_bytes)
        );
        assert_eq!(
            field_of(json!({"url": long, "events": ["late"]})),
            "notify.url"
        );
    }
}
