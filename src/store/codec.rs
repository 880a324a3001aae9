//! The row codec: conversions between the `tasks` row and the domain. A stored row becomes a
//! validated [`TaskSpec`] (headers decrypted, re-checked through the create parser) or an
//! [`ActiveTask`]; a definition and its [`RowState`] become the row to insert or redefine.
//! Keeping both directions here means the column layout is known in one place.

use entities::tasks;
use uuid::Uuid;

use super::{Store, StoreError};
use crate::domain::validate::{parse_create_within, InputLimits};
use crate::domain::{schedule_of, FieldError, Schedule, StopCondition, TaskSpec, TaskStatus};

/// Everything a task actor needs to run a task, headers decrypted.
#[derive(Clone, Debug)]
pub struct ActiveTask {
    pub task_id: Uuid,
    pub spec: TaskSpec,
    pub schedule: Schedule,
    pub status: TaskStatus,
    pub next_run_time: Option<i64>,
    pub execution_count: i64,
    pub consecutive_failures: i64,
    /// Slots missed while the task could not fire, in all.
    pub missed_slots: i64,
    /// The row's `version` when this was read (cluster reconciliation compares it).
    pub version: i64,
}

/// The schedule columns of a stored task.
#[derive(Clone, Debug)]
pub struct ScheduleRow {
    pub task_type: String,
    pub interval_seconds: Option<i64>,
    pub cron_expression: Option<String>,
    pub timezone: Option<String>,
    /// The schedule's anchor (`start_time`, else `created_at`).
    pub anchor_ms: i64,
}

impl ScheduleRow {
    pub fn of(m: &tasks::Model) -> Self {
        Self {
            task_type: m.task_type.clone(),
            interval_seconds: m.interval_seconds,
            cron_expression: m.cron_expression.clone(),
            timezone: m.timezone.clone(),
            anchor_ms: m.start_time.unwrap_or(m.created_at),
        }
    }
}

/// A task row's state beside its definition: where it is in its lifecycle and schedule, and
/// its bookkeeping columns. With the definition and the anchor it makes the whole row
/// ([`Store::model_for`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowState {
    pub status: TaskStatus,
    pub next_run_time: Option<i64>,
    pub execution_count: i64,
    pub consecutive_failures: i64,
    pub missed_slots: i64,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl RowState {
    /// A task created at `now`: pending, never run, at version 1.
    pub fn created(next_run_time: Option<i64>, now: i64) -> Self {
        Self {
            status: TaskStatus::Pending,
            next_run_time,
            execution_count: 0,
            consecutive_failures: 0,
            missed_slots: 0,
            version: 1,
            created_at: now,
            updated_at: now,
        }
    }
}

impl Store {
    /// Encrypts a header list for the `headers` column.
    pub fn seal_headers(
        &self,
        task_id: Uuid,
        headers: &[(String, String)],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        if headers.is_empty() {
            return Ok(None);
        }
        let plain = serde_json::to_vec(headers).map_err(|e| StoreError::Corrupt {
            task_id: task_id.to_string(),
            reason: e.to_string(),
        })?;
        self.cipher
            .encrypt(&plain, task_id.as_bytes())
            .map(Some)
            .map_err(|source| StoreError::Crypto {
                task_id: task_id.to_string(),
                source,
            })
    }

    pub fn open_headers(
        &self,
        task_id: Uuid,
        blob: Option<&[u8]>,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let Some(blob) = blob else {
            return Ok(Vec::new());
        };
        let plain = self
            .cipher
            .decrypt(blob, task_id.as_bytes())
            .map_err(|source| StoreError::Crypto {
                task_id: task_id.to_string(),
                source,
            })?;
        serde_json::from_slice(&plain).map_err(|e| StoreError::Corrupt {
            task_id: task_id.to_string(),
            reason: format!("headers: {e}"),
        })
    }

    /// Rebuilds the validated definition of a stored task (headers decrypted).
    pub fn spec_of(&self, m: &tasks::Model) -> Result<TaskSpec, StoreError> {
        let task_id = parse_id(&m.task_id)?;
        let corrupt = |reason: String| StoreError::Corrupt {
            task_id: m.task_id.clone(),
            reason,
        };
        let headers = self.open_headers(task_id, m.headers.as_deref())?;
        // Re-validating through the create parser keeps one definition of a valid task; within
        // the most any configuration allows, so a row stored under a more generous `[limits]`
        // than today's still loads.
        // Rules added after a row was accepted do not unload it: credentials once allowed in
        // the URL were never sent (they are dropped here), and the start time and stop
        // condition are read without today's input bounds.
        let endpoint = match url::Url::parse(&m.http_endpoint) {
            Ok(mut url) if !url.username().is_empty() || url.password().is_some() => {
                let _ = url.set_username("");
                let _ = url.set_password(None);
                url.to_string()
            }
            _ => m.http_endpoint.clone(),
        };
        let mut v = serde_json::json!({
            "user_id": m.user_id,
            "type": m.task_type,
            "http_endpoint": endpoint,
            "method": m.method,
            "misfire_policy": m.misfire_policy,
        });
        let obj = v
            .as_object_mut()
            .ok_or_else(|| corrupt("not an object".into()))?;
        let hmap: serde_json::Map<String, serde_json::Value> = headers
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        obj.insert("headers".into(), serde_json::Value::Object(hmap));
        if let Some(b) = &m.body {
            let body: serde_json::Value =
                serde_json::from_str(b).map_err(|e| corrupt(format!("body: {e}")))?;
            obj.insert("body".into(), body);
        }
        if let Some(i) = m.interval_seconds {
            obj.insert("interval_seconds".into(), i.into());
        }
        if let Some(c) = &m.cron_expression {
            obj.insert("cron_expression".into(), c.clone().into());
        }
        if let Some(tz) = &m.timezone {
            obj.insert("timezone".into(), tz.clone().into());
        }

        let stop_condition = match &m.stop_condition {
            Some(s) => {
                let sc: serde_json::Value =
                    serde_json::from_str(s).map_err(|e| corrupt(format!("stop_condition: {e}")))?;
                StopCondition::parse_stored(&sc).map_err(|e| corrupt(e.to_string()))?
            }
            None => StopCondition::default(),
        };
        if let Some(r) = &m.retry {
            let r: serde_json::Value =
                serde_json::from_str(r).map_err(|e| corrupt(format!("retry: {e}")))?;
            obj.insert("retry".into(), r);
        }
        if let Some(r) = &m.retention {
            let r: serde_json::Value =
                serde_json::from_str(r).map_err(|e| corrupt(format!("retention: {e}")))?;
            obj.insert("retention".into(), r);
        }
        if let Some(n) = &m.notify {
            let n: serde_json::Value =
                serde_json::from_str(n).map_err(|e| corrupt(format!("notify: {e}")))?;
            obj.insert("notify".into(), n);
        }
        let mut spec = parse_create_within(&v, &InputLimits::MAX)
            .map_err(|e: FieldError| corrupt(e.to_string()))?;
        // Header order and case as the user wrote them.
        spec.headers = headers;
        spec.start_time = m
            .start_time
            .map(|ms| {
                chrono::DateTime::from_timestamp_millis(ms)
                    .ok_or_else(|| corrupt(format!("start_time: {ms} is out of range")))
            })
            .transpose()?;
        spec.stop_condition = stop_condition;
        Ok(spec)
    }

    pub fn active_task(&self, m: &tasks::Model) -> Result<ActiveTask, StoreError> {
        let task_id = parse_id(&m.task_id)?;
        let spec = self.spec_of(m)?;
        let schedule = schedule_of(&spec, m.start_time.unwrap_or(m.created_at)).map_err(|e| {
            StoreError::Corrupt {
                task_id: m.task_id.clone(),
                reason: e.to_string(),
            }
        })?;
        let status = TaskStatus::parse(&m.status).ok_or_else(|| StoreError::Corrupt {
            task_id: m.task_id.clone(),
            reason: format!("unknown status {}", m.status),
        })?;
        Ok(ActiveTask {
            task_id,
            spec,
            schedule,
            status,
            next_run_time: m.next_run_time,
            execution_count: m.execution_count,
            consecutive_failures: m.consecutive_failures,
            missed_slots: m.missed_slots,
            version: m.version,
        })
    }

    /// The row for a new or redefined task. `anchor_ms` is the schedule's anchor (stored as
    /// `start_time`).
    pub fn model_for(
        &self,
        task_id: Uuid,
        spec: &TaskSpec,
        anchor_ms: i64,
        state: &RowState,
    ) -> Result<tasks::Model, StoreError> {
        let stop = if spec.stop_condition.is_empty() {
            None
        } else {
            Some(spec.stop_condition.to_json().to_string())
        };
        let retry = if spec.retry.is_empty() {
            None
        } else {
            Some(
                serde_json::to_string(&spec.retry).map_err(|e| StoreError::Corrupt {
                    task_id: task_id.to_string(),
                    reason: e.to_string(),
                })?,
            )
        };
        Ok(tasks::Model {
            task_id: task_id.to_string(),
            user_id: spec.user_id,
            task_type: spec.task_type.as_str().to_string(),
            http_endpoint: spec.http_endpoint.to_string(),
            method: spec.method.as_str().to_string(),
            headers: self.seal_headers(task_id, &spec.headers)?,
            body: spec.body.as_ref().map(|b| b.to_string()),
            interval_seconds: spec.interval_seconds.map(|i| i as i64),
            cron_expression: spec.cron_expression.clone(),
            timezone: spec.timezone.clone(),
            start_time: Some(anchor_ms),
            stop_condition: stop,
            retry,
            status: state.status.as_str().to_string(),
            next_run_time: state.next_run_time,
            execution_count: state.execution_count,
            consecutive_failures: state.consecutive_failures,
            version: state.version,
            created_at: state.created_at,
            updated_at: state.updated_at,
            misfire_policy: Some(spec.misfire_policy.as_str().to_owned()),
            missed_slots: state.missed_slots,
            retention: spec.retention.to_stored(),
            notify: spec.notify.as_ref().map(|n| n.to_json().to_string()),
        })
    }
}

fn parse_id(s: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(s).map_err(|e| StoreError::Corrupt {
        task_id: s.to_string(),
        reason: e.to_string(),
    })
}
