"""Tests for the estimator scripts in estimators/: flags, data preparation and smoke runs.

The scripts read Fashion-MNIST through `--data-dir`; here that is a tiny synthetic copy in
the IDX format (300 training rows, 100 test rows), so nothing is downloaded and a run takes
seconds.
"""

import gzip
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import tensorflow as tf

ESTIMATORS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "estimators")
# The scripts import their neighbours (`_common`, `supervised`) as top-level modules, as
# `python estimators/<script>.py` does.
sys.path.insert(0, ESTIMATORS)

import _common  # noqa: E402
import demo  # noqa: E402
import mean_teacher  # noqa: E402
import pi_model  # noqa: E402
import supervised  # noqa: E402
import temporal_ensembling  # noqa: E402

SCRIPTS = ("supervised", "pi_model", "temporal_ensembling", "mean_teacher", "demo")
NUM_TRAIN, NUM_TEST = 300, 100
TINY = ["--epochs", "1", "--width", "0.125", "--batch-size", "50", "--num-labeled", "100"]


def _write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Synthetic Fashion-MNIST: balanced labels, images brighter for higher classes."""
    folder = tmp_path_factory.mktemp("fashion-mnist")
    rng = np.random.default_rng(0)
    for split, size in (("train", NUM_TRAIN), ("t10k", NUM_TEST)):
        labels = np.arange(size) % 10
        images = rng.integers(0, 100, (size, 28, 28)) + 15 * labels[:, None, None]
        _write_idx(folder / f"{split}-images-idx3-ubyte.gz", images)
        _write_idx(folder / f"{split}-labels-idx1-ubyte.gz", labels)
    return str(folder)


def _args(module, data_dir, *flags):
    return module.build_parser().parse_args(["--data-dir", data_dir, *TINY, *flags])


def test_help_from_the_command_line():
    # One real subprocess (TensorFlow's import makes each ~5 s): the demo imports the
    # others as `make demo` runs it, so their module-level imports are exercised too.
    result = subprocess.run(
        [sys.executable, os.path.join(ESTIMATORS, "demo.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "saved_models" in result.stdout and "--stop-gradient-target" in result.stdout


@pytest.mark.parametrize(
    "module, own_flag",
    [
        (supervised, "--labeled-per-batch"),
        (pi_model, "--stop-gradient-target"),
        (temporal_ensembling, "--alpha"),
        (mean_teacher, "--rampup-ema-decay"),
        (demo, "--max-unsupervised-weight"),
    ],
    ids=SCRIPTS,
)
def test_help(module, own_flag, capsys):
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--train-size", "--strategy", "--export", "--tensorboard", own_flag):
        assert flag in out
    assert module.__doc__.splitlines()[0] in out


def test_flags_reject_a_non_positive_count(capsys):
    with pytest.raises(SystemExit):
        temporal_ensembling.build_parser().parse_args(["--epochs", "0"])
    assert "Received: 0" in capsys.readouterr().err


def test_load_data_scales_images_and_keeps_balanced_labels(data_dir):
    args = _args(supervised, data_dir, "--train-size", "200", "--test-size", "30")
    (x, y_semi), (x_test, y_test) = _common.load_data(args)
    assert x.shape == (200, 28, 28, 1) and x.dtype == np.float32
    assert x_test.shape == (30, 28, 28, 1) and y_test.shape == (30,)
    assert 0.0 <= x.min() and x.max() <= 1.0
    raw = np.frombuffer(
        gzip.open(os.path.join(data_dir, "train-images-idx3-ubyte.gz")).read(), np.uint8, offset=16
    )
    np.testing.assert_allclose(x[0, :, :, 0], raw[:784].reshape(28, 28) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(np.bincount(y_semi[y_semi >= 0]), [10] * 10)
    assert np.sum(y_semi == -1) == 100


def test_load_data_rejects_a_train_size_beyond_the_data(data_dir):
    args = _args(supervised, data_dir, "--train-size", "301")
    with pytest.raises(ValueError, match="train_size=301"):
        _common.load_data(args)


@pytest.mark.parametrize(
    "flags, expected",
    [((), 6), (("--labeled-per-batch", "10"), 5), (("--batch-size", "70"), 5)],
)
def test_steps_per_epoch_matches_the_semi_supervised_pipeline(data_dir, flags, expected):
    # 300 rows with 100 labeled: ceil(300 / 50) = 6; with 10 labeled per batch the 200
    # unlabeled rows come 40 a batch, ceil(200 / 40) = 5; ceil(300 / 70) = 5.
    args = _args(supervised, data_dir, *flags)
    (_, y_semi), _ = _common.load_data(args)
    assert _common.steps_per_epoch(y_semi, args) == expected


@pytest.mark.parametrize(
    "module, flags",
    [
        (supervised, ("--labeled-per-batch", "10")),
        (pi_model, ("--stop-gradient-target", "--strategy", "mirrored")),
        (temporal_ensembling, ("--target", "paper", "--alpha", "0.5")),
        (mean_teacher, ("--labeled-per-batch", "10", "--ema-decay", "0.9")),
    ],
    ids=("supervised", "pi_model", "temporal_ensembling", "mean_teacher"),
)
def test_script_smoke_run(module, flags, data_dir, capsys):
    accuracy = module.run(_args(module, data_dir, *flags))
    assert 0.0 <= accuracy <= 1.0
    lines = [line for line in capsys.readouterr().out.splitlines() if "test accuracy:" in line]
    assert lines == [f"{module.__name__} test accuracy: {accuracy:.4f}"]


def test_supervised_run_has_no_ignored_shuffle_warning(data_dir, capsys):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        supervised.run(_args(supervised, data_dir))
    messages = [str(warning.message) for warning in caught]
    assert not [m for m in messages if "shuffle=True` was passed" in m], messages


def test_make_strategy_gives_one_mirrored_strategy_per_process():
    # A second MirroredStrategy over the same devices collides with the first one's
    # collectives (a second --strategy mirrored run in text_bench.py failed with
    # "Collective instance N expected type ..."): every run of a process shares one.
    args = _common.base_parser("").parse_args(["--strategy", "mirrored"])
    first = _common.make_strategy(args)
    assert isinstance(first, tf.distribute.MirroredStrategy)
    assert _common.make_strategy(args) is first
