"""The registry of methods: one `Method` entry in `METHODS` per method of every experiment.

The benchmark (`estimators/benchmark.py`), the sweep (`estimators/sweep.py`), the robustness
records and the per-method scripts (`estimators/<method>.py`, which build
`METHODS[name].model` with their own flags) all read it. An entry holds the constructor
(`model`, and `build`, which the benchmark calls), the benchmark's hyper-parameters (`hyper`,
`per_protocol`), the batch layout (`data`) and its paper.

How to add a method (FlexMatch, say, once `tfssl.models.FlexMatch` exists):

1. One entry in `METHODS`:

   ```python
   "flexmatch": Method(
       label="FlexMatch",
       model=models.FlexMatch,
       build=lambda backbone, protocol, hyper: models.FlexMatch(
           backbone, threshold=hyper["threshold"], lambda_u=hyper["lambda_u"],
           supervised_normalize=protocol.supervised_normalize,
       ),
       hyper={"threshold": 0.95, "lambda_u": 1.0},
       reference="Bowen Zhang et al. FlexMatch: Boosting Semi-Supervised Learning with "
       "Curriculum Pseudo Labeling. NeurIPS 2021. arXiv:2110.08263",
       cost=6.0,
       default=False,
       compare_with="fixmatch",
   ),
   ```

   Its row then appears in every protocol's table, in the speed section and in `--methods`;
   `python estimators/benchmark.py --methods flexmatch` runs only its missing runs (those of
   supervised-only and the ceiling already in `results.json` are reused) and rewrites the
   report; `python estimators/sweep.py --grid NAME` sweeps it once a grid of `sweep.GRIDS`
   names it. The model is compiled with `Adam(protocol.learning_rate)` and trained with `fit`
   on the protocol's semi-supervised batches `({"x", "idx"}, y)` (`training.fit_model`); it
   is evaluated through `model.predict` (a tfssl model predicts with its serving network).
2. Optionally a script `estimators/flexmatch.py`, a copy of `estimators/fixmatch.py` with its
   own flags, and its line in `tests/test_scripts.py`'s `SCRIPTS`.

Fields:

- `model`: the `tfssl.models` class the entry trains (`None`: the bare backbone, or a method
  of several stages whose `train` hook builds its models).
- `hyper`: the hyper-parameters of every protocol; `per_protocol[name]` overrides some of
  them for one protocol (the settings chosen by the sweep). A hyper-parameter named like a
  `Protocol` batch field (`labeled_per_batch`) overrides the protocol's batches for this
  method. The values a run used are stored in its record: a run whose settings changed is
  run again, and the report shows only runs of the current settings.
- `cost`: the method's run time ÷ a supervised run's on the same budget, used to plan a run
  before one has been measured (measured runs in `results.json` are used when present).
  Measured at commit 1122198 (CPU seconds per epoch after the first, clean-1000, mlp):
  supervised 3.1, Π-model 5.3, Temporal Ensembling 3.3, Mean Teacher 4.65.
- `default`: whether the run without `--methods` includes it. The methods that joined after
  the five-seed run of the consistency methods are `False` until their own five-seed runs
  fit the budget (`--methods vat ...` runs them; the dry run prints their cost).
- `data`: `"semi"` (the default: labeled and unlabeled batches), `"labeled"` (batches of
  labeled rows only, as supervised-only) or `"all_labels"` (the ceiling: every training row
  with its true label). An entry without `build` trains the bare backbone with Keras'
  cross-entropy (smoothed by a `label_smoothing` hyper-parameter, as "supervised_ls"); a
  `"labeled"` entry with a `build` (adversarial training) trains its model on
  supervised-only's batches.
- `compare_with`: another entry this one is also paired with seed by seed, below the table
  (a method next to the one it modifies or claims to beat: Mean Teacher for Mean Teacher +
  label smoothing and for FixMatch).
- `train`: for a method of several stages (a teacher, then a student; self-training's
  rounds), a function `train(protocol, hyper, rows, seed, build_backbone)` that replaces
  the runner's single fit. `rows` are the protocol's data for the seed
  (`protocols.load`) and `build_backbone()` returns a fresh backbone. It returns
  `{"accuracy": test accuracy of the final model, "steps": optimizer steps of all stages,
  ...}` and may add JSON values that the record keeps (e.g. the teacher's accuracy). It
  trains its stages with `training.fit_model` (one fit, as any entry: a stage that equals the
  supervised-only run, same seed, gives the same model) and scores them with
  `training.test_accuracy`. Such entries are not in the speed section (no single step to
  time). Example, a teacher then a student:

  ```python
  def train(protocol, hyper, rows, seed, build_backbone):
      supervised = METHODS["supervised"]
      teacher, teacher_steps = training.fit_model(
          supervised, supervised.hyper_for(protocol.name), protocol, rows, seed,
          build_backbone)
      student = Method(label="student", build=lambda backbone, protocol, hyper:
                       models.Distiller(backbone, teacher, hyper["temperature"]))
      model, steps = training.fit_model(student, hyper, protocol, rows, seed, build_backbone)
      return {"accuracy": training.test_accuracy(model, rows),
              "steps": teacher_steps + steps,
              "teacher_accuracy": training.test_accuracy(teacher, rows)}
  ```
"""

import dataclasses
import math

import keras

import tfssl
from benchmarking import training
from tfssl import layers, models
from tfssl.models import policies

__all__ = ["METHODS", "Method", "consistency_kwargs", "default_methods"]


@dataclasses.dataclass(frozen=True)
class Method:
    """One row of the benchmark's tables (see the module docstring)."""

    label: str
    build: object = None
    model: object = None
    hyper: dict = dataclasses.field(default_factory=dict)
    per_protocol: dict = dataclasses.field(default_factory=dict)
    reference: str | None = None
    cost: float = 1.0
    data: str = "semi"
    default: bool = True
    compare_with: str | None = None
    train: object = None

    def hyper_for(self, protocol_name):
        """The hyper-parameters of this method under the protocol named `protocol_name`."""
        return {**self.hyper, **self.per_protocol.get(protocol_name, {})}


def consistency_kwargs(protocol, hyper):
    """The `tfssl.models.SemiSupervisedModel` arguments every consistency method shares.

    No seed factor num_labeled / train rows (`num_labeled=None`): it balances the two terms
    when the cross-entropy is divided by the whole batch of rows drawn alike, not with
    half-labeled batches and the labeled rows' mean.
    """
    return {
        "num_labeled": None,
        "max_unsupervised_weight": hyper["max_unsupervised_weight"],
        "ramp_up_epochs": hyper["ramp_up_epochs"],
        "supervised_normalize": protocol.supervised_normalize,
    }


_VAT_PAPER = (
    "Takeru Miyato, Shin-ichi Maeda, Masanori Koyama, Shin Ishii. Virtual Adversarial "
    "Training: A Regularization Method for Supervised and Semi-Supervised Learning. IEEE "
    "TPAMI 2018. arXiv:1704.03976"
)
def _vat_method(label, entropy_minimization):
    """The registry entry of VAT, with or without the entropy term (VAT + EntMin)."""
    return Method(
        label=label,
        model=models.VAT,
        build=lambda backbone, protocol, hyper: models.VAT(
            backbone, epsilon=hyper["epsilon"], xi=hyper["xi"],
            entropy_minimization=entropy_minimization,
            supervised_normalize=protocol.supervised_normalize,
        ),
        hyper={"epsilon": 5.0, "xi": 1e-6},
        reference=_VAT_PAPER,
        cost=3.0,
        default=False,
    )


def _supervised_stage(protocol, rows, seed, build_backbone):
    """The supervised-only entry's training, as the first stage of a method: the same
    call with the same seed gives the same model as the "supervised" row."""
    supervised = METHODS["supervised"]
    return training.fit_model(
        supervised, supervised.hyper_for(protocol.name), protocol, rows, seed, build_backbone
    )


class _StopAfterSteps(keras.callbacks.Callback):
    """Stops `fit` once the optimizer has taken `steps` steps, and keeps the count."""

    def __init__(self, steps):
        super().__init__()
        self.steps = steps
        self.taken = []

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations) >= self.steps:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        self.taken.append(int(self.model.optimizer.iterations))


def _train_self_training(protocol, hyper, rows, seed, build_backbone):
    """`tfssl.self_training` on the protocol's rows: `rounds` fits plus the final one
    share the protocol's optimizer steps (each fit gets `steps / (rounds + 1)`, rounded to
    whole `steps_per_execution`), in batches of `batch_size` labeled and pseudo-labeled
    rows; the pool is the unlabeled rows."""
    fits = hyper["rounds"] + 1
    execution = protocol.steps_per_execution
    steps_per_fit = max(1, round(protocol.steps / fits / execution)) * execution
    stopper = _StopAfterSteps(steps_per_fit)

    def build_model():
        model = build_backbone()
        model.compile(
            optimizer=keras.optimizers.Adam(protocol.learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            steps_per_execution=execution,
            run_eagerly=protocol.run_eagerly,
        )
        return model

    keras.utils.set_random_seed(seed)
    model, records = tfssl.self_training(
        build_model, rows["x"], rows["y_semi"], rounds=hyper["rounds"],
        threshold=hyper["threshold"], per_class_top_k=hyper.get("per_class_top_k"),
        # The training rows' true labels only score the pseudo-labels in the record.
        y_pool_true=rows["y"],
        fit_kwargs={"epochs": steps_per_fit, "batch_size": protocol.batch_size,
                    "callbacks": [stopper], "verbose": 0},
    )
    return {
        "accuracy": training.test_accuracy(model, rows),
        "steps": sum(stopper.taken),
        "rounds": [
            {"num_added": r["num_added"], "num_pseudo_labeled": r["num_pseudo_labeled"],
             "pseudo_label_accuracy": _finite_or_none(r["accuracy"]),
             "cumulative_accuracy": _finite_or_none(r["cumulative_accuracy"])}
            for r in records
        ],
    }


def _finite_or_none(value):
    # A round that adds no row has a NaN accuracy; JSON has no NaN.
    return None if value is None or math.isnan(value) else value


def _train_distiller(protocol, hyper, rows, seed, build_backbone):
    """The teacher is the supervised-only model (the "supervised" row of the seed); a
    fresh student then learns from the labels and, on every row, from the teacher."""
    teacher, teacher_steps = _supervised_stage(protocol, rows, seed, build_backbone)
    student = Method(
        label="Distiller's student",
        build=lambda backbone, protocol, hyper: models.Distiller(
            backbone, teacher, temperature=hyper["temperature"], alpha=hyper["alpha"],
            supervised_normalize=protocol.supervised_normalize,
        ),
    )
    model, steps = training.fit_model(student, hyper, protocol, rows, seed, build_backbone)
    return {
        "accuracy": training.test_accuracy(model, rows),
        "steps": teacher_steps + steps,
        "teacher_accuracy": training.test_accuracy(teacher, rows),
    }


def _train_reloop(protocol, hyper, rows, seed, build_backbone):
    """The previous version is the supervised-only model (the "supervised" row of the
    seed); the next version trains as that one did (same init, labeled batches, steps)
    plus ReLoop's self-correction term against it, so their difference is that term's."""
    previous, previous_steps = _supervised_stage(protocol, rows, seed, build_backbone)
    next_version = Method(
        label="ReLoop's next version",
        build=lambda backbone, protocol, hyper: models.ReLoop(
            backbone, previous_model=previous, weight=hyper["weight"],
            supervised_normalize=protocol.supervised_normalize,
        ),
        data="labeled",
    )
    model, steps = training.fit_model(next_version, hyper, protocol, rows, seed, build_backbone)
    return {
        "accuracy": training.test_accuracy(model, rows),
        "steps": previous_steps + steps,
        "previous_accuracy": training.test_accuracy(previous, rows),
    }


_TE_PAPER = (
    "Samuli Laine, Timo Aila. Temporal Ensembling for Semi-Supervised Learning. ICLR 2017. "
    "arXiv:1610.02242"
)
# w_max 30 with a 5-epoch sigmoid ramp: the earlier benchmark's settings for 15 epochs.
_CONSISTENCY = {"max_unsupervised_weight": 30.0, "ramp_up_epochs": 5}
# The short sweep (`estimators/sweep.py`, 1,440 steps) preferred w_max 10 for Mean Teacher on
# both seeds; on the main protocol's budget (`rows_sweep.py mean_teacher --main-budget`) 30 was
# better on the validation rows of both seeds (0.8280 / 0.8386 against 0.8264 / 0.8350), and
# 30 stays for every consistency method.

METHODS = {
    "supervised": Method(label="Supervised only", data="labeled"),
    "pi_model": Method(
        label="Π-model",
        model=models.PiModel,
        build=lambda backbone, protocol, hyper: models.PiModel(
            backbone, **consistency_kwargs(protocol, hyper)
        ),
        hyper=dict(_CONSISTENCY),
        reference=_TE_PAPER,
        cost=1.7,
    ),
    "temporal_ensembling": Method(
        label="Temporal Ensembling",
        model=models.TemporalEnsembling,
        build=lambda backbone, protocol, hyper: models.TemporalEnsembling(
            backbone, num_samples=protocol.train_size, alpha=hyper["alpha"],
            target=hyper["target"], **consistency_kwargs(protocol, hyper),
        ),
        hyper={**_CONSISTENCY, "alpha": 0.6, "target": "seed"},
        reference=_TE_PAPER,
        cost=1.1,
    ),
    "mean_teacher": Method(
        label="Mean Teacher",
        model=models.MeanTeacher,
        # EMA decay 0.99 throughout: 0.999 would average over ~1000 of the 5700 steps.
        build=lambda backbone, protocol, hyper: models.MeanTeacher(
            backbone, ema_decay=hyper["ema_decay"], rampup_ema_decay=hyper["rampup_ema_decay"],
            **consistency_kwargs(protocol, hyper),
        ),
        hyper={**_CONSISTENCY, "ema_decay": 0.99, "rampup_ema_decay": 0.99},
        reference="Antti Tarvainen, Harri Valpola. Mean teachers are better role models: "
        "Weight-averaged consistency targets improve semi-supervised deep learning results. "
        "NeurIPS 2017. arXiv:1703.01780",
        cost=1.5,
    ),
    # The weight is the paper's fixed alpha = 1; xi is swept in section 2 of the report.
    "vat": _vat_method("VAT", entropy_minimization=False),
    "vat_entmin": _vat_method("VAT + EntMin", entropy_minimization=True),
    "pseudo_label": Method(
        label="Pseudo-Label",
        model=models.PseudoLabel,
        build=lambda backbone, protocol, hyper: models.PseudoLabel(
            backbone, threshold=hyper["threshold"], **consistency_kwargs(protocol, hyper)
        ),
        hyper={"threshold": 0.95, "max_unsupervised_weight": 1.0, "ramp_up_epochs": 5},
        reference="Dong-Hyun Lee. Pseudo-Label: The Simple and Efficient Semi-Supervised "
        "Learning Method for Deep Neural Networks. ICML 2013 Workshop on Challenges in "
        "Representation Learning",
        cost=1.2,
        default=False,
        compare_with="mean_teacher",
    ),
    "fixmatch": Method(
        label="FixMatch",
        model=models.FixMatch,
        build=lambda backbone, protocol, hyper: models.FixMatch(
            backbone, threshold=hyper["threshold"], lambda_u=hyper["lambda_u"]
        ),
        hyper={"threshold": 0.95, "lambda_u": 1.0},
        reference="Kihyuk Sohn et al. FixMatch: Simplifying Semi-Supervised Learning with "
        "Consistency and Confidence. NeurIPS 2020. arXiv:2001.07685",
        cost=6.0,
        default=False,
        # Issue 16: FixMatch should beat Mean Teacher.
        compare_with="mean_teacher",
    ),
    "flexmatch": Method(
        label="FlexMatch",
        model=models.FlexMatch,
        build=lambda backbone, protocol, hyper: models.FlexMatch(
            backbone, num_samples=protocol.train_size, threshold=hyper["threshold"],
            lambda_u=hyper["lambda_u"],
        ),
        hyper={"threshold": 0.95, "lambda_u": 1.0},
        reference="Bowen Zhang et al. FlexMatch: Boosting Semi-Supervised Learning with "
        "Curriculum Pseudo Labeling. NeurIPS 2021. arXiv:2110.08263",
        cost=2.0,
        default=False,
        compare_with="fixmatch",
    ),
    "freematch": Method(
        label="FreeMatch",
        model=models.FreeMatch,
        build=lambda backbone, protocol, hyper: models.FreeMatch(
            backbone, lambda_u=hyper["lambda_u"], fairness_weight=hyper["fairness_weight"]
        ),
        hyper={"lambda_u": 1.0, "fairness_weight": 0.01},
        reference="Yidong Wang et al. FreeMatch: Self-adaptive Thresholding for "
        "Semi-supervised Learning. ICLR 2023. arXiv:2205.07246",
        cost=2.0,
        default=False,
        compare_with="fixmatch",
    ),
    "softmatch": Method(
        label="SoftMatch",
        model=models.SoftMatch,
        build=lambda backbone, protocol, hyper: models.SoftMatch(
            backbone, lambda_u=hyper["lambda_u"]
        ),
        hyper={"lambda_u": 1.0},
        reference="Hao Chen et al. SoftMatch: Addressing the Quantity-Quality Trade-off in "
        "Semi-supervised Learning. ICLR 2023. arXiv:2301.10921",
        cost=2.0,
        default=False,
        compare_with="fixmatch",
    ),
    "adamatch": Method(
        label="AdaMatch",
        model=models.AdaMatch,
        build=lambda backbone, protocol, hyper: models.AdaMatch(
            backbone, threshold=hyper["threshold"], lambda_u=hyper["lambda_u"]
        ),
        hyper={"threshold": 0.9, "lambda_u": 1.0},
        reference="David Berthelot et al. AdaMatch: A Unified Approach to Semi-Supervised "
        "Learning and Domain Adaptation. ICLR 2022. arXiv:2106.04732",
        cost=2.0,
        default=False,
        compare_with="fixmatch",
    ),
    "uda": Method(
        label="UDA",
        model=models.UDA,
        build=lambda backbone, protocol, hyper: models.UDA(
            backbone, threshold=hyper["threshold"], temperature=hyper["temperature"],
            lambda_u=hyper["lambda_u"],
            training_signal_annealing=policies.TrainingSignalAnnealing(
                protocol.steps, hyper["tsa"]
            ),
        ),
        hyper={"threshold": 0.8, "temperature": 0.4, "lambda_u": 1.0, "tsa": "linear"},
        reference="Qizhe Xie et al. Unsupervised Data Augmentation for Consistency Training. "
        "NeurIPS 2020. arXiv:1904.12848",
        cost=2.0,
        default=False,
        compare_with="fixmatch",
    ),
    "mixup": Method(
        label="Mixup (labeled rows)",
        model=models.MixupModel,
        build=lambda backbone, protocol, hyper: models.MixupModel(
            backbone, alpha=hyper["alpha"], at="input",
            supervised_normalize=protocol.supervised_normalize,
        ),
        hyper={"alpha": 0.2},
        reference="Hongyi Zhang, Moustapha Cisse, Yann N. Dauphin, David Lopez-Paz. mixup: "
        "Beyond Empirical Risk Minimization. ICLR 2018. arXiv:1710.09412",
        cost=1.1,
        default=False,
    ),
    # Supervised-only's batches and steps plus an FGM term on the same labeled rows. epsilon
    # 0.5 had the best clean accuracy on validation rows (never the test set) among 0.5, 1,
    # 2, 3 (`robustness.select_epsilon`, seed 0: 0.8270, 0.8192, 0.8168, 0.8168).
    "adversarial": Method(
        label="Adversarial training (FGM)",
        model=models.AdversarialTraining,
        build=lambda backbone, protocol, hyper: models.AdversarialTraining(
            backbone, method="fgm", epsilon=hyper["epsilon"], norm="sample",
            supervised_normalize=protocol.supervised_normalize,
        ),
        hyper={"epsilon": 0.5},
        reference="Ian J. Goodfellow, Jonathon Shlens, Christian Szegedy. Explaining and "
        "Harnessing Adversarial Examples. ICLR 2015. arXiv:1412.6572",
        cost=2.5,
        data="labeled",
        default=False,
    ),
    # lambda_u and the translation were chosen on validation rows, never the test set
    # (`sweep.py --grid mixmatch`: lambda_u 0-75 x translation 2 px / none, one seed,
    # shortened budget): lambda_u 0.3-30 lie within 0.8 point, 1 the best, 75 four points
    # lower; a 2-pixel translation cost this flattening mlp 2-7 points at every lambda_u.
    # T, K, alpha are the paper's; the linear ramp spans a third of the run, as the others'.
    "mixmatch": Method(
        label="MixMatch",
        model=models.MixMatch,
        build=lambda backbone, protocol, hyper: models.MixMatch(
            backbone,
            augment=layers.image_augmentation(
                backbone.inputs[0].shape[1:], max_translation=hyper["max_translation"]
            ),
            K=hyper["K"], T=hyper["T"], alpha=hyper["alpha"], lambda_u=hyper["lambda_u"],
            ramp_up_epochs=hyper["ramp_up_epochs"],
            supervised_normalize=protocol.supervised_normalize,
        ),
        hyper={"lambda_u": 1.0, "max_translation": 0, "K": 2, "T": 0.5, "alpha": 0.75,
               "ramp_up_epochs": 5},
        reference="David Berthelot, Nicholas Carlini, Ian Goodfellow, Nicolas Papernot, Avital "
        "Oliver, Colin Raffel. MixMatch: A Holistic Approach to Semi-Supervised Learning. "
        "NeurIPS 2019. arXiv:1905.02249",
        # CPU seconds of a clean-1000 run (results.json, seeds 0 and 1): 91 against
        # supervised-only's 59 (a step: a guessing pass over 2 x 50 views, no gradient, and a
        # training pass over 150 mixed views, against 100 rows).
        cost=1.6,
        default=False,
    ),
    "self_training": Method(
        label="Self-training (3 rounds)",
        train=_train_self_training,
        hyper={"rounds": 3, "threshold": 0.9},
        reference="Seed 003 (simple self-training); Dong-Hyun Lee. Pseudo-Label: The Simple "
        "and Efficient Semi-Supervised Learning Method for Deep Neural Networks. ICML 2013 "
        "Workshop on Challenges in Representation Learning",
        cost=1.2,
        default=False,
    ),
    "distiller": Method(
        label="Distiller (teacher: supervised-only)",
        model=models.Distiller,
        train=_train_distiller,
        # Chosen on validation rows (`sweep.py --grid rows`, section 2 of BENCHMARKS.md).
        hyper={"temperature": 3.0, "alpha": 0.5},
        reference="Geoffrey Hinton, Oriol Vinyals, Jeff Dean. Distilling the Knowledge in a "
        "Neural Network. 2015. arXiv:1503.02531",
        cost=2.4,
        default=False,
    ),
    "reloop": Method(
        label="ReLoop (previous version: supervised-only)",
        model=models.ReLoop,
        train=_train_reloop,
        hyper={"weight": 0.9},
        reference="Guohao Cai et al. ReLoop: A Self-Correction Continual Learning Loop for "
        "Recommender Systems. SIGIR 2022. arXiv:2204.11165",
        cost=2.3,
        default=False,
    ),
    "supervised_ls": Method(
        label="Supervised only + label smoothing 0.1",
        data="labeled",
        hyper={"label_smoothing": 0.1},
        reference="Christian Szegedy et al. Rethinking the Inception Architecture for "
        "Computer Vision. CVPR 2016. arXiv:1512.00567",
        default=False,
    ),
    "mean_teacher_ls": Method(
        label="Mean Teacher + label smoothing 0.1",
        model=models.MeanTeacher,
        build=lambda backbone, protocol, hyper: models.MeanTeacher(
            backbone, ema_decay=hyper["ema_decay"], rampup_ema_decay=hyper["rampup_ema_decay"],
            label_smoothing=hyper["label_smoothing"], **consistency_kwargs(protocol, hyper),
        ),
        hyper={**_CONSISTENCY, "ema_decay": 0.99, "rampup_ema_decay": 0.99,
               "label_smoothing": 0.1},
        reference="Tarvainen & Valpola 2017 (arXiv:1703.01780) with Szegedy et al. 2016's "
        "label smoothing (arXiv:1512.00567)",
        cost=1.5,
        default=False,
        compare_with="mean_teacher",
    ),
    # Two students of the protocol's backbone (the second a fresh clone); student 0 predicts.
    "mutual_learning": Method(
        label="Deep mutual learning (2 students)",
        model=models.MutualLearning,
        build=lambda backbone, protocol, hyper: models.MutualLearning(
            [backbone, keras.models.clone_model(backbone)], temperature=hyper["temperature"],
            supervised_normalize=protocol.supervised_normalize,
        ),
        hyper={"temperature": 3.0},
        reference="Ying Zhang, Tao Xiang, Timothy M. Hospedales, Huchuan Lu. Deep Mutual "
        "Learning. CVPR 2018. arXiv:1706.00384",
        cost=2.0,
        default=False,
    ),
    "pi_model_gce": Method(
        label="Π-model + GCE",
        model=models.PiModel,
        build=lambda backbone, protocol, hyper: models.PiModel(
            backbone, supervised_objective="gce", **consistency_kwargs(protocol, hyper)
        ),
        hyper={"max_unsupervised_weight": 30.0, "ramp_up_epochs": 5},
        reference="Zhilu Zhang, Mert R. Sabuncu. Generalized Cross Entropy Loss for Training "
        "Deep Neural Networks with Noisy Labels. NeurIPS 2018. arXiv:1805.07836",
        cost=1.7,
        default=False,
        compare_with="pi_model",
    ),
    "pi_model_sce": Method(
        label="Π-model + SCE",
        model=models.PiModel,
        build=lambda backbone, protocol, hyper: models.PiModel(
            backbone, supervised_objective="sce", **consistency_kwargs(protocol, hyper)
        ),
        hyper={"max_unsupervised_weight": 30.0, "ramp_up_epochs": 5},
        reference="Yisen Wang et al. Symmetric Cross Entropy for Robust Learning with Noisy "
        "Labels. ICCV 2019. arXiv:1908.06112",
        cost=1.7,
        default=False,
        compare_with="pi_model",
    ),
    "elr": Method(
        label="ELR",
        model=models.ELR,
        build=lambda backbone, protocol, hyper: models.ELR(
            backbone, num_samples=protocol.train_size, beta=hyper["beta"],
            supervised_normalize=protocol.supervised_normalize,
        ),
        hyper={"beta": 0.7},
        reference="Sheng Liu et al. Early-Learning Regularization Prevents Memorization of "
        "Noisy Labels. NeurIPS 2020. arXiv:2007.00151",
        cost=1.1,
        default=False,
    ),
    "co_teaching": Method(
        label="Co-teaching",
        model=models.CoTeaching,
        build=lambda backbone, protocol, hyper: models.CoTeaching(
            backbone, forget_rate=protocol.label_noise, gradual_epochs=hyper["gradual_epochs"],
        ),
        hyper={"gradual_epochs": 5},
        reference="Bo Han et al. Co-teaching: Robust Training of Deep Neural Networks with "
        "Extremely Noisy Labels. NeurIPS 2018. arXiv:1804.06872",
        cost=2.0,
        default=False,
    ),
    "divide_mix": Method(
        label="DivideMix",
        model=models.DivideMix,
        build=lambda backbone, protocol, hyper: models.DivideMix(
            backbone, num_samples=protocol.train_size, warmup_epochs=hyper["warmup_epochs"],
            lambda_u=hyper["lambda_u"],
        ),
        hyper={"warmup_epochs": 3, "lambda_u": 25.0},
        reference="Junnan Li, Richard Socher, Steven C.H. Hoi. DivideMix: Learning with Noisy "
        "Labels as Semi-supervised Learning. ICLR 2020. arXiv:2002.07394",
        cost=4.0,
        default=False,
    ),
    "ceiling": Method(label="All labels (ceiling)", data="all_labels"),
}


def default_methods():
    """The methods run without `--methods`: every entry but the ceiling, which is planned
    with each protocol that names one."""
    return tuple(
        name for name, method in METHODS.items() if method.data != "all_labels" and method.default
    )
