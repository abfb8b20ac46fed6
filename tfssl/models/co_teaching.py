"""Co-teaching.

Han, Yao, Yu, Niu, Xu, Hu, Tsang & Sugiyama, "Co-teaching: Robust Training of Deep Neural
Networks with Extremely Noisy Labels", NeurIPS 2018, arXiv 1804.06872. Networks learn clean
rows before they memorise wrong labels, so the rows with a small loss are mostly clean; two
networks pick them for each other, so that one network's mistakes in the choice are not fed
back into itself.
"""

import keras
import tensorflow as tf

from tfssl import losses as losses_lib
from tfssl.data import UNLABELED
from tfssl.models._pair import make_pair, pair_serving_model, select_small_loss, split_pair_config
from tfssl.models._replicas import global_mean
from tfssl.models._checks import resolve_num_classes
from tfssl.models.base import SemiSupervisedModel

__all__ = ["CoTeaching"]


@keras.saving.register_keras_serializable(package="tfssl")
class CoTeaching(SemiSupervisedModel):
    """Co-teaching: two networks, each trained on the small-loss labeled rows the other
    chooses.

    A step (the paper's Algorithm 1), with `T` the epoch:

    1. Both networks score the batch: `z_a = backbone(x)`, `z_b = peer(x)` (training mode),
       and the cross-entropy of every labeled row under each.
    2. The share kept: `R(T) = 1 - min(T / T_k * forget_rate, forget_rate)`: every row at
       first, then fewer over `T_k` epochs until `1 - forget_rate`.
    3. Network `b` chooses for `a` the `R(T)` share of the labeled rows with the smallest
       loss under `b`, and `a` for `b` (over the global batch under a `tf.distribute`
       strategy; rows tied with the last one kept are all kept).
    4. Each network takes a step on the cross-entropy of the rows the other chose (their
       mean); the two losses are summed, and each network's gradient is that of its own.

    Unlabeled rows (`-1`) take no part: Co-teaching is a supervised method, and
    `forget_rate` is the share of wrong labels among the labeled rows. `predict`,
    `evaluate` and the export serve `backbone` (`serving_model("peer")` the other network).

    Formula:

    ```python
    R = 1 - min(epoch / T_k * forget_rate, forget_rate)
    keep_a = labeled rows with the floor(R * n_labeled) smallest CE(y, z_b)
    keep_b = labeled rows with the floor(R * n_labeled) smallest CE(y, z_a)
    loss = mean_{keep_a} CE(y, z_a) + mean_{keep_b} CE(y, z_b)
    ```

    Example:

    ```python
    model = tfssl.models.CoTeaching(backbone, forget_rate=0.5, gradual_epochs=10)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    model.fit(tfssl.data.make_dataset(x, y_noisy, batch_size=100, shuffle=True), epochs=30)
    ```

    Args:
        backbone: `keras.Model` mapping inputs to logits, the first network (served).
        peer: The second network, with the backbone's inputs and output shape. Defaults
            to `None`: a copy of `backbone`'s architecture with newly initialised weights
            (`keras.models.clone_model`).
        forget_rate: The share of labeled rows dropped after the ramp, in `[0, 1)`: the
            noise rate, known or estimated (the paper's `tau`). Defaults to `0.2`.
        gradual_epochs: Epochs over which the dropped share rises to `forget_rate`, a
            positive integer (the paper's `T_k`). Defaults to `10`.
        num_samples: Number of training rows; optional, to check `idx`.
        num_classes: Number of classes. Defaults to the backbone's output size.
        **kwargs: `keras.Model` arguments. `supervised_normalize` is not read (each
            network's loss is a mean over the rows chosen for it) and the unsupervised-weight
            arguments are accepted and unused.

    Raises:
        ValueError: If `forget_rate` is outside `[0, 1)`, `gradual_epochs` is not a
            positive integer, `peer` is not a `keras.Model` with the backbone's output
            shape, or a `supervised_objective` other than `"crossentropy"` or a
            `label_smoothing` is given.

    References:
        Han et al., Co-teaching: Robust Training of Deep Neural Networks with Extremely
        Noisy Labels, arXiv 1804.06872.
    """

    loss_terms = ("loss", "supervised_loss")
    schedule_terms = ("remember_rate",)

    def __init__(self, backbone, peer=None, forget_rate=0.2, gradual_epochs=10,
                 num_samples=None, num_classes=None, **kwargs):
        if isinstance(forget_rate, bool) or not isinstance(forget_rate, (int, float)) \
                or not 0 <= forget_rate < 1:
            raise ValueError(
                f"`forget_rate` must be a number in [0, 1). Received: forget_rate={forget_rate!r}"
            )
        if isinstance(gradual_epochs, bool) or not isinstance(gradual_epochs, int) \
                or gradual_epochs < 1:
            raise ValueError(
                "`gradual_epochs` must be a positive integer. "
                f"Received: gradual_epochs={gradual_epochs!r}"
            )
        if not isinstance(backbone, keras.Model):
            raise ValueError(
                f"`backbone` must be a keras.Model mapping inputs to logits. "
                f"Received: backbone={backbone!r}"
            )
        num_classes = resolve_num_classes(backbone, num_classes, sigmoid=False)
        pair, _ = make_pair(backbone, peer)
        super().__init__(pair, num_samples, num_classes, **kwargs)
        if self.supervised_objective != "crossentropy" or self.label_smoothing:
            # The small-loss choice ranks rows by the paper's plain cross-entropy.
            raise ValueError(
                "CoTeaching ranks and trains on the plain cross-entropy. Received: "
                f"supervised_objective={self.supervised_objective!r}, "
                f"label_smoothing={self.label_smoothing}"
            )
        self.forget_rate = float(forget_rate)
        self.gradual_epochs = gradual_epochs

    @property
    def networks(self):
        """The two networks, `[backbone, peer]`."""
        return self.backbone.networks

    def remember_rate(self):
        """`R(epoch) = 1 - min(epoch / gradual_epochs * forget_rate, forget_rate)`."""
        epoch = tf.cast(self.epoch, tf.float32)
        return 1.0 - tf.minimum(epoch / self.gradual_epochs * self.forget_rate, self.forget_rate)

    def compute_losses(self, x, sample_idx, labels):
        logits = [tf.cast(network(x, training=True), tf.float32) for network in self.networks]
        per_sample = [
            losses_lib.masked_sparse_categorical_crossentropy(labels, z, normalize="none")
            for z in logits
        ]
        labeled = labels != UNLABELED
        remember_rate = self.remember_rate()
        chosen_by = [
            select_small_loss(tf.stop_gradient(loss), labeled, remember_rate)
            for loss in per_sample
        ]
        # Each network learns from the rows the other one chose.
        loss = global_mean(per_sample[0], weights=chosen_by[1]) + global_mean(
            per_sample[1], weights=chosen_by[0]
        )
        terms = {"loss": loss, "supervised_loss": loss, "remember_rate": remember_rate}
        return terms, {"logits": logits[0]}

    def serving_model(self, which="default"):
        """The backbone for `"default"` and `"backbone"`, the other network for `"peer"`."""
        return pair_serving_model(self.networks, which)

    def get_config(self):
        config = split_pair_config(super().get_config())
        config.update(
            {
                "forget_rate": self.forget_rate,
                "gradual_epochs": self.gradual_epochs,
            }
        )
        return config
