//! Probe a media file by scanning its packets: no frame is decoded.
//!
//! The probe records every video packet's pts in decode order and the keyframes, which is all
//! the splitter needs to cut frame-exact chunks; it also rejects bad input with a clear cause.

use std::path::Path;

use ffmpeg_next as ff;
use rendermesh_protocol::Rational;
use serde::{Deserialize, Serialize};

use super::{rational, MediaError};

/// Audio stream facts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AudioInfo {
    pub index: usize,
    pub codec: String,
    pub sample_rate: u32,
    pub channels: u16,
    pub time_base: Rational,
    pub packets: u64,
    /// Presentation end of the last packet, in seconds from the first.
    pub duration_s: f64,
}

/// What the splitter and the drivers need to know about a file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    pub format: String,
    pub video_index: usize,
    pub codec: String,
    pub width: u32,
    pub height: u32,
    /// Clockwise rotation a player applies to the coded frames (0, 90, 180 or 270), from
    /// the stream's display matrix.
    #[serde(default)]
    pub rotation: u32,
    pub time_base: Rational,
    /// Average frame rate.
    pub fps: Rational,
    /// Video packets (= frames) in decode order: pts of each.
    pub packet_pts: Vec<i64>,
    /// Decode-order indices of keyframe packets.
    pub keyframes: Vec<u32>,
    /// Frame count.
    pub frames: u64,
    /// First presentation timestamp.
    pub start_pts: i64,
    /// End of the last frame (pts + duration).
    pub end_pts: i64,
    pub audio: Option<AudioInfo>,
    pub bytes: u64,
    /// The start timecode (`HH:MM:SS:FF`, `;` before the frames when drop-frame), from the
    /// container's or a stream's `timecode` tag (a QuickTime `tmcd` track shows up so).
    #[serde(default)]
    pub timecode: Option<String>,
}

impl rendermesh_cache::CacheValue for Probe {
    const KIND: rendermesh_protocol::CacheKind = rendermesh_protocol::CacheKind::Probe;
}

impl Probe {
    /// Width and height as a player shows them (a rotated clip's sides swapped).
    pub fn display_size(&self) -> (u32, u32) {
        match self.rotation {
            90 | 270 => (self.height, self.width),
            _ => (self.width, self.height),
        }
    }

    pub fn duration_s(&self) -> f64 {
        (self.end_pts - self.start_pts) as f64 * self.time_base.as_f64()
    }

    /// Presentation-order pts, sorted.
    pub fn sorted_pts(&self) -> Vec<i64> {
        let mut v = self.packet_pts.clone();
        v.sort_unstable();
        v
    }
}

/// Open a file for reading, turning ffmpeg's errors into ones a user can act on.
pub fn open_input(path: &Path) -> Result<ff::format::context::Input, MediaError> {
    super::init();
    let meta = super::source::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => MediaError::Missing {
            file: path.to_path_buf(),
        },
        _ => MediaError::Unreadable {
            file: path.to_path_buf(),
            cause: e.to_string(),
        },
    })?;
    if !meta.is_file() {
        return Err(MediaError::Unreadable {
            file: path.to_path_buf(),
            cause: "not a regular file".into(),
        });
    }
    if meta.len() == 0 {
        return Err(MediaError::Empty {
            file: path.to_path_buf(),
        });
    }
    // Reading is checked first so a permission problem is not reported as "not media".
    let source = super::source::open(path).map_err(|e| MediaError::Unreadable {
        file: path.to_path_buf(),
        cause: e.to_string(),
    })?;
    let opened = match source {
        // a passed descriptor: ffmpeg reads it through our reader (the file's name still
        // hints the format)
        super::source::Source::Passed(at) => ff::format::context::StreamIo::from_read_seek(at)
            .and_then(|io| {
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                ff::format::input_from_stream(io, name.as_deref(), None)
            }),
        super::source::Source::Opened(_) => ff::format::input(&path),
    };
    opened.map_err(|e| {
        if looks_like_container(path) {
            MediaError::Truncated {
                file: path.to_path_buf(),
                cause: format!("its container is recognisable but cannot be read ({e}); the file is incomplete or damaged"),
            }
        } else {
            MediaError::NotMedia { file: path.to_path_buf(), cause: format!("no known container format ({e})") }
        }
    })
}

/// Read the next packet of `ictx` into `pkt` (releasing what it held): `false` at the end
/// of the file; a read error is the file `path` being truncated.
pub fn read_packet(
    ictx: &mut ff::format::context::Input,
    pkt: &mut ff::Packet,
    path: &Path,
) -> Result<bool, MediaError> {
    match super::next_packet(pkt, ictx) {
        Ok(()) => Ok(true),
        Err(ff::Error::Eof) => Ok(false),
        Err(e) => Err(MediaError::Truncated {
            file: path.to_path_buf(),
            cause: e.to_string(),
        }),
    }
}

/// Does the file start like a media container (MP4/MOV, Matroska/WebM, AVI, NUT, MPEG-TS)?
fn looks_like_container(path: &Path) -> bool {
    let mut head = [0u8; 12];
    let n = super::source::open(path)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
        .unwrap_or(0);
    let head = &head[..n];
    (head.len() >= 8 && matches!(&head[4..8], b"ftyp" | b"moov" | b"mdat" | b"free" | b"wide"))
        || head.starts_with(&[0x1a, 0x45, 0xdf, 0xa3])
        || head.starts_with(b"RIFF")
        || head.starts_with(b"nut/")
        || (n >= 12 && head[0] == 0x47)
}

/// Scan `path` and describe it.
#[tracing::instrument(skip_all, fields(file = %path.display()))]
pub fn probe(path: &Path) -> Result<Probe, MediaError> {
    let mut ictx = open_input(path)?;
    let bytes = super::source::metadata(path).map(|m| m.len()).unwrap_or(0);
    let format = ictx.format().name().to_string();
    let video = ictx
        .streams()
        .best(ff::media::Type::Video)
        .ok_or_else(|| MediaError::NoVideo {
            file: path.to_path_buf(),
        })?;
    let video_index = video.index();
    let params = video.parameters();
    let codec_id = params.id();
    if codec_id == ff::codec::Id::None || ff::decoder::find(codec_id).is_none() {
        let name = match codec_id {
            ff::codec::Id::None => fourcc_of(&params),
            id => format!("{id:?}").to_lowercase(),
        };
        return Err(MediaError::UnsupportedCodec {
            file: path.to_path_buf(),
            codec: name,
        });
    }
    let (width, height) = unsafe {
        let p = params.as_ptr();
        ((*p).width.max(0) as u32, (*p).height.max(0) as u32)
    };
    let rotation = stream_rotation(&video);
    let time_base = rational(video.time_base());
    let mut fps = rational(video.avg_frame_rate());
    if fps.num <= 0 || fps.den <= 0 {
        fps = rational(video.rate());
    }
    let declared_frames = video.frames().max(0) as u64;
    let timecode = start_timecode(&ictx, video_index);
    let audio = ictx.streams().best(ff::media::Type::Audio).map(|a| {
        let p = a.parameters();
        let (sample_rate, channels) = unsafe {
            let p = p.as_ptr();
            (
                (*p).sample_rate.max(0) as u32,
                (*p).ch_layout.nb_channels.max(0) as u16,
            )
        };
        AudioInfo {
            index: a.index(),
            codec: format!("{:?}", p.id()).to_lowercase(),
            sample_rate,
            channels,
            time_base: rational(a.time_base()),
            packets: 0,
            duration_s: 0.0,
        }
    });
    // PCM in AVI (and others) declares its length in samples or blocks, not packets
    let declared_audio = audio
        .as_ref()
        .filter(|a| !a.codec.starts_with("pcm_"))
        .and_then(|a| ictx.stream(a.index))
        .map(|s| s.frames().max(0) as u64);

    let mut packet_pts = Vec::new();
    let mut keyframes = Vec::new();
    let mut end_pts = i64::MIN;
    let mut audio_packets = 0u64;
    let (mut a_min, mut a_max) = (i64::MAX, i64::MIN);
    let mut pkt = ff::Packet::empty();
    loop {
        match super::next_packet(&mut pkt, &mut ictx) {
            Ok(()) => {}
            Err(ff::Error::Eof) => break,
            Err(e) => {
                return Err(MediaError::Truncated {
                    file: path.to_path_buf(),
                    cause: format!("read error after {} video packets: {e}", packet_pts.len()),
                })
            }
        }
        if pkt.stream() == video_index {
            let Some(pts) = pkt.pts() else {
                return Err(MediaError::Other {
                    file: path.to_path_buf(),
                    cause: "video packets carry no timestamps (raw stream?); remux it into a container first".into(),
                });
            };
            if pkt.is_key() {
                keyframes.push(packet_pts.len() as u32);
            }
            end_pts = end_pts.max(pts + pkt.duration().max(0));
            packet_pts.push(pts);
        } else if audio.as_ref().is_some_and(|a| a.index == pkt.stream()) {
            audio_packets += 1;
            if let Some(p) = pkt.pts() {
                a_min = a_min.min(p);
                a_max = a_max.max(p + pkt.duration().max(0));
            }
        }
    }
    if packet_pts.is_empty() {
        return Err(MediaError::Truncated {
            file: path.to_path_buf(),
            cause: "no video frames".into(),
        });
    }
    if declared_frames > 0 && (packet_pts.len() as u64) < declared_frames {
        return Err(MediaError::Truncated {
            file: path.to_path_buf(),
            cause: format!(
                "stream declares {declared_frames} frames, only {} present",
                packet_pts.len()
            ),
        });
    }
    if let Some(d) = declared_audio {
        if d > 0 && audio_packets < d {
            return Err(MediaError::Truncated {
                file: path.to_path_buf(),
                cause: format!("audio declares {d} packets, only {audio_packets} present"),
            });
        }
    }
    if keyframes.first() != Some(&0) {
        // Frames before the first keyframe cannot be decoded on their own.
        return Err(MediaError::Other {
            file: path.to_path_buf(),
            cause: "video does not start with a keyframe".into(),
        });
    }
    let start_pts = packet_pts.iter().copied().min().unwrap_or(0);
    let audio = audio.map(|mut a| {
        a.packets = audio_packets;
        if a_max > a_min {
            a.duration_s = (a_max - a_min) as f64 * a.time_base.as_f64();
        }
        a
    });
    Ok(Probe {
        format,
        video_index,
        codec: format!("{codec_id:?}").to_lowercase(),
        width,
        height,
        rotation,
        time_base,
        fps,
        frames: packet_pts.len() as u64,
        packet_pts,
        keyframes,
        start_pts,
        end_pts,
        audio,
        bytes,
        timecode,
    })
}

/// The start timecode of a file: the container's `timecode` tag, else the video stream's,
/// else any other stream's (a timecode data track).
fn start_timecode(ictx: &ff::format::context::Input, video_index: usize) -> Option<String> {
    let tag = |d: ff::DictionaryRef<'_>| {
        d.get("timecode")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
    };
    tag(ictx.metadata())
        .or_else(|| ictx.stream(video_index).and_then(|s| tag(s.metadata())))
        .or_else(|| ictx.streams().find_map(|s| tag(s.metadata())))
}

/// The clockwise rotation (0, 90, 180, 270) a player applies to `stream`, from its display
/// matrix side data; 0 without one.
fn stream_rotation(stream: &ff::format::stream::Stream) -> u32 {
    use ff::codec::packet::side_data::Type;
    stream
        .side_data()
        .find(|sd| sd.kind() == Type::DisplayMatrix && sd.data().len() >= 9 * 4)
        .map(|sd| {
            let mut m = [0i32; 9];
            for (v, b) in m.iter_mut().zip(sd.data().chunks_exact(4)) {
                *v = i32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
            }
            // SAFETY: `m` is the 3×3 matrix the function reads.
            let ccw = unsafe { ff::ffi::av_display_rotation_get(m.as_ptr()) };
            clockwise_quarter_turns(ccw)
        })
        .unwrap_or(0)
}

/// A counter-clockwise angle in degrees (as the display matrix gives it) as the clockwise
/// rotation a player applies, rounded to a multiple of 90 in 0..360 (0 if not a number).
fn clockwise_quarter_turns(ccw_degrees: f64) -> u32 {
    if !ccw_degrees.is_finite() {
        return 0;
    }
    let quarters = (-ccw_degrees / 90.0).round() as i64;
    (quarters.rem_euclid(4) * 90) as u32
}

fn fourcc_of(params: &ff::codec::Parameters) -> String {
    let tag = unsafe { (*params.as_ptr()).codec_tag };
    let b = tag.to_le_bytes();
    if b.iter().all(|c| c.is_ascii_graphic()) {
        format!("(fourcc {})", String::from_utf8_lossy(&b))
    } else {
        "(unknown)".to_string()
    }
}

/// Probe through the cache: the probe of a content id is computed once.
pub fn probe_cached(
    cache: &rendermesh_cache::Cache,
    path: &Path,
    id: &rendermesh_protocol::ContentId,
) -> Result<(Probe, bool), MediaError> {
    use rendermesh_protocol::{CacheKey, CacheKind};
    let key = CacheKey::derive(CacheKind::Probe, super::ENGINE_VERSION, &[], id);
    match cache.entries.get::<Probe>(&key) {
        Ok(Some(p)) => return Ok((p, true)),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "cache lookup failed; probing"),
    }
    let p = probe(path)?;
    if let Err(e) = cache.entries.put(&key, &p) {
        tracing::warn!(error = %e, "cannot cache probe");
    }
    Ok((p, false))
}

/// The content id of an input file, via the file-identity table.
pub fn identify(
    cache: &rendermesh_cache::Cache,
    path: &Path,
) -> Result<rendermesh_cache::Identified, MediaError> {
    // a device, a FIFO or a directory would be read forever (or not at all): one line, now
    if let Ok(meta) = super::source::metadata(path) {
        if !meta.is_file() {
            let what = if meta.is_dir() {
                "is a directory"
            } else {
                "not a regular file (a device or a pipe)"
            };
            return Err(MediaError::Unreadable {
                file: path.to_path_buf(),
                cause: what.into(),
            });
        }
    }
    let known = match super::source::passed(path) {
        Some(file) => file.and_then(|f| {
            let meta = f.metadata()?;
            cache.files.identify_open(&meta, super::source::open(path)?)
        }),
        None => cache.files.identify(path),
    };
    known.map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => MediaError::Missing {
            file: path.to_path_buf(),
        },
        _ => MediaError::Unreadable {
            file: path.to_path_buf(),
            cause: e.to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A matrix made for a clockwise turn reads back (counter-clockwise, negated) as that
    /// turn.
    #[test]
    fn display_matrix_angles_become_clockwise_quarter_turns() {
        for (set, cw) in [
            (0.0, 0),
            (90.0, 90),
            (-90.0, 270),
            (180.0, 180),
            (270.0, 270),
        ] {
            let mut m = [0i32; 9];
            // SAFETY: `m` is the 3×3 matrix the functions write and read.
            unsafe { ff::ffi::av_display_rotation_set(m.as_mut_ptr(), set) };
            let got = unsafe { ff::ffi::av_display_rotation_get(m.as_ptr()) };
            assert_eq!(clockwise_quarter_turns(got), cw, "{set}");
        }
        assert_eq!(clockwise_quarter_turns(-89.6), 90);
        assert_eq!(clockwise_quarter_turns(271.0), 90);
        assert_eq!(clockwise_quarter_turns(f64::NAN), 0);
    }

    /// The start timecode comes from a QuickTime timecode track, or from a container tag;
    /// a file without one has none.
    #[test]
    fn the_start_timecode_is_read_from_a_track_or_a_tag() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, rate, extra, want) in [
            (
                "tmcd.mov",
                "25",
                "-timecode 01:02:03:04",
                Some("01:02:03:04"),
            ),
            // drop-frame, at 29.97
            (
                "tmcd.mp4",
                "30000/1001",
                "-timecode 10:00:00;02",
                Some("10:00:00;02"),
            ),
            (
                "tag.mkv",
                "25",
                "-metadata timecode=23:59:59:24",
                Some("23:59:59:24"),
            ),
            ("none.mp4", "25", "", None),
        ] {
            let out = dir.path().join(name);
            let clip = format!(
                "-f lavfi -i testsrc2=size=160x120:rate={rate} -t 0.4 -c:v libx264 -preset ultrafast"
            );
            let mut args: Vec<&str> = clip
                .split_whitespace()
                .chain(extra.split_whitespace())
                .collect();
            args.push(out.to_str().expect("path"));
            assert!(crate::engine::conform::tests::ffmpeg(&args), "{name}");
            let p = probe(&out).expect("probe");
            assert_eq!(p.timecode.as_deref(), want, "{name}");
        }
    }
}
