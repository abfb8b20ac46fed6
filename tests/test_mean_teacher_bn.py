"""Mean Teacher's batch normalization in the teacher's pass: `teacher_batch_norm`."""

import numpy as np
import pytest
import keras
import tensorflow as tf

import _oracles as oracles
from tfssl import data, models, testing

NUM_FEATURES, HIDDEN, NUM_CLASSES = 6, 4, 3
EPSILON, MOMENTUM = 1e-3, 0.9
GAMMA = np.array([1.5, 0.5, 1.0, 2.0], np.float32)
BETA = np.array([0.1, -0.2, 0.3, 0.0], np.float32)
MOVING_MEAN = np.array([0.5, -1.0, 0.25, 2.0], np.float32)
MOVING_VARIANCE = np.array([2.0, 0.5, 1.0, 4.0], np.float32)


def bn_backbone(synchronized=False):
    """Dense -> BatchNormalization -> ReLU -> Dense, deterministic (no noise, no dropout)."""
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((NUM_FEATURES,)),
            keras.layers.Dense(HIDDEN),
            keras.layers.BatchNormalization(
                momentum=MOMENTUM, epsilon=EPSILON, synchronized=synchronized
            ),
            keras.layers.ReLU(),
            keras.layers.Dense(NUM_CLASSES),
        ]
    )


def make_model(teacher_batch_norm, **kwargs):
    backbone = bn_backbone()
    # Moving statistics far from any batch's, so that the two modes give different outputs.
    bn = backbone.layers[1]
    bn.set_weights([GAMMA, BETA, MOVING_MEAN, MOVING_VARIANCE])
    return models.MeanTeacher(backbone, teacher_batch_norm=teacher_batch_norm, **kwargs)


def numpy_pass(model, x, mean, variance):
    w1, b1, gamma, beta, _, _, w2, b2 = [w.numpy() for w in model.teacher.weights]
    h = x @ w1 + b1
    h = (h - mean) / np.sqrt(variance + EPSILON) * gamma + beta
    return np.maximum(h, 0.0) @ w2 + b2


def hidden(model, x):
    w1, b1 = [w.numpy() for w in model.teacher.weights[:2]]
    return x @ w1 + b1


@pytest.mark.parametrize("mode", ["batch", "moving"])
def test_teacher_training_pass_normalises_as_the_mode_says(mode):
    x, _, _ = testing.tiny_data()
    model = make_model(mode)
    h = hidden(model, x)
    logits = model.teacher(x, training=True).numpy()
    if mode == "batch":
        expected = numpy_pass(model, x, h.mean(0), h.var(0))
        # The authors' teacher updates its own moving statistics in its training pass.
        expected_mean = MOMENTUM * MOVING_MEAN + (1 - MOMENTUM) * h.mean(0)
        expected_variance = MOMENTUM * MOVING_VARIANCE + (1 - MOMENTUM) * h.var(0)
    else:
        expected = numpy_pass(model, x, MOVING_MEAN, MOVING_VARIANCE)
        expected_mean, expected_variance = MOVING_MEAN, MOVING_VARIANCE
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-5)
    teacher_bn = model.teacher.layers[1]
    np.testing.assert_allclose(teacher_bn.moving_mean.numpy(), expected_mean, rtol=1e-5)
    np.testing.assert_allclose(teacher_bn.moving_variance.numpy(), expected_variance, rtol=1e-4)
    # The student's statistics are never touched by the teacher's pass.
    np.testing.assert_array_equal(model.backbone.layers[1].moving_mean.numpy(), MOVING_MEAN)
    # Inference uses the moving statistics in both modes.
    inference = numpy_pass(model, x, expected_mean, expected_variance)
    np.testing.assert_allclose(model.teacher(x).numpy(), inference, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", ["batch", "moving"])
def test_only_the_student_is_trainable(mode):
    model = make_model(mode)
    student = {id(w) for w in model.backbone.trainable_weights}
    assert len(student) == 6  # two kernels, two biases, gamma, beta
    assert {id(w) for w in model.trainable_weights} == student
    assert model.teacher.trainable_weights == []
    assert not any(w.trainable for w in model.teacher.weights)


def test_batch_mode_step_averages_trainable_weights_and_keeps_own_statistics():
    x, _, y_semi = testing.tiny_data()
    model = make_model("batch", rampup_ema_decay=0.5, ramp_up_epochs=5)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    teacher_before = [w.numpy() for w in model.teacher.weights]
    teacher_hidden = hidden(model, x)
    model.fit(data.make_dataset(x, y_semi, len(x)), epochs=1, verbose=0)
    student = [w.numpy() for w in model.backbone.weights]
    teacher = [w.numpy() for w in model.teacher.weights]
    for index in (0, 1, 2, 3, 6, 7):  # kernels, biases, gamma, beta
        np.testing.assert_allclose(
            teacher[index], 0.5 * teacher_before[index] + 0.5 * student[index], rtol=1e-5
        )
    # Moving statistics: from the teacher's own pass over the batch, not the EMA.
    np.testing.assert_allclose(
        teacher[4], MOMENTUM * MOVING_MEAN + (1 - MOMENTUM) * teacher_hidden.mean(0), rtol=1e-5
    )
    np.testing.assert_allclose(
        teacher[5],
        MOMENTUM * MOVING_VARIANCE + (1 - MOMENTUM) * teacher_hidden.var(0),
        rtol=1e-4,
    )
    assert not np.allclose(teacher[4], 0.5 * teacher_before[4] + 0.5 * student[4])


def test_batch_mode_teacher_statistics_come_from_its_own_weights():
    # A teacher whose first layer differs from the student's: its pass over the batch, not
    # the student's statistics nor their EMA, writes its moving statistics.
    x, _, y_semi = testing.tiny_data()
    model = make_model("batch", rampup_ema_decay=0.5, ramp_up_epochs=5)
    kernel, bias = [w.numpy() for w in model.teacher.layers[0].weights]
    model.teacher.layers[0].set_weights([1.5 * kernel, bias + 0.3])
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    teacher_hidden = hidden(model, x)
    model.fit(data.make_dataset(x, y_semi, len(x)), epochs=1, verbose=0)
    expected = MOMENTUM * MOVING_MEAN + (1 - MOMENTUM) * teacher_hidden.mean(0)
    teacher_mean = model.teacher.layers[1].moving_mean.numpy()
    student_mean = model.backbone.layers[1].moving_mean.numpy()
    # A float32 mean over 48 rows and one momentum step: rounding of ~1e-6 on O(1) values.
    np.testing.assert_allclose(teacher_mean, expected, rtol=1e-5, atol=1e-6)
    assert np.abs(expected - (0.5 * expected + 0.5 * student_mean)).max() > 1e-2


def test_moving_mode_step_averages_every_weight():
    x, _, y_semi = testing.tiny_data()
    model = make_model("moving", rampup_ema_decay=0.5, ramp_up_epochs=5)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    teacher_before = [w.numpy() for w in model.teacher.weights]
    model.fit(data.make_dataset(x, y_semi, len(x)), epochs=1, verbose=0)
    for before, teacher, student in zip(
        teacher_before, model.teacher.weights, model.backbone.weights
    ):
        np.testing.assert_allclose(
            teacher.numpy(), 0.5 * before + 0.5 * student.numpy(), rtol=1e-5, atol=1e-7
        )


@pytest.mark.parametrize("kind", ["mse", "kl"])
def test_consistency_of_each_mode_equals_numpy(kind):
    x, _, y_semi = testing.tiny_data()
    for mode in ("batch", "moving"):
        model = make_model(mode, consistency=kind)
        model.compile(optimizer="sgd")
        model.epoch.assign(5)
        h = hidden(model, x)
        # Student and teacher start equal; the student's pass uses the batch's statistics,
        # the teacher's those that the mode names.
        student = numpy_pass(model, x, h.mean(0), h.var(0))
        if mode == "batch":
            teacher = student
        else:
            teacher = numpy_pass(model, x, MOVING_MEAN, MOVING_VARIANCE)
        terms, _ = model.compute_losses(x, None, tf.constant(y_semi, tf.int32))
        expected = oracles.consistency(student, teacher, kind).mean()
        # The float32 pass with batch statistics matches NumPy to 1e-5 in the logits (the
        # pass test above); the consistency is quadratic in that error, so the batch mode's
        # exact 0 comes out below 1e-8.
        np.testing.assert_allclose(
            float(terms["consistency_loss"]), expected, rtol=1e-3, atol=1e-8
        )
        if mode == "moving":
            assert expected > 1e-2  # far from the 0 of the batch mode: the check can tell


@pytest.mark.parametrize("mode", ["batch", "moving"])
def test_config_and_save_load(mode, tmp_path):
    x, _, y_semi = testing.tiny_data()
    model = make_model(mode, ramp_up_epochs=1)
    assert model.get_config()["teacher_batch_norm"] == mode
    model.compile(optimizer="sgd")
    model.fit(data.make_dataset(x, y_semi, 16), epochs=1, verbose=0)
    path = str(tmp_path / "bn.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.teacher_batch_norm == mode
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    # The loaded teacher normalises its training pass as the mode says, as the original.
    np.testing.assert_allclose(
        loaded.teacher(x, training=True).numpy(), model.teacher(x, training=True).numpy(),
        rtol=1e-5, atol=1e-6,
    )
    assert loaded.trainable_weights and all(
        any(w is s for s in loaded.backbone.trainable_weights) for w in loaded.trainable_weights
    )


def test_default_and_bad_value():
    assert models.MeanTeacher(bn_backbone()).teacher_batch_norm == "batch"
    with pytest.raises(ValueError, match="teacher_batch_norm='train'"):
        models.MeanTeacher(bn_backbone(), teacher_batch_norm="train")


def _mirrored_factory(synchronized, mode):
    """A two-replica factory (test_two_replicas.py): the teacher's pass in `mode`, on a
    backbone whose batch normalisation is `synchronized` across replicas or not."""
    x, _, y_semi = testing.tiny_data()
    model = models.MeanTeacher(
        bn_backbone(synchronized),
        ramp_up_epochs=2,
        rampup_ema_decay=0.9,
        max_unsupervised_weight=10.0,
        teacher_batch_norm=mode,
    )
    return model, data.make_dataset(x, y_semi, batch_size=16)


def mirrored_synchronized_batch():
    return _mirrored_factory(True, "batch")


def mirrored_per_replica_batch():
    return _mirrored_factory(False, "batch")


