//! One session with one peer, and the state of a fetch across its sessions.
//!
//! - [`Transfer`]: the state of one fetch across peers: the blob's size as first announced,
//!   the partial file's [`Sink`], who sent bytes; at the end, the hash check and the move
//!   into the store.
//! - [`stream_session`]: what is missing, over blob streams, several stretches at once,
//!   written in order.
//! - [`piece_session`]: what is missing, by pieces, `depth` requests in flight.
//! - How a session ended ([`End`]) decides what the fetch does next: done, retry the peer,
//!   or the next peer.

use std::collections::{BTreeMap, VecDeque};
use std::fs;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::PeerId;
use rendermesh_cache::BlobStore;
use rendermesh_protocol::wire::{BlobHead, BlobRead};
use rendermesh_protocol::{ContentId, Request, Response};

use super::blob_stream;
use super::sink::Sink;
use super::{peer_list, FetchError, FetchOptions, Fetched};
use crate::net::{NetworkHandle, RequestError};

/// Longest text of a peer's error kept in our messages.
const MAX_PEER_TEXT: usize = 200;

/// How one session with one peer ended.
pub(super) enum End {
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
pub(super) struct Transfer {
    pub(super) id: ContentId,
    pub(super) path: PathBuf,
    /// The blob's size, as the first peer that answered said.
    pub(super) total: Option<u64>,
    /// Opened once the size is known.
    pub(super) sink: Option<Sink>,
    pub(super) resumed: u64,
    /// Peers whose bytes went into the partial file, in order.
    pub(super) senders: Vec<PeerId>,
    /// Peers that serve no blob streams: asked for pieces.
    pub(super) by_pieces: Vec<PeerId>,
}

impl Transfer {
    pub(super) fn written(&self) -> u64 {
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
    pub(super) async fn io_error(&mut self, fallback: io::Error) -> FetchError {
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
    pub(super) async fn finish(mut self, blobs: &BlobStore) -> Result<Fetched, FetchError> {
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
pub(super) async fn stream_session(
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
pub(super) async fn piece_session(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_text_is_clipped_and_escaped() {
        let long = "x".repeat(1000) + "\n";
        let c = clip(&long);
        assert!(c.chars().count() <= MAX_PEER_TEXT + 1);
        assert!(!clip("a\nb").contains('\n'));
    }
}
