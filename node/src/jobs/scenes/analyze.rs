//! Score every frame of a shard: downscale to the analysis size, convert to HSV, take the
//! mean absolute HSV delta against the previous frame. The shard's first and last frames are
//! kept so the coordinator can score the pair that straddles each shard boundary.

use std::path::Path;

use ffmpeg_next as ff;
use rendermesh_mesh::exec::ShardCtl;
use rendermesh_protocol::{EdgeFrame, FrameRange, SceneScores, ScoreParams, LOOK_EVERY};

use super::detect::{frame_delta, HsvFrame};
use super::looks::{look, luma_of};
use crate::engine::decode::decode_range;
use crate::engine::MediaError;

/// Analysis size for a frame size: `analysis_width` if set, else PySceneDetect's
/// `width / ⌊width / 256⌋`. Dimensions stay even and at least 2.
pub fn analysis_size(width: u32, height: u32, params: &ScoreParams) -> (u32, u32) {
    let (w, h) = if params.analysis_width > 0 && params.analysis_width < width {
        let w = params.analysis_width;
        (w, (height as u64 * w as u64 / width.max(1) as u64) as u32)
    } else {
        let f = (width / 256).max(1);
        (width / f, height / f)
    };
    ((w & !1).max(2), (h & !1).max(2))
}

pub fn to_edge(f: &HsvFrame) -> EdgeFrame {
    let mut hsv = Vec::with_capacity(f.h.len() * 3);
    hsv.extend_from_slice(&f.h);
    hsv.extend_from_slice(&f.s);
    hsv.extend_from_slice(&f.v);
    EdgeFrame {
        width: f.width,
        height: f.height,
        hsv,
    }
}

/// Back from the wire form; `None` if its planes do not fit its size.
pub fn from_edge(e: &EdgeFrame) -> Option<HsvFrame> {
    let n = e.width as usize * e.height as usize;
    if e.hsv.len() != n * 3 {
        return None;
    }
    Some(HsvFrame {
        width: e.width,
        height: e.height,
        h: e.hsv[..n].to_vec(),
        s: e.hsv[n..2 * n].to_vec(),
        v: e.hsv[2 * n..].to_vec(),
    })
}

/// Decode `range` from the chunk and score every frame; with `looks`, also measure how every
/// [`LOOK_EVERY`]th frame of the stream looks.
#[tracing::instrument(skip_all, fields(first_frame = range.first_frame, frames = range.frames))]
pub fn score_chunk(
    chunk: &Path,
    range: &FrameRange,
    params: &ScoreParams,
    looks: bool,
    threads: usize,
    ctl: &ShardCtl<'_>,
) -> Result<SceneScores, MediaError> {
    let mut scaler: Option<(ff::software::scaling::Context, ff::frame::Video, u32, u32)> = None;
    let mut prev: Option<HsvFrame> = None;
    let mut first: Option<HsvFrame> = None;
    let mut deltas = Vec::with_capacity(range.frames as usize);
    let mut sampled = Vec::new();
    let mut prev_luma: Option<Vec<u8>> = None;
    let mut n = 0u64;
    decode_range(chunk, range, threads, params.fast_decode, |frame| {
        if ctl.is_cancelled() {
            return Err(MediaError::Cancelled);
        }
        if scaler.is_none() {
            let (w, h) = analysis_size(frame.width(), frame.height(), params);
            let sws = ff::software::scaling::Context::get(
                frame.format(),
                frame.width(),
                frame.height(),
                ff::format::Pixel::RGB24,
                w,
                h,
                ff::software::scaling::Flags::AREA,
            )
            .map_err(|e| MediaError::decode(chunk, format!("scaler: {e}")))?;
            scaler = Some((sws, ff::frame::Video::empty(), w, h));
        }
        let Some((sws, rgb, w, h)) = scaler.as_mut() else {
            return Ok(());
        };
        sws.run(frame, rgb)
            .map_err(|e| MediaError::decode(chunk, format!("scaler: {e}")))?;
        let hsv = HsvFrame::from_rgb24(*w, *h, rgb.stride(0), rgb.data(0))
            .map_err(|e| MediaError::decode(chunk, e))?;
        let delta = match &prev {
            Some(p) => Some(frame_delta(p, &hsv).map_err(|e| MediaError::decode(chunk, e))?),
            None => None,
        };
        deltas.push(delta);
        if looks {
            let frame = range.first_frame + n;
            let luma = luma_of(*w, *h, rgb.stride(0), rgb.data(0));
            if frame.is_multiple_of(LOOK_EVERY) {
                sampled.push(look(frame, *w, *h, &luma, prev_luma.as_deref()));
            }
            prev_luma = Some(luma);
        }
        if first.is_none() {
            first = Some(hsv.clone());
        }
        prev = Some(hsv);
        n += 1;
        if n.is_multiple_of(16) {
            ctl.progress(n);
        }
        Ok(())
    })?;
    Ok(SceneScores {
        first_frame: range.first_frame,
        deltas,
        first: first.as_ref().map(to_edge),
        last: prev.as_ref().map(to_edge),
        looks: sampled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn analysis_size_follows_pyscenedetect() {
        let d = ScoreParams::default();
        assert_eq!(analysis_size(1920, 1080, &d), (274, 154));
        assert_eq!(analysis_size(1280, 720, &d), (256, 144));
        assert_eq!(analysis_size(200, 100, &d), (200, 100));
        assert_eq!(
            analysis_size(
                1920,
                1080,
                &ScoreParams {
                    analysis_width: 320,
                    ..Default::default()
                }
            ),
            (320, 180)
        );
    }

    #[test]
    fn edge_round_trip_and_bad_edge() {
        let f = HsvFrame {
            width: 2,
            height: 1,
            h: vec![1, 2],
            s: vec![3, 4],
            v: vec![5, 6],
        };
        assert_eq!(from_edge(&to_edge(&f)), Some(f));
        assert_eq!(
            from_edge(&EdgeFrame {
                width: 5,
                height: 5,
                hsv: vec![0; 3]
            }),
            None
        );
    }
}
