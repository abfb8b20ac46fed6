"""The contract every tfssl model keeps, as one reusable check.

`check_model_contract(make_model)` trains a model for one epoch on tiny data and checks
what any method must do: finite loss terms, backbone weights that move, state that stays
consistent, a config round trip, a `.keras` reload that predicts the same and keeps training
from the same state, and a SavedModel export that serves the same predictions. Method
specific rules (the ensemble update, the teacher's EMA) are checked by each method's tests
against their formulas.

Example:

```python
def make_model(backbone, num_samples, num_classes):
    return tfssl.models.TemporalEnsembling(backbone, num_samples, num_classes)

tfssl.testing.check_model_contract(make_model, tmp_dir)
```
"""

import os

import keras
import numpy as np
import tensorflow as tf

from tfssl import data, export

__all__ = ["check_model_contract", "tiny_backbone", "tiny_data"]


def tiny_data(num_samples=48, num_features=6, num_classes=3, num_labeled=12, seed=0):
    """Random features, labels that depend on them, and the first rows labeled.

    Returns:
        `(x, y, y_semi)`: float32 `(num_samples, num_features)`, int64 labels and the same
        labels with `-1` past the first `num_labeled` rows.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num_samples, num_features)).astype("float32")
    y = np.argmax(x[:, :num_classes], axis=1).astype("int64")
    y_semi = y.copy()
    y_semi[num_labeled:] = data.UNLABELED
    return x, y, y_semi


def tiny_backbone(num_features=6, num_classes=3, dropout=0.0, seed=0):
    """A small dense network returning logits; stochastic only if `dropout > 0`."""
    layers = [keras.Input((num_features,), name="x"), keras.layers.Dense(8, activation="tanh")]
    if dropout:
        layers.append(keras.layers.Dropout(dropout, seed=seed))
    layers.append(keras.layers.Dense(num_classes))
    return keras.Sequential(layers)


def check_model_contract(make_model, directory, epochs=1):
    """Runs the shared checks on the model that `make_model` builds.

    Args:
        make_model: Callable `(backbone, num_samples, num_classes) -> model`.
        directory: A writable folder for the `.keras` file and the export.
        epochs: Epochs of the training run. Defaults to `1`.

    Returns:
        The trained model.

    Raises:
        AssertionError: If the model breaks the contract; the message says which part.
    """
    keras.utils.set_random_seed(0)
    x, _, y_semi = tiny_data()
    model = make_model(tiny_backbone(dropout=0.2), len(x), 3)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), metrics=["accuracy"])
    dataset = data.make_dataset(x, y_semi, batch_size=16, shuffle=True, seed=0)
    before = [w.numpy().copy() for w in model.backbone.trainable_weights]
    history = model.fit(dataset, epochs=epochs, verbose=0)
    for name in model.loss_terms + model.schedule_terms:
        values = history.history.get(name)
        assert values is not None, f"fit did not report {name!r}: {sorted(history.history)}"
        assert np.all(np.isfinite(values)), f"{name} is not finite: {values}"
    assert "accuracy" in history.history, f"no accuracy in {sorted(history.history)}"
    moved = [
        not np.allclose(b, w.numpy()) for b, w in zip(before, model.backbone.trainable_weights)
    ]
    assert all(moved), "some backbone weights did not move after a training epoch"

    config = model.get_config()
    clone = type(model).from_config(config)
    assert clone.get_config() == config, "get_config/from_config does not round-trip"

    path = os.path.join(directory, "model.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(
        reloaded.predict(x, verbose=0),
        model.predict(x, verbose=0),
        atol=1e-5,
        err_msg=".keras reload predicts differently",
    )
    for original, restored in zip(model.weights, reloaded.weights):
        np.testing.assert_allclose(
            restored.numpy(),
            original.numpy(),
            atol=1e-6,
            err_msg=f"{original.path} differs after .keras reload",
        )
    assert reloaded.optimizer is not None, "the compile configuration was not restored"
    np.testing.assert_allclose(
        int(reloaded.optimizer.iterations.numpy()),
        int(model.optimizer.iterations.numpy()),
        err_msg="optimizer state was not restored",
    )
    reloaded.fit(dataset, epochs=1, verbose=0)

    served = tf.saved_model.load(
        export.export_saved_model(model, os.path.join(directory, "export"))
    )
    outputs = served.signatures["serving_default"](x=tf.constant(x))
    np.testing.assert_allclose(
        outputs["logits"].numpy(),
        model.predict(x, verbose=0),
        atol=1e-5,
        err_msg="the SavedModel serves different logits",
    )
    return model
