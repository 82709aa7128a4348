//! The montage's sound: a song decoded from the montage's start, cut to the video's length
//! to the sample, padded with silence if it ends early, faded out and encoded once (AAC, or
//! Opus for WebM), handed on packet by packet.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use ff::Rescale;
use ffmpeg_next as ff;

use super::audio_encode::open_encoder;
use super::probe::open_input;
use super::MediaError;

/// The song, decoded from the montage's start, cut, faded and encoded, packet by packet.
pub(crate) struct SongTrack {
    ictx: ff::format::context::Input,
    index: usize,
    song: PathBuf,
    /// Stream start (stream time base): song time 0.
    origin: i64,
    in_tb: ff::Rational,
    /// A packet read while checking the seek, not yet decoded.
    first: Option<ff::Packet>,
    decoder: ff::decoder::Audio,
    graph: Option<ff::filter::Graph>,
    encoder: ff::encoder::Audio,
    encoder_name: &'static str,
    variable_frame_size: bool,
    /// Packets in the encoder's time base (1/rate).
    pub(crate) tb: ff::Rational,
    ready: VecDeque<ff::Packet>,
    /// Samples wanted (the video's length), skipped before the start, and sent to the encoder.
    want: i64,
    start_sample: i64,
    fade_samples: i64,
    sent: i64,
    next_pts: Option<i64>,
    read_done: bool,
    flushed: bool,
}

impl SongTrack {
    /// Open `song` and add the encoded audio stream (stream 1) to `octx`.
    pub(crate) fn add(
        song: &Path,
        start_s: f64,
        length_s: f64,
        fade_s: f64,
        octx: &mut ff::format::context::Output,
        out: &Path,
        container: &str,
    ) -> Result<Self, MediaError> {
        if !start_s.is_finite() || start_s < 0.0 {
            return Err(MediaError::other(song, format!("song start {start_s} s")));
        }
        let (ictx, index, in_tb, origin, first) = open_song(song, start_s)?;
        let params =
            ictx.stream(index)
                .map(|s| s.parameters())
                .ok_or_else(|| MediaError::NoAudio {
                    file: song.to_path_buf(),
                })?;
        let mut dctx = ff::codec::context::Context::from_parameters(params)
            .map_err(|e| MediaError::decode(song, e))?;
        dctx.set_time_base(in_tb);
        let decoder = dctx.decoder().audio().map_err(|e| {
            MediaError::decode(song, format!("no decoder for its audio codec ({e})"))
        })?;
        let encoder_name = if container == "webm" {
            "libopus"
        } else {
            "aac"
        };
        let enc_err = |e: ff::Error| MediaError::Encoder {
            encoder: encoder_name.into(),
            cause: e.to_string(),
        };
        let codec = ff::encoder::find_by_name(encoder_name).ok_or_else(|| MediaError::Encoder {
            encoder: encoder_name.into(),
            cause: "not in this FFmpeg build".into(),
        })?;
        let acodec = codec.audio().map_err(enc_err)?;
        let rate = match acodec.rates() {
            Some(rates) => {
                let all: Vec<i32> = rates.collect();
                if all.contains(&(decoder.rate() as i32)) {
                    decoder.rate() as i32
                } else {
                    48_000
                }
            }
            None if decoder.rate() > 0 => decoder.rate() as i32,
            None => 48_000,
        };
        let encoder = open_encoder(codec, octx, out, rate, ff::ChannelLayout::STEREO, 192_000)?;
        let r = f64::from(rate);
        let want = (length_s * r).round() as i64;
        Ok(Self {
            ictx,
            index,
            song: song.to_path_buf(),
            origin,
            in_tb,
            first,
            decoder,
            graph: None,
            encoder,
            encoder_name,
            variable_frame_size: codec
                .capabilities()
                .contains(ff::codec::capabilities::Capabilities::VARIABLE_FRAME_SIZE),
            tb: ff::Rational::new(1, rate),
            ready: VecDeque::new(),
            want,
            start_sample: (start_s * r).round() as i64,
            fade_samples: ((fade_s.max(0.0) * r).round() as i64).min(want),
            sent: 0,
            next_pts: None,
            read_done: false,
            flushed: false,
        })
    }

    fn enc_err(&self, e: impl ToString) -> MediaError {
        MediaError::Encoder {
            encoder: self.encoder_name.into(),
            cause: e.to_string(),
        }
    }

    /// The next encoded packet (pts in [`Self::tb`]), or `None` when the track is complete.
    pub(crate) fn next(&mut self) -> Result<Option<ff::Packet>, MediaError> {
        loop {
            if let Some(p) = self.ready.pop_front() {
                return Ok(Some(p));
            }
            if self.flushed {
                return Ok(None);
            }
            if self.read_done || self.sent >= self.want {
                self.flush()?;
                continue;
            }
            let pkt = match self.first.take() {
                Some(p) => p,
                None => {
                    let mut pkt = ff::Packet::empty();
                    match pkt.read(&mut self.ictx) {
                        Ok(()) if pkt.stream() != self.index => continue,
                        Ok(()) => pkt,
                        Err(ff::Error::Eof) => {
                            self.read_done = true;
                            continue;
                        }
                        Err(e) => {
                            return Err(MediaError::Truncated {
                                file: self.song.clone(),
                                cause: e.to_string(),
                            })
                        }
                    }
                }
            };
            // a damaged packet is skipped, as a player would
            if self.decoder.send_packet(&pkt).is_ok() {
                self.drain_decoder()?;
            }
        }
    }

    fn drain_decoder(&mut self) -> Result<(), MediaError> {
        let mut frame = ff::frame::Audio::empty();
        while self.decoder.receive_frame(&mut frame).is_ok() {
            // song time: from the stream's start; frames without a timestamp follow on
            let pts = match frame.timestamp() {
                Some(t) => t - self.origin,
                None => self.next_pts.unwrap_or(0),
            };
            let len = (frame.samples() as i64)
                .rescale(ff::Rational::new(1, frame.rate().max(1) as i32), self.in_tb);
            self.next_pts = Some(pts + len);
            frame.set_pts(Some(pts));
            if self.graph.is_none() {
                let g = self.build_graph(&frame).map_err(|e| {
                    MediaError::decode(&self.song, format!("audio conversion: {e}"))
                })?;
                self.graph = Some(g);
            }
            let song = self.song.clone();
            self.graph
                .as_mut()
                .and_then(|g| g.get("in"))
                .ok_or_else(|| MediaError::other(&song, "audio graph lost its input"))?
                .source()
                .add(&frame)
                .map_err(|e| MediaError::decode(&song, e))?;
            self.drain_graph()?;
        }
        Ok(())
    }

    /// abuffer → resample to the encoder's format, rate and stereo → cut by timestamp (in
    /// samples at the output rate; `atrim`'s sample options count samples seen, which a
    /// seek would throw off) from the start for the video's length → pad with silence if short → fade out → encoder-sized frames.
    fn build_graph(&self, f: &ff::frame::Audio) -> Result<ff::filter::Graph, ff::Error> {
        let layout = f.channel_layout().bits();
        let layout = if layout != 0 {
            format!("channel_layout=0x{layout:x}")
        } else {
            format!("channels={}", f.channels().max(1))
        };
        let args = format!(
            "time_base={}:sample_rate={}:sample_fmt={}:{layout}",
            self.in_tb,
            f.rate().max(1),
            f.format().name(),
        );
        let mut g = super::pcm::buffer_graph(&args)?;
        let (s, n, fade) = (self.start_sample, self.want, self.fade_samples);
        let mut chain = format!(
            "aresample={rate},aformat=sample_fmts={fmt}:channel_layouts=stereo,\
             atrim=start_pts={s}:end_pts={end},asetpts=PTS-STARTPTS,apad=whole_len={n}",
            rate = self.encoder.rate(),
            fmt = self.encoder.format().name(),
            end = s + n,
        );
        if fade > 0 {
            chain.push_str(&format!(
                ",afade=t=out:start_sample={}:nb_samples={fade}:curve=tri",
                n - fade
            ));
        }
        g.output("in", 0)?.input("out", 0)?.parse(&chain)?;
        g.validate()?;
        if !self.variable_frame_size {
            if let Some(mut out) = g.get("out") {
                out.sink().set_frame_size(self.encoder.frame_size());
            }
        }
        Ok(g)
    }

    fn drain_graph(&mut self) -> Result<(), MediaError> {
        let mut filtered = ff::frame::Audio::empty();
        loop {
            let Some(mut sink) = self.graph.as_mut().and_then(|g| g.get("out")) else {
                return Ok(());
            };
            if sink.sink().frame(&mut filtered).is_err() {
                return Ok(());
            }
            let room = (self.want - self.sent).max(0);
            if room == 0 {
                continue;
            }
            let n = (filtered.samples() as i64).min(room);
            if n < filtered.samples() as i64 {
                // the graph cuts to the length already; this only guards the count
                filtered.set_samples(n as usize);
            }
            filtered.set_pts(Some(self.sent));
            self.sent += n;
            self.encoder
                .send_frame(&filtered)
                .map_err(|e| self.enc_err(e))?;
            self.drain_encoder();
        }
    }

    fn drain_encoder(&mut self) {
        let mut pkt = ff::Packet::empty();
        while self.encoder.receive_packet(&mut pkt).is_ok() {
            self.ready
                .push_back(std::mem::replace(&mut pkt, ff::Packet::empty()));
        }
    }

    fn flush(&mut self) -> Result<(), MediaError> {
        if self.graph.is_none() {
            return Err(MediaError::decode(
                &self.song,
                "no audio could be decoded from the montage's start",
            ));
        }
        if !self.read_done {
            // the graph has the whole length: stop decoding
        } else {
            let _ = self.decoder.send_eof();
            self.drain_decoder()?;
        }
        if let Some(mut input) = self.graph.as_mut().and_then(|g| g.get("in")) {
            let _ = input.source().flush();
        }
        self.drain_graph()?;
        if self.sent < self.want {
            return Err(MediaError::decode(
                &self.song,
                format!("audio came out {} samples short", self.want - self.sent),
            ));
        }
        let _ = self.encoder.send_eof();
        self.drain_encoder();
        self.flushed = true;
        Ok(())
    }
}

/// Open `song` positioned (by seek where it helps) at or before `start_s` seconds of song
/// time. Returns the input, audio stream index and time base, the stream start (song time
/// 0, in that time base) and a first audio packet already read.
#[allow(clippy::type_complexity)]
fn open_song(
    song: &Path,
    start_s: f64,
) -> Result<
    (
        ff::format::context::Input,
        usize,
        ff::Rational,
        i64,
        Option<ff::Packet>,
    ),
    MediaError,
> {
    /// Seek this far before the start: decoders need some packets to settle.
    const PREROLL_S: f64 = 1.0;
    let mut seek = start_s > 2.0 * PREROLL_S;
    loop {
        let mut ictx = open_input(song)?;
        let Some((index, tb, start)) = ictx
            .streams()
            .best(ff::media::Type::Audio)
            .map(|s| (s.index(), s.time_base(), s.start_time()))
        else {
            return Err(MediaError::NoAudio {
                file: song.to_path_buf(),
            });
        };
        let origin = if start == ff::ffi::AV_NOPTS_VALUE {
            0
        } else {
            start
        };
        let origin_s = origin as f64 * f64::from(tb);
        if seek {
            let target = ((origin_s + start_s - PREROLL_S) * 1e6) as i64;
            if ictx.seek(target, ..target).is_err() {
                seek = false;
                continue;
            }
        }
        let mut first = None;
        loop {
            let mut pkt = ff::Packet::empty();
            match pkt.read(&mut ictx) {
                Ok(()) if pkt.stream() != index => continue,
                Ok(()) => {
                    first = Some(pkt);
                    break;
                }
                Err(ff::Error::Eof) => break,
                Err(e) => {
                    return Err(MediaError::Truncated {
                        file: song.to_path_buf(),
                        cause: e.to_string(),
                    })
                }
            }
        }
        let landed_s = first
            .as_ref()
            .and_then(|p| p.pts().or(p.dts()))
            .map(|p| (p - origin) as f64 * f64::from(tb));
        if seek && landed_s.is_none_or(|t| t > start_s) {
            // the seek went past the start (or to the end): read from the beginning
            seek = false;
            continue;
        }
        return Ok((ictx, index, tb, origin, first));
    }
}
