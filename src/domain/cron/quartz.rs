//! Quartz expressions (second minute hour day-of-month month day-of-week [year]), with the
//! Quartz features the `cron` crate lacks, as Quartz 2.3's `CronExpression` reads them:
//! `L`, `L-n`, `LW`, `L-nW`, `nW` in day-of-month; `nL`, `n#k` and a bare `L` (Saturday) in
//! day-of-week; wrap-around ranges (`22-2`, `FRI-MON`, `28-3/2`) in every field; a step after a
//! month or weekday name, which Quartz ignores (`MON/2` is every Monday, `JAN/3` January
//! alone); years 1970-2199.
//!
//! The crate still enumerates the times of day (and plain months and day fields); the special
//! forms become a [`DayRule`], a filter on local calendar dates. Dates the crate cannot reach
//! (after 2100) are enumerated through a *proxy year* with the same calendar (leap or not, same
//! weekday on 1 January), since a day's matching times depend only on its month, day and
//! weekday.

use chrono::{Datelike, NaiveDate, Weekday};

use super::fields::{compile, Field, FIRST_YEAR, LAST_YEAR};
use crate::domain::error::{shorten, ScheduleError};

/// A day-of-month rule the crate cannot express.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum DomRule {
    /// Bit `d` set: day `d` (1-31), when the month has it.
    Days(u32),
    /// `L` / `L-n`: the last day of the month minus `n`.
    Last(u32),
    /// `LW` / `L-nW`: the weekday nearest to the last day minus `n`.
    LastWeekday(u32),
    /// `nW`: the weekday nearest to day `n`, within the month.
    Nearest(u32),
}

/// A day-of-week rule the crate cannot express (Quartz numbering, 1 = Sunday).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum DowRule {
    /// Bit `d` set: weekday `d` (1-7).
    Days(u8),
    /// `dL`: the last weekday `d` of the month.
    Last(u32),
    /// `d#k`: the `k`-th weekday `d` of the month.
    Nth(u32, u32),
}

/// The calendar-date part of a schedule that the crate does not check.
#[derive(Clone, Debug, Default)]
pub(super) struct DayRule {
    pub dom: Option<DomRule>,
    pub dow: Option<DowRule>,
    /// Index `y - FIRST_YEAR`; `None` is every year.
    pub years: Option<Vec<bool>>,
}

fn last_day_of_month(year: i32, month: u32) -> u32 {
    let (y, m) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1)
        .and_then(|d| d.pred_opt())
        .map_or(28, |d| d.day())
}

/// Quartz numbering of a weekday: 1 = Sunday … 7 = Saturday.
fn quartz_weekday(w: Weekday) -> u32 {
    w.num_days_from_sunday() + 1
}

/// The day a Quartz `W` rule fires on for nominal day `n`, if any, in a month with `ldom` days
/// whose day 1 falls on Quartz weekday `first_dow`.
fn nearest_weekday(n: i64, ldom: u32, first_dow: u32) -> Option<u32> {
    let ldom = i64::from(ldom);
    if n < 1 {
        return None;
    }
    // Weekday of the (possibly virtual, past the month's end) day n; Quartz's lenient calendar.
    let dow = (i64::from(first_dow) - 1 + n - 1).rem_euclid(7) + 1;
    let day = match dow {
        7 if n == 1 => n + 2,
        7 => n - 1,
        1 if n == ldom => n - 2,
        1 => n + 1,
        _ => n,
    };
    // A day past the month's end rolls into the next month, where Quartz starts over.
    (1..=ldom).contains(&day).then_some(day as u32)
}

impl DayRule {
    pub fn is_trivial(&self) -> bool {
        self.dom.is_none() && self.dow.is_none() && self.years.is_none()
    }

    pub fn year_ok(&self, year: i32) -> bool {
        match &self.years {
            _ if !(FIRST_YEAR..=LAST_YEAR).contains(&year) => false,
            None => true,
            Some(years) => years[(year - FIRST_YEAR) as usize],
        }
    }

    /// Quartz's `nW` for a day past a month's end (`31W` in a 30-day month, `29W` in a
    /// 28-day February) fires on the month's last day when the virtual day `n` is a Saturday —
    /// but only if Quartz's search enters that month at its start. A search whose first
    /// examined day `first` lies after the previous month's `W` day jumps to day `n` of the
    /// month, which rolls over into the month after, skipping it. The month to skip, if any.
    pub fn quirk_skip(&self, first: NaiveDate) -> Option<(i32, u32)> {
        let Some(DomRule::Nearest(n)) = self.dom else {
            return None;
        };
        let (year, month) = (first.year(), first.month());
        let ldom = last_day_of_month(year, month);
        let first_dow = quartz_weekday(NaiveDate::from_ymd_opt(year, month, 1)?.weekday());
        let w = nearest_weekday(i64::from(n), ldom, first_dow)?;
        (first.day() > w).then_some(if month == 12 {
            (year + 1, 1)
        } else {
            (year, month + 1)
        })
    }

    /// Whether this rule lets `date` fire (the crate checks the rest); `skip` is from
    /// [`DayRule::quirk_skip`].
    pub fn matches(&self, date: NaiveDate, skip: Option<(i32, u32)>) -> bool {
        if !self.year_ok(date.year()) {
            return false;
        }
        let (year, month, day) = (date.year(), date.month(), date.day());
        let ldom = last_day_of_month(year, month);
        let first_dow =
            || NaiveDate::from_ymd_opt(year, month, 1).map_or(1, |d| quartz_weekday(d.weekday()));
        let dom_ok = match &self.dom {
            None => true,
            Some(DomRule::Days(mask)) => mask & (1 << day) != 0,
            Some(DomRule::Last(n)) => i64::from(day) == i64::from(ldom) - i64::from(*n),
            Some(DomRule::LastWeekday(n)) => {
                let nominal = i64::from(ldom) - i64::from(*n);
                nearest_weekday(nominal, ldom, first_dow()) == Some(day)
            }
            Some(DomRule::Nearest(n)) => {
                (*n <= ldom || skip != Some((year, month)))
                    && nearest_weekday(i64::from(*n), ldom, first_dow()) == Some(day)
            }
        };
        if !dom_ok {
            return false;
        }
        let dow = quartz_weekday(date.weekday());
        match &self.dow {
            None => true,
            Some(DowRule::Days(mask)) => mask & (1 << dow) != 0,
            Some(DowRule::Last(d)) => dow == *d && day + 7 > ldom,
            Some(DowRule::Nth(d, k)) => dow == *d && (day - 1) / 7 + 1 == *k,
        }
    }

    /// The first year at or after `year` this rule allows.
    pub fn next_year(&self, year: i32) -> Option<i32> {
        (year.max(FIRST_YEAR)..=LAST_YEAR).find(|&y| self.year_ok(y))
    }

    /// The last year at or before `year` this rule allows.
    pub fn prev_year(&self, year: i32) -> Option<i32> {
        (FIRST_YEAR..=year.min(LAST_YEAR))
            .rev()
            .find(|&y| self.year_ok(y))
    }
}

/// A year in 2001-2028 with the same calendar as `year` (the 28-year cycle holds every
/// combination of leap year and weekday of 1 January).
pub(super) fn proxy_year(year: i32) -> i32 {
    let key = |y: i32| {
        let jan1 = NaiveDate::from_ymd_opt(y, 1, 1).map(|d| d.weekday());
        (NaiveDate::from_ymd_opt(y, 2, 29).is_some(), jan1)
    };
    let want = key(year);
    (2001..=2028).find(|&y| key(y) == want).unwrap_or(2001)
}

// ---------------------------------------------------------------------------------------------
// Field parsing, after Quartz's `CronExpression.storeExpressionVals` / `addToSet`.
// ---------------------------------------------------------------------------------------------

/// An error naming the field and what is wrong with it.
fn invalid(kind: Field, field: &str, why: &str) -> ScheduleError {
    ScheduleError::InvalidCron(format!(
        "the {} field '{}' is not valid ({why})",
        kind.name(),
        shorten(field)
    ))
}

/// Whether a comma item is a range that runs backwards, or a name or named range with a step
/// (Quartz ignores the step after a name: `MON/2` is every Monday, `MON-FRI/2` every weekday)
/// — the items the crate would read differently, or refuse.
fn needs_rewrite(kind: Field, item: &str) -> bool {
    let (range, step) = match item.split_once('/') {
        Some((r, s)) => (r, Some(s)),
        None => (item, None),
    };
    let named = |t: &str| kind.quartz_value(t).is_some_and(|(_, named)| named);
    let Some((a, b)) = range.split_once('-') else {
        return step.is_some() && named(range);
    };
    match (kind.quartz_value(a), kind.quartz_value(b)) {
        (Some((a, named_a)), Some((b, _))) => a > b || (named_a && step.is_some()),
        _ => false,
    }
}

/// The values of one comma item without `L`, `W` or `#`, as Quartz's `addToSet` makes them.
fn item_values(kind: Field, field: &str, item: &str) -> Result<Vec<u32>, ScheduleError> {
    let (lo, hi) = kind.bounds();
    let (range, step) = match item.split_once('/') {
        Some((r, s)) => {
            let s: u32 = s
                .parse()
                .ok()
                .filter(|&s| s >= 1)
                .ok_or_else(|| invalid(kind, field, "a step must be a positive number"))?;
            (r, Some(s))
        }
        None => (item, None),
    };
    let value = |t: &str| {
        kind.quartz_value(t)
            .filter(|(v, _)| (lo..=hi).contains(v))
            .ok_or_else(|| invalid(kind, field, &format!("'{t}' is out of range {lo}-{hi}")))
    };
    let (start, mut stop, named) = if range == "*" || range == "?" {
        (lo, hi, false)
    } else if let Some((a, b)) = range.split_once('-') {
        let ((a, named), (b, _)) = (value(a)?, value(b)?);
        (a, b, named)
    } else {
        let (a, named) = value(range)?;
        // `5/2` runs from 5 to the end; `MON/2` is Monday alone.
        (a, if step.is_some() && !named { hi } else { a }, named)
    };
    // Quartz reads a name (or a named range) and ignores whatever follows it. The step still
    // has to be a positive number here, as after a number.
    let step = if named { 1 } else { step.unwrap_or(1) };
    // Only a backwards range wraps, modulo the kind's size (0 reads as the size in 1-based
    // units).
    let mut modulus = None;
    if stop < start {
        let m = kind
            .wrap()
            .ok_or_else(|| invalid(kind, field, "a year range cannot run backwards"))?;
        stop += m;
        modulus = Some(m);
    }
    let mut out = Vec::new();
    let mut i = start;
    while i <= stop {
        let v = match modulus {
            Some(m) if i % m == 0 && lo == 1 => m,
            Some(m) => i % m,
            None => i,
        };
        out.push(v);
        i += step;
    }
    Ok(out)
}

/// A field of plain items rewritten as the crate reads it: backwards and named-with-step
/// ranges become explicit lists, other items stay.
fn rewrite_field(kind: Field, field: &str) -> Result<String, ScheduleError> {
    if !field.split(',').any(|item| needs_rewrite(kind, item)) {
        return Ok(field.to_owned());
    }
    let mut parts = Vec::new();
    for item in field.split(',') {
        if needs_rewrite(kind, item) {
            let values = item_values(kind, field, item)?;
            parts.extend(values.iter().map(u32::to_string));
        } else {
            parts.push(item.to_owned());
        }
    }
    Ok(parts.join(","))
}

fn mask_of(kind: Field, field: &str, items: &[&str]) -> Result<u32, ScheduleError> {
    let mut mask = 0u32;
    for item in items {
        for v in item_values(kind, field, item)? {
            mask |= 1 << v;
        }
    }
    Ok(mask)
}

/// A day-of-month field the crate cannot read (`L`, `W` or a backwards range), if it is one.
fn parse_dom(field: &str) -> Result<Option<DomRule>, ScheduleError> {
    let kind = Field::DayOfMonth;
    let upper = field.to_ascii_uppercase();
    if upper.contains('L') {
        if upper.contains(',') {
            return Err(invalid(
                kind,
                field,
                "'L' cannot be combined with other days, as in Quartz",
            ));
        }
        let (rest, weekday) = match upper.strip_suffix('W') {
            Some(rest) => (rest, true),
            None => (upper.as_str(), false),
        };
        let offset = match rest.strip_prefix('L') {
            Some("") => Some(0),
            Some(off) => off
                .strip_prefix('-')
                .and_then(|n| n.parse::<u32>().ok())
                .filter(|&n| n <= 30),
            None => None,
        }
        .ok_or_else(|| {
            invalid(
                kind,
                field,
                "use L, L-n (n at most 30), LW or L-nW for the last day",
            )
        })?;
        return Ok(Some(if weekday {
            DomRule::LastWeekday(offset)
        } else {
            DomRule::Last(offset)
        }));
    }
    if upper.contains('W') {
        let mut min = u32::MAX;
        for item in upper.split(',') {
            let values = match item.strip_suffix('W') {
                Some(day) => {
                    let n = day
                        .parse::<u32>()
                        .ok()
                        .filter(|n| (1..=31).contains(n))
                        .ok_or_else(|| {
                            invalid(kind, field, "'W' follows a single day 1-31, as in 15W")
                        })?;
                    vec![n]
                }
                None => item_values(kind, field, item)?,
            };
            min = values.into_iter().fold(min, u32::min);
        }
        // Quartz applies W to the first day of the field.
        return Ok(Some(DomRule::Nearest(min)));
    }
    if field.split(',').any(|item| needs_rewrite(kind, item)) {
        let items: Vec<&str> = field.split(',').collect();
        return Ok(Some(DomRule::Days(mask_of(kind, field, &items)?)));
    }
    Ok(None)
}

/// A day-of-week field the crate cannot read (`L`, `#`, a backwards or named-with-step
/// range), if it is one.
fn parse_dow(field: &str) -> Result<Option<DowRule>, ScheduleError> {
    let kind = Field::DayOfWeek;
    let upper = field.to_ascii_uppercase();
    let day = |t: &str| {
        kind.quartz_value(t)
            .map(|(v, _)| v)
            .filter(|v| (1..=7).contains(v))
            .ok_or_else(|| invalid(kind, field, &format!("'{t}' is not a day 1-7 or SUN-SAT")))
    };
    if upper.contains('L') {
        if upper.contains(',') {
            return Err(invalid(
                kind,
                field,
                "'L' cannot be combined with other days, as in Quartz",
            ));
        }
        if upper == "L" {
            return Ok(Some(DowRule::Days(1 << 7)));
        }
        let d = upper
            .strip_suffix('L')
            .filter(|d| !d.contains('-') && !d.contains('/'))
            .ok_or_else(|| invalid(kind, field, "use dL or a name with L, as in 6L or FRIL"))?;
        return Ok(Some(DowRule::Last(day(d)?)));
    }
    if upper.contains('#') {
        let mut nth = None;
        let mut min = u32::MAX;
        for item in upper.split(',') {
            if let Some((d, k)) = item.split_once('#') {
                let k = k
                    .parse::<u32>()
                    .ok()
                    .filter(|k| (1..=5).contains(k))
                    .ok_or_else(|| invalid(kind, field, "the k of d#k must be 1 to 5"))?;
                if nth.replace(k).is_some() {
                    return Err(invalid(
                        kind,
                        field,
                        "only one 'd#k' is allowed, as in Quartz",
                    ));
                }
                min = min.min(day(d)?);
            } else {
                min = item_values(kind, field, item)?
                    .into_iter()
                    .fold(min, u32::min);
            }
        }
        // Quartz applies #k to the first day of the field.
        return Ok(nth.map(|k| DowRule::Nth(min, k)));
    }
    if field.split(',').any(|item| needs_rewrite(kind, item)) {
        let items: Vec<&str> = field.split(',').collect();
        let mask = mask_of(kind, field, &items)?;
        return Ok(Some(DowRule::Days(mask as u8)));
    }
    Ok(None)
}

/// The years of a 7th field.
fn parse_years(field: &str) -> Result<Option<Vec<bool>>, ScheduleError> {
    if field == "*" || field == "?" {
        return Ok(None);
    }
    let mut years = vec![false; (LAST_YEAR - FIRST_YEAR + 1) as usize];
    for item in field.split(',') {
        for y in item_values(Field::Year, field, item)? {
            years[(y as i32 - FIRST_YEAR) as usize] = true;
        }
    }
    Ok(Some(years))
}

/// Quartz: second minute hour day-of-month month day-of-week [year]. The crate gets the
/// fields it reads as Quartz does (backwards ranges and names with steps rewritten as lists);
/// `L`, `W`, `#`, backwards day ranges and the years become the [`DayRule`], with the crate's
/// day fields relaxed to `*`.
pub(super) fn parse_quartz(
    fields: &[&str],
) -> Result<(Vec<cron::Schedule>, DayRule), ScheduleError> {
    let unrestricted = |f: &str| f == "*" || f == "?";
    if !unrestricted(fields[3]) && !unrestricted(fields[5]) {
        return Err(ScheduleError::DayFieldsConflict);
    }
    let mut crate_fields: Vec<String> = fields[..6].iter().map(|f| (*f).to_owned()).collect();
    for (i, kind) in [
        (0, Field::Second),
        (1, Field::Minute),
        (2, Field::Hour),
        (4, Field::Month),
    ] {
        crate_fields[i] = rewrite_field(kind, fields[i])?;
    }
    let mut rule = DayRule::default();
    if !unrestricted(fields[3]) {
        rule.dom = parse_dom(fields[3])?;
        if rule.dom.is_some() {
            crate_fields[3] = "*".into();
        }
    }
    if !unrestricted(fields[5]) {
        rule.dow = parse_dow(fields[5])?;
        if rule.dow.is_some() {
            crate_fields[5] = "*".into();
        }
    }
    if let Some(years) = fields.get(6) {
        rule.years = parse_years(years)?;
    }
    let crate_fields: Vec<&str> = crate_fields.iter().map(String::as_str).collect();
    Ok((vec![compile(&crate_fields)?], rule))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_around_values_follow_quartz() {
        let v = |u, s| item_values(u, s, s).unwrap();
        assert_eq!(v(Field::Hour, "22-2"), [22, 23, 0, 1, 2]);
        assert_eq!(v(Field::Hour, "22-2/3"), [22, 1]);
        assert_eq!(v(Field::DayOfMonth, "28-3/2"), [28, 30, 1, 3]);
        assert_eq!(v(Field::Month, "NOV-FEB/2"), [11, 12, 1, 2]);
        assert_eq!(v(Field::DayOfWeek, "6-2/2"), [6, 1]);
        assert_eq!(v(Field::Second, "50-10/5").len(), 5);
    }

    #[test]
    fn a_step_after_a_name_is_ignored_as_in_quartz_but_not_after_a_number() {
        let v = |u, s| item_values(u, s, s).unwrap();
        assert_eq!(v(Field::DayOfWeek, "MON/2"), [2]);
        assert_eq!(v(Field::DayOfWeek, "sun/3"), [1]);
        assert_eq!(v(Field::DayOfWeek, "MON/8"), [2]);
        assert_eq!(v(Field::Month, "JAN/3"), [1]);
        assert_eq!(v(Field::Month, "dec/2"), [12]);
        assert_eq!(v(Field::DayOfWeek, "2/2"), [2, 4, 6]);
        assert_eq!(v(Field::Month, "1/3"), [1, 4, 7, 10]);
        assert!(needs_rewrite(Field::DayOfWeek, "MON/2"));
        assert!(needs_rewrite(Field::Month, "JAN/3"));
        assert!(!needs_rewrite(Field::DayOfWeek, "2/2"));
        assert!(!needs_rewrite(Field::DayOfWeek, "MON"));
        for bad in ["MON/0", "MON/x", "MON/", "MON/-1", "MON/2/3"] {
            assert!(item_values(Field::DayOfWeek, bad, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn proxy_years_share_the_calendar() {
        for y in [1970, 2000, 2100, 2150, 2199] {
            let p = proxy_year(y);
            let a = NaiveDate::from_ymd_opt(y, 3, 1).unwrap();
            let b = NaiveDate::from_ymd_opt(p, 3, 1).unwrap();
            assert_eq!(a.weekday(), b.weekday(), "{y} {p}");
            assert_eq!(
                NaiveDate::from_ymd_opt(y, 2, 29).is_some(),
                NaiveDate::from_ymd_opt(p, 2, 29).is_some()
            );
        }
    }
}
