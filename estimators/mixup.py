"""Mixup training on Fashion-MNIST's labeled rows: input or manifold mixup.

Zhang et al., "mixup: Beyond Empirical Risk Minimization", arXiv 1710.09412; Verma et al.,
"Manifold Mixup", arXiv 1806.05236 (seed 002). Every step mixes the batch's labeled rows with
in-batch partners, `lam = max(m, 1 - m)` with `m ~ Beta(--alpha, --alpha)` once per batch, at
`--at`: the input, the input of the last layer (`encoder`), or, with `manifold`, a place drawn
every step among the input and `--mixup-layers`. Unlabeled rows are not used. (`embedding`,
word mixup, needs a text backbone with an Embedding layer: see `tfssl.models.MixupModel`.)

Example:

    .venv/bin/python estimators/mixup.py --backbone mlp --train-size 20000 \\
        --labeled-per-batch 50 --learning-rate 0.001 --epochs 15 --supervised-normalize labeled
"""

import keras

import _common
from benchmarking.methods import METHODS


def build_parser():
    parser = _common.base_parser(__doc__)
    parser.add_argument("--alpha", type=float, default=0.2, help="Beta concentration")
    parser.add_argument(
        "--at", choices=("input", "encoder", "manifold"), default="input", help="where to mix"
    )
    parser.add_argument(
        "--mixup-layers",
        nargs="+",
        metavar="NAME",
        help="backbone layers to mix at (manifold: drawn with the input each step; encoder: "
        "one layer instead of the input of the last layer)",
    )
    _common.add_supervised_normalize_arg(parser)
    return parser


def run(args):
    """Trains MixupModel with the parsed flags; returns the test accuracy."""
    keras.utils.set_random_seed(args.seed)
    (x, y_semi), test = _common.load_data(args)
    train, fit_kwargs = _common.batches("mixup", x, y_semi, args)

    strategy = _common.make_strategy(args)
    with strategy.scope():
        model = METHODS["mixup"].model(
            _common.build_backbone(args),
            alpha=args.alpha,
            at=args.at,
            mixup_layers=args.mixup_layers,
            seed=args.seed,
            supervised_normalize=args.supervised_normalize,
        )
        model.compile(
            optimizer=keras.optimizers.Adam(args.learning_rate),
            metrics=["accuracy"],
            steps_per_execution=_common.steps_per_execution(args),
        )

    return _common.fit_and_export("mixup", model, train, test, args, **fit_kwargs)


def main(argv=None):
    run(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
