//! Random models and tensors for unit tests, drawn from a test's own seed.
//!
//! Burn's CPU backends draw from one generator per process, and draw a parameter's values only
//! when it is first read. Tests running at once share that generator, so a test that seeds it
//! and then draws gets whatever the other tests drew in between. These helpers draw from a
//! generator of the test's own instead: the same seed gives the same values whatever else runs.

use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::TensorData;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// `module` with every float parameter drawn afresh from `seed`: uniform within
/// `±1/sqrt(fan_in)`, the first dimension of a weight (Burn's `[d_input, d_output]`) and the
/// length of a bias.
pub fn redrawn<B: Backend, M: Module<B>>(module: M, seed: u64) -> M {
    struct Redraw(SmallRng);
    impl<B: Backend> ModuleMapper<B> for Redraw {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            param.map(|tensor| {
                let dims = tensor.dims();
                let bound = 1.0 / (dims[0] as f32).sqrt();
                let drawn = uniform(&mut self.0, bound, dims, &tensor.device());
                drawn.set_require_grad(tensor.is_require_grad())
            })
        }
    }
    module.map(&mut Redraw(SmallRng::seed_from_u64(seed)))
}

/// A `shape` tensor of values drawn from `seed`, uniform within `±sqrt(3)` (mean 0, variance 1).
pub fn unit<B: Backend, const D: usize>(
    shape: [usize; D],
    seed: u64,
    device: &B::Device,
) -> Tensor<B, D> {
    uniform(
        &mut SmallRng::seed_from_u64(seed),
        3f32.sqrt(),
        shape,
        device,
    )
}

/// A `shape` tensor of values drawn from `rng`, uniform within `±bound`.
fn uniform<B: Backend, const D: usize>(
    rng: &mut SmallRng,
    bound: f32,
    shape: [usize; D],
    device: &B::Device,
) -> Tensor<B, D> {
    let values = (0..shape.iter().product::<usize>())
        .map(|_| rng.random_range(-bound..bound))
        .collect::<Vec<f32>>();
    Tensor::from_data(TensorData::new(values, shape), device)
}
