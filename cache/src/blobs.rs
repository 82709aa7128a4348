//! Media blobs on disk, named by their [`ContentId`]: `blobs/ab/abcdef…`, with an optional
//! byte quota, pins and least-recently-used eviction.
//!
//! - Writes go to a temp file under `blobs/tmp` and are renamed into place, so a reader never
//!   sees a half-written blob. Adopting a temp file hashes it to name it, except
//!   [`BlobStore::adopt_pinned_caller_verified`], for the one caller (the blob fetch) that
//!   hashed every byte as it wrote them. [`BlobStore::verify`] rehashes a blob; a blob that
//!   fails is removed.
//! - Every access through [`BlobStore::path`] or [`BlobStore::read_verified`] marks the blob as
//!   used, in memory (the [`quota`](crate::quota) index) and on disk (its mtime), so the order
//!   survives a restart: [`BlobStore::open`] rebuilds it from the mtimes.
//! - When a write takes the store over its quota, unpinned blobs are deleted oldest access
//!   first; the blob just written and pinned blobs ([`BlobStore::pin`], a counted RAII
//!   [`PinGuard`]) never are. If only pinned blobs remain, the store stays over its quota and
//!   says so in the log.
//! - [`BlobStore::gc`] deletes every unpinned blob and the temp files of dead processes.
//!
//! The store is shared by clones (one index behind a mutex); deletions happen under that mutex,
//! so a blob pinned by one thread cannot be deleted by another thread's eviction.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use rendermesh_protocol::ContentId;

use crate::files::hash_file;
use crate::quota::Index;

mod temp;

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

const TMP_DIR: &str = "tmp";

/// A blob-store operation that failed on a file.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> BlobError + '_ {
    move |source| BlobError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Counts of a store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlobStats {
    pub blobs: usize,
    pub bytes: u64,
    pub pinned_blobs: usize,
    pub pinned_bytes: u64,
    /// Byte quota; 0 = unbounded.
    pub quota: u64,
}

/// What a garbage collection or trim removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    pub blobs: usize,
    pub bytes: u64,
    /// Temp files left behind by processes that no longer run.
    pub temp_files: usize,
    pub temp_bytes: u64,
}

impl GcReport {
    /// Blob and temp bytes together.
    pub fn freed(&self) -> u64 {
        self.bytes + self.temp_bytes
    }
}

/// What [`BlobStore::verify_all`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlobCheck {
    pub checked: usize,
    pub bytes: u64,
    /// Blobs whose content did not match their id; they were removed.
    pub bad: Vec<ContentId>,
}

struct Inner {
    root: PathBuf,
    index: Mutex<Index>,
}

/// A directory of content-addressed files with a quota. Clones share one index.
#[derive(Clone)]
pub struct BlobStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobStore")
            .field("root", &self.inner.root)
            .finish_non_exhaustive()
    }
}

/// Keeps a blob from being evicted while it lives. Pins are counted: a blob is evictable
/// again when its last guard is dropped. A pin may be taken before the blob exists.
#[must_use = "the pin is released when the guard is dropped"]
pub struct PinGuard {
    inner: Arc<Inner>,
    id: ContentId,
}

impl PinGuard {
    pub fn id(&self) -> &ContentId {
        &self.id
    }
}

impl fmt::Debug for PinGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PinGuard({})", self.id.short())
    }
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        lock(&self.inner.index).unpin(&self.id);
    }
}

fn lock(m: &Mutex<Index>) -> MutexGuard<'_, Index> {
    // The index is consistent between statements; recover it after a panic elsewhere.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl BlobStore {
    /// Open (or create) the store under `root` and index the blobs already there.
    /// No quota until [`BlobStore::set_quota`].
    pub fn open(root: &Path) -> io::Result<Self> {
        fs::create_dir_all(root.join(TMP_DIR))?;
        let store = Self {
            inner: Arc::new(Inner {
                root: root.to_path_buf(),
                index: Mutex::new(Index::default()),
            }),
        };
        let found = store.scan()?;
        tracing::debug!(root = %root.display(), blobs = found.len(), "blob store opened");
        lock(&store.inner.index).reconcile(found);
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    fn index(&self) -> MutexGuard<'_, Index> {
        lock(&self.inner.index)
    }

    fn file_path(&self, id: &ContentId) -> PathBuf {
        let hex = id.to_string();
        self.inner.root.join(&hex[..2]).join(hex)
    }

    /// Where the blob with this id lives (whether or not it exists). Looking a blob up
    /// counts as using it: it moves to the back of the eviction order.
    pub fn path(&self, id: &ContentId) -> PathBuf {
        let path = self.file_path(id);
        if self.index().touch(id) {
            touch_file(&path);
        }
        path
    }

    pub fn contains(&self, id: &ContentId) -> bool {
        self.file_path(id).is_file()
    }

    /// Size of a stored blob, if the index knows it.
    pub fn size(&self, id: &ContentId) -> Option<u64> {
        self.index().size(id)
    }

    /// A fresh path for writing a blob whose id is not yet known; pass it to
    /// [`BlobStore::adopt`] when done. Same filesystem as the store, so adopt is a rename.
    pub fn temp_path(&self, hint: &str) -> PathBuf {
        let n = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
        self.inner
            .root
            .join(TMP_DIR)
            .join(format!("{}-{n}-{hint}", std::process::id()))
    }

    /// Hash a finished temp file and move it into place under its id.
    pub fn adopt(&self, tmp: &Path) -> io::Result<(ContentId, u64)> {
        let (id, len, _) = self.adopt_inner(tmp, false)?;
        Ok((id, len))
    }

    /// [`BlobStore::adopt`], pinned from the moment it is stored.
    pub fn adopt_pinned(&self, tmp: &Path) -> io::Result<(ContentId, u64, PinGuard)> {
        let (id, len, pin) = self.adopt_inner(tmp, true)?;
        let pin = pin.unwrap_or_else(|| self.pin(&id));
        Ok((id, len, pin))
    }

    /// Move a finished temp file into place under `id` **without hashing it** (caller
    /// verified), pinned from the moment it is stored.
    ///
    /// Caller verified: only for a caller that has itself hashed every byte of `tmp` as it
    /// wrote them, found `id`, and let nothing else write the file since; today that is the
    /// blob fetch (`rendermesh_mesh::transfer::fetch`), which hashes pieces as they arrive.
    /// Every other caller uses [`BlobStore::adopt`] or [`BlobStore::adopt_pinned`], which hash
    /// the file themselves. A file whose length is not `len` is refused (and left where it
    /// is); debug builds also hash it and refuse a mismatch.
    pub fn adopt_pinned_caller_verified(
        &self,
        tmp: &Path,
        id: ContentId,
        len: u64,
    ) -> io::Result<PinGuard> {
        let on_disk = fs::metadata(tmp)?.len();
        if on_disk != len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "blob {}: verified {len} bytes but the file has {on_disk}",
                    id.short()
                ),
            ));
        }
        if cfg!(debug_assertions) {
            let (got, _) = hash_file(tmp)?;
            if got != id {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "blob {}: the caller-verified file hashes to {}",
                        id.short(),
                        got.short()
                    ),
                ));
            }
        }
        let dest = self.file_path(&id);
        if let Some(dir) = dest.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::rename(tmp, &dest)?;
        let pin = self.stored(id, len, true);
        Ok(pin.unwrap_or_else(|| self.pin(&id)))
    }

    fn adopt_inner(&self, tmp: &Path, pin: bool) -> io::Result<(ContentId, u64, Option<PinGuard>)> {
        let (id, len) = hash_file(tmp)?;
        let dest = self.file_path(&id);
        if let Some(dir) = dest.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::rename(tmp, &dest)?;
        let pin = self.stored(id, len, pin);
        Ok((id, len, pin))
    }

    /// Store `bytes`; returns their id.
    pub fn put_bytes(&self, bytes: &[u8]) -> io::Result<ContentId> {
        self.put_inner(bytes, false).map(|(id, _)| id)
    }

    /// [`BlobStore::put_bytes`], pinned from the moment it is stored.
    pub fn put_bytes_pinned(&self, bytes: &[u8]) -> io::Result<(ContentId, PinGuard)> {
        let (id, pin) = self.put_inner(bytes, true)?;
        let pin = pin.unwrap_or_else(|| self.pin(&id));
        Ok((id, pin))
    }

    fn put_inner(&self, bytes: &[u8], pin: bool) -> io::Result<(ContentId, Option<PinGuard>)> {
        let id = ContentId::of(bytes);
        let dest = self.file_path(&id);
        {
            // already here: a use, and maybe a pin, under the lock so eviction cannot race it
            let mut ix = self.index();
            if ix.contains(&id) && dest.is_file() {
                ix.touch(&id);
                let guard = pin.then(|| {
                    ix.pin(id);
                    PinGuard {
                        inner: self.inner.clone(),
                        id,
                    }
                });
                drop(ix);
                touch_file(&dest);
                return Ok((id, guard));
            }
        }
        let tmp = self.temp_path("put");
        let written = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_data()?;
            if let Some(dir) = dest.parent() {
                fs::create_dir_all(dir)?;
            }
            fs::rename(&tmp, &dest)
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        Ok((id, self.stored(id, bytes.len() as u64, pin)))
    }

    /// Index a blob just moved into place, pin it if asked, then evict down to the quota
    /// (never this blob).
    fn stored(&self, id: ContentId, len: u64, pin: bool) -> Option<PinGuard> {
        let mut ix = self.index();
        ix.insert(id, len);
        let guard = pin.then(|| {
            ix.pin(id);
            PinGuard {
                inner: self.inner.clone(),
                id,
            }
        });
        if ix.quota > 0 && ix.total() > ix.quota {
            let quota = ix.quota;
            let r = self.evict_locked(&mut ix, quota, Some(&id));
            tracing::debug!(blob = %id.short(), evicted = r.blobs, bytes = r.bytes, "blob store over quota: evicted");
            if ix.total() > quota {
                let (pinned, pinned_bytes) = ix.pinned();
                tracing::warn!(
                    total = ix.total(),
                    quota,
                    pinned,
                    pinned_bytes,
                    "blob store stays over its quota: what is left is pinned or just written"
                );
            }
        }
        guard
    }

    /// Delete unpinned blobs, oldest access first, until the total is at most `target`.
    /// Runs under the index lock, so no pin can be taken on a victim meanwhile.
    fn evict_locked(&self, ix: &mut Index, target: u64, keep: Option<&ContentId>) -> GcReport {
        let mut report = GcReport::default();
        for (id, size) in ix.victims(target, keep) {
            let path = self.file_path(&id);
            match fs::remove_file(&path) {
                Ok(()) => {
                    report.blobs += 1;
                    report.bytes += size;
                    ix.remove(&id);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // moved or removed behind our back: only the index was stale
                    ix.remove(&id);
                }
                Err(e) => {
                    tracing::warn!(blob = %id.short(), error = %e, "cannot evict blob");
                }
            }
        }
        report
    }

    /// Read a whole blob, verified against its id.
    pub fn read_verified(&self, id: &ContentId) -> io::Result<Vec<u8>> {
        let path = self.path(id);
        let mut buf = Vec::new();
        File::open(&path)?.read_to_end(&mut buf)?;
        if ContentId::of(&buf) != *id {
            let _ = self.remove(id);
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("blob {} does not match its hash; removed", id.short()),
            ));
        }
        Ok(buf)
    }

    /// Rehash a blob; a mismatch removes it. Returns whether it was intact.
    pub fn verify(&self, id: &ContentId) -> io::Result<bool> {
        let (got, _) = hash_file(&self.file_path(id))?;
        if got != *id {
            self.remove(id)?;
            return Ok(false);
        }
        Ok(true)
    }

    /// Delete a blob (pinned or not: the owner decides). Missing is not an error.
    pub fn remove(&self, id: &ContentId) -> io::Result<()> {
        self.delete(&mut self.index(), id)
    }

    /// Delete a blob unless something pins it, checked under the lock [`BlobStore::pin`] takes.
    /// Returns whether it was deleted (or was not there).
    pub fn remove_unpinned(&self, id: &ContentId) -> io::Result<bool> {
        let mut ix = self.index();
        Ok(!ix.is_pinned(id) && self.delete(&mut ix, id).map(|()| true)?)
    }

    fn delete(&self, ix: &mut Index, id: &ContentId) -> io::Result<()> {
        match fs::remove_file(self.file_path(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => {
                ix.remove(id);
                Ok(())
            }
        }
    }

    /// Keep `id` from being evicted until the guard is dropped.
    pub fn pin(&self, id: &ContentId) -> PinGuard {
        self.index().pin(*id);
        PinGuard {
            inner: self.inner.clone(),
            id: *id,
        }
    }

    pub fn is_pinned(&self, id: &ContentId) -> bool {
        self.index().is_pinned(id)
    }

    /// Byte quota; 0 = unbounded.
    pub fn quota(&self) -> u64 {
        self.index().quota
    }

    /// Set the byte quota (0 = unbounded) and evict down to it now. Returns the bytes freed.
    pub fn set_quota(&self, bytes: u64) -> u64 {
        let mut ix = self.index();
        ix.quota = bytes;
        if bytes == 0 || ix.total() <= bytes {
            return 0;
        }
        let r = self.evict_locked(&mut ix, bytes, None);
        tracing::info!(
            quota = bytes,
            evicted = r.blobs,
            freed = r.bytes,
            "blob quota applied"
        );
        r.bytes
    }

    pub fn stats(&self) -> BlobStats {
        let ix = self.index();
        let (pinned_blobs, pinned_bytes) = ix.pinned();
        BlobStats {
            blobs: ix.len(),
            bytes: ix.total(),
            pinned_blobs,
            pinned_bytes,
            quota: ix.quota,
        }
    }

    /// Every blob with its size, in id order.
    pub fn list(&self) -> Vec<(ContentId, u64)> {
        self.index().list()
    }

    /// Re-read the directory: blobs that appeared or vanished behind the store's back (an
    /// output moved away, a file deleted by hand) are accounted again. Pins are kept.
    pub fn rescan(&self) -> Result<(), BlobError> {
        let found = self.scan().map_err(io_at(&self.inner.root))?;
        self.index().reconcile(found);
        Ok(())
    }

    /// Delete every unpinned blob and the temp files of processes that no longer run.
    pub fn gc(&self) -> Result<GcReport, BlobError> {
        self.trim_to(0)
    }

    /// Delete unpinned blobs, oldest access first, until at most `target` bytes remain; also
    /// delete the temp files of processes that no longer run.
    pub fn trim_to(&self, target: u64) -> Result<GcReport, BlobError> {
        let (temp_files, temp_bytes) = self.clean_temp()?;
        self.rescan()?;
        let mut ix = self.index();
        let mut r = self.evict_locked(&mut ix, target, None);
        r.temp_files = temp_files;
        r.temp_bytes = temp_bytes;
        tracing::info!(
            blobs = r.blobs,
            bytes = r.bytes,
            temp_files,
            remaining = ix.total(),
            "blob gc"
        );
        Ok(r)
    }

    /// Rehash every blob; remove those whose content does not match their id.
    pub fn verify_all(&self) -> Result<BlobCheck, BlobError> {
        self.rescan()?;
        let mut check = BlobCheck::default();
        for (id, size) in self.list() {
            let path = self.file_path(&id);
            let got = match hash_file(&path) {
                Ok((got, _)) => got,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_at(&path)(e)),
            };
            check.checked += 1;
            check.bytes += size;
            if got != id {
                tracing::warn!(blob = %id.short(), "blob does not match its hash; removing");
                self.remove(&id).map_err(io_at(&path))?;
                check.bad.push(id);
            }
        }
        Ok(check)
    }

    /// The blobs on disk: `(id, size, mtime)`. Files that are not named like a blob in its
    /// fan-out directory are ignored.
    fn scan(&self) -> io::Result<Vec<(ContentId, u64, SystemTime)>> {
        let mut found = Vec::new();
        for dir in fs::read_dir(&self.inner.root)? {
            let dir = dir?;
            let prefix = dir.file_name().to_string_lossy().into_owned();
            if prefix.len() != 2 || !dir.file_type()?.is_dir() {
                continue;
            }
            for f in fs::read_dir(dir.path())? {
                let f = f?;
                let name = f.file_name().to_string_lossy().into_owned();
                let Ok(id) = name.parse::<ContentId>() else {
                    continue;
                };
                if !name.starts_with(&prefix) {
                    continue;
                }
                let meta = match f.metadata() {
                    Ok(m) if m.is_file() => m,
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                found.push((id, meta.len(), mtime));
            }
        }
        Ok(found)
    }
}

/// Set a blob's mtime to now: its last access, read back by [`BlobStore::open`].
fn touch_file(path: &Path) {
    if let Err(e) = File::open(path).and_then(|f| f.set_modified(SystemTime::now())) {
        tracing::debug!(path = %path.display(), error = %e, "cannot mark blob as used");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn caller_verified_adopt_stores_pinned_and_checks_the_length() {
        let dir = tempfile::tempdir().unwrap();
        let s = BlobStore::open(dir.path()).unwrap();
        let data = b"fetched and hashed on the way".to_vec();
        let id = ContentId::of(&data);
        let tmp = s.temp_path("fetch");
        fs::write(&tmp, &data).unwrap();
        // a length that is not the file's: refused, the file stays
        let short = s.adopt_pinned_caller_verified(&tmp, id, 3).unwrap_err();
        assert_eq!(short.kind(), io::ErrorKind::InvalidData);
        assert!(tmp.is_file() && !s.contains(&id));
        let pin = s
            .adopt_pinned_caller_verified(&tmp, id, data.len() as u64)
            .unwrap();
        assert!(!tmp.exists());
        assert_eq!(pin.id(), &id);
        assert!(s.is_pinned(&id));
        assert_eq!(s.size(&id), Some(data.len() as u64));
        assert_eq!(s.read_verified(&id).unwrap(), data);
        drop(pin);
        assert!(!s.is_pinned(&id));
    }

    #[cfg(debug_assertions)]
    #[test]
    fn debug_builds_still_hash_a_caller_verified_file() {
        let dir = tempfile::tempdir().unwrap();
        let s = BlobStore::open(dir.path()).unwrap();
        let tmp = s.temp_path("fetch");
        fs::write(&tmp, b"other bytes").unwrap();
        let wrong = ContentId::of(b"claimed bytes");
        let e = s.adopt_pinned_caller_verified(&tmp, wrong, 11).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(!s.contains(&wrong));
    }

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
        assert_eq!(s.stats().bytes, 7);
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
        assert_eq!(s.stats().blobs, 0, "removed blobs leave the index");
    }

    #[test]
    fn verify_all_removes_flipped_blobs_only() {
        let dir = tempfile::tempdir().unwrap();
        let s = BlobStore::open(dir.path()).unwrap();
        let good = s.put_bytes(b"good chunk").unwrap();
        let bad = s.put_bytes(b"bad chunk").unwrap();
        let mut bytes = fs::read(s.path(&bad)).unwrap();
        bytes[0] ^= 0x01;
        fs::write(s.path(&bad), &bytes).unwrap();
        let check = s.verify_all().unwrap();
        assert_eq!(check.checked, 2);
        assert_eq!(check.bad, vec![bad]);
        assert!(s.contains(&good) && !s.contains(&bad));
        let again = s.verify_all().unwrap();
        assert_eq!((again.checked, again.bad.len()), (1, 0));
    }

    /// `n` bytes, distinct per `tag`.
    fn blob(tag: u8, n: usize) -> Vec<u8> {
        let mut v = vec![tag; n];
        v[0] = tag.wrapping_add(1);
        v
    }

    #[test]
    fn over_quota_evicts_unpinned_oldest_first_never_pinned() {
        let dir = tempfile::tempdir().unwrap();
        let s = BlobStore::open(dir.path()).unwrap();
        assert_eq!(s.set_quota(300), 0);
        let a = s.put_bytes(&blob(1, 100)).unwrap();
        let b = s.put_bytes(&blob(2, 100)).unwrap();
        let c = s.put_bytes(&blob(3, 100)).unwrap();
        let pin_a = s.pin(&a);
        let _ = s.path(&b); // b used after c: c is now the oldest unpinned
        let d = s.put_bytes(&blob(4, 100)).unwrap();
        assert!(s.contains(&a), "pinned blob evicted");
        assert!(
            s.contains(&b),
            "recently used blob evicted before an older one"
        );
        assert!(!s.contains(&c), "oldest unpinned blob kept");
        assert!(s.contains(&d), "the blob just written was evicted");
        assert_eq!(s.stats().bytes, 300);

        // a blob larger than the rest of the quota evicts everything unpinned but stays
        let (e, pin_e) = s.put_bytes_pinned(&blob(5, 250)).unwrap();
        assert!(s.contains(&a) && s.contains(&e));
        assert!(!s.contains(&b) && !s.contains(&d));
        let st = s.stats();
        assert_eq!((st.blobs, st.bytes, st.pinned_blobs), (2, 350, 2));
        assert!(
            st.bytes > st.quota,
            "only pinned blobs left: may stay over quota"
        );

        // unpinned again: the next write can evict them, oldest first (a, then e)
        drop(pin_a);
        drop(pin_e);
        let tmp = s.temp_path("f");
        fs::write(&tmp, blob(6, 40)).unwrap();
        let (f, _) = s.adopt(&tmp).unwrap();
        assert!(!s.contains(&a), "a is older than e and unpinned");
        assert!(s.contains(&e) && s.contains(&f));
        assert_eq!(s.stats().bytes, 250 + 40);
    }

    #[test]
    fn pins_are_counted_and_survive_a_duplicate_put() {
        let dir = tempfile::tempdir().unwrap();
        let s = BlobStore::open(dir.path()).unwrap();
        s.set_quota(150);
        let (a, p1) = s.put_bytes_pinned(&blob(1, 100)).unwrap();
        let (a2, p2) = s.put_bytes_pinned(&blob(1, 100)).unwrap();
        assert_eq!(a, a2);
        drop(p1);
        assert!(s.is_pinned(&a), "second pin released with the first");
        s.put_bytes(&blob(2, 100)).unwrap();
        assert!(s.contains(&a));
        drop(p2);
        assert!(!s.is_pinned(&a));
        s.put_bytes(&blob(3, 100)).unwrap();
        assert!(!s.contains(&a));
    }

    #[test]
    fn lowering_the_quota_evicts_now() {
        let dir = tempfile::tempdir().unwrap();
        let s = BlobStore::open(dir.path()).unwrap();
        for t in 1..=4 {
            s.put_bytes(&blob(t, 100)).unwrap();
        }
        assert_eq!(s.set_quota(250), 200);
        assert_eq!(s.stats().blobs, 2);
        assert_eq!(s.set_quota(0), 0, "0 = unbounded");
    }

    #[test]
    fn gc_frees_everything_unpinned_and_dead_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let s = BlobStore::open(dir.path()).unwrap();
        let a = s.put_bytes(&blob(1, 100)).unwrap();
        let b = s.put_bytes(&blob(2, 40)).unwrap();
        let _pin = s.pin(&b);
        // a temp file of a process that is gone (pid far above pid_max) and one of ours
        let dead = dir.path().join(TMP_DIR).join("4294967295-0-chunk.nut");
        fs::write(&dead, [0u8; 10]).unwrap();
        let ours = s.temp_path("live");
        fs::write(&ours, [0u8; 10]).unwrap();
        let r = s.gc().unwrap();
        assert_eq!((r.blobs, r.bytes), (1, 100));
        assert_eq!((r.temp_files, r.temp_bytes), (1, 10));
        assert_eq!(r.freed(), 110);
        assert!(!s.contains(&a) && s.contains(&b));
        assert!(!dead.exists() && ours.exists());
        assert_eq!(s.stats().bytes, 40);
        assert_eq!(s.gc().unwrap().freed(), 0);
    }

    #[test]
    fn trim_to_a_target_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let s = BlobStore::open(dir.path()).unwrap();
        let ids: Vec<_> = (1..=4)
            .map(|t| s.put_bytes(&blob(t, 100)).unwrap())
            .collect();
        let r = s.trim_to(200).unwrap();
        assert_eq!((r.blobs, r.bytes), (2, 200));
        assert!(!s.contains(&ids[0]) && !s.contains(&ids[1]));
        assert!(s.contains(&ids[2]) && s.contains(&ids[3]));
    }

    #[test]
    fn reopen_keeps_sizes_and_access_order() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c);
        {
            let s = BlobStore::open(dir.path()).unwrap();
            a = s.put_bytes(&blob(1, 100)).unwrap();
            b = s.put_bytes(&blob(2, 100)).unwrap();
            c = s.put_bytes(&blob(3, 100)).unwrap();
            // make the write times distinct and old, then use `a`: it becomes the newest
            let old = SystemTime::now() - Duration::from_secs(3600);
            for (i, id) in [a, b, c].iter().enumerate() {
                File::open(s.path(id))
                    .unwrap()
                    .set_modified(old + Duration::from_secs(i as u64))
                    .unwrap();
            }
            let _ = s.path(&a);
        }
        let s = BlobStore::open(dir.path()).unwrap();
        let st = s.stats();
        assert_eq!((st.blobs, st.bytes, st.quota), (3, 300, 0));
        assert_eq!(s.set_quota(200), 100);
        assert!(!s.contains(&b), "oldest by mtime survived the reopen");
        assert!(s.contains(&a) && s.contains(&c));
        // and writing still works
        let d = s.put_bytes(&blob(4, 100)).unwrap();
        assert!(s.contains(&d) && !s.contains(&c));
        assert_eq!(s.read_verified(&a).unwrap(), blob(1, 100));
    }

    #[test]
    fn rescan_forgets_blobs_moved_away() {
        let dir = tempfile::tempdir().unwrap();
        let s = BlobStore::open(dir.path()).unwrap();
        let a = s.put_bytes(&blob(1, 100)).unwrap();
        fs::rename(s.path(&a), dir.path().join("moved")).unwrap();
        assert_eq!(s.stats().bytes, 100);
        s.rescan().unwrap();
        assert_eq!(s.stats().bytes, 0);
        assert!(s.list().is_empty());
    }
}
