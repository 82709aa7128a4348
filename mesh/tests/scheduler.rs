//! The coordinator and workers without any media: a fake executor stands in for ffmpeg.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::Actor;
use rendermesh_mesh::exec::ShardObserver;
use rendermesh_mesh::exec::{CancelToken, ShardCtl};
use rendermesh_mesh::RunShard;
use rendermesh_mesh::{
    Finish, JobBoard, JobDriver, JobError, Plan, ShardError, ShardExecutor, Stage, Worker,
};
use rendermesh_protocol::*;

/// Sleeps a little per shard, counts concurrency, fails on demand.
#[derive(Default)]
struct FakeExec {
    running: AtomicUsize,
    max_running: AtomicUsize,
    runs: Mutex<HashMap<u32, u32>>,
    /// shard index → (failures before success, retryable)
    fail: HashMap<u32, (u32, bool)>,
}

impl ShardExecutor for FakeExec {
    fn run(
        &self,
        shard: &ShardSpec,
        ctl: &ShardCtl<'_>,
    ) -> Result<(ShardOutput, WorkStats), ShardError> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        let attempt = {
            let mut runs = self.runs.lock().unwrap();
            let n = runs.entry(shard.index).or_default();
            *n += 1;
            *n
        };
        std::thread::sleep(Duration::from_millis(20));
        ctl.progress(shard.cost.units / 2);
        self.running.fetch_sub(1, Ordering::SeqCst);
        if let Some((fails, retryable)) = self.fail.get(&shard.index) {
            if attempt <= *fails {
                let msg = format!("shard {} broke", shard.index);
                return Err(if *retryable {
                    ShardError::retryable(msg)
                } else {
                    ShardError::input(msg)
                });
            }
        }
        let id = ContentId::of(&shard.index.to_le_bytes());
        Ok((
            ShardOutput::blob(id, 4),
            WorkStats {
                decoded_frames: shard.cost.units,
                ..Default::default()
            },
        ))
    }
}

struct FakeDriver {
    shards: u32,
    cached: bool,
    done: Vec<u32>,
    finished_with: Arc<Mutex<Vec<u32>>>,
}

/// An observer that listens to nothing.
struct Nobody;

impl ShardObserver for Nobody {
    fn started(&self, _: u32, _: &str) {}
    fn progress(&self, _: u32, _: u64) {}
}

fn spec(job: JobId, index: u32) -> ShardSpec {
    ShardSpec {
        job,
        index,
        // the mesh never looks inside a task: any built-in one will do
        task: ShardTask::Checksum { rounds: 10 },
        class: "fake".into(),
        required: false,
        inputs: vec![ContentId::of(b"c")],
        cost: ShardCost {
            units: 10,
            work: 10.0,
            ram: 1 << 20,
            input_bytes: 0,
        },
    }
}

impl JobDriver for FakeDriver {
    fn plan(&mut self, job: JobId) -> Result<Plan, JobError> {
        if self.cached {
            return Ok(Plan::Cached {
                result: JobResult::Scenes { lists: vec![] },
                stats: WorkStats {
                    cache_hits: 1,
                    ..Default::default()
                },
            });
        }
        let done = self
            .done
            .iter()
            .map(|&i| ShardResult {
                job,
                index: i,
                peer: "cache".into(),
                output: ShardOutput::blob(ContentId::of(&i.to_le_bytes()), 4),
                stats: WorkStats::default(),
            })
            .collect();
        let shards = (0..self.shards)
            .filter(|i| !self.done.contains(i))
            .map(|i| spec(job, i))
            .collect();
        Ok(Plan::Shards(Stage {
            name: "fake".into(),
            shards,
            done,
            frames_total: self.shards as u64 * 10,
            ..Stage::default()
        }))
    }

    fn finish(&mut self, results: Vec<ShardResult>) -> Result<Finish, JobError> {
        *self.finished_with.lock().unwrap() = results.iter().map(|r| r.index).collect();
        for r in &results {
            let [b] = r.output.blobs.as_slice() else {
                return Err(JobError("not a blob".into()));
            };
            let id = b.id;
            if id != ContentId::of(&r.index.to_le_bytes()) {
                return Err(JobError(format!(
                    "result of shard {} is another shard's",
                    r.index
                )));
            }
        }
        Ok(Finish::Done(
            JobResult::Transcode {
                output: ContentId::of(b"out"),
                bytes: 1,
                frames: results.len() as u64 * 10,
            },
            WorkStats::default(),
        ))
    }
}

fn board(exec: Arc<FakeExec>, slots: usize) -> JobBoard {
    let worker = Worker::new("w1", exec, slots).start();
    JobBoard::new(vec![(worker, slots)])
}

fn driver(shards: u32) -> (FakeDriver, Arc<Mutex<Vec<u32>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    (
        FakeDriver {
            shards,
            cached: false,
            done: vec![],
            finished_with: seen.clone(),
        },
        seen,
    )
}

#[actix_rt::test]
async fn every_shard_runs_once_within_the_slots_and_results_arrive_in_order() {
    let exec = Arc::new(FakeExec::default());
    let b = board(exec.clone(), 3);
    let (d, seen) = driver(12);
    let h = b.start("transcode", vec!["x".into()], Box::new(d));
    let r = h.wait().await;
    assert!(
        matches!(r, Ok(JobResult::Transcode { frames: 120, .. })),
        "{r:?}"
    );
    assert_eq!(*seen.lock().unwrap(), (0..12).collect::<Vec<_>>());
    assert_eq!(
        exec.max_running.load(Ordering::SeqCst),
        3,
        "slots not used or exceeded"
    );
    assert!(exec.runs.lock().unwrap().values().all(|&n| n == 1));
    let s = h.status();
    assert_eq!(s.state, JobState::Done);
    assert_eq!(s.frames_done, 120);
    assert_eq!(s.stats.decoded_frames, 120);
    assert!(s
        .shards
        .iter()
        .all(|r| r.state == ShardState::Done && r.peer.as_deref() == Some("w1")));
    assert_eq!(b.list().len(), 1);
}

#[actix_rt::test]
async fn a_retryable_failure_is_run_again_and_counted() {
    let mut exec = FakeExec::default();
    exec.fail.insert(2, (1, true));
    let exec = Arc::new(exec);
    let b = board(exec.clone(), 2);
    let (d, _) = driver(4);
    let h = b.start("transcode", vec![], Box::new(d));
    assert!(h.wait().await.is_ok());
    assert_eq!(exec.runs.lock().unwrap()[&2], 2);
    let row = h
        .status()
        .shards
        .into_iter()
        .find(|r| r.index == 2)
        .unwrap();
    assert_eq!((row.retries, row.state), (1, ShardState::Done));
}

#[actix_rt::test]
async fn retries_are_bounded_and_a_fatal_error_fails_the_job_with_its_message() {
    let mut exec = FakeExec::default();
    exec.fail.insert(1, (10, true));
    let b = board(Arc::new(exec), 2);
    let (d, _) = driver(3);
    let h = b.start("transcode", vec![], Box::new(d));
    let err = h.wait().await.unwrap_err();
    assert_eq!(err, "shard 1 broke");
    let row = h
        .status()
        .shards
        .into_iter()
        .find(|r| r.index == 1)
        .unwrap();
    assert_eq!(row.state, ShardState::Failed);
    assert_eq!(row.retries, 3);

    let mut exec = FakeExec::default();
    exec.fail.insert(0, (1, false));
    let exec = Arc::new(exec);
    let b = board(exec.clone(), 1);
    let (d, _) = driver(2);
    let h = b.start("transcode", vec![], Box::new(d));
    assert_eq!(h.wait().await.unwrap_err(), "shard 0 broke");
    assert_eq!(
        exec.runs.lock().unwrap()[&0],
        1,
        "a fatal error was retried"
    );
    assert_eq!(h.status().state, JobState::Failed);
    assert_eq!(h.status().error.as_deref(), Some("shard 0 broke"));
}

#[actix_rt::test]
async fn cached_answers_and_cached_shards_are_not_run() {
    let exec = Arc::new(FakeExec::default());
    let b = board(exec.clone(), 2);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let h = b.start(
        "scenes",
        vec![],
        Box::new(FakeDriver {
            shards: 3,
            cached: true,
            done: vec![],
            finished_with: seen.clone(),
        }),
    );
    assert!(h.wait().await.is_ok());
    assert!(h.status().from_cache);
    assert!(exec.runs.lock().unwrap().is_empty());

    let h = b.start(
        "transcode",
        vec![],
        Box::new(FakeDriver {
            shards: 5,
            cached: false,
            done: vec![0, 3],
            finished_with: seen.clone(),
        }),
    );
    assert!(h.wait().await.is_ok());
    let runs = exec.runs.lock().unwrap().clone();
    assert_eq!(
        runs.keys()
            .copied()
            .collect::<std::collections::BTreeSet<_>>(),
        [1, 2, 4].into()
    );
    assert_eq!(*seen.lock().unwrap(), vec![0, 1, 2, 3, 4]);
    let s = h.status();
    assert_eq!(s.stats.cache_hits, 2);
    assert_eq!(
        s.shards
            .iter()
            .filter(|r| r.state == ShardState::Cached)
            .count(),
        2
    );
}

/// A slow box: 500 ms per frame; stops at the next frame once cancelled.
#[derive(Default)]
struct SlowExec {
    cancelled: std::sync::atomic::AtomicBool,
    finished: std::sync::atomic::AtomicBool,
}

impl ShardExecutor for SlowExec {
    fn run(
        &self,
        shard: &ShardSpec,
        ctl: &ShardCtl<'_>,
    ) -> Result<(ShardOutput, WorkStats), ShardError> {
        for f in 1..=shard.cost.units {
            if ctl.is_cancelled() {
                self.cancelled.store(true, Ordering::SeqCst);
                return Err(ShardError::cancelled());
            }
            std::thread::sleep(Duration::from_millis(500));
            ctl.progress(f);
        }
        self.finished.store(true, Ordering::SeqCst);
        let id = ContentId::of(&shard.index.to_le_bytes());
        Ok((ShardOutput::blob(id, 4), WorkStats::default()))
    }
}

#[actix_rt::test]
async fn a_slow_shard_gets_a_copy_on_an_idle_worker_and_the_slow_run_is_cancelled() {
    let fast = Arc::new(FakeExec::default());
    let slow = Arc::new(SlowExec::default());
    let w1 = Worker::new("fast", fast.clone(), 1).start();
    let w2 = Worker::new("slow", slow.clone(), 1).start();
    let b = JobBoard::new(vec![(w1, 1), (w2, 1)]);
    let (d, seen) = driver(2);
    let started = std::time::Instant::now();
    let h = b.start("transcode", vec![], Box::new(d));
    let r = h.wait().await;
    let took = started.elapsed();
    assert!(r.is_ok(), "{r:?}");
    // the slow run alone takes 5 s
    assert!(took < Duration::from_secs(4), "took {took:?}");
    assert_eq!(*seen.lock().unwrap(), vec![0, 1]);
    let s = h.status();
    let copied: Vec<&ShardRow> = s.shards.iter().filter(|r| r.copies > 0).collect();
    assert_eq!(copied.len(), 1, "{s:?}");
    let row = copied[0];
    assert_eq!(row.state, ShardState::Done);
    assert_eq!(row.peer.as_deref(), Some("fast"), "{row:?}");
    assert!(
        row.note.as_deref().is_some_and(|n| n.contains("copy won")),
        "{row:?}"
    );
    // the slow run stops at its next frame
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while !slow.cancelled.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        slow.cancelled.load(Ordering::SeqCst),
        "the slow run was not cancelled"
    );
    assert!(!slow.finished.load(Ordering::SeqCst));
}

#[actix_rt::test]
async fn a_cancelled_run_ends_with_cancelled_and_one_cancelled_while_queued_never_starts() {
    let slow = Arc::new(SlowExec::default());
    let w = Worker::new("slow", slow.clone(), 1).start();
    let job = JobId(7);
    let running = CancelToken::default();
    let queued = CancelToken::default();
    let first = w.send(RunShard {
        shard: spec(job, 0),
        observer: Arc::new(Nobody),
        cancel: running.clone(),
    });
    let second = w.send(RunShard {
        shard: spec(job, 1),
        observer: Arc::new(Nobody),
        cancel: queued.clone(),
    });
    queued.cancel();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let t = std::time::Instant::now();
    running.cancel();
    let e = first.await.unwrap().unwrap_err();
    assert!(e.is_cancelled() && !e.is_retryable(), "{e:?}");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    let e = second.await.unwrap().unwrap_err();
    assert!(e.is_cancelled(), "{e:?}");
    assert!(!slow.finished.load(Ordering::SeqCst));
}

/// Reports the nice value of the thread it runs on; panics on shard 1.
struct NiceProbe(Mutex<Vec<i32>>);

impl ShardExecutor for NiceProbe {
    fn run(
        &self,
        shard: &ShardSpec,
        _ctl: &ShardCtl<'_>,
    ) -> Result<(ShardOutput, WorkStats), ShardError> {
        if shard.index == 1 {
            panic!("a bug in an executor");
        }
        // SAFETY: gettid has no preconditions; getpriority only reads this thread's value.
        let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
        self.0.lock().unwrap().push(nice);
        let id = ContentId::of(&shard.index.to_le_bytes());
        Ok((ShardOutput::blob(id, 4), WorkStats::default()))
    }
}

#[actix_rt::test]
async fn shards_run_at_the_workers_nice_value_and_a_panicking_run_is_a_retryable_failure() {
    // SAFETY: as above, for the calling thread.
    let own = unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
    let probe = Arc::new(NiceProbe(Mutex::new(Vec::new())));
    let w = Worker::new("nice", probe.clone(), 1).with_nice(7).start();
    let run = |index| RunShard {
        shard: spec(JobId(8), index),
        observer: Arc::new(Nobody),
        cancel: CancelToken::default(),
    };
    w.send(run(0)).await.unwrap().unwrap();
    assert_eq!(*probe.0.lock().unwrap(), vec![own.max(7)]);
    let e = w.send(run(1)).await.unwrap().unwrap_err();
    assert!(e.is_retryable() && !e.is_cancelled(), "{e:?}");
    // the worker survives the panic and the caller's thread keeps its own priority
    w.send(run(2)).await.unwrap().unwrap();
    assert_eq!(probe.0.lock().unwrap().len(), 2);
    // SAFETY: as above.
    let after = unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
    assert_eq!(after, own);
}

/// Two stages: `first` shards, then one shard per result of the first stage whose index is
/// even, then the result. Records what each stage saw.
struct TwoStages {
    first: u32,
    stage: u32,
    seen: Arc<Mutex<Vec<Vec<u32>>>>,
    /// The second stage reuses index 0 (a bug the coordinator must refuse).
    reuse_index: bool,
}

impl JobDriver for TwoStages {
    fn plan(&mut self, job: JobId) -> Result<Plan, JobError> {
        Ok(Plan::Shards(Stage {
            name: "one".into(),
            shards: (0..self.first).map(|i| spec(job, i)).collect(),
            frames_total: self.first as u64 * 10,
            ..Stage::default()
        }))
    }

    fn finish(&mut self, results: Vec<ShardResult>) -> Result<Finish, JobError> {
        self.seen
            .lock()
            .unwrap()
            .push(results.iter().map(|r| r.index).collect());
        self.stage += 1;
        if self.stage == 2 {
            return Ok(Finish::Done(
                JobResult::Scenes { lists: vec![] },
                WorkStats::default(),
            ));
        }
        let job = results[0].job;
        let base = if self.reuse_index { 0 } else { 100 };
        let shards = results
            .iter()
            .filter(|r| r.index % 2 == 0)
            .map(|r| spec(job, base + r.index))
            .collect();
        Ok(Finish::Next(Plan::Shards(Stage {
            name: "two".into(),
            shards,
            frames_total: 20,
            ..Stage::default()
        })))
    }
}

#[actix_rt::test]
async fn a_job_of_two_stages_runs_the_second_on_the_results_of_the_first() {
    let exec = Arc::new(FakeExec::default());
    let b = board(exec.clone(), 2);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let h = b.start(
        "two",
        vec![],
        Box::new(TwoStages {
            first: 4,
            stage: 0,
            seen: seen.clone(),
            reuse_index: false,
        }),
    );
    let r = h.wait().await;
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(
        *seen.lock().unwrap(),
        vec![vec![0, 1, 2, 3], vec![100, 102]]
    );
    let s = h.status();
    assert_eq!((s.stage, s.stage_name.as_str()), (1, "two"));
    let stages: Vec<(u32, u32)> = s.shards.iter().map(|r| (r.index, r.stage)).collect();
    assert_eq!(stages, [(0, 0), (1, 0), (2, 0), (3, 0), (100, 1), (102, 1)]);
    assert!(s.shards.iter().all(|r| r.state == ShardState::Done));
    assert_eq!(s.frames_total, 60);
    assert_eq!(exec.runs.lock().unwrap().len(), 6);

    // a stage that reuses an index of an earlier one fails the job with one line
    let h = b.start(
        "two",
        vec![],
        Box::new(TwoStages {
            first: 2,
            stage: 0,
            seen: Arc::new(Mutex::new(Vec::new())),
            reuse_index: true,
        }),
    );
    let e = h.wait().await.unwrap_err();
    assert!(e.contains("reuses a shard index"), "{e}");
}

/// A job of many files in the small: one shard per item; the driver takes the loss of a shard
/// that fails for good and reports its items.
struct Lossy {
    inner: FakeDriver,
    items: Vec<JobItem>,
    changed: bool,
}

impl JobDriver for Lossy {
    fn plan(&mut self, job: JobId) -> Result<Plan, JobError> {
        self.inner.plan(job)
    }

    fn finish(&mut self, results: Vec<ShardResult>) -> Result<Finish, JobError> {
        self.inner.finish(results)
    }

    fn shard_done(&mut self, r: &ShardResult) {
        self.items[r.index as usize].state = ItemState::Done;
        self.changed = true;
    }

    fn shard_failed(&mut self, index: u32, e: &ShardError) -> bool {
        let it = &mut self.items[index as usize];
        it.state = ItemState::Failed;
        it.note = Some(e.message.clone());
        self.changed = true;
        true
    }

    fn items(&mut self) -> Option<Vec<JobItem>> {
        std::mem::take(&mut self.changed).then(|| self.items.clone())
    }
}

#[actix_rt::test]
async fn a_driver_that_takes_the_loss_of_a_failed_shard_ends_the_stage_without_it() {
    let mut exec = FakeExec::default();
    exec.fail.insert(1, (1, false)); // bad input: final at once
    exec.fail.insert(3, (10, true)); // retries used up
    let exec = Arc::new(exec);
    let b = board(exec.clone(), 2);
    let (inner, finished_with) = driver(5);
    let items = (0..5).map(|i| JobItem::waiting(format!("f{i}"))).collect();
    let d = Lossy {
        inner,
        items,
        changed: true,
    };
    let h = b.start("batch", vec![], Box::new(d));
    h.wait()
        .await
        .expect("the job goes on without the failed shards");
    assert_eq!(*finished_with.lock().unwrap(), vec![0, 2, 4]);
    let s = h.status();
    let states: Vec<ItemState> = s.items.iter().map(|i| i.state).collect();
    use ItemState::{Done, Failed};
    assert_eq!(states, vec![Done, Failed, Done, Failed, Done]);
    assert_eq!(s.items[1].note.as_deref(), Some("shard 1 broke"));
    let row = |i: u32| s.shards.iter().find(|r| r.index == i).unwrap().clone();
    assert_eq!(row(1).state, ShardState::Failed);
    assert_eq!(row(3).state, ShardState::Failed);
    assert_eq!(row(3).retries, 3, "retried before it was given up");
    assert_eq!(exec.runs.lock().unwrap()[&1], 1, "bad input was retried");
}

#[actix_rt::test]
async fn a_cancelled_job_ends_cancelled_at_once_and_its_running_shard_stops() {
    let slow = Arc::new(SlowExec::default());
    let b = board_of(slow.clone());
    let (d, seen) = driver(3);
    let h = b.start("transcode", vec!["x".into()], Box::new(d));
    // the first shard runs
    let t = std::time::Instant::now();
    while h
        .status()
        .shards
        .iter()
        .all(|s| s.state != ShardState::Running)
    {
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", h.status());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(b.cancel(JobId(h.id().0 ^ 1), "by a test").is_err());
    b.cancel(h.id(), "cancelled by a test").unwrap();
    let s = h.status();
    assert_eq!(s.state, JobState::Cancelled);
    assert_eq!(s.error.as_deref(), Some("cancelled by a test"));
    assert!(matches!(h.wait().await, Err(e) if e == "cancelled by a test"));
    // the run sees its token at its next frame
    let t = std::time::Instant::now();
    while !slow.cancelled.load(Ordering::SeqCst) {
        assert!(t.elapsed() < Duration::from_secs(2), "the shard still runs");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!slow.finished.load(Ordering::SeqCst));
    assert!(seen.lock().unwrap().is_empty(), "the job was finished");
    assert_eq!(h.status().state, JobState::Cancelled);
    let again = b.cancel(h.id(), "twice").unwrap_err();
    assert!(again.contains("over already"), "{again}");
}

fn board_of(exec: Arc<SlowExec>) -> JobBoard {
    let worker = Worker::new("w1", exec, 1).start();
    JobBoard::new(vec![(worker, 1)])
}
