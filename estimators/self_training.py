"""Self-training in rounds on Fashion-MNIST with few labels.

Seed 003 ("简单自训练", "Pseudo Labeling"): train the backbone on the labeled rows, predict the
pool, add the rows predicted with probability at least `--threshold` (with
`--per-class-top-k K`, only the K most confident of each class per round) with their predicted
class, train a fresh model on the enlarged set, `--rounds` times, then train the final model
(`tfssl.self_training`). The pool is the unlabeled training rows, or with `--transductive` the
test inputs themselves, as the seed's recipe does (their labels are read only to score the
pseudo-labels). Each model trains for `--epochs` epochs in batches of `--batch-size`.

Example:

    .venv/bin/python estimators/self_training.py --backbone mlp --train-size 20000 \\
        --epochs 30 --rounds 3 --threshold 0.95 --per-class-top-k 1000 --learning-rate 0.001
"""

import keras
import numpy as np

import _common
import tfssl
from tfssl import data


def build_parser():
    parser = _common.base_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="pseudo-labeling rounds (>= 1)")
    parser.add_argument("--threshold", type=float, default=0.9, help="confidence to add a row")
    parser.add_argument("--per-class-top-k", type=int, help="most rows per class and round")
    parser.add_argument(
        "--transductive", action="store_true", help="pseudo-label the test inputs, not x"
    )
    return parser


def run(args):
    """Runs self-training with the parsed flags; returns the final model's test accuracy."""
    keras.utils.set_random_seed(args.seed)
    (x, y_semi), test = _common.load_data(args)
    if args.transductive:
        x_pool, y_pool_true = test
    else:
        x_pool, y_pool_true = None, _common.true_labels(args)
    strategy = _common.make_strategy(args)

    def build_model():
        with strategy.scope():
            model = _common.build_backbone(args)
            model.compile(
                optimizer=keras.optimizers.Adam(args.learning_rate),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"],
                steps_per_execution=_common.steps_per_execution(args),
            )
        return _common.across_workers(model)

    model, records = tfssl.self_training(
        build_model,
        x,
        y_semi,
        x_pool=x_pool,
        rounds=args.rounds,
        threshold=args.threshold,
        per_class_top_k=args.per_class_top_k,
        y_pool_true=y_pool_true,
        fit_kwargs={
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "verbose": _common.verbose(args),
        },
    )
    for record in records:
        print(
            f"round {record['round']}: trained on {record['num_train_rows']} rows, added "
            f"{record['num_added']} (accuracy {record['accuracy']:.4f}), "
            f"{record['num_pseudo_labeled']} pseudo-labeled in all "
            f"(accuracy {record['cumulative_accuracy']:.4f})"
        )
    print(f"labeled rows: {int(np.sum(y_semi != data.UNLABELED))}")
    return _common.evaluate_and_export("self_training", model, test, args)


def main(argv=None):
    run(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
