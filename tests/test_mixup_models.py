"""MixupModel: input, word (embedding), sentence (encoder) and manifold mixup against
hand-built mixed forward passes, the contract of manifold mixup, serving a text backbone,
bad input. The contract of the default (input) mixup, fresh-process serving and two
replicas are tests/test_contract.py's."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfssl import data, export, models, testing


NUM_CLASSES = 3
LAM = 0.7


def _pair_swap(num_rows):
    """Partner of row i is row i xor 1: the same on one device and on two replicas that
    each hold an even half of the batch."""
    return tf.bitwise.bitwise_xor(tf.range(num_rows), 1)


def _force_draws(model, place=0, lam=LAM):
    model.draw_mixing = lambda num_rows: (
        tf.constant(lam),
        _pair_swap(num_rows),
        tf.constant(place, tf.int32),
    )
    return model


def _soft_cross_entropy(targets, logits):
    return tf.reduce_mean(keras.losses.categorical_crossentropy(targets, logits, from_logits=True))


def _mix(values, lam=LAM):
    values = tf.cast(values, tf.float32)
    return lam * values + (1 - lam) * tf.gather(values, _pair_swap(tf.shape(values)[0]))


def text_backbone(num_embeddings=1):
    tokens = keras.Input((5,), dtype="int32", name="x")
    embedded = keras.layers.Embedding(20, 4, name="embedding")(tokens)
    if num_embeddings == 2:
        positions = keras.layers.Embedding(20, 4, name="position_embedding")(tokens)
        embedded = keras.layers.Add(name="add")([embedded, positions])
    pooled = keras.layers.GlobalAveragePooling1D(name="pool")(embedded)
    hidden = keras.layers.Dense(6, activation="tanh", name="hidden")(pooled)
    return keras.Model(tokens, keras.layers.Dense(NUM_CLASSES, name="logits")(hidden))


def _text_data(num_rows=16, num_labeled=8):
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 20, size=(num_rows, 5)).astype("int32")
    labels = tokens[:, 0] % NUM_CLASSES
    labels[num_labeled:] = data.UNLABELED
    return tokens, labels


def _loss_and_gradients(model, x, labels):
    weights = model.backbone.trainable_weights
    with tf.GradientTape() as tape:
        terms, outputs = model.compute_losses(x, None, tf.constant(labels, tf.int32))
    return terms, outputs, tape.gradient(terms["loss"], weights)


def _hand_built(weights, forward, labels_labeled):
    targets = _mix(tf.one_hot(labels_labeled, NUM_CLASSES))
    with tf.GradientTape() as tape:
        loss = _soft_cross_entropy(targets, forward())
    return loss, tape.gradient(loss, weights)


def _assert_same(terms, gradients, expected_loss, expected_gradients):
    np.testing.assert_allclose(terms["loss"], expected_loss, rtol=1e-5)
    for got, expected in zip(gradients, expected_gradients):
        # Embedding gradients come as IndexedSlices.
        got, expected = tf.convert_to_tensor(got), tf.convert_to_tensor(expected)
        np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-6)


def test_contract_with_manifold_mixup(tmp_path):
    # tests/test_contract.py runs the contract on the default input mixup; manifold mixup
    # splits the backbone at the listed layers, which the .keras reload has to rebuild.
    model = testing.check_model_contract(
        lambda b, n, c: models.MixupModel(b, at="manifold", mixup_layers=[b.layers[0].name]),
        str(tmp_path),
    )
    assert 0.5 <= model.history.history["mixup_lambda"][-1] <= 1.0


def test_input_mixup_loss_is_the_lambda_weighted_cross_entropy_of_both_labels():
    x, _, y_semi = testing.tiny_data()
    model = _force_draws(models.MixupModel(testing.tiny_backbone(), supervised_normalize="labeled"))
    terms, outputs, gradients = _loss_and_gradients(model, x, y_semi)
    labeled = y_semi != data.UNLABELED
    x_l, y_l = x[labeled], y_semi[labeled]
    logits = model.backbone(_mix(x_l)).numpy()
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    rows = np.arange(len(y_l))
    partner = rows ^ 1
    expected = -(LAM * log_softmax[rows, y_l] + (1 - LAM) * log_softmax[rows, y_l[partner]])
    np.testing.assert_allclose(terms["loss"], expected.mean(), rtol=1e-5)
    np.testing.assert_allclose(terms["mixup_lambda"], LAM)
    # Unlabeled rows take no part: the metrics' logits are 0 there, the loss ignores them.
    np.testing.assert_array_equal(outputs["logits"].numpy()[~labeled], 0.0)
    x_changed = x.copy()
    x_changed[~labeled] += 100.0
    changed_terms, _, changed_gradients = _loss_and_gradients(model, x_changed, y_semi)
    _assert_same(changed_terms, changed_gradients, terms["loss"], gradients)


def test_seed_normalisation_divides_by_the_batch():
    x, _, y_semi = testing.tiny_data()
    by_labeled, by_batch = (
        _force_draws(models.MixupModel(testing.tiny_backbone(), supervised_normalize=normalize))
        for normalize in ("labeled", "batch")
    )
    by_batch.backbone.set_weights(by_labeled.backbone.get_weights())
    labels = tf.constant(y_semi, tf.int32)
    labeled_loss = by_labeled.compute_losses(x, None, labels)[0]["loss"]
    batch_loss = by_batch.compute_losses(x, None, labels)[0]["loss"]
    np.testing.assert_allclose(batch_loss, labeled_loss * 12 / 48, rtol=1e-6)


def test_word_mixup_mixes_the_embedding_output():
    tokens, labels = _text_data()
    model = _force_draws(
        models.MixupModel(text_backbone(), at="embedding", supervised_normalize="labeled")
    )
    terms, _, gradients = _loss_and_gradients(model, tokens, labels)
    backbone = model.backbone
    labeled = labels != data.UNLABELED

    def forward():
        embedded = _mix(backbone.get_layer("embedding")(tokens[labeled]))
        pooled = backbone.get_layer("pool")(embedded)
        return backbone.get_layer("logits")(backbone.get_layer("hidden")(pooled))

    expected_loss, expected_gradients = _hand_built(
        backbone.trainable_weights, forward, labels[labeled]
    )
    _assert_same(terms, gradients, expected_loss, expected_gradients)


def test_word_mixup_takes_the_named_embedding_of_several():
    tokens, labels = _text_data()
    model = _force_draws(
        models.MixupModel(
            text_backbone(2), at="embedding", mixup_layers="add", supervised_normalize="labeled"
        )
    )
    terms, _, gradients = _loss_and_gradients(model, tokens, labels)
    backbone = model.backbone
    labeled = labels != data.UNLABELED

    def forward():
        t = tokens[labeled]
        summed = backbone.get_layer("add")(
            [backbone.get_layer("embedding")(t), backbone.get_layer("position_embedding")(t)]
        )
        pooled = backbone.get_layer("pool")(_mix(summed))
        return backbone.get_layer("logits")(backbone.get_layer("hidden")(pooled))

    expected_loss, expected_gradients = _hand_built(
        backbone.trainable_weights, forward, labels[labeled]
    )
    _assert_same(terms, gradients, expected_loss, expected_gradients)


def test_sentence_mixup_mixes_the_input_of_the_last_layer():
    tokens, labels = _text_data()
    model = _force_draws(
        models.MixupModel(text_backbone(), at="encoder", supervised_normalize="labeled")
    )
    terms, _, gradients = _loss_and_gradients(model, tokens, labels)
    backbone = model.backbone
    labeled = labels != data.UNLABELED

    def forward():
        pooled = backbone.get_layer("pool")(backbone.get_layer("embedding")(tokens[labeled]))
        return backbone.get_layer("logits")(_mix(backbone.get_layer("hidden")(pooled)))

    expected_loss, expected_gradients = _hand_built(
        backbone.trainable_weights, forward, labels[labeled]
    )
    _assert_same(terms, gradients, expected_loss, expected_gradients)


def test_manifold_draws_every_listed_layer_and_the_input():
    model = models.MixupModel(
        text_backbone(), at="manifold", mixup_layers=["embedding", "hidden"], seed=0
    )
    places = [int(model.draw_mixing(8)[2]) for _ in range(150)]
    counts = np.bincount(places, minlength=3)
    assert len(counts) == 3 and np.all(counts > 25), counts  # uniform: ~50 each


@pytest.mark.parametrize("place", [0, 1, 2])
def test_manifold_step_with_forced_layer_and_lambda_has_the_hand_built_gradient(place):
    x, _, y_semi = testing.tiny_data()
    backbone = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(8, activation="tanh", name="first"),
            keras.layers.Dense(5, activation="tanh", name="second"),
            keras.layers.Dense(NUM_CLASSES, name="out"),
        ]
    )
    model = models.MixupModel(
        backbone,
        at="manifold",
        mixup_layers=["first", "second"],
        supervised_normalize="labeled",
    )
    terms, _, gradients = _loss_and_gradients(_force_draws(model, place=place), x, y_semi)
    labeled = y_semi != data.UNLABELED

    def forward():
        hidden = x[labeled]
        for position, name in enumerate(["first", "second", "out"]):
            if position == place:
                hidden = _mix(hidden)
            hidden = backbone.get_layer(name)(hidden)
        return hidden

    expected_loss, expected_gradients = _hand_built(
        backbone.trainable_weights, forward, y_semi[labeled]
    )
    _assert_same(terms, gradients, expected_loss, expected_gradients)


@pytest.mark.parametrize("run_eagerly", [False, True])
@pytest.mark.parametrize("at", ["encoder", "manifold"])
def test_batch_without_labels_is_a_zero_step_that_skips_batch_norm(at, run_eagerly):
    """Graph or eager, a batch without labels is a step with zero loss and zero gradients:
    the weights and the batch-norm statistics stay as they were (eager steps once had no
    gradient at all and failed)."""
    backbone = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(8),
            keras.layers.BatchNormalization(),
            keras.layers.Dense(NUM_CLASSES),
        ]
    )
    x, _, _ = testing.tiny_data()
    model = models.MixupModel(backbone, at=at)
    model.compile(optimizer="sgd", run_eagerly=run_eagerly)
    before = [w.numpy().copy() for w in backbone.weights]
    history = model.fit(x, np.full(len(x), data.UNLABELED), batch_size=16, epochs=1, verbose=0)
    assert history.history["loss"] == [0.0]
    assert int(model.optimizer.iterations.numpy()) == 3
    for weight, value in zip(backbone.weights, before):
        np.testing.assert_array_equal(weight.numpy(), value, err_msg=weight.path)


@pytest.mark.slow  # an export
def test_fit_trains_a_text_backbone_with_word_mixup_and_serves_its_token_ids(tmp_path):
    keras.utils.set_random_seed(0)
    tokens, labels = _text_data(num_rows=32, num_labeled=32)
    model = models.MixupModel(text_backbone(), at="embedding", seed=0)
    model.compile(optimizer=keras.optimizers.Adam(0.05), metrics=["accuracy"])
    before = model.backbone.get_layer("embedding").get_weights()[0].copy()
    model.fit(data.make_dataset(tokens, labels, 8), epochs=2, verbose=0)
    assert not np.allclose(before, model.backbone.get_layer("embedding").get_weights()[0])
    path = export.export_saved_model(model, str(tmp_path))
    # Loaded in this process: that a MixupModel export serves in a fresh process that
    # imports only TensorFlow is checked in tests/test_contract.py.
    outputs = tf.saved_model.load(path).signatures["serving_default"](x=tf.constant(tokens))
    np.testing.assert_allclose(outputs["logits"], model.predict(tokens, verbose=0), atol=1e-5)


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(NUM_CLASSES)

    def call(self, x):
        return self.dense(x)


def _residual_backbone():
    inputs = keras.Input((6,))
    first = keras.layers.Dense(6, name="first")(inputs)
    second = keras.layers.Dense(6, name="second")(first)
    merged = keras.layers.Add(name="add")([first, second])
    return keras.Model(inputs, keras.layers.Dense(NUM_CLASSES, name="out")(merged))


def test_a_skip_connection_around_the_mixed_layer_carries_the_unmixed_value():
    x, _, y_semi = testing.tiny_data()
    backbone = _residual_backbone()
    model = models.MixupModel(
        backbone, at="manifold", mixup_layers=["second"], supervised_normalize="labeled"
    )
    terms, _, gradients = _loss_and_gradients(_force_draws(model, place=1), x, y_semi)
    labeled = y_semi != data.UNLABELED

    def forward():
        first = backbone.get_layer("first")(x[labeled])
        merged = backbone.get_layer("add")([first, _mix(backbone.get_layer("second")(first))])
        return backbone.get_layer("out")(merged)

    expected_loss, expected_gradients = _hand_built(
        backbone.trainable_weights, forward, y_semi[labeled]
    )
    _assert_same(terms, gradients, expected_loss, expected_gradients)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: models.MixupModel(testing.tiny_backbone(), alpha=0.0), "alpha=0.0"),
        (lambda: models.MixupModel(testing.tiny_backbone(), alpha=-0.5), "alpha=-0.5"),
        (lambda: models.MixupModel(testing.tiny_backbone(), at="middle"), "at='middle'"),
        (
            lambda: models.MixupModel(
                testing.tiny_backbone(), at="manifold", mixup_layers=["nope"]
            ),
            r"'nope' is not in the backbone.*Received: mixup_layers=\['nope'\]",
        ),
        (
            lambda: models.MixupModel(testing.tiny_backbone(), at="embedding"),
            "has 0 Embedding layers",
        ),
        (
            lambda: models.MixupModel(text_backbone(2), at="embedding"),
            r"has 2 Embedding layers \['embedding', 'position_embedding'\]",
        ),
        (
            lambda: models.MixupModel(
                text_backbone(), at="encoder", mixup_layers=["pool", "hidden"]
            ),
            r"one layer. Received: mixup_layers=\['pool', 'hidden'\]",
        ),
        (
            lambda: models.MixupModel(testing.tiny_backbone(), mixup_layers=["x"]),
            "at='input', mixup_layers=",
        ),
        (
            lambda: models.MixupModel(_Subclassed(), at="encoder", num_classes=NUM_CLASSES),
            "functional or Sequential",
        ),
    ],
    ids=[
        "alpha_zero",
        "alpha_negative",
        "unknown_at",
        "unknown_layer",
        "no_embedding",
        "two_embeddings",
        "two_encoders",
        "layers_for_input",
        "subclassed",
    ],
)
def test_bad_arguments_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()
