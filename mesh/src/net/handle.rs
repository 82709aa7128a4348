//! The handle side of the network task: what the rest of the node sees of it. The
//! [`NetworkHandle`] sends [`Command`]s to the [`EventLoop`](super::EventLoop); the loop
//! answers with [`NetEvent`]s (to the peers actor) and [`Inbound`] requests (to the request
//! handler). Also here: the protocol's constants and timeouts, and [`parse_tcp_addr`].
//!
//! ```text
//!   NetworkHandle ──Command (mpsc)──▶ EventLoop
//!     publish, dial, request (answer on a oneshot), shutdown,
//!     open_blob_stream / accept_blob_streams (the libp2p_stream control, no command)
//! ```

use std::time::Duration;

use libp2p::{Multiaddr, PeerId, StreamProtocol};
use rendermesh_protocol::wire::BLOB_STREAM_PROTOCOL;
use rendermesh_protocol::{Request, Response};
use tokio::sync::{mpsc, oneshot, watch};

/// Protocol version announced by identify; a peer announcing another one is disconnected.
pub const PROTOCOL_VERSION: &str = "/rendermesh/1";
/// Gossipsub topic of capability announcements and heartbeats.
pub const CAPS_TOPIC: &str = "rendermesh/caps/1";
/// Largest gossip message accepted or sent.
pub const MAX_GOSSIP_BYTES: usize = 64 * 1024;
/// A connection (TCP + noise (keyed prologue) + yamux) must be up within this time.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A shard award (`RunShard`) without an answer within this time fails. Very long, because an
/// award is a request answered when the shard is done, and a shard may run for hours: a
/// runner that dies closes its connection (its requests fail at once), one that freezes stops
/// its progress heartbeats and loses the award's lease (see `coordinator`).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Every other request without an answer within this time fails.
pub const SHORT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the network could not start.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("listen address {addr:?}: {reason}")]
    BadAddress { addr: String, reason: String },
    #[error("cannot build the libp2p swarm: {0}")]
    Build(String),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
}

/// Parse a TCP multiaddr (`/ip4/…/tcp/N` or `/ip6/…/tcp/N`); the keyed noise handshake is set up for TCP only.
pub fn parse_tcp_addr(text: &str) -> Result<Multiaddr, NetworkError> {
    use libp2p::multiaddr::Protocol;
    let bad = |reason: &str| NetworkError::BadAddress {
        addr: text.to_string(),
        reason: reason.to_string(),
    };
    let addr: Multiaddr = text.parse().map_err(|e| bad(&format!("{e}")))?;
    let mut it = addr.iter();
    match it.next() {
        Some(Protocol::Ip4(_))
        | Some(Protocol::Ip6(_))
        | Some(Protocol::Dns(_))
        | Some(Protocol::Dns4(_))
        | Some(Protocol::Dns6(_)) => {}
        _ => return Err(bad("must start with /ip4, /ip6 or /dns")),
    }
    match it.next() {
        Some(Protocol::Tcp(_)) => {}
        _ => {
            return Err(bad(
                "must be a TCP address (…/tcp/PORT); other transports bypass the mesh key",
            ))
        }
    }
    match it.next() {
        None | Some(Protocol::P2p(_)) => Ok(addr),
        Some(_) => Err(bad("nothing may follow /tcp/PORT except /p2p/PEER")),
    }
}

/// How the network starts.
#[derive(Clone, Debug)]
pub struct NetworkConfig {
    pub listen: Multiaddr,
    /// Dialled at start and again (with backoff) whenever not connected.
    pub static_peers: Vec<Multiaddr>,
}

/// What the network tells the peers actor.
#[derive(actix::Message, Debug, Clone)]
#[rtype(result = "()")]
pub enum NetEvent {
    /// First connection to `peer` is up.
    Connected { peer: PeerId, addr: Multiaddr },
    /// Last connection to `peer` closed.
    Disconnected { peer: PeerId },
    /// `peer` subscribed to the caps topic: a good moment to announce ourselves.
    Subscribed { peer: PeerId },
    /// A gossip message on the caps topic, authored (and signed) by `author`.
    Gossip { author: PeerId, data: Vec<u8> },
    /// Our listen addresses changed.
    Listening { addrs: Vec<Multiaddr> },
}

/// A request from a peer; answer it through `reply` (dropping it answers with an error).
#[derive(Debug)]
pub struct Inbound {
    pub peer: PeerId,
    pub request: Request,
    pub reply: oneshot::Sender<Response>,
}

/// Why a request to a peer failed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("network stopped")]
    Stopped,
    #[error("request to {peer} failed: {reason}")]
    Failed { peer: PeerId, reason: String },
}

/// Orders for the network task.
#[derive(Debug)]
pub enum Command {
    /// Publish on the caps topic.
    Publish(Vec<u8>),
    /// Dial a discovered peer at these addresses (no-op when already connected).
    Dial { peer: PeerId, addrs: Vec<Multiaddr> },
    /// Send a request; the answer (or the failure) comes back on `reply`.
    Request {
        peer: PeerId,
        request: Box<Request>,
        reply: oneshot::Sender<Result<Response, RequestError>>,
    },
    /// Stop the event loop.
    Shutdown,
}

/// A cheap, cloneable handle to the network task.
#[derive(Clone)]
pub struct NetworkHandle {
    pub(super) tx: mpsc::Sender<Command>,
    pub(super) peer_id: PeerId,
    pub(super) listen: watch::Receiver<Vec<Multiaddr>>,
    pub(super) streams: libp2p_stream::Control,
}

impl NetworkHandle {
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Current listen addresses.
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.listen.borrow().clone()
    }

    /// Watch the listen addresses.
    pub fn watch_listen(&self) -> watch::Receiver<Vec<Multiaddr>> {
        self.listen.clone()
    }

    /// Queue a publish; dropped (with a debug line) when the network is busy or gone.
    pub fn publish(&self, data: Vec<u8>) {
        if let Err(e) = self.tx.try_send(Command::Publish(data)) {
            tracing::debug!(error = %e, "gossip publish dropped");
        }
    }

    /// Dial a peer found by discovery; nothing happens when it is already connected.
    pub fn dial(&self, peer: PeerId, addrs: Vec<Multiaddr>) {
        if let Err(e) = self.tx.try_send(Command::Dial { peer, addrs }) {
            tracing::debug!(error = %e, "dial dropped");
        }
    }

    /// Send `request` to `peer` and wait for its answer: at most [`REQUEST_TIMEOUT`] for a
    /// shard award, [`SHORT_REQUEST_TIMEOUT`] for anything else.
    pub async fn request(&self, peer: PeerId, request: Request) -> Result<Response, RequestError> {
        let limit = match request {
            Request::RunShard { .. } => REQUEST_TIMEOUT,
            _ => SHORT_REQUEST_TIMEOUT,
        };
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Request {
                peer,
                request: Box::new(request),
                reply,
            })
            .await
            .map_err(|_| RequestError::Stopped)?;
        match tokio::time::timeout(limit, rx).await {
            Ok(answer) => answer.map_err(|_| RequestError::Stopped)?,
            Err(_) => Err(RequestError::Failed {
                peer,
                reason: format!("no answer within {} s", limit.as_secs()),
            }),
        }
    }

    pub async fn shutdown(&self) {
        let _ = self.tx.send(Command::Shutdown).await;
    }

    /// Open a blob stream ([`crate::transfer::blob_stream`]) to `peer`, dialling it when not connected.
    /// A peer that does not serve blob streams fails with `UnsupportedProtocol`.
    pub async fn open_blob_stream(
        &self,
        peer: PeerId,
    ) -> Result<libp2p::Stream, libp2p_stream::OpenStreamError> {
        self.streams
            .clone()
            .open_stream(peer, blob_stream_protocol())
            .await
    }

    /// The blob streams peers open to this node, for [`crate::transfer::blob_stream::serve`]; `None`
    /// when they are already being accepted. Until this is called, peers are told this node
    /// does not serve blob streams (and fetch from it by pieces).
    pub fn accept_blob_streams(&self) -> Option<libp2p_stream::IncomingStreams> {
        self.streams.clone().accept(blob_stream_protocol()).ok()
    }
}

/// The libp2p protocol of blob streams ([`crate::transfer::blob_stream`]).
pub fn blob_stream_protocol() -> StreamProtocol {
    StreamProtocol::new(BLOB_STREAM_PROTOCOL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_tcp_addr_accepts_tcp_only() {
        assert!(parse_tcp_addr("/ip4/127.0.0.1/tcp/7879").is_ok());
        assert!(parse_tcp_addr("/ip6/::1/tcp/0").is_ok());
        assert!(parse_tcp_addr("/ip4/127.0.0.1/udp/1/quic-v1").is_err());
        assert!(parse_tcp_addr("/ip4/127.0.0.1").is_err());
        assert!(parse_tcp_addr("127.0.0.1:7879").is_err());
    }
}
