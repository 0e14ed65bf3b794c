//! Batch normalisation with fixed statistics, as ImageNet-pretrained CNNs are run when their
//! features are used by another model.

use burn::module::Param;
use burn::prelude::*;

/// `y = (x - running_mean) / sqrt(running_var + eps) * weight + bias`, always with the stored
/// statistics (PyTorch's `eval()` mode, torchvision's `FrozenBatchNorm2d`).
///
/// Burn's `BatchNorm` picks batch statistics whenever the backend records gradients, so a
/// pretrained encoder fine-tuned with it would renormalise every batch; this one never does.
/// Its fields carry torchvision's names, so weights load without renaming. `weight` and `bias`
/// can be trained; the statistics never receive gradients.
#[derive(Module, Debug)]
pub struct FrozenBatchNorm2d<B: Backend> {
    /// Scale (`gamma`), `[channels]`.
    pub weight: Param<Tensor<B, 1>>,
    /// Shift (`beta`), `[channels]`.
    pub bias: Param<Tensor<B, 1>>,
    /// Running mean, `[channels]`.
    pub running_mean: Param<Tensor<B, 1>>,
    /// Running variance, `[channels]`.
    pub running_var: Param<Tensor<B, 1>>,
    eps: f64,
}

impl<B: Backend> FrozenBatchNorm2d<B> {
    /// Identity statistics (mean 0, variance 1, scale 1, shift 0) for `channels` channels.
    pub fn new(channels: usize, eps: f64, device: &B::Device) -> Self {
        let ones = || Param::from_tensor(Tensor::ones([channels], device));
        let zeros = || Param::from_tensor(Tensor::zeros([channels], device));
        Self {
            weight: ones(),
            bias: zeros(),
            running_mean: zeros(),
            running_var: ones(),
            eps,
        }
    }

    /// The per-channel `(scale, shift)` with which `y = x * scale + shift`, `[channels]` each.
    pub fn scale_and_shift(&self) -> (Tensor<B, 1>, Tensor<B, 1>) {
        // A division, not `recip()`: ndarray's SIMD reciprocal is only good to about 1e-4.
        let scale = self.weight.val() / (self.running_var.val().detach() + self.eps).sqrt();
        let shift = self.bias.val() - self.running_mean.val().detach() * scale.clone();
        (scale, shift)
    }

    /// Normalises `[batch, channels, height, width]` (after a convolution,
    /// [`crate::conv_bn::conv_bn_forward`] folds this into the convolution instead).
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [_, channels, _, _] = x.dims();
        let (scale, shift) = self.scale_and_shift();
        x * scale.reshape([1, channels, 1, 1]) + shift.reshape([1, channels, 1, 1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    #[test]
    fn uses_the_stored_statistics() {
        let device = Default::default();
        let mut bn = FrozenBatchNorm2d::<NdArray>::new(2, 0.0, &device);
        bn.running_mean = Param::from_tensor(Tensor::from_floats([1.0, -2.0], &device));
        bn.running_var = Param::from_tensor(Tensor::from_floats([4.0, 0.25], &device));
        bn.weight = Param::from_tensor(Tensor::from_floats([2.0, 1.0], &device));
        bn.bias = Param::from_tensor(Tensor::from_floats([0.5, 0.0], &device));
        let x = Tensor::<NdArray, 1>::from_floats([3.0, -1.0], &device).reshape([1, 2, 1, 1]);
        let y: Vec<f32> = bn.forward(x).into_data().to_vec().unwrap();
        // (3 - 1) / 2 * 2 + 0.5 = 2.5; (-1 + 2) / 0.5 * 1 = 2.
        assert_eq!(y, [2.5, 2.0]);
    }
}
