//! `tickwheel-bench`: the benchmark of tickwheel's claims — fire precision, sustained
//! throughput against the sink's own limit, memory per idle task, API creations per second,
//! recovery time after `kill -9`, and the same precision scenario on a peer scheduler
//! (tokio-cron-scheduler) for comparison.
//!
//! Every scenario starts the release `tickwheel` binary as a child process with its own
//! temporary database, sends its tasks' calls to a sink in this process that records each
//! arrival, and compares arrivals with the expected grid. Results go to stdout as a table and
//! to `<out>/results.json`; lateness histograms to `<out>/*.png`. The figures assert nothing.
//!
//! ```text
//! cargo run --release -p tickwheel-bench               # every scenario (about 15 minutes)
//! cargo run --release -p tickwheel-bench -- --quick    # small sizes, under a minute
//! cargo run --release -p tickwheel-bench -- aligned peer
//! cargo run --release -p tickwheel-bench -- precision --tasks 2000 --period 1 --duration 10 --shape spread
//! cargo run --release -p tickwheel-bench -- retention --retention-rows 10000000 --retention-backends sqlite
//! cargo run --release -p tickwheel-bench -- signing
//! cargo run --release -p tickwheel-bench -- limit
//! cargo run --release -p tickwheel-bench -- console
//! ```

mod api;
mod plot;
mod scenarios;
mod server;
mod sink;
mod stats;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// N tasks on the same grid: a burst of N calls every period.
    Aligned,
    /// Phases spread evenly over the period.
    Spread,
    /// Highest sustained fire rate with p99 ≤ 50 ms and nothing missed, beside the sink's
    /// own limit measured by wrk.
    Throughput,
    /// Resident memory per idle future task.
    Memory,
    /// Task creations per second over the API, on SQLite and MariaDB.
    Api,
    /// Time to ready and to every overdue task fired after `kill -9`.
    Recovery,
    /// The aligned scenario on tokio-cron-scheduler, beside tickwheel's.
    Peer,
    /// One precision run with --tasks, --period, --duration and --shape.
    Precision,
    /// Lateness p99 with and without pruning --retention-rows old log rows (SQLite, MariaDB).
    Retention,
    /// Aligned and spread precision with every call signed by two keys, alternating with
    /// unsigned runs of the same size.
    Signing,
    /// tickwheel beside the scheduler-free yardstick (`tickwheel-limit`), alternating, three
    /// rounds: p99 and CPU per fire, and their ratios.
    Limit,
    /// The console's first page for a user with 10,000 tasks, and the bytes of its assets.
    Console,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    Sqlite,
    Mariadb,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shape {
    Aligned,
    Spread,
}

#[derive(Parser, Debug)]
#[command(about = "Measure tickwheel: precision, throughput, memory, API, recovery, and a peer")]
pub struct Args {
    /// Scenarios to run (default: all but `precision`).
    #[arg(value_enum)]
    pub scenarios: Vec<Scenario>,
    /// Small sizes so that the whole run takes under a minute.
    #[arg(long)]
    pub quick: bool,
    /// Where results.json and the histograms go.
    #[arg(long, default_value = "target/bench")]
    pub out: PathBuf,
    /// The tickwheel binary to measure (default: build and use target/release/tickwheel).
    #[arg(long)]
    pub bin: Option<PathBuf>,
    /// Also print results.json to stdout.
    #[arg(long)]
    pub json: bool,
    /// `precision`: number of interval tasks.
    #[arg(long, default_value_t = 1000)]
    pub tasks: usize,
    /// `precision`: interval of every task, in seconds.
    #[arg(long, default_value_t = 1)]
    pub period: u64,
    /// `precision`: measured window, in seconds.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// `memory`: the task counts to measure at (default 100,000 and 1,000,000).
    #[arg(long, value_delimiter = ',')]
    pub memory_sizes: Vec<usize>,
    /// `retention`: old log rows to seed and prune.
    #[arg(long, default_value_t = 10_000_000)]
    pub retention_rows: u64,
    /// `retention`: the backends to run on (default both).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub retention_backends: Vec<BackendArg>,
    /// `precision`: the shape of the phases.
    #[arg(long, value_enum, default_value_t = Shape::Aligned)]
    pub shape: Shape,
}

fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.scenarios.is_empty() {
        args.scenarios = vec![
            Scenario::Aligned,
            Scenario::Spread,
            Scenario::Peer,
            Scenario::Throughput,
            Scenario::Api,
            Scenario::Recovery,
            Scenario::Memory,
        ];
    }
    let bins = server::Binaries::locate(args.bin.clone())?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    scenarios::set_out(&args.out);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(scenarios::run_all(&args, &bins))
}
