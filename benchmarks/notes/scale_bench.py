"""Step cost and memory of Temporal Ensembling at 10,000,000 samples, and the large-data path.

Two measurements for `benchmarks/notes/scale.md` (issue 20):

1. A Temporal Ensembling step with `num_samples=10,000,000` and 100 classes (a 4 GB float32
   ensemble) against the same step with `num_samples=10,000`: one process, the same tiny
   backbone, `train_on_batch` on prepared batches whose `idx` is drawn over each model's
   whole range. The two models alternate (order swapped every round) so that the load of a
   shared machine falls on both alike; the ratio is the median of the rounds' ratios, in
   wall time and in process CPU time. Memory: the process's resident set (`VmRSS`, and its
   peak `VmHWM`) before and after the large model is built and trained.
2. Rows per second that an epoch of batches delivers (each pipeline's second epoch) from
   constants (`make_dataset`), from a Python generator (`from_dataset` over
   `Dataset.from_generator`, one row or 1000 rows a call) and from TFRecord shards
   (`write_tfrecords` / `from_tfrecords`), alternated the same way: rows per second of wall
   time and per second of the process's CPU time (all threads; the fairer figure on a loaded
   machine).

Example:

    PYTHONPATH=$PWD .venv/bin/python benchmarks/notes/scale_bench.py --rounds 7
"""

import argparse
import json
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from tfssl import data, models


def memory_mb():
    """The process's resident and peak resident memory in MiB (Linux `/proc`)."""
    fields = {}
    with open("/proc/self/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0]) / 1024
    return fields


def build(num_samples, num_features, num_classes):
    backbone = keras.Sequential(
        [
            keras.Input((num_features,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(num_classes),
        ]
    )
    model = models.TemporalEnsembling(backbone, num_samples=num_samples)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    return model


def batches(num_samples, count, batch_size, num_features, num_classes, rng):
    out = []
    for _ in range(count):
        x = rng.normal(size=(batch_size, num_features)).astype(np.float32)
        y = rng.integers(0, num_classes, size=batch_size)
        y[batch_size // 2 :] = data.UNLABELED
        # Distinct indices spread over the whole range, as a shuffled epoch has them.
        idx = rng.choice(num_samples, size=batch_size, replace=False).astype(np.int64)
        out.append(({"x": x, "idx": idx}, y))
    return out


def run_steps(model, prepared):
    wall, cpu = time.perf_counter(), time.process_time()
    for features, y in prepared:
        model.train_on_batch(features, y)
    return (time.perf_counter() - wall) / len(prepared), (time.process_time() - cpu) / len(
        prepared
    )


def state_bytes(model):
    return sum(int(np.prod(w.shape)) * 4 for w in model.sample_state.weights)


def step_cost(args):
    rng = np.random.default_rng(0)
    sizes = {"small": args.small, "large": args.large}
    before = memory_mb()
    built = {}
    for name, size in sizes.items():
        built[name] = build(size, args.features, args.classes)
        if name == "large":
            after_build = memory_mb()
    prepared = {
        name: batches(size, args.steps, args.batch_size, args.features, args.classes, rng)
        for name, size in sizes.items()
    }
    for name, model in built.items():
        run_steps(model, prepared[name][: args.warmup])
    rounds = []
    for round_index in range(args.rounds):
        order = list(sizes) if round_index % 2 == 0 else list(reversed(list(sizes)))
        times = {name: run_steps(built[name], prepared[name]) for name in order}
        rounds.append(times)
        print(json.dumps({"round": round_index, **times}), flush=True)
    wall_ratio = np.median([r["large"][0] / r["small"][0] for r in rounds])
    cpu_ratio = np.median([r["large"][1] / r["small"][1] for r in rounds])
    return {
        "num_samples": sizes,
        "num_classes": args.classes,
        "state_bytes": {name: state_bytes(model) for name, model in built.items()},
        "median_ms_per_step": {
            name: 1e3 * float(np.median([r[name][0] for r in rounds])) for name in sizes
        },
        "median_cpu_ms_per_step": {
            name: 1e3 * float(np.median([r[name][1] for r in rounds])) for name in sizes
        },
        "wall_ratio_large_over_small": float(wall_ratio),
        "cpu_ratio_large_over_small": float(cpu_ratio),
        "memory_mb_before": before,
        "memory_mb_after_build": after_build,
        "memory_mb_after_steps": memory_mb(),
    }


def throughput(args):
    rng = np.random.default_rng(0)
    n, shape = args.throughput_rows, (28, 28)
    x = rng.integers(0, 256, size=(n, *shape)).astype(np.float32) / 255.0
    y = np.where(np.arange(n) % 20 == 0, np.arange(n) % 10, data.UNLABELED)

    def rows():
        for i in range(n):
            yield x[i], y[i]

    def chunks(size=1000):
        for start in range(0, n, size):
            yield x[start : start + size], y[start : start + size]

    signature = (tf.TensorSpec(shape, tf.float32), tf.TensorSpec((), tf.int64))
    chunk_signature = (tf.TensorSpec((None, *shape), tf.float32), tf.TensorSpec((None,), tf.int64))
    common = {"batch_size": 100, "shuffle": True, "seed": 0}
    directory = tempfile.mkdtemp(prefix="tfssl_scale_")
    wall, cpu = time.perf_counter(), time.process_time()
    data.write_tfrecords((x, y), directory, num_shards=4)
    write_seconds = (time.perf_counter() - wall, time.process_time() - cpu)
    pipelines = {
        "constants": lambda: data.make_dataset(x, y, **common),
        "generator": lambda: data.from_dataset(
            tf.data.Dataset.from_generator(rows, output_signature=signature),
            num_samples=n,
            **common,
        ),
        # The same generator yielding 1000 rows a call, unbatched into rows by tf.data.
        "generator_chunks": lambda: data.from_dataset(
            tf.data.Dataset.from_generator(chunks, output_signature=chunk_signature).unbatch(),
            num_samples=n,
            **common,
        ),
        "tfrecords": lambda: data.from_tfrecords(directory, **common),
    }
    rates = {name: [] for name in pipelines}
    for round_index in range(args.throughput_rounds):
        shift = round_index % len(pipelines)
        names = list(pipelines)[shift:] + list(pipelines)[:shift]
        for name in names:
            dataset = pipelines[name]()
            # The first epoch pays for tracing and the shuffle buffer's first fill.
            for _ in dataset:
                pass
            wall, cpu = time.perf_counter(), time.process_time()
            count = sum(int(tf.shape(features["idx"])[0]) for features, _ in dataset)
            rates[name].append(
                (count / (time.perf_counter() - wall), count / (time.process_time() - cpu))
            )
    return {
        "rows": n,
        "row_shape": list(shape),
        "tfrecords_write_rows_per_s": n / write_seconds[0],
        "tfrecords_write_rows_per_cpu_s": n / write_seconds[1],
        "median_rows_per_s": {
            name: float(np.median([r[0] for r in rs])) for name, rs in rates.items()
        },
        "median_rows_per_cpu_s": {
            name: float(np.median([r[1] for r in rs])) for name, rs in rates.items()
        },
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", type=int, default=10_000_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--steps", type=int, default=30, help="steps per model per round")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--throughput-rows", type=int, default=20_000)
    parser.add_argument("--throughput-rounds", type=int, default=3)
    parser.add_argument("--skip-step-cost", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    result = {"tensorflow": tf.__version__, "keras": keras.__version__}
    # Step cost first, so that its memory figures hold nothing else.
    if not args.skip_step_cost:
        result["step_cost"] = step_cost(args)
    if not args.skip_throughput:
        result["throughput"] = throughput(args)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
