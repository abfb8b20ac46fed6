"""Step time of the non-finite check: each model's `train_step` against the same model with
the step it had before the check (issue 14), in one process.

The benchmark's speed protocol: `tfssl.backbones.mlp((28, 28, 1), 10, units=(500, 250))`,
batches of 100 `{x, idx}` rows from `make_dataset` over the first 20,000 Fashion-MNIST rows,
`train_on_batch` on prepared numpy batches; warm-up steps, then rounds in which every
variant runs `--steps` steps (method order rotated each round, the checked and unchecked
step of a method back to back); median ms/step over rounds and median per-round ratio.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/nonfinite_step_cost.py --rounds 15
"""

import argparse
import json
import time

import keras
import numpy as np
import tensorflow as tf

from tfssl import backbones, data, datasets, models
from tfssl.models._replicas import global_sum

METHODS = {
    "pi_model": lambda backbone, n: models.PiModel(backbone),
    "temporal_ensembling": lambda backbone, n: models.TemporalEnsembling(backbone, n),
    "mean_teacher": lambda backbone, n: models.MeanTeacher(backbone),
}


def unchecked_train_step(self, data_batch):
    """`SemiSupervisedModel.train_step` as it was before the non-finite check."""
    x, sample_idx, labels = self.unpack_batch(data_batch)
    with tf.GradientTape() as tape:
        terms, outputs = self.compute_losses(x, sample_idx, labels)
        loss = self.optimizer.scale_loss(terms["loss"])
    trainable_weights = self.backbone.trainable_weights
    gradients = tape.gradient(loss, trainable_weights)
    self.optimizer.apply_gradients(zip(gradients, trainable_weights))
    self.update_state_after_step(sample_idx, outputs)
    logs = {}
    for name, value in terms.items():
        if name in self.loss_terms:
            value = global_sum(value)
        self.loss_trackers[name].update_state(value)
        logs[name] = self.loss_trackers[name].result()
    labeled = tf.cast(labels != data.UNLABELED, tf.float32)
    compiled = self.compute_metrics(
        None, tf.maximum(labels, 0), outputs["logits"], sample_weight=labeled
    )
    compiled = {k: v for k, v in compiled.items() if k not in self.loss_trackers}
    return {**compiled, **logs}


def build(method, checked, num_samples, seed):
    keras.utils.set_random_seed(seed)
    backbone = backbones.mlp((28, 28, 1), 10, units=(500, 250))
    model = METHODS[method](backbone, num_samples)
    if not checked:
        model.train_step = unchecked_train_step.__get__(model)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    (x, y), _ = datasets.load_fashion_mnist()
    x = (x[:20000, ..., np.newaxis] / 255.0).astype(np.float32)
    y = y[:20000].copy()
    y[1000:] = data.UNLABELED
    needed = args.warmup + args.rounds * args.steps
    dataset = data.make_dataset(x, y, batch_size=100, shuffle=True, seed=args.seed)
    batches = list(dataset.repeat().take(needed).as_numpy_iterator())
    runners = {
        (method, checked): build(method, checked, len(x), args.seed)
        for method in METHODS
        for checked in (False, True)
    }
    for model in runners.values():
        for features, labels in batches[: args.warmup]:
            model.train_on_batch(features, labels)
    # The machine is shared: the two variants of a method run back to back in every round
    # (which one first alternates), and the cost is the median of the per-round ratios, of
    # wall time and of this process's CPU time.
    times = {key: {"wall": [], "cpu": []} for key in runners}
    position = args.warmup
    for round_index in range(args.rounds):
        shift = round_index % len(METHODS)
        for method in list(METHODS)[shift:] + list(METHODS)[:shift]:
            for checked in (round_index % 2 == 0, round_index % 2 == 1):
                wall, cpu = time.perf_counter(), time.process_time()
                for features, labels in batches[position : position + args.steps]:
                    runners[(method, checked)].train_on_batch(features, labels)
                times[(method, checked)]["wall"].append(
                    1000 * (time.perf_counter() - wall) / args.steps
                )
                times[(method, checked)]["cpu"].append(
                    1000 * (time.process_time() - cpu) / args.steps
                )
        position += args.steps
    result = {}
    for method in METHODS:
        without, with_check = times[(method, False)], times[(method, True)]
        result[method] = {
            f"{clock}_{stat}": round(value, 3)
            for clock in ("wall", "cpu")
            for stat, value in (
                ("ms_without", np.median(without[clock])),
                ("ms_with", np.median(with_check[clock])),
                ("ratio", np.median(np.divide(with_check[clock], without[clock]))),
            )
        }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
