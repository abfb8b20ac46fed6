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

`--preset cifar10-4000` (or -250, -40) holds the paper's CIFAR-10 hyper-parameters
(`benchmarking.presets.FIXMATCH_PRESETS`); `--dry-run` prints them. Running one needs the
CIFAR-10 binary files (`--data-dir`) and a GPU budget (2^20 steps); the backbone is
`tfssl.backbones.conv_net`, not the paper's WRN-28-2.

Example:

    .venv/bin/python estimators/fixmatch.py --backbone mlp --train-size 20000 --epochs 15 \\
        --batch-size 100 --labeled-per-batch 50 --learning-rate 0.001
    .venv/bin/python estimators/fixmatch.py --preset cifar10-4000 --dry-run
"""

import keras

import _common
from benchmarking import presets
from benchmarking.methods import METHODS
from tfssl import layers


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
    parser.add_argument(
        "--preset", choices=sorted(presets.FIXMATCH_PRESETS), help="the paper's CIFAR-10 setting"
    )
    parser.add_argument("--dry-run", action="store_true", help="with --preset: print it only")
    return parser


def run(args):
    """Trains FixMatch with the parsed flags; returns the test accuracy."""
    if args.preset:
        trained = presets.run_fixmatch_preset(
            args.preset, args.data_dir, args.seed, args.dry_run, _common.verbose(args)
        )
        if trained is None:
            return None
        return _common.evaluate_and_export("fixmatch", *trained, args)
    keras.utils.set_random_seed(args.seed)
    (x, y_semi), test = _common.load_data(args)
    train, fit_kwargs = _common.batches("fixmatch", x, y_semi, args)
    monitor = _common.pseudo_label_monitor(x, y_semi, args)

    strategy = _common.make_strategy(args)
    with strategy.scope():
        model = METHODS["fixmatch"].model(
            _common.build_backbone(args),
            strong_augment=layers.strong_augmentation(
                factor=args.strong_factor, per_row=not args.per_batch_ops
            ),
            threshold=args.threshold,
            lambda_u=args.lambda_u,
        )
        model.compile(
            optimizer=keras.optimizers.Adam(args.learning_rate),
            metrics=["accuracy"],
            steps_per_execution=_common.steps_per_execution(args),
        )

    return _common.fit_and_export("fixmatch", model, train, test, args, monitor, **fit_kwargs)


def main(argv=None):
    run(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
