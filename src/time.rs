//! Wall-clock helpers: every instant inside tickwheel is milliseconds since the Unix epoch.

use chrono::{SecondsFormat, TimeZone, Utc};

/// Now, in epoch milliseconds.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// RFC 3339 in UTC with a `Z` and millisecond precision, as the API speaks.
pub fn to_rfc3339(ms: i64) -> String {
    match Utc.timestamp_millis_opt(ms).single() {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Millis, true),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_printed_in_utc_with_milliseconds_and_z() {
        assert_eq!(to_rfc3339(1_745_316_020_000), "2025-04-22T10:00:20.000Z");
    }
}
