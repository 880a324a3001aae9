//! History retention: how long a task's execution log is kept and how many of its rows.
//!
//! The configuration's `[retention]` sets the global limits ([`RetentionLimits`]); a task's own
//! `retention` ([`Retention`]) may only be stricter, so validation refuses a value above the
//! global one and the pruner applies the smaller of the two ([`Retention::effective`]) — a task
//! stored under a more generous configuration than today's is held to today's.
//! The pruner (`crate::actors::pruner`) turns these into cut-offs with [`age_cutoff_ms`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{shorten, FieldError};

/// The most days a limit may name: a hundred years, far beyond any use and far inside the
/// milliseconds an `i64` holds.
pub const MAX_RETENTION_DAYS: u32 = 36_500;
/// The most log rows per task a limit may name (a per-task count the pruner can hold in an
/// `i64` offset with room to spare).
pub const MAX_LOGS_PER_TASK: u64 = 1_000_000_000;

const DAY_MS: i64 = 86_400_000;

/// The global limits of `[retention]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetentionLimits {
    /// Log rows older than this many days are deleted.
    pub max_age_days: u32,
    /// Beyond this many log rows per task, the oldest are deleted.
    pub max_logs_per_task: u64,
}

impl RetentionLimits {
    /// The defaults of `[retention]`.
    pub const DEFAULT: RetentionLimits = RetentionLimits {
        max_age_days: 30,
        max_logs_per_task: 10_000,
    };

    /// The most any configuration allows (a stored row is read back within these).
    pub const MAX: RetentionLimits = RetentionLimits {
        max_age_days: MAX_RETENTION_DAYS,
        max_logs_per_task: MAX_LOGS_PER_TASK,
    };
}

impl Default for RetentionLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A task's own history limits; `None` falls back to the global limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_logs: Option<u64>,
}

impl Retention {
    pub fn is_empty(&self) -> bool {
        self.max_age_days.is_none() && self.max_logs.is_none()
    }

    /// The limits that apply to this task under `global`: each the stricter of the two.
    pub fn effective(&self, global: RetentionLimits) -> RetentionLimits {
        RetentionLimits {
            max_age_days: self
                .max_age_days
                .map_or(global.max_age_days, |d| d.min(global.max_age_days)),
            max_logs_per_task: self.max_logs.map_or(global.max_logs_per_task, |n| {
                n.min(global.max_logs_per_task)
            }),
        }
    }

    /// The compact JSON stored in `tasks.retention` (at most 60 bytes; the column holds 256),
    /// or `None` for no override.
    pub fn to_stored(&self) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        serde_json::to_string(self).ok()
    }
}

/// Parses a task's `retention`: `null` is no override; otherwise an object with
/// `max_age_days` and/or `max_logs`, each at least 1 and at most the global limit in `limits`.
/// Errors name `retention` or `retention.<key>`.
pub fn parse_retention(v: &Value, limits: RetentionLimits) -> Result<Retention, FieldError> {
    let object = match v {
        Value::Null => return Ok(Retention::default()),
        Value::Object(object) => object,
        _ => {
            return Err(FieldError::new(
                "retention",
                "must be an object such as {\"max_age_days\": 7, \"max_logs\": 100}",
            ))
        }
    };
    if let Some(key) = object
        .keys()
        .find(|k| !matches!(k.as_str(), "max_age_days" | "max_logs"))
    {
        return Err(FieldError::new(
            format!("retention.{}", shorten(key)),
            "is not a retention setting (use max_age_days and max_logs)",
        ));
    }
    let mut retention = Retention::default();
    if let Some(v) = object.get("max_age_days").filter(|v| !v.is_null()) {
        let n = bounded(
            "retention.max_age_days",
            v,
            u64::from(limits.max_age_days),
            "retention.max_age_days",
        )?;
        retention.max_age_days = u32::try_from(n).ok();
    }
    if let Some(v) = object.get("max_logs").filter(|v| !v.is_null()) {
        retention.max_logs = Some(bounded(
            "retention.max_logs",
            v,
            limits.max_logs_per_task,
            "retention.max_logs_per_task",
        )?);
    }
    Ok(retention)
}

/// A whole number from 1 to `max`, the configured global limit named `key`.
fn bounded(field: &str, v: &Value, max: u64, key: &str) -> Result<u64, FieldError> {
    let Value::Number(n) = v else {
        return Err(FieldError::new(field, "must be a whole number"));
    };
    match n.as_u64() {
        Some(0) => Err(FieldError::new(field, "must be at least 1")),
        Some(n) if n > max => Err(FieldError::new(
            field,
            format!("must be at most {max}, the configured {key}"),
        )),
        Some(n) => Ok(n),
        None if n.as_i64().is_some() => Err(FieldError::new(field, "must be at least 1")),
        None => Err(FieldError::new(field, "must be a whole number")),
    }
}

/// Log rows created before this instant (epoch ms) are past `max_age_days` at `now_ms`.
pub fn age_cutoff_ms(now_ms: i64, max_age_days: u32) -> i64 {
    now_ms.saturating_sub(i64::from(max_age_days).saturating_mul(DAY_MS))
}

/// Finished tasks last updated before this instant (epoch ms) are deleted at `now_ms`, or
/// `None` when `finished_task_days` is 0 (finished tasks are kept).
pub fn finished_cutoff_ms(now_ms: i64, finished_task_days: u32) -> Option<i64> {
    (finished_task_days > 0).then(|| age_cutoff_ms(now_ms, finished_task_days))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const GLOBAL: RetentionLimits = RetentionLimits::DEFAULT;

    fn field_of(v: Value) -> String {
        parse_retention(&v, GLOBAL).unwrap_err().field
    }

    #[test]
    fn null_is_no_override() {
        assert!(parse_retention(&Value::Null, GLOBAL).unwrap().is_empty());
        assert_eq!(Retention::default().to_stored(), None);
    }

    #[test]
    fn a_retention_within_the_global_limits_is_kept() {
        let r = parse_retention(&json!({"max_age_days": 7, "max_logs": 100}), GLOBAL).unwrap();
        assert_eq!(
            r,
            Retention {
                max_age_days: Some(7),
                max_logs: Some(100)
            }
        );
        let at_the_limit =
            parse_retention(&json!({"max_age_days": 30, "max_logs": 10_000}), GLOBAL).unwrap();
        assert_eq!(at_the_limit.max_age_days, Some(30));
    }

    #[test]
    fn each_value_is_at_least_one_and_at_most_the_global_limit() {
        for (bad, field) in [
            (json!({"max_age_days": 0}), "retention.max_age_days"),
            (json!({"max_age_days": -1}), "retention.max_age_days"),
            (json!({"max_age_days": 31}), "retention.max_age_days"),
            (json!({"max_age_days": 1.5}), "retention.max_age_days"),
            (json!({"max_age_days": "7"}), "retention.max_age_days"),
            (json!({"max_logs": 0}), "retention.max_logs"),
            (json!({"max_logs": 10_001}), "retention.max_logs"),
            (json!({"max_logs": 1e30}), "retention.max_logs"),
            (json!({"days": 3}), "retention.days"),
            (json!([1]), "retention"),
            (json!(7), "retention"),
        ] {
            assert_eq!(field_of(bad.clone()), field, "{bad}");
        }
    }

    #[test]
    fn a_value_above_the_global_limit_names_the_configured_key() {
        let e = parse_retention(&json!({"max_logs": 20_000}), GLOBAL).unwrap_err();
        assert!(e.to_string().contains("retention.max_logs_per_task"), "{e}");
    }

    #[test]
    fn the_stricter_of_task_and_global_limits_applies() {
        let task = Retention {
            max_age_days: Some(7),
            max_logs: Some(50_000),
        };
        assert_eq!(
            task.effective(GLOBAL),
            RetentionLimits {
                max_age_days: 7,
                max_logs_per_task: 10_000
            }
        );
        assert_eq!(Retention::default().effective(GLOBAL), GLOBAL);
    }

    #[test]
    fn the_stored_form_round_trips_and_fits_its_column() {
        let r = Retention {
            max_age_days: Some(MAX_RETENTION_DAYS),
            max_logs: Some(MAX_LOGS_PER_TASK),
        };
        let stored = r.to_stored().unwrap();
        assert!(stored.len() <= 256, "{stored}");
        let back = parse_retention(
            &serde_json::from_str::<Value>(&stored).unwrap(),
            RetentionLimits::MAX,
        )
        .unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn cutoffs_are_whole_days_before_now_and_zero_keeps_finished_tasks() {
        assert_eq!(age_cutoff_ms(10 * DAY_MS, 3), 7 * DAY_MS);
        assert_eq!(finished_cutoff_ms(10 * DAY_MS, 0), None);
        assert_eq!(finished_cutoff_ms(10 * DAY_MS, 2), Some(8 * DAY_MS));
        assert_eq!(age_cutoff_ms(i64::MIN + 1, MAX_RETENTION_DAYS), i64::MIN);
    }
}
