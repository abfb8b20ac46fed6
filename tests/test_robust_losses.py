"""GCE and SCE (tfssl.losses) against NumPy, and as the models' supervised objective."""

import keras
import numpy as np
import pytest

from tfssl import data, losses, models, testing

LOGITS = np.array(
    [[2.0, -1.0, 0.5], [0.1, 0.2, 0.3], [-3.0, 4.0, 0.0], [1.0, 1.0, -2.0]], "float32"
)
LABELS = np.array([0, 2, -1, 1])
# Float32 log-softmax and exp of logits of order 1 against float64 NumPy: a few float32
# ulps (6e-8 relative) per operation, 1e-5 relative; 1e-6 absolute for the masked zeros'
# neighbours, losses of order 0.1 to 5.
RTOL, ATOL = 1e-5, 1e-6


def _softmax(logits):
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


def _numpy_gce(labels, logits, q):
    p = _softmax(logits.astype("float64"))
    p_label = p[np.arange(len(labels)), np.maximum(labels, 0)]
    return np.where(labels >= 0, (1.0 - p_label**q) / q, 0.0)


def _numpy_sce(labels, logits, alpha, beta, log_zero):
    p = _softmax(logits.astype("float64"))
    one_hot = np.eye(logits.shape[1])[np.maximum(labels, 0)]
    ce = -np.sum(one_hot * np.log(p), -1)
    rce = -np.sum(p * np.clip(np.log(np.where(one_hot > 0, one_hot, 1e-300)), log_zero, 0), -1)
    return np.where(labels >= 0, alpha * ce + beta * rce, 0.0)


@pytest.mark.parametrize("q", [0.3, 0.7, 1.0])
def test_gce_equals_the_box_cox_of_the_label_probability(q):
    expected = _numpy_gce(LABELS, LOGITS, q)
    per_sample = losses.generalized_crossentropy(LABELS, LOGITS, q=q, normalize="none")
    np.testing.assert_allclose(per_sample.numpy(), expected, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(
        float(losses.generalized_crossentropy(LABELS, LOGITS, q=q)), expected.sum() / 4,
        rtol=RTOL,
    )
    np.testing.assert_allclose(
        float(losses.generalized_crossentropy(LABELS, LOGITS, q=q, normalize="labeled")),
        expected.sum() / 3, rtol=RTOL,
    )


def test_gce_tends_to_the_crossentropy_as_q_tends_to_zero():
    # (1 - p^q) / q = -log p - q log(p)^2 / 2 + O(q^2): at q = 1e-3 the gap is below 1e-2
    # for these probabilities (|log p| < 4.1).
    gce = losses.generalized_crossentropy(LABELS, LOGITS, q=1e-3, normalize="none").numpy()
    ce = losses.masked_sparse_categorical_crossentropy(LABELS, LOGITS, normalize="none").numpy()
    np.testing.assert_allclose(gce, ce, atol=1e-2)


@pytest.mark.parametrize("alpha,beta,log_zero", [(0.1, 1.0, -4.0), (1.0, 0.5, -6.0)])
def test_sce_equals_ce_plus_reverse_ce_with_log_zero_clipped(alpha, beta, log_zero):
    expected = _numpy_sce(LABELS, LOGITS, alpha, beta, log_zero)
    per_sample = losses.symmetric_crossentropy(
        LABELS, LOGITS, alpha=alpha, beta=beta, log_zero=log_zero, normalize="none"
    )
    np.testing.assert_allclose(per_sample.numpy(), expected, rtol=RTOL, atol=ATOL)


def test_the_keras_classes_equal_the_functions_and_round_trip():
    gce = losses.GeneralizedCrossentropy(q=0.5, normalize="labeled")
    np.testing.assert_allclose(
        float(gce(LABELS, LOGITS)), _numpy_gce(LABELS, LOGITS, 0.5).sum() / 3, rtol=RTOL
    )
    sce = losses.SymmetricCrossentropy(alpha=0.2, beta=2.0, log_zero=-3.0)
    np.testing.assert_allclose(
        float(sce(LABELS, LOGITS)), _numpy_sce(LABELS, LOGITS, 0.2, 2.0, -3.0).sum() / 4,
        rtol=RTOL,
    )
    for loss in (gce, sce):
        clone = type(loss).from_config(loss.get_config())
        assert clone.get_config() == loss.get_config()


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: losses.generalized_crossentropy(LABELS, LOGITS, q=0.0), "q=0.0"),
        (lambda: losses.GeneralizedCrossentropy(q=1.5), "q=1.5"),
        (lambda: losses.symmetric_crossentropy(LABELS, LOGITS, alpha=-1.0), "alpha=-1.0"),
        (lambda: losses.SymmetricCrossentropy(log_zero=0.0), "log_zero=0.0"),
        (lambda: losses.generalized_crossentropy(LABELS, LOGITS, normalize="sum"),
         "normalize='sum'"),
    ],
)
def test_bad_arguments_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize(
    "objective,reference",
    [
        ("gce", lambda y, z: _numpy_gce(y, z, 0.7)),
        ("sce", lambda y, z: _numpy_sce(y, z, 0.1, 1.0, -4.0)),
    ],
)
@pytest.mark.parametrize("normalize", ["batch", "labeled"])
def test_every_model_takes_them_as_its_supervised_objective(objective, reference, normalize):
    model = models.PiModel(
        testing.tiny_backbone(num_classes=3),
        supervised_objective=objective,
        supervised_normalize=normalize,
    )
    expected = reference(LABELS, LOGITS)
    denominator = 4 if normalize == "batch" else 3
    np.testing.assert_allclose(
        float(model.supervised_loss(LABELS, LOGITS)), expected.sum() / denominator, rtol=RTOL
    )
    assert type(model).from_config(model.get_config()).supervised_objective == objective


@pytest.mark.parametrize(
    "objective,reference",
    [
        (lambda: losses.GeneralizedCrossentropy(q=0.4), lambda y, z: _numpy_gce(y, z, 0.4)),
        (lambda: losses.SymmetricCrossentropy(0.5, 0.25, -2.0, normalize="labeled"),
         lambda y, z: _numpy_sce(y, z, 0.5, 0.25, -2.0)),
    ],
    ids=["gce", "sce"],
)
@pytest.mark.parametrize("normalize", ["batch", "labeled"])
def test_a_loss_object_is_the_supervised_objective_with_its_own_parameters(
        objective, reference, normalize, tmp_path):
    keras.utils.set_random_seed(0)
    model = models.PiModel(
        testing.tiny_backbone(num_classes=3),
        supervised_objective=objective(),
        supervised_normalize=normalize,
    )
    # The model's normalization, not the object's own (which is for `compile`).
    denominator = 4 if normalize == "batch" else 3
    expected = reference(LABELS, LOGITS).sum() / denominator
    np.testing.assert_allclose(float(model.supervised_loss(LABELS, LOGITS)), expected, rtol=RTOL)
    restored = type(model).from_config(model.get_config())
    np.testing.assert_allclose(
        float(restored.supervised_loss(LABELS, LOGITS)), expected, rtol=RTOL
    )
    x, _, y_semi = testing.tiny_data()
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(data.make_dataset(x, y_semi, batch_size=16), epochs=1, verbose=0)
    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    assert reloaded.supervised_objective.get_config() == model.supervised_objective.get_config()
    np.testing.assert_allclose(
        float(reloaded.supervised_loss(LABELS, LOGITS)),
        float(model.supervised_loss(LABELS, LOGITS)),
        rtol=RTOL,
    )


def test_a_loss_object_without_per_sample_values_is_refused():
    with pytest.raises(ValueError, match="supervised_objective=<.*mean_squared_error"):
        models.PiModel(
            testing.tiny_backbone(), supervised_objective=keras.losses.MeanSquaredError()
        )
    with pytest.raises(ValueError, match="label_smoothing=0.1"):
        models.PiModel(
            testing.tiny_backbone(),
            supervised_objective=losses.GeneralizedCrossentropy(),
            label_smoothing=0.1,
        )


def test_a_model_trains_on_gce():
    keras.utils.set_random_seed(0)
    x, _, y_semi = testing.tiny_data()
    model = models.PiModel(testing.tiny_backbone(), supervised_objective="gce")
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = model.fit(data.make_dataset(x, y_semi, batch_size=16), epochs=3, verbose=0)
    losses_by_epoch = history.history["supervised_loss"]
    assert losses_by_epoch[-1] < losses_by_epoch[0]


def test_label_smoothing_is_refused_for_the_robust_objectives():
    with pytest.raises(ValueError, match="label_smoothing=0.1"):
        models.PiModel(
            testing.tiny_backbone(), supervised_objective="sce", label_smoothing=0.1
        )
