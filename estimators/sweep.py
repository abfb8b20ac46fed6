"""A small hyper-parameter sweep per method, scored on validation rows, never the test set.

One factor at a time around the main protocol's settings (`measure.DEFAULTS`): each run
changes one hyper-parameter of one method and is scored on the last 5000 rows of the 60,000
Fashion-MNIST training rows, which the protocol's first 20,000 rows never include; the test
set is not read. The budget is shortened to fit the shared CPU (`SWEEP_BUDGET`): the first
10,000 rows (1000 labeled) instead of 20,000 and 8 epochs of 180 steps instead of 15 of 380
(1440 steps instead of 5700), the ramp-up scaled with it (3 epochs instead of 5). With 25
labeled rows per batch an epoch has 120 steps (the 9000 unlabeled rows, 75 a batch), so that
setting also trains fewer steps.

Swept (`GRID`): the maximum consistency weight, the ramp-up length, the labeled rows per
batch of 100, Mean Teacher's EMA decay after the ramp-up and Temporal Ensembling's target
(the seed code's or the paper's). Records go to `benchmarks/sweep.json` as a
list of `{method, param, value, seed, val_accuracy, protocol}`; a method's runs at its
default settings are shared by all its parameters (one run, one record per parameter).

Example:

    .venv/bin/python estimators/sweep.py --methods pi_model --seeds 0
    .venv/bin/python estimators/sweep.py --quick --output /tmp/sweep.json
"""

import argparse
import json
import os

import measure

__all__ = ["GRID", "SWEEP_BUDGET", "QUICK_BUDGET", "build_parser", "main", "run_sweep"]

_REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ("pi_model", "temporal_ensembling", "mean_teacher")

# Values tried per hyper-parameter; the first entry of each is not special, the default
# (SWEEP_BUDGET or measure.DEFAULTS) is always among them.
GRID = {
    "max_weight": {"methods": METHODS, "values": (10.0, 30.0, 100.0)},
    "ramp_up_epochs": {"methods": METHODS, "values": (1, 3)},
    "labeled_per_batch": {"methods": METHODS, "values": (25, 50)},
    "ema_decay": {"methods": ("mean_teacher",), "values": (0.99, 0.999)},
    "te_target": {"methods": ("temporal_ensembling",), "values": ("seed", "paper")},
}
SWEEP_BUDGET = {
    "protocol": "main-10k-8ep-val5000",
    "train_size": 10_000,
    "num_labeled": 1000,
    "validation_rows": 5000,
    "params": {"epochs": 8, "ramp_up_epochs": 3},
}
QUICK_BUDGET = {
    "protocol": "quick",
    "train_size": 300,
    "num_labeled": 100,
    "validation_rows": 100,
    "params": {
        "epochs": 1, "ramp_up_epochs": 1, "units": (16,), "batch_size": 50,
        "labeled_per_batch": 25,
    },
}


def _grid(methods, quick):
    """`[(method, param, value)]` to run, in order."""
    runs = []
    for param, entry in GRID.items():
        values = entry["values"][:2] if quick else entry["values"]
        if quick and param == "labeled_per_batch":
            values = (10, 25)
        for method in methods:
            if method in entry["methods"]:
                runs += [(method, param, value) for value in values]
    return runs


def run_sweep(methods, seeds, quick=False, data_dir=None, log=print, save=None):
    """Runs the sweep and returns its records (see the module docstring).

    `save`, if given, is called with the records so far after every run, so that an
    interrupted sweep keeps what it measured.
    """
    budget = QUICK_BUDGET if quick else SWEEP_BUDGET
    base = dict(measure.DEFAULTS, **budget["params"])
    records, cache = [], {}
    for seed in seeds:
        train, validation = measure.load_rows(
            data_dir, budget["train_size"], budget["num_labeled"], seed,
            validation_rows=budget["validation_rows"],
        )
        for method, param, value in _grid(methods, quick):
            params = dict(base, **{param: value})
            key = (method, seed, json.dumps(params, sort_keys=True))
            if key not in cache:
                cache[key], seconds, _ = measure.train_and_evaluate(
                    method, *train, validation, params, seed
                )
                log(f"{method} {param}={value} seed {seed}: validation accuracy "
                    f"{cache[key]:.4f} ({seconds:.0f} s)")
            records.append({
                "method": method, "param": param, "value": value, "seed": seed,
                "val_accuracy": cache[key], "protocol": budget["protocol"],
            })
            if save is not None:
                save(records)
    return records


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument(
        "--quick", action="store_true",
        help="a tiny budget (300 rows, 1 epoch, a 16-unit mlp) to check the pipeline",
    )
    parser.add_argument("--data-dir", help="folder with the Fashion-MNIST IDX files")
    parser.add_argument(
        "--output", default=os.path.join(_REPOSITORY, "benchmarks", "sweep.json"),
        help="JSON file of the records; records of other (method, param, value, seed, "
        "protocol) already in it are kept",
    )
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    previous = []
    if os.path.exists(args.output):
        with open(args.output) as file:
            previous = json.load(file)

    def save(records):
        fresh = {_key(r) for r in records}
        kept = [r for r in previous if _key(r) not in fresh]
        with open(args.output, "w") as file:
            json.dump(kept + records, file, indent=1)
        return len(kept) + len(records)

    records = run_sweep(args.methods, args.seeds, args.quick, args.data_dir, save=save)
    print(f"{save(records)} records in {args.output}")


def _key(record):
    return (record["method"], record["param"], json.dumps(record["value"]), record["seed"],
            record["protocol"])


if __name__ == "__main__":
    main()
