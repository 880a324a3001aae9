//! `spawn_app`: the real application on port 0 with its own temporary database — a SQLite
//! file, or a fresh database on the machine's MariaDB — and typed request helpers.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tempfile::TempDir;
use tickwheel::config::Settings;
use tickwheel::startup::Application;

#[allow(unused_imports)]
pub use crate::sink::{Reply, Sink};

pub const SECRET: &str = "test-secret-for-the-suite";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    MySql,
}

/// Generates one test per backend from `async fn name(backend: Backend)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[actix_web::test]
                async fn on_sqlite() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
                #[actix_web::test]
                async fn on_mysql() {
                    super::$name($crate::helpers::Backend::MySql).await
                }
            }
        )*
    };
}

/// A database of its own for one test: a SQLite file in the test's temp dir, or a new
/// database on MariaDB, dropped when the test ends.
pub struct TestDb {
    pub url: String,
    mysql_name: Option<String>,
}

impl TestDb {
    pub async fn create(backend: Backend, dir: &std::path::Path) -> TestDb {
        match backend {
            Backend::Sqlite => TestDb {
                url: format!("sqlite://{}?mode=rwc", dir.join("tickwheel.db").display()),
                mysql_name: None,
            },
            Backend::MySql => {
                let (url, name) = crate::mariadb::create_database("tw_test").await;
                TestDb {
                    url,
                    mysql_name: Some(name),
                }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = self.mysql_name.take() {
            crate::mariadb::drop_database(name);
        }
    }
}

pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub client: reqwest::Client,
    pub sink: Sink,
    pub settings: Settings,
    pub dir: TempDir,
    pub db: TestDb,
}

/// Settings for a test: private targets allowed (the sink is on loopback), short backoff.
pub fn test_settings(dir: &std::path::Path, db_url: &str) -> Settings {
    let mut s = Settings::from_toml(&format!(
        r#"
[server]
bind = "127.0.0.1:0"
[database]
url = "{db_url}"
max_connections = 5
[auth]
jwt_secret = "{SECRET}"
[crypto]
key_file = "{}"
[http]
allow_private_targets = true
backoff_base_ms = 100
request_timeout_ms = 3000
connect_timeout_ms = 1000
"#,
        dir.join("master.key").display()
    ))
    .expect("test settings");
    s.log.level = "warn".into();
    s
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

pub async fn spawn_app_with(backend: Backend, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = TestDb::create(backend, dir.path()).await;
    let mut settings = test_settings(dir.path(), &db.url);
    tweak(&mut settings);
    tickwheel::telemetry::init(&settings.log);
    let app = Application::build(settings.clone())
        .await
        .expect("application builds");
    let port = app.port();
    actix_web::rt::spawn(app.run_until_stopped());
    let test_app = TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client"),
        sink: Sink::start(),
        settings,
        dir,
        db,
    };
    test_app.wait_ready().await;
    test_app
}

pub fn token(user: i64) -> String {
    tickwheel::auth::issue_token(SECRET, user, false, Duration::from_secs(3600)).expect("token")
}

pub fn admin_token() -> String {
    tickwheel::auth::issue_token(SECRET, 1, true, Duration::from_secs(3600)).expect("token")
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn wait_ready(&self) {
        let start = Instant::now();
        loop {
            if let Ok(r) = self.client.get(self.url("/readyz")).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "app never became ready"
            );
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// POST /api/v1/tasks as `user`; returns (status, body).
    pub async fn create_as(&self, user: i64, body: &Value) -> (u16, Value) {
        let r = self
            .client
            .post(self.url("/api/v1/tasks"))
            .bearer_auth(token(user))
            .json(body)
            .send()
            .await
            .expect("create request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Creates a task for user 1001 and returns its id; panics unless 201.
    pub async fn create_task(&self, body: Value) -> String {
        let (status, v) = self.create_as(1001, &body).await;
        assert_eq!(status, 201, "create failed: {v}");
        v["task_id"].as_str().expect("task_id").to_string()
    }

    pub async fn get_json(&self, path: &str, user: i64) -> (u16, Value) {
        let r = self
            .client
            .get(self.url(path))
            .bearer_auth(token(user))
            .send()
            .await
            .expect("get");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn task(&self, id: &str) -> Value {
        let (status, v) = self.get_json(&format!("/api/v1/tasks/{id}"), 1001).await;
        assert_eq!(status, 200, "view failed: {v}");
        v
    }

    pub async fn logs(&self, id: &str) -> Value {
        let (status, v) = self
            .get_json(&format!("/api/v1/tasks/{id}/logs?limit=1000"), 1001)
            .await;
        assert_eq!(status, 200, "logs failed: {v}");
        v
    }

    pub async fn cancel(&self, id: &str) -> (u16, Value) {
        let r = self
            .client
            .put(self.url(&format!("/api/v1/tasks/{id}/cancel")))
            .bearer_auth(token(1001))
            .send()
            .await
            .expect("cancel");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Polls the task view until `pred` holds; panics with the last view after `timeout`.
    pub async fn wait_task(
        &self,
        id: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let start = Instant::now();
        loop {
            let v = self.task(id).await;
            if pred(&v) {
                return v;
            }
            assert!(
                start.elapsed() < timeout,
                "task never reached the expected state: {v}"
            );
            actix_web::rt::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Polls the logs until there are at least `n`.
    pub async fn wait_logs(&self, id: &str, n: usize, timeout: Duration) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let v = self.logs(id).await;
            let logs = v["logs"].as_array().cloned().unwrap_or_default();
            if logs.len() >= n {
                return logs;
            }
            assert!(
                start.elapsed() < timeout,
                "expected {n} log rows, got {}: {v}",
                logs.len()
            );
            actix_web::rt::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// An interval task for `sink_path` that fires every `secs`, starting now + secs.
pub fn interval_task(app: &TestApp, path: &str, secs: u64) -> Value {
    json!({
        "user_id": 1001,
        "type": "interval",
        "http_endpoint": app.sink.url(path),
        "interval_seconds": secs,
    })
}

/// A once task for `sink_path` at `at` (RFC 3339), or now when None.
pub fn once_task(app: &TestApp, path: &str, at: Option<String>) -> Value {
    let mut v = json!({
        "user_id": 1001,
        "type": "once",
        "http_endpoint": app.sink.url(path),
    });
    if let Some(at) = at {
        v["start_time"] = json!(at);
    }
    v
}

pub fn rfc3339_in(ms: i64) -> String {
    tickwheel::time::to_rfc3339(chrono::Utc::now().timestamp_millis() + ms)
}

pub fn parse_time(v: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(v.as_str().expect("a time string"))
        .expect("rfc3339")
        .timestamp_millis()
}

#[allow(dead_code)]
pub fn bin_path() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tickwheel"))
}
