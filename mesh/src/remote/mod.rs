//! Shards on other nodes.
//!
//! ```text
//!   coordinator ──RunShard{shard}──────────▶ runner: fetch the input blobs from the coordinator
//!        │                                    (verified), run it on its Worker, keep any output
//!        │ ◀── ShardProgress{frames_done} ──  every 2 s while the award lasts (a heartbeat)
//!        │ ──── Lease{keep} ──────────────▶  keep = false: the runner stops the shard
//!        │ ──── CancelShard ──────────────▶  the runner stops the shard (another copy won)
//!        │ ◀── ShardDone(result) ──────────  (or ShardFailed)
//!   coordinator: fetch the output blobs from the runner (verified), then use the result
//! ```
//!
//! A runner that dies mid-shard closes its connection: the request fails at once and the
//! coordinator puts the shard back up for auction. A runner that freezes (its connection stays
//! up) stops sending heartbeats and loses the award when its lease runs out; a result whose
//! blob does not verify is refused the same way.
//!
//! Both sides live here: [`run_on`] is the coordinator's half of an award, [`ShardHost`] the
//! runner's (it also passes heartbeats addressed to this node's coordinators on to them,
//!
//! - `award`: the coordinator's half: [`MeshLink`], [`run_on`], the [`Heartbeat`]s that
//!   reach it and the [`Coordinators`] directory they go through.
//! - `host`: the runner's half: [`ShardHost`], which fetches inputs (and fetches them ahead),
//!   runs awards on the local worker, heartbeats them, bids, drains.

mod award;
mod host;

pub use award::{run_on, Coordinators, Heartbeat, MeshLink};
pub use host::{ShardHost, HEARTBEAT, ORPHAN_AFTER};
