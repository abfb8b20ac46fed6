"""Plumbing shared by the estimator scripts: flags, data, strategy, fit options, results.

Every script in `estimators/` reads top to bottom (flags parsed in `main`, data, backbone,
model, compile, fit, evaluate, export) and calls these helpers for the steps that are the
same in all of them: the data come from the harness' one loader
(`benchmarking.protocols.load_rows`), the model's class and batch layout from the registry of
methods (`benchmarking.methods.METHODS`), and `fit_and_export` is the shared tail.
The defaults are the protocol of the Temporal Ensembling paper (Laine & Aila, arXiv
1610.02242: batch 100, Adam 0.003, 300 epochs, weight ramp-up over 80; the paper's learning
rate ramp-up/down, `tfssl.schedules.RampUpDown`, is not applied) on Fashion-MNIST with 1000
labels (100 per class). `--train-size`, `--test-size`, `--width` and `--epochs` shrink a run
to a CPU budget.
"""

import argparse
import sys

import keras
import numpy as np
import tensorflow as tf

from benchmarking import protocols
from benchmarking.methods import METHODS
from tfssl import backbones, data, export, models, schedules

__all__ = [
    "IMAGE_SHAPE",
    "NUM_CLASSES",
    "across_workers",
    "add_consistency_args",
    "add_strategy_arg",
    "add_supervised_normalize_arg",
    "add_steps_per_execution_arg",
    "base_parser",
    "batches",
    "build_backbone",
    "callbacks",
    "evaluate_and_export",
    "fit_and_export",
    "labeled_dataset",
    "load_data",
    "make_strategy",
    "new_parser",
    "pseudo_label_monitor",
    "semi_supervised_kwargs",
    "steps_per_epoch",
    "steps_per_execution",
    "train_dataset",
    "train_first_stage",
    "train_on_labels",
    "true_labels",
    "verbose",
]

IMAGE_SHAPE = (28, 28, 1)
NUM_CLASSES = 10


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows each flag's default and keeps the script docstring's line breaks."""


def _positive_int(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer. Received: {text}")
    return value


def _positive_float(text):
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0. Received: {text}")
    return value


def _rate(text):
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1]. Received: {text}")
    return value


class _Parser(argparse.ArgumentParser):
    """Creates the `--strategy multiworker` strategy as soon as the flags are read.

    `MultiWorkerMirroredStrategy` configures TensorFlow's collective ops, which is possible
    only before TensorFlow runs its first op; the scripts build their datasets before they
    call `make_strategy`.
    """

    def parse_known_args(self, args=None, namespace=None):
        known, unknown = super().parse_known_args(args, namespace)
        if getattr(known, "strategy", None) == "multiworker":
            _process_strategy("multiworker")
        return known, unknown


_STRATEGIES = {}


def _process_strategy(kind):
    """The process's one strategy of `kind` (`"mirrored"` or `"multiworker"`), created on
    first use. A process joins one cluster, and a second `MirroredStrategy` over the same
    devices restarts the collective instance keys, so that its collectives collide with the
    first one's ("Collective instance N expected type ..."): several runs in one process
    (`demo.py`) share one."""
    if kind not in _STRATEGIES:
        _STRATEGIES[kind] = (
            tf.distribute.MirroredStrategy()
            if kind == "mirrored"
            else tf.distribute.MultiWorkerMirroredStrategy()
        )
    return _STRATEGIES[kind]


def new_parser(description):
    """An empty parser of the scripts' kind: `--help` shows each flag's default and keeps the
    description's line breaks, and `--strategy multiworker` creates its strategy as soon as
    the flags are read."""
    return _Parser(description=description, formatter_class=_HelpFormatter)


def add_strategy_arg(parser, restriction=None):
    """Adds `--strategy {none,mirrored,multiworker}` (read by `make_strategy`).

    Args:
        parser: A parser from `new_parser` (which creates the multi-worker strategy early).
        restriction: What the script cannot run under a strategy, appended to the help.
            Defaults to `None` (nothing).
    """
    parser.add_argument(
        "--strategy",
        choices=("none", "mirrored", "multiworker"),
        default="none",
        help="'mirrored': tf.distribute.MirroredStrategy over the local devices; "
        "'multiworker': tf.distribute.MultiWorkerMirroredStrategy over the cluster that the "
        "TF_CONFIG environment variable describes (run the same command on every host)"
        + (f"; {restriction}" if restriction else ""),
    )


def add_steps_per_execution_arg(parser):
    """Adds `--steps-per-execution N` (Keras' `compile` argument), 32 by default."""
    parser.add_argument(
        "--steps-per-execution",
        type=_positive_int,
        default=32,
        metavar="N",
        help="training steps per call of the compiled step (Keras' steps_per_execution): "
        "fewer round trips through Python, the same results (every model is tested for it); "
        "the progress bar and batch-level callbacks see every Nth step; 1 under a strategy "
        "of several replicas, where Keras 3 cannot",
    )


def steps_per_execution(args):
    """`--steps-per-execution` under a strategy of one replica, else 1: Keras 3 fails to run
    several steps per call on several replicas (keras-team/keras#19246). Call it inside the
    strategy's scope."""
    if tf.distribute.get_strategy().num_replicas_in_sync > 1:
        return 1
    return args.steps_per_execution


def base_parser(description):
    """The flags of every script: data, optimisation, backbone, strategy and outputs.

    Args:
        description: The script's docstring, shown by `--help`.

    Returns:
        An `argparse.ArgumentParser`; the script adds its method's flags to it.
    """
    parser = new_parser(description)
    parser.add_argument(
        "--data-dir",
        help="folder with the Fashion-MNIST IDX files (default: tfssl.datasets' search path)",
    )
    parser.add_argument(
        "--num-labeled",
        type=_positive_int,
        default=1000,
        help="labels kept, the same number per class; the others are hidden (-1)",
    )
    parser.add_argument(
        "--train-size",
        type=_positive_int,
        help="use only the first N training rows (the labeled ones are drawn among them)",
    )
    parser.add_argument(
        "--test-size", type=_positive_int, help="evaluate on the first N test rows only"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of labels, shuffles, weights")
    parser.add_argument(
        "--permute-rows",
        type=int,
        metavar="SEED",
        help="shuffle the 60,000 training rows with this seed before taking the first "
        "--train-size, so that a run uses other rows (default: the file's order)",
    )
    parser.add_argument(
        "--label-noise",
        type=_rate,
        default=0.0,
        metavar="RATE",
        help="share of the kept labels replaced by another class (tfssl.data.noisy_labels)",
    )
    parser.add_argument("--epochs", type=_positive_int, default=300)
    parser.add_argument("--batch-size", type=_positive_int, default=100)
    parser.add_argument("--learning-rate", type=_positive_float, default=0.003, help="Adam's")
    parser.add_argument(
        "--labeled-per-batch",
        type=_positive_int,
        help="labeled rows mixed into every batch (the Mean Teacher reference code uses 31 of "
        "128); by default batches draw from all rows alike",
    )
    parser.add_argument(
        "--backbone",
        choices=("conv_net", "mlp"),
        default="conv_net",
        help="tfssl.backbones.conv_net (the papers' ConvNet) or tfssl.backbones.mlp (a dense "
        "network with input noise and dropout, ~10x cheaper on a CPU)",
    )
    parser.add_argument(
        "--width",
        type=_positive_float,
        default=1.0,
        help="filters of tfssl.backbones.conv_net relative to the papers' 128/256/512",
    )
    add_steps_per_execution_arg(parser)
    add_strategy_arg(parser)
    parser.add_argument("--export", metavar="DIR", help="write a SavedModel version into DIR")
    parser.add_argument("--tensorboard", metavar="DIR", help="write TensorBoard logs into DIR")
    parser.add_argument(
        "--verbose",
        type=int,
        choices=(0, 1, 2),
        help="Keras fit verbosity (default: 1, a progress bar, on a terminal, else 2)",
    )
    return parser


def add_consistency_args(parser, max_unsupervised_weight):
    """Adds the unsupervised weight's schedule flags of the semi-supervised scripts.

    The weight is `ramp_up(epoch) * max_unsupervised_weight * num_labeled / train rows`, the
    seed code's rule (`tfssl.models.SemiSupervisedModel`).

    Args:
        parser: The parser from `base_parser`.
        max_unsupervised_weight: The method's default maximum weight (the paper's).
    """
    parser.add_argument(
        "--max-unsupervised-weight",
        type=float,
        default=max_unsupervised_weight,
        help="weight after the ramp-up, before the num_labeled / train rows factor",
    )
    parser.add_argument("--ramp-up-epochs", type=_positive_int, default=80)
    parser.add_argument(
        "--ramp-up-method",
        choices=schedules.RAMP_UP_METHODS,
        default="sigmoid",
        help="'sigmoid' is the papers' exp(-5 (1 - t)^2); 'cosine' is the seed's falling one",
    )
    parser.add_argument(
        "--unscaled-weight",
        action="store_true",
        help="use --max-unsupervised-weight as is, without the seed code's num_labeled / "
        "train rows factor (which no longer balances the terms with --labeled-per-batch and "
        "--supervised-normalize labeled)",
    )
    add_supervised_normalize_arg(parser)


def add_supervised_normalize_arg(parser):
    """Adds `--supervised-normalize` (`SemiSupervisedModel(supervised_normalize=...)`)."""
    parser.add_argument(
        "--supervised-normalize",
        choices=("batch", "labeled"),
        default="batch",
        help="divide the labeled rows' loss by the batch size (the seed code and the paper) "
        "or by the number of labeled rows (a stronger signal on short budgets)",
    )


def load_data(args):
    """Fashion-MNIST as `((x, y_semi), (x_test, y_test))`, images float32 in [0, 1].

    `benchmarking.protocols.load_rows`, the harness' one loader, with the flags: of the first
    `--train-size` training rows (all by default; shuffled first with `--permute-rows`),
    `--num-labeled` keep their label, balanced over the classes and drawn with `--seed`, a
    share `--label-noise` of them replaced by other classes; the test set is the first
    `--test-size` test rows (all by default).

    Raises:
        ValueError: If `--train-size` or `--test-size` exceeds its split, or
            `tfssl.data.mask_labels` cannot keep `--num-labeled` balanced labels.
    """
    rows = protocols.load_rows(
        args.train_size, args.num_labeled, args.seed, args.label_noise,
        permute_rows=args.permute_rows, test_rows=args.test_size, data_dir=args.data_dir,
    )
    return (rows["x"], rows["y_semi"]), (rows["x_test"], rows["y_test"])


def train_dataset(x, y_semi, args):
    """The semi-supervised training batches `({"x", "idx"}, y)`, reshuffled every epoch."""
    return data.make_dataset(
        x,
        y_semi,
        batch_size=args.batch_size,
        shuffle=True,
        seed=args.seed,
        labeled_per_batch=args.labeled_per_batch,
    )


def labeled_dataset(x, y_semi, batch_size, seed):
    """The labeled rows alone as an endless reshuffled stream of `(x, y)` batches: the data
    of the supervised baseline."""
    (x_labeled, y_labeled), _ = data.split_labeled(x, y_semi)
    return (
        tf.data.Dataset.from_tensor_slices((tf.constant(x_labeled), y_labeled))
        .shuffle(len(x_labeled), seed=seed)
        .repeat()
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )


def train_on_labels(
    model, x, y_semi, args, steps_per_epoch, batch_size=None, epochs=None, callbacks=()
):
    """Trains a plain Keras model (logits out) on the labeled rows only, as the supervised
    baseline trains: Keras' sparse cross-entropy on logits, Adam(`--learning-rate`), batches
    of `batch_size` labeled rows from `labeled_dataset`, `steps_per_epoch` of them an epoch.

    The supervised method, and the first stage of the two-stage ones (the teacher of
    offline distillation, ReLoop's previous version). Give it the semi-supervised run's
    steps per epoch: no method then trains longer than another.

    Args:
        model: The Keras model to compile and fit.
        x: The training rows.
        y_semi: Their labels, `-1` for the unlabeled rows (left out).
        args: The parsed flags (`--learning-rate`, `--batch-size`, `--epochs`, `--seed`,
            `--verbose`).
        steps_per_epoch: Optimizer steps an epoch.
        batch_size: Labeled rows a batch. Defaults to `--batch-size`.
        epochs: Defaults to `--epochs`.
        callbacks: `fit` callbacks.

    Returns:
        The `History` of the fit.
    """
    model.compile(
        optimizer=keras.optimizers.Adam(args.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        steps_per_execution=steps_per_execution(args),
    )
    return model.fit(
        labeled_dataset(x, y_semi, batch_size or args.batch_size, args.seed),
        epochs=epochs or args.epochs,
        steps_per_epoch=steps_per_epoch,
        # tf.data shuffles the stream; Keras would warn that its own default shuffle is ignored.
        shuffle=False,
        callbacks=list(callbacks),
        verbose=verbose(args),
    )


def steps_per_epoch(y_semi, args):
    """Optimizer steps per epoch of the semi-supervised run with these flags."""
    # The pipeline's own count (it depends on --labeled-per-batch); the inputs do not matter.
    placeholder_x = np.zeros(len(y_semi), np.uint8)
    return int(train_dataset(placeholder_x, y_semi, args).cardinality())


def make_strategy(args):
    """`MirroredStrategy` for `--strategy mirrored`, `MultiWorkerMirroredStrategy` (the
    cluster of `TF_CONFIG`) for `--strategy multiworker`, else the default (no-op) strategy.

    Build and compile the model inside `strategy.scope()` either way.
    """
    if args.strategy in ("mirrored", "multiworker"):
        return _process_strategy(args.strategy)
    return tf.distribute.get_strategy()


def across_workers(model):
    """Lets a compiled plain Keras model (not a tfssl model) fit, evaluate and predict under
    `--strategy multiworker`, as `tfssl.models.SemiSupervisedModel` does for itself.

    Across workers Keras 3.15 fails twice (keras-team/keras#20585): before `fit` and
    `evaluate` it builds the model from the MEAN over the workers of the first distributed
    batch, which refuses the per-replica batch; after every step it reduces each log with
    `strategy.reduce("MEAN", value, axis=0)`, which refuses a scalar. Here the model builds
    from the first local replica's part of the batch (the build reads only its shapes and
    dtypes), and `compute_metrics` gives each log a leading axis of one, which that
    reduction takes away again. Both are set on this model object only; the first replaces
    a private Keras method, as `SemiSupervisedModel._maybe_symbolic_build` does, and
    tests/test_multiworker.py fails when Keras no longer needs it. Under any other strategy
    (none, `MirroredStrategy`, a cluster of one worker) the model is left as it is.

    Args:
        model: A `keras.Model` built and compiled in the strategy's scope.

    Returns:
        `model`.
    """
    strategy = model.distribute_strategy
    # Keras' own test for that reduction (keras.src.backend.tensorflow.trainer).
    if not (
        isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        and strategy.extended._in_multi_worker_mode()
    ):
        return model
    keras_build = model._maybe_symbolic_build
    keras_compute_metrics = model.compute_metrics

    def first_local_part(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def build_from_a_local_batch(iterator=None, data_batch=None):
        if iterator is not None and data_batch is None:
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(first_local_part, next(batches))
                break
            iterator = None
        return keras_build(iterator=iterator, data_batch=data_batch)

    def compute_metrics(x, y, y_pred, sample_weight=None):
        logs = keras_compute_metrics(x, y, y_pred, sample_weight=sample_weight)
        return {name: tf.expand_dims(value, 0) for name, value in logs.items()}

    model._maybe_symbolic_build = build_from_a_local_batch
    model.compute_metrics = compute_metrics
    return model


def build_backbone(args):
    """`tfssl.backbones.conv_net` (with the papers' augmentation) or `mlp`, for Fashion-MNIST."""
    # No per-layer seed: keras.utils.set_random_seed seeds every random layer distinctly,
    # while one shared seed would give all dropout layers the same stream.
    if args.backbone == "mlp":
        return backbones.mlp(IMAGE_SHAPE, NUM_CLASSES)
    return backbones.conv_net(IMAGE_SHAPE, NUM_CLASSES, width=args.width)


def semi_supervised_kwargs(args):
    """The `tfssl.models.SemiSupervisedModel` arguments that the flags set.

    `num_labeled` (the seed's weight factor num_labeled / train rows) is left out with
    `--unscaled-weight`.
    """
    return {
        "num_labeled": None if args.unscaled_weight else args.num_labeled,
        "max_unsupervised_weight": args.max_unsupervised_weight,
        "ramp_up_method": args.ramp_up_method,
        "ramp_up_epochs": args.ramp_up_epochs,
        "supervised_normalize": args.supervised_normalize,
    }


def callbacks(args):
    """The `fit` callbacks the flags ask for (TensorBoard)."""
    if args.tensorboard:
        return [keras.callbacks.TensorBoard(log_dir=args.tensorboard)]
    return []


def verbose(args):
    """`--verbose`, or a progress bar on a terminal and one line per epoch in a log file."""
    if args.verbose is not None:
        return args.verbose
    return 1 if sys.stdout.isatty() else 2


def batches(method, x, y_semi, args):
    """The training batches of the registry entry `method` and the `fit` arguments they need.

    The entry's batch layout (`benchmarking.methods.Method.data`): `"semi"`, the
    semi-supervised batches of `train_dataset`; `"labeled"` (supervised-only, adversarial
    training), batches of `--batch-size` labeled rows from `labeled_dataset`, as many steps an
    epoch as the semi-supervised run with these flags takes.

    Returns:
        `(dataset, fit_kwargs)`.
    """
    if METHODS[method].data == "labeled":
        # tf.data shuffles the stream; Keras would warn that its own shuffle is ignored.
        return labeled_dataset(x, y_semi, args.batch_size, args.seed), {
            "steps_per_epoch": steps_per_epoch(y_semi, args), "shuffle": False}
    return train_dataset(x, y_semi, args), {}


def true_labels(args):
    """The true labels of the training rows of `load_data` (hidden ones included), to score
    pseudo-labels with; training never reads them."""
    return protocols.load_rows(args.train_size, args.num_labeled, args.seed,
                               permute_rows=args.permute_rows, data_dir=args.data_dir)["y"]


def pseudo_label_monitor(x, y_semi, args):
    """A `tfssl.models.PseudoLabelMonitor` on the first `--monitor-rows` unlabeled rows,
    scored with their hidden labels (`true_labels`), or no callback when it is 0."""
    if not args.monitor_rows:
        return []
    unlabeled = np.flatnonzero(y_semi == data.UNLABELED)[: args.monitor_rows]
    return [models.PseudoLabelMonitor(x[unlabeled], true_labels(args)[unlabeled])]


def train_first_stage(name, x, y_semi, test, args, epochs=None):
    """A backbone trained on the labeled rows only, as `supervised.py` trains it
    (`train_on_labels`), for `epochs` (default `--epochs`); prints `<name> test accuracy`.

    The teacher of offline distillation and ReLoop's previous version.
    """
    model = build_backbone(args)
    train_on_labels(model, x, y_semi, args, steps_per_epoch(y_semi, args), epochs=epochs)
    results = model.evaluate(*test, batch_size=args.batch_size, verbose=0, return_dict=True)
    print(f"{name} test accuracy: {float(results['accuracy']):.4f}")
    return model


# Per-epoch figures of `PseudoLabelMonitor` and of the models' own mask rate, printed by
# `fit_and_export` when the history holds them.
_PSEUDO_LABEL_FIGURES = ("mask_rate", "pseudo_label_mask_rate", "pseudo_label_accuracy")


def fit_and_export(name, model, train, test, args, extra_callbacks=(), **fit_kwargs):
    """The scripts' shared tail: `fit`, the pseudo-label figures, `evaluate_and_export`.

    `model.fit` for `--epochs` with the test set as validation data, the callbacks of the
    flags and `extra_callbacks`, and the verbosity of `verbose`; then the per-epoch mask rate
    and pseudo-label accuracy lists when the history holds them, and `evaluate_and_export`.

    Args:
        name: The script's name, printed before the accuracy.
        model: The compiled model.
        train: The training dataset.
        test: `(x_test, y_test)`.
        args: The parsed flags.
        extra_callbacks: More `fit` callbacks (a `PseudoLabelMonitor`).
        **fit_kwargs: Passed to `fit` (from `batches`).

    Returns:
        The test accuracy as a float.
    """
    history = model.fit(
        train,
        epochs=args.epochs,
        validation_data=test,
        callbacks=callbacks(args) + list(extra_callbacks),
        verbose=verbose(args),
        **fit_kwargs,
    )
    for figure in _PSEUDO_LABEL_FIGURES:
        if figure in history.history:
            values = [round(float(v), 4) for v in history.history[figure]]
            print(f"{figure} per epoch: {values}")
    return evaluate_and_export(name, model, test, args)


def evaluate_and_export(name, model, test, args):
    """Evaluates on the test set, prints `<name> test accuracy: 0.XXXX`, exports if asked
    (under `--strategy multiworker` only the chief exports: worker 0 without a chief task).

    Args:
        name: The script's name, printed before the accuracy.
        model: The trained model (a tfssl model or a plain Keras model).
        test: `(x_test, y_test)`.
        args: The parsed flags (`--batch-size`, `--export`).

    Returns:
        The test accuracy as a float.
    """
    x_test, y_test = test
    results = model.evaluate(
        x_test, y_test, batch_size=args.batch_size, verbose=0, return_dict=True
    )
    accuracy = float(results["accuracy"])
    print(f"{name} test accuracy: {accuracy:.4f}")
    if args.export and _is_chief(args):
        print(f"{name} exported to {export.export_saved_model(model, args.export)}")
    return accuracy


def _is_chief(args):
    """Whether this process writes the outputs: under `--strategy multiworker` the chief
    only (every worker holds the same model), else always."""
    if getattr(args, "strategy", "none") != "multiworker":
        return True
    return _process_strategy("multiworker").extended.should_checkpoint
