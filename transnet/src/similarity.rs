//! The two similarity features: how alike each frame is to the 50 frames before and after it,
//! by learned embeddings of the convolutional features (FrameSimilarity) and by colour
//! histograms (ColorHistograms). Each gives, per frame, 101 cosine similarities (zero beyond
//! the window's ends), mapped through a dense layer and ReLU to 128 features.

use crate::ops::{gemm, normalize_rows, relu, Dense, Mat};
use crate::weights::Weights;
use crate::{Error, FRAME_BYTES, HEIGHT, WIDTH};

/// Frames compared on each side of a frame, and the width of the lookup.
const HALF: usize = 50;
const LOOKUP: usize = 2 * HALF + 1;
// a frame's pixel counts stay exact in f32
const _: () = assert!(WIDTH * HEIGHT < 1 << 24);

/// Bins of the colour histogram: 3 bits each of R, G and B.
const BINS: usize = 512;

/// `t` unit-length rows of `cols` → `[t, 101]`: row i holds the cosine similarity to frames
/// i−50 … i+50, zero beyond the window.
fn lookup(unit: &[f32], t: usize, cols: usize) -> Result<Vec<f32>, Error> {
    let mut sim = vec![0f32; t * t];
    gemm(
        t,
        cols,
        t,
        Mat::rows(unit, cols),
        Mat::transposed(unit, cols),
        &mut sim,
        false,
    )?;
    let mut out = vec![0f32; t * LOOKUP];
    for row in 0..t {
        for j in 0..LOOKUP {
            let col = row + j;
            if (HALF..HALF + t).contains(&col) {
                out[row * LOOKUP + j] = sim[row * t + col - HALF];
            }
        }
    }
    Ok(out)
}

/// The similarity feature of unit-length rows through `fc` and ReLU: `[t, 128]`.
fn windowed(unit: &[f32], t: usize, cols: usize, fc: &Dense) -> Result<Vec<f32>, Error> {
    let mut y = fc.forward(&lookup(unit, t, cols)?, t)?;
    relu(&mut y);
    Ok(y)
}

/// FrameSimilarity over the features of every stack.
pub(crate) struct FrameSimilarity {
    projection: Dense,
    fc: Dense,
}

/// Width of the projected embedding and of both features.
pub(crate) const FEATURES: usize = 128;

impl FrameSimilarity {
    pub(crate) fn load(w: &Weights, channels: usize) -> Result<FrameSimilarity, Error> {
        Ok(FrameSimilarity {
            projection: Dense::load(w, "frame_sim_layer.projection", channels, FEATURES)?,
            fc: Dense::load(w, "frame_sim_layer.fc", LOOKUP, FEATURES)?,
        })
    }

    /// `features`: per frame, every stack's output averaged over space, concatenated
    /// (`[t, channels]`).
    pub(crate) fn forward(&self, features: &[f32], t: usize) -> Result<Vec<f32>, Error> {
        let mut unit = self.projection.forward(features, t)?;
        normalize_rows(&mut unit, FEATURES);
        windowed(&unit, t, FEATURES, &self.fc)
    }
}

/// ColorHistograms of the raw frames.
pub(crate) struct ColorHistograms {
    fc: Dense,
}

impl ColorHistograms {
    pub(crate) fn load(w: &Weights) -> Result<ColorHistograms, Error> {
        Ok(ColorHistograms {
            fc: Dense::load(w, "color_hist_layer.fc", LOOKUP, FEATURES)?,
        })
    }

    /// `frames`: whole RGB24 frames at the network's size → `[t, 128]`.
    pub(crate) fn forward(&self, frames: &[u8]) -> Result<Vec<f32>, Error> {
        let t = frames.len() / FRAME_BYTES;
        let mut hist = vec![0f32; t * BINS];
        for (k, frame) in frames.chunks_exact(FRAME_BYTES).enumerate() {
            for px in frame.chunks_exact(3) {
                let bin = ((px[0] as usize >> 5) << 6)
                    | ((px[1] as usize >> 5) << 3)
                    | (px[2] as usize >> 5);
                hist[k * BINS + bin] += 1.0;
            }
        }
        normalize_rows(&mut hist, BINS);
        windowed(&hist, t, BINS, &self.fc)
    }
}
