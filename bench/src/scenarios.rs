//! The scenarios, their sizes (full and `--quick`), and the report.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::api::{Api, IntervalTask};
use crate::server::{Backend, Binaries, Data, Server};
use crate::sink::{now_us, Sink};
use crate::stats::{self, Expectation, Precision};
use crate::{plot, Args, Scenario, Shape};

#[path = "console.rs"]
mod console;
#[path = "limit.rs"]
mod limit;
#[path = "retention.rs"]
mod retention;

/// One line of the summary table.
struct Row {
    figure: String,
    value: String,
    target: String,
    /// Whether the figure meets its target (`None`: no target).
    met: Option<bool>,
}

#[derive(Default)]
struct Report {
    results: Vec<Value>,
    rows: Vec<Row>,
}

impl Report {
    fn row(
        &mut self,
        figure: impl Into<String>,
        value: impl Into<String>,
        target: &str,
        met: Option<bool>,
    ) {
        let row = Row {
            figure: figure.into(),
            value: value.into(),
            target: target.into(),
            met,
        };
        println!(
            "  {:<48} {:>28}   {}{}",
            row.figure,
            row.value,
            row.target,
            match row.met {
                Some(true) => "  ✓",
                Some(false) => "  ✗ MISSED",
                None => "",
            }
        );
        self.rows.push(row);
    }
}

/// How long after a window's end its last fires may still arrive and count: a second, plus
/// time for a burst of `n` calls to drain at a pessimistic 20,000 calls/s.
fn grace_ms(n: usize) -> i64 {
    1_000 + n as i64 / 20
}

fn now_ms() -> i64 {
    now_us() / 1000
}

/// The next multiple of `period_ms` at or after `t`.
fn grid_after(t: i64, period_ms: i64) -> i64 {
    (t + period_ms - 1) / period_ms * period_ms
}

async fn sleep_until_ms(t: i64) {
    let wait = t - now_ms();
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    }
}

fn fmt_precision(p: &Precision) -> String {
    format!(
        "p50 {} / p99 {} / p99.9 {} / max {} ms",
        p.lateness_ms.p50, p.lateness_ms.p99, p.lateness_ms.p999, p.lateness_ms.max
    )
}

pub async fn run_all(args: &Args, bins: &Binaries) -> anyhow::Result<()> {
    let sink = Sink::start()?;
    let mut report = Report::default();
    let machine = machine();
    println!(
        "tickwheel-bench{} on {}",
        if args.quick { " --quick" } else { "" },
        machine["cpu"].as_str().unwrap_or("?")
    );
    let started = Instant::now();
    // The aligned run at the peer's size is kept for the side-by-side figures.
    let mut aligned_for_peer: Option<Precision> = None;
    let peer_size = if args.quick { 1_000 } else { 10_000 };
    let peer_period = if args.quick { 2 } else { 5 };
    let peer_window = if args.quick { 4 } else { 30 };
    for scenario in &args.scenarios {
        match scenario {
            Scenario::Aligned => {
                let sizes: &[usize] = if args.quick {
                    &[1_000]
                } else {
                    &[1_000, 10_000, 50_000]
                };
                for &n in sizes {
                    let p = precision(
                        &mut report,
                        bins,
                        &sink,
                        Shape::Aligned,
                        n,
                        peer_period,
                        peer_window,
                    )
                    .await?;
                    if n == peer_size {
                        aligned_for_peer = Some(p);
                    }
                }
            }
            Scenario::Spread => {
                // Period chosen so that the rate stays at 2,000 fires/s.
                let runs: &[(usize, u64, u64)] = if args.quick {
                    &[(2_000, 1, 2)]
                } else {
                    &[(10_000, 5, 30), (100_000, 50, 100)]
                };
                for &(n, period, window) in runs {
                    precision(&mut report, bins, &sink, Shape::Spread, n, period, window).await?;
                }
            }
            Scenario::Precision => {
                precision(
                    &mut report,
                    bins,
                    &sink,
                    args.shape,
                    args.tasks,
                    args.period,
                    args.duration,
                )
                .await?;
            }
            Scenario::Peer => {
                let ours = match aligned_for_peer.take() {
                    Some(p) => p,
                    None => {
                        precision(
                            &mut report,
                            bins,
                            &sink,
                            Shape::Aligned,
                            peer_size,
                            peer_period,
                            peer_window,
                        )
                        .await?
                    }
                };
                peer(
                    &mut report,
                    bins,
                    &sink,
                    &ours,
                    peer_size,
                    peer_period,
                    peer_window,
                )
                .await?;
            }
            Scenario::Throughput => throughput(&mut report, args, bins, &sink).await?,
            Scenario::Memory => memory(&mut report, args, bins).await?,
            Scenario::Api => api(&mut report, args, bins).await?,
            Scenario::Recovery => recovery(&mut report, args, bins, &sink).await?,
            Scenario::Retention => {
                retention::retention(&mut report, args, bins, &sink).await?;
            }
            Scenario::Signing => signing(&mut report, args, bins, &sink).await?,
            Scenario::Limit => limit::limit(&mut report, args, bins, &sink).await?,
            Scenario::Console => console::console(&mut report, args, bins, &sink).await?,
        }
    }
    let doc = json!({
        "machine": machine,
        "quick": args.quick,
        "seconds": started.elapsed().as_secs(),
        "results": report.results,
        "summary": report.rows.iter().map(|r| json!({
            "figure": r.figure, "value": r.value, "target": r.target, "met": r.met,
        })).collect::<Vec<_>>(),
    });
    let path = args.out.join("results.json");
    std::fs::write(&path, serde_json::to_string_pretty(&doc)?)
        .with_context(|| format!("writing {}", path.display()))?;
    println!(
        "\n{} figures in {:.0} s; JSON in {}",
        report.rows.len(),
        started.elapsed().as_secs_f64(),
        path.display()
    );
    if args.json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
    }
    Ok(())
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    json!({
        "cpu": format!("{cpu}, {cores} cores, {} GiB", mem_kb / (1 << 20)),
        "cores": cores,
    })
}

/// A fresh server with N interval tasks of period P on the grid of `shape`, and what they
/// should deliver over a window of `window_s` seconds starting at the first full period after
/// the last task exists (creation may overrun the first grid point for big N: those tasks'
/// first slots are catch-ups, not measured).
struct GridRun {
    _data: Data,
    server: Server,
    expectation: Expectation,
    create_s: f64,
}

async fn grid_run(
    bins: &Binaries,
    sink: &Sink,
    shape: Shape,
    n: usize,
    period_s: u64,
    window_s: u64,
    signed: bool,
) -> anyhow::Result<GridRun> {
    let data = Data::new(Backend::Sqlite)?;
    let server = Server::start(bins, &data).await?;
    let api = Api::new(&server.base, &server.token)?;
    if signed {
        // Two keys, a rotation's worst case: every call carries two signatures.
        api.create_signing_key().await?;
        api.create_signing_key().await?;
    }
    let period_ms = period_s as i64 * 1000;
    // First grid point after the expected creation time (about 3,000 creations/s is enough).
    let t0 = grid_after(now_ms() + 1_000 + n as i64 / 3, period_ms);
    let phase = |i: usize| match shape {
        Shape::Aligned => 0,
        Shape::Spread => (i as i64 * period_ms) / n as i64,
    };
    let tasks: Vec<IntervalTask> = (0..n)
        .map(|i| IntervalTask {
            endpoint: sink.url("/fire"),
            period_s,
            start_ms: t0 + phase(i),
            n: i,
        })
        .collect();
    let created_at = Instant::now();
    let ids = api.create_all(tasks, 64).await?;
    let create_s = created_at.elapsed().as_secs_f64();
    let from = grid_after(now_ms().max(t0) + 500, period_ms);
    let expectation = Expectation {
        tasks: ids
            .into_iter()
            .enumerate()
            .map(|(i, id)| (id, t0 + phase(i)))
            .collect(),
        period_ms,
        from_ms: from,
        until_ms: from + window_s as i64 * 1000,
    };
    sink.take();
    Ok(GridRun {
        _data: data,
        server,
        expectation,
        create_s,
    })
}

/// Precision: N interval tasks of period P, measured over a window of D seconds.
async fn precision(
    report: &mut Report,
    bins: &Binaries,
    sink: &Sink,
    shape: Shape,
    n: usize,
    period_s: u64,
    window_s: u64,
) -> anyhow::Result<Precision> {
    Ok(
        precision_with(report, bins, sink, shape, n, period_s, window_s, false)
            .await?
            .0,
    )
}

/// [`precision`], with every call signed by two keys when `signed`; also the server's CPU
/// time per expected fire (µs).
#[allow(clippy::too_many_arguments)]
async fn precision_with(
    report: &mut Report,
    bins: &Binaries,
    sink: &Sink,
    shape: Shape,
    n: usize,
    period_s: u64,
    window_s: u64,
    signed: bool,
) -> anyhow::Result<(Precision, f64)> {
    let name = format!(
        "{} {n} tasks / {period_s} s{}",
        shape_name(shape),
        if signed { ", signed" } else { "" }
    );
    eprintln!("· precision: {name}, {window_s} s window");
    let run = grid_run(bins, sink, shape, n, period_s, window_s, signed).await?;
    let (server, expectation) = (&run.server, &run.expectation);
    let (from, until) = (expectation.from_ms, expectation.until_ms);
    sleep_until_ms(from).await;
    let cpu0 = server.cpu()?;
    let rss_peak = watch_rss(server, until).await;
    let cpu = server.cpu()?.saturating_sub(cpu0);
    let rss_peak = rss_peak.max(watch_rss(server, until + grace_ms(n)).await);
    let arrivals = sink.take();
    let p = stats::analyze(&arrivals, expectation);
    let create_s = run.create_s;
    // The server's own count of calls by signatures carried: proof that a signed run signed.
    let calls_by_signatures = outbound_calls_by_signatures(&run.server.base).await;
    run.server.kill9()?;
    let cpu_us_per_fire = cpu.as_micros() as f64 / p.expected.max(1) as f64;
    eprintln!(
        "  tickwheel used {:.2} s of CPU in the window: {cpu_us_per_fire:.0} µs per fire",
        cpu.as_secs_f64()
    );
    report.results.push(json!({
        "scenario": "precision",
        "shape": shape_name(shape),
        "tasks": n,
        "period_s": period_s,
        "window_s": window_s,
        "fires_per_s": n as f64 / period_s as f64,
        "create_s": (create_s * 100.0).round() / 100.0,
        "rss_peak_mib": rss_peak / (1 << 20),
        "cpu_us_per_fire": cpu_us_per_fire.round(),
        "signed": signed,
        "outbound_calls_by_signatures": calls_by_signatures,
        "result": p,
    }));
    let (target, met) = precision_target(shape, n, &p);
    report.row(
        format!("{name}: missed / duplicate"),
        format!("{} / {} of {}", p.missed, p.duplicates, p.expected),
        "0 / 0",
        Some(p.missed == 0 && p.duplicates == 0 && p.unexpected == 0),
    );
    report.row(format!("{name}: lateness"), fmt_precision(&p), &target, met);
    let png = plot_path(&format!("{}-{n}", shape_name(shape)));
    if let Some(png) = png {
        plot::lateness_histogram(
            &png,
            &format!("tickwheel, {name}: lateness of {} fires", p.received),
            &[plot::Series {
                label: "tickwheel",
                lateness_ms: &to_ms(&p.lateness_us),
            }],
        )?;
    }
    Ok((p, cpu_us_per_fire))
}

/// `tickwheel_outbound_calls_total` by its `signatures` label, read from `/metrics`.
async fn outbound_calls_by_signatures(base: &str) -> Value {
    let Ok(resp) = reqwest::get(format!("{base}/metrics")).await else {
        return Value::Null;
    };
    let text = resp.text().await.unwrap_or_default();
    let mut out = serde_json::Map::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("tickwheel_outbound_calls_total{signatures=\"") {
            if let Some((n, count)) = rest.split_once("\"} ") {
                out.insert(
                    n.to_string(),
                    json!(count.trim().parse::<f64>().unwrap_or(0.0)),
                );
            }
        }
    }
    Value::Object(out)
}

/// Signing's cost: aligned and spread runs of the same size, unsigned and signed by two keys,
/// alternately (the order flips each round), two rounds; the p99 of each, side by side.
async fn signing(
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
            (Shape::Spread, 10_000, 5, 30),
        ]
    };
    for &(shape, n, period, window) in runs {
        let mut p99 = [Vec::new(), Vec::new()];
        for round in 0..2 {
            let order = if round % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            for signed in order {
                let (p, _) =
                    precision_with(report, bins, sink, shape, n, period, window, signed).await?;
                p99[signed as usize].push(p.lateness_ms.p99);
            }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        let (off, on) = (mean(&p99[0]), mean(&p99[1]));
        let fmt = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.1}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        report.results.push(json!({
            "scenario": "signing",
            "shape": shape_name(shape),
            "tasks": n,
            "p99_ms_unsigned": p99[0],
            "p99_ms_signed": p99[1],
        }));
        report.row(
            format!(
                "{} {n} / {period} s: p99 unsigned / signed",
                shape_name(shape)
            ),
            format!(
                "{off:.1} / {on:.1} ms ({} / {})",
                fmt(&p99[0]),
                fmt(&p99[1])
            ),
            "",
            None,
        );
    }
    Ok(())
}

fn shape_name(shape: Shape) -> &'static str {
    match shape {
        Shape::Aligned => "aligned",
        Shape::Spread => "spread",
    }
}

/// Where the histogram of a run goes: `<out>/<name>.png`.
fn plot_path(name: &str) -> Option<std::path::PathBuf> {
    OUT.get()
        .map(|out| out.join(format!("lateness-{name}.png")))
}

static OUT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

pub fn set_out(out: &std::path::Path) {
    let _ = OUT.set(out.to_path_buf());
}

fn to_ms(us: &[i64]) -> Vec<i64> {
    us.iter().map(|u| u.div_euclid(1000)).collect()
}

/// The targets for precision runs.
fn precision_target(shape: Shape, n: usize, p: &Precision) -> (String, Option<bool>) {
    let l = &p.lateness_ms;
    match (shape, n) {
        (Shape::Aligned, 10_000) => ("p99 ≤ 150 ms".into(), Some(l.p99 <= 150.0)),
        (Shape::Aligned, 50_000) => ("p99 ≤ 750 ms".into(), Some(l.p99 <= 750.0)),
        (Shape::Spread, 10_000) => (
            "p99 ≤ 5 ms, max ≤ 100 ms".into(),
            Some(l.p99 <= 5.0 && l.max <= 100.0),
        ),
        (Shape::Spread, 100_000) => (
            "p99 ≤ 10 ms, max ≤ 100 ms".into(),
            Some(l.p99 <= 10.0 && l.max <= 100.0),
        ),
        _ => (String::new(), None),
    }
}

/// Sleeps until `until_ms`, sampling the server's RSS; returns the peak.
async fn watch_rss(server: &Server, until_ms: i64) -> u64 {
    let mut peak = 0;
    while now_ms() < until_ms {
        if let Ok(rss) = server.rss_bytes() {
            peak = peak.max(rss);
        }
        let left = (until_ms - now_ms()).clamp(0, 500);
        tokio::time::sleep(Duration::from_millis(left as u64)).await;
    }
    peak
}

/// The aligned scenario on tokio-cron-scheduler, same sink, same analysis.
#[allow(clippy::too_many_arguments)]
async fn peer(
    report: &mut Report,
    bins: &Binaries,
    sink: &Sink,
    ours: &Precision,
    n: usize,
    period_s: u64,
    window_s: u64,
) -> anyhow::Result<()> {
    eprintln!(
        "· peer: tokio-cron-scheduler, aligned {n} tasks / {period_s} s, {window_s} s window"
    );
    if !bins.peer.exists() {
        bail!("no peer binary at {}", bins.peer.display());
    }
    let period_ms = period_s as i64 * 1000;
    let mut child = tokio::process::Command::new(&bins.peer)
        .args([
            "--tasks",
            &n.to_string(),
            "--period",
            &period_s.to_string(),
            "--sink",
            &sink.url("/peer"),
            "--connections",
            "200",
            "--connect-timeout-ms",
            "5000",
            "--request-timeout-ms",
            "15000",
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting tickwheel-peer")?;
    let stdout = child.stdout.take().context("peer stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    loop {
        match tokio::time::timeout(Duration::from_secs(300), lines.next_line()).await {
            Ok(Ok(Some(l))) if l.trim() == "ready" => break,
            Ok(Ok(Some(_))) => continue,
            Ok(Ok(None)) | Ok(Err(_)) => bail!("the peer exited before it was ready"),
            Err(_) => bail!("the peer was not ready within 300 s"),
        }
    }
    let from = grid_after(now_ms() + period_ms, period_ms);
    let until = from + window_s as i64 * 1000;
    sink.take();
    sleep_until_ms(until + grace_ms(n)).await;
    let arrivals = sink.take();
    if let Some(pid) = child.id() {
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(pid as i32, libc::SIGTERM);
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    let expectation = Expectation {
        tasks: (0..n).map(|i| (format!("peer-{i}"), from)).collect(),
        period_ms,
        from_ms: from,
        until_ms: until,
    };
    let p = stats::analyze(&arrivals, &expectation);
    let ratio = if ours.lateness_ms.p99 > 0.0 {
        p.lateness_ms.p99 / ours.lateness_ms.p99
    } else {
        0.0
    };
    report.results.push(json!({
        "scenario": "peer",
        "peer": "tokio-cron-scheduler 0.15 + reqwest 0.12, 200 connections",
        "shape": "aligned",
        "tasks": n,
        "period_s": period_s,
        "window_s": window_s,
        "result": p,
        "tickwheel": ours,
        "p99_ratio_peer_over_tickwheel": (ratio * 10.0).round() / 10.0,
    }));
    let name = format!("peer (tokio-cron-scheduler) aligned {n} / {period_s} s");
    report.row(
        format!("{name}: missed / duplicate"),
        format!("{} / {} of {}", p.missed, p.duplicates, p.expected),
        "",
        None,
    );
    report.row(format!("{name}: lateness"), fmt_precision(&p), "", None);
    report.row("peer p99 / tickwheel p99", format!("{ratio:.1}×"), "", None);
    if let Some(png) = plot_path(&format!("aligned-{n}-vs-peer")) {
        plot::lateness_histogram(
            &png,
            &format!("aligned {n} tasks every {period_s} s: tickwheel vs tokio-cron-scheduler"),
            &[
                plot::Series {
                    label: "tickwheel",
                    lateness_ms: &to_ms(&ours.lateness_us),
                },
                plot::Series {
                    label: "tokio-cron-scheduler",
                    lateness_ms: &to_ms(&p.lateness_us),
                },
            ],
        )?;
    }
    Ok(())
}

/// Throughput: the highest spread fire rate with p99 ≤ 50 ms and nothing missed, and the
/// sink's own limit under wrk.
async fn throughput(
    report: &mut Report,
    args: &Args,
    bins: &Binaries,
    sink: &Sink,
) -> anyhow::Result<()> {
    let (rates, window): (&[usize], u64) = if args.quick {
        (&[2_000], 3)
    } else {
        (
            &[
                2_000, 4_000, 8_000, 12_000, 16_000, 20_000, 24_000, 28_000, 32_000, 36_000,
                40_000, 44_000, 48_000,
            ],
            10,
        )
    };
    let limit = sink_limit(sink, if args.quick { 2 } else { 10 })?;
    let mut best: Option<(usize, Precision)> = None;
    let mut steps = Vec::new();
    for &rate in rates {
        let period_s = 2;
        let n = rate * period_s as usize;
        eprintln!("· throughput: {rate} fires/s ({n} tasks / {period_s} s)");
        let run = grid_run(bins, sink, Shape::Spread, n, period_s, window, false).await?;
        sleep_until_ms(run.expectation.until_ms + grace_ms(n)).await;
        let arrivals = sink.take();
        let p = stats::analyze(&arrivals, &run.expectation);
        run.server.kill9()?;
        let ok = p.missed == 0 && p.duplicates == 0 && p.lateness_ms.p99 <= 50.0;
        eprintln!(
            "  missed {} duplicate {} {} → {}",
            p.missed,
            p.duplicates,
            fmt_precision(&p),
            if ok { "sustained" } else { "not sustained" }
        );
        steps.push(json!({"rate": rate, "sustained": ok, "result": p}));
        if !ok {
            break;
        }
        best = Some((rate, p));
    }
    let best_rate = best.as_ref().map(|(r, _)| *r).unwrap_or(0);
    let ratio = limit.map(|l| best_rate as f64 / l);
    report.results.push(json!({
        "scenario": "throughput",
        "steps": steps,
        "sustained_fires_per_s": best_rate,
        "sink_limit_rps": limit,
        "ratio": ratio,
    }));
    report.row(
        "sink's own limit (wrk -t1 -c200, POST)",
        limit
            .map(|l| format!("{l:.0} req/s"))
            .unwrap_or_else(|| "not measured (apt-get install wrk)".into()),
        "",
        None,
    );
    report.row(
        "sustained fires/s (p99 ≤ 50 ms, none missed, all logged)",
        format!(
            "{best_rate}/s{}",
            ratio
                .map(|r| format!(" = {:.0} % of the sink", r * 100.0))
                .unwrap_or_default()
        ),
        "≥ 30 % of the sink's limit",
        ratio.map(|r| r >= 0.30),
    );
    Ok(())
}

/// The sink's own limit: wrk with 200 connections posting a task-like body.
fn sink_limit(sink: &Sink, seconds: u64) -> anyhow::Result<Option<f64>> {
    if std::process::Command::new("wrk")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("wrk is not installed (apt-get install wrk): the sink's limit is not measured");
        return Ok(None);
    }
    eprintln!("· sink limit: wrk -t1 -c200 -d{seconds}s");
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("post.lua");
    std::fs::write(
        &script,
        "wrk.method = \"POST\"\nwrk.body = '{\"n\":1}'\n\
         wrk.headers[\"Content-Type\"] = \"application/json\"\n\
         wrk.headers[\"webhook-id\"] = \"load:0\"\n",
    )?;
    let out = std::process::Command::new("wrk")
        .args([
            "-t1",
            "-c200",
            &format!("-d{seconds}s"),
            "-s",
            &script.display().to_string(),
            &sink.url("/load"),
        ])
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok());
    if rps.is_none() {
        eprintln!("wrk printed no Requests/sec:\n{text}");
    }
    Ok(rps)
}

/// Memory: resident memory per idle future task.
async fn memory(report: &mut Report, args: &Args, bins: &Binaries) -> anyhow::Result<()> {
    let sizes: &[usize] = if !args.memory_sizes.is_empty() {
        &args.memory_sizes
    } else if args.quick {
        &[10_000]
    } else {
        &[100_000, 1_000_000]
    };
    let data = Data::new(Backend::Sqlite)?;
    let server = Server::start(bins, &data).await?;
    let api = Api::new(&server.base, &server.token)?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss0 = server.rss_bytes()?;
    let mut created = 0;
    let mut points = Vec::new();
    for &n in sizes {
        eprintln!("· memory: {n} idle tasks");
        // Idle: first run in a day.
        let start = now_ms() + 86_400_000;
        let batch = 20_000;
        while created < n {
            let k = batch.min(n - created);
            let tasks = (created..created + k)
                .map(|i| IntervalTask {
                    endpoint: "http://127.0.0.1:9/idle".into(),
                    period_s: 86_400,
                    start_ms: start + (i % 86_400) as i64 * 1000,
                    n: i,
                })
                .collect();
            api.create_all(tasks, 64).await?;
            created += k;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss = server.rss_bytes()?;
        let per = (rss.saturating_sub(rss0)) as f64 / n as f64;
        points.push(json!({"tasks": n, "rss_bytes": rss, "bytes_per_task": per.round()}));
        let target_met = (n == 1_000_000).then_some(per <= 2048.0);
        report.row(
            format!("memory per idle task at {n} tasks"),
            format!("{:.0} B (RSS {} MiB)", per, rss >> 20),
            if n == 1_000_000 { "≤ 2 KiB" } else { "" },
            target_met,
        );
    }
    // The same tasks after a restart (recovered from the database, not created).
    server.kill9()?;
    let server = Server::start(bins, &data).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = server.rss_bytes()?;
    let per = rss.saturating_sub(rss0) as f64 / created as f64;
    report.row(
        format!("memory per idle task after kill -9 and restart, {created} tasks"),
        format!("{per:.0} B (RSS {} MiB)", rss >> 20),
        "",
        None,
    );
    points.push(json!({"tasks": created, "after_restart": true, "rss_bytes": rss}));
    server.kill9()?;
    report.results.push(json!({
        "scenario": "memory",
        "rss_at_zero_bytes": rss0,
        "points": points,
    }));
    Ok(())
}

/// API: creations per second, durable (201 after commit), 64 clients, on both backends.
async fn api(report: &mut Report, args: &Args, bins: &Binaries) -> anyhow::Result<()> {
    let n = if args.quick { 1_000 } else { 20_000 };
    let mut results = Vec::new();
    for backend in [Backend::Sqlite, Backend::MariaDb] {
        eprintln!("· api: {n} creations on {}", backend.name());
        let data = Data::new(backend)?;
        let server = Server::start(bins, &data).await?;
        let api = Api::new(&server.base, &server.token)?;
        let start = now_ms() + 86_400_000;
        let tasks = (0..n)
            .map(|i| IntervalTask {
                endpoint: "http://127.0.0.1:9/idle".into(),
                period_s: 3_600,
                start_ms: start,
                n: i,
            })
            .collect();
        let t = Instant::now();
        api.create_all(tasks, 64).await?;
        let rate = n as f64 / t.elapsed().as_secs_f64();
        server.kill9()?;
        results
            .push(json!({"backend": backend.name(), "creations": n, "per_second": rate.round()}));
        report.row(
            format!("creations/s, {}, 64 clients", backend.name()),
            format!("{rate:.0}/s"),
            if backend == Backend::Sqlite {
                "≥ 5,000"
            } else {
                ""
            },
            (backend == Backend::Sqlite).then_some(rate >= 5_000.0),
        );
    }
    report
        .results
        .push(json!({"scenario": "api", "results": results}));
    Ok(())
}

/// Recovery: N tasks in the database, a tenth of them overdue after `kill -9`; time from
/// process start to ready and to every overdue task fired.
async fn recovery(
    report: &mut Report,
    args: &Args,
    bins: &Binaries,
    sink: &Sink,
) -> anyhow::Result<()> {
    let n = if args.quick { 2_000 } else { 100_000 };
    let overdue = n / 10;
    eprintln!("· recovery: {n} tasks, {overdue} overdue at restart");
    let data = Data::new(Backend::Sqlite)?;
    let server = Server::start(bins, &data).await?;
    let api = Api::new(&server.base, &server.token)?;
    let later = now_ms() + 3_600_000;
    let future = (overdue..n)
        .map(|i| IntervalTask {
            endpoint: sink.url("/recovery"),
            period_s: 3_600,
            start_ms: later + (i % 3_600) as i64 * 1000,
            n: i,
        })
        .collect();
    api.create_all(future, 64).await?;
    // The overdue ones fall due while the process is down.
    let due = now_ms() + 2_000 + overdue as i64 / 2;
    let soon = (0..overdue)
        .map(|i| IntervalTask {
            endpoint: sink.url("/recovery"),
            period_s: 3_600,
            start_ms: due,
            n: i,
        })
        .collect();
    let overdue_ids: HashSet<String> = api.create_all(soon, 64).await?.into_iter().collect();
    if now_ms() >= due {
        bail!("creating the overdue tasks took longer than planned; they fired before the kill");
    }
    server.kill9()?;
    sleep_until_ms(due + 1_000).await;
    sink.take();
    let server = Server::spawn(bins, &data)?;
    let ready = server.wait_ready(Duration::from_secs(120)).await?;
    // Wait for every overdue task's catch-up fire.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut all_fired = None;
    let mut arrivals = Vec::new();
    while Instant::now() < deadline {
        arrivals.extend(sink.take());
        if stats::distinct_tasks(&arrivals, &overdue_ids).len() == overdue {
            all_fired = Some(server.started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rss = server.rss_bytes()?;
    server.kill9()?;
    let fired = stats::distinct_tasks(&arrivals, &overdue_ids).len();
    let catchups_per_task = arrivals.len() as f64 / overdue.max(1) as f64;
    report.results.push(json!({
        "scenario": "recovery",
        "tasks": n,
        "overdue": overdue,
        "ready_ms": ready.as_millis(),
        "all_overdue_fired_ms": all_fired.map(|d| d.as_millis()),
        "overdue_fired": fired,
        "fires_per_overdue_task": catchups_per_task,
        "rss_after_bytes": rss,
    }));
    report.row(
        format!("recovery, {n} tasks: process start → ready"),
        format!("{:.2} s", ready.as_secs_f64()),
        if n == 100_000 { "≤ 2 s" } else { "" },
        (n == 100_000).then_some(ready <= Duration::from_secs(2)),
    );
    report.row(
        format!("recovery: → all {overdue} overdue tasks fired"),
        match all_fired {
            Some(d) => format!(
                "{:.2} s ({catchups_per_task:.2} fires per task)",
                d.as_secs_f64()
            ),
            None => format!("only {fired} of {overdue} fired within 120 s"),
        },
        "",
        None,
    );
    Ok(())
}
