"""tfssl: learning from few labels with TensorFlow 2 and Keras 3.

Semi-supervised methods as `keras.Model`s that wrap any backbone returning logits, train with
`model.fit`, scale with `tf.distribute` and export to SavedModel for TF Serving: consistency
regularization (Π-model, Temporal Ensembling, Mean Teacher), pseudo-labels (Pseudo-Label,
FixMatch, and `tfssl.self_training` around any Keras classifier), adversarial training (FGM,
PGD, VAT), the mixup family (Mixup, MixMatch) and label regularization (label smoothing,
distillation, mutual learning, ReLoop) and learning with wrong labels (`tfssl.label_issues`
finds them; GCE, SCE, ELR, Co-teaching and DivideMix train through them). `tfssl.text`
preprocesses raw strings in the graph.
"""

from tfssl import (
    backbones,
    data,
    datasets,
    export,
    label_issues,
    layers,
    losses,
    models,
    schedules,
    text,
)

# The function shadows its module's name: `tfssl.self_training(...)` is the public call.
from tfssl.self_training import self_training

__version__ = "0.1.0"

__all__ = [
    "backbones",
    "data",
    "datasets",
    "export",
    "label_issues",
    "layers",
    "losses",
    "models",
    "schedules",
    "self_training",
    "text",
]
