//! The `console` scenario: the console's first page — the task list a user lands on after
//! signing in — for a user with 10,000 tasks, asked for as a browser does (`GET /` with the
//! session cookie), 20 times after 3 warm-up requests; and the bytes of the page and of the
//! console's assets.

use super::*;

const WARM_UP: usize = 3;
const MEASURED: usize = 20;

pub(super) async fn console(
    report: &mut Report,
    args: &Args,
    bins: &Binaries,
    sink: &Sink,
) -> anyhow::Result<()> {
    let n = if args.quick { 1_000 } else { 10_000 };
    eprintln!("· console: first page with {n} tasks");
    let data = Data::new(Backend::Sqlite)?;
    let server = Server::start(bins, &data).await?;
    let api = Api::new(&server.base, &server.token)?;
    // Idle tasks (first run an hour away): the page is measured, not the fire path.
    let later = now_ms() + 3_600_000;
    let tasks = (0..n)
        .map(|i| IntervalTask {
            endpoint: sink.url("/console"),
            period_s: 3_600,
            start_ms: later,
            n: i,
        })
        .collect();
    api.create_all(tasks, 64).await?;
    let client = reqwest::Client::new();
    let cookie = format!("tickwheel_session={}", server.token);
    let get = |path: &str| {
        client
            .get(format!("{}{path}", server.base))
            .header("cookie", &cookie)
            .send()
    };
    let mut ms = Vec::with_capacity(MEASURED);
    let mut page_bytes = 0;
    for i in 0..WARM_UP + MEASURED {
        let started = Instant::now();
        let resp = get("/").await.context("GET /")?;
        // A session the console did not accept would end on the sign-in page.
        if !resp.status().is_success() || resp.url().path() != "/" {
            bail!("GET / answered {} at {}", resp.status(), resp.url());
        }
        page_bytes = resp.bytes().await.context("GET / body")?.len();
        if i >= WARM_UP {
            ms.push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let mut assets = 0;
    for path in ["/console/console.css", "/console/console.js"] {
        assets += get(path).await?.bytes().await?.len();
    }
    server.kill9()?;
    ms.sort_by(f64::total_cmp);
    let (median, max) = (ms[MEASURED / 2], ms[MEASURED - 1]);
    report.results.push(json!({
        "scenario": "console",
        "tasks": n,
        "first_page_ms": ms,
        "page_bytes": page_bytes,
        "asset_bytes": assets,
    }));
    report.row(
        format!("console first page, {n} tasks: median / max"),
        format!("{median:.1} / {max:.1} ms"),
        "≤ 300 ms",
        Some(max <= 300.0),
    );
    report.row(
        "console: page + assets",
        format!("{page_bytes} + {assets} B"),
        "assets ≤ 200 KB",
        Some(assets <= 200 * 1024),
    );
    Ok(())
}
