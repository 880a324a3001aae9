//! What the console's templates show, built from the API's own response types
//! ([`TaskSummary`], [`TaskView`], [`LogEntry`], [`PreviewResponse`]): words and short times
//! for people, with no logic left for the templates beyond loops and conditions.

use crate::api::views::{LastExecution, LogEntry, PreviewResponse, TaskSummary, TaskView};

/// How much of a response body a log row shows when opened.
pub const BODY_SHOWN_CHARS: usize = 4096;

/// A time as the API writes it (`2026-03-29T01:00:00.000Z`), shorter: `2026-03-29 01:00:00Z`.
pub fn short_time(rfc3339: &str) -> String {
    let t = rfc3339.replacen('T', " ", 1);
    match t.strip_suffix(".000Z") {
        Some(head) => format!("{head}Z"),
        None => t,
    }
}

fn or_dash(t: Option<&str>) -> String {
    t.map(short_time).unwrap_or_else(|| "—".to_owned())
}

/// A schedule in words: `every 20 s`, `every 5 min`, `0 0 12 * * ? in Europe/Berlin`, `once`.
pub fn schedule_words(
    task_type: &str,
    interval_seconds: Option<i64>,
    cron: Option<&str>,
    timezone: Option<&str>,
) -> String {
    match (task_type, interval_seconds, cron) {
        ("interval", Some(s), _) => every(s),
        ("cron", _, Some(expr)) => format!("{expr} in {}", timezone.unwrap_or("UTC")),
        ("once", _, _) => "once".to_owned(),
        _ => task_type.to_owned(),
    }
}

fn every(s: i64) -> String {
    if s >= 3600 && s % 3600 == 0 {
        format!("every {} h", s / 3600)
    } else if s >= 60 && s % 60 == 0 {
        format!("every {} min", s / 60)
    } else {
        format!("every {s} s")
    }
}

/// A row of the task list.
pub struct TaskRow {
    pub task_id: String,
    pub short_id: String,
    pub status: String,
    pub task_type: String,
    pub endpoint: String,
    pub schedule: String,
    pub next_run: String,
    /// The latest attempt's status or error, and its outcome (`success`, `failure`, ``).
    pub last: String,
    pub last_outcome: &'static str,
}

/// The latest attempt in words: its HTTP status, else its error; `—` before the first.
pub fn last_result(l: Option<&LastExecution>) -> (String, &'static str) {
    match l {
        None => ("—".to_owned(), ""),
        Some(l) => match (l.http_status, &l.error) {
            (Some(s), _) if (200..300).contains(&s) => (s.to_string(), "success"),
            (Some(s), _) => (s.to_string(), "failure"),
            (None, Some(e)) => (e.chars().take(60).collect(), "failure"),
            (None, None) => ("—".to_owned(), ""),
        },
    }
}

impl TaskRow {
    /// A row of the list: the task as the list returns it, with its latest attempt.
    pub fn new(t: &TaskSummary, last: Option<&LastExecution>) -> Self {
        let (last, last_outcome) = last_result(last);
        Self {
            last,
            last_outcome,
            task_id: t.task_id.clone(),
            // The end of the id: a v7 id begins with its creation time, shared by neighbours.
            short_id: format!(
                "…{}",
                t.task_id
                    .get(t.task_id.len().saturating_sub(8)..)
                    .unwrap_or(&t.task_id)
            ),
            status: t.status.clone(),
            task_type: t.task_type.clone(),
            endpoint: t.http_endpoint.clone(),
            schedule: schedule_words(
                &t.task_type,
                t.interval_seconds,
                t.cron_expression.as_deref(),
                t.timezone.as_deref(),
            ),
            next_run: or_dash(t.next_run_time.as_deref()),
        }
    }
}

/// One line of a task's definition.
pub struct Line {
    pub label: &'static str,
    pub value: String,
}

/// A task's definition as label/value lines (header names only, never values).
pub fn definition(t: &TaskView) -> Vec<Line> {
    let json = |v: &serde_json::Value| serde_json::to_string(v).unwrap_or_default();
    let mut lines = vec![
        Line {
            label: "Task id",
            value: t.task_id.clone(),
        },
        Line {
            label: "User",
            value: t.user_id.to_string(),
        },
        Line {
            label: "Type",
            value: t.task_type.clone(),
        },
        Line {
            label: "Schedule",
            value: schedule_words(
                &t.task_type,
                t.interval_seconds,
                t.cron_expression.as_deref(),
                t.timezone.as_deref(),
            ),
        },
        Line {
            label: "Request",
            value: format!("{} {}", t.method, t.http_endpoint),
        },
        Line {
            label: "Header names",
            value: if t.header_names.is_empty() {
                "—".to_owned()
            } else {
                t.header_names.join(", ")
            },
        },
    ];
    if let Some(body) = &t.body {
        lines.push(Line {
            label: "Body",
            value: json(body),
        });
    }
    if let Some(start) = &t.start_time {
        lines.push(Line {
            label: "Start time",
            value: short_time(start),
        });
    }
    let more = vec![
        ("Stop condition", Some(json(&t.stop_condition))),
        ("Retry", t.retry.as_ref().map(json)),
        ("Misfire policy", Some(t.misfire_policy.clone())),
        ("Retention", t.retention.as_ref().map(json)),
        ("Notify", t.notify.as_ref().map(json)),
        ("Executions", Some(t.execution_count.to_string())),
        (
            "Consecutive failures",
            Some(t.consecutive_failures.to_string()),
        ),
        ("Missed slots", Some(t.missed_slots.to_string())),
        ("Next run", Some(or_dash(t.next_run_time.as_deref()))),
        ("Version", Some(t.version.to_string())),
        ("Created", Some(short_time(&t.created_at))),
        ("Updated", Some(short_time(&t.updated_at))),
    ];
    lines.extend(
        more.into_iter()
            .filter_map(|(label, v)| v.map(|value| Line { label, value })),
    );
    lines
}

/// A fire time of a preview, with its local time and daylight-saving note in words.
pub struct FireRow {
    pub time: String,
    pub local: String,
    pub note: String,
}

/// The preview's rows and its zone.
pub fn fires(p: &PreviewResponse) -> (Vec<FireRow>, String) {
    let rows = p
        .times
        .iter()
        .map(|t| FireRow {
            time: short_time(&t.time),
            local: t.local.replacen('T', " ", 1),
            note: match t.note {
                Some("dst_gap_skipped") => {
                    "after a skipped local time (daylight saving starts)".to_owned()
                }
                Some("dst_overlap") => {
                    "in a repeated local hour: fires once, at its second occurrence".to_owned()
                }
                Some(other) => other.to_owned(),
                None => String::new(),
            },
        })
        .collect();
    (rows, p.timezone.clone())
}

/// A row of the execution log.
pub struct LogRow {
    pub scheduled: String,
    pub recorded: String,
    pub lateness: String,
    pub attempt: i32,
    pub trigger: String,
    pub outcome: &'static str,
    pub result: String,
    pub duration: String,
    pub body: Option<String>,
    pub body_note: String,
}

impl From<&LogEntry> for LogRow {
    fn from(l: &LogEntry) -> Self {
        let outcome = match (l.attempt, l.http_status) {
            (0, _) => "skipped",
            (_, Some(s)) if (200..300).contains(&s) => "success",
            _ => "failure",
        };
        let result = match (l.http_status, &l.error) {
            (Some(s), _) => s.to_string(),
            (None, Some(e)) => e.clone(),
            (None, None) => "—".to_owned(),
        };
        let (body, body_note) = match &l.response_body {
            Some(b) if !b.is_empty() => {
                let total = b.chars().count();
                let shown: String = b.chars().take(BODY_SHOWN_CHARS).collect();
                let note = if total > BODY_SHOWN_CHARS {
                    format!("first {BODY_SHOWN_CHARS} of {total} characters")
                } else {
                    format!("{total} characters")
                };
                (Some(shown), note)
            }
            _ => (None, String::new()),
        };
        Self {
            scheduled: short_time(&l.scheduled_time),
            recorded: short_time(&l.timestamp),
            lateness: l
                .lateness_ms
                .map(|ms| format!("{ms} ms"))
                .unwrap_or_else(|| "—".to_owned()),
            attempt: l.attempt,
            trigger: l.trigger.clone(),
            outcome,
            result,
            duration: format!("{} ms", l.duration_ms),
            body,
            body_note,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_read_as_words() {
        assert_eq!(
            schedule_words("interval", Some(20), None, None),
            "every 20 s"
        );
        assert_eq!(
            schedule_words("interval", Some(300), None, None),
            "every 5 min"
        );
        assert_eq!(
            schedule_words("interval", Some(7200), None, None),
            "every 2 h"
        );
        assert_eq!(
            schedule_words("cron", None, Some("0 0 12 * * ?"), Some("Europe/Berlin")),
            "0 0 12 * * ? in Europe/Berlin"
        );
        assert_eq!(schedule_words("once", None, None, None), "once");
    }

    #[test]
    fn times_are_shortened_for_people() {
        assert_eq!(
            short_time("2026-03-29T01:00:00.000Z"),
            "2026-03-29 01:00:00Z"
        );
        assert_eq!(
            short_time("2026-03-29T01:00:00.250Z"),
            "2026-03-29 01:00:00.250Z"
        );
    }
}
