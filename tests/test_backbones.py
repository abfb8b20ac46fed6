"""Backbones: shapes, stochastic only in training, and argument errors."""

import keras
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


# ----------------------------------------------------------------------------- text
TEXTS = np.array(["质量很好,物流很快 good", "太差了", "", "😀" * 50, "好" * 20000], dtype=object)


def test_fasttext_with_defaults_maps_raw_strings_to_logits():
    model = backbones.fasttext(num_classes=2)
    logits = np.asarray(model(TEXTS))
    assert logits.shape == (5, 2) and np.all(np.isfinite(logits))
    assert model.input.dtype == "string" and tuple(model.input.shape) == (None,)
    # The empty string has no token: the mean is 0 and the logits are the bias.
    np.testing.assert_allclose(logits[2], model.get_layer("logits").get_weights()[1])


@pytest.mark.parametrize("build", [backbones.fasttext, backbones.textcnn])
def test_text_backbones_have_one_named_embedding_and_ignore_padding(build):
    model = build(2, num_buckets=1000, embedding_dim=8, seed=0)
    embeddings = [layer for layer in model.layers if isinstance(layer, keras.layers.Embedding)]
    assert embeddings == [model.get_layer("embedding")]
    assert embeddings[0].mask_zero
    # A text's logits do not depend on how much padding its batch adds.
    alone = np.asarray(model(TEXTS[1:2]))
    padded = np.asarray(model(TEXTS[[1, 4]]))[:1]
    np.testing.assert_allclose(alone, padded, atol=1e-5)
    first, second = model(TEXTS, training=True), model(TEXTS, training=True)
    assert np.max(np.abs(np.asarray(first) - np.asarray(second))) > 1e-6


def test_fasttext_mean_pools_the_ngram_embeddings():
    model = backbones.fasttext(2, num_buckets=1000, embedding_dim=4, ngrams=2)
    vectorizer = model.get_layer("vectorizer")
    table = model.get_layer("embedding").get_weights()[0]
    kernel, bias = model.get_layer("logits").get_weights()
    ids = vectorizer.token_ids(["很", "好", "很 好"])
    expected = table[ids].mean(axis=0) @ kernel + bias
    np.testing.assert_allclose(np.asarray(model(np.array(["很好"])))[0], expected, atol=1e-5)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: backbones.fasttext(2, dropout=1.0), "dropout=1.0"),
        (lambda: backbones.fasttext(2, embedding_dim=0), "embedding_dim=0"),
        (lambda: backbones.fasttext(2, num_buckets=1), "num_buckets=1"),
        (lambda: backbones.fasttext(2, vectorizer="hash"), "vectorizer='hash'"),
        (
            lambda: backbones.fasttext(2, num_buckets=10, embeddings=np.zeros((9, 64))),
            r"embeddings.shape=\(9, 64\)",
        ),
        (lambda: backbones.textcnn(2, kernel_sizes=()), r"kernel_sizes=\(\)"),
        (lambda: backbones.textcnn(2, filters=0), "filters=0"),
    ],
)
def test_text_backbone_bad_arguments_are_named(build, message):
    with pytest.raises(ValueError, match=message):
        build()
