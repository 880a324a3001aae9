//! The `retention` scenario: does pruning a large execution log move fires' lateness?
//!
//! A database gets `--retention-rows` log rows older than the 30-day limit (1,000 rows in one
//! multi-row INSERT, then `INSERT … SELECT` doubling), then a spread precision workload runs on
//! it in alternating windows with the pruner off (`retention.enabled = false`) and on (the
//! default pace), restarting tickwheel on the same database between windows. Reported: the
//! lateness p99 of each mode over all its windows, and the rows pruned per second while on.

use std::collections::HashMap;

use super::*;
use crate::BackendArg;

/// Fires per second of the workload (tasks of a 1 s period, phases spread over the second).
const TASKS: usize = 500;

pub(super) async fn retention(
    report: &mut Report,
    args: &Args,
    bins: &Binaries,
    sink: &Sink,
) -> anyhow::Result<()> {
    let rows = if args.quick {
        100_000
    } else {
        args.retention_rows
    };
    let window_s: u64 = if args.quick { 4 } else { 20 };
    let rounds = if args.quick { 1 } else { 2 };
    let backends = if args.retention_backends.is_empty() {
        vec![Backend::Sqlite, Backend::MariaDb]
    } else {
        args.retention_backends
            .iter()
            .map(|b| match b {
                BackendArg::Sqlite => Backend::Sqlite,
                BackendArg::Mariadb => Backend::MariaDb,
            })
            .collect()
    };
    for backend in backends {
        let name = format!("{} {rows} old log rows", backend.name());
        eprintln!("· retention: {name}, {TASKS} fires/s, {rounds}×2 windows of {window_s} s");
        let data = Data::new(backend)?;
        data.migrate(bins)?;
        let seeded = Instant::now();
        seed(&data, rows)?;
        let seed_s = seeded.elapsed().as_secs_f64();
        eprintln!("  seeded {rows} rows in {seed_s:.0} s");

        let off = [("TICKWHEEL__RETENTION__ENABLED", "false".to_string())];
        let server = Server::start_with(bins, &data, &off).await?;
        let api = Api::new(&server.base, &server.token)?;
        let period_ms = 1_000;
        let t0 = grid_after(now_ms() + 2_000, period_ms);
        let phase = |i: usize| (i as i64 * period_ms) / TASKS as i64;
        let tasks: Vec<IntervalTask> = (0..TASKS)
            .map(|i| IntervalTask {
                endpoint: sink.url("/fire"),
                period_s: 1,
                start_ms: t0 + phase(i),
                n: i,
            })
            .collect();
        let ids = api.create_all(tasks, 32).await?;
        let firsts: HashMap<String, i64> = ids
            .into_iter()
            .enumerate()
            .map(|(i, id)| (id, t0 + phase(i)))
            .collect();

        let mut server = Some(server);
        let mut lateness: [Vec<i64>; 2] = [Vec::new(), Vec::new()];
        let mut missed = [0usize; 2];
        let (mut pruned, mut pruning_s) = (0.0, 0.0);
        let (mut statements, mut statement_s) = (0.0, 0.0);
        for _ in 0..rounds {
            for (mode, pruning) in [(0usize, false), (1usize, true)] {
                let s = match server.take() {
                    Some(s) => s,
                    None => {
                        let env = [("TICKWHEEL__RETENTION__ENABLED", pruning.to_string())];
                        Server::start_with(bins, &data, &env).await?
                    }
                };
                // Past the restart's catch-up fires and the pruner's first steps.
                let from = grid_after(now_ms() + 2_000, period_ms);
                let until = from + window_s as i64 * 1000;
                sink.take();
                sleep_until_ms(from).await;
                let before = pruned_rows(&s.base).await?;
                sleep_until_ms(until).await;
                let after = pruned_rows(&s.base).await?;
                sleep_until_ms(until + grace_ms(TASKS)).await;
                let exp = Expectation {
                    tasks: firsts.clone(),
                    period_ms,
                    from_ms: from,
                    until_ms: until,
                };
                let p = stats::analyze(&sink.take(), &exp);
                let rows_pruned = after[0] - before[0];
                eprintln!(
                    "  pruning {}: {} ; {rows_pruned} rows pruned",
                    if pruning { "on " } else { "off" },
                    fmt_precision(&p),
                );
                if pruning {
                    pruned += rows_pruned;
                    pruning_s += window_s as f64;
                    statements += after[1] - before[1];
                    statement_s += after[2] - before[2];
                }
                missed[mode] += p.missed;
                lateness[mode].extend(p.lateness_us.iter().copied());
                s.kill9()?;
            }
        }
        let left = data.sql("SELECT COUNT(*) FROM task_logs")?;
        let [off, on] = lateness.map(|mut v| {
            v.sort_unstable();
            stats::lateness(&v)
        });
        let rate = pruned / pruning_s.max(1.0);
        let mean_delete_ms = 1000.0 * statement_s / statements.max(1.0);
        report.results.push(json!({
            "scenario": "retention",
            "backend": backend.name(),
            "old_rows": rows,
            "seed_s": (seed_s * 10.0).round() / 10.0,
            "fires_per_s": TASKS,
            "window_s": window_s,
            "rounds": rounds,
            "lateness_ms_without_pruning": off,
            "lateness_ms_with_pruning": on,
            "missed_without_pruning": missed[0],
            "missed_with_pruning": missed[1],
            "rows_pruned_per_s": rate.round(),
            "mean_delete_statement_ms": (mean_delete_ms * 100.0).round() / 100.0,
            "log_rows_left": left.trim(),
        }));
        report.row(
            format!("{name}: p99 off / on"),
            format!("{:.1} / {:.1} ms", off.p99, on.p99),
            "on within 5 ms of off",
            Some(on.p99 - off.p99 <= 5.0),
        );
        report.row(
            format!("{name}: pruned while on"),
            format!("{rate:.0} rows/s, {mean_delete_ms:.1} ms a statement"),
            "",
            None,
        );
        report.row(
            format!("{name}: missed off / on"),
            format!("{} / {}", missed[0], missed[1]),
            "0 / 0",
            Some(missed == [0, 0]),
        );
    }
    Ok(())
}

/// The sum over the series whose lines start with `prefix`.
fn sum_of(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Rows pruned (all reasons), and the delete statements' count and total seconds so far.
async fn pruned_rows(base: &str) -> anyhow::Result<[f64; 3]> {
    let text = reqwest::get(format!("{base}/metrics"))
        .await?
        .text()
        .await?;
    Ok([
        sum_of(&text, "tickwheel_retention_pruned_rows_total"),
        sum_of(&text, "tickwheel_retention_delete_seconds_count"),
        sum_of(&text, "tickwheel_retention_delete_seconds_sum"),
    ])
}

/// `rows` log rows of 1,000 task ids, all created 60 days ago (a few hours apart at most).
fn seed(data: &Data, rows: u64) -> anyhow::Result<()> {
    let base = now_ms() - 60 * 86_400_000;
    let cols = "log_id, user_id, task_id, scheduled_time, attempt, http_status, error, \
                duration_ms, response_body, created_at, trigger_kind, lateness_ms";
    let first = rows.min(1_000);
    let values: Vec<String> = (0..first)
        .map(|i| {
            format!(
                "('seed-{i}', 1, 'bench-old-{}', {i}, 1, 200, NULL, 5, '{{\"ok\":true}}', {}, \
                 'schedule', 1)",
                i % 1_000,
                base + i as i64
            )
        })
        .collect();
    data.sql(&format!(
        "INSERT INTO task_logs ({cols}) VALUES {}",
        values.join(",")
    ))?;
    let mut have = first;
    while have < rows {
        let take = have.min(rows - have);
        // `scheduled_time + have` is new and unique in every round, so the id stays short
        // (MariaDB holds `log_id` to its column's length).
        let id = if data.is_mariadb() {
            format!("CONCAT('seed-', scheduled_time + {have})")
        } else {
            format!("'seed-' || (scheduled_time + {have})")
        };
        // Shifted by `have` ms: new (task, scheduled time) pairs, still far past 30 days.
        data.sql(&format!(
            "INSERT INTO task_logs ({cols}) SELECT {id}, user_id, task_id, \
             scheduled_time + {have}, attempt, http_status, error, duration_ms, response_body, \
             created_at + {have}, trigger_kind, lateness_ms FROM task_logs \
             WHERE scheduled_time < {have} AND task_id LIKE 'bench-old-%' LIMIT {take}"
        ))?;
        have += take;
    }
    Ok(())
}
