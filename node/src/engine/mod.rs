//! The media engine: everything that touches ffmpeg.
//!
//! - [`probe`]: streams, frame count, keyframes by packet scan (no decode).
//! - [`chunk`]: cut a source at keyframes into chunk blobs by stream copy.
//! - [`decode`]: decode the frames of one [`FrameRange`](rendermesh_protocol::FrameRange) from a chunk.
//! - [`encode`]: encode a chunk's frames into an encoded segment blob.
//! - [`concat`]: join encoded segments and mux the source audio once ([`audio`]: copy or
//!   encode, [`audio_encode`]).
//! - [`pcm`]: decode a file's audio to mono float samples, streamed.
//! - [`conform`]: render a montage shot; [`assemble`]: join the shots and the song ([`song`]).
//!
//! Only primitives live here; what a job does with them lives in its kind
//! ([`crate::jobs`]).

pub mod assemble;
pub mod audio;
pub mod audio_encode;
pub mod chunk;
pub mod concat;
pub mod conform;
pub mod decode;
pub mod encode;
pub mod error;
pub mod pcm;
pub mod probe;
pub mod song;
pub mod testclip;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

pub use error::MediaError;

/// Version of the engine's results. Part of every cache key: bump it when a change makes old
/// cached results wrong.
pub const ENGINE_VERSION: u32 = 3;

/// Initialise ffmpeg once per process and keep its logging quiet.
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if let Err(e) = ffmpeg_next::init() {
            tracing::error!(error = %e, "ffmpeg failed to initialise");
        }
        // RENDERMESH_FFMPEG_LOG=warning (or info, debug) shows ffmpeg's own messages.
        let level = match std::env::var("RENDERMESH_FFMPEG_LOG").as_deref() {
            Ok("error") => ffmpeg_next::util::log::Level::Error,
            Ok("warning") => ffmpeg_next::util::log::Level::Warning,
            Ok("info") => ffmpeg_next::util::log::Level::Info,
            Ok("debug") => ffmpeg_next::util::log::Level::Debug,
            _ => ffmpeg_next::util::log::Level::Fatal,
        };
        ffmpeg_next::util::log::set_level(level);
    });
}

pub(crate) fn rational(r: ffmpeg_next::Rational) -> rendermesh_protocol::Rational {
    rendermesh_protocol::Rational::new(r.numerator(), r.denominator())
}

pub(crate) fn ff_rational(r: rendermesh_protocol::Rational) -> ffmpeg_next::Rational {
    ffmpeg_next::Rational::new(r.num, r.den)
}

static DECODED: AtomicU64 = AtomicU64::new(0);
static ENCODED: AtomicU64 = AtomicU64::new(0);

pub(crate) fn count_decoded(n: u64) {
    DECODED.fetch_add(n, Ordering::Relaxed);
}

pub(crate) fn count_encoded(n: u64) {
    ENCODED.fetch_add(n, Ordering::Relaxed);
}

/// Frames decoded and encoded by this process so far.
pub fn process_counters() -> (u64, u64) {
    (
        DECODED.load(Ordering::Relaxed),
        ENCODED.load(Ordering::Relaxed),
    )
}
