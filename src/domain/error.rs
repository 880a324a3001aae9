//! The domain's errors, apart from the rules that raise them, so that every module of the
//! domain can report a field at fault without importing another rule module for its error type.
//!
//! - [`ScheduleError`]: why a schedule cannot be built (interval, cron expression, time zone).
//! - [`FieldError`]: an invalid field of a request body, as validation and stop conditions
//!   report it; a [`ScheduleError`] converts into one.

/// Why a schedule cannot be built. `Display` names the field at fault
/// (`"cron_expression: 'L' is not supported yet"`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Not a valid cron expression; the text says why.
    #[error("cron_expression: {0}")]
    InvalidCron(String),
    /// Not implemented: `L`, `W`, `#` and wrap-around ranges in five-field expressions.
    #[error("cron_expression: {0} is not supported yet")]
    UnsupportedCron(String),
    #[error(
        "timezone: '{0}' is not a known IANA time zone (for example 'Europe/Berlin' or 'UTC')"
    )]
    UnknownTimezone(String),
    /// Both day-of-month and day-of-week restricted in a 6/7-field expression (Quartz refuses).
    #[error(
        "cron_expression: day-of-month and day-of-week cannot both be restricted; \
         use '?' (or '*') in one of them"
    )]
    DayFieldsConflict,
    #[error("interval_seconds: is required for an interval task")]
    MissingInterval,
    #[error("interval_seconds: must be at least 1 and small enough to schedule")]
    InvalidInterval,
    #[error("cron_expression: is required for a cron task")]
    MissingCron,
}

impl ScheduleError {
    /// The request field the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            ScheduleError::UnknownTimezone(_) => "timezone",
            ScheduleError::MissingInterval | ScheduleError::InvalidInterval => "interval_seconds",
            ScheduleError::InvalidCron(_)
            | ScheduleError::UnsupportedCron(_)
            | ScheduleError::DayFieldsConflict
            | ScheduleError::MissingCron => "cron_expression",
        }
    }

    /// The message without the field name in front.
    pub fn message(&self) -> String {
        let full = self.to_string();
        let prefix = format!("{}: ", self.field());
        full.strip_prefix(&prefix).unwrap_or(&full).to_owned()
    }
}

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

/// User input echoed in an error message, cut short so a huge value cannot bloat the answer.
pub(super) fn shorten(s: &str) -> String {
    const MAX_CHARS: usize = 64;
    match s.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}
