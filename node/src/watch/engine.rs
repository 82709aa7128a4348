//! The rules of a watched folder, the same for the command line and the daemon.
//!
//! Every pass scans the folder. A file whose size and mtime are those of its mark was
//! handled already: nothing to do (this is what makes a restart cheap). Any other file is
//! taken once it has stopped growing; then its content id decides:
//!
//! - the same content as its mark (the file was touched, or copied over with itself): only
//!   the mark is updated;
//! - a file without a mark whose output already exists: left alone (marked skipped);
//! - otherwise its output is made (replacing the old one when the content changed).
//!
//! The files to make go to the node as one batch; each one that ends is marked at once
//! (done or failed), so a stop half-way loses only the files still running. A failed file
//! is not tried again until it changes. Deleted and still-growing files are ignored.
//!
//! The counters and recent errors of a watch ([`WatchRow`]) start from its marks, so they
//! survive a restart.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rendermesh_cache::{Mark, MarkOutcome};
use rendermesh_protocol::{ContentId, JobStatus};

use super::node::WatchNode;
use super::scan::{scan, Seen, Settler};
use super::{now_ms, WatchError, WatchRow, WatchSpec, RECENT_ERRORS};
use crate::delivery::batch::{follow, Outcome};
use crate::delivery::JobView;
use crate::jobs::batch::{Batch, Params, MAX_FILES};
use crate::jobs::kind::{JobKind, SubmitRequest};

/// How long a watch waits before it submits again after the node refused a batch.
const HOLD: Duration = Duration::from_secs(30);
/// Most one-off problems (unreadable subfolders, odd names) a watch remembers having said.
const MAX_PROBLEMS: usize = 1000;

/// What a watch did, as it happens.
#[derive(Debug)]
pub enum Event<'a> {
    /// A file's output was written (`cached`: no encode was needed).
    Made {
        file: &'a str,
        dest: &'a std::path::Path,
        frames: u64,
        cached: bool,
    },
    /// A file's output was already there.
    Skipped {
        file: &'a str,
        dest: &'a std::path::Path,
    },
    Failed {
        file: &'a str,
        error: &'a str,
    },
    /// The watch itself met a problem (folder unreadable, node refusing the batch).
    Error(&'a str),
}

/// What a watch did in this session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Session {
    pub made: u64,
    pub skipped: u64,
    pub failed: u64,
    pub errors: u64,
}

/// A file to make.
struct Make {
    seen: Seen,
    content: ContentId,
    dest: PathBuf,
    made_before: u32,
}

/// What one pass left.
struct Pass {
    /// Files seen but not taken yet (still growing, or held).
    waiting: u64,
    /// The node refused or lost a batch: the watch waits before trying again.
    held: bool,
}

/// One watched folder, run against a node.
pub struct Watcher<'n> {
    spec: WatchSpec,
    id: String,
    node: &'n dyn WatchNode,
    stop: &'n AtomicBool,
    on: Box<dyn FnMut(&Event<'_>) + 'n>,
    marks: HashMap<String, Mark>,
    settler: Settler,
    row: Arc<Mutex<WatchRow>>,
    /// Problems said once, by key, with the last message said for each.
    said: HashMap<String, String>,
    held_until: Option<Instant>,
    session: Session,
}

impl<'n> Watcher<'n> {
    /// Load the watch's marks from `node`; `row` gets its counters; `on` sees every event.
    pub fn open(
        spec: WatchSpec,
        node: &'n dyn WatchNode,
        stop: &'n AtomicBool,
        row: Arc<Mutex<WatchRow>>,
        on: Box<dyn FnMut(&Event<'_>) + 'n>,
    ) -> anyhow::Result<Self> {
        let id = spec.id();
        let marks: HashMap<String, Mark> = node
            .marks(&id)
            .map_err(|e| anyhow::anyhow!("cannot read the watch's marks: {e:#}"))?
            .into_iter()
            .collect();
        let w = Self {
            spec,
            id,
            node,
            stop,
            on,
            marks,
            settler: Settler::default(),
            row,
            said: HashMap::new(),
            held_until: None,
            session: Session::default(),
        };
        w.seed_row();
        Ok(w)
    }

    /// Scan every interval until stopped; with `once`, until every file there was taken.
    pub fn run(&mut self, once: bool) -> Session {
        tracing::info!(watch = %self.id, dir = %self.spec.dir.display(), out = %self.spec.out.display(), marks = self.marks.len(), "watch started");
        loop {
            let pass = self.pass();
            if self.stopping() || (once && (pass.waiting == 0 || pass.held)) {
                break;
            }
            let until = Instant::now() + self.spec.interval;
            while !self.stopping() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(50).min(self.spec.interval));
            }
        }
        tracing::info!(watch = %self.id, made = self.session.made, failed = self.session.failed, "watch stopped");
        self.session
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn row(&self) -> MutexGuard<'_, WatchRow> {
        self.row.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counters and recent errors from the marks.
    fn seed_row(&self) {
        let mut failed: Vec<WatchError> = Vec::new();
        let mut row = self.row();
        for (file, m) in &self.marks {
            row.processed += u64::from(m.made);
            match &m.outcome {
                MarkOutcome::Failed { error } => {
                    row.failed += 1;
                    failed.push(WatchError {
                        file: Some(file.clone()),
                        error: error.clone(),
                        at_ms: m.at_ms,
                    });
                }
                MarkOutcome::Skipped { .. } => row.skipped += 1,
                MarkOutcome::Done { .. } => {}
            }
        }
        failed.sort_by(|a, b| (a.at_ms, &a.file).cmp(&(b.at_ms, &b.file)));
        let from = failed.len().saturating_sub(RECENT_ERRORS);
        row.errors = failed.split_off(from);
    }

    fn push_error(&self, file: Option<&str>, error: &str) {
        let mut row = self.row();
        row.errors.push(WatchError {
            file: file.map(str::to_string),
            error: error.to_string(),
            at_ms: now_ms(),
        });
        let over = row.errors.len().saturating_sub(RECENT_ERRORS);
        row.errors.drain(..over);
    }

    /// A problem of the watch itself, said once while it lasts (under `key`).
    fn report(&mut self, key: &str, msg: String) {
        if self.said.get(key) == Some(&msg) {
            return;
        }
        if self.said.len() >= MAX_PROBLEMS {
            self.said.clear();
        }
        self.said.insert(key.to_string(), msg.clone());
        tracing::debug!(watch = %self.id, error = %msg, "watch problem");
        self.session.errors += 1;
        self.push_error(None, &msg);
        (self.on)(&Event::Error(&msg));
    }

    fn clear(&mut self, key: &str) {
        self.said.remove(key);
    }

    /// Store `mark` for `file`; the counters follow.
    fn mark(&mut self, file: &str, mark: Mark) {
        if let Err(e) = self.node.put_mark(&self.id, file, &mark) {
            self.report("mark", format!("cannot store the mark of {file}: {e:#}"));
        }
        let old = self.marks.insert(file.to_string(), mark.clone());
        let mut row = self.row();
        let count = |m: &Mark| {
            (
                u64::from(m.made),
                u64::from(matches!(m.outcome, MarkOutcome::Failed { .. })),
                u64::from(matches!(m.outcome, MarkOutcome::Skipped { .. })),
            )
        };
        if let Some(o) = &old {
            let (p, f, s) = count(o);
            row.processed = row.processed.saturating_sub(p);
            row.failed = row.failed.saturating_sub(f);
            row.skipped = row.skipped.saturating_sub(s);
        }
        let (p, f, s) = count(&mark);
        row.processed += p;
        row.failed += f;
        row.skipped += s;
    }

    fn fail(&mut self, seen: &Seen, content: Option<ContentId>, made: u32, error: &str) {
        tracing::debug!(watch = %self.id, file = %seen.rel, %error, "watch: file failed");
        self.session.failed += 1;
        let mark = Mark {
            size: seen.size,
            mtime_ns: seen.mtime_ns,
            content,
            outcome: MarkOutcome::Failed {
                error: error.to_string(),
            },
            made,
            at_ms: now_ms(),
        };
        self.mark(&seen.rel, mark);
        self.push_error(Some(&seen.rel), error);
        (self.on)(&Event::Failed {
            file: &seen.rel,
            error,
        });
    }

    /// One scan, and the batch of what it found ready.
    fn pass(&mut self) -> Pass {
        let listing = match scan(&self.spec.dir, &self.spec.out) {
            Ok(l) => {
                self.clear("scan");
                l
            }
            Err(e) => {
                self.report("scan", e);
                return Pass {
                    waiting: 0,
                    held: false,
                };
            }
        };
        for p in listing.problems {
            self.report(&p.clone(), p);
        }
        let now = Instant::now();
        self.settler.observe(&listing.files, now);
        let mut ready = Vec::new();
        let mut waiting = 0u64;
        for f in listing.files {
            let known = self
                .marks
                .get(&f.rel)
                .is_some_and(|m| m.size == f.size && m.mtime_ns == f.mtime_ns);
            if known {
                continue;
            }
            if self.settler.settled(&f.rel, now, self.spec.settle) {
                ready.push(f);
            } else {
                waiting += 1;
            }
        }
        if let Some(until) = self.held_until {
            if now < until {
                self.row().waiting = waiting + ready.len() as u64;
                return Pass {
                    waiting: waiting + ready.len() as u64,
                    held: true,
                };
            }
            self.held_until = None;
        }
        let make = self.plan(ready);
        self.row().waiting = waiting + make.len() as u64;
        let mut held = false;
        for batch in make.chunks(MAX_FILES) {
            if self.stopping() || held {
                break;
            }
            held = !self.run_batch(batch);
        }
        self.row().waiting = waiting;
        Pass { waiting, held }
    }

    /// Which of the settled files to make; the others are marked here.
    fn plan(&mut self, ready: Vec<Seen>) -> Vec<Make> {
        let mut make = Vec::new();
        let mut dests: HashSet<PathBuf> = HashSet::new();
        for f in ready {
            if self.stopping() {
                break;
            }
            let prev = self.marks.get(&f.rel).cloned();
            let made = prev.as_ref().map_or(0, |p| p.made);
            let content = match self.node.identify(&f.path) {
                Ok(c) => c,
                // deleted since the scan: ignored
                Err(_) if !f.path.exists() => continue,
                Err(e) => {
                    self.fail(&f, None, made, &format!("{e:#}"));
                    continue;
                }
            };
            if let Some(p) = prev.as_ref().filter(|p| p.content == Some(content)) {
                tracing::debug!(watch = %self.id, file = %f.rel, "watch: same content; mark updated");
                let mark = Mark {
                    size: f.size,
                    mtime_ns: f.mtime_ns,
                    at_ms: now_ms(),
                    ..p.clone()
                };
                self.mark(&f.rel, mark);
                continue;
            }
            let dest = match self.spec.dest_of(&f.rel, &f.path) {
                Ok(d) => d,
                Err(e) => {
                    self.fail(&f, Some(content), made, &e);
                    continue;
                }
            };
            if prev.is_none() && std::fs::symlink_metadata(&dest).is_ok() {
                tracing::info!(watch = %self.id, file = %f.rel, dest = %dest.display(), "watch: output exists; skipped");
                self.session.skipped += 1;
                let mark = Mark {
                    size: f.size,
                    mtime_ns: f.mtime_ns,
                    content: Some(content),
                    outcome: MarkOutcome::Skipped {
                        output: dest.display().to_string(),
                    },
                    made: 0,
                    at_ms: now_ms(),
                };
                self.mark(&f.rel, mark);
                (self.on)(&Event::Skipped {
                    file: &f.rel,
                    dest: &dest,
                });
                continue;
            }
            if !dests.insert(dest.clone()) {
                let why = format!("{}: same output name as another file", dest.display());
                self.fail(&f, Some(content), made, &why);
                continue;
            }
            if let Some(Err(e)) = dest.parent().map(std::fs::create_dir_all) {
                let why = format!("{}: cannot create its folder: {e}", dest.display());
                self.fail(&f, Some(content), made, &why);
                continue;
            }
            make.push(Make {
                seen: f,
                content,
                dest,
                made_before: made,
            });
        }
        make
    }

    /// Make `files` in one batch, marking each as it ends. False: the node refused or lost
    /// the batch (the files are tried again later).
    fn run_batch(&mut self, files: &[Make]) -> bool {
        let params = Params {
            inputs: files.iter().map(|m| m.seen.path.clone()).collect(),
            work: self.spec.work.clone(),
            chunk_seconds: self.spec.chunk_seconds,
        };
        let req = match SubmitRequest::new(Batch.name(), &params) {
            Ok(r) => r,
            Err(e) => {
                self.report("submit", format!("cannot make a batch: {e:#}"));
                self.held_until = Some(Instant::now() + HOLD);
                return false;
            }
        };
        tracing::info!(watch = %self.id, files = files.len(), "watch: batch submitted");
        let node = self.node;
        let view = match node.submit(req) {
            Ok(v) => {
                self.clear("submit");
                v
            }
            Err(e) => {
                self.report("submit", format!("the node refused a batch: {e:#}"));
                self.held_until = Some(Instant::now() + HOLD);
                return false;
            }
        };
        let stop = self.stop;
        let view = Stoppable {
            inner: view.as_ref(),
            stop,
        };
        let dests: Vec<PathBuf> = files.iter().map(|m| m.dest.clone()).collect();
        // an item is marked only when it ended in the batch, not when the batch ended
        // without it (the node stopping): those are tried again
        let ended = RefCell::new(vec![false; files.len()]);
        let followed = follow(
            &view,
            &dests,
            self.spec.work.keep,
            &mut |s: &JobStatus| {
                let mut ended = ended.borrow_mut();
                for (n, item) in s.items.iter().enumerate().take(ended.len()) {
                    ended[n] = item.state.is_final();
                }
            },
            &mut |n, outcome| {
                let over = ended.borrow().get(n).copied().unwrap_or(false);
                if let (true, false, Some(m)) = (over, stop.load(Ordering::Relaxed), files.get(n)) {
                    self.finish(m, outcome);
                }
            },
        );
        match followed {
            Ok(_) => true,
            Err(_) if self.stopping() => true,
            Err(e) => {
                self.report("follow", format!("a batch broke off: {e:#}"));
                self.held_until = Some(Instant::now() + HOLD);
                false
            }
        }
    }

    /// File `m` of a batch ended with `outcome`.
    fn finish(&mut self, m: &Make, outcome: &Outcome) {
        match outcome {
            Outcome::Written {
                dest,
                frames,
                cached,
                ..
            } => {
                tracing::info!(watch = %self.id, file = %m.seen.rel, dest = %dest.display(), frames, cached, "watch: file made");
                self.session.made += 1;
                self.clear("follow");
                let mark = Mark {
                    size: m.seen.size,
                    mtime_ns: m.seen.mtime_ns,
                    content: Some(m.content),
                    outcome: MarkOutcome::Done {
                        output: dest.display().to_string(),
                    },
                    made: m.made_before.saturating_add(1),
                    at_ms: now_ms(),
                };
                self.mark(&m.seen.rel, mark);
                (self.on)(&Event::Made {
                    file: &m.seen.rel,
                    dest,
                    frames: *frames,
                    cached: *cached,
                });
            }
            Outcome::Failed(why) => self.fail(&m.seen, Some(m.content), m.made_before, why),
        }
    }
}

/// A job view that ends the following of a job once the watch is asked to stop.
struct Stoppable<'a> {
    inner: &'a dyn JobView,
    stop: &'a AtomicBool,
}

impl JobView for Stoppable<'_> {
    fn status(&self, wait_ms: u64) -> anyhow::Result<JobStatus> {
        if self.stop.load(Ordering::Relaxed) {
            anyhow::bail!("the watch is stopping");
        }
        self.inner.status(wait_ms)
    }

    fn item_output(
        &self,
        n: usize,
        id: &ContentId,
    ) -> anyhow::Result<Box<dyn std::io::Read + Send>> {
        self.inner.item_output(n, id)
    }

    fn drop_item_output(&self, n: usize, id: &ContentId) {
        self.inner.drop_item_output(n, id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::{WatchConfig, WatchMode};
    use rendermesh_protocol::{ItemState, JobId, JobItem, JobState, WorkStats};
    use std::path::Path;

    /// A node in memory: marks in a map, batches answered at once (a file whose name holds
    /// "bad" fails, the others are "made" as the bytes `made:` + their content).
    #[derive(Default)]
    struct Fake {
        marks: Mutex<HashMap<(String, String), Mark>>,
        batches: Mutex<Vec<Vec<PathBuf>>>,
        refuse: AtomicBool,
    }

    struct FakeView {
        items: Vec<JobItem>,
        outputs: Vec<Vec<u8>>,
    }

    impl JobView for FakeView {
        fn status(&self, _wait_ms: u64) -> anyhow::Result<JobStatus> {
            Ok(JobStatus {
                id: JobId(1),
                kind: "batch".into(),
                inputs: Vec::new(),
                state: JobState::Done,
                frames_total: 0,
                frames_done: 0,
                shards: Vec::new(),
                error: None,
                stats: WorkStats::default(),
                from_cache: false,
                notes: Vec::new(),
                started_unix_ms: 0,
                elapsed_ms: 0,
                stage: 0,
                stage_name: String::new(),
                items: self.items.clone(),
                outputs: Vec::new(),
            })
        }

        fn item_output(
            &self,
            n: usize,
            _id: &ContentId,
        ) -> anyhow::Result<Box<dyn std::io::Read + Send>> {
            Ok(Box::new(std::io::Cursor::new(self.outputs[n].clone())))
        }

        fn drop_item_output(&self, _n: usize, _id: &ContentId) {}
    }

    impl WatchNode for Fake {
        fn marks(&self, watch: &str) -> anyhow::Result<Vec<(String, Mark)>> {
            let marks = self.marks.lock().unwrap();
            Ok(marks
                .iter()
                .filter(|((w, _), _)| w == watch)
                .map(|((_, f), m)| (f.clone(), m.clone()))
                .collect())
        }

        fn put_mark(&self, watch: &str, file: &str, mark: &Mark) -> anyhow::Result<()> {
            let key = (watch.to_string(), file.to_string());
            self.marks.lock().unwrap().insert(key, mark.clone());
            Ok(())
        }

        fn identify(&self, path: &Path) -> anyhow::Result<ContentId> {
            Ok(ContentId::of(&std::fs::read(path)?))
        }

        fn submit(&self, req: SubmitRequest) -> anyhow::Result<Box<dyn JobView + '_>> {
            if self.refuse.load(Ordering::Relaxed) {
                anyhow::bail!("no slots today");
            }
            let p: Params = serde_json::from_value(req.params).unwrap();
            let mut items = Vec::new();
            let mut outputs = Vec::new();
            for input in &p.inputs {
                let name = input.display().to_string();
                let mut made = b"made:".to_vec();
                made.extend(std::fs::read(input).unwrap());
                if name.contains("bad") {
                    items.push(JobItem::failed(name, "not media".into()));
                } else {
                    let mut it = JobItem::waiting(name);
                    it.state = ItemState::Done;
                    it.output = Some(ContentId::of(&made));
                    it.bytes = made.len() as u64;
                    it.frames = 10;
                    items.push(it);
                }
                outputs.push(made);
            }
            self.batches.lock().unwrap().push(p.inputs);
            Ok(Box::new(FakeView { items, outputs }))
        }

        fn describe(&self) -> String {
            "fake".into()
        }
    }

    fn once(spec: &WatchSpec, node: &Fake) -> (Session, WatchRow) {
        let stop = AtomicBool::new(false);
        let row = Arc::new(Mutex::new(WatchRow::new(spec)));
        let mut w =
            Watcher::open(spec.clone(), node, &stop, row.clone(), Box::new(|_| {})).unwrap();
        let s = w.run(true);
        let r = row.lock().unwrap().clone();
        (s, r)
    }

    fn write(path: &Path, content: &[u8], mtime_s: u64) {
        std::fs::write(path, content).unwrap();
        let t = std::time::UNIX_EPOCH + Duration::from_secs(mtime_s);
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }

    #[test]
    fn each_file_once_again_on_new_content_failures_not_retried() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, out) = (tmp.path().join("in"), tmp.path().join("out"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&out).unwrap();
        let mut cfg = WatchConfig::new(dir.clone(), out.clone(), WatchMode::Transcode);
        cfg.settle_seconds = 0.0;
        cfg.interval_seconds = 0.1;
        let spec = cfg.spec().unwrap();
        write(&dir.join("a.mp4"), b"A1", 1000);
        write(&dir.join("bad.mp4"), b"junk", 1000);
        write(&dir.join("c.mov"), b"C1", 1000);
        std::fs::write(out.join("c.mp4"), b"someone else's").unwrap();
        std::fs::write(dir.join("notes.txt"), b"not video").unwrap();
        let node = Fake::default();

        let (s, row) = once(&spec, &node);
        assert_eq!((s.made, s.failed, s.skipped), (1, 1, 1));
        assert_eq!(std::fs::read(out.join("a.mp4")).unwrap(), b"made:A1");
        assert_eq!(std::fs::read(out.join("c.mp4")).unwrap(), b"someone else's");
        assert_eq!(node.batches.lock().unwrap().len(), 1);
        assert_eq!((row.processed, row.failed, row.skipped), (1, 1, 1));
        assert_eq!(row.errors.len(), 1);
        assert_eq!(row.errors[0].file.as_deref(), Some("bad.mp4"));

        // a second session: nothing to do, the counters come from the marks
        let (s, row) = once(&spec, &node);
        assert_eq!(s, Session::default());
        assert_eq!(node.batches.lock().unwrap().len(), 1);
        assert_eq!((row.processed, row.failed, row.skipped), (1, 1, 1));
        assert_eq!(row.errors[0].error, "not media");

        // touched, same content: only the mark follows
        write(&dir.join("a.mp4"), b"A1", 2000);
        let (s, _) = once(&spec, &node);
        assert_eq!(s, Session::default());
        assert_eq!(node.batches.lock().unwrap().len(), 1);

        // new content (and c replaced by the user): made again, outputs replaced
        write(&dir.join("a.mp4"), b"A2", 3000);
        write(&dir.join("c.mov"), b"C2", 3000);
        let (s, row) = once(&spec, &node);
        assert_eq!((s.made, s.failed), (2, 0));
        assert_eq!(std::fs::read(out.join("a.mp4")).unwrap(), b"made:A2");
        assert_eq!(std::fs::read(out.join("c.mp4")).unwrap(), b"made:C2");
        assert_eq!((row.processed, row.failed, row.skipped), (3, 1, 0));
        let marks = node.marks(&spec.id()).unwrap();
        let a = marks.iter().find(|(f, _)| f == "a.mp4").unwrap();
        assert_eq!(a.1.made, 2);

        // a refused batch is one error, the file waits and is not marked
        node.refuse.store(true, Ordering::Relaxed);
        write(&dir.join("d.mkv"), b"D", 4000);
        let (s, row) = once(&spec, &node);
        assert_eq!((s.made, s.failed, s.errors), (0, 0, 1));
        assert!(row.errors.last().unwrap().error.contains("no slots today"));
        assert!(!node
            .marks(&spec.id())
            .unwrap()
            .iter()
            .any(|(f, _)| f == "d.mkv"));
        node.refuse.store(false, Ordering::Relaxed);
        let (s, _) = once(&spec, &node);
        assert_eq!(s.made, 1);
        assert_eq!(std::fs::read(out.join("d.mp4")).unwrap(), b"made:D");
    }

    #[test]
    fn a_growing_file_waits_and_a_stop_ends_the_run() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("in");
        std::fs::create_dir_all(&dir).unwrap();
        let mut cfg = WatchConfig::new(dir.clone(), tmp.path().join("out"), WatchMode::Proxy);
        cfg.settle_seconds = 3600.0;
        cfg.interval_seconds = 0.1;
        let spec = cfg.spec().unwrap();
        std::fs::write(dir.join("a.mp4"), b"A").unwrap();
        let node = Fake::default();
        let stop = AtomicBool::new(false);
        let row = Arc::new(Mutex::new(WatchRow::new(&spec)));
        std::thread::scope(|sc| {
            let h = sc.spawn(|| {
                let mut w =
                    Watcher::open(spec.clone(), &node, &stop, row.clone(), Box::new(|_| {}))
                        .unwrap();
                w.run(false)
            });
            std::thread::sleep(Duration::from_millis(400));
            assert_eq!(row.lock().unwrap().waiting, 1);
            stop.store(true, Ordering::Relaxed);
            assert_eq!(h.join().unwrap(), Session::default());
        });
        assert!(node.batches.lock().unwrap().is_empty());
    }
}
