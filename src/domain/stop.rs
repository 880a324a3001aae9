//! Stop conditions: when a task completes or fails on its own.
//!
//! `stop_condition` is a JSON object with three reserved keys (`max_cnt`, `end_time`,
//! `max_failures`); every other key is a response match, checked against the JSON body of each
//! successful execution.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

use super::validate::FieldError;

pub const MAX_CNT: &str = "max_cnt";
pub const END_TIME: &str = "end_time";
pub const MAX_FAILURES: &str = "max_failures";

/// A parsed `stop_condition` object. The default (empty) condition never stops a task.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StopCondition {
    /// Complete the task after this many executions.
    pub max_cnt: Option<u64>,
    /// Complete the task when the next run would fall after this time.
    pub end_time: Option<DateTime<Utc>>,
    /// Fail a recurring task after this many consecutive failed executions.
    pub max_failures: Option<u32>,
    /// Response matches, in the order the JSON object yielded them.
    pub matches: Vec<(String, Value)>,
}

impl StopCondition {
    /// Parses a `stop_condition` value: `null` is the empty condition, anything else must be an
    /// object. A reserved key set to `null` counts as absent.
    pub fn parse(v: &Value) -> Result<Self, FieldError> {
        let object = match v {
            Value::Null => return Ok(Self::default()),
            Value::Object(object) => object,
            _ => {
                return Err(FieldError::new(
                    "stop_condition",
                    "must be a JSON object such as {\"max_cnt\": 10}",
                ))
            }
        };
        let mut condition = Self::default();
        for (key, value) in object {
            match key.as_str() {
                // Execution counts are stored as signed 64-bit integers.
                MAX_CNT => condition.max_cnt = positive_integer(key, value, i64::MAX as u64)?,
                MAX_FAILURES => {
                    condition.max_failures = positive_integer(key, value, u64::from(u32::MAX))?
                        .and_then(|n| u32::try_from(n).ok());
                }
                END_TIME => condition.end_time = time(key, value)?,
                _ => condition.matches.push((key.clone(), value.clone())),
            }
        }
        Ok(condition)
    }

    /// The condition as a JSON object, as the user gave it (with `end_time` normalised to UTC
    /// milliseconds); `{}` when empty.
    pub fn to_json(&self) -> Value {
        let mut object = Map::new();
        if let Some(n) = self.max_cnt {
            object.insert(MAX_CNT.to_owned(), Value::from(n));
        }
        if let Some(t) = self.end_time {
            object.insert(
                END_TIME.to_owned(),
                Value::from(t.to_rfc3339_opts(SecondsFormat::Millis, true)),
            );
        }
        if let Some(n) = self.max_failures {
            object.insert(MAX_FAILURES.to_owned(), Value::from(n));
        }
        for (key, value) in &self.matches {
            object.insert(key.clone(), value.clone());
        }
        Value::Object(object)
    }

    pub fn is_empty(&self) -> bool {
        self.max_cnt.is_none()
            && self.end_time.is_none()
            && self.max_failures.is_none()
            && self.matches.is_empty()
    }

    /// True when there is at least one match key and `body` is a JSON object in which every
    /// match key is present with an equal value. A key is looked up literally first, then as a
    /// dotted path into nested objects (`"result.done"`). Numbers compare by value, so `1`
    /// matches `1.0`.
    pub fn response_matches(&self, body: &str) -> bool {
        if self.matches.is_empty() {
            return false;
        }
        let Ok(Value::Object(object)) = serde_json::from_str::<Value>(body) else {
            return false;
        };
        self.matches.iter().all(|(key, expected)| {
            lookup(&object, key).is_some_and(|actual| json_equal(actual, expected))
        })
    }
}

fn positive_integer(key: &str, value: &Value, max: u64) -> Result<Option<u64>, FieldError> {
    let field = || format!("stop_condition.{key}");
    match value {
        Value::Null => Ok(None),
        Value::Number(n) => match n.as_u64() {
            Some(0) => Err(FieldError::new(field(), "must be at least 1")),
            Some(v) if v <= max => Ok(Some(v)),
            Some(_) => Err(FieldError::new(field(), format!("must be at most {max}"))),
            None if n.as_i64().is_some() => Err(FieldError::new(field(), "must be at least 1")),
            None => Err(FieldError::new(field(), "must be a whole number")),
        },
        _ => Err(FieldError::new(field(), "must be a whole number")),
    }
}

fn time(key: &str, value: &Value) -> Result<Option<DateTime<Utc>>, FieldError> {
    let invalid = || {
        FieldError::new(
            format!("stop_condition.{key}"),
            "must be an RFC 3339 time such as 2025-04-22T10:00:00Z",
        )
    };
    match value {
        Value::Null => Ok(None),
        Value::String(s) => {
            let t = DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| invalid())?;
            super::validate::check_time_range(&format!("stop_condition.{key}"), t).map(Some)
        }
        _ => Err(invalid()),
    }
}

/// Finds `key` in `object`: literally, or else as a dotted path. Every split point is tried, so
/// keys that themselves contain dots (`{"a.b": {"c": 1}}` for `"a.b.c"`) are reached too.
fn lookup<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    if let Some(v) = object.get(key) {
        return Some(v);
    }
    key.match_indices('.').find_map(|(i, _)| {
        let (head, tail) = (&key[..i], &key[i + 1..]);
        match object.get(head) {
            Some(Value::Object(inner)) => lookup(inner, tail),
            _ => None,
        }
    })
}

/// JSON equality where numbers compare by value (`1 == 1.0`), recursively.
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                x == y
            } else if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                x == y
            } else {
                match (x.as_f64(), y.as_f64()) {
                    (Some(x), Some(y)) => x == y,
                    _ => false,
                }
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_equal(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<StopCondition, FieldError> {
        StopCondition::parse(&v)
    }

    #[test]
    fn the_design_documents_example_means_a_count_and_a_response_match() {
        let c = parse(json!({"max_cnt": 300, "finsh": true})).unwrap();
        assert_eq!(c.max_cnt, Some(300));
        assert_eq!(c.matches, vec![("finsh".to_owned(), json!(true))]);
        assert_eq!(c.to_json(), json!({"max_cnt": 300, "finsh": true}));
    }

    #[test]
    fn null_is_the_empty_condition() {
        let c = parse(Value::Null).unwrap();
        assert!(c.is_empty());
        assert_eq!(c.to_json(), json!({}));
        assert!(parse(json!({})).unwrap().is_empty());
    }

    #[test]
    fn a_non_object_is_rejected() {
        let e = parse(json!([1])).unwrap_err();
        assert_eq!(e.field, "stop_condition");
        assert!(parse(json!("max_cnt=3")).is_err());
    }

    #[test]
    fn a_zero_negative_or_fractional_max_cnt_is_rejected() {
        for bad in [json!(0), json!(-1), json!(2.5), json!("3"), json!(true)] {
            let e = parse(json!({ "max_cnt": bad })).unwrap_err();
            assert_eq!(e.field, "stop_condition.max_cnt", "{bad}");
        }
    }

    #[test]
    fn max_failures_must_be_a_positive_integer_that_fits() {
        assert_eq!(
            parse(json!({"max_failures": 3})).unwrap().max_failures,
            Some(3)
        );
        for bad in [json!(0), json!(-2), json!(1.5), json!(5_000_000_000u64)] {
            let e = parse(json!({ "max_failures": bad })).unwrap_err();
            assert_eq!(e.field, "stop_condition.max_failures", "{bad}");
        }
    }

    #[test]
    fn end_time_accepts_any_offset_and_is_normalised_to_utc() {
        let c = parse(json!({"end_time": "2025-04-22T12:00:00+02:00"})).unwrap();
        assert_eq!(
            c.end_time
                .unwrap()
                .to_rfc3339_opts(SecondsFormat::Millis, true),
            "2025-04-22T10:00:00.000Z"
        );
        assert_eq!(c.to_json(), json!({"end_time": "2025-04-22T10:00:00.000Z"}));
        let e = parse(json!({"end_time": "tomorrow"})).unwrap_err();
        assert_eq!(e.field, "stop_condition.end_time");
        assert!(parse(json!({"end_time": 1745316000})).is_err());
    }

    #[test]
    fn a_reserved_key_set_to_null_counts_as_absent() {
        assert!(parse(json!({"max_cnt": null, "end_time": null}))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_response_carrying_every_match_key_matches() {
        let c = parse(json!({"max_cnt": 3, "finsh": true, "state": "done"})).unwrap();
        assert!(c.response_matches(r#"{"finsh": true, "state": "done", "extra": 1}"#));
        assert!(!c.response_matches(r#"{"finsh": true}"#));
        assert!(!c.response_matches(r#"{"finsh": false, "state": "done"}"#));
        assert!(!c.response_matches(r#"{"finsh": "true", "state": "done"}"#));
    }

    #[test]
    fn a_condition_without_match_keys_never_matches() {
        let c = parse(json!({"max_cnt": 3})).unwrap();
        assert!(!c.response_matches(r#"{"max_cnt": 3}"#));
    }

    #[test]
    fn a_body_that_is_not_a_json_object_never_matches() {
        let c = parse(json!({"ok": true})).unwrap();
        assert!(!c.response_matches("OK"));
        assert!(!c.response_matches("[true]"));
        assert!(!c.response_matches(""));
        assert!(!c.response_matches("true"));
    }

    #[test]
    fn dotted_keys_reach_into_nested_objects() {
        let c = parse(json!({"result.done": true})).unwrap();
        assert!(c.response_matches(r#"{"result": {"done": true}}"#));
        assert!(!c.response_matches(r#"{"result": {"done": false}}"#));
        assert!(!c.response_matches(r#"{"result": true}"#));
        let deep = parse(json!({"a.b.c": 1})).unwrap();
        assert!(deep.response_matches(r#"{"a": {"b": {"c": 1}}}"#));
        assert!(deep.response_matches(r#"{"a.b": {"c": 1}}"#));
    }

    #[test]
    fn a_literal_key_wins_over_the_dotted_path() {
        let c = parse(json!({"result.done": true})).unwrap();
        assert!(c.response_matches(r#"{"result.done": true, "result": {"done": false}}"#));
    }

    #[test]
    fn numbers_match_by_value_and_structures_match_deeply() {
        let c = parse(json!({"code": 1, "tags": ["a", 2], "meta": {"n": 2.0}})).unwrap();
        assert!(c.response_matches(r#"{"code": 1.0, "tags": ["a", 2.0], "meta": {"n": 2}}"#));
        assert!(!c.response_matches(r#"{"code": 1, "tags": ["a"], "meta": {"n": 2}}"#));
        let null_match = parse(json!({"error": null})).unwrap();
        assert!(null_match.response_matches(r#"{"error": null}"#));
        assert!(!null_match.response_matches(r#"{}"#));
    }
}
