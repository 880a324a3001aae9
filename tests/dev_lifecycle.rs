//! Scratch target while lifecycle.rs is written; merged into tests/api/main.rs afterwards.
#[path = "api/helpers.rs"]
mod helpers;
#[path = "api/lifecycle.rs"]
mod lifecycle;
#[path = "api/sink.rs"]
mod sink;
