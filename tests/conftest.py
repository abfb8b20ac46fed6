"""Fixtures shared by the test files: tiny data, the dtype policy, fresh processes.

The tiny models themselves are `tfssl.testing.tiny_backbone` and `tfssl.testing.build_model`
(public, so that a model's author can run the contract on a model of their own).

Fresh processes: TensorFlow's devices are configured once per process, and TF Serving
sees only files, so checks of either kind run in a new Python process. Each one pays
TensorFlow's import (a few seconds), so a test file starts one for all its cases.
"""

import json
import os
import subprocess
import sys

import pytest

# TensorFlow is imported by the fixtures that need it, not here: with pytest-xdist the
# controlling process loads this file too, and would pay TensorFlow's import (seconds)
# before starting the workers, which import it anyway.

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)


@pytest.fixture
def tiny_data():
    """`tfssl.testing.tiny_data()`: 48 rows of 6 features, 3 classes, the first 12 labeled."""
    from tfssl import testing

    return testing.tiny_data()


@pytest.fixture
def dtype_policy():
    """Sets the global dtype policy for one test and restores the previous one after it.

    Yields:
        `keras.mixed_precision.set_dtype_policy`.
    """
    import keras

    previous = keras.mixed_precision.dtype_policy()
    yield keras.mixed_precision.set_dtype_policy
    keras.mixed_precision.set_dtype_policy(previous)


def _run_python(args, timeout=600):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, TESTS, env.get("PYTHONPATH")) if p)
    completed = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=env
    )
    assert completed.returncode == 0, (
        f"{' '.join(args)} exited with {completed.returncode}:\n{completed.stderr[-5000:]}"
    )
    return completed


@pytest.fixture(scope="module")
def run_python():
    """Runs `python *args` in a fresh process with the repository and the tests folder on
    its path; fails the test with the end of its stderr unless it exits with 0.

    Returns:
        A function `(args, timeout=600) -> subprocess.CompletedProcess`.
    """
    return _run_python


def _mirrored_equivalence(*specs, timeout=600):
    # Imported rather than run as a script, so that checks importing mirrored_worker share
    # its devices and strategies.
    code = "import sys, mirrored_worker; mirrored_worker.main(sys.argv[1:])"
    completed = _run_python(["-c", code, *specs], timeout)
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def mirrored_equivalence():
    """Trains each `module:function[:argument]` factory on two logical CPUs and on one, or
    runs a check of its own, in one fresh process (mirrored_worker.py, which documents the
    factories).

    Returns:
        A function `(*specs, timeout=600) -> {spec: {"num_replicas", "num_variables",
        "weights_differ", "loss_differ", "copies_differ"}, a check's dict, or {"error"}}`.
    """
    return _mirrored_equivalence


# What makes a test `slow` (setup.cfg), decided here once rather than file by file: a
# fixture or a name that says it starts processes, runs a script or a benchmark, or trains
# on Fashion-MNIST. Tests may also carry `@pytest.mark.slow` themselves.
SLOW_FIXTURES = {
    "data_dir",  # the estimators' scripts on a synthetic Fashion-MNIST
    "review_dir",  # the text scripts
    "quick_run",  # a benchmark run
    "quick",
    "two_workers",  # MultiWorkerMirroredStrategy workers
    "two_replica_results",  # mirrored_worker.py
    "mirrored_equivalence",
    "run_python",
    "served",  # SavedModels served in a fresh process
    "exports",
}


SLOW_NAME_PARTS = (
    "contract",  # check_model_contract: a fit, a .keras round trip, an export
    "fashion_mnist",
    "fresh_process",
    "serves_without",
    "script",
    "command_line",
    "two_replicas",
    "mirrored",
)


# The integration tier (`make test-integration`, which CI runs after `make test`): the
# programs around the library and processes working together, rather than the library's
# own behaviour. These are the estimators' scripts, the demo, the sweep and the benchmark
# run end to end; the worker pairs of MultiWorkerMirroredStrategy; TensorFlow's
# `saved_model_cli` reading an export; the fresh serving processes of test_contract.py,
# test_export.py and test_text.py, which carry `@pytest.mark.integration` (the contract
# itself serves every model's export in the pytest process); the two-replica runs of the
# other files' factories (test_two_replicas.py; every model's own run stays in `make test`);
# and the training runs on Fashion-MNIST subsets that check what a method's unlabeled term
# does. Integration tests are `slow` too, so the fast suite is a part of `make test`.
INTEGRATION_FILES = (
    "test_scripts.py",
    "test_multiworker.py",
    "test_benchmark.py",
    "test_benchmark_rows.py",
    "test_benchmark_robustness.py",
    "test_saved_model_cli.py",
)
INTEGRATION_NAME_PARTS = ("on_fashion_mnist", "of_fashion_mnist")


# The files that take longest, run first (in this order, then the others in collection
# order): `make test` gives whole files to its two pytest-xdist workers as they free up
# (`--dist loadfile --no-loadscope-reorder`), so a long file started last would keep one
# worker busy while the other has nothing left.
LONGEST_FIRST = (
    "test_two_replicas.py",
    "test_contract.py",
    "test_scripts.py",
    "test_multiworker.py",
    "test_adaptive_models.py",
    "test_nonfinite.py",
    "test_models.py",
)


def _file_rank(item):
    name = os.path.basename(str(item.fspath))
    return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)


def pytest_collection_modifyitems(items):
    items.sort(key=_file_rank)  # stable: a file's tests keep their order
    for item in items:
        name = getattr(item, "originalname", None) or item.name
        if (
            item.get_closest_marker("integration")
            or os.path.basename(str(item.fspath)) in INTEGRATION_FILES
            or any(part in name for part in INTEGRATION_NAME_PARTS)
        ):
            item.add_marker(pytest.mark.integration)
            item.add_marker(pytest.mark.slow)
        elif SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())) or any(
            part in name for part in SLOW_NAME_PARTS
        ):
            item.add_marker(pytest.mark.slow)
