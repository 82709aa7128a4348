//! Scene detection: per-frame scores of a shard ([`analyze`]), the detectors that turn the
//! scores of a whole file into cuts ([`detect`]), and the job driver ([`job`]).

pub mod analyze;
pub mod detect;
pub mod job;
