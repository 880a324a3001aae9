//! Runs the `tickwheel` release binary as a child process with its own temporary data
//! directory and database, the way an operator would: configuration by environment only.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

const JWT_SECRET: &str = "tickwheel-bench-secret-0123456789abcdef";

/// Where the binaries live, built fresh unless `--bin` was given.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub tickwheel: PathBuf,
    pub peer: PathBuf,
    /// The scheduler-free yardstick (`tickwheel-limit`).
    pub limit: PathBuf,
}

impl Binaries {
    /// `cargo build --release` of the service and the peer, then their paths in the release
    /// directory. With an explicit service path nothing is built.
    pub fn locate(explicit: Option<PathBuf>) -> anyhow::Result<Self> {
        let here = std::env::current_exe().context("locating the bench binary")?;
        let dir = here
            .parent()
            .context("the bench binary has no directory")?
            .to_path_buf();
        if explicit.is_none() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .context("workspace directory")?
                .to_path_buf();
            // One package per cargo invocation: built together, the bench's dependencies
            // would change the features of the service's (a different binary from the one
            // `cargo run --release` gives users).
            for (package, bin) in [
                ("tickwheel", "tickwheel"),
                ("tickwheel-bench", "tickwheel-peer"),
                ("tickwheel-bench", "tickwheel-limit"),
            ] {
                eprintln!("building {bin} (cargo build --release -p {package} --bin {bin}) …");
                let status = Command::new(&cargo)
                    .current_dir(&workspace)
                    .args(["build", "--release", "-p", package, "--bin", bin])
                    .status()
                    .context("running cargo build")?;
                if !status.success() {
                    bail!("cargo build --release -p {package} failed");
                }
            }
        }
        let tickwheel = match explicit {
            Some(p) => std::fs::canonicalize(&p)
                .with_context(|| format!("no tickwheel binary at {}", p.display()))?,
            None => dir.join("tickwheel"),
        };
        let peer = dir.join("tickwheel-peer");
        let limit = dir.join("tickwheel-limit");
        if !tickwheel.exists() {
            bail!("no tickwheel binary at {}", tickwheel.display());
        }
        Ok(Self {
            tickwheel,
            peer,
            limit,
        })
    }
}

/// Which database a server gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    MariaDb,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::MariaDb => "MariaDB",
        }
    }
}

/// A data directory and database that outlive server processes (so that a server can be
/// killed and started again on the same data).
pub struct Data {
    pub dir: tempfile::TempDir,
    pub database_url: String,
    mariadb_name: Option<String>,
}

impl Data {
    pub fn new(backend: Backend) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("tickwheel-bench-")
            .tempdir()
            .context("creating a temporary directory")?;
        let (database_url, mariadb_name) = match backend {
            Backend::Sqlite => (
                format!("sqlite://{}/tickwheel.db?mode=rwc", dir.path().display()),
                None,
            ),
            Backend::MariaDb => {
                let name = format!(
                    "twbench_{}_{}",
                    std::process::id(),
                    crate::sink::now_us() % 1_000_000_000
                );
                mariadb(&format!("CREATE DATABASE {name}"))?;
                (format!("mysql://root@127.0.0.1:3306/{name}"), Some(name))
            }
        };
        Ok(Self {
            dir,
            database_url,
            mariadb_name,
        })
    }
}

impl Drop for Data {
    fn drop(&mut self) {
        if let Some(name) = &self.mariadb_name {
            if let Err(e) = mariadb(&format!("DROP DATABASE IF EXISTS {name}")) {
                eprintln!("warning: could not drop {name}: {e}");
            }
        }
    }
}

fn mariadb(sql: &str) -> anyhow::Result<()> {
    mariadb_in(None, sql).map(|_| ())
}

/// Runs `sql` with the `mariadb` client (in database `db`); returns its standard output.
fn mariadb_in(db: Option<&str>, sql: &str) -> anyhow::Result<String> {
    let mut args = vec!["-h", "127.0.0.1", "-P", "3306", "-u", "root", "-N", "-B"];
    if let Some(db) = db {
        args.push(db);
    }
    args.extend(["-e", sql]);
    let out = Command::new("mariadb")
        .args(&args)
        .output()
        .context("running the mariadb client (is MariaDB installed and running?)")?;
    if !out.status.success() {
        bail!(
            "mariadb: {sql}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Data {
    /// Runs `sql` on this run's database (the `sqlite3` or `mariadb` command-line client);
    /// returns what it printed.
    pub fn sql(&self, sql: &str) -> anyhow::Result<String> {
        match &self.mariadb_name {
            Some(name) => mariadb_in(Some(name), sql),
            None => {
                let file = self.dir.path().join("tickwheel.db");
                let out = Command::new("sqlite3")
                    .arg(&file)
                    .arg(sql)
                    .output()
                    .context("running the sqlite3 client (is it installed?)")?;
                if !out.status.success() {
                    bail!("sqlite3: {}", String::from_utf8_lossy(&out.stderr).trim());
                }
                Ok(String::from_utf8_lossy(&out.stdout).into_owned())
            }
        }
    }

    pub fn is_mariadb(&self) -> bool {
        self.mariadb_name.is_some()
    }

    /// `tickwheel migrate` on this database.
    pub fn migrate(&self, bin: &Binaries) -> anyhow::Result<()> {
        let out = Command::new(&bin.tickwheel)
            .current_dir(self.dir.path())
            .envs(base_env(self, 0).iter().map(|(k, v)| (*k, v.as_str())))
            .arg("migrate")
            .output()
            .context("running tickwheel migrate")?;
        if !out.status.success() {
            bail!(
                "tickwheel migrate: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

/// One running `tickwheel serve`.
pub struct Server {
    child: Child,
    pub base: String,
    pub token: String,
    pub started: Instant,
}

impl Server {
    /// Starts the binary on `data` and waits until `/readyz` answers 200.
    pub async fn start(bin: &Binaries, data: &Data) -> anyhow::Result<Self> {
        let server = Self::spawn(bin, data)?;
        server.wait_ready(Duration::from_secs(120)).await?;
        Ok(server)
    }

    /// Starts the binary with `extra` environment settings and waits until it is ready.
    pub async fn start_with(
        bin: &Binaries,
        data: &Data,
        extra: &[(&'static str, String)],
    ) -> anyhow::Result<Self> {
        let server = Self::spawn_with(bin, data, extra)?;
        server.wait_ready(Duration::from_secs(300)).await?;
        Ok(server)
    }

    /// Starts the binary without waiting.
    pub fn spawn(bin: &Binaries, data: &Data) -> anyhow::Result<Self> {
        Self::spawn_with(bin, data, &[])
    }

    /// Starts the binary with `extra` environment settings, without waiting.
    pub fn spawn_with(
        bin: &Binaries,
        data: &Data,
        extra: &[(&'static str, String)],
    ) -> anyhow::Result<Self> {
        let port = free_port()?;
        let mut env = base_env(data, port);
        env.extend(extra.iter().cloned());
        // The binary in the data directory with the environment (the bench's own environment
        // is inherited too, so `TICKWHEEL__…` settings can be tried from outside).
        let command = || {
            let mut c = Command::new(&bin.tickwheel);
            c.current_dir(data.dir.path())
                .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
            c
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data.dir.path().join("server.log"))
            .context("opening the server log")?;
        let token = {
            let out = command()
                .args(["token", "--user", "1", "--admin", "--ttl", "7d"])
                .output()
                .context("running tickwheel token")?;
            if !out.status.success() {
                bail!(
                    "tickwheel token failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        let started = Instant::now();
        let child = command()
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.tickwheel.display()))?;
        Ok(Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            token,
            started,
        })
    }

    /// Waits for `/readyz` = 200; returns the time since the process was started.
    pub async fn wait_ready(&self, limit: Duration) -> anyhow::Result<Duration> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let url = format!("{}/readyz", self.base);
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(r) = client.get(&url).send().await {
                if r.status().is_success() {
                    return Ok(self.started.elapsed());
                }
            }
            if Instant::now() > deadline {
                bail!("tickwheel was not ready within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size in bytes, from /proc.
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        rss_of(self.pid())
    }

    pub fn cpu(&self) -> anyhow::Result<Duration> {
        cpu_of(self.pid())
    }

    /// `kill -9`.
    pub fn kill9(mut self) -> anyhow::Result<()> {
        self.child.kill().context("kill -9")?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// CPU time (user + system) the process has used so far.
pub fn cpu_of(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(Duration::from_millis((ticks(11) + ticks(12)) * 1000 / hz))
}

pub fn rss_of(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .context("no VmRSS in /proc status")?;
    Ok(kb * 1024)
}

fn base_env(data: &Data, port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("TICKWHEEL__SERVER__BIND", format!("127.0.0.1:{port}")),
        ("TICKWHEEL__DATABASE__URL", data.database_url.clone()),
        (
            "TICKWHEEL__CRYPTO__KEY_FILE",
            data.dir.path().join("master.key").display().to_string(),
        ),
        ("TICKWHEEL__AUTH__JWT_SECRET", JWT_SECRET.into()),
        ("TICKWHEEL__HTTP__ALLOW_PRIVATE_TARGETS", "true".into()),
        // The benchmark measures the scheduler, not the per-host throttle.
        ("TICKWHEEL__RATELIMIT__PER_HOST_RPS", "10000000".into()),
        ("TICKWHEEL__RATELIMIT__PER_HOST_BURST", "10000000".into()),
        // One user holds every task (up to a million idle ones in the memory scenario).
        ("TICKWHEEL__LIMITS__MAX_ACTIVE_TASKS_PER_USER", "0".into()),
        ("TICKWHEEL__LOG__LEVEL", "warn".into()),
    ]
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}
