"""A training step with non-finite inputs, loss or gradients writes nothing
(`on_nonfinite="raise"` or `"skip"`), on one device (under MirroredStrategy: test_two_replicas.py with nonfinite_replicas.py)."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfssl import data, models, testing

BATCH = 16
# Sample indices of the bad batch, out of order so that positions cannot pass for them.
IDX = np.array([40, 3, 17, 29, 8, 45, 12, 33, 0, 21, 38, 6, 26, 14, 47, 19])
BAD_ROW = 5


def make_model(name, backbone=None, **kwargs):
    x, _, _ = testing.tiny_data()
    backbone = backbone or testing.tiny_backbone()
    if name == "te":
        return models.TemporalEnsembling(backbone, len(x), **kwargs)
    if name == "mt":
        return models.MeanTeacher(backbone, rampup_ema_decay=0.9, **kwargs)
    return models.PiModel(backbone, **kwargs)


def trained(name, backbone=None, **kwargs):
    """A model after one clean epoch: the ensemble, the teacher and the Adam slots are set."""
    keras.utils.set_random_seed(0)
    x, _, y_semi = testing.tiny_data()
    model = make_model(name, backbone, **kwargs)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), metrics=["accuracy"])
    model.fit(data.make_dataset(x, y_semi, batch_size=BATCH), epochs=1, verbose=0)
    return model


def state(model):
    """Every model and optimizer variable (weights, ensemble, teacher, slots, iterations)."""
    return {v.path: v.numpy().copy() for v in model.variables + model.optimizer.variables}


def assert_unchanged(before, model):
    after = state(model)
    changed = [path for path in before if not np.array_equal(before[path], after[path])]
    assert not changed, f"written by a refused step: {changed}"


def bad_input_batch():
    x, _, y_semi = testing.tiny_data()
    x_bad = x[IDX].copy()
    x_bad[BAD_ROW, 2] = np.nan
    return {"x": x_bad, "idx": IDX}, y_semi[IDX]


def reported(message, label):
    """The values the error prints after `label`, as ints."""
    found = re.search(re.escape(label) + r"[^\]]*\] \[([^\]]*)\]", message)
    assert found, f"{label!r} not in the error: {message}"
    return [int(value) for value in found.group(1).split()]


def exp_backbone():
    """exp() of a hidden layer: a large finite input overflows to inf inside the network."""
    return keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(8),
            keras.layers.Activation("exponential"),
            keras.layers.Dense(3),
        ]
    )


def saturating_backbone():
    """exp() of the input into a tanh layer: an overflowing row saturates the tanh, so the
    loss stays finite, but its kernel's gradient is `inf * 0 = NaN`."""
    return keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Activation("exponential"),
            keras.layers.Dense(8, activation="tanh"),
            keras.layers.Dense(3),
        ]
    )


# The Π-model has no state of its own beyond the backbone's and the optimizer's, which TE
# and MT have too: its cases run in `make test`, not in the fast suite.
MODEL_NAMES = ["te", "mt", pytest.param("pi", marks=pytest.mark.slow)]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_nan_input_row_raises_naming_idx_and_rows_and_writes_nothing(name):
    model = trained(name)
    inputs, labels = bad_input_batch()
    x, _, _ = testing.tiny_data()
    logs = model.train_on_batch({"x": x[IDX], "idx": IDX}, labels, return_dict=True)
    # The default policy raises, so there is nothing to count.
    assert model.on_nonfinite == "raise" and "skipped_steps" not in logs
    before = state(model)
    with pytest.raises(tf.errors.InvalidArgumentError, match="Non-finite training step") as err:
        model.train_on_batch(inputs, labels)
    message = err.value.message
    assert reported(message, "Batch idx") == list(IDX)
    assert reported(message, "whose input is not finite") == [BAD_ROW]
    assert reported(message, "their idx") == [IDX[BAD_ROW]]
    assert_unchanged(before, model)


@pytest.mark.parametrize("name", ["te", "mt"])
def test_inf_inside_the_network_raises_naming_idx_and_writes_nothing(name):
    model = trained(name, exp_backbone())
    before = state(model)
    inputs, labels = bad_input_batch()
    inputs["x"][BAD_ROW] = 0.0
    # A finite input whose first hidden unit overflows exp() to inf.
    kernel = model.backbone.layers[0].kernel.numpy()
    inputs["x"][BAD_ROW, 0] = 200.0 / max(abs(kernel[0, 0]), 1e-3) * np.sign(kernel[0, 0])
    with pytest.raises(tf.errors.InvalidArgumentError, match="Non-finite training step") as err:
        model.train_on_batch(inputs, labels)
    message = err.value.message
    assert reported(message, "Batch idx") == list(IDX)
    assert reported(message, "whose input is not finite") == []
    assert reported(message, "finite loss per replica") == [0]
    assert_unchanged(before, model)


def test_nonfinite_gradients_with_a_finite_loss_are_refused():
    model = trained("te", saturating_backbone())
    before = state(model)
    inputs, labels = bad_input_batch()
    inputs["x"][BAD_ROW] = 0.0
    inputs["x"][BAD_ROW, 0] = 200.0
    with pytest.raises(tf.errors.InvalidArgumentError, match="Non-finite training step") as err:
        model.train_on_batch(inputs, labels)
    assert reported(err.value.message, "finite loss per replica") == [1]
    assert reported(err.value.message, "finite gradients per replica") == [0]
    assert_unchanged(before, model)


def test_a_loss_scale_optimizer_handles_nonfinite_gradients_itself():
    keras.utils.set_random_seed(0)
    model = make_model("pi", saturating_backbone())
    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(1e-2))
    model.compile(optimizer=optimizer)
    inputs, labels = bad_input_batch()
    inputs["x"][BAD_ROW] = 0.0
    inputs["x"][BAD_ROW, 0] = 200.0
    model.train_on_batch(inputs, labels)
    # No error: the optimizer skipped its update and halved its scale, as loss scaling does.
    assert int(optimizer.iterations.numpy()) == 0
    assert float(optimizer.dynamic_scale.numpy()) == optimizer.initial_scale / 2


def test_batch_norm_statistics_written_by_the_forward_pass_are_restored():
    backbone = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(8),
            keras.layers.BatchNormalization(),
            keras.layers.Dense(3),
        ]
    )
    model = trained("pi", backbone)
    before = state(model)
    inputs, labels = bad_input_batch()
    with pytest.raises(tf.errors.InvalidArgumentError, match="Non-finite training step"):
        model.train_on_batch(inputs, labels)
    assert_unchanged(before, model)


def test_a_batch_without_idx_is_named_by_row_positions():
    model = trained("pi")
    inputs, labels = bad_input_batch()
    with pytest.raises(tf.errors.InvalidArgumentError) as err:
        model.train_on_batch(inputs["x"], labels)
    assert reported(err.value.message, "Batch idx") == list(range(BATCH))
    assert reported(err.value.message, "their idx") == [BAD_ROW]


def test_an_eager_step_on_numpy_arrays_is_checked_too():
    # run_eagerly hands train_step numpy arrays, not tensors.
    model = trained("te")
    model.compile(optimizer=model.optimizer, run_eagerly=True)
    before = state(model)
    with pytest.raises(tf.errors.InvalidArgumentError) as err:
        model.train_on_batch(*bad_input_batch())
    # Eager assertions print their data in another layout than graph ones.
    assert re.search(r"their idx\D*(\d+)", err.value.message).group(1) == str(IDX[BAD_ROW])
    assert_unchanged(before, model)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_skip_counts_the_step_writes_nothing_for_it_and_training_continues(name):
    model = trained(name, on_nonfinite="skip")
    inputs, labels = bad_input_batch()
    before = state(model)
    logs = model.train_on_batch(inputs, labels, return_dict=True)
    assert logs["skipped_steps"] == 1.0
    assert_unchanged(before, model)

    x, _, y_semi = testing.tiny_data()
    clean = data.make_dataset(x, y_semi, batch_size=BATCH)
    bad = tf.data.Dataset.from_tensors(bad_input_batch())
    iterations = int(model.optimizer.iterations.numpy())
    weights = [w.numpy().copy() for w in model.backbone.trainable_weights]
    history = model.fit(bad.concatenate(clean), epochs=2, verbose=0).history
    # A sum over each epoch, reset with the other metrics: the bad batch comes every epoch.
    assert history["skipped_steps"] == [1.0, 1.0]
    assert np.all(np.isfinite(history["loss"]))
    clean_steps = len(x) // BATCH
    assert int(model.optimizer.iterations.numpy()) == iterations + 2 * clean_steps
    for before_weight, weight in zip(weights, model.backbone.trainable_weights):
        assert np.all(np.isfinite(weight.numpy()))
        assert not np.array_equal(before_weight, weight.numpy())
    if name == "te":
        # Every row was seen once per clean epoch (3 epochs), never by the bad batch.
        np.testing.assert_array_equal(model.ensemble_counts.numpy(), np.full(len(x), 3.0))


def test_on_nonfinite_is_validated_and_kept_in_the_config():
    with pytest.raises(ValueError, match="Received: on_nonfinite='ignore'"):
        make_model("pi", on_nonfinite="ignore")
    model = make_model("te", on_nonfinite="skip")
    config = model.get_config()
    assert config["on_nonfinite"] == "skip"
    assert type(model).from_config(config).on_nonfinite == "skip"


def make_te_with_a_bad_row():
    """A skipping Temporal Ensembling on batches of which one holds a NaN."""
    x, _, y_semi = testing.tiny_data()
    x = x.copy()
    x[20, 1] = np.nan
    model = models.TemporalEnsembling(
        testing.tiny_backbone(), len(x), ramp_up_epochs=1, on_nonfinite="skip"
    )
    return model, data.make_dataset(x, y_semi, batch_size=BATCH)


def make_mt_with_a_bad_row():
    """A skipping Mean Teacher on batches of which one holds a NaN."""
    x, _, y_semi = testing.tiny_data()
    x = x.copy()
    x[20, 1] = np.nan
    model = models.MeanTeacher(
        testing.tiny_backbone(), ramp_up_epochs=1, rampup_ema_decay=0.9, on_nonfinite="skip"
    )
    return model, data.make_dataset(x, y_semi, batch_size=BATCH)


