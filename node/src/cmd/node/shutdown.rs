//! How a node stops, in order, within systemd's 30 s:
//!
//! 0. the watched folders stop: they mark nothing more, so what a stop cuts short is made
//!    again after the restart;
//! 1. drain: it takes no new shard (bids decline, awards are handed back), announces no free
//!    slot, stops its calibration, and finishes the shards it runs for peers until their
//!    coordinators have fetched the outputs (at most [`DRAIN_LIMIT`]);
//! 2. the jobs it coordinates end ("the node is stopping"), their runs cancelled;
//! 3. replication stops, then discovery (the mDNS daemon sends its goodbyes), then the
//!    network: its connections close, and the peers see it leave at once;
//! 4. every other task of the node's tree is stopped; the cache is flushed;
//! 5. the report: what was drained, the jobs stopped, and the tasks still alive (none, or
//!    their names) — the last line of the node's log.

use std::time::{Duration, Instant};

use rendermesh_mesh::Draining;

use super::Mesh;
use crate::runtime::Runtime;

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

/// Stop the node's parts in order (see the module doc).
pub async fn shutdown(runtime: &Runtime, mesh: Mesh) -> Report {
    let started = Instant::now();
    if let Some(w) = &mesh.watches {
        let left = w.stop(STEP_LIMIT).await;
        if !left.is_empty() {
            tracing::warn!(?left, "watches still running");
        }
    }
    tracing::info!("node draining");
    mesh.host.start_draining();
    mesh.calibration.cancel();
    mesh.peers.do_send(Draining);
    let drained = mesh.host.drained(DRAIN_LIMIT).await;
    if drained {
        tracing::info!("drained");
    }
    tracing::info!("node stopping");
    let jobs_stopped = runtime.board.stop_all("the node is stopping");
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
