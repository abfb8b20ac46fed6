"""Shared mechanics of the tfssl models.

Every semi-supervised method in `tfssl.models` is a `SemiSupervisedModel`: a `keras.Model`
that wraps a backbone (any Keras model mapping inputs to logits) and trains on batches of
`({"x": x, "idx": idx}, y)` where `y == -1` marks an unlabeled row. This module holds what the
methods share, once, with the parts a method never touches in private modules beside it:

- unpacking and validating a batch (sample indices in range and unique, labels in range;
  `_batches`);
- the masked supervised loss (`_supervised`) and the unsupervised weight, a
  `tfssl.schedules.WeightSchedule` read with the epoch (by default the seed code's
  `ramp_up(epoch) * max_unsupervised_weight * num_labeled / num_samples`);
- the hooks of the pseudo-label family (`tfssl.models.policies`): policies and target
  transforms that a method registers with `add_hook`, whose state updates are written after
  the optimizer step;
- the epoch counter the ramp-up reads (set by a callback that `fit` adds);
- one `keras.metrics.Mean` per loss term, reset every epoch;
- per-sample state (`(num_samples, ...)` variables such as Temporal Ensembling's ensemble):
  a resource gather that reads only the batch's rows and a scatter that, under a
  `tf.distribute` strategy, applies the same all-gathered update on every replica;
- normalisation by the *global* batch so that a run on several replicas equals one device
  with the same global batch (`_replicas`);
- a step whose floating inputs, loss or gradients are not finite writes nothing (no weight,
  optimizer slot, per-sample state or teacher): it raises or is skipped (`on_nonfinite`), on
  every replica alike (`_nonfinite`);
- the training and evaluation steps themselves, `compile` and `fit` (`_trainer`, a mixin as
  Keras' own `Trainer` is one of `keras.Model`), and the constructor's checks (`_checks`).

A method overrides `compute_losses` (the paper's loss, as a dict of named terms) and, when it
keeps state beside the weights, `update_state_after_step` (the ensemble or teacher update that
follows the optimizer step). `docs/writing-a-method.md` walks through one.
"""
import keras
import tensorflow as tf

from tfssl import schedules
from tfssl.data import UNLABELED
from tfssl.models._batches import check_batch, split_inputs
from tfssl.models._checks import (
    check_choice,
    check_label_smoothing,
    check_positive_int,
    check_sample_counts,
    resolve_num_classes,
)
from tfssl.models._replicas import gather_from_replicas, global_consistency, global_mean
from tfssl.models._supervised import (
    MULTILABEL_OBJECTIVES,
    SUPERVISED_OBJECTIVES,
    is_loss_object,
    objective_loss,
)
from tfssl.models._trainer import Trainer
from tfssl.models import policies

__all__ = [
    "MULTILABEL_OBJECTIVES",
    "RAMP_UP_SHORTHAND",
    "STATE_DTYPES",
    "SUPERVISED_OBJECTIVES",
    "SemiSupervisedModel",
    "check_choice",
    "global_consistency",
    "global_mean",
]

# The shorthand arguments of the seed's ramp-up (`RampUpWeight`). A method whose own option
# replaces the ramp-up (VAT's fixed alpha, Pseudo-Label's `schedule="lee"`) ignores them, as
# it always has.
RAMP_UP_SHORTHAND = ("num_labeled", "max_unsupervised_weight", "ramp_up_method", "ramp_up_epochs")

# Storage dtypes of per-sample state. The half-precision ones halve its memory; it is read
# and updated in float32 whatever it is stored in.
STATE_DTYPES = ("float32", "float16", "bfloat16")


@keras.saving.register_keras_serializable(package="tfssl")
class SemiSupervisedModel(Trainer, keras.Model):
    """Base class of the tfssl semi-supervised models.

    Wraps `backbone` and trains it on `({"x": x, "idx": idx}, y)` batches, `y == -1` for
    unlabeled rows, with `loss = supervised + unsupervised_weight * unsupervised`. Subclasses
    write the method in `compute_losses` and, if they keep state beside the weights,
    `update_state_after_step`. `call` runs the serving model (`serving_model()`) in inference,
    so `predict` and `evaluate` take plain arrays or `{"x", "idx"}` dicts.

    The unsupervised weight is `weight_schedule(epoch)`, a `tfssl.schedules.WeightSchedule`.
    By default it follows the seed code, `tfssl.schedules.RampUpWeight`:
    `ramp_up(min(epoch, ramp_up_epochs), ramp_up_epochs, ramp_up_method)
    * max_unsupervised_weight * num_labeled / num_samples`, the last factor only when
    `num_labeled` is given; those four arguments are a shorthand for that schedule and
    cannot be combined with `weight_schedule`. The epoch is written into `model.epoch` by a
    callback that `fit` adds; it is restored with the other weights.

    `compile(jit_compile=True)` compiles the step with XLA on one replica, all but the batch
    checks: on GPU and under XLA a gather clamps an out-of-range index and a scatter drops
    it silently, and XLA compiles an assertion to nothing. So the label and index checks
    run first, outside the compiled function, which reads their checked outputs and so
    runs only once they have passed; a non-finite step is refused inside the compiled
    function and raised after it.

    Args:
        backbone: `keras.Model` mapping inputs to logits of shape `(batch, num_classes)`.
        num_samples: Number of rows in the training set (the range of `idx`). Required by
            methods with per-sample state (Temporal Ensembling); the others accept batches
            with or without `idx` and check `idx` only when `num_samples` is given.
            Defaults to `None`.
        num_classes: Number of classes. Defaults to `None`: the size of the backbone's
            output. When given, it must equal that size.
        weight_schedule: The unsupervised weight: a `tfssl.schedules.WeightSchedule`
            (`RampUpWeight`, `LinearRampWeight`, `ConstantWeight`, or your own) or a number
            (a constant). Defaults to `None`: the seed's ramp-up built from the next four
            arguments.
        num_labeled: Number of labeled rows in the training set, for the seed's weighting
            `num_labeled / num_samples`. Defaults to `None` (no such factor).
        max_unsupervised_weight: Weight of the unsupervised term after the ramp-up.
            Defaults to `None` (1.0).
        ramp_up_method: `"sigmoid"` (the papers' `exp(-5 (1 - t)^2)`), `"linear"`,
            `"cosine"` (the seed's, which falls from 1 to 0) or `"cosine_rampup"` (a cosine
            that rises). Defaults to `None` (`"sigmoid"`).
        ramp_up_epochs: Length of the ramp-up in epochs. Defaults to `None` (80).
        supervised_normalize: `"batch"` divides the labeled rows' cross-entropy by the batch
            size (the seed's TF1 code), `"labeled"` by the number of labeled rows.
            Defaults to `"batch"`.
        label_smoothing: Smoothing of the supervised targets, in `[0, 1]`, with Keras'
            semantics: `keras.losses.CategoricalCrossentropy(label_smoothing=...)` (targets
            `(1 - s) * one_hot + s / num_classes`) for `"crossentropy"`,
            `keras.losses.BinaryCrossentropy(label_smoothing=...)` (targets
            `(1 - s) * y + s / 2`) for `"binary_crossentropy"`. Unlabeled rows stay out.
            Must be 0 for the F1 objectives. Defaults to `0.0`.
        supervised_objective: The supervised term (the keyword is not `supervised_loss`,
            which names the method computing it):
            - `"crossentropy"`: softmax cross-entropy of integer labels, `-1` unlabeled.
            - `"binary_crossentropy"`: one sigmoid cross-entropy per class, averaged over
              the classes, for multi-label data; with a one-logit backbone it is the binary
              (click-through style) classifier, labels 0 or 1, and `num_classes` is 2.
            - `"f1"`: the seed's soft macro-F1 `tfssl.losses.f1_loss` on sigmoid outputs.
            - `"sigmoid_f1"`: `tfssl.losses.sigmoid_f1_loss` (sigmoidF1) on the logits.
            - `"gce"`, `"sce"`: the noise-robust `tfssl.losses.generalized_crossentropy`
              (q 0.7) and `tfssl.losses.symmetric_crossentropy` (alpha 0.1, beta 1, A -4)
              of integer labels, with the papers' parameters; label smoothing must be 0.
            - A loss object of integer labels with a `per_sample` method, for other
              parameters: `tfssl.losses.GeneralizedCrossentropy(q=0.5)` or
              `tfssl.losses.SymmetricCrossentropy(alpha, beta, log_zero)`. Its per-sample
              values on the labeled rows are averaged over the global batch as
              `supervised_normalize` says (its own `normalize` is for `compile`).
            `"binary_crossentropy"` and the F1 objectives read multi-hot labels `(batch, num_classes)` where `-1` marks an
            unknown entry: an unlabeled row is all `-1`, and unknown entries add nothing
            (the F1 counts leave them out). The F1 objectives are statistics of the whole
            batch, computed on the global batch under a `tf.distribute` strategy, and
            ignore `supervised_normalize`. Multi-hot batches are built with `tf.data`
            (`tfssl.data.make_dataset` takes 1-D labels). With multi-hot labels the
            compiled metrics see the sigmoid probabilities (`metric_inputs`), so
            `compile(metrics=[keras.metrics.F1Score(threshold=0.5)])` reports the F1
            score. Defaults to `"crossentropy"`.
        on_nonfinite: What a training step does when the batch's floating inputs, the
            loss or the gradients are not finite: `"raise"` an error naming the batch's
            `idx` (or row positions) and the bad input rows, or `"skip"` the step and count
            it in the `skipped_steps` metric. Either way nothing is written: weights,
            optimizer slots and iterations, per-sample state, teacher. Defaults to
            `"raise"`.
        **kwargs: Passed to `keras.Model` (e.g. `name`).

    Raises:
        ValueError: If an argument is out of range; the message names it.
    """

    # Names of the terms `compute_losses` returns; each gets a `keras.metrics.Mean`. Loss
    # terms are this replica's share of a global mean; schedule terms are the same scalar
    # on every replica.
    loss_terms = ("loss", "supervised_loss")
    schedule_terms = ("unsupervised_weight",)
    # The weight schedule when neither `weight_schedule` nor the ramp-up shorthand is given;
    # `None` is the seed's ramp-up. A `RampUpWeight` here also supplies the shorthand's
    # missing values.
    default_weight_schedule = None

    def __init__(
        self,
        backbone,
        num_samples=None,
        num_classes=None,
        num_labeled=None,
        max_unsupervised_weight=None,
        ramp_up_method=None,
        ramp_up_epochs=None,
        supervised_normalize="batch",
        label_smoothing=0.0,
        supervised_objective="crossentropy",
        on_nonfinite="raise",
        weight_schedule=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(backbone, keras.Model):
            raise ValueError(
                f"`backbone` must be a keras.Model mapping inputs to logits. "
                f"Received: backbone={backbone!r}"
            )
        if isinstance(supervised_objective, keras.losses.Loss):
            if not is_loss_object(supervised_objective):
                raise ValueError(
                    "A loss object as `supervised_objective` must give per-sample values of "
                    "integer labels (a `per_sample(labels, logits)` method), as "
                    "tfssl.losses.GeneralizedCrossentropy and SymmetricCrossentropy do. "
                    f"Received: supervised_objective={supervised_objective!r}"
                )
        else:
            check_choice("supervised_objective", supervised_objective, SUPERVISED_OBJECTIVES)
        check_label_smoothing(label_smoothing, supervised_objective)
        num_classes = resolve_num_classes(
            backbone, num_classes, sigmoid=supervised_objective in MULTILABEL_OBJECTIVES
        )
        check_sample_counts(num_samples, num_labeled)
        self.weight_schedule = _weight_schedule(
            weight_schedule,
            self.default_weight_schedule,
            num_labeled=num_labeled,
            num_samples=num_samples,
            max_unsupervised_weight=max_unsupervised_weight,
            ramp_up_method=ramp_up_method,
            ramp_up_epochs=ramp_up_epochs,
        )
        check_choice("supervised_normalize", supervised_normalize, ("batch", "labeled"))
        check_choice("on_nonfinite", on_nonfinite, ("raise", "skip"))
        self.backbone = backbone
        self.num_samples = None if num_samples is None else int(num_samples)
        self.num_classes = num_classes
        self.supervised_normalize = supervised_normalize
        self.label_smoothing = float(label_smoothing)
        self.supervised_objective = supervised_objective
        self.on_nonfinite = on_nonfinite

        self.epoch = self.add_weight(
            shape=(), initializer="zeros", dtype="int64", trainable=False, name="epoch"
        )
        # Per-sample state lives in a layer of its own: Keras' TensorBoard callback
        # (histogram_freq > 0) then writes its histograms, as the seed's add_layer_summary.
        self.sample_state = _SampleState(name="sample_state")
        # The wrapper owns no layer of its own to build: it is built once its backbone is,
        # so `.keras` saving and loading restore its state without a forward pass.
        self.built = backbone.built
        self.hooks = []

    # ----------------------------------------------------------------- per-sample state
    def add_sample_state(self, name, shape, initializer="zeros", dtype="float32"):
        """Creates a non-trainable `(num_samples, *shape)` variable of per-sample state.

        The variable belongs to the `model.sample_state` layer, so a
        `keras.callbacks.TensorBoard(histogram_freq=1)` writes its histogram every epoch.
        It is written with `scatter_sample_state`, which makes every replica apply
        the same all-gathered update; `only_first_replica` aggregation then keeps the copies
        identical. Its size in bytes is `itemsize * num_samples * prod(shape)` (4 for
        float32, 2 for float16 and bfloat16): it lives on the device(s) of the training
        strategy and in checkpoints, never in serving exports.

        Args:
            name: Variable name.
            shape: Per-sample shape, e.g. `(num_classes,)`.
            initializer: Keras initializer. Defaults to `"zeros"`.
            dtype: Storage dtype, one of `STATE_DTYPES`. `gather_sample_state` reads it
                as float32 and `scatter_sample_state` rounds the float32 update to it, so
                only the stored values lose precision: float16 keeps 11 significant bits
                (integers exact up to 2048, magnitudes up to 65504), bfloat16 8 bits
                (integers exact up to 256) with float32's range. Independent of the
                model's dtype policy. Defaults to `"float32"`.

        Returns:
            The `keras.Variable`.

        Raises:
            ValueError: If the model was built without `num_samples`, or for an unknown
                `dtype`.
        """
        if self.num_samples is None:
            raise ValueError(
                f"{type(self).__name__} keeps per-sample state and needs `num_samples`, the "
                "number of training rows (the range of `idx`). Received: num_samples=None"
            )
        check_choice("dtype", dtype, STATE_DTYPES)
        return self.sample_state.add_weight(
            shape=(self.num_samples, *shape),
            initializer=initializer,
            dtype=dtype,
            trainable=False,
            aggregation="only_first_replica",
            name=name,
        )

    def gather_sample_state(self, variable, sample_idx):
        """Reads the rows `sample_idx` of a per-sample variable, as float32.

        A resource gather reads only those rows; `tf.gather` on the Keras variable would
        first convert the whole `(num_samples, ...)` variable to a tensor (121x slower
        per step with 10M samples, measured on CPU). State stored in half precision is
        cast up after the gather, so the update that follows runs in float32.
        """
        return tf.cast(tf.nn.embedding_lookup(variable.value, sample_idx), tf.float32)

    def scatter_sample_state(self, updates, sample_idx):
        """Writes `rows` into each per-sample `variable` at `sample_idx`, on every replica.

        Under a strategy, indices and rows are all-gathered (indices as int32) so that each
        replica's copy receives the update of the whole global batch.

        Args:
            updates: List of `(variable, rows)` pairs; `rows` has one row per `sample_idx`.
            sample_idx: `(batch,)` indices of this replica's rows.
        """
        global_idx = gather_from_replicas(tf.cast(sample_idx, tf.int32))
        for variable, rows in updates:
            # Gathered in float32 (collectives refuse bfloat16), rounded to the storage dtype
            # once.
            rows = tf.cast(gather_from_replicas(tf.cast(rows, tf.float32)), variable.dtype)
            variable.value.scatter_update(tf.IndexedSlices(rows, global_idx))

    def assign_state(self, variable, value):
        """Assigns `value` to a non-trainable `variable` on every replica, after the step.

        For state computed from the global batch (all-reduced, hence the same on every
        replica), such as a policy's running statistics. Call it from
        `update_state_after_step`, which runs only when the step is applied.
        """

        def assign(strategy, value):
            strategy.extended.update(
                variable.value, lambda v, new: v.assign(tf.cast(new, v.dtype)), args=(value,)
            )

        tf.distribute.get_replica_context().merge_call(assign, args=(value,))

    # ------------------------------------------------------------------------ hooks
    def add_hook(self, hook):
        """Registers a pseudo-label policy or target transform (`tfssl.models.policies`).

        Builds its state for this model (`hook.build_state(self)`), tracks it so its
        variables are saved, and has `update_state_after_step` write the updates a step
        returned for it under `outputs["hook_updates"][hook.name]`.

        Args:
            hook: A `PseudoLabelPolicy` or `TargetTransform`.

        Returns:
            `hook`.

        Raises:
            ValueError: If `hook` is neither, or needs `idx` and the model has no
                `num_samples`.
        """
        if not isinstance(hook, (policies.PseudoLabelPolicy, policies.TargetTransform)):
            raise ValueError(
                "Expected a tfssl.models.policies.PseudoLabelPolicy or TargetTransform. "
                f"Received: {hook!r}"
            )
        if getattr(hook, "needs_sample_idx", False) and self.num_samples is None:
            raise ValueError(
                f"{type(hook).__name__} keeps per-row state and needs the model's "
                "`num_samples`. Received: num_samples=None"
            )
        hook.build_state(self)
        self.hooks.append(hook)
        return hook

    def run_hooks(self, probabilities, sample_idx=None, labeled_probabilities=None,
                  policy=None, transforms=()):
        """Runs target transforms, then a policy, on guessed probabilities.

        Args:
            probabilities: `(rows, num_classes)` guesses for unlabeled rows (no gradient).
            sample_idx: Their `idx`, or `None`.
            labeled_probabilities: Predictions on the batch's labeled rows, or `None`.
            policy: A registered `PseudoLabelPolicy`, or `None` (every row weighs 1).
            transforms: Registered `TargetTransform`s, applied in order before the policy.

        Returns:
            `(probabilities, weights, hook_outputs)`: the transformed guesses, `(rows,)`
            weights and a dict to merge into `compute_losses`' outputs (the hooks' state
            updates and `sample_idx`) and whose `"logs"` the method may report.
        """
        updates = {}
        for transform in transforms:
            probabilities, updates[transform.name] = transform.transform(
                probabilities, labeled_probabilities
            )
        if policy is None:
            weights, logs = tf.ones_like(probabilities[:, 0]), {}
        else:
            weights, updates[policy.name] = policy.select(
                probabilities, sample_idx, labeled_probabilities
            )
            logs = policy.logs(updates[policy.name])
        hook_outputs = {"hook_updates": updates, "hook_sample_idx": sample_idx}
        return probabilities, weights, hook_outputs, logs

    # --------------------------------------------------------------------- batches
    def unpack_batch(self, data):
        """Splits a batch into `(x, sample_idx, labels)` and validates it.

        Accepts `({"x": x, "idx": idx}, y)` (optionally with a sample weight, which is
        refused: the labeled mask is the weighting) or `(x, y)` for evaluation. The checks
        run before anything is written: labels in `[-1, num_classes)` and, when the model
        has a `num_samples`, indices in `[0, num_samples)` and unique across the global
        batch (without `num_samples` they are passed on unchecked, e.g. as the key of a
        per-row random draw); a failure names the bad values.

        Returns:
            `(x, sample_idx or None, labels)` with `labels` int32: `(batch,)`, or for the
            multi-label objectives multi-hot rows `(batch, num_classes)` as given (the
            compiled metrics, e.g. `keras.metrics.F1Score`, need them 2-D).
        """
        inputs, labels, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if sample_weight is not None:
            raise ValueError(
                "tfssl models weight rows by the labeled mask; sample weights are not "
                "supported. Received a sample_weight in the data."
            )
        if labels is None:
            raise ValueError("tfssl models need labels (use -1 for unlabeled rows).")
        x, sample_idx = split_inputs(inputs)
        labels = tf.cast(labels, tf.int32)
        if not (
            self.supervised_objective in MULTILABEL_OBJECTIVES
            and labels.shape.rank == 2
            and labels.shape[-1] != 1
        ):
            labels = tf.reshape(labels, [-1])
        labels, sample_idx = check_batch(labels, sample_idx, self.num_classes, self.num_samples)
        return x, sample_idx, labels

    def metric_inputs(self, labels, logits):
        """What the compiled metrics see: `(y_true, y_pred, sample_weight)`.

        Integer labels `(batch,)`: the labels (0 on unlabeled rows), the logits and the
        labeled mask. Multi-hot labels `(batch, num_classes)`: the 0/1 targets, the sigmoid
        probabilities (Keras' multi-label metrics threshold probabilities;
        `keras.metrics.F1Score` takes a threshold in (0, 1] only) and a weight of 1 for
        every row with a known entry. Keras weights metrics by row: an unknown entry (`-1`)
        of a row with known ones counts as 0.

        Args:
            labels: Labels from `unpack_batch`.
            logits: The batch's logits.

        Returns:
            `(y_true, y_pred, sample_weight)` with `sample_weight` `(batch,)` float32.
        """
        known = tf.cast(labels != UNLABELED, tf.float32)
        if labels.shape.rank == 2:
            return (
                tf.maximum(labels, 0),
                tf.sigmoid(tf.cast(logits, tf.float32)),
                tf.reduce_max(known, axis=-1),
            )
        return tf.maximum(labels, 0), logits, known

    # ------------------------------------------------------------------- loss terms
    def supervised_loss(self, labels, logits):
        """The supervised term (`supervised_objective`) on the labeled rows, over the global
        batch: this replica's share.

        Args:
            labels: Integer labels `(batch,)`, or for the multi-label objectives multi-hot
                labels `(batch, num_classes)` (or flattened, as `unpack_batch` gives them);
                `-1` marks unlabeled rows (entries).
            logits: `(batch, outputs)` logits.

        Returns:
            A scalar: this replica's share of the global batch's supervised loss.
        """
        return objective_loss(
            labels,
            logits,
            self.supervised_objective,
            self.num_classes,
            label_smoothing=self.label_smoothing,
            normalize=self.supervised_normalize,
        )

    def unsupervised_weight(self):
        """The weight of the unsupervised term at this epoch: `weight_schedule(epoch)`."""
        return tf.cast(self.weight_schedule(self.epoch), tf.float32)

    def combine_losses(self, supervised, unsupervised, unsupervised_name="consistency_loss"):
        """The named terms of `supervised + unsupervised_weight() * unsupervised`.

        Args:
            supervised: This replica's share of the supervised loss.
            unsupervised: This replica's share of the unsupervised loss.
            unsupervised_name: Name under which the unsupervised term is reported.

        Returns:
            A dict with `loss`, `supervised_loss`, the unsupervised term and
            `unsupervised_weight`.
        """
        weight = self.unsupervised_weight()
        return {
            "loss": supervised + weight * unsupervised,
            "supervised_loss": supervised,
            unsupervised_name: unsupervised,
            "unsupervised_weight": weight,
        }

    def compute_losses(self, x, sample_idx, labels):
        """Returns `(terms, outputs)`: a dict of named loss terms with the total under
        `"loss"`, and a dict of the step's tensors: `"logits"` of the training pass (for the
        metrics) and whatever `update_state_after_step` needs.

        Subclasses implement the method's loss here, in the paper's order.
        """
        raise NotImplementedError

    def update_state_after_step(self, sample_idx, outputs):
        """Updates state kept beside the weights (ensemble, teacher) after the optimizer
        step, from the `outputs` of `compute_losses`. By default it writes the registered
        hooks' updates (`run_hooks`); a method with state of its own calls it too."""
        updates = outputs.get("hook_updates", {})
        for hook in self.hooks:
            if hook.name in updates:
                hook.apply_updates(self, updates[hook.name], outputs.get("hook_sample_idx"))

    # ----------------------------------------------------------------- keras hooks
    def call(self, inputs, training=False):
        x, _ = split_inputs(inputs)
        return self.serving_model()(x, training=False)

    def serving_model(self, which="default"):
        """The `keras.Model` to serve and evaluate: the backbone.

        Args:
            which: `"default"` (the backbone).

        Returns:
            A `keras.Model` mapping inputs to logits.
        """
        if which != "default":
            raise ValueError(
                f"`which` must be 'default' for {type(self).__name__}. Received: which={which!r}"
            )
        return self.backbone

    def forward_pass_state(self):
        """The variables that the training forward pass itself writes (batch-norm moving
        statistics): saved before the pass and put back when the step is refused.

        Returns:
            A list of variables: the backbone's non-trainable weights. A method whose other
            networks write state in their training pass adds theirs.
        """
        return list(self.backbone.non_trainable_weights)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "backbone": keras.saving.serialize_keras_object(self.backbone),
                "num_samples": self.num_samples,
                "num_classes": self.num_classes,
                "weight_schedule": keras.saving.serialize_keras_object(self.weight_schedule),
                "supervised_normalize": self.supervised_normalize,
                "label_smoothing": self.label_smoothing,
                "supervised_objective": (
                    keras.saving.serialize_keras_object(self.supervised_objective)
                    if is_loss_object(self.supervised_objective)
                    else self.supervised_objective
                ),
                "on_nonfinite": self.on_nonfinite,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for name, value in config.items():
            # Nested Keras objects: the backbone, augmentations, schedules, policies.
            if isinstance(value, dict) and "class_name" in value:
                config[name] = keras.saving.deserialize_keras_object(value)
        return cls(**config)


def _weight_schedule(weight_schedule, default, num_labeled, num_samples, **ramp_up):
    """The model's `WeightSchedule`: `weight_schedule`; else a ramp-up from the shorthand
    arguments (`max_unsupervised_weight`, `ramp_up_method`, `ramp_up_epochs`, `num_labeled`),
    which cannot be combined with it, their missing values taken from `default` when it is a
    `RampUpWeight`; else `default`; else the seed's ramp-up."""
    given = {name: value for name, value in ramp_up.items() if value is not None}
    if num_labeled is not None:
        given["num_labeled"] = num_labeled
    if weight_schedule is not None:
        if given:
            raise ValueError(
                "Pass either `weight_schedule` or the ramp-up shorthand "
                "(max_unsupervised_weight, ramp_up_method, ramp_up_epochs, num_labeled), "
                f"not both. Received: weight_schedule={weight_schedule!r} and {given}"
            )
        return schedules.get_weight_schedule(weight_schedule)
    if not given and default is not None:
        return default
    if isinstance(default, schedules.RampUpWeight):
        defaults = {
            "max_unsupervised_weight": default.max_weight,
            "ramp_up_method": default.method,
            "ramp_up_epochs": default.ramp_up_epochs,
        }
        given = {**defaults, **given}
    max_weight = given.get("max_unsupervised_weight", 1.0)
    if isinstance(max_weight, bool) or not isinstance(max_weight, (int, float)) or max_weight < 0:
        raise ValueError(
            f"`max_unsupervised_weight` must be >= 0. Received: max_unsupervised_weight={max_weight}"
        )
    method = given.get("ramp_up_method", "sigmoid")
    check_choice("ramp_up_method", method, schedules.RAMP_UP_METHODS)
    epochs = given.get("ramp_up_epochs", 80)
    check_positive_int("ramp_up_epochs", epochs)
    scale = 1.0 if num_labeled is None else num_labeled / num_samples
    return schedules.RampUpWeight(max_weight, epochs, method, scale=scale)


class _SampleState(keras.layers.Layer):
    """Holds the `(num_samples, ...)` variables of a model; it has no computation."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.built = True
