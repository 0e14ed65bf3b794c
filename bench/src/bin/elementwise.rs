//! Times Burn's elementwise activations on the attention's `[32, 49, 512]` energies, on the
//! CPU backends compiled in: `cargo run --release -p captioner-bench --bin elementwise`.

use std::time::Instant;

use burn::prelude::*;
use burn::tensor::activation::sigmoid;
use burn::tensor::Distribution;
use captioner_model::activation::tanh_by_exp;

fn time<B: Backend>(name: &str, device: &B::Device, f: impl Fn(Tensor<B, 3>) -> Tensor<B, 3>) {
    let x = Tensor::<B, 3>::random([32, 49, 512], Distribution::Normal(0.0, 2.0), device);
    let _ = f(x.clone()).into_data();
    let n = 20;
    let start = Instant::now();
    for _ in 0..n {
        let _ = f(x.clone()).into_data();
    }
    let ms = start.elapsed().as_secs_f64() * 1000.0 / n as f64;
    println!("{name:>28}: {ms:7.3} ms");
}

fn all<B: Backend>(backend: &str, device: &B::Device) {
    println!("{backend}");
    time::<B>("x + 1", device, |x| x + 1.0);
    time::<B>("tanh", device, |x| x.tanh());
    time::<B>("exp", device, |x| x.exp());
    time::<B>("sigmoid", device, sigmoid);
    time::<B>("2 sigmoid(2x) - 1", device, |x| {
        sigmoid(x * 2.0) * 2.0 - 1.0
    });
    time::<B>("1 - 2 / (exp(2x) + 1)", device, |x| {
        (x * 2.0)
            .exp()
            .add_scalar(1.0)
            .recip()
            .mul_scalar(-2.0)
            .add_scalar(1.0)
    });
    time::<B>("clamp(x, -15, 15)", device, |x| x.clamp(-15.0, 15.0));
    time::<B>("activation::tanh_by_exp", device, tanh_by_exp);
}

fn main() {
    all::<burn::backend::NdArray>("ndarray", &Default::default());
    #[cfg(feature = "flex")]
    all::<burn::backend::Flex>("flex", &Default::default());
}
