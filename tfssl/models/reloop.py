"""ReLoop: a model trained not to be worse than its previous version.

Cai, Zhu, Dai, Dong, He, Tang & Zhang, "ReLoop: A Self-Correction Continual Learning Loop for
Recommender Systems", SIGIR 2022, arXiv 2204.11165 (seed 004: a click-through model retrained
every day adds to its cross-entropy a self-correction loss that penalises a prediction further
from the label than the previous model version's prediction of the same sample).
"""

import keras
import tensorflow as tf

from tfssl import losses as losses_lib
from tfssl.data import UNLABELED
from tfssl.models._checks import check_choice, check_same_outputs, output_shape
from tfssl.models._replicas import global_mean
from tfssl.models.base import STATE_DTYPES, SemiSupervisedModel

__all__ = ["ReLoop"]


@keras.saving.register_keras_serializable(package="tfssl")
class ReLoop(SemiSupervisedModel):
    """ReLoop: cross-entropy plus a self-correction term against the previous model version.

    For a labeled row with label `y`, current probability `p` and the previous version's
    probability `p_prev`, the self-correction term is `max(0, p_prev - p)` for a positive
    and `max(0, p - p_prev)` for a negative (`tfssl.losses.reloop_loss`): zero where the new
    prediction is at least as close to the label as the previous one, positive where it is
    further. A step:

    1. `z = backbone(x, training=True)`, `p = sigmoid(z)` (one logit: binary,
       click-through style) or `softmax(z)` (several logits: multi-class).
    2. `p_prev`: the previous version's probabilities of the batch's rows, from
       `previous_model(x, training=False)` (frozen) or from the per-sample state
       `model.previous_predictions`, read by `idx`.
    3. `loss = (1 - weight) * CE(y, z) + weight * L_sc(y, p, p_prev)`, the paper's convex
       combination (its `alpha` is `weight`), with `L_sc` averaged over the labeled rows
       that have a previous prediction (normalised like the cross-entropy,
       `supervised_normalize`).

    The weighting, checked against the paper and seed 004: the paper trains on
    `alpha * L_sc + (1 - alpha) * L_ce` with `alpha` in `[0, 1]` tuned per data set, which
    is what this class computes. Seed 004 has no code and its formula for the total is an
    image lost from the text; its prose says "cross-entropy, and the self-correction loss:
    the total loss is" their combination, with no weight of its own. The other common
    reading, `CE + lam * L_sc`, is the same objective scaled by `1 + lam`:
    `CE + lam * L_sc = (1 + lam) * ((1 - w) * CE + w * L_sc)` with `w = lam / (1 + lam)`,
    so `weight=w` gives it up to the learning rate (Adam is nearly invariant to a constant
    factor of the loss); no separate option is needed.

    The paper is binary. With several classes each class is a binary problem with the
    one-hot label (the true class's probability must not fall, the others' must not rise),
    and `L_sc` is the mean over the classes. A binary model reads labels 0 / 1 (`-1`
    unlabeled) with a one-logit backbone and trains with the sigmoid cross-entropy
    (`supervised_objective="binary_crossentropy"`); compile it with metrics on logits, e.g.
    `keras.metrics.BinaryAccuracy(threshold=0.0)` or `keras.metrics.AUC(from_logits=True)`.

    Without `previous_model`, the previous predictions are per-sample state (needs
    `num_samples`): the paper's setting, where they are the deployed version's logged
    predictions, loaded with `set_previous_predictions`. Rows without one add no
    self-correction cost. With `update_previous=True`, every step also writes the batch's
    current predictions there, so the "previous version" of a row is the model at its last
    visit (the loop run over epochs instead of days).

    Example:

    ```python
    # Daily retraining: yesterday's model is the previous version.
    model = tfssl.models.ReLoop(new_backbone, previous_model=yesterday, weight=0.5)
    model.compile(optimizer="adam", metrics=[keras.metrics.AUC(from_logits=True)])
    model.fit(tfssl.data.make_dataset(x, clicks, 512, shuffle=True), epochs=1)
    ```

    Args:
        backbone: `keras.Model` mapping inputs to logits: `(batch, 1)` for a binary model,
            `(batch, num_classes)` for a multi-class one.
        previous_model: The previous version, a `keras.Model` with the backbone's inputs
            and output shape; frozen and run in inference mode. Defaults to `None`: the
            previous predictions are per-sample state.
        weight: Weight of the self-correction term in `[0, 1]`; the cross-entropy gets
            `1 - weight`. Defaults to `0.5` (not a value from the paper, which tunes it).
        num_samples: Number of training rows; required without `previous_model`.
        num_classes: Number of classes. Defaults to the backbone's output size (2 for one
            logit).
        update_previous: Write the current predictions into the state after every step
            (only without `previous_model`). Defaults to `False`.
        state_dtype: Storage dtype of the stored previous predictions (only without
            `previous_model`): `"float32"`, or `"float16"` / `"bfloat16"` to halve their
            memory. They are read and written in float32; only the stored probabilities are
            rounded (to about 3 significant digits in float16, 2 in bfloat16). Defaults to
            `"float32"`.
        **kwargs: `supervised_normalize`, `label_smoothing`, `supervised_objective` of
            `SemiSupervisedModel` and `keras.Model` arguments.

    Raises:
        ValueError: If `weight` is outside `[0, 1]`, `previous_model` is not a
            `keras.Model` or its outputs differ from the backbone's, `num_samples` is
            missing without `previous_model`, `update_previous` or a `state_dtype` other
            than float32 is set with one, or `state_dtype` is unknown.

    Formula:

    ```python
    l_sc = y * max(0, p_prev - p) + (1 - y) * max(0, p - p_prev)   # per class, y one-hot
    loss = (1 - weight) * ce(y, z) + weight * mean(l_sc)
    ```

    References:
        Cai et al., ReLoop: A Self-Correction Continual Learning Loop for Recommender
        Systems, arXiv 2204.11165.
    """

    loss_terms = ("loss", "supervised_loss", "self_correction_loss")
    schedule_terms = ()

    def __init__(
        self,
        backbone,
        previous_model=None,
        weight=0.5,
        num_samples=None,
        num_classes=None,
        update_previous=False,
        state_dtype="float32",
        **kwargs,
    ):
        shape = output_shape(backbone)
        binary = shape is not None and shape[1:] == (1,)
        expected = "binary_crossentropy" if binary else "crossentropy"
        objective = kwargs.setdefault("supervised_objective", expected)
        if objective != expected:
            raise ValueError(
                f"ReLoop with a backbone of output shape {shape} trains with "
                f"supervised_objective={expected!r}. Received: supervised_objective={objective!r}"
            )
        super().__init__(backbone, num_samples, num_classes, **kwargs)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight <= 1:
            raise ValueError(f"`weight` must be a number in [0, 1]. Received: weight={weight!r}")
        self.weight = float(weight)
        self.binary = binary
        self.update_previous = bool(update_previous)
        check_choice("state_dtype", state_dtype, STATE_DTYPES)
        self.state_dtype = state_dtype
        self.previous_model = previous_model
        if previous_model is not None:
            if not isinstance(previous_model, keras.Model):
                raise ValueError(
                    "`previous_model` must be a keras.Model. "
                    f"Received: previous_model={previous_model!r}"
                )
            check_same_outputs("backbone", backbone, "previous_model", previous_model)
            if self.update_previous:
                raise ValueError(
                    "`update_previous` writes per-sample state, used only without "
                    "`previous_model`. Received: update_previous=True with a previous_model"
                )
            if state_dtype != "float32":
                raise ValueError(
                    "`state_dtype` sets the storage of per-sample state, kept only without "
                    f"`previous_model`. Received: state_dtype={state_dtype!r} with a "
                    "previous_model"
                )
            previous_model.trainable = False
        else:
            outputs = 1 if binary else self.num_classes
            self.previous_predictions = self.add_sample_state(
                "previous_predictions", (outputs,), dtype=state_dtype
            )
            self.has_previous = self.add_sample_state("has_previous", ())

    def probabilities(self, logits):
        """Sigmoid of one logit (binary) or softmax (multi-class)."""
        logits = tf.cast(logits, tf.float32)
        return tf.sigmoid(logits) if self.binary else tf.nn.softmax(logits, axis=-1)

    def set_previous_predictions(self, probabilities):
        """Loads the previous version's probabilities of every training row (row `i` is the
        sample of `idx == i`), e.g. the deployed model's logged predictions.

        Args:
            probabilities: `(num_samples, 1)` (binary) or `(num_samples, num_classes)`.

        Raises:
            ValueError: With a `previous_model`, or for a wrong shape.
        """
        if self.previous_model is not None:
            raise ValueError("This ReLoop reads its previous predictions from `previous_model`.")
        probabilities = tf.convert_to_tensor(probabilities, tf.float32)
        if tuple(probabilities.shape) != tuple(self.previous_predictions.shape):
            raise ValueError(
                f"`probabilities` must have shape {tuple(self.previous_predictions.shape)}. "
                f"Received: shape {tuple(probabilities.shape)}"
            )
        self.previous_predictions.assign(tf.cast(probabilities, self.previous_predictions.dtype))
        self.has_previous.assign(tf.ones_like(self.has_previous))

    def compute_losses(self, x, sample_idx, labels):
        logits = self.backbone(x, training=True)
        probabilities = self.probabilities(logits)
        if self.previous_model is not None:
            previous = tf.stop_gradient(self.probabilities(self.previous_model(x, training=False)))
            has_previous = tf.ones_like(labels, tf.float32)
        else:
            if sample_idx is None:
                raise ValueError("ReLoop without previous_model trains on {'x', 'idx'} inputs.")
            previous = self.gather_sample_state(self.previous_predictions, sample_idx)
            has_previous = self.gather_sample_state(self.has_previous, sample_idx)
        labeled = tf.cast(labels != UNLABELED, tf.float32)
        safe_labels = tf.maximum(labels, 0)
        if self.binary:
            targets = tf.cast(safe_labels, tf.float32)[:, None]
        else:
            targets = tf.one_hot(safe_labels, self.num_classes)
        per_sample = tf.reduce_mean(
            losses_lib.reloop_loss(targets, probabilities, previous, reduction="none"), axis=-1
        )
        rows = labeled * has_previous
        if self.supervised_normalize == "batch":
            self_correction = global_mean(per_sample * rows)
        else:
            self_correction = global_mean(per_sample, weights=rows)
        supervised = self.supervised_loss(labels, logits)
        terms = {
            "loss": (1.0 - self.weight) * supervised + self.weight * self_correction,
            "supervised_loss": supervised,
            "self_correction_loss": self_correction,
        }
        return terms, {"logits": logits, "probabilities": probabilities}

    def update_state_after_step(self, sample_idx, outputs):
        if not self.update_previous:
            return
        probabilities = tf.stop_gradient(outputs["probabilities"])
        self.scatter_sample_state(
            [
                (self.previous_predictions, probabilities),
                (self.has_previous, tf.ones_like(probabilities[:, 0])),
            ],
            sample_idx,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "previous_model": (
                    None
                    if self.previous_model is None
                    else keras.saving.serialize_keras_object(self.previous_model)
                ),
                "weight": self.weight,
                "update_previous": self.update_previous,
                "state_dtype": self.state_dtype,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if config.get("previous_model") is not None:
            config["previous_model"] = keras.saving.deserialize_keras_object(
                config["previous_model"]
            )
        return super().from_config(config)
