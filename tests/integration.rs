//! The multi-process tests, one module per file: each runs the real `rendermesh` binary (and
//! real ffmpeg, sled and libp2p between processes on loopback). One binary holds them all, so
//! they share one build and the tests of different files run side by side. `distributed` and
//! `unequal` are binaries of their own: their timings need the machine to themselves; so is
//! `hardset`, whose network run would slow the timed waits of the others.
//!
//! Run one file's tests with `cargo test --test integration FILE::`, e.g.
//! `cargo test --test integration neural:: -- --nocapture` for its MEASURED lines.

mod common;

mod absurd;
mod bad_input;
mod batch;
mod beats;
mod browser;
mod cache;
mod caps;
mod cli;
mod concurrent;
mod daemon;
mod dashboard;
mod history;
mod kinds;
mod local_users;
mod mdns;
mod metrics;
mod montage;
mod montage_mesh;
mod neural;
mod package;
mod peers;
mod proxy;
mod replication;
mod scenes;
mod systemd;
mod transcode;
mod watch;
