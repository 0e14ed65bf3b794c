//! The decoding flags that `infer` and `serve` share.

use captioner_model::SearchConfig;

/// How captions are searched for: `--beam-size`, `--max-len`, `--block-repeats`,
/// `--block-cut-endings` and `--length-penalty`.
#[derive(Debug, Clone, clap::Args)]
pub struct Decoding {
    /// Beams kept while decoding; 1 is greedy decoding. The beam's other captions come with
    /// each caption's JSON (and the --html page of `infer`).
    #[arg(long, default_value_t = SearchConfig::default().beam_size as u16, value_parser = clap::value_parser!(u16).range(1..))]
    pub beam_size: u16,
    /// Longest caption, in words; longer ones are cut.
    #[arg(long, default_value_t = SearchConfig::default().max_len as u16, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_len: u16,
    /// Keep a caption from saying a two-word phrase twice ("a dog is playing with a dog"):
    /// where the best next word would repeat one, the search takes the next best. Phrases
    /// whose second word is a word such as "a" or "in" may repeat.
    #[arg(long)]
    pub block_repeats: bool,
    /// Keep a caption from ending on two words that the training captions hold but never end
    /// on ("a man is riding a dirt bike on a dirt"): the search goes on ("... on a dirt
    /// road"). The model's vocab.json must list them (`train` writes the list).
    #[arg(long)]
    pub block_cut_endings: bool,
    /// Length normalisation of beam search (alpha of Wu et al. 2016): captions are ranked by
    /// their log-probability over ((5 + length) / 6)^alpha. 0 ranks by the plain sum; higher
    /// values favour longer captions. Greedy decoding (--beam-size 1) ignores it.
    #[arg(long, default_value_t = SearchConfig::default().length_penalty, value_parser = parse_length_penalty)]
    pub length_penalty: f32,
}

/// `--length-penalty`: a number from 0 to 10.
pub fn parse_length_penalty(text: &str) -> Result<f32, String> {
    match text.parse::<f32>() {
        Ok(alpha) if (0.0..=10.0).contains(&alpha) => Ok(alpha),
        _ => Err(format!(
            "'{text}' is not a number from 0 to 10 (0: no normalisation)"
        )),
    }
}

impl Decoding {
    /// The search these flags ask for.
    pub fn search(&self) -> SearchConfig {
        SearchConfig {
            beam_size: self.beam_size.into(),
            max_len: self.max_len.into(),
            length_penalty: self.length_penalty,
        }
    }
}

/// The searches that `eval` runs on a trained run: one per beam size in `beam_sizes`, each up
/// to `max_len` words with `length_penalty`. What is not asked for is the run's own `search`
/// (`config.json`), the one its validation and final report used, so that `eval` without
/// flags repeats the report.
pub fn searches(
    run: &SearchConfig,
    beam_sizes: &[u16],
    max_len: Option<usize>,
    length_penalty: Option<f32>,
) -> Vec<SearchConfig> {
    let own = SearchConfig {
        max_len: max_len.unwrap_or(run.max_len),
        length_penalty: length_penalty.unwrap_or(run.length_penalty),
        ..*run
    };
    if beam_sizes.is_empty() {
        return vec![own];
    }
    beam_sizes
        .iter()
        .map(|&beam| SearchConfig {
            beam_size: beam.into(),
            ..own
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eval_without_flags_searches_as_the_run_did() {
        let run = SearchConfig {
            beam_size: 5,
            max_len: 30,
            length_penalty: 0.0,
        };
        assert_eq!(searches(&run, &[], None, None), vec![run]);
    }

    #[test]
    fn each_beam_size_asked_for_is_searched_with_the_length_and_penalty_asked_for_or_the_runs() {
        let run = SearchConfig {
            beam_size: 3,
            max_len: 30,
            length_penalty: 0.0,
        };
        let asked = searches(&run, &[1, 3], Some(12), Some(0.7));
        assert_eq!(
            asked
                .iter()
                .map(|s| (s.beam_size, s.max_len, s.length_penalty))
                .collect::<Vec<_>>(),
            [(1, 12, 0.7), (3, 12, 0.7)]
        );
        let run_cap = searches(&run, &[2], None, None);
        assert_eq!(
            (
                run_cap[0].beam_size,
                run_cap[0].max_len,
                run_cap[0].length_penalty
            ),
            (2, 30, 0.0)
        );
        assert_eq!(
            searches(&run, &[], Some(8), None),
            [SearchConfig {
                beam_size: 3,
                max_len: 8,
                length_penalty: 0.0,
            }]
        );
    }
}
