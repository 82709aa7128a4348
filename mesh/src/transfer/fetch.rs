//! [`fetch`]: a blob from the first peer that can deliver it: the peers in turn, retries on
//! one peer with doubling backoff, one fetch per partial file at a time in this process.
//! Each attempt is a session ([`super::session`]) over blob streams or by pieces.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use rendermesh_cache::BlobStore;
use rendermesh_protocol::wire::MAX_BLOB_PIECE;
use rendermesh_protocol::ContentId;

use super::session::{piece_session, stream_session, End, Transfer};
use super::sink::partial_path;
use super::{FetchError, FetchOptions, Fetched, PeerFailure};
use crate::net::NetworkHandle;

/// Longest wait between two attempts on one peer.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Fetch blob `id` from the first of `from` that can deliver it, into `blobs`, verified and
/// pinned. Already present: pinned and returned at once. See [`crate::transfer`] for how pieces,
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
            super::tally::fetched(st.written().saturating_sub(before));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transfer::test_store as store;

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
