//! The `limit` scenario: tickwheel beside the yardstick (`tickwheel-limit`: the same client,
//! threads, pool and calls, no scheduler) on the same sink, in the same run. Aligned 10,000
//! and 50,000 tasks every 5 s and spread 10,000 every 5 s; the two alternate (the order flips
//! each round), three rounds; reported are the medians of p99 lateness and of CPU per fire,
//! and tickwheel's ratio to the limit for each.

use super::*;

/// One run of the yardstick; its lateness and CPU time per expected fire (µs).
async fn limit_run(
    bins: &Binaries,
    sink: &Sink,
    shape: Shape,
    n: usize,
    period_s: u64,
    window_s: u64,
) -> anyhow::Result<(Precision, f64)> {
    if !bins.limit.exists() {
        bail!("no yardstick binary at {}", bins.limit.display());
    }
    let period_ms = period_s as i64 * 1000;
    let from = grid_after(now_ms() + 1_500, period_ms);
    let until = from + window_s as i64 * 1000;
    eprintln!(
        "· limit: {} {n} tasks / {period_s} s, {window_s} s window",
        shape_name(shape)
    );
    sink.take();
    let child = tokio::process::Command::new(&bins.limit)
        .args([
            "--sink",
            &sink.url("/limit"),
            "--tasks",
            &n.to_string(),
            "--period-ms",
            &period_ms.to_string(),
            "--from-ms",
            &from.to_string(),
            "--until-ms",
            &until.to_string(),
            "--shape",
            shape_name(shape),
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .output();
    let limit_s = (until - now_ms()).max(0) as u64 / 1000 + grace_ms(n) as u64 / 1000 + 60;
    let out = tokio::time::timeout(Duration::from_secs(limit_s), child)
        .await
        .context("the yardstick did not finish")?
        .context("running tickwheel-limit")?;
    if !out.status.success() {
        bail!("tickwheel-limit failed: {}", out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let summary: Value = text
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .with_context(|| format!("no summary from tickwheel-limit: {text}"))?;
    sleep_until_ms(now_ms() + 200).await;
    let arrivals = sink.take();
    let phase = |i: usize| match shape {
        Shape::Aligned => 0,
        Shape::Spread => (i as i64 * period_ms) / n as i64,
    };
    let expectation = Expectation {
        tasks: (0..n)
            .map(|i| (format!("limit-{i:030}"), from + phase(i)))
            .collect(),
        period_ms,
        from_ms: from,
        until_ms: until,
    };
    let p = stats::analyze(&arrivals, &expectation);
    let cpu_us = summary["cpu_us"].as_f64().unwrap_or(0.0);
    let per_fire = cpu_us / p.expected.max(1) as f64;
    Ok((p, per_fire))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

pub(super) async fn limit(
    report: &mut Report,
    args: &Args,
    bins: &Binaries,
    sink: &Sink,
) -> anyhow::Result<()> {
    let runs: &[(Shape, usize, u64, u64)] = if args.quick {
        &[(Shape::Aligned, 1_000, 2, 4), (Shape::Spread, 2_000, 1, 2)]
    } else {
        &[
            (Shape::Aligned, 10_000, 5, 30),
            (Shape::Aligned, 50_000, 5, 30),
            (Shape::Spread, 10_000, 5, 30),
        ]
    };
    let rounds = if args.quick { 1 } else { 3 };
    for &(shape, n, period, window) in runs {
        let (mut ours_p99, mut ours_cpu, mut lim_p99, mut lim_cpu) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut missed = 0;
        for round in 0..rounds {
            let order = if round % 2 == 0 {
                [true, false]
            } else {
                [false, true]
            };
            for yardstick in order {
                if yardstick {
                    let (p, cpu) = limit_run(bins, sink, shape, n, period, window).await?;
                    missed += p.missed + p.duplicates;
                    lim_p99.push(p.lateness_ms.p99);
                    lim_cpu.push(cpu);
                } else {
                    let (p, cpu) =
                        precision_with(report, bins, sink, shape, n, period, window, false).await?;
                    ours_p99.push(p.lateness_ms.p99);
                    ours_cpu.push(cpu);
                }
            }
        }
        report.results.push(json!({
            "scenario": "limit",
            "shape": shape_name(shape),
            "tasks": n,
            "period_s": period,
            "window_s": window,
            "rounds": rounds,
            "p99_ms_limit": lim_p99,
            "p99_ms_tickwheel": ours_p99,
            "cpu_us_per_fire_limit": lim_cpu,
            "cpu_us_per_fire_tickwheel": ours_cpu,
            "limit_missed_or_duplicate": missed,
        }));
        let (lp, tp) = (median(&mut lim_p99), median(&mut ours_p99));
        let (lc, tc) = (median(&mut lim_cpu), median(&mut ours_cpu));
        let p99_ratio = if lp > 0.0 { tp / lp } else { 0.0 };
        let cpu_ratio = if lc > 0.0 { tc / lc } else { 0.0 };
        let name = format!("{} {n} / {period} s", shape_name(shape));
        let (p99_target, p99_met) = match shape {
            Shape::Aligned => ("≤ 1.3×", Some(p99_ratio <= 1.3)),
            Shape::Spread => ("", None),
        };
        report.row(
            format!("{name}: p99 limit / tickwheel"),
            format!("{lp:.1} / {tp:.1} ms = {p99_ratio:.2}×"),
            p99_target,
            p99_met,
        );
        let (cpu_target, cpu_met) = match shape {
            Shape::Aligned => ("≤ 2.0×", Some(cpu_ratio <= 2.0)),
            Shape::Spread => ("", None),
        };
        report.row(
            format!("{name}: CPU/fire limit / tickwheel"),
            format!("{lc:.0} / {tc:.0} µs = {cpu_ratio:.2}×"),
            cpu_target,
            cpu_met,
        );
        if missed > 0 {
            eprintln!(
                "  the yardstick missed or duplicated {missed} fires: its sink was the limit"
            );
        }
    }
    Ok(())
}
