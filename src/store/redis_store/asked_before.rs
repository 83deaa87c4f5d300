//! Which queries the store's read cache keeps: only a query asked before.
//!
//! The read cache (`read_cache.rs`) keeps the small org a check read, so
//! that the same query asked again is answered after one round trip; the reply memo
//! (`src/answers.rs`) keeps a reply only with a small org the read cache keeps. Most checks are
//! asked once: a support engineer looks a user up, fixes what blocks them, and re-checks live.
//! Keeping every first ask made every check pay for entries nobody asked for again, and for
//! the caches being emptied every few hundred checks: with nothing kept, a first-time check
//! cost `serve` about a tenth less CPU time at the bench org's shape (BENCHMARKS.md, "The
//! evening of 2026-12-03").
//!
//! So a query is kept from its second ask on, and answered from memory from its third. What
//! remembers the first ask is a table of hashes: the slot a hash picks holds the last hash
//! that picked it. A query whose hash is in its slot was asked since any other query took
//! that slot. A collision only keeps a query one ask early, and an old ask is forgotten when
//! its slot is taken: neither changes an answer, only what is kept.
//!
//! Our own rather than a crate's (a Bloom filter or TinyLFU's doorkeeper): a few lines, one
//! atomic swap a check, no lock, no reset.

use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};

/// Queries remembered at most: 64 KB. At 500 first-time checks a second a query is forgotten
/// after about 16 s; at the pace of people, after days.
const SLOTS: usize = 8_192;

pub struct AskedBefore {
    /// Seeded per process, so that nobody can choose queries that take each other's slots.
    hasher: RandomState,
    slots: Box<[AtomicU64]>,
}

impl Default for AskedBefore {
    fn default() -> Self {
        Self::with_slots(SLOTS)
    }
}

impl AskedBefore {
    fn with_slots(slots: usize) -> Self {
        AskedBefore {
            hasher: RandomState::new(),
            slots: (0..slots.max(1)).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Whether `key` was asked before (and not forgotten since); it is remembered either way.
    pub fn again<K: Hash + ?Sized>(&self, key: &K) -> bool {
        // 0 marks an empty slot, so no hash is 0.
        let hash = self.hasher.hash_one(key) | 1;
        let slot = &self.slots[(hash >> 32) as usize % self.slots.len()];
        slot.swap(hash, Ordering::Relaxed) == hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_is_asked_again_from_its_second_ask_on() {
        let asked = AskedBefore::default();
        assert!(!asked.again("jane@acme.com"), "the first ask");
        assert!(asked.again("jane@acme.com"));
        assert!(asked.again("jane@acme.com"));
        assert!(!asked.again("JANE@acme.com"), "another key");
    }

    #[test]
    fn others_asked_in_between_do_not_make_it_forgotten_while_their_slots_differ() {
        let asked = AskedBefore::default();
        assert!(!asked.again("jane@acme.com"));
        let others: Vec<String> = (0..100).map(|n| format!("user{n}@acme.com")).collect();
        for other in &others {
            asked.again(other);
        }
        let slot = |key: &str| (asked.hasher.hash_one(key) | 1) >> 32;
        let shared = others
            .iter()
            .any(|o| slot(o) % SLOTS as u64 == slot("jane@acme.com") % SLOTS as u64);
        assert_eq!(asked.again("jane@acme.com"), !shared);
    }

    #[test]
    fn a_query_whose_slot_another_took_is_forgotten() {
        let asked = AskedBefore::with_slots(1);
        assert!(!asked.again("jane@acme.com"));
        assert!(!asked.again("john@acme.com"), "it took jane's slot");
        assert!(!asked.again("jane@acme.com"), "jane was forgotten");
        assert!(asked.again("jane@acme.com"));
    }
}
