"""Early-learning regularization (ELR).

Liu, Niles-Weed, Razavian & Fernandez-Granda, "Early-Learning Regularization Prevents
Memorization of Noisy Labels", NeurIPS 2020, arXiv 2007.00151. Networks fit the clean labels
first and memorise the wrong ones later; ELR keeps a temporal ensemble of each row's
predictions (its per-sample state, read and written by `idx` as Temporal Ensembling's) and
penalises moving away from it, which holds the early, mostly right predictions.
"""

import keras
import tensorflow as tf

from tfssl import schedules
from tfssl.models._replicas import global_mean
from tfssl.models.base import SemiSupervisedModel

__all__ = ["ELR"]


@keras.saving.register_keras_serializable(package="tfssl")
class ELR(SemiSupervisedModel):
    """Early-learning regularization: cross-entropy plus `log(1 - <p, t>)` to a temporal
    ensemble `t` of each row's predictions.

    Every row keeps a target `t[idx]` (`model.targets`, zeros at start). A step:

    1. `p = clip(softmax(backbone(x, training=True)), 1e-4, 1 - 1e-4)`.
    2. The updated targets `t' = beta t[idx] + (1 - beta) p / sum(p)`, held fixed (no
       gradient); the authors' code uses them in this step's loss.
    3. `loss = supervised(y, z) + lambda(epoch) * mean(log(1 - sum(t' * p)))` over every
       row of the batch: the regulariser needs no label, so unlabeled rows (`-1`) add it
       too, and it pulls their predictions towards their own ensemble.
    4. After the optimizer step: `t[idx] <- t'` (scatter update by `idx`).

    The gradient of the regulariser on the logits is that of the cross-entropy to `t'`
    scaled by `p_k / (1 - <p, t'>)`: where the prediction agrees with the ensemble it
    counters the pull of a wrong label (the paper's section 4). `lambda` is the model's
    weight schedule, a constant 3 by default (the paper's for CIFAR-10); the supervised term
    is `supervised_objective` (cross-entropy by default). Under a `tf.distribute` strategy
    each replica all-gathers the batch's targets as Temporal Ensembling does, and the means
    are over the global batch.

    Formula:

    ```python
    p = clip(softmax(z), 1e-4, 1 - 1e-4)
    t_new = beta * t[idx] + (1 - beta) * p / sum(p, -1)      # no gradient
    loss = masked_ce(y, z) + lambda * mean(log(1 - sum(t_new * p, -1)))
    t[idx] = t_new                                            # after the step
    ```

    Example:

    ```python
    model = tfssl.models.ELR(backbone, num_samples=len(x), beta=0.7, weight_schedule=3.0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    model.fit(tfssl.data.make_dataset(x, y_noisy, batch_size=100, shuffle=True), epochs=30)
    ```

    Args:
        backbone: `keras.Model` mapping inputs to logits.
        num_samples: Number of training rows (the range of `idx`): the size of the
            targets.
        num_classes: Number of classes. Defaults to the backbone's output size.
        beta: Momentum of the targets, in `[0, 1)`. Defaults to `0.7` (the paper's for
            CIFAR-10).
        **kwargs: `weight_schedule` (`lambda`, default `ConstantWeight(3.0)`),
            `supervised_objective`, `supervised_normalize` of `SemiSupervisedModel`, and
            `keras.Model` arguments.

    Raises:
        ValueError: If `beta` is outside `[0, 1)`, or `num_samples` is missing.

    References:
        Liu, Niles-Weed, Razavian & Fernandez-Granda, Early-Learning Regularization
        Prevents Memorization of Noisy Labels, arXiv 2007.00151.
    """

    loss_terms = ("loss", "supervised_loss", "elr_loss")
    default_weight_schedule = schedules.ConstantWeight(3.0)
    # The clipping of the probabilities in the authors' code (`torch.clamp(p, 1e-4, 1 -
    # 1e-4)`), which keeps `log(1 - <p, t>)` finite.
    clip = 1e-4

    def __init__(self, backbone, num_samples=None, num_classes=None, beta=0.7, **kwargs):
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 <= beta < 1:
            raise ValueError(f"`beta` must be a number in [0, 1). Received: beta={beta!r}")
        super().__init__(backbone, num_samples, num_classes, **kwargs)
        self.beta = float(beta)
        self.targets = self.add_sample_state("targets", (self.num_classes,))

    def updated_targets(self, probabilities, previous):
        """`beta * previous + (1 - beta) * p / sum(p)`, without gradient."""
        probabilities = tf.stop_gradient(probabilities)
        normalized = probabilities / tf.reduce_sum(probabilities, axis=-1, keepdims=True)
        return self.beta * previous + (1.0 - self.beta) * normalized

    def compute_losses(self, x, sample_idx, labels):
        if sample_idx is None:
            raise ValueError("ELR trains on {'x': x, 'idx': idx} inputs.")
        logits = tf.cast(self.backbone(x, training=True), tf.float32)
        probabilities = tf.clip_by_value(tf.nn.softmax(logits), self.clip, 1.0 - self.clip)
        targets = self.updated_targets(
            probabilities, self.gather_sample_state(self.targets, sample_idx)
        )
        regularizer = tf.math.log(1.0 - tf.reduce_sum(targets * probabilities, axis=-1))
        terms = self.combine_losses(
            self.supervised_loss(labels, logits), global_mean(regularizer), "elr_loss"
        )
        return terms, {"logits": logits, "targets": targets}

    def update_state_after_step(self, sample_idx, outputs):
        self.scatter_sample_state([(self.targets, outputs["targets"])], sample_idx)
        super().update_state_after_step(sample_idx, outputs)

    def get_config(self):
        config = super().get_config()
        config["beta"] = self.beta
        return config
