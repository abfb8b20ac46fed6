"""Tests for the text estimator's `--strategy` flag.

Every method of `text_classification.METHODS` (distill, mutual and reloop included) runs
through the script with an export in tests/test_text.py; these run one under
`MirroredStrategy` on two logical CPUs and check which methods refuse a strategy.
"""

import json
import os
import subprocess
import sys

import pytest

from test_text_models import reviews

ESTIMATORS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "estimators")
sys.path.insert(0, ESTIMATORS)

import text_classification  # noqa: E402

# Logical devices must be configured before TensorFlow initialises, which this pytest
# process has done: the mirrored run has a process of its own. It reports the replicas of
# the strategy that the script made.
MIRRORED_RUN = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.path.insert(0, sys.argv[1])
import _common, text_classification
strategies = []
def make_strategy(args, make=_common.make_strategy):
    strategies.append(make(args))
    return strategies[-1]
_common.make_strategy = make_strategy
accuracy = text_classification.run(text_classification.build_parser().parse_args(sys.argv[2:]))
print(json.dumps({"accuracy": accuracy, "replicas": [s.num_replicas_in_sync for s in strategies]}))
"""


@pytest.fixture(scope="module")
def review_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reviews")
    x, y = reviews(300, seed=3)
    for name, label in (("pos.txt", 1), ("neg.txt", 0)):
        (folder / name).write_text("\n".join(x[y == label]) + "\n", encoding="utf-8")
    return str(folder)


def tiny_argv(method, review_dir):
    return [
        "--method", method, "--labels", "20", "--data-dir", review_dir, "--epochs", "1",
        "--batch-size", "32", "--labeled-per-batch", "8", "--supervised-batch-size", "8",
        "--num-buckets", "512", "--embedding-dim", "8", "--verbose", "0",
    ]  # fmt: skip


def test_te_under_mirrored_strategy_on_two_cpus(review_dir):
    argv = tiny_argv("te", review_dir) + ["--strategy", "mirrored"]
    completed = subprocess.run(
        [sys.executable, "-c", MIRRORED_RUN, ESTIMATORS, *argv],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-5000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["replicas"] == [2]
    assert 0.0 <= result["accuracy"] <= 1.0
    assert f"text_classification[te] test accuracy: {result['accuracy']:.4f}" in completed.stdout


@pytest.mark.parametrize(
    "method, strategy",
    [("supervised", "mirrored"), ("supervised", "multiworker"), ("distill", "multiworker"),
     ("reloop", "multiworker")],
)
def test_plain_keras_methods_refuse_a_strategy(method, strategy, review_dir):
    args = text_classification.build_parser().parse_args(tiny_argv(method, review_dir))
    # Set after parsing: parsing "multiworker" would configure this process's collectives.
    args.strategy = strategy
    with pytest.raises(ValueError, match=f"strategy='{strategy}'"):
        text_classification.run(args)
