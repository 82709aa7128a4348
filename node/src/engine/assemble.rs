//! Join a montage's segments frame-exactly and mux the song once.

use std::path::{Path, PathBuf};

use rendermesh_protocol::Rational;

use super::MediaError;

/// Placeholder until the join lands.
pub fn join_montage(
    _segments: &[PathBuf],
    _fps: Rational,
    _song: &Path,
    _start_s: f64,
    _fade_s: f64,
    out: &Path,
    _container: &str,
) -> Result<u64, MediaError> {
    Err(MediaError::other(out, "not yet"))
}
