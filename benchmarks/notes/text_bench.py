"""Runs the text section of the benchmark in one process (one TensorFlow import).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/notes/text_bench.py --seeds 0 1 \
        --runs supervised pi te mt mixup ceiling

`--flags` appends estimator flags to the protocol's (the last occurrence of a flag wins),
e.g. `--flags "--validation-size 1500 --token-dropout 0.3"` for a tuning run on held-out
training texts (benchmarks/notes/text.md).
"""

import argparse
import os
import shlex
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "estimators"))

import text_classification  # noqa: E402

# The protocol of benchmarks/notes/text.md: every method sees 64 labeled texts per step (the
# semi-supervised ones with 64 unlabeled texts), for the same number of steps.
COMMON = (
    "--train-size 3000 --test-size 1500 --epochs 4 --ramp-up-epochs 1 --num-buckets 16384 "
    "--embedding-dim 32 --batch-size 128 --labeled-per-batch 64 --supervised-batch-size 64 "
    "--max-unsupervised-weight 10 --verbose 0"
).split()
METHODS = (
    "supervised", "pi", "te", "mt", "mixup", "pseudo", "fixmatch", "vat", "fgm", "distill",
    "mutual", "reloop",
)
RUNS = {method: (method, "200", []) for method in METHODS}
# The ceiling is the supervised run with every training label, 4 epochs of 24 batches of 128.
RUNS["ceiling"] = ("supervised", "-1", ["--supervised-batch-size", "128"])

def run_all(seeds, runs, flags_text, tag=""):
    """Runs `runs` for each seed with the protocol's flags and `flags_text` appended, printing
    one `RESULT` line per run (`tag` is written before the flags, e.g. the setting of a
    variant script); `text_paired.py` reads these lines."""
    extra = shlex.split(flags_text)
    for seed in seeds:
        for name in runs:
            method, labels, own = RUNS[name]
            argv = ["--method", method, "--labels", labels, "--seed", seed, *COMMON, *own, *extra]
            start = time.time()
            accuracy = text_classification.run(text_classification.build_parser().parse_args(argv))
            print(f"RESULT seed={seed} run={name} {tag + ' ' if tag else ''}flags={flags_text!r} "
                  f"accuracy={accuracy:.4f} seconds={time.time() - start:.0f}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", nargs="+", default=["0", "1"])
    parser.add_argument("--runs", nargs="+", choices=sorted(RUNS), default=list(RUNS))
    parser.add_argument("--flags", default="", help="estimator flags appended to the protocol's")
    flags = parser.parse_args()
    run_all(flags.seeds, flags.runs, flags.flags)
