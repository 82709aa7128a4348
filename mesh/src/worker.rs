//! The worker actor: accepts [`RunShard`] and runs it through the [`ShardExecutor`] on the
//! blocking pool, at most `slots` shards at a time (the rest wait in order). Each run carries a
//! [`CancelToken`]: a run cancelled while it waits never starts, one cancelled while it runs
//! ends at the next frame with [`ShardError::cancelled`].

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use rendermesh_protocol::{ShardResult, ShardSpec};
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::bidder::CostModel;
pub use crate::executor::CancelToken;
use crate::executor::{ShardCtl, ShardError, ShardExecutor};

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
        }
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
                let run = tokio::task::spawn_blocking(move || {
                    let _g = span.enter();
                    let progress = |n| observer.progress(index, n);
                    executor.run(&shard, &ShardCtl::new(&progress, &token))
                })
                .await
                .map_err(|e| ShardError::retryable(format!("shard task died: {e}")))?;
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
