"""Runs tfssl models under MirroredStrategy on two logical CPU devices; prints JSON.

Started in a process of its own (logical devices must be configured before TensorFlow
initialises, which a pytest process importing TensorFlow already did) by the
`mirrored_equivalence` fixture of conftest.py, for every two-replica check of the suite at
once (test_two_replicas.py): each process start costs TensorFlow's import.

Each argument is `module:function` or `module:function:argument`, a function importable
from the tests folder that takes no argument, or the one string after its name. It is
called inside the two-device strategy's scope and returns either

- `(model, dataset)` or `(model, dataset, fit_arguments)`: the model is compiled with
  SGD(0.1) unless the function compiled it, trained for 2 epochs on two devices and on one,
  and the JSON reports the number of variables of both runs, the largest difference between
  the two runs' variables and losses, and between the two replicas' copies of any variable.
  The one-device run of a model the worker compiles runs `steps_per_execution=2` (the
  two-device run one step per call): the comparison shows too that several steps per
  `tf.function` call, as the scripts and the benchmark run, change no result;
- or a dict: a check of its own (it may use `TWO_DEVICES`), reported as it is.
"""

import importlib
import json
import os
import sys

# `import tensorflow` 2.21 loads parts of keras.src, which import pandas, scikit-learn and
# matplotlib when they are installed (as the test extras install them), for nothing that
# runs here: made unimportable, they cost this process none of its import time.
sys.modules.update(dict.fromkeys(("pandas", "sklearn", "matplotlib"), None))

import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
# Grappler's graph rewrites are TensorFlow's own and the same for both sides of each
# comparison; without them the first call of each traced function costs less (an eighth
# of this process's time). The equalities checked here are of the models' arithmetic.
tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tfssl import data, models, testing  # noqa: E402

ALPHA = 0.6


# One strategy per device set for the whole process: a second MirroredStrategy over the
# same devices restarts the collective instance keys and its collectives can collide with
# the first one's ("Collective instance N expected type ...").
TWO_DEVICES = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
# One device under a one-device MirroredStrategy, not without a strategy: the factories'
# pipelines are not all `tf.data` ones of dense tensors, and for the others `fit` under a
# strategy draws one extra iterator for its build (SemiSupervisedModel's
# `_maybe_symbolic_build`), so a dataset that reshuffles each epoch would run one epoch
# ahead of the same `fit` without a strategy.
ONE_DEVICE = tf.distribute.MirroredStrategy(["/cpu:0"])


def _largest_copy_difference(model):
    largest = 0.0
    for variable in model.weights:
        values = getattr(variable.value, "values", None)
        if values is not None and len(values) > 1:
            copies = [v.numpy() for v in values]
            largest = max(largest, float(np.max(np.abs(copies[0] - copies[1]), initial=0.0)))
    return largest


# Steps per `tf.function` call of the one-device run: 2 over 3 batches an epoch (48 rows of
# the tiny data in batches of 16), so that a call of fewer steps ends each epoch.
ONE_DEVICE_STEPS_PER_EXECUTION = 2


def _train_factory(factory, strategy, epochs=2, steps_per_execution=1):
    """`(model, history)`, or the factory's dict when it is a check of its own."""
    keras.utils.set_random_seed(0)
    with strategy.scope():
        built = factory()
        if isinstance(built, dict):
            return built, None
        model, dataset, *fit_arguments = built
        if not model.compiled:
            model.compile(
                optimizer=keras.optimizers.SGD(0.1), steps_per_execution=steps_per_execution
            )
    fit_arguments = dict(fit_arguments[0]) if fit_arguments else {}
    epochs += fit_arguments.get("initial_epoch", 0)
    history = model.fit(dataset, epochs=epochs, verbose=0, **fit_arguments)
    return model, history.history


def _factory(spec):
    module_name, function_name, *argument = spec.split(":", 2)
    function = getattr(importlib.import_module(module_name), function_name)
    return lambda: function(*argument)


def compare_factories(specs):
    """`{spec: {"num_replicas", "num_variables", "weights_differ", "loss_differ",
    "copies_differ"}}`, or the dict of a check of its own; an exception in one spec is
    reported as `{"error": ...}`."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    results = {}
    for spec in specs:
        try:
            factory = _factory(spec)
            distributed, history_2 = _train_factory(factory, TWO_DEVICES)
            if isinstance(distributed, dict):
                results[spec] = distributed
                continue
            single, history_1 = _train_factory(
                factory, ONE_DEVICE, steps_per_execution=ONE_DEVICE_STEPS_PER_EXECUTION
            )
        except Exception as error:  # reported per spec, so one model cannot hide the others
            results[spec] = {"error": f"{type(error).__name__}: {error}"}
            continue
        results[spec] = {
            "num_replicas": TWO_DEVICES.num_replicas_in_sync,
            "num_variables": [len(distributed.weights), len(single.weights)],
            "copies_differ": _largest_copy_difference(distributed),
            "weights_differ": max(
                float(np.max(np.abs(a.numpy() - b.numpy()), initial=0.0))
                for a, b in zip(distributed.weights, single.weights)
            ),
            "loss_differ": max(
                abs(a - b) for a, b in zip(history_2["loss"], history_1["loss"])
            ),
        }
    return results


def ensemble_with_zero_learning_rate():
    """A check of its own: Temporal Ensembling trained 3 epochs with SGD(0), its ensemble
    on both replicas against `(1 - alpha^3)` times the logits."""
    keras.utils.set_random_seed(0)
    x, _, y_semi = testing.tiny_data()
    with TWO_DEVICES.scope():
        model = models.TemporalEnsembling(
            testing.tiny_backbone(), len(x), 3, num_labeled=12, ramp_up_epochs=2,
            max_unsupervised_weight=10.0, alpha=ALPHA,
        )
        model.compile(optimizer=keras.optimizers.SGD(0.0))
    model.fit(data.make_dataset(x, y_semi, batch_size=16), epochs=3, verbose=0)
    copies = [v.numpy() for v in model.ensemble.value.values]
    logits = model.backbone.predict(x, verbose=0)
    return {
        "lr0_num_replicas": len(copies),
        "lr0_max_error": float(np.max(np.abs(copies[0] - (1 - ALPHA**3) * logits))),
        "lr0_copies_differ": float(np.max(np.abs(copies[0] - copies[1]))),
    }


def compile_refusals_on_two_replicas():
    """A check of its own: the errors of `compile` with `jit_compile=True` and with
    `steps_per_execution=2` on two replicas (text, or None when `compile` accepted it)."""
    messages = {}
    for name, arguments in (("jit_compile", {"jit_compile": True}),
                            ("steps_per_execution", {"steps_per_execution": 2})):
        with TWO_DEVICES.scope():
            model = models.PiModel(testing.tiny_backbone())
        try:
            model.compile(optimizer="sgd", **arguments)
            messages[name] = None
        except ValueError as error:
            messages[name] = str(error)
    return messages


def main(specs):
    """Prints `compare_factories(specs)` as JSON."""
    json.dump(compare_factories(specs), sys.stdout)
