//! The notification outbox (README, "Notifications"): rows are inserted by the persistence
//! actor in the batch of the execution that raised them ([`insert_notifications`]), then
//! claimed, delivered and settled by the notifier (`actors::notifier`) straight on the pool.
//!
//! A claim is a conditional `UPDATE` that sets `lease_owner`/`lease_until` only on pending rows
//! whose lease is absent or ran out, followed by a read of the rows that now carry this
//! claim: on either backend two nodes cannot both win one row, and the rows of a node that died
//! mid-delivery are taken over once their lease has run out.

use entities::notifications;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use uuid::Uuid;

use super::{Store, StoreError};
use crate::domain::notify::NotificationRecord;

/// Where a notification stands.
pub const PENDING: &str = "pending";
pub const DELIVERED: &str = "delivered";
pub const FAILED: &str = "failed";

/// The row of an event to deliver.
pub fn notification_row(r: &NotificationRecord) -> notifications::ActiveModel {
    notifications::ActiveModel {
        notification_id: sea_orm::Set(r.id.to_string()),
        task_id: sea_orm::Set(r.task_id.to_string()),
        user_id: sea_orm::Set(r.user_id),
        event: sea_orm::Set(r.event.as_str().to_owned()),
        url: sea_orm::Set(r.url.clone()),
        payload: sea_orm::Set(r.payload.clone()),
        status: sea_orm::Set(PENDING.to_owned()),
        attempts: sea_orm::Set(0),
        http_status: sea_orm::Set(None),
        error: sea_orm::Set(None),
        created_at: sea_orm::Set(r.created_at_ms),
        next_attempt_at: sea_orm::Set(r.created_at_ms),
        delivered_at: sea_orm::Set(None),
        lease_owner: sea_orm::Set(None),
        lease_until: sea_orm::Set(None),
    }
}

/// Inserts events in one statement; one already stored (a batch retried after a lost
/// commit answer) is left as it is.
pub async fn insert_notifications<C: ConnectionTrait>(
    db: &C,
    rows: &[NotificationRecord],
) -> Result<u64, DbErr> {
    if rows.is_empty() {
        return Ok(0);
    }
    // "Do nothing" as an update of a column to itself: MySQL has no `ON CONFLICT DO NOTHING`,
    // and `INSERT IGNORE` would hide other errors too.
    notifications::Entity::insert_many(rows.iter().map(notification_row))
        .on_conflict(
            sea_orm::sea_query::OnConflict::column(notifications::Column::NotificationId)
                .value(
                    notifications::Column::Status,
                    Expr::col((notifications::Entity, notifications::Column::Status)),
                )
                .to_owned(),
        )
        .exec_without_returning(db)
        .await
}

/// Deletes every notification of a task (with the task).
pub async fn delete_task_notifications<C: ConnectionTrait>(
    db: &C,
    task_id: &str,
) -> Result<u64, DbErr> {
    Ok(notifications::Entity::delete_many()
        .filter(notifications::Column::TaskId.eq(task_id))
        .exec(db)
        .await?
        .rows_affected)
}

/// How one delivery attempt ended.
#[derive(Clone, Debug)]
pub struct Attempted {
    pub http_status: Option<i32>,
    pub error: Option<String>,
    /// `Some(at)`: failed with retries left, next tried at `at`; `None` with `delivered`
    /// false: failed for good.
    pub retry_at: Option<i64>,
    pub delivered: bool,
}

impl Store {
    /// Claims up to `limit` pending rows due at `now` for `owner` until `lease_until`, and
    /// returns them (at most `limit`; rows another node claimed first are not among them).
    pub async fn claim_notifications(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: u64,
    ) -> Result<Vec<notifications::Model>, StoreError> {
        let free = || {
            sea_orm::Condition::any()
                .add(notifications::Column::LeaseUntil.is_null())
                .add(notifications::Column::LeaseUntil.lt(now))
        };
        let due: Vec<String> = notifications::Entity::find()
            .select_only()
            .column(notifications::Column::NotificationId)
            .filter(notifications::Column::Status.eq(PENDING))
            .filter(notifications::Column::NextAttemptAt.lte(now))
            .filter(free())
            .order_by_asc(notifications::Column::NextAttemptAt)
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await?;
        if due.is_empty() {
            return Ok(Vec::new());
        }
        notifications::Entity::update_many()
            .col_expr(notifications::Column::LeaseOwner, Expr::value(owner))
            .col_expr(notifications::Column::LeaseUntil, Expr::value(lease_until))
            .filter(notifications::Column::NotificationId.is_in(due.clone()))
            .filter(notifications::Column::Status.eq(PENDING))
            .filter(free())
            .exec(&self.db)
            .await?;
        Ok(notifications::Entity::find()
            .filter(notifications::Column::NotificationId.is_in(due))
            .filter(notifications::Column::LeaseOwner.eq(owner))
            .filter(notifications::Column::LeaseUntil.eq(lease_until))
            .filter(notifications::Column::Status.eq(PENDING))
            .all(&self.db)
            .await?)
    }

    /// Records a delivery attempt of `id` (the `attempts`-th) and releases its claim. A row
    /// already settled (by another node that took it over) is left as it is.
    pub async fn settle_notification(
        &self,
        id: &str,
        attempts: i32,
        now: i64,
        a: &Attempted,
    ) -> Result<(), StoreError> {
        let status = match (a.delivered, a.retry_at) {
            (true, _) => DELIVERED,
            (false, Some(_)) => PENDING,
            (false, None) => FAILED,
        };
        let mut q = notifications::Entity::update_many()
            .col_expr(notifications::Column::Status, Expr::value(status))
            .col_expr(notifications::Column::Attempts, Expr::value(attempts))
            .col_expr(
                notifications::Column::HttpStatus,
                Expr::value(a.http_status),
            )
            .col_expr(notifications::Column::Error, Expr::value(a.error.clone()))
            .col_expr(
                notifications::Column::LeaseOwner,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                notifications::Column::LeaseUntil,
                Expr::value(Option::<i64>::None),
            )
            .filter(notifications::Column::NotificationId.eq(id))
            .filter(notifications::Column::Status.eq(PENDING));
        if a.delivered {
            q = q.col_expr(notifications::Column::DeliveredAt, Expr::value(now));
        }
        if let Some(at) = a.retry_at {
            q = q.col_expr(notifications::Column::NextAttemptAt, Expr::value(at));
        }
        q.exec(&self.db).await?;
        Ok(())
    }

    /// Single-node mode at start-up: no other process delivers, so the claims left by a
    /// previous run of this one (killed mid-delivery) are released at once.
    pub async fn release_notification_claims(&self) -> Result<u64, StoreError> {
        Ok(notifications::Entity::update_many()
            .col_expr(
                notifications::Column::LeaseOwner,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                notifications::Column::LeaseUntil,
                Expr::value(Option::<i64>::None),
            )
            .filter(notifications::Column::Status.eq(PENDING))
            .filter(notifications::Column::LeaseOwner.is_not_null())
            .exec(&self.db)
            .await?
            .rows_affected)
    }

    /// A page of a task's notifications, newest first, and how many it has.
    pub async fn notifications(
        &self,
        task_id: Uuid,
        limit: u64,
        offset: u64,
    ) -> Result<(Vec<notifications::Model>, u64), StoreError> {
        let q = notifications::Entity::find()
            .filter(notifications::Column::TaskId.eq(task_id.to_string()));
        let total = q.clone().count(&self.db).await?;
        let rows = q
            .order_by_desc(notifications::Column::CreatedAt)
            .order_by_desc(notifications::Column::NotificationId)
            .offset(offset)
            .limit(limit)
            .all(&self.db)
            .await?;
        Ok((rows, total))
    }

    /// Up to `limit` of a task's notifications beyond its newest `keep` (retention).
    pub async fn notification_ids_beyond(
        &self,
        task_id: &str,
        keep: u64,
        limit: u64,
    ) -> Result<Vec<String>, StoreError> {
        Ok(notifications::Entity::find()
            .select_only()
            .column(notifications::Column::NotificationId)
            .filter(notifications::Column::TaskId.eq(task_id))
            .order_by_desc(notifications::Column::CreatedAt)
            .offset(keep)
            .limit(limit)
            .into_tuple::<String>()
            .all(&self.db)
            .await?)
    }

    /// Deletes the notifications `ids` (one statement).
    pub async fn delete_notifications(&self, ids: Vec<String>) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        Ok(notifications::Entity::delete_many()
            .filter(notifications::Column::NotificationId.is_in(ids))
            .exec(&self.db)
            .await?
            .rows_affected)
    }
}
