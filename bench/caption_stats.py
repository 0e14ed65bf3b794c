#!/usr/bin/env python3
"""Mean length, distinct captions and captions ending on a function word, per results file.

Usage: python3 bench/caption_stats.py RESULTS.json [RESULTS.json ...]
(the files of `eval model --results-out`).
"""
import json
import sys

FUNCTION_WORDS = set(
    "a an the this that his its their some and at for from in into of to with while is are on".split()
)

for path in sys.argv[1:]:
    captions = [r["caption"].split() for r in json.load(open(path))]
    words = sum(map(len, captions)) / max(1, len(captions))
    distinct = len(set(map(tuple, captions)))
    ending = sum(1 for c in captions if c and c[-1] in FUNCTION_WORDS)
    print(f"{path}: {len(captions)} captions, mean words {words:.2f}, distinct {distinct}, "
          f"ending on a function word {ending}")
