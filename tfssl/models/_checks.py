"""The argument checks of the tfssl models.

Each raises a `ValueError` that names the bad value and what was expected ("Received: ..."),
at construction, before anything is built. `tfssl.models.base` re-exports `check_choice`,
which the methods use for their own string options.
"""


def check_label_smoothing(label_smoothing, supervised_objective):
    """Raises a `ValueError` unless `label_smoothing` is a number in `[0, 1]`, and 0 for
    the objectives other than the two cross-entropies (F1, GCE, SCE)."""
    if (
        isinstance(label_smoothing, bool)
        or not isinstance(label_smoothing, (int, float))
        or not 0.0 <= label_smoothing <= 1.0
    ):
        raise ValueError(
            f"`label_smoothing` must be a number in [0, 1]. "
            f"Received: label_smoothing={label_smoothing!r}"
        )
    if label_smoothing and supervised_objective not in ("crossentropy", "binary_crossentropy"):
        raise ValueError(
            f"`label_smoothing` applies to the cross-entropy objectives, not to "
            f"supervised_objective={supervised_objective!r}. "
            f"Received: label_smoothing={label_smoothing}"
        )


def resolve_num_classes(backbone, num_classes, sigmoid):
    """The number of classes of `backbone`, checked against `num_classes` when given.

    `sigmoid` says whether the supervised objective reads one sigmoid per output: a
    one-logit backbone is then a binary classifier with 2 classes.
    """
    if sigmoid and _is_one_logit(backbone):
        # One sigmoid logit is a binary classifier: two classes, labels 0 and 1 (the
        # label check reads num_classes as the bound).
        if num_classes not in (None, 2):
            raise ValueError(
                "A one-logit backbone with a sigmoid objective is a binary classifier: "
                f"`num_classes` must be 2 or None. Received: num_classes={num_classes}"
            )
        return 2
    return _check_num_classes(backbone, num_classes)


def check_sample_counts(num_samples, num_labeled):
    """Raises a `ValueError` unless `num_samples` and `num_labeled` are `None` or positive
    integers with `num_labeled <= num_samples < 2**31` (`num_labeled` needs `num_samples`)."""
    if num_samples is not None:
        check_positive_int("num_samples", num_samples)
        if num_samples >= 2**31:
            # Indices are all-gathered as int32 (int64 all_gather fails under
            # MultiWorkerMirroredStrategy).
            raise ValueError(
                f"`num_samples` must be below 2**31. Received: num_samples={num_samples}"
            )
    if num_labeled is not None:
        check_positive_int("num_labeled", num_labeled)
        if num_samples is None:
            raise ValueError(
                "`num_labeled` sets the seed's weight factor num_labeled / num_samples "
                f"and needs `num_samples`. Received: num_labeled={num_labeled}, "
                "num_samples=None"
            )
        if num_labeled > num_samples:
            raise ValueError(
                f"`num_labeled` must be in (0, num_samples={num_samples}]. "
                f"Received: num_labeled={num_labeled}"
            )


def check_choice(name, value, choices):
    """Raises a `ValueError` naming `value` unless it is one of `choices`."""
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}. Received: {name}={value!r}")


def _check_num_classes(backbone, num_classes):
    """The number of classes: the backbone's output size, which `num_classes` must match."""
    try:
        output_shape = tuple(backbone.output_shape)
    except (AttributeError, ValueError):
        # A subclassed backbone that was never called has no known output shape.
        output_shape = None
    if output_shape is not None and (len(output_shape) != 2 or output_shape[-1] is None):
        raise ValueError(
            "The backbone must map inputs to logits of shape (batch, num_classes). "
            f"Received: backbone output shape {output_shape}"
        )
    backbone_classes = None if output_shape is None else int(output_shape[-1])
    if num_classes is None:
        if backbone_classes is None:
            raise ValueError(
                "`num_classes` could not be read from the backbone (its output shape is not "
                "known before it is called): pass `num_classes`. Received: num_classes=None"
            )
        return backbone_classes
    check_positive_int("num_classes", num_classes)
    if backbone_classes is not None and num_classes != backbone_classes:
        raise ValueError(
            f"`num_classes` must equal the backbone's output size {backbone_classes}. "
            f"Received: num_classes={num_classes}"
        )
    return int(num_classes)


def _is_one_logit(backbone):
    """Whether the backbone's known output shape is `(batch, 1)`."""
    try:
        return tuple(backbone.output_shape)[1:] == (1,)
    except (AttributeError, ValueError):
        return False


def check_positive_int(name, value):
    """Raises a `ValueError` naming `value` unless it is a positive `int` (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")


def check_shorthand(name, value, full_name, full_value):
    """Refuses a shorthand argument (e.g. `threshold`) given together with the object it
    stands for (`pseudo_label_policy`), naming both."""
    if value is not None and full_value is not None:
        raise ValueError(
            f"Pass either `{name}` or `{full_name}`, not both. "
            f"Received: {name}={value!r}, {full_name}={full_value!r}"
        )


def check_positive_number(name, value):
    """`value` as a float, or a `ValueError` naming it unless it is a number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"`{name}` must be a number > 0. Received: {name}={value!r}")
    return float(value)


def check_at_least_one(name, value):
    """`value`, or a `ValueError` naming it unless it is an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be an integer >= 1. Received: {name}={value!r}")
    return value


def output_shape(model):
    """The model's output shape as a tuple, or `None` while it is unknown."""
    try:
        return tuple(model.output_shape)
    except (AttributeError, ValueError):
        # A subclassed model never called has no known output shape: checked at the first step.
        return None


def check_same_outputs(first_name, first, second_name, second):
    """Raises a ValueError naming both shapes if two models' known output shapes differ."""
    first_shape, second_shape = output_shape(first), output_shape(second)
    if first_shape is not None and second_shape is not None and first_shape != second_shape:
        raise ValueError(
            f"The {first_name} and the {second_name} must output logits of the same shape. "
            f"Received: {first_name} output shape {first_shape}, {second_name} output shape "
            f"{second_shape}"
        )
