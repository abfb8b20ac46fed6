"""TFRecord shards whose records store their row's `idx`.

`write_tfrecords` writes row `i` of any source with its index `i`, round-robin over the
shards, and a `tfssl_rows.json` that lists them; `from_tfrecords` batches them as
`tfssl.data.make_dataset` batches arrays. Because each record carries its index, workers
read disjoint files and the indices stay unique. `tfrecords_info` reads the list.
`tfssl.data` re-exports the three.
"""

import json
import os

import numpy as np
import tensorflow as tf

from tfssl._labels import UNLABELED, check_labels, check_lengths, is_int
from tfssl._streams import batch_rows, check_rows, derived_seeds

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
