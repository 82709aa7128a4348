//! Tempo: how far apart beats are, frame by frame.
//!
//! The onset envelope is cut into overlapping windows; each window's autocorrelation scores
//! every beat period in the allowed range. A Viterbi path through those scores (moving costs
//! in proportion to the log of the period's change) follows tempo changes without jumping at
//! every wobble. The path is then moved to the fastest metrical level the signal supports:
//! half (or a third) of the period replaces the period while its own periodicity is nearly as
//! strong. Whether that fast level is the beat or a subdivision of it is decided later, from
//! where the onsets fall on the tracked beats ([`super::track::is_subdivision`]).

/// Window of the local autocorrelation, in frames (8 s).
pub const WIN: usize = 800;
/// Step between windows, in frames (1 s).
pub const STEP: usize = 100;
/// Cost of changing the period, per unit of |ln(new / old)|.
const CHANGE_COST: f32 = 6.0;
/// A faster level replaces the path when its periodicity keeps this share of the path's.
const FASTER_KEEPS: f32 = 0.7;

/// The onset envelope prepared for periodicity: the local mean (1 s) taken off, negatives
/// dropped, scaled to unit standard deviation.
pub fn novelty(onset: &[f32]) -> Vec<f32> {
    let n = onset.len();
    let half = 50usize;
    let mut prefix = vec![0.0f64; n + 1];
    for (i, &o) in onset.iter().enumerate() {
        prefix[i + 1] = prefix[i] + o as f64;
    }
    let mut out: Vec<f32> = (0..n)
        .map(|i| {
            let a = i.saturating_sub(half);
            let b = (i + half + 1).min(n);
            let mean = (prefix[b] - prefix[a]) / (b - a) as f64;
            (onset[i] as f64 - mean).max(0.0) as f32
        })
        .collect();
    let mean = out.iter().map(|&x| x as f64).sum::<f64>() / n.max(1) as f64;
    let var = out.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n.max(1) as f64;
    let sd = var.sqrt() as f32;
    if sd > 0.0 {
        out.iter_mut().for_each(|x| *x /= sd);
    }
    out
}

/// Normalised autocorrelation of each window at lags `lo..=hi`.
pub struct Periodicity {
    pub lo: usize,
    pub hi: usize,
    /// Window starts, in frames.
    pub starts: Vec<usize>,
    /// `rows[w][lag - lo]` for lags up to `2 · hi`, 0 to about 1.
    pub rows: Vec<Vec<f32>>,
}

impl Periodicity {
    pub fn of(o: &[f32], lo: usize, hi: usize) -> Self {
        let n = o.len();
        let win = WIN.min(n);
        let mut starts = Vec::new();
        let mut s = 0;
        loop {
            starts.push(s);
            if s + win >= n {
                break;
            }
            s = (s + STEP).min(n - win);
        }
        let rows = starts
            .iter()
            .map(|&s| {
                let seg = &o[s..s + win];
                let e0: f32 = seg.iter().map(|x| x * x).sum();
                (lo..=2 * hi)
                    .map(|lag| {
                        if lag >= win || e0 <= 0.0 {
                            return 0.0;
                        }
                        let r: f32 = seg[..win - lag]
                            .iter()
                            .zip(&seg[lag..])
                            .map(|(a, b)| a * b)
                            .sum();
                        // unbiased: a long lag has fewer products
                        r / e0 * win as f32 / (win - lag) as f32
                    })
                    .collect()
            })
            .collect();
        Self {
            lo,
            hi,
            starts,
            rows,
        }
    }

    /// Window `w`'s score near the (fractional) lag `x`: the best of the three nearest lags;
    /// 0 outside the range.
    pub fn near(&self, w: usize, x: f32) -> f32 {
        let c = x.round() as i64;
        (c - 1..=c + 1)
            .filter(|&l| l >= self.lo as i64 && l <= self.hi as i64)
            .map(|l| self.rows[w][l as usize - self.lo])
            .fold(0.0, f32::max)
    }

    /// How well lag `l` fits window `w` as a beat: its own periodicity and that of its double
    /// (a beat repeats at two beats too; a dotted rhythm's lag does not).
    fn salience(&self, w: usize, l: usize) -> f32 {
        self.rows[w][l - self.lo] + self.rows[w][2 * l - self.lo]
    }

    /// The lag of the best Viterbi path through the windows (integer lags).
    pub fn path(&self) -> Vec<usize> {
        let lags: Vec<usize> = (self.lo..=self.hi).collect();
        let m = lags.len();
        let logs: Vec<f32> = lags.iter().map(|&l| (l as f32).ln()).collect();
        let obs: Vec<Vec<f32>> = (0..self.rows.len())
            .map(|w| lags.iter().map(|&l| self.salience(w, l)).collect())
            .collect();
        let mut score = obs[0].clone();
        let mut back: Vec<Vec<u16>> = Vec::with_capacity(self.rows.len());
        for row in &obs[1..] {
            let mut next = vec![f32::NEG_INFINITY; m];
            let mut from = vec![0u16; m];
            for j in 0..m {
                let mut best = f32::NEG_INFINITY;
                let mut arg = 0;
                for i in 0..m {
                    let v = score[i] - CHANGE_COST * (logs[j] - logs[i]).abs();
                    if v > best {
                        best = v;
                        arg = i;
                    }
                }
                next[j] = best + row[j];
                from[j] = arg as u16;
            }
            back.push(from);
            score = next;
        }
        let mut j = (0..m)
            .max_by(|&a, &b| score[a].total_cmp(&score[b]))
            .unwrap_or(0);
        let mut path = vec![lags[j]; self.rows.len()];
        for (w, from) in back.iter().enumerate().rev() {
            j = from[j] as usize;
            path[w] = lags[j];
        }
        path
    }

    /// Move `path` to the fastest level whose periodicity keeps [`FASTER_KEEPS`] of the
    /// path's, as fractional periods. Decided per stretch of steady tempo, so a song whose
    /// tempo changes keeps one level within each part.
    pub fn fastest_level(&self, path: &[usize]) -> Vec<f32> {
        let mut p: Vec<f32> = path.iter().map(|&l| l as f32).collect();
        let mut start = 0;
        while start < p.len() {
            let mut end = start + 1;
            while end < p.len() && (p[end] / p[end - 1]).ln().abs() < 0.1 {
                end += 1;
            }
            loop {
                let part = start..end;
                let here: f32 = part.clone().map(|w| self.near(w, p[w])).sum();
                let faster = [2.0f32, 3.0].into_iter().find(|d| {
                    let fits = part.clone().all(|w| p[w] / d >= self.lo as f32 - 0.5);
                    let there: f32 = part.clone().map(|w| self.near(w, p[w] / d)).sum();
                    tracing::trace!(
                        start,
                        end,
                        lag = p[start],
                        d,
                        ratio = there / here,
                        "faster level"
                    );
                    fits && here > 0.0 && there >= FASTER_KEEPS * here
                });
                match faster {
                    Some(d) => p[part].iter_mut().for_each(|x| *x /= d),
                    None => break,
                }
            }
            start = end;
        }
        p
    }

    /// Refine each window's period to the autocorrelation peak near it (parabolic fit).
    pub fn refine(&self, periods: &[f32]) -> Vec<f32> {
        periods
            .iter()
            .enumerate()
            .map(|(w, &x)| {
                let row = &self.rows[w];
                let at = |l: i64| -> Option<f32> {
                    (l >= self.lo as i64 && l <= self.hi as i64).then(|| row[l as usize - self.lo])
                };
                let c = x.round() as i64;
                let Some(best) = (c - 1..=c + 1)
                    .filter_map(|l| at(l).map(|v| (l, v)))
                    .max_by(|a, b| a.1.total_cmp(&b.1))
                else {
                    return x;
                };
                let (l, v) = best;
                match (at(l - 1), at(l + 1)) {
                    (Some(a), Some(b)) if 2.0 * v - a - b > 1e-6 => {
                        l as f32 + (0.5 * (a - b) / (a - 2.0 * v + b)).clamp(-0.5, 0.5)
                    }
                    _ => l as f32,
                }
            })
            .collect()
    }

    /// One period per frame of `frames`, interpolated between window centres.
    pub fn per_frame(&self, periods: &[f32], frames: usize) -> Vec<f32> {
        let win = WIN.min(frames) as f32;
        let centres: Vec<f32> = self.starts.iter().map(|&s| s as f32 + win / 2.0).collect();
        (0..frames)
            .map(|t| {
                let t = t as f32;
                match centres.iter().position(|&c| c > t) {
                    Some(0) => periods[0],
                    None => *periods.last().unwrap_or(&1.0),
                    Some(i) => {
                        let (c0, c1) = (centres[i - 1], centres[i]);
                        let a = (t - c0) / (c1 - c0).max(1e-6);
                        periods[i - 1] * (1.0 - a) + periods[i] * a
                    }
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Onsets as the front end gives them: a peak spread over three frames.
    fn pulses(n: usize, period: f32, offset: f32) -> Vec<f32> {
        let mut o = vec![0.0; n];
        let mut t = offset;
        while (t as usize) < n {
            let c = t.round() as usize;
            for (i, v) in [(c.wrapping_sub(1), 0.5), (c, 1.0), (c + 1, 0.5)] {
                if i < n {
                    o[i] += v;
                }
            }
            t += period;
        }
        o
    }

    #[test]
    fn a_pulse_train_gives_its_period_at_the_fastest_level() {
        // 190 BPM = 31.58 frames: its multiples are just as periodic
        let o = novelty(&pulses(3000, 6000.0 / 190.0, 10.0));
        let p = Periodicity::of(&o, 25, 120);
        let path = p.path();
        let fast = p.refine(&p.fastest_level(&path));
        for x in fast {
            assert!((x - 31.58).abs() < 0.5, "period {x}");
        }
    }

    #[test]
    fn the_path_follows_a_tempo_step() {
        let mut o = pulses(3000, 60.0, 0.0);
        o.extend(pulses(3000, 6000.0 / 140.0, 0.0));
        let o = novelty(&o);
        let p = Periodicity::of(&o, 25, 120);
        let per = p.per_frame(&p.refine(&p.fastest_level(&p.path())), o.len());
        assert!((per[1000] - 60.0).abs() < 1.0, "{}", per[1000]);
        assert!((per[5000] - 42.86).abs() < 1.0, "{}", per[5000]);
    }
}
