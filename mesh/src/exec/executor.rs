//! The seams between the scheduler and the work: [`ShardExecutor`] runs one shard,
//! [`JobDriver`] plans a job into stages of shards and assembles the result. The mesh never
//! looks inside a shard's task: it reads the envelope (inputs, class, cost) and hands the
//! spec to the executor, which the node implements with its job kinds.
//! Both are called on the blocking pool, never on the async executor. A running shard reports
//! its progress and learns whether it is still wanted through its [`ShardCtl`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rendermesh_protocol::{
    JobId, JobItem, JobResult, ShardOutput, ShardResult, ShardSpec, WorkStats,
};

pub use rendermesh_protocol::{FailureKind, ShardError};

/// A stop flag for one run of a shard, shared by whoever may cancel it (its coordinator, the
/// node running it for a peer) and the run itself. Cancelling is sticky.
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Both are the same token (clones of one another).
    pub fn same(&self, other: &CancelToken) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// What a running shard reports to and checks: `progress(frames_done)` now and then, and
/// [`ShardCtl::is_cancelled`] once per frame (a cancelled shard ends soon with
/// [`ShardError::cancelled`] and leaves no files behind).
pub struct ShardCtl<'a> {
    progress: &'a (dyn Fn(u64) + 'a),
    cancel: Option<&'a CancelToken>,
}

impl<'a> ShardCtl<'a> {
    pub fn new(progress: &'a (dyn Fn(u64) + 'a), cancel: &'a CancelToken) -> Self {
        Self {
            progress,
            cancel: Some(cancel),
        }
    }

    /// Reports nowhere and is never cancelled (calibration runs, tests).
    pub fn detached() -> ShardCtl<'static> {
        ShardCtl {
            progress: &|_| {},
            cancel: None,
        }
    }

    /// `frames_done` frames of the shard are done.
    pub fn progress(&self, frames_done: u64) {
        (self.progress)(frames_done)
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_some_and(CancelToken::is_cancelled)
    }
}

/// Runs a shard on the calling thread (which belongs to a blocking pool).
pub trait ShardExecutor: Send + Sync + 'static {
    /// Run `shard`; report through `ctl` now and then and stop when it is cancelled.
    fn run(
        &self,
        shard: &ShardSpec,
        ctl: &ShardCtl<'_>,
    ) -> Result<(ShardOutput, WorkStats), ShardError>;
}

/// A job failed: one line naming the file and the cause.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct JobError(pub String);

/// What planning a stage of a job produced.
pub enum Plan {
    /// The whole answer was in the cache.
    Cached { result: JobResult, stats: WorkStats },
    /// A stage of shards to run.
    Shards(Stage),
}

/// One stage of a job: shards that can all run at once.
#[derive(Default)]
pub struct Stage {
    /// Shown in progress, e.g. "encode", "analysis", "combine".
    pub name: String,
    /// Shards to run; their indices are unique within the job, across all its stages.
    pub shards: Vec<ShardSpec>,
    /// Shards already answered (e.g. from the cache, or by an interrupted run).
    pub done: Vec<ShardResult>,
    /// Units of progress of the stage (frames, for video).
    pub frames_total: u64,
    pub stats: WorkStats,
    /// Shown to the user (e.g. an encoder fallback).
    pub notes: Vec<String>,
}

/// What a stage's end produced: the job's result, or the next stage.
pub enum Finish {
    Done(JobResult, WorkStats),
    Next(Plan),
}

/// Job-specific planning and assembly. One driver per job.
pub trait JobDriver: Send + 'static {
    /// Plan the job's first stage (probe, cut, look up the cache).
    fn plan(&mut self, job: JobId) -> Result<Plan, JobError>;
    /// Assemble the results of the stage that ended, ordered by shard index, into the job's
    /// result, or plan the next stage from them.
    fn finish(&mut self, results: Vec<ShardResult>) -> Result<Finish, JobError>;
    /// A shard's result arrived (e.g. to remember it for a resumed job). Must be quick.
    fn shard_done(&mut self, _result: &ShardResult) {}
    /// A shard failed for good (bad input, or its retries used up). `true`: the driver takes
    /// the loss (a job of many files fails that one file) and the stage goes on without the
    /// shard; `false` (the default): the job fails. Must be quick.
    fn shard_failed(&mut self, _index: u32, _error: &ShardError) -> bool {
        false
    }
    /// The job's items (the files of a job of many files) when they changed since the last
    /// call; asked after every shard's answer, every tick and at the end. Must be quick.
    fn items(&mut self) -> Option<Vec<JobItem>> {
        None
    }
    /// The job ended without a result and nothing will resume it (a user cancelled it, or it
    /// failed; not when its node stops): drop what it holds (its chunks, its segments),
    /// leaving what other jobs still use. Runs on a blocking thread.
    fn abandon(&mut self) {}
}
