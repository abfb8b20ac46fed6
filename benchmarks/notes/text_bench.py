"""Runs the text section of the benchmark in one process (one TensorFlow import).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/notes/text_bench.py --seeds 0 1 \
        --runs supervised pi te mt ceiling
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "estimators"))

import text_classification  # noqa: E402

COMMON = (
    "--train-size 3000 --test-size 1500 --epochs 4 --ramp-up-epochs 1 --num-buckets 16384 "
    "--embedding-dim 32 --batch-size 128 --labeled-per-batch 32 --max-unsupervised-weight 10 "
    "--verbose 0"
).split()
# The ceiling is the supervised run with every training label.
RUNS = {method: (method, "200") for method in ("supervised", "pi", "te", "mt")}
RUNS["ceiling"] = ("supervised", "-1")

parser = argparse.ArgumentParser()
parser.add_argument("--seeds", nargs="+", default=["0", "1"])
parser.add_argument("--runs", nargs="+", choices=sorted(RUNS), default=list(RUNS))
flags = parser.parse_args()
for seed in flags.seeds:
    for method, labels in (RUNS[name] for name in flags.runs):
        argv = ["--method", method, "--labels", labels, "--seed", seed, *COMMON]
        start = time.time()
        accuracy = text_classification.run(text_classification.build_parser().parse_args(argv))
        print(f"RESULT seed={seed} method={method} labels={labels} accuracy={accuracy:.4f} "
              f"seconds={time.time() - start:.0f}", flush=True)
