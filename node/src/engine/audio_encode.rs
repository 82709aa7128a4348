//! Decode a source's audio stream and encode it once, through a filter graph that converts
//! sample format, rate and layout and cuts encoder-sized frames. [`super::audio`] uses it
//! when the output cannot take the source's audio by stream copy, or must have PCM.

use std::collections::VecDeque;
use std::path::Path;

use ffmpeg_next as ff;

use super::MediaError;

/// The PCM encoder for a source stream: 24-bit when the source carries more than 16 bits a
/// sample (24-bit PCM, FLAC, float PCM), else 16-bit. Lossy sources (AAC, Opus, MP3) declare
/// no depth and get 16 bits.
pub(crate) fn pcm_encoder_for(params: &ff::codec::Parameters) -> &'static str {
    // SAFETY: the parameters pointer is valid while `params` lives.
    let bits = unsafe {
        let p = params.as_ptr();
        (*p).bits_per_raw_sample.max((*p).bits_per_coded_sample)
    };
    if bits > 16 {
        "pcm_s24le"
    } else {
        "pcm_s16le"
    }
}

/// A source audio stream decoded and encoded once.
pub(crate) struct Reencode {
    decoder: ff::decoder::Audio,
    graph: ff::filter::Graph,
    encoder: ff::encoder::Audio,
    /// The encoder's (and its packets') time base.
    pub(crate) enc_tb: ff::Rational,
    ready: VecDeque<ff::Packet>,
    flushed: bool,
}

impl Reencode {
    /// Open a decoder for the source stream (`params`, time base `in_tb`) of `source`, and
    /// encoder `name` into a new stream of `octx` (written to `out`), before its header is
    /// written. The encoder keeps the source's rate and layout when it can take them (PCM
    /// always does), else the nearest it lists.
    pub(crate) fn open(
        source: &Path,
        params: ff::codec::Parameters,
        in_tb: ff::Rational,
        name: &str,
        octx: &mut ff::format::context::Output,
        out: &Path,
    ) -> Result<Self, MediaError> {
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

        let src_layout = source_layout(&decoder);
        let layout = acodec
            .channel_layouts()
            .map(|ls| ls.best(src_layout.channels()))
            .unwrap_or(src_layout);
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
        let graph = build_graph(&decoder, src_layout, &encoder, codec).map_err(|e| {
            MediaError::Encoder {
                encoder: name.into(),
                cause: format!("audio conversion: {e}"),
            }
        })?;
        Ok(Self {
            decoder,
            graph,
            encoder,
            enc_tb: ff::Rational::new(1, rate),
            ready: VecDeque::new(),
            flushed: false,
        })
    }

    /// The next encoded packet, if one is ready.
    pub(crate) fn pop(&mut self) -> Option<ff::Packet> {
        self.ready.pop_front()
    }

    /// Has the encoder been flushed (nothing more will come once `pop` is empty)?
    pub(crate) fn flushed(&self) -> bool {
        self.flushed
    }

    /// Decode a source packet and encode what it gives.
    pub(crate) fn push(&mut self, pkt: &ff::Packet, source: &Path) -> Result<(), MediaError> {
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
            self.drain_graph()?;
        }
        Ok(())
    }

    fn drain_graph(&mut self) -> Result<(), MediaError> {
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
        Ok(())
    }

    fn drain_encoder(&mut self) {
        let mut pkt = ff::Packet::empty();
        while self.encoder.receive_packet(&mut pkt).is_ok() {
            self.ready
                .push_back(std::mem::replace(&mut pkt, ff::Packet::empty()));
        }
    }

    /// The source is exhausted: flush decoder → graph → encoder, once.
    pub(crate) fn flush(&mut self, source: &Path) -> Result<(), MediaError> {
        let _ = self.decoder.send_eof();
        self.drain_decoder(source)?;
        if let Some(mut input) = self.graph.get("in") {
            let _ = input.source().flush();
        }
        self.drain_graph()?;
        let _ = self.encoder.send_eof();
        self.drain_encoder();
        self.flushed = true;
        Ok(())
    }
}

/// The decoder's channel layout, or the default one for its channel count when the source
/// does not say (an unlabelled PCM stream).
fn source_layout(decoder: &ff::decoder::Audio) -> ff::ChannelLayout {
    let layout = decoder.channel_layout();
    if layout.bits() != 0 {
        return layout;
    }
    ff::ChannelLayout::default(i32::from(decoder.channels().max(1)))
}

fn build_graph(
    decoder: &ff::decoder::Audio,
    layout: ff::ChannelLayout,
    encoder: &ff::encoder::Audio,
    codec: ff::Codec,
) -> Result<ff::filter::Graph, ff::Error> {
    let args = format!(
        "time_base={}:sample_rate={}:sample_fmt={}:channel_layout=0x{:x}",
        decoder.time_base(),
        decoder.rate(),
        decoder.format().name(),
        layout.bits()
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
