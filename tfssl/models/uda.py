"""UDA.

Xie, Dai, Hovy, Luong & Le, "Unsupervised Data Augmentation for Consistency Training",
NeurIPS 2020, arXiv 1904.12848 (reference code: google-research/uda;
microsoft/Semi-supervised-learning, `uda.py`). The strong view learns the sharpened guess
of the weak view on confident rows; training-signal annealing holds back labeled rows the
model already fits.
"""

import keras
import tensorflow as tf

from tfssl.models import policies
from tfssl.models._replicas import global_mean
from tfssl.models.fixmatch import FixMatch

__all__ = ["UDA"]


@keras.saving.register_keras_serializable(package="tfssl")
class UDA(FixMatch):
    """UDA: consistency between a sharpened weak-view guess and the strong view, on
    confident rows, with training-signal annealing.

    The step is FixMatch's (`tfssl.models.FixMatch`) with three changes:

    1. the target of the strong view is the guess sharpened with `temperature` (0.4), a
       soft target, and the loss is the KL divergence from it (the paper's; USB reports
       the cross-entropy, which differs by the target's entropy and has the same
       gradient);
    2. the mask keeps rows whose unsharpened confidence reaches `threshold` (0.8);
    3. with `training_signal_annealing` (a
       `tfssl.models.policies.TrainingSignalAnnealing`), a labeled row whose predicted
       probability is above `eta_t` leaves the supervised term, `eta_t` rising from `1 / C`
       to 1 over the run (the optimizer's step count). Without it (the default, as USB's)
       every labeled row counts.

    On text, the paper's strong view is back-translation or TF-IDF word replacement
    (`tfssl.text.TfIdfReplacement`) and the weak view the text itself
    (`keras.layers.Identity()`).

    Formula:

    ```python
    q = stop_gradient(softmax(backbone(weak_augment(u))))
    mask = max(q, axis=-1) >= threshold
    target = q ** (1 / T) / sum(q ** (1 / T))
    kept = p(y | x) <= eta_t                     # labeled rows, with annealing
    loss = sum(kept * CE(y, backbone(weak_augment(x)))) / sum(kept)
           + lambda_u * mean(mask * KL(target || softmax(backbone(strong_augment(u)))))
    ```

    Example:

    ```python
    tsa = tfssl.models.policies.TrainingSignalAnnealing(total_steps=epochs * steps_per_epoch)
    model = tfssl.models.UDA(backbone, training_signal_annealing=tsa)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    ```

    Args:
        backbone: `keras.Model` mapping inputs to logits.
        temperature: Sharpening temperature `T > 0`. Defaults to `0.4` (the paper's).
        training_signal_annealing: A `TrainingSignalAnnealing`, or `None` for none.
            Defaults to `None`.
        **kwargs: `threshold` (default 0.8, the paper's `beta`) or
            `pseudo_label_policy`, and every other argument of `FixMatch`.

    Raises:
        ValueError: For a non-positive `temperature`, an annealing object of another
            type, or annealing with a supervised objective other than `"crossentropy"`.

    References:
        Xie et al., Unsupervised Data Augmentation for Consistency Training,
        arXiv 1904.12848.
    """

    default_threshold = 0.8

    def __init__(self, backbone, temperature=0.4, training_signal_annealing=None, **kwargs):
        if training_signal_annealing is not None and not isinstance(
            training_signal_annealing, policies.TrainingSignalAnnealing
        ):
            raise ValueError(
                "`training_signal_annealing` must be a TrainingSignalAnnealing or None. "
                f"Received: training_signal_annealing={training_signal_annealing!r}"
            )
        super().__init__(backbone, **kwargs)
        self.sharpen = policies.Sharpen(temperature)
        if training_signal_annealing is not None and self.supervised_objective != "crossentropy":
            raise ValueError(
                "Training-signal annealing needs the 'crossentropy' objective. Received: "
                f"supervised_objective={self.supervised_objective!r}"
            )
        self.training_signal_annealing = training_signal_annealing

    @property
    def temperature(self):
        """The sharpening temperature."""
        return self.sharpen.temperature

    def labeled_loss(self, labels, logits):
        annealing = self.training_signal_annealing
        if annealing is None:
            return super().labeled_loss(labels, logits)
        logits = tf.cast(logits, tf.float32)
        probabilities = tf.stop_gradient(tf.nn.softmax(logits))
        kept = annealing.kept(probabilities, labels, self.optimizer.iterations)
        per_row = keras.losses.categorical_crossentropy(
            tf.one_hot(tf.maximum(labels, 0), self.num_classes), logits,
            from_logits=True, label_smoothing=self.label_smoothing,
        )
        if annealing.normalize == "kept":
            return global_mean(per_row, weights=kept)
        return global_mean(per_row * kept, weights=tf.cast(labels >= 0, tf.float32))

    def strong_view_loss(self, guesses, strong_logits):
        targets, _ = self.sharpen.transform(guesses)
        log_predictions = tf.nn.log_softmax(tf.cast(strong_logits, tf.float32))
        return tf.reduce_sum(tf.math.xlogy(targets, targets) - targets * log_predictions, -1)

    def get_config(self):
        annealing = self.training_signal_annealing
        return {
            **super().get_config(),
            "temperature": self.temperature,
            "training_signal_annealing": None if annealing is None
            else keras.saving.serialize_keras_object(annealing),
        }
