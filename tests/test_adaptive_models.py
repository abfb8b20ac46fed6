"""FlexMatch, FreeMatch, SoftMatch, AdaMatch and UDA as models: their training step
against NumPy on a fixed batch over two steps (fixed views, a zero learning rate, so the
running statistics are checked across steps inside `fit`), defaults buildable from a
backbone alone, `.keras` round trips that keep the moved running statistics, the
pseudo-label monitor, raw-string text with TF-IDF replacement as the strong view, and
argument errors. The contract suite (tests/test_contract.py) runs the rest on each of
them, with momenta that move the statistics (`tfssl.testing.CONTRACT_ARGUMENTS`): the
contract, two replicas against one device, fresh-process serving."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from test_adaptive_policies import numpy_fairness
from tfssl import backbones, data, models, testing, text
from tfssl.models import policies

# Loss terms are float32 means of 48 rows of O(1) values: within a few hundred float32
# units in the last place (1.2e-7 each) of the float64 computation.
RTOL = 1e-5
MARGIN = 1e-4
ADAPTIVE = (models.FlexMatch, models.FreeMatch, models.SoftMatch, models.AdaMatch, models.UDA)


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def cross_entropy(labels, logits):
    return -np.log(softmax(logits)[np.arange(len(labels)), labels])


def fixed_views(model_class, backbone, **kwargs):
    """The model with the input as weak view and `0.5 x + 0.1` as strong view."""
    if model_class is models.FlexMatch:
        kwargs.setdefault("num_samples", 48)
    return model_class(
        backbone,
        weak_augment=keras.layers.Identity(),
        strong_augment=keras.layers.Rescaling(0.5, offset=0.1),
        **kwargs,
    )


def fit_one_batch(model, epochs=2):
    """`epochs` steps on the 48 tiny rows in one batch with a zero learning rate: the
    backbone stays fixed, the policy's statistics move. Returns the history and the
    NumPy view of the step: weak and strong logits, labels, unlabeled mask."""
    keras.utils.set_random_seed(0)
    x, _, y_semi = testing.tiny_data()
    weak = model.backbone(x).numpy().astype("float64")
    strong = model.backbone(0.5 * x + 0.1).numpy().astype("float64")
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    history = model.fit(data.make_dataset(x, y_semi, 48), epochs=epochs, verbose=0).history
    return history, weak, strong, y_semi


def check_margin(values, thresholds):
    assert np.min(np.abs(values - thresholds)) > MARGIN


def test_freematch_step_is_the_papers_over_two_steps():
    momentum, fairness_weight = 0.5, 0.5
    model = fixed_views(models.FreeMatch, testing.tiny_backbone(), fairness_weight=fairness_weight,
                        pseudo_label_policy=policies.FreeMatchThreshold(momentum))
    history, weak, strong, y_semi = fit_one_batch(model)
    unlabeled = y_semi == -1
    q = softmax(weak[unlabeled])
    confidence, prediction = q.max(-1), q.argmax(-1)
    tau, p_model, histogram = 1 / 3, np.full(3, 1 / 3), np.full(3, 1 / 3)
    supervised = cross_entropy(y_semi[~unlabeled], weak[~unlabeled]).mean()
    for epoch in range(2):
        tau = momentum * tau + (1 - momentum) * confidence.mean()
        p_model = momentum * p_model + (1 - momentum) * q.mean(0)
        counts = np.bincount(prediction, minlength=3)
        histogram = momentum * histogram + (1 - momentum) * counts / len(q)
        thresholds = (p_model / p_model.max() * tau)[prediction]
        check_margin(confidence, thresholds)
        mask = confidence >= thresholds
        pseudo = np.sum(mask * cross_entropy(prediction, strong[unlabeled])) / len(q)
        fairness = numpy_fairness(strong[unlabeled], mask, p_model, histogram)
        logs = {name: values[epoch] for name, values in history.items()}
        np.testing.assert_allclose(logs["mask_rate"], mask.mean(), rtol=RTOL)
        np.testing.assert_allclose(logs["pseudo_label_loss"], pseudo, rtol=RTOL)
        np.testing.assert_allclose(logs["fairness_loss"], fairness, rtol=RTOL)
        np.testing.assert_allclose(logs["threshold"], np.mean(p_model / p_model.max() * tau),
                                   rtol=RTOL)
        np.testing.assert_allclose(
            logs["loss"], supervised + pseudo + fairness_weight * fairness, rtol=RTOL
        )
    assert 0 < mask.sum() < len(mask)
    np.testing.assert_allclose(model.pseudo_label_policy.global_threshold.numpy(), tau, rtol=RTOL)


def test_softmatch_step_is_the_papers_over_two_steps():
    momentum = 0.3
    model = fixed_views(models.SoftMatch, testing.tiny_backbone(),
                        pseudo_label_policy=policies.SoftMatchWeight(momentum))
    history, weak, strong, y_semi = fit_one_batch(model)
    unlabeled = y_semi == -1
    q = softmax(weak[unlabeled])
    mu, var, p_model = 1 / 3, 1.0, np.full(3, 1 / 3)
    for epoch in range(2):
        p_model = momentum * p_model + (1 - momentum) * q.mean(0)
        aligned = q / p_model
        confidence = (aligned / aligned.sum(-1, keepdims=True)).max(-1)
        mu = momentum * mu + (1 - momentum) * confidence.mean()
        var = momentum * var + (1 - momentum) * confidence.var(ddof=1)
        weights = np.exp(-np.minimum(confidence - mu, 0) ** 2 / (2 * var / 4))
        # The target is the argmax of the guess itself, not of the aligned guess.
        pseudo = np.sum(weights * cross_entropy(q.argmax(-1), strong[unlabeled])) / len(q)
        np.testing.assert_allclose(history["mask_rate"][epoch], weights.mean(), rtol=RTOL)
        np.testing.assert_allclose(history["pseudo_label_loss"][epoch], pseudo, rtol=RTOL)
        np.testing.assert_allclose(history["threshold"][epoch], mu, rtol=RTOL)
    assert 0.1 < weights.mean() < 0.99
    policy = model.pseudo_label_policy
    np.testing.assert_allclose(policy.confidence_variance.numpy(), var, rtol=RTOL)


@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_adamatch_step_is_the_papers_over_two_steps(momentum):
    alignment = policies.DistributionAlignment(momentum, target="labeled")
    model = fixed_views(models.AdaMatch, testing.tiny_backbone(), threshold=0.9,
                        distribution_alignment=alignment)
    history, weak, strong, y_semi = fit_one_batch(model)
    unlabeled = y_semi == -1
    q, p = softmax(weak[unlabeled]), softmax(weak[~unlabeled])
    p_model, p_target = np.full(3, 1 / 3), np.full(3, 1 / 3)
    for epoch in range(2):
        p_model = momentum * p_model + (1 - momentum) * q.mean(0)
        p_target = momentum * p_target + (1 - momentum) * p.mean(0)
        aligned = q * p_target / p_model
        aligned /= aligned.sum(-1, keepdims=True)
        cutoff = 0.9 * p.max(-1).mean()
        check_margin(aligned.max(-1), cutoff)
        mask = aligned.max(-1) >= cutoff
        pseudo = np.sum(mask * cross_entropy(aligned.argmax(-1), strong[unlabeled])) / len(q)
        np.testing.assert_allclose(history["mask_rate"][epoch], mask.mean(), rtol=RTOL)
        np.testing.assert_allclose(history["pseudo_label_loss"][epoch], pseudo, rtol=RTOL)
        np.testing.assert_allclose(history["threshold"][epoch], cutoff, rtol=RTOL)
    assert 0 < mask.sum() < len(mask)


@pytest.mark.parametrize("normalize", ["kept", "labeled"])
def test_uda_step_is_the_papers_over_two_steps(normalize):
    annealing = policies.TrainingSignalAnnealing(4, "linear", normalize=normalize)
    model = fixed_views(models.UDA, testing.tiny_backbone(), threshold=0.4, temperature=0.4,
                        training_signal_annealing=annealing)
    history, weak, strong, y_semi = fit_one_batch(model)
    unlabeled = y_semi == -1
    q = softmax(weak[unlabeled])
    check_margin(q.max(-1), 0.4)
    mask = q.max(-1) >= 0.4
    target = q**2.5 / np.sum(q**2.5, -1, keepdims=True)
    kl = np.sum(target * (np.log(target) - np.log(softmax(strong[unlabeled]))), -1)
    pseudo = np.sum(mask * kl) / len(q)
    labels = y_semi[~unlabeled]
    true_class = softmax(weak[~unlabeled])[np.arange(len(labels)), labels]
    per_row = cross_entropy(labels, weak[~unlabeled])
    for epoch in range(2):
        eta = (epoch / 4) * (2 / 3) + 1 / 3  # the optimizer's step count is the epoch here
        check_margin(true_class, eta)
        kept = true_class <= eta
        denominator = kept.sum() if normalize == "kept" else len(labels)
        supervised = np.sum(kept * per_row) / denominator
        np.testing.assert_allclose(history["supervised_loss"][epoch], supervised, rtol=RTOL)
        np.testing.assert_allclose(history["pseudo_label_loss"][epoch], pseudo, rtol=RTOL)
        np.testing.assert_allclose(history["loss"][epoch], supervised + pseudo, rtol=RTOL)
    assert 0 < mask.sum() < len(mask) and 0 < kept.sum() < len(kept)


def test_uda_without_annealing_evaluates_the_plain_cross_entropy():
    model = fixed_views(models.UDA, testing.tiny_backbone(),
                        training_signal_annealing=policies.TrainingSignalAnnealing(4))
    _, weak, _, y_semi = fit_one_batch(model, epochs=1)
    x, y, _ = testing.tiny_data()
    logs = model.evaluate(x, y, batch_size=48, verbose=0, return_dict=True)
    np.testing.assert_allclose(logs["loss"], cross_entropy(y, weak).mean(), rtol=RTOL)


# --------------------------------------------------------------- contract, defaults
def image_backbone():
    return keras.Sequential(
        [keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)]
    )


@pytest.mark.slow  # every model of the family, built and trained
def test_buildable_from_a_backbone_with_every_other_argument_defaulted():
    # The five share FixMatch's default views (the image augmentations of
    # `tfssl.layers`), so one of them trains on images here; each builds.
    for model_class in ADAPTIVE:
        if model_class is not models.FlexMatch:  # FlexMatch's counts need num_samples
            assert isinstance(model_class(image_backbone()), model_class)
    model = models.FlexMatch(image_backbone(), num_samples=64)
    x = np.random.default_rng(0).uniform(size=(64, 28, 28, 1)).astype("float32")
    y = data.mask_labels(np.arange(64) % 10, 20, seed=0)
    model.compile(optimizer="adam")
    history = model.fit(data.make_dataset(x, y, 32, labeled_per_batch=10), verbose=0).history
    for name in ("mask_rate", "threshold", "pseudo_label_loss"):
        assert np.isfinite(history[name][0])


def test_defaults_are_the_papers():
    config = {
        cls.__name__: keras.saving.serialize_keras_object(
            cls(image_backbone(), num_samples=10).pseudo_label_policy
        )["config"]
        for cls in ADAPTIVE
    }
    assert config["FlexMatch"]["threshold"] == 0.95
    assert config["FreeMatch"]["momentum"] == 0.999
    assert config["SoftMatch"]["n_sigma"] == 2.0 and config["SoftMatch"]["uniform_alignment"]
    assert config["AdaMatch"]["threshold"] == 0.9
    assert config["UDA"]["threshold"] == 0.8
    uda = models.UDA(image_backbone())
    assert uda.temperature == 0.4 and uda.training_signal_annealing is None
    assert models.FreeMatch(image_backbone()).fairness_weight == 0.01
    alignment = models.AdaMatch(image_backbone()).distribution_alignment
    assert (alignment.momentum, alignment.target) == (0.0, "labeled")
    unaligned = models.AdaMatch(image_backbone(), distribution_alignment=False)
    assert unaligned.distribution_alignment is None


# ------------------------------------------------------- save/load, serving, replicas
def policy_state(model):
    """The variables of the model's policies and transforms (FlexMatch: its memory), but
    a uniform alignment's constant target."""
    if isinstance(model, models.FlexMatch):
        return [model.pseudo_label_policy.memory]
    return [w for hook in model.hooks for w in hook.weights
            if w.name != "p_target" or getattr(hook, "target", None) == "labeled"]


def trained(model_class, **kwargs):
    """`(model, x, initial)`: the model after two epochs on the tiny data, its inputs and
    the values of its policy state before training."""
    keras.utils.set_random_seed(0)
    x, _, y_semi = testing.tiny_data()
    model = fixed_views(model_class, testing.tiny_backbone(), **kwargs)
    initial = [w.numpy().copy() for w in policy_state(model)]
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(data.make_dataset(x, y_semi, 16, labeled_per_batch=4), epochs=2, verbose=0)
    return model, x, initial


@pytest.fixture(scope="module")
def trained_models():
    """`trained(model_class, **MOVING[model_class]())` for each model, once per module."""
    return {model_class: trained(model_class, **MOVING[model_class]()) for model_class in ADAPTIVE}


# Arguments under which each model's statistics move in two epochs; a function, so that
# every model gets hooks of its own.
MOVING = {
    models.FlexMatch: lambda: {"threshold": 0.5},
    models.FreeMatch: lambda: {"pseudo_label_policy": policies.FreeMatchThreshold(0.5)},
    models.SoftMatch: lambda: {"pseudo_label_policy": policies.SoftMatchWeight(0.5)},
    models.AdaMatch: lambda: {
        "distribution_alignment": policies.DistributionAlignment(0.5, "labeled")
    },
    models.UDA: lambda: {"threshold": 0.4, "distribution_alignment": True,
                         "training_signal_annealing": policies.TrainingSignalAnnealing(6, "exp")},
}


@pytest.mark.slow
@pytest.mark.parametrize("model_class", ADAPTIVE)
def test_keras_round_trip_keeps_the_running_statistics(model_class, trained_models, tmp_path):
    # Moved statistics, equal after the reload; the contract suite (tests/test_contract.py)
    # checks every variable of the reload and two more steps after it on its own
    # arguments, two replicas against one device, and serving in a fresh process.
    model, _, initial = trained_models[model_class]
    path = str(tmp_path / f"{model_class.__name__}.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert type(reloaded) is model_class
    for variable, start, back in zip(policy_state(model), initial, policy_state(reloaded),
                                     strict=True):
        assert not np.allclose(variable.numpy(), start), f"{variable.path} never moved"
        np.testing.assert_array_equal(back.numpy(), variable.numpy())
    as_json = lambda config: json.loads(json.dumps(config))  # noqa: E731 (tuples -> lists)
    assert as_json(reloaded.get_config()) == as_json(model.get_config())


# ----------------------------------------------------------------------- monitoring
@pytest.mark.slow  # every model of the family trained two epochs (`trained_models`)
@pytest.mark.parametrize("model_class", ADAPTIVE)
def test_pseudo_label_monitor_reads_each_policy(model_class, trained_models):
    model, x, _ = trained_models[model_class]
    _, y, _ = testing.tiny_data()
    monitor = models.PseudoLabelMonitor(x, y)
    monitor.set_model(model)
    logs = {}
    monitor.on_epoch_end(0, logs)
    probabilities = tf.nn.softmax(model.backbone(x))
    weights = model.pseudo_label_policy.current_weights(probabilities).numpy()
    correct = model.backbone(x).numpy().argmax(-1) == y
    np.testing.assert_allclose(logs["pseudo_label_mask_rate"], weights.mean(), rtol=RTOL)
    np.testing.assert_allclose(
        logs["pseudo_label_accuracy"], np.sum(weights * correct) / weights.sum(), rtol=RTOL
    )


# ------------------------------------------------------------------------------ text
@pytest.mark.slow
@pytest.mark.parametrize("model_class", [models.FixMatch, models.UDA])
def test_raw_string_backbone_with_tfidf_replacement_as_the_strong_view(model_class):
    keras.utils.set_random_seed(0)
    words = np.array(["good", "great", "fine", "bad", "awful", "poor", "the", "a", "book"])
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=64)
    texts = np.array([" ".join(rng.choice(words[:3] if label else words[3:6], 2).tolist()
                               + rng.choice(words[6:], 4).tolist()) for label in y], dtype=object)
    strong = text.TfIdfReplacement(0.5, seed=0)
    strong.adapt(texts)
    backbone = backbones.fasttext(2, num_buckets=256, embedding_dim=8)
    model = model_class(backbone, weak_augment=keras.layers.Identity(), strong_augment=strong,
                        threshold=0.5)
    model.compile(optimizer=keras.optimizers.Adam(3e-2), metrics=["accuracy"])
    y_semi = data.mask_labels(y, 16, seed=0)
    history = model.fit(data.make_dataset(texts, y_semi, 32, labeled_per_batch=8), epochs=3,
                        verbose=0).history
    assert history["mask_rate"][-1] > 0 and np.all(np.isfinite(history["loss"]))
    assert history["supervised_loss"][-1] < history["supervised_loss"][0]
    # The strong view of these texts is not the texts: the replacement is active in training.
    assert np.mean(strong(texts, training=True).numpy() != texts.astype(bytes)) > 0.3


# ---------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "make, message",
    [
        (lambda b: models.FreeMatch(b, fairness_weight=-1.0), "fairness_weight=-1.0"),
        (lambda b: models.FreeMatch(b, threshold=0.9), "threshold=0.9"),
        (lambda b: models.FreeMatch(b, pseudo_label_policy=policies.FixedThreshold()),
         "pseudo_label_policy=<FixedThreshold"),
        (lambda b: models.SoftMatch(b, threshold=0.9), "threshold=0.9"),
        (lambda b: models.AdaMatch(b, threshold=1.5), "threshold=1.5"),
        (lambda b: models.UDA(b, temperature=0.0), "temperature=0.0"),
        (lambda b: models.UDA(b, training_signal_annealing="linear"),
         "training_signal_annealing='linear'"),
        (lambda b: models.UDA(b, supervised_objective="f1",
                              training_signal_annealing=policies.TrainingSignalAnnealing(5)),
         "supervised_objective='f1'"),
        (lambda b: models.FlexMatch(b, num_samples=None), "num_samples=None"),
    ],
)
def test_bad_arguments_name_the_value(make, message):
    with pytest.raises(ValueError, match=message):
        make(image_backbone())
