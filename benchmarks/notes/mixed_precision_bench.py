"""Temporal Ensembling on the main protocol under dtype policies and ensemble storage dtypes.

The main protocol of `estimators/measure.py` (first 20,000 rows, 1000 labels, mlp 500-250,
50 + 50 rows a batch, Adam 1e-3, 15 epochs of 380 steps).

- Without `--steps`: one full run per policy, storage dtype and seed; one JSON line each with
  the test accuracy, the wall seconds of `fit` and the CPU seconds of the process (all its
  threads) for building, `fit` and the test predictions.
- With `--steps N`: the step cost. One model per policy and storage dtype is built and traced
  (3 warm-up steps), then `--rounds` rounds each run `N` steps of every model in turn, so that
  the load of the shared machine falls on all of them alike; one JSON line per model with the
  median over the rounds of the CPU and wall milliseconds per step.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/notes/mixed_precision_bench.py \\
        --policies float32 mixed_float16 mixed_bfloat16 --steps 10 --rounds 3
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "estimators"))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import measure  # noqa: E402
from tfssl import data  # noqa: E402


def full_runs(flags):
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


def step_costs(flags):
    (x, y_semi), _ = measure.load_rows(seed=0)
    params = measure.DEFAULTS
    runs = {}
    for policy in flags.policies:
        for state_dtype in flags.state_dtypes:
            keras.mixed_precision.set_dtype_policy(policy)
            keras.utils.set_random_seed(0)
            backbone = measure.build_backbone(params)
            model = measure.build_model(
                "temporal_ensembling", backbone, len(x), dict(params, te_state_dtype=state_dtype)
            )
            model.compile(optimizer=keras.optimizers.Adam(params["learning_rate"]))
            dataset = data.make_dataset(
                x, y_semi, params["batch_size"], shuffle=True, seed=0,
                labeled_per_batch=params["labeled_per_batch"],
            )
            model.fit(dataset, epochs=1, steps_per_epoch=3, verbose=0)
            runs[(policy, state_dtype)] = (model, dataset, [], [])
    for _ in range(flags.rounds):
        for model, dataset, cpu_ms, wall_ms in runs.values():
            cpu, wall = time.process_time(), time.perf_counter()
            model.fit(dataset, epochs=1, steps_per_epoch=flags.steps, verbose=0)
            cpu_ms.append(1000 * (time.process_time() - cpu) / flags.steps)
            wall_ms.append(1000 * (time.perf_counter() - wall) / flags.steps)
    for (policy, state_dtype), (_, _, cpu_ms, wall_ms) in runs.items():
        record = {
            "policy": policy, "state_dtype": state_dtype, "steps": flags.steps,
            "rounds": flags.rounds, "cpu_ms_per_step": round(float(np.median(cpu_ms)), 1),
            "wall_ms_per_step": round(float(np.median(wall_ms)), 1),
        }
        print(json.dumps(record), flush=True)


parser = argparse.ArgumentParser()
parser.add_argument("--policies", nargs="+", default=["float32"])
parser.add_argument("--state-dtypes", nargs="+", default=["float32"])
parser.add_argument("--seeds", nargs="+", type=int, default=[0])
parser.add_argument("--epochs", type=int, default=measure.DEFAULTS["epochs"])
parser.add_argument("--steps", type=int, help="time this many steps a round instead")
parser.add_argument("--rounds", type=int, default=3)
flags = parser.parse_args()
if flags.steps:
    step_costs(flags)
else:
    full_runs(flags)
