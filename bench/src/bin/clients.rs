//! `tickwheel-clients`: what one HTTP call costs the client that sends it — awc, the client
//! tickwheel's HTTP workers use, against hyper's own client and reqwest — measured the same
//! way, on one thread each, against the bench's sink on a thread of its own.
//!
//! Each round sends `--requests` POSTs with a task's JSON body and tickwheel's per-call
//! headers, `--connections` at a time over kept-alive connections, and reports the wall time,
//! the calls per second and the CPU time of the client's thread per call. Rounds alternate
//! between the clients so that a machine whose speed drifts treats them alike.
//!
//! ```text
//! cargo run --release -p tickwheel-bench --bin tickwheel-clients
//! cargo run --release -p tickwheel-bench --bin tickwheel-clients -- --requests 50000 --rounds 5
//! ```

#[path = "../sink.rs"]
#[allow(dead_code)]
mod sink;

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt as _, Full};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Kind {
    Awc,
    Hyper,
    Reqwest,
}

#[derive(Parser, Debug)]
#[command(about = "CPU per HTTP call of awc, hyper and reqwest against the bench's sink")]
struct Args {
    /// Clients to measure.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "awc,hyper,reqwest"
    )]
    clients: Vec<Kind>,
    /// Calls per round.
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Calls in flight at once (tickwheel's default connection cap is 200).
    #[arg(long, default_value_t = 200)]
    connections: usize,
    /// Measured rounds per client (after one warm-up round each).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

const BODY: &str =
    r#"{"event":"tick","payload":{"customer":"c-1042","amount":12.5,"tags":["a","b"]}}"#;
const TASK_ID: &str = "0192f0c4-6a3e-7b21-9a4d-3f5e8c7b1a20";

#[derive(Debug, Clone, Copy)]
struct Round {
    wall: Duration,
    thread_cpu_us: i64,
    failed: usize,
}

/// CPU time of the calling thread, in µs.
fn thread_cpu_us() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant Linux knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec * 1_000_000 + ts.tv_nsec / 1_000
}

/// `connections` loops sharing one counter, each sending calls until `n` were started.
async fn drive<F, Fut>(n: usize, connections: usize, call: F) -> Round
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let next = Rc::new(Cell::new(0usize));
    let failed = Rc::new(Cell::new(0usize));
    let cpu0 = thread_cpu_us();
    let start = Instant::now();
    let call = &call;
    let loops = (0..connections).map(|_| {
        let next = next.clone();
        let failed = failed.clone();
        async move {
            loop {
                let i = next.get();
                if i >= n {
                    break;
                }
                next.set(i + 1);
                if !call(i).await {
                    failed.set(failed.get() + 1);
                }
            }
        }
    });
    futures_util::future::join_all(loops).await;
    Round {
        wall: start.elapsed(),
        thread_cpu_us: thread_cpu_us() - cpu0,
        failed: failed.get(),
    }
}

fn webhook_id(i: usize) -> String {
    // `load:` ids are answered but not recorded by the sink.
    format!("load:{TASK_ID}:{i}")
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One round with awc, as tickwheel's workers build it: one client with a connection cap, no
/// client timeout or redirects, a default user agent.
fn run_awc(url: String, n: usize, connections: usize) -> Round {
    let system = actix_rt::System::new();
    system.block_on(async move {
        let client = awc::Client::builder()
            .connector(awc::Connector::new().limit(connections))
            .disable_timeout()
            .disable_redirects()
            .add_default_header((awc::http::header::USER_AGENT, "tickwheel/bench"))
            .finish();
        let body = Bytes::from_static(BODY.as_bytes());
        drive(n, connections, |i| {
            let req = client
                .post(url.as_str())
                .insert_header(("x-tickwheel-task-id", TASK_ID))
                .insert_header(("webhook-id", webhook_id(i)))
                .insert_header(("webhook-timestamp", now_s()))
                .insert_header((awc::http::header::CONTENT_TYPE, "application/json"));
            let body = body.clone();
            async move {
                match req.send_body(body).await {
                    Ok(mut resp) => resp.body().await.is_ok() && resp.status().is_success(),
                    Err(_) => false,
                }
            }
        })
        .await
    })
}

fn current_thread_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// hyper's own pooled client (hyper-util), on a current-thread runtime.
fn run_hyper(url: String, n: usize, connections: usize) -> anyhow::Result<Round> {
    use hyper_util::client::legacy::{connect::HttpConnector, Client};
    let rt = current_thread_runtime()?;
    let uri: hyper::Uri = url.parse().context("sink URL")?;
    Ok(rt.block_on(async move {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        let client: Client<_, Full<Bytes>> = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_max_idle_per_host(connections)
            .build(http);
        let body = Bytes::from_static(BODY.as_bytes());
        drive(n, connections, |i| {
            let req = hyper::Request::post(uri.clone())
                .header("user-agent", "tickwheel/bench")
                .header("x-tickwheel-task-id", TASK_ID)
                .header("webhook-id", webhook_id(i))
                .header("webhook-timestamp", now_s())
                .header("content-type", "application/json")
                .body(Full::new(body.clone()));
            let client = &client;
            async move {
                let Ok(req) = req else { return false };
                match client.request(req).await {
                    Ok(resp) => {
                        let ok = resp.status().is_success();
                        resp.into_body().collect().await.is_ok() && ok
                    }
                    Err(_) => false,
                }
            }
        })
        .await
    }))
}

/// reqwest (over hyper), on a current-thread runtime.
fn run_reqwest(url: String, n: usize, connections: usize) -> anyhow::Result<Round> {
    let rt = current_thread_runtime()?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("tickwheel/bench")
        .build()
        .context("building reqwest")?;
    Ok(rt.block_on(async move {
        drive(n, connections, |i| {
            let req = client
                .post(url.as_str())
                .header("x-tickwheel-task-id", TASK_ID)
                .header("webhook-id", webhook_id(i))
                .header("webhook-timestamp", now_s())
                .header("content-type", "application/json")
                .body(BODY);
            async move {
                match req.send().await {
                    Ok(resp) => {
                        let ok = resp.status().is_success();
                        resp.bytes().await.is_ok() && ok
                    }
                    Err(_) => false,
                }
            }
        })
        .await
    }))
}

/// Runs one round of `kind` on a fresh thread of its own.
fn round_of(kind: Kind, url: &str, args: &Args) -> anyhow::Result<Round> {
    let url = url.to_string();
    let (n, c) = (args.requests, args.connections);
    let handle = std::thread::Builder::new()
        .name(format!("{kind:?}").to_lowercase())
        .spawn(move || match kind {
            Kind::Awc => Ok(run_awc(url, n, c)),
            Kind::Hyper => run_hyper(url, n, c),
            Kind::Reqwest => run_reqwest(url, n, c),
        })
        .context("starting a client thread")?;
    handle
        .join()
        .map_err(|_| anyhow::anyhow!("the {kind:?} client thread panicked"))?
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let sink = sink::Sink::start()?;
    let url = sink.url("/hook");
    println!(
        "{} calls per round, {} in flight, {} rounds per client (+1 warm-up), sink at {url}",
        args.requests, args.connections, args.rounds
    );
    let mut results: Vec<(Kind, Vec<Round>)> = args.clients.iter().map(|k| (*k, vec![])).collect();
    for (kind, _) in &results {
        round_of(*kind, &url, &args)?;
    }
    for _ in 0..args.rounds {
        for (kind, rounds) in results.iter_mut() {
            rounds.push(round_of(*kind, &url, &args)?);
        }
    }
    println!();
    println!(
        "| client | calls/s (each round) | client thread CPU per call (each round) | failed |"
    );
    println!("|---|---|---|---|");
    let mut json = Vec::new();
    for (kind, rounds) in &results {
        let rates: Vec<f64> = rounds
            .iter()
            .map(|r| args.requests as f64 / r.wall.as_secs_f64())
            .collect();
        let cpu: Vec<f64> = rounds
            .iter()
            .map(|r| r.thread_cpu_us as f64 / args.requests as f64)
            .collect();
        let failed: usize = rounds.iter().map(|r| r.failed).sum();
        let fmt = |v: &[f64], unit: &str| {
            v.iter()
                .map(|x| format!("{x:.1}{unit}"))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        println!(
            "| {kind:?} | {} | {} | {failed} |",
            fmt(&rates, ""),
            fmt(&cpu, " µs")
        );
        json.push(serde_json::json!({
            "client": format!("{kind:?}").to_lowercase(),
            "calls_per_s": rates,
            "client_cpu_us_per_call": cpu,
            "failed": failed,
        }));
    }
    println!();
    println!(
        "{}",
        serde_json::json!({
            "requests": args.requests,
            "connections": args.connections,
            "results": json,
        })
    );
    Ok(())
}
