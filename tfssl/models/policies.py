"""Pseudo-label policies and target transforms: the hooks of the pseudo-label family.

A pseudo-label method (Pseudo-Label, FixMatch, MixMatch and the adaptive-threshold methods
built on them) guesses class probabilities for its unlabeled rows, then decides which rows
it learns from, with what weight, and towards which target. Those decisions are objects
that the model takes as arguments, as an optimizer takes a learning-rate schedule:

- a `PseudoLabelPolicy` turns the guesses into per-row weights: `FixedThreshold` (FixMatch's
  0.95, Pseudo-Label's 0), `FlexMatchThreshold`, and the other adaptive rules;
- a `TargetTransform` maps guesses to guesses: `DistributionAlignment` (ReMixMatch) before
  the policy sees them, `Sharpen` (MixMatch, UDA) for the targets.

Both are Keras layers, so their running statistics are non-trainable variables that
`.keras` files, checkpoints and `BackupAndRestore` keep, and `get_config` rebuilds them.
They never write during the forward pass: `select` / `transform` return the new values of
their statistics, computed from the whole global batch (all-reduced over replicas, so every
replica computes the same values), and the model writes them after the optimizer step, only
when the step is applied (a refused, non-finite step changes nothing).

Writing a policy: subclass `PseudoLabelPolicy`, create variables in `build_state(model)`
(`self.add_weight` for statistics, `model.add_sample_state` for per-row state read by
`idx`), compute `(weights, updates)` in `select`, and write `updates` in `apply_updates`
when they are not plain assignments of the layer's own variables. `docs/writing-a-method.md`
walks through `FlexMatchThreshold`.
"""

import keras
import numpy as np
import tensorflow as tf

from tfssl import losses
from tfssl.models._replicas import gather_from_replicas, global_sum

__all__ = [
    "DistributionAlignment",
    "FixedThreshold",
    "FlexMatchThreshold",
    "FreeMatchThreshold",
    "PseudoLabelPolicy",
    "RelativeThreshold",
    "Sharpen",
    "SoftMatchWeight",
    "TargetTransform",
    "TrainingSignalAnnealing",
    "all_replicas_mean",
    "check_probability",
    "class_threshold_weights",
]


def all_replicas_mean(values):
    """Mean over axis 0 of the global batch, the same value on every replica.

    Args:
        values: `(rows, ...)` tensor of this replica's rows.

    Returns:
        `(mean, count)`: the mean over the rows of every replica, shape `values.shape[1:]`
        (0 without rows), and the number of those rows, a float32 scalar.
    """
    values = tf.cast(values, tf.float32)
    total = global_sum(tf.reduce_sum(values, axis=0))
    count = global_sum(tf.cast(tf.shape(values)[0], tf.float32))
    return tf.math.divide_no_nan(total, count), count


class _StatefulHook(keras.layers.Layer):
    """What policies and transforms share: state built by the model, written after a step."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.built = True
        self.num_classes = None

    def build_state(self, model):
        """Creates the running statistics. Called once by the model that owns the hook.

        Args:
            model: The `SemiSupervisedModel`; `model.num_classes` and, for per-row state,
                `model.add_sample_state` are what hooks read.
        """
        self.num_classes = model.num_classes

    def apply_updates(self, model, updates, sample_idx):
        """Writes `updates` (`{variable name: new value}`) after the optimizer step.

        The default assigns each value to the hook's variable of that name on every replica.

        Args:
            model: The owning model (`model.assign_state`, `model.scatter_sample_state`).
            updates: The dict `select` or `transform` returned.
            sample_idx: `idx` of the rows the updates were computed from, or `None`.
        """
        variables = {v.name: v for v in self.weights}
        for name, value in updates.items():
            model.assign_state(variables[name], value)

    def logs(self, updates):
        """Scalars to report as metrics (e.g. the threshold), from `updates`. None by default."""
        return {}


class PseudoLabelPolicy(_StatefulHook):
    """Decides which unlabeled rows count, and with what weight.

    Subclasses implement `select`; stateful ones also `build_state` (and `apply_updates`
    for per-row state) and `current_weights`.
    """

    #: Whether `select` needs the rows' `idx` (per-row state); the model then needs
    #: `num_samples`.
    needs_sample_idx = False

    def select(self, probabilities, sample_idx=None, labeled_probabilities=None):
        """The weights of the unlabeled rows, and the new values of the policy's state.

        Args:
            probabilities: `(rows, num_classes)` float32 guesses for this replica's unlabeled
                rows, held fixed (no gradient).
            sample_idx: Their `idx`, for per-row state; `None` when the data has none.
            labeled_probabilities: `(labeled rows, num_classes)` float32 predictions on the
                labeled rows of the same batch (AdaMatch's relative threshold reads them).

        Returns:
            `(weights, updates)`: `(rows,)` float32 weights in `[0, 1]`, and a dict of new
            state values for `apply_updates` (empty for a stateless policy).
        """
        raise NotImplementedError

    def current_weights(self, probabilities):
        """The weights the current state gives `probabilities`, writing nothing (for
        monitoring, e.g. `tfssl.models.PseudoLabelMonitor`)."""
        weights, _ = self.select(probabilities)
        return weights


@keras.saving.register_keras_serializable(package="tfssl")
class FixedThreshold(PseudoLabelPolicy):
    """Keeps a row when its largest probability reaches `threshold` (FixMatch; Lee's
    Pseudo-Label with `threshold=0` keeps every row).

    Formula:

    ```python
    weight = float(max(p, axis=-1) >= threshold)
    ```

    Args:
        threshold: Confidence in `[0, 1]`. Defaults to `0.95` (FixMatch's).

    Raises:
        ValueError: If `threshold` is outside `[0, 1]`.
    """

    def __init__(self, threshold=0.95, **kwargs):
        super().__init__(**kwargs)
        self.threshold = check_probability("threshold", threshold)

    def select(self, probabilities, sample_idx=None, labeled_probabilities=None):
        confidence = tf.reduce_max(probabilities, axis=-1)
        return tf.cast(confidence >= self.threshold, tf.float32), {}

    def logs(self, updates):
        return {"threshold": tf.constant(self.threshold, tf.float32)}

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}


@keras.saving.register_keras_serializable(package="tfssl")
class FlexMatchThreshold(PseudoLabelPolicy):
    """FlexMatch's curriculum pseudo-labelling: a threshold per class, lower for the classes
    the model has learned least.

    Each unlabeled row remembers its last confident prediction (`-1` until it has one). The
    learning effect of class `c` is the number of rows whose remembered prediction is `c`,
    normalised by the largest class count (or, with `warmup=True`, by the number of rows not
    yet predicted when that is larger). The class threshold is `M(beta_c) * threshold` with
    the convex mapping `M(x) = x / (2 - x)`, or the linear `M(x) = x`. As in USB's code, the
    batch's own confident predictions enter the memory before its thresholds are computed;
    at the start every threshold is 0 (no class learned yet), so every row counts.

    Formula:

    ```python
    memory[idx] = argmax(p) where max(p) > threshold    # first, with the whole global batch
    sigma = bincount(memory[memory >= 0], minlength=C)
    beta = sigma / max(max(sigma), count(memory == -1) if warmup else 0)
    weight = max(p) >= M(beta[argmax(p)]) * threshold
    ```

    Args:
        threshold: The fixed threshold `tau` in `[0, 1]`. Defaults to `0.95`.
        mapping: `"convex"` or `"linear"`. Defaults to `"convex"`.
        warmup: Whether rows not yet predicted count in the normalisation. Defaults to
            `True` (the paper's threshold warm-up).

    References:
        Zhang et al., FlexMatch: Boosting Semi-Supervised Learning with Curriculum Pseudo
        Labeling, arXiv 2110.08263.
    """

    needs_sample_idx = True

    def __init__(self, threshold=0.95, mapping="convex", warmup=True, **kwargs):
        super().__init__(**kwargs)
        self.threshold = check_probability("threshold", threshold)
        if mapping not in ("convex", "linear"):
            raise ValueError(
                f"`mapping` must be 'convex' or 'linear'. Received: mapping={mapping!r}"
            )
        self.mapping, self.warmup = mapping, bool(warmup)

    def build_state(self, model):
        super().build_state(model)
        # The remembered class plus one; 0 for a row never confidently predicted.
        self.memory = model.add_sample_state("flexmatch_memory", ())

    def class_thresholds(self, memory):
        """`M(beta_c) * threshold` from the rows' remembered predictions (stored as `c + 1`,
        0 for none)."""
        counts = tf.math.bincount(tf.cast(memory, tf.int32), minlength=self.num_classes + 1)
        counts = tf.cast(counts, tf.float32)
        normaliser = tf.reduce_max(counts[1:])
        if self.warmup:
            normaliser = tf.maximum(normaliser, counts[0])
        beta = tf.math.divide_no_nan(counts[1:], normaliser)
        mapped = beta / (2.0 - beta) if self.mapping == "convex" else beta
        return mapped * self.threshold

    def select(self, probabilities, sample_idx=None, labeled_probabilities=None):
        if sample_idx is None:
            raise ValueError("FlexMatchThreshold keeps per-row state: the data needs `idx`.")
        confidence = tf.reduce_max(probabilities, axis=-1)
        prediction = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        remembered = tf.gather(self.memory.value, sample_idx)
        new_rows = tf.where(
            confidence > self.threshold, tf.cast(prediction + 1, tf.float32), remembered
        )
        # Every replica's rows enter the memory, so every replica computes the same thresholds.
        memory = tf.tensor_scatter_nd_update(
            self.memory.value,
            gather_from_replicas(tf.cast(sample_idx, tf.int32))[:, None],
            gather_from_replicas(new_rows),
        )
        thresholds = self.class_thresholds(memory)
        weights = class_threshold_weights(probabilities, thresholds)
        return weights, {"memory": new_rows, "mean_threshold": tf.reduce_mean(thresholds)}

    def current_weights(self, probabilities):
        return class_threshold_weights(probabilities, self.class_thresholds(self.memory.value))

    def apply_updates(self, model, updates, sample_idx):
        model.scatter_sample_state([(self.memory, updates["memory"])], sample_idx)

    def logs(self, updates):
        return {"threshold": updates["mean_threshold"]}

    def get_config(self):
        config = {"threshold": self.threshold, "mapping": self.mapping, "warmup": self.warmup}
        return {**super().get_config(), **config}


class TargetTransform(_StatefulHook):
    """Maps guessed class probabilities to new ones (sharpening, distribution alignment).

    Subclasses implement `transform`.
    """

    def transform(self, probabilities, labeled_probabilities=None):
        """Returns `(new_probabilities, updates)`; see `PseudoLabelPolicy.select`."""
        raise NotImplementedError


@keras.saving.register_keras_serializable(package="tfssl")
class Sharpen(TargetTransform):
    """MixMatch's and UDA's sharpening, `p^(1/T) / sum(p^(1/T))` (`tfssl.losses.sharpen`).

    Args:
        temperature: `T > 0`; below 1 sharpens. Defaults to `0.5` (MixMatch's; UDA: 0.4).

    Raises:
        ValueError: If `temperature` is not positive.
    """

    def __init__(self, temperature=0.5, **kwargs):
        super().__init__(**kwargs)
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
                or temperature <= 0:
            raise ValueError(f"`temperature` must be > 0. Received: temperature={temperature!r}")
        self.temperature = float(temperature)

    def transform(self, probabilities, labeled_probabilities=None):
        return losses.sharpen(probabilities, self.temperature), {}

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}


@keras.saving.register_keras_serializable(package="tfssl")
class DistributionAlignment(TargetTransform):
    """ReMixMatch's distribution alignment: scales guesses so that their running mean
    matches a target class distribution.

    `p_model` is an exponential moving average (momentum `momentum`, updated with the
    global batch before it is used, as USB does) of the mean guess on unlabeled rows;
    `p_target` is uniform (`target="uniform"`), or the running mean of the predictions on the
    labeled rows (`target="labeled"`, AdaMatch's alignment). Both start uniform. The paper
    averages the last 128 batches instead of an EMA: `momentum=1 - 1/128` is the closest
    EMA.

    Formula:

    ```python
    p_model = momentum * p_model + (1 - momentum) * mean(p, axis=0)
    aligned = normalize(p * p_target / p_model)
    ```

    Args:
        momentum: EMA momentum in `[0, 1)`. Defaults to `0.999` (USB's).
        target: `"uniform"` or `"labeled"`. Defaults to `"uniform"`.

    Raises:
        ValueError: For a `momentum` outside `[0, 1)` or an unknown `target`.

    References:
        Berthelot et al., ReMixMatch: Semi-Supervised Learning with Distribution Alignment
        and Augmentation Anchoring, arXiv 1911.09785.
    """

    def __init__(self, momentum=0.999, target="uniform", **kwargs):
        super().__init__(**kwargs)
        if isinstance(momentum, bool) or not 0.0 <= momentum < 1.0:
            raise ValueError(f"`momentum` must be in [0, 1). Received: momentum={momentum!r}")
        if target not in ("uniform", "labeled"):
            raise ValueError(f"`target` must be 'uniform' or 'labeled'. Received: target={target!r}")
        self.momentum, self.target = float(momentum), target

    def build_state(self, model):
        super().build_state(model)
        uniform = keras.initializers.Constant(1.0 / self.num_classes)
        self.p_model = self.add_weight(
            shape=(self.num_classes,), initializer=uniform, trainable=False,
            aggregation="only_first_replica", name="p_model",
        )
        self.p_target = self.add_weight(
            shape=(self.num_classes,), initializer=uniform, trainable=False,
            aggregation="only_first_replica", name="p_target",
        )

    def transform(self, probabilities, labeled_probabilities=None):
        def ema(old, rows):
            # A global batch without such rows leaves the average as it is.
            batch_mean, count = all_replicas_mean(rows)
            return tf.where(count > 0, self.momentum * old + (1.0 - self.momentum) * batch_mean, old)

        p_model = ema(self.p_model.value, probabilities)
        updates = {"p_model": p_model}
        p_target = self.p_target.value
        if self.target == "labeled":
            if labeled_probabilities is None:
                raise ValueError("DistributionAlignment(target='labeled') needs the labeled rows' "
                                 "predictions.")
            p_target = ema(p_target, labeled_probabilities)
            updates["p_target"] = p_target
        aligned = probabilities * p_target / p_model
        return aligned / tf.reduce_sum(aligned, axis=-1, keepdims=True), updates

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "target": self.target}


def class_threshold_weights(probabilities, thresholds):
    """1 where a row's largest probability reaches the threshold of its predicted class.

    Args:
        probabilities: `(rows, num_classes)` guesses.
        thresholds: `(num_classes,)` thresholds.

    Returns:
        `(rows,)` float32 weights, 0 or 1.
    """
    confidence = tf.reduce_max(probabilities, axis=-1)
    prediction = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
    return tf.cast(confidence >= tf.gather(thresholds, prediction), tf.float32)


def check_probability(name, value):
    """`value` as a float, or a `ValueError` naming it unless it is in `[0, 1]`."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) \
            or not 0.0 <= value <= 1.0:
        raise ValueError(f"`{name}` must be in [0, 1]. Received: {name}={value!r}")
    return float(value)


def _ema(momentum, old, new, count):
    """`momentum * old + (1 - momentum) * new`, or `old` when the global batch had no rows
    (`count == 0`)."""
    return tf.where(count > 0, momentum * old + (1.0 - momentum) * new, old)


def _check_momentum(momentum):
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) \
            or not 0.0 <= momentum < 1.0:
        raise ValueError(f"`momentum` must be in [0, 1). Received: momentum={momentum!r}")
    return float(momentum)


@keras.saving.register_keras_serializable(package="tfssl")
class FreeMatchThreshold(PseudoLabelPolicy):
    """FreeMatch's self-adaptive thresholds: a global threshold that follows the model's
    mean confidence, scaled per class by the model's mean prediction of that class.

    Three exponential moving averages (momentum `lambda`) over the unlabeled rows of each
    global batch, updated before they are used (the paper's Eq. 5-7): the mean confidence
    `tau` (the global threshold), the mean guess `p_model` and the histogram of the
    argmax `label_histogram` (read by FreeMatch's fairness term). The threshold of class
    `c` is `MaxNorm(p_model)[c] * tau`. A row counts (weight 1) when its confidence reaches
    the threshold of its argmax class.

    The paper starts all three at `1 / C` (`initial_state="paper"`, the default): early
    thresholds are low and most rows count. USB's code starts them at 1
    (`initial_state="usb"`): the global threshold starts at 1 and falls towards the mean
    confidence, about `1 - momentum` of the gap a step, so almost no row counts in the
    first few hundred steps at momentum 0.999.

    Formula:

    ```python
    tau = lam * tau + (1 - lam) * mean(max(p, axis=-1))
    p_model = lam * p_model + (1 - lam) * mean(p, axis=0)
    label_histogram = lam * label_histogram + (1 - lam) * mean(one_hot(argmax(p)), axis=0)
    class_threshold = p_model / max(p_model) * tau
    weight = max(p, axis=-1) >= class_threshold[argmax(p)]
    ```

    Example:

    ```python
    policy = tfssl.models.policies.FreeMatchThreshold(momentum=0.999)
    model = tfssl.models.FixMatch(backbone, pseudo_label_policy=policy)
    ```

    Args:
        momentum: EMA momentum `lambda` in `[0, 1)`. Defaults to `0.999` (the paper's).
        initial_state: `"paper"` (`1 / C`) or `"usb"` (1). Defaults to `"paper"`.
        **kwargs: `keras.layers.Layer` arguments.

    Raises:
        ValueError: For a `momentum` outside `[0, 1)` or an unknown `initial_state`.

    References:
        Wang et al., FreeMatch: Self-adaptive Thresholding for Semi-supervised Learning,
        arXiv 2205.07246.
    """

    def __init__(self, momentum=0.999, initial_state="paper", **kwargs):
        super().__init__(**kwargs)
        self.momentum = _check_momentum(momentum)
        if initial_state not in ("paper", "usb"):
            raise ValueError(
                "`initial_state` must be 'paper' or 'usb'. "
                f"Received: initial_state={initial_state!r}"
            )
        self.initial_state = initial_state

    def build_state(self, model):
        super().build_state(model)
        start = 1.0 / self.num_classes if self.initial_state == "paper" else 1.0
        for name, shape in (("global_threshold", ()), ("p_model", (self.num_classes,)),
                            ("label_histogram", (self.num_classes,))):
            setattr(self, name, self.add_weight(
                shape=shape, initializer=keras.initializers.Constant(start), trainable=False,
                aggregation="only_first_replica", name=name,
            ))

    @staticmethod
    def class_thresholds(global_threshold, p_model):
        """`MaxNorm(p_model) * tau`: the threshold of every class."""
        return p_model / tf.reduce_max(p_model) * global_threshold

    def _weights(self, probabilities, global_threshold, p_model):
        return class_threshold_weights(
            probabilities, self.class_thresholds(global_threshold, p_model)
        )

    def select(self, probabilities, sample_idx=None, labeled_probabilities=None):
        prediction = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        mean_confidence, count = all_replicas_mean(tf.reduce_max(probabilities, axis=-1))
        mean_guess, _ = all_replicas_mean(probabilities)
        histogram, _ = all_replicas_mean(tf.one_hot(prediction, self.num_classes))
        updates = {
            "global_threshold": _ema(self.momentum, self.global_threshold.value,
                                     mean_confidence, count),
            "p_model": _ema(self.momentum, self.p_model.value, mean_guess, count),
            "label_histogram": _ema(self.momentum, self.label_histogram.value, histogram, count),
        }
        weights = self._weights(probabilities, updates["global_threshold"], updates["p_model"])
        return weights, updates

    def current_weights(self, probabilities):
        probabilities = tf.cast(probabilities, tf.float32)
        return self._weights(probabilities, self.global_threshold.value, self.p_model.value)

    def logs(self, updates):
        thresholds = self.class_thresholds(updates["global_threshold"], updates["p_model"])
        return {"threshold": tf.reduce_mean(thresholds)}

    def get_config(self):
        config = {"momentum": self.momentum, "initial_state": self.initial_state}
        return {**super().get_config(), **config}


@keras.saving.register_keras_serializable(package="tfssl")
class SoftMatchWeight(PseudoLabelPolicy):
    """SoftMatch's truncated-Gaussian weights: full weight above the running mean
    confidence, a Gaussian fall-off below it.

    The mean `mu` and the unbiased variance `var` of the unlabeled rows' confidence are
    exponential moving averages over global batches (momentum `m`, updated before use;
    they start at `1 / C` and 1). The confidence is read after uniform alignment
    (`uniform_alignment=True`, the paper's UA): the guesses are scaled by `(1 / C) /
    p_model`, with `p_model` the EMA of the mean guess, and renormalised. The alignment
    only shapes the weights; the pseudo-labels stay the argmax of the guesses as given.

    The paper's Eq. 7 writes the Gaussian with `var`; its code (USB's
    `SoftMatchWeightingHook`) divides `var` by `n_sigma ** 2` with `n_sigma = 2`, a
    Gaussian half as wide, which produced the paper's results and is the default here;
    `n_sigma=1` is the equation as printed.

    Formula:

    ```python
    aligned = normalize(p * (1 / C) / p_model)           # p_model updated first
    c = max(aligned, axis=-1)
    mu = m * mu + (1 - m) * mean(c)
    var = m * var + (1 - m) * sum((c - mean(c)) ** 2) / (n - 1)
    weight = exp(-min(c - mu, 0) ** 2 / (2 * var / n_sigma ** 2))
    ```

    Example:

    ```python
    policy = tfssl.models.policies.SoftMatchWeight(n_sigma=2)
    model = tfssl.models.FixMatch(backbone, pseudo_label_policy=policy)
    ```

    Args:
        momentum: EMA momentum in `[0, 1)` of the statistics and of `p_model`. Defaults
            to `0.999` (the paper's).
        n_sigma: Positive width divisor of the Gaussian. Defaults to `2.0` (USB's).
        uniform_alignment: Whether the confidence is read after uniform alignment.
            Defaults to `True` (the paper's).
        **kwargs: `keras.layers.Layer` arguments.

    Raises:
        ValueError: For a `momentum` outside `[0, 1)` or a `n_sigma` that is not positive.

    References:
        Chen et al., SoftMatch: Addressing the Quantity-Quality Trade-off in
        Semi-supervised Learning, arXiv 2301.10921.
    """

    def __init__(self, momentum=0.999, n_sigma=2.0, uniform_alignment=True, **kwargs):
        super().__init__(**kwargs)
        self.momentum = _check_momentum(momentum)
        if isinstance(n_sigma, bool) or not isinstance(n_sigma, (int, float)) or n_sigma <= 0:
            raise ValueError(f"`n_sigma` must be > 0. Received: n_sigma={n_sigma!r}")
        self.n_sigma = float(n_sigma)
        self.uniform_alignment = bool(uniform_alignment)
        self.alignment = (
            DistributionAlignment(self.momentum, "uniform") if self.uniform_alignment else None
        )

    def build_state(self, model):
        super().build_state(model)
        if self.alignment is not None:
            self.alignment.build_state(model)
        for name, start in (("confidence_mean", 1.0 / self.num_classes),
                            ("confidence_variance", 1.0)):
            setattr(self, name, self.add_weight(
                shape=(), initializer=keras.initializers.Constant(start), trainable=False,
                aggregation="only_first_replica", name=name,
            ))

    def _weights(self, confidence, mean, variance):
        below = tf.minimum(confidence - mean, 0.0)
        return tf.exp(-tf.square(below) / (2.0 * variance / self.n_sigma**2))

    def select(self, probabilities, sample_idx=None, labeled_probabilities=None):
        aligned, updates = probabilities, {}
        if self.alignment is not None:
            aligned, updates = self.alignment.transform(probabilities)
        confidence = tf.reduce_max(aligned, axis=-1)
        batch_mean, count = all_replicas_mean(confidence)
        squares = global_sum(tf.reduce_sum(tf.square(confidence - batch_mean)))
        # The unbiased variance needs two rows; with fewer the variance stays as it is.
        batch_variance = squares / tf.maximum(count - 1.0, 1.0)
        mean = _ema(self.momentum, self.confidence_mean.value, batch_mean, count)
        variance = _ema(self.momentum, self.confidence_variance.value, batch_variance,
                        tf.cast(count > 1, tf.float32))
        updates.update({"confidence_mean": mean, "confidence_variance": variance})
        return self._weights(confidence, mean, variance), updates

    def current_weights(self, probabilities):
        probabilities = tf.cast(probabilities, tf.float32)
        if self.alignment is not None:
            # The current alignment, without its update.
            probabilities = probabilities / self.alignment.p_model.value
            probabilities /= tf.reduce_sum(probabilities, axis=-1, keepdims=True)
        return self._weights(
            tf.reduce_max(probabilities, axis=-1),
            self.confidence_mean.value,
            self.confidence_variance.value,
        )

    def logs(self, updates):
        # The confidence from which a row has full weight.
        return {"threshold": updates["confidence_mean"]}

    def get_config(self):
        config = {
            "momentum": self.momentum,
            "n_sigma": self.n_sigma,
            "uniform_alignment": self.uniform_alignment,
        }
        return {**super().get_config(), **config}


@keras.saving.register_keras_serializable(package="tfssl")
class RelativeThreshold(PseudoLabelPolicy):
    """AdaMatch's relative threshold: `threshold` times the mean confidence of the
    model on the labeled rows of the same (global) batch.

    The labeled rows' predictions are those of the weak view (`labeled_probabilities`).
    The last threshold is kept, for monitoring (`current_weights`) and for a global batch
    without labeled rows, which keeps the previous one; it starts at `threshold`.

    Formula:

    ```python
    cutoff = threshold * mean(max(p_labeled, axis=-1))
    weight = max(p, axis=-1) >= cutoff
    ```

    Example:

    ```python
    policy = tfssl.models.policies.RelativeThreshold(0.9)
    model = tfssl.models.FixMatch(backbone, pseudo_label_policy=policy)
    ```

    Args:
        threshold: The relative threshold `tau` in `[0, 1]`. Defaults to `0.9` (the
            paper's).
        **kwargs: `keras.layers.Layer` arguments.

    Raises:
        ValueError: If `threshold` is outside `[0, 1]`; at a step, if the predictions on
            the labeled rows are not given.

    References:
        Berthelot et al., AdaMatch: A Unified Approach to Semi-Supervised Learning and
        Domain Adaptation, arXiv 2106.04732.
    """

    def __init__(self, threshold=0.9, **kwargs):
        super().__init__(**kwargs)
        self.threshold = check_probability("threshold", threshold)

    def build_state(self, model):
        super().build_state(model)
        self.cutoff = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(self.threshold), trainable=False,
            aggregation="only_first_replica", name="cutoff",
        )

    def select(self, probabilities, sample_idx=None, labeled_probabilities=None):
        if labeled_probabilities is None:
            raise ValueError("RelativeThreshold needs the labeled rows' predictions "
                             "(`labeled_probabilities`). Received: labeled_probabilities=None")
        labeled_confidence, count = all_replicas_mean(
            tf.reduce_max(labeled_probabilities, axis=-1)
        )
        cutoff = tf.where(count > 0, self.threshold * labeled_confidence, self.cutoff.value)
        confidence = tf.reduce_max(probabilities, axis=-1)
        return tf.cast(confidence >= cutoff, tf.float32), {"cutoff": cutoff}

    def current_weights(self, probabilities):
        confidence = tf.reduce_max(tf.cast(probabilities, tf.float32), axis=-1)
        return tf.cast(confidence >= self.cutoff.value, tf.float32)

    def logs(self, updates):
        return {"threshold": updates["cutoff"]}

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}


TSA_SCHEDULES = ("linear", "log", "exp")


@keras.saving.register_keras_serializable(package="tfssl")
class TrainingSignalAnnealing:
    """UDA's training-signal annealing: labeled rows the model already predicts with a
    probability above `eta_t` leave the supervised loss, with `eta_t` rising from `1 / C`
    to 1 over `total_steps` optimizer steps.

    With `alpha_t` the schedule at progress `t / T` (`"linear"`: `t / T`; `"log"`:
    `1 - exp(-5 t / T)`; `"exp"`: `exp(5 (t / T - 1))`), `eta_t = alpha_t (1 - 1 / C) +
    1 / C`. The paper (and its code) compares `eta_t` with the probability of the
    row's true class and averages the loss over the rows kept (`confidence="true_class"`,
    `normalize="kept"`); USB compares it with the largest probability and averages over all
    labeled rows (`confidence="max"`, `normalize="labeled"`).

    Formula:

    ```python
    eta = alpha(min(step / total_steps, 1)) * (1 - 1 / C) + 1 / C
    kept = p[label] <= eta                       # confidence="true_class"
    supervised = sum(kept * CE(label, logits)) / sum(kept)     # normalize="kept"
    ```

    Example:

    ```python
    tsa = tfssl.models.policies.TrainingSignalAnnealing(total_steps=10_000, schedule="exp")
    model = tfssl.models.UDA(backbone, training_signal_annealing=tsa)
    ```

    Args:
        total_steps: Positive number of training steps `T` (`epochs * steps_per_epoch`).
        schedule: `"linear"`, `"log"` or `"exp"`. Defaults to `"linear"`.
        confidence: `"true_class"` or `"max"`. Defaults to `"true_class"` (the paper's).
        normalize: `"kept"` or `"labeled"`. Defaults to `"kept"` (the paper's).

    Raises:
        ValueError: If `total_steps` is not a positive integer or a choice is unknown.

    References:
        Xie et al., Unsupervised Data Augmentation for Consistency Training,
        arXiv 1904.12848.
    """

    def __init__(self, total_steps, schedule="linear", confidence="true_class",
                 normalize="kept"):
        if isinstance(total_steps, bool) or not isinstance(total_steps, (int, np.integer)) \
                or total_steps < 1:
            raise ValueError(
                f"`total_steps` must be a positive integer. Received: total_steps={total_steps!r}"
            )
        for name, value, choices in (("schedule", schedule, TSA_SCHEDULES),
                                     ("confidence", confidence, ("true_class", "max")),
                                     ("normalize", normalize, ("kept", "labeled"))):
            if value not in choices:
                raise ValueError(f"`{name}` must be one of {choices}. Received: {name}={value!r}")
        self.total_steps = int(total_steps)
        self.schedule, self.confidence, self.normalize = schedule, confidence, normalize

    def threshold(self, step, num_classes):
        """`eta_t` at optimizer step `step` for `num_classes` classes, float32."""
        progress = tf.minimum(tf.cast(step, tf.float32) / self.total_steps, 1.0)
        if self.schedule == "linear":
            alpha = progress
        elif self.schedule == "log":
            alpha = 1.0 - tf.exp(-5.0 * progress)
        else:
            alpha = tf.exp(5.0 * (progress - 1.0))
        return alpha * (1.0 - 1.0 / num_classes) + 1.0 / num_classes

    def kept(self, probabilities, labels, step):
        """`(rows,)` float32: 1 for the labeled rows that stay in the loss, 0 otherwise
        (unlabeled rows, `labels == -1`, included)."""
        num_classes = probabilities.shape[-1]
        if self.confidence == "true_class":
            confidence = tf.gather(probabilities, tf.maximum(labels, 0), batch_dims=1)
        else:
            confidence = tf.reduce_max(probabilities, axis=-1)
        below = confidence <= self.threshold(step, num_classes)
        return tf.cast(below & (labels >= 0), tf.float32)

    def get_config(self):
        return {
            "total_steps": self.total_steps,
            "schedule": self.schedule,
            "confidence": self.confidence,
            "normalize": self.normalize,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"TrainingSignalAnnealing({self.get_config()})"
