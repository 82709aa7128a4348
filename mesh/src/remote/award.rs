//! The coordinator's half of an award: [`MeshLink`] (what a coordinator needs of the mesh),
//! [`run_on`] (a shard on a peer: the award request, then the output blobs fetched back and
//! verified) and the [`Coordinators`] of this node, by job, to which the runners'
//! [`Heartbeat`]s are handed (an actix message; the answer is whether the run is still
//! wanted).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use libp2p::PeerId;
use rendermesh_cache::BlobStore;
use rendermesh_protocol::{JobId, Request, Response, ShardResult, ShardSpec};

use crate::exec::ShardError;
use crate::net::NetworkHandle;
use crate::peers::PeerView;
use crate::sched::bidder::CostModel;
use crate::tasks::Tasks;
use crate::transfer::{self, FetchOptions};

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a coordinator needs to use the mesh: the network, who is in it, where blobs live,
/// where its heartbeats arrive and how long an award's lease lasts.
#[derive(Clone)]
pub struct MeshLink {
    pub net: NetworkHandle,
    pub peers: PeerView,
    pub blobs: BlobStore,
    /// Coordinators register here for the heartbeats of their awards (the node's
    /// [`ShardHost`](super::ShardHost) receives them and holds the same directory).
    pub coordinators: Coordinators,
    /// An award on a peer whose heartbeats stop for this long is lost and put up again.
    pub lease: Duration,
    /// This node's cost model: the local worker's bids.
    pub model: CostModel,
    /// Where a coordinator's short requests that outlive it (cancels, hints) run: the node's
    /// task tree, so a stopping node ends them.
    pub tasks: Tasks,
}

/// A runner's progress heartbeat for one award, as its coordinator receives it; the answer
/// is whether the coordinator still wants that run (`false` = stop it).
#[derive(Message, Debug, Clone)]
#[rtype(result = "bool")]
pub struct Heartbeat {
    pub peer: PeerId,
    pub index: u32,
    pub frames_done: u64,
}

/// The coordinators of this node, by job: where heartbeats from runners go.
#[derive(Clone, Default)]
pub struct Coordinators(Arc<Mutex<HashMap<JobId, Recipient<Heartbeat>>>>);

impl Coordinators {
    pub fn register(&self, job: JobId, to: Recipient<Heartbeat>) {
        lock(&self.0).insert(job, to);
    }

    pub fn unregister(&self, job: JobId) {
        lock(&self.0).remove(&job);
    }

    /// Hand `beat` to the coordinator of `job`; `false` when there is none (the job ended or
    /// is not ours) or it no longer wants that run.
    pub async fn heartbeat(&self, job: JobId, beat: Heartbeat) -> bool {
        let to = lock(&self.0).get(&job).cloned();
        match to {
            Some(to) => to.send(beat).await.unwrap_or(false),
            None => false,
        }
    }
}

/// Run `shard` on `peer` and bring its output here.
pub async fn run_on(
    link: &MeshLink,
    peer: PeerId,
    shard: ShardSpec,
) -> Result<ShardResult, ShardError> {
    let span = tracing::info_span!("remote run", job = %shard.job, shard = shard.index, %peer);
    tracing::Instrument::instrument(run_remote(link, peer, shard), span).await
}

async fn run_remote(
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
        // a run the coordinator still wanted, stopped by the runner, is worth another try:
        // the coordinator counts a cancelled run it did not cancel itself as retryable
        Response::ShardFailed(e) => return Err(e.context(format!("on peer {peer}"))),
        other => {
            return Err(ShardError::retryable(format!(
                "peer {peer} gave no shard result: {}",
                other.name()
            )))
        }
    };
    result
        .output
        .validate()
        .map_err(|e| ShardError::retryable(format!("result of shard {index} from {peer}: {e}")))?;
    for blob in &result.output.blobs {
        // outputs come back by hash; a blob that does not verify fails the attempt
        let fetched = transfer::fetch(
            &link.net,
            &[peer],
            blob.id,
            &link.blobs,
            FetchOptions::default(),
        )
        .await
        .map_err(|e| ShardError::retryable(format!("result of shard {index} from {peer}: {e}")))?;
        // the driver reads it soon; the store's LRU order keeps a fresh blob last
        drop(fetched.pin);
    }
    Ok(result)
}
