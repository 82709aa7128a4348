//! Beat placement: dynamic programming over the onset envelope with a local period.
//!
//! Every frame's score is its onset strength plus the best score of a frame about one period
//! earlier, less a penalty that grows with the squared log of how far the gap strays from the
//! period. The best chain ending in the last period is traced back. Beats are then moved onto
//! the onset peak within a few frames (with a parabolic fit for times between frames).

/// How strictly gaps keep to the period (higher: stricter).
const TIGHTNESS: f32 = 100.0;
/// A beat moves onto an onset peak this many frames away at most.
const SNAP: usize = 3;
/// Below this share of the on-beat strength, the other beats are a subdivision.
const SUBDIVISION_BELOW: f32 = 0.45;

/// Beat frames of `o` (the novelty envelope) with `period[t]` frames between beats at `t`.
pub fn dp(o: &[f32], period: &[f32]) -> Vec<usize> {
    let n = o.len();
    if n == 0 {
        return Vec::new();
    }
    let mut score = vec![0.0f32; n];
    let mut back = vec![usize::MAX; n];
    for t in 0..n {
        let p = period[t].max(1.0);
        let lo = t as i64 - (2.0 * p).round() as i64;
        let hi = t as i64 - (p / 2.0).round() as i64;
        let mut best = 0.0f32;
        let mut arg = usize::MAX;
        if hi >= 0 {
            for q in lo.max(0)..=hi {
                let q = q as usize;
                let gap = (t - q) as f32 / p;
                let v = score[q] - TIGHTNESS * gap.ln().powi(2);
                if v > best {
                    best = v;
                    arg = q;
                }
            }
        }
        score[t] = o[t] + best;
        back[t] = arg;
    }
    let last_p = period[n - 1].max(1.0).round() as usize;
    let from = n.saturating_sub(last_p);
    let mut t = (from..n)
        .max_by(|&a, &b| score[a].total_cmp(&score[b]))
        .unwrap_or(n - 1);
    let mut beats = vec![t];
    while back[t] != usize::MAX {
        t = back[t];
        beats.push(t);
    }
    beats.reverse();
    beats
}

/// Each beat moved onto the strongest onset within [`SNAP`] frames (when there is one), as
/// fractional frames.
pub fn snap(onset: &[f32], beats: &[f64]) -> Vec<f64> {
    beats
        .iter()
        .map(|&t| {
            let b = t.round().max(0.0) as usize;
            let lo = b.saturating_sub(SNAP);
            let hi = (b + SNAP).min(onset.len().saturating_sub(1));
            let Some(m) = (lo..=hi).max_by(|&x, &y| onset[x].total_cmp(&onset[y])) else {
                return t;
            };
            if onset[m] <= 0.0 {
                return t;
            }
            if m == 0 || m + 1 >= onset.len() {
                return m as f64;
            }
            let (a, v, c) = (onset[m - 1] as f64, onset[m] as f64, onset[m + 1] as f64);
            let den = a - 2.0 * v + c;
            if den.abs() < 1e-9 {
                m as f64
            } else {
                m as f64 + (0.5 * (a - c) / den).clamp(-0.5, 0.5)
            }
        })
        .collect()
}

/// Every other beat, starting where the evidence is stronger.
pub fn every_other(beats: &[f64], ev: &[f32]) -> Vec<f64> {
    let at = |t: f64| ev.get(t.round().max(0.0) as usize).copied().unwrap_or(0.0);
    let sum = |start: usize| {
        beats
            .iter()
            .skip(start)
            .step_by(2)
            .map(|&t| at(t))
            .sum::<f32>()
    };
    let start = usize::from(sum(1) > sum(0));
    beats.iter().skip(start).step_by(2).copied().collect()
}

/// Strength of the onset at each beat: the peak within a frame of it.
pub fn strengths(o: &[f32], beats: &[usize]) -> Vec<f32> {
    beats
        .iter()
        .map(|&b| {
            let lo = b.saturating_sub(1);
            let hi = (b + 1).min(o.len().saturating_sub(1));
            o[lo..=hi].iter().copied().fold(0.0, f32::max)
        })
        .collect()
}

/// Are these beats a subdivision of the real beat by `k` (2 or 3)? True when one phase of
/// every `k` carries the onsets and the others are much weaker.
pub fn is_subdivision(strength: &[f32], k: usize) -> bool {
    if strength.len() < 4 * k {
        return false;
    }
    let mut sums = vec![0.0f32; k];
    let mut counts = vec![0usize; k];
    for (i, s) in strength.iter().enumerate() {
        sums[i % k] += s;
        counts[i % k] += 1;
    }
    let means: Vec<f32> = sums
        .iter()
        .zip(&counts)
        .map(|(s, &c)| s / c.max(1) as f32)
        .collect();
    let mut sorted = means.clone();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let (strong, others) = (sorted[0], sorted[1]);
    strong > 0.0 && others < SUBDIVISION_BELOW * strong
}

/// Where beats are likely, frame by frame: the full onset plus twice the low-band onset (kick
/// drums mark the beat even where snares and hi-hats play off it), each scaled by its spread.
/// A low band that carries almost nothing (under 2–5 % of the flux: clicks, a solo flute)
/// weighs nothing, so that its noise is not blown up.
pub fn evidence(onset: &[f32], low: &[f32]) -> Vec<f32> {
    let n = onset.len().max(1) as f32;
    let mean = |v: &[f32]| v.iter().sum::<f32>() / n;
    let sd = |v: &[f32]| {
        let m = mean(v);
        (v.iter().map(|x| (x - m).powi(2)).sum::<f32>() / n)
            .sqrt()
            .max(1e-9)
    };
    let share = mean(low) / mean(onset).max(1e-9);
    let weight = 2.0 * ((share - 0.02) / 0.03).clamp(0.0, 1.0);
    let (a, b) = (sd(onset), sd(low));
    onset
        .iter()
        .zip(low)
        .map(|(o, l)| o / a + weight * l / b)
        .collect()
}

/// Steady stretches get one even grid each. Music played to a click keeps its tempo: the
/// dynamic programme may still wander onto the off-beats wherever snares or guitars stress
/// them, so a stretch whose beats sit on an even grid (allowing half-beat slips) is replaced
/// by the grid, at the phase the whole stretch's `ev` (see [`evidence`]) prefers. Beats
/// outside steady stretches stay as they are. Fractional frames.
pub fn regularise(beats: &[usize], ev: &[f32]) -> Vec<f64> {
    let b: Vec<f64> = beats.iter().map(|&x| x as f64).collect();
    let mut out: Vec<f64> = Vec::with_capacity(b.len());
    for (s, e) in steady_stretches(&b) {
        let part = &b[s..e];
        let fitted = fit_grid(part, ev);
        let grid = fitted.as_deref().unwrap_or(part);
        for &t in grid {
            let keep = out.last().is_none_or(|&last| {
                let p = if grid.len() > 1 {
                    grid[1] - grid[0]
                } else {
                    1.0
                };
                t - last > 0.5 * p
            });
            if keep {
                out.push(t);
            }
        }
    }
    out
}

/// Beats may slip by half a beat (onto the off-beats) and stay on the grid.
const SLIPS: f64 = 2.0;

/// Ranges of beats whose local period (the median of 17 gaps) stays within 5 % of the
/// stretch's first.
fn steady_stretches(b: &[f64]) -> Vec<(usize, usize)> {
    let n = b.len();
    if n < 3 {
        return vec![(0, n)];
    }
    let gaps: Vec<f64> = b.windows(2).map(|w| w[1] - w[0]).collect();
    let local = |i: usize| {
        let lo = i.saturating_sub(8);
        let hi = (i + 9).min(gaps.len());
        let mut w = gaps[lo..hi].to_vec();
        w.sort_by(f64::total_cmp);
        w[w.len() / 2]
    };
    let mut out = Vec::new();
    let mut start = 0;
    let mut reference = local(0);
    for i in 1..gaps.len() {
        let p = local(i);
        if (p / reference - 1.0).abs() > 0.05 {
            out.push((start, i + 1));
            start = i + 1;
            reference = local(i.min(gaps.len() - 1));
        }
    }
    out.push((start, n));
    out.retain(|(s, e)| e > s);
    out
}

/// An even grid over `part` if its beats lie on one (half-beat slips allowed), at the phase
/// with the most evidence.
fn fit_grid(part: &[f64], ev: &[f32]) -> Option<Vec<f64>> {
    const MIN_BEATS: usize = 12;
    if part.len() < MIN_BEATS {
        return None;
    }
    let mut gaps: Vec<f64> = part.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort_by(f64::total_cmp);
    let median = gaps[gaps.len() / 2];
    // the period whose slip grid the beats agree on best (circular mean of their phases),
    // searched within 3 % of the median gap
    let coherence = |period: f64| -> (f64, f64) {
        let w = std::f64::consts::TAU * SLIPS / period;
        let (c, s) = part.iter().fold((0.0, 0.0), |a, &t| {
            (a.0 + (w * t).cos(), a.1 + (w * t).sin())
        });
        ((c * c + s * s).sqrt() / part.len() as f64, s.atan2(c))
    };
    let steps = 600;
    let (period, (_, angle)) = (0..=steps)
        .map(|i| median * (0.97 + 0.06 * i as f64 / steps as f64))
        .map(|p| (p, coherence(p)))
        .max_by(|a, b| a.1 .0.total_cmp(&b.1 .0))?;
    let step = period / SLIPS;
    let origin = angle.rem_euclid(std::f64::consts::TAU) / std::f64::consts::TAU * step;
    // steady: nine beats in ten within 2.5 frames of the slip grid
    let mut res: Vec<f64> = part
        .iter()
        .map(|&t| {
            let r = (t - origin).rem_euclid(step);
            r.min(step - r)
        })
        .collect();
    res.sort_by(f64::total_cmp);
    tracing::trace!(period, res90 = res[(res.len() * 9) / 10], "grid fit");
    if res[(res.len() * 9) / 10] > 2.5 {
        return None;
    }
    let (first, last) = (part[0], part[part.len() - 1]);
    let at = |x: f64| -> f32 {
        let c = x.round() as i64;
        (c - 1..=c + 1)
            .filter(|&i| i >= 0 && (i as usize) < ev.len())
            .map(|i| ev[i as usize])
            .fold(0.0, f32::max)
    };
    let grid_at = |phase: f64| -> Vec<f64> {
        let mut g = Vec::new();
        let mut t = first + phase;
        while t > first - period / 2.0 {
            t -= period;
        }
        t += period;
        while t < last + period / 2.0 {
            if t >= 0.0 {
                g.push(t);
            }
            t += period;
        }
        g
    };
    let base = (origin - first).rem_euclid(period);
    let steps = (period * 2.0).ceil() as usize;
    let best = (0..steps)
        .map(|i| base + i as f64 * 0.5)
        .map(|phase| {
            let g = grid_at(phase);
            let score = g.iter().map(|&t| at(t)).sum::<f32>() / g.len().max(1) as f32;
            (phase, score)
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    Some(grid_at(best.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dp_finds_every_pulse_and_snap_finds_between_frame_times() {
        let mut o = vec![0.0f32; 2000];
        let period = 6000.0 / 128.0; // 46.875 frames
        let mut want = Vec::new();
        let mut t = 20.3f64;
        while t < 1990.0 {
            let i = t.floor() as usize;
            let frac = (t - i as f64) as f32;
            // a peak centred between frames i and i+1
            o[i] += 1.0 - frac;
            o[i + 1] += frac;
            o[i.saturating_sub(1)] += 0.3 * (1.0 - frac);
            o[i + 2] += 0.3 * frac;
            want.push(t);
            t += period as f64;
        }
        let beats = dp(&o, &vec![period; o.len()]);
        assert_eq!(beats.len(), want.len(), "{beats:?}");
        let coarse: Vec<f64> = beats.iter().map(|&b| b as f64).collect();
        let fine = snap(&o, &coarse);
        for (g, w) in fine.iter().zip(&want) {
            assert!((g - w).abs() < 0.35, "beat at {g}, pulse at {w}");
        }
    }

    #[test]
    fn strong_and_weak_halves_are_a_subdivision_equal_ones_are_not() {
        let alt: Vec<f32> = (0..40)
            .map(|i| if i % 2 == 0 { 1.0 } else { 0.2 })
            .collect();
        assert!(is_subdivision(&alt, 2));
        let even = vec![1.0; 40];
        assert!(!is_subdivision(&even, 2));
        assert!(!is_subdivision(&even, 3));
        let waltz: Vec<f32> = (0..42)
            .map(|i| if i % 3 == 0 { 1.0 } else { 0.1 })
            .collect();
        assert!(is_subdivision(&waltz, 3));
    }
}
