//! The `auto` detector's cascade: the classical scores of every frame settle what they can
//! (clean hard cuts, calm stretches), and the shot-boundary network decides the rest — the
//! blocks of [`NEURAL_BLOCK`] frames around weak or crowded spikes (a cut between alike shots,
//! a flash, a whip pan) and around sustained change (a dissolve, a fade).
//!
//! Pure logic: which blocks go to the network ([`triage`]), and the cuts from the settled ones
//! and the network's predictions ([`decide`]).

use rendermesh_protocol::NEURAL_BLOCK;

use super::neural::cuts as neural_cuts;

/// A score at least this share of the threshold is a spike worth a look when it is
/// [`STANDOUT`] times the median of its stretch: busy footage (a crowd, foliage, noise, a
/// cellular pattern) changes that much every frame, and there the content detector's cuts
/// would be false ones.
const SPIKE: f32 = 0.5;
const STANDOUT: f32 = 2.0;
/// Local medians are taken every this many frames.
const MEDIAN_STEP: usize = 10;
/// A settled hard cut scores at least this many thresholds…
const CLEAR: f32 = 1.5;
/// …and every other score within [`QUIET_SPAN`] frames of it stays under this share of it.
const QUIET: f32 = 0.35;
const QUIET_SPAN: usize = 5;
/// Sustained change: the mean score of [`RISE_SPAN`] frames at least this many times the
/// stretch's median (over [`CALM_SPAN`] frames each side) and at least [`RISE_FLOOR`].
const RISE: f32 = 2.5;
const RISE_SPAN: usize = 8;
const CALM_SPAN: usize = 50;
const RISE_FLOOR: f32 = 3.0;
/// A candidate this close to a block's edge brings the neighbouring block too, so a
/// transition across the edge is seen whole.
const EDGE: u64 = 6;
/// A network cut this close to a settled cut is the same cut.
const SAME_CUT: u32 = 2;

/// What the classical scores settled, and the blocks the network decides.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Triage {
    /// Hard cuts the scores settle alone (the frame that starts a scene).
    pub settled: Vec<u32>,
    /// Blocks for the network, ascending.
    pub blocks: Vec<u64>,
}

impl Triage {
    /// Frames the network runs on, of `total`.
    pub fn frames(&self, total: u64) -> u64 {
        self.blocks
            .iter()
            .map(|b| (total.saturating_sub(b * NEURAL_BLOCK)).min(NEURAL_BLOCK))
            .sum()
    }

    /// The blocks as runs `(first, count)` of consecutive blocks.
    pub fn runs(&self) -> Vec<(u64, u32)> {
        let mut runs: Vec<(u64, u32)> = Vec::new();
        for &b in &self.blocks {
            match runs.last_mut() {
                Some((first, n)) if *first + u64::from(*n) == b => *n += 1,
                _ => runs.push((b, 1)),
            }
        }
        runs
    }
}

/// Sorts a stream's frames by what its content scores (`scores[i]`: frame `i` against frame
/// `i - 1`; `None` where there is none) can settle at `threshold`.
pub fn triage(scores: &[Option<f32>], threshold: f32) -> Triage {
    let n = scores.len();
    let s: Vec<f32> = scores.iter().map(|x| x.unwrap_or(0.0)).collect();
    let threshold = threshold.max(f32::EPSILON);
    let mut look = vec![false; n];
    let mut settled = Vec::new();
    let medians = local_medians(&s);
    let median = |i: usize| medians[i / MEDIAN_STEP];
    for i in 1..n {
        if s[i] < SPIKE * threshold || s[i] < STANDOUT * median(i) {
            continue;
        }
        let (a, b) = (i.saturating_sub(QUIET_SPAN), (i + QUIET_SPAN + 1).min(n));
        let quiet = (a..b).all(|j| j == i || s[j] < QUIET * s[i]);
        if s[i] >= CLEAR * threshold && quiet {
            settled.push(i as u32);
        } else {
            look[i] = true;
        }
    }
    // a settled cut is no sustained change: its frame counts as its neighbour
    let mut calmed = s.clone();
    for &c in &settled {
        calmed[c as usize] = s[c as usize - 1];
    }
    rises(&calmed, &medians, &mut look);
    let blocks_total = (n as u64).div_ceil(NEURAL_BLOCK);
    let mut blocks = vec![false; blocks_total as usize];
    for (i, _) in look.iter().enumerate().filter(|(_, l)| **l) {
        let i = i as u64;
        let b = i / NEURAL_BLOCK;
        blocks[b as usize] = true;
        if i % NEURAL_BLOCK < EDGE && b > 0 {
            blocks[b as usize - 1] = true;
        }
        if i % NEURAL_BLOCK >= NEURAL_BLOCK - EDGE && b + 1 < blocks_total {
            blocks[b as usize + 1] = true;
        }
    }
    Triage {
        settled,
        blocks: (0..blocks_total).filter(|b| blocks[*b as usize]).collect(),
    }
}

/// The median score of the stretch of [`CALM_SPAN`] frames each side of every
/// [`MEDIAN_STEP`]th frame (it changes slowly).
fn local_medians(s: &[f32]) -> Vec<f32> {
    let n = s.len();
    (0..n)
        .step_by(MEDIAN_STEP)
        .map(|c| {
            let mut w: Vec<f32> = s[c.saturating_sub(CALM_SPAN)..(c + CALM_SPAN).min(n)].to_vec();
            w.sort_by(f32::total_cmp);
            w.get(w.len() / 2).copied().unwrap_or(0.0)
        })
        .collect()
}

/// Marks the frames of sustained change: a run of [`RISE_SPAN`] scores whose mean stands out
/// from the median of its stretch.
fn rises(s: &[f32], medians: &[f32], look: &mut [bool]) {
    let n = s.len();
    if n < RISE_SPAN + 1 {
        return;
    }
    let step = MEDIAN_STEP;
    let mut sum: f32 = s[1..=RISE_SPAN].iter().sum();
    for end in RISE_SPAN + 1..=n {
        let start = end - RISE_SPAN;
        if end > RISE_SPAN + 1 {
            sum += s[end - 1] - s[start - 1];
        }
        let mean = sum / RISE_SPAN as f32;
        let median = medians[(start + RISE_SPAN / 2) / step];
        if mean >= RISE_FLOOR && mean >= RISE * median {
            look[start..end].iter_mut().for_each(|l| *l = true);
        }
    }
}

/// The cuts of a stream of `total` frames: the settled ones, and the network's where it ran
/// (`single`: its transition probability of every frame, 0 where it did not run), at least
/// `min_scene_len` frames apart (an earlier cut wins).
pub fn decide(
    settled: &[u32],
    single: &[f32],
    neural_threshold: f32,
    min_scene_len: u32,
) -> Vec<u32> {
    let mut all: Vec<u32> = settled.to_vec();
    for c in neural_cuts(single, neural_threshold, 1) {
        if settled.iter().all(|s| s.abs_diff(c) > SAME_CUT) {
            all.push(c);
        }
    }
    all.sort_unstable();
    let mut cuts = Vec::with_capacity(all.len());
    let mut last = 0u32;
    for c in all {
        if c > 0 && c - last >= min_scene_len.max(1) {
            cuts.push(c);
            last = c;
        }
    }
    cuts
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scores of `n` frames of a calm shot (a little motion), `None` for frame 0.
    fn calm(n: usize) -> Vec<Option<f32>> {
        (0..n)
            .map(|i| (i > 0).then_some(1.0 + (i % 3) as f32 * 0.3))
            .collect()
    }

    #[test]
    fn a_clean_hard_cut_is_settled_and_calm_footage_needs_no_network() {
        let mut s = calm(300);
        s[120] = Some(60.0);
        let t = triage(&s, 27.0);
        assert_eq!(t.settled, vec![120]);
        assert!(t.blocks.is_empty(), "{:?}", t.blocks);
        assert_eq!(t.frames(300), 0);
    }

    #[test]
    fn flashes_weak_cuts_and_fast_moves_go_to_the_network() {
        let mut s = calm(400);
        // a one-frame flash: a spike in and a spike out
        s[70] = Some(45.0);
        s[71] = Some(44.0);
        // a cut between alike shots
        s[230] = Some(20.0);
        // a whip pan: strong scores for several frames
        for x in &mut s[320..328] {
            *x = Some(35.0);
        }
        let t = triage(&s, 27.0);
        assert!(t.settled.is_empty(), "{:?}", t.settled);
        assert_eq!(t.blocks, vec![1, 4, 6]);
        assert_eq!(t.runs(), vec![(1, 1), (4, 1), (6, 1)]);
    }

    #[test]
    fn busy_footage_needs_no_network_but_a_cut_in_it_does() {
        // every frame changes a lot (foliage, a crowd), never as much as a cut
        let mut s: Vec<Option<f32>> = (0..300)
            .map(|i| (i > 0).then_some(15.0 + (i % 5) as f32))
            .collect();
        assert!(triage(&s, 27.0).blocks.is_empty());
        // nor a noise pattern that changes more than the threshold every frame
        let noise: Vec<Option<f32>> = (0..300)
            .map(|i| (i > 0).then_some(34.0 + (i % 3) as f32))
            .collect();
        assert_eq!(triage(&noise, 27.0), Triage::default());
        // a cut three times the motion is clear; one at the threshold is the network's
        s[160] = Some(55.0);
        let t = triage(&s, 27.0);
        assert_eq!((t.settled, t.blocks), (vec![160], vec![]));
        s[160] = Some(35.0);
        let t = triage(&s, 27.0);
        assert_eq!((t.settled, t.blocks), (vec![], vec![3]));
    }

    #[test]
    fn a_dissolve_goes_to_the_network_though_no_frame_scores_high() {
        let mut s = calm(300);
        // a 30-frame dissolve: every frame changes a little more than the shot's motion
        for x in &mut s[140..170] {
            *x = Some(4.0);
        }
        let t = triage(&s, 27.0);
        assert!(t.settled.is_empty());
        assert!(
            t.blocks.contains(&2) && t.blocks.contains(&3),
            "{:?}",
            t.blocks
        );
        assert!(
            !t.blocks.contains(&0) && !t.blocks.contains(&5),
            "{:?}",
            t.blocks
        );
        // busy footage that moves like that throughout is not a dissolve
        let busy: Vec<Option<f32>> = (0..300).map(|i| (i > 0).then_some(4.0)).collect();
        assert!(triage(&busy, 27.0).blocks.is_empty());
    }

    #[test]
    fn a_candidate_at_a_block_edge_brings_its_neighbour() {
        let mut s = calm(300);
        s[101] = Some(20.0);
        assert_eq!(triage(&s, 27.0).blocks, vec![1, 2]);
        s[101] = Some(1.0);
        s[148] = Some(20.0);
        assert_eq!(triage(&s, 27.0).blocks, vec![2, 3]);
        assert_eq!(triage(&[], 27.0), Triage::default());
        assert_eq!(triage(&[None], 27.0), Triage::default());
    }

    #[test]
    fn the_network_decides_where_it_ran_and_settled_cuts_are_not_doubled() {
        let mut p = vec![0.0f32; 300];
        p[119] = 0.9; // the network agrees with the settled cut at 120
        p[200] = 0.8; // a dissolve's middle: the cut follows its run, at 202
        p[201] = 0.7;
        p[205] = 0.6; // too close for a 15-frame minimum
        assert_eq!(decide(&[120], &p, 0.5, 15), vec![120, 202]);
        assert_eq!(decide(&[120], &p, 0.95, 15), vec![120]);
        assert_eq!(decide(&[], &p, 0.5, 1), vec![120, 202, 206]);
    }
}
