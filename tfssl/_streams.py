"""Batches with sample indices from a `tf.data.Dataset` of rows, for data beyond memory.

`tfssl.data.make_dataset` holds its arrays as graph constants (2 GB at most, all on every
worker). `from_dataset` numbers the rows of any `tf.data.Dataset` (a generator, a file reader)
with `Dataset.enumerate` before sharding them per worker; `from_tfrecords` (`tfssl._tfrecords`)
reads rows that store their own index. Both shuffle and batch them with `batch_rows`, into
the `({"x": x, "idx": idx}, y)` batches of `make_dataset`. `tfssl.data` re-exports
`from_dataset`.
"""

import numpy as np
import tensorflow as tf

from tfssl._labels import UNLABELED, is_int


def from_dataset(
    dataset,
    num_samples=None,
    batch_size=100,
    shuffle=False,
    seed=None,
    shuffle_buffer=10_000,
    drop_remainder=False,
    labeled_per_batch=None,
    input_context=None,
):
    """Batches a `tf.data.Dataset` of rows, giving each row a globally unique `idx`.

    The path for data that `make_dataset` cannot hold as graph constants (about 2 GB at
    most, and every worker would hold all of it): a generator, files, or any pipeline that
    yields one row at a time. Elements are `({"x": x_batch, "idx": idx_batch}, y_batch)`, as
    from `make_dataset`, or only the dict when the rows carry no label.

    `dataset` yields single rows `(x, y)`, `y` an integer scalar (`UNLABELED` for unlabeled
    rows), or `x` alone, **in the same order at every iteration**: tfssl numbers the rows
    with `Dataset.enumerate`, so `idx` is a row's position in that order and a row keeps its
    index, and its per-sample state, from epoch to epoch. Shuffle here (`shuffle=True`), not
    in `dataset`. Rows are numbered before they are sharded or shuffled, so `idx` stays
    unique across workers.

    Shuffling uses a buffer of `shuffle_buffer` rows (`Dataset.shuffle`), a new order each
    epoch: uniform over the epoch only when the buffer holds every row. With
    `labeled_per_batch=k`, the rows are split into an unlabeled and a labeled stream
    (`Dataset.filter`, so `dataset` is read twice at once); the labeled rows, few by
    assumption, are cached in memory after their first pass and drawn as in `make_dataset`
    (`k` distinct rows a batch, reshuffled when used up). Before the first batch the labeled
    stream reads `dataset` until its buffer holds `min(shuffle_buffer, labeled rows)` rows.
    The epoch's length is then unknown to tf.data (a filter), and `fit` learns it in the
    first epoch.

    A generator that yields one row a call pays Python's cost per row (about 5,000 rows of
    784 floats per CPU second on two CPU cores); one that yields chunks of
    rows, unbatched by tf.data (`Dataset.from_generator(...).unbatch()`), delivered 11 times
    as many, about as many as TFRecord shards.

    Distribution: with `input_context` (from
    `strategy.distribute_datasets_from_function`), this worker keeps every
    `num_input_pipelines`-th row (`Dataset.shard`, after numbering) and batches
    `batch_size / num_replicas_in_sync` rows (`k / num_replicas_in_sync` labeled); each
    worker still reads all of `dataset` and drops the rest, so prefer `from_tfrecords` for
    files. Workers may then hold one row more or less: repeat the dataset and pass
    `steps_per_epoch` to `fit`, as TensorFlow advises for multi-worker input. Without
    `input_context`, a multi-worker strategy's `experimental_distribute_dataset` (what `fit`
    calls) shards the batches by data (`AutoShardPolicy.DATA`, never by file: file sharding
    would number each worker's files from 0): every worker must then draw the same shuffle,
    so pass a `seed`.

    Example:

    ```python
    def rows():  # 10 million rows, never in memory at once
        for i in range(10_000_000):
            yield np.full(784, i % 7, np.float32), (i % 10 if i % 1000 == 0 else -1)

    source = tf.data.Dataset.from_generator(rows, output_signature=(
        tf.TensorSpec((784,), tf.float32), tf.TensorSpec((), tf.int64)))
    train = tfssl.data.from_dataset(
        source, num_samples=10_000_000, batch_size=100, shuffle=True, seed=0)
    model = tfssl.models.TemporalEnsembling(backbone, num_samples=10_000_000)
    ```

    Args:
        dataset: A `tf.data.Dataset` of single rows `(x, y)` or `x`, finite and in a fixed
            order.
        num_samples: The number of rows of `dataset`. tf.data checks it while reading
            (`tf.data.experimental.assert_cardinality`): a dataset that yields more or fewer
            rows fails at that point. Needed for a generator (whose length tf.data cannot
            know) when the model keeps per-sample state. Defaults to `None`: the dataset's
            own cardinality, possibly unknown.
        batch_size: Rows per global batch. Defaults to `100`.
        shuffle: Whether to shuffle the rows anew each epoch. Defaults to `False`.
        seed: Seed of the shuffles. Defaults to `None`.
        shuffle_buffer: Rows in the shuffle buffer. Defaults to `10_000`.
        drop_remainder: Whether to drop an epoch's last, smaller batch. Defaults to `False`.
        labeled_per_batch: Number `k` of labeled rows in every batch, `0 < k < batch_size`;
            the rows must carry labels, and each worker's shard at least `k` labeled rows.
            Defaults to `None`, which batches all rows in one stream.
        input_context: A `tf.distribute.InputContext` to shard for one worker. Defaults to
            `None`.

    Returns:
        A `tf.data.Dataset` of batches.

    Raises:
        ValueError: If `dataset` does not yield single rows `(x, y)` with an integer scalar
            `y` or `x` alone, is infinite, or has a known length other than `num_samples`;
            if `num_samples`, `batch_size`, `shuffle_buffer` or `labeled_per_batch` is out
            of range, or the batch sizes do not divide among the replicas.
    """
    has_labels = check_rows(dataset)
    cardinality = int(dataset.cardinality())
    if cardinality == tf.data.INFINITE_CARDINALITY:
        raise ValueError(
            "dataset must be finite: tfssl numbers its rows. Received a dataset with infinite "
            "cardinality (a repeat()? repeat the batched result instead)."
        )
    if num_samples is not None:
        if not is_int(num_samples) or num_samples <= 0:
            raise ValueError(
                f"num_samples must be a positive integer. Received: num_samples={num_samples!r}"
            )
        if cardinality >= 0 and cardinality != num_samples:
            raise ValueError(
                f"num_samples must equal the dataset's {cardinality} rows. Received: "
                f"num_samples={num_samples}"
            )
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(num_samples))
    rows = dataset.enumerate()
    if has_labels:
        rows = rows.map(lambda idx, row: (idx, row[0], tf.cast(row[1], tf.int64)))
    if input_context is not None:
        rows = rows.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    return batch_rows(
        rows,
        has_labels,
        batch_size,
        shuffle,
        derived_seeds(seed)[:2],
        shuffle_buffer,
        drop_remainder,
        labeled_per_batch,
        input_context,
    )


def batch_rows(
    rows,
    has_labels,
    batch_size,
    shuffle,
    seeds,
    shuffle_buffer,
    drop_remainder,
    labeled_per_batch,
    input_context,
    parse_batch=None,
):
    """Shuffles and batches rows into `({"x", "idx"}[, y])` batches.

    Rows are `(idx, x[, y])`, or records that `parse_batch` turns into such batches after
    batching (without `labeled_per_batch`).
    """
    if not is_int(batch_size) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer. Received: {batch_size=}")
    if not is_int(shuffle_buffer) or shuffle_buffer <= 0:
        raise ValueError(
            f"shuffle_buffer must be a positive integer. Received: {shuffle_buffer=}"
        )
    k = labeled_per_batch
    if k is not None:
        if not has_labels:
            raise ValueError("labeled_per_batch needs rows (x, y). Received rows without y.")
        if not is_int(k) or not 0 < k < batch_size:
            raise ValueError(
                f"labeled_per_batch must be an integer in (0, batch_size={batch_size}). "
                f"Received: labeled_per_batch={k!r}"
            )
    if input_context is not None:
        replicas = input_context.num_replicas_in_sync
        if k is not None and k % replicas:
            raise ValueError(
                f"labeled_per_batch must divide among the num_replicas_in_sync={replicas} "
                f"replicas. Received: labeled_per_batch={k}"
            )
        batch_size = input_context.get_per_replica_batch_size(batch_size)
        k = None if k is None else k // replicas

    def shuffled(stream, seed):
        if shuffle:
            return stream.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        return stream

    if k is None:
        batches = shuffled(rows, seeds[0]).batch(batch_size, drop_remainder=drop_remainder)
        if parse_batch is not None:
            batches = batches.map(parse_batch, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        unlabeled = rows.filter(lambda idx, x, y: tf.equal(y, UNLABELED))
        labeled = rows.filter(lambda idx, x, y: tf.not_equal(y, UNLABELED)).cache()
        unlabeled = shuffled(unlabeled, seeds[0]).batch(batch_size - k, drop_remainder)
        if shuffle:
            # As in make_dataset: batching before repeating keeps a batch's k rows distinct.
            labeled = shuffled(labeled, seeds[1]).batch(k, drop_remainder=True).repeat()
        else:
            labeled = labeled.repeat().batch(k)
        batches = tf.data.Dataset.zip(unlabeled, labeled).map(
            lambda first, second: tuple(tf.concat(pair, 0) for pair in zip(first, second))
        )
    if has_labels:
        batches = batches.map(lambda idx, x, y: ({"x": x, "idx": idx}, y))
    else:
        batches = batches.map(lambda idx, x: {"x": x, "idx": idx})
    options = tf.data.Options()
    # Sharded here already, or else by data: sharding a source's files would restart the
    # numbering at 0 on every worker.
    policy = tf.data.experimental.AutoShardPolicy
    options.experimental_distribute.auto_shard_policy = (
        policy.DATA if input_context is None else policy.OFF
    )
    return batches.with_options(options).prefetch(tf.data.AUTOTUNE)


def check_rows(dataset):
    """Returns whether `dataset` yields `(x, y)` rows (else `x` rows); refuses other shapes."""
    if not isinstance(dataset, tf.data.Dataset):
        raise ValueError(
            f"dataset must be a tf.data.Dataset. Received: dataset of type {type(dataset)}"
        )
    spec = dataset.element_spec
    if isinstance(spec, tf.TensorSpec):
        return False
    if (
        isinstance(spec, tuple)
        and len(spec) == 2
        and all(isinstance(part, tf.TensorSpec) for part in spec)
        and spec[1].dtype.is_integer
        and spec[1].shape.rank == 0
    ):
        return True
    raise ValueError(
        "dataset must yield single rows (x, y) with an integer scalar y, or x alone (unbatch "
        f"a batched dataset). Received: element_spec={spec}"
    )


def derived_seeds(seed):
    """Three seeds derived from one (rows, labeled stream, files), or `None`s."""
    if seed is None:
        return (None, None, None)
    return tuple(int(s) for s in np.random.SeedSequence(seed).generate_state(3))
