"""Temporal Ensembling on the main protocol under a dtype policy and an ensemble storage dtype.

The main protocol of `estimators/measure.py` (first 20,000 rows, 1000 labels, mlp 500-250,
50 + 50 rows a batch, Adam 1e-3, 15 epochs of 380 steps); `--epochs` shortens it for a step
time comparison. Prints one JSON line per run: test accuracy, wall seconds of `fit`, and CPU
seconds of the process (all its threads) for building, `fit` and the test predictions (the
machine is shared, so wall time alone says little).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/notes/mixed_precision_bench.py \
        --policies float32 mixed_float16 mixed_bfloat16 --state-dtypes float32 --epochs 1
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "estimators"))

import keras  # noqa: E402

import measure  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--policies", nargs="+", default=["float32"])
parser.add_argument("--state-dtypes", nargs="+", default=["float32"])
parser.add_argument("--seeds", nargs="+", type=int, default=[0])
parser.add_argument("--epochs", type=int, default=measure.DEFAULTS["epochs"])
flags = parser.parse_args()
for seed in flags.seeds:
    train, evaluation = measure.load_rows(seed=seed)
    for policy in flags.policies:
        for state_dtype in flags.state_dtypes:
            keras.mixed_precision.set_dtype_policy(policy)
            params = dict(measure.DEFAULTS, te_state_dtype=state_dtype, epochs=flags.epochs)
            cpu = time.process_time()
            accuracy, seconds, _ = measure.train_and_evaluate(
                "temporal_ensembling", *train, evaluation, params, seed
            )
            record = {
                "seed": seed, "policy": policy, "state_dtype": state_dtype,
                "epochs": flags.epochs, "accuracy": accuracy, "seconds": round(seconds, 1),
                "cpu_seconds": round(time.process_time() - cpu, 1),
            }
            print(json.dumps(record), flush=True)
