//! `tickwheel-peer`: the comparison scheduler of the benchmark.
//!
//! tickwheel's precision numbers mean little on their own, so the benchmark runs this binary
//! side by side with tickwheel, against the same sink, and compares how late each one fires.
//! It is what a careful user of [tokio-cron-scheduler] 0.15 would write for the same workload:
//! `--tasks` cron jobs, all on `*/P * * * * *` (UTC, seconds field first), so every `P` seconds
//! all of them fire at once (the aligned worst case). Each fire sends `POST <sink>` with body
//! `{"n": i}` and header `webhook-id: peer-<i>:<scheduled epoch ms>` through one shared
//! [`reqwest::Client`], with at most `--connections` requests in flight (the same cap as
//! tickwheel's connection pool).
//!
//! Protocol with the benchmark driver: once every job is registered and the scheduler runs,
//! it prints one line `ready` on stdout; on SIGTERM or SIGINT it prints `errors=<n>` on stderr
//! (failed sends plus non-2xx answers) and exits 0.
//!
//! How tokio-cron-scheduler 0.15 fires (read from its source; it shapes the numbers):
//! - one ticker task wakes every 500 ms (`tokio::time::sleep(500ms)` in a loop, not aligned to
//!   the second) and fires every job whose next tick (whole epoch seconds) is not after now, so
//!   a fire is 0–500 ms late by design, plus the time to go through all due jobs;
//! - the next tick is recomputed from the ticker's `now`, so a slot missed by more than a
//!   period is skipped, not caught up;
//! - every fire goes through `tokio::sync::broadcast` channels whose capacity is the
//!   scheduler's channel size (200 with `JobScheduler::new()`): a burst larger than that makes
//!   the job runner lag and silently drop activations, so the channel size is sized to the job
//!   count here (`JobScheduler::new_with_channel_size`), as a user with that many jobs must do;
//! - adding a job is a round trip through the same channels, so jobs are added one at a time
//!   (concurrent adds beyond the channel size make the job creator's receiver lag, and it stops
//!   for good on that error).
//!
//! [tokio-cron-scheduler]: https://docs.rs/tokio-cron-scheduler/0.15

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Semaphore;
use tokio_cron_scheduler::{Job, JobScheduler};

/// The peer scheduler (tokio-cron-scheduler) the tickwheel benchmark compares against.
#[derive(Debug, Parser)]
#[command(name = "tickwheel-peer", version)]
struct Args {
    /// Number of cron jobs.
    #[arg(long)]
    tasks: u32,
    /// Period in seconds; must divide 60 (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60).
    #[arg(long)]
    period: u32,
    /// URL every fire is sent to with POST, e.g. `http://127.0.0.1:8080/peer`.
    #[arg(long)]
    sink: String,
    /// Most HTTP requests (and so connections) in flight at once.
    #[arg(long, default_value_t = 200)]
    connections: usize,
    /// TCP connect timeout, in milliseconds.
    #[arg(long, default_value_t = 5_000)]
    connect_timeout_ms: u64,
    /// Whole-request timeout (connect, send, read the answer), in milliseconds.
    #[arg(long, default_value_t = 15_000)]
    request_timeout_ms: u64,
    /// Capacity of tokio-cron-scheduler's internal broadcast channels; 0 sizes them to the
    /// burst (twice the job count, at least the library's default of 200).
    #[arg(long, default_value_t = 0)]
    channel_size: usize,
}

/// What every fire shares: the client, the connection cap and the error count.
struct Shared {
    client: reqwest::Client,
    sink: reqwest::Url,
    permits: Semaphore,
    errors: AtomicU64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The cron expression for "every `period` seconds, on the minute's grid".
fn cron_expr(period: u32) -> String {
    if period == 60 {
        // Once a minute is second 0; no need to rely on how a step of 60 is read.
        "0 * * * * *".to_string()
    } else {
        format!("*/{period} * * * * *")
    }
}

/// One fire of job `n` for grid instant `scheduled_ms`: waits for a connection permit, POSTs,
/// reads the whole answer, and counts a failure or a non-2xx answer as an error.
async fn fire(shared: Arc<Shared>, n: u32, scheduled_ms: u64) {
    let ok = match shared.permits.acquire().await {
        Ok(_permit) => {
            let sent = shared
                .client
                .post(shared.sink.clone())
                .header("webhook-id", format!("peer-{n}:{scheduled_ms}"))
                .json(&serde_json::json!({ "n": n }))
                .send()
                .await;
            match sent {
                Ok(resp) => {
                    let success = resp.status().is_success();
                    // Read the body fully so the connection goes back to the pool.
                    resp.bytes().await.is_ok() && success
                }
                Err(_) => false,
            }
        }
        // The semaphore is never closed; count it rather than assume it.
        Err(_) => false,
    };
    if !ok {
        shared.errors.fetch_add(1, Ordering::Relaxed);
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.tasks == 0 {
        bail!("--tasks must be at least 1");
    }
    if args.period == 0 || 60 % args.period != 0 {
        bail!("--period must divide 60 (got {})", args.period);
    }
    if args.connections == 0 {
        bail!("--connections must be at least 1");
    }
    let sink = reqwest::Url::parse(&args.sink)
        .with_context(|| format!("--sink is not a URL: {}", args.sink))?;
    let period_ms = u64::from(args.period) * 1000;
    // Installed before anything else so a signal sent right after `ready` is never lost.
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;

    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_millis(args.connect_timeout_ms))
        .timeout(Duration::from_millis(args.request_timeout_ms))
        .pool_max_idle_per_host(args.connections)
        // Like tickwheel: a 3xx is an answer, not something to follow.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("building the HTTP client")?;
    let shared = Arc::new(Shared {
        client,
        sink,
        permits: Semaphore::new(args.connections),
        errors: AtomicU64::new(0),
    });

    let channel_size = if args.channel_size == 0 {
        (args.tasks as usize).saturating_mul(2).max(200)
    } else {
        args.channel_size
    };
    let mut sched = JobScheduler::new_with_channel_size(channel_size)
        .await
        .context("creating the scheduler")?;
    // Started before the jobs are added: each job's first tick is then the next grid point
    // after its own creation, so no job carries a stale first tick (one created before
    // `start` and already past due when the ticker begins would fire once off the grid).
    sched.start().await.context("starting the scheduler")?;

    let expr = cron_expr(args.period);
    let started = Instant::now();
    for n in 0..args.tasks {
        let shared = shared.clone();
        // `Job::new_async` interprets the expression in UTC (`new_async_tz(.., Utc, ..)`).
        // The library spawns the returned future as a task of its own, so the request never
        // blocks the ticker or the job runner.
        let job = Job::new_async(expr.as_str(), move |_id, _sched| {
            // tokio-cron-scheduler does not tell a job which instant it fires for (its stored
            // `last_tick` is the ticker's wall clock, and is updated concurrently with the run).
            // The scheduled instant is taken as the latest grid point at or before now, which
            // is right as long as the fire is less than one period late.
            let scheduled_ms = now_ms() / period_ms * period_ms;
            Box::pin(fire(shared.clone(), n, scheduled_ms))
        })
        .with_context(|| format!("creating job {n} with schedule {expr:?}"))?;
        sched
            .add(job)
            .await
            .with_context(|| format!("adding job {n}"))?;
    }
    eprintln!(
        "peer: {} jobs on {expr:?} (UTC) added in {} ms, channel size {channel_size}",
        args.tasks,
        started.elapsed().as_millis()
    );

    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready").context("writing ready")?;
        out.flush().context("flushing stdout")?;
    }

    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    // Stops the ticker; requests still in flight are dropped with the runtime.
    if let Err(e) = sched.shutdown().await {
        eprintln!("peer: scheduler shutdown: {e:?}");
    }
    eprintln!("errors={}", shared.errors.load(Ordering::Relaxed));
    Ok(())
}
