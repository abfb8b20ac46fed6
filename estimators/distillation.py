"""Knowledge distillation on Fashion-MNIST with few labels: offline or mutual.

`--mode offline` (Hinton et al., "Distilling the Knowledge in a Neural Network", arXiv
1503.02531; seeds 003 and 004): a teacher (the same backbone) is first trained on the labeled
rows only, like `supervised.py`, for `--teacher-epochs`; then `tfssl.models.Distiller` trains a
fresh student on every row with `alpha * CE(labels) + (1 - alpha) * T^2 * KL(teacher_T ||
student_T)`, so the teacher teaches through the unlabeled rows (label -1 rows add only the
soft term). Both test accuracies are printed.

`--mode mutual` (Zhang et al., "Deep Mutual Learning", arXiv 1706.00384): `--students`
backbones train together, each on the labels and the KL to the others' predictions;
student 0 is evaluated and exported.

Example:

    .venv/bin/python estimators/distillation.py --backbone mlp --train-size 20000 \\
        --labeled-per-batch 50 --learning-rate 0.001 --epochs 15 --supervised-normalize labeled
"""

import keras

import _common
from benchmarking.methods import METHODS


def build_parser():
    parser = _common.base_parser(__doc__)
    parser.add_argument("--mode", choices=("offline", "mutual"), default="offline")
    parser.add_argument("--temperature", type=float, default=3.0, help="softmax temperature T")
    parser.add_argument(
        "--alpha", type=float, default=0.1, help="offline: weight of the labels' cross-entropy"
    )
    parser.add_argument(
        "--teacher-epochs", type=int, help="offline: the teacher's epochs (default: --epochs)"
    )
    parser.add_argument("--students", type=int, default=2, help="mutual: number of students")
    parser.add_argument(
        "--label-smoothing", type=float, default=0.0, help="of the supervised cross-entropy"
    )
    _common.add_supervised_normalize_arg(parser)
    return parser


def run(args):
    """Trains the distilled student (or the mutual students); returns its test accuracy."""
    keras.utils.set_random_seed(args.seed)
    (x, y_semi), test = _common.load_data(args)
    train, fit_kwargs = _common.batches("distiller", x, y_semi, args)
    common = {
        "label_smoothing": args.label_smoothing,
        "supervised_normalize": args.supervised_normalize,
    }

    strategy = _common.make_strategy(args)
    with strategy.scope():
        if args.mode == "offline":
            epochs = args.teacher_epochs or args.epochs
            teacher = _common.train_first_stage("teacher", x, y_semi, test, args, epochs)
            model = METHODS["distiller"].model(
                _common.build_backbone(args),
                teacher,
                temperature=args.temperature,
                alpha=args.alpha,
                **common,
            )
        else:
            students = [_common.build_backbone(args) for _ in range(args.students)]
            model = METHODS["mutual_learning"].model(
                students, temperature=args.temperature, **common
            )
        model.compile(
            optimizer=keras.optimizers.Adam(args.learning_rate),
            metrics=["accuracy"],
            steps_per_execution=_common.steps_per_execution(args),
        )

    return _common.fit_and_export(
        f"distillation ({args.mode})", model, train, test, args, **fit_kwargs
    )


def main(argv=None):
    run(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
