"""How a tfssl model trains: its `compile`, `fit`, `train_step` and `test_step`.

Keras splits its own `keras.Model` the same way (`Model(Trainer, Layer)`, the trainer in
`keras/src/trainers/`): `SemiSupervisedModel` (`tfssl.models.base`) says what a method
computes (its loss terms, its state, its config), and inherits from `Trainer` how a step
runs. `train_step` runs the batch checks, then, compiled with XLA when asked, the tape,
the finite check and the optimizer step with the state update on every replica, or the
refusal of the whole step (`tfssl.models._nonfinite`); the loss terms and the compiled
metrics are tracked on the labeled rows.
"""

import os

import keras
import tensorflow as tf

from tfssl.models._nonfinite import check_finite, raise_nonfinite_error, restore_values
from tfssl.models._replicas import distributable_logs, global_sum


WEIGHTS_SUFFIX = ".weights.h5"
# Name scopes of the parts of a training step, as a TensorFlow profile shows them.
BATCH_CHECKS_SCOPE = "batch_checks"
NONFINITE_GUARD_SCOPE = "nonfinite_guard"
METRICS_SCOPE = "step_metrics"


class UnreadableWeightsError(OSError, ValueError):
    """A weights file that cannot be loaded whole (missing, truncated, half-written).

    An `OSError`, as h5py's error for a truncated file, so that
    `keras.callbacks.BackupAndRestore(double_checkpoint=True)` falls back to its previous
    checkpoint; a `ValueError` too, as Keras' error for a file missing variables.
    """


class _EpochCounter(keras.callbacks.Callback):
    """Writes the current epoch into `model.epoch` so `train_step` can read it."""

    def on_epoch_begin(self, epoch, logs=None):
        self.model.epoch.assign(epoch)


class Trainer:
    """The training and evaluation steps of `SemiSupervisedModel`, and their Keras setup.

    A mixin before `keras.Model`. Its initialiser creates the state that only the steps
    use: one `keras.metrics.Mean` per name in the class attributes `loss_terms` and
    `schedule_terms` (`loss_trackers`, reset by Keras every epoch), the `skipped_steps`
    metric and the caches of the compiled step and of the metric reset. It reads what
    `SemiSupervisedModel.__init__` creates (`backbone`, `epoch`, `on_nonfinite`) and calls
    the method's hooks (`unpack_batch`, `compute_losses`, `update_state_after_step`,
    `forward_pass_state`, `supervised_loss`, `metric_inputs`).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_trackers = {
            name: keras.metrics.Mean(name=name) for name in self.loss_terms + self.schedule_terms
        }
        self.skipped_steps = keras.metrics.Sum(name="skipped_steps")
        # Whether `compile(jit_compile=True)` asked for XLA, and the step it compiled.
        self._jit_step = False
        self._compiled_step = None
        # `(ids of the metric variables, the tf.function zeroing them)` of `reset_metrics`.
        self._metric_reset = None

    def compile(self, optimizer="adam", metrics=None, jit_compile=False, **kwargs):
        """Configures training. No loss is needed: the method defines it.

        Args:
            optimizer: A Keras optimizer or its name. Defaults to `"adam"`.
            metrics: Metrics computed on the labeled rows, e.g. `["accuracy"]` (passed to
                Keras as `weighted_metrics`, weighted by the labeled mask).
            jit_compile: `True` compiles the step with XLA, except the batch checks, which
                run before it without XLA (see `SemiSupervisedModel`). One replica only:
                refused under a strategy with several. Ignored with `run_eagerly=True`.
                Meant for GPUs. On CPU, a model with one random layer (`Dropout`,
                `GaussianNoise`) was 9x slower under XLA: XLA inlines the random-number
                computation of that layer's only draw and fuses it into the layer's
                elementwise select, which then recomputes the Philox key and a whole
                4-value block for every element (the HLO of the step shows the
                `StatelessRandomGetKeyCounter` ops inside the select's loop fusion; with
                two draws of one shape, as the Π-model's, XLA keeps them in a called
                computation and is not slowed). Start the process with
                `XLA_FLAGS=--xla_disable_hlo_passes=call-inliner` to keep it out of the
                fusion: Temporal Ensembling's XLA step then costs 1.17x its graph step on
                CPU, as the other methods' (1.28x), against 8.5x without the flag
                (benchmarks/speed.json, `xla` sections). Defaults to `False`.
            **kwargs: Passed to `keras.Model.compile` (`loss` is refused). A
                `steps_per_execution` above 1 (several steps per call, the same results)
                needs a single replica: Keras 3 fails to run it on several
                (keras-team/keras#19246).

        Raises:
            ValueError: For a `loss`, a `jit_compile` other than a bool or `None`, or
                `jit_compile=True` or a `steps_per_execution` above 1 under a strategy
                with several replicas.
        """
        if jit_compile not in (True, False, None):
            raise ValueError(
                f"`jit_compile` must be True or False (tfssl models compile all but the batch "
                f"checks with XLA, so there is no 'auto'). Received: jit_compile={jit_compile!r}"
            )
        replicas = self.distribute_strategy.num_replicas_in_sync
        if jit_compile and replicas > 1:
            # The compiled step is a tf.function nested in each replica's step, and
            # MirroredStrategy refuses a merge_call (optimizer, state) inside one.
            raise ValueError(
                "`jit_compile=True` runs on one replica; this model's strategy has "
                f"{replicas}. Received: jit_compile={jit_compile!r}"
            )
        steps_per_execution = kwargs.get("steps_per_execution", 1)
        if steps_per_execution != 1 and replicas > 1:
            # Keras 3 leaves a placeholder of the step's `tf.cond` unfed inside its loop of
            # steps when the step runs on several replicas (keras-team/keras#19246).
            raise ValueError(
                "`steps_per_execution` above 1 runs on one replica: Keras fails to run "
                f"several steps per call on several; this model's strategy has {replicas}. "
                f"Received: steps_per_execution={steps_per_execution!r}"
            )
        if kwargs.get("loss") is not None:
            raise ValueError(
                f"{type(self).__name__} defines its own loss. Received: loss={kwargs['loss']!r}"
            )
        kwargs.pop("loss", None)
        # Keras applies sample weights only to `weighted_metrics`: the metrics go there so
        # that the labeled mask (the sample weight of `compute_metrics`) applies to them.
        weighted_metrics = list(metrics or []) + list(kwargs.pop("weighted_metrics", None) or [])
        # Keras' own XLA would compile the checks too: the step compiles itself instead.
        super().compile(
            optimizer=optimizer,
            weighted_metrics=weighted_metrics or None,
            jit_compile=False,
            **kwargs,
        )
        self._jit_step = bool(jit_compile) and not self.run_eagerly
        self._compiled_step = None

    def get_compile_config(self):
        """The arguments of `compile`, saved in `.keras` files."""
        config = super().get_compile_config()
        if config is not None and self._jit_step:
            config["jit_compile"] = True
        return config

    def compile_from_config(self, config):
        """Re-compiles from `get_compile_config()` when a `.keras` file is loaded."""
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            # Creates the slots so the saved optimizer state can be loaded into them.
            self.optimizer.build(self.trainable_variables)

    def save_weights(self, filepath, overwrite=True, max_shard_size=None):
        """`keras.Model.save_weights`, written whole or not at all.

        Keras writes the `.weights.h5` file in place: a write that fails part-way (a full
        disk, a killed process) leaves a half-written file where the previous good one was,
        which `keras.callbacks.BackupAndRestore` then cannot restore from. Here the weights
        go to a `.partial<pid>.weights.h5` file beside it, flushed to disk, which then
        replaces `filepath` in one `os.replace`: `filepath` holds either the previous file
        or the new one. Sharded files (`max_shard_size`), remote paths (`gs://...`) and
        `overwrite=False` (which asks before overwriting) are Keras' own write.

        Args:
            filepath: Path of the `.weights.h5` file.
            overwrite: Whether to overwrite an existing file without asking. Defaults to
                `True`.
            max_shard_size: Largest shard in GB, or `None` for one file. Defaults to
                `None`.

        Raises:
            OSError: If the write fails; `filepath` then still holds the previous file.
        """
        path = os.fspath(filepath)
        if (
            max_shard_size is not None
            or not overwrite
            or "://" in path
            or not path.endswith(WEIGHTS_SUFFIX)
        ):
            return super().save_weights(
                filepath, overwrite=overwrite, max_shard_size=max_shard_size
            )
        partial = f"{path[: -len(WEIGHTS_SUFFIX)]}.partial{os.getpid()}{WEIGHTS_SUFFIX}"
        try:
            super().save_weights(partial, overwrite=True)
            with open(partial, "rb+") as file:
                os.fsync(file.fileno())
            os.replace(partial, path)
        finally:
            if os.path.exists(partial):
                os.remove(partial)

    def load_weights(self, filepath, skip_mismatch=False, **kwargs):
        """`keras.Model.load_weights`, which loads all of the file or none of it.

        A truncated file, or one missing a layer's variables (half-written by a writer
        other than `save_weights` above), is refused with `UnreadableWeightsError`, and the
        model and its optimizer keep the values they had: Keras alone would have assigned
        the layers it read before failing. The error is an `OSError`, so
        `keras.callbacks.BackupAndRestore(double_checkpoint=True)` restores the previous
        checkpoint instead. To put values back, the variables are copied first, which
        takes their size in host memory for the time of the load.

        Args:
            filepath: Path of the `.weights.h5` (or sharded `.weights.json`) file.
            skip_mismatch: Whether to skip layers whose variables do not match, as in
                Keras. Defaults to `False`.
            **kwargs: Passed to `keras.Model.load_weights`.

        Raises:
            UnreadableWeightsError: If the file cannot be read whole; the message names it
                and Keras' reason.
        """
        variables = list(self.weights)
        if self.optimizer is not None and self.optimizer.built:
            variables += list(self.optimizer.variables)
        values = [variable.numpy() for variable in variables]
        try:
            return super().load_weights(filepath, skip_mismatch=skip_mismatch, **kwargs)
        except (OSError, ValueError) as error:
            for variable, value in zip(variables, values):
                variable.assign(value)
            raise UnreadableWeightsError(
                f"{type(self).__name__} could not load the weights file: it is missing, "
                "truncated or half-written, or not of this model. The model keeps its "
                f"previous weights. Received: filepath={os.fspath(filepath)!r} ({error})"
            ) from error

    def fit(self, *args, callbacks=None, **kwargs):
        """`keras.Model.fit`, with a callback that keeps `model.epoch` current."""
        if args and isinstance(args[0], tf.data.Dataset):
            # A tfssl dataset is shuffled by tf.data; Keras would warn that its own
            # default shuffle=True is ignored.
            kwargs.setdefault("shuffle", False)
        callbacks = list(callbacks or [])
        if not any(isinstance(callback, _EpochCounter) for callback in callbacks):
            callbacks.append(_EpochCounter())
        return super().fit(*args, callbacks=callbacks, **kwargs)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Keras' build before `fit`/`evaluate`: the model, the compiled metrics and the
        optimizer's slots.

        From a `tf.data` pipeline of dense tensors, all is built from its element spec: no
        batch is drawn, so no iterator is made for the build and no shuffle moves, with or
        without a strategy. Keras 3 itself builds nothing here without a strategy (the slots
        and the compiled metrics are then created inside the first trace of the step, and a
        `tf.function` that creates variables is traced twice), and under a strategy draws
        a batch from an iterator of its own.

        Other inputs under a strategy: Keras 3 builds from the MEAN over the replicas of
        the first distributed batch, which fails for string inputs (text models) and,
        eagerly, under `MultiWorkerMirroredStrategy` (keras-team/keras#20585). The build
        reads only the batch's shapes and dtypes, which every replica's part has: it is
        given the first local replica's part instead. tests/test_multiworker.py fails when
        Keras no longer needs this.
        """
        if iterator is not None and data_batch is None:
            dataset = getattr(iterator.data_adapter, "_dataset", None)
            if isinstance(dataset, tf.data.Dataset) and all(
                isinstance(spec, tf.TensorSpec) for spec in tf.nest.flatten(dataset.element_spec)
            ):
                with self.distribute_strategy.scope():
                    self._symbolic_build(data_batch=dataset.element_spec)
                return None
            if self._distribute_strategy is not None:
                strategy = self._distribute_strategy
                for _, _, batches in iterator:
                    data_batch = tf.nest.map_structure(
                        lambda value: strategy.experimental_local_results(value)[0]
                        if isinstance(value, tf.distribute.DistributedValues)
                        else value,
                        next(batches),
                    )
                    break
                iterator = None
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def train_step(self, data):
        # The name scopes (here, in `_guarded_step` and `_update_metrics`) let a
        # TensorFlow profile attribute each op to its part of the step
        # (benchmarks/step_cost.py's `profile` section); they cost nothing at run time.
        with tf.name_scope(BATCH_CHECKS_SCOPE):
            x, sample_idx, labels = self.unpack_batch(data)
        if not self._jit_step:
            logs, _, _ = self._guarded_step(data, x, sample_idx, labels, raise_nonfinite=True)
            return logs
        # The checks above stay outside XLA; the compiled step reads their checked outputs
        # (`labels`, `sample_idx`), so it runs only once they have passed.
        if self._compiled_step is None:
            self._compiled_step = tf.function(
                self._guarded_step, jit_compile=True, autograph=False
            )
        logs, finite, report = self._compiled_step(
            data, x, sample_idx, labels, raise_nonfinite=False
        )
        if self.on_nonfinite == "raise":
            # XLA compiles an assertion to nothing: the refused step fails here.
            strategy = tf.distribute.get_strategy()
            tf.cond(finite, lambda: None, lambda: raise_nonfinite_error(strategy, report))
        return logs

    def _guarded_step(self, data, x, sample_idx, labels, raise_nonfinite):
        """The step after the batch checks: `(logs, finite, report)`. It applies nothing
        unless the step is `finite`, and fails then if `raise_nonfinite` and the model
        raises."""
        # Batch normalisation writes its moving statistics in the forward pass, before the
        # loss is known: a refused step puts these values back.
        with tf.name_scope(NONFINITE_GUARD_SCOPE):
            layer_state = [tf.identity(v.value) for v in self.forward_pass_state()]
        with tf.GradientTape() as tape:
            terms, outputs = self.compute_losses(x, sample_idx, labels)
            loss = self.optimizer.scale_loss(terms["loss"])
        trainable_weights = self.backbone.trainable_weights
        gradients = tape.gradient(loss, trainable_weights)
        with tf.name_scope(NONFINITE_GUARD_SCOPE):
            finite, report = check_finite(data, x, terms["loss"], gradients, self.optimizer)
        tf.distribute.get_replica_context().merge_call(
            self._apply_or_refuse,
            args=(finite, gradients, sample_idx, outputs, layer_state, report),
            kwargs={"raise_nonfinite": raise_nonfinite},
        )
        if self.on_nonfinite == "raise":
            # A refused step fails: its metrics are never read.
            return self._update_metrics(terms, labels, outputs["logits"]), finite, report
        # Keras sums a metric's replicas when it reads it: one replica counts the step.
        first_replica = tf.equal(tf.distribute.get_replica_context().replica_id_in_sync_group, 0)
        self.skipped_steps.update_state(tf.cast(~finite & first_replica, tf.float32))
        logs = self._update_metrics(terms, labels, outputs["logits"], finite=finite)
        return logs, finite, report

    def _apply_or_refuse(
        self, strategy, finite, gradients, sample_idx, outputs, layer_state, report,
        raise_nonfinite=True,
    ):
        """Applies the step on every replica if `finite`, else restores the layers' state
        and raises (when the model raises and `raise_nonfinite`) or skips. Runs in
        cross-replica context: a `tf.cond` in replica context cannot hold the optimizer's
        `merge_call` (Keras' LossScaleOptimizer decides the same way)."""
        finite = strategy.experimental_local_results(finite)[0]

        def apply():
            strategy.extended.call_for_each_replica(
                self._apply_step, args=(gradients, sample_idx, outputs)
            )

        def refuse():
            restored = restore_values(strategy, self.forward_pass_state(), layer_state)
            if self.on_nonfinite == "raise" and raise_nonfinite:
                with tf.control_dependencies(tf.nest.flatten(restored)):
                    raise_nonfinite_error(strategy, report)

        tf.cond(finite, apply, refuse)

    def _apply_step(self, gradients, sample_idx, outputs):
        self.optimizer.apply_gradients(zip(gradients, self.backbone.trainable_weights))
        self.update_state_after_step(sample_idx, outputs)

    def reset_metrics(self):
        """Zeroes the metrics, Keras' own in one graph call.

        `train_on_batch` resets the metrics before every step; one eager assignment per
        metric variable (a loss tracker per term) then cost more than the step's loss terms
        themselves. Metrics of other libraries reset themselves, in case their
        `reset_state` does more than assign.
        """
        metrics = [m for m in self.metrics if _resets_in_graph(m)]
        for metric in self.metrics:
            if metric not in metrics:
                metric.reset_state()
        if self.run_eagerly or self.distribute_strategy.num_replicas_in_sync > 1:
            for metric in metrics:
                metric.reset_state()
            return
        # Compiled metrics create their variables at their first update: trace again then.
        key = tuple(id(v) for m in metrics for v in m.variables)
        if self._metric_reset is None or self._metric_reset[0] != key:

            def reset():
                for metric in metrics:
                    metric.reset_state()

            self._metric_reset = (key, tf.function(reset, autograph=False))
        self._metric_reset[1]()

    def test_step(self, data):
        x, _, labels = self.unpack_batch(data)
        logits = self(x, training=False)
        supervised = self.supervised_loss(labels, logits)
        return self._update_metrics(
            {"loss": supervised, "supervised_loss": supervised}, labels, logits
        )

    def _update_metrics(self, terms, labels, logits, finite=None):
        """Tracks the loss terms and the compiled metrics (on labeled rows); returns logs.

        A skipping model's step that was not `finite` adds nothing to them.
        """
        with tf.name_scope(METRICS_SCOPE):
            weight = None if finite is None else tf.cast(finite, tf.float32)
            logs = {}
            for name, value in terms.items():
                if name in self.loss_terms:
                    # Each replica holds its share of the global mean: the sum is the
                    # global value.
                    value = global_sum(value)
                if finite is not None:
                    value = tf.where(finite, value, tf.zeros_like(value))
                self.loss_trackers[name].update_state(value, sample_weight=weight)
                logs[name] = self.loss_trackers[name].result()
            targets, predictions, labeled = self.metric_inputs(labels, logits)
            if finite is not None:
                logs[self.skipped_steps.name] = self.skipped_steps.result()
                labeled *= weight
                predictions = tf.where(finite, predictions, tf.zeros_like(predictions))
            compiled = self.compute_metrics(None, targets, predictions, sample_weight=labeled)
            # Keras' own (unused) "loss" tracker is in `compiled` too: ours wins. Terms this
            # step did not compute (evaluation has no consistency term) are left out.
            compiled = {
                k: v
                for k, v in compiled.items()
                if k not in self.loss_trackers and k != self.skipped_steps.name
            }
            return distributable_logs({**compiled, **logs})


def _resets_in_graph(metric):
    """Whether `metric` is Keras' or tfssl's, whose `reset_state` only assigns variables."""
    return type(metric).__module__.split(".")[0] in ("keras", "tfssl")
