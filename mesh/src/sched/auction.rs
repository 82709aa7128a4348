//! The contract-net auction, as pure logic: no actors, no sockets, no clock of its own.
//!
//! The coordinator holds the lots (shards not yet awarded, largest first; among lots of equal
//! work the one with more input bytes first, since a denser chunk takes longer to decode and
//! encode, so the last lots handed out are the quick ones). A bidder's bid for a
//! lot is its estimated finish: now (or when its first slot frees, if busy) + the transfer time
//! of input it lacks + work ÷ its calibrated speed; a bidder that cannot meet the lot's
//! requirements declines. Each round, every bidder with a free slot, fastest first, takes:
//! 1. the largest lot it accepts, if no other bidder — busy ones included — would finish that
//!    lot sooner (earliest finish wins; this keeps the big lots on the fast boxes, early);
//! 2. else the largest lot it can finish by the *balance horizon* — now + all remaining work ÷
//!    the mesh's total speed — so slower boxes share the work in proportion without becoming
//!    the tail;
//! 3. else the smallest lot it accepts, if it would finish that lot (with a margin) before the
//!    *other* bidders could finish all the work left, running and pending, even sharing it
//!    perfectly: at the tail, where the last lots would queue on the fast boxes one after
//!    another, a slow box takes one of them, and the job ends sooner;
//! 4. else nothing: the work waits for a faster box.
//!
//! A bidder never holds more awards than slots. Speeds are corrected from observed runs, so
//! the estimates converge on the truth as shards finish.
//!
//! Input ahead: a busy bidder that must fetch its input gets a *hint* ([`Auction::hints`]):
//! the lot the same rules would give it when its first slot frees (judged without transfer
//! time), among lots not hinted to another bidder and not left for the slots of others that
//! free before it. Its node fetches that lot's input while its slot is still busy, so the
//! lot costs it no transfer time, and when its slot frees it takes its hinted lot first (if
//! nobody took it meanwhile and the rules above let it take that lot then). A hint holds no
//! slot and reserves nothing: any bidder may still be awarded the lot.

use std::collections::{BTreeSet, HashMap};

/// What a shard needs and how big it is.
#[derive(Clone, Debug, PartialEq)]
pub struct Lot {
    pub shard: u32,
    /// Work in the bidders' speed unit (e.g. frames × megapixels).
    pub work: f64,
    /// Input bytes a bidder must fetch unless it already holds them.
    pub input_bytes: u64,
    /// Minimum free memory a bidder needs.
    pub min_mem: u64,
}

impl Lot {
    /// A lot of `work` with no input to move and no memory requirement.
    pub fn of_work(shard: u32, work: f64) -> Self {
        Self {
            shard,
            work,
            input_bytes: 0,
            min_mem: 0,
        }
    }
}

/// A bidder as the auction sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Bidder {
    pub id: usize,
    pub slots: u32,
    /// Estimated finish times of the awards it holds now.
    pub running: Vec<f64>,
    /// Calibrated speed (work per second per slot), corrected by observation.
    pub speed: f64,
    pub free_mem: u64,
    /// Link speed for fetching input, bytes per second (0 = input is always local).
    pub bytes_per_s: f64,
    /// Lots the bidder declined in its bid sheet (a requirement it cannot meet).
    pub declines: BTreeSet<u32>,
    /// Expected finish times of other work holding its slots (other jobs' shards); the
    /// caller drops the ones that have passed ([`Bidder::settle`]).
    pub busy: Vec<f64>,
    /// The lot whose input it is fetching ahead ([`Auction::hints`]).
    pub hint: Option<u32>,
    /// Work and seconds of the runs of this job it has finished ([`Bidder::observe`]).
    pub seen_work: f64,
    pub seen_secs: f64,
}

impl Bidder {
    /// A bidder with `slots` free slots at `speed`, all memory, its input at hand, nothing
    /// declined, busy or seen yet.
    pub fn new(id: usize, slots: u32, speed: f64) -> Self {
        Self {
            id,
            slots,
            running: Vec::new(),
            speed,
            free_mem: u64::MAX,
            bytes_per_s: 0.0,
            declines: BTreeSet::new(),
            busy: Vec::new(),
            hint: None,
            seen_work: 0.0,
            seen_secs: 0.0,
        }
    }

    pub fn free_slots(&self) -> u32 {
        self.slots
            .saturating_sub(self.running.len() as u32)
            .saturating_sub(self.busy.len() as u32)
    }

    /// Forget other work expected to have finished by `now`; returns the next expected
    /// finish of other work, if any is left.
    pub fn settle(&mut self, now: f64) -> Option<f64> {
        self.busy.retain(|&t| t > now);
        self.busy.iter().copied().reduce(f64::min)
    }

    /// Whether it would take `lot` at all (memory, requirements, slots).
    pub fn accepts(&self, lot: &Lot) -> bool {
        self.free_mem >= lot.min_mem
            && self.speed > 0.0
            && self.slots > 0
            && !self.declines.contains(&lot.shard)
    }

    /// Estimated finish of `lot` on this bidder; `None` = declines.
    pub fn bid(&self, now: f64, lot: &Lot) -> Option<f64> {
        if !self.accepts(lot) {
            return None;
        }
        let start = if self.free_slots() > 0 {
            now
        } else {
            self.running
                .iter()
                .chain(&self.busy)
                .copied()
                .fold(f64::INFINITY, f64::min)
                .max(now)
        };
        let transfer = if self.bytes_per_s > 0.0 && self.hint != Some(lot.shard) {
            lot.input_bytes as f64 / self.bytes_per_s
        } else {
            0.0
        };
        Some(start + transfer + lot.work / self.speed)
    }

    /// Fold an observed run into the speed. From the first run of this job it has
    /// finished, its speed is what this job's runs did there (all their work ÷ all their
    /// seconds), no longer its calibration: the job's own shards on that box, under its
    /// load now, are the best evidence there is. A throttled or busy box is seen as it
    /// really runs after one shard.
    pub fn observe(&mut self, work: f64, seconds: f64) {
        if seconds > 0.0 && work > 0.0 && seconds.is_finite() && work.is_finite() {
            self.seen_work += work;
            self.seen_secs += seconds;
            self.speed = self.seen_work / self.seen_secs;
        }
    }

    /// Whether its speed comes from runs of this job.
    pub fn seen(&self) -> bool {
        self.seen_secs > 0.0
    }
}

/// Finishes this close count as the same time: estimates made of sums of equal shards must
/// not lose a tie to rounding.
const SLACK_S: f64 = 1e-6;

/// One award.
#[derive(Clone, Debug, PartialEq)]
pub struct Award {
    pub shard: u32,
    pub bidder: usize,
    pub est_finish: f64,
}

/// The lots of one job, waiting to be awarded.
#[derive(Debug, Default)]
pub struct Auction {
    /// Largest first.
    lots: Vec<Lot>,
    /// Sum of the lots' work.
    pending_work: f64,
    /// Bidders [`Auction::hints`] found no lot for, by id, with the time their first slot
    /// frees: not tried again until that time changes.
    unhinted: HashMap<usize, u64>,
}

/// Offer order: more work first; at equal work, more input bytes first; then by shard.
fn offer_order(a: &Lot, b: &Lot) -> std::cmp::Ordering {
    b.work
        .total_cmp(&a.work)
        .then(b.input_bytes.cmp(&a.input_bytes))
        .then(a.shard.cmp(&b.shard))
}

impl Auction {
    pub fn new(mut lots: Vec<Lot>) -> Self {
        lots.sort_by(offer_order);
        let pending_work = lots.iter().map(|l| l.work).sum();
        Self {
            lots,
            pending_work,
            unhinted: HashMap::new(),
        }
    }

    /// Shards waiting, in the order they are offered.
    pub fn pending_shards(&self) -> Vec<u32> {
        self.lots.iter().map(|l| l.shard).collect()
    }

    pub fn pending(&self) -> usize {
        self.lots.len()
    }

    /// Put a lost shard back (its bidder died or its lease ran out).
    pub fn requeue(&mut self, lot: Lot) {
        let at = self
            .lots
            .partition_point(|l| offer_order(l, &lot) != std::cmp::Ordering::Greater);
        self.pending_work += lot.work;
        self.lots.insert(at, lot);
    }

    /// Lots no bidder can ever take (every bidder declines them).
    pub fn unplaceable(&self, bidders: &[Bidder]) -> Vec<u32> {
        self.lots
            .iter()
            .filter(|l| bidders.iter().all(|b| !b.accepts(l)))
            .map(|l| l.shard)
            .collect()
    }

    /// When all pending and running work would be done if the mesh's total speed were
    /// shared perfectly; `None` when nobody has any speed.
    fn horizon(&self, now: f64, bidders: &[Bidder]) -> Option<f64> {
        let capacity: f64 = bidders
            .iter()
            .map(|b| b.speed.max(0.0) * b.slots as f64)
            .sum();
        if capacity <= 0.0 {
            return None;
        }
        let running_left: f64 = bidders
            .iter()
            .map(|b| b.running.iter().map(|&e| (e - now).max(0.0)).sum::<f64>() * b.speed.max(0.0))
            .sum();
        Some(now + (self.pending_work + running_left) / capacity)
    }

    /// One round at time `now`: award what should start now and record the awards in the
    /// bidders' `running`. Costs O(awards × (bidders + log lots)).
    pub fn round(&mut self, now: f64, bidders: &mut [Bidder]) -> Vec<Award> {
        let mut awards = Vec::new();
        let Some(horizon) = self.horizon(now, bidders) else {
            return awards;
        };
        let mut order: Vec<usize> = (0..bidders.len())
            .filter(|&k| bidders[k].free_slots() > 0)
            .collect();
        order.sort_by(|&a, &b| bidders[b].speed.total_cmp(&bidders[a].speed));
        for k in order {
            while bidders[k].free_slots() > 0 && !self.lots.is_empty() {
                let Some(i) = self.pick(now, horizon, k, bidders, &|_| false) else {
                    break;
                };
                let lot = self.lots.remove(i);
                self.pending_work -= lot.work;
                let Some(t) = bidders[k].bid(now, &lot) else {
                    break;
                };
                for b in bidders.iter_mut() {
                    if b.hint == Some(lot.shard) {
                        b.hint = None;
                    }
                }
                bidders[k].running.push(t);
                awards.push(Award {
                    shard: lot.shard,
                    bidder: bidders[k].id,
                    est_finish: t,
                });
            }
        }
        awards
    }

    /// Hint the lot each busy bidder that fetches its input would take when its first slot
    /// frees (see the module notes); a hint stays until its lot is awarded. Returns the new
    /// hints as (bidder id, shard). Costs O(bidders × log lots), plus O(bidders × slots) and
    /// one pick per busy bidder without a hint (one found without a lot is tried again once
    /// its first slot frees at another time).
    pub fn hints(&mut self, now: f64, bidders: &mut [Bidder]) -> Vec<(usize, u32)> {
        let mut new = Vec::new();
        let Some(horizon) = self.horizon(now, bidders) else {
            return new;
        };
        // a hint always names a pending lot: `round` drops it when the lot is awarded
        let mut taken: BTreeSet<u32> = bidders.iter().filter_map(|b| b.hint).collect();
        for k in 0..bidders.len() {
            let me = &bidders[k];
            if me.hint.is_some() || me.bytes_per_s <= 0.0 || me.free_slots() > 0 {
                continue;
            }
            let frees = me
                .running
                .iter()
                .chain(&me.busy)
                .copied()
                .fold(f64::INFINITY, f64::min);
            if !frees.is_finite() {
                continue;
            }
            let at = frees.max(now);
            let id = me.id;
            if self.unhinted.get(&id) == Some(&at.to_bits()) {
                continue;
            }
            // the slots of other bidders that free before this one take the first lots not
            // hinted (a bidder with a hint takes that one first)
            let before: usize = bidders
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != k)
                .map(|(_, b)| {
                    let frees = b.free_slots() as usize
                        + b.running.iter().chain(&b.busy).filter(|&&e| e < at).count();
                    frees.saturating_sub(usize::from(b.hint.is_some()))
                })
                .sum();
            let theirs: BTreeSet<u32> = self
                .lots
                .iter()
                .filter(|l| !taken.contains(&l.shard))
                .take(before)
                .map(|l| l.shard)
                .collect();
            // judged as if the input were here already: that is what the hint makes true
            let link = std::mem::replace(&mut bidders[k].bytes_per_s, 0.0);
            let skip = |s: u32| taken.contains(&s) || theirs.contains(&s);
            let hint = self
                .pick(at, horizon.max(at), k, bidders, &skip)
                .map(|i| self.lots[i].shard);
            bidders[k].bytes_per_s = link;
            bidders[k].hint = hint;
            match hint {
                Some(shard) => {
                    self.unhinted.remove(&id);
                    taken.insert(shard);
                    new.push((id, shard));
                }
                None => {
                    self.unhinted.insert(id, at.to_bits());
                }
            }
        }
        new
    }

    /// Which lot bidder `k` should start at `now`, if any, among the lots `skip` lets
    /// through; its hinted lot first.
    fn pick(
        &self,
        now: f64,
        horizon: f64,
        k: usize,
        bidders: &[Bidder],
        skip: &dyn Fn(u32) -> bool,
    ) -> Option<usize> {
        let me = &bidders[k];
        // 0. its hinted lot, if the rules below would let it take that lot now
        if let Some(i) = me
            .hint
            .and_then(|h| self.lots.iter().position(|l| l.shard == h))
        {
            if let Some(mine) = me.bid(now, &self.lots[i]) {
                if mine <= horizon + SLACK_S
                    || mine <= best_other(now, k, bidders, &self.lots[i]) + SLACK_S
                {
                    return Some(i);
                }
            }
        }
        // 1. the largest lot it accepts, if it would finish it first
        let first = self
            .lots
            .iter()
            .position(|l| !skip(l.shard) && me.bid(now, l).is_some())?;
        let mine = me.bid(now, &self.lots[first])?;
        if mine <= best_other(now, k, bidders, &self.lots[first]) + SLACK_S {
            return Some(first);
        }
        // 2. the largest lot it can finish by the balance horizon
        let budget = (horizon - now) * me.speed;
        let from = self.lots.partition_point(|l| l.work > budget);
        let fits = (from..self.lots.len()).find(|&i| {
            !skip(self.lots[i].shard)
                && me
                    .bid(now, &self.lots[i])
                    .is_some_and(|t| t <= horizon + SLACK_S)
        });
        if fits.is_some() {
            return fits;
        }
        // 3. the smallest lot it accepts, if it finishes that lot clearly before the others
        //    could finish all the work left even sharing it perfectly: then taking it
        //    cannot make the job end later, and it ends sooner when the others' last lots
        //    would queue behind each other
        let without_me = self.horizon_without(now, k, bidders)?;
        let last = (0..self.lots.len())
            .rev()
            .find(|&i| !skip(self.lots[i].shard) && me.bid(now, &self.lots[i]).is_some())?;
        let mine = me.bid(now, &self.lots[last])?;
        (mine + TAIL_MARGIN * (mine - now).max(0.0) < without_me).then_some(last)
    }

    /// When the bidders other than `k` would have all pending and running work done if they
    /// shared it perfectly; `None` when they have no speed (then rule 1 already decides).
    fn horizon_without(&self, now: f64, k: usize, bidders: &[Bidder]) -> Option<f64> {
        let others = || bidders.iter().enumerate().filter(move |(j, _)| *j != k);
        let capacity: f64 = others()
            .map(|(_, b)| b.speed.max(0.0) * b.slots as f64)
            .sum();
        if capacity <= 0.0 {
            return None;
        }
        let running_left: f64 = others()
            .map(|(_, b)| {
                b.running.iter().map(|&e| (e - now).max(0.0)).sum::<f64>() * b.speed.max(0.0)
            })
            .sum();
        Some(now + (self.pending_work + running_left) / capacity)
    }
}

/// Rule 3 takes a lot only when the bidder's estimate beats the others' perfect sharing by
/// this share of the lot's own estimated time: room for an estimate that is a little off.
const TAIL_MARGIN: f64 = 0.1;

/// The earliest finish any bidder but `k` bids for `lot` (infinite when none would take it).
fn best_other(now: f64, k: usize, bidders: &[Bidder], lot: &Lot) -> f64 {
    bidders
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != k)
        .filter_map(|(_, o)| o.bid(now, lot))
        .fold(f64::INFINITY, f64::min)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bidder(id: usize, slots: u32, speed: f64) -> Bidder {
        Bidder {
            free_mem: 8 << 30,
            ..Bidder::new(id, slots, speed)
        }
    }

    fn lot(shard: u32, work: f64) -> Lot {
        Lot::of_work(shard, work)
    }

    #[test]
    fn fastest_free_bidder_wins_and_slots_are_respected() {
        let mut b = vec![bidder(0, 1, 1.0), bidder(1, 2, 4.0)];
        let mut a = Auction::new((0..5).map(|i| lot(i, 10.0)).collect());
        let awards = a.round(0.0, &mut b);
        assert_eq!(
            awards.iter().filter(|w| w.bidder == 1).count(),
            2,
            "fast bidder fills its slots"
        );
        assert!(b.iter().all(|x| x.free_slots() == 0 || x.id == 0));
        assert!(b.iter().all(|x| x.running.len() as u32 <= x.slots));
    }

    #[test]
    fn a_slow_free_bidder_does_not_take_what_a_busy_fast_one_finishes_sooner() {
        // fast bidder busy until t=1, slow one free: work 10 → slow finishes at 10, fast at 2
        let mut b = vec![
            bidder(0, 1, 1.0),
            Bidder {
                running: vec![1.0],
                ..bidder(1, 1, 10.0)
            },
        ];
        let mut a = Auction::new(vec![lot(7, 10.0)]);
        assert!(a.round(0.0, &mut b).is_empty());
        assert_eq!(a.pending(), 1);
        b[1].running.clear();
        let w = a.round(1.0, &mut b);
        assert_eq!(
            w,
            vec![Award {
                shard: 7,
                bidder: 1,
                est_finish: 2.0
            }]
        );
    }

    #[test]
    fn a_slow_box_shares_work_it_can_finish_by_the_horizon_but_not_more() {
        // 100 small lots: the slow box takes some; one huge lot: only the fast box
        let mut a = Auction::new((0..100).map(|i| lot(i, 1.0)).collect());
        let mut bs = vec![bidder(0, 1, 10.0), bidder(1, 1, 1.0)];
        let w = a.round(0.0, &mut bs);
        assert_eq!(w.len(), 2, "both boxes start a lot: {w:?}");
        let mut a = Auction::new(vec![lot(0, 100.0)]);
        let mut bs = vec![
            Bidder {
                running: vec![1.0],
                ..bidder(0, 1, 10.0)
            },
            bidder(1, 1, 1.0),
        ];
        assert!(
            a.round(0.0, &mut bs).is_empty(),
            "the slow box must not take the huge lot"
        );
    }

    #[test]
    fn at_the_tail_a_slow_box_takes_a_last_lot_when_the_fast_one_would_queue_them() {
        // as measured on a 1 + 0.5 mesh: the fast box ends its shard at 0.012 s and does a
        // lot in 0.17 s, the slow one needs 0.42 s. Three lots left: the fast box alone
        // would end at 0.522 s; with the slow one taking a lot the job ends at 0.42 s (the
        // fast box ends the other two at 0.352 s). The horizon (0.371 s) would leave it idle.
        let slow_speed = 0.17 / 0.42;
        let fast = || Bidder {
            running: vec![0.012],
            ..bidder(0, 1, 1.0)
        };
        let mut a = Auction::new((0..3).map(|i| lot(12 + i, 0.17)).collect());
        let mut bs = vec![fast(), bidder(1, 1, slow_speed)];
        let w = a.round(0.0, &mut bs);
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!((w[0].shard, w[0].bidder), (14, 1), "the smallest, last lot");
        assert!((w[0].est_finish - 0.42).abs() < 1e-9);
        // two lots left: the fast box ends both at 0.352 s, before the slow one could end one
        let mut a = Auction::new((0..2).map(|i| lot(12 + i, 0.17)).collect());
        let mut bs = vec![fast(), bidder(1, 1, slow_speed)];
        assert!(a.round(0.0, &mut bs).is_empty());
        // three lots, but the estimate beats the fast box by less than the margin: wait
        let mut a = Auction::new((0..3).map(|i| lot(12 + i, 0.17)).collect());
        let mut bs = vec![fast(), bidder(1, 1, 0.17 / 0.49)];
        assert!(a.round(0.0, &mut bs).is_empty(), "0.49 s + 10 % > 0.522 s");
    }

    fn remote(id: usize, speed: f64, busy_until: f64) -> Bidder {
        Bidder {
            bytes_per_s: 1e6,
            running: vec![busy_until],
            ..bidder(id, 1, speed)
        }
    }

    fn heavy(shard: u32, work: f64) -> Lot {
        Lot {
            input_bytes: 2_000_000,
            ..lot(shard, work)
        }
    }

    #[test]
    fn a_busy_remote_bidder_is_hinted_the_lot_it_takes_next_and_takes_it_without_transfer() {
        // a: local, busy until 5; b and c: remote, busy until 3 and 4
        let mut local = bidder(0, 1, 1.0);
        local.running = vec![5.0];
        let mut bs = vec![local, remote(1, 1.0, 3.0), remote(2, 1.0, 4.0)];
        let mut a = Auction::new(vec![
            heavy(0, 10.0),
            heavy(1, 9.0),
            heavy(2, 8.0),
            heavy(3, 7.0),
        ]);
        // each remote bidder gets its own lot, in offer order as they free; none for the local one
        assert_eq!(a.hints(0.0, &mut bs), vec![(1, 0), (2, 1)]);
        assert_eq!(bs[0].hint, None);
        // a hint stays while its lot waits
        assert_eq!(a.hints(1.0, &mut bs), vec![]);
        // c frees first after all: it takes its own hinted lot, not the larger one hinted to b,
        // and with its input here the estimate has no transfer time
        bs[2].running.clear();
        let awards = a.round(4.0, &mut bs);
        assert_eq!(
            awards,
            vec![Award {
                shard: 1,
                bidder: 2,
                est_finish: 4.0 + 9.0
            }]
        );
        assert_eq!(bs[2].hint, None, "an awarded lot is no longer hinted");
        assert_eq!(bs[1].hint, Some(0));
        // busy again until 13: lot 2 is left for the local bidder, which frees at 5, so c is
        // hinted the one after
        assert_eq!(a.hints(4.0, &mut bs), vec![(2, 3)]);
        // the local bidder frees and takes the largest lot, hinted to b: b's hint is dropped
        // and b gets a new one
        bs[0].running.clear();
        let awards = a.round(5.0, &mut bs);
        assert_eq!(awards.len(), 1);
        assert_eq!((awards[0].shard, awards[0].bidder), (0, 0));
        assert_eq!(bs[1].hint, None);
        assert_eq!(a.hints(5.0, &mut bs), vec![(1, 2)]);
        // without the hint the transfer counts: 2 MB at 1 MB/s
        assert_eq!(bs[1].bid(0.0, &heavy(9, 1.0)), Some(3.0 + 2.0 + 1.0));
        assert_eq!(bs[1].bid(0.0, &heavy(2, 1.0)), Some(3.0 + 1.0));
    }

    #[test]
    fn with_a_local_and_a_remote_bidder_taking_turns_the_remote_one_gets_its_hinted_lots() {
        // equal speeds; the local one finishes each lot a little later than the remote one,
        // so they free in turn: every award to the remote bidder after its first was hinted
        let mut bs = vec![bidder(0, 1, 1.0), remote(1, 1.0, 0.0)];
        bs[1].running.clear();
        let mut a = Auction::new((0..20).map(|i| heavy(i, 1.0)).collect());
        let took = [1.03, 0.98];
        let mut done: Vec<(f64, usize, f64)> = Vec::new();
        let (mut now, mut remote_awards, mut hinted_awards) = (0.0, 0, 0);
        loop {
            let hint = bs[1].hint;
            for w in a.round(now, &mut bs) {
                if w.bidder == 1 {
                    remote_awards += 1;
                    hinted_awards += usize::from(hint == Some(w.shard));
                }
                done.push((now + took[w.bidder], w.bidder, w.est_finish));
            }
            a.hints(now, &mut bs);
            done.sort_by(|x, y| y.0.total_cmp(&x.0));
            let Some((t, k, est)) = done.pop() else { break };
            now = t;
            let i = bs[k].running.iter().position(|&e| e == est).unwrap();
            bs[k].running.swap_remove(i);
        }
        assert_eq!(a.pending(), 0);
        assert!(
            remote_awards >= 9,
            "{remote_awards} awards to the remote bidder"
        );
        assert_eq!(hinted_awards, remote_awards - 1);
    }

    #[test]
    fn a_slow_remote_bidder_is_not_hinted_a_lot_a_faster_one_would_finish_first() {
        // both busy until 1; the slow remote one would take 100 s for the big lot
        let mut fast = bidder(0, 1, 10.0);
        fast.running = vec![1.0];
        let slow = remote(1, 0.1, 1.0);
        let mut bs = vec![fast, slow];
        let mut a = Auction::new(vec![heavy(0, 10.0), heavy(1, 0.05)]);
        assert_eq!(a.hints(0.0, &mut bs), vec![(1, 1)]);
    }

    #[test]
    fn declines_and_transfer_time_count() {
        let small = Bidder {
            free_mem: 1 << 30,
            ..bidder(0, 4, 100.0)
        };
        let big = bidder(1, 1, 1.0);
        let needy = Lot {
            min_mem: 4 << 30,
            ..lot(1, 5.0)
        };
        let mut a = Auction::new(vec![needy.clone()]);
        let mut bs = vec![small.clone(), big.clone()];
        assert_eq!(a.round(0.0, &mut bs)[0].bidder, 1, "the small box declines");
        assert_eq!(
            Auction::new(vec![needy]).unplaceable(std::slice::from_ref(&small)),
            vec![1]
        );
        // a fast peer far away loses to a local one when the input is large
        let far = Bidder {
            bytes_per_s: 1e6,
            declines: Default::default(),
            busy: Vec::new(),
            hint: None,
            ..bidder(2, 1, 10.0)
        };
        let near = bidder(3, 1, 5.0);
        let heavy = Lot {
            input_bytes: 100_000_000,
            ..lot(2, 10.0)
        };
        let mut bs = vec![far, near];
        assert_eq!(Auction::new(vec![heavy]).round(0.0, &mut bs)[0].bidder, 3);
    }

    #[test]
    fn a_declined_lot_goes_elsewhere_and_other_work_holds_slots_until_it_settles() {
        let fast = Bidder {
            declines: [4].into_iter().collect(),
            ..bidder(0, 1, 10.0)
        };
        let mut bs = vec![fast, bidder(1, 1, 1.0)];
        let w = Auction::new(vec![lot(4, 1.0)]).round(0.0, &mut bs);
        assert_eq!(w[0].bidder, 1, "the fast box declined lot 4: {w:?}");
        assert_eq!(
            Auction::new(vec![lot(4, 1.0)]).unplaceable(&bs[..1]),
            vec![4]
        );
        // a box busy with another job until t=3 has no free slot before then
        let mut busy = Bidder {
            busy: vec![3.0],
            hint: None,
            ..bidder(2, 1, 10.0)
        };
        assert_eq!(busy.free_slots(), 0);
        assert_eq!(busy.bid(0.0, &lot(5, 10.0)), Some(4.0));
        assert_eq!(busy.settle(1.0), Some(3.0));
        assert_eq!(busy.settle(3.5), None);
        assert_eq!(busy.free_slots(), 1);
    }

    #[test]
    fn observed_speed_corrects_the_estimate_and_requeue_keeps_order() {
        let mut b = bidder(0, 1, 10.0);
        assert!(!b.seen());
        b.observe(10.0, 10.0); // really 1 unit/s: one run replaces the calibration
        assert!(b.seen());
        assert!((b.speed - 1.0).abs() < 1e-9);
        b.observe(30.0, 10.0); // then all the job's runs count alike: 40 units in 20 s
        assert!((b.speed - 2.0).abs() < 1e-9);
        b.observe(f64::NAN, 1.0);
        b.observe(1.0, 0.0);
        assert!((b.speed - 2.0).abs() < 1e-9, "nonsense is ignored");
        let mut a = Auction::new(vec![lot(1, 5.0), lot(2, 1.0)]);
        a.requeue(lot(3, 3.0));
        assert_eq!(a.pending_shards(), vec![1, 3, 2]);
        let mut bs = vec![bidder(0, 3, 1.0)];
        let order: Vec<u32> = a.round(0.0, &mut bs).iter().map(|w| w.shard).collect();
        assert_eq!(
            order,
            vec![1, 3, 2],
            "a lone bidder takes the largest first"
        );
    }

    #[test]
    fn among_equal_work_the_lot_with_more_input_goes_first() {
        let sized = |shard, bytes| Lot {
            input_bytes: bytes,
            ..lot(shard, 4.0)
        };
        let mut a = Auction::new(vec![
            sized(0, 3_000),
            sized(1, 100),
            sized(2, 9_000),
            lot(3, 8.0),
            sized(4, 3_000),
        ]);
        assert_eq!(a.pending_shards(), vec![3, 2, 0, 4, 1]);
        a.requeue(sized(5, 5_000));
        a.requeue(sized(6, 100));
        assert_eq!(a.pending_shards(), vec![3, 2, 5, 0, 4, 1, 6]);
        let mut bs = vec![bidder(0, 7, 1.0)];
        let order: Vec<u32> = a.round(0.0, &mut bs).iter().map(|w| w.shard).collect();
        assert_eq!(order, vec![3, 2, 5, 0, 4, 1, 6]);
    }
}
