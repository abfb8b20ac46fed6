"""tfssl.label_issues: the folds, cleanlab's rule on the out-of-fold probabilities, the
detection of known flipped labels, learning with them unlabeled, and bad input."""

import cleanlab.filter
import cleanlab.rank
import keras
import numpy as np
import pytest

from tfssl import label_issues, models

NUM_CLASSES = 3


class RecordingModel:
    """Stands in for a compiled tfssl model: records the labels each `fit` saw, and
    predicts fixed logits for the row whose index is the input's only feature."""

    def __init__(self, logits, seen):
        self.logits, self.seen = logits, seen

    def fit(self, dataset, **kwargs):
        labels = np.full(len(self.logits), -2)
        for features, y in dataset:
            labels[features["idx"].numpy()] = y.numpy()
        self.seen.append(labels)

    def predict(self, x, batch_size=None, verbose=0):
        return self.logits[np.asarray(x)[:, 0].astype(int)]


def _recorded_problem(num_rows=60, seed=0):
    rng = np.random.default_rng(seed)
    x = np.arange(num_rows, dtype="float32")[:, None]
    y_semi = rng.integers(0, NUM_CLASSES, num_rows)
    y_semi[rng.permutation(num_rows)[:15]] = -1
    logits = rng.normal(scale=2.0, size=(num_rows, NUM_CLASSES)).astype("float32")
    return x, y_semi, logits


def _softmax(logits):
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


def test_each_label_is_hidden_in_one_stratified_fold_and_flags_are_cleanlabs():
    x, y_semi, logits = _recorded_problem()
    # Read-only inputs: any write into the caller's arrays raises.
    for array in (x, y_semi, logits):
        array.setflags(write=False)
    seen = []
    flags = label_issues.find_label_issues(
        lambda: RecordingModel(logits, seen), x, y_semi, folds=4, batch_size=16, seed=3
    )
    labeled = y_semi != -1
    assert len(seen) == 4
    hidden = np.stack([(labels == -1) & labeled for labels in seen])
    np.testing.assert_array_equal(hidden.sum(0), labeled.astype(int))
    for labels in seen:
        np.testing.assert_array_equal(labels[labels != -1], y_semi[labels != -1])
        assert np.all(labels[~labeled] == -1)
    for label in range(NUM_CLASSES):
        per_fold = hidden[:, y_semi == label].sum(1)
        assert per_fold.max() - per_fold.min() <= 1, per_fold
    probabilities = _softmax(logits.astype("float64"))
    expected = np.zeros(len(y_semi), bool)
    expected[labeled] = cleanlab.filter.find_label_issues(
        y_semi[labeled], probabilities[labeled]
    )
    np.testing.assert_array_equal(flags, expected)
    assert flags.dtype == bool and flags.shape == y_semi.shape and not flags[~labeled].any()


def test_folds_follow_the_seed():
    _, y_semi, _ = _recorded_problem()
    first = label_issues.stratified_folds(y_semi, 5, seed=1)
    np.testing.assert_array_equal(first, label_issues.stratified_folds(y_semi, 5, seed=1))
    assert np.any(first != label_issues.stratified_folds(y_semi, 5, seed=2))
    np.testing.assert_array_equal(first == -1, y_semi == -1)


def test_out_of_fold_probabilities_are_the_softmax_on_the_hidden_rows():
    x, y_semi, logits = _recorded_problem()
    probabilities = label_issues.out_of_fold_probabilities(
        lambda: RecordingModel(logits, []), x, y_semi, folds=3, seed=0
    )
    labeled = y_semi != -1
    # The same float64 softmax of the same float32 logits on both sides: rounding only.
    np.testing.assert_allclose(
        probabilities[labeled], _softmax(logits[labeled].astype("float64")), rtol=1e-12
    )
    assert np.all(np.isnan(probabilities[~labeled]))


def test_quality_scores_are_cleanlabs_self_confidence():
    _, y_semi, logits = _recorded_problem()
    probabilities = _softmax(logits.astype("float64"))
    scores = label_issues.label_quality_scores(y_semi, probabilities)
    labeled = y_semi != -1
    # Float64 on both sides, the same values read out (NumPy's default rtol 1e-7).
    np.testing.assert_allclose(
        scores[labeled],
        cleanlab.rank.get_label_quality_scores(y_semi[labeled], probabilities[labeled]),
    )
    np.testing.assert_allclose(
        scores[labeled], probabilities[labeled][np.arange(labeled.sum()), y_semi[labeled]]
    )
    assert np.all(np.isnan(scores[~labeled]))


def test_detection_scores_count_hits():
    flags = np.array([True, True, False, False, True])
    wrong = np.array([True, False, True, False, False])
    scores = label_issues.detection_scores(flags, wrong)
    assert scores == {"num_wrong": 2, "precision": 1 / 3, "recall": 1 / 2, "f1": 0.4}
    assert label_issues.detection_scores(flags & False, wrong)["f1"] == 0.0


def _blobs(seed=0):
    """Three separated Gaussian blobs, 60 labels (20 a class) of which 12 are flipped."""
    rng = np.random.default_rng(seed)
    centers = np.array([[3.0, 0.0], [-3.0, 0.0], [0.0, 3.0]])
    y = np.repeat(np.arange(NUM_CLASSES), 80)
    x = (centers[y] + rng.normal(size=(len(y), 2))).astype("float32")
    y_semi = np.full_like(y, -1)
    labeled = np.concatenate([rng.choice(np.flatnonzero(y == c), 20, False) for c in range(3)])
    y_semi[labeled] = y[labeled]
    flipped = rng.choice(labeled, 12, replace=False)
    y_noisy = y_semi.copy()
    y_noisy[flipped] = (y_semi[flipped] + rng.integers(1, 3, 12)) % NUM_CLASSES
    return x, y, y_noisy


def _build_pi_model():
    backbone = keras.Sequential(
        [keras.Input((2,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(3)]
    )
    model = models.PiModel(backbone, max_unsupervised_weight=1.0, ramp_up_epochs=5)
    model.compile(optimizer=keras.optimizers.Adam(0.03))
    return model


@pytest.mark.slow
def test_flipped_labels_are_found_and_become_unlabeled_rows():
    keras.utils.set_random_seed(0)
    x, y, y_noisy = _blobs()
    model, report = label_issues.train_without_label_issues(
        _build_pi_model, x, y_noisy, y_true=y, folds=3, batch_size=60,
        fit_kwargs={"epochs": 15, "verbose": 0}, seed=0,
    )
    wrong = (y_noisy != -1) & (y_noisy != y)
    flags = report["flags"]
    # The blobs are separated by 6 standard deviations: a model trained on 40 labels, 8 of
    # them wrong, puts every flipped row in its true class.
    assert np.sum(flags & wrong) >= 10 and np.sum(flags & ~wrong) <= 3, report
    assert report["num_flagged"] == flags.sum()
    expected = label_issues.detection_scores(flags, wrong)
    for name in ("num_wrong", "precision", "recall", "f1"):
        assert report[name] == expected[name]
    np.testing.assert_array_equal(report["labels"], np.where(flags, -1, y_noisy))
    accuracy = np.mean(np.argmax(model.predict(x, verbose=0), -1) == y)
    assert accuracy > 0.9


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"y_semi": np.zeros((4, 2), int)}, r"shape \(4, 2\)"),
        ({"y_semi": np.zeros(5, int)}, "len\\(y\\)=5"),
        ({"folds": 1}, "folds=1"),
        ({"folds": 2.0}, "folds=2.0"),
        ({"y_semi": np.array([0, 0, 1, -1])}, "class 1 with 1 labeled rows"),
        ({"y_semi": np.full(4, -1)}, "no label"),
    ],
)
def test_bad_input_is_named(kwargs, message):
    arguments = {"y_semi": np.array([0, 0, 1, 1]), "folds": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        label_issues.find_label_issues(
            lambda: pytest.fail("no model is built for bad input"),
            np.zeros((4, 1), "float32"), arguments["y_semi"], folds=arguments["folds"],
        )


@pytest.mark.parametrize(
    "probabilities,message",
    [
        (np.full((3, 2), 0.5), r"shape \(3, 2\)"),
        (np.full((4,), 0.5), r"shape \(4,\)"),
        (np.full((4, 2), 0.6), r"probabilities\[0\]=\[0.6, 0.6\]"),
        (np.full((4, 1), 1.0), "num_classes=1"),
    ],
)
def test_bad_probabilities_are_named(probabilities, message):
    y_semi = np.array([0, 1, -1, 1])
    with pytest.raises(ValueError, match=message):
        label_issues.flag_from_probabilities(y_semi, probabilities)
    with pytest.raises(ValueError, match=message):
        label_issues.label_quality_scores(y_semi, probabilities)


def test_true_labels_must_cover_the_labeled_rows():
    with pytest.raises(ValueError, match=r"y_true\[1\]=-1"):
        label_issues.train_without_label_issues(
            lambda: pytest.fail("no model is built for bad input"),
            np.zeros((4, 1), "float32"), np.array([0, 0, 1, 1]),
            y_true=np.array([0, -1, 1, 1]), folds=2,
        )
