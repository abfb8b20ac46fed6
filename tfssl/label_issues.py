"""Finding wrong labels with a semi-supervised model, and learning without them.

Confident learning (Northcutt, Jiang & Chuang, "Confident Learning: Estimating Uncertainty
in Dataset Labels", JAIR 2021, arXiv 1911.00068) judges a label from the probabilities that
a model trained *without that label* gives its row: the given labels and these out-of-fold
probabilities estimate the joint distribution of given and true labels, and the rows it
counts as off the diagonal are flagged. Its standard recipe trains on the labeled rows only.
Here each fold's labels are hidden, i.e. turned into unlabeled rows, while a tfssl method
trains on the other labels *and every unlabeled row*, so the out-of-fold probabilities come
from a semi-supervised model. The rule itself is cleanlab's (`cleanlab.filter`, install
`tfssl[labels]`).

A flagged label is then best not thrown away with its row: `train_without_label_issues`
turns it into an unlabeled row, which the semi-supervised method still learns from (the
idea behind DivideMix, Li, Socher & Hoi, arXiv 2002.07394; `tfssl.models.DivideMix` is the
in-training version).
"""

import numpy as np

from tfssl import data
from tfssl._labels import UNLABELED, check_labels, check_lengths, is_int

__all__ = [
    "detection_scores",
    "find_label_issues",
    "flag_from_probabilities",
    "label_quality_scores",
    "out_of_fold_probabilities",
    "stratified_folds",
    "train_without_label_issues",
]


def out_of_fold_probabilities(build_model, x, y_semi, *, folds=5, batch_size=100,
                              fit_kwargs=None, seed=None):
    """The class probabilities each labeled row gets from a model that never saw its label.

    The labeled rows are split into `folds` folds, stratified by class (each class's rows
    are shuffled with `seed` and dealt to the folds in turn). For each fold a fresh
    `build_model()` trains on `x` with that fold's labels hidden (set to `-1`): the other
    folds' labels plus every unlabeled row. Its softmax on the fold's rows is their
    out-of-fold probability.

    Example:

    ```python
    def build_model():
        model = tfssl.models.PiModel(tfssl.backbones.mlp((28, 28, 1), 10))
        model.compile(optimizer="adam")
        return model

    probabilities = tfssl.label_issues.out_of_fold_probabilities(
        build_model, x, y_noisy, folds=5, fit_kwargs={"epochs": 10, "verbose": 0}, seed=0)
    ```

    Args:
        build_model: Callable with no argument returning a compiled tfssl model (a
            `tfssl.models.SemiSupervisedModel`) whose outputs are logits; a model with
            per-sample state must be built for `len(x)` rows.
        x: Training inputs, `N` rows.
        y_semi: Their labels, `(N,)` integers, `-1` for unlabeled rows. Not modified.
        folds: Number of folds, `>= 2`; every class needs at least this many labeled rows.
            Defaults to `5`.
        batch_size: Rows per training batch (`tfssl.data.make_dataset`) and prediction
            batch. Defaults to `100`.
        fit_kwargs: Keyword arguments of `model.fit` (`epochs`, `verbose`, `callbacks`).
            Defaults to `None` (Keras' defaults).
        seed: Seed of the folds and of the training batches' shuffles. The models' initial
            weights follow Keras' global seed (`keras.utils.set_random_seed`). Defaults to
            `None`.

    Returns:
        A float64 array `(N, num_classes)`: the out-of-fold probabilities on the labeled
        rows, NaN on the unlabeled rows.

    Raises:
        ValueError: If `y_semi` is not 1-D integer labels `>= -1` or not as long as `x`,
            `folds` is not an integer `>= 2`, no row is labeled, or a class has fewer
            labeled rows than `folds`.
    """
    x = np.asarray(x)
    y_semi = _check_inputs(x, y_semi, folds)
    fold_of_row = stratified_folds(y_semi, folds, seed)
    fit_kwargs = dict(fit_kwargs or {})
    probabilities = None
    for fold in range(folds):
        hidden = fold_of_row == fold
        y_train = np.where(hidden, UNLABELED, y_semi)
        model = build_model()
        model.fit(
            data.make_dataset(x, y_train, batch_size=batch_size, shuffle=True, seed=seed),
            **fit_kwargs,
        )
        logits = np.asarray(model.predict(x[hidden], batch_size=batch_size, verbose=0))
        if probabilities is None:
            probabilities = np.full((len(y_semi), logits.shape[-1]), np.nan)
        probabilities[hidden] = _softmax(logits.astype(np.float64))
    _check_probabilities(y_semi, probabilities)
    return probabilities


def flag_from_probabilities(y_semi, probabilities):
    """Confident learning's flags, from out-of-fold probabilities (cleanlab's rule).

    Applies `cleanlab.filter.find_label_issues` with its defaults (`filter_by=
    "prune_by_noise_rate"`) to the labeled rows.

    Example:

    ```python
    flags = tfssl.label_issues.flag_from_probabilities(y_noisy, probabilities)
    ```

    Args:
        y_semi: Labels `(N,)`, `-1` for unlabeled rows.
        probabilities: `(N, num_classes)` out-of-fold probabilities (any value on the
            unlabeled rows, e.g. NaN); each labeled row sums to 1.

    Returns:
        A bool array `(N,)`: True where a given label is judged wrong, never on an
        unlabeled row.

    Raises:
        ValueError: If the labels or the probabilities have the wrong shape, no row is
            labeled, a label is not below `num_classes`, or a labeled row's probabilities
            are not a distribution.
        ImportError: If cleanlab is not installed (`pip install tfssl[labels]`).
    """
    y_semi = check_labels(y_semi)
    probabilities = _check_probabilities(y_semi, probabilities)
    labeled = y_semi != UNLABELED
    flags = np.zeros(len(y_semi), bool)
    flags[labeled] = _cleanlab().filter.find_label_issues(
        y_semi[labeled], probabilities[labeled]
    )
    return flags


def label_quality_scores(y_semi, probabilities):
    """cleanlab's label-quality score of every labeled row, for ranking: low is suspect.

    `cleanlab.rank.get_label_quality_scores` with its default `"self_confidence"`: the
    out-of-fold probability of the given label.

    Example:

    ```python
    scores = tfssl.label_issues.label_quality_scores(y_noisy, probabilities)
    most_suspect = np.argsort(scores)[:20]  # NaN (unlabeled rows) sorts last
    ```

    Args:
        y_semi: Labels `(N,)`, `-1` for unlabeled rows.
        probabilities: `(N, num_classes)` out-of-fold probabilities.

    Returns:
        A float64 array `(N,)` of scores in `[0, 1]`, NaN on the unlabeled rows.

    Raises:
        ValueError: As `flag_from_probabilities`.
        ImportError: If cleanlab is not installed.
    """
    y_semi = check_labels(y_semi)
    probabilities = _check_probabilities(y_semi, probabilities)
    labeled = y_semi != UNLABELED
    scores = np.full(len(y_semi), np.nan)
    scores[labeled] = _cleanlab().rank.get_label_quality_scores(
        y_semi[labeled], probabilities[labeled]
    )
    return scores


def find_label_issues(build_model, x, y_semi, *, folds=5, batch_size=100, fit_kwargs=None,
                      seed=None):
    """Flags the given labels that a semi-supervised model judges wrong.

    1. `out_of_fold_probabilities`: for each of `folds` stratified folds, that fold's labels
       are hidden (made unlabeled rows) while a fresh `build_model()` trains on the other
       labels plus every unlabeled row; its probabilities on the hidden rows are theirs.
    2. `flag_from_probabilities`: cleanlab's confident-learning rule on those
       probabilities and the given labels.

    `label_quality_scores` ranks the labels from the same probabilities.

    Formula (confident learning, cleanlab's default `filter_by="prune_by_noise_rate"`;
    `P` the out-of-fold probabilities, `y` the given labels, both on the labeled rows):

    ```python
    t[j] = mean(P[y == j, j])                                 # per-class thresholds
    C[i, j] = count(y == i and argmax over {k: P[., k] >= t[k]} of P[., k] == j)
    Q = C calibrated so that its row sums are the label counts, normalised to sum 1
    # in each given class i and for each j != i, the round(n * Q[i, j]) rows with the
    # largest margin P[., j] - P[., i] are flagged
    ```

    Example:

    ```python
    def build_model():
        model = tfssl.models.PiModel(tfssl.backbones.mlp((28, 28, 1), 10))
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        return model

    flags = tfssl.label_issues.find_label_issues(
        build_model, x, y_noisy, folds=5, fit_kwargs={"epochs": 10, "verbose": 0}, seed=0)
    y_cleaned = np.where(flags, -1, y_noisy)
    ```

    Args:
        build_model: Callable with no argument returning a compiled tfssl model, as
            `tfssl.self_training` takes.
        x: Training inputs, `N` rows.
        y_semi: Labels `(N,)`, `-1` for unlabeled rows. Not modified.
        folds: Number of folds, `>= 2`. Defaults to `5`.
        batch_size: Rows per batch. Defaults to `100`.
        fit_kwargs: Keyword arguments of `model.fit`. Defaults to `None`.
        seed: Seed of the folds and shuffles. Defaults to `None`.

    Returns:
        A NumPy bool array of `len(y_semi)`: True where a given label is judged wrong,
        never True for an unlabeled row.

    Raises:
        ValueError: If `y_semi` is not 1-D integer labels or not as long as `x`, `folds <
            2`, no row is labeled, or a class has fewer labeled rows than `folds`.
        ImportError: If cleanlab is not installed (`pip install tfssl[labels]`).

    References:
        Northcutt, Jiang & Chuang, Confident Learning: Estimating Uncertainty in Dataset
        Labels, arXiv 1911.00068.
    """
    probabilities = out_of_fold_probabilities(
        build_model, x, y_semi, folds=folds, batch_size=batch_size, fit_kwargs=fit_kwargs,
        seed=seed,
    )
    return flag_from_probabilities(y_semi, probabilities)


def train_without_label_issues(build_model, x, y_semi, *, y_true=None, folds=5,
                               batch_size=100, fit_kwargs=None, seed=None):
    """Flags the wrong labels, turns them into unlabeled rows, and trains the method.

    `find_label_issues` flags the labels; a fresh `build_model()` then trains on `x` with the
    flagged labels set to `-1`. Their rows stay in the training set as unlabeled rows, which
    the semi-supervised method still learns from (a flagged row is not dropped, as
    cleanlab's `CleanLearning` drops it).

    Example:

    ```python
    model, report = tfssl.label_issues.train_without_label_issues(
        build_model, x, y_noisy, y_true=y, fit_kwargs={"epochs": 10, "verbose": 0}, seed=0)
    report["num_flagged"], report["precision"], report["recall"]
    ```

    Args:
        build_model: Callable with no argument returning a compiled tfssl model.
        x: Training inputs, `N` rows.
        y_semi: Labels `(N,)`, `-1` for unlabeled rows. Not modified.
        y_true: The true labels `(N,)`, for the report only: a flag is right where the
            given label differs from it. Defaults to `None`.
        folds: Number of folds of the detection. Defaults to `5`.
        batch_size: Rows per batch. Defaults to `100`.
        fit_kwargs: Keyword arguments of every `model.fit`. Defaults to `None`.
        seed: Seed of the folds and shuffles. Defaults to `None`.

    Returns:
        `(model, report)`: the model trained on the cleaned labels, and a dict with
        `"num_flagged"`, `"flags"` (the bool array), `"labels"` (the cleaned labels) and
        `"probabilities"` (out-of-fold); with `y_true` also `"num_wrong"` (labeled rows whose
        label is wrong), `"precision"`, `"recall"` and `"f1"` of the flags against them
        (0 where undefined).

    Raises:
        ValueError: As `find_label_issues`, or if `y_true` is not `(N,)` labels with a
            class on every labeled row.
        ImportError: If cleanlab is not installed.
    """
    y_semi = _check_inputs(x, y_semi, folds)
    if y_true is not None:
        y_true = check_labels(y_true)
        check_lengths(y_semi, y_true)
        missing = (y_semi != UNLABELED) & (y_true == UNLABELED)
        if missing.any():
            row = int(np.argmax(missing))
            raise ValueError(
                f"`y_true` needs a class on every labeled row. Received: y_true[{row}]=-1"
            )
    probabilities = out_of_fold_probabilities(
        build_model, x, y_semi, folds=folds, batch_size=batch_size, fit_kwargs=fit_kwargs,
        seed=seed,
    )
    flags = flag_from_probabilities(y_semi, probabilities)
    cleaned = np.where(flags, UNLABELED, y_semi)
    model = build_model()
    model.fit(
        data.make_dataset(x, cleaned, batch_size=batch_size, shuffle=True, seed=seed),
        **dict(fit_kwargs or {}),
    )
    report = {
        "num_flagged": int(flags.sum()),
        "flags": flags,
        "labels": cleaned,
        "probabilities": probabilities,
    }
    if y_true is not None:
        report.update(detection_scores(flags, (y_semi != UNLABELED) & (y_semi != y_true)))
    return model, report


def detection_scores(flags, wrong):
    """Precision, recall and F1 of `flags` against the truly `wrong` labels.

    Args:
        flags: Bool array, the flagged rows.
        wrong: Bool array of the same shape, the rows whose given label is wrong.

    Returns:
        A dict with `"num_wrong"`, `"precision"` (`|flags & wrong| / |flags|`), `"recall"`
        (`|flags & wrong| / |wrong|`) and `"f1"` (their harmonic mean); each is 0 where its
        denominator is.
    """
    flags, wrong = np.asarray(flags, bool), np.asarray(wrong, bool)
    hits = int(np.sum(flags & wrong))
    precision = hits / flags.sum() if flags.sum() else 0.0
    recall = hits / wrong.sum() if wrong.sum() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "num_wrong": int(wrong.sum()),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
    }


def stratified_folds(y_semi, folds, seed):
    """Deals the labeled rows to folds, stratified by class.

    Each class's rows are shuffled with `seed` and dealt to the folds in turn, continuing
    where the previous class stopped, so that every class's fold sizes, and the folds'
    sizes, differ by at most one.

    Args:
        y_semi: Labels `(N,)`, `-1` for unlabeled rows.
        folds: Number of folds.
        seed: Seed of `np.random.default_rng`.

    Returns:
        An int array `(N,)`: the fold of each labeled row, `-1` for unlabeled rows.
    """
    rng = np.random.default_rng(seed)
    fold_of_row = np.full(len(y_semi), -1)
    start = 0
    for label in np.unique(y_semi[y_semi != UNLABELED]):
        rows = rng.permutation(np.flatnonzero(y_semi == label))
        fold_of_row[rows] = (start + np.arange(len(rows))) % folds
        start += len(rows)
    return fold_of_row


def _check_inputs(x, y_semi, folds):
    """`y_semi` as int64, once `x`, `y_semi` and `folds` are checked (see
    `out_of_fold_probabilities`' Raises)."""
    y_semi = check_labels(y_semi)
    check_lengths(x, y_semi)
    if not is_int(folds) or folds < 2:
        raise ValueError(f"`folds` must be an integer >= 2. Received: folds={folds!r}")
    labels, counts = np.unique(y_semi[y_semi != UNLABELED], return_counts=True)
    if not len(labels):
        raise ValueError(
            "Finding label issues needs labeled rows. Received: y_semi with no label "
            f"(all {len(y_semi)} rows are -1)"
        )
    small = counts < folds
    if small.any():
        raise ValueError(
            "Every class needs at least `folds` labeled rows, one in each fold. Received: "
            f"folds={folds} and class {labels[small][0]} with {counts[small][0]} labeled rows"
        )
    return y_semi


def _check_probabilities(y_semi, probabilities):
    """`probabilities` as float64, once checked against the labels `y_semi`."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[0] != len(y_semi):
        raise ValueError(
            f"`probabilities` must have shape (len(y_semi), num_classes) = ({len(y_semi)}, "
            f"num_classes). Received: probabilities with shape {probabilities.shape}"
        )
    labeled = y_semi != UNLABELED
    if not labeled.any():
        raise ValueError("Flagging label issues needs labeled rows. Received: no label")
    if y_semi.max() >= probabilities.shape[1]:
        raise ValueError(
            f"Every label must be below num_classes={probabilities.shape[1]} (the columns of "
            f"`probabilities`). Received: label {y_semi.max()}"
        )
    rows = probabilities[labeled]
    # Float32 softmax rows sum to 1 within a few ulps of 1 (6e-8 each): 1e-3 is generous
    # for any float32 source and still refuses logits or unnormalised scores.
    bad = ~np.all(np.isfinite(rows) & (rows >= 0), axis=1) | (np.abs(rows.sum(1) - 1) > 1e-3)
    if bad.any():
        row = int(np.flatnonzero(labeled)[np.argmax(bad)])
        raise ValueError(
            "The labeled rows' probabilities must be finite, >= 0 and sum to 1. Received: "
            f"probabilities[{row}]={probabilities[row].tolist()}"
        )
    return probabilities


def _softmax(logits):
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _cleanlab():
    """The `cleanlab` package with its `filter` and `rank` modules, or an ImportError
    saying how to install it."""
    try:
        import cleanlab.filter  # noqa: F401
        import cleanlab.rank  # noqa: F401
    except ImportError as error:
        raise ImportError(
            "tfssl.label_issues applies cleanlab's confident-learning rule: "
            "pip install 'tfssl[labels]' (cleanlab >= 2.9)."
        ) from error
    return cleanlab
