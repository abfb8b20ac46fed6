"""Input noise, augmentation and mixup.

The Temporal Ensembling and Mean Teacher papers (arXiv 1610.02242, 1703.01780) train their
ConvNet on inputs that are randomly translated by up to 2 pixels, flipped horizontally (CIFAR
only, not digits) and perturbed by Gaussian noise of standard deviation 0.15. All of these are
active only in training (`training=True`) and are identity at inference, so they can live
inside a backbone that is later exported for serving.

`strong_augmentation` is FixMatch's strong view (Sohn et al., "FixMatch: Simplifying
Semi-Supervised Learning with Consistency and Confidence", arXiv 2001.07685): Keras'
`RandAugment` operations drawn per row (`PerImageRandAugment`), then a cutout square
(`RandomErasing`).

`mixup` is the seed's TF1 `mixup(input_x, input_y, label_size, alpha)` (seed 002; Zhang et al.,
"mixup: Beyond Empirical Risk Minimization", arXiv 1710.09412) in TensorFlow 2, with the Beta
draw from tensorflow-probability in place of the removed `tf.distributions`; `Mixup` is the
same as a Keras layer with seeded, repeatable draws, and `mix_with_partners` the convex mix
that the mixup models (`tfssl.models.MixupModel`, `tfssl.models.MixMatch`) apply to hidden
states and soft labels.
"""

import keras
import tensorflow as tf

__all__ = [
    "Mixup",
    "PerImageRandAugment",
    "RowwiseAugmentation",
    "image_augmentation",
    "mix_with_partners",
    "mixup",
    "strong_augmentation",
]


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


def mix_with_partners(values, lam, index):
    """Mixes every row of `values` with its partner row: `lam * v + (1 - lam) * v[index]`.

    The arithmetic of `mixup` for any tensor (inputs, hidden states, soft labels) and for a
    weight per batch or per row.

    Example:

    ```python
    mixed = tfssl.layers.mix_with_partners(hidden, lam=0.7, index=[1, 0, 3, 2])
    ```

    Args:
        values: Float tensor of shape `(batch, ...)`.
        lam: The weight of each row's own value: a scalar (one per batch) or a `(batch,)`
            vector (one per row).
        index: `(batch,)` partner of every row.

    Returns:
        A float32 tensor shaped like `values`.
    """
    values = tf.cast(values, tf.float32)
    lam = tf.cast(lam, tf.float32)
    if lam.shape.rank:
        # One weight per row, broadcast over the row's other axes.
        lam = tf.reshape(lam, tf.concat([[-1], tf.ones([tf.rank(values) - 1], tf.int32)], 0))
    return lam * values + (1.0 - lam) * tf.gather(values, index)


@keras.saving.register_keras_serializable(package="tfssl")
class Mixup(keras.layers.Layer):
    """The seed's mixup as a Keras layer: `(x, y) -> (x_mix, y_mix)` in training.

    In training, each call draws one weight for the batch, `m ~ Beta(alpha, alpha)` folded
    to `lam = max(m, 1 - m)`, and a random in-batch partner for every row (a shuffle), then
    applies `tfssl.layers.mixup`: `x_mix = lam * x + (1 - lam) * x[index]` and the same mix
    of the one-hot labels. At inference `x` passes unchanged and `y` comes out one-hot (the
    mix with `lam = 1`), so the output structure is the same in both modes.

    The draws are stateless random ops fed by a `keras.random.SeedGenerator(seed)`: a
    layer built with the same `seed` gives the same sequence of draws, so the same seed and
    the same batch give the same output; each call advances the generator. `draw(n)` returns
    the next `(lam, index)` without mixing anything.

    Under `tf.distribute.MirroredStrategy` each replica draws from its own copy of the
    generator, and mixes its own rows: a row's partner is one of the same replica's rows.
    The copies start equal and advance together, so (measured on two logical CPUs) every
    replica draws the same `lam` and the same permutation of its local positions. A run on
    several replicas thus differs from one device with the same global batch in the
    partners, not in `lam`.

    Keras 3.15 ships `keras.layers.MixUp`; this layer does not use it because they differ
    (measured in tests/test_mixup_layer.py):

    - the draw: `keras.layers.MixUp` draws one weight *per row*, `Beta(alpha, alpha)` as
      is, so its mean weight is 0.5 and half of the rows lean to their partner; here one
      weight per batch, folded (`E[lam] = E[max(B, 1 - B)]`, 0.90 for `alpha = 0.2`);
    - the labels: it mixes labels that are already one-hot floats; this layer takes the
      integer labels of the seed's function and one-hot encodes them;
    - the inputs: it reshapes its weights to rank 4 (images); on features `(batch, d)` or
      embeddings `(batch, time, d)` the weights broadcast to the wrong shape.
    With the same weights and permutation its image and label mix equal `mixup`'s (tested):
    the arithmetic is the same, only the draw and the input contract differ.

    Example:

    ```python
    mix = tfssl.layers.Mixup(alpha=0.2, num_classes=10, seed=0)
    x_mix, y_mix = mix((images, labels), training=True)
    loss = keras.losses.categorical_crossentropy(y_mix, model(x_mix), from_logits=True)
    ```

    Args:
        alpha: Beta concentration, `> 0`. Small values keep rows close to themselves.
        num_classes: Number of classes of the integer labels.
        seed: Integer seed of the draws. Defaults to `None` (a random one, set by
            `keras.utils.set_random_seed`).
        **kwargs: `keras.layers.Layer` arguments.

    Raises:
        ValueError: If `alpha <= 0` or `num_classes` is not a positive integer.

    References:
        Zhang et al., mixup: Beyond Empirical Risk Minimization, arXiv 1710.09412.
    """

    def __init__(self, alpha, num_classes, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha <= 0:
            raise ValueError(f"`alpha` must be a number > 0. Received: alpha={alpha!r}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes <= 0:
            raise ValueError(
                f"`num_classes` must be a positive integer. Received: num_classes={num_classes!r}"
            )
        self.alpha = float(alpha)
        self.num_classes = num_classes
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.built = True

    def draw(self, batch_size):
        """The next draw: `(lam, index)`, a folded scalar weight and a `(batch_size,)`
        permutation."""
        m = keras.random.beta((), self.alpha, self.alpha, seed=self.seed_generator)
        index = keras.random.shuffle(tf.range(batch_size), seed=self.seed_generator)
        return tf.maximum(m, 1.0 - m), index

    def call(self, inputs, training=None):
        x, y = inputs
        if not training:
            return x, tf.one_hot(y, self.num_classes)
        lam, index = self.draw(tf.shape(x)[0])
        return mixup(x, y, self.num_classes, self.alpha, mix=lam, index=index)

    def compute_output_spec(self, inputs, training=None):
        x, y = inputs
        return (
            keras.KerasTensor(x.shape, dtype="float32"),
            keras.KerasTensor(tuple(y.shape) + (self.num_classes,), dtype="float32"),
        )

    def get_config(self):
        return {
            **super().get_config(),
            "alpha": self.alpha,
            "num_classes": self.num_classes,
            "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package="tfssl")
class PerImageRandAugment(keras.layers.RandAugment):
    """Keras' `RandAugment` with the operations drawn per image, in one batched call.

    `keras.layers.RandAugment` draws its `num_ops` operation indices once per call, so every
    image of a batch gets the same operations (each with its own magnitude: the operation
    layers draw their parameters per image). This subclass draws the indices per image,
    `(num_ops, batch)`, and selects each image's result with a per-image mask. It computes
    what Keras' layer computes (every operation on the whole batch, at each of the
    `num_ops` positions), so it costs one batched call, where calling `RandAugment` on each
    image separately (`RowwiseAugmentation(per_row=True)`) costs one call per image. The
    distribution of an image's augmentation is the same: the same operation draws, the
    same per-image magnitudes (tested in tests/test_strong_augmentation.py).

    Example:

    ```python
    augment = tfssl.layers.PerImageRandAugment(value_range=(0, 1), factor=0.1, seed=0)
    views = augment(images, training=True)          # (batch, height, width, 3)
    ```

    It takes the arguments of `keras.layers.RandAugment` (it adds no constructor of its own).
    """

    # Keras' Equalization takes its histogram over the whole batch: it runs image by image.
    _BATCH_STATISTICS = ("equalization",)

    def get_random_transformation(self, data, training=True, seed=None):
        transformation = super().get_random_transformation(data, training, seed)
        if transformation is None:
            return None
        images = data["images"] if isinstance(data, dict) else data
        transformation["layer_idxes"] = self.backend.random.randint(
            (self.num_ops, self.backend.core.shape(images)[0]),
            0,
            len(self._AUGMENT_LAYERS),
            seed=self._get_seed_generator(self.backend._backend),
        )
        return transformation

    def transform_images(self, images, transformation, training=True):
        if not training:
            return images
        images = tf.cast(images, self.compute_dtype)
        layer_idxes = transformation["layer_idxes"]
        for position in range(self.num_ops):
            for index, (name, value) in enumerate(transformation["transforms"].items()):
                # Only the images that drew this operation, with their own parameters.
                rows = tf.where(layer_idxes[position] == index)[:, 0]
                # Some operations index their first image: skipped when no image drew them.
                images = tf.cond(
                    tf.size(rows) > 0,
                    lambda: self._transform_rows(name, images, value, rows),
                    lambda: images,
                )
        return images

    def _transform_rows(self, name, images, value, rows):
        """`images` with the rows `rows` transformed by the operation `name`, `value`
        holding the parameters of every image (tensors with a leading batch axis; the
        others, such as the batch size, serve bounding boxes only)."""

        def per_image(leaf):
            return tf.is_tensor(leaf) and leaf.shape.rank and leaf.shape[0] == images.shape[0]

        value = tf.nest.map_structure(
            lambda leaf: tf.gather(leaf, rows) if per_image(leaf) else leaf, value
        )
        layer, subset = getattr(self, name), tf.gather(images, rows)
        if name in self._BATCH_STATISTICS:
            transformed = tf.map_fn(lambda image: layer.transform_images(image[None], value)[0],
                                    subset)
        else:
            transformed = layer.transform_images(subset, value)
        return tf.tensor_scatter_nd_update(
            images, rows[:, None], tf.cast(transformed, images.dtype)
        )


@keras.saving.register_keras_serializable(package="tfssl")
class RowwiseAugmentation(keras.layers.Layer):
    """Runs a Keras image augmentation layer on each image of a batch separately.

    `keras.layers.RandAugment` draws its `num_ops` operations once per call, so every
    image of a batch gets the same two operations (only their magnitudes differ); FixMatch
    draws them per image. This wrapper calls `layer` once per row with `tf.map_fn`
    (`per_row=True`). Measured on this CPU for 50 images of 28x28: 53 ms per batch call,
    126 ms per row-wise call. Grey images go through a 3-channel copy averaged back,
    since RandAugment's colour degeneration refuses one channel. Identity at inference.

    Example:

    ```python
    augment = tfssl.layers.RowwiseAugmentation(
        keras.layers.RandAugment(value_range=(0, 1), factor=0.1))
    views = augment(images, training=True)
    ```

    Args:
        layer: A Keras image layer taking `(batch, height, width, channels)` images.
        per_row: Call `layer` once per image (`True`) or once per batch. Defaults to
            `True`.
        **kwargs: `keras.layers.Layer` arguments.
    """

    def __init__(self, layer, per_row=True, **kwargs):
        super().__init__(**kwargs)
        self.layer = layer
        self.per_row = bool(per_row)

    def build(self, input_shape):
        channels = input_shape[-1]
        self.layer.build((*input_shape[:-1], 3 if channels == 1 else channels))
        self.built = True

    def call(self, images, training=False):
        if not training:
            return images
        images = tf.convert_to_tensor(images)
        if not self.per_row:
            return self._augment(images)
        return tf.map_fn(lambda image: self._augment(image[None])[0], images)

    def _augment(self, images):
        if images.shape[-1] != 1:
            return self.layer(images, training=True)
        rgb = self.layer(tf.tile(images, [1, 1, 1, 3]), training=True)
        return tf.reduce_mean(rgb, axis=-1, keepdims=True)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {"layer": keras.saving.serialize_keras_object(self.layer), "per_row": self.per_row}
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["layer"] = keras.saving.deserialize_keras_object(config["layer"])
        return cls(**config)


def strong_augmentation(
    num_ops=2,
    factor=0.1,
    cutout=0.5,
    value_range=(0.0, 1.0),
    per_row=True,
    seed=None,
):
    """FixMatch's strong augmentation: RandAugment per image, then a cutout square.

    Keras' own layers, not a re-implementation: `keras.layers.RandAugment`'s operations
    (shear, translation, rotation, brightness, colour, contrast, sharpness, posterize,
    solarize, auto-contrast, equalize; `num_ops` of them per image, drawn per image by
    `PerImageRandAugment` in one batched call, which costs about a fifth of calling
    `RandAugment` once per image) and `keras.layers.RandomErasing` as the cutout, always applied,
    filled with the middle of `value_range` (the paper's grey). Keras' RandomErasing draws
    each side of the patch as `sqrt(U(0.02, cutout**2))` of the image's, so a square-ish
    patch up to `cutout` of each side (the paper's square has a side up to half the
    image's). Grey (1-channel) images work.

    `factor` scales every operation's magnitude: Keras' rotation reaches `factor * 360`
    degrees and its translation and shear `factor` of the image. The paper samples
    rotations up to 30 degrees and shifts up to 30%; Keras' default 0.5 (rotations up to
    180 degrees, shifts up to 50%) destroys 28x28 images, hence `0.1` here (36 degrees,
    10%, about 3 pixels on 28x28).

    Example:

    ```python
    strong = tfssl.layers.strong_augmentation(factor=0.1, seed=0)
    views = strong(images, training=True)     # images in [0, 1], (batch, 28, 28, 1)
    ```

    Args:
        num_ops: Operations per image. Defaults to `2` (the paper's).
        factor: Magnitude of the operations in `(0, 1]`. Defaults to `0.1`.
        cutout: Largest side of the erased patch relative to the image's, in `[0, 1]`;
            0 disables it. Defaults to `0.5` (the paper's).
        value_range: `(low, high)` of the pixel values. Defaults to `(0.0, 1.0)`.
        per_row: Draw the operations per image (the paper's, `PerImageRandAugment`)
            rather than once per batch (Keras' `RandAugment`, which also computes every
            operation on every image). Defaults to `True`.
        seed: Integer seed of the random layers. Defaults to `None`.

    Returns:
        A `keras.Sequential` taking `(batch, height, width, channels)` images; identity at
        inference.

    Raises:
        ValueError: If `num_ops < 1`, `factor` is outside `(0, 1]` or `cutout` outside
            `[0, 1]`.

    References:
        Sohn et al., FixMatch: Simplifying Semi-Supervised Learning with Consistency and
        Confidence, arXiv 2001.07685. Cubuk et al., RandAugment, arXiv 1909.13719.
    """
    if isinstance(num_ops, bool) or not isinstance(num_ops, int) or num_ops < 1:
        raise ValueError(f"`num_ops` must be a positive integer. Received: num_ops={num_ops!r}")
    if not 0.0 < factor <= 1.0:
        raise ValueError(f"`factor` must be in (0, 1]. Received: factor={factor}")
    if not 0.0 <= cutout <= 1.0:
        raise ValueError(f"`cutout` must be in [0, 1]. Received: cutout={cutout}")
    low, high = value_range
    # Per image, one batched call of the per-image layer; per batch, Keras' own.
    rand_augment = (PerImageRandAugment if per_row else keras.layers.RandAugment)(
        value_range=(low, high), num_ops=num_ops, factor=factor, seed=seed
    )
    layers = [RowwiseAugmentation(rand_augment, per_row=False)]
    if cutout:
        layers.append(
            keras.layers.RandomErasing(
                factor=(1.0, 1.0),
                scale=(0.02 * cutout**2, cutout**2),
                fill_value=(low + high) / 2.0,
                value_range=(low, high),
                seed=seed,
            )
        )
    return keras.Sequential(layers, name="strong_augmentation")
