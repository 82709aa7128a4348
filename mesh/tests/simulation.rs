//! The auction at scale, simulated: 200 peers of mixed speed and slot counts (whose
//! calibration is off by up to ±15 % and gets corrected by observation), 10 000 shards of
//! mixed size, some needing more memory than small peers have. No ffmpeg, no sockets. With a
//! link, every shard's input must be fetched: ahead, when its peer was hinted the shard and
//! the fetch had finished by the award, or else before the shard can start. A peer's fetches
//! share its link, one after another.

use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use rendermesh_mesh::sched::auction::{Auction, Bidder, Lot};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A completion event, earliest first.
#[derive(PartialEq)]
struct Done(f64, usize, u32, f64, f64);

impl Eq for Done {}
impl PartialOrd for Done {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Done {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        o.0.total_cmp(&self.0)
    }
}

struct Outcome {
    makespan: f64,
    lower_bound: f64,
    decide: Duration,
    per_peer: Vec<u32>,
    true_speed: Vec<f64>,
    /// Awards whose input had been fetched ahead by the time of the award.
    ahead: u32,
    /// Seconds slots spent waiting for input, in all.
    waited: f64,
}

/// A simulated mesh.
#[derive(Clone, Copy)]
struct Mesh {
    peers: usize,
    shards: u32,
    seed: u64,
    /// Bytes per second a peer fetches input at (0 = every input is local).
    link: f64,
    /// Slots of every peer (`None` = mixed: 1, 2, 4 or 8).
    slots: Option<u32>,
    /// Mean work of a shard (a peer of speed 1 takes this many seconds).
    work: f64,
    /// Input of every shard when there is a link.
    input_bytes: u64,
    /// Whether busy peers are hinted what to fetch ahead.
    hints: bool,
}

impl Mesh {
    fn new(peers: usize, shards: u32, seed: u64) -> Self {
        Self {
            peers,
            shards,
            seed,
            link: 0.0,
            slots: None,
            work: 100.0,
            input_bytes: 5_000_000,
            hints: true,
        }
    }
}

fn simulate(m: Mesh) -> Outcome {
    let Mesh {
        peers,
        shards,
        seed,
        link,
        ..
    } = m;
    let mut rng = Rng(seed);
    let speeds = [0.5, 1.0, 2.0, 4.0, 8.0];
    let mut bidders = Vec::new();
    let mut true_speed = Vec::new();
    for id in 0..peers {
        let believed = speeds[(rng.next() * 5.0) as usize % 5] * (0.8 + 0.4 * rng.next());
        let mixed = [1, 2, 4, 8][(rng.next() * 4.0) as usize % 4];
        let slots = m.slots.unwrap_or(mixed);
        let free_mem = if rng.next() < 0.25 {
            2u64 << 30
        } else {
            16u64 << 30
        };
        true_speed.push(believed * (0.85 + 0.3 * rng.next()));
        bidders.push(Bidder {
            free_mem,
            bytes_per_s: link,
            ..Bidder::new(id, slots, believed)
        });
    }
    let lots: Vec<Lot> = (0..shards)
        .map(|shard| Lot {
            shard,
            work: m.work * (0.5 + rng.next()),
            input_bytes: if link > 0.0 { m.input_bytes } else { 0 },
            min_mem: if rng.next() < 0.1 { 8 << 30 } else { 0 },
        })
        .collect();
    let work_of: Vec<f64> = lots.iter().map(|l| l.work).collect();
    let needs: Vec<u64> = lots.iter().map(|l| l.min_mem).collect();
    let total: f64 = work_of.iter().sum();
    let capacity: f64 = bidders
        .iter()
        .zip(&true_speed)
        .map(|(b, s)| s * b.slots as f64)
        .sum();
    let longest = work_of.iter().copied().fold(0.0, f64::max)
        / true_speed.iter().copied().fold(0.0, f64::max);
    let lower_bound = (total / capacity).max(longest);

    let mut auction = Auction::new(lots);
    let mut events = BinaryHeap::new();
    let mut done = vec![false; shards as usize];
    let mut per_peer = vec![0u32; peers];
    let mut decide = Duration::ZERO;
    let mut now = 0.0;
    let mut ahead = 0;
    let mut waited = 0.0;
    // when each peer's link is free again, and when each input fetched ahead is there
    let mut link_free = vec![0.0f64; peers];
    let mut ready: HashMap<(usize, u32), f64> = HashMap::new();
    let fetch_time = m.input_bytes as f64 / link.max(1.0);
    loop {
        let t = Instant::now();
        let awards = auction.round(now, &mut bidders);
        let hints = if m.hints {
            auction.hints(now, &mut bidders)
        } else {
            Vec::new()
        };
        decide += t.elapsed();
        for (peer, shard) in hints {
            link_free[peer] = link_free[peer].max(now) + fetch_time;
            ready.insert((peer, shard), link_free[peer]);
        }
        for a in awards {
            let b = &bidders[a.bidder];
            assert!(
                b.running.len() as u32 <= b.slots,
                "peer {} holds more awards than slots",
                b.id
            );
            assert!(
                b.free_mem >= needs[a.shard as usize],
                "shard {} went to a peer that should decline",
                a.shard
            );
            let wait = if link <= 0.0 {
                0.0
            } else if let Some(at) = ready.remove(&(a.bidder, a.shard)) {
                ahead += u32::from(at <= now);
                (at - now).max(0.0)
            } else {
                link_free[a.bidder] = link_free[a.bidder].max(now) + fetch_time;
                link_free[a.bidder] - now
            };
            waited += wait;
            let real = now + wait + work_of[a.shard as usize] / true_speed[a.bidder];
            events.push(Done(real, a.bidder, a.shard, a.est_finish, now));
        }
        let Some(Done(t, bidder, shard, est, started)) = events.pop() else {
            break;
        };
        now = t;
        let b = &mut bidders[bidder];
        if let Some(k) = b.running.iter().position(|&e| e == est) {
            b.running.swap_remove(k);
        }
        b.observe(work_of[shard as usize], t - started);
        assert!(!done[shard as usize], "shard {shard} ran twice");
        done[shard as usize] = true;
        per_peer[bidder] += 1;
    }
    assert_eq!(auction.pending(), 0);
    assert!(done.iter().all(|d| *d), "some shard never ran");
    Outcome {
        makespan: now,
        lower_bound,
        decide,
        per_peer,
        true_speed,
        ahead,
        waited,
    }
}

/// The goals on a run of 10 000 shards: makespan at most 1.1× the lower bound; the time per
/// shard to decide is printed (`what` names the run in the figures printed).
fn assert_goals(o: &Outcome, what: &str) {
    let ratio = o.makespan / o.lower_bound;
    let per_shard = o.decide / o.per_peer.iter().sum::<u32>();
    eprintln!(
        "{what}: makespan {:.1} s, lower bound {:.1} s, ratio {ratio:.3}; {} inputs fetched ahead, {:.1} slot-seconds spent waiting for input; decisions {:?} per shard",
        o.makespan, o.lower_bound, o.ahead, o.waited, per_shard
    );
    assert!(ratio <= 1.1, "makespan {ratio:.3}× the lower bound");
    // the goal (at most 1 ms) is a benchmark figure in docs/benchmarks.md, printed above;
    // this bound only catches a decision gone quadratic, on any machine in any build
    assert!(
        per_shard <= Duration::from_millis(25),
        "{per_shard:?} per shard"
    );
}

const SEED: u64 = 0x2545_f491_4f6c_dd1d;

#[test]
fn two_hundred_peers_ten_thousand_shards_near_the_lower_bound() {
    let o = simulate(Mesh::new(200, 10_000, SEED));
    assert_goals(&o, "inputs local");
    // faster boxes took more: the fastest 20 % of peers ran more shards per slot-equivalent
    let mut order: Vec<usize> = (0..200).collect();
    order.sort_by(|a, b| o.true_speed[*b].total_cmp(&o.true_speed[*a]));
    let fast: u32 = order[..40].iter().map(|&i| o.per_peer[i]).sum();
    let slow: u32 = order[160..].iter().map(|&i| o.per_peer[i]).sum();
    assert!(
        fast > 3 * slow,
        "fast peers {fast} shards, slow peers {slow}"
    );
}

#[test]
fn other_seeds_and_sizes_hold_too() {
    for (peers, shards, seed) in [(3, 60, 1u64), (20, 500, 7), (200, 2_000, 99)] {
        let o = simulate(Mesh::new(peers, shards, seed));
        let ratio = o.makespan / o.lower_bound;
        assert!(
            ratio <= 1.25,
            "{peers} peers, {shards} shards: {ratio:.3}× the lower bound"
        );
    }
}

#[test]
fn with_inputs_to_fetch_hints_cut_the_time_slots_wait_for_input() {
    // 5 MB inputs over 110 MB/s: a fetch is 0.045 s, 0.01-1 % of a shard
    let mesh = Mesh {
        link: 110e6,
        ..Mesh::new(200, 10_000, SEED)
    };
    let o = simulate(mesh);
    assert_goals(&o, "inputs over a link, hints included in the decisions");
    let without = simulate(Mesh {
        hints: false,
        ..mesh
    });
    assert_goals(&without, "inputs over a link, no hints");
    assert_eq!(without.ahead, 0);
    // without hints every award waits for a whole fetch, at least
    assert!(without.waited >= 10_000.0 * 5e6 / 110e6 - 1.0);
    assert!(
        o.ahead >= 3_000 && o.waited < 0.6 * without.waited,
        "{} inputs there ahead; {:.1} s waited against {:.1} s without hints",
        o.ahead,
        o.waited,
        without.waited
    );
}

#[test]
fn on_a_slow_link_hints_keep_the_slots_of_multi_slot_peers_busier() {
    // 4 slots a peer, 5 MB inputs over 25 MB/s (0.2 s a fetch), shards of 0.6-2 s on the
    // fastest peers
    let mesh = Mesh {
        link: 25e6,
        slots: Some(4),
        work: 10.0,
        ..Mesh::new(50, 4_000, SEED)
    };
    let o = simulate(mesh);
    assert_goals(&o, "4 slots a peer, inputs 0.2 s over the link");
    let without = simulate(Mesh {
        hints: false,
        ..mesh
    });
    // not held to the goals: without hints this mesh misses the 1.1× goal
    eprintln!(
        "the same, no hints: makespan {:.1} s, ratio {:.3}; {:.1} slot-seconds spent waiting for input",
        without.makespan,
        without.makespan / without.lower_bound,
        without.waited
    );
    assert!(
        o.ahead >= 800 && o.waited < 0.5 * without.waited,
        "{} inputs there ahead; {:.1} s waited against {:.1} s without hints",
        o.ahead,
        o.waited,
        without.waited
    );
    assert!(
        o.makespan < 0.97 * without.makespan,
        "makespan {:.1} s against {:.1} s without hints",
        o.makespan,
        without.makespan
    );
}

/// The benchmark's meshes of unequal boxes (`bench/unequal.sh`), each believed by its
/// calibration to be as fast as the first: 60 s at 30 fps in 4 s chunks shrinking to 2 s at
/// the end (12 × 120 frames, then 6 × 60), one slot each. The coordinator's rules must learn
/// the real speeds from the job's first runs and end within 5 % of perfect shares on two
/// nodes (10 % on three, where 18 shards cannot be split finer), and no full-speed node may
/// sit idle at the tail for longer than one of its shards (and a tick).
#[test]
fn unequal_boxes_believed_equal_end_near_perfect_shares() {
    use rendermesh_mesh::sched::sim::{simulate as run, Model, Node, TICK_S};
    let lots: Vec<Lot> = (0..18u32)
        .map(|shard| Lot::of_work(shard, if shard < 12 { 120.0 } else { 60.0 }))
        .collect();
    for shares in [
        vec![1.0, 1.0],
        vec![1.0, 0.5],
        vec![1.0, 0.25],
        vec![1.0, 0.5, 0.5],
        vec![1.0, 0.1],
    ] {
        let nodes: Vec<Node> = shares
            .iter()
            .enumerate()
            .map(|(i, &s)| Node {
                speed: 300.0 * s,
                believed: 300.0,
                slots: 1,
                remote: i > 0,
            })
            .collect();
        let o = run(&Model {
            nodes,
            lots: lots.clone(),
            per_run_s: 0.0,
            serial_s: 0.0,
            copies: true,
        });
        let ratio = o.makespan / o.lower_bound;
        eprintln!(
            "{shares:?}: makespan {:.2} s, perfect shares {:.2} s ({ratio:.3}×), split {:?}, tail idle {:?}, {} copies",
            o.makespan, o.lower_bound, o.per_node, o.tail_idle, o.copies
        );
        // two nodes: within 5 %; three, of 18 shards in all: within the simulation's 10 %
        let goal = if shares.len() == 2 { 1.05 } else { 1.1 };
        assert!(
            ratio <= goal,
            "{shares:?}: {ratio:.3}× perfect shares: {o:?}"
        );
        for (i, &s) in shares.iter().enumerate() {
            if s == 1.0 {
                assert!(
                    o.tail_idle[i] <= 120.0 / 300.0 + TICK_S + 1e-9,
                    "{shares:?}: node {i} idle {:.2} s at the tail",
                    o.tail_idle[i]
                );
            }
        }
    }
}
