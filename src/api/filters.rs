//! The query parameters that filter the history (`outcome`, `since`, `until`) and the task list
//! (`q`, `type`, `status`, which may repeat), read from the raw query pairs so that a repeated
//! key is seen as such; a bad value is a 400 naming its parameter.

use chrono::DateTime;

use super::ApiError;
use crate::domain::{TaskStatus, TaskType};
use crate::store::{LogFilter, Outcome, TaskSearch};

/// The longest search text `q` takes, in characters.
pub const MAX_QUERY_CHARS: usize = 256;

/// An RFC 3339 time with any offset, as epoch milliseconds.
fn time_param(name: &str, v: &str) -> Result<i64, ApiError> {
    DateTime::parse_from_rfc3339(v)
        .map(|t| t.timestamp_millis())
        .map_err(|e| {
            ApiError::InvalidInput(format!(
                "{name}: '{v}' is not an RFC 3339 time (e.g. 2025-04-22T10:00:00Z): {e}"
            ))
        })
}

/// `outcome`, `since` and `until` of `GET /api/v1/tasks/{task_id}/logs`.
pub fn log_filter(pairs: &[(String, String)]) -> Result<LogFilter, ApiError> {
    let mut f = LogFilter::default();
    for (k, v) in pairs {
        match k.as_str() {
            "outcome" => {
                f.outcome = Some(Outcome::parse(v).ok_or_else(|| {
                    ApiError::InvalidInput(format!(
                        "outcome: unknown outcome '{v}' (success, failure, skipped)"
                    ))
                })?)
            }
            "since" => f.since_ms = Some(time_param("since", v)?),
            "until" => f.until_ms = Some(time_param("until", v)?),
            _ => {}
        }
    }
    if let (Some(since), Some(until)) = (f.since_ms, f.until_ms) {
        if until < since {
            return Err(ApiError::InvalidInput(
                "until: must not be before since".into(),
            ));
        }
    }
    Ok(f)
}

/// `q`, `type` and `status` (repeatable) of `GET /api/v1/users/{user_id}/tasks`.
pub fn task_search(pairs: &[(String, String)]) -> Result<TaskSearch, ApiError> {
    let mut s = TaskSearch::default();
    for (k, v) in pairs {
        match k.as_str() {
            "q" => {
                if v.chars().count() > MAX_QUERY_CHARS {
                    return Err(ApiError::InvalidInput(format!(
                        "q: at most {MAX_QUERY_CHARS} characters"
                    )));
                }
                s.text = Some(v.clone());
            }
            "type" => {
                s.task_type = Some(TaskType::parse(v).ok_or_else(|| {
                    ApiError::InvalidInput(format!(
                        "type: unknown type '{v}' (interval, once, cron)"
                    ))
                })?)
            }
            "status" => {
                let status = TaskStatus::parse(v).ok_or_else(|| {
                    ApiError::InvalidInput(format!(
                        "status: unknown status '{v}' (pending, running, paused, completed, failed, stopped)"
                    ))
                })?;
                if !s.statuses.contains(&status) {
                    s.statuses.push(status);
                }
            }
            _ => {}
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn message(r: Result<impl std::fmt::Debug, ApiError>) -> String {
        match r {
            Err(ApiError::InvalidInput(m)) => m,
            other => panic!("expected invalid input, got {other:?}"),
        }
    }

    #[test]
    fn since_and_until_take_any_offset_and_read_as_utc_milliseconds() {
        let f = log_filter(&pairs(&[
            ("since", "2025-04-22T12:00:00.250+02:00"),
            ("until", "2025-04-22T10:00:01Z"),
            ("outcome", "skipped"),
        ]))
        .expect("valid");
        assert_eq!(f.since_ms, Some(1_745_316_000_250));
        assert_eq!(f.until_ms, Some(1_745_316_001_000));
        assert_eq!(f.outcome, Some(Outcome::Skipped));
    }

    #[test]
    fn a_bad_filter_value_names_its_parameter() {
        assert!(message(log_filter(&pairs(&[("outcome", "ok")]))).starts_with("outcome:"));
        assert!(message(log_filter(&pairs(&[("since", "yesterday")]))).starts_with("since:"));
        assert!(message(log_filter(&pairs(&[("until", "2025-04-22")]))).starts_with("until:"));
        let backwards = [
            ("since", "2025-04-22T10:00:00Z"),
            ("until", "2025-04-22T09:59:59Z"),
        ];
        assert!(message(log_filter(&pairs(&backwards))).starts_with("until:"));
        assert!(message(task_search(&pairs(&[("type", "daily")]))).starts_with("type:"));
        assert!(message(task_search(&pairs(&[("status", "done")]))).starts_with("status:"));
        let long = "x".repeat(MAX_QUERY_CHARS + 1);
        assert!(message(task_search(&pairs(&[("q", long.as_str())]))).starts_with("q:"));
    }

    #[test]
    fn status_may_repeat_and_each_state_counts_once() {
        let s = task_search(&pairs(&[
            ("status", "running"),
            ("status", "paused"),
            ("status", "running"),
            ("q", &"é".repeat(MAX_QUERY_CHARS)),
        ]))
        .expect("valid");
        assert_eq!(s.statuses, vec![TaskStatus::Running, TaskStatus::Paused]);
        assert_eq!(s.text.map(|t| t.chars().count()), Some(MAX_QUERY_CHARS));
    }
}
