"""The supervised objectives of the tfssl models, over the global batch.

`SemiSupervisedModel.supervised_loss` computes the supervised term on the labeled rows
with `objective_loss`, for one of `SUPERVISED_OBJECTIVES`: the softmax cross-entropy of
integer labels (`-1` unlabeled) or one of its noise-robust variants (generalized and
symmetric cross-entropy, `tfssl.losses`: by name with the papers' parameters, or as a loss
object with one's own), or for multi-hot labels (`-1` an unknown entry)
one sigmoid cross-entropy per class or a soft macro-F1. Each replica returns its share of the global
batch's value, so a run on several replicas equals one device. `tfssl.models.base`
re-exports the two tuples.
"""

import keras
import numpy as np
import tensorflow as tf

from tfssl import losses as losses_lib
from tfssl.data import UNLABELED
from tfssl.models._replicas import gather_from_replicas, global_mean

# Objectives of the supervised term. "crossentropy", "gce" and "sce" read integer labels
# `(batch,)` and a softmax; the others read multi-hot labels `(batch, num_classes)` and one
# sigmoid per class.
SUPERVISED_OBJECTIVES = ("crossentropy", "binary_crossentropy", "f1", "sigmoid_f1", "gce", "sce")
MULTILABEL_OBJECTIVES = ("binary_crossentropy", "f1", "sigmoid_f1")
# The noise-robust objectives, with the papers' parameters.
ROBUST_OBJECTIVES = {
    "gce": lambda labels, logits: losses_lib.generalized_crossentropy(
        labels, logits, q=0.7, normalize="none"
    ),
    "sce": lambda labels, logits: losses_lib.symmetric_crossentropy(
        labels, logits, alpha=0.1, beta=1.0, log_zero=-4.0, normalize="none"
    ),
}


def is_loss_object(objective):
    """Whether `objective` is a loss object of integer labels with a per-sample value, as
    `tfssl.losses.GeneralizedCrossentropy` and `tfssl.losses.SymmetricCrossentropy` are."""
    return isinstance(objective, keras.losses.Loss) and callable(
        getattr(objective, "per_sample", None)
    )


def objective_loss(labels, logits, objective, num_classes, label_smoothing=0.0, normalize="batch"):
    """The supervised term on the labeled rows, over the global batch: this replica's share.

    Args:
        labels: Integer labels `(batch,)`, or for the multi-label objectives multi-hot
            labels `(batch, num_classes)` (or flattened); `-1` marks unlabeled rows
            (entries).
        logits: `(batch, outputs)` logits.
        objective: One of `SUPERVISED_OBJECTIVES`: `"gce"` is
            `tfssl.losses.generalized_crossentropy` with `q = 0.7` (arXiv 1805.07836),
            `"sce"` is `tfssl.losses.symmetric_crossentropy` with `alpha = 0.1`,
            `beta = 1`, `A = -4` (arXiv 1908.06112), both on the labeled rows. Or a loss
            object of integer labels (`is_loss_object`), e.g.
            `tfssl.losses.GeneralizedCrossentropy(q=0.5)`: its `per_sample` values on the
            labeled rows, over the global batch as `normalize` says (the object's own
            `normalize` is for `compile`, one replica's batch).
        num_classes: Number of classes (the one-hot depth of smoothed cross-entropy).
        label_smoothing: Smoothing of the cross-entropy targets, with Keras' semantics.
            Defaults to `0.0`.
        normalize: `"batch"` divides by the global batch size, `"labeled"` by its number
            of labeled rows; the F1 objectives ignore it. Defaults to `"batch"`.

    Returns:
        A scalar: this replica's share of the global batch's supervised loss.
    """
    logits = tf.cast(logits, tf.float32)
    if is_loss_object(objective) or objective in ROBUST_OBJECTIVES:
        per_sample_loss = (
            objective.per_sample if is_loss_object(objective) else ROBUST_OBJECTIVES[objective]
        )
        per_sample = per_sample_loss(labels, logits)
        row_weights = tf.cast(labels != UNLABELED, tf.float32)
    elif objective == "crossentropy":
        labeled = labels != UNLABELED
        if label_smoothing:
            # Keras' own loss, so the smoothing is Keras' to the last detail.
            one_hot = tf.one_hot(tf.where(labeled, labels, 0), num_classes)
            per_sample = keras.losses.categorical_crossentropy(
                one_hot, logits, from_logits=True, label_smoothing=label_smoothing
            )
            per_sample = tf.where(labeled, per_sample, tf.zeros_like(per_sample))
        else:
            per_sample = losses_lib.masked_sparse_categorical_crossentropy(
                labels, logits, normalize="none"
            )
        row_weights = tf.cast(labeled, tf.float32)
    else:
        # unpack_batch flattens the labels: multi-hot rows are restored here.
        labels = tf.reshape(tf.cast(labels, tf.int32), tf.shape(logits))
        known = tf.cast(labels != UNLABELED, tf.float32)
        targets = tf.cast(tf.maximum(labels, 0), tf.float32) * known
        if objective != "binary_crossentropy":
            return _f1_loss(targets, known, logits, objective)
        # Keras' loss on a trailing axis of one: elementwise values, masked per entry.
        per_entry = keras.losses.binary_crossentropy(
            targets[..., None],
            logits[..., None],
            from_logits=True,
            label_smoothing=label_smoothing,
        )
        per_sample = tf.reduce_sum(per_entry * known, axis=-1) / tf.cast(
            tf.shape(logits)[-1], tf.float32
        )
        row_weights = tf.reduce_max(known, axis=-1)
    if normalize == "batch":
        return global_mean(per_sample)
    return global_mean(per_sample, weights=row_weights)


def _f1_loss(targets, known, logits, objective):
    """The soft macro-F1 loss of the global batch, this replica's share of it.

    F1 is a statistic of the whole batch, not a mean of per-sample values: the rows of
    every replica are all-gathered (the gather passes gradients back to each replica's
    rows) so that every replica computes the global batch's F1, and returns `1 / R` of
    it. Unknown entries are taken out of the counts: for `"f1"` their target and
    probability are 0, for `"sigmoid_f1"` their logit is `-inf` (sigmoid 0).
    """
    targets = gather_from_replicas(targets)
    if objective == "f1":
        probabilities = gather_from_replicas(tf.sigmoid(logits) * known)
        loss = losses_lib.f1_loss(targets, probabilities)
    else:
        masked_logits = tf.where(known > 0, logits, tf.fill(tf.shape(logits), -np.inf))
        loss = losses_lib.sigmoid_f1_loss(targets, gather_from_replicas(masked_logits))
    context = tf.distribute.get_replica_context()
    replicas = 1 if context is None else context.num_replicas_in_sync
    return loss / replicas
