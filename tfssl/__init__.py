"""tfssl: learning from few labels with TensorFlow 2 and Keras 3.

Semi-supervised consistency regularization (Π-model, Temporal Ensembling, Mean Teacher) and
pseudo-labels (Pseudo-Label, FixMatch) as `keras.Model`s that train with `model.fit`, scale
with `tf.distribute`, and export to SavedModel for TF Serving; `tfssl.self_training` runs
rounds of training and pseudo-labeling around any Keras classifier.
"""

from tfssl import backbones, data, datasets, export, layers, losses, models, schedules

# The function shadows its module's name: `tfssl.self_training(...)` is the public call.
from tfssl.self_training import self_training

__version__ = "0.1.0"

__all__ = [
    "backbones",
    "data",
    "datasets",
    "export",
    "layers",
    "losses",
    "models",
    "schedules",
    "self_training",
]
