"""tfssl.layers.Mixup: its draws measured statistically, against the seed's TF1 code and
against keras.layers.MixUp."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import integrate, stats

from tfssl import layers
from tfssl.reference import mixup as reference_mixup
from tfssl.reference import run_in_graph

NUM_CLASSES = 4


def _batch(batch_size=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch_size, 5)).astype("float32")
    y = rng.integers(0, NUM_CLASSES, size=batch_size)
    return x, y


def _folded_moment(alpha, power):
    """E[max(B, 1 - B) ** power] for B ~ Beta(alpha, alpha), by quadrature."""
    density = stats.beta(alpha, alpha).pdf
    value, _ = integrate.quad(lambda b: max(b, 1 - b) ** power * density(b), 0, 1, points=[0.5])
    return value


def _expected_lambda(alpha):
    """E[max(B, 1 - B)] for B ~ Beta(alpha, alpha)."""
    return _folded_moment(alpha, 1)


def _standard_error(alpha, draws):
    """Standard error of the mean of `draws` folded Beta(alpha, alpha) draws."""
    variance = _folded_moment(alpha, 2) - _folded_moment(alpha, 1) ** 2
    return np.sqrt(variance / draws)


def _convex_partners(x, x_mix):
    """For each mixed row, the `(lam, j)` with `x_mix[i] = lam x[i] + (1 - lam) x[j]`
    found by projection without knowing the draw; `(None, i)` for a row left as it is
    (its own partner, or `lam` so close to 1 that no partner can be told apart)."""
    found = []
    for i in range(len(x)):
        if np.allclose(x_mix[i], x[i], atol=1e-5):
            found.append((None, i))
            continue
        candidates = []
        for j in range(len(x)):
            if j == i:
                continue
            direction = x[i] - x[j]
            lam = float(np.dot(x_mix[i] - x[j], direction) / np.dot(direction, direction))
            if np.allclose(x_mix[i], lam * x[i] + (1 - lam) * x[j], atol=1e-5):
                candidates.append((lam, j))
        assert len(candidates) == 1, f"row {i}: {candidates} (expected one convex partner)"
        found.append(candidates[0])
    return found


@pytest.mark.parametrize("alpha", [0.2, 1.0])
def test_each_row_is_the_mix_of_itself_and_one_partner_with_the_batch_lambda(alpha):
    x, y = _batch()
    for seed in range(10):
        x_mix, y_mix = layers.Mixup(alpha, NUM_CLASSES, seed=seed)((x, y), training=True)
        y_mix = np.asarray(y_mix)
        np.testing.assert_allclose(y_mix.sum(axis=1), 1.0, atol=1e-6)
        assert np.all(y_mix.max(axis=1) >= 0.5 - 1e-6)
        lam, index = layers.Mixup(alpha, NUM_CLASSES, seed=seed).draw(len(x))
        lam, index = float(lam), np.asarray(index)
        assert 0.5 <= lam <= 1.0
        assert sorted(index) == list(range(len(x)))  # a permutation: everyone is a partner
        one_hot = np.eye(NUM_CLASSES)[y]
        np.testing.assert_allclose(x_mix, lam * x + (1 - lam) * x[index], atol=1e-6)
        np.testing.assert_allclose(y_mix, lam * one_hot + (1 - lam) * one_hot[index], atol=1e-6)
        # The same, found without knowing the draw: one lam for the batch, one partner each.
        found = _convex_partners(x, np.asarray(x_mix))
        batch_lambdas = {round(lam, 4) for lam, _ in found if lam is not None}
        assert batch_lambdas <= {round(lam, 4)}, (batch_lambdas, lam)
        for i, (row_lam, j) in enumerate(found):
            if row_lam is not None:
                assert j == index[i]
            else:
                assert j == i and (index[i] == i or lam > 0.999)


@pytest.mark.parametrize("alpha, neighbour", [(0.2, 0.3), (0.75, 1.0)])
def test_mean_lambda_of_2500_draws_matches_the_folded_beta(alpha, neighbour):
    mixup_layer = layers.Mixup(alpha, NUM_CLASSES, seed=0)
    # 2500 successive draws of the layer in one graph loop (the generator advances each time).
    draws = tf.function(
        lambda: tf.map_fn(
            lambda _: mixup_layer.draw(8)[0], tf.range(2500), fn_output_signature=tf.float32
        )
    )
    lambdas = draws().numpy()
    # Four standard errors of the mean of 2500 draws (0.011 for 0.2, 0.012 for 0.75): a
    # right draw fails 1 time in 16000.
    band = 4 * _standard_error(alpha, 2500)
    assert abs(np.mean(lambdas) - _expected_lambda(alpha)) < band
    # The check tells the neighbouring alpha apart: its mean is more than two bands away.
    assert abs(_expected_lambda(neighbour) - _expected_lambda(alpha)) > 2 * band
    assert min(lambdas) >= 0.5


def test_same_seed_repeats_and_calls_advance():
    x, y = _batch()
    first = layers.Mixup(0.4, NUM_CLASSES, seed=7)
    second = layers.Mixup(0.4, NUM_CLASSES, seed=7)
    a1, a2 = first((x, y), training=True), first((x, y), training=True)
    b1, b2 = second((x, y), training=True), second((x, y), training=True)
    np.testing.assert_array_equal(a1[0], b1[0])
    np.testing.assert_array_equal(a2[1], b2[1])
    assert np.max(np.abs(np.asarray(a1[0]) - np.asarray(a2[0]))) > 1e-4


def test_identity_at_inference():
    x, y = _batch()
    mix = layers.Mixup(0.2, NUM_CLASSES, seed=0)
    for training in (False, None):
        x_out, y_out = mix((x, y), training=training)
        np.testing.assert_array_equal(x_out, x)
        np.testing.assert_array_equal(y_out, np.eye(NUM_CLASSES)[y])


def test_inside_a_functional_model_mixes_only_in_training():
    x, y = _batch()
    inputs = keras.Input((5,)), keras.Input((), dtype="int32")
    model = keras.Model(inputs, layers.Mixup(0.2, NUM_CLASSES, seed=0)(inputs))
    np.testing.assert_array_equal(model((x, y), training=False)[0], x)
    assert np.max(np.abs(np.asarray(model((x, y), training=True)[0]) - x)) > 1e-4


def test_parity_with_the_seed_tf1_code_under_the_layer_draws():
    x, y = _batch()
    for seed in range(3):
        lam, index = layers.Mixup(0.2, NUM_CLASSES, seed=seed).draw(len(x))
        x_mix, y_mix = layers.Mixup(0.2, NUM_CLASSES, seed=seed)((x, y), training=True)
        expected_x, expected_y = run_in_graph(
            reference_mixup,
            x,
            y,
            NUM_CLASSES,
            0.2,
            mix=np.asarray([lam], "float32"),
            index=np.asarray(index),
        )
        np.testing.assert_allclose(x_mix, expected_x, atol=1e-6)
        np.testing.assert_allclose(y_mix, expected_y, atol=1e-6)


def test_keras_mixup_has_the_same_arithmetic_but_another_draw():
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(6, 4, 4, 1)).astype("float32")
    y = rng.integers(0, NUM_CLASSES, size=6)
    one_hot = np.eye(NUM_CLASSES, dtype="float32")[y]
    lam, index = layers.Mixup(0.2, NUM_CLASSES, seed=0).draw(6)
    keras_mixup = keras.layers.MixUp(alpha=0.2, seed=0)
    fixed = {"mix_weight": np.full(6, float(lam), "float32"), "permutation_order": index}
    ours_x, ours_y = layers.mixup(images, y, NUM_CLASSES, 0.2, mix=lam, index=index)
    np.testing.assert_allclose(keras_mixup.transform_images(images, fixed), ours_x, atol=1e-6)
    np.testing.assert_allclose(keras_mixup.transform_labels(one_hot, fixed), ours_y, atol=1e-6)
    # Its draw: one weight per row, not folded (mean 0.5, half of them below 0.5).
    weights = np.concatenate(
        [
            np.asarray(keras_mixup.get_random_transformation(images)["mix_weight"])
            for _ in range(100)
        ]
    )
    assert len(np.unique(weights[:6])) == 6
    assert abs(np.mean(weights) - 0.5) < 0.05 and np.mean(weights < 0.5) > 0.3
    # Its image mix reshapes the weights to rank 4: on features the shape goes wrong.
    features = rng.normal(size=(6, 3)).astype("float32")
    fixed_features = {**fixed, "mix_weight": np.full(6, 0.7, "float32")}
    assert keras_mixup.transform_images(features, fixed_features).shape != features.shape


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"alpha": 0.0, "num_classes": 3}, "alpha=0.0"),
        ({"alpha": -1, "num_classes": 3}, "alpha=-1"),
        ({"alpha": 0.2, "num_classes": 0}, "num_classes=0"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        layers.Mixup(**kwargs)


def test_config_round_trip():
    mix = layers.Mixup(0.3, NUM_CLASSES, seed=5, name="mix")
    clone = layers.Mixup.from_config(mix.get_config())
    assert clone.get_config() == mix.get_config()
    x, y = _batch()
    np.testing.assert_array_equal(mix((x, y), training=True)[0], clone((x, y), training=True)[0])
