//! `--device`: one generic job, run on the backend the user picks among those compiled in.

use anyhow::{bail, Result};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use clap::ValueEnum;

/// The backends a user can pick with `--device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceKind {
    /// CPU through Burn's ndarray backend (cargo feature `ndarray`, on by default).
    Ndarray,
    /// CPU through Burn's flex backend (the default: faster than ndarray on every row of
    /// bench/RESULTS.md; cargo feature `flex`, on by default).
    Flex,
    /// GPU through WGPU: Vulkan, Metal or DirectX (cargo feature `wgpu`).
    Wgpu,
    /// NVIDIA GPU through CUDA (cargo feature `cuda`).
    Cuda,
}

/// Work that is written once, generic over the backend.
pub trait BackendJob {
    /// What the job returns.
    type Output;
    /// Runs on the training backend `B` (inference jobs use `B::InnerBackend`).
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<Self::Output>;
}

/// Runs `job` on the backend `kind`, or explains which cargo feature is missing.
pub fn run_on<J: BackendJob>(kind: DeviceKind, job: J) -> Result<J::Output> {
    match kind {
        DeviceKind::Ndarray => ndarray(job),
        DeviceKind::Flex => flex(job),
        DeviceKind::Wgpu => wgpu(job),
        DeviceKind::Cuda => cuda(job),
    }
}

#[cfg(not(all(
    feature = "ndarray",
    feature = "flex",
    feature = "wgpu",
    feature = "cuda"
)))]
fn not_compiled<T>(feature: &str) -> Result<T> {
    bail!(
        "this binary was built without the `{feature}` backend: rebuild with \
         `cargo run --release --features {feature} --bin <train|infer> -- --device {feature} ...`"
    )
}

/// Runs one tiny computation so that a missing GPU or driver is reported plainly here, not as
/// a panic deep in a worker thread later.
#[allow(dead_code)]
fn check_device<B: Backend>(device: &B::Device, what: &str, hint: &str) -> Result<()> {
    let device = device.clone();
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        Tensor::<B, 1>::ones([4], &device)
            .sum()
            .into_scalar()
            .elem::<f32>()
    }));
    std::panic::set_hook(hook);
    match result {
        Ok(4.0) => Ok(()),
        Ok(sum) => bail!("the {what} device gave a wrong result ({sum} for 4): {hint}"),
        Err(_) => bail!("the {what} device could not be started: {hint}"),
    }
}

#[cfg(feature = "ndarray")]
fn ndarray<J: BackendJob>(job: J) -> Result<J::Output> {
    use burn::backend::{ndarray::NdArrayDevice, Autodiff, NdArray};
    job.run::<Autodiff<NdArray>>(NdArrayDevice::Cpu)
}
#[cfg(not(feature = "ndarray"))]
fn ndarray<J: BackendJob>(_: J) -> Result<J::Output> {
    not_compiled("ndarray")
}

#[cfg(feature = "flex")]
fn flex<J: BackendJob>(job: J) -> Result<J::Output> {
    use burn::backend::{flex::FlexDevice, Autodiff, Flex};
    job.run::<Autodiff<Flex>>(FlexDevice)
}
#[cfg(not(feature = "flex"))]
fn flex<J: BackendJob>(_: J) -> Result<J::Output> {
    not_compiled("flex")
}

#[cfg(feature = "wgpu")]
fn wgpu<J: BackendJob>(job: J) -> Result<J::Output> {
    use burn::backend::{wgpu::WgpuDevice, Autodiff, Wgpu};
    let device = WgpuDevice::default();
    check_device::<Wgpu>(
        &device,
        "wgpu",
        "no usable GPU adapter was found; check the Vulkan/Metal driver, or use --device ndarray",
    )?;
    job.run::<Autodiff<Wgpu>>(device)
}
#[cfg(not(feature = "wgpu"))]
fn wgpu<J: BackendJob>(_: J) -> Result<J::Output> {
    not_compiled("wgpu")
}

#[cfg(feature = "cuda")]
fn cuda<J: BackendJob>(job: J) -> Result<J::Output> {
    use burn::backend::{cuda::CudaDevice, Autodiff, Cuda};
    let device = CudaDevice { index: 0 };
    check_device::<Cuda>(
        &device,
        "cuda",
        "the NVIDIA driver (libcuda) or GPU is missing; check `nvidia-smi`, or use --device wgpu/ndarray",
    )?;
    job.run::<Autodiff<Cuda>>(device)
}
#[cfg(not(feature = "cuda"))]
fn cuda<J: BackendJob>(_: J) -> Result<J::Output> {
    not_compiled("cuda")
}
