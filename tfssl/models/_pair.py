"""Two networks trained side by side, for the methods where each network selects or
labels the other's training rows (Co-teaching, DivideMix).

`NetworkPair` holds them as one `keras.Model`, so that the weights the base class trains,
`backbone.trainable_weights`, are both networks'; `peer_network` makes the second network
when only one is given.
"""

import keras
import tensorflow as tf

from tfssl.models._checks import check_same_outputs, output_shape
from tfssl.models._replicas import gather_from_replicas


@keras.saving.register_keras_serializable(package="tfssl")
class NetworkPair(keras.Model):
    """Two networks as one model; its output is the first network's logits."""

    def __init__(self, first, second, **kwargs):
        super().__init__(**kwargs)
        self.first = first
        self.second = second
        self.built = first.built and second.built

    @property
    def networks(self):
        """The two networks, `[first, second]`."""
        return [self.first, self.second]

    def call(self, inputs, training=False):
        return self.first(inputs, training=training)

    def get_config(self):
        config = super().get_config()
        config["first"] = keras.saving.serialize_keras_object(self.first)
        config["second"] = keras.saving.serialize_keras_object(self.second)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for name in ("first", "second"):
            config[name] = keras.saving.deserialize_keras_object(config[name])
        return cls(**config)


def make_pair(backbone, peer):
    """`(pair, num_classes)`: `backbone` and `peer` (a fresh copy of `backbone` with newly
    initialised weights when `None`) as a `NetworkPair`, and their output size (or `None`).

    Raises:
        ValueError: If either is not a `keras.Model` or their output shapes differ.
    """
    for name, network in (("backbone", backbone), ("peer", peer)):
        if network is not None and not isinstance(network, keras.Model):
            raise ValueError(
                f"`{name}` must be a keras.Model mapping inputs to logits. "
                f"Received: {name}={network!r}"
            )
    if peer is None:
        # clone_model builds new layers from the config: their weights are drawn anew.
        peer = keras.models.clone_model(backbone)
    check_same_outputs("backbone", backbone, "peer", peer)
    shape = output_shape(backbone)
    num_classes = None if shape is None else int(shape[-1])
    return NetworkPair(backbone, peer, name="pair"), num_classes


def select_small_loss(per_sample_loss, candidates, keep_share):
    """The rows with the smallest losses among `candidates`: the `keep_share` of them
    over the global batch.

    Every replica gathers the candidates' losses of the global batch and keeps its rows at
    or below the `k`-th smallest, `k = floor(keep_share * number of candidates)`, so the
    choice does not depend on how the batch is split over replicas (rows tied with the
    `k`-th smallest are all kept).

    Args:
        per_sample_loss: `(batch,)` losses of this replica's rows.
        candidates: `(batch,)` bool, the rows that may be chosen (the labeled ones).
        keep_share: Scalar share in `[0, 1]`.

    Returns:
        A `(batch,)` float32 mask of the chosen rows.
    """
    infinity = tf.fill(tf.shape(per_sample_loss), float("inf"))
    masked = tf.where(candidates, per_sample_loss, infinity)
    global_losses = tf.sort(gather_from_replicas(masked))
    num_candidates = tf.reduce_sum(tf.cast(tf.math.is_finite(global_losses), tf.int32))
    keep = tf.cast(tf.floor(keep_share * tf.cast(num_candidates, tf.float32)), tf.int32)
    threshold = tf.cond(
        keep > 0,
        lambda: global_losses[tf.maximum(keep - 1, 0)],
        lambda: tf.constant(-float("inf")),
    )
    return tf.cast(candidates & (per_sample_loss <= threshold), tf.float32)


def pair_serving_model(networks, which):
    """A pair model's `serving_model`: the backbone for `"default"` and `"backbone"`, the
    other network for `"peer"`."""
    if which in ("default", "backbone"):
        return networks[0]
    if which == "peer":
        return networks[1]
    raise ValueError(
        f"`which` must be 'default', 'backbone' or 'peer'. Received: which={which!r}"
    )


def split_pair_config(config):
    """A pair model's config with its `NetworkPair` given back as `backbone` and `peer`."""
    pair = config.pop("backbone")["config"]
    config.update({"backbone": pair["first"], "peer": pair["second"]})
    return config
