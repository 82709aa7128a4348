//! [`JobHandle`]: the shared view of one job, read by the control API and written by its
//! coordinator: the live status, and once the job is over, its result.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rendermesh_protocol::{JobId, JobResult, JobState, JobStatus, WorkStats};
use tokio::sync::watch;

use crate::clock::now_ms;

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Status updates cannot leave the data half-changed; recover from a poisoned lock.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct JobInner {
    status: Mutex<JobStatus>,
    result: Mutex<Option<Result<JobResult, String>>>,
    done: watch::Sender<bool>,
    /// A user asked to stop the job: its end is `Cancelled`, not `Failed`.
    cancel_asked: AtomicBool,
}

/// Shared view of one job: read by the control API, written by its coordinator.
#[derive(Clone)]
pub struct JobHandle {
    inner: Arc<JobInner>,
}

impl JobHandle {
    /// A job just submitted: planning, nothing done, started now.
    pub(super) fn planning(id: JobId, kind: &str, inputs: Vec<String>) -> Self {
        Self::new(JobStatus {
            id,
            kind: kind.to_string(),
            inputs,
            state: JobState::Planning,
            frames_total: 0,
            frames_done: 0,
            shards: Vec::new(),
            error: None,
            stats: WorkStats::default(),
            from_cache: false,
            notes: Vec::new(),
            started_unix_ms: now_ms(),
            elapsed_ms: 0,
            stage: 0,
            stage_name: kind.to_string(),
            items: Vec::new(),
            outputs: Vec::new(),
        })
    }

    fn new(status: JobStatus) -> Self {
        let (done, _) = watch::channel(false);
        Self {
            inner: Arc::new(JobInner {
                status: Mutex::new(status),
                result: Mutex::new(None),
                done,
                cancel_asked: AtomicBool::new(false),
            }),
        }
    }

    pub fn id(&self) -> JobId {
        lock(&self.inner.status).id
    }

    /// A snapshot of the status.
    pub fn status(&self) -> JobStatus {
        let mut s = lock(&self.inner.status).clone();
        if !s.state.is_final() {
            s.elapsed_ms = now_ms().saturating_sub(s.started_unix_ms);
        }
        s
    }

    /// Change the status in place.
    pub fn update<R>(&self, f: impl FnOnce(&mut JobStatus) -> R) -> R {
        f(&mut lock(&self.inner.status))
    }

    /// The result, once the job is over.
    pub fn result(&self) -> Option<Result<JobResult, String>> {
        lock(&self.inner.result).clone()
    }

    /// Wait until the job is over.
    pub async fn wait(&self) -> Result<JobResult, String> {
        let mut rx = self.inner.done.subscribe();
        // The sender lives in `inner`, which we hold: wait_for cannot see a closed channel.
        let _ = rx.wait_for(|d| *d).await;
        self.result()
            .unwrap_or_else(|| Err("job ended without a result".into()))
    }

    /// Wait until the job is over or `max` has passed, whichever comes first (a status
    /// poller that sees the end at once instead of at its next poll).
    pub async fn wait_at_most(&self, max: std::time::Duration) {
        let mut rx = self.inner.done.subscribe();
        let _ = tokio::time::timeout(max, rx.wait_for(|d| *d)).await;
    }

    /// Whether the job is over (done, failed or cancelled).
    pub fn is_over(&self) -> bool {
        lock(&self.inner.status).state.is_final()
    }

    /// End the job as cancelled by a user, now; its coordinator stops its runs
    /// ([`crate::JobBoard::cancel`]). False when it was over already.
    pub(crate) fn cancel(&self, reason: &str) -> bool {
        if self.is_over() {
            return false;
        }
        self.inner.cancel_asked.store(true, Ordering::SeqCst);
        self.complete(Err(reason.to_string()), WorkStats::default());
        true
    }

    /// The end of the job; the first end counts, later ones are ignored.
    pub(crate) fn complete(&self, result: Result<JobResult, String>, stats: WorkStats) {
        if self.is_over() {
            return;
        }
        let cancelled = self.inner.cancel_asked.load(Ordering::SeqCst);
        self.update(|s| {
            s.stats.add(&stats);
            s.elapsed_ms = now_ms().saturating_sub(s.started_unix_ms);
            match &result {
                Ok(r) => {
                    s.outputs = r.outputs();
                    s.state = JobState::Done;
                    s.frames_done = s.frames_total;
                }
                Err(e) => {
                    s.state = if cancelled {
                        JobState::Cancelled
                    } else {
                        JobState::Failed
                    };
                    s.error = Some(e.clone());
                }
            }
        });
        *lock(&self.inner.result) = Some(result);
        self.inner.done.send_replace(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[tokio::test]
    async fn a_waiting_status_returns_at_the_jobs_end_or_after_the_wait() {
        let h = JobHandle::planning(JobId(1), "scenes", Vec::new());
        let t = Instant::now();
        h.wait_at_most(Duration::from_millis(200)).await;
        assert!(
            t.elapsed() >= Duration::from_millis(200),
            "{:?}",
            t.elapsed()
        );

        let ender = h.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            ender.complete(Err("stopped".into()), WorkStats::default());
        });
        let t = Instant::now();
        h.wait_at_most(Duration::from_secs(5)).await;
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        assert_eq!(h.status().state, JobState::Failed);
        // over already: no wait at all
        let t = Instant::now();
        h.wait_at_most(Duration::from_secs(5)).await;
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
    }
}
