//! The convolutional part: stacks of dilated (2+1)D convolutions.
//!
//! Activations are laid out `[time, channels, height, width]` (one window, so no batch
//! dimension): a (1,3,3) convolution is then a 2-D convolution with time as the batch, and a
//! (3,1,1) one is a matrix product over the channels at every pixel, summed over three frames
//! `dilation` apart.

use crate::ops::{avg_pool2, conv3x3, gemm, relu, Mat, Volume};
use crate::weights::Weights;
use crate::Error;

/// The four temporal dilations of a block.
const DILATIONS: [usize; 4] = [1, 2, 4, 8];
/// BatchNorm's epsilon in the published model.
const BN_EPS: f32 = 1e-3;

/// One DilatedDCNNV2 block: four separable convolutions (dilations 1, 2, 4, 8) side by side,
/// concatenated, batch-normalised, and optionally ReLU.
pub(crate) struct Block {
    /// The four spatial kernels stacked: `[4 × 2F, C_in, 3, 3]`.
    spatial: Vec<f32>,
    /// Per dilation, the temporal kernel's three taps: `[3, F, 2F]` (tap-major).
    temporal: Vec<Vec<f32>>,
    filters: usize,
    /// BatchNorm folded into a scale and a shift per output channel.
    scale: Vec<f32>,
    shift: Vec<f32>,
    relu: bool,
}

impl Block {
    pub(crate) fn load(
        w: &Weights,
        prefix: &str,
        c_in: usize,
        filters: usize,
        relu: bool,
    ) -> Result<Block, Error> {
        let f2 = 2 * filters;
        let mut spatial = Vec::with_capacity(4 * f2 * c_in * 9);
        let mut temporal = Vec::with_capacity(4);
        for d in DILATIONS {
            // [2F, C_in, 1, 3, 3] is already [2F, C_in·9] row-major
            spatial.extend_from_slice(w.get(
                &format!("{prefix}.Conv3D_{d}.layers.0.weight"),
                &[f2, c_in, 1, 3, 3],
            )?);
            // [F, 2F, 3, 1, 1] → [3, F, 2F]
            let t = w.get(
                &format!("{prefix}.Conv3D_{d}.layers.1.weight"),
                &[filters, f2, 3, 1, 1],
            )?;
            let mut taps = vec![0f32; 3 * filters * f2];
            for o in 0..filters {
                for i in 0..f2 {
                    for k in 0..3 {
                        taps[(k * filters + o) * f2 + i] = t[(o * f2 + i) * 3 + k];
                    }
                }
            }
            temporal.push(taps);
        }
        let n = 4 * filters;
        let gamma = w.get(&format!("{prefix}.bn.weight"), &[n])?;
        let beta = w.get(&format!("{prefix}.bn.bias"), &[n])?;
        let mean = w.get(&format!("{prefix}.bn.running_mean"), &[n])?;
        let var = w.get(&format!("{prefix}.bn.running_var"), &[n])?;
        let scale: Vec<f32> = gamma
            .iter()
            .zip(var)
            .map(|(g, v)| g / (v + BN_EPS).sqrt())
            .collect();
        let shift = beta
            .iter()
            .zip(mean)
            .zip(&scale)
            .map(|((b, m), s)| b - m * s)
            .collect();
        Ok(Block {
            spatial,
            temporal,
            filters,
            scale,
            shift,
            relu,
        })
    }

    /// `[T, C_in, H, W]` → `[T, 4F, H, W]`.
    pub(crate) fn forward(&self, x: &Volume) -> Result<Volume, Error> {
        let (f, f2) = (self.filters, 2 * self.filters);
        let mid = conv3x3(x, &self.spatial, 4 * f2)?; // [T, 4·2F, H, W]
        let p = x.h * x.w;
        let mut out = Volume::zeros(x.t, 4 * f, x.h, x.w);
        let frame_out = out.frame_len();
        for (k, d) in DILATIONS.into_iter().enumerate() {
            temporal(
                &mid,
                k * f2,
                &self.temporal[k],
                f,
                d,
                &mut out.data,
                k * f,
                frame_out,
                p,
            )?;
        }
        for frame in out.data.chunks_exact_mut(frame_out) {
            for (ch, plane) in frame.chunks_exact_mut(p).enumerate() {
                let (s, b) = (self.scale[ch], self.shift[ch]);
                for v in plane.iter_mut() {
                    *v = *v * s + b;
                }
            }
        }
        if self.relu {
            relu(&mut out.data);
        }
        Ok(out)
    }
}

/// A (3,1,1) convolution with `dilation` and zero padding of `dilation` in time:
/// `y[t] = K0·x[t−d] + K1·x[t] + K2·x[t+d]`, where `x` is the `2F` channels of `mid` from
/// `c0` on and `y` the `F` channels of `out` from `o0` on.
#[allow(clippy::too_many_arguments)]
fn temporal(
    mid: &Volume,
    c0: usize,
    taps: &[f32],
    filters: usize,
    d: usize,
    out: &mut [f32],
    o0: usize,
    frame_out: usize,
    p: usize,
) -> Result<(), Error> {
    let f2 = 2 * filters;
    let tap_len = filters * f2;
    for t in 0..mid.t {
        let y = &mut out[t * frame_out + o0 * p..][..filters * p];
        let mut first = true;
        for (k, tap) in taps.chunks_exact(tap_len).enumerate() {
            // frame t + (k − 1)·d, if inside the window
            let Some(s) = (t + k * d).checked_sub(d).filter(|&s| s < mid.t) else {
                continue;
            };
            let x = &mid.frame(s)[c0 * p..(c0 + f2) * p];
            gemm(
                filters,
                f2,
                p,
                Mat::rows(tap, f2),
                Mat::rows(x, p),
                y,
                !first,
            )?;
            first = false;
        }
    }
    Ok(())
}

/// StackedDDCNNV2: blocks in a row (ReLU on all but the last), ReLU, the first block's
/// output added back, then 2×2 average pooling in space.
pub(crate) struct Stack {
    blocks: Vec<Block>,
}

impl Stack {
    pub(crate) fn load(
        w: &Weights,
        prefix: &str,
        c_in: usize,
        filters: usize,
        n_blocks: usize,
    ) -> Result<Stack, Error> {
        let mut blocks = Vec::with_capacity(n_blocks);
        for j in 0..n_blocks {
            let c = if j == 0 { c_in } else { 4 * filters };
            let relu = j + 1 != n_blocks;
            blocks.push(Block::load(
                w,
                &format!("{prefix}.DDCNN.{j}"),
                c,
                filters,
                relu,
            )?);
        }
        Ok(Stack { blocks })
    }

    pub(crate) fn forward(&self, x: &Volume) -> Result<Volume, Error> {
        let mut shortcut: Option<Volume> = None;
        let mut x = x.clone();
        for b in &self.blocks {
            x = b.forward(&x)?;
            if shortcut.is_none() {
                shortcut = Some(x.clone());
            }
        }
        relu(&mut x.data);
        if let Some(s) = shortcut {
            for (v, s) in x.data.iter_mut().zip(&s.data) {
                *v += s;
            }
        }
        Ok(avg_pool2(&x))
    }
}
