//! Media blobs on disk, named by their [`ContentId`]: `blobs/ab/abcdef…`.
//!
//! Writes go to a temp file in the same directory and are renamed into place, so a reader
//! never sees a half-written blob. [`BlobStore::verify`] rehashes a blob; a blob that fails
//! is removed.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rendermesh_protocol::ContentId;

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// A directory of content-addressed files.
#[derive(Clone, Debug)]
pub struct BlobStore {
    root: PathBuf,
}

impl BlobStore {
    pub fn open(root: &Path) -> io::Result<Self> {
        fs::create_dir_all(root.join("tmp"))?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// Where the blob with this id lives (whether or not it exists).
    pub fn path(&self, id: &ContentId) -> PathBuf {
        let hex = id.to_string();
        self.root.join(&hex[..2]).join(hex)
    }

    pub fn contains(&self, id: &ContentId) -> bool {
        self.path(id).is_file()
    }

    /// A fresh path for writing a blob whose id is not yet known; pass it to
    /// [`BlobStore::adopt`] when done. Same filesystem as the store, so adopt is a rename.
    pub fn temp_path(&self, hint: &str) -> PathBuf {
        let n = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
        self.root
            .join("tmp")
            .join(format!("{}-{n}-{hint}", std::process::id()))
    }

    /// Hash a finished temp file and move it into place under its id.
    pub fn adopt(&self, tmp: &Path) -> io::Result<(ContentId, u64)> {
        let (id, len) = hash_file(tmp)?;
        let dest = self.path(&id);
        if let Some(dir) = dest.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::rename(tmp, &dest)?;
        Ok((id, len))
    }

    /// Store `bytes`; returns their id.
    pub fn put_bytes(&self, bytes: &[u8]) -> io::Result<ContentId> {
        let id = ContentId::of(bytes);
        if self.contains(&id) {
            return Ok(id);
        }
        let tmp = self.temp_path("put");
        {
            let mut f = File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_data()?;
        }
        let dest = self.path(&id);
        if let Some(dir) = dest.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::rename(&tmp, &dest)?;
        Ok(id)
    }

    /// Read a whole blob, verified against its id.
    pub fn read_verified(&self, id: &ContentId) -> io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        File::open(self.path(id))?.read_to_end(&mut buf)?;
        if ContentId::of(&buf) != *id {
            let _ = fs::remove_file(self.path(id));
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("blob {} does not match its hash; removed", id.short()),
            ));
        }
        Ok(buf)
    }

    /// Rehash a blob; a mismatch removes it. Returns whether it was intact.
    pub fn verify(&self, id: &ContentId) -> io::Result<bool> {
        let (got, _) = hash_file(&self.path(id))?;
        if got != *id {
            fs::remove_file(self.path(id))?;
            return Ok(false);
        }
        Ok(true)
    }

    pub fn remove(&self, id: &ContentId) -> io::Result<()> {
        match fs::remove_file(self.path(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// blake3 of a file (memory-mapped for large files) and its length.
pub fn hash_file(path: &Path) -> io::Result<(ContentId, u64)> {
    let mut h = blake3::Hasher::new();
    h.update_mmap(path)?;
    Ok((ContentId::from_hasher(&h), h.count()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_read_verify() {
        let dir = tempfile::tempdir().unwrap();
        let s = BlobStore::open(dir.path()).unwrap();
        let id = s.put_bytes(b"chunk bytes").unwrap();
        assert_eq!(id, ContentId::of(b"chunk bytes"));
        assert_eq!(s.read_verified(&id).unwrap(), b"chunk bytes");
        assert!(s.verify(&id).unwrap());
    }

    #[test]
    fn adopt_moves_temp_into_place() {
        let dir = tempfile::tempdir().unwrap();
        let s = BlobStore::open(dir.path()).unwrap();
        let tmp = s.temp_path("x");
        fs::write(&tmp, b"encoded").unwrap();
        let (id, len) = s.adopt(&tmp).unwrap();
        assert_eq!((id, len), (ContentId::of(b"encoded"), 7));
        assert!(!tmp.exists());
        assert!(s.contains(&id));
    }

    #[test]
    fn tampered_blob_is_detected_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let s = BlobStore::open(dir.path()).unwrap();
        let id = s.put_bytes(b"original").unwrap();
        fs::write(s.path(&id), b"0riginal").unwrap();
        assert!(s.read_verified(&id).is_err());
        assert!(!s.contains(&id));
        let id = s.put_bytes(b"again").unwrap();
        fs::write(s.path(&id), b"Again").unwrap();
        assert!(!s.verify(&id).unwrap());
        assert!(!s.contains(&id));
    }
}
