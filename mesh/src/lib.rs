//! The mesh: the actors and the network that run jobs on this node and its peers, independent
//! of what a shard does (the media engine plugs in through [`ShardExecutor`] and [`JobDriver`]).
//!
//! - [`jobs`]: the [`JobBoard`], each job's [`JobHandle`], the [`Coordinator`] actor (one per job).
//! - [`sched`]: the contract-net auction as pure logic; this node's cost model and its bids.
//! - [`remote`]: shards on peers: an award's coordinator half, the [`ShardHost`] that runs them.
//! - [`exec`]: the executor and driver traits, and the [`Worker`] actor that runs shards.
//! - [`transfer`]: blobs by [`ContentId`](rendermesh_protocol::ContentId) between nodes.
//! - [`service`]: the request handler: peers' requests to the remote, replica and transfer parts.
//! - [`peers`]: the [`Peers`] actor: capability gossip, heartbeats, the peer table.
//! - [`replica`]: cache replication: the mesh keeps the nodes' entry stores in step.
//! - [`discovery`]: mDNS on the local network: announces this node, dials its mesh's nodes.
//! - [`net`]: the network task that owns the swarm, its [`NetworkHandle`], codec and mesh key.
//! - [`tasks`]: the node's long-lived tasks as a tree tied to stop signals ([`Tasks`]); a
//!   stopping node stops them in order and reports what is left.
//! - `clock`: wall-clock milliseconds, as statuses and the peer table carry them.
//!
//! How a shard flows through them:
//!
//! ```text
//!   JobBoard::start ──▶ Coordinator ── JobDriver::plan (blocking pool) ──▶ a stage of shards
//!     │ call for bids: CallForBids ──▶ each live peer ──service──▶ ShardHost::bids
//!     │   (this node bids from its own CostModel)
//!     │ sched::auction: the shards are lots, the bid sheets make bidders ──▶ awards
//!     ├─ award here:    RunShard ─────────────────────────────────────────▶ exec::Worker
//!     └─ award to peer: remote::run_on ──service──▶ ShardHost ──RunShard──▶ its exec::Worker
//!                       (inputs fetched through transfer; heartbeats renew the lease)
//!   exec::Worker ── ShardExecutor::run (own thread) ──▶ ShardResult
//!     ▼ back to the Coordinator (a peer's output blobs fetched through transfer, verified)
//!   Coordinator: JobDriver::shard_done; a retryable failure goes back up for auction
//!     ▼ every shard of the stage in: JobDriver::finish (blocking pool)
//!     ├─ Finish::Next ──▶ the next stage: a new call for bids
//!     ├─ Finish::Done ──▶ the JobHandle holds the result: done
//!     └─ an error, or a failure that cannot be retried ──▶ the job fails
//! ```
//!
//! A node alone is a mesh of one: its coordinator sends shards to its own worker. Remote
//! workers join the same path.

mod clock;
pub mod discovery;
pub mod exec;
pub mod jobs;
pub mod net;
pub mod peers;
pub mod remote;
pub mod replica;
pub mod sched;
pub mod service;
pub mod tasks;
pub mod transfer;

pub use exec::{FailureKind, Finish, JobDriver, JobError, Plan, ShardError, ShardExecutor, Stage};
pub use exec::{Load, RunShard, Worker};
pub use jobs::{Coordinator, JobBoard, JobHandle};
pub use libp2p::{Multiaddr, PeerId};
pub use net::key::{KeyError, MeshId, SwarmKey};
pub use net::{NetEvent, NetworkConfig, NetworkError, NetworkHandle};
pub use peers::{Draining, PeerChange, PeerEntry, PeerView, Peers, SetCaps};
pub use remote::{MeshLink, ShardHost};
pub use replica::ReplicaConfig;
pub use tasks::Tasks;
