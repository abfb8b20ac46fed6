"""Semi-supervised models: each a `keras.Model` wrapping a backbone that returns logits."""

from tfssl.models.base import SemiSupervisedModel
from tfssl.models.fixmatch import FixMatch
from tfssl.models.mean_teacher import MeanTeacher
from tfssl.models.pi_model import PiModel
from tfssl.models.pseudo_label import PseudoLabel, PseudoLabelMonitor
from tfssl.models.temporal_ensembling import TemporalEnsembling

__all__ = [
    "FixMatch",
    "MeanTeacher",
    "PiModel",
    "PseudoLabel",
    "PseudoLabelMonitor",
    "SemiSupervisedModel",
    "TemporalEnsembling",
]
