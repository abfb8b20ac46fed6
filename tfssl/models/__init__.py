"""Semi-supervised models: each a `keras.Model` wrapping a backbone that returns logits."""

from tfssl.models.base import SemiSupervisedModel
from tfssl.models.distillation import Distiller, MutualLearning
from tfssl.models.mean_teacher import MeanTeacher
from tfssl.models.pi_model import PiModel
from tfssl.models.reloop import ReLoop
from tfssl.models.temporal_ensembling import TemporalEnsembling

__all__ = [
    "Distiller",
    "MeanTeacher",
    "MutualLearning",
    "PiModel",
    "ReLoop",
    "SemiSupervisedModel",
    "TemporalEnsembling",
]
