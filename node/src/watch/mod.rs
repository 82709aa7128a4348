//! Watched folders: every video file that lands in a folder is made into an output (a
//! transcode or a proxy), once, by the same engine for `rendermesh watch` and for the
//! `[[watch]]` tables a node runs.
//!
//! - [`config`]: the `[[watch]]` table (and the command line's options) → a [`WatchSpec`].
//! - [`scan`]: listing the folder, and telling when a file has stopped growing.
//! - [`engine`]: the rules: which files to make, batches of them, the marks that remember
//!   what was done (a restart redoes nothing), counters and recent errors.
//! - [`node`]: what the engine asks of a node: [`node::LocalNode`] (the runtime of this
//!   process) or [`node::HttpNode`] (a node's control API).
//! - [`daemon`]: the watches of a running node, one task each, stopped first at shutdown.
//!
//! ## Where the marks live
//!
//! A mark (size, mtime, content id, outcome) is kept per watch and file in the node's store,
//! in a table of its own that is never replicated (`rendermesh_cache::marks`). A watch's id
//! is a hash of its folder, output folder, output names and work, so the command line and a
//! node's table that watch the same folder the same way share their marks. The command line
//! reads and writes them through the node when one runs (its store is locked by the node):
//! `GET /v1/watch/{id}/records` lists them, `PUT /v1/watch/{id}/records` with a body
//! `{file, mark}` stores one. The file travels in the body, not the path: names with `/`,
//! `%` or `?` need no escaping that way.

pub mod config;
pub mod daemon;
pub mod engine;
pub mod node;
pub mod scan;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use self::config::{WatchConfig, WatchMode};
use crate::jobs::batch::work::{extension_of, output_name};
use crate::jobs::batch::Work;

/// Recent errors a watch keeps for `status`.
pub const RECENT_ERRORS: usize = 20;

/// A watch as the engine runs it (made by [`WatchConfig::spec`]).
#[derive(Clone, Debug, PartialEq)]
pub struct WatchSpec {
    /// The folder watched and the folder outputs go to: absolute, without `.` or `..`.
    pub dir: PathBuf,
    pub out: PathBuf,
    pub mode: WatchMode,
    pub work: Work,
    /// Output names (`{name}`, `{ext}`).
    pub template: String,
    pub chunk_seconds: Option<f64>,
    /// How long a file's size and mtime must stay unchanged before it is taken.
    pub settle: Duration,
    /// How often the folder is scanned.
    pub interval: Duration,
}

impl WatchSpec {
    /// The watch's identity: what it watches and what it makes (not how often it looks).
    /// Hex, 32 digits.
    pub fn id(&self) -> String {
        let mut h = blake3::Hasher::new();
        for part in [
            self.dir.as_os_str().as_encoded_bytes(),
            self.out.as_os_str().as_encoded_bytes(),
            self.template.as_bytes(),
        ] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part);
        }
        let work = serde_json::to_vec(&self.work)
            .unwrap_or_else(|_| format!("{:?}", self.work).into_bytes());
        h.update(&work);
        h.finalize().to_hex()[..32].to_string()
    }

    /// Where the output of `source` (named `rel` within the folder) goes: the same
    /// subfolder of `out`, the name from the template.
    pub fn dest_of(&self, rel: &str, source: &Path) -> Result<PathBuf, String> {
        let name = output_name(&self.template, source, extension_of(&self.work.container));
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(format!("output name {name:?} is not a plain file name"));
        }
        let sub = Path::new(rel).parent().unwrap_or(Path::new(""));
        Ok(self.out.join(sub).join(name))
    }
}

/// One error a watch met: of a file (`file` is its name within the folder), or of the
/// watch itself (the folder unreadable, the node refusing a batch).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchError {
    pub file: Option<String>,
    pub error: String,
    /// When, in ms since the epoch.
    pub at_ms: u64,
}

/// A watch as `GET /v1/watches` and `rendermesh status` show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WatchRow {
    pub id: String,
    pub dir: PathBuf,
    pub out: PathBuf,
    pub mode: WatchMode,
    /// Outputs made (a file made again after its content changed counts again).
    pub processed: u64,
    /// Files whose last attempt failed (they are tried again once they change).
    pub failed: u64,
    /// Files left alone because their output was already there.
    pub skipped: u64,
    /// Files seen but still growing, or waiting for the next batch.
    pub waiting: u64,
    /// The last [`RECENT_ERRORS`] errors, oldest first.
    pub errors: Vec<WatchError>,
}

impl WatchRow {
    pub fn new(spec: &WatchSpec) -> Self {
        Self {
            id: spec.id(),
            dir: spec.dir.clone(),
            out: spec.out.clone(),
            mode: spec.mode,
            processed: 0,
            failed: 0,
            skipped: 0,
            waiting: 0,
            errors: Vec::new(),
        }
    }
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_keep_the_subfolder_and_follow_the_template() {
        let spec = WatchConfig::new("/in".into(), "/out".into(), WatchMode::Proxy)
            .spec()
            .unwrap();
        assert_eq!(
            spec.dest_of("day1/a.mov", Path::new("/in/day1/a.mov")),
            Ok(PathBuf::from("/out/day1/a_proxy.mp4"))
        );
        assert_eq!(
            spec.dest_of("b.mkv", Path::new("/in/b.mkv")),
            Ok(PathBuf::from("/out/b_proxy.mp4"))
        );
        assert_eq!(spec.id().len(), 32);
    }
}
