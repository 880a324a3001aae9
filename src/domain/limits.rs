//! The storage bounds the domain validates against: how long a cron expression, a header list,
//! a body or a response match may be so that what is accepted is stored on every backend.
//!
//! They are set beside the column sizes in `entities::limits`, the one place the migrations and
//! the configuration read them too, and the `entities` crate cannot depend on this one. This
//! module is therefore the only part of the domain that names `entities`; everything else in
//! the domain takes the bounds from here.

pub use entities::limits::{
    InputLimits, CRON_EXPRESSION_CHARS, MAX_MATCH_KEYS, MAX_MATCH_KEY_BYTES,
    MAX_MATCH_KEY_SEGMENTS, MAX_MATCH_VALUE_BYTES, MAX_MATCH_VALUE_DEPTH, MAX_SEALED_HEADERS_BYTES,
    MAX_STORED_BODY_BYTES, SEAL_OVERHEAD_BYTES, TIMEZONE_CHARS,
};
