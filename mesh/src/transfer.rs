//! Blob transfer by [`ContentId`] between nodes: serving pieces and fetching whole blobs.
//!
//! ```text
//!   fetch ──one blob stream: BlobRead { id, offset }──▶ peer's blob_stream::serve
//!     │   ◀── BlobHead { total }, then every byte to the end
//!     │ or, from a peer that serves no blob streams:
//!     │   ──GetBlob { id, offset, len } × depth in flight──▶ NetworkHandle ──▶ peer
//!     │                                      peer's request dispatcher ──▶ serve_piece
//!     │ bytes in order                                                   (blocking pool)
//!     ▼
//!   writer (blocking thread): appends to  <blob tmp dir>/fetch1-<id>.part  and hashes as it goes
//!     │ all `total` bytes received
//!     ├─ blake3 == id ──▶ BlobStore::adopt_pinned_caller_verified (no second hash) ──▶ Fetched { pin, .. }
//!     └─ otherwise ─────▶ partial deleted, warning naming the peers, FetchError::Corrupt
//! ```
//!
//! - A fetch opens one blob stream ([`crate::blob_stream`]) to a peer and asks for
//!   everything from the end of what it holds; the stream's bytes go to the writer as they
//!   arrive, [`blob_stream::BUF`] at a time, in buffers the writer hands back. A stream that
//!   ends early or stalls for [`FetchOptions::piece_timeout`] counts as a failed request.
//! - From a peer that serves no blob streams (or with [`FetchOptions::stream`] off), a fetch
//!   asks first for the blob's size (a piece of length 0), then keeps
//!   [`FetchOptions::depth`] piece requests in flight within a window of `depth` pieces ahead
//!   of the last byte written, so memory stays bounded however the answers are ordered.
//! - The partial file is named by the id and only ever holds a verified-to-be-contiguous
//!   prefix (pieces are written in order), so its length is where a later fetch resumes: after
//!   a failed peer in the same fetch, or in a later fetch of the same id. The prefix is hashed
//!   again from disk when resumed; nothing else about it is stored.
//! - A request that fails (connection dropped, no answer within
//!   [`FetchOptions::piece_timeout`], the peer answering `Error`) is retried
//!   on the same peer [`FetchOptions::retries`] times with doubling backoff; then the next peer
//!   is asked. A peer that breaks the protocol (wrong answer, a piece longer than asked, an
//!   empty piece, a size that changes) is not retried. A peer without the blob is skipped.
//! - Two fetches of the same id into the same store in this process run one after the other;
//!   the second finds the blob present.
//! - Serving reads the blob file at an offset; it is called on a blocking thread.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime};

use futures::stream::{FuturesUnordered, StreamExt};
use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::PeerId;
use rendermesh_cache::{BlobStore, PinGuard};
use rendermesh_protocol::wire::{BlobHead, BlobRead, MAX_BLOB_PIECE};
use rendermesh_protocol::{ContentId, Request, Response};
use tokio::sync::mpsc;

use crate::blob_stream;
use crate::net::{NetworkHandle, RequestError};

/// Default size of one piece request.
pub const DEFAULT_PIECE: u32 = 1024 * 1024;
/// Default number of piece requests in flight.
pub const DEFAULT_DEPTH: usize = 8;
/// Default number of blob streams open at once per peer.
pub const DEFAULT_STREAMS: usize = 8;
/// Name prefix of partial files; the number is the format (raw bytes of a blob's prefix).
pub const PARTIAL_PREFIX: &str = "fetch1-";
/// Name suffix of partial files.
pub const PARTIAL_SUFFIX: &str = ".part";

/// Pieces queued between the network and the writer thread.
const WRITE_QUEUE: usize = 8;
/// Default bytes asked for on one blob stream when several run at once.
pub const DEFAULT_STRETCH: u64 = 2 * 1024 * 1024;
/// Written buffers the writer thread hands back for reuse.
const SPARE_BUFFERS: usize = 32;
/// The writer flushes the partial file to disk after this many bytes (in the background).
const SYNC_EVERY: u64 = 32 * 1024 * 1024;
/// Longest wait between two attempts on one peer.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Longest text of a peer's error kept in our messages.
const MAX_PEER_TEXT: usize = 200;

/// How a fetch runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchOptions {
    /// Bytes asked for per request; clamped to 1..=[`MAX_BLOB_PIECE`].
    pub piece_size: u32,
    /// Requests in flight at once (at least 1).
    pub depth: usize,
    /// Further attempts on a peer after a failed request, before moving to the next peer.
    /// An attempt that made progress resets the count.
    pub retries: u32,
    /// Wait before the first retry; doubled on each further one (at most 5 s).
    pub backoff: Duration,
    /// Refuse a blob a peer says is larger than this (a peer could otherwise fill the disk).
    pub max_size: u64,
    /// A piece not answered within this time counts as a failed request (the network's own
    /// request timeout is long, for shard awards). On a blob stream: the longest wait for
    /// the next bytes.
    pub piece_timeout: Duration,
    /// Fetch the blob over blob streams from peers that serve them; pieces otherwise.
    pub stream: bool,
    /// Blob streams open at once per peer, each asking for `stretch` bytes; with 1, one
    /// stream asks for everything.
    pub streams: usize,
    /// Bytes asked for on one blob stream when several run at once (at least 64 KiB); at
    /// most `streams × stretch` bytes wait in memory to be written.
    pub stretch: u64,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            piece_size: DEFAULT_PIECE,
            depth: DEFAULT_DEPTH,
            retries: 3,
            backoff: Duration::from_millis(200),
            max_size: u64::MAX,
            piece_timeout: Duration::from_secs(30),
            stream: true,
            streams: DEFAULT_STREAMS,
            stretch: DEFAULT_STRETCH,
        }
    }
}

/// A blob that is now in the local store, pinned.
#[derive(Debug)]
pub struct Fetched {
    pub id: ContentId,
    pub size: u64,
    /// Bytes received from peers by this fetch (0 when the blob was already here).
    pub received: u64,
    /// Bytes taken from a partial file left by an earlier fetch.
    pub resumed: u64,
    /// Keeps the blob from eviction; drop it when done with the blob.
    pub pin: PinGuard,
}

/// Why one peer could not deliver the blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerFailure {
    pub peer: PeerId,
    pub reason: String,
}

impl fmt::Display for PeerFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "peer {}: {}", self.peer, self.reason)
    }
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("no peer to fetch blob {id} from")]
    NoPeers { id: ContentId },
    #[error("no peer has blob {id} (asked {})", peer_list(.asked))]
    NotFound { id: ContentId, asked: Vec<PeerId> },
    #[error("blob {id} could not be fetched: {}", failure_list(.failures))]
    Unavailable {
        id: ContentId,
        failures: Vec<PeerFailure>,
    },
    /// The received bytes do not hash to the id. `peers` sent bytes in this fetch; when
    /// `resumed` > 0 the first `resumed` bytes came from an earlier fetch.
    #[error("blob {id} from peer {} failed verification; discarded{}", peer_list(.peers),
        if *.resumed > 0 { format!(" (the first {} bytes came from an earlier fetch)", .resumed) } else { String::new() })]
    Corrupt {
        id: ContentId,
        peers: Vec<PeerId>,
        resumed: u64,
    },
    #[error("network stopped while fetching blob {id}")]
    Stopped { id: ContentId },
    #[error("blob {id}: {}: {source}", path.display())]
    Io {
        id: ContentId,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn peer_list(peers: &[PeerId]) -> String {
    if peers.is_empty() {
        return "(none)".into();
    }
    peers
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn failure_list(failures: &[PeerFailure]) -> String {
    failures
        .iter()
        .map(|f| f.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Answer a [`Request::GetBlob`]: up to `len` (at most [`MAX_BLOB_PIECE`]) bytes of blob `id`
/// from `offset`, with the blob's total size. An offset equal to the size gives an empty piece
/// (that is how a fetcher asks for the size); beyond it is an error. Blocking I/O: call it on a
/// blocking thread.
pub fn serve_piece(blobs: &BlobStore, id: &ContentId, offset: u64, len: u32) -> Response {
    if !blobs.contains(id) {
        return Response::NoBlob;
    }
    let path = blobs.path(id);
    match read_piece(&path, offset, len.min(MAX_BLOB_PIECE)) {
        Ok(Some(r)) => r,
        Ok(None) => Response::NoBlob,
        Err(e) => {
            tracing::warn!(blob = %id.short(), offset, error = %e, "cannot serve blob piece");
            Response::Error(format!("cannot read blob: {e}"))
        }
    }
}

/// `Ok(None)`: the file vanished (evicted between the check and the open).
fn read_piece(path: &Path, offset: u64, len: u32) -> io::Result<Option<Response>> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let total = file.metadata()?.len();
    if offset > total {
        return Ok(Some(Response::Error(format!(
            "offset {offset} is beyond the end of the blob ({total} bytes)"
        ))));
    }
    // at most MAX_BLOB_PIECE; read into spare capacity (no zeroing first)
    let n = (total - offset).min(u64::from(len));
    let mut data = Vec::with_capacity(n as usize);
    file.seek(SeekFrom::Start(offset))?;
    file.take(n).read_to_end(&mut data)?;
    if data.len() as u64 != n {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "blob file shorter than its size",
        ));
    }
    Ok(Some(Response::BlobPiece { total, data }))
}

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

/// Fetch blob `id` from the first of `from` that can deliver it, into `blobs`, verified and
/// pinned. Already present: pinned and returned at once. See the module doc for how pieces,
/// retries and resumption work.
#[tracing::instrument(skip_all, fields(blob = %id.short()))]
pub async fn fetch(
    net: &NetworkHandle,
    from: &[PeerId],
    id: ContentId,
    blobs: &BlobStore,
    opts: FetchOptions,
) -> Result<Fetched, FetchError> {
    if let Some(done) = already_here(blobs, &id) {
        return Ok(done);
    }
    let path = partial_path(blobs, &id);
    // one fetch per partial file at a time
    let lock = fetch_lock(&path);
    let _turn = lock.lock().await;
    if let Some(done) = already_here(blobs, &id) {
        return Ok(done);
    }
    let opts = FetchOptions {
        piece_size: opts.piece_size.clamp(1, MAX_BLOB_PIECE),
        depth: opts.depth.max(1),
        ..opts
    };
    let me = net.peer_id();
    let mut peers: Vec<PeerId> = Vec::new();
    for p in from {
        if *p != me && !peers.contains(p) {
            peers.push(*p);
        }
    }
    if peers.is_empty() {
        return Err(FetchError::NoPeers { id });
    }

    let started = Instant::now();
    let mut st = Transfer {
        id,
        path,
        total: None,
        sink: None,
        resumed: 0,
        senders: Vec::new(),
        by_pieces: Vec::new(),
    };
    let mut failures = Vec::new();
    let mut lacking = 0;
    let mut complete = false;
    'peers: for &peer in &peers {
        let mut attempt = 0u32;
        loop {
            let before = st.written();
            let end = session(net, peer, &opts, &mut st).await;
            if st.written() > before {
                attempt = 0;
                if !st.senders.contains(&peer) {
                    st.senders.push(peer);
                }
            }
            let reason = match end {
                End::Done => {
                    complete = true;
                    break 'peers;
                }
                End::Stopped => return Err(FetchError::Stopped { id }),
                End::Io(e) => return Err(st.io_error(e).await),
                End::NoBlob => {
                    tracing::debug!(%peer, "peer does not have the blob");
                    lacking += 1;
                    failures.push(PeerFailure {
                        peer,
                        reason: "does not have it".into(),
                    });
                    continue 'peers;
                }
                End::Misbehaved(reason) => {
                    tracing::warn!(%peer, %reason, "peer broke the blob protocol; trying the next one");
                    failures.push(PeerFailure { peer, reason });
                    continue 'peers;
                }
                End::Failed(reason) => reason,
            };
            if attempt >= opts.retries {
                tracing::info!(%peer, %reason, attempts = attempt + 1, "giving up on peer");
                failures.push(PeerFailure {
                    peer,
                    reason: format!("{reason} (after {} attempts)", attempt + 1),
                });
                continue 'peers;
            }
            let wait = opts
                .backoff
                .saturating_mul(1u32 << attempt.min(16))
                .min(MAX_BACKOFF);
            attempt += 1;
            tracing::debug!(%peer, %reason, attempt, ?wait, "blob request failed; retrying");
            tokio::time::sleep(wait).await;
        }
    }
    if !complete {
        // the partial file stays for a later fetch to resume
        if let Some(sink) = st.sink.take() {
            if let Err(e) = sink.finish().await {
                tracing::debug!(error = %e, "partial file not flushed");
            }
        }
        if lacking == peers.len() {
            return Err(FetchError::NotFound { id, asked: peers });
        }
        return Err(FetchError::Unavailable { id, failures });
    }
    let fetched = st.finish(blobs).await?;
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        size = fetched.size,
        received = fetched.received,
        resumed = fetched.resumed,
        secs,
        mb_per_s = fetched.received as f64 / 1e6 / secs.max(1e-9),
        "blob fetched and verified"
    );
    Ok(fetched)
}

fn already_here(blobs: &BlobStore, id: &ContentId) -> Option<Fetched> {
    // pin first, so eviction cannot take it between the check and the pin
    let pin = blobs.pin(id);
    if !blobs.contains(id) {
        return None;
    }
    let size = blobs
        .size(id)
        .or_else(|| fs::metadata(blobs.path(id)).ok().map(|m| m.len()))?;
    Some(Fetched {
        id: *id,
        size,
        received: 0,
        resumed: 0,
        pin,
    })
}

type FetchLock = Arc<tokio::sync::Mutex<()>>;

fn fetch_lock(path: &Path) -> FetchLock {
    static LOCKS: OnceLock<Mutex<HashMap<PathBuf, Weak<tokio::sync::Mutex<()>>>>> = OnceLock::new();
    let mut map = LOCKS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    map.retain(|_, w| w.strong_count() > 0);
    if let Some(lock) = map.get(path).and_then(Weak::upgrade) {
        return lock;
    }
    let lock = FetchLock::default();
    map.insert(path.to_path_buf(), Arc::downgrade(&lock));
    lock
}

/// How one session with one peer ended.
enum End {
    /// Every byte is with the writer.
    Done,
    /// The peer does not have the blob (any more).
    NoBlob,
    /// A request failed; worth retrying.
    Failed(String),
    /// The peer broke the protocol; not worth retrying.
    Misbehaved(String),
    Stopped,
    /// Writing the partial file failed.
    Io(io::Error),
}

/// The state of one fetch across peers.
struct Transfer {
    id: ContentId,
    path: PathBuf,
    /// The blob's size, as the first peer that answered said.
    total: Option<u64>,
    /// Opened once the size is known.
    sink: Option<Sink>,
    resumed: u64,
    /// Peers whose bytes went into the partial file, in order.
    senders: Vec<PeerId>,
    /// Peers that serve no blob streams: asked for pieces.
    by_pieces: Vec<PeerId>,
}

impl Transfer {
    fn written(&self) -> u64 {
        self.sink.as_ref().map_or(0, |s| s.written)
    }

    fn io(&self, source: io::Error) -> FetchError {
        FetchError::Io {
            id: self.id,
            path: self.path.clone(),
            source,
        }
    }

    /// The writer stopped: its own error says why.
    async fn io_error(&mut self, fallback: io::Error) -> FetchError {
        let e = match self.sink.take() {
            Some(sink) => match sink.finish().await {
                Err(e) => e,
                Ok(_) => fallback,
            },
            None => fallback,
        };
        self.io(e)
    }

    /// Size known from a peer: open (or resume) the partial file.
    async fn start(&mut self, total: u64) -> Result<(), io::Error> {
        self.total = Some(total);
        let (sink, resumed) = Sink::open(self.path.clone(), total).await?;
        if resumed > 0 {
            tracing::info!(resumed, total, "resuming a partial fetch");
        }
        self.resumed = resumed;
        self.sink = Some(sink);
        Ok(())
    }

    /// Everything received: check the hash, then move the file into the store.
    async fn finish(mut self, blobs: &BlobStore) -> Result<Fetched, FetchError> {
        let total = self.total.unwrap_or(0);
        let Some(sink) = self.sink.take() else {
            return Err(self.io(io::Error::other("no data was written")));
        };
        let (got, len) = match sink.finish().await {
            Ok(r) => r,
            Err(e) => return Err(self.io(e)),
        };
        if got != self.id || len != total {
            if let Err(e) = fs::remove_file(&self.path) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot delete a corrupt partial file");
                }
            }
            let peers = peer_list(&self.senders);
            tracing::warn!(
                resumed = self.resumed,
                len,
                "blob {} from peer {peers} failed verification; discarded",
                self.id
            );
            return Err(FetchError::Corrupt {
                id: self.id,
                peers: self.senders,
                resumed: self.resumed,
            });
        }
        // Every byte was hashed by the writer as it was written and matched the id: the
        // store moves the file in without hashing it again.
        let store = blobs.clone();
        let path = self.path.clone();
        let id = self.id;
        let adopted =
            tokio::task::spawn_blocking(move || store.adopt_pinned_caller_verified(&path, id, len))
                .await
                .map_err(|e| io::Error::other(format!("adopting task failed: {e}")))
                .and_then(|r| r);
        let pin = match adopted {
            Ok(pin) => pin,
            Err(e) => return Err(self.io(e)),
        };
        let size = len;
        Ok(Fetched {
            id: self.id,
            size,
            received: size - self.resumed.min(size),
            resumed: self.resumed,
            pin,
        })
    }
}

/// Fetch what is missing from one peer: over blob streams when the peer serves them, else
/// by pieces.
async fn session(net: &NetworkHandle, peer: PeerId, opts: &FetchOptions, st: &mut Transfer) -> End {
    if opts.stream && !st.by_pieces.contains(&peer) {
        match stream_session(net, peer, opts, st).await {
            Some(end) => return end,
            None => {
                tracing::debug!(%peer, "peer serves no blob streams; asking for pieces");
                st.by_pieces.push(peer);
            }
        }
    }
    piece_session(net, peer, opts, st).await
}

/// Check a size a peer announced against the limit and what earlier peers said; open the
/// partial file when it is the first.
async fn check_total(st: &mut Transfer, total: u64, opts: &FetchOptions) -> Option<End> {
    if total > opts.max_size {
        return Some(End::Misbehaved(format!(
            "says the blob has {total} bytes, more than the {} allowed",
            opts.max_size
        )));
    }
    match st.total {
        Some(t) if t != total => Some(End::Misbehaved(format!(
            "says the blob has {total} bytes; another peer said {t}"
        ))),
        Some(_) => None,
        None => st.start(total).await.err().map(End::Io),
    }
}

/// Fetch what is missing from one peer over blob streams, [`FetchOptions::streams`] at once,
/// each asking for a stretch of [`FetchOptions::stretch`] bytes; what arrives is written in
/// order.
/// `None`: the peer serves no blob streams.
async fn stream_session(
    net: &NetworkHandle,
    peer: PeerId,
    opts: &FetchOptions,
    st: &mut Transfer,
) -> Option<End> {
    let wait = opts.piece_timeout;
    let id = st.id;
    // ask from the end of what is here: the open partial file, or one left by an earlier fetch
    let offset = match &st.sink {
        Some(sink) => sink.written,
        None => {
            let path = st.path.clone();
            tokio::task::spawn_blocking(move || fs::metadata(path).map(|m| m.len()).unwrap_or(0))
                .await
                .unwrap_or(0)
        }
    };
    let streams = opts.streams.max(1);
    let stretch = if streams == 1 {
        u64::MAX
    } else {
        opts.stretch.max(64 * 1024)
    };
    let (first, total) = match open_read(net, peer, id, offset, stretch, wait).await {
        Ok(open) => open,
        Err(end) => return end,
    };
    if let Some(end) = check_total(st, total, opts).await {
        return Some(end);
    }
    let sink = match st.sink.as_mut() {
        Some(sink) => sink,
        None => return Some(End::Io(io::Error::other("partial file not open"))),
    };
    if sink.written != offset {
        // the partial file was not what it seemed (longer than the blob): ask again
        return Some(End::Failed(format!(
            "asked from byte {offset}, but the partial file holds {}",
            sink.written
        )));
    }
    tracing::debug!(%peer, total, from = offset, streams, "fetching over blob streams");
    let mut next = offset + stretch.min(total - offset);
    let mut inflight = FuturesUnordered::new();
    let bufs = sink.buffers(next - offset);
    inflight.push(futures::future::Either::Left(read_stretch(
        first,
        offset,
        next - offset,
        bufs,
        wait,
    )));
    let window = stretch.saturating_mul(streams as u64);
    let mut ahead: BTreeMap<u64, Stretch> = BTreeMap::new();
    loop {
        while inflight.len() < streams && next < total && next - sink.written < window {
            let (at, len) = (next, stretch.min(total - next));
            next += len;
            let bufs = sink.buffers(len);
            inflight.push(futures::future::Either::Right(async move {
                match open_read(net, peer, id, at, len, wait).await {
                    Ok((stream, t)) if t == total => {
                        read_stretch(stream, at, len, bufs, wait).await
                    }
                    Ok((_, t)) => Stretch::broken(
                        at,
                        End::Misbehaved(format!("changed the blob size from {total} to {t} bytes")),
                    ),
                    Err(end) => Stretch::broken(
                        at,
                        end.unwrap_or_else(|| {
                            End::Misbehaved("stopped serving blob streams".into())
                        }),
                    ),
                }
            }));
        }
        if sink.written >= total {
            return Some(End::Done);
        }
        let Some(done) = inflight.next().await else {
            return Some(End::Failed("transfer stalled".into()));
        };
        ahead.insert(done.offset, done);
        while let Some(s) = ahead.remove(&sink.written) {
            for buf in s.bufs {
                if let Err(e) = sink.push(buf).await {
                    return Some(End::Io(e));
                }
            }
            if let Some(end) = s.broke {
                return Some(end);
            }
        }
    }
}

/// A stretch of a blob read from one stream: the bytes that arrived, in order, and why it
/// stopped short, if it did.
struct Stretch {
    offset: u64,
    bufs: Vec<Vec<u8>>,
    broke: Option<End>,
}

impl Stretch {
    fn broken(offset: u64, end: End) -> Self {
        Stretch {
            offset,
            bufs: Vec::new(),
            broke: Some(end),
        }
    }
}

/// Open a blob stream to `peer` and ask for `len` bytes of `id` from `offset`; the stream
/// and the blob's size. `Err(None)`: the peer serves no blob streams.
async fn open_read(
    net: &NetworkHandle,
    peer: PeerId,
    id: ContentId,
    offset: u64,
    len: u64,
    wait: Duration,
) -> Result<(libp2p::Stream, u64), Option<End>> {
    let timed_out = || Some(End::Failed(format!("no answer within {wait:?}")));
    let mut stream = match tokio::time::timeout(wait, net.open_blob_stream(peer)).await {
        Err(_) => return Err(timed_out()),
        Ok(Err(libp2p_stream::OpenStreamError::UnsupportedProtocol(_))) => return Err(None),
        Ok(Err(e)) => return Err(Some(End::Failed(format!("cannot open a blob stream: {e}")))),
        Ok(Ok(s)) => s,
    };
    let read = BlobRead { id, offset, len };
    match tokio::time::timeout(wait, blob_stream::write_frame(&mut stream, &read)).await {
        Err(_) => return Err(timed_out()),
        Ok(Err(e)) => return Err(Some(End::Failed(format!("blob stream broke: {e}")))),
        Ok(Ok(())) => {}
    }
    match tokio::time::timeout(wait, blob_stream::read_frame(&mut stream)).await {
        Err(_) => Err(timed_out()),
        Ok(Err(e)) if e.kind() == io::ErrorKind::InvalidData => Err(Some(End::Misbehaved(
            format!("sent a garbled blob stream head: {e}"),
        ))),
        Ok(Err(e)) => Err(Some(End::Failed(format!("blob stream broke: {e}")))),
        Ok(Ok(BlobHead::NoBlob)) => Err(Some(End::NoBlob)),
        Ok(Ok(BlobHead::Error(text))) => {
            Err(Some(End::Failed(format!("peer says: {}", clip(&text)))))
        }
        Ok(Ok(BlobHead::Data { total })) => Ok((stream, total)),
    }
}

/// Read `len` bytes from `stream` into `bufs` (which hold `len` bytes between them); stops
/// short when the stream ends early, breaks or stalls for `wait`.
async fn read_stretch(
    mut stream: libp2p::Stream,
    offset: u64,
    len: u64,
    mut bufs: Vec<Vec<u8>>,
    wait: Duration,
) -> Stretch {
    let mut got = 0u64;
    let mut broke = None;
    let mut kept = 0;
    'bufs: for buf in bufs.iter_mut() {
        let mut filled = 0;
        while filled < buf.len() {
            match tokio::time::timeout(wait, stream.read(&mut buf[filled..])).await {
                Err(_) => broke = Some(End::Failed(format!("no bytes within {wait:?}"))),
                Ok(Ok(0)) => {
                    broke = Some(End::Failed(format!(
                        "stream ended after byte {} (asked for {len} from {offset})",
                        offset + got + filled as u64
                    )))
                }
                Ok(Ok(k)) => filled += k,
                Ok(Err(e)) => broke = Some(End::Failed(format!("blob stream broke: {e}"))),
            }
            if broke.is_some() {
                buf.truncate(filled);
                if filled > 0 {
                    kept += 1;
                }
                break 'bufs;
            }
        }
        got += filled as u64;
        kept += 1;
    }
    bufs.truncate(kept);
    if broke.is_none() {
        let _ = stream.close().await;
    }
    Stretch {
        offset,
        bufs,
        broke,
    }
}

/// Fetch what is missing from one peer by pieces, `depth` requests in flight.
async fn piece_session(
    net: &NetworkHandle,
    peer: PeerId,
    opts: &FetchOptions,
    st: &mut Transfer,
) -> End {
    let id = st.id;
    // the size first: a piece of length 0 at offset 0
    let probe = Request::GetBlob {
        id,
        offset: 0,
        len: 0,
    };
    let total = match ask(net, peer, probe, opts.piece_timeout).await {
        Ok(Response::BlobPiece { total, data }) if data.is_empty() => total,
        Ok(Response::BlobPiece { data, .. }) => {
            return End::Misbehaved(format!("sent {} bytes when asked for 0", data.len()))
        }
        Ok(other) => return unexpected(other),
        Err(e) => return failed(e),
    };
    if let Some(end) = check_total(st, total, opts).await {
        return end;
    }
    let Some(sink) = st.sink.as_mut() else {
        return End::Io(io::Error::other("partial file not open"));
    };
    tracing::debug!(%peer, total, from = sink.written, "fetching blob pieces");

    let piece = u64::from(opts.piece_size);
    let window = piece.saturating_mul(opts.depth as u64);
    let mut next = sink.written;
    // ranges left over by short pieces, asked for before new ones
    let mut redo: VecDeque<(u64, u64)> = VecDeque::new();
    let mut ahead: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut inflight = FuturesUnordered::new();
    loop {
        while inflight.len() < opts.depth {
            let (offset, len) = if let Some(r) = redo.pop_front() {
                r
            } else if next < total && next - sink.written < window {
                let len = piece.min(total - next);
                next += len;
                (next - len, len)
            } else {
                break;
            };
            inflight.push(async move {
                // len <= piece_size, a u32
                let request = Request::GetBlob {
                    id,
                    offset,
                    len: len as u32,
                };
                (
                    offset,
                    len,
                    ask(net, peer, request, opts.piece_timeout).await,
                )
            });
        }
        if sink.written >= total {
            return End::Done;
        }
        let Some((offset, len, answer)) = inflight.next().await else {
            return End::Failed("transfer stalled".into());
        };
        let data = match answer {
            Ok(Response::BlobPiece { total: t, data }) => {
                let n = data.len() as u64;
                if t != total {
                    return End::Misbehaved(format!(
                        "changed the blob size from {total} to {t} bytes"
                    ));
                }
                if n > len {
                    return End::Misbehaved(format!(
                        "sent {n} bytes when asked for {len} at offset {offset}"
                    ));
                }
                if n == 0 {
                    return End::Misbehaved(format!(
                        "sent an empty piece at offset {offset} of {total}"
                    ));
                }
                if n < len {
                    redo.push_back((offset + n, len - n));
                }
                data
            }
            Ok(other) => return unexpected(other),
            Err(e) => return failed(e),
        };
        ahead.insert(offset, data);
        while let Some(data) = ahead.remove(&sink.written) {
            if let Err(e) = sink.push(data).await {
                return End::Io(e);
            }
        }
    }
}

/// Why a request got no answer.
enum NoAnswer {
    Network(RequestError),
    Timeout(Duration),
}

async fn ask(
    net: &NetworkHandle,
    peer: PeerId,
    request: Request,
    timeout: Duration,
) -> Result<Response, NoAnswer> {
    match tokio::time::timeout(timeout, net.request(peer, request)).await {
        Ok(r) => r.map_err(NoAnswer::Network),
        Err(_) => Err(NoAnswer::Timeout(timeout)),
    }
}

fn unexpected(answer: Response) -> End {
    match answer {
        Response::NoBlob => End::NoBlob,
        Response::Error(text) => End::Failed(format!("peer says: {}", clip(&text))),
        other => End::Misbehaved(format!("answered a blob request with {}", other.name())),
    }
}

fn failed(e: NoAnswer) -> End {
    match e {
        NoAnswer::Network(RequestError::Stopped) => End::Stopped,
        NoAnswer::Network(RequestError::Failed { reason, .. }) => End::Failed(reason),
        NoAnswer::Timeout(t) => End::Failed(format!("no answer within {t:?}")),
    }
}

fn clip(text: &str) -> String {
    let mut s: String = text.chars().take(MAX_PEER_TEXT).collect();
    if s.len() < text.len() {
        s.push('…');
    }
    s.escape_debug().to_string()
}

/// The partial file and the blocking thread that appends to it and hashes what it appends.
struct Sink {
    tx: mpsc::Sender<Vec<u8>>,
    /// Buffers the writer is done with.
    spare: mpsc::Receiver<Vec<u8>>,
    task: tokio::task::JoinHandle<io::Result<(ContentId, u64)>>,
    /// Bytes handed to the writer, the resumed prefix included.
    written: u64,
}

impl Sink {
    /// Open the partial file for a blob of `total` bytes; returns the sink and the bytes
    /// already there. A partial file longer than `total` is from something else: emptied.
    async fn open(path: PathBuf, total: u64) -> io::Result<(Sink, u64)> {
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
    fn buffers(&mut self, len: u64) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut left = len;
        while left > 0 {
            let n = left.min(blob_stream::BUF as u64);
            out.push(self.buffer(n as usize));
            left -= n;
        }
        out
    }

    async fn push(&mut self, data: Vec<u8>) -> io::Result<()> {
        let n = data.len() as u64;
        self.tx
            .send(data)
            .await
            .map_err(|_| io::Error::other("the partial file's writer stopped"))?;
        self.written += n;
        Ok(())
    }

    /// Wait for the writer: the hash and length of the whole partial file.
    async fn finish(self) -> io::Result<(ContentId, u64)> {
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

    fn store() -> (tempfile::TempDir, BlobStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = BlobStore::open(dir.path()).unwrap();
        (dir, s)
    }

    #[test]
    fn serve_piece_reads_caps_and_refuses() {
        let (_d, s) = store();
        let bytes: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let id = s.put_bytes(&bytes).unwrap();
        assert_eq!(
            serve_piece(&s, &id, 100, 50),
            Response::BlobPiece {
                total: 10_000,
                data: bytes[100..150].to_vec()
            }
        );
        // the tail is short, the end is empty, beyond it is an error
        assert_eq!(
            serve_piece(&s, &id, 9_990, 50),
            Response::BlobPiece {
                total: 10_000,
                data: bytes[9_990..].to_vec()
            }
        );
        assert_eq!(
            serve_piece(&s, &id, 10_000, 50),
            Response::BlobPiece {
                total: 10_000,
                data: vec![]
            }
        );
        assert!(matches!(
            serve_piece(&s, &id, 10_001, 1),
            Response::Error(_)
        ));
        assert!(matches!(
            serve_piece(&s, &id, u64::MAX, u32::MAX),
            Response::Error(_)
        ));
        assert_eq!(
            serve_piece(&s, &ContentId::of(b"absent"), 0, 10),
            Response::NoBlob
        );
    }

    #[test]
    fn serve_piece_caps_the_length() {
        let (_d, s) = store();
        let bytes = vec![7u8; MAX_BLOB_PIECE as usize + 10];
        let id = s.put_bytes(&bytes).unwrap();
        match serve_piece(&s, &id, 0, u32::MAX) {
            Response::BlobPiece { total, data } => {
                assert_eq!(total, bytes.len() as u64);
                assert_eq!(data.len(), MAX_BLOB_PIECE as usize);
            }
            other => panic!("{other:?}"),
        }
    }

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

    #[test]
    fn peer_text_is_clipped_and_escaped() {
        let long = "x".repeat(1000) + "\n";
        let c = clip(&long);
        assert!(c.chars().count() <= MAX_PEER_TEXT + 1);
        assert!(!clip("a\nb").contains('\n'));
    }

    #[test]
    fn fetch_is_send() {
        fn send<T: Send>(_: T) {}
        let (_d, s) = store();
        let key = crate::SwarmKey::from_bytes([1; 32]);
        let cfg = crate::NetworkConfig {
            listen: "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
            static_peers: vec![],
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (net, _loop) =
                crate::net::build(cfg, libp2p::identity::Keypair::generate_ed25519(), &key)
                    .unwrap();
            send(fetch(
                &net,
                &[],
                ContentId::of(b"y"),
                &s,
                FetchOptions::default(),
            ));
        });
    }
}
