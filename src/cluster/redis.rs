//! Redis in cluster mode: the fire guard and the change notices, through a `bb8-redis` pool
//! (and one dedicated pub/sub connection per node).
//!
//! Keys and the channel are prefixed with `tw:{cluster.root}:` so clusters sharing a Redis
//! stay apart.

use std::time::Duration;

use actix::prelude::*;
use bb8_redis::redis::{self, AsyncCommands};
use bb8_redis::{bb8, RedisConnectionManager};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::metrics;

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis pool: {0}")]
    Pool(#[from] bb8::RunError<redis::RedisError>),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
}

/// How long a fire waits for its guard before firing without it: Redis is a second line of
/// defence, never a reason to miss a slot.
const GUARD_WAIT: Duration = Duration::from_millis(500);

/// What a change notice says happened to a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Created or redefined: the owner (re)loads it from the database.
    Upsert,
    /// Cancelled or deleted: the owner stops its actor.
    Stop,
}

/// A change made through one node's API, for the task's owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Message)]
#[rtype(result = "()")]
pub struct Changed {
    /// The sending node's owner token; a node ignores its own notices.
    pub origin: String,
    pub task_id: Uuid,
    pub kind: ChangeKind,
    /// With `Upsert`: the task's next run was recomputed (take it from the row).
    pub reschedule: bool,
}

/// The notice subscription was (re)established: notices may have been lost meanwhile.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Resubscribed;

#[derive(Clone)]
pub struct ClusterRedis {
    pool: bb8::Pool<RedisConnectionManager>,
    client: redis::Client,
    prefix: String,
    guard_ttl_ms: u64,
    owner: String,
}

impl ClusterRedis {
    /// A pool for `url`; connects lazily (Redis may come up after the node).
    pub fn new(
        url: &str,
        root: &str,
        owner: String,
        guard_ttl: Duration,
    ) -> Result<Self, RedisError> {
        let manager = RedisConnectionManager::new(url)?;
        let client = redis::Client::open(url)?;
        let pool = bb8::Pool::builder()
            .max_size(8)
            .connection_timeout(GUARD_WAIT)
            .build_unchecked(manager);
        Ok(Self {
            pool,
            client,
            prefix: format!("tw:{root}:"),
            guard_ttl_ms: guard_ttl.as_millis() as u64,
            owner,
        })
    }

    fn guard_key(&self, task_id: Uuid, slot_ms: i64) -> String {
        format!("{}guard:{task_id}:{slot_ms}", self.prefix)
    }

    pub fn channel(&self) -> String {
        format!("{}changes", self.prefix)
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Takes the guard of one (task, scheduled time): `Ok(true)` if this node may send it,
    /// `Ok(false)` if another node (or an earlier run of this one) already took it.
    pub async fn take_guard(&self, task_id: Uuid, slot_ms: i64) -> Result<bool, RedisError> {
        let key = self.guard_key(task_id, slot_ms);
        let run = async {
            let mut conn = self.pool.get().await?;
            let set: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(&self.owner)
                .arg("NX")
                .arg("PX")
                .arg(self.guard_ttl_ms)
                .query_async(&mut *conn)
                .await?;
            Ok::<_, RedisError>(set.is_some())
        };
        tokio::time::timeout(GUARD_WAIT, run)
            .await
            .map_err(|_| RedisError::Timeout(GUARD_WAIT))?
    }

    /// Publishes a change for the task's owner. A lost notice is a delay (the owner's
    /// periodic reconciliation finds the change), never a loss.
    pub async fn publish(&self, change: &Changed) -> Result<(), RedisError> {
        let payload = serde_json::to_string(change).unwrap_or_default();
        let run = async {
            let mut conn = self.pool.get().await?;
            let _: i64 = conn.publish(self.channel(), payload).await?;
            Ok::<_, RedisError>(())
        };
        tokio::time::timeout(GUARD_WAIT, run)
            .await
            .map_err(|_| RedisError::Timeout(GUARD_WAIT))?
    }

    /// Subscribes to the change channel for as long as `to` lives, reconnecting after any
    /// error; every notice from another node goes to `changes`, and every (re)subscription
    /// is announced to `resubscribed`.
    pub fn subscribe(&self, changes: Recipient<Changed>, resubscribed: Recipient<Resubscribed>) {
        let client = self.client.clone();
        let channel = self.channel();
        let own = self.owner.clone();
        actix_rt::spawn(async move {
            let mut failures = 0u32;
            loop {
                let sub = async {
                    let mut pubsub = client.get_async_pubsub().await?;
                    pubsub.subscribe(&channel).await?;
                    Ok::<_, redis::RedisError>(pubsub)
                };
                match tokio::time::timeout(Duration::from_secs(2), sub).await {
                    Ok(Ok(pubsub)) => {
                        if failures > 0 {
                            tracing::info!("change notices: subscribed again");
                        }
                        failures = 0;
                        if resubscribed.try_send(Resubscribed).is_err() && !resubscribed.connected()
                        {
                            return;
                        }
                        let mut stream = pubsub.into_on_message();
                        while let Some(msg) = stream.next().await {
                            let Ok(payload) = msg.get_payload::<String>() else {
                                continue;
                            };
                            match serde_json::from_str::<Changed>(&payload) {
                                Ok(c) if c.origin == own => {}
                                Ok(c) => {
                                    metrics::cluster_notice("received");
                                    if !changes.connected() {
                                        return;
                                    }
                                    changes.do_send(c);
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "unreadable change notice ignored")
                                }
                            }
                        }
                        tracing::warn!("change notices: connection to Redis lost; resubscribing");
                    }
                    Ok(Err(e)) => {
                        if failures == 0 {
                            tracing::warn!(error = %e, "change notices: cannot subscribe; retrying");
                        }
                        failures += 1;
                    }
                    Err(_) => {
                        if failures == 0 {
                            tracing::warn!("change notices: Redis did not answer; retrying");
                        }
                        failures += 1;
                    }
                }
                if !changes.connected() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200 * u64::from(failures.min(5)))).await;
            }
        });
    }
}
