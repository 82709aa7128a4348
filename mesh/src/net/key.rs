//! The mesh's pre-shared key (it keys the noise handshake of every connection) and this node's persistent identity.
//!
//! The key file uses the text form other pnet implementations read and write:
//!
//! ```text
//! /key/swarm/psk/1.0.0/
//! /base16/
//! <64 hex digits>
//! ```
//!
//! Only nodes holding the same key can complete a connection. The [`MeshId`] is a short
//! blake3 hash of the key: safe to log and to show, it never reveals the key.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

const HEADER: &str = "/key/swarm/psk/1.0.0/";
const ENCODING: &str = "/base16/";
/// blake3 `derive_key` context of the noise prologue; a new version of the transport changes it.
pub const PROLOGUE_CONTEXT: &str = "rendermesh 2026-11-22 mesh key noise prologue v1";

/// Why a key (or identity) file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not a swarm key: first line must be {HEADER:?}")]
    Header,
    #[error("unsupported key encoding {0:?} (only /base16/ is supported)")]
    Encoding(String),
    #[error("key must be 64 hex digits (32 bytes), got {0} characters")]
    Length(usize),
    #[error("key has a non-hex character at position {0}")]
    Hex(usize),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a valid node identity: {reason}")]
    Identity { path: PathBuf, reason: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A 32-byte pre-shared key. `Debug` hides the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SwarmKey([u8; 32]);

impl fmt::Debug for SwarmKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SwarmKey(mesh {})", self.mesh_id())
    }
}

/// Short public name of a mesh: the first 8 bytes of blake3("rendermesh mesh id" ‖ key), hex.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MeshId([u8; 8]);

impl fmt::Display for MeshId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl SwarmKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn bytes(&self) -> [u8; 32] {
        self.0
    }

    /// A fresh random key.
    pub fn generate() -> Result<Self, KeyError> {
        Ok(Self(random_bytes()?))
    }

    /// The noise prologue of this mesh's connections: `blake3::derive_key(PROLOGUE_CONTEXT,
    /// key)`. Both sides mix it into the handshake hash; a peer with another key fails the
    /// handshake, and the key itself never crosses the wire.
    pub fn noise_prologue(&self) -> [u8; 32] {
        blake3::derive_key(PROLOGUE_CONTEXT, &self.0)
    }

    pub fn mesh_id(&self) -> MeshId {
        let mut h = blake3::Hasher::new();
        h.update(b"rendermesh mesh id\0");
        h.update(&self.0);
        let mut id = [0u8; 8];
        id.copy_from_slice(&h.finalize().as_bytes()[..8]);
        MeshId(id)
    }

    /// The pnet text form, ending in a newline.
    pub fn to_text(&self) -> String {
        let mut s = format!("{HEADER}\n{ENCODING}\n");
        for b in self.0 {
            s.push_str(&format!("{b:02x}"));
        }
        s.push('\n');
        s
    }

    /// Parse the pnet text form (surrounding whitespace and `\r` tolerated).
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        if lines.next() != Some(HEADER) {
            return Err(KeyError::Header);
        }
        match lines.next() {
            Some(ENCODING) => {}
            other => return Err(KeyError::Encoding(other.unwrap_or("").to_string())),
        }
        let hex = lines.next().unwrap_or("");
        if hex.len() != 64 {
            return Err(KeyError::Length(hex.len()));
        }
        let mut out = [0u8; 32];
        let digits = hex.as_bytes();
        for (i, byte) in out.iter_mut().enumerate() {
            let hi = hex_val(digits[2 * i]).ok_or(KeyError::Hex(2 * i))?;
            let lo = hex_val(digits[2 * i + 1]).ok_or(KeyError::Hex(2 * i + 1))?;
            *byte = (hi << 4) | lo;
        }
        Ok(Self(out))
    }

    /// Read the key file at `path`.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path).map_err(io_err(path))?;
        Self::parse(&text)
    }

    /// Read `path`, or create it with a fresh key (mode 0600) when it does not exist.
    /// Returns the key and whether it was created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), KeyError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok((Self::parse(&text)?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate()?;
                write_private(path, key.to_text().as_bytes())?;
                Ok((key, true))
            }
            Err(e) => Err(io_err(path)(e)),
        }
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn random_bytes() -> Result<[u8; 32], KeyError> {
    let path = Path::new("/dev/urandom");
    let mut out = [0u8; 32];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut out))
        .map_err(io_err(path))?;
    Ok(out)
}

/// Write a new file readable only by its owner (0600); refuses to overwrite.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))?;
    f.write_all(bytes).map_err(io_err(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io_err(path))
}

/// This node's libp2p identity (ed25519), kept in `path` (32 secret bytes, mode 0600) so a
/// restarted node keeps its peer id.
pub fn load_or_create_identity(path: &Path) -> Result<libp2p::identity::Keypair, KeyError> {
    let bad = |reason: String| KeyError::Identity {
        path: path.to_path_buf(),
        reason,
    };
    match std::fs::read(path) {
        Ok(mut bytes) => {
            if bytes.len() != 32 {
                return Err(bad(format!("{} bytes instead of 32", bytes.len())));
            }
            libp2p::identity::Keypair::ed25519_from_bytes(&mut bytes)
                .map_err(|e| bad(e.to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut secret = random_bytes()?;
            write_private(path, &secret)?;
            libp2p::identity::Keypair::ed25519_from_bytes(&mut secret)
                .map_err(|e| bad(e.to_string()))
        }
        Err(e) => Err(io_err(path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_noise_prologue_is_derived_per_key_and_is_not_the_key() {
        let a = SwarmKey::from_bytes([1; 32]);
        let b = SwarmKey::from_bytes([2; 32]);
        assert_eq!(a.noise_prologue(), a.clone().noise_prologue());
        assert_ne!(a.noise_prologue(), b.noise_prologue());
        assert_ne!(a.noise_prologue(), a.bytes());
        assert_eq!(
            a.noise_prologue(),
            blake3::derive_key(PROLOGUE_CONTEXT, &[1; 32])
        );
    }

    const GOOD: &str = "/key/swarm/psk/1.0.0/\n/base16/\n\
        000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1F\n";

    #[test]
    fn parses_good_key_and_round_trips() {
        let k = SwarmKey::parse(GOOD).unwrap();
        let mut want = [0u8; 32];
        for (i, b) in want.iter_mut().enumerate() {
            *b = i as u8;
        }
        assert_eq!(k.bytes(), want);
        assert_eq!(SwarmKey::parse(&k.to_text()).unwrap(), k);
        // CRLF and trailing blank lines are fine
        assert_eq!(SwarmKey::parse(&GOOD.replace('\n', "\r\n")).unwrap(), k);
    }

    #[test]
    fn rejects_wrong_header_bad_hex_and_short_keys() {
        let wrong = GOOD.replace("psk/1.0.0", "psk/2.0.0");
        assert!(matches!(SwarmKey::parse(&wrong), Err(KeyError::Header)));
        let b64 = GOOD.replace("/base16/", "/base64/");
        assert!(matches!(SwarmKey::parse(&b64), Err(KeyError::Encoding(_))));
        let bad_hex = GOOD.replace("0a0b", "0g0b");
        assert!(matches!(SwarmKey::parse(&bad_hex), Err(KeyError::Hex(21))));
        let short = GOOD.replace("1e1F", "");
        assert!(matches!(SwarmKey::parse(&short), Err(KeyError::Length(60))));
        assert!(matches!(
            SwarmKey::parse("/key/swarm/psk/1.0.0/\n/base16/\n"),
            Err(KeyError::Length(0))
        ));
        assert!(matches!(SwarmKey::parse(""), Err(KeyError::Header)));
    }

    #[test]
    fn mesh_id_is_short_stable_and_not_the_key() {
        let k = SwarmKey::parse(GOOD).unwrap();
        let id = k.mesh_id().to_string();
        assert_eq!(id.len(), 16);
        assert_eq!(id, k.mesh_id().to_string());
        assert!(!k.to_text().contains(&id));
        assert_ne!(SwarmKey::from_bytes([9; 32]).mesh_id(), k.mesh_id());
        assert!(!format!("{k:?}").contains("0102"));
    }

    #[test]
    fn creates_key_file_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/swarm.key");
        let (a, created) = SwarmKey::load_or_create(&path).unwrap();
        assert!(created);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (b, created) = SwarmKey::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(a, b);
        let id1 = load_or_create_identity(&dir.path().join("peer.key")).unwrap();
        let id2 = load_or_create_identity(&dir.path().join("peer.key")).unwrap();
        assert_eq!(id1.public().to_peer_id(), id2.public().to_peer_id());
    }
}
