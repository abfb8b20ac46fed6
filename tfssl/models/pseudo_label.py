"""Pseudo-Label.

Lee, "Pseudo-Label: The Simple and Efficient Semi-Supervised Learning Method for Deep Neural
Networks", ICML 2013 Workshop on Challenges in Representation Learning (no arXiv id). Seed 003
("伪标签"): the class of the network's largest prediction on an unlabeled row is that row's
label, and its cross-entropy joins the labeled rows' with a weight `alpha(t)` that is 0 at the
start and rises slowly, since early predictions are mostly wrong. The seed has no code for it.

`PseudoLabelMonitor` reports, after each epoch, how many held-out rows the rule would
pseudo-label and how many of those it gets right: in a batch the unlabeled rows carry -1, so
the pseudo-labels' accuracy can only be measured against labels kept aside.
"""

import keras
import numpy as np
import tensorflow as tf

from tfssl import schedules
from tfssl.data import UNLABELED
from tfssl.models import policies
from tfssl.models._checks import check_choice, check_shorthand
from tfssl.models._replicas import global_mean
from tfssl.models.base import RAMP_UP_SHORTHAND, SemiSupervisedModel

__all__ = ["PseudoLabel", "PseudoLabelMonitor", "pseudo_label_targets"]


def pseudo_label_targets(logits, threshold):
    """Hard targets from predictions: `argmax` and whether `max softmax >= threshold`.

    The targets are held fixed (no gradient flows through them).

    Formula:

    ```python
    p = stop_gradient(softmax(logits))
    target = argmax(p, axis=-1)
    mask = max(p, axis=-1) >= threshold
    ```

    Args:
        logits: `(batch, num_classes)` logits.
        threshold: Confidence in `[0, 1]` a prediction needs to become a target.

    Returns:
        `(targets, mask, confidence)`: int32 classes, float32 0/1 mask and float32 max
        probabilities, each `(batch,)`.
    """
    probabilities = tf.stop_gradient(tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1))
    confidence = tf.reduce_max(probabilities, axis=-1)
    targets = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
    mask = tf.cast(confidence >= threshold, tf.float32)
    return targets, mask, confidence


@keras.saving.register_keras_serializable(package="tfssl")
class PseudoLabel(SemiSupervisedModel):
    """Pseudo-Label: the model's own confident predictions as targets for unlabeled rows.

    A step:

    1. `z = backbone(x, training=True)`: one pass over the labeled and unlabeled rows.
    2. For every unlabeled row, the target is `argmax softmax(z)`, held fixed (no gradient),
       kept when `max softmax(z) >= threshold` (Lee: always, `threshold=0`).
    3. `loss = masked CE(y, z) + alpha(t) * sum_unlabeled(mask * CE(target, z)) / n_unlabeled`.

    The pseudo-labels are recomputed at every step, as in the paper. The weight `alpha(t)` is
    the model's `weight_schedule`:

    - by default the library's ramp-up, the seed's "Gaussian-shaped ramp used by two later
      papers", `ramp_up(epoch) * max_unsupervised_weight` (`tfssl.schedules.RampUpWeight`);
    - the paper's: 0 until epoch `t1`, linear to `alpha_f` at epoch `t2`, then `alpha_f`
      (Lee: `t1=100`, `t2=600`, `alpha_f=3`), `tfssl.schedules.LinearRampWeight(t1, t2,
      alpha_f)`, for which `schedule="lee"` is a shorthand.

    Which rows count is the `pseudo_label_policy` (`threshold` is the shorthand for a
    `FixedThreshold`).

    Metrics: `pseudo_label_loss`, `mask_rate` (share of the unlabeled rows of the batch
    whose pseudo-label is kept) and `unsupervised_weight`. The accuracy of the pseudo-labels
    needs true labels that training does not see: `PseudoLabelMonitor`.

    Formula:

    ```python
    p = stop_gradient(softmax(z[unlabeled]))
    mask = max(p, axis=-1) >= threshold
    pseudo_label_loss = sum(mask * CE(argmax(p, axis=-1), z[unlabeled])) / n_unlabeled
    loss = CE(y, z[labeled]) + alpha(epoch) * pseudo_label_loss
    mask_rate = sum(mask) / n_unlabeled
    ```

    Example:

    ```python
    model = tfssl.models.PseudoLabel(backbone, threshold=0.95, max_unsupervised_weight=1.0,
                                     ramp_up_epochs=5, supervised_normalize="labeled")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    model.fit(tfssl.data.make_dataset(x, y_semi, 100, shuffle=True, labeled_per_batch=50))
    ```

    Args:
        backbone: `keras.Model` mapping inputs to logits.
        threshold: Shorthand for `pseudo_label_policy=FixedThreshold(threshold)`, the
            confidence a prediction needs to become a target, in `[0, 1]`. Defaults to
            `None` (0.0, the paper: every unlabeled row).
        schedule: `"ramp_up"` or `"lee"` (shorthand for
            `weight_schedule=LinearRampWeight(t1, t2, alpha_f)`), see above. Defaults to
            `"ramp_up"`.
        t1: With `schedule="lee"`, the epoch where the weight starts to rise. Defaults to
            `100`.
        t2: With `schedule="lee"`, the epoch where it reaches `alpha_f`. Defaults to `600`.
        alpha_f: With `schedule="lee"`, the final weight. Defaults to `3.0`.
        pseudo_label_policy: A `tfssl.models.policies.PseudoLabelPolicy`. Defaults to
            `None`: `FixedThreshold(threshold)`.
        num_samples: Number of training rows. Optional: when given, batch indices are
            checked against it.
        num_classes: Number of classes. Defaults to the backbone's output size.
        **kwargs: `weight_schedule` (or its shorthand `num_labeled`,
            `max_unsupervised_weight`, `ramp_up_method`, `ramp_up_epochs`),
            `supervised_normalize` and the other arguments of `SemiSupervisedModel`, and
            `keras.Model` arguments.

    Raises:
        ValueError: If `threshold` is outside `[0, 1]`, `schedule` is unknown, or not
            `0 <= t1 < t2`, or `alpha_f < 0`.

    References:
        Lee, Pseudo-Label: The Simple and Efficient Semi-Supervised Learning Method for Deep
        Neural Networks, ICML 2013 Workshop on Challenges in Representation Learning.
    """

    loss_terms = ("loss", "supervised_loss", "pseudo_label_loss", "mask_rate")

    def __init__(
        self,
        backbone,
        threshold=None,
        schedule="ramp_up",
        t1=100,
        t2=600,
        alpha_f=3.0,
        num_samples=None,
        num_classes=None,
        pseudo_label_policy=None,
        **kwargs,
    ):
        check_choice("schedule", schedule, ("ramp_up", "lee"))
        if alpha_f < 0:
            raise ValueError(f"`alpha_f` must be >= 0. Received: alpha_f={alpha_f}")
        if not 0 <= t1 < t2:
            raise ValueError(f"`t1` and `t2` must satisfy 0 <= t1 < t2. Received: t1={t1}, t2={t2}")
        if schedule == "lee":
            check_shorthand("schedule", schedule, "weight_schedule", kwargs.get("weight_schedule"))
            # Lee's schedule replaces the ramp-up: its arguments do not apply.
            for name in RAMP_UP_SHORTHAND:
                kwargs.pop(name, None)
            kwargs["weight_schedule"] = schedules.LinearRampWeight(t1, t2, alpha_f)
        super().__init__(backbone, num_samples, num_classes, **kwargs)
        check_shorthand("threshold", threshold, "pseudo_label_policy", pseudo_label_policy)
        if pseudo_label_policy is None:
            pseudo_label_policy = policies.FixedThreshold(0.0 if threshold is None else threshold)
        self.pseudo_label_policy = self.add_hook(pseudo_label_policy)

    @property
    def threshold(self):
        """The policy's fixed threshold, for monitoring."""
        return self.pseudo_label_policy.threshold

    def compute_losses(self, x, sample_idx, labels):
        logits = self.backbone(x, training=True)
        unlabeled = labels == UNLABELED
        guesses = tf.stop_gradient(tf.nn.softmax(tf.cast(logits, tf.float32)))
        _, mask, outputs, _ = self.run_hooks(
            tf.boolean_mask(guesses, unlabeled),
            sample_idx=None if sample_idx is None else tf.boolean_mask(sample_idx, unlabeled),
            labeled_probabilities=tf.boolean_mask(guesses, ~unlabeled),
            policy=self.pseudo_label_policy,
        )
        targets = tf.argmax(tf.boolean_mask(guesses, unlabeled), axis=-1, output_type=tf.int32)
        unlabeled_logits = tf.cast(tf.boolean_mask(logits, unlabeled), tf.float32)
        per_row = keras.losses.sparse_categorical_crossentropy(
            targets, unlabeled_logits, from_logits=True
        )
        supervised = self.supervised_loss(labels, logits)
        terms = self.combine_losses(supervised, global_mean(mask * per_row), "pseudo_label_loss")
        terms["mask_rate"] = global_mean(mask)
        return terms, {"logits": logits, **outputs}

    def get_config(self):
        config = super().get_config()
        config["pseudo_label_policy"] = keras.saving.serialize_keras_object(
            self.pseudo_label_policy
        )
        return config


class PseudoLabelMonitor(keras.callbacks.Callback):
    """Logs, after every epoch, the mask rate and accuracy of the pseudo-labels on rows
    whose true labels are known but hidden from training.

    Inside a training batch an unlabeled row carries -1, so the model cannot score its
    pseudo-labels there. This callback applies the model's rule (the argmax of
    `model.serving_model()`'s inference-mode prediction, kept at `model.threshold`) to `x`
    and compares with `y_true`, typically the unlabeled training rows and their hidden
    labels. The figures are written into the epoch's logs (so `History` and TensorBoard keep
    them):

    - `pseudo_label_mask_rate`: share of `x` whose pseudo-label is kept (the mean weight,
      for policies with weights between 0 and 1 such as SoftMatch's);
    - `pseudo_label_accuracy`: accuracy of the kept pseudo-labels, each counted with its
      weight (NaN if none is kept);
    - `pseudo_label_accuracy_all`: accuracy of the argmax on all of `x`.

    The training step sees its inputs with noise, dropout and, for FixMatch, the weak
    augmentation; this callback sees them clean, so its figures describe the same rule on
    the model's best guess rather than the exact targets of the last batches. Any model
    with a `pseudo_label_policy` and a `serving_model()` works (`PseudoLabel`, `FixMatch`
    and the adaptive-threshold methods; a stateful policy is read, not updated).

    Example:

    ```python
    unlabeled = y_semi == -1
    monitor = tfssl.models.PseudoLabelMonitor(x[unlabeled][:2000], y[unlabeled][:2000])
    history = model.fit(train, epochs=15, callbacks=[monitor])
    history.history["pseudo_label_accuracy"]
    ```

    Args:
        x: Inputs whose labels training does not see.
        y_true: Their true labels, `(len(x),)` integers.
        batch_size: Prediction batch size. Defaults to `256`.

    Raises:
        ValueError: If `x` is empty or `len(x) != len(y_true)`.
    """

    def __init__(self, x, y_true, batch_size=256):
        super().__init__()
        y_true = np.asarray(y_true).reshape(-1)
        if len(x) == 0 or len(x) != len(y_true):
            raise ValueError(
                "`x` and `y_true` must hold the same, non-zero number of rows. "
                f"Received: len(x)={len(x)}, len(y_true)={len(y_true)}"
            )
        self.x = x
        self.y_true = y_true
        self.batch_size = int(batch_size)

    def on_epoch_end(self, epoch, logs=None):
        logits = self.model.serving_model().predict(self.x, batch_size=self.batch_size, verbose=0)
        probabilities = tf.nn.softmax(tf.cast(logits, tf.float32))
        weights = self.model.pseudo_label_policy.current_weights(probabilities).numpy()
        correct = np.argmax(logits, axis=-1) == self.y_true
        total = float(np.sum(weights))
        figures = {
            "pseudo_label_mask_rate": float(np.mean(weights)),
            "pseudo_label_accuracy": float(np.sum(weights * correct)) / total if total else np.nan,
            "pseudo_label_accuracy_all": float(np.mean(correct)),
        }
        if logs is not None:
            logs.update(figures)
