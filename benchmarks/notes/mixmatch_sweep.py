"""MixMatch's sweep on validation rows (never the test set): lambda_u x translation on/off.

The budget of `estimators/sweep.py` (`SWEEP_BUDGET`): the first 10,000 training rows with
1000 labels drawn with the seed, 8 epochs of 180 steps, the ramp-up scaled to 3 epochs, scored
on the last 5000 of the 60,000 training rows. The model is built and trained by the
benchmark's own code (`benchmarking.runner.fit_and_evaluate` with the `mixmatch` registry
entry), so only the swept values differ from a benchmark run. Records (the schema of
`benchmarks/sweep.json`, `value` a `[lambda_u, max_translation]` pair) are saved after each
run.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/notes/mixmatch_sweep.py --seeds 0 \\
        --output benchmarks/notes/mixmatch_sweep.json
"""

import argparse
import dataclasses
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "estimators"))

import measure  # noqa: E402
import sweep  # noqa: E402
from benchmarking import methods, protocols, runner  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--seeds", nargs="+", type=int, default=[0])
parser.add_argument("--lambda-u", nargs="+", type=float, default=[1.0, 10.0, 30.0, 75.0])
parser.add_argument("--max-translation", nargs="+", type=int, default=[2, 0])
parser.add_argument(
    "--supervised", action="store_true",
    help="instead of the grid, the supervised-only entry on the same budget, for scale",
)
parser.add_argument("--output", required=True)
flags = parser.parse_args()

budget = sweep.SWEEP_BUDGET
protocol = dataclasses.replace(
    protocols.PROTOCOLS["clean-1000"], name=budget["protocol"],
    train_size=budget["train_size"], num_labeled=budget["num_labeled"],
    epochs=budget["params"]["epochs"],
)
method = methods.METHODS["mixmatch"]
records = []
if os.path.exists(flags.output):
    with open(flags.output) as file:
        records = json.load(file)
for seed in flags.seeds:
    (x, y_semi), (x_val, y_val) = measure.load_rows(
        None, budget["train_size"], budget["num_labeled"], seed,
        validation_rows=budget["validation_rows"],
    )
    rows = {"x": x, "y_semi": y_semi, "x_test": x_val, "y_test": y_val}
    if flags.supervised:
        result = runner.fit_and_evaluate(
            methods.METHODS["supervised"], {}, protocol, rows, seed,
            protocols.BACKBONES["mlp"].build,
        )
        print(f"supervised seed {seed}: validation accuracy {result['accuracy']:.4f}")
        records.append({
            "method": "supervised", "param": "none", "value": None, "seed": seed,
            "val_accuracy": result["accuracy"], "protocol": budget["protocol"],
        })
        with open(flags.output, "w") as file:
            json.dump(records, file, indent=1)
        continue
    for translation in flags.max_translation:
        for lambda_u in flags.lambda_u:
            hyper = dict(
                method.hyper, lambda_u=lambda_u, max_translation=translation,
                ramp_up_epochs=budget["params"]["ramp_up_epochs"],
            )
            start = time.time()
            result = runner.fit_and_evaluate(
                method, hyper, protocol, rows, seed, protocols.BACKBONES["mlp"].build
            )
            seconds = time.time() - start
            print(f"mixmatch lambda_u={lambda_u:g} max_translation={translation} seed {seed}: "
                  f"validation accuracy {result['accuracy']:.4f} ({seconds:.0f} s, "
                  f"{result['steps']} steps)", flush=True)
            records.append({
                "method": "mixmatch", "param": "lambda_u,max_translation",
                "value": [lambda_u, translation], "seed": seed,
                "val_accuracy": result["accuracy"], "protocol": budget["protocol"],
                "hyper": hyper, "seconds": seconds,
            })
            with open(flags.output, "w") as file:
                json.dump(records, file, indent=1)
