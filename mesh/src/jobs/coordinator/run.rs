//! A run of a shard and what is known of it: [`Run`] (an award or a speculative copy, on a
//! [`Target`]: this node's worker or a peer), its [`RunProgress`] (frames done, and from
//! them the expected end), and the [`RunId`] it is kept under while in flight.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use actix::prelude::*;
use libp2p::PeerId;

use crate::exec::{CancelToken, Worker};

/// Where a bidder runs shards.
#[derive(Clone)]
pub(super) enum Target {
    Local(Addr<Worker>),
    Remote { peer: PeerId, name: String },
}

pub(super) type RunId = u64;

/// Frames a run has done and when it last said so.
pub(super) struct RunProgress {
    pub(super) since: Instant,
    pub(super) frames: AtomicU64,
    pub(super) at_ms: AtomicU64,
    /// The first report of any frames done, and when it came: the rate after it leaves out
    /// a start-up delay (an encoder's lookahead puts out nothing for a while).
    pub(super) first_frames: AtomicU64,
    pub(super) first_at_ms: AtomicU64,
}

impl RunProgress {
    pub(super) fn new() -> Self {
        Self {
            since: Instant::now(),
            frames: AtomicU64::new(0),
            at_ms: AtomicU64::new(0),
            first_frames: AtomicU64::new(0),
            first_at_ms: AtomicU64::new(0),
        }
    }

    pub(super) fn set(&self, frames: u64) {
        let at = self.since.elapsed().as_millis() as u64;
        if frames > 0
            && self
                .first_frames
                .compare_exchange(0, frames, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.first_at_ms.store(at, Ordering::Relaxed);
        }
        self.at_ms.store(at, Ordering::Relaxed);
        self.frames.store(frames, Ordering::Relaxed);
    }

    /// Seconds from the run's start until it ends, judged from its progress (`None` before
    /// any frame is done): the rate since the first report once there are two.
    pub(super) fn expected_s(&self, frames: u64) -> Option<f64> {
        let done = self.frames.load(Ordering::Relaxed).min(frames);
        let at = self.at_ms.load(Ordering::Relaxed) as f64 / 1000.0;
        if done == 0 || at <= 0.0 {
            return None;
        }
        let first = self.first_frames.load(Ordering::Relaxed);
        let first_at = self.first_at_ms.load(Ordering::Relaxed) as f64 / 1000.0;
        if first > 0 && done > first && at > first_at {
            let per_frame = (at - first_at) / (done - first) as f64;
            Some(at + (frames - done) as f64 * per_frame)
        } else {
            Some(at * frames as f64 / done as f64)
        }
    }
}

/// One run of a shard: an award, or a speculative copy.
pub(super) struct Run {
    pub(super) shard: u32,
    pub(super) bidder: usize,
    /// Its estimated finish, as entered in the bidder's `running`.
    pub(super) est: f64,
    pub(super) progress: Arc<RunProgress>,
    pub(super) cancel: CancelToken,
    /// The node running it (a local run learns its worker's name when it starts).
    pub(super) name: Arc<OnceLock<String>>,
    /// Last heartbeat of a run on a peer: its lease runs from here.
    pub(super) renewed: Instant,
    pub(super) copy: bool,
    pub(super) task: Option<SpawnHandle>,
}

impl Run {
    pub(super) fn name(&self) -> String {
        self.name
            .get()
            .cloned()
            .unwrap_or_else(|| "this node".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(p: &RunProgress, frames: u64, at_ms: u64) {
        if p.first_frames.load(Ordering::Relaxed) == 0 && frames > 0 {
            p.first_frames.store(frames, Ordering::Relaxed);
            p.first_at_ms.store(at_ms, Ordering::Relaxed);
        }
        p.frames.store(frames, Ordering::Relaxed);
        p.at_ms.store(at_ms, Ordering::Relaxed);
    }

    #[test]
    fn a_run_s_end_is_judged_from_its_rate_after_the_first_frames() {
        let p = RunProgress::new();
        assert_eq!(p.expected_s(120), None, "nothing done yet");
        // an encoder put out nothing for 2 s (its lookahead), then a frame every 50 ms
        report(&p, 10, 2_000);
        assert_eq!(
            p.expected_s(120),
            Some(2.0 * 12.0),
            "one report: the whole run's rate"
        );
        report(&p, 50, 4_000);
        let end = p.expected_s(120).unwrap();
        assert!((end - (4.0 + 70.0 * 0.05)).abs() < 1e-9, "{end}");
        // all frames out: it ends now
        report(&p, 120, 7_500);
        assert_eq!(p.expected_s(120), Some(7.5));
        // set() records the first report once
        let q = RunProgress::new();
        q.set(0);
        q.set(5);
        q.set(9);
        assert_eq!(q.first_frames.load(Ordering::Relaxed), 5);
    }
}
