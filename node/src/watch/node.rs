//! What the watch engine asks of a node, and the two nodes it runs against:
//!
//! - [`LocalNode`]: the runtime of this process (the daemon's, or an in-process mesh of one
//!   of `rendermesh watch`). The engine runs on a blocking thread; jobs start on the actix
//!   system's thread, where the runtime expects them, through its arbiter.
//! - [`HttpNode`]: a running node through its control API. Its store is locked by it, so
//!   marks go through the API; content ids are hashed here (the same blake3 of the file the
//!   node's file-identity table keeps).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rendermesh_cache::Mark;
use rendermesh_protocol::ContentId;

use crate::api::client::Client;
use crate::delivery::{HttpView, JobView, LocalView};
use crate::jobs::kind::SubmitRequest;
use crate::runtime::Runtime;

/// How long a job may take to start on the actix thread.
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(30);

/// The node a watch runs against.
pub trait WatchNode {
    /// Every mark of watch `watch`, by file name.
    fn marks(&self, watch: &str) -> anyhow::Result<Vec<(String, Mark)>>;
    fn put_mark(&self, watch: &str, file: &str, mark: &Mark) -> anyhow::Result<()>;
    /// The content id of the file at `path`.
    fn identify(&self, path: &Path) -> anyhow::Result<ContentId>;
    /// Start a job; its view.
    fn submit(&self, req: SubmitRequest) -> anyhow::Result<Box<dyn JobView + '_>>;
    /// How the node is named in the command line's first line.
    fn describe(&self) -> String;
}

/// The runtime of this process.
pub struct LocalNode {
    pub runtime: Arc<Runtime>,
    /// The arbiter of the actix system the runtime runs in.
    pub arbiter: actix::ArbiterHandle,
}

impl WatchNode for LocalNode {
    fn marks(&self, watch: &str) -> anyhow::Result<Vec<(String, Mark)>> {
        Ok(self.runtime.cache.marks.list(watch)?)
    }

    fn put_mark(&self, watch: &str, file: &str, mark: &Mark) -> anyhow::Result<()> {
        Ok(self.runtime.cache.marks.put(watch, file, mark)?)
    }

    fn identify(&self, path: &Path) -> anyhow::Result<ContentId> {
        Ok(crate::engine::probe::identify(&self.runtime.cache, path)?.id)
    }

    fn submit(&self, req: SubmitRequest) -> anyhow::Result<Box<dyn JobView + '_>> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let runtime = self.runtime.clone();
        let sent = self.arbiter.spawn_fn(move || {
            let _ = tx.send(runtime.submit(req));
        });
        if !sent {
            anyhow::bail!("the node is stopping");
        }
        let handle = rx
            .recv_timeout(SUBMIT_TIMEOUT)
            .map_err(|_| anyhow::anyhow!("the node did not start the job"))?
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Box::new(LocalView {
            handle,
            cache: self.runtime.cache.clone(),
        }))
    }

    fn describe(&self) -> String {
        "in-process as a mesh of one".into()
    }
}

/// A running node, through its control API.
pub struct HttpNode {
    pub client: Client,
    pub name: String,
}

impl WatchNode for HttpNode {
    fn marks(&self, watch: &str) -> anyhow::Result<Vec<(String, Mark)>> {
        Ok(self
            .client
            .watch_marks(watch)?
            .into_iter()
            .map(|r| (r.file, r.mark))
            .collect())
    }

    fn put_mark(&self, watch: &str, file: &str, mark: &Mark) -> anyhow::Result<()> {
        self.client.put_watch_mark(watch, file, mark)
    }

    fn identify(&self, path: &Path) -> anyhow::Result<ContentId> {
        let (id, _) = rendermesh_cache::files::hash_file(path)
            .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", path.display()))?;
        Ok(id)
    }

    fn submit(&self, req: SubmitRequest) -> anyhow::Result<Box<dyn JobView + '_>> {
        let id = self.client.submit(&req)?;
        Ok(Box::new(HttpView {
            client: &self.client,
            id,
        }))
    }

    fn describe(&self) -> String {
        format!("on node {}", self.name)
    }
}
