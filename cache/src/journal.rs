//! The journal: a bounded, ordered table of records of this node only (e.g. its job
//! history), never replicated.
//!
//! A record is kept under a time (ms since the epoch) and an id: its key is both, big-endian,
//! so the store keeps records oldest first and a list reads the newest from the end. One id
//! has one record: a put replaces the record of the same id. [`Journal::trim`] keeps the
//! newest records up to a count.
//!
//! Records are JSON (`serde_json`); the journal does not know what they hold. The tree name
//! carries the table's version. Writes of one id are not atomic against each other: a caller
//! that writes from several threads serialises them.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::store::{Store, StoreError, Tree};

/// A store failure, or a record that does not encode.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("journal record: {0}")]
    Record(String),
}

/// The records of this node, oldest first, in the node's store.
#[derive(Clone)]
pub struct Journal {
    store: Arc<dyn Store>,
}

const KEY_LEN: usize = 16;

fn key(at_ms: u64, id: u64) -> [u8; KEY_LEN] {
    let mut k = [0u8; KEY_LEN];
    k[..8].copy_from_slice(&at_ms.to_be_bytes());
    k[8..].copy_from_slice(&id.to_be_bytes());
    k
}

/// The (time, id) of a key; none for a key of another length.
fn parse(k: &[u8]) -> Option<(u64, u64)> {
    let k: &[u8; KEY_LEN] = k.try_into().ok()?;
    let mut at = [0u8; 8];
    let mut id = [0u8; 8];
    at.copy_from_slice(&k[..8]);
    id.copy_from_slice(&k[8..]);
    Some((u64::from_be_bytes(at), u64::from_be_bytes(id)))
}

impl Journal {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Every (time, id), oldest first.
    fn index(&self) -> Result<Vec<(u64, u64)>, JournalError> {
        Ok(self
            .store
            .keys(Tree::Journal)?
            .iter()
            .filter_map(|k| parse(k))
            .collect())
    }

    /// Keep `record` under time `at_ms` and `id`, in place of any record of `id`.
    pub fn put<T: Serialize>(&self, at_ms: u64, id: u64, record: &T) -> Result<(), JournalError> {
        let raw = serde_json::to_vec(record).map_err(|e| JournalError::Record(e.to_string()))?;
        let new = key(at_ms, id);
        self.store.put(Tree::Journal, &new, &raw)?;
        for (at, other) in self.index()? {
            if other == id && at != at_ms {
                self.store.remove(Tree::Journal, &key(at, other))?;
            }
        }
        Ok(())
    }

    /// The record of `id` and its time; a record that does not decode is none.
    pub fn get<T: DeserializeOwned>(&self, id: u64) -> Result<Option<(u64, T)>, JournalError> {
        let Some((at, _)) = self.index()?.into_iter().rev().find(|(_, i)| *i == id) else {
            return Ok(None);
        };
        let Some(raw) = self.store.get(Tree::Journal, &key(at, id))? else {
            return Ok(None);
        };
        Ok(decode(&raw).map(|r| (at, r)))
    }

    /// The newest `n` records, newest first, with their time and id; records that do not
    /// decode are left out (and not counted).
    pub fn list<T: DeserializeOwned>(&self, n: usize) -> Result<Vec<(u64, u64, T)>, JournalError> {
        let mut out = Vec::new();
        for (at, id) in self.index()?.into_iter().rev() {
            if out.len() >= n {
                break;
            }
            if let Some(raw) = self.store.get(Tree::Journal, &key(at, id))? {
                if let Some(r) = decode(&raw) {
                    out.push((at, id, r));
                }
            }
        }
        Ok(out)
    }

    /// How many records there are.
    pub fn len(&self) -> Result<usize, JournalError> {
        Ok(self.index()?.len())
    }

    pub fn is_empty(&self) -> Result<bool, JournalError> {
        Ok(self.len()? == 0)
    }

    /// Keep the newest `max` records: the oldest go first. How many went.
    pub fn trim(&self, max: usize) -> Result<usize, JournalError> {
        let index = self.index()?;
        let over = index.len().saturating_sub(max);
        for (at, id) in &index[..over] {
            self.store.remove(Tree::Journal, &key(*at, *id))?;
        }
        Ok(over)
    }

    /// Write what was put to disk.
    pub fn flush(&self) -> Result<(), JournalError> {
        Ok(self.store.flush()?)
    }
}

fn decode<T: DeserializeOwned>(raw: &[u8]) -> Option<T> {
    match serde_json::from_slice(raw) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(error = %e, "a journal record does not decode; ignored");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::stores;
    use serde_json::{json, Value};

    fn ids(list: &[(u64, u64, Value)]) -> Vec<u64> {
        list.iter().map(|(_, id, _)| *id).collect()
    }

    #[test]
    fn newest_first_whatever_the_order_of_puts() {
        for (name, s, _d) in stores() {
            let j = Journal::new(s.clone());
            j.put(2_000, 7, &json!({"n": 7})).unwrap();
            j.put(1_000, 9, &json!({"n": 9})).unwrap();
            j.put(3_000, 1, &json!({"n": 1})).unwrap();
            // a time past 2^8 ms sorts by number, not by its first byte
            j.put(256, 4, &json!({"n": 4})).unwrap();
            let all: Vec<(u64, u64, Value)> = j.list(10).unwrap();
            assert_eq!(ids(&all), vec![1, 7, 9, 4], "{name}");
            assert_eq!(all[0], (3_000, 1, json!({"n": 1})), "{name}");
            let two: Vec<(u64, u64, Value)> = j.list(2).unwrap();
            assert_eq!(ids(&two), vec![1, 7], "{name}");
            assert!(j.list::<Value>(0).unwrap().is_empty());
            // the journal is a tree of its own
            assert!(s.entries(Tree::Marks).unwrap().is_empty(), "{name}");
            assert!(s.entries(Tree::Entries).unwrap().is_empty(), "{name}");
        }
    }

    #[test]
    fn a_put_of_the_same_id_replaces_the_record() {
        for (name, s, _d) in stores() {
            let j = Journal::new(s);
            j.put(1_000, 5, &json!("planning")).unwrap();
            j.put(2_000, 6, &json!("other")).unwrap();
            j.put(1_000, 5, &json!("done")).unwrap();
            assert_eq!(j.len().unwrap(), 2, "{name}");
            assert_eq!(
                j.get::<Value>(5).unwrap(),
                Some((1_000, json!("done"))),
                "{name}"
            );
            // under a new time too: the old one goes, the order follows the new time
            j.put(3_000, 5, &json!("again")).unwrap();
            assert_eq!(j.len().unwrap(), 2, "{name}");
            let all: Vec<(u64, u64, Value)> = j.list(10).unwrap();
            assert_eq!(ids(&all), vec![5, 6], "{name}");
            assert_eq!(j.get::<Value>(5).unwrap(), Some((3_000, json!("again"))));
        }
    }

    #[test]
    fn get_finds_by_id_only() {
        for (name, s, _d) in stores() {
            let j = Journal::new(s);
            assert_eq!(j.get::<Value>(1).unwrap(), None, "{name}");
            j.put(10, 1, &json!({"a": 1})).unwrap();
            j.put(10, 2, &json!({"a": 2})).unwrap();
            assert_eq!(j.get::<Value>(2).unwrap(), Some((10, json!({"a": 2}))));
            assert_eq!(j.get::<Value>(10).unwrap(), None, "{name}");
        }
    }

    #[test]
    fn trim_keeps_the_newest() {
        for (name, s, _d) in stores() {
            let j = Journal::new(s);
            for i in 0..10u64 {
                j.put(1_000 + i, 100 + i, &json!(i)).unwrap();
            }
            assert_eq!(j.trim(3).unwrap(), 7, "{name}");
            assert_eq!(j.len().unwrap(), 3, "{name}");
            let all: Vec<(u64, u64, Value)> = j.list(10).unwrap();
            assert_eq!(ids(&all), vec![109, 108, 107], "{name}");
            assert_eq!(j.get::<Value>(100).unwrap(), None, "{name}");
            assert_eq!(j.trim(3).unwrap(), 0, "{name}");
            assert_eq!(j.trim(0).unwrap(), 3, "{name}");
            assert!(j.is_empty().unwrap(), "{name}");
        }
    }

    #[test]
    fn an_undecodable_record_is_left_out() {
        let s: Arc<dyn Store> = Arc::new(crate::MemStore::default());
        let j = Journal::new(s.clone());
        j.put(1, 1, &json!(1)).unwrap();
        s.put(Tree::Journal, &key(2, 2), b"{not json").unwrap();
        // a key of another shape is no record
        s.put(Tree::Journal, b"short", b"1").unwrap();
        assert_eq!(j.get::<Value>(2).unwrap(), None);
        let all: Vec<(u64, u64, Value)> = j.list(10).unwrap();
        assert_eq!(ids(&all), vec![1]);
        assert_eq!(j.len().unwrap(), 2);
    }
}
