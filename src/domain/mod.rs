//! The scheduling domain: what a task is, when it runs, when it stops, and how a request body
//! becomes a validated task definition.
//!
//! Plain Rust with no actix or SeaORM types: time is passed in (epoch milliseconds or
//! `DateTime<Utc>`), never read from a clock, so every rule here is unit-tested directly.
//!
//! - [`task`]: the task model (`TaskSpec`, its enums) and the retry backoff rule.
//! - [`schedule`]: interval, once and cron schedules (`Schedule`, `CronSchedule`), including the
//!   daylight-saving and misfire rules.
//! - [`stop`]: stop conditions and response matching.
//! - [`validate`]: create and patch bodies to `TaskSpec` / `TaskPatch`, with field-named errors.

pub mod partition;
mod quartz;
pub mod schedule;
pub mod stop;
pub mod task;
pub mod validate;

pub use schedule::{CronSchedule, Schedule, ScheduleError};
pub use stop::StopCondition;
pub use task::*;
pub use validate::{apply_patch, parse_create, parse_patch, FieldError, TaskPatch};
