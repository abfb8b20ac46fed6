"""Runs tfssl models under MirroredStrategy on two logical CPU devices; prints JSON.

Started in a process of its own (logical devices must be configured before TensorFlow
initialises, which a pytest process importing TensorFlow already did):

- without arguments, by test_distributed.py: Temporal Ensembling and Mean Teacher;
- with `module:function` arguments, by `mirrored_utils.mirrored_equivalence`: each function
  (importable from the tests folder) takes no argument and returns `(model, dataset)`; it is
  called inside the strategy's scope, the model is compiled with SGD(0.1) unless the function
  compiled it, trained for 2 epochs on two devices and on one, and the JSON reports, per
  function, the largest difference between the two runs' weights and losses and between the
  two replicas' copies of any variable.
"""

import importlib
import json
import os
import sys

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tfssl import data, models, testing  # noqa: E402

ALPHA = 0.6


# One strategy per device set for the whole process: a second MirroredStrategy over the
# same devices restarts the collective instance keys and its collectives can collide with
# the first one's ("Collective instance N expected type ...").
TWO_DEVICES = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
ONE_DEVICE = tf.distribute.MirroredStrategy(["/cpu:0"])


def train(model_class, strategy, learning_rate, epochs, **kwargs):
    keras.utils.set_random_seed(0)
    x, _, y_semi = testing.tiny_data()
    with strategy.scope():
        model = model_class(
            testing.tiny_backbone(),
            len(x),
            3,
            num_labeled=12,
            ramp_up_epochs=2,
            max_unsupervised_weight=10.0,
            **kwargs,
        )
        model.compile(optimizer=keras.optimizers.SGD(learning_rate))
    history = model.fit(data.make_dataset(x, y_semi, batch_size=16), epochs=epochs, verbose=0)
    return model, x, history.history


def replica_copies(variable):
    return [v.numpy() for v in variable.value.values]


def _largest_copy_difference(model):
    largest = 0.0
    for variable in model.weights:
        values = getattr(variable.value, "values", None)
        if values is not None and len(values) > 1:
            copies = [v.numpy() for v in values]
            largest = max(largest, float(np.max(np.abs(copies[0] - copies[1]), initial=0.0)))
    return largest


def _train_factory(factory, strategy, epochs=2):
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model, dataset = factory()
        if not model.compiled:
            model.compile(optimizer=keras.optimizers.SGD(0.1))
    history = model.fit(dataset, epochs=epochs, verbose=0)
    return model, history.history


def compare_factories(specs):
    """`{spec: {"weights_differ", "loss_differ", "copies_differ", "num_replicas"}}`."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    results = {}
    for spec in specs:
        module_name, function_name = spec.split(":")
        factory = getattr(importlib.import_module(module_name), function_name)
        distributed, history_2 = _train_factory(factory, TWO_DEVICES)
        single, history_1 = _train_factory(factory, ONE_DEVICE)
        results[spec] = {
            "num_replicas": TWO_DEVICES.num_replicas_in_sync,
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


def main():
    if len(sys.argv) > 1:
        json.dump(compare_factories(sys.argv[1:]), sys.stdout)
        return
    results = {}

    model, x, _ = train(models.TemporalEnsembling, TWO_DEVICES, 0.0, 3, alpha=ALPHA)
    copies = replica_copies(model.ensemble)
    logits = model.backbone.predict(x, verbose=0)
    results["lr0_num_replicas"] = len(copies)
    results["lr0_max_error"] = float(np.max(np.abs(copies[0] - (1 - ALPHA**3) * logits)))
    results["lr0_copies_differ"] = float(np.max(np.abs(copies[0] - copies[1])))

    for name, model_class, kwargs in [
        ("te", models.TemporalEnsembling, {"alpha": ALPHA}),
        ("mt", models.MeanTeacher, {"rampup_ema_decay": 0.9}),
    ]:
        distributed, _, history_2 = train(model_class, TWO_DEVICES, 0.1, 3, **kwargs)
        single, _, history_1 = train(model_class, ONE_DEVICE, 0.1, 3, **kwargs)
        state = distributed.ensemble if name == "te" else distributed.teacher.weights[0]
        copies = replica_copies(state)
        results[f"{name}_copies_differ"] = float(np.max(np.abs(copies[0] - copies[1])))
        results[f"{name}_weights_differ"] = max(
            float(np.max(np.abs(a.numpy() - b.numpy())))
            for a, b in zip(distributed.weights, single.weights)
        )
        results[f"{name}_loss_differ"] = max(
            abs(a - b) for a, b in zip(history_2["loss"], history_1["loss"])
        )
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
