//! Cron expressions: reading them (Quartz's six or seven fields, classic crontab's five, the
//! `@` macros) and finding their fire times in a time zone.
//!
//! - [`fields`]: the one model of a cron field (names, bounds, month and weekday names) and the
//!   `cron` crate's compiled form of a whole expression.
//! - [`quartz`]: the Quartz dialect, including the forms the crate lacks (`L`, `W`, `#`,
//!   wrap-around ranges, years to 2199) as a filter on calendar dates.
//! - [`classic`]: five-field expressions translated to the crate's form.
//! - [`schedule`]: [`CronSchedule`], the fire times on a wall clock with the daylight-saving
//!   and misfire rules.

mod classic;
mod fields;
mod quartz;
mod schedule;

pub use schedule::CronSchedule;

#[cfg(test)]
mod tests;
