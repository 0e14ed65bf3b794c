//! How a step's rows are laid out: [`Shapes`], and the row helpers that the decoder, the
//! search and the captioner share.

use burn::nn::Linear;
use burn::prelude::*;

/// How the tensors of a step are shaped: by the data (the least work) or the same at every
/// step (what GPU backends need). The backend decides (see `captioner::device`); both give
/// the same loss and gradients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Shapes {
    /// Shapes follow the data (the CPU backends): batches as they come, captions padded to
    /// the longest of their batch, and the decoder steps only the captions still running
    /// (sorted longest first, the batch shrinks as captions end), as the reference PyTorch
    /// implementation does.
    #[default]
    Packed,
    /// The same shapes at every step (the GPU backends, which compile and autotune kernels
    /// per shape: with shrinking batches the first steps met hundreds of new kernels):
    /// batches padded to a fixed number of images and captions (padding rows repeat the
    /// first image, and their captions are empty), caption widths padded to a few buckets
    /// ([`bucket_steps`]), and every decoder step runs every row, the steps past a caption's
    /// end masked out of the loss.
    Fixed,
}

/// The decoder steps a batch whose longest caption needs `steps` is padded to under
/// [`Shapes::Fixed`]: a power of two, at least 8, so that a run meets at most a handful of
/// widths (8, 16, 32, 64 for captions of up to 50 words).
pub fn bucket_steps(steps: usize) -> usize {
    steps.max(8).next_power_of_two()
}

/// `x` with `rows` rows along its first dimension: its own, then copies of its first row
/// (real content, so that a padded batch decodes no faster or slower than a full one).
///
/// # Panics
/// If `x` has no row, or more than `rows`.
pub fn pad_with_first_row<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    rows: usize,
) -> Tensor<B, D> {
    let n = x.dims()[0];
    assert!(n > 0 && n <= rows, "{n} rows cannot be padded to {rows}");
    if n == rows {
        return x;
    }
    let picked: Vec<usize> = (0..rows).map(|r| if r < n { r } else { 0 }).collect();
    let index = index_tensor::<B>(&picked, &x.device());
    x.select(0, index)
}

/// Row indices as an Int tensor, for `select` on a batch dimension.
pub(crate) fn index_tensor<B: Backend>(rows: &[usize], device: &B::Device) -> Tensor<B, 1, Int> {
    let ids: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
    Tensor::from_data(TensorData::new(ids, [rows.len()]), device)
}

/// `linear.forward(x)` for `x` `[..., d_input]`, applied to `x` seen as one matrix of rows
/// `[rows, d_input]`: the same values and gradients, but the weight's gradient is then one
/// product `x^T d y`. For an input of more than two dimensions Burn 0.21's backward
/// (`linear_weight_backward`) multiplies batch by batch into a `[batch, d_input, d_output]`
/// tensor and then sums it over the batch, which on a CPU costs more than the product
/// (bench/RESULTS.md).
pub fn linear_by_rows<B: Backend, const D: usize>(
    linear: &Linear<B>,
    x: Tensor<B, D>,
) -> Tensor<B, D> {
    let mut dims = x.dims();
    let d_input = dims[D - 1];
    let rows = dims[..D - 1].iter().product::<usize>();
    let y = linear.forward(x.reshape([rows, d_input]));
    dims[D - 1] = y.dims()[1];
    y.reshape(dims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, NdArray};
    use burn::nn::LinearConfig;
    use burn::tensor::Distribution;

    type Ad = Autodiff<NdArray>;

    #[test]
    fn a_linear_layer_by_rows_gives_the_values_and_gradients_of_the_layer() {
        let device = Default::default();
        let linear = LinearConfig::new(6, 5).init::<Ad>(&device);
        let normal = Distribution::Normal(0.0, 1.0);
        let x = Tensor::<Ad, 3>::random([4, 3, 6], normal, &device).require_grad();
        let weigh = Tensor::<Ad, 3>::random([4, 3, 5], normal, &device);
        let run = |y: Tensor<Ad, 3>| {
            let grads = (y.clone() * weigh.clone()).sum().backward();
            let bias = linear.bias.as_ref().unwrap().grad(&grads).unwrap();
            [
                y.inner().into_data(),
                x.grad(&grads).unwrap().into_data(),
                linear.weight.grad(&grads).unwrap().into_data(),
                bias.into_data(),
            ]
        };
        let ours = run(linear_by_rows(&linear, x.clone()));
        let reference = run(linear.forward(x.clone()));
        for (ours, reference) in ours.iter().zip(&reference) {
            assert_eq!(ours.shape, reference.shape);
            ours.assert_approx_eq::<f32>(reference, burn::tensor::Tolerance::absolute(1e-5));
        }
    }
}
