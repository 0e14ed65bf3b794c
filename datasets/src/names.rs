//! One way to name the values of an enum on the command line, in files and in messages.
//!
//! [`named_values!`](crate::named_values) gives a type its names (the first name of each
//! value is its own; the others are accepted aliases), `NAMES`, `name()`, `Display`, and a
//! `FromStr` that ignores case, `-` and `_`, and lists the names when it fails.

/// Whether `given` spells `name`, case, `-` and `_` ignored (`ResNet_50` spells `resnet50`).
pub fn spells(given: &str, name: &str) -> bool {
    let key = |s: &str| -> String {
        s.chars()
            .filter(|c| *c != '-' && *c != '_')
            .map(|c| c.to_ascii_lowercase())
            .collect()
    };
    key(given) == key(name)
}

/// Names the values of a `Copy` enum: `named_values!(Kind: A = "a", B = "bee" | "b");`.
#[macro_export]
macro_rules! named_values {
    ($ty:ty: $($variant:ident = $name:literal $(| $alias:literal)*),+ $(,)?) => {
        impl $ty {
            /// Every value with its name, in the order help texts list them.
            pub const NAMES: &'static [($ty, &'static str)] = &[$((Self::$variant, $name)),+];

            /// The name on the command line, in files and in messages.
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $name),+
                }
            }
        }

        impl ::std::str::FromStr for $ty {
            type Err = String;

            fn from_str(s: &str) -> ::std::result::Result<Self, String> {
                $(
                    if $crate::names::spells(s, $name) $(|| $crate::names::spells(s, $alias))* {
                        return Ok(Self::$variant);
                    }
                )+
                let names: Vec<&str> = Self::NAMES.iter().map(|(_, n)| *n).collect();
                Err(format!("unknown value \"{s}\"; expected one of: {}", names.join(", ")))
            }
        }

        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

#[cfg(test)]
mod tests {
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Score {
        Bleu4,
        Cider,
    }
    named_values!(Score: Bleu4 = "bleu4", Cider = "cider" | "cider-d");

    #[test]
    fn names_ignore_case_dashes_and_underscores_and_take_aliases() {
        for given in ["bleu4", "BLEU-4", "bleu_4"] {
            assert_eq!(given.parse::<Score>(), Ok(Score::Bleu4), "{given}");
        }
        assert_eq!("CIDEr-D".parse::<Score>(), Ok(Score::Cider));
        assert_eq!(Score::Cider.name(), "cider");
        assert_eq!(Score::Bleu4.to_string(), "bleu4");
    }

    #[test]
    fn an_unknown_name_is_refused_with_the_names_listed() {
        let err = "rouge".parse::<Score>().unwrap_err();
        assert_eq!(
            err,
            "unknown value \"rouge\"; expected one of: bleu4, cider"
        );
    }
}
