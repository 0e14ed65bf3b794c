//! Caption tokenisation exactly as the coco-caption toolkit (pycocoevalcap) does it, in plain
//! Rust: no Java at run time.
//!
//! coco-caption writes the captions one a line to a file, runs Stanford CoreNLP 3.4.1's
//! `edu.stanford.nlp.process.PTBTokenizer -preserveLines -lowerCase` on it, strips each output
//! line's end, splits it on spaces and drops the tokens of its `PUNCTUATIONS` list
//! ([`PUNCTUATIONS`] here). That tokenizer is a JFlex scanner (`PTBLexer.flex`): at each
//! position the longest match of any rule wins (a rule's trailing context `r1/r2` counting
//! towards the length), ties going to the rule listed first, under `%caseless` (letters written
//! in a pattern match either case, letters inside `[...]` classes do not). This module carries
//! the macros and rules of the 3.4.1 lexer (its `YyTraditionalTreebank3` state and the options
//! the command line gives: no americanisation, PTB3 escaping, LaTeX quotes, assimilations
//! split, untokenizable characters deleted) in JFlex syntax, and applies them with JFlex's
//! semantics to the caption's UTF-16 code units, as Java sees the text: a small parser turns
//! them into one NFA, run as a DFA built lazily per thread (a few microseconds a caption). Its
//! `[:letter:]` and `[:digit:]` tables were read off the jar by probing every BMP code unit.
//!
//! What that yields, for example (checked against the real jar, also on tens of thousands of
//! random strings):
//! - lowercase (Java's `toLowerCase(Locale.ENGLISH)`), after the capitals have steered the
//!   lexer (`"etc. The"` and `"U.S. The"` repeat the period as a token of its own, dropped);
//! - clitics split off: `"dog's"` -> `dog 's`, `"they're"` -> `they 're`, `"isn't"` -> `is n't`,
//!   `"can't"` -> `ca n't`, `"won't"` -> `wo n't`, `'m 'd 'll 've` likewise, in capitals too;
//!   `"dogs'"` -> `dogs` (the lone `'` is punctuation);
//! - assimilations split: `cannot` -> `can not`, `gonna` -> `gon na`, `wanna` -> `wan na`,
//!   `gotta` -> `got ta`, `lemme` -> `lem me`, `gimme` -> `gim me`, `'tis` -> `'t is`,
//!   `'twas` -> `'t was`, `y'all` -> `y' all`; apostrophe words kept whole: `o'clock`,
//!   `rock 'n' roll`, `o'neill`, `'90s`;
//! - no British -> American respelling (`colour` stays `colour`: `americanize` is off by default
//!   in 3.4.1's lexer);
//! - punctuation dropped only when the whole token is in coco's list: `, . ? ! ; : - -- ...`,
//!   quotes (`"` becomes `` `` `` or `''`, curly quotes likewise), `'` and `` ` ``; but `?!`,
//!   `!!!` and `??` are single tokens not in the list and are kept, and as `-lowerCase`
//!   lowercases `-LRB-`, brackets stay as `-lrb- -rrb- -lsb- -rsb- -lcb- -rcb-` (coco's list
//!   has them in capitals); runs of five hyphens or more are kept too;
//! - hyphenated words (`t-shirt`, `black-and-white`, `10-year-old`), numbers (`3.5`, `3,000`,
//!   `5:30`, `-2`), fractions (`1/2`, `1 1/2` -> one token with a no-break space inside, `½` ->
//!   `1/2`), dates (`12/25/2014`), `and/or`, abbreviations and acronyms (`mr.`, `dr.`, `st.`,
//!   `e.g.`, `u.s.a.`, `p.m.`, `etc.`), `at&t`, `&amp;` -> `&`, `$5` -> `$ 5`, `£` -> `#`,
//!   `€` -> `$`, `¢` -> `cents`, `50%` -> `50 %`, `a*b` -> `a * b`, `@name`, `#tag`, URLs and
//!   e-mail addresses, smileys (`:)` -> `:-rrb-`);
//! - letters of any BMP script (accented Latin, Greek, Cyrillic, CJK) make words; a character
//!   outside the Basic Multilingual Plane (emoji, CJK extension B) is "untokenizable" and
//!   deleted, as are the other characters no rule takes (`Ⅻ`, U+202F).
//!
//! Known differences from coco-caption:
//! - coco tokenises all the captions of a call as one text, one a line, so the lexer's
//!   lookahead sees the start of the next caption. Here a caption is tokenised alone, as if
//!   followed by a line break and the end of the input (like coco's last caption). This shows
//!   only at a caption's end: a single letter with a period (`"... the letter b."`) gives coco
//!   `b` when the next caption begins with `A`, `The`, `He`, `It` and the like (the acronym
//!   rule), here `b.`; `"no."`, `"nos."`, `"fig."`, `"art."`, `"ca."` and the like give coco
//!   `no.` when the next caption begins with a digit, here `no`.
//! - a line break character other than `\n` inside a caption (`\r`, U+2028, U+2029, U+000B,
//!   U+000C, U+0085) makes CoreNLP start a new output line, which in coco shifts every later
//!   caption of the batch onto the wrong image; here it is a space.
//! - `[:uppercase:]` is Rust's `char::is_uppercase`; it only decides whether an abbreviation's
//!   period is repeated as a token, which coco drops anyway.
//! - a token with a no-break space inside (`1 1/2`, phone numbers) is one word here and for
//!   coco's ROUGE-L (`split(" ")`), two for its BLEU and CIDEr (Python's `split()`); the
//!   scorers of the training crate split the same ways.
//!
//! [`detokenize`] goes the other way, for showing captions to people.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

/// The tokens coco-caption's `PTBTokenizer` wrapper drops after CoreNLP (compared after
/// lowercasing, so its `-LRB-` and friends never match).
pub const PUNCTUATIONS: [&str; 17] = [
    "''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--",
    "...", ";",
];

/// Tokenises a caption as coco-caption does: CoreNLP 3.4.1's PTB tokenizer with `-lowerCase`,
/// then its punctuation tokens dropped. See the module documentation for what that means.
pub fn ptb_tokenize(caption: &str) -> Vec<String> {
    // coco puts one caption a line, its line breaks made spaces. CoreNLP writes the tokens of
    // a line joined by spaces; coco strips the line's end with Python's `rstrip()`, splits it
    // on single spaces and filters.
    let tokens = if caption.contains('\n') {
        lex(&caption.replace('\n', " "))
    } else {
        lex(caption)
    };
    let line = tokens
        .iter()
        .map(|t| t.to_lowercase())
        .collect::<Vec<_>>()
        .join(" ");
    line.trim_end_matches(is_python_space)
        .split(' ')
        .filter(|w| !w.is_empty() && !PUNCTUATIONS.contains(w))
        .map(str::to_string)
        .collect()
}

/// Python's `str.isspace()`.
fn is_python_space(c: char) -> bool {
    matches!(
        c,
        '\t'..='\r'
            | '\u{1c}'..='\u{20}'
            | '\u{85}'
            | '\u{a0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200a}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202f}'
            | '\u{205f}'
            | '\u{3000}'
    )
}

/// Clitics that CoreNLP splits off the end of a word, and that [`detokenize`] puts back.
const CLITICS: [&str; 11] = [
    "'s", "'re", "n't", "'ll", "'ve", "'m", "'d", "na", "ta", "me", "not",
];

/// Joins tokenised words with spaces for people to read, putting split clitics and
/// assimilations back on their word (`dog 's` -> `dog's`, `is n't` -> `isn't`,
/// `gon na` -> `gonna`, `'t is` -> `'tis`, `y' all` -> `y'all`). A word is joined to the one
/// before only when the tokenizer splits the joined form back into the same words, so that
/// `ptb_tokenize(&detokenize(words))` gives `words` back for tokenised captions (short of
/// tokens that CoreNLP keeps whole only in capitals, like `AT&T`, whose lowercase form it
/// splits).
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

/// The tokens CoreNLP's `PTBLexer` makes of `text` (before lowercasing and coco's filter).
pub fn lex(text: &str) -> Vec<String> {
    let lexer = lexer();
    // The caption is followed by a line break (coco writes one caption a line); that is also
    // all the lookahead past the caption's end.
    let mut units: Vec<u16> = text.encode_utf16().collect();
    units.push(u16::from(b'\n'));
    let mut tokens = Vec::new();
    let mut pos = 0;
    while pos < units.len() {
        let (rule, r1_end) = lexer.longest_match(&units, pos);
        let rule = &lexer.rules[rule];
        let text = &units[pos..r1_end];
        let (token, next) = match rule.action {
            Action::Plain => (Some(utf16(text)), r1_end),
            Action::Pushback(k) => (Some(utf16(&text[..text.len() - k])), r1_end - k),
            Action::SoftHyphens => (Some(remove_soft_hyphens(&utf16(text))), r1_end),
            Action::NormAmp => (Some(normalize_amp(&utf16(text))), r1_end),
            Action::Const(s) => (Some(s.to_string()), r1_end),
            Action::Quotes { left } => (Some(latex_quotes(&utf16(text), left)), r1_end),
            Action::Hyphens => {
                let s = if (3..=4).contains(&text.len()) {
                    "--".to_string()
                } else {
                    utf16(text)
                };
                (Some(s), r1_end)
            }
            Action::Fraction => (Some(normalize_fractions(&utf16(text))), r1_end),
            Action::Currency => (Some(normalize_currency(&utf16(text))), r1_end),
            Action::Nbsp => (Some(utf16(text).replace(' ', "\u{a0}")), r1_end),
            Action::Phone => {
                let s = utf16(text).replace(' ', "\u{a0}");
                (Some(normalize_parens(&s)), r1_end)
            }
            Action::Parens => (Some(normalize_parens(&utf16(text))), r1_end),
            Action::Acronym => {
                if text.len() == 2 {
                    // "I." before "The": the letter, then the period on its own.
                    (Some(utf16(&text[..1])), r1_end - 1)
                } else {
                    // "U.S." before "The": the acronym, then its period again.
                    (Some(utf16(text)), r1_end - 1)
                }
            }
            Action::RepeatPeriod => (Some(utf16(text)), r1_end - 1),
            Action::Skip => (None, r1_end),
        };
        tokens.extend(token);
        pos = next;
    }
    tokens
}

fn utf16(units: &[u16]) -> String {
    String::from_utf16_lossy(units)
}

fn remove_soft_hyphens(s: &str) -> String {
    let out: String = s.chars().filter(|&c| c != '\u{ad}').collect();
    if out.is_empty() {
        "-".to_string()
    } else {
        out
    }
}

/// `(?i:&amp;)` -> `&`.
fn normalize_amp(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.len() >= 5 && tail.is_char_boundary(5) && tail[..5].eq_ignore_ascii_case("&amp;") {
            out.push('&');
            rest = &tail[5..];
        } else {
            out.push('&');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

fn normalize_parens(s: &str) -> String {
    s.replace('(', "-LRB-").replace(')', "-RRB-")
}

fn normalize_fractions(s: &str) -> String {
    s.replace('\u{bc}', "1/4")
        .replace('\u{bd}', "1/2")
        .replace('\u{be}', "3/4")
        .replace('\u{2153}', "1/3")
        .replace('\u{2154}', "2/3")
}

fn normalize_currency(s: &str) -> String {
    s.replace('\u{a2}', "cents")
        .replace('\u{a3}', "#")
        .replace(['\u{80}', '\u{a4}', '\u{20a0}', '\u{20ac}'], "$")
}

/// CoreNLP's `latexQuotes`: ASCII quotes become `` ` ``/`` `` `` when probably opening,
/// `'`/`''` otherwise; curly and angle quotes by their direction.
fn latex_quotes(s: &str, probably_left: bool) -> String {
    let s = if probably_left {
        s.replace("&apos;", "`")
            .replace('\'', "`")
            .replace("&quot;", "``")
            .replace('"', "``")
    } else {
        s.replace("&apos;", "'")
            .replace("&quot;", "''")
            .replace('"', "''")
    };
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\u{91}' | '\u{2018}' | '\u{201b}' | '\u{2039}' => out.push('`'),
            '\u{92}' | '\u{2019}' | '\u{203a}' => out.push('\''),
            '\u{93}' | '\u{201c}' | '\u{ab}' => out.push_str("``"),
            '\u{94}' | '\u{201d}' | '\u{bb}' => out.push_str("''"),
            c => out.push(c),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The lexer specification: PTBLexer.flex of CoreNLP 3.4.1, macros and rules, in JFlex syntax.
// ---------------------------------------------------------------------------------------------

/// Macro definitions, in an order where each uses only earlier ones.
const MACROS: &[(&str, &str)] = &[
    (
        "SGML",
        r#"\<([!\?][A-Za-z\-][^>\r\n]*|[A-Za-z][A-Za-z0-9_:\.\-]*([ ]+([A-Za-z][A-Za-z0-9_:\.\-]*|[A-Za-z][A-Za-z0-9_:\.\-]*[ ]*=[ ]*('[^']*'|\"[^\"]*\")))*[ ]*\/?|\/[A-Za-z][A-Za-z0-9_:\.\-]*)[ ]*\>"#,
    ),
    (
        "SPMDASH",
        r"&(MD|mdash|ndash);|[\u0096\u0097\u2013\u2014\u2015]",
    ),
    ("SPAMP", r"&amp;"),
    ("SPPUNC", r"&(HT|TL|UR|LR|QC|QL|QR|odq|cdq|#[0-9]+);"),
    ("SPLET", r"&[aeiouAEIOU](acute|grave|uml);"),
    ("SPACE", r"[ \t\u00A0\u2000-\u200A\u3000]"),
    ("SPACES", r"{SPACE}+"),
    ("NEWLINE", r"\r|\r?\n|\u2028|\u2029|\u000B|\u000C|\u0085"),
    ("SPACENL", r"({SPACE}|{NEWLINE})"),
    ("SPACENLS", r"{SPACENL}+"),
    ("SENTEND", r"{SPACENL}({SPACENL}|[:uppercase:]|{SGML})"),
    ("DIGIT", r"[:digit:]|[\u07C0-\u07C9]"),
    ("DATE", r"{DIGIT}{1,2}[\-\/]{DIGIT}{1,2}[\-\/]{DIGIT}{2,4}"),
    (
        "NUM",
        r"{DIGIT}+|{DIGIT}*([.:,\u00AD\u066B\u066C]{DIGIT}+)+",
    ),
    ("NUMBER", r"[\-+]?{NUM}"),
    (
        "SUBSUPNUM",
        r"[\u207A\u207B\u208A\u208B]?([\u2070\u00B9\u00B2\u00B3\u2074-\u2079]+|[\u2080-\u2089]+)",
    ),
    (
        "FRAC",
        r"({DIGIT}{1,4}[- \u00A0])?{DIGIT}{1,4}(\\?\/|\u2044){DIGIT}{1,4}",
    ),
    ("FRAC2", r"[\u00BC\u00BD\u00BE\u2153-\u215E]"),
    ("DOLSIGN", r"([A-Z]*\$|#)"),
    (
        "DOLSIGN2",
        r"[\u00A2\u00A3\u00A4\u00A5\u0080\u20A0\u20AC\u060B\u0E3F\u20A4\uFFE0\uFFE1\uFFE5\uFFE6]",
    ),
    (
        "LETTER",
        r"([:letter:]|{SPLET}|[\u00AD\u0237-\u024F\u02C2-\u02C5\u02D2-\u02DF\u02E5-\u02FF\u0300-\u036F\u0370-\u037D\u0384\u0385\u03CF\u03F6\u03FC-\u03FF\u0483-\u0487\u04CF\u04F6-\u04FF\u0510-\u0525\u055A-\u055F\u0591-\u05BD\u05BF\u05C1\u05C2\u05C4\u05C5\u05C7\u0615-\u061A\u063B-\u063F\u064B-\u065E\u0670\u06D6-\u06EF\u06FA-\u06FF\u070F\u0711\u0730-\u074F\u0750-\u077F\u07A6-\u07B1\u07CA-\u07F5\u07FA\u0900-\u0903\u093C\u093E-\u094E\u0951-\u0955\u0962-\u0963\u0981-\u0983\u09BC-\u09C4\u09C7\u09C8\u09CB-\u09CD\u09D7\u09E2\u09E3\u0A01-\u0A03\u0A3C\u0A3E-\u0A4F\u0A81-\u0A83\u0ABC-\u0ACF\u0B82\u0BBE-\u0BC2\u0BC6-\u0BC8\u0BCA-\u0BCD\u0C01-\u0C03\u0C3E-\u0C56\u0D3E-\u0D44\u0D46-\u0D48\u0E30-\u0E3A\u0E47-\u0E4E\u0EB1-\u0EBC\u0EC8-\u0ECD])",
    ),
    (
        "WORD",
        r"{LETTER}({LETTER}|{DIGIT})*([.!?]{LETTER}({LETTER}|{DIGIT})*)*",
    ),
    (
        "FILENAME_EXT",
        r"bat|bmp|c|class|cgi|cpp|dll|doc|docx|exe|gif|gz|h|htm|html|jar|java|jpeg|jpg|mov|mp3|pdf|php|pl|png|ppt|ps|py|sql|tar|txt|wav|x|xml|zip",
    ),
    (
        "FILENAME",
        r"({LETTER}|{DIGIT})+([.]({LETTER}|{DIGIT})+)*([.]{FILENAME_EXT})",
    ),
    ("APOS", r"['\u0092\u2019]|&apos;"),
    ("APOSETCETERA", r"{APOS}|[`\u0091\u2018\u201B]"),
    ("HYPHEN", r"[-_\u058A\u2010\u2011]"),
    (
        "THING",
        r"([dDoOlL]{APOSETCETERA}([:letter:]|[:digit:]))?([:letter:]|[:digit:])+({HYPHEN}([dDoOlL]{APOSETCETERA}([:letter:]|[:digit:]))?([:letter:]|[:digit:])+)*",
    ),
    ("THINGA", r"[A-Z]+(([+&]|{SPAMP})[A-Z]+)+"),
    (
        "THING3",
        r"[A-Za-z0-9]+(-[A-Za-z]+){0,2}(\\?\/[A-Za-z0-9]+(-[A-Za-z]+){0,2}){1,2}",
    ),
    (
        "ACRO",
        r"[A-Za-z](\.[A-Za-z])*|(Canada|Sino|Korean|EU|Japan|non)-U\.S|U\.S\.-(U\.K|U\.S\.S\.R)",
    ),
    (
        "ACRO2",
        r"[A-Za-z](\.[A-Za-z])+|(Canada|Sino|Korean|EU|Japan|non)-U\.S|U\.S\.-(U\.K|U\.S\.S\.R)",
    ),
    (
        "HTHING",
        r"[A-Za-z0-9][A-Za-z0-9.,\u00AD]*(-([A-Za-z0-9\u00AD]+|{ACRO2}\.))+",
    ),
    ("REDAUX", r"{APOS}([msdMSD]|re|ve|ll)"),
    ("SWORD", r"[A-Za-z\u00AD]*[A-MO-Za-mo-z](\u00AD)*"),
    ("SREDAUX", r"n{APOSETCETERA}t"),
    (
        "APOWORD",
        r"{APOS}n{APOS}?|[lLdDjJ]{APOS}|Dunkin{APOS}|somethin{APOS}|ol{APOS}|{APOS}em|[A-HJ-XZn]{APOSETCETERA}[:letter:]{2}[:letter:]*|{APOS}[2-9]0s|{APOS}till?|[:letter:][:letter:]*[aeiouyAEIOUY]{APOSETCETERA}[aeiouA-Z][:letter:]*|{APOS}cause|cont'd\.?|'twas|nor'easter|c'mon|e'er|s'mores|ev'ry|li'l|nat'l|O{APOSETCETERA}o",
    ),
    ("APOWORD2", r"y{APOS}"),
    (
        "FULLURL",
        r#"https?:\/\/[^ \t\n\f\r\"<>|(){}]+[^ \t\n\f\r\"<>|.!?(){},-]"#,
    ),
    (
        "LIKELYURL",
        r#"((www\.([^ \t\n\f\r\"<>|.!?(){},]+\.)+[a-zA-Z]{2,4})|(([^ \t\n\f\r\"`'<>|.!?(){},-_$]+\.)+(com|net|org|edu)))(\/[^ \t\n\f\r\"<>|()]+[^ \t\n\f\r\"<>|.!?(){},-])?"#,
    ),
    (
        "EMAIL",
        r#"(&lt;|<)?[a-zA-Z0-9][^ \t\n\f\r\"<>|()\u00A0{}]*@([^ \t\n\f\r\"<>|(){}.\u00A0]+\.)*([^ \t\n\f\r\"<>|(){}.\u00A0]+)(&gt;|>)?"#,
    ),
    ("TWITTER_NAME", r"@[a-zA-Z_][a-zA-Z_0-9]*"),
    ("TWITTER_CATEGORY", r"#{LETTER}+"),
    ("TWITTER", r"{TWITTER_NAME}|{TWITTER_CATEGORY}"),
    (
        "ABMONTH",
        r"Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec",
    ),
    ("ABDAYS", r"Mon|Tue|Tues|Wed|Thu|Thurs|Fri"),
    (
        "ABSTATE",
        r"Ala|Ariz|[A]z|[A]rk|Calif|Colo|Conn|Ct|Dak|[D]el|Fla|Ga|[I]ll|Ind|Kans?|Ky|[L]a|[M]ass|Md|Mich|Minn|[M]iss|Mo|Mont|Neb|Nev|Okla|[O]re|[P]a|Penn|Tenn|[T]ex|Va|Vt|[W]ash|Wisc?|Wyo",
    ),
    (
        "ABCOMP",
        r"Inc|Cos?|Corp|Pp?t[ye]s?|Ltd|Plc|Rt|Bancorp|Bhd|Assn|Univ|Intl|Sys",
    ),
    ("ABNUM", r"tel|est|ext|sq"),
    ("ABPTIT", r"Jr|Sr|Bros|(Ed|Ph)\.D|Blvd|Rd|Esq"),
    (
        "ABBREV1",
        r"({ABMONTH}|{ABDAYS}|{ABSTATE}|{ABCOMP}|{ABNUM}|{ABPTIT}|etc|al|seq|Bldg)\.",
    ),
    (
        "ABTITLE",
        r"Mr|Mrs|Ms|[M]iss|Drs?|Profs?|Sens?|Reps?|Attys?|Lt|Col|Gen|Messrs|Govs?|Adm|Rev|Maj|Sgt|Cpl|Pvt|Capt|Ste?|Ave|Pres|Lieut|Hon|Brig|Co?mdr|Pfc|Spc|Supts?|Det|Mt|Ft|Adj|Adv|Asst|Assoc|Ens|Insp|Mlle|Mme|Msgr|Sfc",
    ),
    ("ABCOMP2", r"Invt|Elec|Natl|M[ft]g|Dept"),
    (
        "ABBREV4",
        r"{ABTITLE}|vs|Alex|Wm|Jos|Cie|a\.k\.a|cf|TREAS|Ph|{ACRO}|{ABCOMP2}",
    ),
    ("ABBREV2", r"{ABBREV4}\."),
    ("ACRONYM", r"({ACRO})\."),
    ("ABBREV3", r"(ca|figs?|prop|nos?|art|bldg|prop|pp|op)\."),
    (
        "PHONE",
        r"(\([0-9]{2,3}\)[ \u00A0]?|(\+\+?)?([0-9]{2,4}[\- \u00A0])?[0-9]{2,4}[\- \u00A0])[0-9]{3,4}[\- \u00A0]?[0-9]{3,5}|((\+\+?)?[0-9]{2,4}\.)?[0-9]{2,4}\.[0-9]{3,4}\.[0-9]{3,5}",
    ),
    ("FAKEDUCKFEET", r"<<|>>"),
    ("LESSTHAN", r"<|&lt;"),
    ("GREATERTHAN", r">|&gt;"),
    ("HYPHENS", r"\-+"),
    ("LDOTS", r"\.{3,5}|(\.[ \u00A0]){2,4}\.|[\u0085\u2026]"),
    ("ATS", r"@+"),
    ("UNDS", r"_+"),
    ("ASTS", r"\*+|(\\\*){1,3}"),
    ("HASHES", r"#+"),
    ("FNMARKS", r"{ATS}|{HASHES}|{UNDS}"),
    ("INSENTP", r"[,;:\u3001]"),
    (
        "QUOTES",
        r"{APOS}|''|[`\u2018\u2019\u201A\u201B\u201C\u201D\u0091\u0092\u0093\u0094\u201E\u201F\u2039\u203A\u00AB\u00BB]{1,2}",
    ),
    ("DBLQUOT", r#"\"|&quot;"#),
    (
        "TBSPEC",
        r"-(RRB|LRB|RCB|LCB|RSB|LSB)-|C\.D\.s|pro-|anti-|S(&|&amp;)P-500|S(&|&amp;)Ls|Cap{APOS}n|c{APOS}est",
    ),
    ("TBSPEC2", r"{APOS}[0-9][0-9]"),
    ("SMILEY", r"[<>]?[:;=][\-o\*']?[\(\)DPdpO\\{@\|\[\]]"),
    (
        "ASIANSMILEY",
        r"[\^x=~<>]\.\[\^x=~<>]|[\-\^x=~<>']_[\-\^x=~<>']|\([\-\^x=~<>'][_.]?[\-\^x=~<>']\)|\([\^x=~<>']-[\^x=~<>'`]\)",
    ),
    (
        "MISCSYMBOL",
        r"[+%&~\^|\\¦\u00A7¨\u00A9\u00AC\u00AE¯\u00B0-\u00B3\u00B4-\u00BA\u00D7\u00F7\u0387\u05BE\u05C0\u05C3\u05C6\u05F3\u05F4\u0600-\u0603\u0606-\u060A\u060C\u0614\u061B\u061E\u066A\u066D\u0703-\u070D\u07F6\u07F7\u07F8\u0964\u0965\u0E4F\u1FBD\u2016\u2017\u2020-\u2023\u2030-\u2038\u203B\u203E-\u2042\u2044\u207A-\u207F\u208A-\u208E\u2100-\u214F\u2190-\u21FF\u2200-\u2BFF\u3012\u30FB\uFF01-\uFF0F\uFF1A-\uFF20\uFF3B-\uFF40\uFF5B-\uFF65\uFF65]",
    ),
    (
        "ACRONYM_NEXT",
        r"({SPACENLS})([A]bout|[A]ccording|[A]dditionally|[A]fter|[A]n|[A]|[A]s|[A]t|[B]ut|[E]arlier|[H]e|[H]er|[H]ere|[H]owever|[I]f|[I]n|[I]t|[L]ast|[M]any|[M]ore|[M]r\.|[M]s\.|[N]ow|[O]nce|[O]ne|[O]ther|[O]ur|[S]he|[S]ince|[S]o|[S]ome|[S]uch|[T]hat|[T]he|[T]heir|[T]hen|[T]here|[T]hese|[T]hey|[T]his|[W]e|[W]hen|[W]hile|[W]hat|[Y]et|[Y]ou|{SGML}){SPACENL}",
    ),
];

/// What a rule's action does with the matched text (`r1`, the trailing context excluded).
#[derive(Debug, Clone, Copy)]
enum Action {
    /// The text as it is.
    Plain,
    /// `yypushback(k)`: the text less its last `k` units, which are scanned again.
    Pushback(usize),
    /// The text less soft hyphens.
    SoftHyphens,
    /// `&amp;` -> `&`.
    NormAmp,
    /// A fixed token.
    Const(&'static str),
    /// `latexQuotes`.
    Quotes { left: bool },
    /// `--` for 3 or 4 hyphens, else as it is.
    Hyphens,
    /// `½` -> `1/2` and the like.
    Fraction,
    /// `£` -> `#`, `€` -> `$`, `¢` -> `cents`.
    Currency,
    /// Spaces become no-break spaces.
    Nbsp,
    /// Spaces become no-break spaces, parentheses `-LRB-`/`-RRB-`.
    Phone,
    /// Parentheses become `-LRB-`/`-RRB-`.
    Parens,
    /// The acronym rule before a capitalised function word.
    Acronym,
    /// An abbreviation that may end a sentence: the text, then its period scanned again.
    RepeatPeriod,
    /// No token (white space, untokenizable characters).
    Skip,
}

/// The rules of the `YyTraditionalTreebank3` state, in the order of the `.flex` file
/// (earlier wins a tie): pattern, trailing context, action.
const RULES: &[(&str, Option<&str>, Action)] = &[
    (r"c[+][+]", None, Action::Plain),
    (r"(c|f)#", None, Action::Plain),
    (r"cannot", None, Action::Pushback(3)),
    (r"'twas", None, Action::Pushback(3)),
    (r"'tis", None, Action::Pushback(2)),
    (r"gonna|gotta|lemme|gimme|wanna", None, Action::Pushback(2)),
    (r"{SGML}", None, Action::Nbsp),
    (r"{SPMDASH}", None, Action::Const("--")),
    (r"{SPAMP}", None, Action::NormAmp),
    (r"{SPPUNC}", None, Action::Plain),
    (r"{WORD}", Some(r"{REDAUX}"), Action::SoftHyphens),
    (r"{SWORD}", Some(r"{SREDAUX}"), Action::SoftHyphens),
    (r"{WORD}", None, Action::SoftHyphens),
    (r"{APOWORD}", None, Action::Plain),
    (r"{APOWORD2}", Some(r"[:letter:]"), Action::Plain),
    (r"{FULLURL}", None, Action::Plain),
    (r"{LIKELYURL}", None, Action::Plain),
    (r"{EMAIL}", None, Action::Plain),
    (r"{TWITTER}", None, Action::Plain),
    (
        r"{REDAUX}",
        Some(r"[^A-Za-z]"),
        Action::Quotes { left: false },
    ),
    (
        r"{SREDAUX}",
        Some(r"[^A-Za-z]"),
        Action::Quotes { left: false },
    ),
    (r"{DATE}", None, Action::Plain),
    (r"{NUMBER}", None, Action::SoftHyphens),
    (r"{SUBSUPNUM}", None, Action::Plain),
    (r"{FRAC}", None, Action::Nbsp),
    (r"{FRAC2}", None, Action::Fraction),
    (r"{TBSPEC}", None, Action::NormAmp),
    (r"{THING3}", None, Action::Plain),
    (r"{DOLSIGN}", None, Action::Plain),
    (r"{DOLSIGN2}", None, Action::Currency),
    (r"{ACRONYM}", Some(r"{ACRONYM_NEXT}"), Action::Acronym),
    (r"{ABBREV3}", Some(r"{SPACENL}?[:digit:]"), Action::Plain),
    (r"(pt[eyEY]|co)\.", Some(r"{SPACE}(ltd|lim)"), Action::Plain),
    (r"{ABBREV1}", Some(r"{SENTEND}"), Action::RepeatPeriod),
    (r"{ABBREV1}", Some(r"[^][^]"), Action::Plain),
    (r"{ABBREV1}", None, Action::RepeatPeriod),
    (r"{ABBREV2}", None, Action::Plain),
    (r"{ABBREV4}", Some(r"{SPACE}"), Action::Plain),
    (r"{ACRO}", Some(r"{SPACENL}"), Action::Plain),
    (r"{TBSPEC2}", Some(r"{SPACENL}"), Action::Plain),
    (r"{FILENAME}", Some(r"({SPACENL}|[.?!,])"), Action::Plain),
    (r"{WORD}\.", Some(r"{INSENTP}"), Action::SoftHyphens),
    (r"{PHONE}", None, Action::Phone),
    (
        r"{DBLQUOT}",
        Some(r"[A-Za-z0-9$]"),
        Action::Quotes { left: true },
    ),
    (r"{DBLQUOT}", None, Action::Quotes { left: false }),
    (r"\x7f", None, Action::Skip),
    (r"{LESSTHAN}", None, Action::Const("<")),
    (r"{GREATERTHAN}", None, Action::Const(">")),
    (r"{SMILEY}", Some(r"[^A-Za-z0-9]"), Action::Parens),
    (r"{ASIANSMILEY}", None, Action::Parens),
    (r"\{", None, Action::Const("-LCB-")),
    (r"\}", None, Action::Const("-RCB-")),
    (r"\[", None, Action::Const("-LSB-")),
    (r"\]", None, Action::Const("-RSB-")),
    (r"\(", None, Action::Const("-LRB-")),
    (r"\)", None, Action::Const("-RRB-")),
    (r"{HYPHENS}", None, Action::Hyphens),
    (r"{LDOTS}", None, Action::Const("...")),
    (r"{FNMARKS}", None, Action::Plain),
    (r"{ASTS}", None, Action::Plain),
    (r"{INSENTP}", None, Action::Plain),
    (r"[?!]+", None, Action::Plain),
    (
        r"[.¡¿\u037E\u0589\u061F\u06D4\u0700-\u0702\u07FA\u3002]",
        None,
        Action::Plain,
    ),
    (r"=", None, Action::Plain),
    (r"\/", None, Action::Plain),
    (r"{HTHING}\.", Some(r"{INSENTP}"), Action::SoftHyphens),
    (r"{HTHING}", None, Action::SoftHyphens),
    (r"{THING}\.", Some(r"{INSENTP}"), Action::Plain),
    (r"{THING}", None, Action::Plain),
    (r"{THINGA}\.", Some(r"{INSENTP}"), Action::NormAmp),
    (r"{THINGA}", None, Action::NormAmp),
    (
        r"'",
        Some(r"[A-Za-z][^ \t\n\r\u00A0]"),
        Action::Quotes { left: true },
    ),
    (r"{REDAUX}", None, Action::Quotes { left: false }),
    (r"{SREDAUX}", None, Action::Quotes { left: false }),
    (r"{QUOTES}", None, Action::Quotes { left: false }),
    (r"{FAKEDUCKFEET}", None, Action::Plain),
    (r"{MISCSYMBOL}", None, Action::Plain),
    (
        r"\0|{SPACES}|[\u200B\u200E-\u200F\uFEFF]",
        None,
        Action::Skip,
    ),
    // With -preserveLines CoreNLP starts a new output line here; a caption is one line.
    (r"{NEWLINE}", None, Action::Skip),
    (r"&nbsp;", None, Action::Skip),
    // Untokenizable: deleted (CoreNLP's default "firstDelete").
    (r".", None, Action::Skip),
];

// ---------------------------------------------------------------------------------------------
// A small regular-expression engine with JFlex's semantics, on UTF-16 code units.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Pred {
    Letter,
    Digit,
    Upper,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Class {
    negated: bool,
    ranges: Vec<(u16, u16)>,
    preds: Vec<Pred>,
}

impl Class {
    fn matches(&self, u: u16) -> bool {
        let inside = self.ranges.iter().any(|&(a, b)| a <= u && u <= b)
            || self.preds.iter().any(|&p| pred_matches(p, u));
        inside != self.negated
    }
}

fn as_char(u: u16) -> Option<char> {
    char::from_u32(u32::from(u))
}

/// The BMP characters that are `[:digit:]` in the 3.4.1 lexer (read off the jar likewise).
const DIGITS: &[(u16, u16)] = &[
    (0x30, 0x39),
    (0x660, 0x669),
    (0x6F0, 0x6F9),
    (0x7C0, 0x7C9),
    (0x966, 0x96F),
    (0x9E6, 0x9EF),
    (0xA66, 0xA6F),
    (0xAE6, 0xAEF),
    (0xB66, 0xB6F),
    (0xBE6, 0xBEF),
    (0xC66, 0xC6F),
    (0xCE6, 0xCEF),
    (0xD66, 0xD6F),
    (0xE50, 0xE59),
    (0xED0, 0xED9),
    (0xF20, 0xF29),
    (0x1040, 0x1049),
    (0x1090, 0x1099),
    (0x17E0, 0x17E9),
    (0x1810, 0x1819),
    (0x1946, 0x194F),
    (0x19D0, 0x19D9),
    (0x1A80, 0x1A89),
    (0x1A90, 0x1A99),
    (0x1B50, 0x1B59),
    (0x1BB0, 0x1BB9),
    (0x1C40, 0x1C49),
    (0x1C50, 0x1C59),
    (0xA620, 0xA629),
    (0xA8D0, 0xA8D9),
    (0xA900, 0xA909),
    (0xA9D0, 0xA9D9),
    (0xAA50, 0xAA59),
    (0xABF0, 0xABF9),
    (0xFF10, 0xFF19),
];

/// The BMP characters that are `[:letter:]` in the 3.4.1 lexer (Java's `Character.isLetter` as
/// of the JDK that generated it), read off the jar by probing every code unit.
#[rustfmt::skip]
const LETTERS: &[(u16, u16)] = &[
    (0x0041, 0x005A), (0x0061, 0x007A), (0x00AA, 0x00AA), (0x00B5, 0x00B5), (0x00BA, 0x00BA),
    (0x00C0, 0x00D6), (0x00D8, 0x00F6), (0x00F8, 0x02C1), (0x02C6, 0x02D1), (0x02E0, 0x02E4),
    (0x02EC, 0x02EC), (0x02EE, 0x02EE), (0x0370, 0x0374), (0x0376, 0x0377), (0x037A, 0x037D),
    (0x0386, 0x0386), (0x0388, 0x038A), (0x038C, 0x038C), (0x038E, 0x03A1), (0x03A3, 0x03F5),
    (0x03F7, 0x0481), (0x048A, 0x0527), (0x0531, 0x0556), (0x0559, 0x0559), (0x0561, 0x0587),
    (0x05D0, 0x05EA), (0x05F0, 0x05F2), (0x0620, 0x064A), (0x066E, 0x066F), (0x0671, 0x06D3),
    (0x06D5, 0x06D5), (0x06E5, 0x06E6), (0x06EE, 0x06EF), (0x06FA, 0x06FC), (0x06FF, 0x06FF),
    (0x0710, 0x0710), (0x0712, 0x072F), (0x074D, 0x07A5), (0x07B1, 0x07B1), (0x07CA, 0x07EA),
    (0x07F4, 0x07F5), (0x07FA, 0x07FA), (0x0800, 0x0815), (0x081A, 0x081A), (0x0824, 0x0824),
    (0x0828, 0x0828), (0x0840, 0x0858), (0x08A0, 0x08A0), (0x08A2, 0x08AC), (0x0904, 0x0939),
    (0x093D, 0x093D), (0x0950, 0x0950), (0x0958, 0x0961), (0x0971, 0x0977), (0x0979, 0x097F),
    (0x0985, 0x098C), (0x098F, 0x0990), (0x0993, 0x09A8), (0x09AA, 0x09B0), (0x09B2, 0x09B2),
    (0x09B6, 0x09B9), (0x09BD, 0x09BD), (0x09CE, 0x09CE), (0x09DC, 0x09DD), (0x09DF, 0x09E1),
    (0x09F0, 0x09F1), (0x0A05, 0x0A0A), (0x0A0F, 0x0A10), (0x0A13, 0x0A28), (0x0A2A, 0x0A30),
    (0x0A32, 0x0A33), (0x0A35, 0x0A36), (0x0A38, 0x0A39), (0x0A59, 0x0A5C), (0x0A5E, 0x0A5E),
    (0x0A72, 0x0A74), (0x0A85, 0x0A8D), (0x0A8F, 0x0A91), (0x0A93, 0x0AA8), (0x0AAA, 0x0AB0),
    (0x0AB2, 0x0AB3), (0x0AB5, 0x0AB9), (0x0ABD, 0x0ABD), (0x0AD0, 0x0AD0), (0x0AE0, 0x0AE1),
    (0x0B05, 0x0B0C), (0x0B0F, 0x0B10), (0x0B13, 0x0B28), (0x0B2A, 0x0B30), (0x0B32, 0x0B33),
    (0x0B35, 0x0B39), (0x0B3D, 0x0B3D), (0x0B5C, 0x0B5D), (0x0B5F, 0x0B61), (0x0B71, 0x0B71),
    (0x0B83, 0x0B83), (0x0B85, 0x0B8A), (0x0B8E, 0x0B90), (0x0B92, 0x0B95), (0x0B99, 0x0B9A),
    (0x0B9C, 0x0B9C), (0x0B9E, 0x0B9F), (0x0BA3, 0x0BA4), (0x0BA8, 0x0BAA), (0x0BAE, 0x0BB9),
    (0x0BD0, 0x0BD0), (0x0C05, 0x0C0C), (0x0C0E, 0x0C10), (0x0C12, 0x0C28), (0x0C2A, 0x0C33),
    (0x0C35, 0x0C39), (0x0C3D, 0x0C3D), (0x0C58, 0x0C59), (0x0C60, 0x0C61), (0x0C85, 0x0C8C),
    (0x0C8E, 0x0C90), (0x0C92, 0x0CA8), (0x0CAA, 0x0CB3), (0x0CB5, 0x0CB9), (0x0CBD, 0x0CBD),
    (0x0CDE, 0x0CDE), (0x0CE0, 0x0CE1), (0x0CF1, 0x0CF2), (0x0D05, 0x0D0C), (0x0D0E, 0x0D10),
    (0x0D12, 0x0D3A), (0x0D3D, 0x0D3D), (0x0D4E, 0x0D4E), (0x0D60, 0x0D61), (0x0D7A, 0x0D7F),
    (0x0D85, 0x0D96), (0x0D9A, 0x0DB1), (0x0DB3, 0x0DBB), (0x0DBD, 0x0DBD), (0x0DC0, 0x0DC6),
    (0x0E01, 0x0E30), (0x0E32, 0x0E33), (0x0E40, 0x0E46), (0x0E81, 0x0E82), (0x0E84, 0x0E84),
    (0x0E87, 0x0E88), (0x0E8A, 0x0E8A), (0x0E8D, 0x0E8D), (0x0E94, 0x0E97), (0x0E99, 0x0E9F),
    (0x0EA1, 0x0EA3), (0x0EA5, 0x0EA5), (0x0EA7, 0x0EA7), (0x0EAA, 0x0EAB), (0x0EAD, 0x0EB0),
    (0x0EB2, 0x0EB3), (0x0EBD, 0x0EBD), (0x0EC0, 0x0EC4), (0x0EC6, 0x0EC6), (0x0EDC, 0x0EDF),
    (0x0F00, 0x0F00), (0x0F40, 0x0F47), (0x0F49, 0x0F6C), (0x0F88, 0x0F8C), (0x1000, 0x102A),
    (0x103F, 0x103F), (0x1050, 0x1055), (0x105A, 0x105D), (0x1061, 0x1061), (0x1065, 0x1066),
    (0x106E, 0x1070), (0x1075, 0x1081), (0x108E, 0x108E), (0x10A0, 0x10C5), (0x10C7, 0x10C7),
    (0x10CD, 0x10CD), (0x10D0, 0x10FA), (0x10FC, 0x1248), (0x124A, 0x124D), (0x1250, 0x1256),
    (0x1258, 0x1258), (0x125A, 0x125D), (0x1260, 0x1288), (0x128A, 0x128D), (0x1290, 0x12B0),
    (0x12B2, 0x12B5), (0x12B8, 0x12BE), (0x12C0, 0x12C0), (0x12C2, 0x12C5), (0x12C8, 0x12D6),
    (0x12D8, 0x1310), (0x1312, 0x1315), (0x1318, 0x135A), (0x1380, 0x138F), (0x13A0, 0x13F4),
    (0x1401, 0x166C), (0x166F, 0x167F), (0x1681, 0x169A), (0x16A0, 0x16EA), (0x1700, 0x170C),
    (0x170E, 0x1711), (0x1720, 0x1731), (0x1740, 0x1751), (0x1760, 0x176C), (0x176E, 0x1770),
    (0x1780, 0x17B3), (0x17D7, 0x17D7), (0x17DC, 0x17DC), (0x1820, 0x1877), (0x1880, 0x18A8),
    (0x18AA, 0x18AA), (0x18B0, 0x18F5), (0x1900, 0x191C), (0x1950, 0x196D), (0x1970, 0x1974),
    (0x1980, 0x19AB), (0x19C1, 0x19C7), (0x1A00, 0x1A16), (0x1A20, 0x1A54), (0x1AA7, 0x1AA7),
    (0x1B05, 0x1B33), (0x1B45, 0x1B4B), (0x1B83, 0x1BA0), (0x1BAE, 0x1BAF), (0x1BBA, 0x1BE5),
    (0x1C00, 0x1C23), (0x1C4D, 0x1C4F), (0x1C5A, 0x1C7D), (0x1CE9, 0x1CEC), (0x1CEE, 0x1CF1),
    (0x1CF5, 0x1CF6), (0x1D00, 0x1DBF), (0x1E00, 0x1F15), (0x1F18, 0x1F1D), (0x1F20, 0x1F45),
    (0x1F48, 0x1F4D), (0x1F50, 0x1F57), (0x1F59, 0x1F59), (0x1F5B, 0x1F5B), (0x1F5D, 0x1F5D),
    (0x1F5F, 0x1F7D), (0x1F80, 0x1FB4), (0x1FB6, 0x1FBC), (0x1FBE, 0x1FBE), (0x1FC2, 0x1FC4),
    (0x1FC6, 0x1FCC), (0x1FD0, 0x1FD3), (0x1FD6, 0x1FDB), (0x1FE0, 0x1FEC), (0x1FF2, 0x1FF4),
    (0x1FF6, 0x1FFC), (0x2071, 0x2071), (0x207F, 0x207F), (0x2090, 0x209C), (0x2102, 0x2102),
    (0x2107, 0x2107), (0x210A, 0x2113), (0x2115, 0x2115), (0x2119, 0x211D), (0x2124, 0x2124),
    (0x2126, 0x2126), (0x2128, 0x2128), (0x212A, 0x212D), (0x212F, 0x2139), (0x213C, 0x213F),
    (0x2145, 0x2149), (0x214E, 0x214E), (0x2183, 0x2184), (0x2C00, 0x2C2E), (0x2C30, 0x2C5E),
    (0x2C60, 0x2CE4), (0x2CEB, 0x2CEE), (0x2CF2, 0x2CF3), (0x2D00, 0x2D25), (0x2D27, 0x2D27),
    (0x2D2D, 0x2D2D), (0x2D30, 0x2D67), (0x2D6F, 0x2D6F), (0x2D80, 0x2D96), (0x2DA0, 0x2DA6),
    (0x2DA8, 0x2DAE), (0x2DB0, 0x2DB6), (0x2DB8, 0x2DBE), (0x2DC0, 0x2DC6), (0x2DC8, 0x2DCE),
    (0x2DD0, 0x2DD6), (0x2DD8, 0x2DDE), (0x2E2F, 0x2E2F), (0x3005, 0x3006), (0x3031, 0x3035),
    (0x303B, 0x303C), (0x3041, 0x3096), (0x309D, 0x309F), (0x30A1, 0x30FA), (0x30FC, 0x30FF),
    (0x3105, 0x312D), (0x3131, 0x318E), (0x31A0, 0x31BA), (0x31F0, 0x31FF), (0x3400, 0x4DB5),
    (0x4E00, 0x9FCC), (0xA000, 0xA48C), (0xA4D0, 0xA4FD), (0xA500, 0xA60C), (0xA610, 0xA61F),
    (0xA62A, 0xA62B), (0xA640, 0xA66E), (0xA67F, 0xA697), (0xA6A0, 0xA6E5), (0xA717, 0xA71F),
    (0xA722, 0xA788), (0xA78B, 0xA78E), (0xA790, 0xA793), (0xA7A0, 0xA7AA), (0xA7F8, 0xA801),
    (0xA803, 0xA805), (0xA807, 0xA80A), (0xA80C, 0xA822), (0xA840, 0xA873), (0xA882, 0xA8B3),
    (0xA8F2, 0xA8F7), (0xA8FB, 0xA8FB), (0xA90A, 0xA925), (0xA930, 0xA946), (0xA960, 0xA97C),
    (0xA984, 0xA9B2), (0xA9CF, 0xA9CF), (0xAA00, 0xAA28), (0xAA40, 0xAA42), (0xAA44, 0xAA4B),
    (0xAA60, 0xAA76), (0xAA7A, 0xAA7A), (0xAA80, 0xAAAF), (0xAAB1, 0xAAB1), (0xAAB5, 0xAAB6),
    (0xAAB9, 0xAABD), (0xAAC0, 0xAAC0), (0xAAC2, 0xAAC2), (0xAADB, 0xAADD), (0xAAE0, 0xAAEA),
    (0xAAF2, 0xAAF4), (0xAB01, 0xAB06), (0xAB09, 0xAB0E), (0xAB11, 0xAB16), (0xAB20, 0xAB26),
    (0xAB28, 0xAB2E), (0xABC0, 0xABE2), (0xAC00, 0xD7A3), (0xD7B0, 0xD7C6), (0xD7CB, 0xD7FB),
    (0xF900, 0xFA6D), (0xFA70, 0xFAD9), (0xFB00, 0xFB06), (0xFB13, 0xFB17), (0xFB1D, 0xFB1D),
    (0xFB1F, 0xFB28), (0xFB2A, 0xFB36), (0xFB38, 0xFB3C), (0xFB3E, 0xFB3E), (0xFB40, 0xFB41),
    (0xFB43, 0xFB44), (0xFB46, 0xFBB1), (0xFBD3, 0xFD3D), (0xFD50, 0xFD8F), (0xFD92, 0xFDC7),
    (0xFDF0, 0xFDFB), (0xFE70, 0xFE74), (0xFE76, 0xFEFC), (0xFF21, 0xFF3A), (0xFF41, 0xFF5A),
    (0xFF66, 0xFFBE), (0xFFC2, 0xFFC7), (0xFFCA, 0xFFCF), (0xFFD2, 0xFFD7), (0xFFDA, 0xFFDC),
];

/// Whether `u` lies in one of the sorted, disjoint `ranges`.
fn in_table(ranges: &[(u16, u16)], u: u16) -> bool {
    let i = ranges.partition_point(|&(_, hi)| hi < u);
    ranges.get(i).is_some_and(|&(lo, _)| lo <= u)
}

fn pred_matches(p: Pred, u: u16) -> bool {
    match p {
        Pred::Digit => in_table(DIGITS, u),
        Pred::Letter => in_table(LETTERS, u),
        Pred::Upper => as_char(u).is_some_and(char::is_uppercase),
    }
}

#[derive(Debug, Clone)]
enum Kind {
    /// A literal unit, matched caselessly: either of the two.
    Lit(u16, u16),
    Class(Class),
    /// `.`: anything but `\n`.
    Any,
    Concat(Vec<Node>),
    Alt(Vec<Node>),
    Repeat(Box<Node>, u32, Option<u32>),
}

#[derive(Debug, Clone)]
struct Node {
    kind: Kind,
    /// Whether it matches the empty string.
    nullable: bool,
    /// The ASCII units a match can begin with (bit `u`), to skip hopeless branches quickly.
    first_ascii: u128,
}

impl Node {
    fn new(kind: Kind) -> Node {
        let nullable = match &kind {
            Kind::Lit(..) | Kind::Class(_) | Kind::Any => false,
            Kind::Concat(v) => v.iter().all(|n| n.nullable),
            Kind::Alt(v) => v.iter().any(|n| n.nullable),
            Kind::Repeat(n, min, _) => *min == 0 || n.nullable,
        };
        let mut node = Node {
            kind,
            nullable,
            first_ascii: 0,
        };
        node.first_ascii = (0u16..128)
            .filter(|&u| node.can_start_slow(u))
            .fold(0, |m, u| m | 1 << u);
        node
    }

    /// Whether a match can begin with `u`.
    fn can_start(&self, u: u16) -> bool {
        if u < 128 {
            self.first_ascii & (1 << u) != 0
        } else {
            self.can_start_slow(u)
        }
    }

    fn can_start_slow(&self, u: u16) -> bool {
        match &self.kind {
            Kind::Lit(a, b) => u == *a || u == *b,
            Kind::Class(c) => c.matches(u),
            Kind::Any => u != u16::from(b'\n'),
            Kind::Concat(v) => {
                for n in v {
                    if n.can_start(u) {
                        return true;
                    }
                    if !n.nullable {
                        return false;
                    }
                }
                false
            }
            Kind::Alt(v) => v.iter().any(|n| n.can_start(u)),
            Kind::Repeat(n, _, max) => *max != Some(0) && n.can_start(u),
        }
    }

    /// The set of positions where a match of `self` starting at a position of `from` can end.
    fn ends<S: PosSet>(&self, text: &[u16], from: &S) -> S {
        let step = |ok: &dyn Fn(u16) -> bool| {
            let mut out = S::empty(text.len());
            from.for_each(|p| {
                if p < text.len() && ok(text[p]) {
                    out.insert(p + 1);
                }
            });
            out
        };
        match &self.kind {
            Kind::Lit(a, b) => return step(&|u| u == *a || u == *b),
            Kind::Class(c) => return step(&|u| c.matches(u)),
            Kind::Any => return step(&|u| u != u16::from(b'\n')),
            _ => {}
        }
        if !self.nullable {
            let mut hopeful = false;
            from.for_each(|p| hopeful |= p < text.len() && self.can_start(text[p]));
            if !hopeful {
                return S::empty(text.len());
            }
        }
        match &self.kind {
            Kind::Lit(..) | Kind::Class(_) | Kind::Any => unreachable!(),
            Kind::Concat(v) => {
                let mut cur = from.clone();
                for n in v {
                    if cur.is_empty() {
                        break;
                    }
                    cur = n.ends(text, &cur);
                }
                cur
            }
            Kind::Alt(v) => {
                let mut out = S::empty(text.len());
                for n in v {
                    out.union_with(&n.ends(text, from));
                }
                out
            }
            Kind::Repeat(n, min, max) => {
                let mut cur = from.clone();
                for _ in 0..*min {
                    if cur.is_empty() {
                        return cur;
                    }
                    cur = n.ends(text, &cur);
                }
                let mut all = cur.clone();
                let mut count = *min;
                // A position reached again after more repetitions adds nothing new.
                while !cur.is_empty() && max.is_none_or(|m| count < m) {
                    let mut next = n.ends(text, &cur);
                    next.remove_all(&all);
                    all.union_with(&next);
                    cur = next;
                    count += 1;
                }
                all
            }
        }
    }
}

/// A set of positions `0..=len` in a text.
trait PosSet: Clone {
    fn empty(len: usize) -> Self;
    fn insert(&mut self, p: usize);
    fn is_empty(&self) -> bool;
    fn union_with(&mut self, other: &Self);
    fn remove_all(&mut self, other: &Self);
    fn for_each(&self, f: impl FnMut(usize));
    fn max(&self) -> Option<usize>;

    fn single(len: usize, p: usize) -> Self {
        let mut s = Self::empty(len);
        s.insert(p);
        s
    }
}

/// For texts shorter than 128 units (nearly every caption): no allocation.
impl PosSet for u128 {
    fn empty(len: usize) -> Self {
        debug_assert!(len < 128);
        0
    }

    fn insert(&mut self, p: usize) {
        *self |= 1 << p;
    }

    fn is_empty(&self) -> bool {
        *self == 0
    }

    fn union_with(&mut self, other: &Self) {
        *self |= other;
    }

    fn remove_all(&mut self, other: &Self) {
        *self &= !other;
    }

    fn for_each(&self, mut f: impl FnMut(usize)) {
        let mut w = *self;
        while w != 0 {
            f(w.trailing_zeros() as usize);
            w &= w - 1;
        }
    }

    fn max(&self) -> Option<usize> {
        (*self != 0).then(|| 127 - self.leading_zeros() as usize)
    }
}

/// For longer texts.
#[derive(Debug, Clone)]
struct BigSet(Vec<u64>);

impl PosSet for BigSet {
    fn empty(len: usize) -> Self {
        BigSet(vec![0; len / 64 + 1])
    }

    fn insert(&mut self, p: usize) {
        self.0[p / 64] |= 1 << (p % 64);
    }

    fn is_empty(&self) -> bool {
        self.0.iter().all(|&w| w == 0)
    }

    fn union_with(&mut self, other: &Self) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a |= b;
        }
    }

    fn remove_all(&mut self, other: &Self) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a &= !b;
        }
    }

    fn for_each(&self, mut f: impl FnMut(usize)) {
        for (i, &word) in self.0.iter().enumerate() {
            let mut w = word;
            while w != 0 {
                f(i * 64 + w.trailing_zeros() as usize);
                w &= w - 1;
            }
        }
    }

    fn max(&self) -> Option<usize> {
        self.0
            .iter()
            .enumerate()
            .rev()
            .find(|(_, &w)| w != 0)
            .map(|(i, &w)| i * 64 + 63 - w.leading_zeros() as usize)
    }
}

struct Rule {
    main: Node,
    trail: Option<Node>,
    action: Action,
}

struct Lexer {
    rules: Vec<Rule>,
    nfa: Nfa,
}

fn lexer() -> &'static Lexer {
    static LEXER: OnceLock<Lexer> = OnceLock::new();
    LEXER.get_or_init(Lexer::new)
}

thread_local! {
    /// Each thread's lazily built DFA over [`Lexer::nfa`].
    static DFA: RefCell<Option<Dfa>> = const { RefCell::new(None) };
}

impl Lexer {
    fn new() -> Self {
        let mut macros: HashMap<&str, Node> = HashMap::new();
        for (name, pattern) in MACROS {
            let node = Parser::parse(pattern, &macros);
            macros.insert(name, node);
        }
        let rules: Vec<Rule> = RULES
            .iter()
            .map(|(main, trail, action)| Rule {
                main: Parser::parse(main, &macros),
                trail: trail.map(|t| Parser::parse(t, &macros)),
                action: *action,
            })
            .collect();
        let nfa = Nfa::build(&rules);
        Self { rules, nfa }
    }

    /// JFlex's choice at `pos`: the rule with the longest match (trailing context included),
    /// the first such rule on a tie; returns it and where its text (`r1`) ends.
    fn longest_match(&self, text: &[u16], pos: usize) -> (usize, usize) {
        let (rule, total) = DFA.with(|cell| {
            let mut cell = cell.borrow_mut();
            let dfa = cell.get_or_insert_with(|| Dfa::new(&self.nfa));
            dfa.longest_match(&self.nfa, &text[pos..])
        });
        let Some(trail) = &self.rules[rule].trail else {
            return (rule, pos + total);
        };
        // Where the rule's own text ends: JFlex gives the longest `r1` whose trailing context
        // reaches the end of the match. No rule looks behind, so the rest of the text will do.
        let rest = &text[pos..];
        let main = &self.rules[rule].main;
        let r1_end = if rest.len() < 128 {
            r1_end_in::<u128>(main, trail, rest, total)
        } else {
            r1_end_in::<BigSet>(main, trail, rest, total)
        };
        (rule, pos + r1_end)
    }

    /// [`Lexer::longest_match`] the slow way, rule by rule with position sets (to check the
    /// DFA against).
    #[cfg(test)]
    fn longest_match_by_sets(&self, text: &[u16], pos: usize) -> (usize, usize) {
        let text = &text[pos..];
        let start = BigSet::single(text.len(), 0);
        let mut best: Option<(usize, usize, usize)> = None; // (total end, rule, r1 end)
        for (i, rule) in self.rules.iter().enumerate() {
            let ends = rule.main.ends(text, &start);
            let mut found: Option<(usize, usize)> = None;
            match &rule.trail {
                None => found = ends.max().filter(|&e| e > 0).map(|e| (e, e)),
                Some(trail) => ends.for_each(|e| {
                    if e > 0 {
                        if let Some(t) = trail.ends(text, &BigSet::single(text.len(), e)).max() {
                            found = found.max(Some((t, e)));
                        }
                    }
                }),
            }
            if let Some((total, r1_end)) = found {
                if best.is_none_or(|(b, _, _)| total > b) {
                    best = Some((total, i, r1_end));
                }
            }
        }
        let (_, rule, r1_end) = best.expect("the catch-all rules match any unit");
        (rule, pos + r1_end)
    }
}

/// The longest `r1` (a match of `main` from 0) after which `trail` matches up to `total`.
fn r1_end_in<S: PosSet>(main: &Node, trail: &Node, text: &[u16], total: usize) -> usize {
    let mut best = 0;
    main.ends(text, &S::single(text.len(), 0)).for_each(|e| {
        if e > 0 && trail.ends(text, &S::single(text.len(), e)).max() == Some(total) {
            best = best.max(e);
        }
    });
    assert!(best > 0, "the DFA and the rule disagree");
    best
}

/// What one NFA transition tests a unit with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Matcher {
    Lit(u16, u16),
    Class(Class),
    Any,
}

impl Matcher {
    fn matches(&self, u: u16) -> bool {
        match self {
            Matcher::Lit(a, b) => u == *a || u == *b,
            Matcher::Class(c) => c.matches(u),
            Matcher::Any => u != u16::from(b'\n'),
        }
    }
}

enum NState {
    /// Consume a unit that the matcher accepts, then go on.
    Unit(u32, u32),
    /// Go on to any of these without consuming.
    Split(Vec<u32>),
    /// A match of the rule (its `r1` and trailing context) ends here.
    Accept(u32),
}

/// All the rules as one Thompson NFA, each rule's `r1 r2` ending in its own accept state.
struct Nfa {
    states: Vec<NState>,
    matchers: Vec<Matcher>,
    start: u32,
}

impl Nfa {
    fn build(rules: &[Rule]) -> Nfa {
        let mut nfa = Nfa {
            states: Vec::new(),
            matchers: Vec::new(),
            start: 0,
        };
        let mut matcher_ids = HashMap::new();
        let mut entries = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            let accept = nfa.push(NState::Accept(i as u32));
            let after_main = match &rule.trail {
                Some(trail) => nfa.compile(trail, accept, &mut matcher_ids),
                None => accept,
            };
            entries.push(nfa.compile(&rule.main, after_main, &mut matcher_ids));
        }
        nfa.start = nfa.push(NState::Split(entries));
        nfa
    }

    fn push(&mut self, state: NState) -> u32 {
        self.states.push(state);
        (self.states.len() - 1) as u32
    }

    /// Adds states matching `node` then going on to `next`; returns the entry state.
    fn compile(&mut self, node: &Node, next: u32, ids: &mut HashMap<Matcher, u32>) -> u32 {
        let mut unit = |nfa: &mut Nfa, m: Matcher| {
            let id = *ids.entry(m.clone()).or_insert_with(|| {
                nfa.matchers.push(m);
                (nfa.matchers.len() - 1) as u32
            });
            nfa.push(NState::Unit(id, next))
        };
        match &node.kind {
            Kind::Lit(a, b) => unit(self, Matcher::Lit(*a, *b)),
            Kind::Class(c) => unit(self, Matcher::Class(c.clone())),
            Kind::Any => unit(self, Matcher::Any),
            Kind::Concat(items) => {
                let mut entry = next;
                for item in items.iter().rev() {
                    entry = self.compile(item, entry, ids);
                }
                entry
            }
            Kind::Alt(alts) => {
                let entries = alts.iter().map(|a| self.compile(a, next, ids)).collect();
                self.push(NState::Split(entries))
            }
            Kind::Repeat(body, min, max) => {
                let mut entry = match max {
                    None => {
                        let lp = self.push(NState::Split(Vec::new()));
                        let b = self.compile(body, lp, ids);
                        self.states[lp as usize] = NState::Split(vec![b, next]);
                        lp
                    }
                    Some(max) => {
                        let mut entry = next;
                        for _ in *min..*max {
                            let b = self.compile(body, entry, ids);
                            entry = self.push(NState::Split(vec![b, next]));
                        }
                        entry
                    }
                };
                for _ in 0..*min {
                    entry = self.compile(body, entry, ids);
                }
                entry
            }
        }
    }

    /// The unit-consuming and accept states reachable from `seeds` without consuming.
    fn closure(&self, seeds: &[u32]) -> Vec<u32> {
        let mut seen = HashSet::new();
        let mut stack: Vec<u32> = seeds.to_vec();
        let mut out = Vec::new();
        while let Some(s) = stack.pop() {
            if !seen.insert(s) {
                continue;
            }
            match &self.states[s as usize] {
                NState::Split(outs) => stack.extend(outs),
                _ => out.push(s),
            }
        }
        out.sort_unstable();
        out
    }
}

const UNKNOWN: u32 = u32::MAX;
const DEAD: u32 = u32::MAX - 1;

struct DState {
    nfa_states: Vec<u32>,
    /// The first rule accepting here, if any.
    accept: Option<u32>,
    /// Next state by unit class ([`UNKNOWN`] until computed).
    next: Vec<u32>,
}

/// A DFA built lazily from the [`Nfa`] (subset construction on demand), over classes of units
/// that every matcher treats alike.
struct Dfa {
    unit_class: Vec<u32>,
    class_ids: HashMap<Vec<u64>, u32>,
    class_unit: Vec<u16>,
    state_ids: HashMap<Vec<u32>, u32>,
    states: Vec<DState>,
}

impl Dfa {
    /// A bound on the states kept; past it the DFA starts afresh.
    const MAX_STATES: usize = 20_000;

    fn new(nfa: &Nfa) -> Dfa {
        let mut dfa = Dfa {
            unit_class: vec![UNKNOWN; 1 << 16],
            class_ids: HashMap::new(),
            class_unit: Vec::new(),
            state_ids: HashMap::new(),
            states: Vec::new(),
        };
        dfa.state(nfa, nfa.closure(&[nfa.start]));
        dfa
    }

    fn class(&mut self, nfa: &Nfa, u: u16) -> u32 {
        let c = self.unit_class[usize::from(u)];
        if c != UNKNOWN {
            return c;
        }
        let mut signature = vec![0u64; nfa.matchers.len().div_ceil(64)];
        for (i, m) in nfa.matchers.iter().enumerate() {
            if m.matches(u) {
                signature[i / 64] |= 1 << (i % 64);
            }
        }
        let next_id = self.class_unit.len() as u32;
        let c = *self.class_ids.entry(signature).or_insert(next_id);
        if c == next_id {
            self.class_unit.push(u);
        }
        self.unit_class[usize::from(u)] = c;
        c
    }

    fn state(&mut self, nfa: &Nfa, nfa_states: Vec<u32>) -> u32 {
        if nfa_states.is_empty() {
            return DEAD;
        }
        if let Some(&id) = self.state_ids.get(&nfa_states) {
            return id;
        }
        let accept = nfa_states
            .iter()
            .filter_map(|&s| match nfa.states[s as usize] {
                NState::Accept(rule) => Some(rule),
                _ => None,
            })
            .min();
        let id = self.states.len() as u32;
        self.state_ids.insert(nfa_states.clone(), id);
        self.states.push(DState {
            nfa_states,
            accept,
            next: Vec::new(),
        });
        id
    }

    fn step(&mut self, nfa: &Nfa, state: u32, class: u32) -> u32 {
        let (s, c) = (state as usize, class as usize);
        if let Some(&next) = self.states[s].next.get(c) {
            if next != UNKNOWN {
                return next;
            }
        }
        let u = self.class_unit[c];
        let seeds: Vec<u32> = self.states[s]
            .nfa_states
            .iter()
            .filter_map(|&n| match &nfa.states[n as usize] {
                NState::Unit(m, next) if nfa.matchers[*m as usize].matches(u) => Some(*next),
                _ => None,
            })
            .collect();
        let next = self.state(nfa, nfa.closure(&seeds));
        let row = &mut self.states[s].next;
        if row.len() <= c {
            row.resize(c + 1, UNKNOWN);
        }
        row[c] = next;
        next
    }

    /// The longest match of any rule at the start of `text` and the first rule giving it:
    /// `(rule, length)`, the length including trailing context.
    fn longest_match(&mut self, nfa: &Nfa, text: &[u16]) -> (usize, usize) {
        if self.states.len() > Self::MAX_STATES {
            *self = Dfa::new(nfa);
        }
        let mut state = 0;
        let mut best = None;
        for (i, &u) in text.iter().enumerate() {
            let class = self.class(nfa, u);
            state = self.step(nfa, state, class);
            if state == DEAD {
                break;
            }
            if let Some(rule) = self.states[state as usize].accept {
                best = Some((rule as usize, i + 1));
            }
        }
        // The last rule, `.`, takes any unit but `\n`, and NEWLINE takes `\n`.
        best.expect("the catch-all rules match any unit")
    }
}

/// Parser for the JFlex regular expressions above (`%caseless`: letters outside classes match
/// either case).
struct Parser<'a> {
    chars: Vec<char>,
    pos: usize,
    macros: &'a HashMap<&'a str, Node>,
}

impl<'a> Parser<'a> {
    fn parse(pattern: &str, macros: &'a HashMap<&'a str, Node>) -> Node {
        let mut p = Parser {
            chars: pattern.chars().collect(),
            pos: 0,
            macros,
        };
        let node = p.alt();
        assert!(
            p.pos == p.chars.len(),
            "bad pattern {pattern:?} at {}",
            p.pos
        );
        node
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn bump(&mut self) -> char {
        let c = self.chars[self.pos];
        self.pos += 1;
        c
    }

    fn alt(&mut self) -> Node {
        let mut alts = vec![self.concat()];
        while self.peek() == Some('|') {
            self.pos += 1;
            alts.push(self.concat());
        }
        if alts.len() == 1 {
            alts.pop().unwrap()
        } else {
            Node::new(Kind::Alt(alts))
        }
    }

    fn concat(&mut self) -> Node {
        let mut items = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            let atom = self.atom();
            items.push(self.postfix(atom));
        }
        if items.len() == 1 {
            items.pop().unwrap()
        } else {
            Node::new(Kind::Concat(items))
        }
    }

    fn postfix(&mut self, mut atom: Node) -> Node {
        loop {
            match self.peek() {
                Some('*') => {
                    self.pos += 1;
                    atom = Node::new(Kind::Repeat(Box::new(atom), 0, None));
                }
                Some('+') => {
                    self.pos += 1;
                    atom = Node::new(Kind::Repeat(Box::new(atom), 1, None));
                }
                Some('?') => {
                    self.pos += 1;
                    atom = Node::new(Kind::Repeat(Box::new(atom), 0, Some(1)));
                }
                Some('{')
                    if self
                        .chars
                        .get(self.pos + 1)
                        .is_some_and(|c| c.is_ascii_digit()) =>
                {
                    self.pos += 1;
                    let min = self.number();
                    let max = if self.peek() == Some(',') {
                        self.pos += 1;
                        Some(self.number())
                    } else {
                        Some(min)
                    };
                    assert_eq!(self.bump(), '}');
                    atom = Node::new(Kind::Repeat(Box::new(atom), min, max));
                }
                _ => return atom,
            }
        }
    }

    fn number(&mut self) -> u32 {
        let mut n = 0;
        while let Some(d) = self.peek().and_then(|c| c.to_digit(10)) {
            n = n * 10 + d;
            self.pos += 1;
        }
        n
    }

    fn atom(&mut self) -> Node {
        match self.bump() {
            '(' => {
                let inner = self.alt();
                assert_eq!(self.bump(), ')');
                inner
            }
            '[' => Node::new(Kind::Class(self.class())),
            '.' => Node::new(Kind::Any),
            '{' => {
                let start = self.pos;
                while self.peek() != Some('}') {
                    self.pos += 1;
                }
                let name: String = self.chars[start..self.pos].iter().collect();
                self.pos += 1;
                self.macros
                    .get(name.as_str())
                    .unwrap_or_else(|| panic!("unknown macro {name}"))
                    .clone()
            }
            '\\' => caseless(self.escape()),
            c => caseless(c as u16),
        }
    }

    fn escape(&mut self) -> u16 {
        match self.bump() {
            'u' => self.hex(4),
            'x' => self.hex(2),
            't' => u16::from(b'\t'),
            'n' => u16::from(b'\n'),
            'r' => u16::from(b'\r'),
            'f' => 0x0C,
            '0' => 0,
            c => c as u16,
        }
    }

    fn hex(&mut self, digits: usize) -> u16 {
        let s: String = self.chars[self.pos..self.pos + digits].iter().collect();
        self.pos += digits;
        u16::from_str_radix(&s, 16).unwrap()
    }

    fn class_char(&mut self) -> u16 {
        match self.bump() {
            '\\' => self.escape(),
            c => c as u16,
        }
    }

    fn class(&mut self) -> Class {
        let mut class = Class {
            negated: false,
            ranges: Vec::new(),
            preds: Vec::new(),
        };
        let rest: String = self.chars[self.pos..].iter().take(12).collect();
        for (name, pred) in [
            (":letter:]", Pred::Letter),
            (":digit:]", Pred::Digit),
            (":uppercase:]", Pred::Upper),
        ] {
            // A predefined class on its own: `[:letter:]`, `[:digit:]`, `[:uppercase:]`.
            if rest.starts_with(name) {
                class.preds.push(pred);
                self.pos += name.len();
                return class;
            }
        }
        if self.peek() == Some('^') {
            self.pos += 1;
            class.negated = true;
        }
        while self.peek() != Some(']') {
            let lo = self.class_char();
            if self.peek() == Some('-') && self.chars.get(self.pos + 1) != Some(&']') {
                self.pos += 1;
                let hi = self.class_char();
                class.ranges.push((lo, hi));
            } else {
                class.ranges.push((lo, lo));
            }
        }
        self.pos += 1;
        class
    }
}

/// A literal pattern character under `%caseless`.
fn caseless(u: u16) -> Node {
    match as_char(u) {
        Some(c) if c.is_ascii_alphabetic() => Node::new(Kind::Lit(
            c.to_ascii_lowercase() as u16,
            c.to_ascii_uppercase() as u16,
        )),
        _ => Node::new(Kind::Lit(u, u)),
    }
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
    fn lexer_keeps_corenlp_token_forms() {
        assert_eq!(
            lex("\"Hi\" (x) ... -- etc. The"),
            ["``", "Hi", "''", "-LRB-", "x", "-RRB-", "...", "--", "etc.", ".", "The"]
        );
        assert_eq!(lex("U.S. The"), ["U.S.", ".", "The"]);
        assert_eq!(lex("1 1/2 cups"), ["1\u{a0}1/2", "cups"]);
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
        assert_eq!(detokenize(&["can", "not", "'s"]), "cannot 's");
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

    #[test]
    fn dfa_agrees_with_rule_by_rule_matching() {
        let lexer = lexer();
        let long = "x".repeat(150) + " http://example.com/" + &"a/".repeat(70) + " end.";
        let texts = [
            "A dog's ball, isn't it?! \"Quoted\" (x) [y] {z} etc. The U.S. The I. A",
            "don't won't 'tis y'all o'clock rock 'n' roll '90s mr. smith e.g. 1 1/2 3.5 ...",
            "AT&T at&amp;t $5 \u{a3}3 50% #tag @user a*b and/or 12/25/2014 555-1234 :) --- \u{1f600}",
            "caf\u{e9} \u{6771}\u{4eac} \u{2160}x \u{a0}\u{2026} figs. 3 pty. ltd <b> x@y.com",
            long.as_str(),
        ];
        for text in texts {
            let mut units: Vec<u16> = text.encode_utf16().collect();
            units.push(u16::from(b'\n'));
            for pos in 0..units.len() {
                assert_eq!(
                    lexer.longest_match(&units, pos),
                    lexer.longest_match_by_sets(&units, pos),
                    "{text:?} at {pos}"
                );
            }
        }
    }
}
