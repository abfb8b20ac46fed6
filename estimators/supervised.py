"""Supervised baseline: the same backbone trained on the labeled rows only.

The reference point of the semi-supervised scripts (the "supervised" column of the Temporal
Ensembling paper, Laine & Aila, arXiv 1610.02242, table 2): `tfssl.backbones.conv_net` with
its augmentation and dropout, a plain Keras model compiled with a sparse cross-entropy on
logits, trained with the same optimizer on only the `--num-labeled` labeled rows.

It takes as many optimizer steps as the semi-supervised run with the same flags: every epoch
has the batches per epoch of that run (`--train-size`, `--batch-size`,
`--labeled-per-batch`), each a batch of `--batch-size` labeled rows drawn from an endless
reshuffled stream (the registry's "supervised" batch layout). Compared with a fixed number of
passes over the 1000 labels, the semi-supervised methods get no advantage from training
longer.

Example:

    .venv/bin/python estimators/supervised.py --train-size 10000 --width 0.25 --epochs 12
"""

import keras

import _common


def build_parser():
    return _common.base_parser(__doc__)


def run(args):
    """Trains the baseline with the parsed flags; returns the test accuracy."""
    keras.utils.set_random_seed(args.seed)
    (x, y_semi), test = _common.load_data(args)
    train, fit_kwargs = _common.batches("supervised", x, y_semi, args)

    strategy = _common.make_strategy(args)
    with strategy.scope():
        model = _common.build_backbone(args)
        model.compile(
            optimizer=keras.optimizers.Adam(args.learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
            steps_per_execution=_common.steps_per_execution(args),
        )
    _common.across_workers(model)

    return _common.fit_and_export("supervised", model, train, test, args, **fit_kwargs)


def main(argv=None):
    run(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
