//! Counters of finished work, from the job board: every job this node coordinates and every
//! shard of it is counted once, the first time a sample sees it final. Sampled at each scrape
//! (the board keeps its jobs, so nothing finished between two scrapes is missed); the ids
//! already counted are remembered while the board lists them.

use std::collections::{HashMap, HashSet};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use rendermesh_protocol::{JobId, JobState, JobStatus, ShardState};

/// A job kind and a final state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindState {
    pub kind: String,
    pub state: String,
}

/// A job kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Kind {
    pub kind: String,
}

type Durations = Family<Kind, Histogram, fn() -> Histogram>;

fn job_buckets() -> Histogram {
    // 1 s .. about 4.5 h
    Histogram::new(exponential_buckets(1.0, 2.0, 15))
}

fn shard_buckets() -> Histogram {
    // 0.25 s .. about 34 min
    Histogram::new(exponential_buckets(0.25, 2.0, 14))
}

/// The counters and what was counted already.
pub struct Finished {
    jobs: Family<KindState, Counter>,
    shards: Family<KindState, Counter>,
    job_seconds: Durations,
    shard_seconds: Durations,
    /// Jobs counted as finished (all their shards counted too).
    done: HashSet<JobId>,
    /// Shards counted of jobs still running.
    shards_done: HashMap<JobId, HashSet<u32>>,
    /// Jobs started before this are not counted (a board filled from an earlier life).
    since_unix_ms: u64,
}

/// A job state as a label value.
pub fn job_state(s: JobState) -> &'static str {
    match s {
        JobState::Planning => "planning",
        JobState::Running => "running",
        JobState::Finishing => "finishing",
        JobState::Done => "done",
        JobState::Failed => "failed",
        JobState::Cancelled => "cancelled",
    }
}

/// A shard state as a label value.
pub fn shard_state(s: ShardState) -> &'static str {
    match s {
        ShardState::Pending => "pending",
        ShardState::Running => "running",
        ShardState::Done => "done",
        ShardState::Cached => "cached",
        ShardState::Failed => "failed",
    }
}

fn shard_is_final(s: ShardState) -> bool {
    matches!(
        s,
        ShardState::Done | ShardState::Cached | ShardState::Failed
    )
}

impl Finished {
    pub fn new(registry: &mut Registry, since_unix_ms: u64) -> Self {
        let f = Self {
            jobs: Family::default(),
            shards: Family::default(),
            job_seconds: Family::new_with_constructor(job_buckets),
            shard_seconds: Family::new_with_constructor(shard_buckets),
            done: HashSet::new(),
            shards_done: HashMap::new(),
            since_unix_ms,
        };
        registry.register(
            "rendermesh_jobs_finished",
            "Jobs this node coordinated that ended, by kind and final state",
            f.jobs.clone(),
        );
        registry.register(
            "rendermesh_shards_finished",
            "Shards of this node's jobs that ended (done, cached or failed), wherever they ran",
            f.shards.clone(),
        );
        registry.register(
            "rendermesh_job_duration_seconds",
            "Wall time of the jobs this node coordinated, from submission to their end",
            f.job_seconds.clone(),
        );
        registry.register(
            "rendermesh_shard_duration_seconds",
            "Run time of the shards of this node's jobs that were computed (done), wherever they ran",
            f.shard_seconds.clone(),
        );
        f
    }

    /// Count what `jobs` (the board now) shows finished for the first time.
    pub fn sample(&mut self, jobs: &[JobStatus]) {
        for job in jobs {
            if job.started_unix_ms < self.since_unix_ms || self.done.contains(&job.id) {
                continue;
            }
            let seen = self.shards_done.entry(job.id).or_default();
            for row in &job.shards {
                if !shard_is_final(row.state) || !seen.insert(row.index) {
                    continue;
                }
                self.shards
                    .get_or_create(&KindState {
                        kind: job.kind.clone(),
                        state: shard_state(row.state).to_string(),
                    })
                    .inc();
                if row.state == ShardState::Done {
                    self.shard_seconds
                        .get_or_create(&Kind {
                            kind: job.kind.clone(),
                        })
                        .observe(row.millis as f64 / 1000.0);
                }
            }
            if job.state.is_final() {
                self.jobs
                    .get_or_create(&KindState {
                        kind: job.kind.clone(),
                        state: job_state(job.state).to_string(),
                    })
                    .inc();
                self.job_seconds
                    .get_or_create(&Kind {
                        kind: job.kind.clone(),
                    })
                    .observe(job.elapsed_ms as f64 / 1000.0);
                self.shards_done.remove(&job.id);
                self.done.insert(job.id);
            }
        }
        // remember only what the board still lists
        if self.done.len() + self.shards_done.len() > jobs.len() {
            let listed: HashSet<JobId> = jobs.iter().map(|j| j.id).collect();
            self.done.retain(|id| listed.contains(id));
            self.shards_done.retain(|id, _| listed.contains(id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rendermesh_protocol::{ShardRow, WorkStats};

    fn row(index: u32, state: ShardState, millis: u64) -> ShardRow {
        ShardRow {
            index,
            state,
            peer: None,
            frames: 10,
            frames_done: 0,
            millis,
            retries: 0,
            copies: 0,
            start_ms: None,
            end_ms: None,
            note: None,
            stage: 0,
        }
    }

    fn job(id: u64, state: JobState, shards: Vec<ShardRow>) -> JobStatus {
        JobStatus {
            id: JobId(id),
            kind: "transcode".into(),
            inputs: vec!["/somewhere/clip.mp4".into()],
            state,
            frames_total: 0,
            frames_done: 0,
            shards,
            error: None,
            stats: WorkStats::default(),
            from_cache: false,
            notes: vec![],
            started_unix_ms: 10,
            elapsed_ms: 2500,
            stage: 0,
            stage_name: String::new(),
            items: vec![],
            outputs: vec![],
        }
    }

    fn text(r: &Registry) -> String {
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, r).unwrap();
        s
    }

    #[test]
    fn each_job_and_shard_counts_once() {
        let mut r = Registry::default();
        let mut f = Finished::new(&mut r, 0);
        let running = job(
            1,
            JobState::Running,
            vec![
                row(0, ShardState::Done, 1500),
                row(1, ShardState::Running, 0),
            ],
        );
        f.sample(std::slice::from_ref(&running));
        f.sample(&[running]);
        let t = text(&r);
        assert!(
            t.contains("rendermesh_shards_finished_total{kind=\"transcode\",state=\"done\"} 1\n"),
            "{t}"
        );
        assert!(!t.contains("rendermesh_jobs_finished_total{"), "{t}");
        let over = job(
            1,
            JobState::Done,
            vec![
                row(0, ShardState::Done, 1500),
                row(1, ShardState::Cached, 0),
            ],
        );
        f.sample(std::slice::from_ref(&over));
        f.sample(&[over]);
        let t = text(&r);
        assert!(
            t.contains("rendermesh_jobs_finished_total{kind=\"transcode\",state=\"done\"} 1\n"),
            "{t}"
        );
        assert!(
            t.contains("rendermesh_shards_finished_total{kind=\"transcode\",state=\"cached\"} 1\n"),
            "{t}"
        );
        assert!(
            t.contains("rendermesh_shard_duration_seconds_count{kind=\"transcode\"} 1\n"),
            "{t}"
        );
        assert!(
            t.contains("rendermesh_job_duration_seconds_sum{kind=\"transcode\"} 2.5\n"),
            "{t}"
        );
        assert!(!t.contains("clip.mp4"), "{t}");
    }

    #[test]
    fn jobs_of_an_earlier_life_do_not_count() {
        let mut r = Registry::default();
        let mut f = Finished::new(&mut r, 1000);
        f.sample(&[job(1, JobState::Done, vec![row(0, ShardState::Done, 5)])]);
        assert!(!text(&r).contains("_total{"));
    }
}
