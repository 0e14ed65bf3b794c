//! Adam with its own learning rate for the encoder: a fine-tuned pretrained CNN learns at
//! `--encoder-lr` (1e-4) while the fresh decoder learns at `--lr`.

use burn::module::{ModuleVisitor, Param};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{
    Adam, AdamConfig, GradientsParams, LearningRate, MultiGradientsParams, Optimizer,
};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use captioner_model::{Captioner, Encoder};

type Adaptor<B> = OptimizerAdaptor<Adam, Captioner<B>, B>;

/// Two Adam optimisers over one model: the encoder's parameters step at `encoder_lr_ratio`
/// times the scheduled learning rate, everything else at the scheduled rate. Each keeps the
/// moments of its own parameters, and both are checkpointed.
#[derive(Clone)]
pub struct EncoderDecoderAdam<B: AutodiffBackend> {
    rest: Adaptor<B>,
    encoder: Adaptor<B>,
    encoder_lr_ratio: f64,
}

impl<B: AutodiffBackend> EncoderDecoderAdam<B> {
    /// Both optimisers from `config`; the encoder's rate is `encoder_lr_ratio` times the rest's.
    pub fn new(config: &AdamConfig, encoder_lr_ratio: f64) -> Self {
        Self {
            rest: config.init(),
            encoder: config.init(),
            encoder_lr_ratio,
        }
    }
}

/// Moves the gradients of every parameter it visits from `from` to `to`.
struct TakeGrads<'a> {
    from: &'a mut GradientsParams,
    to: GradientsParams,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for TakeGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(grad) = self.from.remove::<B::InnerBackend, D>(param.id) {
            self.to.register::<B::InnerBackend, D>(param.id, grad);
        }
    }
}

/// The encoder's gradients, removed from `grads`.
fn take_encoder_grads<B: AutodiffBackend>(
    encoder: &Encoder<B>,
    grads: &mut GradientsParams,
) -> GradientsParams {
    let mut visitor = TakeGrads {
        from: grads,
        to: GradientsParams::new(),
    };
    encoder.visit(&mut visitor);
    visitor.to
}

impl<B: AutodiffBackend> Optimizer<Captioner<B>, B> for EncoderDecoderAdam<B> {
    type Record = (
        <Adaptor<B> as Optimizer<Captioner<B>, B>>::Record,
        <Adaptor<B> as Optimizer<Captioner<B>, B>>::Record,
    );

    fn step(
        &mut self,
        lr: LearningRate,
        module: Captioner<B>,
        mut grads: GradientsParams,
    ) -> Captioner<B> {
        let encoder_grads = take_encoder_grads(&module.encoder, &mut grads);
        let module = self.rest.step(lr, module, grads);
        if encoder_grads.is_empty() {
            return module;
        }
        self.encoder
            .step(lr * self.encoder_lr_ratio, module, encoder_grads)
    }

    fn step_multi(
        &mut self,
        lr: LearningRate,
        module: Captioner<B>,
        mut grads: MultiGradientsParams,
    ) -> Captioner<B> {
        let encoder_grads = MultiGradientsParams {
            grads: grads
                .grads
                .iter_mut()
                .map(|(g, device)| (take_encoder_grads(&module.encoder, g), *device))
                .collect(),
        };
        let module = self.rest.step_multi(lr, module, grads);
        self.encoder
            .step_multi(lr * self.encoder_lr_ratio, module, encoder_grads)
    }

    fn to_record(&self) -> Self::Record {
        (self.rest.to_record(), self.encoder.to_record())
    }

    fn load_record(self, (rest, encoder): Self::Record) -> Self {
        Self {
            rest: self.rest.load_record(rest),
            encoder: self.encoder.load_record(encoder),
            ..self
        }
    }
}
