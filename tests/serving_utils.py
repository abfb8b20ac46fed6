"""Serve SavedModels in a fresh Python process that imports only TensorFlow.

A fresh process is what TF Serving sees: no keras, no tfssl, no Python object of the
trained model, only the files. One process costs a few seconds of TensorFlow import, so
`serve_many_in_fresh_process` serves any number of exports in one go.

Example:

```python
from serving_utils import serve_in_fresh_process

outputs = serve_in_fresh_process(path, "x", x)
outputs["logits"], outputs["probabilities"], outputs["classes"]
```
"""

import json
import os
import subprocess
import sys
import tempfile

import numpy as np

__all__ = [
    "WITHOUT_TRAINING_PACKAGES",
    "folder_size",
    "serve_in_fresh_process",
    "serve_many_in_fresh_process",
]

# A model server has TensorFlow and nothing of the training environment. `import
# tensorflow` 2.21 loads parts of keras.src, which import pandas, scikit-learn, matplotlib
# and scipy when they are installed (as the test extras install them): about a third of
# the import's CPU time, for modules a server never uses. A fresh serving process starts
# with this preamble, which makes their import fail, as in an environment without them.
WITHOUT_TRAINING_PACKAGES = (
    "import sys\n"
    "sys.modules.update(dict.fromkeys(('pandas', 'sklearn', 'matplotlib', 'scipy'), None))\n"
)
# Runs in the child, which imports only tensorflow, numpy and the modules named after the
# request file (tensorflow_text, whose ops a text model's graph holds). It cannot assert
# that keras stays out: `import tensorflow` 2.21 itself loads parts of keras.src. It asserts
# that tfssl does, so the export cannot depend on our Python code.
_SCRIPT = WITHOUT_TRAINING_PACKAGES + r"""
import importlib
import json

import numpy as np
import tensorflow as tf

for module in sys.argv[2:]:
    importlib.import_module(module)
requests = json.load(open(sys.argv[1]))
for request in requests:
    inputs = np.load(request["input"], allow_pickle=False)
    signature = tf.saved_model.load(request["path"]).signatures["serving_default"]
    outputs = signature(**{request["input_name"]: tf.constant(inputs)})
    np.savez(request["output"], **{k: v.numpy() for k, v in outputs.items()})
if "tfssl" in sys.modules:
    sys.exit("tfssl was imported while serving")
"""


def serve_many_in_fresh_process(requests, timeout=120, imports=()):
    """Call `serving_default` of several SavedModels in one new Python process.

    Args:
        requests: Sequence of `(path, input_name, array)`: the SavedModel folder, the
            signature's input name (`"x"` or `"text"`) and the batch to feed. String
            batches may be `str`, `bytes` or object arrays.
        timeout: Seconds to wait for the process. Defaults to 120.
        imports: Modules the process imports before loading, e.g. `("tensorflow_text",)`
            for a graph with tensorflow-text ops. Defaults to `()`.

    Returns:
        A list with, per request, a dict from output name to numpy array.

    Raises:
        RuntimeError: If the process fails; the message carries its stderr.
    """
    with tempfile.TemporaryDirectory() as tmp:
        jobs = []
        for i, (path, input_name, array) in enumerate(requests):
            array = np.asarray(array)
            # np.load(allow_pickle=False) cannot read object arrays; fixed-width bytes work
            # and become tf.string tensors.
            if array.dtype.kind == "U":
                array = np.char.encode(array, "utf-8")
            elif array.dtype.kind == "O":
                # astype(bytes) would encode str as ASCII.
                array = np.array(
                    [t.encode("utf-8") if isinstance(t, str) else t for t in array], dtype=bytes
                )
            np.save(os.path.join(tmp, f"in{i}.npy"), array)
            jobs.append(
                {
                    "path": os.fspath(path),
                    "input_name": input_name,
                    "input": os.path.join(tmp, f"in{i}.npy"),
                    "output": os.path.join(tmp, f"out{i}.npz"),
                }
            )
        with open(os.path.join(tmp, "requests.json"), "w") as f:
            json.dump(jobs, f)
        script = os.path.join(tmp, "serve.py")
        with open(script, "w") as f:
            f.write(_SCRIPT)
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        result = subprocess.run(
            [sys.executable, script, os.path.join(tmp, "requests.json"), *imports],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"Serving in a fresh process failed ({result.returncode}):\n{result.stderr}"
            )
        outputs = []
        for job in jobs:
            with np.load(job["output"], allow_pickle=False) as data:
                outputs.append({k: data[k] for k in data.files})
        return outputs


def serve_in_fresh_process(path, input_name, array, timeout=120, imports=()):
    """Call `serving_default` of one SavedModel in a new Python process.

    Args:
        path: The SavedModel folder (a version folder written by `export_saved_model`).
        input_name: The signature's input name, `"x"` or `"text"`.
        array: The batch to feed.
        timeout: Seconds to wait for the process. Defaults to 120.
        imports: Modules the process imports first, as `serve_many_in_fresh_process`'s.

    Returns:
        A dict from output name to numpy array.

    Raises:
        RuntimeError: If the process fails; the message carries its stderr.
    """
    return serve_many_in_fresh_process(
        [(path, input_name, array)], timeout=timeout, imports=imports
    )[0]


def folder_size(path):
    """Total size in bytes of the files below `path` (an export's weight on disk)."""
    return sum(
        os.path.getsize(os.path.join(root, name))
        for root, _, names in os.walk(path)
        for name in names
    )
