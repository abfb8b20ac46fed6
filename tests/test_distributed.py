"""Models under MirroredStrategy on two logical CPU devices: Temporal Ensembling's ensemble,
and a text model on raw strings against one device (the comparison of every model with one
device on the tiny data is in test_contract.py).

The devices must be configured before TensorFlow initialises, so the runs happen in one
process of their own (mirrored_worker.py's functions), which prints its measurements as
JSON.
"""

import json

import numpy as np
import pytest

from tfssl import backbones, data, models

GLOBAL_BATCH = 16
TEXT_SPEC = "test_distributed:make_fasttext_te"
# One process for both tests: mirrored_worker configures the devices on import.
WORKER = (
    "import json, sys, mirrored_worker as w; "
    "json.dump({'ensemble': w.ensemble_with_zero_learning_rate(), "
    "'factories': w.compare_factories(sys.argv[1:])}, sys.stdout)"
)


def make_fasttext_te():
    """A fastText Temporal Ensembling model on raw strings, for mirrored_worker.py."""
    rng = np.random.default_rng(0)
    words = np.array(["好", "差", "质量", "物流", "good", "bad", "the", "phone", "很", "买"])
    x = np.array([" ".join(rng.choice(words, rng.integers(1, 6))) for _ in range(48)], object)
    y = np.array([int("差" in text or "bad" in text) for text in x])
    y_semi = data.mask_labels(y, 12, seed=0)
    # No dropout: the one-device run draws other random numbers than two replicas.
    backbone = backbones.fasttext(2, num_buckets=64, embedding_dim=4, dropout=0.0)
    model = models.TemporalEnsembling(backbone, num_samples=len(x), max_unsupervised_weight=5.0)
    return model, data.make_dataset(x, y_semi, batch_size=GLOBAL_BATCH, shuffle=True, seed=0)


@pytest.fixture(scope="module")
def mirrored_results(run_python):
    completed = run_python(["-c", WORKER, TEXT_SPEC])
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_ensemble_is_one_minus_alpha_to_the_k_times_logits_on_both_replicas(mirrored_results):
    results = mirrored_results["ensemble"]
    assert results["lr0_num_replicas"] == 2
    assert results["lr0_max_error"] < 1e-5
    assert results["lr0_copies_differ"] == 0.0


def test_text_model_on_two_replicas_equals_one_device(mirrored_results):
    result = mirrored_results["factories"][TEXT_SPEC]
    assert result["num_replicas"] == 2
    assert result["copies_differ"] == 0.0
    assert result["weights_differ"] < 1e-5
    assert result["loss_differ"] < 1e-5
