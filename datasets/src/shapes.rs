//! "shapes": the embedded synthetic captioning dataset.
//!
//! Each scene holds one to three objects (a shape, a colour, a size, a position) drawn on a
//! noisy dark background. A small grammar gives every scene five different captions
//! (paraphrases, sizes, spatial relations such as "left of" and "above"), and
//! [`Scene::check_caption`] parses a caption back and checks it against the scene, so that a
//! model's output can be graded exactly. Everything is a pure function of the seed.

use crate::image::RgbImage;
use crate::rng::SplitMix64;
pub use crate::split::Split;
use crate::vocab::{tokenize, Vocab};
use crate::CaptionDataset;

/// Object shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shape {
    /// A disc.
    Circle,
    /// An axis-aligned square.
    Square,
    /// An upward-pointing triangle.
    Triangle,
}

/// Object colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Colour {
    /// Red.
    Red,
    /// Green.
    Green,
    /// Blue.
    Blue,
    /// Yellow.
    Yellow,
    /// Purple.
    Purple,
}

/// Object sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Size {
    /// Radius about an eighth of the image.
    Small,
    /// Radius about a fifth of the image.
    Large,
}

const SHAPES: [Shape; 3] = [Shape::Circle, Shape::Square, Shape::Triangle];
const COLOURS: [Colour; 5] = [
    Colour::Red,
    Colour::Green,
    Colour::Blue,
    Colour::Yellow,
    Colour::Purple,
];

impl Shape {
    /// The word for it.
    pub fn word(self) -> &'static str {
        match self {
            Shape::Circle => "circle",
            Shape::Square => "square",
            Shape::Triangle => "triangle",
        }
    }

    fn parse(word: &str) -> Option<Self> {
        SHAPES.into_iter().find(|s| s.word() == word)
    }
}

impl Colour {
    /// The word for it.
    pub fn word(self) -> &'static str {
        match self {
            Colour::Red => "red",
            Colour::Green => "green",
            Colour::Blue => "blue",
            Colour::Yellow => "yellow",
            Colour::Purple => "purple",
        }
    }

    fn rgb(self) -> [f32; 3] {
        match self {
            Colour::Red => [220.0, 40.0, 40.0],
            Colour::Green => [40.0, 190.0, 60.0],
            Colour::Blue => [50.0, 90.0, 235.0],
            Colour::Yellow => [235.0, 220.0, 50.0],
            Colour::Purple => [165.0, 60.0, 205.0],
        }
    }

    fn parse(word: &str) -> Option<Self> {
        COLOURS.into_iter().find(|c| c.word() == word)
    }
}

impl Size {
    /// The word for it.
    pub fn word(self) -> &'static str {
        match self {
            Size::Small => "small",
            Size::Large => "large",
        }
    }

    fn parse(word: &str) -> Option<Self> {
        match word {
            "small" => Some(Size::Small),
            "large" => Some(Size::Large),
            _ => None,
        }
    }
}

/// One object of a scene; positions are fractions of the image side (0 = left/top).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Object {
    /// Its shape.
    pub shape: Shape,
    /// Its colour.
    pub colour: Colour,
    /// Its size.
    pub size: Size,
    /// Centre, horizontal, in `[0, 1]`.
    pub x: f32,
    /// Centre, vertical, in `[0, 1]` (downwards).
    pub y: f32,
}

impl Object {
    fn radius(&self) -> f32 {
        match self.size {
            Size::Small => 0.15,
            Size::Large => 0.22,
        }
    }

    fn noun_phrase(&self) -> String {
        format!("a {} {}", self.colour.word(), self.shape.word())
    }

    fn sized_noun_phrase(&self) -> String {
        format!(
            "a {} {} {}",
            self.size.word(),
            self.colour.word(),
            self.shape.word()
        )
    }

    /// The spatial relation of `self` to `other` along the axis where they lie furthest apart.
    fn relation_to(&self, other: &Object) -> Relation {
        let (dx, dy) = (other.x - self.x, other.y - self.y);
        if dx.abs() >= dy.abs() {
            if dx > 0.0 {
                Relation::LeftOf
            } else {
                Relation::RightOf
            }
        } else if dy > 0.0 {
            Relation::Above
        } else {
            Relation::Below
        }
    }

    fn contains(&self, px: f32, py: f32) -> bool {
        let r = self.radius();
        let (dx, dy) = (px - self.x, py - self.y);
        match self.shape {
            Shape::Circle => dx * dx + dy * dy <= r * r,
            Shape::Square => dx.abs() <= 0.9 * r && dy.abs() <= 0.9 * r,
            Shape::Triangle => {
                // Apex at the top, base at 0.8 r below the centre.
                let top = -r;
                let base = 0.8 * r;
                if dy < top || dy > base {
                    return false;
                }
                let half_width = (dy - top) / (base - top) * r;
                dx.abs() <= half_width
            }
        }
    }
}

/// A spatial relation between two objects, as the grammar words it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// "left of".
    LeftOf,
    /// "right of".
    RightOf,
    /// "above".
    Above,
    /// "below".
    Below,
}

impl Relation {
    fn words(self) -> &'static str {
        match self {
            Relation::LeftOf => "left of",
            Relation::RightOf => "right of",
            Relation::Above => "above",
            Relation::Below => "below",
        }
    }

    /// Whether `a <relation> b` holds geometrically.
    fn holds(self, a: &Object, b: &Object) -> bool {
        match self {
            Relation::LeftOf => a.x < b.x,
            Relation::RightOf => a.x > b.x,
            Relation::Above => a.y < b.y,
            Relation::Below => a.y > b.y,
        }
    }
}

/// The verdict of [`Scene::check_caption`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptionCheck {
    /// Every object is named with its right colour and shape, and nothing else is named.
    pub objects: bool,
    /// Every size that the caption states is right.
    pub sizes: bool,
    /// Every relation that the caption states holds in the scene.
    pub relations: bool,
}

impl CaptionCheck {
    /// All three checks pass.
    pub fn all(&self) -> bool {
        self.objects && self.sizes && self.relations
    }
}

/// A scene: one to three objects with distinct (colour, shape), sorted left to right.
#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    /// The objects, sorted by their horizontal position.
    pub objects: Vec<Object>,
    background: [f32; 3],
    noise_seed: u64,
}

impl Scene {
    /// Draws a random scene: objects do not overlap and no two share colour and shape.
    pub fn random(rng: &mut SplitMix64) -> Self {
        let count = 1 + rng.below(3);
        let mut objects: Vec<Object> = Vec::with_capacity(count);
        while objects.len() < count {
            let candidate = Object {
                shape: SHAPES[rng.below(SHAPES.len())],
                colour: COLOURS[rng.below(COLOURS.len())],
                size: if rng.below(2) == 0 {
                    Size::Small
                } else {
                    Size::Large
                },
                x: 0.0,
                y: 0.0,
            };
            let r = candidate.radius();
            let placed = (0..50).find_map(|_| {
                let o = Object {
                    x: rng.uniform(r + 0.02, 0.98 - r),
                    y: rng.uniform(r + 0.02, 0.98 - r),
                    ..candidate
                };
                let clear = objects.iter().all(|p| {
                    let d = ((p.x - o.x).powi(2) + (p.y - o.y).powi(2)).sqrt();
                    d > p.radius() + r + 0.04
                        && (p.colour, p.shape) != (o.colour, o.shape)
                        && (p.x - o.x).abs().max((p.y - o.y).abs()) > 0.08
                });
                clear.then_some(o)
            });
            match placed {
                Some(o) => objects.push(o),
                None if !objects.is_empty() => break,
                None => continue,
            }
        }
        objects.sort_by(|a, b| a.x.total_cmp(&b.x));
        let grey = rng.uniform(15.0, 45.0);
        Self {
            objects,
            background: [grey, grey, grey + rng.uniform(0.0, 10.0)],
            noise_seed: rng.next_u64(),
        }
    }

    /// Renders the scene as a `size` x `size` RGB picture.
    pub fn render(&self, size: usize) -> RgbImage {
        let mut rng = SplitMix64::new(self.noise_seed);
        let mut image = RgbImage::new(size as u32, size as u32);
        for (px, py, pixel) in image.enumerate_pixels_mut() {
            let (fx, fy) = (
                (px as f32 + 0.5) / size as f32,
                (py as f32 + 0.5) / size as f32,
            );
            let base = self
                .objects
                .iter()
                .rev()
                .find(|o| o.contains(fx, fy))
                .map(|o| o.colour.rgb())
                .unwrap_or(self.background);
            let noise = rng.uniform(-12.0, 12.0);
            for c in 0..3 {
                pixel[c] = (base[c] + noise).clamp(0.0, 255.0) as u8;
            }
        }
        image
    }

    /// Five different captions of the scene.
    pub fn captions(&self) -> Vec<String> {
        let np: Vec<String> = self.objects.iter().map(Object::noun_phrase).collect();
        let sized: Vec<String> = self.objects.iter().map(Object::sized_noun_phrase).collect();
        let o = &self.objects;
        match o.len() {
            1 => vec![
                np[0].clone(),
                sized[0].clone(),
                format!("there is {}", np[0]),
                format!("{} on a dark background", sized[0]),
                format!("a single {} {}", o[0].colour.word(), o[0].shape.word()),
            ],
            2 => vec![
                format!("{} and {}", np[0], np[1]),
                format!("{} {} {}", np[0], o[0].relation_to(&o[1]).words(), np[1]),
                format!("{} {} {}", np[1], o[1].relation_to(&o[0]).words(), np[0]),
                format!("two shapes {} and {}", np[0], np[1]),
                format!("{} and {}", sized[0], sized[1]),
            ],
            _ => vec![
                format!("{}, {} and {}", np[0], np[1], np[2]),
                format!("three shapes {}, {} and {}", np[0], np[1], np[2]),
                format!(
                    "{} {} {} and {}",
                    np[0],
                    o[0].relation_to(&o[1]).words(),
                    np[1],
                    np[2]
                ),
                format!("{}, {} and {}", sized[0], sized[1], sized[2]),
                format!("there are three shapes {}, {} and {}", np[0], np[1], np[2]),
            ],
        }
    }

    /// Parses `caption` back into the objects and relations it names and checks them.
    pub fn check_caption(&self, caption: &str) -> CaptionCheck {
        let words = tokenize(caption);
        let mut mentions: Vec<(Option<Size>, Colour, Shape, usize)> = Vec::new();
        let mut i = 0;
        while i < words.len() {
            let size = Size::parse(&words[i]);
            let at = i + size.is_some() as usize;
            let colour = words.get(at).and_then(|w| Colour::parse(w));
            let shape = words.get(at + 1).and_then(|w| Shape::parse(w));
            match (colour, shape) {
                (Some(c), Some(s)) => {
                    mentions.push((size, c, s, at + 2));
                    i = at + 2;
                }
                _ => {
                    // A lone colour or shape word is a broken mention.
                    if Colour::parse(&words[i]).is_some() || Shape::parse(&words[i]).is_some() {
                        return CaptionCheck {
                            objects: false,
                            sizes: false,
                            relations: false,
                        };
                    }
                    i += 1;
                }
            }
        }
        let find =
            |c: Colour, s: Shape| self.objects.iter().find(|o| o.colour == c && o.shape == s);
        let mut named: Vec<(Colour, Shape)> = mentions.iter().map(|m| (m.1, m.2)).collect();
        let mut actual: Vec<(Colour, Shape)> =
            self.objects.iter().map(|o| (o.colour, o.shape)).collect();
        let key = |p: &(Colour, Shape)| (p.0 as u8, p.1 as u8);
        named.sort_by_key(key);
        actual.sort_by_key(key);
        let objects = named == actual;
        let sizes = mentions
            .iter()
            .all(|&(size, c, s, _)| match (size, find(c, s)) {
                (Some(size), Some(o)) => o.size == size,
                _ => true,
            });
        let mut relations = true;
        for pair in mentions.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            let between = words[a.3..].join(" ");
            let relation = [
                Relation::LeftOf,
                Relation::RightOf,
                Relation::Above,
                Relation::Below,
            ]
            .into_iter()
            .find(|r| between.starts_with(r.words()));
            if let Some(r) = relation {
                relations &= match (find(a.1, a.2), find(b.1, b.2)) {
                    (Some(oa), Some(ob)) => r.holds(oa, ob),
                    _ => false,
                };
            }
        }
        CaptionCheck {
            objects,
            sizes,
            relations,
        }
    }
}

/// How many scenes of each split, and the seed they derive from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShapesConfig {
    /// Side of the square pictures, in pixels.
    pub image_size: usize,
    /// Training scenes.
    pub train: usize,
    /// Validation scenes.
    pub valid: usize,
    /// Test scenes.
    pub test: usize,
    /// Seed of the whole dataset.
    pub seed: u64,
}

impl Default for ShapesConfig {
    fn default() -> Self {
        Self {
            image_size: 64,
            train: 2000,
            valid: 200,
            test: 500,
            seed: 2015,
        }
    }
}

impl ShapesConfig {
    /// The scenes of `split`, each a pure function of (seed, split, index).
    pub fn scenes(&self, split: Split) -> Vec<Scene> {
        let count = match split {
            Split::Train => self.train,
            Split::Valid => self.valid,
            Split::Test => self.test,
        };
        (0..count)
            .map(|i| Scene::random(&mut SplitMix64::for_item(self.seed, split as u64, i as u64)))
            .collect()
    }

    /// Renders `scenes` and encodes their captions with `vocab`.
    pub fn dataset(&self, scenes: &[Scene], vocab: &Vocab) -> CaptionDataset {
        let mut data = CaptionDataset::default();
        for scene in scenes {
            data.push(
                std::sync::Arc::new(scene.render(self.image_size)),
                scene.captions().iter().map(|c| vocab.encode(c)),
            );
        }
        data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scene(objects: Vec<Object>) -> Scene {
        Scene {
            objects,
            background: [20.0; 3],
            noise_seed: 1,
        }
    }

    fn obj(shape: Shape, colour: Colour, size: Size, x: f32, y: f32) -> Object {
        Object {
            shape,
            colour,
            size,
            x,
            y,
        }
    }

    #[test]
    fn scenes_are_deterministic_and_varied() {
        let config = ShapesConfig {
            train: 200,
            ..Default::default()
        };
        let a = config.scenes(Split::Train);
        assert_eq!(a, config.scenes(Split::Train));
        assert_ne!(a[..10], config.scenes(Split::Test)[..10]);
        for n in 1..=3 {
            assert!(
                a.iter().filter(|s| s.objects.len() == n).count() > 30,
                "{n} objects"
            );
        }
        assert_eq!(a[0].render(64), a[0].render(64));
    }

    #[test]
    fn every_scene_has_five_distinct_captions_that_check_out() {
        for scene in ShapesConfig::default().scenes(Split::Valid) {
            let captions = scene.captions();
            let mut unique = captions.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), 5, "{captions:?}");
            for caption in &captions {
                assert!(scene.check_caption(caption).all(), "{caption} vs {scene:?}");
            }
        }
    }

    #[test]
    fn check_caption_catches_wrong_colour_shape_count_size_and_relation() {
        let s = scene(vec![
            obj(Shape::Circle, Colour::Red, Size::Small, 0.2, 0.5),
            obj(Shape::Square, Colour::Blue, Size::Large, 0.7, 0.5),
        ]);
        assert!(s.check_caption("a red circle left of a blue square").all());
        assert!(s.check_caption("a blue square right of a red circle").all());
        assert!(
            !s.check_caption("a red circle right of a blue square")
                .relations
        );
        assert!(!s.check_caption("a green circle and a blue square").objects);
        assert!(!s.check_caption("a red triangle and a blue square").objects);
        assert!(!s.check_caption("a red circle").objects);
        assert!(
            !s.check_caption("a red circle and a blue square and a red square")
                .objects
        );
        assert!(!s.check_caption("a red circle and a blue").objects);
        let wrong_size = s.check_caption("a large red circle and a large blue square");
        assert!(wrong_size.objects && !wrong_size.sizes);
    }

    #[test]
    fn render_draws_objects_in_their_colour() {
        let s = scene(vec![obj(
            Shape::Square,
            Colour::Green,
            Size::Large,
            0.5,
            0.5,
        )]);
        let img = s.render(64);
        let centre = img.get_pixel(32, 32);
        assert!(centre[1] > 150 && centre[0] < 90, "{centre:?}");
        let corner = img.get_pixel(1, 1);
        assert!(corner[1] < 70, "{corner:?}");
    }
}
