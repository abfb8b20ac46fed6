"""The base's hooks: weight schedules, pseudo-label policies and target transforms."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfssl
from tfssl import schedules
from tfssl.models import policies


def _backbone(num_classes=3):
    return keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(num_classes)]
    )


# ------------------------------------------------------------------------ weight schedules
def _seed_weight(epoch, max_weight, epochs, scale):
    """The seed's TF1 weight: 0 at epoch 0, then exp(-5 (1 - t)^2) * max * labeled/total."""
    if epoch == 0:
        return 0.0
    t = min(epoch, epochs) / epochs
    return np.exp(-5.0 * (1.0 - t) ** 2) * max_weight * scale


@pytest.mark.parametrize("epoch", [0, 1, 40, 80, 200])
def test_ramp_up_weight_is_the_seeds_formula(epoch):
    schedule = schedules.RampUpWeight(30.0, ramp_up_epochs=80, scale=100 / 1000)
    # float32 exp and products: a few units of float32's 2^-24 relative rounding.
    np.testing.assert_allclose(
        float(schedule(epoch)), _seed_weight(epoch, 30.0, 80, 0.1), rtol=1e-6, atol=1e-9
    )


def test_linear_ramp_weight_is_lees_schedule():
    schedule = schedules.LinearRampWeight(start_epoch=10, end_epoch=30, max_weight=3.0)
    for epoch, expected in [(0, 0.0), (10, 0.0), (20, 1.5), (30, 3.0), (99, 3.0)]:
        assert float(schedule(epoch)) == pytest.approx(expected)


def test_constant_weight_and_numbers():
    assert float(schedules.ConstantWeight(2.5)(123)) == 2.5
    assert schedules.get_weight_schedule(0.5) == schedules.ConstantWeight(0.5)


def test_a_schedule_prints_as_its_constructor_call():
    assert repr(schedules.ConstantWeight(2.0)) == "ConstantWeight(weight=2.0)"
    assert repr(schedules.RampUpWeight(30.0, 80)) == (
        "RampUpWeight(max_weight=30.0, ramp_up_epochs=80, method='sigmoid', scale=1.0)"
    )


@pytest.mark.parametrize(
    "schedule",
    [
        schedules.ConstantWeight(2.0),
        schedules.RampUpWeight(30.0, 5, "linear", scale=0.25),
        schedules.LinearRampWeight(1, 4, 2.0),
    ],
)
def test_weight_schedules_serialize(schedule):
    config = keras.saving.serialize_keras_object(schedule)
    assert schedules.get_weight_schedule(config) == schedule


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: schedules.ConstantWeight(-1.0), "weight=-1.0"),
        (lambda: schedules.RampUpWeight(ramp_up_epochs=0), "ramp_up_epochs=0"),
        (lambda: schedules.RampUpWeight(method="square"), "method='square'"),
        (lambda: schedules.RampUpWeight(scale=2.0), "scale=2.0"),
        (lambda: schedules.LinearRampWeight(5, 5), "start_epoch=5, end_epoch=5"),
        (lambda: schedules.get_weight_schedule("fast"), "weight_schedule='fast'"),
    ],
)
def test_weight_schedule_errors_name_the_value(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_models_read_their_weight_from_the_schedule():
    model = tfssl.models.PiModel(_backbone(), weight_schedule=schedules.LinearRampWeight(0, 4, 2.0))
    model.epoch.assign(1)
    assert float(model.unsupervised_weight()) == pytest.approx(0.5)


def test_the_shorthand_builds_the_seeds_ramp_up():
    model = tfssl.models.TemporalEnsembling(
        _backbone(), num_samples=1000, num_labeled=100, max_unsupervised_weight=30.0,
        ramp_up_epochs=80,
    )
    assert model.weight_schedule == schedules.RampUpWeight(30.0, 80, "sigmoid", scale=0.1)


def test_the_shorthand_and_a_schedule_are_refused_together():
    with pytest.raises(ValueError, match="max_unsupervised_weight"):
        tfssl.models.PiModel(
            _backbone(), weight_schedule=schedules.ConstantWeight(1.0), max_unsupervised_weight=3.0
        )


def test_method_defaults_are_their_papers():
    backbone = _backbone()
    assert tfssl.models.FixMatch(backbone).weight_schedule == schedules.ConstantWeight(1.0)
    assert tfssl.models.FixMatch(backbone, lambda_u=2.0).weight_schedule == schedules.ConstantWeight(2.0)
    assert tfssl.models.VAT(backbone, max_unsupervised_weight=0.3).weight_schedule == (
        schedules.ConstantWeight(0.3)
    )
    assert tfssl.models.MixMatch(backbone, lambda_u=50.0).weight_schedule == (
        schedules.RampUpWeight(50.0, 16, "linear")
    )
    assert tfssl.models.PseudoLabel(backbone, schedule="lee", t1=2, t2=6).weight_schedule == (
        schedules.LinearRampWeight(2, 6, 3.0)
    )


def test_mean_teacher_keeps_the_seeds_ema_ramp_with_the_weight_ramp():
    model = tfssl.models.MeanTeacher(_backbone(), ramp_up_epochs=5)
    assert model.ema_rampup_epochs == 5
    model = tfssl.models.MeanTeacher(_backbone(), weight_schedule=2.0)
    assert model.ema_rampup_epochs == 0


# ---------------------------------------------------------------------------- policies
def test_fixed_threshold_keeps_rows_at_or_above_it():
    probabilities = tf.constant([[0.95, 0.05], [0.94, 0.06], [0.5, 0.5]])
    weights, updates = policies.FixedThreshold(0.95).select(probabilities)
    np.testing.assert_array_equal(weights.numpy(), [1.0, 0.0, 0.0])
    assert updates == {}


def _owned(hook, num_classes=3, num_samples=None):
    model = tfssl.models.PiModel(_backbone(num_classes), num_samples=num_samples)
    return model, model.add_hook(hook)


def test_distribution_alignment_follows_remixmatch_over_steps():
    momentum = 0.9
    model, alignment = _owned(policies.DistributionAlignment(momentum=momentum))
    rng = np.random.default_rng(0)
    p_model = np.full(3, 1 / 3)
    for _ in range(3):
        p = rng.dirichlet(np.ones(3), size=5).astype("float32")
        aligned, updates = alignment.transform(tf.constant(p))
        p_model = momentum * p_model + (1 - momentum) * p.mean(axis=0)
        expected = p * (1 / 3) / p_model
        expected /= expected.sum(axis=1, keepdims=True)
        # float32 products and one division: a few float32 rounding units.
        np.testing.assert_allclose(aligned.numpy(), expected, rtol=1e-5)
        np.testing.assert_allclose(updates["p_model"].numpy(), p_model, rtol=1e-5)
        alignment.apply_updates(model, updates, None)
    np.testing.assert_allclose(alignment.p_model.numpy(), p_model, rtol=1e-5)


def test_distribution_alignment_to_the_labeled_predictions():
    model, alignment = _owned(policies.DistributionAlignment(momentum=0.5, target="labeled"))
    p = np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]], "float32")
    labeled = np.array([[0.1, 0.8, 0.1]], "float32")
    aligned, updates = alignment.transform(tf.constant(p), tf.constant(labeled))
    p_model = 0.5 / 3 + 0.5 * p.mean(axis=0)
    p_target = 0.5 / 3 + 0.5 * labeled.mean(axis=0)
    expected = p * p_target / p_model
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(aligned.numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(updates["p_target"].numpy(), p_target, rtol=1e-6)


def test_distribution_alignment_ignores_a_batch_without_rows():
    model, alignment = _owned(policies.DistributionAlignment(momentum=0.5))
    _, updates = alignment.transform(tf.zeros([0, 3]))
    np.testing.assert_allclose(updates["p_model"].numpy(), np.full(3, 1 / 3), rtol=1e-7)


def test_sharpen_is_the_mixmatch_formula():
    p = np.array([[0.6, 0.3, 0.1]], "float32")
    sharpened, _ = policies.Sharpen(0.5).transform(tf.constant(p))
    expected = p**2 / (p**2).sum()
    np.testing.assert_allclose(sharpened.numpy(), expected, rtol=1e-6)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: policies.FixedThreshold(1.5), "threshold=1.5"),
        (lambda: policies.FlexMatchThreshold(mapping="cubic"), "mapping='cubic'"),
        (lambda: policies.Sharpen(0.0), "temperature=0.0"),
        (lambda: policies.DistributionAlignment(momentum=1.0), "momentum=1.0"),
        (lambda: policies.DistributionAlignment(target="gt"), "target='gt'"),
    ],
)
def test_hook_errors_name_the_value(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_a_per_row_policy_needs_num_samples():
    with pytest.raises(ValueError, match="num_samples=None"):
        tfssl.models.FixMatch(_backbone(), pseudo_label_policy=policies.FlexMatchThreshold())


def test_shorthand_and_policy_are_refused_together():
    with pytest.raises(ValueError, match="threshold=0.5"):
        tfssl.models.FixMatch(
            _backbone(), threshold=0.5, pseudo_label_policy=policies.FixedThreshold(0.9)
        )


def test_fixmatch_alignment_is_written_only_after_an_applied_step():
    keras.utils.set_random_seed(0)
    model = tfssl.models.FixMatch(
        _backbone(), threshold=0.0, distribution_alignment=policies.DistributionAlignment(0.5),
        on_nonfinite="skip", weak_augment=keras.layers.Identity(),
        strong_augment=keras.layers.Identity(),
    )
    model.compile(optimizer="sgd")
    x = np.random.default_rng(0).random((4, 8, 8, 1)).astype("float32")
    y = np.array([0, -1, -1, -1])
    guesses = tf.nn.softmax(model.backbone(x[1:])).numpy()
    model.train_on_batch({"x": x, "idx": np.arange(4)}, y)
    expected = 0.5 / 3 + 0.5 * guesses.mean(axis=0)
    np.testing.assert_allclose(model.distribution_alignment.p_model.numpy(), expected, rtol=1e-5)
    bad = x.copy()
    bad[2, 0, 0, 0] = np.nan
    model.train_on_batch({"x": bad, "idx": np.arange(4)}, y)
    np.testing.assert_allclose(model.distribution_alignment.p_model.numpy(), expected, rtol=1e-5)
