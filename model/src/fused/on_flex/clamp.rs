//! Clamping on flex, in place where the tensor holds its values alone.

use super::*;

/// `x` clamped to `[lo, hi]` on flex (not autodiff), or `x` back as it came.
pub(crate) fn clamp<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    lo: f32,
    hi: f32,
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    let back = |t| Tensor::from_primitive(TensorPrimitive::Float(t));
    // `t` back as `B`'s tensor, which it came as.
    let flex_back = |t: FlexTensor| back(cast(t).unwrap_or_else(|_| unreachable!("B is flex")));
    let t = match cast::<_, FlexTensor>(x.into_primitive().tensor()) {
        Ok(t) if t.dtype() == DType::F32 => t,
        Ok(t) => return Err(flex_back(t)),
        Err(t) => return Err(back(t)),
    };
    // In place when `t` is the only holder of its values (else `storage_mut` copies them).
    let mut t = if t.is_contiguous() && t.layout().start_offset() == 0 {
        t
    } else {
        t.to_contiguous()
    };
    let n = t.shape().num_elements();
    kernels::clamp(&mut t.storage_mut::<f32>()[..n], lo, hi);
    Ok(flex_back(t))
}
