//! One level of the wheel: a fixed ring of equally wide slots plus an occupancy bitmap.

use slab::Slab;

use super::slot::{Entry, Slot};

const BITS_PER_WORD: usize = u64::BITS as usize;

pub(super) struct Level {
    /// Milliseconds covered by one slot.
    slot_ms: u64,
    slots: Box<[Slot]>,
    /// One bit per slot, set while the slot is non-empty, so finding the next occupied slot costs
    /// `slots / 64` word tests instead of one test per slot.
    occupied: Box<[u64]>,
    len: usize,
}

impl Level {
    pub(super) fn new(slot_ms: u64, slot_count: usize) -> Self {
        Level {
            slot_ms,
            slots: (0..slot_count).map(|_| Slot::new()).collect(),
            occupied: vec![0; slot_count.div_ceil(BITS_PER_WORD)].into_boxed_slice(),
            len: 0,
        }
    }

    /// Milliseconds covered by one full turn of this level.
    pub(super) fn span_ms(&self) -> u64 {
        self.slot_ms * self.slots.len() as u64
    }

    /// Whether `deadline` lies in the same turn of this level as `now`.
    ///
    /// Slots are chosen by absolute time, so a level can only hold deadlines from the turn `now`
    /// is in; anything later belongs to a coarser level until time reaches its turn.
    pub(super) fn covers(&self, now: u64, deadline: u64) -> bool {
        deadline / self.span_ms() == now / self.span_ms()
    }

    pub(super) fn slot_for(&self, deadline: u64) -> usize {
        (deadline / self.slot_ms % self.slots.len() as u64) as usize
    }

    /// Time at which `slot` of the turn containing `now` begins.
    pub(super) fn slot_start(&self, now: u64, slot: usize) -> u64 {
        now - now % self.span_ms() + slot as u64 * self.slot_ms
    }

    /// Lowest-numbered non-empty slot.
    ///
    /// A level never holds a deadline from a slot time has already passed (that slot was fired or
    /// cascaded on the way), so the lowest occupied slot is also the soonest.
    pub(super) fn first_occupied(&self) -> Option<usize> {
        self.occupied
            .iter()
            .position(|&word| word != 0)
            .map(|w| w * BITS_PER_WORD + self.occupied[w].trailing_zeros() as usize)
    }

    pub(super) fn slot(&self, slot: usize) -> &Slot {
        &self.slots[slot]
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn push<T>(&mut self, entries: &mut Slab<Entry<T>>, key: u32) {
        let slot = self.slot_for(entries[key as usize].deadline);
        self.slots[slot].push_back(entries, key);
        self.occupied[slot / BITS_PER_WORD] |= 1 << (slot % BITS_PER_WORD);
        self.len += 1;
    }

    pub(super) fn unlink<T>(&mut self, entries: &mut Slab<Entry<T>>, key: u32) {
        let slot = self.slot_for(entries[key as usize].deadline);
        self.slots[slot].unlink(entries, key);
        if self.slots[slot].is_empty() {
            self.occupied[slot / BITS_PER_WORD] &= !(1 << (slot % BITS_PER_WORD));
        }
        self.len -= 1;
    }

    /// Empties `slot` and returns the head of its detached chain (see `Slot::take`).
    pub(super) fn take(&mut self, slot: usize) -> u32 {
        self.len -= self.slots[slot].len();
        self.occupied[slot / BITS_PER_WORD] &= !(1 << (slot % BITS_PER_WORD));
        self.slots[slot].take()
    }
}

#[cfg(test)]
mod tests {
    use super::super::slot::NIL;
    use super::*;

    fn push(level: &mut Level, entries: &mut Slab<Entry<()>>, deadline: u64) -> u32 {
        let key = entries.insert(Entry {
            deadline,
            generation: 0,
            prev: NIL,
            next: NIL,
            item: (),
        }) as u32;
        level.push(entries, key);
        key
    }

    #[test]
    fn the_first_occupied_slot_is_found_across_bitmap_words() {
        let mut entries = Slab::new();
        let mut level = Level::new(1, 1000);
        assert_eq!(level.first_occupied(), None);

        let late = push(&mut level, &mut entries, 999);
        let mid = push(&mut level, &mut entries, 130);
        assert_eq!(level.first_occupied(), Some(130));
        level.unlink(&mut entries, mid);
        assert_eq!(level.first_occupied(), Some(999));
        level.unlink(&mut entries, late);
        assert_eq!(level.first_occupied(), None);
        assert_eq!(level.len(), 0);
    }

    #[test]
    fn slots_are_chosen_by_absolute_time() {
        let level = Level::new(1000, 60);
        assert_eq!(level.span_ms(), 60_000);
        assert_eq!(level.slot_for(61_500), 1);
        assert_eq!(level.slot_start(61_500, 59), 60_000 + 59_000);
        assert!(level.covers(60_000, 119_999));
        assert!(!level.covers(60_000, 120_000));
    }

    #[test]
    fn taking_a_slot_clears_its_count_and_bit() {
        let mut entries = Slab::new();
        let mut level = Level::new(1000, 60);
        push(&mut level, &mut entries, 5_000);
        push(&mut level, &mut entries, 5_999);
        push(&mut level, &mut entries, 7_000);
        assert_eq!(level.len(), 3);

        let head = level.take(5);
        assert_ne!(head, NIL);
        assert_eq!(level.len(), 1);
        assert_eq!(level.first_occupied(), Some(7));
    }
}
