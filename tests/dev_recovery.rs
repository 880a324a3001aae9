//! Scratch target while recovery.rs is written; merged into tests/api/main.rs afterwards.
#[path = "api/helpers.rs"]
mod helpers;
#[path = "api/recovery.rs"]
mod recovery;
#[path = "api/sink.rs"]
mod sink;
