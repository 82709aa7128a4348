//! The coordinator actor: one per job.
//!
//! On start it asks the [`JobDriver`] for a plan (on the blocking pool). Its shards become the
//! lots of an [`Auction`]; the bidders are this node's worker and every live peer in the
//! mesh (from the peer table: slots, memory). Each round awards lots to bidders with free
//! slots (earliest estimated finish; see [`crate::sched::auction`]); as shards finish the speeds are
//! corrected from what was observed and the rest is auctioned again, so faster boxes take
//! more. A shard on a peer runs through [`crate::remote`]. Results and progress go to the
//! job's [`JobHandle`]; a shard whose failure is retryable goes back up for auction (up to
//! [`MAX_RETRIES`] times), and a peer that was lost takes no further shards of this job. When
//! every shard is in, the driver assembles the result. The first non-retryable failure fails
//! the job.
//!
//! Every start of a shard somewhere is a *run* (an award, or a speculative copy), kept in
//! `running` under its own id; a result is used only while its run is still there, so the
//! result of a run that was given up is dropped.
//!
//! - **Leases.** A run on a peer holds a lease of [`MeshLink::lease`] (default [`LEASE`]; see
//!   [`Coordinator::with_lease`]). The runner's progress heartbeats ([`Heartbeat`], every 2 s)
//!   renew it and move the shard's `frames_done`; a lease not renewed in time is lost like a
//!   closed connection: the run is given up, the shard put up again, the peer takes no more of
//!   the job. A heartbeat for a run that is no longer wanted is answered `false` (stop).
//! - **Speculation.** When no shard waits for an award and a bidder has a free slot, the shard
//!   in flight with the latest expected finish (from its progress rate) gets a copy on the idle
//!   bidder that would finish it first, if that is clearly sooner; at most one copy per shard,
//!   never on the bidder already running it. The first result wins; the other run is
//!   cancelled (its token, or `CancelShard` to its peer), and its failure is nobody's fault.
//!
//! ```text
//!   JobBoard ─start─▶ Coordinator ─RunShard{cancel token}─▶ local Worker
//!                        │  ▲ ─run_on─▶ peer (remote.rs) ◀─ CancelShard
//!                        │  └── Heartbeat (via Coordinators, from the ShardHost) ── lease
//!                        └─ tick (500 ms): expired leases, speculative copies
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use actix::prelude::*;
use libp2p::PeerId;
use rendermesh_protocol::{
    Bid, BidSheet, JobId, JobState, Request, Response, ShardResult, ShardRow, ShardSpec,
    ShardState, WorkStats,
};

use crate::board::JobHandle;
use crate::exec::{CancelToken, Finish, JobDriver, JobError, Plan, ShardError, Stage};
use crate::exec::{RunShard, ShardObserver, Worker};
use crate::remote::{self, Heartbeat, MeshLink};
use crate::sched::auction::{Auction, Bidder, Lot};

/// How long a peer has to answer a call for bids.
const BID_TIMEOUT: Duration = Duration::from_secs(5);
/// Shard specs per call-for-bids request (a request frame stays far below its limit).
const BID_BATCH: usize = 1000;
/// How often one shard is retried before the job fails.
pub const MAX_RETRIES: u32 = 2;
/// Assumed link speed to a peer for the transfer part of its bids (bytes/s).
const LINK_BYTES_PER_S: f64 = 100e6;
/// Starting speed of every bidder (work units per second per slot); observed runs correct it.
const START_SPEED: f64 = 10.0;
/// Default lease of a run on a peer: lost when no heartbeat renewed it for this long.
pub const LEASE: Duration = Duration::from_secs(15);
/// How often leases are checked and speculative copies considered.
const TICK: Duration = Duration::from_millis(500);
/// A speculative copy must be expected to finish this many seconds sooner than the run it
/// copies…
const SPECULATE_GAIN_S: f64 = 2.0;
/// …and sooner by this fraction of the copy's own estimated time.
const SPECULATE_GAIN_SHARE: f64 = 0.25;
/// A run is judged by its progress only once it has run this long (seconds).
const SPECULATE_AFTER_S: f64 = 1.0;
/// A `CancelShard` to a peer not answered within this time is given up (the runner also learns
/// from its next heartbeat).
const CANCEL_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a bidder runs shards.
#[derive(Clone)]
enum Target {
    Local(Addr<Worker>),
    Remote { peer: PeerId, name: String },
}

type RunId = u64;

/// Frames a run has done and when it last said so.
struct RunProgress {
    since: Instant,
    frames: AtomicU64,
    at_ms: AtomicU64,
    /// The first report of any frames done, and when it came: the rate after it leaves out
    /// a start-up delay (an encoder's lookahead puts out nothing for a while).
    first_frames: AtomicU64,
    first_at_ms: AtomicU64,
}

impl RunProgress {
    fn new() -> Self {
        Self {
            since: Instant::now(),
            frames: AtomicU64::new(0),
            at_ms: AtomicU64::new(0),
            first_frames: AtomicU64::new(0),
            first_at_ms: AtomicU64::new(0),
        }
    }

    fn set(&self, frames: u64) {
        let at = self.since.elapsed().as_millis() as u64;
        if frames > 0
            && self
                .first_frames
                .compare_exchange(0, frames, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.first_at_ms.store(at, Ordering::Relaxed);
        }
        self.at_ms.store(at, Ordering::Relaxed);
        self.frames.store(frames, Ordering::Relaxed);
    }

    /// Seconds from the run's start until it ends, judged from its progress (`None` before
    /// any frame is done): the rate since the first report once there are two.
    fn expected_s(&self, frames: u64) -> Option<f64> {
        let done = self.frames.load(Ordering::Relaxed).min(frames);
        let at = self.at_ms.load(Ordering::Relaxed) as f64 / 1000.0;
        if done == 0 || at <= 0.0 {
            return None;
        }
        let first = self.first_frames.load(Ordering::Relaxed);
        let first_at = self.first_at_ms.load(Ordering::Relaxed) as f64 / 1000.0;
        if first > 0 && done > first && at > first_at {
            let per_frame = (at - first_at) / (done - first) as f64;
            Some(at + (frames - done) as f64 * per_frame)
        } else {
            Some(at * frames as f64 / done as f64)
        }
    }
}

/// One run of a shard: an award, or a speculative copy.
struct Run {
    shard: u32,
    bidder: usize,
    /// Its estimated finish, as entered in the bidder's `running`.
    est: f64,
    progress: Arc<RunProgress>,
    cancel: CancelToken,
    /// The node running it (a local run learns its worker's name when it starts).
    name: Arc<OnceLock<String>>,
    /// Last heartbeat of a run on a peer: its lease runs from here.
    renewed: Instant,
    copy: bool,
    task: Option<SpawnHandle>,
}

impl Run {
    fn name(&self) -> String {
        self.name
            .get()
            .cloned()
            .unwrap_or_else(|| "this node".into())
    }
}

/// Coordinates one job.
pub struct Coordinator {
    job: JobId,
    driver: Option<Box<dyn JobDriver>>,
    workers: Vec<(Addr<Worker>, usize)>,
    link: Option<MeshLink>,
    handle: JobHandle,
    results: BTreeMap<u32, ShardResult>,
    expected: usize,
    failed: bool,
    targets: Vec<Target>,
    bidders: Vec<Bidder>,
    auction: Auction,
    lots: BTreeMap<u32, Lot>,
    specs: BTreeMap<u32, ShardSpec>,
    /// Runs in flight, by run id (a shard may have two: an award and its copy).
    running: BTreeMap<RunId, Run>,
    next_run: RunId,
    /// Shards that got a speculative copy (at most one each).
    copied: BTreeSet<u32>,
    /// The stage running now (0 = the first) and every shard index of the stages so far.
    stage: u32,
    indices: BTreeSet<u32>,
    /// Peers that lost a shard of this job: they take no more of its shards, in any stage.
    lost: BTreeSet<PeerId>,
    lease: Duration,
    clock: Instant,
}

impl Coordinator {
    /// `workers`: this node's workers and their slots; `link`: the mesh, when there is one.
    pub fn new(
        job: JobId,
        driver: Box<dyn JobDriver>,
        workers: Vec<(Addr<Worker>, usize)>,
        link: Option<MeshLink>,
        handle: JobHandle,
    ) -> Self {
        Self {
            job,
            driver: Some(driver),
            workers,
            handle,
            results: BTreeMap::new(),
            expected: 0,
            failed: false,
            targets: Vec::new(),
            bidders: Vec::new(),
            auction: Auction::default(),
            lots: BTreeMap::new(),
            specs: BTreeMap::new(),
            running: BTreeMap::new(),
            next_run: 0,
            copied: BTreeSet::new(),
            stage: 0,
            indices: BTreeSet::new(),
            lost: BTreeSet::new(),
            lease: link.as_ref().map_or(LEASE, |l| l.lease),
            link,
            clock: Instant::now(),
        }
    }

    /// Lose a run on a peer whose heartbeats stopped for `lease` (default: the link's).
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    fn now(&self) -> f64 {
        self.clock.elapsed().as_secs_f64()
    }

    /// Ask every live peer for bids on the job's shards (the local worker bids from this
    /// node's cost model), then open the auction. A peer that does not answer within
    /// [`BID_TIMEOUT`] takes no shards of this job.
    fn call_for_bids(&mut self, ctx: &mut Context<Self>) {
        let Some(link) = self.link.clone() else {
            self.open_auction(None, Vec::new(), ctx);
            return;
        };
        let specs: Vec<ShardSpec> = self.specs.values().cloned().collect();
        let slots = self.workers.iter().map(|(_, s)| *s as u32).sum();
        let local = link.model.bid_sheet(&specs, slots, 0, |_| true);
        let peers: Vec<(PeerId, String)> = link
            .peers
            .rows()
            .into_iter()
            .filter(|p| p.slots > 0)
            .filter_map(|p| Some((p.peer_id.parse::<PeerId>().ok()?, p.name)))
            .filter(|(peer, _)| !self.lost.contains(peer))
            .collect();
        if peers.is_empty() {
            self.open_auction(Some(local), Vec::new(), ctx);
            return;
        }
        tracing::info!(job = %self.job, peers = peers.len(), shards = specs.len(), "calling for bids");
        let specs = Arc::new(specs);
        let calls = peers.into_iter().map(move |(peer, name)| {
            let (net, specs) = (link.net.clone(), specs.clone());
            async move {
                let sheet = tokio::time::timeout(BID_TIMEOUT, ask_bids(&net, peer, &specs))
                    .await
                    .unwrap_or_else(|_| Err("no answer in time".to_string()));
                (peer, name, sheet)
            }
        });
        let fut = futures::future::join_all(calls);
        ctx.wait(
            fut.into_actor(self)
                .map(move |sheets, act, ctx| act.open_auction(Some(local), sheets, ctx)),
        );
    }

    /// Bidders from the bid sheets (the local worker's, then the peers'), then the first round.
    fn open_auction(
        &mut self,
        local: Option<BidSheet>,
        remote: Vec<(PeerId, String, Result<BidSheet, String>)>,
        ctx: &mut Context<Self>,
    ) {
        if self.failed {
            return;
        }
        let now = self.now();
        let lots = &self.lots;
        let speed_of = |sheet: &BidSheet| {
            let (mut work, mut secs) = (0.0, 0.0);
            for b in &sheet.bids {
                if let Bid::Offer {
                    shard, compute_s, ..
                } = b
                {
                    if let Some(l) = lots.get(shard) {
                        work += l.work;
                        secs += compute_s.max(1e-6);
                    }
                }
            }
            if work > 0.0 && secs > 0.0 && secs.is_finite() {
                work / secs
            } else {
                START_SPEED
            }
        };
        let declines_of = |sheet: &BidSheet| -> (BTreeSet<u32>, Option<String>) {
            let mut reason = None;
            let set = sheet
                .bids
                .iter()
                .filter_map(|b| match b {
                    Bid::Decline { shard, reason: r } => {
                        reason.get_or_insert_with(|| r.clone());
                        Some(*shard)
                    }
                    Bid::Offer { .. } => None,
                })
                .collect();
            (set, reason)
        };
        let mut notes = Vec::new();
        for (addr, slots) in &self.workers {
            let (speed, declines) = match &local {
                Some(sheet) => {
                    let (set, why) = declines_of(sheet);
                    if let Some(why) = why {
                        notes.push(format!("this node declined {} shard(s): {why}", set.len()));
                    }
                    (speed_of(sheet), set)
                }
                None => (START_SPEED, BTreeSet::new()),
            };
            self.bidders.push(Bidder {
                id: self.targets.len(),
                slots: *slots as u32,
                running: Vec::new(),
                speed,
                free_mem: u64::MAX,
                bytes_per_s: 0.0,
                declines,
                busy: Vec::new(),
                hint: None,
            });
            self.targets.push(Target::Local(addr.clone()));
        }
        for (peer, name, sheet) in remote {
            let sheet = match sheet {
                Ok(s) if s.slots > 0 => s,
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(job = %self.job, peer = %name, error = %e, "no bids from a peer; it takes no shards of this job");
                    notes.push(format!("{name} did not bid ({e})"));
                    continue;
                }
            };
            let (declines, why) = declines_of(&sheet);
            if let Some(why) = why {
                tracing::info!(job = %self.job, peer = %name, declined = declines.len(), reason = %why, "a peer declined shards");
                notes.push(format!(
                    "{name} declined {} shard(s): {why}",
                    declines.len()
                ));
            }
            let busy_slots = sheet.slots.saturating_sub(sheet.free_slots);
            let busy = if sheet.queue_s > 0.0 && sheet.queue_s.is_finite() {
                vec![now + sheet.queue_s; busy_slots as usize]
            } else {
                Vec::new()
            };
            self.bidders.push(Bidder {
                id: self.targets.len(),
                slots: sheet.slots,
                running: Vec::new(),
                speed: speed_of(&sheet),
                free_mem: u64::MAX,
                bytes_per_s: LINK_BYTES_PER_S,
                declines,
                busy,
                hint: None,
            });
            self.targets.push(Target::Remote { peer, name });
        }
        if !notes.is_empty() {
            self.handle.update(|s| s.notes.extend(notes));
        }
        tracing::info!(job = %self.job, bidders = self.bidders.len(), "auctioning shards");
        self.schedule(ctx);
    }

    /// Award what should start now; fail the job when shards are left that nobody can take.
    fn schedule(&mut self, ctx: &mut Context<Self>) {
        if self.failed {
            return;
        }
        let now = self.now();
        for b in &mut self.bidders {
            b.settle(now);
        }
        self.refresh_estimates(now);
        let awards = self.auction.round(now, &mut self.bidders);
        for a in awards {
            let Some(spec) = self.specs.get(&a.shard).cloned() else {
                continue;
            };
            self.start_run(spec, a.bidder, a.est_finish, false, ctx);
        }
        self.send_hints(now);
        // slots held by other work free up later: the tick schedules again then
        let waiting = self.bidders.iter().any(|b| !b.busy.is_empty());
        if self.running.is_empty() && self.auction.pending() > 0 && !waiting {
            let stuck = self.auction.unplaceable(&self.bidders);
            let what = if stuck.is_empty() {
                "no node is left to run them".to_string()
            } else {
                format!("no node meets their requirements (shards {stuck:?})")
            };
            self.fail(
                format!("{} shard(s) cannot run: {what}", self.auction.pending()),
                ctx,
            );
            return;
        }
        if self.auction.pending() > 0 && self.bidders.iter().any(|b| !b.busy.is_empty()) {
            self.schedule(ctx);
        }
        self.speculate(ctx);
    }

    /// Tell busy peers which input to fetch ahead: that of the shard each is expected to
    /// take next ([`Auction::hints`]). Not tied to this actor, like a cancel.
    fn send_hints(&mut self, now: f64) {
        let Some(link) = self.link.clone() else {
            return;
        };
        for (bidder, shard) in self.auction.hints(now, &mut self.bidders) {
            let (Some(Target::Remote { peer, name }), Some(spec)) =
                (self.targets.get(bidder), self.specs.get(&shard))
            else {
                continue;
            };
            let Some(&id) = spec.inputs.first() else {
                continue;
            };
            let (peer, job) = (*peer, self.job);
            tracing::debug!(%job, shard, peer = %name, "input sent ahead");
            let net = link.net.clone();
            tokio::spawn(async move {
                let ask = net.request(peer, Request::Prefetch { id });
                match tokio::time::timeout(CANCEL_TIMEOUT, ask).await {
                    Ok(Ok(Response::Prefetch { started: true })) => {}
                    Ok(Ok(other)) => {
                        tracing::debug!(%job, shard, %peer, answer = other.name(), "input not fetched ahead")
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(%job, shard, %peer, error = %e, "prefetch failed")
                    }
                    Err(_) => tracing::debug!(%job, shard, %peer, "prefetch unanswered"),
                }
            });
        }
    }

    fn on_plan(&mut self, plan: Result<Plan, JobError>, ctx: &mut Context<Self>) {
        match plan {
            Err(e) => self.fail(e.0, ctx),
            Ok(Plan::Cached { result, stats }) => {
                tracing::info!(job = %self.job, "answered from cache");
                self.handle.update(|s| s.from_cache = true);
                self.handle.complete(Ok(result), stats);
                ctx.stop();
            }
            Ok(Plan::Shards(stage)) => self.start_stage(stage, ctx),
        }
    }

    /// Put a stage's shards up for auction (its answered shards count as done).
    fn start_stage(&mut self, stage: Stage, ctx: &mut Context<Self>) {
        let Stage {
            name,
            shards,
            done,
            frames_total,
            stats,
            notes,
        } = stage;
        // indices are unique within the job: a driver that reuses one would mix stages
        let indices: Vec<u32> = shards
            .iter()
            .map(|s| s.index)
            .chain(done.iter().map(|r| r.index))
            .collect();
        let unique: BTreeSet<u32> = indices.iter().copied().collect();
        if unique.len() != indices.len() || unique.iter().any(|i| self.indices.contains(i)) {
            self.fail(
                format!("stage {name:?} reuses a shard index of this job (a bug in its job kind)"),
                ctx,
            );
            return;
        }
        self.indices.extend(unique);
        self.expected = shards.len() + done.len();
        let stage_no = self.stage;
        tracing::info!(job = %self.job, stage = %name, shards = self.expected, cached = done.len(), "planned");
        self.handle.update(|s| {
            s.notes.extend(notes);
            s.state = JobState::Running;
            s.stage = stage_no;
            s.stage_name = name;
            s.frames_total += frames_total;
            s.stats.add(&stats);
            s.shards.extend(
                shards
                    .iter()
                    .map(|sh| row(sh.index, ShardState::Pending, sh.cost.units, stage_no))
                    .chain(done.iter().map(|r| ShardRow {
                        peer: Some(r.peer.clone()),
                        ..row(r.index, ShardState::Cached, 0, stage_no)
                    })),
            );
            s.shards.sort_by_key(|r| r.index);
            s.stats.cache_hits += done.len() as u64;
        });
        for r in done {
            self.results.insert(r.index, r);
        }
        if !shards.is_empty() {
            let lots: Vec<Lot> = shards.iter().map(lot_of).collect();
            for l in &lots {
                self.lots.insert(l.shard, l.clone());
            }
            self.auction = Auction::new(lots);
            for sh in shards {
                self.specs.insert(sh.index, sh);
            }
            self.call_for_bids(ctx);
        }
        self.maybe_finish(ctx);
    }

    /// The stage ended: forget its lots and bids; the next stage calls for bids anew (its
    /// shards are of other classes), leaving out the peers that lost a shard.
    fn next_stage(&mut self, plan: Plan, ctx: &mut Context<Self>) {
        for run in std::mem::take(&mut self.running).into_values() {
            run.cancel.cancel();
        }
        self.stage += 1;
        self.targets.clear();
        self.bidders.clear();
        self.auction = Auction::default();
        self.lots.clear();
        self.specs.clear();
        self.copied.clear();
        self.results.clear();
        self.expected = 0;
        self.on_plan(Ok(plan), ctx);
    }

    /// Start a run of `shard` on `bidder` (its slot is already taken, `est` entered).
    fn start_run(
        &mut self,
        shard: ShardSpec,
        bidder: usize,
        est: f64,
        copy: bool,
        ctx: &mut Context<Self>,
    ) {
        let id = self.next_run;
        self.next_run += 1;
        let index = shard.index;
        let progress = Arc::new(RunProgress::new());
        let cancel = CancelToken::default();
        let name = Arc::new(OnceLock::new());
        let task = match self.targets[bidder].clone() {
            Target::Local(worker) => {
                let observer = Arc::new(Observer {
                    handle: self.handle.clone(),
                    progress: progress.clone(),
                    cancel: cancel.clone(),
                    name: name.clone(),
                    copy,
                });
                let fut = worker.send(RunShard {
                    shard,
                    observer,
                    cancel: cancel.clone(),
                });
                ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
                    let res = res.unwrap_or_else(|e| {
                        Err(ShardError::retryable(format!("worker gone: {e}")))
                    });
                    act.on_result(id, res, ctx)
                }))
            }
            Target::Remote {
                peer,
                name: peer_name,
            } => {
                let Some(link) = self.link.clone() else {
                    return;
                };
                let _ = name.set(peer_name.clone());
                if copy {
                    tracing::info!(job = %self.job, shard = index, peer = %peer_name, "speculative copy sent to a peer");
                    self.handle.update(|s| {
                        if let Some(row) = s.shards.iter_mut().find(|x| x.index == index) {
                            add_note(row, format!("copy on {peer_name}"));
                        }
                    });
                } else {
                    tracing::info!(job = %self.job, shard = index, peer = %peer_name, "shard awarded to a peer");
                    self.handle.update(|s| {
                        if let Some(row) = s.shards.iter_mut().find(|x| x.index == index) {
                            row.state = ShardState::Running;
                            row.peer = Some(peer_name.clone());
                        }
                    });
                }
                let fut = async move { remote::run_on(&link, peer, shard).await };
                ctx.spawn(
                    fut.into_actor(self)
                        .map(move |res, act, ctx| act.on_result(id, res, ctx)),
                )
            }
        };
        self.running.insert(
            id,
            Run {
                shard: index,
                bidder,
                est,
                progress,
                cancel,
                name,
                renewed: Instant::now(),
                copy,
                task: Some(task),
            },
        );
    }

    /// Give a run's slot back; learn its bidder's speed from a finished run (or the progress
    /// of a stopped one).
    fn free_slot(&mut self, run: &Run, finished: bool) {
        let b = &mut self.bidders[run.bidder];
        if let Some(i) = b.running.iter().position(|&e| e == run.est) {
            b.running.remove(i);
        }
        let Some(l) = self.lots.get(&run.shard) else {
            return;
        };
        let seconds = run.progress.since.elapsed().as_secs_f64();
        if finished {
            b.observe(l.work, seconds);
        } else if seconds >= SPECULATE_AFTER_S {
            let frames = self.specs.get(&run.shard).map_or(0, |s| s.cost.units);
            let done = run.progress.frames.load(Ordering::Relaxed).min(frames);
            if done > 0 {
                b.observe(l.work * done as f64 / frames as f64, seconds);
            }
        }
    }

    /// Give up run `id`: free its slot, stop it (its token; `CancelShard` to its peer) and
    /// drop whatever it answers later.
    fn stop_run(&mut self, id: RunId, ctx: &mut Context<Self>) -> Option<Run> {
        let mut run = self.running.remove(&id)?;
        self.free_slot(&run, false);
        run.cancel.cancel();
        if let Some(task) = run.task.take() {
            ctx.cancel_future(task);
        }
        if let (Target::Remote { peer, .. }, Some(link)) =
            (&self.targets[run.bidder], self.link.clone())
        {
            let (peer, job, index) = (*peer, self.job, run.shard);
            // not tied to this actor: the job may end (and the actor stop) right after the
            // winning result, and the cancel must still go out; it ends within CANCEL_TIMEOUT
            tokio::spawn(async move {
                let cancel = link.net.request(peer, Request::CancelShard { job, index });
                match tokio::time::timeout(CANCEL_TIMEOUT, cancel).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::debug!(%job, shard = index, %peer, error = %e, "cancel failed")
                    }
                    Err(_) => tracing::debug!(%job, shard = index, %peer, "cancel unanswered"),
                }
            });
        }
        Some(run)
    }

    fn on_result(
        &mut self,
        id: RunId,
        res: Result<ShardResult, ShardError>,
        ctx: &mut Context<Self>,
    ) {
        let Some(run) = self.running.remove(&id) else {
            tracing::debug!(job = %self.job, run = id, "dropping the answer of a run given up");
            return;
        };
        self.free_slot(&run, res.is_ok());
        if self.failed {
            return;
        }
        match res {
            Ok(r) => self.shard_done(run, r, ctx),
            Err(e) => self.run_failed(run, e, ctx),
        }
    }

    fn shard_done(&mut self, run: Run, r: ShardResult, ctx: &mut Context<Self>) {
        if self.results.contains_key(&run.shard) {
            tracing::debug!(shard = run.shard, "dropping duplicate result");
            return;
        }
        // the first result wins: the other copy, if any, is stopped
        let others: Vec<RunId> = self
            .running
            .iter()
            .filter(|(_, x)| x.shard == run.shard)
            .map(|(&k, _)| k)
            .collect();
        let mut stopped = Vec::new();
        for k in others {
            if let Some(o) = self.stop_run(k, ctx) {
                tracing::info!(job = %self.job, shard = run.shard, winner = %r.peer, cancelled = %o.name(), "the other run of the shard is cancelled");
                stopped.push(o.name());
            }
        }
        let note = match (run.copy, stopped.is_empty()) {
            (true, false) => Some(format!("copy won; run on {} cancelled", stopped.join(", "))),
            (true, true) => Some("copy won".to_string()),
            (false, false) => Some(format!("copy on {} cancelled", stopped.join(", "))),
            (false, true) => None,
        };
        // remembered before it shows as done, so nobody sees "done" that a crash loses
        if let Some(d) = self.driver.as_mut() {
            d.shard_done(&r);
        }
        self.handle.update(|s| {
            s.stats.add(&r.stats);
            if let Some(row) = s.shards.iter_mut().find(|x| x.index == r.index) {
                row.state = ShardState::Done;
                row.peer = Some(r.peer.clone());
                row.frames_done = row.frames;
                row.millis = r.stats.wall_ms;
                if let Some(n) = note {
                    add_note(row, n);
                }
            }
            s.frames_done = s.shards.iter().map(|x| x.frames_done).sum();
        });
        self.results.insert(r.index, r);
        self.schedule(ctx);
        self.maybe_finish(ctx);
    }

    fn run_failed(&mut self, run: Run, e: ShardError, ctx: &mut Context<Self>) {
        let shard = run.shard;
        // a run stopped by its runner while we still wanted it is worth another try
        let retryable = e.is_retryable() || e.is_cancelled();
        if retryable {
            if let Target::Remote { name, peer } = &self.targets[run.bidder] {
                // a peer that lost a shard takes no more of this job's shards
                tracing::warn!(job = %self.job, shard, peer = %name, kind = ?e.kind, error = %e.message, "peer lost a shard; putting it up again");
                self.bidders[run.bidder].slots = 0;
                self.lost.insert(*peer);
            }
        }
        if let Some(other) = self.running.values().find(|x| x.shard == shard) {
            // the other copy goes on; this failure costs nothing
            tracing::info!(job = %self.job, shard, failed = %run.name(), still_running = %other.name(), error = %e, "one run of the shard failed; its other run goes on");
            let (failed, still) = (run.name(), other.name());
            self.handle.update(|s| {
                if let Some(row) = s.shards.iter_mut().find(|x| x.index == shard) {
                    row.state = ShardState::Running;
                    row.peer = Some(still);
                    add_note(row, format!("run on {failed} failed"));
                }
            });
            return;
        }
        let retries = self.handle.update(|s| {
            s.shards.iter_mut().find(|x| x.index == shard).map(|row| {
                row.retries += 1;
                row.frames_done = 0;
                row.state = ShardState::Pending;
                row.retries
            })
        });
        match retries {
            Some(n) if retryable && n <= MAX_RETRIES => {
                tracing::warn!(job = %self.job, shard, error = %e, "retrying shard");
                if let Some(l) = self.lots.get(&shard) {
                    self.auction.requeue(l.clone());
                }
                self.schedule(ctx);
            }
            _ => {
                self.handle.update(|s| {
                    if let Some(row) = s.shards.iter_mut().find(|x| x.index == shard) {
                        row.state = ShardState::Failed;
                    }
                });
                self.fail(e.message, ctx);
            }
        }
    }

    /// Leases that ran out, then speculative copies.
    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.failed || self.driver.is_none() {
            return;
        }
        let expired: Vec<RunId> = self
            .running
            .iter()
            .filter(|(_, r)| matches!(self.targets[r.bidder], Target::Remote { .. }))
            .filter(|(_, r)| r.renewed.elapsed() > self.lease)
            .map(|(&k, _)| k)
            .collect();
        for id in expired {
            if self.failed {
                return;
            }
            let Some(run) = self.stop_run(id, ctx) else {
                continue;
            };
            let (name, shard, secs) = (run.name(), run.shard, self.lease.as_secs_f64());
            tracing::warn!(job = %self.job, shard, peer = %name, lease_s = secs, "lease lost: no heartbeat from the peer in time; putting the shard up again");
            self.handle.update(|s| {
                if let Some(row) = s.shards.iter_mut().find(|x| x.index == shard) {
                    add_note(row, format!("lease lost on {name}"));
                }
            });
            let e = ShardError::retryable(format!(
                "lease lost: no heartbeat from {name} for {secs:.0} s"
            ));
            self.run_failed(run, e, ctx);
        }
        self.speculate(ctx);
    }

    /// Bring the finish times the auction holds for runs in flight up to date with their
    /// progress: a run that is late on its bid would otherwise look finished, and an idle
    /// bidder would leave the last shards to a box still busy.
    fn refresh_estimates(&mut self, now: f64) {
        let updates: Vec<(RunId, f64)> = self
            .running
            .iter()
            .map(|(&id, run)| (id, self.expected_finish(run, now)))
            .collect();
        for (id, est) in updates {
            let Some(run) = self.running.get_mut(&id) else {
                continue;
            };
            let b = &mut self.bidders[run.bidder];
            if let Some(e) = b.running.iter_mut().find(|e| **e == run.est) {
                *e = est;
                run.est = est;
            }
        }
    }

    /// When a run ends, in seconds of the job's clock: from its progress rate, else its bid.
    fn expected_finish(&self, run: &Run, now: f64) -> f64 {
        let frames = self.specs.get(&run.shard).map_or(0, |s| s.cost.units);
        let elapsed = run.progress.since.elapsed().as_secs_f64();
        match run.progress.expected_s(frames) {
            Some(total) => (now - elapsed + total).max(now),
            // no progress yet: at least as long again as it has taken so far
            None => run.est.max(now + elapsed),
        }
    }

    /// Nothing waits for an award: give the slowest shard in flight a copy on an idle bidder
    /// that would clearly finish it sooner.
    fn speculate(&mut self, ctx: &mut Context<Self>) {
        if self.failed || self.driver.is_none() || self.auction.pending() > 0 {
            return;
        }
        if !self.bidders.iter().any(|b| b.free_slots() > 0) {
            return;
        }
        let now = self.now();
        let mut runs_of: BTreeMap<u32, Vec<&Run>> = BTreeMap::new();
        for r in self.running.values() {
            runs_of.entry(r.shard).or_default().push(r);
        }
        let mut slow: Vec<(f64, u32, usize)> = runs_of
            .iter()
            .filter(|(shard, runs)| runs.len() == 1 && !self.copied.contains(shard))
            .filter(|(_, runs)| runs[0].progress.since.elapsed().as_secs_f64() >= SPECULATE_AFTER_S)
            .map(|(&shard, runs)| (self.expected_finish(runs[0], now), shard, runs[0].bidder))
            .collect();
        slow.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (finish, shard, on) in slow {
            let (Some(lot), Some(spec)) = (self.lots.get(&shard), self.specs.get(&shard)) else {
                continue;
            };
            let best = self
                .bidders
                .iter()
                .filter(|b| b.id != on && b.free_slots() > 0)
                .filter_map(|b| b.bid(now, lot).map(|t| (t, b.id)))
                .min_by(|a, b| a.0.total_cmp(&b.0));
            let Some((t, bidder)) = best else {
                continue;
            };
            let gain = SPECULATE_GAIN_S.max(SPECULATE_GAIN_SHARE * (t - now));
            if t + gain >= finish {
                continue;
            }
            let spec = spec.clone();
            tracing::info!(
                job = %self.job,
                shard,
                expected_s = finish - now,
                copy_s = t - now,
                "starting a speculative copy of a slow shard"
            );
            self.copied.insert(shard);
            self.bidders[bidder].running.push(t);
            self.handle.update(|s| {
                if let Some(row) = s.shards.iter_mut().find(|x| x.index == shard) {
                    row.copies += 1;
                }
            });
            self.start_run(spec, bidder, t, true, ctx);
            // one copy per call: the bidders' slots changed
            return;
        }
    }

    fn maybe_finish(&mut self, ctx: &mut Context<Self>) {
        if self.results.len() < self.expected || self.driver.is_none() {
            return;
        }
        let Some(mut driver) = self.driver.take() else {
            return;
        };
        self.handle.update(|s| s.state = JobState::Finishing);
        let results: Vec<ShardResult> = std::mem::take(&mut self.results).into_values().collect();
        let fut = tokio::task::spawn_blocking(move || {
            let finished = driver.finish(results);
            (driver, finished)
        });
        ctx.wait(fut.into_actor(self).map(|res, act, ctx| {
            let (driver, res) = match res {
                Ok((driver, res)) => (Some(driver), res),
                Err(e) => (
                    None,
                    Err(JobError(format!("finishing the job crashed: {e}"))),
                ),
            };
            match res {
                Ok(Finish::Done(result, stats)) => {
                    tracing::info!(job = %act.job, "job done");
                    act.handle.complete(Ok(result), stats);
                    ctx.stop();
                }
                Ok(Finish::Next(plan)) => {
                    act.driver = driver;
                    tracing::info!(job = %act.job, stage = act.stage + 1, "next stage");
                    act.next_stage(plan, ctx);
                }
                Err(e) => act.fail(e.0, ctx),
            }
        }));
    }

    fn fail(&mut self, error: String, ctx: &mut Context<Self>) {
        if self.failed {
            return;
        }
        self.failed = true;
        tracing::warn!(job = %self.job, %error, "job failed");
        self.handle.complete(Err(error), WorkStats::default());
        ctx.stop();
    }
}

/// One peer's bid sheet for `specs`, asked in batches of [`BID_BATCH`].
async fn ask_bids(
    net: &crate::net::NetworkHandle,
    peer: PeerId,
    specs: &[ShardSpec],
) -> Result<BidSheet, String> {
    let mut whole: Option<BidSheet> = None;
    for batch in specs.chunks(BID_BATCH) {
        let sheet = match net
            .request(
                peer,
                Request::CallForBids {
                    shards: batch.to_vec(),
                },
            )
            .await
        {
            Ok(Response::Bids(s)) => s,
            Ok(Response::Error(e)) => return Err(e),
            Ok(other) => return Err(format!("not a bid sheet: {}", other.name())),
            Err(e) => return Err(e.to_string()),
        };
        // every number in it is checked before it is used (slots size the bidder's queue)
        let indices: Vec<u32> = batch.iter().map(|s| s.index).collect();
        sheet.validate(&indices)?;
        match &mut whole {
            None => whole = Some(sheet),
            Some(w) => w.bids.extend(sheet.bids),
        }
    }
    whole.ok_or_else(|| "no shards to bid for".to_string())
}

/// A shard as an auction lot: its work in its class's units.
fn lot_of(s: &ShardSpec) -> Lot {
    Lot {
        shard: s.index,
        work: if s.cost.work.is_finite() {
            s.cost.work.max(1e-3)
        } else {
            1e-3
        },
        input_bytes: s.cost.input_bytes,
        min_mem: s.cost.ram,
    }
}

fn row(index: u32, state: ShardState, frames: u64, stage: u32) -> ShardRow {
    ShardRow {
        stage,
        index,
        state,
        peer: None,
        frames,
        frames_done: 0,
        millis: 0,
        retries: 0,
        copies: 0,
        note: None,
    }
}

fn add_note(row: &mut ShardRow, text: String) {
    row.note = Some(match row.note.take() {
        Some(n) => format!("{n}; {text}"),
        None => text,
    });
}

/// Reports of a local run: into its progress and the shard table (unless it was given up).
struct Observer {
    handle: JobHandle,
    progress: Arc<RunProgress>,
    cancel: CancelToken,
    name: Arc<OnceLock<String>>,
    copy: bool,
}

impl ShardObserver for Observer {
    fn started(&self, index: u32, peer: &str) {
        let _ = self.name.set(peer.to_string());
        if self.cancel.is_cancelled() {
            return;
        }
        self.handle.update(|s| {
            if let Some(row) = s.shards.iter_mut().find(|x| x.index == index) {
                if self.copy {
                    add_note(row, format!("copy on {peer}"));
                } else {
                    row.state = ShardState::Running;
                    row.peer = Some(peer.to_string());
                }
            }
        });
    }

    fn progress(&self, index: u32, frames_done: u64) {
        self.progress.set(frames_done);
        if self.cancel.is_cancelled() {
            return;
        }
        self.handle.update(|s| show_progress(s, index, frames_done));
    }
}

/// A run of shard `index` has done `frames_done` frames: the row shows the furthest run.
fn show_progress(s: &mut rendermesh_protocol::JobStatus, index: u32, frames_done: u64) {
    if let Some(row) = s.shards.iter_mut().find(|x| x.index == index) {
        if row.state == ShardState::Running {
            row.frames_done = row.frames_done.max(frames_done.min(row.frames));
        }
    }
    s.frames_done = s.shards.iter().map(|x| x.frames_done).sum();
}

impl Handler<Heartbeat> for Coordinator {
    type Result = bool;

    /// A runner's heartbeat: renew the lease of its run and show its progress; `false` =
    /// that run is no longer wanted.
    fn handle(&mut self, beat: Heartbeat, _ctx: &mut Context<Self>) -> bool {
        if self.failed {
            return false;
        }
        let targets = &self.targets;
        let Some(run) = self.running.values_mut().find(|r| {
            r.shard == beat.index
                && matches!(&targets[r.bidder], Target::Remote { peer, .. } if *peer == beat.peer)
        }) else {
            tracing::debug!(job = %self.job, shard = beat.index, peer = %beat.peer, "heartbeat for a run no longer wanted");
            return false;
        };
        run.renewed = Instant::now();
        run.progress.set(beat.frames_done);
        self.handle
            .update(|s| show_progress(s, beat.index, beat.frames_done));
        true
    }
}

impl Actor for Coordinator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(link) = &self.link {
            link.coordinators
                .register(self.job, ctx.address().recipient());
        }
        ctx.run_interval(TICK, |act, ctx| act.tick(ctx));
        let Some(mut driver) = self.driver.take() else {
            return;
        };
        let job = self.job;
        let fut = tokio::task::spawn_blocking(move || {
            let plan = driver.plan(job);
            (driver, plan)
        });
        ctx.wait(fut.into_actor(self).map(|res, act, ctx| match res {
            Ok((driver, plan)) => {
                act.driver = Some(driver);
                act.on_plan(plan, ctx);
            }
            Err(e) => act.fail(format!("planning crashed: {e}"), ctx),
        }));
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        // runs still going are not wanted any more: local ones stop at their next frame,
        // peers learn it from the answer to their next heartbeat
        if let Some(link) = &self.link {
            link.coordinators.unregister(self.job);
        }
        for run in self.running.values() {
            run.cancel.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(p: &RunProgress, frames: u64, at_ms: u64) {
        if p.first_frames.load(Ordering::Relaxed) == 0 && frames > 0 {
            p.first_frames.store(frames, Ordering::Relaxed);
            p.first_at_ms.store(at_ms, Ordering::Relaxed);
        }
        p.frames.store(frames, Ordering::Relaxed);
        p.at_ms.store(at_ms, Ordering::Relaxed);
    }

    #[test]
    fn a_run_s_end_is_judged_from_its_rate_after_the_first_frames() {
        let p = RunProgress::new();
        assert_eq!(p.expected_s(120), None, "nothing done yet");
        // an encoder put out nothing for 2 s (its lookahead), then a frame every 50 ms
        report(&p, 10, 2_000);
        assert_eq!(
            p.expected_s(120),
            Some(2.0 * 12.0),
            "one report: the whole run's rate"
        );
        report(&p, 50, 4_000);
        let end = p.expected_s(120).unwrap();
        assert!((end - (4.0 + 70.0 * 0.05)).abs() < 1e-9, "{end}");
        // all frames out: it ends now
        report(&p, 120, 7_500);
        assert_eq!(p.expected_s(120), Some(7.5));
        // set() records the first report once
        let q = RunProgress::new();
        q.set(0);
        q.set(5);
        q.set(9);
        assert_eq!(q.first_frames.load(Ordering::Relaxed), 5);
    }
}
