//! Recovery and the command line, against the real `tickwheel` binary run as a child process:
//! killed with SIGKILL and restarted on the same database and key file (misfire coalescing,
//! durability, encrypted headers), plus `token`, `migrate`, configuration loading, the key file
//! and secrets in the logs.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tempfile::TempDir;

use crate::helpers::{self, Backend, TestDb};
use crate::on_both_backends;
use crate::sink::{Arrival, Reply, Sink};

/// How long to wait for a process to start, become ready or exit (the machine is loaded).
pub(crate) const PROCESS_WAIT: Duration = Duration::from_secs(30);
/// How long to wait for an event (an arrival, a state) once the service runs.
pub(crate) const EVENT_WAIT: Duration = Duration::from_secs(15);
pub(crate) const INTERVAL_MS: i64 = 1000;

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub(crate) async fn pause(ms: u64) {
    actix_web::rt::time::sleep(Duration::from_millis(ms)).await;
}

// ---------------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------------

pub(crate) use crate::child::{drain, listening_port, Buf, ChildGuard};

/// How a command that is expected to exit ended.
pub(crate) struct Exit {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `cmd` to its end; panics (after killing it) if it is still running after `timeout`.
pub(crate) async fn run_to_exit(mut cmd: Command, timeout: Duration) -> Exit {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = ChildGuard(cmd.spawn().expect("spawn tickwheel"));
    let (out, out_reader) = drain(child.0.stdout.take().expect("stdout"));
    let (err, err_reader) = drain(child.0.stderr.take().expect("stderr"));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.0.try_wait().expect("try_wait") {
            break s;
        }
        if start.elapsed() > timeout {
            child.kill9();
            let _ = err_reader.join();
            panic!(
                "{cmd:?} did not exit within {timeout:?}; stderr:\n{}",
                err.lock().unwrap()
            );
        }
        pause(20).await;
    };
    let _ = out_reader.join();
    let _ = err_reader.join();
    let stdout = out.lock().unwrap().clone();
    let stderr = err.lock().unwrap().clone();
    Exit {
        code: status.code(),
        stdout,
        stderr,
    }
}

/// A running `tickwheel serve`; killed with SIGKILL when dropped.
pub(crate) struct Server {
    child: ChildGuard,
    stderr: Buf,
    reader: Option<JoinHandle<()>>,
    port: u16,
    client: reqwest::Client,
}

impl Server {
    /// Spawns `cmd`, learns the port from the "listening on" log line and waits for
    /// `/readyz` 200.
    pub(crate) async fn start(mut cmd: Command) -> Server {
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = ChildGuard(cmd.spawn().expect("spawn tickwheel serve"));
        let (stderr, reader) = drain(child.0.stderr.take().expect("stderr"));
        let mut server = Server {
            child,
            stderr,
            reader: Some(reader),
            port: 0,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
        };
        let start = Instant::now();
        loop {
            if let Some(port) = listening_port(&server.stderr()) {
                server.port = port;
                break;
            }
            server.assert_alive("before logging its address");
            assert!(
                start.elapsed() < PROCESS_WAIT,
                "tickwheel never logged \"listening on http://…\"; stderr:\n{}",
                server.stderr()
            );
            pause(20).await;
        }
        loop {
            if let Ok(r) = server.client.get(server.url("/readyz")).send().await {
                if r.status() == 200 {
                    break;
                }
            }
            server.assert_alive("before becoming ready");
            assert!(
                start.elapsed() < PROCESS_WAIT,
                "tickwheel never answered /readyz 200; stderr:\n{}",
                server.stderr()
            );
            pause(20).await;
        }
        server
    }

    pub(crate) fn assert_alive(&mut self, when: &str) {
        if let Some(status) = self.child.0.try_wait().expect("try_wait") {
            if let Some(r) = self.reader.take() {
                let _ = r.join();
            }
            panic!(
                "tickwheel exited ({status}) {when}; stderr:\n{}",
                self.stderr()
            );
        }
    }

    /// Sends SIGTERM (the graceful path) and waits up to `timeout` for the exit; returns the
    /// exit code, with stderr fully read.
    pub(crate) async fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        let pid = self.child.0.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let start = Instant::now();
        let status = loop {
            if let Some(st) = self.child.0.try_wait().expect("try_wait") {
                break st;
            }
            assert!(
                start.elapsed() < timeout,
                "tickwheel did not exit within {timeout:?} of SIGTERM; stderr:\n{}",
                self.stderr()
            );
            pause(20).await;
        };
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        status.code()
    }

    /// kill -9: no shutdown path runs. Returns once the process is gone and its stderr read.
    pub(crate) fn kill9(&mut self) {
        self.child.kill9();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }

    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub(crate) async fn get_with(&self, path: &str, token: &str) -> (u16, Value) {
        let r = self
            .client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// POST /api/v1/tasks as user 1001; returns the 201 body.
    pub(crate) async fn create(&self, body: &Value) -> Value {
        let r = self
            .client
            .post(self.url("/api/v1/tasks"))
            .bearer_auth(helpers::token(1001))
            .json(body)
            .send()
            .await
            .expect("create request");
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 201, "create failed: {v}");
        v
    }

    pub(crate) async fn create_id(&self, body: &Value) -> String {
        let v = self.create(body).await;
        v["task_id"].as_str().expect("task_id").to_string()
    }

    pub(crate) async fn task(&self, id: &str) -> Value {
        let (status, v) = self
            .get_with(&format!("/api/v1/tasks/{id}"), &helpers::token(1001))
            .await;
        assert_eq!(status, 200, "GET task {id}: {v}");
        v
    }

    pub(crate) async fn wait_task(&self, id: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let v = self.task(id).await;
            if pred(&v) {
                return v;
            }
            assert!(
                start.elapsed() < EVENT_WAIT,
                "task never reached the expected state: {v}"
            );
            pause(25).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration and setup
// ---------------------------------------------------------------------------------------------

/// The shape of `helpers::test_settings`, as a file the binary reads.
pub(crate) fn config_text(dir: &Path, db_url: &str) -> String {
    format!(
        r#"[server]
bind = "127.0.0.1:0"

[log]
level = "info"

[database]
url = "{db_url}"
max_connections = 5

[auth]
jwt_secret = "{secret}"

[crypto]
key_file = "{key}"

[http]
allow_private_targets = true
backoff_base_ms = 100
request_timeout_ms = 3000
connect_timeout_ms = 1000
"#,
        secret = helpers::SECRET,
        key = dir.join("master.key").display(),
    )
}

/// A `tickwheel` command line: `args`, then `--config config`; the environment is cleared of
/// inherited `TICKWHEEL__*` overrides, colours are off and `envs` are added.
pub(crate) fn tickwheel(args: &[&str], config: &Path, envs: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(helpers::bin_path());
    cmd.args(args).arg("--config").arg(config);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("TICKWHEEL__") {
            cmd.env_remove(k);
        }
    }
    cmd.env_remove("RUST_LOG").env("NO_COLOR", "1");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    if let Some(parent) = config.parent() {
        cmd.current_dir(parent);
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// A temporary directory holding a database (SQLite file or MariaDB database), the key file
/// and a config file naming both. Declare it before any `Server`, so that the servers are
/// killed before the database is dropped.
pub(crate) struct Setup {
    db: TestDb,
    dir: TempDir,
    config: PathBuf,
}

impl Setup {
    pub(crate) async fn new(backend: Backend) -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = TestDb::create(backend, dir.path()).await;
        let config = dir.path().join("tickwheel.toml");
        std::fs::write(&config, config_text(dir.path(), &db.url)).expect("write config");
        Setup { db, dir, config }
    }

    pub(crate) fn db_url(&self) -> &str {
        &self.db.url
    }

    pub(crate) fn key_file(&self) -> PathBuf {
        self.dir.path().join("master.key")
    }

    pub(crate) fn command(&self, args: &[&str], envs: &[(&str, &str)]) -> Command {
        tickwheel(args, &self.config, envs)
    }

    pub(crate) async fn serve(&self) -> Server {
        Server::start(self.command(&["serve"], &[])).await
    }

    /// Writes another config file into the directory.
    pub(crate) fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write config");
        path
    }
}

/// The scheduled time (epoch ms) in the arrival's `webhook-id: <task_id>:<ms>`.
pub(crate) fn slot_of(a: &Arrival, task_id: &str) -> i64 {
    let id = a.header("webhook-id").expect("webhook-id header");
    let (tid, ms) = id.rsplit_once(':').expect("webhook-id is <task_id>:<ms>");
    assert_eq!(tid, task_id, "webhook-id names another task: {id}");
    ms.parse().expect("webhook-id ends in epoch milliseconds")
}

pub(crate) fn interval_body(sink: &Sink, path: &str) -> Value {
    json!({
        "user_id": 1001,
        "type": "interval",
        "http_endpoint": sink.url(path),
        "interval_seconds": 1,
    })
}

pub(crate) fn once_body(sink: &Sink, path: &str, at_ms: i64) -> Value {
    json!({
        "user_id": 1001,
        "type": "once",
        "http_endpoint": sink.url(path),
        "start_time": tickwheel::time::to_rfc3339(at_ms),
    })
}

/// Waits until `path` got at least `n` arrivals at or after `since_ms`; returns those.
pub(crate) async fn wait_arrivals_since(
    sink: &Sink,
    path: &str,
    since_ms: i64,
    n: usize,
) -> Vec<Arrival> {
    let start = Instant::now();
    loop {
        let got: Vec<Arrival> = sink
            .arrivals(path)
            .into_iter()
            .filter(|a| a.at_ms >= since_ms)
            .collect();
        if got.len() >= n {
            return got;
        }
        assert!(
            start.elapsed() < EVENT_WAIT,
            "{path}: expected {n} arrivals since {since_ms}, got {}",
            got.len()
        );
        pause(20).await;
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Recovery after kill -9
// ---------------------------------------------------------------------------------------------

pub(crate) async fn after_kill_9_missed_runs_fire_once_and_nothing_is_lost(backend: Backend) {
    const TICK: &str = "/recovery/tick";
    const ONCE: &str = "/recovery/once";
    let sink = Sink::start();
    let setup = Setup::new(backend).await;
    let mut first = setup.serve().await;

    // Due while the service is down (the kill comes ~2 s after creation, the restart 3.5 s
    // after the kill).
    let once_at = now_ms() + 4000;
    let once = first.create_id(&once_body(&sink, ONCE, once_at)).await;
    let created = first.create(&interval_body(&sink, TICK)).await;
    let tick = created["task_id"].as_str().expect("task_id").to_string();
    let grid = helpers::parse_time(&created["next_run_time"]);
    let on_grid = |slot: i64| (slot - grid).rem_euclid(INTERVAL_MS) == 0;

    sink.wait_for(TICK, 2, EVENT_WAIT).await;
    let before = first
        .wait_task(&tick, |v| v["execution_count"].as_i64() >= Some(2))
        .await;
    let count_before = before["execution_count"].as_i64().expect("execution_count");
    assert_eq!(
        sink.count(ONCE),
        0,
        "the once task fired before the kill: the machine was too slow for this test's timing"
    );

    let kill_ms = now_ms();
    first.kill9();
    // The one deliberate sleep: downtime has to pass for runs to be missed (about three
    // interval slots and the once task's run time fall inside it).
    pause(3500).await;
    let restart_ms = now_ms();
    let second = setup.serve().await;
    let ready_ms = now_ms();

    let v = second.task(&tick).await;
    assert!(
        v["execution_count"].as_i64().expect("execution_count") >= count_before,
        "execution_count went back after the restart: {count_before} before, now {v}"
    );

    let after = wait_arrivals_since(&sink, TICK, restart_ms, 3).await;
    let slots: Vec<i64> = after.iter().map(|a| slot_of(a, &tick)).collect();
    let catch_up = slots[0];
    assert!(
        catch_up > kill_ms && catch_up >= restart_ms - INTERVAL_MS,
        "the first fire after the restart must be for the latest missed slot: got slot {catch_up}, \
         kill at {kill_ms}, restart at {restart_ms} (all slots after restart: {slots:?})"
    );
    assert!(
        catch_up <= ready_ms + 100,
        "the first fire after the restart must be the catch-up for a slot missed while down \
         (at or before the restart completed at ~{ready_ms}), got slot {catch_up}"
    );
    assert!(
        after[0].at_ms <= ready_ms + 1000,
        "the catch-up fire must come as soon as the service is back (ready at {ready_ms}), \
         it came at {}",
        after[0].at_ms
    );
    let missed_while_down = slots.iter().filter(|&&s| s < restart_ms).count();
    assert!(
        missed_while_down <= 1,
        "one fire for all missed runs, not one per missed slot: slots fired after the restart \
         {slots:?}, restart at {restart_ms}"
    );
    assert!(
        slots.iter().all(|&s| on_grid(s)),
        "slots must stay on the grid {grid} + k·{INTERVAL_MS}: {slots:?}"
    );
    assert_eq!(
        &slots[..3],
        &[catch_up, catch_up + INTERVAL_MS, catch_up + 2 * INTERVAL_MS],
        "after the catch-up the task continues on its schedule"
    );
    let before_kill: Vec<i64> = sink
        .arrivals(TICK)
        .iter()
        .filter(|a| a.at_ms < restart_ms)
        .map(|a| slot_of(a, &tick))
        .collect();
    assert!(
        before_kill.iter().all(|&s| on_grid(s) && s < catch_up),
        "slots before the kill {before_kill:?} vs the catch-up {catch_up}"
    );

    second
        .wait_task(&tick, |v| {
            v["execution_count"].as_i64() >= Some(count_before + 3)
        })
        .await;

    // The once task came due while the service was down: it fires once, right after the
    // restart, for its own run time, and completes.
    let once_arrivals = sink.wait_for(ONCE, 1, EVENT_WAIT).await;
    assert_eq!(slot_of(&once_arrivals[0], &once), once_at);
    assert!(
        once_arrivals[0].at_ms >= restart_ms && once_arrivals[0].at_ms <= ready_ms + 1000,
        "the missed once task must fire as soon as the service is back (ready at {ready_ms}), \
         it fired at {}",
        once_arrivals[0].at_ms
    );
    let v = second
        .wait_task(&once, |v| v["status"] == "completed")
        .await;
    assert_eq!(v["execution_count"], 1, "{v}");
    assert_eq!(sink.count(ONCE), 1, "the once task fired more than once");

    // Nothing accepted was lost.
    for id in [&once, &tick] {
        let (status, v) = second
            .get_with(&format!("/api/v1/tasks/{id}"), &helpers::token(1001))
            .await;
        assert_eq!(status, 200, "task {id} after the restart: {v}");
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Durable before 201
// ---------------------------------------------------------------------------------------------

pub(crate) async fn a_task_acknowledged_right_before_kill_9_survives_it(backend: Backend) {
    const ONCE: &str = "/durable/once";
    let sink = Sink::start();
    let setup = Setup::new(backend).await;
    let mut first = setup.serve().await;

    let mut recurring = interval_body(&sink, "/durable/hourly");
    recurring["interval_seconds"] = json!(3600);
    recurring["headers"] = json!({"X-Trace": "abc"});
    let recurring = first.create_id(&recurring).await;
    let once_at = now_ms() + 1500;
    let once = first.create_id(&once_body(&sink, ONCE, once_at)).await;
    // kill -9 at once after the 201: the task must already be committed.
    first.kill9();

    let second = setup.serve().await;
    let v = second.task(&recurring).await;
    assert_eq!(v["type"], "interval", "{v}");
    assert_eq!(v["status"], "pending", "{v}");
    assert_eq!(v["interval_seconds"], 3600, "{v}");
    assert_eq!(v["header_names"], json!(["X-Trace"]), "{v}");
    let (status, list) = second
        .get_with("/api/v1/users/1001/tasks", &helpers::token(1001))
        .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["total"], 2, "{list}");

    // And it is scheduled, not only stored.
    let got = sink.wait_for(ONCE, 1, EVENT_WAIT).await;
    assert_eq!(slot_of(&got[0], &once), once_at);
    second
        .wait_task(&once, |v| v["status"] == "completed")
        .await;
}

// ---------------------------------------------------------------------------------------------
// 3. tickwheel token
// ---------------------------------------------------------------------------------------------

/// The JSON claims of a JWT (not verified: the server does that).
pub(crate) fn claims(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("a JWT has three parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

pub(crate) async fn token_from_cli(setup: &Setup, args: &[&str]) -> String {
    let mut all = vec!["token"];
    all.extend_from_slice(args);
    let out = run_to_exit(setup.command(&all, &[]), PROCESS_WAIT).await;
    assert_eq!(out.code, Some(0), "tickwheel {all:?}: {}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "`tickwheel {all:?}` must print exactly one line, got {:?}",
        out.stdout
    );
    let token = lines[0];
    assert!(
        !token.is_empty() && !token.contains(char::is_whitespace),
        "the line must be the token alone: {token:?}"
    );
    token.to_string()
}

#[actix_web::test]
pub(crate) async fn the_token_command_prints_a_token_the_server_accepts() {
    let setup = Setup::new(Backend::Sqlite).await;
    let server = setup.serve().await;

    let user = token_from_cli(&setup, &["--user", "1001"]).await;
    let (status, v) = server.get_with("/api/v1/users/1001/tasks", &user).await;
    assert_eq!(status, 200, "own list with the CLI token: {v}");
    let (status, v) = server.get_with("/api/v1/users/2002/tasks", &user).await;
    assert_eq!(status, 403, "another user's list with the CLI token: {v}");
    let c = claims(&user);
    assert_eq!(c["sub"], "1001", "{c}");
    let exp = c["exp"].as_i64().expect("exp");
    let default_ttl = exp - now_ms() / 1000;
    assert!(
        (86_400 - 60..=86_400 + 5).contains(&default_ttl),
        "the default ttl is 24h, got {default_ttl} s"
    );

    let admin = token_from_cli(&setup, &["--user", "1", "--admin"]).await;
    let (status, v) = server.get_with("/api/v1/users/2002/tasks", &admin).await;
    assert_eq!(
        status, 200,
        "another user's list with an --admin token: {v}"
    );

    let short = token_from_cli(&setup, &["--user", "1001", "--ttl", "90s"]).await;
    let ttl = claims(&short)["exp"].as_i64().expect("exp") - now_ms() / 1000;
    assert!(
        (30..=95).contains(&ttl),
        "--ttl 90s gave a token for {ttl} s"
    );
    let (status, v) = server.get_with("/api/v1/users/1001/tasks", &short).await;
    assert_eq!(status, 200, "{v}");
}

/// Recovery reads the active tasks a page at a time in id order, one status after the other.
/// On SQLite each page must be a walk of the `(status, task_id)` index: with only the
/// `(status, next_run_time)` index, SQLite sorted every remaining active row for each page
/// (ten pages of 100,000 tasks took about 1.6 s instead of 0.5 s). MariaDB walks its primary
/// key for this statement with either schema, so the plan is checked on SQLite.
#[actix_web::test]
async fn recovery_pages_walk_an_index_in_id_order_and_sort_nothing() {
    use sea_orm::{ConnectionTrait, DbBackend, QueryTrait, Statement};
    use tickwheel::domain::TaskStatus;
    let app = helpers::spawn_app(Backend::Sqlite).await;
    let db = sea_orm::Database::connect(&app.db.url)
        .await
        .expect("connect to the test database");
    let cursor = "0192f0c4-6a3e-7b21-9a4d-3f5e8c7b1a20";
    for (status, after) in [
        (TaskStatus::Pending, None),
        (TaskStatus::Pending, Some(cursor)),
        (TaskStatus::Running, Some(cursor)),
    ] {
        let sql = tickwheel::store::tasks_page_query(status, after, 10_000)
            .build(DbBackend::Sqlite)
            .to_string();
        let plan: Vec<String> = db
            .query_all_raw(Statement::from_string(
                DbBackend::Sqlite,
                format!("EXPLAIN QUERY PLAN {sql}"),
            ))
            .await
            .expect("query plan")
            .iter()
            .map(|r| r.try_get::<String>("", "detail").expect("detail"))
            .collect();
        assert!(
            plan.iter().all(|d| !d.contains("TEMP B-TREE")),
            "a recovery page sorts its rows: {sql}\n{plan:?}"
        );
        assert!(
            plan.iter().any(|d| d.contains("idx_tasks_status_task")),
            "a recovery page does not walk (status, task_id): {sql}\n{plan:?}"
        );
    }
    let _ = db.close().await;
}

// ---------------------------------------------------------------------------------------------
// 4. tickwheel migrate
// ---------------------------------------------------------------------------------------------

pub(crate) async fn migrate_creates_the_tables_and_exits(backend: Backend) {
    use sea_orm::ConnectionTrait;
    let setup = Setup::new(backend).await;
    let out = run_to_exit(setup.command(&["migrate"], &[]), PROCESS_WAIT).await;
    assert_eq!(out.code, Some(0), "tickwheel migrate: {}", out.stderr);
    if backend == Backend::Sqlite {
        assert!(
            setup.dir.path().join("tickwheel.db").exists(),
            "migrate did not create the SQLite file"
        );
    }

    let db = sea_orm::Database::connect(&setup.db.url)
        .await
        .expect("connect to the migrated database");
    for table in ["tasks", "task_logs"] {
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                format!("SELECT COUNT(*) AS n FROM {table}"),
            ))
            .await
            .unwrap_or_else(|e| panic!("table {table} after migrate: {e}"))
            .expect("a row");
        let n: i64 = row.try_get("", "n").expect("count");
        assert_eq!(n, 0, "{table} is new and empty");
    }
    let _ = db.close().await;

    // Applying them again is a no-op, and the service runs on the schema.
    let out = run_to_exit(setup.command(&["migrate"], &[]), PROCESS_WAIT).await;
    assert_eq!(
        out.code,
        Some(0),
        "second tickwheel migrate: {}",
        out.stderr
    );
    let server = setup.serve().await;
    let sink_url = "http://127.0.0.1:9/never";
    let id = server
        .create_id(&json!({
            "user_id": 1001, "type": "once", "http_endpoint": sink_url,
            "start_time": tickwheel::time::to_rfc3339(now_ms() + 3_600_000),
        }))
        .await;
    server.task(&id).await;
}

// ---------------------------------------------------------------------------------------------
// 5. Configuration
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
pub(crate) async fn an_unknown_config_key_stops_the_binary_and_is_named() {
    let setup = Setup::new(Backend::Sqlite).await;
    let text = config_text(setup.dir.path(), &setup.db.url).replacen(
        "bind = \"127.0.0.1:0\"",
        "bind = \"127.0.0.1:0\"\nbindd = \"x\"",
        1,
    );
    let config = setup.write("unknown-key.toml", &text);
    let out = run_to_exit(tickwheel(&["serve"], &config, &[]), PROCESS_WAIT).await;
    assert_ne!(out.code, Some(0), "an unknown key must stop the binary");
    assert!(
        out.stderr.contains("bindd"),
        "the error must name the unknown key `bindd`: {}",
        out.stderr
    );
}

#[actix_web::test]
pub(crate) async fn an_environment_variable_overrides_the_config_file() {
    let setup = Setup::new(Backend::Sqlite).await;
    // The file names a port that is taken, so only the override can make the service start.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_port = taken.local_addr().expect("addr").port();
    let text = config_text(setup.dir.path(), &setup.db.url).replacen(
        "bind = \"127.0.0.1:0\"",
        &format!("bind = \"127.0.0.1:{taken_port}\""),
        1,
    );
    let config = setup.write("taken-port.toml", &text);

    let out = run_to_exit(tickwheel(&["serve"], &config, &[]), PROCESS_WAIT).await;
    assert_ne!(
        out.code,
        Some(0),
        "serving on a port in use must fail (control for the override below)"
    );

    let server = Server::start(tickwheel(
        &["serve"],
        &config,
        &[("TICKWHEEL__SERVER__BIND", "127.0.0.1:0")],
    ))
    .await;
    assert_ne!(server.port, taken_port);
    let (status, v) = server
        .get_with("/api/v1/users/1001/tasks", &helpers::token(1001))
        .await;
    assert_eq!(status, 200, "{v}");
    drop(taken);
}

#[actix_web::test]
pub(crate) async fn a_missing_config_file_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-such-config.toml");
    let out = run_to_exit(tickwheel(&["serve"], &missing, &[]), PROCESS_WAIT).await;
    assert_ne!(
        out.code,
        Some(0),
        "a missing --config file must stop the binary"
    );
    let err = out.stderr.to_lowercase();
    assert!(
        out.stderr.contains("no-such-config.toml")
            && (err.contains("not found") || err.contains("no such file")),
        "the error must name the missing file: {}",
        out.stderr
    );
}

// ---------------------------------------------------------------------------------------------
// 6. The key file, and encrypted headers across a restart
// ---------------------------------------------------------------------------------------------

pub(crate) async fn the_key_file_is_private_and_headers_survive_a_restart(backend: Backend) {
    const PATH: &str = "/keyfile/once";
    let sink = Sink::start();
    let setup = Setup::new(backend).await;
    let key_file = setup.key_file();
    assert!(!key_file.exists());
    let mut first = setup.serve().await;

    let meta = std::fs::metadata(&key_file).expect("the key file is created on first start");
    assert_eq!(meta.len(), 32, "the key is 32 bytes");
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "the key file must be readable by its owner only"
    );
    let key = std::fs::read(&key_file).expect("read key");

    let mut body = once_body(&sink, PATH, now_ms() + 1500);
    body["headers"] = json!({"X-Secret": "hunter2-value"});
    let id = first.create_id(&body).await;
    let v = first.task(&id).await;
    assert!(!v.to_string().contains("hunter2-value"), "{v}");
    first.kill9();

    let second = setup.serve().await;
    assert_eq!(
        std::fs::read(&key_file).expect("read key"),
        key,
        "a restart must reuse the key file, never replace it"
    );
    let got = sink.wait_for(PATH, 1, EVENT_WAIT).await;
    assert_eq!(
        got[0].header("x-secret"),
        Some("hunter2-value"),
        "the stored header must be decrypted and sent after the restart"
    );
    second.wait_task(&id, |v| v["status"] == "completed").await;
}

// ---------------------------------------------------------------------------------------------
// 7. Secrets never reach the logs
// ---------------------------------------------------------------------------------------------

pub(crate) async fn header_values_never_reach_the_logs(backend: Backend) {
    const PATH: &str = "/secret/hook";
    const SECRET_VALUE: &str = "very-secret-token-123";
    let sink = Sink::start();
    // The first attempt fails, so the retry and warn paths run too.
    sink.script(PATH, [Reply::status(500).body("boom")]);
    let setup = Setup::new(backend).await;
    let mut server =
        Server::start(setup.command(&["serve"], &[("TICKWHEEL__LOG__LEVEL", "debug")])).await;

    let mut body = interval_body(&sink, PATH);
    body["headers"] = json!({"Authorization": format!("Bearer {SECRET_VALUE}")});
    body["body"] = json!({"data": "example"});
    let id = server.create_id(&body).await;
    // 500, its retry, then the next execution.
    let got = sink.wait_for(PATH, 3, EVENT_WAIT).await;
    assert!(got
        .iter()
        .all(|a| a.header("authorization") == Some(&*format!("Bearer {SECRET_VALUE}"))));
    server
        .wait_task(&id, |v| v["execution_count"].as_i64() >= Some(2))
        .await;
    server.kill9();

    let log = server.stderr();
    assert!(
        log.contains("DEBUG"),
        "the log level override must be in effect:\n{log}"
    );
    assert!(
        log.contains("WARN"),
        "the failed attempt must have been logged as a warning:\n{log}"
    );
    assert!(
        !log.contains(SECRET_VALUE),
        "a header value reached the log:\n{}",
        log.lines()
            .filter(|l| l.contains(SECRET_VALUE))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// 8. No subcommand means serve
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
pub(crate) async fn no_subcommand_runs_serve() {
    let sink = Sink::start();
    let setup = Setup::new(Backend::Sqlite).await;
    let server = Server::start(setup.command(&[], &[])).await;
    let id = server
        .create_id(&once_body(&sink, "/default/once", now_ms()))
        .await;
    sink.wait_for("/default/once", 1, EVENT_WAIT).await;
    server.wait_task(&id, |v| v["status"] == "completed").await;
}

on_both_backends!(
    after_kill_9_missed_runs_fire_once_and_nothing_is_lost,
    a_task_acknowledged_right_before_kill_9_survives_it,
    migrate_creates_the_tables_and_exits,
    the_key_file_is_private_and_headers_survive_a_restart,
    header_values_never_reach_the_logs,
);

// ---------------------------------------------------------------------------------------------
// 9. JSON logs
// ---------------------------------------------------------------------------------------------

/// With `log.format = "json"` every line on stderr is one JSON object; an execution at debug
/// and a failed attempt at warn each carry the task id and the scheduled time.
#[actix_web::test]
async fn json_logs_are_one_object_a_line_with_task_id_and_scheduled_time() {
    const PATH: &str = "/logs/json";
    let sink = Sink::start();
    sink.script(PATH, [Reply::status(500)]);
    let setup = Setup::new(Backend::Sqlite).await;
    let mut server = Server::start(setup.command(
        &["serve"],
        &[
            ("TICKWHEEL__LOG__FORMAT", "json"),
            ("TICKWHEEL__LOG__LEVEL", "tickwheel=debug,warn"),
        ],
    ))
    .await;
    let mut body = once_body(&sink, PATH, now_ms());
    body["retry"] = json!({"backoff_ms": 50});
    let id = server.create_id(&body).await;
    server.wait_task(&id, |v| v["status"] == "completed").await;
    let code = server.terminate(PROCESS_WAIT).await;
    assert_eq!(code, Some(0));

    let log = server.stderr();
    let lines: Vec<Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let about_task = |level: &str| {
        lines.iter().any(|v| {
            v["level"] == level
                && v["fields"]["task_id"] == id.as_str()
                && v["fields"]["scheduled_ms"].is_i64()
        })
    };
    assert!(
        about_task("DEBUG"),
        "no debug line for the execution:\n{log}"
    );
    assert!(
        about_task("WARN"),
        "no warn line for the failed attempt:\n{log}"
    );
}
