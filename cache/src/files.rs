//! The file-identity table: (canonical path, size, mtime, inode) → [`ContentId`].
//!
//! A resubmitted file whose size, mtime and inode are unchanged is not hashed again.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use rendermesh_protocol::{codec, ContentId};
use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError, Tree};

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Record {
    size: u64,
    mtime_ns: i128,
    inode: u64,
    id: ContentId,
}

/// The id of a file, and whether it had to be hashed to get it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identified {
    pub id: ContentId,
    pub size: u64,
    /// Bytes hashed now (0 when the table already knew the file).
    pub hashed_bytes: u64,
}

/// Path → content id, remembered.
#[derive(Clone)]
pub struct FileIdentity {
    store: Arc<dyn Store>,
}

impl FileIdentity {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// The content id of the file at `path`, hashing only when the file is new or changed.
    pub fn identify(&self, path: &Path) -> std::io::Result<Identified> {
        let canon = path.canonicalize()?;
        let meta = std::fs::metadata(&canon)?;
        let key = canon.as_os_str().as_encoded_bytes().to_vec();
        self.identify_as(&key, &meta, || hash_file(&canon))
    }

    /// The content id of an open file (one passed by a user's command): remembered under its
    /// device and inode, read through `reader` only when the file is new or changed.
    pub fn identify_open(
        &self,
        meta: &std::fs::Metadata,
        reader: impl std::io::Read,
    ) -> std::io::Result<Identified> {
        let key = format!("open:{}:{}", meta.dev(), meta.ino()).into_bytes();
        self.identify_as(&key, meta, || hash_reader(reader))
    }

    fn identify_as(
        &self,
        key: &[u8],
        meta: &std::fs::Metadata,
        hash: impl FnOnce() -> std::io::Result<(ContentId, u64)>,
    ) -> std::io::Result<Identified> {
        let mtime_ns = meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128;
        if let Ok(Some(raw)) = self.store.get(Tree::Files, key) {
            if let Ok(rec) = codec::decode::<Record>(&raw) {
                if rec.size == meta.len() && rec.mtime_ns == mtime_ns && rec.inode == meta.ino() {
                    return Ok(Identified {
                        id: rec.id,
                        size: rec.size,
                        hashed_bytes: 0,
                    });
                }
            }
        }
        let (id, size) = hash()?;
        let rec = Record {
            size,
            mtime_ns,
            inode: meta.ino(),
            id,
        };
        if let Err(e) = self.remember(key, &rec) {
            tracing::warn!(key = %String::from_utf8_lossy(key), error = %e, "cannot remember file identity");
        }
        Ok(Identified {
            id,
            size,
            hashed_bytes: size,
        })
    }

    fn remember(&self, key: &[u8], rec: &Record) -> Result<(), StoreError> {
        let raw = codec::encode(rec).map_err(|e| StoreError::Backend(e.to_string()))?;
        self.store.put(Tree::Files, key, &raw)
    }
}

/// blake3 of what `reader` gives, and its length.
pub fn hash_reader(mut reader: impl std::io::Read) -> std::io::Result<(ContentId, u64)> {
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                h.update(&buf[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((ContentId::from_hasher(&h), h.count()))
}

/// blake3 of a file (memory-mapped for large files) and its length.
pub fn hash_file(path: &Path) -> std::io::Result<(ContentId, u64)> {
    let mut h = blake3::Hasher::new();
    h.update_mmap(path)?;
    Ok((ContentId::from_hasher(&h), h.count()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::stores;

    #[test]
    fn second_identify_does_not_hash_and_change_rehashes() {
        for (name, s, _d) in stores() {
            let dir = tempfile::tempdir().unwrap();
            let f = dir.path().join("a.bin");
            std::fs::write(&f, b"first content").unwrap();
            let ids = FileIdentity::new(s);
            let a = ids.identify(&f).unwrap();
            assert_eq!(a.id, ContentId::of(b"first content"), "{name}");
            assert_eq!(a.hashed_bytes, 13);
            let b = ids.identify(&f).unwrap();
            assert_eq!(
                (b.id, b.hashed_bytes),
                (a.id, 0),
                "{name}: rehashed a known file"
            );
            std::fs::write(&f, b"second content!").unwrap();
            let c = ids.identify(&f).unwrap();
            assert_eq!(c.id, ContentId::of(b"second content!"), "{name}");
            assert_eq!(c.hashed_bytes, 15);
        }
    }

    #[test]
    fn missing_file_is_an_error() {
        let ids = FileIdentity::new(Arc::new(crate::MemStore::default()));
        assert!(ids
            .identify(Path::new("/nonexistent/rendermesh/x.mp4"))
            .is_err());
    }
}
