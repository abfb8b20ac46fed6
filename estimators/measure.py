"""Measurement runs: one method, one protocol, one seed per line of JSON.

The building blocks of `demo.py` and `sweep.py`, and the command behind every number in
`benchmarks/notes/`: load Fashion-MNIST rows (optionally permuted, with label noise, with a
validation split carved from the training rows), build a method for a protocol from a dict of
hyper-parameters, train it for the protocol's budget and score it.

The defaults are the main protocol of `BENCHMARKS.md` (section 1): the first 20,000 training
rows, 1000 labels (100 per class), `tfssl.backbones.mlp((28, 28, 1), 10, units=(500, 250))`,
batches of 50 unlabeled + 50 labeled rows, the labeled rows' mean cross-entropy, Adam 1e-3,
15 epochs of 380 steps, sigmoid ramp-up over 5 epochs to a maximum weight of 30 (no seed
factor), TE alpha 0.6 with the seed's target, Mean Teacher decay 0.99. The supervised
baseline takes the same number of steps on batches of 100 labeled rows.

Example:

    .venv/bin/python estimators/measure.py --methods supervised temporal_ensembling \\
        --seeds 0 1 --label-noise 0.5 --output /tmp/runs.jsonl
    .venv/bin/python estimators/measure.py --methods mean_teacher --set max_weight=10 \\
        --set ema_decay=0.999 --validation-rows 5000
"""

import argparse
import json
import sys
import time

import keras
import numpy as np
import tensorflow as tf

import _common
from tfssl import backbones, data, datasets, models

__all__ = [
    "DEFAULTS",
    "METHODS",
    "build_backbone",
    "build_model",
    "load_rows",
    "main",
    "train_and_evaluate",
]

METHODS = ("supervised", "pi_model", "temporal_ensembling", "mean_teacher", "ceiling")

# The main protocol's hyper-parameters; `--set name=value` or a sweep overrides them.
DEFAULTS = {
    "backbone": "mlp",
    "units": (500, 250),
    "width": 0.125,
    "epochs": 15,
    "batch_size": 100,
    "labeled_per_batch": 50,
    "supervised_normalize": "labeled",
    "learning_rate": 0.001,
    "max_weight": 30.0,
    "ramp_up_epochs": 5,
    "alpha": 0.6,
    "te_target": "seed",
    "te_state_dtype": "float32",
    "ema_decay": 0.99,
    "rampup_ema_decay": 0.99,
    "teacher_batch_norm": "batch",
    "stop_gradient_target": False,
}


def load_rows(
    data_dir=None,
    train_size=20_000,
    num_labeled=1000,
    seed=0,
    permute_rows=None,
    label_noise=0.0,
    validation_rows=None,
):
    """Training rows with few (possibly wrong) labels, and the rows to score on.

    With `permute_rows`, the 60,000 training rows are shuffled by that seed first, so "the
    first `train_size` rows" are other rows. With `validation_rows`, the last
    `validation_rows` training rows (after the permutation) are returned as the scoring
    set instead of the test set; they never overlap the first `train_size` rows.

    Returns:
        `((x, y_semi), (x_eval, y_eval))`, images float32 `(N, 28, 28, 1)` in [0, 1];
        `y_semi` holds `num_labeled` balanced labels drawn with `seed`, a share
        `label_noise` of them replaced by other classes (`tfssl.data.noisy_labels`).

    Raises:
        ValueError: If the training rows and the validation rows would overlap.
    """
    (x, y), (x_test, y_test) = datasets.load_fashion_mnist(data_dir)
    if permute_rows is not None:
        x, y = _common.permute_rows(x, y, permute_rows)
    train_size = train_size or len(x)
    if validation_rows:
        if train_size + validation_rows > len(x):
            raise ValueError(
                f"train_size + validation_rows must be at most {len(x)}. Received: "
                f"train_size={train_size}, validation_rows={validation_rows}"
            )
        x_eval, y_eval = x[-validation_rows:], y[-validation_rows:]
    else:
        x_eval, y_eval = x_test, y_test
    y_semi = data.mask_labels(y[:train_size], num_labeled, seed=seed)
    if label_noise:
        y_semi = data.noisy_labels(y_semi, label_noise, seed=seed, num_classes=10)
    return (_images(x[:train_size]), y_semi), (_images(x_eval), y_eval)


def _images(x):
    return (x[..., np.newaxis] / 255.0).astype(np.float32)


def build_backbone(params):
    """The protocol's backbone: `mlp`, `mlp_bn` (batch norm after each dense layer) or
    `conv_net` (the papers' ConvNet, `params["width"]`, with ±2 px translation and noise)."""
    if params["backbone"] == "mlp":
        return backbones.mlp(_common.IMAGE_SHAPE, _common.NUM_CLASSES, units=params["units"])
    if params["backbone"] == "mlp_bn":
        # tfssl.backbones.mlp with batch norm (PyTorch's momentum 0.1, as conv_net) before
        # each ReLU: the cheapest network on which the teacher's batch-norm mode matters.
        layers = [
            keras.Input(_common.IMAGE_SHAPE, name="x"),
            keras.layers.Flatten(),
            keras.layers.GaussianNoise(0.3),
        ]
        for width in params["units"]:
            layers += [
                keras.layers.Dense(width, use_bias=False),
                keras.layers.BatchNormalization(momentum=0.9),
                keras.layers.ReLU(),
                keras.layers.Dropout(0.3),
            ]
        layers.append(keras.layers.Dense(_common.NUM_CLASSES, name="logits"))
        return keras.Sequential(layers, name="mlp_bn")
    if params["backbone"] == "conv_net":
        return backbones.conv_net(_common.IMAGE_SHAPE, _common.NUM_CLASSES, width=params["width"])
    raise ValueError(f"Unknown backbone. Received: backbone={params['backbone']!r}")


def build_model(method, backbone, num_samples, params):
    """The tfssl model of `method` around `backbone` with the hyper-parameters `params`."""
    common = {
        "max_unsupervised_weight": params["max_weight"],
        "ramp_up_epochs": params["ramp_up_epochs"],
        "supervised_normalize": params["supervised_normalize"],
    }
    if method == "pi_model":
        return models.PiModel(
            backbone, stop_gradient_target=params["stop_gradient_target"], **common
        )
    if method == "temporal_ensembling":
        return models.TemporalEnsembling(
            backbone,
            num_samples,
            alpha=params["alpha"],
            target=params["te_target"],
            state_dtype=params["te_state_dtype"],
            **common,
        )
    if method == "mean_teacher":
        return models.MeanTeacher(
            backbone,
            ema_decay=params["ema_decay"],
            rampup_ema_decay=params["rampup_ema_decay"],
            teacher_batch_norm=params["teacher_batch_norm"],
            **common,
        )
    raise ValueError(f"Unknown method. Received: method={method!r}")


def train_and_evaluate(method, x, y_semi, evaluation, params, seed, x_all=None, y_all=None,
                       verbose=0, export=None):
    """Trains `method` for the protocol's budget and returns `(accuracy, seconds, model)`.

    Every method takes the optimizer steps of one semi-supervised epoch over `(x, y_semi)`
    (`labeled_per_batch` labeled rows per batch) times `params["epochs"]`. `supervised`
    draws batches of `batch_size` from the labeled rows only, `ceiling` from
    `(x_all, y_all)` (every label), both from endless reshuffled streams.
    """
    keras.utils.set_random_seed(seed)
    semi = data.make_dataset(
        x, y_semi, batch_size=params["batch_size"], shuffle=True, seed=seed,
        labeled_per_batch=params["labeled_per_batch"],
    )
    steps = int(semi.cardinality())
    backbone = build_backbone(params)
    optimizer = keras.optimizers.Adam(params["learning_rate"])
    fit_kwargs = {}
    if method in ("supervised", "ceiling"):
        if method == "supervised":
            (x_fit, y_fit), _ = data.split_labeled(x, y_semi)
        else:
            x_fit, y_fit = x_all, y_all
        train = (
            tf.data.Dataset.from_tensor_slices((x_fit, y_fit))
            .shuffle(len(x_fit), seed=seed)
            .repeat()
            .batch(params["batch_size"])
            .prefetch(tf.data.AUTOTUNE)
        )
        model = backbone
        model.compile(
            optimizer=optimizer,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        fit_kwargs["steps_per_epoch"] = steps
    else:
        train = semi
        model = build_model(method, backbone, len(x), params)
        model.compile(optimizer=optimizer, metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(train, epochs=params["epochs"], verbose=verbose, **fit_kwargs)
    seconds = time.perf_counter() - start
    x_eval, y_eval = evaluation
    logits = model.predict(x_eval, batch_size=500, verbose=0)
    accuracy = float(np.mean(np.argmax(logits, axis=-1) == y_eval))
    if export:
        from tfssl import export as export_lib

        print(f"{method} exported to {export_lib.export_saved_model(model, export)}")
    return accuracy, seconds, model


def _setting(text):
    """`NAME=VALUE` -> `(name, value)`, the value of the type of the default."""
    name, sep, value = text.partition("=")
    if not sep or name not in DEFAULTS:
        raise argparse.ArgumentTypeError(
            f"expected NAME=VALUE with NAME one of {sorted(DEFAULTS)}. Received: {text}"
        )
    default = DEFAULTS[name]
    if isinstance(default, tuple):
        return name, tuple(int(part) for part in value.split(","))
    if isinstance(default, bool):
        if value not in ("True", "False"):
            raise argparse.ArgumentTypeError(f"{name} must be True or False. Received: {text}")
        return name, value == "True"
    return name, type(default)(value)


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=["supervised"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--train-size", type=int, default=20_000, help="0: all 60,000 rows")
    parser.add_argument("--num-labeled", type=int, default=1000)
    parser.add_argument("--label-noise", type=float, default=0.0)
    parser.add_argument("--permute-rows", type=int, help="seed of a permutation of the rows")
    parser.add_argument(
        "--validation-rows", type=int, help="score on the last N training rows, not the test set"
    )
    parser.add_argument(
        "--set", type=_setting, action="append", default=[], metavar="NAME=VALUE",
        help=f"override a hyper-parameter; defaults: {DEFAULTS}",
    )
    parser.add_argument("--protocol", default="main", help="name stored with the records")
    parser.add_argument("--output", help="append one JSON record per run to this file")
    parser.add_argument("--verbose", type=int, default=0, choices=(0, 1, 2))
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    params = dict(DEFAULTS, **dict(args.set))
    for seed in args.seeds:
        train, evaluation = load_rows(
            args.data_dir, args.train_size, args.num_labeled, seed, args.permute_rows,
            args.label_noise, args.validation_rows,
        )
        x_all = y_all = None
        if "ceiling" in args.methods:
            (x_full, y_full), _ = datasets.load_fashion_mnist(args.data_dir)
            if args.permute_rows is not None:
                x_full, y_full = _common.permute_rows(x_full, y_full, args.permute_rows)
            rows = len(train[0])
            x_all, y_all = _images(x_full[:rows]), y_full[:rows]
        for method in args.methods:
            accuracy, seconds, _ = train_and_evaluate(
                method, *train, evaluation, params, seed, x_all, y_all, args.verbose
            )
            record = {
                "protocol": args.protocol, "method": method, "seed": seed,
                "permute_rows": args.permute_rows, "label_noise": args.label_noise,
                "train_size": args.train_size, "num_labeled": args.num_labeled,
                "scored_on": "validation" if args.validation_rows else "test",
                "accuracy": accuracy, "seconds": round(seconds, 1),
                "params": {k: v for k, v in params.items() if v != DEFAULTS[k]},
                "command": " ".join(["estimators/measure.py", *(argv or sys.argv[1:])]),
            }
            print(json.dumps(record), flush=True)
            if args.output:
                with open(args.output, "a") as file:
                    file.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
