"""Ramp-up, ramp-down and EMA-decay schedules for semi-supervised training.

`ramp_up(cur_epoch, max_epoch, method)` ports the seed's TF1 function (seed 000, the Temporal
Ensembling / Pi-model blog post) with its exact semantics, including its falling "cosine".
The ramp-down and the learning-rate / Adam `beta_1` schedule follow the appendix of

    Laine & Aila, "Temporal Ensembling for Semi-Supervised Learning", arXiv:1610.02242,

and the EMA decay schedule follows the TF1 code of

    Tarvainen & Valpola, "Mean teachers are better role models", arXiv:1703.01780.

All functions accept Python numbers or tensors (inside `tf.function` too) and return
`float32` tensors.
"""

import math
import numbers

import keras
import tensorflow as tf

__all__ = [
    "RAMP_UP_METHODS",
    "RampUp",
    "RampUpDown",
    "ema_decay",
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
