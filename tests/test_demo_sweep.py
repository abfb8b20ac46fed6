"""The demo, the measurement runner and the sweep, on a tiny synthetic Fashion-MNIST."""

import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ESTIMATORS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "estimators")
sys.path.insert(0, ESTIMATORS)

import _common  # noqa: E402
import demo  # noqa: E402
import measure  # noqa: E402
import sweep  # noqa: E402
from tfssl import data  # noqa: E402

NUM_TRAIN, NUM_TEST = 500, 100


def _write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Synthetic Fashion-MNIST: balanced labels, images brighter for higher classes, and
    pixel (0, 0) holding the row number modulo 256 so that rows can be traced."""
    folder = tmp_path_factory.mktemp("fashion-mnist")
    rng = np.random.default_rng(0)
    for split, size in (("train", NUM_TRAIN), ("t10k", NUM_TEST)):
        labels = np.arange(size) % 10
        images = rng.integers(0, 100, (size, 28, 28)) + 15 * labels[:, None, None]
        images[:, 0, 0] = np.arange(size) % 256
        _write_idx(folder / f"{split}-images-idx3-ubyte.gz", images)
        _write_idx(folder / f"{split}-labels-idx1-ubyte.gz", labels)
    return str(folder)


def _demo_args(data_dir, *flags):
    tiny = ["--epochs", "1", "--batch-size", "50", "--num-labeled", "100", "--test-size", "50"]
    return demo.build_parser().parse_args(["--data-dir", data_dir, *tiny, *flags])


def test_load_data_permutes_rows_and_corrupts_labels(data_dir):
    plain = _demo_args(data_dir, "--train-size", "200", "--label-noise", "0")
    (x, y_clean), _ = _common.load_data(plain)
    np.testing.assert_allclose(x[:, 0, 0, 0] * 255, np.arange(200), atol=1e-3)

    noisy = _demo_args(data_dir, "--train-size", "200", "--permute-rows", "7")
    assert noisy.label_noise == 0.5  # the demo's default
    (x_perm, y_noisy), _ = _common.load_data(noisy)
    order = np.random.default_rng(7).permutation(NUM_TRAIN)[:200]
    np.testing.assert_allclose(x_perm[:, 0, 0, 0] * 255, order % 256, atol=1e-3)
    # Same labeled rows as a clean run on these rows, half of their labels changed.
    (_, y_perm_clean), _ = _common.load_data(
        _demo_args(data_dir, "--train-size", "200", "--permute-rows", "7", "--label-noise", "0")
    )
    np.testing.assert_array_equal(y_noisy == -1, y_perm_clean == -1)
    assert np.sum(y_noisy != y_perm_clean) == 50
    np.testing.assert_array_equal(
        y_noisy, data.noisy_labels(y_perm_clean, 0.5, seed=0, num_classes=10)
    )
    assert not np.array_equal(y_clean, y_perm_clean)


def test_label_noise_flag_is_a_rate(capsys):
    with pytest.raises(SystemExit):
        demo.build_parser().parse_args(["--label-noise", "1.5"])
    assert "Received: 1.5" in capsys.readouterr().err


def test_demo_prints_the_table_and_exports_the_pi_model(data_dir, tmp_path, capsys):
    export_dir = tmp_path / "fashion_pi"
    (export_dir / "1").mkdir(parents=True)
    args = _demo_args(
        data_dir, "--train-size", "300", "--labeled-per-batch", "25", "--permute-rows", "1",
        "--seed", "3", "--export", str(export_dir), "--verbose", "0",
    )
    accuracies = demo.run(args)
    assert set(accuracies) == {"supervised", "pi_model"}
    assert all(0.0 <= value <= 1.0 for value in accuracies.values())
    assert sorted(os.listdir(export_dir)) == ["1", "2"]  # only the Π-model is exported
    out = capsys.readouterr().out
    assert f"pi_model exported to {export_dir / '2'}" in out
    table = out[out.index("method"):].splitlines()
    assert table[1].split() == ["supervised", f"{accuracies['supervised']:.4f}"]
    assert table[2].split() == ["pi_model", f"{accuracies['pi_model']:.4f}"]
    assert "permutation 1" in out and "50% of the labels wrong" in out and "seed 3" in out


def test_demo_help_from_the_command_line():
    result = subprocess.run(
        [sys.executable, os.path.join(ESTIMATORS, "demo.py"), "--help"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    for flag in ("--data-dir", "--seed", "--export", "--verbose", "--permute-rows",
                 "--label-noise"):
        assert flag in result.stdout


def test_measure_validation_rows_come_from_the_end_of_the_training_rows(data_dir):
    (x, y_semi), (x_val, y_val) = measure.load_rows(
        data_dir, train_size=300, num_labeled=100, seed=0, validation_rows=100
    )
    np.testing.assert_allclose(x_val[:, 0, 0, 0] * 255, np.arange(400, 500) % 256, atol=1e-3)
    np.testing.assert_array_equal(y_val, np.arange(400, 500) % 10)
    assert len(x) == 300 and np.sum(y_semi >= 0) == 100
    with pytest.raises(ValueError, match="validation_rows=201"):
        measure.load_rows(data_dir, train_size=300, num_labeled=100, validation_rows=201)


def test_measure_cli_appends_one_record_per_run(data_dir, tmp_path):
    output = tmp_path / "runs.jsonl"
    measure.main([
        "--data-dir", data_dir, "--methods", "supervised", "mean_teacher", "--train-size", "300",
        "--num-labeled", "100", "--label-noise", "0.2", "--validation-rows", "100",
        "--set", "epochs=1", "--set", "units=16", "--set", "batch_size=50",
        "--set", "labeled_per_batch=25", "--output", str(output),
    ])
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["method"] for r in records] == ["supervised", "mean_teacher"]
    assert all(0.0 <= r["accuracy"] <= 1.0 and r["scored_on"] == "validation" for r in records)
    assert records[0]["params"] == {
        "epochs": 1, "units": [16], "batch_size": 50, "labeled_per_batch": 25
    }
    assert records[1]["label_noise"] == 0.2 and records[1]["train_size"] == 300
    with pytest.raises(SystemExit):
        measure.build_parser().parse_args(["--set", "no_such=1"])


def test_sweep_quick_writes_the_records_bench_renders(data_dir, tmp_path, capsys):
    output = tmp_path / "sweep.json"
    previous = {"method": "pi_model", "param": "max_weight", "value": 1.0, "seed": 9,
                "val_accuracy": 0.5, "protocol": "quick"}
    output.write_text(json.dumps([previous]))
    sweep.main(["--quick", "--methods", "pi_model", "--seeds", "0", "--data-dir", data_dir,
                "--output", str(output)])
    records = json.loads(output.read_text())
    assert records[0] == previous  # other records are kept
    fresh = records[1:]
    assert {(r["param"], r["value"]) for r in fresh} == {
        ("max_weight", 10.0), ("max_weight", 30.0), ("ramp_up_epochs", 1),
        ("ramp_up_epochs", 3), ("labeled_per_batch", 10), ("labeled_per_batch", 25),
    }
    for record in fresh:
        assert set(record) == {"method", "param", "value", "seed", "val_accuracy", "protocol"}
        assert record["method"] == "pi_model" and record["protocol"] == "quick"
        assert 0.0 <= record["val_accuracy"] <= 1.0
    # The default settings ran once: their records share one accuracy.
    by_setting = {(r["param"], r["value"]): r["val_accuracy"] for r in fresh}
    assert by_setting[("max_weight", 30.0)] == by_setting[("ramp_up_epochs", 1)]
    assert by_setting[("max_weight", 30.0)] == by_setting[("labeled_per_batch", 25)]
    assert capsys.readouterr().out.count("validation accuracy") == 4


def test_sweep_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        sweep.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--methods", "--seeds", "--quick", "--output"):
        assert flag in out
