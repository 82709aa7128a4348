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
//! - A fetch opens one blob stream ([`blob_stream`]) to a peer and asks for
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
//!
//! Where each part lives:
//!
//! - [`blob_stream`]: blob streams, framed and served (a stretch of a blob as one stream).
//! - `serve`: [`serve_piece`], one piece of a blob for a
//!   [`Request::GetBlob`](rendermesh_protocol::Request::GetBlob).
//! - `from_any`: [`fetch_from_any`], a blob from whichever live peer of the mesh holds it.
//! - `fetch`: [`fetch()`], the peers in turn, retries with backoff, one fetch per blob at a time.
//! - `session`: one peer's session (over blob streams or by pieces), the state of a fetch
//!   across peers, its verification and adoption into the store.
//! - `sink`: the partial file and the thread that writes and hashes it; [`partial_path`],
//!   [`remove_stale_partials`].

pub mod blob_stream;
mod fetch;
mod from_any;
mod serve;
mod session;
mod sink;
mod tally;

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use libp2p::PeerId;
use rendermesh_cache::PinGuard;
use rendermesh_protocol::ContentId;

pub use fetch::fetch;
pub use from_any::fetch_from_any;
pub use serve::serve_piece;
pub use sink::{partial_path, remove_stale_partials, PARTIAL_PREFIX, PARTIAL_SUFFIX};
pub use tally::{totals, TransferTotals};

/// Default size of one piece request.
pub const DEFAULT_PIECE: u32 = 1024 * 1024;
/// Default number of piece requests in flight.
pub const DEFAULT_DEPTH: usize = 8;
/// Default number of blob streams open at once per peer.
pub const DEFAULT_STREAMS: usize = 8;
/// Default bytes asked for on one blob stream when several run at once.
pub const DEFAULT_STRETCH: u64 = 2 * 1024 * 1024;

/// How a fetch runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchOptions {
    /// Bytes asked for per request; clamped to
    /// 1..=[`MAX_BLOB_PIECE`](rendermesh_protocol::wire::MAX_BLOB_PIECE).
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

pub(super) fn peer_list(peers: &[PeerId]) -> String {
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

/// A blob store in a temp dir, for the tests of this module's parts.
#[cfg(test)]
fn test_store() -> (tempfile::TempDir, rendermesh_cache::BlobStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = rendermesh_cache::BlobStore::open(dir.path()).unwrap();
    (dir, s)
}
