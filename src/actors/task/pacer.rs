//! The node's catch-up pacer: the fires a task owes after a take-over, a restart or a lapse of
//! the cluster lease go out spread over time rather than in one burst, so the on-time fires of
//! the node's other tasks are not queued behind them. Shared by every task actor of the node.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::time::now_ms;

/// Spreads catch-up fires — the fires a task owes after a take-over, a restart or a lapse of
/// the cluster lease — over time instead of sending them in one burst, so that the on-time
/// fires of the node's other tasks are not queued behind them: one every [`CATCH_UP_SPACING`],
/// none held back longer than [`CATCH_UP_MAX_DELAY`] (beyond that they go as they come).
#[derive(Debug, Default)]
pub struct CatchUpPacer {
    /// Epoch microseconds of the next free turn.
    next_us: AtomicI64,
}

/// The distance between two paced catch-up fires.
pub const CATCH_UP_SPACING: Duration = Duration::from_micros(1000);
/// How long a catch-up fire waits for its turn at most.
pub const CATCH_UP_MAX_DELAY: Duration = Duration::from_millis(500);

impl CatchUpPacer {
    /// Takes the next turn: how long to wait for it.
    pub fn turn(&self) -> Duration {
        let now = now_ms().saturating_mul(1000);
        let spacing = CATCH_UP_SPACING.as_micros() as i64;
        let max = CATCH_UP_MAX_DELAY.as_micros() as i64;
        let mut current = self.next_us.load(Ordering::Relaxed);
        loop {
            let at = current.max(now);
            if at - now >= max {
                // Over the limit: no turn is taken; it goes at the latest allowed moment.
                return Duration::from_micros(max as u64);
            }
            match self.next_us.compare_exchange_weak(
                current,
                at + spacing,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Duration::from_micros((at - now) as u64),
                Err(seen) => current = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_catch_ups_is_spread_out_and_none_waits_longer_than_the_limit() {
        let pacer = CatchUpPacer::default();
        let start = std::time::Instant::now();
        let waits: Vec<Duration> = (0..1000).map(|_| pacer.turn()).collect();
        let took = start.elapsed();
        // One turn per spacing from now on (less the time the calls took)...
        assert!(waits[0] < Duration::from_millis(5), "{:?}", waits[0]);
        assert!(
            waits[100] + took >= CATCH_UP_SPACING * 99,
            "{:?}",
            waits[100]
        );
        // ...and past the limit they go at the latest allowed moment.
        assert!(waits.iter().all(|w| *w <= CATCH_UP_MAX_DELAY));
        assert_eq!(waits[999], CATCH_UP_MAX_DELAY);
    }
}
