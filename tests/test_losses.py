import doctest
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import _oracles as oracles
from tfssl import losses
from tfssl.losses import (
    ConsistencyLoss,
    F1Loss,
    MaskedSparseCategoricalCrossentropy,
    SigmoidF1Loss,
    consistency_loss,
    distillation_loss,
    entropy_loss,
    f1_loss,
    masked_sparse_categorical_crossentropy,
    reloop_loss,
    sigmoid_f1_loss,
    smooth_labels,
)

RNG = np.random.default_rng(1234)
LOGITS = RNG.normal(size=(6, 4)).astype("float32") * 2
TARGET = RNG.normal(size=(6, 4)).astype("float32") * 2


def np_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def np_log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def np_kl(target_logits, logits):
    q = np_softmax(target_logits.astype("float64"))
    return (q * (np.log(q) - np_log_softmax(logits.astype("float64")))).sum(-1)


def np_mse(logits, target_logits):
    return ((np_softmax(logits) - np_softmax(target_logits)) ** 2).mean(-1)


# consistency_loss


@pytest.mark.parametrize("kind", ["mse", "kl"])
def test_consistency_loss_values_and_shapes(kind):
    expected = np_mse(LOGITS, TARGET) if kind == "mse" else np_kl(TARGET, LOGITS)
    per_sample = consistency_loss(LOGITS, TARGET, kind=kind, reduction="none")
    assert per_sample.shape == (6,) and per_sample.dtype == tf.float32
    np.testing.assert_allclose(per_sample.numpy(), expected, rtol=1e-5, atol=1e-7)
    mean = consistency_loss(LOGITS, TARGET, kind=kind)
    assert mean.shape == ()
    np.testing.assert_allclose(float(mean), expected.mean(), rtol=1e-5)
    graph = tf.function(lambda a, b: consistency_loss(a, b, kind=kind))
    np.testing.assert_allclose(float(graph(LOGITS, TARGET)), expected.mean(), rtol=1e-5)


def test_consistency_kl_direction_and_extreme_logits():
    # KL(target || prediction), not the reverse.
    reverse = np_kl(LOGITS, TARGET).mean()
    value = float(consistency_loss(LOGITS, TARGET, kind="kl"))
    assert abs(value - reverse) > 1e-3
    # Saturated softmax stays finite.
    extreme = consistency_loss([[100.0, -100.0]], [[-100.0, 100.0]], kind="kl")
    np.testing.assert_allclose(float(extreme), 200.0, rtol=1e-5)


@pytest.mark.parametrize("kind", ["mse", "kl"])
def test_consistency_loss_gradients_equal_numpy_in_both_inputs(kind):
    a, b = tf.constant(LOGITS), tf.constant(TARGET)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([a, b])
        loss = consistency_loss(a, b, kind=kind)
    grad_logits, grad_target = oracles.consistency_gradients(LOGITS, TARGET, kind)
    for point, expected in ((a, grad_logits), (b, grad_target)):
        np.testing.assert_allclose(
            tape.gradient(loss, point), expected, rtol=oracles.RTOL, atol=oracles.ATOL
        )


def test_consistency_loss_errors():
    with pytest.raises(ValueError, match="kind='l1'"):
        consistency_loss(LOGITS, TARGET, kind="l1")
    with pytest.raises(ValueError, match="reduction='sum'"):
        consistency_loss(LOGITS, TARGET, reduction="sum")
    with pytest.raises(ValueError, match="kind='js'"):
        ConsistencyLoss(kind="js")


def test_consistency_loss_class():
    loss = ConsistencyLoss(kind="kl")
    np.testing.assert_allclose(float(loss(TARGET, LOGITS)), np_kl(TARGET, LOGITS).mean(), rtol=1e-5)
    weights = np.array([1, 0, 0, 0, 0, 2], "float32")
    expected = (np_kl(TARGET, LOGITS) * weights).sum() / 6
    np.testing.assert_allclose(
        float(loss(TARGET, LOGITS, sample_weight=weights)), expected, rtol=1e-5
    )


# masked_sparse_categorical_crossentropy

LABELS = np.array([2, -1, 0, -1, 3, 1])


def np_ce(labels, logits):
    out = np.zeros(len(labels))
    for i, label in enumerate(labels):
        if label != -1:
            out[i] = -np_log_softmax(logits[i : i + 1].astype("float64"))[0, label]
    return out


def test_masked_ce_normalizations():
    per_sample = np_ce(LABELS, LOGITS)
    vector = masked_sparse_categorical_crossentropy(LABELS, LOGITS, normalize="none")
    assert vector.shape == (6,)
    np.testing.assert_allclose(vector.numpy(), per_sample, rtol=1e-5, atol=1e-7)
    assert vector.numpy()[1] == 0.0 and vector.numpy()[3] == 0.0
    batch = masked_sparse_categorical_crossentropy(LABELS, LOGITS)
    np.testing.assert_allclose(float(batch), per_sample.sum() / 6, rtol=1e-5)
    labeled = masked_sparse_categorical_crossentropy(LABELS, LOGITS, normalize="labeled")
    np.testing.assert_allclose(float(labeled), per_sample.sum() / 4, rtol=1e-5)


def test_masked_ce_column_labels_float_labels_and_graph():
    expected = np_ce(LABELS, LOGITS).sum() / 4
    graph = tf.function(
        lambda y, z: masked_sparse_categorical_crossentropy(y, z, normalize="labeled")
    )
    for labels in (LABELS[:, None], LABELS.astype("float32")):
        np.testing.assert_allclose(float(graph(labels, LOGITS)), expected, rtol=1e-5)


@pytest.mark.parametrize("normalize", ["batch", "labeled"])
def test_masked_ce_all_unlabeled_is_zero_with_zero_gradient(normalize):
    logits = tf.constant(LOGITS)
    labels = np.full(6, -1)
    with tf.GradientTape() as tape:
        tape.watch(logits)
        loss = masked_sparse_categorical_crossentropy(labels, logits, normalize=normalize)
    assert float(loss) == 0.0
    gradient = tape.gradient(loss, logits).numpy()
    assert np.all(np.isfinite(gradient)) and np.all(gradient == 0)


def test_masked_ce_errors():
    with pytest.raises(ValueError, match="normalize='sum'"):
        masked_sparse_categorical_crossentropy(LABELS, LOGITS, normalize="sum")
    with pytest.raises(ValueError, match="normalize='none'"):
        MaskedSparseCategoricalCrossentropy(normalize="none")


@pytest.mark.parametrize("normalize,denominator", [("batch", 6), ("labeled", 4)])
def test_masked_ce_class(normalize, denominator):
    loss = MaskedSparseCategoricalCrossentropy(normalize)
    expected = np_ce(LABELS, LOGITS).sum() / denominator
    np.testing.assert_allclose(float(loss(LABELS, LOGITS)), expected, rtol=1e-5)
    assert float(loss(np.full(6, -1), LOGITS)) == 0.0


def test_masked_ce_class_in_fit_is_sgd_on_the_labeled_mean():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    kernel, bias = [w.numpy() for w in model.layers[0].weights]
    model.compile(
        optimizer=keras.optimizers.SGD(0.5), loss=MaskedSparseCategoricalCrossentropy("labeled")
    )
    labels = np.array([0, -1, 2, -1, 1, 0])
    history = model.fit(LOGITS, labels, batch_size=6, epochs=1, verbose=0)
    expected, grad_logits = oracles.cross_entropy(labels, LOGITS @ kernel + bias, "labeled")
    np.testing.assert_allclose(history.history["loss"][0], expected, rtol=oracles.RTOL)
    kernel_grad, bias_grad = oracles.dense_gradients(LOGITS, grad_logits)
    updates = zip(model.layers[0].weights, (kernel, bias), (kernel_grad, bias_grad))
    for weight, start, gradient in updates:
        np.testing.assert_allclose(
            weight.numpy(), start - 0.5 * gradient, rtol=oracles.RTOL, atol=oracles.ATOL
        )


# f1 losses


def np_f1_loss(y_true, y_pred, eps=1e-7):
    y_true, y_pred = y_true.astype("float64"), y_pred.astype("float64")
    tp = (y_true * y_pred).sum(0)
    fp = ((1 - y_true) * y_pred).sum(0)
    fn = (y_true * (1 - y_pred)).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = tp / (tp + fp + eps)
        r = tp / (tp + fn + eps)
        f1 = 2 * p * r / (p + r + eps)
    return 1 - np.nan_to_num(f1, nan=0.0).mean()


def test_f1_loss_values():
    y_true = np.eye(4, dtype="float32")[RNG.integers(0, 4, 32)]
    y_pred = np_softmax(RNG.normal(size=(32, 4))).astype("float32")
    np.testing.assert_allclose(
        float(f1_loss(y_true, y_pred)), np_f1_loss(y_true, y_pred), rtol=1e-5
    )
    graph = tf.function(f1_loss)
    np.testing.assert_allclose(float(graph(y_true, y_pred)), np_f1_loss(y_true, y_pred), rtol=1e-5)
    np.testing.assert_allclose(
        float(F1Loss()(y_true, y_pred)), np_f1_loss(y_true, y_pred), rtol=1e-5
    )


def test_f1_loss_absent_class_and_nan():
    # A class with no positive and no predicted mass: epsilon makes its F1 0.
    y_true = np.array([[1.0, 0.0], [1.0, 0.0]], "float32")
    y_pred = np.array([[1.0, 0.0], [1.0, 0.0]], "float32")
    value = float(f1_loss(y_true, y_pred))
    np.testing.assert_allclose(value, np_f1_loss(y_true, y_pred), rtol=1e-6)
    assert value == pytest.approx(0.5, abs=1e-6)
    # A NaN F1 (here from a NaN prediction) counts as 0, it does not poison the loss.
    y_pred[1, 1] = np.nan
    assert float(f1_loss(y_true, y_pred)) == pytest.approx(0.5, abs=1e-6)


def np_sigmoid_f1(y_true, logits, beta, eta):
    s = 1 / (1 + np.exp(-beta * (logits.astype("float64") + eta)))
    tp = (s * y_true).sum(0)
    fp = (s * (1 - y_true)).sum(0)
    fn = ((1 - s) * y_true).sum(0)
    return 1 - (2 * tp / (2 * tp + fn + fp)).mean()


@pytest.mark.parametrize("beta,eta", [(1.0, 0.0), (2.5, -0.3)])
def test_sigmoid_f1_loss(beta, eta):
    y_true = (RNG.random((16, 5)) < 0.3).astype("float32")
    logits = RNG.normal(size=(16, 5)).astype("float32")
    expected = np_sigmoid_f1(y_true, logits, beta, eta)
    np.testing.assert_allclose(
        float(sigmoid_f1_loss(y_true, logits, beta, eta)), expected, rtol=1e-5
    )
    graph = tf.function(lambda y, z: sigmoid_f1_loss(y, z, beta=beta, eta=eta))
    np.testing.assert_allclose(float(graph(y_true, logits)), expected, rtol=1e-5)
    loss = SigmoidF1Loss(beta=beta, eta=eta)
    np.testing.assert_allclose(float(loss(y_true, logits)), expected, rtol=1e-5)


def test_sigmoid_f1_errors_and_underflow():
    with pytest.raises(ValueError, match="beta=0"):
        sigmoid_f1_loss([[1.0]], [[0.0]], beta=0)
    with pytest.raises(ValueError, match="beta=-1"):
        SigmoidF1Loss(beta=-1)
    # Second class: no positives and sigmoid underflows to 0 -> 0/0 -> F1 0, not NaN.
    value = float(sigmoid_f1_loss([[1.0, 0.0]], [[50.0, -200.0]]))
    assert value == pytest.approx(0.5, abs=1e-6)


# smoothing, distillation, ReLoop


def test_smooth_labels():
    labels = np.array([[0, 2], [1, 1]])
    out = smooth_labels(labels, num_classes=3, alpha=0.3)
    assert out.shape == (2, 2, 3) and out.dtype == tf.float32
    expected = 0.7 * np.eye(3)[labels] + 0.1
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(out.numpy().sum(-1), 1.0, rtol=1e-6)
    # Same targets as Keras' built-in smoothing inside the loss.
    logits = RNG.normal(size=(2, 3)).astype("float32")
    keras_loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.3)
    ours = keras.losses.CategoricalCrossentropy(from_logits=True)
    np.testing.assert_allclose(
        float(keras_loss(np.eye(3)[[0, 2]], logits)),
        float(ours(smooth_labels([0, 2], 3, 0.3), logits)),
        rtol=1e-6,
    )


def test_smooth_labels_errors():
    with pytest.raises(ValueError, match="alpha=1.5"):
        smooth_labels([0], 3, 1.5)
    with pytest.raises(ValueError, match="alpha=-0.1"):
        smooth_labels([0], 3, -0.1)
    with pytest.raises(ValueError, match="num_classes=0"):
        smooth_labels([0], 0, 0.1)


def test_distillation_loss_hand_computed():
    teacher = np.array([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]], "float32")
    student = np.array([[0.0, 1.0, 0.0], [1.0, -1.0, 2.0]], "float32")
    t = 2.0
    expected = t**2 * np_kl(teacher / t, student / t).mean()
    swapped_no_t2 = np_kl(student / t, teacher / t).mean()
    assert abs(expected - swapped_no_t2) > 0.1  # the two readings are distinguishable
    value = float(distillation_loss(teacher, student, temperature=t))
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    # Keras' own logits distillation agrees (it clips probabilities, hence the tolerance),
    # given a KLDivergence instance: in Keras 3.15 its default "kl_divergence" string
    # resolves to a plain function, which skips the softmax and the T^2 factor.
    keras_value = keras.distillation.LogitsDistillation(
        temperature=t, loss=keras.losses.KLDivergence()
    ).compute_loss(teacher, student)
    np.testing.assert_allclose(value, float(keras_value), rtol=1e-4)


def test_distillation_loss_errors_and_graph():
    with pytest.raises(ValueError, match="temperature=0"):
        distillation_loss(LOGITS, TARGET, temperature=0)
    graph = tf.function(lambda a, b: distillation_loss(a, b, temperature=3.0))
    expected = 9.0 * np_kl(TARGET / 3, LOGITS / 3).mean()
    np.testing.assert_allclose(float(graph(TARGET, LOGITS)), expected, rtol=1e-5)


def test_reloop_loss():
    y_true = np.array([1, 1, 0, 0, 1], "float32")
    y_pred = np.array([0.6, 0.9, 0.3, 0.1, 0.5], "float32")
    y_prev = np.array([0.8, 0.7, 0.1, 0.4, 0.5], "float32")
    # positives pay max(0, prev - pred): 0.2, 0, -, -, 0; negatives max(0, pred - prev): 0.2, 0
    expected = (0.2 + 0.0 + 0.2 + 0.0 + 0.0) / 5
    np.testing.assert_allclose(float(reloop_loss(y_true, y_pred, y_prev)), expected, rtol=1e-6)
    graph = tf.function(reloop_loss)
    np.testing.assert_allclose(
        float(graph(y_true[:, None], y_pred[:, None], y_prev[:, None])), expected, rtol=1e-6
    )


# Keras integration


@pytest.mark.parametrize(
    "loss",
    [
        ConsistencyLoss(kind="kl", reduction="sum", name="c"),
        MaskedSparseCategoricalCrossentropy("labeled", name="m"),
        F1Loss(name="f"),
        SigmoidF1Loss(beta=2.0, eta=0.5, name="s"),
    ],
)
def test_config_round_trip_and_serialization(loss):
    config = loss.get_config()
    clone = loss.__class__.from_config(config)
    assert clone.get_config() == config
    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(loss)))
    restored = keras.saving.deserialize_keras_object(serialized)
    assert type(restored) is type(loss) and restored.get_config() == config
    assert keras.losses.get(keras.saving.serialize_keras_object(loss)).get_config() == config


def test_docstring_examples():
    result = doctest.testmod(losses, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_entropy_loss_values_reductions_and_saturation():
    expected = -(np_softmax(LOGITS.astype("float64")) * np_log_softmax(LOGITS)).sum(-1)
    per_sample = entropy_loss(LOGITS, reduction="none")
    assert per_sample.shape == (6,)
    np.testing.assert_allclose(per_sample, expected, rtol=oracles.RTOL)
    np.testing.assert_allclose(float(entropy_loss(LOGITS)), expected.mean(), rtol=oracles.RTOL)
    # A saturated row has entropy 0 (no 0 * log 0 = NaN); a uniform row log(classes).
    np.testing.assert_allclose(
        entropy_loss([[200.0, 0.0, 0.0], [1.0, 1.0, 1.0]], reduction="none"),
        [0.0, np.log(3.0)],
        rtol=oracles.RTOL,
        atol=oracles.ATOL,
    )
    with pytest.raises(ValueError, match="reduction='sum'"):
        entropy_loss(LOGITS, reduction="sum")


@pytest.mark.parametrize("t", [0.5, 1.0])
def test_distillation_loss_below_and_at_temperature_one(t):
    # Temperatures in (0, 1] sharpen the distributions; they are valid, not refused.
    expected = t**2 * np_kl(TARGET / t, LOGITS / t).mean()
    value = float(distillation_loss(TARGET, LOGITS, temperature=t))
    np.testing.assert_allclose(value, expected, rtol=oracles.RTOL)


def test_distillation_and_reloop_per_sample_reductions():
    t = 2.0
    per_sample = distillation_loss(TARGET, LOGITS, temperature=t, reduction="none")
    np.testing.assert_allclose(per_sample, t**2 * np_kl(TARGET / t, LOGITS / t), rtol=oracles.RTOL)
    y_true = np.array([1.0, 0.0, 1.0], "float32")
    y_pred = np.array([0.2, 0.7, 0.9], "float32")
    y_prev = np.array([0.5, 0.4, 0.6], "float32")
    expected = y_true * np.maximum(0, y_prev - y_pred)
    expected += (1 - y_true) * np.maximum(0, y_pred - y_prev)
    np.testing.assert_allclose(
        reloop_loss(y_true, y_pred, y_prev, reduction="none"), expected, rtol=oracles.RTOL
    )
    with pytest.raises(ValueError, match="reduction='sum'"):
        reloop_loss(y_true, y_pred, y_prev, reduction="sum")


@pytest.mark.parametrize("normalize,denominator", [("batch", 6), ("labeled", 4)])
def test_masked_ce_class_weights_each_row(normalize, denominator):
    weights = np.array([2.0, 1.0, 0.5, 1.0, 0.0, 3.0], "float32")
    loss = MaskedSparseCategoricalCrossentropy(normalize)
    expected = (np_ce(LABELS, LOGITS) * weights).sum() / denominator
    value = float(loss(LABELS, LOGITS, sample_weight=weights))
    np.testing.assert_allclose(value, expected, rtol=oracles.RTOL)


def test_sigmoid_f1_loss_defaults_are_beta_one_eta_zero():
    y_true = (RNG.random((16, 5)) < 0.3).astype("float32")
    logits = RNG.normal(size=(16, 5)).astype("float32")
    expected = np_sigmoid_f1(y_true, logits, beta=1.0, eta=0.0)
    for value in (sigmoid_f1_loss(y_true, logits), SigmoidF1Loss()(y_true, logits)):
        np.testing.assert_allclose(float(value), expected, rtol=oracles.RTOL)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: distillation_loss(LOGITS, TARGET, temperature=True), "temperature=True"),
        (lambda: smooth_labels([0], 3, True), "alpha=True"),
    ],
)
def test_booleans_are_not_numbers(call, message):
    with pytest.raises(ValueError, match=message):
        call()
