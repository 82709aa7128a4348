//! The content-addressed store of a node.
//!
//! - [`store`]: the small key-value [`Store`] trait with a sled implementation (on disk) and
//!   an in-memory one (tests); everything else talks to the trait.
//! - [`entry`]: analysis entries (probes, scene scores, scene lists) under their
//!   [`CacheKey`](rendermesh_protocol::CacheKey), version-marked and verified by blake3 on read.
//! - [`blobs`]: media blobs (chunks, encoded segments) as files named by their
//!   [`ContentId`](rendermesh_protocol::ContentId), written atomically, verifiable.
//! - [`files`]: the file-identity table (path, size, mtime, inode → ContentId) so a resubmit
//!   does not rehash.

pub mod blobs;
pub mod entry;
pub mod files;
pub mod store;

use std::path::Path;
use std::sync::Arc;

pub use blobs::BlobStore;
pub use entry::{Entries, EntryError};
pub use files::{FileIdentity, Identified};
pub use store::{MemStore, SledStore, Store, StoreError, Tree};

/// A node's cache: entries, file identities and blobs, sharing one store.
#[derive(Clone)]
pub struct Cache {
    pub entries: Entries,
    pub files: FileIdentity,
    pub blobs: BlobStore,
}

impl Cache {
    /// Open (or create) the on-disk cache under `dir`: `dir/db` (sled) and `dir/blobs`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir.join("db"))?);
        let blobs = BlobStore::open(&dir.join("blobs"))
            .map_err(|e| StoreError::Io(format!("{}: {e}", dir.join("blobs").display())))?;
        Ok(Self::with_store(store, blobs))
    }

    pub fn with_store(store: Arc<dyn Store>, blobs: BlobStore) -> Self {
        Self {
            entries: Entries::new(store.clone()),
            files: FileIdentity::new(store),
            blobs,
        }
    }
}
