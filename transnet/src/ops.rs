//! The few array operations the network needs, on plain `f32` buffers: matrix products
//! (through `matrixmultiply`, whose kernels pick AVX/FMA at run time), a 3×3 convolution by
//! im2col, 2×2 average pooling and the element-wise steps.
//!
//! Activations are `[time, channels, height, width]`, row-major, in a [`Volume`].

use crate::Error;

/// A stack of frames of feature maps: `[t, c, h, w]`.
#[derive(Clone, Debug)]
pub(crate) struct Volume {
    pub(crate) t: usize,
    pub(crate) c: usize,
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) data: Vec<f32>,
}

impl Volume {
    pub(crate) fn zeros(t: usize, c: usize, h: usize, w: usize) -> Volume {
        Volume {
            t,
            c,
            h,
            w,
            data: vec![0.0; t * c * h * w],
        }
    }

    /// Elements of one frame.
    pub(crate) fn frame_len(&self) -> usize {
        self.c * self.h * self.w
    }

    pub(crate) fn frame(&self, t: usize) -> &[f32] {
        let n = self.frame_len();
        &self.data[t * n..(t + 1) * n]
    }
}

/// A matrix operand: a slice and its row and column strides (in elements).
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    pub(crate) data: &'a [f32],
    pub(crate) rs: usize,
    pub(crate) cs: usize,
}

impl<'a> Mat<'a> {
    /// A row-major matrix with `cols` columns.
    pub(crate) fn rows(data: &'a [f32], cols: usize) -> Mat<'a> {
        Mat {
            data,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose of a row-major matrix with `cols` columns.
    pub(crate) fn transposed(data: &'a [f32], cols: usize) -> Mat<'a> {
        Mat {
            data,
            rs: 1,
            cs: cols,
        }
    }
}

/// Whether an `r × c` matrix with these strides lies inside `len` elements.
fn fits(len: usize, r: usize, c: usize, rs: usize, cs: usize) -> bool {
    r == 0 || c == 0 || (r - 1) * rs + (c - 1) * cs < len
}

/// `out[m×n] = a[m×k] · b[k×n] (+ out if accumulate)`, `out` row-major with `n` columns.
pub(crate) fn gemm(
    m: usize,
    k: usize,
    n: usize,
    a: Mat,
    b: Mat,
    out: &mut [f32],
    accumulate: bool,
) -> Result<(), Error> {
    if !fits(a.data.len(), m, k, a.rs, a.cs)
        || !fits(b.data.len(), k, n, b.rs, b.cs)
        || !fits(out.len(), m, n, n, 1)
    {
        return Err(Error::Compute(format!(
            "a {m}×{k}·{k}×{n} product does not fit its buffers"
        )));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    let beta = if accumulate { 1.0 } else { 0.0 };
    // SAFETY: `fits` checked that every element each operand's strides reach lies inside
    // its slice; `out` is borrowed mutably, so it cannot alias `a` or `b`.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.data.as_ptr(),
            a.rs as isize,
            a.cs as isize,
            b.data.as_ptr(),
            b.rs as isize,
            b.cs as isize,
            beta,
            out.as_mut_ptr(),
            n as isize,
            1,
        );
    }
    Ok(())
}

/// A 3×3 convolution with zero padding of 1 and no bias: `[T, C, H, W]` → `[T, O, H, W]`.
/// `kernels` is `[O, C, 3, 3]` row-major.
pub(crate) fn conv3x3(x: &Volume, kernels: &[f32], out_channels: usize) -> Result<Volume, Error> {
    let (c, h, w) = (x.c, x.h, x.w);
    let p = h * w;
    let k = c * 9;
    let mut out = Volume::zeros(x.t, out_channels, h, w);
    let mut col = vec![0f32; k * p];
    for t in 0..x.t {
        im2col(x.frame(t), c, h, w, &mut col);
        let o = out_channels * p;
        gemm(
            out_channels,
            k,
            p,
            Mat::rows(kernels, k),
            Mat::rows(&col, p),
            &mut out.data[t * o..(t + 1) * o],
            false,
        )?;
    }
    Ok(out)
}

/// `col[(ci·9 + ky·3 + kx), y·W + x] = frame[ci, y+ky−1, x+kx−1]`, zero outside the frame.
fn im2col(frame: &[f32], c: usize, h: usize, w: usize, col: &mut [f32]) {
    let p = h * w;
    for ci in 0..c {
        let plane = &frame[ci * p..(ci + 1) * p];
        for ky in 0..3 {
            for kx in 0..3 {
                let row = &mut col[(ci * 9 + ky * 3 + kx) * p..][..p];
                for y in 0..h {
                    let dst = &mut row[y * w..(y + 1) * w];
                    let sy = y + ky;
                    if sy == 0 || sy > h {
                        dst.fill(0.0);
                        continue;
                    }
                    let src = &plane[(sy - 1) * w..sy * w];
                    match kx {
                        0 => {
                            dst[0] = 0.0;
                            dst[1..].copy_from_slice(&src[..w - 1]);
                        }
                        1 => dst.copy_from_slice(src),
                        _ => {
                            dst[..w - 1].copy_from_slice(&src[1..]);
                            dst[w - 1] = 0.0;
                        }
                    }
                }
            }
        }
    }
}

/// 2×2 average pooling with stride 2 (an odd last row or column is dropped).
pub(crate) fn avg_pool2(x: &Volume) -> Volume {
    let (h2, w2) = (x.h / 2, x.w / 2);
    let mut out = Volume::zeros(x.t, x.c, h2, w2);
    for (plane, dst) in x
        .data
        .chunks_exact(x.h * x.w)
        .zip(out.data.chunks_exact_mut(h2 * w2))
    {
        for y in 0..h2 {
            let r0 = &plane[2 * y * x.w..];
            let r1 = &plane[(2 * y + 1) * x.w..];
            for xo in 0..w2 {
                let s = r0[2 * xo] + r0[2 * xo + 1] + r1[2 * xo] + r1[2 * xo + 1];
                dst[y * w2 + xo] = s * 0.25;
            }
        }
    }
    out
}

/// Per frame, each channel's mean over space: `[T, C]` row-major.
pub(crate) fn spatial_mean(x: &Volume) -> Vec<f32> {
    let p = (x.h * x.w) as f32;
    x.data
        .chunks_exact(x.h * x.w)
        .map(|plane| plane.iter().sum::<f32>() / p)
        .collect()
}

pub(crate) fn relu(v: &mut [f32]) {
    for x in v {
        *x = x.max(0.0);
    }
}

/// Rows of `cols` elements scaled to unit length (a norm under 1e-12 counts as 1e-12, as
/// torch's `normalize`).
pub(crate) fn normalize_rows(v: &mut [f32], cols: usize) {
    for row in v.chunks_exact_mut(cols) {
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        for x in row {
            *x /= norm;
        }
    }
}

/// A dense layer, `y = x·Wᵀ + b`.
pub(crate) struct Dense {
    weight: Vec<f32>,
    bias: Vec<f32>,
    d_in: usize,
    d_out: usize,
}

impl Dense {
    pub(crate) fn load(
        w: &crate::Weights,
        prefix: &str,
        d_in: usize,
        d_out: usize,
    ) -> Result<Dense, Error> {
        Ok(Dense {
            weight: w.get(&format!("{prefix}.weight"), &[d_out, d_in])?.to_vec(),
            bias: w.get(&format!("{prefix}.bias"), &[d_out])?.to_vec(),
            d_in,
            d_out,
        })
    }

    /// `rows` rows of `d_in` → `rows` rows of `d_out`.
    pub(crate) fn forward(&self, x: &[f32], rows: usize) -> Result<Vec<f32>, Error> {
        let mut y = vec![0f32; rows * self.d_out];
        gemm(
            rows,
            self.d_in,
            self.d_out,
            Mat::rows(x, self.d_in),
            Mat::transposed(&self.weight, self.d_in),
            &mut y,
            false,
        )?;
        for row in y.chunks_exact_mut(self.d_out) {
            for (v, b) in row.iter_mut().zip(&self.bias) {
                *v += b;
            }
        }
        Ok(y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The convolution written out directly, for comparison.
    fn conv_direct(x: &Volume, k: &[f32], o: usize) -> Vec<f32> {
        let mut out = vec![0f32; x.t * o * x.h * x.w];
        for t in 0..x.t {
            for oc in 0..o {
                for y in 0..x.h as isize {
                    for xx in 0..x.w as isize {
                        let mut s = 0f32;
                        for ci in 0..x.c {
                            for ky in 0..3isize {
                                for kx in 0..3isize {
                                    let (sy, sx) = (y + ky - 1, xx + kx - 1);
                                    if sy < 0 || sx < 0 || sy >= x.h as isize || sx >= x.w as isize
                                    {
                                        continue;
                                    }
                                    let v = x.data
                                        [((t * x.c + ci) * x.h + sy as usize) * x.w + sx as usize];
                                    s += v * k
                                        [((oc * x.c + ci) * 3 + ky as usize) * 3 + kx as usize];
                                }
                            }
                        }
                        out[((t * o + oc) * x.h + y as usize) * x.w + xx as usize] = s;
                    }
                }
            }
        }
        out
    }

    fn pseudo(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect()
    }

    #[test]
    fn conv3x3_equals_the_direct_sum() {
        let mut x = Volume::zeros(2, 3, 5, 7);
        x.data = pseudo(x.data.len(), 1);
        let k = pseudo(4 * 3 * 9, 2);
        let got = conv3x3(&x, &k, 4).expect("runs");
        let want = conv_direct(&x, &k, 4);
        for (a, b) in got.data.iter().zip(&want) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    #[test]
    fn pooling_averages_and_drops_an_odd_edge() {
        let mut x = Volume::zeros(1, 1, 3, 3);
        x.data = (1..=9).map(|v| v as f32).collect();
        let p = avg_pool2(&x);
        assert_eq!((p.h, p.w), (1, 1));
        assert_eq!(p.data, vec![(1. + 2. + 4. + 5.) / 4.]);
    }

    #[test]
    fn a_product_that_does_not_fit_is_an_error() {
        let a = [1f32; 4];
        let mut out = [0f32; 4];
        assert!(gemm(2, 2, 2, Mat::rows(&a, 2), Mat::rows(&a, 2), &mut out, false).is_ok());
        assert_eq!(out, [2.0; 4]);
        assert!(gemm(2, 3, 2, Mat::rows(&a, 3), Mat::rows(&a, 2), &mut out, false).is_err());
    }

    #[test]
    fn dense_transposes_its_weight() {
        let d = Dense {
            weight: vec![1., 2., 3., 4., 5., 6.], // 2 out × 3 in
            bias: vec![0.5, -0.5],
            d_in: 3,
            d_out: 2,
        };
        let y = d.forward(&[1., 0., 1., 0., 1., 0.], 2).expect("runs");
        assert_eq!(y, vec![4.5, 9.5, 2.5, 4.5]);
    }
}
