"""Sums, means and gathers over the replicas of a `tf.distribute` strategy.

A tfssl model normalises every loss by the *global* batch, so that a run on several
replicas equals one device with the same global batch: each replica returns its share,
`sum(local values) / global count`, and the gradients that `apply_gradients` sums over the
replicas are those of the global mean. On one device (or outside a strategy) every helper
here returns its input, with no collective op in the graph.

`tfssl.models.base` re-exports `global_mean` and `global_consistency`, the two that methods
use in their losses.
"""

import tensorflow as tf

from tfssl import losses as losses_lib

def global_sum(value):
    """Sums `value` over the replicas of the current strategy (identity on one device).

    Args:
        value: A tensor, this replica's part.

    Returns:
        The sum over the replicas in sync, the same on every replica.
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def gather_from_replicas(value):
    """Concatenates `value` along axis 0 over the replicas (identity on one device)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_gather(value, axis=0)


def global_mean(per_sample_values, weights=None):
    """Mean over the global batch, as seen from one replica.

    Returns this replica's share, `sum(local values) / global count`: the gradients that
    `apply_gradients` sums over replicas are then those of the mean over the global batch.

    Args:
        per_sample_values: Tensor of shape `(batch,)`.
        weights: Optional `(batch,)` weights; the denominator is then their global sum
            (0 gives a mean of 0, never NaN).

    Returns:
        A scalar tensor: this replica's share of the global mean.
    """
    per_sample_values = tf.cast(per_sample_values, tf.float32)
    if weights is None:
        weights = tf.ones_like(per_sample_values)
    weights = tf.cast(weights, tf.float32)
    total_weight = global_sum(tf.reduce_sum(weights))
    return tf.math.divide_no_nan(tf.reduce_sum(per_sample_values * weights), total_weight)


def global_consistency(logits, target_logits, kind):
    """Consistency between softmax outputs (`"mse"` or `"kl"`), averaged over the global
    batch. Gradients flow as the caller lets them (stop the target's where the method
    holds it fixed)."""
    per_sample = losses_lib.consistency_loss(logits, target_logits, kind=kind, reduction="none")
    return global_mean(per_sample)


def distributable_logs(logs):
    """`logs` as Keras can reduce them over the replicas of the current strategy.

    Across workers Keras 3 reduces every log with `strategy.reduce("MEAN", value, axis=0)`
    (keras-team/keras#20585), which refuses a scalar: there each log gets a leading axis of
    one, and the reduction gives back the mean over the replicas in the log's own shape.
    """
    strategy = tf.distribute.get_strategy()
    # Keras' own test for that reduction (keras.src.backend.tensorflow.trainer).
    across_workers = isinstance(
        strategy, tf.distribute.MultiWorkerMirroredStrategy
    ) and strategy.extended._in_multi_worker_mode()
    if not across_workers:
        return logs
    return {name: tf.expand_dims(value, 0) for name, value in logs.items()}
