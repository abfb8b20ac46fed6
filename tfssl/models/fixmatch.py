"""FixMatch.

Sohn et al., "FixMatch: Simplifying Semi-Supervised Learning with Consistency and Confidence",
NeurIPS 2020, arXiv 2001.07685 (TF1 reference: google-research/fixmatch). Beyond the seeds:
Pseudo-Label (seed 003) with the target taken from a weakly augmented view and learned on a
strongly augmented one.
"""

import keras
import tensorflow as tf

from tfssl import layers as layers_lib
from tfssl.data import UNLABELED
from tfssl.models._replicas import global_mean
from tfssl.models.base import SemiSupervisedModel
from tfssl.models.pseudo_label import check_threshold, pseudo_label_loss, pseudo_label_targets

__all__ = ["FixMatch"]

# The base class's weight schedule; FixMatch's weight is the constant `lambda_u`.
_SCHEDULE_ARGUMENTS = ("num_labeled", "max_unsupervised_weight", "ramp_up_method", "ramp_up_epochs")


@keras.saving.register_keras_serializable(package="tfssl")
class FixMatch(SemiSupervisedModel):
    """FixMatch: confident pseudo-labels of a weak view as targets for a strong view.

    A step, on a batch of labeled rows and unlabeled rows (`y == -1`):

    1. `weak = weak_augment(x)` for every row; `strong = strong_augment(u)` for the
       unlabeled rows `u`. One backbone pass over both (`training=True`), so batch-norm
       statistics cover both views, as in the reference code.
    2. For each unlabeled row, `q = softmax(backbone(weak))` held fixed (no gradient);
       its pseudo-label is `argmax q`, kept when `max q >= threshold`.
    3. `loss = CE(y, backbone(weak)) over the labeled rows
       + lambda_u * sum_u(mask * CE(argmax q, backbone(strong))) / n_unlabeled`.

    The paper's batches hold `mu = 7` times more unlabeled than labeled rows:
    `tfssl.data.make_dataset(x, y_semi, batch_size=64 * 8, labeled_per_batch=64)`. The
    supervised term is averaged over the labeled rows (`supervised_normalize="labeled"`,
    the paper's `1 / B`) and the unsupervised one over all unlabeled rows, kept or not (the
    paper's `1 / (mu B)`). The weight is the constant `lambda_u` (no ramp-up: the
    threshold keeps early, unconfident targets out).

    Augmentations: by default the weak view is `tfssl.layers.image_augmentation` (shifts
    of up to 2 pixels, no flip, no noise; pass your own for the flip of natural images) and
    the strong view `tfssl.layers.strong_augmentation()` (Keras' RandAugment drawn per
    image, then cutout), both for `(height, width, channels)` images in `[0, 1]`. On text
    there is no RandAugment: the strong view is heavier noise of the same input, such as
    `tfssl.text.WordDropout` (tokens of the raw strings dropped), and the weak view the
    identity (`keras.layers.Identity()`) or light word dropout; pass them as Keras layers
    (`weak_augment`, `strong_augment`). `estimators/text_classification.py --method
    fixmatch` uses the identity and `WordDropout(0.3)`.

    Metrics: `pseudo_label_loss`, `mask_rate` (share of the batch's unlabeled rows whose
    pseudo-label is kept) and `unsupervised_weight`; the accuracy of the pseudo-labels
    needs labels kept aside from training: `tfssl.models.PseudoLabelMonitor`.

    Not in this class: the paper also evaluates an EMA of the weights (decay 0.999) and
    trains with SGD, Nesterov momentum 0.9, lr 0.03 with cosine decay and weight decay
    5e-4; these belong to the optimizer and callbacks (`estimators/fixmatch.py --preset`).

    Formula:

    ```python
    q = stop_gradient(softmax(backbone(weak_augment(u))))
    mask = max(q, axis=-1) >= threshold
    pseudo_label_loss = sum(mask * CE(argmax(q, axis=-1), backbone(strong_augment(u)))) / n_u
    loss = mean(CE(y, backbone(weak_augment(x_labeled)))) + lambda_u * pseudo_label_loss
    mask_rate = sum(mask) / n_u
    ```

    Example:

    ```python
    model = tfssl.models.FixMatch(backbone, threshold=0.95, lambda_u=1.0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    model.fit(tfssl.data.make_dataset(x, y_semi, 400, shuffle=True, labeled_per_batch=50))
    ```

    Args:
        backbone: `keras.Model` mapping inputs to logits.
        weak_augment: Keras layer giving the weak view, active with `training=True`.
            Defaults to `None`: `image_augmentation(image_shape, max_translation=2,
            noise_stddev=0)` (needs an image backbone).
        strong_augment: Keras layer giving the strong view. Defaults to `None`:
            `tfssl.layers.strong_augmentation()`.
        threshold: Confidence a weak-view prediction needs to become a target, in `[0, 1]`.
            Defaults to `0.95` (the paper's).
        lambda_u: Weight of the unlabeled term, `>= 0`. Defaults to `1.0` (the paper's).
        num_samples: Number of training rows. Optional: when given, batch indices are
            checked against it.
        num_classes: Number of classes. Defaults to the backbone's output size.
        **kwargs: `supervised_normalize` (default `"labeled"`) and `keras.Model`
            arguments.

    Raises:
        ValueError: If `threshold` is outside `[0, 1]`, `lambda_u < 0`, an augmentation is
            not a Keras layer, a default augmentation is asked of a backbone that does not
            take images, or a ramp-up argument of the base class is given.

    References:
        Sohn et al., FixMatch: Simplifying Semi-Supervised Learning with Consistency and
        Confidence, arXiv 2001.07685.
    """

    loss_terms = ("loss", "supervised_loss", "pseudo_label_loss", "mask_rate")

    def __init__(
        self,
        backbone,
        weak_augment=None,
        strong_augment=None,
        threshold=0.95,
        lambda_u=1.0,
        num_samples=None,
        num_classes=None,
        **kwargs,
    ):
        for name in _SCHEDULE_ARGUMENTS:
            if name in kwargs:
                raise ValueError(
                    f"FixMatch weighs its unlabeled term by the constant `lambda_u`; it takes "
                    f"no `{name}`. Received: {name}={kwargs[name]!r}"
                )
        kwargs.setdefault("supervised_normalize", "labeled")
        check_threshold(threshold)
        if lambda_u < 0:
            raise ValueError(f"`lambda_u` must be >= 0. Received: lambda_u={lambda_u}")
        super().__init__(
            backbone, num_samples, num_classes, max_unsupervised_weight=lambda_u, **kwargs
        )
        if weak_augment is None:
            weak_augment = layers_lib.image_augmentation(
                _image_shape(backbone), max_translation=2, noise_stddev=0.0
            )
        if strong_augment is None:
            strong_augment = layers_lib.strong_augmentation()
        for name, layer in (("weak_augment", weak_augment), ("strong_augment", strong_augment)):
            if not isinstance(layer, keras.layers.Layer):
                raise ValueError(f"`{name}` must be a Keras layer. Received: {name}={layer!r}")
        self.weak_augment = weak_augment
        self.strong_augment = strong_augment
        self.threshold = float(threshold)
        self.lambda_u = float(lambda_u)

    def unsupervised_weight(self):
        """The constant `lambda_u`."""
        return tf.constant(self.lambda_u, tf.float32)

    def compute_losses(self, x, sample_idx, labels):
        unlabeled_rows = tf.where(labels == UNLABELED)[:, 0]
        weak = self.weak_augment(x, training=True)
        strong = self.strong_augment(tf.gather(x, unlabeled_rows), training=True)
        logits = self.backbone(tf.concat([weak, tf.cast(strong, weak.dtype)], 0), training=True)
        batch_size = tf.shape(labels)[0]
        weak_logits, strong_logits = logits[:batch_size], logits[batch_size:]
        targets, mask, _ = pseudo_label_targets(
            tf.gather(weak_logits, unlabeled_rows), self.threshold
        )
        supervised = self.supervised_loss(labels, weak_logits)
        unsupervised = pseudo_label_loss(strong_logits, targets, mask, tf.ones_like(mask))
        terms = self.combine_losses(supervised, unsupervised, "pseudo_label_loss")
        terms["mask_rate"] = global_mean(mask)
        return terms, {"logits": weak_logits}

    def get_config(self):
        config = super().get_config()
        for name in _SCHEDULE_ARGUMENTS:
            config.pop(name)
        config.update(
            {
                "weak_augment": keras.saving.serialize_keras_object(self.weak_augment),
                "strong_augment": keras.saving.serialize_keras_object(self.strong_augment),
                "threshold": self.threshold,
                "lambda_u": self.lambda_u,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for name in ("weak_augment", "strong_augment"):
            config[name] = keras.saving.deserialize_keras_object(config[name])
        return super().from_config(config)


def _image_shape(backbone):
    """`(height, width, channels)` of an image backbone, for the default augmentations."""
    input_shape = getattr(backbone, "input_shape", None)
    if not isinstance(input_shape, tuple) or len(input_shape) != 4:
        raise ValueError(
            "The default augmentations need a backbone taking (batch, height, width, "
            "channels) images; pass `weak_augment` and `strong_augment` for other inputs. "
            f"Received: backbone input shape {input_shape}"
        )
    return input_shape[1:]
