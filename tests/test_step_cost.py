"""`steps_per_execution` changes no result, and benchmarks/step_cost.py's record and report."""

import importlib.util
import os

import keras
import numpy as np
import pytest

from multiworker_utils import METHODS, model_state
from tfssl import data, testing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# step_cost imports the harness as `benchmarking.*` (it puts estimators/ on the path itself).
_spec = importlib.util.spec_from_file_location(
    "step_cost", os.path.join(ROOT, "benchmarks", "step_cost.py")
)
step_cost = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(step_cost)

def _train(method, steps_per_execution):
    model_class, kwargs = METHODS[method]
    keras.utils.set_random_seed(0)
    x, _, y_semi = testing.tiny_data()
    model = model_class(
        testing.tiny_backbone(dropout=0.2), num_samples=len(x), num_labeled=12,
        ramp_up_epochs=2, max_unsupervised_weight=10.0, **kwargs,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(0.01), metrics=["accuracy"],
        steps_per_execution=steps_per_execution,
    )
    # 48 rows in batches of 10: 5 steps an epoch, not a multiple of 2 or 4.
    dataset = data.make_dataset(x, y_semi, batch_size=10, shuffle=True, seed=0)
    history = model.fit(dataset, epochs=3, verbose=0)
    return model, history.history


# Each method with a number of steps per call that leaves a shorter last call in every epoch
# (5 steps: 4 + 1 and 2 + 2 + 1): the two counts are the same property, one case each.
@pytest.mark.slow
@pytest.mark.parametrize("method, steps_per_execution", [("te", 4), ("mt", 2)])
def test_steps_per_execution_gives_identical_results(method, steps_per_execution):
    """Several steps per call run the same steps in the same order: weights, optimizer
    slots, ensemble or teacher, epoch and every logged value are bit for bit the same."""
    one, one_history = _train(method, 1)
    several, several_history = _train(method, steps_per_execution)
    assert one_history == several_history
    state, other_state = model_state(one), model_state(several)
    assert sorted(state) == sorted(other_state)
    assert any("ensemble" in path or "teacher" in path for path in state)
    for path, value in state.items():
        np.testing.assert_array_equal(other_state[path], value, err_msg=path)


def _entry(result, xla_flags=""):
    return {"command": "PYTHONPATH=$PWD .venv/bin/python benchmarks/step_cost.py x",
            "xla_flags": xla_flags, "machine": "2 CPUs (a CPU)", "date": "d", "commit": "c",
            "result": result}


def _row(ms, ratio):
    return {"ms": ms, "ratio": ratio, "ratio_iqr": [ratio - 0.01, ratio + 0.01]}


def test_speed_markdown_renders_the_record():
    profile = {"te_fit": {"ms": 3.0, "ratio": 1.5, "fit loop and callbacks": 0.5,
                          "data iterator": 0.25, "batch checks": 0.25,
                          "non-finite guard": 0.0625, "metrics": 0.0625,
                          "the step itself": 2.0},
               "tf1_graph": {"ms": 2.0, "ratio": 1.0, "data iterator": 0.0,
                             "batch checks": 0.0, "non-finite guard": 0.0, "metrics": 0.0,
                             "the step itself": 2.0}}
    record = {"sections": {
        "speed": _entry({"supervised": _row(6.0, 1.0), "mean_teacher": _row(7.5, 1.25)}),
        "tf1": _entry({"tf1_graph": _row(2.0, 1.0), "te_fit": _row(1.8, 0.9)}),
        "profile": _entry(profile),
        "xla": _entry({"temporal_ensembling": _row(7.0, 1.1),
                       "temporal_ensembling_xla": _row(56.0, 9.2)}),
        "xla XLA_FLAGS=--f": _entry({"temporal_ensembling": _row(7.0, 1.1),
                                     "temporal_ensembling_xla": _row(6.0, 0.95)}, "--f"),
    }}
    text = step_cost.speed_markdown(record)
    assert "| Mean Teacher | 7.50 | 1.250 (1.24–1.26) |" in text
    assert "| Keras TE `fit` | 1.80 | 0.90 |" in text
    assert "| outside the step function (Python) | 0.50 | – |" in text
    assert "| batch checks | 0.25 | 0.00 |" in text
    assert "| **total** | **3.00** | **2.00** |" in text
    assert "| Temporal Ensembling | 1.10 | 9.20 |" in text
    assert "| Temporal Ensembling | 1.10 | 0.95 |" in text
    assert "(`XLA_FLAGS`: --f)" in text
    assert text.count("Command: `PYTHONPATH=$PWD .venv/bin/python benchmarks/step_cost.py x`") == 5


def test_compare_flags_a_ratio_beyond_the_tolerance():
    record = {"sections": {"tf1": _entry({"te_fit": _row(1.8, 1.0), "te_xla": _row(2.0, 2.0)})}}
    rows = step_cost.compare(record, "tf1", {"te_fit": _row(1.9, 1.1), "te_xla": _row(2, 2.5),
                                             "new": _row(1, 1.0)}, tolerance=0.15)
    assert rows == [("te_fit", 1.0, 1.1, True), ("te_xla", 2.0, 2.5, False)]


def test_record_keys_keep_runs_with_xla_flags_apart():
    assert step_cost.record_key("xla", "") == "xla"
    assert step_cost.record_key("xla", "--f") == "xla XLA_FLAGS=--f"
    entry = step_cost.record_entry("xla", {}, ["--sections", "xla"], "--f")
    assert entry["command"] == (
        "XLA_FLAGS=--f PYTHONPATH=$PWD .venv/bin/python benchmarks/step_cost.py --sections xla"
    )
