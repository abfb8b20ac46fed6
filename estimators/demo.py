"""Demo: the Π-model against the supervised baseline when half of the 1000 labels are wrong.

What `make demo` runs (about 3 minutes on 2 idle CPU cores). Practitioners' labels are rarely
clean, and label noise is where the consistency methods of this library pay the most on
Fashion-MNIST within a CPU budget: BENCHMARKS.md, protocol `noise50`, five seeds, Π-model minus
supervised +18.8 points, paired 95% interval [+17.0, +20.6] (with clean labels, protocol
`clean-1000`: +1.0 point, [+0.4, +1.6]). The demo trains that protocol's setting with seed 0:
the same `tfssl.backbones.mlp` (Gaussian input noise 0.3, dense 500-250, dropout 0.3) trained
twice on the first 20,000 training rows, 1000 of them labeled (100 per class) and 500 of those
1000 labels replaced by another class (`--label-noise 0.5`, `tfssl.data.noisy_labels`); it
prints both test accuracies (all 10,000 test images, clean labels) and exports the Π-model as
the next version under `saved_models/fashion_pi`:

- the supervised baseline (`supervised.py`): the 1000 labeled rows only, batches of 100;
- the Π-model (`pi_model.py`, Laine & Aila, arXiv 1610.02242): all 20,000 rows, each batch
  50 unlabeled + 50 labeled rows; the MSE between two noisy passes of every row keeps the
  network from fitting the wrong labels as closely as the cross-entropy alone would.

Both take the same 5700 optimizer steps (15 epochs of 380 batches), Adam 0.001; the
cross-entropy is averaged over the labeled rows and the maximum unsupervised weight, 30, is
used as is (`--unscaled-weight`), ramped up over 5 epochs. `--seed` and `--permute-rows` run
it on other labels and other training rows. Every flag of `pi_model.py` applies to both runs;
the defaults below are the demo's.
"""

import argparse
import os
import time

import pi_model
import supervised

_REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_parser():
    parser = pi_model.build_parser()
    parser.description = __doc__
    parser.set_defaults(
        backbone="mlp",
        train_size=20_000,
        epochs=15,
        learning_rate=0.001,
        labeled_per_batch=50,
        supervised_normalize="labeled",
        unscaled_weight=True,
        max_unsupervised_weight=30.0,
        ramp_up_epochs=5,
        label_noise=0.5,
        export=os.path.join(_REPOSITORY, "saved_models", "fashion_pi"),
    )
    return parser


def run(args):
    """Trains both models with the parsed flags; returns their test accuracies by name."""
    start = time.perf_counter()
    # Only the Π-model is exported.
    baseline = supervised.run(argparse.Namespace(**{**vars(args), "export": None}))
    method = pi_model.run(args)
    minutes = (time.perf_counter() - start) / 60.0

    rows = args.train_size or "all"
    order = "file order" if args.permute_rows is None else f"permutation {args.permute_rows}"
    print(
        f"\nFashion-MNIST, {args.num_labeled} labels of {rows} training rows ({order}), "
        f"{args.label_noise:.0%} of the labels wrong, {args.backbone} backbone, "
        f"{args.epochs} epochs, seed {args.seed}"
    )
    print(f"{'method':<24}{'test accuracy':>14}")
    print(f"{'supervised':<24}{baseline:>14.4f}")
    print(f"{'pi_model':<24}{method:>14.4f}")
    print(f"pi_model - supervised: {100 * (method - baseline):+.1f} points")
    print(f"wall time: {minutes:.1f} min")
    return {"supervised": baseline, "pi_model": method}


def main(argv=None):
    run(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
