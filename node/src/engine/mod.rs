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
pub mod hwframes;
pub mod pcm;
pub mod probe;
pub mod song;
pub mod source;
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

/// The next packet of `ictx` into `pkt`, reusing it: what `pkt` held is released first.
/// `av_read_frame` does not release it, so a packet reused in a read loop without this
/// leaked every buffer it ever held (hundreds of MB a job in a long-running node).
pub(crate) fn next_packet(
    pkt: &mut ffmpeg_next::Packet,
    ictx: &mut ffmpeg_next::format::context::Input,
) -> Result<(), ffmpeg_next::Error> {
    // SAFETY: `pkt` owns a valid AVPacket; unref frees its buffer and side data and resets
    // it to blank, the state av_read_frame expects.
    use ffmpeg_next::packet::Mut;
    unsafe { ffmpeg_next::ffi::av_packet_unref(pkt.as_mut_ptr()) };
    pkt.read(ictx)
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

#[cfg(test)]
mod tests {
    use super::*;
    use ffmpeg_next::ffi::{av_buffer_get_ref_count, av_buffer_ref, av_buffer_unref};
    use ffmpeg_next::packet::Ref;

    /// A packet reused in a read loop lets go of the buffer it held: without that, every
    /// packet a node ever read stayed in its memory.
    #[test]
    fn a_reused_packet_releases_the_buffer_it_held() {
        init();
        let dir = tempfile::tempdir().expect("tempdir");
        let (clip, _) = testclip::test_clip(dir.path(), 320, 180, 2).expect("clip");
        let mut ictx = ffmpeg_next::format::input(&clip).expect("open");
        let mut pkt = ffmpeg_next::Packet::empty();
        next_packet(&mut pkt, &mut ictx).expect("a packet");
        // SAFETY: the packet was just read: its buffer is a valid reference-counted buffer.
        let mut held = unsafe { av_buffer_ref((*pkt.as_ptr()).buf) };
        assert!(!held.is_null());
        assert_eq!(unsafe { av_buffer_get_ref_count(held) }, 2);
        next_packet(&mut pkt, &mut ictx).expect("a second packet");
        let left = unsafe { av_buffer_get_ref_count(held) };
        // SAFETY: `held` is our own reference, released once.
        unsafe { av_buffer_unref(&mut held) };
        assert_eq!(left, 1, "the packet kept the buffer of the one before");
    }
}
