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

use super::Isa;

/// Rows of a tile: six rows of two vector registers keep twelve accumulators, two columns
/// of the panel and the row's value in the sixteen AVX2 registers.
const ROWS: usize = 6;
/// Values of a panel's block that a tile sums before storing (16 KB, which stays in L1
/// while every row block runs over it).
const BLOCK: usize = 4096;
/// Below this many multiply-adds a product runs on the calling thread.
const THREADED: usize = 1 << 18;
/// From this many rows on, threads split a product's rows rather than its panels.
const TALL: usize = 256;

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

/// Columns of a panel on `isa`: two of its vector registers (the plain build uses the AVX2
/// width).
fn panel_width(isa: Isa) -> usize {
    match isa {
        Isa::Avx512 => 32,
        Isa::Avx2 | Isa::Plain => 16,
    }
}

impl Panels {
    /// Packs `w` `[k, n]`, given with its (row, column) strides in elements.
    pub fn pack(w: &[f32], [k, n]: [usize; 2], [row, col]: [usize; 2]) -> Self {
        let width = panel_width(Isa::detect());
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
        assert_eq!(x.len(), m * self.k, "x holds [{m}, {}]", self.k);
        self.product_strided(x, m, [self.k, 1], bias)
    }

    /// `x w + bias`, `[m, n]` row-major, for `x` `[m, k]` given with its (row, column)
    /// strides in elements (`[1, m]` reads a row-major `[k, m]` as its transpose).
    ///
    /// The threads split the output: by panels while it has few rows (each thread streams
    /// its own panels of the weight once), by rows once it has [`TALL`] or more (each thread
    /// writes its rows in place).
    pub fn product_strided(
        &self,
        x: &[f32],
        m: usize,
        [row, col]: [usize; 2],
        bias: Option<&[f32]>,
    ) -> Vec<f32> {
        let (k, n, width) = (self.k, self.n, self.width);
        assert!(bias.is_none_or(|b| b.len() == n), "bias holds [{n}]");
        if m == 0 || n == 0 {
            return Vec::new();
        }
        if k == 0 {
            return match bias {
                Some(b) => b.repeat(m),
                None => vec![0.0; m * n],
            };
        }
        assert!(
            x.len() > (m - 1) * row + (k - 1) * col,
            "x holds [{m}, {k}]"
        );
        let panels = n.div_ceil(width);
        // The bias padded to whole panels, where the first block of each tile starts.
        let bias = bias.map(|b| {
            let mut padded = b.to_vec();
            padded.resize(panels * width, 0.0);
            padded
        });
        let bias = bias.as_deref();
        if m >= TALL {
            // Rows split between threads, written in place.
            let mut y = vec![0.0; m * n];
            self.tall(x, m, [row, col], bias, &mut y, false);
            return y;
        }
        let run = |job: Job, out: &mut [f32]| job.run_on(Isa::detect(), out);
        let job = |first: usize, panels: usize| Job {
            weight: self,
            x,
            strides: [row, col],
            m,
            bias,
            first,
            panels,
            tall: false,
            accumulate: false,
        };
        let threads = rayon::current_num_threads();
        let threaded = m * n * k >= THREADED && threads > 1;
        // Panels split between threads, each writing `[panels, m, width]`, then laid out
        // `[m, n]`.
        let mut tiles = vec![0.0; panels * m * width];
        if !threaded || panels == 1 {
            run(job(0, panels), &mut tiles);
        } else {
            let per_thread = panels.div_ceil(threads);
            tiles
                .par_chunks_mut(per_thread * m * width)
                .enumerate()
                .for_each(|(i, out)| {
                    let count = out.len() / (m * width);
                    run(job(i * per_thread, count), out)
                });
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
    /// `out += x w`, `[m, n]` row-major, for `x` `[m, k]` given with its (row, column)
    /// strides in elements: [`Self::product_strided`] added to what `out` holds, in place
    /// once the product has [`TALL`] rows or more (each output is then `out + x[0] w[0] + ..`,
    /// added in order of `k`).
    pub fn add_product_strided(
        &self,
        x: &[f32],
        m: usize,
        [row, col]: [usize; 2],
        out: &mut [f32],
    ) {
        let (k, n) = (self.k, self.n);
        assert_eq!(out.len(), m * n, "out holds [{m}, {n}]");
        if m < TALL || k == 0 {
            let y = self.product_strided(x, m, [row, col], None);
            for (out, y) in out.iter_mut().zip(y) {
                *out += y;
            }
            return;
        }
        assert!(
            x.len() > (m - 1) * row + (k - 1) * col,
            "x holds [{m}, {k}]"
        );
        self.tall(x, m, [row, col], None, out, true);
    }

    /// The product of a tall `x` `[m, k]` (`m >= TALL`) into `out` `[m, n]` row-major, the
    /// threads splitting its rows, each tile starting from the padded `bias`, or from what
    /// `out` holds when `accumulate`.
    fn tall(
        &self,
        x: &[f32],
        m: usize,
        [row, col]: [usize; 2],
        bias: Option<&[f32]>,
        out: &mut [f32],
        accumulate: bool,
    ) {
        let (k, n) = (self.k, self.n);
        let threads = rayon::current_num_threads();
        let per_thread = if m * n * k >= THREADED && threads > 1 {
            m.div_ceil(threads).div_ceil(ROWS) * ROWS
        } else {
            m
        };
        let isa = Isa::detect();
        out.par_chunks_mut(per_thread * n)
            .enumerate()
            .for_each(|(i, out)| {
                let first_row = i * per_thread;
                let job = Job {
                    weight: self,
                    x: &x[first_row * row..],
                    strides: [row, col],
                    m: out.len() / n,
                    bias,
                    first: 0,
                    panels: n.div_ceil(self.width),
                    tall: true,
                    accumulate,
                };
                job.run_on(isa, out)
            });
    }
}

/// One thread's part of a product: `m` rows of `x` (from its first) against panels
/// `first..first + panels`.
struct Job<'a> {
    weight: &'a Panels,
    x: &'a [f32],
    strides: [usize; 2],
    m: usize,
    bias: Option<&'a [f32]>,
    first: usize,
    panels: usize,
    /// Whether the output is `[m, n]` row-major (rows split between threads) rather than
    /// `[panels, m, width]`.
    tall: bool,
    /// Whether the sums start from what a tall output holds (rather than the bias or zero).
    accumulate: bool,
}

impl Job<'_> {
    /// Writes the output into `out` with the build for `isa`.
    fn run_on(&self, isa: Isa, out: &mut [f32]) {
        match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU has the features `run_avx512` is compiled for.
            Isa::Avx512 => unsafe { self.run_avx512(out) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above, for `run_avx2`.
            Isa::Avx2 => unsafe { self.run_avx2(out) },
            _ => self.run::<[f32; 8]>(out),
        }
    }

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

    /// Where row `r`'s values of panel `p` (counted from `first`) start in `out`.
    #[inline(always)]
    fn at(&self, p: usize, r: usize) -> usize {
        let width = self.weight.width;
        if self.tall {
            r * self.weight.n + (self.first + p) * width
        } else {
            (p * self.m + r) * width
        }
    }

    /// Writes the output into `out`, for panels two `V` wide: the bias, then block by block
    /// of depth the tiles of [`ROWS`] rows. In a tall output the last panel's columns past
    /// `n` have no room, and its tiles go through a buffer.
    #[inline(always)]
    fn run<V: Vector>(&self, out: &mut [f32]) {
        let Panels {
            k,
            n,
            values,
            width,
        } = self.weight;
        let (k, n, m, width) = (*k, *n, self.m, *width);
        assert_eq!(width, 2 * V::LANES, "panels packed for this CPU");
        let [row, col] = self.strides;
        let columns = |p: usize| (n - (self.first + p) * width).min(width);
        let mut buffer = vec![0.0; ROWS * width];
        let depth = BLOCK / width;
        for k0 in (0..k).step_by(depth) {
            let depth = depth.min(k - k0);
            for p in 0..self.panels {
                let panel = &values[((self.first + p) * k + k0) * width..][..depth * width];
                // The first block starts from the bias, the others from the tile.
                let start = match (k0, self.bias) {
                    (0, _) if self.accumulate => Start::Tile,
                    (0, Some(b)) => Start::From(&b[(self.first + p) * width..][..width]),
                    (0, None) => Start::Zero,
                    _ => Start::Tile,
                };
                let narrow = self.tall && columns(p) < width;
                let mut r0 = 0;
                while r0 < m {
                    let take = ROWS.min(m - r0);
                    let x = &self.x[r0 * row + k0 * col..];
                    let tile = if self.tall {
                        if narrow {
                            if k0 > 0 || self.accumulate {
                                for r in 0..take {
                                    let from = &out[self.at(p, r0 + r)..][..columns(p)];
                                    buffer[r * width..][..from.len()].copy_from_slice(from);
                                }
                            }
                            &mut buffer[..take * width]
                        } else {
                            // Rows `n` apart: a tile of one row at a time.
                            &mut out[self.at(p, r0)..]
                        }
                    } else {
                        &mut out[self.at(p, r0)..][..take * width]
                    };
                    let stride = if self.tall && !narrow { n } else { width };
                    match take {
                        6 => block::<V, 6>(x, [row, col], panel, tile, stride, start),
                        5 => block::<V, 5>(x, [row, col], panel, tile, stride, start),
                        4 => block::<V, 4>(x, [row, col], panel, tile, stride, start),
                        3 => block::<V, 3>(x, [row, col], panel, tile, stride, start),
                        2 => block::<V, 2>(x, [row, col], panel, tile, stride, start),
                        _ => block::<V, 1>(x, [row, col], panel, tile, stride, start),
                    }
                    if narrow {
                        for r in 0..take {
                            let at = self.at(p, r0 + r);
                            let cols = columns(p);
                            out[at..][..cols].copy_from_slice(&buffer[r * width..][..cols]);
                        }
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

/// What a tile's sums start from.
#[derive(Clone, Copy)]
enum Start<'a> {
    /// The tile's values (a later block of depth).
    Tile,
    /// Zero (the first block, no bias).
    Zero,
    /// The bias of the panel's columns, `[2 LANES]` (the first block).
    From(&'a [f32]),
}

/// `tile[r] = start + sum_kk x[r * row + kk * col] panel[kk]` for `R` rows: `panel` `[depth,
/// 2 LANES]`, and `tile`'s rows `2 LANES` long, `stride` apart; the tile in `2 R` registers,
/// read from `tile` only when `start` says so.
#[inline(always)]
fn block<V: Vector, const R: usize>(
    x: &[f32],
    [row, col]: [usize; 2],
    panel: &[f32],
    tile: &mut [f32],
    stride: usize,
    start: Start,
) {
    let lanes = V::LANES;
    let width = 2 * lanes;
    let depth = panel.len() / width;
    assert_eq!(panel.len(), depth * width);
    assert!(depth == 0 || x.len() > (R - 1) * row + (depth - 1) * col);
    assert!(stride >= width && tile.len() >= (R - 1) * stride + width);
    let (x, panel, tile) = (x.as_ptr(), panel.as_ptr(), tile.as_mut_ptr());
    // SAFETY: every offset below stays inside the slices, by the asserts above.
    unsafe {
        let mut acc = [[V::splat(0.0); 2]; R];
        match start {
            Start::Tile => {
                for (r, acc) in acc.iter_mut().enumerate() {
                    let at = tile.add(r * stride);
                    *acc = [V::load(at), V::load(at.add(lanes))];
                }
            }
            Start::From(bias) => {
                assert_eq!(bias.len(), width);
                let bias = [V::load(bias.as_ptr()), V::load(bias.as_ptr().add(lanes))];
                acc = [bias; R];
            }
            Start::Zero => {}
        }
        for kk in 0..depth {
            let w = [
                V::load(panel.add(kk * width)),
                V::load(panel.add(kk * width + lanes)),
            ];
            for (r, acc) in acc.iter_mut().enumerate() {
                let v = V::splat(*x.add(r * row + kk * col));
                acc[0] = V::mul_add(v, w[0], acc[0]);
                acc[1] = V::mul_add(v, w[1], acc[1]);
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            let at = tile.add(r * stride);
            acc[0].store(at);
            acc[1].store(at.add(lanes));
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
    fn a_product_by_packed_panels_equals_the_product_at_every_size_layout_and_thread_count() {
        // Rows below, at and past a tile; depths below and past a block; widths below, at
        // and past a panel; large enough to split between threads.
        // Tall outputs (rows split between threads) with a narrow last panel too.
        for [m, k, n] in [
            [1, 5, 3],
            [3, 130, 32],
            [7, 257, 33],
            [13, 64, 100],
            [96, 300, 70],
            [300, 40, 37],
            [517, 19, 64],
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
            // `x` read through the strides of its transpose.
            let mut xt = vec![0.0; m * k];
            for r in 0..m {
                for i in 0..k {
                    xt[i * m + r] = x[r * k + i];
                }
            }
            assert_eq!(panels.product_strided(&xt, m, [1, m], Some(&b)), got);
            let unbiased = panels.product(&x, m, None);
            for (i, (&u, &g)) in unbiased.iter().zip(&got).enumerate() {
                assert!((u + b[i % n] - g).abs() < 1e-4);
            }
            // Added in place to what an output holds: twice the product from zero, and
            // the product plus the bias from the bias repeated.
            let mut twice = vec![0.0; m * n];
            panels.add_product_strided(&x, m, [k, 1], &mut twice);
            assert_eq!(twice, unbiased);
            panels.add_product_strided(&xt, m, [1, m], &mut twice);
            for (i, (&t, &u)) in twice.iter().zip(&unbiased).enumerate() {
                assert!((t - 2.0 * u).abs() < 1e-4, "[{m},{k},{n}] at {i}");
            }
            let mut biased = b.repeat(m);
            one_thread.install(|| panels.add_product_strided(&x, m, [k, 1], &mut biased));
            for (i, (&g, &r)) in biased.iter().zip(&want).enumerate() {
                assert!((g as f64 - r).abs() < 1e-4, "[{m},{k},{n}] at {i}");
            }
        }
    }
}
