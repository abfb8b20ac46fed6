"""tfssl.models._graph: the one split of a backbone into head and tail, shared by
PerturbationSite (AdversarialTraining, VAT) and MixupModel."""

import keras
import numpy as np
import pytest

from tfssl import testing
from tfssl.models._graph import Split, embedding_name, layer_of

NUM_CLASSES = 3


def _functional():
    inputs = keras.Input((6,), name="x")
    hidden = keras.layers.Dense(5, activation="tanh", name="hidden")(inputs)
    encoded = keras.layers.Dense(4, activation="tanh", name="encoded")(hidden)
    return keras.Model(inputs, keras.layers.Dense(NUM_CLASSES, name="logits")(encoded))


def _residual():
    inputs = keras.Input((6,), name="x")
    first = keras.layers.Dense(6, name="first")(inputs)
    second = keras.layers.Dense(6, activation="tanh", name="second")(first)
    merged = keras.layers.Add(name="add")([first, second])
    return keras.Model(inputs, keras.layers.Dense(NUM_CLASSES, name="out")(merged))


def _text(embeddings=1):
    tokens = keras.Input((5,), dtype="int32", name="tokens")
    embedded = keras.layers.Embedding(20, 4, mask_zero=True, name="words")(tokens)
    if embeddings == 2:
        positions = keras.layers.Embedding(20, 4, name="positions")(tokens)
        embedded = keras.layers.Add(name="add")([embedded, positions])
    pooled = keras.layers.GlobalAveragePooling1D(name="pool")(embedded)
    return keras.Model(tokens, keras.layers.Dense(NUM_CLASSES, name="logits")(pooled))


def _tokens():
    tokens = np.random.default_rng(0).integers(1, 20, size=(8, 5)).astype("int32")
    tokens[:4, 3:] = 0  # padding
    return tokens


def _features():
    return testing.tiny_data()[0]


def _assert_tail_of_head_is_the_backbone(split, backbone, x):
    z = split.inputs(x)
    np.testing.assert_allclose(split.logits(x, z), backbone(x), atol=1e-6)
    return z.numpy()


@pytest.mark.parametrize("make", [_functional, testing.tiny_backbone], ids=["functional", "seq"])
def test_head_is_the_layer_output_and_tail_of_head_is_the_backbone(make):
    backbone = make()
    x = _features()
    layer = backbone.layers[-2] if make is _functional else backbone.layers[0]
    split = Split(backbone, layer.name)
    z = _assert_tail_of_head_is_the_backbone(split, backbone, x)
    hidden = x
    for current in backbone.layers:
        if isinstance(current, keras.layers.InputLayer):
            continue
        hidden = current(hidden)
        if current is layer:
            break
    np.testing.assert_allclose(z, hidden, atol=1e-6)
    # The tail reads the given z: a change there moves the logits by the rest of the graph.
    rest = backbone.layers[backbone.layers.index(layer) + 1 :]
    expected = z + 1.0
    for current in rest:
        expected = current(expected)
    np.testing.assert_allclose(split.logits(x, z + 1.0), expected, atol=1e-6)


@pytest.mark.parametrize("make", [_functional, testing.tiny_backbone], ids=["functional", "seq"])
def test_the_encoder_is_the_input_of_the_last_layer(make):
    backbone = make()
    x = _features()
    split = Split(backbone, encoder=True)
    z = _assert_tail_of_head_is_the_backbone(split, backbone, x)
    last = backbone.layers[-1]
    np.testing.assert_allclose(last(z), backbone(x), atol=1e-6)
    np.testing.assert_allclose(split.logits(x, 2 * z), last(2 * z), atol=1e-6)


def test_the_input_needs_no_split():
    backbone = _functional()
    x = _features()
    for split in (Split(backbone), Split(backbone, "x")):  # "x": the InputLayer
        assert split.head is None and split.tail is backbone
        np.testing.assert_allclose(split.logits(x, split.inputs(x)), backbone(x), atol=1e-6)
    single = keras.Sequential([keras.Input((6,)), keras.layers.Dense(NUM_CLASSES)])
    assert Split(single, encoder=True).head is None  # the last layer's input is the input


def test_the_embedding_mask_survives_the_split():
    backbone = _text()
    tokens = _tokens()
    split = Split(backbone, embedding_name(backbone, "layer", required=True))
    z = _assert_tail_of_head_is_the_backbone(split, backbone, tokens)
    moved = z.copy()
    moved[:4, 3:] += 10.0  # padded positions: masked out of the mean
    np.testing.assert_allclose(split.logits(tokens, moved), backbone(tokens), atol=1e-5)
    moved[:, 0] += 10.0  # a real token
    assert not np.allclose(split.logits(tokens, moved), backbone(tokens), atol=1e-3)


def test_a_skip_connection_around_the_layer_keeps_its_own_value():
    backbone = _residual()
    x = _features()
    split = Split(backbone, "second")
    z = _assert_tail_of_head_is_the_backbone(split, backbone, x)
    first = backbone.get_layer("first")(x)
    np.testing.assert_allclose(z, backbone.get_layer("second")(first), atol=1e-6)
    expected = backbone.get_layer("out")(first + (z + 1.0))
    np.testing.assert_allclose(split.logits(x, z + 1.0), expected, atol=1e-5)


@pytest.mark.parametrize(
    "make, x, layer",
    [
        (_functional, _features, "hidden"),
        (testing.tiny_backbone, _features, None),
        (_text, _tokens, "words"),
        (_residual, _features, "second"),
    ],
    ids=["functional", "seq", "masked_embedding", "skip"],
)
def test_split_after_a_keras_reload_equals_the_reloaded_backbone(make, x, layer, tmp_path):
    backbone = make()
    # Sequential: the encoder, a split through the rebuilt graph.
    Split(backbone, layer, encoder=layer is None)
    backbone.save(tmp_path / "backbone.keras")  # splitting left the backbone serializable
    reloaded = keras.saving.load_model(tmp_path / "backbone.keras")
    inputs = x()
    split = Split(reloaded, layer, encoder=layer is None)
    _assert_tail_of_head_is_the_backbone(split, reloaded, inputs)
    np.testing.assert_allclose(reloaded(inputs), backbone(inputs), atol=1e-6)
    reloaded.save(tmp_path / "again.keras")


def test_training_the_split_trains_the_backbone():
    backbone = _functional()
    split = Split(backbone, "hidden")
    assert {id(w) for w in split.head.weights} | {id(w) for w in split.tail.weights} == {
        id(w) for w in backbone.weights
    }


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(NUM_CLASSES, name="dense")

    def call(self, x):
        return self.dense(x)


def _shared():
    inputs = keras.Input((6,))
    shared = keras.layers.Dense(6, name="shared")
    return keras.Model(inputs, keras.layers.Dense(NUM_CLASSES)(shared(shared(inputs))))


def _integer_layer():
    tokens = keras.Input((5,), dtype="int32")
    ids = keras.layers.Identity(name="ids")(tokens)
    pooled = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(20, 4)(ids))
    return keras.Model(tokens, keras.layers.Dense(NUM_CLASSES)(pooled))


def _subclassed():
    model = _Subclassed()
    model(np.zeros((1, 6), "float32"))
    return model


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda: Split(_functional(), "nope"),
            r"'nope' is not in the backbone.*Received: layer='nope'",
        ),
        (
            lambda: layer_of(_functional(), "nope", "mixup_layers", ["hidden", "nope"]),
            r"Received: mixup_layers=\['hidden', 'nope'\]",
        ),
        (
            lambda: embedding_name(_text(2), "layer", required=False),
            r"has 2 Embedding layers \['words', 'positions'\].*Received: layer=None",
        ),
        (
            lambda: embedding_name(_functional(), "mixup_layers", required=True),
            r"has 0 Embedding layers \[\].*Received: mixup_layers=None",
        ),
        (lambda: Split(_subclassed(), "dense"), "functional or Sequential.*layer='dense'"),
        (lambda: Split(_subclassed(), encoder=True), "functional or Sequential"),
        (lambda: Split(_shared(), "shared"), "called once; it is called 2 times"),
        (lambda: Split(_integer_layer(), "ids"), "is int32, not a float tensor.*layer='ids'"),
    ],
    ids=[
        "unknown_layer",
        "unknown_layer_names_the_list",
        "two_embeddings",
        "no_embedding",
        "subclassed_layer",
        "subclassed_encoder",
        "shared_layer",
        "integer_tensor",
    ],
)
def test_errors_name_the_value(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_an_encoder_that_takes_several_tensors_is_refused():
    inputs = keras.Input((6,))
    branches = [keras.layers.Dense(NUM_CLASSES)(inputs) for _ in range(2)]
    backbone = keras.Model(inputs, keras.layers.Add(name="sum")(branches))
    with pytest.raises(ValueError, match="only at one tensor; it is list.*mixup_layers=None"):
        Split(backbone, encoder=True, argument="mixup_layers")
