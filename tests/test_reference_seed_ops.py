"""Parity of tfssl's ports with the seeds' TF1 code run in a v1 graph and Session."""

import numpy as np
import pytest
import tensorflow as tf

from tfssl import losses, schedules
from tfssl.reference import seed_ops


@pytest.mark.parametrize("method", ["linear", "sigmoid", "cosine"])
def test_ramp_up_matches_seed(method):
    graph_port = tf.function(lambda e, m: schedules.ramp_up(e, m, method))
    for max_epoch in (1, 10, 80):
        for cur_epoch in sorted({0, 1, 2, max_epoch // 2, max_epoch - 1, max_epoch}):
            seed = seed_ops.run_in_graph(seed_ops.ramp_up, cur_epoch, max_epoch, method)
            assert seed.dtype == np.float32
            port = schedules.ramp_up(cur_epoch, max_epoch, method)
            np.testing.assert_allclose(float(port), seed, rtol=1e-6, atol=1e-6)
            traced = graph_port(tf.constant(cur_epoch), tf.constant(max_epoch))
            np.testing.assert_allclose(float(traced), seed, rtol=1e-6, atol=1e-6)


def test_seed_ramp_up_rejects_unknown_method_like_the_port():
    with pytest.raises(ValueError, match="Only linear, sigmoid, cosine"):
        seed_ops.run_in_graph(seed_ops.ramp_up, 3, 10, "cosine_rampup")


@pytest.mark.parametrize("seed", range(5))
def test_f1_loss_matches_seed_on_random_batches(seed):
    rng = np.random.default_rng(seed)
    batch, classes = rng.integers(2, 40), rng.integers(2, 8)
    y_true = np.eye(classes, dtype="float32")[rng.integers(0, classes, batch)]
    logits = rng.normal(size=(batch, classes)) * 3
    y_pred = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype("float32")
    expected = seed_ops.run_in_graph(seed_ops.f1_loss, y_true, y_pred)
    np.testing.assert_allclose(float(losses.f1_loss(y_true, y_pred)), expected, atol=1e-6)


def test_f1_loss_matches_seed_on_edge_cases():
    # Class 1 never occurs and is never predicted: epsilon makes its F1 0 (not NaN).
    y_true = np.array([[1, 0, 0], [0, 0, 1], [1, 0, 0]], "float32")
    y_pred = np.array([[0.9, 0.0, 0.1], [0.2, 0.0, 0.8], [0.6, 0.0, 0.4]], "float32")
    # A NaN prediction in class 2: the seed's NaN -> 0 branch.
    y_pred_nan = y_pred.copy()
    y_pred_nan[1, 2] = np.nan
    for pred in (y_pred, y_pred_nan):
        expected = seed_ops.run_in_graph(seed_ops.f1_loss, y_true, pred)
        assert np.isfinite(expected)
        np.testing.assert_allclose(float(losses.f1_loss(y_true, pred)), expected, atol=1e-6)


def test_run_in_graph_leaves_eager_mode_on():
    seed_ops.run_in_graph(seed_ops.ramp_up, 1, 2, "linear")
    assert tf.executing_eagerly()
