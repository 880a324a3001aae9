//! `tickwheel-bench`: fire-precision benchmark. Starts tickwheel in this process on a
//! temporary SQLite database (or `--database-url`), a local sink that records every arrival,
//! creates N interval tasks over the REST API, lets them run, and reports fire lateness
//! (arrival at the sink minus scheduled time) and missed / duplicate fires.
//!
//! ```text
//! cargo run --release --bin tickwheel-bench -- --tasks 1000 --period 1 --duration 20
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use anyhow::Context as _;
use clap::Parser;
use futures_util::stream::{self, StreamExt};
use tickwheel::config::Settings;
use tickwheel::startup::Application;
use tickwheel::time::{now_ms, to_rfc3339};

#[derive(Parser, Debug)]
#[command(about = "Measure tickwheel's fire lateness against a local sink")]
struct Args {
    /// Number of interval tasks.
    #[arg(long, default_value_t = 1000)]
    tasks: usize,
    /// Interval of every task, in seconds.
    #[arg(long, default_value_t = 1)]
    period: u64,
    /// How long to measure, in seconds.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// `aligned`: every task on the same grid (a burst of N calls per period);
    /// `spread`: phases spread evenly over the period.
    #[arg(long, default_value = "aligned")]
    shape: String,
    /// Database URL; default a SQLite file in a temporary directory.
    #[arg(long)]
    database_url: Option<String>,
    /// HTTP worker actors.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Print the report as JSON too.
    #[arg(long)]
    json: bool,
    /// Run without recording metrics (to measure what counting costs).
    #[arg(long)]
    no_metrics: bool,
}

type Arrivals = Arc<Mutex<Vec<(String, i64)>>>;

fn start_sink() -> anyhow::Result<(u16, Arrivals)> {
    let arrivals: Arrivals = Arc::new(Mutex::new(Vec::with_capacity(1 << 20)));
    let shared = arrivals.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let sys = actix_web::rt::System::new();
        let result = sys.block_on(async move {
            // `bind` (not `listen` on a std listener, whose backlog is 128) so that a burst of
            // new connections does not overflow the accept queue and stall in SYN retries.
            let server = HttpServer::new(move || {
                App::new()
                    .app_data(web::Data::new(shared.clone()))
                    .default_service(web::to(record))
            })
            .workers(2)
            .backlog(4096)
            .max_connection_rate(4096)
            .disable_signals()
            .bind(("127.0.0.1", 0))?;
            let port = server.addrs().first().map(|a| a.port()).unwrap_or(0);
            let _ = tx.send(port);
            server.run().await
        });
        if let Err(e) = result {
            eprintln!("sink stopped: {e}");
        }
    });
    let port = rx.recv().context("sink did not start")?;
    Ok((port, arrivals))
}

async fn record(req: HttpRequest, arrivals: web::Data<Arrivals>) -> HttpResponse {
    let at = now_ms();
    if let Some(id) = req
        .headers()
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
    {
        if let Ok(mut a) = arrivals.lock() {
            a.push((id.to_string(), at));
        }
    }
    HttpResponse::Ok().body("OK")
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile_dir()?;
    let db_url = args
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}/bench.db?mode=rwc", dir.display()));
    let mut settings = Settings::from_toml("")?;
    settings.server.bind = "127.0.0.1:0".into();
    settings.database.url = db_url;
    settings.crypto.key_file = dir.join("master.key");
    settings.http.allow_private_targets = true;
    settings.http.workers = args.workers;
    settings.ratelimit.per_host_rps = 1_000_000;
    settings.ratelimit.per_host_burst = 1_000_000;
    settings.log.level = "warn".into();
    settings.metrics.enabled = !args.no_metrics;
    tickwheel::telemetry::init(&settings.log);
    let secret = "bench-secret".to_string();
    settings.auth.jwt_secret = secrecy::SecretString::from(secret.clone());

    let (sink_port, arrivals) = start_sink()?;
    actix_web::rt::System::new().block_on(async move {
        let app = Application::build(settings).await?;
        let base = format!("http://127.0.0.1:{}", app.port());
        actix_web::rt::spawn(app.run_until_stopped());
        let token = tickwheel::auth::issue_token(&secret, 1, true, Duration::from_secs(3600))?;
        let client = reqwest_like::Client::new();

        let period_ms = (args.period * 1000) as i64;
        // Leave time to create every task before the first slot.
        let lead_ms = 3000 + (args.tasks as i64) / 2;
        let t0 = (now_ms() + lead_ms) / 1000 * 1000 + 1000;
        let spread = args.shape == "spread";
        let started = Instant::now();
        let bodies: Vec<(usize, String)> = (0..args.tasks)
            .map(|i| {
                let phase = if spread {
                    (i as i64 * period_ms) / args.tasks as i64
                } else {
                    0
                };
                let body = serde_json::json!({
                    "user_id": 1,
                    "type": "interval",
                    "http_endpoint": format!("http://127.0.0.1:{sink_port}/t"),
                    "method": "POST",
                    "body": {"n": i},
                    "interval_seconds": args.period,
                    "start_time": to_rfc3339(t0 + phase),
                });
                (i, body.to_string())
            })
            .collect();
        let results: Vec<anyhow::Result<(String, i64)>> = stream::iter(bodies)
            .map(|(i, body)| {
                let client = client.clone();
                let url = format!("{base}/api/v1/tasks");
                let token = token.clone();
                async move {
                    let v = client.post_json(&url, &token, body).await?;
                    let id = v["task_id"]
                        .as_str()
                        .with_context(|| format!("task {i}: no task_id in {v}"))?
                        .to_string();
                    let phase = if spread {
                        (i as i64 * period_ms) / args.tasks as i64
                    } else {
                        0
                    };
                    Ok((id, t0 + phase))
                }
            })
            .buffer_unordered(64)
            .collect()
            .await;
        let mut tasks = HashMap::new();
        for r in results {
            let (id, first) = r?;
            tasks.insert(id, first);
        }
        let create_secs = started.elapsed().as_secs_f64();
        if now_ms() > t0 {
            eprintln!(
                "warning: creation took longer than the lead time; early slots may count as late"
            );
        }
        let end = t0 + (args.duration as i64) * 1000;
        let wait = (end - now_ms()).max(0) as u64 + 2000;
        actix_web::rt::time::sleep(Duration::from_millis(wait)).await;

        // Expected: every slot in [first, end) per task.
        let got = arrivals.lock().map(|a| a.clone()).unwrap_or_default();
        let mut seen: HashMap<(String, i64), usize> = HashMap::new();
        let mut lateness = Vec::with_capacity(got.len());
        for (wid, at) in &got {
            let Some((id, slot)) = wid.rsplit_once(':') else {
                continue;
            };
            let Ok(slot) = slot.parse::<i64>() else {
                continue;
            };
            if slot >= end {
                continue;
            }
            let n = seen.entry((id.to_string(), slot)).or_insert(0);
            *n += 1;
            if *n == 1 {
                lateness.push(at - slot);
            }
        }
        let mut expected = 0usize;
        let mut missed = 0usize;
        for (id, first) in &tasks {
            let mut slot = *first;
            while slot < end {
                expected += 1;
                if !seen.contains_key(&(id.clone(), slot)) {
                    missed += 1;
                }
                slot += period_ms;
            }
        }
        let duplicates: usize = seen.values().map(|n| n - 1).sum();
        if std::env::var_os("BENCH_PER_SLOT").is_some() {
            // Worst lateness per grid second, to see where the tail comes from.
            let mut per: std::collections::BTreeMap<i64, (usize, i64)> = Default::default();
            for (wid, at) in &got {
                if let Some(slot) = wid
                    .rsplit_once(':')
                    .and_then(|(_, s)| s.parse::<i64>().ok())
                {
                    let e = per.entry(slot / 1000 * 1000 - t0).or_insert((0, 0));
                    e.0 += 1;
                    e.1 = e.1.max(at - slot);
                }
            }
            for (k, (n, worst)) in per {
                eprintln!("slot +{k} ms: arrivals={n} worst={worst} ms");
            }
        }
        lateness.sort_unstable();
        let report = serde_json::json!({
            "tasks": args.tasks,
            "period_s": args.period,
            "duration_s": args.duration,
            "shape": args.shape,
            "metrics": !args.no_metrics,
            "create_seconds": (create_secs * 100.0).round() / 100.0,
            "creations_per_second": (args.tasks as f64 / create_secs).round(),
            "expected_fires": expected,
            "received": seen.len(),
            "missed": missed,
            "duplicates": duplicates,
            "lateness_ms": {
                "p50": percentile(&lateness, 50.0),
                "p99": percentile(&lateness, 99.0),
                "p999": percentile(&lateness, 99.9),
                "max": lateness.last().copied().unwrap_or(0),
            },
        });
        println!(
            "tasks={} period={}s duration={}s shape={}  created in {:.2}s\n\
             expected={} received={} missed={} duplicate={}\n\
             lateness ms: p50={} p99={} p99.9={} max={}",
            args.tasks,
            args.period,
            args.duration,
            args.shape,
            create_secs,
            expected,
            seen.len(),
            missed,
            duplicates,
            report["lateness_ms"]["p50"],
            report["lateness_ms"]["p99"],
            report["lateness_ms"]["p999"],
            report["lateness_ms"]["max"],
        );
        if args.json {
            println!("{report}");
        }
        let _ = std::fs::remove_dir_all(&dir);
        actix_web::rt::System::current().stop();
        Ok(())
    })
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("tickwheel-bench-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The API client: awc on the bench's own system.
mod reqwest_like {
    use anyhow::Context as _;

    #[derive(Clone)]
    pub struct Client(awc::Client);

    impl Client {
        pub fn new() -> Self {
            Client(
                awc::Client::builder()
                    .timeout(std::time::Duration::from_secs(60))
                    .connector(awc::Connector::new().limit(128))
                    .finish(),
            )
        }

        pub async fn post_json(
            &self,
            url: &str,
            token: &str,
            body: String,
        ) -> anyhow::Result<serde_json::Value> {
            let mut resp = self
                .0
                .post(url)
                .bearer_auth(token)
                .content_type("application/json")
                .send_body(body)
                .await
                .map_err(|e| anyhow::anyhow!("create: {e}"))?;
            let bytes = resp
                .body()
                .await
                .map_err(|e| anyhow::anyhow!("create body: {e}"))?;
            serde_json::from_slice(&bytes).context("create response")
        }
    }
}
