"""The adaptive pseudo-label policies against NumPy versions of their papers' equations,
step by step over consecutive batches, so that running statistics and per-row memories
are checked across steps: FlexMatch, FreeMatch, SoftMatch, AdaMatch's relative threshold,
distribution alignment, UDA's training-signal annealing and FreeMatch's fairness term.

Each policy is registered on a model (which builds its state) and driven by hand:
`select` on a batch, then `apply_updates`, as the training step does after the optimizer
step. Float32 statistics are compared with float64 NumPy within `RTOL`; a 0/1 weight is
compared exactly, after checking that no confidence lies within `MARGIN` of its threshold
(where float32 rounding could flip it).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfssl import models, testing
from tfssl.models import policies
from tfssl.models.freematch import fairness_loss

C = 4
# float32 EMAs and means of a dozen O(1) values: a few units in the last place (1.2e-7).
RTOL = 1e-5
MARGIN = 1e-4


def host(policy, num_samples=None):
    """A model on which `policy` builds its state."""
    return models.FixMatch(
        testing.tiny_backbone(num_classes=C),
        weak_augment=keras.layers.Identity(),
        strong_augment=keras.layers.Identity(),
        pseudo_label_policy=policy,
        num_samples=num_samples,
    )


def step(model, probabilities, idx=None, labeled=None):
    """One `select` and `apply_updates`; returns `(weights, updates)` as NumPy."""
    policy = model.pseudo_label_policy
    idx = None if idx is None else tf.constant(idx, tf.int32)
    labeled = None if labeled is None else tf.constant(labeled, tf.float32)
    weights, updates = policy.select(tf.constant(probabilities, tf.float32), idx, labeled)
    policy.apply_updates(model, updates, idx)
    return weights.numpy(), {k: np.asarray(v) for k, v in updates.items()}


def batches(num_batches, rows, sharpness=3.0, seed=0):
    """Random guesses; `sharpness` spreads the confidences over (1/C, 1)."""
    rng = np.random.default_rng(seed)
    logits = sharpness * rng.normal(size=(num_batches, rows, C))
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def assert_binary_weights(weights, confidence, thresholds):
    """`weights == (confidence >= thresholds)`, with every confidence clear of its threshold."""
    assert np.min(np.abs(confidence - thresholds)) > MARGIN
    np.testing.assert_array_equal(weights, (confidence >= thresholds).astype("float32"))


# ------------------------------------------------------------------------ FlexMatch
@pytest.mark.parametrize("mapping, warmup", [("convex", True), ("linear", False)])
def test_flexmatch_thresholds_follow_the_memory_over_three_steps(mapping, warmup):
    tau, num_samples = 0.7, 10
    model = host(policies.FlexMatchThreshold(tau, mapping=mapping, warmup=warmup), num_samples)
    memory = np.full(num_samples, -1)
    rng = np.random.default_rng(1)
    kept_and_dropped = 0
    for probabilities in batches(3, 8, seed=2):
        idx = rng.choice(num_samples, size=8, replace=False)
        confidence, prediction = probabilities.max(-1), probabilities.argmax(-1)
        memory[idx] = np.where(confidence > tau, prediction, memory[idx])
        counts = np.bincount(memory[memory >= 0], minlength=C).astype(float)
        normaliser = max(counts.max(), np.sum(memory == -1)) if warmup else counts.max()
        beta = counts / normaliser
        mapped = beta / (2 - beta) if mapping == "convex" else beta
        thresholds = mapped * tau
        weights, updates = step(model, probabilities, idx)
        assert_binary_weights(weights, confidence, thresholds[prediction])
        np.testing.assert_allclose(updates["mean_threshold"], thresholds.mean(), rtol=RTOL)
        np.testing.assert_array_equal(model.pseudo_label_policy.memory.numpy(), memory + 1)
        kept_and_dropped += 0 < weights.sum() < len(weights)
    assert kept_and_dropped >= 1


def test_flexmatch_current_weights_read_the_memory_without_writing():
    model = host(policies.FlexMatchThreshold(0.7), num_samples=10)
    probabilities = batches(1, 10, seed=3)[0]
    step(model, probabilities, np.arange(10))
    memory = model.pseudo_label_policy.memory.numpy().copy()
    weights, _ = model.pseudo_label_policy.select(tf.constant(probabilities, tf.float32),
                                                  tf.range(10))
    current = model.pseudo_label_policy.current_weights(tf.constant(probabilities, tf.float32))
    np.testing.assert_array_equal(current.numpy(), weights.numpy())
    np.testing.assert_array_equal(model.pseudo_label_policy.memory.numpy(), memory)


def test_flexmatch_ties_follow_the_formula():
    # The Formula: a row enters the memory when max(p) > tau, strictly, and is kept when
    # max(p) >= its class threshold. 0.5, 0.25 and 0.75 are exact in float32, and so is
    # the threshold M(1) * 0.5 = 0.5 of a class with the largest count.
    model = host(policies.FlexMatchThreshold(0.5, warmup=False), num_samples=3)
    step(model, [[0.75, 0.25, 0.0, 0.0]], idx=[0])  # class 0 learned: its threshold is 0.5
    weights, updates = step(model, [[0.5, 0.25, 0.25, 0.0]], idx=[1])
    np.testing.assert_array_equal(weights, [1.0])  # max(p) = 0.5 reaches the threshold 0.5
    np.testing.assert_array_equal(updates["mean_threshold"], 0.5 / C)
    # max(p) = tau is not confident: row 1 stays out of the memory.
    np.testing.assert_array_equal(model.pseudo_label_policy.memory.numpy(), [1, 0, 0])


def test_flexmatch_needs_idx():
    model = host(policies.FlexMatchThreshold(), num_samples=4)
    with pytest.raises(ValueError, match="idx"):
        model.pseudo_label_policy.select(tf.fill([2, C], 0.25))


# ------------------------------------------------------------------------ FreeMatch
@pytest.mark.parametrize("initial_state, start", [("paper", 1.0 / C), ("usb", 1.0)])
def test_freematch_thresholds_are_the_papers_emas_over_three_steps(initial_state, start):
    momentum = 0.6
    model = host(policies.FreeMatchThreshold(momentum, initial_state=initial_state))
    tau, p_model, histogram = start, np.full(C, start), np.full(C, start)
    kept_and_dropped = 0
    for probabilities in batches(3, 12, seed=4):
        confidence, prediction = probabilities.max(-1), probabilities.argmax(-1)
        tau = momentum * tau + (1 - momentum) * confidence.mean()
        p_model = momentum * p_model + (1 - momentum) * probabilities.mean(0)
        counts = np.bincount(prediction, minlength=C)
        histogram = momentum * histogram + (1 - momentum) * counts / 12
        thresholds = p_model / p_model.max() * tau
        weights, updates = step(model, probabilities)
        assert_binary_weights(weights, confidence, thresholds[prediction])
        policy = model.pseudo_label_policy
        np.testing.assert_allclose(policy.global_threshold.numpy(), tau, rtol=RTOL)
        np.testing.assert_allclose(policy.p_model.numpy(), p_model, rtol=RTOL)
        np.testing.assert_allclose(policy.label_histogram.numpy(), histogram, rtol=RTOL)
        np.testing.assert_allclose(policy.logs(updates)["threshold"], thresholds.mean(), rtol=RTOL)
        np.testing.assert_array_equal(policy.current_weights(probabilities).numpy(), weights)
        kept_and_dropped += 0 < weights.sum() < len(weights)
    assert kept_and_dropped >= 1


def test_freematch_a_batch_without_unlabeled_rows_changes_nothing():
    model = host(policies.FreeMatchThreshold(0.5))
    before = [w.numpy() for w in model.pseudo_label_policy.weights]
    weights, _ = step(model, np.zeros((0, C), "float32"))
    assert weights.shape == (0,)
    for old, new in zip(before, model.pseudo_label_policy.weights):
        np.testing.assert_array_equal(new.numpy(), old)


def numpy_fairness(strong_logits, kept, p_model, histogram):
    """FreeMatch's Eq. 12 as USB computes it: the kept rows' mean prediction and argmax
    histogram, each modulated (a class without argmax gets 0) and sum-normalised."""
    num_classes = strong_logits.shape[-1]
    probabilities = np.exp(strong_logits) / np.exp(strong_logits).sum(-1, keepdims=True)
    probabilities = probabilities[kept]
    hist_s = np.bincount(probabilities.argmax(-1), minlength=num_classes) / len(probabilities)
    target = p_model / histogram
    target /= target.sum()
    scale = np.divide(1.0, hist_s, out=np.zeros(num_classes), where=hist_s > 0)
    mean_s = probabilities.mean(0) * scale
    mean_s /= mean_s.sum()
    return np.sum(target * np.log(mean_s + 1e-12))


def test_fairness_loss_equals_the_papers_term_and_its_gradient():
    rng = np.random.default_rng(5)
    strong_logits = rng.normal(size=(10, C))
    weights = (rng.uniform(size=10) > 0.4).astype("float32")
    p_model, histogram = rng.dirichlet(np.ones(C)), rng.dirichlet(np.ones(C))
    logits = tf.Variable(strong_logits, dtype=tf.float32)
    with tf.GradientTape() as tape:
        loss = fairness_loss(logits, weights, p_model.astype("float32"),
                             histogram.astype("float32"))
    expected = numpy_fairness(strong_logits, weights > 0, p_model, histogram)
    np.testing.assert_allclose(loss.numpy(), expected, rtol=RTOL)
    # Central differences in float64 against the float32 gradient (the histogram is fixed).
    gradient = tape.gradient(loss, logits).numpy()
    h, numeric = 1e-6, np.zeros_like(strong_logits)
    for i in range(10):
        for c in range(C):
            delta = np.zeros_like(strong_logits)
            delta[i, c] = h
            numeric[i, c] = (numpy_fairness(strong_logits + delta, weights > 0, p_model, histogram)
                             - numpy_fairness(strong_logits - delta, weights > 0, p_model,
                                              histogram)) / (2 * h)
    # float32 gradient of O(1) terms against a float64 difference quotient with error O(h^2).
    np.testing.assert_allclose(gradient, numeric, atol=1e-5)
    assert np.all(gradient[weights == 0] == 0)


def test_fairness_loss_without_kept_rows_is_zero():
    loss = fairness_loss(tf.ones((3, C)), tf.zeros(3), tf.fill([C], 0.25), tf.fill([C], 0.25))
    assert loss.numpy() == 0.0


# ------------------------------------------------------------------------ SoftMatch
@pytest.mark.parametrize("n_sigma, uniform_alignment", [(2.0, True), (1.0, False)])
def test_softmatch_weights_are_the_truncated_gaussian_over_three_steps(n_sigma, uniform_alignment):
    momentum = 0.3
    model = host(policies.SoftMatchWeight(momentum, n_sigma, uniform_alignment))
    mu, var, p_model = 1.0 / C, 1.0, np.full(C, 1.0 / C)
    partial_weights = 0
    for probabilities in batches(3, 12, seed=6):
        p_model = momentum * p_model + (1 - momentum) * probabilities.mean(0)
        aligned = probabilities / p_model if uniform_alignment else probabilities
        confidence = (aligned / aligned.sum(-1, keepdims=True)).max(-1)
        mu = momentum * mu + (1 - momentum) * confidence.mean()
        var = momentum * var + (1 - momentum) * confidence.var(ddof=1)
        expected = np.exp(-np.minimum(confidence - mu, 0) ** 2 / (2 * var / n_sigma**2))
        weights, updates = step(model, probabilities)
        np.testing.assert_allclose(weights, expected, rtol=RTOL)
        policy = model.pseudo_label_policy
        np.testing.assert_allclose(policy.confidence_mean.numpy(), mu, rtol=RTOL)
        np.testing.assert_allclose(policy.confidence_variance.numpy(), var, rtol=RTOL)
        if uniform_alignment:
            np.testing.assert_allclose(policy.alignment.p_model.numpy(), p_model, rtol=RTOL)
        np.testing.assert_allclose(policy.logs(updates)["threshold"], mu, rtol=RTOL)
        np.testing.assert_allclose(policy.current_weights(probabilities).numpy(), weights,
                                   rtol=RTOL)
        assert np.any(weights == 1.0)
        partial_weights += np.sum(weights < 0.99)
    assert partial_weights > 0


def test_softmatch_keeps_its_variance_with_fewer_than_two_rows():
    model = host(policies.SoftMatchWeight(0.5, uniform_alignment=False))
    probabilities = np.array([[0.7, 0.1, 0.1, 0.1]])
    step(model, probabilities)
    policy = model.pseudo_label_policy
    np.testing.assert_allclose(policy.confidence_mean.numpy(), 0.5 * 0.25 + 0.5 * 0.7, rtol=RTOL)
    assert policy.confidence_variance.numpy() == 1.0


# ------------------------------------------------------------- AdaMatch, alignment
def test_relative_threshold_is_tau_times_the_labeled_confidence_over_three_steps():
    model = host(policies.RelativeThreshold(0.9))
    unlabeled, labeled = batches(3, 12, seed=7), batches(3, 5, sharpness=4.0, seed=8)
    for probabilities, labeled_probabilities in zip(unlabeled, labeled):
        cutoff = 0.9 * labeled_probabilities.max(-1).mean()
        weights, updates = step(model, probabilities, labeled=labeled_probabilities)
        confidence = probabilities.max(-1)
        assert_binary_weights(weights, confidence, cutoff)
        np.testing.assert_allclose(updates["cutoff"], cutoff, rtol=RTOL)
        np.testing.assert_array_equal(
            model.pseudo_label_policy.current_weights(probabilities).numpy(), weights
        )
    # One labeled row in the global batch sets the cutoff alone.
    labeled_row = labeled[0][:1]
    step(model, unlabeled[0], labeled=labeled_row)
    np.testing.assert_allclose(model.pseudo_label_policy.cutoff.numpy(),
                               0.9 * labeled_row.max(), rtol=RTOL)
    # A batch without labeled rows keeps the last cutoff.
    cutoff = 0.9 * labeled_row.max()
    step(model, unlabeled[0], labeled=np.zeros((0, C)))
    np.testing.assert_allclose(model.pseudo_label_policy.cutoff.numpy(), cutoff, rtol=RTOL)
    with pytest.raises(ValueError, match="labeled_probabilities=None"):
        model.pseudo_label_policy.select(tf.constant(unlabeled[0], tf.float32))


@pytest.mark.parametrize("momentum, target", [(0.0, "labeled"), (0.6, "labeled"), (0.6, "uniform")])
def test_distribution_alignment_over_three_steps(momentum, target):
    model = host(policies.FixedThreshold(0.5))
    alignment = model.add_hook(policies.DistributionAlignment(momentum, target))
    p_model, p_target = np.full(C, 1.0 / C), np.full(C, 1.0 / C)
    for probabilities, labeled in zip(batches(3, 12, seed=9), batches(3, 5, seed=10)):
        p_model = momentum * p_model + (1 - momentum) * probabilities.mean(0)
        if target == "labeled":
            p_target = momentum * p_target + (1 - momentum) * labeled.mean(0)
        expected = probabilities * p_target / p_model
        expected /= expected.sum(-1, keepdims=True)
        aligned, updates = alignment.transform(tf.constant(probabilities, tf.float32),
                                               tf.constant(labeled, tf.float32))
        alignment.apply_updates(model, updates, None)
        np.testing.assert_allclose(aligned.numpy(), expected, rtol=RTOL)
        np.testing.assert_allclose(alignment.p_model.numpy(), p_model, rtol=RTOL)
        np.testing.assert_allclose(alignment.p_target.numpy(), p_target, rtol=RTOL)


# ---------------------------------------------------------------------------- UDA
@pytest.mark.parametrize("schedule", ["linear", "log", "exp"])
def test_tsa_threshold_follows_the_schedule(schedule):
    tsa = policies.TrainingSignalAnnealing(total_steps=100, schedule=schedule)
    for step_number in (0, 30, 100, 150):
        t = min(step_number / 100, 1.0)
        alpha = {"linear": t, "log": 1 - np.exp(-5 * t), "exp": np.exp(5 * (t - 1))}[schedule]
        np.testing.assert_allclose(tsa.threshold(step_number, C).numpy(),
                                   alpha * (1 - 1 / C) + 1 / C, rtol=RTOL)


@pytest.mark.parametrize("confidence", ["true_class", "max"])
def test_tsa_keeps_the_labeled_rows_below_the_threshold(confidence):
    tsa = policies.TrainingSignalAnnealing(total_steps=10, confidence=confidence)
    probabilities = batches(1, 12, sharpness=1.5, seed=11)[0]
    labels = np.array([0, 1, 2, 3, 0, 1, 2, 3, -1, -1, 2, 1])
    threshold = 0.4 * (1 - 1 / C) + 1 / C
    read = (probabilities[np.arange(12), np.maximum(labels, 0)] if confidence == "true_class"
            else probabilities.max(-1))
    assert np.min(np.abs(read - threshold)) > MARGIN
    expected = ((read <= threshold) & (labels >= 0)).astype("float32")
    kept = tsa.kept(tf.constant(probabilities, tf.float32), tf.constant(labels), 4)
    np.testing.assert_array_equal(kept.numpy(), expected)
    assert 0 < expected.sum() < 10


# ---------------------------------------------------------------- configs, errors
@pytest.mark.parametrize(
    "policy",
    [
        policies.FreeMatchThreshold(0.9, initial_state="usb"),
        policies.SoftMatchWeight(0.99, n_sigma=1.0, uniform_alignment=False),
        policies.RelativeThreshold(0.8),
    ],
)
def test_policy_config_round_trip(policy):
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(policy))
    assert type(clone) is type(policy) and clone.get_config() == policy.get_config()


def test_tsa_config_round_trip():
    tsa = policies.TrainingSignalAnnealing(50, "exp", confidence="max", normalize="labeled")
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(tsa))
    assert clone.get_config() == tsa.get_config()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: policies.FreeMatchThreshold(momentum=1.0), "momentum=1.0"),
        (lambda: policies.FreeMatchThreshold(initial_state="zero"), "initial_state='zero'"),
        (lambda: policies.SoftMatchWeight(momentum=-0.1), "momentum=-0.1"),
        (lambda: policies.SoftMatchWeight(n_sigma=0), "n_sigma=0"),
        (lambda: policies.RelativeThreshold(1.2), "threshold=1.2"),
        (lambda: policies.TrainingSignalAnnealing(0), "total_steps=0"),
        (lambda: policies.TrainingSignalAnnealing(10, schedule="cosine"), "schedule='cosine'"),
        (lambda: policies.TrainingSignalAnnealing(10, confidence="min"), "confidence='min'"),
        (lambda: policies.TrainingSignalAnnealing(10, normalize="batch"), "normalize='batch'"),
    ],
)
def test_bad_arguments_name_the_value(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_a_momentum_of_zero_is_accepted():
    # [0, 1): 0 keeps only the last batch's statistics.
    assert policies.FreeMatchThreshold(momentum=0).momentum == 0.0
    assert policies.SoftMatchWeight(momentum=0.0).momentum == 0.0
