"""Temporal Ensembling on Fashion-MNIST with few labels.

Laine & Aila, "Temporal Ensembling for Semi-Supervised Learning", ICLR 2017, arXiv 1610.02242;
the Keras port of the seed's TF1 estimator (seed 000). Every training row keeps a moving
average of the network's past predictions (momentum `--alpha`), and the loss adds to the
cross-entropy of the labeled rows the MSE between the current softmax and that ensemble's,
weighted by `ramp_up(epoch) * --max-unsupervised-weight * num_labeled / train rows`.

`--target seed` (the default) reproduces the seed code, whose target includes the current
prediction; `--target paper` holds the previous epochs' ensemble fixed, as the paper does.

Example:

    .venv/bin/python estimators/temporal_ensembling.py --train-size 10000 --width 0.25 \\
        --epochs 12 --ramp-up-epochs 5 --export saved_models/fashion_te
"""

import keras

import _common
from benchmarking.methods import METHODS


def build_parser():
    parser = _common.base_parser(__doc__)
    _common.add_consistency_args(parser, max_unsupervised_weight=30.0)
    parser.add_argument("--alpha", type=float, default=0.6, help="ensemble momentum")
    parser.add_argument(
        "--target",
        choices=("seed", "paper"),
        default="seed",
        help="consistency target: the seed code's or the paper's (see above)",
    )
    parser.add_argument(
        "--state-dtype",
        choices=("float32", "float16", "bfloat16"),
        default="float32",
        help="storage dtype of the ensemble; half precision halves its memory",
    )
    return parser


def run(args):
    """Trains Temporal Ensembling with the parsed flags; returns the test accuracy."""
    keras.utils.set_random_seed(args.seed)
    (x, y_semi), test = _common.load_data(args)
    train, fit_kwargs = _common.batches("temporal_ensembling", x, y_semi, args)

    strategy = _common.make_strategy(args)
    with strategy.scope():
        backbone = _common.build_backbone(args)
        model = METHODS["temporal_ensembling"].model(
            backbone,
            num_samples=len(x),
            num_classes=_common.NUM_CLASSES,
            alpha=args.alpha,
            target=args.target,
            state_dtype=args.state_dtype,
            **_common.semi_supervised_kwargs(args),
        )
        model.compile(
            optimizer=keras.optimizers.Adam(args.learning_rate),
            metrics=["accuracy"],
            steps_per_execution=_common.steps_per_execution(args),
        )

    return _common.fit_and_export("temporal_ensembling", model, train, test, args, **fit_kwargs)


def main(argv=None):
    run(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
