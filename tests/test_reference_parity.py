"""Parity of tfssl's Keras ports with the seeds' TF1 code (tfssl.reference), and checks of
the TF1 reference itself against numpy."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfssl import data, models
from tfssl.reference.mixup import mixup
from tfssl.reference.seed_ops import run_in_graph
from tfssl.reference.temporal_ensemble import TemporalEnsembleGraph, dense_network_fn

tf1 = tf.compat.v1

N, D, H, C, BATCH, EPOCHS = 22, 5, 7, 3, 8, 4  # 3 batches per epoch, the last one of 6
ALPHA, LR = 0.6, 0.5
# Two float32 implementations of the same 12 steps differ by their rounding only: a compared
# value goes through about 30 float32 roundings a step (the 5-7-3 forward and backward pass,
# the optimizer update, the ensemble average), so it may differ by 12 * 30 * 2**-24 = 2.1e-5
# of the largest value it is computed from: its array's largest entry, at least 1 for the loss
# terms (softmax probabilities). Measured: at most 5e-6 of it (the bias of the hidden layer
# with Adam).
REL_TOL = 12 * 30 * 2.0**-24


def _tol(reference, floor=0.0):
    """The absolute tolerance of a compared array: REL_TOL of its largest entry."""
    return REL_TOL * max(float(np.abs(reference).max()), floor)


TERMS = ("loss", "supervised_loss", "consistency_loss", "unsupervised_weight")


def _problem():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, D)).astype("float32")
    y = rng.integers(0, C, size=N)
    y[rng.permutation(N)[:14]] = data.UNLABELED
    keras.utils.set_random_seed(0)
    weights = [
        rng.normal(scale=0.7, size=(D, H)).astype("float32"),
        rng.normal(scale=0.1, size=(H,)).astype("float32"),
        rng.normal(scale=0.7, size=(H, C)).astype("float32"),
        rng.normal(scale=0.1, size=(C,)).astype("float32"),
    ]
    params = {
        "sample_size": N,
        "label_size": C,
        "labeled_size": int(np.sum(y != data.UNLABELED)),
        "max_unsupervised_weight": 100.0,
        "ramp_up_epochs": EPOCHS - 1,  # the last epoch is the end of the ramp-up
        "ramp_up_method": "sigmoid",
    }
    return x, y, weights, params


def _keras_optimizer(name):
    if name == "sgd":
        return keras.optimizers.SGD(LR)
    return keras.optimizers.Adam(0.02, epsilon=1e-7)


def _tf1_optimizer(name):
    if name == "sgd":
        return tf1.train.GradientDescentOptimizer(LR)
    return tf1.train.AdamOptimizer(0.02, epsilon=1e-7)


def _run_keras(dataset, weights, params, target, optimizer):
    """Trains the Keras port with fit; records the logs, ensemble and weights per step."""
    backbone = keras.Sequential(
        [keras.Input((D,)), keras.layers.Dense(H, activation="relu"), keras.layers.Dense(C)]
    )
    backbone.set_weights(weights)
    model = models.TemporalEnsembling(
        backbone,
        num_samples=N,
        num_classes=C,
        alpha=ALPHA,
        target=target,
        num_labeled=params["labeled_size"],
        max_unsupervised_weight=params["max_unsupervised_weight"],
        ramp_up_method=params["ramp_up_method"],
        ramp_up_epochs=params["ramp_up_epochs"],
    )
    model.compile(optimizer=_keras_optimizer(optimizer))
    steps = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            steps.append(
                {
                    "terms": {name: float(logs[name]) for name in TERMS},
                    "ensemble": model.ensemble.numpy().copy(),
                    "counts": model.ensemble_counts.numpy().copy(),
                    "weights": [w.copy() for w in backbone.get_weights()],
                }
            )

    model.fit(dataset, epochs=EPOCHS, verbose=0, callbacks=[Record()])
    return steps


def _run_reference(dataset, weights, params, target, optimizer, bias_correction=True):
    """Trains the TF1 graph on the same batches; terms are running means per epoch, as
    Keras logs them."""
    steps = []
    with TemporalEnsembleGraph(
        dense_network_fn(weights),
        (D,),
        params,
        _tf1_optimizer(optimizer),
        alpha=ALPHA,
        target=target,
        bias_correction=bias_correction,
    ) as graph:
        for epoch in range(EPOCHS):
            history = {name: [] for name in TERMS}
            for features, labels in dataset:
                terms = graph.train_step(
                    features["x"].numpy(), features["idx"].numpy(), labels.numpy(), epoch
                )
                for name in TERMS:
                    history[name].append(terms[name])
                ensemble, counts = graph.ensemble()
                steps.append(
                    {
                        "terms": {name: np.mean(values) for name, values in history.items()},
                        "ensemble": ensemble,
                        "counts": counts,
                        "weights": graph.weights(),
                    }
                )
    return steps


@pytest.mark.parametrize(
    "target,optimizer", [("seed", "sgd"), ("seed", "adam"), ("paper", "sgd"), ("paper", "adam")]
)
def test_temporal_ensembling_matches_tf1_reference(target, optimizer):
    x, y, weights, params = _problem()
    dataset = data.make_dataset(x, y, batch_size=BATCH, shuffle=False)
    keras_steps = _run_keras(dataset, weights, params, target, optimizer)
    reference_steps = _run_reference(dataset, weights, params, target, optimizer)
    assert tf.executing_eagerly()  # the TF1 graph did not switch eager execution off
    assert len(keras_steps) == len(reference_steps) == 3 * EPOCHS
    for step, (ours, theirs) in enumerate(zip(keras_steps, reference_steps)):
        for name in TERMS:
            np.testing.assert_allclose(
                ours["terms"][name],
                theirs["terms"][name],
                atol=_tol(theirs["terms"][name], floor=1.0),
                err_msg=f"{name} @{step}",
            )
        np.testing.assert_allclose(
            ours["ensemble"], theirs["ensemble"], atol=_tol(theirs["ensemble"])
        )
        np.testing.assert_array_equal(ours["counts"], theirs["counts"])
        for a, b in zip(ours["weights"], theirs["weights"]):
            np.testing.assert_allclose(a, b, atol=_tol(b), err_msg=f"weights @{step}")
    # The comparison covers a consistency term that matters: weighted and non-zero late on.
    last = reference_steps[-1]["terms"]
    assert last["unsupervised_weight"] > 10.0
    assert last["consistency_loss"] > 1e-4
    np.testing.assert_array_equal(reference_steps[-1]["counts"], np.full(N, EPOCHS))
    assert np.abs(reference_steps[-1]["weights"][0] - weights[0]).max() > 0.05


def test_parity_detects_a_different_target():
    # The seed's raw target (no startup-bias correction) must not pass as the port's.
    x, y, weights, params = _problem()
    dataset = data.make_dataset(x, y, batch_size=BATCH, shuffle=False)
    keras_steps = _run_keras(dataset, weights, params, "seed", "sgd")
    raw_steps = _run_reference(dataset, weights, params, "seed", "sgd", bias_correction=False)
    ours, raw = keras_steps[-1]["terms"], raw_steps[-1]["terms"]
    assert abs(ours["consistency_loss"] - raw["consistency_loss"]) > 10 * _tol(1.0)
    weights_ours, weights_raw = keras_steps[-1]["weights"][0], raw_steps[-1]["weights"][0]
    assert np.abs(weights_ours - weights_raw).max() > 100 * _tol(weights_raw)


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _np_logits(weights, x):
    k0, b0, k1, b1 = [w.astype(np.float64) for w in weights]
    return np.maximum(x @ k0 + b0, 0.0) @ k1 + b1


@pytest.mark.parametrize(
    "target,bias_correction", [("seed", True), ("seed", False), ("paper", True)]
)
def test_reference_step_matches_numpy(target, bias_correction):
    x, y, weights, params = _problem()
    # Two labeled rows; the batch's rows 0-3 were averaged in once, rows 4-5 never.
    idx = np.array([3, 7, 11, 0, 15, 20])
    first = idx[:4]
    labels = np.array([2, -1, -1, 0, -1, -1], dtype=np.int32)
    epoch = 2
    with TemporalEnsembleGraph(
        dense_network_fn(weights),
        (D,),
        params,
        tf1.train.GradientDescentOptimizer(LR),
        alpha=ALPHA,
        target=target,
        bias_correction=bias_correction,
    ) as graph:
        # A first step that moves the weights, so that the ensemble lags behind them.
        graph.train_step(x[first], first, np.array([1, -1, 0, 2], np.int32), epoch=0)
        ensemble, counts = graph.ensemble()
        w = graph.weights()
        terms = graph.train_step(x[idx], idx, labels, epoch)
        new_ensemble, new_counts = graph.ensemble()

    logits = _np_logits(w, x[idx].astype(np.float64))
    previous, t = ensemble[idx].astype(np.float64), counts[idx][:, None]
    updated = ALPHA * previous + (1 - ALPHA) * logits
    if target == "paper":
        target_logits = np.where(t > 0, previous / np.where(t > 0, 1 - ALPHA**t, 1.0), logits)
    elif bias_correction:
        target_logits = updated / (1 - ALPHA ** (t + 1))
    else:
        target_logits = updated
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    labeled = labels != -1
    supervised = -log_probs[labeled, labels[labeled]].sum() / len(idx)
    consistency = np.mean((_softmax(logits) - _softmax(target_logits)) ** 2)
    ramp = np.exp(-5.0 * (1.0 - epoch / params["ramp_up_epochs"]) ** 2)
    weight = ramp * params["max_unsupervised_weight"] * params["labeled_size"] / N
    expected = {
        "supervised_loss": supervised,
        "consistency_loss": consistency,
        "unsupervised_weight": weight,
        "loss": supervised + weight * consistency,
    }
    for name, value in expected.items():
        np.testing.assert_allclose(terms[name], value, rtol=1e-5, atol=1e-7, err_msg=name)
    assert consistency > 1e-4
    np.testing.assert_array_equal(counts[idx], [1, 1, 1, 1, 0, 0])
    np.testing.assert_allclose(new_ensemble[idx], updated, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(new_counts[idx], counts[idx] + 1)
    untouched = np.setdiff1d(np.arange(N), idx)
    np.testing.assert_array_equal(new_ensemble[untouched], ensemble[untouched])


def test_reference_weight_is_zero_at_epoch_zero():
    x, y, weights, params = _problem()
    with TemporalEnsembleGraph(
        dense_network_fn(weights), (D,), params, tf1.train.GradientDescentOptimizer(LR)
    ) as graph:
        idx = np.arange(BATCH)
        zero = graph.train_step(x[idx], idx, y[idx].astype(np.int32), epoch=0)
        one = graph.train_step(x[idx], idx, y[idx].astype(np.int32), epoch=1)
    assert zero["unsupervised_weight"] == 0.0
    ramp = np.exp(-5.0 * (1.0 - 1 / params["ramp_up_epochs"]) ** 2)
    expected = ramp * params["max_unsupervised_weight"] * params["labeled_size"] / N
    np.testing.assert_allclose(one["unsupervised_weight"], expected, rtol=1e-6)


def test_reference_rejects_bad_arguments():
    _, _, weights, params = _problem()
    network_fn = dense_network_fn(weights)
    sgd = tf1.train.GradientDescentOptimizer
    with pytest.raises(ValueError, match="alpha=1.0"):
        TemporalEnsembleGraph(network_fn, (D,), params, sgd(LR), alpha=1.0)
    with pytest.raises(ValueError, match="target='mean'"):
        TemporalEnsembleGraph(network_fn, (D,), params, sgd(LR), target="mean")
    with pytest.raises(ValueError, match="labeled_size"):
        incomplete = {k: v for k, v in params.items() if k != "labeled_size"}
        TemporalEnsembleGraph(network_fn, (D,), incomplete, sgd(LR))
    with pytest.raises(ValueError, match="Received 3 arrays"):
        dense_network_fn(weights[:3])


# ----------------------------------------------------------------------------- mixup
def _np_mixup(x, y, label_size, mix, index):
    mix = max(mix, 1.0 - mix)
    one_hot = np.eye(label_size)[y]
    return x * mix + x[index] * (1 - mix), one_hot * mix + one_hot[index] * (1 - mix)


@pytest.mark.parametrize("mix", [0.8, 0.3, 0.5])
def test_mixup_matches_numpy_with_fixed_draws(mix):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 4, 2)).astype("float32")
    y = np.array([0, 3, 1, 1, 2, 3])
    index = np.array([2, 0, 5, 1, 3, 4])
    xmix, ymix = run_in_graph(mixup, x, y, 4, 0.2, mix=np.array([mix], "float32"), index=index)
    expected_x, expected_y = _np_mixup(x, y, 4, mix, index)
    np.testing.assert_allclose(xmix, expected_x, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ymix, expected_y, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ymix.sum(axis=1), 1.0, rtol=1e-6)


@pytest.mark.slow  # a statistical test over many draws
def test_mixup_beta_draws_are_at_least_one_half():
    # With index = swap of two rows x = [1, 0], xmix[0] is the (maxed) draw itself.
    x, y, swap = np.array([[1.0], [0.0]], "float32"), np.array([0, 1]), np.array([1, 0])
    alpha = 0.2

    with tf.Graph().as_default():
        xmix, _ = mixup(x, y, 2, alpha, index=swap, seed=0)
        with tf1.Session() as session:
            # Each run of the graph draws a new Beta sample.
            mixes = np.array([session.run(xmix)[0, 0] for _ in range(400)])
    assert np.all(mixes >= 0.5) and np.all(mixes <= 1.0)
    assert mixes.std() > 0.05  # real draws, not a constant
    beta = np.random.default_rng(0).beta(alpha, alpha, size=200_000)
    expected_mean = np.maximum(beta, 1 - beta).mean()
    assert abs(mixes.mean() - expected_mean) < 0.04


def test_mixup_random_index_is_a_permutation():
    x = np.arange(10, dtype="float32")[:, None] * 10.0
    y = np.arange(10) % 3
    mix = 0.7
    xmix, ymix = run_in_graph(mixup, x, y, 3, 1.0, mix=mix, seed=3)
    partners = np.rint((xmix[:, 0] - mix * x[:, 0]) / (1 - mix) / 10.0).astype(int)
    assert sorted(partners) == list(range(10))
    _, expected_y = _np_mixup(x, y, 3, mix, partners)
    np.testing.assert_allclose(ymix, expected_y, rtol=1e-6, atol=1e-6)


def test_mixup_rejects_non_positive_alpha():
    with pytest.raises(ValueError, match="alpha=0.0"):
        run_in_graph(mixup, np.zeros((2, 1), "float32"), np.array([0, 1]), 2, 0.0)
