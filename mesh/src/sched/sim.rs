//! The coordinator's rules run against a modelled mesh: no actors, no sockets, a clock of
//! its own. Nodes have a true speed (work per second per slot) and a believed one (their
//! calibration); shards are lots. What the simulation shares with the coordinator is the
//! decisions: [`Auction::round`] for awards, [`Bidder::observe`] for speeds learned from
//! finished runs, [`tail::pick_copy`] for speculative copies, and the same view of a run in
//! flight (its end from its progress once it has run [`JUDGE_AFTER_S`] — a peer's progress
//! comes with its heartbeats, every [`HEARTBEAT_S`] — else from its bid). What it models
//! rather than measures: a fixed cost per run (`per_run_s`: start, input, result) and a
//! serial cost per job (`serial_s`: planning, the finish).
//!
//! The simulation tests (`tests/simulation.rs`) hold the rules to their goals on meshes of
//! hundreds of nodes; `examples/mix.rs` predicts the benchmark's small meshes of unequal
//! boxes from the speeds the benchmark measures.

use std::collections::BTreeSet;

use super::auction::{Auction, Bidder, Lot};
use super::tail::{self, InFlight};

/// A run in flight is judged by its progress once it has run this long (as the coordinator).
pub const JUDGE_AFTER_S: f64 = 1.0;
/// A peer reports a run's progress this often (its heartbeat).
pub const HEARTBEAT_S: f64 = 2.0;
/// The coordinator's tick: copies are considered at least this often.
pub const TICK_S: f64 = 0.5;

/// A modelled node.
#[derive(Clone, Debug)]
pub struct Node {
    /// What it really does: work per second per slot.
    pub speed: f64,
    /// What its calibration says (the auction starts from this).
    pub believed: f64,
    pub slots: u32,
    /// A peer (its progress arrives with heartbeats) rather than the coordinator's own node.
    pub remote: bool,
}

/// A modelled job on a modelled mesh.
#[derive(Clone, Debug)]
pub struct Model {
    pub nodes: Vec<Node>,
    pub lots: Vec<Lot>,
    /// Seconds every run costs on top of its work (start-up, input, result).
    pub per_run_s: f64,
    /// Seconds of the job that no node shares (planning, the finish).
    pub serial_s: f64,
    /// Whether idle nodes copy slow runs at the tail.
    pub copies: bool,
}

/// What happened.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// When the last shard was in, plus the serial part.
    pub makespan: f64,
    /// Shards each node delivered (the run whose result was used).
    pub per_node: Vec<u32>,
    /// Per node: seconds from its last delivered or given-up run's end to the last shard's
    /// end (0 for the node that ran the last one).
    pub tail_idle: Vec<f64>,
    /// Speculative copies started.
    pub copies: u32,
    /// Largest work ÷ the fastest true speed among lots: no schedule ends before this.
    pub longest: f64,
    /// All work ÷ all true capacity, plus the serial part: the bound with perfect shares.
    pub lower_bound: f64,
}

struct Running {
    shard: u32,
    node: usize,
    start: f64,
    end: f64,
    /// The estimate in its bidder's `running`.
    est: f64,
}

/// Run the model to the end.
pub fn simulate(m: &Model) -> Outcome {
    let n = m.nodes.len();
    let mut bidders: Vec<Bidder> = m
        .nodes
        .iter()
        .enumerate()
        .map(|(id, node)| Bidder::new(id, node.slots, node.believed))
        .collect();
    let work_of = |shard: u32| {
        m.lots
            .iter()
            .find(|l| l.shard == shard)
            .map_or(0.0, |l| l.work)
    };
    let mut auction = Auction::new(m.lots.clone());
    let mut runs: Vec<Running> = Vec::new();
    let mut done: BTreeSet<u32> = BTreeSet::new();
    let mut copied: BTreeSet<u32> = BTreeSet::new();
    let mut per_node = vec![0u32; n];
    let mut last_end = vec![0.0f64; n];
    let mut copies = 0;
    let mut now = 0.0;
    let total = m.lots.len();
    while done.len() < total {
        // what the coordinator sees of each run: its end from progress once judged, else
        // its bid, at least as long again as it has taken so far
        for r in runs.iter_mut() {
            let judge = if m.nodes[r.node].remote {
                JUDGE_AFTER_S.max(HEARTBEAT_S)
            } else {
                JUDGE_AFTER_S
            };
            let seen = if now - r.start >= judge {
                r.end
            } else {
                r.est.max(now + (now - r.start))
            };
            let b = &mut bidders[r.node];
            if let Some(e) = b.running.iter_mut().find(|e| **e == r.est) {
                *e = seen;
                r.est = seen;
            }
        }
        for a in auction.round(now, &mut bidders) {
            let node = &m.nodes[a.bidder];
            runs.push(Running {
                shard: a.shard,
                node: a.bidder,
                start: now,
                end: now + m.per_run_s + work_of(a.shard) / node.speed,
                est: a.est_finish,
            });
        }
        if m.copies && auction.pending() == 0 {
            let candidates: Vec<InFlight> = runs
                .iter()
                .filter(|r| !copied.contains(&r.shard))
                .filter(|r| runs.iter().filter(|o| o.shard == r.shard).count() == 1)
                .filter(|r| now - r.start >= JUDGE_AFTER_S || bidders[r.node].seen())
                .map(|r| InFlight {
                    shard: r.shard,
                    bidder: r.node,
                    finish: r.est,
                })
                .collect();
            let lots = &m.lots;
            if let Some(c) = tail::pick_copy(now, &candidates, &bidders, |s| {
                lots.iter().find(|l| l.shard == s)
            }) {
                copied.insert(c.shard);
                copies += 1;
                bidders[c.bidder].running.push(c.est_finish);
                runs.push(Running {
                    shard: c.shard,
                    node: c.bidder,
                    start: now,
                    end: now + m.per_run_s + work_of(c.shard) / m.nodes[c.bidder].speed,
                    est: c.est_finish,
                });
            }
        }
        // the next event: a run's end, or the tick when copies may start
        let Some(next_end) = runs.iter().map(|r| r.end).reduce(f64::min) else {
            // nothing runs and lots wait: no node takes them (every node's speed is 0)
            break;
        };
        let tick = now + TICK_S;
        if m.copies && auction.pending() == 0 && tick < next_end {
            now = tick;
            continue;
        }
        now = next_end;
        let ended: Vec<usize> = (0..runs.len()).filter(|&i| runs[i].end <= now).collect();
        for &i in ended.iter().rev() {
            let r = runs.swap_remove(i);
            free(&mut bidders[r.node], r.est);
            if done.insert(r.shard) {
                bidders[r.node].observe(work_of(r.shard), r.end - r.start);
                per_node[r.node] += 1;
                last_end[r.node] = last_end[r.node].max(r.end);
                // the other run of the shard is given up
                while let Some(j) = runs.iter().position(|o| o.shard == r.shard) {
                    let o = runs.swap_remove(j);
                    free(&mut bidders[o.node], o.est);
                    last_end[o.node] = last_end[o.node].max(now);
                }
            }
        }
    }
    let capacity: f64 = m.nodes.iter().map(|x| x.speed * x.slots as f64).sum();
    let fastest = m.nodes.iter().map(|x| x.speed).fold(0.0, f64::max);
    let all_work: f64 = m.lots.iter().map(|l| l.work).sum();
    let longest = m.lots.iter().map(|l| l.work).fold(0.0, f64::max) / fastest.max(1e-12);
    Outcome {
        makespan: now + m.serial_s,
        per_node,
        tail_idle: last_end.iter().map(|&e| (now - e).max(0.0)).collect(),
        copies,
        longest,
        lower_bound: all_work / capacity.max(1e-12) + m.serial_s,
    }
}

fn free(b: &mut Bidder, est: f64) {
    if let Some(k) = b.running.iter().position(|&e| e == est) {
        b.running.swap_remove(k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mix(speeds: &[f64], believed: &[f64], shards: u32, copies: bool) -> Model {
        Model {
            nodes: speeds
                .iter()
                .zip(believed)
                .enumerate()
                .map(|(i, (&speed, &believed))| Node {
                    speed,
                    believed,
                    slots: 1,
                    remote: i > 0,
                })
                .collect(),
            lots: (0..shards)
                .map(|shard| Lot::of_work(shard, 120.0))
                .collect(),
            per_run_s: 0.0,
            serial_s: 0.0,
            copies,
        }
    }

    #[test]
    fn a_box_at_half_speed_believed_equal_gets_a_third_of_the_shards_after_its_first() {
        // 15 shards of 120 frames, 300 frames/s against 150: the balanced split is 10/5
        let o = simulate(&mix(&[300.0, 150.0], &[300.0, 300.0], 15, true));
        assert_eq!(o.per_node, vec![10, 5], "{o:?}");
        assert!(o.makespan <= 1.05 * o.lower_bound, "{o:?}");
    }

    #[test]
    fn the_fast_box_copies_a_slow_box_s_last_shard_instead_of_waiting_for_it() {
        // a box at a tenth of the speed, believed equal: it is still on its first shard when
        // the fast box has done the rest; the fast box copies it and wins
        let o = simulate(&mix(&[300.0, 30.0], &[300.0, 300.0], 6, true));
        assert_eq!(o.per_node, vec![6, 0], "{o:?}");
        assert_eq!(o.copies, 1);
        let without = simulate(&mix(&[300.0, 30.0], &[300.0, 300.0], 6, false));
        assert_eq!(without.per_node, vec![5, 1]);
        assert!(
            o.makespan <= 0.6 * without.makespan,
            "{} s with copies, {} s without",
            o.makespan,
            without.makespan
        );
        // the fast box is never idle for longer than one of its shards while the slow one works
        assert!(o.tail_idle[0] <= 120.0 / 300.0 + TICK_S, "{o:?}");
    }
}
