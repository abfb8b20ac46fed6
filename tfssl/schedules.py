"""Ramp-up, ramp-down and EMA-decay schedules for semi-supervised training.

`ramp_up(cur_epoch, max_epoch, method)` ports the seed's TF1 function (seed 000, the Temporal
Ensembling / Pi-model blog post) with its exact semantics, including its falling "cosine".
The ramp-down and the learning-rate / Adam `beta_1` schedule follow the appendix of

    Laine & Aila, "Temporal Ensembling for Semi-Supervised Learning", arXiv:1610.02242,

and the EMA decay schedule follows the TF1 code of

    Tarvainen & Valpola, "Mean teachers are better role models", arXiv:1703.01780.

All functions accept Python numbers or tensors (inside `tf.function` too) and return
`float32` tensors.

The weight of a model's unsupervised term is a `WeightSchedule`, an object called with the
epoch, as a Keras `LearningRateSchedule` is called with the step: `RampUpWeight` (the seed
code's ramp-up, the default of the consistency methods), `LinearRampWeight` (Pseudo-Label's
piecewise-linear weight) and `ConstantWeight` (FixMatch's `lambda_u`, VAT's `alpha`).
"""

import math
import numbers

import keras
import tensorflow as tf

__all__ = [
    "RAMP_UP_METHODS",
    "ConstantWeight",
    "LinearRampWeight",
    "RampUp",
    "RampUpDown",
    "RampUpWeight",
    "WeightSchedule",
    "ema_decay",
    "get_weight_schedule",
    "ramp_down",
    "ramp_up",
]

# Each ramp maps the progress p = epoch / max_epoch to a weight.
_RAMPS = {
    "linear": lambda p: p,
    "sigmoid": lambda p: tf.exp(-5.0 * tf.square(1.0 - p)),
    # The seed's "cosine" falls from 1 to 0 (a seed bug, kept for parity).
    "cosine": lambda p: 0.5 * (tf.cos(math.pi * p) + 1.0),
    # The rising cosine the seed meant.
    "cosine_rampup": lambda p: 0.5 * (1.0 - tf.cos(math.pi * p)),
}

RAMP_UP_METHODS = tuple(_RAMPS)


def _is_number(value):
    # Python and numpy scalars; tensors are not checked (their values are unknown in graphs).
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_method(method):
    if method not in _RAMPS:
        raise ValueError(
            f"Unknown ramp-up method. Expected one of {RAMP_UP_METHODS}. "
            f"Received: method={method!r}"
        )


def _check_positive(name, value):
    if _is_number(value) and value <= 0:
        raise ValueError(f"`{name}` must be > 0. Received: {name}={value}")


def _ramp(cur_epoch, max_epoch, method):
    """The ramp curve alone, without the seed's zero at epoch 0."""
    cur_epoch = tf.cast(cur_epoch, tf.float32)
    max_epoch = tf.cast(max_epoch, tf.float32)
    return _RAMPS[method](cur_epoch / max_epoch)


def ramp_up(cur_epoch, max_epoch, method):
    """Weight of the unsupervised loss at `cur_epoch`, 0 at epoch 0.

    A port of the seed's TF1 `ramp_up`. At epoch 0 the weight is 0: Temporal Ensembling has
    no ensemble prediction from a previous epoch yet. Otherwise, with `p = cur_epoch /
    max_epoch`:

    - `"linear"`: `p`;
    - `"sigmoid"`: `exp(-5 (1 - p)^2)`, the Gaussian ramp-up of the Temporal Ensembling
      and Mean Teacher papers (the seed's default, and theirs);
    - `"cosine"`: `0.5 (cos(pi p) + 1)`. This is the seed's formula, and it *falls* from 1
      to 0 instead of rising: a bug in the seed, kept under the seed's name so results stay
      comparable. Do not use it to ramp up;
    - `"cosine_rampup"`: `0.5 (1 - cos(pi p))`, the corrected, rising cosine.

    As in the seed, nothing is clamped: past `max_epoch` the curves go on (the sigmoid comes
    back down, linear exceeds 1). Callers clamp the epoch, e.g.
    `ramp_up(min(epoch, max_epoch), max_epoch, method)`, as `RampUp` does.

    Works with Python numbers and with int or float tensors inside a `tf.function`: the
    epoch-0 test is a `tf.where`, not a Python `if`.

    Example:

    >>> float(ramp_up(40, 80, "sigmoid"))  # exp(-5 * 0.5**2)
    0.2865...

    Args:
        cur_epoch: Current epoch, a number or a scalar (or any-shape) tensor, int or float.
        max_epoch: Length of the ramp-up in epochs, `> 0`.
        method: One of `"linear"`, `"sigmoid"`, `"cosine"`, `"cosine_rampup"`.

    Returns:
        A `float32` tensor with the shape of `cur_epoch`.

    Raises:
        ValueError: if `method` is unknown or a numeric `max_epoch` is not positive.
    """
    _check_method(method)
    _check_positive("max_epoch", max_epoch)
    weight = _ramp(cur_epoch, max_epoch, method)
    return tf.where(tf.equal(tf.cast(cur_epoch, tf.float32), 0.0), 0.0, weight)


def ramp_down(cur_epoch, num_epochs, rampdown_epochs):
    """Gaussian ramp-down factor of the Temporal Ensembling paper.

    1.0 until the last `rampdown_epochs` of `num_epochs`; then `exp(-12.5 p^2)` with
    `p = (cur_epoch - (num_epochs - rampdown_epochs)) / rampdown_epochs` rising from 0 to 1.
    `p` is clipped to `[0, 1]`, so the factor stays at `exp(-12.5)` past `num_epochs`.

    The paper (appendix A) states `exp(-12.5 p^2)`; the authors' code writes it as
    `exp(-(d / 2)^2 / rampdown_epochs)` with `d` the epochs into the ramp-down, which is
    the same curve for their `rampdown_epochs=50` only. We follow the paper.

    Example:

    >>> float(ramp_down(100, num_epochs=300, rampdown_epochs=50))
    1.0
    >>> float(ramp_down(275, num_epochs=300, rampdown_epochs=50))  # exp(-12.5 * 0.5**2)
    0.0439...

    Args:
        cur_epoch: Current epoch (0-based), a number or tensor.
        num_epochs: Total number of training epochs.
        rampdown_epochs: Length of the ramp-down in epochs, `> 0`.

    Returns:
        A `float32` tensor with the shape of `cur_epoch`.

    Raises:
        ValueError: if a numeric `num_epochs` or `rampdown_epochs` is not positive.
    """
    _check_positive("num_epochs", num_epochs)
    _check_positive("rampdown_epochs", rampdown_epochs)
    cur_epoch = tf.cast(cur_epoch, tf.float32)
    num_epochs = tf.cast(num_epochs, tf.float32)
    rampdown_epochs = tf.cast(rampdown_epochs, tf.float32)
    p = (cur_epoch - (num_epochs - rampdown_epochs)) / rampdown_epochs
    p = tf.clip_by_value(p, 0.0, 1.0)
    return tf.exp(-12.5 * tf.square(p))


def ema_decay(step, rampup_steps, rampup_decay=0.99, decay=0.999):
    """Mean Teacher's EMA decay: `rampup_decay` during the ramp-up, `decay` after.

    The Mean Teacher TF1 code uses 0.99 while `step < rampup_steps` (the teacher follows the
    quickly improving student closely early on) and 0.999 afterwards (a longer memory).

    Example:

    >>> float(ema_decay(10, rampup_steps=100))
    0.99...
    >>> float(ema_decay(100, rampup_steps=100))
    0.999...

    Args:
        step: Training step, a number or tensor (int or float).
        rampup_steps: Length of the ramp-up in steps.
        rampup_decay: Decay while `step < rampup_steps`. Defaults to `0.99`.
        decay: Decay afterwards. Defaults to `0.999`.

    Returns:
        A `float32` tensor with the shape of `step`.

    Raises:
        ValueError: if a numeric decay is outside `[0, 1]`.
    """
    for name, value in (("rampup_decay", rampup_decay), ("decay", decay)):
        if _is_number(value) and not 0.0 <= value <= 1.0:
            raise ValueError(f"`{name}` must be in [0, 1]. Received: {name}={value}")
    step = tf.cast(step, tf.float32)
    rampup_steps = tf.cast(rampup_steps, tf.float32)
    return tf.where(
        step < rampup_steps,
        tf.cast(rampup_decay, tf.float32),
        tf.cast(decay, tf.float32),
    )


@keras.saving.register_keras_serializable(package="tfssl")
class RampUp(keras.optimizers.schedules.LearningRateSchedule):
    """`ramp_up` evaluated on the optimizer step, held at its end value after the ramp.

    `value(step) = max_value * ramp_up(min(epoch, rampup_epochs), rampup_epochs, method)`
    with the fractional `epoch = step / steps_per_epoch`. Being a `LearningRateSchedule`, it
    can drive a learning rate too, or any weight evaluated on `optimizer.iterations`.
    It is 0 at step 0 (the seed's rule). With `method="cosine"` (the seed's falling cosine)
    it goes from `max_value` to 0 and stays there.

    Example:

    ```python
    weight = tfssl.schedules.RampUp("sigmoid", rampup_epochs=80, steps_per_epoch=600,
                                    max_value=30.0)
    weight(optimizer.iterations)
    ```

    Args:
        method: Ramp-up method, see `ramp_up`. Defaults to `"sigmoid"`.
        rampup_epochs: Length of the ramp-up in epochs, `> 0`. Defaults to `80` (the TE
            paper's).
        steps_per_epoch: Optimizer steps per epoch, a positive integer. Required.
        max_value: Value after the ramp-up. Defaults to `1.0`.

    Raises:
        ValueError: for an unknown `method` or a non-positive `rampup_epochs` or
            `steps_per_epoch`.
    """

    def __init__(self, method="sigmoid", rampup_epochs=80, steps_per_epoch=None, max_value=1.0):
        _check_method(method)
        if not _is_number(rampup_epochs) or rampup_epochs <= 0:
            raise ValueError(
                f"`rampup_epochs` must be a number > 0. Received: rampup_epochs={rampup_epochs}"
            )
        if not isinstance(steps_per_epoch, numbers.Integral) or steps_per_epoch <= 0:
            raise ValueError(
                "`steps_per_epoch` must be a positive integer. "
                f"Received: steps_per_epoch={steps_per_epoch}"
            )
        self.method = method
        # Plain Python numbers, so that numpy scalars do not reach the JSON config.
        self.rampup_epochs = float(rampup_epochs)
        self.steps_per_epoch = int(steps_per_epoch)
        self.max_value = float(max_value)

    def __call__(self, step):
        epoch = tf.cast(step, tf.float32) / float(self.steps_per_epoch)
        epoch = tf.minimum(epoch, self.rampup_epochs)
        return self.max_value * ramp_up(epoch, self.rampup_epochs, self.method)

    def get_config(self):
        return {
            "method": self.method,
            "rampup_epochs": self.rampup_epochs,
            "steps_per_epoch": self.steps_per_epoch,
            "max_value": self.max_value,
        }


@keras.saving.register_keras_serializable(package="tfssl")
class RampUpDown(keras.callbacks.Callback):
    """The Temporal Ensembling paper's learning-rate and Adam `beta_1` schedule.

    At the start of each epoch `e` (0-based), with `up = exp(-5 (1 - min(e, R) / R)^2)`
    (the sigmoid ramp-up over `R = rampup_epochs`) and `down = ramp_down(e, num_epochs,
    rampdown_epochs)`:

    - `learning_rate = max_learning_rate * up * down`;
    - `beta_1 = down * beta_1 + (1 - down) * final_beta_1`.

    As in the authors' code, the learning-rate ramp-up is *not* zeroed at epoch 0 (that rule
    of `ramp_up` belongs to the unsupervised weight): epoch 0 trains at
    `exp(-5) * max_learning_rate`.

    Keras 3's Adam reads `beta_1` as a Python float when the train function is traced, so
    assigning a new float to `optimizer.beta_1` alone would change nothing. This callback
    assigns the float and, when its value changed, rebuilds the train function with
    `model.make_train_function(force=True)`, so the next step is traced with the new value.
    Before the ramp-down `beta_1` is constant and nothing is re-traced; during it (50 epochs
    in the paper) there is one re-trace per epoch. We do not swap in a variable for
    `beta_1`: Adam's `get_config` would then hold a tensor, and a model saved with it (e.g. by
    `ModelCheckpoint`) reloads with a broken optimizer. The learning rate is the optimizer's
    own variable and is assigned: create the optimizer with a float learning rate, not a
    schedule. Works with any optimizer with a float `beta_1` (Adam, AdamW, Adamax, Nadam).
    The epoch's values are logged as `learning_rate` and `beta_1`.

    Example:

    ```python
    model.compile(optimizer=keras.optimizers.Adam(0.003), ...)
    model.fit(data, epochs=300,
              callbacks=[tfssl.schedules.RampUpDown(0.003, num_epochs=300)])
    ```

    Args:
        max_learning_rate: Peak learning rate, `> 0`.
        num_epochs: Total number of epochs of the run (the ramp-down ends there).
        rampup_epochs: Length of the ramp-up in epochs. Defaults to `80`.
        rampdown_epochs: Length of the ramp-down in epochs. Defaults to `50`.
        beta_1: Adam `beta_1` before the ramp-down. Defaults to `0.9`.
        final_beta_1: Adam `beta_1` the ramp-down moves towards. Defaults to `0.5`.

    Raises:
        ValueError: for non-positive lengths or rates, betas outside `[0, 1)`, or (at train
            begin) an optimizer without `beta_1`.
        TypeError: (at the first epoch) if the optimizer's learning rate is a schedule.
    """

    def __init__(
        self,
        max_learning_rate,
        num_epochs,
        rampup_epochs=80,
        rampdown_epochs=50,
        beta_1=0.9,
        final_beta_1=0.5,
    ):
        super().__init__()
        for name, value in (
            ("max_learning_rate", max_learning_rate),
            ("num_epochs", num_epochs),
            ("rampup_epochs", rampup_epochs),
            ("rampdown_epochs", rampdown_epochs),
        ):
            if not _is_number(value) or value <= 0:
                raise ValueError(f"`{name}` must be a number > 0. Received: {name}={value}")
        for name, value in (("beta_1", beta_1), ("final_beta_1", final_beta_1)):
            if not _is_number(value) or not 0.0 <= value < 1.0:
                raise ValueError(f"`{name}` must be in [0, 1). Received: {name}={value}")
        self.max_learning_rate = max_learning_rate
        self.num_epochs = num_epochs
        self.rampup_epochs = rampup_epochs
        self.rampdown_epochs = rampdown_epochs
        self.beta_1 = beta_1
        self.final_beta_1 = final_beta_1

    def values(self, epoch):
        """Returns `(learning_rate, beta_1)` for `epoch` as Python floats."""
        up = _ramp(min(epoch, self.rampup_epochs), self.rampup_epochs, "sigmoid")
        down = float(ramp_down(epoch, self.num_epochs, self.rampdown_epochs))
        learning_rate = self.max_learning_rate * float(up) * down
        beta_1 = down * self.beta_1 + (1.0 - down) * self.final_beta_1
        return learning_rate, beta_1

    def on_train_begin(self, logs=None):
        optimizer = self.model.optimizer
        if not hasattr(optimizer, "beta_1"):
            raise ValueError(
                "RampUpDown schedules Adam's `beta_1`; the optimizer has none. "
                f"Received: optimizer={optimizer.__class__.__name__}"
            )

    def on_epoch_begin(self, epoch, logs=None):
        learning_rate, beta_1 = self.values(epoch)
        optimizer = self.model.optimizer
        optimizer.learning_rate = learning_rate
        if optimizer.beta_1 != beta_1:
            optimizer.beta_1 = beta_1
            # The traced train function holds the old float: trace it again.
            self.model.make_train_function(force=True)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)
            logs["beta_1"] = float(self.model.optimizer.beta_1)

    def get_config(self):
        return {
            "max_learning_rate": self.max_learning_rate,
            "num_epochs": self.num_epochs,
            "rampup_epochs": self.rampup_epochs,
            "rampdown_epochs": self.rampdown_epochs,
            "beta_1": self.beta_1,
            "final_beta_1": self.final_beta_1,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _check_weight(name, value):
    if not _is_number(value) or value < 0:
        raise ValueError(f"`{name}` must be a number >= 0. Received: {name}={value!r}")
    return float(value)


class WeightSchedule:
    """The weight of a model's unsupervised term as a function of the epoch.

    Subclasses implement `__call__(epoch)`, returning a `float32` scalar tensor for an int
    or float epoch (a tensor inside a `tf.function`), and `get_config`. A model takes one
    as `weight_schedule=`, like an optimizer takes a `LearningRateSchedule`, reads it once
    per step with its `epoch` variable, and saves it in its config.

    Example:

    ```python
    @keras.saving.register_keras_serializable(package="my_package")
    class StepWeight(tfssl.schedules.WeightSchedule):
        def __init__(self, weight, start_epoch):
            self.weight, self.start_epoch = weight, start_epoch

        def __call__(self, epoch):
            return tf.where(tf.cast(epoch, tf.float32) >= self.start_epoch, self.weight, 0.0)

        def get_config(self):
            return {"weight": self.weight, "start_epoch": self.start_epoch}
    ```
    """

    def __call__(self, epoch):
        raise NotImplementedError(f"{type(self).__name__} must implement `__call__(epoch)`.")

    def get_config(self):
        raise NotImplementedError(f"{type(self).__name__} must implement `get_config()`.")

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        arguments = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({arguments})"

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash((type(self).__name__, tuple(sorted(self.get_config().items()))))


@keras.saving.register_keras_serializable(package="tfssl")
class ConstantWeight(WeightSchedule):
    """The same weight at every epoch: FixMatch's `lambda_u`, VAT's `alpha`.

    Args:
        weight: The weight, `>= 0`. Defaults to `1.0`.

    Raises:
        ValueError: If `weight` is negative or not a number.
    """

    def __init__(self, weight=1.0):
        self.weight = _check_weight("weight", weight)

    def __call__(self, epoch):
        return tf.constant(self.weight, tf.float32)

    def get_config(self):
        return {"weight": self.weight}


@keras.saving.register_keras_serializable(package="tfssl")
class RampUpWeight(WeightSchedule):
    """The seed code's unsupervised weight: a ramp-up to `max_weight`, times a fixed factor.

    `weight(epoch) = ramp_up(min(epoch, ramp_up_epochs), ramp_up_epochs, method)
    * max_weight * scale`, 0 at epoch 0 (`ramp_up`). The seed's TF1 code (and the Temporal
    Ensembling paper) set `scale = num_labeled / num_samples`; the models' `num_labeled`
    argument does this for you.

    Formula:

    ```python
    weight = ramp_up(min(epoch, ramp_up_epochs), ramp_up_epochs, method) * max_weight * scale
    ```

    Example:

    ```python
    schedule = tfssl.schedules.RampUpWeight(max_weight=30.0, ramp_up_epochs=80)
    model = tfssl.models.TemporalEnsembling(backbone, num_samples, weight_schedule=schedule)
    ```

    Args:
        max_weight: Weight after the ramp-up, `>= 0`. Defaults to `1.0`.
        ramp_up_epochs: Length of the ramp-up in epochs, a positive integer. Defaults to
            `80`.
        method: One of `RAMP_UP_METHODS` (see `ramp_up`). Defaults to `"sigmoid"`.
        scale: A fixed factor in `[0, 1]`, e.g. the labeled share of the training set.
            Defaults to `1.0`.

    Raises:
        ValueError: For an unknown `method`, a non-positive `ramp_up_epochs`, a negative
            `max_weight` or a `scale` outside `[0, 1]`.
    """

    def __init__(self, max_weight=1.0, ramp_up_epochs=80, method="sigmoid", scale=1.0):
        _check_method(method)
        if isinstance(ramp_up_epochs, bool) or not isinstance(ramp_up_epochs, numbers.Integral) \
                or ramp_up_epochs <= 0:
            raise ValueError(
                "`ramp_up_epochs` must be a positive integer. "
                f"Received: ramp_up_epochs={ramp_up_epochs!r}"
            )
        if not _is_number(scale) or not 0.0 <= scale <= 1.0:
            raise ValueError(f"`scale` must be in [0, 1]. Received: scale={scale!r}")
        self.max_weight = _check_weight("max_weight", max_weight)
        self.ramp_up_epochs = int(ramp_up_epochs)
        self.method = method
        self.scale = float(scale)

    def __call__(self, epoch):
        epoch = tf.minimum(tf.cast(epoch, tf.float32), float(self.ramp_up_epochs))
        return ramp_up(epoch, float(self.ramp_up_epochs), self.method) * (
            self.max_weight * self.scale
        )

    def get_config(self):
        return {
            "max_weight": self.max_weight,
            "ramp_up_epochs": self.ramp_up_epochs,
            "method": self.method,
            "scale": self.scale,
        }


@keras.saving.register_keras_serializable(package="tfssl")
class LinearRampWeight(WeightSchedule):
    """Pseudo-Label's weight (Lee 2013): 0 until `start_epoch`, linear to `max_weight` at
    `end_epoch`, then `max_weight`.

    Formula:

    ```python
    weight = clip((epoch - start_epoch) / (end_epoch - start_epoch), 0, 1) * max_weight
    ```

    Args:
        start_epoch: Epoch where the weight starts to rise, `>= 0`. Defaults to `100`
            (Lee's `T1`).
        end_epoch: Epoch where it reaches `max_weight`, `> start_epoch`. Defaults to `600`
            (Lee's `T2`).
        max_weight: The final weight, `>= 0`. Defaults to `3.0` (Lee's `alpha_f`).

    Raises:
        ValueError: Unless `0 <= start_epoch < end_epoch` and `max_weight >= 0`.
    """

    def __init__(self, start_epoch=100, end_epoch=600, max_weight=3.0):
        if not (_is_number(start_epoch) and _is_number(end_epoch)) \
                or not 0 <= start_epoch < end_epoch:
            raise ValueError(
                "`start_epoch` and `end_epoch` must satisfy 0 <= start_epoch < end_epoch. "
                f"Received: start_epoch={start_epoch!r}, end_epoch={end_epoch!r}"
            )
        self.start_epoch = int(start_epoch)
        self.end_epoch = int(end_epoch)
        self.max_weight = _check_weight("max_weight", max_weight)

    def __call__(self, epoch):
        progress = (tf.cast(epoch, tf.float32) - self.start_epoch) / (
            self.end_epoch - self.start_epoch
        )
        return tf.clip_by_value(progress, 0.0, 1.0) * self.max_weight

    def get_config(self):
        return {
            "start_epoch": self.start_epoch,
            "end_epoch": self.end_epoch,
            "max_weight": self.max_weight,
        }


def get_weight_schedule(identifier):
    """A `WeightSchedule` from a schedule, a number (a `ConstantWeight`) or a config dict.

    Args:
        identifier: A `WeightSchedule`, a number `>= 0`, or the dict
            `keras.saving.serialize_keras_object` made of a schedule.

    Returns:
        A `WeightSchedule`.

    Raises:
        ValueError: For anything else; the message names it.
    """
    if isinstance(identifier, WeightSchedule):
        return identifier
    if _is_number(identifier):
        return ConstantWeight(identifier)
    if isinstance(identifier, dict):
        schedule = keras.saving.deserialize_keras_object(identifier)
        if isinstance(schedule, WeightSchedule):
            return schedule
    raise ValueError(
        "`weight_schedule` must be a tfssl.schedules.WeightSchedule or a number >= 0. "
        f"Received: weight_schedule={identifier!r}"
    )
