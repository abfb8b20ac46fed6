"""Mean Teacher.

Tarvainen & Valpola, "Mean teachers are better role models: Weight-averaged consistency targets
improve semi-supervised deep learning results", NeurIPS 2017, arXiv 1703.01780 (seeds 000 and
001: the teacher's weights are the EMA of the student's, decay 0.99 during the ramp-up and 0.999
after; an MSE between the teacher's and the student's predictions on their own noisy passes).
"""

import keras
import tensorflow as tf

from tfssl import schedules
from tfssl.models._checks import check_choice
from tfssl.models._replicas import global_consistency
from tfssl.models.base import SemiSupervisedModel

__all__ = ["MeanTeacher"]


@keras.saving.register_keras_serializable(package="tfssl")
class MeanTeacher(SemiSupervisedModel):
    """Mean Teacher: consistency with a teacher whose weights average the student's.

    `model.backbone` is the student, trained by gradient descent; `model.teacher` is a copy
    of it whose weights follow, after every optimizer step,
    `teacher <- d * teacher + (1 - d) * student` for every weight, the non-trainable ones
    (batch-norm moving statistics) included. `d` is `rampup_ema_decay` while
    `epoch < ema_rampup_epochs` and `ema_decay` after (seed 001, the paper's TF1 code, where
    it is the ramp-up of the unsupervised weight). A step:

    1. The student and the teacher each see their own noisy pass of the batch
       (`training=True`: augmentation, noise and dropout differ).
    2. `loss = masked CE(y, student) + w(epoch) * MSE(softmax(student), softmax(teacher))`;
       the teacher's output is a fixed target (no gradient reaches the teacher).
    3. The optimizer updates the student, then the teacher takes its EMA step.

    Batch normalization in the teacher's pass (`teacher_batch_norm`):

    - `"batch"` (the default, the authors' code): the teacher's noisy pass normalises with the
      batch's own statistics, as the student's does, and that pass updates the teacher's
      moving statistics (with the layer's `momentum`); the EMA step averages only the
      student's trainable weights. In the authors' PyTorch code the teacher is in `train()`
      mode and `update_ema_variables` averages `model.parameters()`, which excludes the
      batch-norm buffers, so the teacher's running statistics come from its own forward
      passes only; in their TF code (`weight_norm.py`, mean-only batch norm) the teacher's
      tower subtracts the batch mean in training and keeps its own `eval_mean`, updated from
      that batch mean, while `ema_variable_scope` averages only the trainable variables.
      Keras runs a `BatchNormalization` whose `trainable` is False in inference mode whatever
      `training` says, so the teacher's batch-norm layers are kept trainable and their
      variables are marked not trainable: no optimizer and no `trainable_weights` list sees
      them. Batch-norm layers inside custom layers that are not reached through nested
      `layers` lists are not changed.
    - `"moving"`: the teacher's batch-norm layers use their moving statistics in the noisy
      pass too, and the EMA step averages every weight, the moving statistics included (the
      teacher's statistics are the EMA of the student's).

    Under `MirroredStrategy` a `BatchNormalization` computes its batch statistics on each
    replica's share of the batch unless it is built with `synchronized=True`, in the student
    and in the teacher alike. With `synchronized=True` every replica keeps the same copy of
    every weight and a run on two replicas equals one device, in both modes. Without it,
    Keras writes each replica's moving statistics from that replica's share without
    aggregating them, so those copies differ between replicas (the student's, and the
    teacher's in both modes), while the trainable weights, the teacher's included, stay
    identical.

    `predict`, `evaluate` and `tfssl.export.export_saved_model` use the teacher (usually the
    better model); `serving_model("student")` gives the student.

    Example:

    ```python
    model = tfssl.models.MeanTeacher(backbone, max_unsupervised_weight=100.0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), metrics=["accuracy"])
    model.fit(tfssl.data.make_dataset(x, y_semi, 100, shuffle=True, labeled_per_batch=31))
    ```

    Args:
        backbone: `keras.Model` mapping inputs to logits (the student). It must be
            clonable with `keras.models.clone_model`.
        num_samples: Number of training rows. Optional: when given, batch indices are
            checked against it (and `num_labeled` may set the seed's weight factor).
        num_classes: Number of classes. Defaults to the backbone's output size.
        ema_decay: Teacher decay after the ramp-up. Defaults to `0.999`.
        rampup_ema_decay: Teacher decay during the ramp-up. Defaults to `0.99`.
        ema_rampup_epochs: Epochs of `rampup_ema_decay`. Defaults to `None`: the weight
            schedule's `ramp_up_epochs` (80 by default, the seed's single ramp-up), 0 for
            a schedule without one.
        ema_warmup: Cap the decay at `1 - 1 / (step + 1)`, as the authors' PyTorch code
            does: the teacher is then the plain average of the student's weights so far
            until that bound passes the decay, instead of keeping `0.99^step` of its random
            initial weights (with 0.99, 37% after 100 steps). Seed 001 and the TF1 code
            have no such cap, hence `False` by default; short runs want `True`.
        consistency: `"mse"` (the paper's choice) or `"kl"`. Defaults to `"mse"`.
        teacher_batch_norm: `"batch"` (batch statistics in the teacher's training pass, the
            authors' code) or `"moving"` (its moving statistics, the EMA of the student's).
            Only matters for backbones with `BatchNormalization`. Defaults to `"batch"`.
        **kwargs: `num_labeled`, `max_unsupervised_weight`, `ramp_up_method`,
            `ramp_up_epochs`, `supervised_normalize` of `SemiSupervisedModel`, and
            `keras.Model` arguments.

    References:
        Tarvainen & Valpola, Mean teachers are better role models, arXiv 1703.01780.
    """

    loss_terms = ("loss", "supervised_loss", "consistency_loss")
    schedule_terms = ("unsupervised_weight", "ema_decay")

    def __init__(
        self,
        backbone,
        num_samples=None,
        num_classes=None,
        ema_decay=0.999,
        rampup_ema_decay=0.99,
        ema_warmup=False,
        consistency="mse",
        teacher_batch_norm="batch",
        ema_rampup_epochs=None,
        **kwargs,
    ):
        super().__init__(backbone, num_samples, num_classes, **kwargs)
        if ema_rampup_epochs is None:
            ema_rampup_epochs = getattr(self.weight_schedule, "ramp_up_epochs", 0)
        if isinstance(ema_rampup_epochs, bool) or not isinstance(ema_rampup_epochs, int) \
                or ema_rampup_epochs < 0:
            raise ValueError(
                "`ema_rampup_epochs` must be an integer >= 0. "
                f"Received: ema_rampup_epochs={ema_rampup_epochs!r}"
            )
        self.ema_rampup_epochs = ema_rampup_epochs
        for name, value in (("ema_decay", ema_decay), ("rampup_ema_decay", rampup_ema_decay)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"`{name}` must be in [0, 1]. Received: {name}={value}")
        check_choice("consistency", consistency, ("mse", "kl"))
        check_choice("teacher_batch_norm", teacher_batch_norm, ("batch", "moving"))
        self.ema_decay = float(ema_decay)
        self.rampup_ema_decay = float(rampup_ema_decay)
        self.ema_warmup = bool(ema_warmup)
        self.consistency = consistency
        self.teacher_batch_norm = teacher_batch_norm
        self.teacher = keras.models.clone_model(
            backbone, clone_function=_with_other_seed, recursive=True
        )
        self.teacher.set_weights(backbone.get_weights())
        self.teacher.trainable = False
        if teacher_batch_norm == "batch":
            for layer in _batch_norm_layers(self.teacher):
                layer.trainable = True
                for variable in layer.weights:
                    variable.trainable = False

    def current_ema_decay(self, step):
        """The teacher's decay at optimizer step `step` (1 for the first update):
        `rampup_ema_decay` during the ramp-up, then `ema_decay`; with `ema_warmup`, at most
        `1 - 1 / (step + 1)`."""
        decay = schedules.ema_decay(
            self.epoch, self.ema_rampup_epochs, self.rampup_ema_decay, self.ema_decay
        )
        if self.ema_warmup:
            step = tf.cast(step, tf.float32)
            decay = tf.minimum(decay, 1.0 - 1.0 / (step + 1.0))
        return decay

    def compute_losses(self, x, sample_idx, labels):
        logits = self.backbone(x, training=True)
        teacher_logits = tf.stop_gradient(self.teacher(x, training=True))
        supervised = self.supervised_loss(labels, logits)
        consistency = global_consistency(logits, teacher_logits, self.consistency)
        # The decay of the update that follows this step's optimizer step: logged, and
        # read by `update_state_after_step` (computed once).
        decay = self.current_ema_decay(self.optimizer.iterations + 1)
        terms = {**self.combine_losses(supervised, consistency), "ema_decay": decay}
        return terms, {"logits": logits, "ema_decay": decay}

    def forward_pass_state(self):
        """The student's batch-norm statistics and, with `teacher_batch_norm="batch"`, the
        teacher's, which its training pass writes."""
        variables = super().forward_pass_state()
        if self.teacher_batch_norm == "batch":
            variables += [v for layer in _batch_norm_layers(self.teacher) for v in layer.weights]
        return variables

    def update_state_after_step(self, sample_idx, outputs):
        decay = outputs["ema_decay"]
        pairs = list(zip(self.teacher.weights, self.backbone.weights))
        if self.teacher_batch_norm == "batch":
            # The teacher's moving statistics are its own (written by its training pass).
            pairs = [(teacher, student) for teacher, student in pairs if student.trainable]

        # The EMA is written once in cross-replica context, from the (synchronised) student
        # weights, so every replica's teacher copy gets exactly the same values.
        def apply_ema(strategy):
            for teacher_weight, student_weight in pairs:
                strategy.extended.update(
                    teacher_weight.value,
                    # decay * t + (1 - decay) * s, in one read and one write of t.
                    lambda t, s: t.assign_sub((1.0 - decay) * (t - tf.cast(s, t.dtype))),
                    args=(student_weight.value,),
                )

        tf.distribute.get_replica_context().merge_call(apply_ema)

    def serving_model(self, which="default"):
        """The teacher for `"default"` and `"teacher"`, the student for `"student"`."""
        if which in ("default", "teacher"):
            return self.teacher
        if which == "student":
            return self.backbone
        raise ValueError(
            f"`which` must be 'default', 'teacher' or 'student'. Received: which={which!r}"
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "ema_decay": self.ema_decay,
                "rampup_ema_decay": self.rampup_ema_decay,
                "ema_warmup": self.ema_warmup,
                "ema_rampup_epochs": self.ema_rampup_epochs,
                "consistency": self.consistency,
                "teacher_batch_norm": self.teacher_batch_norm,
            }
        )
        return config


def _batch_norm_layers(model):
    """The `BatchNormalization` layers of `model`, nested models included."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            yield layer
        elif hasattr(layer, "layers"):
            yield from _batch_norm_layers(layer)


def _with_other_seed(layer):
    """Clones `layer`; a fixed seed is shifted so the teacher's noise differs from the
    student's (identical dropout masks and noise would make the consistency 0)."""
    config = layer.get_config()
    if isinstance(config.get("seed"), int):
        config["seed"] += 1
    return layer.__class__.from_config(config)
