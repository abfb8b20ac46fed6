"""Faults while checkpointing: a truncated checkpoint, a failed write, a failed backup.

(A worker killed mid-epoch under MultiWorkerMirroredStrategy is in test_multiworker.py,
whose worker processes serve all the cluster's checks.)
"""

import os

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from multiworker_utils import build_model
from tfssl import data, testing
from tfssl.models._trainer import UnreadableWeightsError

GLOBAL_BATCH = 16
EPOCHS = 3


def build(method, strategy):
    """A compiled `method` model on the tiny data, from seed 0; returns `(model, dataset)`."""
    model = build_model(method, strategy, lambda: keras.optimizers.Adam(0.01))
    x, _, y_semi = testing.tiny_data()
    return model, data.make_dataset(x, y_semi, batch_size=GLOBAL_BATCH)


# ------------------------------------------------------------ broken checkpoints
@pytest.fixture(scope="module")
def trained_te():
    """Temporal Ensembling after one epoch, `(model, dataset)`, shared by the tests of
    broken weights files (one model traced once): each test compares the model with its
    own values taken before the fault, so what an earlier test trained does not matter."""
    model, dataset = build("te", tf.distribute.get_strategy())
    model.fit(dataset, epochs=1, verbose=0)
    return model, dataset


def _values(model):
    return [v.numpy() for v in model.weights + model.optimizer.variables]


def _assert_values_equal(values, model):
    """Bit for bit: one process runs the same ops on the same values, and a weights file
    keeps float32 values exactly."""
    for value, variable in zip(values, model.weights + model.optimizer.variables, strict=True):
        np.testing.assert_array_equal(variable.numpy(), value, err_msg=variable.path)


@pytest.mark.parametrize("fraction", [0.0, 0.5, 0.99])
def test_a_truncated_weights_file_is_refused_and_changes_nothing(tmp_path, fraction, trained_te):
    model, _ = trained_te
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


def test_a_half_written_file_is_refused_and_the_model_keeps_its_values(
    tmp_path, monkeypatch, trained_te
):
    """A file that Keras' own in-place write left when the disk filled up part-way."""
    model, dataset = trained_te
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
def test_a_failed_write_keeps_the_previous_file(tmp_path, monkeypatch, datasets, trained_te):
    model, dataset = trained_te
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


@pytest.mark.slow
def test_a_failed_backup_write_loses_nothing(tmp_path, monkeypatch, uninterrupted_te):
    """The backup of the second epoch fails part-way and stops the run; the rerun resumes
    from the first epoch's backup, whole, and ends as the uninterrupted run."""
    backup = str(tmp_path / "backup")
    with monkeypatch.context() as patch, pytest.raises(OSError, match="No space left"):
        _te_with_backup(backup, callbacks=[_FailTheBackupOf(patch, epoch=1)])
    resumed, epochs = _te_with_backup(backup)
    assert epochs == [1, 2]
    _assert_values_equal(uninterrupted_te, resumed)


@pytest.mark.slow
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
