//! Scratch target while validation.rs is written; merged into tests/api/main.rs afterwards.
#[path = "api/helpers.rs"]
mod helpers;
#[path = "api/sink.rs"]
mod sink;
#[path = "api/validation.rs"]
mod validation;
