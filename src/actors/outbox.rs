//! Outbox: gathers the fire-path messages that many task actors send to one long-lived actor
//! (the wheel, persistence) in one turn of their arbiter's loop, and delivers them as one
//! message.
//!
//! A burst of 10,000 fires makes 10,000 re-registrations and 20,000 writes. Sent one by one,
//! each is a mailbox push and, whenever the receiver had gone idle in between, a wake-up of its
//! thread — on a small virtual machine a context switch costs more than the work the message
//! carries. Through the outbox the first push schedules one delivery (a task spawned on the
//! sender's arbiter) after `delay`, or at the end of the current turn of the arbiter's loop
//! when `delay` is zero, and everything pushed until then rides along, in the order it was
//! pushed.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Collects items from any thread and hands them to `deliver` in batches.
pub struct Outbox<T: Send + 'static> {
    pending: Mutex<Vec<T>>,
    delay: Duration,
    deliver: Box<dyn Fn(Vec<T>) + Send + Sync>,
}

impl<T: Send + 'static> Outbox<T> {
    pub fn new(delay: Duration, deliver: impl Fn(Vec<T>) + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Self {
            pending: Mutex::new(Vec::new()),
            delay,
            deliver: Box::new(deliver),
        })
    }

    /// Queues `item`; it is delivered within `delay` (at once when not called on an arbiter).
    pub fn push(self: &Arc<Self>, item: T) {
        let first = {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            pending.push(item);
            pending.len() == 1
        };
        if !first {
            return;
        }
        if actix_rt::Arbiter::try_current().is_some() {
            let me = self.clone();
            actix_rt::spawn(async move {
                if !me.delay.is_zero() {
                    actix_rt::time::sleep(me.delay).await;
                }
                me.flush()
            });
        } else {
            self.flush();
        }
    }

    /// Delivers everything queued now (shutdown flushes before its last write).
    pub fn flush(&self) {
        let items =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        if !items.is_empty() {
            (self.deliver)(items);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Batches = Arc<Mutex<Vec<Vec<u32>>>>;

    /// An outbox whose deliveries are recorded, batch by batch.
    fn recording(delay: Duration) -> (Arc<Outbox<u32>>, Batches) {
        let batches = Batches::default();
        let seen = batches.clone();
        let outbox = Outbox::new(delay, move |items| seen.lock().unwrap().push(items));
        (outbox, batches)
    }

    #[actix_rt::test]
    async fn pushes_of_one_turn_arrive_as_one_batch_in_order() {
        let (outbox, batches) = recording(Duration::ZERO);
        for i in 0..100 {
            outbox.push(i);
        }
        assert!(
            batches.lock().unwrap().is_empty(),
            "delivered before the turn ended"
        );
        tokio::task::yield_now().await;
        outbox.push(100);
        tokio::task::yield_now().await;
        let got = batches.lock().unwrap().clone();
        assert_eq!(got, vec![(0..100).collect::<Vec<_>>(), vec![100]]);
    }

    #[actix_rt::test]
    async fn with_a_delay_everything_pushed_within_it_arrives_together() {
        let (outbox, batches) = recording(Duration::from_millis(50));
        outbox.push(1);
        tokio::task::yield_now().await;
        outbox.push(2);
        tokio::task::yield_now().await;
        assert!(
            batches.lock().unwrap().is_empty(),
            "delivered before the delay"
        );
        for _ in 0..200 {
            if !batches.lock().unwrap().is_empty() {
                break;
            }
            actix_rt::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(batches.lock().unwrap().clone(), vec![vec![1, 2]]);
    }

    #[test]
    fn off_an_arbiter_each_push_is_delivered_at_once() {
        let (outbox, batches) = recording(Duration::ZERO);
        outbox.push(1);
        outbox.push(2);
        assert_eq!(batches.lock().unwrap().clone(), vec![vec![1], vec![2]]);
    }

    #[actix_rt::test]
    async fn flush_delivers_what_is_pending_and_the_scheduled_delivery_finds_nothing() {
        let (outbox, batches) = recording(Duration::from_secs(60));
        outbox.push(1);
        outbox.push(2);
        outbox.flush();
        tokio::task::yield_now().await;
        assert_eq!(batches.lock().unwrap().clone(), vec![vec![1, 2]]);
    }
}
