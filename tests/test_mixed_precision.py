"""Every model under Keras' mixed precision policies: finite float32 loss terms, the loss-scale
optimizer's gradient path, and per-sample state kept in float32 unless asked otherwise."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from mirrored_utils import mirrored_equivalence
from test_estimators import _args, data_dir  # noqa: F401 (data_dir is a fixture)
import temporal_ensembling as te_script  # noqa: E402 (estimators/ is on sys.path now)
from tfssl import data, models, testing


@pytest.fixture
def dtype_policy():
    """Sets the global dtype policy for one test and restores the previous one after it."""
    previous = keras.mixed_precision.dtype_policy()
    yield keras.mixed_precision.set_dtype_policy
    keras.mixed_precision.set_dtype_policy(previous)


def _backbone(seed=0):
    return testing.tiny_backbone(dropout=0.2, seed=seed)


# Each model with its cheapest valid arguments; ramp_up_epochs=1 puts a non-zero weight on
# the unsupervised term from the first step, so its gradient runs through the scaled loss.
MODELS = {
    "PiModel": lambda n: models.PiModel(_backbone(), ramp_up_epochs=1),
    "TemporalEnsembling": lambda n: models.TemporalEnsembling(_backbone(), n, ramp_up_epochs=1),
    "MeanTeacher": lambda n: models.MeanTeacher(_backbone(), ramp_up_epochs=1),
    "AdversarialTraining": lambda n: models.AdversarialTraining(_backbone(), method="pgd"),
    "VAT": lambda n: models.VAT(_backbone(), xi=0.1, epsilon=1.0, entropy_minimization=True),
    "PseudoLabel": lambda n: models.PseudoLabel(_backbone(), ramp_up_epochs=1),
    "FixMatch": lambda n: models.FixMatch(
        _backbone(),
        weak_augment=keras.layers.Identity(),
        strong_augment=keras.layers.GaussianNoise(0.5),
        threshold=0.4,
    ),
    "MixupModel": lambda n: models.MixupModel(_backbone()),
    "MixMatch": lambda n: models.MixMatch(
        _backbone(), augment=keras.layers.GaussianNoise(0.1), ramp_up_epochs=1
    ),
    "Distiller": lambda n: models.Distiller(_backbone(), _backbone(seed=1)),
    "MutualLearning": lambda n: models.MutualLearning([_backbone(), _backbone(seed=1)]),
    "ReLoop": lambda n: models.ReLoop(_backbone(), num_samples=n, update_previous=True),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_trains_to_finite_float32_losses_under_mixed_float16(name, dtype_policy):
    dtype_policy("mixed_float16")
    keras.utils.set_random_seed(0)
    x, _, y_semi = testing.tiny_data()
    model = MODELS[name](len(x))
    # Eager steps keep twelve models within the time budget (tracing each costs seconds);
    # test_the_loss_scale_optimizer_step_equals_the_float32_step runs the compiled step.
    model.compile(optimizer=keras.optimizers.Adam(1e-2), run_eagerly=True)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.backbone.layers[-1].compute_dtype == "float16"
    before = [w.numpy() for w in model.backbone.trainable_weights]
    dataset = data.make_dataset(x, y_semi, batch_size=16, shuffle=True, seed=0, labeled_per_batch=4)
    history = model.fit(dataset, epochs=1, steps_per_epoch=2, verbose=0).history

    for term in model.loss_terms + model.schedule_terms:
        assert np.isfinite(history[term][-1]), (term, history[term])
    batch_x, batch_y = next(iter(dataset))
    terms, _ = model.compute_losses(batch_x["x"], batch_x["idx"], tf.cast(batch_y, tf.int32))
    assert {term: value.dtype for term, value in terms.items()} == dict.fromkeys(
        terms, tf.float32
    )
    # Both steps were applied (the loss-scale optimizer counts no step whose scaled
    # gradients overflowed) and moved the weights.
    assert int(model.optimizer.iterations.numpy()) == 2
    moved = [np.abs(w.numpy() - b).max() for b, w in zip(before, model.backbone.trainable_weights)]
    assert max(moved) > 0, moved
    assert all(w.dtype == "float32" for w in model.backbone.trainable_weights)
    assert all(v.dtype == "float32" for v in model.sample_state.weights)


def test_the_loss_scale_optimizer_step_equals_the_float32_step(dtype_policy):
    """One SGD step under mixed_float16 moves the weights as under float32 (the scaled loss's
    gradients are unscaled before they are applied), in the compiled train step."""
    x, _, y_semi = testing.tiny_data()
    dataset = data.make_dataset(x, y_semi, batch_size=len(x))
    keras.utils.set_random_seed(0)
    weights = testing.tiny_backbone().get_weights()
    deltas = {}
    for policy in ("float32", "mixed_float16"):
        dtype_policy(policy)
        backbone = testing.tiny_backbone()
        backbone.set_weights(weights)
        model = models.TemporalEnsembling(backbone, len(x), ramp_up_epochs=1)
        model.compile(optimizer=keras.optimizers.SGD(0.5))
        model.fit(dataset, epochs=1, verbose=0)
        deltas[policy] = [w.numpy() - w0 for w, w0 in zip(backbone.trainable_weights, weights)]
        assert int(model.optimizer.iterations.numpy()) == 1
    assert float(model.optimizer.dynamic_scale.numpy()) == 2.0**15  # no overflow, no halving
    for mixed, full in zip(deltas["mixed_float16"], deltas["float32"]):
        np.testing.assert_allclose(mixed, full, rtol=0.05, atol=2e-3)
    assert max(np.abs(d).max() for d in deltas["float32"]) > 0.01  # the step was not tiny


@pytest.mark.parametrize("state_dtype", ["bfloat16", "float16"])
def test_the_ensemble_stored_in_half_precision_is_the_float32_update_rounded(state_dtype):
    # Under the float32 policy, so that the logits are the same in every batch: half
    # precision matmuls may round a row differently with another batch size.
    alpha = 0.6
    x, _, y_semi = testing.tiny_data()
    model = models.TemporalEnsembling(
        testing.tiny_backbone(), len(x), alpha=alpha, state_dtype=state_dtype
    )
    assert model.ensemble.dtype == state_dtype
    assert model.ensemble_counts.dtype == "float32"  # bfloat16 counts would stop at 256
    assert model.ensemble.numpy().nbytes == len(x) * 3 * 2
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    model.fit(data.make_dataset(x, y_semi, batch_size=16, shuffle=True, seed=0), verbose=0)
    logits = tf.cast(model.backbone(x), tf.float32).numpy()
    expected = tf.cast((1 - alpha) * logits, state_dtype).numpy()
    np.testing.assert_array_equal(model.ensemble.numpy(), expected)
    np.testing.assert_array_equal(model.ensemble_counts.numpy(), np.ones(len(x)))
    rows = model.gather_sample_state(model.ensemble, tf.constant([0, 5]))
    assert rows.dtype == tf.float32

    config = model.get_config()
    assert config["state_dtype"] == state_dtype
    assert type(model).from_config(config).ensemble.dtype == state_dtype


def test_the_ensemble_is_float32_under_mixed_policies_unless_asked(dtype_policy):
    x, _, _ = testing.tiny_data()
    for policy in ("mixed_float16", "mixed_bfloat16"):
        dtype_policy(policy)
        model = models.TemporalEnsembling(testing.tiny_backbone(), len(x))
        assert (model.ensemble.dtype, model.ensemble_counts.dtype) == ("float32", "float32")
        reloop = models.ReLoop(testing.tiny_backbone(), num_samples=len(x))
        assert reloop.previous_predictions.dtype == "float32"


def test_reloop_stores_previous_predictions_in_half_precision():
    x, _, _ = testing.tiny_data()
    model = models.ReLoop(testing.tiny_backbone(), num_samples=len(x), state_dtype="float16")
    probabilities = np.random.default_rng(0).dirichlet(np.ones(3), size=len(x)).astype("float32")
    model.set_previous_predictions(probabilities)
    assert model.previous_predictions.dtype == "float16"
    assert model.has_previous.dtype == "float32"
    np.testing.assert_array_equal(
        model.previous_predictions.numpy(), probabilities.astype(np.float16)
    )
    assert model.get_config()["state_dtype"] == "float16"


@pytest.mark.parametrize(
    "build, message",
    [
        (
            lambda: models.TemporalEnsembling(testing.tiny_backbone(), 48, state_dtype="float64"),
            "state_dtype='float64'",
        ),
        (
            lambda: models.ReLoop(testing.tiny_backbone(), num_samples=48, state_dtype="half"),
            "state_dtype='half'",
        ),
        (
            lambda: models.ReLoop(
                testing.tiny_backbone(), previous_model=testing.tiny_backbone(),
                state_dtype="bfloat16",
            ),
            "state_dtype='bfloat16' with a previous_model",
        ),
        (
            lambda: models.TemporalEnsembling(testing.tiny_backbone(), 48).add_sample_state(
                "extra", (), dtype="int32"
            ),
            "dtype='int32'",
        ),
    ],
    ids=["te_float64", "reloop_unknown", "reloop_with_previous_model", "add_sample_state"],
)
def test_bad_state_dtypes_are_named(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def make_te_with_bfloat16_state():
    """A mirrored_equivalence factory: TE whose ensemble is stored in bfloat16."""
    x, _, y_semi = testing.tiny_data()
    model = models.TemporalEnsembling(
        testing.tiny_backbone(), len(x), ramp_up_epochs=1, state_dtype="bfloat16"
    )
    return model, data.make_dataset(x, y_semi, batch_size=16)


def test_half_precision_state_under_two_replicas_equals_one_device():
    # The replicas all-gather the update in float32: collectives refuse bfloat16.
    spec = "test_mixed_precision:make_te_with_bfloat16_state"
    result = mirrored_equivalence(spec)[spec]
    assert result["num_replicas"] == 2
    assert result["weights_differ"] < 1e-5 and result["loss_differ"] < 1e-5, result
    assert result["copies_differ"] == 0.0, result


def test_te_script_stores_the_ensemble_in_bfloat16(data_dir, monkeypatch):
    args = _args(te_script, data_dir, "--backbone", "mlp", "--state-dtype", "bfloat16")
    trained = []
    fit_and_export = te_script._common.fit_and_export

    def keep_model(name, model, *rest, **kwargs):
        trained.append(model)
        return fit_and_export(name, model, *rest, **kwargs)

    monkeypatch.setattr(te_script._common, "fit_and_export", keep_model)
    accuracy = te_script.run(args)
    (model,) = trained
    assert model.ensemble.dtype == "bfloat16"
    assert model.ensemble_counts.dtype == "float32"  # counts stay exact past 256
    # Every row was averaged in once per epoch, so the stored logits are not the zeros
    # they started from.
    np.testing.assert_array_equal(model.ensemble_counts.numpy(), args.epochs)
    assert np.all(np.abs(model.ensemble.numpy().astype("float32")).sum(axis=1) > 0)
    x_test, y_test = te_script._common.load_data(args)[1]
    predictions = model.predict(x_test, batch_size=args.batch_size, verbose=0).argmax(axis=1)
    # A ratio of counts, accumulated by Keras in float32 (unit roundoff 6e-8).
    np.testing.assert_allclose(accuracy, np.mean(predictions == y_test), atol=1e-6)
