//! Times Conv2d forward and backward on the ndarray and flex CPU backends at the sizes of
//! a small CNN: why `SmallCnn` writes its convolutions as matmuls.
//! `cargo run --release -p captioner-bench --bin conv_timing`

use burn::backend::{Autodiff, Flex, NdArray};
use burn::nn::conv::Conv2dConfig;
use burn::nn::PaddingConfig2d;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Distribution;
use std::time::Instant;

fn bench<B: AutodiffBackend>(label: &str) {
    let device = Default::default();
    for (cin, cout, size, k, s) in [
        (3, 16, 64, 3, 1),
        (16, 32, 32, 3, 1),
        (32, 64, 16, 3, 1),
        (64, 64, 8, 3, 1),
        (3, 32, 64, 4, 4),
        (32, 64, 16, 2, 2),
    ] {
        let conv = Conv2dConfig::new([cin, cout], [k, k])
            .with_stride([s, s])
            .with_padding(if s == 1 {
                PaddingConfig2d::Same
            } else {
                PaddingConfig2d::Valid
            })
            .init::<B>(&device);
        let x = Tensor::<B, 4>::random([32, cin, size, size], Distribution::Default, &device)
            .require_grad();
        let _ = conv.forward(x.clone()).sum().backward();
        let t = Instant::now();
        for _ in 0..3 {
            let _ = conv.forward(x.clone()).into_data();
        }
        let f = t.elapsed().as_secs_f64() / 3.0 * 1000.0;
        let t = Instant::now();
        for _ in 0..3 {
            let _ = conv.forward(x.clone()).sum().backward();
        }
        let fb = t.elapsed().as_secs_f64() / 3.0 * 1000.0;
        println!(
            "{label} conv {cin}->{cout} k{k} s{s} at {size}: fwd {f:.1} ms, fwd+bwd {fb:.1} ms"
        );
    }
}
fn main() {
    bench::<Autodiff<NdArray>>("ndarray");
    bench::<Autodiff<Flex>>("flex");
}
