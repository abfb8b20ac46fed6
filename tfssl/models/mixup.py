"""Mixup training: input, word, sentence and manifold mixup.

Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018, arXiv 1710.09412;
Guo et al., "Augmenting Data with Mixup for Sentence Classification: An Empirical Study",
arXiv 1905.08941 (word mixup on embeddings, sentence mixup on the encoder output); Verma et
al., "Manifold Mixup: Better Representations by Interpolating Hidden States", ICML 2019,
arXiv 1806.05236. Ports seed 002: one `Beta(alpha, alpha)` draw per batch folded to
`max(lam, 1 - lam)`, an in-batch shuffle, integer labels one-hot
(`tfssl.layers.mixup`), applied at the input, the embeddings, the encoder output, or a
layer drawn at random every step.
"""

import keras
import tensorflow as tf

from tfssl import layers
from tfssl.data import UNLABELED
from tfssl.models._checks import check_choice
from tfssl.models._graph import Split, embedding_name, layer_of
from tfssl.models._replicas import global_mean
from tfssl.models.base import SemiSupervisedModel

__all__ = ["MixupModel"]

_PLACES = ("input", "embedding", "encoder", "manifold")


@keras.saving.register_keras_serializable(package="tfssl")
class MixupModel(SemiSupervisedModel):
    """Mixup training of a backbone on its labeled rows, at the input or an inner layer.

    Rows labeled -1 are ignored: a step takes the batch's labeled rows, draws
    `lam = max(m, 1 - m)` with `m ~ Beta(alpha, alpha)` (one per batch, the seed's) and an
    in-batch partner for every row, mixes the representation at the chosen place and the
    one-hot labels with `lam`, runs the rest of the backbone and minimises the soft-label
    cross-entropy. Where the mix happens (`at`):

    - `"input"`: the backbone's input (images, features): the seed's `mixup`.
    - `"embedding"`: the output of the backbone's `Embedding` layer ("word mixup"); the one
      `Embedding` layer is found by itself, else name it in `mixup_layers`.
    - `"encoder"`: the representation that enters the classification head ("sentence
      mixup"), defined as the input of the backbone's last layer (the layer that returns the
      logits), e.g. the pooled sentence vector of a fastText backbone. Naming a layer in
      `mixup_layers` mixes its output instead.
    - `"manifold"`: every step draws, uniformly, one of the input and the outputs of the
      layers named in `mixup_layers` (default: the input and the encoder) and mixes there.

    To mix inside the backbone, it is split at the mixing tensor `h` into two Keras models
    that share its layers (`tfssl.models._graph.Split`, the split of `PerturbationSite`):
    `head: x -> h` and `tail: (x, h) -> logits`. Training them trains the backbone, the
    serving graph stays the backbone itself, and no private Keras attribute is read. The
    tail reads `x` where the graph after `h` still does, and there a row keeps its own,
    unmixed value: the mask of an `Embedding(mask_zero=True)` (computed from the row's own
    token ids) and a skip connection around the mixed layer (only what flows through `h`
    is mixed). This needs a functional or `Sequential` backbone with one input and one
    output, with the layer at its top level and called once.

    Formula:

    ```python
    lam = max(m, 1 - m)                                    # m ~ Beta(alpha, alpha)
    h = head(x_labeled)                                    # identity for "input"
    logits = tail(x_labeled, lam * h + (1 - lam) * h[index])
    y_mix = lam * one_hot(y) + (1 - lam) * one_hot(y)[index]
    loss = CE(y_mix, logits) = lam * CE(y, logits) + (1 - lam) * CE(y[index], logits)
    ```

    The mean is over the labeled rows (`supervised_normalize="labeled"`) or, as the seed's
    code, over the batch (`"batch"`). The accuracy that `fit` reports is the one of the
    mixed rows against their own label. Under `tf.distribute.MirroredStrategy` each replica
    mixes its own labeled rows (a partner is a row of the same replica) and, for
    `"manifold"`, draws its own layer; see `tfssl.layers.Mixup` for what the replicas draw.

    Example:

    ```python
    model = tfssl.models.MixupModel(backbone, alpha=0.2, supervised_normalize="labeled")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    model.fit(tfssl.data.make_dataset(x, y_semi, 100, shuffle=True))
    ```

    Args:
        backbone: `keras.Model` mapping inputs to logits; functional or `Sequential` for
            any `at` but `"input"`.
        alpha: Beta concentration, `> 0`. Defaults to `0.2`.
        at: `"input"`, `"embedding"`, `"encoder"` or `"manifold"`. Defaults to `"input"`.
        mixup_layers: Names of backbone layers whose output is mixed: one name for
            `"embedding"` or `"encoder"`, any number for `"manifold"`; `None` for the
            defaults above. Defaults to `None`.
        seed: Seed of the draws (`tfssl.layers.Mixup`). Defaults to `None`.
        **kwargs: `num_samples`, `num_classes`, `supervised_normalize` of
            `SemiSupervisedModel` (the other arguments have no effect: there is no
            unsupervised term), and `keras.Model` arguments.

    Raises:
        ValueError: If `alpha <= 0`, `at` is unknown, a name in `mixup_layers` is not a
            layer of the backbone, `at="embedding"` finds no (or several) `Embedding`
            layers, or the backbone cannot be split where asked.

    References:
        Zhang et al., mixup: Beyond Empirical Risk Minimization, arXiv 1710.09412.
        Guo et al., Augmenting Data with Mixup for Sentence Classification, arXiv 1905.08941.
        Verma et al., Manifold Mixup, arXiv 1806.05236.
    """

    loss_terms = ("loss", "supervised_loss")
    schedule_terms = ("mixup_lambda",)

    def __init__(self, backbone, alpha=0.2, at="input", mixup_layers=None, seed=None, **kwargs):
        super().__init__(backbone, **kwargs)
        check_choice("at", at, _PLACES)
        if isinstance(mixup_layers, str):
            mixup_layers = (mixup_layers,)
        self.mixup = layers.Mixup(alpha, self.num_classes, seed=seed, name="mixup")
        self.alpha = self.mixup.alpha
        self.at = at
        self.mixup_layers = None if mixup_layers is None else tuple(mixup_layers)
        self.seed = seed
        self._places = _Places(_split_points(backbone, at, self.mixup_layers))

    def draw_mixing(self, num_rows):
        """One step's draws: `(lam, index, place)`, the folded weight, the partners of
        `num_rows` rows and the position of the mixing place (0 unless `"manifold"`)."""
        lam, index = self.mixup.draw(num_rows)
        num_places = len(self._places.splits)
        if num_places == 1:
            return lam, index, tf.constant(0, tf.int32)
        place = keras.random.randint((), 0, num_places, seed=self.mixup.seed_generator)
        return lam, index, tf.cast(place, tf.int32)

    def mixed_logits(self, x, lam, index, place, training=True):
        """Logits of the backbone with its representation at `place` mixed."""

        def forward(split):
            def run():
                hidden = split.inputs(x, training=training)
                mixed = layers.mix_with_partners(hidden, lam, index)
                return split.logits(x, mixed, training=training)

            return run

        branches = [forward(split) for split in self._places.splits]
        if len(branches) == 1:
            return branches[0]()
        return tf.switch_case(place, branches)

    def compute_losses(self, x, sample_idx, labels):
        labeled = labels != UNLABELED
        x_labeled = tf.boolean_mask(x, labeled)
        num_labeled = tf.reduce_sum(tf.cast(labeled, tf.int32))
        lam, index, place = self.draw_mixing(num_labeled)
        targets = layers.mix_with_partners(
            tf.one_hot(tf.boolean_mask(labels, labeled), self.num_classes), lam, index
        )
        # A batch without labels runs the passes on its zero rows in inference mode: in
        # training mode batch norm would average over no rows. The pass still ties the loss
        # to the weights, so an eager step gets zero gradients, as a graph step does from
        # `tf.cond`, instead of none.
        logits_labeled = tf.cast(
            tf.cond(
                num_labeled > 0,
                lambda: self.mixed_logits(x_labeled, lam, index, place),
                lambda: self.mixed_logits(x_labeled, lam, index, place, training=False),
            ),
            tf.float32,
        )
        cross_entropy = keras.losses.categorical_crossentropy(
            targets, logits_labeled, from_logits=True
        )
        # Back to batch positions, for the batch normalisation and the metrics.
        rows = tf.where(labeled)
        batch_size = tf.shape(labels, out_type=tf.int64)[0]
        per_sample = tf.scatter_nd(rows, cross_entropy, [batch_size])
        logits = tf.scatter_nd(rows, logits_labeled, [batch_size, self.num_classes])
        if self.supervised_normalize == "batch":
            supervised = global_mean(per_sample)
        else:
            supervised = global_mean(per_sample, weights=tf.cast(labeled, tf.float32))
        terms = {"loss": supervised, "supervised_loss": supervised, "mixup_lambda": lam}
        return terms, {"logits": logits}

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "alpha": self.alpha,
                "at": self.at,
                "mixup_layers": None if self.mixup_layers is None else list(self.mixup_layers),
                "seed": self.seed,
            }
        )
        return config


class _Places:
    """The `Split` of each mixing place, kept out of Keras' tracking: their models share
    the backbone's layers, which would otherwise be saved twice."""

    def __init__(self, splits):
        self.splits = splits


def _split_points(backbone, at, names):
    """One `Split` per mixing place of `at`."""
    if at == "input":
        if names is not None:
            raise ValueError(
                f"`mixup_layers` is for at='embedding', 'encoder' or 'manifold'. "
                f"Received: at='input', mixup_layers={list(names)}"
            )
        return [Split(backbone)]
    if names is not None:
        for name in names:
            layer_of(backbone, name, "mixup_layers", received=list(names))
        if at != "manifold" and len(names) != 1:
            raise ValueError(
                f"at={at!r} mixes at one layer. Received: mixup_layers={list(names)}"
            )
    if at == "embedding":
        name = names[0] if names else embedding_name(backbone, "mixup_layers", required=True)
        return [Split(backbone, name, "mixup_layers")]
    if names is None:
        encoder = Split(backbone, argument="mixup_layers", encoder=True)
        return [encoder] if at == "encoder" else [Split(backbone), encoder]
    if at == "encoder":
        return [Split(backbone, names[0], "mixup_layers")]
    return [Split(backbone)] + [Split(backbone, name, "mixup_layers") for name in names]
