"""Every model under Keras' mixed precision policies: finite float32 loss terms, the loss-scale
optimizer's gradient path, and per-sample state kept in float32 unless asked otherwise."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfssl import data, models, testing


@pytest.mark.slow
@pytest.mark.parametrize("name", [c.__name__ for c in testing.model_classes()])
def test_every_model_trains_to_finite_float32_losses_under_mixed_float16(name, dtype_policy):
    dtype_policy("mixed_float16")
    keras.utils.set_random_seed(0)
    x, _, y_semi = testing.tiny_data()
    model = testing.build_model(
        getattr(models, name), backbone=testing.tiny_backbone(dropout=0.2), num_samples=len(x)
    )
    # Eager steps keep every model within the time budget (tracing each costs seconds);
    # test_the_loss_scale_optimizer_step_equals_the_float32_step runs the compiled step.
    model.compile(optimizer=keras.optimizers.Adam(1e-2), run_eagerly=True)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.backbone.layers[-1].compute_dtype == "float16"
    before = [w.numpy() for w in model.backbone.trainable_weights]
    dataset = data.make_dataset(x, y_semi, batch_size=16, shuffle=True, seed=0, labeled_per_batch=4)
    # From epoch 100, where every ramp-up has ended: the unsupervised term's gradient runs
    # through the scaled loss with its full weight.
    history = model.fit(
        dataset, initial_epoch=100, epochs=101, steps_per_epoch=2, verbose=0
    ).history

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
        # float16 rounds each of the ~8 values on a gradient's path (input, two matmuls,
        # bias, tanh, logits and their gradients) by at most u / 2 = 2^-11 of its size: the
        # step differs by at most 8 such units of the tensor's largest step.
        np.testing.assert_allclose(mixed, full, rtol=0, atol=8 * 2.0**-11 * np.abs(full).max())
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
    expected = (1 - alpha) * logits.astype("float64")
    # The stored value is the float32 update rounded to nearest: within half a unit of the
    # storage dtype (2^-8 relative for bfloat16, 2^-11 for float16), plus the float32 matmul's
    # reassociation between 16-row and 48-row batches (a few float32 ulps, under 1e-6).
    half_unit = {"bfloat16": 2.0**-8, "float16": 2.0**-11}[state_dtype]
    stored = tf.cast(model.ensemble, tf.float64).numpy()
    np.testing.assert_allclose(stored, expected, rtol=half_unit + 1e-6, atol=0)
    # ... and it is the rounding, not a coarser value: it is not all equal to float32's.
    assert not np.allclose(stored, expected, rtol=1e-6, atol=0)
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
    """A two-replica factory (test_two_replicas.py): TE whose ensemble is stored in bfloat16."""
    x, _, y_semi = testing.tiny_data()
    model = models.TemporalEnsembling(
        testing.tiny_backbone(), len(x), ramp_up_epochs=1, state_dtype="bfloat16"
    )
    return model, data.make_dataset(x, y_semi, batch_size=16)


