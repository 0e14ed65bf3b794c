//! Products by a weight packed once into column panels, for the thin products of a decoder
//! step (a few to a hundred rows against a `[1792, 2048]` weight).
//!
//! gemm packs its right operand again at every call; at a step's few rows the packing costs
//! as much as the product (bench/RESULTS.md). A weight that is multiplied at every step of a
//! search is packed here once, into panels two vector registers wide (16 columns with AVX2, 32
//! with AVX-512), each `[k, width]` row-major, so that a product streams each panel once from
//! memory and keeps a tile of [`ROWS`] rows by the panel's width of the output in registers.
//!
//! Each output is `bias + sum_k x[k] w[k]`, added in order of `k` by fused multiply-adds
//! whatever the CPU's vector width and the number of threads (columns, not sums, are split
//! between threads), so the results are the same on every CPU with FMA.
#![cfg_attr(not(feature = "flex"), allow(dead_code))]

use rayon::prelude::*;

/// Rows of a tile: six rows of two vector registers keep twelve accumulators, two columns
/// of the panel and the row's value in the sixteen AVX2 registers.
const ROWS: usize = 6;
/// Values of a panel's block that a tile sums before storing (16 KB, which stays in L1
/// while every row block runs over it).
const BLOCK: usize = 4096;
/// Below this many multiply-adds a product runs on the calling thread.
const THREADED: usize = 1 << 18;

/// A weight `[k, n]`, packed: panel `p` holds columns `p * width ..` as `[k, width]`
/// row-major, the last one padded with zeros; `width` is two of the CPU's vector registers
/// (16 columns with AVX2, 32 with AVX-512).
#[derive(Debug, Clone)]
pub struct Panels {
    k: usize,
    n: usize,
    width: usize,
    values: Vec<f32>,
}

/// Which build of the kernel runs on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isa {
    Avx512,
    Avx2,
    Plain,
}

impl Isa {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Isa::Avx2;
            }
        }
        Isa::Plain
    }

    /// Columns of a panel.
    fn width(self) -> usize {
        match self {
            Isa::Avx512 => 32,
            Isa::Avx2 | Isa::Plain => 16,
        }
    }
}

impl Panels {
    /// Packs `w` `[k, n]`, given with its (row, column) strides in elements.
    pub fn pack(w: &[f32], [k, n]: [usize; 2], [row, col]: [usize; 2]) -> Self {
        let width = Isa::detect().width();
        let panels = n.div_ceil(width);
        let mut values = vec![0.0; panels * k * width];
        if k > 0 {
            values
                .par_chunks_mut(k * width)
                .enumerate()
                .for_each(|(p, panel)| {
                    let columns = (n - p * width).min(width);
                    for (kk, dst) in panel.chunks_exact_mut(width).enumerate() {
                        for (c, dst) in dst[..columns].iter_mut().enumerate() {
                            *dst = w[kk * row + (p * width + c) * col];
                        }
                    }
                });
        }
        Self {
            k,
            n,
            width,
            values,
        }
    }

    /// `[k, n]`.
    pub fn dims(&self) -> [usize; 2] {
        [self.k, self.n]
    }

    /// `x w + bias`, `[m, n]` row-major, for `x` `[m, k]` row-major and `bias` `[n]`.
    pub fn product(&self, x: &[f32], m: usize, bias: Option<&[f32]>) -> Vec<f32> {
        let (k, n, width) = (self.k, self.n, self.width);
        assert_eq!(x.len(), m * k, "x holds [{m}, {k}]");
        assert!(bias.is_none_or(|b| b.len() == n), "bias holds [{n}]");
        if m == 0 || n == 0 {
            return Vec::new();
        }
        let panels = n.div_ceil(width);
        // The output panel by panel, `[panels, m, width]`, then laid out `[m, n]`.
        let mut tiles = vec![0.0; panels * m * width];
        let isa = Isa::detect();
        let run = |first: usize, out: &mut [f32]| {
            let job = Job {
                panels: self,
                x,
                m,
                bias,
                first,
            };
            match isa {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the CPU has the features `run_avx512` is compiled for.
                Isa::Avx512 => unsafe { job.run_avx512(out) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: as above, for `run_avx2`.
                Isa::Avx2 => unsafe { job.run_avx2(out) },
                _ => job.run::<[f32; 8]>(out),
            }
        };
        let threads = rayon::current_num_threads();
        if m * n * k < THREADED || threads == 1 || panels == 1 {
            run(0, &mut tiles);
        } else {
            let per_thread = panels.div_ceil(threads);
            tiles
                .par_chunks_mut(per_thread * m * width)
                .enumerate()
                .for_each(|(i, out)| run(i * per_thread, out));
        }
        let mut y = Vec::with_capacity(m * n);
        for r in 0..m {
            for p in 0..panels {
                let columns = (n - p * width).min(width);
                y.extend_from_slice(&tiles[(p * m + r) * width..][..columns]);
            }
        }
        y
    }
}

/// One thread's part of a product: the output of panels `first..`.
struct Job<'a> {
    panels: &'a Panels,
    x: &'a [f32],
    m: usize,
    bias: Option<&'a [f32]>,
    first: usize,
}

impl Job<'_> {
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,avx,fma")]
    unsafe fn run_avx512(&self, out: &mut [f32]) {
        self.run::<std::arch::x86_64::__m512>(out)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,avx,fma")]
    unsafe fn run_avx2(&self, out: &mut [f32]) {
        self.run::<std::arch::x86_64::__m256>(out)
    }

    /// Writes the output of panels `first..` into `out` `[panels, m, width]`, for panels two
    /// `V` wide: the bias, then block by block of depth the tiles of [`ROWS`] rows.
    #[inline(always)]
    fn run<V: Vector>(&self, out: &mut [f32]) {
        let Panels {
            k,
            n,
            values,
            width,
            ..
        } = self.panels;
        let (k, n, m, width) = (*k, *n, self.m, *width);
        assert_eq!(width, 2 * V::LANES, "panels packed for this CPU");
        for (i, tile) in out.chunks_exact_mut(m * width).enumerate() {
            let p = self.first + i;
            let columns = (n - p * width).min(width);
            for row in tile.chunks_exact_mut(width) {
                match self.bias {
                    Some(b) => row[..columns].copy_from_slice(&b[p * width..][..columns]),
                    None => row.fill(0.0),
                }
            }
        }
        let depth = BLOCK / width;
        for k0 in (0..k).step_by(depth) {
            let depth = depth.min(k - k0);
            for (i, tile) in out.chunks_exact_mut(m * width).enumerate() {
                let panel = &values[((self.first + i) * k + k0) * width..][..depth * width];
                let mut r0 = 0;
                while r0 < m {
                    let take = ROWS.min(m - r0);
                    let x = &self.x[r0 * k + k0..];
                    let tile = &mut tile[r0 * width..][..take * width];
                    match take {
                        6 => block::<V, 6>(x, k, panel, tile),
                        5 => block::<V, 5>(x, k, panel, tile),
                        4 => block::<V, 4>(x, k, panel, tile),
                        3 => block::<V, 3>(x, k, panel, tile),
                        2 => block::<V, 2>(x, k, panel, tile),
                        _ => block::<V, 1>(x, k, panel, tile),
                    }
                    r0 += take;
                }
            }
        }
    }
}

/// A vector register of `f32`s: the four operations a tile needs.
///
/// The implementations for `__m256` and `__m512` call the AVX2 and AVX-512 intrinsics; they
/// are inlined into [`Job::run_avx2`] and [`Job::run_avx512`], which are compiled for those
/// instruction sets, and called only on CPUs that have them.
trait Vector: Copy {
    const LANES: usize;
    /// # Safety
    /// `p` points to `LANES` readable values.
    unsafe fn load(p: *const f32) -> Self;
    /// # Safety
    /// `p` points to room for `LANES` values.
    unsafe fn store(self, p: *mut f32);
    fn splat(v: f32) -> Self;
    /// `a * b + c`, rounded once.
    fn mul_add(a: Self, b: Self, c: Self) -> Self;
}

/// The plain build's register: eight values, multiplied and added one by one.
impl Vector for [f32; 8] {
    const LANES: usize = 8;
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the caller's promise.
        unsafe { p.cast::<[f32; 8]>().read_unaligned() }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the caller's promise.
        unsafe { p.cast::<[f32; 8]>().write_unaligned(self) }
    }
    #[inline(always)]
    fn splat(v: f32) -> Self {
        [v; 8]
    }
    #[inline(always)]
    fn mul_add(a: Self, b: Self, c: Self) -> Self {
        std::array::from_fn(|i| a[i].mul_add(b[i], c[i]))
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::Vector;

    // SAFETY (every block below): these run only inlined into functions compiled for AVX2
    // and FMA (`__m256`) or AVX-512 (`__m512`), on CPUs that have them; loads and stores
    // are unaligned.
    impl Vector for __m256 {
        const LANES: usize = 8;
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            unsafe { _mm256_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            unsafe { _mm256_storeu_ps(p, self) }
        }
        #[inline(always)]
        fn splat(v: f32) -> Self {
            unsafe { _mm256_set1_ps(v) }
        }
        #[inline(always)]
        fn mul_add(a: Self, b: Self, c: Self) -> Self {
            unsafe { _mm256_fmadd_ps(a, b, c) }
        }
    }

    impl Vector for __m512 {
        const LANES: usize = 16;
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            unsafe { _mm512_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            unsafe { _mm512_storeu_ps(p, self) }
        }
        #[inline(always)]
        fn splat(v: f32) -> Self {
            unsafe { _mm512_set1_ps(v) }
        }
        #[inline(always)]
        fn mul_add(a: Self, b: Self, c: Self) -> Self {
            unsafe { _mm512_fmadd_ps(a, b, c) }
        }
    }
}

/// `tile[r] += sum_kk x[r * stride + kk] panel[kk]` for `R` rows: `tile` `[R, 2 LANES]`,
/// `panel` `[depth, 2 LANES]`, the tile in `2 R` registers.
#[inline(always)]
fn block<V: Vector, const R: usize>(x: &[f32], stride: usize, panel: &[f32], tile: &mut [f32]) {
    let lanes = V::LANES;
    let width = 2 * lanes;
    let depth = panel.len() / width;
    assert!(x.len() >= (R - 1) * stride + depth && tile.len() == R * width);
    assert_eq!(panel.len(), depth * width);
    let (x, panel, tile) = (x.as_ptr(), panel.as_ptr(), tile.as_mut_ptr());
    // SAFETY: every offset below stays inside the slices, by the asserts above.
    unsafe {
        let mut acc = [[V::splat(0.0); 2]; R];
        for (r, acc) in acc.iter_mut().enumerate() {
            *acc = [
                V::load(tile.add(r * width)),
                V::load(tile.add(r * width + lanes)),
            ];
        }
        for kk in 0..depth {
            let w = [
                V::load(panel.add(kk * width)),
                V::load(panel.add(kk * width + lanes)),
            ];
            for (r, acc) in acc.iter_mut().enumerate() {
                let v = V::splat(*x.add(r * stride + kk));
                acc[0] = V::mul_add(v, w[0], acc[0]);
                acc[1] = V::mul_add(v, w[1], acc[1]);
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            acc[0].store(tile.add(r * width));
            acc[1].store(tile.add(r * width + lanes));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) as f32)
            .map(|v| v / (1 << 24) as f32 - 0.5)
            .collect()
    }

    /// `x w + b` in f64, row by row.
    fn reference(x: &[f32], w: &[f32], b: &[f32], [m, k, n]: [usize; 3]) -> Vec<f64> {
        let mut y = Vec::with_capacity(m * n);
        for r in 0..m {
            for c in 0..n {
                let sum: f64 = (0..k)
                    .map(|i| x[r * k + i] as f64 * w[i * n + c] as f64)
                    .sum();
                y.push(sum + b[c] as f64);
            }
        }
        y
    }

    #[test]
    fn a_product_by_packed_panels_equals_the_product_at_every_size_and_thread_count() {
        // Rows below, at and past a tile; depths below and past a block; widths below, at
        // and past a panel; large enough to split between threads.
        for [m, k, n] in [
            [1, 5, 3],
            [3, 130, 32],
            [7, 257, 33],
            [13, 64, 100],
            [96, 300, 70],
        ] {
            let x = values(m * k, 1);
            let w = values(k * n, 2);
            let b = values(n, 3);
            let want = reference(&x, &w, &b, [m, k, n]);
            let panels = Panels::pack(&w, [k, n], [n, 1]);
            let got = panels.product(&x, m, Some(&b));
            assert_eq!(got.len(), m * n);
            for (i, (&g, &r)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g as f64 - r).abs() < 1e-4,
                    "[{m},{k},{n}] at {i}: {g} against {r}"
                );
            }
            let one_thread = rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .unwrap();
            assert_eq!(one_thread.install(|| panels.product(&x, m, Some(&b))), got);
            // Packed from the transposed layout `[n, k]`, read with its strides.
            let mut wt = vec![0.0; k * n];
            for i in 0..k {
                for c in 0..n {
                    wt[c * k + i] = w[i * n + c];
                }
            }
            let from_transposed = Panels::pack(&wt, [k, n], [1, k]);
            assert_eq!(from_transposed.product(&x, m, Some(&b)), got);
            let unbiased = panels.product(&x, m, None);
            for (i, (&u, &g)) in unbiased.iter().zip(&got).enumerate() {
                assert!((u + b[i % n] - g).abs() < 1e-4);
            }
        }
    }
}
