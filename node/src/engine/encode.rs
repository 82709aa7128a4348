//! Encode the frames of one chunk into an encoded segment (a NUT blob).
//!
//! Frames keep their source pts and the encoder works in the source time base, so segments
//! concatenate into exactly the source's timeline. Every segment starts with an IDR frame;
//! headers go into extradata (global header) so one container header fits all segments.

use std::path::Path;

use ffmpeg_next as ff;
use rendermesh_mesh::exec::ShardCtl;
use rendermesh_protocol::{EncodeOptions, FrameRange, VideoCodec};

use super::decode::decode_range;
use super::{ff_rational, MediaError};

/// Is this codec's software encoder in the linked FFmpeg?
pub fn encoder_available(codec: VideoCodec) -> bool {
    super::init();
    ff::encoder::find_by_name(codec.encoder_name()).is_some()
}

/// The codecs this build can encode, by name.
pub fn available_codecs() -> Vec<&'static str> {
    VideoCodec::all()
        .into_iter()
        .filter(|c| encoder_available(*c))
        .map(|c| c.name())
        .collect()
}

/// Encoder options from the job's settings. Quality maps onto each family's own knob
/// (documented in docs/architecture.md): software `crf`; NVENC `cq` (VBR, preset p4);
/// Quick Sync `global_quality` (ICQ); VAAPI and AMF constant `qp`; V4L2 M2M and
/// VideoToolbox have no quality scale and keep their default rate control.
pub(crate) fn encoder_options(o: &EncodeOptions, threads: usize) -> ff::Dictionary<'static> {
    let mut d = ff::Dictionary::new();
    let q = o.crf.to_string();
    let name = o.encoder_name();
    let family = name.rsplit('_').next().unwrap_or(name);
    match (o.encoder.is_some() && name.contains('_'), family) {
        (true, "nvenc") => {
            d.set("rc", "vbr");
            d.set("cq", &q);
            d.set("preset", o.preset.as_deref().unwrap_or("p4"));
            return d;
        }
        (true, "qsv") => {
            d.set("global_quality", &q);
            return d;
        }
        (true, "vaapi") => {
            d.set("rc_mode", "CQP");
            d.set("qp", &q);
            return d;
        }
        (true, "amf") => {
            d.set("rc", "cqp");
            d.set("qp_i", &q);
            d.set("qp_p", &q);
            return d;
        }
        (true, _) => return d,
        _ => {}
    }
    d.set("crf", &q);
    match o.codec {
        VideoCodec::H264 => {
            d.set("preset", o.preset.as_deref().unwrap_or("medium"));
            d.set("threads", &threads.to_string());
        }
        VideoCodec::H265 => {
            d.set("preset", o.preset.as_deref().unwrap_or("medium"));
            d.set("x265-params", &format!("log-level=error:pools={threads}"));
        }
        VideoCodec::Av1 => {
            d.set("preset", o.preset.as_deref().unwrap_or("8"));
        }
        VideoCodec::Vp9 => {
            d.set("b", "0");
            d.set("deadline", "good");
            d.set("cpu-used", o.preset.as_deref().unwrap_or("4"));
            d.set("row-mt", "1");
            d.set("threads", &threads.to_string());
        }
        // intra-only editing codecs: a profile instead of a rate factor
        VideoCodec::ProRes => {
            d = ff::Dictionary::new();
            d.set("profile", "proxy");
            d.set("threads", &threads.to_string());
        }
        VideoCodec::DnxHr => {
            d = ff::Dictionary::new();
            d.set("profile", "dnxhr_lb");
            d.set("threads", &threads.to_string());
        }
    }
    d
}

struct Open {
    encoder: ff::encoder::Video,
    scaler: Option<(ff::software::scaling::Context, ff::frame::Video)>,
    octx: ff::format::context::Output,
    enc_tb: ff::Rational,
    out_tb: ff::Rational,
}

/// Decode `range` from `chunk` and encode it into a NUT file at `out`. Returns frames encoded.
#[tracing::instrument(skip_all, fields(codec = options.codec.name(), crf = options.crf))]
pub fn encode_chunk(
    chunk: &Path,
    range: &FrameRange,
    options: &EncodeOptions,
    out: &Path,
    threads: usize,
    ctl: &ShardCtl<'_>,
) -> Result<u64, MediaError> {
    super::init();
    let name = options.encoder_name();
    let codec = ff::encoder::find_by_name(name).ok_or_else(|| MediaError::Encoder {
        encoder: name.into(),
        cause: "not available in this FFmpeg build".into(),
    })?;
    let enc_err = |e: ff::Error| MediaError::Encoder {
        encoder: name.into(),
        cause: e.to_string(),
    };
    let mut state: Option<Open> = None;
    let mut encoded = 0u64;
    let mut pkt = ff::Packet::empty();

    // progress counts frames the encoder has put out: frames fed to it run ahead by its
    // lookahead (a third or more of a chunk), and the coordinator judges from progress when
    // a run ends. A cancelled run stops here too: after the last frame is fed, the encoder
    // still has its lookahead to encode.
    let mut write_packets = |st: &mut Open, encoded: &mut u64| -> Result<(), MediaError> {
        while st.encoder.receive_packet(&mut pkt).is_ok() {
            if ctl.is_cancelled() {
                return Err(MediaError::Cancelled);
            }
            pkt.set_stream(0);
            pkt.rescale_ts(st.enc_tb, st.out_tb);
            pkt.write(&mut st.octx)
                .map_err(|e| MediaError::write(out, e))?;
            *encoded += 1;
            ctl.progress(*encoded);
        }
        Ok(())
    };

    let frames = decode_range(chunk, range, threads, false, |frame| {
        if ctl.is_cancelled() {
            return Err(MediaError::Cancelled);
        }
        if state.is_none() {
            state = Some(
                open_encoder(codec, frame, range, options, out, threads).map_err(|e| match e {
                    MediaError::Encoder { .. } | MediaError::Write { .. } => e,
                    other => MediaError::Encoder {
                        encoder: name.into(),
                        cause: other.to_string(),
                    },
                })?,
            );
        }
        let Some(st) = state.as_mut() else {
            return Ok(());
        };
        let send = match st.scaler.as_mut() {
            Some((sws, buf)) => {
                // A frame-threaded encoder (ProRes, DNxHR) keeps a reference to the frame
                // and reads it later: overwriting it would change the picture between the
                // encoder's rate control and its bit writing. A shared buffer is replaced.
                // SAFETY: `buf` is a valid frame; the calls read only its buffer refs.
                let shared = unsafe {
                    !buf.is_empty() && ff::ffi::av_frame_is_writable(buf.as_mut_ptr()) == 0
                };
                if shared {
                    *buf = ff::frame::Video::empty();
                }
                sws.run(frame, buf).map_err(enc_err)?;
                buf.set_pts(frame.pts());
                st.encoder.send_frame(buf)
            }
            None => {
                let mut f = frame.clone();
                f.set_kind(ff::picture::Type::None);
                st.encoder.send_frame(&f)
            }
        };
        send.map_err(enc_err)?;
        write_packets(st, &mut encoded)
    })?;
    let Some(mut st) = state else {
        return Err(MediaError::decode(chunk, "chunk holds no frames"));
    };
    st.encoder.send_eof().map_err(enc_err)?;
    write_packets(&mut st, &mut encoded)?;
    st.octx
        .write_trailer()
        .map_err(|e| MediaError::write(out, e))?;
    if encoded != frames {
        return Err(MediaError::Encoder {
            encoder: name.into(),
            cause: format!("encoded {encoded} packets for {frames} frames"),
        });
    }
    crate::engine::count_encoded(encoded);
    Ok(encoded)
}

fn open_encoder(
    codec: ff::Codec,
    frame: &ff::frame::Video,
    range: &FrameRange,
    options: &EncodeOptions,
    out: &Path,
    threads: usize,
) -> Result<Open, MediaError> {
    let name = options.encoder_name();
    let enc_err = |e: ff::Error| MediaError::Encoder {
        encoder: name.into(),
        cause: e.to_string(),
    };
    let mut octx = ff::format::output_as(&out, "nut").map_err(|e| MediaError::write(out, e))?;
    let mut ctx = ff::codec::context::Context::new_with_codec(codec);
    ctx.set_flags(ff::codec::Flags::GLOBAL_HEADER);
    let mut enc = ctx.encoder().video().map_err(enc_err)?;
    let supported: Vec<ff::format::Pixel> = codec
        .video()
        .ok()
        .and_then(|v| v.formats().map(|f| f.collect()))
        .unwrap_or_default();
    let src_fmt = frame.format();
    let fmt = if supported.is_empty() || supported.contains(&src_fmt) {
        src_fmt
    } else if supported.contains(&ff::format::Pixel::YUV420P) {
        ff::format::Pixel::YUV420P
    } else {
        supported[0]
    };
    enc.set_width(frame.width());
    enc.set_height(frame.height());
    enc.set_format(fmt);
    let tb = ff_rational(range.time_base);
    enc.set_time_base(tb);
    enc.set_frame_rate(Some(ff_rational(range.fps)));
    enc.set_aspect_ratio(frame.aspect_ratio());
    enc.set_colorspace(frame.color_space());
    enc.set_color_range(frame.color_range());
    let encoder = enc
        .open_as_with(codec, encoder_options(options, threads))
        .map_err(enc_err)?;
    let enc_tb = tb;
    {
        let mut ost = octx
            .add_stream(codec)
            .map_err(|e| MediaError::write(out, e))?;
        ost.set_parameters(&encoder);
        ost.set_time_base(tb);
        ost.set_avg_frame_rate(ff_rational(range.fps));
    }
    octx.write_header().map_err(|e| MediaError::write(out, e))?;
    let out_tb = octx.stream(0).map(|s| s.time_base()).unwrap_or(tb);
    let scaler = if fmt != src_fmt {
        let sws = ff::software::scaling::Context::get(
            src_fmt,
            frame.width(),
            frame.height(),
            fmt,
            frame.width(),
            frame.height(),
            ff::software::scaling::Flags::BICUBIC,
        )
        .map_err(enc_err)?;
        Some((sws, ff::frame::Video::empty()))
    } else {
        None
    };
    Ok(Open {
        encoder,
        scaler,
        octx,
        enc_tb,
        out_tb,
    })
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::path::PathBuf;

    use rendermesh_mesh::exec::CancelToken;

    use super::*;
    use crate::engine::testclip::test_clip;

    /// A generated 320×180 clip of `frames` frames, its output path and x264 options with
    /// `preset`; the dir holds them.
    fn x264_job(
        frames: u32,
        preset: &str,
    ) -> (
        tempfile::TempDir,
        PathBuf,
        FrameRange,
        PathBuf,
        EncodeOptions,
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (clip, range) = test_clip(dir.path(), 320, 180, frames).expect("clip");
        let out = dir.path().join("out.nut");
        let opts = EncodeOptions {
            codec: VideoCodec::H264,
            crf: 23,
            preset: Some(preset.into()),
            encoder: None,
            height: None,
        };
        (dir, clip, range, out, opts)
    }

    /// A run cancelled while the encoder flushes its lookahead stops there: with a 30-frame
    /// chunk and x264's 40-frame lookahead, every packet comes out after the last frame is fed.
    #[test]
    fn a_run_cancelled_while_the_encoder_flushes_stops() {
        let (_dir, clip, range, out, opts) = x264_job(30, "medium");
        let token = CancelToken::default();
        let reports = std::cell::Cell::new(0u32);
        let progress = |_| {
            reports.set(reports.get() + 1);
            token.cancel();
        };
        let res = encode_chunk(
            &clip,
            &range,
            &opts,
            &out,
            1,
            &ShardCtl::new(&progress, &token),
        );
        assert!(matches!(res, Err(MediaError::Cancelled)), "{res:?}");
        assert_eq!(reports.get(), 1, "it went on after the cancel");
    }

    /// CPU time this thread has used, in clock ticks (utime + stime of /proc/thread-self/stat).
    fn thread_ticks() -> u64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("thread stat");
        // fields after the command name, which is in parentheses and may hold spaces
        let rest = &stat[stat.rfind(')').expect("stat layout") + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime")
    }

    /// The coordinator judges when a run ends from its progress. x264 holds frames back for
    /// its lookahead, so progress must count frames it has put out, not frames fed to it:
    /// counted by frames fed, progress said "done" with a third or more of the work still
    /// to come, and the coordinator gave the last shards to a box it thought nearly free.
    #[test]
    fn progress_counts_frames_the_encoder_has_put_out() {
        let (_dir, clip, range, out, opts) = x264_job(90, "slow");
        let reports: RefCell<Vec<(u64, u64)>> = RefCell::new(Vec::new());
        let progress = |n: u64| reports.borrow_mut().push((n, thread_ticks()));
        let token = CancelToken::default();
        let start = thread_ticks();
        let encoded = encode_chunk(
            &clip,
            &range,
            &opts,
            &out,
            1,
            &ShardCtl::new(&progress, &token),
        )
        .expect("encode");
        let end = thread_ticks();
        let reports = reports.into_inner();
        assert_eq!(encoded, 90);
        assert!(reports.windows(2).all(|w| w[0].0 <= w[1].0), "{reports:?}");
        let &(last, _) = reports.last().expect("progress reported");
        assert_eq!(last, 90);
        let at_all_done = reports.iter().find(|r| r.0 == 90).map_or(end, |r| r.1);
        let left = (end - at_all_done) as f64 / (end - start).max(1) as f64;
        assert!(
            left < 0.15,
            "{:.0} % of the encode's CPU time came after progress said all {} frames were done ({} ticks in all)",
            100.0 * left,
            last,
            end - start
        );
    }
}
