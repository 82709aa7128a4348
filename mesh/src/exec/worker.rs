//! The worker actor: accepts [`RunShard`] and runs it through the [`ShardExecutor`] on a
//! thread of its own, at most `slots` shards at a time (the rest wait in order). Each run
//! carries a [`CancelToken`]: a run cancelled while it waits never starts, one cancelled while
//! it runs ends at the next frame with [`ShardError::cancelled`].
//!
//! Shard threads run at a lower CPU priority (a higher nice value, [`Worker::with_nice`]); the
//! codec threads they start inherit it. The node's own work — answering peers, serving chunks,
//! running auctions — then gets a core the moment it needs one instead of waiting behind a
//! decoder, which is what keeps a peer that shares no core with the coordinator fed.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use rendermesh_protocol::{ShardResult, ShardSpec};
use tokio::sync::Semaphore;
use tracing::Instrument;

pub use super::executor::CancelToken;
use super::executor::{ShardCtl, ShardError, ShardExecutor};
use crate::sched::bidder::CostModel;

/// Callbacks a shard reports through: started (on which peer), and frames done.
pub trait ShardObserver: Send + Sync + 'static {
    fn started(&self, index: u32, peer: &str);
    fn progress(&self, index: u32, frames_done: u64);
}

/// Run one shard.
#[derive(Message)]
#[rtype(result = "Result<ShardResult, ShardError>")]
pub struct RunShard {
    pub shard: ShardSpec,
    pub observer: Arc<dyn ShardObserver>,
    /// Set it to stop this run.
    pub cancel: CancelToken,
}

/// How many shards a worker is running now; shared with the peers actor's heartbeat.
#[derive(Clone, Debug, Default)]
pub struct Load(Arc<AtomicU32>);

impl Load {
    pub fn running(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }

    fn enter(&self) -> LoadGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        LoadGuard(self.clone())
    }
}

struct LoadGuard(Load);

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs shards of any job on this node.
pub struct Worker {
    name: String,
    executor: Arc<dyn ShardExecutor>,
    slots: Arc<Semaphore>,
    slot_count: usize,
    load: Load,
    /// This node's cost model: told when shards start and end, to learn from their times.
    model: Option<CostModel>,
    /// Nice value of shard threads (0 = leave them at the node's priority).
    nice: i32,
}

impl Worker {
    pub fn new(name: impl Into<String>, executor: Arc<dyn ShardExecutor>, slots: usize) -> Self {
        let slot_count = slots.max(1);
        Self {
            name: name.into(),
            executor,
            slots: Arc::new(Semaphore::new(slot_count)),
            slot_count,
            load: Load::default(),
            model: None,
            nice: 0,
        }
    }

    /// Run shards at nice value `nice` (1–19; 0 or less keeps the node's priority). A value
    /// below the process's own cannot be set without privilege; the thread then keeps the
    /// process's.
    pub fn with_nice(mut self, nice: i32) -> Self {
        self.nice = nice.clamp(0, 19);
        self
    }

    /// Feed every run's time into `model` (the node's bids).
    pub fn with_model(mut self, model: CostModel) -> Self {
        self.model = Some(model);
        self
    }

    /// The running-shard gauge of this worker.
    pub fn load(&self) -> Load {
        self.load.clone()
    }

    pub fn slots(&self) -> usize {
        self.slot_count
    }
}

impl Actor for Worker {
    type Context = Context<Self>;
}

impl Handler<RunShard> for Worker {
    type Result = ResponseFuture<Result<ShardResult, ShardError>>;

    fn handle(&mut self, msg: RunShard, _ctx: &mut Context<Self>) -> Self::Result {
        let slots = self.slots.clone();
        let executor = self.executor.clone();
        let peer = self.name.clone();
        let load = self.load.clone();
        let model = self.model.clone();
        let nice = self.nice;
        let span = tracing::info_span!("shard", job = %msg.shard.job, shard = msg.shard.index, peer = %peer);
        Box::pin(
            async move {
                let _permit = slots
                    .acquire_owned()
                    .await
                    .map_err(|_| ShardError::retryable("worker is shutting down"))?;
                let RunShard {
                    shard,
                    observer,
                    cancel,
                } = msg;
                if cancel.is_cancelled() {
                    tracing::info!("shard cancelled before it started");
                    return Err(ShardError::cancelled());
                }
                let _running = load.enter();
                let mut timed = model.map(|m| Timed::begin(m, &shard));
                observer.started(shard.index, &peer);
                let started = Instant::now();
                let index = shard.index;
                let job = shard.job;
                let span = tracing::Span::current();
                let token = cancel.clone();
                let (done, result) = tokio::sync::oneshot::channel();
                std::thread::Builder::new()
                    .name(format!("shard-{index}"))
                    .spawn(move || {
                        let _g = span.enter();
                        lower_thread_priority(nice);
                        let progress = |n| observer.progress(index, n);
                        let _ = done.send(executor.run(&shard, &ShardCtl::new(&progress, &token)));
                    })
                    .map_err(|e| {
                        ShardError::retryable(format!("cannot start a shard thread: {e}"))
                    })?;
                let run = result
                    .await
                    .map_err(|_| ShardError::retryable("shard thread died (panicked)"))?;
                let (output, mut stats) = match run {
                    Err(_) if cancel.is_cancelled() => {
                        tracing::info!(
                            ms = started.elapsed().as_millis() as u64,
                            "shard cancelled"
                        );
                        return Err(ShardError::cancelled());
                    }
                    other => other?,
                };
                stats.wall_ms = started.elapsed().as_millis() as u64;
                if let Some(t) = timed.as_mut() {
                    t.ok = true;
                }
                tracing::debug!(ms = stats.wall_ms, "shard done");
                Ok(ShardResult {
                    job,
                    index,
                    peer,
                    output,
                    stats,
                })
            }
            .instrument(span),
        )
    }
}

/// Set the calling thread's nice value to `nice` (Linux: a thread's priority is its own).
fn lower_thread_priority(nice: i32) {
    if nice <= 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid has no preconditions; setpriority only changes this thread's nice
        // value and reports failure through its return value.
        let rc = unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice)
        };
        if rc != 0 {
            tracing::debug!(
                nice,
                error = %std::io::Error::last_os_error(),
                "shard thread keeps the node's priority"
            );
        }
    }
}

/// A run the cost model times; only a run that produced a result teaches it.
struct Timed {
    model: CostModel,
    shard: ShardSpec,
    ok: bool,
}

impl Timed {
    fn begin(model: CostModel, shard: &ShardSpec) -> Self {
        model.begin(shard);
        Self {
            model,
            shard: shard.clone(),
            ok: false,
        }
    }
}

impl Drop for Timed {
    fn drop(&mut self) {
        self.model.end(&self.shard, self.ok);
    }
}
