"""Clusters of worker processes on 127.0.0.1 for the MultiWorkerMirroredStrategy tests.

A process joins one cluster only, and the cluster is configured before TensorFlow starts:
each worker is a Python script started with its own `TF_CONFIG`.

Example, in a test file of the tests folder:

```python
from multiworker_utils import start_workers, wait

processes = start_workers("my_worker.py", [["out0"], ["out1"]], logs=["out0/log.txt", ...])
assert wait(processes, timeout=600) == [0, 0]
```
"""

import json
import os
import re
import socket
import subprocess
import sys
import time

import keras

from tfssl import models, testing

__all__ = ["METHODS", "build_model", "free_ports", "model_state", "start_workers", "wait"]

# The models with state beside their weights (the ensemble, the teacher), with their own
# arguments.
METHODS = {
    "te": (models.TemporalEnsembling, {"alpha": 0.6}),
    "mt": (models.MeanTeacher, {"rampup_ema_decay": 0.9}),
}

TESTS = os.path.dirname(os.path.abspath(__file__))


def free_ports(count):
    """`count` TCP ports of 127.0.0.1 that were free a moment ago."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start_workers(script, worker_args, logs):
    """Starts one process of `script` (a file of the tests folder) per worker.

    Args:
        script: File name of the worker script in the tests folder.
        worker_args: One list of command-line arguments per worker.
        logs: One path per worker, where its stdout and stderr go.

    Returns:
        The `subprocess.Popen` of each worker, in the order of the cluster's task indices.
    """
    workers = [f"127.0.0.1:{port}" for port in free_ports(len(worker_args))]
    processes = []
    for index, (args, log_path) in enumerate(zip(worker_args, logs)):
        env = dict(os.environ)
        env["TF_CONFIG"] = json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        )
        env["TF_CPP_MIN_LOG_LEVEL"] = "2"
        with open(log_path, "a") as log:
            processes.append(
                subprocess.Popen(
                    [sys.executable, os.path.join(TESTS, script), *args],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    return processes


def wait(processes, timeout):
    """Waits for every process until `timeout` seconds in all, then kills those left (a
    worker whose peer died waits in its collectives forever); returns their exit codes."""
    deadline = time.monotonic() + timeout
    try:
        for process in processes:
            process.wait(timeout=max(deadline - time.monotonic(), 1))
    except subprocess.TimeoutExpired:
        pass
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return [process.returncode for process in processes]


def model_state(model):
    """Every variable of the model and its optimizer as numpy arrays, keyed by position and
    path without Keras' uniquifying suffixes: a fresh worker process names its first layer
    `dense`, the pytest process that ran other tests before `dense_129`."""
    variables = model.weights + model.optimizer.variables
    return {f"{i:03d} {re.sub(r'_[0-9]+(?=[_/]|$)', '', v.path)}": v.numpy()
            for i, v in enumerate(variables)}


def build_model(method, strategy, optimizer):
    """The `METHODS[method]` model on `tfssl.testing`'s tiny data, from seed 0, built and
    compiled with `optimizer` (a function returning one) in `strategy`'s scope."""
    model_class, kwargs = METHODS[method]
    keras.utils.set_random_seed(0)
    x, _, _ = testing.tiny_data()
    with strategy.scope():
        model = model_class(
            testing.tiny_backbone(),
            num_samples=len(x),
            num_labeled=12,
            ramp_up_epochs=2,
            max_unsupervised_weight=10.0,
            **kwargs,
        )
        model.compile(optimizer=optimizer(), metrics=["accuracy"])
    return model
