"""The contract of every model that `tfssl.models` exports, found by introspection.

A new `keras.Model` in `tfssl.models.__all__` is covered without editing this file: it is
built by `tfssl.testing.build_model` from its constructor's signature (a model that cannot
be built that way fails here with a message saying what to add to
`tfssl.testing.CONTRACT_ARGUMENTS`). For each model:

- `tfssl.testing.check_model_contract`: loss terms reported and finite, weights that
  move, the config and `.keras` round trips (every variable, the running statistics of
  the pseudo-label policies included), training that resumes from the same state;
- the SavedModel of `tfssl.export.export_saved_model` of the model that the contract
  trained serves `predict`'s logits in a fresh process that imports only TensorFlow, for
  all models in one process;
- bad arguments raise `ValueError` naming the bad value.

Two replicas against one device, for every model as well, are in test_two_replicas.py.

And the `.keras` files of tests/fixtures, saved at commit 311bb0d with the configs of
that commit, still load, predict the same and train on.
"""

import importlib.util
import inspect
import os
import re

import keras
import numpy as np
import pytest

from serving_utils import serve_many_in_fresh_process
from tfssl import models, testing


MODEL_NAMES = [model_class.__name__ for model_class in testing.model_classes()]


def test_the_models_are_found():
    exported = [getattr(models, name) for name in models.__all__]
    classes = [c.__name__ for c in exported if inspect.isclass(c) and issubclass(c, keras.Model)]
    assert sorted(MODEL_NAMES + ["SemiSupervisedModel"]) == sorted(classes)
    for name in MODEL_NAMES:
        assert issubclass(getattr(models, name), models.SemiSupervisedModel), name


@pytest.fixture(scope="module")
def contract_run(tmp_path_factory):
    """`check_model_contract` on each model, run once in this module: the fresh-process
    serving test serves the SavedModels that it exported.

    Returns:
        A function `name -> (trained model, its contract's folder)` that raises the
        contract's error again.
    """
    runs = {}

    def run(name):
        if name not in runs:
            model_class = getattr(models, name)
            directory = str(tmp_path_factory.mktemp(name))
            try:
                model = testing.check_model_contract(
                    lambda backbone, num_samples, num_classes: testing.build_model(
                        model_class, backbone=backbone, num_samples=num_samples
                    ),
                    directory,
                )
                runs[name] = (model, directory)
            except Exception as error:  # kept, and raised again for each test that asks
                runs[name] = error
        if isinstance(runs[name], Exception):
            raise runs[name]
        return runs[name]

    return run


@pytest.mark.slow
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_contract(name, contract_run):
    contract_run(name)


@pytest.fixture(scope="module")
def served(contract_run):
    """The SavedModel that each model's contract exported last (from its final state), of
    every model that passed its contract, served in one fresh process."""
    x, _, _ = testing.tiny_data()
    runs = {}
    for name in MODEL_NAMES:
        try:
            model, directory = contract_run(name)
        except Exception:  # test_contract reports it; its serving test fails below
            continue
        (version,) = os.listdir(os.path.join(directory, "export"))
        path = os.path.join(directory, "export", version)
        runs[name] = (path, model.predict(x, verbose=0))
    outputs = serve_many_in_fresh_process([(path, "x", x) for path, _ in runs.values()])
    return {name: (expected, out) for (name, (_, expected)), out in zip(runs.items(), outputs)}


@pytest.mark.integration  # a fresh process, as test_export.py's and test_text.py's
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_fresh_process_serving_matches_predict(name, served):
    assert name in served, f"{name} broke its contract (test_contract[{name}])"
    expected, outputs = served[name]
    # atol: the same float32 graph in another process, a few ulps of logits of order 1.
    np.testing.assert_allclose(outputs["logits"], expected, atol=1e-5)
    probabilities = np.exp(expected) / np.exp(expected).sum(-1, keepdims=True)
    np.testing.assert_allclose(outputs["probabilities"], probabilities, atol=1e-5)
    np.testing.assert_array_equal(outputs["classes"], np.argmax(expected, -1))


def _first_network(model_class):
    return list(inspect.signature(model_class.__init__).parameters)[1]


BAD_ARGUMENTS = {
    "on_nonfinite": ("sometimes", "on_nonfinite='sometimes'"),
    "num_classes": (5, "num_classes=5"),
    "label_smoothing": (1.5, "label_smoothing=1.5"),
    "num_samples": (-3, "num_samples=-3"),
    "network": ("not a model", "'not a model'"),
}


@pytest.mark.parametrize(
    "name, argument",
    [(name, argument) for name in MODEL_NAMES for argument in BAD_ARGUMENTS],
)
def test_bad_arguments_are_named(name, argument):
    model_class = getattr(models, name)
    value, message = BAD_ARGUMENTS[argument]
    arguments = testing.model_arguments(model_class)
    if argument == "network":
        argument = _first_network(model_class)
        if isinstance(arguments[argument], list):
            value = [value, *arguments[argument][1:]]
    arguments[argument] = value
    with pytest.raises(ValueError, match=re.escape(message)):
        model_class(**arguments)


def test_a_model_that_cannot_be_built_says_what_to_provide():
    class NeedsAShape(models.PiModel):
        def __init__(self, backbone, input_shape, **kwargs):
            super().__init__(backbone, **kwargs)
            self.input_shape_ = tuple(input_shape)

    with pytest.raises(ValueError, match=r"CONTRACT_ARGUMENTS an entry 'NeedsAShape'"):
        testing.build_model(NeedsAShape)


FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
# Loaded by path: a module named `fixtures` may be installed (the `fixtures` package).
_spec = importlib.util.spec_from_file_location(
    "saved_models", os.path.join(FIXTURES, "saved_models.py")
)
saved_models = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(saved_models)
SAVED_AT_311BB0D = sorted(
    name[: -len(".keras")] for name in os.listdir(FIXTURES) if name.endswith(".keras")
)


def test_every_model_of_311bb0d_has_a_saved_file():
    assert SAVED_AT_311BB0D == sorted(saved_models.BUILDERS)


@pytest.mark.slow  # an earlier version's file of every model, loaded and trained on
@pytest.mark.parametrize("name", SAVED_AT_311BB0D)
def test_a_keras_file_saved_at_311bb0d_loads_predicts_and_trains_on(name):
    """The files of tests/fixtures (made by tests/fixtures/saved_models.py at 311bb0d)
    load with their old schedule arguments, predict what they predicted then, and take one
    more training step to the same loss, unsupervised weight and weights."""
    model = keras.saving.load_model(os.path.join(FIXTURES, f"{name}.keras"))
    assert type(model).__name__ == name
    with np.load(os.path.join(FIXTURES, f"{name}.npz")) as saved:
        record = dict(saved)
    # An inference-mode call, what `predict`'s step runs, without tracing it.
    # atol: the same float32 weights and inputs; the summation order of another CPU's
    # kernels moves logits of order 1 by a few ulps.
    np.testing.assert_allclose(np.asarray(model(record["x"], training=False)),
                               record["predictions"], atol=1e-5)
    # The step runs eagerly: the same operations as the graph that recorded it, without
    # tracing a step for each model.
    model.run_eagerly = True
    logs = saved_models.one_step(model, record)
    # rtol: one step's float32 loss and weight, the same operations as then.
    for term in ("loss", "unsupervised_weight"):
        if f"step_{term}" in record:
            np.testing.assert_allclose(logs[term], record[f"step_{term}"], rtol=1e-5,
                                       err_msg=term)
    weights = model.backbone.get_weights()
    assert len(weights) == len([k for k in record if k.startswith("step_weight_")])
    for i, weight in enumerate(weights):
        # atol: one Adam step of lr 1e-2 from the same state, in float32 (weights of
        # order 1: a few ulps).
        np.testing.assert_allclose(weight, record[f"step_weight_{i}"], atol=1e-5,
                                   err_msg=f"weight {i}")
