"""AdversarialTraining (FGM, PGD), its perturbation site and the attack helper."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfssl import data, models, testing


NUM_FEATURES, NUM_CLASSES = 5, 4


# ------------------------------------------------------------------ numpy oracle
def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _ce_gradients(x, y, w, b):
    """Masked mean cross-entropy of logits x w + b over labeled rows: d/dx, d/dw, d/db."""
    labeled = y >= 0
    delta = _softmax(x @ w + b)
    delta[labeled, y[labeled]] -= 1.0
    delta[~labeled] = 0.0
    delta /= labeled.sum()
    return delta @ w.T, x.T @ delta, delta.sum(0)


def _np_norm(v, norm):
    if norm == "sample":
        return np.sqrt((v**2).sum(1, keepdims=True))
    return np.sqrt((v**2).sum())


def _np_normalize(v, norm):
    n = _np_norm(v, norm)
    return np.divide(v, n, out=np.zeros_like(v), where=n > 0)


def _np_perturbation(x, y, w, b, method, epsilon, step_size, steps, norm):
    if method == "fgm":
        return epsilon * _np_normalize(_ce_gradients(x, y, w, b)[0], norm)
    r = np.zeros_like(x)
    for _ in range(steps):
        r = r + step_size * _np_normalize(_ce_gradients(x + r, y, w, b)[0], norm)
        n = _np_norm(r, norm)
        r = r * np.minimum(1.0, np.divide(epsilon, n, out=np.zeros_like(n), where=n > 0))
    return r


def _linear_backbone(seed=0):
    rng = np.random.default_rng(seed)
    backbone = keras.Sequential([keras.Input((NUM_FEATURES,)), keras.layers.Dense(NUM_CLASSES)])
    w = rng.normal(size=(NUM_FEATURES, NUM_CLASSES)).astype("float64")
    b = rng.normal(size=NUM_CLASSES).astype("float64")
    backbone.set_weights([w.astype("float32"), b.astype("float32")])
    return backbone, w, b


def _batch(seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(8, NUM_FEATURES))
    y = rng.integers(0, NUM_CLASSES, size=8)
    y[[2, 5]] = data.UNLABELED
    return x, y


# ----------------------------------------------------------------- closed form
@pytest.mark.parametrize("norm", ["sample", "batch"])
@pytest.mark.parametrize("method", ["fgm", "pgd"])
def test_one_sgd_step_equals_the_clean_plus_adversarial_gradient_by_hand(method, norm):
    # epsilon 0.5 with 3 PGD steps of 0.3: the projection is active from the second step.
    epsilon, step_size, steps, learning_rate = 0.5, 0.3, 3, 0.5
    backbone, w, b = _linear_backbone()
    x, y = _batch()
    model = models.AdversarialTraining(
        backbone,
        method=method,
        epsilon=epsilon,
        step_size=step_size,
        steps=steps,
        norm=norm,
        supervised_normalize="labeled",
    )
    model.compile(optimizer=keras.optimizers.SGD(learning_rate))
    model.fit(tf.data.Dataset.from_tensors((x.astype("float32"), y)), epochs=1, verbose=0)

    r = _np_perturbation(x, y, w, b, method, epsilon, step_size, steps, norm)
    if method == "pgd":
        assert np.max(_np_norm(r, norm)) == pytest.approx(epsilon)  # projected
    _, dw_clean, db_clean = _ce_gradients(x, y, w, b)
    _, dw_adv, db_adv = _ce_gradients(x + r, y, w, b)
    new_w, new_b = backbone.get_weights()
    np.testing.assert_allclose(new_w, w - learning_rate * (dw_clean + dw_adv), atol=1e-5)
    np.testing.assert_allclose(new_b, b - learning_rate * (db_clean + db_adv), atol=1e-5)
    # The adversarial term moved the weights: the step differs from the clean one.
    assert np.max(np.abs(new_w - (w - learning_rate * dw_clean))) > 1e-3


@pytest.mark.parametrize("norm", ["sample", "batch"])
@pytest.mark.parametrize("method", ["fgm", "pgd"])
def test_adversarial_inputs_match_the_closed_form(method, norm):
    backbone, w, b = _linear_backbone()
    x, y = _batch()
    x_adv = models.adversarial_inputs(
        backbone, x.astype("float32"), y, epsilon=0.5, method=method, norm=norm
    )
    expected = x + _np_perturbation(x, y, w, b, method, 0.5, 0.3, 3, norm)
    np.testing.assert_allclose(x_adv.numpy(), expected, atol=1e-5)
    np.testing.assert_array_equal(x_adv.numpy()[[2, 5]], x.astype("float32")[[2, 5]])


def test_an_attack_lowers_the_accuracy_of_a_trained_model():
    x, y, _ = testing.tiny_data(num_samples=200)
    backbone = testing.tiny_backbone()
    backbone.compile(
        optimizer=keras.optimizers.Adam(0.05),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    backbone.fit(x, y, epochs=10, batch_size=50, verbose=0)

    def accuracy(inputs):
        return np.mean(np.argmax(backbone.predict(inputs, verbose=0), -1) == y)

    clean = accuracy(x)
    fgm = accuracy(models.adversarial_inputs(backbone, x, y, epsilon=1.0))
    # 3 steps of 0.5 reach the radius (the default 0.3 would stop at 0.9).
    pgd = accuracy(
        models.adversarial_inputs(backbone, x, y, epsilon=1.0, method="pgd", step_size=0.5)
    )
    assert clean > 0.9 and fgm < clean - 0.2 and pgd <= fgm + 0.02


# ----------------------------------------------------------- perturbation site
def _text_backbone(mask_zero=True, embeddings=1, name="text"):
    tokens = keras.Input((6,), dtype="int32", name="x")
    vectors = keras.layers.Embedding(30, 4, mask_zero=mask_zero, name="words")(tokens)
    if embeddings == 2:
        positions = keras.layers.Embedding(30, 4, name="positions")(tokens)
        vectors = keras.layers.Add()([vectors, positions])
    pooled = keras.layers.GlobalAveragePooling1D()(vectors)
    return keras.Model(tokens, keras.layers.Dense(3, name="logits")(pooled), name=name)


def _tokens(seed=0):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, 30, size=(10, 6)).astype("int32")
    tokens[:, 4:] = 0  # padding the mask must hide
    tokens[0, 2:] = 0
    return tokens


def test_the_site_is_the_only_embedding_and_its_split_equals_the_backbone():
    backbone = _text_backbone()
    site = models.PerturbationSite(backbone)
    assert site.layer == "words"
    tokens = _tokens()
    z = site.inputs(tokens)
    assert z.shape == (10, 6, 4)
    np.testing.assert_allclose(site.logits(tokens, z), backbone(tokens), atol=1e-6)
    # The mask survives the split: moving a padded position does not change the logits.
    moved = z.numpy().copy()
    moved[:, 5] += 10.0  # a padded position
    np.testing.assert_allclose(site.logits(tokens, moved), backbone(tokens), atol=1e-5)
    # A named inner layer of a Sequential backbone.
    dense = testing.tiny_backbone()
    inner = models.PerturbationSite(dense, layer=dense.layers[0].name)
    x, _, _ = testing.tiny_data()
    np.testing.assert_allclose(inner.logits(x, inner.inputs(x)), dense(x), atol=1e-6)
    assert models.PerturbationSite(dense).head is None  # no Embedding: the input


def test_fgm_on_masked_word_vectors_equals_the_closed_form():
    # Embedding -> masked mean -> Dense is linear in the word vectors: with n_i real tokens,
    # dL/dz_it = (dL/dh_i) / n_i on real tokens and 0 on padding.
    backbone = _text_backbone()
    tokens = _tokens()
    labels = np.arange(10) % 3
    model = models.AdversarialTraining(backbone, epsilon=0.7, supervised_normalize="labeled")
    terms, _ = model.compute_losses(tokens, None, tf.constant(labels, tf.int32))

    table, w, b = [v.astype("float64") for v in backbone.get_weights()]
    mask = (tokens != 0).astype("float64")[:, :, None]
    z = table[tokens]
    counts = mask.sum(1)

    def loss_and_grad(vectors):
        h = (vectors * mask).sum(1) / counts
        p = _softmax(h @ w + b)
        loss = -np.mean(np.log(p[np.arange(10), labels]))
        p[np.arange(10), labels] -= 1.0
        return loss, ((p / 10) @ w.T)[:, None, :] * mask / counts[:, :, None]

    clean, g = loss_and_grad(z)
    r = 0.7 * g / np.sqrt((g**2).sum((1, 2), keepdims=True))
    np.testing.assert_allclose(terms["supervised_loss"], clean, rtol=1e-5)
    np.testing.assert_allclose(terms["adversarial_loss"], loss_and_grad(z + r)[0], rtol=1e-5)
    assert float(terms["adversarial_loss"]) > clean


@pytest.mark.slow
def test_text_model_trains_its_embedding_and_reloads(tmp_path):
    keras.utils.set_random_seed(0)
    tokens, labels = _tokens(), np.arange(10) % 3
    model = models.AdversarialTraining(_text_backbone(), method="pgd", norm="batch")
    model.compile(optimizer=keras.optimizers.Adam(0.05))
    before = model.backbone.get_layer("words").get_weights()[0].copy()
    model.fit(tf.data.Dataset.from_tensors((tokens, labels)), epochs=2, verbose=0)
    assert np.max(np.abs(model.backbone.get_layer("words").get_weights()[0] - before)) > 0
    model.save(tmp_path / "text.keras")
    reloaded = keras.saving.load_model(tmp_path / "text.keras")
    assert reloaded.site.layer == "words" and reloaded.norm == "batch"
    np.testing.assert_allclose(
        reloaded.predict(tokens, verbose=0), model.predict(tokens, verbose=0), atol=1e-6
    )


# --------------------------------------------------------------------- contract


@pytest.mark.parametrize("run_eagerly", [False, True])
@pytest.mark.parametrize("method", ["fgm", "pgd"])
def test_batch_without_labels_is_a_zero_step(method, run_eagerly):
    """Graph or eager, no label gives zero loss and zero gradients: the weights stay."""
    x, _, _ = testing.tiny_data()
    model = models.AdversarialTraining(testing.tiny_backbone(), method=method)
    model.compile(optimizer="sgd", run_eagerly=run_eagerly)
    before = [w.numpy().copy() for w in model.backbone.weights]
    logs = model.train_on_batch(
        {"x": x[:16], "idx": np.arange(16)}, np.full(16, data.UNLABELED), return_dict=True
    )
    assert logs["loss"] == 0.0 and logs["adversarial_loss"] == 0.0
    assert int(model.optimizer.iterations.numpy()) == 1
    for weight, value in zip(model.backbone.weights, before):
        np.testing.assert_array_equal(weight.numpy(), value, err_msg=weight.path)


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"epsilon": 0.0}, "epsilon=0.0"),
        ({"epsilon": -1.0}, "epsilon=-1.0"),
        ({"step_size": 0}, "step_size=0"),
        ({"steps": 0}, "steps=0"),
        ({"steps": 2.5}, "steps=2.5"),
        ({"method": "fgsm"}, "method='fgsm'"),
        ({"norm": "l1"}, "norm='l1'"),
        ({"layer": "nowhere"}, "layer='nowhere'"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        models.AdversarialTraining(testing.tiny_backbone(), **kwargs)


def test_several_embeddings_need_a_layer_name():
    backbone = _text_backbone(embeddings=2)
    with pytest.raises(ValueError, match=r"\['words', 'positions'\].*layer=None"):
        models.AdversarialTraining(backbone)
    assert models.AdversarialTraining(backbone, layer="positions").site.layer == "positions"


def test_an_integer_input_without_embedding_cannot_be_perturbed():
    tokens = keras.Input((4,), dtype="int32")
    backbone = keras.Model(tokens, keras.layers.Dense(2)(keras.layers.Flatten()(tokens)))
    with pytest.raises(ValueError, match="dtype int32"):
        models.AdversarialTraining(backbone)
    with pytest.raises(ValueError, match="epsilon=-0.5"):
        models.adversarial_inputs(testing.tiny_backbone(), np.zeros((2, 6)), [0, 1], -0.5)


# ---------------------------------------------------------------------- script
