//! A convolution without bias followed by frozen batch normalisation: the unit that the
//! torchvision CNNs are built from, and [`conv_bn_forward`], which folds the normalisation
//! into the convolution (run as matrix products on ndarray).

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::module::conv2d;
use burn::tensor::ops::{PadMode, PaddedConvOptions};

use crate::frozen_batch_norm::FrozenBatchNorm2d;
use crate::fused;

/// Shape of one convolution: `kernel` and `padding` are `[height, width]`.
#[derive(Debug, Clone, Copy)]
pub struct ConvShape {
    /// Input and output channels.
    pub channels: [usize; 2],
    /// Kernel size.
    pub kernel: [usize; 2],
    /// Stride in both directions.
    pub stride: usize,
    /// Zero padding on each side.
    pub padding: [usize; 2],
}

impl ConvShape {
    /// A square `k x k` convolution.
    pub fn square(channels: [usize; 2], k: usize, stride: usize, padding: usize) -> Self {
        Self {
            channels,
            kernel: [k, k],
            stride,
            padding: [padding, padding],
        }
    }

    /// The convolution, bias-free, initialised as torchvision does (Kaiming normal, fan out).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Conv2d<B> {
        let [ph, pw] = self.padding;
        Conv2dConfig::new(self.channels, self.kernel)
            .with_stride([self.stride, self.stride])
            .with_padding(PaddingConfig2d::Explicit(ph, pw, ph, pw))
            .with_bias(false)
            .with_initializer(Initializer::KaimingNormal {
                gain: std::f64::consts::SQRT_2,
                fan_out_only: true,
            })
            .init(device)
    }
}

/// Convolution then batch normalisation (torchvision's `downsample` pairs and Inception's
/// `BasicConv2d`, whose fields are named `conv` and `bn`).
#[derive(Module, Debug)]
pub struct ConvBn<B: Backend> {
    /// The convolution.
    pub conv: Conv2d<B>,
    /// Its normalisation.
    pub bn: FrozenBatchNorm2d<B>,
}

impl<B: Backend> ConvBn<B> {
    /// Builds the pair with identity normalisation of epsilon `eps`.
    pub fn new(shape: ConvShape, eps: f64, device: &B::Device) -> Self {
        Self {
            conv: shape.init(device),
            bn: FrozenBatchNorm2d::new(shape.channels[1], eps, device),
        }
    }

    /// Convolution and normalisation, no activation.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        conv_bn_forward(&self.conv, &self.bn, x)
    }
}

/// `bn(conv(x))` as one convolution: the normalisation's per-channel scale folded into the
/// weights and its shift into the bias, exactly as for inference in PyTorch. Run after the
/// convolution, the scale and shift broadcast over `[batch, channels, height, width]`, which
/// flex walks index by index: with them ResNet-101's forward pass spent more than half its
/// time in flex's `StridedIter` (bench/RESULTS.md). Gradients reach the convolution's
/// weights and the normalisation's `weight` and `bias` as before.
pub fn conv_bn_forward<B: Backend>(
    conv: &Conv2d<B>,
    bn: &FrozenBatchNorm2d<B>,
    x: Tensor<B, 4>,
) -> Tensor<B, 4> {
    let (scale, shift) = bn.scale_and_shift();
    let weight = conv.weight.val();
    let dims = weight.dims();
    let [out, fan_in] = [dims[0], dims[1] * dims[2] * dims[3]];
    // The scale repeated rather than broadcast, for the same reason.
    let scale_rows = scale.clone().reshape([out, 1]).repeat_dim(1, fan_in);
    let weight = (weight.reshape([out, fan_in]) * scale_rows).reshape(dims);
    let bias = match &conv.bias {
        Some(bias) => bias.val() * scale + shift,
        None => shift,
    };
    convolve(conv, weight, Some(bias), x)
}

/// `((top, bottom), (left, right))` zero padding of `conv` for an input of `size`, as
/// `Conv2d::forward` computes it.
fn padding_pairs<B: Backend>(conv: &Conv2d<B>, size: [usize; 2]) -> [(usize, usize); 2] {
    match conv.padding {
        PaddingConfig2d::Valid => [(0, 0); 2],
        PaddingConfig2d::Explicit(top, left, bottom, right) => [(top, bottom), (left, right)],
        PaddingConfig2d::Same => std::array::from_fn(|i| {
            let (n, s) = (size[i], conv.stride[i]);
            let span = (conv.kernel_size[i] - 1) * conv.dilation[i] + 1;
            let total = ((n.div_ceil(s) - 1) * s + span).saturating_sub(n);
            (total / 2, total - total / 2)
        }),
    }
}

/// `conv`'s convolution with `weight` and `bias` in place of its own. On flex (in inference
/// and in training) a convolution without dilation, either without groups or depthwise, is
/// [`fused::convolution`]. On
/// the ndarray backend it runs as matrix products: one per kernel tap, each over a shifted
/// copy of the input (for stride `s`, over one of the `s*s` phases of the input, so that
/// nothing is computed and thrown away), as ndarray's direct convolution is slow and its
/// matmul fast. Other backends (the GPU ones) and grouped or dilated convolutions go through
/// Burn's `conv2d` as they are.
fn convolve<B: Backend>(
    conv: &Conv2d<B>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
    x: Tensor<B, 4>,
) -> Tensor<B, 4> {
    let direct = |x: Tensor<B, 4>, weight, bias| {
        let [_, _, h, w] = x.dims();
        let [(top, bottom), (left, right)] = padding_pairs(conv, [h, w]);
        let options = PaddedConvOptions::asymmetric(
            conv.stride,
            [top, left],
            [bottom, right],
            conv.dilation,
            conv.groups,
        );
        conv2d(x, weight, bias, options)
    };
    if conv.dilation == [1, 1] {
        let [_, _, h, w] = x.dims();
        let padding = padding_pairs(conv, [h, w]);
        if let Some(y) = fused::convolution(&x, &weight, bias.as_ref(), conv.stride, padding) {
            return y;
        }
    }
    if !B::name(&x.device()).contains("ndarray") {
        return direct(x, weight, bias);
    }
    let PaddingConfig2d::Explicit(top, left, bottom, right) = conv.padding else {
        return direct(x, weight, bias);
    };
    if conv.dilation != [1, 1] || conv.groups != 1 || conv.stride[0] != conv.stride[1] {
        return direct(x, weight, bias);
    }
    let [kh, kw] = conv.kernel_size;
    let s = conv.stride[0];
    let [batch, channels, h, w] = x.dims();
    let (ho, wo) = (
        (h + top + bottom - kh) / s + 1,
        (w + left + right - kw) / s + 1,
    );
    let out = weight.dims()[0];
    let tap_weight = |dy: usize, dx: usize| {
        weight
            .clone()
            .narrow(2, dy, 1)
            .narrow(3, dx, 1)
            .reshape([1, out, channels])
    };
    let mut y = if kh * kw == 1 && s == 1 && top + left + bottom + right == 0 {
        tap_weight(0, 0).matmul(x.reshape([batch, channels, h * w]))
    } else {
        // Pad to whole phases: rows s*(ho-1)+kh at least, a multiple of s.
        let hp = (s * (ho - 1) + kh).max(h + top).next_multiple_of(s);
        let wp = (s * (wo - 1) + kw).max(w + left).next_multiple_of(s);
        let padded = x.pad(
            (left, wp - w - left, top, hp - h - top),
            PadMode::Constant(0.0),
        );
        let phases: Vec<Tensor<B, 4>> = if s == 1 {
            vec![padded]
        } else {
            let split = padded.reshape([batch, channels, hp / s, s, wp / s, s]);
            (0..s * s)
                .map(|p| {
                    split
                        .clone()
                        .narrow(3, p / s, 1)
                        .narrow(5, p % s, 1)
                        .reshape([batch, channels, hp / s, wp / s])
                })
                .collect()
        };
        let columns = |dy: usize, dx: usize| {
            phases[(dy % s) * s + dx % s]
                .clone()
                .narrow(2, dy / s, ho)
                .narrow(3, dx / s, wo)
                .reshape([batch, channels, ho * wo])
        };
        if channels < 16 {
            // Few channels (the stem): one tall matrix of all taps, one product.
            let taps = (0..kh * kw).map(|t| columns(t / kw, t % kw)).collect();
            let all = weight
                .permute([0, 2, 3, 1])
                .reshape([1, out, kh * kw * channels]);
            all.matmul(Tensor::cat(taps, 1))
        } else {
            let mut sum: Option<Tensor<B, 3>> = None;
            for dy in 0..kh {
                for dx in 0..kw {
                    let part = tap_weight(dy, dx).matmul(columns(dy, dx));
                    sum = Some(match sum {
                        Some(sum) => sum + part,
                        None => part,
                    });
                }
            }
            sum.expect("a kernel has at least one tap")
        }
    };
    if let Some(bias) = bias {
        y = y + bias.reshape([1, out, 1]);
    }
    y.reshape([batch, out, ho, wo])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::module::Param;
    use burn::tensor::Distribution;

    /// The largest difference between two outputs of the same shape.
    fn worst_difference(a: Tensor<NdArray, 4>, b: Tensor<NdArray, 4>) -> f32 {
        assert_eq!(a.dims(), b.dims());
        let a: Vec<f32> = a.into_data().to_vec().unwrap();
        let b: Vec<f32> = b.into_data().to_vec().unwrap();
        a.iter()
            .zip(b)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max)
    }

    #[test]
    fn matmul_form_equals_direct_convolution() {
        let device = Default::default();
        let x = Tensor::<NdArray, 4>::random([2, 5, 7, 6], Distribution::Default, &device);
        for (kernel, stride, padding) in [
            ([1, 1], 1, [0, 0]),
            ([3, 3], 1, [1, 1]),
            ([1, 7], 1, [0, 3]),
            ([5, 5], 1, [2, 2]),
            ([7, 7], 2, [3, 3]),
            ([3, 3], 2, [1, 1]),
            ([3, 3], 2, [0, 0]),
            ([1, 1], 2, [0, 0]),
            ([3, 3], 1, [0, 0]),
        ] {
            let shape = ConvShape {
                channels: [5, 4],
                kernel,
                stride,
                padding,
            };
            let conv = shape.init::<NdArray>(&device);
            let bias = conv.bias.as_ref().map(|bias| bias.val());
            let worst = worst_difference(
                conv.forward(x.clone()),
                convolve(&conv, conv.weight.val(), bias, x.clone()),
            );
            assert!(
                worst < 1e-4,
                "kernel {kernel:?} stride {stride}: differs by {worst}"
            );
        }
    }

    #[test]
    fn folded_batch_norm_equals_convolution_then_normalisation() {
        let device = Default::default();
        let x = Tensor::<NdArray, 4>::random([2, 3, 9, 8], Distribution::Default, &device);
        let mut bn = FrozenBatchNorm2d::<NdArray>::new(4, 1e-5, &device);
        let stats = |values: [f32; 4]| Param::from_tensor(Tensor::from_floats(values, &device));
        bn.weight = stats([0.5, 2.0, -1.0, 1.5]);
        bn.bias = stats([0.1, -0.3, 0.0, 2.0]);
        bn.running_mean = stats([0.2, -1.0, 0.5, 0.0]);
        bn.running_var = stats([0.25, 4.0, 1.0, 0.01]);
        for padding in [
            PaddingConfig2d::Explicit(1, 1, 1, 1),
            PaddingConfig2d::Valid,
            PaddingConfig2d::Same,
        ] {
            for (stride, bias) in [(1, false), (2, true)] {
                let conv = Conv2dConfig::new([3, 4], [3, 3])
                    .with_stride([stride, stride])
                    .with_padding(padding.clone())
                    .with_bias(bias)
                    .init::<NdArray>(&device);
                let worst = worst_difference(
                    bn.forward(conv.forward(x.clone())),
                    conv_bn_forward(&conv, &bn, x.clone()),
                );
                assert!(
                    worst < 1e-4,
                    "{padding:?} stride {stride}: differs by {worst}"
                );
            }
        }
    }

    /// Holds `fused::convolution` (depthwise when `depthwise`) to Burn's `conv2d` on flex: its
    /// output in inference and in training, and the gradients of its input, weight and bias,
    /// within 1e-5.
    #[cfg(feature = "flex")]
    fn check_against_conv2d(
        depthwise: bool,
        [n, c_in, c_out, h, w]: [usize; 5],
        [kh, kw]: [usize; 2],
        stride: [usize; 2],
        padding: [(usize, usize); 2],
        with_bias: bool,
    ) {
        use burn::backend::{Autodiff, Flex};
        type AdFlex = Autodiff<Flex>;
        let device = Default::default();
        let groups = if depthwise { c_in } else { 1 };
        let normal = Distribution::Normal(0.0, 1.0);
        let x = Tensor::<AdFlex, 4>::random([n, c_in, h, w], normal, &device).require_grad();
        let weight = Tensor::<AdFlex, 4>::random([c_out, c_in / groups, kh, kw], normal, &device)
            .require_grad();
        let bias =
            with_bias.then(|| Tensor::<AdFlex, 1>::random([c_out], normal, &device).require_grad());
        let [(top, bottom), (left, right)] = padding;
        let options =
            PaddedConvOptions::asymmetric(stride, [top, left], [bottom, right], [1, 1], groups);
        let reference = conv2d(x.clone(), weight.clone(), bias.clone(), options);
        let weigh = Tensor::<AdFlex, 4>::random(reference.dims(), normal, &device);
        let run = |y: Tensor<AdFlex, 4>| {
            let grads = (y.clone() * weigh.clone()).sum().backward();
            (
                y.inner(),
                x.grad(&grads).unwrap(),
                weight.grad(&grads).unwrap(),
                bias.as_ref().map(|b| b.grad(&grads).unwrap()),
            )
        };
        let [sy, sx] = stride;
        let sizes = format!(
            "{c_in} to {c_out} channels, {kh}x{kw} stride {sy}x{sx}, {padding:?} on [{n}, {h}, {w}]"
        );
        // Inference: the same operation on flex itself, without autodiff.
        let inferred = fused::convolution(
            &x.clone().inner(),
            &weight.clone().inner(),
            bias.clone().map(|b| b.inner()).as_ref(),
            stride,
            padding,
        )
        .expect("on flex");
        let gap = crate::fused::relative_gap(inferred, reference.clone().inner());
        assert!(gap < 1e-5, "inference differs by {gap} ({sizes})");
        let ours =
            fused::convolution(&x, &weight, bias.as_ref(), stride, padding).expect("on flex");
        let (ours, reference) = (run(ours), run(reference));
        crate::fused::assert_same_outputs_and_gradients(ours, reference, with_bias, &sizes);
    }

    #[cfg(feature = "flex")]
    #[test]
    fn a_convolution_on_flex_gives_the_outputs_and_gradients_of_conv2d() {
        // Kernels and paddings of every kind (wider than the input, lopsided), strides of 1,
        // 2 and 3 (ResNet's downsampling 1x1 and 3x3 and its 7x7 stem, EfficientNet's
        // lopsided "same" padding, a stride that skips the input's last rows), widths that
        // are not multiples of gemm's blocks, batches of one picture (its products split
        // between threads) and of more pictures than threads (runs of several pictures on each
        // thread), and ResNet-101's layer-3 and layer-4 sizes.
        for (sizes, kernel, stride, padding, with_bias) in [
            ([2, 5, 7, 3, 4], [1, 1], [1, 1], [(0, 0), (0, 0)], true),
            ([3, 33, 17, 5, 1], [1, 1], [1, 1], [(0, 0), (0, 0)], false),
            ([2, 3, 4, 6, 5], [3, 3], [1, 1], [(1, 1), (1, 1)], true),
            ([2, 3, 4, 6, 5], [3, 3], [1, 1], [(0, 0), (0, 0)], false),
            ([1, 2, 3, 4, 7], [1, 3], [1, 1], [(0, 0), (1, 1)], true),
            ([1, 2, 3, 5, 5], [5, 5], [1, 1], [(2, 2), (2, 2)], false),
            ([1, 2, 3, 2, 3], [3, 3], [1, 1], [(2, 1), (0, 2)], true),
            ([2, 6, 5, 8, 7], [1, 1], [2, 2], [(0, 0), (0, 0)], false),
            ([2, 3, 4, 8, 9], [3, 3], [2, 2], [(1, 1), (1, 1)], true),
            ([1, 3, 4, 9, 8], [3, 3], [2, 2], [(0, 1), (0, 1)], true),
            ([1, 3, 8, 15, 14], [7, 7], [2, 2], [(3, 3), (3, 3)], false),
            ([2, 2, 3, 7, 10], [3, 2], [3, 2], [(1, 0), (0, 2)], true),
            ([7, 4, 6, 6, 5], [3, 3], [1, 1], [(1, 1), (1, 1)], true),
            ([2, 2048, 512, 7, 7], [1, 1], [1, 1], [(0, 0), (0, 0)], true),
            (
                [2, 256, 256, 14, 14],
                [3, 3],
                [1, 1],
                [(1, 1), (1, 1)],
                true,
            ),
            (
                [2, 256, 256, 14, 14],
                [3, 3],
                [2, 2],
                [(1, 1), (1, 1)],
                true,
            ),
        ] {
            check_against_conv2d(false, sizes, kernel, stride, padding, with_bias);
        }
    }

    #[cfg(feature = "flex")]
    #[test]
    fn a_depthwise_convolution_on_flex_gives_the_outputs_and_gradients_of_conv2d() {
        // EfficientNet's 3x3 and 5x5 filters at strides 1 and 2 under lopsided "same"
        // padding, a stride of 3 and unequal strides, a filter wider than the plane, planes
        // narrower than a vector or than the stride, one channel, and batches of one picture
        // and of more planes than a thread's share.
        for ([n, c, h, w], kernel, stride, padding, with_bias) in [
            ([2, 3, 6, 5], [3, 3], [1, 1], [(1, 1), (1, 1)], true),
            ([1, 4, 9, 8], [3, 3], [2, 2], [(0, 1), (0, 1)], false),
            ([2, 5, 14, 14], [5, 5], [2, 2], [(1, 2), (1, 2)], true),
            ([3, 6, 7, 7], [5, 5], [1, 1], [(2, 2), (2, 2)], true),
            ([1, 1, 10, 11], [3, 2], [3, 2], [(1, 0), (0, 2)], false),
            ([2, 2, 3, 4], [5, 5], [1, 1], [(2, 2), (2, 2)], true),
            ([1, 2, 4, 4], [1, 1], [1, 1], [(0, 0), (0, 0)], true),
            ([1, 2, 3, 1], [3, 3], [2, 2], [(1, 1), (1, 1)], true),
            ([4, 96, 28, 28], [3, 3], [2, 2], [(0, 1), (0, 1)], true),
        ] {
            check_against_conv2d(true, [n, c, c, h, w], kernel, stride, padding, with_bias);
        }
    }
}
