//! Cut a source at keyframes into chunk blobs by stream copy.
//!
//! Chunk `i` owns the frames whose pts lie in `[pts(K_i), pts(K_{i+1}))`. Its blob holds the
//! packets from `K_i` (decode order) up to the last packet that displays before `K_{i+1}`, so
//! with open GOPs the leading frames of the next GOP (which display before `K_{i+1}` but are
//! coded after it) are decodable in the chunk that owns them. The next chunk starts at
//! `K_{i+1}` again; its own undecodable leading frames fall outside its range and are dropped.
//! Chunks are NUT files: they keep the source time base, so pts survive unchanged.

use std::ops::Range;
use std::path::Path;

use ffmpeg_next as ff;
use rendermesh_cache::BlobStore;
use rendermesh_protocol::{ContentId, FrameRange};

use super::probe::{open_input, Probe};
use super::MediaError;

/// One planned chunk.
#[derive(Clone, Debug, PartialEq)]
pub struct ChunkPlan {
    pub index: u32,
    /// Decode-order indices of the video packets the blob holds.
    pub packets: Range<usize>,
    pub range: FrameRange,
}

/// Split points: keyframes about `target_s` apart. Only keyframes before which no earlier
/// packet displays later are used, so a chunk's frames never need an earlier chunk.
pub fn plan_chunks(probe: &Probe, target_s: f64) -> Vec<ChunkPlan> {
    plan(probe, target_s, false)
}

/// As [`plan_chunks`], with chunks that shrink toward the end of the source: once at most
/// three chunk lengths are left, chunks are half as long, and once at most one is left, a
/// quarter (never below a second unless the target itself is shorter; keyframes permitting).
/// Shards are offered largest first, so the short ones are the last handed out: on a mesh
/// of unequal boxes they even out the ends of the boxes' last runs, which whole chunks
/// cannot when a slow box takes several times as long for one.
pub fn plan_chunks_tapered(probe: &Probe, target_s: f64) -> Vec<ChunkPlan> {
    plan(probe, target_s, true)
}

fn plan(probe: &Probe, target_s: f64, taper: bool) -> Vec<ChunkPlan> {
    let pts = &probe.packet_pts;
    let tb = probe.time_base.as_f64().max(f64::MIN_POSITIVE);
    let full = (target_s / tb) as i64;
    let floor = (target_s.min(1.0) / tb) as i64;
    // the length wanted for a chunk starting at `from`
    let target_at = |from: i64| {
        let left = probe.end_pts.saturating_sub(from);
        if !taper || left > 3 * full {
            full
        } else if left > full {
            (full / 2).max(floor)
        } else {
            (full / 4).max(floor)
        }
    };
    // prefix max of pts over decode order
    let mut seen_max = Vec::with_capacity(pts.len());
    let mut m = i64::MIN;
    for &p in pts {
        seen_max.push(m);
        m = m.max(p);
    }
    let mut starts: Vec<usize> = vec![0];
    let mut last_start_pts = probe.start_pts;
    for &k in probe.keyframes.iter().skip(1) {
        let k = k as usize;
        let kp = pts[k];
        let clean = seen_max[k] < kp;
        let target = target_at(last_start_pts);
        let long_enough = kp - last_start_pts >= target;
        let tail_ok = probe.end_pts - kp >= target / 4;
        if clean && long_enough && tail_ok {
            starts.push(k);
            last_start_pts = kp;
        }
    }
    let ts_offset = chunk_ts_offset(probe);
    let sorted = probe.sorted_pts();
    let frames_before = |p: i64| sorted.partition_point(|&x| x < p) as u64;
    let mut out = Vec::with_capacity(starts.len());
    for (i, &a) in starts.iter().enumerate() {
        let start_pts = if i == 0 { probe.start_pts } else { pts[a] };
        let next = starts.get(i + 1).copied();
        let (end_pts, b) = match next {
            None => (None, pts.len()),
            Some(n) => {
                let end = pts[n];
                // include the leading frames of the next GOP that display before `end`
                let stop = starts.get(i + 2).copied().unwrap_or(pts.len());
                let mut b = n + 1; // K_{i+1} itself is their reference
                let mut any_leading = false;
                for (j, &p) in pts.iter().enumerate().take(stop).skip(n + 1) {
                    if p < end {
                        b = j + 1;
                        any_leading = true;
                    }
                }
                if !any_leading {
                    b = n;
                }
                (Some(end), b)
            }
        };
        let first_frame = frames_before(start_pts);
        let frames = end_pts.map(frames_before).unwrap_or(probe.frames) - first_frame;
        out.push(ChunkPlan {
            index: i as u32,
            packets: a..b,
            range: FrameRange {
                start_pts,
                end_pts,
                time_base: probe.time_base,
                first_frame,
                frames,
                fps: probe.fps,
                ts_offset,
            },
        });
    }
    out
}

/// Offset added to chunk timestamps: two seconds (room for any encoder's reorder delay)
/// plus whatever the source starts below zero.
pub fn chunk_ts_offset(probe: &Probe) -> i64 {
    let tb = probe.time_base.as_f64();
    let two_s = if tb > 0.0 {
        (2.0 / tb).ceil() as i64
    } else {
        0
    };
    two_s + (-probe.start_pts).max(0)
}

/// Write the chunks with `want[i]` set into the blob store, in one pass over the source.
/// Returns each written chunk's id and size.
#[tracing::instrument(skip_all, fields(file = %path.display()))]
pub fn write_chunks(
    path: &Path,
    probe: &Probe,
    plans: &[ChunkPlan],
    want: &[bool],
    blobs: &BlobStore,
) -> Result<Vec<Option<(ContentId, u64)>>, MediaError> {
    let mut ictx = open_input(path)?;
    let src_tb = ictx
        .stream(probe.video_index)
        .map(|s| s.time_base())
        .ok_or_else(|| MediaError::NoVideo {
            file: path.to_path_buf(),
        })?;
    let params = ictx
        .stream(probe.video_index)
        .map(|s| s.parameters())
        .ok_or_else(|| MediaError::NoVideo {
            file: path.to_path_buf(),
        })?;
    let mut out: Vec<Option<(ContentId, u64)>> = vec![None; plans.len()];
    let Some(last_wanted) = want.iter().rposition(|w| *w) else {
        return Ok(out);
    };
    let stop_at = plans[last_wanted].packets.end;
    let offset = chunk_ts_offset(probe);
    let mut open: Vec<(usize, ChunkWriter)> = Vec::new();
    let mut next_plan = 0usize;
    let mut vidx = 0usize;
    let mut pkt = ff::Packet::empty();
    while vidx < stop_at {
        match super::next_packet(&mut pkt, &mut ictx) {
            Ok(()) => {}
            Err(ff::Error::Eof) => break,
            Err(e) => {
                return Err(MediaError::Truncated {
                    file: path.to_path_buf(),
                    cause: e.to_string(),
                })
            }
        }
        if pkt.stream() != probe.video_index {
            continue;
        }
        while next_plan < plans.len() && plans[next_plan].packets.start <= vidx {
            if want[next_plan] {
                let tmp = blobs.temp_path(&format!("chunk{next_plan}.nut"));
                open.push((next_plan, ChunkWriter::create(&tmp, &params, src_tb)?));
            }
            next_plan += 1;
        }
        for (i, w) in open.iter_mut() {
            if plans[*i].packets.contains(&vidx) {
                w.write(&pkt, src_tb, offset)?;
            }
        }
        vidx += 1;
        let mut k = 0;
        while k < open.len() {
            if plans[open[k].0].packets.end <= vidx {
                let (i, w) = open.remove(k);
                out[i] = Some(w.finish(blobs)?);
            } else {
                k += 1;
            }
        }
    }
    for (i, w) in open {
        out[i] = Some(w.finish(blobs)?);
    }
    if want.iter().zip(&out).any(|(w, o)| *w && o.is_none()) {
        return Err(MediaError::Truncated {
            file: path.to_path_buf(),
            cause: "file ended before every chunk was cut".into(),
        });
    }
    Ok(out)
}

/// A NUT file being written by stream copy.
struct ChunkWriter {
    octx: ff::format::context::Output,
    path: std::path::PathBuf,
    tb: ff::Rational,
}

impl ChunkWriter {
    fn create(
        path: &Path,
        params: &ff::codec::Parameters,
        tb: ff::Rational,
    ) -> Result<Self, MediaError> {
        let mut octx =
            ff::format::output_as(&path, "nut").map_err(|e| MediaError::write(path, e))?;
        {
            let mut ost = octx
                .add_stream(ff::encoder::find(ff::codec::Id::None))
                .map_err(|e| MediaError::write(path, e))?;
            ost.set_parameters(params.clone());
            ost.set_time_base(tb);
            // SAFETY: the stream's parameters were just allocated by add_stream.
            unsafe { (*ost.parameters().as_mut_ptr()).codec_tag = 0 };
        }
        octx.write_header()
            .map_err(|e| MediaError::write(path, e))?;
        let tb = octx.stream(0).map(|s| s.time_base()).unwrap_or(tb);
        Ok(Self {
            octx,
            path: path.to_path_buf(),
            tb,
        })
    }

    fn write(
        &mut self,
        pkt: &ff::Packet,
        src_tb: ff::Rational,
        offset: i64,
    ) -> Result<(), MediaError> {
        let mut p = pkt.clone();
        p.set_pts(pkt.pts().map(|t| t + offset));
        p.set_dts(pkt.dts().map(|t| t + offset));
        p.set_stream(0);
        p.set_position(-1);
        p.rescale_ts(src_tb, self.tb);
        p.write(&mut self.octx)
            .map_err(|e| MediaError::write(&self.path, e))?;
        Ok(())
    }

    fn finish(mut self, blobs: &BlobStore) -> Result<(ContentId, u64), MediaError> {
        self.octx
            .write_trailer()
            .map_err(|e| MediaError::write(&self.path, e))?;
        drop(self.octx);
        blobs
            .adopt(&self.path)
            .map_err(|e| MediaError::write(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rendermesh_protocol::Rational;

    fn probe_of(pts: Vec<i64>, keys: Vec<u32>) -> Probe {
        let n = pts.len() as u64;
        let end = pts.iter().max().unwrap() + 1;
        Probe {
            format: "test".into(),
            video_index: 0,
            codec: "h264".into(),
            width: 16,
            height: 16,
            rotation: 0,
            time_base: Rational::new(1, 1),
            fps: Rational::new(1, 1),
            packet_pts: pts,
            keyframes: keys,
            frames: n,
            start_pts: 0,
            end_pts: end,
            audio: None,
            bytes: 0,
            timecode: None,
        }
    }

    #[test]
    fn offset_covers_negative_start_and_reorder_delay() {
        let mut p = probe_of(vec![0, 1], vec![0]);
        p.time_base = Rational::new(1, 1000);
        assert_eq!(chunk_ts_offset(&p), 2000);
        p.start_pts = -40;
        assert_eq!(chunk_ts_offset(&p), 2040);
    }

    #[test]
    fn closed_gop_chunks_tile_exactly() {
        // I0 P3 B1 B2 | I4 P7 B5 B6 | I8 P11 B9 B10  (decode order)
        let pts = vec![0, 3, 1, 2, 4, 7, 5, 6, 8, 11, 9, 10];
        let p = probe_of(pts, vec![0, 4, 8]);
        let plans = plan_chunks(&p, 4.0);
        assert_eq!(plans.len(), 3);
        assert_eq!(plans[0].packets, 0..4);
        assert_eq!(plans[1].packets, 4..8);
        assert_eq!(plans[2].packets, 8..12);
        assert_eq!(plans.iter().map(|c| c.range.frames).sum::<u64>(), 12);
        assert_eq!(plans[1].range.first_frame, 4);
        assert_eq!(plans[1].range.start_pts, 4);
        assert_eq!(plans[1].range.end_pts, Some(8));
    }

    #[test]
    fn open_gop_chunk_includes_leading_frames_of_next_gop() {
        // I2 B0 B1 P5 B3 B4 | I8 B6 B7 P11 B9 B10 | I14 B12 B13 P15
        let pts = vec![2, 0, 1, 5, 3, 4, 8, 6, 7, 11, 9, 10, 14, 12, 13, 15];
        let mut p = probe_of(pts, vec![0, 6, 12]);
        p.start_pts = 0;
        let plans = plan_chunks(&p, 6.0);
        assert_eq!(plans.len(), 3);
        // chunk 0 owns pts 0..8: packets up to B7 (index 8), including I8 as reference
        assert_eq!(plans[0].packets, 0..9);
        assert_eq!(plans[0].range.frames, 8);
        assert_eq!(plans[1].packets, 6..15);
        assert_eq!(plans[1].range.start_pts, 8);
        assert_eq!(plans[1].range.frames, 6);
        assert_eq!(plans[2].packets, 12..16);
        assert_eq!(plans[2].range.frames, 2);
        assert_eq!(plans.iter().map(|c| c.range.frames).sum::<u64>(), 16);
    }

    #[test]
    fn unclean_keyframe_is_not_a_split_point() {
        // P at index 3 displays after the keyframe at index 4: splitting there would orphan it
        let pts = vec![0, 1, 2, 9, 4, 5, 6, 7, 8];
        let p = probe_of(pts, vec![0, 4]);
        let plans = plan_chunks(&p, 1.0);
        assert_eq!(plans.len(), 1);
        assert_eq!(plans[0].range.frames, 9);
    }

    #[test]
    fn tapered_chunks_shrink_toward_the_end() {
        // 60 s at 10 fps (time base 1/10), a keyframe every second; target 4 s
        let pts: Vec<i64> = (0..600).collect();
        let mut p = probe_of(pts, (0..60).map(|s| s * 10).collect());
        p.time_base = Rational::new(1, 10);
        let lengths = |plans: &[ChunkPlan]| -> Vec<u64> {
            plans.iter().map(|c| c.range.frames / 10).collect()
        };
        let plain = plan_chunks(&p, 4.0);
        assert_eq!(lengths(&plain), vec![4; 15]);
        let tapered = plan_chunks_tapered(&p, 4.0);
        // 48 s in 4 s chunks; then 2 s chunks while more than 4 s are left; then 1 s
        let mut want = vec![4; 12];
        want.extend([2, 2, 2, 2, 1, 1, 1, 1]);
        assert_eq!(lengths(&tapered), want);
        assert_eq!(tapered.iter().map(|c| c.range.frames).sum::<u64>(), 600);
        // keyframes every 2 s: the quarter chunks cannot be cut, 2 s ones are
        let mut q = probe_of((0..600).collect(), (0..30).map(|s| s * 20).collect());
        q.time_base = Rational::new(1, 10);
        let mut want = vec![4; 12];
        want.extend([2; 6]);
        assert_eq!(lengths(&plan_chunks_tapered(&q, 4.0)), want);
        // a short target is not cut below itself
        assert_eq!(lengths(&plan_chunks_tapered(&p, 1.0)), vec![1; 60]);
    }

    #[test]
    fn short_tail_is_merged() {
        let pts: Vec<i64> = (0..100).collect();
        let p = probe_of(pts, vec![0, 30, 60, 95]);
        let plans = plan_chunks(&p, 30.0);
        // 95 leaves 5 frames < 30/4 tail: not a split
        assert_eq!(
            plans.iter().map(|c| c.range.start_pts).collect::<Vec<_>>(),
            vec![0, 30, 60]
        );
    }
}
