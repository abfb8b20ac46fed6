"""Temporal Ensembling.

Laine & Aila, "Temporal Ensembling for Semi-Supervised Learning", ICLR 2017, arXiv 1610.02242.
Ports the seed's TF1 `temporal_ensemble` block (seed 000): a non-trainable
`(sample_size, label_size)` variable read with `embedding_lookup(features['idx'])`, moved
towards the current predictions with momentum `alpha` and written back with
`scatter_update`.
"""

import keras
import tensorflow as tf

from tfssl.models._checks import check_choice
from tfssl.models._replicas import global_consistency
from tfssl.models.base import STATE_DTYPES, SemiSupervisedModel

__all__ = ["TemporalEnsembling"]


@keras.saving.register_keras_serializable(package="tfssl")
class TemporalEnsembling(SemiSupervisedModel):
    """Temporal Ensembling: consistency with a per-sample moving average of predictions.

    Every sample keeps `Z[idx]`, an exponential moving average of the logits the network
    gave it in past epochs (`model.ensemble`, zeros at start). A step:

    1. `z = backbone(x, training=True)`: one noisy pass (augmentation, dropout).
    2. The target: the ensemble with the startup-bias correction `Z / (1 - alpha^t)`,
       `t` the number of times the sample has been averaged in (`model.ensemble_counts`).
    3. `loss = masked CE(y, z) + w(epoch) * consistency(softmax(z), softmax(target))`.
    4. After the optimizer step: `Z[idx] <- alpha Z[idx] + (1 - alpha) z` (scatter update).

    Seed code and paper differ in the target, selectable with `target`:

    - `"seed"` (default, the seed's TF1 code): the target is the *updated* average
      `alpha Z[idx] + (1 - alpha) z`, corrected by `1 - alpha^(t + 1)`; it includes the
      current prediction and the gradient flows through it.
    - `"paper"`: the target is the previous epochs' ensemble `Z[idx] / (1 - alpha^t)`,
      held fixed (no gradient); a sample that was never averaged in has no target yet and
      adds no consistency cost.

    The ensemble stores logits, as the seed code does; the consistency compares softmax
    outputs (MSE by default, as both papers recommend; `consistency="kl"` for KL).

    Under a `tf.distribute` strategy each replica all-gathers the batch's indices and logits
    and applies the same scatter, so the replicas' copies stay identical and a run equals one
    device with the same global batch. Indices must be unique within a global batch (the
    batch is rejected otherwise): `tfssl.data.make_dataset` guarantees it.

    Memory: the ensemble holds `num_samples * num_classes` float32 (plus one float32 count
    per sample), on the training devices and in checkpoints, never in serving exports
    (`tfssl.export.export_saved_model`). `state_dtype="bfloat16"` or `"float16"` stores the
    ensemble in 2 bytes a value; it is still read, averaged and corrected in float32, and
    only the stored logits are rounded (the counts stay float32, since bfloat16 counts
    stop at 256 and the startup-bias correction of a large `alpha` still needs them).

    Mixed precision: under `keras.mixed_precision.set_dtype_policy("mixed_float16")` (or
    `"mixed_bfloat16"`) the backbone computes in half precision; its logits are cast to
    float32 before the target, the losses and the ensemble update, whatever `state_dtype`.

    Example:

    ```python
    model = tfssl.models.TemporalEnsembling(
        backbone, num_samples=len(x), num_labeled=1000,
        max_unsupervised_weight=30.0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), metrics=["accuracy"])
    model.fit(tfssl.data.make_dataset(x, y_semi, batch_size=100, shuffle=True), epochs=300)
    ```

    Args:
        backbone: `keras.Model` mapping inputs to logits.
        num_samples: Number of training rows (the range of `idx`): the size of the
            ensemble.
        num_classes: Number of classes. Defaults to the backbone's output size.
        alpha: Ensemble momentum. Defaults to `0.6` (the paper's).
        target: `"seed"` or `"paper"`, see above. Defaults to `"seed"`.
        consistency: `"mse"` or `"kl"` between softmax outputs. Defaults to `"mse"`.
        state_dtype: Storage dtype of the ensemble, one of `"float32"`, `"float16"`,
            `"bfloat16"` (see Memory above). Defaults to `"float32"`.
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
        num_samples,
        num_classes=None,
        alpha=0.6,
        target="seed",
        consistency="mse",
        state_dtype="float32",
        **kwargs,
    ):
        super().__init__(backbone, num_samples, num_classes, **kwargs)
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"`alpha` must be in [0, 1). Received: alpha={alpha}")
        check_choice("target", target, ("seed", "paper"))
        check_choice("consistency", consistency, ("mse", "kl"))
        check_choice("state_dtype", state_dtype, STATE_DTYPES)
        self.alpha = float(alpha)
        self.target = target
        self.consistency = consistency
        self.state_dtype = state_dtype
        self.ensemble = self.add_sample_state("ensemble", (self.num_classes,), dtype=state_dtype)
        self.ensemble_counts = self.add_sample_state("ensemble_counts", ())

    def compute_losses(self, x, sample_idx, labels):
        if sample_idx is None:
            raise ValueError("TemporalEnsembling trains on {'x': x, 'idx': idx} inputs.")
        # Under a mixed dtype policy the backbone's logits are half precision: the ensemble
        # arithmetic and the losses run in float32.
        logits = tf.cast(self.backbone(x, training=True), tf.float32)
        previous = self.gather_sample_state(self.ensemble, sample_idx)
        counts = self.gather_sample_state(self.ensemble_counts, sample_idx)[:, None]
        if self.target == "seed":
            updated = self.alpha * previous + (1.0 - self.alpha) * logits
            target = updated / (1.0 - self.alpha ** (counts + 1.0))
        else:
            # A sample never averaged in has no target yet: it targets itself (zero cost).
            corrected = tf.math.divide_no_nan(previous, 1.0 - self.alpha**counts)
            target = tf.stop_gradient(tf.where(counts > 0, corrected, logits))
        supervised = self.supervised_loss(labels, logits)
        consistency = global_consistency(logits, target, self.consistency)
        outputs = {"logits": logits, "previous": previous, "counts": counts}
        return self.combine_losses(supervised, consistency), outputs

    def update_state_after_step(self, sample_idx, outputs):
        # The rows read before the step: nothing else writes the ensemble in between.
        logits = tf.stop_gradient(outputs["logits"])
        updated = self.alpha * outputs["previous"] + (1.0 - self.alpha) * logits
        counts = outputs["counts"][:, 0] + 1.0
        self.scatter_sample_state(
            [(self.ensemble, updated), (self.ensemble_counts, counts)], sample_idx
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "alpha": self.alpha,
                "target": self.target,
                "consistency": self.consistency,
                "state_dtype": self.state_dtype,
            }
        )
        return config
