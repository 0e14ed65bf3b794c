//! The attention LSTM decoder of "Show, Attend and Tell".

use burn::module::Param;
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, Initializer, Linear, LinearConfig,
};
use burn::prelude::*;

use crate::activation::{gated, log_softmax_rows};
use crate::attention::{Attention, AttentionConfig};
use crate::fused::{self, StepGradient};
use crate::lstm_cell::{LstmCell, LstmCellConfig, LstmState};
use crate::step_linear::StepLinear;

/// Sizes and regularisation of a [`Decoder`].
#[derive(Config, Debug)]
pub struct DecoderConfig {
    /// Number of words, special tokens included.
    pub vocab_size: usize,
    /// Width of each encoder feature.
    pub feature_dim: usize,
    /// Width of the word embeddings.
    #[config(default = 512)]
    pub embed_dim: usize,
    /// Width of the attention space.
    #[config(default = 512)]
    pub attention_dim: usize,
    /// Width of the LSTM state.
    #[config(default = 512)]
    pub hidden_dim: usize,
    /// Dropout on the LSTM output before the vocabulary projection.
    #[config(default = 0.5)]
    pub dropout: f64,
}

/// Embedding, attention with a gating scalar, LSTM cell and vocabulary projection.
#[derive(Module, Debug)]
pub struct Decoder<B: Backend> {
    embedding: Embedding<B>,
    attention: Attention<B>,
    init_hidden: Linear<B>,
    init_cell: Linear<B>,
    gate: Linear<B>,
    cell: LstmCell<B>,
    dropout: Dropout,
    output: Linear<B>,
}

/// Teacher-forced decoder output.
#[derive(Debug, Clone)]
pub struct DecoderOutput<B: Backend> {
    /// Scores of the next word. From [`Decoder::forward`], at every real step, packed step
    /// by step: all captions' first step, then the second step of those still running, ...,
    /// `[steps in all, vocab]` (the order of [`packed_positions`]). From
    /// [`Decoder::forward_masked`], at every step of every row, `[batch * width, vocab]`
    /// (row by row).
    pub logits: Tensor<B, 2>,
    /// Attention weights, `[batch, width, positions]`, zero after a caption's end.
    pub alphas: Tensor<B, 3>,
}

/// `[batch, width]`: 1 at the steps `t < steps[row]` that a caption really has, 0 past its
/// end.
pub fn step_mask<B: Backend>(steps: &[usize], width: usize, device: &B::Device) -> Tensor<B, 2> {
    let mask: Vec<f32> = steps
        .iter()
        .flat_map(|&s| (0..width).map(move |t| if t < s { 1.0 } else { 0.0 }))
        .collect();
    Tensor::from_data(TensorData::new(mask, [steps.len(), width]), device)
}

/// How many of the captions (sorted by decreasing `steps`) are still running at step `t`.
fn running_at(steps: &[usize], t: usize) -> usize {
    steps.partition_point(|&s| s > t)
}

/// For the packed order of [`DecoderOutput::logits`]: the index `row * width + t` of each
/// (caption, step) pair in a `[batch, width]` layout, for captions of `steps` steps sorted
/// by decreasing length.
pub fn packed_positions(steps: &[usize], width: usize) -> Vec<usize> {
    let longest = steps.first().copied().unwrap_or(0);
    (0..longest)
        .flat_map(|t| (0..running_at(steps, t)).map(move |row| row * width + t))
        .collect()
}

/// What the decoder keeps between inference steps for a batch of images.
#[derive(Debug, Clone)]
pub struct DecodeState<B: Backend> {
    /// Encoder features, `[n, positions, channels]`.
    pub features: Tensor<B, 3>,
    /// Their attention projection, `[n, positions, attention]`.
    pub projected: Tensor<B, 3>,
    /// LSTM state.
    pub lstm: LstmState<B>,
    /// The layers applied at every step, laid out once for the batch.
    layers: StepLayers<B>,
}

/// The decoder's per-step layers as [`StepLinear`]s.
#[derive(Debug, Clone)]
struct StepLayers<B: Backend> {
    embed: StepLinear<B>,
    query: StepLinear<B>,
    attend: fused::AttendGradients,
    gate: StepLinear<B>,
    lstm: StepLinear<B>,
    output: StepLinear<B>,
}

impl<B: Backend> DecodeState<B> {
    /// Keeps the first `n` rows (the captions still running).
    fn first(self, n: usize) -> Self {
        Self {
            features: self.features.narrow(0, 0, n),
            projected: self.projected.narrow(0, 0, n),
            lstm: LstmState {
                hidden: self.lstm.hidden.narrow(0, 0, n),
                cell: self.lstm.cell.narrow(0, 0, n),
            },
            layers: self.layers,
        }
    }

    /// Reorders the LSTM state alone: row `i` takes the state of row `rows[i]`, which must
    /// have the same features (beams of one image). Beam search reorders its beams at every
    /// step, and copying the features and their projection along would cost more than
    /// the step itself.
    pub fn reorder_lstm(self, rows: Tensor<B, 1, Int>) -> Self {
        Self {
            lstm: LstmState {
                hidden: self.lstm.hidden.select(0, rows.clone()),
                cell: self.lstm.cell.select(0, rows),
            },
            ..self
        }
    }

    /// Keeps rows `rows` (e.g. the surviving beams), in that order.
    pub fn select(self, rows: Tensor<B, 1, Int>) -> Self {
        Self {
            features: self.features.select(0, rows.clone()),
            projected: self.projected.select(0, rows.clone()),
            lstm: LstmState {
                hidden: self.lstm.hidden.select(0, rows.clone()),
                cell: self.lstm.cell.select(0, rows),
            },
            layers: self.layers,
        }
    }
}

impl DecoderConfig {
    /// Builds the decoder with random weights: the word embeddings and the vocabulary
    /// projection uniform in [-0.1, 0.1] with a zero bias, as the reference PyTorch
    /// implementation initialises them (Burn's default embedding is N(0, 1), 17 times wider,
    /// which Adam at 4e-4 barely moves), the other layers as Burn's `Linear` does.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Decoder<B> {
        let uniform = Initializer::Uniform {
            min: -0.1,
            max: 0.1,
        };
        let mut output = LinearConfig::new(self.hidden_dim, self.vocab_size)
            .with_initializer(uniform.clone())
            .init(device);
        output.bias = Some(Param::from_tensor(Tensor::zeros([self.vocab_size], device)));
        Decoder {
            embedding: EmbeddingConfig::new(self.vocab_size, self.embed_dim)
                .with_initializer(uniform)
                .init(device),
            attention: AttentionConfig::new(self.feature_dim, self.hidden_dim, self.attention_dim)
                .init(device),
            init_hidden: LinearConfig::new(self.feature_dim, self.hidden_dim).init(device),
            init_cell: LinearConfig::new(self.feature_dim, self.hidden_dim).init(device),
            gate: LinearConfig::new(self.hidden_dim, self.feature_dim).init(device),
            cell: LstmCellConfig::new(self.embed_dim, self.feature_dim, self.hidden_dim)
                .init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
            output,
        }
    }
}

impl<B: Backend> Decoder<B> {
    /// The state before the first word: `h` and `c` from the mean feature, and the encoder side
    /// of the attention, computed once.
    pub fn start(&self, features: Tensor<B, 3>) -> DecodeState<B> {
        let mean = features.clone().mean_dim(1).squeeze_dim::<2>(1);
        DecodeState {
            projected: self.attention.project_features(features.clone()),
            features,
            lstm: LstmState {
                hidden: self.init_hidden.forward(mean.clone()).tanh(),
                cell: self.init_cell.forward(mean).tanh(),
            },
            layers: StepLayers {
                embed: self.cell.embed_layer(),
                query: self.attention.query_layer(),
                attend: Default::default(),
                gate: StepLinear::new(&self.gate),
                lstm: self.cell.step_layer(),
                output: StepLinear::new(&self.output),
            },
        }
    }

    /// Attends, gates the context with `beta = sigmoid(f_beta(h))` and steps the LSTM; returns
    /// the new state and the attention weights `[n, positions]`.
    fn advance(
        &self,
        state: DecodeState<B>,
        embed_gates: Tensor<B, 2>,
    ) -> (DecodeState<B>, Tensor<B, 2>) {
        let layers = &state.layers;
        let (context, alpha) = self.attention.forward(
            &state.features,
            &state.projected,
            &layers.query,
            &layers.attend,
            state.lstm.hidden.clone(),
        );
        // beta * context, beta = sigmoid(f_beta(h)).
        let f_beta = layers.gate.forward(state.lstm.hidden.clone());
        let lstm = self.cell.step(
            embed_gates,
            gated(context, f_beta),
            state.lstm,
            &layers.lstm,
        );
        (DecodeState { lstm, ..state }, alpha)
    }

    /// Teacher forcing: feeds `inputs` `[batch, width]` (captions without their last token)
    /// and scores the next word at each caption's `steps` (its length minus one), as the
    /// reference implementations do: captions sorted by decreasing length, and at step `t`
    /// only the captions still running are decoded.
    ///
    /// # Panics
    /// If `steps` is not sorted in decreasing order, or asks for more than `width` steps.
    pub fn forward(
        &self,
        features: Tensor<B, 3>,
        inputs: Tensor<B, 2, Int>,
        steps: &[usize],
    ) -> DecoderOutput<B> {
        let [batch, width] = inputs.dims();
        let [_, positions, _] = features.dims();
        assert_eq!(steps.len(), batch, "one step count per caption");
        assert!(
            steps.windows(2).all(|w| w[0] >= w[1]),
            "captions must come sorted by decreasing length"
        );
        let longest = steps.first().copied().unwrap_or(0);
        assert!(longest <= width, "a caption longer than its tokens");
        let device = features.device();
        let embed_gates = self.cell.embed_gates(self.embedding.forward(inputs));
        let embed_gradient = StepGradient::default();
        let mut state = self.start(features);
        let mut running = batch;
        let mut hiddens = Vec::with_capacity(longest);
        let mut alphas = Vec::with_capacity(width);
        for t in 0..longest {
            let now = running_at(steps, t);
            if now < running {
                state = state.first(now);
                running = now;
            }
            let gates_t = step_of(&embed_gates, t, now, &embed_gradient);
            let (next, alpha) = self.advance(state, gates_t);
            hiddens.push(next.lstm.hidden.clone());
            alphas.push(pad_rows(alpha, batch));
            state = next;
        }
        alphas.resize_with(width, || Tensor::zeros([batch, positions], &device));
        let hidden = Tensor::cat(hiddens, 0);
        DecoderOutput {
            logits: self.output.forward(self.dropout.forward(hidden)),
            alphas: Tensor::stack(alphas, 1),
        }
    }

    /// Teacher forcing with the same shapes at every step ([`crate::rows::Shapes::Fixed`],
    /// for GPU backends): feeds `inputs` `[batch, width]` and scores the next word at every
    /// step of every row, in any order of lengths. A row's steps past its `steps` (0 for a
    /// padding row) are computed like the others and left for the loss to mask; their
    /// attention weights are zeroed here. Nothing that reaches the loss depends on them, so
    /// the loss and its gradients are those of [`Decoder::forward`].
    ///
    /// Every batch of a width (a bucket) runs all `width` steps, even past its longest
    /// caption, so that the whole sequence of operations, not only the shapes, is the same
    /// for every batch of that width. That was for burn-fusion, which compiled new fused
    /// kernels for every new longest length; the GPU backends now run without fusion, where
    /// stopping at the longest caption would compile nothing new and save the steps past it
    /// (not measured yet).
    ///
    /// # Panics
    /// If a caption asks for more than `width` steps.
    pub fn forward_masked(
        &self,
        features: Tensor<B, 3>,
        inputs: Tensor<B, 2, Int>,
        steps: &[usize],
    ) -> DecoderOutput<B> {
        let [batch, width] = inputs.dims();
        assert_eq!(steps.len(), batch, "one step count per caption");
        assert!(
            steps.iter().all(|&s| s <= width),
            "a caption longer than its tokens"
        );
        let device = features.device();
        let mask = step_mask::<B>(steps, width, &device);
        let embed_gates = self.cell.embed_gates(self.embedding.forward(inputs));
        let embed_gradient = StepGradient::default();
        let mut state = self.start(features);
        let mut hiddens = Vec::with_capacity(width);
        let mut alphas = Vec::with_capacity(width);
        for t in 0..width {
            let gates_t = step_of(&embed_gates, t, batch, &embed_gradient);
            let (next, alpha) = self.advance(state, gates_t);
            hiddens.push(next.lstm.hidden.clone());
            alphas.push(alpha * mask.clone().narrow(1, t, 1));
            state = next;
        }
        let hidden_width = state.lstm.hidden.dims()[1];
        let hidden = Tensor::stack::<3>(hiddens, 1).reshape([batch * width, hidden_width]);
        DecoderOutput {
            logits: self.output.forward(self.dropout.forward(hidden)),
            alphas: Tensor::stack(alphas, 1),
        }
    }

    /// One inference step from the previous words `[n]`: log-probabilities of the next word
    /// `[n, vocab]`, the new state and the attention weights `[n, positions]`.
    pub fn step(
        &self,
        state: DecodeState<B>,
        previous: Tensor<B, 1, Int>,
    ) -> (Tensor<B, 2>, DecodeState<B>, Tensor<B, 2>) {
        let n = previous.dims()[0];
        let embedded = self.embedding.forward(previous.reshape([n, 1]));
        let gates = state.layers.embed.forward(embedded.squeeze_dim::<2>(1));
        let (state, alpha) = self.advance(state, gates);
        let logits = state
            .layers
            .output
            .forward(self.dropout.forward(state.lstm.hidden.clone()));
        (log_softmax_rows(logits), state, alpha)
    }
}

/// Step `t` of the first `rows` rows of `x` `[batch, width, d]`, `[rows, d]`: by the fused
/// operation, whose steps add their gradients into `gradient`'s sum, or by `narrow`.
fn step_of<B: Backend>(
    x: &Tensor<B, 3>,
    t: usize,
    rows: usize,
    gradient: &StepGradient,
) -> Tensor<B, 2> {
    fused::step_rows(x, t, rows, gradient).unwrap_or_else(|| {
        let d = x.dims()[2];
        x.clone()
            .narrow(0, 0, rows)
            .narrow(1, t, 1)
            .reshape([rows, d])
    })
}

/// `rows` rows: `x` `[n, d]` followed by zeros.
fn pad_rows<B: Backend>(x: Tensor<B, 2>, rows: usize) -> Tensor<B, 2> {
    let [n, d] = x.dims();
    if n == rows {
        return x;
    }
    let zeros = Tensor::zeros([rows - n, d], &x.device());
    Tensor::cat(vec![x, zeros], 0)
}

#[cfg(test)]
impl<B: Backend> Decoder<B> {
    /// The same decoder with `by` added to the score of `word` at every step (for tests of
    /// the searches on a random model).
    pub(crate) fn favouring(mut self, word: u32, by: f32) -> Self {
        let bias = self
            .output
            .bias
            .take()
            .expect("the output layer has a bias");
        let bias = bias.map(|b| {
            let w = word as usize;
            let lifted = b.clone().slice(w..w + 1) + by;
            b.slice_assign(w..w + 1, lifted)
        });
        self.output.bias = Some(bias);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every parameter's gradient, in the module's order.
    #[cfg(feature = "flex")]
    struct Gradients<'a, B: burn::tensor::backend::AutodiffBackend> {
        grads: &'a B::Gradients,
        found: Vec<Vec<f32>>,
    }

    #[cfg(feature = "flex")]
    impl<B: burn::tensor::backend::AutodiffBackend> burn::module::ModuleVisitor<B>
        for Gradients<'_, B>
    {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            // None for the score layer's bias in the fused attention, whose gradient is 0
            // (the softmax does not change when every score moves by the same amount).
            let grad = param.val().grad(self.grads).map(|g| g.into_data());
            let zeros = || vec![0.0; param.val().shape().num_elements()];
            self.found
                .push(grad.map_or_else(zeros, |g| g.to_vec().unwrap()));
        }
    }

    /// The loss `sum(logits * weigh)` of both teacher-forced passes of `decoder` on
    /// `features` and `inputs` (captions of 6, 4 and 2 steps), and every gradient: the
    /// parameters' and the features'.
    #[cfg(feature = "flex")]
    fn loss_and_gradients<B: burn::tensor::backend::AutodiffBackend>(
        decoder: &Decoder<B>,
        features: [f32; 3 * 5 * 12],
        inputs: [[i64; 6]; 3],
        masked: bool,
    ) -> Vec<Vec<f32>> {
        let device = Default::default();
        let features = Tensor::<B, 1>::from_floats(features, &device)
            .reshape([3, 5, 12])
            .require_grad();
        let inputs = Tensor::<B, 2, Int>::from_ints(inputs, &device);
        let steps = [6, 4, 2];
        let output = match masked {
            false => decoder.forward(features.clone(), inputs, &steps),
            true => decoder.forward_masked(features.clone(), inputs, &steps),
        };
        let [rows, vocab] = output.logits.dims();
        let weigh = Tensor::<B, 1, Int>::arange(0..(rows * vocab) as i64, &device)
            .float()
            .reshape([rows, vocab])
            .cos();
        let loss = (output.logits * weigh).sum() + output.alphas.sum();
        let grads = loss.backward();
        let mut visitor = Gradients {
            grads: &grads,
            found: vec![features.grad(&grads).unwrap().into_data().to_vec().unwrap()],
        };
        decoder.visit(&mut visitor);
        visitor.found
    }

    #[cfg(feature = "flex")]
    #[test]
    fn on_flex_the_fused_steps_give_the_gradients_of_the_tensor_operations() {
        use crate::test_random::redrawn;
        use burn::backend::{Autodiff, Flex, NdArray};

        let config = DecoderConfig::new(11, 12)
            .with_embed_dim(8)
            .with_attention_dim(6)
            .with_hidden_dim(10)
            .with_dropout(0.0);
        // One random decoder on both backends: the same values drawn from one seed.
        let flex = redrawn(config.init::<Autodiff<Flex>>(&Default::default()), 3);
        let ndarray = redrawn(config.init::<Autodiff<NdArray>>(&Default::default()), 3);
        let features = std::array::from_fn(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0);
        let inputs = [[1, 4, 5, 6, 7, 8], [1, 9, 4, 10, 2, 0], [1, 5, 2, 0, 0, 0]];
        let largest = |g: &[f32]| g.iter().fold(0f32, |m, x| m.max(x.abs()));
        for masked in [false, true] {
            let ours = loss_and_gradients(&flex, features, inputs, masked);
            let want = loss_and_gradients(&ndarray, features, inputs, masked);
            assert_eq!(ours.len(), want.len());
            // Each gradient to within 1e-3 of its largest value, or of a tenth of the largest
            // of all: the attention's biases take sums that nearly cancel (softmax's gradient
            // sums to zero over the positions), whose rounding is that of their terms.
            let floor = want.iter().map(|g| largest(g)).fold(0f32, f32::max) / 10.0;
            for (i, (ours, want)) in ours.iter().zip(&want).enumerate() {
                let scale = largest(want).max(floor);
                for (o, w) in ours.iter().zip(want) {
                    assert!(
                        (o - w).abs() < 1e-3 * scale,
                        "masked {masked}, gradient {i}: {o} against {w}"
                    );
                }
            }
        }
    }

    #[test]
    fn packed_order_is_step_by_step_over_the_running_captions() {
        // Three captions of 3, 2 and 2 steps in a width of 4.
        assert_eq!(packed_positions(&[3, 2, 2], 4), [0, 4, 8, 1, 5, 9, 2]);
        assert_eq!(running_at(&[3, 2, 2], 2), 1);
        assert_eq!(running_at(&[3, 2, 2], 3), 0);
    }
}
