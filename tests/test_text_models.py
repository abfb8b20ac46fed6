"""Tests for the text backbones' token dropout, a `.keras` round trip of a raw-string model
and WordDropout."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfssl import backbones, data, models
from tfssl import text as text_lib

WORDS = np.array(["好", "差", "很", "书", "物流", "good", "bad", "the", "质量", "😀", "不"])


def reviews(size, seed):
    """Texts of 2-8 random words, labeled by whether "好" or "good" is among them."""
    rng = np.random.default_rng(seed)
    texts = np.array(
        ["".join(rng.choice(WORDS, rng.integers(2, 9))) for _ in range(size)], dtype=object
    )
    labels = np.array([int("好" in t or "good" in t) for t in texts], dtype=np.int64)
    return texts, labels


# ----------------------------------------------------------------------- token dropout
@pytest.mark.parametrize("build", [backbones.fasttext, backbones.textcnn])
def test_token_dropout_drops_whole_tokens_in_training_only(build):
    keras.utils.set_random_seed(0)
    backbone = build(2, num_buckets=256, embedding_dim=16, token_dropout=0.5, dropout=0.0)
    texts = np.array(["这本书的质量很好 good quality", "物流太慢了"] * 8, dtype=object)
    embedding = backbone.get_layer("embedding")
    ids = backbone.get_layer("vectorizer")(texts)
    vectors = embedding(ids).numpy()
    dropped = backbone.get_layer("token_dropout")(vectors, training=True).numpy()
    # Each token's vector is either zero or scaled by 1 / (1 - rate), all its dimensions alike.
    zero = np.all(dropped == 0, axis=-1)
    np.testing.assert_allclose(dropped[~zero], 2.0 * vectors[~zero], rtol=1e-6)
    real = ids.numpy() != 0
    assert 0.3 < zero[real].mean() < 0.7, zero[real].mean()
    inference = backbone.get_layer("token_dropout")(vectors, training=False).numpy()
    np.testing.assert_array_equal(inference, vectors)


@pytest.mark.parametrize("build", [backbones.fasttext, backbones.textcnn])
def test_token_dropout_zero_adds_no_layer_and_bad_rates_are_named(build):
    names = [layer.name for layer in build(2, num_buckets=64, embedding_dim=4).layers]
    assert "token_dropout" not in names
    for rate in (-0.1, 1.0):
        with pytest.raises(ValueError, match=f"token_dropout={rate}"):
            build(2, num_buckets=64, embedding_dim=4, token_dropout=rate)


# --------------------------------------------------------------------- .keras round trip
def test_temporal_ensembling_on_fasttext_keras_round_trip(tmp_path):
    keras.utils.set_random_seed(0)
    backbone = backbones.fasttext(2, num_buckets=512, embedding_dim=8, token_dropout=0.2)
    model = models.TemporalEnsembling(backbone, num_samples=96, alpha=0.5, ramp_up_epochs=2)
    # Weights and ensemble state as a fit would leave them, without the cost of tracing one.
    rng = np.random.default_rng(0)
    for variable in [*backbone.weights, *model.sample_state.weights]:
        variable.assign(rng.normal(size=variable.shape).astype(variable.dtype))
    model.epoch.assign(3)
    path = str(tmp_path / "te_fasttext.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)

    assert isinstance(loaded, models.TemporalEnsembling)
    assert loaded.get_config()["alpha"] == 0.5
    assert loaded.backbone.get_layer("token_dropout").noise_shape == (None, None, 1)
    batch = np.array(["", "😀" * 50, "好" * 20000, "这本书 good!", "差 bad 物流"], dtype=object)
    expected = keras.ops.softmax(model(batch)).numpy()
    np.testing.assert_allclose(keras.ops.softmax(loaded(batch)), expected, atol=1e-6)
    # Different texts get different probabilities: the comparison above is not trivial.
    assert np.ptp(expected[:, 0]) > 0.05
    for saved, back in zip(model.sample_state.weights, loaded.sample_state.weights):
        np.testing.assert_array_equal(back.numpy(), saved.numpy())
    assert int(loaded.epoch.numpy()) == 3


# ------------------------------------------------------------------- estimator flags
def test_word_dropout_drops_whole_tokens_in_training_only():
    """Inference and rate 0 pass the strings unchanged, rate 1 leaves no token; otherwise
    the vectorizer's tokens of the output are the input's minus some, about `rate` of
    them over many tokens, and a seed repeats its draws."""
    texts = tf.constant(["iPhone手机，很好用😀 Great phone " * 50, "", "ＡＢＣ １２３ 手机"])
    tokens = [t.numpy().tolist() for t in text_lib.tokenize(text_lib.standardize(texts))]
    np.testing.assert_array_equal(text_lib.WordDropout(0.5)(texts, training=False), texts)
    np.testing.assert_array_equal(text_lib.WordDropout(0.0)(texts, training=True), texts)
    assert text_lib.tokenize(text_lib.WordDropout(1.0)(texts, training=True)).flat_values.shape[0] == 0
    dropped = text_lib.WordDropout(0.3, seed=3)(texts, training=True)
    kept = [t.numpy().tolist() for t in text_lib.tokenize(text_lib.standardize(dropped))]
    for original, left in zip(tokens, kept):
        position = 0  # `left` is a subsequence of `original`
        for token in left:
            position = original.index(token, position) + 1
    share = len(kept[0]) / len(tokens[0])
    assert abs(share - 0.7) < 4 * np.sqrt(0.21 / len(tokens[0]))
    again = text_lib.WordDropout(0.3, seed=3)(texts, training=True)
    np.testing.assert_array_equal(again, dropped)


def test_word_dropout_config_and_bad_rates():
    layer = text_lib.WordDropout(0.25, seed=7)
    restored = text_lib.WordDropout.from_config(layer.get_config())
    assert (restored.rate, restored.seed) == (0.25, 7)
    for rate in (-0.1, 1.5, "0.3", True):
        with pytest.raises(ValueError, match=f"rate={rate!r}"):
            text_lib.WordDropout(rate)


def make_fasttext_te():
    """A two-replica factory (test_two_replicas.py): fastText Temporal Ensembling on raw
    strings, in shuffled batches of 16."""
    rng = np.random.default_rng(0)
    words = np.array(["好", "差", "质量", "物流", "good", "bad", "the", "phone", "很", "买"])
    x = np.array([" ".join(rng.choice(words, rng.integers(1, 6))) for _ in range(48)], object)
    y = np.array([int("差" in text or "bad" in text) for text in x])
    y_semi = data.mask_labels(y, 12, seed=0)
    # No dropout: the one-device run draws other random numbers than two replicas.
    backbone = backbones.fasttext(2, num_buckets=64, embedding_dim=4, dropout=0.0)
    model = models.TemporalEnsembling(backbone, num_samples=len(x), max_unsupervised_weight=5.0)
    return model, data.make_dataset(x, y_semi, batch_size=16, shuffle=True, seed=0)
