"""The label convention of `tfssl.data` and the argument checks its builders share.

Semi-supervised training sets keep every sample and mark the unlabeled ones with the label
`UNLABELED` (-1); `tfssl.data` re-exports it. The in-memory builders (`tfssl.data`) and the
streaming ones (`from_dataset`, `write_tfrecords`) check their labels, lengths and integer
arguments with these helpers.
"""

import numpy as np

UNLABELED = -1


def is_int(value):
    """Whether `value` is an integer (a NumPy one too), not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_labels(y):
    """`y` as an `int64` array, once checked to be 1-D integer labels `>= UNLABELED`."""
    y = np.asarray(y)
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise ValueError(
            f"y must be a 1-D array of integer labels. Received: y with shape {y.shape} and "
            f"dtype {y.dtype}"
        )
    bad = y < UNLABELED
    if bad.any():
        row = int(np.argmax(bad))
        raise ValueError(
            f"Labels must be class ids >= 0 or UNLABELED ({UNLABELED}). Received: y[{row}]={y[row]}"
        )
    return y.astype(np.int64)


def check_lengths(x, y):
    """Raises a `ValueError` unless `x` and `y` have as many rows."""
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length. Received: {len(x)=}, {len(y)=}")
