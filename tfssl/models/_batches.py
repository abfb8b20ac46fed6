"""Splitting and checking the batches of tfssl models.

A batch is `({"x": x, "idx": idx}, y)`, `y == -1` on unlabeled rows, or `(x, y)` for
evaluation. Its labels and indices are checked in the graph before anything is written: on
GPU and under XLA a gather clamps an out-of-range index and a scatter drops it silently, so
an unchecked index would corrupt per-sample state without an error.
"""

import tensorflow as tf

from tfssl.data import UNLABELED
from tfssl.models._replicas import gather_from_replicas


def split_inputs(inputs):
    """`{"x", "idx"}` dict or plain `x` -> `(x, idx or None)`."""
    if isinstance(inputs, dict):
        if "x" not in inputs:
            raise ValueError(f"Input dicts need an 'x' key. Received keys: {sorted(inputs)}")
        return inputs["x"], inputs.get("idx")
    return inputs, None


def check_batch(labels, sample_idx, num_classes, num_samples):
    """Checks a batch's labels and indices in the graph.

    The returned tensors depend on assertions that fail, naming the bad values, for labels
    outside `[-1, num_classes)` and, when `num_samples` is given, indices outside
    `[0, num_samples)` or repeated in the global batch.

    Args:
        labels: int32 labels, `-1` for unlabeled rows (entries).
        sample_idx: This replica's `(batch,)` indices, or `None`.
        num_classes: Number of classes, the bound of the labels.
        num_samples: The range of the indices, or `None` to pass them on unchecked.

    Returns:
        `(labels, sample_idx)`, the same values.
    """
    checks = [
        tf.debugging.assert_greater_equal(
            labels,
            UNLABELED,
            message="labels must be >= -1 (-1 = unlabeled); labels:",
            summarize=64,
        ),
        tf.debugging.assert_less(
            labels,
            num_classes,
            message=f"labels must be < num_classes={num_classes}; labels:",
            summarize=64,
        ),
    ]
    if sample_idx is not None and num_samples is not None:
        local_idx = tf.cast(sample_idx, tf.int64)
        range_checks = [
            tf.debugging.assert_greater_equal(
                local_idx,
                tf.constant(0, tf.int64),
                message=f"idx outside [0, {num_samples}); idx:",
                summarize=64,
            ),
            tf.debugging.assert_less(
                local_idx,
                tf.constant(num_samples, tf.int64),
                message=f"idx outside [0, {num_samples}); idx:",
                summarize=64,
            ),
        ]
        # In range, the indices fit int32, which all_gather needs (int64 fails under
        # MultiWorkerMirroredStrategy).
        with tf.control_dependencies(range_checks):
            global_idx = gather_from_replicas(tf.cast(local_idx, tf.int32))
        checks += range_checks + [
            tf.debugging.Assert(
                tf.equal(tf.size(tf.unique(global_idx).y), tf.size(global_idx)),
                [
                    "duplicate idx in one global batch (per-sample state would be "
                    "updated twice); idx:",
                    global_idx,
                ],
                summarize=64,
            ),
        ]
    with tf.control_dependencies(checks):
        labels = tf.identity(labels)
        if sample_idx is not None:
            sample_idx = tf.identity(sample_idx)
    return labels, sample_idx
