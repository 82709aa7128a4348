//! The jobs this node coordinates: their live status and, once finished, their result.
//!
//! [`JobBoard::start`] makes a job's [`JobHandle`] and starts its [`Coordinator`] actor.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use rendermesh_protocol::{JobId, JobStatus};

use super::coordinator::{Coordinator, StopJob};
use super::handle::{lock, JobHandle};
use crate::exec::JobDriver;
use crate::exec::Worker;
use crate::remote::MeshLink;

fn new_job_id() -> JobId {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    JobId(h.finish())
}

/// The jobs of this node.
pub struct JobBoard {
    jobs: Mutex<HashMap<JobId, JobHandle>>,
    /// The coordinator of each job (gone once it has stopped).
    coordinators: Mutex<HashMap<JobId, Addr<Coordinator>>>,
    workers: Vec<(Addr<Worker>, usize)>,
    link: Mutex<Option<MeshLink>>,
}

impl JobBoard {
    /// `workers`: this node's workers and the slots of each.
    pub fn new(workers: Vec<(Addr<Worker>, usize)>) -> Self {
        Self {
            jobs: Mutex::new(HashMap::new()),
            coordinators: Mutex::new(HashMap::new()),
            workers,
            link: Mutex::new(None),
        }
    }

    /// Jobs started from now on also auction their shards to the mesh's peers.
    pub fn set_mesh(&self, link: MeshLink) {
        *lock(&self.link) = Some(link);
    }

    /// The mesh this node is part of (none for a mesh of one).
    pub fn link(&self) -> Option<MeshLink> {
        lock(&self.link).clone()
    }

    /// Live peers of the mesh (none for a mesh of one).
    pub fn peers(&self) -> Vec<crate::peers::PeerEntry> {
        lock(&self.link)
            .as_ref()
            .map(|l| l.peers.rows())
            .unwrap_or_default()
    }

    /// Start a job; must be called inside a running actix system.
    pub fn start(&self, kind: &str, inputs: Vec<String>, driver: Box<dyn JobDriver>) -> JobHandle {
        let id = new_job_id();
        let handle = JobHandle::planning(id, kind, inputs);
        lock(&self.jobs).insert(id, handle.clone());
        let link = lock(&self.link).clone();
        let addr = Coordinator::new(id, driver, self.workers.clone(), link, handle.clone()).start();
        lock(&self.coordinators).insert(id, addr);
        handle
    }

    /// Stop every job still running (its node is stopping): each fails with `reason` and its
    /// runs are cancelled. Returns how many were stopped.
    pub fn stop_all(&self, reason: &str) -> usize {
        let running: Vec<JobId> = lock(&self.jobs)
            .iter()
            .filter(|(_, h)| !h.status().state.is_final())
            .map(|(id, _)| *id)
            .collect();
        let coordinators = std::mem::take(&mut *lock(&self.coordinators));
        let mut stopped = 0;
        for id in running {
            if let Some(addr) = coordinators.get(&id) {
                if addr.try_send(StopJob(reason.to_string())).is_ok() {
                    stopped += 1;
                }
            }
        }
        stopped
    }

    /// Cancel job `id` for a user: it ends `Cancelled` at once and its coordinator stops every
    /// run of it, here and on peers (`CancelShard`). An error line when there is no such
    /// job or it is over already.
    pub fn cancel(&self, id: JobId, reason: &str) -> Result<(), String> {
        let handle = self
            .get(id)
            .ok_or_else(|| format!("no job {id} on this node"))?;
        if !handle.cancel(reason) {
            let state = handle.status().state;
            return Err(format!("job {id} is over already ({state:?})"));
        }
        if let Some(addr) = lock(&self.coordinators).remove(&id) {
            // a coordinator still planning reads this once its plan is in
            let _ = addr.try_send(StopJob(reason.to_string()));
        }
        tracing::info!(job = %id, reason, "job cancelled");
        Ok(())
    }

    /// Wait up to `limit` until no job is running; how many still are.
    pub async fn stopped(&self, limit: std::time::Duration) -> usize {
        let handles: Vec<JobHandle> = lock(&self.jobs).values().cloned().collect();
        let wait = futures::future::join_all(handles.iter().map(|h| h.wait()));
        let _ = tokio::time::timeout(limit, wait).await;
        handles
            .iter()
            .filter(|h| !h.status().state.is_final())
            .count()
    }

    pub fn get(&self, id: JobId) -> Option<JobHandle> {
        lock(&self.jobs).get(&id).cloned()
    }

    /// Every job, newest first.
    pub fn list(&self) -> Vec<JobStatus> {
        let mut all: Vec<JobStatus> = lock(&self.jobs).values().map(|h| h.status()).collect();
        all.sort_by_key(|j| std::cmp::Reverse(j.started_unix_ms));
        all
    }
}
