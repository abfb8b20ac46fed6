"""The contract every tfssl model keeps, as one reusable check, and the tiny models it runs.

`check_model_contract(make_model)` trains a model for one epoch on tiny data and checks
what any method must do: every loss term reported and finite, backbone weights that move,
a config round trip, a `.keras` reload that holds the same variables, predicts the same and
keeps training from the same state (two more steps after the reload equal two more steps
without it), and a SavedModel export that serves the same predictions. It does not test
the values of the loss terms: each method's tests compare them with the paper's formula on
a fixed batch.

`build_model(model_class)` builds any model of `tfssl.models` on tiny backbones from its
constructor's signature, so a suite can cover a new model without naming it:

- `num_samples` gets the number of rows of `tiny_data` when the signature has it;
- every other required parameter names a network (`backbone`, `student`, `teacher`, ...)
  and gets a fresh `tiny_backbone`; one named in the plural (`models`) gets a list of two;
- a model whose defaults cannot run on `tiny_data` (image augmentations on 6 features),
  whose step is not a deterministic function of the batch and the weights (random views;
  rounding noise that two device layouts sum differently) or whose defaults skip a part
  of the method (stored predictions, a pseudo-label mask) has an entry in
  `CONTRACT_ARGUMENTS`: the keyword arguments that make it run, deterministically, all of
  it. A callable value is called
  for each model, so that every model gets layers of its own.

A model whose step draws mixing partners (`draw_mixing(num_rows)` returning `(lam, index,
*rest)`, as `MixupModel` and `MixMatch`) draws them per replica from each replica's rows;
`fix_mixing_draws` replaces the draws by fixed ones (lam 0.7, each row with its neighbour),
under which two replicas can equal one device.

Example:

```python
def make_model(backbone, num_samples, num_classes):
    return tfssl.models.TemporalEnsembling(backbone, num_samples, num_classes)

tfssl.testing.check_model_contract(make_model, tmp_dir)
model = tfssl.testing.build_model(tfssl.models.FixMatch)
```
"""

import functools
import inspect
import os

import keras
import numpy as np
import tensorflow as tf

from tfssl import data, export, models
from tfssl.models import policies

__all__ = [
    "CONTRACT_ARGUMENTS",
    "build_model",
    "check_model_contract",
    "fix_mixing_draws",
    "model_arguments",
    "model_classes",
    "tiny_backbone",
    "tiny_data",
]

_FIXED_VIEWS = {
    "weak_augment": keras.layers.Identity,
    "strong_augment": functools.partial(keras.layers.Rescaling, 0.5, offset=0.1),
}

# Keyword arguments of the models that `build_model` cannot run from their signature alone,
# or whose defaults leave the part of the method that replicas must agree on unexercised;
# callables are called once per model (see the module docstring).
CONTRACT_ARGUMENTS = {
    # PGD with one norm over the global batch: the attack's all-reduce runs.
    "AdversarialTraining": {"method": "pgd", "norm": "batch"},
    # Image augmentations by default (the FixMatch family): fixed views instead, weak the
    # input and strong 0.5 x + 0.1; thresholds that 3 classes reach, so that the unlabeled
    # term is not empty, and momenta of 0.5, so that the running statistics (class-wise
    # counts, confidences, class distributions) move visibly in a few steps and replicas
    # must all-reduce them to agree.
    "AdaMatch": {
        **_FIXED_VIEWS,
        "threshold": 0.7,
        "distribution_alignment": lambda: policies.DistributionAlignment(0.5, "labeled"),
    },
    "FixMatch": {**_FIXED_VIEWS, "threshold": 0.4},
    "FlexMatch": {**_FIXED_VIEWS, "threshold": 0.4},
    "FreeMatch": {
        **_FIXED_VIEWS,
        "fairness_weight": 1.0,
        "pseudo_label_policy": lambda: policies.FreeMatchThreshold(0.5),
    },
    "SoftMatch": {**_FIXED_VIEWS, "pseudo_label_policy": lambda: policies.SoftMatchWeight(0.5)},
    "UDA": {
        **_FIXED_VIEWS,
        "threshold": 0.4,
        "distribution_alignment": True,
        "training_signal_annealing": lambda: policies.TrainingSignalAnnealing(6, "log"),
    },
    # Image augmentations by default: the views are the input.
    "MixMatch": {"augment": keras.layers.Identity},
    # A threshold that 3 classes cross on some rows only: the mask is neither empty nor full.
    "PseudoLabel": {"threshold": 0.4},
    # The previous version's predictions stored per sample (its per-sample state).
    "ReLoop": {"update_previous": True},
    # With xi = 1e-6 the power iteration's direction is float32 rounding noise, which 8-row
    # and 16-row matmuls round differently (the class docstring); xi = 1e-2 is above it.
    "VAT": {"xi": 1e-2, "epsilon": 1.0, "entropy_minimization": True, "seed": 5},
}


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


def model_classes():
    """The methods that `tfssl.models` exports: its `keras.Model` classes but the abstract
    `SemiSupervisedModel` (which has no `compute_losses` of its own).

    Returns:
        A list of classes, sorted by name.
    """
    found = []
    for name in sorted(models.__all__):
        value = getattr(models, name)
        if (
            inspect.isclass(value)
            and issubclass(value, keras.Model)
            and value.compute_losses is not models.SemiSupervisedModel.compute_losses
        ):
            found.append(value)
    return found


def model_arguments(model_class, backbone=None, num_samples=48):
    """The constructor arguments under which `build_model` builds `model_class`.

    Args:
        model_class: A `keras.Model` subclass of `tfssl.models`.
        backbone: The network passed to the first required parameter. Defaults to `None`:
            a fresh `tiny_backbone()`.
        num_samples: Passed as `num_samples` when the signature has it. Defaults to `48`,
            the rows of `tiny_data()`.

    Returns:
        A dict of keyword arguments: the model's `CONTRACT_ARGUMENTS` (callables called),
        `num_samples`, and a fresh tiny backbone (a list of two for a plural name) for
        every other required parameter.
    """
    arguments = {
        key: value() if callable(value) else value
        for key, value in CONTRACT_ARGUMENTS.get(model_class.__name__, {}).items()
    }
    parameters = list(inspect.signature(model_class.__init__).parameters.values())[1:]
    if "num_samples" in [p.name for p in parameters]:
        arguments.setdefault("num_samples", num_samples)
    networks = [] if backbone is None else [backbone]
    for parameter in parameters:
        required = parameter.default is inspect.Parameter.empty and parameter.kind in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            inspect.Parameter.KEYWORD_ONLY,
        )
        if not required or parameter.name in arguments:
            continue
        if parameter.name.endswith("s"):
            arguments[parameter.name] = [_next_network(networks), _next_network(networks)]
        else:
            arguments[parameter.name] = _next_network(networks)
    return arguments


def build_model(model_class, backbone=None, num_samples=48, **kwargs):
    """Builds `model_class` on tiny backbones from its constructor's signature.

    Args:
        model_class: A `keras.Model` subclass of `tfssl.models`.
        backbone: The network passed to the first required parameter. Defaults to `None`:
            a fresh `tiny_backbone()`.
        num_samples: Passed as `num_samples` when the signature has it. Defaults to `48`,
            the rows of `tiny_data()`.
        **kwargs: More constructor arguments; they override `model_arguments`.

    Returns:
        The model.

    Raises:
        ValueError: If the model cannot be built that way; the message says what its
            author should add to `CONTRACT_ARGUMENTS`.
    """
    arguments = model_arguments(model_class, backbone, num_samples)
    arguments.update(kwargs)
    try:
        return model_class(**arguments)
    except (TypeError, ValueError) as error:
        name = model_class.__name__
        raise ValueError(
            f"tfssl.testing.build_model cannot build {name} on tiny_data from its signature "
            f"({type(error).__name__}: {error}). Add to tfssl.testing.CONTRACT_ARGUMENTS an "
            f"entry {name!r}: {{keyword: value or callable}} with the arguments under which "
            f"it runs on 6 float features and 3 classes, its step a deterministic function "
            f"of the batch. Received: model_class={model_class!r}"
        ) from error


def _next_network(networks):
    """The backbone given to `build_model` first, fresh tiny backbones after it."""
    if networks:
        return networks.pop()
    return tiny_backbone(seed=0)


def fix_mixing_draws(model, lam=0.7):
    """Replaces a mixing model's random draws by fixed ones, for a deterministic step.

    `model.draw_mixing(num_rows)` returns `(lam, index, *rest)`; afterwards `lam` is filled
    with `lam`, each row's partner is its neighbour (`i xor 1`, the same rows on one device
    and on replicas holding even halves of a batch) and the rest (a mixing place) is 0.

    Args:
        model: A model with a `draw_mixing` method (`MixupModel`, `MixMatch`).
        lam: The mixing weight. Defaults to `0.7`.

    Returns:
        `model`.

    Raises:
        ValueError: If the model has no `draw_mixing`.
    """
    draw = getattr(model, "draw_mixing", None)
    if draw is None:
        raise ValueError(f"The model draws no mixing partners. Received: model={model!r}")

    def fixed(num_rows):
        drawn_lam, _, *rest = draw(num_rows)
        index = tf.bitwise.bitwise_xor(tf.range(num_rows), 1)
        return (tf.fill(tf.shape(drawn_lam), lam), index, *[tf.zeros_like(r) for r in rest])

    model.draw_mixing = fixed
    return model


def check_model_contract(make_model, directory, epochs=1):
    """Runs the shared checks on the model that `make_model` builds.

    The checks, in order: `fit` reports every name of `loss_terms` and `schedule_terms`,
    finite (their values are not compared with a formula here); every backbone weight
    moves; `get_config` round-trips; the `.keras` reload has as many variables as the
    model, each equal, predicts the same and keeps the optimizer's step; two more steps of
    the reloaded model equal two more steps of the model (same batches, same seeds, float32
    arithmetic in the same order); a SavedModel export (`directory/export/<version>`, of the
    returned model's final state) serves the same logits.

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
    _assert_same_variables(model, reloaded, ".keras reload")
    # Inference-mode calls, what `predict`'s step runs, without tracing it for each model.
    # atol: the same float32 weights and inputs give the same logits up to the summation
    # order of another compiled function, a few ulps of logits of order 1.
    np.testing.assert_allclose(
        np.asarray(reloaded(x, training=False)),
        np.asarray(model(x, training=False)),
        atol=1e-5,
        err_msg=".keras reload predicts differently",
    )
    assert reloaded.optimizer is not None, "the compile configuration was not restored"
    assert int(reloaded.optimizer.iterations.numpy()) == int(
        model.optimizer.iterations.numpy()
    ), "optimizer state was not restored"

    # Two more steps on the same batches from the same random state, with and without the
    # reload in between. Keras does not save `SeedGenerator` states (dropout's, augmentation
    # layers'): they are copied over, so the comparison is of the state the file holds.
    for original, restored in zip(_seed_states(model), _seed_states(reloaded)):
        restored.assign(original)
    # Both run eagerly: the same operations in the same order on both sides, without
    # tracing the reloaded model's step again (`fit` above traced the model's).
    two_batches = data.make_dataset(x, y_semi, batch_size=16).take(2)
    for trained in (model, reloaded):
        trained.run_eagerly = True
        trained.make_train_function(force=True)
        keras.utils.set_random_seed(1)
        trained.fit(two_batches, epochs=1, verbose=0)
        trained.run_eagerly = False
        trained.make_train_function(force=True)
    _assert_same_variables(model, reloaded, "two steps after the .keras reload")

    served = tf.saved_model.load(
        export.export_saved_model(model, os.path.join(directory, "export"))
    )
    outputs = served.signatures["serving_default"](x=tf.constant(x))
    # atol: as for the reload, another graph of the same float32 computation.
    np.testing.assert_allclose(
        outputs["logits"].numpy(),
        np.asarray(model(x, training=False)),
        atol=1e-5,
        err_msg="the SavedModel serves different logits",
    )
    return model


def _seed_states(model):
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


def _saved_variables(model):
    return [v for v in model.variables if not v.path.endswith("seed_generator_state")]


def _assert_same_variables(model, reloaded, what):
    """The two models' variables (but the seed generators', which Keras does not save) are
    as many, in the same order, and equal."""
    variables, reloaded_variables = _saved_variables(model), _saved_variables(reloaded)
    paths = [v.path for v in variables]
    reloaded_paths = [v.path for v in reloaded_variables]
    assert len(paths) == len(reloaded_paths), (
        f"{what}: {len(reloaded_paths)} variables against {len(paths)}: "
        f"{sorted(set(paths) ^ set(reloaded_paths))}"
    )
    for original, restored in zip(variables, reloaded_variables):
        # atol: the same float32 operations in the same order give the same bits; one
        # ulp of values of order 1 is allowed for a kernel that fuses differently.
        np.testing.assert_allclose(
            np.asarray(restored.numpy(), "float64"),
            np.asarray(original.numpy(), "float64"),
            rtol=0,
            atol=1e-6,
            err_msg=f"{original.path} differs: {what}",
        )
