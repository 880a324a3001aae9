//! When a task runs: interval, once and cron schedules over epoch milliseconds.
//!
//! Cron expressions are parsed by the `cron` crate (Quartz-style fields, seconds first) and
//! evaluated here on a *wall clock*: the crate walks naive local times (it is handed `Utc` as a
//! zone without offsets), and this module maps each local time into the task's time zone itself.
//! That keeps the daylight-saving rules in one place:
//!
//! - a local time that does not exist (spring forward) is skipped;
//! - a local time that occurs twice (fall back) fires once, at its second occurrence (the later
//!   instant), as Quartz does;
//! - a run is never returned at or before the instant it was asked to follow.
//!
//! The next fire time after `t` is the first local match at or after the local time of the next
//! whole second after `t`, mapped as above. That is what Quartz 2.3's `getNextValidTimeAfter`
//! returns, also when `t` lies in or at the end of the first pass of a fall back (checked
//! against Quartz itself around New York, Berlin, Sydney, Lord Howe and Santiago transitions).
//! Mapping every existing local time to its later instant is strictly increasing, so a chain of
//! fire times never goes backwards, and the latest fire time at or before `t` (misfire
//! coalescing) is found by walking back from `t`'s local time.
//!
//! Five-field (classic crontab) expressions are translated to the crate's form: a `0` seconds
//! field, day-of-week renumbered (crontab 0/7 = Sunday, 1 = Monday; the crate 1 = Sunday), and,
//! when both day fields are restricted, the union of a day-of-month and a day-of-week schedule
//! (crontab's OR).

use std::str::FromStr;

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;

use super::task::TaskType;

/// Why a schedule cannot be built. `Display` names the field at fault
/// (`"cron_expression: 'L' is not supported yet"`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Not a valid cron expression; the text says why.
    #[error("cron_expression: {0}")]
    InvalidCron(String),
    /// Valid Quartz, but not implemented yet (`L`, `W`, `#`, wrap-around ranges).
    #[error("cron_expression: {0} is not supported yet")]
    UnsupportedCron(String),
    #[error(
        "timezone: '{0}' is not a known IANA time zone (for example 'Europe/Berlin' or 'UTC')"
    )]
    UnknownTimezone(String),
    /// Both day-of-month and day-of-week restricted in a 6/7-field expression (Quartz refuses).
    #[error(
        "cron_expression: day-of-month and day-of-week cannot both be restricted; \
         use '?' (or '*') in one of them"
    )]
    DayFieldsConflict,
    #[error("interval_seconds: is required for an interval task")]
    MissingInterval,
    #[error("interval_seconds: must be at least 1 and small enough to schedule")]
    InvalidInterval,
    #[error("cron_expression: is required for a cron task")]
    MissingCron,
}

impl ScheduleError {
    /// The request field the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            ScheduleError::UnknownTimezone(_) => "timezone",
            ScheduleError::MissingInterval | ScheduleError::InvalidInterval => "interval_seconds",
            ScheduleError::InvalidCron(_)
            | ScheduleError::UnsupportedCron(_)
            | ScheduleError::DayFieldsConflict
            | ScheduleError::MissingCron => "cron_expression",
        }
    }

    /// The message without the field name in front.
    pub fn message(&self) -> String {
        let full = self.to_string();
        let prefix = format!("{}: ", self.field());
        full.strip_prefix(&prefix).unwrap_or(&full).to_owned()
    }
}

/// User input echoed in an error message, cut short so a huge value cannot bloat the answer.
pub(super) fn shorten(s: &str) -> String {
    const MAX_CHARS: usize = 64;
    match s.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

/// Longest cron expression accepted; real ones are a few dozen characters.
const MAX_EXPRESSION_LEN: usize = 256;

/// Safety net on the candidate walk. Before its answer the walk passes at most about a second
/// of local times plus one daylight-saving gap or overlap (an hour of per-second matches), so a
/// real search ends long before this.
const MAX_CANDIDATES: usize = 1_000_000;

/// The earliest instant any schedule can fire: the `cron` crate's years start at 1970.
const EARLIEST_MS: i64 = -86_400_000;

/// A parsed cron expression bound to a time zone.
#[derive(Clone, Debug)]
pub struct CronSchedule {
    expression: String,
    timezone: Tz,
    /// One schedule, or two whose union is the schedule (crontab's day-of-month OR day-of-week).
    parts: Vec<cron::Schedule>,
}

impl CronSchedule {
    /// Parses a 5-, 6- or 7-field expression or an `@` macro in an IANA time zone.
    pub fn parse(expr: &str, timezone: &str) -> Result<Self, ScheduleError> {
        let parts = parse_expression(expr)?;
        let timezone = Tz::from_str(timezone.trim())
            .map_err(|_| ScheduleError::UnknownTimezone(shorten(timezone)))?;
        Ok(Self {
            expression: expr.trim().to_owned(),
            timezone,
            parts,
        })
    }

    /// The expression as given (trimmed).
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The canonical IANA name of the time zone.
    pub fn timezone_name(&self) -> &'static str {
        self.timezone.name()
    }

    /// The first fire time strictly after `after_ms`, or `None` if the expression has no more
    /// fire times (its years are over).
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        self.parts
            .iter()
            .filter_map(|part| self.part_next_after(part, after_ms))
            .min()
    }

    /// The last fire time at or before `at_ms`, if any.
    pub fn latest_at_or_before(&self, at_ms: i64) -> Option<i64> {
        self.parts
            .iter()
            .filter_map(|part| self.part_latest_at_or_before(part, at_ms))
            .max()
    }

    fn part_next_after(&self, part: &cron::Schedule, after_ms: i64) -> Option<i64> {
        let after_ms = after_ms.max(EARLIEST_MS);
        let after = DateTime::<Utc>::from_timestamp_millis(after_ms)?;
        // As Quartz does: search from the local time of the next whole second after `after`,
        // inclusive. Across a fall back that local time can jump back an hour (to the start of
        // the second pass); from inside the first pass it passes over the repeated local times
        // already seen, whose second occurrence Quartz then skips.
        let from_s = after.timestamp().checked_add(1)?;
        let from = DateTime::<Utc>::from_timestamp(from_s, 0)?;
        // The crate yields matches strictly after the time it is given, so give it one second
        // less, in local time.
        let start = from
            .with_timezone(&self.timezone)
            .naive_local()
            .checked_sub_signed(Duration::seconds(1))?;
        part.after(&Utc.from_utc_datetime(&start))
            .take(MAX_CANDIDATES)
            .filter_map(|local| self.instant_of(local.naive_utc()))
            .find(|&ms| ms > after_ms)
    }

    fn part_latest_at_or_before(&self, part: &cron::Schedule, at_ms: i64) -> Option<i64> {
        let at = DateTime::<Utc>::from_timestamp_millis(at_ms)?;
        // Walk back from `at`'s local time (inclusive); in the first pass of a fall back, from
        // the start of the overlap (exclusive), since the overlap's times fire in the second.
        let end = match self.overlap_start_if_first_pass(at) {
            Some(overlap_start) => overlap_start,
            None => at
                .with_timezone(&self.timezone)
                .naive_local()
                .checked_add_signed(Duration::seconds(1))?,
        };
        part.after(&Utc.from_utc_datetime(&end))
            .rev()
            .take(MAX_CANDIDATES)
            .filter_map(|local| self.instant_of(local.naive_utc()))
            .find(|&ms| ms <= at_ms)
    }

    /// If `t` is in the first pass of a fall back (its local time will occur again), the local
    /// time at which the repeated stretch begins.
    fn overlap_start_if_first_pass(&self, t: DateTime<Utc>) -> Option<NaiveDateTime> {
        let local = t.with_timezone(&self.timezone);
        let LocalResult::Ambiguous(earlier, later) =
            self.timezone.from_local_datetime(&local.naive_local())
        else {
            return None;
        };
        let (first, second) = (earlier.offset().fix(), later.offset().fix());
        if first == second || local.offset().fix() != first {
            return None;
        }
        // The change of offset lies in (t, later]; find its second by bisection.
        let (mut lo, mut hi) = (t.timestamp(), later.timestamp());
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            let offset = self
                .timezone
                .offset_from_utc_datetime(&DateTime::<Utc>::from_timestamp(mid, 0)?.naive_utc());
            if offset.fix() == second {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        let change = DateTime::<Utc>::from_timestamp(hi, 0)?;
        Some(change.with_timezone(&self.timezone).naive_local())
    }

    /// The instant a local wall-clock time fires at: none in a gap, the later of two in an
    /// overlap.
    fn instant_of(&self, local: NaiveDateTime) -> Option<i64> {
        match self.timezone.from_local_datetime(&local) {
            LocalResult::Single(t) => Some(t.timestamp_millis()),
            LocalResult::Ambiguous(_, later) => Some(later.timestamp_millis()),
            LocalResult::None => None,
        }
    }
}

/// A task's schedule over epoch milliseconds.
#[derive(Clone, Debug)]
pub enum Schedule {
    /// `anchor_ms + k·every_ms` for k ≥ 0.
    Interval { anchor_ms: i64, every_ms: i64 },
    /// One run.
    Once { at_ms: i64 },
    /// The cron fire times not before `not_before_ms`.
    Cron {
        cron: CronSchedule,
        not_before_ms: i64,
    },
}

impl Schedule {
    /// Builds a schedule. `anchor_ms` is the interval's anchor (the stored start time), the run
    /// time of a once task, or the earliest fire time of a cron task (`i64::MIN` for none).
    pub fn build(
        task_type: TaskType,
        interval_seconds: Option<u64>,
        cron_expression: Option<&str>,
        timezone: Option<&str>,
        anchor_ms: i64,
    ) -> Result<Self, ScheduleError> {
        match task_type {
            TaskType::Interval => {
                let seconds = interval_seconds.ok_or(ScheduleError::MissingInterval)?;
                let every_ms = i64::try_from(seconds)
                    .ok()
                    .and_then(|s| s.checked_mul(1000))
                    .filter(|&ms| ms > 0)
                    .ok_or(ScheduleError::InvalidInterval)?;
                Ok(Schedule::Interval {
                    anchor_ms,
                    every_ms,
                })
            }
            TaskType::Once => Ok(Schedule::Once { at_ms: anchor_ms }),
            TaskType::Cron => {
                let expression = cron_expression.ok_or(ScheduleError::MissingCron)?;
                let cron = CronSchedule::parse(expression, timezone.unwrap_or("UTC"))?;
                Ok(Schedule::Cron {
                    cron,
                    not_before_ms: anchor_ms,
                })
            }
        }
    }

    /// The first run of a task (re)scheduled at `now_ms`.
    ///
    /// Interval: the anchor if it is after now, else the first anchored slot after now (an
    /// anchor equal to now gives now + interval). Once: the run time, or now if it has passed.
    /// Cron: the first fire time after now and not before the start time.
    pub fn first_run(&self, now_ms: i64) -> Option<i64> {
        match self {
            Schedule::Interval { .. } => self.next_after(now_ms),
            Schedule::Once { at_ms } => Some((*at_ms).max(now_ms)),
            Schedule::Cron { .. } => self.next_after(now_ms),
        }
    }

    /// The run after slot `prev_ms`, strictly later. Interval runs stay on the anchored grid (no
    /// drift); a once task has none.
    pub fn next_after(&self, prev_ms: i64) -> Option<i64> {
        match self {
            Schedule::Interval {
                anchor_ms,
                every_ms,
            } => interval_next_after(*anchor_ms, *every_ms, prev_ms),
            Schedule::Once { .. } => None,
            Schedule::Cron {
                cron,
                not_before_ms,
            } => cron.next_after(prev_ms.max(not_before_ms.saturating_sub(1))),
        }
    }

    /// Misfire coalescing: given an overdue slot `due_ms <= now_ms`, the latest slot `s` with
    /// `due_ms <= s <= now_ms` (`due_ms` itself when no later slot has passed).
    pub fn latest_due(&self, due_ms: i64, now_ms: i64) -> i64 {
        if now_ms <= due_ms {
            return due_ms;
        }
        let latest = match self {
            Schedule::Interval {
                anchor_ms,
                every_ms,
            } => interval_latest_at_or_before(*anchor_ms, *every_ms, now_ms),
            Schedule::Once { .. } => None,
            Schedule::Cron { cron, .. } => cron.latest_at_or_before(now_ms),
        };
        latest.map_or(due_ms, |s| s.max(due_ms))
    }
}

/// The smallest `anchor + k·every > after` with k ≥ 0.
fn interval_next_after(anchor: i64, every: i64, after: i64) -> Option<i64> {
    if every <= 0 {
        return None;
    }
    if anchor > after {
        return Some(anchor);
    }
    let (anchor, every, after) = (i128::from(anchor), i128::from(every), i128::from(after));
    let k = (after - anchor) / every + 1;
    i64::try_from(anchor + k * every).ok()
}

/// The largest `anchor + k·every <= at` with k ≥ 0.
fn interval_latest_at_or_before(anchor: i64, every: i64, at: i64) -> Option<i64> {
    if every <= 0 || at < anchor {
        return None;
    }
    let (anchor, every, at) = (i128::from(anchor), i128::from(every), i128::from(at));
    i64::try_from(anchor + (at - anchor) / every * every).ok()
}

// ---------------------------------------------------------------------------------------------
// Expression parsing
// ---------------------------------------------------------------------------------------------

/// The classic macros, as 6-field expressions (the crate's day-of-week 1 = Sunday).
const MACROS: [(&str, &str); 7] = [
    ("@yearly", "0 0 0 1 1 *"),
    ("@annually", "0 0 0 1 1 *"),
    ("@monthly", "0 0 0 1 * *"),
    ("@weekly", "0 0 0 * * 1"),
    ("@daily", "0 0 0 * * *"),
    ("@midnight", "0 0 0 * * *"),
    ("@hourly", "0 0 * * * *"),
];

fn parse_expression(expr: &str) -> Result<Vec<cron::Schedule>, ScheduleError> {
    let expr = expr.trim();
    if expr.is_empty() {
        return Err(ScheduleError::InvalidCron("must not be empty".into()));
    }
    if expr.len() > MAX_EXPRESSION_LEN {
        return Err(ScheduleError::InvalidCron(format!(
            "must be at most {MAX_EXPRESSION_LEN} characters"
        )));
    }
    if expr.starts_with('@') {
        let lower = expr.to_ascii_lowercase();
        let (_, expansion) = MACROS
            .iter()
            .find(|(name, _)| *name == lower)
            .ok_or_else(|| {
                ScheduleError::InvalidCron(format!(
                    "unknown macro '{expr}' (known: @yearly, @annually, @monthly, @weekly, \
                     @daily, @midnight, @hourly)"
                ))
            })?;
        let fields: Vec<&str> = expansion.split(' ').collect();
        return Ok(vec![compile(&fields)?]);
    }
    let fields: Vec<&str> = expr.split_whitespace().collect();
    match fields.len() {
        5 => parse_classic(&fields),
        6 | 7 => parse_quartz(&fields),
        n => Err(ScheduleError::InvalidCron(format!(
            "expected 5 fields (minute hour day-of-month month day-of-week) or 6-7 fields \
             (second minute hour day-of-month month day-of-week [year]), got {n}"
        ))),
    }
}

/// What a field holds, for the checks the `cron` crate does not do.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FieldKind {
    Second,
    Minute,
    Hour,
    DayOfMonth,
    Month,
    /// Quartz numbering: 1 = Sunday … 7 = Saturday.
    QuartzDayOfWeek,
    /// Crontab numbering: 0 or 7 = Sunday, 1 = Monday … 6 = Saturday.
    ClassicDayOfWeek,
    Year,
}

impl FieldKind {
    /// What the field accepts, for error messages.
    fn hint(self) -> &'static str {
        match self {
            FieldKind::Second => "seconds are 0-59",
            FieldKind::Minute => "minutes are 0-59",
            FieldKind::Hour => "hours are 0-23",
            FieldKind::DayOfMonth => "days of the month are 1-31",
            FieldKind::Month => "months are 1-12 or JAN-DEC",
            FieldKind::QuartzDayOfWeek => "days of the week are 1-7 (1 = Sunday) or SUN-SAT",
            FieldKind::ClassicDayOfWeek => "days of the week are 0-7 (0 and 7 = Sunday) or SUN-SAT",
            FieldKind::Year => "years are 1970-2100",
        }
    }

    fn name(self) -> &'static str {
        match self {
            FieldKind::Second => "second",
            FieldKind::Minute => "minute",
            FieldKind::Hour => "hour",
            FieldKind::DayOfMonth => "day-of-month",
            FieldKind::Month => "month",
            FieldKind::QuartzDayOfWeek | FieldKind::ClassicDayOfWeek => "day-of-week",
            FieldKind::Year => "year",
        }
    }

    /// The ordinal of one range end (a number or a name), if this module can read it.
    fn ordinal(self, token: &str) -> Option<u32> {
        if let Ok(n) = token.parse::<u32>() {
            return Some(n);
        }
        let lower = token.to_ascii_lowercase();
        match self {
            FieldKind::Month => month_from_name(&lower),
            // Names mean the same day in both numberings; return the numbering of the field.
            FieldKind::QuartzDayOfWeek => weekday_from_name(&lower).map(|d| d + 1),
            FieldKind::ClassicDayOfWeek => weekday_from_name(&lower),
            _ => None,
        }
    }
}

fn month_from_name(lower: &str) -> Option<u32> {
    const MONTHS: [(&str, &str); 12] = [
        ("jan", "january"),
        ("feb", "february"),
        ("mar", "march"),
        ("apr", "april"),
        ("may", "may"),
        ("jun", "june"),
        ("jul", "july"),
        ("aug", "august"),
        ("sep", "september"),
        ("oct", "october"),
        ("nov", "november"),
        ("dec", "december"),
    ];
    MONTHS
        .iter()
        .position(|(short, long)| lower == *short || lower == *long)
        .and_then(|i| u32::try_from(i + 1).ok())
}

/// Sunday = 0 … Saturday = 6, for the names the `cron` crate accepts.
fn weekday_from_name(lower: &str) -> Option<u32> {
    let day = match lower {
        "sun" | "sunday" => 0,
        "mon" | "monday" => 1,
        "tue" | "tues" | "tuesday" => 2,
        "wed" | "wednesday" => 3,
        "thu" | "thurs" | "thursday" => 4,
        "fri" | "friday" => 5,
        "sat" | "saturday" => 6,
        _ => return None,
    };
    Some(day)
}

/// The fields of a Quartz expression, in order.
const QUARTZ_KINDS: [FieldKind; 7] = [
    FieldKind::Second,
    FieldKind::Minute,
    FieldKind::Hour,
    FieldKind::DayOfMonth,
    FieldKind::Month,
    FieldKind::QuartzDayOfWeek,
    FieldKind::Year,
];

/// Refuses the Quartz features the `cron` crate lacks, naming them, before the crate reports a
/// less helpful parse error.
fn check_supported(field: &str, kind: FieldKind) -> Result<(), ScheduleError> {
    if field.contains('#') {
        return Err(ScheduleError::UnsupportedCron(
            "'#' (nth weekday of the month)".into(),
        ));
    }
    let upper = field.to_ascii_uppercase();
    match kind {
        FieldKind::DayOfMonth => {
            if upper.contains("LW") {
                return Err(ScheduleError::UnsupportedCron(
                    "'LW' (last weekday of the month)".into(),
                ));
            }
            if upper.contains('L') {
                return Err(ScheduleError::UnsupportedCron(
                    "'L' (last day of the month)".into(),
                ));
            }
            if upper.contains('W') {
                return Err(ScheduleError::UnsupportedCron(
                    "'W' (nearest weekday)".into(),
                ));
            }
        }
        // No day name contains an L, so any L here is Quartz's "last".
        FieldKind::QuartzDayOfWeek | FieldKind::ClassicDayOfWeek if upper.contains('L') => {
            return Err(ScheduleError::UnsupportedCron(
                "'L' (last weekday of the month)".into(),
            ));
        }
        _ => {}
    }
    for item in field.split(',') {
        let range = item.split('/').next().unwrap_or(item);
        if let Some((start, end)) = range.split_once('-') {
            if let (Some(a), Some(b)) = (kind.ordinal(start.trim()), kind.ordinal(end.trim())) {
                if a > b {
                    return Err(ScheduleError::UnsupportedCron(format!(
                        "the wrap-around {} range '{item}'",
                        kind.name()
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Compiles Quartz-form fields (6 or 7, seconds first). On failure, finds the field at fault by
/// compiling it alone among neutral fields, because the crate's own message is a caret under
/// the expression and sometimes an off-by-one bound.
fn compile(fields: &[&str]) -> Result<cron::Schedule, ScheduleError> {
    if let Ok(schedule) = cron::Schedule::from_str(&fields.join(" ")) {
        return Ok(schedule);
    }
    for (i, (field, kind)) in fields.iter().zip(QUARTZ_KINDS).enumerate() {
        let mut probe = vec!["0", "0", "0", "*", "*", "?"];
        if i == 5 {
            probe[3] = "?";
        }
        match probe.get_mut(i) {
            Some(slot) => *slot = field,
            None => probe.push(field),
        }
        if cron::Schedule::from_str(&probe.join(" ")).is_err() {
            return Err(ScheduleError::InvalidCron(format!(
                "the {} field '{field}' is not valid ({})",
                kind.name(),
                kind.hint()
            )));
        }
    }
    Err(ScheduleError::InvalidCron(format!(
        "'{}' is not a valid cron expression",
        fields.join(" ")
    )))
}

/// Quartz: second minute hour day-of-month month day-of-week [year].
fn parse_quartz(fields: &[&str]) -> Result<Vec<cron::Schedule>, ScheduleError> {
    for (field, kind) in fields.iter().zip(QUARTZ_KINDS) {
        check_supported(field, kind)?;
    }
    let unrestricted = |f: &str| f == "*" || f == "?";
    if !unrestricted(fields[3]) && !unrestricted(fields[5]) {
        return Err(ScheduleError::DayFieldsConflict);
    }
    Ok(vec![compile(fields)?])
}

/// Classic crontab: minute hour day-of-month month day-of-week, firing at second 0.
fn parse_classic(fields: &[&str]) -> Result<Vec<cron::Schedule>, ScheduleError> {
    const KINDS: [FieldKind; 5] = [
        FieldKind::Minute,
        FieldKind::Hour,
        FieldKind::DayOfMonth,
        FieldKind::Month,
        FieldKind::ClassicDayOfWeek,
    ];
    for (field, kind) in fields.iter().zip(KINDS) {
        check_supported(field, kind)?;
    }
    let (minute, hour, dom, month) = (fields[0], fields[1], fields[2], fields[3]);
    let dom = if dom == "?" { "*" } else { dom };
    // Compiled first so that errors in the earlier fields are reported first.
    let by_day_of_month = compile(&["0", minute, hour, dom, month, "*"])?;
    let dow = translate_classic_weekdays(fields[4])?;
    if dow == "*" {
        return Ok(vec![by_day_of_month]);
    }
    // As in Vixie cron and cronie, a day field starting with `*` (including `*/2`) does not
    // count as a restriction; with both fields restricted, either matching day fires.
    let star = |f: &str| f.starts_with('*') || f.starts_with('?');
    if star(fields[2]) || star(fields[4]) {
        Ok(vec![compile(&["0", minute, hour, dom, month, &dow])?])
    } else {
        let by_day_of_week = compile(&["0", minute, hour, "*", month, &dow])?;
        Ok(vec![by_day_of_month, by_day_of_week])
    }
}

/// Rewrites a crontab day-of-week field (0/7 = Sunday) as an explicit list in the `cron`
/// crate's numbering (1 = Sunday), so ranges and steps keep their crontab meaning.
fn translate_classic_weekdays(field: &str) -> Result<String, ScheduleError> {
    let invalid = |why: String| {
        ScheduleError::InvalidCron(format!(
            "the day-of-week field '{field}' is not valid ({why}; {})",
            FieldKind::ClassicDayOfWeek.hint()
        ))
    };
    let kind = FieldKind::ClassicDayOfWeek;
    let mut days = [false; 7];
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .ok()
                    .filter(|s| (1..=7).contains(s))
                    .ok_or_else(|| invalid(format!("step '{step}' must be 1 to 7")))?;
                (range, step)
            }
            None => (item, 1),
        };
        let (low, high) = if range == "*" || range == "?" {
            (0, 7)
        } else if let Some((a, b)) = range.split_once('-') {
            let a = kind
                .ordinal(a)
                .ok_or_else(|| invalid(format!("'{a}' is not a day")))?;
            let b = kind
                .ordinal(b)
                .ok_or_else(|| invalid(format!("'{b}' is not a day")))?;
            (a, b)
        } else {
            let a = kind
                .ordinal(range)
                .ok_or_else(|| invalid(format!("'{range}' is not a day")))?;
            // `5/2` means from 5 to the end, as in Quartz.
            (a, if step > 1 { 7 } else { a })
        };
        if low > 7 || high > 7 {
            return Err(invalid(format!("'{range}' is out of range")));
        }
        if low > high {
            // check_supported has already refused wrap-around ranges it could read.
            return Err(invalid(format!("'{range}' runs backwards")));
        }
        let mut day = low;
        while day <= high {
            days[(day % 7) as usize] = true;
            day += step;
        }
    }
    if days.iter().all(|&d| d) {
        return Ok("*".into());
    }
    let list: Vec<String> = days
        .iter()
        .enumerate()
        .filter(|(_, &on)| on)
        .map(|(sunday_zero, _)| (sunday_zero + 1).to_string())
        .collect();
    Ok(list.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::SecondsFormat;

    fn ms(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .timestamp_millis()
    }

    fn utc(ms: i64) -> String {
        DateTime::<Utc>::from_timestamp_millis(ms)
            .unwrap()
            .to_rfc3339_opts(SecondsFormat::Secs, true)
    }

    /// The next `n` fire times after `from`, in UTC.
    fn fires(expr: &str, tz: &str, from: &str, n: usize) -> Vec<String> {
        let cron = CronSchedule::parse(expr, tz).unwrap();
        let mut t = ms(from);
        let mut out = Vec::new();
        for _ in 0..n {
            let next = cron.next_after(t).unwrap();
            assert!(next > t, "{expr}: {} is not after {}", utc(next), utc(t));
            out.push(utc(next));
            t = next;
        }
        out
    }

    fn err(expr: &str) -> ScheduleError {
        CronSchedule::parse(expr, "UTC").unwrap_err()
    }

    // --- interval -----------------------------------------------------------------------------

    fn every(anchor: i64, seconds: u64) -> Schedule {
        Schedule::build(TaskType::Interval, Some(seconds), None, None, anchor).unwrap()
    }

    #[test]
    fn an_interval_with_a_future_anchor_first_runs_at_the_anchor() {
        assert_eq!(every(10_000, 20).first_run(5_000), Some(10_000));
    }

    #[test]
    fn an_interval_anchored_now_first_runs_one_interval_later() {
        assert_eq!(every(5_000, 20).first_run(5_000), Some(25_000));
    }

    #[test]
    fn an_interval_with_a_past_anchor_first_runs_at_the_next_anchored_slot() {
        // Slots 0, 20 s, 40 s …; now = 45 s.
        assert_eq!(every(0, 20).first_run(45_000), Some(60_000));
        assert_eq!(every(0, 20).first_run(40_000), Some(60_000));
    }

    #[test]
    fn interval_runs_stay_on_the_anchored_grid() {
        let s = every(1_000, 20);
        assert_eq!(s.next_after(21_000), Some(41_000));
        // Running late does not shift the grid.
        assert_eq!(s.next_after(21_750), Some(41_000));
        assert_eq!(s.next_after(-5_000), Some(1_000));
    }

    #[test]
    fn a_zero_interval_is_rejected() {
        let e = Schedule::build(TaskType::Interval, Some(0), None, None, 0).unwrap_err();
        assert_eq!(e, ScheduleError::InvalidInterval);
        assert_eq!(e.field(), "interval_seconds");
    }

    #[test]
    fn an_interval_task_without_an_interval_is_rejected() {
        let e = Schedule::build(TaskType::Interval, None, None, None, 0).unwrap_err();
        assert_eq!(e, ScheduleError::MissingInterval);
    }

    #[test]
    fn an_interval_too_large_to_count_in_milliseconds_is_rejected() {
        let e = Schedule::build(TaskType::Interval, Some(u64::MAX), None, None, 0).unwrap_err();
        assert_eq!(e, ScheduleError::InvalidInterval);
    }

    #[test]
    fn an_interval_past_the_end_of_time_has_no_next_run() {
        let s = every(i64::MAX - 10, 1);
        assert_eq!(s.next_after(i64::MAX - 5), None);
    }

    #[test]
    fn interval_misfires_coalesce_to_the_latest_passed_slot() {
        let s = every(0, 20);
        assert_eq!(s.latest_due(20_000, 95_000), 80_000);
        assert_eq!(s.latest_due(20_000, 100_000), 100_000);
        assert_eq!(s.latest_due(20_000, 39_999), 20_000);
        assert_eq!(s.latest_due(20_000, 20_000), 20_000);
    }

    #[test]
    fn interval_misfire_coalescing_never_goes_before_the_due_slot() {
        // A due time off the grid (re-anchored since) is kept when no later slot passed.
        assert_eq!(every(0, 20).latest_due(30_000, 35_000), 30_000);
        assert_eq!(every(0, 20).latest_due(30_000, 45_000), 40_000);
    }

    // --- once ---------------------------------------------------------------------------------

    #[test]
    fn a_once_task_runs_at_its_time_or_at_once_if_it_has_passed() {
        let s = Schedule::build(TaskType::Once, None, None, None, 50_000).unwrap();
        assert_eq!(s.first_run(10_000), Some(50_000));
        assert_eq!(s.first_run(70_000), Some(70_000));
        assert_eq!(s.next_after(50_000), None);
        assert_eq!(s.latest_due(50_000, 90_000), 50_000);
    }

    // --- cron schedules -----------------------------------------------------------------------

    #[test]
    fn a_cron_task_without_an_expression_is_rejected() {
        let e = Schedule::build(TaskType::Cron, None, None, None, 0).unwrap_err();
        assert_eq!(e, ScheduleError::MissingCron);
    }

    #[test]
    fn a_cron_schedule_defaults_to_utc() {
        let s =
            Schedule::build(TaskType::Cron, None, Some("0 0 12 * * ?"), None, i64::MIN).unwrap();
        let first = s.first_run(ms("2025-04-22T10:00:00Z")).unwrap();
        assert_eq!(utc(first), "2025-04-22T12:00:00Z");
        assert_eq!(utc(s.next_after(first).unwrap()), "2025-04-23T12:00:00Z");
    }

    #[test]
    fn a_cron_schedule_does_not_fire_before_its_start_time() {
        let s = Schedule::build(
            TaskType::Cron,
            None,
            Some("0 0 12 * * ?"),
            Some("UTC"),
            ms("2025-05-01T12:00:00Z"),
        )
        .unwrap();
        assert_eq!(
            utc(s.first_run(ms("2025-04-22T10:00:00Z")).unwrap()),
            "2025-05-01T12:00:00Z"
        );
        assert_eq!(
            utc(s.next_after(ms("2025-04-25T12:00:00Z")).unwrap()),
            "2025-05-01T12:00:00Z"
        );
    }

    #[test]
    fn a_cron_fire_time_equal_to_now_is_not_the_first_run() {
        let s = Schedule::build(TaskType::Cron, None, Some("*/10 * * * * *"), None, 0).unwrap();
        let now = ms("2025-04-22T10:00:10Z");
        assert_eq!(utc(s.first_run(now).unwrap()), "2025-04-22T10:00:20Z");
        assert_eq!(utc(s.first_run(now + 1).unwrap()), "2025-04-22T10:00:20Z");
    }

    #[test]
    fn quartz_expressions_fire_as_quartz_does() {
        assert_eq!(
            fires("0 0/5 14 * * ?", "UTC", "2025-04-22T14:52:00Z", 2),
            ["2025-04-22T14:55:00Z", "2025-04-23T14:00:00Z"]
        );
        assert_eq!(
            fires("0 15 10 ? * MON-FRI", "UTC", "2025-04-25T11:00:00Z", 2),
            ["2025-04-28T10:15:00Z", "2025-04-29T10:15:00Z"]
        );
        // Day-of-week 1 = Sunday, 7 = Saturday.
        assert_eq!(
            fires("0 0 8 ? * 1", "UTC", "2025-04-22T00:00:00Z", 1),
            ["2025-04-27T08:00:00Z"]
        );
        assert_eq!(
            fires("0 0 8 ? * 7", "UTC", "2025-04-22T00:00:00Z", 1),
            ["2025-04-26T08:00:00Z"]
        );
        assert_eq!(
            fires("10-40/10 * * * * ?", "UTC", "2025-04-22T00:00:00Z", 4),
            [
                "2025-04-22T00:00:10Z",
                "2025-04-22T00:00:20Z",
                "2025-04-22T00:00:30Z",
                "2025-04-22T00:00:40Z"
            ]
        );
    }

    #[test]
    fn a_seven_field_expression_honours_its_year() {
        assert_eq!(
            fires("0 0 0 1 1 ? 2030", "UTC", "2025-04-22T00:00:00Z", 1),
            ["2030-01-01T00:00:00Z"]
        );
        let last = CronSchedule::parse("0 0 0 1 1 ? 2030", "UTC").unwrap();
        assert_eq!(last.next_after(ms("2030-01-01T00:00:00Z")), None);
    }

    #[test]
    fn stars_in_both_day_fields_mean_every_day() {
        assert_eq!(
            fires("0 30 6 * * *", "UTC", "2025-04-22T07:00:00Z", 2),
            ["2025-04-23T06:30:00Z", "2025-04-24T06:30:00Z"]
        );
    }

    #[test]
    fn restricting_both_day_fields_in_a_quartz_expression_is_rejected() {
        assert_eq!(err("0 0 12 1 * MON"), ScheduleError::DayFieldsConflict);
        assert_eq!(err("0 0 12 1-5 * 2"), ScheduleError::DayFieldsConflict);
        assert!(err("0 0 12 1 * MON")
            .to_string()
            .starts_with("cron_expression: "));
        assert!(CronSchedule::parse("0 0 12 1 * ?", "UTC").is_ok());
        assert!(CronSchedule::parse("0 0 12 ? * MON", "UTC").is_ok());
        assert!(CronSchedule::parse("0 0 12 * * MON", "UTC").is_ok());
    }

    #[test]
    fn last_day_weekday_and_nth_weekday_are_named_as_not_supported_yet() {
        for (expr, named) in [
            ("0 0 12 L * ?", "'L'"),
            ("0 0 12 L-3 * ?", "'L'"),
            ("0 0 12 LW * ?", "'LW'"),
            ("0 0 12 15W * ?", "'W'"),
            ("0 0 12 ? * 6L", "'L'"),
            ("0 0 12 ? * 6#3", "'#'"),
            ("0 12 * * 5#2", "'#'"),
            ("0 12 L * *", "'L'"),
        ] {
            let e = err(expr);
            assert!(
                matches!(e, ScheduleError::UnsupportedCron(_)),
                "{expr}: {e:?}"
            );
            let text = e.to_string();
            assert!(text.starts_with("cron_expression: "), "{text}");
            assert!(text.contains(named), "{expr}: {text}");
            assert!(text.ends_with("is not supported yet"), "{text}");
        }
    }

    #[test]
    fn wrap_around_ranges_are_named_as_not_supported_yet() {
        for (expr, range) in [
            ("0 0 22-2 * * ?", "22-2"),
            ("0 0 12 ? * FRI-MON", "FRI-MON"),
            ("0 0 12 1 NOV-FEB ?", "NOV-FEB"),
            ("0 50-10/5 * * * ?", "50-10/5"),
            ("0 22-2 * * *", "22-2"),
            ("0 12 * * 5-1", "5-1"),
        ] {
            let e = err(expr);
            assert!(
                matches!(e, ScheduleError::UnsupportedCron(_)),
                "{expr}: {e:?}"
            );
            assert!(e.to_string().contains(range), "{expr}: {e}");
        }
    }

    #[test]
    fn month_and_day_names_with_l_or_w_are_not_mistaken_for_quartz_specials() {
        assert!(CronSchedule::parse("0 0 12 1 JUL ?", "UTC").is_ok());
        assert!(CronSchedule::parse("0 0 12 1 APR-JUL ?", "UTC").is_ok());
        assert!(CronSchedule::parse("0 0 12 ? * WED", "UTC").is_ok());
        assert!(CronSchedule::parse("0 12 * jul wed", "UTC").is_ok());
    }

    #[test]
    fn malformed_expressions_are_rejected_naming_the_field() {
        for expr in [
            "",
            "   ",
            "* * * *",
            "0 0 0 0 0 0 0 0",
            "61 * * * * ?",
            "0 0 25 * * ?",
            "0 0 12 ? * 0",
            "every day",
            "@reboot",
            "@fortnightly",
            "0 0 12 ? * MON/2",
            "0 0 12 * * ? 1969",
            "a b c d e",
        ] {
            let e = CronSchedule::parse(expr, "UTC").unwrap_err();
            assert_eq!(e.field(), "cron_expression", "{expr}: {e}");
            assert!(!e.message().is_empty());
        }
        let long = "0 ".repeat(200);
        assert_eq!(
            CronSchedule::parse(&long, "UTC").unwrap_err().field(),
            "cron_expression"
        );
    }

    #[test]
    fn an_invalid_field_is_named_with_what_it_accepts() {
        let message = |expr: &str| err(expr).to_string();
        assert_eq!(
            message("0 0 25 * * ?"),
            "cron_expression: the hour field '25' is not valid (hours are 0-23)"
        );
        assert!(message("61 * * * * ?").contains("second field '61'"));
        assert!(message("0 0 12 ? * 0").contains("day-of-week field '0'"));
        assert!(message("0 0 12 ? * 0").contains("1 = Sunday"));
        assert!(message("0 0 12 1 13 ?").contains("month field '13'"));
        assert!(message("0 0 12 * * ? 2150").contains("year field '2150'"));
        assert!(message("0 0 12 ? * MON/2").contains("day-of-week field 'MON/2'"));
        assert!(message("60 0 * * *").contains("minute field '60'"));
        assert!(message("0 24 * * *").contains("hour field '24'"));
        assert!(message("0 8 * * 8").contains("day-of-week field '8'"));
        assert!(message("a b c d e").contains("minute field 'a'"));
    }

    #[test]
    fn an_unknown_time_zone_is_rejected_naming_timezone() {
        let e = CronSchedule::parse("0 0 12 * * ?", "Mars/Olympus_Mons").unwrap_err();
        assert_eq!(
            e,
            ScheduleError::UnknownTimezone("Mars/Olympus_Mons".into())
        );
        assert_eq!(e.field(), "timezone");
        assert!(e.to_string().starts_with("timezone: "));
    }

    #[test]
    fn macros_have_their_classic_meanings() {
        let from = "2025-04-22T10:00:00Z";
        assert_eq!(fires("@daily", "UTC", from, 1), ["2025-04-23T00:00:00Z"]);
        assert_eq!(fires("@midnight", "UTC", from, 1), ["2025-04-23T00:00:00Z"]);
        assert_eq!(fires("@hourly", "UTC", from, 1), ["2025-04-22T11:00:00Z"]);
        // 2025-04-27 is a Sunday.
        assert_eq!(fires("@weekly", "UTC", from, 1), ["2025-04-27T00:00:00Z"]);
        assert_eq!(fires("@monthly", "UTC", from, 1), ["2025-05-01T00:00:00Z"]);
        assert_eq!(fires("@yearly", "UTC", from, 1), ["2026-01-01T00:00:00Z"]);
        assert_eq!(fires("@annually", "UTC", from, 1), ["2026-01-01T00:00:00Z"]);
        assert_eq!(fires("@DAILY", "UTC", from, 1), ["2025-04-23T00:00:00Z"]);
    }

    #[test]
    fn a_daily_macro_fires_at_local_midnight() {
        assert_eq!(
            fires("@daily", "Europe/Berlin", "2026-03-28T12:00:00Z", 2),
            ["2026-03-28T23:00:00Z", "2026-03-29T22:00:00Z"]
        );
    }

    // --- five-field crontab -------------------------------------------------------------------

    #[test]
    fn a_five_field_expression_fires_at_second_zero() {
        assert_eq!(
            fires("*/15 * * * *", "UTC", "2025-04-22T10:07:31Z", 2),
            ["2025-04-22T10:15:00Z", "2025-04-22T10:30:00Z"]
        );
    }

    #[test]
    fn five_field_weekdays_one_to_five_are_monday_to_friday() {
        // 2026-03-06 is a Friday.
        assert_eq!(
            fires("0 9 * * 1-5", "UTC", "2026-03-06T10:00:00Z", 3),
            [
                "2026-03-09T09:00:00Z",
                "2026-03-10T09:00:00Z",
                "2026-03-11T09:00:00Z"
            ]
        );
    }

    #[test]
    fn five_field_weekdays_in_new_york_stay_at_nine_local_across_spring_forward() {
        assert_eq!(
            fires("0 9 * * 1-5", "America/New_York", "2026-03-06T12:00:00Z", 3),
            [
                "2026-03-06T14:00:00Z",
                "2026-03-09T13:00:00Z",
                "2026-03-10T13:00:00Z"
            ]
        );
    }

    #[test]
    fn five_field_sunday_is_zero_or_seven() {
        // 2025-04-27 is a Sunday.
        for expr in ["0 8 * * 0", "0 8 * * 7", "0 8 * * sun", "0 8 * * SUN"] {
            assert_eq!(
                fires(expr, "UTC", "2025-04-22T00:00:00Z", 1),
                ["2025-04-27T08:00:00Z"],
                "{expr}"
            );
        }
        // 0-6 and */1 are every day.
        for expr in ["0 8 * * 0-6", "0 8 * * */1", "0 8 * * 1-7"] {
            assert_eq!(
                fires(expr, "UTC", "2025-04-22T00:00:00Z", 2),
                ["2025-04-22T08:00:00Z", "2025-04-23T08:00:00Z"],
                "{expr}"
            );
        }
    }

    #[test]
    fn five_field_weekday_steps_keep_their_crontab_meaning() {
        // */2 = Sunday, Tuesday, Thursday, Saturday. 2025-04-22 is a Tuesday.
        assert_eq!(
            fires("0 8 * * */2", "UTC", "2025-04-21T12:00:00Z", 4),
            [
                "2025-04-22T08:00:00Z",
                "2025-04-24T08:00:00Z",
                "2025-04-26T08:00:00Z",
                "2025-04-27T08:00:00Z"
            ]
        );
        assert_eq!(translate_classic_weekdays("1-5/2").unwrap(), "2,4,6");
        assert_eq!(translate_classic_weekdays("5-7").unwrap(), "1,6,7");
        assert_eq!(translate_classic_weekdays("0,7").unwrap(), "1");
        assert_eq!(translate_classic_weekdays("mon-fri").unwrap(), "2,3,4,5,6");
        assert_eq!(translate_classic_weekdays("*").unwrap(), "*");
    }

    #[test]
    fn five_field_weekday_out_of_range_is_rejected() {
        assert_eq!(err("0 8 * * 8").field(), "cron_expression");
        assert_eq!(err("0 8 * * 1/0").field(), "cron_expression");
        assert_eq!(err("0 8 * * funday").field(), "cron_expression");
    }

    #[test]
    fn five_field_restricted_day_fields_combine_with_or() {
        // The 1st of the month or any Sunday. 2026-02-01 is a Sunday, 2026-03-01 too.
        assert_eq!(
            fires("0 0 1 * 0", "UTC", "2026-01-20T00:00:00Z", 6),
            [
                "2026-01-25T00:00:00Z",
                "2026-02-01T00:00:00Z",
                "2026-02-08T00:00:00Z",
                "2026-02-15T00:00:00Z",
                "2026-02-22T00:00:00Z",
                "2026-03-01T00:00:00Z"
            ]
        );
        assert_eq!(
            fires("0 0 15 * 1", "UTC", "2026-04-12T00:00:00Z", 3),
            [
                "2026-04-13T00:00:00Z",
                "2026-04-15T00:00:00Z",
                "2026-04-20T00:00:00Z"
            ]
        );
    }

    #[test]
    fn five_field_starred_day_fields_combine_with_and_as_in_vixie_cron() {
        // */2 in day-of-month is a star: odd days that are Mondays. 2026-04-13 is a Monday (odd).
        assert_eq!(
            fires("0 0 */2 * 1", "UTC", "2026-04-01T00:00:00Z", 2),
            ["2026-04-13T00:00:00Z", "2026-04-27T00:00:00Z"]
        );
    }

    // --- daylight saving ----------------------------------------------------------------------

    #[test]
    fn a_local_time_skipped_by_spring_forward_does_not_fire_that_day_in_new_york() {
        // 2026-03-08 02:00 EST jumps to 03:00 EDT: 02:30 does not exist that day.
        assert_eq!(
            fires(
                "0 30 2 * * ?",
                "America/New_York",
                "2026-03-06T12:00:00Z",
                3
            ),
            [
                "2026-03-07T07:30:00Z",
                "2026-03-09T06:30:00Z",
                "2026-03-10T06:30:00Z"
            ]
        );
    }

    #[test]
    fn a_local_time_skipped_by_spring_forward_does_not_fire_that_day_in_berlin() {
        // 2026-03-29 02:00 CET jumps to 03:00 CEST.
        assert_eq!(
            fires("0 30 2 * * ?", "Europe/Berlin", "2026-03-27T12:00:00Z", 3),
            [
                "2026-03-28T01:30:00Z",
                "2026-03-30T00:30:00Z",
                "2026-03-31T00:30:00Z"
            ]
        );
    }

    #[test]
    fn a_local_time_repeated_by_fall_back_fires_once_at_its_second_occurrence_in_new_york() {
        // 2026-11-01 02:00 EDT falls back to 01:00 EST: 01:30 happens at 05:30Z and 06:30Z.
        assert_eq!(
            fires(
                "0 30 1 * * ?",
                "America/New_York",
                "2026-10-31T12:00:00Z",
                3
            ),
            [
                "2026-11-01T06:30:00Z",
                "2026-11-02T06:30:00Z",
                "2026-11-03T06:30:00Z"
            ]
        );
        // Asked from inside the first pass, it still waits for the second.
        assert_eq!(
            fires(
                "0 30 1 * * ?",
                "America/New_York",
                "2026-11-01T05:20:00Z",
                1
            ),
            ["2026-11-01T06:30:00Z"]
        );
        // Asked after 01:30 of the first pass, Quartz counts 01:30 as past: tomorrow.
        assert_eq!(
            fires(
                "0 30 1 * * ?",
                "America/New_York",
                "2026-11-01T05:45:00Z",
                1
            ),
            ["2026-11-02T06:30:00Z"]
        );
    }

    #[test]
    fn a_local_time_repeated_by_fall_back_fires_once_at_its_second_occurrence_in_berlin() {
        // 2026-10-25 03:00 CEST falls back to 02:00 CET: 02:30 happens at 00:30Z and 01:30Z.
        assert_eq!(
            fires("0 30 2 * * ?", "Europe/Berlin", "2026-10-24T12:00:00Z", 2),
            ["2026-10-25T01:30:00Z", "2026-10-26T01:30:00Z"]
        );
        // 01:30 is not repeated and keeps its single instant.
        assert_eq!(
            fires("0 30 1 * * ?", "Europe/Berlin", "2026-10-24T12:00:00Z", 2),
            ["2026-10-24T23:30:00Z", "2026-10-26T00:30:00Z"]
        );
    }

    #[test]
    fn every_fifteen_minutes_across_fall_back_never_goes_backwards_or_repeats() {
        // Local 00:45 EDT, then 01:00 … 01:45 only in their EST pass, then 02:00 EST.
        assert_eq!(
            fires(
                "0 */15 * * * ?",
                "America/New_York",
                "2026-11-01T04:40:00Z",
                7
            ),
            [
                "2026-11-01T04:45:00Z",
                "2026-11-01T06:00:00Z",
                "2026-11-01T06:15:00Z",
                "2026-11-01T06:30:00Z",
                "2026-11-01T06:45:00Z",
                "2026-11-01T07:00:00Z",
                "2026-11-01T07:15:00Z"
            ]
        );
        // From inside the first pass (01:10 EDT) the next run is the next local time in the
        // second pass, as Quartz has it: 01:15 EST.
        assert_eq!(
            fires(
                "0 */15 * * * ?",
                "America/New_York",
                "2026-11-01T05:10:00Z",
                2
            ),
            ["2026-11-01T06:15:00Z", "2026-11-01T06:30:00Z"]
        );
    }

    #[test]
    fn every_fifteen_minutes_across_spring_forward_skips_the_missing_hour() {
        assert_eq!(
            fires("0 */15 * * * ?", "Europe/Berlin", "2026-03-29T00:40:00Z", 3),
            [
                "2026-03-29T00:45:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-29T01:15:00Z"
            ]
        );
        // Local 01:45 CET is 00:45Z; 03:00 CEST is 01:00Z. No run is lost or doubled in UTC.
        let berlin = CronSchedule::parse("0 */15 * * * ?", "Europe/Berlin").unwrap();
        assert_eq!(
            berlin.next_after(ms("2026-03-29T00:45:00Z")),
            Some(ms("2026-03-29T01:00:00Z"))
        );
    }

    #[test]
    fn from_the_last_second_of_the_first_pass_the_repeated_hour_is_still_to_come() {
        // 00:59:59Z is 02:59:59 CEST; one second later it is 02:00:00 CET, as in Quartz.
        assert_eq!(
            fires("0 30 2 * * ?", "Europe/Berlin", "2026-10-25T00:59:59Z", 2),
            ["2026-10-25T01:30:00Z", "2026-10-26T01:30:00Z"]
        );
        assert_eq!(
            fires("0 0 * * * ?", "Europe/Berlin", "2026-10-25T00:59:59Z", 2),
            ["2026-10-25T01:00:00Z", "2026-10-25T02:00:00Z"]
        );
    }

    #[test]
    fn every_fifteen_minutes_across_fall_back_in_berlin() {
        assert_eq!(
            fires("0 */15 * * * ?", "Europe/Berlin", "2026-10-24T23:40:00Z", 3),
            [
                "2026-10-24T23:45:00Z",
                "2026-10-25T01:00:00Z",
                "2026-10-25T01:15:00Z"
            ]
        );
    }

    #[test]
    fn a_five_field_daily_schedule_across_both_transitions_fires_once_a_day() {
        let spring = fires("30 2 * * *", "America/New_York", "2026-03-07T00:00:00Z", 3);
        assert_eq!(
            spring,
            [
                "2026-03-07T07:30:00Z",
                "2026-03-09T06:30:00Z",
                "2026-03-10T06:30:00Z"
            ]
        );
        let fall = fires("30 1 * * *", "America/New_York", "2026-10-31T00:00:00Z", 3);
        assert_eq!(
            fall,
            [
                "2026-10-31T05:30:00Z",
                "2026-11-01T06:30:00Z",
                "2026-11-02T06:30:00Z"
            ]
        );
    }

    #[test]
    fn cron_times_strictly_increase_through_a_whole_year_of_transitions() {
        for tz in ["America/New_York", "Europe/Berlin", "Australia/Lord_Howe"] {
            let cron = CronSchedule::parse("0 */20 * * * ?", tz).unwrap();
            let mut t = ms("2026-01-01T00:00:00Z");
            let end = ms("2027-01-01T00:00:00Z");
            while t < end {
                let next = cron.next_after(t).unwrap();
                assert!(next > t, "{tz}: {} after {}", utc(next), utc(t));
                assert!(next - t <= 3 * 3_600_000, "{tz}: gap after {}", utc(t));
                t = next;
            }
        }
    }

    // --- cron misfires ------------------------------------------------------------------------

    #[test]
    fn cron_misfires_coalesce_to_the_latest_passed_fire_time() {
        let s = Schedule::build(TaskType::Cron, None, Some("0 0 * * * ?"), None, 0).unwrap();
        let due = ms("2025-04-22T10:00:00Z");
        assert_eq!(
            utc(s.latest_due(due, ms("2025-04-22T17:59:59Z"))),
            "2025-04-22T17:00:00Z"
        );
        assert_eq!(
            utc(s.latest_due(due, ms("2025-04-22T18:00:00Z"))),
            "2025-04-22T18:00:00Z"
        );
        assert_eq!(s.latest_due(due, ms("2025-04-22T10:30:00Z")), due);
    }

    #[test]
    fn per_second_schedules_cross_both_transitions_second_by_second() {
        let cron = CronSchedule::parse("* * * * * ?", "America/New_York").unwrap();
        // Spring forward: 01:59:59 EST is followed by 03:00:00 EDT, one second later in UTC.
        assert_eq!(
            cron.next_after(ms("2026-03-08T06:59:59Z")),
            Some(ms("2026-03-08T07:00:00Z"))
        );
        // Fall back: the last second of the first pass before 01:00 local is 00:59:59 EDT;
        // 01:00:00 … 01:59:59 fire in the EST pass.
        assert_eq!(
            cron.next_after(ms("2026-11-01T04:59:59Z")),
            Some(ms("2026-11-01T06:00:00Z"))
        );
        assert_eq!(
            cron.next_after(ms("2026-11-01T05:30:00.500Z")),
            Some(ms("2026-11-01T06:30:01Z"))
        );
        assert_eq!(
            cron.latest_at_or_before(ms("2026-11-01T05:30:00Z")),
            Some(ms("2026-11-01T04:59:59Z"))
        );
        assert_eq!(
            cron.latest_at_or_before(ms("2026-11-01T06:00:00.999Z")),
            Some(ms("2026-11-01T06:00:00Z"))
        );
    }

    #[test]
    fn cron_misfire_coalescing_agrees_with_walking_forward_across_fall_back() {
        let s = Schedule::build(
            TaskType::Cron,
            None,
            Some("0 */15 * * * ?"),
            Some("America/New_York"),
            0,
        )
        .unwrap();
        let due = ms("2026-11-01T04:00:00Z");
        let mut now = due;
        while now < ms("2026-11-01T08:00:00Z") {
            let mut walked = due;
            while let Some(next) = s.next_after(walked).filter(|&n| n <= now) {
                walked = next;
            }
            assert_eq!(s.latest_due(due, now), walked, "now {}", utc(now));
            now += 7 * 60_000;
        }
    }

    #[test]
    fn five_field_or_schedules_coalesce_over_both_halves() {
        let s = Schedule::build(TaskType::Cron, None, Some("0 0 1 * 0"), None, 0).unwrap();
        let due = ms("2026-01-25T00:00:00Z");
        assert_eq!(
            utc(s.latest_due(due, ms("2026-02-03T00:00:00Z"))),
            "2026-02-01T00:00:00Z"
        );
    }

    #[test]
    fn an_expression_that_never_fires_has_no_next_run() {
        let cron = CronSchedule::parse("0 0 0 30 2 ?", "UTC").unwrap();
        assert_eq!(cron.next_after(0), None);
    }

    #[test]
    fn extreme_instants_do_not_panic() {
        let cron = CronSchedule::parse("0 0 12 * * ?", "Europe/Berlin").unwrap();
        assert_eq!(
            utc(cron.next_after(i64::MIN).unwrap()),
            "1970-01-01T11:00:00Z"
        );
        assert_eq!(cron.next_after(i64::MAX), None);
        assert_eq!(cron.latest_at_or_before(i64::MIN), None);
        assert_eq!(cron.latest_at_or_before(i64::MAX), None);
        let s = Schedule::build(TaskType::Cron, None, Some("@daily"), None, i64::MIN).unwrap();
        assert!(s.first_run(0).is_some());
        assert_eq!(s.latest_due(i64::MIN, i64::MAX), i64::MIN);
    }
}
