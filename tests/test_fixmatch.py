"""FixMatch against a hand computation with fixed augmentations, its views, its threshold,
strong_augmentation, saving its default augmentations and a Fashion-MNIST subset. The shared
contract, fresh-process serving and two replicas of FixMatch are tests/test_contract.py's."""

import functools
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfssl import data, datasets, export, layers, models, testing


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def cross_entropy(labels, logits):
    return -np.log(softmax(logits)[np.arange(len(labels)), labels])


def fixed_views(backbone, **kwargs):
    """FixMatch whose weak view is the input and strong view `0.5 x + 0.1` (deterministic)."""
    return models.FixMatch(
        backbone,
        weak_augment=keras.layers.Identity(),
        strong_augment=keras.layers.Rescaling(0.5, offset=0.1),
        **kwargs,
    )


def image_backbone():
    return keras.Sequential(
        [keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(64, "relu"),
         keras.layers.Dense(10)]
    )  # fmt: skip


@functools.lru_cache(maxsize=None)
def _fashion_mnist():
    return datasets.load_fashion_mnist()


def fashion_subset(rows=1000, num_labeled=100):
    (x, y), (x_test, y_test) = _fashion_mnist()
    scale = lambda images: (images[..., None] / 255.0).astype("float32")  # noqa: E731
    x, y = scale(x[:rows]), y[:rows]
    return x, y, data.mask_labels(y, num_labeled, seed=0), scale(x_test[:500]), y_test[:500]


def test_one_step_loss_equals_a_hand_computation():
    keras.utils.set_random_seed(0)
    x, _, y_semi = testing.tiny_data()
    backbone = testing.tiny_backbone()
    weak_logits = backbone(x).numpy()
    strong_logits = backbone(0.5 * x + 0.1).numpy()
    unlabeled = y_semi == -1
    confidence = softmax(weak_logits).max(-1)
    threshold = float(np.median(confidence[unlabeled]))
    model = fixed_views(backbone, threshold=threshold, lambda_u=2.0)
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    history = model.fit(data.make_dataset(x, y_semi, len(x)), epochs=1, verbose=0).history

    kept = (confidence >= threshold)[unlabeled]
    assert 0 < kept.sum() < unlabeled.sum()
    pseudo = weak_logits[unlabeled].argmax(-1)
    unsupervised = np.sum(kept * cross_entropy(pseudo, strong_logits[unlabeled])) / unlabeled.sum()
    supervised = cross_entropy(y_semi[~unlabeled], weak_logits[~unlabeled]).mean()
    np.testing.assert_allclose(history["pseudo_label_loss"], [unsupervised], rtol=1e-5)
    np.testing.assert_allclose(history["supervised_loss"], [supervised], rtol=1e-5)
    np.testing.assert_allclose(history["loss"], [supervised + 2.0 * unsupervised], rtol=1e-5)
    np.testing.assert_allclose(history["mask_rate"], [kept.mean()], rtol=1e-6)
    np.testing.assert_allclose(history["unsupervised_weight"], [2.0])


def test_the_target_comes_from_the_weak_view_without_gradient():
    keras.utils.set_random_seed(0)
    x, _, y_semi = testing.tiny_data()
    backbone = testing.tiny_backbone()
    model = fixed_views(backbone, threshold=0.0)
    labels = tf.constant(y_semi, tf.int32)
    unlabeled = y_semi == -1
    targets = tf.constant(backbone(x).numpy()[unlabeled].argmax(-1))
    with tf.GradientTape(persistent=True) as tape:
        terms, _ = model.compute_losses(x, None, labels)
        strong = backbone(0.5 * x[unlabeled] + 0.1)
        reference = tf.reduce_mean(
            keras.losses.sparse_categorical_crossentropy(targets, strong, from_logits=True)
        )
    for got, want in zip(
        tape.gradient(terms["pseudo_label_loss"], backbone.trainable_weights),
        tape.gradient(reference, backbone.trainable_weights),
    ):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_threshold_one_gives_an_unlabeled_term_of_zero():
    keras.utils.set_random_seed(0)
    x, _, y_semi = testing.tiny_data()
    model = fixed_views(testing.tiny_backbone(), threshold=1.0)
    terms, _ = model.compute_losses(x, None, tf.constant(y_semi, tf.int32))
    assert float(terms["pseudo_label_loss"]) == 0.0
    assert float(terms["mask_rate"]) == 0.0
    assert float(terms["loss"]) == float(terms["supervised_loss"]) > 0.0


def test_default_views_differ_and_strong_draws_ops_per_image():
    keras.utils.set_random_seed(0)
    x = fashion_subset(rows=100, num_labeled=10)[0][:16]
    model = models.FixMatch(image_backbone())
    weak = np.asarray(model.weak_augment(x, training=True))
    strong = np.asarray(model.strong_augment(x, training=True))
    assert weak.shape == strong.shape == x.shape
    assert np.mean(np.abs(strong - weak)) > 0.02
    np.testing.assert_array_equal(model.strong_augment(x, training=False), x)
    # One image repeated: row-wise RandAugment (no cutout) gives different images.
    repeated = np.repeat(x[:1], 8, axis=0)
    augmented = np.asarray(layers.strong_augmentation(cutout=0.0, seed=1)(repeated, training=True))
    distinct = {augmented[i].round(4).tobytes() for i in range(8)}
    assert len(distinct) > 4


def test_strong_augmentation_keeps_the_value_range_and_the_cutout_grey():
    x = np.ones((4, 28, 28, 1), "float32")
    out = np.asarray(
        layers.strong_augmentation(num_ops=1, factor=0.01, cutout=0.5, seed=0)(x, training=True)
    )
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert np.all(np.any(np.isclose(out, 0.5).reshape(4, -1), axis=1))  # a patch per image


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_ops": 0}, "num_ops=0"),
        ({"factor": 0.0}, "factor=0.0"),
        ({"cutout": 1.5}, "cutout=1.5"),
    ],
)
def test_strong_augmentation_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        layers.strong_augmentation(**kwargs)


def _fashion_run(lambda_u, threshold):
    """FixMatch on 1000 Fashion-MNIST rows (100 labeled), 3 epochs; the same run for every
    `lambda_u` (seeds, batches, augmentation draws, initial weights)."""
    keras.utils.set_random_seed(0)
    x, _, y_semi, x_test, y_test = fashion_subset()
    model = models.FixMatch(image_backbone(), threshold=threshold, lambda_u=lambda_u)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    train = data.make_dataset(x, y_semi, 100, shuffle=True, seed=0, labeled_per_batch=25)
    history = model.fit(train, epochs=3, verbose=0).history
    # A direct inference-mode call: `predict` would trace the backbone once more.
    logits = model(x_test, training=False)
    return model, history, np.mean(np.argmax(logits, axis=-1) == y_test)


@pytest.fixture(scope="module")
def fashion_runs():
    """`lambda_u -> (model, history, test accuracy)` for lambda_u 1 and 0, threshold 0.5.
    Most of a run's time is tracing the step with its default augmentations, not the rows."""
    return {lambda_u: _fashion_run(lambda_u, threshold=0.5) for lambda_u in (1.0, 0.0)}


@pytest.mark.slow
def test_the_unlabeled_term_teaches_the_strong_view_on_fashion_mnist(fashion_runs):
    _, with_term, accuracy = fashion_runs[1.0]
    _, without_term, _ = fashion_runs[0.0]
    # lambda_u = 0 measures the term without training on it (the supervised term alone,
    # from the same start on the same batches and augmentations). Trained on, the term keeps
    # more unlabeled rows and lowers its own quantity, the strong view's cross-entropy per
    # kept row (the loss over all unlabeled rows divided by the share kept).
    def per_kept_row(history):
        return history["pseudo_label_loss"][-1] / history["mask_rate"][-1]

    assert with_term["mask_rate"][-1] > without_term["mask_rate"][-1] > 0.0
    assert per_kept_row(with_term) < 0.9 * per_kept_row(without_term)
    assert accuracy > 0.5


@pytest.mark.slow
def test_save_load_keeps_the_augmentations_and_the_export_serves_the_backbone(tmp_path):
    # One epoch on 64 rows with the default augmentations: what is saved, not what is learned.
    keras.utils.set_random_seed(0)
    x, _, y_semi, _, _ = fashion_subset(rows=64, num_labeled=20)
    model = models.FixMatch(image_backbone())
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(data.make_dataset(x, y_semi, 32, labeled_per_batch=10), verbose=0)
    path = str(tmp_path / "fixmatch.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    as_json = lambda config: json.loads(json.dumps(config))  # noqa: E731 (tuples -> lists)
    assert as_json(reloaded.get_config()) == as_json(model.get_config())
    assert isinstance(reloaded.strong_augment.layers[0], layers.RowwiseAugmentation)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0))
    # The export holds the backbone only (the augmentations are training-time layers), loaded
    # here; a FixMatch export served in a fresh process is tests/test_contract.py's.
    served = tf.saved_model.load(export.export_saved_model(model, str(tmp_path / "export")))
    logits = served.signatures["serving_default"](x=tf.constant(x))["logits"]
    np.testing.assert_allclose(logits, model.predict(x, verbose=0), atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"threshold": 1.5}, "threshold=1.5"),
        ({"threshold": -0.1}, "threshold=-0.1"),
        ({"lambda_u": -1.0}, "lambda_u=-1.0"),
        ({"strong_augment": "randaugment"}, "strong_augment='randaugment'"),
        ({"lambda_u": 1.0, "weight_schedule": 2.0}, "lambda_u=1.0"),
    ],
)
def test_bad_arguments_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        models.FixMatch(image_backbone(), **kwargs)


def test_default_augmentations_need_an_image_backbone():
    with pytest.raises(ValueError, match="backbone input shape \\(None, 6\\)"):
        models.FixMatch(testing.tiny_backbone())
