//! A create that stops short of creating (`POST /api/v1/tasks?dry_run=true`): the checks a
//! create makes, in its order — outbound destination, schedule, first run, quota — and, instead
//! of a write, the first runs and what is legal but probably unintended. Nothing is stored,
//! reserved or sent: the quota is asked as a create asks it and its share given back at once.

use crate::domain::preview::{self, Start};
use crate::domain::{anchor_for, schedule_of, FieldError, Schedule, TaskSpec, TaskType};
use crate::net::{check_url, GuardedResolver, OutboundError};
use crate::quota::{greatest_fires_in_a_minute, Quotas};
use crate::store::Store;

use super::tasks::{first_run, TaskError};

/// How many runs a dry run lists.
pub const RUNS_SHOWN: usize = 5;

/// Something legal but probably unintended; `code` is stable, `message` says what and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub code: &'static str,
    pub message: String,
}

/// What a dry run found.
#[derive(Debug, Clone)]
pub struct DryRun {
    /// The first runs (at most [`RUNS_SHOWN`]), within the stop condition.
    pub next_run_times: Vec<i64>,
    pub warnings: Vec<Warning>,
}

/// Checks a validated (and authorised) definition as a create at `now_ms` would.
pub async fn dry_run(
    store: &Store,
    quotas: &Quotas,
    spec: &TaskSpec,
    allow_private: bool,
    now_ms: i64,
) -> Result<DryRun, TaskError> {
    let mut warnings = Vec::new();
    if let Some(w) = outbound_check(&spec.http_endpoint, allow_private).await? {
        warnings.push(w);
    }
    let anchor = anchor_for(spec, now_ms);
    let schedule = schedule_of(spec, anchor).map_err(FieldError::from)?;
    let first = first_run(&schedule, now_ms)?;
    // Asked as a create asks; the share is given back when the permit drops here.
    drop(quotas.admit_create(store, spec, &schedule, now_ms).await?);
    let start = Start {
        first_ms: first,
        since_ms: now_ms,
    };
    let fires = preview::fires(&schedule, chrono_tz::UTC, start, RUNS_SHOWN);
    let next_run_times = preview::within_stop(fires, &spec.stop_condition, 0)
        .iter()
        .map(|f| f.at_ms)
        .collect();
    warnings.extend(schedule_warnings(spec, &schedule, now_ms));
    Ok(DryRun {
        next_run_times,
        warnings,
    })
}

/// The create-time outbound check; a host that does not resolve now is a warning (a create
/// accepts it, and the client checks again when connecting). With private targets allowed the
/// check resolves nothing, so the name is resolved here for the warning alone. Both lookups are
/// asynchronous and bounded by the create-time lookup timeout.
async fn outbound_check(url: &url::Url, allow_private: bool) -> Result<Option<Warning>, TaskError> {
    let unresolvable = |e: OutboundError| Warning {
        code: "host_unresolvable",
        message: format!(
            "{e}: the task would be accepted and its calls fail until the name resolves"
        ),
    };
    match check_url(url, allow_private).await {
        Err(e @ (OutboundError::Resolve(_) | OutboundError::NoAddress(_))) => {
            Ok(Some(unresolvable(e)))
        }
        Err(e) => Err(TaskError::Invalid(e.to_string())),
        Ok(()) if allow_private => {
            let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
                return Ok(None);
            };
            let resolver = GuardedResolver {
                allow_private: true,
            };
            Ok(resolver.resolve(host, port).await.err().map(unresolvable))
        }
        Ok(()) => Ok(None),
    }
}

/// The schedule's warnings: a `start_time` already past, a cron that fires every second.
pub fn schedule_warnings(spec: &TaskSpec, schedule: &Schedule, now_ms: i64) -> Vec<Warning> {
    let mut warnings = Vec::new();
    if let Some(start) = spec.start_time.filter(|s| s.timestamp_millis() < now_ms) {
        let then = match spec.task_type {
            TaskType::Once => "the task would run at once",
            TaskType::Interval => "the first run would be the next slot after now on its grid",
            TaskType::Cron => "the first run would be the next fire time after now",
        };
        warnings.push(Warning {
            code: "start_time_in_past",
            message: format!(
                "start_time: {} is in the past; {then}",
                crate::time::to_rfc3339(start.timestamp_millis())
            ),
        });
    }
    // A cron's finest step is a second, so "more often than once a second" cannot happen; what
    // does happen by mistake is a `*` left in the seconds field (`* 5 * * * ?` for "at minute 5"),
    // which fires every second of each matching minute: 60 times in it.
    if let Schedule::Cron { cron, .. } = schedule {
        if greatest_fires_in_a_minute(schedule, now_ms) >= 60 {
            warnings.push(Warning {
                code: "fires_every_second",
                message: format!(
                    "cron_expression: '{}' fires every second of the minutes it matches (60 \
                     times a minute); write 0 in the seconds field to fire once a minute",
                    cron.expression()
                ),
            });
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::validate::parse_create;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> TaskSpec {
        parse_create(&v).unwrap()
    }

    fn codes(spec: &TaskSpec, now: i64) -> Vec<&'static str> {
        let schedule = schedule_of(spec, anchor_for(spec, now)).unwrap();
        schedule_warnings(spec, &schedule, now)
            .iter()
            .map(|w| w.code)
            .collect()
    }

    const NOW: i64 = 1_767_268_800_000; // 2026-01-01T12:00:00Z

    #[test]
    fn a_cron_with_a_star_in_its_seconds_warns_that_it_fires_every_second() {
        for expr in ["* * * * * ?", "* 5 * * * ?", "* * * * * *"] {
            let s = spec(
                json!({"user_id": 1, "type": "cron", "http_endpoint": "https://a.example/",
                "cron_expression": expr}),
            );
            assert_eq!(codes(&s, NOW), vec!["fires_every_second"], "{expr}");
        }
        for expr in ["*/2 * * * * ?", "0 * * * * ?", "* * * * *"] {
            let s = spec(
                json!({"user_id": 1, "type": "cron", "http_endpoint": "https://a.example/",
                "cron_expression": expr}),
            );
            assert!(codes(&s, NOW).is_empty(), "{expr}");
        }
    }

    #[test]
    fn a_start_time_in_the_past_warns_and_one_in_the_future_does_not() {
        for (start, want) in [
            ("2025-12-31T00:00:00Z", vec!["start_time_in_past"]),
            ("2026-02-01T00:00:00Z", vec![]),
        ] {
            for t in ["once", "interval"] {
                let s = spec(json!({"user_id": 1, "type": t, "interval_seconds": 60,
                    "http_endpoint": "https://a.example/", "start_time": start}));
                assert_eq!(codes(&s, NOW), want, "{t} {start}");
            }
        }
    }
}
