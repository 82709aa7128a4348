//! Decode the frames of one [`FrameRange`] from a chunk blob.
//!
//! Frames are handed on with pts in the range's time base, still carrying the chunk's
//! `ts_offset` (so an encoder never sees negative timestamps). Frames outside the range (the undecodable leading frames of an open GOP at the chunk's
//! start, the next chunk's keyframe at its end) are decoded but dropped. The number of frames
//! handed on must equal the probe's count for the range, or the shard fails: a chunk is
//! either frame-exact or an error, never silently short.

use std::path::Path;

use ffmpeg_next as ff;
use rendermesh_protocol::FrameRange;

use ff::Rescale;

use super::probe::{open_input, read_packet};
use super::{ff_rational, MediaError};

/// Decode `range` from the chunk at `path`, calling `on_frame` for each frame in range, in
/// presentation order. Returns the number of frames passed on.
pub fn decode_range(
    path: &Path,
    range: &FrameRange,
    threads: usize,
    skip_loop_filter: bool,
    mut on_frame: impl FnMut(&ff::frame::Video) -> Result<(), MediaError>,
) -> Result<u64, MediaError> {
    let mut ictx = open_input(path)?;
    let stream =
        ictx.streams()
            .best(ff::media::Type::Video)
            .ok_or_else(|| MediaError::NoVideo {
                file: path.to_path_buf(),
            })?;
    let index = stream.index();
    let tb = stream.time_base();
    let range_tb = ff_rational(range.time_base);
    let (start, end) = (
        range.start_pts + range.ts_offset,
        range.end_pts.map(|e| e + range.ts_offset),
    );
    let mut ctx = ff::codec::context::Context::from_parameters(stream.parameters())
        .map_err(|e| MediaError::decode(path, e))?;
    ctx.set_threading(ff::codec::threading::Config {
        kind: ff::codec::threading::Type::Frame,
        count: threads,
        ..Default::default()
    });
    if skip_loop_filter {
        // SAFETY: the context is allocated and not yet opened; the field is a plain enum.
        unsafe { (*ctx.as_mut_ptr()).skip_loop_filter = ff::ffi::AVDiscard::AVDISCARD_ALL };
    }
    let mut decoder = ctx
        .decoder()
        .video()
        .map_err(|e| MediaError::decode(path, e))?;
    let in_range = |p: i64| p >= start && end.is_none_or(|e| p < e);
    let mut passed = 0u64;
    let mut last_pts = i64::MIN;
    let mut frame = ff::frame::Video::empty();
    let mut drain =
        |decoder: &mut ff::decoder::Video, passed: &mut u64| -> Result<(), MediaError> {
            while decoder.receive_frame(&mut frame).is_ok() {
                let Some(p) = frame.pts().or(frame.timestamp()) else {
                    continue;
                };
                let p = if tb == range_tb {
                    p
                } else {
                    p.rescale(tb, range_tb)
                };
                if !in_range(p) {
                    continue;
                }
                if p <= last_pts {
                    return Err(MediaError::decode(
                        path,
                        format!("frame pts {p} not after {last_pts}"),
                    ));
                }
                last_pts = p;
                frame.set_pts(Some(p));
                on_frame(&frame)?;
                *passed += 1;
            }
            Ok(())
        };
    let mut pkt = ff::Packet::empty();
    while read_packet(&mut ictx, &mut pkt, path)? {
        if pkt.stream() != index {
            continue;
        }
        if let Err(e) = decoder.send_packet(&pkt) {
            // Leading frames of an open GOP may not decode; they are outside the range.
            let owned = pkt
                .pts()
                .map(|p| {
                    if tb == range_tb {
                        p
                    } else {
                        p.rescale(tb, range_tb)
                    }
                })
                .is_some_and(in_range);
            if owned {
                return Err(MediaError::decode(path, e));
            }
        }
        drain(&mut decoder, &mut passed)?;
    }
    let _ = decoder.send_eof();
    drain(&mut decoder, &mut passed)?;
    if passed != range.frames {
        return Err(MediaError::decode(
            path,
            format!(
                "decoded {passed} frames of the range, expected {}",
                range.frames
            ),
        ));
    }
    crate::engine::count_decoded(passed);
    Ok(passed)
}
