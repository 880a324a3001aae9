//! The benchmark's REST client: creates tasks over tickwheel's API, many at a time.

use std::time::Duration;

use anyhow::{bail, Context as _};
use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};

pub struct Api {
    client: reqwest::Client,
    base: String,
    token: String,
}

/// One interval task to create.
pub struct IntervalTask {
    pub endpoint: String,
    pub period_s: u64,
    pub start_ms: i64,
    pub n: usize,
}

impl IntervalTask {
    fn body(&self) -> Value {
        json!({
            "user_id": 1,
            "type": "interval",
            "http_endpoint": self.endpoint,
            "method": "POST",
            "body": {"n": self.n},
            "interval_seconds": self.period_s,
            "start_time": rfc3339(self.start_ms),
        })
    }
}

pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

impl Api {
    pub fn new(base: &str, token: &str) -> anyhow::Result<Self> {
        Ok(Self {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .pool_max_idle_per_host(256)
                .build()?,
            base: base.to_string(),
            token: token.to_string(),
        })
    }

    /// Creates every task with `concurrency` requests in flight; returns the task ids in the
    /// order of `tasks`.
    pub async fn create_all(
        &self,
        tasks: Vec<IntervalTask>,
        concurrency: usize,
    ) -> anyhow::Result<Vec<String>> {
        let n = tasks.len();
        let url = format!("{}/api/v1/tasks", self.base);
        let results: Vec<anyhow::Result<(usize, String)>> =
            stream::iter(tasks.into_iter().enumerate())
                .map(|(i, t)| {
                    let req = self
                        .client
                        .post(&url)
                        .bearer_auth(&self.token)
                        .json(&t.body());
                    async move {
                        let resp = req.send().await.context("create task")?;
                        let status = resp.status();
                        let v: Value = resp.json().await.context("create task: body")?;
                        if status.as_u16() != 201 {
                            bail!("create task: {status}: {v}");
                        }
                        let id = v["task_id"]
                            .as_str()
                            .with_context(|| format!("no task_id in {v}"))?
                            .to_string();
                        Ok((i, id))
                    }
                })
                .buffer_unordered(concurrency)
                .collect()
                .await;
        let mut ids = vec![String::new(); n];
        for r in results {
            let (i, id) = r?;
            ids[i] = id;
        }
        Ok(ids)
    }

    /// Creates a signing key for user 1 (whose tasks the bench creates); returns its secret.
    pub async fn create_signing_key(&self) -> anyhow::Result<String> {
        let resp = self
            .client
            .post(format!("{}/api/v1/users/1/signing-keys", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .context("create signing key")?;
        let status = resp.status();
        let v: Value = resp.json().await.context("create signing key: body")?;
        if status.as_u16() != 201 {
            bail!("create signing key: {status}: {v}");
        }
        Ok(v["secret"].as_str().context("no secret")?.to_string())
    }
}
