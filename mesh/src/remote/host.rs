//! The runner's half of an award: [`ShardHost`] runs shards awarded by other nodes on the
//! local [`Worker`], fetching their inputs from the coordinator first (or ahead, on a hint).
//!
//! In: the request handler's calls (`run`, `bids`, `prefetch`, `heartbeat`, `cancel`,
//! `served`). Out: `RunShard` to the worker; `ShardProgress` heartbeats to the award's
//! coordinator every [`HEARTBEAT`], whose `Lease { keep: false }` stops the run; heartbeats
//! for this node's own jobs handed to their coordinators as [`Heartbeat`]s.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use libp2p::PeerId;
use rendermesh_cache::{BlobStore, PinGuard};
use rendermesh_protocol::{ContentId, JobId, Request, Response, ShardSpec};
use tokio::sync::Notify;

use super::award::{lock, Coordinators, Heartbeat};
use crate::exec::{CancelToken, ShardError};
use crate::exec::{Load, RunShard, ShardObserver, Worker};
use crate::net::NetworkHandle;
use crate::sched::bidder::CostModel;
use crate::tasks::Tasks;
use crate::transfer::{self, FetchOptions};

/// How often a runner reports progress to the coordinator of an award (and renews its lease).
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// A heartbeat not answered within this time counts as unanswered.
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(5);
/// A runner whose heartbeats found no coordinator for this long stops the shard: nobody can
/// take its result.
pub const ORPHAN_AFTER: Duration = Duration::from_secs(60);

/// Awards running on this node for peers, by (coordinator, job, shard): their stop flags.
type Awards = Arc<Mutex<HashMap<(PeerId, JobId, u32), CancelToken>>>;

/// An input fetched ahead is kept this long for the award it was fetched for.
const PREFETCH_HOLD: Duration = Duration::from_secs(120);
/// At most this many inputs are held ahead (or being fetched) at once.
const MAX_PREFETCHED: usize = 4;

/// Inputs fetched ahead ([`ShardHost::prefetch`]), by blob: which request it is (so that an
/// old timer leaves a newer one alone) and, once here, its pin.
type Prefetched = Arc<Mutex<HashMap<ContentId, (u64, Option<PinGuard>)>>>;

/// The node side: runs shards awarded by other nodes on the local worker, heartbeats their
/// progress to the coordinators, stops those the coordinators no longer want; and passes
/// heartbeats for this node's own jobs on to their coordinators.
#[derive(Clone)]
pub struct ShardHost {
    pub net: NetworkHandle,
    pub blobs: BlobStore,
    pub worker: Addr<Worker>,
    drain: Arc<DrainState>,
    /// Shards needing more memory than this are declined (0 = no limit).
    ram_limit: u64,
    /// Awards running now, by (coordinator, job, shard).
    awards: Awards,
    coordinators: Coordinators,
    /// Fault injection (tests): extra time spent per frame of every award.
    frame_delay: Duration,
    /// Answers calls for bids: the node's cost model, its slots and its running gauge.
    bidding: Option<(CostModel, u32, Load)>,
    prefetched: Prefetched,
    prefetches: Arc<AtomicU64>,
    /// Where fetches ahead run (they end when the node stops).
    tasks: Tasks,
}

/// Keeps an award in [`ShardHost::awards`] while alive.
struct Award {
    awards: Awards,
    key: (PeerId, JobId, u32),
    token: CancelToken,
}

impl Drop for Award {
    fn drop(&mut self) {
        let mut awards = lock(&self.awards);
        if awards.get(&self.key).is_some_and(|t| t.same(&self.token)) {
            awards.remove(&self.key);
        }
    }
}

#[derive(Default)]
struct DrainState {
    draining: AtomicBool,
    /// Awards being run now.
    running: AtomicU32,
    /// Output blobs of finished awards their coordinators have not fetched yet, with the
    /// pieces served so far (offset → length).
    unfetched: Mutex<HashMap<ContentId, BTreeMap<u64, u64>>>,
}

/// Bytes covered by `pieces` (offset → length), overlaps counted once.
fn covered(pieces: &BTreeMap<u64, u64>) -> u64 {
    let (mut total, mut end) = (0u64, 0u64);
    for (&offset, &len) in pieces {
        let stop = offset.saturating_add(len);
        if stop > end {
            total += stop - offset.max(end);
            end = stop;
        }
    }
    total
}

/// Counts an award as running while alive.
struct Running(Arc<DrainState>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What a run for a peer reports: frames done (read by the heartbeat), the start (sends one
/// heartbeat at once), and, under fault injection, a delay per frame.
struct AwardObserver {
    frames: Arc<AtomicU64>,
    started: Arc<Notify>,
    frame_delay: Duration,
    cancel: CancelToken,
}

impl ShardObserver for AwardObserver {
    fn started(&self, _: u32, _: &str) {
        self.started.notify_one();
    }

    fn progress(&self, _: u32, frames_done: u64) {
        let before = self.frames.swap(frames_done, Ordering::Relaxed);
        if self.frame_delay.is_zero() {
            return;
        }
        // a slow node: called on the shard's blocking thread, so the shard waits
        let frames = frames_done.saturating_sub(before).min(10_000) as u32;
        let until = Instant::now() + self.frame_delay * frames;
        while !self.cancel.is_cancelled() {
            let now = Instant::now();
            if now >= until {
                break;
            }
            std::thread::sleep((until - now).min(Duration::from_millis(50)));
        }
    }
}

impl ShardHost {
    pub fn new(net: NetworkHandle, blobs: BlobStore, worker: Addr<Worker>) -> Self {
        Self {
            net,
            blobs,
            worker,
            drain: Arc::default(),
            ram_limit: 0,
            awards: Arc::default(),
            coordinators: Coordinators::default(),
            frame_delay: Duration::ZERO,
            bidding: None,
            prefetched: Arc::default(),
            prefetches: Arc::default(),
            tasks: Tasks::root("host"),
        }
    }

    /// Run fetches ahead under `tasks` (the node's tree), so a stopping node ends them.
    pub fn with_tasks(mut self, tasks: Tasks) -> Self {
        self.tasks = tasks;
        self
    }

    /// A coordinator expects to award this node the shard whose input is `id` next: fetch
    /// it from `from` now, while the slots are busy, and keep it for [`PREFETCH_HOLD`]. With
    /// [`MAX_PREFETCHED`] inputs ahead already, the oldest one that has arrived is dropped
    /// to make room; a draining node, or one with that many fetches still running, refuses.
    pub fn prefetch(&self, from: PeerId, id: ContentId) -> Response {
        if self.is_draining() {
            return Response::Prefetch { started: false };
        }
        let nth = self.prefetches.fetch_add(1, Ordering::Relaxed);
        let evicted = {
            let mut held = lock(&self.prefetched);
            // here already (fetched ahead, or stored for other reasons: then it is not ours
            // to remove later)
            if held.contains_key(&id) || self.blobs.contains(&id) {
                return Response::Prefetch { started: true };
            }
            let mut evicted = None;
            if held.len() >= MAX_PREFETCHED {
                // the newest hints are the ones that count: the oldest input already here
                // (its shard most likely went elsewhere) makes room
                let oldest = held
                    .iter()
                    .filter(|(_, (_, pin))| pin.is_some())
                    .min_by_key(|(_, (n, _))| *n)
                    .map(|(old, _)| *old);
                let Some(old) = oldest else {
                    return Response::Prefetch { started: false };
                };
                evicted = held.remove(&old).map(|entry| (old, entry));
            }
            held.insert(id, (nth, None));
            evicted
        };
        if let Some((old, entry)) = evicted {
            drop(entry);
            self.drop_unpinned(&old);
        }
        let host = self.clone();
        self.tasks.spawn("prefetch", async move {
            let fetched =
                transfer::fetch(&host.net, &[from], id, &host.blobs, FetchOptions::default()).await;
            match fetched {
                Ok(f) => {
                    let mut held = lock(&host.prefetched);
                    match held.get_mut(&id) {
                        Some((n, pin)) if *n == nth => *pin = Some(f.pin),
                        // its award came and went meanwhile
                        _ => {
                            drop(held);
                            drop(f.pin);
                            host.drop_unpinned(&id);
                            return;
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(blob = %id.short(), error = %e, "fetching an input ahead failed");
                    let mut held = lock(&host.prefetched);
                    if held.get(&id).is_some_and(|(n, _)| *n == nth) {
                        held.remove(&id);
                    }
                    return;
                }
            }
            tokio::time::sleep(PREFETCH_HOLD).await;
            let gone = {
                let mut held = lock(&host.prefetched);
                match held.get(&id) {
                    Some((n, _)) if *n == nth => held.remove(&id),
                    _ => None,
                }
            };
            if gone.is_some() {
                drop(gone);
                host.drop_unpinned(&id);
            }
        });
        Response::Prefetch { started: true }
    }

    /// Remove blob `id` unless something (a job, a run) still pins it.
    fn drop_unpinned(&self, id: &ContentId) {
        if !self.blobs.is_pinned(id) {
            let _ = self.blobs.remove(id);
        }
    }

    /// Answer calls for bids from `model`, for a node of `slots` whose running shards `load`
    /// counts. Without it every call is answered with an error (the caller leaves us out).
    pub fn with_bidding(mut self, model: CostModel, slots: u32, load: Load) -> Self {
        self.bidding = Some((model, slots, load));
        self
    }

    /// This node's bids for `shards`: a draining node declines them all.
    pub fn bids(&self, shards: &[ShardSpec]) -> Response {
        let Some((model, slots, load)) = &self.bidding else {
            return Response::Error("this node does not bid for shards".into());
        };
        let mut sheet =
            model.bid_sheet(shards, *slots, load.running(), |id| self.blobs.contains(id));
        if self.is_draining() {
            sheet.free_slots = 0;
            for b in &mut sheet.bids {
                let shard = match b {
                    rendermesh_protocol::Bid::Offer { shard, .. }
                    | rendermesh_protocol::Bid::Decline { shard, .. } => *shard,
                };
                *b = rendermesh_protocol::Bid::Decline {
                    shard,
                    reason: "the node is draining (shutting down)".into(),
                };
            }
        }
        Response::Bids(sheet)
    }

    /// Pass heartbeats for this node's jobs to the coordinators registered in `c`.
    pub fn with_coordinators(mut self, c: Coordinators) -> Self {
        self.coordinators = c;
        self
    }

    /// Fault injection: spend `delay` more per frame of every award (a slow node).
    pub fn with_frame_delay(mut self, delay: Duration) -> Self {
        self.frame_delay = delay;
        self
    }

    /// A runner's heartbeat for an award of one of our jobs: does its coordinator still want
    /// that run?
    pub async fn heartbeat(&self, from: PeerId, job: JobId, index: u32, frames: u64) -> Response {
        let beat = Heartbeat {
            peer: from,
            index,
            frames_done: frames,
        };
        Response::Lease {
            keep: self.coordinators.heartbeat(job, beat).await,
        }
    }

    /// The coordinator `from` no longer wants our run of shard `index` of `job`: stop it.
    pub fn cancel(&self, from: PeerId, job: JobId, index: u32) -> Response {
        if let Some(token) = lock(&self.awards).get(&(from, job, index)) {
            tracing::info!(%job, shard = index, coordinator = %from, "the coordinator cancelled a shard; stopping it");
            token.cancel();
        }
        Response::Lease { keep: false }
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

    /// A peer was sent `len` bytes of blob `id` (of `total`) from `offset`. An award's output
    /// counts as fetched once every byte of it was served (pieces may be answered out of
    /// order, and again after a failure).
    pub fn served(&self, id: &ContentId, offset: u64, len: u64, total: u64) {
        let mut unfetched = lock(&self.drain.unfetched);
        let Some(pieces) = unfetched.get_mut(id) else {
            return;
        };
        let piece = pieces.entry(offset).or_default();
        *piece = (*piece).max(len);
        if covered(pieces) >= total {
            unfetched.remove(id);
        }
    }

    /// Wait (at most `limit`) until every award taken has finished and its output has been
    /// fetched. Returns whether that happened in time.
    pub async fn drained(&self, limit: Duration) -> bool {
        // the last piece is counted as served before its answer leaves: let it go out
        const SETTLE: Duration = Duration::from_millis(300);
        let deadline = Instant::now() + limit;
        let mut quiet_since: Option<Instant> = None;
        loop {
            let running = self.drain.running.load(Ordering::SeqCst);
            let unfetched = lock(&self.drain.unfetched).len();
            if running == 0 && unfetched == 0 {
                let since = *quiet_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= SETTLE {
                    return true;
                }
            } else {
                quiet_since = None;
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
        let span = tracing::info_span!("award", job = %shard.job, shard = shard.index, coordinator = %from);
        tracing::Instrument::instrument(self.run_award(from, shard), span).await
    }

    async fn run_award(&self, from: PeerId, shard: ShardSpec) -> Response {
        self.drain.running.fetch_add(1, Ordering::SeqCst);
        let _running = Running(self.drain.clone());
        if self.is_draining() {
            return Response::ShardFailed(ShardError::refused(
                "the node is draining (shutting down)",
            ));
        }
        if let Err(e) = shard.validate() {
            tracing::info!(shard = shard.index, coordinator = %from, error = %e, "refusing an award out of range");
            return Response::ShardFailed(ShardError::refused(e));
        }
        let need = shard.cost.ram;
        if self.ram_limit > 0 && need > self.ram_limit {
            tracing::info!(
                shard = shard.index,
                need,
                limit = self.ram_limit,
                "declining a shard: it needs more memory than this node allows"
            );
            return Response::ShardFailed(ShardError::refused(format!(
                "shard needs about {need} bytes of memory; this node allows {}",
                self.ram_limit
            )));
        }
        let (job, index) = (shard.job, shard.index);
        let cancel = CancelToken::default();
        let key = (from, job, index);
        if let Some(old) = lock(&self.awards).insert(key, cancel.clone()) {
            // the same award twice: the coordinator wants the newer run
            old.cancel();
        }
        let _award = Award {
            awards: self.awards.clone(),
            key,
            token: cancel.clone(),
        };
        let frames = Arc::new(AtomicU64::new(0));
        let started = Arc::new(Notify::new());
        let beat = self.heartbeats(from, job, index, &cancel, &frames, &started);
        let work = self.work(from, shard, &cancel, &frames, &started);
        tokio::select! {
            answer = work => answer,
            never = beat => match never {},
        }
    }

    /// Report progress to `from` every [`HEARTBEAT`] (and once when the shard starts) until
    /// dropped; cancel the run when the coordinator no longer wants it or cannot be reached
    /// for [`ORPHAN_AFTER`].
    async fn heartbeats(
        &self,
        from: PeerId,
        job: JobId,
        index: u32,
        cancel: &CancelToken,
        frames: &AtomicU64,
        started: &Notify,
    ) -> std::convert::Infallible {
        let mut answered = Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(HEARTBEAT) => {}
                _ = started.notified() => {}
            }
            if cancel.is_cancelled() {
                continue;
            }
            let beat = Request::ShardProgress {
                job,
                index,
                frames_done: frames.load(Ordering::Relaxed),
            };
            match tokio::time::timeout(HEARTBEAT_TIMEOUT, self.net.request(from, beat)).await {
                Ok(Ok(Response::Lease { keep: true })) => answered = Instant::now(),
                Ok(Ok(Response::Lease { keep: false })) => {
                    tracing::info!(%job, shard = index, coordinator = %from, "the coordinator no longer wants this run (lease revoked); stopping the shard");
                    cancel.cancel();
                }
                other => {
                    tracing::debug!(%job, shard = index, coordinator = %from, answer = ?other, "heartbeat unanswered");
                    if answered.elapsed() >= ORPHAN_AFTER {
                        tracing::warn!(%job, shard = index, coordinator = %from, "no answer from the coordinator for {}s; stopping the shard", ORPHAN_AFTER.as_secs());
                        cancel.cancel();
                    }
                }
            }
        }
    }

    /// Fetch the input, run the shard, answer.
    async fn work(
        &self,
        from: PeerId,
        shard: ShardSpec,
        cancel: &CancelToken,
        frames: &Arc<AtomicU64>,
        started: &Arc<Notify>,
    ) -> Response {
        let inputs = shard.inputs.clone();
        let (job, index) = (shard.job, shard.index);
        let ahead = {
            let held = lock(&self.prefetched);
            inputs.iter().any(|id| held.contains_key(id))
        };
        let mut pins = Vec::with_capacity(inputs.len());
        for &input in &inputs {
            match transfer::fetch(
                &self.net,
                &[from],
                input,
                &self.blobs,
                FetchOptions::default(),
            )
            .await
            {
                Ok(f) => pins.push(f.pin),
                Err(e) => {
                    drop(pins);
                    self.release_inputs(&inputs);
                    return Response::ShardFailed(ShardError::retryable(format!(
                        "cannot fetch the input of shard {index}: {e}"
                    )));
                }
            }
        }
        tracing::info!(
            %job,
            shard = index,
            coordinator = %from,
            "running a shard for a peer{}",
            if ahead { " (input fetched ahead)" } else { "" }
        );
        let observer = AwardObserver {
            frames: frames.clone(),
            started: started.clone(),
            frame_delay: self.frame_delay,
            cancel: cancel.clone(),
        };
        let res = self
            .worker
            .send(RunShard {
                shard,
                observer: Arc::new(observer),
                cancel: cancel.clone(),
            })
            .await;
        drop(pins);
        // the inputs were only needed for this shard (unless a job here uses them too)
        self.release_inputs(&inputs);
        match res {
            Ok(Ok(r)) => {
                for blob in &r.output.blobs {
                    if cancel.is_cancelled() {
                        // nobody will fetch it
                        self.drop_unpinned(&blob.id);
                    } else {
                        lock(&self.drain.unfetched).insert(blob.id, BTreeMap::new());
                    }
                }
                Response::ShardDone(r)
            }
            Ok(Err(e)) => {
                if e.is_cancelled() {
                    tracing::info!(%job, shard = index, coordinator = %from, "shard run cancelled");
                }
                Response::ShardFailed(e)
            }
            Err(e) => Response::ShardFailed(ShardError::retryable(format!("worker gone: {e}"))),
        }
    }

    /// The inputs of a run that ended: no longer held ahead, and removed unless pinned.
    fn release_inputs(&self, inputs: &[ContentId]) {
        for id in inputs {
            let ahead = lock(&self.prefetched).remove(id);
            drop(ahead);
            self.drop_unpinned(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_counts_overlaps_once() {
        let mut p = BTreeMap::new();
        assert_eq!(covered(&p), 0);
        p.insert(10, 5);
        assert_eq!(covered(&p), 5);
        p.insert(0, 10);
        assert_eq!(covered(&p), 15);
        p.insert(12, 10);
        assert_eq!(covered(&p), 22);
        p.insert(2, 3);
        assert_eq!(covered(&p), 22);
    }
}
