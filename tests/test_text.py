"""Tests for tfssl.text (in-graph tokenization and ids), text models, their serving and the
text estimator."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text as tf_text

from serving_utils import serve_in_fresh_process
from tfssl import backbones, data, export, models, text



def tokens_of(string, max_length=None):
    tokens = text.tokenize(text.standardize(tf.constant([string])), max_length)
    return [token.decode("utf-8") for token in tokens.to_list()[0]]


# --------------------------------------------------------------------------- tokenizer
def test_han_characters_one_by_one_and_latin_words():
    assert tokens_of("这本书很好看 great book") == ["这", "本", "书", "很", "好", "看", "great", "book"]
    # No space between scripts: the script change splits.
    assert tokens_of("iPhone手机很好用") == ["iphone", "手", "机", "很", "好", "用"]
    assert tokens_of("caféпривет") == ["café", "привет"]


@pytest.mark.parametrize("kernel", ["the kernel", "the class"])
def test_script_split_equals_tensorflow_texts_tokenizer(kernel, monkeypatch):
    """The 7-op path of `tokenize` and its fallback (a tensorflow-text release without the
    kernel) give `UnicodeScriptTokenizer`'s tokens, in eager mode and in a graph."""
    if kernel == "the class":
        monkeypatch.setattr(text, "_UNICODE_SCRIPT_KERNEL", None)
    strings = tf.constant(["iphone手机,很好😀", "", " \t ", "abc déf 12 累計7239人 ok",
                           "caféпривет", "ＡＢＣ１２３ ｄｅｆ！", "😀😀ok😀x"])
    expected = tf_text.UnicodeScriptTokenizer(keep_whitespace=False).tokenize(strings)
    graph_split = tf.function(text._split_where_the_script_changes)
    for split in (text._split_where_the_script_changes, graph_split):
        assert split(strings).to_list() == expected.to_list()


def test_nfkc_turns_full_width_into_half_width_and_case_folds():
    assert tokens_of("ＡＢＣ１２３ ｄｅｆ！") == ["abc", "123", "def", "!"]
    assert tokens_of("HeLLo WORLD Straße") == ["hello", "world", "strasse"]


def test_punctuation_and_emoji_are_tokens_of_their_own():
    assert tokens_of("好!!😀😀 ok😀x") == ["好", "!", "!", "😀", "😀", "ok", "😀", "x"]


def test_empty_and_blank_strings_have_no_token():
    assert tokens_of("") == [] and tokens_of(" \t\n ") == []


def test_max_length_keeps_the_first_tokens():
    assert tokens_of("一二三四五 six", max_length=3) == ["一", "二", "三"]


def test_ngrams_unigrams_then_bigrams_joined_by_a_space():
    vectorizer = text.TextVectorizer(vocabulary=["很", "好", "很 好", "good"], ngrams=2)
    ngrams = vectorizer.ngram_strings(tf.constant(["很好 good", ""])).to_list()
    assert [t.decode() for t in ngrams[0]] == ["很", "好", "good", "很 好", "好 good"]
    assert ngrams[1] == []
    trigrams = text.TextVectorizer(ngrams=(3,)).ngram_strings(tf.constant(["abc"])).to_list()
    assert trigrams == [[]]


def test_hashing_ids_padding_and_stability():
    vectorizer = text.TextVectorizer(num_buckets=50)
    ids = vectorizer(tf.constant(["很好 good", "", "坏"])).numpy()
    assert ids.shape == (3, 5) and ids.dtype == np.int64
    assert np.all(ids[0] > 0) and np.all(ids[0] < 50)
    np.testing.assert_array_equal(ids[1], 0)
    assert ids[2, 0] > 0 and np.all(ids[2, 1:] == 0)
    # Same n-gram, same bucket, in any batch (Keras' Hashing is a fingerprint, no salt).
    np.testing.assert_array_equal(vectorizer(tf.constant(["很好 good"])).numpy()[0], ids[0])
    assert vectorizer.vocabulary_size() == 50


def test_emoji_and_20000_characters():
    vectorizer = text.TextVectorizer(num_buckets=1000, max_length=256)
    ids = vectorizer(tf.constant(["😀" * 50, "好" * 20000, "好"])).numpy()
    # 50 unigrams + 49 bigrams; 256 + 255 after truncation.
    assert np.count_nonzero(ids[0]) == 99 and np.count_nonzero(ids[1]) == 511
    assert ids.shape == (3, 511)
    assert set(ids[1][ids[1] > 0]) == {ids[2, 0], *vectorizer.token_ids(["好 好"])}


def test_output_length_pads_and_cuts():
    vectorizer = text.TextVectorizer(num_buckets=100, ngrams=1, output_length=4)
    ids = vectorizer(tf.constant(["一二三四五六", "一", ""])).numpy()
    assert ids.shape == (3, 4)
    np.testing.assert_array_equal(ids[1, 1:], 0)
    np.testing.assert_array_equal(ids[2], 0)


def test_lookup_mode_adapt_oov_and_config_round_trip():
    vectorizer = text.TextVectorizer(max_tokens=6, ngrams=1)
    vectorizer.adapt(np.array(["好 好 好 good", "好 good 差", "x"], dtype=object))
    # padding, OOV, then by frequency: 好 (4), good (2), then one of the rest.
    assert vectorizer.get_vocabulary()[:4] == ["", "[UNK]", "好", "good"]
    assert vectorizer.vocabulary_size() == 6
    ids = vectorizer(tf.constant(["好 zzz good", ""])).numpy()
    np.testing.assert_array_equal(ids, [[2, 1, 3], [0, 0, 0]])
    clone = text.TextVectorizer.from_config(vectorizer.get_config())
    np.testing.assert_array_equal(clone(tf.constant(["好 zzz good"])).numpy(), ids[:1])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_buckets": 1}, "num_buckets=1"),
        ({"num_buckets": 10, "max_tokens": 10}, "not both"),
        ({"max_tokens": 2}, "max_tokens=2"),
        ({"ngrams": 0}, "ngrams=0"),
        ({"ngrams": (1, -2)}, r"ngrams=\(1, -2\)"),
        ({"max_length": 0}, "max_length=0"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        text.TextVectorizer(**kwargs)


def test_hashing_has_nothing_to_adapt():
    with pytest.raises(ValueError, match="num_buckets=10"):
        text.TextVectorizer(num_buckets=10).adapt(np.array(["a"]))


def test_masked_average_ignores_padding_and_is_zero_without_tokens():
    x = tf.constant([[[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]], [[5.0, 5.0], [7.0, 7.0], [1.0, 1.0]]])
    mask = tf.constant([[True, True, False], [False, False, False]])
    out = text.MaskedAveragePooling1D()(x, mask=mask).numpy()
    np.testing.assert_allclose(out, [[2.0, 3.0], [0.0, 0.0]])


# ------------------------------------------------------------------------ word2vec
def test_load_word2vec_maps_words_to_their_ngram_ids(tmp_path):
    path = tmp_path / "vectors.txt"
    path.write_text(
        "5 3\n好 1 0 0\n很好 0 1 0\nGOOD 0 0 1\n很好看 5 5 5\n差 -1 -1 -1\n", encoding="utf-8"
    )
    vectorizer = text.TextVectorizer(vocabulary=["好", "很 好", "good", "坏"], ngrams=2)
    matrix = text.load_word2vec(path, vectorizer, seed=0)
    assert matrix.shape == (6, 3) and matrix.dtype == np.float32
    vocabulary = vectorizer.get_vocabulary()
    np.testing.assert_array_equal(matrix[0], 0.0)  # padding
    np.testing.assert_array_equal(matrix[vocabulary.index("好")], [1, 0, 0])
    np.testing.assert_array_equal(matrix[vocabulary.index("很 好")], [0, 1, 0])
    np.testing.assert_array_equal(matrix[vocabulary.index("good")], [0, 0, 1])  # case folded
    # 坏 is not in the file and 很好看 (3 tokens) is no n-gram here: random rows.
    assert not np.any(np.isin([5.0, -1.0], matrix[vocabulary.index("坏")]))

    hashing = text.TextVectorizer(num_buckets=1000)
    matrix = text.load_word2vec(path, hashing)
    bucket = hashing.token_ids(["差"])[0]
    np.testing.assert_array_equal(matrix[bucket], [-1, -1, -1])

    backbone = backbones.fasttext(2, vectorizer=hashing, embedding_dim=3, embeddings=matrix)
    np.testing.assert_array_equal(backbone.get_layer("embedding").get_weights()[0], matrix)


def test_load_word2vec_bad_line(tmp_path):
    path = tmp_path / "vectors.txt"
    path.write_text("好 1 0\n差 1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="vectors.txt:2"):
        text.load_word2vec(path, text.TextVectorizer(num_buckets=10))


# ------------------------------------------------------------- pretrained embeddings
PRETRAIN_TEXTS = ["很好很好 good", "很差 bad", "好 good 很好", "差 bad bad", "good 好", "bad 差 很差"]


def numpy_cooccurrence(texts, vectorizer, window):
    """The docstring's counts, pair by pair: n-grams whose starts are 1..window apart."""
    starts = []  # per text, (start, n-gram) of every n-gram
    for row in text.tokenize(text.standardize(tf.constant(texts))).to_list():
        tokens = [token.decode("utf-8") for token in row]
        starts.append(
            [
                (i, " ".join(tokens[i : i + width]))
                for width in vectorizer.ngrams
                for i in range(len(tokens) - width + 1)
            ]
        )
    ngrams = sorted({ngram for row in starts for _, ngram in row})
    ids = dict(zip(ngrams, vectorizer.token_ids(ngrams)))
    size = vectorizer.vocabulary_size()
    counts = np.zeros((size, size))
    for row in starts:
        for i, a in row:
            for j, b in row:
                if 1 <= abs(i - j) <= window:
                    counts[ids[a], ids[b]] += 1
    return counts


def numpy_ppmi(counts, smoothing):
    context = counts.sum(axis=0) ** smoothing
    with np.errstate(divide="ignore", invalid="ignore"):
        pmi = np.log(counts * context.sum() / (counts.sum(axis=1)[:, None] * context[None, :]))
    return np.where(counts > 0, np.maximum(pmi, 0.0), 0.0)


def gram(vectors):
    """W W^T, which does not depend on the signs or rotation of the singular vectors."""
    return vectors @ vectors.T


def test_pretrain_embeddings_is_the_svd_of_the_ppmi_of_ngram_cooccurrences():
    vectorizer = text.TextVectorizer(vocabulary=["很", "好", "差", "good", "bad", "很 好", "很 差"])
    ppmi = numpy_ppmi(numpy_cooccurrence(PRETRAIN_TEXTS, vectorizer, window=2), 0.75)
    # The OOV id 1 is an n-gram too ("好 good" and the like), the padding id 0 is not.
    seen = np.arange(1, vectorizer.vocabulary_size())
    u, s, _ = np.linalg.svd(ppmi[np.ix_(seen, seen)])
    matrix = text.pretrain_embeddings(PRETRAIN_TEXTS, vectorizer, dim=len(seen), window=2)
    assert matrix.shape == (len(seen) + 1, len(seen)) and matrix.dtype == np.float32
    np.testing.assert_allclose(gram(matrix[seen]), gram(u * np.sqrt(s)), atol=1e-5)
    np.testing.assert_array_equal(matrix[0], 0.0)


def test_pretrain_embeddings_randomized_svd_and_max_ngrams():
    rng = np.random.default_rng(0)
    words = [chr(0x4E00 + i) for i in range(60)]  # one Han character, one token each
    # Even texts use the first 20 characters only: those are the most frequent.
    texts = ["".join(rng.choice(words[: 20 + 40 * (i % 2)], size=12)) for i in range(200)]
    vectorizer = text.TextVectorizer(vocabulary=words, ngrams=1)
    counts = numpy_cooccurrence(texts, vectorizer, window=3)
    seen = vectorizer.token_ids(words)
    matrix = text.pretrain_embeddings(texts, vectorizer, dim=5, window=3, smoothing=1.0)
    assert matrix.shape == (62, 5)
    # 5 + 10 oversampled columns < 60 ids: the randomized SVD. W = U sqrt(S), so the squared
    # column norms are the top singular values.
    top = np.linalg.svd(numpy_ppmi(counts, 1.0)[np.ix_(seen, seen)], compute_uv=False)[:5]
    np.testing.assert_allclose(np.sum(matrix[seen] ** 2, axis=0), top, rtol=1e-3)
    # The OOV id never occurs: a random row. Padding: zero.
    assert np.all(matrix[1] != 0.0) and np.all(matrix[0] == 0.0)

    # max_ngrams=20: the counts among the 20 most frequent ids alone, the others random.
    few = text.pretrain_embeddings(texts, vectorizer, dim=20, window=3, max_ngrams=20)
    frequent = seen[:20]
    u, s, _ = np.linalg.svd(numpy_ppmi(counts[np.ix_(frequent, frequent)], 0.75))
    np.testing.assert_allclose(gram(few[frequent]), gram(u * np.sqrt(s)), atol=1e-5)
    others = few[seen[20:]]
    assert 0.5 < others.std() / few[frequent].std() < 2.0 and np.all(others != 0.0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"dim": 0}, "dim=0"),
        ({"dim": 4, "window": 0}, "window=0"),
        ({"dim": 4, "smoothing": 0.0}, "smoothing=0.0"),
        ({"dim": 4, "power_iterations": -1}, "power_iterations=-1"),
        ({"dim": 4, "max_ngrams": 2.5}, "max_ngrams=2.5"),
    ],
)
def test_pretrain_embeddings_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        text.pretrain_embeddings(PRETRAIN_TEXTS, text.TextVectorizer(num_buckets=64), **kwargs)


def test_pretrain_embeddings_needs_cooccurring_ngrams():
    with pytest.raises(ValueError, match="window=1"):
        text.pretrain_embeddings(["好", "", "差"], text.TextVectorizer(num_buckets=64), 4, window=1)


# ----------------------------------------------------------------------- TF-IDF noise
def replacement_layer(rate, seed=0):
    """Replacements always draw `z`, so a `z` in the output marks a replaced token."""
    return text.TfIdfReplacement(
        rate,
        seed=seed,
        tokens=["a", "b", "c", "d", "z"],
        idf=[0.0, 1.0, 2.0, 4.0, 0.0],
        probabilities=[0.0, 0.0, 0.0, 0.0, 1.0],
    )


def test_tfidf_statistics_equal_a_hand_computation():
    layer = text.TfIdfReplacement()
    layer.adapt(["A b", "a c c", "b  D", "a"])
    # Documents: {a, b}, {a, c, c}, {b, d}, {a}; document frequencies a 3, b 2, c 1, d 1.
    idf = np.log(4 / np.array([3.0, 2.0, 1.0, 1.0]))
    term_share = np.array([1 / 2 + 1 / 3 + 1, 1 / 2 + 1 / 2, 2 / 3, 1 / 2])
    corpus_tfidf = term_share * idf
    weights = corpus_tfidf.max() - corpus_tfidf
    assert layer.tokens == ["a", "b", "c", "d"]
    np.testing.assert_allclose(layer.idf, idf)
    np.testing.assert_allclose(layer.probabilities, weights / weights.sum())
    batches = tf.data.Dataset.from_tensor_slices(["A b", "a c c", "b  D", "a"]).batch(3)
    from_dataset = text.TfIdfReplacement()
    from_dataset.adapt(batches)
    assert from_dataset.tokens == layer.tokens and from_dataset.idf == layer.idf
    assert from_dataset.probabilities == layer.probabilities


def test_tfidf_replacement_is_identity_in_inference_and_at_rate_0():
    texts = tf.constant(["A b c", "这本书  很好"])
    assert (replacement_layer(0.5)(texts).numpy() == texts.numpy()).all()
    assert (replacement_layer(0.5)(texts, training=False).numpy() == texts.numpy()).all()
    assert (replacement_layer(0.0)(texts, training=True).numpy() == texts.numpy()).all()


@pytest.mark.parametrize("rate", [0.5, 1.0])
def test_tfidf_replacement_frequencies_follow_the_formula(rate):
    copies = 4000
    out = replacement_layer(rate)(tf.constant(["a b c d"] * copies), training=True).numpy()
    replaced = np.array([row.split() for row in out]) == b"z"
    gaps = 4.0 - np.array([0.0, 1.0, 2.0, 4.0])
    expected = np.minimum(1.0, rate * gaps / gaps.mean())
    # Binomial standard deviation <= 0.008: 0.04 is five of them.
    np.testing.assert_allclose(replaced.mean(axis=0), expected, atol=0.04)
    assert not replaced[:, 3].any()  # the largest IDF (gap 0) is never replaced


def test_tfidf_replacement_keeps_equal_scores_and_unknown_tokens():
    layer = replacement_layer(1.0)
    out = layer(tf.constant(["b B b", "a q", "a", ""]), training=True).numpy()
    # Equal IDFs: no gap, nothing replaced. The unknown "q" scores the largest IDF (4), so it
    # is kept and "a" (gap 4 = twice the mean gap) is always replaced.
    assert out.tolist() == [b"b b b", b"z q", b"a", b""]


def test_tfidf_replacement_output_shape_and_seed():
    texts = ["a b c d a b c", "b c d", "c d"]
    for shape in [(3,), (3, 1)]:
        out = replacement_layer(0.5)(tf.reshape(tf.constant(texts), shape), training=True)
        assert out.dtype == tf.string and out.shape == shape
    first = replacement_layer(0.5, seed=1)(tf.constant(texts * 20), training=True).numpy()
    again = replacement_layer(0.5, seed=1)(tf.constant(texts * 20), training=True).numpy()
    other = replacement_layer(0.5, seed=2)(tf.constant(texts * 20), training=True).numpy()
    assert (first == again).all() and (first != other).any()


def test_tfidf_replacement_config_round_trip_clone_model_and_save(tmp_path):
    layer = text.TfIdfReplacement(0.5, seed=3, name="noise")
    layer.adapt(["这本书很好看 good", "很好 good good", "质量很差 bad", "书 bad good"])
    config = layer.get_config()
    restored = text.TfIdfReplacement.from_config(config)
    assert restored.get_config() == config and "很" in config["tokens"]
    inputs = keras.Input(shape=(), dtype="string")
    model = keras.Model(inputs, layer(inputs))
    clone = keras.models.clone_model(model)
    model.save(tmp_path / "noise.keras")
    loaded = keras.models.load_model(tmp_path / "noise.keras")
    texts = tf.constant(["这本书很好看 good bad", "质量很差 good"] * 10)
    out = model(texts, training=True).numpy()
    assert (clone(texts, training=True).numpy() == out).all()
    assert (loaded(texts, training=True).numpy() == out).all()
    assert (restored(texts, training=True).numpy() == out).all()
    # Some token was replaced by a vocabulary token (the clone's table is not empty).
    standardized = [b" ".join(row) for row in text.tokenize(text.standardize(texts)).to_list()]
    assert (out != np.array(standardized, dtype=object)).any()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"rate": -0.1}, r"rate=-0\.1"),
        ({"rate": 1.5}, r"rate=1\.5"),
        ({"tokens": ["a"], "idf": [1.0]}, "probabilities=None"),
        ({"tokens": ["a", "b"], "idf": [1.0], "probabilities": [1.0]}, "tokens=2, idf=1"),
    ],
)
def test_tfidf_replacement_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        text.TfIdfReplacement(**kwargs)


def test_tfidf_replacement_needs_statistics():
    inputs = keras.Input(shape=(), dtype="string")
    layer = text.TfIdfReplacement(0.3)
    keras.Model(inputs, layer(inputs))  # building a model before `adapt` is allowed
    for training in (True, False):
        with pytest.raises(ValueError, match="adapt.*Received: tokens=None"):
            layer(tf.constant(["a b"]), training=training)


# ------------------------------------------------------------------------------- data
def test_make_dataset_takes_string_arrays():
    x = np.array(["好", "", "😀" * 50, "mixed 中文"], dtype=object)
    y = np.array([1, -1, 0, -1])
    features, labels = next(iter(data.make_dataset(x, y, batch_size=4)))
    assert features["x"].dtype == tf.string
    assert [t.decode() for t in features["x"].numpy()] == list(x)
    np.testing.assert_array_equal(labels, y)


# -------------------------------------------------------- a consistency model on text
POSITIVE = ["好", "棒", "喜欢", "满意", "great", "good", "love", "赞"]
NEGATIVE = ["差", "烂", "讨厌", "失望", "bad", "awful", "hate", "糟"]
FILLER = ["这个", "手机", "书", "物流", "质量", "the", "phone", "book", "is", "很", "it", "买"]


def mixed_reviews(size, seed):
    """Chinese/English reviews: fillers and one or two words of their class's sentiment."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size)
    texts = np.empty(size, dtype=object)
    for i, label in enumerate(labels):
        words = list(rng.choice(FILLER, rng.integers(3, 8)))
        for _ in range(rng.integers(1, 3)):
            words.insert(rng.integers(0, len(words) + 1), rng.choice([NEGATIVE, POSITIVE][label]))
        texts[i] = words[0]
        for previous, word in zip(words, words[1:]):
            # English words need a space between them; Chinese usually has none.
            glue = " " if previous.isascii() and word.isascii() else rng.choice(["", " "])
            texts[i] += glue + word
    return texts, labels.astype(np.int64)


@pytest.mark.slow
def test_temporal_ensembling_learns_mixed_chinese_english_from_60_labels():
    keras.utils.set_random_seed(0)
    x, y = mixed_reviews(600, seed=0)
    x_test, y_test = mixed_reviews(200, seed=1)
    y_semi = data.mask_labels(y, 60, seed=0)
    backbone = backbones.fasttext(2, num_buckets=2**12, embedding_dim=16, dropout=0.3)
    model = models.TemporalEnsembling(
        backbone, num_samples=len(x), ramp_up_epochs=2, supervised_normalize="labeled"
    )
    model.compile(optimizer=keras.optimizers.Adam(0.03), metrics=["accuracy"])
    train = data.make_dataset(x, y_semi, batch_size=60, shuffle=True, seed=0, labeled_per_batch=12)
    model.fit(train, epochs=10, verbose=0)
    # A direct inference-mode call: `predict` would trace the text graph once more.
    accuracy = np.mean(np.argmax(model(x_test, training=False), axis=1) == y_test)
    assert accuracy > 0.9, accuracy


# ---------------------------------------------------------------------------- serving
@pytest.mark.integration
def test_raw_string_savedmodel_serves_without_tfssl(tmp_path):
    # Untrained: tracing a text model's training step costs more than the rest of the test,
    # and the export is of the inference graph alone. A trained text model's export scoring
    # what the model scored is tests/test_scripts.py's text script test.
    keras.utils.set_random_seed(0)
    model = models.MeanTeacher(backbones.fasttext(2, num_buckets=2**10, embedding_dim=8))
    path = export.export_saved_model(model, tmp_path)

    served = tf.saved_model.load(path).signatures["serving_default"]
    (spec,) = served.structured_input_signature[1].values()
    assert spec.name == "text" and spec.dtype == tf.string and spec.shape.as_list() == [None]
    assert set(served.structured_outputs) == {"logits", "probabilities", "classes"}
    ops = _op_types(path)
    assert set(text.TEXT_OPS) <= ops
    # Every op outside core TensorFlow is one that README names.
    assert {op for op in ops if not hasattr(tf.raw_ops, op)} <= set(text.TEXT_OPS)

    batch = np.array(["", "😀" * 50, "好" * 20000, "这本书 good!"], dtype=object)
    expected = keras.ops.softmax(model(batch)).numpy()
    outputs = serve_in_fresh_process(path, "text", batch, imports=("tensorflow_text",))
    np.testing.assert_allclose(outputs["probabilities"], expected, atol=1e-6)
    np.testing.assert_array_equal(outputs["classes"], np.argmax(expected, axis=1))


def _op_types(path):
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        saved.ParseFromString(f.read())
    graph = saved.meta_graphs[0].graph_def
    nodes = list(graph.node) + [n for f in graph.library.function for n in f.node_def]
    return {node.op for node in nodes}
