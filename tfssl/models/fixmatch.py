"""FixMatch.

Sohn et al., "FixMatch: Simplifying Semi-Supervised Learning with Consistency and Confidence",
NeurIPS 2020, arXiv 2001.07685 (TF1 reference: google-research/fixmatch). Beyond the seeds:
Pseudo-Label (seed 003) with the target taken from a weakly augmented view and learned on a
strongly augmented one.
"""

import keras
import tensorflow as tf

from tfssl import layers as layers_lib
from tfssl import schedules
from tfssl.data import UNLABELED
from tfssl.models import policies
from tfssl.models._checks import check_shorthand
from tfssl.models._replicas import global_mean
from tfssl.models.base import SemiSupervisedModel

__all__ = ["FixMatch"]


@keras.saving.register_keras_serializable(package="tfssl")
class FixMatch(SemiSupervisedModel):
    """FixMatch: confident pseudo-labels of a weak view as targets for a strong view.

    A step, on a batch of labeled rows and unlabeled rows (`y == -1`):

    1. `weak = weak_augment(x)` for every row; `strong = strong_augment(u)` for the
       unlabeled rows `u`. One backbone pass over both (`training=True`), so batch-norm
       statistics cover both views, as in the reference code.
    2. For each unlabeled row, `q = softmax(backbone(weak))` held fixed (no gradient),
       aligned when `distribution_alignment` is given; its pseudo-label is `argmax q`, with
       the weight the `pseudo_label_policy` gives it (FixMatch: 1 when `max q >= threshold`,
       else 0).
    3. `loss = CE(y, backbone(weak)) over the labeled rows
       + lambda_u * sum_u(mask * CE(argmax q, backbone(strong))) / n_unlabeled`.

    The adaptive-threshold methods (`FlexMatch`, ...) are this step with another policy.

    The paper's batches hold `mu = 7` times more unlabeled than labeled rows:
    `tfssl.data.make_dataset(x, y_semi, batch_size=64 * 8, labeled_per_batch=64)`. The
    supervised term is averaged over the labeled rows (`supervised_normalize="labeled"`,
    the paper's `1 / B`) and the unsupervised one over all unlabeled rows, kept or not (the
    paper's `1 / (mu B)`). The weight is the constant `lambda_u`
    (`tfssl.schedules.ConstantWeight`; no ramp-up: the threshold keeps early, unconfident
    targets out); any `weight_schedule` may replace it.

    Augmentations: by default the weak view is `tfssl.layers.image_augmentation` (shifts
    of up to 2 pixels, no flip, no noise; pass your own for the flip of natural images) and
    the strong view `tfssl.layers.strong_augmentation()` (Keras' RandAugment drawn per
    image, then cutout), both for `(height, width, channels)` images in `[0, 1]`. On text
    there is no RandAugment: the strong view is heavier noise of the same input, such as
    `tfssl.text.WordDropout` (tokens of the raw strings dropped), and the weak view the
    identity (`keras.layers.Identity()`) or light word dropout; pass them as Keras layers
    (`weak_augment`, `strong_augment`). `estimators/text_classification.py --method
    fixmatch` uses the identity and `WordDropout(0.3)`.

    Metrics: `pseudo_label_loss`, `mask_rate` (mean weight of the batch's unlabeled rows:
    the share whose pseudo-label is kept), `threshold` (the policy's, the mean over classes
    for per-class thresholds) and `unsupervised_weight`; the accuracy of the pseudo-labels
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
        threshold: Shorthand for `pseudo_label_policy=FixedThreshold(threshold)`: the
            confidence a weak-view prediction needs to become a target, in `[0, 1]`.
            Defaults to `None` (0.95, the paper's).
        lambda_u: Shorthand for `weight_schedule=ConstantWeight(lambda_u)`, `>= 0`.
            Defaults to `None` (1.0, the paper's).
        pseudo_label_policy: A `tfssl.models.policies.PseudoLabelPolicy` deciding which
            unlabeled rows count and with what weight. Defaults to `None`:
            `FixedThreshold(threshold)`.
        distribution_alignment: `None`, `True` (a
            `tfssl.models.policies.DistributionAlignment()`), or a `TargetTransform` applied
            to the weak-view guesses before the policy. Defaults to `None`.
        num_samples: Number of training rows. Optional: when given, batch indices are
            checked against it.
        num_classes: Number of classes. Defaults to the backbone's output size.
        **kwargs: `weight_schedule`, `supervised_normalize` (default `"labeled"`) and the
            other arguments of `SemiSupervisedModel`, and `keras.Model` arguments.

    Raises:
        ValueError: If `threshold` is outside `[0, 1]`, `lambda_u < 0`, a shorthand is given
            with the object it stands for, an augmentation is not a Keras layer, or a
            default augmentation is asked of a backbone that does not take images.

    References:
        Sohn et al., FixMatch: Simplifying Semi-Supervised Learning with Consistency and
        Confidence, arXiv 2001.07685.
    """

    loss_terms = ("loss", "supervised_loss", "pseudo_label_loss", "mask_rate")
    schedule_terms = ("unsupervised_weight", "threshold")
    default_weight_schedule = schedules.ConstantWeight(1.0)
    default_threshold = 0.95

    def __init__(
        self,
        backbone,
        weak_augment=None,
        strong_augment=None,
        threshold=None,
        lambda_u=None,
        num_samples=None,
        num_classes=None,
        pseudo_label_policy=None,
        distribution_alignment=None,
        **kwargs,
    ):
        kwargs.setdefault("supervised_normalize", "labeled")
        if lambda_u is not None:
            if isinstance(lambda_u, bool) or not isinstance(lambda_u, (int, float)) \
                    or lambda_u < 0:
                raise ValueError(f"`lambda_u` must be >= 0. Received: lambda_u={lambda_u!r}")
            check_shorthand("lambda_u", lambda_u, "weight_schedule", kwargs.get("weight_schedule"))
            kwargs["weight_schedule"] = schedules.ConstantWeight(lambda_u)
        super().__init__(backbone, num_samples, num_classes, **kwargs)
        check_shorthand("threshold", threshold, "pseudo_label_policy", pseudo_label_policy)
        if pseudo_label_policy is None:
            pseudo_label_policy = self.make_default_policy(
                self.default_threshold if threshold is None else threshold
            )
        self.pseudo_label_policy = self.add_hook(pseudo_label_policy)
        if distribution_alignment is True:
            distribution_alignment = policies.DistributionAlignment()
        self.distribution_alignment = (
            None if distribution_alignment in (None, False) else self.add_hook(distribution_alignment)
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

    def make_default_policy(self, threshold):
        """The policy when none is given: `FixedThreshold(threshold)`."""
        return policies.FixedThreshold(threshold)

    @property
    def threshold(self):
        """The policy's fixed threshold `tau` (`None` for a policy without one, such as
        SoftMatch's weights)."""
        return getattr(self.pseudo_label_policy, "threshold", None)

    def compute_losses(self, x, sample_idx, labels):
        unlabeled_rows = tf.where(labels == UNLABELED)[:, 0]
        weak = self.weak_augment(x, training=True)
        strong = self.strong_augment(tf.gather(x, unlabeled_rows), training=True)
        logits = self.backbone(tf.concat([weak, tf.cast(strong, weak.dtype)], 0), training=True)
        batch_size = tf.shape(labels)[0]
        weak_logits, strong_logits = logits[:batch_size], logits[batch_size:]
        guesses = tf.stop_gradient(tf.nn.softmax(tf.cast(weak_logits, tf.float32)))
        guesses, mask, outputs, logs = self.run_hooks(
            tf.gather(guesses, unlabeled_rows),
            sample_idx=None if sample_idx is None else tf.gather(sample_idx, unlabeled_rows),
            labeled_probabilities=tf.boolean_mask(guesses, labels != UNLABELED),
            policy=self.pseudo_label_policy,
            transforms=[t for t in (self.distribution_alignment,) if t is not None],
        )
        supervised = self.labeled_loss(labels, weak_logits)
        unsupervised = global_mean(mask * self.strong_view_loss(guesses, strong_logits))
        terms = self.combine_losses(supervised, unsupervised, "pseudo_label_loss")
        terms["mask_rate"] = global_mean(mask)
        terms["threshold"] = logs["threshold"]
        step = {"logits": weak_logits, "strong_logits": strong_logits, "unlabeled_weights": mask}
        return terms, {**step, **outputs}

    def labeled_loss(self, labels, logits):
        """The training step's supervised term: `supervised_loss` (UDA anneals it)."""
        return self.supervised_loss(labels, logits)

    def strong_view_loss(self, guesses, strong_logits):
        """Per unlabeled row, the loss of the strong view against the weak view's guesses:
        the cross-entropy of their argmax (UDA: of the sharpened guesses)."""
        targets = tf.argmax(guesses, axis=-1, output_type=tf.int32)
        return keras.losses.sparse_categorical_crossentropy(
            targets, tf.cast(strong_logits, tf.float32), from_logits=True
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "weak_augment": keras.saving.serialize_keras_object(self.weak_augment),
                "strong_augment": keras.saving.serialize_keras_object(self.strong_augment),
                "pseudo_label_policy": keras.saving.serialize_keras_object(
                    self.pseudo_label_policy
                ),
                "distribution_alignment": keras.saving.serialize_keras_object(
                    self.distribution_alignment
                ),
            }
        )
        return config


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
