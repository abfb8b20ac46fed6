"""Π-model.

Laine & Aila, "Temporal Ensembling for Semi-Supervised Learning", ICLR 2017, arXiv 1610.02242,
section 2.1 (seed 000: "Π-MODEL": two augmentations and dropout masks per sample, an MSE
between the two predictions, plus the cross-entropy of the labeled samples).
"""

import keras
import tensorflow as tf

from tfssl.models._checks import check_choice
from tfssl.models._replicas import global_consistency
from tfssl.models.base import SemiSupervisedModel

__all__ = ["PiModel"]


@keras.saving.register_keras_serializable(package="tfssl")
class PiModel(SemiSupervisedModel):
    """Π-model: consistency between two stochastic passes of the same network.

    A step evaluates the backbone twice on the same batch with `training=True`, so the
    augmentation, noise and dropout differ between the passes (`z` and `z~`), and minimises
    `masked CE(y, z) + w(epoch) * consistency(softmax(z), softmax(z~))`. Without any
    stochastic layer in the backbone the two passes agree and the consistency is 0.

    In the paper both passes are functions of the weights being trained and the gradient
    flows through both (`stop_gradient_target=False`, the default); with `True`, `z~` is a
    fixed target, as in the Π-model of Oliver et al. (2018) and of Mean Teacher's
    "Π (ours)".

    Example:

    ```python
    model = tfssl.models.PiModel(backbone, max_unsupervised_weight=100.0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), metrics=["accuracy"])
    ```

    Args:
        backbone: `keras.Model` mapping inputs to logits; should be stochastic in training.
        num_samples: Number of training rows. Optional: when given, batch indices are
            checked against it (and `num_labeled` may set the seed's weight factor).
        num_classes: Number of classes. Defaults to the backbone's output size.
        consistency: `"mse"` or `"kl"` between softmax outputs. Defaults to `"mse"`.
        stop_gradient_target: Hold the second pass fixed. Defaults to `False` (the paper).
        **kwargs: `num_labeled`, `max_unsupervised_weight`, `ramp_up_method`,
            `ramp_up_epochs`, `supervised_normalize` of `SemiSupervisedModel`, and
            `keras.Model` arguments.

    References:
        Laine & Aila, Temporal Ensembling for Semi-Supervised Learning, arXiv 1610.02242.
    """

    loss_terms = ("loss", "supervised_loss", "consistency_loss")

    def __init__(
        self,
        backbone,
        num_samples=None,
        num_classes=None,
        consistency="mse",
        stop_gradient_target=False,
        **kwargs,
    ):
        super().__init__(backbone, num_samples, num_classes, **kwargs)
        check_choice("consistency", consistency, ("mse", "kl"))
        self.consistency = consistency
        self.stop_gradient_target = bool(stop_gradient_target)

    def compute_losses(self, x, sample_idx, labels):
        logits = self.backbone(x, training=True)
        second_logits = self.backbone(x, training=True)
        if self.stop_gradient_target:
            second_logits = tf.stop_gradient(second_logits)
        supervised = self.supervised_loss(labels, logits)
        consistency = global_consistency(logits, second_logits, self.consistency)
        return self.combine_losses(supervised, consistency), {"logits": logits}

    def get_config(self):
        config = super().get_config()
        config.update(
            {"consistency": self.consistency, "stop_gradient_target": self.stop_gradient_target}
        )
        return config
