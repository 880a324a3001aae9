//! `tasks`: one row per task definition with its schedule and runtime state.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "tasks")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub task_id: String,
    pub user_id: i64,
    /// `interval`, `once` or `cron`. The column is `type` (README, "The API"); the field
    /// cannot be, `type` being a Rust keyword.
    #[sea_orm(column_name = "type")]
    pub task_type: String,
    #[sea_orm(column_type = "Text")]
    pub http_endpoint: String,
    pub method: String,
    /// `key_id || nonce || ciphertext` of the JSON header list, task id as associated data.
    #[sea_orm(column_type = "Blob", nullable)]
    pub headers: Option<Vec<u8>>,
    #[sea_orm(column_type = "Text", nullable)]
    pub body: Option<String>,
    pub interval_seconds: Option<i64>,
    pub cron_expression: Option<String>,
    pub timezone: Option<String>,
    /// The schedule's anchor: the user's `start_time`, or the creation time when none was given.
    pub start_time: Option<i64>,
    #[sea_orm(column_type = "Text", nullable)]
    pub stop_condition: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub retry: Option<String>,
    pub status: String,
    pub next_run_time: Option<i64>,
    pub execution_count: i64,
    pub consecutive_failures: i64,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
    /// `fire_once` or `skip`; null reads as `fire_once`.
    pub misfire_policy: Option<String>,
    /// Slots missed while the service was down, in all.
    pub missed_slots: i64,
    /// The task's own history limits (JSON), null for the global ones.
    pub retention: Option<String>,
    /// The task's notifications (JSON `{"url", "events", "late_ms"}`), null for none.
    #[sea_orm(column_type = "Text", nullable)]
    pub notify: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
