//! Shards on other nodes.
//!
//! ```text
//!   coordinator ──RunShard{shard}──▶ peer: fetch the chunk blob from the coordinator (verified),
//!        ▲                               run it on its Worker, keep any output blob
//!        └──── ShardDone(result) ─────┘
//!   coordinator: fetch the output blob from the peer (verified), then use the result
//! ```
//!
//! A peer that dies mid-shard closes its connection: the request fails at once and the
//! coordinator puts the shard back up for auction. A result whose blob does not verify is
//! refused the same way.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::Addr;
use libp2p::PeerId;
use rendermesh_cache::BlobStore;
use rendermesh_protocol::{Request, Response, ShardOutput, ShardResult, ShardSpec, ShardTask};

use crate::executor::ShardError;
use crate::network::NetworkHandle;
use crate::peers::PeerView;
use crate::transfer::{self, FetchOptions};
use crate::worker::{RunShard, ShardObserver, Worker};

/// What a coordinator needs to use the mesh: the network, who is in it, where blobs live.
#[derive(Clone)]
pub struct MeshLink {
    pub net: NetworkHandle,
    pub peers: PeerView,
    pub blobs: BlobStore,
}

fn input_of(shard: &ShardSpec) -> rendermesh_protocol::ContentId {
    match &shard.task {
        ShardTask::Encode { chunk, .. } | ShardTask::SceneScores { chunk, .. } => *chunk,
    }
}

/// Run `shard` on `peer` and bring its output here.
pub async fn run_on(
    link: &MeshLink,
    peer: PeerId,
    shard: ShardSpec,
) -> Result<ShardResult, ShardError> {
    let index = shard.index;
    let answer = link
        .net
        .request(peer, Request::RunShard { shard })
        .await
        .map_err(|e| ShardError::retryable(format!("peer lost: {e}")))?;
    let result = match answer {
        Response::ShardDone(r) if r.index == index => r,
        Response::ShardDone(r) => {
            return Err(ShardError::retryable(format!(
                "peer {peer} answered shard {} for shard {index}",
                r.index
            )))
        }
        Response::ShardFailed { retryable, reason } => {
            return Err(ShardError {
                message: format!("on peer {peer}: {reason}"),
                retryable,
            })
        }
        other => {
            return Err(ShardError::retryable(format!(
                "peer {peer} gave no shard result: {other:?}"
            )))
        }
    };
    if let ShardOutput::Blob { id, .. } = &result.output {
        // the segment comes back by hash; a blob that does not verify fails the attempt
        let fetched = transfer::fetch(
            &link.net,
            &[peer],
            *id,
            &link.blobs,
            FetchOptions::default(),
        )
        .await
        .map_err(|e| ShardError::retryable(format!("result of shard {index} from {peer}: {e}")))?;
        // the join reads it soon; the store's LRU order keeps a fresh blob last
        drop(fetched.pin);
    }
    Ok(result)
}

/// The node side: runs shards awarded by other nodes on the local worker.
#[derive(Clone)]
pub struct ShardHost {
    pub net: NetworkHandle,
    pub blobs: BlobStore,
    pub worker: Addr<Worker>,
    drain: Arc<DrainState>,
    /// Shards needing more memory than this are declined (0 = no limit).
    ram_limit: u64,
}

#[derive(Default)]
struct DrainState {
    draining: AtomicBool,
    /// Awards being run now.
    running: AtomicU32,
    /// Output blobs of finished awards their coordinators have not fetched yet.
    unfetched: Mutex<HashSet<rendermesh_protocol::ContentId>>,
}

/// Counts an award as running while alive.
struct Running(Arc<DrainState>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Quiet;

impl ShardObserver for Quiet {
    fn started(&self, _: u32, _: &str) {}
    fn progress(&self, _: u32, _: u64) {}
}

impl ShardHost {
    pub fn new(net: NetworkHandle, blobs: BlobStore, worker: Addr<Worker>) -> Self {
        Self {
            net,
            blobs,
            worker,
            drain: Arc::default(),
            ram_limit: 0,
        }
    }

    /// Decline shards whose memory estimate exceeds `bytes` (0 = no limit).
    pub fn with_ram_limit(mut self, bytes: u64) -> Self {
        self.ram_limit = bytes;
        self
    }

    /// Stop taking awards: every later one is handed back (retryable) at once.
    pub fn start_draining(&self) {
        self.drain.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.drain.draining.load(Ordering::SeqCst)
    }

    /// A coordinator read the last piece of `id`.
    pub fn fetched(&self, id: &rendermesh_protocol::ContentId) {
        self.drain
            .unfetched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// Wait (at most `limit`) until every award taken has finished and its output has been
    /// fetched. Returns whether that happened in time.
    pub async fn drained(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            let running = self.drain.running.load(Ordering::SeqCst);
            let unfetched = self
                .drain
                .unfetched
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .len();
            if running == 0 && unfetched == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                tracing::warn!(running, unfetched, "drain deadline reached; leaving");
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Run `shard` for `from`: fetch its input from `from`, run it, answer.
    pub async fn run(&self, from: PeerId, shard: ShardSpec) -> Response {
        self.drain.running.fetch_add(1, Ordering::SeqCst);
        let _running = Running(self.drain.clone());
        if self.is_draining() {
            return Response::ShardFailed {
                retryable: true,
                reason: "the node is draining (shutting down)".into(),
            };
        }
        let need = shard.cost.ram_estimate();
        if self.ram_limit > 0 && need > self.ram_limit {
            tracing::info!(
                shard = shard.index,
                need,
                limit = self.ram_limit,
                "declining a shard: it needs more memory than this node allows"
            );
            return Response::ShardFailed {
                retryable: true,
                reason: format!(
                    "shard needs about {need} bytes of memory; this node allows {}",
                    self.ram_limit
                ),
            };
        }
        let input = input_of(&shard);
        let (job, index) = (shard.job, shard.index);
        let pin = match transfer::fetch(
            &self.net,
            &[from],
            input,
            &self.blobs,
            FetchOptions::default(),
        )
        .await
        {
            Ok(f) => f.pin,
            Err(e) => {
                return Response::ShardFailed {
                    retryable: true,
                    reason: format!("cannot fetch the input of shard {index}: {e}"),
                }
            }
        };
        tracing::info!(%job, shard = index, coordinator = %from, "running a shard for a peer");
        let res = self
            .worker
            .send(RunShard {
                shard,
                observer: Arc::new(Quiet),
            })
            .await;
        drop(pin);
        // the chunk was only needed for this shard (unless a job here uses it too)
        if !self.blobs.is_pinned(&input) {
            let _ = self.blobs.remove(&input);
        }
        match res {
            Ok(Ok(r)) => {
                if let ShardOutput::Blob { id, .. } = &r.output {
                    self.drain
                        .unfetched
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(*id);
                }
                Response::ShardDone(r)
            }
            Ok(Err(e)) => Response::ShardFailed {
                retryable: e.retryable,
                reason: e.message,
            },
            Err(e) => Response::ShardFailed {
                retryable: true,
                reason: format!("worker gone: {e}"),
            },
        }
    }
}
