//! The jobs this node coordinates: the board that starts them, their shared status, and the
//! coordinator actor that runs each one.
//!
//! ```text
//!   JobBoard ──start──▶ Coordinator (one per job) ──RunShard──▶ Worker (slots = cores)
//!      ▲                     │  plan/finish on the blocking pool      │ ShardExecutor::run
//!      └──── JobStatus ◀─────┘◀──────────── ShardResult ─────────────┘ on the blocking pool
//! ```
//!
//! - `board`: the [`JobBoard`]: the jobs of this node, their status and results.
//! - `handle`: the [`JobHandle`]: one job's live status and result, shared.
//! - `coordinator`: the [`Coordinator`] actor: plans a job, auctions its shards, retries,
//!   finishes.

mod board;
mod coordinator;
mod handle;

pub use board::JobBoard;
pub use coordinator::{Coordinator, StopJob, LEASE, MAX_RETRIES};
pub use handle::JobHandle;
