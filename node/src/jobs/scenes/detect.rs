//! Scene-cut detection on downscaled HSV frames.
//!
//! This module owns the pure, per-frame maths of scene detection: converting
//! packed RGB24 pixels to 8-bit HSV (bit-exact with OpenCV's `COLOR_RGB2HSV`),
//! measuring the mean per-channel difference between consecutive frames, and
//! turning the resulting per-frame scores into cut points with either a fixed
//! threshold ([`content_cuts`]) or a rolling, neighbourhood-relative threshold
//! ([`adaptive_cuts`]). The detectors follow the HSV-delta approach of
//! PySceneDetect's `ContentDetector` and `AdaptiveDetector`. Decoding,
//! downscaling and I/O live elsewhere.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Fixed-point precision of OpenCV's 8-bit RGB→HSV path.
const HSV_SHIFT: u32 = 12;
/// Half of one fixed-point unit, added before shifting to round to nearest.
const HSV_HALF: i32 = 1 << (HSV_SHIFT - 1);

/// `table[i] = round(numer / i)` for `i` in `1..256`, `table[0] = 0`.
///
/// This is how OpenCV builds its reciprocal tables; none of the entries used
/// here is an exact `.5` tie, so rounding half up matches OpenCV's `cvRound`.
const fn reciprocal_table(numer: i64) -> [i32; 256] {
    let mut table = [0i32; 256];
    let mut i = 1;
    while i < 256 {
        let d = i as i64;
        table[i] = ((2 * numer + d) / (2 * d)) as i32;
        i += 1;
    }
    table
}

/// Saturation reciprocals: `round(255 · 2¹² / v)`.
static SAT_DIV: [i32; 256] = reciprocal_table(255 << HSV_SHIFT);
/// Hue reciprocals for the 0..180 range: `round(180 · 2¹² / (6 · diff))`.
static HUE_DIV: [i32; 256] = reciprocal_table((180 << HSV_SHIFT) / 6);

/// Converts one RGB pixel to OpenCV 8-bit HSV (H in 0..180).
#[inline]
fn rgb_to_hsv(r: u8, g: u8, b: u8) -> [u8; 3] {
    let v = r.max(g).max(b);
    let diff = v - r.min(g).min(b);
    let s = (i32::from(diff) * SAT_DIV[usize::from(v)] + HSV_HALF) >> HSV_SHIFT;
    let (ri, gi, bi, d) = (i32::from(r), i32::from(g), i32::from(b), i32::from(diff));
    // Hue numerator in units of 60°/diff, offset by the sector of the max channel.
    let sector = if v == r {
        gi - bi
    } else if v == g {
        bi - ri + 2 * d
    } else {
        ri - gi + 4 * d
    };
    // Arithmetic shift floors, exactly like OpenCV's `>>` on a negative int.
    let mut h = (sector * HUE_DIV[usize::from(diff)] + HSV_HALF) >> HSV_SHIFT;
    if h < 0 {
        h += 180;
    }
    [h as u8, s as u8, v]
}

/// Error from frame conversion or comparison.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DetectError {
    /// Two frames have different dimensions.
    SizeMismatch {
        /// `(width, height)` of the first (previous) frame.
        expected: (u32, u32),
        /// `(width, height)` of the second (current) frame.
        found: (u32, u32),
    },
    /// A buffer, stride or plane is too small or inconsistent with the frame size.
    BadBuffer {
        /// What was wrong: "stride", "rgb buffer", "hue plane", ...
        what: &'static str,
        /// The length (in bytes) that was required.
        needed: usize,
        /// The length (in bytes) that was given.
        actual: usize,
    },
}

impl fmt::Display for DetectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SizeMismatch { expected, found } => write!(
                f,
                "frame size mismatch: {}x{} vs {}x{}",
                expected.0, expected.1, found.0, found.1
            ),
            Self::BadBuffer {
                what,
                needed,
                actual,
            } => write!(f, "bad {what}: need {needed} bytes, got {actual}"),
        }
    }
}

impl std::error::Error for DetectError {}

/// Downscaled frame in HSV, 8-bit, OpenCV conventions: H in 0..180, S and V in 0..=255.
/// Planar: `h`, `s`, `v` each hold `width * height` bytes, row-major.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HsvFrame {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Hue plane, 0..180 (degrees / 2).
    pub h: Vec<u8>,
    /// Saturation plane, 0..=255.
    pub s: Vec<u8>,
    /// Value plane, 0..=255 (max of R, G, B).
    pub v: Vec<u8>,
}

/// `width * height`, or an error if it does not fit in `usize`.
fn pixel_count(width: u32, height: u32) -> Result<usize, DetectError> {
    (width as usize)
        .checked_mul(height as usize)
        .ok_or(DetectError::BadBuffer {
            what: "frame size",
            needed: usize::MAX,
            actual: 0,
        })
}

impl HsvFrame {
    /// Converts packed RGB24 rows (`stride` bytes per row, `stride >= width * 3`).
    ///
    /// The result is bit-identical to OpenCV's 8-bit
    /// `cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)`: V = max(R, G, B),
    /// S ≈ 255·(V − min)/V and H ≈ hue° / 2, both rounded through OpenCV's
    /// 12-bit fixed-point reciprocal tables (H = S = 0 when V == min). The last
    /// row may be shorter than `stride` as long as it holds `width * 3` bytes.
    ///
    /// # Errors
    ///
    /// [`DetectError::BadBuffer`] if `stride < width * 3` or `rgb` is too short.
    pub fn from_rgb24(
        width: u32,
        height: u32,
        stride: usize,
        rgb: &[u8],
    ) -> Result<HsvFrame, DetectError> {
        let n = pixel_count(width, height)?;
        let row_bytes = (width as usize)
            .checked_mul(3)
            .ok_or(DetectError::BadBuffer {
                what: "frame size",
                needed: usize::MAX,
                actual: 0,
            })?;
        if stride < row_bytes {
            return Err(DetectError::BadBuffer {
                what: "stride",
                needed: row_bytes,
                actual: stride,
            });
        }
        let needed = match (height as usize).checked_sub(1) {
            None => 0,
            Some(full_rows) => stride
                .checked_mul(full_rows)
                .and_then(|b| b.checked_add(row_bytes))
                .unwrap_or(usize::MAX),
        };
        if rgb.len() < needed {
            return Err(DetectError::BadBuffer {
                what: "rgb buffer",
                needed,
                actual: rgb.len(),
            });
        }
        let (mut h, mut s, mut v) = (vec![0u8; n], vec![0u8; n], vec![0u8; n]);
        if n > 0 {
            let w = width as usize;
            let rows = rgb
                .chunks(stride)
                .zip(h.chunks_exact_mut(w))
                .zip(s.chunks_exact_mut(w))
                .zip(v.chunks_exact_mut(w));
            for (((line, hr), sr), vr) in rows {
                let pixels = line[..row_bytes].chunks_exact(3);
                for (((px, ho), so), vo) in pixels.zip(hr).zip(sr).zip(vr) {
                    [*ho, *so, *vo] = rgb_to_hsv(px[0], px[1], px[2]);
                }
            }
        }
        Ok(HsvFrame {
            width,
            height,
            h,
            s,
            v,
        })
    }

    /// Checks that every plane holds exactly `width * height` bytes.
    fn check_planes(&self) -> Result<usize, DetectError> {
        let n = pixel_count(self.width, self.height)?;
        for (what, plane) in [
            ("hue plane", &self.h),
            ("saturation plane", &self.s),
            ("value plane", &self.v),
        ] {
            if plane.len() != n {
                return Err(DetectError::BadBuffer {
                    what,
                    needed: n,
                    actual: plane.len(),
                });
            }
        }
        Ok(n)
    }
}

/// Mean absolute difference of each HSV channel between two frames (the protocol's
/// [`HsvDelta`](rendermesh_protocol::HsvDelta), since shards carry it over the wire).
///
/// Hue is compared as a plain number (no wrap-around at 180), like PySceneDetect.
pub type FrameDelta = rendermesh_protocol::HsvDelta;

/// Sum of absolute differences of two equally long byte slices.
fn sum_abs_diff(a: &[u8], b: &[u8]) -> u64 {
    // 255 · 2¹⁶ < 2³², so a u32 block accumulator cannot overflow (and vectorises well).
    const BLOCK: usize = 1 << 16;
    a.chunks(BLOCK)
        .zip(b.chunks(BLOCK))
        .map(|(x, y)| {
            let block: u32 = x
                .iter()
                .zip(y)
                .map(|(&p, &q)| u32::from(p.abs_diff(q)))
                .sum();
            u64::from(block)
        })
        .sum()
}

/// Mean absolute per-channel difference between `prev` and `cur`.
///
/// Empty (0×N) frames give a zero delta.
///
/// # Errors
///
/// [`DetectError::SizeMismatch`] if the frames differ in size, and
/// [`DetectError::BadBuffer`] if a plane is not `width * height` bytes long.
pub fn frame_delta(prev: &HsvFrame, cur: &HsvFrame) -> Result<FrameDelta, DetectError> {
    if (prev.width, prev.height) != (cur.width, cur.height) {
        return Err(DetectError::SizeMismatch {
            expected: (prev.width, prev.height),
            found: (cur.width, cur.height),
        });
    }
    let n = prev.check_planes()?;
    cur.check_planes()?;
    if n == 0 {
        return Ok(FrameDelta::default());
    }
    let mean = |a: &[u8], b: &[u8]| (sum_abs_diff(a, b) as f64 / n as f64) as f32;
    Ok(FrameDelta {
        hue: mean(&prev.h, &cur.h),
        sat: mean(&prev.s, &cur.s),
        lum: mean(&prev.v, &cur.v),
    })
}

/// Parameters of the fixed-threshold content detector.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContentParams {
    /// Score at or above which a frame starts a new scene (default 27.0).
    pub threshold: f32,
    /// Minimum distance in frames between cuts, and from frame 0 to the first cut (default 15).
    pub min_scene_len: u32,
    /// Weights of the hue, saturation and luma deltas (default `[1, 1, 1]`).
    pub weights: [f32; 3],
}

impl Default for ContentParams {
    fn default() -> Self {
        Self {
            threshold: 27.0,
            min_scene_len: 15,
            weights: [1.0; 3],
        }
    }
}

/// Parameters of the adaptive (rolling-average) detector.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdaptiveParams {
    /// Ratio of a frame's score to its neighbours' mean at or above which it may cut (default 3.0).
    pub adaptive_threshold: f32,
    /// Minimum absolute score a cut frame must also reach (default 15.0).
    pub min_content_val: f32,
    /// Neighbours averaged on each side of a frame (default 2; 0 is treated as 1).
    pub window_width: u32,
    /// Minimum distance in frames between cuts, and from frame 0 to the first cut (default 15).
    pub min_scene_len: u32,
    /// Weights of the hue, saturation and luma deltas (default `[1, 1, 1]`).
    pub weights: [f32; 3],
}

impl Default for AdaptiveParams {
    fn default() -> Self {
        Self {
            adaptive_threshold: 3.0,
            min_content_val: 15.0,
            window_width: 2,
            min_scene_len: 15,
            weights: [1.0; 3],
        }
    }
}

/// Weighted frame score: `Σ cᵢ·wᵢ / Σ |wᵢ|` over (hue, sat, lum).
///
/// Returns 0 when all weights are zero.
pub fn content_score(d: &FrameDelta, weights: &[f32; 3]) -> f32 {
    let norm: f32 = weights.iter().map(|w| w.abs()).sum();
    if norm > 0.0 {
        (d.hue * weights[0] + d.sat * weights[1] + d.lum * weights[2]) / norm
    } else {
        0.0
    }
}

/// Fixed-threshold cuts.
///
/// `deltas[i]` is the delta of frame `i` against frame `i - 1`; `deltas[0]` is
/// ignored (the first frame has nothing to compare with) and `None` anywhere
/// means "unknown, never a cut". Frame `i` starts a new scene when its score is
/// at least `threshold` and `i - last_cut >= min_scene_len`, where `last_cut`
/// starts at 0. Returns the cut frame indices, ascending, never 0.
pub fn content_cuts(deltas: &[Option<FrameDelta>], p: &ContentParams) -> Vec<u32> {
    let mut cuts = Vec::new();
    let mut last_cut = 0u32;
    for (frame, delta) in (0u32..).zip(deltas).skip(1) {
        let Some(delta) = delta else { continue };
        if content_score(delta, &p.weights) >= p.threshold && frame - last_cut >= p.min_scene_len {
            cuts.push(frame);
            last_cut = frame;
        }
    }
    cuts
}

/// Ratio of a frame's score to the mean score of its neighbours, capped at 255.
fn adaptive_ratio(score: f32, neighbour_mean: f64, min_content_val: f32) -> f64 {
    if neighbour_mean.abs() < 1e-5 {
        if score >= min_content_val {
            255.0
        } else {
            0.0
        }
    } else {
        (f64::from(score) / neighbour_mean).min(255.0)
    }
}

/// Adaptive cuts: a frame must stand out from its neighbourhood.
///
/// For each frame `i` with a known score, `ratio = score(i) / mean(score of the
/// window_width frames before and after i)`, skipping unknown neighbours; if
/// that mean is ~0 the ratio is 255 when `score(i) >= min_content_val`, else 0.
/// Frame `i` cuts when `ratio >= adaptive_threshold`,
/// `score(i) >= min_content_val` and `i - last_cut >= min_scene_len`
/// (`last_cut` starts at 0). Frames within `window_width` of either end are
/// never cuts. Input conventions and output as for [`content_cuts`].
pub fn adaptive_cuts(deltas: &[Option<FrameDelta>], p: &AdaptiveParams) -> Vec<u32> {
    let scores: Vec<Option<f32>> = deltas
        .iter()
        .map(|d| d.as_ref().map(|d| content_score(d, &p.weights)))
        .collect();
    let width = p.window_width.max(1);
    let half = width as usize;
    let span = half.saturating_mul(2).saturating_add(1);
    let mut cuts = Vec::new();
    let mut last_cut = 0u32;
    // Window k covers frames k..k+span and is centred on frame k + width.
    for (frame, window) in (width..).zip(scores.windows(span)) {
        let Some(score) = window[half] else { continue };
        let (sum, count) = window
            .iter()
            .enumerate()
            .filter(|&(k, _)| k != half)
            .filter_map(|(_, s)| *s)
            .fold((0.0f64, 0u32), |(sum, n), s| (sum + f64::from(s), n + 1));
        let mean = if count == 0 {
            0.0
        } else {
            sum / f64::from(count)
        };
        let ratio = adaptive_ratio(score, mean, p.min_content_val);
        if ratio >= f64::from(p.adaptive_threshold)
            && score >= p.min_content_val
            && frame - last_cut >= p.min_scene_len
        {
            cuts.push(frame);
            last_cut = frame;
        }
    }
    cuts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hsv(r: u8, g: u8, b: u8) -> [u8; 3] {
        let f = HsvFrame::from_rgb24(1, 1, 3, &[r, g, b]).unwrap();
        [f.h[0], f.s[0], f.v[0]]
    }

    #[test]
    fn primaries_and_greys() {
        assert_eq!(hsv(255, 0, 0), [0, 255, 255]);
        assert_eq!(hsv(0, 255, 0), [60, 255, 255]);
        assert_eq!(hsv(0, 0, 255), [120, 255, 255]);
        assert_eq!(hsv(255, 255, 0), [30, 255, 255]);
        assert_eq!(hsv(0, 255, 255), [90, 255, 255]);
        assert_eq!(hsv(255, 0, 255), [150, 255, 255]);
        assert_eq!(hsv(255, 255, 255), [0, 0, 255]);
        assert_eq!(hsv(0, 0, 0), [0, 0, 0]);
        assert_eq!(hsv(128, 128, 128), [0, 0, 128]);
    }

    #[test]
    fn mixed_colours_match_opencv() {
        // Values checked against cv2.cvtColor(..., COLOR_RGB2HSV) (OpenCV 4.14 and 5.0).
        // V=200, S=round(255*190/200)=242, H=(60*(2+20/190))/2=63.16 -> 63.
        assert_eq!(hsv(10, 200, 30), [63, 242, 200]);
        // H=30.1°/2 -> 15.
        assert_eq!(hsv(255, 128, 0), [15, 255, 255]);
        // Red-max with G < B: hue -20° wraps to 340° -> 170; S=191.25 -> 191.
        assert_eq!(hsv(200, 50, 100), [170, 191, 200]);
        // Blue-max: 270° -> 135; S=226.7 -> 227.
        assert_eq!(hsv(100, 20, 180), [135, 227, 180]);
        // S is an exact tie (127.5): OpenCV's fixed point rounds it up.
        assert_eq!(hsv(1, 2, 2), [90, 128, 2]);
        // Red-max hue just below 0 rounds to 0 rather than wrapping to 180.
        assert_eq!(hsv(255, 0, 1), [0, 255, 255]);
    }

    #[test]
    fn outputs_stay_in_range() {
        for r in (0..=255u8).step_by(5) {
            for g in (0..=255u8).step_by(3) {
                for b in 0..=255u8 {
                    let [h, s, v] = rgb_to_hsv(r, g, b);
                    assert!(h < 180, "{r},{g},{b} -> h={h}");
                    assert_eq!(v, r.max(g).max(b));
                    assert_eq!(s == 0, v == r.min(g).min(b) || v == 0);
                }
            }
        }
    }

    #[test]
    fn stride_padding_is_skipped() {
        // 2x2 frame, 8 bytes per row (2 bytes padding, filled with junk).
        let rgb = [
            255, 0, 0, 0, 255, 0, 9, 9, //
            0, 0, 255, 255, 255, 255, 9, 9,
        ];
        let f = HsvFrame::from_rgb24(2, 2, 8, &rgb).unwrap();
        assert_eq!(f.h, vec![0, 60, 120, 0]);
        assert_eq!(f.s, vec![255, 255, 255, 0]);
        assert_eq!(f.v, vec![255; 4]);
        // The last row need not carry its padding.
        let g = HsvFrame::from_rgb24(2, 2, 8, &rgb[..14]).unwrap();
        assert_eq!(f, g);
    }

    #[test]
    fn bad_buffers_are_errors() {
        let rgb = [0u8; 12];
        assert_eq!(
            HsvFrame::from_rgb24(2, 2, 6, &rgb[..11]),
            Err(DetectError::BadBuffer {
                what: "rgb buffer",
                needed: 12,
                actual: 11
            })
        );
        assert!(matches!(
            HsvFrame::from_rgb24(2, 2, 5, &rgb),
            Err(DetectError::BadBuffer { what: "stride", .. })
        ));
        let empty = HsvFrame::from_rgb24(0, 0, 0, &[]).unwrap();
        assert!(empty.h.is_empty());
        let err = HsvFrame::from_rgb24(4, 4, 12, &rgb).unwrap_err();
        assert!(err.to_string().contains("need 48 bytes, got 12"));
    }

    fn flat(w: u32, h: u32, px: [u8; 3]) -> HsvFrame {
        let rgb: Vec<u8> = px.repeat((w * h) as usize);
        HsvFrame::from_rgb24(w, h, w as usize * 3, &rgb).unwrap()
    }

    #[test]
    fn delta_is_mean_abs_difference() {
        let a = flat(4, 2, [0, 0, 0]);
        let b = flat(4, 2, [255, 0, 0]);
        let d = frame_delta(&a, &b).unwrap();
        assert_eq!(
            d,
            FrameDelta {
                hue: 0.0,
                sat: 255.0,
                lum: 255.0
            }
        );
        // Half the pixels change hue from 0 (red) to 120 (blue): no wrap-around.
        let mut c = b.clone();
        c.h[..4].fill(120);
        let d = frame_delta(&b, &c).unwrap();
        assert_eq!((d.hue, d.sat, d.lum), (60.0, 0.0, 0.0));
        assert_eq!(frame_delta(&c, &c).unwrap(), FrameDelta::default());
    }

    #[test]
    fn delta_rejects_mismatched_frames() {
        let a = flat(4, 2, [1, 2, 3]);
        let b = flat(2, 4, [1, 2, 3]);
        let err = frame_delta(&a, &b).unwrap_err();
        assert_eq!(
            err,
            DetectError::SizeMismatch {
                expected: (4, 2),
                found: (2, 4)
            }
        );
        assert_eq!(err.to_string(), "frame size mismatch: 4x2 vs 2x4");
        let mut broken = a.clone();
        broken.s.pop();
        assert!(matches!(
            frame_delta(&a, &broken),
            Err(DetectError::BadBuffer {
                what: "saturation plane",
                ..
            })
        ));
    }

    #[test]
    fn score_is_weighted_mean() {
        let d = FrameDelta {
            hue: 10.0,
            sat: 20.0,
            lum: 60.0,
        };
        assert_eq!(content_score(&d, &[1.0, 1.0, 1.0]), 30.0);
        assert_eq!(content_score(&d, &[0.0, 0.0, 1.0]), 60.0);
        assert_eq!(content_score(&d, &[1.0, 0.5, 1.0]), 80.0 / 2.5);
        assert_eq!(content_score(&d, &[0.0, 0.0, 0.0]), 0.0);
    }

    /// Deltas whose score (with unit weights) equals the given value.
    fn deltas(scores: &[f32]) -> Vec<Option<FrameDelta>> {
        let mut out: Vec<_> = scores
            .iter()
            .map(|&s| {
                Some(FrameDelta {
                    hue: s,
                    sat: s,
                    lum: s,
                })
            })
            .collect();
        if let Some(first) = out.first_mut() {
            *first = None;
        }
        out
    }

    #[test]
    fn content_respects_threshold_and_min_len() {
        let mut s = vec![1.0f32; 100];
        s[10] = 40.0; // too early: within min_scene_len of frame 0
        s[15] = 27.0; // exactly min_scene_len and exactly the threshold: cut
        s[20] = 50.0; // only 5 after the previous cut: dropped
        s[30] = 30.0; // exactly 15 after frame 15: cut
        s[50] = 26.9; // below threshold
        s[60] = 90.0; // cut
        let p = ContentParams::default();
        assert_eq!(content_cuts(&deltas(&s), &p), vec![15, 30, 60]);

        let mut d = deltas(&s);
        d[30] = None; // unknown: never a cut
        d[31] = None;
        assert_eq!(content_cuts(&d, &p), vec![15, 60]);

        // A huge delta on frame 0 is ignored, and min_scene_len 0 allows neighbours.
        let mut d = deltas(&[0.0, 99.0, 99.0, 0.0]);
        d[0] = Some(FrameDelta {
            hue: 99.0,
            sat: 99.0,
            lum: 99.0,
        });
        let p = ContentParams {
            min_scene_len: 0,
            ..p
        };
        assert_eq!(content_cuts(&d, &p), vec![1, 2]);
        assert!(content_cuts(&[], &p).is_empty());
    }

    #[test]
    fn adaptive_ignores_slow_fade_and_finds_hard_cut() {
        let mut s = vec![0.5f32; 120];
        // A long fade: every frame changes a lot, but smoothly.
        for v in &mut s[20..60] {
            *v = 25.0;
        }
        s[90] = 60.0; // a hard cut in a static shot
        let d = deltas(&s);
        let p = AdaptiveParams::default();
        assert_eq!(adaptive_cuts(&d, &p), vec![90]);
        // The fixed-threshold detector would fire on the fade with a lower threshold.
        let c = ContentParams {
            threshold: 20.0,
            ..ContentParams::default()
        };
        assert_eq!(content_cuts(&d, &c), vec![20, 35, 50, 90]);
    }

    #[test]
    fn adaptive_edges_unknowns_and_min_len() {
        let p = AdaptiveParams::default();
        // Spikes within window_width of either end are never cuts.
        let mut s = vec![0.0f32; 40];
        s[38] = 80.0;
        assert!(adaptive_cuts(&deltas(&s), &p).is_empty());
        let p0 = AdaptiveParams {
            min_scene_len: 0,
            ..p
        };
        let mut s = vec![0.0f32; 10];
        s[1] = 80.0;
        s[2] = 80.0;
        assert_eq!(adaptive_cuts(&deltas(&s), &p0), vec![2]);
        // All-zero neighbourhood: ratio 255 only if the score reaches min_content_val.
        let mut s = vec![0.0f32; 40];
        s[20] = 16.0;
        s[30] = 14.0;
        assert_eq!(adaptive_cuts(&deltas(&s), &p), vec![20]);
        // Unknown neighbours are skipped rather than counted as zero: with 18 and 19
        // known as 0 the mean is 6 (ratio 5, a cut); unknown, it is 12 (ratio 2.5).
        let mut s = vec![12.0f32; 40];
        s[18] = 0.0;
        s[19] = 0.0;
        s[20] = 30.0;
        let mut d = deltas(&s);
        assert_eq!(adaptive_cuts(&d, &p), vec![20]);
        d[18] = None;
        d[19] = None;
        assert!(adaptive_cuts(&d, &p).is_empty());
        // An unknown centre frame is never a cut.
        d[20] = None;
        assert!(adaptive_cuts(&d, &p0).is_empty());
        // Two cuts closer than min_scene_len: the second is dropped; at 15 it is kept.
        let mut s = vec![1.0f32; 80];
        s[20] = 50.0;
        s[30] = 50.0;
        s[45] = 50.0;
        assert_eq!(adaptive_cuts(&deltas(&s), &p), vec![20, 45]);
        // Too short for a single full window.
        assert!(adaptive_cuts(&deltas(&[0.0, 90.0, 0.0, 0.0]), &p).is_empty());
    }
}
