//! The node's long-lived tasks as a tree, tied to stop signals: nothing is detached.
//!
//! ```text
//!   Tasks "node" ── child "replica" ── spawn("replica/sync") …
//!        │       └─ child "network" ── spawn("network/event-loop"), spawn("network/service")
//!        └─ spawn("node/mesh-info"), spawn("node/watchdog") …
//! ```
//!
//! Every task is spawned through a [`Tasks`] under a name and counted until it has ended. When
//! its node (or any ancestor) is stopped, its future is dropped at its next `.await`, so a loop
//! needs no stop logic of its own; a task that must finish something first selects on
//! [`Tasks::stopped`] instead. A stopping daemon stops the subtrees in its own order (see the
//! node's shutdown) and asks [`Tasks::wait`] which tasks are still alive: its shutdown report.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};

/// Names of the tasks alive in a tree, by id.
#[derive(Default)]
struct Registry {
    live: Mutex<BTreeMap<u64, String>>,
    next: AtomicU64,
    ended: Notify,
}

impl Registry {
    fn live(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, String>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A node of the task tree: spawns named tasks that end when it or an ancestor is stopped.
#[derive(Clone)]
pub struct Tasks {
    name: String,
    /// The stop signals of the root, …, this node (the last is this node's own). Every clone
    /// and every task holds them, so a tree stops only when told to.
    chain: Vec<Arc<watch::Sender<bool>>>,
    registry: Arc<Registry>,
}

impl Tasks {
    /// The root of a tree.
    pub fn root(name: &str) -> Self {
        Self {
            name: name.to_string(),
            chain: vec![Arc::new(watch::channel(false).0)],
            registry: Arc::default(),
        }
    }

    /// A subtree: stopped with this node, or on its own.
    pub fn child(&self, name: &str) -> Self {
        let mut chain = self.chain.clone();
        chain.push(Arc::new(watch::channel(false).0));
        Self {
            name: format!("{}/{name}", self.name),
            chain,
            registry: self.registry.clone(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Stop this node and its subtrees: their tasks end at their next `.await`.
    pub fn stop(&self) {
        if let Some(own) = self.chain.last() {
            own.send_replace(true);
        }
    }

    pub fn is_stopped(&self) -> bool {
        self.chain.iter().any(|s| *s.borrow())
    }

    /// Resolves once this node or an ancestor is stopped.
    pub fn stopped(&self) -> impl Future<Output = ()> + 'static {
        let chain = self.chain.clone();
        async move {
            let waits = chain.iter().map(|tx| {
                let mut rx = tx.subscribe();
                Box::pin(async move {
                    let _ = rx.wait_for(|stopped| *stopped).await;
                })
            });
            futures::future::select_all(waits).await;
        }
    }

    /// Run `fut` as task `name` of this node (on the current actix system / local set).
    pub fn spawn<F>(&self, name: &str, fut: F)
    where
        F: Future<Output = ()> + 'static,
    {
        let id = self.registry.next.fetch_add(1, Ordering::Relaxed);
        let full = format!("{}/{name}", self.name);
        self.registry.live().insert(id, full);
        let registry = self.registry.clone();
        let stopped = self.stopped();
        actix::spawn(async move {
            tokio::select! {
                _ = fut => {}
                _ = stopped => {}
            }
            registry.live().remove(&id);
            registry.ended.notify_waiters();
        });
    }

    /// Names of the tasks of the whole tree still alive.
    pub fn live(&self) -> Vec<String> {
        self.registry.live().values().cloned().collect()
    }

    /// Names of this node's tasks (and its subtrees') still alive.
    pub fn live_here(&self) -> Vec<String> {
        let prefix = format!("{}/", self.name);
        self.live()
            .into_iter()
            .filter(|n| n.starts_with(&prefix))
            .collect()
    }

    /// Wait up to `limit` for this node's tasks to end; the names of those still alive.
    pub async fn wait(&self, limit: Duration) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let ended = self.registry.ended.notified();
            let left = self.live_here();
            if left.is_empty() || tokio::time::Instant::now() >= deadline {
                return left;
            }
            let _ = tokio::time::timeout_at(deadline, ended).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn stopping_a_subtree_ends_its_tasks_and_only_its_own() {
        let root = Tasks::root("node");
        let net = root.child("network");
        let rep = root.child("replica");
        net.spawn("loop", std::future::pending());
        rep.spawn("sync", std::future::pending());
        let finished = Arc::new(AtomicU64::new(0));
        {
            let (rep, finished) = (rep.clone(), finished.clone());
            // a task that finishes something when asked to stop
            root.spawn("flush", async move {
                rep.stopped().await;
                finished.fetch_add(1, Ordering::SeqCst);
            });
        }
        tokio::task::yield_now().await;
        assert_eq!(
            root.live(),
            ["node/network/loop", "node/replica/sync", "node/flush"]
        );
        rep.stop();
        assert_eq!(rep.wait(Duration::from_secs(2)).await, Vec::<String>::new());
        // the replica's stop reached the task watching it; the network goes on
        tokio::task::yield_now().await;
        assert_eq!(finished.load(Ordering::SeqCst), 1);
        assert_eq!(root.live(), ["node/network/loop"]);
        assert!(!net.is_stopped() && rep.is_stopped());
        // the root stops everything below it
        root.stop();
        assert!(net.is_stopped());
        assert_eq!(
            root.wait(Duration::from_secs(2)).await,
            Vec::<String>::new()
        );
    }

    #[actix_rt::test]
    async fn wait_names_the_tasks_that_outlive_the_limit() {
        let root = Tasks::root("node");
        root.spawn("quick", async {});
        // a task that ignores the stop is not possible: its future is dropped; a task whose
        // node is not stopped stays alive and is named
        root.child("other").spawn("loop", std::future::pending());
        let left = root.wait(Duration::from_millis(100)).await;
        assert_eq!(left, ["node/other/loop"]);
    }
}
