//! The decoding flags that `infer` and `serve` share.

use captioner_model::SearchConfig;

/// How captions are searched for: `--beam-size` and `--max-len`.
#[derive(Debug, Clone, clap::Args)]
pub struct Decoding {
    /// Beams kept while decoding; 1 is greedy decoding. The beam's other captions come with
    /// each caption's JSON (and the --html page of `infer`).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..))]
    pub beam_size: u16,
    /// Longest caption, in words; longer ones are cut.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_len: u16,
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
