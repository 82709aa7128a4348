//! The actors that run jobs, independent of what a shard does.
//!
//! ```text
//!   JobBoard ──start──▶ Coordinator (one per job) ──RunShard──▶ Worker (slots = cores)
//!      ▲                     │  plan/finish on the blocking pool      │ ShardExecutor::run
//!      └──── JobStatus ◀─────┘◀──────────── ShardResult ─────────────┘ on the blocking pool
//! ```
//!
//! - [`executor`]: the [`ShardExecutor`] and [`JobDriver`] traits the media engine implements.
//! - [`worker`]: the [`Worker`] actor: runs shards, at most `slots` at a time.
//! - [`coordinator`]: the [`Coordinator`] actor: plans a job, hands out shards, retries, finishes.
//! - [`auction`]: the contract-net auction as pure logic (lots, bids, awards), simulated at scale.
//! - [`bidder`]: this node's cost model: its bids for shards, declines, corrections from observed runs.
//! - [`board`]: the [`JobBoard`]: the jobs of this node, their status and results.
//!
//! The mesh itself:
//!
//! ```text
//!   EventLoop (tokio task, owns the libp2p Swarm) ──NetEvent──▶ Peers (actor: peer table)
//!          ▲                                                      │
//!          └──────────── NetworkHandle (publish, shutdown) ◀──────┘
//! ```
//!
//! - [`key`]: the pre-shared mesh key, its public [`MeshId`], this node's identity.
//! - [`network`]: the swarm: TCP + noise (its prologue keyed by the mesh key) + yamux, identify, ping, gossipsub.
//! - [`peers`]: the [`Peers`] actor: capability gossip, heartbeats, the peer table.
//! - [`transfer`]: blobs by [`ContentId`](rendermesh_protocol::ContentId) between nodes: serve pieces, fetch pipelined, resume, verify.
//! - [`discovery`]: mDNS on the local network: announces this node, dials the nodes of its mesh.
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
