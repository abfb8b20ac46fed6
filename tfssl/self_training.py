"""Self-training in rounds: train, pseudo-label the confident rows of a pool, retrain.

Seed 003 ("简单自训练" and "Pseudo Labeling 提高模型的分类效果"): train a classifier on
the labeled rows, predict the unlabeled rows (or, transductively, the test inputs), add the
confidently predicted ones with their predicted class as label, train again, predict again.
`tfssl.self_training` is that loop, with the selection rule (a confidence threshold, and
optionally the `k` most confident rows per class to keep the classes balanced) and a record of
every round.
"""

import numpy as np

from tfssl.data import UNLABELED

__all__ = ["self_training"]


def self_training(
    build_model,
    x,
    y,
    x_pool=None,
    rounds=3,
    threshold=0.9,
    per_class_top_k=None,
    y_pool_true=None,
    fit_kwargs=None,
    from_logits=True,
    predict_batch_size=256,
):
    """Self-training: rounds of training, pseudo-labeling a pool, and retraining.

    Round `r` (`r = 0 .. rounds - 1`):

    1. `model = build_model()`, a fresh compiled model, is fit on the labeled rows plus
       every row pseudo-labeled so far (`model.fit(x, y, **fit_kwargs)`).
    2. It predicts the rows of the pool not yet pseudo-labeled.
    3. Those whose largest probability is at least `threshold` join the training set with
       their predicted class; with `per_class_top_k`, at most the `k` most confident of
       each class join (the classes stay balanced). A pseudo-label, once given, is kept.

    After the last round a final model is trained on everything added and returned: with
    `rounds=1` this is the seed's recipe (train, predict, add, retrain).

    The pool is the unlabeled rows of `x` (`y == -1`), or `x_pool` if given, e.g. the test
    inputs (transductive: their labels are never read, only `y_pool_true` for the records).

    Example:

    ```python
    def build_model():
        model = tfssl.backbones.mlp((28, 28, 1), 10)
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return model

    model, records = tfssl.self_training(
        build_model, x, y_semi, rounds=3, threshold=0.95, per_class_top_k=500,
        y_pool_true=y, fit_kwargs={"epochs": 5, "verbose": 0})
    [r["num_added"] for r in records], [r["accuracy"] for r in records]
    ```

    Args:
        build_model: Callable with no argument returning a compiled `keras.Model` that maps
            inputs to logits (or probabilities, with `from_logits=False`) and trains with
            `fit(x, y)` on integer labels.
        x: Training inputs, `N` rows.
        y: Their labels, `(N,)` integers, `-1` for unlabeled rows.
        x_pool: Inputs to pseudo-label instead of the unlabeled rows of `x`. Defaults to
            `None`.
        rounds: Number of rounds, `>= 1`. Defaults to `3`.
        threshold: Confidence a prediction needs, in `[0, 1]`. Defaults to `0.9`.
        per_class_top_k: Most rows added per class and round, or `None` for all above the
            threshold. Defaults to `None`.
        y_pool_true: True labels of the pool, for the records only: aligned with `x_pool`
            when it is given, else with `x` (only its unlabeled rows are read). Defaults to
            `None`.
        fit_kwargs: Keyword arguments of `model.fit` (`epochs`, `batch_size`, `verbose`,
            ...). Defaults to `None` (Keras' defaults).
        from_logits: Whether the model's outputs are logits (softmax is applied) or
            probabilities. Defaults to `True`.
        predict_batch_size: Batch size of the pool's predictions. Defaults to `256`.

    Returns:
        `(model, records)`: the final model and one dict per round with
        `round`; `num_train_rows` (rows the round's model trained on); `indices` (the rows
        added this round, as rows of `x_pool`, or of `x` when the pool is `x`'s unlabeled
        rows); `pseudo_labels` and `confidences` of those rows; `num_added`;
        `num_pseudo_labeled` (all rows added so far); and, with `y_pool_true`, `accuracy`
        (of this round's rows, NaN if none) and `cumulative_accuracy` (of all rows added so
        far), else `None` for both.

    Raises:
        ValueError: If `rounds < 1`, `threshold` is outside `[0, 1]`, `per_class_top_k` is
            not a positive integer, the pool is empty, `x` has no labeled row, or lengths
            disagree.
    """
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"`rounds` must be an integer >= 1. Received: rounds={rounds!r}")
    if isinstance(threshold, bool) or not 0.0 <= threshold <= 1.0:
        raise ValueError(f"`threshold` must be in [0, 1]. Received: threshold={threshold}")
    if per_class_top_k is not None and (
        isinstance(per_class_top_k, bool)
        or not isinstance(per_class_top_k, int)
        or per_class_top_k < 1
    ):
        raise ValueError(
            "`per_class_top_k` must be a positive integer or None. "
            f"Received: per_class_top_k={per_class_top_k!r}"
        )
    x = np.asarray(x)
    y = np.asarray(y).reshape(-1)
    if len(x) != len(y):
        raise ValueError(f"`x` and `y` must have as many rows. Received: {len(x)} and {len(y)}")
    labeled = np.flatnonzero(y != UNLABELED)
    if len(labeled) == 0:
        raise ValueError("`y` has no labeled row (all are -1): self-training needs some.")
    if x_pool is None:
        pool, pool_rows = x, np.flatnonzero(y == UNLABELED)
    else:
        pool = np.asarray(x_pool)
        pool_rows = np.arange(len(pool))
    if len(pool_rows) == 0:
        raise ValueError(
            "The pool to pseudo-label is empty: `x_pool` has no row, or `y` no -1 row. "
            f"Received: pool size 0 ({'x_pool' if x_pool is not None else 'unlabeled rows'})"
        )
    if y_pool_true is not None:
        y_pool_true = np.asarray(y_pool_true).reshape(-1)
        if len(y_pool_true) != len(pool):
            raise ValueError(
                f"`y_pool_true` must have one label per row of the pool's array "
                f"({len(pool)}). Received: len(y_pool_true)={len(y_pool_true)}"
            )
    fit_kwargs = dict(fit_kwargs or {})

    added_rows = np.zeros(0, np.int64)
    added_labels = np.zeros(0, np.int64)
    remaining = pool_rows
    records = []
    for round_index in range(rounds):
        train_x = np.concatenate([x[labeled], pool[added_rows]])
        train_y = np.concatenate([y[labeled], added_labels])
        model = build_model()
        model.fit(train_x, train_y, **fit_kwargs)
        rows, labels, confidences = _select(
            model, pool, remaining, threshold, per_class_top_k, from_logits, predict_batch_size
        )
        added_rows = np.concatenate([added_rows, rows])
        added_labels = np.concatenate([added_labels, labels])
        remaining = np.setdiff1d(remaining, rows, assume_unique=True)
        record = {
            "round": round_index,
            "num_train_rows": len(train_x),
            "indices": rows,
            "pseudo_labels": labels,
            "confidences": confidences,
            "num_added": len(rows),
            "num_pseudo_labeled": len(added_rows),
            "accuracy": None,
            "cumulative_accuracy": None,
        }
        if y_pool_true is not None:
            record["accuracy"] = _accuracy(labels, y_pool_true[rows])
            record["cumulative_accuracy"] = _accuracy(added_labels, y_pool_true[added_rows])
        records.append(record)

    model = build_model()
    model.fit(
        np.concatenate([x[labeled], pool[added_rows]]),
        np.concatenate([y[labeled], added_labels]),
        **fit_kwargs,
    )
    return model, records


def _select(model, pool, rows, threshold, per_class_top_k, from_logits, batch_size):
    """The rows of `rows` to add: `(rows, pseudo_labels, confidences)`, most confident first
    within each class."""
    if len(rows) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    outputs = np.asarray(model.predict(pool[rows], batch_size=batch_size, verbose=0), np.float64)
    if from_logits:
        outputs = np.exp(outputs - outputs.max(axis=-1, keepdims=True))
        outputs /= outputs.sum(axis=-1, keepdims=True)
    labels = outputs.argmax(axis=-1)
    confidences = outputs.max(axis=-1)
    keep = np.flatnonzero(confidences >= threshold)
    # Most confident first; a stable sort keeps ties in pool order.
    keep = keep[np.argsort(-confidences[keep], kind="stable")]
    if per_class_top_k is not None:
        rank_in_class = np.zeros(len(keep), np.int64)
        seen = {}
        for position, label in enumerate(labels[keep]):
            rank_in_class[position] = seen.get(label, 0)
            seen[label] = rank_in_class[position] + 1
        keep = keep[rank_in_class < per_class_top_k]
    return (
        rows[keep].astype(np.int64),
        labels[keep].astype(np.int64),
        confidences[keep].astype(np.float32),
    )


def _accuracy(predicted, true):
    return float(np.mean(predicted == true)) if len(predicted) else float("nan")
