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
`from_tfrecords` store each row's `idx` in its record, so workers read disjoint files.
"""

import json
import os

import numpy as np
import tensorflow as tf

from tfssl._labels import UNLABELED, check_labels, check_lengths, is_int
from tfssl._streams import batch_rows, check_rows, derived_seeds, from_dataset

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

_SPEC_FILE = "tfssl_rows.json"
# The dtypes that `tf.io.decode_raw` reads.
_RAW_DTYPES = (
    tf.float16,
    tf.bfloat16,
    tf.float32,
    tf.float64,
    tf.int8,
    tf.int16,
    tf.int32,
    tf.int64,
    tf.uint8,
    tf.uint16,
)


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


def write_tfrecords(rows, directory, num_shards=1):
    """Writes rows to TFRecord shards in which every record stores its `idx`.

    Row `i` (in the order of `rows`) becomes a `tf.train.Example` with the features `idx`
    (`int64`, `i`), `x` (`bytes`) and, when the rows carry labels, `y` (`int64`). `x` holds
    the row's raw little-endian bytes when its dtype is numeric and its shape fixed (read back
    for a whole batch at once with `tf.io.decode_raw`), else `tf.io.serialize_tensor` of the
    row (text, for instance). It goes to shard `i % num_shards`, so
    the shards hold nearly equal numbers of rows. `directory/tfssl_rows.json` lists the
    shards, the row count and `x`'s dtype and shape for `from_tfrecords`. Because each
    record carries its index, workers can read disjoint files and the indices stay unique.
    Files of an earlier write that the new list does not name are ignored.

    Example:

    ```python
    tfssl.data.write_tfrecords((x, y_semi), "/data/fashion", num_shards=8)
    train = tfssl.data.from_tfrecords("/data/fashion", batch_size=100, shuffle=True, seed=0)
    ```

    Args:
        rows: A `tf.data.Dataset` of single rows `(x, y)` or `x` (streamed, never held in
            memory), or arrays `(x, y)` or `x` with one row per entry.
        directory: Folder to write into; created when missing.
        num_shards: Number of files, at least the number of workers that will read them.
            Defaults to `1`.

    Returns:
        The number of rows written.

    Raises:
        ValueError: If `num_shards` is not a positive integer, the arrays' lengths differ, or
            `rows` does not yield single rows `(x, y)` with an integer scalar `y` or `x`
            alone, or yields no row.
    """
    if not is_int(num_shards) or num_shards <= 0:
        raise ValueError(f"num_shards must be a positive integer. Received: {num_shards=}")
    if not isinstance(rows, tf.data.Dataset):
        if isinstance(rows, tuple) and len(rows) == 2:
            check_lengths(rows[0], rows[1])
            rows = (np.asarray(rows[0]), check_labels(rows[1]))
        rows = tf.data.Dataset.from_tensor_slices(rows)
    has_labels = check_rows(rows)
    x_spec = rows.element_spec[0] if has_labels else rows.element_spec
    raw = x_spec.dtype in _RAW_DTYPES and x_spec.shape.is_fully_defined()
    if not has_labels:
        rows = rows.map(lambda x: (x, tf.constant(UNLABELED, tf.int64)))
    if not raw:
        rows = rows.map(lambda x, y: (tf.io.serialize_tensor(x), y))
    little_endian = np.dtype(x_spec.dtype.as_numpy_dtype).newbyteorder("<")
    os.makedirs(directory, exist_ok=True)
    files = [f"rows-{shard:05d}-of-{num_shards:05d}.tfrecord" for shard in range(num_shards)]
    writers = [tf.io.TFRecordWriter(os.path.join(directory, name)) for name in files]
    num_rows = 0
    try:
        for idx, (x, label) in enumerate(rows.as_numpy_iterator()):
            x_bytes = x.astype(little_endian).tobytes() if raw else x
            feature = {
                "idx": tf.train.Feature(int64_list=tf.train.Int64List(value=[idx])),
                "x": tf.train.Feature(bytes_list=tf.train.BytesList(value=[x_bytes])),
            }
            if has_labels:
                feature["y"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[label]))
            example = tf.train.Example(features=tf.train.Features(feature=feature))
            writers[idx % num_shards].write(example.SerializeToString())
            num_rows = idx + 1
    finally:
        for writer in writers:
            writer.close()
    if num_rows == 0:
        raise ValueError("rows must hold at least one row. Received an empty dataset.")
    spec = {
        "num_samples": num_rows,
        "files": files,
        "x_dtype": x_spec.dtype.name,
        "x_shape": x_spec.shape.as_list(),
        "x_encoding": "raw" if raw else "serialized_tensor",
        "has_labels": has_labels,
    }
    with open(os.path.join(directory, _SPEC_FILE), "w") as file:
        json.dump(spec, file, indent=1)
    return num_rows


def from_tfrecords(
    directory,
    batch_size=100,
    shuffle=False,
    seed=None,
    shuffle_buffer=10_000,
    drop_remainder=False,
    labeled_per_batch=None,
    input_context=None,
):
    """Batches the rows that `write_tfrecords` wrote, with the `idx` stored in each record.

    Elements are as from `make_dataset`. The shards are read interleaved (up to 16 files at
    once); with `shuffle=True` the file order is shuffled too, and rows go through a buffer
    of `shuffle_buffer` rows. `labeled_per_batch` works as in `from_dataset`.

    With `input_context` (from `strategy.distribute_datasets_from_function`), this worker
    reads only every `num_input_pipelines`-th file, so each row is read by one worker; the
    stored indices stay globally unique. Without it, a strategy's
    `experimental_distribute_dataset` shards the batches by data, which needs a `seed` when
    shuffling (see `from_dataset`). The number of rows is checked while reading
    (`tf.data.experimental.assert_cardinality`), so a missing or truncated shard fails.

    Example:

    ```python
    tfssl.data.write_tfrecords(source_rows, "/data/big", num_shards=64)
    num_samples = tfssl.data.tfrecords_info("/data/big")["num_samples"]
    train = strategy.distribute_datasets_from_function(
        lambda context: tfssl.data.from_tfrecords(
            "/data/big", batch_size=256, shuffle=True, seed=0, input_context=context))
    ```

    Args:
        directory: The folder `write_tfrecords` wrote.
        batch_size: Rows per global batch. Defaults to `100`.
        shuffle: Whether to shuffle files and rows anew each epoch. Defaults to `False`.
        seed: Seed of the shuffles. Defaults to `None`.
        shuffle_buffer: Rows in the shuffle buffer. Defaults to `10_000`.
        drop_remainder: Whether to drop an epoch's last, smaller batch. Defaults to `False`.
        labeled_per_batch: As in `from_dataset`. Defaults to `None`.
        input_context: A `tf.distribute.InputContext` to shard for one worker. Defaults to
            `None`.

    Returns:
        A `tf.data.Dataset` of batches.

    Raises:
        ValueError: If `directory` holds no `tfssl_rows.json`, there are fewer shards than
            input pipelines, or an argument is out of range as in `from_dataset`.
    """
    info = tfrecords_info(directory)
    num_files = len(info["files"])
    shards = list(range(num_files))
    if input_context is not None:
        pipelines = input_context.num_input_pipelines
        if num_files < pipelines:
            raise ValueError(
                f"Each input pipeline needs a shard of its own: {directory} holds {num_files} "
                f"shards for num_input_pipelines={pipelines}. Write at least {pipelines} with "
                "write_tfrecords(num_shards=...)."
            )
        shards = shards[input_context.input_pipeline_id :: pipelines]
    # Row i went to shard i % num_files.
    num_rows = sum(len(range(shard, info["num_samples"], num_files)) for shard in shards)
    seeds = derived_seeds(seed)
    files = tf.data.Dataset.from_tensor_slices(
        [os.path.join(directory, info["files"][shard]) for shard in shards]
    )
    if shuffle:
        files = files.shuffle(len(shards), seed=seeds[2], reshuffle_each_iteration=True)
    has_labels = info["has_labels"]
    features = {
        "idx": tf.io.FixedLenFeature([], tf.int64),
        "x": tf.io.FixedLenFeature([], tf.string),
    }
    if has_labels:
        features["y"] = tf.io.FixedLenFeature([], tf.int64)
    x_spec = tf.TensorSpec(info["x_shape"], tf.as_dtype(info["x_dtype"]))

    def parse(records):
        """Parses a 1-D batch of records into `(idx, x[, y])` batches."""
        parsed = tf.io.parse_example(records, features)
        if info["x_encoding"] == "raw":
            x = tf.reshape(tf.io.decode_raw(parsed["x"], x_spec.dtype), [-1, *x_spec.shape])
        else:
            x = tf.map_fn(
                lambda row: tf.ensure_shape(tf.io.parse_tensor(row, x_spec.dtype), x_spec.shape),
                parsed["x"],
                fn_output_signature=x_spec,
            )
        return (parsed["idx"], x, parsed["y"]) if has_labels else (parsed["idx"], x)

    # A bounded cycle keeps thousands of shards from being opened at once.
    records = files.interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(len(shards), 16),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    records = records.apply(tf.data.experimental.assert_cardinality(num_rows))
    if labeled_per_batch is None:
        # Shuffling the serialized records and parsing whole batches costs a fraction of
        # parsing row by row (tf.io.parse_example is vectorized).
        rows, parse_batch = records, parse
    else:
        # Splitting labeled from unlabeled rows needs each row's label first.
        rows = records.map(
            lambda record: tuple(part[0] for part in parse(record[None])),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        parse_batch = None
    return batch_rows(
        rows,
        has_labels,
        batch_size,
        shuffle,
        seeds[:2],
        shuffle_buffer,
        drop_remainder,
        labeled_per_batch,
        input_context,
        parse_batch,
    )


def tfrecords_info(directory):
    """Reads what `write_tfrecords` recorded about its shards.

    Example:

    ```python
    num_samples = tfssl.data.tfrecords_info("/data/big")["num_samples"]
    ```

    Args:
        directory: The folder `write_tfrecords` wrote.

    Returns:
        A dict with `num_samples`, `files` (shard names), `x_dtype`, `x_shape` (`None` for
        a dimension of varying size) and `has_labels`.

    Raises:
        ValueError: If `directory` holds no `tfssl_rows.json`.
    """
    path = os.path.join(directory, _SPEC_FILE)
    if not os.path.exists(path):
        raise ValueError(
            f"{path} does not exist: write the shards with tfssl.data.write_tfrecords. "
            f"Received: directory={directory!r}"
        )
    with open(path) as file:
        return json.load(file)


def _rows(rows):
    return tf.data.Dataset.from_tensor_slices(rows.astype(np.int64))


def _shuffled(dataset, size, shuffle, seed):
    if shuffle:
        dataset = dataset.shuffle(size, seed=seed, reshuffle_each_iteration=True)
    return dataset
