"""Plans, costs and trains the benchmark's runs, and keeps their records in `results.json`.

`results.json` is a list of records, one per finished run, appended (and the file rewritten)
after every run, so a run cut short keeps what it measured and the next one resumes:

- `{"kind": "run", "protocol", "method", "seed", "accuracy", "seconds", "steps", "history",
  ...}`: one method trained under one protocol with one seed (the ceiling is `method:
  "ceiling"`); `history` holds the epoch-end logs of `fit` (`{name: [one value per epoch]}`),
  for pseudo-label methods with `tfssl.models.PseudoLabelMonitor`'s figures on
  `training.MONITOR_ROWS` unlabeled rows and their hidden labels;
- `{"kind": "tf1", ...}`: the seed's TF1 graph next to the Keras Temporal Ensembling;
- `{"kind": "speed", "backbone", "ms_per_step": {method: ms}, ...}`: interleaved step times;
- `{"kind": "robustness", "protocol", "method", "seed", "accuracy", "epsilons",
  "attacked_accuracy", ...}`: a supervised-only or adversarial-training run, trained as its
  "run" record, then attacked (`benchmarking.robustness`). When both are to do, one
  training writes the run record and the robustness record.

Every record also holds `quick`, `commit`, `time` (UTC), `machine`, `config` (the protocol's
fields and the hyper-parameters it ran with) and `fingerprint` (a hash of `config` without
the protocol's prose and `steps_per_execution`, which change no number). A
planned run is skipped when a record with its kind, protocol, method, seed and fingerprint
exists: changing a hyper-parameter or a protocol reruns exactly the runs it affects.
"""

import dataclasses
import datetime
import hashlib
import json
import os
import platform
import subprocess
import time

import keras
import numpy as np
import tensorflow as tf

from benchmarking import robustness, training
from benchmarking.methods import METHODS
from benchmarking.protocols import BACKBONES, NUM_CLASSES, PROTOCOLS, load
from benchmarking.training import fit_and_evaluate, fit_model, test_accuracy
from tfssl import data, models
from tfssl.reference import temporal_ensemble

__all__ = [
    "Planned",
    "estimate_seconds",
    "execute",
    "fit_and_evaluate",
    "fit_model",
    "load_records",
    "plan",
    "save_records",
    "test_accuracy",
]

_REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Seconds a run spends outside its steps (data, tracing, evaluation) on the mlp protocols;
# part of the planned cost.
RUN_OVERHEAD_SECONDS = 4.0
# Seed 000's TF1 graph is compared on the protocol below, with the seed's dense network and
# weighting (the factor num_labeled / train rows is on, as in the seed).
TF1_PROTOCOL = "clean-1000"
TF1 = {"dense_units": (256,), "max_unsupervised_weight": 30.0, "ramp_up_epochs": 5,
       "alpha": 0.6}
TF1_QUICK = dict(TF1, dense_units=(16,))
# Interleaved speed rounds: warm-up steps per method, then rounds of `steps` per method.
SPEED = {"warmup": 10, "rounds": 7, "steps": 20}
SPEED_QUICK = {"warmup": 1, "rounds": 2, "steps": 2}
# Protocol fields that change no number: editing them does not rerun anything.
_NOT_RESULTS = ("title", "why", "steps_per_execution")


@dataclasses.dataclass(frozen=True)
class Planned:
    """One run to do: `kind` is "run", "tf1", "speed" or "robustness"; `methods` only for
    "speed"; `also_run` (robustness): the same training also writes its "run" record."""

    kind: str
    protocol: object
    seed: int
    method: str | None = None
    methods: tuple = ()
    quick: bool = False
    also_run: bool = False

    @property
    def config(self):
        config = {"protocol": dataclasses.asdict(self.protocol)}
        if self.kind in ("run", "robustness"):
            config["hyper"] = METHODS[self.method].hyper_for(self.protocol.name)
            if self.kind == "robustness":
                config["robustness"] = robustness.settings(self.quick)
        elif self.kind == "tf1":
            config["tf1"] = TF1_QUICK if self.quick else TF1
        else:
            config["hyper"] = {m: METHODS[m].hyper_for(self.protocol.name) for m in self.methods}
            config["speed"] = SPEED_QUICK if self.quick else SPEED
        # Tuples and lists hash alike once written to JSON and read back.
        return json.loads(json.dumps(config))

    @property
    def fingerprint(self):
        config = self.config
        config["protocol"] = {k: v for k, v in config["protocol"].items()
                              if k not in _NOT_RESULTS}
        text = json.dumps(config, sort_keys=True)
        return hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]

    @property
    def key(self):
        return (self.kind, self.protocol.name, self.method, self.seed, self.fingerprint)

    def describe(self):
        if self.kind == "speed":
            return f"speed     {self.protocol.backbone} ({', '.join(self.methods)})"
        what = {"run": self.method, "tf1": "TF1 graph vs Keras TE",
                "robustness": f"{self.method}, FGM attack" + (" (+ run)" * self.also_run)
                }[self.kind]
        return f"{self.kind:<9} {self.protocol.name:<14} {what:<22} seed {self.seed}"


def _key(record):
    return (record["kind"], record["protocol"], record.get("method"), record.get("seed"),
            record["fingerprint"])


def plan(protocols, methods, seeds, sections, quick, records):
    """The runs the flags ask for, and those of them not yet in `records`.

    Args:
        protocols: Names in `PROTOCOLS`.
        methods: Names in `METHODS`; the ceiling is added for every protocol that names one.
        seeds: Seeds of the runs.
        sections: Any of "runs", "tf1", "speed", "robustness" (supervised-only and
            adversarial training attacked, under the protocols of `robustness.PROTOCOLS`,
            when `methods` has "adversarial" or with `quick`).
        quick: Whether to use each protocol's `quick()` budget.
        records: The records of `results.json`.

    Returns:
        `(planned, todo)`: every `Planned` run, and those without a record.

    Raises:
        ValueError: If a protocol or method name is not registered.
    """
    for name in protocols:
        if name not in PROTOCOLS:
            raise ValueError(f"Unknown protocol. Choose from {sorted(PROTOCOLS)}. "
                             f"Received: {name!r}")
    for name in methods:
        if name not in METHODS:
            raise ValueError(f"Unknown method. Choose from {sorted(METHODS)}. Received: {name!r}")

    def resolve(name):
        return PROTOCOLS[name].quick() if quick else PROTOCOLS[name]

    planned = []
    if "runs" in sections:
        ceilings = []
        for name in protocols:
            for seed in seeds:
                planned += [Planned("run", resolve(name), seed, m, quick=quick) for m in methods
                            if m != "ceiling"]
            ceiling = PROTOCOLS[name].ceiling
            if ceiling and ceiling not in ceilings:
                ceilings.append(ceiling)
        for name in ceilings:
            planned += [Planned("run", resolve(name), seed, "ceiling", quick=quick)
                        for seed in seeds]
    if "tf1" in sections:
        planned.append(Planned("tf1", resolve(TF1_PROTOCOL), seeds[0], quick=quick))
    if "speed" in sections:
        # One interleaved measurement per backbone, with supervised-only as the reference.
        # Entries trained in several stages (a `train` hook) have no single step to time.
        timed = ("supervised",) + tuple(
            m for m in methods if m != "supervised" and METHODS[m].data == "semi"
            and METHODS[m].train is None)
        backbones = {}
        for name in protocols:
            backbones.setdefault(PROTOCOLS[name].backbone, name)
        planned += [Planned("speed", resolve(name), seeds[0], methods=timed, quick=quick)
                    for name in backbones.values()]
    # --quick exercises every section, so it attacks supervised-only and adversarial
    # training whatever the methods.
    if "robustness" in sections and ("adversarial" in methods or quick):
        planned += [Planned("robustness", resolve(name), seed, m, quick=quick)
                    for name in protocols if name in robustness.PROTOCOLS
                    for seed in seeds for m in robustness.METHODS]
    done = {_key(record) for record in records}
    return planned, _train_once([run for run in planned if run.key not in done])


def _train_once(todo):
    """A robustness run whose "run" twin is also to do writes both records (`also_run`)."""
    runs = {(run.protocol.name, run.method, run.seed): run for run in todo if run.kind == "run"}
    twins = [(run, runs.get((run.protocol.name, run.method, run.seed)))
             for run in todo if run.kind == "robustness"]
    merged = {id(twin) for _, twin in twins if twin is not None}
    replaced = {id(run): dataclasses.replace(run, also_run=True)
                for run, twin in twins if twin is not None}
    return [replaced.get(id(run), run) for run in todo if id(run) not in merged]


def _busy_seconds(record):
    # CPU seconds do not grow when other processes share the cores; for these small
    # networks TensorFlow keeps about one core busy, so they are the wall time on an idle
    # machine (an upper bound where it uses both cores).
    return record.get("cpu_seconds", record["seconds"])


def estimate_seconds(run, records):
    """Planned seconds of `run` on 2 idle cores, from measured runs when there are any.

    A method's run under a protocol takes the median CPU seconds of its earlier runs there;
    without any, the seconds per step of earlier supervised runs on the same backbone
    (or the backbone's `seconds_per_step`) × the protocol's steps × the method's `cost`.
    """
    if run.kind == "robustness":
        trained = dataclasses.replace(run, kind="run", also_run=False)
        return estimate_seconds(trained, records) + robustness.ATTACK_SECONDS
    same_kind = [r for r in records if r["kind"] == run.kind and r.get("quick") == run.quick]
    if run.kind != "run":
        seconds = [_busy_seconds(r) for r in same_kind if r["protocol"] == run.protocol.name]
        return float(np.median(seconds)) if seconds else 30.0
    seconds = [_busy_seconds(r) for r in same_kind
               if r["protocol"] == run.protocol.name and r["method"] == run.method]
    if seconds:
        return float(np.median(seconds))
    per_step = [(_busy_seconds(r) - RUN_OVERHEAD_SECONDS) / r["steps"] for r in same_kind
                if r["method"] == "supervised"
                and r["config"]["protocol"]["backbone"] == run.protocol.backbone]
    if not per_step:
        per_step = [BACKBONES[run.protocol.backbone].seconds_per_step]
    per_step = np.median(per_step)
    return RUN_OVERHEAD_SECONDS + float(per_step) * run.protocol.steps * METHODS[run.method].cost


def load_records(path):
    """The records of a `results.json`, `[]` when the file does not exist.

    Raises:
        ValueError: If the file is not a list of records (e.g. the earlier benchmark's
            single-dict format).
    """
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        records = json.load(f)
    if not isinstance(records, list):
        raise ValueError(
            f"{path} is not a list of run records (the earlier benchmark wrote one dict); "
            f"move it away to start a new one. Received: {type(records).__name__}")
    return records


def save_records(path, records):
    """Writes the records; a write cut short leaves the previous file intact."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    partial = path + ".partial"
    with open(partial, "w", encoding="utf-8") as f:
        json.dump(records, f, indent=1, ensure_ascii=False)
    os.replace(partial, path)


def machine_info():
    """nproc, CPU model, RAM, TF/Keras/Python versions, as a dict."""
    cpu, ram = "unknown", "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f
                       if line.startswith("model name"))
        with open("/proc/meminfo") as f:
            kib = next(int(line.split()[1]) for line in f if line.startswith("MemTotal"))
        ram = f"{kib / 2**20:.1f} GiB"
    except (OSError, StopIteration):
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "ram": ram, "gpu": bool(
        tf.config.list_physical_devices("GPU")), "tensorflow": tf.__version__,
        "keras": keras.__version__, "python": platform.python_version()}


def _commit():
    """The repository's commit, `-dirty` when its code differs from it."""
    def git(*args):
        return subprocess.run(["git", "-C", _REPOSITORY, *args], capture_output=True,
                              text=True, check=False).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    # The benchmark's own outputs do not make the code dirty.
    changed = git("status", "--porcelain", "--", ".", ":!benchmarks", ":!BENCHMARKS.md")
    return commit + ("-dirty" if changed else "")


def execute(todo, records, path, data_dir=None):
    """Runs `todo` in order, appending a record to `records` and saving `path` after each."""
    context = {"commit": _commit(), "machine": machine_info()}
    for position, run in enumerate(todo, 1):
        print(f"[{position}/{len(todo)}] {run.describe()}", flush=True)
        start, cpu_start = time.perf_counter(), time.process_time()
        if run.kind == "run":
            result = train_run(run.protocol, run.method, run.seed, data_dir)
        elif run.kind == "tf1":
            result = tf1_versus_keras(run.protocol, run.seed, run.config["tf1"], data_dir)
        elif run.kind == "robustness":
            result = robustness_run(run.protocol, run.method, run.seed,
                                    run.config["robustness"], data_dir)
        else:
            result = speed(run.protocol, run.methods, run.seed, run.config["speed"], data_dir)
        seconds = time.perf_counter() - start
        cpu_seconds = time.process_time() - cpu_start
        stamp = {"quick": run.quick, **context, "time": datetime.datetime.now(
            datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
        if run.also_run:
            # The run record of the same training, without the attack's time.
            twin = dataclasses.replace(run, kind="run", also_run=False)
            records.append({
                "kind": "run", "protocol": run.protocol.name, "method": run.method,
                "seed": run.seed, "accuracy": result["accuracy"], "steps": result["steps"],
                "history": result["history"], "seconds": seconds - result["attack_seconds"],
                "cpu_seconds": cpu_seconds - result["attack_cpu_seconds"], **stamp,
                "fingerprint": twin.fingerprint, "config": twin.config,
            })
        record = {
            "kind": run.kind, "protocol": run.protocol.name, "method": run.method,
            "seed": run.seed, **result, "seconds": seconds, "cpu_seconds": cpu_seconds,
            **stamp, "fingerprint": run.fingerprint, "config": run.config,
        }
        records.append(record)
        save_records(path, records)
        if run.kind == "tf1":
            summary = {name: result[name]["accuracy"] for name in ("tf1", "keras")}
        else:
            summary = {k: v for k, v in result.items()
                       if k in ("accuracy", "ms_per_step", "attacked_accuracy")}
        print(f"    {json.dumps(summary)} in {record['seconds']:.0f} s", flush=True)
    return records


def train_run(protocol, method_name, seed, data_dir=None):
    """Trains one method under one protocol and seed; returns `{"accuracy", "steps"}`."""
    method = METHODS[method_name]
    return fit_and_evaluate(
        method, method.hyper_for(protocol.name), protocol, load(protocol, seed, data_dir),
        seed, BACKBONES[protocol.backbone].build,
    )


def robustness_run(protocol, method_name, seed, settings, data_dir=None):
    """Trains like `train_run`, then attacks the test rows (`robustness.evaluate`).

    Returns:
        `{"accuracy", "steps", "history", "epsilons", "attacked_accuracy", "attack_seconds",
        "attack_cpu_seconds"}`.
    """
    method = METHODS[method_name]
    return fit_and_evaluate(
        method, method.hyper_for(protocol.name), protocol, load(protocol, seed, data_dir),
        seed, BACKBONES[protocol.backbone].build,
        evaluate=lambda model, x, y: robustness.evaluate(model, x, y, settings),
    )


def _dense_backbone(units, seed):
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((28 * 28,))]
    layers += [keras.layers.Dense(n, activation="relu") for n in units]
    layers.append(keras.layers.Dense(NUM_CLASSES))
    return keras.Sequential(layers)


class _StepTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times = []

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter() - self._start)


def tf1_versus_keras(protocol, seed, budget, data_dir=None):
    """Seed 000's TF1 TE graph and the Keras TE on flattened images, same dense init."""
    rows = load(protocol, seed, data_dir)
    x, y_semi = rows["x"].reshape(len(rows["x"]), -1), rows["y_semi"]
    x_test, y_test = rows["x_test"].reshape(len(rows["x_test"]), -1), rows["y_test"]
    init = _dense_backbone(budget["dense_units"], seed)
    initial_weights = init.get_weights()
    params = {
        "sample_size": len(x), "label_size": NUM_CLASSES,
        "labeled_size": protocol.num_labeled,
        "max_unsupervised_weight": budget["max_unsupervised_weight"],
        "ramp_up_epochs": budget["ramp_up_epochs"], "ramp_up_method": "sigmoid",
    }
    dataset = data.make_dataset(x, y_semi, batch_size=protocol.batch_size, shuffle=True,
                                seed=seed)
    graph = temporal_ensemble.TemporalEnsembleGraph(
        temporal_ensemble.dense_network_fn(initial_weights), input_shape=(28 * 28,),
        params=params, optimizer=tf.compat.v1.train.AdamOptimizer(protocol.learning_rate),
        alpha=budget["alpha"], target="seed",
    )
    tf1_times = []
    start = time.perf_counter()
    for epoch in range(protocol.epochs):
        # tfssl clamps the ramp-up's epoch; the seed's graph does not (see its docstring).
        fed_epoch = min(epoch, budget["ramp_up_epochs"])
        for features, labels in dataset.as_numpy_iterator():
            step_start = time.perf_counter()
            graph.train_step(features["x"], features["idx"], labels, fed_epoch)
            tf1_times.append(time.perf_counter() - step_start)
    tf1_seconds = time.perf_counter() - start
    evaluator = _dense_backbone(budget["dense_units"], seed)
    evaluator.set_weights(graph.weights())
    graph.close()
    tf1_accuracy = training.accuracy(evaluator, x_test, y_test)

    backbone = _dense_backbone(budget["dense_units"], seed)
    backbone.set_weights(initial_weights)
    model = models.TemporalEnsembling(
        backbone, num_samples=len(x), alpha=budget["alpha"], target="seed",
        num_labeled=protocol.num_labeled,
        max_unsupervised_weight=budget["max_unsupervised_weight"],
        ramp_up_epochs=budget["ramp_up_epochs"],
    )
    # tf.compat.v1's Adam uses epsilon 1e-8, Keras' 1e-7. One step per call, as TF1 runs.
    model.compile(optimizer=keras.optimizers.Adam(protocol.learning_rate, epsilon=1e-8),
                  run_eagerly=protocol.run_eagerly)
    timer = _StepTimer()
    start = time.perf_counter()
    model.fit(dataset, epochs=protocol.epochs, callbacks=[timer], verbose=0)
    keras_seconds = time.perf_counter() - start
    keras_accuracy = training.accuracy(model, x_test, y_test)
    steps = int(dataset.cardinality())
    # The first epoch's steps include tracing.
    skip = steps if protocol.epochs > 1 else 1
    return {
        "tf1": {"accuracy": tf1_accuracy, "seconds": tf1_seconds,
                "ms_per_step": 1000 * float(np.mean(tf1_times[skip:] or tf1_times))},
        "keras": {"accuracy": keras_accuracy, "seconds": keras_seconds,
                  "ms_per_step": 1000 * float(np.mean(timer.times[skip:] or timer.times))},
        "steps": steps * protocol.epochs,
    }


def speed(protocol, methods, seed, budget, data_dir=None):
    """Median ms per step of each method over interleaved rounds of `train_on_batch`."""
    rows = load(protocol, seed, data_dir)
    x, y_semi = rows["x"], rows["y_semi"]
    needed = budget["warmup"] + budget["rounds"] * budget["steps"]
    semi = data.make_dataset(x, y_semi, batch_size=protocol.batch_size, shuffle=True,
                             seed=seed, labeled_per_batch=protocol.labeled_per_batch)
    semi_batches = list(semi.repeat().take(needed).as_numpy_iterator())
    labeled = np.flatnonzero(y_semi != data.UNLABELED)
    rng = np.random.default_rng(seed)
    labeled_batches = []
    for _ in range(needed):
        picked = rng.choice(labeled, protocol.batch_size, replace=False)
        labeled_batches.append((x[picked], y_semi[picked]))
    runners = {}
    for name in methods:
        method = METHODS[name]
        keras.utils.set_random_seed(seed)
        backbone = BACKBONES[protocol.backbone].build()
        optimizer = keras.optimizers.Adam(protocol.learning_rate)
        if method.data == "semi":
            model = method.build(backbone, protocol, method.hyper_for(protocol.name))
            model.compile(optimizer=optimizer, run_eagerly=protocol.run_eagerly)
            runners[name] = (model, semi_batches)
        else:
            backbone.compile(
                optimizer=optimizer, run_eagerly=protocol.run_eagerly,
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            )
            runners[name] = (backbone, labeled_batches)
    for model, batches in runners.values():
        for features, labels in batches[: budget["warmup"]]:
            model.train_on_batch(features, labels)
    times = {name: [] for name in methods}
    position = budget["warmup"]
    for round_index in range(budget["rounds"]):
        # Rotate the order so that no method always runs right after another one.
        shift = round_index % len(methods)
        for name in methods[shift:] + methods[:shift]:
            model, batches = runners[name]
            start = time.perf_counter()
            for features, labels in batches[position: position + budget["steps"]]:
                model.train_on_batch(features, labels)
            times[name].append(1000 * (time.perf_counter() - start) / budget["steps"])
        position += budget["steps"]
    return {"backbone": protocol.backbone,
            "ms_per_step": {name: float(np.median(values)) for name, values in times.items()}}
