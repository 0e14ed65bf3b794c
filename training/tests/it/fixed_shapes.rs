//! The two layouts of a step ([`Shapes`]): the packed one the CPU backends use and the fixed
//! one the GPU backends use give the same loss and the same gradients, and fixed batches
//! decode the same captions.

use burn::backend::{Autodiff, NdArray};
use burn::data::dataloader::batcher::Batcher;
use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use captioner_datasets::decode::Resize;
use captioner_datasets::shapes::{ShapesConfig, Split};
use captioner_datasets::{CaptionItem, Vocab};
use captioner_model::{
    fixed_search_images, BackboneConfig, CaptionBatch, Captioner, CaptionerConfig, DecodeRequest,
    DecoderConfig, EncoderConfig, Endings, SearchConfig, Shapes, SmallCnnConfig,
};
use captioner_training::{CaptionBatcher, FixedBatch};

type Train = Autodiff<NdArray>;

const IMAGE: usize = 32;

/// Four scenes with all five of their captions (lengths 6 to 15 tokens), and a vocabulary.
fn items() -> (Vec<CaptionItem>, Vocab) {
    let shapes = ShapesConfig {
        image_size: IMAGE,
        train: 4,
        ..Default::default()
    };
    let scenes = shapes.scenes(Split::Train);
    let captions: Vec<String> = scenes.iter().flat_map(|s| s.captions()).collect();
    let vocab = Vocab::build(captions.iter().map(String::as_str), 1);
    let items = scenes
        .iter()
        .enumerate()
        .map(|(image_id, s)| CaptionItem {
            image: std::sync::Arc::new(s.render(IMAGE)).into(),
            image_id,
            captions: s.captions().iter().map(|c| vocab.encode(c)).collect(),
        })
        .collect();
    (items, vocab)
}

fn model<B: Backend>(vocab: &Vocab, device: &B::Device) -> Captioner<B> {
    let encoder = SmallCnnConfig::new().with_image_size(IMAGE);
    let decoder = DecoderConfig::new(vocab.len(), encoder.feature_dim())
        .with_embed_dim(16)
        .with_attention_dim(12)
        .with_hidden_dim(24)
        .with_dropout(0.0);
    CaptionerConfig::new(EncoderConfig::SmallCnn(encoder), decoder).init(device)
}

/// Every float parameter's gradient, in the module's order.
struct Gradients<'a, B: AutodiffBackend> {
    grads: &'a B::Gradients,
    found: Vec<Vec<f32>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Gradients<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let grad = param
            .val()
            .grad(self.grads)
            .expect("every parameter takes part in the loss");
        self.found.push(grad.into_data().to_vec().unwrap());
    }
}

fn loss_and_gradients(
    model: &Captioner<Train>,
    batch: CaptionBatch<Train>,
) -> (f32, Vec<Vec<f32>>) {
    let loss = model.forward(batch).loss;
    let value = loss.clone().into_scalar();
    let grads = loss.backward();
    let mut visitor = Gradients::<Train> {
        grads: &grads,
        found: Vec::new(),
    };
    model.visit(&mut visitor);
    (value, visitor.found)
}

#[test]
fn packed_and_fixed_shapes_give_the_same_loss_and_gradients() {
    let (items, vocab) = items();
    let device = Default::default();
    Train::seed(&device, 3);
    let model = model::<Train>(&vocab, &device);
    let packed: CaptionBatch<Train> = CaptionBatcher::new(IMAGE).batch(items.clone(), &device);
    // Two padding images, five empty captions, and the width bucketed (15 tokens to 17).
    let fixed: CaptionBatch<Train> = CaptionBatcher::new(IMAGE)
        .with_shapes(
            Shapes::Fixed,
            FixedBatch {
                images: 6,
                captions: 25,
            },
        )
        .batch(items, &device);
    assert!(fixed.tokens.dims()[1] > packed.tokens.dims()[1]);
    assert_eq!(fixed.tokens.dims()[0], 25);
    let lengths: std::collections::BTreeSet<usize> = packed.lengths.iter().copied().collect();
    assert!(
        lengths.len() >= 3,
        "captions of several lengths: {lengths:?}"
    );

    let (loss_packed, grads_packed) = loss_and_gradients(&model, packed);
    let (loss_fixed, grads_fixed) = loss_and_gradients(&model, fixed);
    assert!(
        (loss_packed - loss_fixed).abs() < 1e-5 * loss_packed.abs(),
        "loss: packed {loss_packed}, fixed {loss_fixed}"
    );
    assert_eq!(grads_packed.len(), grads_fixed.len());
    let mut moved = 0;
    for (i, (a, b)) in grads_packed.iter().zip(&grads_fixed).enumerate() {
        let largest = a.iter().fold(0f32, |m, x| m.max(x.abs()));
        moved += usize::from(largest > 1e-4);
        let worst = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        // Relative to the parameter's largest gradient; the attention score's bias has none
        // (a softmax ignores a shift), only float noise, hence the small absolute floor.
        assert!(
            worst <= 1e-4 * largest + 1e-7,
            "parameter {i}: gradients differ by {worst} (largest {largest})"
        );
    }
    assert!(
        moved + 1 >= grads_packed.len(),
        "only {moved} of {} parameters have a gradient",
        grads_packed.len()
    );
}

#[test]
fn a_fixed_validation_batch_captions_the_images_asked_for_as_a_packed_one_does() {
    let (items, vocab) = items();
    let device = Default::default();
    <NdArray as Backend>::seed(&device, 5);
    let model = model::<Train>(&vocab, &device).valid();
    let search = SearchConfig {
        beam_size: 2,
        max_len: 8,
        length_penalty: 0.0,
    };
    let endings = std::sync::Arc::new(Endings::of(&vocab));
    let request = |batcher: CaptionBatcher| {
        batcher.with_decode(
            search,
            endings.clone(),
            std::sync::Arc::new([1, 3].into_iter().collect()),
        )
    };
    let caption = |batch: CaptionBatch<NdArray>| {
        assert_eq!(
            batch.decode,
            Some(DecodeRequest {
                rows: vec![1, 3],
                image_ids: vec![1, 3],
                search,
                endings: endings.clone(),
            })
        );
        burn::train::InferenceStep::step(&model, batch).extra
    };
    let packed = caption(request(CaptionBatcher::new(IMAGE)).batch(items.clone(), &device));
    // Four images of five captions fill a training batch of 20 rows.
    let (size, images) = FixedBatch::validation(20, 5);
    assert_eq!(images, items.len());
    let fixed = caption(
        request(CaptionBatcher::new(IMAGE).with_shapes(Shapes::Fixed, size)).batch(items, &device),
    );
    assert_eq!(packed.len(), 2);
    assert_eq!(packed, fixed);
}

#[test]
fn fixed_searches_in_padded_groups_find_the_captions_of_one_packed_search() {
    let (items, vocab) = items();
    let device = Default::default();
    <NdArray as Backend>::seed(&device, 7);
    let model = model::<NdArray>(&vocab, &device);
    let images: Vec<f32> = items
        .iter()
        .flat_map(|item| {
            let resize = Resize {
                size: IMAGE,
                center_crop: false,
            };
            let picture = item.image.pixels(&resize).unwrap();
            captioner_datasets::image::to_normalized_chw(&picture, IMAGE)
        })
        .collect();
    let images = Tensor::from_data(
        TensorData::new(images, [items.len(), 3, IMAGE, IMAGE]),
        &device,
    );
    let features = model.encoder.forward(images);
    let endings = Endings::of(&vocab);
    for beam_size in [1, 3] {
        let search = SearchConfig {
            beam_size,
            max_len: 8,
            length_penalty: 0.0,
        };
        // Rows for three images' beams, not four: a group of three, then one image padded
        // to three.
        let rows = 4 * beam_size - 1;
        assert_eq!(fixed_search_images(rows, beam_size), 3);
        let packed = model.caption_features(features.clone(), &search, &endings, Shapes::Packed, 0);
        let fixed =
            model.caption_features(features.clone(), &search, &endings, Shapes::Fixed, rows);
        assert_eq!(fixed.len(), items.len());
        for (p, f) in packed.iter().zip(&fixed) {
            assert_eq!(p.tokens, f.tokens, "beam {beam_size}");
            assert_eq!(p.finished, f.finished);
            assert!((p.score - f.score).abs() <= 1e-4 * p.score.abs().max(1.0));
        }
        // Rows picked out of a batch, in any order, get the captions of those rows.
        let picks = [3, 0, 2];
        for shapes in [Shapes::Packed, Shapes::Fixed] {
            let picked =
                model.caption_rows(features.clone(), &picks, &search, &endings, shapes, rows);
            for (caption, &row) in picked.iter().zip(&picks) {
                assert_eq!(caption.tokens, packed[row].tokens, "{shapes:?}, row {row}");
            }
        }
    }
}
