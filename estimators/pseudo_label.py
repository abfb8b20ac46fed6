"""Pseudo-Label on Fashion-MNIST with few labels.

Lee, "Pseudo-Label: The Simple and Efficient Semi-Supervised Learning Method for Deep Neural
Networks", ICML 2013 workshop (seed 003, "伪标签"). Every unlabeled row whose largest predicted
probability reaches `--threshold` takes that class as its label (recomputed at each step, no
gradient through it); its cross-entropy is added with a weight that rises over training:
`--schedule ramp_up` (the library's ramp-up to `--max-unsupervised-weight`) or `--schedule lee`
(0 until epoch `--t1`, linear to `--alpha-f` at epoch `--t2`).

After each epoch the mask rate and the accuracy of the pseudo-labels are measured on
`--monitor-rows` unlabeled training rows against their hidden labels
(`tfssl.models.PseudoLabelMonitor`) and printed at the end.

Example:

    .venv/bin/python estimators/pseudo_label.py --backbone mlp --train-size 20000 --epochs 15 \\
        --batch-size 100 --labeled-per-batch 50 --learning-rate 0.001 --threshold 0.95 \\
        --max-unsupervised-weight 1 --ramp-up-epochs 5 --unscaled-weight \\
        --supervised-normalize labeled
"""

import keras

import _common
from benchmarking.methods import METHODS


def build_parser():
    parser = _common.base_parser(__doc__)
    _common.add_consistency_args(parser, max_unsupervised_weight=3.0)
    parser.add_argument("--threshold", type=float, default=0.0, help="confidence to keep")
    parser.add_argument("--schedule", choices=("ramp_up", "lee"), default="ramp_up")
    parser.add_argument("--t1", type=int, default=100, help="lee: epoch the weight starts")
    parser.add_argument("--t2", type=int, default=600, help="lee: epoch it reaches --alpha-f")
    parser.add_argument("--alpha-f", type=float, default=3.0, help="lee: final weight")
    parser.add_argument("--monitor-rows", type=int, default=2000, help="0: no monitor")
    return parser


def run(args):
    """Trains Pseudo-Label with the parsed flags; returns the test accuracy."""
    keras.utils.set_random_seed(args.seed)
    (x, y_semi), test = _common.load_data(args)
    train, fit_kwargs = _common.batches("pseudo_label", x, y_semi, args)
    monitor = _common.pseudo_label_monitor(x, y_semi, args)

    strategy = _common.make_strategy(args)
    with strategy.scope():
        kwargs = _common.semi_supervised_kwargs(args)
        model = METHODS["pseudo_label"].model(
            _common.build_backbone(args),
            threshold=args.threshold,
            schedule=args.schedule,
            t1=args.t1,
            t2=args.t2,
            alpha_f=args.alpha_f,
            num_samples=None if kwargs["num_labeled"] is None else len(x),
            **kwargs,
        )
        model.compile(
            optimizer=keras.optimizers.Adam(args.learning_rate),
            metrics=["accuracy"],
            steps_per_execution=_common.steps_per_execution(args),
        )

    return _common.fit_and_export("pseudo_label", model, train, test, args, monitor, **fit_kwargs)


def main(argv=None):
    run(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
