"""The large-data path: rows from a tf.data.Dataset or TFRecord shards, numbered globally."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfssl import data, models, testing

# A graph constant is one serialized GraphDef node: at most 2 GB.
GRAPH_CONSTANT_LIMIT = 2**31


def _rows_dataset(num_rows, num_features=2, label_every=3):
    """Rows whose features encode their position: x = (i, i % 7), y = i % 10 on every third."""

    def rows():
        for i in range(num_rows):
            yield np.array([i, i % 7] + [0] * (num_features - 2), np.float32), (
                i % 10 if i % label_every == 0 else data.UNLABELED
            )

    signature = (tf.TensorSpec((num_features,), tf.float32), tf.TensorSpec((), tf.int64))
    return tf.data.Dataset.from_generator(rows, output_signature=signature)


def _expected_label(idx, label_every=3):
    return np.where(idx % label_every == 0, idx % 10, data.UNLABELED)


def _batches(dataset):
    """All batches of one pass as (idx, x, y) NumPy arrays."""
    return [
        (features["idx"].numpy(), features["x"].numpy(), y.numpy()) for features, y in dataset
    ]


def _check_rows(idx, x, y):
    """Each row's features and label are those of the row its idx names."""
    np.testing.assert_array_equal(x[:, 0], idx)
    np.testing.assert_array_equal(x[:, 1], idx % 7)
    np.testing.assert_array_equal(y, _expected_label(idx))


def test_generator_with_more_rows_than_a_graph_constant_can_hold():
    num_rows, num_features = 300_000_000, 2
    assert num_rows * num_features * 4 > GRAPH_CONSTANT_LIMIT
    train = data.from_dataset(
        _rows_dataset(num_rows, num_features),
        num_samples=num_rows,
        batch_size=64,
        shuffle=True,
        seed=0,
        shuffle_buffer=256,
    )
    assert int(train.cardinality()) == num_rows // 64
    batches = _batches(train.take(5))
    idx = np.concatenate([b[0] for b in batches])
    assert idx.dtype == np.int64 and len(np.unique(idx)) == len(idx) == 320
    # A buffer of 256 rows draws the first 320 rows from the first 576.
    assert idx.max() < 576 and not np.array_equal(idx, np.arange(320))
    for batch in batches:
        _check_rows(*batch)


def test_every_row_once_per_epoch_and_new_order_each_epoch():
    train = data.from_dataset(
        _rows_dataset(50), num_samples=50, batch_size=8, shuffle=True, seed=1, shuffle_buffer=16
    )
    orders = []
    for _ in range(2):
        batches = _batches(train)
        assert [len(b[0]) for b in batches] == [8] * 6 + [2]
        for batch in batches:
            _check_rows(*batch)
        orders.append(np.concatenate([b[0] for b in batches]))
        np.testing.assert_array_equal(np.sort(orders[-1]), np.arange(50))
    assert not np.array_equal(orders[0], orders[1])
    again = data.from_dataset(
        _rows_dataset(50), num_samples=50, batch_size=8, shuffle=True, seed=1, shuffle_buffer=16
    )
    np.testing.assert_array_equal(np.concatenate([b[0] for b in _batches(again)]), orders[0])


def test_stated_row_count_is_checked_while_reading():
    train = data.from_dataset(_rows_dataset(10), num_samples=12, batch_size=4)
    assert int(train.cardinality()) == 3
    with pytest.raises(tf.errors.OpError, match="expected to contain 12 elements"):
        _batches(train)


def test_labeled_per_batch_from_a_stream():
    num_rows, k = 60, 3
    train = data.from_dataset(
        _rows_dataset(num_rows), batch_size=8, shuffle=True, seed=0, labeled_per_batch=k
    )
    batches = _batches(train)
    unlabeled_rows = [i for i in range(num_rows) if i % 3]
    assert len(batches) == -(-len(unlabeled_rows) // (8 - k))
    for idx, x, y in batches:
        _check_rows(idx, x, y)
        np.testing.assert_array_equal(y[:-k], data.UNLABELED)
        assert (y[-k:] != data.UNLABELED).all() and len(np.unique(idx[-k:])) == k
    unlabeled = np.concatenate([idx[:-k] for idx, _, _ in batches])
    np.testing.assert_array_equal(np.sort(unlabeled), unlabeled_rows)
    labeled = np.concatenate([idx[-k:] for idx, _, _ in batches])
    # 8 batches of 3 labeled rows cycle through the 20 labeled rows, reshuffled.
    assert set(labeled[:18]) <= set(range(0, num_rows, 3)) and len(set(labeled[:18])) == 18


@pytest.mark.parametrize("labeled_per_batch", [None, 2])
def test_two_input_contexts_give_disjoint_indices_that_cover_all_rows(labeled_per_batch):
    num_rows, seen = 40, []
    for worker in range(2):
        context = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=worker, num_replicas_in_sync=2
        )
        batches = _batches(
            data.from_dataset(
                _rows_dataset(num_rows),
                num_samples=num_rows,
                batch_size=8,
                shuffle=True,
                seed=0,
                labeled_per_batch=labeled_per_batch,
                input_context=context,
            )
        )
        for idx, x, y in batches:
            assert len(idx) <= 4  # the per-replica batch: 8 rows over 2 replicas
            _check_rows(idx, x, y)
            if labeled_per_batch:
                assert (y[-1:] != data.UNLABELED).all()
        idx = np.concatenate([b[0] for b in batches])
        if labeled_per_batch:
            idx = idx[_expected_label(idx) == data.UNLABELED]
        seen.append(set(idx.tolist()))
    assert not seen[0] & seen[1]
    expected = range(num_rows) if labeled_per_batch is None else [i for i in range(40) if i % 3]
    assert seen[0] | seen[1] == set(expected)


@pytest.mark.parametrize("num_shards", [1, 3])
def test_tfrecords_round_trip(tmp_path, num_shards):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(10, 3, 2)).astype(np.uint8)
    y = np.array([0, -1, 1, -1, -1, 2, -1, -1, 0, -1])
    assert data.write_tfrecords((x, y), str(tmp_path), num_shards=num_shards) == 10
    info = data.tfrecords_info(str(tmp_path))
    assert info["num_samples"] == 10 and len(info["files"]) == num_shards
    assert (info["x_dtype"], info["x_shape"], info["x_encoding"]) == ("uint8", [3, 2], "raw")
    in_order = _batches(data.from_tfrecords(str(tmp_path), batch_size=4))
    assert [len(b[0]) for b in in_order] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([b[0] for b in in_order]), np.arange(10))
    for shuffled in range(2):
        batches = _batches(
            data.from_tfrecords(str(tmp_path), batch_size=4, shuffle=bool(shuffled), seed=0)
        )
        idx = np.concatenate([b[0] for b in batches])
        np.testing.assert_array_equal(np.sort(idx), np.arange(10))
        for batch_idx, batch_x, batch_y in batches:
            assert batch_x.dtype == np.uint8
            np.testing.assert_array_equal(batch_x, x[batch_idx])
            np.testing.assert_array_equal(batch_y, y[batch_idx])


def test_tfrecords_labeled_per_batch(tmp_path):
    x = np.arange(40, dtype=np.int16).reshape(20, 2)
    y = np.where(np.arange(20) % 4 == 0, np.arange(20) % 3, data.UNLABELED)
    data.write_tfrecords((x, y), str(tmp_path), num_shards=2)
    batches = _batches(
        data.from_tfrecords(
            str(tmp_path), batch_size=4, shuffle=True, seed=0, labeled_per_batch=1
        )
    )
    assert len(batches) == 5  # 15 unlabeled rows, 3 a batch
    for idx, batch_x, batch_y in batches:
        np.testing.assert_array_equal(batch_x, x[idx])
        np.testing.assert_array_equal(batch_y, y[idx])
        np.testing.assert_array_equal(batch_y[:3], data.UNLABELED)
        assert batch_y[3] != data.UNLABELED
    unlabeled = np.concatenate([idx[:3] for idx, _, _ in batches])
    np.testing.assert_array_equal(np.sort(unlabeled), np.flatnonzero(y == data.UNLABELED))


def test_tfrecords_from_a_dataset_of_text_without_labels(tmp_path):
    texts = tf.data.Dataset.from_tensor_slices(["un", "deux", "trois", "quatre", "cinq"])
    assert data.write_tfrecords(texts, str(tmp_path), num_shards=2) == 5
    assert data.tfrecords_info(str(tmp_path))["x_encoding"] == "serialized_tensor"
    features = list(data.from_tfrecords(str(tmp_path), batch_size=5))
    assert len(features) == 1 and isinstance(features[0], dict)
    order = np.argsort(features[0]["idx"].numpy())
    assert [t.decode() for t in features[0]["x"].numpy()[order]] == [
        "un",
        "deux",
        "trois",
        "quatre",
        "cinq",
    ]


def test_tfrecords_shard_by_file_per_worker(tmp_path):
    x = np.arange(22, dtype=np.float32)[:, None] * [1.0, 0.0]
    x[:, 1] = np.arange(22) % 7
    data.write_tfrecords((x, _expected_label(np.arange(22))), str(tmp_path), num_shards=4)
    seen = []
    for worker in range(2):
        context = tf.distribute.InputContext(2, worker, 2)
        train = data.from_tfrecords(
            str(tmp_path), batch_size=4, shuffle=True, seed=0, input_context=context
        )
        # Worker 0 reads shards 0 and 2 (rows 0, 2, 4, ...), worker 1 shards 1 and 3.
        assert int(train.cardinality()) == 6
        batches = _batches(train)
        for batch in batches:
            _check_rows(*batch)
        seen.append(np.concatenate([b[0] for b in batches]))
        np.testing.assert_array_equal(np.sort(seen[-1]) % 2, worker)
    np.testing.assert_array_equal(np.sort(np.concatenate(seen)), np.arange(22))


def test_temporal_ensembling_fits_on_a_generator():
    keras.utils.set_random_seed(0)
    num_rows, epochs = 30, 2
    model = models.TemporalEnsembling(
        testing.tiny_backbone(num_features=2, num_classes=10), num_rows
    )
    model.compile(optimizer="adam")
    train = data.from_dataset(
        _rows_dataset(num_rows), num_samples=num_rows, batch_size=8, shuffle=True, seed=0
    )
    model.fit(train, epochs=epochs, verbose=0)
    # Every row's ensemble entry was written once an epoch, under its own index.
    np.testing.assert_array_equal(model.ensemble_counts.numpy(), np.full(num_rows, epochs))


def _sharded_bad_shards(tmp_path):
    data.write_tfrecords((np.zeros((4, 1)), np.zeros(4, np.int64)), str(tmp_path), num_shards=1)
    return data.from_tfrecords(
        str(tmp_path), input_context=tf.distribute.InputContext(2, 0, 2)
    )


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: data.from_dataset(_rows_dataset(4).repeat()), "infinite cardinality"),
        (lambda: data.from_dataset(_rows_dataset(4).batch(2)), r"element_spec=\(TensorSpec"),
        (
            lambda: data.from_dataset(tf.data.Dataset.range(5), num_samples=6),
            "equal the dataset's 5 rows. Received: num_samples=6",
        ),
        (lambda: data.from_dataset(_rows_dataset(4), num_samples=0), "num_samples=0"),
        (lambda: data.from_dataset(_rows_dataset(4), batch_size=0), "batch_size=0"),
        (lambda: data.from_dataset(_rows_dataset(4), shuffle_buffer=-1), "shuffle_buffer=-1"),
        (
            lambda: data.from_dataset(tf.data.Dataset.range(5), labeled_per_batch=1),
            "needs rows \\(x, y\\)",
        ),
        (
            lambda: data.from_dataset(_rows_dataset(4), batch_size=4, labeled_per_batch=4),
            "labeled_per_batch=4",
        ),
        (
            lambda: data.from_dataset(
                _rows_dataset(4),
                batch_size=8,
                labeled_per_batch=3,
                input_context=tf.distribute.InputContext(1, 0, 2),
            ),
            "num_replicas_in_sync=2 replicas. Received: labeled_per_batch=3",
        ),
        (lambda: data.from_dataset(np.zeros((3, 2))), "must be a tf.data.Dataset"),
        (lambda: data.write_tfrecords(np.zeros(3), "unused-prefix", num_shards=0), "num_shards=0"),
        (lambda: data.from_tfrecords("/nonexistent"), "write_tfrecords. Received: directory"),
    ],
)
def test_errors_name_the_bad_value(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_tfrecords_refuse_fewer_shards_than_workers(tmp_path):
    with pytest.raises(ValueError, match="holds 1 shards for num_input_pipelines=2"):
        _sharded_bad_shards(tmp_path)


def make_te_on_a_generator():
    """Temporal Ensembling on `from_dataset` over a generator (a two-replica factory of
    test_two_replicas.py)."""
    x, _, y_semi = testing.tiny_data()

    def rows():
        yield from zip(x, y_semi)

    signature = (tf.TensorSpec((x.shape[1],), tf.float32), tf.TensorSpec((), tf.int64))
    source = tf.data.Dataset.from_generator(rows, output_signature=signature)
    model = models.TemporalEnsembling(testing.tiny_backbone(), num_samples=len(x))
    return model, data.from_dataset(source, num_samples=len(x), batch_size=16)


