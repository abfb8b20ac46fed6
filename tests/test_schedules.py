import doctest
import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfssl import schedules
from tfssl.schedules import RampUp, RampUpDown, ema_decay, ramp_down, ramp_up


def np_ramp_up(e, m, method):
    if e == 0:
        return 0.0
    p = e / m
    return {
        "linear": p,
        "sigmoid": math.exp(-5.0 * (1.0 - p) ** 2),
        "cosine": 0.5 * (math.cos(math.pi * p) + 1.0),
        "cosine_rampup": 0.5 * (1.0 - math.cos(math.pi * p)),
    }[method]


def np_ramp_down(e, n, length):
    p = min(max((e - (n - length)) / length, 0.0), 1.0)
    return math.exp(-12.5 * p * p)


EPOCHS = [0, 1, 7, 40, 79, 80, 95]


@pytest.mark.parametrize("method", ["linear", "sigmoid", "cosine", "cosine_rampup"])
def test_ramp_up_matches_formula_eager_and_graph(method):
    graph_fn = tf.function(lambda e: ramp_up(e, 80, method))
    for e in EPOCHS:
        expected = np_ramp_up(e, 80, method)
        eager = ramp_up(e, 80, method)
        assert eager.dtype == tf.float32 and eager.shape == ()
        np.testing.assert_allclose(float(eager), expected, rtol=1e-6, atol=1e-7)
        for tensor in (tf.constant(e, tf.int32), tf.constant(float(e), tf.float32)):
            np.testing.assert_allclose(float(graph_fn(tensor)), expected, rtol=1e-6, atol=1e-7)


def test_ramp_up_zero_at_epoch_zero_in_graph_with_variable():
    epoch = tf.Variable(0, dtype=tf.int64)
    fn = tf.function(lambda: ramp_up(epoch, 10, "cosine"))
    assert float(fn()) == 0.0  # cosine alone would give 1.0 here
    epoch.assign(5)
    np.testing.assert_allclose(float(fn()), 0.5, atol=1e-6)


def test_ramp_up_seed_cosine_falls_and_cosine_rampup_rises():
    falling = [float(ramp_up(e, 10, "cosine")) for e in range(1, 11)]
    rising = [float(ramp_up(e, 10, "cosine_rampup")) for e in range(1, 11)]
    assert np.all(np.diff(falling) < 0) and falling[-1] == pytest.approx(0.0, abs=1e-6)
    assert np.all(np.diff(rising) > 0) and rising[-1] == pytest.approx(1.0)


def test_ramp_up_not_clamped_past_max_epoch():
    # Seed semantics: callers clamp.
    np.testing.assert_allclose(float(ramp_up(120, 80, "linear")), 1.5, rtol=1e-6)
    assert float(ramp_up(120, 80, "sigmoid")) < 1.0


def test_ramp_up_vector_input():
    out = ramp_up(tf.constant([0, 20, 40]), 40, "linear")
    np.testing.assert_allclose(out.numpy(), [0.0, 0.5, 1.0])


def test_ramp_up_errors():
    with pytest.raises(ValueError, match="method='exp'"):
        ramp_up(3, 80, "exp")
    with pytest.raises(ValueError, match="max_epoch=0"):
        ramp_up(3, 0, "linear")


@pytest.mark.parametrize("e", [0, 100, 249, 250, 251, 275, 299, 300, 400])
def test_ramp_down(e):
    np.testing.assert_allclose(float(ramp_down(e, 300, 50)), np_ramp_down(e, 300, 50), rtol=1e-6)


def test_ramp_down_graph_and_errors():
    fn = tf.function(lambda e: ramp_down(e, 300, 50))
    np.testing.assert_allclose(float(fn(tf.constant(290))), math.exp(-12.5 * 0.8**2), rtol=1e-6)
    with pytest.raises(ValueError, match="rampdown_epochs=0"):
        ramp_down(1, 300, 0)
    with pytest.raises(ValueError, match="num_epochs=-3"):
        ramp_down(1, -3, 50)


def test_ema_decay():
    fn = tf.function(lambda s: ema_decay(s, 1000))
    for step, expected in [(0, 0.99), (999, 0.99), (1000, 0.999), (5000, 0.999)]:
        assert float(ema_decay(step, 1000)) == pytest.approx(expected)
        assert float(fn(tf.constant(step, tf.int64))) == pytest.approx(expected)
    out = ema_decay(3, 5, rampup_decay=0.5, decay=0.7)
    assert out.dtype == tf.float32 and float(out) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="decay=1.5"):
        ema_decay(3, 5, decay=1.5)


def test_ramp_up_schedule_values():
    schedule = RampUp("sigmoid", rampup_epochs=4, steps_per_epoch=10, max_value=30.0)
    for step in [0, 1, 15, 39, 40, 41, 1000]:
        epoch = min(step / 10, 4)
        expected = 30.0 * np_ramp_up(epoch, 4, "sigmoid")
        np.testing.assert_allclose(float(schedule(step)), expected, rtol=1e-6, atol=1e-7)
    graph = tf.function(schedule)
    np.testing.assert_allclose(
        float(graph(tf.constant(15, tf.int64))), 30 * np_ramp_up(1.5, 4, "sigmoid"), rtol=1e-6
    )


def test_ramp_up_schedule_drives_optimizer_learning_rate():
    schedule = RampUp("linear", rampup_epochs=2, steps_per_epoch=5, max_value=0.1)
    optimizer = keras.optimizers.SGD(learning_rate=schedule)
    optimizer.iterations.assign(5)
    np.testing.assert_allclose(float(optimizer.learning_rate), 0.05, rtol=1e-6)


def test_ramp_up_schedule_config_and_serialization():
    schedule = RampUp("cosine_rampup", rampup_epochs=8, steps_per_epoch=np.int64(3), max_value=2)
    clone = RampUp.from_config(schedule.get_config())
    assert clone.get_config() == schedule.get_config()
    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(schedule)))
    restored = keras.saving.deserialize_keras_object(serialized)
    assert isinstance(restored, RampUp)
    assert float(restored(7)) == pytest.approx(2.0 * 0.5 * (1 - math.cos(math.pi * 7 / 24)))


def test_ramp_up_schedule_errors():
    with pytest.raises(ValueError, match="method='step'"):
        RampUp("step", steps_per_epoch=1)
    with pytest.raises(ValueError, match="steps_per_epoch=None"):
        RampUp("linear")
    with pytest.raises(ValueError, match="rampup_epochs=0"):
        RampUp("linear", rampup_epochs=0, steps_per_epoch=1)


def test_ramp_up_down_values():
    callback = RampUpDown(0.003, num_epochs=300)
    for e in [0, 40, 80, 200, 250, 275, 299]:
        up = math.exp(-5.0 * (1.0 - min(e, 80) / 80) ** 2)
        down = np_ramp_down(e, 300, 50)
        learning_rate, beta_1 = callback.values(e)
        assert learning_rate == pytest.approx(0.003 * up * down, rel=1e-6)
        assert beta_1 == pytest.approx(down * 0.9 + (1 - down) * 0.5, rel=1e-6)


def _simulate_adam(x, y, w, schedule, epsilon=1e-7, beta_2=0.999):
    """Full-batch Adam on mean squared error of a linear model, in numpy (float64)."""
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    for t, (lr, beta_1) in enumerate(schedule, start=1):
        grad = 2.0 / len(x) * x.T @ (x @ w - y)
        m = m + (grad - m) * (1 - beta_1)
        v = v + (grad**2 - v) * (1 - beta_2)
        alpha = lr * math.sqrt(1 - beta_2**t) / (1 - beta_1**t)
        w = w - m * alpha / (np.sqrt(v) + epsilon)
    return w, m


def test_ramp_up_down_really_changes_adam_update():
    x = np.array([[1.0, 2.0, 0.5], [0.3, -1.0, 2.0], [1.5, 0.2, -0.7], [-0.4, 0.9, 1.1]])
    y = np.array([[1.0], [-2.0], [0.5], [3.0]])
    w0 = np.array([[0.2], [-0.1], [0.3]])
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, use_bias=False)])
    model.set_weights([w0.astype("float32")])
    optimizer = keras.optimizers.Adam(0.5)
    model.compile(optimizer=optimizer, loss="mse")
    # An earlier fit traces the train function with beta_1 = 0.9 baked in.
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    model.set_weights([w0.astype("float32")])
    for variable in optimizer.variables:
        variable.assign(tf.zeros_like(variable))

    callback = RampUpDown(0.1, num_epochs=3, rampup_epochs=1, rampdown_epochs=2)
    history = model.fit(
        x, y, batch_size=4, epochs=3, shuffle=False, verbose=0, callbacks=[callback]
    )
    schedule = [callback.values(e) for e in range(3)]
    assert schedule[2][1] == pytest.approx(0.5176, abs=1e-4)  # beta_1 really moves

    w_expected, m_expected = _simulate_adam(x, y, w0, schedule)
    momentum = next(v for v in optimizer.variables if "momentum" in v.name)
    np.testing.assert_allclose(momentum.numpy(), m_expected, rtol=1e-4)
    np.testing.assert_allclose(model.get_weights()[0], w_expected, rtol=1e-4, atol=1e-5)
    # With beta_1 stuck at 0.9 the momentum would be measurably different.
    stuck = [(lr, 0.9) for lr, _ in schedule]
    _, m_stuck = _simulate_adam(x, y, w0, stuck)
    assert np.max(np.abs(m_stuck - m_expected)) > 1e-2 * np.max(np.abs(m_expected))

    np.testing.assert_allclose(history.history["learning_rate"], [s[0] for s in schedule])
    np.testing.assert_allclose(history.history["beta_1"], [s[1] for s in schedule])
    # The optimizer's config stays plain floats, so a saved model reloads cleanly.
    assert isinstance(optimizer.get_config()["beta_1"], float)


def test_ramp_up_down_errors_and_config():
    with pytest.raises(ValueError, match="final_beta_1=1.0"):
        RampUpDown(0.003, 300, final_beta_1=1.0)
    with pytest.raises(ValueError, match="num_epochs=0"):
        RampUpDown(0.003, 0)
    callback = RampUpDown(0.003, 300, rampup_epochs=10, rampdown_epochs=20, beta_1=0.8)
    assert RampUpDown(**callback.get_config()).get_config() == callback.get_config()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(callback))
    assert restored.get_config() == callback.get_config()

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="optimizer=SGD"):
        model.fit(np.ones((2, 2)), np.ones((2, 1)), epochs=1, verbose=0, callbacks=[callback])


def test_docstring_examples():
    result = doctest.testmod(schedules, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
