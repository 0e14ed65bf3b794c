//! The arithmetic of the fused operations on plain `f32` slices, row-major.
#![cfg_attr(not(feature = "flex"), allow(dead_code))]

use rayon::prelude::*;

/// Sizes of one step: `n` rows, `p` positions, `a` attention width, `e` feature width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    pub n: usize,
    pub p: usize,
    pub a: usize,
    pub e: usize,
}

/// `tanh` as a rational function (the odd 13/6 form that Eigen uses for `float`), within
/// 5e-7 of `tanh` over all of `f32`: only multiplications, additions, a division and a
/// clamp, so that it vectorises.
#[inline(always)]
fn tanh(x: f32) -> f32 {
    let x = x.clamp(-9.0, 9.0);
    let x2 = x * x;
    let mut p = -2.760_768_5e-16_f32;
    p = p * x2 + 2.000_188e-13;
    p = p * x2 - 8.604_672e-11;
    p = p * x2 + 5.122_297e-8;
    p = p * x2 + 1.485_722_4e-5;
    p = p * x2 + 6.372_619_3e-4;
    p = p * x2 + 4.893_524_6e-3;
    let mut q = 1.198_258_4e-6_f32;
    q = q * x2 + 1.185_347_1e-4;
    q = q * x2 + 2.268_434_6e-3;
    q = q * x2 + 4.893_525e-3;
    x * p / q
}

/// `x . y` with sixteen partial sums, which the compiler keeps in vector registers.
#[inline(always)]
fn dot(x: &[f32], y: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let mut xs = x.chunks_exact(16);
    let mut ys = y.chunks_exact(16);
    for (xc, yc) in (&mut xs).zip(&mut ys) {
        for ((a, &x), &y) in acc.iter_mut().zip(xc).zip(yc) {
            *a += x * y;
        }
    }
    let tail: f32 = xs
        .remainder()
        .iter()
        .zip(ys.remainder())
        .map(|(a, b)| a * b)
        .sum();
    acc.iter().sum::<f32>() + tail
}

/// Defines `fn name(args) { body }` compiled three times, for AVX-512, for AVX2 with FMA and
/// for the plain target, and run as the build [`super::Isa::detect`] picks for this CPU.
///
/// The body is an `#[inline(always)]` function, so it is compiled into each of the builds
/// with their instruction sets (a closure handed to a dispatcher is not inlined that way, and
/// its loops stay at the plain target's SSE2). The arithmetic is written without fused
/// multiply-adds, so the three builds give the same values.
macro_rules! vectorised {
    ($(#[$meta:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        fn $name($($arg: $ty),*) {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,avx,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx512($($arg: $ty),*) {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx2,avx,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2($($arg: $ty),*) {
                    body($($arg),*)
                }
                match $crate::fused::Isa::detect() {
                    // SAFETY: this CPU has the instruction sets `avx512` is compiled for.
                    $crate::fused::Isa::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: as above, for `avx2`.
                    $crate::fused::Isa::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::fused::Isa::Plain => {}
                }
            }
            body($($arg),*)
        }
    };
}

vectorised! {
/// One row of the forward pass: writes `out` = `[context (e), alpha (p)]`, and the
/// energies `[p, a]` into `energy`, or into its first `a` values one position at a time
/// when it is that short.
fn forward_row(
    d: Dims,
    features: &[f32],
    projected: &[f32],
    query: &[f32],
    w: &[f32],
    energy: &mut [f32],
    out: &mut [f32],
) {
    let (context, alpha) = out.split_at_mut(d.e);
    let keep = energy.len() == d.p * d.a;
    for (position, (score, projected)) in alpha
        .iter_mut()
        .zip(projected.chunks_exact(d.a))
        .enumerate()
    {
        let energy = &mut energy[if keep { position * d.a } else { 0 }..][..d.a];
        for ((t, &x), &y) in energy.iter_mut().zip(projected).zip(query) {
            *t = tanh(x + y);
        }
        *score = dot(energy, w);
    }
    let max = alpha.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut total = 0.0;
    for s in alpha.iter_mut() {
        *s = (*s - max).exp();
        total += *s;
    }
    for s in alpha.iter_mut() {
        *s /= total;
    }
    context.fill(0.0);
    for (&weight, feature) in alpha.iter().zip(features.chunks_exact(d.e)) {
        for (c, &f) in context.iter_mut().zip(feature) {
            *c += weight * f;
        }
    }
}
}

/// The forward pass: `[n, e + p]` (context, then alpha), and when `keep_energy` the
/// energies `tanh(projected + query)` `[n, p, a]` that the backward pass reads (empty
/// otherwise).
pub fn forward(
    d: Dims,
    features: &[f32],
    projected: &[f32],
    query: &[f32],
    w: &[f32],
    keep_energy: bool,
) -> (Vec<f32>, Vec<f32>) {
    let mut out = vec![0.0; d.n * (d.e + d.p)];
    let row = |row: usize, energy: &mut [f32], out: &mut [f32]| {
        forward_row(
            d,
            &features[row * d.p * d.e..][..d.p * d.e],
            &projected[row * d.p * d.a..][..d.p * d.a],
            &query[row * d.a..][..d.a],
            w,
            energy,
            out,
        )
    };
    let energy = if keep_energy {
        let mut energy = vec![0.0; d.n * d.p * d.a];
        out.par_chunks_mut(d.e + d.p)
            .zip(energy.par_chunks_mut(d.p * d.a))
            .enumerate()
            .for_each(|(i, (out, energy))| row(i, energy, out));
        energy
    } else {
        out.par_chunks_mut(d.e + d.p)
            .enumerate()
            .for_each_init(|| vec![0.0; d.a], |scratch, (i, out)| row(i, scratch, out));
        Vec::new()
    };
    (out, energy)
}

/// Gradients of the fused step.
pub struct Gradients {
    /// `[n, p, a]`; empty when added into [`Sums::projected`].
    pub projected: Vec<f32>,
    /// `[n, a]`.
    pub query: Vec<f32>,
    /// `[a]`.
    pub w: Vec<f32>,
    /// `[n, p, e]`, when asked for and not added into [`Sums::features`].
    pub features: Option<Vec<f32>>,
}

/// Where the backward pass adds the gradients of the features and their projection rather
/// than returning them: sums over the steps, whose first `n` rows are this step's.
#[derive(Default)]
pub struct Sums<'a> {
    /// `[>= n, p, a]`.
    pub projected: Option<&'a mut [f32]>,
    /// `[>= n, p, e]`.
    pub features: Option<&'a mut [f32]>,
}

vectorised! {
/// One row of the backward pass; `dw` receives this row's part of `w`'s gradient.
#[allow(clippy::too_many_arguments)]
fn backward_row(
    d: Dims,
    features: &[f32],
    alpha: &[f32],
    energy: &[f32],
    w: &[f32],
    d_out: &[f32],
    d_projected: &mut [f32],
    add: bool,
    d_query: &mut [f32],
    dw: &mut [f32],
    ds: &mut [f32],
) {
    let (d_context, d_alpha) = d_out.split_at(d.e);
    for ((ds, &da), feature) in ds.iter_mut().zip(d_alpha).zip(features.chunks_exact(d.e)) {
        *ds = da + dot(d_context, feature);
    }
    let mean: f32 = alpha.iter().zip(ds.iter()).map(|(a, g)| a * g).sum();
    for (ds, &a) in ds.iter_mut().zip(alpha) {
        *ds = a * (*ds - mean);
    }
    d_query.fill(0.0);
    dw.fill(0.0);
    for ((&s, energy), d_projected) in ds
        .iter()
        .zip(energy.chunks_exact(d.a))
        .zip(d_projected.chunks_exact_mut(d.a))
    {
        for ((((g, &t), &w), dq), dw) in d_projected
            .iter_mut()
            .zip(energy)
            .zip(w)
            .zip(d_query.iter_mut())
            .zip(dw.iter_mut())
        {
            let v = s * w * (1.0 - t * t);
            *g = if add { *g + v } else { v };
            *dq += v;
            *dw += s * t;
        }
    }
}
}

/// The backward pass, given the forward pass's `out` and `energy` and the gradient of
/// `out`; the gradients of the projection and of the features (when `want_features`) are
/// added into `sums` where it has room for them.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    d: Dims,
    features: &[f32],
    out: &[f32],
    energy: &[f32],
    w: &[f32],
    d_out: &[f32],
    want_features: bool,
    sums: Sums,
) -> Gradients {
    let mut fresh = Vec::new();
    let add_projected = sums.projected.is_some();
    let d_projected = match sums.projected {
        Some(sum) => &mut sum[..d.n * d.p * d.a],
        None => {
            fresh = vec![0.0; d.n * d.p * d.a];
            &mut fresh[..]
        }
    };
    let mut d_query = vec![0.0; d.n * d.a];
    let mut dw_rows = vec![0.0; d.n * d.a];
    let mut ds = vec![0.0; d.n * d.p];
    d_projected
        .par_chunks_mut(d.p * d.a)
        .zip(d_query.par_chunks_mut(d.a))
        .zip(dw_rows.par_chunks_mut(d.a))
        .zip(ds.par_chunks_mut(d.p))
        .enumerate()
        .for_each(|(row, (((d_projected, d_query), dw), ds))| {
            backward_row(
                d,
                &features[row * d.p * d.e..][..d.p * d.e],
                &out[row * (d.e + d.p) + d.e..][..d.p],
                &energy[row * d.p * d.a..][..d.p * d.a],
                w,
                &d_out[row * (d.e + d.p)..][..d.e + d.p],
                d_projected,
                add_projected,
                d_query,
                dw,
                ds,
            )
        });
    // Rows added in order, so that the sum is the same whatever the threads did.
    let dw = sum_rows(&dw_rows, d.a);
    // d features_p = alpha_p d context.
    let feature_rows = |d_features: &mut [f32], add: bool| {
        d_features
            .par_chunks_mut(d.p * d.e)
            .enumerate()
            .for_each(|(row, d_features)| {
                let alpha = &out[row * (d.e + d.p) + d.e..][..d.p];
                let d_context = &d_out[row * (d.e + d.p)..][..d.e];
                feature_gradients(alpha, d_context, d_features, add)
            })
    };
    let features = match (want_features, sums.features) {
        (false, _) => None,
        (true, Some(sum)) => {
            feature_rows(&mut sum[..d.n * d.p * d.e], true);
            None
        }
        (true, None) => {
            let mut d_features = vec![0.0; d.n * d.p * d.e];
            feature_rows(&mut d_features, false);
            Some(d_features)
        }
    };
    Gradients {
        projected: fresh,
        query: d_query,
        w: dw,
        features,
    }
}

vectorised! {
/// One row's `d features_p = alpha_p d context`, `[p, e]`, or added to `d_features` when
/// `add`.
fn feature_gradients(alpha: &[f32], d_context: &[f32], d_features: &mut [f32], add: bool) {
    for (&a, g) in alpha.iter().zip(d_features.chunks_exact_mut(d_context.len())) {
        for (g, &dc) in g.iter_mut().zip(d_context) {
            *g = if add { *g + a * dc } else { a * dc };
        }
    }
}
}

/// The sum of the rows of `rows` (`[_, width]`, row-major), added in row order.
pub fn sum_rows(rows: &[f32], width: usize) -> Vec<f32> {
    let mut total = vec![0.0; width];
    for row in rows.chunks_exact(width) {
        for (total, &x) in total.iter_mut().zip(row) {
            *total += x;
        }
    }
    total
}

/// `sigmoid(x) = (1 + tanh(x / 2)) / 2`, through the rational [`tanh`].
#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    0.5 + 0.5 * tanh(0.5 * x)
}

vectorised! {
/// One row of the LSTM cell forward, from its gates `[4h]` and previous cell state `[h]`:
/// `out` `[2h]` and, unless it is empty, `saved` `[5h]`.
fn lstm_forward_row(gates: &[f32], c_prev: &[f32], out: &mut [f32], saved: &mut [f32]) {
    let h = c_prev.len();
    let (gi, rest) = gates.split_at(h);
    let (gf, rest) = rest.split_at(h);
    let (gg, go) = rest.split_at(h);
    let (new_h, new_c) = out.split_at_mut(h);
    let activations = gi.iter().zip(gf).zip(gg).zip(go).zip(c_prev);
    for (j, ((((&gi, &gf), &gg), &go), &c_prev)) in activations.enumerate() {
        let (i, f, g, o) = (sigmoid(gi), sigmoid(gf), tanh(gg), sigmoid(go));
        let c = f * c_prev + i * g;
        let tc = tanh(c);
        new_c[j] = c;
        new_h[j] = o * tc;
        if !saved.is_empty() {
            for (k, value) in [i, f, g, o, tc].into_iter().enumerate() {
                saved[k * h + j] = value;
            }
        }
    }
}
}

/// The LSTM cell forward: `[n, 2h]` (new hidden, then new cell) and, when `keep`, the
/// activations `[n, 5h]` that the backward pass reads (`i, f, g, o` after their
/// nonlinearities, then `tanh(c)`), empty otherwise.
pub fn lstm_forward(
    n: usize,
    h: usize,
    gates: &[f32],
    cell: &[f32],
    keep: bool,
) -> (Vec<f32>, Vec<f32>) {
    let mut out = vec![0.0; n * 2 * h];
    let mut saved = if keep {
        vec![0.0; n * 5 * h]
    } else {
        Vec::new()
    };
    let row = |row: usize, out: &mut [f32], saved: &mut [f32]| {
        let gates = &gates[row * 4 * h..][..4 * h];
        let c_prev = &cell[row * h..][..h];
        lstm_forward_row(gates, c_prev, out, saved)
    };
    if keep {
        out.par_chunks_mut(2 * h)
            .zip(saved.par_chunks_mut(5 * h))
            .enumerate()
            .for_each(|(i, (out, saved))| row(i, out, saved));
    } else {
        out.par_chunks_mut(2 * h)
            .enumerate()
            .for_each(|(i, out)| row(i, out, &mut []));
    }
    (out, saved)
}

vectorised! {
/// One row of the LSTM cell backward: from the row's `saved` activations `[5h]`, previous
/// cell state `[h]` and output gradient `[2h]`, the gradients of its gates `[4h]` and of
/// its previous cell state `[h]`.
fn lstm_backward_row(
    saved: &[f32],
    c_prev: &[f32],
    d_out: &[f32],
    d_gates: &mut [f32],
    d_cell: &mut [f32],
) {
    let h = c_prev.len();
    let (dh, dc_out) = d_out.split_at(h);
    let inputs = dh.iter().zip(dc_out).zip(c_prev).zip(d_cell.iter_mut());
    for (j, (((&dh, &dc_out), &c_prev), d_cell)) in inputs.enumerate() {
        let [i, f, g, o, tc] = [0, 1, 2, 3, 4].map(|k| saved[k * h + j]);
        let dc = dc_out + dh * o * (1.0 - tc * tc);
        d_gates[j] = dc * g * i * (1.0 - i);
        d_gates[h + j] = dc * c_prev * f * (1.0 - f);
        d_gates[2 * h + j] = dc * i * (1.0 - g * g);
        d_gates[3 * h + j] = dh * tc * o * (1.0 - o);
        *d_cell = dc * f;
    }
}
}

/// The LSTM cell backward, given the forward pass's `saved` activations, the previous
/// cell state and the gradient `[n, 2h]` of its output: the gradients of the gates
/// `[n, 4h]` and of the previous cell state `[n, h]`.
pub fn lstm_backward(
    n: usize,
    h: usize,
    saved: &[f32],
    cell: &[f32],
    d_out: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let mut d_gates = vec![0.0; n * 4 * h];
    let mut d_cell = vec![0.0; n * h];
    d_gates
        .par_chunks_mut(4 * h)
        .zip(d_cell.par_chunks_mut(h))
        .enumerate()
        .for_each(|(row, (d_gates, d_cell))| {
            let saved = &saved[row * 5 * h..][..5 * h];
            let c_prev = &cell[row * h..][..h];
            let d_out = &d_out[row * 2 * h..][..2 * h];
            lstm_backward_row(saved, c_prev, d_out, d_gates, d_cell)
        });
    (d_gates, d_cell)
}

/// `exp(x)` as Cephes' `expf`: `x = n ln 2 + r` with `|r| <= ln 2 / 2`, a polynomial for
/// `exp(r)` and `2^n` put into the exponent's bits. Within 2e-7 relative of `exp` for `x` in
/// `[-87, 88]`; the clamp keeps lower inputs at `exp(-87.3)` (about 1e-38, no subnormals)
/// and higher ones at `exp(88)`. Only multiplications, additions, a rounding and integer
/// conversions, so that it vectorises.
#[inline(always)]
fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.336_54, 88.0);
    let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
    // ln 2 in two parts, the first (355/512) short enough that `n` times it is exact.
    let r = x - n * (355.0 / 512.0) + n * 2.121_944_4e-4;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let e = p * (r * r) + r + 1.0;
    e * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// The largest value of `x` (`-inf` when empty), with sixteen partial maxima.
#[inline(always)]
fn max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 16];
    let mut chunks = x.chunks_exact(16);
    for chunk in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(chunk) {
            *a = if x > *a { x } else { *a };
        }
    }
    let tail = chunks
        .remainder()
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    acc.iter().copied().fold(tail, f32::max)
}

/// The sum of `x`, with sixteen partial sums.
#[inline(always)]
fn sum(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let mut chunks = x.chunks_exact(16);
    for chunk in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(chunk) {
            *a += x;
        }
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

vectorised! {
/// One row of log-softmax: `out = x - max - ln(sum(exp(x - max)))`, `out` first holding the
/// exponentials.
fn log_softmax_row(x: &[f32], out: &mut [f32]) {
    let top = max(x);
    for (e, &x) in out.iter_mut().zip(x) {
        *e = exp(x - top);
    }
    let shift = top + sum(out).ln();
    for (o, &x) in out.iter_mut().zip(x) {
        *o = x - shift;
    }
}
}

vectorised! {
/// One row of log-softmax's backward, from its output `y` and output gradient `d_y`:
/// `d x = d y - exp(y) sum(d y)`, `d_x` first holding `exp(y)`.
fn log_softmax_backward_row(y: &[f32], d_y: &[f32], d_x: &mut [f32]) {
    let total = sum(d_y);
    for (d, &y) in d_x.iter_mut().zip(y) {
        *d = exp(y);
    }
    for (d, &g) in d_x.iter_mut().zip(d_y) {
        *d = g - *d * total;
    }
}
}

vectorised! {
/// `out = x sigmoid(g)`, element by element.
fn gate_forward_chunk(x: &[f32], g: &[f32], out: &mut [f32]) {
    for ((o, &x), &g) in out.iter_mut().zip(x).zip(g) {
        *o = x * sigmoid(g);
    }
}
}

vectorised! {
/// The gradients of `x sigmoid(g)`: `d x = d y s` and `d g = d y x s (1 - s)`, `s = sigmoid(g)`.
fn gate_backward_chunk(x: &[f32], g: &[f32], d_y: &[f32], d_x: &mut [f32], d_g: &mut [f32]) {
    let values = x.iter().zip(g).zip(d_y).zip(d_x.iter_mut().zip(d_g.iter_mut()));
    for (((&x, &g), &d_y), (d_x, d_g)) in values {
        let s = sigmoid(g);
        *d_x = d_y * s;
        *d_g = d_y * x * s * (1.0 - s);
    }
}
}

/// Operands of at least this many values in all are split between threads.
const PARALLEL_VALUES: usize = 1 << 15;

/// Values handed to a thread at a time by the elementwise kernels.
const CHUNK: usize = 1 << 12;

/// `x sigmoid(g)`, element by element (`x` and `g` of one length).
pub fn gate(x: &[f32], g: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    let chunk = |((x, g), out): ((&[f32], &[f32]), &mut [f32])| gate_forward_chunk(x, g, out);
    if x.len() >= PARALLEL_VALUES {
        x.par_chunks(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .zip(out.par_chunks_mut(CHUNK))
            .for_each(chunk);
    } else {
        chunk(((x, g), &mut out[..]));
    }
    out
}

/// The gradients of [`gate`]'s `x` and `g` from its output gradient `d_y`.
pub fn gate_backward(x: &[f32], g: &[f32], d_y: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let mut d_x = vec![0.0; x.len()];
    let mut d_g = vec![0.0; x.len()];
    // Chunk `i` of every operand: values `i * CHUNK ..`.
    let chunk = |i: usize, d_x: &mut [f32], d_g: &mut [f32]| {
        let range = i * CHUNK..i * CHUNK + d_x.len();
        let (x, g, d_y) = (&x[range.clone()], &g[range.clone()], &d_y[range]);
        gate_backward_chunk(x, g, d_y, d_x, d_g)
    };
    if x.len() >= PARALLEL_VALUES {
        d_x.par_chunks_mut(CHUNK)
            .zip(d_g.par_chunks_mut(CHUNK))
            .enumerate()
            .for_each(|(i, (d_x, d_g))| chunk(i, d_x, d_g));
    } else {
        d_x.chunks_mut(CHUNK)
            .zip(d_g.chunks_mut(CHUNK))
            .enumerate()
            .for_each(|(i, (d_x, d_g))| chunk(i, d_x, d_g));
    }
    (d_x, d_g)
}

vectorised! {
fn clamp_chunk(values: &mut [f32], lo: f32, hi: f32) {
    for v in values {
        let x = *v;
        // NaN stays NaN, as in `f32::clamp`.
        *v = if x < lo {
            lo
        } else if x > hi {
            hi
        } else {
            x
        };
    }
}
}

/// Each of `values` clamped to `[lo, hi]`, in place.
pub fn clamp(values: &mut [f32], lo: f32, hi: f32) {
    if values.len() >= PARALLEL_VALUES {
        values
            .par_chunks_mut(CHUNK)
            .for_each(|chunk| clamp_chunk(chunk, lo, hi));
    } else {
        clamp_chunk(values, lo, hi);
    }
}

/// Log-softmax over each row of `x` `[rows, width]`, row-major: `[rows, width]`.
pub fn log_softmax(width: usize, x: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    if width == 0 {
        return out;
    }
    let row = |(x, out): (&[f32], &mut [f32])| log_softmax_row(x, out);
    if x.len() >= PARALLEL_VALUES {
        x.par_chunks_exact(width)
            .zip(out.par_chunks_exact_mut(width))
            .for_each(row);
    } else {
        x.chunks_exact(width)
            .zip(out.chunks_exact_mut(width))
            .for_each(row);
    }
    out
}

/// The gradient of [`log_softmax`]'s input from its output `y` and output gradient `d_y`,
/// `[rows, width]` each.
pub fn log_softmax_backward(width: usize, y: &[f32], d_y: &[f32]) -> Vec<f32> {
    let mut d_x = vec![0.0; y.len()];
    if width == 0 {
        return d_x;
    }
    let row =
        |((y, d_y), d_x): ((&[f32], &[f32]), &mut [f32])| log_softmax_backward_row(y, d_y, d_x);
    if y.len() >= PARALLEL_VALUES {
        y.par_chunks_exact(width)
            .zip(d_y.par_chunks_exact(width))
            .zip(d_x.par_chunks_exact_mut(width))
            .for_each(row);
    } else {
        y.chunks_exact(width)
            .zip(d_y.chunks_exact(width))
            .zip(d_x.chunks_exact_mut(width))
            .for_each(row);
    }
    d_x
}

/// The sizes of a depthwise convolution over one plane `[h, w]`: each channel's plane
/// convolved with its own `kernel` filter.
///
/// The kernels below read the plane zero-padded and split into its `stride[0] * stride[1]`
/// phases (phase `(ry, rx)` holds the padded plane's rows `ry, ry + sy, ...` and columns `rx,
/// rx + sx, ...`), each phase `width` values a row. Output `(oy, ox)` then reads tap `(ky,
/// kx)` at `oy * width + ox` plus that tap's offset: every tap is one pass over a contiguous
/// run of `ho * width` values, which vectorises, where the convolution itself strides through
/// the plane. The `width - wo` values past each output row are computed and dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Depthwise {
    /// The plane's height and width.
    pub size: [usize; 2],
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// `[(top, bottom), (left, right)]` zeros.
    pub padding: [(usize, usize); 2],
}

/// A convolution's output height and width, from its input's `size`, `kernel`, `stride` and
/// `[(top, bottom), (left, right)]` `padding`.
pub fn convolved_size(
    size: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [(usize, usize); 2],
) -> [usize; 2] {
    std::array::from_fn(|i| {
        let (before, after) = padding[i];
        (size[i] + before + after - kernel[i]) / stride[i] + 1
    })
}

impl Depthwise {
    /// The output's height and width.
    pub fn out(&self) -> [usize; 2] {
        convolved_size(self.size, self.kernel, self.stride, self.padding)
    }

    /// Values in a row of each phase.
    fn width(&self) -> usize {
        let (left, right) = self.padding[1];
        (self.size[1] + left + right).div_ceil(self.stride[1])
    }

    /// Values of one phase: as many rows as the outputs read, and one more for the last
    /// row's taps past its end.
    fn phase_len(&self) -> usize {
        let rows = self.out()[0] + (self.kernel[0] - 1) / self.stride[0] + 1;
        rows * self.width()
    }

    fn phases_len(&self) -> usize {
        self.stride[0] * self.stride[1] * self.phase_len()
    }

    /// The outputs' run in the phases' layout, `[ho, width]`.
    fn span(&self) -> usize {
        self.out()[0] * self.width()
    }

    /// Where each tap `(ky, kx)` (row-major, as the filter's values) starts reading.
    fn offsets(&self) -> Vec<usize> {
        let ([kh, kw], [sy, sx]) = (self.kernel, self.stride);
        let (width, phase_len) = (self.width(), self.phase_len());
        (0..kh * kw)
            .map(|tap| {
                let (ky, kx) = (tap / kw, tap % kw);
                ((ky % sy) * sx + kx % sx) * phase_len + (ky / sy) * width + kx / sx
            })
            .collect()
    }

    /// Calls `f(at_plane, at_phases, len)` for each run of the plane `[h, w]` that lands
    /// in one row of one phase: `len` values `stride[1]` apart from `at_plane` in the plane,
    /// side by side from `at_phases` in the phases.
    fn runs(&self, mut f: impl FnMut(usize, usize, usize)) {
        let ([h, w], [sy, sx]) = (self.size, self.stride);
        let [(top, _), (left, _)] = self.padding;
        let (width, phase_len) = (self.width(), self.phase_len());
        for iy in 0..h {
            let py = iy + top;
            let row = (py % sy) * sx * phase_len + (py / sy) * width;
            for rx in 0..sx {
                // The first column `ix` with `(ix + left) % sx == rx`, and the columns from
                // it `sx` apart.
                let ix = (rx + sx - left % sx) % sx;
                if ix < w {
                    let (px, len) = (ix + left, (w - ix).div_ceil(sx));
                    f(iy * w + ix, row + (px % sx) * phase_len + px / sx, len);
                }
            }
        }
    }

    /// The plane `x` `[h, w]` into `phases`, whose padding must hold zeros: every plane
    /// writes the same places, so a buffer zeroed once serves every plane.
    fn split(&self, x: &[f32], phases: &mut [f32]) {
        let sx = self.stride[1];
        self.runs(|at, to, len| {
            let to = &mut phases[to..to + len];
            if sx == 1 {
                to.copy_from_slice(&x[at..at + len]);
            } else {
                to.iter_mut()
                    .zip(x[at..].iter().step_by(sx))
                    .for_each(|(to, &x)| *to = x);
            }
        });
    }

    /// The inverse of [`Depthwise::split`]: each plane value from its place in `phases`.
    fn gather(&self, phases: &[f32], x: &mut [f32]) {
        let sx = self.stride[1];
        self.runs(|at, from, len| {
            let from = &phases[from..from + len];
            if sx == 1 {
                x[at..at + len].copy_from_slice(from);
            } else {
                x[at..]
                    .iter_mut()
                    .step_by(sx)
                    .zip(from)
                    .for_each(|(x, &from)| *x = from);
            }
        });
    }
}

vectorised! {
/// `acc` `[ho, width]` = the sum over taps of `weight` times the phases from the tap's
/// offset.
fn depthwise_taps(phases: &[f32], offsets: &[usize], weights: &[f32], acc: &mut [f32]) {
    acc.fill(0.0);
    let len = acc.len();
    for (&at, &w) in offsets.iter().zip(weights) {
        for (a, &x) in acc.iter_mut().zip(&phases[at..at + len]) {
            *a += w * x;
        }
    }
}
}

vectorised! {
/// The transpose of [`depthwise_taps`]: `d_phases` = the sum over taps of `weight` times
/// `d_acc`, placed at the tap's offset.
fn depthwise_spread(d_acc: &[f32], offsets: &[usize], weights: &[f32], d_phases: &mut [f32]) {
    d_phases.fill(0.0);
    for (&at, &w) in offsets.iter().zip(weights) {
        for (d, &g) in d_phases[at..at + d_acc.len()].iter_mut().zip(d_acc) {
            *d += w * g;
        }
    }
}
}

vectorised! {
/// `d_weights[tap]` += `d_acc` . the phases from the tap's offset.
fn depthwise_weight_sums(phases: &[f32], offsets: &[usize], d_acc: &[f32], d_weights: &mut [f32]) {
    for (&at, d_w) in offsets.iter().zip(d_weights) {
        *d_w += dot(d_acc, &phases[at..at + d_acc.len()]);
    }
}
}

/// Planes handed to a thread at a time: about this many multiply-adds.
const DEPTHWISE_WORK: usize = 1 << 15;

/// The depthwise convolution `y` `[planes, ho, wo]` of `x` `[planes, h, w]`, plane `i` by
/// filter `i % channels` of `weights` `[channels, kh * kw]`, plus its `bias` `[channels]`.
/// Planes are split between threads.
pub fn depthwise(
    d: Depthwise,
    channels: usize,
    x: &[f32],
    weights: &[f32],
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let [ho, wo] = d.out();
    let ([h, w], taps) = (d.size, d.kernel[0] * d.kernel[1]);
    let offsets = d.offsets();
    let width = d.width();
    let mut y = vec![0.0; x.len() / (h * w) * ho * wo];
    let scratch = || (vec![0.0; d.phases_len()], vec![0.0; d.span()]);
    let plane = |(phases, acc): &mut (Vec<f32>, Vec<f32>),
                 (i, (y, x)): (usize, (&mut [f32], &[f32]))| {
        let c = i % channels;
        d.split(x, phases);
        depthwise_taps(phases, &offsets, &weights[c * taps..][..taps], acc);
        let b = bias.map_or(0.0, |b| b[c]);
        for (y, acc) in y.chunks_exact_mut(wo).zip(acc.chunks_exact(width)) {
            y.iter_mut().zip(acc).for_each(|(y, &a)| *y = a + b);
        }
    };
    let per_job = DEPTHWISE_WORK.div_ceil(d.span() * taps).max(1);
    y.par_chunks_mut(ho * wo)
        .zip(x.par_chunks(h * w))
        .enumerate()
        .with_min_len(per_job)
        .for_each_init(scratch, plane);
    y
}

/// The gradients of [`depthwise`]'s input `[planes, h, w]` (when `d_input`), filters
/// `[channels, kh * kw]` and bias `[channels]` (when `d_filters`) from its output gradient
/// `d_y` `[planes, ho, wo]`. The input's planes are split between threads, and the filters'
/// channels, each summing its pictures in order.
pub fn depthwise_backward(
    d: Depthwise,
    channels: usize,
    (x, weights): (&[f32], &[f32]),
    d_y: &[f32],
    [d_input, d_filters]: [bool; 2],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let [ho, wo] = d.out();
    let ([h, w], taps) = (d.size, d.kernel[0] * d.kernel[1]);
    let (offsets, width) = (d.offsets(), d.width());
    let planes = x.len() / (h * w);
    // `d y` spread over the phases' layout `[ho, width]`, zero past each row's `wo`.
    let spread = |d_y: &[f32], d_acc: &mut [f32]| {
        d_acc.fill(0.0);
        for (to, from) in d_acc.chunks_exact_mut(width).zip(d_y.chunks_exact(wo)) {
            to[..wo].copy_from_slice(from);
        }
    };
    let per_job = DEPTHWISE_WORK.div_ceil(d.span() * taps).max(1);
    let mut d_x = Vec::new();
    if d_input {
        d_x = vec![0.0; x.len()];
        d_x.par_chunks_mut(h * w)
            .zip(d_y.par_chunks(ho * wo))
            .enumerate()
            .with_min_len(per_job)
            .for_each_init(
                || (vec![0.0; d.phases_len()], vec![0.0; d.span()]),
                |(d_phases, d_acc), (i, (d_x, d_y))| {
                    let c = i % channels;
                    spread(d_y, d_acc);
                    depthwise_spread(d_acc, &offsets, &weights[c * taps..][..taps], d_phases);
                    d.gather(d_phases, d_x);
                },
            );
    }
    let (mut d_w, mut d_b) = (Vec::new(), Vec::new());
    if d_filters {
        let sums: Vec<(Vec<f32>, f32)> = (0..channels)
            .into_par_iter()
            .map(|c| {
                let (mut phases, mut d_acc) = (vec![0.0; d.phases_len()], vec![0.0; d.span()]);
                let (mut d_w, mut d_b) = (vec![0.0; taps], 0.0);
                for i in (c..planes).step_by(channels) {
                    let d_y = &d_y[i * ho * wo..][..ho * wo];
                    d.split(&x[i * h * w..][..h * w], &mut phases);
                    spread(d_y, &mut d_acc);
                    depthwise_weight_sums(&phases, &offsets, &d_acc, &mut d_w);
                    d_b += d_y.iter().sum::<f32>();
                }
                (d_w, d_b)
            })
            .collect();
        for (w, b) in sums {
            d_w.extend(w);
            d_b.push(b);
        }
    }
    (d_x, d_w, d_b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rational_tanh_is_within_5e7_of_tanh_everywhere() {
        let mut worst = 0.0f64;
        for i in -240_000..=240_000 {
            let x = i as f32 * 5e-5;
            worst = worst.max((tanh(x) as f64 - (x as f64).tanh()).abs());
        }
        for x in [-1e30f32, -50.0, -9.5, 9.5, 50.0, 1e30] {
            worst = worst.max((tanh(x) as f64 - (x as f64).tanh()).abs());
        }
        assert!(worst < 5e-7, "worst error {worst}");
    }

    #[test]
    fn dot_adds_every_product_also_past_the_last_sixteen() {
        let x: Vec<f32> = (0..37).map(|i| i as f32).collect();
        let y: Vec<f32> = (0..37).map(|i| 1.0 + (i % 3) as f32).collect();
        let expected: f32 = x.iter().zip(&y).map(|(a, b)| a * b).sum();
        assert_eq!(dot(&x, &y), expected);
    }

    #[test]
    fn the_polynomial_exp_is_within_2e7_of_exp_relative() {
        let mut worst = 0.0f64;
        for i in -870_000..=880_000 {
            let x = i as f32 * 1e-4;
            let want = (x as f64).exp();
            worst = worst.max(((exp(x) as f64 - want) / want).abs());
        }
        assert!(worst < 2e-7, "worst relative error {worst}");
        // Below the range: about 1e-38, not 0 and not a subnormal; NaN stays NaN.
        for x in [-88.0f32, -1e4, f32::NEG_INFINITY] {
            let e = exp(x);
            assert!(e.is_normal() && e < 1.2e-38, "exp({x}) = {e}");
        }
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn log_softmax_rows_match_the_definition_and_their_gradient_sums_to_the_difference() {
        // 37 columns: the sixteen-lane sums and maxima and their tails.
        let width = 37;
        let x: Vec<f32> = (0..3 * width)
            .map(|i| ((i * 7919) % 101) as f32 * 0.37 - 15.0)
            .collect();
        let y = log_softmax(width, &x);
        for (x, y) in x.chunks_exact(width).zip(y.chunks_exact(width)) {
            let top = x
                .iter()
                .copied()
                .fold(f64::NEG_INFINITY, |m, v| m.max(v as f64));
            let total: f64 = x.iter().map(|&v| (v as f64 - top).exp()).sum();
            for (&x, &y) in x.iter().zip(y) {
                let want = x as f64 - top - total.ln();
                let tolerance = 1e-6 * (1.0 + want.abs());
                assert!((y as f64 - want).abs() < tolerance, "{y} against {want}");
            }
        }
        // d x = d y - softmax sum(d y): with d y one-hot at word w, 1 - p_w there and -p_v
        // elsewhere, so each row's gradient sums to 1 - 1 = 0.
        let d_y: Vec<f32> = (0..3 * width).map(|i| f32::from(i % width == 5)).collect();
        let d_x = log_softmax_backward(width, &y, &d_y);
        for ((y, d_x), row) in y.chunks_exact(width).zip(d_x.chunks_exact(width)).zip(0..) {
            for (v, (&y, &d)) in y.iter().zip(d_x).enumerate() {
                let want = f64::from(v == 5) - (y as f64).exp();
                assert!(
                    (d as f64 - want).abs() < 1e-6,
                    "row {row}, word {v}: {d} against {want}"
                );
            }
            assert!(d_x.iter().sum::<f32>().abs() < 1e-5);
        }
    }
}
