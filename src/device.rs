//! `--device`: one generic job, run on the backend chosen at run time among those compiled in.

use std::fmt;

use anyhow::{bail, Result};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use captioner_model::Shapes;
use clap::ValueEnum;

/// The backends a user can pick with `--device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceKind {
    /// The first backend compiled in that starts, in the order cuda, wgpu, flex, ndarray
    /// (wgpu only on a hardware GPU: a software Vulkan device such as lavapipe is slower than
    /// the CPU backends).
    Auto,
    /// NVIDIA GPU through CUDA (cargo feature `cuda`).
    Cuda,
    /// GPU through WGPU: Vulkan, Metal or DirectX (cargo feature `wgpu`).
    Wgpu,
    /// CPU through Burn's flex backend (ahead of or level with ndarray on every row of
    /// bench/RESULTS.md, "flex against ndarray"; cargo feature `flex`, on by default).
    Flex,
    /// CPU through Burn's ndarray backend (cargo feature `ndarray`, on by default).
    Ndarray,
}

impl DeviceKind {
    /// The name `--device` takes.
    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::Auto => "auto",
            DeviceKind::Cuda => "cuda",
            DeviceKind::Wgpu => "wgpu",
            DeviceKind::Flex => "flex",
            DeviceKind::Ndarray => "ndarray",
        }
    }

    /// How this backend wants a step's tensors shaped: the GPU backends compile and tune
    /// kernels per shape, so they get [`Shapes::Fixed`]; the CPU backends do the least work
    /// with [`Shapes::Packed`], which computes no padded rows or steps.
    pub fn shapes(self) -> Shapes {
        match self {
            DeviceKind::Cuda | DeviceKind::Wgpu => Shapes::Fixed,
            DeviceKind::Auto | DeviceKind::Flex | DeviceKind::Ndarray => Shapes::Packed,
        }
    }
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `--shapes`: how a step's tensors are shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ShapesFlag {
    /// As the backend wants: fixed on the GPU backends, packed on the CPU ones.
    Auto,
    /// Shapes follow the data: the decoder steps only the captions still running (the least
    /// work; on a GPU every new shape compiles and tunes new kernels).
    Packed,
    /// The same shapes at every step: batches, caption widths (to a few buckets) and decoder
    /// steps padded, the padding masked out of the loss.
    Fixed,
}

impl ShapesFlag {
    /// The shapes asked for; `None` leaves them to the backend.
    pub fn shapes(self) -> Option<Shapes> {
        match self {
            ShapesFlag::Auto => None,
            ShapesFlag::Packed => Some(Shapes::Packed),
            ShapesFlag::Fixed => Some(Shapes::Fixed),
        }
    }
}

/// What a job runs on.
#[derive(Debug, Clone)]
pub struct Target<B: Backend> {
    /// The device of the job (the first of `devices`).
    pub device: B::Device,
    /// Every device that data-parallel training spreads its batches over, `device` first;
    /// one for every other job.
    pub devices: Vec<B::Device>,
    /// How the job shapes its tensors for this backend.
    pub shapes: Shapes,
}

/// Work that is written once, generic over the backend.
pub trait BackendJob {
    /// What the job returns.
    type Output;
    /// Runs on the training backend `B` (inference jobs use `B::InnerBackend`).
    fn run<B: AutodiffBackend>(self, target: Target<B>) -> Result<Self::Output>;
}

/// A backend that was chosen and has started, and why it was chosen.
#[derive(Debug, Clone)]
pub struct Chosen {
    /// The backend (never [`DeviceKind::Auto`]).
    pub kind: DeviceKind,
    /// The device's own name where the backend tells it (the GPU adapter's).
    pub adapter: Option<String>,
    /// Why: asked for by name, or what `auto` found of the backends before it.
    pub why: String,
}

impl fmt::Display for Chosen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Device: {}", self.kind)?;
        if let Some(adapter) = &self.adapter {
            write!(f, " ({adapter})")?;
        }
        write!(f, "; {}", self.why)
    }
}

/// The backends `auto` tries, in order.
const AUTO_ORDER: [DeviceKind; 4] = [
    DeviceKind::Cuda,
    DeviceKind::Wgpu,
    DeviceKind::Flex,
    DeviceKind::Ndarray,
];

/// Chooses the backend for `kind` and checks that its device starts. `auto` takes the first
/// of cuda, wgpu, flex, ndarray that is compiled in and starts (wgpu only on a hardware
/// GPU) and says why the others were passed over; a backend asked for by name that cannot
/// start is an error.
pub fn choose(kind: DeviceKind) -> Result<Chosen> {
    if kind != DeviceKind::Auto {
        let adapter = start(kind, false).map_err(|why| anyhow::anyhow!("{kind} {why}"))?;
        return Ok(Chosen {
            kind,
            adapter,
            why: "asked for by name".into(),
        });
    }
    let mut passed = Vec::new();
    for kind in AUTO_ORDER {
        match start(kind, true) {
            Ok(adapter) => {
                let why = if passed.is_empty() {
                    format!("auto, the first of {} that starts", order_names())
                } else {
                    format!("auto: {}", passed.join("; "))
                };
                return Ok(Chosen { kind, adapter, why });
            }
            Err(why) => passed.push(format!("{kind} {why}")),
        }
    }
    bail!("no backend could start: {}", passed.join("; "))
}

fn order_names() -> String {
    AUTO_ORDER.map(DeviceKind::name).join(", ")
}

/// Starts `kind`'s device: `Ok` with the adapter's name when the backend gives one, `Err`
/// with what stopped it. `auto` also passes over software GPU adapters.
fn start(kind: DeviceKind, auto: bool) -> Result<Option<String>, String> {
    match kind {
        DeviceKind::Auto => unreachable!("auto is resolved by `choose`"),
        DeviceKind::Cuda => start_cuda(auto),
        DeviceKind::Wgpu => start_wgpu(auto),
        DeviceKind::Flex if cfg!(feature = "flex") => Ok(None),
        DeviceKind::Ndarray if cfg!(feature = "ndarray") => Ok(None),
        DeviceKind::Flex | DeviceKind::Ndarray => Err(not_compiled(kind, auto)),
    }
}

/// Why `kind` cannot run: it was not compiled in (said briefly when `auto` passes it over).
#[allow(dead_code)]
fn not_compiled(kind: DeviceKind, auto: bool) -> String {
    if auto {
        format!("is not built in (--features {kind})")
    } else {
        format!(
            "is not built in: rebuild with `cargo run --release --features {kind} --bin \
             <train|infer|eval|features|serve|export> -- --device {kind} ...`"
        )
    }
}

/// Runs `f`, turning a panic (a backend failing to start deep inside its runtime) into an
/// error, without the panic message and backtrace on stderr.
#[allow(dead_code)]
fn without_panic<T>(f: impl FnOnce() -> T) -> Option<T> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    result.ok()
}

/// The WGPU backend every binary runs: CubeCL's kernels without Burn's operation fusion.
///
/// Fusion (Burn's default `Wgpu` type) compiles one kernel per fused sequence of operations,
/// and which sequences it fuses depends on more than the shapes (when streams are flushed,
/// which buffers can be reused), so training kept compiling new kernels in its second epoch;
/// without it, a training run with fixed shapes compiles and tunes everything in its first
/// steps (docs/gpu.md says why, bench/RESULTS.md has the counts).
#[cfg(feature = "wgpu")]
pub type WgpuBackend = burn_cubecl::CubeBackend<burn::backend::wgpu::WgpuRuntime, f32, i32, u32>;

/// The CUDA backend every binary runs: CubeCL's kernels without Burn's operation fusion, for
/// the reason given at [`WgpuBackend`].
#[cfg(feature = "cuda")]
pub type CudaBackend = burn_cubecl::CubeBackend<burn::cubecl::cuda::CudaRuntime, f32, i32, u8>;

/// Runs one tiny computation so that a missing GPU or driver is reported plainly here, not as
/// a panic deep in a worker thread later.
#[allow(dead_code)]
fn check_device<B: Backend>(device: &B::Device, hint: &str) -> Result<(), String> {
    let device = device.clone();
    match without_panic(move || {
        Tensor::<B, 1>::ones([4], &device)
            .sum()
            .into_scalar()
            .elem::<f32>()
    }) {
        Some(4.0) => Ok(()),
        Some(sum) => Err(format!("gave a wrong result ({sum} for 4): {hint}")),
        None => Err(format!("could not start: {hint}")),
    }
}

#[cfg(feature = "cuda")]
fn start_cuda(_auto: bool) -> Result<Option<String>, String> {
    use burn::backend::cuda::CudaDevice;
    check_device::<CudaBackend>(
        &CudaDevice { index: 0 },
        "the NVIDIA driver (libcuda), CUDA's run-time compiler (libnvrtc, which compiles the \
         kernels) or the GPU is missing; check `nvidia-smi` and `ldconfig -p | grep nvrtc`",
    )
    .map(|()| None)
}
#[cfg(not(feature = "cuda"))]
fn start_cuda(auto: bool) -> Result<Option<String>, String> {
    Err(not_compiled(DeviceKind::Cuda, auto))
}

#[cfg(feature = "wgpu")]
fn start_wgpu(auto: bool) -> Result<Option<String>, String> {
    use burn::backend::wgpu::{graphics::AutoGraphicsApi, init_setup, WgpuDevice};
    let device = WgpuDevice::DefaultDevice;
    let hint = "no usable GPU adapter was found; check the Vulkan/Metal driver";
    let info = without_panic(|| init_setup::<AutoGraphicsApi>(&device, Default::default()))
        .map(|setup| setup.adapter.get_info())
        .ok_or_else(|| format!("could not start: {hint}"))?;
    let adapter = format!("{}, {:?}", info.name, info.backend);
    // wgpu's `DeviceType::Cpu`: a software renderer (lavapipe, llvmpipe, WARP).
    if auto && format!("{:?}", info.device_type) == "Cpu" {
        return Err(format!(
            "found only a software adapter ({adapter}), slower than the CPU backends"
        ));
    }
    check_device::<WgpuBackend>(&device, hint)?;
    Ok(Some(adapter))
}
#[cfg(not(feature = "wgpu"))]
fn start_wgpu(auto: bool) -> Result<Option<String>, String> {
    Err(not_compiled(DeviceKind::Wgpu, auto))
}

/// Runs `job` on the backend `chosen`, on its device `indices` (data-parallel when more
/// than one; the CPU backends have one device, which `indices` may repeat), shaping its
/// tensors as `shapes` says or, when `None`, as the backend wants.
pub fn run_on<J: BackendJob>(
    chosen: &Chosen,
    indices: &[usize],
    shapes: Option<Shapes>,
    job: J,
) -> Result<J::Output> {
    let shapes = shapes.unwrap_or(chosen.kind.shapes());
    let indices = if indices.is_empty() {
        &[0][..]
    } else {
        indices
    };
    match chosen.kind {
        DeviceKind::Auto => unreachable!("auto is resolved by `choose`"),
        DeviceKind::Ndarray => ndarray(job, indices, shapes),
        DeviceKind::Flex => flex(job, indices, shapes),
        DeviceKind::Wgpu => wgpu(job, indices, shapes),
        DeviceKind::Cuda => cuda(job, indices, shapes),
    }
}

/// Chooses the backend for `kind`, says so on stderr (the first line a binary prints) and
/// runs `job` on its first device with the backend's shapes: what `infer`, `eval` and
/// `features` do.
pub fn run_chosen<J: BackendJob>(kind: DeviceKind, job: J) -> Result<J::Output> {
    let chosen = choose(kind)?;
    eprintln!("{chosen}");
    run_on(&chosen, &[], None, job)
}

fn target<B: Backend>(
    device: impl Fn(usize) -> B::Device,
    indices: &[usize],
    shapes: Shapes,
) -> Target<B> {
    let devices: Vec<B::Device> = indices.iter().map(|&i| device(i)).collect();
    Target {
        device: devices[0].clone(),
        devices,
        shapes,
    }
}

#[cfg(feature = "ndarray")]
fn ndarray<J: BackendJob>(job: J, indices: &[usize], shapes: Shapes) -> Result<J::Output> {
    use burn::backend::{ndarray::NdArrayDevice, Autodiff, NdArray};
    job.run::<Autodiff<NdArray>>(target(|_| NdArrayDevice::Cpu, indices, shapes))
}
#[cfg(not(feature = "ndarray"))]
fn ndarray<J: BackendJob>(_: J, _: &[usize], _: Shapes) -> Result<J::Output> {
    bail!("ndarray {}", not_compiled(DeviceKind::Ndarray, false))
}

#[cfg(feature = "flex")]
fn flex<J: BackendJob>(job: J, indices: &[usize], shapes: Shapes) -> Result<J::Output> {
    use burn::backend::{flex::FlexDevice, Autodiff, Flex};
    job.run::<Autodiff<Flex>>(target(|_| FlexDevice, indices, shapes))
}
#[cfg(not(feature = "flex"))]
fn flex<J: BackendJob>(_: J, _: &[usize], _: Shapes) -> Result<J::Output> {
    bail!("flex {}", not_compiled(DeviceKind::Flex, false))
}

#[cfg(feature = "wgpu")]
fn wgpu<J: BackendJob>(job: J, indices: &[usize], shapes: Shapes) -> Result<J::Output> {
    use burn::backend::{wgpu::WgpuDevice, Autodiff};
    // One device: the adapter `choose` started (wgpu's default, or discrete GPU `i`).
    // Several: the discrete GPUs by index, so that `0,1` are two adapters, never the default
    // one twice.
    let several = indices.len() > 1;
    let device = move |i: usize| match i {
        0 if !several => WgpuDevice::DefaultDevice,
        i => WgpuDevice::DiscreteGpu(i),
    };
    for &i in indices.iter().filter(|&&i| several || i > 0) {
        check_device::<WgpuBackend>(&device(i), "no such GPU adapter")
            .map_err(|why| anyhow::anyhow!("wgpu device {i} {why}"))?;
    }
    job.run::<Autodiff<WgpuBackend>>(target(device, indices, shapes))
}
#[cfg(not(feature = "wgpu"))]
fn wgpu<J: BackendJob>(_: J, _: &[usize], _: Shapes) -> Result<J::Output> {
    bail!("wgpu {}", not_compiled(DeviceKind::Wgpu, false))
}

#[cfg(feature = "cuda")]
fn cuda<J: BackendJob>(job: J, indices: &[usize], shapes: Shapes) -> Result<J::Output> {
    use burn::backend::{cuda::CudaDevice, Autodiff};
    let device = |index: usize| CudaDevice { index };
    for &i in indices.iter().filter(|&&i| i > 0) {
        check_device::<CudaBackend>(&device(i), "no such GPU (see `nvidia-smi`)")
            .map_err(|why| anyhow::anyhow!("cuda:{i} {why}"))?;
    }
    job.run::<Autodiff<CudaBackend>>(target(device, indices, shapes))
}
#[cfg(not(feature = "cuda"))]
fn cuda<J: BackendJob>(_: J, _: &[usize], _: Shapes) -> Result<J::Output> {
    bail!("cuda {}", not_compiled(DeviceKind::Cuda, false))
}

/// `--devices`: the devices of one backend that data-parallel training spreads over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceList {
    /// The backend the list names (`cuda:0,cuda:1`), or `None` for a bare count or bare
    /// indices, which take the backend of `--device`.
    pub kind: Option<DeviceKind>,
    /// Device indices, the first one the main device.
    pub indices: Vec<usize>,
}

impl std::str::FromStr for DeviceList {
    type Err = String;

    /// `2` (the first two devices), `0,2` (those two) or `cuda:0,cuda:1` (a backend's).
    fn from_str(text: &str) -> Result<Self, String> {
        let wrong = || {
            format!(
                "`{text}` is not a device list: give a count (`2`), indices (`0,1`) or devices \
                 of one backend (`cuda:0,cuda:1`)"
            )
        };
        if let Ok(count) = text.trim().parse::<usize>() {
            if count == 0 {
                return Err("--devices needs at least one device".into());
            }
            return Ok(DeviceList {
                kind: None,
                indices: (0..count).collect(),
            });
        }
        let mut kind = None;
        let mut indices = Vec::new();
        for part in text.split(',').map(str::trim) {
            let (name, index) = match part.split_once(':') {
                Some((name, index)) => {
                    let named = DeviceKind::from_str(name, true).map_err(|_| wrong())?;
                    (Some(named), index)
                }
                None => (None, part),
            };
            if kind.is_some() && name.is_some() && kind != name {
                return Err(format!("{text}: all devices must be of one backend"));
            }
            kind = kind.or(name);
            indices.push(index.parse::<usize>().map_err(|_| wrong())?);
        }
        if kind == Some(DeviceKind::Auto) {
            return Err(wrong());
        }
        let mut seen = std::collections::HashSet::new();
        if kind.is_some_and(|k| k.shapes() == Shapes::Fixed)
            && !indices.iter().all(|i| seen.insert(*i))
        {
            return Err(format!("{text}: a GPU is listed twice"));
        }
        Ok(DeviceList { kind, indices })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_lists_are_counts_indices_or_devices_of_one_backend() {
        let parse = |s: &str| s.parse::<DeviceList>();
        assert_eq!(
            parse("2"),
            Ok(DeviceList {
                kind: None,
                indices: vec![0, 1]
            })
        );
        assert_eq!(
            parse("cuda:0, cuda:2"),
            Ok(DeviceList {
                kind: Some(DeviceKind::Cuda),
                indices: vec![0, 2]
            })
        );
        assert_eq!(
            parse("1,0"),
            Ok(DeviceList {
                kind: None,
                indices: vec![1, 0]
            })
        );
        assert!(parse("0").is_err());
        assert!(parse("cuda:0,wgpu:1").unwrap_err().contains("one backend"));
        assert!(parse("cuda:1,cuda:1").unwrap_err().contains("twice"));
        assert!(parse("gpu:0").unwrap_err().contains("not a device list"));
        assert!(parse("auto:0").is_err());
    }

    #[test]
    fn gpu_backends_get_fixed_shapes_and_cpu_backends_packed_ones() {
        assert_eq!(DeviceKind::Cuda.shapes(), Shapes::Fixed);
        assert_eq!(DeviceKind::Wgpu.shapes(), Shapes::Fixed);
        assert_eq!(DeviceKind::Flex.shapes(), Shapes::Packed);
        assert_eq!(DeviceKind::Ndarray.shapes(), Shapes::Packed);
    }

    #[test]
    fn auto_takes_a_cpu_backend_when_no_gpu_backend_starts_and_says_why() {
        // This machine has no GPU; a build with GPU backends passes them over.
        let chosen = choose(DeviceKind::Auto).unwrap();
        assert_eq!(chosen.kind, DeviceKind::Flex);
        assert!(chosen.why.contains("cuda "), "{}", chosen.why);
        assert!(chosen.why.contains("wgpu "), "{}", chosen.why);
    }
}
