"""PseudoLabel against a numpy computation from the model's own predictions, its schedules,
PseudoLabelMonitor and a Fashion-MNIST subset. The shared contract, serving and two replicas
of PseudoLabel are tests/test_contract.py's."""

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

import _oracles as oracles
from tfssl import data, datasets, models, testing
from tfssl.models.pseudo_label import pseudo_label_targets


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def cross_entropy(labels, logits):
    return -np.log(softmax(logits)[np.arange(len(labels)), labels])


def fixed_batch():
    keras.utils.set_random_seed(0)
    x, _, y_semi = testing.tiny_data()
    return x, y_semi, testing.tiny_backbone()


def test_targets_mask_and_loss_equal_numpy_from_the_models_predictions():
    x, y_semi, backbone = fixed_batch()
    logits = backbone(x).numpy()
    unlabeled = y_semi == -1
    confidence = softmax(logits).max(-1)
    # The median confidence of the unlabeled rows: half of them are kept.
    threshold = float(np.median(confidence[unlabeled]))
    model = models.PseudoLabel(
        backbone,
        threshold=threshold,
        supervised_normalize="labeled",
        max_unsupervised_weight=2.5,
        ramp_up_epochs=4,
    )
    model.epoch.assign(2)
    targets, mask, conf = pseudo_label_targets(logits, threshold)
    np.testing.assert_array_equal(targets, logits.argmax(-1))
    np.testing.assert_array_equal(mask, (confidence >= threshold).astype("float32"))
    np.testing.assert_allclose(conf, confidence, rtol=1e-6)
    assert 0 < mask.numpy()[unlabeled].sum() < unlabeled.sum()

    terms, _ = model.compute_losses(x, None, tf.constant(y_semi, tf.int32))
    kept = unlabeled & (confidence >= threshold)
    expected_unsupervised = cross_entropy(logits.argmax(-1), logits)[kept].sum() / unlabeled.sum()
    expected_supervised = cross_entropy(y_semi[~unlabeled], logits[~unlabeled]).mean()
    np.testing.assert_allclose(terms["pseudo_label_loss"], expected_unsupervised, rtol=1e-5)
    np.testing.assert_allclose(terms["supervised_loss"], expected_supervised, rtol=1e-5)
    np.testing.assert_allclose(terms["mask_rate"], kept.sum() / unlabeled.sum(), rtol=1e-6)
    weight = 2.5 * oracles.ramp_up(2, 4, "sigmoid")
    np.testing.assert_allclose(terms["unsupervised_weight"], weight, rtol=oracles.RTOL)
    np.testing.assert_allclose(
        terms["loss"], expected_supervised + weight * expected_unsupervised, rtol=1e-5
    )


def test_no_gradient_flows_through_the_target():
    x, y_semi, backbone = fixed_batch()
    model = models.PseudoLabel(backbone, threshold=0.0)
    labels = tf.constant(y_semi, tf.int32)
    logits = tf.constant(backbone(x))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(logits)
        _, _, confidence = pseudo_label_targets(logits, 0.0)
        terms, _ = model.compute_losses(x, None, labels)
        # The same loss with the targets as constants from numpy.
        fixed = tf.constant(logits.numpy().argmax(-1))
        live = backbone(x)
        per_row = keras.losses.sparse_categorical_crossentropy(fixed, live, from_logits=True)
        reference = tf.reduce_sum(per_row * tf.cast(labels == -1, tf.float32)) / np.sum(
            y_semi == -1
        )
    assert tape.gradient(confidence, logits) is None
    for got, want in zip(
        tape.gradient(terms["pseudo_label_loss"], backbone.trainable_weights),
        tape.gradient(reference, backbone.trainable_weights),
    ):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("epoch, expected", [(0, 0.0), (2, 0.0), (4, 1.5), (6, 3.0), (50, 3.0)])
def test_lee_schedule(epoch, expected):
    model = models.PseudoLabel(testing.tiny_backbone(), schedule="lee", t1=2, t2=6, alpha_f=3.0)
    model.epoch.assign(epoch)
    np.testing.assert_allclose(model.unsupervised_weight(), expected, rtol=1e-6)


def test_lee_schedule_survives_the_config_round_trip():
    # The shared contract (tests/test_contract.py) saves, reloads and resumes PseudoLabel
    # with its default ramp-up; Lee's schedule is another serialized schedule object.
    model = models.PseudoLabel(testing.tiny_backbone(), schedule="lee", t1=2, t2=6, alpha_f=3.0)
    clone = models.PseudoLabel.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    for epoch, expected in [(2, 0.0), (4, 1.5), (6, 3.0)]:
        clone.epoch.assign(epoch)
        np.testing.assert_allclose(clone.unsupervised_weight(), expected, rtol=1e-6)


def test_lee_schedule_is_logged_by_fit():
    x, y_semi, backbone = fixed_batch()
    model = models.PseudoLabel(backbone, schedule="lee", t1=1, t2=3, alpha_f=2.0)
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    history = model.fit(data.make_dataset(x, y_semi, 48), epochs=4, verbose=0).history
    np.testing.assert_allclose(history["unsupervised_weight"], [0.0, 0.0, 1.0, 2.0], rtol=1e-6)


def test_monitor_reports_the_rule_on_held_out_rows():
    x, y_semi, backbone = fixed_batch()
    _, y_true, _ = testing.tiny_data()
    model = models.PseudoLabel(backbone, threshold=0.5, ramp_up_epochs=1)
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    monitor = models.PseudoLabelMonitor(x, y_true)
    history = model.fit(data.make_dataset(x, y_semi, 16), epochs=1, callbacks=[monitor], verbose=0)
    probabilities = softmax(backbone.predict(x, verbose=0))
    kept = probabilities.max(-1) >= 0.5
    correct = probabilities.argmax(-1) == y_true
    logs = history.history
    np.testing.assert_allclose(logs["pseudo_label_mask_rate"], [kept.mean()])
    np.testing.assert_allclose(logs["pseudo_label_accuracy"], [correct[kept].mean()])
    np.testing.assert_allclose(logs["pseudo_label_accuracy_all"], [correct.mean()])


@functools.lru_cache(maxsize=None)
def _fashion_subset(rows, num_labeled, test_rows):
    (x, y), (x_test, y_test) = datasets.load_fashion_mnist()
    scale = lambda images: (images[..., None] / 255.0).astype("float32")  # noqa: E731
    y_semi = data.mask_labels(y[:rows], num_labeled, seed=0)
    return scale(x[:rows]), y_semi, scale(x_test[:test_rows]), y_test[:test_rows]


def _fashion_run(max_unsupervised_weight, threshold):
    """PseudoLabel on 1000 Fashion-MNIST rows (100 labeled), 4 epochs; the same run for
    every weight (seeds, batches, initial weights)."""
    keras.utils.set_random_seed(0)
    x, y_semi, x_test, y_test = _fashion_subset(1000, 100, 500)
    backbone = keras.Sequential(
        [keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(64, "relu"),
         keras.layers.Dropout(0.2), keras.layers.Dense(10)]
    )  # fmt: skip
    model = models.PseudoLabel(
        backbone,
        threshold=threshold,
        ramp_up_epochs=1,
        supervised_normalize="labeled",
        max_unsupervised_weight=max_unsupervised_weight,
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    train = data.make_dataset(x, y_semi, 100, shuffle=True, seed=0, labeled_per_batch=50)
    history = model.fit(train, epochs=4, verbose=0).history
    accuracy = np.mean(model.predict(x_test, verbose=0).argmax(-1) == y_test)
    return history, accuracy


@pytest.mark.slow
def test_the_unlabeled_term_fits_the_pseudo_labels_on_fashion_mnist():
    # Threshold 0 is Lee's rule: every unlabeled row takes its argmax as its label.
    with_term, accuracy = _fashion_run(1.0, threshold=0.0)
    without_term, _ = _fashion_run(0.0, threshold=0.0)
    # Weight 0 measures the term without training on it (the supervised term alone, from the
    # same start on the same batches). Trained on, the pseudo-labels' cross-entropy (the
    # entropy minimisation of Lee 2013, section 3.2) ends well below the supervised run's
    # (at about 0.65 of it after 4 epochs).
    np.testing.assert_array_equal(without_term["unsupervised_weight"], 0.0)
    np.testing.assert_array_equal(with_term["mask_rate"], 1.0)
    assert with_term["pseudo_label_loss"][0] == without_term["pseudo_label_loss"][0]
    assert with_term["pseudo_label_loss"][-1] < 0.8 * without_term["pseudo_label_loss"][-1]
    assert accuracy > 0.5


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"threshold": -0.1}, "threshold=-0.1"),
        ({"threshold": 1.5}, "threshold=1.5"),
        ({"schedule": "step"}, "schedule='step'"),
        ({"t1": 5, "t2": 5}, "t1=5, t2=5"),
        ({"alpha_f": -1.0}, "alpha_f=-1.0"),
    ],
)
def test_bad_arguments_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        models.PseudoLabel(testing.tiny_backbone(), **kwargs)


def test_monitor_rejects_mismatched_rows():
    with pytest.raises(ValueError, match="len\\(x\\)=3, len\\(y_true\\)=2"):
        models.PseudoLabelMonitor(np.zeros((3, 6)), [0, 1])


def test_a_policy_with_per_row_state_reads_the_unlabeled_rows_indices():
    # FlexMatch's threshold remembers each unlabeled row's prediction by its `idx`: with
    # tau 0 every unlabeled row of the batch enters the memory (stored as class + 1, so
    # nonzero), and no other row does.
    x, _, y_semi = testing.tiny_data()
    model = models.PseudoLabel(
        testing.tiny_backbone(), num_samples=len(x),
        pseudo_label_policy=models.policies.FlexMatchThreshold(0.0),
    )
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    order = np.random.default_rng(0).permutation(len(x))  # labeled and unlabeled rows mixed
    batch = order[:16]
    dataset = data.make_dataset(x[batch], y_semi[batch], batch_size=16)
    # The batch's `idx` are positions in the whole training set, as `make_dataset` would
    # give for all rows.
    dataset = dataset.map(lambda features, y: ({**features, "idx": tf.constant(batch)}, y))
    model.fit(dataset, epochs=1, verbose=0)
    remembered = np.flatnonzero(model.pseudo_label_policy.memory.numpy())
    np.testing.assert_array_equal(remembered, np.sort(batch[y_semi[batch] == -1]))
