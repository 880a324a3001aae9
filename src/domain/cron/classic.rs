//! Classic five-field (crontab) expressions, translated to the `cron` crate's Quartz form: a
//! `0` seconds field, day-of-week renumbered (crontab 0/7 = Sunday, 1 = Monday; the crate
//! 1 = Sunday), and, when both day fields are restricted, the union of a day-of-month and a
//! day-of-week schedule (crontab's OR). Quartz's special forms are refused here as not
//! supported yet, naming them.

use super::fields::{compile, Field};
use crate::domain::error::ScheduleError;

/// Refuses the Quartz features the `cron` crate lacks, naming them, before the crate reports a
/// less helpful parse error.
fn check_supported(field: &str, kind: Field) -> Result<(), ScheduleError> {
    if field.contains('#') {
        return Err(ScheduleError::UnsupportedCron(
            "'#' (nth weekday of the month)".into(),
        ));
    }
    let upper = field.to_ascii_uppercase();
    match kind {
        Field::DayOfMonth => {
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
        Field::DayOfWeek | Field::ClassicDayOfWeek if upper.contains('L') => {
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

/// Classic crontab: minute hour day-of-month month day-of-week, firing at second 0.
pub(super) fn parse_classic(fields: &[&str]) -> Result<Vec<cron::Schedule>, ScheduleError> {
    for (field, kind) in fields.iter().zip(Field::CLASSIC) {
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
pub(super) fn translate_classic_weekdays(field: &str) -> Result<String, ScheduleError> {
    let invalid = |why: String| {
        ScheduleError::InvalidCron(format!(
            "the day-of-week field '{field}' is not valid ({why}; {})",
            Field::ClassicDayOfWeek.hint()
        ))
    };
    let kind = Field::ClassicDayOfWeek;
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
