"""Semi-supervised models: each a `keras.Model` wrapping a backbone that returns logits."""

from tfssl.models import policies
from tfssl.models.adversarial import AdversarialTraining, PerturbationSite, adversarial_inputs
from tfssl.models.adamatch import AdaMatch
from tfssl.models.base import SemiSupervisedModel
from tfssl.models.co_teaching import CoTeaching
from tfssl.models.distillation import Distiller, MutualLearning
from tfssl.models.divide_mix import DivideMix
from tfssl.models.elr import ELR
from tfssl.models.fixmatch import FixMatch
from tfssl.models.flexmatch import FlexMatch
from tfssl.models.freematch import FreeMatch
from tfssl.models.mean_teacher import MeanTeacher
from tfssl.models.mixmatch import MixMatch
from tfssl.models.mixup import MixupModel
from tfssl.models.pi_model import PiModel
from tfssl.models.pseudo_label import PseudoLabel, PseudoLabelMonitor
from tfssl.models.reloop import ReLoop
from tfssl.models.softmatch import SoftMatch
from tfssl.models.temporal_ensembling import TemporalEnsembling
from tfssl.models.uda import UDA
from tfssl.models.vat import VAT

__all__ = [
    "AdaMatch",
    "AdversarialTraining",
    "CoTeaching",
    "Distiller",
    "DivideMix",
    "ELR",
    "FixMatch",
    "FlexMatch",
    "FreeMatch",
    "MeanTeacher",
    "MixMatch",
    "MixupModel",
    "MutualLearning",
    "PerturbationSite",
    "PiModel",
    "PseudoLabel",
    "PseudoLabelMonitor",
    "ReLoop",
    "SemiSupervisedModel",
    "SoftMatch",
    "TemporalEnsembling",
    "UDA",
    "VAT",
    "adversarial_inputs",
    "policies",
]
