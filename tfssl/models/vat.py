"""Virtual Adversarial Training (VAT) and VAT + entropy minimization.

Miyato, Maeda, Koyama & Ishii, "Virtual Adversarial Training: A Regularization Method for
Supervised and Semi-Supervised Learning", arXiv 1704.03976 (VAT + EntMin in its section
3.3); on text, Miyato, Dai & Goodfellow, arXiv 1605.07725. Seed 003, section 10, points to
VAT (arXiv 1507.00677) for semi-supervised text but has no code for it: the algorithm
follows the paper and the authors' TensorFlow code (github.com/takerum/vat_tf).
"""

import random

import keras
import tensorflow as tf

from tfssl import losses, schedules
from tfssl.models._replicas import global_mean
from tfssl.models._checks import check_at_least_one, check_positive_number
from tfssl.models._perturbation import PerturbationSite, l2_norm, normalize
from tfssl.models.base import RAMP_UP_SHORTHAND, SemiSupervisedModel

__all__ = ["VAT"]

# The relative rounding unit (machine epsilon) of the half-precision compute dtypes.
_ROUNDING_UNITS = {"float16": 2.0**-10, "bfloat16": 2.0**-7}
# The finite-difference step of a half-precision backbone is at least this many rounding
# units of the row's norm: fewer leave the difference of the two passes mostly rounding.
XI_FLOOR_UNITS = 8.0


@keras.saving.register_keras_serializable(package="tfssl")
class VAT(SemiSupervisedModel):
    """Virtual adversarial training: a smooth prediction around every row, labeled or not.

    A step, on every row of the batch:

    1. `z`: the tensor at the perturbation site (`PerturbationSite`: a named layer's
       output, the only `Embedding`, or the input); `logits = tail(z)` and
       `p = softmax(logits)`, held fixed as the target.
    2. Power iteration for the direction that changes `p` the most: from a random unit
       vector `d`, `power_iterations` times `d <- grad_d KL(p || p(z + xi * d / ||d||))`.
    3. `r_vadv = epsilon * d / ||d||` and the virtual adversarial loss
       `KL(p || p(z + r_vadv))`, averaged over the rows.
    4. `loss = masked CE + w * vat_loss`, plus `entropy_weight * H(p)` with
       `entropy_minimization=True` (VAT + EntMin).

    Norms are per sample, over all of a row's axes. Every pass runs in training mode, as
    in the authors' code: with a stochastic backbone (dropout, noise) the VAT term must
    constrain the noisy network the cross-entropy trains, or it can be satisfied by a flat
    clean network (a prototype measured on Fashion-MNIST fell to 0.41 accuracy). Unlike the authors'
    code, the extra passes also update batch-norm moving statistics (Keras has no switch
    for that). With such a backbone the two passes of the power iteration differ by their
    noise far more than by `xi * d` (an input noise of 0.3 against 1e-6), so the direction
    found is the one that most increases the disagreement of two noisy predictions; only a
    deterministic backbone gives the Hessian's dominant eigenvector that the paper derives.

    The weight `w`: by default the paper's fixed `alpha = max_unsupervised_weight` (1.0 in
    the paper, `ramp_up=False`); with `ramp_up=True` the base class's schedule,
    `ramp_up(epoch) * max_unsupervised_weight [* num_labeled / num_samples]`.

    The random start `d` of a row is a stateless normal draw keyed by `(seed, optimizer
    step, idx)`, with `idx` the row's sample index from the batch (`{"x", "idx"}`), or its
    position in the batch when there is none. A run is thus repeatable, and under
    `MirroredStrategy` each row gets the same draw on any replica, so two replicas equal
    one device. `idx` is used only as a key here: it is checked against `num_samples`
    only when that is given. The power iteration itself is at float32 precision: with
    `xi = 1e-6` the finite difference changes the logits by about their rounding error, so
    the direction carries rounding noise (as in the authors' float32 code) and runs whose
    matmuls sum in another order (8-row instead of 16-row batches on two replicas) agree
    to about 1e-2 in the weights after a few steps; with `xi = 1e-2`, to 1e-6.

    Under a mixed precision policy (`mixed_float16`, `mixed_bfloat16`) the backbone computes
    in half precision, whose rounding unit `u` (2^-10 for float16, 2^-7 for bfloat16) is far
    above `xi = 1e-6`: `z + xi * d` rounds back to `z` and the power iteration's direction
    is zero or noise. So when a layer of the backbone computes in half precision, a row's
    step is raised to `max(xi, 8 * u * ||z_row||)` (`finite_difference_step`), 8 rounding
    units of the row's norm: on a 6-feature MLP and on the 784-pixel `mlp` the direction
    then has a median cosine of 0.94 to 1.00 with the exact float32 one (against 0 with
    `xi = 1e-6`; `tests/test_vat.py` checks the direction against the exact finite
    difference). A float32 backbone uses `xi` as given.

    Defaults per domain (`xi` is 1e-6 in the authors' image code; 1 power iteration
    throughout):

    | data | `epsilon` | source |
    |---|---|---|
    | CIFAR-10 (ZCA), with / without augmentation | 8.0 / 10.0 | vat_tf README |
    | SVHN, with / without augmentation | 3.5 / 2.5 | vat_tf README |
    | text, on normalized word embeddings (IMDB), `xi=0.1` | 5.0 | arXiv 1605.07725 |
    | Fashion-MNIST, `tfssl.backbones.mlp`, 1000 labels | 5.0 | the benchmark's registry (chosen on held-out rows) |

    The default `epsilon=8.0` is CIFAR-10's with augmentation, the setting of the paper's
    headline VAT + EntMin result. Oliver et al. (arXiv 1804.09170) report on CIFAR-10 with
    4000 labels 13.86% error for VAT and 13.13% for VAT + EntMin; on SVHN with 1000 labels
    5.63% and 5.35%.

    Example:

    ```python
    model = tfssl.models.VAT(backbone, epsilon=5.0, entropy_minimization=True,
                             supervised_normalize="labeled")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    model.fit(tfssl.data.make_dataset(x, y_semi, 100, labeled_per_batch=50), epochs=15)
    ```

    Args:
        backbone: `keras.Model` mapping inputs to logits.
        num_samples: Number of training rows. Optional (only checks `idx` and sets the
            `num_labeled` factor of `ramp_up=True`).
        num_classes: Number of classes. Defaults to the backbone's output size.
        xi: Length of the finite-difference step of the power iteration, `> 0`; raised
            per row under a half-precision backbone (see above). Defaults to `1e-6`.
        epsilon: L2 length of the virtual adversarial perturbation, `> 0`. Defaults to
            `8.0` (see the table).
        power_iterations: Number of power iterations, `>= 1`. Defaults to `1`.
        entropy_minimization: Add the entropy of `p` to the loss (VAT + EntMin).
            Defaults to `False`.
        entropy_weight: Weight of the entropy term, `>= 0`. Defaults to `1.0` (the
            paper's and the authors' code; Oliver et al. tuned their own multiplier).
        ramp_up: Shorthand: weight the VAT term with the base class's ramp-up
            (`tfssl.schedules.RampUpWeight` from `max_unsupervised_weight`, `ramp_up_method`,
            `ramp_up_epochs`, `num_labeled`) instead of the paper's fixed weight. Defaults
            to `False`.
        layer: Name of the layer whose output is perturbed. Defaults to `None`: the only
            `Embedding`, else the input.
        seed: Seed of the random start directions. Defaults to `None`: drawn from
            Python's generator (seeded by `keras.utils.set_random_seed`) and kept in the
            config.
        **kwargs: `weight_schedule` (default `ConstantWeight(max_unsupervised_weight)`,
            the paper's fixed `alpha`), `max_unsupervised_weight` (the weight `alpha`,
            1.0 by default), `supervised_normalize` and the other arguments of
            `SemiSupervisedModel`, and `keras.Model` arguments.

    Raises:
        ValueError: If `xi`, `epsilon` is not > 0, `power_iterations` < 1,
            `entropy_weight` < 0, or `layer` is not usable (see `PerturbationSite`).

    References:
        Miyato et al., Virtual Adversarial Training: A Regularization Method for Supervised
        and Semi-Supervised Learning, arXiv 1704.03976.
        Miyato et al., Adversarial Training Methods for Semi-Supervised Text
        Classification, arXiv 1605.07725.
        Oliver et al., Realistic Evaluation of Deep Semi-Supervised Learning Algorithms,
        arXiv 1804.09170.
    """

    loss_terms = ("loss", "supervised_loss", "vat_loss", "entropy_loss")

    def __init__(
        self,
        backbone,
        num_samples=None,
        num_classes=None,
        xi=1e-6,
        epsilon=8.0,
        power_iterations=1,
        entropy_minimization=False,
        entropy_weight=1.0,
        ramp_up=False,
        layer=None,
        seed=None,
        **kwargs,
    ):
        if not ramp_up and kwargs.get("weight_schedule") is None:
            # The paper's fixed weight: `max_unsupervised_weight` is the constant alpha, and
            # the other ramp-up arguments do not apply.
            alpha = kwargs.get("max_unsupervised_weight")
            for name in RAMP_UP_SHORTHAND:
                kwargs.pop(name, None)
            kwargs["weight_schedule"] = schedules.ConstantWeight(1.0 if alpha is None else alpha)
        super().__init__(backbone, num_samples, num_classes, **kwargs)
        self.xi = check_positive_number("xi", xi)
        self.epsilon = check_positive_number("epsilon", epsilon)
        self.power_iterations = check_at_least_one("power_iterations", power_iterations)
        if isinstance(entropy_weight, bool) or not entropy_weight >= 0:
            raise ValueError(
                f"`entropy_weight` must be >= 0. Received: entropy_weight={entropy_weight!r}"
            )
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"`seed` must be an integer or None. Received: seed={seed!r}")
        self.entropy_minimization = bool(entropy_minimization)
        self.entropy_weight = float(entropy_weight)
        self.layer = layer
        # As Keras' layers do for seed=None: a draw from Python's generator.
        self.seed = random.randint(1, 2**31 - 1) if seed is None else seed
        self.site = PerturbationSite(backbone, layer)
        self._rounding_unit = _rounding_unit(backbone)

    def compute_losses(self, x, sample_idx, labels):
        z = self.site.inputs(x, training=True)
        logits = self.site.logits(x, z, training=True)
        supervised = self.supervised_loss(labels, logits)
        target = tf.stop_gradient(logits)

        r_vadv = self.epsilon * self.virtual_adversarial_direction(x, z, target, sample_idx)

        adversarial_logits = self.site.logits(x, z + r_vadv, training=True)
        vat = global_mean(
            losses.consistency_loss(adversarial_logits, target, kind="kl", reduction="none")
        )
        entropy = global_mean(losses.entropy_loss(logits, reduction="none"))
        terms = self.combine_losses(supervised, vat, unsupervised_name="vat_loss")
        terms["entropy_loss"] = entropy
        if self.entropy_minimization:
            terms["loss"] = terms["loss"] + self.entropy_weight * entropy
        return terms, {"logits": logits}

    def virtual_adversarial_direction(self, x, z, target, sample_idx=None):
        """The power iteration's direction: per row, the unit vector `d / ||d||` along
        which the prediction changes the most.

        Args:
            x: The batch's inputs.
            z: The tensor at the perturbation site (`self.site.inputs(x)`).
            target: The logits at `z`, held fixed.
            sample_idx: Sample indices keying the random start. Defaults to `None` (the
                rows' positions in the batch).

        Returns:
            A tensor shaped like `z`, of unit L2 norm per row (zero for a row whose
            gradient is zero).
        """
        d = self._random_directions(z, sample_idx)
        fixed_z = tf.stop_gradient(z)
        step = self.finite_difference_step(fixed_z)
        for _ in range(self.power_iterations):
            d = step * normalize(d, "sample")
            with tf.GradientTape() as tape:
                tape.watch(d)
                perturbed = self.site.logits(x, fixed_z + d, training=True)
                # A sum, not a mean: each row's gradient is its own, whatever the batch.
                divergence = tf.reduce_sum(
                    losses.consistency_loss(perturbed, target, kind="kl", reduction="none")
                )
            d = tf.stop_gradient(tape.gradient(divergence, d))
        return normalize(d, "sample")

    def finite_difference_step(self, z):
        """The length of each row's finite-difference step: `xi`, raised under a
        half-precision backbone to `XI_FLOOR_UNITS * u * ||z_row||` where that is larger
        (`u` the rounding unit of the coarsest compute dtype, see the class docstring).

        Args:
            z: The tensor at the perturbation site, `(batch, ...)`.

        Returns:
            A tensor of `z`'s dtype: the scalar `xi` for a float32 backbone, else shaped
            `(batch, 1, ..., 1)`.
        """
        if self._rounding_unit is None:
            return tf.cast(self.xi, z.dtype)
        # The norm in float32: a float16 sum of squares overflows past 65504.
        norm = l2_norm(tf.cast(z, tf.float32), "sample")
        floor = XI_FLOOR_UNITS * self._rounding_unit * norm
        return tf.cast(tf.maximum(self.xi, floor), z.dtype)

    def _random_directions(self, z, sample_idx):
        """One standard normal draw per row, keyed by (seed, step, idx)."""
        optimizer = getattr(self, "optimizer", None)
        step = 0 if optimizer is None else optimizer.iterations
        key = tf.stack([tf.constant(self.seed, tf.int64), tf.cast(step, tf.int64)])
        if sample_idx is None:
            sample_idx = tf.range(tf.shape(z)[0])
        row_shape = tf.shape(z)[1:]

        def draw(index):
            row_key = tf.random.experimental.stateless_fold_in(key, index)
            return tf.random.stateless_normal(row_shape, seed=row_key, dtype=z.dtype)

        return tf.map_fn(
            draw,
            tf.cast(sample_idx, tf.int64),
            fn_output_signature=tf.TensorSpec(z.shape[1:], z.dtype),
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "xi": self.xi,
                "epsilon": self.epsilon,
                "power_iterations": self.power_iterations,
                "entropy_minimization": self.entropy_minimization,
                "entropy_weight": self.entropy_weight,
                "layer": self.layer,
                "seed": self.seed,
            }
        )
        return config


def _rounding_unit(backbone):
    """The rounding unit of the coarsest half-precision compute dtype among the backbone's
    layers, or `None` when they all compute in float32 or wider."""
    units = [
        _ROUNDING_UNITS[layer.compute_dtype]
        for layer in backbone.layers
        if layer.compute_dtype in _ROUNDING_UNITS
    ]
    return max(units, default=None)
