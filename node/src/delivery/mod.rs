//! Bringing a job's outputs to the user's files, the same way for the CLI (over the control
//! API, or from an in-process mesh of one) and for the node itself (a watched folder).
//!
//! - [`files`]: atomic writes and moves (temp file beside the destination + rename).
//! - [`batch`]: a job of many files followed to its end: each finished file written as soon
//!   as it is done, one [`Outcome`](batch::Outcome) per file.
//! - Here: [`JobView`], how a running job is seen: [`HttpView`] (a node's control API) or
//!   [`LocalView`] (a job of this process).

pub mod batch;
pub mod files;

use std::io::Read;
use std::time::{Duration, Instant};

use rendermesh_cache::Cache;
use rendermesh_mesh::JobHandle;
use rendermesh_protocol::{ContentId, JobId, JobStatus};

use crate::api::client::Client;

/// A running job as the one who submitted it sees it.
pub trait JobView {
    /// The status now, or once the job is over, whichever comes first within `wait_ms`.
    fn status(&self, wait_ms: u64) -> anyhow::Result<JobStatus>;
    /// The output of item `n` (blob `id`) as a reader.
    fn item_output(&self, n: usize, id: &ContentId) -> anyhow::Result<Box<dyn Read + Send>>;
    /// The node need not keep item `n`'s output (blob `id`) any longer.
    fn drop_item_output(&self, n: usize, id: &ContentId);
}

/// A job on a node, through its control API.
pub struct HttpView<'a> {
    pub client: &'a Client,
    pub id: JobId,
}

impl JobView for HttpView<'_> {
    fn status(&self, wait_ms: u64) -> anyhow::Result<JobStatus> {
        self.client.status_waiting(self.id, wait_ms)
    }

    fn item_output(&self, n: usize, _id: &ContentId) -> anyhow::Result<Box<dyn Read + Send>> {
        self.client.item_output(self.id, n)
    }

    fn drop_item_output(&self, n: usize, _id: &ContentId) {
        if let Err(e) = self.client.drop_item_output(self.id, n) {
            tracing::warn!(error = %e, "node kept an output");
        }
    }
}

/// A job of this process: its handle and the store its outputs are in.
pub struct LocalView {
    pub handle: JobHandle,
    pub cache: Cache,
}

impl JobView for LocalView {
    fn status(&self, wait_ms: u64) -> anyhow::Result<JobStatus> {
        let until = Instant::now() + Duration::from_millis(wait_ms);
        loop {
            let s = self.handle.status();
            if s.state.is_final() || Instant::now() >= until {
                return Ok(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn item_output(&self, _n: usize, id: &ContentId) -> anyhow::Result<Box<dyn Read + Send>> {
        let path = self.cache.blobs.path(id);
        let f = std::fs::File::open(&path)
            .map_err(|e| anyhow::anyhow!("output {} is no longer stored: {e}", id.short()))?;
        Ok(Box::new(f))
    }

    fn drop_item_output(&self, _n: usize, id: &ContentId) {
        if let Err(e) = self.cache.blobs.remove_unpinned(id) {
            tracing::debug!(blob = %id.short(), error = %e, "cannot remove an output");
        }
    }
}
