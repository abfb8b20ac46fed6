"""The seed's TF1 `mixup`, as `tf.compat.v1` graph code.

Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018, arXiv 1710.09412.
Source: seed 002, the blog post on mixup for text classification.
The seed's function, as written but for:

- `tf.distributions.Beta`, removed from TensorFlow, is `tfp.distributions.Beta`;
- `tf.random_shuffle` is `tf.compat.v1.random_shuffle`;
- `mix` and `index` may be passed in, to fix the random draws in parity tests, and `seed`
  seeds them otherwise. A given `mix` still goes through the seed's
  `mix = max(mix, 1 - mix)`, so the mixed input always leans towards `input_x` (mix >= 0.5).

Build it in a graph, e.g. with `tfssl.reference.seed_ops.run_in_graph`.
"""

import tensorflow as tf

__all__ = ["mixup"]

tf1 = tf.compat.v1


def mixup(input_x, input_y, label_size, alpha, mix=None, index=None, seed=None):
    """The seed's mixup: mixes each row with a shuffled row of the same batch.

    Formula:

    ```python
    mix = max(m, 1 - m)                      # m ~ Beta(alpha, alpha), one draw per batch
    xmix = input_x * mix + input_x[index] * (1 - mix)
    ymix = one_hot(input_y) * mix + one_hot(input_y)[index] * (1 - mix)
    ```

    Example:

    ```python
    xmix, ymix = run_in_graph(mixup, x, y, 10, 0.2, seed=0)
    ```

    Args:
        input_x: Float tensor of shape `(batch, ...)`.
        input_y: Int labels of shape `(batch,)`.
        label_size: Number of classes.
        alpha: Beta concentration, `> 0`.
        mix: Optional drawn weight `m`, shape `(1,)` or scalar, used instead of the Beta draw.
            Defaults to `None` (draw it).
        index: Optional `(batch,)` permutation used instead of the random shuffle.
            Defaults to `None` (shuffle).
        seed: Optional op seed for the Beta draw and the shuffle. Defaults to `None`.

    Returns:
        `(xmix, ymix)`: the mixed inputs and the mixed one-hot labels (float32).

    Raises:
        ValueError: If `alpha <= 0`.
    """
    if alpha <= 0:
        raise ValueError(f"`alpha` must be > 0. Received: alpha={alpha}")
    # get mixup lambda
    batch_size = tf1.shape(input_x)[0]
    input_y = tf1.one_hot(input_y, depth=label_size)
    if mix is None:
        # Imported here: tensorflow-probability takes seconds to import and only this needs it.
        import tensorflow_probability as tfp

        mix = tfp.distributions.Beta(alpha, alpha).sample(1, seed=seed)
    mix = tf1.cast(mix, tf1.float32)
    mix = tf1.maximum(mix, 1 - mix)
    # get random shuffle sample
    if index is None:
        index = tf1.random_shuffle(tf1.range(batch_size), seed=seed)
    random_x = tf1.gather(input_x, index)
    random_y = tf1.gather(input_y, index)
    # get mixed input
    xmix = input_x * mix + random_x * (1 - mix)
    ymix = tf1.cast(input_y, tf1.float32) * mix + tf1.cast(random_y, tf1.float32) * (1 - mix)
    return xmix, ymix
