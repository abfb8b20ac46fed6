"""Step 3 (2) of benchmarks/notes/text.md: a labeled-only warm-up before the consistency term.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/notes/text_warmup.py --start 2 --seeds 0 1 \
        --runs te mt --flags "--validation-size 1500"

The protocol of `text_bench.py`, except that the consistency weight's epoch counter starts
`--start` epochs late: `SemiSupervisedModel` ramps the weight up from 0 at its epoch 0, and
here its epoch is `max(0, epoch - start)`, so the first `start + 1` epochs train on the labels
only (the protocol's ramp-up of 1 epoch already makes epoch 0 labeled-only: `--start 0`).
The base class has no such argument; the counter callback it adds to `fit` is replaced by a
subclass (`fit` adds its own only when none is given).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "estimators"))

import text_classification  # noqa: E402
from text_bench import RUNS, run_all  # noqa: E402
from tfssl.models import _trainer  # noqa: E402


class DelayedEpochCounter(_trainer._EpochCounter):
    """Writes `max(0, epoch - start)` into `model.epoch`, the epoch the ramp-up reads."""

    def __init__(self, start):
        super().__init__()
        self.start = start

    def on_epoch_begin(self, epoch, logs=None):
        self.model.epoch.assign(max(0, epoch - self.start))


parser = argparse.ArgumentParser()
parser.add_argument("--start", type=int, required=True, help="epochs the ramp-up starts late")
parser.add_argument("--seeds", nargs="+", default=["0", "1"])
parser.add_argument("--runs", nargs="+", choices=sorted(RUNS), default=["te", "mt"])
parser.add_argument("--flags", default="", help="estimator flags appended to the protocol's")
flags = parser.parse_args()
callbacks = text_classification._common.callbacks
text_classification._common.callbacks = lambda args: [
    *callbacks(args),
    DelayedEpochCounter(flags.start),
]
run_all(flags.seeds, flags.runs, flags.flags, tag=f"start={flags.start}")
