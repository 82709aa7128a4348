//! The convolutional part: stacks of dilated (2+1)D convolutions.
//!
//! Activations are laid out `[time, channels, height, width]` (one window, so no batch
//! dimension): a (1,3,3) convolution is then a 2-D convolution with time as the batch, and a
//! (3,1,1) one is a matrix product over the channels at every pixel, summed over three frames
//! `dilation` apart.

use candle_core::{Tensor, D};

use crate::weights::Weights;
use crate::Error;

/// The four temporal dilations of a block.
const DILATIONS: [usize; 4] = [1, 2, 4, 8];
/// BatchNorm's epsilon in the published model.
const BN_EPS: f64 = 1e-3;

/// One DilatedDCNNV2 block: four separable convolutions (dilations 1, 2, 4, 8) side by side,
/// concatenated, batch-normalised, and optionally ReLU.
pub(crate) struct Block {
    /// The four spatial kernels stacked: `[4 × 2F, C_in, 3, 3]`.
    spatial: Tensor,
    /// Per dilation, the temporal kernel's three taps stacked: `[3 × F, 2F]` (tap-major).
    temporal: Vec<Tensor>,
    filters: usize,
    /// BatchNorm folded into a scale and a shift: `[4F, 1, 1]` each.
    scale: Tensor,
    shift: Tensor,
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
        let mut spatial = Vec::with_capacity(4);
        let mut temporal = Vec::with_capacity(4);
        for d in DILATIONS {
            let s = w.get(
                &format!("{prefix}.Conv3D_{d}.layers.0.weight"),
                &[2 * filters, c_in, 1, 3, 3],
            )?;
            spatial.push(s.squeeze(2)?);
            let t = w.get(
                &format!("{prefix}.Conv3D_{d}.layers.1.weight"),
                &[filters, 2 * filters, 3, 1, 1],
            )?;
            // [F, 2F, 3] → [3, F, 2F] → [3F, 2F]: one product gives all three taps
            let t = t
                .squeeze(4)?
                .squeeze(3)?
                .permute((2, 0, 1))?
                .contiguous()?
                .reshape((3 * filters, 2 * filters))?;
            temporal.push(t);
        }
        let spatial = Tensor::cat(&spatial, 0)?.contiguous()?;
        let n = 4 * filters;
        let gamma = w.get(&format!("{prefix}.bn.weight"), &[n])?;
        let beta = w.get(&format!("{prefix}.bn.bias"), &[n])?;
        let mean = w.get(&format!("{prefix}.bn.running_mean"), &[n])?;
        let var = w.get(&format!("{prefix}.bn.running_var"), &[n])?;
        let scale = gamma.div(&(var + BN_EPS)?.sqrt()?)?;
        let shift = beta.sub(&mean.mul(&scale)?)?;
        Ok(Block {
            spatial,
            temporal,
            filters,
            scale: scale.reshape((n, 1, 1))?,
            shift: shift.reshape((n, 1, 1))?,
            relu,
        })
    }

    /// `[T, C_in, H, W]` → `[T, 4F, H, W]`.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor, Error> {
        let (t, _, h, w) = x.dims4()?;
        let f2 = 2 * self.filters;
        let mid = x.conv2d(&self.spatial, 1, 1, 1, 1)?; // [T, 4·2F, H, W]
        let mut outs = Vec::with_capacity(4);
        for (k, d) in DILATIONS.into_iter().enumerate() {
            let branch = mid.narrow(1, k * f2, f2)?.reshape((t, f2, h * w))?;
            outs.push(temporal(&branch, &self.temporal[k], self.filters, d)?);
        }
        let y = Tensor::cat(&outs, 1)?.reshape((t, 4 * self.filters, h, w))?;
        let y = y.broadcast_mul(&self.scale)?.broadcast_add(&self.shift)?;
        Ok(if self.relu { y.relu()? } else { y })
    }
}

/// A (3,1,1) convolution with `dilation` and zero padding of `dilation` in time:
/// `y[t] = K0·x[t−d] + K1·x[t] + K2·x[t+d]`. `x`: `[T, C, P]`, `taps`: `[3F, C]` → `[T, F, P]`.
fn temporal(x: &Tensor, taps: &Tensor, filters: usize, d: usize) -> Result<Tensor, Error> {
    let t = x.dim(0)?;
    let all = taps.broadcast_matmul(x)?; // [T, 3F, P]
    let centre = all.narrow(1, filters, filters)?;
    if d >= t {
        return Ok(centre.contiguous()?);
    }
    // K0 applied to x[t−d]: the product at frame s lands at s+d
    let back = all
        .narrow(1, 0, filters)?
        .narrow(0, 0, t - d)?
        .pad_with_zeros(0, d, 0)?;
    // K2 applied to x[t+d]: the product at frame s lands at s−d
    let ahead = all
        .narrow(1, 2 * filters, filters)?
        .narrow(0, d, t - d)?
        .pad_with_zeros(0, 0, d)?;
    Ok((centre + back)?.add(&ahead)?)
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

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor, Error> {
        let mut x = x.clone();
        let mut shortcut = None;
        for b in &self.blocks {
            x = b.forward(&x)?;
            if shortcut.is_none() {
                shortcut = Some(x.clone());
            }
        }
        let mut x = x.relu()?;
        if let Some(s) = shortcut {
            x = (x + s)?;
        }
        Ok(x.avg_pool2d((2, 2))?)
    }
}

/// Mean over the spatial dimensions: `[T, C, H, W]` → `[T, C]`.
pub(crate) fn spatial_mean(x: &Tensor) -> Result<Tensor, Error> {
    Ok(x.mean(D::Minus1)?.mean(D::Minus1)?)
}
