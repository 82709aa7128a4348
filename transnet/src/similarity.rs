//! The two similarity features: how alike each frame is to the 50 frames before and after it,
//! by learned embeddings of the convolutional features (FrameSimilarity) and by colour
//! histograms (ColorHistograms). Each gives, per frame, 101 cosine similarities (zero beyond
//! the window's ends), mapped through a dense layer and ReLU to 128 features.

use candle_core::{Device, Tensor, D};

use crate::weights::Weights;
use crate::{Error, FRAME_BYTES, HEIGHT, WIDTH};

/// Frames compared on each side of a frame, and the width of the lookup.
const HALF: usize = 50;
const LOOKUP: usize = 2 * HALF + 1;
// a frame's pixel counts stay exact in f32
const _: () = assert!(WIDTH * HEIGHT < 1 << 24);

/// Bins of the colour histogram: 3 bits each of R, G and B.
const BINS: usize = 512;
/// The smallest norm a row is divided by (as torch's `normalize`).
const NORM_EPS: f64 = 1e-12;

/// A dense layer, `y = x·Wᵀ + b`.
pub(crate) struct Dense {
    w_t: Tensor,
    b: Tensor,
}

impl Dense {
    pub(crate) fn load(
        w: &Weights,
        prefix: &str,
        d_in: usize,
        d_out: usize,
    ) -> Result<Dense, Error> {
        let weight = w.get(&format!("{prefix}.weight"), &[d_out, d_in])?;
        Ok(Dense {
            w_t: weight.t()?.contiguous()?,
            b: w.get(&format!("{prefix}.bias"), &[d_out])?,
        })
    }

    /// `[N, d_in]` → `[N, d_out]`.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor, Error> {
        Ok(x.matmul(&self.w_t)?.broadcast_add(&self.b)?)
    }
}

/// Rows scaled to unit length.
fn normalize_rows(x: &Tensor) -> Result<Tensor, Error> {
    let norm = x
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(NORM_EPS, f64::MAX)?;
    Ok(x.broadcast_div(&norm)?)
}

/// `[T, T]` similarities → `[T, 101]`: row t holds the similarity to frames t−50 … t+50.
fn lookup(sim: &Tensor, device: &Device) -> Result<Tensor, Error> {
    let t = sim.dim(0)?;
    let all: Vec<f32> = sim.flatten_all()?.to_vec1()?;
    let mut out = vec![0f32; t * LOOKUP];
    for row in 0..t {
        for j in 0..LOOKUP {
            let col = row + j;
            if (HALF..HALF + t).contains(&col) {
                out[row * LOOKUP + j] = all[row * t + col - HALF];
            }
        }
    }
    Ok(Tensor::from_vec(out, (t, LOOKUP), device)?)
}

/// The similarity feature of unit-length rows `[T, D]` through `fc`.
fn windowed(unit: &Tensor, fc: &Dense, device: &Device) -> Result<Tensor, Error> {
    let sim = unit.matmul(&unit.t()?)?;
    Ok(fc.forward(&lookup(&sim, device)?)?.relu()?)
}

/// FrameSimilarity over the features of every stack.
pub(crate) struct FrameSimilarity {
    projection: Dense,
    fc: Dense,
}

impl FrameSimilarity {
    pub(crate) fn load(w: &Weights, channels: usize) -> Result<FrameSimilarity, Error> {
        Ok(FrameSimilarity {
            projection: Dense::load(w, "frame_sim_layer.projection", channels, 128)?,
            fc: Dense::load(w, "frame_sim_layer.fc", LOOKUP, 128)?,
        })
    }

    /// `means`: per stack, its output averaged over space, `[T, C_i]`.
    pub(crate) fn forward(&self, means: &[Tensor], device: &Device) -> Result<Tensor, Error> {
        let x = Tensor::cat(means, 1)?;
        let unit = normalize_rows(&self.projection.forward(&x)?)?;
        windowed(&unit, &self.fc, device)
    }
}

/// ColorHistograms of the raw frames.
pub(crate) struct ColorHistograms {
    fc: Dense,
}

impl ColorHistograms {
    pub(crate) fn load(w: &Weights) -> Result<ColorHistograms, Error> {
        Ok(ColorHistograms {
            fc: Dense::load(w, "color_hist_layer.fc", LOOKUP, 128)?,
        })
    }

    /// `frames`: T frames of RGB24 at the network's size.
    pub(crate) fn forward(&self, frames: &[u8], device: &Device) -> Result<Tensor, Error> {
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
        debug_assert_eq!(frames.len() % FRAME_BYTES, 0);
        let hist = Tensor::from_vec(hist, (t, BINS), device)?;
        windowed(&normalize_rows(&hist)?, &self.fc, device)
    }
}
