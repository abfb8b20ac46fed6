"""Validation sweep of the label-regularization, self-training and VAT rows.

Never reads the test set: the first 10,000 training rows (1000 labeled), 5 epochs of 180
steps, scored on the last 5000 of the 60,000 training rows (outside every protocol's first
20,000 rows). Each setting trains through the benchmark's own `fit_and_evaluate`, so the
`train` hooks are exactly the benchmark's. The first stage of the Distiller and ReLoop rows
(supervised-only, same seed, same rows) is the same model for every setting: it is trained
once.

    PYTHONPATH=$PWD:$PWD/estimators python benchmarks/notes/rows_sweep.py [METHOD ...] [--seeds 0 1]

`--main-budget` trains on the main protocol's budget instead (its first 20,000 rows, 15 epochs
of 380 steps), still scored on the last 5000 training rows: Mean Teacher's w_max was checked
there after the short sweep's choice did not carry over.

VAT's `xi` (the power iteration's finite-difference step): the authors' 1e-6 moves each of
the 784 pixels by about 4e-8, under float32's rounding of a pixel near 0.5 (6e-8), so the
direction of one iteration is mostly lost (benchmarks/notes/mixed_precision.md, "VAT's xi").
"""

import argparse
import dataclasses
import functools
import json

from benchmarking import methods, protocols
from benchmarking.methods import METHODS
from benchmarking.runner import fit_and_evaluate

VALIDATION_ROWS = 5000
GRID = (
    [("distiller", {"temperature": t, "alpha": a}) for t, a in ((3.0, 0.1), (3.0, 0.5), (1.0, 0.1))]
    + [("reloop", {"weight": w}) for w in (0.5, 0.9)]
    + [("self_training", {"rounds": 3, "threshold": t}) for t in (0.9, 0.95)]
    + [("vat", {"epsilon": 5.0, "xi": xi}) for xi in (1e-6, 1e-3, 1e-1)]
    + [("mean_teacher", {"max_unsupervised_weight": w, "ramp_up_epochs": 5, "ema_decay": 0.99,
                         "rampup_ema_decay": 0.99}) for w in (10.0, 30.0)]
)
# The benchmark's own first stage; main() wraps it to train it once per seed's rows.
_TRAIN_FIRST_STAGE = methods._supervised_stage


def main(which, seed, main_budget=False):
    if main_budget:
        protocol = dataclasses.replace(protocols.PROTOCOLS["clean-1000"],
                                       name="clean-1000-val5000")
    else:
        protocol = dataclasses.replace(protocols.PROTOCOLS["clean-1000"],
                                       name="rows-10k-5ep-val5000", train_size=10_000, epochs=5)
    rows = protocols.load(protocol, seed)
    (x_all, y_all), _ = protocols._fashion(None)
    rows["x_test"], rows["y_test"] = x_all[-VALIDATION_ROWS:], y_all[-VALIDATION_ROWS:]
    first_stage = functools.lru_cache(maxsize=1)(
        lambda protocol, seed, build: _TRAIN_FIRST_STAGE(protocol, rows, seed, build))
    methods._supervised_stage = lambda protocol, _rows, seed, build: first_stage(
        protocol, seed, build)
    records = []
    for name, hyper in GRID:
        if which and name not in which:
            continue
        result = fit_and_evaluate(METHODS[name], hyper, protocol, rows, seed,
                                  protocols.BACKBONES["mlp"].build)
        record = {"method": name, "hyper": hyper, "seed": seed, "protocol": protocol.name,
                  **result}
        record["val_accuracy"] = record.pop("accuracy")
        records.append(record)
        print(json.dumps(record), flush=True)
    return records


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("methods", nargs="*", help="entries of GRID to run (default: all)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--main-budget", action="store_true",
                        help="the main protocol's 20,000 rows and 15 epochs of 380 steps")
    flags = parser.parse_args()
    for seed in flags.seeds:
        main(flags.methods, seed, flags.main_budget)
