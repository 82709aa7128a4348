//! The `[[watch]]` tables of a running node: each runs as a task of the node's tree
//! (`node/watch/N`), its engine on a blocking thread, from start to shutdown; the node writes
//! the outputs itself. [`Watches::board`] is what `GET /v1/watches` shows.
//!
//! At shutdown the watches stop first ([`Watches::stop`]), before the node's jobs end: a
//! watch no longer marks anything once told to stop, so files of a batch the stop cut
//! short are made again after the restart instead of being marked failed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rendermesh_mesh::Tasks;

use super::engine::{Event, Watcher};
use super::node::LocalNode;
use super::{now_ms, WatchError, WatchRow, WatchSpec};
use crate::config::NodeConfig;
use crate::runtime::Runtime;

/// The watches' rows, for the control API.
#[derive(Clone, Default)]
pub struct WatchBoard {
    rows: Arc<Vec<Arc<Mutex<WatchRow>>>>,
}

impl WatchBoard {
    pub fn rows(&self) -> Vec<WatchRow> {
        self.rows
            .iter()
            .map(|r| r.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .collect()
    }
}

/// The watches of a node.
pub struct Watches {
    pub board: WatchBoard,
    specs: Vec<WatchSpec>,
    stop: Arc<AtomicBool>,
    tasks: Option<Tasks>,
}

impl Watches {
    /// The `[[watch]]` tables of `cfg`, not started yet; a table that does not make a watch
    /// (it was validated when the config was loaded) is logged and left out.
    pub fn new(cfg: &NodeConfig) -> Self {
        let mut specs = Vec::new();
        for w in &cfg.watch {
            match w.spec() {
                Ok(s) => specs.push(s),
                Err(e) => tracing::error!(error = %e, "watch not started"),
            }
        }
        let rows = specs
            .iter()
            .map(|s| Arc::new(Mutex::new(WatchRow::new(s))))
            .collect();
        Self {
            board: WatchBoard {
                rows: Arc::new(rows),
            },
            specs,
            stop: Arc::new(AtomicBool::new(false)),
            tasks: None,
        }
    }

    /// Run every watch as a task under `tasks`; call inside the actix system.
    pub fn start(&mut self, runtime: &Arc<Runtime>, tasks: &Tasks) {
        let tasks = tasks.child("watch");
        for (n, (spec, row)) in self.specs.iter().zip(self.board.rows.iter()).enumerate() {
            let (spec, row) = (spec.clone(), row.clone());
            let node = LocalNode {
                runtime: runtime.clone(),
                arbiter: actix::Arbiter::current(),
            };
            let stop = self.stop.clone();
            tasks.spawn(&n.to_string(), async move {
                let ran =
                    tokio::task::spawn_blocking(move || run_one(spec, &node, &stop, row)).await;
                if let Err(e) = ran {
                    tracing::error!(error = %e, "a watch crashed");
                }
            });
        }
        self.tasks = Some(tasks);
    }

    /// Ask every watch to stop, and wait up to `limit` for them; the tasks still alive.
    pub async fn stop(&self, limit: Duration) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        let Some(tasks) = &self.tasks else {
            return Vec::new();
        };
        let left = tasks.wait(limit).await;
        tasks.stop();
        left
    }
}

impl Drop for Watches {
    /// A node that ends without its shutdown (an error) stops its watches' threads too.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Run one watch on this (blocking) thread until `stop`.
fn run_one(spec: WatchSpec, node: &LocalNode, stop: &AtomicBool, row: Arc<Mutex<WatchRow>>) {
    let id = spec.id();
    // what went wrong goes to the node's log (and to `status`); what went well the engine
    // logs itself
    let on = Box::new(move |e: &Event<'_>| match e {
        Event::Failed { file, error } => {
            tracing::warn!(watch = %id, %file, %error, "watch: file failed")
        }
        Event::Error(error) => tracing::warn!(watch = %id, %error, "watch problem"),
        Event::Made { .. } | Event::Skipped { .. } => {}
    });
    match Watcher::open(spec, node, stop, row.clone(), on) {
        Ok(mut w) => {
            w.run(false);
        }
        Err(e) => {
            tracing::error!(error = %e, "watch not started");
            let mut r = row.lock().unwrap_or_else(|p| p.into_inner());
            r.errors.push(WatchError {
                file: None,
                error: e.to_string(),
                at_ms: now_ms(),
            });
        }
    }
}
