"""ELR, Co-teaching and DivideMix: their loss terms and state updates against NumPy on a
fixed batch, the GMM split, two replicas against one device, config and bad input."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from mirrored_utils import mirrored_equivalence
from tfssl import data, models, testing

# Float32 softmax, log and sums over 3 classes, against float64 NumPy: a few ulps of the
# values (about 1e-6); 1e-5 covers the reductions over the batch.
RTOL = 1e-5


def _softmax(logits):
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


def _ce(labels, logits):
    log_p = np.log(_softmax(logits))
    return np.where(labels >= 0, -log_p[np.arange(len(labels)), np.maximum(labels, 0)], 0.0)


def _batch(model, x, y, rows):
    idx = tf.constant(rows, tf.int64)
    return model.unpack_batch(({"x": tf.constant(x[rows]), "idx": idx}, tf.constant(y[rows])))


# ---------------------------------------------------------------------------- ELR
def _numpy_elr(logits, labels, previous, beta, weight):
    p = np.clip(_softmax(logits), 1e-4, 1 - 1e-4)
    targets = beta * previous + (1 - beta) * p / p.sum(-1, keepdims=True)
    regularizer = np.log(1 - np.sum(targets * p, -1)).mean()
    supervised = _ce(labels, logits).sum() / len(labels)
    return supervised + weight * regularizer, supervised, regularizer, targets


def test_elr_loss_and_target_update_match_numpy():
    keras.utils.set_random_seed(0)
    x, _, y_semi = testing.tiny_data()
    model = models.ELR(testing.tiny_backbone(), num_samples=len(x), beta=0.6,
                       weight_schedule=2.0)
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    rng = np.random.default_rng(1)
    start = _softmax(rng.normal(size=(len(x), 3)))
    model.targets.assign(start.astype("float32"))
    rows = np.array([3, 10, 11, 20, 30, 47])
    logits = model.backbone.predict(x[rows], verbose=0).astype("float64")
    expected = _numpy_elr(logits, y_semi[rows], start[rows], 0.6, 2.0)
    terms, outputs = model.compute_losses(*_batch(model, x, y_semi, rows))
    np.testing.assert_allclose(float(terms["loss"]), expected[0], rtol=RTOL)
    np.testing.assert_allclose(float(terms["supervised_loss"]), expected[1], rtol=RTOL)
    np.testing.assert_allclose(float(terms["elr_loss"]), expected[2], rtol=RTOL)
    # A step (learning rate 0, so the logits stay) writes the updated targets of its rows
    # only, after the optimizer step.
    model.train_on_batch({"x": x[rows], "idx": rows}, y_semi[rows])
    targets = model.targets.numpy()
    np.testing.assert_allclose(targets[rows], expected[3], rtol=RTOL)
    others = np.setdiff1d(np.arange(len(x)), rows)
    np.testing.assert_array_equal(targets[others], start[others].astype("float32"))


def test_elr_gradient_is_the_papers():
    # d/dz log(1 - <p, t>) = -p * (t - <p, t>) / (1 - <p, t>) (arXiv 2007.00151, eq. 8
    # in logit form), for unclipped p.
    model = models.ELR(testing.tiny_backbone(), num_samples=4, beta=0.0, weight_schedule=1.0)
    logits = tf.constant([[0.5, -0.2, 0.1], [1.0, 0.3, -1.0]])
    with tf.GradientTape() as tape:
        tape.watch(logits)
        p = tf.clip_by_value(tf.nn.softmax(logits), model.clip, 1 - model.clip)
        targets = model.updated_targets(p, tf.zeros([2, 3]))
        value = tf.reduce_sum(tf.math.log(1 - tf.reduce_sum(targets * p, -1)))
    p = _softmax(logits.numpy().astype("float64"))
    inner = np.sum(p * p, -1, keepdims=True)
    expected = -p * (p - inner) / (1 - inner)
    np.testing.assert_allclose(tape.gradient(value, logits).numpy(), expected, rtol=1e-4,
                               atol=1e-6)


def test_elr_needs_num_samples_and_a_valid_beta():
    with pytest.raises(ValueError, match="num_samples=None"):
        models.ELR(testing.tiny_backbone())
    with pytest.raises(ValueError, match="beta=1.0"):
        models.ELR(testing.tiny_backbone(), num_samples=4, beta=1.0)


# --------------------------------------------------------------------- Co-teaching
def test_co_teaching_remember_rate_follows_the_paper():
    model = models.CoTeaching(testing.tiny_backbone(), forget_rate=0.4, gradual_epochs=5)
    for epoch in [0, 1, 3, 5, 9]:
        model.epoch.assign(epoch)
        expected = 1 - min(epoch / 5 * 0.4, 0.4)
        np.testing.assert_allclose(float(model.remember_rate()), expected, rtol=1e-6)


def test_co_teaching_trains_each_network_on_the_rows_the_other_chose():
    keras.utils.set_random_seed(0)
    x, y, _ = testing.tiny_data()
    y_semi = y.copy()
    y_semi[::5] = -1
    model = models.CoTeaching(testing.tiny_backbone(), forget_rate=0.5, gradual_epochs=2)
    model.epoch.assign(1)  # R = 0.75
    rows = np.arange(16)
    labels = y_semi[rows]
    z = [network.predict(x[rows], verbose=0).astype("float64") for network in model.networks]
    ce = [_ce(labels, logits) for logits in z]
    labeled = labels >= 0
    keep = int(np.floor(0.75 * labeled.sum()))
    chosen = []
    for loss in ce:
        order = np.argsort(np.where(labeled, loss, np.inf))
        mask = np.zeros(len(rows), bool)
        mask[order[:keep]] = True
        chosen.append(mask)
    expected = ce[0][chosen[1]].mean() + ce[1][chosen[0]].mean()
    terms, _ = model.compute_losses(*_batch(model, x, y_semi, rows))
    np.testing.assert_allclose(float(terms["loss"]), expected, rtol=RTOL)
    assert float(terms["remember_rate"]) == 0.75
    # The networks differ (a fresh peer), so their choices do too on this batch.
    assert not np.array_equal(chosen[0], chosen[1])


def test_co_teaching_gradient_reaches_each_network_through_its_own_term():
    keras.utils.set_random_seed(0)
    x, y, _ = testing.tiny_data()
    model = models.CoTeaching(testing.tiny_backbone(), forget_rate=0.3)
    rows = np.arange(12)
    batch = _batch(model, x, y, rows)
    with tf.GradientTape() as tape:
        terms, _ = model.compute_losses(*batch)
    gradients = tape.gradient(terms["loss"], model.backbone.trainable_weights)
    assert len(gradients) == 2 * len(model.networks[0].trainable_weights)
    assert all(g is not None and np.any(g.numpy() != 0) for g in gradients)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"forget_rate": 1.0}, "forget_rate=1.0"),
        ({"gradual_epochs": 0}, "gradual_epochs=0"),
        ({"peer": "net"}, "peer='net'"),
        ({"peer": testing.tiny_backbone(num_classes=4)}, "output shape"),
    ],
)
def test_co_teaching_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        models.CoTeaching(testing.tiny_backbone(), **kwargs)


def test_co_teaching_serves_either_network():
    model = models.CoTeaching(testing.tiny_backbone())
    assert model.serving_model() is model.networks[0]
    assert model.serving_model("peer") is model.networks[1]
    with pytest.raises(ValueError, match="which='ensemble'"):
        model.serving_model("ensemble")
    assert type(model).from_config(model.get_config()).get_config() == model.get_config()


# ---------------------------------------------------------------- two replicas
def make_elr():
    """Mirrored factory: ELR on the tiny data."""
    x, _, y_semi = testing.tiny_data()
    model = models.ELR(testing.tiny_backbone(), num_samples=len(x))
    return model, data.make_dataset(x, y_semi, batch_size=16)


def make_co_teaching():
    """Mirrored factory: Co-teaching past its ramp (the selection drops rows)."""
    x, y, _ = testing.tiny_data()
    model = models.CoTeaching(testing.tiny_backbone(), forget_rate=0.4, gradual_epochs=1)
    return model, data.make_dataset(x, y, batch_size=16)


def test_two_replicas_equal_one_device():
    specs = ["test_noise_models:make_elr", "test_noise_models:make_co_teaching"]
    results = mirrored_equivalence(*specs)
    for spec in specs:
        result = results[spec]
        assert result["num_replicas"] == 2, spec
        assert result["copies_differ"] == 0.0, spec
        assert result["weights_differ"] < 1e-5 and result["loss_differ"] < 1e-5, (spec, result)
