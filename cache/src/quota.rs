//! The in-memory index behind the blob store's quota: every blob's size and last access,
//! pin counts, and the choice of which blobs to evict.
//!
//! It owns no files. [`BlobStore`](crate::BlobStore) keeps one `Index` behind a mutex, tells it
//! what it wrote, read and removed, and deletes the files the index names as victims. Access
//! order is a logical clock (a counter), so ties and coarse file times do not matter while the
//! process runs; on open the order is rebuilt from the files' mtimes, which the store sets on
//! every access.

use std::collections::{BTreeMap, HashMap};

use rendermesh_protocol::ContentId;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Meta {
    size: u64,
    /// Logical time of the last write or access.
    tick: u64,
}

/// Sizes, access order and pins of the blobs in a store.
#[derive(Debug, Default)]
pub(crate) struct Index {
    blobs: HashMap<ContentId, Meta>,
    /// tick → id, oldest first.
    order: BTreeMap<u64, ContentId>,
    pins: HashMap<ContentId, usize>,
    next_tick: u64,
    total: u64,
    /// Byte quota; 0 = unbounded.
    pub(crate) quota: u64,
}

impl Index {
    fn tick(&mut self) -> u64 {
        self.next_tick += 1;
        self.next_tick
    }

    /// Record a blob (new or rewritten) as just used.
    pub(crate) fn insert(&mut self, id: ContentId, size: u64) {
        self.remove(&id);
        let tick = self.tick();
        self.blobs.insert(id, Meta { size, tick });
        self.order.insert(tick, id);
        self.total += size;
    }

    /// Mark a blob as just used. Returns whether the index knows it.
    pub(crate) fn touch(&mut self, id: &ContentId) -> bool {
        let Some(old) = self.blobs.get(id).map(|m| m.tick) else {
            return false;
        };
        let tick = self.tick();
        self.order.remove(&old);
        self.order.insert(tick, *id);
        if let Some(m) = self.blobs.get_mut(id) {
            m.tick = tick;
        }
        true
    }

    /// Forget a blob; returns its size if it was known.
    pub(crate) fn remove(&mut self, id: &ContentId) -> Option<u64> {
        let m = self.blobs.remove(id)?;
        self.order.remove(&m.tick);
        self.total -= m.size;
        Some(m.size)
    }

    pub(crate) fn contains(&self, id: &ContentId) -> bool {
        self.blobs.contains_key(id)
    }

    pub(crate) fn size(&self, id: &ContentId) -> Option<u64> {
        self.blobs.get(id).map(|m| m.size)
    }

    pub(crate) fn pin(&mut self, id: ContentId) {
        *self.pins.entry(id).or_insert(0) += 1;
    }

    pub(crate) fn unpin(&mut self, id: &ContentId) {
        if let Some(n) = self.pins.get_mut(id) {
            *n -= 1;
            if *n == 0 {
                self.pins.remove(id);
            }
        }
    }

    pub(crate) fn is_pinned(&self, id: &ContentId) -> bool {
        self.pins.contains_key(id)
    }

    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    pub(crate) fn len(&self) -> usize {
        self.blobs.len()
    }

    /// Pinned blobs that are present, and their bytes.
    pub(crate) fn pinned(&self) -> (usize, u64) {
        self.pins
            .keys()
            .filter_map(|id| self.blobs.get(id))
            .fold((0, 0), |(n, b), m| (n + 1, b + m.size))
    }

    /// Every blob with its size, in id order.
    pub(crate) fn list(&self) -> Vec<(ContentId, u64)> {
        let mut v: Vec<_> = self.blobs.iter().map(|(id, m)| (*id, m.size)).collect();
        v.sort();
        v
    }

    /// Unpinned blobs to drop, oldest access first, until the total is at most `target`
    /// (never `keep`). May not reach the target when the rest is pinned. The caller removes
    /// the files and then calls [`Index::remove`] for each.
    pub(crate) fn victims(&self, target: u64, keep: Option<&ContentId>) -> Vec<(ContentId, u64)> {
        let mut total = self.total;
        let mut out = Vec::new();
        for id in self.order.values() {
            if total <= target {
                break;
            }
            if Some(id) == keep || self.is_pinned(id) {
                continue;
            }
            let size = self.blobs.get(id).map(|m| m.size).unwrap_or(0);
            total -= size;
            out.push((*id, size));
        }
        out
    }

    /// Bring the index in line with the files on disk: `(id, size, mtime)`. Blobs that are
    /// gone are forgotten; blobs already known keep their place in the access order (it is
    /// finer than file times); blobs new to the index come first, ordered by mtime (ties by
    /// id) — on open that is all of them. Pins are kept.
    pub(crate) fn reconcile(&mut self, mut found: Vec<(ContentId, u64, std::time::SystemTime)>) {
        found.sort_by(|a, b| a.2.cmp(&b.2).then(a.0.cmp(&b.0)));
        let mut sizes: HashMap<ContentId, u64> = HashMap::with_capacity(found.len());
        let mut order: Vec<ContentId> = Vec::with_capacity(found.len());
        for (id, size, _) in &found {
            sizes.insert(*id, *size);
            if !self.blobs.contains_key(id) {
                order.push(*id);
            }
        }
        order.extend(self.order.values().filter(|id| sizes.contains_key(id)));
        self.blobs.clear();
        self.order.clear();
        self.total = 0;
        for id in order {
            let size = sizes.get(&id).copied().unwrap_or(0);
            self.insert(id, size);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn id(n: u8) -> ContentId {
        ContentId::of(&[n])
    }

    #[test]
    fn victims_are_oldest_unpinned_first() {
        let mut ix = Index::default();
        for n in 1..=4 {
            ix.insert(id(n), 10);
        }
        assert_eq!(ix.total(), 40);
        ix.touch(&id(1)); // order now 2, 3, 4, 1
        ix.pin(id(2));
        let v: Vec<_> = ix.victims(20, None).into_iter().map(|(i, _)| i).collect();
        assert_eq!(v, vec![id(3), id(4)]);
        let v: Vec<_> = ix
            .victims(0, Some(&id(1)))
            .into_iter()
            .map(|(i, _)| i)
            .collect();
        assert_eq!(
            v,
            vec![id(3), id(4)],
            "pinned and kept blobs are never victims"
        );
        ix.unpin(&id(2));
        assert!(!ix.is_pinned(&id(2)));
        assert_eq!(ix.victims(0, None).len(), 4);
    }

    #[test]
    fn pins_are_counted() {
        let mut ix = Index::default();
        ix.insert(id(1), 5);
        ix.pin(id(1));
        ix.pin(id(1));
        ix.unpin(&id(1));
        assert!(ix.is_pinned(&id(1)));
        assert_eq!(ix.pinned(), (1, 5));
        ix.unpin(&id(1));
        assert!(!ix.is_pinned(&id(1)));
        ix.unpin(&id(1)); // extra unpin is harmless
        assert_eq!(ix.pinned(), (0, 0));
    }

    #[test]
    fn reconcile_orders_new_blobs_by_mtime_and_keeps_pins() {
        let mut ix = Index::default();
        ix.pin(id(9));
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        ix.reconcile(vec![
            (id(1), 3, t0 + Duration::from_secs(30)),
            (id(2), 4, t0 + Duration::from_secs(10)),
            (id(9), 5, t0 + Duration::from_secs(20)),
        ]);
        assert_eq!((ix.len(), ix.total()), (3, 12));
        let v: Vec<_> = ix.victims(0, None).into_iter().map(|(i, _)| i).collect();
        assert_eq!(v, vec![id(2), id(1)]);
        assert_eq!(ix.remove(&id(2)), Some(4));
        assert_eq!(ix.remove(&id(2)), None);
        assert_eq!(ix.total(), 8);
        assert!(ix.is_pinned(&id(9)));
    }

    #[test]
    fn reconcile_keeps_the_known_order_and_forgets_the_missing() {
        let mut ix = Index::default();
        for n in 1..=3 {
            ix.insert(id(n), 10);
        }
        ix.touch(&id(1)); // order 2, 3, 1
        let t = SystemTime::UNIX_EPOCH;
        // on disk: all with the same coarse mtime, 3 is gone, 7 appeared, 2 grew
        ix.reconcile(vec![(id(1), 10, t), (id(2), 15, t), (id(7), 1, t)]);
        let v: Vec<_> = ix.victims(0, None).into_iter().collect();
        assert_eq!(v, vec![(id(7), 1), (id(2), 15), (id(1), 10)]);
        assert_eq!(ix.total(), 26);
    }
}
