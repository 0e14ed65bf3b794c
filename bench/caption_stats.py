#!/usr/bin/env python3
"""Mean length, distinct captions, and cut or repeating captions, per results file.

Usage: python3 bench/caption_stats.py [--data-dir DIR] RESULTS.json [RESULTS.json ...]
(the files of `eval model --results-out`; `--data-dir` is a Flickr8k folder, whose training
captions tell which endings are cut).

A caption is counted as
- *ending on a function word* when its last word is an article, preposition or conjunction
  (the list below);
- *cut* when it ends on a function word, or (with `--data-dir`) on two words that end none
  of the training captions though they appear in at least 5 of them: "on a dirt", "in a red",
  where a human caption goes on ("a dirt bike", "a red shirt");
- *repeating* when a two-word phrase whose second word is not a function word comes twice:
  "a woman and a woman", "a dog runs ... a dog".
With `--data-dir` the same counts are given for the dev split's human captions (the first of
each photo), for scale.
"""
import argparse
import collections
import json
import os
import re

FUNCTION_WORDS = set(
    "a an the this that his its their some and at for from in into of to with while is are on".split()
)


def words(caption):
    return re.findall(r"[a-z0-9]+(?:'[a-z]+)?", caption.lower())


def training_endings(data_dir):
    """(bigrams that end a training caption, bigram counts in the training captions)."""
    text = os.path.join(data_dir, "Flickr8k_text")
    train = set(open(os.path.join(text, "Flickr_8k.trainImages.txt")).read().split())
    endings, seen = set(), collections.Counter()
    dev_refs = {}
    dev = set(open(os.path.join(text, "Flickr_8k.devImages.txt")).read().split())
    for line in open(os.path.join(text, "Flickr8k.token.txt")):
        if "\t" not in line:
            continue
        key, caption = line.rstrip("\n").split("\t", 1)
        image = key.split("#")[0]
        w = words(caption)
        if image in train and len(w) >= 2:
            endings.add(tuple(w[-2:]))
            seen.update(set(zip(w, w[1:])))
        if image in dev and image not in dev_refs:
            dev_refs[image] = w
    return endings, seen, dev_refs


def is_cut(w, endings, seen):
    if w and w[-1] in FUNCTION_WORDS:
        return True
    if endings is None or len(w) < 2:
        return False
    last = tuple(w[-2:])
    return last not in endings and seen[last] >= 5


def repeats(w):
    bigrams = [b for b in zip(w, w[1:]) if b[1] not in FUNCTION_WORDS]
    return len(bigrams) != len(set(bigrams))


def stats(name, captions, endings, seen, show):
    n = max(1, len(captions))
    mean = sum(map(len, captions)) / n
    distinct = len(set(map(tuple, captions)))
    function = sum(1 for c in captions if c and c[-1] in FUNCTION_WORDS)
    cut = [c for c in captions if is_cut(c, endings, seen)]
    rep = [c for c in captions if repeats(c)]
    print(f"{name}: {len(captions)} captions, mean words {mean:.2f}, distinct {distinct}, "
          f"ending on a function word {function}, cut {len(cut)}, repeating {len(rep)}")
    for label, found in (("cut", cut), ("repeating", rep)):
        for c in found[:show]:
            print(f"    {label}: {' '.join(c)}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("results", nargs="+")
    parser.add_argument("--data-dir", help="Flickr8k folder: its training captions tell cut endings")
    parser.add_argument("--show", type=int, default=0, help="cut and repeating captions printed per file")
    args = parser.parse_args()
    endings = seen = None
    if args.data_dir:
        endings, seen, dev_refs = training_endings(args.data_dir)
        stats("dev human captions (the first of each photo)", list(dev_refs.values()), endings, seen, 0)
    for path in args.results:
        captions = [words(r["caption"]) for r in json.load(open(path))]
        stats(path, captions, endings, seen, args.show)


if __name__ == "__main__":
    main()
