"""Faults during training: a worker killed mid-epoch, a truncated checkpoint, a failed write.

The cluster test runs this file as a script on two workers of a
`MultiWorkerMirroredStrategy` (127.0.0.1, `multiworker_utils`), three times over the same
folder. Each worker trains Temporal Ensembling, then Mean Teacher, with
`keras.callbacks.BackupAndRestore` in a folder of its own (Keras' callback writes from every
worker, so a shared folder would have two writers). The first launch has worker 1 wait
after the first batch of the second epoch of Temporal Ensembling, and the test kills it
with SIGKILL there, then its peer, which waits in a collective (a cluster manager restarts
the cluster when a worker dies). The second launch resumes Temporal Ensembling and has
worker 1 killed alike in Mean Teacher; the third resumes Mean Teacher. The resumed models
(weights, optimizer slots, ensemble, teacher, epoch) equal an uninterrupted run's.

The data comes in order: a restarted process starts tf.data's sequence of reshuffles over, so
a shuffled epoch after the restart would not be the uninterrupted run's.
"""

import json
import os
import signal
import sys
import time

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from multiworker_utils import METHODS, build_model, model_state, start_workers, wait
from tfssl import data, testing
from tfssl.models._trainer import UnreadableWeightsError

GLOBAL_BATCH = 16
EPOCHS = 3
# (epoch, batch) after which worker 1 waits to be killed: mid-epoch, past the first backup.
KILL_AT = (1, 0)
# Seconds the three launches may take in all: about 15 s of CPU each, but the shared test
# machine can be 15x oversubscribed. The bound is against a hang.
WORKERS_TIMEOUT = 600


def build(method, strategy):
    """A compiled `method` model on the tiny data, from seed 0; returns `(model, dataset)`."""
    model = build_model(method, strategy, lambda: keras.optimizers.Adam(0.01))
    x, _, y_semi = testing.tiny_data()
    return model, data.make_dataset(x, y_semi, batch_size=GLOBAL_BATCH)


def train(method, strategy, callbacks=()):
    """Trains `method` for `EPOCHS`; returns the model and the epochs this run trained."""
    model, dataset = build(method, strategy)
    history = model.fit(dataset, epochs=EPOCHS, verbose=0, callbacks=list(callbacks))
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


def run_worker(output_dir, killed_method):
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    index = strategy.cluster_resolver.task_id
    for method in METHODS:
        result = os.path.join(output_dir, f"{method}{index}")
        if os.path.exists(f"{result}.npz"):
            continue  # trained to the end by an earlier launch
        backup = os.path.join(output_dir, "backup", method, f"worker{index}")
        callbacks = [keras.callbacks.BackupAndRestore(backup)]
        if method == killed_method and index == 1:
            callbacks.append(_WaitToBeKilled(os.path.join(output_dir, f"{method}_reached")))
        model, epochs = train(method, strategy, callbacks)
        with open(f"{result}.json", "w") as file:
            json.dump({"epochs": epochs}, file)
        np.savez(f"{result}.npz", **model_state(model))


# -------------------------------------------------------------------------- the tests
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


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory):
    """Three launches of the worker pair (see the module's docstring), and meanwhile the
    uninterrupted one-device runs; returns `(reached, results, reference)`."""
    output_dir = str(tmp_path_factory.mktemp("faults"))
    logs = [os.path.join(output_dir, f"log{index}.txt") for index in range(2)]
    deadline = time.monotonic() + WORKERS_TIMEOUT
    reference, reached = {}, {}
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    for killed_method in [*METHODS, "none"]:
        processes = start_workers(
            os.path.basename(__file__), [[output_dir, killed_method]] * 2, logs
        )
        if killed_method in METHODS:
            if killed_method not in reference:
                model, epochs = train(killed_method, strategy)
                reference[killed_method] = (model_state(model), epochs)
            marker = os.path.join(output_dir, f"{killed_method}_reached")
            reached[killed_method] = _kill_when_reached(processes, marker, deadline)
        else:
            returncodes = wait(processes, max(deadline - time.monotonic(), 1))
            log_tail = "".join(open(log).read()[-3000:] for log in logs)
            assert returncodes == [0, 0], f"exit codes {returncodes}:\n{log_tail}"
    results = {}
    for method in METHODS:
        for index in range(2):
            with open(os.path.join(output_dir, f"{method}{index}.json")) as file:
                epochs = json.load(file)["epochs"]
            state = dict(np.load(os.path.join(output_dir, f"{method}{index}.npz")))
            results[method, index] = (state, epochs)
    return reached, results, reference


@pytest.mark.parametrize("method", list(METHODS))
def test_a_worker_killed_mid_epoch_resumes_as_if_uninterrupted(killed_and_resumed, method):
    reached, results, reference = killed_and_resumed
    assert reached[method], "worker 1 never reached the batch where it is killed"
    reference_state, reference_epochs = reference[method]
    assert reference_epochs == list(range(EPOCHS))
    (first, first_epochs), (second, second_epochs) = results[method, 0], results[method, 1]
    # The restarted run trained only the epochs after the last backup (the first epoch's).
    assert first_epochs == second_epochs == list(range(KILL_AT[0], EPOCHS))
    assert sorted(first) == sorted(second) == sorted(reference_state)
    assert any("ensemble" in path or "teacher" in path for path in first)
    for path, value in first.items():
        np.testing.assert_array_equal(second[path], value, err_msg=path)
        # The all-reduce of two replicas sums in another order than one device: float32
        # rounding over three epochs, the bound of tests/test_multiworker.py.
        np.testing.assert_allclose(value, reference_state[path], rtol=0, atol=1e-5, err_msg=path)


# ------------------------------------------------------------ broken checkpoints
def _trained_te(epochs=1):
    model, dataset = build("te", tf.distribute.get_strategy())
    model.fit(dataset, epochs=epochs, verbose=0)
    return model, dataset


def _values(model):
    return [v.numpy() for v in model.weights + model.optimizer.variables]


def _assert_values_equal(values, model):
    """Bit for bit: one process runs the same ops on the same values, and a weights file
    keeps float32 values exactly."""
    for value, variable in zip(values, model.weights + model.optimizer.variables, strict=True):
        np.testing.assert_array_equal(variable.numpy(), value, err_msg=variable.path)


@pytest.mark.parametrize("fraction", [0.0, 0.5, 0.99])
def test_a_truncated_weights_file_is_refused_and_changes_nothing(tmp_path, fraction):
    model, _ = _trained_te()
    path = str(tmp_path / "model.weights.h5")
    model.save_weights(path)
    content = open(path, "rb").read()
    with open(path, "wb") as file:
        file.write(content[: int(len(content) * fraction)])
    values = _values(model)
    with pytest.raises(OSError, match="model.weights.h5") as error:
        model.load_weights(path)
    assert isinstance(error.value, UnreadableWeightsError)
    _assert_values_equal(values, model)


def test_a_half_written_file_is_refused_and_the_model_keeps_its_values(tmp_path, monkeypatch):
    """A file that Keras' own in-place write left when the disk filled up part-way."""
    model, dataset = _trained_te()
    path = str(tmp_path / "model.weights.h5")
    with monkeypatch.context() as patch, pytest.raises(OSError, match="No space left"):
        _fail_the_write_after(patch, 3)
        keras.Model.save_weights(model, path)
    model.fit(dataset, epochs=1, verbose=0)
    values = _values(model)
    with pytest.raises(ValueError, match="model.weights.h5") as error:
        model.load_weights(path)
    assert isinstance(error.value, UnreadableWeightsError)
    _assert_values_equal(values, model)


def _fail_the_write_after(monkeypatch, datasets):
    """Makes h5py fail (disk full) when it creates more than `datasets` datasets."""
    create_dataset = h5py.Group.create_dataset
    created = []

    def failing(self, *args, **kwargs):
        created.append(True)
        if len(created) > datasets:
            raise OSError(28, "No space left on device")
        return create_dataset(self, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", failing)


@pytest.mark.parametrize("datasets", [0, 3])
def test_a_failed_write_keeps_the_previous_file(tmp_path, monkeypatch, datasets):
    model, dataset = _trained_te()
    path = str(tmp_path / "model.weights.h5")
    model.save_weights(path)
    saved = _values(model)
    content = open(path, "rb").read()
    model.fit(dataset, epochs=1, verbose=0)
    with monkeypatch.context() as patch:
        _fail_the_write_after(patch, datasets)
        with pytest.raises(OSError, match="No space left"):
            model.save_weights(path)
    assert open(path, "rb").read() == content
    assert os.listdir(tmp_path) == ["model.weights.h5"]
    model.load_weights(path)
    _assert_values_equal(saved, model)


def _te_with_backup(backup, callbacks=()):
    """Temporal Ensembling for `EPOCHS` with `callbacks`, then
    `BackupAndRestore(double_checkpoint=True)`; returns the model and the epochs this run
    trained."""
    model, dataset = build("te", tf.distribute.get_strategy())
    backup_and_restore = keras.callbacks.BackupAndRestore(backup, double_checkpoint=True)
    history = model.fit(
        dataset, epochs=EPOCHS, verbose=0, callbacks=[*callbacks, backup_and_restore]
    )
    return model, history.epoch


class _FailTheBackupOf(keras.callbacks.Callback):
    """Before `BackupAndRestore` (later in the callbacks) writes the backup of epoch
    `epoch`, makes h5py fail part-way through (disk full)."""

    def __init__(self, monkeypatch, epoch):
        super().__init__()
        self.monkeypatch, self.epoch = monkeypatch, epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            _fail_the_write_after(self.monkeypatch, 3)


class _StopAt(keras.callbacks.Callback):
    """Stops the run at the start of epoch `epoch`, as a crash would."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("stopped")


@pytest.fixture(scope="module")
def uninterrupted_te(tmp_path_factory):
    model, epochs = _te_with_backup(str(tmp_path_factory.mktemp("uninterrupted")))
    assert epochs == list(range(EPOCHS))
    return [v.numpy() for v in model.weights + model.optimizer.variables]


def test_a_failed_backup_write_loses_nothing(tmp_path, monkeypatch, uninterrupted_te):
    """The backup of the second epoch fails part-way and stops the run; the rerun resumes
    from the first epoch's backup, whole, and ends as the uninterrupted run."""
    backup = str(tmp_path / "backup")
    with monkeypatch.context() as patch, pytest.raises(OSError, match="No space left"):
        _te_with_backup(backup, callbacks=[_FailTheBackupOf(patch, epoch=1)])
    resumed, epochs = _te_with_backup(backup)
    assert epochs == [1, 2]
    _assert_values_equal(uninterrupted_te, resumed)


def test_a_truncated_backup_falls_back_to_the_previous_one(tmp_path, uninterrupted_te):
    """A run stopped after two epochs' backups whose last backup is then truncated: the
    rerun refuses it, restores the one before (`double_checkpoint=True`) and ends as the
    uninterrupted run."""
    backup = str(tmp_path / "backup")
    with pytest.raises(RuntimeError, match="stopped"):
        _te_with_backup(backup, callbacks=[_StopAt(epoch=2)])
    latest = os.path.join(backup, "latest.weights.h5")
    content = open(latest, "rb").read()
    with open(latest, "wb") as file:
        file.write(content[: len(content) // 2])
    resumed, epochs = _te_with_backup(backup)
    assert epochs == [1, 2]
    _assert_values_equal(uninterrupted_te, resumed)


if __name__ == "__main__":
    run_worker(sys.argv[1], sys.argv[2])
