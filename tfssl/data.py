"""Few-label splits and `tf.data` pipelines that carry sample indices.

Semi-supervised training sets keep every sample and mark the unlabeled ones with the label
`UNLABELED` (-1): `mask_labels` hides all but a few labels, `split_labeled` separates the two
parts again, and `make_dataset` turns arrays into batches of `({"x": x, "idx": idx}, y)`,
where `idx` is each sample's row in `x`. Temporal Ensembling (Laine & Aila, "Temporal
Ensembling for Semi-Supervised Learning", arXiv:1610.02242) keys its per-sample ensemble by
that index, as the seed's TF1 code does with its `idx` feature.

With `labeled_per_batch`, batches mix a fixed number of labeled rows into each batch of
unlabeled rows, as the Mean Teacher reference code's `TwoStreamBatchSampler` does (Tarvainen
& Valpola, "Mean teachers are better role models", arXiv:1703.01780).

`make_dataset` holds the arrays as graph constants (2 GB at most, all on every worker). Larger
data streams: `from_dataset` numbers the rows of any `tf.data.Dataset` (a generator, a file
reader) with `Dataset.enumerate` before sharding them per worker, and `write_tfrecords` /
`from_tfrecords` store each row's `idx` in its record, so workers read disjoint files. These
live in `tfssl._streams` and `tfssl._tfrecords` and are re-exported here.
"""

import numpy as np
import tensorflow as tf

from tfssl._labels import UNLABELED, check_labels, check_lengths, is_int
from tfssl._streams import from_dataset
from tfssl._tfrecords import from_tfrecords, tfrecords_info, write_tfrecords

__all__ = [
    "UNLABELED",
    "from_dataset",
    "from_tfrecords",
    "make_dataset",
    "mask_labels",
    "noisy_labels",
    "split_labeled",
    "tfrecords_info",
    "write_tfrecords",
]


def mask_labels(y, num_labeled, seed, balanced=True):
    """Hides all but `num_labeled` labels, marking the others `UNLABELED`.

    The kept labels are drawn at random among the rows that are labeled in `y`; with
    `balanced=True` every class present keeps the same number, as in the papers'
    "4,000 labels" settings (400 per CIFAR-10 class).

    Example:

    ```python
    y_semi = tfssl.data.mask_labels(y, num_labeled=1000, seed=0)
    np.bincount(y_semi[y_semi >= 0])  # array([100, 100, ..., 100])
    ```

    Args:
        y: Integer labels of shape `(N,)`. Rows already equal to `UNLABELED` stay unlabeled.
        num_labeled: How many labels to keep, `0 <= num_labeled <=` the number of labeled
            rows.
        seed: Seed of the NumPy random generator (`np.random.default_rng(seed)`); the same
            seed keeps the same rows.
        balanced: Whether each class keeps `num_labeled / num_classes` labels. Defaults to
            `True`.

    Returns:
        A new `int64` array of shape `(N,)` equal to `y` on the kept rows and `UNLABELED`
        elsewhere.

    Raises:
        ValueError: If `y` is not a 1-D integer array or holds a value below -1,
            `num_labeled` is negative or larger than the number of labeled rows, or, when
            balanced, `num_labeled` is not a multiple of the number of classes or a class has
            too few rows.
    """
    y = check_labels(y)
    if not is_int(num_labeled):
        raise ValueError(f"num_labeled must be an integer. Received: num_labeled={num_labeled!r}")
    candidates = np.flatnonzero(y != UNLABELED)
    if not 0 <= num_labeled <= len(candidates):
        raise ValueError(
            f"num_labeled must be in [0, {len(candidates)}] (the number of labeled rows of "
            f"y). Received: num_labeled={num_labeled}"
        )
    rng = np.random.default_rng(seed)
    # With num_labeled=0 there may be no class at all to balance over.
    if balanced and num_labeled:
        classes = np.unique(y[candidates])
        if num_labeled % len(classes):
            raise ValueError(
                f"num_labeled must be a multiple of the number of classes ({len(classes)}) "
                f"when balanced=True. Received: num_labeled={num_labeled}"
            )
        per_class = num_labeled // len(classes)
        kept = []
        for label in classes:
            rows = candidates[y[candidates] == label]
            if len(rows) < per_class:
                raise ValueError(
                    f"Class {label} has {len(rows)} labeled rows, fewer than the "
                    f"{per_class} per class that num_labeled={num_labeled} over "
                    f"{len(classes)} classes needs."
                )
            kept.append(rng.choice(rows, size=per_class, replace=False))
        kept = np.concatenate(kept)
    else:
        kept = rng.choice(candidates, size=num_labeled, replace=False)
    masked = np.full_like(y, UNLABELED)
    masked[kept] = y[kept]
    return masked


def noisy_labels(y_semi, rate, seed, num_classes=None):
    """Replaces a share `rate` of the labeled rows' labels by another class.

    Simulates annotation mistakes: `round(rate * num_labeled)` labeled rows, drawn without
    replacement, get a wrong class drawn uniformly among the `num_classes - 1` others
    (`(y + k) % num_classes` with `k` uniform in `[1, num_classes)`). Unlabeled rows stay
    `UNLABELED`. Seed 000 (Temporal Ensembling, Laine & Aila, arXiv 1610.02242, section 3.3)
    claims the consistency methods tolerate such noise; `estimators/demo.py` measures it.

    Example:

    ```python
    y_semi = tfssl.data.mask_labels(y, num_labeled=1000, seed=0)
    y_noisy = tfssl.data.noisy_labels(y_semi, rate=0.5, seed=0)
    np.sum(y_noisy != y_semi)  # 500
    ```

    Args:
        y_semi: Integer labels of shape `(N,)`, `UNLABELED` (-1) for unlabeled rows.
        rate: Share of the labeled rows to corrupt, in `[0, 1]`.
        seed: Seed of the NumPy random generator (`np.random.default_rng(seed)`) that draws
            the rows and their wrong classes.
        num_classes: Number of classes. Defaults to `None`: the largest label plus one.

    Returns:
        A new `int64` array of shape `(N,)`: `y_semi` with exactly
        `round(rate * num_labeled)` labels changed, each to a different class.

    Raises:
        ValueError: If `y_semi` is not a 1-D integer array or holds a value below -1,
            `rate` is outside `[0, 1]`, or `num_classes` is below 2 or not above every label.
    """
    y_semi = check_labels(y_semi)
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"`rate` must be in [0, 1]. Received: rate={rate}")
    labeled = np.flatnonzero(y_semi != UNLABELED)
    if num_classes is None:
        num_classes = int(y_semi.max()) + 1 if len(labeled) else 2
    if not is_int(num_classes) or num_classes < 2 or num_classes <= y_semi.max():
        raise ValueError(
            f"`num_classes` must be an integer >= 2 and above every label (max "
            f"{y_semi.max()}). Received: num_classes={num_classes!r}"
        )
    rng = np.random.default_rng(seed)
    rows = rng.choice(labeled, size=int(round(rate * len(labeled))), replace=False)
    noisy = y_semi.copy()
    shift = rng.integers(1, num_classes, size=len(rows))
    noisy[rows] = (y_semi[rows] + shift) % num_classes
    return noisy


def split_labeled(x, y):
    """Splits rows into the labeled part and the unlabeled inputs.

    Example:

    ```python
    (x_labeled, y_labeled), x_unlabeled = tfssl.data.split_labeled(x, y_semi)
    ```

    Args:
        x: Array of `N` rows (any shape and dtype).
        y: Integer labels of shape `(N,)`, `UNLABELED` for unlabeled rows.

    Returns:
        `((x_labeled, y_labeled), x_unlabeled)`, rows in their original order; `y_labeled`
        is `int64`.

    Raises:
        ValueError: If `y` is not a 1-D integer array, holds a value below -1, or
            `len(x) != len(y)`.
    """
    x = np.asarray(x)
    y = check_labels(y)
    check_lengths(x, y)
    labeled = y != UNLABELED
    return (x[labeled], y[labeled]), x[~labeled]


def make_dataset(
    x,
    y=None,
    batch_size=100,
    shuffle=False,
    seed=None,
    drop_remainder=False,
    labeled_per_batch=None,
):
    """Builds a `tf.data.Dataset` of batches that carry each sample's row index.

    Elements are `({"x": x_batch, "idx": idx_batch}, y_batch)`, or only the dict when `y`
    is `None`. `idx` (`int64`) is the row of each sample in `x`, so models that keep
    per-sample state (Temporal Ensembling) can read and write it. The pipeline shuffles and
    batches row indices, then gathers the rows of `x` and `y` a batch at a time; `x` keeps
    its dtype (a `uint8` image stays `uint8`), and arrays of text become `tf.string`.
    `x` and `y` are embedded in the dataset as constants, so they must fit in memory (and
    in a graph: about 2 GB); `from_dataset` and `from_tfrecords` stream larger data.

    By default every row appears exactly once per epoch. With `labeled_per_batch=k`, each
    batch is `batch_size - k` unlabeled rows followed by `k` labeled rows: the unlabeled rows
    cover the epoch once, and the labeled rows are drawn from an endless stream that
    reshuffles the labeled set whenever it is used up, as the Mean Teacher reference code's
    `TwoStreamBatchSampler` does. Each group of `k` labeled rows comes from one permutation,
    so no row appears twice in a batch. With `shuffle=False` the unlabeled rows come in
    order and the labeled stream cycles through the labeled rows in order.

    The dataset is finite and can be iterated again for every epoch (as `model.fit` does),
    with a new shuffle each time; given `seed`, the sequence of epochs is reproducible.
    Its `cardinality()` is the number of batches per epoch: `ceil(n / b)` (`floor` with
    `drop_remainder=True`), where `n` is `len(x)` and `b` is `batch_size`, or with
    `labeled_per_batch=k`, `n` is the number of unlabeled rows and `b` is `batch_size - k`.

    Example:

    ```python
    y_semi = tfssl.data.mask_labels(y, num_labeled=1000, seed=0)
    train = tfssl.data.make_dataset(x, y_semi, batch_size=100, shuffle=True, seed=0)
    features, labels = next(iter(train))
    features["x"].shape, features["idx"].shape  # (100, 28, 28), (100,)
    ```

    Args:
        x: Array of `N` rows: numbers of any shape and dtype, or `str`/`bytes` text (a
            NumPy `str` or `object` array).
        y: Integer labels of shape `(N,)`, `UNLABELED` (-1) for unlabeled rows, or `None`
            for inputs only. Defaults to `None`.
        batch_size: Rows per batch. Defaults to `100`.
        shuffle: Whether to shuffle the rows anew each epoch. Defaults to `False`.
        seed: Seed of the shuffles, for reproducible epochs. Defaults to `None`.
        drop_remainder: Whether to drop the last, smaller batch of an epoch. Defaults to
            `False`.
        labeled_per_batch: Number `k` of labeled rows in every batch, with
            `0 < k < batch_size` and `k` at most the number of labeled rows; requires `y`.
            Defaults to `None`, which batches all rows in one stream.

    Returns:
        A `tf.data.Dataset`.

    Raises:
        ValueError: If `len(x) != len(y)`, `x` has no rows, `y` holds a value that is not an
            integer `>= -1`, `batch_size` or `labeled_per_batch` is out of range, or an
            epoch would hold no batch.
    """
    x = np.asarray(x)
    if x.ndim == 0 or len(x) == 0:
        raise ValueError(f"x must hold at least one row. Received: x.shape={x.shape}")
    if not is_int(batch_size) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer. Received: {batch_size=}")
    if y is not None:
        y = check_labels(y)
        check_lengths(x, y)
    if labeled_per_batch is None:
        num_rows, chunk = len(x), batch_size
    else:
        if y is None:
            raise ValueError("labeled_per_batch needs labels y. Received: y=None")
        labeled = np.flatnonzero(y != UNLABELED)
        unlabeled = np.flatnonzero(y == UNLABELED)
        k = labeled_per_batch
        if not is_int(k) or not 0 < k < batch_size:
            raise ValueError(
                f"labeled_per_batch must be an integer in (0, batch_size={batch_size}). "
                f"Received: labeled_per_batch={labeled_per_batch!r}"
            )
        if k > len(labeled):
            raise ValueError(
                f"labeled_per_batch must be at most the number of labeled rows "
                f"({len(labeled)}). Received: labeled_per_batch={k}"
            )
        num_rows, chunk = len(unlabeled), batch_size - k
    num_batches = num_rows // chunk if drop_remainder else -(-num_rows // chunk)
    if num_batches == 0:
        raise ValueError(
            f"An epoch would hold no batch: {num_rows} rows in batches of {chunk} with "
            f"drop_remainder={drop_remainder}."
        )

    # Two shuffles (unlabeled rows, labeled stream) get distinct seeds derived from one.
    if seed is None:
        seeds = (None, None)
    else:
        seeds = tuple(int(s) for s in np.random.SeedSequence(seed).generate_state(2))
    if labeled_per_batch is None:
        indices = _shuffled(tf.data.Dataset.range(len(x)), len(x), shuffle, seeds[0])
        batches = indices.batch(batch_size, drop_remainder=drop_remainder)
    else:
        unlabeled_batches = _shuffled(_rows(unlabeled), len(unlabeled), shuffle, seeds[0])
        unlabeled_batches = unlabeled_batches.batch(chunk, drop_remainder=drop_remainder)
        if shuffle:
            # Batching before repeating keeps each group of k inside one permutation: a
            # group that straddled two permutations could hold a row twice.
            labeled_batches = _shuffled(_rows(labeled), len(labeled), True, seeds[1])
            labeled_batches = labeled_batches.batch(k, drop_remainder=True).repeat()
        else:
            # k consecutive rows of a cycle through the labeled rows are distinct.
            labeled_batches = _rows(labeled).repeat().batch(k)
        # zip stops with the finite unlabeled stream, so the epoch ends with it.
        batches = tf.data.Dataset.zip(unlabeled_batches, labeled_batches).map(
            lambda unlabeled_rows, labeled_rows: tf.concat([unlabeled_rows, labeled_rows], 0)
        )

    # Text becomes tf.string (UTF-8); numbers keep their dtype.
    x_tensor = tf.constant(x)
    y_tensor = None if y is None else tf.constant(y)

    def gather(idx):
        features = {"x": tf.gather(x_tensor, idx), "idx": idx}
        if y_tensor is None:
            return features
        return features, tf.gather(y_tensor, idx)

    batches = batches.map(gather, num_parallel_calls=tf.data.AUTOTUNE)
    return batches.prefetch(tf.data.AUTOTUNE)


def _rows(rows):
    return tf.data.Dataset.from_tensor_slices(rows.astype(np.int64))


def _shuffled(dataset, size, shuffle, seed):
    if shuffle:
        dataset = dataset.shuffle(size, seed=seed, reshuffle_each_iteration=True)
    return dataset
