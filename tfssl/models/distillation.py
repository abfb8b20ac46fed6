"""Knowledge distillation, offline (a frozen teacher) and mutual (students teaching each other).

Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network", arXiv 1503.02531, and
Zhang, Xiang, Hospedales & Lu, "Deep Mutual Learning", CVPR 2018, arXiv 1706.00384. Seed 004
reads distillation as a learned label smoothing (the teacher's softened predictions are the
soft labels) and writes its loss as the student's cross-entropy on the labels at T = 1 plus
the cross-entropy to the teacher's softmax at a high temperature T, the two weighted; seed 003
(a survey of distillation) writes the soft term as a KL between the softened predictions.
Both seeds are prose and formulas, without code.
"""

import keras
import tensorflow as tf

from tfssl import losses as losses_lib
from tfssl.models._checks import check_same_outputs, resolve_num_classes
from tfssl.models._supervised import MULTILABEL_OBJECTIVES
from tfssl.models._replicas import global_mean
from tfssl.models.base import SemiSupervisedModel

__all__ = ["Distiller", "MutualLearning"]


def _check_temperature(temperature):
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise ValueError(
            f"`temperature` must be a number > 0. Received: temperature={temperature!r}"
        )
    if temperature <= 0:
        raise ValueError(f"`temperature` must be > 0. Received: temperature={temperature}")
    return float(temperature)


@keras.saving.register_keras_serializable(package="tfssl")
class Distiller(SemiSupervisedModel):
    """Offline knowledge distillation: a student learns from labels and a frozen teacher.

    The teacher (already trained) runs in inference mode (`training=False`: no dropout,
    batch-norm moving statistics) and is never updated: `teacher.trainable` is set to
    `False` and no gradient reaches it. A step computes, with `T = temperature`:

    1. `z_s = student(x, training=True)`, `z_t = teacher(x, training=False)`.
    2. `supervised = CE(y, z_s)` on the labeled rows (`supervised_normalize`,
       `label_smoothing` as in every tfssl model).
    3. `soft = T^2 * KL(softmax(z_t / T) || softmax(z_s / T))` on every row.
    4. `loss = alpha * supervised + (1 - alpha) * soft`.

    Rows labeled `-1` add only the soft term: a teacher trained on the few labels teaches
    the student through the unlabeled rows. The `T^2` factor keeps the soft term's gradient
    on the scale of the hard term's as `T` changes (Hinton et al., section 2).

    Seed 004 writes the soft term as the cross-entropy to the teacher's softened
    distribution, seed 003 as a KL; they differ by the teacher's entropy, a constant for
    the student, so the gradients are the same. The KL is used here: its value is 0 when
    the student matches the teacher.

    Why not `keras.distillation.Distiller` (measured on Keras 3.15.1): its `compute_loss`
    applies the student loss to every row, so unlabeled rows (`-1`) cannot be masked; its
    `LogitsDistillation` with the default `loss="kl_divergence"` resolves the string to a
    plain function and applies it to the scaled logits without softmax and without `T^2`;
    with `loss=keras.losses.KLDivergence()` the formula is right (with probabilities
    clipped to `epsilon`) but averaged over each replica's batch, not the global one. The
    tests check that this class equals that corrected Keras loss on a batch. Building on
    `SemiSupervisedModel` instead gives the `{"x", "idx"}` batches, the masks, the global
    normalisation and the export of the other tfssl models.

    Example:

    ```python
    teacher = ...  # a backbone trained on the labeled rows
    student = tfssl.backbones.mlp((28, 28, 1), 10)
    model = tfssl.models.Distiller(student, teacher, temperature=3.0, alpha=0.1)
    model.compile(optimizer="adam", metrics=["accuracy"])
    model.fit(tfssl.data.make_dataset(x, y_semi, 100, shuffle=True), epochs=10)
    ```

    Args:
        student: `keras.Model` mapping inputs to logits, the model being trained (also
            `model.backbone`).
        teacher: Trained `keras.Model` with the student's inputs and output shape.
        temperature: Softmax temperature `T > 0` of the soft term. Defaults to `3.0`.
        alpha: Weight of the supervised term, in `[0, 1]`; the soft term gets
            `1 - alpha`. Defaults to `0.1`.
        num_samples: Number of training rows; optional, to check `idx`.
        num_classes: Number of classes. Defaults to the student's output size.
        **kwargs: `supervised_normalize`, `label_smoothing` of `SemiSupervisedModel`, and
            `keras.Model` arguments. (The ramp-up arguments are accepted and unused.)

    Raises:
        ValueError: If `temperature <= 0`, `alpha` is outside `[0, 1]`, the teacher is
            not a `keras.Model` or its output shape differs from the student's.

    Formula:

    ```python
    q, p = softmax(z_t / T), softmax(z_s / T)
    loss = alpha * masked_ce(y, z_s) + (1 - alpha) * T**2 * mean(sum(q * log(q / p), -1))
    ```

    References:
        Hinton, Vinyals & Dean, Distilling the Knowledge in a Neural Network,
        arXiv 1503.02531.
    """

    loss_terms = ("loss", "supervised_loss", "distillation_loss")
    schedule_terms = ()

    def __init__(
        self,
        student,
        teacher,
        temperature=3.0,
        alpha=0.1,
        num_samples=None,
        num_classes=None,
        **kwargs,
    ):
        if not isinstance(student, keras.Model):
            raise ValueError(f"`student` must be a keras.Model. Received: student={student!r}")
        super().__init__(student, num_samples, num_classes, **kwargs)
        if not isinstance(teacher, keras.Model):
            raise ValueError(f"`teacher` must be a keras.Model. Received: teacher={teacher!r}")
        check_same_outputs("student", student, "teacher", teacher)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
            raise ValueError(f"`alpha` must be a number in [0, 1]. Received: alpha={alpha!r}")
        self.temperature = _check_temperature(temperature)
        self.alpha = float(alpha)
        self.teacher = teacher
        self.teacher.trainable = False

    @property
    def student(self):
        """The model being trained (`model.backbone`)."""
        return self.backbone

    def compute_losses(self, x, sample_idx, labels):
        logits = self.backbone(x, training=True)
        teacher_logits = tf.stop_gradient(self.teacher(x, training=False))
        if teacher_logits.shape[-1] != logits.shape[-1]:
            raise ValueError(
                "The student and the teacher must output logits of the same shape. Received: "
                f"student {logits.shape}, teacher {teacher_logits.shape}"
            )
        supervised = self.supervised_loss(labels, logits)
        soft = global_mean(
            losses_lib.distillation_loss(
                teacher_logits, logits, self.temperature, reduction="none"
            )
        )
        terms = {
            "loss": self.alpha * supervised + (1.0 - self.alpha) * soft,
            "supervised_loss": supervised,
            "distillation_loss": soft,
        }
        return terms, {"logits": logits}

    def serving_model(self, which="default"):
        """The student for `"default"` and `"student"`, the teacher for `"teacher"`."""
        if which in ("default", "student"):
            return self.backbone
        if which == "teacher":
            return self.teacher
        raise ValueError(
            f"`which` must be 'default', 'student' or 'teacher'. Received: which={which!r}"
        )

    def get_config(self):
        config = super().get_config()
        config["student"] = config.pop("backbone")
        config.update(
            {
                "teacher": keras.saving.serialize_keras_object(self.teacher),
                "temperature": self.temperature,
                "alpha": self.alpha,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for name in ("student", "teacher"):
            config[name] = keras.saving.deserialize_keras_object(config[name])
        return cls(**config)


@keras.saving.register_keras_serializable(package="tfssl")
class _Cohort(keras.Model):
    """The students of `MutualLearning` as one model (their mean logits), so that the
    weights the base class trains, `backbone.trainable_weights`, are all the students'."""

    def __init__(self, members, **kwargs):
        super().__init__(**kwargs)
        self.members = list(members)
        self.built = all(member.built for member in self.members)

    def call(self, inputs, training=False):
        return tf.add_n([m(inputs, training=training) for m in self.members]) / len(self.members)

    def get_config(self):
        config = super().get_config()
        config["members"] = [keras.saving.serialize_keras_object(m) for m in self.members]
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["members"] = [keras.saving.deserialize_keras_object(m) for m in config["members"]]
        return cls(**config)


@keras.saving.register_keras_serializable(package="tfssl")
class MutualLearning(SemiSupervisedModel):
    """Deep mutual learning: two or more students, each taught by the labels and the others.

    The `K >= 2` students are trained together from scratch. Student `k` minimises its own
    cross-entropy on the labeled rows plus the mean KL from each other student's softened
    prediction to its own, on every row; the others' predictions are fixed targets for it
    (no gradient flows into them through student `k`'s term). The step minimises the sum of
    the students' losses, which gives every student exactly the gradient of its own:

    ```python
    L_k = CE(y, z_k) + 1 / (K - 1) * sum(T^2 * KL(softmax(z_l / T) || softmax(z_k / T))
                                         for l != k)   # z_l held fixed
    loss = sum(L_k for k in range(K))
    ```

    The paper trains on labeled data only; here unlabeled rows (`-1`) add only the KL
    terms, so the students also teach each other through them. With `temperature=1` (the
    paper's) the KL is on the plain softmax; `T^2` keeps gradients comparable for other
    temperatures, as in `Distiller`.

    `model.students` are the students; `model.backbone` holds them all (its output is their
    mean logits, the `"ensemble"`). `predict`, `evaluate` and the export serve student 0;
    `serving_model(i)` serves student `i` and `serving_model("ensemble")` the mean logits.
    `fit` reports the sums over the students of `supervised_loss` and `mutual_loss`, and the
    compiled metrics of student 0.

    Example:

    ```python
    students = [tfssl.backbones.mlp((28, 28, 1), 10, name=name) for name in ("a", "b")]
    model = tfssl.models.MutualLearning(students, temperature=1.0)
    model.compile(optimizer="adam", metrics=["accuracy"])
    model.fit(tfssl.data.make_dataset(x, y_semi, 100, shuffle=True), epochs=10)
    tfssl.export.export_saved_model(model, "saved_models/dml", which=1)
    ```

    Args:
        models: A list of two or more `keras.Model`s with the same inputs, each mapping
            them to logits of the same shape.
        temperature: Softmax temperature `T > 0` of the KL terms. Defaults to `1.0`.
        num_samples: Number of training rows; optional, to check `idx`.
        num_classes: Number of classes. Defaults to the students' output size.
        **kwargs: `supervised_normalize`, `label_smoothing` of `SemiSupervisedModel`, and
            `keras.Model` arguments. (The ramp-up arguments are accepted and unused.)

    Raises:
        ValueError: If fewer than two models are given, one is not a `keras.Model`, their
            output shapes differ, or `temperature <= 0`.

    References:
        Zhang, Xiang, Hospedales & Lu, Deep Mutual Learning, arXiv 1706.00384.
    """

    loss_terms = ("loss", "supervised_loss", "mutual_loss")
    schedule_terms = ()

    def __init__(self, models, temperature=1.0, num_samples=None, num_classes=None, **kwargs):
        models = list(models) if isinstance(models, (list, tuple)) else [models]
        if len(models) < 2:
            raise ValueError(
                "`models` must hold at least two students for mutual learning. "
                f"Received: {len(models)} model(s)"
            )
        for i, model in enumerate(models):
            if not isinstance(model, keras.Model):
                raise ValueError(f"`models[{i}]` must be a keras.Model. Received: {model!r}")
            if i:
                check_same_outputs("students[0]", models[0], f"students[{i}]", model)
        num_classes = resolve_num_classes(
            models[0], num_classes,
            sigmoid=kwargs.get("supervised_objective") in MULTILABEL_OBJECTIVES,
        )
        super().__init__(_Cohort(models, name="cohort"), num_samples, num_classes, **kwargs)
        self.temperature = _check_temperature(temperature)

    @property
    def students(self):
        """The list of students."""
        return self.backbone.members

    def mutual_terms(self, logits):
        """Each student's KL term, with the other students' predictions held fixed.

        Args:
            logits: A list of the students' logits on the same batch.

        Returns:
            A list with, for each student `k`, this replica's share of the global-batch mean
            of `1 / (K - 1) * sum_{l != k} T^2 KL(softmax(z_l / T) || softmax(z_k / T))`.
        """
        targets = [tf.stop_gradient(z) for z in logits]
        terms = []
        for k, student_logits in enumerate(logits):
            per_sample = tf.add_n(
                [
                    losses_lib.distillation_loss(
                        target, student_logits, self.temperature, reduction="none"
                    )
                    for l, target in enumerate(targets)
                    if l != k
                ]
            ) / (len(logits) - 1)
            terms.append(global_mean(per_sample))
        return terms

    def compute_losses(self, x, sample_idx, labels):
        logits = [student(x, training=True) for student in self.students]
        supervised = tf.add_n([self.supervised_loss(labels, z) for z in logits])
        mutual = tf.add_n(self.mutual_terms(logits))
        terms = {"loss": supervised + mutual, "supervised_loss": supervised, "mutual_loss": mutual}
        return terms, {"logits": logits[0]}

    def serving_model(self, which="default"):
        """Student `which` (an index), student 0 for `"default"`, the mean logits for
        `"ensemble"`."""
        if which == "default":
            return self.students[0]
        if which == "ensemble":
            return self.backbone
        if isinstance(which, int) and not isinstance(which, bool):
            if 0 <= which < len(self.students):
                return self.students[which]
        raise ValueError(
            f"`which` must be 'default', 'ensemble' or a student index in "
            f"[0, {len(self.students)}). Received: which={which!r}"
        )

    def get_config(self):
        config = super().get_config()
        cohort = config.pop("backbone")
        config["models"] = cohort["config"]["members"]
        config["temperature"] = self.temperature
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["models"] = [keras.saving.deserialize_keras_object(m) for m in config["models"]]
        return cls(**config)
