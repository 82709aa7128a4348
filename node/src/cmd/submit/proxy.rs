//! `rendermesh submit proxy IN… -o DIR/`: editing proxies, a batch whose outputs stay in
//! the node's store (asking again, on any box, costs no encode).

use rendermesh_protocol::VideoCodec;

use crate::cli::{ProxyArgs, ProxyCodec};
use crate::config::NodeConfig;
use crate::jobs::batch::work::proxy_work;

/// The codec a proxy option names.
pub fn proxy_codec(c: ProxyCodec) -> VideoCodec {
    match c {
        ProxyCodec::H264 => VideoCodec::H264,
        ProxyCodec::Prores => VideoCodec::ProRes,
        ProxyCodec::Dnxhr => VideoCodec::DnxHr,
    }
}

pub(super) fn run(cfg: NodeConfig, a: ProxyArgs) -> anyhow::Result<i32> {
    let work = proxy_work(proxy_codec(a.codec), a.height, a.crf, &a.preset)
        .map_err(|e| anyhow::anyhow!("--codec: {e}"))?;
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
