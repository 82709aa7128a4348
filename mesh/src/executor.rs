//! The seams between the scheduler and the work: [`ShardExecutor`] runs one shard,
//! [`JobDriver`] plans a job into shards and assembles the result.
//! Both are called on the blocking pool, never on the async executor.

use rendermesh_protocol::{JobId, JobResult, ShardOutput, ShardResult, ShardSpec, WorkStats};

/// A shard failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ShardError {
    pub message: String,
    /// Worth running again (elsewhere); false for errors in the input itself.
    pub retryable: bool,
}

impl ShardError {
    pub fn fatal(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
        }
    }

    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
        }
    }
}

/// Runs a shard on the calling thread (which belongs to a blocking pool).
pub trait ShardExecutor: Send + Sync + 'static {
    /// Run `shard`; call `progress(frames_done)` now and then.
    fn run(
        &self,
        shard: &ShardSpec,
        progress: &dyn Fn(u64),
    ) -> Result<(ShardOutput, WorkStats), ShardError>;
}

/// A job failed: one line naming the file and the cause.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct JobError(pub String);

/// What planning a job produced.
pub enum Plan {
    /// The whole answer was in the cache.
    Cached { result: JobResult, stats: WorkStats },
    /// Shards to run; `done` holds shards already answered (e.g. from the cache); `notes`
    /// are shown to the user (e.g. an encoder fallback).
    Shards {
        shards: Vec<ShardSpec>,
        done: Vec<ShardResult>,
        frames_total: u64,
        stats: WorkStats,
        notes: Vec<String>,
    },
}

/// Job-specific planning and assembly. One driver per job.
pub trait JobDriver: Send + 'static {
    /// Split the job into shards (probe, cut, look up the cache).
    fn plan(&mut self, job: JobId) -> Result<Plan, JobError>;
    /// Assemble the results, ordered by shard index, into the job's result.
    fn finish(&mut self, results: Vec<ShardResult>) -> Result<(JobResult, WorkStats), JobError>;
    /// A shard's result arrived (e.g. to remember it for a resumed job). Must be quick.
    fn shard_done(&mut self, _result: &ShardResult) {}
}
