//! Job kinds: what the mesh runs, one folder per kind, listed once in [`KINDS`].
//!
//! A kind owns everything about its work: its driver (plans stages of shards and assembles
//! the result, see [`rendermesh_mesh::JobDriver`]), its shard runner (the node's side of its
//! [`ShardTask`](rendermesh_protocol::ShardTask) variants), the speeds of its task classes from
//! the node's calibration, and its exports. The mesh schedules the shards by their envelope
//! (inputs, class, cost) without looking inside.
//!
//! - [`transcode`]: cut at keyframes, encode chunks, join, mux the audio once.
//! - [`batch`]: many files in one auction (batch transcodes, proxies, watched folders); a
//!   file fails alone; finished files are remembered by content.
//! - [`scenes`]: per-frame scene scores in time shards, the detectors, CSV/JSON/EDL exports.
//! - [`beats`]: tempo, beats, bars and sections of songs, one shard per file, from a
//!   pure-Rust tracker.
//! - [`checksum`]: two stages (digest every file, then combine the digests): the smallest
//!   kind, and the example of how to write one.
//! - [`kind`]: the [`JobKind`](kind::JobKind) trait a kind implements, and what it is given.
//! - [`registry`]: the list of kinds; starting a job by its kind's name.
//! - [`executor`]: the [`ShardExecutor`](rendermesh_mesh::ShardExecutor) the workers run: it
//!   hands each shard to the kind that owns its task.
//! - [`video`]: how video work is counted and priced (classes per resolution, work units).
//! - [`calibrate`]: encoders proven by a test encode, and the measurements every kind turns
//!   into speeds of its classes.
//!
//! The control API, the CLI and the in-process path start jobs through
//! [`registry::start`]: a [`SubmitRequest`](kind::SubmitRequest) names a kind and carries
//! that kind's own parameters.
//!
//! Adding a kind: a folder here with a unit struct implementing [`kind::JobKind`], its
//! `ShardTask` variants in the protocol, one row in [`registry::KINDS`], and a `submit`
//! subcommand in the CLI. Nothing in the mesh changes.

pub mod batch;
pub mod beats;
pub mod calibrate;
pub mod checksum;
pub mod executor;
pub mod kind;
pub mod montage;
pub mod registry;
pub mod scenes;
pub mod transcode;
pub mod video;
