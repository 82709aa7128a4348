//! Render one montage shot: decode source chunks, conform the frames, encode a segment.

use std::path::{Path, PathBuf};

use rendermesh_mesh::exec::ShardCtl;
use rendermesh_protocol::{EncodeOptions, FrameRange, RenderSpec};

use super::MediaError;

/// Placeholder until the conform path lands.
pub fn render_shot(
    _chunks: &[(PathBuf, FrameRange)],
    _spec: &RenderSpec,
    _options: &EncodeOptions,
    out: &Path,
    _threads: usize,
    _ctl: &ShardCtl<'_>,
) -> Result<u64, MediaError> {
    Err(MediaError::other(out, "not yet"))
}
