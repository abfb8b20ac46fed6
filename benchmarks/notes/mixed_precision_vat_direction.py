"""How well VAT's power iteration finds its direction under each dtype policy, per step xi.

For one batch and one set of weights of a deterministic backbone (no noise, no dropout), the
cosine per row between `VAT.virtual_adversarial_direction` (one power iteration) and the
exact direction `H d / ||H d||` from the same random start `d`, with
`H = J^T (diag p - p p^T) J` the Hessian of `KL(p(x) || p(x + r))` at `r = 0` and `J` the
float32 Jacobian of the logits. Two backbones: `tfssl.testing.tiny_backbone` on
`tfssl.testing.tiny_data` (48 rows, 6 features, median row norm 2.4) and the main protocol's
`tfssl.backbones.mlp((28, 28, 1), 10, units=(500, 250))` without its noise and dropout on the
first 64 Fashion-MNIST test images scaled to [0, 1]. Steps: fixed `xi` (the floor off), and
the floor `k` rounding units of the row's norm (`tfssl.models.vat.XI_FLOOR_UNITS = k`).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/notes/mixed_precision_vat_direction.py
"""

import keras
import numpy as np
import tensorflow as tf

from tfssl import backbones, datasets, models, testing
from tfssl.models import vat

POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")
FIXED_XI = (1e-6, 1e-3, 1e-1)
FLOORS = (1, 4, 8, 16, 64)


def fisher_direction(backbone, x, d):
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = backbone(x, training=True)
    jacobian = tape.batch_jacobian(logits, x).numpy().reshape(len(x), logits.shape[-1], -1)
    p = tf.nn.softmax(logits).numpy()
    jd = np.einsum("bcn,bn->bc", jacobian, d.reshape(len(x), -1))
    hd = np.einsum("bcn,bc->bn", jacobian, p * jd - p * np.sum(p * jd, -1, keepdims=True))
    return hd / np.linalg.norm(hd, axis=-1, keepdims=True)


def cosines(make_backbone, weights, x, policy, xi, floor_units, expected):
    keras.mixed_precision.set_dtype_policy(policy)
    vat.XI_FLOOR_UNITS = floor_units
    backbone = make_backbone()
    backbone.set_weights(weights)
    model = models.VAT(backbone, xi=xi, seed=1)
    idx = tf.range(len(x), dtype=tf.int64)
    direction = model.virtual_adversarial_direction(
        x, model.site.inputs(x), backbone(x, training=True), idx
    ).numpy().reshape(len(x), -1)
    keras.mixed_precision.set_dtype_policy("float32")
    return np.sum(direction * expected, -1)


def main():
    tiny_x, _, _ = testing.tiny_data()
    (_, _), (test_images, _) = datasets.load_fashion_mnist()
    setups = {
        "tiny_backbone, tiny_data": (testing.tiny_backbone, tiny_x),
        "mlp 500-250 (no noise, no dropout), Fashion-MNIST": (
            lambda: backbones.mlp((28, 28, 1), 10, dropout=0.0, noise_stddev=0.0),
            test_images[:64, ..., None].astype("float32") / 255.0,
        ),
    }
    print("| backbone | step | " + " | ".join(POLICIES) + " |")
    print("|---|---|" + "---|" * len(POLICIES))
    for name, (make_backbone, x) in setups.items():
        keras.utils.set_random_seed(0)
        x = tf.constant(x)
        reference = make_backbone()
        weights = reference.get_weights()
        start = models.VAT(reference, seed=1)._random_directions(
            x, tf.range(len(x), dtype=tf.int64)
        )
        expected = fisher_direction(reference, x, start.numpy())
        steps = [(f"xi={xi:g}", xi, 0.0) for xi in FIXED_XI]
        steps += [(f"{k} units x norm", 1e-12, float(k)) for k in FLOORS]
        for label, xi, floor_units in steps:
            cells = []
            for policy in POLICIES:
                if policy == "float32" and floor_units:
                    cells.append("–")  # the floor applies to half precision only
                    continue
                c = cosines(make_backbone, weights, x, policy, xi, floor_units, expected)
                cells.append(f"{np.median(c):.3f} / {c.min():.2f}")
            print(f"| {name} | {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
