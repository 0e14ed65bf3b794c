//! The decoding flags that `infer` and `serve` share.

use captioner_model::SearchConfig;

/// How captions are searched for: `--beam-size` and `--max-len`.
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
}

impl Decoding {
    /// The search these flags ask for.
    pub fn search(&self) -> SearchConfig {
        SearchConfig {
            beam_size: self.beam_size.into(),
            max_len: self.max_len.into(),
        }
    }
}

/// The searches that `eval` runs on a trained run: one per beam size in `beam_sizes`, each up
/// to `max_len` words. What is not asked for is the run's own `search` (`config.json`), the
/// one its validation and final report used, so that `eval` without flags repeats the report.
pub fn searches(
    run: &SearchConfig,
    beam_sizes: &[u16],
    max_len: Option<usize>,
) -> Vec<SearchConfig> {
    let max_len = max_len.unwrap_or(run.max_len);
    if beam_sizes.is_empty() {
        return vec![SearchConfig { max_len, ..*run }];
    }
    beam_sizes
        .iter()
        .map(|&beam| SearchConfig {
            beam_size: beam.into(),
            max_len,
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
        };
        assert_eq!(searches(&run, &[], None), vec![run]);
    }

    #[test]
    fn each_beam_size_asked_for_is_searched_up_to_the_words_asked_for_or_the_runs() {
        let run = SearchConfig {
            beam_size: 3,
            max_len: 30,
        };
        let asked = searches(&run, &[1, 3], Some(12));
        assert_eq!(
            asked
                .iter()
                .map(|s| (s.beam_size, s.max_len))
                .collect::<Vec<_>>(),
            [(1, 12), (3, 12)]
        );
        let run_cap = searches(&run, &[2], None);
        assert_eq!((run_cap[0].beam_size, run_cap[0].max_len), (2, 30));
        assert_eq!(
            searches(&run, &[], Some(8)),
            [SearchConfig {
                beam_size: 3,
                max_len: 8
            }]
        );
    }
}
