//! Convolutions on flex (an encoder's): one product per picture forward, two back, each run
//! of pictures on its own thread.

use super::*;

/// The sizes of a convolution over one picture.
#[derive(Debug, Clone, Copy)]
struct ConvDims {
    d_input: usize,
    d_output: usize,
    /// The input's height and width.
    size: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    /// `[(top, bottom), (left, right)]` zeros.
    padding: [(usize, usize); 2],
}

impl ConvDims {
    /// The output's height and width.
    fn out(&self) -> [usize; 2] {
        kernels::convolved_size(self.size, self.kernel, self.stride, self.padding)
    }

    /// The rows of the unrolled input: one a channel and kernel tap.
    fn taps(&self) -> usize {
        self.d_input * self.kernel[0] * self.kernel[1]
    }

    /// A 1x1 convolution of stride 1 without padding: the unrolled input is the input
    /// itself.
    fn pointwise(&self) -> bool {
        self.kernel == [1, 1] && self.stride == [1, 1] && self.padding == [(0, 0); 2]
    }

    fn input_len(&self) -> usize {
        self.d_input * self.size[0] * self.size[1]
    }

    fn output_len(&self) -> usize {
        let [ho, wo] = self.out();
        self.d_output * ho * wo
    }

    /// For kernel tap `tap` along `axis`, the outputs `o` whose input row or column
    /// `o * stride + tap - before` is inside the input: `(first o, last o + 1, the first
    /// one's input)`.
    fn span(&self, axis: usize, tap: usize) -> (usize, usize, usize) {
        let (out, size, stride) = (self.out()[axis], self.size[axis], self.stride[axis]);
        let before = self.padding[axis].0;
        let first = before.saturating_sub(tap).div_ceil(stride);
        let end = (size + before)
            .saturating_sub(tap)
            .div_ceil(stride)
            .min(out);
        // first * stride + tap >= before, by the choice of first.
        (
            first,
            end.max(first),
            (first * stride + tap).saturating_sub(before),
        )
    }

    /// Calls `f(row, at_row, at_x, len)` for every run of `len` values that row `row` of
    /// the unrolled input `[taps, ho * wo]` reads from the input `[d_input, h, w]`, from
    /// `at_row` in the row and from `at_x` in the input, `stride[1]` apart there: row `(c,
    /// ky, kx)` holds `x[c, oy * sy + ky - top, ox * sx + kx - left]`, zero outside the
    /// input.
    fn runs(&self, mut f: impl FnMut(usize, usize, usize, usize)) {
        let [h, w] = self.size;
        let [kh, kw] = self.kernel;
        let wo = self.out()[1];
        let sy = self.stride[0];
        for c in 0..self.d_input {
            for ky in 0..kh {
                let (oy0, oy1, iy0) = self.span(0, ky);
                for kx in 0..kw {
                    let (ox0, ox1, ix0) = self.span(1, kx);
                    if ox0 == ox1 {
                        continue;
                    }
                    let row = (c * kh + ky) * kw + kx;
                    for (dy, oy) in (oy0..oy1).enumerate() {
                        let at_x = (c * h + iy0 + dy * sy) * w + ix0;
                        f(row, oy * wo + ox0, at_x, ox1 - ox0);
                    }
                }
            }
        }
    }

    fn positions(&self) -> usize {
        let [ho, wo] = self.out();
        ho * wo
    }

    /// How many of `pictures` one product of `d W` takes: enough that its `group *
    /// positions` terms make the sum deep (a picture of ResNet's layer 4 has 49 positions,
    /// of layer 3 196), in groups of about the same size.
    fn group(&self, pictures: usize) -> usize {
        let wanted = GROUP_COLUMNS.div_ceil(self.positions().max(1));
        let groups = pictures.div_ceil(wanted).max(1);
        pictures.div_ceil(groups).max(1)
    }

    /// Room for the unrolled inputs of `group` pictures side by side, `[taps, group *
    /// positions]`: none where one picture's input is read as it is
    /// ([`ConvDims::unrolled`]).
    fn scratch(&self, group: usize) -> Vec<f32> {
        let len = if self.pointwise() && group == 1 {
            0
        } else {
            self.taps() * group * self.positions()
        };
        vec![0.0; len]
    }

    /// The unrolled inputs of the pictures `xs [g, d_input, h, w]` side by side, `[taps, g
    /// * positions]` (im2col, see [`ConvDims::runs`]): `xs` itself for one picture of a
    /// 1x1 convolution of stride 1 without padding, else written into `cols` (from
    /// [`ConvDims::scratch`]).
    fn unrolled<'a>(&self, xs: &'a [f32], cols: &'a mut [f32]) -> &'a [f32] {
        let positions = self.positions();
        if self.pointwise() {
            return side_by_side(xs, [self.d_input, positions], cols);
        }
        let g = xs.len() / self.input_len();
        let width = g * positions;
        let cols = &mut cols[..self.taps() * width];
        cols.fill(0.0);
        let sx = self.stride[1];
        for (picture, x) in xs.chunks_exact(self.input_len()).enumerate() {
            let offset = picture * positions;
            self.runs(|row, at_row, at_x, len| {
                let to = &mut cols[row * width + offset + at_row..][..len];
                if sx == 1 {
                    to.copy_from_slice(&x[at_x..at_x + len]);
                } else {
                    for (to, from) in to.iter_mut().zip(x[at_x..].iter().step_by(sx)) {
                        *to = *from;
                    }
                }
            });
        }
        cols
    }

    /// The transpose of [`ConvDims::unrolled`] for one picture (col2im): adds each value
    /// of `cols [taps, ho * wo]` onto the input position it was read from, into `d_x
    /// [d_input, h, w]`.
    fn roll_back(&self, cols: &[f32], d_x: &mut [f32]) {
        d_x.fill(0.0);
        let positions = self.positions();
        let sx = self.stride[1];
        self.runs(|row, at_row, at_x, len| {
            let from = &cols[row * positions + at_row..][..len];
            for (to, &from) in d_x[at_x..].iter_mut().step_by(sx).zip(from) {
                *to += from;
            }
        });
    }
}

/// Terms a product of `d W` sums at least, where a run has the pictures for them: one
/// picture's product reads and writes the whole `d W` for as few as 49 terms (ResNet's
/// layer 4). Grouping the forward and `d x` products as well did not pay (bench/RESULTS.md,
/// "one run of pictures per core").
const GROUP_COLUMNS: usize = 1024;

/// The pictures `[g, rows, positions]` side by side, `[rows, g * positions]`: `pictures`
/// itself for one picture, else copied into the start of `wide`.
fn side_by_side<'a>(
    pictures: &'a [f32],
    [rows, positions]: [usize; 2],
    wide: &'a mut [f32],
) -> &'a [f32] {
    let block = rows * positions;
    if pictures.len() == block {
        return pictures;
    }
    let width = pictures.len() / rows.max(1);
    for (picture, values) in pictures.chunks_exact(block.max(1)).enumerate() {
        for (row, values) in values.chunks_exact(positions.max(1)).enumerate() {
            wide[row * width + picture * positions..][..positions].copy_from_slice(values);
        }
    }
    &wide[..pictures.len()]
}

/// A batch's pictures split into one run of neighbours per thread, each run's products on
/// its own thread: one picture's products are too thin for gemm to split between threads
/// (measured in bench/RESULTS.md, "one run of pictures per core"). A batch of fewer
/// pictures than threads is split less, and a single run's products use every thread
/// again.
#[derive(Debug, Clone, Copy)]
struct PictureRuns {
    /// Pictures per run (the last one may have fewer).
    per_run: usize,
    /// Whether gemm may split each product between threads: when there is one run.
    threaded: bool,
}

impl PictureRuns {
    fn new(pictures: usize) -> Self {
        let runs = rayon::current_num_threads().min(pictures).max(1);
        Self {
            per_run: pictures.div_ceil(runs).max(1),
            threaded: runs == 1,
        }
    }

    /// `values`, `per_picture` of them a picture, in runs, on rayon's threads.
    fn of<'a>(&self, values: &'a [f32], per_picture: usize) -> rayon::slice::Chunks<'a, f32> {
        values.par_chunks(self.per_run * per_picture.max(1))
    }

    /// [`PictureRuns::of`], for writing.
    fn of_mut<'a>(
        &self,
        values: &'a mut [f32],
        per_picture: usize,
    ) -> rayon::slice::ChunksMut<'a, f32> {
        values.par_chunks_mut(self.per_run * per_picture.max(1))
    }
}

/// What the backward pass of [`convolution`] reads: the input `[n, d_input, h, w]`
/// (unrolled again there rather than kept unrolled) and the weight `[d_output, taps]`.
#[derive(Debug, Clone)]
struct ConvSaved {
    x: FlexTensor,
    weight: FlexTensor,
    n: usize,
    dims: ConvDims,
}

/// Parents: the input, the weight, and the bias where the convolution has one.
#[derive(Debug)]
struct ConvBackward;

impl<const N: usize> Backward<Flex, N> for ConvBackward {
    type State = ConvSaved;

    fn backward(
        self,
        ops: Ops<Self::State, N>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let ConvSaved { x, weight, n, dims } = ops.state;
        let ConvDims {
            d_input,
            d_output,
            size: [h, w],
            ..
        } = dims;
        let [ho, wo] = dims.out();
        let (positions, taps) = (ho * wo, dims.taps());
        let d_y = grads.consume::<Flex>(&ops.node).to_contiguous();
        let d_y = slice(&d_y);
        let runs = PictureRuns::new(n);
        let (input_len, output_len) = (dims.input_len(), dims.output_len());
        let mut parents = ops.parents.into_iter();
        if let Some(node) = parents.next().flatten() {
            // d cols = W^T d y (W^T a view of W: its rows are long), rolled back onto x.
            let mut d_x = vec![0.0; n * input_len];
            runs.of_mut(&mut d_x, input_len)
                .zip(runs.of(d_y, output_len))
                .for_each(|(d_x, d_y)| {
                    let mut d_cols = dims.scratch(1);
                    for (d_x, d_y) in d_x
                        .chunks_exact_mut(input_len)
                        .zip(d_y.chunks_exact(output_len))
                    {
                        let into = if dims.pointwise() {
                            &mut *d_x
                        } else {
                            &mut d_cols
                        };
                        product_into(
                            [taps, positions, d_output],
                            into,
                            false,
                            (slice(&weight), [1, taps]),
                            (d_y, [positions, 1]),
                            runs.threaded,
                        );
                        if !dims.pointwise() {
                            dims.roll_back(&d_cols, d_x);
                        }
                    }
                });
            grads.register::<Flex>(node.id, flex_tensor(d_x, [n, d_input, h, w]));
        }
        if let Some(node) = parents.next().flatten() {
            // d W = the sum over pictures of d y cols^T, cols^T a view of cols (on this
            // product gemm packs the view faster than a row-major copy is made): a sum
            // per run of pictures, then the runs' sums added in order.
            let sums: Vec<Vec<f32>> = runs
                .of(slice(&x), input_len)
                .zip(runs.of(d_y, output_len))
                .map(|(x, d_y)| {
                    let group = dims.group(x.len() / input_len);
                    let mut d_w = vec![0.0; d_output * taps];
                    let mut cols = dims.scratch(group);
                    let mut wide_d_y = vec![0.0; group * output_len];
                    for (at, (x, d_y)) in x
                        .chunks(group * input_len)
                        .zip(d_y.chunks(group * output_len))
                        .enumerate()
                    {
                        let width = d_y.len() / d_output;
                        let unrolled = dims.unrolled(x, &mut cols);
                        let d_y = side_by_side(d_y, [d_output, positions], &mut wide_d_y);
                        product_into(
                            [d_output, taps, width],
                            &mut d_w,
                            at > 0,
                            (d_y, [width, 1]),
                            (unrolled, [1, width]),
                            runs.threaded,
                        );
                    }
                    d_w
                })
                .collect();
            let mut sums = sums.into_iter();
            let mut d_w = sums.next().unwrap_or_else(|| vec![0.0; d_output * taps]);
            for sum in sums {
                d_w.iter_mut().zip(sum).for_each(|(d_w, s)| *d_w += s);
            }
            let [kh, kw] = dims.kernel;
            grads.register::<Flex>(node.id, flex_tensor(d_w, [d_output, d_input, kh, kw]));
        }
        if let Some(node) = parents.next().flatten() {
            // d b = the sum of d y over pictures and positions.
            let mut d_b = vec![0.0f32; d_output];
            for picture in d_y.chunks_exact(dims.output_len()) {
                for (d_b, channel) in d_b.iter_mut().zip(picture.chunks_exact(positions)) {
                    *d_b += channel.iter().sum::<f32>();
                }
            }
            grads.register::<Flex>(node.id, flex_tensor(d_b, [d_output]));
        }
    }
}

/// `y [n, d_output, ho, wo]` of the pictures `x [n, d_input, h, w]`: each run of pictures
/// on its own thread, one product per picture.
fn forward(dims: ConvDims, x: &[f32], weight: &[f32], bias: Option<&[f32]>) -> FlexTensor {
    let (input_len, output_len) = (dims.input_len(), dims.output_len());
    let n = x.len() / input_len;
    let [ho, wo] = dims.out();
    let (positions, taps) = (ho * wo, dims.taps());
    let runs = PictureRuns::new(n);
    let mut y = vec![0.0; n * output_len];
    runs.of_mut(&mut y, output_len)
        .zip(runs.of(x, input_len))
        .for_each(|(y, x)| {
            let mut cols = dims.scratch(1);
            for (y, x) in y
                .chunks_exact_mut(output_len)
                .zip(x.chunks_exact(input_len))
            {
                let unrolled = dims.unrolled(x, &mut cols);
                product_into(
                    [dims.d_output, positions, taps],
                    y,
                    false,
                    (weight, [taps, 1]),
                    (unrolled, [positions, 1]),
                    runs.threaded,
                );
                if let Some(bias) = bias {
                    for (channel, &b) in y.chunks_exact_mut(positions).zip(bias) {
                        channel.iter_mut().for_each(|y| *y += b);
                    }
                }
            }
        });
    flex_tensor(y, [n, dims.d_output, ho, wo])
}

/// The sizes of the convolution of `x` by `weight`.
fn conv_dims(
    x: &FlexTensor,
    weight: &FlexTensor,
    stride: [usize; 2],
    padding: [(usize, usize); 2],
) -> ConvDims {
    let [_, d_input, h, w] = x.shape().dims();
    let [d_output, _, kh, kw] = weight.shape().dims();
    ConvDims {
        d_input,
        d_output,
        size: [h, w],
        kernel: [kh, kw],
        stride,
        padding,
    }
}

pub(crate) fn convolution<B: Backend>(
    x: &Tensor<B, 4>,
    weight: &Tensor<B, 4>,
    bias: Option<&Tensor<B, 1>>,
    stride: [usize; 2],
    padding: [(usize, usize); 2],
) -> Option<Tensor<B, 4>> {
    let dims = |x: &FlexTensor, w: &FlexTensor| conv_dims(x, w, stride, padding);
    layer_op(
        [x, weight],
        bias,
        |x, w, b| forward(dims(x, w), slice(x), slice(w), b),
        ConvBackward,
        |x, weight| ConvSaved {
            n: x.shape().dims::<4>()[0],
            dims: dims(&x, &weight),
            x,
            weight,
        },
    )
}
