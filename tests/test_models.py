"""Behaviour of PiModel, TemporalEnsembling and MeanTeacher against their formulas."""

import os

import numpy as np
import pytest
import keras
import tensorflow as tf

import _oracles as oracles
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


def test_batch_without_labels_gives_finite_loss():
    model, x, _ = make_te(ramp_up_epochs=1)
    model.compile(optimizer="adam")
    unlabeled = np.full(len(x), data.UNLABELED)
    history = model.fit(data.make_dataset(x, unlabeled, 16), epochs=2, verbose=0).history
    assert history["supervised_loss"] == [0.0, 0.0]
    assert np.all(np.isfinite(history["loss"]))


@pytest.fixture(scope="module")
def te_for_bad_batches():
    model, x, y_semi = make_te(ramp_up_epochs=1)
    model.compile(optimizer="adam")
    return model, x, y_semi


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
def test_bad_indices_are_named_and_nothing_is_written(bad_idx, message, te_for_bad_batches):
    # One model for every bad batch (its step traced once): each refused batch leaves
    # it as it was.
    model, x, y_semi = te_for_bad_batches
    ensemble, weights = model.ensemble.numpy().copy(), model.backbone.get_weights()
    idx = np.array([0, 1, 2, 3, bad_idx], dtype="int64")
    with pytest.raises(tf.errors.InvalidArgumentError, match=message) as error:
        _fit_one_batch(model, {"x": x[:5], "idx": idx}, y_semi[:5])
    assert str(bad_idx) in str(error.value)
    np.testing.assert_array_equal(model.ensemble.numpy(), ensemble)
    for before, after in zip(weights, model.backbone.get_weights()):
        np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize("bad_label", [3, -2])
def test_bad_labels_are_named(bad_label, te_for_bad_batches):
    model, x, y_semi = te_for_bad_batches
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


@pytest.mark.slow
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


@pytest.mark.slow
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


def test_fit_traces_the_step_once(monkeypatch):
    # The optimizer's slots and the compiled metric are built before the first trace: a
    # step that created them would be traced twice by `tf.function`.
    traces = []
    train_step = models.TemporalEnsembling.train_step

    def counted_step(model, batch):
        traces.append(batch)
        return train_step(model, batch)

    monkeypatch.setattr(models.TemporalEnsembling, "train_step", counted_step)
    model, x, y_semi = make_te()
    model.compile(optimizer="adam", metrics=["accuracy"])
    model.fit(data.make_dataset(x, y_semi, 16, shuffle=True, seed=0), epochs=2, verbose=0)
    assert len(traces) == 1
    assert len(model.optimizer.variables) > 1  # the step count and Adam's slots


@pytest.mark.slow  # two fits, one under a strategy
def test_a_strategy_sees_the_same_shuffles_as_no_strategy():
    # The build reads the pipeline's element spec and draws no batch: under a strategy a
    # pipeline that reshuffles each epoch is not an epoch ahead of the same fit without one.
    x, _, y_semi = testing.tiny_data()
    weights = []
    for strategy in (tf.distribute.OneDeviceStrategy("/cpu:0"), tf.distribute.get_strategy()):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model, _, _ = make_te()
            model.compile(optimizer=keras.optimizers.SGD(0.1))
        model.fit(data.make_dataset(x, y_semi, 16, shuffle=True, seed=0), epochs=2, verbose=0)
        weights.append(model.get_weights())
    for under_strategy, without in zip(*weights, strict=True):
        # atol: the same float32 steps on the same batches, a few ulps of weights of order 1.
        np.testing.assert_allclose(under_strategy, without, atol=1e-6)


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


# Value checks: every term, gradient and state update against tests/_oracles.py (NumPy,
# float64) on a fixed batch, with a Dense backbone of fixed weights and known noise draws.

RTOL, ATOL = oracles.RTOL, oracles.ATOL


def _restart_noise(*backbones):
    for backbone in backbones:
        backbone.layers[0].restart()


@pytest.mark.parametrize("kind", ["mse", "kl"])
@pytest.mark.parametrize("stop_gradient_target", [False, True])
def test_pi_model_terms_and_gradients_equal_numpy(kind, stop_gradient_target):
    x, labels = oracles.batch()
    backbone = oracles.linear_backbone(noise_seed=1)
    model = models.PiModel(
        backbone,
        consistency=kind,
        stop_gradient_target=stop_gradient_target,
        max_unsupervised_weight=3.0,
        ramp_up_epochs=4,
    )
    model.epoch.assign(2)
    _restart_noise(backbone)
    with tf.GradientTape(persistent=True) as tape:
        terms, outputs = model.compute_losses(tf.constant(x), None, tf.constant(labels))
    kernel, bias = oracles.dense_weights()
    noise = oracles.noise_draws(1, 2, len(x))
    first_inputs, second_inputs = x + noise[0], x + noise[1]
    first, second = first_inputs @ kernel + bias, second_inputs @ kernel + bias
    weight = 3.0 * oracles.ramp_up(2, 4, "sigmoid")
    supervised, supervised_grad = oracles.cross_entropy(labels, first)
    consistency = oracles.consistency(first, second, kind).mean()
    np.testing.assert_allclose(outputs["logits"], first, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(terms["supervised_loss"], supervised, rtol=RTOL)
    np.testing.assert_allclose(terms["consistency_loss"], consistency, rtol=RTOL)
    np.testing.assert_allclose(terms["unsupervised_weight"], weight, rtol=RTOL)
    np.testing.assert_allclose(terms["loss"], supervised + weight * consistency, rtol=RTOL)

    # The consistency's gradient: through the first pass only with the stop-gradient,
    # through both passes without it (the paper).
    grad_first, grad_second = oracles.consistency_gradients(first, second, kind)
    one_branch = oracles.dense_gradients(first_inputs, grad_first)
    other_branch = oracles.dense_gradients(second_inputs, grad_second)
    both = [a + b for a, b in zip(one_branch, other_branch)]
    assert np.abs(other_branch[0]).max() > 100 * RTOL * np.abs(one_branch[0]).max()
    expected = one_branch if stop_gradient_target else both
    gradients = tape.gradient(terms["consistency_loss"], backbone.trainable_weights)
    for gradient, value in zip(gradients, expected):
        np.testing.assert_allclose(gradient, value, rtol=RTOL, atol=ATOL)
    # The total's gradient adds the supervised one of the first pass, weighted as above.
    supervised_grads = oracles.dense_gradients(first_inputs, supervised_grad)
    gradients = tape.gradient(terms["loss"], backbone.trainable_weights)
    for gradient, sup, cons in zip(gradients, supervised_grads, expected):
        np.testing.assert_allclose(gradient, sup + weight * cons, rtol=RTOL, atol=ATOL)


def test_pi_model_without_noise_has_zero_consistency():
    x, labels = oracles.batch()
    model = models.PiModel(oracles.linear_backbone())
    terms, _ = model.compute_losses(tf.constant(x), None, tf.constant(labels))
    assert float(terms["consistency_loss"]) == 0.0


@pytest.mark.parametrize("method", ["linear", "sigmoid", "cosine", "cosine_rampup"])
def test_unsupervised_weight_follows_each_ramp_up_method(method):
    x, labels = oracles.batch()
    model = models.PiModel(
        oracles.linear_backbone(),
        num_samples=40,
        num_labeled=10,
        max_unsupervised_weight=8.0,
        ramp_up_method=method,
        ramp_up_epochs=4,
    )
    for epoch in (0, 1, 2, 3, 4, 7):
        model.epoch.assign(epoch)
        terms, _ = model.compute_losses(tf.constant(x), None, tf.constant(labels))
        expected = oracles.ramp_up(epoch, 4, method) * 8.0 * 10 / 40
        np.testing.assert_allclose(terms["unsupervised_weight"], expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("normalize", ["batch", "labeled"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_supervised_term_and_its_gradient_follow_normalize_and_smoothing(
    normalize, label_smoothing
):
    x, labels = oracles.batch()
    backbone = oracles.linear_backbone()
    model = models.PiModel(
        backbone, supervised_normalize=normalize, label_smoothing=label_smoothing
    )
    with tf.GradientTape() as tape:
        terms, _ = model.compute_losses(tf.constant(x), None, tf.constant(labels))
    kernel, bias = oracles.dense_weights()
    logits = x @ kernel + bias
    expected, grad_logits = oracles.cross_entropy(labels, logits, normalize, label_smoothing)
    np.testing.assert_allclose(terms["supervised_loss"], expected, rtol=RTOL)
    gradients = tape.gradient(terms["supervised_loss"], backbone.trainable_weights)
    for gradient, value in zip(gradients, oracles.dense_gradients(x, grad_logits)):
        np.testing.assert_allclose(gradient, value, rtol=RTOL, atol=ATOL)


def _te_with_state(target, kind, alpha=0.6, noise_seed=None):
    """A TE model on 20 samples whose ensemble and counts hold known, varied values."""
    backbone = oracles.linear_backbone(noise_seed=noise_seed, draws=1)
    model = models.TemporalEnsembling(
        backbone, num_samples=20, alpha=alpha, target=target, consistency=kind,
        max_unsupervised_weight=2.0, ramp_up_epochs=1,
    )
    rng = np.random.default_rng(7)
    ensemble = rng.normal(size=(20, 3)).astype("float32")
    counts = (np.arange(20) % 4).astype("float32")  # 0, 1, 2, 3 updates so far
    model.ensemble.assign(ensemble)
    model.ensemble_counts.assign(counts)
    return model, ensemble, counts


@pytest.mark.parametrize("kind", ["mse", "kl"])
@pytest.mark.parametrize("target", ["seed", "paper"])
def test_te_target_with_bias_correction_and_its_gradient_equal_numpy(target, kind):
    alpha = 0.6
    model, ensemble, counts = _te_with_state(target, kind, alpha)
    x, labels = oracles.batch()
    idx = np.array([3, 17, 0, 5, 9, 10, 2, 14, 6, 19, 1, 12])
    model.epoch.assign(1)
    with tf.GradientTape() as tape:
        terms, _ = model.compute_losses(tf.constant(x), tf.constant(idx), tf.constant(labels))
    kernel, bias = oracles.dense_weights()
    logits = x @ kernel + bias
    previous, count = ensemble[idx].astype(np.float64), counts[idx][:, None]
    if target == "seed":
        # The updated average, corrected by 1 - alpha^(t + 1); the gradient flows through it.
        scale = (1 - alpha) / (1 - alpha ** (count + 1))
        targets = alpha * previous / (1 - alpha ** (count + 1)) + scale * logits
    else:
        # The previous ensemble, corrected by 1 - alpha^t; no target (zero cost) when t = 0.
        corrected = previous / np.where(count > 0, 1 - alpha**count, 1.0)
        targets = np.where(count > 0, corrected, logits)
        scale = np.zeros_like(count)
    np.testing.assert_allclose(
        terms["consistency_loss"], oracles.consistency(logits, targets, kind).mean(), rtol=RTOL
    )
    grad_logits, grad_targets = oracles.consistency_gradients(logits, targets, kind)
    expected = oracles.dense_gradients(x, grad_logits + scale * grad_targets)
    gradients = tape.gradient(terms["consistency_loss"], model.backbone.trainable_weights)
    for gradient, value in zip(gradients, expected):
        np.testing.assert_allclose(gradient, value, rtol=RTOL, atol=ATOL)


def test_te_step_writes_the_moving_average_and_counts_of_the_batch_rows_only():
    alpha, learning_rate = 0.6, 0.5
    model, ensemble, counts = _te_with_state("seed", "mse", alpha, noise_seed=1)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate))
    x, labels = oracles.batch()
    idx = np.array([3, 17, 0, 5, 9, 10, 2, 14, 6, 19, 1, 12])
    model.train_on_batch({"x": x, "idx": idx}, labels)
    kernel, bias = oracles.dense_weights()
    # The logits of the step's training pass (its noise draw), before the optimizer update.
    inputs = x + oracles.noise_draws(1, 1, len(x))[0]
    logits = inputs @ kernel + bias
    expected_ensemble, expected_counts = ensemble.astype(np.float64), counts.copy()
    expected_ensemble[idx] = alpha * ensemble[idx] + (1 - alpha) * logits
    expected_counts[idx] += 1
    np.testing.assert_allclose(model.ensemble.numpy(), expected_ensemble, rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(model.ensemble_counts.numpy(), expected_counts)
    # The optimizer step itself: SGD on the supervised term (the weight is 0 at epoch 0).
    _, grad_logits = oracles.cross_entropy(labels, logits)
    for weight, start, gradient in zip(
        model.backbone.trainable_weights,
        (kernel, bias),
        oracles.dense_gradients(inputs, grad_logits),
    ):
        np.testing.assert_allclose(
            weight.numpy(), start - learning_rate * gradient, rtol=RTOL, atol=ATOL
        )


def _mean_teacher(kind, **kwargs):
    backbone = oracles.linear_backbone(noise_seed=1, draws=1)
    model = models.MeanTeacher(
        backbone, consistency=kind, max_unsupervised_weight=3.0, ramp_up_epochs=4, **kwargs
    )
    # The teacher is the student's clone with the noise seed + 1: draws of its own.
    assert model.teacher.layers[0].seed == 2
    model.teacher.layers[-1].set_weights(list(oracles.dense_weights(seed=5)))
    return model


@pytest.mark.parametrize("kind", ["mse", "kl"])
def test_mean_teacher_terms_and_gradient_equal_numpy(kind):
    x, labels = oracles.batch()
    model = _mean_teacher(kind)
    model.compile(optimizer="sgd")
    model.epoch.assign(2)
    _restart_noise(model.backbone, model.teacher)
    with tf.GradientTape(persistent=True) as tape:
        terms, _ = model.compute_losses(tf.constant(x), None, tf.constant(labels))
    student_inputs = x + oracles.noise_draws(1, 1, len(x))[0]
    teacher_inputs = x + oracles.noise_draws(2, 1, len(x))[0]
    kernel, bias = oracles.dense_weights()
    teacher_kernel, teacher_bias = oracles.dense_weights(seed=5)
    student = student_inputs @ kernel + bias
    teacher = teacher_inputs @ teacher_kernel + teacher_bias
    consistency = oracles.consistency(student, teacher, kind).mean()
    supervised, _ = oracles.cross_entropy(labels, student)
    weight = 3.0 * oracles.ramp_up(2, 4, "sigmoid")
    np.testing.assert_allclose(terms["consistency_loss"], consistency, rtol=RTOL)
    np.testing.assert_allclose(terms["supervised_loss"], supervised, rtol=RTOL)
    np.testing.assert_allclose(terms["loss"], supervised + weight * consistency, rtol=RTOL)
    # The teacher is a fixed target: the gradient is the student branch's alone.
    grad_student, _ = oracles.consistency_gradients(student, teacher, kind)
    expected = oracles.dense_gradients(student_inputs, grad_student)
    gradients = tape.gradient(terms["consistency_loss"], model.backbone.trainable_weights)
    for gradient, value in zip(gradients, expected):
        np.testing.assert_allclose(gradient, value, rtol=RTOL, atol=ATOL)
    assert all(
        tape.gradient(terms["consistency_loss"], w) is None for w in model.teacher.weights
    )


@pytest.mark.parametrize("epoch, decay", [(2, 0.9), (4, 0.99)])
def test_mean_teacher_step_is_sgd_on_the_student_then_the_teacher_ema(epoch, decay):
    learning_rate = 0.5
    x, labels = oracles.batch()
    model = _mean_teacher("mse", rampup_ema_decay=0.9, ema_decay=0.99)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate), run_eagerly=True)
    model.epoch.assign(epoch)
    _restart_noise(model.backbone, model.teacher)
    model.train_on_batch(x, labels)
    assert (model.backbone.layers[0].calls, model.teacher.layers[0].calls) == (1, 1)
    student_inputs = x + oracles.noise_draws(1, 1, len(x))[0]
    teacher_inputs = x + oracles.noise_draws(2, 1, len(x))[0]
    kernel, bias = oracles.dense_weights()
    teacher_kernel, teacher_bias = oracles.dense_weights(seed=5)
    student = student_inputs @ kernel + bias
    teacher = teacher_inputs @ teacher_kernel + teacher_bias
    weight = 3.0 * oracles.ramp_up(epoch, 4, "sigmoid")
    _, grad_supervised = oracles.cross_entropy(labels, student)
    grad_consistency, _ = oracles.consistency_gradients(student, teacher, "mse")
    gradients = oracles.dense_gradients(
        student_inputs, grad_supervised + weight * grad_consistency
    )
    for student_weight, teacher_weight, start, teacher_start, gradient in zip(
        model.backbone.layers[-1].weights,
        model.teacher.layers[-1].weights,
        (kernel, bias),
        (teacher_kernel, teacher_bias),
        gradients,
    ):
        updated = start - learning_rate * gradient
        np.testing.assert_allclose(student_weight.numpy(), updated, rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(
            teacher_weight.numpy(),
            decay * teacher_start + (1 - decay) * updated,
            rtol=RTOL,
            atol=ATOL,
        )
