//! How a node stops, in order. First, while the control API still answers ([`finish_jobs`]):
//!
//! - the watched folders stop: they mark nothing more, so what a stop cuts short is made
//!   again after the restart;
//! - the node takes no new job (a submit gets a line saying it drains) and no new shard, and
//!   lets the jobs it coordinates end (at most [`JOBS_LIMIT`]; a second SIGTERM or Ctrl-C
//!   cuts this short), then gives their CLIs up to [`OUTPUT_LIMIT`] to take the outputs.
//!
//! Then the API stops, and the rest within [`DRAIN_LIMIT`] plus a few seconds:
//!
//! 1. drain: it takes no new shard (bids decline, awards are handed back), announces no free
//!    slot, stops its calibration, and finishes the shards it runs for peers until their
//!    coordinators have fetched the outputs (at most [`DRAIN_LIMIT`]);
//! 2. the jobs it coordinates end ("the node is stopping"), their runs cancelled;
//! 3. replication stops, then discovery (the mDNS daemon sends its goodbyes), then the
//!    network: its connections close, and the peers see it leave at once;
//! 4. every other task of the node's tree is stopped; the cache is flushed;
//! 5. the report: what was drained, the jobs stopped, and the tasks still alive (none, or
//!    their names) — the last line of the node's log.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rendermesh_mesh::exec::CancelToken;
use rendermesh_mesh::{Draining, ShardHost};
use rendermesh_protocol::JobResult;

use super::Mesh;
use crate::runtime::Runtime;

/// How long a draining node waits for the jobs it coordinates.
pub const JOBS_LIMIT: Duration = Duration::from_secs(600);
/// How long it then waits for their CLIs to take the outputs.
const OUTPUT_LIMIT: Duration = Duration::from_secs(30);

/// How long a stopping node waits for the shards it runs for peers.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(20);
/// How long each later step may take.
const STEP_LIMIT: Duration = Duration::from_secs(2);

/// What a stopping node did.
pub struct Report {
    drained: bool,
    jobs_stopped: usize,
    jobs_left: usize,
    tasks_left: Vec<String>,
    flushed: bool,
    took: Duration,
}

impl Report {
    /// One line in the log: `shutdown report drained=true jobs_stopped=0 … tasks_left=0`.
    pub fn log(&self) {
        tracing::info!(
            drained = self.drained,
            jobs_stopped = self.jobs_stopped,
            jobs_left = self.jobs_left,
            tasks_left = self.tasks_left.len(),
            left = ?self.tasks_left,
            flushed = self.flushed,
            ms = self.took.as_millis() as u64,
            "shutdown report"
        );
    }
}

/// What a drain needs before the API stops.
#[derive(Clone)]
pub struct Drain {
    pub runtime: Arc<Runtime>,
    pub host: ShardHost,
    pub peers: actix::Addr<rendermesh_mesh::Peers>,
    pub calibration: CancelToken,
    pub watches: Option<Arc<crate::watch::daemon::Watches>>,
    /// Jobs stopped while the API still answered (a drain cut short).
    pub stopped_early: Arc<AtomicUsize>,
}

impl Drain {
    /// Take nothing new: no job, no shard, no calibration; the watched folders stop.
    async fn close(&self) {
        if !self.runtime.draining.swap(true, Ordering::SeqCst) {
            tracing::info!("node draining");
        }
        if let Some(w) = &self.watches {
            let left = w.stop(STEP_LIMIT).await;
            if !left.is_empty() {
                tracing::warn!(?left, "watches still running");
            }
        }
        self.host.start_draining();
        self.calibration.cancel();
        self.peers.do_send(Draining);
    }
}

/// The first part of a drain, while the API answers: take nothing new, let the jobs this
/// node coordinates end (within [`JOBS_LIMIT`], or until `cut_short` fires) and give their
/// CLIs [`OUTPUT_LIMIT`] to take the outputs.
pub async fn finish_jobs(drain: &Drain, cut_short: &tokio::sync::Notify) {
    drain.close().await;
    let board = &drain.runtime.board;
    let running: Vec<_> = board
        .list()
        .into_iter()
        .filter(|j| !j.state.is_final())
        .filter_map(|j| board.get(j.id))
        .collect();
    if running.is_empty() {
        return;
    }
    tracing::info!(
        jobs = running.len(),
        "draining: letting the jobs of this node end"
    );
    let ended = async {
        let left = board.stopped(JOBS_LIMIT).await;
        if left > 0 {
            tracing::warn!(
                jobs = left,
                "draining: jobs still running after {} s; they stop",
                JOBS_LIMIT.as_secs()
            );
            return;
        }
        // the CLIs that follow these jobs take their outputs, and the node drops them then
        let outputs: Vec<_> = running.iter().filter_map(output_of).collect();
        let blobs = &drain.runtime.cache.blobs;
        let deadline = Instant::now() + OUTPUT_LIMIT;
        while outputs.iter().any(|id| blobs.contains(id)) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::select! {
        _ = ended => tracing::info!("draining: the jobs of this node ended"),
        _ = cut_short.notified() => {
            tracing::warn!("draining: stopping now, the jobs of this node stop");
            // now, while their coordinators live: those of jobs submitted through the API
            // run on the server's threads and end with it
            let n = board.stop_all("the node is stopping");
            drain.stopped_early.fetch_add(n, Ordering::SeqCst);
            board.stopped(STEP_LIMIT).await;
        }
    }
}

/// The output blob of a job that ended with one.
fn output_of(h: &rendermesh_mesh::JobHandle) -> Option<rendermesh_protocol::ContentId> {
    match h.result() {
        Some(Ok(JobResult::Transcode { output, .. }))
        | Some(Ok(JobResult::Montage { output, .. })) => Some(output),
        _ => None,
    }
}

/// Stop the node's parts in order (see the module doc).
pub async fn shutdown(drain: &Drain, mesh: Mesh) -> Report {
    let started = Instant::now();
    drain.close().await;
    let runtime = &drain.runtime;
    let drained = mesh.host.drained(DRAIN_LIMIT).await;
    if drained {
        tracing::info!("drained");
    }
    tracing::info!("node stopping");
    let jobs_stopped =
        runtime.board.stop_all("the node is stopping") + drain.stopped_early.load(Ordering::SeqCst);
    let jobs_left = runtime.board.stopped(STEP_LIMIT).await;
    for part in [&mesh.replica, &mesh.discovery] {
        part.stop();
        part.wait(STEP_LIMIT).await;
    }
    // the event loop ends on this; its connections close with it
    mesh.network.shutdown().await;
    mesh.net_tasks.stop();
    mesh.net_tasks.wait(STEP_LIMIT).await;
    mesh.tasks.stop();
    let tasks_left = mesh.tasks.wait(STEP_LIMIT).await;
    let flushed = match runtime.cache.entries.flush() {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "cache flush failed");
            false
        }
    };
    Report {
        drained,
        jobs_stopped,
        jobs_left,
        tasks_left,
        flushed,
        took: started.elapsed(),
    }
}
