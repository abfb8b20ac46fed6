"""Hyper-parameter sweeps of the registry's methods, scored on validation rows, never the test set.

A grid of `GRIDS` names a protocol of `benchmarking.protocols` on a shortened budget, the
hyper-parameters it changes for every method (the ramp-up scaled with the budget) and its
points: a registry entry (`benchmarking.methods.METHODS`) and the values that point changes.
Each point trains through `benchmarking.training.fit_and_evaluate`, as the benchmark trains
the entry, and is scored on the last 5000 of the 60,000 Fashion-MNIST training rows
(`protocols.load(..., validation_rows=5000)`), which no protocol's first rows include; the
test set is not read. A point equal to another of the same seed (the default settings, shared
by every parameter of a method) is trained once.

Records go to `benchmarks/sweep.json`, a list of `{method, param, value, seed, val_accuracy,
protocol, command}` (`param` and `value` join the names and values of a point that changes
several; `"none"` and `null` for a reference point at the entry's settings); records of other
keys already in the file are kept. Section 2 of BENCHMARKS.md shows them.

Example:

    python estimators/sweep.py --grid consistency --seeds 0 1
    python estimators/sweep.py --grid rows --methods vat --seeds 0 1
    python estimators/sweep.py --grid consistency --quick --output quick/sweep.json
"""

import argparse
import dataclasses
import json
import os
import time

from benchmarking import protocols
from benchmarking.methods import METHODS
from benchmarking.training import fit_and_evaluate

__all__ = ["GRIDS", "VALIDATION_ROWS", "Grid", "build_parser", "main", "run_grid"]

_REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The last training rows: outside every protocol's first 20,000 rows.
VALIDATION_ROWS = 5000
QUICK_VALIDATION_ROWS = 100


@dataclasses.dataclass(frozen=True)
class Grid:
    """One sweep: a protocol on a sweep budget and the points trained on it.

    Attributes:
        protocol: The `protocols.Protocol` of every point (its name is the records').
        points: `(method, {hyper-parameter: value})` pairs, in order.
        base: Hyper-parameters every point changes, where its entry has them.
        why: What the grid decides, for `--help`.
    """

    protocol: protocols.Protocol
    points: tuple
    base: dict = dataclasses.field(default_factory=dict)
    why: str = ""


def _one_at_a_time(factors):
    """The points of `[(methods, param, values)]`: one hyper-parameter changed at a time."""
    return tuple((method, {param: value}) for methods, param, values in factors
                 for method in methods for value in values)


_CLEAN = protocols.PROTOCOLS["clean-1000"]
_CONSISTENCY = ("pi_model", "temporal_ensembling", "mean_teacher")
# The main protocol on 10,000 rows and 8 epochs of 180 steps (1440 steps instead of 5700).
_SHORT = dataclasses.replace(_CLEAN, name="main-10k-8ep-val5000", train_size=10_000, epochs=8)
GRIDS = {
    "consistency": Grid(
        _SHORT,
        _one_at_a_time([
            (_CONSISTENCY, "max_unsupervised_weight", (10.0, 30.0, 100.0)),
            (_CONSISTENCY, "ramp_up_epochs", (1, 3)),
            # 25 labeled rows a batch also means fewer steps (9000 unlabeled rows, 75 a batch).
            (_CONSISTENCY, "labeled_per_batch", (25, 50)),
            (("mean_teacher",), "ema_decay", (0.99, 0.999)),
            (("temporal_ensembling",), "target", ("seed", "paper")),
        ]),
        base={"ramp_up_epochs": 3},
        why="the consistency methods' weight, ramp-up, batches, EMA decay and TE target",
    ),
    "mixmatch": Grid(
        _SHORT,
        (("supervised", {}),)
        + tuple(("mixmatch", {"lambda_u": lambda_u, "max_translation": 2})
                for lambda_u in (1.0, 10.0, 30.0, 75.0))
        + tuple(("mixmatch", {"lambda_u": lambda_u, "max_translation": 0})
                for lambda_u in (0.0, 0.3, 1.0, 3.0, 10.0, 30.0, 75.0)),
        base={"ramp_up_epochs": 3},
        why="MixMatch's lambda_u with and without a 2-pixel translation",
    ),
    "rows": Grid(
        dataclasses.replace(_CLEAN, name="rows-10k-5ep-val5000", train_size=10_000, epochs=5),
        tuple(("distiller", {"temperature": t, "alpha": a})
              for t, a in ((3.0, 0.1), (3.0, 0.5), (1.0, 0.1)))
        + _one_at_a_time([
            (("reloop",), "weight", (0.5, 0.9)),
            (("self_training",), "threshold", (0.9, 0.95)),
            (("vat",), "xi", (1e-6, 1e-3, 1e-1)),
        ]),
        why="the distiller's temperature and alpha, ReLoop's weight, self-training's "
        "threshold and VAT's finite-difference step xi",
    ),
    "mean-teacher-main": Grid(
        dataclasses.replace(_CLEAN, name="clean-1000-val5000"),
        _one_at_a_time([(("mean_teacher",), "max_unsupervised_weight", (10.0, 30.0))]),
        why="Mean Teacher's weight on the main protocol's budget",
    ),
}


def _joined(change):
    """`(param, value)` of a record: the point's one name and value, or both joined."""
    if not change:
        return "none", None
    if len(change) == 1:
        return next(iter(change.items()))
    return ", ".join(change), ", ".join(f"{value:g}" for value in change.values())


def run_grid(name, seeds, methods=None, quick=False, data_dir=None, log=print, save=None):
    """Trains the points of `GRIDS[name]` (those of `methods`, all by default) for each seed.

    Args:
        name: A key of `GRIDS`.
        seeds: Seeds of the rows, labels and weights.
        methods: Registry names to keep among the grid's points (`None`: all).
        quick: Train on the protocol's `quick()` budget (100 validation rows).
        data_dir: Folder of the Fashion-MNIST files.
        log: Called with a line per point.
        save: Called with the records so far after every point (an interrupted sweep keeps
            what it measured).

    Returns:
        The records (see the module docstring), without `command`.

    Raises:
        ValueError: If `name` is not a grid or `methods` names no point of it.
    """
    if name not in GRIDS:
        raise ValueError(f"Unknown grid. Choose from {sorted(GRIDS)}. Received: grid={name!r}")
    grid = GRIDS[name]
    points = [(m, change) for m, change in grid.points if methods is None or m in methods]
    if not points:
        raise ValueError(f"No point of grid {name!r} trains these methods. Received: "
                         f"methods={methods}")
    protocol = grid.protocol
    if quick:
        # The grids' batches (25 or 50 labeled rows of 100) on the quick budget's rows.
        protocol = dataclasses.replace(protocol.quick(), batch_size=100, labeled_per_batch=50)
    validation = QUICK_VALIDATION_ROWS if quick else VALIDATION_ROWS
    records = []
    for seed in seeds:
        rows = protocols.load(protocol, seed, data_dir, validation_rows=validation)
        trained = {}
        for method_name, change in points:
            method = METHODS[method_name]
            hyper = method.hyper_for(protocol.name)
            hyper = {**hyper, **{k: v for k, v in grid.base.items() if k in hyper}, **change}
            # The protocol's own batches named as a point train the same run as the default.
            same = {k: v for k, v in hyper.items()
                    if (k, v) != ("labeled_per_batch", protocol.labeled_per_batch)}
            key = (method_name, json.dumps(same, sort_keys=True))
            if key not in trained:
                start = time.perf_counter()
                trained[key] = fit_and_evaluate(method, hyper, protocol, rows, seed,
                                                protocols.BACKBONES[protocol.backbone].build)
                log(f"{method_name} {change or 'reference'} seed {seed}: validation accuracy "
                    f"{trained[key]['accuracy']:.4f} ({time.perf_counter() - start:.0f} s)")
            param, value = _joined(change)
            records.append({"method": method_name, "param": param, "value": value,
                            "seed": seed, "val_accuracy": trained[key]["accuracy"],
                            "protocol": protocol.name})
            if save is not None:
                save(records)
    return records


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Grids: " + "; ".join(f"{name}: {grid.why}" for name, grid in GRIDS.items()),
    )
    parser.add_argument("--grid", choices=sorted(GRIDS), required=True)
    parser.add_argument("--methods", nargs="+", choices=sorted(METHODS), metavar="NAME",
                        help="only the grid's points of these registry entries")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--quick", action="store_true",
                        help="the protocol's tiny quick() budget, to check the pipeline")
    parser.add_argument("--data-dir", help="folder with the Fashion-MNIST IDX files")
    parser.add_argument("--output", default=os.path.join(_REPOSITORY, "benchmarks", "sweep.json"),
                        help="JSON file of the records; records of other keys are kept")
    return parser


def _key(record):
    return (record["method"], record["param"], json.dumps(record["value"]), record["seed"],
            record["protocol"])


def command(argv):
    """The command line that reproduces a sweep's records, as they store it."""
    return " ".join(["python estimators/sweep.py", *argv])


def main(argv=None):
    args = build_parser().parse_args(argv)
    flags = ["--grid", args.grid] + (["--methods", *args.methods] if args.methods else [])
    flags += ["--seeds", *map(str, args.seeds)] + (["--quick"] if args.quick else [])
    previous = []
    if os.path.exists(args.output):
        with open(args.output, encoding="utf-8") as file:
            previous = json.load(file)

    def save(records):
        fresh = [dict(record, command=command(flags)) for record in records]
        kept = [r for r in previous if _key(r) not in {_key(f) for f in fresh}]
        with open(args.output, "w", encoding="utf-8") as file:
            json.dump(kept + fresh, file, indent=1)
        return len(kept) + len(fresh)

    records = run_grid(args.grid, args.seeds, args.methods, args.quick, args.data_dir, save=save)
    print(f"{save(records)} records in {args.output}")


if __name__ == "__main__":
    main()
