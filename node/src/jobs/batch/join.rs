//! The joiner: one thread per batch that joins a finished file's segments with its audio
//! into the output blob, remembers it as a finished file (`CacheKind::FileOutput`) and marks
//! the file's items done. Files are joined one at a time, while the rest of the batch runs.

use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;

use rendermesh_cache::{Cache, PinGuard};
use rendermesh_protocol::{CacheKey, ContentId, FileOutput, ItemState};

use super::items::Items;
use super::Work;
use crate::engine::concat::{concat, JoinOptions};
use crate::engine::probe::Probe;
use crate::jobs::kind::release_blobs;

/// A file whose segments are all in.
pub(super) struct JoinTask {
    pub input: PathBuf,
    pub probe: Probe,
    /// Its segments in order, and their pins (released once joined).
    pub segments: Vec<ContentId>,
    pub pins: Vec<PinGuard>,
    /// Where the segments were remembered for a resumed job (forgotten once joined).
    pub segment_keys: Vec<CacheKey>,
    pub output_key: CacheKey,
    /// The items this file stands for.
    pub items: Vec<usize>,
}

pub(super) struct Joiner {
    tx: Option<mpsc::Sender<JoinTask>>,
    thread: Option<JoinHandle<()>>,
}

impl Joiner {
    pub(super) fn start(cache: Cache, work: Work, items: Items) -> Self {
        let (tx, rx) = mpsc::channel::<JoinTask>();
        let thread = std::thread::Builder::new()
            .name("batch-join".into())
            .spawn(move || {
                for task in rx {
                    let which = task.items.clone();
                    match join_one(&cache, &work, task) {
                        Ok(out) => items.update(&which, |it| {
                            it.state = ItemState::Done;
                            it.output = Some(out.output);
                            it.bytes = out.bytes;
                            it.frames = out.frames;
                        }),
                        Err(why) => items.fail(&which, &why),
                    }
                }
            });
        match thread {
            Ok(t) => Self {
                tx: Some(tx),
                thread: Some(t),
            },
            Err(e) => {
                tracing::error!(error = %e, "cannot start the joiner thread");
                Self {
                    tx: None,
                    thread: None,
                }
            }
        }
    }

    /// Join this file when the files before it are joined. A joiner that could not start
    /// fails the file.
    pub(super) fn send(&self, task: JoinTask) -> Result<(), String> {
        match &self.tx {
            Some(tx) => tx
                .send(task)
                .map_err(|_| "the joiner has stopped".to_string()),
            None => Err("the joiner could not start".into()),
        }
    }

    /// Wait until every file sent is joined.
    pub(super) fn wait(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Join one file: its output blob, remembered as a finished file, or why not (one line).
fn join_one(cache: &Cache, work: &Work, task: JoinTask) -> Result<FileOutput, String> {
    let paths: Vec<PathBuf> = task
        .segments
        .iter()
        .map(|id| cache.blobs.path(id))
        .collect();
    let tmp = cache.blobs.temp_path("output");
    let options = JoinOptions {
        pcm_audio: work.pcm_audio,
    };
    let joined = concat(
        &paths,
        &task.input,
        &task.probe,
        &tmp,
        &work.container,
        options,
    );
    release_blobs(cache, task.pins);
    for key in &task.segment_keys {
        let _ = cache.entries.remove(key);
    }
    let frames = match joined {
        Ok(f) if f == task.probe.frames => f,
        Ok(f) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(format!(
                "{}: output has {f} frames, source {}; not writing it",
                task.input.display(),
                task.probe.frames
            ));
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e.to_string());
        }
    };
    let (output, bytes) = cache
        .blobs
        .adopt(&tmp)
        .map_err(|e| format!("storing the output: {e}"))?;
    let out = FileOutput {
        output,
        bytes,
        frames,
    };
    let stored = cache
        .entries
        .put(&task.output_key, &out)
        .map_err(|e| e.to_string())
        .and_then(|()| cache.entries.flush().map_err(|e| e.to_string()));
    if let Err(e) = stored {
        tracing::warn!(error = %e, "cannot remember a finished file");
    }
    Ok(out)
}
