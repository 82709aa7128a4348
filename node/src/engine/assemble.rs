//! Join a montage's segments frame-exactly and mux the song once.
//!
//! The segments (from [`super::conform::render_shot`]) each hold frames with pts
//! `0..n` at the output rate; they are stream-copied back to back. Decode timestamps follow
//! one reorder delay for the whole output (the largest any segment needs), so they rise
//! across every join. The song is decoded from the montage's start, cut to the video's
//! length to the sample, faded out at the end and encoded once (AAC; Opus for WebM).
//! Audio and video start together; MP4 hides the AAC encoder's priming in an edit list,
//! while Matroska starts both streams after it (about 23 ms).

use std::path::{Path, PathBuf};

use ff::Rescale;
use ffmpeg_next as ff;
use rendermesh_protocol::Rational;

use super::probe::{open_input, read_packet};
use super::song::SongTrack;
use super::{ff_rational, MediaError};

/// Join `segments` (NUT files of frames at `fps`, in timeline order, with identical codec
/// parameters) into `out` (muxer `container`, e.g. "mp4", "matroska", "webm"), with the
/// audio of `song` from `start_s` seconds for exactly the video's length, faded out over
/// its last `fade_s` seconds. Returns the video frames written. On error `out` is removed.
#[tracing::instrument(skip_all, fields(out = %out.display(), segments = segments.len()))]
pub fn join_montage(
    segments: &[PathBuf],
    fps: Rational,
    song: &Path,
    start_s: f64,
    fade_s: f64,
    out: &Path,
    container: &str,
) -> Result<u64, MediaError> {
    super::init();
    let res = join(segments, fps, song, start_s, fade_s, out, container);
    if res.is_err() {
        let _ = std::fs::remove_file(out);
    }
    res
}

/// What the first pass learnt about the segments.
struct Layout {
    params: ff::codec::Parameters,
    /// Frames of each segment.
    frames: Vec<u64>,
    /// How far each segment's timestamps were moved by its muxer (frames), taken off again.
    shifts: Vec<i64>,
    /// Reorder delay in frames: packet `g` (decode order, whole output) gets dts `g - delay`.
    delay: i64,
}

/// The frame-unit pts of every packet of `path`, in decode order, and its stream's parameters.
fn segment_pts(
    path: &Path,
    frame_tb: ff::Rational,
) -> Result<(Vec<i64>, i64, ff::codec::Parameters), MediaError> {
    let mut ictx = open_input(path)?;
    let stream =
        ictx.streams()
            .best(ff::media::Type::Video)
            .ok_or_else(|| MediaError::NoVideo {
                file: path.to_path_buf(),
            })?;
    let (index, tb, params) = (stream.index(), stream.time_base(), stream.parameters());
    let mut pts = Vec::new();
    let mut pkt = ff::Packet::empty();
    while read_packet(&mut ictx, &mut pkt, path)? {
        if pkt.stream() != index {
            continue;
        }
        let p = pkt
            .pts()
            .ok_or_else(|| MediaError::other(path, "encoded packet without a timestamp"))?;
        pts.push(p.rescale(tb, frame_tb));
    }
    // a muxer may have moved the whole segment later so that no decode timestamp is
    // negative (B-frames): its first frame is frame 0 again
    let first = pts.iter().copied().min().unwrap_or(0);
    for p in &mut pts {
        *p -= first;
    }
    Ok((pts, first, params))
}

/// Check the segments and find the output's reorder delay.
fn layout(segments: &[PathBuf], frame_tb: ff::Rational) -> Result<Layout, MediaError> {
    let mut first: Option<(ff::codec::Parameters, Vec<u8>)> = None;
    let mut frames = Vec::with_capacity(segments.len());
    let mut shifts = Vec::with_capacity(segments.len());
    let mut delay = 0i64;
    for path in segments {
        let (pts, shift, params) = segment_pts(path, frame_tb)?;
        shifts.push(shift);
        let mut sorted = pts.clone();
        sorted.sort_unstable();
        if sorted.iter().enumerate().any(|(i, &p)| p != i as i64) {
            return Err(MediaError::other(
                path,
                "segment frames are not numbered 0, 1, 2, … at the montage rate",
            ));
        }
        // dts g - d <= pts needs d >= i - pts[i]
        for (i, &p) in pts.iter().enumerate() {
            delay = delay.max(i as i64 - p);
        }
        frames.push(pts.len() as u64);
        match &first {
            None => {
                let x = extradata(&params);
                first = Some((params, x));
            }
            Some((p0, x0)) => {
                let same = p0.id() == params.id()
                    && dims(p0) == dims(&params)
                    && *x0 == extradata(&params);
                if !same {
                    return Err(MediaError::other(
                        path,
                        "segment was encoded with other codec parameters than the first",
                    ));
                }
            }
        }
    }
    let Some((params, _)) = first else {
        return Err(MediaError::other(Path::new(""), "no segments to join"));
    };
    Ok(Layout {
        params,
        frames,
        shifts,
        delay,
    })
}

fn dims(p: &ff::codec::Parameters) -> (i32, i32) {
    // SAFETY: the parameters are valid for the borrow.
    unsafe { ((*p.as_ptr()).width, (*p.as_ptr()).height) }
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

fn join(
    segments: &[PathBuf],
    fps: Rational,
    song: &Path,
    start_s: f64,
    fade_s: f64,
    out: &Path,
    container: &str,
) -> Result<u64, MediaError> {
    if fps.num <= 0 || fps.den <= 0 {
        return Err(MediaError::other(
            out,
            format!("frame rate {}/{}", fps.num, fps.den),
        ));
    }
    if segments.is_empty() {
        return Err(MediaError::other(out, "no segments to join"));
    }
    let frame_tb = ff::Rational::new(fps.den, fps.num);
    let lay = layout(segments, frame_tb)?;
    let total: u64 = lay.frames.iter().sum();

    let mut octx = ff::format::output_as(&out, container)
        .map_err(|e| MediaError::write(out, format!("opening {container} muxer: {e}")))?;
    {
        let mut ost = octx
            .add_stream(ff::encoder::find(ff::codec::Id::None))
            .map_err(|e| MediaError::write(out, e))?;
        ost.set_parameters(lay.params.clone());
        ost.set_time_base(frame_tb);
        ost.set_avg_frame_rate(ff_rational(fps));
        ost.set_rate(ff_rational(fps));
        // SAFETY: parameters were just allocated by add_stream.
        unsafe { (*ost.parameters().as_mut_ptr()).codec_tag = 0 };
    }
    let length_s = total as f64 * f64::from(fps.den) / f64::from(fps.num);
    let mut audio = SongTrack::add(song, start_s, length_s, fade_s, &mut octx, out, container)?;
    octx.write_header()
        .map_err(|e| MediaError::write(out, format!("writing the header: {e}")))?;
    let vtb = octx.stream(0).map_or(frame_tb, |s| s.time_base());
    let atb_out = octx.stream(1).map_or(audio.tb, |s| s.time_base());
    let us = ff::Rational::new(1, 1_000_000);

    let mut written = 0u64;
    let mut anext = audio.next()?;
    for ((path, &n), &shift) in segments.iter().zip(&lay.frames).zip(&lay.shifts) {
        let mut ictx = open_input(path)?;
        let Some((index, tb)) = ictx
            .streams()
            .best(ff::media::Type::Video)
            .map(|s| (s.index(), s.time_base()))
        else {
            return Err(MediaError::NoVideo { file: path.clone() });
        };
        let base = written;
        let mut in_segment = 0u64;
        let mut pkt = ff::Packet::empty();
        while read_packet(&mut ictx, &mut pkt, path)? {
            if pkt.stream() != index {
                continue;
            }
            let local = pkt.pts().unwrap_or(0).rescale(tb, frame_tb) - shift;
            let dts = written as i64 - lay.delay;
            // audio that plays before this frame decodes goes first
            let vt = dts.rescale(frame_tb, us);
            while let Some(mut a) = anext.take() {
                if a.dts().or(a.pts()).unwrap_or(0).rescale(audio.tb, us) >= vt {
                    anext = Some(a);
                    break;
                }
                write_audio(&mut a, audio.tb, atb_out, &mut octx, out)?;
                anext = audio.next()?;
            }
            pkt.set_pts(Some(base as i64 + local));
            pkt.set_dts(Some(dts));
            pkt.set_duration(1);
            pkt.set_stream(0);
            pkt.set_position(-1);
            pkt.rescale_ts(frame_tb, vtb);
            pkt.write_interleaved(&mut octx).map_err(|e| {
                MediaError::write(out, format!("writing video frame {written}: {e}"))
            })?;
            written += 1;
            in_segment += 1;
        }
        if in_segment != n {
            return Err(MediaError::other(
                path,
                format!("segment changed while it was joined ({in_segment} frames, then {n})"),
            ));
        }
    }
    while let Some(mut a) = anext.take() {
        write_audio(&mut a, audio.tb, atb_out, &mut octx, out)?;
        anext = audio.next()?;
    }
    octx.write_trailer()
        .map_err(|e| MediaError::write(out, format!("finishing the file: {e}")))?;
    Ok(written)
}

fn write_audio(
    pkt: &mut ff::Packet,
    tb: ff::Rational,
    out_tb: ff::Rational,
    octx: &mut ff::format::context::Output,
    out: &Path,
) -> Result<(), MediaError> {
    pkt.set_stream(1);
    pkt.set_position(-1);
    pkt.rescale_ts(tb, out_tb);
    pkt.write_interleaved(octx)
        .map_err(|e| MediaError::write(out, format!("writing audio: {e}")))
}

#[cfg(test)]
mod tests {
    use rendermesh_protocol::Fit;

    use super::*;
    use crate::engine::conform::tests::{chunks_of, ffmpeg, render, spec};
    use crate::engine::pcm::decode_mono;

    /// Three rendered segments (20, 25 and 15 frames at 30 fps, 160×90) of a generated clip.
    fn segments(dir: &Path) -> Vec<PathBuf> {
        let (clip, _) = crate::engine::testclip::test_clip(dir, 320, 180, 50).unwrap();
        let chunks = chunks_of(&clip, dir, 10.0);
        [(20, 0.0), (25, 0.5), (15, 1.0)]
            .into_iter()
            .enumerate()
            .map(|(i, (frames, start))| {
                let out = dir.join(format!("seg{i}.nut"));
                let s = spec(160, 90, frames, start, 0, Fit::Fill);
                assert_eq!(render(&chunks, &s, &out).unwrap(), u64::from(frames));
                out
            })
            .collect()
    }

    /// A 44.1 kHz stereo tone of `secs` seconds, silent before `quiet_until` seconds.
    fn song(dir: &Path, name: &str, secs: f64, quiet_until: f64) -> PathBuf {
        let path = dir.join(name);
        let src = format!(
            "sine=frequency=440:sample_rate=44100:duration={secs},volume=volume=0:enable='lt(t,{quiet_until})'"
        );
        assert!(ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            &src,
            "-ac",
            "2",
            path.to_str().unwrap()
        ]));
        path
    }

    fn ffprobe(path: &Path, stream: &str) -> serde_json::Value {
        let out = std::process::Command::new("ffprobe")
            .args(["-v", "error", "-count_frames", "-select_streams", stream])
            .args(["-show_entries", "stream=nb_read_frames,r_frame_rate,avg_frame_rate,start_time,duration,codec_name,sample_rate"])
            .args(["-of", "json"])
            .arg(path)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["streams"][0].clone()
    }

    fn num(v: &serde_json::Value) -> f64 {
        v.as_str().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN)
    }

    fn rms(x: &[f32], from_s: f64, to_s: f64) -> f64 {
        let (a, b) = ((from_s * 44100.0) as usize, (to_s * 44100.0) as usize);
        let s: f64 = x[a..b].iter().map(|v| f64::from(*v).powi(2)).sum();
        (s / (b - a) as f64).sqrt()
    }

    /// Join, then check the output against what went in: the exact frame count and rate,
    /// audio as long as the video from t=0, the song's start cut to the sample (its tone
    /// begins 0.5 s in, as it does in the song), and a linear fade over the last second.
    fn check_join(container: &str, ext: &str, song_secs: f64, start_s: f64, quiet_until: f64) {
        let dir = tempfile::tempdir().unwrap();
        let segs = segments(dir.path());
        let song = song(dir.path(), "song.wav", song_secs, quiet_until);
        let out = dir.path().join(format!("montage.{ext}"));
        let n = join_montage(
            &segs,
            Rational::new(30, 1),
            &song,
            start_s,
            1.0,
            &out,
            container,
        )
        .unwrap();
        assert_eq!(n, 60);

        let v = ffprobe(&out, "v:0");
        assert_eq!(v["nb_read_frames"], "60", "{v}");
        assert_eq!(v["r_frame_rate"], "30/1", "{v}");
        assert_eq!(v["avg_frame_rate"], "30/1", "{v}");
        let a = ffprobe(&out, "a:0");
        assert_eq!(a["codec_name"], "aac", "{a}");
        assert_eq!(a["sample_rate"], "44100", "{a}");
        // MP4 keeps the AAC priming in an edit list; Matroska shifts both streams by it
        let (vs, as_) = (num(&v["start_time"]), num(&a["start_time"]));
        let slack = if container == "mp4" { 1e-3 } else { 0.03 };
        assert!(vs.abs() < slack && as_.abs() < slack, "{v} {a}");

        let mut pcm = Vec::new();
        decode_mono(&out, 44100, 0.0, |b| {
            pcm.extend_from_slice(b);
            true
        })
        .unwrap();
        if container != "mp4" {
            // Matroska does not mark the AAC priming: the decoder plays it first
            pcm.drain(..1024);
        }
        let secs = pcm.len() as f64 / 44100.0;
        assert!((secs - 2.0).abs() <= 1024.0 / 44100.0, "audio {secs} s");
        // the song is silent until `quiet_until`, so the tone starts at that minus start_s
        let onset = quiet_until - start_s;
        let (before, after) = (
            rms(&pcm, onset - 0.1, onset - 0.02),
            rms(&pcm, onset + 0.02, onset + 0.1),
        );
        assert!(
            before < 0.005 && after > 0.05,
            "onset at {onset}: {before} then {after}"
        );
        let (full, half, end) = (
            rms(&pcm, 0.7, 0.95),
            rms(&pcm, 1.45, 1.55),
            rms(&pcm, 1.9, 1.99),
        );
        assert!(end < 0.15 * full, "last 0.1 s {end} vs {full}");
        assert!((half / full - 0.5).abs() < 0.1, "mid-fade {half} vs {full}");
    }

    #[test]
    fn joined_montage_has_every_frame_and_the_song_cut_and_faded() {
        check_join("mp4", "mp4", 4.0, 0.5, 1.0);
    }

    /// A start far into the song is reached by seeking, still cut to the sample.
    #[test]
    fn a_late_start_in_the_song_is_cut_exactly_too() {
        check_join("matroska", "mkv", 8.0, 4.0, 4.5);
    }

    /// A song that ends before the video is padded with silence to the video's length.
    #[test]
    fn a_short_song_is_padded_to_the_video() {
        let dir = tempfile::tempdir().unwrap();
        let segs = segments(dir.path());
        let song = song(dir.path(), "short.wav", 1.0, 0.0);
        let out = dir.path().join("short.mp4");
        join_montage(&segs, Rational::new(30, 1), &song, 0.0, 0.0, &out, "mp4").unwrap();
        let mut pcm = Vec::new();
        decode_mono(&out, 44100, 0.0, |b| {
            pcm.extend_from_slice(b);
            true
        })
        .unwrap();
        assert!((pcm.len() as f64 / 44100.0 - 2.0).abs() <= 1024.0 / 44100.0);
        assert!(rms(&pcm, 0.2, 0.9) > 0.05 && rms(&pcm, 1.1, 1.9) < 0.005);
    }

    /// A missing song, a song without audio and a segment that is not media are errors, and
    /// no partial output is left behind.
    #[test]
    fn bad_inputs_are_errors_and_leave_no_output() {
        let dir = tempfile::tempdir().unwrap();
        let segs = segments(dir.path());
        let out = dir.path().join("bad.mp4");
        let fps = Rational::new(30, 1);
        let res = join_montage(
            &segs,
            fps,
            &dir.path().join("nope.wav"),
            0.0,
            1.0,
            &out,
            "mp4",
        );
        assert!(matches!(res, Err(MediaError::Missing { .. })), "{res:?}");
        assert!(!out.exists());
        let res = join_montage(&segs, fps, &segs[0], 0.0, 1.0, &out, "mp4");
        assert!(matches!(res, Err(MediaError::NoAudio { .. })), "{res:?}");
        assert!(!out.exists());
        let junk = dir.path().join("junk.nut");
        std::fs::write(&junk, b"not a segment").unwrap();
        let song = song(dir.path(), "song.wav", 3.0, 0.0);
        let with_junk = [segs[0].clone(), junk];
        let res = join_montage(&with_junk, fps, &song, 0.0, 1.0, &out, "mp4");
        assert!(matches!(res, Err(MediaError::NotMedia { .. })), "{res:?}");
        assert!(!out.exists());
        let res = join_montage(&[], fps, &song, 0.0, 1.0, &out, "mp4");
        assert!(res.is_err());
        assert!(!out.exists());
    }
}
