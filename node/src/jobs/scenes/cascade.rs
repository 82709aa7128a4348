//! The `auto` detector's cascade: the classical scores of every frame settle what they can
//! (clean hard cuts, calm stretches), and the shot-boundary network decides the rest — the
//! blocks of [`NEURAL_BLOCK`] frames around weak or crowded spikes (a cut between alike shots,
//! a flash, a whip pan), around sustained change (a dissolve, a fade) and over busy
//! stretches, where a dissolve hides in the motion.
//!
//! Pure logic: which blocks go to the network ([`triage`]), and the cuts from the settled ones
//! and the network's predictions ([`decide`]).

use rendermesh_protocol::NEURAL_BLOCK;

use super::neural::{cuts as neural_cuts, Predictions};

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
/// A stretch whose median score is at least this is busy (moving camera, traffic, crowds):
/// a dissolve or a fade there raises the scores no more than the motion does, so the
/// network decides all of it. Calm footage stays well under it.
const BUSY: f32 = 5.0;
/// Frames each side of a point whose median tells whether it is busy: shorter than
/// [`CALM_SPAN`], so a busy shot next to a calm one is still seen as busy.
const BUSY_SPAN: usize = 25;
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
    /// The content score of every frame (0 where there is none), for [`decide`].
    pub scores: Vec<f32>,
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
    let medians = local_medians(&s, CALM_SPAN);
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
    for (k, m) in local_medians(&s, BUSY_SPAN).iter().enumerate() {
        if *m >= BUSY {
            let a = k * MEDIAN_STEP;
            look[a..(a + MEDIAN_STEP).min(n)]
                .iter_mut()
                .for_each(|l| *l = true);
        }
    }
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
        scores: s,
    }
}

/// The median score of the stretch of `span` frames each side of every [`MEDIAN_STEP`]th
/// frame (it changes slowly).
fn local_medians(s: &[f32], span: usize) -> Vec<f32> {
    let n = s.len();
    (0..n)
        .step_by(MEDIAN_STEP)
        .map(|c| {
            let mut w: Vec<f32> = s[c.saturating_sub(span)..(c + span).min(n)].to_vec();
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

/// The end of a fast move (a whip pan) looks like a cut to the network: a network cut that it
/// is not sure lies in a transition (`many` under [`FAST_MANY`] around it), where the frames
/// just before had already changed fast (mean score at least [`FAST_FLOOR`] over
/// [`FAST_SPAN`] frames) and its own score is under [`FAST_RATIO`] times theirs, is the move,
/// not a cut. (The start of one is left to the network: in the scores it looks like the
/// start of a dip to black, which is a transition.)
const FAST_MANY: f32 = 0.7;
const FAST_FLOOR: f32 = 12.0;
const FAST_SPAN: usize = 6;
const FAST_RATIO: f32 = 2.4;

/// The cuts of a stream: the settled ones, and the network's where it ran (`p`: its
/// predictions of every frame, 0 where it did not run) unless `scores` (the content score of
/// every frame; empty when there are none) show a fast move, at least `min_scene_len` frames
/// apart (an earlier cut wins).
pub fn decide(
    settled: &[u32],
    scores: &[f32],
    p: &Predictions,
    neural_threshold: f32,
    min_scene_len: u32,
) -> Vec<u32> {
    let mut all: Vec<u32> = settled.to_vec();
    for c in neural_cuts(p, neural_threshold, 1, settled) {
        if settled.iter().all(|s| s.abs_diff(c) > SAME_CUT)
            && !fast_move(scores, p, neural_threshold, c as usize)
        {
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

/// Whether the network's cut at `c` (the frame that starts a scene) ends a fast move.
fn fast_move(scores: &[f32], p: &Predictions, threshold: f32, c: usize) -> bool {
    if c >= scores.len() || c >= p.many.len() || c < 1 {
        return false;
    }
    // the run of frames above the threshold that the cut ends
    let mut a = c - 1;
    while a > 0 && p.single[a - 1] > threshold {
        a -= 1;
    }
    if a < FAST_SPAN {
        return false;
    }
    let moving = scores[a - FAST_SPAN..a].iter().sum::<f32>() / FAST_SPAN as f32;
    let spike = scores[a..=c].iter().fold(0.0f32, |m, x| m.max(*x));
    let many = p.many[a.saturating_sub(3)..(c + 3).min(p.many.len())]
        .iter()
        .fold(0.0f32, |m, x| m.max(*x));
    many < FAST_MANY && moving >= FAST_FLOOR && spike < FAST_RATIO * moving
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
    fn busy_footage_goes_to_the_network_and_a_clear_cut_in_it_is_settled() {
        // a calm shot, then one where every frame changes a lot (traffic, a crowd): a
        // dissolve there would score no higher than the motion
        let mut s = calm(400);
        for (i, x) in s.iter_mut().enumerate().skip(200) {
            *x = Some(6.0 + (i % 5) as f32);
        }
        let t = triage(&s, 27.0);
        assert!(t.settled.is_empty());
        assert_eq!(t.blocks, vec![3, 4, 5, 6, 7], "{:?}", t.blocks);
        // a noise pattern that changes more than the threshold every frame: all of it
        let noise: Vec<Option<f32>> = (0..300)
            .map(|i| (i > 0).then_some(34.0 + (i % 3) as f32))
            .collect();
        let t = triage(&noise, 27.0);
        assert!(t.settled.is_empty());
        assert_eq!(t.blocks, (0..6).collect::<Vec<_>>());
        // a cut three times the motion is settled; one at the threshold is the network's
        s[320] = Some(55.0);
        let t = triage(&s, 27.0);
        assert_eq!(t.settled, vec![320]);
        s[320] = Some(35.0);
        assert!(triage(&s, 27.0).settled.is_empty());
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
        let one = triage(&[None], 27.0);
        assert!(one.settled.is_empty() && one.blocks.is_empty());
    }

    #[test]
    fn the_network_decides_where_it_ran_and_settled_cuts_are_not_doubled() {
        let mut p = vec![0.0f32; 300];
        p[119] = 0.9; // the network agrees with the settled cut at 120
        p[200] = 0.8; // a dissolve's middle: the cut follows its run, at 202
        p[201] = 0.7;
        p[205] = 0.6; // too close for a 15-frame minimum
        let p = Predictions {
            many: vec![0.0; p.len()],
            luma: vec![None; p.len()],
            single: p,
        };
        assert_eq!(decide(&[120], &[], &p, 0.5, 15), vec![120, 202]);
        assert_eq!(decide(&[120], &[], &p, 0.95, 15), vec![120]);
        assert_eq!(decide(&[], &[], &p, 0.5, 1), vec![120, 202, 206]);
    }

    #[test]
    fn the_network_cut_at_the_end_of_a_whip_pan_is_dropped_and_a_cut_after_motion_is_kept() {
        // content scores: calm, then a whip pan over 100..106 (fast change every frame), and
        // a hard cut at 200 after a stretch of brisk motion
        let mut scores = vec![2.0f32; 300];
        scores[100..106].copy_from_slice(&[18.0, 24.0, 26.0, 25.0, 22.0, 20.0]);
        scores[106] = 36.0;
        scores[194..200].copy_from_slice(&[14.0, 15.0, 16.0, 15.0, 14.0, 16.0]);
        scores[200] = 45.0;
        let mut p = Predictions {
            single: vec![0.0; 300],
            many: vec![0.0; 300],
            luma: vec![Some(100); 300],
        };
        p.single[106] = 0.75; // the network's cut at 107, where the pan stops
        p.many[106] = 0.5;
        p.single[199] = 0.8; // the hard cut's shot ends at 199
        p.many[199] = 0.55;
        assert_eq!(decide(&[], &scores, &p, 0.5, 15), vec![200]);
        // without scores (the neural detector) both stand
        assert_eq!(decide(&[], &[], &p, 0.5, 15), vec![107, 200]);
        // nor is a cut the network holds inside a transition dropped
        p.many[105..108].copy_from_slice(&[0.7, 0.8, 0.7]);
        assert_eq!(decide(&[], &scores, &p, 0.5, 15), vec![107, 200]);
        // a cut the network is fairly sure of is no move: many at 0.7 keeps it
        p.many[105..108].copy_from_slice(&[0.5, 0.5, 0.5]);
        assert_eq!(decide(&[], &scores, &p, 0.5, 15), vec![200]);
        p.many[106] = 0.7;
        assert_eq!(decide(&[], &scores, &p, 0.5, 15), vec![107, 200]);
    }
}
