//! A hierarchical timing wheel holding timers with millisecond deadlines.
//!
//! This is the hierarchical scheme of Varghese & Lauck, "Hashed and Hierarchical Timing Wheels:
//! Data Structures for the Efficient Implementation of a Timer Facility" (SOSP '87), laid out
//! like tokio's `runtime/time/wheel`. Levels get coarser as they reach further ahead:
//!
//! | Level    | Slots                 | Slot width | Span (one turn) |
//! |----------|-----------------------|------------|-----------------|
//! | ms       | 1000                  | 1 ms       | 1 s             |
//! | second   | 60                    | 1 s        | 1 min           |
//! | minute   | 60                    | 1 min      | 1 h             |
//! | overflow | one bucket per hour   | 1 h        | unbounded       |
//!
//! Slots are picked by absolute time, `deadline / slot width % slots`, and an entry goes to the
//! finest level whose *current* turn (the second, minute or hour that the wheel's time is in)
//! contains its deadline. When time enters a new second, minute or hour, the slot for it one level
//! up is emptied and each of its entries re-inserted by its exact deadline, which lands it on a
//! finer level ("cascading"). An entry therefore moves at most three times, a slot of the
//! millisecond level only ever holds a single deadline, and firing needs no sorting.
//!
//! The wheel is a plain data structure: it never reads a clock. Time is `u64` milliseconds (the
//! driver uses the Unix epoch) passed to [`Wheel::new`] and [`Wheel::poll`], and the driver sleeps
//! until [`Wheel::next_expiration`] in between.

mod level;
mod slot;

use std::collections::BTreeMap;
use std::fmt;

use slab::Slab;

use self::level::Level;
use self::slot::{Entry, Slot, NIL};

const MS_SLOTS: usize = 1000;
const MS_SLOT_MS: u64 = 1;

const SECOND_SLOTS: usize = 60;
const SECOND_SLOT_MS: u64 = MS_SLOT_MS * MS_SLOTS as u64;

const MINUTE_SLOTS: usize = 60;
const MINUTE_SLOT_MS: u64 = SECOND_SLOT_MS * SECOND_SLOTS as u64;

/// One overflow bucket is exactly one turn of the minute level, so a bucket can be emptied into
/// the wheels as a whole the moment its hour becomes the current one.
const OVERFLOW_BUCKET_MS: u64 = MINUTE_SLOT_MS * MINUTE_SLOTS as u64;

const LEVELS: usize = 3;

/// Index of the millisecond level in `Wheel::levels`; its slots fire instead of cascading.
const MS_LEVEL: usize = 0;

/// A timer wheel holding items of type `T`, each due at a deadline in milliseconds.
///
/// Entries that share a deadline are returned in insertion order.
pub struct Wheel<T> {
    entries: Slab<Entry<T>>,
    /// Finest first; `levels[MS_LEVEL]` is the millisecond level.
    levels: [Level; LEVELS],
    /// Deadlines beyond the minute level's current turn, keyed by `deadline / OVERFLOW_BUCKET_MS`.
    ///
    /// Far-future timers spread thinly over many hours, so a map of the non-empty buckets is
    /// cheaper than a fourth ring, and removal costs a lookup among distinct pending hours rather
    /// than among entries.
    overflow: BTreeMap<u64, Slot>,
    overflow_len: usize,
    /// Entries inserted with a deadline at or before `now`. No slot can take them (time has
    /// already passed theirs), so they wait here for the next `poll`.
    expired: Slot,
    /// Every deadline at or before this has been returned by `poll`, except those in `expired`.
    now: u64,
    /// Never reused, so a key cannot outlive its entry and then match a later one.
    next_generation: u64,
}

/// Handle to an inserted entry, used to cancel it.
///
/// A key stops matching once its entry fires or is removed, even after the entry's storage is
/// reused by a later insert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerKey {
    index: u32,
    generation: u64,
}

/// Where an entry is linked.
///
/// Entries do not record this; it is a function of the deadline and the wheel's time (see
/// `Wheel::position`), which keeps an entry at 24 bytes plus its item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Position {
    Expired,
    Level(usize),
    Overflow(u64),
}

/// The soonest non-empty place `poll` has to visit next.
#[derive(Clone, Copy, Debug)]
enum Occupied {
    Slot { level: usize, slot: usize },
    Bucket(u64),
}

impl<T> Wheel<T> {
    /// Creates an empty wheel whose current time is `now_ms`.
    ///
    /// `now_ms`: the wheel's notion of current time; nothing before it will be reported late-first.
    pub fn new(now_ms: u64) -> Self {
        Wheel {
            entries: Slab::new(),
            levels: [
                Level::new(MS_SLOT_MS, MS_SLOTS),
                Level::new(SECOND_SLOT_MS, SECOND_SLOTS),
                Level::new(MINUTE_SLOT_MS, MINUTE_SLOTS),
            ],
            overflow: BTreeMap::new(),
            overflow_len: 0,
            expired: Slot::new(),
            now: now_ms,
            next_generation: 0,
        }
    }

    /// Inserts an item due at `deadline_ms`.
    ///
    /// A deadline at or before the wheel's current time is returned by the next `poll` (never
    /// lost, never panics). O(1), except that a deadline past the current hour also looks up its
    /// hour among the pending hours.
    ///
    /// # Panics
    ///
    /// If the wheel already holds `u32::MAX - 1` entries.
    pub fn insert(&mut self, deadline_ms: u64, item: T) -> TimerKey {
        let generation = self.next_generation;
        self.next_generation += 1;

        let index = self.entries.insert(Entry {
            deadline: deadline_ms,
            generation,
            prev: NIL,
            next: NIL,
            item,
        });
        // Links are `u32` to keep entries small, with `NIL` reserved as the end of a list.
        let index = match u32::try_from(index) {
            Ok(index) if index != NIL => index,
            _ => panic!("a timer wheel holds at most {} entries", NIL),
        };

        self.link(index, self.position(deadline_ms));
        TimerKey { index, generation }
    }

    /// Cancels an entry, returning its item if it was still pending.
    ///
    /// Keys of entries that already fired or were removed return `None`. O(1), except that an
    /// entry past the current hour also looks up its hour among the pending hours.
    pub fn remove(&mut self, key: TimerKey) -> Option<T> {
        let entry = self.entries.get(key.index as usize)?;
        if entry.generation != key.generation {
            return None;
        }
        self.unlink(key.index, self.position(entry.deadline));
        Some(self.entries.remove(key.index as usize).item)
    }

    /// Advances to `now_ms` and appends every entry whose deadline is at or before it to `out` as
    /// `(deadline_ms, item)`, in non-decreasing deadline order. `out` is not cleared.
    ///
    /// A late call (time jumped by seconds or hours) fires or cascades every slot that was
    /// skipped, visiting only occupied slots, so its cost follows the number of entries due, not
    /// the time elapsed. `now_ms` earlier than the current time is treated as the current time.
    pub fn poll(&mut self, now_ms: u64, out: &mut Vec<(u64, T)>) {
        let target = now_ms.max(self.now);

        // These are all due at or before `now`, so they precede everything still in the wheels.
        self.fire_expired(out);

        while let Some((occupied, start)) = self.next_occupied() {
            if start > target {
                break;
            }
            debug_assert!(
                start >= self.now,
                "{occupied:?} starts at {start}, before the wheel's time {}; it should have been \
                 visited already",
                self.now
            );
            // Cascading places entries relative to `now`, so it has to be the slot's start.
            self.now = start;

            match occupied {
                Occupied::Slot {
                    level: MS_LEVEL,
                    slot,
                } => self.fire_slot(slot, out),
                Occupied::Slot { level, slot } => {
                    let chain = self.levels[level].take(slot);
                    self.cascade(chain, level);
                }
                Occupied::Bucket(hour) => {
                    let mut bucket = self
                        .overflow
                        .remove(&hour)
                        .expect("next_occupied returned a bucket that is not in the map");
                    self.overflow_len -= bucket.len();
                    let chain = bucket.take();
                    self.cascade(chain, LEVELS);
                }
            }
        }

        self.now = target;
    }

    /// Earliest deadline of any pending entry, exact rather than rounded to a slot, or `None` if
    /// the wheel is empty.
    ///
    /// This may be at or before [`now_ms`](Self::now_ms) when entries were inserted with past
    /// deadlines: the caller should poll right away.
    ///
    /// Costs a bitmap scan of at most 16 words per level. When the earliest entry of a second,
    /// minute or overflow slot was removed, the first query afterwards walks that one slot to
    /// find the new minimum, and caches it.
    pub fn next_expiration(&self) -> Option<u64> {
        // Each place below only holds deadlines later than all those before it: `expired` holds
        // deadlines up to `now`, each level the rest of its current turn, and the overflow
        // later hours. So the first non-empty one holds the answer.
        if let Some(earliest) = self.expired.earliest(&self.entries) {
            return Some(earliest);
        }
        for (index, level) in self.levels.iter().enumerate() {
            if let Some(slot) = level.first_occupied() {
                return if index == MS_LEVEL {
                    // A millisecond slot holds exactly one deadline: its own start.
                    Some(level.slot_start(self.now, slot))
                } else {
                    level.slot(slot).earliest(&self.entries)
                };
            }
        }
        self.overflow
            .values()
            .next()
            .and_then(|bucket| bucket.earliest(&self.entries))
    }

    /// Number of pending entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of pending entries on each level: `[ms, second, minute, overflow]`.
    ///
    /// Entries inserted with a deadline already past count as millisecond-level: they are due.
    pub fn level_counts(&self) -> [usize; 4] {
        [
            self.levels[MS_LEVEL].len() + self.expired.len(),
            self.levels[1].len(),
            self.levels[2].len(),
            self.overflow_len,
        ]
    }

    /// The wheel's current time: the latest `now_ms` passed to `new` or `poll`.
    pub fn now_ms(&self) -> u64 {
        self.now
    }

    /// Where an entry due at `deadline` is linked at the current time.
    ///
    /// Outside of `poll` every entry in the wheels is due after `now` and sits exactly where
    /// `wheel_position` puts it for the current `now`: an entry only becomes misplaced when time
    /// enters its slot, and `poll` cascades the slot at that very moment.
    fn position(&self, deadline: u64) -> Position {
        if deadline <= self.now {
            Position::Expired
        } else {
            self.wheel_position(deadline)
        }
    }

    /// The finest level whose current turn contains `deadline`. While `poll` cascades, a deadline
    /// equal to `now` is still placed in the wheels, since the slot for `now` is visited next.
    fn wheel_position(&self, deadline: u64) -> Position {
        debug_assert!(
            deadline >= self.now,
            "deadline {deadline} is before the wheel's time {} and belongs in `expired`",
            self.now
        );
        self.levels
            .iter()
            .position(|level| level.covers(self.now, deadline))
            .map_or(
                Position::Overflow(deadline / OVERFLOW_BUCKET_MS),
                Position::Level,
            )
    }

    fn link(&mut self, key: u32, position: Position) {
        match position {
            Position::Expired => self.expired.push_back(&mut self.entries, key),
            Position::Level(level) => self.levels[level].push(&mut self.entries, key),
            Position::Overflow(hour) => {
                self.overflow
                    .entry(hour)
                    .or_insert_with(Slot::new)
                    .push_back(&mut self.entries, key);
                self.overflow_len += 1;
            }
        }
    }

    fn unlink(&mut self, key: u32, position: Position) {
        match position {
            Position::Expired => self.expired.unlink(&mut self.entries, key),
            Position::Level(level) => self.levels[level].unlink(&mut self.entries, key),
            Position::Overflow(hour) => {
                let Some(bucket) = self.overflow.get_mut(&hour) else {
                    panic!("entry {key} belongs in overflow bucket {hour}, which does not exist");
                };
                bucket.unlink(&mut self.entries, key);
                // Empty buckets would make `next_occupied` visit hours with nothing to do.
                if bucket.is_empty() {
                    self.overflow.remove(&hour);
                }
                self.overflow_len -= 1;
            }
        }
    }

    /// The soonest slot or bucket holding anything, with the time it starts.
    fn next_occupied(&self) -> Option<(Occupied, u64)> {
        // As in `next_expiration`, the first non-empty level holds the soonest slot.
        for (level_index, level) in self.levels.iter().enumerate() {
            if let Some(slot) = level.first_occupied() {
                let occupied = Occupied::Slot {
                    level: level_index,
                    slot,
                };
                return Some((occupied, level.slot_start(self.now, slot)));
            }
        }
        self.overflow
            .keys()
            .next()
            .map(|&hour| (Occupied::Bucket(hour), hour * OVERFLOW_BUCKET_MS))
    }

    fn fire_slot(&mut self, slot: usize, out: &mut Vec<(u64, T)>) {
        let mut key = self.levels[MS_LEVEL].take(slot);
        while key != NIL {
            let entry = self.entries.remove(key as usize);
            debug_assert_eq!(
                entry.deadline, self.now,
                "millisecond slot {slot} fired at {} holds an entry due at another time",
                self.now
            );
            key = entry.next;
            out.push((entry.deadline, entry.item));
        }
    }

    fn fire_expired(&mut self, out: &mut Vec<(u64, T)>) {
        let first = out.len();
        let mut key = self.expired.take();
        while key != NIL {
            let entry = self.entries.remove(key as usize);
            key = entry.next;
            out.push((entry.deadline, entry.item));
        }
        // Late inserts arrive in any deadline order; a stable sort keeps equal deadlines in
        // insertion order.
        out[first..].sort_by_key(|&(deadline, _)| deadline);
    }

    /// Re-inserts a detached chain from level `from` (`LEVELS` for the overflow) by exact
    /// deadline, now that time has reached the start of the slot it came from.
    fn cascade(&mut self, mut key: u32, from: usize) {
        while key != NIL {
            let entry = &self.entries[key as usize];
            let next = entry.next;
            let position = self.wheel_position(entry.deadline);
            debug_assert!(
                matches!(position, Position::Level(level) if level < from),
                "cascading entry {key} (deadline {}) from level {from} at {} went to {position:?} \
                 instead of a finer level",
                entry.deadline,
                self.now
            );
            self.link(key, position);
            key = next;
        }
    }
}

impl<T> fmt::Debug for Wheel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wheel")
            .field("now_ms", &self.now)
            .field("len", &self.len())
            .field("level_counts", &self.level_counts())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000;
    const MINUTE: u64 = 60 * SECOND;
    const HOUR: u64 = 60 * MINUTE;
    const DAY: u64 = 24 * HOUR;

    /// Mid-second, mid-minute and mid-hour, so tests starting here do not sit on the boundaries
    /// that would hide off-by-one slot errors.
    const EPOCH: u64 = 1_700_000_123_456;

    fn poll(wheel: &mut Wheel<u32>, now: u64) -> Vec<(u64, u32)> {
        let mut out = Vec::new();
        wheel.poll(now, &mut out);
        out
    }

    /// Polls towards `deadline` in shrinking steps (hours, minutes, seconds, then every
    /// millisecond of the last second), asserting nothing fires early, then polls `deadline`.
    fn poll_stepwise_until(wheel: &mut Wheel<u32>, deadline: u64) -> Vec<(u64, u32)> {
        let mut now = wheel.now_ms();
        for step in [HOUR, MINUTE, SECOND, 1] {
            while now + step < deadline {
                now += step;
                let fired = poll(wheel, now);
                assert!(
                    fired.is_empty(),
                    "{fired:?} fired at {now}, before {deadline}"
                );
            }
        }
        poll(wheel, deadline)
    }

    #[test]
    fn an_entry_fires_at_its_deadline_not_before() {
        let mut wheel = Wheel::new(EPOCH);
        wheel.insert(EPOCH + 5, 1);

        assert_eq!(poll(&mut wheel, EPOCH + 4), []);
        assert_eq!(poll(&mut wheel, EPOCH + 5), [(EPOCH + 5, 1)]);
        assert_eq!(poll(&mut wheel, EPOCH + 6), []);
        assert!(wheel.is_empty());
        assert_eq!(wheel.next_expiration(), None);
    }

    #[test]
    fn entries_due_in_the_same_millisecond_fire_together_in_insertion_order() {
        let mut wheel = Wheel::new(EPOCH);
        for item in 0..1000 {
            wheel.insert(EPOCH + 10, item);
        }
        wheel.insert(EPOCH + 11, 1000);

        let expected: Vec<_> = (0..1000).map(|item| (EPOCH + 10, item)).collect();
        assert_eq!(poll(&mut wheel, EPOCH + 10), expected);
        assert_eq!(wheel.len(), 1);
    }

    #[test]
    fn equal_deadlines_keep_insertion_order_through_cascades() {
        let mut wheel = Wheel::new(EPOCH);
        let deadline = EPOCH + 2 * HOUR + 5;
        wheel.insert(deadline, 0);
        poll(&mut wheel, EPOCH + HOUR + 30 * MINUTE);
        wheel.insert(deadline, 1);
        poll(&mut wheel, deadline - 2 * SECOND);
        wheel.insert(deadline, 2);

        assert_eq!(
            poll(&mut wheel, deadline),
            [(deadline, 0), (deadline, 1), (deadline, 2)]
        );
    }

    #[test]
    fn a_removed_entry_never_fires_and_its_key_goes_stale() {
        let mut wheel = Wheel::new(EPOCH);
        let key = wheel.insert(EPOCH + 20, 7);
        wheel.insert(EPOCH + 30, 8);

        assert_eq!(wheel.remove(key), Some(7));
        assert_eq!(wheel.remove(key), None);
        assert_eq!(wheel.len(), 1);
        assert_eq!(poll(&mut wheel, EPOCH + DAY), [(EPOCH + 30, 8)]);
    }

    #[test]
    fn a_stale_key_does_not_remove_an_entry_that_reused_its_storage() {
        let mut wheel = Wheel::new(EPOCH);
        let removed = wheel.insert(EPOCH + 20, 1);
        wheel.remove(removed);
        let reused = wheel.insert(EPOCH + 20, 2);
        assert_eq!(
            reused.index, removed.index,
            "the test needs the slab index reused"
        );

        assert_eq!(wheel.remove(removed), None);
        assert_eq!(poll(&mut wheel, EPOCH + 20), [(EPOCH + 20, 2)]);

        // The same holds for the key of an entry that already fired.
        let after_fire = wheel.insert(EPOCH + 40, 3);
        assert_eq!(after_fire.index, reused.index);
        assert_eq!(wheel.remove(reused), None);
        assert_eq!(wheel.remove(after_fire), Some(3));
    }

    #[test]
    fn a_key_stays_valid_while_its_entry_cascades() {
        let mut wheel = Wheel::new(EPOCH);
        let key = wheel.insert(EPOCH + 2 * HOUR, 1);
        let level_of = |wheel: &Wheel<u32>| wheel.level_counts().iter().position(|&n| n == 1);
        assert_eq!(level_of(&wheel), Some(3));

        poll(&mut wheel, EPOCH + 2 * HOUR - 10 * MINUTE);
        assert_eq!(level_of(&wheel), Some(2));
        poll(&mut wheel, EPOCH + 2 * HOUR - 10 * SECOND);
        assert_eq!(level_of(&wheel), Some(1));
        poll(&mut wheel, EPOCH + 2 * HOUR - 10);
        assert_eq!(level_of(&wheel), Some(0));

        assert_eq!(wheel.remove(key), Some(1));
        assert_eq!(poll(&mut wheel, EPOCH + 3 * HOUR), []);
    }

    #[test]
    fn entries_cascade_across_second_minute_and_hour_boundaries() {
        let offsets = [
            SECOND + 1,
            59 * SECOND + 999,
            MINUTE,
            61 * SECOND,
            3599 * SECOND,
            HOUR - 1,
            HOUR,
            HOUR + 1,
        ];
        for start in [0, EPOCH, 3 * HOUR - 500, 5 * HOUR - MINUTE + 1] {
            for offset in offsets {
                let deadline = start + offset;
                let mut wheel = Wheel::new(start);
                wheel.insert(deadline, 1);
                assert_eq!(
                    poll_stepwise_until(&mut wheel, deadline),
                    [(deadline, 1)],
                    "started at {start}, due at +{offset}"
                );
            }
        }
    }

    #[test]
    fn a_late_tick_returns_everything_due_once_in_order() {
        let mut wheel = Wheel::new(EPOCH);
        // Dense within the first 10 s, then spread over three hours.
        let mut deadlines: Vec<u64> = (1..=300).map(|i| EPOCH + i * 31).collect();
        deadlines.extend((1..=2_000).map(|i| EPOCH + i * 5_419 % (3 * HOUR)));
        // Exact second, minute and hour boundaries, duplicates, and the jump targets themselves.
        let next_hour = EPOCH - EPOCH % HOUR + HOUR;
        deadlines.extend([next_hour, next_hour, next_hour - 1, next_hour + MINUTE]);
        deadlines.extend([EPOCH + 10 * SECOND, EPOCH + 2 * HOUR, EPOCH + 2 * HOUR + 1]);
        for (item, &deadline) in deadlines.iter().enumerate() {
            wheel.insert(deadline, item as u32);
        }

        let mut expected: Vec<(u64, u32)> = deadlines
            .iter()
            .enumerate()
            .map(|(item, &deadline)| (deadline, item as u32))
            .collect();
        expected.sort();

        let mut fired = Vec::new();
        for jump_to in [EPOCH + 10 * SECOND, EPOCH + 2 * HOUR] {
            let batch = poll(&mut wheel, jump_to);
            assert!(batch.iter().all(|&(deadline, _)| deadline <= jump_to));
            assert!(batch.windows(2).all(|w| w[0].0 <= w[1].0), "out of order");
            fired.extend(batch);
        }
        let due = expected.partition_point(|&(deadline, _)| deadline <= EPOCH + 2 * HOUR);
        assert_eq!(fired, expected[..due]);
        assert_eq!(wheel.len(), expected.len() - due);
        assert_eq!(wheel.next_expiration(), Some(expected[due].0));
    }

    #[test]
    fn far_future_entries_fire_exactly_at_their_deadline_when_stepped() {
        for offset in [5 * HOUR, 30 * DAY, 30 * DAY + 7 * HOUR + 3 * MINUTE + 17] {
            let deadline = EPOCH + offset;
            let mut wheel = Wheel::new(EPOCH);
            wheel.insert(deadline, 1);
            assert_eq!(wheel.level_counts(), [0, 0, 0, 1]);
            assert_eq!(poll_stepwise_until(&mut wheel, deadline), [(deadline, 1)]);
        }
    }

    #[test]
    fn far_future_entries_fire_exactly_at_their_deadline_when_jumped() {
        for offset in [5 * HOUR, 30 * DAY, 30 * DAY + 7 * HOUR + 3 * MINUTE + 17] {
            let deadline = EPOCH + offset;
            let mut wheel = Wheel::new(EPOCH);
            wheel.insert(deadline, 1);
            assert_eq!(poll(&mut wheel, deadline - 1), []);
            assert_eq!(wheel.next_expiration(), Some(deadline));
            assert_eq!(poll(&mut wheel, deadline), [(deadline, 1)]);

            let mut wheel = Wheel::new(EPOCH);
            wheel.insert(deadline, 1);
            assert_eq!(poll(&mut wheel, deadline + 3 * HOUR), [(deadline, 1)]);
        }
    }

    #[test]
    fn deadlines_in_the_past_fire_on_the_next_poll_in_deadline_order() {
        let mut wheel = Wheel::new(EPOCH);
        let now = EPOCH + SECOND;
        poll(&mut wheel, now);
        wheel.insert(now + 1, 0);
        wheel.insert(now, 1);
        wheel.insert(EPOCH + 3, 2);
        wheel.insert(0, 3);
        wheel.insert(EPOCH + 3, 4);
        assert_eq!(wheel.next_expiration(), Some(0));
        assert_eq!(wheel.level_counts(), [5, 0, 0, 0]);

        // Polling an earlier time still returns them, as of the wheel's time.
        assert_eq!(
            poll(&mut wheel, EPOCH),
            [(0, 3), (EPOCH + 3, 2), (EPOCH + 3, 4), (now, 1)]
        );
        assert_eq!(wheel.now_ms(), now);
        assert_eq!(poll(&mut wheel, now + 1), [(now + 1, 0)]);
    }

    #[test]
    fn polling_an_earlier_time_does_not_move_the_wheel_back() {
        let mut wheel = Wheel::new(EPOCH);
        poll(&mut wheel, EPOCH + 500);
        assert_eq!(poll(&mut wheel, EPOCH), []);
        assert_eq!(wheel.now_ms(), EPOCH + 500);

        wheel.insert(EPOCH + 501, 1);
        assert_eq!(poll(&mut wheel, EPOCH + 100), []);
        assert_eq!(poll(&mut wheel, EPOCH + 501), [(EPOCH + 501, 1)]);
    }

    #[test]
    fn next_expiration_is_the_exact_earliest_deadline() {
        let mut wheel = Wheel::new(EPOCH);
        assert_eq!(wheel.next_expiration(), None);

        // Inserted latest-first so each insert lowers the answer, one level at a time.
        let overflow = wheel.insert(EPOCH + 3 * HOUR + 17, 0);
        assert_eq!(wheel.next_expiration(), Some(EPOCH + 3 * HOUR + 17));
        let minute = wheel.insert(EPOCH + 2 * MINUTE + 3, 1);
        assert_eq!(wheel.next_expiration(), Some(EPOCH + 2 * MINUTE + 3));
        let second = wheel.insert(EPOCH + 5 * SECOND + 9, 2);
        assert_eq!(wheel.next_expiration(), Some(EPOCH + 5 * SECOND + 9));
        let ms = wheel.insert(EPOCH + 250, 3);
        assert_eq!(wheel.next_expiration(), Some(EPOCH + 250));

        // Removing the minimum of a slot that holds other deadlines finds the next one in it.
        wheel.insert(EPOCH + 2 * MINUTE + 900, 4);
        wheel.insert(EPOCH + 2 * MINUTE + 40, 5);
        for key in [ms, second] {
            wheel.remove(key);
        }
        assert_eq!(wheel.next_expiration(), Some(EPOCH + 2 * MINUTE + 3));
        wheel.remove(minute);
        assert_eq!(wheel.next_expiration(), Some(EPOCH + 2 * MINUTE + 40));
        assert_eq!(wheel.next_expiration(), Some(EPOCH + 2 * MINUTE + 40));

        assert_eq!(
            poll(&mut wheel, EPOCH + 2 * MINUTE + 900),
            [(EPOCH + 2 * MINUTE + 40, 5), (EPOCH + 2 * MINUTE + 900, 4)]
        );
        assert_eq!(wheel.next_expiration(), Some(EPOCH + 3 * HOUR + 17));
        wheel.remove(overflow);
        assert_eq!(wheel.next_expiration(), None);
    }

    #[test]
    fn level_counts_report_where_entries_wait() {
        let mut wheel = Wheel::new(0);
        wheel.insert(500, 0);
        wheel.insert(5 * SECOND, 1);
        wheel.insert(5 * MINUTE, 2);
        let last = 2 * HOUR + 30 * MINUTE + 5 * SECOND + 250;
        wheel.insert(last, 3);
        wheel.insert(0, 4);
        assert_eq!(wheel.level_counts(), [2, 1, 1, 1]);
        assert_eq!(wheel.len(), 5);

        poll(&mut wheel, 2 * HOUR);
        assert_eq!(wheel.level_counts(), [0, 0, 1, 0]);
        poll(&mut wheel, 2 * HOUR + 30 * MINUTE);
        assert_eq!(wheel.level_counts(), [0, 1, 0, 0]);
        // A slot cascades when its time starts, not before.
        poll(&mut wheel, 2 * HOUR + 30 * MINUTE + 5 * SECOND - 1);
        assert_eq!(wheel.level_counts(), [0, 1, 0, 0]);
        poll(&mut wheel, 2 * HOUR + 30 * MINUTE + 5 * SECOND);
        assert_eq!(wheel.level_counts(), [1, 0, 0, 0]);
        assert_eq!(poll(&mut wheel, last), [(last, 3)]);
        assert_eq!(wheel.level_counts(), [0, 0, 0, 0]);
    }

    #[test]
    fn stepping_one_millisecond_at_a_time_through_a_minute_fires_each_entry_on_time() {
        let mut wheel = Wheel::new(EPOCH);
        let mut due: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
        for item in 0..3_000u32 {
            let deadline = EPOCH + 1 + u64::from(item) * 7_919 % MINUTE;
            wheel.insert(deadline, item);
            due.entry(deadline).or_default().push(item);
        }

        for now in EPOCH + 1..=EPOCH + MINUTE {
            let expected: Vec<_> = due
                .remove(&now)
                .unwrap_or_default()
                .into_iter()
                .map(|item| (now, item))
                .collect();
            assert_eq!(poll(&mut wheel, now), expected);
        }
        assert!(wheel.is_empty());
    }

    #[test]
    fn entries_stay_small() {
        // Deadline, generation and two `u32` links; the item is the only other per-entry cost.
        assert_eq!(std::mem::size_of::<Entry<()>>(), 24);
    }

    #[test]
    fn a_wheel_can_move_between_threads_and_be_shared() {
        // The cached slot minima use atomics rather than `Cell` to keep this true.
        fn assert_send_sync<W: Send + Sync>() {}
        assert_send_sync::<Wheel<String>>();
    }

    #[test]
    fn a_million_timers_all_fire_in_order() {
        let mut wheel = Wheel::new(EPOCH);
        let mut rng = SplitMix64(42);
        let keys: Vec<_> = (0..1_000_000u32)
            .map(|item| wheel.insert(EPOCH + rng.below(2 * DAY), item))
            .collect();
        for key in keys.iter().step_by(3) {
            assert!(wheel.remove(*key).is_some());
        }
        let pending = wheel.len();

        let mut fired = Vec::with_capacity(pending);
        wheel.poll(EPOCH + DAY, &mut fired);
        wheel.poll(EPOCH + 2 * DAY, &mut fired);
        assert_eq!(fired.len(), pending);
        assert!(fired.windows(2).all(|w| w[0].0 <= w[1].0), "out of order");
        assert!(wheel.is_empty());
    }

    /// SplitMix64: a deterministic generator, so failures reproduce from the seed.
    struct SplitMix64(u64);

    impl SplitMix64 {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, bound: u64) -> u64 {
            self.next() % bound
        }
    }

    fn random_deadline(rng: &mut SplitMix64, now: u64) -> u64 {
        let boundary = [SECOND, MINUTE, HOUR][rng.below(3) as usize];
        match rng.below(20) {
            0..=1 => now.saturating_sub(rng.below(2 * HOUR)),
            2 => now,
            3..=7 => now + 1 + rng.below(SECOND),
            8..=11 => now + 1 + rng.below(MINUTE),
            12..=14 => now + 1 + rng.below(HOUR),
            15..=16 => now + 1 + rng.below(3 * DAY),
            // Right around the next boundaries, where cascades happen.
            _ => now - now % boundary + boundary * (1 + rng.below(3)) + rng.below(3) - 1,
        }
    }

    fn random_poll_time(rng: &mut SplitMix64, now: u64) -> u64 {
        match rng.below(20) {
            0 => now.saturating_sub(rng.below(MINUTE)),
            1..=2 => now,
            3..=7 => now + rng.below(4),
            8..=12 => now + rng.below(2 * SECOND),
            13..=16 => now + rng.below(2 * MINUTE),
            17..=18 => now + rng.below(3 * HOUR),
            _ => now + rng.below(3 * DAY),
        }
    }

    #[test]
    fn a_randomized_workload_matches_a_sorted_map_model() {
        for seed in 0..12 {
            let mut rng = SplitMix64(seed);
            let start = EPOCH + rng.below(DAY);
            let mut wheel = Wheel::new(start);
            let mut now = start;
            // Keyed by (deadline, item); items count up, so ties order by insertion like the wheel.
            let mut model: BTreeMap<(u64, u32), ()> = BTreeMap::new();
            let mut issued: Vec<(TimerKey, u64, u32)> = Vec::new();

            for step in 0..6_000 {
                let context = format!("seed {seed}, step {step}, now {now}");
                match rng.below(10) {
                    0..=4 => {
                        let deadline = random_deadline(&mut rng, now);
                        let item = issued.len() as u32;
                        issued.push((wheel.insert(deadline, item), deadline, item));
                        model.insert((deadline, item), ());
                    }
                    5..=6 if !issued.is_empty() => {
                        // Mostly recent keys, which are likelier to be live; older ones are
                        // mostly stale.
                        let pick = if rng.below(2) == 0 {
                            issued.len() - 1 - rng.below(issued.len().min(64) as u64) as usize
                        } else {
                            rng.below(issued.len() as u64) as usize
                        };
                        let (key, deadline, item) = issued[pick];
                        let expected = model.remove(&(deadline, item)).map(|()| item);
                        assert_eq!(wheel.remove(key), expected, "{context}");
                    }
                    _ => {
                        let to = random_poll_time(&mut rng, now);
                        now = now.max(to);
                        let still_pending = model.split_off(&(now + 1, 0));
                        let expected: Vec<_> = std::mem::replace(&mut model, still_pending)
                            .into_keys()
                            .collect();
                        assert_eq!(poll(&mut wheel, to), expected, "{context}");
                    }
                }

                assert_eq!(wheel.now_ms(), now, "{context}");
                assert_eq!(wheel.len(), model.len(), "{context}");
                assert_eq!(
                    wheel.level_counts().iter().sum::<usize>(),
                    model.len(),
                    "{context}"
                );
                assert_eq!(
                    wheel.next_expiration(),
                    model.keys().next().map(|&(deadline, _)| deadline),
                    "{context}"
                );
            }
        }
    }
}
