//! A small generated clip for test encodes and calibration: deterministic moving content,
//! H.264 in NUT.

use std::path::{Path, PathBuf};

use ffmpeg_next as ff;
use rendermesh_mesh::exec::ShardCtl;
use rendermesh_protocol::{FrameRange, Rational};

use super::MediaError;

/// A small generated clip (moving gradient and blocks), H.264 in NUT, and the range of all
/// its frames.
pub fn test_clip(
    dir: &Path,
    width: u32,
    height: u32,
    frames: u32,
) -> Result<(PathBuf, FrameRange), MediaError> {
    test_clip_until(dir, width, height, frames, &ShardCtl::detached())
}

/// [`test_clip`] that stops (and removes what it wrote) once `ctl` is cancelled.
pub fn test_clip_until(
    dir: &Path,
    width: u32,
    height: u32,
    frames: u32,
    ctl: &ShardCtl<'_>,
) -> Result<(PathBuf, FrameRange), MediaError> {
    super::init();
    let path = dir.join(format!(
        "rendermesh-testclip-{width}x{height}-{frames}-{}.nut",
        std::process::id()
    ));
    let werr = |e: ff::Error| MediaError::write(&path, e);
    let codec = ff::encoder::find_by_name("libx264").ok_or_else(|| MediaError::Encoder {
        encoder: "libx264".into(),
        cause: "not in this FFmpeg build".into(),
    })?;
    let mut octx = ff::format::output_as(&path, "nut").map_err(werr)?;
    let mut ctx = ff::codec::context::Context::new_with_codec(codec);
    ctx.set_flags(ff::codec::Flags::GLOBAL_HEADER);
    let mut enc = ctx.encoder().video().map_err(werr)?;
    let tb = ff::Rational::new(1, 25);
    enc.set_width(width);
    enc.set_height(height);
    enc.set_format(ff::format::Pixel::YUV420P);
    enc.set_time_base(tb);
    enc.set_frame_rate(Some(ff::Rational::new(25, 1)));
    let mut opts = ff::Dictionary::new();
    opts.set("preset", "ultrafast");
    opts.set("crf", "18");
    let mut encoder = enc.open_as_with(codec, opts).map_err(werr)?;
    {
        let mut ost = octx.add_stream(codec).map_err(werr)?;
        ost.set_parameters(&encoder);
        ost.set_time_base(tb);
    }
    octx.write_header().map_err(werr)?;
    let out_tb = octx.stream(0).map(|s| s.time_base()).unwrap_or(tb);
    let mut frame = ff::frame::Video::new(ff::format::Pixel::YUV420P, width, height);
    let mut pkt = ff::Packet::empty();
    let mut drain = |encoder: &mut ff::encoder::Video,
                     octx: &mut ff::format::context::Output|
     -> Result<(), MediaError> {
        while encoder.receive_packet(&mut pkt).is_ok() {
            pkt.set_stream(0);
            pkt.rescale_ts(tb, out_tb);
            pkt.write(octx).map_err(werr)?;
        }
        Ok(())
    };
    for i in 0..frames {
        if ctl.is_cancelled() {
            drop(octx);
            let _ = std::fs::remove_file(&path);
            return Err(MediaError::Cancelled);
        }
        paint(&mut frame, i);
        frame.set_pts(Some(i as i64));
        encoder.send_frame(&frame).map_err(werr)?;
        drain(&mut encoder, &mut octx)?;
    }
    encoder.send_eof().map_err(werr)?;
    drain(&mut encoder, &mut octx)?;
    octx.write_trailer().map_err(werr)?;
    let range = FrameRange {
        start_pts: 0,
        end_pts: None,
        time_base: Rational::new(1, 25),
        first_frame: 0,
        frames: frames as u64,
        fps: Rational::new(25, 1),
        ts_offset: 0,
    };
    Ok((path, range))
}

/// Deterministic moving content: a diagonal gradient that scrolls and a bright block.
fn paint(f: &mut ff::frame::Video, i: u32) {
    let (w, h) = (f.width() as usize, f.height() as usize);
    let stride = f.stride(0);
    let y = f.data_mut(0);
    for r in 0..h {
        for c in 0..w {
            let in_block = (c / 32 + i as usize).is_multiple_of(7) && (r / 32) % 3 == 1;
            y[r * stride + c] = if in_block {
                235
            } else {
                ((r + c + 4 * i as usize) % 220 + 16) as u8
            };
        }
    }
    for p in 1..3 {
        let stride = f.stride(p);
        let plane = f.data_mut(p);
        for r in 0..h / 2 {
            for c in 0..w / 2 {
                plane[r * stride + c] = ((r * p + c + i as usize) % 200 + 28) as u8;
            }
        }
    }
}
