//! The partial file of a fetch: where it lives ([`partial_path`]), the removal of stale ones
//! ([`remove_stale_partials`]), and the [`Sink`]: the blocking thread that appends what
//! arrives to the partial file and hashes it as it goes, handing written buffers back.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rendermesh_cache::BlobStore;
use rendermesh_protocol::ContentId;
use tokio::sync::mpsc;

use super::blob_stream;

/// Name prefix of partial files; the number is the format (raw bytes of a blob's prefix).
pub const PARTIAL_PREFIX: &str = "fetch1-";
/// Name suffix of partial files.
pub const PARTIAL_SUFFIX: &str = ".part";

/// Pieces queued between the network and the writer thread.
const WRITE_QUEUE: usize = 8;
/// Written buffers the writer thread hands back for reuse.
const SPARE_BUFFERS: usize = 32;
/// The writer flushes the partial file to disk after this many bytes (in the background).
const SYNC_EVERY: u64 = 32 * 1024 * 1024;

/// Where a fetch of `id` keeps what it has received so far.
pub fn partial_path(blobs: &BlobStore, id: &ContentId) -> PathBuf {
    // the store's temp directory: same filesystem, so adopting is a rename
    let dir = blobs
        .temp_path("probe")
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| blobs.root().to_path_buf());
    dir.join(format!("{PARTIAL_PREFIX}{id}{PARTIAL_SUFFIX}"))
}

/// Delete partial files not written to for `older_than` (fetches given up on). Returns the
/// files and bytes removed. Blocking I/O.
pub fn remove_stale_partials(blobs: &BlobStore, older_than: Duration) -> io::Result<(usize, u64)> {
    let Some(dir) = partial_path(blobs, &ContentId::from_bytes([0; 32]))
        .parent()
        .map(Path::to_path_buf)
    else {
        return Ok((0, 0));
    };
    let now = SystemTime::now();
    let mut removed = (0, 0);
    for entry in fs::read_dir(&dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with(PARTIAL_PREFIX) && name.ends_with(PARTIAL_SUFFIX)) {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        let age = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .unwrap_or_default();
        if age < older_than {
            continue;
        }
        match fs::remove_file(entry.path()) {
            Ok(()) => {
                removed.0 += 1;
                removed.1 += meta.len();
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

/// The partial file and the blocking thread that appends to it and hashes what it appends.
pub(super) struct Sink {
    tx: mpsc::Sender<Vec<u8>>,
    /// Buffers the writer is done with.
    spare: mpsc::Receiver<Vec<u8>>,
    task: tokio::task::JoinHandle<io::Result<(ContentId, u64)>>,
    /// Bytes handed to the writer, the resumed prefix included.
    pub(super) written: u64,
}

impl Sink {
    /// Open the partial file for a blob of `total` bytes; returns the sink and the bytes
    /// already there. A partial file longer than `total` is from something else: emptied.
    pub(super) async fn open(path: PathBuf, total: u64) -> io::Result<(Sink, u64)> {
        let (file, have) = tokio::task::spawn_blocking(move || -> io::Result<(File, u64)> {
            let file = OpenOptions::new()
                .create(true)
                .read(true)
                .append(true)
                .open(&path)?;
            let mut have = file.metadata()?.len();
            if have > total {
                tracing::warn!(path = %path.display(), have, total, "partial file longer than the blob; starting over");
                file.set_len(0)?;
                have = 0;
            }
            Ok((file, have))
        })
        .await
        .map_err(|e| io::Error::other(format!("opening task failed: {e}")))??;
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let (spare_tx, spare) = mpsc::channel(SPARE_BUFFERS);
        let task = tokio::task::spawn_blocking(move || write_loop(file, have, rx, spare_tx));
        Ok((
            Sink {
                tx,
                spare,
                task,
                written: have,
            },
            have,
        ))
    }

    /// A buffer of `n` bytes to receive into: one the writer handed back when there is one
    /// (no fresh allocation, no zeroing), else a new one.
    fn buffer(&mut self, n: usize) -> Vec<u8> {
        while let Ok(mut b) = self.spare.try_recv() {
            if b.capacity() >= n {
                b.resize(n, 0);
                return b;
            }
        }
        vec![0u8; n]
    }

    /// Buffers of at most [`blob_stream::BUF`] bytes holding `len` bytes between them.
    pub(super) fn buffers(&mut self, len: u64) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut left = len;
        while left > 0 {
            let n = left.min(blob_stream::BUF as u64);
            out.push(self.buffer(n as usize));
            left -= n;
        }
        out
    }

    pub(super) async fn push(&mut self, data: Vec<u8>) -> io::Result<()> {
        let n = data.len() as u64;
        self.tx
            .send(data)
            .await
            .map_err(|_| io::Error::other("the partial file's writer stopped"))?;
        self.written += n;
        Ok(())
    }

    /// Wait for the writer: the hash and length of the whole partial file.
    pub(super) async fn finish(self) -> io::Result<(ContentId, u64)> {
        drop(self.tx);
        self.task
            .await
            .map_err(|e| io::Error::other(format!("writer task failed: {e}")))?
    }
}

/// Hash the first `prefix` bytes already in `file`, then append and hash every piece received
/// until the channel closes; then make the file durable. Every [`SYNC_EVERY`] bytes a helper
/// thread flushes what was written so far, so the disk writes while pieces still arrive and
/// the last flush is short.
fn write_loop(
    mut file: File,
    prefix: u64,
    mut rx: mpsc::Receiver<Vec<u8>>,
    spare: mpsc::Sender<Vec<u8>>,
) -> io::Result<(ContentId, u64)> {
    let mut hasher = blake3::Hasher::new();
    if prefix > 0 {
        let mut buf = vec![0u8; 1 << 20];
        let mut left = prefix;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = file.read(&mut buf[..want])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "partial file shrank while it was resumed",
                ));
            }
            hasher.update(&buf[..n]);
            left -= n as u64;
        }
    }
    let mut unsynced = 0u64;
    let mut syncing: Option<std::thread::JoinHandle<io::Result<()>>> = None;
    while let Some(data) = rx.blocking_recv() {
        file.write_all(&data)?;
        hasher.update(&data);
        unsynced += data.len() as u64;
        // the fetcher reuses it (or, when it has enough, it is dropped here)
        let _ = spare.try_send(data);
        if unsynced >= SYNC_EVERY && !matches!(&syncing, Some(h) if !h.is_finished()) {
            if let Some(h) = syncing.take() {
                join_sync(h)?;
            }
            let clone = file.try_clone()?;
            syncing = Some(std::thread::spawn(move || clone.sync_data()));
            unsynced = 0;
        }
    }
    if let Some(h) = syncing {
        join_sync(h)?;
    }
    file.sync_data()?;
    Ok((ContentId::from_hasher(&hasher), hasher.count()))
}

fn join_sync(h: std::thread::JoinHandle<io::Result<()>>) -> io::Result<()> {
    h.join()
        .map_err(|_| io::Error::other("flushing thread panicked"))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transfer::test_store as store;

    #[test]
    fn partial_files_live_in_the_temp_dir_and_stale_ones_go() {
        let (_d, s) = store();
        let id = ContentId::of(b"x");
        let p = partial_path(&s, &id);
        assert_eq!(p.parent(), s.temp_path("t").parent());
        assert!(p
            .file_name()
            .unwrap()
            .to_string_lossy()
            .contains(&id.to_string()));
        fs::write(&p, b"abc").unwrap();
        assert_eq!(
            remove_stale_partials(&s, Duration::from_secs(60)).unwrap(),
            (0, 0)
        );
        assert_eq!(remove_stale_partials(&s, Duration::ZERO).unwrap(), (1, 3));
        assert!(!p.exists());
        // gc of the store leaves partial files to us
        let other = s.temp_path("keep");
        fs::write(&other, b"x").unwrap();
        assert_eq!(remove_stale_partials(&s, Duration::ZERO).unwrap(), (0, 0));
        assert!(other.exists());
    }
}
