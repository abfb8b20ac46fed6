"""Backbones: Keras models that map inputs to logits.

`conv_net` is the ConvNet of the Temporal Ensembling and Mean Teacher papers (Laine & Aila,
arXiv 1610.02242, table 5; Tarvainen & Valpola, arXiv 1703.01780, table 5), with a width factor
so that CPU runs can use a narrow one; `mlp` is a small dense network with input noise and
dropout, the stochastic network the consistency methods need, cheap enough for CPU budgets.
`fasttext` and `textcnn` take raw strings: their first layer is a `tfssl.text.TextVectorizer`.
Any other Keras model that returns logits works with the tfssl models just as well.
"""

import keras
import tensorflow as tf

from tfssl import text
from tfssl.layers import image_augmentation

__all__ = ["conv_net", "fasttext", "mlp", "textcnn"]


def conv_net(
    input_shape,
    num_classes,
    width=1.0,
    dropout=0.5,
    augment=True,
    max_translation=2,
    horizontal_flip=False,
    noise_stddev=0.15,
    batch_norm_momentum=0.9,
    seed=None,
    name="conv_net",
):
    """The papers' ConvNet, returning logits.

    Layers (filters times `width`): augmentation (training only), then
    3 x [conv 3x3 128, batch norm, leaky ReLU 0.1], max pool 2x2, dropout,
    3 x [conv 3x3 256, ...], max pool 2x2, dropout,
    conv 3x3 512 (valid), conv 1x1 256, conv 1x1 128, global average pool, dense
    `num_classes` (logits, no softmax).

    Example:

    ```python
    backbone = tfssl.backbones.conv_net((28, 28, 1), num_classes=10, width=0.25)
    logits = backbone(images)   # (batch, 10)
    ```

    Args:
        input_shape: `(height, width, channels)`; images as float in [0, 1].
        num_classes: Number of output logits.
        width: Multiplier of every layer's filters (1.0 = the papers' 128/256/512).
            Defaults to `1.0`.
        dropout: Dropout rate after each pooling. Defaults to `0.5`.
        augment: Prepend `tfssl.layers.image_augmentation`. Defaults to `True`.
        max_translation: See `image_augmentation`. Defaults to `2`.
        horizontal_flip: See `image_augmentation` (CIFAR: True, digits: False).
            Defaults to `False`.
        noise_stddev: See `image_augmentation`. Defaults to `0.15`.
        batch_norm_momentum: Momentum of the batch-norm moving statistics. Defaults to
            `0.9` (PyTorch's 0.1, as in the Mean Teacher reference code): with Keras'
            0.99 the inference statistics of a run of a few hundred steps are still
            mostly their initial values and the test accuracy stays near chance.
        seed: Seed of the random layers (augmentation, dropout). Defaults to `None`.
        name: Model name. Defaults to `"conv_net"`.

    Returns:
        A functional `keras.Model` from images to `(batch, num_classes)` logits.

    Raises:
        ValueError: If `input_shape` is not 3-D, or `width`/`dropout` is out of range.
    """
    if len(input_shape) != 3:
        raise ValueError(
            f"`input_shape` must be (height, width, channels). Received: input_shape={input_shape}"
        )
    if width <= 0:
        raise ValueError(f"`width` must be > 0. Received: width={width}")
    if not 0.0 <= batch_norm_momentum < 1.0:
        raise ValueError(
            "`batch_norm_momentum` must be in [0, 1). "
            f"Received: batch_norm_momentum={batch_norm_momentum}"
        )
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={dropout}")

    def filters(n):
        return max(1, int(round(n * width)))

    def conv_block(tensor, n, kernel_size, padding="same"):
        tensor = keras.layers.Conv2D(filters(n), kernel_size, padding=padding, use_bias=False)(
            tensor
        )
        tensor = keras.layers.BatchNormalization(momentum=batch_norm_momentum)(tensor)
        return keras.layers.LeakyReLU(negative_slope=0.1)(tensor)

    inputs = keras.Input(shape=tuple(input_shape), name="x")
    tensor = inputs
    if augment:
        tensor = image_augmentation(
            input_shape, max_translation, horizontal_flip, noise_stddev, seed=seed
        )(tensor)
    for _ in range(3):
        tensor = conv_block(tensor, 128, 3)
    tensor = keras.layers.MaxPooling2D(2)(tensor)
    tensor = keras.layers.Dropout(dropout, seed=seed)(tensor)
    for _ in range(3):
        tensor = conv_block(tensor, 256, 3)
    tensor = keras.layers.MaxPooling2D(2)(tensor)
    tensor = keras.layers.Dropout(dropout, seed=seed)(tensor)
    tensor = conv_block(tensor, 512, 3, padding="valid")
    tensor = conv_block(tensor, 256, 1)
    tensor = conv_block(tensor, 128, 1)
    tensor = keras.layers.GlobalAveragePooling2D()(tensor)
    logits = keras.layers.Dense(num_classes, name="logits")(tensor)
    return keras.Model(inputs, logits, name=name)


def mlp(
    input_shape,
    num_classes,
    units=(500, 250),
    dropout=0.3,
    noise_stddev=0.3,
    seed=None,
    name="mlp",
):
    """A dense network with Gaussian input noise and dropout, returning logits.

    Layers: flatten, Gaussian noise (training only), then for each entry of `units` a dense
    ReLU layer followed by dropout, and a dense `num_classes` output (logits). The noise and
    the dropout make two training passes differ, which the consistency methods need.

    Example:

    ```python
    backbone = tfssl.backbones.mlp((28, 28, 1), num_classes=10)
    logits = backbone(images)   # (batch, 10)
    ```

    Args:
        input_shape: Shape of one input, e.g. `(28, 28, 1)` or `(784,)`.
        num_classes: Number of output logits.
        units: Widths of the hidden layers. Defaults to `(500, 250)`.
        dropout: Dropout rate after each hidden layer. Defaults to `0.3`.
        noise_stddev: Standard deviation of the input noise; 0 disables it.
            Defaults to `0.3`.
        seed: Seed of the random layers. Defaults to `None`.
        name: Model name. Defaults to `"mlp"`.

    Returns:
        A `keras.Sequential` from inputs to `(batch, num_classes)` logits.

    Raises:
        ValueError: If `units` is empty or holds a non-positive width, or `dropout` or
            `noise_stddev` is out of range.
    """
    if not units or any(int(width) <= 0 for width in units):
        raise ValueError(f"`units` must be positive widths. Received: units={units}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={dropout}")
    if noise_stddev < 0:
        raise ValueError(f"`noise_stddev` must be >= 0. Received: noise_stddev={noise_stddev}")
    layers = [keras.Input(shape=tuple(input_shape), name="x"), keras.layers.Flatten()]
    if noise_stddev:
        layers.append(keras.layers.GaussianNoise(noise_stddev, seed=seed))
    for width in units:
        layers.append(keras.layers.Dense(int(width), activation="relu"))
        layers.append(keras.layers.Dropout(dropout, seed=seed))
    layers.append(keras.layers.Dense(num_classes, name="logits"))
    return keras.Sequential(layers, name=name)


def fasttext(
    num_classes,
    num_buckets=text.DEFAULT_NUM_BUCKETS,
    embedding_dim=64,
    ngrams=2,
    dropout=0.5,
    max_length=256,
    vectorizer=None,
    embeddings=None,
    token_dropout=0.0,
    seed=None,
    name="fasttext",
):
    """fastText (Joulin et al., arXiv 1607.01759): the mean of n-gram embeddings, then logits.

    Layers: `tfssl.text.TextVectorizer` (raw strings to n-gram ids, in the graph), the one
    `keras.layers.Embedding` (named `"embedding"`, `mask_zero=True`), optionally token
    dropout, dropout on its output (the only noise the consistency methods get, as in the
    seed blog posts), a mean over the tokens that ignores the padding
    (`tfssl.text.MaskedAveragePooling1D`; the seed's TF1 code averaged over the padding too),
    and a dense `num_classes` output (logits).

    Token dropout (`token_dropout > 0`, a `keras.layers.Dropout` named `"token_dropout"` with
    `noise_shape=(None, None, 1)`) zeroes whole n-gram vectors during training and scales
    the others by `1 / (1 - token_dropout)`, so that the mean keeps its expectation: two
    passes then see different bags of n-grams. Dropout alone zeroes single dimensions, and a
    mean over ~90 n-grams averages most of that noise away.

    Word mixup, FGM/PGD and VAT perturb `backbone.get_layer("embedding")`: its weights, or
    its output, which carries the padding mask on to the pooling.

    Example:

    ```python
    backbone = tfssl.backbones.fasttext(num_classes=2)
    backbone(tf.constant(["质量很好,物流很快", "太差了"]))   # (2, 2) logits
    ```

    Args:
        num_classes: Number of output logits.
        num_buckets: Hash bins of the n-grams (ignored with `vectorizer`). Defaults to
            `2**17`.
        embedding_dim: Size of the n-gram embeddings. Defaults to `64`.
        ngrams: N-gram widths 1..n, or a tuple of widths (ignored with `vectorizer`).
            Defaults to `2`.
        dropout: Dropout rate on the embeddings. Defaults to `0.5`.
        max_length: Tokens kept per text (ignored with `vectorizer`). Defaults to `256`.
        vectorizer: A `tfssl.text.TextVectorizer` to use instead of a hashing one built
            from `num_buckets`, `ngrams` and `max_length` (e.g. an adapted lookup).
            Defaults to `None`.
        embeddings: Initial embedding matrix of shape `(vocabulary size, embedding_dim)`,
            e.g. from `tfssl.text.load_word2vec`. Defaults to `None` (random).
        token_dropout: Rate at which whole n-grams are dropped during training; 0 adds no
            layer. Defaults to `0.0`.
        seed: Seed of the dropouts. Defaults to `None`.
        name: Model name. Defaults to `"fasttext"`.

    Returns:
        A functional `keras.Model` from a `(batch,)` string tensor named `text` to
        `(batch, num_classes)` logits.

    Raises:
        ValueError: If an argument is out of range or `embeddings` has the wrong shape.
    """
    vectorizer = _text_vectorizer(vectorizer, num_buckets, ngrams, max_length, None)
    _check_dropout(dropout)
    _check_dropout(token_dropout, "token_dropout")
    inputs = keras.Input(shape=(), dtype="string", name="text")
    embedding = _embedding(vectorizer, embedding_dim, embeddings)
    tensor = _token_dropout(embedding(vectorizer(inputs)), token_dropout, seed)
    tensor = keras.layers.Dropout(dropout, seed=seed)(tensor)
    tensor = text.MaskedAveragePooling1D(name="pooling")(tensor)
    logits = keras.layers.Dense(num_classes, name="logits")(tensor)
    model = keras.Model(inputs, logits, name=name)
    if embeddings is not None:
        embedding.set_weights([embeddings])
    return model


def textcnn(
    num_classes,
    kernel_sizes=(2, 3, 4),
    filters=64,
    num_buckets=text.DEFAULT_NUM_BUCKETS,
    embedding_dim=64,
    dropout=0.5,
    max_length=256,
    vectorizer=None,
    embeddings=None,
    token_dropout=0.0,
    seed=None,
    name="textcnn",
):
    """TextCNN (Kim, arXiv 1408.5882): convolutions of several widths over token embeddings,
    max-pooled over time, then logits.

    Layers: `tfssl.text.TextVectorizer` with unigrams only (the convolutions see the
    n-grams), padded to `max_length` ids; the one `keras.layers.Embedding` (named
    `"embedding"`); dropout; the padding's embeddings set to zero, so that padding acts as
    the convolutions' own zero padding; per kernel size a `Conv1D` (ReLU, `"same"`
    padding) and a max over the positions of real tokens (0 for the empty string); their
    concatenation, dropout, and a dense `num_classes` output (logits).

    Example:

    ```python
    backbone = tfssl.backbones.textcnn(num_classes=2, kernel_sizes=(2, 3, 4))
    ```

    Args:
        num_classes: Number of output logits.
        kernel_sizes: Widths of the convolutions. Defaults to `(2, 3, 4)`.
        filters: Filters per width. Defaults to `64`.
        num_buckets: Hash bins of the tokens (ignored with `vectorizer`). Defaults to
            `2**17`.
        embedding_dim: Size of the token embeddings. Defaults to `64`.
        dropout: Dropout rate on the embeddings and the pooled features. Defaults to `0.5`.
        max_length: Tokens per text, the length of the id sequence (ignored with
            `vectorizer`). Defaults to `256`.
        vectorizer: A `tfssl.text.TextVectorizer` to use instead of a hashing one.
            Defaults to `None`.
        embeddings: Initial embedding matrix, e.g. from `tfssl.text.load_word2vec`.
            Defaults to `None` (random).
        token_dropout: Rate at which whole token vectors are zeroed during training (a
            `keras.layers.Dropout` named `"token_dropout"`, `noise_shape=(None, None, 1)`,
            before the dropout); 0 adds no layer. Defaults to `0.0`.
        seed: Seed of the dropouts. Defaults to `None`.
        name: Model name. Defaults to `"textcnn"`.

    Returns:
        A functional `keras.Model` from a `(batch,)` string tensor named `text` to
        `(batch, num_classes)` logits.

    Raises:
        ValueError: If an argument is out of range or `embeddings` has the wrong shape.
    """
    if not kernel_sizes or any(int(size) <= 0 for size in kernel_sizes):
        raise ValueError(
            f"`kernel_sizes` must be positive widths. Received: kernel_sizes={kernel_sizes}"
        )
    if int(filters) <= 0:
        raise ValueError(f"`filters` must be > 0. Received: filters={filters}")
    vectorizer = _text_vectorizer(vectorizer, num_buckets, 1, max_length, max_length)
    _check_dropout(dropout)
    _check_dropout(token_dropout, "token_dropout")
    inputs = keras.Input(shape=(), dtype="string", name="text")
    embedding = _embedding(vectorizer, embedding_dim, embeddings)
    ids = vectorizer(inputs)
    tensor = _token_dropout(embedding(ids), token_dropout, seed)
    tensor = keras.layers.Dropout(dropout, seed=seed)(tensor)
    tensor = _ZeroPadding(name="zero_padding")(tensor)
    pooled = [
        _MaskedMaxPooling1D(name=f"max_pool_{size}")(
            keras.layers.Conv1D(
                int(filters), int(size), padding="same", activation="relu", name=f"conv_{size}"
            )(tensor),
            ids,
        )
        for size in kernel_sizes
    ]
    tensor = keras.layers.Concatenate()(pooled) if len(pooled) > 1 else pooled[0]
    tensor = keras.layers.Dropout(dropout, seed=seed)(tensor)
    logits = keras.layers.Dense(num_classes, name="logits")(tensor)
    model = keras.Model(inputs, logits, name=name)
    if embeddings is not None:
        embedding.set_weights([embeddings])
    return model


def _text_vectorizer(vectorizer, num_buckets, ngrams, max_length, output_length):
    if vectorizer is None:
        return text.TextVectorizer(
            num_buckets=num_buckets,
            ngrams=ngrams,
            max_length=max_length,
            output_length=output_length,
            name="vectorizer",
        )
    if not isinstance(vectorizer, text.TextVectorizer):
        raise ValueError(
            f"`vectorizer` must be a tfssl.text.TextVectorizer. Received: vectorizer={vectorizer!r}"
        )
    return vectorizer


def _embedding(vectorizer, embedding_dim, embeddings):
    if int(embedding_dim) <= 0:
        raise ValueError(f"`embedding_dim` must be > 0. Received: embedding_dim={embedding_dim}")
    input_dim = vectorizer.vocabulary_size()
    if embeddings is not None and tuple(embeddings.shape) != (input_dim, int(embedding_dim)):
        raise ValueError(
            f"`embeddings` must have shape (vocabulary size {input_dim}, embedding_dim "
            f"{embedding_dim}). Received: embeddings.shape={tuple(embeddings.shape)}"
        )
    return keras.layers.Embedding(input_dim, int(embedding_dim), mask_zero=True, name="embedding")


def _check_dropout(rate, name="dropout"):
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"`{name}` must be in [0, 1). Received: {name}={rate}")


def _token_dropout(tensor, rate, seed):
    # One draw per (text, token), shared by the embedding's dimensions: whole tokens drop.
    if not rate:
        return tensor
    return keras.layers.Dropout(rate, noise_shape=(None, None, 1), seed=seed, name="token_dropout")(
        tensor
    )


@keras.saving.register_keras_serializable(package="tfssl")
class _ZeroPadding(keras.layers.Layer):
    """Sets the masked steps to zero and consumes the mask (the convolutions take none)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        if mask is None:
            return inputs
        return inputs * tf.cast(mask, inputs.dtype)[..., None]

    def compute_mask(self, inputs, mask=None):
        return None


@keras.saving.register_keras_serializable(package="tfssl")
class _MaskedMaxPooling1D(keras.layers.Layer):
    """Max over the steps whose id is not padding; 0 for a row without any."""

    def call(self, inputs, ids):
        valid = tf.not_equal(ids, 0)[..., None]
        lowest = tf.constant(inputs.dtype.min, inputs.dtype)
        pooled = tf.reduce_max(tf.where(valid, inputs, lowest), axis=1)
        return tf.where(tf.reduce_any(valid, axis=1), pooled, tf.zeros_like(pooled))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])
