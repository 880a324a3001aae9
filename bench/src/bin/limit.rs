//! `tickwheel-limit`: the yardstick — what tickwheel does, minus the scheduling. It sends the
//! calls of N interval "tasks" on their grid with the client tickwheel's HTTP workers use
//! (awc, one client per worker thread, the pool split between them, the same timeouts,
//! headers of the same names and sizes, the same body), as many threads as tickwheel has
//! workers and as many calls in flight in all as tickwheel's pool allows. Aligned: every task
//! of a grid point is sent at once; spread: each task at its own phase, a steady rate. Nothing
//! is stored, logged or decided: the lateness it reaches is the best any awc-based scheduler
//! could reach on this machine in this run.
//!
//! Task `i` is `limit-<i in 30 digits>` (a UUID's length); each call carries
//! `webhook-id: <task>:<slot ms>`, so the bench's sink and analysis treat its arrivals as
//! tickwheel's. At the end it prints one JSON line: calls sent, failed, and its CPU time.
//!
//! ```text
//! tickwheel-limit --sink http://127.0.0.1:PORT/limit --tasks 10000 --period-ms 5000 \
//!     --from-ms <epoch ms> --until-ms <epoch ms> --shape aligned
//! ```

use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use tokio::sync::Semaphore;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Shape {
    Aligned,
    Spread,
}

#[derive(Parser, Debug, Clone)]
#[command(about = "Send interval tasks' calls on their grid with no scheduler: the yardstick")]
struct Args {
    /// Where every call goes.
    #[arg(long)]
    sink: String,
    #[arg(long)]
    tasks: usize,
    #[arg(long)]
    period_ms: i64,
    /// The first grid point (epoch ms); calls go to every grid point in [from, until).
    #[arg(long)]
    from_ms: i64,
    #[arg(long)]
    until_ms: i64,
    #[arg(long, value_enum, default_value_t = Shape::Aligned)]
    shape: Shape,
    /// Sending threads: tickwheel's `http.workers` (2).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Calls in flight in all: tickwheel's `http.pool_size` (200).
    #[arg(long, default_value_t = 200)]
    in_flight: usize,
    #[arg(long, default_value_t = 5000)]
    connect_timeout_ms: u64,
    #[arg(long, default_value_t = 15000)]
    request_timeout_ms: u64,
}

/// Task `i`'s id, as the bench expects it: 36 characters, a UUID's length.
fn task_id(i: usize) -> String {
    format!("limit-{i:030}")
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// CPU time of the whole process (user + system), in µs.
fn process_cpu_us() -> i64 {
    // SAFETY: `usage` is a valid, writable rusage; RUSAGE_SELF is a constant Linux knows.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0;
    }
    let us = |t: libc::timeval| t.tv_sec * 1_000_000 + t.tv_usec;
    us(usage.ru_utime) + us(usage.ru_stime)
}

/// One sending thread: its share of the tasks (`i % threads == index`), in phase order, on a
/// single-threaded actix runtime with its own awc client, as a tickwheel HTTP worker.
fn run_thread(args: Rc<Args>, index: usize) -> (u64, u64) {
    let system = actix_rt::System::new();
    system.block_on(async move {
        let per_thread = (args.in_flight / args.threads).max(1);
        let client = awc::Client::builder()
            .connector(
                awc::Connector::new()
                    .limit(per_thread)
                    .timeout(Duration::from_millis(args.connect_timeout_ms)),
            )
            .timeout(Duration::from_millis(args.request_timeout_ms))
            .disable_redirects()
            .add_default_header((awc::http::header::USER_AGENT, "tickwheel/0.1.0"))
            .finish();
        let permits = Rc::new(Semaphore::new(per_thread));
        let n = args.tasks;
        let period = args.period_ms;
        let phase = |i: usize| match args.shape {
            Shape::Aligned => 0,
            Shape::Spread => (i as i64 * period) / n as i64,
        };
        let mine: Vec<(i64, usize)> = (index..n)
            .step_by(args.threads)
            .map(|i| (phase(i), i))
            .collect();
        let bodies: Vec<Bytes> = mine
            .iter()
            .map(|&(_, i)| Bytes::from(format!("{{\"n\":{i}}}")))
            .collect();
        let sent = Rc::new(std::cell::Cell::new(0u64));
        let failed = Rc::new(std::cell::Cell::new(0u64));
        let mut k = 0i64;
        'grid: loop {
            for (j, &(ph, i)) in mine.iter().enumerate() {
                let slot = args.from_ms + ph + k * period;
                if slot >= args.until_ms {
                    break 'grid;
                }
                let wait = slot - now_ms();
                if wait > 0 {
                    tokio::time::sleep(Duration::from_millis(wait as u64)).await;
                }
                let mut id = task_id(i);
                let req = client
                    .post(args.sink.as_str())
                    .no_decompress()
                    .insert_header(("accept-encoding", "identity"))
                    .insert_header(("x-tickwheel-task-id", id.as_str()));
                id.push(':');
                id.push_str(&slot.to_string());
                let req = req
                    .insert_header(("webhook-id", id))
                    .insert_header(("webhook-timestamp", now_ms() / 1000))
                    .insert_header((awc::http::header::CONTENT_TYPE, "application/json"));
                let body = bodies[j].clone();
                let permits = permits.clone();
                let (sent, failed) = (sent.clone(), failed.clone());
                actix_rt::spawn(async move {
                    let Ok(_permit) = permits.acquire().await else {
                        return;
                    };
                    sent.set(sent.get() + 1);
                    let ok = match req.send_body(body).await {
                        Ok(mut resp) => resp.body().await.is_ok() && resp.status().is_success(),
                        Err(_) => false,
                    };
                    if !ok {
                        failed.set(failed.get() + 1);
                    }
                });
            }
            k += 1;
        }
        // Every call spawned has finished once all permits are free again.
        let expected = mine.len() as u64 * k.max(0) as u64;
        while sent.get() < expected || permits.available_permits() < per_thread {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (sent.get(), failed.get())
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.tasks == 0 || args.period_ms <= 0 || args.threads == 0 {
        anyhow::bail!("--tasks, --period-ms and --threads must be positive");
    }
    let cpu0 = process_cpu_us();
    let handles: Vec<_> = (0..args.threads)
        .map(|index| {
            let args = args.clone();
            std::thread::Builder::new()
                .name(format!("limit-{index}"))
                .spawn(move || run_thread(Rc::new(args), index))
                .context("starting a sending thread")
        })
        .collect::<anyhow::Result<_>>()?;
    let (mut sent, mut failed) = (0, 0);
    for h in handles {
        let (s, f) = h
            .join()
            .map_err(|_| anyhow::anyhow!("a sending thread panicked"))?;
        sent += s;
        failed += f;
    }
    println!(
        "{}",
        serde_json::json!({"sent": sent, "failed": failed, "cpu_us": process_cpu_us() - cpu0})
    );
    Ok(())
}
