//! Job history: the jobs this node coordinated, kept in its store (bounded by
//! `job_history`), so the dashboard and `status` still show them after a restart, and the
//! request each was submitted with, so a failed job can be run again.
//!
//! Each job is one record of the cache's [`Journal`] (this node's own, never replicated):
//! its [`JobStatus`] (shard table and items included) and its [`SubmitRequest`], under the
//! time it started. A record is written when the job is submitted and again when it ends
//! ([`record_ends`], on a daemon); a record that never saw its end (the node stopped
//! mid-job) reads as `Failed` from the next start on.
//!
//! Only a node that records the ends writes: an in-process run (`submit` without a daemon)
//! keeps its requests in memory and leaves the store as it was.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rendermesh_cache::{Cache, Journal};
use rendermesh_protocol::{JobId, JobState, JobStatus};
use serde::{Deserialize, Serialize};

use crate::jobs::kind::SubmitRequest;
use rendermesh_mesh::JobBoard;

/// The error of a job whose node stopped before it ended.
pub const STOPPED: &str = "the node stopped before the job ended";

/// How often the recorder looks for jobs that ended.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// One job as the store keeps it.
#[derive(Serialize, Deserialize)]
struct Record {
    status: JobStatus,
    #[serde(default)]
    request: Option<SubmitRequest>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // a panic while holding the lock leaves a map or nothing half-written: recover it
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The node's job history.
pub struct History {
    journal: Journal,
    /// How many jobs are kept (0: none).
    max: usize,
    /// Requests of this run's jobs not yet kept with their end.
    requests: Mutex<HashMap<JobId, SubmitRequest>>,
    /// Records are written only once the ends are recorded too ([`record_ends`]).
    recording: AtomicBool,
    /// Writes one at a time (a put of one id is not atomic in the journal).
    writing: Mutex<()>,
    /// Kept jobs without their shard tables, newest first, as last read (the dashboard asks
    /// every second); dropped by every write.
    summaries: Mutex<Option<Vec<JobStatus>>>,
}

impl History {
    /// The history in `cache`, keeping the newest `max` jobs. Jobs an earlier run left
    /// unfinished are marked `Failed` ([`STOPPED`]) now, once.
    pub fn open(cache: &Cache, max: usize) -> Self {
        let history = Self {
            journal: cache.journal.clone(),
            max,
            requests: Mutex::new(HashMap::new()),
            recording: AtomicBool::new(false),
            writing: Mutex::new(()),
            summaries: Mutex::new(None),
        };
        if let Err(e) = history.close_unfinished() {
            tracing::warn!(error = %e, "job history: cannot mark the jobs left unfinished");
        }
        history
    }

    fn close_unfinished(&self) -> anyhow::Result<()> {
        let _w = lock(&self.writing);
        self.journal.trim(self.max)?;
        for (at, id, mut r) in self.journal.list::<Record>(self.max)? {
            if r.status.state.is_final() {
                continue;
            }
            r.status.state = JobState::Failed;
            r.status.error = Some(STOPPED.to_string());
            self.journal.put(at, id, &r)?;
        }
        Ok(())
    }

    /// Write records from now on (the daemon, which also records the ends).
    fn start_recording(&self) {
        self.recording.store(true, Ordering::SeqCst);
    }

    /// Job `id` was submitted with `req`.
    pub fn submitted(&self, id: JobId, req: &SubmitRequest) {
        lock(&self.requests).insert(id, req.clone());
    }

    /// Keep `status` with the request its job was submitted with; a final status is the
    /// job's last record. A store failure is logged.
    pub fn record(&self, status: &JobStatus) {
        if !self.recording.load(Ordering::SeqCst) || self.max == 0 {
            return;
        }
        let request = lock(&self.requests).get(&status.id).cloned();
        let _w = lock(&self.writing);
        let before = if request.is_none() || !status.state.is_final() {
            self.stored(status.id)
        } else {
            None
        };
        // a late write of a job's start never hides its end
        if before.as_ref().is_some_and(|b| b.status.state.is_final()) && !status.state.is_final() {
            return;
        }
        // a job submitted before the restart keeps the request it was stored with
        let request = request.or_else(|| before.and_then(|b| b.request));
        let record = Record {
            status: status.clone(),
            request,
        };
        let written = self
            .journal
            .put(status.started_unix_ms, status.id.0, &record)
            .and_then(|()| self.journal.trim(self.max));
        *lock(&self.summaries) = None;
        match written {
            Ok(_) if status.state.is_final() => {
                lock(&self.requests).remove(&status.id);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(job = %status.id, error = %e, "job history: not written"),
        }
    }

    fn stored(&self, id: JobId) -> Option<Record> {
        match self.journal.get::<Record>(id.0) {
            Ok(r) => r.map(|(_, r)| r),
            Err(e) => {
                tracing::warn!(job = %id, error = %e, "job history: cannot read");
                None
            }
        }
    }

    /// The request job `id` was submitted with (this run's, or a kept job's).
    pub fn request(&self, id: JobId) -> Option<SubmitRequest> {
        if let Some(r) = lock(&self.requests).get(&id) {
            return Some(r.clone());
        }
        self.stored(id)?.request
    }

    /// Kept jobs, newest first (at most `n`). A job of this run still running shows as
    /// it was last written; the board knows better.
    pub fn list(&self, n: usize) -> Vec<JobStatus> {
        match self.journal.list::<Record>(n) {
            Ok(all) => all.into_iter().map(|(_, _, r)| r.status).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "job history: cannot list");
                Vec::new()
            }
        }
    }

    /// Kept jobs without their shard tables, newest first (at most `n`): read from the store
    /// only after a write.
    pub fn summaries(&self, n: usize) -> Vec<JobStatus> {
        let mut memo = lock(&self.summaries);
        let all = memo.get_or_insert_with(|| {
            self.list(self.max)
                .into_iter()
                .map(|mut s| {
                    s.shards.clear();
                    s
                })
                .collect()
        });
        all.iter().take(n).cloned().collect()
    }

    /// A kept job.
    pub fn get(&self, id: JobId) -> Option<JobStatus> {
        Some(self.stored(id)?.status)
    }

    fn flush(&self) {
        if let Err(e) = self.journal.flush() {
            tracing::warn!(error = %e, "job history: flush failed");
        }
    }
}

/// What the recorder has written of the board's jobs.
struct Sweep {
    board: Arc<JobBoard>,
    history: Arc<History>,
    /// Jobs written once (any state), and those written with their end.
    seen: HashSet<JobId>,
    ended: HashSet<JobId>,
}

impl Sweep {
    /// Write every job new on the board and every job that ended since the last sweep.
    fn run(&mut self) {
        for status in self.board.list() {
            let new = self.seen.insert(status.id);
            if status.state.is_final() {
                if self.ended.insert(status.id) {
                    self.history.record(&status);
                }
            } else if new {
                self.history.record(&status);
            }
        }
    }
}

impl Drop for Sweep {
    /// The task stopped (the node is stopping): the ends of the jobs it stopped are kept too.
    fn drop(&mut self) {
        self.run();
        self.history.flush();
    }
}

/// Keep the jobs of `board` in `history`: a task of `tasks` writes, every second, the jobs
/// that ended since (and once more when it is stopped).
pub fn record_ends(board: &Arc<JobBoard>, history: &Arc<History>, tasks: &rendermesh_mesh::Tasks) {
    history.start_recording();
    let mut sweep = Sweep {
        board: board.clone(),
        history: history.clone(),
        seen: HashSet::new(),
        ended: HashSet::new(),
    };
    sweep.run();
    tasks.spawn("history", async move {
        loop {
            tokio::time::sleep(SWEEP_EVERY).await;
            sweep.run();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use rendermesh_cache::{BlobStore, MemStore, Store};
    use rendermesh_protocol::WorkStats;

    fn cache(dir: &std::path::Path) -> Cache {
        let store: Arc<dyn Store> = Arc::new(MemStore::default());
        Cache::with_store(store, BlobStore::open(dir).unwrap())
    }

    fn status(id: u64, at: u64, state: JobState) -> JobStatus {
        JobStatus {
            id: JobId(id),
            kind: "transcode".into(),
            inputs: vec![format!("in{id}.mp4")],
            state,
            frames_total: 10,
            frames_done: 0,
            shards: Vec::new(),
            error: None,
            stats: WorkStats::default(),
            from_cache: false,
            notes: Vec::new(),
            started_unix_ms: at,
            elapsed_ms: 0,
            stage: 0,
            stage_name: "transcode".into(),
            items: Vec::new(),
            outputs: Vec::new(),
        }
    }

    fn request(n: u64) -> SubmitRequest {
        SubmitRequest {
            kind: "transcode".into(),
            params: serde_json::json!({ "input": format!("in{n}.mp4") }),
        }
    }

    fn recording(cache: &Cache, max: usize) -> History {
        let h = History::open(cache, max);
        h.start_recording();
        h
    }

    #[test]
    fn only_the_newest_max_jobs_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache(dir.path());
        let h = recording(&c, 3);
        for i in 1..=5u64 {
            h.submitted(JobId(i), &request(i));
            h.record(&status(i, 1_000 * i, JobState::Done));
        }
        let ids: Vec<u64> = h.list(10).iter().map(|s| s.id.0).collect();
        assert_eq!(ids, vec![5, 4, 3]);
        assert_eq!(c.journal.len().unwrap(), 3);
        assert!(h.get(JobId(2)).is_none());
        assert!(h.request(JobId(2)).is_none());
        assert_eq!(h.list(2).len(), 2);
    }

    #[test]
    fn a_restart_keeps_states_and_requests_and_fails_unfinished_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache(dir.path());
        {
            let h = recording(&c, 10);
            h.submitted(JobId(1), &request(1));
            h.record(&status(1, 1_000, JobState::Planning));
            h.record(&status(1, 1_000, JobState::Done));
            h.submitted(JobId(2), &request(2));
            h.record(&status(2, 2_000, JobState::Running));
        }
        let h = History::open(&c, 10);
        let list = h.list(10);
        assert_eq!(
            list.iter().map(|s| (s.id.0, s.state)).collect::<Vec<_>>(),
            vec![(2, JobState::Failed), (1, JobState::Done)]
        );
        assert_eq!(list[0].error.as_deref(), Some(STOPPED));
        assert_eq!(list[1].error, None);
        assert_eq!(h.get(JobId(1)).unwrap().state, JobState::Done);
        assert_eq!(
            h.request(JobId(2)).unwrap().params,
            serde_json::json!({ "input": "in2.mp4" })
        );
        assert!(h.get(JobId(3)).is_none());
    }

    #[test]
    fn a_node_that_does_not_record_ends_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache(dir.path());
        let h = History::open(&c, 10);
        h.submitted(JobId(1), &request(1));
        h.record(&status(1, 1_000, JobState::Planning));
        assert!(c.journal.is_empty().unwrap());
        // the request is known for this run all the same
        assert_eq!(h.request(JobId(1)).unwrap().kind, "transcode");
        // and with a bound of 0 nothing is kept
        let none = recording(&c, 0);
        none.record(&status(2, 1_000, JobState::Done));
        assert!(c.journal.is_empty().unwrap());
    }
}
