//! An LSTM cell stepped one word at a time, with the gate projection split in two: the part
//! that depends only on the word embeddings (computed for the whole caption in one matmul) and
//! the part that depends on the step (one matmul of `[context, h]` to all four gates).

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::sigmoid;

use crate::activation::tanh_by_exp;
use crate::step_linear::StepLinear;

/// Sizes of an [`LstmCell`].
#[derive(Config, Debug)]
pub struct LstmCellConfig {
    /// Width of the word embeddings.
    pub embed_dim: usize,
    /// Width of the attention context fed at each step.
    pub context_dim: usize,
    /// Width of the hidden and cell states.
    pub hidden_dim: usize,
}

/// `[i, f, g, o] = W_e e_t + W_r [z_t, h_{t-1}] + b`, `c_t = f c + i g`, `h_t = o tanh(c_t)`.
#[derive(Module, Debug)]
pub struct LstmCell<B: Backend> {
    embed_gates: Linear<B>,
    step_gates: Linear<B>,
}

/// Hidden and cell state, `[batch, hidden]` each.
#[derive(Debug, Clone)]
pub struct LstmState<B: Backend> {
    /// Hidden state.
    pub hidden: Tensor<B, 2>,
    /// Cell state.
    pub cell: Tensor<B, 2>,
}

impl LstmCellConfig {
    /// Builds the cell with random weights.
    pub fn init<B: Backend>(&self, device: &B::Device) -> LstmCell<B> {
        let gates = 4 * self.hidden_dim;
        LstmCell {
            embed_gates: LinearConfig::new(self.embed_dim, gates).init(device),
            step_gates: LinearConfig::new(self.context_dim + self.hidden_dim, gates)
                .with_bias(false)
                .init(device),
        }
    }
}

impl<B: Backend> LstmCell<B> {
    /// The embedding part of the gates for every step at once: `[.., embed]` to `[.., 4H]`.
    pub fn embed_gates<const D: usize>(&self, embeddings: Tensor<B, D>) -> Tensor<B, D> {
        self.embed_gates.forward(embeddings)
    }

    /// [`LstmCell::embed_gates`] laid out for one word per step (inference).
    pub fn embed_layer(&self) -> StepLinear<B> {
        StepLinear::new(&self.embed_gates)
    }

    /// The step part of the gates, laid out for stepping: pass it to every
    /// [`LstmCell::step`] of a batch.
    pub fn step_layer(&self) -> StepLinear<B> {
        StepLinear::new(&self.step_gates)
    }

    /// One step, given this step's embedding gates `[batch, 4H]` and context `[batch, C]`;
    /// `step_gates` is this cell's [`LstmCell::step_layer`].
    pub fn step(
        &self,
        embed_gates: Tensor<B, 2>,
        context: Tensor<B, 2>,
        state: LstmState<B>,
        step_gates: &StepLinear<B>,
    ) -> LstmState<B> {
        let joined = Tensor::cat(vec![context, state.hidden], 1);
        let gates = embed_gates + step_gates.forward(joined);
        let [i, f, g, o]: [Tensor<B, 2>; 4] = gates
            .chunk(4, 1)
            .try_into()
            .expect("four gates of equal width");
        let cell = sigmoid(f) * state.cell + sigmoid(i) * tanh_by_exp(g);
        let hidden = sigmoid(o) * tanh_by_exp(cell.clone());
        LstmState { hidden, cell }
    }
}
