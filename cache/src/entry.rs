//! Analysis entries: small results under a [`CacheKey`], version-marked and verified.
//!
//! On-disk record: `format (u8 = 1) ‖ blake3(payload) (32 bytes) ‖ payload`, where the payload
//! is the value in the protocol codec. A record whose hash does not match is reported as
//! corrupt, dropped from the store and treated as a miss: it is never served.

use std::sync::Arc;

use rendermesh_protocol::{codec, CacheKey};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::store::{Store, StoreError, Tree};

const FORMAT: u8 = 1;
const HEADER: usize = 1 + 32;

/// Why an entry could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot encode cache entry: {0}")]
    Codec(#[from] codec::CodecError),
}

/// The analysis-entry table.
#[derive(Clone)]
pub struct Entries {
    store: Arc<dyn Store>,
}

impl Entries {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Store `value` under `key`.
    pub fn put<T: Serialize>(&self, key: &CacheKey, value: &T) -> Result<(), EntryError> {
        let payload = codec::encode(value)?;
        let mut rec = Vec::with_capacity(HEADER + payload.len());
        rec.push(FORMAT);
        rec.extend_from_slice(blake3::hash(&payload).as_bytes());
        rec.extend_from_slice(&payload);
        self.store.put(Tree::Entries, key.as_bytes(), &rec)?;
        Ok(())
    }

    /// The value under `key`, verified. A corrupt or undecodable record is dropped and
    /// reported as a miss (with a warning), never returned.
    pub fn get<T: DeserializeOwned>(&self, key: &CacheKey) -> Result<Option<T>, StoreError> {
        let Some(rec) = self.store.get(Tree::Entries, key.as_bytes())? else {
            return Ok(None);
        };
        match verify(&rec).and_then(|p| codec::decode::<T>(p).map_err(|e| e.to_string())) {
            Ok(v) => Ok(Some(v)),
            Err(why) => {
                tracing::warn!(key = %key, %why, "dropping corrupt cache entry");
                self.store.remove(Tree::Entries, key.as_bytes())?;
                Ok(None)
            }
        }
    }

    pub fn contains(&self, key: &CacheKey) -> Result<bool, StoreError> {
        Ok(self.store.get(Tree::Entries, key.as_bytes())?.is_some())
    }

    pub fn keys(&self) -> Result<Vec<CacheKey>, StoreError> {
        Ok(self
            .store
            .keys(Tree::Entries)?
            .into_iter()
            .filter_map(|k| {
                <[u8; 32]>::try_from(k.as_slice())
                    .ok()
                    .map(CacheKey::from_bytes)
            })
            .collect())
    }

    pub fn flush(&self) -> Result<(), StoreError> {
        self.store.flush()
    }
}

/// Check a record's format and hash; return its payload.
fn verify(rec: &[u8]) -> Result<&[u8], String> {
    if rec.len() < HEADER {
        return Err(format!(
            "record of {} bytes is shorter than its header",
            rec.len()
        ));
    }
    if rec[0] != FORMAT {
        return Err(format!("unknown entry format {}", rec[0]));
    }
    let payload = &rec[HEADER..];
    if blake3::hash(payload).as_bytes() != &rec[1..HEADER] {
        return Err("payload does not match its hash".into());
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::stores;
    use rendermesh_protocol::{CacheKind, ContentId};

    fn key(n: u8) -> CacheKey {
        CacheKey::derive(CacheKind::Probe, 1, &[n], &ContentId::of(b"input"))
    }

    #[test]
    fn put_get_on_both() {
        for (name, s, _d) in stores() {
            let e = Entries::new(s);
            assert_eq!(e.get::<Vec<u32>>(&key(1)).unwrap(), None, "{name}");
            e.put(&key(1), &vec![1u32, 2, 3]).unwrap();
            assert_eq!(
                e.get::<Vec<u32>>(&key(1)).unwrap(),
                Some(vec![1, 2, 3]),
                "{name}"
            );
            assert!(e.contains(&key(1)).unwrap());
            assert_eq!(e.keys().unwrap(), vec![key(1)]);
        }
    }

    #[test]
    fn corrupt_entry_is_dropped_not_served() {
        for (name, s, _d) in stores() {
            let e = Entries::new(s.clone());
            e.put(&key(2), &String::from("scene list")).unwrap();
            let mut rec = s.get(Tree::Entries, key(2).as_bytes()).unwrap().unwrap();
            let last = rec.len() - 1;
            rec[last] ^= 0x40;
            s.put(Tree::Entries, key(2).as_bytes(), &rec).unwrap();
            assert_eq!(e.get::<String>(&key(2)).unwrap(), None, "{name}");
            assert!(
                !e.contains(&key(2)).unwrap(),
                "{name}: corrupt entry not dropped"
            );
        }
    }

    #[test]
    fn short_and_unknown_format_records_are_misses() {
        for (_name, s, _d) in stores() {
            let e = Entries::new(s.clone());
            s.put(Tree::Entries, key(3).as_bytes(), b"x").unwrap();
            assert_eq!(e.get::<String>(&key(3)).unwrap(), None);
            let mut rec = vec![9u8];
            rec.extend_from_slice(&[0; 40]);
            s.put(Tree::Entries, key(4).as_bytes(), &rec).unwrap();
            assert_eq!(e.get::<String>(&key(4)).unwrap(), None);
        }
    }
}
