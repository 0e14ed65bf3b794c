//! Caption tokenisation as the coco-caption toolkit (pycocoevalcap) does it for ordinary
//! English captions, in plain Rust (no Java at run time).
//!
//! coco-caption runs Stanford CoreNLP 3.4.1's PTB tokenizer (`-preserveLines -lowerCase`)
//! over the captions, splits each output line on spaces and drops the tokens of its
//! `PUNCTUATIONS` list ([`PUNCTUATIONS`] here). This module is written from that tokenizer's
//! observed behaviour (its output on probe captions, checked with the real jar by
//! `training/tests/fixtures/coco_metrics/make_fixture.py`), not from its source:
//! - lowercase, after splitting (capitals only matter for `AT&T`);
//! - clitics split off: `dog's` -> `dog 's`, `they're` -> `they 're`, `isn't` -> `is n't`,
//!   `can't` -> `ca n't`, `won't` -> `wo n't`, `'m 'd 'll 've` likewise; `dogs'` -> `dogs`;
//! - `cannot` -> `can not`, `gonna` -> `gon na`, `wanna`, `gotta`, `lemme`, `gimme` likewise,
//!   `'tis` -> `'t is`, `'twas` -> `'t was`, `y'all` -> `y' all`; `o'clock`, `o'neill`, `'90s`
//!   and `'n'` stay whole;
//! - no British -> American respelling (`colour` stays);
//! - punctuation becomes tokens and is dropped when the whole token is in coco's list
//!   (`, . ? ! ; : - -- ...` and quotes); `?!`, `!!!` and runs of five hyphens or more are
//!   tokens that coco keeps; brackets become `-lrb- -rrb- -lsb- -rsb- -lcb- -rcb-`, which coco
//!   keeps too (its list has them in capitals, after lowercasing);
//! - hyphenated words (`t-shirt`), numbers (`3.5`, `3,000`, `5:30`, `-2`), fractions and dates
//!   (`1/2`, `12/25/2014`), `and/or`, acronyms (`u.s.a.`, `e.g.`, `p.m.`) and the common
//!   abbreviations (`mr.`, `dr.`, `st.`, `etc.`, ...) stay whole; `AT&T` stays whole (`at&t`
//!   written in lowercase does not); `$5` -> `$ 5`, `50%` -> `50 %`, `£` -> `#`, `€` -> `$`,
//!   `¢` -> `cents`, `a*b` -> `a * b`; `@name`, `#tag` and `site.com` stay whole;
//! - letters of any script make words; characters outside the Basic Multilingual Plane
//!   (emoji) are deleted.
//!
//! Known differences from coco-caption, none of which ordinary captions meet: coco tokenises
//! all captions as one text, so a caption's last token can depend on the next caption (a
//! final single letter with a period, `"... the letter b."`, gives coco `b` when the next
//! caption starts with a capitalised word, here `b.`); a `\r` or U+2028 inside a caption
//! starts a new line for CoreNLP and shifts coco's later captions (here it is a space); URLs,
//! e-mail addresses, smileys, SGML tags and HTML entities, numbers with a no-break space
//! (`1 1/2`) and rarer abbreviations are not recognised as single tokens.
//!
//! [`detokenize`] goes the other way, for showing captions to people.

/// The tokens coco-caption's `PTBTokenizer` wrapper drops after CoreNLP (compared after
/// lowercasing, so its `-LRB-` and friends never match).
pub const PUNCTUATIONS: [&str; 17] = [
    "''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--",
    "...", ";",
];

/// Tokenises a caption as coco-caption does (see the module documentation).
pub fn ptb_tokenize(caption: &str) -> Vec<String> {
    let mut tokens: Vec<String> = Vec::new();
    for chunk in caption.split(char::is_whitespace).filter(|c| !c.is_empty()) {
        let chars: Vec<char> = chunk.chars().filter(|c| (*c as u32) < 0x10000).collect();
        let first = tokens.len();
        split_chunk(&chars, &mut tokens);
        // A whole number before a fraction is one token with a no-break space: `1 1/2`.
        if first > 0 && is_fraction(tokens.get(first)) && is_small_number(&tokens[first - 1]) {
            let fraction = tokens.remove(first);
            tokens[first - 1] = format!("{}\u{a0}{fraction}", tokens[first - 1]);
        }
    }
    tokens
        .into_iter()
        .map(|t| t.to_lowercase())
        .filter(|t| !PUNCTUATIONS.contains(&t.as_str()))
        .collect()
}

fn is_small_number(token: &str) -> bool {
    (1..=4).contains(&token.len()) && token.chars().all(|c| c.is_ascii_digit())
}

fn is_fraction(token: Option<&String>) -> bool {
    token
        .and_then(|t| t.split_once('/'))
        .is_some_and(|(a, b)| is_small_number(a) && is_small_number(b))
}

/// The tokens brackets become.
const BRACKETS: [&str; 6] = ["-lrb-", "-rrb-", "-lsb-", "-rsb-", "-lcb-", "-rcb-"];

/// Words that keep their period.
const ABBREVIATIONS: [&str; 24] = [
    "mr", "mrs", "ms", "dr", "st", "jr", "sr", "vs", "etc", "prof", "inc", "co", "ltd", "mt", "ft",
    "jan", "feb", "aug", "sept", "oct", "nov", "dec", "corp", "gen",
];

/// Suffixes split off a word after an apostrophe.
const APOSTROPHE_CLITICS: [&str; 6] = ["s", "re", "ve", "ll", "m", "d"];

fn is_word(c: char) -> bool {
    c.is_alphanumeric()
}

/// Whether `c` at `chars[i]` joins the word around it: `-` between word characters, `.`,
/// `,` and `:` between digits, `/` between word characters, `&` between capitals.
fn joins(chars: &[char], i: usize) -> bool {
    let (Some(&before), Some(&after)) = (
        i.checked_sub(1).and_then(|b| chars.get(b)),
        chars.get(i + 1),
    ) else {
        return false;
    };
    match chars[i] {
        '-' | '/' => is_word(before) && is_word(after),
        '.' if is_word(before) && is_domain_end(&chars[i + 1..]) => true,
        '.' | ',' | ':' => before.is_ascii_digit() && after.is_ascii_digit(),
        '&' => before.is_uppercase() && after.is_uppercase(),
        _ => false,
    }
}

/// Whether `rest` is a domain's last label (`statefarm.com`): CoreNLP keeps such names whole.
fn is_domain_end(rest: &[char]) -> bool {
    let label: String = rest
        .iter()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect();
    let ends = !rest.get(label.len()).is_some_and(|c| is_word(*c));
    ends && ["com", "org", "net", "edu", "gov"].contains(&label.to_lowercase().as_str())
}

/// Length of an acronym with periods at `chars[i..]` (`u.s.a.`, `e.g.`), if one starts there.
fn acronym(chars: &[char], i: usize) -> Option<usize> {
    let mut n = 0;
    while chars.get(i + n).is_some_and(|c| c.is_alphabetic()) && chars.get(i + n + 1) == Some(&'.')
    {
        n += 2;
    }
    let followed_by_word = chars.get(i + n).is_some_and(|c| is_word(*c));
    (n >= 4 && !followed_by_word).then_some(n)
}

/// Splits one whitespace-free chunk into tokens (original case).
fn split_chunk(chars: &[char], out: &mut Vec<String>) {
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let bracket: String = chars[i..chars.len().min(i + 5)].iter().collect();
        if BRACKETS.contains(&bracket.to_lowercase().as_str()) {
            // Brackets already written as tokens stay so (tokenised text tokenises the same).
            out.push(bracket);
            i += 5;
        } else if let Some(n) = acronym(chars, i) {
            out.push(chars[i..i + n].iter().collect());
            i += n;
        } else if is_word(c)
            || (c == '-' && i == 0 && chars.get(1).is_some_and(char::is_ascii_digit))
        {
            let start = i;
            i += 1;
            while i < chars.len() && (is_word(chars[i]) || joins(chars, i)) {
                i += 1;
            }
            i = push_word(chars, start, i, out);
        } else if c == '\'' || c == '\u{2019}' {
            i = apostrophe(chars, i, out);
        } else if matches!(c, '@' | '#') && chars.get(i + 1).is_some_and(|c| c.is_alphabetic()) {
            let start = i;
            i += 1;
            while i < chars.len() && is_word(chars[i]) {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        } else {
            let run = chars[i..].iter().take_while(|&&d| d == c).count();
            let token = match c {
                '.' if run > 1 => "...".to_string(),
                '?' | '!' => chars[i..]
                    .iter()
                    .take_while(|d| matches!(d, '?' | '!'))
                    .collect(),
                '-' if run >= 5 => "-".repeat(run),
                '-' if run >= 2 => "--".to_string(),
                '(' => "-LRB-".into(),
                ')' => "-RRB-".into(),
                '[' => "-LSB-".into(),
                ']' => "-RSB-".into(),
                '{' => "-LCB-".into(),
                '}' => "-RCB-".into(),
                '"' | '\u{201c}' | '\u{201d}' | '\u{2018}' | '`' => "``".into(),
                '\u{a3}' => "#".into(),
                '\u{20ac}' => "$".into(),
                '\u{a2}' => "cents".into(),
                _ => c.to_string(),
            };
            i += match c {
                '.' | '-' => run,
                '?' | '!' => token.chars().count(),
                _ => 1,
            };
            out.push(token);
        }
    }
}

/// Pushes the word `chars[start..end]` (split as CoreNLP splits words) and returns where
/// scanning goes on: past a clitic or an abbreviation's period that follows it.
fn push_word(chars: &[char], start: usize, end: usize, out: &mut Vec<String>) -> usize {
    let word: String = chars[start..end].iter().collect();
    let lower = word.to_lowercase();
    let apostrophe = chars
        .get(end)
        .is_some_and(|c| matches!(c, '\'' | '\u{2019}'));
    // n't: the word's final `n` goes with it.
    if apostrophe
        && lower.ends_with('n')
        && word.chars().count() > 1
        && chars
            .get(end + 1)
            .is_some_and(|c| c.eq_ignore_ascii_case(&'t'))
        && !chars.get(end + 2).is_some_and(|c| is_word(*c))
    {
        let cut = word.len() - 1;
        out.push(word[..cut].to_string());
        out.push(format!("{}'{}", &word[cut..], chars[end + 1]));
        return end + 2;
    }
    if apostrophe {
        let suffix: String = chars[end + 1..]
            .iter()
            .take_while(|c| c.is_alphabetic())
            .collect();
        let after = end + 1 + suffix.chars().count();
        let ends = !chars.get(after).is_some_and(|c| is_word(*c));
        if ends && APOSTROPHE_CLITICS.contains(&suffix.to_lowercase().as_str()) {
            push_plain(word, out);
            out.push(format!("'{suffix}"));
            return after;
        }
        if lower == "y" && suffix.eq_ignore_ascii_case("all") {
            out.push(format!("{word}'"));
            out.push(suffix);
            return after;
        }
        if !suffix.is_empty() && ends {
            // o'clock, o'neill: one word.
            out.push(format!("{word}'{suffix}"));
            return after;
        }
    }
    if chars.get(end) == Some(&'.') && ABBREVIATIONS.contains(&lower.as_str()) {
        out.push(format!("{word}."));
        return end + 1;
    }
    if chars.get(end) == Some(&'.')
        && end + 1 == chars.len()
        && word.chars().count() == 1
        && word.chars().all(char::is_alphabetic)
    {
        out.push(format!("{word}."));
        return end + 1;
    }
    push_plain(word, out);
    end
}

/// Pushes a word, splitting CoreNLP's assimilations (`cannot`, `gonna`, ...).
fn push_plain(word: String, out: &mut Vec<String>) {
    let lower = word.to_lowercase();
    let cut = match lower.as_str() {
        "cannot" => Some(3),
        "gonna" | "gotta" | "wanna" | "lemme" | "gimme" => Some(3),
        _ => None,
    };
    match cut {
        Some(cut) => {
            out.push(word[..cut].to_string());
            out.push(word[cut..].to_string());
        }
        None => out.push(word),
    }
}

/// A token starting with an apostrophe at `chars[i]`: `'tis`, `'twas`, `'90s`, `'n'`, or the
/// apostrophe alone (a quote, dropped). Returns where scanning goes on.
fn apostrophe(chars: &[char], i: usize, out: &mut Vec<String>) -> usize {
    let rest: String = chars[i + 1..].iter().take_while(|c| is_word(**c)).collect();
    let after = i + 1 + rest.chars().count();
    let lower = rest.to_lowercase();
    let ends = !chars.get(after).is_some_and(|c| is_word(*c));
    if ends && APOSTROPHE_CLITICS.contains(&lower.as_str()) {
        // Already split, as in Flickr8k's captions: `man 's`.
        out.push(format!("'{rest}"));
        return after;
    }
    if (lower == "tis" || lower == "twas") && ends {
        out.push(format!("'{}", &rest[..1]));
        out.push(rest[1..].to_string());
        return after;
    }
    if lower.len() == 3 && lower.starts_with(|c: char| c.is_ascii_digit()) && lower.ends_with('s') {
        out.push(format!("'{rest}"));
        return after;
    }
    if lower == "n" && matches!(chars.get(after), Some('\'' | '\u{2019}')) {
        out.push(format!("'{rest}'"));
        return after + 1;
    }
    out.push("'".into());
    i + 1
}

/// Clitics that CoreNLP splits off the end of a word, and that [`detokenize`] puts back.
const CLITICS: [&str; 11] = [
    "'s", "'re", "n't", "'ll", "'ve", "'m", "'d", "na", "ta", "me", "not",
];

/// Joins tokenised words with spaces for people to read, putting split clitics and
/// assimilations back on their word (`dog 's` -> `dog's`, `is n't` -> `isn't`,
/// `gon na` -> `gonna`, `'t is` -> `'tis`, `y' all` -> `y'all`). A word is joined to the one
/// before only when the tokenizer splits the joined form back into the same words, so that
/// `ptb_tokenize(&detokenize(words))` gives `words` back for tokenised captions, short of
/// tokens that CoreNLP keeps whole only in capitals (like `AT&T`, whose lowercase form it
/// splits) and of a whole number followed by a fraction that were not apart in the caption
/// (`3'1/2`: shown as `3 1/2`, CoreNLP makes them one token).
pub fn detokenize(words: &[&str]) -> String {
    let mut out = String::new();
    // The words making up the text after the last space of `out`.
    let mut chunk: Vec<&str> = Vec::new();
    let mut chunk_start = 0;
    for &word in words {
        let prev = chunk.last().copied();
        let joinable = prev.is_some_and(|p| CLITICS.contains(&word) || p == "'t" || p == "y'");
        if joinable {
            let joined = format!("{}{word}", &out[chunk_start..]);
            chunk.push(word);
            if ptb_tokenize(&joined) == chunk {
                out.push_str(word);
                continue;
            }
            chunk.pop();
        }
        if !out.is_empty() {
            out.push(' ');
        }
        chunk_start = out.len();
        chunk.clear();
        chunk.push(word);
        out.push_str(word);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(s: &str) -> String {
        ptb_tokenize(s).join(" ")
    }

    /// Expected values are the output of coco-caption's tokenizer (CoreNLP 3.4.1 jar with
    /// `-preserveLines -lowerCase`, then its punctuation filter).
    #[test]
    fn matches_corenlp_on_probe_sentences() {
        let cases = [
            ("A dog's ball, isn't it?!", "a dog 's ball is n't it ?!"),
            (
                "They're here and we'll go; I've seen I'm sure he'd know.",
                "they 're here and we 'll go i 've seen i 'm sure he 'd know",
            ),
            (
                "I cannot go, gonna wanna gotta lemme gimme",
                "i can not go gon na wan na got ta lem me gim me",
            ),
            (
                "The colour of the theatre is grey; favourite neighbours",
                "the colour of the theatre is grey favourite neighbours",
            ),
            (
                "\"Quoted\" text and \u{201c}curly\u{201d} quotes and \u{2018}single\u{2019} ones",
                "quoted text and curly quotes and single ones",
            ),
            (
                "A man (in a hat) [bracket] {brace}",
                "a man -lrb- in a hat -rrb- -lsb- bracket -rsb- -lcb- brace -rcb-",
            ),
            (
                "Tom & Jerry, AT&T, and/or 1/2 a*b",
                "tom & jerry at&t and/or 1/2 a * b",
            ),
            (
                "caf\u{e9} na\u{ef}ve \u{fc}ber \u{6771}\u{4eac} \u{1f600} emoji",
                "caf\u{e9} na\u{ef}ve \u{fc}ber \u{6771}\u{4eac} emoji",
            ),
            (
                "t-shirt 3.5 mr. smith ... etc. U.S.A. e.g.",
                "t-shirt 3.5 mr. smith etc. u.s.a. e.g.",
            ),
            (
                "3,000 people at 5:30 p.m. $5 \u{a3}3 \u{20ac}4 50% #1 @home",
                "3,000 people at 5:30 p.m. $ 5 # 3 $ 4 50 % # 1 @home",
            ),
            ("A--B -- C - D", "a b c d"),
            (
                "don't won't can't shouldn't ain't y'all 'tis",
                "do n't wo n't ca n't should n't ai n't y' all 't is",
            ),
            ("A statefarm.com hat.", "a statefarm.com hat"),
            (
                "a man 's face , he 's here and we 'll go",
                "a man 's face he 's here and we 'll go",
            ),
            (
                "dogs' toys and the boys' 'quoted' ok'",
                "dogs toys and the boys quoted ok",
            ),
        ];
        for (raw, expected) in cases {
            assert_eq!(tok(raw), expected, "{raw:?}");
        }
    }

    #[test]
    fn empty_and_punctuation_only_captions() {
        assert!(ptb_tokenize("").is_empty());
        assert!(ptb_tokenize(" ,.; ").is_empty());
        assert!(ptb_tokenize("\u{1f600}").is_empty());
    }

    #[test]
    fn detokenize_reattaches_clitics_and_round_trips() {
        let words = ["a", "dog", "'s", "ball", "is", "n't", "here"];
        assert_eq!(detokenize(&words), "a dog's ball isn't here");
        assert_eq!(detokenize(&["gon", "na", "go"]), "gonna go");
        assert_eq!(detokenize(&["'t", "is", "y'", "all"]), "'tis y'all");
        assert_eq!(detokenize(&["i", "can", "not"]), "i cannot");
        assert_eq!(detokenize(&[]), "");
        // Joined only where the tokenizer splits the result the same way again.
        assert_eq!(detokenize(&["do", "not"]), "do not");
        assert_eq!(detokenize(&["'s", "a"]), "'s a");
        let captions = [
            "A dog's ball, isn't it?!",
            "They're here and we'll go; I've seen I'm sure he'd know.",
            "I cannot go, gonna wanna gotta lemme gimme",
            "don't won't can't shouldn't ain't y'all 'tis 'twas",
            "t-shirt 3.5 mr. smith ... etc. U.S.A. e.g. 1 1/2 cups",
            "A man (in a hat) [bracket] {brace} at&t and/or rock 'n' roll o'clock",
            "caf\u{e9} na\u{ef}ve \u{fc}ber \u{6771}\u{4eac} \u{1f600} the '90s",
        ];
        for caption in captions {
            let words = ptb_tokenize(caption);
            let refs: Vec<&str> = words.iter().map(String::as_str).collect();
            assert_eq!(ptb_tokenize(&detokenize(&refs)), words, "{caption:?}");
        }
    }
}
