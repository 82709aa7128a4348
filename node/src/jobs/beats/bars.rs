//! What the beat grid says beyond beats: bar starts and the meter, each beat's loudness and
//! onset, and where sections change.
//!
//! Bars: every beat gets a downbeat score — the low-band onset at the beat (kick drums and
//! bass notes land on bar starts) plus how much the harmony changes there (chords change on
//! bar starts) plus any accent — each scaled to unit spread. A Viterbi path through
//! "position in a bar of 3 or 4" states, where a position advances by one each beat and
//! leaving the rhythm costs [`BREAK_COST`], gives the meter and the bar starts.
//!
//! Sections: beat-synchronous timbre and loudness; at each bar start, the distance between the
//! mean of the [`SECTION_BEATS`] beats before and after. Peaks of that novelty standing
//! out from the song's spread are section starts, at least [`MIN_SECTION_BEATS`] apart.

use super::features::{Features, SLOW, TIMBRE};

/// Meters considered (beats per bar).
pub const METERS: [u8; 2] = [4, 3];
/// Cost of leaving the bar rhythm (a skipped or added beat, a change of meter).
const BREAK_COST: f32 = 6.0;
/// Weights of the downbeat cues (low-band onset, harmony, accent, onset) before their bar
/// salience.
const CUE_WEIGHTS: [f32; 4] = [1.0, 2.0, 1.0, 1.0];
/// A change of harmony this large (L1 distance of normalised chroma) counts 1.
const CHORD_CHANGE: f32 = 0.2;
/// An accent this loud counts 1.
const ACCENT_DB: f32 = 3.0;
/// Below this bar salience of the downbeat score in every meter, nothing marks bars.
const NO_BARS_BELOW: f32 = 0.05;
/// No cue of one beat counts more than this.
const CUE_BOUND: f32 = 5.0;
/// Beats on each side of a candidate section boundary.
const SECTION_BEATS: usize = 16;
/// Shortest section.
const MIN_SECTION_BEATS: usize = 16;
/// A section boundary's novelty stands this many spreads above the median.
const SECTION_SPREAD: f32 = 1.5;

/// Per-beat values for the grid and the downbeat score.
pub struct BeatValues {
    pub loudness_db: Vec<f32>,
    /// 0..1, the file's strongest beat onset is 1.
    pub onset: Vec<f32>,
    low: Vec<f32>,
    chroma: Vec<[f32; 12]>,
    timbre: Vec<[f32; TIMBRE]>,
}

/// Beat values over the spans between `beats` (frame times; the last span is one period).
pub fn beat_values(f: &Features, beats: &[f64]) -> BeatValues {
    let n = f.frames();
    let spans: Vec<(usize, usize)> = beats
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            let next = beats
                .get(i + 1)
                .copied()
                .unwrap_or_else(|| b + if i > 0 { b - beats[i - 1] } else { 50.0 });
            let a = (b.round() as usize).min(n.saturating_sub(1));
            let z = (next.round() as usize).clamp(a + 1, n.max(a + 1));
            (a, z)
        })
        .collect();
    let peak_at = |v: &[f32], b: f64| {
        let c = b.round() as usize;
        let lo = c.saturating_sub(2);
        let hi = (c + 2).min(v.len().saturating_sub(1));
        if lo > hi {
            return 0.0;
        }
        v[lo..=hi].iter().copied().fold(0.0f32, f32::max)
    };
    let onset: Vec<f32> = beats.iter().map(|&b| peak_at(&f.onset, b)).collect();
    let top = onset.iter().copied().fold(0.0f32, f32::max);
    let low = beats.iter().map(|&b| peak_at(&f.low, b)).collect();
    let loudness_db = spans
        .iter()
        .map(|&(a, z)| {
            let z = z.min(n);
            let e = f.energy[a.min(z)..z].iter().map(|&x| x as f64).sum::<f64>()
                / (z - a.min(z)).max(1) as f64;
            (10.0 * e.max(1e-12).log10()) as f32
        })
        .collect();
    let slow = |a: usize, z: usize| {
        let a = a / SLOW;
        let z = (z / SLOW).max(a + 1);
        a..z
    };
    let chroma = spans
        .iter()
        .map(|&(a, z)| mean_rows(&f.chroma, slow(a, z)))
        .collect();
    let timbre = spans
        .iter()
        .map(|&(a, z)| mean_rows(&f.timbre, slow(a, z)))
        .collect();
    BeatValues {
        loudness_db,
        onset: onset
            .iter()
            .map(|&o| if top > 0.0 { o / top } else { 0.0 })
            .collect(),
        low,
        chroma,
        timbre,
    }
}

fn mean_rows<const K: usize>(rows: &[[f32; K]], range: std::ops::Range<usize>) -> [f32; K] {
    let mut out = [0.0f32; K];
    let range = range.start.min(rows.len())..range.end.min(rows.len());
    let n = range.len().max(1) as f32;
    for r in &rows[range] {
        for (o, x) in out.iter_mut().zip(r) {
            *o += x;
        }
    }
    out.iter_mut().for_each(|o| *o /= n);
    out
}

/// Values scaled to zero mean and unit spread (all zero when they do not vary), after the
/// outer 2 % on each side are clipped: one silent beat at the end must not flatten the rest.
fn standardise(v: &[f32]) -> Vec<f32> {
    if v.is_empty() {
        return Vec::new();
    }
    let clipped = clip(v);
    let n = clipped.len() as f32;
    let mean = clipped.iter().sum::<f32>() / n;
    let sd = (clipped.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / n).sqrt();
    clipped
        .iter()
        .map(|x| if sd > 1e-9 { (x - mean) / sd } else { 0.0 })
        .collect()
}

/// `x` with its outer 2 % on each side clipped: one silent beat at the end must not outweigh
/// the rest.
fn clip(x: &[f32]) -> Vec<f32> {
    if x.is_empty() {
        return Vec::new();
    }
    let mut sorted = x.to_vec();
    sorted.sort_by(f32::total_cmp);
    let q = |p: f32| sorted[((sorted.len() - 1) as f32 * p).round() as usize];
    let (lo, hi) = (q(0.02), q(0.98));
    x.iter().map(|v| v.clamp(lo, hi)).collect()
}

/// A cue clipped to its outer 2 % and to ±[`CUE_BOUND`]: the silence after the last beat
/// must not outweigh a song's bars.
fn bounded(x: &[f32]) -> Vec<f32> {
    clip(x)
        .into_iter()
        .map(|v| v.clamp(-CUE_BOUND, CUE_BOUND))
        .collect()
}

fn distance<const K: usize>(a: &[f32; K], b: &[f32; K]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum()
}

/// How clearly `x` repeats in bars of `m` beats: the largest gap, over phases, between its
/// mean on one beat of each bar and its mean on the others.
fn bar_salience(x: &[f32], m: usize) -> f32 {
    if x.len() < 2 * m {
        return 0.0;
    }
    let mut best = 0.0f32;
    for phase in 0..m {
        let (mut on, mut non, mut off, mut noff) = (0.0f32, 0usize, 0.0f32, 0usize);
        for (i, v) in x.iter().enumerate() {
            if i % m == phase {
                on += v;
                non += 1;
            } else {
                off += v;
                noff += 1;
            }
        }
        best = best.max(on / non.max(1) as f32 - off / noff.max(1) as f32);
    }
    best
}

/// How much each beat looks like the start of a bar of `m` beats: low-band onset, change of
/// harmony between the bar before and the bar after, accent and onset strength, each
/// in units that keep its size, weighted by how clearly it repeats bar by bar (so that a
/// meter nothing repeats in scores near zero). Also returns the weights.
fn scored(v: &BeatValues, m: usize) -> (Vec<f32>, Vec<f32>) {
    let n = v.low.len();
    // a whole bar against the bar before: one accented beat per bar changes nothing
    let harmony: Vec<f32> = (0..n)
        .map(|i| {
            if i < m || i + m > n {
                return 0.0;
            }
            distance(
                &mean_rows(&v.chroma, i - m..i),
                &mean_rows(&v.chroma, i..i + m),
            )
        })
        .collect();
    let accent: Vec<f32> = (0..n)
        .map(|i| {
            let prev = if i > 0 {
                v.loudness_db[i - 1]
            } else {
                v.loudness_db[i]
            };
            v.loudness_db[i] - prev
        })
        .collect();
    // each cue in units that keep its size: a cue the music does not use stays near zero
    let relative = |x: &[f32]| {
        let mean = x.iter().sum::<f32>() / x.len().max(1) as f32;
        bounded(
            &x.iter()
                .map(|v| v / mean.max(1e-9) - 1.0)
                .collect::<Vec<_>>(),
        )
    };
    let cues = [
        relative(&v.low),
        bounded(&harmony.iter().map(|h| h / CHORD_CHANGE).collect::<Vec<_>>()),
        bounded(&accent.iter().map(|a| a / ACCENT_DB).collect::<Vec<_>>()),
        relative(&v.onset),
    ];
    // each cue weighs as clearly as it repeats bar by bar; chords change on bar starts far
    // more often than anything else happens there, so harmony counts twice
    let weights: Vec<f32> = cues
        .iter()
        .zip(CUE_WEIGHTS)
        .map(|(c, w)| w * bar_salience(c, m))
        .collect();

    tracing::trace!(m, ?weights, "downbeat cues");
    let score = (0..n)
        .map(|i| cues.iter().zip(&weights).map(|(c, w)| c[i] * w).sum())
        .collect();
    (score, weights)
}

/// How clearly these beats group into bars: the bar salience of the downbeat score, in the
/// units of its cues (the score over the sum of its weights), of the clearer meter. What
/// tells a tempo from its double when both look like a pulse.
pub fn bar_clarity(v: &BeatValues) -> f32 {
    METERS
        .iter()
        .map(|&m| {
            let (score, weights) = scored(v, m as usize);
            let total = weights.iter().sum::<f32>().max(1e-6);
            let mean: Vec<f32> = score.iter().map(|x| x / total).collect();
            bar_salience(&mean, m as usize)
        })
        .fold(0.0, f32::max)
}

/// Meter and the indices of bar-starting beats.
pub fn downbeats(v: &BeatValues) -> (u8, Vec<usize>) {
    let scores: Vec<Vec<f32>> = METERS.iter().map(|&m| scored(v, m as usize).0).collect();
    let n = v.low.len();
    if n == 0 {
        return (0, Vec::new());
    }
    // states: (meter, position); position 0 is a bar start
    let states: Vec<(u8, u8)> = METERS
        .iter()
        .flat_map(|&m| (0..m).map(move |p| (m, p)))
        .collect();
    let s = states.len();
    let emit = |i: usize, (m, p): (u8, u8)| {
        if p != 0 {
            return 0.0;
        }
        let k = METERS.iter().position(|&x| x == m).unwrap_or(0);
        scores[k][i]
    };
    let mut cur: Vec<f32> = states.iter().map(|&st| emit(0, st)).collect();
    let mut back = vec![vec![0u8; s]; n];
    for (i, back_i) in back.iter_mut().enumerate().skip(1) {
        let best_any = (0..s)
            .max_by(|&a, &b| cur[a].total_cmp(&cur[b]))
            .unwrap_or(0);
        let mut next = vec![0.0f32; s];
        for (j, &(m, p)) in states.iter().enumerate() {
            let prev_pos = (p + m - 1) % m;
            let k = states.iter().position(|&x| x == (m, prev_pos)).unwrap_or(0);
            let (from, val) = if cur[k] >= cur[best_any] - BREAK_COST {
                (k, cur[k])
            } else {
                (best_any, cur[best_any] - BREAK_COST)
            };
            next[j] = val + emit(i, (m, p));
            back_i[j] = from as u8;
        }
        cur = next;
    }
    let mut j = (0..s)
        .max_by(|&a, &b| cur[a].total_cmp(&cur[b]))
        .unwrap_or(0);
    let mut path = vec![0usize; n];
    for i in (0..n).rev() {
        path[i] = j;
        j = back[i][j] as usize;
    }
    let bars: Vec<usize> = (0..n).filter(|&i| states[path[i]].1 == 0).collect();
    // the meter most of the beats were counted in
    let mut count = [0usize; 2];
    for &k in &path {
        let m = states[k].0;
        count[METERS.iter().position(|&x| x == m).unwrap_or(0)] += 1;
    }
    let meter = if count[1] > count[0] {
        METERS[1]
    } else {
        METERS[0]
    };
    // nothing repeats bar by bar (identical clicks): common time from the first beat
    let clear = scores
        .iter()
        .zip(METERS)
        .any(|(s, m)| bar_salience(s, m as usize) >= NO_BARS_BELOW);
    if !clear {
        return (4, (0..n).step_by(4).collect());
    }
    (meter, bars)
}

/// Section starts (beat indices, the first bar start first) from beat-synchronous timbre
/// and loudness, on bar starts.
pub fn sections(v: &BeatValues, bars: &[usize]) -> Vec<usize> {
    let n = v.timbre.len();
    let Some(&first) = bars.first() else {
        return Vec::new();
    };
    // per-beat rows, each dimension standardised
    let mut dims: Vec<Vec<f32>> = (0..TIMBRE)
        .map(|d| standardise(&v.timbre.iter().map(|t| t[d]).collect::<Vec<_>>()))
        .collect();
    dims.push(standardise(&v.loudness_db));
    let k = SECTION_BEATS;
    let novelty: Vec<(usize, f32)> = bars
        .iter()
        .copied()
        .filter(|&b| b >= k && b + k <= n)
        .map(|b| {
            let d: f32 = dims
                .iter()
                .map(|col| {
                    let before = col[b - k..b].iter().sum::<f32>() / k as f32;
                    let after = col[b..b + k].iter().sum::<f32>() / k as f32;
                    (after - before).powi(2)
                })
                .sum();
            (b, d.sqrt())
        })
        .collect();
    let mut out = vec![first];
    if novelty.len() < 3 {
        return out;
    }
    let mut vals: Vec<f32> = novelty.iter().map(|x| x.1).collect();
    vals.sort_by(f32::total_cmp);
    let median = vals[vals.len() / 2];
    let mut dev: Vec<f32> = vals.iter().map(|x| (x - median).abs()).collect();
    dev.sort_by(f32::total_cmp);
    let spread = dev[dev.len() / 2].max(1e-3);
    // strongest first, keeping a minimum distance
    let mut cand: Vec<(usize, f32)> = novelty
        .iter()
        .copied()
        .filter(|&(_, d)| d > median + SECTION_SPREAD * spread && d > 1.0)
        .collect();
    cand.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (b, _) in cand {
        if out.iter().all(|&o| o.abs_diff(b) >= MIN_SECTION_BEATS) {
            out.push(b);
        }
    }
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_accent_every_fourth_beat_is_salient() {
        let x: Vec<f32> = (0..93)
            .map(|i| match i % 4 {
                0 => 3.7,
                1 => -3.7,
                _ => 0.0,
            })
            .collect();
        let s = bar_salience(&standardise(&x), 4);
        assert!(s > 1.5, "{s}");
    }
}
