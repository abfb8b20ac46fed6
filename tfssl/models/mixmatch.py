"""MixMatch.

Berthelot, Carlini, Goodfellow, Papernot, Oliver & Raffel, "MixMatch: A Holistic Approach to
Semi-Supervised Learning", NeurIPS 2019, arXiv 1905.02249; the authors' TF1 code is
google-research/mixmatch (`mixmatch.py`, `libml/layers.py`: `MixMode("xxy.yxy")`). It extends
seed 002's mixup to unlabeled rows: they are mixed with guessed labels.
"""

import keras
import tensorflow as tf

from tfssl import layers, schedules
from tfssl.data import UNLABELED
from tfssl.models import policies
from tfssl.models._checks import check_shorthand
from tfssl.models._replicas import global_mean
from tfssl.models.base import SemiSupervisedModel

__all__ = ["MixMatch"]


@keras.saving.register_keras_serializable(package="tfssl")
class MixMatch(SemiSupervisedModel):
    """MixMatch: mixup of labeled rows and of unlabeled rows with sharpened guessed labels.

    A step, in the paper's order (Algorithm 1):

    1. Augment: `K` views of the batch through `augment`; a labeled row keeps its first
       view, an unlabeled row all `K`.
    2. Guess: an unlabeled row's label guess is the mean of the backbone's softmax over
       its `K` views (training-mode passes), aligned when `distribution_alignment` is
       given (ReMixMatch's addition), sharpened with temperature `T`
       (`tfssl.models.policies.Sharpen`), held fixed (no gradient). Each of its `K` views
       gets it.
    3. Mix: all views with their targets (one-hot labels, guesses) form `W`; every view is
       mixed with a random partner of `W` with `lam = max(m, 1 - m)`, `m ~ Beta(alpha,
       alpha)` (one draw per row, as the authors' code; `lambda_per_row=False` draws one
       per batch, as seed 002's mixup), so it stays closer to itself.
    4. Loss: cross-entropy of the mixed labeled views against their mixed targets, plus
       `lambda_u` (ramped up, linearly by default as the paper) times the squared error
       between the mixed unlabeled views' softmax and their mixed targets, averaged over
       rows and classes (the authors' `reduce_mean`).

    Formula:

    ```python
    q = sharpen(mean_k(softmax(backbone(augment_k(u)))), T)          # no gradient
    W = [(augment_1(x), one_hot(y))] + [(augment_k(u), q) for k in 1..K]
    lam = max(m, 1 - m)                                               # m ~ Beta(alpha, alpha)
    (x', p') = lam * W + (1 - lam) * W[index]
    loss = CE(p'_labeled, backbone(x'_labeled))
           + lambda_u * ramp(epoch) * mean((p'_unlabeled - softmax(backbone(x'_unlabeled)))^2)
    ```

    All mixed views go through the backbone in one pass, so batch norm sees the whole
    mixed batch: the authors' `interleave` (which made each of their per-group passes
    representative) is not needed. Batch-norm statistics are also updated by the guessing
    passes. The authors evaluate an EMA of the weights (0.999) and use weight decay 0.02
    (times the learning rate); pair this model with `keras.optimizers.AdamW` and
    `use_ema=True` for both. Under `tf.distribute.MirroredStrategy` each replica guesses
    and mixes its own rows (a partner is a view of the same replica).

    Example:

    ```python
    model = tfssl.models.MixMatch(backbone, lambda_u=75.0, ramp_up_epochs=16)
    model.compile(optimizer=keras.optimizers.Adam(2e-3), metrics=["accuracy"])
    model.fit(tfssl.data.make_dataset(x, y_semi, 128, shuffle=True, labeled_per_batch=64))
    ```

    Args:
        backbone: `keras.Model` mapping inputs to logits.
        augment: A Keras layer or model applied with `training=True` to make each view.
            Defaults to `None`: `tfssl.layers.image_augmentation(input_shape)` (translation
            by 2 pixels and Gaussian noise 0.15) for image inputs `(height, width,
            channels)`; other inputs need one.
        K: Augmented views of every unlabeled row, `>= 1`. Defaults to `2`.
        T: Sharpening temperature, `> 0`. Defaults to `0.5`.
        alpha: Beta concentration of the mix, `> 0`. Defaults to `0.75`.
        lambda_u: Weight of the unlabeled term after the ramp-up (the paper's 75 for
            CIFAR-10, 250 for SVHN): shorthand for `max_unsupervised_weight`. Defaults to
            `None` (75.0).
        lambda_per_row: Draw `lam` for every row (the authors' code) or once for the
            batch. Defaults to `True`.
        seed: Seed of the mixing draws. Defaults to `None`.
        ramp_up_method: Shape of the `lambda_u` ramp-up. Defaults to `None` (`"linear"`,
            the paper's).
        ramp_up_epochs: Epochs of the ramp-up (the paper: 16,384 steps of 64 rows).
            Defaults to `None` (16).
        distribution_alignment: `None`, `True` (a
            `tfssl.models.policies.DistributionAlignment()`) or a `TargetTransform` applied
            to the mean guess before sharpening. Defaults to `None` (MixMatch has none).
        supervised_normalize: `"labeled"`: the cross-entropy is the mean over the labeled
            views (the paper's); `"batch"`: divided by the batch size. Defaults to
            `"labeled"`.
        **kwargs: `num_samples`, `num_classes`, `weight_schedule` (default
            `RampUpWeight(75.0, 16, "linear")`; the three shorthands above build one) of
            `SemiSupervisedModel`, and `keras.Model` arguments.

    Raises:
        ValueError: If `K < 1`, `T <= 0`, `alpha <= 0`, `lambda_u < 0`, or no `augment` is
            given for a backbone whose input is not an image.

    References:
        Berthelot et al., MixMatch: A Holistic Approach to Semi-Supervised Learning,
        arXiv 1905.02249.
    """

    loss_terms = ("loss", "supervised_loss", "consistency_loss")
    default_weight_schedule = schedules.RampUpWeight(75.0, ramp_up_epochs=16, method="linear")

    def __init__(
        self,
        backbone,
        augment=None,
        K=2,
        T=0.5,
        alpha=0.75,
        lambda_u=None,
        lambda_per_row=True,
        seed=None,
        ramp_up_method=None,
        ramp_up_epochs=None,
        supervised_normalize="labeled",
        distribution_alignment=None,
        **kwargs,
    ):
        if isinstance(K, bool) or not isinstance(K, int) or K < 1:
            raise ValueError(f"`K` must be an integer >= 1. Received: K={K!r}")
        if isinstance(T, bool) or not isinstance(T, (int, float)) or T <= 0:
            raise ValueError(f"`T` must be > 0. Received: T={T!r}")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha <= 0:
            raise ValueError(f"`alpha` must be > 0. Received: alpha={alpha!r}")
        if lambda_u is not None:
            if isinstance(lambda_u, bool) or not isinstance(lambda_u, (int, float)) \
                    or lambda_u < 0:
                raise ValueError(f"`lambda_u` must be >= 0. Received: lambda_u={lambda_u!r}")
            check_shorthand(
                "lambda_u", lambda_u, "max_unsupervised_weight",
                kwargs.get("max_unsupervised_weight"),
            )
            kwargs["max_unsupervised_weight"] = lambda_u
        super().__init__(
            backbone,
            ramp_up_method=ramp_up_method,
            ramp_up_epochs=ramp_up_epochs,
            supervised_normalize=supervised_normalize,
            **kwargs,
        )
        if augment is None:
            augment = _default_augmentation(backbone)
        self.augment = augment
        self.K = K
        self.sharpen = self.add_hook(policies.Sharpen(T))
        if distribution_alignment is True:
            distribution_alignment = policies.DistributionAlignment()
        self.distribution_alignment = (
            None if distribution_alignment in (None, False) else self.add_hook(distribution_alignment)
        )
        self.alpha = float(alpha)
        self.lambda_per_row = bool(lambda_per_row)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    @property
    def T(self):
        """The sharpening temperature."""
        return self.sharpen.temperature

    def draw_mixing(self, num_rows):
        """One step's draws: `(lam, index)`, the folded weights (`(num_rows,)` or a scalar)
        and a permutation of `num_rows` rows."""
        shape = (num_rows,) if self.lambda_per_row else ()
        m = keras.random.beta(shape, self.alpha, self.alpha, seed=self.seed_generator)
        index = keras.random.shuffle(tf.range(num_rows), seed=self.seed_generator)
        return tf.maximum(m, 1.0 - m), index

    def mean_prediction(self, views):
        """Mean softmax over the `K` views of the unlabeled rows (no gradient)."""
        logits = tf.cast(self.backbone(tf.concat(views, 0), training=True), tf.float32)
        probabilities = tf.reshape(tf.nn.softmax(logits), [self.K, -1, self.num_classes])
        return tf.stop_gradient(tf.reduce_mean(probabilities, axis=0))

    def compute_losses(self, x, sample_idx, labels):
        labeled = labels != UNLABELED
        unlabeled = tf.logical_not(labeled)
        views = [tf.cast(self.augment(x, training=True), tf.float32) for _ in range(self.K)]
        labeled_view = tf.boolean_mask(views[0], labeled)
        unlabeled_views = [tf.boolean_mask(view, unlabeled) for view in views]
        num_unlabeled = tf.shape(unlabeled_views[0])[0]
        # A batch without unlabeled rows skips the guess: batch norm would average over
        # no rows.
        mean_prediction = tf.cond(
            num_unlabeled > 0,
            lambda: self.mean_prediction(unlabeled_views),
            lambda: tf.zeros([0, self.num_classes]),
        )
        transforms = [self.distribution_alignment, self.sharpen]
        guess, _, hook_outputs, _ = self.run_hooks(
            mean_prediction, transforms=[t for t in transforms if t is not None]
        )
        inputs = tf.concat([labeled_view] + unlabeled_views, 0)
        targets = tf.concat(
            [tf.one_hot(tf.boolean_mask(labels, labeled), self.num_classes)] + [guess] * self.K, 0
        )
        lam, index = self.draw_mixing(tf.shape(inputs)[0])
        mixed_inputs = layers.mix_with_partners(inputs, lam, index)
        mixed_targets = layers.mix_with_partners(targets, lam, index)
        logits = tf.cast(self.backbone(mixed_inputs, training=True), tf.float32)
        num_labeled = tf.shape(labeled_view)[0]
        cross_entropy = keras.losses.categorical_crossentropy(
            mixed_targets[:num_labeled], logits[:num_labeled], from_logits=True
        )
        if self.supervised_normalize == "batch":
            # Zeros for the unlabeled rows make the mean one over the batch.
            cross_entropy = tf.concat([cross_entropy, tf.zeros([num_unlabeled])], 0)
        supervised = global_mean(cross_entropy)
        squared_error = tf.reduce_mean(
            tf.square(mixed_targets[num_labeled:] - tf.nn.softmax(logits[num_labeled:])), axis=-1
        )
        terms = self.combine_losses(supervised, global_mean(squared_error))
        # The metrics read the labeled views' mixed logits, at their batch positions.
        batch_size = tf.shape(labels, out_type=tf.int64)[0]
        batch_logits = tf.scatter_nd(
            tf.where(labeled), logits[:num_labeled], [batch_size, self.num_classes]
        )
        outputs = {
            "logits": batch_logits,
            "guess": guess,
            "mixed_inputs": mixed_inputs,
            "mixed_targets": mixed_targets,
            **hook_outputs,
        }
        return terms, outputs

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "augment": keras.saving.serialize_keras_object(self.augment),
                "K": self.K,
                "T": self.T,
                "alpha": self.alpha,
                "lambda_per_row": self.lambda_per_row,
                "seed": self.seed,
                "distribution_alignment": keras.saving.serialize_keras_object(
                    self.distribution_alignment
                ),
            }
        )
        return config


def _default_augmentation(backbone):
    """The papers' image augmentation for image backbones."""
    shape = tuple(backbone.inputs[0].shape[1:]) if getattr(backbone, "inputs", None) else ()
    if len(shape) != 3:
        raise ValueError(
            "MixMatch's default augmentation is for images (height, width, channels); pass "
            f"`augment` for other inputs. Received: augment=None, input shape {shape}"
        )
    return layers.image_augmentation(shape)
