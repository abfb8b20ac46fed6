"""The protocols of the benchmark: data, labels, label noise, backbone, budget, batches.

A protocol is one `Protocol` in `PROTOCOLS`; the runs of every method under it share its
training rows, labels (drawn with the seed), backbone and number of optimizer steps.
`DEFAULT_PROTOCOLS` are the ones `python estimators/benchmark.py` runs without
`--protocols`. To add one, add an entry, e.g. all 60,000 training rows with 1000 labels and
the same 5900 steps:

```python
"rows60k-1000": Protocol(
    "rows60k-1000", "Fashion-MNIST, 1000 clean labels among all 60,000 rows",
    train_size=60_000, epochs=5,
    why="the unlabeled pool is three times larger than in clean-1000",
),
```

and, once measured, put its name into `DEFAULT_PROTOCOLS` (the planned cost is printed
before every run). Methods take their hyper-parameters for a protocol from
`methods.METHODS[...].per_protocol[protocol.name]` when present.
"""

import dataclasses
import functools

import numpy as np

from tfssl import backbones, data, datasets

__all__ = [
    "BACKBONES",
    "DEFAULT_PROTOCOLS",
    "PROTOCOLS",
    "Backbone",
    "Protocol",
    "load",
    "load_rows",
]

IMAGE_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
# The Fashion-MNIST training split; a protocol uses its first `train_size` rows.
TRAIN_ROWS = 60_000


@dataclasses.dataclass(frozen=True)
class Backbone:
    """A backbone every method of a protocol shares.

    Attributes:
        build: A function of no argument returning a fresh `keras.Model` (images to logits).
        text: How the report describes it.
        seconds_per_step: Seconds of one supervised step on 2 idle CPU cores, used to plan
            a run before any has been measured.
    """

    build: object
    text: str
    seconds_per_step: float


BACKBONES = {
    "mlp": Backbone(
        build=lambda: backbones.mlp(IMAGE_SHAPE, NUM_CLASSES, units=(500, 250)),
        text="`tfssl.backbones.mlp((28, 28, 1), 10, units=(500, 250))` (flatten, Gaussian "
        "input noise σ 0.3, dense ReLU layers of 500 and 250 units each followed by dropout "
        "0.3, dense 10 logits)",
        # CPU seconds of a supervised epoch (380 steps, steps_per_execution=32) after the
        # first, measured at commit 1122198: 3.1 s; the model is compute-bound on 2 cores.
        seconds_per_step=0.0082,
    ),
    # What --quick trains: it only exercises the code.
    "mlp-tiny": Backbone(
        build=lambda: backbones.mlp(IMAGE_SHAPE, NUM_CLASSES, units=(16,)),
        text="`tfssl.backbones.mlp((28, 28, 1), 10, units=(16,))`",
        seconds_per_step=0.01,
    ),
}


@dataclasses.dataclass(frozen=True)
class Protocol:
    """One benchmark setting on Fashion-MNIST.

    Every method trains `epochs` passes over the unlabeled rows, each batch holding
    `batch_size - labeled_per_batch` unlabeled rows and `labeled_per_batch` labeled rows
    from an endless reshuffled stream (`tfssl.data.make_dataset`); supervised-only and the
    all-labels ceiling take as many steps, batches of `batch_size` labeled rows.

    Attributes:
        name: Registry key, used by `--protocols` and in `results.json`.
        title: One line for the report's heading.
        train_size: The first rows of the 60,000 training rows that form the training set.
        num_labeled: Rows that keep a label, the same number per class, drawn with the seed.
        label_noise: Share of those labels replaced by another class
            (`tfssl.data.noisy_labels`).
        backbone: A key of `BACKBONES`.
        epochs: Passes over the unlabeled rows.
        batch_size: Rows per batch.
        labeled_per_batch: Labeled rows in every semi-supervised batch (`None`: batches
            drawn from all rows alike).
        learning_rate: Adam's, constant.
        supervised_normalize: `SemiSupervisedModel`'s: the labeled rows' cross-entropy is
            averaged over the labeled rows ("labeled") or the batch ("batch").
        ceiling: Name of the protocol whose all-labels run (every training row with its
            true label) is this protocol's ceiling, or `None` for no ceiling.
        test_rows: Evaluate on the first rows of the 10,000 test rows only (`None`: all).
        steps_per_execution: Keras' `compile` argument: steps per `tf.function` call. It
            changes no number (same batches, same order) and saves the per-step Python
            overhead, which dominates the step of a small network on a CPU.
        run_eagerly: Keras' `compile` argument (`--quick`: tracing would cost more than
            the few steps it runs).
        why: The reason this protocol is in the benchmark, for the report.
    """

    name: str
    title: str
    train_size: int = 20_000
    num_labeled: int = 1000
    label_noise: float = 0.0
    backbone: str = "mlp"
    epochs: int = 15
    batch_size: int = 100
    labeled_per_batch: int | None = 50
    learning_rate: float = 0.001
    supervised_normalize: str = "labeled"
    ceiling: str | None = None
    test_rows: int | None = None
    steps_per_execution: int = 32
    run_eagerly: bool = False
    why: str = ""

    @property
    def steps_per_epoch(self):
        if self.labeled_per_batch is None:
            return -(-self.train_size // self.batch_size)
        unlabeled = self.train_size - self.num_labeled
        return -(-unlabeled // (self.batch_size - self.labeled_per_batch))

    @property
    def steps(self):
        """Optimizer steps of every run of this protocol."""
        return self.epochs * self.steps_per_epoch

    def quick(self):
        """The same protocol on a budget that only exercises the code (`--quick`)."""
        return dataclasses.replace(
            self, train_size=150, num_labeled=50, backbone="mlp-tiny", epochs=1,
            batch_size=50, labeled_per_batch=25, test_rows=200, steps_per_execution=1,
            run_eagerly=True,
        )

    def describe(self):
        """The protocol in words, for the report."""
        unlabeled = self.train_size - self.num_labeled
        noise = (
            f" {100 * self.label_noise:.0f}% of those labels are wrong: replaced by another "
            f"class drawn uniformly with the seed (`tfssl.data.noisy_labels`)."
            if self.label_noise else ""
        )
        return (
            f"Fashion-MNIST (Xiao et al. 2017): the first {self.train_size:,} training rows, "
            f"of which {self.num_labeled:,} keep their label ({self.num_labeled // NUM_CLASSES}"
            f" per class, drawn with the seed by `tfssl.data.mask_labels`) and {unlabeled:,} "
            f"are unlabeled.{noise} Test: the "
            + (f"first {self.test_rows:,} rows of the " if self.test_rows else "")
            + f"10,000-row test set. Backbone for every method: {BACKBONES[self.backbone].text}."
            f" Budget for every method: {_count(self.epochs, 'epoch')} of {self.steps_per_epoch}"
            f" steps ="
            f" {self.steps:,} steps, Adam lr {self.learning_rate:g} constant. Semi-supervised "
            f"batches: {self.batch_size - self.labeled_per_batch} unlabeled rows (covering the "
            f"unlabeled pool once per epoch) and {self.labeled_per_batch} labeled rows from an "
            f"endless reshuffled stream, the cross-entropy averaged over the "
            f"{'labeled rows' if self.supervised_normalize == 'labeled' else 'batch'} "
            f"(`supervised_normalize=\"{self.supervised_normalize}\"`). Supervised-only and "
            f"the ceiling: batches of {self.batch_size} labeled rows, same number of steps."
            + (f" Ceiling: every one of the {self.train_size:,} rows with its true label."
               if self.ceiling else "")
        )


_CLEAN = "The protocol of the earlier benchmark, kept for continuity."
PROTOCOLS = {
    protocol.name: protocol
    for protocol in (
        Protocol(
            "clean-1000", "Fashion-MNIST, 1000 clean labels among 20,000 rows",
            ceiling="clean-1000", why=_CLEAN,
        ),
        Protocol(
            "noise20", "Fashion-MNIST, 1000 labels among 20,000 rows, 20% of them wrong",
            label_noise=0.2, ceiling="clean-1000",
            why="Labels in practice are rarely clean; seed 000 claims the methods help most "
            "there.",
        ),
        Protocol(
            "noise50", "Fashion-MNIST, 1000 labels among 20,000 rows, 50% of them wrong",
            label_noise=0.5, ceiling="clean-1000",
            why="Labels in practice are rarely clean; seed 000 claims the methods help most "
            "there.",
        ),
        # Candidates for a clean protocol in which unlabeled data can matter. Not in
        # DEFAULT_PROTOCOLS until a measurement chooses one (issue 13).
        Protocol(
            "clean-250", "Fashion-MNIST, 250 clean labels among 20,000 rows",
            num_labeled=250, epochs=15, ceiling="clean-1000",
            why="Fewer labels leave more for the unlabeled rows to add.",
        ),
        Protocol(
            "rows60k-1000", "Fashion-MNIST, 1000 clean labels among all 60,000 rows",
            train_size=TRAIN_ROWS, epochs=5, ceiling="rows60k-1000",
            why="Three times the unlabeled rows of clean-1000 in about the same steps.",
        ),
    )
}
DEFAULT_PROTOCOLS = ("clean-1000", "noise20", "noise50")


def _count(number, noun):
    return f"{number} {noun}" + ("" if number == 1 else "s")


@functools.lru_cache(maxsize=2)
def _fashion(data_dir):
    (x, y), (x_test, y_test) = datasets.load_fashion_mnist(data_dir)
    return (_images(x), y), (_images(x_test), y_test)


def _images(images):
    return (images[..., np.newaxis] / 255.0).astype(np.float32)


def load_rows(train_size=None, num_labeled=1000, seed=0, label_noise=0.0, permute_rows=None,
              validation_rows=None, test_rows=None, data_dir=None):
    """Fashion-MNIST rows with few (possibly wrong) labels: the one loader of the harness.

    The benchmark (`load`), the sweep and the per-method scripts (`_common.load_data`) all
    read their data here. Images are float32 `(N, 28, 28, 1)` in [0, 1].

    Example:

    ```python
    rows = load_rows(train_size=20_000, num_labeled=1000, seed=0, label_noise=0.5)
    rows["x"].shape, int((rows["y_semi"] >= 0).sum())   # (20000, 28, 28, 1), 1000
    ```

    Args:
        train_size: The first rows of the 60,000 training rows that form the training set
            (`None`: all).
        num_labeled: Rows that keep a label, the same number per class, drawn with `seed`
            (`tfssl.data.mask_labels`).
        seed: Seed of the labeled rows and of the label noise.
        label_noise: Share of the kept labels replaced by another class
            (`tfssl.data.noisy_labels`).
        permute_rows: Seed of a permutation of the 60,000 training rows applied first, so
            that "the first `train_size` rows" are other rows (`None`: the file's order).
        validation_rows: Score on the last `validation_rows` training rows (after the
            permutation), never among the first `train_size`, instead of the test set.
        test_rows: Score on the first `test_rows` test rows only (`None`: all 10,000).
        data_dir: Folder of the Fashion-MNIST IDX files (default: `tfssl.datasets`' search).

    Returns:
        A dict: `x` (training images), `y_semi` (labels, `-1` for unlabeled rows), `y`
        (every training row's true label), `x_test` and `y_test` (the rows to score on).

    Raises:
        ValueError: If `train_size` exceeds the training rows, `test_rows` the test rows,
            or the training rows would overlap the validation rows.
    """
    (x, y), (x_test, y_test) = _fashion(data_dir)
    if permute_rows is not None:
        order = np.random.default_rng(permute_rows).permutation(len(x))
        x, y = x[order], y[order]
    train_size = len(x) if train_size is None else train_size
    available = len(x) - (validation_rows or 0)
    if not 0 < train_size <= available:
        raise ValueError(f"train_size must be in [1, {available}] (the training rows"
                         f"{' before the validation rows' if validation_rows else ''}). "
                         f"Received: train_size={train_size}")
    if validation_rows:
        x_test, y_test = x[-validation_rows:], y[-validation_rows:]
    elif test_rows is not None:
        if not 0 < test_rows <= len(x_test):
            raise ValueError(f"test_rows must be in [1, {len(x_test)}]. Received: "
                             f"test_rows={test_rows}")
        x_test, y_test = x_test[:test_rows], y_test[:test_rows]
    x, y = x[:train_size], y[:train_size]
    y_semi = data.mask_labels(y, num_labeled, seed=seed)
    if label_noise:
        y_semi = data.noisy_labels(y_semi, label_noise, seed, num_classes=NUM_CLASSES)
    return {"x": x, "y_semi": y_semi, "y": y, "x_test": x_test, "y_test": y_test}


def load(protocol, seed, data_dir=None, validation_rows=None):
    """The protocol's data for one seed (`load_rows` with the protocol's fields).

    Args:
        protocol: A `Protocol`.
        seed: Seed of the labeled rows and of the label noise.
        data_dir: Folder of the Fashion-MNIST files (default: `tfssl.datasets`' search).
        validation_rows: Score on the last `validation_rows` of the 60,000 training rows
            instead of the test set (the sweep's rows; never the test set).

    Returns:
        The dict of `load_rows`.
    """
    return load_rows(protocol.train_size, protocol.num_labeled, seed, protocol.label_noise,
                     validation_rows=validation_rows, test_rows=protocol.test_rows,
                     data_dir=data_dir)
