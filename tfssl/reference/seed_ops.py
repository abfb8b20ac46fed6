"""The seeds' TF1 `ramp_up` and Keras `f1_loss`, as `tf.compat.v1` graph code.

Sources, the project's seed documents:

- `ramp_up(cur_epoch, max_epoch, method)`: seed 000, the blog post on Temporal Ensembling
  and the Pi-model (Laine & Aila, arXiv:1610.02242), from its author's TF1 project. Copied
  as written, including its "cosine" that falls from 1 to 0 and its Python `if` on the
  epoch (which only works for Python numbers).
- `f1_loss(y_true, y_pred)`: seed 003, the post on soft F1 as a Keras loss. Its `K` is the
  TF1-era Keras backend: `K.sum`, `K.cast(x, 'float')`, `K.mean` and `K.epsilon()` are
  written here as `tf.compat.v1.reduce_sum`, `tf.compat.v1.cast(x, tf.float32)`,
  `tf.compat.v1.reduce_mean` and that backend's default epsilon, 1e-7; `tf.is_nan` is
  `tf.compat.v1.is_nan`. The blog's typographic dash in `1 – K.mean(f1)` is a minus.

These functions build graph ops: call them through `run_in_graph`, which evaluates them in a
`tf.compat.v1.Session` on a fresh graph without turning eager execution off for the process.
"""

import numpy as np
import tensorflow as tf

__all__ = ["f1_loss", "ramp_up", "run_in_graph"]

tf1 = tf.compat.v1

# K.epsilon() of the Keras backend the seed used (its default fuzz factor).
_K_EPSILON = 1e-7


def ramp_up(cur_epoch, max_epoch, method):
    """The seed's `ramp_up`, verbatim but for the `tf1` namespace."""

    def linear(cur_epoch, max_epoch):
        return cur_epoch / max_epoch

    def sigmoid(cur_epoch, max_epoch):
        p = 1.0 - cur_epoch / max_epoch
        return tf1.exp(-5.0 * p**2)

    def cosine(cur_epoch, max_epoch):
        p = cur_epoch / max_epoch
        return 0.5 * (tf1.cos(np.pi * p) + 1)

    if cur_epoch == 0:
        weight = tf1.constant(0.0)
    else:
        if method == "linear":
            weight = linear(cur_epoch, max_epoch)
        elif method == "sigmoid":
            weight = sigmoid(cur_epoch, max_epoch)
        elif method == "cosine":
            weight = cosine(cur_epoch, max_epoch)
        else:
            raise ValueError("Only linear, sigmoid, cosine method are supported")
    return tf1.cast(weight, tf1.float32)


def f1_loss(y_true, y_pred):
    """The seed's Keras `f1_loss`, with the backend calls spelled in `tf.compat.v1`."""
    tp = tf1.reduce_sum(tf1.cast(y_true * y_pred, tf1.float32), axis=0)
    # Computed by the seed and never used; kept so the oracle stays the seed's text.
    tn = tf1.reduce_sum(tf1.cast((1 - y_true) * (1 - y_pred), tf1.float32), axis=0)  # noqa: F841
    fp = tf1.reduce_sum(tf1.cast((1 - y_true) * y_pred, tf1.float32), axis=0)
    fn = tf1.reduce_sum(tf1.cast(y_true * (1 - y_pred), tf1.float32), axis=0)

    p = tp / (tp + fp + _K_EPSILON)
    r = tp / (tp + fn + _K_EPSILON)

    f1 = 2 * p * r / (p + r + _K_EPSILON)
    f1 = tf1.where(tf1.is_nan(f1), tf1.zeros_like(f1), f1)
    return 1 - tf1.reduce_mean(f1)


def run_in_graph(fn, *args, **kwargs):
    """Builds `fn(*args, **kwargs)` in a fresh `tf.Graph` and runs it in a v1 Session.

    Array arguments become graph constants. Eager execution stays on for the rest of the
    process: only this graph is built in TF1 style.

    Example:

    >>> float(run_in_graph(ramp_up, 40, 80, "sigmoid"))
    0.2865...

    Args:
        fn: A function that builds graph ops, such as `ramp_up` or `f1_loss`.
        *args: Positional arguments for `fn` (numbers or numpy arrays).
        **kwargs: Keyword arguments for `fn`.

    Returns:
        The evaluated result as numpy.
    """
    graph = tf.Graph()
    with graph.as_default():
        args = [tf1.constant(a) if isinstance(a, np.ndarray) else a for a in args]
        output = fn(*args, **kwargs)
        with tf1.Session(graph=graph) as session:
            return session.run(output)
