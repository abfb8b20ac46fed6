"""VAT and VAT + EntMin against closed forms on a linear softmax model, and their contract."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfssl import data, losses, models, testing

from test_adversarial import _text_backbone, _tokens  # noqa: E402

NUM_FEATURES, NUM_CLASSES = 6, 4


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _kl(p, q):
    return np.sum(p * (np.log(p) - np.log(q)), -1)


def _linear_model(seed=0, **kwargs):
    rng = np.random.default_rng(seed)
    backbone = keras.Sequential([keras.Input((NUM_FEATURES,)), keras.layers.Dense(NUM_CLASSES)])
    w = rng.normal(size=(NUM_FEATURES, NUM_CLASSES))
    b = rng.normal(size=NUM_CLASSES)
    backbone.set_weights([w.astype("float32"), b.astype("float32")])
    x = rng.normal(size=(16, NUM_FEATURES))
    return models.VAT(backbone, **kwargs), x, w, b


def test_vat_loss_is_the_kl_along_the_dominant_eigenvector_of_the_kl_hessian():
    epsilon = 0.05
    model, x, w, b = _linear_model(xi=1e-3, epsilon=epsilon, power_iterations=40, seed=3)
    labels = tf.fill([len(x)], data.UNLABELED)
    terms, _ = model.compute_losses(tf.constant(x, tf.float32), None, labels)

    p = _softmax(x @ w + b)
    along_first, along_second = [], []
    for row, p_row in zip(x, p):
        # KL(p(x) || p(x + r)) = r^T H r / 2 + O(|r|^3), H = W (diag p - p p^T) W^T.
        hessian = w @ (np.diag(p_row) - np.outer(p_row, p_row)) @ w.T
        _, vectors = np.linalg.eigh(hessian)
        for u, out in ((vectors[:, -1], along_first), (vectors[:, -2], along_second)):
            kls = [_kl(p_row, _softmax((row + s * epsilon * u) @ w + b)) for s in (1, -1)]
            out.append(np.mean(kls))
    expected = np.mean(along_first)
    np.testing.assert_allclose(float(terms["vat_loss"]), expected, rtol=0.03)
    # The test tells the directions apart: the second eigenvector gives a much smaller KL.
    assert np.mean(along_second) < 0.8 * expected


def test_loss_terms_follow_the_formula():
    model, x, w, b = _linear_model(epsilon=0.5, entropy_minimization=True, entropy_weight=0.3)
    labels = np.full(len(x), data.UNLABELED)
    labels[:4] = [0, 1, 2, 3]
    terms, _ = model.compute_losses(tf.constant(x, tf.float32), None, tf.constant(labels))
    p = _softmax(x @ w + b)
    supervised = -np.sum(np.log(p[np.arange(4), labels[:4]])) / len(x)  # "batch" normalize
    entropy = np.mean(-np.sum(p * np.log(p), -1))
    np.testing.assert_allclose(terms["supervised_loss"], supervised, rtol=1e-5)
    np.testing.assert_allclose(terms["entropy_loss"], entropy, rtol=1e-5)
    assert float(terms["unsupervised_weight"]) == 1.0  # the paper's fixed alpha
    assert 0.0 < float(terms["vat_loss"])
    np.testing.assert_allclose(
        terms["loss"], supervised + terms["vat_loss"] + 0.3 * entropy, rtol=1e-5
    )
    np.testing.assert_allclose(losses.entropy_loss(x @ w + b), entropy, rtol=1e-5)


def test_ramp_up_uses_the_schedule():
    model, _, _, _ = _linear_model(ramp_up=True, ramp_up_epochs=10, max_unsupervised_weight=2.0)
    model.epoch.assign(5)
    assert float(model.unsupervised_weight()) == pytest.approx(2.0 * np.exp(-5.0 * 0.5**2))
    model.epoch.assign(10)
    assert float(model.unsupervised_weight()) == pytest.approx(2.0)


def test_the_random_start_follows_the_row_not_its_place_in_the_batch():
    model, x, _, _ = _linear_model(epsilon=0.5, seed=7)
    labels = tf.fill([len(x)], data.UNLABELED)
    x = tf.constant(x, tf.float32)
    idx = tf.range(len(x), dtype=tf.int64)

    def vat(model, order):
        terms, _ = model.compute_losses(tf.gather(x, order), tf.gather(idx, order), labels)
        return float(terms["vat_loss"])

    forward, backward = vat(model, idx), vat(model, idx[::-1])
    np.testing.assert_allclose(forward, backward, rtol=1e-5)
    other_seed, _, _, _ = _linear_model(epsilon=0.5, seed=8)
    assert abs(vat(other_seed, idx) - forward) > 1e-4 * forward
    # Without idx the key is the position in the batch: the order then matters.
    position_keyed = [
        float(model.compute_losses(tf.gather(x, o), None, labels)[0]["vat_loss"])
        for o in (idx, idx[::-1])
    ]
    assert position_keyed[0] == pytest.approx(forward, rel=1e-5)
    assert abs(position_keyed[1] - forward) > 1e-4 * forward


def _clusters(seed=0, n=100):
    """Two vertical clusters; one label per class, at opposite ends of each cluster."""
    rng = np.random.default_rng(seed)
    left = np.stack([rng.normal(-1.5, 0.3, n), rng.normal(0.0, 1.5, n)], 1)
    right = np.stack([rng.normal(1.5, 0.3, n), rng.normal(0.0, 1.5, n)], 1)
    x = np.concatenate([left, right]).astype("float32")
    y = np.repeat([0, 1], n)
    y_semi = np.full(2 * n, data.UNLABELED)
    labeled = [np.argmax(left[:, 1]), n + np.argmin(right[:, 1])]
    y_semi[labeled] = y[labeled]
    return x, y, y_semi


@pytest.mark.slow
def test_vat_learns_from_unlabeled_rows_alone():
    x, y, y_semi = _clusters()
    batches = tf.data.Dataset.from_tensors(({"x": x, "idx": np.arange(len(x))}, y_semi))
    accuracy = {}
    for weight in (0.0, 1.0):
        keras.utils.set_random_seed(0)
        backbone = keras.Sequential(
            [keras.Input((2,)), keras.layers.Dense(16, activation="tanh"), keras.layers.Dense(2)]
        )
        model = models.VAT(
            backbone, xi=1e-3, epsilon=0.5, max_unsupervised_weight=weight, seed=0,
            supervised_normalize="labeled",
        )
        model.compile(optimizer=keras.optimizers.Adam(0.05))
        model.fit(batches.repeat(120), epochs=1, verbose=0)
        accuracy[weight] = np.mean(np.argmax(backbone.predict(x, verbose=0), -1) == y)
    # Two labels tilt the supervised boundary across the clusters; the KL on the unlabeled
    # rows moves it into the gap between them.
    assert accuracy[0.0] < 0.9
    assert accuracy[1.0] > 0.97 and accuracy[1.0] > accuracy[0.0] + 0.1


def test_on_text_the_word_vectors_are_perturbed_before_the_masked_pooling():
    epsilon = 0.05
    keras.utils.set_random_seed(0)
    backbone = _text_backbone()
    model = models.VAT(backbone, xi=1e-3, epsilon=epsilon, power_iterations=40, seed=0)
    assert model.site.layer == "words"
    tokens = _tokens()
    terms, _ = model.compute_losses(tf.constant(tokens), None, tf.fill([10], data.UNLABELED))
    table = backbone.get_layer("words").get_weights()[0]
    w, b = backbone.get_layer("logits").get_weights()
    real = tokens != 0
    counts = real.sum(1)
    pooled = (table[tokens] * real[..., None]).sum(1) / counts[:, None]
    p = _softmax(pooled @ w + b)
    at_words, at_pooled = [], []
    for p_row, pooled_row, count in zip(p, pooled, counts):
        hessian = w @ (np.diag(p_row) - np.outer(p_row, p_row)) @ w.T
        u = np.linalg.eigh(hessian)[1][:, -1]
        # The largest KL within ||r|| = epsilon over the word vectors spreads r evenly over
        # the row's real words: the mean pooling passes on epsilon / sqrt(count) of it.
        # Applied after the pooling, r would pass on all of epsilon.
        for step, out in ((epsilon / np.sqrt(count), at_words), (epsilon, at_pooled)):
            kls = [_kl(p_row, _softmax((pooled_row + s * step * u) @ w + b)) for s in (1, -1)]
            out.append(np.mean(kls))
    # As the linear test above: the power iteration's finite differences (xi = 1e-3) and
    # the KL's third-order term at epsilon leave a few percent.
    np.testing.assert_allclose(float(terms["vat_loss"]), np.mean(at_words), rtol=0.03)
    assert np.mean(at_pooled) > 2.0 * np.mean(at_words)  # the two sites are told apart
    # The direction lives on the word vectors, and is zero on the padding the mask hides.
    z = model.site.inputs(tokens, training=True)
    direction = model.virtual_adversarial_direction(tokens, z, backbone(tokens)).numpy()
    assert direction.shape == (10, 6, 4)
    np.testing.assert_array_equal(direction[~real], 0.0)
    # Unit norm up to float32 rounding of a 24-term sum of squares and a division (~1e-6).
    np.testing.assert_allclose(np.sqrt((direction**2).sum(axis=(1, 2))), 1.0, rtol=1e-5)


def _finite_difference_direction(backbone, x, d, step):
    """Per row, the direction that one power iteration of `virtual_adversarial_direction`
    gives in exact arithmetic: `g = J(x + s d)^T (softmax(f(x + s d)) - softmax(f(x)))`, the
    gradient of `KL(p(x) || p(x + r))` at `r = s d` (`d` normalized, `s` the step), with
    float64 NumPy on the float32 weights of a `tiny_backbone` (Dense tanh, Dense).

    Returns:
        `(g / ||g||, kappa)`: the unit directions and, per row, `||H|| / ||H d||` with
        `H = J^T (diag q - q q^T) J` at `x + s d`: how much an error in the step's direction
        can turn `g`, relative to its length.
    """
    w1, b1, w2, b2 = [w.astype("float64") for w in backbone.get_weights()]
    d = d / np.linalg.norm(d, axis=-1, keepdims=True)
    perturbed = x.astype("float64") + step * d
    hidden = np.tanh(perturbed @ w1 + b1)
    q = _softmax(hidden @ w2 + b2)
    p = _softmax(np.tanh(x.astype("float64") @ w1 + b1) @ w2 + b2)
    jacobian = np.einsum("nk,bk,kc->bcn", w1, 1 - hidden**2, w2)  # d logits / d input
    g = np.einsum("bcn,bc->bn", jacobian, q - p)
    softmax_jacobian = q[:, :, None] * np.eye(q.shape[-1]) - q[:, :, None] * q[:, None, :]
    hessian = np.einsum("bcn,bck,bkm->bnm", jacobian, softmax_jacobian, jacobian)
    kappa = np.linalg.norm(hessian, 2, axis=(1, 2)) / np.linalg.norm(
        np.einsum("bnm,bm->bn", hessian, d), axis=-1
    )
    return g / np.linalg.norm(g, axis=-1, keepdims=True), kappa


@pytest.mark.parametrize("policy, unit", [("mixed_bfloat16", 2.0**-7), ("mixed_float16", 2.0**-10)])
def test_under_mixed_precision_the_direction_survives_the_rounding(policy, unit, dtype_policy):
    """With the default xi = 1e-6, `x + xi * d` rounds back to `x` in half precision; the
    step is raised to `s = 8 u ||x||` (8 rounding units of the row's norm) and the power
    iteration finds the exact finite-difference direction at that step, up to rounding.

    The bound, per row: both passes round their input to the compute dtype, `x` and
    `x + s d` each within `u / 2` of their norm, so the step the backbone sees is off by at
    most `u ||x|| = s / 8`; to first order that turns the gradient by at most
    `kappa / 8` (`kappa = ||H|| / ||H d||`, `_finite_difference_direction`). The hidden
    activations and logits are rounded too, at points that depend on the kernels: a CPU
    with native bfloat16 (AVX512-BF16, AMX) rounds once per fused op, one without it (AMD
    EPYC before Zen 4) emulates bfloat16 and rounds after each op. Those roundings are
    `u / 2` of values that the step moves by the same relative amount as the input, so
    they are allowed as much again: `sin(angle) <= kappa / 4` on every row. The comparison
    is with the finite-difference direction at the raised step, not with the Hessian's
    direction `H d`: at `s / ||x|| = 6%` (bfloat16) the step's own truncation error turns
    rows of low curvature along `d` by up to 69 degrees in exact arithmetic (15 at float16's 0.8%).
    """
    x, _, _ = testing.tiny_data()
    x = tf.constant(x)
    idx = tf.range(len(x), dtype=tf.int64)
    keras.utils.set_random_seed(0)
    reference = testing.tiny_backbone()
    float32_model = models.VAT(reference, seed=1)
    assert float32_model.finite_difference_step(x).numpy() == np.float32(1e-6)
    start = float32_model._random_directions(x, idx).numpy().astype("float64")

    dtype_policy(policy)
    backbone = testing.tiny_backbone()
    backbone.set_weights(reference.get_weights())
    model = models.VAT(backbone, seed=1)
    step = model.finite_difference_step(x).numpy()
    # rtol: float32 norm of 6 features against the float64 one, a few float32 ulps.
    np.testing.assert_allclose(
        step[:, 0], 8 * unit * np.linalg.norm(x.numpy(), axis=-1), rtol=1e-6
    )
    direction = model.virtual_adversarial_direction(
        x, model.site.inputs(x), backbone(x, training=True), idx
    ).numpy()
    assert np.all(np.isfinite(direction))
    # rtol: the norm of a float32 unit vector, a few float32 ulps.
    np.testing.assert_allclose(np.linalg.norm(direction, axis=-1), 1.0, rtol=1e-5)

    expected, kappa = _finite_difference_direction(reference, x.numpy(), start, step)
    cosine = np.sum(direction * expected, -1)
    bound = kappa / 4
    # Rows where the bound reaches 1 (a gradient flat along d) may point anywhere; on at
    # least half the rows it asks for a cosine above 0.74 (random directions in 6
    # dimensions have |cosine| about 0.4), so the check can fail.
    informative = bound < 1
    assert np.mean(bound < 2 / 3) >= 0.5, bound
    lowest = np.sqrt(1 - bound[informative] ** 2)
    assert np.all(cosine[informative] >= lowest), (cosine[informative], lowest)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"xi": 0.0}, "xi=0.0"),
        ({"epsilon": -1.0}, "epsilon=-1.0"),
        ({"power_iterations": 0}, "power_iterations=0"),
        ({"entropy_weight": -0.5}, "entropy_weight=-0.5"),
        ({"layer": "nowhere"}, "layer='nowhere'"),
        ({"seed": 1.5}, "seed=1.5"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        models.VAT(testing.tiny_backbone(), **kwargs)


def test_several_embeddings_need_a_layer_name():
    with pytest.raises(ValueError, match=r"\['words', 'positions'\].*layer=None"):
        models.VAT(_text_backbone(embeddings=2))
