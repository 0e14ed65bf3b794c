//! What captioning a picture gives a person to read: the caption with its beam alternatives
//! (as JSON for `infer --json` and the server), the self-contained HTML page of a folder's
//! results, and the warning when most pictures got the same caption.

use std::collections::HashMap;

use base64::Engine;
use captioner_datasets::Vocab;
use captioner_model::Caption;
use serde::Serialize;

/// A caption in words, with beam search's other captions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Described {
    /// The caption.
    pub caption: String,
    /// Its words.
    pub tokens: Vec<String>,
    /// Its total log-probability.
    pub score: f32,
    /// False when it was cut at the length cap instead of ending.
    pub finished: bool,
    /// The beam's other captions, best first.
    pub alternatives: Vec<DescribedAlternative>,
}

/// One of the beam's other captions, in words.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DescribedAlternative {
    /// The caption.
    pub caption: String,
    /// Its total log-probability.
    pub score: f32,
}

impl Described {
    /// `caption` in the words of `vocab`.
    pub fn new(caption: &Caption, vocab: &Vocab) -> Self {
        Self {
            caption: vocab.decode(&caption.tokens),
            tokens: caption
                .tokens
                .iter()
                .map(|&t| vocab.word(t).to_string())
                .collect(),
            score: caption.score,
            finished: caption.finished,
            alternatives: caption
                .alternatives
                .iter()
                .map(|a| DescribedAlternative {
                    caption: vocab.decode(&a.tokens),
                    score: a.score,
                })
                .collect(),
        }
    }
}

/// When at least `MIN_PICTURES` pictures were captioned and more than half of them got the
/// same caption: that caption and how many got it. The classic sign of pictures prepared
/// unlike the training ones, or of a model that has not learnt yet.
pub fn dominant_caption<'a>(
    captions: impl IntoIterator<Item = &'a str>,
) -> Option<(&'a str, usize, usize)> {
    const MIN_PICTURES: usize = 5;
    let mut counts: HashMap<&str, usize> = HashMap::new();
    let mut total = 0;
    for caption in captions {
        *counts.entry(caption).or_default() += 1;
        total += 1;
    }
    let (caption, count) = counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))?;
    (total >= MIN_PICTURES && 2 * count > total).then_some((caption, count, total))
}

/// The page's title from what `infer` was given (files, folders, "paths from stdin"): every
/// input when there are up to three, else the first two and how many more, so that a folder's
/// pictures passed one by one do not fill the top of the page.
pub fn page_title(inputs: &[String]) -> String {
    match inputs {
        [] => "Captions".to_string(),
        [one] => format!("Captions of {one}"),
        [first @ .., last] if inputs.len() <= 3 => {
            format!("Captions of {} and {last}", first.join(", "))
        }
        [first, second, rest @ ..] => {
            format!(
                "Captions of {first}, {second} and {} more inputs",
                rest.len()
            )
        }
    }
}

/// One picture's entry on the page.
#[derive(Debug, Clone)]
pub struct PageEntry {
    /// The picture's name, as shown.
    pub name: String,
    /// What the model said.
    pub described: Described,
    /// The attention grid, JPEG-encoded (its first panel is the picture).
    pub grid_jpeg: Vec<u8>,
}

/// A self-contained HTML page (pictures inlined as data URLs, no script, no outside link) of
/// `entries`: each picture's attention grid, its caption and the beam's alternatives with
/// their scores. `title` heads the page.
pub fn html_page(title: &str, entries: &[PageEntry]) -> String {
    let mut page = String::new();
    page.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    page.push_str(&format!("<title>{}</title>\n", escape(title)));
    page.push_str(STYLE);
    page.push_str("</head>\n<body>\n");
    page.push_str(&format!(
        "<h1>{}</h1>\n<p class=\"note\">{} pictures. Under each word, where the model looked \
         when it wrote it. Scores are total log-probabilities (higher is likelier).</p>\n",
        escape(title),
        entries.len()
    ));
    for entry in entries {
        let described = &entry.described;
        page.push_str("<section class=\"picture\">\n");
        page.push_str(&format!("<h2>{}</h2>\n", escape(&entry.name)));
        page.push_str(&format!(
            "<p class=\"caption\">{}</p>\n",
            escape(&described.caption)
        ));
        page.push_str(&format!(
            "<img alt=\"{}\" src=\"data:image/jpeg;base64,{}\">\n",
            escape(&described.caption),
            base64::engine::general_purpose::STANDARD.encode(&entry.grid_jpeg)
        ));
        page.push_str("<table>\n<tr><th>caption</th><th>score</th></tr>\n");
        page.push_str(&format!(
            "<tr class=\"best\"><td>{}{}</td><td>{:.2}</td></tr>\n",
            escape(&described.caption),
            if described.finished { "" } else { " (cut)" },
            described.score
        ));
        for alternative in &described.alternatives {
            page.push_str(&format!(
                "<tr><td>{}</td><td>{:.2}</td></tr>\n",
                escape(&alternative.caption),
                alternative.score
            ));
        }
        page.push_str("</table>\n</section>\n");
    }
    page.push_str("</body>\n</html>\n");
    page
}

const STYLE: &str = "<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1250px; color: #222; }
.note { color: #555; }
section.picture { border-top: 1px solid #ccc; padding: 1em 0; }
h2 { font-size: 1em; font-weight: normal; color: #555; margin: 0 0 .3em; }
p.caption { font-size: 1.4em; margin: 0 0 .5em; }
img { max-width: 100%; display: block; }
table { border-collapse: collapse; margin-top: .5em; }
td, th { padding: .15em .8em .15em 0; text-align: left; }
td + td, th + th { text-align: right; font-variant-numeric: tabular-nums; }
tr.best td { font-weight: bold; }
</style>
";

/// `text` safe inside HTML text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_pictures_with_one_caption_is_flagged_and_a_varied_folder_is_not() {
        let same = ["a dog", "a dog", "a cat", "a dog", "a man"];
        assert_eq!(dominant_caption(same), Some(("a dog", 3, 5)));
        let varied = ["a dog", "a dog", "a cat", "a bird", "a man", "a boy"];
        assert_eq!(dominant_caption(varied), None);
        // Too few pictures to tell.
        assert_eq!(dominant_caption(["a dog", "a dog", "a dog"]), None);
    }

    fn entry(name: &str, caption: &str) -> PageEntry {
        PageEntry {
            name: name.into(),
            described: Described {
                caption: caption.into(),
                tokens: caption.split(' ').map(String::from).collect(),
                score: -3.25,
                finished: true,
                alternatives: vec![DescribedAlternative {
                    caption: "a dog on the grass".into(),
                    score: -4.5,
                }],
            },
            grid_jpeg: vec![0xff, 0xd8, 0xff],
        }
    }

    #[test]
    fn the_page_holds_each_caption_its_alternatives_and_its_inlined_picture() {
        let page = html_page(
            "photos/",
            &[
                entry("dog.jpg", "a dog runs"),
                entry("cat.jpg", "a cat sits"),
            ],
        );
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert_eq!(page.matches("<section class=\"picture\">").count(), 2);
        assert!(page.contains("<p class=\"caption\">a dog runs</p>"));
        assert!(page.contains("<td>a dog on the grass</td><td>-4.50</td>"));
        assert!(page.contains("<td>a dog runs</td><td>-3.25</td>"));
        assert!(page.contains("src=\"data:image/jpeg;base64,/9j/\""));
        assert!(
            !page.contains("http"),
            "the page links nothing outside itself"
        );
    }

    #[test]
    fn the_title_names_up_to_three_inputs_and_counts_the_rest() {
        let inputs: Vec<String> = (1..=12).map(|i| format!("p/{i}.jpg")).collect();
        assert_eq!(page_title(&inputs[..0]), "Captions");
        assert_eq!(page_title(&inputs[..1]), "Captions of p/1.jpg");
        assert_eq!(page_title(&inputs[..2]), "Captions of p/1.jpg and p/2.jpg");
        assert_eq!(
            page_title(&inputs[..3]),
            "Captions of p/1.jpg, p/2.jpg and p/3.jpg"
        );
        assert_eq!(
            page_title(&inputs),
            "Captions of p/1.jpg, p/2.jpg and 10 more inputs"
        );
    }

    #[test]
    fn names_and_captions_cannot_inject_markup() {
        let page = html_page(
            "<b>",
            &[entry("<script>alert(1)</script>.jpg", "a \"dog\" & <cat>")],
        );
        assert!(!page.contains("<script>"));
        assert!(!page.contains("<b>"));
        assert!(page.contains("a &quot;dog&quot; &amp; &lt;cat&gt;"));
    }
}
