import numpy as np
import pytest
import tensorflow as tf

from tfssl import data


def _epoch(dataset):
    """One pass over the dataset as a list of (idx, x, y) NumPy batches."""
    batches = []
    for element in dataset:
        features, y = element if isinstance(element, tuple) else (element, None)
        batches.append(
            (features["idx"].numpy(), features["x"].numpy(), None if y is None else y.numpy())
        )
    return batches


def _order(dataset):
    return np.concatenate([idx for idx, _, _ in _epoch(dataset)])


def test_mask_labels_balanced():
    y = np.repeat(np.arange(4), [30, 20, 25, 40])
    masked = data.mask_labels(y, num_labeled=20, seed=0)
    assert masked.dtype == np.int64 and masked.shape == y.shape
    kept = masked != data.UNLABELED
    np.testing.assert_array_equal(np.bincount(masked[kept]), [5, 5, 5, 5])
    np.testing.assert_array_equal(masked[kept], y[kept])
    np.testing.assert_array_equal(masked[~kept], -1)
    np.testing.assert_array_equal(y, np.repeat(np.arange(4), [30, 20, 25, 40]))


def test_mask_labels_deterministic_in_seed():
    y = np.arange(1000) % 10
    first = data.mask_labels(y, 100, seed=3)
    np.testing.assert_array_equal(first, data.mask_labels(y, 100, seed=3))
    assert not np.array_equal(first, data.mask_labels(y, 100, seed=4))


def test_mask_labels_unbalanced_and_already_unlabeled():
    y = np.array([0] * 90 + [1] * 10 + [-1] * 20)
    masked = data.mask_labels(y, 30, seed=0, balanced=False)
    assert (masked != -1).sum() == 30
    np.testing.assert_array_equal(masked[100:], -1)  # unlabeled rows are never revealed
    kept = masked != -1
    np.testing.assert_array_equal(masked[kept], y[kept])
    np.testing.assert_array_equal(data.mask_labels(y, 100, seed=0, balanced=False), y)
    np.testing.assert_array_equal(data.mask_labels(y, 0, seed=0), -np.ones(120))
    np.testing.assert_array_equal(data.mask_labels(-np.ones(3, np.int64), 0, seed=0), [-1] * 3)


@pytest.mark.parametrize(
    "num_labeled, balanced, match",
    [
        (-1, True, "num_labeled=-1"),
        (101, False, r"\[0, 100\].*num_labeled=101"),
        (15, True, r"multiple of the number of classes \(2\).*num_labeled=15"),
        (40, True, "Class 1 has 10 labeled rows, fewer than the 20"),
    ],
)
def test_mask_labels_errors(num_labeled, balanced, match):
    y = np.array([0] * 90 + [1] * 10)
    with pytest.raises(ValueError, match=match):
        data.mask_labels(y, num_labeled, seed=0, balanced=balanced)


def test_mask_labels_rejects_bad_labels():
    with pytest.raises(ValueError, match="dtype float32"):
        data.mask_labels(np.zeros(4, np.float32), 2, seed=0)
    with pytest.raises(ValueError, match=r"y\[2\]=-3"):
        data.mask_labels(np.array([0, 1, -3]), 2, seed=0)


def test_split_labeled():
    x = np.arange(12).reshape(6, 2)
    y = np.array([2, -1, 0, -1, -1, 1])
    (x_labeled, y_labeled), x_unlabeled = data.split_labeled(x, y)
    np.testing.assert_array_equal(x_labeled, [[0, 1], [4, 5], [10, 11]])
    np.testing.assert_array_equal(y_labeled, [2, 0, 1])
    np.testing.assert_array_equal(x_unlabeled, [[2, 3], [6, 7], [8, 9]])
    with pytest.raises(ValueError, match="len\\(x\\)=6, len\\(y\\)=5"):
        data.split_labeled(x, y[:5])


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.float16, np.int32])
def test_every_row_once_per_epoch_with_matching_rows(shuffle, dtype):
    x = (np.arange(23 * 3 * 2) % 251).reshape(23, 3, 2).astype(dtype)
    y = np.arange(23) % 4 - 1  # includes UNLABELED
    dataset = data.make_dataset(x, y, batch_size=5, shuffle=shuffle, seed=1)
    assert int(dataset.cardinality()) == 5
    for _ in range(2):
        batches = _epoch(dataset)
        assert [len(idx) for idx, _, _ in batches] == [5, 5, 5, 5, 3]
        order = np.concatenate([idx for idx, _, _ in batches])
        np.testing.assert_array_equal(np.sort(order), np.arange(23))
        for idx, x_batch, y_batch in batches:
            assert idx.dtype == np.int64 and x_batch.dtype == dtype and y_batch.dtype == np.int64
            np.testing.assert_array_equal(x_batch, x[idx])
            np.testing.assert_array_equal(y_batch, y[idx])
    if not shuffle:
        np.testing.assert_array_equal(order, np.arange(23))


def test_drop_remainder():
    dataset = data.make_dataset(
        np.zeros((23, 2)), batch_size=5, shuffle=True, seed=0, drop_remainder=True
    )
    assert int(dataset.cardinality()) == 4
    batches = _epoch(dataset)
    assert [len(idx) for idx, _, _ in batches] == [5, 5, 5, 5]
    order = np.concatenate([idx for idx, _, _ in batches])
    assert len(np.unique(order)) == 20


def test_without_labels_elements_are_features_only():
    dataset = data.make_dataset(np.ones((4, 3), np.float32), batch_size=3)
    assert set(dataset.element_spec) == {"x", "idx"}
    element = next(iter(dataset))
    np.testing.assert_array_equal(element["idx"], [0, 1, 2])


def test_shuffle_deterministic_in_seed_and_new_each_epoch():
    x = np.zeros((200, 1))
    first = data.make_dataset(x, batch_size=10, shuffle=True, seed=7)
    second = data.make_dataset(x, batch_size=10, shuffle=True, seed=7)
    epochs = [_order(first), _order(first)]
    assert not np.array_equal(epochs[0], epochs[1])
    np.testing.assert_array_equal(_order(second), epochs[0])
    np.testing.assert_array_equal(_order(second), epochs[1])
    other_seed = data.make_dataset(x, batch_size=10, shuffle=True, seed=8)
    assert not np.array_equal(_order(other_seed), epochs[0])


def test_string_rows():
    texts = np.array(["今天天气很好", "质量太差", "hello", "物流很快"])
    labels = np.array([1, 0, -1, 1])
    for x in (texts, texts.astype(object)):
        dataset = data.make_dataset(x, labels, batch_size=3, shuffle=True, seed=0)
        assert dataset.element_spec[0]["x"].dtype == tf.string
        for idx, x_batch, y_batch in _epoch(dataset):
            assert [s.decode("utf-8") for s in x_batch] == list(texts[idx])
            np.testing.assert_array_equal(y_batch, labels[idx])


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("drop_remainder", [False, True])
def test_labeled_per_batch(shuffle, drop_remainder):
    # 7 labeled rows in batches of k=3: 7 % 3 != 0, so chunks cross permutation ends.
    y = np.full(40, -1)
    labeled_rows = np.array([0, 5, 11, 17, 23, 29, 35])
    y[labeled_rows] = np.arange(7) % 3
    x = np.arange(40, dtype=np.float32)[:, None] * 10
    dataset = data.make_dataset(
        x,
        y,
        batch_size=8,
        shuffle=shuffle,
        seed=0,
        drop_remainder=drop_remainder,
        labeled_per_batch=3,
    )
    # 33 unlabeled rows in chunks of 8 - 3 = 5.
    num_batches = 6 if drop_remainder else 7
    assert int(dataset.cardinality()) == num_batches
    drawn = set()
    for _ in range(4):
        batches = _epoch(dataset)
        assert len(batches) == num_batches
        unlabeled_seen = []
        for idx, x_batch, y_batch in batches:
            assert len(np.unique(idx)) == len(idx)  # no row twice in a batch
            assert (y_batch != -1).sum() == 3
            np.testing.assert_array_equal(x_batch, x[idx])
            np.testing.assert_array_equal(y_batch, y[idx])
            unlabeled_seen.extend(idx[y_batch == -1])
            drawn.update(idx[y_batch != -1])
        if drop_remainder:
            assert len(unlabeled_seen) == 30 and len(set(unlabeled_seen)) == 30
        else:
            np.testing.assert_array_equal(np.sort(unlabeled_seen), np.flatnonzero(y == -1))
    assert drawn == set(labeled_rows)


def test_labeled_per_batch_reshuffles_labeled_stream_within_epoch():
    y = np.full(30, -1)
    y[:4] = [0, 1, 0, 1]
    dataset = data.make_dataset(
        np.zeros((30, 1)), y, batch_size=3, shuffle=True, seed=0, labeled_per_batch=2
    )
    # 26 unlabeled rows, one per batch: 26 batches draw 13 permutations of the 4 labeled rows.
    labeled = [idx[y[idx] != -1] for idx, _, _ in _epoch(dataset)]
    permutations = {tuple(np.concatenate(labeled[i : i + 2])) for i in range(0, 26, 2)}
    assert all(sorted(p) == [0, 1, 2, 3] for p in permutations)
    assert len(permutations) > 1


def test_fashion_mnist_sized_epoch():
    x = np.zeros((60000, 28, 28), np.uint8)
    y = np.arange(60000) % 10
    dataset = data.make_dataset(x, y, batch_size=100, shuffle=True, seed=0)
    assert int(dataset.cardinality()) == 600
    seen = np.zeros(60000, np.int64)
    batches = 0
    for features, labels in dataset:
        assert features["x"].shape == (100, 28, 28) and features["x"].dtype == tf.uint8
        np.add.at(seen, features["idx"].numpy(), 1)
        np.testing.assert_array_equal(labels, features["idx"].numpy() % 10)
        batches += 1
    assert batches == 600
    np.testing.assert_array_equal(seen, 1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(y=np.zeros(9, np.int64)), r"len\(x\)=10, len\(y\)=9"),
        (dict(batch_size=0), "batch_size=0"),
        (dict(batch_size=2.5), "batch_size=2.5"),
        (dict(y=np.array([0] * 9 + [-2])), r"y\[9\]=-2"),
        (dict(y=np.zeros(10, np.float32)), "dtype float32"),
        (dict(batch_size=20, drop_remainder=True), "no batch: 10 rows in batches of 20"),
        (dict(labeled_per_batch=2), "labeled_per_batch needs labels"),
        (dict(y=np.array([0] * 3 + [-1] * 7), labeled_per_batch=0), "labeled_per_batch=0"),
        (
            dict(y=np.array([0] * 3 + [-1] * 7), batch_size=4, labeled_per_batch=4),
            r"\(0, batch_size=4\).*labeled_per_batch=4",
        ),
        (
            dict(y=np.array([0] * 3 + [-1] * 7), labeled_per_batch=4),
            r"number of labeled rows \(3\).*labeled_per_batch=4",
        ),
        (dict(y=np.zeros(10, np.int64), labeled_per_batch=2), "no batch: 0 rows"),
    ],
)
def test_make_dataset_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.make_dataset(np.zeros((10, 2)), **kwargs)


def test_make_dataset_rejects_empty_x():
    with pytest.raises(ValueError, match=r"x.shape=\(0, 3\)"):
        data.make_dataset(np.zeros((0, 3)))


@pytest.mark.parametrize("rate", [0.0, 0.2, 0.5, 1.0])
def test_noisy_labels_changes_exactly_rate_of_labeled_rows(rate):
    y = np.arange(500) % 10
    y_semi = data.mask_labels(y, num_labeled=100, seed=1)
    noisy = data.noisy_labels(y_semi, rate, seed=2)
    labeled = y_semi != data.UNLABELED
    changed = noisy != y_semi
    assert noisy.dtype == np.int64
    assert changed.sum() == round(rate * 100)
    # Always to another class in range, never on an unlabeled row.
    assert not changed[~labeled].any()
    np.testing.assert_array_equal(noisy[~labeled], data.UNLABELED)
    assert ((noisy[labeled] >= 0) & (noisy[labeled] < 10)).all()
    np.testing.assert_array_equal(y_semi, data.mask_labels(y, num_labeled=100, seed=1))


def test_noisy_labels_wrong_classes_cover_the_others_and_follow_the_seed():
    y_semi = np.full(3000, data.UNLABELED)
    y_semi[::3] = 4
    noisy = data.noisy_labels(y_semi, 1.0, seed=0, num_classes=5)
    np.testing.assert_array_equal(np.unique(noisy[::3]), [0, 1, 2, 3])
    np.testing.assert_array_equal(noisy, data.noisy_labels(y_semi, 1.0, seed=0, num_classes=5))
    assert not np.array_equal(noisy, data.noisy_labels(y_semi, 1.0, seed=1, num_classes=5))


def test_noisy_labels_rounds_the_count_and_infers_the_classes():
    y_semi = np.array([0, 1, 2, -1, 2, 1, -1])
    noisy = data.noisy_labels(y_semi, 0.5, seed=3)
    # round(0.5 * 5) == 2 (banker's rounding), classes 0..2 from the largest label.
    assert (noisy != y_semi).sum() == 2
    assert set(noisy[noisy != y_semi]) <= {0, 1, 2}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"rate": 1.5}, "rate=1.5"),
        ({"rate": -0.1}, "rate=-0.1"),
        ({"rate": 0.2, "num_classes": 2}, "num_classes=2"),
        ({"rate": 0.2, "num_classes": 1}, "num_classes=1"),
    ],
)
def test_noisy_labels_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.noisy_labels(np.array([0, 1, 2, -1]), seed=0, **kwargs)
