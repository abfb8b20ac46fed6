"""SoftMatch.

Chen, Tao, Fan, Wang, Wang, Schiele, Xie, Raj & Savvides, "SoftMatch: Addressing the
Quantity-Quality Trade-off in Semi-supervised Learning", ICLR 2023, arXiv 2301.10921
(reference code: microsoft/Semi-supervised-learning, `softmatch.py`). FixMatch whose 0/1
mask becomes a weight: a truncated Gaussian of the confidence.
"""

import keras

from tfssl.models import policies
from tfssl.models.fixmatch import FixMatch

__all__ = ["SoftMatch"]


@keras.saving.register_keras_serializable(package="tfssl")
class SoftMatch(FixMatch):
    """SoftMatch: FixMatch with truncated-Gaussian weights instead of a threshold.

    The step is FixMatch's (`tfssl.models.FixMatch`); every unlabeled row counts, with the
    weight that `tfssl.models.policies.SoftMatchWeight` gives it: 1 when its confidence
    (read after uniform alignment) reaches the running mean confidence `mu`, else
    `exp(-(c - mu)^2 / (2 var / n_sigma^2))` with `var` the running variance. The
    pseudo-label is the argmax of the guess (not of the aligned guess, as in the paper
    and USB's code).

    Metrics: `mask_rate` is the mean weight of the batch's unlabeled rows, `threshold`
    the running mean `mu` (the confidence from which a row has full weight).

    Formula:

    ```python
    q = stop_gradient(softmax(backbone(weak_augment(u))))
    c = max(normalize(q / p_model), axis=-1)          # uniform alignment, p_model an EMA
    mu, var = EMAs (momentum 0.999) of mean(c) and of the unbiased variance of c
    weight = exp(-min(c - mu, 0) ** 2 / (2 * var / n_sigma ** 2))
    loss = CE(y, backbone(weak_augment(x))) + lambda_u * mean(weight * CE(argmax(q),
           backbone(strong_augment(u))))
    ```

    Example:

    ```python
    model = tfssl.models.SoftMatch(backbone)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    model.fit(tfssl.data.make_dataset(x, y_semi, 400, shuffle=True, labeled_per_batch=50))
    ```

    Args:
        backbone: `keras.Model` mapping inputs to logits.
        **kwargs: `pseudo_label_policy` (default `SoftMatchWeight()`, e.g.
            `SoftMatchWeight(n_sigma=1)` for the paper's printed equation) and every other
            argument of `FixMatch` but `threshold`.

    Raises:
        ValueError: If a `threshold` is given (the weights have none).

    References:
        Chen et al., SoftMatch: Addressing the Quantity-Quality Trade-off in
        Semi-supervised Learning, arXiv 2301.10921.
    """

    default_threshold = None

    def make_default_policy(self, threshold):
        """SoftMatch's rule: `SoftMatchWeight()`; it takes no threshold."""
        if threshold is not None:
            raise ValueError(
                "SoftMatch weighs rows by a learned Gaussian; pass `pseudo_label_policy` to "
                f"change it. Received: threshold={threshold!r}"
            )
        return policies.SoftMatchWeight()
