//! Join encoded segments into the output file and mux the source audio once.
//!
//! Video packets keep the source pts; decode timestamps are kept monotonic across joins.
//! Audio comes from the source once (see [`super::audio`]), so joins cannot drift it.

use std::path::{Path, PathBuf};

use ff::Rescale;
use ffmpeg_next as ff;

use super::audio::{AudioMode, AudioTrack};
use super::probe::{open_input, Probe};
use super::MediaError;

/// Check early (before any work) that an output path can be written.
pub fn check_output(out: &Path) -> Result<(), MediaError> {
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(MediaError::write(
            out,
            format!("directory {} does not exist", dir.display()),
        ));
    }
    let probe = dir.join(format!(".rendermesh-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| {
        MediaError::write(
            out,
            format!("directory {} is not writable ({e})", dir.display()),
        )
    })?;
    let _ = std::fs::remove_file(&probe);
    if out.is_dir() {
        return Err(MediaError::write(out, "is a directory"));
    }
    Ok(())
}

/// The muxer for an output path, from its extension (default mp4).
pub fn container_for(out: &Path) -> Result<String, MediaError> {
    let ext = out
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("mp4")
        .to_ascii_lowercase();
    let name = match ext.as_str() {
        "mp4" | "m4v" => "mp4",
        "mov" => "mov",
        "mkv" => "matroska",
        "webm" => "webm",
        "nut" => "nut",
        other => {
            return Err(MediaError::write(
                out,
                format!("unknown output container .{other}; use .mp4, .mov, .mkv, .webm or .nut"),
            ))
        }
    };
    Ok(name.to_string())
}

/// Reads encoded segments one at a time, with timestamps back on the source timeline.
struct Segments<'a> {
    paths: &'a [PathBuf],
    next: usize,
    src_tb: ff::Rational,
    ts_offset: i64,
    frame_dur: i64,
    /// Codec headers of the first segment: every segment must have the same, or one
    /// container header cannot describe them.
    headers: Vec<u8>,
}

impl Segments<'_> {
    /// The next segment's packets in decode order, pts and dts in the source time base.
    fn next_segment(
        &mut self,
    ) -> Result<Option<std::collections::VecDeque<ff::Packet>>, MediaError> {
        let Some(path) = self.paths.get(self.next) else {
            return Ok(None);
        };
        self.next += 1;
        let mut ictx = open_input(path)?;
        let stream = ictx
            .stream(0)
            .ok_or_else(|| MediaError::NoVideo { file: path.clone() })?;
        if extradata(&stream.parameters()) != self.headers {
            return Err(MediaError::other(
                path,
                "encoded segment has different codec headers than the first",
            ));
        }
        let tb = stream.time_base();
        let mut pkts = Vec::new();
        loop {
            let mut pkt = ff::Packet::empty();
            match pkt.read(&mut ictx) {
                Ok(()) => {}
                Err(ff::Error::Eof) => break,
                Err(e) => {
                    return Err(MediaError::Truncated {
                        file: path.clone(),
                        cause: e.to_string(),
                    })
                }
            }
            let Some(pts) = pkt.pts() else {
                return Err(MediaError::other(
                    path,
                    "encoded packet without a timestamp",
                ));
            };
            pkt.set_pts(Some(pts.rescale(tb, self.src_tb) - self.ts_offset));
            pkts.push(pkt);
        }
        assign_dts(&mut pkts, self.frame_dur);
        Ok(Some(pkts.into()))
    }
}

/// Decode timestamps and durations for packets in decode order from their pts: with reorder depth `d`
/// (the smallest that keeps every dts <= its pts), `dts[i] = sorted_pts[i - d]`, and the
/// first `d` are extrapolated one frame apart. NUT keeps no dts, and this rule gives
/// monotonic dts across segment joins.
fn assign_dts(pkts: &mut [ff::Packet], frame_dur: i64) {
    let pts: Vec<i64> = pkts.iter().map(|p| p.pts().unwrap_or(0)).collect();
    let mut sorted = pts.clone();
    sorted.sort_unstable();
    let n = pts.len();
    let d = (0..n)
        .find(|&d| (d..n).all(|i| sorted[i - d] <= pts[i]))
        .unwrap_or(0);
    for (i, p) in pkts.iter_mut().enumerate() {
        let dts = if i >= d {
            sorted[i - d]
        } else {
            sorted[0] - (d - i) as i64 * frame_dur
        };
        p.set_dts(Some(dts));
        // duration: up to the next frame in presentation order (one frame for the last)
        let k = sorted.partition_point(|&x| x <= pts[i]);
        p.set_duration(sorted.get(k).map(|next| next - pts[i]).unwrap_or(frame_dur));
    }
}

/// Write `out` (container `format`) from the encoded `segments` and the audio of `source`.
/// Returns the number of video frames written.
#[tracing::instrument(skip_all, fields(out = %out.display(), segments = segments.len()))]
pub fn concat(
    segments: &[PathBuf],
    source: &Path,
    probe: &Probe,
    out: &Path,
    format: &str,
) -> Result<u64, MediaError> {
    let first = segments
        .first()
        .ok_or_else(|| MediaError::other(out, "no segments"))?;
    let seg0 = open_input(first)?;
    let vstream = seg0.stream(0).ok_or_else(|| MediaError::NoVideo {
        file: first.clone(),
    })?;
    let vparams = vstream.parameters();
    let vtb_in = super::ff_rational(probe.time_base);
    let extradata0 = extradata(&vparams);
    drop(seg0);

    let mut octx = ff::format::output_as(&out, format)
        .map_err(|e| MediaError::write(out, format!("opening {format} muxer: {e}")))?;
    {
        let mut ost = octx
            .add_stream(ff::encoder::find(ff::codec::Id::None))
            .map_err(|e| MediaError::write(out, e))?;
        ost.set_parameters(vparams);
        ost.set_time_base(vtb_in);
        ost.set_avg_frame_rate(super::ff_rational(probe.fps));
        // SAFETY: parameters were just allocated by add_stream.
        unsafe { (*ost.parameters().as_mut_ptr()).codec_tag = 0 };
    }
    let mut audio = match &probe.audio {
        Some(a) => Some(AudioTrack::add(
            source,
            a.index,
            &mut octx,
            out,
            format,
            AudioMode::Auto,
        )?),
        None => None,
    };
    octx.write_header()
        .map_err(|e| MediaError::write(out, format!("writing the header: {e}")))?;
    let vtb_out = octx.stream(0).map(|s| s.time_base()).unwrap_or(vtb_in);
    let atb_out = octx.stream(1).map(|s| s.time_base());

    let src_tb = super::ff_rational(probe.time_base);
    let frame_dur = {
        let d = ff::Rational::new(probe.fps.den, probe.fps.num.max(1));
        1i64.rescale(d, src_tb).max(1)
    };
    let mut segs = Segments {
        paths: segments,
        next: 0,
        src_tb,
        ts_offset: super::chunk::chunk_ts_offset(probe),
        frame_dur,
        headers: extradata0,
    };
    let mut current = segs.next_segment()?.unwrap_or_default();
    let mut anext = next_audio(&mut audio)?;
    let mut last_dts = i64::MIN;
    let mut frames = 0u64;
    let us = ff::Rational::new(1, 1_000_000);
    loop {
        while current.is_empty() {
            match segs.next_segment()? {
                Some(next) => current = next,
                None => break,
            }
        }
        let take_video = match (current.front(), &anext) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(v), Some((a, atb))) => {
                let vt = v.dts().unwrap_or(0).rescale(src_tb, us);
                let at = a.dts().or(a.pts()).unwrap_or(0).rescale(*atb, us);
                vt <= at
            }
        };
        if take_video {
            let Some(mut pkt) = current.pop_front() else {
                break;
            };
            if let Some(d) = pkt.dts() {
                let d = if d <= last_dts { last_dts + 1 } else { d };
                if pkt.pts().is_some_and(|p| d > p) {
                    return Err(MediaError::other(
                        out,
                        "timestamps cannot be made monotonic at a segment join",
                    ));
                }
                pkt.set_dts(Some(d));
                last_dts = d;
            }
            pkt.set_stream(0);
            pkt.set_position(-1);
            pkt.rescale_ts(src_tb, vtb_out);
            pkt.write_interleaved(&mut octx).map_err(|e| {
                MediaError::write(out, format!("writing video frame {frames}: {e}"))
            })?;
            frames += 1;
        } else {
            let Some((mut pkt, tb)) = anext.take() else {
                break;
            };
            pkt.set_stream(1);
            pkt.set_position(-1);
            if let Some(otb) = atb_out {
                pkt.rescale_ts(tb, otb);
            }
            pkt.write_interleaved(&mut octx)
                .map_err(|e| MediaError::write(out, format!("writing audio: {e}")))?;
            anext = next_audio(&mut audio)?;
        }
    }
    octx.write_trailer()
        .map_err(|e| MediaError::write(out, format!("finishing the file: {e}")))?;
    Ok(frames)
}

fn next_audio(
    audio: &mut Option<AudioTrack>,
) -> Result<Option<(ff::Packet, ff::Rational)>, MediaError> {
    match audio {
        Some(a) => a.next(),
        None => Ok(None),
    }
}

fn extradata(p: &ff::codec::Parameters) -> Vec<u8> {
    // SAFETY: extradata/extradata_size describe one allocation owned by the parameters.
    unsafe {
        let p = p.as_ptr();
        if (*p).extradata.is_null() || (*p).extradata_size <= 0 {
            return Vec::new();
        }
        std::slice::from_raw_parts((*p).extradata, (*p).extradata_size as usize).to_vec()
    }
}
