//! Redis in cluster mode: the fire guard and the change notices, through a `bb8-redis` pool
//! (and one dedicated pub/sub connection per node).
//!
//! Keys and the channel are prefixed with `tw:{cluster.root}:` so clusters sharing a Redis
//! stay apart.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use actix::prelude::*;
use bb8_redis::redis::aio::MultiplexedConnection;
use bb8_redis::redis::{self, AsyncCommands};
use bb8_redis::{bb8, RedisConnectionManager};
use futures_util::StreamExt;
use uuid::Uuid;

use crate::actors::registry::{Changed, Resubscribed};
use crate::metrics::{self, ActorKind};

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

/// A change to the pending queue: per partition, a sorted set of (task id, next run) kept by
/// the partition's owner (and by the API node for creations and removals), and the set of
/// partitions whose queue is complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueOp {
    Set {
        partition: u32,
        task_id: Uuid,
        at_ms: i64,
    },
    Remove {
        partition: u32,
        task_id: Uuid,
    },
    /// Every pending task of the partition is in its queue: a new owner may take it over
    /// from the queue alone.
    Complete {
        partition: u32,
    },
}

/// Sends queue changes to Redis in order, from any thread, batching what arrives together.
#[derive(Clone)]
pub struct QueueWriter {
    tx: tokio::sync::mpsc::UnboundedSender<Vec<QueueOp>>,
}

impl QueueWriter {
    pub fn push(&self, ops: Vec<QueueOp>) {
        if !ops.is_empty() {
            let _ = self.tx.send(ops);
        }
    }
}

#[derive(Clone)]
pub struct ClusterRedis {
    pool: bb8::Pool<RedisConnectionManager>,
    /// One multiplexed connection taken from the pool and shared by every caller: requests
    /// are pipelined on it rather than each waiting for a pooled connection of its own (under
    /// load, a pool of a few connections ran out and fires waited for a guard). Dropped after
    /// an error; the next caller takes a fresh one from the pool.
    shared: Arc<Mutex<Option<MultiplexedConnection>>>,
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
            .max_size(2)
            .connection_timeout(GUARD_WAIT)
            .build_unchecked(manager);
        Ok(Self {
            pool,
            shared: Arc::new(Mutex::new(None)),
            client,
            prefix: format!("tw:{root}:"),
            guard_ttl_ms: guard_ttl.as_millis() as u64,
            owner,
        })
    }

    /// The shared connection, from the pool when there is none.
    async fn conn(&self) -> Result<MultiplexedConnection, RedisError> {
        if let Some(c) = self
            .shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
            return Ok(c);
        }
        let fresh = self.pool.get().await?.clone();
        *self.shared.lock().unwrap_or_else(PoisonError::into_inner) = Some(fresh.clone());
        Ok(fresh)
    }

    /// Runs `op` on the shared connection; after an error the connection is dropped.
    async fn with_conn<T, F, Fut>(&self, wait: Duration, op: F) -> Result<T, RedisError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = Result<T, redis::RedisError>>,
    {
        let run = async {
            let conn = self.conn().await?;
            op(conn).await.map_err(RedisError::from)
        };
        let result = match tokio::time::timeout(wait, run).await {
            Ok(r) => r,
            Err(_) => Err(RedisError::Timeout(wait)),
        };
        if result.is_err() {
            *self.shared.lock().unwrap_or_else(PoisonError::into_inner) = None;
        }
        result
    }

    fn guard_key(&self, task_id: Uuid, slot_ms: i64) -> String {
        format!("{}guard:{task_id}:{slot_ms}", self.prefix)
    }

    fn queue_key(&self, partition: u32) -> String {
        format!("{}queue:{partition}", self.prefix)
    }

    fn complete_key(&self) -> String {
        format!("{}queue-complete", self.prefix)
    }

    /// Starts the single writer of queue changes (on the current runtime) and returns its
    /// handle. A batch Redis refuses is dropped (logged): the queue is a cache of the
    /// database, and the owner rebuilds it when Redis comes back.
    pub fn queue_writer(&self) -> QueueWriter {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<QueueOp>>();
        let me = self.clone();
        actix_rt::spawn(async move {
            let mut failing = false;
            while let Some(mut ops) = rx.recv().await {
                while let Ok(more) = rx.try_recv() {
                    ops.extend(more);
                }
                match me.apply_queue(&ops).await {
                    Ok(()) => {
                        if failing {
                            tracing::info!("pending queue: Redis answers again");
                        }
                        failing = false;
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!(error = %e, "pending queue: Redis refused an update; it is rebuilt when Redis is back");
                        }
                        failing = true;
                    }
                }
            }
        });
        QueueWriter { tx }
    }

    async fn apply_queue(&self, ops: &[QueueOp]) -> Result<(), RedisError> {
        let mut pipe = redis::pipe();
        for op in ops {
            match op {
                QueueOp::Set {
                    partition,
                    task_id,
                    at_ms,
                } => {
                    pipe.zadd(self.queue_key(*partition), task_id.to_string(), *at_ms)
                        .ignore();
                }
                QueueOp::Remove { partition, task_id } => {
                    pipe.zrem(self.queue_key(*partition), task_id.to_string())
                        .ignore();
                }
                QueueOp::Complete { partition } => {
                    pipe.sadd(self.complete_key(), *partition).ignore();
                }
            }
        }
        self.with_conn(Duration::from_secs(2), |mut conn| async move {
            pipe.query_async::<()>(&mut conn).await
        })
        .await
    }

    /// For a take-over: which of `partitions` have a complete queue, and the task ids queued
    /// in those.
    pub async fn queued(&self, partitions: &[u32]) -> Result<(Vec<u32>, Vec<String>), RedisError> {
        self.with_conn(Duration::from_secs(5), |mut conn| async move {
            let complete: Vec<u32> = conn.smembers(self.complete_key()).await?;
            let complete: Vec<u32> = complete
                .into_iter()
                .filter(|p| partitions.contains(p))
                .collect();
            let mut pipe = redis::pipe();
            for p in &complete {
                pipe.zrange(self.queue_key(*p), 0, -1);
            }
            let lists: Vec<Vec<String>> = if complete.is_empty() {
                Vec::new()
            } else {
                pipe.query_async(&mut conn).await?
            };
            Ok((complete, lists.into_iter().flatten().collect()))
        })
        .await
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
        let mut cmd = redis::cmd("SET");
        cmd.arg(&key)
            .arg(&self.owner)
            .arg("NX")
            .arg("PX")
            .arg(self.guard_ttl_ms);
        self.with_conn(GUARD_WAIT, |mut conn| async move {
            let set: Option<String> = cmd.query_async(&mut conn).await?;
            Ok(set.is_some())
        })
        .await
    }

    /// Publishes a change for the task's owner. A lost notice is a delay (the owner's
    /// periodic reconciliation finds the change), never a loss.
    pub async fn publish(&self, change: &Changed) -> Result<(), RedisError> {
        let payload = serde_json::to_string(change).unwrap_or_default();
        let channel = self.channel();
        self.with_conn(GUARD_WAIT, |mut conn| async move {
            let _: i64 = conn.publish(channel, payload).await?;
            Ok(())
        })
        .await
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
                        metrics::sent(ActorKind::Registry);
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
                                    metrics::sent(ActorKind::Registry);
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
