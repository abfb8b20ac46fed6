"""Input noise and augmentation layers of the consistency-regularization papers.

The Temporal Ensembling and Mean Teacher papers (arXiv 1610.02242, 1703.01780) train their
ConvNet on inputs that are randomly translated by up to 2 pixels, flipped horizontally (CIFAR
only, not digits) and perturbed by Gaussian noise of standard deviation 0.15. All of these are
active only in training (`training=True`) and are identity at inference, so they can live
inside a backbone that is later exported for serving.
"""

import keras

__all__ = ["image_augmentation"]


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
        raise ValueError(f"`max_translation` must be >= 0. Received: max_translation={max_translation}")
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
