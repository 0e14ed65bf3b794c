//! The attention LSTM decoder of "Show, Attend and Tell".

use burn::nn::{Dropout, DropoutConfig, Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{log_softmax, sigmoid};

use crate::attention::{Attention, AttentionConfig};
use crate::lstm_cell::{LstmCell, LstmCellConfig, LstmState};

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
    /// Scores of the next word, `[batch, steps, vocab]`.
    pub logits: Tensor<B, 3>,
    /// Attention weights, `[batch, steps, positions]`.
    pub alphas: Tensor<B, 3>,
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
}

impl<B: Backend> DecodeState<B> {
    /// Keeps rows `rows` (e.g. the surviving beams), in that order.
    pub fn select(self, rows: Tensor<B, 1, Int>) -> Self {
        Self {
            features: self.features.select(0, rows.clone()),
            projected: self.projected.select(0, rows.clone()),
            lstm: LstmState {
                hidden: self.lstm.hidden.select(0, rows.clone()),
                cell: self.lstm.cell.select(0, rows),
            },
        }
    }
}

impl DecoderConfig {
    /// Builds the decoder with random weights.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Decoder<B> {
        Decoder {
            embedding: EmbeddingConfig::new(self.vocab_size, self.embed_dim).init(device),
            attention: AttentionConfig::new(self.feature_dim, self.hidden_dim, self.attention_dim)
                .init(device),
            init_hidden: LinearConfig::new(self.feature_dim, self.hidden_dim).init(device),
            init_cell: LinearConfig::new(self.feature_dim, self.hidden_dim).init(device),
            gate: LinearConfig::new(self.hidden_dim, self.feature_dim).init(device),
            cell: LstmCellConfig::new(self.embed_dim, self.feature_dim, self.hidden_dim)
                .init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
            output: LinearConfig::new(self.hidden_dim, self.vocab_size).init(device),
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
        }
    }

    /// Attends, gates the context with `beta = sigmoid(f_beta(h))` and steps the LSTM; returns
    /// the new state and the attention weights `[n, positions]`.
    fn advance(
        &self,
        state: DecodeState<B>,
        embed_gates: Tensor<B, 2>,
    ) -> (DecodeState<B>, Tensor<B, 2>) {
        let (context, alpha) =
            self.attention
                .forward(&state.features, &state.projected, state.lstm.hidden.clone());
        let beta = sigmoid(self.gate.forward(state.lstm.hidden.clone()));
        let lstm = self.cell.step(embed_gates, beta * context, state.lstm);
        (DecodeState { lstm, ..state }, alpha)
    }

    /// Teacher forcing: feeds `inputs` `[batch, steps]` (a caption without its last token) and
    /// scores the next word at every step.
    pub fn forward(&self, features: Tensor<B, 3>, inputs: Tensor<B, 2, Int>) -> DecoderOutput<B> {
        let [batch, steps] = inputs.dims();
        let embed_gates = self.cell.embed_gates(self.embedding.forward(inputs));
        let gate_width = embed_gates.dims()[2];
        let mut state = self.start(features);
        let mut hiddens = Vec::with_capacity(steps);
        let mut alphas = Vec::with_capacity(steps);
        for t in 0..steps {
            let gates_t = embed_gates
                .clone()
                .narrow(1, t, 1)
                .reshape([batch, gate_width]);
            let (next, alpha) = self.advance(state, gates_t);
            hiddens.push(next.lstm.hidden.clone());
            alphas.push(alpha);
            state = next;
        }
        let hidden = Tensor::stack::<3>(hiddens, 1);
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
        let gates = self.cell.embed_gates(embedded).squeeze_dim::<2>(1);
        let (state, alpha) = self.advance(state, gates);
        let logits = self
            .output
            .forward(self.dropout.forward(state.lstm.hidden.clone()));
        (log_softmax(logits, 1), state, alpha)
    }
}
