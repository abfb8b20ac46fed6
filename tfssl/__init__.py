"""tfssl: learning from few labels with TensorFlow 2 and Keras 3.

Semi-supervised consistency regularization (Π-model, Temporal Ensembling, Mean Teacher) as
`keras.Model`s that train with `model.fit`, scale with `tf.distribute`, and export to
SavedModel for TF Serving; `tfssl.text` preprocesses raw strings in the graph.
"""

from tfssl import backbones, data, datasets, export, layers, losses, models, schedules, text

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
    "text",
]
