//! The output's audio track, taken from the source once: stream copy when the container can
//! hold the source codec, else decoded and encoded once (AAC, or Opus for WebM) through a
//! filter graph that converts format, rate and layout and cuts encoder-sized frames.
//! Audio is never chunked, so joins of video segments cannot make it drift.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use ffmpeg_next as ff;

use super::probe::open_input;
use super::MediaError;

/// Where the output's audio packets come from.
pub struct AudioTrack {
    ictx: ff::format::context::Input,
    index: usize,
    in_tb: ff::Rational,
    source: PathBuf,
    encode: Option<Reencode>,
    done: bool,
}

struct Reencode {
    decoder: ff::decoder::Audio,
    graph: ff::filter::Graph,
    encoder: ff::encoder::Audio,
    enc_tb: ff::Rational,
    ready: VecDeque<ff::Packet>,
    flushed: bool,
}

/// Can the container of `octx` hold `codec` by stream copy?
pub fn container_accepts(octx: &ff::format::context::Output, codec: ff::codec::Id) -> bool {
    // MP4 takes these only as an "experimental" feature of the muxer: re-encoded instead
    if octx.format().name() == "mp4" && matches!(codec, ff::codec::Id::FLAC | ff::codec::Id::TRUEHD)
    {
        return false;
    }
    // SAFETY: the output format pointer is valid for the context's lifetime.
    unsafe {
        let oformat = (*octx.as_ptr()).oformat;
        ff::ffi::avformat_query_codec(oformat, codec.into(), ff::ffi::FF_COMPLIANCE_NORMAL) == 1
    }
}

/// Open audio encoder `codec` at `rate` and `layout` (its first sample format) and add its
/// stream to `octx` (written to `out`), before the header is written.
pub(crate) fn open_encoder(
    codec: ff::Codec,
    octx: &mut ff::format::context::Output,
    out: &Path,
    rate: i32,
    layout: ff::ChannelLayout,
    bit_rate: usize,
) -> Result<ff::encoder::Audio, MediaError> {
    let enc_err = |e: ff::Error| MediaError::Encoder {
        encoder: codec.name().into(),
        cause: e.to_string(),
    };
    let sample_fmt = codec
        .audio()
        .ok()
        .and_then(|a| a.formats())
        .and_then(|mut f| f.next())
        .unwrap_or(ff::format::Sample::F32(ff::format::sample::Type::Planar));
    let mut ectx = ff::codec::context::Context::new_with_codec(codec);
    if octx
        .format()
        .flags()
        .contains(ff::format::Flags::GLOBAL_HEADER)
    {
        ectx.set_flags(ff::codec::Flags::GLOBAL_HEADER);
    }
    let mut enc = ectx.encoder().audio().map_err(enc_err)?;
    enc.set_rate(rate);
    enc.set_channel_layout(layout);
    enc.set_format(sample_fmt);
    enc.set_bit_rate(bit_rate);
    enc.set_time_base((1, rate));
    let encoder = enc.open_as(codec).map_err(enc_err)?;
    let mut ost = octx
        .add_stream(codec)
        .map_err(|e| MediaError::write(out, format!("audio stream: {e}")))?;
    ost.set_parameters(&encoder);
    ost.set_time_base((1, rate));
    Ok(encoder)
}

impl AudioTrack {
    /// Add the audio stream (as stream 1) to `octx`, before its header is written.
    pub fn add(
        source: &Path,
        index: usize,
        octx: &mut ff::format::context::Output,
        out: &Path,
        format: &str,
    ) -> Result<Self, MediaError> {
        let ictx = open_input(source)?;
        let ist = ictx
            .stream(index)
            .ok_or_else(|| MediaError::other(source, "audio stream vanished"))?;
        let params = ist.parameters();
        let in_tb = ist.time_base();
        let wout = |e: ff::Error| MediaError::write(out, format!("audio stream: {e}"));
        if container_accepts(octx, params.id()) {
            let mut ost = octx
                .add_stream(ff::encoder::find(ff::codec::Id::None))
                .map_err(wout)?;
            ost.set_parameters(params);
            ost.set_time_base(in_tb);
            // SAFETY: parameters were just allocated by add_stream.
            unsafe { (*ost.parameters().as_mut_ptr()).codec_tag = 0 };
            return Ok(Self {
                ictx,
                index,
                in_tb,
                source: source.to_path_buf(),
                encode: None,
                done: false,
            });
        }
        let name = if format == "webm" { "libopus" } else { "aac" };
        let codec = ff::encoder::find_by_name(name).ok_or_else(|| MediaError::Encoder {
            encoder: name.into(),
            cause: "not in this FFmpeg build".into(),
        })?;
        let acodec = codec.audio().map_err(|e| MediaError::Encoder {
            encoder: name.into(),
            cause: e.to_string(),
        })?;
        let mut dctx = ff::codec::context::Context::from_parameters(params)
            .map_err(|e| MediaError::decode(source, e))?;
        dctx.set_time_base(in_tb);
        let decoder = dctx
            .decoder()
            .audio()
            .map_err(|e| MediaError::decode(source, e))?;

        let layout = acodec
            .channel_layouts()
            .map(|ls| ls.best(source_layout(&decoder).channels()))
            .unwrap_or(ff::ChannelLayout::STEREO);
        let rate = match acodec.rates() {
            Some(mut rates) => {
                let all: Vec<i32> = rates.by_ref().collect();
                if all.contains(&(decoder.rate() as i32)) {
                    decoder.rate() as i32
                } else {
                    all.iter().copied().max().unwrap_or(48_000)
                }
            }
            None => decoder.rate() as i32,
        };
        let bit_rate = if decoder.bit_rate() > 0 {
            decoder.bit_rate().min(320_000)
        } else {
            128_000
        };
        let encoder = open_encoder(codec, octx, out, rate, layout, bit_rate)?;
        let graph = build_graph(&decoder, &encoder, codec).map_err(|e| MediaError::Encoder {
            encoder: name.into(),
            cause: format!("audio conversion: {e}"),
        })?;
        tracing::info!(
            encoder = name,
            rate,
            "audio cannot be copied into {format}: encoding it once"
        );
        Ok(Self {
            ictx,
            index,
            in_tb,
            source: source.to_path_buf(),
            encode: Some(Reencode {
                decoder,
                graph,
                encoder,
                enc_tb: ff::Rational::new(1, rate),
                ready: VecDeque::new(),
                flushed: false,
            }),
            done: false,
        })
    }

    /// The next audio packet for the output, with its time base.
    pub fn next(&mut self) -> Result<Option<(ff::Packet, ff::Rational)>, MediaError> {
        loop {
            if let Some(enc) = self.encode.as_mut() {
                if let Some(p) = enc.ready.pop_front() {
                    return Ok(Some((p, enc.enc_tb)));
                }
                if enc.flushed {
                    return Ok(None);
                }
            }
            if self.done {
                // source exhausted: flush decoder → graph → encoder once
                let Some(enc) = self.encode.as_mut() else {
                    return Ok(None);
                };
                enc.flush(&self.source)?;
                continue;
            }
            let mut pkt = ff::Packet::empty();
            match pkt.read(&mut self.ictx) {
                Ok(()) if pkt.stream() != self.index => continue,
                Ok(()) => match self.encode.as_mut() {
                    None => return Ok(Some((pkt, self.in_tb))),
                    Some(enc) => enc.push(&pkt, &self.source)?,
                },
                Err(ff::Error::Eof) => self.done = true,
                Err(e) => {
                    return Err(MediaError::Truncated {
                        file: self.source.clone(),
                        cause: e.to_string(),
                    })
                }
            }
        }
    }
}

impl Reencode {
    fn push(&mut self, pkt: &ff::Packet, source: &Path) -> Result<(), MediaError> {
        // a damaged audio packet is skipped, like a player would; the length check below catches loss
        if self.decoder.send_packet(pkt).is_err() {
            tracing::warn!(file = %source.display(), "skipping an undecodable audio packet");
            return Ok(());
        }
        self.drain_decoder(source)
    }

    fn drain_decoder(&mut self, source: &Path) -> Result<(), MediaError> {
        let mut frame = ff::frame::Audio::empty();
        while self.decoder.receive_frame(&mut frame).is_ok() {
            let ts = frame.timestamp();
            frame.set_pts(ts);
            self.graph
                .get("in")
                .ok_or_else(|| MediaError::other(source, "audio graph lost its input"))?
                .source()
                .add(&frame)
                .map_err(|e| MediaError::decode(source, e))?;
            self.drain_graph(source)?;
        }
        Ok(())
    }

    fn drain_graph(&mut self, source: &Path) -> Result<(), MediaError> {
        let mut filtered = ff::frame::Audio::empty();
        while let Some(mut sink) = self.graph.get("out") {
            if sink.sink().frame(&mut filtered).is_err() {
                break;
            }
            self.encoder
                .send_frame(&filtered)
                .map_err(|e| MediaError::Encoder {
                    encoder: "audio".into(),
                    cause: e.to_string(),
                })?;
            self.drain_encoder();
        }
        let _ = source;
        Ok(())
    }

    fn drain_encoder(&mut self) {
        let mut pkt = ff::Packet::empty();
        while self.encoder.receive_packet(&mut pkt).is_ok() {
            self.ready
                .push_back(std::mem::replace(&mut pkt, ff::Packet::empty()));
        }
    }

    fn flush(&mut self, source: &Path) -> Result<(), MediaError> {
        let _ = self.decoder.send_eof();
        self.drain_decoder(source)?;
        if let Some(mut input) = self.graph.get("in") {
            let _ = input.source().flush();
        }
        self.drain_graph(source)?;
        let _ = self.encoder.send_eof();
        self.drain_encoder();
        self.flushed = true;
        Ok(())
    }
}

/// The source's channel layout; a stream that declares none (PCM in AVI) gets the usual
/// layout of its channel count.
fn source_layout(decoder: &ff::decoder::Audio) -> ff::ChannelLayout {
    let l = decoder.channel_layout();
    if l.bits() != 0 {
        l
    } else {
        ff::ChannelLayout::default(i32::from(decoder.channels()).max(1))
    }
}

fn build_graph(
    decoder: &ff::decoder::Audio,
    encoder: &ff::encoder::Audio,
    codec: ff::Codec,
) -> Result<ff::filter::Graph, ff::Error> {
    let args = format!(
        "time_base={}:sample_rate={}:sample_fmt={}:channel_layout=0x{:x}",
        decoder.time_base(),
        decoder.rate(),
        decoder.format().name(),
        source_layout(decoder).bits()
    );
    let mut g = super::pcm::buffer_graph(&args)?;
    if let Some(mut out) = g.get("out") {
        out.set_sample_format(encoder.format());
        out.set_channel_layout(encoder.channel_layout());
        out.set_sample_rate(encoder.rate());
    }
    g.output("in", 0)?.input("out", 0)?.parse("anull")?;
    g.validate()?;
    if !codec
        .capabilities()
        .contains(ff::codec::capabilities::Capabilities::VARIABLE_FRAME_SIZE)
    {
        if let Some(mut out) = g.get("out") {
            out.sink().set_frame_size(encoder.frame_size());
        }
    }
    Ok(g)
}
