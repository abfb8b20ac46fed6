"""Robustness: test accuracy under an FGM attack of growing epsilon, supervised-only next to
adversarial training.

A "robustness" record (see `runner`) trains supervised-only or adversarial training
exactly as its "run" record does (same protocol, seed, backbone, batches and steps), then
attacks every test row with the fast gradient method of `tfssl.models.adversarial_inputs`:

```
x_adv = x + epsilon * g / ||g||_2,    g = d CE(f(x), y) / dx   (true label y, f in inference)
```

with the L2 norm taken per image over its 28 x 28 pixels scaled to [0, 1], and records the
accuracy on `x_adv` for each epsilon of `SETTINGS["epsilons"]` (epsilon 0: the clean test
rows). `x_adv` is not clipped to [0, 1], so that every attacked image is exactly at L2
distance epsilon from the clean one (a pixel-range clip would shorten some perturbations).

`collect` gathers the records of the current settings into one `RobustnessResult` per
protocol (mean over seeds per epsilon, and the paired interval of adversarial − supervised
at each epsilon); `report` renders its section and `plots` its figure.

`select_epsilon` chooses the training epsilon of the "adversarial" entry: it trains the
entry with each candidate on the protocol's rows and scores the clean accuracy on the last
5000 of the 60,000 training rows (never among the protocol's first 20,000, the rows of
`estimators/sweep.py`); the test set is not read. Its records go to `sweep.json` (section 2
of the report):

    PYTHONPATH=$PWD:$PWD/estimators python -m benchmarking.robustness \\
        --epsilons 0.5 1 2 4 --seeds 0 --output benchmarks/sweep.json
"""

import argparse
import dataclasses
import json
import os
import time

import numpy as np

from benchmarking import protocols, stats
from benchmarking.methods import METHODS as REGISTRY
from benchmarking.training import fit_and_evaluate
from tfssl import models

__all__ = [
    "ATTACK_SECONDS",
    "METHODS",
    "PROTOCOLS",
    "SETTINGS",
    "RobustnessResult",
    "attacked_accuracies",
    "collect",
    "evaluate",
    "select_epsilon",
    "settings",
]

# The methods a robustness record is made for; the first is the reference of the intervals.
METHODS = ("supervised", "adversarial")
# The protocols attacked: the main one.
PROTOCOLS = ("clean-1000",)
SETTINGS = {"attack": "fgm", "norm": "sample", "epsilons": (0.0, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0),
            "batch_size": 500}
SETTINGS_QUICK = dict(SETTINGS, epsilons=(0.0, 1.0, 3.0))
# Planned seconds of the attacks of one record (10,000 test rows, seven epsilons).
ATTACK_SECONDS = 15.0
# The validation rows of `select_epsilon`: the last rows of the 60,000 training rows.
VALIDATION_ROWS = 5000


def settings(quick):
    """The attack settings of a record (`--quick`: fewer epsilons)."""
    return dict(SETTINGS_QUICK if quick else SETTINGS)


def serving_network(model):
    """The network that predicts: a tfssl model's serving network, else the model."""
    return model.serving_model() if hasattr(model, "serving_model") else model


def attacked_accuracies(network, x, y, epsilons, batch_size=500):
    """Accuracy of `network` on `x` under the FGM attack of each epsilon.

    Args:
        network: `keras.Model` mapping float inputs to logits, run in inference mode.
        x: Inputs, shape `(rows, ...)`.
        y: Integer labels, shape `(rows,)`.
        epsilons: L2 radii, each `>= 0`; `0` scores the clean inputs.
        batch_size: Rows per attacked batch (the norm is per sample, so this changes no
            number).

    Returns:
        A list of accuracies, one per epsilon.

    Raises:
        ValueError: If an epsilon is negative.
    """
    for epsilon in epsilons:
        if epsilon < 0:
            raise ValueError(f"Attack radii must be >= 0. Received: epsilon={epsilon!r}")
    correct = np.zeros(len(epsilons))
    for start in range(0, len(x), batch_size):
        x_batch, y_batch = x[start: start + batch_size], y[start: start + batch_size]
        for position, epsilon in enumerate(epsilons):
            attacked = x_batch if epsilon == 0 else models.adversarial_inputs(
                network, x_batch, y_batch, epsilon, method="fgm", norm="sample")
            logits = network(attacked, training=False)
            correct[position] += np.sum(np.argmax(logits, axis=-1) == y_batch)
    return [float(c / len(x)) for c in correct]


def evaluate(model, x, y, attack):
    """The entries a robustness record adds to its run's: the attacked accuracies."""
    start, cpu_start = time.perf_counter(), time.process_time()
    accuracies = attacked_accuracies(serving_network(model), x, y, attack["epsilons"],
                                     attack["batch_size"])
    return {"epsilons": list(attack["epsilons"]), "attacked_accuracy": accuracies,
            "attack_seconds": time.perf_counter() - start,
            "attack_cpu_seconds": time.process_time() - cpu_start}


@dataclasses.dataclass
class RobustnessResult:
    """One protocol's attacked accuracies.

    Attributes:
        protocol: The protocol's name.
        epsilons: The attack radii.
        accuracy: `{method: {seed: [accuracy per epsilon]}}`.
        records: The records behind it.
    """

    protocol: str
    epsilons: tuple
    accuracy: dict
    records: list

    @property
    def methods(self):
        return [m for m in METHODS if m in self.accuracy] + sorted(
            m for m in self.accuracy if m not in METHODS)

    @property
    def seeds(self):
        return sorted({seed for per_seed in self.accuracy.values() for seed in per_seed})

    def at(self, method, position):
        """`{seed: accuracy}` of `method` at `epsilons[position]`."""
        return {seed: values[position]
                for seed, values in sorted(self.accuracy.get(method, {}).items())}

    def paired(self, position, method="adversarial"):
        """`stats.PairedDifference` of `method` − supervised-only at `epsilons[position]`,
        `None` without a seed in common."""
        ours, reference = self.at(method, position), self.at(METHODS[0], position)
        if not set(ours) & set(reference):
            return None
        return stats.paired_difference(ours, reference)


def collect(records, quick, current_fingerprint):
    """The robustness records of the current settings, per protocol.

    Args:
        records: The records of `results.json`.
        quick: Whether to use the `--quick` records.
        current_fingerprint: `(protocol, method) -> fingerprint` of the current settings,
            `None` when unregistered; records of other fingerprints are left out.

    Returns:
        A list of `RobustnessResult`, in the order the protocols first appear.
    """
    results = {}
    for record in records:
        if record["kind"] != "robustness" or record.get("quick") != quick:
            continue
        expected = current_fingerprint(record["protocol"], record["method"])
        if expected is not None and record["fingerprint"] != expected:
            continue
        result = results.setdefault(record["protocol"], RobustnessResult(
            record["protocol"], tuple(record["epsilons"]), {}, []))
        if tuple(record["epsilons"]) != result.epsilons:
            continue
        # The latest record of a method and seed is the one shown.
        result.accuracy.setdefault(record["method"], {})[record["seed"]] = (
            record["attacked_accuracy"])
        result.records = [r for r in result.records
                          if (r["method"], r["seed"]) != (record["method"], record["seed"])]
        result.records.append(record)
    return list(results.values())


def validation_rows(protocol, seed, data_dir=None):
    """The protocol's rows of `seed`, scored on the last `VALIDATION_ROWS` training rows."""
    return protocols.load(protocol, seed, data_dir, validation_rows=VALIDATION_ROWS)


def select_epsilon(epsilons, seeds, protocol_name="clean-1000", quick=False, data_dir=None,
                   log=print):
    """Validation accuracy of the "adversarial" entry trained with each epsilon.

    Returns:
        Records `{method, param, value, seed, val_accuracy, val_attacked_accuracy,
        protocol}` in the format of `sweep.json`.
    """
    registered = protocols.PROTOCOLS[protocol_name]
    protocol = registered.quick() if quick else registered
    method = REGISTRY["adversarial"]
    attack = settings(quick)
    records = []
    for seed in seeds:
        rows = validation_rows(protocol, seed, data_dir)
        for epsilon in epsilons:
            hyper = dict(method.hyper_for(protocol.name), epsilon=epsilon)
            start = time.perf_counter()
            result = fit_and_evaluate(
                method, hyper, protocol, rows, seed, protocols.BACKBONES[protocol.backbone].build,
                evaluate=lambda model, x, y: evaluate(model, x, y, attack))
            log(f"adversarial epsilon={epsilon:g} seed {seed}: validation accuracy "
                f"{result['accuracy']:.4f}, under FGM {attack['epsilons']}: "
                f"{[round(a, 4) for a in result['attacked_accuracy']]} "
                f"({time.perf_counter() - start:.0f} s)")
            records.append({
                "method": "adversarial", "param": "epsilon", "value": epsilon, "seed": seed,
                "val_accuracy": result["accuracy"],
                "val_attacked_accuracy": dict(zip(map(str, attack["epsilons"]),
                                                  result["attacked_accuracy"])),
                "protocol": f"{protocol.name}-val{VALIDATION_ROWS}" + ("-quick" * quick),
            })
    return records


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epsilons", type=float, nargs="+", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--protocol", default="clean-1000")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--data-dir")
    parser.add_argument("--output", required=True,
                        help="sweep.json to extend (records of the same key are replaced)")
    args = parser.parse_args(argv)
    previous = []
    if os.path.exists(args.output):
        with open(args.output, encoding="utf-8") as f:
            previous = json.load(f)
    command = ("PYTHONPATH=$PWD:$PWD/estimators python -m benchmarking.robustness "
               f"--epsilons {' '.join(f'{e:g}' for e in args.epsilons)} --seeds "
               f"{' '.join(map(str, args.seeds))} --protocol {args.protocol}"
               + (" --quick" if args.quick else ""))
    fresh = [dict(r, command=command) for r in select_epsilon(
        args.epsilons, args.seeds, args.protocol, args.quick, args.data_dir)]

    def key(record):
        return (record["method"], record["param"], json.dumps(record["value"]),
                record["seed"], record["protocol"])

    kept = [r for r in previous if key(r) not in {key(f) for f in fresh}]
    with open(args.output, "w", encoding="utf-8") as f:
        json.dump(kept + fresh, f, indent=1)
    means = {e: np.mean([r["val_accuracy"] for r in fresh if r["value"] == e])
             for e in args.epsilons}
    print(f"{len(kept) + len(fresh)} records in {args.output}; best epsilon on validation "
          f"rows (mean over seeds): {max(means, key=means.get):g}")


if __name__ == "__main__":
    main()
