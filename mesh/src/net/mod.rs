//! The mesh's network: the network task, the only owner of the libp2p [`Swarm`](libp2p::Swarm),
//! with its handle, the request codec and the mesh key.
//!
//! ```text
//!   NetworkHandle ──Command (mpsc)──▶ EventLoop (tokio task, owns the Swarm)
//!                                        │ TCP + noise (keyed prologue) + yamux
//!                                        │ identify "/rendermesh/1", ping, gossipsub,
//!                                        │ request-response "/rendermesh/req/1",
//!                                        │ blob streams "/rendermesh/blob/1"
//!   Peers actor ◀──────── NetEvent ──────┤
//!   request handler ◀──── Inbound ───────┘ (answers through a oneshot)
//! ```
//!
//! - [`key`]: the pre-shared mesh key, its public [`MeshId`](key::MeshId), this node's identity.
//! - `handle`: [`NetworkHandle`], the [`Command`]s it sends, the [`NetEvent`]s and [`Inbound`]
//!   requests that come out, the protocol's constants and timeouts.
//! - `event_loop`: [`build`] and the [`EventLoop`] that owns the swarm.
//! - [`rpc`]: the request-response codec (length-prefixed codec frames).
//! - `repeats`: a warning that may repeat without bound, logged once a window with a count.
//!
//! What the requests mean is not decided here: the request handler ([`crate::service`])
//! answers them.

mod event_loop;
mod handle;
pub mod key;
mod repeats;
pub mod rpc;

pub use event_loop::{build, EventLoop};
pub use handle::{
    blob_stream_protocol, parse_tcp_addr, Command, Inbound, NetEvent, NetworkConfig, NetworkError,
    NetworkHandle, RequestError, CAPS_TOPIC, CONNECT_TIMEOUT, MAX_GOSSIP_BYTES, PROTOCOL_VERSION,
    REQUEST_TIMEOUT, SHORT_REQUEST_TIMEOUT,
};
