//! The output's audio track, taken from the source once: stream copy when the container can
//! hold the source codec, else decoded and encoded once (AAC, or Opus for WebM; PCM when
//! asked) by [`super::audio_encode`]. Audio is never chunked, so joins of video segments
//! cannot make it drift.

use std::path::{Path, PathBuf};

use ffmpeg_next as ff;

use super::audio_encode::{pcm_encoder_for, Reencode};
use super::probe::open_input;
use super::MediaError;

/// How the output's audio is made from the source's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AudioMode {
    /// Stream copy when the container accepts the source codec, else AAC (Opus for WebM).
    #[default]
    Auto,
    /// Decoded and written as uncompressed PCM, 16-bit (24-bit for a deeper source), at
    /// the source's rate and layout: what editing applications want beside an
    /// intermediate codec in QuickTime.
    Pcm,
}

/// Where the output's audio packets come from.
pub struct AudioTrack {
    ictx: ff::format::context::Input,
    index: usize,
    in_tb: ff::Rational,
    source: PathBuf,
    encode: Option<Reencode>,
    done: bool,
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

impl AudioTrack {
    /// Add the audio stream (as stream 1) to `octx`, before its header is written.
    pub fn add(
        source: &Path,
        index: usize,
        octx: &mut ff::format::context::Output,
        out: &Path,
        format: &str,
        mode: AudioMode,
    ) -> Result<Self, MediaError> {
        let ictx = open_input(source)?;
        let ist = ictx
            .stream(index)
            .ok_or_else(|| MediaError::other(source, "audio stream vanished"))?;
        let params = ist.parameters();
        let in_tb = ist.time_base();
        let wout = |e: ff::Error| MediaError::write(out, format!("audio stream: {e}"));
        let name = match mode {
            AudioMode::Auto if container_accepts(octx, params.id()) => {
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
            AudioMode::Auto if format == "webm" => "libopus",
            AudioMode::Auto => "aac",
            AudioMode::Pcm => {
                let name = pcm_encoder_for(&params);
                let accepts = ff::encoder::find_by_name(name)
                    .is_some_and(|c| container_accepts(octx, c.id()));
                if !accepts {
                    return Err(MediaError::write(
                        out,
                        format!("a {format} file cannot hold PCM audio; write .mov or .mkv"),
                    ));
                }
                name
            }
        };
        let encode = Reencode::open(source, params, in_tb, name, octx, out)?;
        match mode {
            AudioMode::Auto => tracing::info!(
                encoder = name,
                "audio cannot be copied into {format}: encoding it once"
            ),
            AudioMode::Pcm => tracing::debug!(encoder = name, "audio written as PCM"),
        }
        Ok(Self {
            ictx,
            index,
            in_tb,
            source: source.to_path_buf(),
            encode: Some(encode),
            done: false,
        })
    }

    /// The next audio packet for the output, with its time base.
    pub fn next(&mut self) -> Result<Option<(ff::Packet, ff::Rational)>, MediaError> {
        loop {
            if let Some(enc) = self.encode.as_mut() {
                if let Some(p) = enc.pop() {
                    return Ok(Some((p, enc.enc_tb)));
                }
                if enc.flushed() {
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
