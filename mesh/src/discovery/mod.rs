//! mDNS discovery: finds the nodes of this mesh on the local network and asks the network
//! task to dial them.
//!
//! ```text
//!   mdns-sd daemon (own thread, UDP 5353 multicast, selected interfaces only)
//!      │ ServiceEvent (flume)                      ▲ register / re-register (listen port)
//!      ▼                                           │
//!   discovery task (actix) ── parse_txt ─▶ decide ─┴─▶ NetworkHandle::dial(peer, /ip4/…/tcp/…)
//!      ▲
//!      └── NetworkHandle::watch_listen (the actual listen port; the task ends with the network)
//! ```
//!
//! Each node registers `_rendermesh._tcp.local.` with TXT properties `peer` (its peer id),
//! `mesh` (the public [`MeshId`], never the key), `proto` ([`PROTOCOL_VERSION`]) and `port`
//! (the TCP mesh port). A record is dialled only when its mesh id and protocol version equal
//! ours; a record of another mesh is ignored without any connection attempt. Dialling does
//! not trust the record: the keyed noise handshake (the mesh key and the peer id) still decides.
//!
//! Discovery speaks IPv4 only: it announces and dials IPv4 addresses, so the node should
//! listen on an `/ip4/…` address (the default `0.0.0.0` is fine). Interfaces: a list of names,
//! or every non-loopback interface that is up. mdns-sd would also use loopback: it is off
//! unless `lo` is named.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use mdns_sd::{
    DaemonEvent, IfKind, IfPredicate, ResolvedService, ServiceDaemon, ServiceEvent, ServiceInfo,
    TxtProperties,
};
use tokio::sync::watch;

use crate::net::key::MeshId;
use crate::net::{NetworkHandle, PROTOCOL_VERSION};
use crate::tasks::Tasks;

/// The DNS-SD service type every node registers and browses.
pub const SERVICE_TYPE: &str = "_rendermesh._tcp.local.";
/// TXT key: the node's libp2p peer id.
pub const TXT_PEER: &str = "peer";
/// TXT key: the public mesh id.
pub const TXT_MESH: &str = "mesh";
/// TXT key: the mesh protocol version.
pub const TXT_PROTO: &str = "proto";
/// TXT key: the TCP port of the mesh transport.
pub const TXT_PORT: &str = "port";

/// Known same-mesh peers are dialled again this often (a no-op when connected).
const REDIAL_EVERY: Duration = Duration::from_secs(10);
/// At most this many peers are remembered per set (log-once sets, known peers).
const MAX_REMEMBERED: usize = 1024;
/// The longest TXT value accepted (peer ids are about 52 characters).
const MAX_TXT_VALUE: usize = 128;
/// How long dropping discovery waits for the daemon to send its goodbyes.
const SHUTDOWN_WAIT: Duration = Duration::from_millis(500);

/// Where discovery runs.
#[derive(Clone, Debug, Default)]
pub struct DiscoveryConfig {
    /// Interface names; empty = every non-loopback interface that is up.
    pub interfaces: Vec<String>,
}

/// Why discovery could not start.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("cannot start the mDNS daemon: {0}")]
    Daemon(String),
}

/// What a node's TXT record says about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advert {
    pub peer: PeerId,
    pub mesh: String,
    pub proto: String,
    pub port: u16,
}

/// Why a TXT record is not a usable advert.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TxtError {
    #[error("TXT record has no {0:?} property")]
    Missing(&'static str),
    #[error("TXT property {0:?} is not UTF-8 text")]
    NotText(&'static str),
    #[error("TXT property {0:?} is longer than {MAX_TXT_VALUE} bytes")]
    TooLong(&'static str),
    #[error("TXT {TXT_PEER:?} {0:?} is not a peer id")]
    PeerId(String),
    #[error("TXT {TXT_PORT:?} {0:?} is not a TCP port (1-65535)")]
    Port(String),
}

/// The TXT properties this node announces.
pub fn txt_properties(peer: &PeerId, mesh: &MeshId, port: u16) -> Vec<(&'static str, String)> {
    vec![
        (TXT_PEER, peer.to_string()),
        (TXT_MESH, mesh.to_string()),
        (TXT_PROTO, PROTOCOL_VERSION.to_string()),
        (TXT_PORT, port.to_string()),
    ]
}

fn txt_value<'a>(props: &'a TxtProperties, key: &'static str) -> Result<&'a str, TxtError> {
    let value = props
        .get_property_val(key)
        .flatten()
        .ok_or(TxtError::Missing(key))?;
    if value.len() > MAX_TXT_VALUE {
        return Err(TxtError::TooLong(key));
    }
    std::str::from_utf8(value).map_err(|_| TxtError::NotText(key))
}

/// Read an advert from a TXT record received from the network.
pub fn parse_txt(props: &TxtProperties) -> Result<Advert, TxtError> {
    let peer_text = txt_value(props, TXT_PEER)?;
    let peer = peer_text
        .parse::<PeerId>()
        .map_err(|_| TxtError::PeerId(peer_text.to_string()))?;
    let mesh = txt_value(props, TXT_MESH)?.to_string();
    let proto = txt_value(props, TXT_PROTO)?.to_string();
    let port_text = txt_value(props, TXT_PORT)?;
    let port = port_text
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| TxtError::Port(port_text.to_string()))?;
    Ok(Advert {
        peer,
        mesh,
        proto,
        port,
    })
}

/// What to do with an advert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Same mesh, same protocol: dial it.
    Dial,
    /// Our own record.
    Ourselves,
    /// Another mesh: ignore it, never dial.
    OtherMesh,
    /// Our mesh, another protocol version: warn, do not dial.
    OtherVersion,
}

/// Decide about `advert`, seen by node `me` of mesh `mesh` speaking `version`.
pub fn decide(advert: &Advert, me: &PeerId, mesh: &str, version: &str) -> Decision {
    if advert.peer == *me {
        Decision::Ourselves
    } else if advert.mesh != mesh {
        Decision::OtherMesh
    } else if advert.proto != version {
        Decision::OtherVersion
    } else {
        Decision::Dial
    }
}

/// `/ip4/A/tcp/PORT` for each usable IPv4 address (IPv6 is not used by discovery).
pub fn dial_addrs(ips: impl IntoIterator<Item = IpAddr>, port: u16) -> Vec<Multiaddr> {
    let mut v4: Vec<Ipv4Addr> = ips
        .into_iter()
        .filter_map(|ip| match ip {
            IpAddr::V4(a) if !(a.is_unspecified() || a.is_multicast() || a.is_broadcast()) => {
                Some(a)
            }
            _ => None,
        })
        .collect();
    v4.sort();
    v4.dedup();
    v4.into_iter()
        .map(|a| {
            Multiaddr::empty()
                .with(Protocol::Ip4(a))
                .with(Protocol::Tcp(port))
        })
        .collect()
}

/// Is interface `name` used? `wanted` empty = every non-loopback interface.
pub fn interface_selected(wanted: &[String], name: &str, loopback: bool) -> bool {
    if wanted.is_empty() {
        !loopback
    } else {
        wanted.iter().any(|w| w == name)
    }
}

/// The TCP port of the first listen address that has one (not 0).
pub fn listen_port(addrs: &[Multiaddr]) -> Option<u16> {
    addrs.iter().find_map(|a| {
        a.iter().find_map(|p| match p {
            Protocol::Tcp(port) if port != 0 => Some(port),
            _ => None,
        })
    })
}

/// Start discovery for the node behind `network`; call inside the actix system. The task
/// announces this node once its listen port is known, dials the peers of its mesh and stops
/// (sending mDNS goodbyes) when the network stops or `tasks` is stopped.
pub fn start(
    cfg: DiscoveryConfig,
    network: NetworkHandle,
    mesh: MeshId,
    tasks: &Tasks,
) -> Result<(), DiscoveryError> {
    let daemon = ServiceDaemon::new().map_err(|e| DiscoveryError::Daemon(e.to_string()))?;
    // the daemon owns its thread from here: Discovery's Drop shuts it down on every path
    let d = Discovery {
        daemon,
        me_text: network.peer_id().to_string(),
        network,
        mesh,
        mesh_text: mesh.to_string(),
        registered_port: None,
        known: HashMap::new(),
        other_mesh: HashSet::new(),
        other_version: HashSet::new(),
        bad_records: HashSet::new(),
    };
    for name in &cfg.interfaces {
        if !std::path::Path::new("/sys/class/net").join(name).exists() {
            tracing::warn!(interface = %name, "mDNS interface does not exist (yet); discovery waits for it");
        }
    }
    // one selection, applied before anything is sent: IPv6 off (IPv4 only), and every
    // interface that is not selected (loopback unless named)
    let wanted = cfg.interfaces.clone();
    let off = IfPredicate::new(move |intf| {
        intf.ip().is_ipv6() || !interface_selected(&wanted, &intf.name, intf.is_loopback())
    });
    d.daemon
        .disable_interface(IfKind::Predicate(off))
        .map_err(|e| DiscoveryError::Daemon(format!("interface selection: {e}")))?;
    let monitor = d
        .daemon
        .monitor()
        .map_err(|e| DiscoveryError::Daemon(format!("monitor: {e}")))?;
    let events = d
        .daemon
        .browse(SERVICE_TYPE)
        .map_err(|e| DiscoveryError::Daemon(format!("browse: {e}")))?;
    let interfaces = if cfg.interfaces.is_empty() {
        "all non-loopback".to_string()
    } else {
        cfg.interfaces.join(",")
    };
    tracing::info!(%interfaces, service = SERVICE_TYPE, mesh_id = %d.mesh_text, "mDNS discovery on");
    let listen = d.network.watch_listen();
    // stopping `tasks` drops the task and with it the daemon: mDNS goodbyes go out
    tasks.spawn("mdns", d.run(listen, events, monitor));
    Ok(())
}

/// The discovery task's state; owns the mdns-sd daemon.
struct Discovery {
    daemon: ServiceDaemon,
    network: NetworkHandle,
    me_text: String,
    mesh: MeshId,
    mesh_text: String,
    registered_port: Option<u16>,
    /// Same-mesh peers by mDNS instance name, with their addresses.
    known: HashMap<String, (PeerId, Vec<Multiaddr>)>,
    /// Peers whose other-mesh record was logged.
    other_mesh: HashSet<PeerId>,
    /// Peers whose other-version record was warned about.
    other_version: HashSet<PeerId>,
    /// Instance names whose unusable record was logged.
    bad_records: HashSet<String>,
}

/// Insert into a log-once set that is cleared when it grows too large.
fn first_time<T: std::hash::Hash + Eq>(set: &mut HashSet<T>, item: T) -> bool {
    if set.len() >= MAX_REMEMBERED {
        set.clear();
    }
    set.insert(item)
}

impl Discovery {
    async fn run(
        mut self,
        mut listen: watch::Receiver<Vec<Multiaddr>>,
        events: mdns_sd::Receiver<ServiceEvent>,
        monitor: mdns_sd::Receiver<DaemonEvent>,
    ) {
        let mut redial = tokio::time::interval(REDIAL_EVERY);
        redial.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut monitor_open = true;
        let port = listen_port(&listen.borrow_and_update());
        self.announce(port);
        loop {
            tokio::select! {
                ev = events.recv_async() => match ev {
                    Ok(ev) => self.on_event(ev),
                    Err(_) => {
                        tracing::warn!("mDNS daemon stopped; discovery is off");
                        break;
                    }
                },
                ev = monitor.recv_async(), if monitor_open => match ev {
                    Ok(DaemonEvent::Error(e)) => tracing::warn!(error = %e, "mDNS"),
                    Ok(DaemonEvent::NameChange(c)) => {
                        tracing::info!(from = %c.original, to = %c.new_name, "mDNS name conflict resolved")
                    }
                    Ok(other) => tracing::trace!(event = ?other, "mDNS daemon"),
                    Err(_) => monitor_open = false,
                },
                changed = listen.changed() => {
                    if changed.is_err() {
                        tracing::debug!("network stopped; mDNS discovery stops");
                        break;
                    }
                    let port = listen_port(&listen.borrow_and_update());
                    self.announce(port);
                }
                _ = redial.tick() => {
                    for (peer, addrs) in self.known.values() {
                        self.network.dial(*peer, addrs.clone());
                    }
                }
            }
        }
    }

    /// Register (or re-register) this node once its listen port is known or changed.
    fn announce(&mut self, port: Option<u16>) {
        let Some(port) = port else { return };
        if self.registered_port == Some(port) {
            return;
        }
        let props = txt_properties(&self.network.peer_id(), &self.mesh, port);
        let host = format!("{}.local.", self.me_text);
        let info = match ServiceInfo::new(SERVICE_TYPE, &self.me_text, &host, (), port, &props[..])
        {
            Ok(info) => {
                let mut info = info.enable_addr_auto();
                // Probing guards against two hosts claiming one name (~0.8 s of silence at
                // start). Our instance and host names are peer ids, unique by construction, so
                // we announce at once.
                info.set_requires_probe(false);
                info
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot build this node's mDNS record; not announced");
                return;
            }
        };
        match self.daemon.register(info) {
            Ok(()) => {
                tracing::info!(port, "mDNS: announcing this node");
                self.registered_port = Some(port);
            }
            Err(e) => tracing::warn!(error = %e, "mDNS register failed; not announced"),
        }
    }

    fn on_event(&mut self, ev: ServiceEvent) {
        match ev {
            ServiceEvent::ServiceResolved(svc) => self.on_resolved(&svc),
            ServiceEvent::ServiceRemoved(_, fullname) => {
                if let Some((peer, _)) = self.known.remove(&fullname) {
                    tracing::debug!(%peer, "mDNS record withdrawn");
                }
            }
            other => tracing::trace!(event = ?other, "mDNS"),
        }
    }

    fn on_resolved(&mut self, svc: &ResolvedService) {
        let fullname = svc.get_fullname().to_string();
        let advert = match parse_txt(svc.get_properties()) {
            Ok(a) => a,
            Err(e) => {
                if first_time(&mut self.bad_records, fullname.clone()) {
                    tracing::debug!(record = %fullname, error = %e, "ignoring unusable mDNS record");
                }
                return;
            }
        };
        let peer = advert.peer;
        match decide(
            &advert,
            &self.network.peer_id(),
            &self.mesh_text,
            PROTOCOL_VERSION,
        ) {
            Decision::Ourselves => {}
            Decision::OtherMesh => {
                if first_time(&mut self.other_mesh, peer) {
                    tracing::info!(%peer, mesh_id = %advert.mesh,
                        "ignoring mDNS record of another mesh");
                }
            }
            Decision::OtherVersion => {
                if first_time(&mut self.other_version, peer) {
                    tracing::warn!(%peer, theirs = %advert.proto, ours = PROTOCOL_VERSION,
                        "not dialling a node of this mesh found by mDNS: it speaks another protocol version (upgrade one of them)");
                }
            }
            Decision::Dial => {
                let ips = svc.get_addresses_v4().into_iter().map(IpAddr::V4);
                let addrs = dial_addrs(ips, advert.port);
                if addrs.is_empty() {
                    tracing::debug!(%peer, "mDNS record without a usable IPv4 address");
                    return;
                }
                let new = !self.known.values().any(|(p, a)| *p == peer && *a == addrs);
                if new {
                    tracing::info!(%peer, addrs = ?addrs, "mDNS: found a node of this mesh; dialling");
                }
                if self.known.len() < MAX_REMEMBERED || self.known.contains_key(&fullname) {
                    self.known.insert(fullname, (peer, addrs.clone()));
                }
                self.network.dial(peer, addrs);
            }
        }
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        // sends goodbyes for our record, stops browsing and ends the daemon's thread
        match self.daemon.shutdown() {
            Ok(done) => {
                let _ = done.recv_timeout(SHUTDOWN_WAIT);
                tracing::debug!("mDNS daemon stopped");
            }
            Err(e) => tracing::debug!(error = %e, "mDNS daemon already stopped"),
        }
    }
}

#[cfg(test)]
mod tests {
    use mdns_sd::IntoTxtProperties;

    use super::*;
    use crate::net::key::SwarmKey;

    fn props(pairs: &[(&str, &str)]) -> TxtProperties {
        pairs.into_txt_properties()
    }

    fn mesh() -> MeshId {
        SwarmKey::from_bytes([3; 32]).mesh_id()
    }

    #[test]
    fn our_txt_record_parses_back() {
        let peer = PeerId::random();
        let ours = txt_properties(&peer, &mesh(), 7879);
        let parsed = parse_txt(&ours[..].into_txt_properties()).unwrap();
        assert_eq!(
            parsed,
            Advert {
                peer,
                mesh: mesh().to_string(),
                proto: PROTOCOL_VERSION.to_string(),
                port: 7879,
            }
        );
        // the key never appears, only the mesh id
        let key_hex: String = [3u8; 32].iter().map(|b| format!("{b:02x}")).collect();
        assert!(ours.iter().all(|(_, v)| !v.contains(&key_hex)));
    }

    #[test]
    fn bad_txt_records_are_rejected_not_panicked_on() {
        let peer = PeerId::random().to_string();
        let m = mesh().to_string();
        let ok = [
            (TXT_PEER, peer.as_str()),
            (TXT_MESH, m.as_str()),
            (TXT_PROTO, PROTOCOL_VERSION),
            (TXT_PORT, "7879"),
        ];
        assert!(parse_txt(&props(&ok)).is_ok());
        assert_eq!(
            parse_txt(&props(&ok[1..])),
            Err(TxtError::Missing(TXT_PEER))
        );
        let mut bad = ok;
        bad[0].1 = "not-a-peer";
        assert!(matches!(parse_txt(&props(&bad)), Err(TxtError::PeerId(_))));
        for port in ["0", "65536", "-1", "", "80x"] {
            let mut bad = ok;
            bad[3].1 = port;
            assert!(
                matches!(parse_txt(&props(&bad)), Err(TxtError::Port(_))),
                "{port:?}"
            );
        }
        let long = "x".repeat(MAX_TXT_VALUE + 1);
        let mut bad = ok;
        bad[1].1 = &long;
        assert_eq!(parse_txt(&props(&bad)), Err(TxtError::TooLong(TXT_MESH)));
        // raw wire bytes: a key without value, a value that is not UTF-8, junk lengths
        let wire: &[u8] = b"\x04peer\x07mesh=\xff\xfe\x00\x09proto=x\x00";
        assert!(parse_txt(&TxtProperties::from(wire)).is_err());
        assert!(parse_txt(&TxtProperties::from(&b"\xff"[..])).is_err());
        assert!(parse_txt(&TxtProperties::from(&b""[..])).is_err());
        let mut text = Vec::new();
        for (k, v) in [
            (TXT_PEER, peer.as_str()),
            (TXT_MESH, m.as_str()),
            (TXT_PROTO, PROTOCOL_VERSION),
        ] {
            let item = format!("{k}={v}");
            text.push(item.len() as u8);
            text.extend_from_slice(item.as_bytes());
        }
        text.extend_from_slice(b"\x07port=\xff\xff");
        assert_eq!(
            parse_txt(&TxtProperties::from(&text[..])),
            Err(TxtError::NotText(TXT_PORT))
        );
    }

    #[test]
    fn only_our_mesh_and_version_are_dialled() {
        let me = PeerId::random();
        let other = PeerId::random();
        let m = mesh().to_string();
        let advert = |peer, mesh: &str, proto: &str| Advert {
            peer,
            mesh: mesh.to_string(),
            proto: proto.to_string(),
            port: 7879,
        };
        let d = |a: &Advert| decide(a, &me, &m, PROTOCOL_VERSION);
        assert_eq!(d(&advert(other, &m, PROTOCOL_VERSION)), Decision::Dial);
        assert_eq!(d(&advert(me, &m, PROTOCOL_VERSION)), Decision::Ourselves);
        let theirs = SwarmKey::from_bytes([4; 32]).mesh_id().to_string();
        assert_eq!(
            d(&advert(other, &theirs, PROTOCOL_VERSION)),
            Decision::OtherMesh
        );
        // another mesh is ignored whatever version it speaks
        assert_eq!(
            d(&advert(other, &theirs, "/rendermesh/9")),
            Decision::OtherMesh
        );
        assert_eq!(
            d(&advert(other, &m, "/rendermesh/9")),
            Decision::OtherVersion
        );
    }

    #[test]
    fn dial_addresses_are_ipv4_tcp() {
        let ips: Vec<IpAddr> = [
            "10.0.0.2",
            "10.0.0.2",
            "0.0.0.0",
            "224.0.0.251",
            "255.255.255.255",
            "fe80::1",
            "2001:db8::1",
            "192.168.1.20",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let addrs: Vec<String> = dial_addrs(ips, 7879)
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(
            addrs,
            ["/ip4/10.0.0.2/tcp/7879", "/ip4/192.168.1.20/tcp/7879"]
        );
    }

    #[test]
    fn interface_selection() {
        assert!(interface_selected(&[], "eth0", false));
        assert!(!interface_selected(&[], "lo", true));
        let only_lo = vec!["lo".to_string()];
        assert!(interface_selected(&only_lo, "lo", true));
        assert!(!interface_selected(&only_lo, "eth0", false));
    }

    #[test]
    fn listen_port_skips_port_zero() {
        let a: Multiaddr = "/ip4/0.0.0.0/tcp/0".parse().unwrap();
        let b: Multiaddr = "/ip4/10.0.0.2/tcp/40123".parse().unwrap();
        assert_eq!(listen_port(std::slice::from_ref(&a)), None);
        assert_eq!(listen_port(&[a, b]), Some(40123));
        assert_eq!(listen_port(&[]), None);
    }
}
