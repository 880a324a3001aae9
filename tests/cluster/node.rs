//! One `tickwheel serve` process: configured by environment variables only, its port read from
//! the "listening on http://…" log line, ready once `/readyz` answers 200.

use std::path::Path;
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::procs::{drain, excerpt, listening_port, now_ms, pause, signal, Buf, ChildGuard};

/// How long a node may take to start and become ready (the machine is loaded).
pub const START_WAIT: Duration = Duration::from_secs(40);

pub struct Node {
    pub name: String,
    child: ChildGuard,
    stderr: Buf,
    reader: Option<JoinHandle<()>>,
    pub port: u16,
    pub pid: u32,
    client: reqwest::Client,
    token: String,
    pub stopped: bool,
    /// The test's own SIGSTOP…SIGCONT intervals (epoch ms; open while stopped).
    pub stops: Vec<(i64, Option<i64>)>,
    exited: Option<std::process::ExitStatus>,
}

impl Node {
    /// Spawns the binary with `envs` (and nothing inherited from `TICKWHEEL__*`) in `dir`, an
    /// empty directory, so no `config.toml` is read. `on_spawn` gets the pid at once.
    pub fn spawn(
        name: &str,
        envs: &[(String, String)],
        dir: &Path,
        token: &str,
        on_spawn: impl FnOnce(u32),
    ) -> Node {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tickwheel"));
        cmd.arg("serve");
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("TICKWHEEL__") {
                cmd.env_remove(k);
            }
        }
        cmd.env_remove("RUST_LOG").env("NO_COLOR", "1");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = ChildGuard(cmd.spawn().expect("spawn tickwheel serve"));
        let pid = child.pid();
        on_spawn(pid);
        let (stderr, reader) = drain(child.0.stderr.take().expect("stderr"));
        Node {
            name: name.to_string(),
            child,
            stderr,
            reader: Some(reader),
            port: 0,
            pid,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .pool_max_idle_per_host(8)
                // Below the server's keep-alive (5 s), so that an idle connection is never reused
                // just as the node closes it.
                .pool_idle_timeout(Duration::from_secs(2))
                .build()
                .expect("client"),
            token: token.to_string(),
            stopped: false,
            stops: Vec::new(),
            exited: None,
        }
    }

    /// Waits for the "listening on" line, then for `/readyz` 200.
    pub async fn wait_ready(&mut self) {
        let start = Instant::now();
        while self.port == 0 {
            if let Some(port) = listening_port(&self.stderr()) {
                self.port = port;
                break;
            }
            self.assert_alive("before logging its address");
            assert!(
                start.elapsed() < START_WAIT,
                "node {} never logged \"listening on http://…\"; stderr:\n{}",
                self.name,
                excerpt(&self.stderr(), 60)
            );
            pause(20).await;
        }
        loop {
            if let Ok(r) = self.client.get(self.url("/readyz")).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            self.assert_alive("before becoming ready");
            assert!(
                start.elapsed() < START_WAIT,
                "node {} never answered /readyz 200 within {START_WAIT:?}; stderr:\n{}",
                self.name,
                excerpt(&self.stderr(), 60)
            );
            pause(50).await;
        }
    }

    pub fn assert_alive(&mut self, when: &str) {
        if let Some(status) = self.child.exited() {
            if let Some(r) = self.reader.take() {
                let _ = r.join();
            }
            panic!(
                "node {} exited ({status}) {when}; stderr:\n{}",
                self.name,
                excerpt(&self.stderr(), 80)
            );
        }
    }

    /// Killed or terminated by the test.
    pub fn ended_on_purpose(&self) -> bool {
        self.exited.is_some()
    }

    pub fn is_running(&mut self) -> bool {
        self.exited.is_none() && self.child.exited().is_none()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// kill -9; returns the epoch ms just before the signal. No shutdown path runs.
    pub fn kill9(&mut self) -> i64 {
        let at = now_ms();
        self.child.kill9();
        self.exited = self.child.exited();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        at
    }

    /// SIGTERM, then waits up to `timeout` for the exit; returns (signal time, exit time, exit
    /// code) with stderr fully read.
    pub async fn sigterm(&mut self, timeout: Duration) -> (i64, i64, Option<i32>) {
        let at = now_ms();
        signal(self.pid, "TERM");
        let start = Instant::now();
        let status = loop {
            if let Some(st) = self.child.exited() {
                break st;
            }
            assert!(
                start.elapsed() < timeout,
                "node {} did not exit within {timeout:?} of SIGTERM; stderr:\n{}",
                self.name,
                excerpt(&self.stderr(), 80)
            );
            pause(20).await;
        };
        let exited_at = now_ms();
        self.exited = Some(status);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        (at, exited_at, status.code())
    }

    pub fn sigstop(&mut self) -> i64 {
        let at = now_ms();
        signal(self.pid, "STOP");
        self.stopped = true;
        self.stops.push((at, None));
        at
    }

    pub fn sigcont(&mut self) -> i64 {
        let at = now_ms();
        signal(self.pid, "CONT");
        self.stopped = false;
        if let Some(last) = self.stops.last_mut() {
            last.1 = Some(now_ms());
        }
        at
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .client
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path} on {}: {e}", self.name));
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// GET that tolerates a node that does not answer (None).
    pub async fn try_get(&self, path: &str, timeout: Duration) -> Option<(u16, Value)> {
        let r = self
            .client
            .get(self.url(path))
            .bearer_auth(&self.token)
            .timeout(timeout)
            .send()
            .await
            .ok()?;
        let status = r.status().as_u16();
        Some((status, r.json().await.unwrap_or(Value::Null)))
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .client
            .post(self.url(path))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path} on {}: {e}", self.name));
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn put(&self, path: &str) -> (u16, Value) {
        let r = self
            .client
            .put(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("PUT {path} on {}: {e}", self.name));
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn delete(&self, path: &str) -> u16 {
        self.client
            .delete(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("DELETE {path} on {}: {e}", self.name))
            .status()
            .as_u16()
    }
}
