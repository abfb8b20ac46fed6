"""The seeds' TF1 code, run through `tf.compat.v1`, as the oracle for parity tests.

Not part of the library's API: each module reproduces a seed snippet as written, bugs
included, so that tests can compare tfssl's ports with it.
"""

from tfssl.reference.mixup import mixup
from tfssl.reference.seed_ops import f1_loss, ramp_up, run_in_graph
from tfssl.reference.temporal_ensemble import (
    TemporalEnsembleGraph,
    compute_loss,
    dense_network_fn,
    unsupervised_weight,
)

__all__ = [
    "TemporalEnsembleGraph",
    "compute_loss",
    "dense_network_fn",
    "f1_loss",
    "mixup",
    "ramp_up",
    "run_in_graph",
    "unsupervised_weight",
]
