"""Mean Teacher on Fashion-MNIST with few labels.

Tarvainen & Valpola, "Mean teachers are better role models: Weight-averaged consistency
targets improve semi-supervised deep learning results", NeurIPS 2017, arXiv 1703.01780 (seeds
000 and 001). The teacher's weights are an exponential moving average of the student's
(decay `--rampup-ema-decay` during the ramp-up, `--ema-decay` after); the loss adds to the
student's cross-entropy on the labeled rows the MSE between the student's and the teacher's
softmax outputs on their own noisy passes, weighted by
`ramp_up(epoch) * --max-unsupervised-weight * num_labeled / train rows`. Evaluation and
`--export` use the teacher.

The reference code mixes a fixed number of labeled rows into every batch (31 of 128: use
`--batch-size 128 --labeled-per-batch 31`); by default batches draw from all rows alike, as
in the other scripts, so that runs compare with the same data pipeline.

Example:

    .venv/bin/python estimators/mean_teacher.py --train-size 10000 --width 0.25 --epochs 12 \\
        --ramp-up-epochs 5 --batch-size 128 --labeled-per-batch 31
"""

import keras

import _common
from benchmarking.methods import METHODS


def build_parser():
    parser = _common.base_parser(__doc__)
    _common.add_consistency_args(parser, max_unsupervised_weight=100.0)
    parser.add_argument("--ema-decay", type=float, default=0.999, help="after the ramp-up")
    parser.add_argument("--rampup-ema-decay", type=float, default=0.99, help="during the ramp-up")
    parser.add_argument(
        "--ema-warmup",
        action="store_true",
        help="cap the decay at 1 - 1/(step + 1) as the authors' PyTorch code (short runs)",
    )
    parser.add_argument(
        "--teacher-batch-norm",
        choices=("batch", "moving"),
        default="batch",
        help="batch norm in the teacher's training pass: the batch's statistics (the authors' "
        "code) or its moving statistics (the EMA of the student's)",
    )
    return parser


def run(args):
    """Trains Mean Teacher with the parsed flags; returns the teacher's test accuracy."""
    keras.utils.set_random_seed(args.seed)
    (x, y_semi), test = _common.load_data(args)
    train, fit_kwargs = _common.batches("mean_teacher", x, y_semi, args)

    strategy = _common.make_strategy(args)
    with strategy.scope():
        backbone = _common.build_backbone(args)
        model = METHODS["mean_teacher"].model(
            backbone,
            num_samples=len(x),
            num_classes=_common.NUM_CLASSES,
            ema_decay=args.ema_decay,
            rampup_ema_decay=args.rampup_ema_decay,
            ema_warmup=args.ema_warmup,
            teacher_batch_norm=args.teacher_batch_norm,
            **_common.semi_supervised_kwargs(args),
        )
        model.compile(
            optimizer=keras.optimizers.Adam(args.learning_rate),
            metrics=["accuracy"],
            steps_per_execution=_common.steps_per_execution(args),
        )

    return _common.fit_and_export("mean_teacher", model, train, test, args, **fit_kwargs)


def main(argv=None):
    run(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
