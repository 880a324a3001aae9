//! The scheduling domain: what a task is, when it runs, when it stops, and how a request body
//! becomes a validated task definition.
//!
//! Plain Rust with no actix or SeaORM types: time is passed in (epoch milliseconds or
//! `DateTime<Utc>`), never read from a clock, so every rule here is unit-tested directly.
//!
//! - [`error`]: the domain's error types (`ScheduleError`, `FieldError`), apart from the rules
//!   that raise them.
//! - [`task`]: the task model (`TaskSpec`, its enums) and the retry backoff rule.
//! - [`schedule`]: interval, once and cron schedules (`Schedule`), misfire coalescing.
//! - [`cron`]: cron expressions (`CronSchedule`): one model of the cron fields, the Quartz and
//!   crontab dialects, and the fire times with the daylight-saving rules.
//! - [`stop`]: stop conditions and response matching.
//! - [`notify`]: a task's notifications and the rule that decides which event an execution's
//!   end raises.
//! - [`run`]: one task's run state and the rules applied at each start, fire and attempt's end
//!   (retries, `Retry-After`, completion, failure, misfire and overlap).
//! - [`preview`]: a schedule's next fire times with their local times and daylight-saving
//!   notes, from [`Schedule`] itself.
//! - [`partition`]: which partition a task belongs to, and which member owns each partition.
//! - [`bounds`]: the range of times a task may name.
//! - [`limits`]: how large each stored field may be, set against the columns that hold it:
//!   the bounds validation checks and `[limits]` defaults to.
//! - [`validate`]: create and patch bodies to `TaskSpec` / `TaskPatch`, with field-named errors.
//!
//! Modules here import each other one way only: `error`, `bounds` and `limits` import no rule,
//! and no two modules import each other.

pub mod bounds;
pub mod cron;
pub mod error;
pub mod limits;
pub mod notify;
pub mod partition;
pub mod preview;
pub mod retention;
pub mod run;
pub mod schedule;
pub mod stop;
pub mod task;
pub mod validate;

pub use cron::CronSchedule;
pub use error::{FieldError, ScheduleError};
pub use run::{ExecutionRecord, TaskRun};
pub use schedule::Schedule;
pub use stop::StopCondition;
pub use task::*;
pub use validate::{apply_patch, parse_create, parse_patch, TaskPatch};
