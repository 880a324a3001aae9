//! Stop conditions: when a task completes or fails on its own.
//!
//! `stop_condition` is a JSON object with three reserved keys (`max_cnt`, `end_time`,
//! `max_failures`); every other key is a response match, checked against the JSON body of each
//! successful execution.
//!
//! A response match costs work that users choose (their keys, their values, their target's
//! body), so its inputs are bounded here at validation and its lookup is bounded at run time:
//! finding a key visits each object of the response at most once and probes at most
//! [`MAX_MATCH_KEY_SEGMENTS`] member names there, within [`MAX_MATCH_PROBES`] probes per
//! response. Where it runs (off the path that fires other tasks) is the caller's business.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

use super::bounds::check_time_range;
use super::error::FieldError;

pub const MAX_CNT: &str = "max_cnt";
pub const END_TIME: &str = "end_time";
pub const MAX_FAILURES: &str = "max_failures";

pub use super::limits::{
    MAX_MATCH_KEYS, MAX_MATCH_KEY_BYTES, MAX_MATCH_KEY_SEGMENTS, MAX_MATCH_VALUE_BYTES,
    MAX_MATCH_VALUE_DEPTH,
};
/// Member look-ups one response may cost across all its match keys. Far above what any
/// response that is not built to branch needs (a key with a few dots costs a few); a response
/// that needs more does not match.
pub const MAX_MATCH_PROBES: usize = 8192;

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
        Self::parse_with(v, true)
    }

    /// Reads a condition stored by an earlier version, which may predate today's input bounds
    /// (match-key sizes, the time range, `max_cnt` within a signed 64-bit count): an accepted
    /// task is never lost to a bound added later. Only what cannot be read at all fails.
    pub fn parse_stored(v: &Value) -> Result<Self, FieldError> {
        Self::parse_with(v, false)
    }

    fn parse_with(v: &Value, bounded: bool) -> Result<Self, FieldError> {
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
                MAX_CNT if bounded => {
                    condition.max_cnt = positive_integer(key, value, i64::MAX as u64)?
                }
                MAX_CNT => {
                    condition.max_cnt =
                        positive_integer(key, value, u64::MAX)?.map(|n| n.min(i64::MAX as u64))
                }
                MAX_FAILURES => {
                    condition.max_failures = positive_integer(key, value, u64::from(u32::MAX))?
                        .and_then(|n| u32::try_from(n).ok());
                }
                END_TIME => condition.end_time = time(key, value, bounded)?,
                _ => {
                    if !bounded {
                        condition.matches.push((key.clone(), value.clone()));
                        continue;
                    }
                    if condition.matches.len() == MAX_MATCH_KEYS {
                        return Err(FieldError::new(
                            "stop_condition",
                            format!("at most {MAX_MATCH_KEYS} response-match keys are allowed"),
                        ));
                    }
                    match_key(key, value)?;
                    condition.matches.push((key.clone(), value.clone()));
                }
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
    /// matches `1.0`. A response that would cost more than [`MAX_MATCH_PROBES`] member
    /// look-ups to search does not match.
    ///
    /// Parses up to `http.max_response_bytes` of JSON: callers keep it off the threads that
    /// fire tasks.
    pub fn response_matches(&self, body: &str) -> bool {
        if self.matches.is_empty() {
            return false;
        }
        let Ok(Value::Object(object)) = serde_json::from_str::<Value>(body) else {
            return false;
        };
        let mut probes = MAX_MATCH_PROBES;
        self.matches.iter().all(|(key, expected)| {
            lookup(&object, key, &mut probes).is_some_and(|actual| json_equal(actual, expected))
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

/// Checks one response match against the bounds. A key too long to repeat in a field name is
/// reported against `stop_condition` itself.
fn match_key(key: &str, value: &Value) -> Result<(), FieldError> {
    if key.len() > MAX_MATCH_KEY_BYTES {
        return Err(FieldError::new(
            "stop_condition",
            format!(
                "a response-match key may be at most {MAX_MATCH_KEY_BYTES} bytes long; one is {}",
                key.len()
            ),
        ));
    }
    let field = || format!("stop_condition.{key}");
    if key.split('.').count() > MAX_MATCH_KEY_SEGMENTS {
        return Err(FieldError::new(
            field(),
            format!(
                "a response-match key may have at most {MAX_MATCH_KEY_SEGMENTS} dot-separated \
                 segments"
            ),
        ));
    }
    if depth_exceeds(value, MAX_MATCH_VALUE_DEPTH) {
        return Err(FieldError::new(
            field(),
            format!("the expected value may be nested at most {MAX_MATCH_VALUE_DEPTH} deep"),
        ));
    }
    let size = value.to_string().len();
    if size > MAX_MATCH_VALUE_BYTES {
        return Err(FieldError::new(
            field(),
            format!(
                "the expected value may be at most {MAX_MATCH_VALUE_BYTES} bytes as JSON; it is \
                 {size}"
            ),
        ));
    }
    Ok(())
}

/// True when `value` nests deeper than `max` (arrays and objects each add one level).
fn depth_exceeds(value: &Value, max: usize) -> bool {
    let children: Box<dyn Iterator<Item = &Value>> = match value {
        Value::Array(items) => Box::new(items.iter()),
        Value::Object(members) => Box::new(members.values()),
        _ => return false,
    };
    if max == 0 {
        return true;
    }
    children
        .into_iter()
        .any(|child| depth_exceeds(child, max - 1))
}

fn time(key: &str, value: &Value, bounded: bool) -> Result<Option<DateTime<Utc>>, FieldError> {
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
            if !bounded {
                return Ok(Some(t));
            }
            check_time_range(&format!("stop_condition.{key}"), t).map(Some)
        }
        _ => Err(invalid()),
    }
}

/// Finds `key` in `object`: the rest of the key literally first, then split at each dot from
/// the left, descending into the member named by the part before the dot when it is an object;
/// the first value found in that order is the answer. Keys that themselves contain dots
/// (`{"a.b": {"c": 1}}` for `"a.b.c"`) are reached too.
///
/// Depth-first with an explicit stack, so a long key cannot exhaust the thread's stack. Each
/// object of the response is visited at most once per key (an object is reached only through
/// its one parent, at the one key position its name ends at) and costs at most one probe per
/// segment of the key; `probes` is the budget left for the whole response, and `None` is the
/// answer once it runs out.
fn lookup<'a>(object: &'a Map<String, Value>, key: &str, probes: &mut usize) -> Option<&'a Value> {
    // Where the key's segments end, so that no visit scans the key for dots again.
    let dots: Vec<usize> = key.match_indices('.').map(|(i, _)| i).collect();
    // (object, where its part of `key` starts, the index in `dots` of the next split to try).
    let mut stack: Vec<(&'a Map<String, Value>, usize, usize)> = vec![(object, 0, 0)];
    let mut fresh = true;
    while let Some(top) = stack.last_mut() {
        let (object, start, next_dot) = *top;
        if fresh {
            *probes = probes.checked_sub(1)?;
            if let Some(v) = object.get(&key[start..]) {
                return Some(v);
            }
        }
        // The next dot to split at; a child's first one is the one after its parent's split.
        let Some(&dot) = dots.get(next_dot) else {
            stack.pop();
            fresh = false;
            continue;
        };
        top.2 = next_dot + 1;
        *probes = probes.checked_sub(1)?;
        match object.get(&key[start..dot]) {
            Some(Value::Object(inner)) => {
                stack.push((inner, dot + 1, next_dot + 1));
                fresh = true;
            }
            _ => fresh = false,
        }
    }
    None
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

    #[test]
    fn a_response_match_key_longer_than_the_bound_is_refused_without_repeating_it() {
        let key = "k".repeat(MAX_MATCH_KEY_BYTES + 1);
        let e = parse(json!({ key: true })).unwrap_err();
        assert_eq!(e.field, "stop_condition");
        assert!(e.message.contains("256 bytes"), "{}", e.message);
        let longest = "k".repeat(MAX_MATCH_KEY_BYTES);
        assert!(parse(json!({ longest: true })).is_ok());
    }

    #[test]
    fn a_response_match_key_with_too_many_segments_is_refused_by_name() {
        let key = vec!["s"; MAX_MATCH_KEY_SEGMENTS + 1].join(".");
        let e = parse(json!({ key.clone(): 1 })).unwrap_err();
        assert_eq!(e.field, format!("stop_condition.{key}"));
        let most = vec!["s"; MAX_MATCH_KEY_SEGMENTS].join(".");
        assert!(parse(json!({ most: 1 })).is_ok());
    }

    #[test]
    fn more_response_match_keys_than_the_bound_are_refused() {
        let mut object = Map::new();
        object.insert("max_cnt".into(), json!(5));
        for i in 0..MAX_MATCH_KEYS {
            object.insert(format!("k{i}"), json!(i));
        }
        // Reserved keys do not count.
        assert!(parse(Value::Object(object.clone())).is_ok());
        object.insert("one_more".into(), json!(true));
        let e = parse(Value::Object(object)).unwrap_err();
        assert_eq!(e.field, "stop_condition");
    }

    #[test]
    fn an_expected_value_too_large_or_too_deep_is_refused_by_name() {
        let big = "x".repeat(MAX_MATCH_VALUE_BYTES);
        let e = parse(json!({ "state": big })).unwrap_err();
        assert_eq!(e.field, "stop_condition.state");
        let fits = "x".repeat(MAX_MATCH_VALUE_BYTES - 2);
        assert!(parse(json!({ "state": fits })).is_ok());

        let mut deepest = json!(1);
        for _ in 0..MAX_MATCH_VALUE_DEPTH {
            deepest = json!([deepest]);
        }
        assert!(parse(json!({ "deep": deepest.clone() })).is_ok());
        let e = parse(json!({ "deep": { "one": deepest } })).unwrap_err();
        assert_eq!(e.field, "stop_condition.deep");
    }

    #[test]
    fn keys_with_dots_at_any_level_are_found_after_a_dead_end() {
        let c = parse(json!({"a.b.c.d": 1})).unwrap();
        assert!(c.response_matches(r#"{"a": {"b.c": {"d": 1}}}"#));
        assert!(c.response_matches(r#"{"a": {"x": 0}, "a.b": {"c": {"d": 1}}}"#));
        assert!(c.response_matches(r#"{"a": {"b": {"c": 2}}, "a.b.c": {"d": 1}}"#));
        assert!(!c.response_matches(r#"{"a": {"b": {"c": {"e": 1}}}}"#));
        // The first value found in order decides: the literal key at the deepest level the
        // left-most split reaches comes before a later split.
        assert!(!c.response_matches(r#"{"a": {"b.c.d": 2}, "a.b": {"c.d": 1}}"#));
    }

    #[test]
    fn a_key_of_the_largest_allowed_size_is_found_in_a_deep_object() {
        // 15 dots and a long last segment: 256 bytes in all.
        let segments: Vec<String> = (0..MAX_MATCH_KEY_SEGMENTS - 1)
            .map(|i| format!("s{i:x}"))
            .collect();
        let head = segments.join(".");
        let last = "z".repeat(MAX_MATCH_KEY_BYTES - head.len() - 1);
        let key = format!("{head}.{last}");
        assert_eq!(key.len(), MAX_MATCH_KEY_BYTES);
        let mut body = json!({ last.clone(): "found" });
        for s in segments.iter().rev() {
            body = json!({ s.clone(): body });
        }
        let c = parse(json!({ key.clone(): "found" })).unwrap();
        assert!(c.response_matches(&body.to_string()));
        let other = parse(json!({ key: "other" })).unwrap();
        assert!(!other.response_matches(&body.to_string()));
    }

    /// Every way of splitting `k` one-letter segments, as nested objects: 2^(k-1) objects
    /// share one path.
    fn every_split(k: usize) -> Value {
        let mut object = Map::new();
        for j in 1..=k {
            let name = vec!["a"; j].join(".");
            object.insert(name, every_split(k - j));
        }
        Value::Object(object)
    }

    #[test]
    fn a_response_built_to_branch_is_searched_within_the_budget_and_does_not_match() {
        let key = format!("{}.z", vec!["a"; MAX_MATCH_KEY_SEGMENTS - 1].join("."));
        let c = parse(json!({ key: 1 })).unwrap();
        let body = every_split(MAX_MATCH_KEY_SEGMENTS - 1);
        let Value::Object(object) = &body else {
            unreachable!()
        };
        let mut probes = MAX_MATCH_PROBES;
        assert_eq!(lookup(object, "a.a.a.z", &mut probes), None);
        assert!(probes > 0, "a small search spent the budget");
        let mut probes = MAX_MATCH_PROBES;
        assert_eq!(lookup(object, &c.matches[0].0, &mut probes), None);
        assert_eq!(probes, 0, "the whole search fitted in the budget");
        assert!(!c.response_matches(&body.to_string()));
    }

    #[test]
    fn a_key_within_reach_is_found_in_a_branching_response() {
        let mut body = every_split(6);
        if let Value::Object(o) = &mut body {
            o.insert("a.a.a.a.a.a.z".into(), json!(1));
        }
        let c = parse(json!({"a.a.a.a.a.a.z": 1})).unwrap();
        assert!(c.response_matches(&body.to_string()));
        // Reached through a path of several splits.
        let mut nested = every_split(3);
        if let Value::Object(o) = &mut nested {
            if let Some(Value::Object(inner)) = o.get_mut("a.a") {
                if let Some(Value::Object(leaf)) = inner.get_mut("a") {
                    leaf.insert("z".into(), json!(2));
                }
            }
        }
        let c = parse(json!({"a.a.a.z": 2})).unwrap();
        assert!(c.response_matches(&nested.to_string()));
    }
}
