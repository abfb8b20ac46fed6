"""Temporal Ensembling and Mean Teacher under MirroredStrategy on two logical CPU devices.

The devices must be configured before TensorFlow initialises, so the runs happen in a
process of their own (mirrored_worker.py), which prints its measurements as JSON.
"""

import json
import os
import subprocess
import sys

import pytest


@pytest.fixture(scope="module")
def mirrored_results():
    worker = os.path.join(os.path.dirname(__file__), "mirrored_worker.py")
    completed = subprocess.run(
        [sys.executable, worker], capture_output=True, text=True, timeout=600
    )
    assert completed.returncode == 0, completed.stderr[-5000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_ensemble_is_one_minus_alpha_to_the_k_times_logits_on_both_replicas(mirrored_results):
    assert mirrored_results["lr0_num_replicas"] == 2
    assert mirrored_results["lr0_max_error"] < 1e-5
    assert mirrored_results["lr0_copies_differ"] == 0.0


@pytest.mark.parametrize("method", ["te", "mt"])
def test_two_replicas_equal_one_device_with_the_same_global_batch(mirrored_results, method):
    # The per-sample ensemble (TE) or the teacher (MT) is identical on both replicas ...
    assert mirrored_results[f"{method}_copies_differ"] == 0.0
    # ... and the run matches one device: weights, state and reported losses.
    assert mirrored_results[f"{method}_weights_differ"] < 1e-5
    assert mirrored_results[f"{method}_loss_differ"] < 1e-5
