//! Speculative copies: when no shard waits for an award and a bidder is idle, the run in
//! flight with the latest expected finish (from its progress rate) gets a copy on the
//! bidder that would clearly finish it sooner (the rule: [`crate::sched::tail`]). The auction's estimates of runs in flight
//! are kept up to date from their progress here too.

use std::collections::BTreeMap;

use actix::prelude::*;

use super::run::{Run, RunId};
use super::{Coordinator, SPECULATE_AFTER_S};
use crate::sched::tail::{self, InFlight};

impl Coordinator {
    /// Bring the finish times the auction holds for runs in flight up to date with their
    /// progress: a run that is late on its bid would otherwise look finished, and an idle
    /// bidder would leave the last shards to a box still busy.
    pub(super) fn refresh_estimates(&mut self, now: f64) {
        let updates: Vec<(RunId, f64)> = self
            .running
            .iter()
            .map(|(&id, run)| (id, self.expected_finish(run, now)))
            .collect();
        for (id, est) in updates {
            let Some(run) = self.running.get_mut(&id) else {
                continue;
            };
            let b = &mut self.bidders[run.bidder];
            if let Some(e) = b.running.iter_mut().find(|e| **e == run.est) {
                *e = est;
                run.est = est;
            }
        }
    }

    /// When a run ends, in seconds of the job's clock: from its progress rate, else its bid.
    pub(super) fn expected_finish(&self, run: &Run, now: f64) -> f64 {
        let frames = self.specs.get(&run.shard).map_or(0, |s| s.cost.units);
        let elapsed = run.progress.since.elapsed().as_secs_f64();
        match run.progress.expected_s(frames) {
            Some(total) => (now - elapsed + total).max(now),
            // no progress yet: at least as long again as it has taken so far
            None => run.est.max(now + elapsed),
        }
    }

    /// Nothing waits for an award: give the run in flight expected to end last a copy on an
    /// idle bidder that would clearly finish it sooner ([`tail::pick_copy`]). A run is judged
    /// once it has run [`SPECULATE_AFTER_S`] (its progress tells its end), or at once when
    /// its bidder's speed is known from this job's runs.
    pub(super) fn speculate(&mut self, ctx: &mut Context<Self>) {
        if self.failed || self.driver.is_none() || self.auction.pending() > 0 {
            return;
        }
        if !self.bidders.iter().any(|b| b.free_slots() > 0) {
            return;
        }
        let now = self.now();
        let mut runs_of: BTreeMap<u32, Vec<&Run>> = BTreeMap::new();
        for r in self.running.values() {
            runs_of.entry(r.shard).or_default().push(r);
        }
        let candidates: Vec<InFlight> = runs_of
            .iter()
            .filter(|(shard, runs)| runs.len() == 1 && !self.copied.contains(shard))
            .filter(|(_, runs)| {
                runs[0].progress.since.elapsed().as_secs_f64() >= SPECULATE_AFTER_S
                    || self.bidders[runs[0].bidder].seen()
            })
            .map(|(&shard, runs)| InFlight {
                shard,
                bidder: runs[0].bidder,
                finish: self.expected_finish(runs[0], now),
            })
            .collect();
        let lots = &self.lots;
        let Some(copy) = tail::pick_copy(now, &candidates, &self.bidders, |s| lots.get(&s)) else {
            return;
        };
        let Some(spec) = self.specs.get(&copy.shard).cloned() else {
            return;
        };
        let (shard, bidder, t) = (copy.shard, copy.bidder, copy.est_finish);
        let finish = candidates
            .iter()
            .find(|c| c.shard == shard)
            .map_or(t, |c| c.finish);
        tracing::info!(
            job = %self.job,
            shard,
            expected_s = finish - now,
            copy_s = t - now,
            "starting a speculative copy of a slow shard"
        );
        self.copied.insert(shard);
        self.bidders[bidder].running.push(t);
        self.handle.update(|s| {
            if let Some(row) = s.shards.iter_mut().find(|x| x.index == shard) {
                row.copies += 1;
            }
        });
        self.start_run(spec, bidder, t, true, ctx);
    }
}
