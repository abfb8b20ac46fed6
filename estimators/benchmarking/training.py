"""Training one registry entry on one protocol's rows: the step every experiment shares.

`fit_model` trains a `methods.Method` with one `fit` for the protocol's budget,
`fit_and_evaluate` adds the test (or validation) accuracy, or hands a method of several
stages to its own `train` hook. The benchmark (`runner`), the sweep (`estimators/sweep.py`),
the robustness records and the presets train through these two functions, so a number of one
comes from the same code as a number of another.
"""

import keras
import numpy as np
import tensorflow as tf

from benchmarking.protocols import NUM_CLASSES
from tfssl import data, models

__all__ = ["MONITOR_ROWS", "accuracy", "fit_and_evaluate", "fit_model", "test_accuracy"]

# Unlabeled training rows on which the pseudo-label methods' targets are scored each epoch
# (their true labels are hidden from training).
MONITOR_ROWS = 2000


def accuracy(model, x, y):
    """Test accuracy of the model's serving network (Mean Teacher: the teacher)."""
    logits = model.predict(x, batch_size=500, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == y))


def fit_and_evaluate(method, hyper, protocol, rows, seed, build_backbone, callbacks=(),
                     evaluate=None):
    """Trains `method` on `rows` (see `protocols.load`) and returns its test accuracy.

    A method with a `train` hook (several stages) is trained by it; any other by one
    `fit_model`.

    Args:
        evaluate: Optional `(model, x_test, y_test) -> dict` called after a single fit; its
            entries are added to the result.

    Returns:
        `{"accuracy", "steps"}`; after a single fit also `history` (the epoch-end logs of
        `fit`, `{name: [one value per epoch]}`) and the entries of `evaluate`; what a
        `train` hook adds.

    Raises:
        ValueError: If `evaluate` is given for a method with a `train` hook.
    """
    if method.train is not None:
        if evaluate is not None:
            raise ValueError(f"A method of several stages has no single model to evaluate. "
                             f"Received: evaluate={evaluate} for {method.label}")
        return method.train(protocol, hyper, rows, seed, build_backbone)
    history = keras.callbacks.History()
    model, steps = fit_model(method, hyper, protocol, rows, seed, build_backbone,
                             [*callbacks, history])
    result = {"accuracy": test_accuracy(model, rows), "steps": steps,
              "history": {name: [float(v) for v in values]
                          for name, values in history.history.items()}}
    if evaluate is not None:
        result.update(evaluate(model, rows["x_test"], rows["y_test"]))
    return result


def fit_model(method, hyper, protocol, rows, seed, build_backbone, callbacks=()):
    """Trains `method` on `rows` with one `fit` and returns `(model, optimizer steps)`.

    Every method takes the optimizer steps of one semi-supervised run: supervised-only
    draws its batches from the labeled rows and the ceiling from every row with its true
    label, both from endless reshuffled streams. A method with a `build` trains the model it
    builds (its own loss), on the semi-supervised batches or, with `data="labeled"`, on
    those of the labeled rows (adversarial training); without one the bare backbone trains
    with Keras' cross-entropy, smoothed when `hyper` has a `label_smoothing`. A model with a
    pseudo-label policy (Pseudo-Label, FixMatch and its adaptive family) is watched by
    `tfssl.models.PseudoLabelMonitor` on the first `MONITOR_ROWS` unlabeled rows.
    """
    x, y_semi = rows["x"], rows["y_semi"]
    keras.utils.set_random_seed(seed)
    semi = data.make_dataset(
        x, y_semi, batch_size=protocol.batch_size, shuffle=True, seed=seed,
        labeled_per_batch=hyper.get("labeled_per_batch", protocol.labeled_per_batch),
    )
    steps = int(semi.cardinality())
    backbone = build_backbone()
    optimizer = keras.optimizers.Adam(protocol.learning_rate)
    compile_kwargs = {"steps_per_execution": protocol.steps_per_execution,
                      "run_eagerly": protocol.run_eagerly}
    fit_kwargs = {}
    if method.data == "semi":
        train = semi
    else:
        if method.data == "labeled":
            (x_fit, y_fit), _ = data.split_labeled(x, y_semi)
        else:
            x_fit, y_fit = x, rows["y"]
        train = (
            tf.data.Dataset.from_tensor_slices((x_fit, y_fit))
            .shuffle(len(x_fit), seed=seed)
            .repeat()
            .batch(protocol.batch_size)
            .prefetch(tf.data.AUTOTUNE)
        )
        # The stream is shuffled by tf.data; Keras' own shuffle does not apply to it.
        fit_kwargs.update(steps_per_epoch=steps, shuffle=False)
    if method.build is not None:
        model = method.build(backbone, protocol, hyper)
        model.compile(optimizer=optimizer, **compile_kwargs)
    elif hyper.get("label_smoothing"):
        # Keras smooths one-hot targets only: the sparse loss has no label_smoothing.
        train = train.map(lambda x_batch, y_batch: (x_batch, tf.one_hot(y_batch, NUM_CLASSES)))
        model = backbone
        model.compile(
            optimizer=optimizer,
            loss=keras.losses.CategoricalCrossentropy(
                from_logits=True, label_smoothing=hyper["label_smoothing"]),
            **compile_kwargs,
        )
    else:
        model = backbone
        model.compile(
            optimizer=optimizer,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            **compile_kwargs,
        )
    callbacks = list(callbacks)
    if hasattr(model, "pseudo_label_policy"):
        unlabeled = np.flatnonzero(y_semi == -1)[:MONITOR_ROWS]
        # First: the callbacks after it (the caller's `History`) read the epoch's logs with
        # the monitor's figures in them.
        callbacks.insert(0, models.PseudoLabelMonitor(x[unlabeled], rows["y"][unlabeled]))
    model.fit(train, epochs=protocol.epochs, callbacks=callbacks, verbose=0, **fit_kwargs)
    return model, steps * protocol.epochs


def test_accuracy(model, rows):
    """Test accuracy of the model's serving network on the protocol's test rows."""
    return accuracy(model, rows["x_test"], rows["y_test"])
