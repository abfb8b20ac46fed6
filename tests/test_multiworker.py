"""`fit` under MultiWorkerMirroredStrategy (two workers on 127.0.0.1), uninterrupted and
with a worker killed mid-epoch.

The pair of workers is this file run as a script, twice, each with its own `TF_CONFIG`: a
process joins one cluster only, and the cluster is configured before TensorFlow starts. The
pair is launched three times over the same folders (each worker has a folder of its own;
every process start costs TensorFlow's import, so one launch serves several checks).

The first launch trains Temporal Ensembling, Mean Teacher and a plain Keras model (through
the estimators' `_common.across_workers`, as supervised.py and self_training.py), saves
their weights and state, and runs supervised.py on a tiny budget. These are compared with
each other and with one process running a one-device `MirroredStrategy` with the same global
batch.

Then each launch trains Temporal Ensembling, then Mean Teacher, with
`keras.callbacks.BackupAndRestore` in the worker's folder (Keras' callback writes from every
worker, so a shared folder would have two writers). The first launch has worker 1 wait after
the first batch of the second epoch of Temporal Ensembling, and the test kills it with
SIGKILL there, then its peer, which waits in a collective (a cluster manager restarts the
cluster when a worker dies). The second launch resumes Temporal Ensembling and has worker 1
killed alike in Mean Teacher; the third resumes Mean Teacher. The resumed models (weights,
optimizer slots, ensemble, teacher, epoch) equal an uninterrupted run's. These runs get
their data in order: a restarted process starts tf.data's sequence of reshuffles over, so a
shuffled epoch after the restart would not be the uninterrupted run's.

Last, the third launch checks that Keras 3 alone still fails where `SemiSupervisedModel`
and `across_workers` work around keras-team/keras#20585 (the build from a per-replica batch,
and the reduction of scalar logs).
"""

import json
import os
import signal
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from multiworker_utils import METHODS, build_model, model_state, start_workers, wait
from test_scripts import data_dir  # noqa: F401 (the synthetic Fashion-MNIST fixture)
from tfssl import data, models, testing

ESTIMATORS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "estimators")
GLOBAL_BATCH = 16
SCRIPT_FLAGS = ["--strategy", "multiworker", "--backbone", "mlp", "--epochs", "1",
                "--train-size", "200", "--num-labeled", "100", "--test-size", "100",
                "--batch-size", "50"]
EPOCHS = 2
# The runs with backups: (epoch, batch) after which worker 1 waits to be killed, mid-epoch,
# past the first backup.
RESUMED_EPOCHS = 3
KILL_AT = (1, 0)
# Seconds the three launches may take in all: about 90 s of CPU with the test process's
# references, but the shared test machine can be 15x oversubscribed. The bound is against a hang (a worker waiting for
# a dead peer).
WORKERS_TIMEOUT = 900
# What Keras 3.15 raises without each part of the workaround.
KERAS_BUILD_ERROR = "PerReplica"
KERAS_LOGS_ERROR = "Invalid reduction dimension"


def train(method, strategy):
    """Trains `method` for `EPOCHS` on tiny data under `strategy`; returns the model."""
    model = build_model(method, strategy, lambda: keras.optimizers.SGD(0.1))
    x, _, y_semi = testing.tiny_data()
    dataset = data.make_dataset(x, y_semi, batch_size=GLOBAL_BATCH, shuffle=True, seed=0)
    history = model.fit(dataset, epochs=EPOCHS, verbose=0)
    return model, history.history


def train_plain(strategy):
    """A plain Keras model (the backbone, compiled as supervised.py does) trained for
    `EPOCHS` on the tiny data's true labels under `strategy`; returns the model."""
    sys.path.insert(0, ESTIMATORS)
    import _common

    keras.utils.set_random_seed(0)
    x, y, _ = testing.tiny_data()
    with strategy.scope():
        model = testing.tiny_backbone()
        model.compile(
            optimizer=keras.optimizers.SGD(0.1),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
    _common.across_workers(model)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH)
    history = model.fit(dataset, epochs=EPOCHS, verbose=0)
    return model, history.history


def train_with_backups(method, strategy, callbacks=()):
    """Trains `method` for `RESUMED_EPOCHS` with Adam on the data in order; returns the
    model and the epochs this run trained."""
    model = build_model(method, strategy, lambda: keras.optimizers.Adam(0.01))
    x, _, y_semi = testing.tiny_data()
    dataset = data.make_dataset(x, y_semi, batch_size=GLOBAL_BATCH)
    history = model.fit(dataset, epochs=RESUMED_EPOCHS, verbose=0, callbacks=list(callbacks))
    return model, history.epoch


# ------------------------------------------------------------------------ the worker
class _WaitToBeKilled(keras.callbacks.Callback):
    """Writes `marker` after the batch `KILL_AT`, then waits there to be killed."""

    def __init__(self, marker):
        super().__init__()
        self.marker = marker
        self.epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == KILL_AT:
            with open(self.marker, "w"):
                pass
            time.sleep(WORKERS_TIMEOUT)


def error_of(function):
    """The error `function()` raises, as text, or None."""
    try:
        function()
    except Exception as error:  # noqa: BLE001 - any failure is the measurement
        return f"{type(error).__name__}: {error}"[:2000]
    return None


def run_worker(output_dir, data_dir, killed_method):
    """One launch (see the module's docstring): the uninterrupted runs unless an earlier
    launch saved them, the runs with backups not yet saved, worker 1 waiting to be killed in
    `killed_method`'s, and last Keras' own failures."""
    # The estimators' flag, which creates the strategy before TensorFlow's first op.
    sys.path.insert(0, ESTIMATORS)
    import _common

    args = _common.base_parser(__doc__).parse_args(["--strategy", "multiworker"])
    strategy = _common.make_strategy(args)
    if not os.path.exists(os.path.join(output_dir, "report.json")):
        run_uninterrupted(output_dir, data_dir, args, strategy)
    index = strategy.cluster_resolver.task_id
    for method in METHODS:
        result = os.path.join(output_dir, f"{method}_resumed")
        if os.path.exists(f"{result}.npz"):
            continue  # trained to the end by an earlier launch
        callbacks = [keras.callbacks.BackupAndRestore(os.path.join(output_dir, "backup", method))]
        if method == killed_method and index == 1:
            callbacks.append(_WaitToBeKilled(os.path.join(output_dir, f"{method}_reached")))
        model, epochs = train_with_backups(method, strategy, callbacks)
        with open(f"{result}.json", "w") as file:
            json.dump({"epochs": epochs}, file)
        np.savez(f"{result}.npz", **model_state(model))
    run_keras_alone(output_dir, strategy)


def run_uninterrupted(output_dir, data_dir, args, strategy):
    """The uninterrupted runs and supervised.py; writes report.json last."""
    import _common
    import supervised

    report = {"num_replicas": strategy.num_replicas_in_sync}
    for method in METHODS:
        model, history = train(method, strategy)
        np.savez(os.path.join(output_dir, f"{method}.npz"), **model_state(model))
        report[f"{method}_loss"] = history["loss"]
        x, y, _ = testing.tiny_data()
        report[f"{method}_accuracy"] = _common.evaluate_and_export(method, model, (x, y), args)
    model, history = train_plain(strategy)
    np.savez(os.path.join(output_dir, "plain.npz"), **model_state(model))
    report["plain_loss"] = history["loss"]
    x, y, _ = testing.tiny_data()
    report["plain_accuracy"] = _common.evaluate_and_export("plain", model, (x, y), args)
    # self_training.py's rounds predict their pool across the workers.
    np.save(os.path.join(output_dir, "plain_predictions.npy"), model.predict(x, verbose=0))
    # A script end to end on a tiny budget (self_training.py builds its models alike: its
    # run passed too, but costs 18 s more of the workers' time).
    script_args = supervised.build_parser().parse_args(["--data-dir", data_dir, *SCRIPT_FLAGS])
    report["supervised_accuracy"] = supervised.run(script_args)
    with open(os.path.join(output_dir, "report.json"), "w") as file:
        json.dump(report, file)


def run_keras_alone(output_dir, strategy):
    """Keras' own build and logs across the workers, as errors in keras.json."""
    report = {}
    # Each part of the workaround undone. Both fail before any collective runs (eagerly,
    # or while tracing the step), on both workers alike, so the workers stay in step.
    own_build = models.SemiSupervisedModel._maybe_symbolic_build
    models.SemiSupervisedModel._maybe_symbolic_build = keras.Model._maybe_symbolic_build
    report["keras_build_error"] = error_of(lambda: train("te", strategy))
    models.SemiSupervisedModel._maybe_symbolic_build = own_build
    with strategy.scope():
        plain = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        plain.compile(optimizer="sgd", loss="mse")
    # Keras' own train step and logs (`train_on_batch` builds from its numpy batch).
    report["keras_logs_error"] = error_of(
        lambda: plain.train_on_batch(np.ones((4, 2), "float32"), np.ones((4, 1), "float32"))
    )
    with open(os.path.join(output_dir, "keras.json"), "w") as file:
        json.dump(report, file)


# -------------------------------------------------------------------------- the test
def _kill_when_reached(processes, marker, deadline):
    """Waits until worker 1 wrote `marker`, then kills it (SIGKILL) and its peer."""
    while not os.path.exists(marker):
        if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
            break
        time.sleep(0.2)
    reached = os.path.exists(marker)
    processes[1].send_signal(signal.SIGKILL)
    processes[1].wait()
    processes[0].send_signal(signal.SIGKILL)
    processes[0].wait()
    return reached


def _references(strategy):
    """The one-device runs of the uninterrupted workers' models."""
    reference = {}
    x, y, _ = testing.tiny_data()
    for method in METHODS:
        model, history = train(method, strategy)
        accuracy = model.evaluate(x, y, batch_size=100, verbose=0, return_dict=True)
        reference[method] = (model_state(model), history["loss"], accuracy["accuracy"])
    model, history = train_plain(strategy)
    accuracy = model.evaluate(x, y, batch_size=100, verbose=0, return_dict=True)
    reference["plain"] = (model_state(model), history["loss"], accuracy["accuracy"])
    reference["plain_predictions"] = model.predict(x, verbose=0)
    return reference


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory, data_dir):  # noqa: F811
    """The three launches of the worker pair (see the module's docstring), training the
    one-device references meanwhile; returns a dict of `reports`, `states`, `keras_errors`,
    `reference` (the uninterrupted runs), and `reached`, `resumed`, `resumed_reference`
    (the runs with backups)."""
    output_dirs = [str(tmp_path_factory.mktemp(f"worker{i}")) for i in range(2)]
    logs = [os.path.join(output_dir, "log.txt") for output_dir in output_dirs]
    deadline = time.monotonic() + WORKERS_TIMEOUT
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    reference, resumed_reference, reached = None, {}, {}
    for killed_method in [*METHODS, "none"]:
        processes = start_workers(
            os.path.basename(__file__),
            [[output_dir, data_dir, killed_method] for output_dir in output_dirs],
            logs,
        )
        try:
            if reference is None:
                reference = _references(strategy)
            if killed_method in METHODS:
                model, epochs = train_with_backups(killed_method, strategy)
                resumed_reference[killed_method] = (model_state(model), epochs)
                marker = os.path.join(output_dirs[1], f"{killed_method}_reached")
                reached[killed_method] = _kill_when_reached(processes, marker, deadline)
        except BaseException:
            wait(processes, 0)  # kills the workers
            raise
        returncodes = wait(processes, max(deadline - time.monotonic(), 1))
    for returncode, log in zip(returncodes, logs):
        with open(log) as file:
            assert returncode == 0, f"worker exit code {returncode}:\n{file.read()[-5000:]}"

    def load_json(output_dir, name):
        with open(os.path.join(output_dir, name)) as file:
            return json.load(file)

    states = [
        {method: dict(np.load(os.path.join(d, f"{method}.npz"))) for method in [*METHODS, "plain"]}
        for d in output_dirs
    ]
    for state, output_dir in zip(states, output_dirs):
        state["plain_predictions"] = np.load(os.path.join(output_dir, "plain_predictions.npy"))
    resumed = {
        (method, index): (
            dict(np.load(os.path.join(output_dir, f"{method}_resumed.npz"))),
            load_json(output_dir, f"{method}_resumed.json")["epochs"],
        )
        for method in METHODS
        for index, output_dir in enumerate(output_dirs)
    }
    return {
        "reports": [load_json(d, "report.json") for d in output_dirs],
        "states": states,
        "keras_errors": [load_json(d, "keras.json") for d in output_dirs],
        "reference": reference,
        "reached": reached,
        "resumed": resumed,
        "resumed_reference": resumed_reference,
    }


@pytest.mark.parametrize("method", list(METHODS))
def test_two_workers_equal_each_other_and_one_device(two_workers, method):
    reports, states, reference = (two_workers[k] for k in ("reports", "states", "reference"))
    assert [r["num_replicas"] for r in reports] == [2, 2]
    reference_state, reference_loss, reference_accuracy = reference[method]
    first, second = states[0][method], states[1][method]
    # Weights, optimizer slots and the state beside them (ensemble, teacher, epoch) ...
    assert sorted(first) == sorted(second) == sorted(reference_state)
    assert any("ensemble" in path or "teacher" in path for path in first)
    for path, value in first.items():
        # ... are the same on both workers ...
        np.testing.assert_array_equal(second[path], value, err_msg=path)
        # ... and equal one device with the same global batch.
        np.testing.assert_allclose(
            value, reference_state[path], rtol=0, atol=1e-5, err_msg=path
        )
    for report in reports:
        np.testing.assert_allclose(report[f"{method}_loss"], reference_loss, rtol=0, atol=1e-5)
        # `evaluate` across workers (the estimators' evaluate_and_export) sees the same model.
        assert report[f"{method}_accuracy"] == pytest.approx(reference_accuracy, abs=1e-6)


def test_a_plain_keras_model_through_across_workers_equals_one_device(two_workers):
    """supervised.py's and self_training.py's model: Keras' own train step, built from one
    local replica's batch, logs with a leading axis (`_common.across_workers`)."""
    reports, states, reference = (two_workers[k] for k in ("reports", "states", "reference"))
    reference_state, reference_loss, reference_accuracy = reference["plain"]
    first, second = states[0]["plain"], states[1]["plain"]
    assert sorted(first) == sorted(second) == sorted(reference_state)
    for path, value in first.items():
        np.testing.assert_array_equal(second[path], value, err_msg=path)
        np.testing.assert_allclose(value, reference_state[path], rtol=0, atol=1e-5, err_msg=path)
    for report in reports:
        np.testing.assert_allclose(report["plain_loss"], reference_loss, rtol=0, atol=1e-5)
        assert report["plain_accuracy"] == pytest.approx(reference_accuracy, abs=1e-6)
    # `predict` across the workers: every row once, in order, as on one device.
    for state in states:
        np.testing.assert_allclose(
            state["plain_predictions"], reference["plain_predictions"], rtol=0, atol=1e-5
        )


def test_supervised_script_runs_across_workers(two_workers):
    reports = two_workers["reports"]
    accuracies = [report["supervised_accuracy"] for report in reports]
    # `evaluate` runs across both workers: one global result, a share of the 100 test rows.
    assert accuracies[0] == accuracies[1]
    assert 0.0 <= accuracies[0] <= 1.0 and round(100 * accuracies[0], 6).is_integer()


def test_keras_alone_still_fails_across_workers(two_workers):
    for report in two_workers["keras_errors"]:
        assert report["keras_build_error"] and KERAS_BUILD_ERROR in report["keras_build_error"], (
            "Keras' own build from a per-replica batch now works under "
            "MultiWorkerMirroredStrategy: remove SemiSupervisedModel._maybe_symbolic_build "
            "and its copy in estimators/_common.across_workers. "
            f"Error: {report['keras_build_error']}"
        )
        assert report["keras_logs_error"] and KERAS_LOGS_ERROR in report["keras_logs_error"], (
            "Keras' own train step now reduces its scalar logs across workers: remove "
            "tfssl.models._replicas.distributable_logs and estimators/_common.across_workers. "
            f"Error: {report['keras_logs_error']}"
        )


@pytest.mark.parametrize("method", list(METHODS))
def test_a_worker_killed_mid_epoch_resumes_as_if_uninterrupted(two_workers, method):
    assert two_workers["reached"][method], "worker 1 never reached the batch where it is killed"
    reference_state, reference_epochs = two_workers["resumed_reference"][method]
    assert reference_epochs == list(range(RESUMED_EPOCHS))
    resumed = two_workers["resumed"]
    (first, first_epochs), (second, second_epochs) = resumed[method, 0], resumed[method, 1]
    # The restarted run trained only the epochs after the last backup (the first epoch's).
    assert first_epochs == second_epochs == list(range(KILL_AT[0], RESUMED_EPOCHS))
    assert sorted(first) == sorted(second) == sorted(reference_state)
    assert any("ensemble" in path or "teacher" in path for path in first)
    for path, value in first.items():
        np.testing.assert_array_equal(second[path], value, err_msg=path)
        # The all-reduce of two replicas sums in another order than one device: float32
        # rounding over three epochs, the bound of the uninterrupted runs above.
        np.testing.assert_allclose(value, reference_state[path], rtol=0, atol=1e-5, err_msg=path)


if __name__ == "__main__":
    run_worker(*sys.argv[1:])
