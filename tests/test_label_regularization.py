"""Label smoothing on every model and the multi-label objectives (sigmoid cross-entropy, the
seed's soft F1, sigmoidF1) as the supervised term, against Keras and numpy."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfssl import data, losses, models, testing

NUM_CLASSES = 3


def _logits_and_labels(num_rows=8, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(num_rows, NUM_CLASSES)).astype("float32") * 2
    labels = rng.integers(0, NUM_CLASSES, num_rows).astype("int32")
    labels[::3] = data.UNLABELED
    return logits, labels


def _every_model(**kwargs):
    """One model of every tfssl family, each with `kwargs` for the base class."""
    backbone = testing.tiny_backbone
    return [
        models.PiModel(backbone(), **kwargs),
        models.TemporalEnsembling(backbone(), num_samples=48, **kwargs),
        models.MeanTeacher(backbone(), **kwargs),
        models.Distiller(backbone(), backbone(), **kwargs),
        models.MutualLearning([backbone(), backbone()], **kwargs),
        models.ReLoop(backbone(), previous_model=backbone(), **kwargs),
    ]


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.4])
@pytest.mark.parametrize("normalize", ["batch", "labeled"])
def test_label_smoothing_equals_keras_on_the_labeled_rows(smoothing, normalize):
    logits, labels = _logits_and_labels()
    labeled = labels != data.UNLABELED
    keras_loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=smoothing)
    expected = float(keras_loss(np.eye(NUM_CLASSES)[labels[labeled]], logits[labeled]))
    if normalize == "batch":  # the seed's: the labeled rows' sum over the batch size
        expected *= labeled.sum() / len(labels)
    for model in _every_model(label_smoothing=smoothing, supervised_normalize=normalize):
        value = float(model.supervised_loss(tf.constant(labels), tf.constant(logits)))
        np.testing.assert_allclose(value, expected, rtol=1e-5, err_msg=type(model).__name__)
        assert model.get_config()["label_smoothing"] == smoothing


def test_label_smoothing_reaches_the_training_loss():
    x, _, y_semi = testing.tiny_data()
    labels = tf.constant(y_semi, tf.int32)
    labeled = y_semi != data.UNLABELED
    model = models.MeanTeacher(
        testing.tiny_backbone(), label_smoothing=0.2, supervised_normalize="labeled"
    )
    model.compile(optimizer="sgd")
    terms, outputs = model.compute_losses(x, None, labels)
    keras_loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.2)
    expected = keras_loss(np.eye(NUM_CLASSES)[y_semi[labeled]], outputs["logits"].numpy()[labeled])
    np.testing.assert_allclose(terms["supervised_loss"], expected, rtol=1e-5)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_binary_crossentropy_equals_keras_on_the_known_entries(smoothing):
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(6, 4)).astype("float32")
    targets = rng.integers(0, 2, (6, 4)).astype("int32")
    targets[1] = data.UNLABELED  # an unlabeled row
    backbone = testing.tiny_backbone(num_classes=4)
    model = models.PiModel(
        backbone,
        supervised_objective="binary_crossentropy",
        label_smoothing=smoothing,
        supervised_normalize="labeled",
    )
    value = model.supervised_loss(tf.constant(targets.reshape(-1)), tf.constant(logits))
    rows = np.arange(6) != 1
    keras_loss = keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=smoothing)
    np.testing.assert_allclose(value, keras_loss(targets[rows], logits[rows]), rtol=1e-5)


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


@pytest.mark.parametrize("objective", ["f1", "sigmoid_f1"])
def test_f1_objectives_count_only_the_known_entries(objective):
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(10, 4)).astype("float32") * 2
    targets = rng.integers(0, 2, (10, 4)).astype("int32")
    targets[3] = data.UNLABELED  # an unlabeled row
    targets[5, 2] = data.UNLABELED  # one unknown entry
    known = (targets != data.UNLABELED).astype("float32")
    y = np.maximum(targets, 0) * known
    s = _sigmoid(logits) * known
    tp, fp, fn = (y * s).sum(0), ((1 - y) * s).sum(0), (y * (1 - s)).sum(0)
    if objective == "sigmoid_f1":
        expected = 1 - np.mean(2 * tp / (2 * tp + fn + fp))
    else:
        eps = keras.config.epsilon()
        p, r = tp / (tp + fp + eps), tp / (tp + fn + eps)
        expected = 1 - np.mean(2 * p * r / (p + r + eps))
    model = models.PiModel(testing.tiny_backbone(num_classes=4), supervised_objective=objective)
    value = model.supervised_loss(tf.constant(targets.reshape(-1)), tf.constant(logits))
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    # With every entry known it is the library's loss on the whole batch.
    full = np.maximum(targets, 0)
    value = model.supervised_loss(tf.constant(full), tf.constant(logits))
    library = (
        losses.f1_loss(full, _sigmoid(logits))
        if objective == "f1"
        else losses.sigmoid_f1_loss(full, logits)
    )
    np.testing.assert_allclose(value, library, rtol=1e-5)


def _multilabel_data(num_rows, seed):
    """Four overlapping labels, each a linear function of the features."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num_rows, 6)).astype("float32")
    directions = np.random.default_rng(99).normal(size=(6, 4))
    y = (x @ directions > 0.3).astype("int64")
    return x, y


def _multilabel_dataset(x, y, batch_size, shuffle=False):
    # tfssl.data.make_dataset takes 1-D labels: multi-hot batches are built with tf.data.
    dataset = tf.data.Dataset.from_tensor_slices(({"x": x, "idx": np.arange(len(x))}, y))
    if shuffle:
        dataset = dataset.shuffle(len(x), seed=0)
    return dataset.batch(batch_size)


def _macro_f1(model, x, y):
    metric = keras.metrics.F1Score(average="macro", threshold=0.5)
    metric.update_state(y.astype("float32"), keras.ops.sigmoid(model.predict(x, verbose=0)))
    return float(metric.result())


@pytest.mark.parametrize("objective", ["binary_crossentropy", "f1", "sigmoid_f1"])
def test_multilabel_toy_trains_and_reports_keras_f1(objective):
    keras.utils.set_random_seed(0)
    x, y = _multilabel_data(512, seed=0)
    x_test, y_test = _multilabel_data(256, seed=1)
    y_semi = y.copy()
    y_semi[128:] = data.UNLABELED  # 128 labeled rows, the rest unlabeled (all -1)
    model = models.PiModel(
        testing.tiny_backbone(num_classes=4),
        supervised_objective=objective,
        max_unsupervised_weight=0.0,
        supervised_normalize="labeled",
    )
    model.compile(optimizer=keras.optimizers.Adam(0.02))
    before = _macro_f1(model, x_test, y_test)
    history = model.fit(
        _multilabel_dataset(x, y_semi, 64, shuffle=True),
        epochs=8,
        verbose=0,
    ).history
    after = _macro_f1(model, x_test, y_test)
    print(f"{objective}: keras.metrics.F1Score macro {before:.3f} -> {after:.3f}")
    assert np.all(np.isfinite(history["loss"]))
    assert history["loss"][-1] < history["loss"][0]
    assert after > 0.75 and after > before + 0.2


def test_one_logit_binary_model_reads_labels_zero_and_one():
    keras.utils.set_random_seed(0)
    x, _, _ = testing.tiny_data()
    y = (x[:, 0] > 0).astype("int64")
    y_semi = np.where(np.arange(len(x)) < 24, y, data.UNLABELED)
    model = models.PiModel(
        testing.tiny_backbone(num_classes=1), supervised_objective="binary_crossentropy"
    )
    assert model.num_classes == 2
    model.compile(
        optimizer=keras.optimizers.Adam(0.05),
        metrics=[keras.metrics.BinaryAccuracy(threshold=0.0)],
    )
    history = model.fit(data.make_dataset(x, y_semi, 16), epochs=5, verbose=0).history
    assert history["supervised_loss"][-1] < history["supervised_loss"][0]
    labeled = y_semi != data.UNLABELED
    expected = keras.losses.BinaryCrossentropy(from_logits=True)(
        y[labeled, None], model.backbone.predict(x[labeled], verbose=0)
    )
    value = model.supervised_loss(tf.constant(y_semi), model.backbone(x))
    np.testing.assert_allclose(value, expected * labeled.mean(), rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"label_smoothing": -0.1}, "label_smoothing=-0.1"),
        ({"label_smoothing": 1.5}, "label_smoothing=1.5"),
        ({"label_smoothing": "0.1"}, "label_smoothing='0.1'"),
        ({"supervised_objective": "hinge"}, "supervised_objective='hinge'"),
        ({"supervised_objective": "f1", "label_smoothing": 0.1}, "label_smoothing=0.1"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        models.PiModel(testing.tiny_backbone(), **kwargs)


def test_one_logit_binary_model_refuses_other_num_classes():
    with pytest.raises(ValueError, match="num_classes=3"):
        models.PiModel(
            testing.tiny_backbone(num_classes=1),
            num_classes=3,
            supervised_objective="binary_crossentropy",
        )


def make_smoothed_mean_teacher():
    """A two-replica factory (test_two_replicas.py)."""
    x, _, y_semi = testing.tiny_data()
    model = models.MeanTeacher(testing.tiny_backbone(), label_smoothing=0.1, ramp_up_epochs=1)
    return model, data.make_dataset(x, y_semi, batch_size=16)


def make_sigmoid_f1_model():
    """A two-replica factory (test_two_replicas.py): the soft-F1 objective, multi-label."""
    x, y = _multilabel_data(48, seed=0)
    y_semi = y.copy()
    y_semi[24:] = data.UNLABELED
    model = models.PiModel(
        testing.tiny_backbone(num_classes=4),
        supervised_objective="sigmoid_f1",
        max_unsupervised_weight=0.0,
    )
    return model, _multilabel_dataset(x, y_semi, batch_size=16)


