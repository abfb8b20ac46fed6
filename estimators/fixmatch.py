"""FixMatch on Fashion-MNIST with few labels, or the paper's CIFAR-10 setting (`--preset`).

Sohn et al., "FixMatch: Simplifying Semi-Supervised Learning with Consistency and Confidence",
arXiv 2001.07685. Each unlabeled row's pseudo-label is the argmax of the prediction on a weak
view (shifts of up to 2 pixels), kept when its probability reaches `--threshold`; the strong
view (Keras' RandAugment per image with magnitude `--strong-factor`, then cutout) is trained on
it with cross-entropy, weighted by `--lambda-u`. The paper's batches hold mu = 7 unlabeled rows
per labeled one: `--batch-size 512 --labeled-per-batch 64`.

After each epoch the mask rate and the accuracy of the pseudo-labels are measured on
`--monitor-rows` unlabeled training rows against their hidden labels
(`tfssl.models.PseudoLabelMonitor`) and printed at the end.

`--preset cifar10-4000` (or -250, -40) holds the paper's CIFAR-10 hyper-parameters;
`--dry-run` prints them. Running one needs the CIFAR-10 binary files (`--data-dir`) and a GPU
budget (2^20 steps); the backbone is `tfssl.backbones.conv_net`, not the paper's WRN-28-2.

Example:

    .venv/bin/python estimators/fixmatch.py --backbone mlp --train-size 20000 --epochs 15 \\
        --batch-size 100 --labeled-per-batch 50 --learning-rate 0.001
    .venv/bin/python estimators/fixmatch.py --preset cifar10-4000 --dry-run
"""

import json

import keras
import numpy as np

import _common
from tfssl import backbones, data, datasets, layers, models

# The paper's CIFAR-10 settings (arXiv 2001.07685, section 4 and appendix B.1): 4.26 / 5.07 /
# 11.39 % error with 4000 / 250 / 40 labels (RandAugment, table 2).
_PAPER = dict(
    backbone="WRN-28-2 (run here with tfssl.backbones.conv_net)",
    steps=2**20,
    batch_size=64,
    mu=7,
    threshold=0.95,
    lambda_u=1.0,
    optimizer="SGD, Nesterov momentum 0.9, weight decay 5e-4",
    learning_rate=0.03,
    learning_rate_schedule="0.03 cos(7 pi k / 16 K)",
    ema_decay=0.999,
    weak="flip + translation up to 12.5% (4 px)",
    strong="RandAugment (2 ops, random magnitude) + cutout",
)
PRESETS = {
    "cifar10-4000": dict(_PAPER, num_labeled=4000, published_error=4.26),
    "cifar10-250": dict(_PAPER, num_labeled=250, published_error=5.07),
    "cifar10-40": dict(_PAPER, num_labeled=40, published_error=11.39),
}


def build_parser():
    parser = _common.base_parser(__doc__)
    parser.add_argument("--threshold", type=float, default=0.95, help="confidence to keep")
    parser.add_argument("--lambda-u", type=float, default=1.0, help="unlabeled term's weight")
    parser.add_argument(
        "--strong-factor", type=float, default=0.1, help="RandAugment magnitude in (0, 1]"
    )
    parser.add_argument(
        "--per-batch-ops",
        action="store_true",
        help="draw the RandAugment ops once per batch (Keras' default, 2.4x cheaper) rather "
        "than per image (the paper)",
    )
    parser.add_argument("--monitor-rows", type=int, default=2000, help="0: no monitor")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="the paper's CIFAR-10 setting")
    parser.add_argument("--dry-run", action="store_true", help="with --preset: print it only")
    return parser


def run(args):
    """Trains FixMatch with the parsed flags; returns the test accuracy."""
    if args.preset:
        return run_preset(args)
    keras.utils.set_random_seed(args.seed)
    (x, y_semi), test = _common.load_data(args)
    train = _common.train_dataset(x, y_semi, args)
    monitor = pseudo_label_monitor(x, y_semi, args)

    strategy = _common.make_strategy(args)
    with strategy.scope():
        model = models.FixMatch(
            _common.build_backbone(args),
            strong_augment=layers.strong_augmentation(
                factor=args.strong_factor, per_row=not args.per_batch_ops
            ),
            threshold=args.threshold,
            lambda_u=args.lambda_u,
        )
        model.compile(optimizer=keras.optimizers.Adam(args.learning_rate), metrics=["accuracy"])

    history = model.fit(
        train,
        epochs=args.epochs,
        validation_data=test,
        callbacks=_common.callbacks(args) + monitor,
        verbose=_common.verbose(args),
    )
    print_pseudo_label_figures(history.history)
    return _common.evaluate_and_export("fixmatch", model, test, args)


def pseudo_label_monitor(x, y_semi, args):
    """A `PseudoLabelMonitor` on the first `--monitor-rows` unlabeled rows, or none."""
    if not args.monitor_rows:
        return []
    (_, y_true), _ = datasets.load_fashion_mnist(args.data_dir)
    rows = np.flatnonzero(y_semi == data.UNLABELED)[: args.monitor_rows]
    return [models.PseudoLabelMonitor(x[rows], y_true[rows])]


def print_pseudo_label_figures(history):
    """Prints the per-epoch mask rate and pseudo-label accuracy lists, when measured."""
    for name in ("mask_rate", "pseudo_label_mask_rate", "pseudo_label_accuracy"):
        if name in history:
            print(f"{name} per epoch: {[round(float(v), 4) for v in history[name]]}")


def run_preset(args):
    """Prints (`--dry-run`) or runs a paper setting on CIFAR-10; returns the accuracy."""
    cfg = dict(PRESETS[args.preset], preset=args.preset, seed=args.seed)
    print(json.dumps(cfg, indent=2))
    if args.dry_run:
        return None
    if not args.data_dir:
        raise ValueError(f"--preset needs --data-dir (CIFAR-10). Received: {args.data_dir!r}")
    keras.utils.set_random_seed(args.seed)
    (x, y), test = datasets.load_cifar10(args.data_dir)
    x, test = (x / 255.0).astype("float32"), ((test[0] / 255.0).astype("float32"), test[1])
    y_semi = data.mask_labels(y, cfg["num_labeled"], seed=args.seed)
    batch = cfg["batch_size"] * (cfg["mu"] + 1)
    train = data.make_dataset(
        x, y_semi, batch, shuffle=True, seed=args.seed, labeled_per_batch=cfg["batch_size"]
    )
    steps_per_epoch = int(train.cardinality())
    model = models.FixMatch(
        backbones.conv_net((32, 32, 3), 10, augment=False),
        weak_augment=layers.image_augmentation(
            (32, 32, 3), max_translation=4, horizontal_flip=True, noise_stddev=0.0
        ),
        strong_augment=layers.strong_augmentation(factor=0.3),
        threshold=cfg["threshold"],
        lambda_u=cfg["lambda_u"],
    )
    # Keras' CosineDecay with alpha cos(7 pi / 16) ends where the paper's schedule does;
    # in between it is within 0.13 x 0.03 of it. The EMA weights replace the trained ones
    # at the end of fit (use_ema).
    schedule = keras.optimizers.schedules.CosineDecay(
        cfg["learning_rate"], cfg["steps"], alpha=float(np.cos(7 * np.pi / 16))
    )
    optimizer = keras.optimizers.SGD(
        schedule,
        momentum=0.9,
        nesterov=True,
        weight_decay=5e-4,
        use_ema=True,
        ema_momentum=cfg["ema_decay"],
    )
    model.compile(optimizer=optimizer, metrics=["accuracy"])
    model.fit(train, epochs=-(-cfg["steps"] // steps_per_epoch), verbose=_common.verbose(args))
    return _common.evaluate_and_export("fixmatch", model, test, args)


def main(argv=None):
    run(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
