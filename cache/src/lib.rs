//! The content-addressed store of a node.
//!
//! - [`store`]: the small key-value [`Store`] trait with a sled implementation (on disk) and
//!   an in-memory one (tests); everything else talks to the trait.
//! - [`entry`]: analysis entries (probes, scene scores, scene lists) under their
//!   [`CacheKey`](rendermesh_protocol::CacheKey), version- and kind-marked, verified by blake3 on
//!   read; [`CacheValue`] ties a value type to its kind.
//! - [`blobs`]: media blobs (chunks, encoded segments) as files named by their
//!   [`ContentId`](rendermesh_protocol::ContentId), written atomically, verifiable, with an
//!   optional byte quota: pins keep a running job's blobs, the rest is evicted least recently
//!   used first (the index behind it lives in `quota`).
//! - [`files`]: the file-identity table (path, size, mtime, inode → ContentId) so a resubmit
//!   does not rehash.
//! - [`marks`]: what a watched folder did with each of its files (this node's own table,
//!   never replicated).
//! - [`journal`]: a bounded, ordered table of this node's own records, newest first (its job
//!   history; never replicated).

pub mod blobs;
pub mod entry;
pub mod files;
pub mod journal;
pub mod lookups;
pub mod marks;
mod quota;
pub mod reserve;
pub mod store;

use std::path::Path;
use std::sync::Arc;

pub use blobs::{BlobCheck, BlobError, BlobStats, BlobStore, GcReport, PinGuard};
pub use entry::{
    BadEntry, CacheValue, Entries, EntryCheck, EntryError, EntryInfo, RawEntry, RecordError,
    Remote, StoredKind, BUCKETS,
};
pub use files::{FileIdentity, Identified};
pub use journal::{Journal, JournalError};
pub use lookups::LookupCount;
pub use marks::{Mark, MarkError, MarkOutcome, Marks};
pub use store::{MemStore, SledStore, Store, StoreError, Tree};

/// A node's cache: entries, file identities, watch marks, the journal and blobs, sharing one
/// store.
#[derive(Clone)]
pub struct Cache {
    pub entries: Entries,
    pub files: FileIdentity,
    pub marks: Marks,
    pub journal: Journal,
    pub blobs: BlobStore,
}

impl Cache {
    /// Open (or create) the on-disk cache under `dir`: `dir/db` (sled) and `dir/blobs`.
    /// One process at a time: a second open fails with [`StoreError::Locked`]. The blob store
    /// starts without a quota ([`BlobStore::set_quota`]).
    ///
    /// On a full disk the [`reserve`] beside the database is released so that it opens (and
    /// space can be freed); the next open with room writes it back.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let cache = match Self::open_parts(dir) {
            Err(StoreError::NoSpace { .. }) if reserve::release(dir) > 0 => {
                tracing::warn!(
                    dir = %dir.display(),
                    "the disk is full: the store's reserve was released so that it opens; free space (rendermesh cache gc)"
                );
                Self::open_parts(dir)?
            }
            other => other?,
        };
        reserve::keep(dir);
        Ok(cache)
    }

    fn open_parts(dir: &Path) -> Result<Self, StoreError> {
        let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir.join("db"))?);
        let blobs = BlobStore::open(&dir.join("blobs")).map_err(|e| {
            let path = dir.join("blobs");
            if reserve::is_no_space(&e) {
                StoreError::NoSpace { path }
            } else {
                StoreError::Io(format!("{}: {e}", path.display()))
            }
        })?;
        Ok(Self::with_store(store, blobs))
    }

    pub fn with_store(store: Arc<dyn Store>, blobs: BlobStore) -> Self {
        Self {
            entries: Entries::new(store.clone()),
            files: FileIdentity::new(store.clone()),
            marks: Marks::new(store.clone()),
            journal: Journal::new(store),
            blobs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rendermesh_protocol::{CacheKey, CacheKind, ContentId, Rational, SceneList};

    fn list(cuts: Vec<u64>) -> SceneList {
        SceneList {
            input: ContentId::of(b"clip"),
            fps: Rational { num: 30, den: 1 },
            frames: 480,
            cuts,
            transitions: Vec::new(),
        }
    }

    fn key(n: u8) -> CacheKey {
        CacheKey::derive(CacheKind::SceneList, 1, &[n], &ContentId::of(b"clip"))
    }

    #[test]
    fn reopen_keeps_entries_blobs_and_quota_working() {
        let dir = tempfile::tempdir().unwrap();
        let blob;
        {
            let c = Cache::open(dir.path()).unwrap();
            assert!(matches!(
                Cache::open(dir.path()),
                Err(StoreError::Locked { .. })
            ));
            c.entries.put(&key(1), &list(vec![40, 60])).unwrap();
            c.entries.flush().unwrap();
            blob = c.blobs.put_bytes(&[1u8; 100]).unwrap();
        }
        let c = Cache::open(dir.path()).unwrap();
        assert_eq!(
            c.entries.get::<SceneList>(&key(1)).unwrap(),
            Some(list(vec![40, 60]))
        );
        assert_eq!(c.blobs.stats().bytes, 100);
        assert_eq!(c.blobs.set_quota(150), 0);
        let newer = c.blobs.put_bytes(&[2u8; 100]).unwrap();
        assert!(!c.blobs.contains(&blob) && c.blobs.contains(&newer));
    }

    #[test]
    fn verify_finds_a_flipped_entry_and_a_flipped_blob() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(MemStore::default());
        let c = Cache::with_store(store.clone(), BlobStore::open(dir.path()).unwrap());
        c.entries.put(&key(1), &list(vec![40])).unwrap();
        c.entries.put(&key(2), &list(vec![60])).unwrap();
        let mut rec = store
            .get(Tree::Entries, key(2).as_bytes())
            .unwrap()
            .unwrap();
        let mid = rec.len() / 2;
        rec[mid] ^= 0x08;
        store.put(Tree::Entries, key(2).as_bytes(), &rec).unwrap();
        let good = c.blobs.put_bytes(b"segment one").unwrap();
        let bad = c.blobs.put_bytes(b"segment two").unwrap();
        std::fs::write(c.blobs.path(&bad), b"segment tw0").unwrap();

        let entries = c.entries.verify(|_| Ok(())).unwrap();
        assert_eq!(entries.checked, 2);
        assert_eq!(entries.bad.len(), 1);
        assert_eq!(entries.bad[0].key, key(2).to_string());
        let blobs = c.blobs.verify_all().unwrap();
        assert_eq!((blobs.checked, blobs.bad.clone()), (2, vec![bad]));
        // what is left is intact and served
        assert_eq!(
            c.entries.get::<SceneList>(&key(1)).unwrap(),
            Some(list(vec![40]))
        );
        assert_eq!(c.entries.get::<SceneList>(&key(2)).unwrap(), None);
        assert_eq!(c.blobs.read_verified(&good).unwrap(), b"segment one");
    }
}
