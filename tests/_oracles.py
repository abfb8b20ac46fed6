"""NumPy oracles of the tfssl loss terms, and backbones whose every pass NumPy can repeat.

The value checks of the method tests compare each loss term, gradient and state update of
a model with a computation written here independently of `tfssl`, in float64, on a fixed
batch. The backbones are a single `Dense` layer with fixed weights, optionally behind
`NoiseTable`, a noise layer whose draws are known in advance, so that two stochastic
passes (Π-model, Mean Teacher) are stochastic and yet repeatable by NumPy.
"""

import keras
import numpy as np

# float32 computes every term: its unit roundoff is 6e-8, and one loss term on the 6x3 or
# 12x3 batches of these tests takes about 100 float32 operations (softmax, log, sums), so
# a relative error of 100 * 6e-8 = 6e-6 bounds it; 1e-5 leaves that margin and rejects
# any wrong formula (they move the values by 1e-2 and more on these batches).
RTOL = 1e-5
# Terms that are exactly 0 in the formula come out as float32 rounding of O(1) values.
ATOL = 1e-7

NUM_FEATURES = 6
NUM_CLASSES = 3


def softmax(z):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(z):
    z = np.asarray(z, np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def consistency(logits, target_logits, kind):
    """Per-row consistency: mean squared softmax difference, or KL(target || logits)."""
    if kind == "mse":
        return ((softmax(logits) - softmax(target_logits)) ** 2).mean(axis=-1)
    q = softmax(target_logits)
    return (q * (log_softmax(target_logits) - log_softmax(logits))).sum(axis=-1)


def softmax_backward(logits, grad_probs):
    """Chain rule through softmax: d/dz of a function of p = softmax(z), given d/dp."""
    p = softmax(logits)
    return p * (grad_probs - (p * grad_probs).sum(axis=-1, keepdims=True))


def consistency_gradients(logits, target_logits, kind):
    """Gradients of the batch mean of `consistency` w.r.t. `(logits, target_logits)`."""
    batch = len(logits)
    p, q = softmax(logits), softmax(target_logits)
    if kind == "mse":
        grad_p = 2.0 * (p - q) / (p.shape[-1] * batch)
        return softmax_backward(logits, grad_p), softmax_backward(target_logits, -grad_p)
    # KL(q || p) = sum q log q - sum q log p: d/dz = p - q; d/dt through q only.
    log_ratio = log_softmax(target_logits) - log_softmax(logits)
    grad_q = (log_ratio + 1.0) / batch
    return (p - q) / batch, softmax_backward(target_logits, grad_q)


def cross_entropy(labels, logits, normalize="batch", smoothing=0.0):
    """Masked softmax cross-entropy (label -1 adds nothing) and its gradient w.r.t. logits.

    `normalize="batch"` divides by the batch size, `"labeled"` by the number of labeled
    rows; `smoothing` mixes the one-hot targets with `smoothing / classes` (Keras').
    """
    labels = np.asarray(labels)
    labeled = labels != -1
    classes = logits.shape[-1]
    targets = np.eye(classes)[np.where(labeled, labels, 0)]
    targets = (1.0 - smoothing) * targets + smoothing / classes
    per_row = -(targets * log_softmax(logits)).sum(axis=-1) * labeled
    denominator = len(labels) if normalize == "batch" else max(labeled.sum(), 1)
    gradient = (softmax(logits) - targets) * labeled[:, None] / denominator
    return per_row.sum() / denominator, gradient


def ramp_up(epoch, ramp_up_epochs, method):
    """The seed's ramp-up weight, 0 at epoch 0, with the epoch clamped to the ramp."""
    if epoch == 0:
        return 0.0
    p = min(epoch, ramp_up_epochs) / ramp_up_epochs
    return {
        "linear": p,
        "sigmoid": np.exp(-5.0 * (1.0 - p) ** 2),
        "cosine": 0.5 * (np.cos(np.pi * p) + 1.0),
        "cosine_rampup": 0.5 * (1.0 - np.cos(np.pi * p)),
    }[method]


def dense_gradients(inputs, grad_logits):
    """Gradients of `inputs @ kernel + bias` w.r.t. `(kernel, bias)`."""
    return np.asarray(inputs, np.float64).T @ grad_logits, grad_logits.sum(axis=0)


def noise_draws(seed, draws, batch, num_features=NUM_FEATURES, scale=0.5):
    """The draws a `NoiseTable(seed, draws, batch)` adds, in order."""
    rng = np.random.default_rng(seed)
    return (scale * rng.normal(size=(draws, batch, num_features))).astype("float32")


@keras.saving.register_keras_serializable(package="tfssl_tests")
class NoiseTable(keras.layers.Layer):
    """Adds the next of `draws` fixed noise arrays in training, the identity otherwise.

    The draws come from `noise_draws(seed, draws, batch)`; the k-th training call since
    `restart()` adds draw `k mod draws`. A Python counter: call it eagerly (or trace once)
    so that the count is the number of passes. Mean Teacher's clone of the backbone adds 1
    to an integer `seed`, so its teacher has draws of its own.
    """

    def __init__(self, seed=0, draws=2, batch=12, **kwargs):
        super().__init__(**kwargs)
        self.seed, self.draws, self.batch = seed, draws, batch
        self.table = noise_draws(seed, draws, batch)
        self.calls = 0

    def restart(self):
        self.calls = 0

    def call(self, inputs, training=False):
        if not training:
            return inputs
        draw = self.table[self.calls % self.draws]
        self.calls += 1
        return inputs + draw

    def get_config(self):
        return {**super().get_config(), "seed": self.seed, "draws": self.draws, "batch": self.batch}


def dense_weights(seed=0, num_features=NUM_FEATURES, num_classes=NUM_CLASSES, scale=0.7):
    rng = np.random.default_rng(seed)
    kernel = (scale * rng.normal(size=(num_features, num_classes))).astype("float32")
    bias = (0.3 * rng.normal(size=num_classes)).astype("float32")
    return kernel, bias


def linear_backbone(noise_seed=None, draws=2, batch=12, weight_seed=0, num_classes=NUM_CLASSES):
    """`Input -> [NoiseTable] -> Dense` with the weights `dense_weights(weight_seed)`.

    Returns:
        The `keras.Sequential`; its noise layer, if any, is `backbone.layers[0]`.
    """
    layers = [keras.Input((NUM_FEATURES,), name="x")]
    if noise_seed is not None:
        layers.append(NoiseTable(noise_seed, draws, batch))
    layers.append(keras.layers.Dense(num_classes))
    backbone = keras.Sequential(layers)
    backbone.layers[-1].set_weights(list(dense_weights(weight_seed, num_classes=num_classes)))
    return backbone


def batch(num_rows=12, num_labeled=6, seed=0):
    """A fixed batch: float32 `x (rows, 6)`, labels with the last rows unlabeled (-1)."""
    rng = np.random.default_rng(100 + seed)
    x = rng.normal(size=(num_rows, NUM_FEATURES)).astype("float32")
    labels = rng.integers(0, NUM_CLASSES, size=num_rows)
    labels[num_labeled:] = -1
    return x, labels.astype("int32")
