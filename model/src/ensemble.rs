//! Several trained captioners captioning together (an ensemble at decoding, as
//! self-critical.pytorch's `eval_ensemble`): each encodes a picture its own way (its encoder,
//! input size and resize), and one search runs over all of them, the next word's probability
//! at every step the mean of the models' ([`crate::search::search_rows_together`]). One model
//! is an ensemble of one, captioned exactly as alone: `infer`, `serve` and `eval` caption
//! through this type whatever the number of models.

use std::path::PathBuf;

use burn::prelude::*;
use captioner_datasets::decode::Resize;
use captioner_datasets::image::RgbImage;
use captioner_datasets::progress::Progress;
use captioner_datasets::Vocab;

use crate::decoder::Decoder;
use crate::inference::{Batching, Captioning, ModelFiles};
use crate::search::{search_rows_together, Caption, Endings, SearchConfig};
use crate::weights_file::LoadError;

/// Models that cannot caption together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{first} and {other} cannot caption together: {why}")]
pub struct NotAnEnsemble {
    /// The first model's folder.
    pub first: PathBuf,
    /// The model that differs from it.
    pub other: PathBuf,
    /// What differs, and what to do.
    pub why: String,
}

/// The models' vocabularies list no cut endings to block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the model's vocab.json lists no cut endings (the two-word phrases its training captions \
     hold but never end on): it was trained before vocabularies kept them; train it again to \
     block them"
)]
pub struct NoCutEndings;

/// Trained models that caption together, the first one's vocabulary theirs.
#[derive(Debug, Clone)]
pub struct Ensemble<'a, B: Backend> {
    members: Vec<&'a Captioning<B>>,
    endings: Endings,
}

/// A picture as each model of an [`Ensemble`] takes it, in the models' order.
#[derive(Debug, Clone)]
pub struct Prepared(Vec<RgbImage>);

/// How each model of an [`Ensemble`] takes a picture (its [`Resize`]), apart from the models:
/// pictures can be prepared on other threads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inputs(Vec<Resize>);

impl Inputs {
    /// A picture of any size as each model takes it.
    pub fn prepare(&self, picture: &RgbImage) -> Prepared {
        Prepared(self.0.iter().map(|input| input.apply(picture)).collect())
    }
}

impl Prepared {
    /// The picture as the first model takes it (the one its attention maps are drawn on).
    pub fn first(&self) -> &RgbImage {
        &self.0[0]
    }
}

impl<'a, B: Backend> Ensemble<'a, B> {
    /// One model alone.
    pub fn one(model: &'a Captioning<B>) -> Self {
        Self {
            endings: model.endings.clone(),
            members: vec![model],
        }
    }

    /// The models `models`, loaded from `folders` (named in messages), which must share one
    /// vocabulary: the same words with the same ids, as runs on the same training captions
    /// have. Their encoders, input sizes and decoder widths may differ.
    pub fn new(folders: &[PathBuf], models: &'a [Captioning<B>]) -> Result<Self, NotAnEnsemble> {
        assert_eq!(folders.len(), models.len(), "a folder a model");
        let first = models.first().expect("an ensemble of at least one model");
        for (folder, other) in folders.iter().zip(models).skip(1) {
            if let Some(why) = vocabulary_difference(&first.vocab, &other.vocab) {
                return Err(NotAnEnsemble {
                    first: folders[0].clone(),
                    other: folder.clone(),
                    why,
                });
            }
        }
        Ok(Self {
            endings: first.endings.clone(),
            members: models.iter().collect(),
        })
    }

    /// Loads the models in `folders` (run folders of `train`, folders of `export`) onto
    /// `device`, in order.
    pub fn load(folders: &[PathBuf], device: &B::Device) -> Result<Vec<Captioning<B>>, LoadError> {
        folders
            .iter()
            .map(|folder| Captioning::load(&ModelFiles::new(folder), device))
            .collect()
    }

    /// The same models, searching with (`block`) or without the rule that no two-word phrase
    /// comes twice in a caption ([`Endings::blocking_repeats`]).
    pub fn blocking_repeats(self, block: bool) -> Self {
        Self {
            endings: self.endings.blocking_repeats(block),
            ..self
        }
    }

    /// The same models, searching with (`block`) or without the rule that no caption ends on
    /// a two-word phrase the training captions hold but never end on
    /// ([`Endings::blocking_cut_endings`], the phrases of [`Vocab::cut_endings`]). Models
    /// whose vocabulary lists none cannot follow it.
    pub fn blocking_cut_endings(self, block: bool) -> Result<Self, NoCutEndings> {
        if !block {
            return Ok(self);
        }
        let phrases = self
            .members
            .iter()
            .map(|m| m.vocab.cut_endings())
            .find(|phrases| !phrases.is_empty())
            .ok_or(NoCutEndings)?;
        Ok(Self {
            endings: self.endings.blocking_cut_endings(phrases),
            ..self
        })
    }

    /// The models, in order.
    pub fn members(&self) -> &[&'a Captioning<B>] {
        &self.members
    }

    /// The vocabulary they share.
    pub fn vocab(&self) -> &Vocab {
        &self.members[0].vocab
    }

    /// How each model takes a picture.
    pub fn inputs(&self) -> Inputs {
        Inputs(self.members.iter().map(|m| m.input).collect())
    }

    /// A picture of any size as each model takes it: prepared as its training pictures were
    /// (centre crop or squashed to its input size).
    pub fn prepare(&self, picture: &RgbImage) -> Prepared {
        self.inputs().prepare(picture)
    }

    /// Captions pictures already prepared ([`Self::prepare`]), in batches of
    /// `batching.batch_size`, with a progress bar when `show_progress`.
    pub fn caption_prepared(
        &self,
        prepared: &[&Prepared],
        search: &SearchConfig,
        batching: Batching,
        show_progress: bool,
    ) -> Vec<Caption> {
        let bar = Progress::new("captioning", prepared.len(), show_progress);
        let mut captions = Vec::with_capacity(prepared.len());
        for chunk in prepared.chunks(batching.batch_size.max(1)) {
            let features = self
                .members
                .iter()
                .enumerate()
                .map(|(m, member)| {
                    let pictures: Vec<&RgbImage> = chunk.iter().map(|p| &p.0[m]).collect();
                    member.encode(&pictures, batching)
                })
                .collect();
            captions.extend(self.caption_features(features, search, batching));
            bar.inc(chunk.len());
        }
        bar.finish();
        captions
    }

    /// Captions the same pictures from each model's grids: `features[m]` is model `m`'s
    /// encoder output `[n, positions_m, channels_m]`.
    pub fn caption_features(
        &self,
        features: Vec<Tensor<B, 3>>,
        search: &SearchConfig,
        batching: Batching,
    ) -> Vec<Caption> {
        let decoders: Vec<&Decoder<B>> = self.members.iter().map(|m| &m.model.decoder).collect();
        let all: Vec<usize> = (0..features[0].dims()[0]).collect();
        search_rows_together(
            &decoders,
            features,
            &all,
            search,
            &self.endings,
            batching.shapes,
            batching.batch_size,
        )
    }
}

/// What keeps two vocabularies from being one, said for a user; `None` when they are one.
fn vocabulary_difference(first: &Vocab, other: &Vocab) -> Option<String> {
    if first.words() == other.words() {
        return None;
    }
    let differing = first
        .words()
        .iter()
        .zip(other.words())
        .position(|(a, b)| a != b);
    let detail = match differing {
        Some(id) => format!(
            "word {id} is \"{}\" in one and \"{}\" in the other",
            first.words()[id],
            other.words()[id]
        ),
        None => format!("{} words against {}", first.len(), other.len()),
    };
    Some(format!(
        "their vocabularies differ ({detail}); the models of an ensemble must share one, as runs \
         trained on the same captions with the same rarest-word cut-off do"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabularies_are_one_only_when_every_word_has_the_same_id() {
        let a = Vocab::build(["a dog runs", "a cat sits"], 1);
        assert_eq!(vocabulary_difference(&a, &a.clone()), None);
        let other_order = Vocab::build(["a dog runs", "a dog runs", "a cat sits"], 1);
        let why = vocabulary_difference(&a, &other_order).unwrap();
        assert!(
            why.contains("is \"") && why.contains("in the other"),
            "{why}"
        );
        let fewer = Vocab::build(["a dog runs", "a dog sits"], 1);
        let why = vocabulary_difference(&a, &fewer).unwrap();
        assert!(why.contains("vocabularies differ"), "{why}");
    }
}
