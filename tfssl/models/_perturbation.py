"""Where an adversarial perturbation goes, and its norms: shared by `AdversarialTraining`
(FGM, PGD) and `VAT`."""

import keras
import tensorflow as tf

from tfssl.models._checks import check_choice
from tfssl.models._graph import Split, embedding_name
from tfssl.models._replicas import global_sum

NORMS = ("sample", "batch")


class PerturbationSite(Split):
    """Where an adversarial perturbation `r` is added to a backbone.

    The site is, in this order: the output of the layer named `layer`; else the backbone's
    `keras.layers.Embedding` when it has exactly one (text backbones: `r` goes on the word
    vectors, as in Miyato et al.); else the backbone's input, which must then be a float.

    At an inner layer, the backbone is split there (`tfssl.models._graph.Split`) into two
    Keras models that share its layers and weights: `head` maps the input `x` to the
    layer's output `z`, and `tail` maps `(x, z)` to the logits. The tail takes `x` as well
    because the graph after the layer may still read it: an `Embedding(mask_zero=True)`
    computes its mask from the token ids, and a skip connection may bypass the layer.
    `tail([x, head(x)])` equals `backbone(x)`, and the perturbed logits are
    `tail([x, z + r])`. This needs a functional or `Sequential` backbone with one input in
    which the layer is used once; no call hook stays on the backbone, and the split models
    are not tracked by Keras (the weights are saved once, under the backbone).

    Example:

    ```python
    site = tfssl.models.PerturbationSite(text_backbone)   # finds the Embedding
    z = site.inputs(token_ids)                           # word vectors
    logits = site.logits(token_ids, z + r)
    ```

    Args:
        backbone: `keras.Model` mapping inputs to logits.
        layer: Name of a layer of `backbone` whose output is perturbed. Defaults to `None`
            (the only `Embedding`, else the input).

    Raises:
        ValueError: If `layer` is not a layer of the backbone, if there are several
            `Embedding` layers and no `layer`, if the backbone cannot be split (not
            functional, several inputs, a shared layer), or if the perturbed tensor is not
            a float.
    """

    def __init__(self, backbone, layer=None):
        if layer is not None and not isinstance(layer, str):
            raise ValueError(f"`layer` must be a layer name or None. Received: layer={layer!r}")
        if layer is None:
            layer = embedding_name(backbone, "layer", required=False)
        super().__init__(backbone, layer)
        inputs = getattr(backbone, "inputs", None)
        dtype = inputs[0].dtype if inputs else None
        if self.head is None and dtype is not None and not keras.backend.is_float_dtype(dtype):
            raise ValueError(
                f"The backbone's input has dtype {dtype} and cannot be perturbed: give "
                f"`layer`, a layer with a float output. Received: layer={layer!r}"
            )


def l2_norm(v, norm):
    """L2 norm per sample (over all but the batch axis) or over the whole global batch."""
    if norm == "sample":
        axes = list(range(1, len(v.shape)))
        return tf.sqrt(tf.reduce_sum(tf.square(v), axis=axes, keepdims=True))
    return tf.sqrt(global_sum(tf.reduce_sum(tf.square(v))))


def normalize(v, norm="sample"):
    """`v / ||v||`, the norm per sample or over the batch; a zero `v` stays zero.

    Under a `tf.distribute` strategy `norm="batch"` sums over the global batch, so that
    several replicas equal one device.

    Args:
        v: Tensor of shape `(batch, ...)`.
        norm: `"sample"` (each row over all its axes) or `"batch"` (the whole tensor).
            Defaults to `"sample"`.

    Returns:
        A tensor shaped like `v`.
    """
    check_choice("norm", norm, NORMS)
    return tf.math.divide_no_nan(v, l2_norm(v, norm))
