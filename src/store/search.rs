//! The filtered reads behind the history and the task list: a task's log page with its
//! outcome and time filters, a user's task page with its text, type and status filters, and the
//! user's tasks per status.
//!
//! Each statement is built by a plain function returning the SeaORM `Select`, so that what runs
//! is what `tests/api/query_plans.rs` hands to `EXPLAIN`: every one of them is served by an
//! index (`task_logs (task_id, created_at)`, `tasks (user_id, status)`,
//! `tasks (user_id, created_at, task_id)`), never by a scan of the table.

use entities::{task_logs, tasks};
use sea_orm::sea_query::{Expr, ExprTrait, LikeExpr};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select};
use uuid::Uuid;

use super::{Store, StoreError};
use crate::domain::{TaskStatus, TaskType};

/// What a log row says about its execution attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A request was sent (attempt ≥ 1) and answered with a 2xx status.
    Success,
    /// A request was sent (attempt ≥ 1) and answered otherwise, or not answered at all.
    Failure,
    /// A scheduled run that was not sent (attempt 0: the previous execution was in flight).
    Skipped,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [Outcome::Success, Outcome::Failure, Outcome::Skipped];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }

    fn condition(self) -> Condition {
        let sent = task_logs::Column::Attempt.gte(1);
        let ok = Condition::all()
            .add(task_logs::Column::HttpStatus.gte(200))
            .add(task_logs::Column::HttpStatus.lt(300));
        match self {
            Outcome::Success => Condition::all().add(sent).add(ok),
            // `NOT (status between 200 and 299)` would drop the null statuses (SQL's three-valued
            // logic), so the unanswered attempts are named on their own.
            Outcome::Failure => Condition::all().add(sent).add(
                Condition::any()
                    .add(task_logs::Column::HttpStatus.is_null())
                    .add(task_logs::Column::HttpStatus.lt(200))
                    .add(task_logs::Column::HttpStatus.gte(300)),
            ),
            Outcome::Skipped => Condition::all().add(task_logs::Column::Attempt.eq(0)),
        }
    }
}

/// The filters of a task's history. `since` and `until` bound the row's `created_at` (its
/// `timestamp`), `since` inclusive, `until` exclusive, both in epoch milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogFilter {
    pub outcome: Option<Outcome>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
}

/// The filters of a user's task list. `statuses` empty means any status; `text` matches a
/// substring of the endpoint URL or of the task id (case-insensitively for ASCII on both
/// backends; `%` and `_` match themselves).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskSearch {
    pub text: Option<String>,
    pub task_type: Option<TaskType>,
    pub statuses: Vec<TaskStatus>,
}

/// The escape character of the search's `LIKE` patterns. Not a backslash: MySQL also reads a
/// backslash as an escape inside string literals, SQLite does not, and `!` means the same to both.
const LIKE_ESCAPE: char = '!';

/// `%text%` with the `LIKE` wildcards and the escape character itself escaped, so that every
/// character of `text` matches only itself.
pub fn contains_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_') || c == LIKE_ESCAPE {
            p.push(LIKE_ESCAPE);
        }
        p.push(c);
    }
    p.push('%');
    p
}

fn logs_filtered(task_id: Uuid, f: &LogFilter) -> Select<task_logs::Entity> {
    let mut q = task_logs::Entity::find().filter(task_logs::Column::TaskId.eq(task_id.to_string()));
    if let Some(o) = f.outcome {
        q = q.filter(o.condition());
    }
    if let Some(since) = f.since_ms {
        q = q.filter(task_logs::Column::CreatedAt.gte(since));
    }
    if let Some(until) = f.until_ms {
        q = q.filter(task_logs::Column::CreatedAt.lt(until));
    }
    q
}

/// One page of a task's matching log rows, newest first (the statement behind [`Store::logs`]).
pub fn logs_page_query(
    task_id: Uuid,
    f: &LogFilter,
    limit: u64,
    offset: u64,
) -> Select<task_logs::Entity> {
    logs_filtered(task_id, f)
        .order_by_desc(task_logs::Column::CreatedAt)
        .order_by_desc(task_logs::Column::ScheduledTime)
        .order_by_desc(task_logs::Column::Attempt)
        .limit(limit)
        .offset(offset)
}

/// How many of a task's log rows match: one column, `n`.
pub fn logs_count_query(task_id: Uuid, f: &LogFilter) -> Select<task_logs::Entity> {
    logs_filtered(task_id, f)
        .select_only()
        .column_as(Expr::col(task_logs::Column::LogId).count(), "n")
}

fn tasks_filtered(user_id: i64, s: &TaskSearch) -> Select<tasks::Entity> {
    let mut q = tasks::Entity::find().filter(tasks::Column::UserId.eq(user_id));
    if !s.statuses.is_empty() {
        q = q.filter(tasks::Column::Status.is_in(s.statuses.iter().map(|s| s.as_str())));
    }
    if let Some(t) = s.task_type {
        q = q.filter(tasks::Column::TaskType.eq(t.as_str()));
    }
    if let Some(text) = s.text.as_deref().filter(|t| !t.is_empty()) {
        let pattern = contains_pattern(text);
        q = q.filter(
            Condition::any()
                .add(
                    Expr::col(tasks::Column::HttpEndpoint)
                        .like(LikeExpr::new(pattern.clone()).escape(LIKE_ESCAPE)),
                )
                .add(
                    Expr::col(tasks::Column::TaskId)
                        .like(LikeExpr::new(pattern).escape(LIKE_ESCAPE)),
                ),
        );
    }
    q
}

/// One page of a user's matching tasks, newest first (the statement behind
/// [`Store::list_user_tasks`]). Ties in `created_at` go by task id, descending too, so that
/// the order is the one `(user_id, created_at, task_id)` holds and nothing is sorted.
pub fn user_tasks_page_query(
    user_id: i64,
    s: &TaskSearch,
    limit: u64,
    offset: u64,
) -> Select<tasks::Entity> {
    tasks_filtered(user_id, s)
        .order_by_desc(tasks::Column::CreatedAt)
        .order_by_desc(tasks::Column::TaskId)
        .limit(limit)
        .offset(offset)
}

/// How many of a user's tasks match: one column, `n`.
pub fn user_tasks_count_query(user_id: i64, s: &TaskSearch) -> Select<tasks::Entity> {
    tasks_filtered(user_id, s)
        .select_only()
        .column_as(Expr::col(tasks::Column::TaskId).count(), "n")
}

/// A user's tasks per status: `(status, n)` for each status the user has a task in.
pub fn user_status_counts_query(user_id: i64) -> Select<tasks::Entity> {
    tasks::Entity::find()
        .select_only()
        .column(tasks::Column::Status)
        .column_as(Expr::col(tasks::Column::TaskId).count(), "n")
        .filter(tasks::Column::UserId.eq(user_id))
        .group_by(tasks::Column::Status)
}

impl Store {
    /// One page of a task's matching log rows and how many match in all.
    pub async fn logs(
        &self,
        task_id: Uuid,
        f: &LogFilter,
        limit: u64,
        offset: u64,
    ) -> Result<(Vec<task_logs::Model>, u64), StoreError> {
        let total = logs_count_query(task_id, f)
            .into_tuple::<i64>()
            .one(&self.db)
            .await?
            .unwrap_or(0);
        let rows = logs_page_query(task_id, f, limit, offset)
            .all(&self.db)
            .await?;
        Ok((rows, u64::try_from(total).unwrap_or(0)))
    }

    /// One page of a user's matching tasks and how many match in all.
    pub async fn list_user_tasks(
        &self,
        user_id: i64,
        s: &TaskSearch,
        limit: u64,
        offset: u64,
    ) -> Result<(Vec<tasks::Model>, u64), StoreError> {
        let total = user_tasks_count_query(user_id, s)
            .into_tuple::<i64>()
            .one(&self.db)
            .await?
            .unwrap_or(0);
        let rows = user_tasks_page_query(user_id, s, limit, offset)
            .all(&self.db)
            .await?;
        Ok((rows, u64::try_from(total).unwrap_or(0)))
    }

    /// How many tasks the user has in each status, every status present (zero included).
    pub async fn user_status_counts(
        &self,
        user_id: i64,
    ) -> Result<Vec<(TaskStatus, u64)>, StoreError> {
        let rows = user_status_counts_query(user_id)
            .into_tuple::<(String, i64)>()
            .all(&self.db)
            .await?;
        Ok(TaskStatus::ALL
            .into_iter()
            .map(|s| {
                let n = rows
                    .iter()
                    .find(|(name, _)| name == s.as_str())
                    .map_or(0, |(_, n)| u64::try_from(*n).unwrap_or(0));
                (s, n)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_text_matches_its_wildcards_and_escape_character_literally() {
        assert_eq!(contains_pattern("abc"), "%abc%");
        assert_eq!(contains_pattern("50%_off!"), "%50!%!_off!!%");
        assert_eq!(contains_pattern(""), "%%");
    }

    #[test]
    fn every_outcome_parses_from_its_name_and_nothing_else_does() {
        for o in Outcome::ALL {
            assert_eq!(Outcome::parse(o.as_str()), Some(o));
        }
        assert_eq!(Outcome::parse("Success"), None);
        assert_eq!(Outcome::parse("ok"), None);
    }
}
