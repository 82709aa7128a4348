//! Beat grids: what the `beats` kind asks of a shard ([`BeatParams`]) and what it answers
//! ([`BeatGrid`]), which is also what the cache keeps per file.

use serde::{Deserialize, Serialize};

use crate::id::ContentId;

/// Tempo range a grid may take, in beats per minute.
pub const BPM_LIMITS: std::ops::RangeInclusive<f32> = 30.0..=300.0;
/// Longest audio a grid describes (48 hours); a longer claim from a peer is refused.
pub const MAX_GRID_SECONDS: f64 = 48.0 * 3600.0;

/// Parameters of a beat analysis; all of them are part of its cache key.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BeatParams {
    /// Slowest tempo considered.
    pub min_bpm: f32,
    /// Fastest tempo considered.
    pub max_bpm: f32,
}

impl Default for BeatParams {
    fn default() -> Self {
        Self {
            min_bpm: 50.0,
            max_bpm: 240.0,
        }
    }
}

impl BeatParams {
    /// The range, checked: both ends inside [`BPM_LIMITS`], and the fastest at least 1.5×
    /// the slowest (a narrower range cannot hold a tempo and its half or double).
    pub fn validate(&self) -> Result<(), String> {
        let (lo, hi) = (self.min_bpm, self.max_bpm);
        if !(BPM_LIMITS.contains(&lo) && BPM_LIMITS.contains(&hi)) {
            return Err(format!(
                "tempo range {lo}–{hi} BPM is outside {}–{} BPM",
                BPM_LIMITS.start(),
                BPM_LIMITS.end()
            ));
        }
        if hi < lo * 1.5 {
            return Err(format!(
                "tempo range {lo}–{hi} BPM is too narrow: the fastest must be at least 1.5× the slowest"
            ));
        }
        Ok(())
    }
}

/// The beat grid of one file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BeatGrid {
    pub input: ContentId,
    /// Length of the audio analysed.
    pub duration_s: f64,
    /// The tempo that holds most of the file (0 when there are no beats).
    pub tempo_bpm: f64,
    /// Beats per bar (3 or 4; 0 when there are no beats).
    pub meter: u8,
    /// Beat times in seconds, ascending.
    pub beats: Vec<f64>,
    /// Bar starts: a subset of `beats`.
    pub downbeats: Vec<f64>,
    /// Loudness of each beat's span, dBFS.
    pub beat_loudness: Vec<f32>,
    /// Onset strength at each beat, 0 (none) to 1 (the file's strongest).
    pub beat_onset: Vec<f32>,
    /// Where sections start (energy or timbre changes), seconds, ascending; on downbeats.
    pub sections: Vec<f64>,
    /// Why the grid is empty or unsure, for a person to read.
    pub note: Option<String>,
}

impl BeatGrid {
    /// Is this a grid a node may accept from a peer? Counts agree, times are finite,
    /// ascending and inside the file, sizes stay within what the tempo limits allow.
    pub fn validate(&self) -> Result<(), String> {
        let d = self.duration_s;
        if !(d.is_finite() && (0.0..=MAX_GRID_SECONDS).contains(&d)) {
            return Err(format!("duration {d} s"));
        }
        let max_beats = (d * *BPM_LIMITS.end() as f64 / 60.0).ceil() as usize + 2;
        let n = self.beats.len();
        if n > max_beats {
            return Err(format!("{n} beats in {d:.1} s"));
        }
        if self.beat_loudness.len() != n || self.beat_onset.len() != n {
            return Err("per-beat values do not match the beats".into());
        }
        let times_ok = |v: &[f64]| {
            v.iter()
                .all(|t| t.is_finite() && *t >= 0.0 && *t <= d + 1.0)
                && v.windows(2).all(|w| w[0] < w[1])
        };
        if !times_ok(&self.beats) || !times_ok(&self.downbeats) || !times_ok(&self.sections) {
            return Err("times that are not finite, ascending and inside the file".into());
        }
        if self.downbeats.len() > n || self.sections.len() > n + 1 {
            return Err("more downbeats or sections than beats".into());
        }
        if !(self.tempo_bpm.is_finite() && (0.0..=1000.0).contains(&self.tempo_bpm)) {
            return Err(format!("tempo {}", self.tempo_bpm));
        }
        if self.meter > 16 {
            return Err(format!("meter {}", self.meter));
        }
        if self.note.as_ref().is_some_and(|n| n.len() > 1024) {
            return Err("a note over 1 KiB".into());
        }
        let finite = |v: &[f32]| v.iter().all(|x| x.is_finite());
        if !finite(&self.beat_loudness) || !finite(&self.beat_onset) {
            return Err("per-beat values that are not finite".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> BeatGrid {
        BeatGrid {
            input: ContentId::of(b"song"),
            duration_s: 3.0,
            tempo_bpm: 120.0,
            meter: 4,
            beats: vec![0.5, 1.0, 1.5, 2.0],
            downbeats: vec![0.5],
            beat_loudness: vec![-10.0; 4],
            beat_onset: vec![1.0; 4],
            sections: vec![0.5],
            note: None,
        }
    }

    #[test]
    fn a_sound_grid_passes_and_absurd_ones_are_refused() {
        grid().validate().unwrap();
        let mut g = grid();
        g.beats = (0..100_000).map(|i| i as f64 * 1e-5).collect();
        assert!(g.validate().is_err());
        let mut g = grid();
        g.beats[2] = f64::NAN;
        assert!(g.validate().is_err());
        let mut g = grid();
        g.beats.swap(0, 1);
        assert!(g.validate().is_err());
        let mut g = grid();
        g.beat_onset.pop();
        assert!(g.validate().is_err());
        let mut g = grid();
        g.duration_s = 1e12;
        assert!(g.validate().is_err());
        let mut g = grid();
        g.tempo_bpm = f64::INFINITY;
        assert!(g.validate().is_err());
    }

    #[test]
    fn tempo_ranges_are_checked() {
        BeatParams::default().validate().unwrap();
        for (lo, hi) in [
            (10.0, 200.0),
            (60.0, 400.0),
            (100.0, 120.0),
            (f32::NAN, 200.0),
        ] {
            let p = BeatParams {
                min_bpm: lo,
                max_bpm: hi,
            };
            assert!(p.validate().is_err(), "{lo}–{hi}");
        }
    }
}
