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
    "PseudoLabelPolicy",
    "Sharpen",
    "TargetTransform",
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
