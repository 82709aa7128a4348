//! Render one montage shot: decode source chunks, conform the frames, encode a segment.
//!
//! Output frame `k` shows the source frame on screen at `start_s + k / fps`, so any source
//! rate (variable ones too) becomes the output rate by repeating or dropping frames. Only
//! the frame on screen is held, however long the shot. Each chosen frame is rotated upright,
//! scaled by its display aspect (sample aspect ratio applied) to cover ([`Fit::Fill`], centre
//! crop) or fit inside ([`Fit::Fit`], black bars) the output size, and converted to
//! limited-range BT.709 yuv420p, through one libavfilter graph. Segments of the same spec and
//! options have identical codec parameters (global headers), so they join by stream copy.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use ffmpeg_next as ff;
use rendermesh_mesh::exec::ShardCtl;
use rendermesh_protocol::{EncodeOptions, Fit, FrameRange, RenderSpec};

use super::decode::decode_range;
use super::encode::encoder_options;
use super::{ff_rational, MediaError};

/// A frame counts as on screen at `t` when it starts no later than this after `t`.
const ON_SCREEN_SLACK_S: f64 = 1e-6;

/// Render `spec` from `chunks` (chunk blobs in time order, each with the range it owns) into
/// a NUT file at `out`, encoded with `options`. Returns the frames written, which equal
/// `spec.frames`. On error a partial `out` may be left behind; removing it is the caller's
/// job. Progress reports count encoded frames; a cancelled `ctl` ends the run with
/// [`MediaError::Cancelled`].
#[tracing::instrument(skip_all, fields(frames = spec.frames, out = %out.display()))]
pub fn render_shot(
    chunks: &[(PathBuf, FrameRange)],
    spec: &RenderSpec,
    options: &EncodeOptions,
    out: &Path,
    threads: usize,
    ctl: &ShardCtl<'_>,
) -> Result<u64, MediaError> {
    super::init();
    spec.validate()
        .map_err(|e| MediaError::other(out, format!("bad render spec: {e}")))?;
    let mut r = Renderer::open(spec, options, out, threads, ctl)?;
    let total = u64::from(spec.frames);
    let (fps_num, fps_den) = (f64::from(spec.fps.num), f64::from(spec.fps.den));
    let t_of = |k: u64| spec.start_s + k as f64 * fps_den / fps_num;
    // the frame on screen so far, and the next output frame still to be filled
    let mut prev: Option<ff::frame::Video> = None;
    let mut next_k = 0u64;
    for (path, range) in chunks {
        if next_k >= total {
            break;
        }
        let tb = range.time_base.as_f64();
        let mut finished = false;
        let res = decode_range(path, range, threads, false, |frame| {
            if ctl.is_cancelled() {
                return Err(MediaError::Cancelled);
            }
            let Some(pts) = frame.pts() else {
                return Err(MediaError::decode(
                    path,
                    "decoded frame without a timestamp",
                ));
            };
            let t = (pts - range.ts_offset) as f64 * tb;
            // output frames due before this frame starts show the one before it (or this
            // one, when it is the first)
            let mut n = 0;
            while next_k + n < total && t_of(next_k + n) + ON_SCREEN_SLACK_S < t {
                n += 1;
            }
            if n > 0 {
                let shown = match prev.take() {
                    Some(p) => p,
                    None => frame_ref(frame, path)?,
                };
                r.push(shown, n, path)?;
                next_k += n;
            }
            if next_k >= total {
                // every output frame is chosen: stop decoding
                finished = true;
                return Err(MediaError::Cancelled);
            }
            prev = Some(frame_ref(frame, path)?);
            Ok(())
        });
        match res {
            Err(MediaError::Cancelled) if finished => {}
            r => {
                r?;
            }
        }
    }
    if next_k < total {
        let Some(last) = prev.take() else {
            return Err(MediaError::other(out, "the chunks hold no frames"));
        };
        let file = chunks.last().map_or(out, |c| c.0.as_path());
        r.push(last, total - next_k, file)?;
    }
    let written = r.finish()?;
    if written != total {
        return Err(MediaError::Encoder {
            encoder: options.encoder_name().into(),
            cause: format!("wrote {written} frames of {total}"),
        });
    }
    crate::engine::count_encoded(written);
    Ok(written)
}

/// A new reference to `frame`'s data (no copy), which the filter graph may take over.
fn frame_ref(frame: &ff::frame::Video, file: &Path) -> Result<ff::frame::Video, MediaError> {
    let mut r = ff::frame::Video::empty();
    // SAFETY: both frames are valid; `r` is empty, as av_frame_ref requires.
    let ret = unsafe { ff::ffi::av_frame_ref(r.as_mut_ptr(), frame.as_ptr()) };
    if ret < 0 {
        return Err(MediaError::decode(file, ff::Error::from(ret)));
    }
    Ok(r)
}

/// What a filter graph's input is built for: a frame of another shape needs a new graph.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Shape {
    width: u32,
    height: u32,
    format: ff::format::Pixel,
    sar: (i32, i32),
    full_range: bool,
    colorspace: ff::color::Space,
}

impl Shape {
    fn of(f: &ff::frame::Video) -> Self {
        let sar = f.aspect_ratio();
        let sar = if sar.numerator() > 0 && sar.denominator() > 0 {
            (sar.numerator(), sar.denominator())
        } else {
            (1, 1)
        };
        let format = f.format();
        Self {
            width: f.width(),
            height: f.height(),
            format,
            sar,
            full_range: f.color_range() == ff::color::Range::JPEG
                || matches!(
                    format,
                    ff::format::Pixel::YUVJ420P
                        | ff::format::Pixel::YUVJ422P
                        | ff::format::Pixel::YUVJ444P
                        | ff::format::Pixel::YUVJ440P
                ),
            colorspace: f.color_space(),
        }
    }
}

/// Where a source frame lands in the output: its size after scaling (upright), and the
/// filter that rotates it upright.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Placement {
    /// Scaled size in the source's coded orientation.
    scale_w: u32,
    scale_h: u32,
    rotate: Option<&'static str>,
    /// Size after rotation, before crop or pad.
    upright_w: u32,
    upright_h: u32,
}

/// Nearest even number, at least 2.
fn even(x: f64) -> u32 {
    ((x / 2.0).round().max(1.0) as u32) * 2
}

/// Place a `shape` frame rotated clockwise by `rotation` into `width`×`height` with `fit`.
fn place(shape: &Shape, rotation: u32, width: u32, height: u32, fit: Fit) -> Placement {
    let disp_w = f64::from(shape.width) * f64::from(shape.sar.0) / f64::from(shape.sar.1);
    let disp_h = f64::from(shape.height);
    let quarter = rotation == 90 || rotation == 270;
    let (up_w, up_h) = if quarter {
        (disp_h, disp_w)
    } else {
        (disp_w, disp_h)
    };
    let (sx, sy) = (f64::from(width) / up_w, f64::from(height) / up_h);
    let s = match fit {
        Fit::Fill => sx.max(sy),
        Fit::Fit => sx.min(sy),
    };
    let (mut w, mut h) = (even(up_w * s), even(up_h * s));
    match fit {
        // cover: never short of the frame; fit: never over it
        Fit::Fill => (w, h) = (w.max(width), h.max(height)),
        Fit::Fit => (w, h) = (w.min(width), h.min(height)),
    }
    let rotate = match rotation {
        90 => Some("transpose=dir=clock"),
        180 => Some("hflip,vflip"),
        270 => Some("transpose=dir=cclock"),
        _ => None,
    };
    let (scale_w, scale_h) = if quarter { (h, w) } else { (w, h) };
    Placement {
        scale_w,
        scale_h,
        rotate,
        upright_w: w,
        upright_h: h,
    }
}

/// The filter chain from a `shape` frame to the output frame, after the buffer source.
fn chain(shape: &Shape, spec: &RenderSpec, out_fmt: &str) -> String {
    let p = place(shape, spec.rotation, spec.width, spec.height, spec.fit);
    let in_range = if shape.full_range { "pc" } else { "tv" };
    // untagged sources: HD is BT.709, SD BT.601, as players assume
    let in_matrix = match shape.colorspace {
        ff::color::Space::Unspecified | ff::color::Space::Reserved => {
            if shape.height.max(shape.width) >= 1280 || shape.height.min(shape.width) >= 720 {
                "bt709"
            } else {
                "bt601"
            }
        }
        _ => "auto",
    };
    let mut c = format!(
        "scale=w={}:h={}:flags=bicubic:in_range={in_range}:out_range=tv:\
         in_color_matrix={in_matrix}:out_color_matrix=bt709",
        p.scale_w, p.scale_h
    );
    if let Some(r) = p.rotate {
        c.push(',');
        c.push_str(r);
    }
    let (w, h) = (spec.width, spec.height);
    if p.upright_w > w || p.upright_h > h {
        c.push_str(&format!(
            ",crop=w={w}:h={h}:x={}:y={}",
            (p.upright_w.saturating_sub(w) / 2) & !1,
            (p.upright_h.saturating_sub(h) / 2) & !1
        ));
    }
    if p.upright_w < w || p.upright_h < h {
        c.push_str(&format!(
            ",pad=w={w}:h={h}:x={}:y={}:color=black",
            (w.saturating_sub(p.upright_w) / 2) & !1,
            (h.saturating_sub(p.upright_h) / 2) & !1
        ));
    }
    c.push_str(&format!(",setsar=1,format=pix_fmts={out_fmt}"));
    c
}

fn build_graph(
    shape: &Shape,
    spec: &RenderSpec,
    out_fmt: ff::format::Pixel,
) -> Result<ff::filter::Graph, ff::Error> {
    let fmt: ff::ffi::AVPixelFormat = shape.format.into();
    let out_name = out_fmt.descriptor().map_or("yuv420p", |d| d.name());
    let args = format!(
        "video_size={}x{}:pix_fmt={}:time_base={}/{}:pixel_aspect={}/{}",
        shape.width, shape.height, fmt as i32, spec.fps.den, spec.fps.num, shape.sar.0, shape.sar.1
    );
    let mut g = ff::filter::Graph::new();
    g.add(
        &ff::filter::find("buffer").ok_or(ff::Error::FilterNotFound)?,
        "in",
        &args,
    )?;
    g.add(
        &ff::filter::find("buffersink").ok_or(ff::Error::FilterNotFound)?,
        "out",
        "",
    )?;
    g.output("in", 0)?
        .input("out", 0)?
        .parse(&chain(shape, spec, out_name))?;
    g.validate()?;
    Ok(g)
}

/// The filter graph and encoder of one shot, and the NUT file they write.
struct Renderer<'a> {
    spec: &'a RenderSpec,
    out: &'a Path,
    ctl: &'a ShardCtl<'a>,
    encoder_name: String,
    encoder: ff::encoder::Video,
    octx: ff::format::context::Output,
    enc_tb: ff::Rational,
    out_tb: ff::Rational,
    out_fmt: ff::format::Pixel,
    graph: Option<(ff::filter::Graph, Shape)>,
    /// How many output frames each frame in the graph stands for, in order.
    pending: VecDeque<u64>,
    /// Frames sent to the encoder (the next one's pts) and packets written.
    sent: i64,
    written: u64,
}

impl<'a> Renderer<'a> {
    fn open(
        spec: &'a RenderSpec,
        options: &EncodeOptions,
        out: &'a Path,
        threads: usize,
        ctl: &'a ShardCtl<'a>,
    ) -> Result<Self, MediaError> {
        let name = options.encoder_name().to_string();
        let enc_err = |e: ff::Error| MediaError::Encoder {
            encoder: name.clone(),
            cause: e.to_string(),
        };
        let codec = ff::encoder::find_by_name(&name).ok_or_else(|| MediaError::Encoder {
            encoder: name.clone(),
            cause: "not available in this FFmpeg build".into(),
        })?;
        let supported: Vec<ff::format::Pixel> = codec
            .video()
            .ok()
            .and_then(|v| v.formats().map(|f| f.collect()))
            .unwrap_or_default();
        let out_fmt = match supported.first() {
            Some(first) if !supported.contains(&ff::format::Pixel::YUV420P) => *first,
            _ => ff::format::Pixel::YUV420P,
        };
        let mut octx = ff::format::output_as(&out, "nut").map_err(|e| MediaError::write(out, e))?;
        let mut ctx = ff::codec::context::Context::new_with_codec(codec);
        ctx.set_flags(ff::codec::Flags::GLOBAL_HEADER);
        let mut enc = ctx.encoder().video().map_err(enc_err)?;
        let tb = ff::Rational::new(spec.fps.den, spec.fps.num);
        enc.set_width(spec.width);
        enc.set_height(spec.height);
        enc.set_format(out_fmt);
        enc.set_time_base(tb);
        enc.set_frame_rate(Some(ff_rational(spec.fps)));
        enc.set_aspect_ratio(ff::Rational::new(1, 1));
        enc.set_colorspace(ff::color::Space::BT709);
        enc.set_color_range(ff::color::Range::MPEG);
        enc.set_color_primaries(ff::color::Primaries::BT709);
        enc.set_color_transfer_characteristic(ff::color::TransferCharacteristic::BT709);
        let encoder = enc
            .open_as_with(codec, encoder_options(options, threads))
            .map_err(enc_err)?;
        {
            let mut ost = octx
                .add_stream(codec)
                .map_err(|e| MediaError::write(out, e))?;
            ost.set_parameters(&encoder);
            ost.set_time_base(tb);
            ost.set_avg_frame_rate(ff_rational(spec.fps));
        }
        octx.write_header().map_err(|e| MediaError::write(out, e))?;
        let out_tb = octx.stream(0).map(|s| s.time_base()).unwrap_or(tb);
        Ok(Self {
            spec,
            out,
            ctl,
            encoder_name: name,
            encoder,
            octx,
            enc_tb: tb,
            out_tb,
            out_fmt,
            graph: None,
            pending: VecDeque::new(),
            sent: 0,
            written: 0,
        })
    }

    fn enc_err(&self, e: impl ToString) -> MediaError {
        MediaError::Encoder {
            encoder: self.encoder_name.clone(),
            cause: e.to_string(),
        }
    }

    /// Conform `frame` (from `file`) and encode it as the next `count` output frames.
    fn push(
        &mut self,
        mut frame: ff::frame::Video,
        count: u64,
        file: &Path,
    ) -> Result<(), MediaError> {
        if self.ctl.is_cancelled() {
            return Err(MediaError::Cancelled);
        }
        let shape = Shape::of(&frame);
        if self.graph.as_ref().is_none_or(|(_, s)| *s != shape) {
            // a source of another size or format: finish the old graph, build a new one
            self.flush_graph(file)?;
            let g = build_graph(&shape, self.spec, self.out_fmt)
                .map_err(|e| MediaError::other(file, format!("cannot conform its frames: {e}")))?;
            self.graph = Some((g, shape));
        }
        frame.set_pts(Some(self.sent + self.pending.iter().sum::<u64>() as i64));
        frame.set_kind(ff::picture::Type::None);
        let Some((g, _)) = self.graph.as_mut() else {
            return Err(MediaError::other(file, "frame graph missing"));
        };
        g.get("in")
            .ok_or_else(|| MediaError::other(file, "frame graph lost its input"))?
            .source()
            .add(&frame)
            .map_err(|e| MediaError::other(file, format!("conforming a frame: {e}")))?;
        self.pending.push_back(count);
        self.drain_graph()
    }

    /// Encode what the graph has ready, each frame as many times as it stands for.
    fn drain_graph(&mut self) -> Result<(), MediaError> {
        let mut filtered = ff::frame::Video::empty();
        loop {
            let Some((g, _)) = self.graph.as_mut() else {
                return Ok(());
            };
            let Some(mut sink) = g.get("out") else {
                return Ok(());
            };
            if sink.sink().frame(&mut filtered).is_err() {
                return Ok(());
            }
            let count = self.pending.pop_front().unwrap_or(1);
            filtered.set_color_space(ff::color::Space::BT709);
            filtered.set_color_range(ff::color::Range::MPEG);
            filtered.set_color_primaries(ff::color::Primaries::BT709);
            filtered.set_color_transfer_characteristic(ff::color::TransferCharacteristic::BT709);
            for _ in 0..count {
                filtered.set_pts(Some(self.sent));
                self.sent += 1;
                self.encoder
                    .send_frame(&filtered)
                    .map_err(|e| self.enc_err(e))?;
                self.write_packets()?;
            }
        }
    }

    fn flush_graph(&mut self, file: &Path) -> Result<(), MediaError> {
        if let Some((g, _)) = self.graph.as_mut() {
            if let Some(mut input) = g.get("in") {
                input
                    .source()
                    .flush()
                    .map_err(|e| MediaError::other(file, format!("conforming a frame: {e}")))?;
            }
            self.drain_graph()?;
        }
        self.graph = None;
        self.pending.clear();
        Ok(())
    }

    fn write_packets(&mut self) -> Result<(), MediaError> {
        let mut pkt = ff::Packet::empty();
        while self.encoder.receive_packet(&mut pkt).is_ok() {
            if self.ctl.is_cancelled() {
                return Err(MediaError::Cancelled);
            }
            pkt.set_stream(0);
            pkt.rescale_ts(self.enc_tb, self.out_tb);
            pkt.write(&mut self.octx)
                .map_err(|e| MediaError::write(self.out, e))?;
            self.written += 1;
            self.ctl.progress(self.written);
        }
        Ok(())
    }

    /// Flush the graph and the encoder and close the file; returns packets written.
    fn finish(mut self) -> Result<u64, MediaError> {
        let out = self.out;
        self.flush_graph(out)?;
        self.encoder.send_eof().map_err(|e| self.enc_err(e))?;
        self.write_packets()?;
        self.octx
            .write_trailer()
            .map_err(|e| MediaError::write(out, e))?;
        Ok(self.written)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::process::Command;

    use rendermesh_mesh::exec::CancelToken;
    use rendermesh_protocol::{Rational, VideoCodec};

    use super::*;
    use crate::engine::chunk::{plan_chunks, write_chunks};
    use crate::engine::probe::probe;

    /// Run the ffmpeg CLI quietly; true when it succeeded.
    pub(crate) fn ffmpeg(args: &[&str]) -> bool {
        Command::new("ffmpeg")
            .args(["-y", "-nostdin", "-v", "error"])
            .args(args)
            .status()
            .expect("ffmpeg runs")
            .success()
    }

    /// Cut `src` into chunk blobs about `target_s` long, as the splitter does.
    pub(crate) fn chunks_of(src: &Path, dir: &Path, target_s: f64) -> Vec<(PathBuf, FrameRange)> {
        let p = probe(src).expect("probe");
        let plans = plan_chunks(&p, target_s);
        let cache = rendermesh_cache::Cache::open(&dir.join("cache")).expect("cache");
        let want = vec![true; plans.len()];
        let ids = write_chunks(src, &p, &plans, &want, &cache.blobs).expect("chunks");
        plans
            .iter()
            .zip(ids)
            .map(|(plan, id)| {
                let (id, _) = id.expect("chunk written");
                (cache.blobs.path(&id), plan.range)
            })
            .collect()
    }

    /// One decoded frame: size, pixel format and luma plane (packed rows).
    pub(crate) struct Pic {
        pub w: usize,
        pub h: usize,
        pub fmt: ff::format::Pixel,
        pub y: Vec<u8>,
    }

    impl Pic {
        /// Mean luma over columns `x0..x1`, rows `y0..y1`.
        pub fn mean(&self, x0: usize, y0: usize, x1: usize, y1: usize) -> f64 {
            let mut s = 0u64;
            for r in y0..y1 {
                s += self.y[r * self.w + x0..r * self.w + x1]
                    .iter()
                    .map(|&v| u64::from(v))
                    .sum::<u64>();
            }
            s as f64 / ((x1 - x0) * (y1 - y0)) as f64
        }
    }

    /// Every video frame of `path`, decoded.
    pub(crate) fn decode_all(path: &Path) -> Vec<Pic> {
        crate::engine::init();
        let mut ictx = ff::format::input(&path).expect("open");
        let st = ictx.streams().best(ff::media::Type::Video).expect("video");
        let index = st.index();
        let ctx = ff::codec::context::Context::from_parameters(st.parameters()).expect("ctx");
        let mut dec = ctx.decoder().video().expect("decoder");
        let mut pics = Vec::new();
        let mut frame = ff::frame::Video::empty();
        let mut take = |dec: &mut ff::decoder::Video, pics: &mut Vec<Pic>| {
            while dec.receive_frame(&mut frame).is_ok() {
                let (w, h) = (frame.width() as usize, frame.height() as usize);
                let stride = frame.stride(0);
                let data = frame.data(0);
                let mut y = Vec::with_capacity(w * h);
                for r in 0..h {
                    y.extend_from_slice(&data[r * stride..r * stride + w]);
                }
                pics.push(Pic {
                    w,
                    h,
                    fmt: frame.format(),
                    y,
                });
            }
        };
        for (s, pkt) in ictx.packets() {
            if s.index() == index {
                dec.send_packet(&pkt).expect("send");
                take(&mut dec, &mut pics);
            }
        }
        dec.send_eof().expect("eof");
        take(&mut dec, &mut pics);
        pics
    }

    pub(crate) fn spec(
        w: u32,
        h: u32,
        frames: u32,
        start_s: f64,
        rotation: u32,
        fit: Fit,
    ) -> RenderSpec {
        RenderSpec {
            width: w,
            height: h,
            fps: Rational::new(30, 1),
            frames,
            start_s,
            rotation,
            fit,
        }
    }

    pub(crate) fn opts() -> EncodeOptions {
        EncodeOptions {
            codec: VideoCodec::H264,
            crf: 12,
            preset: Some("ultrafast".into()),
            encoder: None,
            height: None,
        }
    }

    pub(crate) fn render(
        chunks: &[(PathBuf, FrameRange)],
        spec: &RenderSpec,
        out: &Path,
    ) -> Result<u64, MediaError> {
        render_shot(chunks, spec, &opts(), out, 1, &ShardCtl::detached())
    }

    /// A 25 fps source whose frame `i` is flat grey at luma 16 + 8i, cut into three chunks.
    fn numbered_source(dir: &Path) -> Vec<(PathBuf, FrameRange)> {
        let src = dir.join("numbered.mp4");
        assert!(ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "color=black:s=160x90:r=25:d=1",
            "-vf",
            "geq=lum='16+8*N':cb=128:cr=128",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-qp",
            "0",
            "-g",
            "10",
            "-pix_fmt",
            "yuv420p",
            src.to_str().unwrap(),
        ]));
        let chunks = chunks_of(&src, dir, 0.3);
        assert!(chunks.len() >= 2, "{} chunks", chunks.len());
        chunks
    }

    /// Output frame k shows the last source frame that started by start_s + k/fps: 25 fps
    /// into 30 fps repeats every fifth frame, times past the end hold the last frame, times
    /// before the start show the first; the count, size and format are exact.
    #[test]
    fn output_frames_show_the_source_frame_on_screen_at_their_time() {
        let dir = tempfile::tempdir().unwrap();
        let chunks = numbered_source(dir.path());
        for (start_s, frames) in [(0.5, 20u32), (-0.1, 8)] {
            let out = dir.path().join(format!("shot{start_s}.nut"));
            let s = spec(320, 180, frames, start_s, 0, Fit::Fill);
            assert_eq!(render(&chunks, &s, &out).unwrap(), u64::from(frames));
            let pics = decode_all(&out);
            assert_eq!(pics.len(), frames as usize);
            let shown: Vec<i64> = pics
                .iter()
                .map(|p| {
                    assert_eq!((p.w, p.h, p.fmt), (320, 180, ff::format::Pixel::YUV420P));
                    ((p.mean(0, 0, p.w, p.h) - 16.0) / 8.0).round() as i64
                })
                .collect();
            let want: Vec<i64> = (0..frames)
                .map(|k| {
                    let t = start_s + f64::from(k) / 30.0;
                    ((t + 1e-6) * 25.0).floor().clamp(0.0, 24.0) as i64
                })
                .collect();
            assert_eq!(shown, want, "start {start_s}");
        }
        let p = probe(&dir.path().join("shot0.5.nut")).unwrap();
        assert_eq!(p.fps, Rational::new(30, 1));
        assert_eq!(p.keyframes.first(), Some(&0));
    }

    /// Quadrant brightness (top-left, top-right, bottom-left, bottom-right) of a luma plane,
    /// away from the edges between them.
    fn quadrants(y: &[u8], w: usize, h: usize) -> [bool; 4] {
        let pic = Pic {
            w,
            h,
            fmt: ff::format::Pixel::GRAY8,
            y: y.to_vec(),
        };
        let (mx, my) = (w / 10, h / 10);
        [
            pic.mean(mx, my, w / 2 - mx, h / 2 - my) > 128.0,
            pic.mean(w / 2 + mx, my, w - mx, h / 2 - my) > 128.0,
            pic.mean(mx, h / 2 + my, w / 2 - mx, h - my) > 128.0,
            pic.mean(w / 2 + mx, h / 2 + my, w - mx, h - my) > 128.0,
        ]
    }

    /// Landscape clips tagged to be turned a quarter either way come out upright: the probe
    /// reads the turn (90 for one, 270 for the other) and the rendered frame matches what
    /// ffmpeg's own player-style autorotation shows (the white quadrant in the same corner).
    #[test]
    fn rotated_clips_are_rendered_upright() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain.mp4");
        assert!(ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "color=black:s=320x180:r=25:d=0.4",
            "-vf",
            "drawbox=x=160:y=0:w=160:h=90:color=white:t=fill",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            plain.to_str().unwrap(),
        ]));
        assert_eq!(probe(&plain).unwrap().rotation, 0);
        let mut seen = Vec::new();
        for (i, angle) in ["90", "270"].into_iter().enumerate() {
            let tagged = dir.path().join(format!("tagged{i}.mp4"));
            let (p, t) = (plain.to_str().unwrap(), tagged.to_str().unwrap());
            // newer ffmpeg sets a display rotation; older ones take the rotate tag
            let ccw = if angle == "90" { "90" } else { "-90" };
            assert!(
                ffmpeg(&["-display_rotation:v:0", ccw, "-i", p, "-c", "copy", t])
                    || ffmpeg(&[
                        "-i",
                        p,
                        "-c",
                        "copy",
                        "-metadata:s:v:0",
                        &format!("rotate={angle}"),
                        t
                    ])
            );
            let probed = probe(&tagged).unwrap();
            assert_eq!((probed.width, probed.height), (320, 180));
            assert!(matches!(probed.rotation, 90 | 270), "{}", probed.rotation);
            seen.push(probed.rotation);

            let out = dir.path().join(format!("upright{i}.nut"));
            let s = spec(90, 160, 3, 0.0, probed.rotation, Fit::Fill);
            assert_eq!(
                render(&chunks_of(&tagged, dir.path(), 10.0), &s, &out).unwrap(),
                3
            );
            let pic = &decode_all(&out)[0];
            assert_eq!((pic.w, pic.h), (90, 160));
            let mine = quadrants(&pic.y, 90, 160);

            let reference = Command::new("ffmpeg")
                .args([
                    "-v",
                    "error",
                    "-nostdin",
                    "-i",
                    t,
                    "-frames:v",
                    "1",
                    "-vf",
                    "scale=90:160",
                ])
                .args(["-f", "rawvideo", "-pix_fmt", "gray", "-"])
                .output()
                .unwrap();
            assert_eq!(reference.stdout.len(), 90 * 160);
            let theirs = quadrants(&reference.stdout, 90, 160);
            assert_eq!(mine, theirs, "rotation {}", probed.rotation);
            assert_eq!(mine.iter().filter(|q| **q).count(), 1, "{mine:?}");
        }
        seen.sort_unstable();
        assert_eq!(seen, [90, 270]);
    }

    /// A portrait source in a landscape frame: Fit pads black bars left and right, Fill
    /// covers the frame. A source of square display made of wide pixels (SAR 2:1) fits a
    /// 16:9 frame... exactly as its display size says: no bars.
    #[test]
    fn fit_pads_with_black_and_fill_covers() {
        let dir = tempfile::tempdir().unwrap();
        let portrait = dir.path().join("portrait.mp4");
        assert!(ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "color=0x808080:s=180x320:r=25:d=0.2",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            portrait.to_str().unwrap(),
        ]));
        let chunks = chunks_of(&portrait, dir.path(), 10.0);
        let fit = dir.path().join("fit.nut");
        render(&chunks, &spec(320, 180, 2, 0.0, 0, Fit::Fit), &fit).unwrap();
        let p = &decode_all(&fit)[0];
        let (left, mid, right) = (
            p.mean(0, 0, 100, 180),
            p.mean(120, 0, 200, 180),
            p.mean(220, 0, 320, 180),
        );
        assert!(left < 20.0 && right < 20.0, "bars {left} {right}");
        assert!(mid > 100.0, "picture {mid}");
        let fill = dir.path().join("fill.nut");
        render(&chunks, &spec(320, 180, 2, 0.0, 0, Fit::Fill), &fill).unwrap();
        let p = &decode_all(&fill)[0];
        for x in [0, 100, 300] {
            let m = p.mean(x, 0, x + 20, 180);
            assert!(m > 100.0, "column {x}: {m}");
        }

        // 160×180 coded, pixels twice as wide as high: displayed 320×180
        let wide = dir.path().join("wide.mp4");
        assert!(ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "color=0x808080:s=160x180:r=25:d=0.2",
            "-vf",
            "setsar=2",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            wide.to_str().unwrap(),
        ]));
        let out = dir.path().join("wide.nut");
        render(
            &chunks_of(&wide, dir.path(), 10.0),
            &spec(320, 180, 2, 0.0, 0, Fit::Fit),
            &out,
        )
        .unwrap();
        let p = &decode_all(&out)[0];
        for x in [0, 150, 310] {
            let m = p.mean(x, 0, x + 10, 180);
            assert!(m > 100.0, "column {x}: {m}");
        }
    }

    /// A full-range (yuvj420p) source keeps its levels: full white and black become
    /// limited-range white (235) and black (16).
    #[test]
    fn full_range_sources_come_out_at_limited_range_levels() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("full.mp4");
        assert!(ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "color=white:s=160x96:r=25:d=0.2",
            "-vf",
            "drawbox=x=0:y=48:w=160:h=48:color=black:t=fill,scale=out_range=pc,format=yuvj420p",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-qp",
            "0",
            "-pix_fmt",
            "yuvj420p",
            src.to_str().unwrap(),
        ]));
        let s = &decode_all(&src)[0];
        assert_eq!(s.fmt, ff::format::Pixel::YUVJ420P);
        assert!(s.mean(0, 0, 160, 40) > 250.0 && s.mean(0, 56, 160, 96) < 5.0);
        let out = dir.path().join("limited.nut");
        render(
            &chunks_of(&src, dir.path(), 10.0),
            &spec(160, 96, 2, 0.0, 0, Fit::Fill),
            &out,
        )
        .unwrap();
        let p = &decode_all(&out)[0];
        assert_eq!(p.fmt, ff::format::Pixel::YUV420P);
        let (white, black) = (p.mean(0, 0, 160, 40), p.mean(0, 56, 160, 96));
        assert!((white - 235.0).abs() < 4.0, "white {white}");
        assert!((black - 16.0).abs() < 4.0, "black {black}");
    }

    /// A chunk that is not media, a bad spec and a cancelled run are errors, not panics.
    #[test]
    fn bad_chunks_specs_and_cancels_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.nut");
        std::fs::write(&junk, b"this is not a video file at all").unwrap();
        let range = FrameRange {
            start_pts: 0,
            end_pts: None,
            time_base: Rational::new(1, 25),
            first_frame: 0,
            frames: 10,
            fps: Rational::new(25, 1),
            ts_offset: 0,
        };
        let out = dir.path().join("out.nut");
        let good = spec(160, 90, 5, 0.0, 0, Fit::Fill);
        let res = render(&[(junk, range)], &good, &out);
        assert!(matches!(res, Err(MediaError::NotMedia { .. })), "{res:?}");
        let res = render(&[], &good, &out);
        assert!(matches!(res, Err(MediaError::Other { .. })), "{res:?}");
        let bad = spec(161, 90, 5, 0.0, 0, Fit::Fill);
        assert!(render(&[], &bad, &out).is_err());

        let (clip, range) = crate::engine::testclip::test_clip(dir.path(), 160, 90, 10).unwrap();
        let token = CancelToken::default();
        token.cancel();
        let res = render_shot(
            &[(clip, range)],
            &good,
            &opts(),
            &out,
            1,
            &ShardCtl::new(&|_| {}, &token),
        );
        assert!(matches!(res, Err(MediaError::Cancelled)), "{res:?}");
    }

    #[test]
    fn placement_keeps_the_display_aspect() {
        let shape = Shape {
            width: 1920,
            height: 1080,
            format: ff::format::Pixel::YUV420P,
            sar: (1, 1),
            full_range: false,
            colorspace: ff::color::Space::BT709,
        };
        // landscape into portrait, turned: exactly the frame
        let p = place(&shape, 90, 1080, 1920, Fit::Fill);
        assert_eq!(
            (p.scale_w, p.scale_h, p.upright_w, p.upright_h),
            (1920, 1080, 1080, 1920)
        );
        // unturned into portrait: fit is 1080 wide, fill is 1920 high
        let p = place(&shape, 0, 1080, 1920, Fit::Fit);
        assert_eq!((p.upright_w, p.upright_h), (1080, 608));
        let p = place(&shape, 0, 1080, 1920, Fit::Fill);
        assert_eq!((p.upright_w, p.upright_h), (3414, 1920));
    }
}
