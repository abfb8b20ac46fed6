"""Losses for learning from few labels.

- Consistency between two predictions, MSE or KL on softmax outputs (Laine & Aila,
  "Temporal Ensembling for Semi-Supervised Learning", arXiv:1610.02242; Tarvainen &
  Valpola, "Mean teachers are better role models", arXiv:1703.01780; seed 000).
- Supervised cross-entropy that masks unlabeled samples (label -1), as the seed's TF1 code.
- Soft macro-F1: the seed's Keras `f1_loss` (seed 003) and sigmoidF1 (Bénédict et al.,
  "sigmoidF1: A Smooth F1 Score Surrogate Loss for Multilabel Classification",
  arXiv:2108.10566).
- Sharpening of a predicted distribution with a temperature, MixMatch's label guess
  (Berthelot et al., "MixMatch: A Holistic Approach to Semi-Supervised Learning",
  arXiv:1905.02249).
- Entropy of the predicted distribution, the entropy-minimization term (Grandvalet &
  Bengio, "Semi-supervised Learning by Entropy Minimization", NIPS 2004) of VAT + EntMin
  (Miyato et al., arXiv:1704.03976).
- Label regularization (seed 004): label smoothing (Szegedy et al., arXiv:1512.00567),
  distillation with a temperature (Hinton et al., arXiv:1503.02531) and ReLoop's
  self-correction term (Cai et al., "ReLoop: A Self-Correction Continual Learning Loop for
  Recommender Systems", SIGIR 2022, arXiv:2204.11165).

Each loss is a graph-safe function computing in `float32`, plus a thin `keras.losses.Loss`
class where one is useful in `compile`.
"""

import numbers

import keras
import tensorflow as tf
from keras import ops

from tfssl.data import UNLABELED

__all__ = [
    "ConsistencyLoss",
    "F1Loss",
    "GeneralizedCrossentropy",
    "MaskedSparseCategoricalCrossentropy",
    "SigmoidF1Loss",
    "SymmetricCrossentropy",
    "consistency_loss",
    "distillation_loss",
    "entropy_loss",
    "f1_loss",
    "generalized_crossentropy",
    "masked_sparse_categorical_crossentropy",
    "reloop_loss",
    "sharpen",
    "sigmoid_f1_loss",
    "smooth_labels",
    "symmetric_crossentropy",
]


_CONSISTENCY_KINDS = ("mse", "kl")
_REDUCTIONS = ("mean", "none")
_NORMALIZATIONS = ("batch", "labeled", "none")


def _is_number(value):
    # Python and numpy scalars; tensors are not checked (their values are unknown in graphs).
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}. Received: {name}={value!r}")


def _normalized_per_sample(per_sample, y_true, normalize):
    """Per-row losses that Keras' batch mean turns into the `normalize` mean: as they are
    for `"batch"`, scaled by `batch / labeled` for `"labeled"`."""
    if normalize == "batch":
        return per_sample
    labels = tf.reshape(tf.cast(y_true, tf.int32), [-1])
    num_labeled = tf.reduce_sum(tf.cast(tf.not_equal(labels, UNLABELED), tf.float32))
    batch_size = tf.cast(tf.size(labels), tf.float32)
    return per_sample * tf.math.divide_no_nan(batch_size, num_labeled)


def _kl_from_logits(target_logits, logits):
    # From log-softmax rather than clipped probabilities (keras.losses.kl_divergence clips
    # to epsilon): exact for saturated predictions and finite for any logits.
    target_log_probs = tf.nn.log_softmax(target_logits, axis=-1)
    log_probs = tf.nn.log_softmax(logits, axis=-1)
    return tf.reduce_sum(tf.exp(target_log_probs) * (target_log_probs - log_probs), axis=-1)


def consistency_loss(logits, target_logits, kind="mse", reduction="mean"):
    """Consistency between two predictions of the same samples, on softmax outputs.

    The unsupervised term of the Pi-model, Temporal Ensembling and Mean Teacher. `"mse"`
    is the mean over classes of the squared difference of the softmax outputs (the papers'
    and the seed's choice: it worked better than KL in both papers); `"kl"` is
    `KL(softmax(target_logits) || softmax(logits))`, summed over classes.

    Gradients flow into *both* arguments: this function does not stop them. Callers decide
    (`ops.stop_gradient(target_logits)` for a fixed target, as Mean Teacher's teacher and
    Temporal Ensembling's ensemble are; the Pi-model in the paper lets both branches learn).

    Formula:

    ```python
    p, q = softmax(logits), softmax(target_logits)
    mse = mean((p - q) ** 2, axis=-1)
    kl = sum(q * (log(q) - log(p)), axis=-1)
    ```

    Example:

    >>> consistency_loss([[2.0, 0.0]], [[0.0, 0.0]], kind="mse", reduction="none").shape
    TensorShape([1])

    Args:
        logits: Logits of the prediction being trained, shape `(batch, classes)`.
        target_logits: Logits of the target prediction, same shape.
        kind: `"mse"` or `"kl"`. Defaults to `"mse"`.
        reduction: `"mean"` (a scalar, mean over the batch) or `"none"` (shape `(batch,)`).
            Defaults to `"mean"`.

    Returns:
        A `float32` scalar, or a `(batch,)` vector for `reduction="none"`.

    Raises:
        ValueError: for an unknown `kind` or `reduction`.
    """
    _check_choice("kind", kind, _CONSISTENCY_KINDS)
    _check_choice("reduction", reduction, _REDUCTIONS)
    logits = tf.cast(logits, tf.float32)
    target_logits = tf.cast(target_logits, tf.float32)
    if kind == "mse":
        diff = tf.nn.softmax(logits, axis=-1) - tf.nn.softmax(target_logits, axis=-1)
        per_sample = tf.reduce_mean(tf.square(diff), axis=-1)
    else:
        per_sample = _kl_from_logits(target_logits, logits)
    if reduction == "none":
        return per_sample
    return tf.reduce_mean(per_sample)


@keras.saving.register_keras_serializable(package="tfssl")
class ConsistencyLoss(keras.losses.Loss):
    """`consistency_loss` as a Keras loss: `y_true` holds the target logits.

    `y_pred` holds the logits being trained. Keras' `reduction` (default: mean over the
    batch) applies to the per-sample values.

    Example:

    ```python
    loss = tfssl.losses.ConsistencyLoss(kind="kl")
    loss(teacher_logits, student_logits)
    ```

    Args:
        kind: `"mse"` or `"kl"`. Defaults to `"mse"`.
        reduction: Keras loss reduction. Defaults to `"sum_over_batch_size"`.
        name: Name of the loss. Defaults to `"consistency_loss"`.
        dtype: Dtype of the loss computations. Defaults to `None` (floatx).

    Raises:
        ValueError: for an unknown `kind`.
    """

    def __init__(
        self, kind="mse", reduction="sum_over_batch_size", name="consistency_loss", dtype=None
    ):
        _check_choice("kind", kind, _CONSISTENCY_KINDS)
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.kind = kind

    def call(self, y_true, y_pred):
        return consistency_loss(y_pred, y_true, kind=self.kind, reduction="none")

    def get_config(self):
        return {**super().get_config(), "kind": self.kind}


def masked_sparse_categorical_crossentropy(y_true, logits, normalize="batch"):
    """Sparse categorical cross-entropy from logits that ignores unlabeled samples.

    Rows whose label is `UNLABELED` (-1) contribute 0; they are kept in the batch, never
    dropped. Their label is replaced by a valid index before the cross-entropy op so that
    -1 never reaches it (the op would fail on CPU and return NaN on GPU).

    Formula:

    ```python
    mask = y_true != -1
    per_sample = where(mask, sparse_categorical_crossentropy(y_true, logits), 0)
    batch = sum(per_sample) / batch_size          # the seed's TF1 code
    labeled = sum(per_sample) / max(sum(mask), 1)  # 0 when no row is labeled
    ```

    Example:

    >>> loss = masked_sparse_categorical_crossentropy([0, -1], [[0.0, 0.0], [5.0, 0.0]])
    >>> float(loss)  # log(2) / 2
    0.3465...

    Args:
        y_true: Integer labels, shape `(batch,)` or `(batch, 1)`; -1 marks unlabeled rows.
            Float labels (as Keras passes them to losses) are cast to int.
        logits: Logits, shape `(batch, classes)`.
        normalize: `"batch"`: the sum divided by the batch size, the seed's behaviour (the
            supervised term then shrinks with the labeled share of the batch);
            `"labeled"`: divided by the number of labeled rows, 0 when there are none;
            `"none"`: the per-sample vector. Defaults to `"batch"`.

    Returns:
        A `float32` scalar, or a `(batch,)` vector for `normalize="none"`.

    Raises:
        ValueError: for an unknown `normalize`.
    """
    _check_choice("normalize", normalize, _NORMALIZATIONS)
    logits = tf.cast(logits, tf.float32)
    labels = tf.reshape(tf.cast(y_true, tf.int32), [-1])
    labeled = tf.not_equal(labels, UNLABELED)
    safe_labels = tf.where(labeled, labels, tf.zeros_like(labels))
    per_sample = keras.losses.sparse_categorical_crossentropy(safe_labels, logits, from_logits=True)
    per_sample = tf.where(labeled, per_sample, tf.zeros_like(per_sample))
    if normalize == "none":
        return per_sample
    total = tf.reduce_sum(per_sample)
    if normalize == "batch":
        return total / tf.cast(tf.size(labels), tf.float32)
    return tf.math.divide_no_nan(total, tf.reduce_sum(tf.cast(labeled, tf.float32)))


@keras.saving.register_keras_serializable(package="tfssl")
class MaskedSparseCategoricalCrossentropy(keras.losses.Loss):
    """`masked_sparse_categorical_crossentropy` as a Keras loss (`y_pred` = logits).

    The reduction is fixed to Keras' mean over the batch and `normalize` picks the
    denominator: for `"labeled"` each labeled row is scaled by `batch / labeled` (the trick
    Keras uses for masked losses), so the mean becomes the mean over labeled rows. Sample
    weights multiply the per-sample values.

    Example:

    ```python
    model.compile(loss=tfssl.losses.MaskedSparseCategoricalCrossentropy("labeled"), ...)
    ```

    Args:
        normalize: `"batch"` or `"labeled"`, see the function. Defaults to `"batch"`.
        name: Name of the loss. Defaults to `"masked_sparse_categorical_crossentropy"`.
        dtype: Dtype of the loss computations. Defaults to `None` (floatx).

    Raises:
        ValueError: for an unknown `normalize`.
    """

    def __init__(
        self, normalize="batch", name="masked_sparse_categorical_crossentropy", dtype=None
    ):
        _check_choice("normalize", normalize, ("batch", "labeled"))
        super().__init__(name=name, reduction="sum_over_batch_size", dtype=dtype)
        self.normalize = normalize

    def call(self, y_true, y_pred):
        per_sample = masked_sparse_categorical_crossentropy(y_true, y_pred, normalize="none")
        return _normalized_per_sample(per_sample, y_true, self.normalize)

    def get_config(self):
        return {"name": self.name, "normalize": self.normalize}


def f1_loss(y_true, y_pred):
    """The seed's soft macro-F1 loss: 1 - mean over classes of a soft F1.

    A port of the Keras `f1_loss` in seed 003. Probabilities go in (softmax or sigmoid
    outputs, not logits) with one-hot / multi-hot `y_true`. Soft true positives, false
    positives and false negatives are summed over the batch axis per class; precision and
    recall add `keras.config.epsilon()` to their denominators; a NaN F1 becomes 0. Being a
    statistic of the whole batch, it needs batches large enough to contain every class.
    The seed also computed the true negatives, unused; they are left out. For the F1
    *metric*, use `keras.metrics.F1Score`.

    Formula:

    ```python
    tp = sum(y_true * y_pred, axis=0)
    fp = sum((1 - y_true) * y_pred, axis=0)
    fn = sum(y_true * (1 - y_pred), axis=0)
    p = tp / (tp + fp + eps)
    r = tp / (tp + fn + eps)
    f1 = 2 * p * r / (p + r + eps)     # NaN -> 0
    loss = 1 - mean(f1)
    ```

    Example:

    >>> round(float(f1_loss([[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]])), 6)
    0.0

    Args:
        y_true: One-hot or multi-hot labels, shape `(batch, classes)`.
        y_pred: Predicted probabilities, same shape.

    Returns:
        A `float32` scalar.
    """
    y_pred = tf.cast(y_pred, tf.float32)
    y_true = tf.cast(y_true, tf.float32)
    epsilon = keras.config.epsilon()
    tp = ops.sum(y_true * y_pred, axis=0)
    fp = ops.sum((1.0 - y_true) * y_pred, axis=0)
    fn = ops.sum(y_true * (1.0 - y_pred), axis=0)
    p = tp / (tp + fp + epsilon)
    r = tp / (tp + fn + epsilon)
    f1 = 2.0 * p * r / (p + r + epsilon)
    f1 = ops.where(ops.isnan(f1), ops.zeros_like(f1), f1)
    return 1.0 - ops.mean(f1)


@keras.saving.register_keras_serializable(package="tfssl")
class F1Loss(keras.losses.Loss):
    """`f1_loss` as a Keras loss (`y_pred` = probabilities).

    The loss is a statistic of the whole batch, so Keras' reduction leaves it unchanged.

    Example:

    ```python
    model.compile(loss=tfssl.losses.F1Loss(), metrics=[keras.metrics.F1Score("macro")])
    ```

    Args:
        reduction: Keras loss reduction (no effect on the batch-level value). Defaults to
            `"sum_over_batch_size"`.
        name: Name of the loss. Defaults to `"f1_loss"`.
        dtype: Dtype of the loss computations. Defaults to `None` (floatx).
    """

    def __init__(self, reduction="sum_over_batch_size", name="f1_loss", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        return f1_loss(y_true, y_pred)


def sigmoid_f1_loss(y_true, logits, beta=1.0, eta=0.0):
    """sigmoidF1: 1 - macro-F1 computed on sigmoid scores of logits.

    Bénédict et al. (arXiv:2108.10566) make F1 smooth by replacing the thresholded
    predictions with `S = sigmoid(beta * (logits + eta))`; soft counts are summed over the
    batch per class. A class whose F1 is 0 / 0 (possible only when the sigmoid underflows)
    gets F1 = 0.

    Formula:

    ```python
    s = 1 / (1 + exp(-beta * (logits + eta)))
    tp = sum(s * y_true, axis=0)
    fp = sum(s * (1 - y_true), axis=0)
    fn = sum((1 - s) * y_true, axis=0)
    loss = 1 - mean(2 * tp / (2 * tp + fn + fp))
    ```

    Example:

    >>> float(sigmoid_f1_loss([[1.0], [0.0]], [[0.0], [0.0]]))  # tp=.5 fp=.5 fn=.5
    0.5

    Args:
        y_true: Multi-hot (or one-hot) labels, shape `(batch, classes)`.
        logits: Logits, same shape.
        beta: Slope of the sigmoid, `> 0`. Defaults to `1.0`.
        eta: Offset added to the logits. Defaults to `0.0`.

    Returns:
        A `float32` scalar.

    Raises:
        ValueError: if `beta` is not positive.
    """
    if _is_number(beta) and beta <= 0:
        raise ValueError(f"`beta` must be > 0. Received: beta={beta}")
    y_true = tf.cast(y_true, tf.float32)
    scores = tf.sigmoid(beta * (tf.cast(logits, tf.float32) + eta))
    tp = tf.reduce_sum(scores * y_true, axis=0)
    fp = tf.reduce_sum(scores * (1.0 - y_true), axis=0)
    fn = tf.reduce_sum((1.0 - scores) * y_true, axis=0)
    f1 = tf.math.divide_no_nan(2.0 * tp, 2.0 * tp + fn + fp)
    return 1.0 - tf.reduce_mean(f1)


@keras.saving.register_keras_serializable(package="tfssl")
class SigmoidF1Loss(keras.losses.Loss):
    """`sigmoid_f1_loss` as a Keras loss (`y_pred` = logits).

    Example:

    ```python
    model.compile(loss=tfssl.losses.SigmoidF1Loss(beta=1.0, eta=0.0), ...)
    ```

    Args:
        beta: Slope of the sigmoid, `> 0`. Defaults to `1.0`.
        eta: Offset added to the logits. Defaults to `0.0`.
        reduction: Keras loss reduction (no effect on the batch-level value). Defaults to
            `"sum_over_batch_size"`.
        name: Name of the loss. Defaults to `"sigmoid_f1_loss"`.
        dtype: Dtype of the loss computations. Defaults to `None` (floatx).

    Raises:
        ValueError: if `beta` is not positive.
    """

    def __init__(
        self,
        beta=1.0,
        eta=0.0,
        reduction="sum_over_batch_size",
        name="sigmoid_f1_loss",
        dtype=None,
    ):
        if not _is_number(beta) or beta <= 0:
            raise ValueError(f"`beta` must be a number > 0. Received: beta={beta}")
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.beta = beta
        self.eta = eta

    def call(self, y_true, y_pred):
        return sigmoid_f1_loss(y_true, y_pred, beta=self.beta, eta=self.eta)

    def get_config(self):
        return {**super().get_config(), "beta": self.beta, "eta": self.eta}


def smooth_labels(labels, num_classes, alpha):
    """Label smoothing: integer labels to `(1 - alpha) * one_hot + alpha / num_classes`.

    For a loss, `keras.losses.CategoricalCrossentropy(label_smoothing=alpha)` does the same
    on one-hot targets inside the loss; this function gives the smoothed targets themselves
    (to mix, distill or inspect them).

    Example:

    >>> smooth_labels([1], num_classes=2, alpha=0.1).numpy()
    array([[0.05, 0.95]], dtype=float32)

    Args:
        labels: Integer labels, any shape.
        num_classes: Number of classes `K`, a positive integer.
        alpha: Smoothing strength in `[0, 1]`.

    Returns:
        A `float32` tensor of shape `labels.shape + (num_classes,)`.

    Raises:
        ValueError: if `alpha` is outside `[0, 1]` or `num_classes` is not positive.
    """
    if not _is_number(alpha) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"`alpha` must be in [0, 1]. Received: alpha={alpha}")
    if not isinstance(num_classes, numbers.Integral) or num_classes <= 0:
        raise ValueError(
            f"`num_classes` must be a positive integer. Received: num_classes={num_classes}"
        )
    one_hot = tf.one_hot(tf.cast(labels, tf.int32), num_classes, dtype=tf.float32)
    return (1.0 - alpha) * one_hot + alpha / num_classes


def distillation_loss(teacher_logits, student_logits, temperature=1.0, reduction="mean"):
    """Knowledge distillation: `T^2 * KL(softmax(teacher / T) || softmax(student / T))`.

    Hinton et al. (arXiv:1503.02531). The KL goes from the teacher's softened distribution
    (the target) to the student's, and the `T^2` factor keeps the gradient scale independent
    of `T`. (A public Keras example once swapped the two and dropped `T^2`.) The teacher's
    gradient is not stopped here. Keras' `keras.distillation.LogitsDistillation` computes the
    same objective only when given `loss=keras.losses.KLDivergence()`: in Keras 3.15 its
    default `"kl_divergence"` string resolves to a plain function, which it applies to the
    scaled logits without softmax and without `T^2`.

    Formula:

    ```python
    q = softmax(teacher_logits / T)
    p = softmax(student_logits / T)
    loss = T ** 2 * mean(sum(q * (log(q) - log(p)), axis=-1))
    ```

    Example:

    >>> float(distillation_loss([[1.0, 1.0]], [[1.0, 1.0]], temperature=2.0))
    0.0

    Args:
        teacher_logits: Teacher logits, shape `(batch, classes)`.
        student_logits: Student logits, same shape.
        temperature: Softmax temperature `T > 0`. Defaults to `1.0`.
        reduction: `"mean"` (a scalar, mean over the batch) or `"none"` (shape `(batch,)`).
            Defaults to `"mean"`.

    Returns:
        A `float32` scalar, the mean over the batch, or a `(batch,)` vector for
        `reduction="none"`.

    Raises:
        ValueError: if `temperature` is not positive or `reduction` is unknown.
    """
    if not _is_number(temperature) or temperature <= 0:
        raise ValueError(f"`temperature` must be > 0. Received: temperature={temperature}")
    teacher_logits = tf.cast(teacher_logits, tf.float32) / temperature
    student_logits = tf.cast(student_logits, tf.float32) / temperature
    kl = consistency_loss(student_logits, teacher_logits, kind="kl", reduction=reduction)
    return temperature**2 * kl


def reloop_loss(y_true, y_pred, y_prev, reduction="mean"):
    """ReLoop's self-correction term: do not be worse than the previous model.

    For binary labels and predicted probabilities, a positive sample pays when the current
    prediction is lower than the previous model's, a negative one when it is higher
    (Cai et al., arXiv:2204.11165, eq. for `L_sc`). The paper adds it to the usual binary
    cross-entropy with a weight.

    Formula:

    ```python
    loss = mean(y_true * max(0, y_prev - y_pred) + (1 - y_true) * max(0, y_pred - y_prev))
    ```

    Example:

    >>> float(reloop_loss([1.0, 0.0], [0.6, 0.3], [0.8, 0.1]))  # (0.2 + 0.2) / 2
    0.2...

    Args:
        y_true: Binary labels (0 or 1), any shape.
        y_pred: Current predicted probabilities, same shape.
        y_prev: The previous model's probabilities for the same samples, same shape (a
            fixed target: pass it through `ops.stop_gradient` if it comes from a model).
        reduction: `"mean"` (a scalar, mean over all elements) or `"none"` (the elementwise
            values, shape of `y_true`). Defaults to `"mean"`.

    Returns:
        A `float32` scalar, or the elementwise values for `reduction="none"`.

    Raises:
        ValueError: for an unknown `reduction`.
    """
    _check_choice("reduction", reduction, _REDUCTIONS)
    y_true = tf.cast(y_true, tf.float32)
    y_pred = tf.cast(y_pred, tf.float32)
    y_prev = tf.cast(y_prev, tf.float32)
    positive = tf.nn.relu(y_prev - y_pred)
    negative = tf.nn.relu(y_pred - y_prev)
    elementwise = y_true * positive + (1.0 - y_true) * negative
    if reduction == "none":
        return elementwise
    return tf.reduce_mean(elementwise)


def sharpen(probabilities, temperature):
    """Sharpens class distributions with a temperature, as MixMatch's label guess.

    Lowers the entropy of each row: `T -> 0` tends to the one-hot argmax, `T = 1` leaves
    the row unchanged. Computed as a softmax of `log(p) / T`, which equals the formula and
    does not underflow for small `T`.

    Formula:

    ```python
    sharpened = p ** (1 / T) / sum(p ** (1 / T), axis=-1)
    ```

    Example:

    >>> [round(float(p), 4) for p in sharpen([[0.25, 0.75]], temperature=0.5)[0]]
    [0.1, 0.9]

    Args:
        probabilities: Probabilities, shape `(batch, classes)`, rows summing to 1.
        temperature: `T > 0`.

    Returns:
        A `float32` tensor shaped like `probabilities`, rows summing to 1.

    Raises:
        ValueError: if `temperature` is not positive.

    References:
        Berthelot et al., MixMatch: A Holistic Approach to Semi-Supervised Learning,
        arXiv 1905.02249, eq. 7.
    """
    if not _is_number(temperature) or temperature <= 0:
        raise ValueError(f"`temperature` must be > 0. Received: temperature={temperature}")
    probabilities = tf.cast(probabilities, tf.float32)
    return tf.nn.softmax(tf.math.log(probabilities) / temperature, axis=-1)


def entropy_loss(logits, reduction="mean"):
    """Entropy of `softmax(logits)`: low when the prediction is confident.

    Minimizing it pushes the decision boundary away from the data (Grandvalet & Bengio,
    NIPS 2004); VAT + EntMin adds it to VAT's loss on every row (Miyato et al.,
    arXiv:1704.03976, section 3.3; the authors' code, `--method=vatent`). Computed from
    log-softmax, so it is exact and finite for saturated logits.

    Formula:

    ```python
    p = softmax(logits)
    entropy = -sum(p * log(p), axis=-1)
    ```

    Example:

    >>> round(float(entropy_loss([[0.0, 0.0]])), 6)  # log(2)
    0.693147

    Args:
        logits: Logits, shape `(batch, classes)`.
        reduction: `"mean"` (a scalar, mean over the batch) or `"none"` (shape `(batch,)`).
            Defaults to `"mean"`.

    Returns:
        A `float32` scalar, or a `(batch,)` vector for `reduction="none"`.

    Raises:
        ValueError: for an unknown `reduction`.
    """
    _check_choice("reduction", reduction, _REDUCTIONS)
    log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
    per_sample = -tf.reduce_sum(tf.exp(log_probs) * log_probs, axis=-1)
    if reduction == "none":
        return per_sample
    return tf.reduce_mean(per_sample)


def _labeled_rows(y_true, logits):
    """`(labels, labeled, log_probs)`: int32 labels with `UNLABELED` rows replaced by 0,
    the labeled mask and the float32 log-softmax of `logits`."""
    labels = tf.reshape(tf.cast(y_true, tf.int32), [-1])
    labeled = tf.not_equal(labels, UNLABELED)
    safe_labels = tf.where(labeled, labels, tf.zeros_like(labels))
    return safe_labels, labeled, tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)


def _normalized(per_sample, labeled, normalize):
    """Zeroes the unlabeled rows of `per_sample` and applies `normalize` (see
    `masked_sparse_categorical_crossentropy`)."""
    per_sample = tf.where(labeled, per_sample, tf.zeros_like(per_sample))
    if normalize == "none":
        return per_sample
    total = tf.reduce_sum(per_sample)
    if normalize == "batch":
        return total / tf.cast(tf.size(per_sample), tf.float32)
    return tf.math.divide_no_nan(total, tf.reduce_sum(tf.cast(labeled, tf.float32)))


def generalized_crossentropy(y_true, logits, q=0.7, normalize="batch"):
    """Generalized cross-entropy (GCE), a noise-robust loss between CE and MAE.

    The negative Box-Cox transform of the probability of the given label: `q -> 0` tends to
    the cross-entropy, `q = 1` is the mean absolute error `1 - p_y` (robust to label noise
    but slow to train). Its gradient is the cross-entropy's weighted by `p_y^q`, so rows the
    model finds unlikely (often the mislabeled ones) weigh less. Rows labeled `UNLABELED`
    (-1) add 0. Computed as `(1 - exp(q log p_y)) / q` from the log-softmax, finite for any
    logits.

    Formula:

    ```python
    p = softmax(logits)
    per_sample = where(y_true != -1, (1 - p[y_true] ** q) / q, 0)
    ```

    Example:

    >>> round(float(generalized_crossentropy([0], [[0.0, 0.0]], q=1.0)), 6)  # 1 - 0.5
    0.5

    Args:
        y_true: Integer labels, shape `(batch,)` or `(batch, 1)`; -1 marks unlabeled rows.
        logits: Logits, shape `(batch, classes)`.
        q: The exponent, in `(0, 1]`. Defaults to `0.7` (the paper's).
        normalize: `"batch"` (sum over the batch size), `"labeled"` (over the labeled rows,
            0 when there are none) or `"none"` (the per-sample vector), as
            `masked_sparse_categorical_crossentropy`. Defaults to `"batch"`.

    Returns:
        A `float32` scalar, or a `(batch,)` vector for `normalize="none"`.

    Raises:
        ValueError: For a `q` outside `(0, 1]` or an unknown `normalize`.

    References:
        Zhang & Sabuncu, Generalized Cross Entropy Loss for Training Deep Neural Networks
        with Noisy Labels, NeurIPS 2018, arXiv 1805.07836, eq. 6.
    """
    _check_q(q)
    _check_choice("normalize", normalize, _NORMALIZATIONS)
    labels, labeled, log_probs = _labeled_rows(y_true, logits)
    log_p_label = tf.gather(log_probs, labels, axis=-1, batch_dims=1)
    per_sample = -tf.math.expm1(q * log_p_label) / q
    return _normalized(per_sample, labeled, normalize)


def symmetric_crossentropy(y_true, logits, alpha=0.1, beta=1.0, log_zero=-4.0,
                           normalize="batch"):
    """Symmetric cross-entropy (SCE): cross-entropy plus reverse cross-entropy.

    The reverse cross-entropy swaps the roles of prediction and label, `-sum_k p_k log
    q_k` with `q` the one-hot label; `log 0` is clipped to `log_zero` (the paper's `A`),
    so it equals `-log_zero * (1 - p_y)`, a scaled mean absolute error that is robust to
    label noise, while the cross-entropy term keeps training fast. Rows labeled
    `UNLABELED` (-1) add 0.

    Formula:

    ```python
    p = softmax(logits)
    ce = -log(p[y_true])
    rce = -sum(p * clip(log(one_hot(y_true)), log_zero, 0)) = -log_zero * (1 - p[y_true])
    per_sample = where(y_true != -1, alpha * ce + beta * rce, 0)
    ```

    Example:

    >>> round(float(symmetric_crossentropy([0], [[0.0, 0.0]], alpha=1.0, beta=1.0)), 6)
    2.693147

    Args:
        y_true: Integer labels, shape `(batch,)` or `(batch, 1)`; -1 marks unlabeled rows.
        logits: Logits, shape `(batch, classes)`.
        alpha: Weight of the cross-entropy, `>= 0`. Defaults to `0.1` (the paper's for
            CIFAR-10).
        beta: Weight of the reverse cross-entropy, `>= 0`. Defaults to `1.0` (the paper's
            for CIFAR-10).
        log_zero: The value that `log 0` is clipped to, `< 0`. Defaults to `-4.0` (the
            paper's `A`).
        normalize: `"batch"`, `"labeled"` or `"none"`, as `generalized_crossentropy`.
            Defaults to `"batch"`.

    Returns:
        A `float32` scalar, or a `(batch,)` vector for `normalize="none"`.

    Raises:
        ValueError: For a negative `alpha` or `beta`, a `log_zero >= 0` or an unknown
            `normalize`.

    References:
        Wang, Ma, Chen, Luo, Yi & Bailey, Symmetric Cross Entropy for Robust Learning with
        Noisy Labels, ICCV 2019, arXiv 1908.06112, eq. 5-7.
    """
    _check_sce(alpha, beta, log_zero)
    _check_choice("normalize", normalize, _NORMALIZATIONS)
    labels, labeled, log_probs = _labeled_rows(y_true, logits)
    log_p_label = tf.gather(log_probs, labels, axis=-1, batch_dims=1)
    reverse = -log_zero * -tf.math.expm1(log_p_label)
    per_sample = alpha * -log_p_label + beta * reverse
    return _normalized(per_sample, labeled, normalize)


def _check_q(q):
    if not _is_number(q) or not 0.0 < q <= 1.0:
        raise ValueError(f"`q` must be a number in (0, 1]. Received: q={q!r}")


def _check_sce(alpha, beta, log_zero):
    for name, value in (("alpha", alpha), ("beta", beta)):
        if not _is_number(value) or value < 0:
            raise ValueError(f"`{name}` must be a number >= 0. Received: {name}={value!r}")
    if not _is_number(log_zero) or log_zero >= 0:
        raise ValueError(f"`log_zero` must be a number < 0. Received: log_zero={log_zero!r}")


class _MaskedLabelLoss(keras.losses.Loss):
    """A per-sample loss of integer labels (`-1` masked) and logits, as a Keras loss whose
    `normalize` picks the denominator as `MaskedSparseCategoricalCrossentropy` does."""

    def __init__(self, normalize, name, dtype):
        _check_choice("normalize", normalize, ("batch", "labeled"))
        super().__init__(name=name, reduction="sum_over_batch_size", dtype=dtype)
        self.normalize = normalize

    def per_sample(self, y_true, y_pred):
        raise NotImplementedError

    def call(self, y_true, y_pred):
        per_sample = self.per_sample(y_true, y_pred)
        return _normalized_per_sample(per_sample, y_true, self.normalize)

    def get_config(self):
        return {"name": self.name, "normalize": self.normalize}


@keras.saving.register_keras_serializable(package="tfssl")
class GeneralizedCrossentropy(_MaskedLabelLoss):
    """`generalized_crossentropy` as a Keras loss (`y_pred` = logits, `-1` labels masked).

    Example:

    ```python
    backbone.compile(optimizer="adam", loss=tfssl.losses.GeneralizedCrossentropy(q=0.7))
    ```

    Args:
        q: The exponent, in `(0, 1]`. Defaults to `0.7`.
        normalize: `"batch"` or `"labeled"`, as `MaskedSparseCategoricalCrossentropy`.
            Defaults to `"batch"`.
        name: Name of the loss. Defaults to `"generalized_crossentropy"`.
        dtype: Dtype of the loss computations. Defaults to `None` (floatx).

    Raises:
        ValueError: For a `q` outside `(0, 1]` or an unknown `normalize`.

    References:
        Zhang & Sabuncu, Generalized Cross Entropy Loss for Training Deep Neural Networks
        with Noisy Labels, arXiv 1805.07836.
    """

    def __init__(self, q=0.7, normalize="batch", name="generalized_crossentropy", dtype=None):
        _check_q(q)
        super().__init__(normalize, name, dtype)
        self.q = float(q)

    def per_sample(self, y_true, y_pred):
        return generalized_crossentropy(y_true, y_pred, self.q, normalize="none")

    def get_config(self):
        return {**super().get_config(), "q": self.q}


@keras.saving.register_keras_serializable(package="tfssl")
class SymmetricCrossentropy(_MaskedLabelLoss):
    """`symmetric_crossentropy` as a Keras loss (`y_pred` = logits, `-1` labels masked).

    Example:

    ```python
    backbone.compile(optimizer="adam", loss=tfssl.losses.SymmetricCrossentropy(0.1, 1.0))
    ```

    Args:
        alpha: Weight of the cross-entropy, `>= 0`. Defaults to `0.1`.
        beta: Weight of the reverse cross-entropy, `>= 0`. Defaults to `1.0`.
        log_zero: The clipped `log 0`, `< 0`. Defaults to `-4.0`.
        normalize: `"batch"` or `"labeled"`. Defaults to `"batch"`.
        name: Name of the loss. Defaults to `"symmetric_crossentropy"`.
        dtype: Dtype of the loss computations. Defaults to `None` (floatx).

    Raises:
        ValueError: For a negative `alpha` or `beta`, `log_zero >= 0` or an unknown
            `normalize`.

    References:
        Wang et al., Symmetric Cross Entropy for Robust Learning with Noisy Labels,
        arXiv 1908.06112.
    """

    def __init__(self, alpha=0.1, beta=1.0, log_zero=-4.0, normalize="batch",
                 name="symmetric_crossentropy", dtype=None):
        _check_sce(alpha, beta, log_zero)
        super().__init__(normalize, name, dtype)
        self.alpha, self.beta, self.log_zero = float(alpha), float(beta), float(log_zero)

    def per_sample(self, y_true, y_pred):
        return symmetric_crossentropy(
            y_true, y_pred, self.alpha, self.beta, self.log_zero, normalize="none"
        )

    def get_config(self):
        return {
            **super().get_config(),
            "alpha": self.alpha,
            "beta": self.beta,
            "log_zero": self.log_zero,
        }
