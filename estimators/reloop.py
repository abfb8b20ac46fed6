"""ReLoop on Fashion-MNIST: a new model version trained not to be worse than the previous one.

Cai et al., "ReLoop: A Self-Correction Continual Learning Loop for Recommender Systems",
SIGIR 2022, arXiv 2204.11165 (seed 004). The previous version is the backbone trained on the
labeled rows only (like `supervised.py`) for `--previous-epochs`; the new version trains on
`(1 - weight) * CE + weight * L_sc`, where the self-correction term `L_sc` penalises, on each
labeled row, a prediction further from the label than the previous version's. Both test
accuracies are printed.

`--previous-source model` runs the frozen previous model in every step; `stored` writes its
predictions of every training row into the per-sample state once (the paper's logged
predictions of the deployed model). `--warm-start` starts the new version from the previous
version's weights, as a daily retrained recommender does.

Example:

    .venv/bin/python estimators/reloop.py --backbone mlp --train-size 20000 \\
        --labeled-per-batch 50 --learning-rate 0.001 --epochs 15 --supervised-normalize labeled
"""

import keras

import _common
from benchmarking.methods import METHODS


def build_parser():
    parser = _common.base_parser(__doc__)
    parser.add_argument("--weight", type=float, default=0.5, help="weight of L_sc, in [0, 1]")
    parser.add_argument(
        "--previous-epochs", type=int, help="the previous version's epochs (default: --epochs)"
    )
    parser.add_argument("--previous-source", choices=("model", "stored"), default="model")
    parser.add_argument("--warm-start", action="store_true", help="start from the previous weights")
    _common.add_supervised_normalize_arg(parser)
    return parser


def run(args):
    """Trains the previous version, then ReLoop; returns ReLoop's test accuracy."""
    keras.utils.set_random_seed(args.seed)
    (x, y_semi), test = _common.load_data(args)
    train, fit_kwargs = _common.batches("reloop", x, y_semi, args)

    strategy = _common.make_strategy(args)
    with strategy.scope():
        epochs = args.previous_epochs or args.epochs
        previous = _common.train_first_stage("previous version", x, y_semi, test, args, epochs)
        backbone = _common.build_backbone(args)
        if args.warm_start:
            backbone.set_weights(previous.get_weights())
        stored = args.previous_source == "stored"
        model = METHODS["reloop"].model(
            backbone,
            previous_model=None if stored else previous,
            weight=args.weight,
            num_samples=len(x) if stored else None,
            supervised_normalize=args.supervised_normalize,
        )
        if stored:
            model.set_previous_predictions(
                keras.ops.softmax(previous.predict(x, batch_size=args.batch_size, verbose=0))
            )
        model.compile(
            optimizer=keras.optimizers.Adam(args.learning_rate),
            metrics=["accuracy"],
            steps_per_execution=_common.steps_per_execution(args),
        )

    return _common.fit_and_export("reloop", model, train, test, args, **fit_kwargs)


def main(argv=None):
    run(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
