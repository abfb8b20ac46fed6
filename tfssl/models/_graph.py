"""Splitting a backbone at an inner tensor into a head and a tail that share its layers.

Adversarial training and VAT perturb, and mixup mixes, a tensor inside the backbone (the
word vectors, a hidden layer, the encoder output): they need `head: x -> z` and
`tail: (x, z) -> logits` with `tail([x, head(x)]) == backbone(x)`. `Split` builds both, once,
for `tfssl.models.PerturbationSite`, `AdversarialTraining`, `VAT` and `MixupModel`.
"""

import keras
import tensorflow as tf


class Split:
    """The backbone cut at one tensor `z`: `head` (`x -> z`) and `tail` (`(x, z) -> logits`).

    `z` is the backbone's input (`layer=None`: then `head` is `None` and `tail` the backbone
    itself), the output of the layer named `layer`, or, with `encoder=True`, the input of the
    backbone's last layer (the layer that returns the logits: the representation that enters
    the classification head).

    The backbone's graph is replayed on a new input calling the same layer objects (for a
    functional backbone `keras.models.clone_model(clone_function=lambda l: l)` with a
    `call_function` that catches `z`; for a `Sequential` one layer after the other), and
    `head = keras.Model(x, z)`, `tail = keras.Model([x, z], logits)` on that replay: the
    models share the backbone's layers and weights, training them trains the backbone, and
    the serving graph stays the backbone itself. Replaying instead of cutting the backbone's
    own graph keeps it serializable (cutting makes Keras re-create nodes on its input layer)
    and works after a `.keras` reload (a reloaded `Sequential` is rebuilt, after which
    `layer.output` belongs to an older graph than its `outputs`).

    The tail takes `x` as well as `z` because the graph after `z` may still read `x`: an
    `Embedding(mask_zero=True)` computes its mask from the token ids, and a skip connection
    may go around the layer. In `tail([x, z'])` such paths carry the row's own `x`; only
    what flows through `z` sees `z'`.

    The split models are plain Python attributes, not tracked by Keras: the weights are
    saved once, under the backbone. Only public Keras API is used (`clone_model`,
    `keras.Model(inputs, outputs)`); no call hook stays on the backbone.

    Args:
        backbone: `keras.Model` mapping inputs to logits; functional or `Sequential` with
            one input and one output unless `z` is the input.
        layer: Name of the layer whose output is `z`, or `None` for the input (or, with
            `encoder=True`, the input of the last layer). Defaults to `None`.
        argument: The caller's argument that names the layer, for the error messages.
            Defaults to `"layer"`.
        encoder: Cut at the input of the last layer. Defaults to `False`.

    Raises:
        ValueError: If `layer` is not a layer of the backbone, the backbone is not
            functional or `Sequential` with one input and one output, the layer is not
            called exactly once or does not return one float tensor, or (`encoder=True`)
            the last layer does not return the logits or takes several tensors.
    """

    def __init__(self, backbone, layer=None, argument="layer", encoder=False):
        self.backbone = backbone
        self.layer = layer
        self.head, self.tail = None, backbone
        if layer is None and not encoder:
            return
        if layer is not None:
            target = layer_of(backbone, layer, argument)
            where = f"layer {layer!r}"
        if not _is_graph(backbone):
            raise ValueError(
                f"Splitting the backbone at {'its encoder' if encoder else where} needs a "
                "functional or Sequential model with one input and one output. Received: "
                f"{type(backbone).__name__} {backbone.name!r}"
                + ("" if encoder else f", {argument}={layer!r}")
            )
        if encoder:
            target = backbone.layers[-1]
            where = f"the input of the last layer {target.name!r}"
        if isinstance(target, keras.layers.InputLayer):
            return
        x, z, logits = _replay(backbone, target, encoder, argument, where)
        if z is x:
            return
        if not keras.backend.is_float_dtype(z.dtype):
            raise ValueError(
                f"The backbone's tensor at {where} is {z.dtype}, not a float tensor that can "
                f"be perturbed or mixed. Received: {argument}={layer!r}"
            )
        self.head, self.tail = keras.Model(x, z), keras.Model([x, z], logits)

    def inputs(self, x, training=False):
        """The tensor `z` at the cut: `x` itself, or `head(x)`."""
        if self.head is None:
            return tf.convert_to_tensor(x)
        # A fresh tensor: an Embedding's mask stays on the original, and the tail recomputes
        # it from `x` (Keras would warn that the tail drops an attached mask).
        return tf.identity(self.head(x, training=training))

    def logits(self, x, z, training=False):
        """The backbone's logits with `z` in place of the tensor at the cut."""
        if self.head is None:
            return self.tail(z, training=training)
        return self.tail([tf.convert_to_tensor(x), tf.convert_to_tensor(z)], training=training)


def layer_of(backbone, name, argument, received=None):
    """The backbone's layer named `name`; the error names `argument` and its value
    (`received`, default `name`)."""
    names = [layer.name for layer in getattr(backbone, "layers", [])]
    if not isinstance(name, str) or name not in names:
        received = name if received is None else received
        raise ValueError(
            f"`{argument}` must name a layer of the backbone {backbone.name!r}; {name!r} is "
            f"not in the backbone (its layers: {names}). Received: {argument}={received!r}"
        )
    return backbone.get_layer(name)


def embedding_name(backbone, argument, required):
    """The name of the backbone's only `keras.layers.Embedding`; `None` if it has none and
    one is not `required`."""
    embeddings = [
        layer.name
        for layer in getattr(backbone, "layers", [])
        if isinstance(layer, keras.layers.Embedding)
    ]
    if len(embeddings) > 1 or (required and not embeddings):
        raise ValueError(
            f"The backbone {backbone.name!r} has {len(embeddings)} Embedding layers "
            f"{embeddings}: name the one to use in `{argument}`. Received: {argument}=None"
        )
    return embeddings[0] if embeddings else None


def _is_graph(backbone):
    inputs = getattr(backbone, "inputs", None)
    outputs = getattr(backbone, "outputs", None)
    return bool(inputs) and len(inputs) == 1 and bool(outputs) and len(outputs) == 1


def _replay(backbone, target, encoder, argument, where):
    """`(x, z, logits)` on a replay of the backbone's graph with the same layers: `z` is
    `target`'s output, or its input when `encoder`."""
    calls = []

    def call(layer, *args, **kwargs):
        output = layer(*args, **kwargs)
        if layer is target:
            calls.append((args[0] if args else None, output))
        return output

    if isinstance(backbone, keras.Sequential):
        spec = backbone.inputs[0]
        x = keras.Input(batch_shape=spec.shape, dtype=spec.dtype)
        logits = x
        for layer in backbone.layers:
            logits = call(layer, logits)
    else:
        copy = keras.models.clone_model(
            backbone, clone_function=lambda layer: layer, call_function=call
        )
        x, logits = copy.inputs[0], copy.outputs[0]
    received = None if encoder else target.name
    if len(calls) != 1:
        raise ValueError(
            f"The backbone can be split at {where} only if the layer is called once; it is "
            f"called {len(calls)} times. Received: {argument}={received!r}"
        )
    layer_input, output = calls[0]
    if not encoder:
        z = output
    elif output is not logits:
        raise ValueError(
            f"The encoder is the input of the layer that returns the logits, but the last "
            f"layer {target.name!r} of {backbone.name!r} does not return them: name the "
            f"encoder's layer in `{argument}`. Received: {argument}=None"
        )
    else:
        z = layer_input
    if not isinstance(z, keras.KerasTensor):
        raise ValueError(
            f"The backbone can be split at {where} only at one tensor; it is "
            f"{type(z).__name__}. Received: {argument}={received!r}"
        )
    return x, z, logits
