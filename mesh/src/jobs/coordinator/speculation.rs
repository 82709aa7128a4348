//! Speculative copies: when no shard waits for an award and a bidder is idle, the run in
//! flight with the latest expected finish (from its progress rate) gets a copy on the
//! bidder that would clearly finish it sooner. The auction's estimates of runs in flight
//! are kept up to date from their progress here too.

use std::collections::BTreeMap;

use actix::prelude::*;

use super::run::{Run, RunId};
use super::{Coordinator, SPECULATE_AFTER_S, SPECULATE_GAIN_S, SPECULATE_GAIN_SHARE};

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

    /// Nothing waits for an award: give the slowest shard in flight a copy on an idle bidder
    /// that would clearly finish it sooner.
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
        let mut slow: Vec<(f64, u32, usize)> = runs_of
            .iter()
            .filter(|(shard, runs)| runs.len() == 1 && !self.copied.contains(shard))
            .filter(|(_, runs)| runs[0].progress.since.elapsed().as_secs_f64() >= SPECULATE_AFTER_S)
            .map(|(&shard, runs)| (self.expected_finish(runs[0], now), shard, runs[0].bidder))
            .collect();
        slow.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (finish, shard, on) in slow {
            let (Some(lot), Some(spec)) = (self.lots.get(&shard), self.specs.get(&shard)) else {
                continue;
            };
            let best = self
                .bidders
                .iter()
                .filter(|b| b.id != on && b.free_slots() > 0)
                .filter_map(|b| b.bid(now, lot).map(|t| (t, b.id)))
                .min_by(|a, b| a.0.total_cmp(&b.0));
            let Some((t, bidder)) = best else {
                continue;
            };
            let gain = SPECULATE_GAIN_S.max(SPECULATE_GAIN_SHARE * (t - now));
            if t + gain >= finish {
                continue;
            }
            let spec = spec.clone();
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
            // one copy per call: the bidders' slots changed
            return;
        }
    }
}
