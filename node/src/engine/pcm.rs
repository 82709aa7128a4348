//! Decode a file's audio to mono 32-bit float samples at a chosen rate, streamed in blocks:
//! however long the file, only one decoded frame is held at a time.

use std::path::Path;

use ffmpeg_next as ff;

use super::probe::open_input;
use super::MediaError;

/// What [`decode_mono`] read.
#[derive(Clone, Copy, Debug, Default)]
pub struct PcmStats {
    /// Audio frames (codec frames, not samples) decoded.
    pub frames: u64,
    /// Mono samples handed to the sink.
    pub samples: u64,
    /// Damaged packets skipped.
    pub skipped: u64,
}

/// Decode the best audio stream of `path` to mono f32 at `rate` Hz, handing blocks of samples
/// to `sink` in order, the first `trim_s` seconds dropped. `sink` returns false to stop
/// early (the result is then [`MediaError::Cancelled`]). A file without audio is
/// [`MediaError::NoAudio`].
pub fn decode_mono(
    path: &Path,
    rate: u32,
    trim_s: f64,
    mut sink: impl FnMut(&[f32]) -> bool,
) -> Result<PcmStats, MediaError> {
    let mut to_drop = (trim_s.max(0.0) * f64::from(rate)).round() as usize;
    let mut sink = move |block: &[f32]| {
        let skip = to_drop.min(block.len());
        to_drop -= skip;
        skip == block.len() || sink(&block[skip..])
    };
    let mut ictx = open_input(path)?;
    let (index, tb, params) = best_audio(&ictx, path)?;
    let mut dctx = ff::codec::context::Context::from_parameters(params)
        .map_err(|e| MediaError::decode(path, e))?;
    dctx.set_time_base(tb);
    let mut decoder = dctx
        .decoder()
        .audio()
        .map_err(|e| MediaError::decode(path, format!("no decoder for its audio codec ({e})")))?;
    let mut stats = PcmStats::default();
    let mut graph: Option<(ff::filter::Graph, Shape)> = None;
    let mut frame = ff::frame::Audio::empty();
    let mut out = ff::frame::Audio::empty();
    let mut stopped = false;
    let mut pump = |decoder: &mut ff::decoder::Audio,
                    graph: &mut Option<(ff::filter::Graph, Shape)>,
                    stats: &mut PcmStats,
                    flush: bool|
     -> Result<(), MediaError> {
        while decoder.receive_frame(&mut frame).is_ok() {
            stats.frames += 1;
            super::count_decoded(1);
            let shape = Shape::of(&frame);
            if graph.as_ref().is_none_or(|(_, s)| *s != shape) {
                // a new stream layout mid-file (rare): drain the old graph, build a new one
                if let Some((mut g, _)) = graph.take() {
                    drain(&mut g, &mut out, stats, &mut sink, true)?;
                }
                let g = build(&shape, tb, rate)
                    .map_err(|e| MediaError::decode(path, format!("audio conversion: {e}")))?;
                *graph = Some((g, shape));
            }
            let Some((g, _)) = graph.as_mut() else {
                return Err(MediaError::other(path, "audio graph missing"));
            };
            let ts = frame.timestamp();
            frame.set_pts(ts);
            g.get("in")
                .ok_or_else(|| MediaError::other(path, "audio graph lost its input"))?
                .source()
                .add(&frame)
                .map_err(|e| MediaError::decode(path, e))?;
            drain(g, &mut out, stats, &mut sink, false)?;
        }
        if flush {
            if let Some((g, _)) = graph.as_mut() {
                drain(g, &mut out, stats, &mut sink, true)?;
            }
        }
        Ok(())
    };
    let mut pkt = ff::Packet::empty();
    loop {
        match super::next_packet(&mut pkt, &mut ictx) {
            Ok(()) if pkt.stream() != index => continue,
            Ok(()) => {
                if decoder.send_packet(&pkt).is_err() {
                    // a damaged packet is skipped, as a player would
                    stats.skipped += 1;
                    continue;
                }
                match pump(&mut decoder, &mut graph, &mut stats, false) {
                    Err(MediaError::Cancelled) => {
                        stopped = true;
                        break;
                    }
                    r => r?,
                }
            }
            Err(ff::Error::Eof) => break,
            Err(e) => {
                return Err(MediaError::Truncated {
                    file: path.to_path_buf(),
                    cause: format!("read error after {} audio frames: {e}", stats.frames),
                })
            }
        }
    }
    if stopped {
        return Err(MediaError::Cancelled);
    }
    let _ = decoder.send_eof();
    pump(&mut decoder, &mut graph, &mut stats, true)?;
    if stats.frames == 0 {
        return Err(MediaError::decode(
            path,
            "its audio stream has no decodable frames",
        ));
    }
    Ok(stats)
}

/// What the filter graph's input is built for.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Shape {
    format: ff::format::Sample,
    rate: u32,
    layout: u64,
    channels: u16,
}

impl Shape {
    fn of(f: &ff::frame::Audio) -> Self {
        Self {
            format: f.format(),
            rate: f.rate(),
            layout: f.channel_layout().bits(),
            channels: f.channels(),
        }
    }
}

fn build(s: &Shape, tb: ff::Rational, rate: u32) -> Result<ff::filter::Graph, ff::Error> {
    let layout = if s.layout != 0 {
        format!("channel_layout=0x{:x}", s.layout)
    } else {
        format!("channels={}", s.channels.max(1))
    };
    let args = format!(
        "time_base={}:sample_rate={}:sample_fmt={}:{layout}",
        tb,
        s.rate.max(1),
        s.format.name(),
    );
    let mut g = buffer_graph(&args)?;
    let chain = format!("aformat=sample_fmts=flt:sample_rates={rate}:channel_layouts=mono");
    g.output("in", 0)?.input("out", 0)?.parse(&chain)?;
    g.validate()?;
    Ok(g)
}

/// A filter graph with an audio source "in" (of `args`) and a sink "out", not yet linked.
pub(super) fn buffer_graph(args: &str) -> Result<ff::filter::Graph, ff::Error> {
    let mut g = ff::filter::Graph::new();
    g.add(
        &ff::filter::find("abuffer").ok_or(ff::Error::FilterNotFound)?,
        "in",
        args,
    )?;
    g.add(
        &ff::filter::find("abuffersink").ok_or(ff::Error::FilterNotFound)?,
        "out",
        "",
    )?;
    Ok(g)
}

/// The best audio stream of `path`: its index, time base and parameters.
fn best_audio(
    ictx: &ff::format::context::Input,
    path: &Path,
) -> Result<(usize, ff::Rational, ff::codec::Parameters), MediaError> {
    let stream =
        ictx.streams()
            .best(ff::media::Type::Audio)
            .ok_or_else(|| MediaError::NoAudio {
                file: path.to_path_buf(),
            })?;
    Ok((stream.index(), stream.time_base(), stream.parameters()))
}

fn drain(
    g: &mut ff::filter::Graph,
    out: &mut ff::frame::Audio,
    stats: &mut PcmStats,
    sink: &mut impl FnMut(&[f32]) -> bool,
    flush: bool,
) -> Result<(), MediaError> {
    if flush {
        if let Some(mut input) = g.get("in") {
            let _ = input.source().flush();
        }
    }
    while let Some(mut o) = g.get("out") {
        if o.sink().frame(out).is_err() {
            break;
        }
        let n = out.samples();
        let data = out.plane::<f32>(0);
        let n = n.min(data.len());
        stats.samples += n as u64;
        if !sink(&data[..n]) {
            return Err(MediaError::Cancelled);
        }
    }
    Ok(())
}

/// How a file's sound travels to the node that analyses it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AudioSource {
    /// The file has no video: it travels whole.
    Whole { seconds: f64 },
    /// Its audio track was copied into the NUT file asked for. The copy starts at its first
    /// packet: `trim_s` seconds of decoded sound come before the file's time 0 (encoder
    /// priming that the source marked by a negative start and NUT cannot).
    Extracted { seconds: f64, trim_s: f64 },
}

impl AudioSource {
    pub fn seconds(&self) -> f64 {
        match *self {
            AudioSource::Whole { seconds } | AudioSource::Extracted { seconds, .. } => seconds,
        }
    }
}

/// Check that `path` has an audio stream; when it also has video, copy the audio stream
/// into a NUT file at `out` (no decode), so a peer fetches the sound without the picture.
/// Timestamps that go backwards are nudged forward, as ffmpeg's own remux does.
pub fn audio_source(path: &Path, out: &Path) -> Result<AudioSource, MediaError> {
    let mut ictx = open_input(path)?;
    let (index, tb, params) = best_audio(&ictx, path)?;
    let secs =
        |ticks: i64| ticks as f64 * f64::from(tb.numerator()) / f64::from(tb.denominator().max(1));
    let duration = ictx.stream(index).map_or(0, |st| st.duration());
    let stream_seconds = (duration > 0).then(|| secs(duration));
    if ictx.streams().best(ff::media::Type::Video).is_none() {
        let seconds = stream_seconds
            .or_else(|| (ictx.duration() > 0).then(|| ictx.duration() as f64 / 1e6))
            .unwrap_or(0.0);
        return Ok(AudioSource::Whole { seconds });
    }
    let wout = |e: ff::Error| MediaError::write(out, e);
    let mut octx = ff::format::output_as(&out, "nut").map_err(wout)?;
    {
        let mut ost = octx
            .add_stream(ff::encoder::find(ff::codec::Id::None))
            .map_err(wout)?;
        ost.set_parameters(params);
        ost.set_time_base(tb);
        // SAFETY: the stream's parameters were just allocated by add_stream.
        unsafe { (*ost.parameters().as_mut_ptr()).codec_tag = 0 };
    }
    octx.write_header().map_err(wout)?;
    let otb = octx.stream(0).map(|s| s.time_base()).unwrap_or(tb);
    let (mut first, mut end) = (i64::MAX, i64::MIN);
    let mut last_dts = i64::MIN;
    let mut pkt = ff::Packet::empty();
    loop {
        match super::next_packet(&mut pkt, &mut ictx) {
            Ok(()) if pkt.stream() != index => continue,
            Ok(()) => {
                if let Some(p) = pkt.pts().or(pkt.dts()) {
                    first = first.min(p);
                    end = end.max(p + pkt.duration().max(0));
                }
                if let Some(d) = pkt.dts() {
                    let d = d.max(last_dts.saturating_add(1));
                    pkt.set_dts(Some(d));
                    if pkt.pts().is_some_and(|p| p < d) {
                        pkt.set_pts(Some(d));
                    }
                    last_dts = d;
                }
                pkt.set_stream(0);
                pkt.set_position(-1);
                pkt.rescale_ts(tb, otb);
                pkt.write(&mut octx).map_err(wout)?;
            }
            Err(ff::Error::Eof) => break,
            Err(e) => {
                return Err(MediaError::Truncated {
                    file: path.to_path_buf(),
                    cause: format!("read error: {e}"),
                })
            }
        }
    }
    octx.write_trailer().map_err(wout)?;
    if end <= first {
        return Err(MediaError::Truncated {
            file: path.to_path_buf(),
            cause: "its audio stream has no packets".into(),
        });
    }
    Ok(AudioSource::Extracted {
        seconds: secs(end - first),
        trim_s: (-secs(first)).max(0.0),
    })
}
