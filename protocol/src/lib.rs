//! Every type that crosses a process boundary in rendermesh, and the codec that carries them.
//!
//! - [`id`]: [`ContentId`] (blake3 of bytes), [`CacheKey`] and [`JobId`].
//! - [`media`]: time bases, codecs, encoder and scene options, frame ranges, scene scores and lists.
//! - [`batch`]: jobs of many files: each file's state and a finished file's cache entry.
//! - [`beats`]: beat-analysis parameters and beat grids.
//! - [`montage`]: the montage plan document and what a render shard makes.
//! - [`job`]: the shards a coordinator plans ([`ShardSpec`]),
//!   what a worker returns ([`ShardResult`]) and the progress a job reports ([`JobStatus`]).
//! - [`caps`]: what a node can do ([`Capabilities`]): host facts, verified encoders, speeds.
//! - [`wire`]: point-to-point requests between nodes (cache replication, blob pieces).
//! - [`codec`]: the versioned binary codec with a hard size limit; the only user of bincode.
//!
//! This crate does no I/O and depends on no other rendermesh crate.

pub mod batch;
pub mod beats;
pub mod caps;
pub mod codec;
pub mod id;
pub mod job;
pub mod media;
pub mod montage;
pub mod wire;

pub use batch::{FileOutput, ItemState, JobItem};
pub use beats::{BeatGrid, BeatParams};
pub use caps::{
    Capabilities, EncoderCap, Gpu, ModelCap, PeerAnnounce, CAPS_VERSION, MAX_SLOTS, TRANSNET_V2,
};
pub use codec::{CodecError, MAX_MESSAGE_SIZE, WIRE_VERSION};
pub use id::{CacheKey, CacheKind, ContentId, IdParseError, JobId};
pub use job::*;
pub use media::*;
pub use montage::{Fit, MontagePlan, PlanMusic, PlanSegment, PlanSource, RenderSpec};
pub use wire::{Bid, BidSheet, ControlAction, EntryRecord, Request, Response, MAX_LISTED_JOBS};
