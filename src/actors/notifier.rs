//! Notifier: delivers task notifications (README, "Notifications") from the outbox table
//! (`store::notifications`), on an arbiter of its own.
//!
//! Task actors only write events (with the execution that raised them, in one persistence
//! batch); this actor delivers them, so a slow or dead notify URL never delays a fire. It
//! scans for due pending rows when persistence tells it a batch with events was written
//! ([`Wake`]), every [`SCAN_EVERY`], and when a retry falls due; each scan claims rows with a
//! lease (a conditional update: in a cluster any node may deliver any row, and the rows of a
//! node that died mid-delivery are taken over once their lease runs out). Each row is sent as
//! a signed JSON POST through the same HTTP workers, destination token bucket and address
//! check as the tasks' own calls, with the row's id as `webhook-id` (the same on every retry
//! and after a restart, so a receiver drops duplicates), and retried with the configured
//! backoff. At most [`MAX_IN_FLIGHT`] deliveries are on their way at once.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_web::web::Bytes;
use entities::notifications;
use ratelimit::TryWaitError;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::dispatch::{Dispatcher, Execute, OutboundRequest, Prepared};
use crate::domain::backoff_delay_ms;
use crate::domain::notify::NotifyEvent;
use crate::domain::Method;
use crate::metrics;
use crate::store::{Attempted, Store};
use crate::time::now_ms;

/// How often pending rows are looked for without being told (retries due, rows of a dead
/// node whose lease ran out, rows committed while this node was busy).
pub const SCAN_EVERY: Duration = Duration::from_secs(1);
/// Deliveries on their way at once, over all tasks. A delivery waiting on a URL that does
/// not answer costs a socket and a small future until the request timeout, so the cap is
/// generous: a few dead notify URLs must not hold up everyone else's events.
pub const MAX_IN_FLIGHT: usize = 256;
/// A claim outlasts the longest delivery (the request timeout) by this much.
const LEASE_MARGIN_MS: i64 = 10_000;

/// Persistence wrote events: look for due rows now.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Wake;

/// How the notifier delivers.
#[derive(Clone, Debug)]
pub struct NotifierSettings {
    /// Unique per process: whose claim a lease is.
    pub owner: String,
    pub max_retries: u32,
    pub backoff_ms: u64,
    /// `http.request_timeout_ms`: a claim lasts this plus a margin.
    pub request_timeout_ms: u64,
    /// Single-node mode: no other process delivers, so claims left by a killed run of this
    /// one are released at start instead of waiting for them to run out.
    pub release_claims_at_start: bool,
}

pub struct Notifier {
    store: Store,
    dispatcher: Arc<Dispatcher>,
    settings: NotifierSettings,
    in_flight: usize,
    scanning: bool,
    rescan: bool,
}

impl Notifier {
    pub fn new(store: Store, dispatcher: Arc<Dispatcher>, settings: NotifierSettings) -> Self {
        Self {
            store,
            dispatcher,
            settings,
            in_flight: 0,
            scanning: false,
            rescan: false,
        }
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.settings.request_timeout_ms)
            .unwrap_or(i64::MAX / 2)
            .saturating_add(LEASE_MARGIN_MS)
    }

    fn scan(&mut self, ctx: &mut Context<Self>) {
        if self.scanning {
            self.rescan = true;
            return;
        }
        let room = MAX_IN_FLIGHT.saturating_sub(self.in_flight);
        if room == 0 {
            // A delivery that ends scans again.
            self.rescan = true;
            return;
        }
        self.scanning = true;
        let store = self.store.clone();
        let owner = self.settings.owner.clone();
        let now = now_ms();
        let until = now.saturating_add(self.lease_ms());
        ctx.spawn(
            async move {
                store
                    .claim_notifications(&owner, now, until, room as u64)
                    .await
            }
            .into_actor(self)
            .map(|claimed, act, ctx| {
                act.scanning = false;
                match claimed {
                    Ok(rows) => {
                        for row in rows {
                            act.deliver(row, ctx);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "notifications: claiming pending rows failed")
                    }
                }
                if std::mem::take(&mut act.rescan) {
                    act.scan(ctx);
                }
            }),
        );
    }

    fn deliver(&mut self, row: notifications::Model, ctx: &mut Context<Self>) {
        let Ok(task_id) = Uuid::parse_str(&row.task_id) else {
            tracing::error!(notification_id = %row.notification_id, "notification of a task id that is not a UUID; dropped");
            return;
        };
        let event = NotifyEvent::parse(&row.event).map_or("unknown", NotifyEvent::as_str);
        let attempts = row.attempts.saturating_add(1);
        let prepared = url::Url::parse(&row.url)
            .map_err(|e| e.to_string())
            .and_then(|u| Prepared::new(&u, Method::Post, &[]));
        let limiter = url::Url::parse(&row.url)
            .ok()
            .and_then(|u| self.dispatcher.limiter(&u));
        let request = Arc::new(OutboundRequest {
            task_id,
            user_id: row.user_id,
            body: Some(Bytes::from(row.payload.clone())),
            limiter,
            prepared,
            response_match: None,
        });
        let exec = Execute {
            request: request.clone(),
            scheduled_ms: row.created_at,
            attempt: u32::try_from(attempts).unwrap_or(u32::MAX),
            cancel: CancellationToken::new(),
            webhook_id: Some(Arc::from(row.notification_id.as_str())),
        };
        let worker = self.dispatcher.worker(task_id).cloned();
        let store = self.store.clone();
        let (max_retries, backoff_ms) = (self.settings.max_retries, self.settings.backoff_ms);
        self.in_flight += 1;
        let work = async move {
            if let Some(limiter) = &request.limiter {
                // Over the destination's rate: wait for a token, as the tasks' calls do.
                while let Err(TryWaitError::Insufficient(wait)) = limiter.try_wait() {
                    tokio::time::sleep(wait).await;
                }
            }
            let outcome = match worker {
                Some(w) => {
                    metrics::sent(metrics::ActorKind::Worker);
                    w.send(exec).await.ok()
                }
                None => None,
            };
            let (http_status, error) = match outcome.map(|o| o.result) {
                Some(Ok(r)) => (Some(i32::from(r.status)), None),
                Some(Err(e)) => (None, Some(e.to_string())),
                None => (None, Some("no HTTP worker available".to_owned())),
            };
            let delivered = http_status.is_some_and(|s| (200..300).contains(&s));
            let now = now_ms();
            let retry_in = (!delivered
                && attempts <= i32::try_from(max_retries).unwrap_or(i32::MAX))
            .then(|| {
                let n = u32::try_from(attempts).unwrap_or(u32::MAX);
                backoff_delay_ms(backoff_ms, n, rand::random::<f64>())
            });
            let attempted = Attempted {
                http_status,
                error,
                retry_at: retry_in
                    .map(|ms| now.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX / 2))),
                delivered,
            };
            if let Err(e) = store
                .settle_notification(&row.notification_id, attempts, now, &attempted)
                .await
            {
                // The claim runs out and the row is tried again (the same `webhook-id`).
                tracing::warn!(notification_id = %row.notification_id, error = %e, "notifications: recording a delivery failed");
            }
            (attempted, retry_in)
        };
        ctx.spawn(
            work.into_actor(self)
                .map(move |(attempted, retry_in), act, ctx| {
                    act.in_flight -= 1;
                    let outcome = match (attempted.delivered, retry_in) {
                        (true, _) => "delivered",
                        (false, Some(_)) => "retry",
                        (false, None) => "failed",
                    };
                    metrics::notification(event, outcome);
                    if let Some(ms) = retry_in {
                        // Due then; a scan picks it up (also after a restart, from the row).
                        ctx.run_later(Duration::from_millis(ms), |act, ctx| act.scan(ctx));
                    }
                    if std::mem::take(&mut act.rescan) {
                        act.scan(ctx);
                    }
                }),
        );
    }
}

impl Actor for Notifier {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(super::MAILBOX_CAPACITY);
        if self.settings.release_claims_at_start {
            let store = self.store.clone();
            ctx.wait(
                async move {
                    if let Err(e) = store.release_notification_claims().await {
                        tracing::warn!(error = %e, "notifications: releasing old claims failed; they run out instead");
                    }
                }
                .into_actor(self),
            );
        }
        self.scan(ctx);
        ctx.run_interval(SCAN_EVERY, |act, ctx| act.scan(ctx));
    }
}

impl Handler<Wake> for Notifier {
    type Result = ();

    fn handle(&mut self, _: Wake, ctx: &mut Self::Context) {
        self.scan(ctx);
    }
}
