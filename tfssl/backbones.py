"""Backbones: Keras models that map inputs to logits.

`conv_net` is the ConvNet of the Temporal Ensembling and Mean Teacher papers (Laine & Aila,
arXiv 1610.02242, table 5; Tarvainen & Valpola, arXiv 1703.01780, table 5), with a width factor
so that CPU runs can use a narrow one; `mlp` is a small dense network with input noise and
dropout, the stochastic network the consistency methods need, cheap enough for CPU budgets.
Any other Keras model that returns logits works with the
tfssl models just as well.
"""

import keras

from tfssl.layers import image_augmentation

__all__ = ["conv_net", "mlp"]


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
