//! Command-line values named in a table (`NAMES`, from `named_values!`): `--help` lists the
//! names the table holds, and a value is parsed as the table spells it (case, dashes and
//! aliases as `FromStr` allows).

use std::ffi::OsStr;
use std::str::FromStr;

use clap::builder::{PossibleValue, TypedValueParser};
use clap::error::ErrorKind;

/// The parser of a flag whose values are the names of `T`'s table.
#[derive(Clone, Copy)]
pub struct Named<T: 'static> {
    names: &'static [(T, &'static str)],
    listed: fn(T) -> bool,
}

impl<T: Copy> Named<T> {
    /// Every name of `names`.
    pub fn new(names: &'static [(T, &'static str)]) -> Self {
        Self {
            names,
            listed: |_| true,
        }
    }

    /// Only the names whose value passes `listed` are listed (others still parse, so that
    /// the command can say why it does not take them).
    pub fn listing(self, listed: fn(T) -> bool) -> Self {
        Self { listed, ..self }
    }
}

impl<T> TypedValueParser for Named<T>
where
    T: FromStr<Err = String> + Copy + Send + Sync + 'static,
{
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<T, clap::Error> {
        let arg = arg.map_or_else(|| "the value".to_string(), |a| format!("'{a}'"));
        let text = value.to_string_lossy();
        text.parse().map_err(|why: String| {
            let message = format!("invalid value '{text}' for {arg}: {why}\n");
            clap::Error::raw(ErrorKind::InvalidValue, message).with_cmd(cmd)
        })
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        let listed = self.names.iter().filter(|(value, _)| (self.listed)(*value));
        Some(Box::new(listed.map(|(_, name)| PossibleValue::new(*name))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use captioner_model::EncoderName;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Args {
        /// The encoder.
        #[arg(long, value_parser = Named::new(EncoderName::NAMES).listing(EncoderName::is_pretrained))]
        encoder: EncoderName,
    }

    #[test]
    fn help_lists_the_tables_names_and_values_parse_as_the_table_spells_them() {
        let help = <Args as clap::CommandFactory>::command()
            .render_long_help()
            .to_string();
        for &(name, spelled) in EncoderName::NAMES {
            let listed =
                help.contains(&format!("{spelled},")) || help.contains(&format!("{spelled}]"));
            assert_eq!(listed, name.is_pretrained(), "{spelled} in {help}");
        }
        let args = Args::try_parse_from(["x", "--encoder", "EfficientNet_Lite2"]).unwrap();
        assert_eq!(args.encoder, EncoderName::EfficientNetLite2);
        let args = Args::try_parse_from(["x", "--encoder", "small-cnn"]).unwrap();
        assert_eq!(args.encoder, EncoderName::SmallCnn);
        let err = Args::try_parse_from(["x", "--encoder", "vgg16"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("invalid value 'vgg16' for '--encoder <ENCODER>'"),
            "{err}"
        );
        assert!(err.contains("resnet50"), "{err}");
    }
}
