"""Input noise, augmentation and mixup.

The Temporal Ensembling and Mean Teacher papers (arXiv 1610.02242, 1703.01780) train their
ConvNet on inputs that are randomly translated by up to 2 pixels, flipped horizontally (CIFAR
only, not digits) and perturbed by Gaussian noise of standard deviation 0.15. All of these are
active only in training (`training=True`) and are identity at inference, so they can live
inside a backbone that is later exported for serving.

`mixup` is the seed's TF1 `mixup(input_x, input_y, label_size, alpha)` (seed 002; Zhang et al.,
"mixup: Beyond Empirical Risk Minimization", arXiv 1710.09412) in TensorFlow 2, with the Beta
draw from tensorflow-probability in place of the removed `tf.distributions`.
"""

import keras
import tensorflow as tf

__all__ = ["image_augmentation", "mixup"]


def image_augmentation(
    image_shape, max_translation=2, horizontal_flip=False, noise_stddev=0.15, seed=None
):
    """The papers' image augmentation as one Keras block, active only in training.

    Example:

    ```python
    augment = tfssl.layers.image_augmentation((32, 32, 3), horizontal_flip=True)
    inputs = keras.Input((32, 32, 3))
    logits = my_network(augment(inputs))
    ```

    Args:
        image_shape: `(height, width, channels)` of the images.
        max_translation: Largest shift in pixels along each axis (nearest-pixel, reflected
            borders); 0 disables it. Defaults to `2` (the papers').
        horizontal_flip: Flip left-right with probability 1/2 (the papers do it for CIFAR,
            not for digits). Defaults to `False`.
        noise_stddev: Standard deviation of the additive Gaussian noise; 0 disables it.
            Defaults to `0.15` (the papers').
        seed: Integer seed of the random layers. Defaults to `None`.

    Returns:
        A `keras.Sequential` taking `(batch, height, width, channels)` images; identity at
        inference.

    Raises:
        ValueError: If an argument is negative.
    """
    if max_translation < 0:
        raise ValueError(
            f"`max_translation` must be >= 0. Received: max_translation={max_translation}"
        )
    if noise_stddev < 0:
        raise ValueError(f"`noise_stddev` must be >= 0. Received: noise_stddev={noise_stddev}")
    layers = []
    if max_translation:
        height, width = image_shape[0], image_shape[1]
        layers.append(
            keras.layers.RandomTranslation(
                height_factor=max_translation / height,
                width_factor=max_translation / width,
                fill_mode="reflect",
                interpolation="nearest",
                seed=seed,
            )
        )
    if horizontal_flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if noise_stddev:
        layers.append(keras.layers.GaussianNoise(noise_stddev, seed=seed))
    return keras.Sequential(layers, name="augmentation")


def mixup(input_x, input_y, label_size, alpha, mix=None, index=None, seed=None):
    """Mixes each row of a batch with a row of the same batch, as the seed's TF1 `mixup`.

    One weight is drawn per batch, `m ~ Beta(alpha, alpha)`, and folded to `max(m, 1 - m)`
    so that each mixed row leans towards its own row (the seed's choice; the paper uses `m`
    as drawn). Labels are mixed as one-hot vectors with the same weight.

    Formula:

    ```python
    mix = max(m, 1 - m)
    xmix = input_x * mix + input_x[index] * (1 - mix)
    ymix = one_hot(input_y) * mix + one_hot(input_y)[index] * (1 - mix)
    ```

    Example:

    ```python
    xmix, ymix = tfssl.layers.mixup(images, labels, label_size=10, alpha=0.2, seed=0)
    ```

    Args:
        input_x: Float tensor of shape `(batch, ...)`.
        input_y: Integer labels of shape `(batch,)`.
        label_size: Number of classes.
        alpha: Beta concentration, `> 0`.
        mix: A weight `m` to use instead of the Beta draw (before the fold), to repeat a
            draw. Defaults to `None` (draw it).
        index: A `(batch,)` permutation to use instead of a random shuffle. Defaults to
            `None` (shuffle).
        seed: Op seed of the draw and the shuffle. Defaults to `None`.

    Returns:
        `(xmix, ymix)`: the mixed inputs (float32) and the mixed one-hot labels (float32).

    Raises:
        ValueError: If `alpha <= 0`.
    """
    if alpha <= 0:
        raise ValueError(f"`alpha` must be > 0. Received: alpha={alpha}")
    input_x = tf.cast(input_x, tf.float32)
    one_hot = tf.one_hot(input_y, depth=label_size)
    if mix is None:
        # Imported here: tensorflow-probability takes seconds to import and only mixup needs it.
        import tensorflow_probability as tfp

        mix = tfp.distributions.Beta(float(alpha), float(alpha)).sample(1, seed=seed)
    mix = tf.cast(mix, tf.float32)
    mix = tf.maximum(mix, 1.0 - mix)
    if index is None:
        index = tf.random.shuffle(tf.range(tf.shape(input_x)[0]), seed=seed)
    xmix = input_x * mix + tf.gather(input_x, index) * (1.0 - mix)
    ymix = one_hot * mix + tf.gather(one_hot, index) * (1.0 - mix)
    return xmix, ymix
