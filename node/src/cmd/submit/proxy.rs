//! `rendermesh submit proxy IN… -o DIR/`: editing proxies, a batch whose outputs stay in
//! the node's store (asking again, on any box, costs no encode).

use rendermesh_protocol::{EncodeOptions, VideoCodec};

use crate::cli::{ProxyArgs, ProxyCodec};
use crate::config::NodeConfig;
use crate::jobs::batch::Work;

/// What a proxy of `codec` is: encoder settings, container, audio.
pub fn proxy_work(codec: ProxyCodec, height: u32, crf: u8, preset: &str) -> Work {
    let (codec, container) = match codec {
        ProxyCodec::H264 => (VideoCodec::H264, "mp4"),
        ProxyCodec::Prores => (VideoCodec::ProRes, "mov"),
        ProxyCodec::Dnxhr => (VideoCodec::DnxHr, "mov"),
    };
    Work {
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
    }
}

pub(super) fn run(cfg: NodeConfig, a: ProxyArgs) -> anyhow::Result<i32> {
    let work = proxy_work(a.codec, a.height, a.crf, &a.preset);
    super::batch::run(
        &cfg,
        &a.inputs,
        &a.output,
        &a.name,
        a.overwrite,
        work,
        &a.common,
    )
}
