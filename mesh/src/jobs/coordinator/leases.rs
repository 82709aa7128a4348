//! Leases of runs on peers: the [`Heartbeat`]s of their runners renew them (and show their
//! progress); the tick gives up a run whose lease ran out, as if its peer closed the
//! connection, then looks for speculative copies.
//!
//! In: `Heartbeat` (from the node's [`ShardHost`](crate::ShardHost) through
//! [`Coordinators`](crate::remote::Coordinators)), answered whether the run is still wanted.

use std::time::Instant;

use actix::prelude::*;

use super::run::{RunId, Target};
use super::table::{add_note, show_progress};
use super::Coordinator;
use crate::exec::ShardError;
use crate::remote::Heartbeat;

impl Coordinator {
    /// Leases that ran out, then awards of what can start now, then speculative copies.
    pub(super) fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.failed || self.driver.is_none() {
            return;
        }
        let expired: Vec<RunId> = self
            .running
            .iter()
            .filter(|(_, r)| matches!(self.targets[r.bidder], Target::Remote { .. }))
            .filter(|(_, r)| r.renewed.elapsed() > self.lease)
            .map(|(&k, _)| k)
            .collect();
        for id in expired {
            if self.failed {
                return;
            }
            let Some(run) = self.stop_run(id, ctx) else {
                continue;
            };
            let (name, shard, secs) = (run.name(), run.shard, self.lease.as_secs_f64());
            tracing::warn!(job = %self.job, shard, peer = %name, lease_s = secs, "lease lost: no heartbeat from the peer in time; putting the shard up again");
            self.handle.update(|s| {
                if let Some(row) = s.shards.iter_mut().find(|x| x.index == shard) {
                    add_note(row, format!("lease lost on {name}"));
                }
            });
            let e = ShardError::retryable(format!(
                "lease lost: no heartbeat from {name} for {secs:.0} s"
            ));
            self.run_failed(run, e, ctx);
        }
        if self.failed {
            return;
        }
        // slots held by other work (other jobs' shards) free up with time: what can start
        // now is awarded here, every tick, rather than by scheduling again at once (once the
        // bids are in: before, there is nobody to award to)
        if self.auction.pending() > 0 && !self.bidders.is_empty() {
            self.schedule(ctx);
        } else {
            self.speculate(ctx);
        }
        self.refresh_items();
    }
}

impl Handler<Heartbeat> for Coordinator {
    type Result = bool;

    /// A runner's heartbeat: renew the lease of its run and show its progress; `false` =
    /// that run is no longer wanted.
    fn handle(&mut self, beat: Heartbeat, _ctx: &mut Context<Self>) -> bool {
        if self.failed {
            return false;
        }
        let targets = &self.targets;
        let Some(run) = self.running.values_mut().find(|r| {
            r.shard == beat.index
                && matches!(&targets[r.bidder], Target::Remote { peer, .. } if *peer == beat.peer)
        }) else {
            tracing::debug!(job = %self.job, shard = beat.index, peer = %beat.peer, "heartbeat for a run no longer wanted");
            return false;
        };
        run.renewed = Instant::now();
        run.progress.set(beat.frames_done);
        self.handle
            .update(|s| show_progress(s, beat.index, beat.frames_done));
        true
    }
}
