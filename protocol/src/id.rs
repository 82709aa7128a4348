//! Identities: content ids, cache keys, job ids.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Error parsing a hex identity.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdParseError {
    #[error("expected {expected} hex digits, got {got}")]
    Length { expected: usize, got: usize },
    #[error("not a hex digit: {0:?}")]
    Digit(char),
}

fn parse_hex<const N: usize>(s: &str) -> Result<[u8; N], IdParseError> {
    let s = s.trim();
    if s.len() != N * 2 {
        return Err(IdParseError::Length {
            expected: N * 2,
            got: s.len(),
        });
    }
    let mut out = [0u8; N];
    let bytes = s.as_bytes();
    for (i, byte) in out.iter_mut().enumerate() {
        let hi = hex_val(bytes[2 * i])?;
        let lo = hex_val(bytes[2 * i + 1])?;
        *byte = hi << 4 | lo;
    }
    Ok(out)
}

fn hex_val(c: u8) -> Result<u8, IdParseError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(IdParseError::Digit(c as char)),
    }
}

/// Serde for 32-byte ids: hex strings for people (JSON), raw bytes for the wire.
macro_rules! hex_serde {
    ($t:ident) => {
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.collect_str(self)
                } else {
                    self.0.serialize(s)
                }
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if d.is_human_readable() {
                    let s = String::deserialize(d)?;
                    s.parse().map_err(serde::de::Error::custom)
                } else {
                    <[u8; 32]>::deserialize(d).map($t)
                }
            }
        }
    };
}

hex_serde!(ContentId);
hex_serde!(CacheKey);

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for b in bytes {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

/// The blake3 hash of a piece of content: a media file, a chunk blob, an encoded segment.
/// Hex in JSON, 32 raw bytes in the binary codec.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentId([u8; 32]);

impl ContentId {
    /// Hash of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    /// From a finished hasher.
    pub fn from_hasher(h: &blake3::Hasher) -> Self {
        Self(*h.finalize().as_bytes())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// First 12 hex digits, for logs.
    pub fn short(&self) -> String {
        self.to_string()[..12].to_string()
    }
}

impl fmt::Display for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentId({})", self.short())
    }
}

impl FromStr for ContentId {
    type Err = IdParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_hex::<32>(s).map(Self)
    }
}

/// What a cache entry holds. Part of the key, so two kinds never collide.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CacheKind {
    /// Probe of a media file: streams, frame count, keyframes.
    Probe,
    /// Per-frame scene scores of one shard (a range of frames of one file).
    SceneShard,
    /// The whole scene list of one file.
    SceneList,
    /// The encoded segment of one transcode shard (a blob id), so a re-submitted job reuses
    /// the segments this node still holds.
    Segment,
    /// The beat grid of one file.
    BeatGrid,
    /// How the sampled frames of one file look (a montage's material analysis).
    FrameLooks,
    /// A finished file of a batch or proxy job (a blob id): asking again costs no encode.
    FileOutput,
}

impl CacheKind {
    /// Every kind (the `tag` match below fails to compile when one is added and not listed
    /// there; add it here too).
    pub const ALL: [CacheKind; 7] = [
        CacheKind::Probe,
        CacheKind::SceneShard,
        CacheKind::SceneList,
        CacheKind::Segment,
        CacheKind::BeatGrid,
        CacheKind::FrameLooks,
        CacheKind::FileOutput,
    ];

    /// Stable tag used in key derivation; never change an existing tag.
    pub fn tag(self) -> &'static str {
        match self {
            CacheKind::Probe => "probe",
            CacheKind::SceneShard => "scene-shard",
            CacheKind::SceneList => "scene-list",
            CacheKind::Segment => "segment",
            CacheKind::BeatGrid => "beat-grid",
            CacheKind::FrameLooks => "frame-looks",
            CacheKind::FileOutput => "file-output",
        }
    }
}

/// Key of an analysis entry:
/// `blake3("rendermesh-cache-key/1" ‖ len‖kind tag ‖ engine version (u32 LE) ‖ len‖canonical params ‖ input ContentId)`.
///
/// `params` must be canonical bytes (see [`crate::codec::canonical`]) of everything that
/// changes the result, so equal work has equal keys on every node.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    pub fn derive(kind: CacheKind, engine_version: u32, params: &[u8], input: &ContentId) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(b"rendermesh-cache-key/1");
        let tag = kind.tag().as_bytes();
        h.update(&(tag.len() as u64).to_le_bytes());
        h.update(tag);
        h.update(&engine_version.to_le_bytes());
        h.update(&(params.len() as u64).to_le_bytes());
        h.update(params);
        h.update(input.as_bytes());
        Self(*h.finalize().as_bytes())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey(")?;
        write_hex(f, &self.0[..6])?;
        write!(f, ")")
    }
}

impl FromStr for CacheKey {
    type Err = IdParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_hex::<32>(s).map(Self)
    }
}

/// A job's id: random, unique per submit, 16 hex digits. In JSON it is that hex string;
/// in the binary codec a u64.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(pub u64);

impl Serialize for JobId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            s.serialize_u64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for JobId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            u64::deserialize(d).map(JobId)
        }
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobId({self})")
    }
}

impl FromStr for JobId {
    type Err = IdParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_hex::<8>(s).map(|b| JobId(u64::from_be_bytes(b)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_id_hex_round_trip() {
        let id = ContentId::of(b"hello");
        let s = id.to_string();
        assert_eq!(s.len(), 64);
        assert_eq!(s, blake3::hash(b"hello").to_hex().as_str());
        assert_eq!(s.parse::<ContentId>().unwrap(), id);
        assert_eq!(id.short(), &s[..12]);
    }

    #[test]
    fn content_id_rejects_bad_hex() {
        assert_eq!(
            "abc".parse::<ContentId>(),
            Err(IdParseError::Length {
                expected: 64,
                got: 3
            })
        );
        let bad = "g".repeat(64);
        assert_eq!(bad.parse::<ContentId>(), Err(IdParseError::Digit('g')));
    }

    #[test]
    fn content_id_serde_round_trip() {
        let id = ContentId::of(b"x");
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<ContentId>(&json).unwrap(), id);
        let key = CacheKey::derive(CacheKind::Probe, 1, b"", &id);
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(serde_json::from_str::<CacheKey>(&json).unwrap(), key);
        assert_eq!(
            crate::codec::decode::<CacheKey>(&crate::codec::encode(&key).unwrap()).unwrap(),
            key
        );
        let bin = crate::codec::canonical(&id);
        assert_eq!(bin.len(), 32);
    }

    #[test]
    fn cache_key_depends_on_every_part() {
        let a = ContentId::of(b"a");
        let b = ContentId::of(b"b");
        let base = CacheKey::derive(CacheKind::Probe, 1, b"p", &a);
        assert_eq!(base, CacheKey::derive(CacheKind::Probe, 1, b"p", &a));
        assert_ne!(base, CacheKey::derive(CacheKind::SceneList, 1, b"p", &a));
        assert_ne!(base, CacheKey::derive(CacheKind::Probe, 2, b"p", &a));
        assert_ne!(base, CacheKey::derive(CacheKind::Probe, 1, b"q", &a));
        assert_ne!(base, CacheKey::derive(CacheKind::Probe, 1, b"p", &b));
        // length prefixes keep (tag, params) boundaries unambiguous
        assert_ne!(
            CacheKey::derive(CacheKind::Probe, 1, b"", &a),
            CacheKey::derive(CacheKind::Probe, 1, b"\0", &a)
        );
    }

    #[test]
    fn job_id_round_trip() {
        let id = JobId(0x0123_4567_89ab_cdef);
        assert_eq!(id.to_string(), "0123456789abcdef");
        assert_eq!("0123456789abcdef".parse::<JobId>().unwrap(), id);
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"0123456789abcdef\"");
        assert_eq!(
            serde_json::from_str::<JobId>("\"0123456789abcdef\"").unwrap(),
            id
        );
        assert_eq!(
            crate::codec::decode::<JobId>(&crate::codec::encode(&id).unwrap()).unwrap(),
            id
        );
    }
}
