//! The range of times a task may name, shared by its start time and its stop condition's end
//! time: the years a cron expression can fire in.

use chrono::{DateTime, Utc};

use super::error::FieldError;

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
