//! `Slots<T>`: values indexed by transaction table slot (the shard's per-transaction
//! contexts), stored in fixed-size chunks allocated as the table grows.
//!
//! Why not a `Vec<Option<T>>`: a context is ~2.4 KB; a `Vec` that doubles copies every
//! context it holds at each growth and, with the allocator keeping the freed blocks, costs
//! about 3 KB of resident memory per suspended transaction on top of the context itself
//! (measured: docs/PERFORMANCE.md, "Suspended transactions"). Chunks never move once
//! allocated, and nothing is allocated per transaction.
//!
//! Invariant: chunk `c` holds slots `c * CHUNK .. (c + 1) * CHUNK`; every chunk has
//! exactly `CHUNK` slots. Slots are created empty and only ever grow in number, bounded by
//! the transaction table's capacity (the caller's indices).

/// Slots per chunk (256 contexts ≈ 620 KB).
const CHUNK: usize = 256;

/// Optional values by slot index.
pub struct Slots<T> {
    chunks: Vec<Box<[Option<T>]>>,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots { chunks: Vec::new() }
    }
}

impl<T> Slots<T> {
    /// Slot `index`, if it was ever created.
    pub fn get_mut(&mut self, index: usize) -> Option<&mut Option<T>> {
        self.chunks.get_mut(index / CHUNK)?.get_mut(index % CHUNK)
    }

    /// Slot `index`, creating the chunks up to it if needed.
    pub fn slot(&mut self, index: usize) -> &mut Option<T> {
        let c = index / CHUNK;
        while self.chunks.len() <= c {
            self.chunks.push((0..CHUNK).map(|_| None).collect());
        }
        // The loop above created chunk `c`, and every chunk has CHUNK slots.
        &mut self.chunks[c][index % CHUNK]
    }

    /// Every value present, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flat_map(|c| c.iter().flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_grow_by_chunks_and_keep_their_values() {
        let mut s: Slots<u32> = Slots::default();
        assert!(s.get_mut(0).is_none());
        *s.slot(3) = Some(3);
        *s.slot(CHUNK * 2 + 1) = Some(7);
        assert_eq!(s.chunks.len(), 3);
        assert_eq!(s.get_mut(3).cloned(), Some(Some(3)));
        assert_eq!(s.get_mut(CHUNK), Some(&mut None));
        assert!(s.get_mut(CHUNK * 3).is_none());
        assert_eq!(s.iter().copied().collect::<Vec<_>>(), vec![3, 7]);
        if let Some(v) = s.get_mut(3) {
            *v = None;
        }
        assert_eq!(s.iter().count(), 1);
    }
}
