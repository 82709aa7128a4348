//! Counts of entry lookups by kind, hit or miss: lock-free, shared by every clone of an
//! [`Entries`](crate::Entries) table, read by the node's `/metrics`.
//!
//! Only typed lookups ([`Entries::get`](crate::Entries::get)) count: they are the cache at
//! work for a job. `get_raw` (inspection) and `contains` (the replicator comparing tables) are
//! not lookups of a job and would only blur the hit rate.

use std::sync::atomic::{AtomicU64, Ordering};

use rendermesh_protocol::CacheKind;

const KINDS: [CacheKind; 7] = CacheKind::ALL;

/// Hits and misses of one kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LookupCount {
    pub kind: CacheKind,
    pub hits: u64,
    pub misses: u64,
}

/// The counters of one table.
#[derive(Default, Debug)]
pub struct Lookups {
    hits: [AtomicU64; KINDS.len()],
    misses: [AtomicU64; KINDS.len()],
}

impl Lookups {
    /// Count one lookup of `kind`.
    pub fn count(&self, kind: CacheKind, hit: bool) {
        let Some(i) = KINDS.iter().position(|k| *k == kind) else {
            return;
        };
        let slot = if hit { &self.hits[i] } else { &self.misses[i] };
        slot.fetch_add(1, Ordering::Relaxed);
    }

    /// Every kind with its counts so far (zeros included).
    pub fn snapshot(&self) -> Vec<LookupCount> {
        KINDS
            .iter()
            .enumerate()
            .map(|(i, kind)| LookupCount {
                kind: *kind,
                hits: self.hits[i].load(Ordering::Relaxed),
                misses: self.misses[i].load(Ordering::Relaxed),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_kind() {
        let l = Lookups::default();
        l.count(CacheKind::Probe, true);
        l.count(CacheKind::Probe, false);
        l.count(CacheKind::Segment, false);
        let s = l.snapshot();
        assert_eq!(s.len(), KINDS.len());
        let of = |k| s.iter().find(|c| c.kind == k).copied().unwrap();
        assert_eq!(
            (of(CacheKind::Probe).hits, of(CacheKind::Probe).misses),
            (1, 1)
        );
        assert_eq!(
            (of(CacheKind::Segment).hits, of(CacheKind::Segment).misses),
            (0, 1)
        );
        assert_eq!(of(CacheKind::SceneList).misses, 0);
    }
}
