//! The cut grid: where the montage cuts, on the song's beats.
//!
//! Every beat inside the window gets an energy from its loudness and onset strength (ranks
//! within the window, so a quiet song still has loud and quiet passages). Each section of the
//! song takes the mean energy of its beats; the pace of a stretch comes from its section's
//! energy and the energy of the beats just ahead: short shots in loud, dense passages, long
//! ones in quiet passages. Shot lengths are whole beats (1, 2, 4 or 8, the nearest to a target
//! duration at the song's tempo), a cut moves by a beat to land on a downbeat when one is that
//! close, and every section boundary is a cut, so the pace changes there. A seeded generator
//! varies the lengths; the same seed gives the same grid.

use rendermesh_protocol::BeatGrid;

/// How fast the cuts come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pace {
    Auto,
    Fast,
    Medium,
    Slow,
}

impl std::str::FromStr for Pace {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Pace::Auto),
            "fast" => Ok(Pace::Fast),
            "medium" => Ok(Pace::Medium),
            "slow" => Ok(Pace::Slow),
            other => Err(format!(
                "pace {other:?} is not one of auto, fast, medium, slow"
            )),
        }
    }
}

impl Pace {
    pub fn name(self) -> &'static str {
        match self {
            Pace::Auto => "auto",
            Pace::Fast => "fast",
            Pace::Medium => "medium",
            Pace::Slow => "slow",
        }
    }
}

/// Target shot durations (seconds) of the three levels: short, medium, long.
const TARGETS_S: [f64; 3] = [0.9, 2.0, 4.0];
/// Shortest shot, in seconds.
pub const MIN_SHOT_S: f64 = 0.4;
/// A cut moves to a downbeat at most this many beats away.
const DOWNBEAT_REACH: usize = 1;
/// Chance that a shot takes the neighbouring length instead of its level's.
const VARY: f64 = 0.3;

/// One shot's place on the timeline.
#[derive(Clone, Debug, PartialEq)]
pub struct Slot {
    pub out_start: u64,
    pub frames: u64,
    /// The cut into the shot is on a downbeat.
    pub on_downbeat: bool,
    /// Section of the song it plays in (0 = the first the window touches).
    pub section: u32,
    /// Energy of its section (0–1): the loudest section's shots get the best material.
    pub energy: f32,
    /// Beats inside the shot (output frame, is a downbeat): where it may be split when no
    /// scene is long enough for it.
    pub inner: Vec<(u64, bool)>,
}

impl Slot {
    /// Split at the inner beat nearest the middle (a downbeat when one is as near), or
    /// `None` when no beat is inside.
    pub fn split(&self) -> Option<(Slot, Slot)> {
        let mid = self.out_start + self.frames / 2;
        let &(at, down) = self
            .inner
            .iter()
            .min_by_key(|(f, d)| (f.abs_diff(mid) / 4, !d, f.abs_diff(mid)))?;
        let first = Slot {
            frames: at - self.out_start,
            inner: self.inner.iter().copied().filter(|b| b.0 < at).collect(),
            ..self.clone()
        };
        let second = Slot {
            out_start: at,
            frames: self.out_start + self.frames - at,
            on_downbeat: down,
            inner: self.inner.iter().copied().filter(|b| b.0 > at).collect(),
            ..self.clone()
        };
        Some((first, second))
    }
}

/// A small deterministic generator (SplitMix64).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Ranks of `v` scaled to 0–1 (ties share their mean rank; one value gives 0.5).
pub fn ranks(v: &[f32]) -> Vec<f32> {
    if v.len() < 2 {
        return vec![0.5; v.len()];
    }
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut out = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        for &k in &order[i..=j] {
            out[k] = (i + j) as f32 / 2.0 / (v.len() - 1) as f32;
        }
        i = j + 1;
    }
    out
}

/// Beats of one level's target duration at beat period `period_s`: 1, 2, 4 or 8.
fn beats_for(target_s: f64, period_s: f64) -> usize {
    let want = target_s / period_s.max(1e-3);
    [1usize, 2, 4, 8]
        .into_iter()
        .min_by(|a, b| {
            let da = (*a as f64 / want).ln().abs();
            let db = (*b as f64 / want).ln().abs();
            da.total_cmp(&db)
        })
        .unwrap_or(2)
}

/// The cut grid of `frames` output frames at `fps` over the song from `start_s`.
pub fn cut_grid(
    grid: &BeatGrid,
    start_s: f64,
    frames: u64,
    fps: f64,
    pace: Pace,
    seed: u64,
) -> Result<Vec<Slot>, String> {
    if frames == 0 || fps <= 0.0 {
        return Err("a montage of no frames".into());
    }
    let length_s = frames as f64 / fps;
    // beats inside the window, as times from the montage's start
    let idx: Vec<usize> = (0..grid.beats.len())
        .filter(|&i| {
            let t = grid.beats[i] - start_s;
            t >= MIN_SHOT_S && t <= length_s - MIN_SHOT_S
        })
        .collect();
    if idx.len() < 2 {
        return Err(format!(
            "the song has {} beats between {start_s:.1} s and {:.1} s; a montage cuts on beats",
            idx.len(),
            start_s + length_s
        ));
    }
    let times: Vec<f64> = idx.iter().map(|&i| grid.beats[i] - start_s).collect();
    let is_down: Vec<bool> = idx
        .iter()
        .map(|&i| {
            grid.downbeats
                .iter()
                .any(|d| (d - grid.beats[i]).abs() < 1e-3)
        })
        .collect();
    let loud: Vec<f32> = idx
        .iter()
        .map(|&i| grid.beat_loudness.get(i).copied().unwrap_or(-60.0))
        .collect();
    let onset: Vec<f32> = idx
        .iter()
        .map(|&i| grid.beat_onset.get(i).copied().unwrap_or(0.0))
        .collect();
    let (rl, ro) = (ranks(&loud), ranks(&onset));
    let energy: Vec<f32> = rl.iter().zip(&ro).map(|(l, o)| 0.6 * l + 0.4 * o).collect();
    // sections: index of each beat's section, and each section's mean energy
    let bounds: Vec<f64> = grid
        .sections
        .iter()
        .map(|s| s - start_s)
        .filter(|s| *s > 0.0 && *s < length_s)
        .collect();
    let section_of = |t: f64| bounds.iter().filter(|b| **b <= t + 1e-6).count();
    let n_sections = bounds.len() + 1;
    let mut sums = vec![(0.0f32, 0usize); n_sections];
    for (t, e) in times.iter().zip(&energy) {
        let s = section_of(*t);
        sums[s].0 += e;
        sums[s].1 += 1;
    }
    let sec_energy: Vec<f32> = sums
        .iter()
        .map(|(s, n)| if *n == 0 { 0.5 } else { s / *n as f32 })
        .collect();
    // a section boundary is a cut: the beat nearest to it
    let forced: Vec<usize> = bounds
        .iter()
        .filter_map(|b| {
            (0..times.len()).min_by(|&x, &y| (times[x] - b).abs().total_cmp(&(times[y] - b).abs()))
        })
        .collect();
    let period = {
        let mut gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
        gaps.sort_by(f64::total_cmp);
        gaps.get(gaps.len() / 2).copied().unwrap_or(0.5)
    };
    let lengths = TARGETS_S.map(|t| beats_for(t, period));
    let level = |at: usize| -> usize {
        let ahead = &energy[at..(at + 4).min(energy.len())];
        let local = ahead.iter().sum::<f32>() / ahead.len().max(1) as f32;
        let e = 0.5 * sec_energy[section_of(times[at])] + 0.5 * local;
        let auto = if e >= 0.62 {
            0
        } else if e >= 0.38 {
            1
        } else {
            2
        };
        match pace {
            Pace::Auto => auto,
            Pace::Fast => auto.saturating_sub(1),
            Pace::Medium => 1,
            Pace::Slow => (auto + 1).min(2),
        }
    };
    let mut rng = Rng::new(seed);
    let mut cuts: Vec<usize> = Vec::new(); // indices into `times`
                                           // the first shot: from the start to the first beat of its length
    let mut at: Option<usize> = None;
    loop {
        let from_t = at.map_or(0.0, |a| times[a]);
        let here = at.unwrap_or(0);
        let lv = level(here);
        let mut n = lengths[lv];
        if rng.unit() < VARY {
            let alt = if rng.unit() < 0.5 { n / 2 } else { n * 2 };
            n = alt.clamp(1, 8);
        }
        let mut next = match at {
            Some(a) => a + n,
            None => {
                // beats are counted from the start of the window
                let target = from_t + n as f64 * period;
                (0..times.len())
                    .find(|&k| times[k] >= target - period / 2.0)
                    .unwrap_or(times.len())
            }
        };
        // a section boundary on the way is a cut
        if let Some(&f) = forced
            .iter()
            .filter(|&&f| at.is_none_or(|a| f > a) && f <= next)
            .min()
        {
            next = f;
        } else if next < times.len() && !is_down[next] {
            // move to a downbeat: one beat away, or up to half the shot for longer shots
            let reach = DOWNBEAT_REACH.max(n / 2);
            let lo = next.saturating_sub(reach);
            let hi = (next + reach).min(times.len() - 1);
            if let Some(d) = (lo..=hi)
                .filter(|&k| is_down[k] && at.is_none_or(|a| k > a))
                .min_by_key(|&k| k.abs_diff(next))
            {
                next = d;
            }
        }
        if next >= times.len() {
            break;
        }
        if times[next] - from_t < MIN_SHOT_S {
            // too short: skip a beat
            at = Some(next);
            continue;
        }
        cuts.push(next);
        at = Some(next);
    }
    // the last shot must not be a flash
    while let Some(&last) = cuts.last() {
        if length_s - times[last] < MIN_SHOT_S {
            cuts.pop();
        } else {
            break;
        }
    }
    // every beat of the window in output frames, for splitting shots later
    let all: Vec<(u64, bool)> = times
        .iter()
        .zip(&is_down)
        .map(|(t, d)| ((t * fps).round() as u64, *d))
        .collect();
    let mut slots = Vec::with_capacity(cuts.len() + 1);
    let mut starts: Vec<(u64, bool, f64)> = vec![(0, false, 0.0)];
    for &c in &cuts {
        starts.push(((times[c] * fps).round() as u64, is_down[c], times[c]));
    }
    for (k, &(s, down, t)) in starts.iter().enumerate() {
        let end = starts.get(k + 1).map_or(frames, |n| n.0);
        if end <= s {
            continue;
        }
        let sec = section_of(t);
        slots.push(Slot {
            out_start: s,
            frames: end - s,
            on_downbeat: down,
            section: sec as u32,
            energy: sec_energy[sec],
            inner: all
                .iter()
                .copied()
                .filter(|(f, _)| {
                    *f >= s + (MIN_SHOT_S * fps) as u64 && *f + (MIN_SHOT_S * fps) as u64 <= end
                })
                .collect(),
        });
    }
    Ok(slots)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rendermesh_protocol::ContentId;

    /// A steady grid at `bpm` in 4/4 of `secs` seconds; loud from `loud_from` seconds on,
    /// with a section there.
    pub fn grid(bpm: f64, secs: f64, loud_from: f64) -> BeatGrid {
        let p = 60.0 / bpm;
        let beats: Vec<f64> = (0..)
            .map(|i| 0.25 + i as f64 * p)
            .take_while(|t| *t < secs)
            .collect();
        let downbeats = beats.iter().copied().step_by(4).collect();
        let loud = beats
            .iter()
            .map(|t| if *t >= loud_from { -6.0 } else { -30.0 })
            .collect();
        let onset = beats
            .iter()
            .map(|t| if *t >= loud_from { 0.9 } else { 0.2 })
            .collect();
        let sections = beats
            .iter()
            .copied()
            .step_by(4)
            .filter(|t| *t >= loud_from)
            .take(1)
            .collect();
        BeatGrid {
            input: ContentId::of(b"song"),
            duration_s: secs,
            tempo_bpm: bpm,
            meter: 4,
            beats,
            downbeats,
            beat_loudness: loud,
            beat_onset: onset,
            sections,
            note: None,
        }
    }

    fn check(g: &BeatGrid, start: f64, slots: &[Slot], frames: u64, fps: f64) {
        assert_eq!(slots.first().map(|s| s.out_start), Some(0));
        assert_eq!(slots.iter().map(|s| s.frames).sum::<u64>(), frames);
        for w in slots.windows(2) {
            assert_eq!(w[0].out_start + w[0].frames, w[1].out_start);
        }
        for s in &slots[1..] {
            let t = s.out_start as f64 / fps + start;
            let near = g
                .beats
                .iter()
                .map(|b| (b - t).abs())
                .fold(f64::MAX, f64::min);
            assert!(
                near <= 0.5 / fps + 1e-9,
                "cut at {t} is {near} s from a beat"
            );
            assert!(s.frames as f64 / fps >= MIN_SHOT_S - 1.0 / fps, "{s:?}");
        }
    }

    #[test]
    fn cuts_fall_on_beats_and_the_slots_fill_the_length() {
        let g = grid(120.0, 60.0, 30.0);
        for seed in 0..5 {
            let slots = cut_grid(&g, 3.0, 900, 30.0, Pace::Auto, seed).unwrap();
            check(&g, 3.0, &slots, 900, 30.0);
        }
    }

    #[test]
    fn loud_passages_cut_faster_and_the_section_boundary_is_a_cut() {
        let g = grid(120.0, 60.0, 24.25);
        let slots = cut_grid(&g, 0.0, 1500, 25.0, Pace::Auto, 7).unwrap();
        check(&g, 0.0, &slots, 1500, 25.0);
        let mean = |f: &dyn Fn(&Slot) -> bool| {
            let v: Vec<f64> = slots
                .iter()
                .filter(|s| f(s))
                .map(|s| s.frames as f64)
                .collect();
            v.iter().sum::<f64>() / v.len() as f64
        };
        let quiet = mean(&|s| s.section == 0);
        let loud = mean(&|s| s.section == 1);
        assert!(loud * 2.0 < quiet, "loud {loud} quiet {quiet}");
        assert!(slots
            .iter()
            .any(|s| (s.out_start as f64 / 25.0 - 24.25).abs() < 0.05));
        assert!(slots
            .iter()
            .filter(|s| s.section == 1)
            .all(|s| s.energy > 0.6));
    }

    #[test]
    fn most_cuts_land_on_downbeats_and_seeds_vary_the_grid() {
        let g = grid(100.0, 80.0, 1000.0);
        let a = cut_grid(&g, 0.0, 1800, 30.0, Pace::Medium, 1).unwrap();
        let b = cut_grid(&g, 0.0, 1800, 30.0, Pace::Medium, 2).unwrap();
        assert_eq!(a, cut_grid(&g, 0.0, 1800, 30.0, Pace::Medium, 1).unwrap());
        assert_ne!(a, b);
        let down = a[1..].iter().filter(|s| s.on_downbeat).count();
        assert!(down * 3 >= (a.len() - 1) * 2, "{down} of {}", a.len() - 1);
    }

    #[test]
    fn paces_order_the_cut_rate_and_a_song_without_beats_is_refused() {
        let g = grid(128.0, 90.0, 45.0);
        let n = |p| cut_grid(&g, 0.0, 2400, 30.0, p, 3).unwrap().len();
        assert!(
            n(Pace::Fast) > n(Pace::Medium),
            "{} {}",
            n(Pace::Fast),
            n(Pace::Medium)
        );
        assert!(
            n(Pace::Medium) > n(Pace::Slow),
            "{} {}",
            n(Pace::Medium),
            n(Pace::Slow)
        );
        let mut silent = g.clone();
        silent.beats.clear();
        silent.downbeats.clear();
        silent.beat_loudness.clear();
        silent.beat_onset.clear();
        let e = cut_grid(&silent, 0.0, 300, 30.0, Pace::Auto, 0).unwrap_err();
        assert!(e.contains("cuts on beats"), "{e}");
    }

    #[test]
    fn ranks_are_scaled_and_share_ties() {
        assert_eq!(ranks(&[3.0, 1.0, 2.0]), vec![1.0, 0.0, 0.5]);
        assert_eq!(ranks(&[1.0, 1.0, 2.0]), vec![0.25, 0.25, 1.0]);
        assert_eq!(ranks(&[5.0]), vec![0.5]);
    }
}
