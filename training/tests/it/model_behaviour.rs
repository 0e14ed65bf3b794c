//! Behaviour of the captioner that must hold whatever its weights: it can overfit a few
//! scenes, decoding agrees with itself, attention is a distribution, padding is inert and
//! weights survive a save/load round trip.

use std::sync::OnceLock;

use burn::backend::{Autodiff, NdArray};
use burn::data::dataloader::batcher::Batcher;
use burn::module::AutodiffModule;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use captioner_datasets::shapes::{Scene, ShapesConfig, Split};
use captioner_datasets::{CaptionItem, Vocab};
use captioner_model::tokens::UNK;
use captioner_model::{
    beam_search, greedy, BackboneConfig, CaptionBatch, Captioner, CaptionerConfig, DecoderConfig,
    EncoderConfig, EncoderInput, Endings, SearchConfig, SmallCnnConfig,
};
use captioner_training::run_dir::WeightsRecorder;
use captioner_training::CaptionBatcher;

type Train = Autodiff<NdArray>;
type Infer = NdArray;

const IMAGE: usize = 32;

struct Fixture {
    model: Captioner<Infer>,
    vocab: Vocab,
    scenes: Vec<Scene>,
    final_loss: f32,
}

fn small_config(vocab_size: usize) -> CaptionerConfig {
    let encoder = SmallCnnConfig::new().with_image_size(IMAGE);
    let decoder = DecoderConfig::new(vocab_size, encoder.feature_dim())
        .with_embed_dim(32)
        .with_attention_dim(32)
        .with_hidden_dim(64)
        .with_dropout(0.0);
    CaptionerConfig::new(EncoderConfig::SmallCnn(encoder), decoder)
}

fn batch<B: Backend>(scenes: &[Scene], vocab: &Vocab, caption: usize) -> CaptionBatch<B> {
    let items = scenes
        .iter()
        .enumerate()
        .map(|(image_id, s)| CaptionItem {
            image: std::sync::Arc::new(s.render(IMAGE)).into(),
            image_id,
            captions: vec![vocab.encode(&s.captions()[caption])],
        })
        .collect();
    CaptionBatcher::new(IMAGE).batch(items, &Default::default())
}

/// Six scenes, one caption each, trained to (near) zero loss once for all the tests.
fn overfitted() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| overfit(1))
}

/// The same with the words seen fewer than 12 times in the scenes' captions as `<unk>`.
fn overfitted_with_rare_words() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| overfit(12))
}

fn overfit(min_word_freq: usize) -> Fixture {
    let shapes = ShapesConfig {
        image_size: IMAGE,
        train: 6,
        ..Default::default()
    };
    let scenes = shapes.scenes(Split::Train);
    let captions: Vec<String> = scenes.iter().flat_map(|s| s.captions()).collect();
    let vocab = Vocab::build(captions.iter().map(String::as_str), min_word_freq);
    let device = Default::default();
    Train::seed(&device, 7);
    let mut model = small_config(vocab.len()).init::<Train>(&device);
    let mut optim = AdamConfig::new().init();
    let mut final_loss = f32::INFINITY;
    for _ in 0..300 {
        let out = model.forward(batch(&scenes, &vocab, 1));
        final_loss = out.cross_entropy.clone().into_scalar();
        let grads = GradientsParams::from_grads(out.loss.backward(), &model);
        model = optim.step(3e-3, model, grads);
    }
    Fixture {
        model: model.valid(),
        vocab,
        scenes,
        final_loss,
    }
}

fn images<B: Backend>(scenes: &[Scene]) -> Tensor<B, 4> {
    match batch::<B>(scenes, &Vocab::build(["a"], 1), 0).input {
        EncoderInput::Images(images) => images,
        EncoderInput::Features(_) => unreachable!("the batcher gives pixels without a cache"),
    }
}

#[test]
fn overfits_a_handful_of_scenes_and_greedy_reproduces_their_captions() {
    let f = overfitted();
    assert!(
        f.final_loss < 0.05,
        "cross-entropy after training: {}",
        f.final_loss
    );
    let features = f.model.encoder.forward(images(&f.scenes));
    let decoded = greedy(&f.model.decoder, features, 20, &Endings::of(&f.vocab));
    for (scene, caption) in f.scenes.iter().zip(decoded) {
        let expected = captioner_datasets::tokenize(&scene.captions()[1]).join(" ");
        assert_eq!(f.vocab.decode(&caption.tokens), expected);
        assert!(caption.finished);
    }
}

#[test]
fn beam_of_one_equals_greedy_and_wider_beams_score_at_least_as_well() {
    let f = overfitted();
    let scenes = ShapesConfig {
        image_size: IMAGE,
        ..Default::default()
    }
    .scenes(Split::Test);
    let features = f.model.encoder.forward(images(&scenes[..12]));
    let endings = Endings::of(&f.vocab);
    let greedy_captions = greedy(&f.model.decoder, features.clone(), 12, &endings);
    let search = SearchConfig {
        beam_size: 1,
        max_len: 12,
        length_penalty: 0.0,
    };
    let beam_captions = beam_search(&f.model.decoder, features.clone(), &search, &endings);
    // The two run their rows through products of different shapes.
    assert_same_captions(&greedy_captions, &beam_captions);
    let wide = beam_search(
        &f.model.decoder,
        features,
        &SearchConfig {
            beam_size: 4,
            max_len: 12,
            length_penalty: 0.0,
        },
        &endings,
    );
    for (g, w) in greedy_captions.iter().zip(&wide) {
        if g.finished {
            assert!(
                w.score >= g.score - 1e-4,
                "beam {} < greedy {}",
                w.score,
                g.score
            );
        }
    }
}

#[test]
fn decoding_never_emits_unk_even_where_it_was_trained_to() {
    let f = overfitted_with_rare_words();
    assert!(f.final_loss < 0.05, "cross-entropy {}", f.final_loss);
    // The captions it learned hold `<unk>`s: greedy would reproduce them if it could.
    let learned: Vec<Vec<u32>> = f
        .scenes
        .iter()
        .map(|s| f.vocab.encode(&s.captions()[1]))
        .collect();
    assert!(learned.iter().any(|c| c.contains(&UNK)), "{learned:?}");
    for beam_size in [1, 3] {
        let search = SearchConfig {
            beam_size,
            max_len: 20,
            length_penalty: 0.0,
        };
        for caption in f
            .model
            .caption(images(&f.scenes), &search, &Endings::of(&f.vocab))
        {
            assert!(
                !caption.tokens.contains(&UNK),
                "beam {beam_size}: {caption:?}"
            );
            assert!(!caption.tokens.is_empty(), "beam {beam_size}: {caption:?}");
        }
    }
}

#[test]
fn decoding_stops_at_the_length_cap_with_a_caption() {
    let f = overfitted();
    for beam_size in [1, 3] {
        let search = SearchConfig {
            beam_size,
            max_len: 2,
            length_penalty: 0.0,
        };
        let captions = f
            .model
            .caption(images(&f.scenes), &search, &Endings::of(&f.vocab));
        assert_eq!(captions.len(), f.scenes.len());
        for c in captions {
            assert_eq!(c.tokens.len(), 2, "beam {beam_size}: {c:?}");
            assert!(!c.finished);
            assert_eq!(c.alphas.len(), 2);
        }
    }
}

#[test]
fn attention_weights_of_every_step_sum_to_one() {
    let f = overfitted();
    let batch = batch(&f.scenes, &f.vocab, 0);
    let lengths = batch.lengths.clone();
    let out = f.model.forward(batch);
    let [_, steps, _] = out.alphas.dims();
    let sums: Vec<f32> = out.alphas.sum_dim(2).into_data().to_vec().unwrap();
    for (caption, len) in lengths.iter().enumerate() {
        let row = &sums[caption * steps..(caption + 1) * steps];
        // One distribution per word decoded, nothing after the caption's end.
        assert!(
            row[..len - 1].iter().all(|s| (s - 1.0).abs() < 1e-5),
            "{row:?}"
        );
        assert!(row[len - 1..].iter().all(|&s| s == 0.0), "{row:?}");
    }
    let captions = f.model.caption(
        images(&f.scenes),
        &SearchConfig::default(),
        &Endings::of(&f.vocab),
    );
    for alpha in captions.iter().flat_map(|c| &c.alphas) {
        assert_eq!(alpha.len(), (IMAGE / 8).pow(2));
        assert!((alpha.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
}

#[test]
fn extra_padding_does_not_change_the_loss() {
    let f = overfitted();
    let plain = batch::<Infer>(&f.scenes, &f.vocab, 2);
    let [n, len] = plain.tokens.dims();
    let pad = Tensor::<Infer, 2, Int>::zeros([n, 7], &Default::default());
    let padded = CaptionBatch {
        tokens: Tensor::cat(vec![plain.tokens.clone(), pad], 1),
        ..plain.clone()
    };
    assert_eq!(padded.tokens.dims(), [n, len + 7]);
    let a: f32 = f.model.forward(plain).loss.into_scalar();
    let b: f32 = f.model.forward(padded).loss.into_scalar();
    assert!((a - b).abs() < 1e-5, "{a} vs {b}");
}

/// Same words and ends; scores and attention equal up to float rounding.
fn assert_same_captions(a: &[captioner_model::Caption], b: &[captioner_model::Caption]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert_eq!((&x.tokens, x.finished), (&y.tokens, y.finished));
        assert!(
            (x.score - y.score).abs() < 1e-5,
            "{} vs {}",
            x.score,
            y.score
        );
        let alphas = x.alphas.iter().flatten().zip(y.alphas.iter().flatten());
        assert!(alphas.into_iter().all(|(p, q)| (p - q).abs() < 1e-5));
    }
}

#[test]
fn saved_and_loaded_weights_are_bit_identical_and_predict_the_same() {
    let f = overfitted();
    let dir = std::env::temp_dir().join(format!("captioner-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (path, again) = (dir.join("model"), dir.join("again"));
    let recorder = WeightsRecorder::new();
    f.model.clone().save_file(&path, &recorder).unwrap();
    let device = Default::default();
    Infer::seed(&device, 99);
    let fresh = small_config(f.vocab.len()).init::<Infer>(&device);
    let loaded = fresh.load_file(&path, &recorder, &device).unwrap();
    // Every weight survives exactly: saving the loaded model writes the same bytes.
    loaded.clone().save_file(&again, &recorder).unwrap();
    let file = |p: &std::path::Path| {
        let named = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|f| f.file_stem() == p.file_name())
            .unwrap();
        std::fs::read(named).unwrap()
    };
    assert!(
        file(&path) == file(&again),
        "weights changed in the round trip"
    );

    // Predictions equal to float rounding: one run in three, beside the other tests, the
    // same weights gave logits that differed in the last bits (the SIMD kernels' results
    // can depend on how the buffers happen to be aligned).
    let test = batch::<Infer>(&f.scenes, &f.vocab, 3);
    let before = f.model.forward(test.clone()).logits.into_data();
    let after = loaded.forward(test).logits.into_data();
    let (before, after) = (
        before.as_slice::<f32>().unwrap(),
        after.as_slice::<f32>().unwrap(),
    );
    assert_eq!(before.len(), after.len());
    assert!(before
        .iter()
        .zip(after)
        .all(|(a, b)| (a - b).abs() <= 1e-5 * a.abs().max(1.0)));
    let search = SearchConfig::default();
    assert_same_captions(
        &f.model
            .caption(images(&f.scenes), &search, &Endings::of(&f.vocab)),
        &loaded.caption(images(&f.scenes), &search, &Endings::of(&f.vocab)),
    );
    std::fs::remove_dir_all(dir).ok();
}
