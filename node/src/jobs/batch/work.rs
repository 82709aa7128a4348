//! What a batch does to each file and what its outputs are called, the same for `submit`,
//! `rendermesh watch` and a node's `[[watch]]` tables.

use std::path::Path;

use rendermesh_protocol::{EncodeOptions, VideoCodec};

use super::Work;
use crate::engine::concat::container_for;

/// Extensions of the video files a directory (or a watched folder) contributes.
pub const VIDEO_EXTENSIONS: [&str; 12] = [
    "mp4", "mov", "m4v", "mkv", "webm", "avi", "mts", "m2ts", "ts", "mxf", "nut", "mpg",
];

/// The codecs a proxy may use.
pub const PROXY_CODECS: [VideoCodec; 3] = [VideoCodec::H264, VideoCodec::ProRes, VideoCodec::DnxHr];

/// The usual file extension of a muxer.
pub fn extension_of(container: &str) -> &'static str {
    match container {
        "matroska" => "mkv",
        "mov" => "mov",
        "webm" => "webm",
        "nut" => "nut",
        _ => "mp4",
    }
}

/// The output name of `input` from `template` ({name}: its stem; {ext}: `ext`).
pub fn output_name(template: &str, input: &Path, ext: &str) -> String {
    let stem = input
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    template.replace("{name}", &stem).replace("{ext}", ext)
}

/// A batch transcode: the container from the name template's literal extension, else mp4
/// (QuickTime with PCM audio for the editing codecs).
pub fn transcode_work(
    codec: VideoCodec,
    crf: u8,
    preset: Option<String>,
    encoder: Option<String>,
    template: &str,
) -> Result<Work, String> {
    let ext_of_template = Path::new(template)
        .extension()
        .map(|e| e.to_string_lossy().into_owned())
        .filter(|e| e != "{ext}");
    let container = match &ext_of_template {
        Some(e) => container_for(Path::new(&format!("x.{e}"))).map_err(|e| e.to_string())?,
        None if codec.is_intermediate() => "mov".into(),
        None => "mp4".into(),
    };
    Ok(Work {
        options: EncodeOptions {
            codec,
            crf,
            preset,
            encoder,
            height: None,
        },
        container,
        pcm_audio: codec.is_intermediate(),
        keep: false,
    })
}

/// Editing proxies of `codec` (one of [`PROXY_CODECS`]) at `height` lines: H.264 in MP4
/// (`crf`, `preset`), ProRes Proxy or DNxHR LB in QuickTime with PCM audio; kept in the
/// store once delivered.
pub fn proxy_work(codec: VideoCodec, height: u32, crf: u8, preset: &str) -> Result<Work, String> {
    if !PROXY_CODECS.contains(&codec) {
        return Err(format!(
            "{} is not a proxy codec (h264, prores, dnxhr)",
            codec.name()
        ));
    }
    let container = if codec.is_intermediate() {
        "mov"
    } else {
        "mp4"
    };
    Ok(Work {
        options: EncodeOptions {
            codec,
            crf,
            preset: (codec == VideoCodec::H264).then(|| preset.to_string()),
            encoder: None,
            height: Some(height),
        },
        container: container.into(),
        pcm_audio: codec.is_intermediate(),
        keep: true,
    })
}
