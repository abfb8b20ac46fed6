"""The refusal of non-finite training steps.

A step whose floating inputs, loss or gradients are not finite writes nothing: no weight,
optimizer slot, per-sample state or teacher. `check_finite` decides it on every replica
alike (one replica's bad batch refuses the step of all, so their copies stay identical);
`SemiSupervisedModel` then skips the step, puts back what the forward pass wrote
(`restore_values`) or fails with `raise_nonfinite_error`, which names the batch's `idx` and
the bad rows.
"""

import keras
import tensorflow as tf

from tfssl.models._batches import split_inputs
from tfssl.models._replicas import global_sum

# Values of each tensor that a non-finite step's error prints.
_REPORTED_VALUES = 1000


def check_finite(data, x, loss, gradients, optimizer):
    """Whether the step is finite on every replica, and what this replica saw.

    Args:
        data: The batch as `train_step` received it.
        x: Its inputs; only their floating tensors are checked.
        loss: This replica's share of the loss.
        gradients: The gradients of the loss (`None` or `IndexedSlices` too).
        optimizer: The model's optimizer. A `keras.optimizers.LossScaleOptimizer` handles
            non-finite gradients itself: only the inputs and the loss are checked then.

    Returns:
        `(finite, report)`: a scalar bool, the same on every replica, and the dict of this
        replica's findings that `raise_nonfinite_error` prints.
    """
    finite_rows = _finite_rows(x)
    finite_loss = tf.math.is_finite(loss)
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        # Overflowing gradients are routine under loss scaling: that optimizer skips
        # them and lowers its scale itself.
        finite_gradients = tf.constant(True)
    else:
        finite_gradients = _sums_finite(gradients)
    local = tf.reduce_all(finite_rows) & finite_loss & finite_gradients
    # One replica's bad batch refuses the step of all, so their copies stay identical.
    finite = tf.equal(global_sum(1.0 - tf.cast(local, tf.float32)), 0.0)
    report = {
        "idx": _batch_idx(data, finite_rows),
        "finite_rows": finite_rows,
        "finite_loss": finite_loss,
        "finite_gradients": finite_gradients,
    }
    return finite, report


def _finite_rows(x):
    """`(batch,)` booleans: whether every floating value of a row of `x` is finite."""
    # Eager steps (run_eagerly, train_on_batch) may hand numpy arrays: convert first.
    tensors = [tf.convert_to_tensor(t) for t in tf.nest.flatten(x)]
    flags = [
        tf.reduce_all(tf.reshape(tf.math.is_finite(t), [tf.shape(t)[0], -1]), axis=1)
        for t in tensors
        if t.dtype.is_floating
    ]
    if not flags:
        return tf.ones([tf.shape(tensors[0])[0]], tf.bool)
    return tf.reduce_all(tf.stack(flags), axis=0)


def _sums_finite(gradients):
    """Whether the sum of each gradient (`None` or `IndexedSlices` too) is finite.

    A sum is NaN or infinite when one of its terms is, so one fused reduction per variable
    finds any non-finite value without an elementwise temporary. A finite gradient whose
    sums overflow float32 (|sum| > 3.4e38) counts as non-finite too.
    """
    sums = [
        tf.reduce_sum(tf.cast(g.values if isinstance(g, tf.IndexedSlices) else g, tf.float32))
        for g in gradients
        if g is not None
    ]
    return tf.math.is_finite(tf.add_n(sums))


def _batch_idx(data, finite_rows):
    """The batch's `idx` as int64 when it has one (checked or not), else -1 per row."""
    inputs, _, _ = keras.utils.unpack_x_y_sample_weight(data)
    _, idx = split_inputs(inputs)
    if idx is None:
        return -tf.ones_like(finite_rows, tf.int64)
    return tf.cast(tf.reshape(idx, [-1]), tf.int64)


def restore_values(strategy, variables, values):
    """Assigns `values` (saved before the step) back to `variables` on every replica, in
    cross-replica context.

    Returns:
        The list of the assignments, to hold control dependencies on.
    """
    return [
        strategy.extended.update(v.value, _assign, args=(saved,), group=False)
        for v, saved in zip(variables, values)
    ]


def _assign(variable, value):
    return variable.assign(value)


def raise_nonfinite_error(strategy, report):
    """Fails the step with the global batch's `idx` (or row positions), the rows whose
    input is not finite and the replicas whose loss or gradients are not."""
    parts = strategy.experimental_local_results(report)
    finite_rows = tf.concat([part["finite_rows"] for part in parts], axis=0)
    idx = tf.concat([part["idx"] for part in parts], axis=0)
    positions = tf.range(tf.size(finite_rows, out_type=tf.int64), dtype=tf.int64)
    # Without `idx` in the batch, rows are named by their position in the global batch.
    idx = tf.where(idx < 0, positions, idx)
    bad_rows = tf.reshape(tf.where(tf.logical_not(finite_rows)), [-1])
    tf.debugging.Assert(
        False,
        [
            "Non-finite training step: nothing was updated (on_nonfinite='raise'; pass "
            "on_nonfinite='skip' to skip such steps). Batch idx (or row positions when the "
            "batch has no idx):",
            idx,
            "rows (positions in the batch) whose input is not finite:",
            bad_rows,
            "their idx:",
            tf.gather(idx, bad_rows),
            "finite loss per replica:",
            tf.stack([part["finite_loss"] for part in parts]),
            "finite gradients per replica:",
            tf.stack([part["finite_gradients"] for part in parts]),
        ],
        summarize=_REPORTED_VALUES,
    )
