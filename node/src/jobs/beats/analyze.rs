//! From features to a beat grid: tempo path, beats at the right metrical level, bars,
//! per-beat values and sections.

use rendermesh_protocol::{BeatGrid, BeatParams, ContentId};

use super::bars::{bar_clarity, beat_values, downbeats, sections};
use super::features::{Features, FPS};
use super::tempo::{novelty, Periodicity};
use super::track::{dp, every_other, evidence, is_subdivision, regularise, snap, strengths};

/// Audio quieter than this (peak, dBFS) is silence.
const SILENT_DB: f32 = -60.0;
/// Shortest audio a tempo is looked for in.
pub const MIN_SECONDS: f64 = 3.0;
/// Frames at the start and end quieter than this (dBFS, per hop) hold no beats.
const EDGE_DB: f32 = -55.0;
/// The onset envelope peaks this much before a sound starts (the flux rises as the sound
/// enters the window); beat times are moved later by it. Measured on clicks and kick drums.
const ONSET_LEAD_S: f64 = 0.012;
/// The slower level replaces the faster when its bars are this much clearer. (On the test
/// songs: 2.0× where the chart has the slower level, at most 1.0× elsewhere; metronomes
/// 0.5–0.6×.)
const SLOWER_CLEARER: f32 = 1.5;

/// Beats (at the fast level) it takes to compare how clearly two levels form bars: eight
/// bars of four.
const MIN_BARS_BEATS: usize = 32;

/// The beat grid of analysed audio.
pub fn grid(input: ContentId, f: &Features, params: &BeatParams) -> BeatGrid {
    let duration_s = f.duration_s();
    let empty = |note: String| BeatGrid {
        input,
        duration_s,
        tempo_bpm: 0.0,
        meter: 0,
        beats: Vec::new(),
        downbeats: Vec::new(),
        beat_loudness: Vec::new(),
        beat_onset: Vec::new(),
        sections: Vec::new(),
        note: Some(note),
    };
    let peak_db = 20.0 * f.peak.max(1e-9).log10();
    if peak_db < SILENT_DB {
        return empty(format!(
            "no beats: the audio is silent (peak {peak_db:.0} dBFS)"
        ));
    }
    if duration_s < MIN_SECONDS {
        return empty(format!(
            "no beats: {duration_s:.1} s is too short to find a tempo (at least {MIN_SECONDS} s)"
        ));
    }
    let o = novelty(&f.onset);
    if o.iter().all(|&x| x == 0.0) {
        return empty("no beats: the audio has no onsets (a steady tone or noise)".into());
    }
    let lo = (60.0 * FPS / params.max_bpm as f64).floor().max(2.0) as usize;
    let hi = (60.0 * FPS / params.min_bpm as f64).ceil() as usize;
    let per = Periodicity::of(&o, lo, hi);
    let mut periods = per.refine(&per.fastest_level(&per.path()));
    let mut frames = track(&o, &per, &periods);
    // the fastest level may be a subdivision of the beat: go up while it is
    for k in [2usize, 3, 2] {
        let slower: Vec<f32> = periods.iter().map(|p| p * k as f32).collect();
        if slower.iter().any(|&p| p > hi as f32 + 0.5) {
            continue;
        }
        if is_subdivision(&strengths(&o, &frames), k) {
            periods = per.refine(&slower);
            frames = track(&o, &per, &periods);
        }
    }
    let ev = evidence(&f.onset, &f.low);
    // a pulse whose every other beat groups into bars much more clearly is twice too fast
    let slower: Vec<f32> = periods.iter().map(|p| p * 2.0).collect();
    let mut sorted = slower.clone();
    sorted.sort_by(f32::total_cmp);
    if sorted[sorted.len() / 2] <= hi as f32 + 0.5 && frames.len() >= MIN_BARS_BEATS {
        let fast = regularise(&frames, &ev);
        let half = every_other(&fast, &ev);
        let c_fast = bar_clarity(&beat_values(f, &fast));
        let c_slow = bar_clarity(&beat_values(f, &half));
        tracing::debug!(c_fast, c_slow, "bar clarity of the fast and the slow level");
        if c_slow > SLOWER_CLEARER * c_fast {
            periods = per.refine(&slower);
            frames = track(&o, &per, &periods);
        }
    }
    let frames = trim_edges(f, frames);
    if frames.len() < 2 {
        return empty("no beats: no steady pulse was found".into());
    }
    let grid = regularise(&frames, &ev);
    let mut fine = snap(&f.onset, &grid);
    fine.dedup_by(|b, a| *b <= *a + 0.5);
    let values = beat_values(f, &fine);
    let (meter, bars) = downbeats(&values);
    let starts = sections(&values, &bars);
    let time = |x: f64| (x / FPS + ONSET_LEAD_S).max(0.0);
    let beats: Vec<f64> = fine.iter().map(|&x| time(x)).collect();
    BeatGrid {
        input,
        duration_s,
        tempo_bpm: tempo_of(&beats),
        meter,
        downbeats: bars.iter().map(|&i| beats[i]).collect(),
        sections: starts.iter().map(|&i| beats[i]).collect(),
        beat_loudness: values.loudness_db,
        beat_onset: values.onset,
        beats,
        note: None,
    }
}

fn track(o: &[f32], per: &Periodicity, periods: &[f32]) -> Vec<usize> {
    dp(o, &per.per_frame(periods, o.len()))
}

/// Drop beats in the silence before the music starts and after it ends.
fn trim_edges(f: &Features, frames: Vec<usize>) -> Vec<usize> {
    let floor = 10f32.powf(EDGE_DB / 10.0);
    let first = f.energy.iter().position(|&e| e > floor).unwrap_or(0);
    let last = f.energy.iter().rposition(|&e| e > floor).unwrap_or(0);
    frames
        .into_iter()
        .filter(|&b| b + 2 >= first && b <= last + 2)
        .collect()
}

/// The tempo that holds most of the file: the mean gap over the gaps within 8 % of the
/// median gap.
pub fn tempo_of(beats: &[f64]) -> f64 {
    let mut gaps: Vec<f64> = beats.windows(2).map(|w| w[1] - w[0]).collect();
    if gaps.is_empty() {
        return 0.0;
    }
    let mut sorted = gaps.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    gaps.retain(|g| (g / median - 1.0).abs() < 0.08);
    let mean = gaps.iter().sum::<f64>() / gaps.len().max(1) as f64;
    if mean > 0.0 {
        60.0 / mean
    } else {
        0.0
    }
}
