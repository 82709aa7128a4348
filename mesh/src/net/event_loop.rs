//! The network task itself: [`build`] makes the libp2p [`Swarm`] (TCP + noise with the
//! keyed prologue + yamux; identify, ping, gossipsub, request-response, blob streams) and
//! the [`EventLoop`] that owns it.
//!
//! The event loop turns swarm events into [`NetEvent`]s and carries out [`Command`]s; the
//! only decisions it makes itself are transport-level: dialling static peers again (with
//! backoff) and disconnecting a peer that speaks another protocol version.

use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::core::transport::upgrade::Version;
use libp2p::core::ConnectedPoint;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{ConnectionId, NetworkBehaviour, SwarmEvent};
use libp2p::Transport;
use libp2p::{gossipsub, identify, identity, noise, ping, tcp, yamux, Multiaddr, PeerId, Swarm};
use rendermesh_protocol::{Request, Response};
use tokio::sync::{mpsc, oneshot, watch};

use super::handle::{
    Command, Inbound, NetEvent, NetworkConfig, NetworkError, NetworkHandle, RequestError,
    CAPS_TOPIC, CONNECT_TIMEOUT, MAX_GOSSIP_BYTES, PROTOCOL_VERSION, REQUEST_TIMEOUT,
};
use super::key::SwarmKey;
use super::repeats::Repeats;
use super::rpc::{self, MeshCodec};

const REDIAL_MIN: Duration = Duration::from_millis(300);
const REDIAL_MAX: Duration = Duration::from_secs(5);
/// At most one line a window about refused incoming connections; the rest are counted.
const REFUSED_WINDOW: Duration = Duration::from_secs(5);

#[derive(NetworkBehaviour)]
struct Behaviour {
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    gossipsub: gossipsub::Behaviour,
    rpc: request_response::Behaviour<MeshCodec>,
    streams: libp2p_stream::Behaviour,
}

type Pending = std::pin::Pin<
    Box<dyn std::future::Future<Output = (ResponseChannel<Response>, Response)> + Send>,
>;

struct StaticPeer {
    addr: Multiaddr,
    connected: Option<PeerId>,
    dialing: Option<ConnectionId>,
    next_try: Instant,
    backoff: Duration,
    /// A failure was logged at warn level since the last success.
    warned: bool,
}

/// Owns the swarm; run it with [`EventLoop::run`].
pub struct EventLoop {
    swarm: Swarm<Behaviour>,
    rx: mpsc::Receiver<Command>,
    listen_tx: watch::Sender<Vec<Multiaddr>>,
    topic: gossipsub::IdentTopic,
    statics: Vec<StaticPeer>,
    version: String,
    outbound: std::collections::HashMap<
        OutboundRequestId,
        (PeerId, oneshot::Sender<Result<Response, RequestError>>),
    >,
    /// Inbound requests waiting for the handler's answer.
    answering: futures::stream::FuturesUnordered<Pending>,
    /// Refused incoming connections (junk, or another mesh key): one line a window.
    refused: Repeats,
}

/// Build the swarm, start listening and subscribe to the caps topic; call inside a tokio
/// runtime. Then spawn [`EventLoop::run`].
pub fn build(
    cfg: NetworkConfig,
    identity: identity::Keypair,
    key: &SwarmKey,
) -> Result<(NetworkHandle, EventLoop), NetworkError> {
    build_versioned(cfg, identity, key, PROTOCOL_VERSION)
}

/// [`build`] speaking another protocol version (tests of the version check).
pub(crate) fn build_versioned(
    cfg: NetworkConfig,
    identity: identity::Keypair,
    key: &SwarmKey,
    version: &str,
) -> Result<(NetworkHandle, EventLoop), NetworkError> {
    let prologue = key.noise_prologue().to_vec();
    let build_err = |e: &dyn std::fmt::Display| NetworkError::Build(e.to_string());
    let swarm = libp2p::SwarmBuilder::with_existing_identity(identity)
        .with_tokio()
        .with_other_transport(|keypair| {
            let noise = noise::Config::new(keypair)?.with_prologue(prologue);
            let transport = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
                .upgrade(Version::V1Lazy)
                .authenticate(noise)
                .multiplex(yamux::Config::default())
                .timeout(CONNECT_TIMEOUT);
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(transport)
        })
        .map_err(|e| build_err(&e))?
        .with_behaviour(|keypair| {
            let gossip_cfg = gossipsub::ConfigBuilder::default()
                .heartbeat_interval(Duration::from_millis(500))
                .validation_mode(gossipsub::ValidationMode::Strict)
                .max_transmit_size(MAX_GOSSIP_BYTES)
                .build()
                .map_err(|e| e.to_string())?;
            let gossipsub = gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Signed(keypair.clone()),
                gossip_cfg,
            )
            .map_err(|e| e.to_string())?;
            let identify = identify::Behaviour::new(identify::Config::new(
                version.to_string(),
                keypair.public(),
            ));
            let ping = ping::Behaviour::new(ping::Config::new());
            let rpc = request_response::Behaviour::with_codec(
                MeshCodec,
                [(rpc::protocol(), ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(REQUEST_TIMEOUT),
            );
            Ok(Behaviour {
                identify,
                ping,
                gossipsub,
                rpc,
                streams: libp2p_stream::Behaviour::new(),
            })
        })
        .map_err(|e| build_err(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();
    let mut swarm = swarm;
    swarm
        .listen_on(cfg.listen.clone())
        .map_err(|e| NetworkError::Listen {
            addr: cfg.listen.to_string(),
            reason: e.to_string(),
        })?;
    let topic = gossipsub::IdentTopic::new(CAPS_TOPIC);
    swarm
        .behaviour_mut()
        .gossipsub
        .subscribe(&topic)
        .map_err(|e| NetworkError::Build(format!("gossipsub subscribe: {e}")))?;
    let peer_id = *swarm.local_peer_id();
    let streams = swarm.behaviour().streams.new_control();
    let (tx, rx) = mpsc::channel(256);
    let (listen_tx, listen_rx) = watch::channel(Vec::new());
    let now = Instant::now();
    let statics = cfg
        .static_peers
        .into_iter()
        .map(|addr| StaticPeer {
            addr,
            connected: None,
            dialing: None,
            next_try: now,
            backoff: REDIAL_MIN,
            warned: false,
        })
        .collect();
    Ok((
        NetworkHandle {
            tx,
            peer_id,
            listen: listen_rx,
            streams,
        },
        EventLoop {
            swarm,
            rx,
            listen_tx,
            topic,
            statics,
            version: version.to_string(),
            outbound: Default::default(),
            answering: Default::default(),
            refused: Repeats::new(REFUSED_WINDOW),
        },
    ))
}

impl EventLoop {
    /// Run until [`Command::Shutdown`] or every handle is dropped. Events go to `events`;
    /// requests from peers go to `inbound` (a full or closed handler answers "busy").
    pub async fn run(mut self, events: actix::Recipient<NetEvent>, inbound: mpsc::Sender<Inbound>) {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                ev = self.swarm.select_next_some() => self.on_swarm_event(ev, &events, &inbound),
                Some((channel, response)) = self.answering.next(), if !self.answering.is_empty() => {
                    if self.swarm.behaviour_mut().rpc.send_response(channel, response).is_err() {
                        tracing::debug!("response dropped: the requester went away");
                    }
                }
                cmd = self.rx.recv() => match cmd {
                    Some(Command::Publish(data)) => self.publish(data),
                    Some(Command::Dial { peer, addrs }) => self.dial(peer, addrs),
                    Some(Command::Request { peer, request, reply }) => {
                        let id = self.swarm.behaviour_mut().rpc.send_request(&peer, *request);
                        self.outbound.insert(id, (peer, reply));
                    }
                    Some(Command::Shutdown) | None => break,
                },
                _ = tick.tick() => {
                    self.redial();
                    if let Some(n) = self.refused.flush(Instant::now()) {
                        tracing::warn!(
                            "refused {n} more incoming connections in the last {} s (handshake failed)",
                            self.refused.window().as_secs()
                        );
                    }
                }
            }
        }
        tracing::info!("network stopped");
    }

    fn dial(&mut self, peer: PeerId, addrs: Vec<Multiaddr>) {
        if peer == *self.swarm.local_peer_id() || self.swarm.is_connected(&peer) {
            return;
        }
        let opts = DialOpts::peer_id(peer).addresses(addrs).build();
        if let Err(e) = self.swarm.dial(opts) {
            tracing::debug!(%peer, error = %e, "dial refused");
        }
    }

    fn on_rpc_event(
        &mut self,
        ev: request_response::Event<Request, Response>,
        inbound: &mpsc::Sender<Inbound>,
    ) {
        use request_response::{Event, Message};
        match ev {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                let (reply, rx) = oneshot::channel();
                let answer: Pending = match inbound.try_send(Inbound {
                    peer,
                    request,
                    reply,
                }) {
                    Ok(()) => Box::pin(async move {
                        let r = rx
                            .await
                            .unwrap_or_else(|_| Response::Error("request dropped".into()));
                        (channel, r)
                    }),
                    Err(_) => Box::pin(async move { (channel, Response::Error("busy".into())) }),
                };
                self.answering.push(answer);
            }
            Event::Message {
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some((_, reply)) = self.outbound.remove(&request_id) {
                    let _ = reply.send(Ok(response));
                }
            }
            Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some((_, reply)) = self.outbound.remove(&request_id) {
                    let _ = reply.send(Err(RequestError::Failed {
                        peer,
                        reason: error.to_string(),
                    }));
                }
            }
            Event::InboundFailure { peer, error, .. } => {
                tracing::warn!(%peer, %error, "bad request from peer dropped");
            }
            Event::ResponseSent { .. } => {}
        }
    }

    fn publish(&mut self, data: Vec<u8>) {
        let topic = self.topic.clone();
        match self.swarm.behaviour_mut().gossipsub.publish(topic, data) {
            Ok(_) => {}
            // alone in the mesh, or peers not subscribed yet: nothing to do
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {}
            Err(e) => tracing::debug!(error = %e, "gossip publish failed"),
        }
    }

    fn redial(&mut self) {
        let now = Instant::now();
        for i in 0..self.statics.len() {
            let sp = &self.statics[i];
            if sp.connected.is_some() || sp.dialing.is_some() || sp.next_try > now {
                continue;
            }
            let opts = DialOpts::unknown_peer_id().address(sp.addr.clone()).build();
            let id = opts.connection_id();
            let addr = sp.addr.clone();
            match self.swarm.dial(opts) {
                Ok(()) => {
                    tracing::debug!(%addr, "dialling static peer");
                    self.statics[i].dialing = Some(id);
                }
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "dial refused");
                    self.backoff(i, now);
                }
            }
        }
    }

    fn backoff(&mut self, i: usize, now: Instant) {
        let sp = &mut self.statics[i];
        sp.dialing = None;
        sp.next_try = now + sp.backoff;
        sp.backoff = (sp.backoff * 2).min(REDIAL_MAX);
    }

    fn on_swarm_event(
        &mut self,
        ev: SwarmEvent<BehaviourEvent>,
        events: &actix::Recipient<NetEvent>,
        inbound: &mpsc::Sender<Inbound>,
    ) {
        match ev {
            SwarmEvent::Behaviour(BehaviourEvent::Rpc(ev)) => self.on_rpc_event(ev, inbound),
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "mesh listening");
                self.listen_tx.send_modify(|v| v.push(address));
                events.do_send(NetEvent::Listening {
                    addrs: self.listen_tx.borrow().clone(),
                });
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen_tx.send_modify(|v| v.retain(|a| a != &address));
                events.do_send(NetEvent::Listening {
                    addrs: self.listen_tx.borrow().clone(),
                });
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                if let Some(sp) = self
                    .statics
                    .iter_mut()
                    .find(|s| s.dialing == Some(connection_id))
                {
                    sp.dialing = None;
                    sp.connected = Some(peer_id);
                    sp.backoff = REDIAL_MIN;
                    sp.warned = false;
                }
                if num_established.get() == 1 {
                    let addr = match endpoint {
                        ConnectedPoint::Dialer { address, .. } => address,
                        ConnectedPoint::Listener { send_back_addr, .. } => send_back_addr,
                    };
                    tracing::info!(peer = %peer_id, %addr, "peer connected");
                    events.do_send(NetEvent::Connected {
                        peer: peer_id,
                        addr,
                    });
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                cause,
                ..
            } => {
                if num_established == 0 {
                    let now = Instant::now();
                    for sp in self
                        .statics
                        .iter_mut()
                        .filter(|s| s.connected == Some(peer_id))
                    {
                        sp.connected = None;
                        sp.next_try = now + REDIAL_MIN;
                    }
                    tracing::info!(peer = %peer_id, cause = ?cause, "peer disconnected");
                    events.do_send(NetEvent::Disconnected { peer: peer_id });
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                error,
                ..
            } => {
                if let Some(i) = self
                    .statics
                    .iter()
                    .position(|s| s.dialing == Some(connection_id))
                {
                    let sp = &mut self.statics[i];
                    if sp.warned {
                        tracing::debug!(addr = %sp.addr, %error, "static peer unreachable");
                    } else {
                        sp.warned = true;
                        tracing::warn!(addr = %sp.addr, %error,
                            "static peer unreachable (down, or holding another mesh key?); retrying with backoff");
                    }
                    self.backoff(i, Instant::now());
                }
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => match self.refused.hit(Instant::now()) {
                Some(0) => tracing::warn!(from = %send_back_addr, %error,
                    "refusing incoming connection: handshake failed (wrong mesh key, or not a rendermesh node?)"),
                Some(n) => tracing::warn!(from = %send_back_addr, %error,
                    "refusing incoming connection: handshake failed (wrong mesh key, or not a rendermesh node?); {n} more refused since the last such line"),
                None => {
                    tracing::debug!(from = %send_back_addr, %error, "refusing incoming connection")
                }
            },
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                if info.protocol_version != self.version {
                    tracing::warn!(
                        "refusing peer {peer_id}: protocol version {:?}, this node speaks {:?}",
                        info.protocol_version,
                        self.version
                    );
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Subscribed {
                peer_id,
                topic,
            })) => {
                if topic == self.topic.hash() {
                    events.do_send(NetEvent::Subscribed { peer: peer_id });
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                message,
                ..
            })) => match message.source {
                Some(author) if message.topic == self.topic.hash() => {
                    events.do_send(NetEvent::Gossip {
                        author,
                        data: message.data,
                    });
                }
                _ => tracing::debug!("gossip without author or on another topic dropped"),
            },
            other => tracing::trace!(event = ?other, "swarm event"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use actix::prelude::{Actor, Context, Handler};
    use rendermesh_protocol::{Request, Response};

    use super::*;
    use crate::net::handle::parse_tcp_addr;

    #[derive(Default)]
    struct Collector(Arc<Mutex<Vec<NetEvent>>>);

    impl Actor for Collector {
        type Context = Context<Self>;
    }

    impl Handler<NetEvent> for Collector {
        type Result = ();
        fn handle(&mut self, ev: NetEvent, _: &mut Context<Self>) {
            self.0.lock().unwrap().push(ev);
        }
    }

    type Events = Arc<Mutex<Vec<NetEvent>>>;

    async fn node(version: &str, peers: Vec<Multiaddr>) -> (NetworkHandle, Events) {
        node_keyed(version, SwarmKey::from_bytes([7; 32]), peers).await
    }

    async fn node_keyed(
        version: &str,
        key: SwarmKey,
        peers: Vec<Multiaddr>,
    ) -> (NetworkHandle, Events) {
        let cfg = NetworkConfig {
            listen: parse_tcp_addr("/ip4/127.0.0.1/tcp/0").unwrap(),
            static_peers: peers,
        };
        let (handle, event_loop) =
            build_versioned(cfg, identity::Keypair::generate_ed25519(), &key, version).unwrap();
        let events = Events::default();
        let collector = Collector(events.clone()).start();
        // answers every request with the debug text of what it asked
        let (tx, mut rx) = mpsc::channel::<Inbound>(8);
        actix::spawn(async move {
            while let Some(inb) = rx.recv().await {
                let _ = inb
                    .reply
                    .send(Response::Error(format!("{:?}", inb.request)));
            }
        });
        actix::spawn(event_loop.run(collector.recipient(), tx));
        let mut rx = handle.watch_listen();
        let _ = tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|a| !a.is_empty())).await;
        (handle, events)
    }

    async fn wait(events: &Events, mut f: impl FnMut(&[NetEvent]) -> bool) -> bool {
        for _ in 0..100 {
            if f(&events.lock().unwrap()) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    #[actix_rt::test]
    async fn same_version_peers_connect_and_gossip() {
        let (x, x_events) = node(PROTOCOL_VERSION, vec![]).await;
        let (y, _y_events) = node(PROTOCOL_VERSION, x.listen_addrs()).await;
        let yid = y.peer_id();
        assert!(
            wait(&x_events, |ev| ev.iter().any(
                |e| matches!(e, NetEvent::Subscribed { peer } if *peer == yid)
            ))
            .await
        );
        y.publish(b"hello".to_vec());
        assert!(
            wait(&x_events, |ev| ev.iter().any(
                |e| matches!(e, NetEvent::Gossip { author, data } if *author == yid && data == b"hello")
            ))
            .await
        );
    }

    #[actix_rt::test]
    async fn requests_reach_the_handler_and_answers_come_back() {
        let (x, x_events) = node(PROTOCOL_VERSION, vec![]).await;
        let (y, _) = node(PROTOCOL_VERSION, x.listen_addrs()).await;
        let yid = y.peer_id();
        assert!(
            wait(&x_events, |ev| ev.iter().any(
                |e| matches!(e, NetEvent::Connected { peer, .. } if *peer == yid)
            ))
            .await
        );
        let answer = x
            .request(yid, Request::BucketKeys { bucket: 9 })
            .await
            .unwrap();
        assert_eq!(answer, Response::Error("BucketKeys { bucket: 9 }".into()));
        // a peer we are not connected to: a clear failure, not a hang
        let stranger = PeerId::random();
        let err = x.request(stranger, Request::Digest).await.unwrap_err();
        assert!(
            matches!(err, RequestError::Failed { peer, .. } if peer == stranger),
            "{err}"
        );
    }

    #[actix_rt::test]
    async fn a_peer_with_another_protocol_version_is_disconnected() {
        let (x, x_events) = node(PROTOCOL_VERSION, vec![]).await;
        let (y, _) = node("/rendermesh/999", x.listen_addrs()).await;
        let yid = y.peer_id();
        assert!(
            wait(&x_events, |ev| ev.iter().any(
                |e| matches!(e, NetEvent::Disconnected { peer } if *peer == yid)
            ))
            .await,
            "the other version was not disconnected"
        );
    }

    #[actix_rt::test]
    async fn a_peer_with_another_key_never_connects() {
        let (x, x_events) = node(PROTOCOL_VERSION, vec![]).await;
        let (y, y_events) = node_keyed(
            PROTOCOL_VERSION,
            SwarmKey::from_bytes([8; 32]),
            x.listen_addrs(),
        )
        .await;
        // a third node with x's key, dialled alongside: proves the dialling works
        let (z, _) = node(PROTOCOL_VERSION, x.listen_addrs()).await;
        let (yid, zid) = (y.peer_id(), z.peer_id());
        assert!(
            wait(&x_events, |ev| ev.iter().any(
                |e| matches!(e, NetEvent::Connected { peer, .. } if *peer == zid)
            ))
            .await,
            "the node with the same key did not connect"
        );
        // y keeps redialling x (a static peer) for the whole window
        tokio::time::sleep(Duration::from_secs(3)).await;
        let connected = |ev: &[NetEvent], who: PeerId| {
            ev.iter()
                .any(|e| matches!(e, NetEvent::Connected { peer, .. } if *peer == who))
        };
        assert!(
            !connected(&x_events.lock().unwrap(), yid),
            "x let in a node with another key"
        );
        assert!(
            !connected(&y_events.lock().unwrap(), x.peer_id()),
            "the node with another key got in"
        );
        assert!(
            matches!(
                x.request(yid, Request::Digest).await,
                Err(RequestError::Failed { .. })
            ),
            "a request crossed to the node with another key"
        );
    }
}
