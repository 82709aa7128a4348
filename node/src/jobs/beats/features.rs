//! The front end of the beat tracker: mono samples in, per-frame features out, streamed.
//!
//! Frames are [`HOP`] samples apart at [`RATE`] Hz (100 a second); frame `n`'s window of
//! [`WINDOW`] samples is centred on sample `n·HOP`. Each frame gives:
//! - `onset`: spectral flux of log-compressed band magnitudes (positive changes only, against
//!   the louder of each band's neighbours in the frame before, which ignores vibrato);
//! - `low`: the same flux over the bands below [`LOW_HZ`] (kick drums, bass notes);
//! - `energy`: mean square of the hop's samples (for loudness).
//!
//! Every [`SLOW`] frames the mean chroma (12 pitch classes) and timbre (coarse log bands) of
//! those frames are kept: enough for bar and section analysis, a quarter of the memory.

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};

/// Sample rate the audio is decoded at.
pub const RATE: u32 = 24_000;
/// Samples between frames (10 ms).
pub const HOP: usize = 240;
/// Frames per second.
pub const FPS: f64 = RATE as f64 / HOP as f64;
/// Analysis window (42.7 ms).
pub const WINDOW: usize = 1024;
/// Frames per chroma/timbre row.
pub const SLOW: usize = 4;
/// Upper edge of the low band.
pub const LOW_HZ: f32 = 160.0;
/// Coarse timbre bands.
pub const TIMBRE: usize = 8;

/// Gain before the log: a full-scale sine's band reaches about ln(1 + 5000).
const COMPRESS: f32 = 10_000.0;
const BAND_LO_HZ: f32 = 30.0;
const BAND_HI_HZ: f32 = 11_000.0;
const BANDS_PER_OCTAVE: f32 = 6.0;
const CHROMA_LO_HZ: f32 = 110.0;
const CHROMA_HI_HZ: f32 = 4_000.0;

/// What the front end found in a whole file.
#[derive(Default)]
pub struct Features {
    pub onset: Vec<f32>,
    pub low: Vec<f32>,
    pub energy: Vec<f32>,
    /// One row per [`SLOW`] frames.
    pub chroma: Vec<[f32; 12]>,
    pub timbre: Vec<[f32; TIMBRE]>,
    /// Samples analysed.
    pub samples: u64,
    /// The loudest sample's magnitude.
    pub peak: f32,
}

impl Features {
    pub fn frames(&self) -> usize {
        self.onset.len()
    }

    pub fn duration_s(&self) -> f64 {
        self.samples as f64 / RATE as f64
    }
}

/// Turns a stream of samples into [`Features`].
pub struct FrontEnd {
    fft: Arc<dyn RealToComplex<f32>>,
    window: Vec<f32>,
    /// Samples not yet consumed by a frame (less than a window plus a block), after a half
    /// window of zeros so that frame 0 is centred on sample 0.
    buf: Vec<f32>,
    /// The windowed frame handed to the FFT.
    frame_in: Vec<f32>,
    spectrum: Vec<realfft::num_complex::Complex<f32>>,
    scratch: Vec<realfft::num_complex::Complex<f32>>,
    /// Band of each FFT bin (or none), and how many bands there are.
    band_of: Vec<Option<usize>>,
    bands: usize,
    low_bands: usize,
    chroma_of: Vec<Option<usize>>,
    timbre_of: Vec<usize>,
    /// Log band magnitudes of the frame before (silence before the first).
    prev: Vec<f32>,
    cur: Vec<f32>,
    slow_chroma: [f32; 12],
    slow_timbre: [f32; TIMBRE],
    slow_n: usize,
    out: Features,
}

impl Default for FrontEnd {
    fn default() -> Self {
        Self::new()
    }
}

impl FrontEnd {
    pub fn new() -> Self {
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(WINDOW);
        let window: Vec<f32> = (0..WINDOW)
            .map(|i| {
                let x = std::f32::consts::PI * 2.0 * i as f32 / WINDOW as f32;
                0.5 - 0.5 * x.cos()
            })
            .collect();
        let bins = WINDOW / 2 + 1;
        let hz = |k: usize| k as f32 * RATE as f32 / WINDOW as f32;
        // log-spaced bands; a band no bin falls into is skipped, so low bands are single bins
        let mut band_of = vec![None; bins];
        let mut bands = 0usize;
        let mut last_raw = usize::MAX;
        let mut low_bands = 0;
        for (k, slot) in band_of.iter_mut().enumerate() {
            let f = hz(k);
            if !(BAND_LO_HZ..BAND_HI_HZ).contains(&f) {
                continue;
            }
            let raw = ((f / BAND_LO_HZ).log2() * BANDS_PER_OCTAVE) as usize;
            if raw != last_raw {
                last_raw = raw;
                bands += 1;
                if f < LOW_HZ {
                    low_bands = bands;
                }
            }
            *slot = Some(bands - 1);
        }
        let chroma_of = (0..bins)
            .map(|k| {
                let f = hz(k);
                (CHROMA_LO_HZ..CHROMA_HI_HZ).contains(&f).then(|| {
                    let midi = 69.0 + 12.0 * (f / 440.0).log2();
                    (midi.round() as i64).rem_euclid(12) as usize
                })
            })
            .collect();
        let timbre_of = (0..bands)
            .map(|b| (b * TIMBRE / bands.max(1)).min(TIMBRE - 1))
            .collect();
        let scratch = fft.make_scratch_vec();
        let spectrum = fft.make_output_vec();
        Self {
            fft,
            window,
            buf: vec![0.0; WINDOW / 2],
            frame_in: vec![0.0; WINDOW],
            spectrum,
            scratch,
            band_of,
            bands,
            low_bands,
            chroma_of,
            timbre_of,
            prev: vec![0.0; bands],
            cur: vec![0.0; bands],
            slow_chroma: [0.0; 12],
            slow_timbre: [0.0; TIMBRE],
            slow_n: 0,
            out: Features::default(),
        }
    }

    /// Feed the next samples.
    pub fn push(&mut self, samples: &[f32]) {
        self.out.samples += samples.len() as u64;
        for s in samples {
            self.out.peak = self.out.peak.max(s.abs());
        }
        self.buf.extend_from_slice(samples);
        let mut start = 0;
        while self.buf.len() - start >= WINDOW {
            self.frame(start);
            start += HOP;
        }
        self.buf.drain(..start);
    }

    /// The features of everything fed, after the last frames (zero-padded at the end).
    pub fn finish(mut self) -> Features {
        // frames up to the last sample's centre
        let total = self.out.samples as usize;
        let want = total.div_ceil(HOP);
        self.buf.resize(self.buf.len() + WINDOW, 0.0);
        let mut start = 0;
        while self.out.onset.len() < want && self.buf.len() - start >= WINDOW {
            self.frame(start);
            start += HOP;
        }
        if self.slow_n > 0 {
            self.flush_slow();
        }
        self.out
    }

    fn frame(&mut self, start: usize) {
        let centre = start + WINDOW / 2;
        // energy of the hop around the window's centre
        let hop = &self.buf[centre - HOP / 2..centre + HOP / 2];
        let energy = hop.iter().map(|x| x * x).sum::<f32>() / HOP as f32;
        for (i, (d, s)) in self
            .frame_in
            .iter_mut()
            .zip(&self.buf[start..start + WINDOW])
            .enumerate()
        {
            *d = s * self.window[i];
        }
        if self
            .fft
            .process_with_scratch(&mut self.frame_in, &mut self.spectrum, &mut self.scratch)
            .is_err()
        {
            return;
        }
        self.cur.iter_mut().for_each(|x| *x = 0.0);
        let mut chroma = [0.0f32; 12];
        let norm = 2.0 / WINDOW as f32;
        for (k, c) in self.spectrum.iter().enumerate() {
            let m = c.norm() * norm;
            if let Some(b) = self.band_of[k] {
                self.cur[b] += m;
            }
            if let Some(p) = self.chroma_of[k] {
                chroma[p] += m * m;
            }
        }
        for x in &mut self.cur {
            *x = (1.0 + COMPRESS * *x).ln();
        }
        let (mut flux, mut low) = (0.0f32, 0.0f32);
        // before the first frame there is silence: a sound at the very start is an onset
        let n = self.bands;
        for b in 0..n {
            let lo = b.saturating_sub(1);
            let hi = (b + 1).min(n - 1);
            let reference = self.prev[lo..=hi].iter().copied().fold(0.0, f32::max);
            let d = (self.cur[b] - reference).max(0.0);
            flux += d;
            if b < self.low_bands {
                low += d;
            }
        }
        std::mem::swap(&mut self.prev, &mut self.cur);
        self.out.onset.push(flux);
        self.out.low.push(low);
        self.out.energy.push(energy);
        for (a, c) in self.slow_chroma.iter_mut().zip(chroma) {
            *a += c;
        }
        for (b, v) in self.prev.iter().enumerate() {
            self.slow_timbre[self.timbre_of[b]] += v;
        }
        self.slow_n += 1;
        if self.slow_n == SLOW {
            self.flush_slow();
        }
    }

    fn flush_slow(&mut self) {
        let n = self.slow_n.max(1) as f32;
        let mut c = self.slow_chroma;
        let total: f32 = c.iter().sum();
        for x in &mut c {
            *x = if total > 0.0 { *x / total } else { 0.0 };
        }
        let mut t = self.slow_timbre;
        for x in &mut t {
            *x /= n;
        }
        self.out.chroma.push(c);
        self.out.timbre.push(t);
        self.slow_chroma = [0.0; 12];
        self.slow_timbre = [0.0; TIMBRE];
        self.slow_n = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_click_makes_one_onset_peak_at_its_frame() {
        let mut fe = FrontEnd::new();
        let mut x = vec![0.0f32; RATE as usize * 2];
        let at = RATE as usize; // 1.000 s
        for (i, s) in x[at..at + 48].iter_mut().enumerate() {
            *s = if i % 2 == 0 { 0.8 } else { -0.8 };
        }
        for block in x.chunks(1000) {
            fe.push(block);
        }
        let f = fe.finish();
        assert_eq!(f.frames(), 200);
        assert_eq!(f.chroma.len(), 50);
        let peak = (0..f.frames())
            .max_by(|&a, &b| f.onset[a].total_cmp(&f.onset[b]))
            .unwrap();
        // the flux rises as the click enters the window: within half a window of it
        assert!((95..=101).contains(&peak), "peak at frame {peak}");
        assert!(f.onset[..90].iter().all(|&o| o == 0.0));
        assert!((f.peak - 0.8).abs() < 1e-6);
    }

    #[test]
    fn a_sound_at_the_very_start_is_an_onset() {
        let mut fe = FrontEnd::new();
        let mut x = vec![0.0f32; RATE as usize];
        for (i, s) in x[..48].iter_mut().enumerate() {
            *s = if i % 2 == 0 { 0.8 } else { -0.8 };
        }
        fe.push(&x);
        let f = fe.finish();
        let peak = (0..f.frames())
            .max_by(|&a, &b| f.onset[a].total_cmp(&f.onset[b]))
            .unwrap();
        assert!(peak <= 1, "peak at frame {peak}");
        assert!(f.onset[0] > 0.0);
    }
}
