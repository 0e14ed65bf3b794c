//! Helpers for the tests that hold the fused operations to the tensor operations.

use burn::prelude::*;

/// For the tests that hold a fused operation to the tensor operations: its output `y` and
/// the gradients of its input, weight and bias (`ours`) within 1e-5 of the reference's, the
/// bias's absent on both sides when the layer has none.
#[cfg(test)]
pub(crate) fn assert_same_outputs_and_gradients<B: Backend, const D: usize, const W: usize>(
    ours: (
        Tensor<B, D>,
        Tensor<B, D>,
        Tensor<B, W>,
        Option<Tensor<B, 1>>,
    ),
    reference: (
        Tensor<B, D>,
        Tensor<B, D>,
        Tensor<B, W>,
        Option<Tensor<B, 1>>,
    ),
    with_bias: bool,
    sizes: &str,
) {
    for (what, gap) in [
        ("y", relative_gap(ours.0, reference.0)),
        ("d x", relative_gap(ours.1, reference.1)),
        ("d weight", relative_gap(ours.2, reference.2)),
    ] {
        assert!(gap < 1e-5, "{what} differs by {gap} ({sizes})");
    }
    match (ours.3, reference.3) {
        (Some(ours), Some(reference)) => {
            let gap = relative_gap(ours, reference);
            assert!(gap < 1e-5, "d bias differs by {gap} ({sizes})");
        }
        (None, None) => assert!(!with_bias),
        _ => panic!("one side has a bias gradient ({sizes})"),
    }
}

/// For the tests that hold the fused operations to the tensor operations: the largest
/// difference between two tensors' values, relative to the largest value of `reference`.
#[cfg(test)]
pub(crate) fn relative_gap<B: Backend, const D: usize>(
    ours: Tensor<B, D>,
    reference: Tensor<B, D>,
) -> f32 {
    let ours: Vec<f32> = ours.into_data().to_vec().unwrap();
    let reference: Vec<f32> = reference.into_data().to_vec().unwrap();
    assert_eq!(ours.len(), reference.len());
    let scale = reference.iter().fold(1e-12f32, |m, x| m.max(x.abs()));
    let gap = ours
        .iter()
        .zip(&reference)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    gap / scale
}
