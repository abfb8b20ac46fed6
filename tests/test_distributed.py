"""Temporal Ensembling's ensemble under MirroredStrategy on two logical CPU devices (the
comparison of every model with one device is in test_contract.py).

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
