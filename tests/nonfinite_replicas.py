"""A batch with a NaN in one replica's half under MirroredStrategy on two logical CPUs.

`nan_on_one_replica` is a check of its own for mirrored_worker.py (which configures the
devices), run in its process by test_two_replicas.py. For Temporal Ensembling (`te`) and
Mean Teacher (`mt`, whose backbone has batch normalisation), the models with state beside
the weights, and each policy:

- `raise`: after one clean epoch, a global batch whose second replica holds a NaN row must
  fail with an error naming the batch's `idx`, and leave every replica's copy of every model
  and optimizer variable as it was;
- `skip`: an epoch holding that batch must skip it on both replicas: one skipped step,
  one optimizer iteration fewer, the bad batch's ensemble rows untouched, copies identical.
"""

import re

import keras
import numpy as np
import tensorflow as tf

# mirrored_worker configures the two logical CPUs on import and holds the process's one
# strategy over them (a second one over the same devices collides in its collectives).
from mirrored_worker import TWO_DEVICES as STRATEGY

from tfssl import data, models, testing

BATCH = 16
# Global row 11 of a batch of 16 lands on the second replica (rows 8 to 15).
BAD_ROW = 11


def make_model(name, on_nonfinite):
    x, _, _ = testing.tiny_data()
    if name == "te":
        return models.TemporalEnsembling(
            testing.tiny_backbone(), len(x), on_nonfinite=on_nonfinite
        )
    # Batch normalisation: its moving statistics, written in the forward pass, must be
    # restored on both replicas.
    backbone = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(8),
            keras.layers.BatchNormalization(),
            keras.layers.Activation("tanh"),
            keras.layers.Dense(3),
        ]
    )
    return models.MeanTeacher(backbone, rampup_ema_decay=0.9, on_nonfinite=on_nonfinite)


def copies(model):
    """Every replica's copy of every model and optimizer variable, by path."""
    state = {}
    for variable in model.variables + model.optimizer.variables:
        values = getattr(variable.value, "values", None) or (variable.value,)
        for replica, value in enumerate(values):
            state[f"{variable.path}/{replica}"] = value.numpy().copy()
    return state


def largest_copy_difference(state):
    largest = 0.0
    for key, value in state.items():
        # Keras 3 keeps one set of batch-norm moving statistics per replica (aggregation
        # "none"), which differ by design; everything else must be identical.
        if key.endswith("/1") and "/moving_" not in key:
            first = state[key[:-1] + "0"]
            largest = max(largest, float(np.max(np.abs(value - first), initial=0.0)))
    return largest


def changed(before, after):
    return sorted(key for key in before if not np.array_equal(before[key], after[key]))


def bad_batch(x, y_semi, idx):
    x_bad = x[idx].copy()
    x_bad[BAD_ROW, 0] = np.nan
    return tf.data.Dataset.from_tensors(({"x": x_bad, "idx": idx}, y_semi[idx]))


def run(name, on_nonfinite):
    keras.utils.set_random_seed(0)
    x, _, y_semi = testing.tiny_data()
    with STRATEGY.scope():
        model = make_model(name, on_nonfinite)
        model.compile(optimizer=keras.optimizers.Adam(1e-2))
    clean = data.make_dataset(x, y_semi, batch_size=BATCH)
    model.fit(clean, epochs=1, verbose=0)
    # Indices out of order, so that the error cannot name positions by chance.
    idx = np.arange(len(x) - 1, len(x) - 1 - BATCH, -1)
    before = copies(model)
    result = {}
    if on_nonfinite == "raise":
        try:
            model.fit(bad_batch(x, y_semi, idx), epochs=1, verbose=0)
            result["raised"] = False
        except tf.errors.InvalidArgumentError as error:
            result["raised"] = True
            named = re.search(r"Batch idx[^\]]*\] \[([^\]]*)\]", error.message)
            bad = re.search(r"whose input is not finite:\] \[([^\]]*)\]", error.message)
            result["named_idx"] = [int(v) for v in named.group(1).split()]
            result["bad_rows"] = [int(v) for v in bad.group(1).split()]
        result["expected_idx"] = [int(v) for v in idx]
        after = copies(model)
        result["changed"] = changed(before, after)
    else:
        steps = bad_batch(x, y_semi, idx).concatenate(clean)
        history = model.fit(steps, epochs=1, verbose=0).history
        after = copies(model)
        result["skipped_steps"] = history["skipped_steps"]
        result["loss"] = history["loss"]
        result["iterations_added"] = int(model.optimizer.iterations.numpy()) - int(
            before[f"{model.optimizer.iterations.path}/0"]
        )
        result["clean_steps"] = len(x) // BATCH
        if name == "te":
            # The clean epoch writes every row again: the ensemble counts (one per epoch a
            # row was seen in) tell whether the bad batch wrote its rows.
            result["counts"] = [float(v) for v in model.ensemble_counts.numpy()]
    result["copies_differ"] = largest_copy_difference(after)
    return result


def nan_on_one_replica():
    """`{f"{name}_{policy}": result}` for `name` in te, mt and `policy` in raise, skip."""
    return {
        f"{name}_{on_nonfinite}": run(name, on_nonfinite)
        for name in ("te", "mt")
        for on_nonfinite in ("raise", "skip")
    }
