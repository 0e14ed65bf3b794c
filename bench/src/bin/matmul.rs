//! Times Burn's 2-D matmul on the decoder's per-step shapes (batch 32, the LSTM's `[1792,
//! 2048]` recurrent weight of row 1b), forward and the two backward products, on the CPU
//! backends compiled in, in GFLOP/s:
//! `cargo run --release -p captioner-bench --bin matmul`.
//! `bench/matmul_reference.py` times the same products in PyTorch.

use std::time::Instant;

use burn::prelude::*;
use burn::tensor::Distribution;

/// Runs `product` 50 times and prints its time and rate for `flops` operations.
fn report<B: Backend>(name: &str, flops: usize, device: &B::Device, product: impl Fn()) {
    product();
    let runs = 50;
    let start = Instant::now();
    for _ in 0..runs {
        product();
    }
    B::sync(device).expect("the device finishes its work");
    let seconds = start.elapsed().as_secs_f64() / runs as f64;
    let gflops = flops as f64 / seconds / 1e9;
    println!("{name:>36}: {:7.3} ms {gflops:6.1} GFLOP/s", seconds * 1e3);
}

/// `[m, k] x [k, n]`, the right operand transposed (a view) when `rhs_transposed`.
fn time<B: Backend>(name: &str, [m, k, n]: [usize; 3], rhs_transposed: bool, device: &B::Device) {
    let lhs = Tensor::<B, 2>::random([m, k], Distribution::Normal(0.0, 1.0), device);
    let rhs = if rhs_transposed {
        Tensor::<B, 2>::random([n, k], Distribution::Normal(0.0, 1.0), device).transpose()
    } else {
        Tensor::<B, 2>::random([k, n], Distribution::Normal(0.0, 1.0), device)
    };
    report::<B>(name, 2 * m * k * n, device, || {
        let _ = lhs.clone().matmul(rhs.clone());
    });
}

/// `batch` products `[m, k] x [k, n]` in one batched matmul.
fn time_batched<B: Backend>(name: &str, [batch, m, k, n]: [usize; 4], device: &B::Device) {
    let lhs = Tensor::<B, 3>::random([batch, m, k], Distribution::Normal(0.0, 1.0), device);
    let rhs = Tensor::<B, 3>::random([batch, k, n], Distribution::Normal(0.0, 1.0), device);
    report::<B>(name, 2 * batch * m * k * n, device, || {
        let _ = lhs.clone().matmul(rhs.clone());
    });
}

/// The 2-D products: name, `[m, k, n]`, and whether the right operand is a transposed view
/// (as `W^T` is in a `Linear`'s backward pass). `bench/matmul_reference.py` has the same list.
const PRODUCTS: [(&str, [usize; 3], bool); 11] = [
    ("x [32,1792] W [1792,2048]", [32, 1792, 2048], false),
    ("dy [32,2048] W^T [2048,1792]", [32, 2048, 1792], true),
    ("dy [32,2048] W^T copied row-major", [32, 2048, 1792], false),
    ("x^T [1792,32] dy [32,2048]", [1792, 32, 2048], false),
    ("h [32,512] W [512,512]", [32, 512, 512], false),
    ("beams [96,1792] W [1792,2048]", [96, 1792, 2048], false),
    ("beams [96,1792] W^T [1792,2048]", [96, 1792, 2048], true),
    ("3 beams [3,1792] W [1792,2048]", [3, 1792, 2048], false),
    ("3 beams [3,1792] W^T [1792,2048]", [3, 1792, 2048], true),
    ("scores [4704,512] w [512,1]", [4704, 512, 1], false),
    (
        "square [1024,1024] x [1024,1024]",
        [1024, 1024, 1024],
        false,
    ),
];

fn all<B: Backend>(backend: &str, device: &B::Device) {
    println!("{backend}");
    for (name, shape, rhs_transposed) in PRODUCTS {
        time::<B>(name, shape, rhs_transposed, device);
    }
    time_batched::<B>("context 96 x [1,49] x [49,1280]", [96, 1, 49, 1280], device);
}

/// The same thin products by a weight packed once into panels (`fused::panels`), as a beam
/// search multiplies at every step.
fn packed() {
    use captioner_model::fused::panels::Panels;
    println!("packed panels");
    for [m, k, n] in [
        [32, 1792, 2048],
        [96, 1792, 2048],
        [3, 1792, 2048],
        [96, 512, 1755],
        [32, 512, 512],
    ] {
        let x: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
        let w: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1).collect();
        let panels = Panels::pack(&w, [k, n], [n, 1]);
        let name = format!("[{m},{k}] x [{k},{n}]");
        report::<burn::backend::NdArray>(&name, 2 * m * k * n, &Default::default(), || {
            let _ = panels.product(&x, m, None);
        });
    }
    // A weight gradient d W = x^T d y: d y packed at every call, x read transposed.
    let (n, d_input, d_output) = (32, 1792, 2048);
    let x: Vec<f32> = (0..n * d_input).map(|i| (i % 7) as f32 * 0.1).collect();
    let dy: Vec<f32> = (0..n * d_output).map(|i| (i % 5) as f32 * 0.1).collect();
    let name = format!("x^T [{d_input},{n}] dy [{n},{d_output}]");
    report::<burn::backend::NdArray>(
        &name,
        2 * n * d_input * d_output,
        &Default::default(),
        || {
            let panels = Panels::pack(&dy, [n, d_output], [d_output, 1]);
            let _ = panels.product_strided(&x, d_input, [1, d_input], None);
        },
    );
}

fn main() {
    captioner::keep_freed_memory();
    #[cfg(feature = "flex")]
    all::<burn::backend::Flex>("flex", &Default::default());
    packed();
    all::<burn::backend::NdArray>("ndarray", &Default::default());
}
