//! The peers actor and its table: who is in the mesh and what each can do.
//!
//! ```text
//!   EventLoop ──NetEvent──▶ Peers ──publish (NetworkHandle)──▶ EventLoop
//!   node: SetCaps ────────▶   │
//!   control API ◀── PeerView (shared snapshot of the table)
//! ```
//!
//! Publishes our [`PeerAnnounce`] at start, whenever a peer subscribes, on a caps change and
//! every [`HEARTBEAT`]. A peer enters the table with its first valid announcement, is
//! refreshed by each one, and leaves on disconnect or after [`EXPIRY`] without one.
//! Announcements are decoded with the size-limited codec; garbage is logged and dropped.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use libp2p::PeerId;
use rendermesh_protocol::{codec, Capabilities, PeerAnnounce};
use serde::{Deserialize, Serialize};

use crate::clock::now_ms;
use crate::exec::Load;
use crate::net::{NetEvent, NetworkHandle, MAX_GOSSIP_BYTES};

/// A peer entered or left the table (for the replicator and the scheduler).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerChange {
    Joined(PeerId),
    Left(PeerId),
}

/// How often we announce ourselves.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// A peer silent for this long is dropped.
pub const EXPIRY: Duration = Duration::from_secs(3);

/// One row of the peer table, as the control API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerEntry {
    pub peer_id: String,
    pub name: String,
    /// Address of the live connection, else the first address it announced.
    pub address: String,
    pub listen: Vec<String>,
    pub caps: Capabilities,
    pub slots: u32,
    /// Shards running at its last heartbeat.
    #[serde(default)]
    pub running: u32,
    /// Most memory one shard may use there; 0 = its free RAM.
    #[serde(default)]
    pub shard_ram_bytes: u64,
    pub last_seen_unix_ms: u64,
}

/// The table itself, driven by explicit timestamps (ms) so it can be tested without sleeping.
#[derive(Default, Debug)]
pub struct PeerTable {
    peers: BTreeMap<PeerId, PeerEntry>,
    /// Address of each live connection, by peer.
    connected: BTreeMap<PeerId, String>,
}

impl PeerTable {
    pub fn connected(&mut self, peer: PeerId, addr: String) {
        self.connected.insert(peer, addr);
    }

    pub fn is_connected(&self, peer: &PeerId) -> bool {
        self.connected.contains_key(peer)
    }

    /// The last connection closed: the peer leaves the table. Returns whether it was listed.
    pub fn disconnected(&mut self, peer: &PeerId) -> bool {
        self.connected.remove(peer);
        self.peers.remove(peer).is_some()
    }

    /// A valid announcement from `peer` at `now_ms`. Returns true for a new peer.
    pub fn announced(&mut self, peer: PeerId, a: PeerAnnounce, now_ms: u64) -> bool {
        let address = self
            .connected
            .get(&peer)
            .cloned()
            .or_else(|| a.listen.first().cloned())
            .unwrap_or_default();
        let entry = PeerEntry {
            peer_id: peer.to_string(),
            name: a.name,
            address,
            listen: a.listen,
            caps: a.caps,
            slots: a.slots,
            running: a.running,
            shard_ram_bytes: a.shard_ram_bytes,
            last_seen_unix_ms: now_ms,
        };
        self.peers.insert(peer, entry).is_none()
    }

    /// Drop peers not heard from for `expiry_ms`; returns the dropped ones.
    pub fn expire(&mut self, now_ms: u64, expiry_ms: u64) -> Vec<PeerId> {
        let gone: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, e)| now_ms.saturating_sub(e.last_seen_unix_ms) > expiry_ms)
            .map(|(p, _)| *p)
            .collect();
        for p in &gone {
            self.peers.remove(p);
        }
        gone
    }

    pub fn rows(&self) -> Vec<PeerEntry> {
        let mut v: Vec<PeerEntry> = self.peers.values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name).then(a.peer_id.cmp(&b.peer_id)));
        v
    }

    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

/// A read-only view of the peer table for other threads (the control API).
#[derive(Clone, Default)]
pub struct PeerView(Arc<Mutex<Vec<PeerEntry>>>);

impl PeerView {
    pub fn rows(&self) -> Vec<PeerEntry> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, rows: Vec<PeerEntry>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = rows;
    }
}

/// Replace our capabilities (e.g. when the encoder probe finishes); announced at once.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetCaps(pub Capabilities);

/// This node is shutting down: announce no free slots from now on.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Draining;

/// The peers actor.
pub struct Peers {
    network: NetworkHandle,
    table: PeerTable,
    view: PeerView,
    me: PeerAnnounce,
    load: Load,
    changes: Vec<tokio::sync::mpsc::UnboundedSender<PeerChange>>,
}

impl Peers {
    pub fn new(network: NetworkHandle, name: String, caps: Capabilities, slots: u32) -> Self {
        let listen = network
            .listen_addrs()
            .iter()
            .map(|a| a.to_string())
            .collect();
        Self {
            network,
            table: PeerTable::default(),
            view: PeerView::default(),
            me: PeerAnnounce {
                name,
                listen,
                caps,
                slots,
                running: 0,
                shard_ram_bytes: 0,
                sent_unix_ms: 0,
            },
            load: Load::default(),
            changes: Vec::new(),
        }
    }

    /// Announce this gauge's running shards in every heartbeat.
    pub fn with_load(mut self, load: Load) -> Self {
        self.load = load;
        self
    }

    /// Announce that one shard may use at most `bytes` of memory here (0 = no limit).
    pub fn with_shard_ram_limit(mut self, bytes: u64) -> Self {
        self.me.shard_ram_bytes = bytes;
        self
    }

    /// Tell `tx` whenever a peer joins or leaves.
    pub fn notify_changes(mut self, tx: tokio::sync::mpsc::UnboundedSender<PeerChange>) -> Self {
        self.changes.push(tx);
        self
    }

    fn changed(&mut self, c: PeerChange) {
        self.changes.retain(|tx| tx.send(c).is_ok());
    }

    pub fn view(&self) -> PeerView {
        self.view.clone()
    }

    fn announce(&mut self) {
        self.me.sent_unix_ms = now_ms();
        self.me.running = self.load.running();
        match codec::encode(&self.me) {
            Ok(bytes) if bytes.len() <= MAX_GOSSIP_BYTES => self.network.publish(bytes),
            Ok(bytes) => tracing::warn!(
                size = bytes.len(),
                "our announcement is too large to gossip"
            ),
            Err(e) => tracing::warn!(error = %e, "cannot encode our announcement"),
        }
    }

    fn publish_view(&self) {
        self.view.set(self.table.rows());
    }

    fn on_gossip(&mut self, author: PeerId, data: &[u8]) {
        if author == self.network.peer_id() {
            return;
        }
        if data.len() > MAX_GOSSIP_BYTES {
            tracing::warn!(peer = %author, size = data.len(), "oversized announcement dropped");
            return;
        }
        let decoded = codec::decode::<PeerAnnounce>(data)
            .map_err(|e| e.to_string())
            .and_then(|a| a.validate().map(|()| a));
        match decoded {
            Ok(a) => {
                let name = a.name.clone();
                // a peer we hear of through others: connect to it directly
                if !self.table.is_connected(&author) {
                    let addrs: Vec<libp2p::Multiaddr> =
                        a.listen.iter().filter_map(|l| l.parse().ok()).collect();
                    if !addrs.is_empty() {
                        self.network.dial(author, addrs);
                    }
                }
                if self.table.announced(author, a, now_ms()) {
                    tracing::info!(peer = %author, %name, "peer joined");
                    self.changed(PeerChange::Joined(author));
                }
                self.publish_view();
            }
            Err(e) => {
                tracing::warn!(peer = %author, error = %e, "malformed or absurd announcement dropped")
            }
        }
    }
}

impl Actor for Peers {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.announce();
        ctx.run_interval(HEARTBEAT, |act, _| {
            act.announce();
            for p in act.table.expire(now_ms(), EXPIRY.as_millis() as u64) {
                tracing::info!(peer = %p, "peer expired (no heartbeat)");
                act.changed(PeerChange::Left(p));
            }
            act.publish_view();
        });
    }
}

impl Handler<NetEvent> for Peers {
    type Result = ();

    fn handle(&mut self, ev: NetEvent, _ctx: &mut Context<Self>) {
        match ev {
            NetEvent::Connected { peer, addr } => self.table.connected(peer, addr.to_string()),
            NetEvent::Disconnected { peer } => {
                if self.table.disconnected(&peer) {
                    tracing::info!(%peer, "peer left");
                    self.changed(PeerChange::Left(peer));
                }
                self.publish_view();
            }
            NetEvent::Subscribed { .. } => self.announce(),
            NetEvent::Gossip { author, data } => self.on_gossip(author, &data),
            NetEvent::Listening { addrs } => {
                self.me.listen = addrs.iter().map(|a| a.to_string()).collect();
            }
        }
    }
}

impl Handler<Draining> for Peers {
    type Result = ();

    fn handle(&mut self, _: Draining, _ctx: &mut Context<Self>) {
        self.me.slots = 0;
        self.announce();
    }
}

impl Handler<SetCaps> for Peers {
    type Result = ();

    fn handle(&mut self, msg: SetCaps, _ctx: &mut Context<Self>) {
        self.me.caps = msg.0;
        if let Ok(bytes) = codec::encode(&self.me) {
            tracing::info!(
                bytes = bytes.len(),
                encoders = self.me.caps.encoders.len(),
                "capabilities changed; announcing"
            );
        }
        self.announce();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rendermesh_protocol::CAPS_VERSION;

    fn caps(host: &str) -> Capabilities {
        Capabilities {
            version: CAPS_VERSION,
            models: Vec::new(),
            hostname: host.into(),
            arch: "x86_64".into(),
            os: "linux".into(),
            cpu_model: "cpu".into(),
            cores: 2,
            threads: 4,
            ram_total_bytes: 1 << 30,
            ram_available_bytes: 1 << 29,
            gpus: vec![],
            encoders: vec![],
            scene_fps_720p: 0.0,
            scene_fps_1080p: 0.0,
            force_cpu: false,
            speeds: Default::default(),
            lacks: Default::default(),
            binary_version: "0".into(),
            fingerprint: String::new(),
            calibrated_unix_ms: 0,
        }
    }

    fn ann(name: &str) -> PeerAnnounce {
        PeerAnnounce {
            name: name.into(),
            listen: vec!["/ip4/127.0.0.1/tcp/1".into()],
            caps: caps(name),
            slots: 2,
            running: 1,
            shard_ram_bytes: 0,
            sent_unix_ms: 0,
        }
    }

    #[test]
    fn heartbeats_keep_peers_and_silence_expires_them() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut t = PeerTable::default();
        t.connected(a, "/ip4/127.0.0.1/tcp/9".into());
        assert!(t.announced(a, ann("a"), 1_000));
        assert!(t.announced(b, ann("b"), 1_000));
        assert!(!t.announced(a, ann("a"), 2_000));
        assert_eq!(t.rows()[0].address, "/ip4/127.0.0.1/tcp/9");
        assert_eq!(t.rows()[1].address, "/ip4/127.0.0.1/tcp/1");
        // exactly at the limit: still there
        assert!(t.expire(4_000, 3_000).is_empty());
        // b last seen at 1000: gone after 4001; a refreshed at 2000 stays
        assert_eq!(t.expire(4_001, 3_000), vec![b]);
        assert_eq!(t.len(), 1);
        assert!(!t.announced(a, ann("a"), 4_500));
        assert!(t.expire(7_000, 3_000).is_empty());
        assert_eq!(t.expire(7_501, 3_000), vec![a]);
        assert!(t.is_empty());
        // a clock going backwards never expires anyone
        assert!(t.announced(b, ann("b"), 10_000));
        assert!(t.expire(5_000, 3_000).is_empty());
    }

    #[test]
    fn disconnect_drops_at_once() {
        let a = PeerId::random();
        let mut t = PeerTable::default();
        t.connected(a, "x".into());
        assert!(!t.disconnected(&PeerId::random()));
        t.announced(a, ann("a"), 1);
        assert!(t.disconnected(&a));
        assert!(t.is_empty());
    }
}
