"""ELR, Co-teaching and DivideMix: their loss terms and state updates against NumPy on a
fixed batch, the GMM split, config and bad input (two replicas: test_two_replicas.py)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

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
    # Float32 gradients of order 0.1 through softmax and log: 1e-4 relative; 1e-6 absolute
    # for entries near 0, about 10 float32 ulps of the largest entry.
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
        # One float32 product and difference: a few ulps (1e-7) of a value below 1.
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
    terms, outputs = model.compute_losses(*_batch(model, x, y_semi, rows))
    np.testing.assert_allclose(float(terms["loss"]), expected, rtol=RTOL)
    assert float(terms["remember_rate"]) == 0.75
    # The compiled metrics read the first network's logits, the one served by default
    # (atol: the same float32 forward pass, traced once and run eagerly once).
    np.testing.assert_allclose(outputs["logits"], z[0], atol=1e-5)
    assert np.max(np.abs(z[0] - z[1])) > 1e-2
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
        ({"supervised_objective": "gce"}, "supervised_objective='gce'"),
        ({"label_smoothing": 0.1}, "label_smoothing=0.1"),
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


# ------------------------------------------------------------------------ DivideMix
def _rng_losses():
    rng = np.random.default_rng(0)
    return np.concatenate([rng.gamma(2.0, 0.1, 70), 1.5 + rng.normal(0, 0.3, 30)])


# Losses whose scaled values hold 0.5 exactly (min 0, max 2, a loss of 1): the start puts that
# row in the low-loss component only.
MIDPOINT_LOSSES = np.array([0.0, 0.1, 0.2, 0.3, 1.0, 1.7, 1.8, 1.9, 2.0])


@pytest.mark.parametrize(
    "losses, clean",
    [(_rng_losses(), np.arange(100) < 70), (MIDPOINT_LOSSES, None)],
    ids=["rng", "midpoint"],
)
def test_gmm_split_equals_sklearn_from_the_same_start(losses, clean):
    from sklearn.mixture import GaussianMixture

    from tfssl.models.divide_mix import gmm_clean_probability

    values = (losses - losses.min()) / (losses.max() - losses.min())
    start = np.stack([values <= 0.5, values > 0.5], 1).astype(float)
    counts = start.sum(0)
    means = start.T @ values / counts
    variances = (start * (values[:, None] - means) ** 2).sum(0) / counts + 5e-4
    mixture = GaussianMixture(
        2, max_iter=10, tol=0.0, reg_covar=5e-4, weights_init=counts / len(values),
        means_init=means[:, None], precisions_init=(1 / variances)[:, None, None],
    )
    with pytest.warns(Warning):  # sklearn warns that 10 steps did not converge at tol=0
        mixture.fit(values[:, None])
    expected = mixture.predict_proba(values[:, None])[:, np.argmin(mixture.means_[:, 0])]
    p_clean = gmm_clean_probability(losses, steps=10, reg_covar=5e-4)
    # float64 EM on both sides; sklearn works in log space with a logsumexp: 1e-9 leaves
    # room for ten steps of rounding differences.
    np.testing.assert_allclose(p_clean, expected, atol=1e-9)
    if clean is not None:
        np.testing.assert_array_equal(p_clean > 0.5, clean)


def test_gmm_of_float32_losses_runs_in_float64():
    """DivideMix passes float32 per-sample losses: the EM still runs in float64."""
    from tfssl.models.divide_mix import gmm_clean_probability

    rng = np.random.default_rng(1)
    losses = np.concatenate([rng.gamma(2.0, 0.1, 70), 1.5 + rng.normal(0, 0.3, 30)])
    losses = losses.astype(np.float32)
    p_clean = gmm_clean_probability(losses)
    assert p_clean.dtype == np.float64
    np.testing.assert_array_equal(p_clean, gmm_clean_probability(losses.astype(np.float64)))


def test_gmm_of_equal_losses_is_all_clean_and_bad_input_is_named():
    from tfssl.models.divide_mix import gmm_clean_probability

    np.testing.assert_array_equal(gmm_clean_probability(np.full(5, 0.3)), np.ones(5))
    with pytest.raises(ValueError, match=r"shape \(2, 2\)"):
        gmm_clean_probability(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="steps=0"):
        gmm_clean_probability(np.arange(4.0), steps=0)


def _divide_mix(**kwargs):
    keras.utils.set_random_seed(0)
    x, y, _ = testing.tiny_data()
    y_semi = y.copy()
    y_semi[::4] = -1
    model = models.DivideMix(testing.tiny_backbone(), num_samples=len(x), **kwargs)
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    return model, x, y_semi


def test_co_divide_writes_each_networks_gmm_of_its_losses():
    from tfssl.models.divide_mix import gmm_clean_probability

    model, x, y_semi = _divide_mix(gmm_steps=5)
    indices, divided = model.divide(data.make_dataset(x, y_semi, batch_size=10))
    labeled = np.flatnonzero(y_semi >= 0)
    np.testing.assert_array_equal(indices, labeled)
    state = model.clean_probability.numpy()
    for n, network in enumerate(model.networks):
        logits = network.predict(x[labeled], verbose=0).astype("float64")
        expected = gmm_clean_probability(_ce(y_semi[labeled], logits), steps=5)
        # Float32 losses against float64 ones (1e-7 relative) move the float64 EM's
        # posteriors by about the same relative amount times its conditioning: 1e-4
        # relative, 1e-5 absolute for posteriors near 0 (stored as float32).
        np.testing.assert_allclose(state[labeled, n], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(state[y_semi < 0], 1.0)


def test_warm_up_is_both_networks_crossentropy():
    model, x, y_semi = _divide_mix(warmup_epochs=2)
    rows = np.arange(16)
    terms, _ = model.compute_losses(*_batch(model, x, y_semi, rows))
    expected = sum(
        _ce(y_semi[rows], net.predict(x[rows], verbose=0).astype("float64")).sum() / 16
        for net in model.networks
    )
    np.testing.assert_allclose(float(terms["loss"]), expected, rtol=RTOL)
    assert float(terms["consistency_loss"]) == 0.0


class _CountingShift(keras.layers.Layer):
    """An augmentation adding `0.5 * n` on its n-th (eager) call: each view differs."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls = 0

    def call(self, x, training=None):
        self.calls += 1
        return x + 0.5 * self.calls


def test_warm_up_trains_on_the_first_view():
    model, x, y_semi = _divide_mix(warmup_epochs=2, augment=_CountingShift())
    rows = np.arange(16)
    terms, _ = model.compute_losses(*_batch(model, x, y_semi, rows))
    assert model.augment.calls == model.K  # the step draws its K views, then warms up
    first_view = x[rows] + 0.5
    expected = sum(
        _ce(y_semi[rows], net.predict(first_view, verbose=0).astype("float64")).sum() / 16
        for net in model.networks
    )
    np.testing.assert_allclose(float(terms["loss"]), expected, rtol=RTOL)


def _numpy_sharpen(p, temperature):
    powered = p ** (1 / temperature)
    return powered / powered.sum(-1, keepdims=True)


def test_mixmatch_step_with_co_refinement_and_co_guessing_matches_numpy():
    model, x, y_semi = _divide_mix(warmup_epochs=0, lambda_u=4.0, T=0.5)
    model.epoch.assign(8)  # lambda_u ramps over 16 epochs: weight 2
    rows = np.arange(16)
    rng = np.random.default_rng(2)
    division = rng.uniform(size=(len(x), 2))
    model.clean_probability.assign(division.astype("float32"))
    lam, permutation = 0.7, rng.permutation(2 * 16)
    model.draw_mixing = lambda n: (tf.constant(lam), tf.constant(permutation, tf.int32))
    terms, _ = model.compute_losses(*_batch(model, x, y_semi, rows))

    xb, yb = x[rows].astype("float64"), y_semi[rows]
    p = [_softmax(net.predict(x[rows], verbose=0).astype("float64")) for net in model.networks]
    co_guess = _numpy_sharpen((p[0] + p[1]) / 2, 0.5)
    labeled = yb >= 0
    expected = {"loss": 0.0, "supervised_loss": 0.0, "consistency_loss": 0.0, "prior_loss": 0.0}
    for k, network in enumerate(model.networks):
        w = division[rows, 1 - k].astype("float32").astype("float64")[:, None]
        clean = labeled & (w[:, 0] > 0.5)
        one_hot = np.eye(3)[np.maximum(yb, 0)]
        refined = _numpy_sharpen(w * one_hot + (1 - w) * p[k], 0.5)
        targets = np.where(clean[:, None], refined, co_guess)
        inputs = np.concatenate([xb] * 2)  # K = 2 views, identity augmentation
        all_targets = np.concatenate([targets] * 2)
        is_x = np.concatenate([clean] * 2)
        mixed = lam * inputs + (1 - lam) * inputs[permutation]
        mixed_targets = lam * all_targets + (1 - lam) * all_targets[permutation]
        q = _softmax(network.predict(mixed.astype("float32"), verbose=0).astype("float64"))
        supervised = np.mean(-np.sum(mixed_targets * np.log(q), -1)[is_x])
        consistency = np.mean(np.mean((mixed_targets - q) ** 2, -1)[~is_x])
        prior = np.sum(1 / 3 * np.log((1 / 3) / q.mean(0)))
        expected["loss"] += supervised + 2.0 * consistency + prior
        expected["supervised_loss"] += supervised
        expected["consistency_loss"] += consistency
        expected["prior_loss"] += prior
    for name, value in expected.items():
        np.testing.assert_allclose(float(terms[name]), value, rtol=1e-4, err_msg=name)
    assert float(terms["unsupervised_weight"]) == 2.0


@pytest.mark.slow
def test_divide_mix_fits_divides_and_round_trips(tmp_path):
    model, x, y_semi = _divide_mix(warmup_epochs=1)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), metrics=["accuracy"])
    history = model.fit(data.make_dataset(x, y_semi, batch_size=16), epochs=2, verbose=0)
    assert history.history["consistency_loss"][0] == 0.0 < history.history["consistency_loss"][1]
    state = model.clean_probability.numpy()
    assert np.any(state[y_semi >= 0] < 1.0)
    np.testing.assert_array_equal(state[y_semi < 0], 1.0)
    assert type(model).from_config(model.get_config()).get_config() == model.get_config()
    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_array_equal(reloaded.clean_probability.numpy(), state)
    assert reloaded.serving_model("peer") is reloaded.networks[1]


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"num_samples": None}, "num_samples=None"),
        ({"warmup_epochs": -1}, "warmup_epochs=-1"),
        ({"K": 0}, "K=0"),
        ({"alpha": 0.0}, "alpha=0.0"),
        ({"lambda_u": -1.0}, "lambda_u=-1.0"),
        ({"clean_threshold": 1.0}, "clean_threshold=1.0"),
        ({"gmm_steps": 0}, "gmm_steps=0"),
        ({"lambda_u": 1.0, "weight_schedule": 2.0}, "weight_schedule=2.0"),
    ],
)
def test_divide_mix_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        models.DivideMix(testing.tiny_backbone(), **{"num_samples": 48, **kwargs})


def test_divide_mix_fits_datasets_only():
    model, x, y_semi = _divide_mix()
    with pytest.raises(ValueError, match="x of type ndarray"):
        model.fit(x, y_semi, epochs=1, verbose=0)
