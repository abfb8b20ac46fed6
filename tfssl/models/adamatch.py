"""AdaMatch.

Berthelot, Roelofs, Sohn, Carlini & Kurakin, "AdaMatch: A Unified Approach to
Semi-Supervised Learning and Domain Adaptation", ICLR 2022, arXiv 2106.04732 (reference
code: microsoft/Semi-supervised-learning, `adamatch.py`). FixMatch whose threshold is
relative to the model's confidence on the labeled rows, on guesses aligned to the labeled
rows' class distribution.
"""

import keras

from tfssl.models import policies
from tfssl.models.fixmatch import FixMatch

__all__ = ["AdaMatch"]


@keras.saving.register_keras_serializable(package="tfssl")
class AdaMatch(FixMatch):
    """AdaMatch: FixMatch with distribution alignment to the labeled rows and a relative
    threshold.

    The step is FixMatch's (`tfssl.models.FixMatch`), with:

    1. distribution alignment of the unlabeled rows' weak-view guesses to the labeled
       rows' predictions (`DistributionAlignment(target="labeled")`): `q * p_labeled /
       p_unlabeled`, renormalised, where the paper takes both means over the current
       batch (`momentum=0`, the default here) and USB's code an EMA (`momentum=0.999`);
    2. the relative threshold (`tfssl.models.policies.RelativeThreshold`): a row counts
       when the largest aligned probability reaches `threshold` (0.9) times the mean
       confidence on the weakly augmented labeled rows of the global batch.

    Not in this class: the paper's random logit interpolation and its batch-norm
    handling, which concern a source and a target domain, and its cosine warm-up of the
    unlabeled weight (`weight_schedule=`); USB's AdaMatch leaves them out too.

    Formula:

    ```python
    q = stop_gradient(softmax(backbone(weak_augment(u))))
    p = stop_gradient(softmax(backbone(weak_augment(x_labeled))))
    q = normalize(q * mean(p, 0) / mean(q, 0))
    mask = max(q, axis=-1) >= threshold * mean(max(p, axis=-1))
    loss = CE(y, backbone(weak_augment(x))) + lambda_u * mean(mask * CE(argmax(q),
           backbone(strong_augment(u))))
    ```

    Example:

    ```python
    model = tfssl.models.AdaMatch(backbone, threshold=0.9)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    model.fit(tfssl.data.make_dataset(x, y_semi, 400, shuffle=True, labeled_per_batch=50))
    ```

    Args:
        backbone: `keras.Model` mapping inputs to logits.
        distribution_alignment: `None` or `True` for AdaMatch's alignment,
            `DistributionAlignment(momentum=0.0, target="labeled")`; `False` for none; or a
            `TargetTransform`. Defaults to `None`.
        **kwargs: `threshold` (the relative `tau`, default 0.9) or `pseudo_label_policy`,
            and every other argument of `FixMatch`.

    References:
        Berthelot et al., AdaMatch: A Unified Approach to Semi-Supervised Learning and
        Domain Adaptation, arXiv 2106.04732.
    """

    default_threshold = 0.9

    def __init__(self, backbone, distribution_alignment=None, **kwargs):
        if distribution_alignment is None or distribution_alignment is True:
            distribution_alignment = policies.DistributionAlignment(0.0, target="labeled")
        super().__init__(backbone, distribution_alignment=distribution_alignment, **kwargs)

    def make_default_policy(self, threshold):
        """AdaMatch's rule: `RelativeThreshold(threshold)`."""
        return policies.RelativeThreshold(threshold)
