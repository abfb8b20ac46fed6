"""tfssl.layers: augmentation active only in training, and mixup against the seed's TF1 code."""

import numpy as np
import pytest

from tfssl import layers
from tfssl.reference import mixup as reference_mixup
from tfssl.reference import run_in_graph


def test_augmentation_is_identity_at_inference_and_random_in_training():
    augment = layers.image_augmentation((8, 8, 1), max_translation=2, noise_stddev=0.15, seed=0)
    images = np.random.default_rng(0).uniform(size=(4, 8, 8, 1)).astype("float32")
    np.testing.assert_array_equal(augment(images, training=False), images)
    assert np.max(np.abs(np.asarray(augment(images, training=True)) - images)) > 0.01


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"max_translation": -1}, "max_translation=-1"),
        ({"noise_stddev": -0.1}, "noise_stddev=-0.1"),
    ],
)
def test_augmentation_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        layers.image_augmentation((8, 8, 1), **bad)


@pytest.mark.parametrize("mix", [0.8, 0.3, 0.5])
def test_mixup_matches_the_seed_tf1_code_with_fixed_draws(mix):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 4)).astype("float32")
    y = rng.integers(0, 3, size=6)
    index = np.array([3, 0, 5, 1, 2, 4], dtype="int32")
    mix_array = np.array([mix], "float32")
    expected = run_in_graph(reference_mixup, x, y, 3, 0.2, mix=mix_array, index=index)
    xmix, ymix = layers.mixup(x, y, 3, 0.2, mix=mix_array, index=index)
    np.testing.assert_allclose(xmix, expected[0], atol=1e-6)
    np.testing.assert_allclose(ymix, expected[1], atol=1e-6)
    folded = max(mix, 1 - mix)
    np.testing.assert_allclose(xmix, x * folded + x[index] * (1 - folded), atol=1e-6)


def test_mixup_draws_lean_towards_the_own_row_and_shuffle_the_batch():
    # Row i of x is i everywhere and has class i % 4: each mixed row gives away its weight
    # lam (the own class's share when the partner's class differs) and its partner.
    x = np.arange(8, dtype="float32")[:, None] * np.ones((1, 3), "float32")
    y = np.arange(8) % 4
    one_hot = np.eye(4)[y]
    shuffled = 0
    for seed in range(20):
        xmix, ymix = (np.asarray(v) for v in layers.mixup(x, y, 4, alpha=0.4, seed=seed))
        own = ymix[np.arange(8), y]
        lam = own.min()
        # Folded, max(lam, 1 - lam), up to the float32 rounding of y_mix (values below 1).
        assert lam >= 0.5 - 1e-6
        if lam > 0.999:
            continue  # (almost) no mixing: the partners cannot be told apart
        partners = (xmix[:, 0] - lam * np.arange(8)) / (1 - lam)
        index = np.rint(partners).astype(int)
        # Rows 0..7 recovered from float32 products of values below 8, divided by 1 - lam.
        np.testing.assert_allclose(partners, index, atol=1e-3)
        assert sorted(index) == list(range(8))  # a permutation: one partner each
        # float32 products and sums of values below 8: a few units of 8 * 2**-24.
        np.testing.assert_allclose(xmix, lam * x + (1 - lam) * x[index], atol=1e-5)
        # The labels: the same float32 arithmetic on values below 1.
        np.testing.assert_allclose(ymix, lam * one_hot + (1 - lam) * one_hot[index], atol=1e-6)
        shuffled += not np.array_equal(index, np.arange(8))
    assert shuffled >= 15  # the batch is shuffled, not left in place


def test_mixup_rejects_bad_alpha():
    with pytest.raises(ValueError, match="alpha=0"):
        layers.mixup(np.zeros((2, 1)), np.zeros(2, "int64"), 2, alpha=0)
