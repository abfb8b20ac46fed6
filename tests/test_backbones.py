"""Backbones: shapes, stochastic only in training, and argument errors."""

import numpy as np
import pytest

from tfssl import backbones


@pytest.mark.parametrize(
    "build",
    [
        lambda: backbones.conv_net((28, 28, 1), 10, width=0.0625, seed=0),
        lambda: backbones.mlp((28, 28, 1), 10, units=(32,), seed=0),
    ],
    ids=["conv_net", "mlp"],
)
def test_logits_shape_and_noise_only_in_training(build):
    model = build()
    images = np.random.default_rng(0).uniform(size=(4, 28, 28, 1)).astype("float32")
    assert model(images).shape == (4, 10)
    np.testing.assert_allclose(model(images, training=False), model(images, training=False))
    first, second = model(images, training=True), model(images, training=True)
    assert np.max(np.abs(first - second)) > 1e-6


def test_conv_net_width_scales_filters():
    narrow = backbones.conv_net((28, 28, 1), 10, width=0.125)
    wide = backbones.conv_net((28, 28, 1), 10, width=0.25)
    assert wide.count_params() > 3 * narrow.count_params()


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: backbones.conv_net((28, 28), 10), r"input_shape=\(28, 28\)"),
        (lambda: backbones.conv_net((28, 28, 1), 10, width=0), "width=0"),
        (lambda: backbones.conv_net((28, 28, 1), 10, dropout=1.0), "dropout=1.0"),
        (lambda: backbones.mlp((784,), 10, units=()), r"units=\(\)"),
        (lambda: backbones.mlp((784,), 10, noise_stddev=-1), "noise_stddev=-1"),
    ],
)
def test_bad_arguments_are_named(build, message):
    with pytest.raises(ValueError, match=message):
        build()
