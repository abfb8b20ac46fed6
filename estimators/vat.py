"""Virtual Adversarial Training (VAT, optionally + entropy minimization) on Fashion-MNIST.

Miyato et al., "Virtual Adversarial Training: A Regularization Method for Supervised and
Semi-Supervised Learning", arXiv 1704.03976. Every row, labeled or not, adds
`KL(p(x) || p(x + r_vadv))`, where `r_vadv` of length `--epsilon` is the direction that
changes the prediction most, found by `--power-iterations` power iterations with a finite
difference of length `--xi`. `--entropy-minimization` adds the entropy of `p(x)` (VAT +
EntMin). The VAT term's weight is the paper's fixed alpha, `--max-unsupervised-weight`;
`--ramp-up` uses the seed code's ramped weight instead (with its num_labeled / train rows
factor unless `--unscaled-weight`).

Example (the main protocol, with the settings chosen on held-out training rows):

    .venv/bin/python estimators/vat.py --backbone mlp --train-size 20000 --epochs 15 \\
        --batch-size 100 --labeled-per-batch 50 --supervised-normalize labeled \\
        --learning-rate 0.001 --epsilon 5.0 --entropy-minimization
"""

import keras

import _common
from benchmarking.methods import METHODS


def build_parser():
    parser = _common.base_parser(__doc__)
    _common.add_consistency_args(parser, max_unsupervised_weight=1.0)
    parser.add_argument("--epsilon", type=float, default=8.0, help="length of r_vadv")
    parser.add_argument("--xi", type=float, default=1e-6, help="finite-difference step")
    parser.add_argument("--power-iterations", type=int, default=1)
    parser.add_argument(
        "--entropy-minimization", action="store_true", help="VAT + EntMin: add H(p(x))"
    )
    parser.add_argument("--entropy-weight", type=float, default=1.0)
    parser.add_argument(
        "--ramp-up",
        action="store_true",
        help="weight the VAT term with the ramp-up schedule instead of the paper's fixed alpha",
    )
    return parser


def run(args):
    """Trains VAT with the parsed flags; returns the test accuracy."""
    keras.utils.set_random_seed(args.seed)
    (x, y_semi), test = _common.load_data(args)
    train, fit_kwargs = _common.batches("vat", x, y_semi, args)

    strategy = _common.make_strategy(args)
    with strategy.scope():
        model = METHODS["vat"].model(
            _common.build_backbone(args),
            num_samples=len(x),
            xi=args.xi,
            epsilon=args.epsilon,
            power_iterations=args.power_iterations,
            entropy_minimization=args.entropy_minimization,
            entropy_weight=args.entropy_weight,
            ramp_up=args.ramp_up,
            seed=args.seed,
            **_common.semi_supervised_kwargs(args),
        )
        model.compile(
            optimizer=keras.optimizers.Adam(args.learning_rate),
            metrics=["accuracy"],
            steps_per_execution=_common.steps_per_execution(args),
        )

    return _common.fit_and_export("vat", model, train, test, args, **fit_kwargs)


def main(argv=None):
    run(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
