//! Jobs of many files (a batch transcode, proxies): how each file went ([`JobItem`]) and
//! what a finished file is remembered as ([`FileOutput`]), so asking again costs nothing.

use serde::{Deserialize, Serialize};

use crate::id::ContentId;

/// Where one file of a job stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ItemState {
    /// Not started: waiting for its shards' turn.
    Waiting,
    /// Some of its shards run (or its segments are being joined).
    Running,
    /// Made by this job.
    Done,
    /// Answered from the cache (made by an earlier job, here or on a peer).
    Cached,
    /// It failed; the item's note says why. The other files go on.
    Failed,
}

impl ItemState {
    /// Over: done, cached or failed.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ItemState::Done | ItemState::Cached | ItemState::Failed
        )
    }

    /// Has an output.
    pub fn is_ok(self) -> bool {
        matches!(self, ItemState::Done | ItemState::Cached)
    }
}

/// One file of a job of many files.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobItem {
    /// The input as it was named.
    pub name: String,
    pub state: ItemState,
    /// Why it failed, or something worth knowing (e.g. "same content as …").
    pub note: Option<String>,
    /// The finished file, as a blob in the coordinating node's store.
    pub output: Option<ContentId>,
    pub bytes: u64,
    /// Video frames of the output (of the source while it runs).
    pub frames: u64,
    /// Shards of this file, and how many are in.
    pub shards: u32,
    pub shards_done: u32,
}

impl JobItem {
    pub fn waiting(name: String) -> Self {
        Self {
            name,
            state: ItemState::Waiting,
            note: None,
            output: None,
            bytes: 0,
            frames: 0,
            shards: 0,
            shards_done: 0,
        }
    }

    pub fn failed(name: String, why: String) -> Self {
        Self {
            state: ItemState::Failed,
            note: Some(why),
            ..Self::waiting(name)
        }
    }
}

/// A finished file under its cache key (`CacheKind::FileOutput`): the work (options) and
/// the source's content id decide the key, the output is a blob somewhere in the mesh.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileOutput {
    pub output: ContentId,
    pub bytes: u64,
    pub frames: u64,
}
