//! Turning sink arrivals into the precision figures: expected, received, missed, duplicate
//! fires per (task, scheduled time), and lateness percentiles.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::sink::Arrival;

/// The fires a run should produce: every task fires on its grid `first + k·period` for every
/// grid point in `[from_ms, until_ms)`.
pub struct Expectation {
    /// task id (the part of `webhook-id` before the last `:`) → its first grid point (ms).
    pub tasks: HashMap<String, i64>,
    pub period_ms: i64,
    pub from_ms: i64,
    pub until_ms: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Lateness {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Precision {
    pub expected: usize,
    pub received: usize,
    pub missed: usize,
    pub duplicates: usize,
    /// Arrivals for a task or grid point that was not expected at all.
    pub unexpected: usize,
    pub lateness_ms: Lateness,
    #[serde(skip)]
    pub lateness_us: Vec<i64>,
}

pub fn analyze(arrivals: &[Arrival], exp: &Expectation) -> Precision {
    let mut seen: HashMap<(&str, i64), usize> = HashMap::with_capacity(arrivals.len());
    let mut lateness_us = Vec::with_capacity(arrivals.len());
    let mut unexpected = 0;
    for a in arrivals {
        let Some((task, slot)) = a.id.rsplit_once(':') else {
            unexpected += 1;
            continue;
        };
        let Ok(slot) = slot.parse::<i64>() else {
            unexpected += 1;
            continue;
        };
        let Some(first) = exp.tasks.get(task) else {
            unexpected += 1;
            continue;
        };
        if slot < exp.from_ms || slot >= exp.until_ms || slot < *first {
            // Outside the measured window (warm-up or the tail after it).
            continue;
        }
        if (slot - first) % exp.period_ms != 0 {
            unexpected += 1;
            continue;
        }
        let n = seen.entry((task, slot)).or_insert(0);
        *n += 1;
        if *n == 1 {
            lateness_us.push(a.at_us - slot * 1000);
        }
    }
    let mut expected = 0;
    let mut missed = 0;
    for (task, first) in &exp.tasks {
        let mut slot = *first;
        if slot < exp.from_ms {
            let k = (exp.from_ms - slot + exp.period_ms - 1) / exp.period_ms;
            slot += k * exp.period_ms;
        }
        while slot < exp.until_ms {
            expected += 1;
            if !seen.contains_key(&(task.as_str(), slot)) {
                missed += 1;
            }
            slot += exp.period_ms;
        }
    }
    let duplicates = seen.values().map(|n| n - 1).sum();
    lateness_us.sort_unstable();
    Precision {
        expected,
        received: seen.len(),
        missed,
        duplicates,
        unexpected,
        lateness_ms: lateness(&lateness_us),
        lateness_us,
    }
}

/// Percentiles (nearest rank) of a sorted list of microsecond values, in milliseconds.
pub fn lateness(sorted_us: &[i64]) -> Lateness {
    let ms = |us: i64| (us as f64 / 100.0).round() / 10.0;
    Lateness {
        p50: ms(percentile(sorted_us, 50.0)),
        p99: ms(percentile(sorted_us, 99.0)),
        p999: ms(percentile(sorted_us, 99.9)),
        max: ms(sorted_us.last().copied().unwrap_or(0)),
    }
}

pub fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    // The small slack keeps 99.9 % of 1,000 at rank 999 despite binary fractions.
    let rank = ((p / 100.0) * sorted.len() as f64 - 1e-9).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Distinct task ids seen among the arrivals (for counting catch-up fires).
pub fn distinct_tasks<'a>(arrivals: &'a [Arrival], of: &HashSet<String>) -> HashSet<&'a str> {
    arrivals
        .iter()
        .filter_map(|a| a.id.rsplit_once(':').map(|(t, _)| t))
        .filter(|t| of.contains(*t))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrival(id: &str, at_ms: i64) -> Arrival {
        Arrival {
            id: id.into(),
            at_us: at_ms * 1000,
        }
    }

    #[test]
    fn counts_missed_duplicate_and_lateness() {
        let exp = Expectation {
            tasks: [("a".to_string(), 1000), ("b".to_string(), 1500)]
                .into_iter()
                .collect(),
            period_ms: 1000,
            from_ms: 1000,
            until_ms: 3000,
        };
        let got = vec![
            arrival("a:1000", 1002),
            arrival("a:2000", 2010),
            arrival("a:2000", 2011),
            arrival("b:1500", 1501),
            arrival("b:3500", 3501), // after the window: ignored
            arrival("c:1000", 1000), // unknown task
        ];
        let p = analyze(&got, &exp);
        assert_eq!(p.expected, 4);
        assert_eq!(p.received, 3);
        assert_eq!(p.missed, 1); // b:2500
        assert_eq!(p.duplicates, 1);
        assert_eq!(p.unexpected, 1);
        assert_eq!(p.lateness_us, vec![1000, 2000, 10000]);
        assert_eq!(p.lateness_ms.max, 10.0);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<i64> = (1..=1000).collect();
        assert_eq!(percentile(&v, 50.0), 500);
        assert_eq!(percentile(&v, 99.0), 990);
        assert_eq!(percentile(&v, 99.9), 999);
        assert_eq!(percentile(&v, 100.0), 1000);
        assert_eq!(percentile(&[], 50.0), 0);
    }
}
