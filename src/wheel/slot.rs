//! Entry storage and the intrusive list every slot is made of.
//!
//! Entries live in one `Slab` and link to each other by slab index, so a slot costs three words
//! whether it holds nothing or a million entries, and unlinking an entry is O(1) without knowing
//! where in its slot it sits.

use std::sync::atomic::{AtomicU64, Ordering};

use slab::Slab;

/// "No entry": the end of a list. Slab indices are kept below it (see `Wheel::insert`).
pub(super) const NIL: u32 = u32::MAX;

/// Value of `Slot::earliest` when the cached minimum was invalidated by a removal and has to be
/// recomputed. A slot whose true minimum is `u64::MAX` is simply rescanned on every query, which
/// is still correct.
const UNKNOWN: u64 = u64::MAX;

pub(super) struct Entry<T> {
    pub(super) deadline: u64,
    /// Distinguishes this entry from earlier and later occupants of the same slab index, so a
    /// `TimerKey` that outlived its entry cannot reach whatever reused the index.
    pub(super) generation: u64,
    pub(super) prev: u32,
    pub(super) next: u32,
    pub(super) item: T,
}

/// A doubly linked list of entries, appended at the tail so entries that share a deadline fire in
/// insertion order.
pub(super) struct Slot {
    head: u32,
    tail: u32,
    len: u32,
    /// Earliest deadline in the list, or `UNKNOWN`.
    ///
    /// Only higher levels, overflow buckets and the expired list need this: their entries have
    /// different deadlines, and `next_expiration` must be exact without walking every entry.
    /// Inserting keeps it exact; removing the minimum invalidates it, and the next
    /// `next_expiration` rescans this one slot and caches the result. That query takes `&self`,
    /// hence interior mutability; an atomic rather than a `Cell` keeps `Wheel: Sync`, and
    /// `Relaxed` is enough because the value is a pure function of the list, which cannot change
    /// while shared references exist, so racing readers can only store the same number.
    earliest: AtomicU64,
}

impl Slot {
    pub(super) fn new() -> Self {
        Slot {
            head: NIL,
            tail: NIL,
            len: 0,
            earliest: AtomicU64::new(UNKNOWN),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.head == NIL
    }

    pub(super) fn len(&self) -> usize {
        self.len as usize
    }

    pub(super) fn push_back<T>(&mut self, entries: &mut Slab<Entry<T>>, key: u32) {
        let entry = &mut entries[key as usize];
        entry.prev = self.tail;
        entry.next = NIL;
        let deadline = entry.deadline;

        let earliest = self.earliest.get_mut();
        if self.tail == NIL {
            debug_assert_eq!(self.len, 0, "a slot without a tail must be empty");
            self.head = key;
            *earliest = deadline;
        } else {
            entries[self.tail as usize].next = key;
            if *earliest != UNKNOWN {
                *earliest = (*earliest).min(deadline);
            }
        }
        self.tail = key;
        self.len += 1;
    }

    pub(super) fn unlink<T>(&mut self, entries: &mut Slab<Entry<T>>, key: u32) {
        let Entry {
            prev,
            next,
            deadline,
            ..
        } = entries[key as usize];

        // A wrong head/tail here means the caller derived the wrong slot for this entry, which
        // would otherwise corrupt two lists silently.
        if prev == NIL {
            debug_assert_eq!(
                self.head, key,
                "entry {key} (deadline {deadline}) has no predecessor but is not its slot's head"
            );
            self.head = next;
        } else {
            entries[prev as usize].next = next;
        }
        if next == NIL {
            debug_assert_eq!(
                self.tail, key,
                "entry {key} (deadline {deadline}) has no successor but is not its slot's tail"
            );
            self.tail = prev;
        } else {
            entries[next as usize].prev = prev;
        }
        self.len -= 1;

        let earliest = self.earliest.get_mut();
        if deadline == *earliest {
            *earliest = UNKNOWN;
        }
    }

    /// Empties the slot and returns the head of the detached chain; follow `next` to walk it.
    /// The entries keep their links, so the caller must re-link or free every one of them.
    pub(super) fn take(&mut self) -> u32 {
        let head = self.head;
        *self = Slot::new();
        head
    }

    /// Exact earliest deadline in the slot, `None` if it is empty.
    pub(super) fn earliest<T>(&self, entries: &Slab<Entry<T>>) -> Option<u64> {
        if self.is_empty() {
            return None;
        }
        let cached = self.earliest.load(Ordering::Relaxed);
        if cached != UNKNOWN {
            return Some(cached);
        }
        let mut earliest = u64::MAX;
        let mut key = self.head;
        while key != NIL {
            let entry = &entries[key as usize];
            earliest = earliest.min(entry.deadline);
            key = entry.next;
        }
        self.earliest.store(earliest, Ordering::Relaxed);
        Some(earliest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(deadline: u64) -> Entry<()> {
        Entry {
            deadline,
            generation: 0,
            prev: NIL,
            next: NIL,
            item: (),
        }
    }

    fn keys(slot: &Slot, entries: &Slab<Entry<()>>) -> Vec<u32> {
        let mut out = Vec::new();
        let mut key = slot.head;
        while key != NIL {
            out.push(key);
            key = entries[key as usize].next;
        }
        out
    }

    #[test]
    fn entries_are_kept_in_insertion_order_and_unlink_from_anywhere() {
        let mut entries = Slab::new();
        let mut slot = Slot::new();
        let ks: Vec<u32> = (0..4)
            .map(|d| {
                let k = entries.insert(entry(d)) as u32;
                slot.push_back(&mut entries, k);
                k
            })
            .collect();
        assert_eq!(keys(&slot, &entries), ks);

        slot.unlink(&mut entries, ks[1]);
        assert_eq!(keys(&slot, &entries), [ks[0], ks[2], ks[3]]);
        slot.unlink(&mut entries, ks[0]);
        slot.unlink(&mut entries, ks[3]);
        assert_eq!(keys(&slot, &entries), [ks[2]]);
        assert_eq!(slot.len(), 1);
        slot.unlink(&mut entries, ks[2]);
        assert!(slot.is_empty());
        assert_eq!(slot.len(), 0);
    }

    #[test]
    fn the_earliest_deadline_is_recomputed_after_the_minimum_is_removed() {
        let mut entries = Slab::new();
        let mut slot = Slot::new();
        let mut push = |slot: &mut Slot, d| {
            let k = entries.insert(entry(d)) as u32;
            slot.push_back(&mut entries, k);
            k
        };
        let _late = push(&mut slot, 70);
        let early = push(&mut slot, 30);
        let _mid = push(&mut slot, 50);
        assert_eq!(slot.earliest(&entries), Some(30));

        slot.unlink(&mut entries, early);
        assert_eq!(slot.earliest.load(Ordering::Relaxed), UNKNOWN);
        assert_eq!(slot.earliest(&entries), Some(50));
        // The rescan is cached for the next query.
        assert_eq!(slot.earliest.load(Ordering::Relaxed), 50);
    }

    #[test]
    fn taking_a_slot_leaves_it_empty_and_hands_over_the_chain() {
        let mut entries = Slab::new();
        let mut slot = Slot::new();
        for d in 0..3 {
            let k = entries.insert(entry(d)) as u32;
            slot.push_back(&mut entries, k);
        }
        let mut key = slot.take();
        assert!(slot.is_empty());
        assert_eq!(slot.earliest(&entries), None);
        let mut walked = 0;
        while key != NIL {
            walked += 1;
            key = entries[key as usize].next;
        }
        assert_eq!(walked, 3);
    }
}
