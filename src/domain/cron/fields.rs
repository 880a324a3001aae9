//! The fields of a cron expression, modelled once for every reader of them: what each field is
//! called in an error, what it accepts, how its month and weekday names read in Quartz and in
//! the `cron` crate, and the crate's compiled form of a whole Quartz-form expression.
//!
//! Quartz reads only three-letter names (`JAN`, `MON`) and numbers its weekdays from Sunday = 1;
//! the crate, and so the five-field translation, also reads the long names (`january`,
//! `tuesday`, `tues`); crontab numbers its weekdays from Sunday = 0 (or 7). One type holds the
//! field, the readings stay apart as methods.

use std::str::FromStr;

use crate::domain::error::ScheduleError;

/// The first and last years a schedule can fire in.
pub(super) const FIRST_YEAR: i32 = 1970;
pub(super) const LAST_YEAR: i32 = 2199;

/// One field of a cron expression.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Field {
    Second,
    Minute,
    Hour,
    DayOfMonth,
    Month,
    /// Quartz numbering: 1 = Sunday … 7 = Saturday.
    DayOfWeek,
    /// Crontab numbering: 0 or 7 = Sunday, 1 = Monday … 6 = Saturday.
    ClassicDayOfWeek,
    Year,
}

/// Month names: the three letters Quartz reads, and the long name the crate reads too.
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

/// Weekday names from Sunday: the three letters Quartz reads, and the other spellings the
/// crate reads too.
const WEEKDAYS: [(&str, &[&str]); 7] = [
    ("sun", &["sunday"]),
    ("mon", &["monday"]),
    ("tue", &["tues", "tuesday"]),
    ("wed", &["wednesday"]),
    ("thu", &["thurs", "thursday"]),
    ("fri", &["friday"]),
    ("sat", &["saturday"]),
];

impl Field {
    /// The fields of a Quartz expression, in order.
    pub const QUARTZ: [Field; 7] = [
        Field::Second,
        Field::Minute,
        Field::Hour,
        Field::DayOfMonth,
        Field::Month,
        Field::DayOfWeek,
        Field::Year,
    ];

    /// The fields of a classic crontab expression, in order.
    pub const CLASSIC: [Field; 5] = [
        Field::Minute,
        Field::Hour,
        Field::DayOfMonth,
        Field::Month,
        Field::ClassicDayOfWeek,
    ];

    /// The field's name in error messages.
    pub fn name(self) -> &'static str {
        match self {
            Field::Second => "second",
            Field::Minute => "minute",
            Field::Hour => "hour",
            Field::DayOfMonth => "day-of-month",
            Field::Month => "month",
            Field::DayOfWeek | Field::ClassicDayOfWeek => "day-of-week",
            Field::Year => "year",
        }
    }

    /// What the field accepts, for error messages.
    pub fn hint(self) -> &'static str {
        match self {
            Field::Second => "seconds are 0-59",
            Field::Minute => "minutes are 0-59",
            Field::Hour => "hours are 0-23",
            Field::DayOfMonth => "days of the month are 1-31",
            Field::Month => "months are 1-12 or JAN-DEC",
            Field::DayOfWeek => "days of the week are 1-7 (1 = Sunday) or SUN-SAT",
            Field::ClassicDayOfWeek => "days of the week are 0-7 (0 and 7 = Sunday) or SUN-SAT",
            Field::Year => "years are 1970-2199",
        }
    }

    /// The smallest and largest value the field holds.
    pub fn bounds(self) -> (u32, u32) {
        match self {
            Field::Second | Field::Minute => (0, 59),
            Field::Hour => (0, 23),
            Field::DayOfMonth => (1, 31),
            Field::Month => (1, 12),
            Field::DayOfWeek => (1, 7),
            Field::ClassicDayOfWeek => (0, 7),
            Field::Year => (FIRST_YEAR as u32, LAST_YEAR as u32),
        }
    }

    /// The modulus of a wrap-around range (Quartz's `max` in `addToSet`); `None` where a range
    /// cannot wrap (years, and five-field expressions, which refuse it as not supported yet).
    pub fn wrap(self) -> Option<u32> {
        match self {
            Field::Second | Field::Minute => Some(60),
            Field::Hour => Some(24),
            Field::DayOfMonth => Some(31),
            Field::Month => Some(12),
            Field::DayOfWeek => Some(7),
            Field::ClassicDayOfWeek | Field::Year => None,
        }
    }

    /// One value as Quartz reads it: a number, or a three-letter month or weekday name in the
    /// field's numbering; the flag says it was a name.
    pub fn quartz_value(self, token: &str) -> Option<(u32, bool)> {
        if let Ok(n) = token.parse::<u32>() {
            return Some((n, false));
        }
        let lower = token.to_ascii_lowercase();
        let index = match self {
            Field::Month => MONTHS.iter().position(|(short, _)| *short == lower),
            Field::DayOfWeek => WEEKDAYS.iter().position(|(short, _)| *short == lower),
            _ => None,
        }?;
        Some((index as u32 + 1, true))
    }

    /// The ordinal of one range end (a number or any name the crate reads), in the field's
    /// numbering.
    pub fn ordinal(self, token: &str) -> Option<u32> {
        if let Ok(n) = token.parse::<u32>() {
            return Some(n);
        }
        let lower = token.to_ascii_lowercase();
        match self {
            Field::Month => month_from_name(&lower),
            // Names mean the same day in both numberings; return the numbering of the field.
            Field::DayOfWeek => weekday_from_name(&lower).map(|d| d + 1),
            Field::ClassicDayOfWeek => weekday_from_name(&lower),
            _ => None,
        }
    }
}

fn month_from_name(lower: &str) -> Option<u32> {
    MONTHS
        .iter()
        .position(|(short, long)| lower == *short || lower == *long)
        .and_then(|i| u32::try_from(i + 1).ok())
}

/// Sunday = 0 … Saturday = 6, for the names the `cron` crate accepts.
fn weekday_from_name(lower: &str) -> Option<u32> {
    WEEKDAYS
        .iter()
        .position(|(short, others)| lower == *short || others.contains(&lower))
        .and_then(|i| u32::try_from(i).ok())
}

/// Compiles Quartz-form fields (6 or 7, seconds first). On failure, finds the field at fault by
/// compiling it alone among neutral fields, because the crate's own message is a caret under
/// the expression and sometimes an off-by-one bound.
pub(super) fn compile(fields: &[&str]) -> Result<cron::Schedule, ScheduleError> {
    if let Ok(schedule) = cron::Schedule::from_str(&fields.join(" ")) {
        return Ok(schedule);
    }
    for (i, (field, kind)) in fields.iter().zip(Field::QUARTZ).enumerate() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quartz_reads_three_letter_names_in_either_case_and_the_crate_long_ones_too() {
        assert_eq!(Field::Month.quartz_value("Jan"), Some((1, true)));
        assert_eq!(Field::DayOfWeek.quartz_value("sat"), Some((7, true)));
        assert_eq!(Field::DayOfWeek.quartz_value("7"), Some((7, false)));
        assert_eq!(Field::Month.quartz_value("january"), None);
        assert_eq!(Field::DayOfWeek.quartz_value("tues"), None);
        assert_eq!(Field::Hour.quartz_value("mon"), None);
        assert_eq!(Field::Month.ordinal("JANUARY"), Some(1));
        assert_eq!(Field::DayOfWeek.ordinal("Tues"), Some(3));
        assert_eq!(Field::ClassicDayOfWeek.ordinal("thurs"), Some(4));
        assert_eq!(Field::ClassicDayOfWeek.ordinal("sunday"), Some(0));
    }
}
