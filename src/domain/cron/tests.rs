//! The cron schedule's tests: fire times against the Quartz corpus and hand-checked cases,
//! the five-field translation, daylight-saving transitions and misfire coalescing.

use chrono::{DateTime, Datelike, SecondsFormat, Utc};

use super::classic::translate_classic_weekdays;
use super::schedule::CronSchedule;
use crate::domain::error::ScheduleError;
use crate::domain::schedule::Schedule;
use crate::domain::task::TaskType;

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

/// Every case of the Quartz corpus (`tests/data/quartz/corpus.tsv`, made from Quartz 2.3 by
/// `scripts/quartz-corpus.sh`): the same next five fire times, or the same refusal. Quartz
/// stops at its clock's year + 100 (its `MAX_YEAR`, recorded in the corpus); past it, a
/// Quartz "none" only has to match a fire time after that year.
#[test]
fn fire_times_agree_with_the_quartz_corpus() {
    let corpus = include_str!("../../../tests/data/quartz/corpus.tsv");
    let mut max_year = i32::MAX;
    let (mut agreed, mut total) = (0, 0);
    let mut failures = Vec::new();
    for line in corpus.lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        if line.starts_with('#') {
            if cols[0] == "# quartz_max_year" {
                max_year = cols[1].parse().unwrap();
            }
            continue;
        }
        total += 1;
        let (expr, zone, reference) = (cols[0], cols[1], cols[2].parse::<i64>().unwrap());
        let expected = &cols[3..];
        let ours: Vec<String> = match CronSchedule::parse(expr, zone) {
            Err(e) => vec![format!("ERR ({e})")],
            Ok(cron) => {
                let mut t = reference;
                let mut out = Vec::new();
                for want in expected {
                    match cron.next_after(t) {
                        None => {
                            out.push("none".to_owned());
                            break;
                        }
                        Some(next) => {
                            let year = DateTime::<Utc>::from_timestamp_millis(next).unwrap().year();
                            if *want == "none" && year > max_year {
                                out.push("none".to_owned());
                                break;
                            }
                            out.push(next.to_string());
                            t = next;
                        }
                    }
                }
                out
            }
        };
        let same = ours.len() == expected.len()
            && ours
                .iter()
                .zip(expected)
                .all(|(o, e)| o == e || (*e == "ERR" && o.starts_with("ERR")));
        if same {
            agreed += 1;
        } else {
            failures.push(format!(
                "{expr} | {zone} | {} ({reference})\n  quartz: {}\n  ours:   {}",
                utc(reference),
                expected
                    .iter()
                    .map(|e| e.parse().map_or_else(|_| (*e).to_owned(), utc))
                    .collect::<Vec<_>>()
                    .join(" "),
                ours.iter()
                    .map(|e| e.parse().map_or_else(|_| e.clone(), utc))
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
        }
    }
    println!("quartz corpus: {agreed} of {total} cases agree");
    assert!(total >= 300, "corpus too small: {total}");
    assert!(
        failures.is_empty(),
        "{} of {total} cases disagree with Quartz:\n{}",
        failures.len(),
        failures.join("\n")
    );
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
fn quartz_last_day_weekday_and_nth_weekday_fire_as_quartz_does() {
    // Values from Quartz 2.3 (see also the corpus test).
    assert_eq!(
        fires("0 15 10 L * ?", "UTC", "2024-02-01T00:00:00Z", 2),
        ["2024-02-29T10:15:00Z", "2024-03-31T10:15:00Z"]
    );
    assert_eq!(
        fires("0 0 12 15W * ?", "UTC", "2025-02-01T00:00:00Z", 2),
        ["2025-02-14T12:00:00Z", "2025-03-14T12:00:00Z"]
    );
    assert_eq!(
        fires("0 0 12 1W * ?", "UTC", "2025-01-31T00:00:00Z", 2),
        ["2025-02-03T12:00:00Z", "2025-03-03T12:00:00Z"]
    );
    assert_eq!(
        fires("0 0 12 ? * 2#5", "UTC", "2025-01-01T00:00:00Z", 2),
        ["2025-03-31T12:00:00Z", "2025-06-30T12:00:00Z"]
    );
    assert_eq!(
        fires("0 0 12 ? * FRIL", "UTC", "2025-01-01T00:00:00Z", 2),
        ["2025-01-31T12:00:00Z", "2025-02-28T12:00:00Z"]
    );
    // A bare L in day-of-week is Saturday.
    assert_eq!(
        fires("0 0 12 ? * L", "UTC", "2025-01-01T00:00:00Z", 1),
        ["2025-01-04T12:00:00Z"]
    );
}

#[test]
fn quartz_wrap_around_ranges_and_late_years_fire_as_quartz_does() {
    assert_eq!(
        fires("0 0 22-2/3 * * ?", "UTC", "2025-01-01T00:00:00Z", 3),
        [
            "2025-01-01T01:00:00Z",
            "2025-01-01T22:00:00Z",
            "2025-01-02T01:00:00Z"
        ]
    );
    assert_eq!(
        fires("0 0 12 28-3/2 * ?", "UTC", "2025-01-27T00:00:00Z", 3),
        [
            "2025-01-28T12:00:00Z",
            "2025-01-30T12:00:00Z",
            "2025-02-01T12:00:00Z"
        ]
    );
    assert_eq!(
        fires(
            "0 0 12 L 2 ? 2100-2199/10",
            "UTC",
            "2100-01-01T00:00:00Z",
            3
        ),
        [
            "2100-02-28T12:00:00Z",
            "2110-02-28T12:00:00Z",
            "2120-02-29T12:00:00Z"
        ]
    );
    let last = CronSchedule::parse("0 0 12 L 2 ? 2100-2199/10", "UTC").unwrap();
    assert_eq!(
        last.next_after(ms("2190-02-28T12:00:00Z")),
        None,
        "2190 is the last"
    );
    assert_eq!(
        last.latest_at_or_before(ms("2195-01-01T00:00:00Z")),
        Some(ms("2190-02-28T12:00:00Z"))
    );
}

#[test]
fn plain_expressions_fire_through_2199_past_the_crates_own_years() {
    assert_eq!(
        fires("0 0 0 1 7 ?", "UTC", "2150-06-01T00:00:00Z", 2),
        ["2150-07-01T00:00:00Z", "2151-07-01T00:00:00Z"]
    );
    assert_eq!(
        fires("0 30 2 * * ?", "Europe/Berlin", "2199-12-30T12:00:00Z", 1),
        ["2199-12-31T01:30:00Z"]
    );
    let yearly = CronSchedule::parse("0 0 0 1 7 ?", "UTC").unwrap();
    assert_eq!(yearly.next_after(ms("2199-07-01T00:00:00Z")), None);
    assert_eq!(
        yearly.latest_at_or_before(ms("2160-01-01T00:00:00Z")),
        Some(ms("2159-07-01T00:00:00Z"))
    );
}

#[test]
fn special_form_misfires_coalesce_as_walking_forward_does() {
    for (expr, tz) in [
        ("0 15 10 L * ?", "Europe/Berlin"),
        ("0 30 2 LW * ?", "America/New_York"),
        ("0 0 12 15W * ?", "UTC"),
        ("0 */20 1-3 ? * 1#1", "America/New_York"),
        ("0 30 1 ? * FRIL", "Australia/Lord_Howe"),
        ("0 0 22-2 * * ?", "America/New_York"),
        ("0 0 12 28-3/2 * ? 2026-2027", "UTC"),
    ] {
        let cron = CronSchedule::parse(expr, tz).unwrap();
        let mut fired = Vec::new();
        let mut t = ms("2025-06-01T00:00:00Z");
        while t < ms("2027-02-01T00:00:00Z") {
            t = cron.next_after(t).unwrap();
            fired.push(t);
        }
        for probe in (0..200).map(|i| ms("2026-01-15T00:00:00Z") + i * 157_079_000) {
            let want = fired.iter().rev().find(|&&f| f <= probe).copied();
            assert_eq!(
                cron.latest_at_or_before(probe),
                want,
                "{expr} in {tz} at {}",
                utc(probe)
            );
        }
    }
}

#[test]
fn special_forms_stay_fast() {
    let cron = CronSchedule::parse("0 15 10 L * ?", "Europe/Berlin").unwrap();
    let started = std::time::Instant::now();
    let mut t = ms("2026-01-01T00:00:00Z");
    for _ in 0..1000 {
        t = cron.next_after(t).unwrap();
    }
    // A thousand months of a day-by-day walk, unoptimised: well under a few seconds.
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let never = CronSchedule::parse("0 0 12 L-30 2 ? 2100-2199", "UTC").unwrap();
    assert_eq!(never.next_after(0), None);
}

#[test]
fn forms_quartz_refuses_are_rejected_naming_the_field() {
    for (expr, field) in [
        ("0 0 12 L,15 * ?", "day-of-month"),
        ("0 0 12 LW-2 * ?", "day-of-month"),
        ("0 0 12 L-31 * ?", "day-of-month"),
        ("0 0 12 ? * 6L,2", "day-of-week"),
        ("0 0 12 ? * 2#6", "day-of-week"),
        ("0 0 12 ? * 8L", "day-of-week"),
        ("0 0 12 1 1 ? 2030-2020", "year"),
    ] {
        let e = err(expr);
        assert_eq!(e.field(), "cron_expression", "{expr}");
        assert!(e.to_string().contains(field), "{expr}: {e}");
    }
    assert_eq!(err("0 0 12 L * 6#3"), ScheduleError::DayFieldsConflict);
}

#[test]
fn five_field_specials_and_wrap_around_ranges_are_named_as_not_supported_yet() {
    for (expr, named) in [
        ("0 12 * * 5#2", "'#'"),
        ("0 12 L * *", "'L'"),
        ("0 22-2 * * *", "22-2"),
        ("0 12 * * 5-1", "5-1"),
    ] {
        let e = err(expr);
        assert!(
            matches!(e, ScheduleError::UnsupportedCron(_)),
            "{expr}: {e:?}"
        );
        assert!(e.to_string().contains(named), "{expr}: {e}");
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
fn a_name_with_a_step_fires_as_quartz_fires_it_ignoring_the_step() {
    // Values from Quartz 2.3 (see also the corpus). 2025-01-01 is a Wednesday.
    let from = "2025-01-01T00:00:00Z";
    assert_eq!(
        fires("0 0 9 ? * MON/2", "UTC", from, 3),
        [
            "2025-01-06T09:00:00Z",
            "2025-01-13T09:00:00Z",
            "2025-01-20T09:00:00Z"
        ]
    );
    assert_eq!(
        fires("0 0 6 10 jan/3 ?", "UTC", from, 2),
        ["2025-01-10T06:00:00Z", "2026-01-10T06:00:00Z"]
    );
    // A number with a step still steps: 2/2 is Monday, Wednesday, Friday; 1/3 every
    // quarter.
    assert_eq!(
        fires("0 0 9 ? * 2/2", "UTC", from, 3),
        [
            "2025-01-01T09:00:00Z",
            "2025-01-03T09:00:00Z",
            "2025-01-06T09:00:00Z"
        ]
    );
    assert_eq!(
        fires("0 0 6 10 1/3 ?", "UTC", from, 2),
        ["2025-01-10T06:00:00Z", "2025-04-10T06:00:00Z"]
    );
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
        "0 0 12 ? * MON/0",
        "0 0 12 ? * MON/x",
        "0 0 12 ? * FOO/2",
        "0 0 12 1 JAN/0 ?",
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
    assert!(message("0 0 12 * * ? 2200").contains("year field '2200'"));
    assert!(message("0 0 12 ? * FOO/2").contains("day-of-week field 'FOO/2'"));
    assert!(message("0 0 12 1 FOO/2 ?").contains("month field 'FOO/2'"));
    assert!(message("0 0 12 ? * MON/0").contains("day-of-week field 'MON/0'"));
    assert!(message("0 0 12 ? * MON/0").contains("a step must be a positive number"));
    assert!(message("0 0 12 1 JAN/x ?").contains("month field 'JAN/x'"));
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
