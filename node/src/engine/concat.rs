//! Join encoded segments into the output file and mux the source audio once.
//!
//! Video packets keep the source pts; decode timestamps are kept monotonic across joins.
//! Audio comes from the source once (see [`super::audio`]), so joins cannot drift it. The
//! source's start timecode, when it has one, goes on the output (a `tmcd` track in
//! MP4/QuickTime).

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

/// How [`concat`] writes its output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JoinOptions {
    /// The source's audio decoded and written as uncompressed PCM (16-bit, 24-bit for a
    /// deeper source) at its rate and layout, as editing proxies in QuickTime want; the
    /// container must hold PCM (.mov, .mkv). Off: copied, or encoded to AAC (Opus for
    /// WebM) when the container cannot hold the source's codec.
    pub pcm_audio: bool,
}

/// Write `out` (container `format`) from the encoded `segments` and the audio of `source`,
/// with the source's start timecode (`probe.timecode`). Returns the number of video frames
/// written.
#[tracing::instrument(skip_all, fields(out = %out.display(), segments = segments.len()))]
pub fn concat(
    segments: &[PathBuf],
    source: &Path,
    probe: &Probe,
    out: &Path,
    format: &str,
    options: JoinOptions,
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
        let vcodec = vparams.id();
        ost.set_parameters(vparams);
        ost.set_time_base(vtb_in);
        ost.set_avg_frame_rate(super::ff_rational(probe.fps));
        // The muxer picks its own tag, except for ProRes: there the encoder's tag names the
        // profile (apco = proxy), and QuickTime's default tag would call it HQ.
        if vcodec != ff::codec::Id::PRORES {
            // SAFETY: parameters were just allocated by add_stream.
            unsafe { (*ost.parameters().as_mut_ptr()).codec_tag = 0 };
        }
        if let Some(tc) = &probe.timecode {
            // the MP4/QuickTime muxer makes a tmcd track of a video stream's timecode
            let mut tags = ff::Dictionary::new();
            tags.set("timecode", tc);
            ost.set_metadata(tags);
        }
    }
    if let Some(tc) = &probe.timecode {
        let mut tags = ff::Dictionary::new();
        tags.set("timecode", tc);
        octx.set_metadata(tags);
    }
    let audio_mode = if options.pcm_audio {
        AudioMode::Pcm
    } else {
        AudioMode::Auto
    };
    let mut audio = match &probe.audio {
        Some(a) => Some(AudioTrack::add(
            source, a.index, &mut octx, out, format, audio_mode,
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

#[cfg(test)]
mod tests {
    use rendermesh_mesh::exec::ShardCtl;
    use rendermesh_protocol::{EncodeOptions, VideoCodec};

    use super::*;
    use crate::engine::conform::tests::chunks_of;
    use crate::engine::encode::encode_chunk;
    use crate::engine::encode::tests::{ffprobe, make, num, stream};
    use crate::engine::probe::probe;

    /// A 2 s 320×240 25 fps H.264 source with a 48 kHz AAC tone and start timecode
    /// 01:02:03:04, in `name` (its extension picks the container).
    fn source_with_timecode(dir: &Path, name: &str) -> PathBuf {
        source_at(dir, name, "25", "01:02:03:04")
    }

    /// A 2 s 320×240 H.264 source at `rate` with a 48 kHz AAC tone and start timecode `tc`.
    fn source_at(dir: &Path, name: &str, rate: &str, tc: &str) -> PathBuf {
        let src = dir.join(name);
        make(
            &src,
            &format!(
                "-f lavfi -i testsrc2=size=320x240:rate={rate} \
                 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 2 -timecode {tc} \
                 -c:v libx264 -preset ultrafast -g 10 -c:a aac"
            ),
        );
        src
    }

    /// Encode `src` in chunks with `opts` and join the segments into `out`.
    fn transcode(
        src: &Path,
        dir: &Path,
        opts: &EncodeOptions,
        out: &Path,
        join: JoinOptions,
    ) -> Result<u64, MediaError> {
        let p = probe(src).expect("probe");
        let segs: Vec<PathBuf> = chunks_of(src, dir, 0.5)
            .iter()
            .enumerate()
            .map(|(i, (chunk, range))| {
                let seg = dir.join(format!("seg{i}.nut"));
                encode_chunk(chunk, range, opts, &seg, 2, &ShardCtl::detached()).expect("encode");
                seg
            })
            .collect();
        let format = container_for(out)?;
        concat(&segs, src, &p, out, &format, join)
    }

    /// The timecode ffprobe reads from a file: the container's, else a stream's.
    fn timecode_of(probe: &serde_json::Value) -> Option<String> {
        let tag = |v: &serde_json::Value| v["tags"]["timecode"].as_str().map(str::to_string);
        tag(&probe["format"]).or_else(|| {
            probe["streams"]
                .as_array()
                .and_then(|s| s.iter().find_map(tag))
        })
    }

    /// An editing proxy (ProRes, DNxHR) joined with PCM audio into QuickTime keeps the
    /// source's start timecode, every video frame, and the source's audio length in
    /// 16-bit PCM.
    #[test]
    fn a_proxy_join_keeps_timecode_frames_and_audio_length_in_pcm() {
        for (codec, height, profile) in [
            (VideoCodec::ProRes, Some(120), "Proxy"),
            (VideoCodec::DnxHr, None, "DNXHR LB"),
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            let src = source_with_timecode(dir.path(), "src.mov");
            assert_eq!(
                probe(&src).expect("probe").timecode.as_deref(),
                Some("01:02:03:04")
            );
            let out = dir.path().join("proxy.mov");
            let opts = EncodeOptions {
                codec,
                crf: 0,
                preset: None,
                encoder: None,
                height,
            };
            let frames = transcode(
                &src,
                dir.path(),
                &opts,
                &out,
                JoinOptions { pcm_audio: true },
            )
            .expect("join");
            assert_eq!(frames, 50, "{}", codec.name());

            let (s, o) = (ffprobe(&src), ffprobe(&out));
            let name = codec.name();
            assert_eq!(
                timecode_of(&o).as_deref(),
                Some("01:02:03:04"),
                "{name}: {o}"
            );
            let v = stream(&o, "video");
            assert_eq!(num(&v["nb_read_packets"]), 50.0, "{name}");
            assert_eq!(v["profile"], profile, "{name}");
            assert_eq!(v["r_frame_rate"], "25/1", "{name}");
            let a = stream(&o, "audio");
            assert_eq!(a["codec_name"], "pcm_s16le", "{name}");
            assert_eq!(a["sample_rate"], "48000", "{name}");
            let src_audio = num(&stream(&s, "audio")["duration"]);
            let out_audio = num(&a["duration"]);
            assert!(
                (out_audio - src_audio).abs() <= 1024.0 / 48000.0,
                "{name}: audio {out_audio} s, source {src_audio} s"
            );
            let src_start = num(&stream(&s, "audio")["start_time"]);
            let out_start = num(&a["start_time"]);
            assert!(
                (out_start - src_start).abs() <= 1024.0 / 48000.0,
                "{name}: audio starts at {out_start} s, source {src_start} s"
            );
        }
    }

    /// An ordinary transcode keeps the source's timecode too (drop-frame at 29.97 as well),
    /// and its AAC audio by copy.
    #[test]
    fn a_transcode_keeps_the_timecode() {
        for (name, rate, tc, frames) in [
            ("src.mp4", "25", "01:02:03:04", 50),
            ("src.mov", "30000/1001", "00:59:59;28", 60),
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            let src = source_at(dir.path(), name, rate, tc);
            let out = dir.path().join(format!("out.{}", &name[4..]));
            let opts = EncodeOptions {
                codec: VideoCodec::H264,
                crf: 30,
                preset: Some("ultrafast".into()),
                encoder: None,
                height: None,
            };
            let n = transcode(&src, dir.path(), &opts, &out, JoinOptions::default()).expect("join");
            assert_eq!(n, frames, "{name}");
            let o = ffprobe(&out);
            assert_eq!(timecode_of(&o).as_deref(), Some(tc), "{name}: {o}");
            assert_eq!(stream(&o, "audio")["codec_name"], "aac", "{name}");
        }
    }

    /// A source without a timecode gives an output without one.
    #[test]
    fn no_timecode_in_none_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src.mp4");
        make(
            &src,
            "-f lavfi -i testsrc2=size=320x240:rate=25 -t 1 \
             -c:v libx264 -preset ultrafast -g 10",
        );
        assert_eq!(probe(&src).expect("probe").timecode, None);
        let out = dir.path().join("out.mov");
        let opts = EncodeOptions {
            codec: VideoCodec::H264,
            crf: 30,
            preset: Some("ultrafast".into()),
            encoder: None,
            height: None,
        };
        transcode(&src, dir.path(), &opts, &out, JoinOptions::default()).expect("join");
        assert_eq!(timecode_of(&ffprobe(&out)), None);
    }

    /// PCM audio into a container that cannot hold it is refused with the way out.
    #[test]
    fn pcm_audio_into_mp4_says_which_containers_hold_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = source_with_timecode(dir.path(), "src.mov");
        let out = dir.path().join("out.mp4");
        let opts = EncodeOptions {
            codec: VideoCodec::H264,
            crf: 30,
            preset: Some("ultrafast".into()),
            encoder: None,
            height: Some(120),
        };
        let err = transcode(
            &src,
            dir.path(),
            &opts,
            &out,
            JoinOptions { pcm_audio: true },
        )
        .expect_err("mp4 holds no PCM");
        assert!(err.to_string().contains(".mov"), "{err}");
    }
}
