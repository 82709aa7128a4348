//! The tail of a job: speculative copies, as pure logic.
//!
//! When no lot waits for an award and a bidder has a free slot, the runs in flight are
//! looked at latest expected finish first: the first one that an idle bidder would finish
//! clearly sooner gets a copy there. "Clearly" is by at least [`MIN_GAIN_S`] and by
//! [`GAIN_SHARE`] of the copy's own estimated time, so a copy is made where it pays even
//! after its estimate is off by a quarter. On an unequal mesh this is what keeps a fast box
//! from sitting idle while a slow box works through the last shard: a box four times faster
//! finishes a copy of a shard the slow one has just begun long before it would.
//!
//! The coordinator decides which runs may be judged and when each is expected to end (from
//! its progress, or from its bidder's speed learned in this job); the simulation
//! ([`super::sim`]) feeds the same function its modelled runs.

use super::auction::{Bidder, Lot};

/// A copy must be expected to finish at least this many seconds before the run it copies…
pub const MIN_GAIN_S: f64 = 0.25;
/// …and sooner by this fraction of the copy's own estimated time.
pub const GAIN_SHARE: f64 = 0.25;

/// A run in flight that may get a copy (the shard has no other run and had no copy yet).
#[derive(Clone, Debug, PartialEq)]
pub struct InFlight {
    pub shard: u32,
    /// The bidder running it (by index in the bidders' slice).
    pub bidder: usize,
    /// When it is expected to end.
    pub finish: f64,
}

/// A copy to start: shard, bidder (index), its estimated finish.
#[derive(Clone, Debug, PartialEq)]
pub struct Copy {
    pub shard: u32,
    pub bidder: usize,
    pub est_finish: f64,
}

/// The copy to start at `now`, if one pays (see the module notes). `lot` gives a shard's lot.
pub fn pick_copy<'a>(
    now: f64,
    in_flight: &[InFlight],
    bidders: &[Bidder],
    lot: impl Fn(u32) -> Option<&'a Lot>,
) -> Option<Copy> {
    if !bidders.iter().any(|b| b.free_slots() > 0) {
        return None;
    }
    let mut order: Vec<&InFlight> = in_flight.iter().collect();
    order.sort_by(|a, b| b.finish.total_cmp(&a.finish).then(a.shard.cmp(&b.shard)));
    for run in order {
        let Some(lot) = lot(run.shard) else {
            continue;
        };
        let best = bidders
            .iter()
            .enumerate()
            .filter(|(k, b)| *k != run.bidder && b.free_slots() > 0)
            .filter_map(|(k, b)| b.bid(now, lot).map(|t| (t, k)))
            .min_by(|a, b| a.0.total_cmp(&b.0));
        let Some((t, bidder)) = best else {
            continue;
        };
        let gain = MIN_GAIN_S.max(GAIN_SHARE * (t - now));
        if t + gain < run.finish {
            return Some(Copy {
                shard: run.shard,
                bidder,
                est_finish: t,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bidder(id: usize, speed: f64, running: Vec<f64>) -> Bidder {
        Bidder {
            running,
            ..Bidder::new(id, 1, speed)
        }
    }

    fn lot(shard: u32, work: f64) -> Lot {
        Lot::of_work(shard, work)
    }

    #[test]
    fn an_idle_fast_box_copies_the_slow_box_s_last_shard_when_it_finishes_clearly_sooner() {
        // fast: 4 units/s, idle; slow: 1 unit/s, began a lot of 4 units at t=10 (ends at 14)
        let lots = [lot(3, 4.0)];
        let bs = vec![bidder(0, 4.0, vec![]), bidder(1, 1.0, vec![14.0])];
        let slow = InFlight {
            shard: 3,
            bidder: 1,
            finish: 14.0,
        };
        let c = pick_copy(10.0, std::slice::from_ref(&slow), &bs, |s| {
            lots.iter().find(|l| l.shard == s)
        });
        assert_eq!(
            c,
            Some(Copy {
                shard: 3,
                bidder: 0,
                est_finish: 11.0
            })
        );
        // near its end the slow box keeps it: 0.2 s left against a 1 s copy
        let ending = InFlight {
            finish: 10.2,
            ..slow.clone()
        };
        assert_eq!(
            pick_copy(10.0, &[ending], &bs, |s| lots.iter().find(|l| l.shard == s)),
            None
        );
        // a gain under a quarter of the copy's time is not worth it: copy 1 s, gain 0.2 s
        let close = InFlight {
            finish: 11.2,
            ..slow
        };
        assert_eq!(
            pick_copy(10.0, &[close], &bs, |s| lots.iter().find(|l| l.shard == s)),
            None
        );
    }

    #[test]
    fn the_latest_run_is_copied_first_never_onto_its_own_bidder_nor_a_busy_one() {
        let lots = [lot(1, 2.0), lot(2, 2.0)];
        let find = |s: u32| lots.iter().find(|l| l.shard == s);
        let runs = [
            InFlight {
                shard: 1,
                bidder: 1,
                finish: 8.0,
            },
            InFlight {
                shard: 2,
                bidder: 2,
                finish: 9.0,
            },
        ];
        let bs = vec![
            bidder(0, 2.0, vec![]),
            bidder(1, 0.5, vec![8.0]),
            bidder(2, 0.5, vec![9.0]),
        ];
        let c = pick_copy(5.0, &runs, &bs, find).unwrap();
        assert_eq!((c.shard, c.bidder), (2, 0), "the run ending last first");
        // nobody free: no copy
        let busy = vec![
            bidder(0, 2.0, vec![6.0]),
            bidder(1, 0.5, vec![8.0]),
            bidder(2, 0.5, vec![9.0]),
        ];
        assert_eq!(pick_copy(5.0, &runs, &busy, find), None);
        // only the run's own bidder is free: no copy
        let own = vec![bidder(1, 9.0, vec![])];
        let only = [InFlight {
            shard: 1,
            bidder: 0,
            finish: 8.0,
        }];
        assert_eq!(pick_copy(5.0, &only, &own, find), None);
    }
}
