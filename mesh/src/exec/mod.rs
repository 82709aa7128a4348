//! Running shards on this node: the seams to the work (the [`ShardExecutor`] and
//! [`JobDriver`] traits the media engine implements) and the [`Worker`] actor that runs
//! shards through the executor, at most `slots` at a time.
//!
//! ```text
//!   Coordinator / ShardHost ──RunShard{shard, cancel token, observer}──▶ Worker
//!                          ◀── Result<ShardResult, ShardError> ───────── │ ShardExecutor::run
//!                                  ShardObserver: started, progress ◀────┘ (own thread, nice)
//! ```
//!
//! - `executor`: the traits, the job's plan ([`Plan`], [`Stage`], [`Finish`]), [`ShardCtl`],
//!   [`CancelToken`].
//! - `worker`: the [`Worker`] actor, its [`RunShard`] message, [`Load`], [`ShardObserver`].

mod executor;
mod worker;

pub use executor::{
    CancelToken, FailureKind, Finish, JobDriver, JobError, Plan, ShardCtl, ShardError,
    ShardExecutor, Stage,
};
pub use worker::{Load, RunShard, ShardObserver, Worker};
