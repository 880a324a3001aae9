//! Typed, layered configuration: built-in defaults, then a TOML file, then
//! `TICKWHEEL__SECTION__KEY` environment variables. Unknown keys are an error.

use std::path::{Path, PathBuf};

use crate::domain::limits::{InputLimits, MAX_STORED_BODY_BYTES, MEDIUM_BYTES};
use crate::domain::retention::{RetentionLimits, MAX_LOGS_PER_TASK, MAX_RETENTION_DAYS};
use figment::providers::{Env, Format, Toml};
use figment::Figment;
use secrecy::SecretString;
use serde::Deserialize;

/// The default JWT secret; the service warns while it is in use.
pub const DEFAULT_JWT_SECRET: &str = "change-me";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0} not found")]
    NotFound(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub log: LogSettings,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    pub crypto: CryptoSettings,
    pub http: HttpSettings,
    pub ratelimit: RateLimitSettings,
    pub limits: LimitSettings,
    pub retention: RetentionSettings,
    pub metrics: MetricsSettings,
    pub cluster: ClusterSettings,
    pub redis: RedisSettings,
}

/// Cluster mode: membership in ZooKeeper, partition claims in the database, fire guards,
/// the pending queue and change notices in Redis.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSettings {
    pub enabled: bool,
    /// Unique per node; empty: derived from the host name and the bound port.
    pub node_id: String,
    /// ZooKeeper connect string, `host:port[,host:port…]`.
    pub zookeeper: String,
    /// Znode root; also the prefix of this cluster's Redis keys and channel.
    pub root: String,
    pub session_timeout_ms: u64,
    /// Fixed for the life of a cluster.
    pub partitions: u32,
    /// Address other nodes use to reach this node's API; empty: the bound address.
    pub advertise: String,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            node_id: String::new(),
            zookeeper: "127.0.0.1:2181".into(),
            root: "/tickwheel".into(),
            session_timeout_ms: 6_000,
            partitions: 256,
            advertise: String::new(),
        }
    }
}

/// History retention (README, "History retention"): the global limits on execution logs and
/// finished tasks, and how the background pruner paces its deletes.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionSettings {
    /// Execution log rows older than this are deleted.
    pub max_age_days: u32,
    /// Beyond this many log rows per task, the oldest are deleted.
    pub max_logs_per_task: u64,
    /// Completed, failed and stopped tasks (with their logs) are deleted this many days after
    /// they finished; 0 keeps them.
    pub finished_task_days: u32,
    /// The pruner's pause between two delete statements, and its first start after start-up.
    pub interval_ms: u64,
    /// The most rows one delete statement removes (a short write lock on SQLite).
    pub batch_size: u64,
    /// Tasks whose log count the pruner checks per pause.
    pub tasks_per_pass: u64,
    /// False: nothing is pruned (the limits still bound a task's own `retention`).
    pub enabled: bool,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        let limits = RetentionLimits::DEFAULT;
        Self {
            max_age_days: limits.max_age_days,
            max_logs_per_task: limits.max_logs_per_task,
            finished_task_days: 0,
            interval_ms: 200,
            batch_size: 500,
            tasks_per_pass: 200,
            enabled: true,
        }
    }
}

impl RetentionSettings {
    /// The global limits, for the validator and the pruner.
    pub fn limits(&self) -> RetentionLimits {
        RetentionLimits {
            max_age_days: self.max_age_days,
            max_logs_per_task: self.max_logs_per_task,
        }
    }

    fn check(&self) -> Result<(), String> {
        let ranges = [
            (
                "max_age_days",
                u64::from(self.max_age_days),
                1,
                u64::from(MAX_RETENTION_DAYS),
            ),
            (
                "max_logs_per_task",
                self.max_logs_per_task,
                1,
                MAX_LOGS_PER_TASK,
            ),
            (
                "finished_task_days",
                u64::from(self.finished_task_days),
                0,
                u64::from(MAX_RETENTION_DAYS),
            ),
            ("interval_ms", self.interval_ms, 1, 3_600_000),
            ("batch_size", self.batch_size, 1, 100_000),
            ("tasks_per_pass", self.tasks_per_pass, 1, 100_000),
        ];
        for (key, value, min, max) in ranges {
            if value < min || value > max {
                return Err(format!(
                    "retention.{key} = {value} must be between {min} and {max}"
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSettings {
    /// `redis://host:port/db`; required when `cluster.enabled`.
    pub url: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    pub enabled: bool,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self { enabled: true }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    pub bind: String,
    pub max_body_bytes: usize,
    pub shutdown_timeout_ms: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            max_body_bytes: 1024 * 1024,
            shutdown_timeout_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Pretty,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: String,
    pub max_connections: u32,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: "sqlite://data/tickwheel.db?mode=rwc".into(),
            max_connections: 10,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    pub jwt_secret: SecretString,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            jwt_secret: SecretString::from(DEFAULT_JWT_SECRET),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CryptoSettings {
    pub key_file: PathBuf,
}

impl Default for CryptoSettings {
    fn default() -> Self {
        Self {
            key_file: PathBuf::from("data/master.key"),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    pub pool_size: usize,
    pub workers: usize,
    pub connect_timeout_ms: u64,
    pub request_timeout_ms: u64,
    pub max_retries: u32,
    pub backoff_base_ms: u64,
    pub max_response_bytes: usize,
    pub allow_private_targets: bool,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            pool_size: 200,
            workers: 2,
            connect_timeout_ms: 5_000,
            request_timeout_ms: 15_000,
            max_retries: 3,
            backoff_base_ms: 1_000,
            max_response_bytes: 64 * 1024,
            allow_private_targets: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitSettings {
    pub per_host_rps: u64,
    pub per_host_burst: u64,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            per_host_rps: 100,
            per_host_burst: 100,
        }
    }
}

/// Per-user quotas and the bounds on a task's input (README, "Configuration").
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    /// A user's pending, running and paused tasks; 0 = unlimited.
    pub max_active_tasks_per_user: u64,
    /// The sum of a user's active schedules' fire rates, per minute; 0 = unlimited.
    pub max_fires_per_minute_per_user: u64,
    pub max_url_bytes: usize,
    pub max_headers: usize,
    pub max_header_name_bytes: usize,
    pub max_header_value_bytes: usize,
    pub max_cron_expression_bytes: usize,
    pub max_stop_condition_bytes: usize,
}

impl Default for LimitSettings {
    fn default() -> Self {
        let input = InputLimits::DEFAULT;
        Self {
            max_active_tasks_per_user: 100_000,
            max_fires_per_minute_per_user: 0,
            max_url_bytes: input.max_url_bytes,
            max_headers: input.max_headers,
            max_header_name_bytes: input.max_header_name_bytes,
            max_header_value_bytes: input.max_header_value_bytes,
            max_cron_expression_bytes: input.max_cron_expression_bytes,
            max_stop_condition_bytes: input.max_stop_condition_bytes,
        }
    }
}

impl LimitSettings {
    /// The input bounds, for the validator, with the default retention limits
    /// ([`Settings::input_limits`] has the configured ones).
    pub fn input(&self) -> InputLimits {
        InputLimits {
            max_url_bytes: self.max_url_bytes,
            max_headers: self.max_headers,
            max_header_name_bytes: self.max_header_name_bytes,
            max_header_value_bytes: self.max_header_value_bytes,
            max_cron_expression_bytes: self.max_cron_expression_bytes,
            max_stop_condition_bytes: self.max_stop_condition_bytes,
            retention: RetentionLimits::DEFAULT,
        }
    }
}

/// The most `http.max_response_bytes` may be: a response body is stored as text, where each
/// byte that is not UTF-8 becomes a three-byte replacement character, in a `MEDIUMTEXT`.
pub const MAX_RESPONSE_BYTES: usize = MEDIUM_BYTES / 3;

impl Settings {
    /// The bounds on a task's input: `[limits]` and the global `[retention]` limits a task's own
    /// `retention` may not exceed.
    pub fn input_limits(&self) -> InputLimits {
        InputLimits {
            retention: self.retention.limits(),
            ..self.limits.input()
        }
    }

    /// Loads `path` (which must exist when given explicitly) over the defaults, then the
    /// environment. Without a path, `config.toml` in the working directory is used if present.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::new();
        match path {
            Some(p) => {
                if !p.exists() {
                    return Err(ConfigError::NotFound(p.to_path_buf()));
                }
                figment = figment.merge(Toml::file_exact(p));
            }
            None => {
                let default = Path::new("config.toml");
                if default.exists() {
                    figment = figment.merge(Toml::file_exact(default));
                }
            }
        }
        Self::extract(figment)
    }

    /// Parses a TOML string over the defaults, then the environment (used by tests).
    pub fn from_toml(toml: &str) -> Result<Self, ConfigError> {
        Self::extract(Figment::new().merge(Toml::string(toml)))
    }

    fn extract(figment: Figment) -> Result<Self, ConfigError> {
        let settings: Settings = figment
            .merge(Env::prefixed("TICKWHEEL__").split("__"))
            .extract()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if self.http.pool_size == 0 {
            return bad("http.pool_size must be at least 1");
        }
        if self.http.workers == 0 {
            return bad("http.workers must be at least 1");
        }
        if self.ratelimit.per_host_rps == 0 || self.ratelimit.per_host_burst == 0 {
            return bad("ratelimit.per_host_rps and ratelimit.per_host_burst must be at least 1");
        }
        if self.server.max_body_bytes == 0 {
            return bad("server.max_body_bytes must be at least 1");
        }
        if self.server.max_body_bytes > MAX_STORED_BODY_BYTES {
            return Err(ConfigError::Invalid(format!(
                "server.max_body_bytes = {} is more than a task's body may take in storage; \
                 it may be at most {MAX_STORED_BODY_BYTES}",
                self.server.max_body_bytes
            )));
        }
        if self.http.max_response_bytes > MAX_RESPONSE_BYTES {
            return Err(ConfigError::Invalid(format!(
                "http.max_response_bytes = {} is more than the response_body column holds; \
                 it may be at most {MAX_RESPONSE_BYTES}",
                self.http.max_response_bytes
            )));
        }
        self.limits
            .input()
            .check()
            .map_err(|m| ConfigError::Invalid(format!("limits.{m}")))?;
        self.retention.check().map_err(ConfigError::Invalid)?;
        if !(self.database.url.starts_with("sqlite:") || self.database.url.starts_with("mysql:")) {
            return bad("database.url must start with sqlite: or mysql:");
        }
        if self.cluster.partitions == 0 || self.cluster.partitions > 65_536 {
            return bad("cluster.partitions must be between 1 and 65536");
        }
        if self.cluster.enabled {
            if self.redis.url.trim().is_empty() {
                return bad("redis.url is required when cluster.enabled is true");
            }
            if !(self.redis.url.starts_with("redis://") || self.redis.url.starts_with("rediss://"))
            {
                return bad("redis.url must start with redis:// or rediss://");
            }
            if self.cluster.zookeeper.trim().is_empty() {
                return bad("cluster.zookeeper is required when cluster.enabled is true");
            }
            let root = &self.cluster.root;
            if !root.starts_with('/') || root.len() < 2 || root.ends_with('/') {
                return bad("cluster.root must be an absolute znode path such as /tickwheel");
            }
            if self.cluster.session_timeout_ms < 1_000 {
                return bad("cluster.session_timeout_ms must be at least 1000");
            }
            if self.cluster.node_id.contains('/') {
                return bad("cluster.node_id must not contain '/'");
            }
            if self.cluster.node_id.len() > 100 {
                return bad("cluster.node_id must be at most 100 bytes long");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_values() {
        let s = Settings::from_toml("").expect("defaults");
        assert_eq!(s.server.bind, "127.0.0.1:8080");
        assert_eq!(s.http.pool_size, 200);
        assert_eq!(s.http.request_timeout_ms, 15_000);
        assert_eq!(s.ratelimit.per_host_rps, 100);
    }

    #[test]
    fn retention_defaults_match_the_documented_values_and_bad_values_are_named() {
        let s = Settings::from_toml("").expect("defaults");
        assert_eq!(s.retention.max_age_days, 30);
        assert_eq!(s.retention.max_logs_per_task, 10_000);
        assert_eq!(s.retention.finished_task_days, 0);
        assert_eq!(s.input_limits().retention, s.retention.limits());
        for (toml, key) in [
            ("[retention]\nmax_age_days = 0\n", "retention.max_age_days"),
            (
                "[retention]\nmax_age_days = 36501\n",
                "retention.max_age_days",
            ),
            (
                "[retention]\nmax_logs_per_task = 0\n",
                "retention.max_logs_per_task",
            ),
            ("[retention]\nbatch_size = 0\n", "retention.batch_size"),
            ("[retention]\ninterval_ms = 0\n", "retention.interval_ms"),
            ("[retention]\nmax_age = 3\n", "max_age"),
        ] {
            let err = Settings::from_toml(toml).unwrap_err();
            assert!(err.to_string().contains(key), "{toml}: {err}");
        }
        let custom = Settings::from_toml("[retention]\nmax_age_days = 7\nfinished_task_days = 2\n")
            .expect("a retention section");
        assert_eq!(custom.input_limits().retention.max_age_days, 7);
        assert_eq!(custom.retention.finished_task_days, 2);
    }

    #[test]
    fn an_unknown_key_is_rejected_with_its_name() {
        let err = Settings::from_toml("[server]\nbindd = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("bindd"), "{err}");
        let err = Settings::from_toml("[nosuch]\na = 1\n").unwrap_err();
        assert!(err.to_string().contains("nosuch"), "{err}");
    }

    #[test]
    fn the_repository_config_file_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
        let s = Settings::load(Some(&path)).expect("config.toml parses");
        assert!(s.database.url.starts_with("sqlite:"));
    }

    #[test]
    fn cluster_mode_needs_redis_and_names_the_key() {
        let err = Settings::from_toml("[cluster]\nenabled = true\n").unwrap_err();
        assert!(err.to_string().contains("redis.url"), "{err}");
        let err = Settings::from_toml(
            "[cluster]\nenabled = true\nroot = \"tw\"\n[redis]\nurl = \"redis://127.0.0.1\"\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("cluster.root"), "{err}");
        let ok = Settings::from_toml(
            "[cluster]\nenabled = true\n[redis]\nurl = \"redis://127.0.0.1:6379/0\"\n",
        )
        .expect("a cluster config");
        assert_eq!(ok.cluster.partitions, 256);
        assert_eq!(ok.cluster.session_timeout_ms, 6_000);
        let err = Settings::from_toml("[cluster]\npartitions = 0\n").unwrap_err();
        assert!(err.to_string().contains("cluster.partitions"), "{err}");
    }

    #[test]
    fn limits_default_to_the_documented_values() {
        let s = Settings::from_toml("").expect("defaults");
        assert_eq!(s.limits.max_active_tasks_per_user, 100_000);
        assert_eq!(s.limits.max_fires_per_minute_per_user, 0);
        assert_eq!(s.limits.max_headers, 50);
        assert_eq!(s.limits.input(), InputLimits::DEFAULT);
    }

    #[test]
    fn a_limit_beyond_what_storage_holds_is_refused_naming_the_key() {
        for (toml, key) in [
            (
                "[limits]\nmax_cron_expression_bytes = 257\n",
                "limits.max_cron_expression_bytes",
            ),
            ("[limits]\nmax_url_bytes = 65536\n", "limits.max_url_bytes"),
            ("[limits]\nmax_headers = 0\n", "limits.max_headers"),
            (
                "[limits]\nmax_headers = 1000\nmax_header_value_bytes = 65535\n",
                "limits.max_headers",
            ),
            (
                "[server]\nmax_body_bytes = 8388609\n",
                "server.max_body_bytes",
            ),
            (
                "[http]\nmax_response_bytes = 16777215\n",
                "http.max_response_bytes",
            ),
        ] {
            let err = Settings::from_toml(toml).unwrap_err().to_string();
            assert!(err.contains(key), "{toml}: {err}");
        }
        let s = Settings::from_toml(
            "[limits]\nmax_headers = 100\nmax_fires_per_minute_per_user = 600\n",
        )
        .expect("limits within storage");
        assert_eq!(s.limits.input().max_headers, 100);
    }

    #[test]
    fn a_wrong_type_is_rejected_with_the_key() {
        let err = Settings::from_toml("[http]\npool_size = \"many\"\n").unwrap_err();
        assert!(err.to_string().contains("pool_size"), "{err}");
    }
}
