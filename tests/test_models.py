"""Behaviour of PiModel, TemporalEnsembling and MeanTeacher against their formulas."""

import os

import numpy as np
import pytest
import keras
import tensorflow as tf

from tfssl import data, models, schedules, testing

NUM_CLASSES = 3


def make_te(**kwargs):
    x, y, y_semi = testing.tiny_data()
    model = models.TemporalEnsembling(
        testing.tiny_backbone(), num_samples=len(x), num_classes=NUM_CLASSES, **kwargs
    )
    return model, x, y_semi


@pytest.mark.parametrize("epochs", [1, 3])
def test_te_ensemble_after_k_epochs_with_lr_zero(epochs):
    alpha = 0.6
    model, x, y_semi = make_te(alpha=alpha)
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    model.fit(
        data.make_dataset(x, y_semi, batch_size=16, shuffle=True, seed=1), epochs=epochs, verbose=0
    )
    logits = model.backbone.predict(x, verbose=0)
    np.testing.assert_allclose(model.ensemble.numpy(), (1 - alpha**epochs) * logits, atol=1e-5)
    np.testing.assert_array_equal(model.ensemble_counts.numpy(), np.full(len(x), epochs))


def test_te_consistency_and_weight_follow_the_seed_formula():
    alpha, max_weight, ramp_up_epochs = 0.6, 30.0, 4
    model, x, y_semi = make_te(
        alpha=alpha,
        max_unsupervised_weight=max_weight,
        ramp_up_epochs=ramp_up_epochs,
        num_labeled=12,
    )
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    batch = data.make_dataset(x, y_semi, batch_size=len(x))
    history = model.fit(batch, epochs=3, verbose=0).history
    logits = model.backbone.predict(x, verbose=0)
    softmax = lambda z: np.exp(z) / np.exp(z).sum(-1, keepdims=True)  # noqa: E731
    for epoch in range(3):
        # With lr 0 the ensemble before epoch e is (1 - alpha^e) logits; the seed's target is
        # the updated average, corrected by 1 - alpha^(e + 1): the logits themselves.
        previous = (1 - alpha**epoch) * logits
        target = (alpha * previous + (1 - alpha) * logits) / (1 - alpha ** (epoch + 1))
        expected = np.mean((softmax(logits) - softmax(target)) ** 2)
        np.testing.assert_allclose(history["consistency_loss"][epoch], expected, atol=1e-7)
        weight = float(schedules.ramp_up(epoch, ramp_up_epochs, "sigmoid")) * max_weight * 12 / 48
        np.testing.assert_allclose(history["unsupervised_weight"][epoch], weight, rtol=1e-6)


def test_te_paper_target_is_the_previous_ensemble_held_fixed():
    model, x, y_semi = make_te(target="paper", ramp_up_epochs=1)
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    dataset = data.make_dataset(x, y_semi, batch_size=len(x))
    history = model.fit(dataset, epochs=1, verbose=0).history
    assert history["consistency_loss"][0] == 0.0  # no sample has a target yet
    # Give the ensemble a different history: the target is Z / (1 - alpha), held fixed.
    fake = np.random.default_rng(0).normal(size=(len(x), NUM_CLASSES)).astype("float32")
    model.ensemble.assign(fake)
    logits = model.backbone(x)
    with tf.GradientTape() as tape:
        terms, _ = model.compute_losses(
            x, tf.range(len(x), dtype=tf.int64), tf.constant(y_semi, tf.int32)
        )
    softmax = lambda z: np.exp(z) / np.exp(z).sum(-1, keepdims=True)  # noqa: E731
    expected = np.mean((softmax(logits.numpy()) - softmax(fake / (1 - 0.6))) ** 2)
    np.testing.assert_allclose(terms["consistency_loss"], expected, rtol=1e-5)
    assert tape.gradient(terms["consistency_loss"], model.ensemble.value) is None


@pytest.mark.parametrize("ema_warmup", [False, True])
def test_mean_teacher_ema_after_every_step(ema_warmup):
    keras.utils.set_random_seed(0)
    x, _, y_semi = testing.tiny_data()
    model = models.MeanTeacher(
        testing.tiny_backbone(dropout=0.2),
        len(x),
        NUM_CLASSES,
        ramp_up_epochs=1,
        ema_decay=0.9,
        rampup_ema_decay=0.8,
        ema_warmup=ema_warmup,
    )
    model.compile(optimizer=keras.optimizers.Adam(0.05))

    class CheckEma(keras.callbacks.Callback):
        checked = 0
        decays = []

        def on_train_batch_begin(self, batch, logs=None):
            self.teacher_before = [w.numpy() for w in model.teacher.weights]

        def on_train_batch_end(self, batch, logs=None):
            decay = 0.8 if int(model.epoch.numpy()) < 1 else 0.9
            if ema_warmup:  # the authors' PyTorch code: min(1 - 1 / (step + 1), decay)
                decay = min(decay, 1 - 1 / (int(model.optimizer.iterations.numpy()) + 1))
            self.decays.append(decay)
            for before, teacher, student in zip(
                self.teacher_before, model.teacher.weights, model.backbone.weights
            ):
                expected = decay * before + (1 - decay) * student.numpy()
                np.testing.assert_allclose(teacher.numpy(), expected, rtol=1e-5, atol=1e-6)
            type(self).checked += 1

    model.fit(
        data.make_dataset(x, y_semi, 16, shuffle=True, seed=0),
        epochs=2,
        verbose=0,
        callbacks=[CheckEma()],
    )
    assert CheckEma.checked == 6
    assert len(set(CheckEma.decays)) == (6 if ema_warmup else 2)  # warm-up: 1/2, 2/3, 3/4, ...


def test_mean_teacher_with_batch_norm_averages_moving_statistics():
    backbone = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(8),
            keras.layers.BatchNormalization(),
            keras.layers.Dense(NUM_CLASSES),
        ]
    )
    x, _, y_semi = testing.tiny_data()
    model = models.MeanTeacher(
        backbone, len(x), NUM_CLASSES, rampup_ema_decay=0.0, teacher_batch_norm="moving"
    )
    model.compile(optimizer="sgd")
    model.fit(data.make_dataset(x, y_semi, len(x)), epochs=1, verbose=0)
    # With decay 0 the teacher is the student after the step, moving statistics included.
    moving = [w for w in model.backbone.weights if "moving" in w.path]
    assert len(moving) == 2
    for teacher, student in zip(model.teacher.weights, model.backbone.weights):
        np.testing.assert_allclose(teacher.numpy(), student.numpy(), atol=1e-6)


def test_mean_teacher_consistency_is_positive_and_reaches_the_student():
    keras.utils.set_random_seed(0)
    x, _, y_semi = testing.tiny_data()
    model = models.MeanTeacher(testing.tiny_backbone(dropout=0.3), len(x), NUM_CLASSES)
    model.compile(optimizer="sgd")
    model.epoch.assign(5)
    with tf.GradientTape(persistent=True) as tape:
        terms, _ = model.compute_losses(x, None, tf.constant(y_semi, tf.int32))
    assert float(terms["consistency_loss"]) > 0
    gradients = tape.gradient(terms["consistency_loss"], model.backbone.trainable_weights)
    assert all(float(tf.reduce_sum(tf.abs(g))) > 0 for g in gradients)
    assert tape.gradient(terms["consistency_loss"], model.teacher.weights[0]) is None


@pytest.mark.parametrize("stop_gradient_target", [False, True])
def test_pi_model_two_passes(stop_gradient_target):
    keras.utils.set_random_seed(0)
    x, _, y_semi = testing.tiny_data()
    labels = tf.constant(y_semi, tf.int32)
    deterministic = models.PiModel(testing.tiny_backbone(), len(x), NUM_CLASSES)
    terms, _ = deterministic.compute_losses(x, None, labels)
    assert float(terms["consistency_loss"]) == 0.0

    model = models.PiModel(
        testing.tiny_backbone(dropout=0.5),
        len(x),
        NUM_CLASSES,
        stop_gradient_target=stop_gradient_target,
    )
    with tf.GradientTape(persistent=True) as tape:
        terms, _ = model.compute_losses(x, None, labels)
    assert float(terms["consistency_loss"]) > 0
    gradient = tape.gradient(terms["consistency_loss"], model.backbone.trainable_weights[0])
    assert float(tf.reduce_sum(tf.abs(gradient))) > 0


def test_batch_without_labels_gives_finite_loss():
    model, x, _ = make_te(ramp_up_epochs=1)
    model.compile(optimizer="adam")
    unlabeled = np.full(len(x), data.UNLABELED)
    history = model.fit(data.make_dataset(x, unlabeled, 16), epochs=2, verbose=0).history
    assert history["supervised_loss"] == [0.0, 0.0]
    assert np.all(np.isfinite(history["loss"]))


def _fit_one_batch(model, inputs, labels):
    dataset = tf.data.Dataset.from_tensors((inputs, labels))
    model.fit(dataset, epochs=1, verbose=0)


@pytest.mark.parametrize(
    "bad_idx, message",
    [
        (48, r"idx outside \[0, 48\)"),
        (-1, r"idx outside \[0, 48\)"),
        (2**32 + 3, r"idx outside \[0, 48\)"),  # would wrap to 3 as int32
        (3, "duplicate idx"),
    ],
)
def test_bad_indices_are_named_and_nothing_is_written(bad_idx, message):
    model, x, y_semi = make_te(ramp_up_epochs=1)
    model.compile(optimizer="adam")
    ensemble, weights = model.ensemble.numpy().copy(), model.backbone.get_weights()
    idx = np.array([0, 1, 2, 3, bad_idx], dtype="int64")
    with pytest.raises(tf.errors.InvalidArgumentError, match=message) as error:
        _fit_one_batch(model, {"x": x[:5], "idx": idx}, y_semi[:5])
    assert str(bad_idx) in str(error.value)
    np.testing.assert_array_equal(model.ensemble.numpy(), ensemble)
    for before, after in zip(weights, model.backbone.get_weights()):
        np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize("bad_label", [3, -2])
def test_bad_labels_are_named(bad_label):
    model, x, y_semi = make_te()
    model.compile(optimizer="adam")
    labels = np.array([0, 1, bad_label, -1], dtype="int64")
    with pytest.raises(tf.errors.InvalidArgumentError, match="labels must be") as error:
        _fit_one_batch(model, {"x": x[:4], "idx": np.arange(4)}, labels)
    assert str(bad_label) in str(error.value)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"alpha": 1.0}, "alpha=1.0"),
        ({"target": "both"}, "target='both'"),
        ({"consistency": "l1"}, "consistency='l1'"),
        ({"ramp_up_method": "exp"}, "ramp_up_method='exp'"),
        ({"num_labeled": 100}, "num_labeled=100"),
        ({"max_unsupervised_weight": -1.0}, "max_unsupervised_weight=-1.0"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_te(**kwargs)


def test_compile_refuses_a_loss():
    model, _, _ = make_te()
    with pytest.raises(ValueError, match="loss="):
        model.compile(optimizer="adam", loss="mse")


def _te_run(directory, epochs, interrupt_at=None):
    keras.utils.set_random_seed(0)
    model, x, y_semi = make_te(ramp_up_epochs=2, num_labeled=12, max_unsupervised_weight=10.0)
    model.compile(optimizer=keras.optimizers.Adam(0.01))

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == interrupt_at:
                raise RuntimeError("interrupted")

    callbacks = [keras.callbacks.BackupAndRestore(directory), Interrupt()]
    model.fit(data.make_dataset(x, y_semi, 16), epochs=epochs, verbose=0, callbacks=callbacks)
    return model


def test_backup_and_restore_resumes_exactly(tmp_path):
    uninterrupted = _te_run(str(tmp_path / "a"), epochs=3)
    with pytest.raises(RuntimeError, match="interrupted"):
        _te_run(str(tmp_path / "b"), epochs=3, interrupt_at=2)
    resumed = _te_run(str(tmp_path / "b"), epochs=3)
    assert int(resumed.epoch.numpy()) == 2
    np.testing.assert_allclose(resumed.ensemble.numpy(), uninterrupted.ensemble.numpy(), atol=1e-5)
    np.testing.assert_array_equal(resumed.ensemble_counts.numpy(), np.full(48, 3.0))
    for a, b in zip(resumed.backbone.get_weights(), uninterrupted.backbone.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_tf_train_checkpoint_keeps_ensemble_teacher_and_optimizer(tmp_path):
    x, _, y_semi = testing.tiny_data()
    for model in (
        models.TemporalEnsembling(testing.tiny_backbone(), len(x), NUM_CLASSES),
        models.MeanTeacher(testing.tiny_backbone(), len(x), NUM_CLASSES),
    ):
        model.compile(optimizer="adam")
        model.fit(data.make_dataset(x, y_semi, 16), epochs=1, verbose=0)
        saved = [w.numpy().copy() for w in model.weights + model.optimizer.variables]
        path = tf.train.Checkpoint(model=model, optimizer=model.optimizer).save(
            str(tmp_path / "ckpt")
        )
        model.fit(data.make_dataset(x, y_semi, 16), epochs=1, verbose=0)
        tf.train.Checkpoint(model=model, optimizer=model.optimizer).restore(path).assert_consumed()
        for before, after in zip(saved, model.weights + model.optimizer.variables):
            np.testing.assert_array_equal(before, after.numpy())


def test_predict_and_evaluate_take_arrays_and_dicts():
    model, x, y_semi = make_te()
    model.compile(optimizer="adam", metrics=["accuracy"])
    by_array = model.predict(x, verbose=0)
    by_dict = model.predict({"x": x, "idx": np.arange(len(x))}, verbose=0)
    np.testing.assert_allclose(by_array, by_dict)
    np.testing.assert_allclose(by_array, model.backbone.predict(x, verbose=0), atol=1e-6)
    results = model.evaluate(x, np.maximum(y_semi, 0), verbose=0, return_dict=True)
    assert set(results) == {"loss", "supervised_loss", "accuracy"}


def test_mean_teacher_serves_the_teacher_unless_asked():
    x, _, _ = testing.tiny_data()
    model = models.MeanTeacher(testing.tiny_backbone(), len(x), NUM_CLASSES)
    assert model.serving_model() is model.teacher
    assert model.serving_model("student") is model.backbone
    with pytest.raises(ValueError, match="which='both'"):
        model.serving_model("both")


def test_tensorboard_writes_loss_parts_weight_and_ensemble_histogram(tmp_path):
    model, x, y_semi = make_te(ramp_up_epochs=1)
    model.compile(optimizer="adam")
    callback = keras.callbacks.TensorBoard(str(tmp_path), histogram_freq=1)
    model.fit(data.make_dataset(x, y_semi, 16), epochs=2, verbose=0, callbacks=[callback])
    tags = set()
    for root, _, files in os.walk(tmp_path):
        for name in files:
            for event in tf.compat.v1.train.summary_iterator(os.path.join(root, name)):
                tags.update(value.tag for value in event.summary.value)
    for tag in (
        "epoch_loss",
        "epoch_supervised_loss",
        "epoch_consistency_loss",
        "epoch_unsupervised_weight",
    ):
        assert tag in tags, sorted(tags)
    assert any("ensemble" in tag and "histogram" in tag for tag in tags), sorted(tags)


def test_accuracy_is_computed_on_labeled_rows_only():
    keras.utils.set_random_seed(0)
    x, y, _ = testing.tiny_data()
    y_semi = np.where(np.arange(len(x)) < 24, y, data.UNLABELED)
    model = models.TemporalEnsembling(testing.tiny_backbone(), len(x), NUM_CLASSES)
    model.compile(optimizer=keras.optimizers.SGD(0.0), metrics=["accuracy"])
    history = model.fit(data.make_dataset(x, y_semi, len(x)), epochs=1, verbose=0).history
    predictions = model.backbone.predict(x, verbose=0).argmax(axis=1)
    labeled_accuracy = np.mean(predictions[:24] == y[:24])
    all_rows_as_class_0 = np.mean(predictions == np.maximum(y_semi, 0))
    assert labeled_accuracy != all_rows_as_class_0  # the check below can tell them apart
    np.testing.assert_allclose(history["accuracy"][0], labeled_accuracy, atol=1e-6)


@pytest.mark.parametrize("model_class", [models.PiModel, models.MeanTeacher])
def test_stateless_models_need_neither_num_samples_nor_num_classes(model_class):
    x, _, y_semi = testing.tiny_data()
    model = model_class(testing.tiny_backbone(dropout=0.2))
    assert (model.num_samples, model.num_classes) == (None, NUM_CLASSES)
    model.compile(optimizer="adam")
    with_idx = model.fit(data.make_dataset(x, y_semi, batch_size=16), epochs=1, verbose=0)
    without_idx = model.fit(x, y_semi, batch_size=16, epochs=1, verbose=0)
    for history in (with_idx, without_idx):
        assert np.isfinite(history.history["loss"]).all()
    # Without num_samples the indices are not checked: an index past any range is accepted.
    model.train_on_batch({"x": x[:4], "idx": np.array([10**6, 1, 2, 3])}, y_semi[:4])


def test_num_classes_must_match_the_backbone_output():
    with pytest.raises(ValueError, match=r"output size 3\. Received: num_classes=5"):
        models.PiModel(testing.tiny_backbone(num_classes=3), num_classes=5)


def test_backbone_output_must_be_batch_by_classes():
    backbone = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(3), keras.layers.Reshape((3, 1))]
    )
    with pytest.raises(ValueError, match=r"\(None, 3, 1\)"):
        models.MeanTeacher(backbone)


def test_per_sample_state_needs_num_samples():
    with pytest.raises(ValueError, match="num_samples=None"):
        models.TemporalEnsembling(testing.tiny_backbone(), None)
    with pytest.raises(ValueError, match="num_labeled=12, num_samples=None"):
        models.PiModel(testing.tiny_backbone(), num_labeled=12)
