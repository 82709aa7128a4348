//! The versioned binary codec: the only place that knows bincode.
//!
//! A frame is `b"RM" ‖ version (u16 LE) ‖ bincode(standard config)`. Decoding checks the
//! total size against [`MAX_MESSAGE_SIZE`] before anything else, then the magic and the
//! version, then decodes with the same limit and rejects trailing bytes. Nothing here panics
//! on input.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Version of the wire and on-disk encoding. Bump on any incompatible change.
pub const WIRE_VERSION: u16 = 5;
/// Hard cap on one encoded message (64 MiB).
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

const MAGIC: [u8; 2] = *b"RM";
const HEADER: usize = 4;

type Config = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<MAX_MESSAGE_SIZE>,
>;

fn config() -> Config {
    bincode::config::standard().with_limit::<MAX_MESSAGE_SIZE>()
}

/// Why a message could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("message too short ({0} bytes) for a header")]
    Truncated(usize),
    #[error("not a rendermesh message (bad magic)")]
    BadMagic,
    #[error("unsupported message version {got} (this build speaks {WIRE_VERSION})")]
    Version { got: u16 },
    #[error("malformed message: {0}")]
    Decode(String),
    #[error("malformed message: {0} trailing bytes")]
    Trailing(usize),
    #[error("cannot encode message: {0}")]
    Encode(String),
}

/// Encode `msg` with the versioned header.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, CodecError> {
    // measure first so a large message (a blob piece) is written once, without regrowing
    let mut size = bincode::enc::write::SizeWriter::default();
    bincode::serde::encode_into_writer(msg, &mut size, config())
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    if HEADER + size.bytes_written > MAX_MESSAGE_SIZE {
        return Err(CodecError::TooLarge {
            size: HEADER + size.bytes_written,
            limit: MAX_MESSAGE_SIZE,
        });
    }
    let mut out = Vec::with_capacity(HEADER + size.bytes_written);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&WIRE_VERSION.to_le_bytes());
    bincode::serde::encode_into_std_write(msg, &mut out, config())
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    if out.len() > MAX_MESSAGE_SIZE {
        return Err(CodecError::TooLarge {
            size: out.len(),
            limit: MAX_MESSAGE_SIZE,
        });
    }
    Ok(out)
}

/// The bytes [`encode`] writes for `Response::BlobPiece { total, data }` *before* `data`
/// (header, variant, `total`, the length of `data`): a sender writes these, then `data` from
/// its own buffer, and the frame is the same as `encode` of the whole message without the
/// piece being copied into it.
pub fn blob_piece_header(total: u64, len: usize) -> Result<Vec<u8>, CodecError> {
    let mut out = encode(&crate::Response::BlobPiece {
        total,
        data: Vec::new(),
    })?;
    // the empty piece ends in its length, 0, one byte; put the real length there
    out.pop();
    bincode::serde::encode_into_std_write(len as u64, &mut out, config())
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    Ok(out)
}

/// Longest [`blob_piece_header`]: magic and version, then three varints (at most 5 + 9 + 9).
pub const MAX_BLOB_PIECE_HEADER: usize = HEADER + 5 + 9 + 9;

/// If `prefix` (the first bytes of a message of `message_len` bytes) starts a
/// `Response::BlobPiece` whose data runs exactly to the end of the message: its `total` and
/// where the data starts. A reader then reads the data straight into the piece's own buffer.
/// `None` = anything else (decode it with [`decode`]).
pub fn blob_piece_start(prefix: &[u8], message_len: usize) -> Option<(u64, usize)> {
    if prefix.len() < HEADER || prefix[..2] != MAGIC {
        return None;
    }
    if u16::from_le_bytes([prefix[2], prefix[3]]) != WIRE_VERSION {
        return None;
    }
    let ((variant, total, len), used): ((u32, u64, u64), usize) =
        bincode::serde::decode_from_slice(&prefix[HEADER..], config()).ok()?;
    let start = HEADER + used;
    (variant == blob_piece_variant()? && message_len.checked_sub(start)? as u64 == len)
        .then_some((total, start))
}

/// The variant number of `Response::BlobPiece` on the wire.
fn blob_piece_variant() -> Option<u32> {
    static VARIANT: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();
    *VARIANT.get_or_init(|| {
        let bytes = encode(&crate::Response::BlobPiece {
            total: 0,
            data: Vec::new(),
        })
        .ok()?;
        let (variant, _): (u32, usize) =
            bincode::serde::decode_from_slice(&bytes[HEADER..], config()).ok()?;
        Some(variant)
    })
}

/// Decode a message written by [`encode`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    if bytes.len() > MAX_MESSAGE_SIZE {
        return Err(CodecError::TooLarge {
            size: bytes.len(),
            limit: MAX_MESSAGE_SIZE,
        });
    }
    if bytes.len() < HEADER {
        return Err(CodecError::Truncated(bytes.len()));
    }
    if bytes[..2] != MAGIC {
        return Err(CodecError::BadMagic);
    }
    let version = u16::from_le_bytes([bytes[2], bytes[3]]);
    if version != WIRE_VERSION {
        return Err(CodecError::Version { got: version });
    }
    let (value, used) = bincode::serde::decode_from_slice(&bytes[HEADER..], config())
        .map_err(|e| CodecError::Decode(e.to_string()))?;
    let rest = bytes.len() - HEADER - used;
    if rest != 0 {
        return Err(CodecError::Trailing(rest));
    }
    Ok(value)
}

/// Canonical bytes of a value (no header), for hashing into cache keys. Equal values give
/// equal bytes on every node and build.
pub fn canonical<T: Serialize>(value: &T) -> Vec<u8> {
    // Encoding into a Vec fails only if a Serialize impl fails, which none of ours does.
    bincode::serde::encode_to_vec(value, bincode::config::standard()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_piece_header_then_its_data_is_the_encoded_message() {
        for (total, len) in [(0u64, 0usize), (1, 1), (250, 250), (u64::MAX, 70_000)] {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let whole = encode(&crate::Response::BlobPiece {
                total,
                data: data.clone(),
            })
            .unwrap();
            let mut parts = blob_piece_header(total, len).unwrap();
            let start = parts.len();
            assert!(start <= MAX_BLOB_PIECE_HEADER);
            parts.extend_from_slice(&data);
            assert_eq!(parts, whole);
            let prefix = &whole[..whole.len().min(MAX_BLOB_PIECE_HEADER)];
            assert_eq!(blob_piece_start(prefix, whole.len()), Some((total, start)));
            // a length that does not end the message where the frame ends is not a piece
            assert_eq!(blob_piece_start(prefix, whole.len() + 1), None);
        }
        // other messages, garbage and short prefixes are not pieces
        let other = encode(&crate::Response::NoBlob).unwrap();
        assert_eq!(blob_piece_start(&other, other.len()), None);
        assert_eq!(blob_piece_start(b"RM", 2), None);
        assert_eq!(blob_piece_start(b"XX\x01\x00\x05\x00\x00", 7), None);
        assert_eq!(blob_piece_start(&[0xff; 32], 1 << 20), None);
    }
    use crate::*;

    fn sample() -> ShardSpec {
        ShardSpec {
            job: JobId(7),
            index: 3,
            task: ShardTask::Encode {
                range: FrameRange {
                    start_pts: 1024,
                    end_pts: Some(2048),
                    time_base: Rational::new(1, 15360),
                    first_frame: 60,
                    frames: 60,
                    fps: Rational::new(30, 1),
                    ts_offset: 30,
                },
                options: EncodeOptions::default(),
            },
            class: "encode/libx264@720p".into(),
            required: false,
            inputs: vec![ContentId::of(b"chunk")],
            cost: ShardCost {
                units: 60,
                work: 26.7,
                ram: video_ram_estimate(1280, 720),
                input_bytes: 1 << 20,
            },
        }
    }

    #[test]
    fn round_trip() {
        let spec = sample();
        let bytes = encode(&spec).unwrap();
        assert_eq!(&bytes[..2], b"RM");
        let back: ShardSpec = decode(&bytes).unwrap();
        assert_eq!(back, spec);
    }

    #[test]
    fn rejects_wrong_magic_version_and_trailing() {
        let mut bytes = encode(&sample()).unwrap();
        let mut bad = bytes.clone();
        bad[0] = b'X';
        assert!(matches!(
            decode::<ShardSpec>(&bad),
            Err(CodecError::BadMagic)
        ));
        let mut bad = bytes.clone();
        bad[2] = 99;
        assert!(matches!(
            decode::<ShardSpec>(&bad),
            Err(CodecError::Version { got: 99 })
        ));
        bytes.push(0);
        assert!(matches!(
            decode::<ShardSpec>(&bytes),
            Err(CodecError::Trailing(1))
        ));
        assert!(matches!(
            decode::<ShardSpec>(b"RM"),
            Err(CodecError::Truncated(2))
        ));
    }

    #[test]
    fn oversized_is_rejected_before_decoding() {
        let big = vec![0u8; MAX_MESSAGE_SIZE + 1];
        assert!(matches!(
            decode::<ShardSpec>(&big),
            Err(CodecError::TooLarge { .. })
        ));
    }

    /// Decode `buf` as `T`: an error, or a value that encodes back to exactly `buf` (a
    /// decoder that accepted bytes it would not have written is lenient in a way a peer
    /// could abuse). `true` for an error.
    fn refused_or_exact<T>(buf: &[u8]) -> bool
    where
        T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
    {
        match decode::<T>(buf) {
            Err(_) => true,
            Ok(v) => {
                assert_eq!(
                    encode(&v).unwrap(),
                    buf,
                    "accepted but not canonical: {v:?}"
                );
                false
            }
        }
    }

    #[test]
    fn garbage_is_refused_or_decodes_exactly() {
        // deterministic pseudo-random garbage behind a valid header
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut refused = 0;
        for len in 0..512 {
            let mut buf = b"RM\x01\x00".to_vec();
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf.push(x as u8);
            }
            refused += usize::from(refused_or_exact::<ShardSpec>(&buf));
            refused += usize::from(refused_or_exact::<JobStatus>(&buf));
            refused += usize::from(refused_or_exact::<ShardResult>(&buf));
        }
        // garbage is almost never a whole valid message
        assert!(refused >= 3 * 512 - 3, "only {refused} of 1536 refused");
    }

    #[test]
    fn huge_length_prefix_does_not_allocate() {
        // a Vec length claiming 2^60 elements must fail on the limit, not allocate
        let mut buf = b"RM\x01\x00".to_vec();
        buf.push(0xfd); // varint u64 marker
        buf.extend_from_slice(&(1u64 << 60).to_le_bytes());
        assert!(decode::<Vec<u8>>(&buf).is_err());
    }

    #[test]
    fn canonical_is_stable() {
        assert_eq!(canonical(&sample()), canonical(&sample()));
        assert_ne!(
            canonical(&ScoreParams {
                analysis_width: 1,
                ..Default::default()
            }),
            canonical(&ScoreParams::default())
        );
    }
}
