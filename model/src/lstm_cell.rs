//! An LSTM cell stepped one word at a time, with the gate projection split in two: the part
//! that depends only on the word embeddings (computed for the whole caption in one matmul) and
//! the part that depends on the step (one matmul of `[context, h]` to all four gates).

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::sigmoid;

use crate::activation::tanh_by_exp;
use crate::fused;
use crate::rows::linear_by_rows;
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
        linear_by_rows(&self.embed_gates, embeddings)
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
        // flex (and Autodiff<Flex>): the nonlinearities and the update in one pass, `fused/`.
        match fused::lstm_cell(&gates, &state.cell) {
            Some((hidden, cell)) => LstmState { hidden, cell },
            None => Self::update_by_tensor_ops(gates, state.cell),
        }
    }

    /// The cell's nonlinearities and state update as Burn tensor operations, from the summed
    /// gates `[batch, 4H]` and the previous cell state `[batch, H]`: what every backend but
    /// flex runs, and the reference that the fused kernel is tested against.
    pub fn update_by_tensor_ops(gates: Tensor<B, 2>, cell: Tensor<B, 2>) -> LstmState<B> {
        let [i, f, g, o]: [Tensor<B, 2>; 4] = gates
            .chunk(4, 1)
            .try_into()
            .expect("four gates of equal width");
        let cell = sigmoid(f) * cell + sigmoid(i) * tanh_by_exp(g);
        let hidden = sigmoid(o) * tanh_by_exp(cell.clone());
        LstmState { hidden, cell }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(feature = "flex")]
    #[test]
    fn the_fused_cell_on_flex_gives_the_states_and_gradients_of_the_tensor_operations() {
        use super::*;
        use crate::fused::{self, relative_gap};
        use burn::backend::{Autodiff, Flex};
        use burn::module::AutodiffModule;
        use burn::tensor::Distribution;
        type Ad = Autodiff<Flex>;

        let device = Default::default();
        for (n, embed, context_dim, hidden_dim) in [(3, 5, 6, 7), (32, 512, 1280, 512)] {
            Ad::seed(&device, 3);
            let cell = LstmCellConfig::new(embed, context_dim, hidden_dim).init::<Ad>(&device);
            let normal = Distribution::Normal(0.0, 2.0);
            let embeddings = Tensor::<Ad, 2>::random([n, embed], normal, &device).require_grad();
            let context = Tensor::<Ad, 2>::random([n, context_dim], normal, &device).require_grad();
            let hidden = Tensor::<Ad, 2>::random([n, hidden_dim], normal, &device).require_grad();
            let previous = Tensor::<Ad, 2>::random([n, hidden_dim], normal, &device).require_grad();
            let weigh_h = Tensor::<Ad, 2>::random([n, hidden_dim], normal, &device);
            let weigh_c = Tensor::<Ad, 2>::random([n, hidden_dim], normal, &device);
            let run = |use_fused: bool| {
                let gates = cell.embed_gates(embeddings.clone())
                    + cell
                        .step_layer()
                        .forward(Tensor::cat(vec![context.clone(), hidden.clone()], 1));
                let state = if use_fused {
                    let (hidden, cell) = fused::lstm_cell(&gates, &previous).unwrap();
                    LstmState { hidden, cell }
                } else {
                    LstmCell::update_by_tensor_ops(gates, previous.clone())
                };
                let loss = (state.hidden.clone() * weigh_h.clone()).sum()
                    + (state.cell.clone() * weigh_c.clone()).sum();
                let grads = loss.backward();
                [
                    state.hidden.inner(),
                    state.cell.inner(),
                    embeddings.grad(&grads).unwrap(),
                    context.grad(&grads).unwrap(),
                    hidden.grad(&grads).unwrap(),
                    previous.grad(&grads).unwrap(),
                    cell.step_gates.weight.grad(&grads).unwrap(),
                    cell.embed_gates
                        .bias
                        .as_ref()
                        .unwrap()
                        .grad(&grads)
                        .unwrap()
                        .unsqueeze(),
                ]
            };
            let names = [
                "h",
                "c",
                "d embed",
                "d context",
                "d hidden",
                "d c_prev",
                "d step W",
                "d bias",
            ];
            for ((name, ours), reference) in names.iter().zip(run(true)).zip(run(false)) {
                let gap = relative_gap(ours, reference);
                assert!(
                    gap < 2e-5,
                    "{name} differs by {gap} of its largest value (n {n})"
                );
            }

            // Inference (flex without autodiff) gives the same states.
            let inner = cell.valid();
            let (embeddings, context, hidden, previous) = (
                embeddings.clone().inner(),
                context.clone().inner(),
                hidden.clone().inner(),
                previous.clone().inner(),
            );
            let gates = inner.embed_gates(embeddings)
                + inner
                    .step_layer()
                    .forward(Tensor::cat(vec![context, hidden], 1));
            let (h, c) = fused::lstm_cell(&gates, &previous).unwrap();
            let reference = LstmCell::update_by_tensor_ops(gates, previous);
            assert!(relative_gap(h, reference.hidden) < 2e-5);
            assert!(relative_gap(c, reference.cell) < 2e-5);
        }
    }
}
