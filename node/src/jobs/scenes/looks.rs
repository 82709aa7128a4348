//! How a frame looks, for choosing montage material ([`FrameLook`]): brightness, contrast,
//! sharpness, motion and a 64-bit average hash that finds near-duplicates. Measured on the
//! RGB frame the scene scorer already made at its analysis size, so it costs no decode.

use rendermesh_protocol::FrameLook;

/// Luma (BT.601 weights, 0–255) of a packed RGB24 image with `stride` bytes per row.
pub fn luma_of(width: u32, height: u32, stride: usize, rgb: &[u8]) -> Vec<u8> {
    let (w, h) = (width as usize, height as usize);
    let mut out = Vec::with_capacity(w * h);
    for y in 0..h {
        let Some(row) = rgb.get(y * stride..y * stride + w * 3) else {
            break;
        };
        out.extend(
            row.chunks_exact(3)
                .map(|p| ((77 * p[0] as u32 + 150 * p[1] as u32 + 29 * p[2] as u32) >> 8) as u8),
        );
    }
    out
}

/// The look of frame `frame` from its luma plane (`width`×`height`) and, for motion, the
/// luma of the frame before it (same size) if there is one.
pub fn look(frame: u64, width: u32, height: u32, luma: &[u8], prev: Option<&[u8]>) -> FrameLook {
    let (w, h) = (width as usize, height as usize);
    let n = (w * h).min(luma.len()).max(1);
    let mean = luma.iter().take(n).map(|&v| v as f64).sum::<f64>() / n as f64;
    let var = luma
        .iter()
        .take(n)
        .map(|&v| (v as f64 - mean).powi(2))
        .sum::<f64>()
        / n as f64;
    let mut lap = 0.0f64;
    let mut count = 0usize;
    if w >= 3 && h >= 3 && luma.len() >= w * h {
        for y in 1..h - 1 {
            for x in 1..w - 1 {
                let c = luma[y * w + x] as i32;
                let s = luma[(y - 1) * w + x] as i32
                    + luma[(y + 1) * w + x] as i32
                    + luma[y * w + x - 1] as i32
                    + luma[y * w + x + 1] as i32;
                lap += (4 * c - s).unsigned_abs() as f64;
                count += 1;
            }
        }
    }
    let motion = match prev {
        Some(p) if p.len() == luma.len() && !p.is_empty() => {
            luma.iter()
                .zip(p)
                .map(|(&a, &b)| (a as i32 - b as i32).unsigned_abs() as f64)
                .sum::<f64>()
                / luma.len() as f64
        }
        _ => 0.0,
    };
    FrameLook {
        frame,
        luma: mean.round().clamp(0.0, 255.0) as u8,
        contrast: var.sqrt().round().clamp(0.0, 255.0) as u8,
        sharpness: (lap / count.max(1) as f64) as f32,
        motion: motion as f32,
        hash: average_hash(w, h, luma),
    }
}

/// Bits set where a cell of an 8×8 grid of means is brighter than the grid's mean.
pub fn average_hash(w: usize, h: usize, luma: &[u8]) -> u64 {
    if w == 0 || h == 0 || luma.len() < w * h {
        return 0;
    }
    let mut cells = [0f64; 64];
    for (i, cell) in cells.iter_mut().enumerate() {
        let (cx, cy) = (i % 8, i / 8);
        let (x0, x1) = (cx * w / 8, ((cx + 1) * w / 8).max(cx * w / 8 + 1).min(w));
        let (y0, y1) = (cy * h / 8, ((cy + 1) * h / 8).max(cy * h / 8 + 1).min(h));
        let mut sum = 0.0;
        let mut n = 0usize;
        for y in y0..y1 {
            for x in x0..x1 {
                sum += luma[y * w + x] as f64;
                n += 1;
            }
        }
        *cell = sum / n.max(1) as f64;
    }
    let mean = cells.iter().sum::<f64>() / 64.0;
    cells.iter().enumerate().fold(
        0u64,
        |acc, (i, &c)| if c > mean { acc | 1 << i } else { acc },
    )
}

/// Bits in which two hashes differ: 0 for the same picture, about 32 for unrelated ones.
pub fn hash_distance(a: u64, b: u64) -> u32 {
    (a ^ b).count_ones()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(w: usize, h: usize, f: impl Fn(usize, usize) -> u8) -> Vec<u8> {
        (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .map(|(x, y)| f(x, y))
            .collect()
    }

    #[test]
    fn flat_grey_is_dull_and_a_checkerboard_is_sharp() {
        let flat = image(64, 36, |_, _| 100);
        let l = look(8, 64, 36, &flat, None);
        assert_eq!((l.frame, l.luma, l.contrast), (8, 100, 0));
        assert_eq!(l.sharpness, 0.0);
        assert_eq!(l.motion, 0.0);
        let board = image(64, 36, |x, y| if (x + y) % 2 == 0 { 0 } else { 200 });
        let b = look(0, 64, 36, &board, Some(&flat));
        assert_eq!(b.luma, 100);
        assert_eq!(b.contrast, 100);
        assert!(b.sharpness > 700.0, "{}", b.sharpness);
        assert!((b.motion - 100.0).abs() < 0.01, "{}", b.motion);
    }

    #[test]
    fn near_duplicates_hash_close_and_different_pictures_far() {
        let a = image(96, 54, |x, y| ((x * 3 + y * 2) % 256) as u8);
        let noisy: Vec<u8> = a
            .iter()
            .enumerate()
            .map(|(i, &v)| v.saturating_add((i % 3) as u8))
            .collect();
        let other = image(
            96,
            54,
            |x, y| if (x / 24 + y / 13) % 2 == 0 { 30 } else { 220 },
        );
        let (ha, hn, ho) = (
            average_hash(96, 54, &a),
            average_hash(96, 54, &noisy),
            average_hash(96, 54, &other),
        );
        assert!(hash_distance(ha, hn) <= 4, "{}", hash_distance(ha, hn));
        assert!(hash_distance(ha, ho) >= 16, "{}", hash_distance(ha, ho));
    }

    #[test]
    fn luma_follows_bt601_and_strides() {
        // 2×1 image in rows of 8 bytes: white, pure green, then padding
        let rgb = [255, 255, 255, 0, 255, 0, 9, 9];
        assert_eq!(luma_of(2, 1, 8, &rgb), vec![255, 149]);
    }
}
