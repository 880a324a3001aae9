//! `task_logs`: one row per execution attempt.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "task_logs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub log_id: String,
    pub user_id: i64,
    pub task_id: String,
    /// The slot this attempt belongs to (epoch ms); with `attempt` unique per task.
    pub scheduled_time: i64,
    pub attempt: i32,
    pub http_status: Option<i32>,
    #[sea_orm(column_type = "Text", nullable)]
    pub error: Option<String>,
    pub duration_ms: i64,
    #[sea_orm(column_type = "Text", nullable)]
    pub response_body: Option<String>,
    /// When the attempt was sent (epoch ms).
    pub created_at: i64,
    /// What started the execution: `schedule`, `manual` or `catch_up`.
    pub trigger_kind: String,
    /// Start of the execution's first attempt minus `scheduled_time`; null for a slot that
    /// was not sent.
    pub lateness_ms: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
