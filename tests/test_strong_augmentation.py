"""The strong view drawn per image in one batched call (`PerImageRandAugment`) against
Keras' RandAugment called on each image separately: each image gets exactly its own
operations and parameters, the operations are drawn uniformly and independently per
image, and the augmented images have the same distribution as the per-image calls'."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfssl import layers

NUM_OPERATIONS = len(keras.layers.RandAugment._AUGMENT_LAYERS)


def fashion_like_images(rows, seed=0):
    """Smooth grey-ish RGB images in [0, 1], so every operation changes them."""
    rng = np.random.default_rng(seed)
    grid = np.linspace(-1, 1, 28)
    blob = np.exp(-(grid[:, None] ** 2 + grid[None, :] ** 2) * 2.0)
    images = blob[None, :, :, None] * rng.uniform(0.5, 1.0, size=(rows, 1, 1, 3))
    return np.clip(images + 0.05 * rng.normal(size=(rows, 28, 28, 3)), 0, 1).astype("float32")


def test_each_image_gets_its_own_operations_and_parameters():
    layer = layers.PerImageRandAugment(value_range=(0, 1), num_ops=2, factor=0.3, seed=1)
    images = tf.constant(fashion_like_images(24))
    layer.build(images.shape)
    transformation = layer.get_random_transformation(images, training=True)
    augmented = layer.transform_images(images, transformation).numpy()
    chosen = transformation["layer_idxes"].numpy()
    assert chosen.shape == (2, 24)
    for i in range(24):
        image = images[i: i + 1]
        for position in range(2):
            name = layer._AUGMENT_LAYERS[chosen[position, i]]
            value = transformation["transforms"][name]
            own = tf.nest.map_structure(
                lambda leaf: leaf[i: i + 1] if tf.is_tensor(leaf) and leaf.shape.rank else leaf,
                value,
            )
            image = getattr(layer, name).transform_images(image, own)
        # The same float32 operations on one image as on a batch.
        np.testing.assert_allclose(augmented[i], image.numpy()[0], atol=1e-5)


def test_operations_are_drawn_uniformly_and_per_image():
    layer = layers.PerImageRandAugment(value_range=(0, 1), num_ops=2, factor=0.1, seed=2)
    images = tf.zeros((400, 4, 4, 3))
    layer.build(images.shape)
    draws = np.concatenate(
        [layer.get_random_transformation(images)["layer_idxes"].numpy() for _ in range(10)], 1
    )
    n = draws.shape[1]
    p = 1.0 / NUM_OPERATIONS
    # Each operation's frequency at each position within 4.5 binomial standard errors
    # (22 frequencies: a false alarm has probability about 1.5e-4).
    standard_error = np.sqrt(p * (1 - p) / n)
    for position in range(2):
        frequencies = np.bincount(draws[position], minlength=NUM_OPERATIONS) / n
        assert np.max(np.abs(frequencies - p)) < 4.5 * standard_error, frequencies
    # The two positions are independent: as often equal as chance says.
    equal = np.mean(draws[0] == draws[1])
    assert abs(equal - p) < 4.5 * np.sqrt(p * (1 - p) / n)
    # Per image: the images of one call do not share their operations.
    assert len(np.unique(draws[0, :400])) == NUM_OPERATIONS


@pytest.mark.slow  # a statistical test over many draws
def test_augmented_images_have_the_distribution_of_per_image_calls():
    """Two statistics of 300 augmented copies of one image, each way: their means agree
    within 4 standard errors of the difference (a false alarm: about 1e-4 per statistic).

    Keras' layer runs in a `tf.function`, as in a training step: it is then called on each
    image inside one graph loop (`tf.map_fn`), its seed generator advanced per image as in
    eager calls, instead of 300 eager calls (about 1 minute)."""
    image = fashion_like_images(1, seed=3)[..., :1]
    batch = np.repeat(image, 300, axis=0)
    rand = dict(value_range=(0.0, 1.0), num_ops=2, factor=0.3)
    vectorised = layers.RowwiseAugmentation(layers.PerImageRandAugment(**rand, seed=4),
                                            per_row=False)
    per_image = layers.RowwiseAugmentation(keras.layers.RandAugment(**rand, seed=5), per_row=True)

    def statistics(layer, graph):
        def call(images):
            return layer(images, training=True)

        out = np.asarray((tf.function(call) if graph else call)(batch))
        # Per image: the images of one call got their own draws, not one shared one.
        assert len(np.unique(out.reshape(len(out), -1), axis=0)) > len(out) // 2
        return {
            "mean": out.mean(axis=(1, 2, 3)),
            "changed": np.mean(np.abs(out - image) > 0.01, axis=(1, 2, 3)),
        }

    ours, theirs = statistics(vectorised, graph=False), statistics(per_image, graph=True)
    for name in ours:
        a, b = ours[name], theirs[name]
        standard_error = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
        assert standard_error > 0
        assert abs(a.mean() - b.mean()) < 4 * standard_error, (name, a.mean(), b.mean())


def test_strong_augmentation_uses_one_batched_call_per_image_draws():
    strong = layers.strong_augmentation(seed=0)
    assert isinstance(strong.layers[0].layer, layers.PerImageRandAugment)
    assert not strong.layers[0].per_row
    per_batch = layers.strong_augmentation(per_row=False, seed=0)
    assert type(per_batch.layers[0].layer) is keras.layers.RandAugment


def test_per_image_layer_config_round_trip_and_inference_identity():
    layer = layers.PerImageRandAugment(value_range=(0, 1), num_ops=3, factor=0.2, seed=7)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(clone) is layers.PerImageRandAugment
    assert clone.get_config() == layer.get_config()
    images = fashion_like_images(3)
    np.testing.assert_array_equal(layer(images, training=False), images)
