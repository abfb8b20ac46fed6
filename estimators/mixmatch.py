"""MixMatch on Fashion-MNIST with few labels.

Berthelot et al., "MixMatch: A Holistic Approach to Semi-Supervised Learning", NeurIPS 2019,
arXiv 1905.02249 (google-research/mixmatch). Each unlabeled row gets `--K` augmented views;
their mean softmax, sharpened with `--T`, is its label guess. All views are then mixed with
random partners (`lam = max(m, 1 - m)`, `m ~ Beta(--alpha, --alpha)` per row) and the loss
is the cross-entropy of the mixed labeled views plus `--lambda-u` (ramped up linearly over
`--ramp-up-epochs`) times the squared error of the mixed unlabeled views.

The augmentation is `tfssl.layers.image_augmentation` (translation by `--max-translation`
pixels, Gaussian noise 0.15). `--preset cifar10-4000 --dry-run` prints the paper's CIFAR-10
settings (4000 labels, WRN-28-2, 6.24% error; `benchmarking.presets.MIXMATCH_PRESETS`) and
the flags they map to, without training.

Example:

    .venv/bin/python estimators/mixmatch.py --backbone mlp --train-size 20000 \\
        --labeled-per-batch 50 --learning-rate 0.001 --epochs 15 --lambda-u 75
"""

import keras

import _common
from benchmarking import presets
from benchmarking.methods import METHODS
from tfssl import layers

PRESETS = presets.MIXMATCH_PRESETS


def build_parser():
    parser = _common.base_parser(__doc__)
    parser.add_argument("--K", type=int, default=2, help="augmented views per unlabeled row")
    parser.add_argument("--T", type=float, default=0.5, help="sharpening temperature")
    parser.add_argument("--alpha", type=float, default=0.75, help="Beta concentration")
    parser.add_argument("--lambda-u", type=float, default=75.0, help="unlabeled loss weight")
    parser.add_argument("--ramp-up-epochs", type=int, default=16, help="linear lambda_u ramp")
    parser.add_argument(
        "--max-translation",
        type=int,
        default=2,
        help="pixels of the augmentation's random translation (0: Gaussian noise only)",
    )
    parser.add_argument(
        "--weight-decay", type=float, default=0.0, help="AdamW's decoupled decay (0: Adam)"
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), help="the paper's settings")
    parser.add_argument("--dry-run", action="store_true", help="print the settings and stop")
    return parser


def settings(args):
    """The flags after the preset (a preset's values replace the flags' defaults)."""
    if args.preset:
        for name, value in PRESETS[args.preset]["flags"].items():
            setattr(args, name, value)
    return args


def run(args):
    """Trains MixMatch with the parsed flags; returns the test accuracy."""
    keras.utils.set_random_seed(args.seed)
    (x, y_semi), test = _common.load_data(args)
    train, fit_kwargs = _common.batches("mixmatch", x, y_semi, args)

    strategy = _common.make_strategy(args)
    with strategy.scope():
        model = METHODS["mixmatch"].model(
            _common.build_backbone(args),
            augment=layers.image_augmentation(
                _common.IMAGE_SHAPE, max_translation=args.max_translation, seed=args.seed
            ),
            K=args.K,
            T=args.T,
            alpha=args.alpha,
            lambda_u=args.lambda_u,
            ramp_up_epochs=args.ramp_up_epochs,
            seed=args.seed,
        )
        if args.weight_decay:
            optimizer = keras.optimizers.AdamW(args.learning_rate, weight_decay=args.weight_decay)
        else:
            optimizer = keras.optimizers.Adam(args.learning_rate)
        model.compile(
            optimizer=optimizer,
            metrics=["accuracy"],
            steps_per_execution=_common.steps_per_execution(args),
        )

    return _common.fit_and_export("mixmatch", model, train, test, args, **fit_kwargs)


def main(argv=None):
    args = settings(build_parser().parse_args(argv))
    if args.dry_run:
        for key, value in sorted(vars(args).items()):
            print(f"{key}: {value}")
        if args.preset:
            for key, value in PRESETS[args.preset]["not flags"].items():
                print(f"[{args.preset}, not a flag] {key}: {value}")
        return
    run(args)


if __name__ == "__main__":
    main()
