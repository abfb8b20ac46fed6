"""FreeMatch.

Wang, Chen, Heng, Hou, Fan, Wu, Wang, Savvides, Shinozaki, Raj, Schiele & Xie, "FreeMatch:
Self-adaptive Thresholding for Semi-supervised Learning", ICLR 2023, arXiv 2205.07246
(reference code: microsoft/Semi-supervised-learning, `freematch.py`). FixMatch whose
threshold follows the model's confidence, globally and per class, plus a fairness term
that keeps the strong view's predictions spread over the classes.
"""

import keras
import tensorflow as tf

from tfssl.models import policies
from tfssl.models._replicas import global_sum
from tfssl.models.fixmatch import FixMatch

__all__ = ["FreeMatch", "fairness_loss"]


def fairness_loss(strong_logits, weights, p_model, label_histogram):
    """FreeMatch's self-adaptive fairness term, this replica's share of it.

    Over the rows kept (`weights > 0`) of the global batch: the mean strong-view
    prediction `p_s` and the histogram `h_s` of its argmax. The term is minus the
    cross-entropy between `SumNorm(p_model / label_histogram)` and `SumNorm(p_s / h_s)`
    (a class without any argmax gets 0, as in USB's code); 0 when no row is kept. The
    gradient flows through `p_s` only.

    Formula:

    ```python
    target = normalize(p_model / label_histogram)
    mean_strong = normalize(mean(softmax(s)[kept], 0) / histogram(argmax(s)[kept]))
    loss = sum(target * log(mean_strong + 1e-12))
    ```

    Args:
        strong_logits: `(rows, C)` logits of the strong views.
        weights: `(rows,)` the policy's weights (rows with a weight above 0 count).
        p_model: `(C,)` the EMA of the mean guess.
        label_histogram: `(C,)` the EMA of the guesses' argmax histogram.

    Returns:
        A scalar: this replica's share (`1 / replicas`) of the global batch's term.
    """
    probabilities = tf.nn.softmax(tf.cast(strong_logits, tf.float32))
    kept = tf.cast(weights > 0, tf.float32)[:, None]
    count = global_sum(tf.reduce_sum(kept))
    num_classes = probabilities.shape[-1]
    mean_strong = tf.math.divide_no_nan(global_sum(tf.reduce_sum(probabilities * kept, 0)), count)
    predicted = tf.one_hot(tf.argmax(probabilities, axis=-1), num_classes)
    histogram = tf.math.divide_no_nan(global_sum(tf.reduce_sum(predicted * kept, 0)), count)

    def sum_normalize(values):
        return values / tf.reduce_sum(values, axis=-1, keepdims=True)

    target = sum_normalize(tf.math.divide_no_nan(p_model, label_histogram))
    mean_strong = sum_normalize(mean_strong * tf.math.divide_no_nan(1.0, histogram))
    loss = tf.reduce_sum(target * tf.math.log(mean_strong + 1e-12))
    context = tf.distribute.get_replica_context()
    replicas = 1 if context is None else context.num_replicas_in_sync
    return tf.where(count > 0, loss, 0.0) / replicas


@keras.saving.register_keras_serializable(package="tfssl")
class FreeMatch(FixMatch):
    """FreeMatch: FixMatch with self-adaptive thresholds and a fairness term.

    A step is FixMatch's (`tfssl.models.FixMatch`), with:

    1. the threshold of `tfssl.models.policies.FreeMatchThreshold`: the EMA of the
       unlabeled rows' mean confidence `tau`, times `MaxNorm(p_model)[c]` for the rows whose
       argmax is `c`, with `p_model` the EMA of the mean guess (all updated with the global
       batch before use);
    2. the self-adaptive fairness term `fairness_loss` on the kept rows' strong-view
       predictions, weighted by `fairness_weight` (the paper's `w_f`, 0.01 on CIFAR; its
       Table 9 uses 0 on ImageNet).

    Metrics: FixMatch's (`mask_rate`, `threshold`, the mean of the class thresholds) and
    `fairness_loss`.

    Formula:

    ```python
    q = stop_gradient(softmax(backbone(weak_augment(u))))
    tau, p_model, hist = EMAs of mean(max(q)), mean(q), histogram(argmax(q))
    mask = max(q) >= p_model[argmax(q)] / max(p_model) * tau
    loss = CE(y, backbone(weak_augment(x))) + lambda_u * mean(mask * CE(argmax(q),
           backbone(strong_augment(u)))) + fairness_weight * fairness_loss
    ```

    Example:

    ```python
    model = tfssl.models.FreeMatch(backbone, fairness_weight=0.01)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    model.fit(tfssl.data.make_dataset(x, y_semi, 400, shuffle=True, labeled_per_batch=50))
    ```

    Args:
        backbone: `keras.Model` mapping inputs to logits.
        fairness_weight: `w_f >= 0`. Defaults to `0.01` (the paper's on CIFAR).
        **kwargs: `pseudo_label_policy` (default `FreeMatchThreshold()`; with a
            `fairness_weight` above 0 it must be a `FreeMatchThreshold`), and every other
            argument of `FixMatch` but `threshold` (the threshold is learned).

    Raises:
        ValueError: For a negative `fairness_weight`, a `threshold`, or a fairness term
            without a `FreeMatchThreshold`.

    References:
        Wang et al., FreeMatch: Self-adaptive Thresholding for Semi-supervised Learning,
        arXiv 2205.07246.
    """

    loss_terms = FixMatch.loss_terms + ("fairness_loss",)
    default_threshold = None

    def __init__(self, backbone, fairness_weight=0.01, **kwargs):
        if isinstance(fairness_weight, bool) or not isinstance(fairness_weight, (int, float)) \
                or fairness_weight < 0:
            raise ValueError(
                f"`fairness_weight` must be >= 0. Received: fairness_weight={fairness_weight!r}"
            )
        super().__init__(backbone, **kwargs)
        if fairness_weight > 0 and not isinstance(
            self.pseudo_label_policy, policies.FreeMatchThreshold
        ):
            raise ValueError(
                "The fairness term reads a FreeMatchThreshold's statistics. Received: "
                f"pseudo_label_policy={self.pseudo_label_policy!r}"
            )
        self.fairness_weight = float(fairness_weight)

    def make_default_policy(self, threshold):
        """FreeMatch's rule: `FreeMatchThreshold()`; it takes no fixed threshold."""
        if threshold is not None:
            raise ValueError(
                "FreeMatch learns its threshold; pass `pseudo_label_policy` to change it. "
                f"Received: threshold={threshold!r}"
            )
        return policies.FreeMatchThreshold()

    def compute_losses(self, x, sample_idx, labels):
        terms, outputs = super().compute_losses(x, sample_idx, labels)
        fairness = tf.constant(0.0)
        if self.fairness_weight > 0:
            state = outputs["hook_updates"][self.pseudo_label_policy.name]
            fairness = fairness_loss(
                outputs["strong_logits"], outputs["unlabeled_weights"],
                state["p_model"], state["label_histogram"],
            )
        terms["loss"] += self.fairness_weight * fairness
        terms["fairness_loss"] = fairness
        return terms, outputs

    def get_config(self):
        return {**super().get_config(), "fairness_weight": self.fairness_weight}
