//! The benchmark's rows, on random data: what each one builds and what one step does.

use burn::module::{Module, ModuleMapper, Param};
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Distribution;
use captioner_model::tokens::{END, PAD, START};
use captioner_model::{
    beam_search, bucket_steps, teacher_forced_loss, CaptionBatch, CaptionerConfig, Decoder,
    DecoderConfig, EfficientNetLiteConfig, EncoderConfig, EncoderInput, Endings, ResNetConfig,
    SearchConfig, Shapes,
};
use captioner_training::optimizer::EncoderDecoderAdam;
use clap::ValueEnum;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::Workload;

/// Captions (or images) per step.
const BATCH: usize = 32;
/// The decoder's learning rate (Show, Attend and Tell's 4e-4); the encoder's is a quarter.
const LR: f64 = 4e-4;

/// The rows of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Row {
    /// A plain square product, `[2048, 2048] x [2048, 2048]`: the machine's reachable peak.
    #[value(name = "gemm")]
    Gemm,
    /// Decoder training step, features given, Show-Attend-Tell size.
    #[value(name = "1a")]
    DecoderSat,
    /// Decoder training step, features given, the Flickr8k preset's size.
    #[value(name = "1b")]
    DecoderFlickr,
    /// ResNet-101 forward, 224x224 to a 14x14 grid.
    #[value(name = "2-resnet101")]
    ResNet101,
    /// EfficientNet-Lite0 forward, 224x224 to a 7x7 grid.
    #[value(name = "2-lite0")]
    Lite0,
    /// Fine-tuning step: ResNet-101 layers 2-4 and the decoder.
    #[value(name = "3")]
    FineTune,
    /// Beam search (K=3) on given features, 32 images.
    #[value(name = "4-b32")]
    BeamBatch32,
    /// Beam search (K=3) on given features, one image: latency.
    #[value(name = "4-b1")]
    BeamBatch1,
}

impl Row {
    /// The row's name on the command line and in the table.
    pub fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }

    /// Whether the figure is a time per item (lower is better) rather than a throughput.
    pub fn is_latency(self) -> bool {
        self == Row::BeamBatch1
    }

    /// The unit of the figure.
    pub fn unit(self) -> &'static str {
        match self {
            Row::Gemm => "GFLOP/s",
            Row::DecoderSat | Row::DecoderFlickr => "captions/s",
            Row::BeamBatch1 => "ms/image",
            _ => "images/s",
        }
    }
}

/// Grid and vocabulary of a decoder size.
#[derive(Debug, Clone, Copy)]
struct Size {
    positions: usize,
    channels: usize,
    vocab: usize,
}

/// Show, Attend and Tell: ResNet-101's 14x14 grid of 2048 channels, 10000 words.
const SAT: Size = Size {
    positions: 196,
    channels: 2048,
    vocab: 10000,
};
/// The Flickr8k preset: EfficientNet-Lite0's 7x7 grid of 1280 channels, 1755 words.
const FLICKR: Size = Size {
    positions: 49,
    channels: 1280,
    vocab: 1755,
};

fn decoder_config(size: Size) -> DecoderConfig {
    DecoderConfig::new(size.vocab, size.channels)
}

/// `BATCH` captions of 15 to 20 tokens (`<start>` and `<end>` included), padded to 20 (to
/// the bucket of 32 steps under fixed shapes, as the trainer's batcher pads them), and their
/// lengths; longest first, as the batcher orders them.
fn captions<B: Backend>(
    vocab: usize,
    shapes: Shapes,
    device: &B::Device,
) -> (Tensor<B, 2, Int>, Vec<usize>) {
    let mut rng = SmallRng::seed_from_u64(0);
    let longest = 20;
    let width = match shapes {
        Shapes::Packed => longest,
        Shapes::Fixed => bucket_steps(longest - 1) + 1,
    };
    let mut lengths: Vec<usize> = (0..BATCH).map(|_| rng.random_range(15..=longest)).collect();
    lengths.sort_by(|a, b| b.cmp(a));
    let mut tokens = vec![PAD as i64; BATCH * width];
    for (row, &len) in tokens.chunks_mut(width).zip(&lengths) {
        row[0] = START as i64;
        for token in &mut row[1..len - 1] {
            *token = rng.random_range(4..vocab) as i64;
        }
        row[len - 1] = END as i64;
    }
    let tokens = Tensor::from_data(TensorData::new(tokens, [BATCH, width]), device);
    (tokens, lengths)
}

fn sync<B: Backend>(device: &B::Device) {
    B::sync(device).expect("the device finished its work");
}

fn adam() -> AdamConfig {
    AdamConfig::new()
        .with_epsilon(1e-8)
        .with_grad_clipping(Some(GradientClippingConfig::Value(5.0)))
}

/// Builds row `row` on `device`.
pub fn build<'a, B: AutodiffBackend>(
    row: Row,
    shapes: Shapes,
    device: &'a B::Device,
) -> Workload<'a> {
    match row {
        Row::Gemm => gemm::<B::InnerBackend>(device),
        Row::DecoderSat => decoder_training::<B>(SAT, shapes, device),
        Row::DecoderFlickr => decoder_training::<B>(FLICKR, shapes, device),
        Row::ResNet101 => encoder_forward::<B::InnerBackend>(resnet101(), device),
        Row::Lite0 => encoder_forward::<B::InnerBackend>(lite0(), device),
        Row::FineTune => fine_tuning::<B>(shapes, device),
        Row::BeamBatch32 => beam::<B::InnerBackend>(BATCH, device),
        Row::BeamBatch1 => beam::<B::InnerBackend>(1, device),
    }
}

/// The side of row gemm's square product.
const GEMM: usize = 2048;

/// Row gemm: one square product, its items the GFLOP it does.
fn gemm<'a, B: Backend>(device: &'a B::Device) -> Workload<'a> {
    let normal = Distribution::Normal(0.0, 1.0);
    let a = Tensor::<B, 2>::random([GEMM, GEMM], normal, device);
    let b = Tensor::<B, 2>::random([GEMM, GEMM], normal, device);
    Workload {
        items: 2.0 * (GEMM as f64).powi(3) / 1e9,
        step: Box::new(move || {
            let _ = a.clone().matmul(b.clone());
            sync::<B>(device);
        }),
    }
}

/// Row 1: teacher-forced loss, backward and Adam on the decoder, features given.
fn decoder_training<'a, B: AutodiffBackend>(
    size: Size,
    shapes: Shapes,
    device: &'a B::Device,
) -> Workload<'a> {
    let mut decoder = Some(decoder_config(size).init::<B>(device));
    let mut optimizer = adam().init::<B, Decoder<B>>();
    let features = Tensor::<B, 3>::random(
        [BATCH, size.positions, size.channels],
        Distribution::Uniform(0.0, 1.0),
        device,
    );
    let (tokens, lengths) = captions::<B>(size.vocab, shapes, device);
    Workload {
        items: BATCH as f64,
        step: Box::new(move || {
            let model = decoder
                .take()
                .expect("the decoder is put back after each step");
            let out = teacher_forced_loss(
                &model,
                1.0,
                features.clone(),
                tokens.clone(),
                &lengths,
                shapes,
            );
            let grads = GradientsParams::from_grads(out.loss.backward(), &model);
            decoder = Some(optimizer.step(LR, model, grads));
            sync::<B>(device);
        }),
    }
}

fn resnet101() -> EncoderConfig {
    EncoderConfig::ResNet(ResNetConfig::new(101))
}

fn lite0() -> EncoderConfig {
    EncoderConfig::EfficientNetLite(EfficientNetLiteConfig::new())
}

fn images<B: Backend>(device: &B::Device) -> Tensor<B, 4> {
    Tensor::random([BATCH, 3, 224, 224], Distribution::Normal(0.0, 1.0), device)
}

/// Row 2: the encoder's forward pass, as when caching features or captioning.
fn encoder_forward<'a, B: Backend>(config: EncoderConfig, device: &'a B::Device) -> Workload<'a> {
    let encoder = config.init::<B>(device);
    let images = images::<B>(device);
    Workload {
        items: BATCH as f64,
        step: Box::new(move || {
            let features = encoder.forward(images.clone());
            let _ = features.into_data();
        }),
    }
}

/// Row 3: one training step of ResNet-101 (stem and layer1 frozen) and the decoder.
fn fine_tuning<'a, B: AutodiffBackend>(shapes: Shapes, device: &'a B::Device) -> Workload<'a> {
    let config = CaptionerConfig::new(resnet101(), decoder_config(SAT));
    let encoder = config.encoder.init::<B>(device).freeze_early_layers();
    let mut model = Some(config.init_with_encoder(encoder, device));
    let mut optimizer = EncoderDecoderAdam::<B>::new(&adam(), 0.25);
    let images = images::<B>(device);
    let (tokens, lengths) = captions::<B>(SAT.vocab, shapes, device);
    let image_of_caption = Tensor::<B, 1, Int>::arange(0..BATCH as i64, device);
    Workload {
        items: BATCH as f64,
        step: Box::new(move || {
            let captioner = model.take().expect("the model is put back after each step");
            let out = captioner.forward(CaptionBatch {
                input: EncoderInput::Images(images.clone()),
                tokens: tokens.clone(),
                image_of_caption: image_of_caption.clone(),
                lengths: lengths.clone(),
                decode: None,
                self_critical: None,
                shapes,
            });
            let grads = GradientsParams::from_grads(out.loss.backward(), &captioner);
            model = Some(optimizer.step(LR, captioner, grads));
            sync::<B>(device);
        }),
    }
}

/// Makes `<end>` unreachable (its output bias very negative), so that every search runs
/// to the length cap whatever the random weights, on both sides of the comparison.
struct ForbidEnd {
    vocab: usize,
}

impl<B: Backend> ModuleMapper<B> for ForbidEnd {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let tensor = if D == 1 && tensor.dims()[0] == self.vocab {
            let (device, dims) = (tensor.device(), tensor.dims());
            let mut mask = vec![0.0f32; self.vocab];
            mask[END as usize] = -1e4;
            tensor + Tensor::<B, 1>::from_floats(mask.as_slice(), &device).reshape(dims)
        } else {
            tensor
        };
        Param::from_mapped_value(id, tensor, mapper)
    }
}

/// Row 4: beam search with K=3 over `images` images of the Flickr8k size, 20 words.
fn beam<'a, B: Backend>(images: usize, device: &'a B::Device) -> Workload<'a> {
    let decoder = decoder_config(FLICKR)
        .init::<B>(device)
        .map(&mut ForbidEnd {
            vocab: FLICKR.vocab,
        });
    let features = Tensor::<B, 3>::random(
        [images, FLICKR.positions, FLICKR.channels],
        Distribution::Uniform(0.0, 1.0),
        device,
    );
    let search = SearchConfig {
        beam_size: 3,
        max_len: 20,
        length_penalty: 0.0,
    };
    Workload {
        items: images as f64,
        step: Box::new(move || {
            let captions = beam_search(&decoder, features.clone(), &search, &Endings::any());
            assert!(captions.iter().all(|c| c.tokens.len() == search.max_len));
        }),
    }
}
