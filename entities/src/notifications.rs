//! `notifications`: one row per task event to deliver (README, "Notifications"), written in
//! the same transaction as the execution that raised it and delivered from there (an outbox).

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "notifications")]
pub struct Model {
    /// Also the delivery's `webhook-id`: the same on every attempt, and after a restart.
    #[sea_orm(primary_key, auto_increment = false)]
    pub notification_id: String,
    pub task_id: String,
    pub user_id: i64,
    /// `failing`, `recovered`, `completed`, `failed` or `late`.
    pub event: String,
    /// Where it goes: the task's `notify.url` when the event happened.
    #[sea_orm(column_type = "Text")]
    pub url: String,
    /// The JSON body sent.
    #[sea_orm(column_type = "Text")]
    pub payload: String,
    /// `pending`, `delivered` or `failed` (retries exhausted).
    pub status: String,
    /// Delivery attempts made so far.
    pub attempts: i32,
    pub http_status: Option<i32>,
    #[sea_orm(column_type = "Text", nullable)]
    pub error: Option<String>,
    pub created_at: i64,
    /// A pending row is not tried before this (the retry backoff).
    pub next_attempt_at: i64,
    pub delivered_at: Option<i64>,
    /// The process delivering it now, and until when its claim holds; another node takes a
    /// pending row over once the claim has run out.
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
