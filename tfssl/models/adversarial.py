"""Adversarial training on inputs or embeddings: FGM and PGD.

Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial Examples", arXiv
1412.6572 (the L2 fast gradient method); Miyato, Dai & Goodfellow, "Adversarial Training
Methods for Semi-Supervised Text Classification", arXiv 1605.07725 (the perturbation on word
embeddings, normalised per sample); Madry et al., "Towards Deep Learning Models Resistant to
Adversarial Attacks", arXiv 1706.06083 (PGD). Ports the seed's PyTorch `FGM` and `PGD` classes
(seed 003, section 10, "NLP中的对抗训练"), which perturb the embedding weights, take one norm
over the whole batch, add the adversarial gradient to the clean one and restore the weights.

`PerturbationSite` (`tfssl.models._perturbation`, shared with `VAT`) says where the
perturbation goes: a named layer's output, the only `Embedding`, or the input.
"""

import keras
import tensorflow as tf

from tfssl.models._checks import check_at_least_one, check_choice, check_positive_number
from tfssl.models._perturbation import NORMS, PerturbationSite, l2_norm, normalize
from tfssl.models.base import SemiSupervisedModel

__all__ = ["AdversarialTraining", "PerturbationSite", "adversarial_inputs", "normalize"]

METHODS = ("fgm", "pgd")


def _project(r, epsilon, norm):
    """Scales `r` back into the `epsilon` ball where it left it (the seed's `project`)."""
    return r * tf.minimum(1.0, tf.math.divide_no_nan(epsilon, l2_norm(r, norm)))


def _gradient(loss_fn, point):
    with tf.GradientTape() as tape:
        tape.watch(point)
        loss = loss_fn(point)
    return tape.gradient(loss, point)


def _perturbation(loss_fn, z, gradient, method, epsilon, step_size, steps, norm):
    """The FGM or PGD perturbation of `z`, held fixed (no gradient flows through it).

    Args:
        loss_fn: `point -> scalar loss` with `point` in place of `z`.
        z: The clean tensor at the site.
        gradient: `d loss_fn / d z` at `z` (the clean pass's, reused as PGD's first step).
    """
    if method == "fgm":
        return tf.stop_gradient(epsilon * normalize(gradient, norm))
    r = tf.zeros_like(z)
    for step in range(steps):
        if step > 0:
            gradient = _gradient(loss_fn, z + r)
        r = _project(r + step_size * normalize(gradient, norm), epsilon, norm)
        r = tf.stop_gradient(r)
    return r


def adversarial_inputs(
    backbone, x, y, epsilon, method="fgm", norm="sample", step_size=0.3, steps=3
):
    """The inputs `x + r` that most raise the backbone's cross-entropy within `epsilon`.

    The attack of the robustness benchmark: FGM (`r = epsilon * g / ||g||`, `g` the gradient
    of the cross-entropy with respect to `x`) or PGD (`steps` steps of `step_size * g / ||g||`
    from `r = 0`, `g` re-evaluated each time, projected into the `epsilon` ball after each).
    The backbone runs in inference mode. `norm="batch"` takes one norm over the batch given
    here, so pass the batch the attack should see as a whole.

    Example:

    ```python
    x_adv = tfssl.models.adversarial_inputs(backbone, x_test[:500], y_test[:500], 1.0)
    robust_accuracy = np.mean(np.argmax(backbone.predict(x_adv), -1) == y_test[:500])
    ```

    Args:
        backbone: `keras.Model` mapping float inputs to logits.
        x: Float inputs, shape `(batch, ...)`.
        y: Integer labels, shape `(batch,)`; rows with -1 are left unperturbed.
        epsilon: L2 radius of the perturbation, `> 0`.
        method: `"fgm"` or `"pgd"`. Defaults to `"fgm"`.
        norm: `"sample"` or `"batch"`, see `AdversarialTraining`. Defaults to `"sample"`.
        step_size: PGD's step length. Defaults to `0.3`.
        steps: PGD's number of steps. Defaults to `3`.

    Returns:
        A float32 tensor shaped like `x`.

    Raises:
        ValueError: For an out-of-range argument, or a backbone whose input is not a float.
    """
    epsilon = check_positive_number("epsilon", epsilon)
    step_size = check_positive_number("step_size", step_size)
    steps = check_at_least_one("steps", steps)
    check_choice("method", method, METHODS)
    check_choice("norm", norm, NORMS)
    site = PerturbationSite(backbone, layer=None)
    if site.head is not None:
        raise ValueError(
            "`adversarial_inputs` perturbs the input; this backbone has an Embedding, so its "
            "input is not continuous. Received a backbone with Embedding layer "
            f"{site.layer!r}"
        )
    x = tf.cast(x, tf.float32)
    labels = tf.cast(tf.reshape(y, [-1]), tf.int32)

    def loss_fn(point):
        logits = backbone(point, training=False)
        mask = tf.cast(labels >= 0, tf.float32)
        per_sample = keras.losses.sparse_categorical_crossentropy(
            tf.maximum(labels, 0), logits, from_logits=True
        )
        return tf.reduce_sum(per_sample * mask)

    gradient = _gradient(loss_fn, x)
    r = _perturbation(loss_fn, x, gradient, method, epsilon, step_size, steps, norm)
    return x + r


@keras.saving.register_keras_serializable(package="tfssl")
class AdversarialTraining(SemiSupervisedModel):
    """Adversarial training (FGM or PGD) on the labeled rows, at the input or an embedding.

    A step, on the labeled rows of the batch (unlabeled rows add nothing):

    1. `z`: the tensor at the perturbation site (`PerturbationSite`: a named layer's output,
       the only `Embedding`, or the input); `logits = tail(z)` in training mode and the
       clean cross-entropy `L(z)`, with its gradient `g = dL/dz`.
    2. The perturbation `r`, held fixed (no gradient flows through it):
       - `"fgm"`: `r = epsilon * g / ||g||`;
       - `"pgd"`: from `r = 0`, `steps` times `r <- project(r + step_size * g / ||g||)`,
         with `g` re-evaluated at `z + r` after the first step (which reuses the clean `g`)
         and `project` scaling `r` back onto the `epsilon` ball when it leaves it.
    3. `loss = L(z) + L(z + r)`: one optimizer step applies the sum of the clean and the
       adversarial gradients. `r` is a tensor added in the forward pass, so nothing of it
       remains in the weights (the seed adds it to the embedding matrix and restores it).

    The norm `||.||` is taken per sample over all its axes (`norm="sample"`: Goodfellow et
    al. and Miyato et al., whose TensorFlow code normalises each sequence's embeddings), or
    once over the whole global batch (`norm="batch"`: the seed's PyTorch recipe, which
    normalises the gradient of the whole embedding matrix, "一个batch统一用一个norm"). Under a
    `tf.distribute` strategy the batch norm sums over all replicas.

    Differences from the seed: the seed perturbs the embedding *matrix* along its gradient
    (rows of words that occur several times get their summed gradient); here the embedding
    *output* of each occurrence is perturbed, as the original paper does. The seed adds the
    clean and adversarial losses with weight 1 each, as here (Goodfellow et al. weigh them
    0.5 / 0.5, the same up to a factor 2 in the learning rate).

    Every pass runs in training mode, so dropout draws a new mask for each of them; the
    batch-norm moving statistics are updated by each of the `steps + 1` passes (PGD) or 2
    (FGM) passes.

    Example:

    ```python
    model = tfssl.models.AdversarialTraining(backbone, method="pgd", epsilon=1.0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    model.fit(tf.data.Dataset.from_tensor_slices((x_labeled, y_labeled)).batch(64))
    ```

    Args:
        backbone: `keras.Model` mapping inputs to logits.
        method: `"fgm"` or `"pgd"`. Defaults to `"fgm"`.
        epsilon: L2 radius of `r`, `> 0`. Defaults to `1.0` (the seed's).
        step_size: PGD's step length (the seed's `alpha`). Defaults to `0.3` (the seed's).
        steps: PGD's number of ascent steps (the seed's `K`). Defaults to `3`.
        norm: `"sample"` or `"batch"`, see above. Defaults to `"sample"` (the papers').
        layer: Name of the layer whose output is perturbed. Defaults to `None`: the only
            `Embedding`, else the input.
        **kwargs: `num_samples`, `num_classes`, `supervised_normalize` of
            `SemiSupervisedModel` (which normalises both terms), and `keras.Model`
            arguments.

    Raises:
        ValueError: If `epsilon` or `step_size` is not > 0, `steps` < 1, `method` or `norm`
            is unknown, or `layer` is not usable (see `PerturbationSite`).

    References:
        Goodfellow et al., Explaining and Harnessing Adversarial Examples, arXiv 1412.6572.
        Miyato et al., Adversarial Training Methods for Semi-Supervised Text
        Classification, arXiv 1605.07725.
        Madry et al., Towards Deep Learning Models Resistant to Adversarial Attacks,
        arXiv 1706.06083.
    """

    loss_terms = ("loss", "supervised_loss", "adversarial_loss")
    schedule_terms = ()

    def __init__(
        self,
        backbone,
        method="fgm",
        epsilon=1.0,
        step_size=0.3,
        steps=3,
        norm="sample",
        layer=None,
        **kwargs,
    ):
        super().__init__(backbone, **kwargs)
        check_choice("method", method, METHODS)
        check_choice("norm", norm, NORMS)
        self.method = method
        self.epsilon = check_positive_number("epsilon", epsilon)
        self.step_size = check_positive_number("step_size", step_size)
        self.steps = check_at_least_one("steps", steps)
        self.norm = norm
        self.layer = layer
        self.site = PerturbationSite(backbone, layer)

    def compute_losses(self, x, sample_idx, labels):
        z = self.site.inputs(x, training=True)
        with tf.GradientTape() as tape:
            tape.watch(z)
            logits = self.site.logits(x, z, training=True)
            supervised = self.supervised_loss(labels, logits)
        gradient = tape.gradient(supervised, z)

        def loss_at(point):
            return self.supervised_loss(labels, self.site.logits(x, point, training=True))

        r = _perturbation(
            loss_at, z, gradient, self.method, self.epsilon, self.step_size, self.steps,
            self.norm,
        )
        adversarial = loss_at(z + r)
        terms = {
            "loss": supervised + adversarial,
            "supervised_loss": supervised,
            "adversarial_loss": adversarial,
        }
        return terms, {"logits": logits}

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "method": self.method,
                "epsilon": self.epsilon,
                "step_size": self.step_size,
                "steps": self.steps,
                "norm": self.norm,
                "layer": self.layer,
            }
        )
        return config

