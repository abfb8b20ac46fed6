"""`compile(jit_compile=True)`: the step compiled with XLA, the batch checks outside it."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfssl import data, models, testing

NUM_CLASSES = 3


def make_te(jit_compile, seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    x, _, y_semi = testing.tiny_data()
    model = models.TemporalEnsembling(
        testing.tiny_backbone(), num_samples=len(x), max_unsupervised_weight=5.0,
        ramp_up_epochs=1, **kwargs,
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01), jit_compile=jit_compile,
                  metrics=["accuracy"])
    return model, x, y_semi


@pytest.mark.slow
def test_xla_step_trains_te_like_the_graph_step():
    """Same data, same initial weights: XLA reaches the same weights and ensemble as the
    default step (up to XLA's float reassociation)."""
    results = []
    for jit_compile in (False, True):
        model, x, y_semi = make_te(jit_compile)
        dataset = data.make_dataset(x, y_semi, batch_size=12, shuffle=True, seed=0)
        history = model.fit(dataset, epochs=1, verbose=0)
        results.append((model, history.history))
    (graph, graph_logs), (xla, xla_logs) = results
    assert xla._compiled_step is not None and graph._compiled_step is None
    # XLA reassociates float32 sums: after 4 Adam steps the weights (of order 1) differ by
    # a few float32 ulps (about 1e-7); atol 1e-5 leaves Adam's sqrt(v) division 100x room.
    for a, b in zip(graph.backbone.get_weights(), xla.backbone.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(graph.ensemble.numpy(), xla.ensemble.numpy(), rtol=1e-4,
                               atol=1e-5)
    assert np.count_nonzero(xla.ensemble_counts.numpy()) == len(x)
    for name in ("loss", "consistency_loss", "accuracy"):
        np.testing.assert_allclose(graph_logs[name], xla_logs[name], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_xla_bad_batches_raise_and_write_nothing():
    """Bad indices and labels fail before the compiled step (which would clamp or drop
    them); a non-finite step fails after it (XLA compiles an assertion to nothing)."""
    model, x, y_semi = make_te(True)
    model.train_on_batch({"x": x[:4], "idx": np.arange(4)}, y_semi[:4])
    weights = [w.copy() for w in model.backbone.get_weights()]
    ensemble = model.ensemble.numpy().copy()
    nan_rows = x[4:8].copy()
    nan_rows[1, 2] = np.nan
    bad_batches = [
        (x[4:8], [4, 48, 5, 6], y_semi[4:8], r"idx outside \[0, 48\)"),
        (x[4:8], [4, -1, 5, 6], y_semi[4:8], r"idx outside \[0, 48\)"),
        (x[4:8], [4, 4, 5, 6], y_semi[4:8], "duplicate idx"),
        (x[4:8], [4, 5, 6, 7], [0, 3, -1, -1], "labels must be <"),
        (nan_rows, [4, 5, 6, 7], y_semi[4:8], "Non-finite training step"),
    ]
    for features, idx, labels, message in bad_batches:
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            model.train_on_batch({"x": features, "idx": np.array(idx)}, np.array(labels))
    for before, after in zip(weights, model.backbone.get_weights()):
        np.testing.assert_array_equal(before, after)
    np.testing.assert_array_equal(ensemble, model.ensemble.numpy())
    assert int(model.optimizer.iterations.numpy()) == 1


@pytest.mark.slow
def test_xla_nonfinite_step_is_skipped():
    model, x, y_semi = make_te(True, on_nonfinite="skip")
    bad = x[:4].copy()
    bad[0, 0] = np.inf
    logs = model.train_on_batch({"x": bad, "idx": np.arange(4)}, y_semi[:4], return_dict=True)
    assert logs["skipped_steps"] == 1.0
    assert int(model.optimizer.iterations.numpy()) == 0
    np.testing.assert_array_equal(model.ensemble_counts.numpy(), 0.0)


@pytest.mark.slow
def test_xla_compile_config_survives_saving(tmp_path):
    model, _, _ = make_te(True)
    assert model.get_compile_config()["jit_compile"] is True
    path = str(tmp_path / "te.keras")
    model.save(path)
    assert keras.saving.load_model(path)._jit_step


def test_jit_compile_arguments_are_checked(monkeypatch):
    model, _, _ = make_te(False)
    with pytest.raises(ValueError, match="jit_compile='auto'"):
        model.compile(optimizer="adam", jit_compile="auto")
    # This process has one CPU device: a two-replica strategy is stood in for.
    two_replicas = type("TwoReplicas", (), {"num_replicas_in_sync": 2})()
    monkeypatch.setattr(
        models.TemporalEnsembling, "distribute_strategy", property(lambda self: two_replicas)
    )
    with pytest.raises(ValueError, match="has 2. Received: jit_compile=True"):
        model.compile(optimizer="adam", jit_compile=True)
