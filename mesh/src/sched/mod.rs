//! Who runs which shard: the contract-net auction and this node's side of it.
//!
//! ```text
//!   Coordinator ──CallForBids{shards}──▶ each peer's ShardHost ──▶ CostModel::bids
//!        │      ◀── BidSheet (speed per class, declines) ──────────┘
//!        └─ Auction: lots (shards) × bidders (this node's worker, live peers)
//!             ──▶ awards (earliest estimated finish), corrected speeds after each run
//! ```
//!
//! - [`auction`]: the contract-net auction as pure logic (lots, bids, awards), simulated at scale.
//! - [`bidder`]: this node's cost model: its bids for shards, declines, corrections from observed runs.
//! - [`tail`]: speculative copies at the end of a job: an idle box copies a run it would
//!   clearly finish sooner.
//! - [`sim`]: the coordinator's rules (awards, speeds learned in the job, copies) run against
//!   a modelled mesh, for the simulation tests and the benchmarks' predictions.

pub mod auction;
pub mod bidder;
pub mod sim;
pub mod tail;
