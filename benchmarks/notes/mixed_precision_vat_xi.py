"""VAT's term on one fixed batch under each dtype policy, for several finite-difference steps xi.

The same backbone weights and the same random direction (`seed=1`) under every policy: where
`x + xi * d` rounds back to `x` in half precision, the power iteration loses its direction and
the VAT term falls towards that of a random perturbation. Since `VAT` raises the step of a
half-precision backbone to 8 rounding units of the row's norm, `xi=1e-6` and `1e-3` give the
same term under a mixed policy (before: 0.019 / 0.068 under mixed_float16, 0.013 / 0.038 under
mixed_bfloat16; now 0.074 and 0.077 for both, float32 0.072 / 0.075).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/notes/mixed_precision_vat_xi.py
"""

import keras
import tensorflow as tf

from tfssl import models, testing

x, _, y_semi = testing.tiny_data()
idx = tf.range(len(x), dtype=tf.int64)
labels = tf.constant(y_semi, tf.int32)
keras.utils.set_random_seed(0)
weights = testing.tiny_backbone().get_weights()
for policy in ("float32", "mixed_float16", "mixed_bfloat16"):
    keras.mixed_precision.set_dtype_policy(policy)
    for xi in (1e-6, 1e-3, 1e-1):
        backbone = testing.tiny_backbone()
        backbone.set_weights(weights)
        model = models.VAT(backbone, xi=xi, epsilon=1.0, seed=1)
        terms, _ = model.compute_losses(x, idx, labels)
        print(f"{policy:15s} xi={xi:g}  vat_loss={float(terms['vat_loss']):.4f}")
keras.mixed_precision.set_dtype_policy("float32")
