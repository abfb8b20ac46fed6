"""Adversarial training (FGM or PGD) on the labeled rows of Fashion-MNIST.

Goodfellow et al., arXiv 1412.6572 (FGM), Madry et al., arXiv 1706.06083 (PGD); the Keras
port of the seed's PyTorch `FGM` / `PGD` recipe (seed 003, section 10). Each step adds to the
cross-entropy of a labeled batch the cross-entropy at `x + r`, the L2 perturbation of length
`--epsilon` that raises it most to first order (FGM), or after `--steps` projected steps of
`--step-size` (PGD). The run takes as many steps as the supervised baseline
(estimators/supervised.py), on the same labeled rows.

After training it prints the test accuracy, then the accuracy under an FGM attack of each
`--attack-epsilons` (per-sample L2 norm, inputs in [0, 1]): the robustness curve.

Example:

    .venv/bin/python estimators/adversarial.py --backbone mlp --train-size 20000 \\
        --epochs 15 --method pgd --epsilon 1.0 --attack-epsilons 0.5 1 2
"""

import keras
import numpy as np

import _common
from benchmarking.methods import METHODS
from tfssl import models


def build_parser():
    parser = _common.base_parser(__doc__)
    parser.add_argument("--method", choices=("fgm", "pgd"), default="fgm")
    parser.add_argument("--epsilon", type=float, default=1.0, help="L2 radius of r")
    parser.add_argument("--step-size", type=float, default=0.3, help="PGD's step")
    parser.add_argument("--steps", type=int, default=3, help="PGD's number of steps")
    parser.add_argument(
        "--norm",
        choices=("sample", "batch"),
        default="sample",
        help="normalise the gradient per sample (the papers) or over the batch (the seed)",
    )
    parser.add_argument(
        "--attack-epsilons",
        type=float,
        nargs="*",
        default=[],
        help="report the test accuracy under an FGM attack of each of these radii",
    )
    return parser


def robust_accuracy(backbone, test, epsilon, batch_size):
    """Test accuracy of `backbone` on FGM-perturbed test inputs (per-sample norm)."""
    x_test, y_test = test
    correct = 0
    for start in range(0, len(x_test), batch_size):
        x, y = x_test[start : start + batch_size], y_test[start : start + batch_size]
        x_adv = models.adversarial_inputs(backbone, x, y, epsilon)
        correct += int(np.sum(np.argmax(backbone(x_adv, training=False), -1) == y))
    return correct / len(x_test)


def run(args):
    """Trains with adversarial training; returns the clean test accuracy."""
    keras.utils.set_random_seed(args.seed)
    (x, y_semi), test = _common.load_data(args)
    train, fit_kwargs = _common.batches("adversarial", x, y_semi, args)

    strategy = _common.make_strategy(args)
    with strategy.scope():
        model = METHODS["adversarial"].model(
            _common.build_backbone(args),
            method=args.method,
            epsilon=args.epsilon,
            step_size=args.step_size,
            steps=args.steps,
            norm=args.norm,
        )
        model.compile(
            optimizer=keras.optimizers.Adam(args.learning_rate),
            metrics=["accuracy"],
            steps_per_execution=_common.steps_per_execution(args),
        )

    accuracy = _common.fit_and_export("adversarial", model, train, test, args, **fit_kwargs)
    for epsilon in args.attack_epsilons:
        attacked = robust_accuracy(model.backbone, test, epsilon, args.batch_size)
        print(f"adversarial FGM epsilon {epsilon} test accuracy: {attacked:.4f}")
    return accuracy


def main(argv=None):
    run(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
