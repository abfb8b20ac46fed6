"""FlexMatch.

Zhang, Wang, Hou, Wu, Wang, Okumura & Shinozaki, "FlexMatch: Boosting Semi-Supervised
Learning with Curriculum Pseudo Labeling", NeurIPS 2021, arXiv 2110.08263 (reference code:
microsoft/Semi-supervised-learning, `flexmatch.py`). FixMatch whose fixed threshold becomes
one threshold per class, scaled by how well the model has learned that class so far.
"""

import keras

from tfssl.models import policies
from tfssl.models.fixmatch import FixMatch

__all__ = ["FlexMatch"]


@keras.saving.register_keras_serializable(package="tfssl")
class FlexMatch(FixMatch):
    """FlexMatch: FixMatch with curriculum per-class thresholds.

    The step is FixMatch's (`tfssl.models.FixMatch`): confident weak-view guesses are the
    targets of the strong view. Which guesses count is decided by
    `tfssl.models.policies.FlexMatchThreshold`: every unlabeled row remembers its last
    prediction above `threshold`; the classes that few rows have reached get a lower
    threshold, `M(beta_c) * threshold`, so the rows of hard classes are learned from
    earlier. The memory is per row, read by `idx`: the model needs `num_samples`.

    Formula:

    ```python
    q = stop_gradient(softmax(backbone(weak_augment(u))))
    memory[idx] = argmax(q) where max(q) > threshold
    beta_c = count(memory == c) / max(max_c count(memory == c), count(memory == none))
    mask = max(q) >= beta[argmax(q)] / (2 - beta[argmax(q)]) * threshold
    loss = CE(y, backbone(weak_augment(x))) + lambda_u * mean(mask * CE(argmax(q),
           backbone(strong_augment(u))))
    ```

    Example:

    ```python
    model = tfssl.models.FlexMatch(backbone, num_samples=len(x), threshold=0.95)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    model.fit(tfssl.data.make_dataset(x, y_semi, 400, shuffle=True, labeled_per_batch=50))
    ```

    Args:
        backbone: `keras.Model` mapping inputs to logits.
        num_samples: Number of training rows (the range of `idx`), for the per-row memory.
        **kwargs: `threshold` (the `tau` of the thresholds, default 0.95) or
            `pseudo_label_policy` (e.g. `FlexMatchThreshold(mapping="linear",
            warmup=False)`), and every other argument of `FixMatch`.

    References:
        Zhang et al., FlexMatch: Boosting Semi-Supervised Learning with Curriculum Pseudo
        Labeling, arXiv 2110.08263.
    """

    def __init__(self, backbone, num_samples, **kwargs):
        super().__init__(backbone, num_samples=num_samples, **kwargs)

    def make_default_policy(self, threshold):
        """FlexMatch's rule: `FlexMatchThreshold(threshold)`."""
        return policies.FlexMatchThreshold(threshold)
