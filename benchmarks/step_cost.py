"""Step cost of the tfssl train step, interleaved in one process (issue 20).

Three comparisons, each measured in rounds in which every variant runs `--steps` steps in
turn (order rotated each round); the table gives each variant's median ms/step and its
median per-round ratio to the reference, so a loaded machine's drift cancels out:

- `speed`: BENCHMARKS.md section 4's protocol (`clean-1000`, `mlp` backbone, batches of
  100, `train_on_batch` on prepared numpy batches): supervised Keras, Temporal Ensembling,
  Mean Teacher, Π-model, ratios to supervised.
- `parts`: Temporal Ensembling (or `--method`) with one part of the step removed at a time:
  the batch checks, the non-finite guard, the metric updates, and all three; ratios to the
  full step. Also times `reset_metrics()`, which `train_on_batch` runs before every step.
- `tf1`: section 3's comparison: the seed's TF1 graph (`session.run` per step) next to
  Keras `TemporalEnsembling.fit` (one step per call, timed from batch begin to batch end
  as section 3 does) and `train_on_batch`, on the dense 784-256-10 network; ratios to TF1.
- `xla`: Temporal Ensembling with `compile(jit_compile=True)` next to the default.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/step_cost.py --sections speed parts tf1 xla
"""

import argparse
import json
import time

import keras
import numpy as np
import tensorflow as tf

from estimators.benchmarking import methods as methods_lib
from estimators.benchmarking import protocols as protocols_lib
from tfssl import data
from tfssl.reference import temporal_ensemble

SEMI_METHODS = ("temporal_ensembling", "mean_teacher", "pi_model")


def semi_batches(rows, protocol, needed, seed):
    dataset = data.make_dataset(
        rows["x"], rows["y_semi"], batch_size=protocol.batch_size, shuffle=True, seed=seed,
        labeled_per_batch=protocol.labeled_per_batch,
    )
    return list(dataset.repeat().take(needed).as_numpy_iterator())


def labeled_batches(rows, protocol, needed, seed):
    labeled = np.flatnonzero(rows["y_semi"] != data.UNLABELED)
    rng = np.random.default_rng(seed)
    picked = [rng.choice(labeled, protocol.batch_size, replace=False) for _ in range(needed)]
    return [(rows["x"][p], rows["y_semi"][p]) for p in picked]


def build(name, protocol, seed, **compile_kwargs):
    keras.utils.set_random_seed(seed)
    backbone = protocols_lib.BACKBONES[protocol.backbone].build()
    optimizer = keras.optimizers.Adam(protocol.learning_rate)
    if name == "supervised":
        backbone.compile(
            optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        )
        return backbone
    method = methods_lib.METHODS[name]
    model = method.build(backbone, protocol, method.hyper_for(protocol.name))
    model.compile(optimizer=optimizer, **compile_kwargs)
    return model


CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}
clock = time.perf_counter


def interleave(runners, reference, rounds, steps, warmup):
    """`runners`: name -> (step(batch), batches). Returns rows of median ms and ratio."""
    names = list(runners)
    for step, batches in runners.values():
        for batch in batches[:warmup]:
            step(batch)
    times = {name: [] for name in names}
    position = warmup
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            step, batches = runners[name]
            start = clock()
            for batch in batches[position: position + steps]:
                step(batch)
            times[name].append(1000 * (clock() - start) / steps)
        position += steps
    rows = {}
    for name in names:
        ratios = np.array(times[name]) / np.array(times[reference])
        rows[name] = {
            "ms": float(np.median(times[name])),
            "ratio": float(np.median(ratios)),
            "ratio_iqr": [float(q) for q in np.percentile(ratios, [25, 75])],
        }
    return rows


def on_batch(model):
    return lambda batch: model.train_on_batch(batch[0], batch[1])


def timed_runners(args, protocol, rows, variants=lambda name, semi: {}):
    """Interleaved timings of supervised, each semi-supervised method, and after each method
    the runners that `variants(name, semi_batches)` returns for it."""
    needed = args.warmup + args.rounds * args.steps
    semi = semi_batches(rows, protocol, needed, args.seed)
    runners = {"supervised": (on_batch(build("supervised", protocol, args.seed)),
                              labeled_batches(rows, protocol, needed, args.seed))}
    for name in SEMI_METHODS:
        runners[name] = (on_batch(build(name, protocol, args.seed)), semi)
        runners.update(variants(name, semi))
    return interleave(runners, "supervised", args.rounds, args.steps, args.warmup)


def speed(args, protocol, rows):
    def before(name, semi):
        if not args.before:
            return {}
        model = build(name, protocol, args.seed)
        # The metric reset as it was before issue 20: Keras', one eager op per variable.
        model.reset_metrics = keras.Model.reset_metrics.__get__(model)
        return {name + "_before": (on_batch(model), semi)}

    return timed_runners(args, protocol, rows, before)


# --------------------------------------------------------------- parts of the step
def _unchecked_unpack_batch(self, data_batch):
    inputs, labels, _ = keras.utils.unpack_x_y_sample_weight(data_batch)
    x, idx = (inputs["x"], inputs.get("idx")) if isinstance(inputs, dict) else (inputs, None)
    return x, idx, tf.cast(tf.reshape(labels, [-1]), tf.int32)


def _unguarded_train_step(self, data_batch):
    x, sample_idx, labels = self.unpack_batch(data_batch)
    with tf.GradientTape() as tape:
        terms, outputs = self.compute_losses(x, sample_idx, labels)
    gradients = tape.gradient(terms["loss"], self.backbone.trainable_weights)
    self.optimizer.apply_gradients(zip(gradients, self.backbone.trainable_weights))
    self.update_state_after_step(sample_idx, outputs)
    if getattr(self, "_bench_no_metrics", False):
        return {}
    return self._update_metrics(terms, labels, outputs["logits"])


def _metricless_update_metrics(self, terms, labels, logits, finite=None):
    return {}


PARTS = {
    "full": (),
    "no_batch_checks": ("checks",),
    "no_nonfinite_guard": ("guard",),
    "no_metrics": ("metrics",),
    "bare": ("checks", "guard", "metrics"),
}


def build_part(name, protocol, seed, removed):
    model = build(name, protocol, seed)
    if "checks" in removed:
        model.unpack_batch = _unchecked_unpack_batch.__get__(model)
    if "guard" in removed:
        model.train_step = _unguarded_train_step.__get__(model)
    if "metrics" in removed:
        model._bench_no_metrics = True
        model._update_metrics = _metricless_update_metrics.__get__(model)
    return model


def parts(args, protocol, rows):
    needed = args.warmup + args.rounds * args.steps
    semi = semi_batches(rows, protocol, needed, args.seed)
    supervised = build("supervised", protocol, args.seed)
    runners = {"supervised": (on_batch(supervised),
                              labeled_batches(rows, protocol, needed, args.seed))}
    models = {}
    for part, removed in PARTS.items():
        models[part] = build_part(args.method, protocol, args.seed, removed)
        runners[part] = (on_batch(models[part]), semi)
    result = interleave(runners, "full", args.rounds, args.steps, args.warmup)
    for name, model in (("supervised", supervised), ("full", models["full"])):
        start = clock()
        for _ in range(200):
            model.reset_metrics()
        result[name]["reset_metrics_ms"] = 1000 * (clock() - start) / 200
        result[name]["metrics"] = len(model.metrics)
    return result


# ------------------------------------------------------------------- TF1 vs Keras
class _StepTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times = []

    def on_train_batch_begin(self, batch, logs=None):
        self._start = clock()

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(clock() - self._start)


def _dense(units, seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [keras.Input((28 * 28,))]
        + [keras.layers.Dense(n, activation="relu") for n in units]
        + [keras.layers.Dense(10)]
    )


def tf1(args, protocol, rows):
    x = rows["x"].reshape(len(rows["x"]), -1)
    y_semi = rows["y_semi"]
    needed = args.warmup + args.rounds * args.steps
    dataset = data.make_dataset(x, y_semi, batch_size=protocol.batch_size, shuffle=True,
                                seed=args.seed)
    batches = list(dataset.repeat().take(needed).as_numpy_iterator())
    weights = _dense((256,), args.seed).get_weights()
    params = {"sample_size": len(x), "label_size": 10, "labeled_size": protocol.num_labeled,
              "max_unsupervised_weight": 30.0, "ramp_up_epochs": 5,
              "ramp_up_method": "sigmoid"}
    graph = temporal_ensemble.TemporalEnsembleGraph(
        temporal_ensemble.dense_network_fn(weights), input_shape=(28 * 28,), params=params,
        optimizer=tf.compat.v1.train.AdamOptimizer(protocol.learning_rate), alpha=0.6,
    )

    def keras_te(**compile_kwargs):
        backbone = _dense((256,), args.seed)
        backbone.set_weights(weights)
        model = keras.saving.get_registered_object("tfssl>TemporalEnsembling")(
            backbone, num_samples=len(x), alpha=0.6, num_labeled=protocol.num_labeled,
            max_unsupervised_weight=30.0, ramp_up_epochs=5,
        )
        model.compile(optimizer=keras.optimizers.Adam(protocol.learning_rate, epsilon=1e-8),
                      **compile_kwargs)
        return model

    runners = {
        "tf1_graph": (lambda b: graph.train_step(b[0]["x"], b[0]["idx"], b[1], 0), batches),
        "te_train_on_batch": (on_batch(keras_te()), batches),
    }
    result = interleave(runners, "tf1_graph", args.rounds, args.steps, args.warmup)
    # fit: one epoch over a fixed dataset per round, each fit variant's mean step time
    # (batch begin to batch end, as section 3 times it) over the TF1 graph's on the same
    # batches right after it.
    steps = args.steps * args.rounds
    columns = ({"x": np.concatenate([b[0]["x"] for b in batches[:steps]]),
                "idx": np.concatenate([b[0]["idx"] for b in batches[:steps]])},
               np.concatenate([b[1] for b in batches[:steps]]))
    semi_data = tf.data.Dataset.from_tensor_slices(columns).batch(protocol.batch_size)
    labeled_data = tf.data.Dataset.from_tensor_slices(
        (columns[0]["x"], np.maximum(columns[1], 0))
    ).batch(protocol.batch_size)
    supervised = _dense((256,), args.seed)
    supervised.set_weights(weights)
    supervised.compile(optimizer=keras.optimizers.Adam(protocol.learning_rate, epsilon=1e-8),
                       loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    te = keras_te()
    variants = {
        "supervised_fit": (supervised, labeled_data, 1),
        "te_fit": (te, semi_data, 1),
        "te_fit_steps_per_execution_10": (keras_te(steps_per_execution=10), semi_data, 10),
        "te_fit_xla": (keras_te(jit_compile=True), semi_data, 1),
    }
    timer = _StepTimer()
    for model, dataset, _ in variants.values():
        model.fit(dataset.take(args.warmup), epochs=1, verbose=0)
    te.train_function(iter(semi_data))
    fit_ms = {name: [] for name in variants}
    tf1_ms = {name: [] for name in variants}
    train_function_ms, train_function_tf1_ms = [], []
    for _ in range(args.fit_rounds):
        for name, (model, dataset, per_call) in variants.items():
            timer.times = []
            model.fit(dataset, epochs=1, verbose=0, callbacks=[timer])
            fit_ms[name].append(1000 * float(np.mean(timer.times)) / per_call)
            start = clock()
            for b in batches[:steps]:
                graph.train_step(b[0]["x"], b[0]["idx"], b[1], 0)
            tf1_ms[name].append(1000 * (clock() - start) / steps)
        # The compiled train function alone: no fit loop, no callbacks.
        iterator = iter(semi_data)
        start = clock()
        for _ in range(steps):
            te.train_function(iterator)
        train_function_ms.append(1000 * (clock() - start) / steps)
        start = clock()
        for b in batches[:steps]:
            graph.train_step(b[0]["x"], b[0]["idx"], b[1], 0)
        train_function_tf1_ms.append(1000 * (clock() - start) / steps)
    graph.close()
    fit_ms["te_train_function"] = train_function_ms
    tf1_ms["te_train_function"] = train_function_tf1_ms
    for name in fit_ms:
        result[name] = {
            "ms": float(np.median(fit_ms[name])),
            "ratio": float(np.median(np.array(fit_ms[name]) / np.array(tf1_ms[name]))),
            "tf1_ms_alongside": float(np.median(tf1_ms[name])),
        }
    return result


def xla(args, protocol, rows):
    return timed_runners(
        args, protocol, rows,
        lambda name, semi: {
            name + "_xla": (on_batch(build(name, protocol, args.seed, jit_compile=True)), semi)
        },
    )


SECTIONS = {"speed": speed, "parts": parts, "tf1": tf1, "xla": xla}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", nargs="+", default=["speed"], choices=sorted(SECTIONS))
    parser.add_argument("--method", default="temporal_ensembling", choices=SEMI_METHODS)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--fit-rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--clock", default="wall", choices=sorted(CLOCK),
        help="`cpu`: the process's CPU time, steadier than wall time on a shared machine "
        "(use with --threads 1, so that no thread pool spins)",
    )
    parser.add_argument("--threads", type=int, default=0, help="TF intra/inter-op threads")
    parser.add_argument("--before", action="store_true",
                        help="speed: also each method with Keras' metric reset (before)")
    args = parser.parse_args()
    global clock
    clock = CLOCK[args.clock]
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    protocol = protocols_lib.PROTOCOLS["clean-1000"]
    rows = protocols_lib.load(protocol, args.seed)
    for section in args.sections:
        result = SECTIONS[section](args, protocol, rows)
        print(json.dumps({"section": section, "result": result}), flush=True)
        for name, row in result.items():
            extra = {k: v for k, v in row.items() if k not in ("ms", "ratio")}
            print(f"  {section:6s} {name:24s} {row['ms']:7.2f} ms  x{row['ratio']:.3f}  {extra}")


if __name__ == "__main__":
    main()
