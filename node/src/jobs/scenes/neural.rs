//! The neural pass of scene detection: the shot-boundary network (TransNetV2, in the
//! `rendermesh-transnet` crate) over blocks of [`NEURAL_BLOCK`] frames.
//!
//! Block `k` keeps frames `50k..50k+50` of a window over frames `50k-25..50k+75` of the stream
//! (clamped to its first and last frame, as the published model pads a clip). The blocks sit
//! on the stream, not on shards, so a shard's predictions are the ones the whole file would
//! give, however it is cut: a shard decodes what its blocks' windows need from the chunks
//! around it, its neighbours' edge frames included.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use ffmpeg_next as ff;
use rendermesh_mesh::exec::ShardCtl;
use rendermesh_protocol::{
    ContentId, FrameRange, NeuralScores, Transition, TransitionKind, NEURAL_BLOCK,
};
use rendermesh_transnet::{TransNet, CONTEXT, FRAME_BYTES, HEIGHT, STEP, WIDTH, WINDOW};

use crate::engine::decode::decode_range;
use crate::engine::MediaError;

const _: () = assert!(
    NEURAL_BLOCK as usize == STEP,
    "a block is what a window keeps"
);

/// Blocks of a stream of `frames` frames.
pub fn blocks_of(frames: u64) -> u64 {
    frames.div_ceil(NEURAL_BLOCK)
}

/// The frames `[start, end)` that the windows of blocks `first..first+blocks` read.
pub fn span(first: u64, blocks: u32, total: u64) -> (u64, u64) {
    let start = (first * NEURAL_BLOCK).saturating_sub(CONTEXT as u64);
    let end = ((first + u64::from(blocks)) * NEURAL_BLOCK + CONTEXT as u64).min(total);
    (start.min(end), end)
}

/// Loaded networks by the content id of their weights: a node loads them once.
fn network(weights: &Path, id: &ContentId) -> Result<Arc<TransNet>, String> {
    static NETS: OnceLock<Mutex<HashMap<ContentId, Arc<TransNet>>>> = OnceLock::new();
    let nets = NETS.get_or_init(Mutex::default);
    let mut nets = nets.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(n) = nets.get(id) {
        return Ok(n.clone());
    }
    let net = Arc::new(TransNet::load(weights).map_err(|e| e.to_string())?);
    nets.insert(*id, net.clone());
    Ok(net)
}

/// Decodes frames `[start, end)` of the stream from `chunks` (blob paths with their ranges, in
/// time order) at the network's 48×27 RGB, scaled as ffmpeg scales by default (bicubic).
pub fn decode_span(
    chunks: &[(std::path::PathBuf, FrameRange)],
    start: u64,
    end: u64,
    threads: usize,
    ctl: &ShardCtl<'_>,
) -> Result<Vec<u8>, MediaError> {
    let mut out = Vec::with_capacity((end - start) as usize * FRAME_BYTES);
    let mut next = start;
    for (path, range) in chunks {
        let (first, last) = (range.first_frame, range.first_frame + range.frames);
        if last <= next || first >= end {
            continue;
        }
        let mut scaler: Option<(ff::software::scaling::Context, ff::frame::Video)> = None;
        let mut index = first;
        decode_range(path, range, threads, false, |frame| {
            if ctl.is_cancelled() {
                return Err(MediaError::Cancelled);
            }
            let at = index;
            index += 1;
            if at != next || at >= end {
                return Ok(());
            }
            if scaler.is_none() {
                let sws = ff::software::scaling::Context::get(
                    frame.format(),
                    frame.width(),
                    frame.height(),
                    ff::format::Pixel::RGB24,
                    WIDTH as u32,
                    HEIGHT as u32,
                    ff::software::scaling::Flags::BICUBIC,
                )
                .map_err(|e| MediaError::decode(path, format!("scaler: {e}")))?;
                scaler = Some((sws, ff::frame::Video::empty()));
            }
            let Some((sws, rgb)) = scaler.as_mut() else {
                return Ok(());
            };
            sws.run(frame, rgb)
                .map_err(|e| MediaError::decode(path, format!("scaler: {e}")))?;
            let stride = rgb.stride(0);
            let data = rgb.data(0);
            for row in 0..HEIGHT {
                let line = data
                    .get(row * stride..row * stride + WIDTH * 3)
                    .ok_or_else(|| MediaError::decode(path, "scaler: a short frame"))?;
                out.extend_from_slice(line);
            }
            next += 1;
            Ok(())
        })?;
    }
    if next != end {
        return Err(MediaError::Other {
            file: chunks.first().map(|c| c.0.clone()).unwrap_or_default(),
            cause: format!("decoded frames {start}..{next}, the network needs {start}..{end}"),
        });
    }
    Ok(out)
}

/// Runs blocks `first..first+blocks` of a stream of `total` frames on `frames`, the decoded
/// frames `[span_start, …)`: the predictions of the blocks' frames (the last block stops at
/// the stream's end).
pub fn run_blocks(
    net: &TransNet,
    frames: &[u8],
    span_start: u64,
    first: u64,
    blocks: u32,
    total: u64,
    ctl: &ShardCtl<'_>,
) -> Result<NeuralScores, String> {
    let have = (frames.len() / FRAME_BYTES) as u64;
    let mut single = Vec::new();
    let mut many = Vec::new();
    let mut luma = Vec::new();
    let mut window = vec![0u8; WINDOW * FRAME_BYTES];
    for k in first..first + u64::from(blocks) {
        let kept_start = k * NEURAL_BLOCK;
        if kept_start >= total {
            break;
        }
        if ctl.is_cancelled() {
            return Err("cancelled".into());
        }
        for i in 0..WINDOW as u64 {
            // the window's frame, clamped to the stream as the published model pads it
            let f = (kept_start + i)
                .saturating_sub(CONTEXT as u64)
                .min(total - 1);
            let at = f
                .checked_sub(span_start)
                .filter(|a| *a < have)
                .ok_or_else(|| format!("frame {f} is not among the decoded frames"))?
                as usize;
            let dst = i as usize * FRAME_BYTES;
            window[dst..dst + FRAME_BYTES]
                .copy_from_slice(&frames[at * FRAME_BYTES..(at + 1) * FRAME_BYTES]);
        }
        let p = net.run_window(&window).map_err(|e| e.to_string())?;
        let keep = (total - kept_start).min(NEURAL_BLOCK) as usize;
        for q in &p[CONTEXT..CONTEXT + keep] {
            single.push(q.single);
            many.push(q.many);
        }
        for i in CONTEXT..CONTEXT + keep {
            luma.push(mean_luma(&window[i * FRAME_BYTES..(i + 1) * FRAME_BYTES]));
        }
        ctl.progress(single.len() as u64);
    }
    Ok(NeuralScores {
        first_frame: first * NEURAL_BLOCK,
        single,
        many,
        luma,
    })
}

/// Mean luma (0–255) of one of the network's packed RGB24 frames, with the luma the frame
/// looks use.
fn mean_luma(rgb: &[u8]) -> u8 {
    let luma = super::looks::luma_of(WIDTH as u32, HEIGHT as u32, WIDTH * 3, rgb);
    let sum: u64 = luma.iter().map(|&v| u64::from(v)).sum();
    (sum / luma.len().max(1) as u64) as u8
}

/// Runs a neural shard: decode what the blocks need, load the network (`weights`, by its
/// content id `model`) and run it.
#[allow(clippy::too_many_arguments)]
pub fn run_shard(
    chunks: &[(std::path::PathBuf, FrameRange)],
    weights: &Path,
    model: &ContentId,
    first: u64,
    blocks: u32,
    total: u64,
    threads: usize,
    ctl: &ShardCtl<'_>,
) -> Result<NeuralScores, MediaError> {
    let (start, end) = span(first, blocks, total);
    let frames = decode_span(chunks, start, end, threads, ctl)?;
    let net = network(weights, model).map_err(|cause| MediaError::Other {
        file: weights.to_path_buf(),
        cause,
    })?;
    run_blocks(&net, &frames, start, first, blocks, total, ctl).map_err(|cause| {
        if ctl.is_cancelled() {
            MediaError::Cancelled
        } else {
            MediaError::Other {
                file: weights.to_path_buf(),
                cause,
            }
        }
    })
}

/// A stream's predictions, per frame: the probability of a transition at it (`single`) and
/// that it lies inside one (`many`); 0 where the network did not run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Predictions {
    pub single: Vec<f32>,
    pub many: Vec<f32>,
    /// Mean luma of each frame the network saw (`None` where it did not run).
    pub luma: Vec<Option<u8>>,
}

/// A gradual transition that the single head leaves under its threshold (a dip to black, a
/// slow fade: the head spreads its belief over the frames) shows on the `many` head as a
/// zone: frames at least [`ZONE`], gaps of up to [`ZONE_GAP`] frames bridged, that holds a run
/// of [`INSIDE_RUN`] frames at least [`INSIDE`].
const ZONE: f32 = 0.25;
const ZONE_GAP: usize = 10;
const INSIDE: f32 = 0.5;
const INSIDE_RUN: usize = 3;
/// A zone this long at most is one transition: it keeps one cut.
const ONE_TRANSITION: usize = 40;

/// Cuts from a stream's predictions. Where a run of frames above `threshold` on the single
/// head ends, the next frame starts a scene (a hard cut's run is its shot's last frame; a
/// dissolve's, its middle), as the published model turns predictions into scenes. A zone of
/// the `many` head with no such cut, nor one of `known` (cuts made without the network), is
/// a gradual transition: its scene starts after its most certain frame; one with two such
/// cuts (a fade out and in again) keeps the first. Cuts stay at least
/// `min_scene_len` frames apart (an earlier cut wins).
pub fn cuts(p: &Predictions, threshold: f32, min_scene_len: u32, known: &[u32]) -> Vec<u32> {
    let mut all = Vec::new();
    let mut above = false;
    for (i, x) in p.single.iter().enumerate() {
        let now = *x > threshold;
        if above && !now {
            all.push(i as u32);
        }
        above = now;
    }
    let zones = zones(&p.many);
    // a fade out and in again (or a dip) can show as two runs: one transition, one cut
    for &(a, b) in zones.iter().filter(|(a, b)| b - a <= ONE_TRANSITION) {
        let inside = |c: &u32| (a as u32) <= *c && *c <= b as u32 + 1;
        if let Some(first) = all.iter().copied().find(inside) {
            all.retain(|c| *c == first || !inside(c));
        }
    }
    let gradual: Vec<u32> = zones
        .into_iter()
        .filter(|&(a, b)| {
            let near = |c: &u32| (a as u32) <= c + 2 && *c <= b as u32 + 3;
            !all.iter().chain(known).any(near)
        })
        .map(|(a, b)| {
            let peak = (a..b).max_by(|x, y| p.many[*x].total_cmp(&p.many[*y]));
            peak.unwrap_or(a) as u32 + 1
        })
        .collect();
    all.extend(gradual);
    all.sort_unstable();
    let mut cuts = Vec::with_capacity(all.len());
    let mut last = 0u32;
    for c in all {
        if c - last >= min_scene_len.max(1) {
            cuts.push(c);
            last = c;
        }
    }
    cuts
}

/// A cut whose span on the `many` head is at least this many frames is a gradual transition;
/// a hard cut's is a frame or two.
const GRADUAL_MIN: usize = 5;
/// A transition whose darkest frame has at most this mean luma (of 255) goes through black.
const BLACK: u8 = 28;

/// The gradual transitions among `cuts` (ascending), from the predictions around each: the
/// frames about the cut that the `many` head holds at least [`ZONE`] (gaps of up to
/// [`ZONE_GAP`] bridged, never past the cuts on either side), when they are at least
/// [`GRADUAL_MIN`] and hold a run of [`INSIDE_RUN`] frames at least [`INSIDE`]. A span whose
/// darkest frame is black is a fade, any other a dissolve. Cuts the network did not see
/// (the `many` head is 0 there) are hard cuts.
pub fn transitions(p: &Predictions, cuts: &[u32]) -> Vec<Transition> {
    let many = &p.many;
    let mut out = Vec::new();
    for (k, &cut) in cuts.iter().enumerate() {
        let c = cut as usize;
        // the span may reach halfway to the neighbouring cuts
        let lo = k
            .checked_sub(1)
            .map_or(0, |j| (cuts[j] as usize + c).div_ceil(2));
        let hi = cuts
            .get(k + 1)
            .map_or(many.len(), |&n| (c + n as usize) / 2)
            .min(many.len());
        // the surest frame next to the cut
        let Some(seed) = (c.saturating_sub(3).max(lo)..(c + 2).min(hi))
            .filter(|&i| many[i] >= ZONE)
            .max_by(|&x, &y| many[x].total_cmp(&many[y]))
        else {
            continue;
        };
        let (mut first, mut end) = (seed, seed + 1);
        while let Some(i) = (first.saturating_sub(ZONE_GAP + 1).max(lo)..first)
            .rev()
            .find(|&i| many[i] >= ZONE)
        {
            first = i;
        }
        while let Some(i) = (end..(end + ZONE_GAP + 1).min(hi)).find(|&i| many[i] >= ZONE) {
            end = i + 1;
        }
        let mut run = 0;
        let inside = many[first..end].iter().any(|m| {
            run = if *m >= INSIDE { run + 1 } else { 0 };
            run >= INSIDE_RUN
        });
        if end - first < GRADUAL_MIN || !inside {
            continue;
        }
        let darkest = p
            .luma
            .get(first..end)
            .and_then(|l| l.iter().flatten().min());
        let kind = match darkest {
            Some(&l) if l <= BLACK => TransitionKind::Fade,
            _ => TransitionKind::Dissolve,
        };
        out.push(Transition {
            cut: u64::from(cut),
            kind,
            first: first as u64,
            end: end as u64,
        });
    }
    out
}

/// The zones of the `many` head that hold a gradual transition, as `(first, end)` frames.
fn zones(many: &[f32]) -> Vec<(usize, usize)> {
    let mut zones: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < many.len() {
        if many[i] < ZONE {
            i += 1;
            continue;
        }
        let start = i;
        while i < many.len() && many[i] >= ZONE {
            i += 1;
        }
        match zones.last_mut() {
            Some(z) if start - z.1 <= ZONE_GAP => z.1 = i,
            _ => zones.push((start, i)),
        }
    }
    zones.retain(|&(a, b)| {
        let mut run = 0;
        many[a..b].iter().any(|m| {
            run = if *m >= INSIDE { run + 1 } else { 0 };
            run >= INSIDE_RUN
        })
    });
    zones
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_cover_the_windows_of_their_blocks_and_stop_at_the_stream() {
        assert_eq!(blocks_of(0), 0);
        assert_eq!(blocks_of(50), 1);
        assert_eq!(blocks_of(158), 4);
        // the first block reads frames 0..75 (before 0 it repeats frame 0)
        assert_eq!(span(0, 1, 1000), (0, 75));
        assert_eq!(span(2, 3, 1000), (75, 275));
        // the last block stops at the last frame
        assert_eq!(span(3, 1, 158), (125, 158));
    }

    #[test]
    fn a_run_above_the_threshold_cuts_where_it_ends() {
        let mut p = vec![0.0f32; 200];
        p[49] = 0.97; // a hard cut: frame 49 is its shot's last
        p[104] = 0.8; // the middle of a dissolve
        p[105] = 0.6;
        p[110] = 0.9; // too close to the last cut for a 15-frame minimum
        let p = Predictions {
            many: vec![0.0; p.len()],
            luma: vec![None; p.len()],
            single: p,
        };
        assert_eq!(cuts(&p, 0.5, 15, &[]), vec![50, 106]);
        assert_eq!(cuts(&p, 0.5, 1, &[]), vec![50, 106, 111]);
        assert_eq!(cuts(&p, 0.99, 15, &[]), Vec::<u32>::new());
    }

    /// The `many` head of a dip to black: in over frames 100..108, a dip at 110..113, out
    /// again by 122; the single head never passes 0.5.
    fn dip(p: &mut Predictions, at: usize) {
        let many = [
            0.3, 0.5, 0.55, 0.6, 0.4, 0.2, 0.1, 0.3, 0.6, 0.8, 0.85, 0.7, 0.5, 0.3,
        ];
        p.many[at..at + many.len()].copy_from_slice(&many);
        p.single[at + 1] = 0.42;
    }

    #[test]
    fn gradual_cuts_get_their_span_and_kind_and_hard_cuts_none() {
        let mut p = Predictions {
            single: vec![0.0; 400],
            many: vec![0.0; 400],
            luma: vec![Some(110); 400],
        };
        // a dip to black over 100..114 (the darkest frames at 110..112)
        dip(&mut p, 100);
        for l in &mut p.luma[110..113] {
            *l = Some(6);
        }
        // a dissolve over 200..212, never dark
        p.many[200..212].copy_from_slice(&[
            0.3, 0.45, 0.6, 0.7, 0.8, 0.85, 0.85, 0.8, 0.7, 0.55, 0.4, 0.3,
        ]);
        // a hard cut at 300: the many head is up on one frame
        p.many[299] = 0.6;
        let cuts = cuts(&p, 0.5, 15, &[]);
        assert_eq!(cuts, vec![111, 207]);
        let t = transitions(&p, &[111, 207, 300]);
        let fade = Transition {
            cut: 111,
            kind: TransitionKind::Fade,
            first: 100,
            end: 114,
        };
        let dissolve = Transition {
            cut: 207,
            kind: TransitionKind::Dissolve,
            first: 200,
            end: 212,
        };
        assert_eq!(t, vec![fade, dissolve]);
        assert_eq!(fade.frames(), 14);
        // a span stops halfway to the next cut; frames the network did not see are not dark
        let t = transitions(&p, &[111, 116]);
        assert_eq!((t[0].first, t[0].end), (100, 113));
        let t = transitions(&p, &[104, 111]);
        assert_eq!(t.len(), 2, "{t:?}");
        assert!(t[0].end <= 107 && t[1].first >= 108, "{t:?}");
        p.luma = vec![None; 400];
        assert_eq!(transitions(&p, &[111])[0].kind, TransitionKind::Dissolve);
    }

    #[test]
    fn a_gradual_transition_under_the_single_threshold_cuts_once_after_its_surest_frame() {
        let mut p = Predictions {
            single: vec![0.0; 300],
            many: vec![0.0; 300],
            luma: vec![Some(100); 300],
        };
        dip(&mut p, 100);
        // two frames of a flash or a fast move: too short for a transition
        p.many[200] = 0.6;
        p.many[201] = 0.55;
        // the gap at 105..107 is bridged: one transition, cut after frame 110 (0.85)
        assert_eq!(cuts(&p, 0.5, 15, &[]), vec![111]);
        // the single head's cut in the zone is the transition's: no second cut
        p.single[108] = 0.7;
        assert_eq!(cuts(&p, 0.5, 1, &[]), vec![109]);
        // nor a second one beside a cut made without the network
        p.single[108] = 0.0;
        assert_eq!(cuts(&p, 0.5, 1, &[99]), Vec::<u32>::new());
        assert_eq!(cuts(&p, 0.5, 1, &[60]), vec![111]);
        // a fade out, then in: the single head cuts at both halves, 16 frames apart
        p.single[103] = 0.6;
        p.single[119] = 0.6;
        p.many[113..120].copy_from_slice(&[0.4, 0.5, 0.6, 0.7, 0.6, 0.5, 0.3]);
        assert_eq!(cuts(&p, 0.5, 15, &[]), vec![104]);
        // two hard cuts far apart are two
        p.single[160] = 0.9;
        p.many[158..163].copy_from_slice(&[0.3, 0.5, 0.6, 0.5, 0.3]);
        assert_eq!(cuts(&p, 0.5, 15, &[]), vec![104, 161]);
    }
}
