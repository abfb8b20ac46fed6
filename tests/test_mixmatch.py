"""MixMatch and tfssl.losses.sharpen against numpy computations with fixed augmentations and
draws; the contract, serving, MirroredStrategy, bad input."""

import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfssl import backbones, data, losses, models, schedules, testing

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "estimators"))
from benchmarking import methods, protocols, runner  # noqa: E402 (the harness, in estimators/)

NUM_CLASSES = 3


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _np_sharpen(p, temperature):
    powered = p ** (1.0 / temperature)
    return powered / powered.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 0.1])
def test_sharpen_is_the_tempered_renormalisation(temperature):
    p = _softmax(np.random.default_rng(0).normal(size=(5, 4)))
    sharpened = losses.sharpen(p, temperature).numpy()
    np.testing.assert_allclose(sharpened, _np_sharpen(p, temperature), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(sharpened.sum(axis=1), 1.0, rtol=1e-6)
    if temperature < 1:
        assert np.all(sharpened.max(axis=1) >= p.max(axis=1) - 1e-7)


@pytest.mark.parametrize("temperature", [0.0, -0.5])
def test_sharpen_rejects_a_non_positive_temperature(temperature):
    with pytest.raises(ValueError, match=f"temperature={temperature}"):
        losses.sharpen([[0.5, 0.5]], temperature)


class ShiftByCall(keras.layers.Layer):
    """A fixed augmentation: the k-th call (from 1) adds 0.1 k, so the views are known and
    none is the raw batch (a labeled row mixed unaugmented would not match)."""

    def build(self, input_shape):
        self.calls = self.add_weight(shape=(), initializer="zeros", trainable=False)

    def call(self, x, training=None):
        self.calls.assign_add(1.0)
        return x + 0.1 * self.calls


# K=3 with one lam for the batch: the guess averages three views, the scalar lam broadcasts.
@pytest.mark.parametrize("K, lam_per_row", [(2, True), (3, False)])
def test_guess_mixed_batch_and_loss_equal_numpy_with_fixed_augmentations_and_draws(
    K, lam_per_row
):
    x, _, y_semi = testing.tiny_data()  # rows 0-11 labeled, 12-47 unlabeled
    T, lambda_u = 0.5, 75.0
    model = models.MixMatch(
        testing.tiny_backbone(),
        augment=ShiftByCall(),
        K=K,
        T=T,
        lambda_u=lambda_u,
        ramp_up_epochs=4,
    )
    model.epoch.assign(2)  # linear ramp: half of lambda_u
    labeled = y_semi != data.UNLABELED
    num_rows = labeled.sum() + K * (~labeled).sum()
    rng = np.random.default_rng(1)
    lam = rng.uniform(0.5, 1.0, size=num_rows if lam_per_row else ()).astype("float32")
    index = rng.permutation(num_rows).astype("int32")
    model.draw_mixing = lambda n: (tf.constant(lam), tf.constant(index))
    terms, outputs = model.compute_losses(x, None, tf.constant(y_semi, tf.int32))

    backbone = lambda v: model.backbone(v.astype("float32")).numpy()  # noqa: E731
    views = [x + 0.1 * k for k in range(1, K + 1)]
    mean_prediction = np.mean([_softmax(backbone(v[~labeled])) for v in views], axis=0)
    guess = _np_sharpen(mean_prediction, T)
    np.testing.assert_allclose(outputs["guess"], guess, rtol=1e-5, atol=1e-6)

    inputs = np.concatenate([views[0][labeled]] + [v[~labeled] for v in views])
    targets = np.concatenate([np.eye(NUM_CLASSES)[y_semi[labeled]]] + [guess] * K)
    weight = lam.reshape(-1, 1)
    mixed_inputs = weight * inputs + (1 - weight) * inputs[index]
    mixed_targets = weight * targets + (1 - weight) * targets[index]
    np.testing.assert_allclose(outputs["mixed_inputs"], mixed_inputs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outputs["mixed_targets"], mixed_targets, rtol=1e-5, atol=1e-6)

    logits = backbone(mixed_inputs)
    n = labeled.sum()
    log_p = np.log(_softmax(logits[:n]))
    cross_entropy = -np.mean(np.sum(mixed_targets[:n] * log_p, axis=1))
    l2 = np.mean((mixed_targets[n:] - _softmax(logits[n:])) ** 2)
    np.testing.assert_allclose(terms["supervised_loss"], cross_entropy, rtol=1e-5)
    np.testing.assert_allclose(terms["consistency_loss"], l2, rtol=1e-5)
    np.testing.assert_allclose(terms["unsupervised_weight"], lambda_u * 0.5, rtol=1e-6)
    np.testing.assert_allclose(terms["loss"], cross_entropy + lambda_u * 0.5 * l2, rtol=1e-5)


def test_the_guess_is_held_fixed():
    x, _, y_semi = testing.tiny_data()
    model = models.MixMatch(testing.tiny_backbone(), augment=keras.layers.GaussianNoise(0.1))
    with tf.GradientTape(persistent=True) as tape:
        terms, outputs = model.compute_losses(x, None, tf.constant(y_semi, tf.int32))
    weights = model.backbone.trainable_weights
    assert all(g is None for g in tape.gradient(outputs["guess"], weights))
    assert all(g is not None for g in tape.gradient(terms["consistency_loss"], weights))


@pytest.mark.parametrize("run_eagerly", [False, True])
def test_batch_of_one_kind_of_row_is_a_finite_step(run_eagerly):
    """Graph or eager, a batch without labels has a zero supervised term and one without
    unlabeled rows a zero consistency term; both steps apply finite weights."""
    x, y, _ = testing.tiny_data()
    model = models.MixMatch(
        testing.tiny_backbone(), augment=keras.layers.GaussianNoise(0.1), ramp_up_epochs=1
    )
    model.compile(optimizer="sgd", run_eagerly=run_eagerly)
    batch = {"x": x[:16], "idx": np.arange(16)}
    unlabeled = model.train_on_batch(batch, np.full(16, data.UNLABELED), return_dict=True)
    labeled = model.train_on_batch(batch, y[:16], return_dict=True)
    assert unlabeled["supervised_loss"] == 0.0 and unlabeled["consistency_loss"] > 0.0
    assert labeled["consistency_loss"] == 0.0 and labeled["supervised_loss"] > 0.0
    assert int(model.optimizer.iterations.numpy()) == 2
    assert all(np.all(np.isfinite(w.numpy())) for w in model.backbone.weights)


def test_default_draw_folds_one_lambda_per_row_or_per_batch():
    for per_row, shape in ((True, (40,)), (False, ())):
        model = models.MixMatch(
            testing.tiny_backbone(),
            augment=keras.layers.Identity(),
            lambda_per_row=per_row,
            seed=0,
        )
        lam, index = model.draw_mixing(40)
        assert lam.shape == shape and np.all(lam.numpy() >= 0.5)
        assert sorted(index.numpy()) == list(range(40))


def test_default_augmentation_is_the_papers_for_images():
    model = models.MixMatch(backbones.mlp((28, 28, 1), 10, units=(8,)))
    assert model.augment.name == "augmentation"
    kinds = {type(layer).__name__ for layer in model.augment.layers}
    assert kinds == {"RandomTranslation", "GaussianNoise"}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"K": 0}, "K=0"),
        ({"K": 1.5}, "K=1.5"),
        ({"T": 0.0}, "T=0.0"),
        ({"T": -1}, "T=-1"),
        ({"alpha": 0}, "alpha=0"),
        ({"lambda_u": -1.0}, "lambda_u=-1.0"),
        ({"lambda_u": 1.0, "max_unsupervised_weight": 10.0}, "max_unsupervised_weight=10.0"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        models.MixMatch(testing.tiny_backbone(), augment=keras.layers.Identity(), **kwargs)


def test_non_image_backbone_needs_an_augmentation():
    with pytest.raises(ValueError, match=r"Received: augment=None, input shape \(6,\)"):
        models.MixMatch(testing.tiny_backbone())


@pytest.mark.parametrize("max_translation, kinds", [
    (2, {"RandomTranslation", "GaussianNoise"}), (0, {"GaussianNoise"}),
])
def test_benchmark_entry_builds_its_settings_and_trains(max_translation, kinds):
    entry = methods.METHODS["mixmatch"]
    protocol = protocols.PROTOCOLS["clean-1000"].quick()
    hyper = dict(entry.hyper_for("clean-1000"), max_translation=max_translation)
    model = entry.build(protocols.BACKBONES["mlp-tiny"].build(), protocol, hyper)
    assert isinstance(model, models.MixMatch) and not entry.default
    assert {type(layer).__name__ for layer in model.augment.layers} == kinds
    config = model.get_config()
    for name in ("K", "T", "alpha"):
        assert config[name] == hyper[name], name
    assert model.weight_schedule == schedules.RampUpWeight(
        hyper["lambda_u"], hyper["ramp_up_epochs"], "linear"
    )
    assert config["supervised_normalize"] == protocol.supervised_normalize
    if max_translation:  # one short run through the benchmark's own training code is enough
        rng = np.random.default_rng(0)
        x = rng.uniform(size=(protocol.train_size, 28, 28, 1)).astype("float32")
        y = rng.integers(0, 10, protocol.train_size)
        rows = {"x": x, "y_semi": data.mask_labels(y, protocol.num_labeled, seed=0),
                "x_test": x[:20], "y_test": y[:20]}
        result = runner.fit_and_evaluate(
            entry, hyper, protocol, rows, 0, protocols.BACKBONES["mlp-tiny"].build
        )
        assert result["steps"] == protocol.steps and 0.0 <= result["accuracy"] <= 1.0
