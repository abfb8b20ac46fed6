"""tfssl.self_training: rounds on separable data, the transductive pool, the records, bad
input and a Fashion-MNIST subset."""

import keras
import numpy as np
import pytest

import tfssl
from tfssl import data, datasets

CENTRES = np.array([[0.0, 6.0], [6.0, -3.0], [-6.0, -3.0]], "float32")


def blobs(rows_per_class, seed):
    """Three well separated Gaussian blobs in 2-D, classes in a shuffled order."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.repeat(np.arange(3), rows_per_class))
    x = (CENTRES[y] + rng.normal(size=(len(y), 2))).astype("float32")
    return x, y


def semi(y, per_class=2):
    """The first `per_class` rows of each class keep their label."""
    y_semi = np.full_like(y, data.UNLABELED)
    for label in range(3):
        y_semi[np.flatnonzero(y == label)[:per_class]] = label
    return y_semi


class Builder:
    """`build_model` that keeps every model it built, to check the records against them."""

    def __init__(self):
        self.models = []

    def __call__(self):
        keras.utils.set_random_seed(len(self.models))
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
        model.compile(
            keras.optimizers.Adam(0.1), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        )
        self.models.append(model)
        return model


# 10 epochs on the blobs: the first round's model puts 50 or more rows of each class above
# 0.9 (15 are taken per class and round), and 88 of the 90 pool rows above 0.99 by the second.
FIT = {"epochs": 10, "batch_size": 256, "verbose": 0}


def check_records(records, builder, pool, y_pool_true, threshold):
    """Each record's rows, pseudo-labels and confidences are its round's model's."""
    seen = set()
    total = 0
    for record, model in zip(records, builder.models):
        rows = record["indices"]
        assert not seen & set(rows.tolist()), "a row was pseudo-labeled twice"
        seen |= set(rows.tolist())
        total += len(rows)
        assert record["num_added"] == len(rows) and record["num_pseudo_labeled"] == total
        if len(rows):
            # A direct inference-mode call: a traced `predict` per model costs more.
            probabilities = keras.ops.convert_to_numpy(
                keras.ops.softmax(model(pool[rows], training=False))
            )
            np.testing.assert_array_equal(record["pseudo_labels"], probabilities.argmax(-1))
            np.testing.assert_allclose(record["confidences"], probabilities.max(-1), rtol=1e-5)
            assert np.all(record["confidences"] >= threshold)
            expected = np.mean(record["pseudo_labels"] == y_pool_true[rows])
            np.testing.assert_allclose(record["accuracy"], expected)


@pytest.mark.slow
def test_rows_added_per_round_grow_and_are_right_on_separable_data():
    x, y = blobs(60, seed=0)
    y_semi = semi(y)
    builder = Builder()
    model, records = tfssl.self_training(
        builder, x, y_semi, rounds=3, threshold=0.9, per_class_top_k=15, y_pool_true=y,
        fit_kwargs=FIT,
    )  # fmt: skip
    assert len(records) == 3 and len(builder.models) == 4  # three rounds, then the final model
    assert [r["num_train_rows"] for r in records] == [6, 6 + 45, 6 + 90]
    assert [r["num_pseudo_labeled"] for r in records] == [45, 90, 135]
    for record in records:
        # Balanced: 15 per class and round; all of them right.
        np.testing.assert_array_equal(np.bincount(record["pseudo_labels"], minlength=3), 15)
        assert record["accuracy"] == 1.0 and record["cumulative_accuracy"] == 1.0
        assert np.all(y_semi[record["indices"]] == data.UNLABELED)
        # Most confident first within each class.
        for label in range(3):
            confidences = record["confidences"][record["pseudo_labels"] == label]
            assert np.all(np.diff(confidences) <= 0)
    check_records(records, builder, x, y, 0.9)
    assert model is builder.models[-1]
    assert model.history.history["loss"][-1] < model.history.history["loss"][0]


@pytest.mark.slow
def test_transductive_pool_is_pseudo_labeled_and_scored():
    x, y = blobs(20, seed=0)
    x_pool, y_pool = blobs(30, seed=1)
    builder = Builder()
    _, records = tfssl.self_training(
        builder, x, semi(y), x_pool=x_pool, rounds=2, threshold=0.99, y_pool_true=y_pool,
        fit_kwargs=FIT,
    )  # fmt: skip
    assert all(r["indices"].max(initial=0) < len(x_pool) for r in records)
    assert records[-1]["num_pseudo_labeled"] > len(x_pool) // 2
    assert records[-1]["cumulative_accuracy"] == 1.0
    check_records(records, builder, x_pool, y_pool, 0.99)


def test_records_without_true_labels_and_a_threshold_nobody_reaches():
    x, y = blobs(10, seed=0)
    _, records = tfssl.self_training(
        Builder(), x, semi(y), rounds=1, threshold=1.0, fit_kwargs={"epochs": 1, "verbose": 0}
    )
    assert records[0]["num_added"] == 0 and records[0]["indices"].shape == (0,)
    assert records[0]["accuracy"] is None and records[0]["cumulative_accuracy"] is None


@pytest.mark.slow
def test_each_round_trains_on_the_labeled_and_the_pseudo_labeled_rows_of_fashion_mnist():
    (x, y), _ = datasets.load_fashion_mnist()
    x, y = (x[:1000] / 255.0).astype("float32").reshape(-1, 784), y[:1000]
    y_semi = data.mask_labels(y, 100, seed=0)
    models_built = []

    def build_model():
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [keras.Input((784,)), keras.layers.Dense(64, "relu"), keras.layers.Dense(10)]
        )
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        models_built.append(model)
        return model

    _, records = tfssl.self_training(
        build_model, x, y_semi, rounds=2, threshold=0.8, y_pool_true=y,
        fit_kwargs={"epochs": 10, "batch_size": 50, "verbose": 0},
    )  # fmt: skip
    # Round k trains on the 100 labeled rows and the rows pseudo-labeled before it, the
    # final model on all of them: one optimizer step per 50 rows.
    num_pseudo_labeled = [0] + [record["num_pseudo_labeled"] for record in records]
    assert len(models_built) == 3 and num_pseudo_labeled[-1] > num_pseudo_labeled[1] > 0
    for model, added in zip(models_built, num_pseudo_labeled):
        assert model.history.params["steps"] == -(-(100 + added) // 50)
    for record, added in zip(records, num_pseudo_labeled):
        assert record["num_train_rows"] == 100 + added
    # The pseudo-labels are the models' confident predictions, most of them right; the
    # final model, trained on them, predicts them back.
    builder = type("Built", (), {"models": models_built})
    check_records(records, builder, x, y, 0.8)
    assert records[-1]["cumulative_accuracy"] > 0.7
    rows = np.concatenate([record["indices"] for record in records])
    pseudo_labels = np.concatenate([record["pseudo_labels"] for record in records])
    final = keras.ops.convert_to_numpy(models_built[-1](x[rows], training=False)).argmax(-1)
    assert np.mean(final == pseudo_labels) > 0.9


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"rounds": 0}, "rounds=0"),
        ({"threshold": 1.5}, "threshold=1.5"),
        ({"threshold": -0.1}, "threshold=-0.1"),
        ({"per_class_top_k": 0}, "per_class_top_k=0"),
        ({"x_pool": np.zeros((0, 2), "float32")}, "pool to pseudo-label is empty"),
        ({"y_pool_true": np.zeros(3)}, "len\\(y_pool_true\\)=3"),
    ],
)
def test_bad_input_names_it(kwargs, message):
    x, y = blobs(4, seed=0)
    with pytest.raises(ValueError, match=message):
        tfssl.self_training(Builder(), x, semi(y), **kwargs)


def test_no_unlabeled_row_is_an_empty_pool():
    x, y = blobs(4, seed=0)
    with pytest.raises(ValueError, match="pool to pseudo-label is empty"):
        tfssl.self_training(Builder(), x, y)
