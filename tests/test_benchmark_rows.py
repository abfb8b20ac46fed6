"""The benchmark rows of issues 16 and 19 (self-training, Distiller, ReLoop, label smoothing),
their `train` hook, and the compiled metrics of multi-label models (`unpack_batch`)."""

import dataclasses
import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfssl import data, models, testing

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "estimators"))

from benchmarking import methods, protocols, runner  # noqa: E402

NEW_ROWS = ("self_training", "distiller", "reloop", "supervised_ls", "mean_teacher_ls")


@pytest.fixture(scope="module")
def quick():
    """The quick clean-1000 protocol (150 rows, 50 labeled, tiny mlp) and its rows."""
    protocol = dataclasses.replace(protocols.PROTOCOLS["clean-1000"].quick(), epochs=2)
    return protocol, protocols.load(protocol, seed=0)


def _run(name, protocol, rows, **hyper):
    method = methods.METHODS[name]
    return runner.fit_and_evaluate(
        method, {**method.hyper_for(protocol.name), **hyper}, protocol, rows, 0,
        protocols.BACKBONES[protocol.backbone].build,
    )


def test_new_rows_are_registered_off_by_default_and_out_of_the_speed_section(quick):
    protocol, _ = quick
    assert all(not methods.METHODS[name].default for name in NEW_ROWS)
    assert not set(NEW_ROWS) & set(methods.default_methods())
    planned, _ = runner.plan(["clean-1000"], list(NEW_ROWS), [0], ["speed"], True, [])
    # Multi-stage entries have no single step; the label-smoothed ones are timed as theirs.
    assert planned[0].methods == ("supervised", "mean_teacher_ls")


@pytest.fixture(scope="module")
def two_stage_runs(quick):
    """The supervised run, the Distiller row and the ReLoop row with weight 0 (its first
    stage does not depend on the weight), trained once for the tests below."""
    protocol, rows = quick
    return (_run("supervised", protocol, rows), _run("distiller", protocol, rows),
            _run("reloop", protocol, rows, weight=0.0))


def test_first_stage_of_distiller_and_reloop_is_the_supervised_run(quick, two_stage_runs):
    protocol, _ = quick
    supervised, distiller, reloop = two_stage_runs
    assert distiller["teacher_accuracy"] == supervised["accuracy"]
    assert reloop["previous_accuracy"] == supervised["accuracy"]
    assert distiller["steps"] == reloop["steps"] == 2 * supervised["steps"] == 2 * protocol.steps
    for result in (distiller, reloop):
        assert 0.0 <= result["accuracy"] <= 1.0


def test_reloop_with_weight_zero_is_its_previous_version(two_stage_runs):
    # Same init, batches and steps as the previous version: without the self-correction
    # term the next version is the same model.
    _, _, reloop = two_stage_runs
    assert reloop["accuracy"] == reloop["previous_accuracy"]


def test_self_training_row_splits_the_budget_between_its_fits(quick):
    protocol, rows = quick
    protocol = dataclasses.replace(protocol, epochs=4)  # 16 steps: 4 for each of 4 fits
    result = _run("self_training", protocol, rows, rounds=3, threshold=0.0)
    assert result["steps"] == protocol.steps == 16
    unlabeled = int(np.sum(rows["y_semi"] == data.UNLABELED))
    # Threshold 0: round 0 adds the whole pool; nothing is left for rounds 1 and 2.
    assert [r["num_added"] for r in result["rounds"]] == [unlabeled, 0, 0]
    assert [r["num_pseudo_labeled"] for r in result["rounds"]] == [unlabeled] * 3
    assert 0.0 <= result["rounds"][0]["pseudo_label_accuracy"] <= 1.0
    assert result["rounds"][1]["pseudo_label_accuracy"] is None


@pytest.mark.parametrize("name", ["fixmatch", "flexmatch", "softmatch"])
def test_pseudo_label_rows_record_the_monitors_figures_each_epoch(quick, name):
    protocol, rows = quick
    result = _run(name, protocol, rows)
    for figure in ("mask_rate", "pseudo_label_mask_rate", "pseudo_label_accuracy_all"):
        assert len(result["history"][figure]) == protocol.epochs, figure


def test_label_smoothing_rows(quick):
    protocol, rows = quick
    model, steps = runner.fit_model(
        methods.METHODS["supervised_ls"], {"label_smoothing": 0.1}, protocol, rows, 0,
        protocols.BACKBONES[protocol.backbone].build,
    )
    assert steps == protocol.steps
    assert isinstance(model.loss, keras.losses.CategoricalCrossentropy)
    assert model.loss.get_config()["label_smoothing"] == pytest.approx(0.1)
    plain = methods.METHODS["mean_teacher"].hyper_for(protocol.name)
    smoothed = methods.METHODS["mean_teacher_ls"].hyper_for(protocol.name)
    assert smoothed == {**plain, "label_smoothing": 0.1}
    teacher = methods.METHODS["mean_teacher_ls"].build(
        testing.tiny_backbone(num_classes=10), protocol, smoothed
    )
    assert teacher.label_smoothing == pytest.approx(0.1)


def _multilabel_batches(objective):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 6)).astype("float32")
    y = (x @ np.random.default_rng(99).normal(size=(6, 4)) > 0.3).astype("int64")
    y_semi = y.copy()
    y_semi[32:] = data.UNLABELED  # 32 labeled rows, 16 unlabeled (all -1)
    dataset = tf.data.Dataset.from_tensor_slices(({"x": x, "idx": np.arange(48)}, y_semi))
    keras.utils.set_random_seed(0)
    model = models.PiModel(
        testing.tiny_backbone(num_classes=4), supervised_objective=objective,
        max_unsupervised_weight=0.0,
    )
    return model, dataset.batch(16), x, y_semi


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["binary_crossentropy", "sigmoid_f1"])
def test_compiled_f1_score_on_multilabel_labels(objective):
    model, dataset, x, y_semi = _multilabel_batches(objective)
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        metrics=[keras.metrics.F1Score(average="macro", threshold=0.5)],
    )
    _, _, labels = model.unpack_batch(next(iter(dataset)))
    assert labels.shape == (16, 4)
    history = model.fit(dataset, epochs=2, verbose=0).history
    assert np.all(np.isfinite(history["f1_score"]))
    reported = model.evaluate(dataset, verbose=0, return_dict=True)["f1_score"]
    # By hand: Keras' F1Score on the labeled rows' sigmoid probabilities.
    labeled = np.all(y_semi != data.UNLABELED, axis=1)
    metric = keras.metrics.F1Score(average="macro", threshold=0.5)
    metric.update_state(
        y_semi[labeled].astype("float32"), tf.sigmoid(model.predict(x[labeled], verbose=0))
    )
    print(f"{objective}: compiled keras.metrics.F1Score (macro) {reported:.4f}")
    np.testing.assert_allclose(reported, float(metric.result()), rtol=1e-5)


def test_integer_labels_are_still_flattened():
    model = models.PiModel(testing.tiny_backbone(num_classes=4))
    x = np.zeros((3, 6), "float32")
    _, _, labels = model.unpack_batch(({"x": x, "idx": np.arange(3)}, np.array([[0], [3], [-1]])))
    assert labels.shape == (3,)
    np.testing.assert_array_equal(labels, [0, 3, -1])
