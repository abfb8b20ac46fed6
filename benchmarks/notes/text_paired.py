"""Paired differences to supervised-only from the RESULT lines of the text note's scripts.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/notes/text_paired.py test_base.log ...

Each RESULT line (`text_bench.py`, `text_warmup.py`, `text_tfidf.py`) is one run. Runs are
grouped by setting (the line without its seed, accuracy and time); within a setting each
method is compared seed by seed with `supervised` of the same setting, or of the setting
`--reference` names (a substring of it), with the Student-t interval of
`estimators/benchmarking/stats.py` (`mean d ± t_{0.975, n-1} std(d) / sqrt(n)`).
`--baseline SUBSTRING` then also compares each method with the same method of that setting
(e.g. pretrained against random embeddings).
"""

import argparse
import collections
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "estimators"))

from benchmarking import stats  # noqa: E402

LINE = re.compile(r"RESULT seed=(\d+) run=(\S+) (.*?)accuracy=([0-9.]+)")

parser = argparse.ArgumentParser()
parser.add_argument("logs", nargs="+")
parser.add_argument("--reference", help="setting whose supervised runs every method is paired with")
parser.add_argument("--baseline", help="setting whose runs of the same method each is paired with")
flags = parser.parse_args()
results = collections.defaultdict(dict)  # (setting, run) -> {seed: accuracy}
for path in flags.logs:
    with open(path, encoding="utf-8") as f:
        for match in LINE.finditer(f.read()):
            seed, run, setting, accuracy = match.groups()
            results[(setting.strip(), run)][int(seed)] = float(accuracy)
settings = sorted({setting for setting, _ in results})
for setting in settings:
    reference = setting
    if flags.reference:
        reference = next(s for s in settings if flags.reference in s)
    print(f"## {setting} (paired with supervised of: {reference})")
    supervised = results.get((reference, "supervised"), {})
    for (other, run), accuracies in sorted(results.items()):
        if other != setting:
            continue
        seeds = sorted(accuracies)
        row = " / ".join(f"{accuracies[s]:.4f}" for s in seeds)
        mean = sum(accuracies.values()) / len(accuracies)
        line = f"{run:12s} seeds {seeds}: {row}  mean {mean:.4f}"
        if supervised and set(accuracies) & set(supervised) and (run != "supervised" or
                                                                  reference != setting):
            paired = stats.paired_difference(accuracies, supervised)
            points = " / ".join(f"{100 * d:+.1f}" for d in paired.differences)
            line += (f"  vs supervised: {points} points, mean {100 * paired.mean:+.2f} "
                     f"[{100 * paired.low:+.2f}, {100 * paired.high:+.2f}] {paired.verdict}")
        print(line)
        if flags.baseline:
            base = next(s for s in settings if flags.baseline in s)
            same = results.get((base, run), {})
            if base != setting and set(accuracies) & set(same):
                paired = stats.paired_difference(accuracies, same)
                points = " / ".join(f"{100 * d:+.1f}" for d in paired.differences)
                print(f"{'':12s} vs {run} of {base}: {points} points, mean "
                      f"{100 * paired.mean:+.2f} [{100 * paired.low:+.2f}, "
                      f"{100 * paired.high:+.2f}] {paired.verdict}")
