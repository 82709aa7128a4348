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

/// A hardware encoder family's own options for quality `crf` (on x264's scale, 0 best to 51
/// worst; the hardware H.264 and H.265 encoders take 0–51 too): NVENC `cq` in VBR, where 0
/// would mean "automatic" so the best is 1; Quick Sync ICQ `global_quality`, 1–51; VAAPI
/// and AMF a constant `qp`, 0–51. Families without a quality scale (V4L2 M2M,
/// VideoToolbox) get nothing and keep their default rate control.
pub(crate) fn hardware_quality(
    family: &str,
    crf: u8,
    preset: Option<&str>,
) -> Vec<(&'static str, String)> {
    let q = |lo: u8| crf.clamp(lo, 51).to_string();
    match family {
        "nvenc" => vec![
            ("rc", "vbr".into()),
            ("cq", q(1)),
            ("preset", preset.unwrap_or("p4").into()),
        ],
        "qsv" => vec![("global_quality", q(1))],
        "vaapi" => vec![("rc_mode", "CQP".into()), ("qp", q(0))],
        "amf" => vec![("rc", "cqp".into()), ("qp_i", q(0)), ("qp_p", q(0))],
        _ => Vec::new(),
    }
}

/// The instruction sets x264 may use here, when not all it would pick itself.
///
/// x264's AVX-512 routines let bytes it never wrote steer its rate control: the same frames
/// encoded twice on one box came out different whenever the memory under the encoder held
/// something else (a node that had run other jobs against a fresh process), so a shard re-run
/// or resumed on another node no longer matched. Up to AVX2, x264's output depends on the
/// frames and options alone. On a CPU with AVX-512 the encoder is held to AVX2 (and the
/// 64-byte cache line every such CPU has); elsewhere it picks its own.
pub(crate) fn x264_asm() -> Option<&'static str> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx2")
    {
        return Some("AVX2,Cache64");
    }
    None
}

/// Encoder options from the job's settings. Quality maps onto each family's own knob
/// (documented in docs/architecture.md): software `crf`; NVENC `cq` (VBR, preset p4);
/// Quick Sync `global_quality` (ICQ); VAAPI and AMF constant `qp`; V4L2 M2M and
/// VideoToolbox have no quality scale and keep their default rate control.
pub(crate) fn encoder_options(o: &EncodeOptions, threads: usize) -> ff::Dictionary<'static> {
    let mut d = ff::Dictionary::new();
    let name = o.encoder_name();
    let family = name.rsplit('_').next().unwrap_or(name);
    // a named encoder other than the codec's software one (e.g. "h264_nvenc") is hardware
    let hardware = o.encoder.is_some() && name != o.codec.encoder_name() && name.contains('_');
    if hardware {
        for (key, value) in hardware_quality(family, o.crf, o.preset.as_deref()) {
            d.set(key, &value);
        }
        return d;
    }
    d.set("crf", &o.crf.to_string());
    match o.codec {
        VideoCodec::H264 => {
            d.set("preset", o.preset.as_deref().unwrap_or("medium"));
            d.set("threads", &threads.to_string());
            if let Some(asm) = x264_asm() {
                d.set("x264-params", &format!("asm={asm}"));
            }
        }
        VideoCodec::H265 => {
            d.set("preset", o.preset.as_deref().unwrap_or("medium"));
            // Without wavefront rows: with them, x265's threads race, and 2 of 12 encodes of
            // one 60-frame shard on 2 threads came out different (bench/encoder-determinism.sh).
            // Without weighted prediction: its motion search reads rows of a weighted
            // reference not written yet, so a shard's bytes depended on what the memory under
            // the encoder held before (a fresh process against a node that had run jobs).
            d.set(
                "x265-params",
                &format!("log-level=error:pools={threads}:wpp=0:weightp=0"),
            );
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

/// The smallest frame (width, height) FFmpeg's DNxHR encoder takes.
pub const DNXHR_MIN: (u32, u32) = (256, 120);

/// The size of a frame of `width`×`height` with sample aspect ratio `sar` (0/0 or
/// negative: square) scaled to `to_height`: the height made even (rounded down, at least
/// 2), the width that keeps the display aspect at square pixels, rounded to the nearest
/// even number (at least 2).
pub fn scaled_size(width: u32, height: u32, sar: ff::Rational, to_height: u32) -> (u32, u32) {
    let out_h = (to_height & !1).max(2);
    let (num, den) = if sar.numerator() > 0 && sar.denominator() > 0 {
        (sar.numerator() as u128, sar.denominator() as u128)
    } else {
        (1, 1)
    };
    // display width at out_h, in units of two pixels, rounded to nearest:
    // width·num/den · out_h/height / 2
    let a = width as u128 * num * out_h as u128;
    let b = den * height.max(1) as u128 * 2;
    let pairs = (2 * a + b) / (2 * b);
    let out_w = u32::try_from(pairs * 2).unwrap_or(u32::MAX - 1).max(2);
    (out_w, out_h)
}

/// The pixel format an editing codec's software encoder must get, whatever the source's:
/// ProRes proxy is 10-bit 4:2:2; DNxHR LB is 8-bit 4:2:2 (it refuses 10-bit input).
fn intermediate_format(encoder: &str) -> Option<ff::format::Pixel> {
    if is_vaapi(encoder) {
        // uploaded to the GPU from this format (see [`super::hwframes`])
        Some(super::hwframes::UPLOAD_FORMAT)
    } else if encoder == VideoCodec::ProRes.encoder_name() {
        Some(ff::format::Pixel::YUV422P10LE)
    } else if encoder == VideoCodec::DnxHr.encoder_name() {
        Some(ff::format::Pixel::YUV422P)
    } else {
        None
    }
}

/// A VAAPI encoder takes frames on the GPU only.
fn is_vaapi(encoder: &str) -> bool {
    encoder.ends_with("_vaapi")
}

struct Open {
    encoder: ff::encoder::Video,
    scaler: Option<(ff::software::scaling::Context, ff::frame::Video)>,
    /// Frames on the GPU, for a VAAPI encoder.
    upload: Option<super::hwframes::HwFrames>,
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
        let hw_err = |cause: String| MediaError::Encoder {
            encoder: name.into(),
            cause,
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
                match st.upload.as_mut() {
                    Some(up) => {
                        let on_gpu = up.upload(buf).map_err(hw_err)?;
                        st.encoder.send_frame(&on_gpu)
                    }
                    None => st.encoder.send_frame(buf),
                }
            }
            None => {
                let mut f = frame.clone();
                f.set_kind(ff::picture::Type::None);
                match st.upload.as_mut() {
                    Some(up) => {
                        let on_gpu = up.upload(&f).map_err(hw_err)?;
                        st.encoder.send_frame(&on_gpu)
                    }
                    None => st.encoder.send_frame(&f),
                }
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
    let fmt = match intermediate_format(name) {
        Some(f) => f,
        None if supported.is_empty() || supported.contains(&src_fmt) => src_fmt,
        None if supported.contains(&ff::format::Pixel::YUV420P) => ff::format::Pixel::YUV420P,
        None => supported[0],
    };
    let (src_w, src_h) = (frame.width(), frame.height());
    let (width, height, sar) = match options.height {
        Some(h) => {
            let (w, h) = scaled_size(src_w, src_h, frame.aspect_ratio(), h);
            (w, h, ff::Rational::new(1, 1))
        }
        None => (src_w, src_h, frame.aspect_ratio()),
    };
    if name == VideoCodec::DnxHr.encoder_name() && (width < DNXHR_MIN.0 || height < DNXHR_MIN.1) {
        return Err(MediaError::Encoder {
            encoder: name.into(),
            cause: format!(
                "DNxHR needs a frame of at least {}x{}; this one is {width}x{height}",
                DNXHR_MIN.0, DNXHR_MIN.1
            ),
        });
    }
    enc.set_width(width);
    enc.set_height(height);
    enc.set_format(fmt);
    let tb = ff_rational(range.time_base);
    enc.set_time_base(tb);
    enc.set_frame_rate(Some(ff_rational(range.fps)));
    enc.set_aspect_ratio(sar);
    enc.set_colorspace(frame.color_space());
    enc.set_color_range(frame.color_range());
    let upload = if is_vaapi(name) {
        let hw = super::hwframes::HwFrames::vaapi(width, height).map_err(|cause| {
            MediaError::Encoder {
                encoder: name.into(),
                cause,
            }
        })?;
        hw.attach(&mut enc).map_err(|cause| MediaError::Encoder {
            encoder: name.into(),
            cause,
        })?;
        tracing::debug!(node = %hw.node.display(), "VAAPI frames on the GPU");
        Some(hw)
    } else {
        None
    };
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
    let resize = (width, height) != (src_w, src_h);
    let scaler = if fmt != src_fmt || resize {
        // A resize (proxies, mostly downscales) uses bilinear: swscale widens its kernel by
        // the downscale ratio, so it does not alias, at about half bicubic's cost per pixel;
        // an editing proxy is for cutting, not for grading. A format conversion alone keeps
        // bicubic (chroma resampling only).
        let filter = if resize {
            ff::software::scaling::Flags::BILINEAR
        } else {
            ff::software::scaling::Flags::BICUBIC
        };
        let sws =
            ff::software::scaling::Context::get(src_fmt, src_w, src_h, fmt, width, height, filter)
                .map_err(enc_err)?;
        Some((sws, ff::frame::Video::empty()))
    } else {
        None
    };
    Ok(Open {
        encoder,
        scaler,
        upload,
        octx,
        enc_tb,
        out_tb,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::cell::RefCell;
    use std::path::PathBuf;

    use rendermesh_mesh::exec::CancelToken;

    use super::*;
    use crate::engine::conform::tests::{chunks_of, ffmpeg};
    use crate::engine::testclip::test_clip;

    /// Make `out` with the ffmpeg command line `args` (split at spaces) and assert it worked.
    pub(crate) fn make(out: &Path, args: &str) {
        let mut all: Vec<&str> = args.split_whitespace().collect();
        all.push(out.to_str().expect("utf-8 path"));
        assert!(ffmpeg(&all), "ffmpeg {args} {}", out.display());
    }

    /// `ffprobe -show_streams -show_format -count_packets` of `path`, as JSON.
    pub(crate) fn ffprobe(path: &Path) -> serde_json::Value {
        let out = std::process::Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-count_packets",
                "-show_streams",
                "-show_format",
            ])
            .args(["-of", "json"])
            .arg(path)
            .output()
            .expect("ffprobe runs");
        assert!(out.status.success(), "ffprobe {}", path.display());
        serde_json::from_slice(&out.stdout).expect("ffprobe json")
    }

    /// The first stream of `kind` ("video", "audio", "data") in an ffprobe answer.
    pub(crate) fn stream<'a>(probe: &'a serde_json::Value, kind: &str) -> &'a serde_json::Value {
        probe["streams"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["codec_type"] == kind))
            .unwrap_or_else(|| panic!("no {kind} stream in {probe}"))
    }

    /// A number ffprobe wrote as a string (or as a number).
    pub(crate) fn num(v: &serde_json::Value) -> f64 {
        v.as_f64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .unwrap_or(f64::NAN)
    }

    /// Encode every chunk of `src` (cut about every 0.4 s) with `opts`: each segment's path.
    fn encode_all(src: &Path, dir: &Path, opts: &EncodeOptions) -> Vec<PathBuf> {
        let chunks = chunks_of(src, dir, 0.4);
        assert!(chunks.len() > 1, "the source is cut into several chunks");
        chunks
            .iter()
            .enumerate()
            .map(|(i, (chunk, range))| {
                let out = dir.join(format!("seg{i}.nut"));
                let n = encode_chunk(chunk, range, opts, &out, 2, &ShardCtl::detached())
                    .expect("encode");
                assert_eq!(n, range.frames, "chunk {i}");
                out
            })
            .collect()
    }

    /// Video packets of all `segments` and the first one's video stream.
    fn segments_video(segments: &[PathBuf]) -> (u64, serde_json::Value) {
        let probes: Vec<serde_json::Value> = segments.iter().map(|s| ffprobe(s)).collect();
        let packets = probes
            .iter()
            .map(|p| num(&stream(p, "video")["nb_read_packets"]) as u64)
            .sum();
        (packets, stream(&probes[0], "video").clone())
    }

    fn opts(codec: VideoCodec, height: Option<u32>) -> EncodeOptions {
        EncodeOptions {
            codec,
            crf: 28,
            preset: Some("ultrafast".into()).filter(|_| codec == VideoCodec::H264),
            encoder: None,
            height,
        }
    }

    #[test]
    fn quality_maps_onto_each_hardware_family_within_its_range() {
        // (family, crf, options): the best, the usual, the worst and beyond
        type Row = (&'static str, u8, &'static [(&'static str, &'static str)]);
        let table: &[Row] = &[
            ("nvenc", 0, &[("rc", "vbr"), ("cq", "1"), ("preset", "p4")]),
            (
                "nvenc",
                23,
                &[("rc", "vbr"), ("cq", "23"), ("preset", "p4")],
            ),
            (
                "nvenc",
                51,
                &[("rc", "vbr"), ("cq", "51"), ("preset", "p4")],
            ),
            (
                "nvenc",
                63,
                &[("rc", "vbr"), ("cq", "51"), ("preset", "p4")],
            ),
            ("qsv", 0, &[("global_quality", "1")]),
            ("qsv", 23, &[("global_quality", "23")]),
            ("qsv", 70, &[("global_quality", "51")]),
            ("vaapi", 0, &[("rc_mode", "CQP"), ("qp", "0")]),
            ("vaapi", 23, &[("rc_mode", "CQP"), ("qp", "23")]),
            ("vaapi", 99, &[("rc_mode", "CQP"), ("qp", "51")]),
            ("amf", 18, &[("rc", "cqp"), ("qp_i", "18"), ("qp_p", "18")]),
            ("amf", 60, &[("rc", "cqp"), ("qp_i", "51"), ("qp_p", "51")]),
            ("v4l2m2m", 23, &[]),
            ("videotoolbox", 23, &[]),
        ];
        for &(family, crf, want) in table {
            let want: Vec<(&str, String)> = want.iter().map(|&(k, v)| (k, v.into())).collect();
            assert_eq!(
                hardware_quality(family, crf, None),
                want,
                "{family} crf {crf}"
            );
        }
        // a preset asked for reaches NVENC
        assert!(hardware_quality("nvenc", 23, Some("p7")).contains(&("preset", "p7".into())));
        // and the encoder options of a named hardware encoder are the family's
        let o = EncodeOptions {
            encoder: Some("h264_vaapi".into()),
            crf: 30,
            ..EncodeOptions::default()
        };
        let d = encoder_options(&o, 2);
        assert_eq!(d.get("qp"), Some("30"));
        assert_eq!(d.get("crf"), None);
    }

    #[test]
    fn scaled_sizes_follow_the_display_aspect_in_even_pixels() {
        let sq = ff::Rational::new(1, 1);
        assert_eq!(scaled_size(320, 240, sq, 120), (160, 120));
        assert_eq!(scaled_size(1920, 1080, sq, 540), (960, 540));
        // NTSC 16:9 anamorphic: 853.3 display pixels at 480 lines
        assert_eq!(
            scaled_size(720, 480, ff::Rational::new(32, 27), 120),
            (214, 120)
        );
        assert_eq!(
            scaled_size(720, 480, ff::Rational::new(32, 27), 480),
            (854, 480)
        );
        // unknown SAR is square; an odd height is made even (down)
        assert_eq!(
            scaled_size(640, 480, ff::Rational::new(0, 1), 121),
            (160, 120)
        );
        assert_eq!(scaled_size(1282, 720, sq, 540), (962, 540));
        assert_eq!(scaled_size(4, 4000, sq, 16), (2, 16));
    }

    /// A source scaled to 120 lines has the size of its display aspect at 120 lines, square
    /// pixels, and every frame.
    #[test]
    fn an_encode_scales_to_the_height_asked_keeping_the_display_aspect() {
        for (size, sar, want) in [
            ("320x240", "1", (160, 120)),
            ("720x480", "32/27", (214, 120)),
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            let src = dir.path().join("src.mp4");
            make(
                &src,
                &format!(
                    "-f lavfi -i testsrc2=size={size}:rate=25 -frames:v 30 -vf setsar={sar} \
                     -c:v libx264 -preset ultrafast -g 10"
                ),
            );
            let segs = encode_all(&src, dir.path(), &opts(VideoCodec::H264, Some(120)));
            let (packets, v) = segments_video(&segs);
            assert_eq!(packets, 30, "{size}");
            assert_eq!(
                (v["width"].as_u64(), v["height"].as_u64()),
                (Some(want.0 as u64), Some(want.1 as u64)),
                "{size} SAR {sar}"
            );
            let sar_out = v["sample_aspect_ratio"].as_str().unwrap_or("1:1");
            assert_eq!(sar_out, "1:1", "{size}");
        }
    }

    /// No height keeps the source's size and aspect ratio.
    #[test]
    fn an_encode_without_a_height_keeps_the_source_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src.mp4");
        make(
            &src,
            "-f lavfi -i testsrc2=size=720x480:rate=25 -frames:v 20 -vf setsar=32/27 \
             -c:v libx264 -preset ultrafast -g 10",
        );
        let segs = encode_all(&src, dir.path(), &opts(VideoCodec::H264, None));
        let (packets, v) = segments_video(&segs);
        assert_eq!(packets, 20);
        assert_eq!(
            (v["width"].as_u64(), v["height"].as_u64()),
            (Some(720), Some(480))
        );
        assert_eq!(v["sample_aspect_ratio"], "32:27");
    }

    /// A VAAPI encode goes through frames on the GPU: every frame uploaded and encoded, at
    /// the size asked. Runs where a render node takes a VAAPI device; elsewhere it says loudly
    /// that it did not run, and why.
    #[test]
    fn a_vaapi_encode_uploads_every_frame_where_a_render_node_exists() {
        use crate::engine::hwframes::{render_nodes, HwFrames};
        let skip = |why: String| {
            eprintln!("SKIPPED: the VAAPI hardware-frame path is not exercised on this box: {why}");
        };
        if render_nodes().is_empty() {
            return skip("no DRM render node (/dev/dri/renderD*)".into());
        }
        if ff::encoder::find_by_name("h264_vaapi").is_none() {
            return skip("this FFmpeg build has no h264_vaapi".into());
        }
        if let Err(e) = HwFrames::vaapi(320, 240) {
            return skip(format!("no render node takes a VAAPI device: {e}"));
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src.mp4");
        make(
            &src,
            "-f lavfi -i testsrc2=size=640x480:rate=25 -frames:v 20 -c:v libx264 -preset ultrafast -g 10",
        );
        let mut o = opts(VideoCodec::H264, Some(240));
        o.encoder = Some("h264_vaapi".into());
        o.preset = None;
        let segs = encode_all(&src, dir.path(), &o);
        let (packets, v) = segments_video(&segs);
        assert_eq!(packets, 20);
        assert_eq!(
            (v["width"].as_u64(), v["height"].as_u64()),
            (Some(320), Some(240))
        );
    }

    /// ProRes is written as 10-bit 4:2:2 proxy and DNxHR as 8-bit 4:2:2 LB, whatever the
    /// source's format (ProRes proxy would take 4:4:4 and DNxHR LB refuses 10-bit 4:2:2),
    /// scaled to odd-ish widths or not, every frame.
    #[test]
    fn editing_codecs_get_their_pixel_format_and_profile() {
        struct Case {
            codec: VideoCodec,
            src_size: &'static str,
            src_pix: &'static str,
            height: Option<u32>,
            size: (u64, u64),
            pix: &'static str,
            profile: &'static str,
        }
        let cases = [
            Case {
                codec: VideoCodec::ProRes,
                src_size: "960x720",
                src_pix: "yuv444p10le",
                height: Some(540),
                size: (720, 540),
                pix: "yuv422p10le",
                profile: "Proxy",
            },
            Case {
                codec: VideoCodec::ProRes,
                src_size: "320x240",
                src_pix: "yuv420p",
                height: None,
                size: (320, 240),
                pix: "yuv422p10le",
                profile: "Proxy",
            },
            Case {
                codec: VideoCodec::DnxHr,
                src_size: "1282x720",
                src_pix: "yuv422p10le",
                height: Some(540),
                size: (962, 540),
                pix: "yuv422p",
                profile: "DNXHR LB",
            },
        ];
        for c in cases {
            let name = c.codec.name();
            // Debian's FFmpeg has every one: a build without it is a broken setup
            assert!(
                encoder_available(c.codec),
                "this FFmpeg build has no {name} encoder"
            );
            let dir = tempfile::tempdir().expect("tempdir");
            let src = dir.path().join("src.mkv");
            make(
                &src,
                &format!(
                    "-f lavfi -i testsrc2=size={}:rate=25 -frames:v 30 -pix_fmt {} \
                     -c:v libx264 -preset ultrafast -g 6",
                    c.src_size, c.src_pix
                ),
            );
            let segs = encode_all(&src, dir.path(), &opts(c.codec, c.height));
            let (packets, v) = segments_video(&segs);
            let what = format!("{name} from {} {}", c.src_size, c.src_pix);
            assert_eq!(packets, 30, "{what}");
            assert_eq!(v["pix_fmt"], c.pix, "{what}");
            assert_eq!(v["profile"], c.profile, "{what}");
            let size = (v["width"].as_u64(), v["height"].as_u64());
            assert_eq!(size, (Some(c.size.0), Some(c.size.1)), "{what}");
        }
    }

    /// DNxHR below its smallest frame fails with a cause that says so.
    #[test]
    fn dnxhr_below_its_smallest_frame_says_why() {
        assert!(
            encoder_available(VideoCodec::DnxHr),
            "this FFmpeg build has no DNxHR encoder"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let (clip, range) = test_clip(dir.path(), 320, 180, 4).expect("clip");
        let out = dir.path().join("out.nut");
        let res = encode_chunk(
            &clip,
            &range,
            &opts(VideoCodec::DnxHr, Some(100)),
            &out,
            1,
            &ShardCtl::detached(),
        );
        match res {
            Err(MediaError::Encoder { cause, .. }) => assert!(cause.contains("256x120"), "{cause}"),
            other => panic!("{other:?}"),
        }
    }

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
