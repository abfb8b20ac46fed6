"""Π-model on Fashion-MNIST with few labels.

Laine & Aila, "Temporal Ensembling for Semi-Supervised Learning", ICLR 2017, arXiv 1610.02242,
section 2.1 (seed 000). Each batch goes through the backbone twice with different
augmentation, noise and dropout; the loss adds to the cross-entropy of the labeled rows the
MSE between the two softmax outputs, weighted by
`ramp_up(epoch) * --max-unsupervised-weight * num_labeled / train rows` (the paper's maximum
weight is 100).

In the paper the gradient flows through both passes; `--stop-gradient-target` holds the
second one fixed, as the Π-model of Oliver et al. (2018) and Mean Teacher's paper do.

Example:

    .venv/bin/python estimators/pi_model.py --train-size 10000 --width 0.25 --epochs 12 \\
        --ramp-up-epochs 5
"""

import keras

import _common
from benchmarking.methods import METHODS


def build_parser():
    parser = _common.base_parser(__doc__)
    _common.add_consistency_args(parser, max_unsupervised_weight=100.0)
    parser.add_argument(
        "--stop-gradient-target",
        action="store_true",
        help="treat the second pass as a fixed target (no gradient through it)",
    )
    return parser


def run(args):
    """Trains the Π-model with the parsed flags; returns the test accuracy."""
    keras.utils.set_random_seed(args.seed)
    (x, y_semi), test = _common.load_data(args)
    train, fit_kwargs = _common.batches("pi_model", x, y_semi, args)

    strategy = _common.make_strategy(args)
    with strategy.scope():
        backbone = _common.build_backbone(args)
        model = METHODS["pi_model"].model(
            backbone,
            num_samples=len(x),
            num_classes=_common.NUM_CLASSES,
            stop_gradient_target=args.stop_gradient_target,
            **_common.semi_supervised_kwargs(args),
        )
        model.compile(
            optimizer=keras.optimizers.Adam(args.learning_rate),
            metrics=["accuracy"],
            steps_per_execution=_common.steps_per_execution(args),
        )

    return _common.fit_and_export("pi_model", model, train, test, args, **fit_kwargs)


def main(argv=None):
    run(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
