//! How large each stored task field may be, and the columns that hold it: the one place the
//! validator's bounds and the configuration's `[limits]` (defaults and the most each key may be
//! set to) come from, so that input the validator accepts is stored on every backend. The
//! migrations that created these columns spell their sizes out (a migration is a record of
//! what was done, so it does not follow a constant that changes later);
//! `storage_limits::the_largest_value_of_every_field_is_stored_and_read_back` holds the two in
//! step on MariaDB.
//!
//! SQLite stores any length in any column; MySQL/MariaDB (in its default strict mode) refuses
//! a value longer than its column with an error. The bounds below are therefore set against
//! MySQL's column types:
//!
//! | column                  | type            | holds                           | bounded by                       |
//! |-------------------------|-----------------|---------------------------------|----------------------------------|
//! | `http_endpoint`         | `TEXT`          | 65,535 bytes                    | `max_url_bytes` (normalised URL) |
//! | `headers` (encrypted)   | `MEDIUMBLOB`    | 16 MiB                          | [`MAX_SEALED_HEADERS_BYTES`]     |
//! | `body`                  | `MEDIUMTEXT`    | 16 MiB                          | [`MAX_STORED_BODY_BYTES`]        |
//! | `cron_expression`       | `VARCHAR(256)`  | 256 characters                  | `max_cron_expression_bytes`      |
//! | `timezone`              | `VARCHAR(64)`   | 64 characters                   | IANA names (at most 32)          |
//! | `stop_condition`        | `MEDIUMTEXT`    | 16 MiB                          | `max_stop_condition_bytes`       |
//! | `retry`                 | `TEXT`          | 65,535 bytes                    | two bounded numbers              |
//!
//! A whole task row also has to fit one MySQL packet (`max_allowed_packet`, 16 MiB by default
//! on MariaDB): the caps on body, headers, stop condition and URL add up to about 13.1 MiB.

use super::retention::RetentionLimits;

/// MySQL/MariaDB `TEXT` and `BLOB`: 2^16 - 1 bytes.
pub const TEXT_BYTES: usize = 65_535;
/// MySQL/MariaDB `MEDIUMTEXT` and `MEDIUMBLOB`: 2^24 - 1 bytes.
pub const MEDIUM_BYTES: usize = 16_777_215;

/// `tasks.cron_expression` is `VARCHAR(CRON_EXPRESSION_CHARS)`.
pub const CRON_EXPRESSION_CHARS: u32 = 256;
/// `tasks.timezone` is `VARCHAR(TIMEZONE_CHARS)`; the longest IANA zone name has 32.
pub const TIMEZONE_CHARS: u32 = 64;

/// The stored (compact JSON) form of a task's `body`: 8 MiB, half the `MEDIUMTEXT` column and
/// of MariaDB's default packet. `server.max_body_bytes` may be at most this.
pub const MAX_STORED_BODY_BYTES: usize = 8 * 1024 * 1024;
/// The encrypted header list: 4 MiB (the `MEDIUMBLOB` column holds 16 MiB; the rest of the
/// packet is the body's).
pub const MAX_SEALED_HEADERS_BYTES: usize = 4 * 1024 * 1024;
/// What encryption adds to the header list's JSON: key id (1), nonce (12), tag (16).
pub const SEAL_OVERHEAD_BYTES: usize = 1 + 12 + 16;

/// The input bounds a configuration sets under `[limits]`. Each is checked against the field's
/// stored form (the normalised URL, the compact JSON of a stop condition), which is what has
/// to fit the column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputLimits {
    /// `http_endpoint`, in bytes.
    pub max_url_bytes: usize,
    /// Headers per task.
    pub max_headers: usize,
    pub max_header_name_bytes: usize,
    pub max_header_value_bytes: usize,
    /// `cron_expression` (trimmed), in bytes.
    pub max_cron_expression_bytes: usize,
    /// `stop_condition` as compact JSON, in bytes.
    pub max_stop_condition_bytes: usize,
    /// The global `[retention]` limits a task's own `retention` may not exceed (checked by
    /// the configuration itself, under its own section).
    pub retention: RetentionLimits,
}

impl InputLimits {
    /// The defaults of `[limits]`.
    pub const DEFAULT: InputLimits = InputLimits {
        max_url_bytes: 2048,
        max_headers: 50,
        max_header_name_bytes: 256,
        max_header_value_bytes: 8192,
        max_cron_expression_bytes: CRON_EXPRESSION_CHARS as usize,
        max_stop_condition_bytes: 64 * 1024,
        retention: RetentionLimits::DEFAULT,
    };

    /// The most each key may be set to: what its column (or, for headers, its share of the
    /// packet) holds.
    pub const MAX: InputLimits = InputLimits {
        max_url_bytes: TEXT_BYTES,
        max_headers: 1000,
        max_header_name_bytes: 8192,
        max_header_value_bytes: TEXT_BYTES,
        max_cron_expression_bytes: CRON_EXPRESSION_CHARS as usize,
        max_stop_condition_bytes: 1024 * 1024,
        retention: RetentionLimits::MAX,
    };

    /// The largest encrypted header list these limits allow: the JSON `[["name","value"],…]`
    /// with every value fully escaped (`"` and `\` take two bytes), plus the seal.
    pub fn sealed_headers_bound(&self) -> usize {
        let per_header = self
            .max_header_name_bytes
            .saturating_add(self.max_header_value_bytes.saturating_mul(2))
            .saturating_add(7);
        self.max_headers
            .saturating_mul(per_header)
            .saturating_add(2 + SEAL_OVERHEAD_BYTES)
    }

    /// Refuses limits beyond what storage holds, naming the key (`max_headers`, …) and the
    /// most it may be.
    pub fn check(&self) -> Result<(), String> {
        let keys = [
            ("max_url_bytes", self.max_url_bytes, Self::MAX.max_url_bytes),
            ("max_headers", self.max_headers, Self::MAX.max_headers),
            (
                "max_header_name_bytes",
                self.max_header_name_bytes,
                Self::MAX.max_header_name_bytes,
            ),
            (
                "max_header_value_bytes",
                self.max_header_value_bytes,
                Self::MAX.max_header_value_bytes,
            ),
            (
                "max_cron_expression_bytes",
                self.max_cron_expression_bytes,
                Self::MAX.max_cron_expression_bytes,
            ),
            (
                "max_stop_condition_bytes",
                self.max_stop_condition_bytes,
                Self::MAX.max_stop_condition_bytes,
            ),
        ];
        for (key, value, max) in keys {
            if value == 0 {
                return Err(format!("{key} must be at least 1"));
            }
            if value > max {
                return Err(format!(
                    "{key} = {value} is more than storage holds; it may be at most {max}"
                ));
            }
        }
        let sealed = self.sealed_headers_bound();
        if sealed > MAX_SEALED_HEADERS_BYTES {
            return Err(format!(
                "max_headers × (max_header_name_bytes + 2 × max_header_value_bytes) allows \
                 {sealed} bytes of headers per task once encrypted; storage holds \
                 {MAX_SEALED_HEADERS_BYTES}: lower max_headers or max_header_value_bytes"
            ));
        }
        Ok(())
    }
}

impl Default for InputLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

// ---- response matches of a stop condition ----------------------------------------------------

/// Response-match keys per condition.
pub const MAX_MATCH_KEYS: usize = 16;
/// Bytes in one response-match key.
pub const MAX_MATCH_KEY_BYTES: usize = 256;
/// Dot-separated segments in one response-match key (so at most this many minus one dots).
pub const MAX_MATCH_KEY_SEGMENTS: usize = 16;
/// Bytes of one expected value, serialised as compact JSON.
pub const MAX_MATCH_VALUE_BYTES: usize = 1024;
/// Nesting depth of one expected value (a scalar is depth 0, `[1]` depth 1).
pub const MAX_MATCH_VALUE_DEPTH: usize = 8;

/// The largest response-match part of a stop condition (each key and value with its quotes,
/// colon and comma) stays well inside the `stop_condition` column.
const _: () =
    assert!(MAX_MATCH_KEYS * (MAX_MATCH_KEY_BYTES + MAX_MATCH_VALUE_BYTES + 4) < TEXT_BYTES / 2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_fit_their_columns() {
        assert_eq!(InputLimits::DEFAULT.check(), Ok(()));
    }

    #[test]
    fn a_limit_beyond_its_column_is_refused_naming_the_key() {
        let too_long = InputLimits {
            max_cron_expression_bytes: CRON_EXPRESSION_CHARS as usize + 1,
            ..InputLimits::DEFAULT
        };
        let e = too_long.check().unwrap_err();
        assert!(e.starts_with("max_cron_expression_bytes"), "{e}");
        let zero = InputLimits {
            max_headers: 0,
            ..InputLimits::DEFAULT
        };
        assert!(zero.check().unwrap_err().starts_with("max_headers"));
    }

    #[test]
    fn headers_are_bounded_together_as_well_as_one_by_one() {
        let each_allowed = InputLimits {
            max_headers: 1000,
            max_header_value_bytes: TEXT_BYTES,
            ..InputLimits::DEFAULT
        };
        let e = each_allowed.check().unwrap_err();
        assert!(e.contains("max_headers"), "{e}");
    }

    #[test]
    fn a_row_at_every_cap_fits_one_mariadb_packet() {
        let max = InputLimits::MAX;
        let row = MAX_STORED_BODY_BYTES
            + MAX_SEALED_HEADERS_BYTES
            + max.max_stop_condition_bytes
            + max.max_url_bytes
            + max.max_cron_expression_bytes
            + TEXT_BYTES;
        assert!(row < 16 * 1024 * 1024, "{row}");
    }
}
